"""The upgrader's Kubernetes side against a real API server (tools/kube_cluster.py: kube-apiserver 1.35.1 with kwok nodes).

The Talos side is the scripted stand-in (tools/talos-api) again; Kubernetes is real: cordon, drain
(evictions and PodDisruptionBudgets), hook Jobs, paused workloads, Node readiness, the control
plane's static pods, server-side dry runs, CSI objects, version skew and the deprecated-API metric
are the API server's own answers. A node is the same name in both: the stand-in's Talos node and
a kwok Node.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from iluvatar import upgrader as product
from plans import bringup, storage
from plans.storage import NOOUT_SET, NOOUT_UNSET
from tests.upgrader.run import GRACE_S, Result, binary, mutations, step, until, upgrader, upgrader_watched
from tools.kube_cluster import NO_CNI, TALOS, Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, link, mac, node, scenario, talos_api

pytestmark = pytest.mark.kube

NEW = "v1.13.0"
KUBELET = "v1.35.1"  # the stand-in's configs name Kubernetes 1.35.1, as the control plane runs (tools.talos_api.scenario)
_ids = itertools.count()


def unique(prefix: str) -> str:
    """A node name no other test in the shared cluster uses."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_ids)}"


def kwok_node(name: str, control_plane: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"nodeInfo": {"kubeletVersion": KUBELET, "operatingSystem": "linux", "architecture": "amd64", "osImage": f"Talos ({NEW})"}},
    }


def deployment(namespace: str, name: str, replicas: int, on: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": on}, "containers": [{"name": name, "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def program_hooks(namespace: str) -> dict[str, list[dict[str, Any]]]:
    """The hooks the program hands a Ceph host's apply (plans.storage.noout_jobs), in the test's namespace: its shape, not
    one written here, so the two sides cannot drift. kwok runs no container: a Job's pod succeeds once it is scheduled."""
    hooks = copy.deepcopy(storage.noout_jobs())
    for jobs in hooks.values():
        for job in jobs:
            job["metadata"]["namespace"] = namespace
    return hooks


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    return cluster.client.list("v1", "Pod", namespace, labelSelector=f"app={app}")


def running(cluster: Cluster, namespace: str, app: str, count: int) -> None:
    cluster.wait_for(
        f"{count} running pods of {app}",
        lambda: (
            len(
                [
                    p
                    for p in pods(cluster, namespace, app)
                    if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                ]
            )
            == count
        ),
    )


@pytest.fixture
def static_pods(kube_talos: Cluster) -> Iterator[Callable[[str, dict[str, str]], None]]:
    """Talos's control plane pods on a node, written by the test, removed after it.

    The kubelet runs them from what Talos serves and mirrors each into the API (kube-system, label
    k8s-app, the mirror annotation), as kwok cannot: a drain leaves mirror pods alone. Each carries the
    talos.dev/* annotations of a pod Talos has rendered once since the node booted (`FIRST_RENDER`: the
    stand-in's state is new at each boot, as Talos's is). A test of what the kubelet does runs the
    stand-in's kubelet instead (`scenario(..., kubelet_poll_ms=...)`).
    """
    made: list[dict[str, Any]] = []

    def make(node_name: str, images: dict[str, str]) -> None:
        for app, image in images.items():
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{app}-{node_name}",
                    "namespace": "kube-system",
                    "labels": {"k8s-app": app, "tier": "control-plane"},
                    "annotations": {
                        "kubernetes.io/config.mirror": f"{app}-{node_name}",
                        "kubernetes.io/config.source": "file",
                        **FIRST_RENDER[app],
                    },
                },
                "spec": {"nodeName": node_name, "containers": [{"name": app, "image": image}]},
            }
            kube_talos.client.create(pod)
            made.append(pod)
        kube_talos.wait_for(
            f"static pods on {node_name}",
            lambda: all(_pod_ready(kube_talos.client.get("v1", "Pod", p["metadata"]["name"], "kube-system")) for p in made),
        )

    yield make
    for pod in made:
        kube_talos.client.delete(pod)


# What a control plane pod Talos rendered once since its boot carries: every resource it is rendered from at version 1, so
# the API server's config files (four resources' versions strung together) at 1111 (tools/talos-api/controlplane.go).
FIRST_RENDER = {
    "kube-apiserver": {"talos.dev/config-version": "1", "talos.dev/config-file-version": "1111", "talos.dev/secrets-version": "1"},
    "kube-controller-manager": {"talos.dev/config-version": "1", "talos.dev/secrets-version": "1"},
    "kube-scheduler": {"talos.dev/config-version": "1", "talos.dev/secrets-version": "1"},
}
# How long a restarted control plane pod must run untouched before the steps count it (the upgrader's default is 30 s).
STABLE = ["--pods-stable", "1s"]


def _pod_ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def control_plane_images(config: str) -> dict[str, str]:
    cluster = next(yaml.safe_load_all(config))["cluster"]
    return {
        "kube-apiserver": cluster["apiServer"]["image"],
        "kube-controller-manager": cluster["controllerManager"]["image"],
        "kube-scheduler": cluster["scheduler"]["image"],
    }


def run(api: TalosAPI, cluster: Cluster, args: list[str], **stdin: Any) -> Result:
    return upgrader(args, {"talosconfig": api.talosconfig_text(), "kubeconfig": cluster.kubeconfig.read_text(), **stdin})


def _sysctl() -> str:
    return json.dumps({"machine": {"sysctls": {"vm.max_map_count": "262144"}}})


def test_a_reboot_runs_the_hooks_pauses_cordons_and_drains_then_puts_it_all_back(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    client.create(deployment(ns, "app", 2, on=name))
    client.create(deployment(ns, "paused", 1, on=name))
    running(kube_talos, ns, "app", 2)
    running(kube_talos, ns, "paused", 1)
    before = {p["metadata"]["uid"]: p["metadata"]["name"] for p in pods(kube_talos, ns, "app")}

    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True, reboot={"downMs": 300})])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        hooks = program_hooks(ns)
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "120s", "--pause", f"Deployment/{ns}/paused"]
        result = run(api, kube_talos, args, machineConfig=config, hooks=hooks)
        assert result.code == 0, result.stderr

        steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
        # The app's pods were evicted (and the finished hook pod too, had it run on this node).
        drained = {s.removeprefix(f"drain: {ns}/").removesuffix(" evicted") for s in steps if s.startswith("drain: ")}
        assert set(before.values()) <= drained
        assert {p for p in drained - set(before.values()) if not p.startswith(f"{NOOUT_SET}-")} == set()
        shown = [
            s
            for s in steps
            if s.startswith(("hook: ", "pause: ", "resume: ", "cordon", "drain", "rebooting", "uncordoned", "config staged"))
            and not s.startswith("drain: ")
        ]
        assert shown == [
            f"hook: Job {ns}/{NOOUT_SET} started",
            f"hook: Job {ns}/{NOOUT_SET} completed",
            f"pause: Deployment/{ns}/paused scaled from 1 to 0",
            "cordon",
            "drain",
            "config staged for the next boot",
            "rebooting",
            "uncordoned",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            f"resume: Deployment/{ns}/paused scaled back to 1",
        ]
        assert mutations(api) == [
            (name, "MachineService/ApplyConfiguration dry-run"),
            (name, "MachineService/ApplyConfiguration STAGED"),
            (name, "MachineService/Reboot"),
        ]

    node_now = client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None
    paused = client.get("apps/v1", "Deployment", "paused", ns)
    assert paused is not None
    assert paused["spec"]["replicas"] == 1
    assert "iluvatar.dev/paused-replicas" not in (paused["metadata"].get("annotations") or {})
    for hook in (NOOUT_SET, NOOUT_UNSET):
        done = client.get("batch/v1", "Job", hook, ns)
        assert done is not None
        assert [c["type"] for c in done["status"]["conditions"] if c["status"] == "True"][-1] == "Complete"
    assert not set(before) & {p["metadata"]["uid"] for p in pods(kube_talos, ns, "app")}


def test_a_pod_disruption_budget_stops_the_drain_and_nothing_is_left_changed(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    client.create(deployment(ns, "guarded", 1, on=name))
    client.create(deployment(ns, "paused", 2, on=name))
    client.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": ns},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        }
    )
    running(kube_talos, ns, "guarded", 1)
    running(kube_talos, ns, "paused", 2)

    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        # The bound is what the drain idles against the budget: alone, it starts 0.7 s in; 8 s ends it as 15 s
        # did, after its retries of the refused eviction (k8s.io/kubectl v0.34.1 pkg/drain/drain.go:295-320: 5 s apart).
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "8s", "--pause", f"Deployment/{ns}/paused"]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 1
        assert result.last.startswith(f"upgrader: FAILED: {name}: drain: ")
        assert result.last.endswith(f"; look with: kubectl get pods -A -o wide --field-selector spec.nodeName={name}; kubectl get pdb -A")
        # Nothing staged, nothing rebooted, and Kubernetes put back as it was.
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]
        assert f"upgrader: {name}: uncordoned" in result.lines

    node_now = client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None
    paused = client.get("apps/v1", "Deployment", "paused", ns)
    assert paused is not None
    assert (paused["spec"]["replicas"], (paused["metadata"].get("annotations") or {}).get("iluvatar.dev/paused-replicas")) == (2, None)
    running(kube_talos, ns, "guarded", 1)


# Where the after hooks a node's disruption still owes are kept (upgrader/internal/kube/hookmark.go): a ConfigMap,
# a key per node, which outlives the Node object.
OWED = "kube-system/iluvatar-after-hooks"


def _owed(cluster: Cluster, name: str) -> str | None:
    """What the node is owed, as the upgrader keeps it (None: nothing)."""
    found = cluster.client.get("v1", "ConfigMap", "iluvatar-after-hooks", "kube-system")
    data: dict[str, str] = (found or {}).get("data") or {}
    return data.get(name)


def _owe(cluster: Cluster, name: str, refs: str) -> None:
    """Write what a node is owed, as a run that died after its before hooks left it."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iluvatar-after-hooks", "namespace": "kube-system"}}
    if cluster.client.get("v1", "ConfigMap", "iluvatar-after-hooks", "kube-system") is None:
        cluster.client.create({**cm, "data": {name: refs}})
    else:
        cluster.client.merge_patch(cm, {"data": {name: refs}})


def _job_states(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Each hook Job in the namespace, and its last true condition ("" while it runs)."""
    jobs = cluster.client.list("batch/v1", "Job", namespace)
    return {
        j["metadata"]["name"]: ([c["type"] for c in (j.get("status") or {}).get("conditions") or [] if c["status"] == "True"] or [""])[-1]
        for j in jobs
    }


def test_a_failure_after_the_reboot_says_noout_is_still_owed_and_the_next_run_unsets_it(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    # The machine comes back from its reboot, but never ready: the run fails after the reboot.
    ip = addresses(1)[0]
    spec = scenario([node(name, ip, "worker", NEW, applyNeedsReboot=True, reboot={"downMs": 300, "result": "not-ready"})])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        hooks = program_hooks(ns)
        # The bound is all this run waits after the reboot (its machine is never ready): alone, the steps up to the
        # reboot take 1.7 s (the hook Job included), as much as the 8 s run below does before its own bound.
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "15s"]
        failed = run(api, kube_talos, args, machineConfig=config, hooks=hooks)
        assert failed.code == 1
        assert f"upgrader: {name}: rebooting" in failed.lines
        assert failed.last == (
            f'upgrader: FAILED: {name}: machine-status: timed out; last seen: running, not ready: nodeReady: node "{name}" is not ready '
            f"(the Node is left cordoned; the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, kept in ConfigMap {OWED} under {name}; "
            f"the next run of this step runs them); look with: talosctl -n {ip} get machinestatus"
        )
        # noout is set, and what unsets it is written down.
        assert (_owed(kube_talos, name), _job_states(kube_talos, ns)) == (f"{ns}/{NOOUT_UNSET}", {NOOUT_SET: "Complete"})

        # It goes down for a while: a run that finds no machine says noout is still owed (every failure does).
        api.crash(name, down_ms=30_000, result="not-ready")
        unreachable = run(api, kube_talos, [*args[:-1], "3s"], machineConfig=config, hooks=hooks)
        assert unreachable.code == 1
        assert unreachable.last.startswith(f"upgrader: FAILED: {name}: reach: timed out; last seen: the node does not answer: ")
        assert (
            f"(the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, kept in ConfigMap {OWED} under {name}; the next run of this step runs them)"
            in unreachable.last
        )

        # It comes back, not ready still. The next run runs what is owed as soon as the machine is back, before the health
        # check that fails: noout is unset, and the failure says nothing is owed any more.
        api.crash(name, down_ms=100, result="not-ready")
        unhealthy = run(api, kube_talos, [*args[:-1], "8s"], machineConfig=config, hooks=hooks)
        assert unhealthy.code == 1
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in unhealthy.lines]
        assert [
            s for s in steps[steps.index("config unchanged and Talos as configured: checking health only") :] if not s.startswith("waiting: ")
        ] == [
            "config unchanged and Talos as configured: checking health only",
            "uncordoned (an earlier run left it cordoned)",
            f"an earlier run left after hooks owed ({ns}/{NOOUT_UNSET}): running them",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            f'upgrader: FAILED: {name}: machine-status: timed out; last seen: running, not ready: nodeReady: node "{name}" is not ready; '
            f"look with: talosctl -n {ip} get machinestatus",
        ]
        assert _owed(kube_talos, name) is None

        # A person power-cycles it; it comes back ready, with its new config. The next run has nothing left to do.
        api.crash(name, down_ms=100)
        resumed = run(api, kube_talos, args, machineConfig=config, hooks=hooks)
        assert resumed.code == 0, resumed.stderr
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in resumed.lines]
        assert [
            s for s in steps[steps.index("config unchanged and Talos as configured: checking health only") :] if not s.startswith("waiting: ")
        ] == ["config unchanged and Talos as configured: checking health only", "healthy"]
        assert mutations(api) == [
            (name, "MachineService/ApplyConfiguration dry-run"),
            (name, "MachineService/ApplyConfiguration STAGED"),
            (name, "MachineService/Reboot"),
        ]
    assert _job_states(kube_talos, ns) == {NOOUT_SET: "Complete", NOOUT_UNSET: "Complete"}
    assert _owed(kube_talos, name) is None
    node_now = kube_talos.client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None


def test_a_run_killed_while_draining_leaves_noout_owed_and_the_next_run_unsets_it(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    # A PodDisruptionBudget holds the drain, so the run is surely draining when it is killed.
    client.create(deployment(ns, "guarded", 1, on=name))
    client.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": ns},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        }
    )
    running(kube_talos, ns, "guarded", 1)

    with talos_api(scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])) as api:
        hooks = program_hooks(ns)
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "120s"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "hooks": hooks}
        changed = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        killed = upgrader_watched(args, {**stdin, "machineConfig": changed}, lambda line: line == f"upgrader: {name}: drain")
        assert killed.lines[-1] == f"upgrader: {name}: drain"
        # What the kill left: noout set, the Node cordoned, and what it is owed written down.
        assert (_owed(kube_talos, name), _job_states(kube_talos, ns)) == (f"{ns}/{NOOUT_UNSET}", {NOOUT_SET: "Complete"})

        # The change is called off (the inventory put back): the machine needs nothing, and noout is unset all the same.
        resumed = upgrader(args, {**stdin, "machineConfig": api.node_config(name)})
        assert resumed.code == 0, resumed.stderr
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in resumed.lines]
        assert [
            s for s in steps[steps.index("config unchanged and Talos as configured: checking health only") :] if not s.startswith("waiting: ")
        ] == [
            "config unchanged and Talos as configured: checking health only",
            "uncordoned (an earlier run left it cordoned)",
            f"an earlier run left after hooks owed ({ns}/{NOOUT_UNSET}): running them",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            "healthy",
        ]
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]
    assert _job_states(kube_talos, ns) == {NOOUT_SET: "Complete", NOOUT_UNSET: "Complete"}
    assert _owed(kube_talos, name) is None
    running(kube_talos, ns, "guarded", 1)


def test_a_step_stopped_by_pulumi_while_it_drains_puts_everything_back_before_it_ends(kube_talos: Cluster, kube_namespace: Any) -> None:
    """Ctrl-C while a PodDisruptionBudget holds the drain: pulumi-command kills the step's shell (tests/upgrader/run.py
    `step`), the upgrader gets SIGTERM, ends the drain and, before it ends, puts back what it did before the reboot:
    the Node uncordoned, the `after` hook (Ceph's noout unset) run, the paused workload resumed. Nothing is staged or
    rebooted. Unstopped, it drained on until its --timeout while Pulumi waited on it."""
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    client.create(deployment(ns, "guarded", 1, on=name))
    client.create(deployment(ns, "paused", 2, on=name))
    budget = {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded", "namespace": ns}, "spec": budget})
    running(kube_talos, ns, "guarded", 1)
    running(kube_talos, ns, "paused", 2)

    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        # The step as the program writes one (plans.bringup.Step: the entry point, the arguments, --timeout).
        command = bringup.Step(("apply", "--node", api.node_arg(name), "--role", "worker", "--pause", f"Deployment/{ns}/paused"), "10m", "").command
        stdin = {
            "talosconfig": api.talosconfig_text(),
            "kubeconfig": kube_talos.kubeconfig.read_text(),
            "machineConfig": config,
            "hooks": program_hooks(ns),
        }

        def draining() -> bool:
            got, paused = client.get("v1", "Node", name), client.get("apps/v1", "Deployment", "paused", ns)
            return bool(got and got["spec"].get("unschedulable")) and paused is not None and paused["spec"]["replicas"] == 0

        product.build()  # not this test's: a step stopped while it builds is tests/upgrader/test_cancel.py's
        with step(command, json.dumps(stdin, sort_keys=True)) as first:
            until("the drain held by the budget", draining, 120)
            first.cancel()
            stopped = first.result(timeout=GRACE_S + 30)
        assert (stopped["signaled"], stopped["stdout"]) == (True, "")
        assert 0 <= stopped["waitedAfterCancelMs"] < GRACE_S * 1000
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in stopped["stderr"].splitlines()]
        after = steps[
            steps.index(
                "upgrader: -: SIGTERM: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to 1m0s, and the upgrader ends within 1m15s"
            ) :
        ]
        assert [s for s in after if not s.startswith("drain: ")][1:] == [
            "uncordoned",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            f"resume: Deployment/{ns}/paused scaled back to 2",
            after[-1],
        ]
        assert after[-1].startswith(f"upgrader: FAILED: {name}: drain: "), after[-1]
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]

    node_now = client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None
    paused = client.get("apps/v1", "Deployment", "paused", ns)
    assert paused is not None
    assert (paused["spec"]["replicas"], (paused["metadata"].get("annotations") or {}).get("iluvatar.dev/paused-replicas")) == (2, None)
    unset = client.get("batch/v1", "Job", NOOUT_UNSET, ns)
    assert unset is not None
    assert [c["type"] for c in unset["status"]["conditions"] if c["status"] == "True"][-1] == "Complete"


def test_a_before_hook_still_pending_is_gone_before_the_after_hook_runs(kube_talos: Cluster, kube_namespace: Any) -> None:
    """A step stopped while `ceph osd set noout` waits for its pod (here: a pod no node can take) runs the after hook
    in its undo. RunJob replaces only a Job of its own name: the set Job's pod, started late, would set noout after
    the unset ran, and nothing would unset it again. The set Job and its pods are gone before the unset starts."""
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    hooks = program_hooks(ns)
    hooks["before"][0]["spec"]["template"]["spec"]["nodeSelector"] = {"iluvatar.test/nowhere": "true"}
    with talos_api(scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "6s"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config, "hooks": hooks}
        at_unset: list[tuple[Any, list[dict[str, Any]]]] = []

        def unset_starts(line: str) -> bool:
            if line == f"upgrader: {name}: hook: Job {ns}/{NOOUT_UNSET} started":
                at_unset.append((client.get("batch/v1", "Job", NOOUT_SET, ns), client.list("v1", "Pod", ns, labelSelector=f"job-name={NOOUT_SET}")))
            return False

        result = upgrader_watched(args, stdin, unset_starts)
        assert result.code == 1
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
        assert [s for s in steps if s.startswith("hook: ")] == [
            f"hook: Job {ns}/{NOOUT_SET} started",
            f"hook: Job {ns}/{NOOUT_SET} has not finished: deleting it and its pods before the after hooks run (it could still do what they undo)",
            f"hook: Job {ns}/{NOOUT_SET} and its pods are gone",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
        ]
        assert at_unset == [(None, [])]
        assert result.last.startswith(f"upgrader: FAILED: {name}: hook: timed out; last seen: Job {ns}/{NOOUT_SET} has not completed")
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]
    assert (_job_states(kube_talos, ns), _owed(kube_talos, name)) == ({NOOUT_UNSET: "Complete"}, None)


def test_a_reflashed_ceph_host_keeps_what_a_killed_run_left_owed_and_runs_it_once_back(
    kube_talos: Cluster, kube_namespace: Any, static_pods: Any
) -> None:
    """A run killed while it drained a Ceph host left noout owed; then the machine's disk was wiped. Its apply deletes its
    old Node before the hand-over (a control plane's: it joins etcd and Kubernetes afresh). What it owes outlives the
    Node, and runs once the machine is back. Before, it was an annotation on the Node, which went with it: noout stayed
    set for good."""
    ns = kube_namespace(kube_talos)
    client = kube_talos.client
    cps = [unique("valinor") for _ in range(3)]
    kube_talos.create_nodes([kwok_node(cp, control_plane=True) for cp in cps])
    client.create(deployment(ns, "guarded", 1, on=cps[2]))
    budget = {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded", "namespace": ns}, "spec": budget})
    running(kube_talos, ns, "guarded", 1)
    ips = addresses(3)
    host: dict[str, Any] = {"applyNeedsReboot": True, "install": {"downMs": 300}}
    spec = scenario(
        [node(cp, ip, "controlplane", NEW, **(host if cp == cps[2] else {})) for cp, ip in zip(cps, ips, strict=True)],
        endpoint=kube_talos.server,
        kubernetes_ca=kube_talos.ca,
    )
    with talos_api(spec) as api:
        member = api.state()[cps[2]]["etcdMemberId"]
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(cps[2]), "--role", "controlplane", *STABLE, "--timeout", "120s"]
        stdin = {
            "talosconfig": api.talosconfig_text(),
            "kubeconfig": kube_talos.kubeconfig.read_text(),
            "machineConfig": config,
            "hooks": program_hooks(ns),
        }
        killed = upgrader_watched(args, stdin, lambda line: line == f"upgrader: {cps[2]}: drain")
        assert killed.lines[-1] == f"upgrader: {cps[2]}: drain"
        assert _owed(kube_talos, cps[2]) == f"{ns}/{NOOUT_UNSET}"

        # Its disk is wiped: it boots from the network into maintenance mode.
        api.crash(cps[2], down_ms=100, result="maintenance")
        kube_talos.wait_for("the wiped machine in maintenance mode", lambda: (s := api.state()[cps[2]])["up"] and s["maintenance"])

        def kubelet(line: str) -> bool:
            # Its kubelet registers the Node once the machine is back: Talos's MachineStatus is ready only then.
            if line.startswith(f"upgrader: {cps[2]}: back: it answers at "):
                kube_talos.create_nodes([_kubelet_reports(api, kube_talos, cps[2], control_plane=True)])
                static_pods(cps[2], control_plane_images(config))
            return False

        result = upgrader_watched(args, stdin, kubelet, record={**_last(api, cps[2]), "etcdMember": member})
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {cps[2]}: ") for line in result.lines]
        assert f"Node {cps[2]} deleted from Kubernetes" in steps
        back = steps.index(f"runs Talos {NEW}, schematic {VANILLA}, as configured")
        assert [s for s in steps[back:] if not s.startswith("waiting: ")] == [
            f"runs Talos {NEW}, schematic {VANILLA}, as configured",
            f"an earlier run left after hooks owed ({ns}/{NOOUT_UNSET}): running them",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            "healthy",
        ]
    assert (_job_states(kube_talos, ns), _owed(kube_talos, cps[2])) == ({NOOUT_SET: "Complete", NOOUT_UNSET: "Complete"}, None)


def test_a_ceph_host_removed_from_the_inventory_runs_what_it_still_owes_before_its_node_goes(kube_talos: Cluster, kube_namespace: Any) -> None:
    """A run killed while it drained a Ceph host left noout owed; then the host left the inventory. Its step's delete
    (`reset --mode auto`, with the apply's stdin) runs what it owes before its Node object goes: nothing else ever would.
    Before, the mark was an annotation on the Node, deleted with it."""
    ns = kube_namespace(kube_talos)
    client = kube_talos.client
    cp, worker = unique("valinor"), unique("istari")
    kube_talos.create_nodes([kwok_node(cp, control_plane=True), kwok_node(worker)])
    client.create(deployment(ns, "guarded", 1, on=worker))
    budget = {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded", "namespace": ns}, "spec": budget})
    running(kube_talos, ns, "guarded", 1)
    ips = addresses(2)
    nodes = [node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW, applyNeedsReboot=True, reset={"downMs": 200})]
    with talos_api(scenario(nodes, endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)) as api:
        hooks = program_hooks(ns)
        args = ["apply", "--node", api.node_arg(worker), "--role", "worker", "--timeout", "120s"]
        changed = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": changed, "hooks": hooks}
        killed = upgrader_watched(args, stdin, lambda line: line == f"upgrader: {worker}: drain")
        assert killed.lines[-1] == f"upgrader: {worker}: drain"
        assert _owed(kube_talos, worker) == f"{ns}/{NOOUT_UNSET}"

        delete = ["reset", "--node", api.node_arg(worker), "--mode", "auto", "--timeout", "60s", "--dead-after", "10s"]
        result = upgrader(delete, {"talosconfig": api.talosconfig_text(), "machineConfig": changed, "hooks": hooks}, record=_last(api, worker))
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {worker}: ") for line in result.lines]
        assert steps[-4:] == [
            f"a disruption of it left after hooks owed ({ns}/{NOOUT_UNSET}): running them before it leaves",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            f"Node {worker} deleted from Kubernetes",
        ]
    assert (_job_states(kube_talos, ns), _owed(kube_talos, worker), client.get("v1", "Node", worker)) == (
        {NOOUT_SET: "Complete", NOOUT_UNSET: "Complete"},
        None,
        None,
    )


def test_a_later_run_restores_what_a_dead_run_left_paused(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    left = deployment(ns, "left", 0, on=name)
    left["metadata"]["annotations"] = {"iluvatar.dev/paused-replicas": "3"}
    client.create(left)

    with talos_api(scenario([node(name, addresses(1)[0], "worker", NEW)])) as api:
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s", "--pause", f"Deployment/{ns}/left"]
        result = run(api, kube_talos, args, machineConfig=api.node_config(name))
        assert result.code == 0, result.stderr
        assert result.lines[-3:] == [
            f"upgrader: {name}: config unchanged and Talos as configured: checking health only",
            f"upgrader: {name}: healthy",
            f"upgrader: {name}: resume: Deployment/{ns}/left scaled back to 3",
        ]
        assert mutations(api) == []
    restored = client.get("apps/v1", "Deployment", "left", ns)
    assert restored is not None
    assert restored["spec"]["replicas"] == 3
    assert "iluvatar.dev/paused-replicas" not in restored["metadata"]["annotations"]


def test_a_later_run_uncordons_what_a_dead_run_left_cordoned_and_leaves_a_persons_cordon(kube_talos: Cluster) -> None:
    ours, theirs = unique("istari"), unique("istari")
    kube_talos.create_nodes([kwok_node(ours), kwok_node(theirs)])
    client = kube_talos.client
    # What a run that died after the reboot leaves: cordoned, with the upgrader's mark.
    client.merge_patch(kwok_node(ours), {"metadata": {"annotations": {"iluvatar.dev/cordoned": "true"}}, "spec": {"unschedulable": True}})
    # A person's maintenance: cordoned, no mark.
    client.merge_patch(kwok_node(theirs), {"spec": {"unschedulable": True}})

    ip_ours, ip_theirs = addresses(2)
    with talos_api(scenario([node(ours, ip_ours, "worker", NEW), node(theirs, ip_theirs, "worker", NEW)])) as api:
        for name in (ours, theirs):
            result = run(
                api, kube_talos, ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s"], machineConfig=api.node_config(name)
            )
            assert result.code == 0, result.stderr
        assert mutations(api) == []
    left = client.get("v1", "Node", ours)
    assert left is not None
    assert not left["spec"].get("unschedulable")
    assert "iluvatar.dev/cordoned" not in (left["metadata"].get("annotations") or {})
    kept = client.get("v1", "Node", theirs)
    assert kept is not None
    assert kept["spec"]["unschedulable"] is True


def test_a_control_planes_health_includes_its_static_pods_on_the_configured_images(kube_talos: Cluster, static_pods: Any) -> None:
    name = unique("valinor")
    kube_talos.create_nodes([kwok_node(name, control_plane=True)])
    spec = scenario([node(name, addresses(1)[0], "controlplane", NEW)], endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)
    with talos_api(spec) as api:
        config = api.node_config(name)
        images = control_plane_images(config)
        static_pods(name, {**images, "kube-apiserver": images["kube-apiserver"].replace(f":{KUBELET}", ":v1.34.0")})
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "4s"]
        stale = run(api, kube_talos, args, machineConfig=config)
        assert stale.code == 1
        assert stale.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: timed out; last seen: kube-apiserver-{name} runs registry.k8s.io/kube-apiserver:v1.34.0, "
            f"not {images['kube-apiserver']}; look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"kube-apiserver-{name}", "namespace": "kube-system"}}
        kube_talos.client.json_patch(pod, [{"op": "replace", "path": "/spec/containers/0/image", "value": images["kube-apiserver"]}])
        current = run(api, kube_talos, [*args[:-1], "30s"], machineConfig=config)
        assert current.code == 0, current.stderr
        assert current.last == f"upgrader: {name}: healthy"


# Talos renders a control plane's pods and serves them at its static pod URL; the kubelet reads that URL when it starts, then
# every httpCheckFrequency (20 s by default; Talos leaves it so), and replaces a mirror pod only once what it read changed. The
# stand-in's kubelet (tools/talos-api/kubelet.go) plays that against the real API server, so the old pod stays, Ready on the
# same image, until the kubelet's next poll.
APPS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CONFIG_VERSION = "talos.dev/config-version"


def mirror_pods(cluster: Cluster, node_name: str) -> dict[str, dict[str, Any]]:
    """The control plane's mirror pods on a node now, by component (one on its way out does not count)."""
    found = cluster.client.list("v1", "Pod", "kube-system", fieldSelector=f"spec.nodeName={node_name}")
    return {
        p["metadata"]["labels"]["k8s-app"]: p
        for p in found
        if (p["metadata"].get("labels") or {}).get("k8s-app") in APPS and not p["metadata"].get("deletionTimestamp")
    }


def config_versions(cluster: Cluster, node_name: str) -> dict[str, str]:
    """Each mirror pod's talos.dev/config-version, for those that are Ready."""
    return {app: p["metadata"]["annotations"].get(CONFIG_VERSION, "") for app, p in mirror_pods(cluster, node_name).items() if _pod_ready(p)}


def api_server_flags(cluster: Cluster, node_name: str) -> list[str]:
    command: list[str] = mirror_pods(cluster, node_name)["kube-apiserver"]["spec"]["containers"][0]["command"]
    return command[1:]


@pytest.fixture
def kubelet_nodes(kube_talos: Cluster) -> Iterator[Callable[..., tuple[list[str], list[str]]]]:
    """kwok Nodes for machines whose kubelet the stand-in plays: `make(control_planes, workers)` names them. Their mirror
    pods go after the test (the stand-in, and its kubelets, have stopped by then), so no other test of the shared
    cluster finds an API server of theirs."""
    made: list[str] = []

    def make(control_planes: int = 0, workers: int = 0) -> tuple[list[str], list[str]]:
        cps, ws = [unique("valinor") for _ in range(control_planes)], [unique("istari") for _ in range(workers)]
        kube_talos.create_nodes([*(kwok_node(cp, control_plane=True) for cp in cps), *(kwok_node(w) for w in ws)])
        made.extend([*cps, *ws])
        return cps, ws

    yield make
    for name in made:
        for pod in kube_talos.client.list("v1", "Pod", "kube-system", fieldSelector=f"spec.nodeName={name}"):
            kube_talos.client.delete(pod)


def kubelet_scenario(cluster: Cluster, nodes: list[dict[str, Any]], poll_ms: int) -> dict[str, Any]:
    """Nodes whose kubelets sign in to the test control plane and poll Talos's static pods every `poll_ms`."""
    return scenario(nodes, endpoint=cluster.server, kubernetes_ca=cluster.ca, kubelet_poll_ms=poll_ms)


def first_pods(cluster: Cluster, names: list[str]) -> None:
    """The mirror pods each kubelet made when it started, Ready, of the config Talos rendered at boot (version 1)."""
    cluster.wait_for("the kubelets' first mirror pods", lambda: all(config_versions(cluster, n) == dict.fromkeys(APPS, "1") for n in names))


def _flag(value: str) -> str:
    """A change of the API server's flags, as an OIDC setting or a user's extraArgs is: Talos applies it without a reboot."""
    return json.dumps({"cluster": {"apiServer": {"extraArgs": {"audit-log-maxage": value}}}})


def test_a_flag_change_is_healthy_only_once_the_kubelet_runs_the_new_api_server(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    [name], _ = kubelet_nodes(1)
    # The kubelet reads Talos's static pods when it starts, and then not within this test (an hour between polls).
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 3_600_000)) as api:
        first_pods(kube_talos, [name])
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "6s"]
        stale = run(api, kube_talos, args, machineConfig=config)
        assert stale.code == 1
        assert f"upgrader: {name}: the change renders kube-apiserver ({CONFIG_VERSION}) anew: waiting for the new pods after it" in stale.lines
        # The old API server is still there, Ready on the same image: only its talos.dev/config-version tells.
        assert stale.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: timed out; last seen: kube-apiserver-{name} carries {CONFIG_VERSION} 1, not 2 "
            "(what Talos serves now): the kubelet has not run the new static pod yet; "
            f"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        assert [m for _, m in mutations(api)] == ["MachineService/ApplyConfiguration dry-run", "MachineService/ApplyConfiguration NO_REBOOT"]
        assert "--audit-log-maxage=31" not in api_server_flags(kube_talos, name)

        # A new kubelet reads the static pod URL at once: the next run finds the new API server and is done.
        api.restart_kubelet(name)
        done = run(api, kube_talos, [*args[:-1], "60s"], machineConfig=config)
        assert done.code == 0, done.stderr
        assert [line for line in done.lines if ": waiting: " not in line][-2:] == [
            f"upgrader: {name}: config unchanged and Talos as configured: checking health only",
            f"upgrader: {name}: healthy",
        ]
        assert config_versions(kube_talos, name) == {"kube-apiserver": "2", "kube-controller-manager": "1", "kube-scheduler": "1"}
        assert "--audit-log-maxage=31" in api_server_flags(kube_talos, name)


def test_the_wait_takes_the_config_version_from_before_the_change_not_the_one_read_after_it(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    # Talos renders the API server's config resource after ApplyConfiguration answers (here: not within the test). Read after
    # the apply, the version is still the old one, and the old pod carries it: only the version read before tells them apart.
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 200)) as api:
        first_pods(kube_talos, [name])
        api.script(name, renderDelayMs=3_600_000)
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        result = run(
            api, kube_talos, ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "5s"], machineConfig=config
        )
        assert result.code == 1
        ip = api.ip(name)
        assert result.last == (
            f"upgrader: FAILED: {name}: static-pods: timed out; last seen: Talos has not rendered kube-apiserver's new pod yet "
            f"(its {CONFIG_VERSION} is still 1); look with: talosctl -n {ip} get staticpods -o yaml; talosctl -n {ip} get staticpodstatus"
        )


def test_each_api_server_restarts_only_after_the_previous_one_runs_its_new_config(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    cps, _ = kubelet_nodes(3)
    nodes = [node(cp, ip, "controlplane", NEW) for cp, ip in zip(cps, addresses(3), strict=True)]
    with talos_api(kubelet_scenario(kube_talos, nodes, 2_000)) as api:
        first_pods(kube_talos, cps)
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        for cp in cps:  # the chain of apply steps, one control plane after the other
            result = run(
                api, kube_talos, ["apply", "--node", api.node_arg(cp), "--role", "controlplane", *STABLE, "--timeout", "60s"], machineConfig=config
            )
            assert result.code == 0, result.stderr
        # Each control plane's change, then its kubelet taking the new API server (version 2), before the next one changes.
        seen = []
        for call in api.calls():
            args = call.get("args") or {}
            if call["method"] == "MachineService/ApplyConfiguration" and args.get("mode") == "NO_REBOOT" and not args.get("dryRun"):
                seen.append((call["node"], "config applied"))
            elif call["method"] == "kubelet/StaticPods" and args["configVersions"].get("kube-apiserver") == "2":
                seen.append((call["node"], "new API server running"))
        assert seen == [(cp, what) for cp in cps for what in ("config applied", "new API server running")]


# Talos stamps three annotations on a control plane pod, and the kubelet's pod hash covers them all: talos.dev/config-version
# (its config resource), talos.dev/config-file-version (the API server's: its admission, audit and authorization configs and
# the scheduler's, strung together) and talos.dev/secrets-version (the Kubernetes secrets, on all three). A change that moves
# only the latter two restarts the API server all the same, its config-version unchanged.
# The scheduler's flag as monitoring sets it (plans/apiserver.py, talos_documents).
SCHEDULER_FLAG = json.dumps({"cluster": {"scheduler": {"extraArgs": {"bind-address": "0.0.0.0"}}}})  # noqa: S104
CERT_SAN = json.dumps({"cluster": {"apiServer": {"certSANs": ["api.arda.example"]}}})


@pytest.mark.parametrize(
    ("change", "renders", "stale", "after"),
    [
        (
            SCHEDULER_FLAG,
            "kube-apiserver (talos.dev/config-file-version), kube-scheduler (talos.dev/config-version)",
            "talos.dev/config-file-version 1111, not 1112",
            {**FIRST_RENDER, "kube-apiserver": {**FIRST_RENDER["kube-apiserver"], "talos.dev/config-file-version": "1112"},
             "kube-scheduler": {**FIRST_RENDER["kube-scheduler"], "talos.dev/config-version": "2"}},
        ),
        (
            CERT_SAN,
            "kube-apiserver (talos.dev/secrets-version), kube-controller-manager (talos.dev/secrets-version), kube-scheduler (talos.dev/secrets-version)",
            "talos.dev/secrets-version 1, not 2",
            {app: {**FIRST_RENDER[app], "talos.dev/secrets-version": "2"} for app in APPS},
        ),
    ],
    ids=["scheduler-flag", "cert-san"],
)  # fmt: skip
def test_a_change_that_restarts_the_api_server_under_another_annotation_waits_for_it(
    kube_talos: Cluster, kubelet_nodes: Any, change: str, renders: str, stale: str, after: dict[str, dict[str, str]]
) -> None:
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 3_600_000)) as api:
        first_pods(kube_talos, [name])
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[change])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "6s"]
        waited = run(api, kube_talos, args, machineConfig=config)
        assert waited.code == 1
        assert f"upgrader: {name}: the change renders {renders} anew: waiting for the new pods after it" in waited.lines
        # The API server's config-version did not move; another of its annotations did, and the old pod is still there.
        assert waited.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: timed out; last seen: kube-apiserver-{name} carries {stale} (what Talos serves now): "
            f"the kubelet has not run the new static pod yet; look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        assert config_versions(kube_talos, name) == dict.fromkeys(APPS, "1")

        api.restart_kubelet(name)
        done = run(api, kube_talos, [*args[:-1], "60s"], machineConfig=config)
        assert done.code == 0, done.stderr
        assert done.last == f"upgrader: {name}: healthy"
        pods = mirror_pods(kube_talos, name)
        assert {app: {k: v for k, v in p["metadata"]["annotations"].items() if k.startswith("talos.dev/")} for app, p in pods.items()} == after


CRASH_LOOP = re.compile(
    r"upgrader: FAILED: (?P<node>\S+): control-plane-pods: timed out; last seen: kube-apiserver-(?P=node) "
    r"(is not Ready \(CrashLoopBackOff, restarted (once|\d+ times)\)"
    r"|has run \d+(\.\d)?m?s since it last started \(restarted (once|\d+ times)\): it counts once it has run 2s untouched); "
    r"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=(?P=node)"
    # Or, when the step's bound ends while it asks the node's own API server (between two of its crashes) rather than
    # its pods: the same API server, seen from its /readyz. Which wait the bound ends in depends on the machine's load.
    r"|upgrader: FAILED: (?P<at>\S+): api-server: timed out; last seen: kube-apiserver on (?P=at) \((?P<ip>[\d.]+):6443\): /readyz: "
    r"the server is currently unable to handle the request; look with: kubectl --server https://(?P=ip):6443 get --raw '/readyz\?verbose'"
)


def test_an_api_server_that_crash_loops_never_counts_though_it_shows_ready_each_time_it_starts(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """Talos gives kube-apiserver no readiness probe, so the kubelet counts it Ready as soon as it runs: one that crash-loops
    shows Ready at each start. The step counts a container only once it has run --pods-stable since it last started, and the
    node's own API server only once its /readyz says ready; before, a Ready window passed."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 200)) as api:
        first_pods(kube_talos, [name])
        api.script(name, crashLoop=["kube-apiserver"])  # the new API server (its new flag) crash-loops
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", "--pods-stable", "2s", "--timeout", "10s"]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 1
        assert CRASH_LOOP.fullmatch(result.last), result.last
        assert f"upgrader: {name}: healthy" not in result.lines
        status = mirror_pods(kube_talos, name)["kube-apiserver"]["status"]
        assert status["containerStatuses"][0]["restartCount"] >= 3


def test_an_api_server_that_runs_but_is_not_ready_stops_the_step(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """Its pod Running and Ready (no probe), its own /readyz failing (etcd, here): the step asks the node's API server itself."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 200)) as api:
        first_pods(kube_talos, [name])
        api.script(name, apiServerNotReady=True)
        ip = api.ip(name)
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "5s"]
        result = run(api, kube_talos, args, machineConfig=api.node_config(name))
        assert result.code == 1
        body = "[+]ping ok\\n[+]log ok\\n[-]etcd failed: reason withheld\\n[+]poststarthook/start-apiserver-admission-initializer ok\\nreadyz check failed"
        assert result.last == (
            f"upgrader: FAILED: {name}: api-server: timed out; last seen: kube-apiserver on {name} ({ip}:6443): /readyz: an error on the server "
            f"(\"{body}\") has prevented the request from succeeding; look with: kubectl --server https://{ip}:6443 get --raw '/readyz?verbose'"
        )
        api.script(name, apiServerNotReady=False)
        ready = run(api, kube_talos, [*args[:-1], "30s"], machineConfig=api.node_config(name))
        assert ready.code == 0, ready.stderr


def test_a_reboot_while_the_new_pods_are_awaited_drops_the_versions_read_before_it(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """Talos keeps its resources in memory: after a boot every version starts at 1 again, so the API server's config-version
    read before the change (1) is what the new boot's pod carries. The step drops what it read before when the boot changes;
    before, it waited for a version to move that never would."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 3_600_000)) as api:
        first_pods(kube_talos, [name])
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        boots: list[str] = []

        def power_cut(line: str) -> bool:
            # The new pod rendered, the kubelet not polling yet: the machine loses power and boots again.
            if not boots and ": waiting: control-plane-pods: " in line and "the kubelet has not run the new static pod yet" in line:
                boots.append(api.state()[name]["bootId"])
                api.crash(name, down_ms=1500)
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, power_cut)
        assert result.code == 0, result.stderr
        boot = api.state()[name]["bootId"]
        assert boots and boots[0] != boot
        assert (
            f"upgrader: {name}: booted anew (boot {boot}) while its pods were awaited: Talos renders every pod anew at a boot, "
            "so the pods it serves now are the ones"
        ) in result.lines
        assert result.last == f"upgrader: {name}: healthy"
        assert config_versions(kube_talos, name) == dict.fromkeys(APPS, "1")
        assert "--audit-log-maxage=31" in api_server_flags(kube_talos, name)


def test_after_a_reboot_a_mirror_pod_left_from_the_boot_before_does_not_count(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """A reboot that changes no pod: Talos renders the same pods (every version 1 again), the kubelet keeps their mirror pods
    (the same hash), and until it reports their containers started in the new boot those still say Ready, as the boot before
    left them. The step waits for containers started after the boot; before, the stale Ready passed."""
    [name], _ = kubelet_nodes(1)
    spec = kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW, applyNeedsReboot=True, reboot={"downMs": 1500})], 1_000)
    spec["cluster"]["kubelet"]["podStartMs"] = 4_000  # the containers start 4 s into the boot
    with talos_api(spec) as api:
        first_pods(kube_talos, [name])
        uids = {app: p["metadata"]["uid"] for app, p in mirror_pods(kube_talos, name).items()}
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
        stale = [s for s in steps if s.startswith("waiting: control-plane-pods: ") and "before the node's boot" in s]
        assert len(stale) == 1 and stale[0].startswith(f"waiting: control-plane-pods: kube-apiserver-{name} reports a container started "), steps
        assert steps[-1] == "healthy"
        pods = mirror_pods(kube_talos, name)
        assert {app: p["metadata"]["uid"] for app, p in pods.items()} == uids  # the same mirror pods, their status new
        assert all(
            p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] > stale[0].split("started ")[1].split(",")[0] for p in pods.values()
        )


# A Kubernetes version bump: `kubernetes-upgrade` rolls it as `talosctl upgrade-k8s` does, component by component, before the
# per-node apply steps run with the new configs.
TO = "v1.36.0"  # the next minor after what the control plane runs


def _kubernetes_upgrade(api: TalosAPI, cps: list[str], workers: list[str], timeout: str = "120s") -> list[str]:
    args = ["kubernetes-upgrade", "--to", TO, *(a for cp in cps for a in ("--control-plane", api.node_arg(cp)))]
    args += [*(a for w in workers for a in ("--worker", api.node_arg(w))), *STABLE, "--timeout", timeout]
    return args


def _events(api: TalosAPI) -> list[tuple[str, str]]:
    """Each config change applied without a reboot, and each static pod a kubelet took anew (any of its talos.dev/*
    annotations moved: a new pod, a restart), in order."""
    seen: list[tuple[str, str]] = []
    taken: dict[str, dict[str, Any]] = {}
    for call in api.calls():
        args = call.get("args") or {}
        if call["method"] == "MachineService/ApplyConfiguration" and args.get("mode") == "NO_REBOOT" and not args.get("dryRun"):
            seen.append((call["node"], "config applied"))
        elif call["method"] == "kubelet/StaticPods":
            before = taken.setdefault(call["node"], args["annotations"])
            seen += [(call["node"], f"new {app} running") for app in APPS if args["annotations"][app] != before[app]]
            taken[call["node"]] = args["annotations"]
    return seen


def _upgrade_spec(cluster: Cluster, cps: list[str], workers: list[str], maintenance: tuple[str, ...] = ()) -> dict[str, Any]:
    """`maintenance`: workers found in maintenance mode (reset or reflashed since the last deployment)."""
    ips = addresses(len(cps) + len(workers))
    nodes = [node(cp, ip, "controlplane", NEW) for cp, ip in zip(cps, ips, strict=False)]
    nodes += [node(w, ip, "worker", NEW, maintenance=w in maintenance) for w, ip in zip(workers, ips[len(cps) :], strict=True)]
    return kubelet_scenario(cluster, nodes, 1_000)


def _new_configs(api: TalosAPI, cps: list[str], workers: list[str], worker_patches: tuple[str, ...] = ()) -> dict[str, str]:
    """Each node's config at the new Kubernetes version, as the program's next run hands them out."""
    cp_config = api.config("controlplane", installer(VANILLA, NEW), kubernetes_version=TO)
    worker_config = api.config("worker", installer(VANILLA, NEW), kubernetes_version=TO, patches=worker_patches)
    return {**dict.fromkeys(cps, cp_config), **dict.fromkeys(workers, worker_config)}


def test_a_kubernetes_upgrade_goes_component_by_component_then_the_node_steps_find_it_done(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    cps, workers = kubelet_nodes(2, 1)
    with talos_api(_upgrade_spec(kube_talos, cps, workers)) as api:
        first_pods(kube_talos, cps)
        configs = _new_configs(api, cps, workers)
        result = run(api, kube_talos, _kubernetes_upgrade(api, cps, workers), machineConfigs=configs)
        assert result.code == 0, result.stderr
        patched = [
            line.removeprefix("upgrader: ").removesuffix(": config patched and applied without a reboot")
            for line in result.lines
            if line.endswith(": config patched and applied without a reboot")
        ]
        assert patched == [
            *(f"{cp}: {app} {KUBELET} -> {TO}" for app in APPS for cp in cps),
            *(f"{cp}: kube-proxy {KUBELET} -> {TO} (config only: Iluvatar runs no kube-proxy)" for cp in cps),
            *(f"{n}: kubelet {KUBELET} -> {TO}" for n in [*cps, *workers]),
        ]
        # Each API server (then controller-manager, then scheduler) runs its new pod before the next control plane changes. The
        # scheduler's new config is one of the API server's config files (talos.dev/config-file-version): its change restarts
        # that node's API server too, and both run before the next control plane changes.
        restarted = {
            "kube-apiserver": ["kube-apiserver"],
            "kube-controller-manager": ["kube-controller-manager"],
            "kube-scheduler": ["kube-apiserver", "kube-scheduler"],
        }
        assert _events(api) == [
            *((cp, what) for app in APPS for cp in cps for what in ("config applied", *(f"new {r} running" for r in restarted[app]))),
            *((n, "config applied") for n in [*cps, *cps, *workers]),
        ]
        assert (
            result.last
            == f"upgrader: {TO}: Kubernetes {TO} on {', '.join([*cps, *workers])}: API servers, controller-managers, schedulers, then kubelets"
        )
        for cp in cps:
            assert {app: p["spec"]["containers"][0]["image"] for app, p in mirror_pods(kube_talos, cp).items()} == {
                app: f"registry.k8s.io/{app}:{TO}" for app in APPS
            }
        for name in [*cps, *workers]:
            found = kube_talos.client.get("v1", "Node", name)
            assert found is not None
            assert found["status"]["nodeInfo"]["kubeletVersion"] == TO

        # The per-node step with the whole new config finds the Kubernetes part done: nothing is left to change.
        before = len(mutations(api))
        for name in [*cps, *workers]:
            role = "controlplane" if name in cps else "worker"
            step = run(
                api, kube_talos, ["apply", "--node", api.node_arg(name), "--role", role, *STABLE, "--timeout", "60s"], machineConfig=configs[name]
            )
            assert step.code == 0, step.stderr
            assert [line for line in step.lines if ": waiting: " not in line][-2:] == [
                f"upgrader: {name}: config unchanged and Talos as configured: checking health only",
                f"upgrader: {name}: healthy",
            ]
        # And a second run of the upgrade (the next `pulumi up`, had this one died at its end) checks and changes nothing.
        again = run(api, kube_talos, _kubernetes_upgrade(api, cps, workers), machineConfigs=configs)
        assert again.code == 0, again.stderr
        assert len(mutations(api)) == before
        assert [line for line in again.lines if "already" in line] == [
            *(f"upgrader: {cp}: {app}: already {TO} (checking its pod)" for app in APPS for cp in cps),
            *(f"upgrader: {n}: kubelet: already {TO} (checking its Node)" for n in [*cps, *workers]),
        ]
        # A path's earlier step run again after the cluster moved past it (Pulumi re-runs a finished step whose stdin
        # changed): nothing goes backwards, every component past it counts as done (review H2 of issue #42). Before, every
        # component was patched back to v1.35.8.
        earlier = "v1.35.8"
        at_earlier = {name: config.replace(TO, earlier) for name, config in configs.items()}
        args = _kubernetes_upgrade(api, cps, workers)
        back = run(api, kube_talos, [*args[:2], earlier, *args[3:]], machineConfigs=at_earlier)
        assert back.code == 0, back.stderr
        assert len(mutations(api)) == before
        assert [line for line in back.lines if "past" in line] == [
            *(
                f"upgrader: {cp}: {app}: already {TO}, past {earlier}: left alone (a step on the way run again, never backwards)"
                for app in APPS
                for cp in cps
            ),
            *(
                line
                for n in [*cps, *workers]
                for line in (
                    f"upgrader: {n}: kubelet: already {TO}, past {earlier}: left alone (a step on the way run again, never backwards)",
                    f"upgrader: {n}: kubelet {TO} (past {earlier}) running, Node Ready",
                )
            ),
        ]


def test_a_kubernetes_upgrade_killed_halfway_is_finished_by_the_next_run(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    cps, workers = kubelet_nodes(2, 1)
    reflashed = unique("istari")  # found in maintenance mode: its own apply installs the new config
    workers.append(reflashed)
    with talos_api(_upgrade_spec(kube_talos, cps, workers, maintenance=(reflashed,))) as api:
        first_pods(kube_talos, cps)
        configs = _new_configs(api, cps, workers)
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfigs": configs}
        # Killed (a power cut, Ctrl-C twice) right after the first API server's config went in, before its pod is checked.
        process = subprocess.Popen(
            [str(binary()), *_kubernetes_upgrade(api, cps, workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(stdin))
        process.stdin.close()
        kube_talos.wait_for("the first API server's change", lambda: ("config applied" in [w for _, w in _events(api)]) or process.poll() is not None)
        process.kill()
        process.wait(timeout=10)
        assert _events(api)[0] == (cps[0], "config applied")

        finished = run(api, kube_talos, _kubernetes_upgrade(api, cps, workers), machineConfigs=configs)
        assert finished.code == 0, finished.stderr
        assert f"upgrader: {cps[0]}: kube-apiserver: already {TO} (checking its pod)" in finished.lines
        assert f"upgrader: {reflashed}: in maintenance mode: skipped (its own apply installs the new config, images and all)" in finished.lines
        # Every change went in once, over both runs: five on each control plane, the kubelet on the running worker.
        assert len([m for m in mutations(api) if m[1] == "MachineService/ApplyConfiguration NO_REBOOT"]) == 5 * len(cps) + 1
        assert not api.calls(reflashed) or {c["method"] for c in api.calls(reflashed)} <= {"MachineService/Version"}
        for name in [*cps, *workers[:-1]]:
            found = kube_talos.client.get("v1", "Node", name)
            assert found is not None
            assert found["status"]["nodeInfo"]["kubeletVersion"] == TO


def test_a_kubernetes_upgrade_waits_for_the_api_server_the_schedulers_change_restarts(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """The scheduler's config is one of the API server's config files: the scheduler's new image restarts that node's API
    server too (talos.dev/config-file-version). The step checks every control plane pod on the node after each change; before,
    it checked the scheduler alone and went on while the API server it had restarted crash-looped."""
    cps, _ = kubelet_nodes(1)
    with talos_api(_upgrade_spec(kube_talos, cps, [])) as api:
        first_pods(kube_talos, cps)
        # An earlier run went as far as the controller-managers: the API server and the controller-manager run the target.
        at_135 = json.dumps({"cluster": {"scheduler": {"image": f"registry.k8s.io/kube-scheduler:{KUBELET}"}}})
        halfway = api.config("controlplane", installer(VANILLA, NEW), kubernetes_version=TO, patches=[at_135])
        step = run(
            api, kube_talos, ["apply", "--node", api.node_arg(cps[0]), "--role", "controlplane", *STABLE, "--timeout", "60s"], machineConfig=halfway
        )
        assert step.code == 0, step.stderr
        api.script(cps[0], crashLoop=["kube-apiserver"])  # the API server crash-loops from its next start on
        configs = _new_configs(api, cps, [])
        result = run(api, kube_talos, _kubernetes_upgrade(api, cps, [], timeout="15s"), machineConfigs=configs)
        assert result.code == 1
        assert [line.removeprefix(f"upgrader: {cps[0]}: ") for line in result.lines if "already" in line or "config patched" in line] == [
            f"kube-apiserver: already {TO} (checking its pod)",
            f"kube-controller-manager: already {TO} (checking its pod)",
            f"kube-scheduler {KUBELET} -> {TO}: config patched and applied without a reboot",
        ]
        assert (
            f"upgrader: {cps[0]}: the change renders kube-apiserver (talos.dev/config-file-version), kube-scheduler (talos.dev/config-version) anew: "
            "waiting for the new pods after it"
        ) in result.lines
        assert re.fullmatch(CRASH_LOOP.pattern.replace("2s untouched", "1s untouched"), result.last), result.last
        # No kubelet moved: the API server the change restarted never ran.
        assert [m for m in mutations(api) if m[1] == "MachineService/ApplyConfiguration NO_REBOOT"] == [
            (cps[0], "MachineService/ApplyConfiguration NO_REBOOT")
        ] * 2


def test_a_kubernetes_upgrade_leaves_a_worker_that_does_not_answer_and_stops_at_a_control_plane_that_does_not(
    kube_talos: Cluster, kubelet_nodes: Any
) -> None:
    """Each node gets --reach-timeout to answer, saying it waits. A worker that does not is left to its own apply (its kubelet
    may stay up to three minors behind the API servers); a control plane that does not stops the step before anything changes.
    Before, the step waited for the first node that did not answer until its whole bound, and said nothing."""
    cps, workers = kubelet_nodes(1, 1)
    ips = addresses(2)
    down = node(workers[0], ips[1], "worker", NEW, bootDelayMs=3_600_000)  # off, or on its way back
    with talos_api(kubelet_scenario(kube_talos, [node(cps[0], ips[0], "controlplane", NEW), down], 1_000)) as api:
        first_pods(kube_talos, cps)
        configs = _new_configs(api, cps, workers)
        args = [*_kubernetes_upgrade(api, cps, workers, timeout="120s")[:-2], "--reach-timeout", "2s", "--timeout", "120s"]
        # Its Node says its kubelet runs 1.32: more than three minors behind 1.36 once the API servers move.
        kube_talos.client.merge_patch(kwok_node(workers[0]), {"status": {"nodeInfo": {"kubeletVersion": "v1.32.0"}}}, subresource="status")
        refused = run(api, kube_talos, args, machineConfigs=configs)
        assert refused.code == 1
        assert refused.last == (
            f"upgrader: FAILED: {workers[0]}: reach: does not answer, and its kubelet runs v1.32.0: with the API servers at {TO} it would be more "
            "than 3 minors behind, which Kubernetes does not support; bring it back (or take it out of the inventory), then run again; nothing "
            f"was changed; look with: kubectl get node {workers[0]} -o wide; kubectl describe node {workers[0]}"
        )
        assert mutations(api) == []

        kube_talos.client.merge_patch(kwok_node(workers[0]), {"status": {"nodeInfo": {"kubeletVersion": KUBELET}}}, subresource="status")
        result = run(api, kube_talos, args, machineConfigs=configs)
        assert result.code == 0, result.stderr
        assert [line for line in result.lines if line.startswith(f"upgrader: {workers[0]}: ")] == [
            f"upgrader: {workers[0]}: does not answer at {api.ip(workers[0])}: waiting up to 2s for it",
            f"upgrader: {workers[0]}: WARNING: does not answer within 2s: skipped; its kubelet stays at its version until its own apply installs the new config",
            f"upgrader: {workers[0]}: its kubelet runs {KUBELET}: within 3 minors of {TO}, so the upgrade goes on without it",
        ]
        assert result.last == f"upgrader: {TO}: Kubernetes {TO} on {cps[0]}: API servers, controller-managers, schedulers, then kubelets"

    cps, workers = kubelet_nodes(2, 0)
    ips = addresses(2)
    with talos_api(
        kubelet_scenario(
            kube_talos, [node(cps[0], ips[0], "controlplane", NEW), node(cps[1], ips[1], "controlplane", NEW, bootDelayMs=3_600_000)], 1_000
        )
    ) as api:
        # (With one of its two etcd members down, etcd has no quorum: Talos renders no pod, there is nothing to wait for.)
        args = [*_kubernetes_upgrade(api, cps, [], timeout="120s")[:-2], "--reach-timeout", "2s", "--timeout", "120s"]
        stopped = run(api, kube_talos, args, machineConfigs=_new_configs(api, cps, []))
        assert stopped.code == 1
        assert stopped.last.startswith(
            f"upgrader: FAILED: {cps[1]}: reach: a control plane that does not answer within 2s: every API server must go to {TO} before any "
            "kubelet does, so nothing was changed (timed out; last seen: the node does not answer: "
        ), stopped.last
        assert stopped.seconds < 60
        assert mutations(api) == []


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"extraArgs": {"feature-gates": "HonorPVReclaimPolicy=true"}}, "machine.kubelet.extraArgs"),
        ({"extraConfig": {"featureGates": {"HonorPVReclaimPolicy": True}}}, "machine.kubelet.extraConfig.featureGates"),
    ],
    ids=["extra-args", "extra-config"],
)
def test_a_kubernetes_upgrade_refuses_a_kubelet_feature_gate_the_target_removed(
    kube_talos: Cluster, kubelet_nodes: Any, patch: dict[str, Any], path: str
) -> None:
    """Kubernetes 1.36 removed HonorPVReclaimPolicy (GA in 1.33, locked on): every component registers every Kubernetes gate,
    and a kubelet given a gate it does not know refuses to start (cmd/kubelet/app/server.go:203). talosctl checks only the
    kubelet's flags; before, so did the step."""
    cps, workers = kubelet_nodes(1, 1)
    with talos_api(_upgrade_spec(kube_talos, cps, workers)) as api:
        first_pods(kube_talos, cps)
        configs = _new_configs(api, cps, workers, worker_patches=(json.dumps({"machine": {"kubelet": patch}}),))
        refused = run(api, kube_talos, _kubernetes_upgrade(api, cps, workers), machineConfigs=configs)
        assert refused.code == 1
        w = workers[0]
        assert refused.last == (
            f"upgrader: FAILED: {w}: removed-flag: the new config's {path} sets feature gate HonorPVReclaimPolicy (removed in 1.36): kubelet would "
            f"not start at {TO}; remove it where the stack sets it (iluvatar:arda.patches or the node's talosPatches); nothing was changed; "
            f"look with: talosctl -n {api.ip(w)} get machineconfig -o yaml"
        )
        assert mutations(api) == []


def test_setting_kubernetes_back_below_what_a_node_runs_is_refused_by_its_apply(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """A Kubernetes upgrade that failed halfway leaves the last deployment's output at the old version, so the program's own
    check lets arda.kubernetesVersion go back to it; the node's apply compares with what the node runs and refuses. Before, it
    put the old images over the new ones."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 1_000)) as api:
        first_pods(kube_talos, [name])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        upgraded = run(api, kube_talos, args, machineConfig=api.config("controlplane", installer(VANILLA, NEW), kubernetes_version=TO))
        assert upgraded.code == 0, upgraded.stderr
        before = mutations(api)
        back = run(api, kube_talos, args, machineConfig=api.config("controlplane", installer(VANILLA, NEW)))
        assert back.code == 1
        assert back.last == (
            f"upgrader: FAILED: {name}: kubernetes-version: the config names kube-apiserver {KUBELET}, but the node runs {TO} (a Kubernetes upgrade "
            f"went this far): Kubernetes does not go back a minor; set iluvatar:arda.kubernetesVersion to {TO} and run pulumi up to finish the "
            f"upgrade; nothing was changed; look with: talosctl -n {api.ip(name)} get machineconfig -o yaml"
        )
        assert mutations(api) == before


def test_a_pull_whose_call_breaks_is_asked_again(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """The connection to the node drops during a pull (apid restarts, the network): the pull is asked again, up to three times.
    A registry's own failures Talos retries itself, inside the call. Before, one broken call failed the step."""
    cps, _ = kubelet_nodes(1)
    with talos_api(_upgrade_spec(kube_talos, cps, [])) as api:
        first_pods(kube_talos, cps)
        api.script(cps[0], pullBreaks=1)
        result = run(api, kube_talos, _kubernetes_upgrade(api, cps, []), machineConfigs=_new_configs(api, cps, []))
        assert result.code == 0, result.stderr
        image = f"registry.k8s.io/kube-apiserver:{TO}"
        assert [line for line in result.lines if line.startswith(f"upgrader: {image}: ")] == [
            f'upgrader: {image}: the pull\'s call to the node broke (Unavailable: connection error: desc = "transport is closing"): asking again (2 of 3)'
        ]
        assert [c["method"] for c in api.calls(cps[0]) if c["method"] in {"ImageService/Pull", "MachineService/ImagePull"}][:2] == [
            "ImageService/Pull"
        ] * 2
        api.script(cps[0], pullBreaks=3)
        at_1361 = {cp: config.replace(TO, "v1.36.1") for cp, config in _new_configs(api, cps, []).items()}
        broken = run(
            api, kube_talos, [*_kubernetes_upgrade(api, cps, [])[:2], "v1.36.1", *_kubernetes_upgrade(api, cps, [])[3:]], machineConfigs=at_1361
        )
        assert broken.code == 1
        assert broken.last == (
            f'upgrader: FAILED: {cps[0]}: pull: registry.k8s.io/kube-apiserver:v1.36.1: Unavailable: connection error: desc = "transport is closing" (asked 3 times: '
            f"the call to the node broke each time); look with: talosctl -n {api.ip(cps[0])} image pull registry.k8s.io/kube-apiserver:v1.36.1"
        )


def test_a_kubernetes_upgrade_refuses_a_removed_setting_the_running_config_has_before_anything_changes(
    kube_talos: Cluster, kubelet_nodes: Any
) -> None:
    """Set at the running version, and dropped by the new config: the step changes images only, so the kubelet would start at
    the target with the running config's setting; the change must be rolled out first. Kubernetes 1.36 removes no kubelet
    flag (upgrader/internal/kubeupgrade/removed.go, removedIn[36]), so the setting is the gate it removed, in the kubelet's
    --feature-gates (the same finding a removed flag is; a removed flag alone: upgrader/internal/kubeupgrade/kubeupgrade_test.go)."""
    cps, workers = kubelet_nodes(2, 1)
    gate = json.dumps({"machine": {"kubelet": {"extraArgs": {"feature-gates": "HonorPVReclaimPolicy=true"}}}})
    with talos_api(_upgrade_spec(kube_talos, cps, workers)) as api:
        first_pods(kube_talos, cps)
        w, look = workers[0], f"look with: talosctl -n {api.ip(workers[0])} get machineconfig -o yaml"
        at_135 = api.config("worker", installer(VANILLA, NEW), patches=[gate])
        step = run(api, kube_talos, ["apply", "--node", api.node_arg(w), "--role", "worker", "--timeout", "60s"], machineConfig=at_135)
        assert step.code == 0, step.stderr
        configs = _new_configs(api, cps, workers)
        refused = run(api, kube_talos, _kubernetes_upgrade(api, cps, workers), machineConfigs=configs)
        assert refused.code == 1
        assert refused.last == (
            f"upgrader: FAILED: {w}: removed-flag: its running config's machine.kubelet.extraArgs sets feature gate HonorPVReclaimPolicy (removed in "
            f"1.36); the new config drops it, but this step changes only images, so kubelet would start with it at {TO}: roll the change out at the "
            f"running version first (arda.kubernetesVersion {KUBELET} for one pulumi up), then upgrade; nothing was changed; {look}"
        )
        assert [m for m in mutations(api) if m[1] != "MachineService/ApplyConfiguration dry-run"] == [
            (w, "MachineService/ApplyConfiguration NO_REBOOT")
        ]


def test_the_health_gate_waits_for_etcd_the_control_plane_the_api_and_every_node(kube_talos: Cluster, static_pods: Any) -> None:
    cp, worker = unique("valinor"), unique("istari")
    kube_talos.create_nodes([kwok_node(cp, control_plane=True)])
    ips = addresses(2)
    # The control plane hands out the cluster's admin kubeconfig, as `talosctl kubeconfig` fetches it.
    spec = scenario(
        [node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW)], endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca
    )
    with talos_api(spec) as api:
        static_pods(cp, control_plane_images(api.node_config(cp)))
        base = ["health", "--control-plane", api.node_arg(cp), "--worker", api.node_arg(worker), "--endpoint", kube_talos.server, "--timeout"]
        api_stage = upgrader([*base, "30s", "--stage", "api"], {"talosconfig": api.talosconfig_text()})
        assert api_stage.code == 0, api_stage.stderr
        assert [c["method"] for c in api.calls(cp) if c["method"] == "MachineService/Kubeconfig"] == ["MachineService/Kubeconfig"]
        # The worker has not joined Kubernetes: the nodes stage names it.
        nodes_stage = run(api, kube_talos, [*base, "3s", "--stage", "nodes"])
        assert nodes_stage.code == 1
        assert nodes_stage.last == (
            f'upgrader: FAILED: {worker}: node-ready: timed out; last seen: nodes "{worker}" not found; look with: kubectl get node {worker} -o wide; kubectl describe node {worker}'
        )
        kube_talos.create_nodes([kwok_node(worker)])
        joined = run(api, kube_talos, [*base, "30s", "--stage", "nodes"])
        assert joined.code == 0, joined.stderr
        assert (
            joined.last == f"upgrader: {kube_talos.server.removeprefix('https://')}: healthy: etcd (1 members), control plane, API, every Node Ready"
        )


def _kube(cluster: Cluster, args: list[str], **stdin: Any) -> Result:
    return upgrader(args, {"kubeconfig": cluster.kubeconfig.read_text(), **stdin})


def test_wait_kube_api_and_nodes(kube_talos: Cluster) -> None:
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    server = kube_talos.server.removeprefix("https://")
    assert _kube(kube_talos, ["wait-kube", "--api", "--timeout", "30s"]).last == f"upgrader: {server}: API ready"
    ready = _kube(kube_talos, ["wait-kube", "--nodes", name, "--timeout", "30s"])
    assert (ready.code, ready.last) == (0, f"upgrader: {server}: Nodes Ready: {name}")
    missing = unique("istari")
    absent = _kube(kube_talos, ["wait-kube", "--nodes", f"{name},{missing}", "--timeout", "2s"])
    assert absent.code == 1
    assert absent.last.startswith(f'upgrader: FAILED: {missing}: node-ready: timed out; last seen: nodes "{missing}" not found;')


def test_wait_kube_admits_waits_for_the_crd_and_counts_an_existing_object(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    group = f"t{os.getpid() % 10000}{next(_ids)}.iluvatar.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}
                    },
                }
            ],
        },
    }
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}}
    existing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "there", "namespace": ns}}
    kube_talos.client.create(existing)

    later = threading.Timer(2.0, lambda: kube_talos.client.create(crd))
    later.start()
    try:
        result = _kube(kube_talos, ["wait-kube", "--admits", "--timeout", "60s"], manifests=[existing, yaml.safe_dump(widget)])
        later.join()
        assert result.code == 0, result.stderr
        server = kube_talos.server.removeprefix("https://")
        # The ConfigMap (already there) counts at once; the Widget waits for its CRD; a dry run creates nothing.
        assert result.lines == [
            f"upgrader: {server}: admits ConfigMap there",
            f"upgrader: {server}: waiting: Widget w: the API does not serve {group}/v1, Kind=Widget yet",
            f"upgrader: {server}: admits Widget w",
        ]
        assert kube_talos.client.get(f"{group}/v1", "Widget", "w", ns) is None
    finally:
        later.join()
        kube_talos.client.delete(crd)


def test_wait_kube_admits_refuses_an_invalid_manifest_at_once(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name", "namespace": ns}}
    result = _kube(kube_talos, ["wait-kube", "--admits", "--timeout", "60s"], manifests=[bad])
    assert result.code == 1
    assert result.last.startswith(f"upgrader: FAILED: {kube_talos.server.removeprefix('https://')}: admits: ConfigMap Not_A_Name is invalid: ")
    assert result.seconds < 15


def test_wait_kube_storage_class_needs_its_csi_driver_on_a_node(kube_talos: Cluster) -> None:
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    driver = f"{name}.csi.iluvatar.test"
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name}, "provisioner": driver}
    kube_talos.client.create(sc)
    kube_talos.client.create({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": driver}, "spec": {}})
    args = ["wait-kube", "--storage-class", name, "--timeout", "3s"]
    unregistered = _kube(kube_talos, args)
    assert unregistered.code == 1
    assert f"no CSINode lists driver {driver} yet (its node plugin is not running)" in unregistered.last

    csinode = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {"name": name},
        "spec": {"drivers": [{"name": driver, "nodeID": name}]},
    }
    existing = kube_talos.client.get("storage.k8s.io/v1", "CSINode", name)
    if existing is None:
        kube_talos.client.create(csinode)
    else:
        kube_talos.client.merge_patch(existing, {"spec": csinode["spec"]})
    usable = _kube(kube_talos, [*args[:-1], "30s"])
    assert (usable.code, usable.last) == (0, f"upgrader: {kube_talos.server.removeprefix('https://')}: StorageClass {name} usable")


APISERVER = f"registry.k8s.io/kube-apiserver:{KUBELET}"


@pytest.mark.parametrize(
    ("to", "detail"),
    [
        ("v1.37.0", "runs v1.35.1; v1.37.0 skips a minor version: upgrade to v1.36 first"),
        (
            "v1.35.0",
            "runs v1.35.1; v1.35.0 would be a downgrade, which Kubernetes does not support: set iluvatar:arda.kubernetesVersion to v1.35.1 "
            "(what runs; a failed upgrade leaves it running) and run pulumi up again",
        ),
        ("v2.0.0", "runs v1.35.1; v2.0.0 is another major version"),
    ],
    ids=["skips-a-minor", "downgrade", "major"],
)
def test_kubernetes_preflight_refuses_version_skew(kube_talos: Cluster, static_pods: Any, to: str, detail: str) -> None:
    # Talos runs the API server as a static pod: its image tag is the version it runs.
    cp = unique("valinor")
    kube_talos.create_nodes([kwok_node(cp, control_plane=True)])
    static_pods(cp, {"kube-apiserver": APISERVER})
    result = _kube(kube_talos, ["kubernetes-preflight", "--to", to, "--timeout", "30s"])
    assert result.code == 1
    assert result.last == f"upgrader: FAILED: {cp}: version-skew: {detail}; look with: kubectl version"


def test_kubernetes_preflight_on_the_way_past_it_is_done_not_a_downgrade(kube_talos: Cluster, static_pods: Any) -> None:
    # A path's step on the way run again after the cluster moved past it (its stdin changed, the talosconfig renewed):
    # before, refused as a downgrade on every later run, with advice the stack already followed (review H2 of issue #42).
    cp = unique("valinor")
    kube_talos.create_nodes([kwok_node(cp, control_plane=True)])
    static_pods(cp, {"kube-apiserver": APISERVER})
    done = _kube(kube_talos, ["kubernetes-preflight", "--to", "v1.34.12", "--on-the-way", "--timeout", "30s"])
    assert done.code == 0, done.stderr
    assert done.last.endswith(", past v1.34.12: a step on the way the cluster already took, nothing to check")
    # Not on the way (the stack's own version): still the downgrade it is.
    refused = _kube(kube_talos, ["kubernetes-preflight", "--to", "v1.34.12", "--timeout", "30s"])
    assert refused.code == 1 and "v1.34.12 would be a downgrade" in refused.last


def test_kubernetes_preflight_reads_the_deprecated_api_metric(kube_fresh: Callable[..., Cluster]) -> None:
    # networking.k8s.io/v1beta1 (IPAddress, ServiceCIDR) is deprecated in 1.34 and removed in 1.37:
    # served when asked for, and counted in apiserver_requested_deprecated_apis once requested.
    flavor = dataclasses.replace(TALOS, apiserver_args=(*TALOS.apiserver_args, "--runtime-config=networking.k8s.io/v1beta1=true"))
    cluster = kube_fresh(flavor)
    cp = unique("valinor")
    cluster.create_nodes([kwok_node(cp, control_plane=True)])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"kube-apiserver-{cp}", "namespace": "kube-system", "labels": {"k8s-app": "kube-apiserver"}},
        "spec": {"nodeName": cp, "containers": [{"name": "kube-apiserver", "image": APISERVER}]},
    }
    cluster.client.create(pod)
    server = cluster.server.removeprefix("https://")
    ready = f"upgrader: {server}: ready for {TO}: API servers run {KUBELET} ({cp}); no API removed by it is requested"
    later = f"upgrader: {server}: still requested, deprecated, removed after {TO}: "

    def deprecated(result: Result) -> list[str]:
        return [api for line in result.lines if line.startswith(later) for api in line.removeprefix(later).split(", ")]

    clean = _kube(cluster, ["kubernetes-preflight", "--to", TO, "--timeout", "30s"])
    assert clean.code == 0, clean.stderr
    assert clean.last == ready
    # The control plane's own clients already ask for v1 Endpoints, deprecated in 1.33 with no removal planned.
    assert "networking.k8s.io/v1beta1 ipaddresses (removed in 1.37)" not in deprecated(clean)

    status, _ = cluster.client.request("GET", "/apis/networking.k8s.io/v1beta1/ipaddresses")
    assert status == 200
    requested = _kube(cluster, ["kubernetes-preflight", "--to", TO, "--timeout", "30s"])
    assert requested.code == 0, requested.stderr
    assert requested.last == ready
    assert "networking.k8s.io/v1beta1 ipaddresses (removed in 1.37)" in deprecated(requested)
    assert set(deprecated(requested)) <= {"networking.k8s.io/v1beta1 ipaddresses (removed in 1.37)", "v1 endpoints (no removal release named)"}


def test_a_control_plane_upgrade_drains_checks_the_version_and_its_pods_then_uncordons(
    kube_talos: Cluster, kubelet_nodes: Any, tmp_path: Any
) -> None:
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW, upgrade={"downMs": 1500})], 1_000)) as api:
        first_pods(kube_talos, [name])
        config = api.config("controlplane", installer(VANILLA, "v1.13.1"))
        snapshot = tmp_path / "etcd.snapshot"
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "120s", "--etcd-snapshot", str(snapshot)]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
        assert [
            s
            for s in steps
            if s in {"cordon", "drain", "installed; rebooting into v1.13.1", "uncordoned", "healthy"} or s.startswith("runs Talos v1.13.1,")
        ] == [
            "healthy",  # after the config (its new installer image) went on without a reboot
            "cordon",
            "drain",  # the mirror pods of the control plane stay: the kubelet runs them from files
            "installed; rebooting into v1.13.1",
            f"runs Talos v1.13.1, schematic {VANILLA}, as configured",
            "uncordoned",
            "healthy",
        ]
        assert [m for _, m in mutations(api)] == [
            "MachineService/EtcdSnapshot",
            "MachineService/ApplyConfiguration dry-run",
            "MachineService/ApplyConfiguration NO_REBOOT",
            "ImageService/Pull",
            "LifecycleService/Upgrade",
            "MachineService/Reboot",
        ]
        assert api.state()[name]["version"] == "v1.13.1"
    node_now = kube_talos.client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None


# A Pulumi delete (`reset --mode auto`) and a reflashed control plane's apply remove the Node object too. Pulumi
# gives a delete the stdin of its apply (talosconfig and machine config, no kubeconfig): the kubeconfig comes
# from a remaining control plane, as `talosctl kubeconfig` fetches it.


def _delete(api: TalosAPI, name: str, last: dict[str, Any], dead_after: str = "10s") -> Result:
    args = ["reset", "--node", api.node_arg(name), "--mode", "auto", "--timeout", "60s", "--dead-after", dead_after]
    return upgrader(args, {"talosconfig": api.talosconfig_text(), "machineConfig": api.node_config(name)}, record=last)


def _last(api: TalosAPI, name: str) -> dict[str, Any]:
    return {"node": name, "ip": api.ip(name), "machine": mac(name)}


def test_a_destroy_deletes_each_nodes_node_object_until_no_control_plane_is_left(kube_talos: Cluster) -> None:
    cps = [unique("valinor") for _ in range(3)]
    worker = unique("istari")
    kube_talos.create_nodes([*(kwok_node(cp, control_plane=True) for cp in cps), kwok_node(worker)])
    ips = addresses(4)
    nodes = [node(cp, ip, "controlplane", NEW, reset={"downMs": 200}) for cp, ip in zip(cps, ips, strict=False)]
    nodes.append(node(worker, ips[3], "worker", NEW, reset={"downMs": 200}))
    with talos_api(scenario(nodes, endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)) as api:
        order = [worker, cps[2], cps[1], cps[0]]  # pulumi destroy: the chain in reverse
        results = {name: _delete(api, name, _last(api, name)) for name in order}
        for name, result in results.items():
            assert result.code == 0, (name, result.stderr)
        assert [(n, m) for n, m in mutations(api)] == [(name, "MachineService/Reset") for name in order]
        # Each Node went through the first remaining control plane, with the kubeconfig it hands out.
        for name in order[:-1]:
            assert results[name].lines[-1] == f"upgrader: {name}: Node {name} deleted from Kubernetes"
            assert kube_talos.client.get("v1", "Node", name) is None
        assert [c["node"] for c in api.calls() if c["method"] == "MachineService/Kubeconfig"] == [cps[0]] * 3
        # The last control plane takes the cluster with it: its Node object is not deleted (nothing answers for it).
        assert results[cps[0]].lines[-1] == (
            f"upgrader: {cps[0]}: no other control plane answers ({api.ip(cps[1])} maintenance, {api.ip(cps[2])} maintenance): "
            "the whole cluster is being destroyed; its etcd member and Node object go with it"
        )
        assert kube_talos.client.get("v1", "Node", cps[0]) is not None
    kube_talos.client.delete({"apiVersion": "v1", "kind": "Node", "metadata": {"name": cps[0]}})


def test_a_dead_machines_etcd_member_and_node_object_go_and_a_second_delete_finds_nothing(kube_talos: Cluster) -> None:
    cps = [unique("valinor") for _ in range(3)]
    kube_talos.create_nodes([kwok_node(cp, control_plane=True) for cp in cps])
    ips = addresses(3)
    spec = scenario(
        [node(cp, ip, "controlplane", NEW) for cp, ip in zip(cps, ips, strict=True)], endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca
    )
    with talos_api(spec) as api:
        dead = cps[1]
        member = api.state()[dead]["etcdMemberId"]
        api.crash(dead, result="never")
        first = _delete(api, dead, {**_last(api, dead), "etcdMember": member}, dead_after="2s")
        assert first.code == 0, first.stderr
        assert [line.removeprefix(f"upgrader: {dead}: ") for line in first.lines][-4:] == [
            f"did not answer within 2s at {api.ip(dead)}: treated as dead, since it is being removed",
            f"etcd member {member} removed through {api.ip(cps[0])}",
            f"Node {dead} deleted from Kubernetes",
            "removed from the cluster without a reset: nothing on the machine was wiped "
            "(if it comes back it still holds its Talos config and data: wipe it before reusing it)",
        ]
        assert mutations(api) == [(cps[0], "MachineService/EtcdRemoveMemberByID")]
        assert kube_talos.client.get("v1", "Node", dead) is None

        second = _delete(api, dead, {**_last(api, dead), "etcdMember": member}, dead_after="1s")
        assert second.code == 0, second.stderr
        assert [line.removeprefix(f"upgrader: {dead}: ") for line in second.lines][-3:-1] == [
            f"not an etcd member (checked through {api.ip(cps[0])}): nothing to remove",
            f"no Node {dead} in Kubernetes: nothing to delete",
        ]
        assert len(mutations(api)) == 1


def _kubelet_reports(api: TalosAPI, cluster: Cluster, name: str, control_plane: bool = False) -> dict[str, Any]:
    """What the kubelet of the machine's current boot reports: its Node, with the boot ID the machine booted (kwok plays the rest)."""
    reported = kwok_node(name, control_plane)
    reported["status"]["nodeInfo"]["bootID"] = api.state()[name]["bootId"]
    return reported


def test_a_reflashed_control_planes_old_node_object_goes_before_it_gets_its_config_back(kube_talos: Cluster, static_pods: Any) -> None:
    cps = [unique("valinor") for _ in range(3)]
    kube_talos.create_nodes([kwok_node(cp, control_plane=True) for cp in cps])
    # The old Node carries what the machine left behind, e.g. the cordon of a run that died.
    kube_talos.client.merge_patch({"apiVersion": "v1", "kind": "Node", "metadata": {"name": cps[2]}}, {"spec": {"unschedulable": True}})
    ips = addresses(3)
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True}, "install": {"downMs": 300}}
    nodes = [node(cp, ip, "controlplane", NEW, **(reflashed if cp == cps[2] else {})) for cp, ip in zip(cps, ips, strict=True)]
    with talos_api(scenario(nodes, endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)) as api:
        stale = api.state()[cps[2]]["etcdMemberId"]
        config = api.config("controlplane", installer(VANILLA, NEW))
        args = ["apply", "--node", api.node_arg(cps[2]), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        last = {**_last(api, cps[2]), "etcdMember": stale}
        old_node_then: list[Any] = []

        def kubelet(line: str) -> bool:
            # Once the machine is back, its new kubelet registers the Node afresh and runs its static pods.
            if line.startswith(f"upgrader: {cps[2]}: back: it answers at "):
                old_node_then.append(kube_talos.client.get("v1", "Node", cps[2]))
                kube_talos.create_nodes([_kubelet_reports(api, kube_talos, cps[2], control_plane=True)])
                static_pods(cps[2], control_plane_images(config))
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, kubelet, record=last)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {cps[2]}: ") for line in result.lines]
        assert [s for s in steps[steps.index(f"etcd member {stale} removed through {api.ip(cps[0])}") :] if not s.startswith("waiting: ")] == [
            f"etcd member {stale} removed through {api.ip(cps[0])}",
            f"Node {cps[2]} deleted from Kubernetes",
            f"was in maintenance mode: config handed over; etcd is bootstrapped ({api.ip(cps[0])} runs it), "
            f"so the step waits until it has installed {NEW}, rebooted and is healthy",
            f"back: it answers at {api.ip(cps[2])} with the cluster's client certificate",
            "running and ready",
            f"runs Talos {NEW}, schematic {VANILLA}, as configured",
            "healthy",
        ]
        assert mutations(api) == [(cps[0], "MachineService/EtcdRemoveMemberByID"), (cps[2], "MachineService/ApplyConfiguration AUTO")]
        # The old Node was gone before the new kubelet registered; the new one carries nothing of it.
        assert old_node_then == [None]
        new = kube_talos.client.get("v1", "Node", cps[2])
        assert new is not None
        assert new["spec"].get("unschedulable") is None


def test_a_day_2_apply_of_a_reflashed_machine_waits_for_it_to_be_ready(kube_talos: Cluster) -> None:
    cp, worker = unique("valinor"), unique("istari")
    # The reflashed worker's Node is still there and still Ready, as the kubelet of the machine's last boot left it:
    # the node lifecycle controller marks it only after its grace period.
    before = kwok_node(worker)
    before["status"]["nodeInfo"]["bootID"] = "a-boot-before-the-reflash"
    kube_talos.create_nodes([kwok_node(cp, control_plane=True), before])
    ips = addresses(2)
    spec = scenario([node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW, maintenance=True, install={"downMs": 300})])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=link(mac(worker)))
        args = ["apply", "--node", api.node_arg(worker), "--role", "worker", "--timeout", "60s"]
        reported: list[str] = []

        def kubelet(line: str) -> bool:
            # The new kubelet reports the Node only once the step is already waiting for it.
            if line.startswith(f"upgrader: {worker}: waiting: for its kubelet to report the Node from this boot"):
                boot = api.state()[worker]["bootId"]
                kube_talos.client.merge_patch(kwok_node(worker), {"status": {"nodeInfo": {"bootID": boot}}}, subresource="status")
                reported.append(boot)
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, kubelet)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {worker}: ") for line in result.lines]
        assert reported == [api.state()[worker]["bootId"]]
        assert steps[steps.index("answers: maintenance") :] == [
            "answers: maintenance",
            f"in maintenance mode: a link's permanent MAC is {mac(worker)}, the one the config names",
            f"was in maintenance mode: config handed over; etcd is bootstrapped ({api.ip(cp)} runs it), "
            f"so the step waits until it has installed {NEW}, rebooted and is healthy",
            *[s for s in steps if s in {"waiting: it answers in maintenance mode still", "waiting: it does not answer (installing or rebooting)"}],
            f"back: it answers at {api.ip(worker)} with the cluster's client certificate",
            "running and ready",
            f"runs Talos {NEW}, schematic {VANILLA}, as configured",
            f"waiting: for its kubelet to report the Node from this boot ({reported[0]})",
            "healthy",
        ]
        assert mutations(api) == [(worker, "MachineService/ApplyConfiguration AUTO")]
        assert api.state()[worker]["maintenance"] is False


def test_a_rebooted_machine_counts_as_back_only_once_the_kubelet_of_its_new_boot_reports_it(kube_talos: Cluster) -> None:
    """After a reboot the Node still reads Ready, as the kubelet of the boot before left it, until the node lifecycle
    controller's grace ends: the step waits for the Node to report the machine's new boot (status.nodeInfo.bootID, which
    every kubelet reports), before it uncordons the machine and moves on. Before, the old Ready passed at once."""
    name = unique("istari")
    ip = addresses(1)[0]
    spec = scenario([node(name, ip, "worker", NEW, applyNeedsReboot=True, reboot={"downMs": 200})])
    with talos_api(spec) as api:
        before = kwok_node(name)
        before["status"]["nodeInfo"]["bootID"] = api.state()[name]["bootId"]
        kube_talos.create_nodes([before])
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s"]
        reported: list[str] = []

        def kubelet(line: str) -> bool:
            # The kubelet of the new boot reports the Node only once the step is already waiting for it.
            if line.startswith(f"upgrader: {name}: waiting: for its kubelet to report the Node from this boot"):
                boot = api.state()[name]["bootId"]
                kube_talos.client.merge_patch(kwok_node(name), {"status": {"nodeInfo": {"bootID": boot}}}, subresource="status")
                reported.append(boot)
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, kubelet)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
        assert reported == [api.state()[name]["bootId"]] and reported[0] != before["status"]["nodeInfo"]["bootID"]
        back = steps.index("running and ready")
        assert steps[back + 1 : steps.index("uncordoned")] == [f"waiting: for its kubelet to report the Node from this boot ({reported[0]})"]
        assert mutations(api) == [
            (name, "MachineService/ApplyConfiguration dry-run"),
            (name, "MachineService/ApplyConfiguration STAGED"),
            (name, "MachineService/Reboot"),
        ]


# --- Before a CNI runs: no Node is Ready, and no machine is either -------------------------------------------------
#
# Talos's MachineStatus is ready only once the machine's Node is (its nodeReady check), and no Node is Ready before a
# CNI runs: Arda's configs install none, and Cilium comes after every machine's apply. The stand-in reads the Node as
# Talos's NodeStatusController does (tools/talos-api/nodestatus.go, with the scenario's kubernetesCA). kwok leaves a
# Node labelled NO_CNI to the test, whose Kubelet posts what the kubelet of a machine without a CNI reports. These tests
# share a cluster with no Node (`kube_nodeless`, reset between them): the rule is about every Node of the cluster, and
# the file's shared one holds other tests' Nodes.

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


# What a reset of the module's second cluster must bring back as it was: every kind a step of the upgrader reads or
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
        # every namespace, the leader elections' and the API server's leases. The snapshot waits for all of them.
        objects = _objects(cluster)
        namespaces = {n["metadata"]["name"] for n in cluster.client.list("v1", "Namespace")}
        published = {ns for kind, ns, name in objects if (kind, name) == ("ConfigMap", "kube-root-ca.crt")}
        leases = {name for kind, ns, name in objects if (kind, ns) == ("Lease", "kube-system")}
        own = {"kube-controller-manager", "kube-scheduler"} <= leases and any(lease.startswith("apiserver-") for lease in leases)
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
