"""A netbooted maia's guard of its NFS server (plans.nfs_guard), run by the real iptables as the Pi's unit runs it.

Three namespaces: a pod (an address of k3s's pod network), the maia (forwarding for it and masquerading it to its own
address, as flannel does), and the Pi that holds the service address, listening on the NFS server's ports and on one
other. Before the unit's rules a pod reaches the NFS ports with the maia's own address, the one its export is offered
to (review 41-1 H4: a container escape); after them it reaches none of them, and the maia itself and the other port still
answer.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest

from plans import nfs_guard
from tests.netns.lan import in_ns, require_root
from tests.netns.test_pi_netboot import stack_for

require_root()

SVC, MAIA, POD = "192.168.0.14", "192.168.0.12", "10.42.1.5"
OPEN = 8080  # a port of the service address no rule is about (nginx's is 80)
LISTEN = f"""
import socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("{SVC}", port)); s.listen()
    while True:
        c, _ = s.accept(); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("{SVC}", port))
    while True:
        data, peer = s.recvfrom(100); s.sendto(data, peer)
for port in (111, {nfs_guard.MOUNT_PORT}, {nfs_guard.NFS_PORT}, {OPEN}):
    threading.Thread(target=tcp, args=(port,), daemon=True).start()
threading.Thread(target=udp, args=(111,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
REACH = """
import socket, sys
kind, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(1)
try:
    if kind == "tcp":
        s.connect((sys.argv[3], port))
    else:
        s.sendto(b"ping", (sys.argv[3], port)); s.recvfrom(100)
    print("open")
except OSError as e:
    print("closed", e)
"""


@pytest.fixture(scope="module")
def nets() -> Iterator[dict[str, str]]:
    tag = f"ilv{os.getpid() % 10000}g"
    ns = {"pod": f"{tag}pod", "maia": f"{tag}maia", "svc": f"{tag}svc"}
    server = None
    try:
        for name in ns.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            in_ns(name, "ip", "link", "set", "lo", "up")
        subprocess.run(
            ["ip", "link", "add", f"{tag}p", "netns", ns["pod"], "type", "veth", "peer", "name", f"{tag}q", "netns", ns["maia"]], check=True
        )
        subprocess.run(
            ["ip", "link", "add", f"{tag}m", "netns", ns["maia"], "type", "veth", "peer", "name", f"{tag}s", "netns", ns["svc"]], check=True
        )
        for name, dev, addr in (("pod", "p", f"{POD}/24"), ("maia", "q", "10.42.1.1/24"), ("maia", "m", f"{MAIA}/24"), ("svc", "s", f"{SVC}/24")):
            in_ns(ns[name], "ip", "addr", "add", addr, "dev", f"{tag}{dev}")
            in_ns(ns[name], "ip", "link", "set", f"{tag}{dev}", "up")
        in_ns(ns["pod"], "ip", "route", "add", "default", "via", "10.42.1.1")
        in_ns(ns["maia"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # flannel's masquerade of a pod's traffic leaving the pod network (its POSTROUTING rule): the Pi's own address.
        in_ns(ns["maia"], "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", nfs_guard.POD_CIDR, "!", "-d", nfs_guard.POD_CIDR, "-j", "MASQUERADE")
        server = subprocess.Popen(["ip", "netns", "exec", ns["svc"], sys.executable, "-c", LISTEN], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield ns
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def reach(ns: str, kind: str, port: int) -> str:
    return in_ns(ns, sys.executable, "-c", REACH, kind, str(port), SVC).stdout.split()[0]


def ports() -> list[tuple[str, int]]:
    return [("tcp", 111), ("tcp", nfs_guard.MOUNT_PORT), ("tcp", nfs_guard.NFS_PORT), ("udp", 111), ("tcp", OPEN)]


def test_the_guard_keeps_the_maias_pods_off_its_nfs_server_and_nothing_else(nets: dict[str, str]) -> None:
    # Without it: a pod reaches every port (as the Pi's own address, to which the export is offered).
    assert {p: reach(nets["pod"], *p) for p in ports()} == dict.fromkeys(ports(), "open")
    unit = nfs_guard.unit(stack_for("dhcp"))
    execs = [line.removeprefix("ExecStart=") for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(execs) == 2
    # The unit's commands as systemd runs them (each an argv of /bin/sh -c '...'), twice: a restart adds no rule.
    for _ in range(2):
        for line in execs:
            in_ns(nets["maia"], *shlex.split(line))
    rules = in_ns(nets["maia"], "iptables", "-t", "raw", "-S", "PREROUTING").stdout.splitlines()
    assert rules == [
        "-P PREROUTING ACCEPT",
        f"-A PREROUTING -s {nfs_guard.POD_CIDR} -d {SVC}/32 -p udp -m udp --dport 111 -j DROP",
        f"-A PREROUTING -s {nfs_guard.POD_CIDR} -d {SVC}/32 -p tcp -m multiport --dports 111,627,2049 -j DROP",
    ]
    got = {p: reach(nets["pod"], *p) for p in ports()}
    assert got == {**dict.fromkeys(ports()[:4], "closed"), ("tcp", OPEN): "open"}
    # The maia itself (its initramfs, its kernel's NFS client of its root) still reaches them all.
    assert {p: reach(nets["maia"], *p) for p in ports()} == dict.fromkeys(ports(), "open")
