"""A Talos upgrade stopped as Pulumi stops a step (Ctrl-C, or the step's custom timeout) once its installer runs.

Talos 1.13's LifecycleService.Upgrade starts the installer on the stream's context and then waits for it on a
detached one (internal/app/lifecycle/container.go:165,181 at v1.13.0): the installer runs on after the client is
gone, and once it ends the new Talos is the next boot's (sd-boot's default entry). The stand-in does the same
(tools/talos-api/lifecycle.go). So a stop after the installer started, or after it ended and before the reboot,
leaves a change the machine's next boot brings, whatever reboots it: the node stays drained (cordoned, Ceph's noout
set, Argo CD paused) and the next `pulumi up` reboots it through the whole disruption. The step is the program's
own, run as pulumi-command runs it (tests/upgrader/run.py `step`); Kubernetes is the test control plane.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from iluvatar import upgrader as product
from plans import bringup
from plans.storage import NOOUT_SET, NOOUT_UNSET
from tests.upgrader.kube import NEW, OWED, _job_states, _owed, kwok_node, program_hooks, unique
from tests.upgrader.run import GRACE_S, Step, mutations, step, until
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, node, scenario, talos_api

pytestmark = pytest.mark.kube

NEWER = "v1.13.1"


def _nodes(cluster: Cluster) -> str:
    """The machine's Node, and another where the hook Jobs' pods run while it is cordoned (the next run sets noout again)."""
    name = unique("istari")
    cluster.create_nodes([kwok_node(name), kwok_node(unique("bystander"))])
    return name


def _cordoned(cluster: Cluster, name: str) -> bool:
    found = cluster.client.get("v1", "Node", name)
    assert found is not None
    return bool(found["spec"].get("unschedulable"))


def _first_run(api: TalosAPI, cluster: Cluster, name: str, ns: str, reached: Callable[[Step], None]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The upgrade's step, stopped as Pulumi stops one once `reached` saw it get there; its command, stdin and what it returned."""
    command = bringup.Step(("apply", "--node", api.node_arg(name), "--role", "worker"), "90s", "").command
    stdin = {
        "talosconfig": api.talosconfig_text(),
        "kubeconfig": cluster.kubeconfig.read_text(),
        "machineConfig": api.config("worker", installer(VANILLA, NEWER)),
        "hooks": program_hooks(ns),
    }
    product.build()  # not this test's: a step stopped while it builds is tests/upgrader/test_cancel.py's
    with step(command, json.dumps(stdin, sort_keys=True)) as first:
        reached(first)
        first.cancel()
        stopped = first.result(timeout=GRACE_S + 30)
    assert (stopped["signaled"], stopped["stdout"]) == (True, "")
    return command, stdin, stopped


def _second_run_finishes_it(api: TalosAPI, cluster: Cluster, name: str, ns: str, command: str, stdin: dict[str, Any]) -> list[str]:
    """The next `pulumi up`: the same step installs again, reboots through the disruption, and puts Kubernetes back."""
    with step(command, json.dumps(stdin, sort_keys=True)) as second:
        finished = second.result(timeout=200)
    assert (finished["error"], finished["exit"]) == ("", 0), finished["stderr"]
    assert api.state()[name]["version"] == NEWER
    assert not _cordoned(cluster, name)
    assert _owed(cluster, name) is None
    assert _job_states(cluster, ns) == {NOOUT_SET: "Complete", NOOUT_UNSET: "Complete"}
    lines: list[str] = finished["stderr"].splitlines()
    return lines


def test_a_stop_while_the_installer_runs_leaves_the_node_drained_and_the_next_run_reboots_it(kube_talos: Cluster, kube_namespace: Any) -> None:
    """Unfixed, the upgrader took the failed stream for an upgrade that did not happen and put Kubernetes back: the
    Node uncordoned and noout unset while the new Talos waited for the machine's next boot (a power cut), undrained."""
    ns = kube_namespace(kube_talos)
    name = _nodes(kube_talos)
    ip = addresses(1)[0]
    # The installer held (a test control of the stand-in) until the test has seen the stopped run's outcome: a machine's
    # installer runs for minutes, and the stop must land while it runs, whatever the load.
    spec = scenario([node(name, ip, "worker", NEW, upgrade={"held": True, "downMs": 300})])
    with talos_api(spec) as api:
        # Stopped once the upgrader said the installer runs: its first line of output came through the stream.
        running = f"upgrader: {name}: installer: running the installer from {installer(VANILLA, NEWER)}"
        command, stdin, stopped = _first_run(api, kube_talos, name, ns, lambda first: first.logged(running, 180))
        last = stopped["stderr"].splitlines()[-1]
        assert last == (
            f"upgrader: FAILED: {name}: upgrade: stopped: SIGTERM, before the installer's exit code: it may be running on the machine, "
            "which runs an installer it started to its end whatever the client does; "
            f"Talos {NEWER} (if the installer finishes) takes effect at the machine's next boot, whatever reboots it, so it is left "
            f"drained until `pulumi up` reboots it (the Node is left cordoned; the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, "
            f"kept in ConfigMap {OWED} under {name}; the next run of this step runs them); "
            f"look with: talosctl -n {ip} upgrade --image {installer(VANILLA, NEWER)}"
        ), last
        # The machine's installer runs on without the client; the node stays drained.
        assert (api.state()[name]["installing"], api.state()[name]["pendingVersion"]) == (True, "")
        assert _cordoned(kube_talos, name)
        assert (_owed(kube_talos, name), _job_states(kube_talos, ns)) == (f"{ns}/{NOOUT_UNSET}", {NOOUT_SET: "Complete"})
        # Once it ends, its Talos waits for the next boot; the node still runs the old one, drained.
        api.release_installer(name)
        until("the installer's end", lambda: not api.state()[name]["installing"], 30)
        assert (api.state()[name]["pendingVersion"], api.state()[name]["version"]) == (NEWER, NEW)
        assert _cordoned(kube_talos, name)

        lines = _second_run_finishes_it(api, kube_talos, name, ns, command, stdin)
        assert f"upgrader: {name}: installed; rebooting into {NEWER}" in lines
        assert [m for m in mutations(api) if m[1] != "MachineService/ApplyConfiguration dry-run"] == [
            (name, "MachineService/ApplyConfiguration NO_REBOOT"),  # the config's new installer image: no reboot for it
            (name, "ImageService/Pull"),
            (name, "LifecycleService/Upgrade"),
            (name, "ImageService/Pull"),
            (name, "LifecycleService/Upgrade"),
            (name, "MachineService/Reboot"),
        ]


def test_a_stop_between_the_install_and_the_reboot_is_no_reboot_and_leaves_the_node_drained(kube_talos: Cluster, kube_namespace: Any) -> None:
    """The signal while the Reboot call is out: unfixed, its Canceled counted as the answer a node going down loses, and
    the run ended on a reboot wait that said the node did not come back, though nothing rebooted it."""
    ns = kube_namespace(kube_talos)
    name = _nodes(kube_talos)
    ip = addresses(1)[0]
    # The Reboot call accepted and never answered: the window between the install and the reboot, held open.
    spec = scenario([node(name, ip, "worker", NEW, upgrade={"downMs": 300}, reboot={"downMs": 300}, hang=["MachineService/Reboot"])])
    with talos_api(spec) as api:

        def asked(_: Step) -> None:
            # The call log, not mutations(): a call still running has no arguments yet.
            until("the Reboot call", lambda: "MachineService/Reboot" in [c["method"] for c in api.calls(name)], 180)

        command, stdin, stopped = _first_run(api, kube_talos, name, ns, asked)
        last = stopped["stderr"].splitlines()[-1]
        assert last == (
            f"upgrader: FAILED: {name}: reboot: stopped (SIGTERM) before Talos answered the reboot: it may never have been asked; "
            f"Talos {NEWER} (installed) takes effect at the machine's next boot, whatever reboots it, so it is left drained until "
            f"`pulumi up` reboots it (the Node is left cordoned; the after hooks are still owed: Job {ns}/{NOOUT_UNSET}, kept in "
            f"ConfigMap {OWED} under {name}; the next run of this step runs them); look with: talosctl -n {ip} reboot"
        ), last
        assert api.state()[name]["pendingVersion"] == NEWER
        assert _cordoned(kube_talos, name)

        api.script(name, hang=[])
        _second_run_finishes_it(api, kube_talos, name, ns, command, stdin)
