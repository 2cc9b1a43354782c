"""tools/pulumi-command-local runs and stops a command as pulumi-command v1.2.1's local Command does (its source:
provider/pkg/provider/local/commandOutputs.go): the premises of a step stopped by Pulumi (tests/upgrader/test_cancel.py)."""

from __future__ import annotations

from pathlib import Path

from tests.upgrader.run import children, only_child, running, step, until


def test_the_step_gets_its_stdin_and_its_output_comes_back() -> None:
    with step("cat; echo done >&2", "the secrets, on stdin") as ran:
        result = ran.result(timeout=60)
    assert (result["error"], result["stdout"], result["stderr"], result["exit"]) == ("", "the secrets, on stdin", "done\n", 0)


def test_a_failed_step_reports_its_command_and_its_output() -> None:
    with step("echo out; echo err >&2; exit 3", "") as ran:
        result = ran.result(timeout=60)
    assert (result["exit"], result["signaled"], result["stdout"], result["stderr"]) == (3, False, "out\n", "err\n")
    # Both streams after the command, in the order they were copied (two pipes: either may come first).
    head, _, output = result["error"].partition(":\n")
    assert (head, sorted(output.splitlines())) == ('exit status 3: running "echo out; echo err >&2; exit 3"', ["err", "out"])


def test_a_cancel_kills_the_shell_alone_and_wait_lasts_as_long_as_what_holds_the_steps_output(tmp_path: Path) -> None:
    """The shell gets SIGKILL and nothing else does: a process it started goes on, and holds the step's output, so
    Wait returns only once it has ended (it writes `done` as it ends: the file is there when Wait returns)."""
    done = tmp_path / "done"
    with step(f"(sleep 1; touch {done}); true", "") as ran:
        shell = ran.shell()
        subshell = only_child(shell)
        until("the subshell's sleep", lambda: bool(children(subshell)), 30)
        ran.cancel()
        result = ran.result(timeout=60)
        assert done.exists()
    assert (result["signaled"], result["exit"]) == (True, -1)
    assert result["error"] == 'signal: killed: running "(sleep 1; touch ' + str(done) + '); true":\n'
    # The subshell closes the step's output as it exits (the kernel's exit_files comes before exit_notify makes it a
    # zombie), so Wait may return a moment before it is dead: wait that moment out, bounded (a CI run met it once).
    until("the subshell's exit", lambda: not running(subshell), 5)
    assert not running(shell) and not running(subshell)
