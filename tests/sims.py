"""A stack file run under the mock runtime once per test process, for the tests that only read what it registered.

Running the homelab takes about a second of CPU, and some sixty tests read the same run of the same
file; each gets a deep copy of its own, so a test that changes what it got cannot change another's. The copy is
the run pickled once and unpickled per caller: 23 ms for the homelab's, where `copy.deepcopy` took 54 ms (rk1's 11 ms
against 44; docs/proof/performance.md, CI time, ninth pass). A
test that patches what the simulation answers (`iluvatar.simulate.RESOURCE_STATE`, `INVOKES`), edits the
program or passes other arguments runs its own with `iluvatar.simulate.simulate`; one that reads what a run logged
(caplog) shares it with `logged_run`, which keeps the messages with the run.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import pickle
import tempfile
from pathlib import Path
from typing import Any

from iluvatar import simulate as simulate_module
from iluvatar.render import redact
from iluvatar.simulate import Simulation
from stacks import day2, read_stack_file
from stacks.load import StackFile
from tests.edit import HOMELAB, homelab_stack_file, write_stack


def whole(outputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs with each one a deployment writes (stacks.day2.EVERY_DEPLOYMENT, and WITH_AINUR where they show the
    Ainur) that a case leaves out, as an empty one of its kind, which the checks read as nothing recorded: a case names
    the outputs it is about, and `pulumi preview` refuses a part of a deployment's outputs (stacks.day2.missing)."""
    if not outputs:
        return outputs
    vips = outputs.get("vips")
    signs = (*day2.WITH_AINUR, "ainurKubeconfig", "kubeVipRolled")
    ainur = any(outputs.get(k) is not None for k in signs) or (isinstance(vips, dict) and "ainur" in vips)
    empty = {k: "" if day2.READ_OUTPUTS[k] is str else {} for k in (*day2.EVERY_DEPLOYMENT, *(day2.WITH_AINUR if ainur else ()))}
    return {**{k: v for k, v in empty.items() if k not in outputs}, **outputs}


def simulate(stack_file: StackFile, previous: dict[str, Any] | None = None, **kwargs: Any) -> Simulation:
    """iluvatar.simulate.simulate on the outputs a case names, made whole (`whole`)."""
    return simulate_module.simulate(stack_file, previous=None if previous is None else whole(previous), **kwargs)


def _frozen(sim: Simulation) -> bytes:
    return pickle.dumps(sim, protocol=pickle.HIGHEST_PROTOCOL)


def _copy(frozen: bytes) -> Simulation:
    """A copy of its own: every object of the run anew, shared within it as in the run (as `copy.deepcopy` makes it)."""
    sim = pickle.loads(frozen)  # noqa: S301 (this process's own bytes)
    assert isinstance(sim, Simulation)
    return sim


@functools.cache
def _run(path: Path, text: str) -> bytes:
    if path == HOMELAB:
        # The homelab as its user runs it: the shipped file leaves its secrets to be set (tests.edit.homelab_doc).
        return _frozen(simulate(homelab_stack_file()))
    return _frozen(simulate(read_stack_file(path)))


def simulated(path: Path) -> Simulation:
    """The stack file's run (`simulate(read_stack_file(path))`), made once per file content in this process; the homelab
    stack's with its secrets set, as every deployment of it has them."""
    return _copy(_run(path, path.read_text()))


def outputs_of(sim: Simulation) -> dict[str, Any]:
    """The outputs the next run reads back, as the engine keeps them (secrets redacted: no rule reads them)."""
    result = json.loads(json.dumps(redact(sim.outputs)))
    assert isinstance(result, dict)
    return result


@functools.cache
def _again(kubernetes: str | None) -> bytes:
    previous = outputs_of(simulated(HOMELAB))
    if kubernetes is not None:
        previous = {**previous, "arda": {**previous["arda"], "kubernetesVersion": kubernetes}}
    return _frozen(simulate(read_stack_file(HOMELAB), previous=previous))


def homelab_again(kubernetes: str | None = None) -> Simulation:
    """The homelab's next run on what its first run exported: a day-2 run (the probe runs), or, with `kubernetes` as
    the version Arda ran before, a Kubernetes upgrade. Made once per process, a deep copy each."""
    return _copy(_again(kubernetes))


@functools.cache
def _next(kubernetes: str | None, now: datetime.datetime | None) -> bytes:
    previous = outputs_of(simulated(HOMELAB))
    if kubernetes is not None:
        previous = {**previous, "arda": {**previous["arda"], "kubernetesVersion": kubernetes}}
    return _frozen(simulate(homelab_stack_file(), previous=previous, now=now))


def homelab_next(kubernetes: str | None = None, now: datetime.datetime | None = None) -> Simulation:
    """`simulate(homelab_stack_file(), previous=..., now=now)` on what `simulated(HOMELAB)` exported: the next `up` of the
    homelab as its user runs it (secrets set), or with `kubernetes` as the version Arda ran before, a Kubernetes
    upgrade; `now` the moment it runs (None: the simulation's own). Made once per process, a deep copy each:
    tests/components/test_day2.py ran the same runs seven times (about 1.2 s of CPU each). What the run logged is not
    kept: a test that reads the log (caplog) runs its own. Unlike `homelab_again`, the stack file has its secrets set,
    as `simulated(HOMELAB)` has."""
    return _copy(_next(kubernetes, now))


class _Said(logging.Handler):
    """Every record a run logs on the root logger (where the mock engine logs what the program says), as caplog has it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())


@functools.cache
def _logged(text: str, stack: str, previous: str, prior: str, preview: bool) -> tuple[bytes, tuple[str, ...]]:
    folder = Path(tempfile.mkdtemp(prefix="iluvatar-logged-"))
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(text)
    root, said = logging.getLogger(), _Said()
    level = root.level
    root.addHandler(said)
    root.setLevel(logging.INFO)  # what `caplog.set_level(logging.INFO)` lets through
    try:
        sim = simulate(read_stack_file(path), previous=json.loads(previous), prior=json.loads(prior), preview=preview)
    finally:
        root.removeHandler(said)
        root.setLevel(level)
    return _frozen(sim), tuple(m for m in said.said)


def logged_run(
    doc: dict[str, Any], stack: str, previous: dict[str, Any], prior: dict[str, Any] | None = None, preview: bool = False
) -> tuple[Simulation, list[str]]:
    """`simulate(read_stack_file(write_stack(folder, doc, stack)), previous=..., prior=..., preview=...)` and what the run
    logged at INFO and above (the messages `caplog.set_level(logging.INFO)` would hold), made once per process for equal
    inputs, a deep copy each: tests/components/test_ainur.py made three of its runs three, two and two times. Only for
    runs of the program as it stands, with the simulation's own answers (a test that patches either runs its own)."""
    with tempfile.TemporaryDirectory() as scratch:
        text = write_stack(Path(scratch), doc, stack).read_text()
    frozen, said = _logged(text, stack, json.dumps(previous, sort_keys=True), json.dumps(prior or {}, sort_keys=True), preview)
    return _copy(frozen), list(said)
