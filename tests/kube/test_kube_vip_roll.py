"""kube-vip-services' roll on the Ainur's real control plane (tools.kube_cluster: its DaemonSet controller, kwok as the
Pis' kubelets): the DaemonSet as the program writes it (OnDelete) replaces no pod of its own when its template changes,
and the roll step (plans.netboot.vip_roll.roll_script, run by bash with the real kubectl) replaces each, the Pi holding
the service address last, each new pod Ready before the next; a run cut short leaves what the next run finishes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import kube_vip_services, vip_roll
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.kube.nodes import kubelet_gone
from tests.kube.test_netboot_cache_roll import pi_node
from tools import gotools
from tools.kube_cluster import K3S, Cluster

pytestmark = pytest.mark.kube

PIS = ("eonwe", "ilmare", "manwe")
HOLDER = "eonwe"  # first by name: any order but the roll's own would replace it first


def pods(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """kube-vip's pods by their Pi (a Pi with two, one going, shows the one not going)."""
    found: dict[str, dict[str, Any]] = {}
    for pod in cluster.client.list("v1", "Pod", vip_roll.DAEMONSET_NAMESPACE, labelSelector=vip_roll.SELECTOR):
        node = pod["spec"].get("nodeName")
        if node and (node not in found or found[node]["metadata"].get("deletionTimestamp")):
            found[node] = pod
    return found


def revision(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"]["controller-revision-hash"])


def daemonset(cluster: Cluster) -> dict[str, Any]:
    live = cluster.client.get("apps/v1", "DaemonSet", vip_roll.DAEMONSET, vip_roll.DAEMONSET_NAMESPACE)
    assert live is not None
    return live


def ready_everywhere(cluster: Cluster) -> bool | None:
    s = daemonset(cluster).get("status") or {}
    return (s.get("numberReady") == len(PIS) and s.get("updatedNumberScheduled") == len(PIS)) or None


def run_roll(tmp: Path, cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """The step's script as the valar runs it: `sudo` runs what it is given, `k3s kubectl` is the real kubectl."""
    binary = gotools.build("kube-control-plane")
    bin_ = tmp / "valar-bin"
    bin_.mkdir(parents=True)
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_ / "k3s").write_text(f'#!/bin/sh\nshift\nexec {binary} kubectl --kubeconfig {cluster.kubeconfig} "$@"\n')
    for name in ("sudo", "k3s"):
        (bin_ / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", vip_roll.roll_script()], env=env, capture_output=True, text=True, timeout=300, check=False)


def said(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("iluvatar: ")]


def replaced(node: str, pod: str) -> str:
    if node == HOLDER:
        why = "it holds the service address, so it goes last: the household's DNS is away until its new kube-vip wins the released lease"
    else:
        why = "it does not hold the service address"
    return f"iluvatar: kube-vip on {node} runs an older template: its pod {pod} is replaced ({why})"


def test_the_roll_replaces_kube_vip_one_pi_at_a_time_the_holder_of_the_service_address_last(tmp_path: Path) -> None:
    objects = kube_vip_services(load_stack_file(HOMELAB))
    with Cluster(K3S, tmp_path / "ainur").start() as cluster:
        cluster.create_nodes([pi_node(n) for n in PIS])
        for obj in objects:
            cluster.client.create(obj)
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netboot"}})
        # The service address's Lease as kube-vip on the holder wrote it.
        lease = {"holderIdentity": HOLDER, "leaseDurationSeconds": 22, "leaseTransitions": 0}
        cluster.client.create(
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": vip_roll.LEASE, "namespace": "netboot"}, "spec": lease}
        )
        cluster.wait_for("a ready kube-vip on each Pi", lambda: ready_everywhere(cluster), 120)
        before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
        old = {revision(p) for p in pods(cluster).values()}
        # A change of its settings (a new env value, as a kube-vip pin bump changes its image).
        live = daemonset(cluster)
        template = live["spec"]["template"]
        container = {**template["spec"]["containers"][0]}
        container["env"] = [*container["env"], {"name": "vip_loglevel", "value": "4"}]
        cluster.client.merge_patch(live, {"spec": {"template": {"spec": {"containers": [container]}}}})

        def observed() -> bool | None:
            ds = daemonset(cluster)
            return (ds.get("status") or {}).get("observedGeneration") == ds["metadata"]["generation"] or None

        # The controller has seen the new template, in the same sync that would have begun a RollingUpdate's deletions
        # (Kubernetes v1.35.1 pkg/controller/daemon/daemon_controller.go:913-926, status after): OnDelete deleted none.
        cluster.wait_for("the DaemonSet controller seeing the new template", observed, 30)
        assert {n: p["metadata"]["name"] for n, p in pods(cluster).items()} == before
        assert not [p for p in pods(cluster).values() if p["metadata"].get("deletionTimestamp")]

        # An earlier run cut short right after it deleted manwe's pod: the controller made its new one meanwhile.
        manwe = pods(cluster)["manwe"]
        cluster.client.delete(manwe)
        cluster.wait_for("manwe's new kube-vip", lambda: revision(pods(cluster)["manwe"]) not in old or None, 60)

        done = run_roll(tmp_path, cluster)
        assert done.returncode == 0, done.stderr
        assert said(done) == [
            replaced("ilmare", before["ilmare"]),
            "iluvatar: kube-vip on ilmare runs the new template",
            replaced(HOLDER, before[HOLDER]),
            f"iluvatar: kube-vip on {HOLDER} runs the new template",
        ]
        now = pods(cluster)
        assert {revision(p) for p in now.values()}.isdisjoint(old) and len({revision(p) for p in now.values()}) == 1
        assert not {p["metadata"]["name"] for p in now.values()} & set(before.values())
        # Run again: nothing older left, nothing said.
        again = run_roll(tmp_path / "again", cluster)
        assert (again.returncode, said(again)) == (0, [])


def test_a_pi_that_is_down_keeps_its_old_kube_vip_and_the_roll_fails_naming_it_after_the_others(tmp_path: Path) -> None:
    """A Pi whose kubelet is silent (its Node's Ready Unknown) would never confirm its pod's deletion: the roll leaves its
    pod as it is, replaces every other Pi's (the holder last), and then fails naming it, so the next `up` runs it again."""
    grace = f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}"
    with Cluster(K3S, tmp_path / "ainur", controller_manager_args=(grace,)).start() as cluster:
        cluster.create_nodes([pi_node(n) for n in PIS])
        for obj in kube_vip_services(load_stack_file(HOMELAB)):
            cluster.client.create(obj)
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netboot"}})
        lease = {"holderIdentity": HOLDER, "leaseDurationSeconds": 22, "leaseTransitions": 0}
        cluster.client.create(
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": vip_roll.LEASE, "namespace": "netboot"}, "spec": lease}
        )
        cluster.wait_for("a ready kube-vip on each Pi", lambda: ready_everywhere(cluster), 120)
        before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
        with kubelet_gone(cluster, "manwe"):

            def silent() -> bool | None:
                node = cluster.client.get("v1", "Node", "manwe") or {}
                ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
                return (bool(ready) and ready[0]["status"] == "Unknown") or None

            cluster.wait_for("manwe's Node Ready Unknown", silent, 90)
            live = daemonset(cluster)
            container = {**live["spec"]["template"]["spec"]["containers"][0]}
            container["env"] = [*container["env"], {"name": "vip_loglevel", "value": "4"}]
            cluster.client.merge_patch(live, {"spec": {"template": {"spec": {"containers": [container]}}}})
            done = run_roll(tmp_path, cluster)
            assert done.returncode == 1
            assert said(done) == [
                replaced("ilmare", before["ilmare"]),
                "iluvatar: kube-vip on ilmare runs the new template",
                replaced(HOLDER, before[HOLDER]),
                f"iluvatar: kube-vip on {HOLDER} runs the new template",
                "iluvatar: kube-vip on manwe keeps its older template: the Node is not Ready, so its pod is left as it is; once "
                "it is back, pulumi up again replaces it; look with: sudo k3s kubectl -n kube-system get pods -l "
                "app.kubernetes.io/name=kube-vip -o wide",
            ]
            manwe = pods(cluster)["manwe"]
            assert manwe["metadata"]["name"] == before["manwe"] and not manwe["metadata"].get("deletionTimestamp")
