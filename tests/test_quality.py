"""The code stays lint-clean, formatted and type-checked: run as part of the test suite so CI enforces it.

Their caches live with the project's other caches ($ILUVATAR_CACHE, outside the repository): a fresh clone
then checks only what changed (mypy took 35 s from nothing, a few seconds warm), and no cache folder appears
in the working tree.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from iluvatar.golang import cache_dir
from tests.edit import ROOT


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy", "--cache-dir", str(cache_dir() / "mypy"), "."]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    env = {**os.environ, "RUFF_CACHE_DIR": str(cache_dir() / "ruff")}
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
