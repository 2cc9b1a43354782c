"""netboot-cache's roll with a card Pi down (review 41-12 H1), on the Ainur's real control plane (tools.kube_cluster,
k3s's flags and the program's node-monitor-grace-period: its node lifecycle and DaemonSet controllers) with kwok as
the live Pis' kubelets and one Pi's kubelet gone: the roll stops on the dead Pi's pod until the clearance step
(plans.netboot.cache.clearance_script, run by bash with the real kubectl) removes it, then ends on the Pis that answer."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import clearance_script
from plans.netboot import objects as netboot_objects
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.kube.nodes import kubelet_gone
from tools import gotools
from tools.kube_cluster import K3S, Cluster

pytestmark = pytest.mark.kube

PIS = ("eonwe", "ilmare", "manwe")


def pi_node(name: str) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def status(cluster: Cluster) -> dict[str, Any]:
    live = cluster.client.get("apps/v1", "DaemonSet", "netboot-cache", "netboot")
    assert live is not None
    got: dict[str, Any] = live.get("status") or {}
    return {**got, "generation": live["metadata"]["generation"]}


def rolled(cluster: Cluster) -> bool:
    """pulumi-kubernetes v4.32.0's wait for a DaemonSet, as kstatus (cli-utils v0.37.2 status/core.go:305-350) reads it."""
    s = status(cluster)
    desired = s.get("desiredNumberScheduled", 0)
    counts = [s.get(k, 0) for k in ("currentNumberScheduled", "updatedNumberScheduled", "numberAvailable", "numberReady")]
    return s.get("observedGeneration") == s["generation"] and all(desired <= c for c in counts)


def valar_env(tmp: Path, cluster: Cluster) -> dict[str, str]:
    """A valar's PATH: `sudo` runs what it is given, `k3s kubectl` is the real kubectl with k3s's admin kubeconfig."""
    kubectl = gotools.build("kubectl")
    bin_ = tmp / "valar-bin"
    bin_.mkdir(parents=True)
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_ / "k3s").write_text(f'#!/bin/sh\nshift\nexec {kubectl} --kubeconfig {cluster.kubeconfig} "$@"\n')
    for name in ("sudo", "k3s"):
        (bin_ / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}


def run_clearance(tmp: Path, cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """The step's script as the first valar runs it (valar_env: the real kubectl of Kubernetes v1.35.1,
    tools.gotools' kubectl)."""
    env = valar_env(tmp, cluster)
    # Its threshold (a Pi silent for 120 s) at 5 s: the lab's Pi has been silent since the taint, longer than that.
    return subprocess.run(["bash", "-c", clearance_script(silent_seconds=5)], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_pi_that_is_down_holds_the_caches_roll_until_the_clearance_step_removes_its_pod(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    manifests = netboot_objects.manifests(stack, [])
    namespace = next(m for m in manifests if m["kind"] == "Namespace")
    cache = next(m for m in manifests if (m["kind"], m["metadata"]["name"]) == ("DaemonSet", "netboot-cache"))
    grace = f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}"
    with Cluster(K3S, tmp_path / "ainur", controller_manager_args=(grace,)).start() as cluster:
        cluster.create_nodes([pi_node(n) for n in PIS])
        cluster.client.create(namespace)
        cluster.client.create(cache)
        cluster.wait_for("a ready cache pod on each Pi", lambda: status(cluster).get("numberReady") == 3 or None, 120)
        with kubelet_gone(cluster, "manwe"):

            def unreachable() -> bool | None:
                node = cluster.client.get("v1", "Node", "manwe") or {}
                taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
                return ("node.kubernetes.io/unreachable", "NoSchedule") in taints or None

            # The node lifecycle controller: Ready Unknown, then the taint, 16 s (the program's grace period) and a
            # monitor period (5 s) after the kubelet's last word.
            cluster.wait_for("manwe tainted unreachable:NoSchedule", unreachable, 90)
            live = cluster.client.get("apps/v1", "DaemonSet", "netboot-cache", "netboot")
            assert live is not None
            cluster.client.merge_patch(live, {"spec": {"template": {"metadata": {"annotations": {"iluvatar/ipxe-digest": "a-new-pin"}}}}})
            # The taint alone re-counts nothing: a node update syncs a DaemonSet only when a pod is to be made or removed
            # there, or some are misscheduled (Kubernetes v1.35.1 pkg/controller/daemon/daemon_controller.go:1448-1467),
            # and manwe keeps its pod under NoSchedule. The roll's own change syncs it, and the count then leaves manwe out.
            cluster.wait_for("the DaemonSet counting eonwe and ilmare only", lambda: status(cluster).get("desiredNumberScheduled") == 2 or None, 30)
            # The deliberate break, as it stands without the step: manwe's pod deleted by the roll and left Terminating
            # (no kubelet confirms it), so neither live Pi's pod is replaced (daemon/update.go:82-84,119-126).
            time.sleep(12)
            stuck = status(cluster)
            assert not rolled(cluster) and stuck.get("updatedNumberScheduled", 0) == 0, stuck
            pods = cluster.client.list("v1", "Pod", "netboot")
            manwes = [p for p in pods if p["spec"].get("nodeName") == "manwe"]
            assert len(manwes) == 1 and manwes[0]["metadata"].get("deletionTimestamp"), manwes
            got = run_clearance(tmp_path, cluster)
            assert got.returncode == 0, got.stderr
            said = [line for line in got.stderr.splitlines() if line.startswith("iluvatar: ")]
            assert said == [
                "iluvatar: manwe's kubelet has not reported for 5 s or more (its Node's Ready is Unknown), so its netboot-cache pod "
                f"{manwes[0]['metadata']['name']} would hold the cache's roll on every other Pi; it is removed, and manwe's cache refills "
                "when it is back"
            ]
            cluster.wait_for("the cache rolled on eonwe and ilmare", lambda: rolled(cluster) or None, 90)
            assert status(cluster).get("updatedNumberScheduled") == 2
            assert sorted(p["spec"]["nodeName"] for p in cluster.client.list("v1", "Pod", "netboot")) == ["eonwe", "ilmare"]
            # Run again with every Pi that answers rolled: nothing to remove, nothing said.
            again = run_clearance(tmp_path / "again", cluster)
            assert again.returncode == 0 and not [line for line in again.stderr.splitlines() if line.startswith("iluvatar: ")], again.stderr
        # manwe back: its cache pod, of the new template, made again.
        cluster.wait_for("manwe's cache pod back", lambda: status(cluster).get("updatedNumberScheduled") == 3 or None, 90)
