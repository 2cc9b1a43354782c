"""Rule coverage: prove that every validation rule has a fixture that fails without it.

Each rule is neutralised in turn, in a scratch copy of the tree, and every broken-stack fixture
test is run against it: each `tests/fixtures/<name>_stacks.yaml` of mistaken stacks (the homelab's
`invalid_stacks.yaml`, `own_lan_stacks.yaml` for a LAN of its own, `warned_stacks.yaml` for the
homelab's valid stacks that warn; not `valid_stacks.yaml`) has its
test `tests/stacks/test_<name>_stacks.py`, which pins every problem line exactly. A rule whose removal
leaves them all green has no fixture, and is listed.

What counts as a rule, and how it is neutralised:
- `stacks/rules.py` and `stacks/load.py`: every statement that reports a problem (one that
  builds a `Problem`, or adds a helper's problems with `+=`, `extend` or `yield from`) becomes
  `pass` (a `return [Problem(...)]` becomes `return []`);
- `stacks/model.py` and `stacks/fields.py` (the field types it builds on): every `raise ValueError`
  in a field validator returns the value unchecked;
  every `Field` bound (`ge`, `le`, `min_length`) is dropped; every `_pattern(...)` field check
  accepts anything; every `Literal[...]` becomes `str`; `extra="forbid"` becomes `"ignore"`;
- `stacks/boards.py`: the `Literal` role and architecture types become `str`;
- `stacks/repository.py` (the GitOps repository's field checks the model uses): as `model.py`;
- `stacks/data_model.py` (the data-safety keys' models): as `model.py`; `stacks/data.py`: its rules;
- `stacks/logs_model.py` (the log store's keys): as `model.py`; `stacks/logs.py`: its rules;
- `stacks/secrets.py` (each `secure:` value's form, and the passphrase salt's): its rules;
- `stacks/credentials.py` (a credential written beside the rest, or inside a value): its rules;
- `stacks/netboot_mode.py` (the DHCP mode; its fixtures against the last deployment carry its `dnsmasqConf`): its rules;
- `stacks/versions.py` (the release each feature of the stack needs): its rules;
- `stacks/chart_values.py` (a chart value's key one typo from a key Iluvatar sets): its rules;
- `stacks/chart_images.py` (a chart value's image of another release than the chart ships): its rules and warnings;
- `stacks/chart_owned.py` (a chart value over a key Iluvatar owns, breaking the layer relying on it): its rules;
- `stacks/remote_model.py` (remote access's fields): as `model.py`; `stacks/remote_access.py`: its rules;
- `stacks/gitops.py`, `stacks/storage.py`, `stacks/apps.py`, `stacks/edge.py`, `stacks/power.py`,
  `stacks/monitoring.py`, `stacks/identity.py` and `stacks/discovery.py`: both kinds, their field checks and their rules
  (storage's removal rules too: their fixtures carry the last deployment's output, `deployed`);
- `stacks/addresses.py` (the one table of every layer's fixed address): its rules;
- `stacks/special_names.py` (the zones under a special-use suffix): its rules;
- `stacks/day2.py` (changes refused against the last deployment; its fixtures carry the `arda` and `ainur` outputs):
  its rules;
- `stacks/warn.py` (what a valid stack most likely does not mean): each warning, which its fixtures
  (`tests/fixtures/warned_stacks.yaml`, each a valid stack and its exact `warn` lines) then miss.
A `yield Problem(...)` or `yield from helper(...)` becomes `yield from ()`, which keeps its function a generator.

Usage: `python scripts/rule_coverage.py [--list] [--jobs N] [FILTER]` (FILTER: a substring of
the rule's location, e.g. `rules.py:1`). Exit status 1 when a rule is uncovered. About 5 minutes
for all rules on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Fixtures of stacks that validate, which no neutralised rule can turn red: not fixture tests of rules.
VALID_FIXTURES = ("valid_stacks.yaml",)


def fixture_tests(root: Path = ROOT) -> tuple[str, ...]:
    """The test of every fixture file of mistaken stacks, as a path from `root`; a fixture file without its test is an
    error, not a rule quietly left out."""
    out = []
    for fixture in sorted((root / "tests" / "fixtures").glob("*_stacks.yaml")):
        if fixture.name in VALID_FIXTURES:
            continue
        test = root / "tests" / "stacks" / f"test_{fixture.stem}.py"
        if not test.is_file():
            raise FileNotFoundError(f"{fixture.relative_to(root)} has no test {test.relative_to(root)}")
        out.append(str(test.relative_to(root)))
    return tuple(out)


FIXTURE_TESTS = fixture_tests()
RULE_FILES = (
    "stacks/rules.py",
    "stacks/load.py",
    "stacks/model.py",
    "stacks/fields.py",
    "stacks/boards.py",
    "stacks/repository.py",
    "stacks/gitops.py",
    "stacks/storage.py",
    "stacks/apps.py",
    "stacks/edge.py",
    "stacks/power.py",
    "stacks/data_model.py",
    "stacks/data.py",
    "stacks/logs_model.py",
    "stacks/logs.py",
    "stacks/monitoring.py",
    "stacks/identity.py",
    "stacks/secrets.py",
    "stacks/credentials.py",
    "stacks/versions.py",
    "stacks/chart_values.py",
    "stacks/chart_images.py",
    "stacks/chart_owned.py",
    "stacks/remote_model.py",
    "stacks/remote_access.py",
    "stacks/discovery.py",
    "stacks/special_names.py",
    "stacks/netboot_mode.py",
    "stacks/addresses.py",
    "stacks/encryption.py",
    "stacks/day2.py",
    "stacks/warn.py",
)
# The layers whose module holds both field checks and rules.
LAYERS = (
    "stacks/gitops.py",
    "stacks/storage.py",
    "stacks/apps.py",
    "stacks/edge.py",
    "stacks/power.py",
    "stacks/monitoring.py",
    "stacks/identity.py",
    "stacks/discovery.py",
    "stacks/encryption.py",
)
FIELD_BOUNDS = {"ge", "le", "min_length"}


@dataclass(frozen=True)
class Rule:
    """One rule and the edit that neutralises it: source lines [start, end] replaced by `replacement`."""

    file: str
    start: int  # 1-based, inclusive
    end: int
    col: int  # first column of the replaced text on `start`
    end_col: int  # last column (exclusive) on `end`
    replacement: str
    what: str

    @classmethod
    def over(cls, file: str, node: ast.stmt | ast.expr, replacement: str, what: str) -> Rule:
        """The rule that replaces the whole source of `node` with `replacement`."""
        return cls(file, node.lineno, node.end_lineno or node.lineno, node.col_offset, node.end_col_offset or 0, replacement, what)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.start}"

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        head = lines[self.start - 1][: self.col]
        tail = lines[self.end - 1][self.end_col :]
        return "".join([*lines[: self.start - 1], head + self.replacement + tail, *lines[self.end :]])


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(node))


def _adds_problems(stmt: ast.stmt) -> bool:
    """`out += helper(...)`, `problems.extend(...)`, `yield from helper(...)`: problems from a helper."""
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id in {"out", "problems"}:
        return True
    value = stmt.value if isinstance(stmt, ast.Expr) else None
    if isinstance(value, ast.YieldFrom):
        return True
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "extend"
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id in {"out", "problems"}
    )


def _short(source: str, node: ast.AST) -> str:
    text = " ".join((ast.get_source_segment(source, node) or "").split())
    return text if len(text) <= 110 else text[:107] + "..."


def _statement_rules(file: str, source: str) -> Iterator[Rule]:
    """Every statement that reports a problem, innermost first (no statement holding another's)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            for stmt in block if isinstance(block, list) else []:
                if (
                    isinstance(stmt, ast.Return)
                    and isinstance(stmt.value, ast.Tuple)
                    and stmt.value.elts
                    and isinstance(stmt.value.elts[0], ast.List)
                    and _calls(stmt.value.elts[0], "Problem")
                ):
                    # `return [Problem(...)], flag`: only the problems go; a bare `return []` would break the caller's
                    # unpacking, and a crash reads as a covered rule.
                    yield Rule.over(file, stmt.value.elts[0], "[]", _short(source, stmt))
                elif isinstance(stmt, ast.Return) and stmt.value is not None and _calls(stmt.value, "Problem"):
                    yield Rule.over(file, stmt, "return []", _short(source, stmt))
                elif (
                    isinstance(stmt, ast.Expr)
                    and isinstance(stmt.value, (ast.Yield, ast.YieldFrom))
                    and (_calls(stmt, "Problem") or _adds_problems(stmt))
                ):
                    # `yield Problem(...)` / `yield from helper(...)`: yields nothing instead. A bare `pass` in a generator
                    # whose only yield it was would turn it into a function returning None, and its caller's `yield from`
                    # or `list()` would crash: a crash reads as a covered rule.
                    yield Rule.over(file, stmt, "yield from ()", _short(source, stmt))
                elif isinstance(stmt, (ast.Expr, ast.AugAssign)) and (_calls(stmt, "Problem") or _adds_problems(stmt)):
                    yield Rule.over(file, stmt, "pass", _short(source, stmt))


def _own_nodes(func: ast.FunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, without those of functions nested in it (they are rules of their own)."""
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _model_rules(file: str, source: str) -> Iterator[Rule]:
    tree = ast.parse(source)
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef) or not func.args.args:
            continue
        # A classmethod validator's first parameter is the class (`cls`), a method's `self`: the value is the next one.
        params = [a.arg for a in func.args.args if a.arg not in ("cls", "self")]
        if not params:
            continue
        param = params[0]
        for stmt in _own_nodes(func):
            if isinstance(stmt, ast.Raise) and isinstance(stmt.exc, ast.Call) and getattr(stmt.exc.func, "id", "") == "ValueError":
                yield Rule.over(file, stmt, f"return {param}", f"{func.name}: {_short(source, stmt)}")
    # Literal types that no stack key is read with (boards.Firmware describes boards, not config).
    not_config = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "Firmware" for t in n.targets)}
    # Nor the types the editor schema is told a field takes (json_schema_input_type): hints, not checks.
    hints = {id(n) for kw in ast.walk(tree) if isinstance(kw, ast.keyword) and kw.arg == "json_schema_input_type" for n in ast.walk(kw.value)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Field":
            for kw in node.keywords:
                if kw.arg in FIELD_BOUNDS:
                    # Neutralise the bound by making it unreachable rather than reshaping the call.
                    loose = "0" if kw.arg == "min_length" else ("-(10**9)" if kw.arg == "ge" else "10**9")
                    yield Rule.over(file, kw.value, loose, f"Field({kw.arg}=...): {_short(source, node)}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_pattern":
            yield Rule.over(file, node, "BeforeValidator(lambda value: value)", _short(source, node))
        elif (
            isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal" and node.lineno not in not_config and id(node) not in hints
        ):
            yield Rule.over(file, node, "str", _short(source, node))
        elif isinstance(node, ast.keyword) and node.arg == "extra" and isinstance(node.value, ast.Constant) and node.value.value == "forbid":
            yield Rule.over(file, node.value, '"ignore"', 'extra="forbid"')


def discover() -> list[Rule]:
    rules: list[Rule] = []
    for file in RULE_FILES:
        source = (ROOT / file).read_text()
        if file in (
            "stacks/rules.py",
            "stacks/load.py",
            "stacks/secrets.py",
            "stacks/credentials.py",
            "stacks/versions.py",
            "stacks/chart_values.py",
            "stacks/chart_images.py",
            "stacks/chart_owned.py",
            "stacks/remote_access.py",
            "stacks/netboot_mode.py",
            "stacks/addresses.py",
            "stacks/special_names.py",
            "stacks/day2.py",
            "stacks/warn.py",
        ):
            rules += _statement_rules(file, source)
        elif file in ("stacks/data.py", "stacks/logs.py"):
            # Its rules only: its field checks live in stacks/data_model.py (Target's Literal is a parsed value's type).
            rules += _statement_rules(file, source)
        elif file in LAYERS:
            # A layer's checks: field checks (ValueError) and rules (Problem) in one module.
            rules += [*_statement_rules(file, source), *_model_rules(file, source)]
        else:
            rules += _model_rules(file, source)
    # A statement nested in another reported statement (none today) would be tried twice; keep both:
    # each is a distinct way to lose a problem.
    return sorted(set(rules), key=lambda r: (RULE_FILES.index(r.file), r.start, r.col))


def _scratch_tree() -> Path:
    """A copy of what the fixture tests read; stacks/ is copied so one file can be edited."""
    scratch = Path(tempfile.mkdtemp(prefix="rule-coverage-"))
    for name in ("stacks", "tests"):
        shutil.copytree(ROOT / name, scratch / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in ROOT.glob("Pulumi.*yaml"):
        shutil.copy(path, scratch / path.name)
    shutil.copy(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    return scratch


def _run_fixture_tests(tree: Path) -> bool:
    """True when the fixture tests pass (so nothing noticed the change)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=", *FIXTURE_TESTS],
        cwd=tree,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    return result.returncode == 0


def check_rule(rule: Rule) -> bool:
    """True when some fixture test fails without the rule."""
    tree = _scratch_tree()
    try:
        path = tree / rule.file
        mutated = rule.apply(path.read_text())
        ast.parse(mutated)  # a neutralisation must stay valid Python, or the check proves nothing
        path.write_text(mutated)
        return not _run_fixture_tests(tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("filter", nargs="?", default="", help="only rules whose location contains this, e.g. rules.py:1")
    parser.add_argument("--list", action="store_true", help="list the rules and how each is neutralised, run nothing")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    rules = [r for r in discover() if args.filter in r.where]
    if args.list:
        for r in rules:
            print(f"{r.where}: {r.what}  ->  {r.replacement}")
        print(f"{len(rules)} rules")
        return 0
    tree = _scratch_tree()
    try:
        if not _run_fixture_tests(tree):
            print("the fixture tests fail on the unmodified tree; fix that first", file=sys.stderr)
            return 2
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        covered = list(pool.map(check_rule, rules))
    uncovered = [r for r, ok in zip(rules, covered, strict=True) if not ok]
    for r in uncovered:
        print(f"UNCOVERED {r.where}: {r.what}")
    print(f"{len(rules) - len(uncovered)}/{len(rules)} rules have a fixture that fails without them")
    return 1 if uncovered else 0


if __name__ == "__main__":
    sys.exit(main())
