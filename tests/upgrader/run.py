"""Run the upgrader as Pulumi's command resources run it: arguments, secrets as JSON on stdin, exit code."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
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


def upgrader_watched(
    args: Iterable[str], stdin: dict[str, Any], on_line: Callable[[str], bool], timeout: float = 300, record: dict[str, Any] | None = None
) -> Result:
    """Run the upgrader as `upgrader` does, handing `on_line` each progress line as it is written: the test acts at a
    step (as a kubelet or a person would then), and a True answer kills the upgrader there (SIGKILL: no undo, no last
    line, as a power cut of the machine running `pulumi up` leaves it)."""
    env = {k: v for k, v in os.environ.items() if k != RECORD}
    if record is not None:
        env[RECORD] = json.dumps(record) + "\n"
    start = time.monotonic()
    process = subprocess.Popen([str(binary()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    process.stdin.write(json.dumps(stdin))
    process.stdin.close()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            if on_line(line.rstrip("\n")):
                process.kill()
                break
        stdout = process.stdout.read()
        code = process.wait(timeout=30)
    finally:
        killer.cancel()
        process.stderr.close()
        process.stdout.close()
    return Result(code, stdout, "".join(lines), time.monotonic() - start)


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
