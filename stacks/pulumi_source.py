"""Stack config from Pulumi: the one place that reads `pulumi.Config`.

The program calls `load()` once; components receive the typed models it returns, never
Pulumi config. Invalid config stops the program with `pulumi.RunError`, which Pulumi
prints as one clean error (every problem, no traceback) before any resource exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from stacks.errors import StackConfigError
from stacks.load import NAMESPACE, SECRETS, Secure, parse_stack
from stacks.model import StackConfig


@dataclass(frozen=True)
class StackSecrets:
    """Secret config, kept as Pulumi secret Outputs so they never leave the engine in clear."""

    cloudflare_api_token: pulumi.Output[str] | None
    ainur_ssh_private_key: pulumi.Output[str] | None
    # The GitOps repository's credential (stacks.gitops decides which one a stack needs).
    gitops_token: pulumi.Output[str] | None = None
    gitops_ssh_private_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class LoadedStack:
    """A validated stack: the typed config and its secrets."""

    config: StackConfig
    secrets: StackSecrets


def _config_keys() -> set[str]:
    # The SDK has no public way to list config keys; unknown keys must still be reported,
    # so read the runtime's config map (set by the language host, or by set_all_config in tests).
    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def _decode(key: str, value: Any, secret: bool = True) -> Any:
    if key.removeprefix(f"{NAMESPACE}:") in SECRETS:
        # parse_stack only needs to know it is there, and whether it was set as a secret (a Secure
        # value is ciphertext wherever it comes from); the value itself is never decoded.
        return Secure() if secret else "[plain text]"
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load() -> LoadedStack:
    raw = {
        k: _decode(k, runtime_config.get_config(k), runtime_config.is_config_secret(k))
        for k in sorted(_config_keys())
        if k.startswith(f"{NAMESPACE}:")
    }
    secret_keys = frozenset(k for k in raw if runtime_config.is_config_secret(k))
    try:
        stack = parse_stack(raw, secret_keys, source=f"stack {pulumi.get_stack()}")
    except StackConfigError as e:
        raise pulumi.RunError(e.report()) from None
    cfg = pulumi.Config(NAMESPACE)
    token = cfg.require_secret("cloudflareApiToken") if stack.uses_cloudflare else None
    ssh_key = cfg.get_secret("ainurSshPrivateKey")
    gitops_token, gitops_key = cfg.get_secret("gitopsToken"), cfg.get_secret("gitopsSshPrivateKey")
    return LoadedStack(
        stack,
        StackSecrets(cloudflare_api_token=token, ainur_ssh_private_key=ssh_key, gitops_token=gitops_token, gitops_ssh_private_key=gitops_key),
    )
