"""Valid variants of the homelab stack that warn (tests/fixtures/warned_stacks.yaml): each validates, as `iluvatar
validate` and `pulumi preview` check it, and stacks.warn gives exactly the expected warnings, none refusing it (with an
`arda` output, stacks.day2's after them). A warning neutralised makes a case here fail (scripts/rule_coverage.py)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks import day2, load_stack_file
from stacks.warn import warnings
from tests.edit import edit, homelab_doc, write_stack

CASES: list[dict[str, Any]] = yaml.load((Path(__file__).parent.parent / "fixtures" / "warned_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)


def test_every_case_is_named_once_and_says_its_warnings() -> None:
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert all(isinstance(c.get("warn"), list) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_valid_stack_warns_exactly(case: dict[str, Any], tmp_path: Path) -> None:
    doc = edit(homelab_doc(), case.get("set"), case.get("delete"))
    doc["config"].update(case.get("add", {}))
    stack = load_stack_file(write_stack(tmp_path, doc), require_secrets=True)  # valid: a warning never refuses
    if "arda" in case:
        # Against the last deployment's `arda` output, as `pulumi preview` reads it back: what the day-2 checks could not
        # check (stacks.day2.warnings) follows the stack's own warnings, as the preview logs them; none refuses.
        deployed = day2.DeployedArda.from_output(case["arda"])
        assert day2.check(stack, deployed) == []
        assert [str(w) for w in warnings(stack) + day2.warnings(stack, deployed)] == case["warn"]
        return
    assert [str(w) for w in warnings(stack)] == case["warn"]


INVALID: list[dict[str, Any]] = yaml.load((Path(__file__).parent.parent / "fixtures" / "invalid_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)
# The fix a link-name message gives (stacks.rules.unknown_link_names): an alias on the NIC's MAC, in the same patches or
# in the own patches of each machine a shared one reaches, its name at the key, and a shared alias removed where it says.
_ALIAS_FIX = re.compile(
    r"^(?P<key>iluvatar:[^ ]+?)\.(?P<field>name|parent|links\[\d+\]|iifName|oifName): .*?(?:remove (?P<remove>iluvatar:\S+) and )?"
    r"name (?:the|each machine's) NIC (?:meant )?by its (?:own )?MAC"
    r"(?: in (?:the own patches of [^(]+|\S+ own patches) \((?P<each>[^)]*)\)(?:, each selecting its own NIC's MAC)?)?"
    r": (?P<alias>\{apiVersion: .*\}), and (?P=field): (?P<name>nic\d+)"
)
_LINK_NAME_CASES = [
    (c["name"], m)
    for c in [*CASES, *INVALID]
    for m in [*c.get("warn", []), *c.get("expect", [])]
    if m.startswith("iluvatar:") and _ALIAS_FIX.match(m) and " configures a link by name only once a link of that name exists" in m
]


def _index(key: str, where: str) -> int:
    return int(key.removeprefix(where).split("]", 1)[0].strip("["))


@pytest.mark.parametrize(("name", "message"), _LINK_NAME_CASES, ids=[f"{n}-{k}" for k, (n, _) in enumerate(_LINK_NAME_CASES)])
def test_the_alias_a_link_name_message_offers_validates_and_warns_of_nothing(name: str, message: str, tmp_path: Path) -> None:
    # The alias document added where the message says (the same patches, or each machine's own), with a MAC no
    # inventory machine has for <its mac>, and its name written at the key: the stack validates, and no link name is
    # warned of there.
    case = next(c for c in [*CASES, *INVALID] if c["name"] == name)
    found = _ALIAS_FIX.match(message)
    assert found is not None
    sets = copy.deepcopy(case["set"])
    where = max((w for w in sets if found["key"].startswith(f"{w}[")), key=len)
    doc = sets[where][_index(found["key"], where)]
    field = found["field"]
    if field.startswith("links["):
        doc["links"][int(field[6:-1])] = found["name"]
    else:
        doc[field] = found["name"]
    targets = [f"iluvatar:{t}" for t in found["each"].replace("iluvatar:", "").split(", ")] if found["each"] else [where]
    for k, target in enumerate(targets):
        alias = yaml.safe_load(found["alias"].replace("<its mac>", f"28:d2:44:30:00:9{k}"))
        sets[target] = [*sets.get(target, []), alias]
    at = f"{found['key']}.{field}"
    if found["remove"]:
        removed = max((w for w in sets if found["remove"].startswith(f"{w}[")), key=len)
        gone = _index(found["remove"], removed)
        del sets[removed][gone]
        if removed == where and gone < _index(found["key"], where):
            at = f"{where}[{_index(found['key'], where) - 1}].{field}"
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), sets)), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path == at] == []
