"""The control-plane fixtures' rule: a test that uses one without the `kube` marker does not even collect
(tests/kube/plugin.py), so `pytest -m kube` cannot miss it. Nothing here starts a control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.edit import ROOT

UNMARKED = """
import pytest

def test_forgot_the_marker(kube_talos):
    pass

@pytest.mark.kube
def test_marked(kube_k3s):
    pass
"""


def test_a_test_using_a_control_plane_without_the_kube_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.kube.plugin",)\n')
    (tmp_path / "test_unmarked.py").write_text(UNMARKED)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--collect-only", "-q", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "these tests use a control plane but lack @pytest.mark.kube:\n  test_unmarked.py::test_forgot_the_marker\n" in result.stderr
    assert "test_marked" not in result.stderr
