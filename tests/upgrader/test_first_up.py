"""The whole first `pulumi up` of Arda's machines, in one order the graph allows: each machine's step as the program
writes it (its arguments, its stdin's keys), run in the dependency order of the program's own resource graph, every
later step after the bootstrap, against the Talos stand-in (every machine in maintenance mode, as a first PXE boot
leaves it) and the real control plane.

The engine starts the bootstrap once the first control plane's step is done, beside the chain of the other machines'
steps; a machine's step that starts after the bootstrap finds Arda's API answering, long before the GitOps layer is
applied, and runs what a machine joining a running cluster runs, the resume of an earlier run's leftovers included.
Issue #52: on rk1 the third machine's step started after the bootstrap and failed, resuming Argo CD's controller
(the workload the program names with `--pause`) that the same run installs only later. So the order run here is the
one that meets it: the first machine's step, the bootstrap, then each later machine's step, every one before the
GitOps layer, which the graph puts after all of them (checked first, from the graph, for each shape). The other
orders the graph allows (a later step that starts before the bootstrap and sees the API appear part-way) are not run.

The Talos side is the scripted stand-in (tools/talos-api), which hands out the admin kubeconfig of the file's control
plane (the program sends no kubeconfig: the upgrader fetches it through Talos, as on a real first `up`). The machine's
kubelet is played by the test, as in tests/upgrader/test_node_objects.py: once the machine is back, its Node (with the
boot ID of its new boot) and, on a control plane, Talos's static pods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iluvatar.graph import Graph
from iluvatar.render import cluster_of, redact
from iluvatar.simulate import Registration
from plans.bringup import ARGOCD_CONTROLLER
from tests.bringup import RELEASE, stdin_of, upgrader_args
from tests.edit import HOMELAB, RK1
from tests.sims import simulated
from tests.upgrader.kube import NEW, STABLE, _kubelet_reports, control_plane_images
from tests.upgrader.run import Result, mutations, upgrader, upgrader_watched
from tools import upstream
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, link, mac, node, scenario, talos_api

pytestmark = pytest.mark.kube

# A machine installs and reboots from disk in the stand-in in this long (a real one: minutes).
INSTALL: dict[str, Any] = {"maintenance": True, "install": {"downMs": 300}}
# The steps' bound here: the program's 45 minutes would only make a failing test slow.
TIMEOUT = "120s"


def _steps(graph: Graph) -> tuple[list[Registration], Registration]:
    """Arda's machines' apply steps in the engine's dependency order, and the bootstrap."""
    order = graph.order()
    applies = [r for r in order if upgrader_args(r)[:1] == ["apply"]]
    (bootstrap,) = [r for r in order if upgrader_args(r)[:1] == ["bootstrap"]]
    return applies, bootstrap


def _gitops(graph: Graph, workload: str) -> Registration:
    """The release that installs the workload the steps pause (`Kind/namespace/name`): Arda's Helm release in its
    namespace, whose chart, rendered by the real Helm with the release's own values, makes exactly that workload as
    Argo CD's controller (the one Deployment or StatefulSet that runs it)."""
    namespace = workload.split("/")[1]
    (release,) = [r for r in graph.of_type(RELEASE) if cluster_of(r) == "arda" and redact(r.inputs).get("namespace") == namespace]
    inputs = redact(release.inputs)
    objects = upstream.helm_template(
        upstream.chart(inputs["chart"], inputs["version"]), inputs["values"], release=inputs["name"], namespace=namespace, kube_version="v1.35.1"
    )
    controllers = [
        f"{o['kind']}/{o['metadata'].get('namespace', namespace)}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment")
        and any("/usr/local/bin/argocd-application-controller" in c.get("args", []) for c in o["spec"]["template"]["spec"]["containers"])
    ]
    assert controllers == [workload], controllers
    return release


def _args(reg: Registration, api: TalosAPI) -> list[str]:
    """The step's arguments as the program writes them, at the stand-in's address and with the test's bound."""
    args = upgrader_args(reg)
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and args[i - 1] == "--node":
            arg = api.node_arg(arg.split("=", 1)[0])
        elif i and args[i - 1] == "--timeout":
            arg = TIMEOUT
        out.append(arg)
    return out


def _stdin(reg: Registration, api: TalosAPI, name: str, role: str) -> dict[str, Any]:
    """The step's stdin as the program sends it (its keys, a Ceph host's hooks as they are), the secrets the stand-in's."""
    sent = stdin_of(reg)
    assert set(sent) <= {"talosconfig", "machineConfig", "hooks"}, sorted(sent)
    stdin: dict[str, Any] = {**sent, "talosconfig": api.talosconfig_text()}
    if "machineConfig" in sent:
        stdin["machineConfig"] = api.config(role, installer(VANILLA, NEW), patches=link(mac(name)))
    return stdin


def _role(args: list[str]) -> str:
    return args[args.index("--role") + 1]


def _name(args: list[str]) -> str:
    return args[args.index("--node") + 1].split("=", 1)[0]


@pytest.mark.parametrize("path", [RK1, HOMELAB], ids=["rk1", "homelab"])
def test_the_first_up_runs_every_machines_step_in_an_order_the_graph_allows_and_each_one_after_the_bootstrap_passes(
    kube_talos: Cluster, static_pods: Callable[[str, dict[str, str]], None], path: Path
) -> None:
    graph = Graph.of(simulated(path))
    applies, bootstrap = _steps(graph)
    first, later = applies[0], applies[1:]
    # The graph's order, which the engine follows: the bootstrap waits for the first machine's step alone, so every
    # later machine's step may start after it; and the GitOps layer, which installs what the steps pause, comes after
    # every machine's step, so none of them finds it.
    assert graph.after(bootstrap, first)
    assert later and not any(graph.after(bootstrap, step) or graph.after(step, bootstrap) for step in later)
    # Each step pauses Argo CD's controller, and only it: the value that follows each --pause.
    assert [[v for f, v in zip(upgrader_args(s), upgrader_args(s)[1:], strict=False) if f == "--pause"] for s in applies] == [
        [ARGOCD_CONTROLLER]
    ] * len(applies)
    gitops = _gitops(graph, ARGOCD_CONTROLLER)
    assert all(graph.after(gitops, step) for step in applies)

    names = [_name(upgrader_args(step)) for step in applies]
    roles = {_name(upgrader_args(step)): _role(upgrader_args(step)) for step in applies}
    ips = addresses(len(names))
    nodes = [node(n, ip, roles[n], NEW, **INSTALL) for n, ip in zip(names, ips, strict=True)]
    with talos_api(scenario(nodes, bootstrapped=False, endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)) as api:

        def kubelet(name: str) -> Callable[[str], bool]:
            """The machine's kubelet, once the machine is back from its install: its Node and its static pods."""

            def on_line(line: str) -> bool:
                if line.startswith(f"upgrader: {name}: back: it answers at "):
                    registered(name)
                return False

            return on_line

        def registered(name: str) -> None:
            kube_talos.create_nodes([_kubelet_reports(api, kube_talos, name, control_plane=roles[name] == "controlplane")])
            if roles[name] == "controlplane":
                static_pods(name, control_plane_images(api.config("controlplane", installer(VANILLA, NEW))))

        def run(step: Registration) -> Result:
            args = _args(step, api)
            name = _name(args)
            stdin = _stdin(step, api, name, roles[name])
            if "--etcd-snapshot" in args:
                # The first control plane's snapshot path is relative to the project folder: here, the test's.
                args[args.index("--etcd-snapshot") + 1] = str(Path(api.talosconfig).parent / "snapshot.db")
            if roles[name] == "controlplane":
                args[-2:-2] = STABLE
            return upgrader_watched(args, stdin, kubelet(name))

        # 1. The first control plane: handed its config before any etcd exists; it installs on its own.
        handed = run(first)
        assert handed.code == 0, handed.stderr
        assert mutations(api) == [(names[0], "MachineService/ApplyConfiguration AUTO")]

        # 2. The bootstrap, once it has installed and rebooted. Its kubelet registers once etcd and the API run.
        boot = upgrader(_args(bootstrap, api), {"talosconfig": api.talosconfig_text()})
        assert boot.code == 0, boot.stderr
        registered(names[0])

        # 3. Every later machine's step, after the bootstrap and before the GitOps layer: each joins a running cluster
        # and resumes nothing, since nothing was paused (Argo CD's controller does not exist yet).
        for step in later:
            name = _name(upgrader_args(step))
            result = run(step)
            assert result.code == 0, result.stderr
            steps = [line.removeprefix(f"upgrader: {name}: ") for line in result.lines]
            assert steps[-2:] == ["healthy", f"resume: {ARGOCD_CONTROLLER} does not exist (yet): nothing to resume"], result.stderr
            assert json.loads(result.stdout)["node"] == name
        assert [m for m in mutations(api) if m[1] != "MachineService/Bootstrap"] == [(n, "MachineService/ApplyConfiguration AUTO") for n in names]
        assert all(not s["maintenance"] and s["up"] for s in api.state().values())
    assert kube_talos.client.get("apps/v1", "StatefulSet", "argocd-application-controller", "argocd") is None
