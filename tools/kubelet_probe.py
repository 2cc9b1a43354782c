"""The kubelet's tcpSocket probe, as a stand-in the tests run where a Pod's container runs (the kubelet cannot run here).

It follows Kubernetes v1.33 (the k3s the Ainur run):
- pkg/kubelet/prober/prober.go, runProbe, `case p.TCPSocket != nil`: the port is resolved from the container's ports
  by name or taken as a number (probe.ResolveContainerPort, pkg/probe/util.go), and `host := p.TCPSocket.Host; if
  host == "" { host = status.PodIP }`.
- pkg/probe/tcp/tcp.go, DoTCPProbe: `net.DialTimeout("tcp", host:port, timeout)`; Success when the connection opens
  (it is closed at once, nothing is sent), Failure otherwise. The timeout is the probe's timeoutSeconds, 1 by default
  (pkg/apis/core/v1/defaults.go, SetDefaults_Probe).
- A host-network Pod's IP is its node's address (pkg/kubelet/kubelet_pods.go, generateAPIPodStatus: hostNetwork pods
  take the node's IPs), which is what the caller passes as `pod_ip`.

Run in the Pod's network namespace (the kubelet's, for a host-network Pod): `python -m tools.kubelet_probe --pod-ip
<node ip> --container <name>` with the Pod spec as JSON on stdin; exits 0 on Success, 1 on Failure (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any


def target(spec: dict[str, Any], container: str, pod_ip: str) -> tuple[str, int]:
    """Where the kubelet dials for the container's readiness probe: (host, port)."""
    c = next(c for c in spec["containers"] if c["name"] == container)
    tcp = c["readinessProbe"]["tcpSocket"]
    port = tcp["port"]
    if isinstance(port, str):
        # ResolveContainerPort: a name is looked up among the container's ports; a number written as a string is taken.
        named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
        port = named[0] if named else int(port)
    return (tcp.get("host") or pod_ip, int(port))


def probe(spec: dict[str, Any], container: str, pod_ip: str) -> tuple[bool, str]:
    c = next(c for c in spec["containers"] if c["name"] == container)
    host, port = target(spec, container, pod_ip)
    timeout = float(c["readinessProbe"].get("timeoutSeconds", 1))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} open"
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {e}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pod-ip", required=True)
    parser.add_argument("--container", required=True)
    args = parser.parse_args(argv)
    ok, why = probe(json.load(sys.stdin), args.container, args.pod_ip)
    print(why, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
