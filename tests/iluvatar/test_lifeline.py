"""A step dies with the shell pulumi-command ran it in (iluvatar/lifeline.py): what the kernel is asked, and the race.

Each check runs in a process of its own: asking the kernel to stop a process when its parent dies is for that
process only, never the test runner. The step stopped end to end, as pulumi-command stops one, is
tests/upgrader/test_cancel.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from iluvatar import upgrader as product
from tests.edit import ROOT

# prctl(PR_GET_PDEATHSIG) in the process that runs it: the signal it gets when its parent dies (0: none).
GET = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
sig = ctypes.c_int()
assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_the_step_asks_for_sigterm_when_its_parent_dies_and_keeps_it_across_exec() -> None:
    code = f"""
import os, sys
import iluvatar
from iluvatar import lifeline
assert lifeline.arm(iluvatar.PARENT) is True
{GET}
print(sig.value)
sys.stdout.flush()
# The exec into the Go binary keeps it (a non-set-user-ID binary): here, into Python again.
os.execv(sys.executable, [sys.executable, "-c", {GET!r} + "print(sig.value)"])
"""
    result = _python(code)
    assert (result.returncode, result.stdout, result.stderr) == (0, "15\n15\n", "")


def test_a_parent_gone_before_the_request_is_noticed_and_nothing_runs() -> None:
    """The shell killed after `iluvatar` read its parent and before it asked: the request came too late to be sent the
    signal, and the parent it reads now is another (whoever inherited it). It ends at once."""
    code = """
import iluvatar
iluvatar.PARENT = 1  # the shell that started it, gone: os.getppid() is no longer it
from iluvatar import upgrader
upgrader.exec_(["--help"])
"""
    result = _python(code)
    assert (result.returncode, result.stdout) == (product.EXIT_FAILED, "")
    assert result.stderr == "upgrader: its parent (pid 1) ended before it started: nothing ran\n"


def test_the_go_command_dies_with_the_process_that_builds_it() -> None:
    """golang.build starts `go build` with SIGKILL asked for when its builder dies outright (no `finally` runs then)."""
    code = f"""
import subprocess, sys
from iluvatar import lifeline
assert lifeline.single_threaded()
child = subprocess.run([sys.executable, "-c", {GET!r} + "print(sig.value)"], preexec_fn=lifeline.die_with_parent, capture_output=True, text=True)
print(child.stdout, end="")
"""
    result = _python(code)
    assert (result.returncode, result.stdout, result.stderr) == (0, "9\n", "")


# A worker under lifeline.supervised that says which signals reach it, and ends with 3 at SIGTERM.
SUPERVISED = """
import os, signal, sys
from iluvatar import lifeline
lifeline.supervised()
def said(signum, _frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        os._exit(3)
signal.signal(signal.SIGTERM, said)
signal.signal(signal.SIGINT, said)
print(os.getpid(), flush=True)
while True:
    signal.pause()
"""


def _supervised() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-c", SUPERVISED], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    worker = int(process.stdout.readline())
    assert worker != process.pid
    return process, worker


def test_the_worker_gets_sigterm_when_its_supervisor_is_killed_outright() -> None:
    """bash and busybox's ash exec `iluvatar` in place of the shell, so pulumi-command's SIGKILL hits the supervisor:
    the worker (the upgrader) gets SIGTERM from the kernel."""
    process, _ = _supervised()
    process.kill()
    out, _ = process.communicate(timeout=60)
    assert out == "SIGTERM\n"


def test_the_supervisor_passes_sigterm_on_and_ends_as_the_worker_ends() -> None:
    """dash forks: the shell killed, the supervisor gets SIGTERM (its own request to the kernel) and passes it on; it
    passes no SIGINT on, which reaches the worker from the whole process group, so the upgrader never counts two."""
    process, _ = _supervised()
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert (out, process.returncode) == ("SIGTERM\n", 3)
