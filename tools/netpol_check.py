"""Which workloads and outside addresses reach which ports of a cluster, as np-guard's netpol-analyzer computes it.

The analyzer (v1.4.2, `tools/netpol-check`) reads one cluster's objects from a folder and evaluates every
NetworkPolicy among them as Kubernetes defines them. What it reads is what the program creates in that cluster
(every `kubernetes:` resource through the cluster's provider, as `iluvatar render` writes it) and what Argo CD
builds from a platform Application with a kustomize source (kube-prometheus's, with the stack's own patches to its
NetworkPolicies), built by the kustomize release Argo CD runs (`tools.upstream.kustomize`). A CiliumNetworkPolicy is read as
the NetworkPolicy admitting the same (`from_cilium`), or refused.

What the analyzer cannot see, and so leaves out of the matrix:
- the pods an operator makes from a custom resource: Prometheus's and Alertmanager's StatefulSets stand in here
  (`operator_stand_ins`), as prometheus-operator v0.93.0 labels their pods;
- the charts of Helm releases and Helm-source Applications (cert-manager, Envoy Gateway and its proxies, Cilium,
  ...): their workloads are not in the matrix, and the program renders no policy for them. Argo CD's is the
  exception (`RENDERED_CHARTS`): its chart is rendered with the stack's values by the real Helm the kube tests use
  (tools.kube_program.render), so its workloads (and any policy it renders) are in the matrix. Longhorn's is
  the other: the program renders its policies (plans.storage.longhorn_network_policies), and its pods stand in
  (`longhorn_stand_ins`), as its chart and manager label them, since no Go module serves its chart;
- host networking: the analyzer treats a `hostNetwork` pod as any pod, where the cluster's network applies no pod
  policy to it (its listeners answer on the node's address).
- masquerade: on the Ainur a pod's packets to an address outside the cluster leave as its Pi's (flannel, plans.netpol),
  so an ipBlock holding a Pi's address admits every pod that runs there. The analyzer reads an ipBlock as outside
  hosts only, so before it runs such a rule also admits every pod of the cluster (`through_nodes`): the matrix then
  shows the path, as the pods have it. Every pod, not only those of one Pi: any pod may be scheduled on any Pi (the
  attacker's is pinned nowhere).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iluvatar.render import HELM_CHART, HELM_RELEASE, cluster_of
from iluvatar.simulate import Simulation
from plans import gitops, storage
from tools import gotools
from tools.kube_program import ChartRef, chart_name, plain, registration_object, render
from tools.upstream import kustomize

# What the analyzer reads (its parser skips other kinds): where pods run, the namespaces' labels policies select
# on, the Services, and the policies (Kubernetes' own, and the network-policy-api's admin policies v1.4.2 evaluates).
KINDS = (
    "Namespace",
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Service",
    "NetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
)
# The Helm releases whose chart is rendered into the matrix: Argo CD's (its workloads, which the program's policies,
# plans.gitops.network_policies, select; its own policies are off, plans.gitops.helm_values).
RENDERED_CHARTS = ("argo-cd",)
# Policies the analyzer cannot evaluate: one of them would make its matrix wrong, so it is refused, not skipped. A
# CiliumNetworkPolicy is translated when it can be (`from_cilium`).
UNEVALUATED = ("CiliumClusterwideNetworkPolicy",)
CILIUM = "CiliumNetworkPolicy"
# The Cilium entities a host-network pod's traffic has: its own machine's (`host`) or another's (`remote-node`).
NODE_ENTITIES = frozenset({"host", "remote-node"})


def only_denies_outside(policy: Mapping[str, Any]) -> bool:
    """A clusterwide policy that only takes reach away, towards addresses named by CIDR, and isolates no one
    (`enableDefaultDeny` off both ways), such as Arda's keeping every pod from the Ainur's KMS
    (plans.cilium.kms_egress_deny): the matrix left without it shows more than is allowed, never less, so what it
    says cannot be reached still cannot."""
    spec = policy.get("spec") or {}
    rules = spec.get("egressDeny") or []
    return (
        set(spec) <= {"description", "endpointSelector", "enableDefaultDeny", "egressDeny"}
        and spec.get("enableDefaultDeny") == {"egress": False, "ingress": False}
        and bool(rules)
        and all(set(r) <= {"toCIDR", "toPorts"} and r.get("toCIDR") for r in rules)
    )


def from_cilium(policy: Mapping[str, Any], node_addresses: Iterable[str]) -> dict[str, Any]:
    """The Kubernetes NetworkPolicy admitting what an ingress-only CiliumNetworkPolicy admits, for the analyzer.

    Cilium enforces both kinds together: a pod selected by either is isolated in that direction, and what any of them
    allows is allowed (docs.cilium.io, Network Policy, "Layer 3 examples"), as Kubernetes' own policies add up; so one
    NetworkPolicy per CiliumNetworkPolicy keeps the sum. Its `endpointSelector` becomes the podSelector, `fromEndpoints`
    pod selectors (the policy's namespace, as Cilium scopes them, or the one its `k8s:io.kubernetes.pod.namespace` label
    names), `fromCIDR` ipBlocks, and the `host` and `remote-node`
    entities the machines' own addresses (`node_addresses`, each a /32): the analyzer then shows a host-network pod's
    writes as coming from its machine's address, as the pod receives them. Anything else (egress, other entities, L7
    rules, CIDR sets, `matchExpressions`) is refused naming it, not approximated.
    """
    where = f"{CILIUM} {policy['metadata'].get('namespace', '')}/{policy['metadata']['name']}"
    spec = dict(policy.get("spec") or {})
    if set(spec) - {"endpointSelector", "ingress"} or set(spec.get("endpointSelector") or {}) - {"matchLabels"}:
        raise NetpolCheckError(f"{where}: only an ingress policy selecting by matchLabels is translated for netpol-analyzer, not {sorted(spec)}")
    nodes = [{"ipBlock": {"cidr": f"{a}/32"}} for a in sorted(node_addresses)]
    rules = []
    for rule in spec.get("ingress") or []:
        if unknown := set(rule) - {"fromEndpoints", "fromCIDR", "fromEntities", "toPorts"}:
            raise NetpolCheckError(f"{where}: {sorted(unknown)} is not translated for netpol-analyzer")
        if entities := set(rule.get("fromEntities") or []) - NODE_ENTITIES:
            raise NetpolCheckError(f"{where}: the entities {sorted(entities)} are not translated for netpol-analyzer (only host and remote-node)")
        endpoints = rule.get("fromEndpoints") or []
        if scoped := sorted({k for e in endpoints for k in e.get("matchLabels") or {} if k.removeprefix("k8s:").startswith("io.cilium")}):
            raise NetpolCheckError(f"{where}: fromEndpoints selecting by {scoped} (Cilium's own labels) is not translated for netpol-analyzer")
        if unknown_keys := sorted({k for e in endpoints for k in e if k != "matchLabels"}):
            raise NetpolCheckError(f"{where}: fromEndpoints selecting by {unknown_keys} is not translated for netpol-analyzer")
        peers: list[dict[str, Any]] = [_endpoint_peer(e) for e in endpoints]
        peers += [{"ipBlock": {"cidr": c}} for c in rule.get("fromCIDR") or []]
        peers += nodes if rule.get("fromEntities") else []
        ports = []
        for to in rule.get("toPorts") or []:
            if set(to) - {"ports"}:
                raise NetpolCheckError(f"{where}: toPorts {sorted(set(to) - {'ports'})} (L7 rules) are not translated for netpol-analyzer")
            # A port is a number or the name a pod's container gives it, as in a NetworkPolicy.
            ports += [{"port": _port(p["port"]), "protocol": p.get("protocol", "TCP")} for p in to["ports"]]
        rules.append({"from": peers, **({"ports": ports} if ports else {})})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"cilium-{policy['metadata']['name']}", "namespace": policy["metadata"]["namespace"]},
        "spec": {"podSelector": spec.get("endpointSelector") or {}, "policyTypes": ["Ingress"], "ingress": rules},
    }


# The clusters whose pods leave as their node's address (k3s' flannel masquerade, plans.netpol); Cilium on Arda
# identifies a pod by its identity, whatever address its packets carry.
MASQUERADING = frozenset({"ainur"})
# The peer `through_nodes` adds: every pod of every namespace.
EVERY_POD: dict[str, Any] = {"namespaceSelector": {}}


def _holds(block: Mapping[str, Any], address: ipaddress.IPv4Address) -> bool:
    """Whether an ipBlock admits `address`: inside its cidr and none of its excepts."""
    if address not in ipaddress.ip_network(str(block["cidr"]), strict=False):
        return False
    return not any(address in ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or [])


def through_nodes(policy: Mapping[str, Any], node_addresses: Iterable[str]) -> dict[str, Any]:
    """The NetworkPolicy with every ingress rule whose ipBlock admits a node's address admitting every pod too: what a
    pod masqueraded to its node's address has, through a NodePort or a LAN host that forwards (plans.netpol). Other
    rules, and policies with none such, are unchanged."""
    nodes = [ipaddress.IPv4Address(a) for a in node_addresses]
    spec = dict(policy.get("spec") or {})
    rules = []
    for rule in spec.get("ingress") or []:
        peers = list(rule.get("from") or [])
        blocks = [p["ipBlock"] for p in peers if "ipBlock" in p]
        if any(_holds(b, n) for b in blocks for n in nodes) and EVERY_POD not in peers:
            rule = {**rule, "from": [*peers, EVERY_POD]}
        rules.append(rule)
    if not rules:
        return dict(policy)
    return {**policy, "spec": {**spec, "ingress": rules}}


# The label Cilium gives an endpoint for its pod's namespace (with or without its source prefix), and the label the API
# server gives every Namespace for its name (the NetworkPolicy way of naming one).
_CILIUM_NAMESPACE = ("k8s:io.kubernetes.pod.namespace", "io.kubernetes.pod.namespace")
_NAMESPACE_NAME = "kubernetes.io/metadata.name"


def _endpoint_peer(selector: Mapping[str, Any]) -> dict[str, Any]:
    """A `fromEndpoints` selector as a NetworkPolicy peer: without a namespace label, pods of the policy's own namespace
    (as Cilium scopes them); with one, the pods of that namespace, named by its `kubernetes.io/metadata.name`."""
    labels = dict(selector.get("matchLabels") or {})
    namespaces = {labels.pop(k) for k in _CILIUM_NAMESPACE if k in labels}
    if len(namespaces) > 1:
        raise NetpolCheckError(f"fromEndpoints selecting two namespaces at once ({sorted(namespaces)}) selects nothing")
    pods = {"podSelector": {"matchLabels": {k.removeprefix("k8s:"): v for k, v in labels.items()}} if labels else {}}
    if not namespaces:
        return pods
    return {"namespaceSelector": {"matchLabels": {_NAMESPACE_NAME: namespaces.pop()}}, **pods}


def _port(port: str | int) -> int | str:
    return int(port) if str(port).isdigit() else str(port)


# Every IPv4 address outside the cluster's pods, as the analyzer names the block (0.0.0.0/0).
OUTSIDE = "0.0.0.0-255.255.255.255"
# A row's sources when they are every workload of the cluster but the destination itself, and every outside address.
EVERY = "every pod and 0.0.0.0/0"


class NetpolCheckError(RuntimeError):
    """The analyzer could not read the objects or evaluate a policy."""


@dataclass(frozen=True)
class Analysis:
    connections: tuple[tuple[str, str, str], ...]  # (source, destination, connection), as the analyzer lists them
    peers: tuple[str, ...]  # every workload it read, `namespace/name[Kind]`
    warnings: tuple[str, ...]


def operator_stand_ins(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The StatefulSet prometheus-operator makes for each Prometheus and Alertmanager, with its pods' labels.

    v0.93.0 labels a Prometheus's pods with spec.podMetadata.labels over its own version label
    (pkg/prometheus/promcfg.go:1345-1360, BuildPodMetadata), an Alertmanager's likewise
    (pkg/alertmanager/statefulset.go:398-411); the StatefulSet is named `prometheus-<name>` / `alertmanager-<name>`.
    Its containers are left out: kube-prometheus's policies name their ports by number.
    """
    out = []
    for obj in objects:
        prefix = {"Prometheus": "prometheus", "Alertmanager": "alertmanager"}.get(str(obj.get("kind")))
        if prefix is None:
            continue
        labels = dict((obj.get("spec", {}).get("podMetadata") or {}).get("labels") or {})
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": f"{prefix}-{obj['metadata']['name']}", "namespace": obj["metadata"]["namespace"]},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": prefix, "image": "stand-in"}]}},
                },
            }
        )
    return out


def _stand_in(kind: str, name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A workload whose pods carry `labels`, for the analyzer to place (it reads no container but their ports)."""
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [{"name": name, "image": "stand-in"}]}},
        },
    }


def longhorn_stand_ins(application: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Longhorn's pods, as its chart (v1.10.1, not rendered here: no Go module serves it, tools.kube_program) and its
    manager label them (plans.storage says where each label is set): the manager with the webhook's and recovery
    backend's labels it adds to its own pod, the UI, the driver deployer, the CSI plugin, the instance and share
    managers it makes, and a support bundle's manager and agents. The backing images' managers and the manager's jobs
    run only on demand and stand in nowhere."""
    namespace = str(application["spec"]["destination"]["namespace"])
    component = storage.LONGHORN_COMPONENT
    return [
        _stand_in(
            "DaemonSet", "longhorn-manager", namespace, {**storage.LONGHORN_MANAGER, **storage.LONGHORN_WEBHOOK, **storage.LONGHORN_RECOVERY_BACKEND}
        ),
        _stand_in("Deployment", "longhorn-ui", namespace, storage.LONGHORN_UI),
        _stand_in("Deployment", "longhorn-driver-deployer", namespace, storage.LONGHORN_DRIVER_DEPLOYER),
        _stand_in("DaemonSet", "longhorn-csi-plugin", namespace, storage.LONGHORN_CSI_PLUGIN),
        _stand_in("DaemonSet", "instance-manager", namespace, {component: "instance-manager"}),
        _stand_in("Deployment", "share-manager", namespace, {component: "share-manager"}),
        # While a support bundle exists: its manager and the agents that post to it.
        _stand_in("Deployment", "support-bundle-manager", namespace, storage.LONGHORN_SUPPORT_BUNDLE_MANAGER),
        _stand_in("DaemonSet", "support-bundle-agent", namespace, storage.LONGHORN_SUPPORT_BUNDLE_AGENT),
    ]


def _kustomize_objects(application: Mapping[str, Any]) -> list[dict[str, Any]]:
    source = application["spec"]["source"]
    built = kustomize.build(
        source["repoURL"],
        source["targetRevision"],
        source["path"],
        source["kustomize"],
        build_options=gitops.KUSTOMIZE_BUILD_OPTIONS,
        kube_version=gotools.kubernetes_version("kube-control-plane"),
    )
    namespace = application["spec"]["destination"].get("namespace")
    for obj in built:
        if namespace and not obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace
    return built + operator_stand_ins(built)


def _chart_objects(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Helm release's objects as real Helm renders its pinned chart with the release's values (no CRDs, no hooks:
    neither is a workload or a policy), for the test control plane's Kubernetes version."""
    ref = ChartRef(
        chart=chart_name(str(inputs["chart"])),
        version=str(inputs.get("version") or ""),
        values=inputs.get("values") or {},
        release=str(inputs["name"]),
        namespace=str(inputs.get("namespace") or "default"),
        kube_version=gotools.kubernetes_version("kube-control-plane"),
        include_crds=False,
    )
    out = []
    for obj in render(ref, ()):
        if ((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook"):
            continue
        obj.setdefault("metadata", {}).setdefault("namespace", ref.namespace)
        out.append(obj)
    return out


def cluster_objects(sim: Simulation, cluster: str, node_addresses: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The objects of `cluster` the analyzer reads: the program's own, what its kustomize Applications build and what
    the charts of `RENDERED_CHARTS` render; a CiliumNetworkPolicy translated (`from_cilium`, with the cluster's
    machines' `node_addresses`); on a cluster that masquerades its pods to their node's address, a rule admitting one
    of `node_addresses` admitting every pod (`through_nodes`)."""
    objects: list[dict[str, Any]] = []
    for reg in sim.registrations:
        if not reg.type.startswith("kubernetes:") or not reg.custom or cluster_of(reg) != cluster:
            continue
        if reg.type == HELM_RELEASE and chart_name(str(plain(reg.inputs).get("chart", ""))) in RENDERED_CHARTS:
            objects += _chart_objects(plain(reg.inputs))
            continue
        if reg.type in (HELM_RELEASE, HELM_CHART):
            continue
        obj = registration_object(reg)
        if obj["kind"] == "Application" and "kustomize" in (obj.get("spec", {}).get("source") or {}):
            objects += _kustomize_objects(obj)
        elif obj["kind"] == "Application" and (obj.get("spec", {}).get("source") or {}).get("chart") == "longhorn":
            objects += longhorn_stand_ins(obj)
        else:
            objects.append(obj)
    if unevaluated := sorted(
        f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        for o in objects
        if o.get("kind") in UNEVALUATED and not only_denies_outside(o)
    ):
        raise NetpolCheckError(
            f"{cluster}: netpol-analyzer evaluates Kubernetes' NetworkPolicies only, not {', '.join(unevaluated)}: the matrix would leave them out"
        )
    addresses = list(node_addresses)
    out = [from_cilium(o, addresses) if o.get("kind") == CILIUM else o for o in objects if o.get("kind") in (*KINDS, CILIUM)]
    if cluster in MASQUERADING:
        out = [through_nodes(o, addresses) if o.get("kind") == "NetworkPolicy" else o for o in out]
    return out


def analyze(objects: Iterable[Mapping[str, Any]]) -> Analysis:
    """The analyzer's connection list over the objects, one file each in a folder of its own."""
    binary = gotools.build("netpol-check")
    with tempfile.TemporaryDirectory(prefix="netpol-") as folder:
        for i, obj in enumerate(objects):
            name = f"{i:04d}-{obj['kind']}-{obj['metadata'].get('namespace', '_cluster')}-{obj['metadata']['name']}.yaml"
            (Path(folder) / name).write_text(yaml.safe_dump(dict(obj), sort_keys=False), encoding="utf-8")
        result = subprocess.run([str(binary), folder], capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - a pinned tool
    if result.returncode != 0:
        raise NetpolCheckError(f"netpol-analyzer failed: {result.stderr.strip()}")
    found = json.loads(result.stdout)
    return Analysis(
        connections=tuple((c["src"], c["dst"], c["conn"]) for c in found["connections"]),
        peers=tuple(found["peers"]),
        warnings=tuple(found["warnings"]),
    )


_RANGE = re.compile(r"^(\d+\.\d+\.\d+\.\d+)-(\d+\.\d+\.\d+\.\d+)$")


def _merged(peers: Iterable[str]) -> set[str]:
    """The peers with adjacent address ranges joined: the analyzer splits 0.0.0.0/0 at every ipBlock any policy
    names, even where the rows of the pieces are the same; joined, a row reads as the policies wrote it."""
    spans: list[tuple[int, int]] = []
    out = set()
    for peer in peers:
        if found := _RANGE.match(peer):
            spans.append((int(ipaddress.IPv4Address(found.group(1))), int(ipaddress.IPv4Address(found.group(2)))))
        else:
            out.add(peer)
    joined: list[list[int]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1] + 1:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return out | {f"{ipaddress.IPv4Address(start)}-{ipaddress.IPv4Address(end)}" for start, end in joined}


def matrix(analysis: Analysis) -> dict[str, dict[str, str | frozenset[str]]]:
    """Destination -> connection (`TCP 9093`, `All Connections`) -> its sources: EVERY, or the set of them, adjacent
    address ranges joined (a destination that is an address range is kept as the analyzer split it)."""
    sources: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for src, dst, conn in analysis.connections:
        sources[dst][conn].add(src)
    for by_conn in sources.values():
        for conn in by_conn:
            by_conn[conn] = _merged(by_conn[conn])
    everyone = {*analysis.peers, OUTSIDE}
    return {
        dst: {conn: EVERY if srcs == everyone - {dst} else frozenset(srcs) for conn, srcs in sorted(by_conn.items())}
        for dst, by_conn in sorted(sources.items())
    }
