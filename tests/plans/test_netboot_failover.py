"""The failover bound (plans.netboot.failover): summed from the program's own timers, and stated in the docs as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from plans.netboot import failover

AINUR = Path(__file__).resolve().parent.parent.parent / "docs" / "layers" / "ainur.md"


def test_the_bound_is_the_sum_of_the_steps_each_at_its_longest() -> None:
    """16 s of grace seen in whole 5 s checks from the check after the death (25 s), the toleration (5 s), the pod's
    start (5 s), a readiness period (5 s), and a new kube-vip candidate's whole lease plus a jittered retry (7.2 s)."""
    assert [s.seconds for s in failover.steps()] == [25.0, 5.0, 5.0, 5.0, 7.2]
    assert failover.bound() == pytest.approx(47.2)
    assert failover.status_frequency() == 4.0


def test_a_duration_is_whole_seconds() -> None:
    assert failover.seconds("16s") == 16.0
    with pytest.raises(ValueError, match="not a duration in whole seconds: '1m'"):
        failover.seconds("1m")


def test_the_docs_state_the_programs_bound() -> None:
    text = AINUR.read_text()
    assert f"another takes over within **{failover.bound():g} s**" in text
    assert f"| + {failover.steps()[-1].seconds:g} s |" in text
