"""Suite-wide rules: in CI a skipped test is a failure, never a silent pass.

CI is told apart by the `CI` variable (`.ci/run` sets CI=1; CI services set CI=true). Outside CI
a test may still skip for a reason a developer's machine has (no root for network namespaces),
and `-ra` lists the reason at the end of the run.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Generator

import pytest

from iluvatar.cli import GC_THRESHOLDS

# The real control plane's fixtures (kube_talos, kube_k3s, kube_fresh, kube_namespace), for every test directory.
pytest_plugins = ("tests.kube.plugin",)


def pytest_configure(config: pytest.Config) -> None:
    # The tests run the program under mocks about ninety times, each allocating as `iluvatar render` does: the
    # command's GC thresholds took a sixth of the CPU off the component tests.
    gc.set_threshold(*GC_THRESHOLDS)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _reason(longrepr: object) -> str:
    """A skip's (path, line, message) as `path:line: message`."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, message = longrepr
        return f"{path}:{line}: {message}"
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {_reason(report.longrepr)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"a module skipped itself in CI, where every test must run: {_reason(report.longrepr)}"
    return report
