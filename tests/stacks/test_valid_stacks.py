"""Valid stacks a new user would write are accepted, ask for exactly the secrets they need, and render.

The reverse of tests/stacks/test_invalid_stacks.py: a rule that refuses a stack a user could rightly write is a defect
too (issue #40 found one). Each variant (tests/fixtures/valid_stacks.yaml) starts from what `iluvatar init` writes,
edited as a user edits it; it must validate once its secrets are set, as `iluvatar validate` and `pulumi preview` check
it, and run through the program under the engine's mocks (`iluvatar render`), its render holding what it adds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import init
from iluvatar.render import render_files
from iluvatar.simulate import simulate
from stacks import load_stack_file, read_stack_file
from tests.edit import MINIMAL, edit, secure, write_stack

VARIANTS: list[dict[str, Any]] = yaml.load((Path(__file__).parent.parent / "fixtures" / "valid_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q you@laptop"
# The machines of examples/Pulumi.minimal.yaml, as `init --machine` takes them.
MACHINES = ["name=pi,mac=d8:3a:dd:10:00:01,role=valar,board=rpi5", "name=node,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"]


def test_the_variant_set_is_large_enough() -> None:
    assert len(VARIANTS) >= 30
    assert len({v["name"] for v in VARIANTS}) == len(VARIANTS)


def _text(variant: dict[str, Any], path: Path) -> str:
    """The stack file as the user has it before any edit by path: what `init` wrote, its text edited by hand."""
    if "init" in variant:
        given = {"lan": "192.168.1.0/24", "ssh_key": KEY, "machines": MACHINES, **variant["init"]}
        machines = tuple(init.parse_machine(m) for m in given.pop("machines"))
        # The cases were written while init's stacks ran dhcp: they keep it, stated, with the router's pool init asks in that
        # mode (none: no lease of another server held); `dhcp_mode: null` asks for the default.
        if any(m.role == "valar" for m in machines):
            given.setdefault("dhcp_mode", "dhcp")
            if given["dhcp_mode"] == "dhcp":
                given.setdefault("router_pool", "none")
        text, _ = init.build(init.Answers(stack="lab", machines=machines, **given), path)
    else:
        text = MINIMAL.read_text()
    for old, new in variant.get("replace", []):
        assert old in text, f"{variant['name']}: {old!r} is not in the file"
        text = text.replace(old, new)
    return text


def _set_secrets(doc: dict[str, Any], where: tuple[str, ...]) -> None:
    """What `pulumi config set --secret [--path] ...` does to the document: a ciphertext at the secret's place."""
    key, *under = where
    if not under:
        doc["config"][key] = secure()
        return
    value = doc["config"].setdefault(key, {})
    for part in under[:-1]:
        value = value.setdefault(part, {})
    value[under[-1]] = secure()


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_a_valid_stack_validates_and_renders(variant: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(_text(variant, path))
    if {"set", "delete", "add"} & set(variant):
        doc = edit(yaml.safe_load(path.read_text()), variant.get("set"), variant.get("delete"))
        doc["config"].update(variant.get("add", {}))
        write_stack(tmp_path, doc, stack="lab")
    # Valid as it stands, but for the secrets it names: exactly these, each with the command that sets it.
    unset = read_stack_file(path).unset_secrets()
    assert [s.command for s in unset] == variant.get("secrets", [])
    if unset:
        doc = yaml.safe_load(path.read_text())
        for secret in unset:
            _set_secrets(doc, secret.where)
        write_stack(tmp_path, doc, stack="lab")
    load_stack_file(path, require_secrets=True)  # as `iluvatar validate` and `pulumi preview` check it
    files = render_files(simulate(read_stack_file(path)))
    assert set(variant["files"]) <= set(files), sorted(files)
