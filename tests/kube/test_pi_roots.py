"""The netbooted maiar's roots' objects on the Ainur's real API server (review 41-1 M1, M2): the homelab with eonwe and
ilmare netbooting and manwe booting from its card, its netboot objects and the Pis' Longhorn NodePatches written as the
program writes them, then the pods scheduled."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from iluvatar.simulate import Registration, simulate
from plans import storage
from stacks.load import read_stack_file
from tests.edit import edit, homelab_doc, write_stack
from tests.kube.deploy import deployed
from tools import gotools, kube_program
from tools.kube_cluster import K3S, Cluster

pytestmark = pytest.mark.kube

NETBOOTING = {"iluvatar:nodes[1].board": "rpi4", "iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "9ffefdef",
              "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}  # fmt: skip


def test_each_pis_roots_volume_is_admitted_on_the_class_whose_replicas_only_the_card_pis_tagged_hold(tmp_path: Path) -> None:
    stack_file = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), NETBOOTING), stack="homelab"))

    def roots(r: Registration) -> bool:
        return r.name.startswith(("netboot-", "storage-ainur-node-"))

    with deployed(stack_file, tmp_path / "kube", only=roots, sim=simulate(stack_file)) as deployment:
        assert deployment.report.refusals == [], "\n".join(deployment.report.refusals)
        # Each root's Longhorn Volume patch (review 41-6 H2) needs Longhorn's CRDs, which no module the proxy serves
        # holds: left out and said, not written to a server that would refuse any kind it does not know.
        assert sorted(n for n in deployment.report.not_rendered if "VolumePatch" in n) == [
            f"ainur: kubernetes:longhorn.io/v1beta2:VolumePatch (netboot-volume-{c}): {kube_program.UNRENDERABLE['longhorn']}"
            for c in ("pi-root-eonwe", "pi-root-ilmare")
        ]
        client = deployment.clusters["ainur"].client
        sc = client.get("storage.k8s.io/v1", "StorageClass", "pi-roots")
        assert sc is not None
        assert (sc["provisioner"], sc["reclaimPolicy"], sc["allowVolumeExpansion"]) == ("driver.longhorn.io", "Retain", True)
        assert sc["parameters"] == {"numberOfReplicas": "1", "staleReplicaTimeout": "30", "nodeSelector": storage.PI_ROOT_TAG, "fsType": "ext4"}
        claims = {
            name: (c["spec"]["storageClassName"], c["spec"]["resources"]["requests"]["storage"], c["metadata"]["labels"].get("iluvatar/pi"))
            for name in ("pi-root-eonwe", "pi-root-ilmare", "pi-roots")
            for c in [client.get("v1", "PersistentVolumeClaim", name, "netboot")]
            if c is not None
        }
        assert claims == {
            "pi-root-eonwe": ("pi-roots", "20Gi", "eonwe"),
            "pi-root-ilmare": ("pi-roots", "20Gi", "ilmare"),
        }
        # Longhorn's default node tags (what its kubernetes_node_controller copies into the Longhorn Node's tags) on
        # the card Pi with a data disk alone: never on a netbooting maia, whose disk a root must not depend on.
        tagged = {
            n["metadata"]["name"]: json.loads(n["metadata"]["annotations"][storage.LONGHORN_NODE_TAGS_ANNOTATION])
            for n in client.list("v1", "Node")
            if storage.LONGHORN_NODE_TAGS_ANNOTATION in n["metadata"].get("annotations", {})
        }
        assert tagged == {"manwe": [storage.PI_ROOT_TAG]}
        # A new homelab has no first version's volume (review 41-6 H1): pi-nfs mounts the Pis' own alone.
        assert client.get("v1", "PersistentVolumeClaim", "pi-roots", "netboot") is None
        # The NFS server's pod, with every Pi's volume, admitted and scheduled on the card Pi.
        nfs = deployment.workload("ainur", "Deployment netboot/pi-nfs")
        assert nfs.problems == [] and nfs.nodes == ["manwe"], nfs.problems


# Longhorn's Volume and Node kinds as far as the placement wait reads them: CRDs of this test's own, every field kept
# (Longhorn's own CRDs are in no module the proxy serves: kube_program.UNRENDERABLE), status a subresource as Longhorn's
# CRDs declare it (longhorn-manager v1.10.1 k8s/crds.yaml). What is real here: the API server and kubectl v0.35.1, as
# `k3s kubectl` embeds it, answering the script's reads and the tag command it prints.
def _longhorn_crd(kind: str, plural: str) -> dict[str, object]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.longhorn.io"},
        "spec": {
            "group": "longhorn.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": "v1beta2", "served": True, "storage": True, "schema": schema, "subresources": {"status": {}}}],
        },
    }


STANDIN_SUDO = '#!/bin/sh\nexec "$@"\n'
# `k3s kubectl` as the Pi runs it: the real kubectl, the cluster's admin kubeconfig (tests/netns/pis.py's stand-in k3s).
STANDIN_K3S = '#!/bin/sh\n[ "$1" = kubectl ] || exit 2\nshift\nexec __KUBECTL__ "$@"\n'


def test_the_placement_wait_reads_the_real_api_server_and_the_tag_command_it_prints_works(kube_fresh: Callable[..., Cluster], tmp_path: Path) -> None:
    """Review 41-6 M4, against the real API server and kubectl: the wait fails on a Volume whose Scheduled is False,
    naming manwe's missing tag and the command that adds it; that command, run as printed, tags manwe and keeps its
    other tag; a Volume reported Scheduled True passes; a claim the running pi-nfs mounts is not waited on."""
    from plans.netboot import pi_pods
    from tests.plans.test_netboot_pis import netbooting, node

    # The wait reads objects only (a Deployment's spec, a claim's volume, Longhorn's custom resources), which the test
    # writes: no controller, scheduler or kubelet has a part in it, so the Ainur's API server and its etcd alone.
    kube_k3s = kube_fresh(K3S, components=("etcd", "kube-apiserver"))
    client = kube_k3s.client
    for crd in (_longhorn_crd("Volume", "volumes"), _longhorn_crd("Node", "nodes"), _longhorn_crd("Replica", "replicas")):
        client.create(crd)
    for ns in ("netboot", "longhorn-system"):
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sudo").write_text(STANDIN_SUDO)
    (bin_ / "k3s").write_text(STANDIN_K3S.replace("__KUBECTL__", str(gotools.build("kubectl"))))
    for name in ("sudo", "k3s"):
        (bin_ / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "KUBECONFIG": str(kube_k3s.kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
    stack = netbooting()

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)

    def volume_status(status: str, reason: str = "", message: str = "") -> None:
        condition = {"type": "Scheduled", "status": status, "reason": reason, "message": message}
        client.merge_patch(volume, {"status": {"conditions": [condition]}}, subresource="status")

    # The CRDs established: each kind answers a list.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if run("sudo k3s kubectl -n longhorn-system get volumes.longhorn.io,nodes.longhorn.io,replicas.longhorn.io -o name").returncode == 0:
            break
        time.sleep(0.5)
    client.create(
        {
            "apiVersion": "longhorn.io/v1beta2",
            "kind": "Node",
            "metadata": {"name": "manwe", "namespace": "longhorn-system"},
            "spec": {"tags": ["ssd"]},
        }
    )
    volume = client.create(
        {
            "apiVersion": "longhorn.io/v1beta2",
            "kind": "Volume",
            "metadata": {"name": "pvc-1", "namespace": "longhorn-system"},
            "spec": {"numberOfReplicas": 1},
        }
    )
    claim = {"accessModes": ["ReadWriteOnce"], "storageClassName": "pi-roots", "volumeName": "pvc-1", "resources": {"requests": {"storage": "20Gi"}}}
    client.create(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pi-root-ilmare", "namespace": "netboot"}, "spec": claim}
    )

    def pi_nfs(claims: list[str]) -> dict[str, object]:
        volumes = [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]
        pod = {"containers": [{"name": "nfs", "image": "debian:bookworm"}], "volumes": volumes}
        labels = {"app": "pi-nfs"}
        spec = {"replicas": 0, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pi-nfs", "namespace": "netboot"}, "spec": spec}

    client.apply(pi_nfs(["pi-root-eonwe"]), field_manager="test")
    volume_status("False", "ReplicaSchedulingFailure", "precheck new replica failed")
    got = run(pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=0))
    assert got.returncode == 1, got.stderr
    assert (
        "pi-root-ilmare's volume pvc-1: its condition Scheduled is False (ReplicaSchedulingFailure: precheck new replica failed); "
        "manwe is not tagged pi-root (its tags: ['ssd']); tag it with: "
    ) in got.stderr, got.stderr
    tag = got.stderr.split("tag it with: ", 1)[1].split("; pi-nfs still serves", 1)[0]
    assert run(tag).returncode == 0
    manwe = client.get("longhorn.io/v1beta2", "Node", "manwe", "longhorn-system")
    assert manwe is not None and manwe["spec"]["tags"] == ["ssd", "pi-root"]
    volume_status("True")
    got = run(pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=30))
    assert (got.returncode, got.stderr) == (0, "iluvatar: Longhorn placed the copies of pi-root-ilmare's volume pvc-1\n"), got.stderr
    # Review 41-6 L2: a netbooting Pi still tagged is named, and the command printed removes the tag alone.
    client.create(
        {
            "apiVersion": "longhorn.io/v1beta2",
            "kind": "Node",
            "metadata": {"name": "eonwe", "namespace": "longhorn-system"},
            "spec": {"tags": ["pi-root", "ssd"]},
        }
    )
    got = run(pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=30))
    assert got.returncode == 0 and "iluvatar: WARNING: eonwe netboots and its Longhorn node is still tagged pi-root" in got.stderr, got.stderr
    assert run(got.stderr.split("remove the tag with: ", 1)[1].split(" (docs/", 1)[0]).returncode == 0
    eonwe = client.get("longhorn.io/v1beta2", "Node", "eonwe", "longhorn-system")
    assert eonwe is not None and eonwe["spec"]["tags"] == ["ssd"]
    # Review 41-14 H1: a copy of the new volume on eonwe, which netboots, is refused before pi-nfs moves onto it.
    replica = {"volumeName": "pvc-1", "nodeID": "eonwe"}
    client.create(
        {"apiVersion": "longhorn.io/v1beta2", "kind": "Replica", "metadata": {"name": "pvc-1-r-0", "namespace": "longhorn-system"}, "spec": replica}
    )
    got = run(pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=30))
    assert got.returncode == 1 and "pi-root-ilmare's volume pvc-1 has a copy on a Pi that netboots (pvc-1-r-0 on eonwe)" in got.stderr, got.stderr
    client.apply(pi_nfs(["pi-root-eonwe", "pi-root-ilmare"]), field_manager="test")
    volume_status("False", "ReplicaSchedulingFailure")
    got = run(pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=0))
    assert (got.returncode, got.stderr) == (0, "iluvatar: pi-root-ilmare is served by the running pi-nfs already: no new volume to wait for\n")
