"""Problems and the error that carries them: one line each, counted, under the source's name."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stacks.errors import Problem, StackConfigError, show, yaml_number_text
from stacks.load import load_yaml


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


# A serial's 8 characters written unquoted, as the stack's YAML reader (Pulumi's yaml.v3) reads them, and the text the
# number YAML made of them is said to be written as.
@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("12345678", ("12345678", "digits alone are a number to YAML")),
        ("01234567", ("01234567", "a leading 0 makes digits an octal number to YAML")),
        ("00000017", ("00000017", "a leading 0 makes digits an octal number to YAML")),
        ("01234589", ("01234589", "digits with a leading 0 and an 8 or a 9 are a decimal number to YAML")),
        ("12345e67", ("12345e67", "digits, an e and digits are a number with an exponent to YAML")),
        ("1234e056", ("1234e056 or 12340e55", "digits, an e and digits are a number with an exponent to YAML")),
        ("5e813307", ("", "digits, an e and digits are a number with an exponent to YAML, here too large for a float, so infinite")),
        ("9ffefdef", None),
        ("true", None),
    ],
)
def test_the_text_an_unquoted_serial_was_read_from(written: str, said: tuple[str, str] | None) -> None:
    assert yaml_number_text(load_yaml(f"serial: {written}")["serial"], 8) == said
