"""Fixtures of the upgrader's Kubernetes-side tests that need the file's control plane (`kube_talos`): Talos's static
pods written by the test, and the names of the machines whose kubelet the stand-in plays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.upgrader.kube import FIRST_RENDER, _pod_ready, unique
from tools.kube_cluster import Cluster


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


@pytest.fixture
def kubelet_nodes(kube_talos: Cluster) -> Iterator[Callable[..., tuple[list[str], list[str]]]]:
    """Names for machines whose kubelet the stand-in plays: `make(control_planes, workers)`. Each kubelet registers its
    Node when it starts, as a real one does (tools/talos-api/noderegister.go), and kwok plays its status from then on; a
    test whose machine stays off creates the Node an earlier boot left. Their mirror pods go after the test (the stand-in,
    and its kubelets, have stopped by then), so no other test of the shared cluster finds an API server of theirs."""
    made: list[str] = []

    def make(control_planes: int = 0, workers: int = 0) -> tuple[list[str], list[str]]:
        cps, ws = [unique("valinor") for _ in range(control_planes)], [unique("istari") for _ in range(workers)]
        made.extend([*cps, *ws])
        return cps, ws

    yield make
    for name in made:
        for pod in kube_talos.client.list("v1", "Pod", "kube-system", fieldSelector=f"spec.nodeName={name}"):
            kube_talos.client.delete(pod)
