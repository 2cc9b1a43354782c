"""A step `pulumi up` runs dies with the shell pulumi-command started it in.

pulumi-command v1.2.1 runs a local Command as `exec.CommandContext(ctx, "/bin/sh", "-c", command)`
(provider/pkg/provider/local/commandOutputs.go:59) with neither `Cancel`, `WaitDelay` nor a process
group of its own, so when that context ends Go's default cancel kills `/bin/sh` alone, with SIGKILL.
It ends when the engine cancels the run (Ctrl-C: pkg/resource/deploy/deployment_executor.go:144 at
Pulumi v3.259.0 calls every provider's Cancel, which pulumi-go-provider v1.3.0's
middleware/cancel/cancel.go:56-57 turns into every running Create, Update and Delete's context
cancelled) or the step's custom timeout (the same middleware's context deadline, cancel.go:49).
Whether the shell forks for `sh -c 'iluvatar upgrader ...'` depends on the shell: dash 0.5.12 (Debian's and
Ubuntu's /bin/sh) forks, so the kill hits the shell and the command runs on, orphaned, while `cmd.Wait`
waits for it, since the step's stdout and stderr are pipes whose reader ends only when every holder of
their write ends has closed them (commandOutputs.go:61-71, 106); bash (/bin/sh on Fedora, Arch, RHEL, and
wherever it was made /bin/sh) execs a lone simple command in place of itself, so the kill hits the
command itself. A terminal's Ctrl-C never reached it either: the engine starts each provider in a
process group of its own (sdk/go/common/resource/plugin/plugin.go:598), which the step's processes share.

So `iluvatar upgrader` splits in two before anything else (`supervised`): a supervisor that only
waits, and a worker that builds the upgrader and becomes it (the exec into the Go binary keeps what the
kernel was asked). Each asks the kernel for SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`),
the supervisor of the shell and the worker of the supervisor, and the supervisor passes on the SIGTERM
it gets. Whichever the SIGKILL hits, the shell (dash) or the supervisor (bash), the worker gets one
SIGTERM at once: its own handling runs (every wait ends as a failure, what it put back before a reboot
is undone, `upgrader/internal/stop` bounds the end; during a build, the build is stopped and removed)
and its end closes the pipes, so the step ends. SIGINT is not passed on: it comes to the whole process
group (the engine's terminate, kill(-pid, SIGINT); a terminal's Ctrl-C), which the worker is in, and a
second one would end the upgrader at once (`upgrader/internal/stop`); the supervisor only outlives it.

Why not `exec` in front of the step's command, which would make pulumi-command's SIGKILL hit the
upgrader itself on every shell: it would be killed outright at every Ctrl-C, a drain half done and
Ceph's `noout` left set; and every step's command would change, so the next `pulumi up` would run every
step again (pulumi-command diffs `create` and `update` as inputs).

The one window left: the shell killed in the few milliseconds before Python runs `iluvatar`'s first
line (`iluvatar.PARENT`). Then the upgrader runs on as before, until its own `--timeout`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Stopped(Exception):  # noqa: N818 - what happened, not an error of ours
    """A signal came while the step was still in Python (e.g. building the upgrader)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


# The C library, loaded once here: a child's preexec_fn (die_with_parent) must not load it after fork.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _prctl_pdeathsig(signum: int) -> None:
    if _libc is None:
        return
    if _libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def arm(parent: int, signum: int = signal.SIGTERM) -> bool:
    """Ask for `signum` when the parent dies; False when `parent` (the pid read at start) has already gone.

    The check after the request closes the race: a parent that died before it was made sent nothing,
    and this process has been handed to another (init, or a subreaper) since.
    """
    _prctl_pdeathsig(signum)
    return os.getppid() == parent


def supervised() -> None:
    """Fork: return in the worker, armed with SIGTERM at the supervisor's death; the supervisor never returns.

    The supervisor passes SIGTERM on to the worker, outlives SIGINT (the worker gets its own: see above),
    and ends as the worker ended: its exit code, or the same signal. Both signals are blocked across the
    fork, so none is lost or handled by the wrong process in between. The caller must have one thread
    (os.fork copies only the calling one).
    """
    both = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    supervisor = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    worker = os.fork()
    if worker == 0:
        for s in both:
            signal.signal(s, signal.SIG_DFL)
        armed = arm(supervisor)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
        if not armed:
            # The supervisor was killed before the request: nothing would tell this process to stop.
            print(f"upgrader: its supervisor (pid {supervisor}) ended before it started: nothing ran", file=sys.stderr, flush=True)
            os._exit(1)
        return

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
    _, status = os.waitpid(worker, 0)  # retried after each handler (PEP 475)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP keep their default anyway
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


def die_with_parent() -> None:
    """For a child process (subprocess's preexec_fn): SIGKILL when the process that started it dies.

    Only where the parent has one thread: preexec_fn runs between fork and exec, where another thread's
    lock (the allocator's, the import lock) would never be released (Python's subprocess docs).
    """
    _prctl_pdeathsig(signal.SIGKILL)


def single_threaded() -> bool:
    return threading.active_count() == 1


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGINT raise Stopped while the block runs, so what it started is cleaned up on the way out."""

    def raise_stopped(signum: int, _frame: FrameType | None) -> None:
        raise Stopped(signum)

    before = {s: signal.signal(s, raise_stopped) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
