"""Valid variants of the homelab stack that warn (tests/fixtures/warned_stacks.yaml): each validates, as `iluvatar
validate` and `pulumi preview` check it, and stacks.warn gives exactly the expected warnings, none refusing it (with an
`arda` output, stacks.day2's after them). A warning neutralised makes a case here fail (scripts/rule_coverage.py)."""

from __future__ import annotations

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
