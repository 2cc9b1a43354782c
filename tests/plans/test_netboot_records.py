"""The records loop (plans.netboot.records): one version of the netboot ConfigMap's records into dnsmasq's folders,
each by one rename, through a swap of the volume in the middle of a pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from plans import netboot
from plans.netboot import records
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.plans.test_netboot_pis import SWAP_HOOK
from tests.tools import require


def _version(volume: Path, name: str, hosts: str, dhcp: str) -> None:
    (volume / name).mkdir(parents=True)
    (volume / name / records.HOSTS_KEY).write_text(hosts)
    (volume / name / records.DHCP_HOSTS_KEY).write_text(dhcp)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", netboot.records_script()], env=env, capture_output=True, text=True, timeout=60)


def test_a_pass_puts_each_file_in_place_by_one_rename_and_only_when_it_changed(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    volume, dest = tmp_path / "volume", tmp_path / "records"
    _version(volume, "..v1", netboot.hosts_file(stack), netboot.dhcp_hosts_file(stack))
    (volume / "..data").symlink_to("..v1")
    env = {"PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest), "ONCE": "1"}
    first = _run(env)
    assert first.returncode == 0, first.stderr
    assert (dest / "hosts" / "iluvatar").read_text() == netboot.hosts_file(stack)
    assert (dest / "dhcp-hosts" / "iluvatar").read_text() == netboot.dhcp_hosts_file(stack)
    assert sorted(p.name for p in (dest / "hosts").iterdir()) == ["iluvatar"]
    assert first.stderr == "iluvatar: dnsmasq reads its hosts anew (14 lines)\niluvatar: dnsmasq reads its dhcp-hosts anew (8 lines)\n"
    inode = (dest / "hosts" / "iluvatar").stat().st_ino
    again = _run(env)
    assert (again.returncode, again.stderr) == (0, "")
    assert (dest / "hosts" / "iluvatar").stat().st_ino == inode, "an unchanged file is left alone: dnsmasq reads nothing"


def test_the_first_pass_fails_when_the_records_cannot_be_read(tmp_path: Path) -> None:
    """The init step: dnsmasq must not start without its records (it would serve no inventory until the loop's pass)."""
    (tmp_path / "volume").mkdir()
    done = _run({"PATH": os.environ["PATH"], "SRC": str(tmp_path / "volume"), "DEST": str(tmp_path / "records"), "ONCE": "1"})
    assert (done.returncode, done.stderr) == (1, f"iluvatar: the records under {tmp_path / 'volume'} cannot be read; dnsmasq keeps the ones it has\n")


@pytest.mark.parametrize("at", [("readlink",), ("cp",)], ids=["after-resolve", "after-first-read"])
def test_a_swap_of_the_volume_in_the_middle_of_a_pass_hands_dnsmasq_one_version(tmp_path: Path, at: tuple[str, ...]) -> None:
    volume, dest = tmp_path / "volume", tmp_path / "records"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33,set:known\n")
    _version(volume, "..v2", "192.168.0.41 films.iluvatar.home.arpa\n", "02:00:5e:00:0e:34,set:known\n")
    (volume / "..data").symlink_to("..v1")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for program in at:
        (hooks / program).write_text(SWAP_HOOK)
        (hooks / program).chmod(0o755)
    env = {"PATH": f"{hooks}:{os.environ['PATH']}", "REAL_PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest), "ONCE": "1"}
    env |= {"BOOTS": str(volume), "NEW_VERSION": "..v2", "SWAPPED": str(tmp_path / "swapped")}
    done = _run(env)
    assert (tmp_path / "swapped").exists() and not (volume / "..v1").exists()
    assert done.returncode == 0, done.stderr
    # One version whole: the new one when the swap came before anything was read, else the old one (the next pass's).
    want = ("films", "34") if at == ("readlink",) else ("music", "33")
    assert want[0] in (dest / "hosts" / "iluvatar").read_text() and want[1] in (dest / "dhcp-hosts" / "iluvatar").read_text()


def _stand_in_dnsmasq() -> subprocess.Popen[str]:
    """What the loop sees of dnsmasq: a process that catches SIGHUP, as dnsmasq does once started. It prints `hup` and
    exits on one, and exits silent when its input closes. Returned once its handler is in (it says `ready`): a SIGHUP
    before that would meet the default action. Python, not a shell's `trap`: a shell started with SIGHUP ignored (a run
    under nohup) cannot trap it (POSIX, Shell Command Language 2.14 `trap`), where dnsmasq's own sigaction (src/dnsmasq.c
    at 2.90) installs its handler whatever it inherited."""
    script = (
        "import signal, sys\n"
        "signal.signal(signal.SIGHUP, lambda *_: (print('hup', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


@pytest.mark.parametrize("change", ["dhcp hosts", "hosts only", "nothing"])
def test_the_loop_signals_dnsmasq_after_a_new_dhcp_hosts_file_only(tmp_path: Path, change: str) -> None:
    """dnsmasq 2.90 reads a dhcp-hostsfile anew on SIGHUP alone (src/option.c:5810-5826): the loop sends it one after it
    put a new DHCP hosts file, and none for the hosts file (which dnsmasq reads by itself) or for nothing new."""
    volume, dest = tmp_path / "volume", tmp_path / "records"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33,192.168.0.33,nienna,infinite\n")
    (volume / "..data").symlink_to("..v1")
    env = {"PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest), "ONCE": "1"}
    assert _run(env).returncode == 0
    hosts = "192.168.0.41 films.iluvatar.home.arpa\n" if change != "nothing" else "192.168.0.40 music.iluvatar.home.arpa\n"
    dhcp = "02:00:5e:00:0e:33,192.168.0.34,nienna,infinite\n" if change == "dhcp hosts" else "02:00:5e:00:0e:33,192.168.0.33,nienna,infinite\n"
    _version(volume, "..v2", hosts, dhcp)
    (volume / "..data_tmp").symlink_to("..v2")
    (volume / "..data_tmp").rename(volume / "..data")
    dnsmasq = _stand_in_dnsmasq()
    done = _run({**env, "DNSMASQ_PID": str(dnsmasq.pid)})
    assert done.returncode == 0, done.stderr
    out, _ = dnsmasq.communicate("", timeout=10)
    assert out == ("hup\n" if change == "dhcp hosts" else "")
    assert (dest / "dhcp-hosts" / "iluvatar").read_text() == dhcp


def test_dnsmasqs_container_ends_with_dnsmasq_and_passes_it_the_kubelets_term(tmp_path: Path) -> None:
    """dnsmasq's container's command (records.run_script), with the real dnsmasq and the real loop: the kubelet's TERM
    to the container's first process reaches dnsmasq, and the container ends with dnsmasq's status, its loop with it;
    dnsmasq ending on its own ends the container too, so the kubelet starts it again."""
    volume, dest, etc = tmp_path / "volume", tmp_path / "records", tmp_path / "etc"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33\n")
    (volume / "..data").symlink_to("..v1")
    etc.mkdir()
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    dnsmasq = require("dnsmasq")
    env = {"PATH": f"{Path(dnsmasq).parent}:{os.environ['PATH']}", "SRC": str(volume), "DEST": str(dest)}
    for ending in ("the kubelet's TERM", "dnsmasq's own end"):
        pid_file = tmp_path / "dnsmasq.pid"
        pid_file.unlink(missing_ok=True)
        # No DNS (port 0) and no DHCP: dnsmasq runs unprivileged; the signal plumbing is the same.
        args = ["--keep-in-foreground", "--port=0", "--conf-file=/dev/null", "--log-facility=-", f"--pid-file={pid_file}"]
        container = subprocess.Popen(["sh", str(etc / records.RUN_SCRIPT), *args], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert container.poll() is None and time.monotonic() < deadline, "dnsmasq never wrote its pid file"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        # dnsmasq and the loop's keeper, which the container's shell may fork after dnsmasq wrote its pid file; its third
        # child, the listener watch (forked after the keeper), ends at once here, as the config names no listen-address
        # to watch: the children are those two once it has.
        while not (
            str(pid) in (children := set(Path(f"/proc/{container.pid}/task/{container.pid}/children").read_text().split())) and len(children) == 2
        ):
            assert container.poll() is None and time.monotonic() < deadline, children
            time.sleep(0.05)
        if ending == "the kubelet's TERM":
            container.send_signal(signal.SIGTERM)
            assert container.wait(timeout=20) == 0
        else:
            os.kill(pid, signal.SIGKILL)
            assert container.wait(timeout=20) == 128 + signal.SIGKILL
        for child in children:
            assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text(), child


def test_a_records_loop_that_keeps_dying_ends_dnsmasqs_container(tmp_path: Path) -> None:
    """Issue 53: the records loop ending by itself for good (here: its SRC unset, which `set -u` stops on before its
    loop) is started again RECORDS_RESTARTS times, then stops dnsmasq, and the container ends with status 1, so the
    kubelet starts both again; dnsmasq never serves stale names and reservations for good with nothing in the pod's status."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    dnsmasq = require("dnsmasq")
    env = {"PATH": f"{Path(dnsmasq).parent}:{os.environ['PATH']}", "DEST": str(tmp_path / "records")}
    args = ["--keep-in-foreground", "--port=0", "--conf-file=/dev/null", "--log-facility=-", f"--pid-file={tmp_path / 'dnsmasq.pid'}"]
    container = subprocess.Popen(["sh", str(etc / records.RUN_SCRIPT), *args], env=env, stderr=subprocess.PIPE, text=True)
    assert container.wait(timeout=60) == 1
    assert container.stderr is not None
    err = [line for line in container.stderr.read().splitlines() if line.startswith("iluvatar: the records loop")]
    assert err == [
        *(f"iluvatar: the records loop ended (status 2); starting it again ({n} of 3); dnsmasq serves meanwhile" for n in (1, 2, 3)),
        "iluvatar: the records loop ended (status 2) again after 3 restarts: dnsmasq stops with it, and the kubelet starts both again",
        "iluvatar: the records loop ended (status 2): dnsmasq's container ends with it",
    ]


def test_a_records_loop_that_dies_once_is_started_again_beside_the_same_dnsmasq(tmp_path: Path) -> None:
    """Issue 53: a transient failure of the records loop (here its first mktemp fails, as a fork or a full /tmp would)
    costs a restart of the loop alone: the same dnsmasq keeps serving, and the loop started again hands it the records.
    Ending dnsmasq's container on it turned stale names into the household's DHCP and DNS gone, plus the kubelet's
    back-off."""
    volume, dest, etc, bin_dir = tmp_path / "volume", tmp_path / "records", tmp_path / "etc", tmp_path / "bin"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33\n")
    (volume / "..data").symlink_to("..v1")
    etc.mkdir()
    bin_dir.mkdir()
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    # mktemp that fails once, then is the real one.
    real = subprocess.run(["sh", "-c", "command -v mktemp"], capture_output=True, text=True, check=True).stdout.strip()
    (bin_dir / "mktemp").write_text(f'#!/bin/sh\nif [ ! -e "{tmp_path}/failed" ]; then : > "{tmp_path}/failed"; exit 1; fi\nexec {real} "$@"\n')
    (bin_dir / "mktemp").chmod(0o755)
    dnsmasq = require("dnsmasq")
    env = {"PATH": f"{bin_dir}:{Path(dnsmasq).parent}:{os.environ['PATH']}", "SRC": str(volume), "DEST": str(dest)}
    pid_file = tmp_path / "dnsmasq.pid"
    args = ["--keep-in-foreground", "--port=0", "--conf-file=/dev/null", "--log-facility=-", f"--pid-file={pid_file}"]
    container = subprocess.Popen(["sh", str(etc / records.RUN_SCRIPT), *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert container.stderr is not None
        assert _ours(container.stderr).startswith("iluvatar: the records loop ended (status 1); starting it again (1 of 3)")
        # The loop started again puts the records (the event: its own line), beside the dnsmasq that never stopped.
        lines = [_ours(container.stderr) for _ in range(2)]
        assert sorted(line.split(" (")[0] for line in lines) == [
            "iluvatar: dnsmasq reads its dhcp-hosts anew",
            "iluvatar: dnsmasq reads its hosts anew",
        ]
        assert (dest / "hosts" / "iluvatar").read_text() == "192.168.0.40 music.iluvatar.home.arpa\n"
        pid = int(pid_file.read_text())
        assert container.poll() is None and "zombie" not in Path(f"/proc/{pid}/status").read_text()
        container.send_signal(signal.SIGTERM)
        assert container.wait(timeout=20) == 0
    finally:
        if container.poll() is None:
            container.kill()
            container.wait()


def _ours(stream: IO[str]) -> str:
    """The next line the container's scripts wrote, past dnsmasq's own log lines (--log-facility=-, the same stream)."""
    while (line := stream.readline()).startswith("dnsmasq"):
        pass
    return line
