"""Random valid stacks on real control planes, as tests/kube/test_program.py deploys the shipped ones: every
object admitted, a second `up` that changes nothing, and every workload's pods admitted and scheduled where
the inventory means them. One stack with the Ainur and one without, each on control planes of its own (a file
of its own too, so a second worker runs it beside the shipped stacks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from stacks.load import StackFile
from tests.kube.deploy import deployed, problems
from tests.strategies import raw_stacks

pytestmark = pytest.mark.kube


def _random_stack(ainur: bool) -> dict[str, Any]:
    """One random valid stack, with or without the Ainur (the last of a few draws: the first are Hypothesis's simplest)."""
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(raw_stacks(ainur=ainur))
    def draw(raw: dict[str, Any]) -> None:
        drawn.append(raw)

    draw()
    return drawn[-1]


@pytest.mark.parametrize("ainur", [True, False], ids=["with-ainur", "arda-only"])
def test_a_random_stack_is_admitted_and_scheduled(ainur: bool, tmp_path: Path) -> None:
    raw = _random_stack(ainur)
    stack_file = StackFile(Path("Pulumi.random.yaml"), {"pulumi:disable-default-providers": ["*"], **raw}, frozenset())
    with deployed(stack_file, tmp_path) as deployment:
        stack = json.dumps(raw, indent=1)
        assert deployment.report.refusals == [], "\n".join([*deployment.report.refusals, stack])
        assert deployment.walker.reapply() == [], stack
        assert problems(deployment) == [], "\n".join([*problems(deployment), stack])
        assert deployment.workload("arda", "DaemonSet kube-system/cilium").nodes == deployment.nodes("arda"), stack
        assert len(deployment.workload("arda", "Deployment kube-system/coredns").nodes) == 2, stack
        if deployment.stack.ainur is not None:
            [node] = deployment.workload("ainur", "Deployment netboot/netboot").nodes
            maiar = deployment.nodes("ainur", iluvatar__role="maiar")
            assert node in (maiar or deployment.nodes("ainur")), stack
            assert deployment.workload("ainur", "DaemonSet netboot/netboot-cache").nodes == deployment.nodes("ainur"), stack
