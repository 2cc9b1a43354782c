"""The editor schema (stacks/stack.schema.json): generated from the model, current, and read by the
language server editors run (yaml-language-server), through the header line of each stack file."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings

from stacks.load import parse_stack
from stacks.schema import REGENERATE, SCHEMA_PATH, schema_text
from tests.edit import HOMELAB, MINIMAL, RK1, ROOT, edit, homelab_doc
from tests.stacks.test_invalid_stacks import CASES as INVALID_CASES
from tests.strategies import raw_stacks
from tools.yaml_ls import LanguageServer, language_server

HEADER = "# yaml-language-server: $schema=./stacks/stack.schema.json\n"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
# A copy: tests.edit.edit puts a case's values into the document it edits, so neither module's tests can touch the other's.
CASES: dict[str, dict[str, Any]] = {c["name"]: c for c in copy.deepcopy(INVALID_CASES)}


@pytest.fixture(scope="module")
def editor() -> Iterator[LanguageServer]:
    with language_server() as server:
        yield server


def test_committed_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), f"stacks/stack.schema.json is stale (the model changed); regenerate it: .venv/bin/{REGENERATE}"


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_command_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "stack.schema.json"

    def iluvatar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "iluvatar", "schema", "--out", str(out), *args], capture_output=True, text=True, timeout=60)

    assert iluvatar("--check").stderr == f"error: {out} is missing; regenerate it with `iluvatar schema --out {out}`\n"
    assert (iluvatar().returncode, out.read_text()) == (0, schema_text())
    assert (iluvatar("--check").returncode, iluvatar("--check").stdout) == (0, f"{out} is current\n")
    out.write_text(schema_text().replace('"minItems": 1', '"minItems": 2', 1))
    stale = iluvatar("--check")
    assert (stale.returncode, stale.stderr) == (2, f"error: {out} is stale; regenerate it with `iluvatar schema --out {out}`\n")


@pytest.mark.parametrize("path", [HOMELAB, RK1, MINIMAL], ids=lambda p: p.name)
def test_editor_accepts_the_shipped_stacks(editor: LanguageServer, path: Path) -> None:
    # The example names the schema from its own folder, as `iluvatar init` writes it there.
    assert path.read_text().startswith(HEADER if path.parent == ROOT else HEADER.replace("./", "../", 1))
    assert editor.diagnostics(path) == []


def shown_in_editor(editor: LanguageServer, case: str) -> list[tuple[str, str]]:
    """What the editor flags in a broken stack: each message, with the line it points at."""
    text = HEADER + yaml.safe_dump(edit(homelab_doc(), CASES[case].get("set"), CASES[case].get("delete")), sort_keys=False)
    # Opened at a path in the project (never written), so the header resolves to the committed schema.
    diagnostics = editor.diagnostics(ROOT / f"Pulumi.fixture-{case}.yaml", text)
    lines = text.splitlines()
    return [(d["message"], lines[d["range"]["start"]["line"]].strip()) for d in diagnostics]


@pytest.mark.parametrize(
    ("case", "flagged"),
    [
        ("unknown-role", [('Value is not accepted. Valid values: "valar", "maiar", "valinor", "istari".', "role: sauron")]),
        ("unknown-board", [('Value is not accepted. Valid values: "generic-arm64", "generic-x86", "rk1", "rpi4", "rpi5".', "board: nuc13")]),
        ("unknown-dhcp-mode", [('Value is not accepted. Valid values: "dhcp", "proxy".', "mode: relay")]),
        ("name-not-rfc1123", [('String does not match the pattern of "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$".', "- name: Gandalf_the_Grey")]),
        ("misspelt-node-key", [("Property instalDisk is not allowed.", "instalDisk: /dev/sda")]),
        (
            "misspelt-top-level-key",
            [
                (
                    'Value is not accepted. Valid values: "iluvatar:ainur", "iluvatar:ainurSshPrivateKey", "iluvatar:alertReceiverSecret", '
                    '"iluvatar:appSecrets", "iluvatar:apps", "iluvatar:arda", "iluvatar:backup", "iluvatar:backupS3AccessKeyId", '
                    '"iluvatar:backupS3SecretAccessKey", "iluvatar:bmcPasswords", "iluvatar:cloudflare", "iluvatar:cloudflareApiToken", '
                    '"iluvatar:edge", "iluvatar:gitops", "iluvatar:gitopsSshPrivateKey", "iluvatar:gitopsToken", "iluvatar:identity", '
                    '"iluvatar:identityConnectorSecret", "iluvatar:kmsKeyRestore", "iluvatar:logs", "iluvatar:monitoring", "iluvatar:network", "iluvatar:nodes", '
                    '"iluvatar:remoteAccess", '
                    '"iluvatar:storage", "iluvatar:tailscaleOauthClientSecret".',
                    "iluvatar:netwrok: {}",
                )
            ],
        ),
        ("missing-arda", [('Missing property "iluvatar:arda".', "config:")]),
        ("string-where-a-list-goes", [('Incorrect type. Expected "array".', "dns: 192.168.0.1")]),
        ("string-where-a-mapping-goes", [('Incorrect type. Expected "AddressRange".', "dhcpRange: 192.168.0.100-192.168.0.199")]),
        ("scheduling-flag-not-a-bool", [('Incorrect type. Expected "boolean".', "allowSchedulingOnControlPlanes: sometimes")]),
        ("vlan-id-out-of-range", [("Value is above the maximum of 4094.", "- id: 4095")]),
        ("dns-empty", [("Array has too few items. Expected 1 or more.", "dns: []")]),
        (
            "token-in-plain-text",
            [('Incorrect type. Expected "secret (pulumi config set --secret)".', "iluvatar:cloudflareApiToken: tok-PLAINTEXT-123")],
        ),
    ],
)
def test_editor_flags_what_one_value_shows(editor: LanguageServer, case: str, flagged: list[tuple[str, str]]) -> None:
    """Types, enums, patterns, bounds, unknown and missing keys, secrets in plain text: flagged while typing."""
    assert shown_in_editor(editor, case) == flagged


@pytest.mark.parametrize(
    "case",
    [
        "node-ip-outside-lan",  # an address against the LAN it must sit in
        "node-ip-in-dhcp-range",  # against the pools
        "duplicate-ip",  # against the other machines
        "duplicate-mac-in-another-spelling",
        "multicast-mac",  # a MAC's meaning, not its spelling
        "even-number-of-control-planes",  # a count across the inventory
        "pi5-runs-talos-only-from-its-first-image",  # what a board can run, at which Talos release
        "arch-does-not-match-board",
        # A secret the stack needs: set with `pulumi config set --secret`, never typed, so only validate lists it unset.
        "cloudflare-without-token",
    ],
)
def test_what_only_validate_catches(editor: LanguageServer, case: str) -> None:
    """Relations between values are beyond a schema: the editor is silent, `iluvatar validate` is not."""
    assert shown_in_editor(editor, case) == []
    assert CASES[case]["expect"] != []


@settings(max_examples=100, deadline=None)
@given(raw_stacks())
def test_the_schema_never_flags_a_valid_stack(raw: dict[str, Any]) -> None:
    """Every stack `validate` accepts, in every MAC spelling, passes the schema: the editor never cries wolf."""
    parse_stack(raw)
    doc = {"config": {"pulumi:disable-default-providers": ["*"], **raw}}
    assert [e.message for e in VALIDATOR.iter_errors(doc)] == []


@pytest.mark.parametrize(("lease", "errors"), [(3600, []), ("12h", []), ("infinite", []), (60, ["60 is not valid under any of the given schemas"])])
def test_the_schema_takes_a_lease_time_as_validate_does(lease: object, errors: list[str]) -> None:
    """`leaseTime: 3600` unquoted is a number to YAML and seconds to validate: the editor takes it too, within what
    dnsmasq lends as written (under 2 minutes validate refuses)."""
    doc = homelab_doc()
    doc["config"]["iluvatar:ainur"].setdefault("netboot", {})["leaseTime"] = lease
    assert [e.message for e in VALIDATOR.iter_errors(doc)] == errors
