"""A stack deployed onto real control planes: the simulation, one cluster per Kubernetes cluster of
the stack with the inventory's nodes, every object written in the engine's order, and what the
workloads' pods became (tests/kube/test_program.py, test_breaks.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iluvatar.simulate import Registration, Simulation, simulate
from plans import k3s
from stacks.load import StackFile, validate_stack_file
from stacks.model import StackConfig
from tools import kube_inventory
from tools.kube_cluster import ApiError, Cluster, ProviderOptions, describe, flavor_for, start_all
from tools.kube_program import Report, Walker, Workload, Written, slice_clusters, workloads

STATIC_SOURCE = "static pod, plans.k3s.kube_vip_manifest"


@dataclass
class Deployed:
    stack: StackConfig
    sim: Simulation
    clusters: dict[str, Cluster]
    walker: Walker
    report: Report
    static_pods: list[str] = field(default_factory=list)
    _workloads: dict[str, list[Workload]] = field(default_factory=dict)

    def workloads(self, cluster: str) -> list[Workload]:
        """The cluster's workloads with their pods, settled (computed once)."""
        if cluster not in self._workloads:
            self._workloads[cluster] = workloads(cluster, self.clusters[cluster], self.report.written)
        return self._workloads[cluster]

    def forget_workloads(self) -> None:
        """Read the workloads again on the next call (after a test changed them)."""
        self._workloads.clear()

    def workload(self, cluster: str, name: str) -> Workload:
        """One workload by `Kind namespace/name`."""
        [found] = [w for w in self.workloads(cluster) if w.name == name]
        return found

    def nodes(self, cluster: str, **labels: str) -> list[str]:
        """The cluster's node names whose labels include `labels` (keys with `/` spelt `__`)."""
        wanted = {k.replace("__", "/"): v for k, v in labels.items()}
        return sorted(
            n["metadata"]["name"]
            for n in self.clusters[cluster].client.list("v1", "Node")
            if all(n["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        )


def static_pods(stack: StackConfig) -> list[dict[str, Any]]:
    """What each Pi's kubelet registers for its static pods (the program writes the manifests over SSH):
    a mirror pod per valar, bound to it, as the kubelet creates it."""
    if stack.ainur is None:
        return []
    manifest = k3s.kube_vip_manifest(stack)
    pods = []
    for node in stack.by_role("valar"):
        pod = {**manifest, "metadata": {**manifest["metadata"], "name": f"{manifest['metadata']['name']}-{node.name}"}}
        pod["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "stand-in", "kubernetes.io/config.source": "file"}
        pod["spec"] = {**manifest["spec"], "nodeName": node.name}
        pods.append(pod)
    return pods


@contextlib.contextmanager
def deployed(
    stack_file: StackFile,
    root: Path,
    mutate: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    only: Callable[[Registration], bool] | None = None,
    sim: Simulation | None = None,
) -> Iterator[Deployed]:
    """Deploy the stack onto fresh control planes under `root`; stopped on leaving.

    `mutate` changes objects before they are written, `only` writes just the registrations it
    selects and what they depend on in the same clusters; `sim` replaces the simulation.
    """
    stack = validate_stack_file(stack_file)
    sim = sim or simulate(stack_file)
    names = ["arda", "ainur"] if stack.ainur is not None else ["arda"]
    if only is not None:  # the clusters of what `only` picks: its dependencies in another cluster are left out
        names = [n for n in names if n in slice_clusters(sim, only)]
    clusters: dict[str, Cluster] = {}
    try:
        # Side by side. The walk writes no pod itself: the controllers' pods wait for the default
        # ServiceAccount, and the scheduler for the nodes to be Ready, on their own.
        clusters.update({name: Cluster(flavor_for(name), root / name, ready_for_pods=False) for name in names})
        start_all(list(clusters.values()))
        for name in names:
            clusters[name].create_nodes(kube_inventory.nodes(stack, name), wait=False)
        options: dict[str, Any] = {k: v for k, v in (("mutate", mutate), ("only", only)) if v is not None}
        walker = Walker(sim, stack, clusters, **options)
        report = walker.walk()
        result = Deployed(stack, sim, clusters, walker, report)
        pods = static_pods(stack) if "ainur" in clusters and only is None else []
        if pods:
            clusters["ainur"].wait_for_service_account("kube-system")
        for pod in pods:
            try:
                live = clusters["ainur"].client.create(pod)
                result.static_pods.append(describe(pod))
                report.written.append(Written("ainur", STATIC_SOURCE, "kubelet", pod, "kubelet", ProviderOptions(), live))
            except ApiError as e:
                report.refusals.append(
                    f"ainur: {describe(pod)} (static pod, plans.k3s.kube_vip_manifest) refused: HTTP {e.status} {e.reason}: {e.message}"
                )
        for name in names:
            clusters[name].wait_for_nodes([n.name for n in (stack.arda_nodes if name == "arda" else stack.ainur_nodes)])
        yield result
    finally:
        for cluster in clusters.values():
            cluster.stop()


def problems(deployment: Deployed) -> list[str]:
    """Every workload problem of every cluster, one line each."""
    return [f"{w.cluster}: {w.name} ({w.source}): {p}" for cluster in deployment.clusters for w in deployment.workloads(cluster) for p in w.problems]
