"""A stack file run under the mock runtime once per test process, for the tests that only read what it registered.

Running the homelab takes about a second of CPU, and some sixty tests read the same run of the same
file; each gets a deep copy of its own, so a test that changes what it got cannot change another's. A
test that patches what the simulation answers (`iluvatar.simulate.RESOURCE_STATE`, `INVOKES`), edits the
program or passes other arguments runs its own with `iluvatar.simulate.simulate`.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from iluvatar.render import redact
from iluvatar.simulate import Simulation, simulate
from stacks import read_stack_file
from tests.edit import HOMELAB, homelab_stack_file


@functools.cache
def _run(path: Path, text: str) -> Simulation:
    if path == HOMELAB:
        # The homelab as its user runs it: the shipped file leaves its secrets to be set (tests.edit.homelab_doc).
        return simulate(homelab_stack_file())
    return simulate(read_stack_file(path))


def simulated(path: Path) -> Simulation:
    """The stack file's run (`simulate(read_stack_file(path))`), made once per file content in this process; the homelab
    stack's with its secrets set, as every deployment of it has them."""
    return copy.deepcopy(_run(path, path.read_text()))


def outputs_of(sim: Simulation) -> dict[str, Any]:
    """The outputs the next run reads back, as the engine keeps them (secrets redacted: no rule reads them)."""
    result = json.loads(json.dumps(redact(sim.outputs)))
    assert isinstance(result, dict)
    return result


@functools.cache
def _again(kubernetes: str | None) -> Simulation:
    previous = outputs_of(simulated(HOMELAB))
    if kubernetes is not None:
        previous = {**previous, "arda": {**previous["arda"], "kubernetesVersion": kubernetes}}
    return simulate(read_stack_file(HOMELAB), previous=previous)


def homelab_again(kubernetes: str | None = None) -> Simulation:
    """The homelab's next run on what its first run exported: a day-2 run (the probe runs), or, with `kubernetes` as
    the version Arda ran before, a Kubernetes upgrade. Made once per process, a deep copy each."""
    return copy.deepcopy(_again(kubernetes))


@functools.cache
def _next(kubernetes: str | None) -> Simulation:
    previous = outputs_of(simulated(HOMELAB))
    if kubernetes is not None:
        previous = {**previous, "arda": {**previous["arda"], "kubernetesVersion": kubernetes}}
    return simulate(homelab_stack_file(), previous=previous)


def homelab_next(kubernetes: str | None = None) -> Simulation:
    """`simulate(homelab_stack_file(), previous=...)` on what `simulated(HOMELAB)` exported: the next `up` of the homelab
    as its user runs it (secrets set), or with `kubernetes` as the version Arda ran before, a Kubernetes upgrade. Made
    once per process, a deep copy each: tests/components/test_day2.py ran the same two runs five times (4 s of CPU).
    Unlike `homelab_again`, the stack file has its secrets set, as `simulated(HOMELAB)` has."""
    return copy.deepcopy(_next(kubernetes))
