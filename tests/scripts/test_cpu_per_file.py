"""scripts/cpu_per_file.py, the per-file CPU recorder of docs/proof/performance.md (CI time, fourth pass): what it
charges a test and how it sums a run. It times nothing: it checks where CPU is put, not how much there is."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpu_per_file", ROOT / "scripts" / "cpu_per_file.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_live_childs_cpu_is_counted_and_a_reaped_one_is_not_counted_twice() -> None:
    cpu = _module()
    before = cpu._sample()
    # A child that burns CPU, then waits to be reaped: seen live through /proc, then through RUSAGE_CHILDREN.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ninput()"], stdin=subprocess.PIPE
    )
    # Sums of reaped and live: a descendant of an earlier test reaped meanwhile moves from the one to the other (in CI
    # the worker's `before` held 0.03 s of such a process, and the live delta alone came out 0.03 s short).
    deadline = time.monotonic() + 30
    while sum(cpu._sample()[1:3]) - sum(before[1:3]) < 0.4 and time.monotonic() < deadline:
        time.sleep(0.05)
    live = cpu._sample()
    assert live[2] >= 0.4  # the live descendant's, read from /proc (in clock ticks: 0.5 s burnt, 0.4 s asked)
    child.communicate(b"\n", timeout=30)
    reaped = cpu._sample()
    assert reaped[1] - before[1] >= 0.4  # reaped: in RUSAGE_CHILDREN now
    assert reaped[2] - before[2] < 0.1  # and no longer counted live
    # Across the two samples the child's CPU is counted once: what RUSAGE_CHILDREN gained, /proc lost.
    assert abs((reaped[1] + reaped[2]) - (live[1] + live[2])) < 0.2


def test_the_table_sums_each_file_over_its_tests_and_workers(tmp_path: Path) -> None:
    records = {
        "gw0": [("tests/a.py::one", 1.0, 2.0, 5.0), ("tests/b.py::one", 0.5, 0.0, 1.0), ("<collection>", 3.0, 0.0, 9.0)],
        "gw1": [("tests/a.py::two", 0.25, 0.75, 2.0)],
    }
    for worker, rows in records.items():
        lines = [json.dumps({"nodeid": n, "self": s, "children": c, "wall": w}) for n, s, c, w in rows]
        (tmp_path / f"{worker}.jsonl").write_text("\n".join(lines) + "\n")
    assert _module()._table(tmp_path, 2).splitlines() == [
        "| # | file | tests | CPU s | of which worker | of which children | wall s | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        "| 1 | `tests/a.py` | 2 | 4.0 | 1.2 | 2.8 | 7.0 | 53.3 % |",
        "| 2 | `<collection>` | 1 | 3.0 | 3.0 | 0.0 | 9.0 | 40.0 % |",
        "",
        "all 3 files: 7.5 s of CPU",
    ]
