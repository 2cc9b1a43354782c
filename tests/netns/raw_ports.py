"""What the raw-port labs share (tests/netns/test_raw_ports.py, the tailnet's in test_remote_access.py): an echo server
per (port, protocol), its client, and nftables standing for Cilium v1.18.4's load balancer at the app's address for a
packet from outside (`LB_RULES`): drop a source outside the Service's `loadBalancerSourceRanges`
(bpf/lib/nodeport.h:2610, nodeport_svc_lb4), then translate the Service's port to the backend's (lb4_local's DNAT,
bpf/lib/lb.h)."""

from __future__ import annotations

from typing import Any

from plans import ports

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


def lb_rules(service: dict[str, Any]) -> str:
    address = service["metadata"]["annotations"][ports.LBIPAM_ANNOTATION]
    translations = " ".join(
        f"ip daddr {address} {p['protocol'].lower()} dport {p['port']} redirect to :{p['targetPort']};" for p in service["spec"]["ports"]
    )
    return LB_RULES.format(address=address, ranges=", ".join(service["spec"]["loadBalancerSourceRanges"]), translations=translations)
