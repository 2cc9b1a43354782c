"""`iluvatar power bmc` against a stand-in Turing Pi 2 BMC (tests/bmc_standin.py), run as `pulumi up` runs it.

The command is run as a process, password on stdin; the stand-in records every request, so each
test pins exactly what reaches the BMC, in order (plans.power's sequences), and what it refuses.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import lzma
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plans import power as plan
from tests.bmc_standin import ATTEMPTS, StandInBmc, serve
from tests.edit import ROOT

PASSWORD = "turing-CANARY-7f3a"
ILUVATAR = str(ROOT / ".venv" / "bin" / "iluvatar")


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[tuple[StandInBmc, str]]:
    state = StandInBmc(users={"root": PASSWORD})
    with serve(state, tmp_path) as url:
        yield state, url


def power(url: str, slot: int, *extra: str, password: str = PASSWORD, timeout: str = "30s") -> subprocess.CompletedProcess[str]:
    args = [ILUVATAR, "power", "bmc", "--machine", "talos-2", "--bmc", url, "--slot", str(slot), "--user", "root", *extra, "--timeout", timeout]
    return subprocess.run(args, input=json.dumps({"password": password}), capture_output=True, text=True, timeout=120, cwd=ROOT)


def sent(state: StandInBmc) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in state.requests]


def test_powers_the_slot_on_with_exactly_the_planned_requests(bmc: tuple[StandInBmc, str]) -> None:
    state, url = bmc
    result = power(url, 2)
    assert result.returncode == 0, result.stderr
    assert state.power == [False, True, False, False]
    assert (
        sent(state)
        == plan.power_on_requests(2, already_on=False)
        == [
            ("POST", "/api/bmc/authenticate"),
            ("GET", "/api/bmc?opt=get&type=power"),
            ("GET", "/api/bmc?opt=set&type=power&node2=1"),
            ("GET", "/api/bmc?opt=get&type=power"),
        ]
    )
    # The password goes once, in the login's body; every request after it carries the bearer token.
    assert [kind for _, _, kind in state.requests] == ["none", "bearer", "bearer", "bearer"]
    assert result.stdout == f"talos-2: the BMC at {url} (slot 2) is on\n"


def test_a_machine_already_on_is_left_alone_and_a_second_run_changes_nothing(bmc: tuple[StandInBmc, str]) -> None:
    state, url = bmc
    assert power(url, 3).returncode == 0
    state.requests.clear()
    again = power(url, 3)
    assert again.returncode == 0, again.stderr
    assert sent(state) == plan.power_on_requests(3, already_on=True) == [("POST", "/api/bmc/authenticate"), ("GET", "/api/bmc?opt=get&type=power")]
    assert state.power == [False, False, True, False]
    assert again.stdout == f"talos-2: the BMC at {url} (slot 3) is on (it already was)\n"


def test_the_stand_in_requires_authentication(bmc: tuple[StandInBmc, str]) -> None:
    """As bmcd: no request but the login is served without credentials, so the tests above prove the client logs in."""
    _, url = bmc
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + plan.power_on_query(1), context=context, timeout=10)  # noqa: S310 - the stand-in
    assert err.value.code == 401
    assert err.value.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_a_wrong_password_is_refused_once_with_what_to_check(bmc: tuple[StandInBmc, str]) -> None:
    state, url = bmc
    result = power(url, 1, password="not-the-password")  # noqa: S106 - a wrong one, on purpose
    assert result.returncode == 1
    host = url.removeprefix("https://").split(":")[0]
    assert result.stderr == (
        f"error: talos-2: the BMC at {url} (slot 1) refused the login of root (credentials incorrect); check the password set with "
        f"`pulumi config set --secret --path 'iluvatar:bmcPasswords[\"{host}\"]' <password>` and the user name (power.bmc.username); "
        "after 5 wrong attempts the BMC refuses this address for a while\n"
    )
    # Never asked again (bmcd bans after 5 wrong attempts), and nothing switched.
    assert sent(state) == [("POST", "/api/bmc/authenticate")]
    assert state.power == [False] * 4
    assert "not-the-password" not in result.stdout + result.stderr


def test_a_banned_caller_is_told_so(bmc: tuple[StandInBmc, str]) -> None:
    state, url = bmc
    state.failures = ATTEMPTS
    result = power(url, 1)
    assert result.returncode == 1
    assert "refused the login of root (Exceeded allowed authentication attempts. Access blocked for 1m)" in result.stderr


def test_the_password_never_leaves_stdin_but_for_the_login(bmc: tuple[StandInBmc, str]) -> None:
    _, url = bmc
    result = power(url, 4)
    assert result.returncode == 0
    assert PASSWORD not in result.stdout + result.stderr
    # Not on the command line either: the process's arguments are what `ps` shows.
    assert PASSWORD not in " ".join(result.args)


def test_a_bmc_that_does_not_answer_fails_within_the_bound(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    # Bounded by the command's own 5 s, which its message names: without a bound it would ask for ever, and `power`'s
    # 120 s process timeout raises. No wall-clock bound on the run: that measured the loaded machine, not the command.
    result = power(f"https://127.0.0.1:{port}", 1, timeout="5s")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: talos-2: the BMC at https://127.0.0.1:{port} (slot 1) does not answer (ConnectionRefusedError")
    assert result.stderr.rstrip().endswith(
        "while logging in; asked again until its bound of 5 s (--timeout), then gave up; "
        f"check that the BMC is powered, on the LAN and answers https://127.0.0.1:{port}/ in a browser"
    )


def test_stdin_must_carry_the_password(bmc: tuple[StandInBmc, str]) -> None:
    state, url = bmc
    args = [ILUVATAR, "power", "bmc", "--machine", "talos-2", "--bmc", url, "--slot", "1"]
    result = subprocess.run(args, input="", capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert 'stdin is not {"password": "..."}' in result.stderr
    assert state.requests == []


# --- Flashing ---------------------------------------------------------------------------------

IMAGE = b"TALOS-DISK-IMAGE-" * 4096  # what the slot must hold after the flash: the image, unpacked


@contextmanager
def image_server(folder: Path) -> Iterator[str]:
    """An Image Factory stand-in: serves metal-arm64.raw.xz (the name decides that the BMC unpacks it)."""
    (folder / "metal-arm64.raw.xz").write_bytes(lzma.compress(IMAGE, format=lzma.FORMAT_XZ))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metal-arm64.raw.xz"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flash_writes_the_image_to_the_slot_then_powers_it_on(bmc: tuple[StandInBmc, str], tmp_path: Path) -> None:
    state, url = bmc
    with image_server(tmp_path) as image:
        talos = f"127.0.0.1:{free_port()}"  # nothing answers: a blank module
        result = power(url, 2, "--flash", image, "--talos", talos, "--probe", "2s", timeout="2m")
    assert result.returncode == 0, result.stderr
    assert state.disks[1] == IMAGE
    assert state.power == [False, True, False, False]
    requests = sent(state)
    flash = requests.index(("GET", plan.flash_query(2, image)))
    # Login, power on (the module may have Talos already: it gets its probe), flash, poll, power on again (bmcd leaves it off).
    assert requests[:flash] == plan.power_on_requests(2, already_on=False)
    assert plan.flash_query(2, image) == f"/api/bmc?opt=set&type=flash&node=1&file={image.replace(':', '%3A').replace('/', '%2F')}"
    polls = requests[flash + 1 : len(requests) - 3]
    assert polls and set(polls) == {("GET", plan.flash_status_query())}
    assert requests[len(requests) - 3 :] == plan.power_on_requests(2, already_on=False)[1:]
    assert f"Talos does not answer at {talos} after 2 s on; flashing" in result.stdout
    assert f"talos-2: the BMC at {url} (slot 2) flashed {image}" in result.stdout


def test_flash_is_skipped_where_talos_answers(bmc: tuple[StandInBmc, str], tmp_path: Path) -> None:
    state, url = bmc
    with socket.socket() as talos, image_server(tmp_path) as image:
        talos.bind(("127.0.0.1", 0))
        talos.listen()
        where = f"127.0.0.1:{talos.getsockname()[1]}"
        for _ in range(2):  # the first run, then `pulumi up` again after an interruption
            result = power(url, 4, "--flash", image, "--talos", where, "--probe", "5s", timeout="1m")
            assert result.returncode == 0, result.stderr
            assert f"talos-2: Talos answers at {where}; not flashing" in result.stdout
    assert state.disks == [b""] * 4
    assert not any("type=flash" in path for _, path in sent(state))
    assert state.power == [False, False, False, True]


def test_a_failed_flash_says_what_the_bmc_said(bmc: tuple[StandInBmc, str], tmp_path: Path) -> None:
    state, url = bmc
    with image_server(tmp_path) as image:
        missing = image.replace("metal-arm64.raw.xz", "nothing.raw.xz")
        result = power(url, 1, "--flash", missing, "--talos", f"127.0.0.1:{free_port()}", "--probe", "1s", timeout="1m")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: talos-2: the BMC at {url} (slot 1) failed to flash {missing}: http file request error: HTTP Error 404")
    assert result.stderr.rstrip().endswith("check the BMC reaches that URL (DNS, internet) and its log")
    assert state.disks[0] == b""


def test_a_flash_stopped_as_pulumi_stops_a_step_ends_the_command_at_once_and_says_the_bmc_goes_on(
    bmc: tuple[StandInBmc, str], tmp_path: Path
) -> None:
    """Ctrl-C (or the step's custom timeout) during a flash: pulumi-command SIGKILLs the step's shell alone (dash, which
    forks for the command; tests/upgrader/test_cancel.py has the stand-in of the provider) and waits until its output
    closes. The command asked for SIGTERM at the shell's death: it stops polling at once rather than at its 45-minute
    bound, and says the BMC goes on flashing."""
    state, url = bmc
    state.flash_seconds = 3600  # a flash that outlasts the test: only the signal can end the command in time
    (tmp_path / "stdin").write_text(json.dumps({"password": PASSWORD}))
    with image_server(tmp_path) as image, (tmp_path / "stdin").open() as stdin:
        talos = f"127.0.0.1:{free_port()}"
        args = [ILUVATAR, "power", "bmc", "--machine", "talos-2", "--bmc", url, "--slot", "2", "--user", "root"]
        args += ["--flash", image, "--talos", talos, "--probe", "1s", "--timeout", "45m"]
        dash = shutil.which("dash")
        assert dash is not None
        shell = subprocess.Popen(
            [dash, "-c", shlex.join(args)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            process_group=0,
        )
        try:
            assert shell.stdout is not None
            while "is flashing" not in (line := shell.stdout.readline()):
                assert line, "the command ended before it flashed"
            shell.kill()  # the shell alone, as Go's exec.CommandContext kills it
            try:
                out, err = shell.communicate(timeout=60)  # returns once every holder of the pipes closed them
            except subprocess.TimeoutExpired:
                raise AssertionError("the command still polls the flash after its shell was killed") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
    assert out == ""
    assert err == (
        f"error: talos-2: the BMC at {url} (slot 2): stopped by SIGTERM while the BMC flashes {image}: the flash goes on in the "
        "BMC, which runs it on its own (its web UI shows it); let it finish before the next `pulumi up`, which otherwise asks "
        "for the flash again\n"
    )
    assert isinstance(state.flash_state, dict) and "Transferring" in state.flash_state  # the BMC flashes on
