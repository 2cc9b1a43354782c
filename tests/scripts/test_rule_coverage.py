"""scripts/rule_coverage.py: which tests it runs against each neutralised rule."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rule_coverage", ROOT / "scripts" / "rule_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rule_coverage"] = module
    spec.loader.exec_module(module)
    return module


rule_coverage = _module()


def test_every_fixture_of_mistaken_stacks_is_run() -> None:
    # The own-LAN fixtures hold rules the homelab's cannot show (a Pi image past its support), and the warned ones the
    # warnings: without them those rules would be listed as uncovered.
    assert rule_coverage.FIXTURE_TESTS == (
        "tests/stacks/test_invalid_stacks.py",
        "tests/stacks/test_own_lan_stacks.py",
        "tests/stacks/test_warned_stacks.py",
    )


def test_a_fixture_without_its_test_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tests" / "fixtures").mkdir(parents=True)
    (tmp_path / "tests" / "stacks").mkdir()
    (tmp_path / "tests" / "fixtures" / "valid_stacks.yaml").write_text("[]\n")
    (tmp_path / "tests" / "fixtures" / "vlan_stacks.yaml").write_text("[]\n")
    with pytest.raises(FileNotFoundError, match=re.escape("tests/fixtures/vlan_stacks.yaml has no test tests/stacks/test_vlan_stacks.py")):
        rule_coverage.fixture_tests(tmp_path)
    (tmp_path / "tests" / "stacks" / "test_vlan_stacks.py").write_text("")
    assert rule_coverage.fixture_tests(tmp_path) == ("tests/stacks/test_vlan_stacks.py",)


def test_a_classmethod_validator_is_neutralised_by_returning_its_value_not_its_class() -> None:
    """`return cls` would hand the class on as the field's value and crash the next validator: every fixture then
    "fails", so the rule would read as covered whatever the fixtures. The value is the parameter after `cls`/`self`."""
    source = (
        "class PiImage:\n"
        "    @classmethod\n"
        "    def _release(cls, release: str) -> str:\n"
        "        if release != 'trixie':\n"
        "            raise ValueError('no')\n"
        "        return release\n"
        "    def _url(self, url: str) -> str:\n"
        "        if not url:\n"
        "            raise ValueError('no')\n"
        "        return url\n"
        "def plain(value: str) -> str:\n"
        "    if not value:\n"
        "        raise ValueError('no')\n"
        "    return value\n"
    )
    rules = [r for r in rule_coverage._model_rules("stacks/model.py", source) if r.what.startswith(("_release", "_url", "plain"))]
    assert sorted((r.start, r.replacement) for r in rules) == [(5, "return release"), (9, "return url"), (13, "return value")]


def test_day2_rules_are_tried_and_a_tuple_return_keeps_its_shape() -> None:
    """The changes refused against the last deployment are rules too (their fixtures carry the outputs); a rule that
    returns its problems with a flag loses only the problems, so the caller's unpacking still works."""
    assert "stacks/day2.py" in rule_coverage.RULE_FILES
    source = "def f(x):\n    if x:\n        return [Problem('p', 'm')], False\n    return [], True\n"
    [rule] = list(rule_coverage._statement_rules("stacks/day2.py", source))
    assert rule.apply(source).splitlines()[2] == "        return [], False"


def test_a_yield_is_neutralised_by_yielding_nothing_so_its_function_stays_a_generator() -> None:
    """A `pass` for the only `yield` of a function makes it return None, and its caller's `yield from` crashes: every
    fixture then fails, so the rule would read as covered whatever the fixtures. The warnings are such generators."""
    assert "stacks/warn.py" in rule_coverage.RULE_FILES
    source = "def _one(x):\n    if x:\n        yield Problem('p', 'm')\ndef warnings(x):\n    yield from _one(x)\n    problems += other(x)\n"
    rules = list(rule_coverage._statement_rules("stacks/warn.py", source))
    assert sorted((r.start, r.replacement) for r in rules) == [(3, "yield from ()"), (5, "yield from ()"), (6, "pass")]
    neutralised = next(r for r in rules if r.start == 3).apply(source)
    namespace: dict[str, object] = {"Problem": None}
    exec(compile(neutralised.split("def warnings")[0], "<rule>", "exec"), namespace)  # noqa: S102 - the test's own source
    assert list(namespace["_one"](True)) == []  # type: ignore[operator]
