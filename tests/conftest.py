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
from tests.first_collection import cache_folder, first_collection

# The real control plane's fixtures (kube_talos, kube_k3s, kube_fresh, kube_namespace), for every test directory.
pytest_plugins = ("tests.kube.plugin",)


def pytest_configure(config: pytest.Config) -> None:
    # The tests run the program under mocks about ninety times, each allocating as `iluvatar render` does: the
    # command's GC thresholds took a sixth of the CPU off the component tests.
    gc.set_threshold(*GC_THRESHOLDS)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, object, object]:
    # On a fresh clone the workers would each compile the same modules at once (tests/first_collection.py). Only a
    # worker collects: pytest-xdist's controller runs this hook and collects nothing (xdist 3.8.0 dsession.py:103
    # `pytest_collection` returns True), so its marker would say a collection happened that did not.
    if not hasattr(session.config, "workerinput"):
        return (yield)
    with first_collection(cache_folder()):
        return (yield)


# The files that take longest, handed out to the workers first. scripts/test runs a file's tests on one worker
# (--dist loadfile) in collection order (--no-loadscope-reorder: xdist's own order puts the files with the most
# tests first, and these few-test files last, where they were the run's last minutes). Seconds of each file's tests
# in a full warm run on a fresh clone, 4 workers on 2 cores, 5,512 tests in 14 min 26 s (CI-111's; the list every run
# ends with; docs/proof/performance.md, CI time). The order changes how long a run takes, never a result.
SLOWEST = (
    "tests/netns/test_dhcp_fence.py",  # 263 s
    "tests/netns/test_service_address.py",  # 174 s
    "tests/netns/test_pi_roll.py",  # 172 s
    "tests/netns/test_k3s_steps.py",  # 166 s
    "tests/netns/test_pi_netboot.py",  # 112 s
    "tests/kube/test_kube_vip_roll.py",  # 110 s
    "tests/netns/test_household.py",  # 99 s
    "tests/upgrader/test_disrupt.py",  # 90 s
    "tests/plans/test_k3s.py",  # 89 s
    "tests/kube/test_program.py",  # 77 s
    "tests/netns/test_logs_outage.py",  # 74 s
    "tests/upgrader/test_kubeupgrade.py",  # 74 s
    "tests/upgrader/test_talos_steps.py",  # 72 s
    "tests/netns/test_logs.py",  # 70 s
    "tests/kube/test_control_plane.py",  # 68 s
    "tests/kube/test_breaks.py",  # 64 s
    "tests/upgrader/test_path.py",  # 62 s
    "tests/test_drill_headscale.py",  # 56 s
    "tests/netns/test_dnsmasq_records.py",  # 54 s
    "tests/components/test_day2.py",  # 54 s
    "tests/test_drill.py",  # 50 s
    "tests/netns/test_remote_access.py",  # 45 s
    "tests/upgrader/test_static_pods.py",  # 42 s
    "tests/kube/test_remote_access.py",  # 41 s
    "tests/netns/test_pi_nfs.py",  # 40 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOWEST)))  # stable: the rest as collected


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


# Each test file's wall time over the run, summed from its tests' setup, call and teardown as the reports reach this
# process (with xdist, the controller, from every worker): the run's slowest files close its output, the figures
# docs/proof/performance.md's passes start from, and SLOWEST above is ordered by.
_FILE_SECONDS: dict[str, float] = {}
SLOWEST_SHOWN = 25


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FILE_SECONDS:
        return
    total = sum(_FILE_SECONDS.values())
    terminalreporter.write_sep("=", f"the {SLOWEST_SHOWN} slowest test files (seconds of their tests, {total:.0f} s in all)")
    for path, seconds in sorted(_FILE_SECONDS.items(), key=lambda item: -item[1])[:SLOWEST_SHOWN]:
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
