"""A Kubernetes version bump (upgrader/internal/kubeupgrade): `kubernetes-upgrade` rolls it as `talosctl upgrade-k8s`
does, component by component, before the per-node apply steps run with the new configs; what it refuses before
anything changes, and a run killed halfway.

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes), the file's own (`kube_talos`, one per module), and its answers are the API
server's own. A node is the same name in both: the stand-in's Talos node and a kwok Node. What these files share is
tests/upgrader/kube.py and tests/upgrader/conftest.py.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from typing import Any

import pytest

from tests.upgrader.kube import (
    APPS,
    CRASH_LOOP,
    KUBELET,
    NEW,
    STABLE,
    TO,
    api_server_restarted,
    first_pods,
    kubelet_scenario,
    kwok_node,
    mirror_pods,
    run,
    stopped_waiting,
    unique,
)
from tests.upgrader.run import binary, mutations
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, node, talos_api

pytestmark = pytest.mark.kube


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
        kube_talos.wait_for_nodes(workers)  # registered by their kubelets
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
        kube_talos.wait_for_nodes(workers[:-1])  # registered by their kubelets (the reflashed one runs none)
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
        # Stopped once it waits on the pods and the restarted API server has started, Ready each time, four times since.
        restarted = functools.partial(api_server_restarted, kube_talos, cps[0], 3)
        result = stopped_waiting(api, kube_talos, _kubernetes_upgrade(api, cps, []), cps[0], "control-plane-pods", restarted, machineConfigs=configs)
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
    kube_talos.create_nodes([kwok_node(workers[0])])  # the Node its kubelet registered in an earlier boot
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
    kube_talos.create_nodes([kwok_node(cps[1], control_plane=True)])  # the Node its kubelet registered in an earlier boot
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
        # Held to its 2 s by the line above that names it (--reach-timeout); a reach that never gave up would hold the run to
        # its 120 s --timeout and `upgrader`'s 300 s timeout. Not by the run's wall-clock time: that measured the loaded machine.
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
        kube_talos.wait_for_nodes(workers)  # registered by its kubelet
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
        kube_talos.wait_for_nodes(workers)  # registered by its kubelet
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
