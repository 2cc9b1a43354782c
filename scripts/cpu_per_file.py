"""A pytest plugin that records the CPU seconds each test costs, for the per-file table in
docs/proof/performance.md (CI time, fourth pass). Not a conftest: it runs only when asked for,

    PYTHONPATH=scripts ILUVATAR_CPU_LOG=/tmp/cpu bash scripts/test -p cpu_per_file

and writes one JSON line per test (setup, call and teardown together) to $ILUVATAR_CPU_LOG/<worker>.jsonl.
`python scripts/cpu_per_file.py $ILUVATAR_CPU_LOG` prints the per-file table.

What a test costs is the delta, around it, of
- this process's own CPU (getrusage RUSAGE_SELF: user and system),
- its reaped children's (RUSAGE_CHILDREN: every descendant the worker or a descendant waited for),
- its live descendants' (found through /proc by parent pid; utime, stime and the cutime, cstime of what they
  reaped), so a control plane started by one test and still running in the next charges each test the CPU it
  burnt meanwhile, and nothing twice when it is finally reaped.
What it misses: a process that left the worker's tree (double fork, a daemon re-parented to init, a container
runtime's shim) and the CPU a descendant burnt in the instant between its last /proc sample and its exit when
its parent never reaps it; the Go builds of `tools.gotools build`, which scripts/test runs beside pytest, not
in it. What a module- or session-scoped fixture builds is charged to the first test that uses it, its teardown
to the last (module) or to "<session>" (session).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

_TICK = os.sysconf("SC_CLK_TCK")


def _descendants_cpu(root: int) -> float:
    """CPU seconds of every live descendant of `root` (their own and what they reaped)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = raw[raw.rfind(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 after the name.
        cpu[pid] = sum(int(f) for f in fields[11:15]) / _TICK
    total, stack = 0.0, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def _sample() -> tuple[float, float, float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        own.ru_utime + own.ru_stime,
        reaped.ru_utime + reaped.ru_stime,
        _descendants_cpu(os.getpid()),
        time.monotonic(),
    )


class _Recorder:
    def __init__(self, out: Path) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        out.mkdir(parents=True, exist_ok=True)
        self._file = (out / f"{worker}.jsonl").open("a", encoding="utf-8")
        self._last = _sample()

    def _write(self, nodeid: str, before: tuple[float, float, float, float]) -> None:
        after = _sample()
        record = {
            "nodeid": nodeid,
            "self": round(after[0] - before[0], 3),
            "children": round(after[1] - before[1] + after[2] - before[2], 3),
            "wall": round(after[3] - before[3], 3),
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._last = after

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self) -> None:
        # Start-up and collection, charged to no file.
        self._write("<collection>", self._last)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        # From the end of the last test, so collection and the time between tests land somewhere.
        before = self._last
        yield
        self._write(item.nodeid, before)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        self._write("<session>", self._last)
        self._file.close()


def pytest_configure(config: pytest.Config) -> None:
    out = os.environ.get("ILUVATAR_CPU_LOG")
    # The controller of an xdist run runs no test (and its children are the workers): only the workers record.
    controller = not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", 0))
    if out and not controller:
        config.pluginmanager.register(_Recorder(Path(out)), "cpu_per_file_recorder")


def _table(directory: Path, top: int) -> str:
    per_file: dict[str, list[float]] = {}
    for log in sorted(directory.glob("*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            path = record["nodeid"].split("::")[0]
            row = per_file.setdefault(path, [0, 0.0, 0.0, 0.0])
            row[0] += 1
            row[1] += record["self"]
            row[2] += record["children"]
            row[3] += record["wall"]
    total = sum(r[1] + r[2] for r in per_file.values())
    rows = sorted(per_file.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    lines = [
        "| # | file | tests | CPU s | of which worker | of which children | wall s | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, (path, (n, own, kids, wall)) in enumerate(rows[:top], 1):
        cpu = own + kids
        lines.append(f"| {rank} | `{path}` | {int(n)} | {cpu:.1f} | {own:.1f} | {kids:.1f} | {wall:.1f} | {100 * cpu / total:.1f} % |")
    lines.append(f"\nall {len(per_file)} files: {total:.1f} s of CPU")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30))
