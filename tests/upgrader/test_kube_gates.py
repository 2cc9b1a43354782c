"""The upgrader's cluster-wide gates: `health` (upgrader/internal/health: etcd, the control plane's static pods, the API,
every Node), `wait-kube` (internal/kube/waitkube.go) and `kubernetes-preflight` (internal/kube/preflight.go: version
skew, the deprecated-API metric).

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes), the file's own (`kube_talos`, one per module), and its answers are the API
server's own. A node is the same name in both: the stand-in's Talos node and a kwok Node. What these files share is
tests/upgrader/kube.py and tests/upgrader/conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.upgrader.kube import KUBELET, NEW, TO, _ids, control_plane_images, kwok_node, run, unique
from tests.upgrader.run import Result, upgrader
from tools.kube_cluster import TALOS, Cluster
from tools.talos_api import addresses, node, scenario, talos_api

pytestmark = pytest.mark.kube


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
    # At once, as this line shows: a wait that went on would end at the 60 s --timeout as "admits: timed out; last seen:
    # ..." (wait.Poll's stillFailing). No wall-clock bound on the run: that measured the loaded machine, not the step.


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
