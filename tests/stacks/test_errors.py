"""Problems and the error that carries them: one line each, counted, under the source's name."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stacks.errors import Problem, StackConfigError, show


def test_report_counts_the_problems_under_the_source() -> None:
    one = StackConfigError([Problem("iluvatar:nodes[3].ip", "192.168.1.5 is outside network.lan 192.168.0.0/24")])
    assert one.report() == "stack config: 1 problem:\n  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24"
    two = StackConfigError([Problem("a", "x"), Problem("b", "y")], "Pulumi.homelab.yaml")
    assert two.report().splitlines() == ["Pulumi.homelab.yaml: 2 problems:", "  a: x", "  b: y"]
    assert two.paths() == ["a", "b"] and str(two) == two.report()


@pytest.mark.parametrize(
    ("value", "spelt"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (5, "5"),
        (1.5, "1.5"),
        (float("inf"), ".inf"),
        (float("-inf"), "-.inf"),
        (float("nan"), ".nan"),
        (["Ilúvatar: Eä"], '["Ilúvatar: Eä"]'),  # quoted as written, not as \u escapes
        (["@home", "x"], '["@home", x]'),  # YAML refuses @ to start a plain value
        (["a", "b"], "[a, b]"),
        (("a",), "[a]"),
        ({"k": True, "n": None}, "{k: true, n: null}"),
        ({"manwe": {"role": "valar"}}, "{manwe: {role: valar}}"),
        (["kubeProxyReplacement: true"], '["kubeProxyReplacement: true"]'),
        (["true", "5", "", "a, b"], '["true", "5", "", "a, b"]'),
        (IPv4Address("192.168.0.1"), "192.168.0.1"),
        ("plain text: as written", "plain text: as written"),
        ("", '""'),
        ("  ", "'  '"),
    ],
)
def test_a_value_is_shown_in_the_stack_files_spelling(value: object, spelt: str) -> None:
    assert show(value) == spelt
