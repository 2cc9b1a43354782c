"""The NetworkPolicy helpers: what a policy that admits no one sends to the API server."""

from __future__ import annotations

from pathlib import Path

from iluvatar.render import cluster_of
from plans import netpol
from tests.edit import HOMELAB, RK1
from tests.sims import simulated


def test_a_policy_admitting_no_one_has_no_ingress_list() -> None:
    # An empty `ingress` list is not stored, so each server-side apply of one would stamp its manager's time anew.
    closed = netpol.allow("ui", "storage", {"app": "ui"}, [])
    assert closed["spec"] == {"podSelector": {"matchLabels": {"app": "ui"}}, "policyTypes": ["Ingress"]}
    assert netpol.allow("c", "gateway", {"app": "c"}, [], [])["spec"] == {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"]}
    assert netpol.ingress([]) == {}


def test_a_policy_with_a_rule_keeps_it() -> None:
    opened = netpol.allow("dns", "kube-system", {"k8s-app": "dns"}, [netpol.port(53, "UDP")], None)
    assert opened["spec"]["ingress"] == [{"ports": [{"port": 53, "protocol": "UDP"}]}]
    assert netpol.ingress([{"ports": [{"port": 1}]}]) == {"ingress": [{"ports": [{"port": 1}]}]}


def _arda_load_balancers(path: Path) -> dict[str, tuple[object, list[object]]]:
    """Every LoadBalancer Service the program registers on Arda, by namespace/name: its allocateLoadBalancerNodePorts
    and each port's nodePort, as the render writes them."""
    found: dict[str, tuple[object, list[object]]] = {}
    for reg in simulated(path).registrations:
        spec = reg.inputs.get("spec") or {}
        if reg.type != "kubernetes:core/v1:Service" or cluster_of(reg) != "arda" or spec.get("type") != "LoadBalancer":
            continue
        meta = reg.inputs["metadata"]
        found[f"{meta['namespace']}/{meta['name']}"] = (spec.get("allocateLoadBalancerNodePorts"), [p.get("nodePort") for p in spec["ports"]])
    return found


def test_no_load_balancer_of_arda_allocates_a_node_port() -> None:
    """Cilium's kube-proxy replacement serves a NodePort on every Arda machine's address (plans.ports.service): a route
    to a worker would open the Service there. The program's own Services on Arda (the raw-port apps', the log store's;
    the LAN resolver's without the Ainur) and the proxies' Service Envoy Gateway makes from the EnvoyProxy hold none."""
    assert _arda_load_balancers(HOMELAB) == {
        "home-automation/mosquitto-lan": (False, [0, 0]),
        "monitoring/victoria-logs-lan": (False, [0]),
        "selfhosted/minecraft-lan": (False, [0, 0]),
    }
    assert _arda_load_balancers(RK1) == {"networking/lan-resolver": (False, [0, 0])}
    for path in (HOMELAB, RK1):
        [proxy] = [r for r in simulated(path).registrations if r.type == "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"]
        assert proxy.inputs["spec"]["provider"]["kubernetes"]["envoyService"] == {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "externalTrafficPolicy": "Cluster",
        }
