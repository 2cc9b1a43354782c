"""The LAN resolver: its Corefile run by CoreDNS's own code at the image's version, asked with the real `dig`.

tools/coredns builds CoreDNS v1.13.1 (the image's release) from its Go module with the plugins the
Corefile uses. A second CoreDNS stands in for the upstream resolver (`network.dns`) and logs every
query it gets, so the test sees both what the resolver answers and what it lets out of the house.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plans import resolver
from stacks import StackConfig, parse_stack, read_stack_file
from tests.edit import RK1
from tests.tools import require
from tools import gotools, upstream

# The house's resolver (network.dns: the router), and the loopback address this lab's stand-in for it binds: the
# rendered Corefile forwards to the first, and the lab points that one line at the second (validation refuses a
# loopback network.dns, which no Pi or Talos machine could ask).
ROUTER = "10.10.0.1"
UPSTREAM = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.cache
def _stack() -> StackConfig:
    """rk1 with a public zone and an internal app in it, its one upstream the router."""
    raw = dict(read_stack_file(RK1).config)
    raw["iluvatar:network"] = {**raw["iluvatar:network"], "dns": [ROUTER], "externalDomain": "example.org"}
    raw["iluvatar:apps"] = [*raw["iluvatar:apps"], {"name": "docs", "category": "selfhosted", "host": "docs.example.org", "service": {"port": 80}}]
    return parse_stack(raw)


def _wait_ready(port: int, process: subprocess.Popen[str]) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise AssertionError(f"coredns exited: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("coredns never became ready")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    coredns = gotools.build("coredns")
    work = tmp_path_factory.mktemp("coredns")
    up_port, port, health, ready, up_ready = (_free_port() for _ in range(5))
    # The stand-in upstream: answers one outside name, refuses the rest, logs every query.
    (work / "Upstream").write_text(
        f"""outside.test:{up_port} {{
    bind {UPSTREAM}
    log
    template IN A {{
        answer "{{{{ .Name }}}} 60 IN A 203.0.113.7"
    }}
}}
.:{up_port} {{
    bind {UPSTREAM}
    log
    ready 127.0.0.1:{up_ready}
}}
"""
    )
    hosts, zone = work / "lan.hosts", work / "negative.zone"
    hosts.write_text(resolver.hosts_file(_stack()))
    zone.write_text(resolver.negative_zone())
    corefile = resolver.corefile(
        _stack(), port=port, hosts_path=str(hosts), zone_path=str(zone), upstream_port=up_port, health_port=health, ready_port=ready
    )
    forward = f"    forward . {ROUTER}:{up_port}\n"
    assert corefile.count(forward) == 1, corefile
    (work / "Corefile").write_text(corefile.replace(forward, f"    forward . {UPSTREAM}:{up_port}\n"))
    procs = []
    try:
        for conf, ready_port in (("Upstream", up_ready), ("Corefile", ready)):
            proc = subprocess.Popen([str(coredns), "-conf", str(work / conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(proc)
            _wait_ready(ready_port, proc)
        yield {"port": port, "upstream": procs[0], "work": work}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def dig(servers: dict[str, Any], *args: str) -> str:
    result = subprocess.run(
        [require("dig"), "@127.0.0.1", "-p", str(servers["port"]), "+time=2", "+tries=1", *args], capture_output=True, text=True, timeout=30
    )
    return result.stdout


def short(servers: dict[str, Any], name: str, qtype: str = "A") -> list[str]:
    return dig(servers, "+short", name, qtype).split()


def status(servers: dict[str, Any], name: str, qtype: str = "A") -> str:
    header = next(line for line in dig(servers, name, qtype).splitlines() if "status:" in line)
    return header.split("status: ")[1].split(",")[0]


def test_the_zone_and_the_app_hosts_resolve_to_the_inventory(servers: dict[str, Any]) -> None:
    assert short(servers, "talos-1.turing.home.arpa") == ["10.10.0.11"]
    assert short(servers, "turing.turing.home.arpa") == ["10.10.0.10"]
    assert short(servers, "envoy-internal.turing.home.arpa") == ["10.10.0.218"]
    assert short(servers, "grafana.turing.home.arpa") == ["10.10.0.218"]
    assert short(servers, "docs.example.org") == ["10.10.0.218"], "an internal app of the public zone: split DNS"


def test_reverse_names_are_answered_locally(servers: dict[str, Any]) -> None:
    assert dig(servers, "+short", "-x", "10.10.0.12").split() == ["talos-2.turing.home.arpa."]


def test_unknown_names_in_the_zone_are_nxdomain_with_the_zones_soa(servers: dict[str, Any]) -> None:
    assert status(servers, "nothere.turing.home.arpa") == "NXDOMAIN"
    authority = dig(servers, "nothere.turing.home.arpa").split(";; AUTHORITY SECTION:")[1].split()
    assert authority[:5] == ["turing.home.arpa.", "60", "IN", "SOA", "turing.home.arpa."]
    assert status(servers, "grafana.turing.home.arpa", "AAAA") == "NOERROR"
    assert short(servers, "grafana.turing.home.arpa", "AAAA") == []


def test_outside_names_go_upstream_and_internal_ones_never_do(servers: dict[str, Any]) -> None:
    assert short(servers, "outside.test") == ["203.0.113.7"]
    for name in ("nothere.turing.home.arpa", "talos-3.turing.home.arpa", "docs.example.org"):
        dig(servers, name)
    dig(servers, "+short", "-x", "10.10.0.99")
    servers["upstream"].terminate()
    log = servers["upstream"].communicate(timeout=10)[0]
    assert '"A IN outside.test.' in log, log
    assert "turing.home.arpa" not in log and "docs.example.org" not in log and "in-addr.arpa" not in log, log


def test_the_corefile_is_what_the_configmap_holds() -> None:
    stack = _stack()
    [config] = [m for m in resolver.manifests(stack) if m["kind"] == "ConfigMap"]
    assert config["data"] == {
        "Corefile": resolver.corefile(stack),
        "lan.hosts": resolver.hosts_file(stack),
        "negative.zone": resolver.negative_zone(),
    }
    assert resolver.corefile(stack).splitlines()[2] == "turing.home.arpa:1053 docs.example.org:1053 10.10.0.0/24:1053 {"


def test_manifests_pass_kubeconform_and_pin_the_address() -> None:
    stack = parse_stack(dict(read_stack_file(RK1).config))
    manifests = resolver.manifests(stack)
    assert upstream.kubeconform(manifests, stack.arda.kubernetes_version) == []
    [service] = [m for m in manifests if m["kind"] == "Service"]
    assert service["metadata"]["annotations"] == {"lbipam.cilium.io/ips": "10.10.0.217"}
    assert service["spec"]["allocateLoadBalancerNodePorts"] is False  # no NodePort on every Arda machine (plans.ports)
    assert service["spec"]["ports"] == [
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP", "nodePort": 0},
        {"name": "dns-tcp", "port": 53, "targetPort": "dns-tcp", "protocol": "TCP", "nodePort": 0},
    ]
    [deployment] = [m for m in manifests if m["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.13.1"


def test_coredns_refuses_a_broken_corefile(tmp_path: Path) -> None:
    """Guards the tests above: the same binary rejects a Corefile it cannot parse."""
    broken = resolver.corefile(_stack(), port=_free_port()).replace("    hosts ", "    hostz ")
    (tmp_path / "Corefile").write_text(broken)
    result = subprocess.run([str(gotools.build("coredns")), "-conf", str(tmp_path / "Corefile")], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "Unknown directive 'hostz'" in result.stdout + result.stderr


def test_the_resolver_pod_spec() -> None:
    """Two CoreDNS pods on two machines, probed on their own health and ready ports, restarted by a new Corefile."""
    stack = parse_stack(dict(read_stack_file(RK1).config))
    [deployment] = [m for m in resolver.manifests(stack) if m["kind"] == "Deployment"]
    labels = {"app.kubernetes.io/name": "lan-resolver"}
    assert deployment["metadata"] == {
        "name": "lan-resolver",
        "namespace": "networking",
        "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", **labels},
    }
    spec = deployment["spec"]
    assert (spec["replicas"], spec["selector"]) == (2, {"matchLabels": labels})
    digest = spec["template"]["metadata"]["annotations"]["iluvatar/corefile-digest"]
    assert spec["template"]["metadata"] == {"labels": labels, "annotations": {"iluvatar/corefile-digest": digest}}
    assert digest == hashlib.sha256(resolver.corefile(stack).encode()).hexdigest()[:16]
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}}
            ]
        }
    }
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": "lan-resolver"}}]
    [container] = pod["containers"]
    assert container == {
        "name": "coredns",
        "image": "registry.k8s.io/coredns/coredns:v1.13.1",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
            {"name": "health", "containerPort": 8080, "protocol": "TCP"},
            {"name": "ready", "containerPort": 8181, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "ready"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "health"}, "periodSeconds": 10, "failureThreshold": 5},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    [service] = [m for m in resolver.manifests(stack) if m["kind"] == "Service"]
    assert (service["spec"]["type"], service["spec"]["selector"]) == ("LoadBalancer", labels)


def test_the_files_the_pods_read_exactly() -> None:
    """The Corefile as deployed: the CoreDNS tests above run it on other ports with a loopback upstream, so the
    deployed `forward` line (network.dns on port 53) and every directive are pinned here."""
    stack = parse_stack(dict(read_stack_file(RK1).config))
    assert resolver.corefile(stack).splitlines() == [
        "# The LAN resolver, generated by Iluvatar from the stack. Do not edit: change the stack and run pulumi up.",
        "# Names the router forwards here are answered from the inventory only; an unknown one is NXDOMAIN.",
        "turing.home.arpa:1053 10.10.0.0/24:1053 {",
        "    errors",
        "    hosts /etc/coredns/lan.hosts {",
        "        ttl 60",
        "        reload 10s",
        "        fallthrough",
        "    }",
        "    # Not in the inventory: NXDOMAIN with the zone's SOA, from a zone holding nothing else",
        "    # (hosts alone would answer SERVFAIL, which sends clients to try other servers).",
        "    file /etc/coredns/negative.zone",
        "}",
        "# Anything else: the upstream resolvers.",
        ".:1053 {",
        "    errors",
        "    health :8080",
        "    ready :8181",
        "    forward . 10.10.0.1 9.9.9.9",
        "    cache 300",
        "    loop",
        "    reload",
        "}",
    ]
    assert resolver.corefile(stack).endswith("}\n")
    assert resolver.hosts_file(stack) == (
        "# The LAN's split DNS, generated by Iluvatar from the stack: machines, VIPs, gateways and app hosts.\n"
        "10.10.0.218 envoy-internal.turing.home.arpa\n"
        "10.10.0.218 grafana.turing.home.arpa\n"
        "10.10.0.218 home.turing.home.arpa\n"
        "10.10.0.11 talos-1.turing.home.arpa\n"
        "10.10.0.12 talos-2.turing.home.arpa\n"
        "10.10.0.13 talos-3.turing.home.arpa\n"
        "10.10.0.14 talos-4.turing.home.arpa\n"
        "10.10.0.10 turing.turing.home.arpa\n"
    )
    assert resolver.negative_zone() == "$TTL 60\n@ IN SOA @ hostmaster 1 3600 600 86400 60\n@ IN NS @\n"
