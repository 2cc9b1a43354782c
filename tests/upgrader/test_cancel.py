"""A step stopped as Pulumi stops one: Ctrl-C (or the step's custom timeout) while the upgrader runs.

The step is the program's own (`plans.bringup.talos_apply`'s command, run from the project folder, its stdin
what the component sends), run by `tools/pulumi-command-local`, a stand-in for pulumi-command v1.2.1's local
Command that follows its source (exec.CommandContext of `/bin/sh -c`, no process group, Go's default cancel:
SIGKILL to the shell alone; stdout and stderr through pipes, so Wait waits for every holder of them), with
Debian's /bin/sh, dash, which forks for the command rather than replacing itself. The engine's Cancel is
SIGUSR1 to the stand-in (what pulumi-go-provider's cancel middleware does with it: the step's context
cancelled). The node is the scripted Talos API (tools/talos-api).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from iluvatar import golang
from iluvatar import upgrader as product
from plans import bringup
from stacks import load_stack_file
from tests.edit import HOMELAB, ROOT
from tests.upgrader.run import mutations
from tools import gotools
from tools.talos_api import VANILLA, addresses, installer, node, scenario, talos_api

NEW, NEWER = "v1.13.0", "v1.13.1"
# How long the node is down for its upgrade's reboot: far longer than the upgrader takes to stop (stop.Grace is
# the bound; it stops at once here), so a step that ended while the node was still down ended without it.
DOWN_MS = 20_000
GRACE_S = 75  # upgrader/internal/stop: Grace


def dash() -> str:
    """Debian's /bin/sh, what pulumi-command runs a step with there (named here, whatever /bin/sh is on this machine).

    It forks for `sh -c 'iluvatar upgrader ...'` rather than exec'ing the command: the premise the tests below
    check, since a shell that exec'd its command would be killed in the upgrader's place."""
    found = shutil.which("dash")
    assert found is not None, "dash (Debian's /bin/sh, Essential on Debian) is missing: bash scripts/prerequisites.sh"
    return found


@dataclass
class Step:
    """One run of a step under the stand-in: its process, and the shell's pid once it started."""

    process: subprocess.Popen[str]
    pid_file: Path

    def shell(self, within: float = 30) -> int:
        deadline = time.monotonic() + within
        while not self.pid_file.exists() or not self.pid_file.read_text().endswith("\n"):
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return int(self.pid_file.read_text())

    def cancel(self) -> None:
        """The engine's Cancel (Ctrl-C): the step's context cancelled, and the shell killed by Go's exec."""
        self.process.send_signal(signal.SIGUSR1)

    def result(self, timeout: float) -> dict[str, Any]:
        """What pulumi-command's run() returned, once its Wait did (the stand-in's JSON)."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise AssertionError(f"the step's Wait did not return within {timeout:.0f} s: something still holds its pipes") from None
        assert self.process.returncode == 0, err
        found: dict[str, Any] = json.loads(out)
        return found


@contextmanager
def step(command: str, stdin: str, env: dict[str, str] | None = None) -> Iterator[Step]:
    """The step's command run as pulumi-command runs a local Command, from the project folder (its `dir`)."""
    with tempfile.TemporaryDirectory(prefix="step-") as tmp:
        (Path(tmp) / "stdin").write_text(stdin)
        harness = gotools.build("pulumi-command-local")
        args = [str(harness), "--shell", dash(), "--stdin", str(Path(tmp) / "stdin"), "--pid-file", str(Path(tmp) / "pid"), "--", command]
        environment = {k: v for k, v in (env or os.environ).items() if not k.startswith("PULUMI_COMMAND_")}
        # In a process group of its own, as the engine starts a provider (sdk/go/common/resource/plugin/plugin.go:598 at
        # v3.259.0, Setpgid), which the step's processes share.
        process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, process_group=0)
        try:
            yield Step(process, Path(tmp) / "pid")
        finally:
            # What a failed test leaves: killed as the engine kills a provider's group at its end (cmdutil.KillChildren).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def only_child(pid: int, within: float = 30) -> int:
    """The one child of a process, once it has one."""
    until(f"a child of {pid}", lambda: bool(children(pid)), within)
    (child,) = children(pid)
    return child


def running(pid: int) -> bool:
    """The process is alive (a zombie, dead and not yet reaped by whoever inherited it, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def until(what: str, check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:.0f} s: {what}"
        time.sleep(0.05)


def worker_step(address: str) -> tuple[str, str]:
    """The homelab's first istari, at the stand-in's address: its name and the apply step's command as the program has it."""
    stack = load_stack_file(HOMELAB)
    machine = stack.by_role("istari")[0]
    command = bringup.talos_apply(stack, machine.model_copy(update={"ip": IPv4Address(address)})).command
    return machine.name, command


def test_a_step_killed_as_pulumi_command_kills_it_leaves_no_upgrader_running_and_the_next_run_finishes_it() -> None:
    control_plane, ip = addresses(2)
    name, command = worker_step(ip)
    assert command.startswith(".venv/bin/iluvatar upgrader apply ") and command.endswith(" --timeout 45m"), command
    product.build()  # this test is about a step stopped while it waits for its node, not while it builds (the next one is)
    # Before the bootstrap (etcd waits on the control plane): Talos steps only, no drain.
    nodes = [node("valinor-1", control_plane, "controlplane", NEW), node(name, ip, "worker", NEW, upgrade={"downMs": DOWN_MS})]
    with talos_api(scenario(nodes, bootstrapped=False)) as api:
        stdin = json.dumps({"machineConfig": api.config("worker", installer(VANILLA, NEWER)), "talosconfig": api.talosconfig_text()}, sort_keys=True)
        with step(command, stdin) as first:
            shell = first.shell()
            # The apply upgraded the node and waits for it to come back from its reboot.
            until(
                "the node down for its upgrade",
                lambda: ("LifecycleService/Upgrade" in [m for _, m in mutations(api)]) and not api.state()[name]["up"],
                120,
            )
            # dash forked: the shell's one child is the upgrader itself (the Python entry point exec'd the binary).
            upgrader = only_child(shell)
            assert Path(f"/proc/{upgrader}/exe").resolve() == product.build().resolve()
            first.cancel()
            stopped = first.result(timeout=DOWN_MS / 1000 + 120)
            # Wait returned while the node was still down: nothing held the pipes but the upgrader, which stopped.
            assert api.state()[name]["up"] is False
        assert not running(shell) and not running(upgrader)
        assert (stopped["signaled"], stopped["exit"]) == (True, -1)  # the shell, SIGKILLed by Go's exec
        assert stopped["error"].startswith(f"signal: killed: running {json.dumps(command)}:\n")
        assert 0 <= stopped["waitedAfterCancelMs"] < GRACE_S * 1000
        lines = stopped["stderr"].splitlines()
        assert lines[-2] == (
            "upgrader: -: SIGTERM: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to 1m0s, "
            "and the upgrader ends within 1m15s"
        )
        # The wait for the reboot, stopped (what it saw last: the old boot ID, or no answer, as the poll caught the node).
        assert lines[-1].startswith(f"upgrader: FAILED: {name}: reboot: stopped: SIGTERM; last seen: the node "), lines[-1]
        assert lines[-1].endswith(f"; look with: talosctl -n {ip} dmesg; the machine's console")
        assert stopped["stdout"] == ""  # no record: the step failed

        # The node comes back on its own; the next `pulumi up` runs the same step, which finds the upgrade done.
        until("the node back", lambda: api.state()[name]["up"], DOWN_MS / 1000 + 30)
        upgrades = mutations(api)
        with step(command, stdin) as second:
            finished = second.result(timeout=300)
        assert (finished["error"], finished["exit"]) == ("", 0)
        assert f"upgrader: {name}: config unchanged and Talos as configured: checking health only" in finished["stderr"].splitlines()
        assert json.loads(finished["stdout"])["node"] == name
        assert mutations(api) == upgrades
        assert api.state()[name]["version"] == NEWER


def test_a_step_killed_while_the_upgrader_builds_leaves_no_build_running_and_nothing_half_written(tmp_path: Path) -> None:
    """The first step after the upgrader's sources changed builds it: the shell killed meanwhile, the wrapper gets
    SIGTERM, kills the go command with every compiler it started, and removes what the build had written."""
    cache = tmp_path / "cache"
    (cache / "go").mkdir(parents=True)
    # The project's modules (nothing fetched), an empty build cache: the standard library and every module compiled
    # afresh, a build of minutes.
    (cache / "go" / "mod").symlink_to(golang.go_env()["GOMODCACHE"])
    env = {**os.environ, "ILUVATAR_CACHE": str(cache)}
    ip = addresses(1)[0]
    _, command = worker_step(ip)
    with step(command, json.dumps({"talosconfig": "(not read: the step is stopped first)", "machineConfig": "-"}), env) as building:
        shell = building.shell()
        wrapper = only_child(shell)

        def compiling() -> bool:
            go = [p for p in children(wrapper) if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[1:2] == [b"build"]]
            return bool(go) and any(Path(f"/proc/{c}/comm").read_text().strip() == "compile" for c in children(go[0]))

        until("the go command compiling", compiling, 300)
        (go,) = children(wrapper)
        building.cancel()
        stopped = building.result(timeout=60)
    assert group(go) == []  # the go command and every compiler it started
    assert not running(wrapper)
    lines = stopped["stderr"].splitlines()
    assert lines[0] == (
        "upgrader: building the upgrader first: its sources (upgrader/) are not built in this machine's cache yet "
        "(once per change of them, a few minutes from cold); the build counts against this step's --timeout 45m"
    )
    assert lines[-1] == "upgrader: stopped by SIGTERM while the upgrader was being built: nothing ran (the build starts again at the next run)"
    assert sorted(p.name for p in (cache / "bin").iterdir()) == []  # no binary, no temporary one, no work folder


def test_a_cold_build_counts_against_the_steps_timeout(tmp_path: Path) -> None:
    """The build is part of the step: with a --timeout shorter than the build, it is stopped at the bound and nothing runs."""
    cache = tmp_path / "cache"
    (cache / "go").mkdir(parents=True)
    (cache / "go" / "mod").symlink_to(golang.go_env()["GOMODCACHE"])
    ip = addresses(1)[0]
    _, command = worker_step(ip)
    short = command.replace(" --timeout 45m", " --timeout 3s")
    with step(short, json.dumps({"talosconfig": "-", "machineConfig": "-"}), {**os.environ, "ILUVATAR_CACHE": str(cache)}) as building:
        result = building.result(timeout=120)
    assert (result["exit"], result["signaled"]) == (product.EXIT_FAILED, False)
    lines = result["stderr"].splitlines()
    assert lines[0].endswith("the build counts against this step's --timeout 3s")
    assert lines[-1] == (
        "upgrader: cannot build the upgrader within this step's --timeout 3s: building upgrader (upgrader/) did not finish within 3 s: stopped"
        + product.AHEAD
    )
    assert sorted(p.name for p in (cache / "bin").iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["apply", "--node", "a=1.2.3.4", "--timeout", "45m"], (4, "45m", 2700.0)),
        (["apply", "--timeout=1h30m", "--node", "a=1.2.3.4"], (1, "1h30m", 5400.0)),
        (["bootstrap", "-timeout", "90s", "--timeout", "1.5m"], (4, "1.5m", 90.0)),  # the last one, as Go's flag package takes it
        (["probe", "--node", "a=1.2.3.4", "--deadline", "3s"], None),
        (["apply", "--timeout", "soon"], None),  # the upgrader's own usage error says so
        (["apply", "--timeout", "-5m"], None),
        (["apply", "--timeout"], None),
    ],
)
def test_the_steps_timeout_is_read_as_the_upgrader_reads_it(argv: list[str], found: tuple[int, str, float] | None) -> None:
    assert product.timeout_of(argv) == found


def test_what_is_left_of_the_timeout_reaches_the_upgrader_in_the_form_it_was_given() -> None:
    assert product.with_timeout(["apply", "--timeout", "45m"], 2, 2508.9) == ["apply", "--timeout", "41m48s"]
    assert product.with_timeout(["apply", "--timeout=2h"], 1, 3723) == ["apply", "--timeout=1h2m3s"]
    assert product.with_timeout(["apply", "--timeout", "90s"], 2, 59.99) == ["apply", "--timeout", "59s"]
