"""The suite on several workers, as scripts/test runs it (pytest-xdist): what a test file builds once stays built
once, and the slowest files start first.

A file's tests go to one worker, so a module-scoped fixture (a stack deployed on fresh control planes,
the Pis' SSH lab) is built once, not once per worker that happens to get one of its tests. Checked on a
suite of its own, with the real tests/conftest.py and the options scripts/test passes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests import conftest
from tests.edit import ROOT

MODULE = """
import os
import pytest

@pytest.fixture(scope="module")
def built():
    with open("built.log", "a") as log:
        log.write(f"{__name__} {os.getpid()}\\n")

@pytest.mark.parametrize("n", range(12))
def test_uses_it(built, n):
    pass
"""


def worker_options() -> list[str]:
    """The pytest options scripts/test puts before the caller's, with two workers for the default."""
    line = re.search(r'^\.venv/bin/python -m pytest (.*) "\$@"', (ROOT / "scripts" / "test").read_text(), re.MULTILINE)
    assert line is not None, "scripts/test runs no pytest"
    return [arg.replace("$workers", "2") for arg in shlex.split(line.group(1))]


def test_a_files_tests_stay_on_one_worker_so_its_module_fixtures_are_built_once(tmp_path: Path) -> None:
    options = worker_options()
    assert options[:2] == ["-n", "2"]
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    names = [f"test_file_{i}" for i in range(4)]
    for name in names:
        (tmp_path / f"{name}.py").write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q", *options, str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("48 passed")
    built = [line.split() for line in (tmp_path / "built.log").read_text().splitlines()]
    assert sorted(module for module, _ in built) == names  # each file's fixture once
    assert len({pid for _, pid in built}) == 2  # and both workers had work


def test_the_slowest_files_are_handed_out_first_and_the_rest_as_collected() -> None:
    assert "--no-loadscope-reorder" in worker_options()  # else xdist hands out the files with the most tests first
    items: list[Any] = [
        SimpleNamespace(nodeid=nodeid)
        for nodeid in (
            "tests/a/test_one.py::test_x",
            "tests/kube/test_breaks.py::test_b",
            "tests/a/test_two.py::test_y",
            "tests/kube/test_program.py::test_p[homelab]",
            "tests/a/test_one.py::test_z",
            "tests/kube/test_program.py::test_p[rk1]",
        )
    ]
    conftest.pytest_collection_modifyitems(items)
    assert [item.nodeid for item in items] == [
        "tests/kube/test_program.py::test_p[homelab]",
        "tests/kube/test_program.py::test_p[rk1]",
        "tests/kube/test_breaks.py::test_b",
        "tests/a/test_one.py::test_x",
        "tests/a/test_two.py::test_y",
        "tests/a/test_one.py::test_z",
    ]


def test_every_file_named_slowest_exists() -> None:
    # A renamed file would silently fall back to the end of the queue.
    assert [path for path in conftest.SLOWEST if not (ROOT / path).is_file()] == []
