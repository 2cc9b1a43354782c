"""A machine's Node object across its life (upgrader/internal/reset, apply/handover.go, apply/readiness.go, bootid.go):
a destroy deletes it, a reflashed control plane's old one goes before it gets its config back, and a reflashed or
rebooted machine counts as back only once the kubelet of its new boot reports it.

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes), the file's own (`kube_talos`, one per module), and its answers are the API
server's own. A node is the same name in both: the stand-in's Talos node and a kwok Node. What these files share is
tests/upgrader/kube.py and tests/upgrader/conftest.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.upgrader.kube import NEW, STABLE, _kubelet_reports, _last, _sysctl, control_plane_images, kwok_node, unique
from tests.upgrader.run import Result, mutations, upgrader, upgrader_watched
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, link, mac, node, scenario, talos_api

pytestmark = pytest.mark.kube


# A Pulumi delete (`reset --mode auto`) and a reflashed control plane's apply remove the Node object too. Pulumi
# gives a delete the stdin of its apply (talosconfig and machine config, no kubeconfig): the kubeconfig comes
# from a remaining control plane, as `talosctl kubeconfig` fetches it.


def _delete(api: TalosAPI, name: str, last: dict[str, Any], dead_after: str = "10s") -> Result:
    args = ["reset", "--node", api.node_arg(name), "--mode", "auto", "--timeout", "60s", "--dead-after", dead_after]
    return upgrader(args, {"talosconfig": api.talosconfig_text(), "machineConfig": api.node_config(name)}, record=last)


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
