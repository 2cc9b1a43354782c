"""Edit a stack file's document by config path (`iluvatar:nodes[3].ip`), for test fixtures."""

from __future__ import annotations

import base64
import copy
import functools
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from stacks.load import StackFile, read_stack_file

ROOT = Path(__file__).resolve().parent.parent
HOMELAB = ROOT / "Pulumi.homelab.yaml"
RK1 = ROOT / "Pulumi.rk1.yaml"
# The smallest useful homelab (one Pi, one machine that also runs the workloads), as `iluvatar init` writes it.
MINIMAL = ROOT / "examples" / "Pulumi.minimal.yaml"

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STEP = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+)\]")


def _steps(path: str) -> tuple[str, list[str | int]]:
    """`iluvatar:nodes[3].ip` -> (`iluvatar:nodes`, [3, "ip"])."""
    key = re.match(r"[^.\[]+", path)
    assert key is not None, path
    rest = path[key.end() :]
    return key.group(0), [int(m.group(2)) if m.group(2) else m.group(1) for m in _STEP.finditer(rest)]


def edit(doc: dict[str, Any], set_: dict[str, Any] | None = None, delete: list[str] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    config = out["config"]
    for path, value in (set_ or {}).items():
        key, steps = _steps(path)
        if not steps:
            config[key] = value
            continue
        target = config[key]
        for s in steps[:-1]:
            target = target[s]
        target[steps[-1]] = value
    for path in delete or []:
        key, steps = _steps(path)
        if not steps:
            del config[key]
            continue
        target = config[key]
        for s in steps[:-1]:
            target = target[s]
        del target[steps[-1]]
    return out


# What `pulumi stack init` writes with the passphrase secrets manager (tools/stackfile's salt), and a value of the form
# Pulumi's crypter writes (`v1:<12-byte nonce>:<sealed value>`, stacks.secrets): accepted as ciphertext, opened by nobody.
SALT = "v1:c2FsdHNhbHQ=:v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHRjaXBoZXJ0ZXh0"
CIPHERTEXT = "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="


def ciphertext(text: str) -> str:
    """A well-formed ciphertext that carries `text` (a canary a test looks for), as `{"secure": ...}` holds it."""
    return "v1:" + base64.b64encode(b"canary-nonce").decode() + ":" + base64.b64encode(text.encode().ljust(16, b".")).decode()


def secure(text: str | None = None) -> dict[str, str]:
    return {"secure": CIPHERTEXT if text is None else ciphertext(text)}


# The secrets a user of the homelab stack sets after `pulumi stack init` (the shipped file leaves them to the user).
HOMELAB_SECRETS: dict[str, Any] = {
    "iluvatar:backupS3AccessKeyId": secure(),
    "iluvatar:backupS3SecretAccessKey": secure(),
    "iluvatar:appSecrets": {"home-assistant": {"WEATHER_API_KEY": secure()}},
    "iluvatar:cloudflareApiToken": secure(),
    "iluvatar:alertReceiverSecret": secure(),
    "iluvatar:identityConnectorSecret": secure(),
}


def homelab_doc() -> dict[str, Any]:
    """The homelab's stack document as its user has it once the secrets are set (`pulumi stack init`, then one
    `pulumi config set --secret` each), the caller's own copy to edit; less its remote access.

    Remote access is a layer on top, which the stack's other keys cannot see: its grants name identity groups and apps,
    its Headscale an address and the Ainur. A test of another key edits those without rewriting the grants, so it
    starts from the homelab without them, as does the homelab's run the program tests share (homelab_stack_file,
    tests.sims); the remote access tests add the shipped access back (tests.remote_stacks.SHIPPED), and what reads
    Pulumi.homelab.yaml itself (render, the registration count, the tailnet lab) has it."""
    doc = copy.deepcopy(_parsed(HOMELAB.read_text()))
    del doc["config"]["iluvatar:remoteAccess"]
    doc["config"].update(copy.deepcopy(HOMELAB_SECRETS))
    doc["encryptionsalt"] = SALT
    return doc


@functools.cache
def _parsed(text: str) -> dict[str, Any]:
    # Parsed once per text (a test process asks for it hundreds of times: pure-Python YAML took 10 s of it).
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@functools.cache
def _homelab_with_secrets() -> Path:
    path = Path(tempfile.mkdtemp(prefix="iluvatar-homelab-")) / "Pulumi.homelab.yaml"
    path.write_text(yaml.safe_dump(homelab_doc(), sort_keys=False))
    return path


def homelab_stack_file() -> StackFile:
    """The homelab stack file as its user has it once the secrets are set (homelab_doc), read as Pulumi reads it."""
    return read_stack_file(_homelab_with_secrets())


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_has_secure(v) for v in value.values())
    return isinstance(value, list) and any(_has_secure(v) for v in value)


def write_stack(tmp: Path, doc: dict[str, Any], stack: str = "test") -> Path:
    """The document as a stack file; one holding a secret gets the salt `pulumi stack init` writes first (a secure
    value in a file without it cannot be opened, stacks.secrets), unless it has a salt or a key of its own."""
    if _has_secure(doc.get("config")) and not {"encryptionsalt", "encryptedkey"} & set(doc):
        doc = {**doc, "encryptionsalt": SALT}
    path = tmp / f"Pulumi.{stack}.yaml"
    # libyaml's emitter (as plans.yamltext writes): the pure-Python one took 18 ms for the homelab's document, a third
    # of the CPU of tests/stacks/test_invalid_stacks.py, which writes one per test. It writes the homelab's, rk1's and
    # the examples' documents byte for byte as the pure-Python one does, and any document as YAML that reads back equal.
    path.write_text(yaml.dump(doc, Dumper=_DUMPER, sort_keys=False))
    return path


# What names the registry's own apps (Grafana and Headlamp): a test that replaces iluvatar:apps drops these with them.
# (Remote access, which grants the Minecraft server and the MQTT broker, is not in homelab_doc at all.)
NAMES_REGISTRY_APPS = ("iluvatar:monitoring", "iluvatar:alertReceiverSecret", "iluvatar:identity.headlamp")
# What is an Argo CD Application or lives in GitOps's folders: a test that drops iluvatar:gitops drops these with it.
# The homelab's apps with a backup (home-assistant, jellyfin, minecraft, mosquitto): a test that drops the backup
# target or GitOps drops these with it.
APP_BACKUPS = tuple(f"iluvatar:apps[{i}].backup" for i in (0, 1, 5, 6))
GOES_WITH_GITOPS = ("iluvatar:gitops", *NAMES_REGISTRY_APPS, *APP_BACKUPS)


def present(config: dict[str, Any], path: str) -> bool:
    key, steps = _steps(path)
    target: Any = config.get(key)
    for s in steps:
        if isinstance(s, int):
            if not isinstance(target, list) or s >= len(target):
                return False
        elif not isinstance(target, dict) or s not in target:
            return False
        target = target[s]
    return key in config


def without(config: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The config without those of `paths` it has."""
    out: dict[str, Any] = edit({"config": config}, delete=[p for p in paths if present(config, p)])["config"]
    return out


def with_apps(config: dict[str, Any], apps: list[dict[str, Any]]) -> dict[str, Any]:
    """The config with `apps` as its registry, and without what names the registry's own apps (remote access too:
    its grants name the shipped apps' ports)."""
    return {**without(config, (*NAMES_REGISTRY_APPS, "iluvatar:remoteAccess")), "iluvatar:apps": apps}
