"""The inventory's machines as the Node objects their kubelets would register, for kwok to play.

Nothing here is written by hand: each label, annotation and taint comes from the plan that puts it
on the real machine, or from the distribution that does:

- Arda (Talos v1.14.1): `machine.nodeLabels` and `machine.nodeAnnotations` of the node's Talos patch
  (`plans.talos.node_documents`: `iluvatar/role`, `iluvatar/board`, `iluvatar/storage`,
  `iluvatar/data-disks`) and of the stack's own patches; on a control plane Talos adds
  `node-role.kubernetes.io/control-plane` and `node.kubernetes.io/exclude-from-external-load-balancers`
  (node_label_spec.go, generate/init.go) and the `node-role.kubernetes.io/control-plane:NoSchedule`
  taint unless `allowSchedulingOnControlPlanes` (node_taint_spec.go);
- the Ainur (k3s): the `node-label` list of the Pi's k3s config (`plans.k3s.config`); a server
  (valar) also gets k3s's `node-role.kubernetes.io/{control-plane,master,etcd}=true` and no taint;
  k3s's cloud controller adds `node.kubernetes.io/instance-type=k3s`;
- every kubelet: `kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch` (the board's)
  and their `beta.` twins; the node's inventory address as its InternalIP.

Labels a Pulumi resource adds to a running node (Longhorn's, through a NodePatch) are not here:
applying the program's objects adds them.
"""

from __future__ import annotations

from typing import Any

import yaml

from plans import k3s, talos
from stacks.boards import BOARDS
from stacks.model import Node, StackConfig
from tools.kube_cluster import K3S, TALOS

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def _kubelet_labels(node: Node) -> dict[str, str]:
    arch = BOARDS[node.board].arch
    return {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }


def _node(
    node: Node, labels: dict[str, str], annotations: dict[str, str], taints: list[dict[str, str]], kubelet: str, os_image: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": dict(sorted(labels.items())), "annotations": dict(sorted(annotations.items()))},
        "spec": {"taints": taints} if taints else {},
        # kwok keeps what the node registers with: its address, architecture and versions.
        "status": {
            "addresses": [{"type": "InternalIP", "address": str(node.ip)}, {"type": "Hostname", "address": node.name}],
            "nodeInfo": {
                "architecture": BOARDS[node.board].arch,
                "operatingSystem": "linux",
                "kubeletVersion": kubelet,
                "osImage": os_image,
                "containerRuntimeVersion": "containerd://2.1.4",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def talos_node(stack: StackConfig, node: Node) -> dict[str, Any]:
    """One Arda machine as its Talos kubelet registers it."""
    documents = talos.node_documents(stack, node, installer_image="factory.talos.dev/installer/test")
    patches = [*stack.arda.patches, *node.talos_patches]
    labels, annotations = _kubelet_labels(node), {}
    taints: list[dict[str, str]] = []
    allow = stack.arda.allow_scheduling_on_control_planes
    for document in [*documents, *patches]:
        machine = document.get("machine") or {} if isinstance(document, dict) else {}
        labels.update({k: str(v) for k, v in (machine.get("nodeLabels") or {}).items()})
        annotations.update({k: str(v) for k, v in (machine.get("nodeAnnotations") or {}).items()})
        for key, value in (machine.get("nodeTaints") or {}).items():
            # Talos's nodeTaints: `key: value:Effect` or `key: Effect`.
            taint_value, _, effect = str(value).rpartition(":")
            taints.append({"key": key, "value": taint_value, "effect": effect} if taint_value else {"key": key, "effect": effect})
        cluster = document.get("cluster") or {} if isinstance(document, dict) else {}
        if "allowSchedulingOnControlPlanes" in cluster:
            allow = bool(cluster["allowSchedulingOnControlPlanes"])
    if talos.machine_type(node) == "controlplane":
        labels[CONTROL_PLANE] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        if not allow:
            taints.append({"key": CONTROL_PLANE, "effect": "NoSchedule"})
    return _node(node, labels, annotations, taints, stack.arda.kubernetes_version, TALOS.os_image)


def k3s_node(stack: StackConfig, node: Node) -> dict[str, Any]:
    """One Pi as its k3s kubelet registers it."""
    assert stack.ainur is not None
    config = yaml.safe_load(k3s.config(stack, node, token="(not needed for the labels)"))  # noqa: S106 - not a credential
    labels = _kubelet_labels(node)
    for item in config.get("node-label") or []:
        key, _, value = str(item).partition("=")
        labels[key] = value
    labels["node.kubernetes.io/instance-type"] = "k3s"
    labels["beta.kubernetes.io/instance-type"] = "k3s"
    if node.role == "valar":
        labels |= {CONTROL_PLANE: "true", "node-role.kubernetes.io/master": "true", "node-role.kubernetes.io/etcd": "true"}
    taints = [_k3s_taint(str(t)) for t in config.get("node-taint") or []]
    return _node(node, labels, {}, taints, stack.ainur.k3s_version, K3S.os_image)


def _k3s_taint(text: str) -> dict[str, str]:
    """A `node-taint` of k3s's config, `key[=value]:effect`, as the kubelet's --register-with-taints reads it
    (k8s.io/kubernetes v1.35.1 pkg/util/taints/taints.go:38-70, parseTaint: the effect after the ':', the value after
    the '=')."""
    spec, _, effect = text.rpartition(":")
    key, eq, value = spec.partition("=")
    return {"key": key, **({"value": value} if eq else {}), "effect": effect}


def nodes(stack: StackConfig, cluster: str) -> list[dict[str, Any]]:
    """Every machine of `cluster` (`arda` or `ainur`) as a Node object, in inventory order."""
    if cluster == "arda":
        return [talos_node(stack, n) for n in stack.arda_nodes]
    if cluster == "ainur":
        return [k3s_node(stack, n) for n in stack.ainur_nodes] if stack.ainur is not None else []
    raise ValueError(f"unknown cluster {cluster!r}")
