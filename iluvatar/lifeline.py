"""A step `pulumi up` runs dies with the shell pulumi-command started it in.

pulumi-command v1.2.1 runs a local Command as `exec.CommandContext(ctx, "/bin/sh", "-c", command)`
(provider/pkg/provider/local/commandOutputs.go:59) with neither `Cancel`, `WaitDelay` nor a process
group of its own, so when that context ends Go's default cancel kills `/bin/sh` alone, with SIGKILL.
It ends when the engine cancels the run (Ctrl-C: pkg/resource/deploy/deployment_executor.go:144 at
Pulumi v3.259.0 calls every provider's Cancel, which pulumi-go-provider v1.3.0's
middleware/cancel/cancel.go:56-57 turns into every running Create, Update and Delete's context
cancelled) or the step's custom timeout (the same middleware's context deadline, cancel.go:49).
Debian's `/bin/sh` is dash, and dash 0.5.12 forks for `sh -c 'iluvatar upgrader ...'` rather than
replacing itself, so the upgrader went on, orphaned: draining, rebooting, waiting up to its
`--timeout`, while `cmd.Wait` waited for it, since the step's stdout and stderr are pipes whose
reader ends only when every holder of their write ends has closed them (commandOutputs.go:61-71,
106). A terminal's Ctrl-C never reached it either: the engine starts each provider in a process
group of its own (sdk/go/common/resource/plugin/plugin.go:598), which the step's processes share.

So `iluvatar upgrader` asks the kernel, before anything else, for SIGTERM when its parent dies
(`prctl(PR_SET_PDEATHSIG)`, which the exec into the Go binary keeps): the shell killed, the upgrader
gets SIGTERM at once, its own handling runs (every wait ends as a failure, what it put back before a
reboot is undone, `upgrader/internal/stop` bounds the end) and its end closes the pipes, so the step
ends. Why not `exec` in front of the step's command, which would make pulumi-command's SIGKILL hit
the upgrader itself: it would be killed outright at every Ctrl-C, a drain half done and Ceph's
`noout` left set; and every step's command would change, so the next `pulumi up` would run every
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
