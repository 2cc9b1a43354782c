"""In CI a skip fails the run (tests/conftest.py); elsewhere it stays a skip with its reason listed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edit import ROOT

SKIPPING = """
import pytest

def test_skips_itself():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="never on this machine")
def test_marked_skip():
    pass

def test_runs():
    assert True
"""
MODULE_SKIP = """
import pytest

pytest.skip("this module cannot run here", allow_module_level=True)
"""


def _run(tmp_path: Path, ci: str | None, module: str = SKIPPING) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(module)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci is not None else {})
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-rfEs", str(tmp_path)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", ["1", "true"])
def test_a_skip_fails_in_ci(tmp_path: Path, ci: str) -> None:
    result = _run(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    assert " 1 failed, 1 passed, 1 error in " in result.stdout.splitlines()[-1]
    assert (
        f"FAILED test_skipping.py::test_skips_itself - skipped in CI, where every test must run: {tmp_path}/test_skipping.py:5: Skipped: no frobnicator here"
        in result.stdout
    )
    # A skipif mark skips at setup, so it fails as an error.
    assert (
        f"ERROR test_skipping.py::test_marked_skip - skipped in CI, where every test must run: {tmp_path}/test_skipping.py:7: Skipped: never on this machine"
        in result.stdout
    )


def test_a_module_that_skips_itself_fails_in_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "1", MODULE_SKIP)
    assert result.returncode == 2, result.stdout  # a collection error stops the run
    assert "ERROR test_skipping.py - a module skipped itself in CI, where every test must run" in result.stdout


@pytest.mark.parametrize("ci", [None, "0", "false"])
def test_a_skip_is_a_listed_skip_outside_ci(tmp_path: Path, ci: str | None) -> None:
    result = _run(tmp_path, ci)
    assert result.returncode == 0, result.stdout
    assert " 1 passed, 2 skipped in " in result.stdout.splitlines()[-1]
    assert "no frobnicator here" in result.stdout and "never on this machine" in result.stdout
    module = _run(tmp_path, ci, MODULE_SKIP)
    assert module.returncode == 5 and " 1 skipped in " in module.stdout.splitlines()[-1], module.stdout  # 5: nothing ran
