"""Run the upgrader as Pulumi's command resources run it: arguments, secrets as JSON on stdin, exit code."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iluvatar import upgrader as product
from tools.talos_api import TalosAPI

# pulumi-command sets this for an update or a delete to the stdout of the resource's last run.
RECORD = "PULUMI_COMMAND_STDOUT"

# Calls that change a node (or read etcd's data out of it); everything else only reads.
MUTATING = frozenset(
    {
        "MachineService/ApplyConfiguration",
        "MachineService/Bootstrap",
        "MachineService/Reboot",
        "MachineService/Reset",
        "MachineService/Upgrade",
        "MachineService/ImagePull",
        "MachineService/EtcdSnapshot",
        "MachineService/EtcdRemoveMemberByID",
        "MachineService/EtcdLeaveCluster",
        "LifecycleService/Upgrade",
        "ImageService/Pull",
    }
)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


def binary() -> Path:
    return product.build()


def upgrader(args: Iterable[str], stdin: dict[str, Any] | None = None, timeout: float = 300, record: dict[str, Any] | None = None) -> Result:
    """Run the upgrader; `record` is the stdout of the step's last apply, as pulumi-command hands an update or a delete it."""
    env = {k: v for k, v in os.environ.items() if k != RECORD}
    if record is not None:
        env[RECORD] = json.dumps(record) + "\n"
    start = time.monotonic()
    result = subprocess.run(
        [str(binary()), *args], input="" if stdin is None else json.dumps(stdin), capture_output=True, text=True, timeout=timeout, env=env
    )
    return Result(result.returncode, result.stdout, result.stderr, time.monotonic() - start)


def started(args: Iterable[str], stdin: dict[str, Any] | None = None) -> subprocess.Popen[str]:
    """The upgrader started and left running (its stdin given and closed), for a test that acts while it runs."""
    env = {k: v for k, v in os.environ.items() if k != RECORD}
    process = subprocess.Popen([str(binary()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None
    process.stdin.write("" if stdin is None else json.dumps(stdin))
    process.stdin.close()
    process.stdin = None  # written and closed: communicate() reads the rest
    return process


def record(result: Result) -> dict[str, Any]:
    """apply's record: its one stdout line, which the next update or delete of its Pulumi step reads back."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    found: dict[str, Any] = json.loads(lines[0])
    return found


def mutations(api: TalosAPI, node: str | None = None) -> list[tuple[str, str]]:
    """(node, method) of every mutating call, in order; an ApplyConfiguration is named by its mode."""
    out = []
    for call in api.calls(node):
        if call["method"] not in MUTATING:
            continue
        method = call["method"]
        if method == "MachineService/ApplyConfiguration":
            method += " dry-run" if call["args"]["dryRun"] else f" {call['args']['mode']}"
        out.append((call["node"], method))
    return out


def apply_args(api: TalosAPI, name: str, role: str, timeout: str = "60s", *extra: str) -> list[str]:
    return ["apply", "--node", api.node_arg(name), "--role", role, "--timeout", timeout, "--no-kubernetes", *extra]


def secrets(api: TalosAPI, machine_config: str | None = None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"talosconfig": api.talosconfig_text(), **more}
    if machine_config is not None:
        out["machineConfig"] = machine_config
    return out
