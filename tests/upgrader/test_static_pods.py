"""A control plane's static pods after a change (upgrader/internal/staticpods, apply/staticpods.go): a step is healthy only
once the kubelet runs the API server, controller-manager and scheduler Talos renders for the new config, each Ready
and running untouched.

Talos renders a control plane's pods and serves them at its static pod URL; the kubelet reads that URL when it starts,
then every httpCheckFrequency (20 s by default; Talos leaves it so), and replaces a mirror pod only once what it read
changed. The stand-in's kubelet (tools/talos-api/kubelet.go) plays that against the real API server, so the old pod
stays, Ready on the same image, until the kubelet's next poll.

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes), the file's own (`kube_talos`, one per module), and its answers are the API
server's own. A node is the same name in both: the stand-in's Talos node and a kwok Node. What these files share is
tests/upgrader/kube.py and tests/upgrader/conftest.py.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from tests.upgrader.kube import (
    APPS,
    CONFIG_VERSION,
    CRASH_LOOP,
    FIRST_RENDER,
    KUBELET,
    NEW,
    STABLE,
    _sysctl,
    api_server_restarted,
    config_versions,
    control_plane_images,
    first_pods,
    kubelet_scenario,
    kwok_node,
    mirror_pods,
    run,
    stopped_waiting,
    unique,
)
from tests.upgrader.run import mutations, upgrader_watched
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, addresses, installer, node, scenario, talos_api

pytestmark = pytest.mark.kube


def test_a_control_planes_health_includes_its_static_pods_on_the_configured_images(kube_talos: Cluster, static_pods: Any) -> None:
    name = unique("valinor")
    kube_talos.create_nodes([kwok_node(name, control_plane=True)])
    spec = scenario([node(name, addresses(1)[0], "controlplane", NEW)], endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)
    with talos_api(spec) as api:
        config = api.node_config(name)
        images = control_plane_images(config)
        static_pods(name, {**images, "kube-apiserver": images["kube-apiserver"].replace(f":{KUBELET}", ":v1.34.0")})
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        stale = stopped_waiting(api, kube_talos, args, name, "control-plane-pods", machineConfig=config)
        seen = f"kube-apiserver-{name} runs registry.k8s.io/kube-apiserver:v1.34.0, not {images['kube-apiserver']}"
        assert stale.code == 1
        assert f"upgrader: {name}: waiting: control-plane-pods: {seen}" in stale.lines
        assert stale.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: stopped: SIGTERM; last seen: {seen}; "
            f"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        assert f"upgrader: {name}: healthy" not in stale.lines
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"kube-apiserver-{name}", "namespace": "kube-system"}}
        kube_talos.client.json_patch(pod, [{"op": "replace", "path": "/spec/containers/0/image", "value": images["kube-apiserver"]}])
        current = run(api, kube_talos, args, machineConfig=config)
        assert current.code == 0, current.stderr
        assert current.last == f"upgrader: {name}: healthy"


def api_server_flags(cluster: Cluster, node_name: str) -> list[str]:
    command: list[str] = mirror_pods(cluster, node_name)["kube-apiserver"]["spec"]["containers"][0]["command"]
    return command[1:]


def _flag(value: str) -> str:
    """A change of the API server's flags, as an OIDC setting or a user's extraArgs is: Talos applies it without a reboot."""
    return json.dumps({"cluster": {"apiServer": {"extraArgs": {"audit-log-maxage": value}}}})


def test_a_flag_change_is_healthy_only_once_the_kubelet_runs_the_new_api_server(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    [name], _ = kubelet_nodes(1)
    # The kubelet reads Talos's static pods when it starts, and then not within this test (an hour between polls).
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 3_600_000)) as api:
        first_pods(kube_talos, [name])
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        stale = stopped_waiting(api, kube_talos, args, name, "control-plane-pods", machineConfig=config)
        assert stale.code == 1
        assert f"upgrader: {name}: the change renders kube-apiserver ({CONFIG_VERSION}) anew: waiting for the new pods after it" in stale.lines
        # The old API server is still there, Ready on the same image: only its talos.dev/config-version tells.
        seen = f"kube-apiserver-{name} carries {CONFIG_VERSION} 1, not 2 (what Talos serves now): the kubelet has not run the new static pod yet"
        assert f"upgrader: {name}: waiting: control-plane-pods: {seen}" in stale.lines
        assert stale.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: stopped: SIGTERM; last seen: {seen}; "
            f"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        assert [m for _, m in mutations(api)] == ["MachineService/ApplyConfiguration dry-run", "MachineService/ApplyConfiguration NO_REBOOT"]
        assert "--audit-log-maxage=31" not in api_server_flags(kube_talos, name)

        # A new kubelet reads the static pod URL at once: the next run finds the new API server and is done.
        api.restart_kubelet(name)
        done = run(api, kube_talos, args, machineConfig=config)
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
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        result = stopped_waiting(api, kube_talos, args, name, "static-pods", machineConfig=config)
        assert result.code == 1
        ip = api.ip(name)
        seen = f"Talos has not rendered kube-apiserver's new pod yet (its {CONFIG_VERSION} is still 1)"
        assert f"upgrader: {name}: waiting: static-pods: {seen}" in result.lines
        assert result.last == (
            f"upgrader: FAILED: {name}: static-pods: stopped: SIGTERM; last seen: {seen}; "
            f"look with: talosctl -n {ip} get staticpods -o yaml; talosctl -n {ip} get staticpodstatus"
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
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        waited = stopped_waiting(api, kube_talos, args, name, "control-plane-pods", machineConfig=config)
        assert waited.code == 1
        assert f"upgrader: {name}: the change renders {renders} anew: waiting for the new pods after it" in waited.lines
        # The API server's config-version did not move; another of its annotations did, and the old pod is still there.
        seen = f"kube-apiserver-{name} carries {stale} (what Talos serves now): the kubelet has not run the new static pod yet"
        assert f"upgrader: {name}: waiting: control-plane-pods: {seen}" in waited.lines
        assert waited.last == (
            f"upgrader: FAILED: {name}: control-plane-pods: stopped: SIGTERM; last seen: {seen}; "
            f"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={name}"
        )
        assert config_versions(kube_talos, name) == dict.fromkeys(APPS, "1")

        api.restart_kubelet(name)
        done = run(api, kube_talos, args, machineConfig=config)
        assert done.code == 0, done.stderr
        assert done.last == f"upgrader: {name}: healthy"
        pods = mirror_pods(kube_talos, name)
        assert {app: {k: v for k, v in p["metadata"]["annotations"].items() if k.startswith("talos.dev/")} for app, p in pods.items()} == after


def test_an_api_server_that_crash_loops_never_counts_though_it_shows_ready_each_time_it_starts(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """Talos gives kube-apiserver no readiness probe, so the kubelet counts it Ready as soon as it runs: one that crash-loops
    shows Ready at each start. The step counts a container only once it has run --pods-stable since it last started, and the
    node's own API server only once its /readyz says ready; before, a Ready window passed."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 200)) as api:
        first_pods(kube_talos, [name])
        api.script(name, crashLoop=["kube-apiserver"])  # the new API server (its new flag) crash-loops
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_flag("31")])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", "--pods-stable", "2s", "--timeout", "60s"]
        # Stopped once it waits on the pods and the API server has started, Ready each time, four times since.
        result = stopped_waiting(
            api, kube_talos, args, name, "control-plane-pods", functools.partial(api_server_restarted, kube_talos, name, 3), machineConfig=config
        )
        assert result.code == 1
        assert CRASH_LOOP.fullmatch(result.last), result.last
        assert f"upgrader: {name}: healthy" not in result.lines


def test_an_api_server_that_runs_but_is_not_ready_stops_the_step(kube_talos: Cluster, kubelet_nodes: Any) -> None:
    """Its pod Running and Ready (no probe), its own /readyz failing (etcd, here): the step asks the node's API server itself."""
    [name], _ = kubelet_nodes(1)
    with talos_api(kubelet_scenario(kube_talos, [node(name, addresses(1)[0], "controlplane", NEW)], 200)) as api:
        first_pods(kube_talos, [name])
        api.script(name, apiServerNotReady=True)
        ip = api.ip(name)
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        result = stopped_waiting(api, kube_talos, args, name, "api-server", machineConfig=api.node_config(name))
        assert result.code == 1
        body = "[+]ping ok\\n[+]log ok\\n[-]etcd failed: reason withheld\\n[+]poststarthook/start-apiserver-admission-initializer ok\\nreadyz check failed"
        seen = f'kube-apiserver on {name} ({ip}:6443): /readyz: an error on the server ("{body}") has prevented the request from succeeding'
        assert f"upgrader: {name}: waiting: api-server: {seen}" in result.lines
        assert result.last == (
            f"upgrader: FAILED: {name}: api-server: stopped: SIGTERM; last seen: {seen}; "
            f"look with: kubectl --server https://{ip}:6443 get --raw '/readyz?verbose'"
        )
        api.script(name, apiServerNotReady=False)
        ready = run(api, kube_talos, args, machineConfig=api.node_config(name))
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
    with talos_api(spec) as api:
        first_pods(kube_talos, [name])
        uids = {app: p["metadata"]["uid"] for app, p in mirror_pods(kube_talos, name).items()}
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "controlplane", *STABLE, "--timeout", "60s"]
        # The new boot's containers start once the step said it waits on a container from the boot before (a test
        # control of the stand-in's kubelet), however long the step took to get there.
        api.script(name, podStartHeld=True)

        def start_once_seen(line: str) -> bool:
            if line.startswith(f"upgrader: {name}: waiting: control-plane-pods: ") and "before the node's boot" in line:
                api.script(name, podStartHeld=False)
            return False

        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        result = upgrader_watched(args, stdin, start_once_seen)
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
