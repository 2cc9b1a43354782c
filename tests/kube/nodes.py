"""A Pi whose kubelet stops reporting, on a test control plane (tools.kube_cluster) where kwok plays the kubelets:
for the tests that need a Node the node lifecycle controller finds silent (tests/netns/test_k3s_steps.py,
tests/kube/test_netboot_cache_roll.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tools.kube_cluster import NO_CNI, Cluster


def _recreate_node(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    """The Node again, as it stood, with these labels; made anew, so that the Node kwok leaves alone (NO_CNI: kwok
    v0.8.0 node_controller.go:166-179, `need`, read at each of its events) holds no lease of kwok's. A stage job kwok
    had queued for the old Node (a heartbeat) may still play on the new one: the API server refuses kwok any write to a
    Node labelled NO_CNI (tools.kube_cluster.NO_CNI_POLICY), so its status stays as made here."""
    node = cluster.client.get("v1", "Node", name)
    assert node is not None, name
    cluster.client.delete(node)
    deadline = time.monotonic() + 30
    while cluster.client.get("v1", "Node", name) is not None:
        assert time.monotonic() < deadline, f"Node {name} still there 30 s after its delete"
        time.sleep(0.05)
    meta = {"name": name, "labels": labels}
    cluster.client.create({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": node.get("spec", {}), "status": node["status"]})


@contextmanager
def kubelet_gone(cluster: Cluster, name: str) -> Iterator[None]:
    """A Pi whose kubelet never reports: nothing writes its Node's status. kwok plays every other Pi's kubelet and
    heartbeats a Ready Node's status on its own (its node-heartbeat Stage, every 20-25 s: kwok v0.8.0
    kustomize/stage/node/heartbeat/node-heartbeat.yaml, which tools/kube-control-plane/main.go plays), which a dead
    kubelet never would: a heartbeat landing in the 2 s a test waits passed the wait (a CI run did). So the Node is
    left to no one (NO_CNI) while the Pi is broken, its Ready status and heartbeat as they were, and handed back to
    kwok after."""
    node = cluster.client.get("v1", "Node", name)
    assert node is not None, name
    labels = dict(node["metadata"].get("labels") or {})
    _recreate_node(cluster, name, {**labels, NO_CNI: ""})
    try:
        yield
    finally:
        _recreate_node(cluster, name, labels)
