"""The flake hunt: run the README's test command N times, each on a fresh clone, and report every test that failed.

    python3 scripts/flake_hunt.py --runs 10 --out /tmp/hunt        # HEAD of this clone
    python3 scripts/flake_hunt.py --runs 3 --commit 1a2b3c4 --out /tmp/hunt

Each run is what CI does (`.ci/run`: the README's install, then `bash scripts/test`) in a clone of its own, made with
`git clone --no-local` from this repository at the commit, so nothing of this working tree (its .venv, its render, an
uncommitted edit) leaks in; the caches under ~/.cache/iluvatar are shared, as on a CI machine that ran before (a warm
run). The hunt reads the failures from the run's output, as a reader of a CI log does (`failures_in`): no option is
added to the run, so what runs is exactly what CI runs. Each run's output stays in OUT/run-N.log.

It prints, and writes to OUT/report.md: one line per run (exit code, wall and CPU seconds of the run's whole process
tree), then each test that failed at least once, how often, and the text of its first failure. A run whose exit code is
not 0 with no failing test in its report (the install broke, pytest crashed) is reported with the tail of its output.
It is a script, not a test: it takes hours, and its figures go to docs/proof/performance.md.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# How much of a failure's text the report keeps: enough for the assertion and its context, not a whole log.
FAILURE_LINES = 40
TITLE = re.compile(r"_+ (.+?) _+")


def program(name: str) -> str:
    """A program's full path on PATH, or exit saying which is missing."""
    found = shutil.which(name)
    if found is None:
        sys.exit(f"flake_hunt: no {name} on PATH")
    return found


@dataclass
class Run:
    number: int
    code: int
    wall: float
    cpu: float
    failures: dict[str, str] = field(default_factory=dict)
    tail: str = ""


def failures_in(log: str) -> dict[str, str]:
    """The failing tests of one run's output and each one's failure text.

    Which tests failed: pytest's short summary, one `FAILED <id>` or `ERROR <id>` line each (the `-r` default, fE).
    Their text: the section pytest prints under `___ <test name> ___` (`ERROR at setup of <name>` for an error), from
    the FAILURES and ERRORS parts; with xdist each section is followed by the worker's `[gwN] linux -- Python` line."""
    lines = log.splitlines()
    summary = next((i for i, line in enumerate(lines) if "short test summary info" in line), len(lines))
    failed: dict[str, str] = {}
    for line in lines[summary + 1 :]:
        kind, _, rest = line.partition(" ")
        if kind in ("FAILED", "ERROR") and "::" in rest:
            failed.setdefault(rest.split(" - ")[0].strip(), kind.lower())
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[:summary]:
        stripped = line.strip()
        # A title is centred in underscores: `___ name ___`, or `_ name _` when the name fills the line; a traceback's
        # own separators inside a section (`_ _ _ _`) hold no name.
        title = TITLE.fullmatch(stripped)
        if title and title.group(1).strip("_ "):
            name = title.group(1).removeprefix("ERROR at setup of ").removeprefix("ERROR at teardown of ")
            current = sections.setdefault(name, [])
        elif stripped.startswith("===") and stripped.endswith("==="):
            current = None
        elif current is not None and len(current) < FAILURE_LINES:
            current.append(line)
    found: dict[str, str] = {}
    for test, kind in failed.items():
        # A test in a class is titled `Class.test`.
        name = ".".join(test.split("::")[1:])
        found[test] = f"{kind}:\n" + "\n".join(sections.get(name, ["(no section in the output)"]))
    return found


def one_run(number: int, commit: str, out: Path) -> Run:
    clone = out / f"run-{number}"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run([program("git"), "clone", "--quiet", "--no-local", str(REPO), str(clone)], check=True)
    subprocess.run([program("git"), "-C", str(clone), "checkout", "--quiet", "--detach", commit], check=True)
    log = out / f"run-{number}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run([program("bash"), ".ci/run"], cwd=clone, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = log.read_text(errors="replace")
    run = Run(number, code, wall, cpu, failures_in(output))
    if code != 0 and not run.failures:
        run.tail = "\n".join(output.splitlines()[-FAILURE_LINES:])
    shutil.rmtree(clone)
    return run


def report(commit: str, runs: list[Run]) -> str:
    lines = [f"# Flake hunt on {commit}", "", f"{len(runs)} runs, {sum(r.code == 0 for r in runs)} passed.", ""]
    lines += ["| run | exit | wall | CPU (user + sys) | failed tests |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.number} | {r.code} | {r.wall / 60:.1f} min | {r.cpu:.0f} s | {len(r.failures)} |")
    seen: dict[str, list[Run]] = {}
    for r in runs:
        for name in r.failures:
            seen.setdefault(name, []).append(r)
    lines += ["", "## Tests that failed at least once", ""]
    if not seen:
        lines.append("None.")
    for name, where in sorted(seen.items(), key=lambda item: (-len(item[1]), item[0])):
        lines += [f"### {name}: {len(where)} of {len(runs)} (runs {', '.join(str(r.number) for r in where)})", "", "```"]
        lines += [where[0].failures[name], "```", ""]
    for r in runs:
        if r.tail:
            lines += [f"## Run {r.number} failed with no failing test in its report", "", "```", r.tail, "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs' clones, outputs and report.md")
    args = parser.parse_args(argv)
    commit = subprocess.run([program("git"), "-C", str(REPO), "rev-parse", args.commit], capture_output=True, text=True, check=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        runs.append(one_run(number, commit, args.out))
        text = report(commit, runs)
        (args.out / "report.md").write_text(text)
        last = runs[-1]
        print(f"run {number}: exit {last.code}, {last.wall / 60:.1f} min, {last.cpu:.0f} s CPU, {len(last.failures)} failed", flush=True)
    print(text, end="")
    return 0 if all(r.code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
