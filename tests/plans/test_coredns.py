"""Arda's CoreDNS (plans.coredns): the image Talos would deploy, read from Talos's own machinery at each
version the stacks may run; the Service at the address Talos gives the kubelets; Talos's objects, valid.

Where the objects run (scheduled on the inventory's machines by a real scheduler) and in what order
they come up: tests/kube/test_program.py and tests/test_bringup.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from plans import coredns, talos
from stacks import parse_stack, read_stack_file
from stacks.model import StackConfig
from stacks.rules import TALOS_KUBERNETES
from tests.edit import HOMELAB, RK1
from tools import upstream

# The machinery module of each Talos minor, as pinned in tools/upstream/modules.sum.
MACHINERY = {(1, 12): "v1.12.4", (1, 13): "v1.13.0", (1, 14): "v1.14.1"}


def _constant(version: str, name: str) -> str:
    text = (upstream.module_dir(upstream.TALOS_MACHINERY, version) / "constants" / "constants.go").read_text()
    found = re.findall(rf'^\s*{name}\s*=\s*"([^"]*)"', text, re.M)
    assert len(found) == 1, f"{name} in machinery {version}: {found}"
    return str(found[0])


def _stack(path: Any = HOMELAB, **arda: Any) -> StackConfig:
    raw = dict(read_stack_file(path).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], **arda}
    return parse_stack(raw)


def _kind(stack: StackConfig, kind: str) -> dict[str, Any]:
    [found] = [m for m in coredns.manifests(stack) if m["kind"] == kind]
    return found


def test_every_talos_minor_a_stack_may_run_has_its_coredns() -> None:
    assert set(coredns.TALOS_COREDNS) == set(TALOS_KUBERNETES) == set(MACHINERY)


@pytest.mark.parametrize("minor", sorted(MACHINERY), ids=[f"talos-{a}.{b}" for a, b in sorted(MACHINERY)])
def test_the_image_is_the_one_talos_deploys_at_that_version(minor: tuple[int, int]) -> None:
    version = MACHINERY[minor]
    assert coredns.TALOS_COREDNS[minor] == _constant(version, "DefaultCoreDNSVersion")
    assert _constant(version, "CoreDNSImage") == coredns.IMAGE
    # Renamed DefaultIPv4ServiceCIDR in machinery 1.14 (constants.go:1008 at v1.14.1), the same value.
    service = "DefaultIPv4ServiceCIDR" if minor >= (1, 14) else "DefaultIPv4ServiceNet"
    assert (_constant(version, service),) == coredns.DEFAULT_SERVICE_SUBNETS
    assert _constant(version, "DefaultDNSDomain") == coredns.DEFAULT_DNS_DOMAIN


def test_the_stacks_run_what_talos_1_14_would() -> None:
    for path in (HOMELAB, RK1):
        stack = parse_stack(dict(read_stack_file(path).config))
        assert _kind(stack, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.14.7"
    # A Talos upgrade moves CoreDNS with it, as talosctl upgrade-k8s would have.
    newer = _stack(talosVersion="v1.13.0", kubernetesVersion="v1.35.0")
    assert coredns.image(newer) == "registry.k8s.io/coredns/coredns:v1.14.2"


def test_the_service_is_kube_dns_at_the_tenth_address_of_the_service_network() -> None:
    service = _kind(_stack(), "Service")
    assert service["metadata"]["name"] == "kube-dns" and service["metadata"]["namespace"] == "kube-system"
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert (service["spec"]["clusterIP"], service["spec"]["clusterIPs"], service["spec"]["ipFamilyPolicy"]) == (
        "10.96.0.10",
        ["10.96.0.10"],
        "SingleStack",
    )
    assert [(p["name"], p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
        ("metrics", 9153, "TCP"),
    ]


def test_the_address_and_domain_follow_the_clusters_own_network() -> None:
    own = _stack(patches=[{"cluster": {"network": {"serviceSubnets": ["10.112.0.0/12"], "dnsDomain": "arda.internal"}}}])
    assert coredns.dns_service_ips(own) == ["10.112.0.10"]
    assert "    kubernetes arda.internal in-addr.arpa ip6.arpa {" in _kind(own, "ConfigMap")["data"]["Corefile"]
    # A later patch wins, key by key, as Talos merges them.
    later = _stack(
        patches=[{"cluster": {"network": {"serviceSubnets": ["10.112.0.0/12"]}}}, {"cluster": {"network": {"serviceSubnets": ["10.128.0.0/16"]}}}]
    )
    assert coredns.dns_service_ips(later) == ["10.128.0.10"]
    dual = _stack(patches=[{"cluster": {"network": {"serviceSubnets": ["fd00:10:96::/112", "10.96.0.0/12"]}}}])
    service = _kind(dual, "Service")["spec"]
    assert (service["clusterIP"], service["clusterIPs"], service["ipFamilies"], service["ipFamilyPolicy"]) == (
        "10.96.0.10",
        ["10.96.0.10", "fd00:10:96::a"],
        ["IPv4", "IPv6"],
        "RequireDualStack",
    )


def test_the_deployment_is_what_talos_health_check_and_the_service_find() -> None:
    deployment = _kind(_stack(), "Deployment")
    assert deployment["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert deployment["spec"]["selector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    assert pod["spec"]["serviceAccountName"] == "coredns"
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == "coredns"
    assert pod["spec"]["dnsPolicy"] == "Default"  # upstream names go to the node's resolvers, not to itself


# Talos v1.12.4's k8stemplates.CoreDNSConfigMap rendered for cluster.local (the bootstrap manifest a running cluster holds).
TALOS_COREFILE = """.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    log . {
        class error
    }
    prometheus :9153
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def test_the_corefile_is_talos_for_the_default_domain() -> None:
    assert _kind(_stack(), "ConfigMap")["data"] == {"Corefile": TALOS_COREFILE}


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_the_manifests_pass_kubeconform(path: Any) -> None:
    stack = parse_stack(dict(read_stack_file(path).config))
    assert upstream.kubeconform(coredns.manifests(stack), stack.arda.kubernetes_version) == []


def test_talos_runs_its_coredns_unless_the_merged_patches_turn_it_off() -> None:
    stack = _stack()
    [plane] = [n for n in stack.arda_nodes if n.name == "tirion"]
    [worker] = [n for n in stack.arda_nodes if n.name == "gandalf"]
    assert not coredns.talos_runs_coredns(talos.node_documents(stack, plane, "installer"))
    assert coredns.talos_runs_coredns(talos.node_documents(stack, worker, "installer"))  # a worker renders no bootstrap manifests
    assert coredns.talos_runs_coredns([{"cluster": {"coreDNS": {"disabled": True}}}, {"cluster": {"coreDNS": {"disabled": False}}}])
    assert not coredns.talos_runs_coredns(
        [{"cluster": {}}, {"apiVersion": "v1alpha1", "kind": "HostnameConfig"}, {"cluster": {"coreDNS": {"disabled": True}}}]
    )
