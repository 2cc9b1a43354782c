"""The rules about a cluster whose Nodes cannot be Ready yet because no CNI runs (upgrader/internal/apply/readiness.go),
on a control plane of the file's own with no Node in it (`kube_nodeless`).

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py).
What these files share is tests/upgrader/kube.py.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.upgrader.kube import NEW, _sysctl, kwok_node, run, unique
from tests.upgrader.run import mutations, upgrader, upgrader_watched
from tools.kube_cluster import NO_CNI, TALOS, Cluster
from tools.talos_api import VANILLA, addresses, installer, link, mac, node, scenario, talos_api

pytestmark = pytest.mark.kube


# --- Before a CNI runs: no Node is Ready, and no machine is either -------------------------------------------------
#
# Talos's MachineStatus is ready only once the machine's Node is (its nodeReady check), and no Node is Ready before a
# CNI runs: Arda's configs install none, and Cilium comes after every machine's apply. The stand-in reads the Node as
# Talos's NodeStatusController does (tools/talos-api/nodestatus.go, with the scenario's kubernetesCA). kwok leaves a
# Node labelled NO_CNI to the test, whose Kubelet posts what the kubelet of a machine without a CNI reports. These tests
# share a cluster with no Node (`kube_nodeless`, reset between them): the rule is about every Node of the cluster, and
# the other files' shared one (`kube_talos`) holds their tests' Nodes.

NETWORK_NOT_READY = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"


class Kubelet:
    """The kubelet of one machine, as far as its Node goes: it registers the Node (with the boot it runs in) and posts
    its Ready condition every second, as a kubelet posts its status, so the node lifecycle controller keeps hearing from
    it. Without a CNI it is Ready False, reason KubeletNotReady, its container runtime's network not ready
    (k8s.io/kubernetes v1.34.1 pkg/kubelet/kubelet.go:3009-3013, nodestatus/setters.go:467-510); `message` says
    another reason; `cni` makes it Ready."""

    def __init__(self, cluster: Cluster, name: str, control_plane: bool = False, boot: str = "", message: str = NETWORK_NOT_READY) -> None:
        self.cluster, self.name, self.message, self.cni = cluster, name, message, False
        registered = kwok_node(name, control_plane)
        registered["metadata"]["labels"][NO_CNI] = ""
        registered["status"]["nodeInfo"]["bootID"] = boot
        registered["status"]["conditions"] = self.conditions()
        cluster.client.create(registered)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.post, daemon=True)
        self.thread.start()

    def conditions(self) -> list[dict[str, str]]:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.cni:
            ready = {"status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
        else:
            ready = {"status": "False", "reason": "KubeletNotReady", "message": self.message}
        return [{"type": "Ready", **ready, "lastHeartbeatTime": now, "lastTransitionTime": now}]

    def post(self) -> None:
        while not self.stopped.wait(1.0):
            self.cluster.client.merge_patch(kwok_node(self.name), {"status": {"conditions": self.conditions()}}, subresource="status")

    def report(self, *, cni: bool = False, message: str = NETWORK_NOT_READY, boot: str | None = None) -> None:
        """What it reports from now on: a CNI runs, or not and why; the boot it runs in (a new kubelet's)."""
        self.cni, self.message = cni, message
        status: dict[str, Any] = {"conditions": self.conditions()}
        if boot is not None:
            status["nodeInfo"] = {"bootID": boot}
        self.cluster.client.merge_patch(kwok_node(self.name), {"status": status}, subresource="status")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


# What a reset of the module's cluster must bring back as it was: every kind a step of the upgrader reads or
# writes across the cluster (Nodes, the owed after hooks' ConfigMap, pods to drain, their budgets, hook Jobs, Node
# leases), by kind, namespace and name.
_RESET_KINDS = (
    ("v1", "Node"),
    ("v1", "ConfigMap"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("policy/v1", "PodDisruptionBudget"),
    ("coordination.k8s.io/v1", "Lease"),
)


def _objects(cluster: Cluster) -> set[tuple[str, str, str]]:
    return {
        (kind, (o["metadata"].get("namespace") or ""), o["metadata"]["name"])
        for api_version, kind in _RESET_KINDS
        for o in cluster.client.list(api_version, kind)
    }


@pytest.fixture(scope="module")
def _nodeless_talos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, set[tuple[str, str, str]]]]:
    cluster = Cluster(TALOS, tmp_path_factory.mktemp("kube-nodeless"))
    cluster.start()

    def settled() -> set[tuple[str, str, str]] | None:
        # A started control plane still publishes its own objects for a while: the controller-manager's root CA in
        # every namespace and the API server's lease (no leader election's: tools/kube_cluster.LEADER_ELECT). The
        # snapshot waits for both.
        objects = _objects(cluster)
        namespaces = {n["metadata"]["name"] for n in cluster.client.list("v1", "Namespace")}
        published = {ns for kind, ns, name in objects if (kind, name) == ("ConfigMap", "kube-root-ca.crt")}
        leases = {name for kind, ns, name in objects if (kind, ns) == ("Lease", "kube-system")}
        own = any(lease.startswith("apiserver-") for lease in leases)
        return objects if published == namespaces and own else None

    try:
        yield cluster, cluster.wait_for("the fresh control plane's own objects", settled)
    finally:
        cluster.stop()


@pytest.fixture
def kube_nodeless(_nodeless_talos: tuple[Cluster, set[tuple[str, str, str]]]) -> Iterator[Cluster]:
    """A Talos control plane with no Node and nothing of any other test in it, for the rules about every Node of the
    cluster. One per file, not one per test (a start is about 3.5 s of CPU and 10 s of wall): each test's Nodes and the
    owed ConfigMap are deleted after it, and the next test starts only once every object of `_RESET_KINDS` is again
    exactly what the fresh cluster held (asserted, not assumed)."""
    cluster, fresh = _nodeless_talos
    assert _objects(cluster) == fresh, "the module's nodeless cluster was not reset"
    yield cluster
    for n in cluster.client.list("v1", "Node"):
        cluster.client.delete(n)
    for cm in cluster.client.list("v1", "ConfigMap", "kube-system"):
        if ("ConfigMap", "kube-system", cm["metadata"]["name"]) not in fresh:
            cluster.client.delete(cm)
    # The Node leases go with their Nodes (owner references: the garbage collector, asynchronously).
    cluster.wait_for("the nodeless cluster back as it started", lambda: _objects(cluster) == fresh)


@pytest.fixture
def kubelets() -> Iterator[Callable[..., Kubelet]]:
    """`kubelets(cluster, name, ...)`: a Kubelet, stopped after the test."""
    made: list[Kubelet] = []

    def make(*args: Any, **kwargs: Any) -> Kubelet:
        made.append(Kubelet(*args, **kwargs))
        return made[-1]

    yield make
    for kubelet in made:
        kubelet.stop()


def test_a_machine_handed_its_config_after_the_bootstrap_and_before_a_cni_is_not_waited_for_its_node(
    kube_nodeless: Cluster, kubelets: Callable[..., Kubelet]
) -> None:
    """The bootstrap runs beside the applies: a machine slow to reach maintenance mode gets its config after it, and its
    step waits until the machine is back and healthy. Before Cilium, healthy asks everything but the Node's readiness.
    Before, the step waited for a ready machine, which needs a Ready Node, which needs Cilium, which comes after every
    apply: it failed at its bound, and every later run the same way."""
    cluster = kube_nodeless
    cp, worker = unique("valinor"), unique("istari")
    ips = addresses(2)
    nodes = [node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW, maintenance=True, install={"downMs": 300})]
    with talos_api(scenario(nodes, endpoint=cluster.server, kubernetes_ca=cluster.ca)) as api:
        cp_kubelet = kubelets(cluster, cp, control_plane=True, boot=api.state()[cp]["bootId"])
        # Talos is not ready while its Node is not (the stand-in reads it as Talos does).
        cluster.wait_for(f"{cp} not ready for its Node", lambda: api.state()[cp]["ready"] is False)
        config = api.config("worker", installer(VANILLA, NEW), patches=link(mac(worker)))
        args = ["apply", "--node", api.node_arg(worker), "--role", "worker", "--timeout", "60s"]
        started: list[Kubelet] = []

        def kubelet(line: str) -> bool:
            # The new kubelet registers its Node, NotReady: no CNI.
            if line.startswith(f"upgrader: {worker}: waiting: for its kubelet to report the Node from this boot") and not started:
                started.append(kubelets(cluster, worker, boot=api.state()[worker]["bootId"]))
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": cluster.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, kubelet)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {worker}: ") for line in result.lines]
        back = steps.index(f"back: it answers at {api.ip(worker)} with the cluster's client certificate")
        assert [s for s in steps[back:] if not s.startswith("waiting: ")] == [
            f"back: it answers at {api.ip(worker)} with the cluster's client certificate",
            f'no Node in the cluster is Ready, and the kubelet of {cp} reports "container runtime network not ready": no CNI runs yet (before Cilium): '
            "its Node's readiness is not waited for, the rest is",
            "running, and ready but for its Node (no CNI yet)",
            f"runs Talos {NEW}, schematic {VANILLA}, as configured",
            "healthy",
        ]
        assert api.state()[worker]["ready"] is False

        # Cilium comes up on the control plane only: the cluster serves pods, and the worker's Node must be Ready now.
        cp_kubelet.report(cni=True)
        again = upgrader([*args[:-1], "5s"], stdin)
        assert again.code == 1
        assert again.last == (
            f'upgrader: FAILED: {worker}: machine-status: timed out; last seen: running, not ready: nodeReady: node "{worker}" is not ready; '
            f"look with: talosctl -n {api.ip(worker)} get machinestatus"
        )
        started[0].report(cni=True)
        ready = upgrader(args, stdin)
        assert ready.code == 0, ready.stderr
        assert [line for line in ready.lines if ": waiting: " not in line][-2:] == [
            f"upgrader: {worker}: config unchanged and Talos as configured: checking health only",
            f"upgrader: {worker}: healthy",
        ]
        assert mutations(api) == [(worker, "MachineService/ApplyConfiguration AUTO")]


def test_a_change_that_reboots_a_machine_before_a_cni_goes_ahead_behind_etcd_and_a_broken_cluster_is_not_rolled(
    kube_nodeless: Cluster, kubelets: Callable[..., Kubelet]
) -> None:
    """A second `pulumi up` after a first that stopped before Cilium, with a change that needs a reboot: no Node is Ready,
    for want of a CNI. The change goes ahead behind the etcd checks; after the reboot everything but the Node's
    readiness is checked. Before, the step failed after the reboot, waiting for a ready machine. A cluster whose Nodes
    are NotReady for another reason is not rolled at all."""
    cluster = kube_nodeless
    cp, worker = unique("valinor"), unique("istari")
    ips = addresses(2)
    nodes = [node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW, applyNeedsReboot=True, reboot={"downMs": 300})]
    with talos_api(scenario(nodes, endpoint=cluster.server, kubernetes_ca=cluster.ca)) as api:
        broken = "PLEG is not healthy: pleg was last seen active 3m0s ago"
        machines = [
            kubelets(cluster, cp, control_plane=True, boot=api.state()[cp]["bootId"], message=broken),
            kubelets(cluster, worker, boot=api.state()[worker]["bootId"], message=broken),
        ]
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(worker), "--role", "worker", "--timeout", "60s"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": cluster.kubeconfig.read_text(), "machineConfig": config}

        refused = upgrader(args, stdin)
        assert refused.code == 1
        assert refused.last == (
            f"upgrader: FAILED: {worker}: nodes: no Node in the cluster is Ready, and no kubelet says it is for want of a CNI: the cluster serves no pods, "
            "so nothing is taken down (its health after could not be told from the cluster's); nothing was changed; "
            "look with: kubectl get nodes; kubectl describe nodes"
        )
        assert mutations(api) == [(worker, "MachineService/ApplyConfiguration dry-run")]

        for machine in machines:
            machine.report()  # no CNI

        def kubelet(line: str) -> bool:
            if line.startswith(f"upgrader: {worker}: waiting: for its kubelet to report the Node from this boot"):
                machines[1].report(boot=api.state()[worker]["bootId"])
            return False

        result = upgrader_watched(args, stdin, kubelet)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {worker}: ") for line in result.lines]
        assert [s for s in steps if s.startswith(("no Node", "rebooting", "running", "uncordoned", "healthy"))] == [
            f'no Node in the cluster is Ready, and the kubelet of {", ".join(sorted([cp, worker]))} reports "container runtime network not ready": '
            "no CNI runs yet (before Cilium): the change goes ahead behind the etcd checks, and after it everything but its Node's readiness is checked",
            "rebooting",
            "running, and ready but for its Node (no CNI yet)",
            "uncordoned",
            "healthy",
        ]
        assert [m for _, m in mutations(api)] == [
            "MachineService/ApplyConfiguration dry-run",
            "MachineService/ApplyConfiguration dry-run",
            "MachineService/ApplyConfiguration STAGED",
            "MachineService/Reboot",
        ]


def test_no_machine_is_taken_down_while_a_stopped_run_left_another_drained(kube_nodeless: Cluster) -> None:
    """A run stopped after a machine's next boot was made to bring a change leaves that machine drained on purpose
    (cordoned with the upgrader's mark, its after hooks owed: Ceph's noout set). A later run with a change for another
    machine must not take that one down beside it (two Ceph hosts' OSDs down, and its after hooks would unset noout
    while the first is still down); it refuses, naming the machine and how to finish it, and goes ahead once it is."""
    cluster = kube_nodeless
    client = cluster.client
    name, left = unique("istari"), unique("istari")
    cluster.create_nodes([kwok_node(name), kwok_node(left)])
    mark = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": left}}
    client.merge_patch(mark, {"metadata": {"annotations": {"iluvatar.dev/cordoned": "true"}}, "spec": {"unschedulable": True}})
    look = "look with: kubectl get nodes; kubectl -n kube-system get configmap iluvatar-after-hooks -o yaml; kubectl get jobs -A"
    finish = (
        f"taking {name} down beside it would put two machines down at once, so nothing was changed: finish that one first (a `pulumi up` in "
        "which only its step runs: `pulumi up --target` its -apply step's URN, from `pulumi stack --show-urns`; if that shows no change, its "
        "settings were set back: put them as the stopped run had them), then run this again. A machine gone for good (renamed, out of the "
        "inventory) is released by hand, once Ceph's noout is unset (`ceph osd unset noout`) and what its hooks paused is resumed: "
        f"kubectl uncordon {left} && kubectl annotate node {left} iluvatar.dev/cordoned-; kubectl -n kube-system patch configmap "
        f'iluvatar-after-hooks --type=json -p \'[{{"op":"remove","path":"/data/{left}"}}]\''
    )

    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True, reboot={"downMs": 300})])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s"]

        refused = run(api, cluster, args, machineConfig=config)
        assert refused.code == 1
        assert (
            refused.last
            == f"upgrader: FAILED: {name}: one-at-a-time: an earlier run that stopped left {left}: cordoned by the upgrader; {finish}; {look}"
        )

        # Uncordoned by hand, but its after hooks still owed: refused all the same.
        client.merge_patch(mark, {"metadata": {"annotations": {"iluvatar.dev/cordoned": None}}, "spec": {"unschedulable": None}})
        owed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iluvatar-after-hooks", "namespace": "kube-system"}}
        client.create({**owed, "data": {left: "rook-ceph/noout-unset"}})
        refused = run(api, cluster, args, machineConfig=config)
        assert refused.code == 1
        assert refused.last == (
            f"upgrader: FAILED: {name}: one-at-a-time: an earlier run that stopped left {left}: owes its after hooks (rook-ceph/noout-unset); {finish}; {look}"
        )
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")] * 2

        # This machine left so too (both, from before the check): its own step finishes its own disruption, which
        # puts no second machine down; each waiting on the other would hold both for good.
        client.merge_patch(
            {**mark, "metadata": {"name": name}}, {"metadata": {"annotations": {"iluvatar.dev/cordoned": "true"}}, "spec": {"unschedulable": True}}
        )
        result = run(api, cluster, args, machineConfig=config)
        assert result.code == 0, result.stderr
        assert mutations(api)[-2:] == [(name, "MachineService/ApplyConfiguration STAGED"), (name, "MachineService/Reboot")]
        assert "iluvatar.dev/cordoned" not in (client.get("v1", "Node", name) or {})["metadata"].get("annotations", {})
