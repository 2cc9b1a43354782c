"""The seam between the program and the upgrader: every upgrader command line the program makes, with the stdin it
sends, read by the upgrader's own parser (`upgrader check-input --batch`: the command's flags, its stdin reader and
its required keys, nothing contacted).

The simulation's secrets are placeholders ("[secret]", "# talosconfig for arda"), but the structure around them (which
keys, lists or objects, each manifest and hook) is what the real program sends, and the check reads only that. Both
shipped stacks run as a first deployment; the homelab also as a day-2 run (a previous deployment: the probe runs) and as
a Kubernetes upgrade (the preflight and the component-by-component upgrade run). Issue #38: the program sent each Ceph hook as one Job where the upgrader reads
a list, and every Ceph host's apply failed at its first `pulumi up`, while the upgrader's tests wrote the list form.
"""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from iluvatar.render import redact
from iluvatar.simulate import SecretValue, Simulation
from plans.bringup import UPGRADER
from tests.edit import HOMELAB, MINIMAL, RK1
from tests.sims import homelab_again, simulated
from tests.upgrader.run import binary

PREFIX = shlex.join(UPGRADER) + " "
# What each simulated run makes the upgrader do, by command and the flag that picks its mode (each must be seen).
KINDS = {
    "apply",
    "bootstrap",
    "etcd-snapshot",  # the first step of a Kubernetes upgrade's chain (review M2 of issue #42)
    "health --stage api",
    "health --stage nodes",
    "kubernetes-preflight",
    "kubernetes-upgrade",
    "probe",
    "release-node-ports",  # after the gateways: the NodePorts an older proxy Service holds taken back
    "reset",
    "wait-kube --admits",
    "wait-kube --api",
    "wait-kube --storage-class",
}


@dataclass(frozen=True)
class Call:
    """One upgrader command line the program makes: where, its arguments after `upgrader`, and its stdin."""

    where: str
    args: tuple[str, ...]
    stdin: str

    @property
    def kind(self) -> str:
        mode = next((a for a in self.args if a in ("--stage", "--api", "--admits", "--nodes", "--storage-class")), None)
        if mode == "--stage":
            return f"{self.args[0]} --stage {self.args[self.args.index('--stage') + 1]}"
        return f"{self.args[0]} {mode}" if mode else self.args[0]


def _stdin(value: Any) -> str:
    """A step's stdin as the engine hands it to the command (a secret's value; none is an empty stdin)."""
    value = value.value if isinstance(value, SecretValue) else value
    assert value is None or isinstance(value, str), value
    return value or ""


def _args(where: str, command: str) -> tuple[str, ...] | None:
    """The upgrader's arguments, when the command runs it; a command that names it otherwise fails the test."""
    if command.startswith(PREFIX):
        return tuple(shlex.split(command.removeprefix(PREFIX)))
    assert "upgrader" not in command, f"{where} runs the upgrader otherwise than as plans.bringup.UPGRADER: {command}"
    return None


def calls(label: str, sim: Simulation) -> list[Call]:
    """Every upgrader command of a run: the local commands' create, update and delete, and the invokes at `pulumi up`."""
    out: list[Call] = []
    for reg in sim.registrations:
        if reg.type != "command:local:Command":
            assert PREFIX not in json.dumps(redact(reg.inputs)), f"{reg.type} {reg.name} runs the upgrader, and this test does not know how"
            continue
        for key in ("create", "update", "delete"):
            where = f"{label}: {reg.name} ({key})"
            if reg.inputs.get(key) and (args := _args(where, reg.inputs[key])) is not None:
                out.append(Call(where, args, _stdin(reg.inputs.get("stdin"))))
    for n, (token, inputs) in enumerate(sim.invocations):
        if token == "command:local:run" and (args := _args(f"{label}: invoke {n}", inputs["command"])) is not None:
            out.append(Call(f"{label}: invoke {token} ({args[0]})", args, _stdin(inputs.get("stdin"))))
    return out


def check(every: list[Call]) -> dict[Call, dict[str, Any]]:
    """The upgrader's own reading of each call (`{"exit": 0 or 2, "error": its usage error}`): one process for all of them."""
    unique = list(dict.fromkeys((c.args, c.stdin) for c in every))
    lines = "".join(json.dumps({"args": list(args), "stdin": stdin}) + "\n" for args, stdin in unique)
    result = subprocess.run([str(binary()), "check-input", "--batch"], input=lines, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == len(unique), result.stdout
    by_call = dict(zip(unique, answers, strict=True))
    return {c: by_call[c.args, c.stdin] for c in every}


@functools.cache
def _runs() -> dict[str, Simulation]:
    return {
        "homelab": simulated(HOMELAB),
        "rk1": simulated(RK1),
        # The stack `iluvatar init` writes for a newcomer: one control plane that runs the workloads, no GitOps (no --pause).
        "minimal": simulated(MINIMAL),
        "homelab day 2": homelab_again(),
        "homelab Kubernetes upgrade": homelab_again(kubernetes="v1.34.5"),
    }


@pytest.fixture(scope="module")
def every() -> list[Call]:
    return [c for label, sim in _runs().items() for c in calls(label, sim)]


def test_the_upgrader_reads_every_command_line_and_stdin_the_program_makes(every: list[Call]) -> None:
    answers = check(every)
    refused = [f"{c.where}: {a['error']}" for c, a in answers.items() if a["exit"] != 0]
    assert not refused, "the upgrader refuses what the program sends:\n" + "\n".join(refused)
    # Nothing is left out: each kind of step, in the runs that make it, and a Ceph host's apply with its hooks.
    assert {c.kind for c in every} == KINDS
    kinds = {label: {c.kind for c in calls(label, sim)} for label, sim in _runs().items()}
    assert "probe" in kinds["homelab day 2"] and "probe" not in kinds["homelab"]
    assert "kubernetes-preflight" in kinds["homelab Kubernetes upgrade"] and "kubernetes-preflight" not in kinds["homelab day 2"]
    assert "kubernetes-upgrade" in kinds["homelab Kubernetes upgrade"] and "kubernetes-upgrade" not in kinds["homelab day 2"]
    assert "wait-kube --api" in kinds["homelab"]  # the Ainur's API gate
    hooked = [c for c in every if c.args[0] == "apply" and "hooks" in json.loads(c.stdin)]
    assert hooked and {c.where.split(": ")[1] for c in hooked} >= {"arda-tirion-apply (create)"}
    # A delete runs with its create's stdin, hooks and all: reset reads it too.
    assert any(c.args[0] == "reset" and "hooks" in json.loads(c.stdin) for c in every)
    assert "apply" in kinds["minimal"] and not any("--pause" in c.args for c in calls("minimal", _runs()["minimal"]))


def test_a_delete_reads_the_stdin_an_earlier_program_left_in_the_state(every: list[Call]) -> None:
    """pulumi-command v1.2.1 runs a delete with the state's stdin (local/commandController.go, Delete: req.State), which
    an earlier program wrote: until issue #38 each Ceph hook was one Job, and a step whose create failed keeps that stdin.
    A machine removed since is still reset with it."""
    resets = [c for c in every if c.args[0] == "reset" and "hooks" in json.loads(c.stdin)]
    assert resets
    older = []
    for c in resets:
        stdin = json.loads(c.stdin)
        stdin["hooks"] = {key: jobs[0] for key, jobs in stdin["hooks"].items()}
        older.append(Call(c.where + " (an earlier program's stdin)", c.args, json.dumps(stdin)))
    answers = check(older)
    assert [a for a in answers.values() if a["exit"] != 0] == []
