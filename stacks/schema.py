"""The editor schema: a JSON Schema of `Pulumi.<stack>.yaml`, generated from the typed model.

Editors that speak yaml-language-server (VS Code's YAML extension, Neovim, Helix, JetBrains) read
it through the `# yaml-language-server: $schema=...` line at the top of each stack file, and then
complete keys, show each section's description and flag a wrong type, an unknown key or a value
outside its enum while the user types.

It is generated, never written by hand (`iluvatar schema --out stacks/stack.schema.json`), so it
follows the models. It sees what one value shows alone; what needs the whole stack (an IP inside
the LAN, a duplicate MAC, an odd number of control planes, a board that cannot run Talos, a version
outside the support matrix, a Talos patch that fights the inventory) only `iluvatar validate` and
`pulumi preview` catch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from stacks import data, encryption, power
from stacks.load import NAMESPACE, SECRETS, SECTIONS
from stacks.model import App, Node

# The list sections (SECTIONS' model None): the model of each item, and what the list is.
LISTS: dict[str, tuple[type[BaseModel], str]] = {
    "nodes": (Node, "the inventory: every machine, once"),
    "apps": (App, "the app registry: every app the gateways serve, once"),
}

SCHEMA_PATH = Path(__file__).resolve().parent / "stack.schema.json"
DISABLE_DEFAULT_PROVIDERS = "pulumi:disable-default-providers"
REGENERATE = "iluvatar schema --out stacks/stack.schema.json"


class _Generator(GenerateJsonSchema):
    """Pydantic's generator without per-field titles ("K3Sversion"): the key itself is the name."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _secret(key: str) -> dict[str, Any]:
    return {
        "title": "secret (pulumi config set --secret)",
        "description": f"a secret: set it with `{encryption.set_secret_command(f'{NAMESPACE}:{key}')}`, which writes only ciphertext",
        "type": "object",
        "properties": {"secure": {"type": "string", "pattern": "^v1:"}},
        "required": ["secure"],
        "additionalProperties": False,
    }


def _app_secrets() -> dict[str, Any]:
    """iluvatar:appSecrets: app -> secret name -> a value encrypted on its own (`config set --secret --path`)."""
    leaf = _secret(f"{data.APP_SECRETS}.<app>.<name>")
    leaf["description"] = f"a secret of an app: `pulumi config set --secret --path '{NAMESPACE}:{data.APP_SECRETS}.<app>.<name>' <value>`"
    return {
        "title": "the apps' secrets you set (each pulumi config set --secret --path)",
        "type": "object",
        "additionalProperties": {"type": "object", "additionalProperties": leaf},
    }


def _bmc_passwords() -> dict[str, Any]:
    """One secret per BMC address (stacks.power), each set with `pulumi config set --secret --path`."""
    entry = _secret(f'{power.PASSWORDS}["<address>"]')
    entry["description"] = f"a BMC's password: set it with {power.set_password('<address>')}, which writes only ciphertext"
    return {
        "title": "secrets, one per BMC address (pulumi config set --secret --path)",
        "description": "the password of each BMC a machine's power.bmc logs in to, by the BMC's address",
        "type": "object",
        "propertyNames": {"pattern": r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"},
        "additionalProperties": entry,
    }


def stack_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a stack file: Pulumi's top-level keys and the `iluvatar:` config."""
    models: list[type[BaseModel]] = [*(s.model for s in SECTIONS.values() if s.model is not None), *(m for m, _ in LISTS.values())]
    refs, schema = models_json_schema([(m, "validation") for m in models], by_alias=True, schema_generator=_Generator)
    ref = {m: refs[(m, "validation")] for m in models}
    config: dict[str, Any] = {
        DISABLE_DEFAULT_PROVIDERS: {
            "description": "providers Pulumi must never create by default; must list kubernetes (or *), so nothing lands on an ambient kubeconfig",
            "type": "array",
            "items": {"type": "string"},
            "contains": {"enum": ["*", "kubernetes"]},
        }
    }
    for key, section in SECTIONS.items():
        config[f"{NAMESPACE}:{key}"] = (
            ref[section.model] if section.model is not None else {"type": "array", "description": LISTS[key][1], "items": ref[LISTS[key][0]]}
        )
    for key in SECRETS:
        if key == data.APP_SECRETS:
            config[f"{NAMESPACE}:{key}"] = _app_secrets()
        elif key == power.PASSWORDS:
            config[f"{NAMESPACE}:{key}"] = _bmc_passwords()
        else:
            config[f"{NAMESPACE}:{key}"] = _secret(key)
    known = sorted(k for k in config if k.startswith(f"{NAMESPACE}:"))
    required = [DISABLE_DEFAULT_PROVIDERS, *(f"{NAMESPACE}:{k}" for k, s in SECTIONS.items() if s.required)]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Iluvatar stack file (Pulumi.<stack>.yaml)",
        "description": f"Generated from the typed model by `{REGENERATE}`; `iluvatar validate` checks the rest.",
        "type": "object",
        "properties": {
            "config": {
                "description": "the stack's configuration; Iluvatar's keys are under iluvatar:, other namespaces are Pulumi's and the providers'",
                "type": "object",
                "properties": config,
                # No secret is required here: a secret is never typed into the file but set with `pulumi config set --secret`,
                # so an editor would flag every stack before its first `config set`; `iluvatar validate` lists what is unset.
                "required": required,
                # Other namespaces are free; an iluvatar: key that is not one of these is a typo.
                "propertyNames": {"anyOf": [{"enum": known}, {"not": {"pattern": f"^{NAMESPACE}:"}}]},
            },
            # What `pulumi stack init` and the secrets providers write.
            "encryptionsalt": {"type": "string", "description": "written by `pulumi stack init` for passphrase secrets"},
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "environment": {"description": "Pulumi ESC environments imported by this stack"},
        },
        "required": ["config"],
        "additionalProperties": False,
        "$defs": schema.get("$defs", {}),
    }


def schema_text() -> str:
    """The schema as committed: stable key order, two-space indent, a final newline."""
    return json.dumps(stack_schema(), indent=2, ensure_ascii=False) + "\n"
