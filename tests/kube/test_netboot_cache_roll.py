"""netboot-cache's roll with a card Pi down (review 41-12 H1), on the Ainur's real control plane (tools.kube_cluster,
k3s's flags and the program's node-monitor-grace-period: its node lifecycle and DaemonSet controllers) with kwok as
the live Pis' kubelets and one Pi's kubelet gone: the roll stops on the dead Pi's pod until the clearance step
(plans.netboot.cache.clearance_script, run by bash with the real kubectl) removes it, then ends on the Pis that answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import clearance_script
from plans.netboot import objects as netboot_objects
from plans.netboot.cache import SILENT_SCRIPT
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.kube.nodes import kubelet_gone
from tools import gotools
from tools.kube_cluster import K3S, Cluster

pytestmark = pytest.mark.kube

PIS = ("eonwe", "ilmare", "manwe")
# The step's threshold (a Pi silent for 120 s) at 5 s in the lab.
SILENT = 5


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
    return subprocess.run(["bash", "-c", clearance_script(silent_seconds=SILENT)], env=env, capture_output=True, text=True, timeout=120, check=False)


def silent(cluster: Cluster, name: str) -> bool | None:
    """The step's own reading of a Pi (plans.netboot.cache.SILENT_SCRIPT on the Nodes, as the script pipes them to it):
    `silent` once its Ready has been Unknown for SILENT seconds by the script's clock."""
    nodes = json.dumps({"items": cluster.client.list("v1", "Node")})
    read = subprocess.run([sys.executable, "-c", SILENT_SCRIPT, str(SILENT)], input=nodes, capture_output=True, text=True, timeout=60, check=True)
    return f"{name} silent" in read.stdout.splitlines() or None


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
        live_pods = {p["spec"]["nodeName"]: p["metadata"]["uid"] for p in cluster.client.list("v1", "Pod", "netboot")}
        with kubelet_gone(cluster, "manwe"):

            def unreachable() -> bool | None:
                node = cluster.client.get("v1", "Node", "manwe") or {}
                taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
                return ("node.kubernetes.io/unreachable", "NoSchedule") in taints or None

            def manwes_pod_not_ready() -> bool | None:
                [pod] = [p for p in cluster.client.list("v1", "Pod", "netboot") if p["spec"].get("nodeName") == "manwe"]
                ready = [c["status"] for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
                return ready == ["False"] or None

            # The node lifecycle controller: Ready Unknown, then the taint, 16 s (the program's grace period) and a
            # monitor period (5 s) after the kubelet's last word. It marks manwe's pods NotReady in its health pass
            # (Kubernetes v1.35.1 pkg/controller/nodelifecycle/node_lifecycle_controller.go:752-759) and taints from its
            # own queue, in either order; the roll below counts manwe's pod unavailable only once it is NotReady
            # (daemon/update.go:93-102), so both are waited for.
            cluster.wait_for("manwe tainted unreachable:NoSchedule", unreachable, 90)
            cluster.wait_for("manwe's cache pod marked NotReady", manwes_pod_not_ready, 30)
            live = cluster.client.get("apps/v1", "DaemonSet", "netboot-cache", "netboot")
            assert live is not None
            cluster.client.merge_patch(live, {"spec": {"template": {"metadata": {"annotations": {"iluvatar/ipxe-digest": "a-new-pin"}}}}})

            # The taint alone re-counts nothing: a node update syncs a DaemonSet only when a pod is to be made or removed
            # there, or some are misscheduled (Kubernetes v1.35.1 pkg/controller/daemon/daemon_controller.go:1448-1467),
            # and manwe keeps its pod under NoSchedule. The roll's own change syncs it, and the count then leaves manwe out.
            # The controller raises observedGeneration only after a pass that ran the roll (daemon_controller.go:1263-1269),
            # and that pass has made its deletions by then (syncNodes waits for them, :1062-1077): the roll's decision for
            # the new template is in the API when the status shows it.
            def roll_passed() -> dict[str, Any] | None:
                s = status(cluster)
                return s if s.get("observedGeneration") == s["generation"] and s.get("desiredNumberScheduled") == 2 else None

            stuck = cluster.wait_for("the DaemonSet controller's pass over the roll, counting eonwe and ilmare only", roll_passed, 30)
            # The deliberate break, as it stands without the step: manwe's pod deleted by the roll and left Terminating
            # (no kubelet confirms it), so neither live Pi's pod is replaced (daemon/update.go:82-84,119-126); every later
            # pass reads that same state (nothing ends the Terminating pod) and decides the same.
            assert not rolled(cluster) and stuck.get("updatedNumberScheduled", 0) == 0, stuck
            pods = cluster.client.list("v1", "Pod", "netboot")
            manwes = [p for p in pods if p["spec"].get("nodeName") == "manwe"]
            assert len(manwes) == 1 and manwes[0]["metadata"].get("deletionTimestamp"), manwes
            kept = {p["spec"]["nodeName"]: p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}
            assert kept == {n: live_pods[n] for n in ("eonwe", "ilmare")}, pods
            # The step clears a Pi its own reading calls silent; it reads manwe so once the Ready Unknown is SILENT old.
            cluster.wait_for(f"the step reading manwe silent for {SILENT} s", lambda: silent(cluster, "manwe"), 30, interval=0.5)
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
