"""Raw-port apps on the LAN: a client resolves each app's host through the real dnsmasq the Ainur run (with the
records the program adds, `plans.edge.lan_records`) and reaches every port of the app's Service, TCP and UDP, at that
address, in the network-namespace lab (tests.netns.lan).

What cannot run here is Cilium: its L2 announcement of the Service's address and its eBPF forwarding to the pod. A
namespace holding the app's address (`Lan.host`, which answers ARP for it as Cilium's announcing node does) stands in
for both, with a server on each port's `targetPort` of the rendered Service (`plans.ports.service`), protocol as
rendered, and nftables doing what Cilium v1.18.4's load balancer does for a packet from outside (`LB_RULES`): drop a
source outside the Service's `loadBalancerSourceRanges` (bpf/lib/nodeport.h:2610, nodeport_svc_lb4), then translate
the Service's port to the backend's (lb4_local's DNAT, bpf/lib/lb.h). The client connects to `port`: one app here has
a `targetPort` apart from it, so a translation the Service gets wrong fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from plans import edge, ports
from stacks import StackConfig, load_stack_file
from stacks.model import App
from tests.edit import HOMELAB
from tests.netns.lan import Lan, in_ns, lan, require_root
from tests.tools import require

require_root()

SVC = "192.168.0.14"  # the Ainur's service address, where dnsmasq answers
CLIENT = "192.168.0.150"  # a laptop on the LAN

# One server per (port, protocol): echoes what it gets with a prefix, so the client knows which answered. It prints
# `ready` once every socket is bound, the event the test waits on.
SERVER = """
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    return s, lambda: serve_tcp(s, port)
def serve_tcp(s, port):
    while True:
        c, _ = s.accept(); c.sendall(f"{port}/tcp:".encode() + c.recv(64)); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    return s, lambda: serve_udp(s, port)
def serve_udp(s, port):
    while True:
        data, peer = s.recvfrom(64); s.sendto(f"{port}/udp:".encode() + data, peer)
loops = [(tcp if proto == "TCP" else udp)(int(port))[1] for port, proto in (a.split("/") for a in sys.argv[1:])]
for loop in loops:
    threading.Thread(target=loop, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT_CODE = """
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "TCP":
    s = socket.create_connection((host, port), timeout=5); s.sendall(b"hello"); print(s.recv(64).decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(b"hello", (host, port)); print(s.recvfrom(64)[0].decode())
"""


# Cilium's load balancer at the app's address, for packets from outside: the source check, then the port translation.
LB_RULES = """table ip cilium_lb {{
  chain source {{ type filter hook prerouting priority -150; policy accept; ip daddr {address} ip saddr != {{ {ranges} }} drop; }}
  chain translate {{ type nat hook prerouting priority -100; policy accept; {translations} }}
}}
"""


def _lb_rules(service: dict[str, Any]) -> str:
    address = service["metadata"]["annotations"][ports.LBIPAM_ANNOTATION]
    translations = " ".join(
        f"ip daddr {address} {p['protocol'].lower()} dport {p['port']} redirect to :{p['targetPort']};" for p in service["spec"]["ports"]
    )
    return LB_RULES.format(address=address, ranges=", ".join(service["spec"]["loadBalancerSourceRanges"]), translations=translations)


def _apps(stack: StackConfig) -> list[App]:
    """The homelab's raw-port apps, Minecraft's Java port served by its container on another port (25566)."""
    apps = ports.apps(stack)
    minecraft = next(a for a in apps if a.name == "minecraft")
    moved = tuple(p.model_copy(update={"target_port": 25566}) if p.port == 25565 else p for p in minecraft.ports)
    return [a.model_copy(update={"ports": moved}) if a is minecraft else a for a in apps]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    stack = load_stack_file(HOMELAB)
    with lan(stack, tmp_path_factory.mktemp("ports"), f"ilv{os.getpid() % 10000}p") as network:
        network.start_dnsmasq(extra_records=edge.lan_records(stack))
        yield network


def test_a_lan_client_reaches_each_raw_port_by_the_apps_name(net: Lan) -> None:
    client = net.host("cl", CLIENT)
    servers: list[subprocess.Popen[str]] = []
    try:
        for app in _apps(net.stack):
            service = ports.service(net.stack, app)
            ns = net.host(app.name[:4], service["metadata"]["annotations"][ports.LBIPAM_ANNOTATION])
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=_lb_rules(service), text=True, check=True, timeout=30)
            # The pod listens on its container's ports, as the app declares them (not as the Service renders them).
            listening = {p.port_name: p.target_port if p.target_port is not None else p.port for p in app.ports}
            served = [f"{listening[p['name']]}/{p['protocol']}" for p in service["spec"]["ports"]]
            server = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, *served], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            # The laptop asks the house's DNS for the app's host, then talks to every port at the address it got.
            found = in_ns(client, require("dig"), f"@{SVC}", "+short", "+time=2", "+tries=2", app.host).stdout.strip()
            assert found == str(app.address), app.host
            for p in service["spec"]["ports"]:
                answer = in_ns(client, sys.executable, "-c", CLIENT_CODE, found, str(p["port"]), p["protocol"]).stdout.strip()
                assert answer == f"{listening[p['name']]}/{p['protocol'].lower()}:hello", (app.name, p)
    finally:
        for server in servers:
            server.kill()
            server.wait()
