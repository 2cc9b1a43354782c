"""The layers import downwards only: no import circle among the project's modules.

An import inside a function counts: it hides a circle from the interpreter (the module is already half
loaded when it runs), not from the next engineer, and which side loads first then depends on who
imported whom first (plans.talos reaching plans.backup at import time once broke `pulumi up` alone).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.edit import ROOT

PACKAGES = ("stacks", "plans", "components", "iluvatar", "tools")


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every Python module of the packages, by dotted name (a package by its own name)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(found: Mapping[str, Path]) -> dict[str, set[str]]:
    """Which of `found` each module imports, anywhere in its body."""

    def known(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [known(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [known(f"{node.module}.{alias.name}") for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t is not None and t != name}
    return graph


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm, iteratively), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        part.append(member)
                        if member == node:
                            break
                    if len(part) > 1:
                        found.append(sorted(part))
    return sorted(found)


def test_no_module_of_the_project_imports_itself_round_a_circle() -> None:
    found = modules()
    # The finder sees the layers at all: stacks.model, plans.talos and components.arda are read, with their imports.
    graph = imports(found)
    assert {"stacks.data_model", "stacks.fields"} <= graph["stacks.model"]
    assert {"plans.backup", "plans.power"} <= graph["plans.talos"]
    assert "plans.talos" in graph["components.arda"]
    assert circles(graph) == []


def test_a_circle_is_found_however_it_is_imported(tmp_path: Path) -> None:
    """The circles this test once found: stacks.model and stacks.data_model at module level, and plans.talos
    reaching plans.backup inside a function (backup -> gitops -> cilium -> talos), plus an unrelated chain."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "plans").mkdir()
    files = {
        "stacks/__init__.py": "",
        "stacks/model.py": "from stacks.fields import Model\nfrom stacks.data_model import Backup\n",
        "stacks/data_model.py": "from stacks.model import Label\n",
        "stacks/fields.py": "import re\n",
        "plans/__init__.py": "",
        "plans/talos.py": "from plans import power\n\ndef patch():\n    from plans import backup\n",
        "plans/backup.py": "from plans import gitops\n",
        "plans/gitops.py": "from plans.cilium import deep_merge\n",
        "plans/cilium.py": "import plans.talos\n",
        "plans/power.py": "from stacks.model import Node\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    graph = imports(modules(tmp_path, ("stacks", "plans")))
    assert graph["plans.talos"] == {"plans.power", "plans.backup"}
    assert circles(graph) == [["plans.backup", "plans.cilium", "plans.gitops", "plans.talos"], ["stacks.data_model", "stacks.model"]]
    assert circles({"a": ["b"], "b": ["c"], "c": []}) == []
    assert circles({"a": ["b"], "b": ["a"], "c": ["c"]}) == [["a", "b"]]
