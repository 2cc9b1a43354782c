"""The real dnsmasq serves an app added and a machine added with no restart (plans.netboot.records): the kubelet's swap
of the netboot ConfigMap's volume (a stand-in, as its atomic writer does it), the program's records loop running beside
dnsmasq as its container's command runs it (its SIGHUP for the DHCP hosts), and the running dnsmasq answers the new
name and the new machine's reservation, its process and its leases the same."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO

import pytest

from plans import netboot
from plans.netboot import records
from stacks import load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns.household import lease_of
from tests.netns.lan import Lan, in_ns, lan, require_root, wait_until
from tests.plans.test_netboot_records import _version
from tests.tools import busybox_applets, require

require_root()

SVC = "192.168.0.14"
PHONE = "02:00:5e:00:0e:01"
NEW_MAC, NEW_IP = "02:00:5e:00:0e:33", "192.168.0.33"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    with lan(load_stack_file(HOMELAB), tmp_path_factory.mktemp("records"), f"ilv{os.getpid() % 10000}r", records_loop=True) as network:
        yield network


def wait_for_line(log: Path, line: str, after: int, what: str) -> None:
    """Until dnsmasq's log has `line` past its first `after` characters: dnsmasq saying it read a file, at most 20 s."""

    def text() -> str:
        return log.read_text()[after:] if log.exists() else ""

    wait_until(f"dnsmasq to say {line!r} ({what})", lambda: line in text(), 20, lambda: f"\n{text()}")


def test_an_app_and_a_machine_added_are_served_by_the_running_dnsmasq(net: Lan) -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    log = net.root / "dnsmasq.log"
    pid = (net.root / "dnsmasq.pid").read_text().strip()
    conf = (net.root / "dnsmasq.conf").read_text()
    household = net.lease(PHONE, firmware=None)
    assert household, "the household's phone has an address"
    app = ("music.iluvatar.home.arpa", IPv4Address("192.168.0.40"))
    assert in_ns(net.client(PHONE), require("dig"), f"@{SVC}", "+short", app[0]).stdout.strip() == ""
    added = parse_stack(
        {
            **raw,
            "iluvatar:nodes": [
                *raw["iluvatar:nodes"],
                {
                    "name": "nienna",
                    "role": "istari",
                    "arch": "amd64",
                    "board": "generic-x86",
                    "mac": NEW_MAC,
                    "ip": NEW_IP,
                    "boot": "disk",
                    "installDisk": {"model": "Samsung SSD 860"},
                },
            ],
        }
    )
    # What a `pulumi up` of the new stack changes in the netboot pod's files: not dnsmasq.conf.
    assert (
        netboot.dnsmasq_conf(
            added, tftp_root=str(net.root / "tftp"), lease_file=str(net.root / "leases" / "dnsmasq.leases"), records_dir=str(net.records)
        )
        == conf
    )
    mark = len(log.read_text())
    net.project_records(added, [app])
    wait_for_line(log, f"read {net.records}/hosts/iluvatar", mark, "the new names")
    wait_for_line(log, f"read {net.records}/dhcp-hosts/iluvatar", mark, "the new DHCP hosts")
    assert in_ns(net.client(PHONE), require("dig"), f"@{SVC}", "+short", app[0]).stdout.strip() == str(app[1])
    assert in_ns(net.client(PHONE), require("dig"), f"@{SVC}", "+short", "nienna.iluvatar.home.arpa").stdout.strip() == NEW_IP
    lease = net.lease(NEW_MAC, firmware=None)
    assert (lease["ip"], lease["hostname"]) == (NEW_IP, "nienna")
    # The same dnsmasq, never restarted, and the household's lease as it was.
    assert (net.root / "dnsmasq.pid").read_text().strip() == pid and net.procs["dnsmasq"].poll() is None
    assert "started, version" not in log.read_text()[mark:]
    assert net.lease(PHONE, firmware=None)["ip"] == household["ip"]
    # An app removed: its name goes (a hosts file read anew drops the names it held: dnsmasq 2.90 src/inotify.c:307).
    mark = len(log.read_text())
    net.project_records(added)
    wait_for_line(log, f"read {net.records}/hosts/iluvatar", mark, "the names without the app")
    assert in_ns(net.client(PHONE), require("dig"), f"@{SVC}", "+short", app[0]).stdout.strip() == ""


def test_dnsmasq_alone_never_sees_the_kubelets_swap_of_the_volume(tmp_path: Path) -> None:
    """Why the records loop exists: dnsmasq with its hostsdir on the ConfigMap's volume itself reads nothing of a swap.
    The swap's one event is the rename of ..data, a dot name dnsmasq skips (dnsmasq 2.90 src/inotify.c:272-277). A file
    renamed into a second watched folder after the swap is read: dnsmasq has handled every event before it (one
    inotify queue, read in order), and none read the volume again."""
    volume, marker = tmp_path / "volume", tmp_path / "marker"
    volume.mkdir()
    marker.mkdir()
    (volume / "..v1").mkdir()
    (volume / "..v1" / "hosts").write_text("192.168.0.40 music.iluvatar.home.arpa\n")
    (volume / "..data").symlink_to("..v1")
    (volume / "hosts").symlink_to("..data/hosts")
    log = tmp_path / "dnsmasq.log"
    args = [require("dnsmasq"), "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root", "--port=53", "--listen-address=127.0.0.1",
            "--bind-interfaces", f"--hostsdir={volume}", f"--hostsdir={marker}", f"--log-facility={log}", f"--pid-file={tmp_path / 'pid'}"]  # fmt: skip
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *args])
    try:
        wait_for_line(log, f"read {volume}/hosts - 1 names", 0, "the volume at its start")
        (volume / "..v2").mkdir()
        (volume / "..v2" / "hosts").write_text("192.168.0.40 music.iluvatar.home.arpa\n192.168.0.41 films.iluvatar.home.arpa\n")
        (volume / "..data_tmp").symlink_to("..v2")
        os.replace(volume / "..data_tmp", volume / "..data")
        for old in (volume / "..v1").iterdir():
            old.unlink()
        (volume / "..v1").rmdir()
        (marker / ".after.new").write_text("192.168.0.99 after.iluvatar.home.arpa\n")
        os.replace(marker / ".after.new", marker / "after")
        wait_for_line(log, f"read {marker}/after - 1 names", 0, "the marker after the swap")
        assert log.read_text().count(f"read {volume}/hosts") == 1
        assert f"inotify: {volume}" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("tagged", [True, False], ids=["a set: tag on each line", "the program's lines"])
def test_a_sighup_aborts_a_dnsmasq_that_answered_a_tagged_host_of_its_dhcp_hostsfile(tmp_path: Path, tagged: bool) -> None:
    """Why the DHCP hosts carry no tag (plans.netboot.dnsmasq.dhcp_hosts_file): dnsmasq 2.90 links a matched host's
    `set:` tags into the packet's tag list (src/rfc2131.c:819-827), and the SIGHUP that re-reads the file frees them
    through that list (src/option.c:1326-1335): the real dnsmasq aborts. With the program's lines it reads the file
    anew and goes on lending."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {**raw["iluvatar:ainur"]["netboot"], "mode": "dhcp"}}
    stack = parse_stack(raw)
    manwe = stack.nodes[0]
    with lan(stack, tmp_path, f"ilv{os.getpid() % 10000}s{int(tagged)}") as net:
        hosts = netboot.dhcp_hosts_file(stack)
        if tagged:
            hosts = hosts.replace(f"{manwe.mac},", f"{manwe.mac},set:known,")
        (net.records / "dhcp-hosts" / "iluvatar").write_text(hosts)
        log, pid = net.root / "dnsmasq.log", int((net.root / "dnsmasq.pid").read_text())
        mark = len(log.read_text())
        os.kill(pid, signal.SIGHUP)  # no host answered yet: dnsmasq reads the file, whatever its tags
        wait_for_line(log, f"read {net.records}/dhcp-hosts/iluvatar", mark, "the DHCP hosts")
        assert net.lease(manwe.mac, firmware=None)["ip"] == str(manwe.ip)
        mark = len(log.read_text())
        os.kill(pid, signal.SIGHUP)
        if tagged:
            assert net.procs["dnsmasq"].wait(timeout=20) == -signal.SIGABRT
        else:
            wait_for_line(log, f"read {net.records}/dhcp-hosts/iluvatar", mark, "the DHCP hosts again")
            assert net.lease(manwe.mac, firmware=None)["ip"] == str(manwe.ip)
            assert net.procs["dnsmasq"].poll() is None


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _state(pid: int) -> str:
    """The process's state letter (/proc/<pid>/stat: T stopped, t stopped by its tracer)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _ended(pid: int) -> bool:
    """Whether the process has ended: gone, or a zombie its parent has not reaped yet."""
    try:
        return _state(pid) == "Z"
    except FileNotFoundError:
        return True


def _until(what: str, done: Callable[[], bool]) -> None:
    """Until `done`, at most 20 s, naming what it waits for, every 50 ms."""
    wait_until(what, done, 20, interval=0.05)


@pytest.mark.parametrize("hold", ["before its handler", "after its handler"])
def test_a_dhcp_hosts_file_put_while_dnsmasq_starts_neither_kills_it_nor_is_lost(tmp_path: Path, hold: str) -> None:
    """dnsmasq's container (records.run_script) with the real dnsmasq and loop, dnsmasq's start held while the loop
    puts a new DHCP hosts file. STAND-IN for a slow start: on the PATH, a `dnsmasq` shell that stops itself and,
    released by the test, execs the real one, as the container's command's own child is a shell until its exec.
    Before dnsmasq catches SIGHUP (dnsmasq 2.90 src/dnsmasq.c:87-96) the signal has its default action and kills it:
    the loop must not send one. After, held again at its pid file (:667, strace stopping it there), the start is not
    over (:1048): dnsmasq ignores the loop's SIGHUP (:1303-1309), and loses nothing by it. Either way dnsmasq's first
    read of the file, in its main loop (:587, :1223, :1481), takes the new reservation, which a real DHCP client gets."""
    volume, dest, etc, bin_dir = tmp_path / "volume", tmp_path / "records", tmp_path / "etc", tmp_path / "bin"
    old, new = "02:00:5e:00:0e:33,192.168.0.33,nienna,infinite\n", "02:00:5e:00:0e:33,192.168.0.34,nienna,infinite\n"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", old)
    (volume / "..data").symlink_to("..v1")
    env = {"PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest)}
    once = subprocess.run(["sh", "-c", records.records_script()], env={**env, "ONCE": "1"}, capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr  # the init step: dnsmasq starts with the old reservation
    etc.mkdir()
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    bin_dir.mkdir()
    (bin_dir / "dnsmasq").write_text(f'#!/bin/sh\nkill -STOP $$\nexec {require("dnsmasq")} "$@"\n')
    (bin_dir / "dnsmasq").chmod(0o755)
    log, pid_file, leases = tmp_path / "dnsmasq.log", tmp_path / "dnsmasq.pid", tmp_path / "dnsmasq.leases"
    args = ["--keep-in-foreground", "--conf-file=/dev/null", "--user=root", "--no-resolv", "--no-hosts", "--port=0", "--interface=a0",
            "--bind-interfaces", "--dhcp-range=192.168.0.100,192.168.0.200", f"--dhcp-hostsfile={dest}/dhcp-hosts/{records.FILE}",
            f"--dhcp-leasefile={leases}", f"--log-facility={log}", f"--pid-file={pid_file}"]  # fmt: skip
    wire = "ip link add a0 type veth peer name b0 && ip addr add 192.168.0.14/24 dev a0 && ip link set b0 address 02:00:5e:00:0e:33"
    wire += " && ip link set a0 up && ip link set b0 up && ip link set lo up"
    container = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'{wire} && exec sh "$@"', "sh", str(etc / records.RUN_SCRIPT), *args],
        env={**env, "PATH": f"{bin_dir}:{env['PATH']}"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until("the container runs dnsmasq and its loop", lambda: container.poll() is None and len(_children(container.pid)) == 2)
        # The container's children: dnsmasq (here its held stand-in) and the subshell that starts the loop again when it
        # ends (records.run_script); the loop is that subshell's child, running records.SCRIPT.
        held, keeper = sorted(_children(container.pid), key=lambda child: str(bin_dir / "dnsmasq") not in Path(f"/proc/{child}/cmdline").read_text())
        _until("the records loop runs", lambda: any(records.SCRIPT in Path(f"/proc/{c}/cmdline").read_text() for c in _children(keeper)))
        [loop] = [c for c in _children(keeper) if records.SCRIPT in Path(f"/proc/{c}/cmdline").read_text()]
        _until("dnsmasq's start held", lambda: _state(held) == "T")
        if hold == "after its handler":
            trace = tmp_path / "strace"
            strace = subprocess.Popen([require("strace"), "-p", str(held), "-o", str(trace), "-e", "trace=openat",
                                       "-e", "inject=openat:signal=SIGSTOP", "-P", str(pid_file)])  # fmt: skip
            _until("strace attached", lambda: "TracerPid:\t0\n" not in Path(f"/proc/{held}/status").read_text())
            os.kill(held, signal.SIGCONT)
            _until("dnsmasq stopped at its pid file", lambda: pid_file.exists() and _state(held) in ("t", "T"))
        sleeps = set(_children(loop))
        _version(volume, "..v2", "192.168.0.40 music.iluvatar.home.arpa\n", new)
        (volume / "..data_tmp").symlink_to("..v2")
        (volume / "..data_tmp").rename(volume / "..data")
        assert container.stderr is not None
        assert select.select([container.stderr], [], [], 20)[0], "the loop never put the new DHCP hosts"
        line = container.stderr.readline()
        assert line == "iluvatar: dnsmasq reads its dhcp-hosts anew (1 lines)\n", line
        # The pass is over once the loop waits on its next poll.
        _until("the loop's next poll", lambda: bool(set(_children(loop)) - sleeps))
        if hold == "after its handler":
            # The loop signalled the dnsmasq that catches SIGHUP: pending while it is stopped (bit 0 of SigPnd or ShdPnd).
            pending = {
                k: int(v, 16)
                for k, v in (ln.split(":\t") for ln in Path(f"/proc/{held}/status").read_text().splitlines())
                if k in ("SigPnd", "ShdPnd")
            }
            assert (pending["SigPnd"] | pending["ShdPnd"]) & 1, pending
            strace.terminate()  # strace detaches; dnsmasq stays stopped until the SIGCONT
            strace.wait(timeout=20)
        os.kill(held, signal.SIGCONT)
        _until(
            "dnsmasq's DHCP hosts read",
            lambda: container.poll() is not None or f"read {dest}/dhcp-hosts/" in (log.read_text() if log.exists() else ""),
        )
        assert container.poll() is None, f"dnsmasq's container ended: {container.returncode}"
        client = ["nsenter", f"--net=/proc/{container.pid}/ns/net", require("udhcpc"), "-i", "b0", "-f", "-q", "-n", "-t", "3", "-T", "1",
                  "-s", "/bin/true"]  # fmt: skip
        subprocess.run(client, check=True, capture_output=True, timeout=60)
        assert leases.read_text().split()[1:3] == ["02:00:5e:00:0e:33", "192.168.0.34"]
        assert log.read_text().count(f"read {dest}/dhcp-hosts/") == 1  # its first read; the ignored SIGHUP read nothing
        container.send_signal(signal.SIGTERM)
        assert container.wait(timeout=20) == 0
    finally:
        # A held dnsmasq outlives its container's command: end the container's children too, whatever failed.
        for child in _children(container.pid) if container.poll() is None else []:
            os.kill(child, signal.SIGKILL)
        if container.poll() is None:
            container.kill()
            container.wait(timeout=20)


def test_a_reserved_address_whose_old_machine_is_gone_is_lent_to_its_new_mac_after_a_restart(net: Lan) -> None:
    """saruman's address (192.168.0.32) held by an infinite lease of a MAC no longer reserved at it (the machine it was
    lent to, gone): the real dnsmasq will not lend it to saruman's MAC (src/rfc2131.c:1101-1111). The program's
    restore-leases drops such a lease before dnsmasq starts (plans.netboot.leases.drop_stale_script, run by busybox's
    sh as in the image), so after the pod's restart saruman is lent its reservation."""
    saruman, ip, gone = "28:d2:44:30:00:02", "192.168.0.32", "02:00:5e:00:0e:99"
    leases = net.root / "leases" / "dnsmasq.leases"
    net.stop("dnsmasq")
    leases.parent.mkdir(exist_ok=True)
    leases.write_text(f"0 {gone} {ip} gone *\n")
    net.start_dnsmasq(keep_leases=True)
    assert lease_of(net, saruman) != ip
    log = (net.root / "dnsmasq.log").read_text()
    assert f"not using configured address {ip} because it is leased to {gone}" in log
    # The pod restarted: restore-leases' filter on the lease file the cluster kept, then dnsmasq.
    net.stop("dnsmasq")
    leases.write_text(f"0 {gone} {ip} gone *\n")
    hosts = net.root / "netboot-configmap" / records.DHCP_HOSTS_KEY
    done = subprocess.run(
        [require("busybox"), "sh", "-euc", netboot.drop_stale_script(str(leases), str(hosts))], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "dropped the leases of reserved addresses held by a MAC no longer reserved at them:",
        f"0 {gone} {ip} gone *",
    ]
    net.start_dnsmasq(keep_leases=True)
    assert lease_of(net, saruman) == ip


def _busybox(bin_dir: Path) -> dict[str, str]:
    """A PATH on which the container's scripts run the image's tools: busybox's sh, ip, awk, grep, tr, cat, sleep (the dnsmasq
    image is Alpine's: its /bin/sh and these are busybox applets), then dnsmasq and the rest of this host's."""
    applets = ("sh", "ip", "awk", "grep", "tr", "cat", "sleep", "cp", "cmp", "mv", "mkdir", "chmod", "rm", "mktemp", "readlink")
    busybox_applets(bin_dir, applets)
    return {"PATH": f"{bin_dir}:{Path(require('dnsmasq')).parent}:{os.environ['PATH']}"}


@pytest.mark.parametrize("left_on_lo", [False, True], ids=["lo-clean", "nudge-address-left-on-lo"])
def test_a_bind_dnsmasq_lost_as_the_service_address_came_is_made_by_an_address_event(tmp_path: Path, left_on_lo: bool) -> None:
    """dnsmasq's container (records.run_script, run by busybox as in the image) with the real dnsmasq and the program's
    dnsmasq.conf, on a Pi that does not hold the service address yet: kube-vip adds it, and dnsmasq's binds to it fail
    at the address event. dnsmasq (bind-dynamic) tries them again only at the next address event (dnsmasq 2.90
    src/network.c:923-940, :1185-1190), which here none would be: the listener watch sees the address on this host with
    no socket on it, makes one, and the same dnsmasq binds. STAND-IN for the failure: the kernel's own window
    (RTM_NEWADDR sent before the address's local route, Linux net/ipv4/devinet.c __inet_insert_ifa) cannot be held open
    from outside, so sockets of the test's hold DNS and TFTP's ports there while dnsmasq, stopped while the address
    came, handles the event (its binds then fail with EADDRINUSE, which it logs, where the kernel's window gives the
    EADDRNOTAVAIL it passes over); what the household is left with is the same: the address held, no listener on it.
    With records.NUDGE_ADDRESS already on lo (a watch killed between its add and its removal: the Pi's lo outlives the
    container), the removal alone is the event, and the address is gone after it."""
    stack = load_stack_file(HOMELAB)
    volume, dest, etc, tftp = tmp_path / "volume", tmp_path / "records", tmp_path / "etc", tmp_path / "tftp"
    _version(volume, "..v1", netboot.hosts_file(stack), netboot.dhcp_hosts_file(stack))
    (volume / "..data").symlink_to("..v1")
    env = {**_busybox(tmp_path / "bin"), "SRC": str(volume), "DEST": str(dest)}
    once = subprocess.run(["sh", "-c", records.records_script()], env={**env, "ONCE": "1"}, capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr  # the init step: dnsmasq starts with the records
    etc.mkdir()
    tftp.mkdir()
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    conf, log, pid_file = tmp_path / "dnsmasq.conf", tmp_path / "dnsmasq.log", tmp_path / "dnsmasq.pid"
    conf.write_text(netboot.dnsmasq_conf(stack, tftp_root=str(tftp), lease_file=str(tmp_path / "dnsmasq.leases"), records_dir=str(dest)))
    args = ["--keep-in-foreground", f"--conf-file={conf}", "--user=root", f"--pid-file={pid_file}", f"--log-facility={log}", "--log-debug"]
    # The lab's wiring by this host's iproute2 (busybox's ip makes no veth). No IPv6: its link-local addresses' own
    # events, as DAD ends, would have dnsmasq bind with no help, which a Pi's long-settled links do not give.
    ip = require("ip")
    wire = "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
    wire += f" && {ip} link add eth0 type veth peer name b0 && {ip} addr add 192.168.0.13/24 dev eth0 && {ip} link set eth0 up"
    wire += f" && {ip} link set b0 up && {ip} link set lo up"
    if left_on_lo:
        wire += f" && {ip} addr add {records.NUDGE_ADDRESS}/32 dev lo"
    container = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'{wire} && exec sh "$@"', "sh", str(etc / records.RUN_SCRIPT), *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    blocker: subprocess.Popen[str] | None = None
    try:
        _until("dnsmasq wrote its pid file", lambda: container.poll() is None and pid_file.exists() and bool(pid_file.read_text().strip()))
        pid = int(pid_file.read_text())
        in_pi = ["nsenter", f"--net=/proc/{container.pid}/ns/net"]
        os.kill(pid, signal.SIGSTOP)
        subprocess.run([*in_pi, "ip", "addr", "add", f"{SVC}/32", "dev", "eth0"], check=True, timeout=20)  # kube-vip's add
        hold = (
            "import socket,sys\n"
            "held=[socket.socket(socket.AF_INET,k) for k in (socket.SOCK_DGRAM,socket.SOCK_STREAM,socket.SOCK_DGRAM)]\n"
            "for s,port in zip(held,(53,53,69)): s.bind((sys.argv[1],port))\n"
            "print('bound',flush=True)\nsys.stdin.read()"
        )
        blocker = subprocess.Popen([*in_pi, sys.executable, "-c", hold, SVC], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert blocker.stdout is not None and blocker.stdout.readline() == "bound\n"
        os.kill(pid, signal.SIGCONT)
        failed = f"failed to create listening socket for {SVC}: Address already in use"
        _until("dnsmasq's binds at the address event failed", lambda: log.read_text().count(failed) == 3)
        assert f"): {SVC} port 53" not in log.read_text()  # no "listening on eth0(#n): ..." line
        assert blocker.stdin is not None
        blocker.stdin.close()
        assert blocker.wait(timeout=20) == 0
        assert container.stderr is not None
        assert _next_line(container.stderr, 30) == (
            f"iluvatar: this host holds {SVC} but dnsmasq does not listen there (its bind was lost as the address came): an address event to bind again (1 of 3)\n"
        )
        _until(
            "dnsmasq listens on the service address",
            lambda: f"{SVC}:53" in subprocess.run([*in_pi, "ss", "-Hlun"], capture_output=True, text=True).stdout,
        )
        assert int(pid_file.read_text()) == pid and container.poll() is None  # the same dnsmasq, never stopped
        assert f"): {SVC} port 53" in log.read_text().split(failed)[-1]  # "listening on eth0(#n): ...", after the event
        assert (
            records.NUDGE_ADDRESS
            not in subprocess.run([*in_pi, "ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
        )
        container.send_signal(signal.SIGTERM)
        assert container.wait(timeout=20) == 0
    finally:
        if blocker is not None and blocker.poll() is None:
            blocker.kill()
            blocker.wait(timeout=20)
        for child in _children(container.pid) if container.poll() is None else []:
            os.kill(child, signal.SIGKILL)
        if container.poll() is None:
            container.kill()
            container.wait(timeout=20)


def _watch_container(tmp_path: Path) -> tuple[dict[str, str], Path, list[str]]:
    """dnsmasq's container's command for the listener watch's tests, run by busybox as the image runs it, with the records
    loop's volume and a dnsmasq.conf that listens on SVC: its environment, the folder at the front of its PATH (where a
    test puts its stand-in dnsmasq) and its command line."""
    volume, dest, etc, bin_dir = tmp_path / "volume", tmp_path / "records", tmp_path / "etc", tmp_path / "bin"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33\n")
    (volume / "..data").symlink_to("..v1")
    etc.mkdir()
    env = {**_busybox(bin_dir), "SRC": str(volume), "DEST": str(dest)}
    (etc / records.SCRIPT).write_text(records.records_script())
    (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(f"bind-dynamic\nlisten-address={SVC}\nlisten-address=127.0.0.1\n")
    return env, bin_dir, ["sh", str(etc / records.RUN_SCRIPT), "--keep-in-foreground", f"--conf-file={conf}"]


def _wire(ip: str, holding: bool) -> str:
    """The Pi's network, made by this host's iproute2 `ip` (busybox's makes no veth): its LAN link, and the service
    address on it when the Pi is `holding` it from the start."""
    wire = f"{ip} link add eth0 type veth peer name b0 && {ip} addr add 192.168.0.13/24 dev eth0"
    if holding:
        wire += f" && {ip} addr add {SVC}/32 dev eth0"
    return wire + f" && {ip} link set eth0 up && {ip} link set b0 up && {ip} link set lo up"


def _next_line(stream: IO[str], seconds: float) -> str:
    """The next line the container's scripts wrote, waited for at most `seconds` (a hang guard)."""
    assert select.select([stream], [], [], seconds)[0], f"no line in {seconds:g} s"
    return stream.readline()


def _next_watch_line(stream: IO[str]) -> str:
    """The listener watch's next line, past the records loop's ("iluvatar: dnsmasq reads its ...")."""
    while (line := _next_line(stream, 30)).startswith("iluvatar: dnsmasq reads its"):
        pass
    return line


def test_a_dnsmasq_never_listening_on_the_address_its_pi_holds_ends_its_container_after_three_address_events(tmp_path: Path) -> None:
    """The listener watch's bound (records.LISTEN_NUDGES): a dnsmasq that does not listen on the address its Pi holds
    after 3 address events (a listener it made in part, a port something else holds) is stopped and its container ends
    with status 1, so the kubelet starts it again, binding at its start. STAND-IN for dnsmasq: a shell that binds
    nothing and ends on TERM, as dnsmasq does."""
    env, bin_dir, run = _watch_container(tmp_path)
    (bin_dir / "dnsmasq").write_text("#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 1 & wait $!; done\n")
    (bin_dir / "dnsmasq").chmod(0o755)
    wire = _wire(require("ip"), holding=True)
    container = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'{wire} && exec "$@"', "sh", *run],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert container.wait(timeout=120) == 1
        assert container.stderr is not None
        ours = [line for line in container.stderr.read().splitlines() if not line.startswith("iluvatar: dnsmasq reads its")]
        assert ours == [
            *(
                f"iluvatar: this host holds {SVC} but dnsmasq does not listen there (its bind was lost as the address came): an address event to bind again ({n} of 3)"
                for n in (1, 2, 3)
            ),
            f"iluvatar: dnsmasq still does not listen on {SVC} after 3 address events: its container ends, and the kubelet starts it again",
        ]
    finally:
        if container.poll() is None:
            container.kill()
            container.wait(timeout=20)


# A dnsmasq whose lost bind is mended only by the third address event (as a port held elsewhere until then would be):
# it binds UDP 53 at the service address at its third RTM_NEWADDR on lo, the watch's third event, and ends on TERM.
_BINDS_AT_THIRD_EVENT = """\
import os, signal, socket, struct, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
address, ready, bound = sys.argv[1:4]
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
nl.bind((0, 0x10))  # RTMGRP_IPV4_IFADDR
lo = socket.if_nametoindex("lo")
open(ready, "w").close()
events, held = 0, []
while True:
    data = nl.recv(65536)
    while len(data) >= 24:
        length, kind = struct.unpack_from("=IH", data)
        if length < 16:
            break
        # struct nlmsghdr (16 bytes), then struct ifaddrmsg: family, prefixlen, flags, scope, index.
        if kind == 20 and struct.unpack_from("=I", data, 20)[0] == lo:
            events += 1
        data = data[(length + 3) & ~3 :]
    if events >= 3 and not held:
        held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        held[0].bind((address, 53))
        open(bound, "w").close()
"""


def test_a_bind_mended_by_the_third_address_event_keeps_the_container(tmp_path: Path) -> None:
    """The watch looks again after its last event (records.LISTEN_NUDGES) before it ends the container: a dnsmasq that
    binds at the third event goes on serving, and the container ends only at the kubelet's TERM, with status 0. STAND-IN
    for dnsmasq: a program that binds UDP 53 at the service address at the third address event on lo."""
    env, bin_dir, run = _watch_container(tmp_path)
    program, ready, bound = tmp_path / "dnsmasq.py", tmp_path / "ready", tmp_path / "bound"
    program.write_text(_BINDS_AT_THIRD_EVENT)
    (bin_dir / "dnsmasq").write_text(f"#!/bin/sh\nexec {sys.executable} {program} {SVC} {ready} {bound}\n")
    (bin_dir / "dnsmasq").chmod(0o755)
    wire = _wire(require("ip"), holding=False)
    container = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'{wire} && exec "$@"', "sh", *run],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until("the stand-in listens for address events", ready.exists)
        # kube-vip's add, once the stand-in hears events: the watch counts only while this host holds the address.
        subprocess.run(["nsenter", f"--net=/proc/{container.pid}/ns/net", "ip", "addr", "add", f"{SVC}/32", "dev", "eth0"], check=True, timeout=20)
        assert container.stderr is not None
        for n in (1, 2, 3):
            assert _next_watch_line(container.stderr) == (
                f"iluvatar: this host holds {SVC} but dnsmasq does not listen there (its bind was lost as the address came): an address event to bind again ({n} of 3)\n"
            )
        _until("the stand-in bound at the third event", bound.exists)
        assert container.poll() is None  # the watch did not end it at its third event
        container.send_signal(signal.SIGTERM)
        assert container.wait(timeout=20) == 0
        assert [line for line in container.stderr.read().splitlines() if not line.startswith("iluvatar: dnsmasq reads its")] == []
    finally:
        for child in _children(container.pid) if container.poll() is None else []:
            os.kill(child, signal.SIGKILL)
        if container.poll() is None:
            container.kill()
            container.wait(timeout=20)


def test_a_term_while_the_watch_makes_its_event_waits_until_the_address_is_away(tmp_path: Path) -> None:
    """A TERM reaches the listener watch after it added records.NUDGE_ADDRESS to lo and before it took it away: the watch
    takes it away before it ends, so the Pi's lo (which outlives the container) is left as it was. The moment is made by
    the test's `ip`: once its add of that address is done, it sends its caller, the watch, the TERM the container's
    script sends it at the container's end. STAND-IN for dnsmasq: a shell that binds nothing and ends on TERM, so the
    watch makes its event."""
    env, bin_dir, run = _watch_container(tmp_path)
    (bin_dir / "dnsmasq").write_text("#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 1 & wait $!; done\n")
    (bin_dir / "dnsmasq").chmod(0o755)
    watch, busybox = tmp_path / "watch.pid", require("busybox")
    (bin_dir / "ip").unlink()
    (bin_dir / "ip").write_text(
        f"#!{busybox} sh\n"
        f'if [ "$*" = "addr add {records.NUDGE_ADDRESS}/32 dev lo" ]; then\n'
        f'  {busybox} ip "$@" || exit $?\n  echo $PPID > {watch}.new && mv {watch}.new {watch}\n  exec {busybox} kill -TERM $PPID\n'
        f'fi\nexec {busybox} ip "$@"\n'
    )
    (bin_dir / "ip").chmod(0o755)
    ns = f"ilvterm{os.getpid() % 10000}"
    ip = require("ip")
    subprocess.run([ip, "netns", "add", ns], check=True, timeout=20)
    container: subprocess.Popen[str] | None = None
    try:
        wire = _wire(ip, holding=True)
        container = subprocess.Popen([ip, "netns", "exec", ns, "sh", "-c", f'{wire} && exec "$@"', "sh", *run], env=env, text=True)
        _until("the watch added its address to lo and was sent TERM", watch.exists)
        pid = int(watch.read_text())
        # Ended: gone, or a zombie its parent (the container's script, waiting on dnsmasq) has not reaped yet.
        _until("the watch ended", lambda: _ended(pid))
        lo = subprocess.run([ip, "-n", ns, "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True).stdout
        assert records.NUDGE_ADDRESS not in lo, lo
        assert container.poll() is None  # dnsmasq serves on; the kubelet's TERM ends the container
        container.send_signal(signal.SIGTERM)
        assert container.wait(timeout=30) == 0
    finally:
        if container is not None and container.poll() is None:
            for child in _children(container.pid):
                os.kill(child, signal.SIGKILL)
            container.kill()
            container.wait(timeout=20)
        subprocess.run([ip, "netns", "del", ns], check=False, timeout=20)
