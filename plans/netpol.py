"""NetworkPolicy shapes every plan shares: a namespace's default deny, and an allow naming its peers and ports.

Each plan renders the policies of its own listeners with these; what they mean where they are enforced:

- **The Ainur** (k3s): its embedded network policy controller (kube-router's, on unless k3s runs with
  `--disable-network-policy`, which plans.k3s never sets) enforces them with iptables. It always admits a pod's own
  node (kube-router v2.6.3-k3s1 pkg/controllers/netpol/pod.go:230-232: `--src-type LOCAL`, first in the pod's chain), so the kubelet's
  probes and a host-network pod on the same Pi pass; it applies no policy at all to a host-network pod
  (utils.go:40-42, isNetPolActionable), whose listeners answer on the Pi's address to whatever reaches the Pi. An
  ipBlock is an ipset of the source addresses (policy.go:293-330), matched before kube-proxy's masquerade on the
  pod's own node: a LoadBalancer Service whose policy admits only some addresses keeps `externalTrafficPolicy: Local`,
  or the packets of another Pi arrive from that Pi's flannel address.
  A Pi's own address, as a source, is no LAN client: it is every pod of that Pi. k3s' flannel masquerades a pod's
  packets to anything outside the cluster's CIDR to the Pi's address (flannel v0.28.4
  pkg/trafficmngr/iptables/iptables.go:149-161: RETURN inside the cluster CIDR, then MASQUERADE `-s` it), so a pod
  that dials another Pi's address (a NodePort) or a LAN host that forwards arrives from its Pi's address. A host
  process of a Pi that dials a pod on another Pi arrives from its Pi's flannel address (10.42.x.0, the same file
  :163-167), which no ipBlock of the LAN holds. An ipBlock of LAN clients on the Ainur is therefore the LAN less the
  Pis and the addresses kube-vip holds on them (`lan_clients`), and the Ainur's LoadBalancer Services allocate no
  NodePort (`load_balancer`): kube-vip announces their addresses and kube-proxy takes them there, so no Pi opens their
  port on its own address.
- **Arda** (Cilium): Cilium enforces them with its own identities; it admits the pod's own host by default
  (`allow-localhost: auto`, the kubelet's probes).

Ingress only: what a pod may send is not limited here (the Pis' pods fetch from the internet, Argo CD's from Git).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stacks.model import StackConfig

API_VERSION = "networking.k8s.io/v1"
DEFAULT_DENY = "default-deny-ingress"
NAME_LABEL = "app.kubernetes.io/name"
# The label the API server gives every namespace (NamespaceDefaultLabelName, Kubernetes v1.22+).
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def default_deny(namespace: str, **labels: str) -> dict[str, Any]:
    """Every pod of `namespace` admits nothing but what another policy of it allows: a pod added later without one is
    closed, not open."""
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": DEFAULT_DENY, "namespace": namespace, **({"labels": dict(labels)} if labels else {})},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def port(number: int, protocol: str = "TCP") -> dict[str, Any]:
    return {"port": number, "protocol": protocol}


def pods(name: str, namespace: str | None = None) -> dict[str, Any]:
    """A peer: the pods labelled `app.kubernetes.io/name: name`, in `namespace` (None: the policy's own)."""
    peer: dict[str, Any] = {"podSelector": {"matchLabels": {NAME_LABEL: name}}}
    if namespace is not None:
        peer["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: namespace}}
    return peer


def addresses(cidr: str) -> dict[str, Any]:
    return {"ipBlock": {"cidr": cidr}}


def allow(
    name: str,
    namespace: str,
    selector: Mapping[str, str],
    ports: Sequence[Mapping[str, Any]],
    peers: Sequence[Mapping[str, Any]] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """The pods matching `selector` admit `ports` from `peers` (None: from anywhere; an empty list: from nobody).
    No ports and no peers: the pods admit nothing (a listener only its own node, the kubelet, may reach)."""
    rules: list[dict[str, Any]] = []
    if ports or peers:
        rule: dict[str, Any] = {}
        if peers is not None:
            rule["from"] = [dict(p) for p in peers]
        if ports:
            rule["ports"] = [dict(p) for p in ports]
        rules.append(rule)
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, **({"labels": dict(labels)} if labels else {})},
        "spec": {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": ["Ingress"], **ingress(rules)},
    }


def ingress(rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A policy spec's `ingress`, left out when there is no rule: that admits no one all the same (policyTypes says
    Ingress), while an empty list is not stored (k8s.io/api v0.35.1 networking/v1/types.go:80, `omitempty`), so each
    server-side apply would differ from the stored object (structured-merge-diff v6.3.0 merge/update.go:246) and stamp
    its field manager's time anew (apimachinery v0.35.1 pkg/util/managedfields/internal/managedfieldsupdater.go:75-76):
    a new resourceVersion, and a watch event to every policy agent, on each apply in a later second."""
    return {"ingress": [dict(r) for r in rules]} if rules else {}


def lan_clients(stack: StackConfig) -> dict[str, Any]:
    """A peer: the LAN's own hosts, as a policy on the Ainur must name them. `network.lan` less each Pi's address and
    each address kube-vip holds on a Pi (the API VIP, the service address, the Git mirror's): any of those as a source
    is a pod or a host process of a Pi, masqueraded to it (above), not a LAN client."""
    lan = stack.network.lan
    held = [n.ip for n in stack.ainur_nodes]
    if stack.ainur is not None:
        held += [stack.ainur.vip, stack.ainur.service_ip, *([stack.ainur.git_mirror.ip] if stack.ainur.git_mirror else [])]
    # The API server takes only an `except` inside the cidr.
    excepted = sorted({ip for ip in held if ip in lan})
    return {"ipBlock": {"cidr": str(lan), **({"except": [f"{ip}/32" for ip in excepted]} if excepted else {})}}


def load_balancer(ports: Sequence[Mapping[str, Any]], **spec: Any) -> dict[str, Any]:
    """The spec of a LoadBalancer Service with no NodePort: `spec` and `ports`. On the Ainur, whose addresses kube-vip
    announces, for the reason above; on Arda, where Cilium announces them, so that no Service's port is open on every
    machine's own address (plans.ports.service). `allocateLoadBalancerNodePorts: false` alone allocates none to a new Service but leaves the one
    an older Service holds, which a server-side apply does not own; each port's `nodePort: 0`, applied, releases it
    (the real API server: tests/plans/test_netboot.py)."""
    return {"type": "LoadBalancer", **spec, "allocateLoadBalancerNodePorts": False, "ports": [{**p, "nodePort": 0} for p in ports]}
