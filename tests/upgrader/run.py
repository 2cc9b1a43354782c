"""Run the upgrader as Pulumi's command resources run it: arguments, secrets as JSON on stdin, exit code.

`step` runs a step's whole command line as pulumi-command runs a local Command, under `tools/pulumi-command-local`
(a stand-in for the provider that follows its source: exec.CommandContext of `/bin/sh -c`, no process group, Go's
default cancel, SIGKILL to the shell alone; stdout and stderr through pipes, so Wait waits for every holder of
them), with Debian's /bin/sh, dash, which forks for the command rather than replacing itself (or a shell named). The engine's Cancel
(Ctrl-C) is `Step.cancel`: what pulumi-go-provider's cancel middleware does with it, the step's context cancelled.
What the step writes reaches the engine's log line by line as it comes, as pulumi-command streams it: `Step.logged`
waits for a line there, so a test stops a step once the upgrader said it reached the point the test means.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iluvatar import upgrader as product
from tests.edit import ROOT
from tools import gotools
from tools.talos_api import TalosAPI

GRACE_S = 75  # upgrader/internal/stop: Grace, how long the upgrader may take to end once a signal came
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
    result = subprocess.run(
        [str(binary()), *args], input="" if stdin is None else json.dumps(stdin), capture_output=True, text=True, timeout=timeout, env=env
    )
    return Result(result.returncode, result.stdout, result.stderr)


def upgrader_watched(
    args: Iterable[str],
    stdin: dict[str, Any],
    on_line: Callable[[str], bool],
    timeout: float = 300,
    record: dict[str, Any] | None = None,
    stop: signal.Signals = signal.SIGKILL,
) -> Result:
    """Run the upgrader as `upgrader` does, handing `on_line` each progress line as it is written: the test acts at a
    step (as a kubelet or a person would then), and a True answer sends the upgrader `stop` there. SIGKILL (the default)
    kills it: no undo, no last line, as a power cut of the machine running `pulumi up` leaves it. SIGTERM ends every wait
    as a failure that says what it saw last (upgrader/internal/stop), as Pulumi's cancelled step does, and its lines are
    read to the end, each still handed to `on_line` (the test acts at the undo's steps too; its answer then changes
    nothing): a test that means "this wait does not pass" stops it once the wait said what it waits on, however long
    the steps before it took, rather than betting a --timeout on where the run will be when it ends. `on_line` must
    therefore be idempotent for a line that comes again after the stop.

    A callback that raises (a wait of the test's own that timed out) ends the upgrader before the error goes on: SIGTERM
    and its grace, so it puts back what it changed in the module's shared cluster, then SIGKILL. Left running, it went on
    draining and polling there for the rest of its --timeout, and died at its next line to the closed stderr (Go's runtime
    ends a process writing to a broken pipe on fd 2, os/signal's doc; the upgrader's main.go notifies SIGINT and SIGTERM
    alone) in the middle of its undo."""
    env = {k: v for k, v in os.environ.items() if k != RECORD}
    if record is not None:
        env[RECORD] = json.dumps(record) + "\n"
    process = subprocess.Popen([str(binary()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    process.stdin.write(json.dumps(stdin))
    process.stdin.close()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    lines: list[str] = []
    try:
        sent = False
        for line in process.stderr:
            lines.append(line)
            if on_line(line.rstrip("\n")) and not sent:
                process.send_signal(stop)
                sent = True
                if stop == signal.SIGKILL:
                    break
        stdout = process.stdout.read()
        code = process.wait(timeout=30)
    except BaseException:
        end(process)
        raise
    finally:
        # Cancelled once the process is reaped, never before: the timer is the bound on a run the test stopped reading.
        killer.cancel()
        process.stderr.close()
        process.stdout.close()
    return Result(code, stdout, "".join(lines))


def end(process: subprocess.Popen[str]) -> None:
    """Stop a run the test gave up on as Pulumi stops a cancelled step: SIGTERM, GRACE_S for its undo, then SIGKILL; reaped.
    Its pipes are read meanwhile, so a run saying its undo step by step never blocks on a full pipe nor writes to a
    closed one."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.stdin = None  # written and closed at the start: communicate() would flush it
    try:
        process.communicate(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


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


# --- A step run as pulumi-command runs a local Command, and stopped as the engine stops one -----------------------


def dash() -> str:
    """Debian's /bin/sh, what pulumi-command runs a step with there (named here, whatever /bin/sh is on this machine).

    It forks for `sh -c 'iluvatar upgrader ...'`: pulumi-command's SIGKILL hits the shell, not `iluvatar`."""
    return shell("dash")


# What /bin/sh is elsewhere, and how each runs `sh -c 'iluvatar upgrader ...'`: dash forks; bash (/bin/sh on
# Fedora, Arch, RHEL) and busybox's ash (Alpine's) exec a lone simple command in place of themselves, so the
# SIGKILL meant for the shell hits `iluvatar` itself (tests/upgrader/test_cancel.py checks which).
SHELLS = {"dash": ["dash"], "bash": ["bash"], "busybox": ["busybox", "sh"]}


def shell(name: str) -> str:
    """The shell's program, as `--shell` takes it (busybox as `sh`: a link to it, as Alpine's /bin/sh is)."""
    program, *applet = SHELLS[name]
    found = shutil.which(program)
    assert found is not None, f"{program} is missing: bash scripts/prerequisites.sh"
    if not applet:
        return found
    link = Path(tempfile.gettempdir()) / "iluvatar-shells" / applet[0]
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(found)
    return str(link)


@dataclass
class Step:
    """One run of a step under the stand-in: its process, the shell's pid once it started, and the engine's log."""

    process: subprocess.Popen[str]
    pid_file: Path
    log: Path

    def shell(self, within: float = 30) -> int:
        deadline = time.monotonic() + within
        while not self.pid_file.exists() or not self.pid_file.read_text().endswith("\n"):
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return int(self.pid_file.read_text())

    def logged(self, line: str, within: float) -> None:
        """Once the step wrote `line` (stdout or stderr), as the engine's log shows it while the step runs."""

        def written() -> bool:
            # A line is the engine's once the stand-in wrote it whole, its newline with it (bytes: a read between two
            # writes may end inside a character).
            if self.log.exists() and line.encode() in self.log.read_bytes().split(b"\n")[:-1]:
                return True
            assert self.process.poll() is None, self.process.communicate()
            return False

        until(f"the step's line {line!r}", written, within)

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
def step(command: str, stdin: str, env: dict[str, str] | None = None, sh: str | None = None) -> Iterator[Step]:
    """The step's command run as pulumi-command runs a local Command, from the project folder (its `dir`), with `sh`
    as /bin/sh (dash unless named)."""
    with tempfile.TemporaryDirectory(prefix="step-") as tmp:
        folder = Path(tmp)
        (folder / "stdin").write_text(stdin)
        harness = gotools.build("pulumi-command-local")
        log = folder / "log"
        args = [
            str(harness),
            "--shell",
            sh or dash(),
            "--stdin",
            str(folder / "stdin"),
            "--pid-file",
            str(folder / "pid"),
            "--log",
            str(log),
            "--",
            command,
        ]
        environment = {k: v for k, v in (env or os.environ).items() if not k.startswith("PULUMI_COMMAND_")}
        # In a process group of its own, as the engine starts a provider (sdk/go/common/resource/plugin/plugin.go:598 at
        # v3.259.0, Setpgid), which the step's processes share.
        process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, process_group=0)
        try:
            yield Step(process, folder / "pid", log)
        finally:
            # What a failed test leaves: killed as the engine kills a provider's group at its end (cmdutil.KillChildren).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def children(pid: int) -> list[int]:
    """The process's children, whichever of its threads forked them: the kernel lists a child under the thread that
    forked it (proc(5), /proc/pid/task/tid/children). The go command starts its compilers from any of its threads,
    so reading the main thread's list alone saw a compiler only when that thread happened to fork one, and
    test_cancel's build-kill test waited out its 300 s on a build the other threads were compiling. Each pid once:
    a thread that exits hands its children to another thread of the group (kernel/exit.c, forget_original_parent),
    so one read of the lists, which is not atomic (proc(5): reliable only for a stopped process), can meet the same
    child under both threads (a full run's build-kill test found the go command twice)."""
    found: dict[int, None] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            found.update((int(p), None) for p in (task / "children").read_text().split())
    return list(found)


def descendants(pid: int) -> list[int]:
    """The process and every process under it, parents first."""
    out, at = [pid], 0
    while at < len(out):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out.extend(c for c in children(out[at]) if c not in out)  # reparented between two reads: listed once
        at += 1
    return out


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
