"""A pytest plugin for mutation runs: run each mutant's tests fastest first.

mutmut runs a mutant's tests with `-x` in the order it lists them; a mutant that a 0.01 s test kills
then still waits for a 3 s test listed before it. This orders the collected tests by the durations
mutmut recorded in its first run (`mutmut-stats.json`, in the folder pytest runs in), so a killed
mutant usually costs its fastest test. It changes no verdict: every listed test still runs until one fails.
scripts/mutation.py loads it (`-p scripts.mutation_order`); the tests and CI never do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stats = Path("mutmut-stats.json")
    if not stats.exists():
        return  # mutmut's first run, which records the durations
    durations: dict[str, float] = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
