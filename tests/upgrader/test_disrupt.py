"""The disruption around a node's reboot (upgrader/internal/apply/disrupt.go, hooks.go; reset/owed.go): the hooks,
paused workloads, cordon and drain, each put back, and what a run that failed, was killed or was stopped left owed.

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes), the file's own (`kube_talos`, one per module), and its answers are the API
server's own. A node is the same name in both: the stand-in's Talos node and a kwok Node. What these files share is
tests/upgrader/kube.py and tests/upgrader/conftest.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from iluvatar import golang
from iluvatar import upgrader as product
from plans import bringup
from plans.storage import NOOUT_SET, NOOUT_UNSET
from tests.kube.plugin import _shared_cluster
from tests.upgrader.kube import (
    HELD,
    NEW,
    OWED,
    STABLE,
    _job_states,
    _kubelet_reports,
    _last,
    _owed,
    _sysctl,
    audit_mark,
    budget,
    control_plane_images,
    deployment,
    evictions_refused,
    first_pods,
    kubelet_scenario,
    kwok_node,
    pods,
    program_hooks,
    run,
    running,
    stopped_waiting,
    unique,
    upgrader_requests,
)
from tests.upgrader.run import GRACE_S, mutations, step, upgrader, upgrader_watched
from tools.kube_cluster import TALOS, Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, node, scenario, talos_api

pytestmark = pytest.mark.kube

# What the upgrader says first when a signal stops it (upgrader/internal/stop).
STOPPING = (
    "upgrader: -: SIGTERM: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to 1m0s, "
    "and the upgrader ends within 1m15s"
)


@pytest.fixture(scope="module")
def kube_talos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """tests.kube.plugin's, with the API server's audit log, which tells the upgrader's requests from others'
    (`upgrader_requests`)."""
    yield from _shared_cluster(TALOS, tmp_path_factory, audit=True)


def _machine_status_reads(api: TalosAPI, name: str) -> int:
    """How many times the node was asked its MachineStatus (upgrader/internal/talos/talos.go, MachineStatus: a COSI Get)."""
    return sum(1 for c in api.calls(name) if c["method"] == "State/Get" and (c["args"] or {}).get("type") == "MachineStatuses.runtime.talos.dev")


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
        # A second workload to pause that is not installed yet, its namespace with it (Argo CD's controller before the
        # run that installs it): nothing to pause, so nothing to resume, and the drain goes on (issue #52: the step
        # failed on it).
        absent = f"StatefulSet/{ns}-later/not-installed-yet"
        args = [
            "apply",
            "--node",
            api.node_arg(name),
            "--role",
            "worker",
            "--timeout",
            "120s",
            "--pause",
            f"Deployment/{ns}/paused",
            "--pause",
            absent,
        ]
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
            f"pause: {absent} is not installed yet (no namespace {ns}-later): nothing to pause",
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
        assert client.get("apps/v1", "StatefulSet", "not-installed-yet", f"{ns}-later") is None

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


def test_a_workload_to_pause_missing_from_a_namespace_that_exists_stops_the_step_before_the_cordon(kube_talos: Cluster, kube_namespace: Any) -> None:
    """Argo CD's controller renamed, or made a Deployment, by its chart's values: the namespace is there and the name is
    not. Draining with it running is what the pause prevents, so the step refuses before anything is changed."""
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        wrong = f"StatefulSet/{ns}/argocd-application-controller"
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s", "--pause", wrong]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 1
        assert result.last == (
            f"upgrader: FAILED: {name}: pause: {wrong} is not in namespace {ns}, which exists: the workload to pause is named wrongly "
            "(renamed, or another kind, by its chart's values?), and a drain with it running is what pausing it prevents; nothing "
            f"was cordoned; look with: kubectl -n {ns} get statefulset argocd-application-controller"
        )
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]
        assert not any(line.endswith(("cordon", "uncordoned")) for line in result.lines)
    node_now = kube_talos.client.get("v1", "Node", name)
    assert node_now is not None and node_now["spec"].get("unschedulable") is None


def test_a_pod_disruption_budget_stops_the_drain_and_nothing_is_left_changed(kube_talos: Cluster, kube_namespace: Any) -> None:
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    client = kube_talos.client
    client.create(deployment(ns, "guarded", 1, on=name))
    client.create(deployment(ns, "paused", 2, on=name))
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)
    running(kube_talos, ns, "paused", 2)
    [guarded] = [p["metadata"]["name"] for p in pods(kube_talos, ns, "guarded")]

    spec = scenario([node(name, addresses(1)[0], "worker", NEW, applyNeedsReboot=True)])
    with talos_api(spec) as api:
        config = api.config("worker", installer(VANILLA, NEW), patches=[_sysctl()])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "120s", "--pause", f"Deployment/{ns}/paused"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config}
        refused = evictions_refused(kube_talos)

        def held(line: str) -> bool:
            # The drain is held: stopped (SIGTERM, as Pulumi stops a cancelled step) once kubectl's second retry was
            # refused, so the refusal is seen said once over two tries the upgrader handled. kubectl tries again 5 s after
            # its eviction call returned (k8s.io/kubectl v0.34.1 pkg/drain/drain.go:295-320), and the upgrader's
            # wrapper of that call says the refusal before it returns (upgrader/internal/kube/refused.go, `seen`): the
            # third refusal is counted only after the second was handled. The second's count alone is not enough: the
            # API server counts a request when its handler returns (apiserver_request_total), before the client has
            # read the answer, and a stop in between ends the second try as "context canceled". A short --timeout
            # would end the run wherever it is then: on a loaded machine, before the drain's first try, or between the
            # tries.
            if line != f"upgrader: {name}: drain: {ns}/{guarded}: eviction refused, retried every 5s: {HELD}":
                return False
            kube_talos.wait_for("kubectl's second retry of the refused eviction", lambda: evictions_refused(kube_talos) >= refused + 3, timeout=60)
            return True

        result = upgrader_watched(args, stdin, held, stop=signal.SIGTERM)
        assert result.code == 1
        assert evictions_refused(kube_talos) >= refused + 3
        # Why the drain idled, said once though kubectl retried the eviction.
        assert [line for line in result.lines if "eviction refused" in line] == [
            f"upgrader: {name}: drain: {ns}/{guarded}: eviction refused, retried every 5s: {HELD}"
        ]
        assert result.last == (
            f"upgrader: FAILED: {name}: drain: stopped: SIGTERM (still evicting {ns}/{guarded}); "
            f"look with: kubectl get pods -A -o wide --field-selector spec.nodeName={name}; kubectl get pdb -A"
        )
        # Nothing staged, nothing rebooted, and Kubernetes put back as it was.
        assert mutations(api) == [(name, "MachineService/ApplyConfiguration dry-run")]
        assert f"upgrader: {name}: uncordoned" in result.lines
        assert f"upgrader: {name}: resume: Deployment/{ns}/paused scaled back to 2" in result.lines

    node_now = client.get("v1", "Node", name)
    assert node_now is not None
    assert node_now["spec"].get("unschedulable") is None
    paused = client.get("apps/v1", "Deployment", "paused", ns)
    assert paused is not None
    assert (paused["spec"]["replicas"], (paused["metadata"].get("annotations") or {}).get("iluvatar.dev/paused-replicas")) == (2, None)
    running(kube_talos, ns, "guarded", 1)


def test_a_drain_the_budget_holds_ended_by_its_own_bound_says_kubectls_timeout(kube_talos: Cluster, kube_namespace: Any) -> None:
    """The step's own bound ending a drain a PodDisruptionBudget holds (nobody stops the step): the upgrader's Go test
    (upgrader/internal/kube/drain_live_test.go) drains this file's control plane, its bound ended once the first
    eviction was refused rather than on the clock, and expects kubectl's "global timeout reached", not "stopped"."""
    ns = kube_namespace(kube_talos)
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    kube_talos.client.create(deployment(ns, "guarded", 1, on=name))
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)
    [guarded] = [p["metadata"]["name"] for p in pods(kube_talos, ns, "guarded")]
    live = {
        "ILUVATAR_LIVE_KUBECONFIG": str(kube_talos.kubeconfig),
        "ILUVATAR_LIVE_NODE": name,
        "ILUVATAR_LIVE_NAMESPACE": ns,
        "ILUVATAR_LIVE_POD": guarded,
    }
    command = [golang.go_binary(), "test", "-count=1", "-v", "-run", "^TestADrainEndedByItsBoundSaysKubectlsTimeout$", "./internal/kube/"]
    done = subprocess.run(
        command, cwd=product.PROGRAM.folder, env={**golang.go_env(), **live}, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "--- PASS: TestADrainEndedByItsBoundSaysKubectlsTimeout" in done.stdout, done.stdout
    # Refused, not evicted: the guarded pod is where it was.
    assert [p["metadata"]["name"] for p in pods(kube_talos, ns, "guarded")] == [guarded]


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
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "120s"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config, "hooks": hooks}

        def not_ready(line: str) -> bool:
            # Back from the reboot, the run waits for its machine to be ready (upgrader/internal/apply/upgrade.go,
            # waitRunning), saying nothing while it does: it is stopped (SIGTERM, as Pulumi stops a cancelled step) once
            # the machine answered that wait and was asked again, so the wait's last answer is the machine's own. A short
            # --timeout would bet the steps before the reboot (1.7 s here alone, the hook Job included) against it.
            if not line.startswith(f"upgrader: {name}: back up (new boot ID) after "):
                return False
            asked = _machine_status_reads(api, name)
            kube_talos.wait_for("the run to ask the machine's status twice", lambda: _machine_status_reads(api, name) >= asked + 2)
            return True

        failed = upgrader_watched(args, stdin, not_ready, stop=signal.SIGTERM)
        assert failed.code == 1
        assert f"upgrader: {name}: rebooting" in failed.lines
        assert failed.last == (
            f'upgrader: FAILED: {name}: machine-status: stopped: SIGTERM; last seen: running, not ready: nodeReady: node "{name}" is not ready '
            f"(the Node is left cordoned; the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, kept in ConfigMap {OWED} under {name}; "
            f"the next run of this step runs them); look with: talosctl -n {ip} get machinestatus"
        )
        # noout is set, and what unsets it is written down.
        assert (_owed(kube_talos, name), _job_states(kube_talos, ns)) == (f"{ns}/{NOOUT_UNSET}", {NOOUT_SET: "Complete"})

        # It goes down for a while: a run that finds no machine says noout is still owed (every failure does).
        # Stopped once it said it waits for the machine to answer.
        api.crash(name, down_ms=30_000, result="not-ready")
        unreachable = upgrader_watched(
            args, stdin, lambda line: line == f"upgrader: {name}: waiting for the node to answer (booting or installing?)", stop=signal.SIGTERM
        )
        assert unreachable.code == 1
        assert unreachable.last.startswith(f"upgrader: FAILED: {name}: reach: stopped: SIGTERM; last seen: the node does not answer: ")
        assert (
            f"(the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, kept in ConfigMap {OWED} under {name}; the next run of this step runs them)"
            in unreachable.last
        )

        # It comes back, not ready still. The next run runs what is owed as soon as the machine is back, before the health
        # check that fails: noout is unset, and the failure says nothing is owed any more. Stopped once the health check
        # said it waits on the machine's readiness (SIGTERM, as Pulumi stops a cancelled step): an 8 s --timeout, against
        # the 1.7 s the owed hook takes here alone, would end it in the hook on a machine 5 times slower.
        api.crash(name, down_ms=100, result="not-ready")
        unhealthy = stopped_waiting(api, kube_talos, args, name, "machine-status", machineConfig=config, hooks=hooks)
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
            STOPPING,
            f'upgrader: FAILED: {name}: machine-status: stopped: SIGTERM; last seen: running, not ready: nodeReady: node "{name}" is not ready; '
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
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)

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
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)
    running(kube_talos, ns, "paused", 2)
    [guarded] = [p["metadata"]["name"] for p in pods(kube_talos, ns, "guarded")]

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

        product.build()  # not this test's: a step stopped while it builds is tests/upgrader/test_cancel.py's
        with step(command, json.dumps(stdin, sort_keys=True)) as first:
            # The budget refused the guarded pod's eviction: the drain is held, retrying it. The Node cordoned and the
            # workload paused come before the drain lists the node's pods, and a stop then ends no eviction.
            first.logged(f"upgrader: {name}: drain: {ns}/{guarded}: eviction refused, retried every 5s: {HELD}", 120)
            first.cancel()
            stopped = first.result(timeout=GRACE_S + 30)
        assert (stopped["signaled"], stopped["stdout"]) == (True, "")
        assert 0 <= stopped["waitedAfterCancelMs"] < GRACE_S * 1000
        steps = [line.removeprefix(f"upgrader: {name}: ") for line in stopped["stderr"].splitlines()]
        after = steps[steps.index(STOPPING) :]
        assert [s for s in after if not s.startswith("drain: ")][1:] == [
            "uncordoned",
            f"hook: Job {ns}/{NOOUT_UNSET} started",
            f"hook: Job {ns}/{NOOUT_UNSET} completed",
            f"resume: Deployment/{ns}/paused scaled back to 2",
            after[-1],
        ]
        # Stopped by the signal, and said so, with the pod the budget held: not kubectl's "global timeout reached: <what
        # was left of --timeout>".
        assert after[-1] == (
            f"upgrader: FAILED: {name}: drain: stopped: SIGTERM (still evicting {ns}/{guarded}); "
            f"look with: kubectl get pods -A -o wide --field-selector spec.nodeName={name}; kubectl get pdb -A"
        )
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
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "120s"]
        stdin = {"talosconfig": api.talosconfig_text(), "kubeconfig": kube_talos.kubeconfig.read_text(), "machineConfig": config, "hooks": hooks}
        at_unset: list[tuple[Any, list[dict[str, Any]]]] = []

        def at(line: str) -> bool:
            if line == f"upgrader: {name}: hook: Job {ns}/{NOOUT_SET} started":
                # The step is stopped (SIGTERM, as Pulumi stops a cancelled step) while the set Job's wait goes on: once
                # the run read the Job twice (upgrader/internal/kube/kube.go, RunJob's wait: a GET every 0.5 s), so its
                # last answer is the Job not completed, whatever the load. A short --timeout would bet the steps before
                # the hook against it. The reads counted are the upgrader's own, of that Job (the audit log): no other
                # client's can stand for them.
                mark = audit_mark(kube_talos)

                def read_twice() -> bool:
                    return upgrader_requests(kube_talos, mark, "get", "jobs", ns, NOOUT_SET) >= 2

                kube_talos.wait_for("the run to read the set Job twice", read_twice)
                return True
            if line == f"upgrader: {name}: hook: Job {ns}/{NOOUT_UNSET} started":
                at_unset.append((client.get("batch/v1", "Job", NOOUT_SET, ns), client.list("v1", "Pod", ns, labelSelector=f"job-name={NOOUT_SET}")))
            return False

        result = upgrader_watched(args, stdin, at, stop=signal.SIGTERM)
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
        assert result.last.startswith(f"upgrader: FAILED: {name}: hook: stopped: SIGTERM; last seen: Job {ns}/{NOOUT_SET} has not completed")
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
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)
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
    running(kube_talos, ns, "guarded", 1)
    budget(kube_talos, ns)
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
