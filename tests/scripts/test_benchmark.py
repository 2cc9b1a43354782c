"""The benchmark's generated stacks (scripts/benchmark.py): valid, and with every layer the homelab has.

Timing is the benchmark's job, never a test's; this only keeps its inputs from rotting as the
stack model grows (a new required key once made every benchmark stack invalid, unnoticed).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from stacks import load_stack_file

ROOT = Path(__file__).resolve().parents[2]


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arda_nodes", [10, 1000])
def test_the_generated_stacks_are_valid_homelabs(arda_nodes: int, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bench.yaml"
    path.write_text(yaml.safe_dump(_benchmark().stack_doc(arda_nodes), sort_keys=False))
    stack = load_stack_file(path)
    assert len(stack.arda_nodes) == arda_nodes
    assert [n.name for n in stack.nodes[:3]] == ["pi-0", "pi-1", "pi-2"]
    # Every layer runs: the Ainur with their mirror, GitOps, storage and the edge's apps.
    assert stack.ainur is not None and stack.ainur.git_mirror is not None
    assert stack.gitops is not None and stack.storage is not None
    assert [a.name for a in stack.apps] == ["home-assistant", "jellyfin"]


def test_each_goal_command_runs_on_the_homelab(tmp_path: Path) -> None:
    """What the goals time must succeed, or the benchmark measures an early exit (validate refused the shipped homelab
    for its unset secrets, and the benchmark stopped at its first goal, unnoticed)."""
    bench = _benchmark()
    homelab = bench.homelab_with_secrets(tmp_path)
    for name, args, _ in bench.GOALS:
        argv = [a.replace("{out}", str(tmp_path / f"goal-{name}")).replace("{homelab}", str(homelab)) for a in args]
        _, _, out = bench.run_child([sys.executable, "-m", "iluvatar", *argv])
        if name == "validate":
            assert out.startswith(f"{homelab}: valid\n"), out
        else:
            assert (tmp_path / "goal-render" / "plan.txt").is_file(), out
    assert [name for name, _, _ in bench.GOALS] == ["validate", "render"]
