"""A pytest plugin that runs a list of mutants one by one, paying pytest's start-up once.

mutmut starts pytest for every mutant: on this shared machine, collecting `tests/stacks` costs a mutant of
`stacks.credentials` 20 to 60 s before its first test, so a module's run does not finish in an hour. This plugin
collects the tests once, then forks one child per mutant; the child switches the mutant on through mutmut's own
trampoline (`set_mutant_under_test`, as mutmut's workers do) and runs the collected tests in order until one fails
(mutmut's `-x`). Each child is a fresh fork of a process that has only collected, so no mutant sees another's state.

Run it in the `mutants/` folder of a kept run (`scripts/mutation.py <target> --keep DIR`), with the tests to score by:

  cd DIR/mutants && MUTATION_FORK_MUTANTS=names.txt MUTATION_FORK_OUT=verdicts.tsv MUTATION_FORK_FIRST=test_credentials \\
    ILUVATAR_SCHEMAS= <repo>/.venv/bin/python -m pytest -p scripts.mutation_fork -p scripts.mutation_order -p no:randomly \\
    -p no:cacheprovider -q tests/stacks

`names.txt` holds mutmut's names (`stacks.credentials.x__walk__mutmut_7`), one a line; each verdict is appended to
`verdicts.tsv` as `name<TAB>1` (killed: a test failed) or `name<TAB>0` (survived: every test passed), and the seconds
it took. `MUTATION_FORK_FIRST`: words of test ids to run first (the module's own tests), so a kill is found early.
A check of the setup: the name `none` must survive and mutmut's `fail` be killed. It does not write mutmut's results:
record its verdicts in docs/proof/mutation.md as this plugin's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol


def pytest_runtestloop(session: pytest.Session) -> bool:
    # mutmut is in the `mutation` dependency group only (CI's type check runs without it).
    from mutmut.mutation.trampoline import set_mutant_under_test  # type: ignore[import-not-found,unused-ignore]

    names = Path(os.environ["MUTATION_FORK_MUTANTS"]).read_text().split()
    first = [w for w in os.environ.get("MUTATION_FORK_FIRST", "").split(",") if w]
    session.items.sort(key=lambda item: not any(w in item.nodeid for w in first))
    with Path(os.environ["MUTATION_FORK_OUT"]).open("a", buffering=1) as out:
        for name in names:
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                set_mutant_under_test(name)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                failed = any(report.failed for item in session.items for report in runtestprotocol(item, nextitem=None, log=False))
                os._exit(1 if failed else 0)
            _, status = os.waitpid(pid, 0)
            out.write(f"{name}\t{os.waitstatus_to_exitcode(status)}\t{time.monotonic() - start:.1f}\n")
    return True
