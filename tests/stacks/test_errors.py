"""Problems and the error that carries them: one line each, counted, under the source's name."""

from __future__ import annotations

from stacks.errors import Problem, StackConfigError


def test_report_counts_the_problems_under_the_source() -> None:
    one = StackConfigError([Problem("iluvatar:nodes[3].ip", "192.168.1.5 is outside network.lan 192.168.0.0/24")])
    assert one.report() == "stack config: 1 problem:\n  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24"
    two = StackConfigError([Problem("a", "x"), Problem("b", "y")], "Pulumi.homelab.yaml")
    assert two.report().splitlines() == ["Pulumi.homelab.yaml: 2 problems:", "  a: x", "  b: y"]
    assert two.paths() == ["a", "b"] and str(two) == two.report()
