"""Mutation testing: break the code in small ways and count the breaks the tests catch.

Runs mutmut (pinned in pyproject.toml's `mutation` dependency group) on one target, in a scratch copy of the
repository, so the working tree stays clean and two targets can run side by side. mutmut copies
that tree to `mutants/`, runs the target's tests once to learn which tests reach each function,
then, for each mutant, only those tests. mutmut mutates code inside functions (module-level
tables such as `stacks.boards.BOARDS` are not mutated; `scripts/rule_coverage.py` covers the
rules that are data).

Usage:
  .venv/bin/uv sync --group mutation
  .venv/bin/python scripts/mutation.py stacks            # or: plans, or a module: plans.ipam, stacks.rules
  .venv/bin/python scripts/mutation.py stacks --keep DIR # keep mutmut's tree to inspect (`mutmut show NAME` there)
  .venv/bin/python scripts/mutation.py plans.talos --keep DIR --again  # after adding tests: re-run DIR's survivors

It prints the score per module (killed / all mutants) and writes every survivor's diff to
`<scratch>/survivors.txt` (printed path). About 30 minutes for `stacks` on 2 cores; it need not run
in CI. Record the scores in docs/proof/mutation.md. Where mutmut's start-up per mutant makes a run too slow (a
loaded machine), scripts/mutation_fork.py runs a kept tree's mutants with pytest started once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each target mutates, and the tests that mirror or reach it. Integration tests that run
# the whole program (tests/test_program.py, tests/components/, render) are left out: each would
# cost seconds per mutant, and a module's own tests should catch a break in it.
# A plans/ module is scored by its mirror, tests/plans/test_<module>*.py, and by these too:
EXTRA_TESTS: dict[str, list[str]] = {
    # k3s's config and kube-vip pod are tested where they are used: the Pis' cloud-init and the netboot pods.
    "plans.k3s": ["tests/plans/test_cloudinit.py", "tests/plans/test_netboot.py"],
    # The diagram's picture is pinned where the CLI draws it (the README's SVG, texts and boxes read back).
    "plans.diagram": ["tests/iluvatar/test_diagram.py"],
    # Local volumes' documents are read where they are used: the storage plan's and Talos's machine configs.
    "plans.local_volumes": ["tests/plans/test_storage.py", "tests/plans/test_talos.py"],
}


def _plans_targets() -> dict[str, tuple[list[str], list[str]]]:
    """One target per plans/ module (`plans.talos`) or package (`plans.netboot`, all its modules), each with its mirroring tests."""
    targets: dict[str, tuple[list[str], list[str]]] = {}
    modules = [(s.stem, [f"plans/{s.name}"]) for s in (ROOT / "plans").glob("*.py") if s.stem != "__init__"]
    packages = [(d.name, [f"plans/{d.name}/*"]) for d in (ROOT / "plans").iterdir() if (d / "__init__.py").is_file()]
    for stem, mutate in sorted(modules + packages):
        name = f"plans.{stem}"
        mirror = [str(t.relative_to(ROOT)) for t in sorted((ROOT / "tests" / "plans").glob(f"test_{stem}*.py"))]
        targets[name] = (mutate, list(dict.fromkeys(mirror + EXTRA_TESTS.get(name, []))))
    # A package's module alone (`plans.netboot.roll`), scored by the whole package's mirrors: a package's tests are
    # split by what they render, not one file per module, and a run of one module takes minutes, not hours.
    for package, _ in packages:
        for source in sorted((ROOT / "plans" / package).glob("*.py")):
            if source.stem != "__init__":
                targets[f"plans.{package}.{source.stem}"] = ([f"plans/{package}/{source.name}"], targets[f"plans.{package}"][1])
    return targets


PLANS = _plans_targets()
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "stacks": (["stacks/*"], ["tests/stacks"]),
    # All of plans/, each module with its mirror (one mutmut run; per module, run `plans.<module>`).
    "plans": (["plans/*"], sorted({t for _, tests in PLANS.values() for t in tests})),
    **PLANS,
}
# Tests in the mirroring files that run the whole program (the offline simulation, seconds each): left
# out of every mutant's run like tests/test_program.py; the module's own exact-value tests must catch a break.
WHOLE_PROGRAM = ["tests/plans/test_cloudflare.py::test_cloudflared_loads_the_configuration_the_program_sends"]
IGNORE = shutil.ignore_patterns(
    ".venv", "mutants", ".git", "__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", "render", "out"
)


def _scratch(only_mutate: list[str], tests: list[str], keep: Path | None) -> Path:
    tree = keep if keep is not None else Path(tempfile.mkdtemp(prefix="iluvatar-mutation-"))
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(ROOT, tree, ignore=IGNORE)
    _configure(tree, only_mutate, tests)
    return tree


def _configure(tree: Path, only_mutate: list[str], tests: list[str]) -> bool:
    """Set the target's mutmut settings in the tree's pyproject.toml; whether they changed."""
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    # Each mutant's tests run fastest first (scripts/mutation_order.py); whole-program tests are deselected.
    cli = ["-p", "no:cacheprovider", "-q", "-p", "scripts.mutation_order", *(a for t in WHOLE_PROGRAM for a in ("--deselect", t))]
    also = re.search(r"^also_copy = (.*)$", text, re.MULTILINE)
    assert also is not None, "pyproject.toml's [tool.mutmut] has no also_copy"
    settings = (
        ("only_mutate", only_mutate),
        ("pytest_add_cli_args_test_selection", tests),
        ("pytest_add_cli_args", cli),
        ("also_copy", [*json.loads(also.group(1)), "scripts/"]),
    )
    for key, value in settings:
        line = f"{key} = {json.dumps(value)}"
        pattern = re.compile(rf"^{key} = .*$", re.MULTILINE)
        text = pattern.sub(line, text) if pattern.search(text) else text.replace("[tool.mutmut]\n", f"[tool.mutmut]\n{line}\n", 1)
    changed = text != pyproject.read_text()
    pyproject.write_text(text)
    return changed


def _module(mutant: str) -> str:
    # mutmut names a mutant `<module>.x<sep><function>__mutmut_<n>`: the module is what precedes `.x`.
    return mutant.split(".x", 1)[0]


def _statuses(mutmut: Path, tree: Path, env: dict[str, str]) -> dict[str, str]:
    results = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=tree, env=env, capture_output=True, text=True, check=True)
    statuses: dict[str, str] = {}
    for line in results.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            statuses[name] = status
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", help=f"one of {', '.join(TARGETS)}, or a module such as stacks.rules")
    parser.add_argument("--keep", type=Path, help="build the scratch tree here and keep it")
    parser.add_argument(
        "--again", action="store_true", help="with --keep DIR of an earlier run: copy the current tests/ there and re-run only its survivors"
    )
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)

    names: list[str] = []
    if args.target in TARGETS:
        only, tests = TARGETS[args.target]
    elif args.target.split(".")[0] == "stacks":
        only = [args.target.replace(".", "/") + ".py"]
        tests = TARGETS["stacks"][1]
        names = [f"{args.target}.*"]
    else:
        parser.error(f"unknown target {args.target!r}: one of {', '.join(TARGETS)}, or stacks.<module>")
    if not tests:
        # An empty selection makes mutmut run the whole suite (the slow program tests too) for every mutant.
        parser.error(f"{args.target} has no tests to score it: add tests/plans/test_<module>.py or an EXTRA_TESTS entry")
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        print(f"{mutmut} is missing: .venv/bin/uv sync --group mutation", file=sys.stderr)
        return 2
    env = {**os.environ, "ILUVATAR_SCHEMAS": os.environ.get("ILUVATAR_SCHEMAS", str(ROOT.parent / "shared" / "schemas"))}
    earlier: dict[str, str] = {}
    if args.again:
        if args.keep is None or not (args.keep / "mutants").is_dir():
            parser.error("--again needs --keep DIR of an earlier run of the same target")
        tree = args.keep
        # New or stronger tests: mutmut copies tests/ into mutants/ again and collects who reaches what for new
        # tests; only the earlier survivors are run again (a test added cannot revive a killed mutant).
        shutil.copytree(ROOT / "tests", tree / "tests", dirs_exist_ok=True, ignore=IGNORE)
        earlier = _statuses(mutmut, tree, env)
        names = sorted(n for n, s in earlier.items() if s in ("survived", "no tests"))
        # A new mirroring test file changes the selection; mutmut then forgets every verdict, so the earlier
        # ones stand for the mutants not run again.
        _configure(tree, only, tests)
    else:
        tree = _scratch(only, tests, args.keep)
    if names or not args.again:
        run = subprocess.run(
            [str(mutmut), "run", "--max-children", str(args.max_children), *names], cwd=tree, env=env, capture_output=True, text=True
        )
        with (tree / "mutmut-run.log").open("a") as log:
            log.write(run.stdout + run.stderr)
    statuses = _statuses(mutmut, tree, env)
    rerun = set(names) if args.again else set()
    statuses = {n: earlier[n] if n in earlier and n not in rerun and s == "not checked" else s for n, s in statuses.items()}
    if not statuses:
        print(f"mutmut produced no results; see {tree / 'mutmut-run.log'}", file=sys.stderr)
        return 2
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        per_module[_module(name)][status] += 1
    print(f"{'module':24} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'score':>7}")
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        killed = counts["killed"] + counts["timeout"]
        other = total - killed - counts["survived"] - counts["no tests"]
        # A mutant no test reaches counts against the score: nothing would notice it either.
        score = f"{100 * killed / total:.1f}%" if total else "-"
        print(f"{module:24} {total:8} {killed:7} {counts['survived']:9} {counts['no tests']:9} {other:6} {score:>7}")
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    report = tree / "survivors.txt"
    with report.open("w") as out:
        for name in survivors:
            shown = subprocess.run([str(mutmut), "show", name], cwd=tree, env=env, capture_output=True, text=True)
            out.write(f"### {name} ({statuses[name]})\n{shown.stdout}\n")
    print(f"{len(survivors)} survivors (diffs in {report})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
