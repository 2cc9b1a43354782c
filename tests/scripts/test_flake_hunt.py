"""scripts/flake_hunt.py: which tests a run's output says failed, with their text, read from real pytest output (the
same xdist run the README's command makes), and the report's exact lines."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flake_hunt", ROOT / "scripts" / "flake_hunt.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flake_hunt"] = module
    spec.loader.exec_module(module)
    return module


hunt = _module()

TESTS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("the lab did not start")

def test_passes():
    assert 1 == 1

def test_fails():
    got = "Timeout was reached"
    assert "kube-apiserver stand-in" in got

def test_errors(broken):
    pass

def test_with_a_name_long_enough_to_fill_the_title_line_of_its_failure_section_in_the_output_of_pytest():
    assert "short" == "long"

class TestGroup:
    def test_in_a_class(self):
        helper()

def helper():
    assert [1, 2] == [1, 3]
"""


def test_the_failures_of_a_real_xdist_run_are_read_with_their_text(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-n", "2", "--dist", "loadfile", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 1, run.stdout
    found = hunt.failures_in(run.stdout)
    long = "test_sample.py::test_with_a_name_long_enough_to_fill_the_title_line_of_its_failure_section_in_the_output_of_pytest"
    assert sorted(found) == ["test_sample.py::TestGroup::test_in_a_class", "test_sample.py::test_errors", "test_sample.py::test_fails", long]
    assert "assert 'short' == 'long'" in found[long]
    assert found["test_sample.py::test_fails"].startswith("failed:\n")
    assert "assert 'kube-apiserver stand-in' in 'Timeout was reached'" in found["test_sample.py::test_fails"]
    assert found["test_sample.py::test_errors"].startswith("error:\n")
    assert "RuntimeError: the lab did not start" in found["test_sample.py::test_errors"]
    assert "assert [1, 2] == [1, 3]" in found["test_sample.py::TestGroup::test_in_a_class"]


def test_a_passing_run_has_no_failures() -> None:
    assert hunt.failures_in("........ [100%]\n============ 8 passed in 1.00s ============\n") == {}


def test_the_report_counts_each_test_across_runs() -> None:
    runs = [
        hunt.Run(1, 0, 720.0, 930.0),
        hunt.Run(2, 1, 724.0, 941.0, {"tests/netns/test_x.py::test_a": "failed:\nE   assert 1 == 2"}),
        hunt.Run(3, 2, 30.0, 12.0, tail="error: uv sync failed"),
    ]
    assert hunt.report("abc123", runs) == "\n".join(
        [
            "# Flake hunt on abc123",
            "",
            "3 runs, 1 passed.",
            "",
            "| run | exit | wall | CPU (user + sys) | failed tests |",
            "|---|---|---|---|---|",
            "| 1 | 0 | 12.0 min | 930 s | 0 |",
            "| 2 | 1 | 12.1 min | 941 s | 1 |",
            "| 3 | 2 | 0.5 min | 12 s | 0 |",
            "",
            "## Tests that failed at least once",
            "",
            "### tests/netns/test_x.py::test_a: 1 of 3 (runs 2)",
            "",
            "```",
            "failed:\nE   assert 1 == 2",
            "```",
            "",
            "## Run 3 failed with no failing test in its report",
            "",
            "```",
            "error: uv sync failed",
            "```",
            "",
        ]
    )
