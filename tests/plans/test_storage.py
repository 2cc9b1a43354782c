"""The storage plan, checked by its real consumers: Helm with the pinned Rook and local-path-provisioner
charts, kubeconform against Rook's CRDs (v1.20.4), Argo CD's and Kubernetes' own schemas.

Longhorn's and csi-driver-nfs's charts are not served by the Go module proxy (README, Storage):
their values are pinned here by value, and what Pulumi itself creates for them (the nfs
StorageClass, the Applications, the namespaces) goes through kubeconform like everything else.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import k3s, local_volumes, storage, talos
from stacks import StackConfig, load_stack_file
from stacks.storage import Deployed
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tools import upstream

ROOK = ("rook", storage.ROOK_VERSION)
ARGO_CD = ("argo-cd", "v3.5.2")
DEFAULT = storage.DEFAULT_CLASS_ANNOTATION


def _variant(tmp_path: Path, name: str, set_: dict[str, Any] | None = None, delete: list[str] | None = None) -> StackConfig:
    folder = tmp_path / name
    folder.mkdir()
    return load_stack_file(write_stack(folder, edit(homelab_doc(), set_, delete)))


def _app(stack: StackConfig, name: str) -> storage.App:
    return next(a for a in storage.applications(stack) if a.name == name)


@functools.cache
def _chart(name: str) -> Path:
    version = storage.LOCAL_PATH_VERSION.removeprefix("v") if name == "local-path-provisioner" else storage.ROOK_VERSION
    # ceph-csi-operator (Rook's CSI since v1.20) is a subchart from a Helm repository no Go module serves.
    return upstream.chart(name, version, omit=("ceph-csi-operator",) if name == "rook-ceph" else ())


def _render(stack: StackConfig, name: str) -> list[dict[str, Any]]:
    app = _app(stack, name)
    return upstream.helm_template(_chart(name), app.values, release=name, namespace=app.namespace, kube_version=stack.arda.kubernetes_version)


def _unread_keys(chart: Path, values: dict[str, Any]) -> list[str]:
    """Value keys neither in the chart's values.yaml nor read by one of its templates (nor under a key a template reads whole).

    Neither chart ships a values.schema.json; this is what stands in for one: a misspelt key is
    silently ignored by Helm, and found here.
    """
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    read = upstream.template_value_paths(chart)
    unread = []

    def walk(node: Any, default: Any, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, key)
            known = isinstance(default, dict) and key in default
            if not known and here not in read and not any(here[:n] in read for n in range(1, len(here))):
                unread.append(".".join(here))
            elif isinstance(value, dict) and isinstance(default, dict) and isinstance(default.get(key), dict) and here not in read:
                walk(value, default[key], here)

    walk(values, defaults, ())
    return unread


# --- Rook-Ceph: the inventory's disks, exactly ---------------------------------------------------


def test_ceph_nodes_are_the_inventorys_arda_data_disks() -> None:
    stack = load_stack_file(HOMELAB)
    assert storage.ceph_nodes(stack) == [
        {"name": "taniquetil", "devices": [{"name": "/dev/nvme0n1"}]},
        {"name": "tirion", "devices": [{"name": "/dev/nvme0n1"}]},
        {"name": "alqualonde", "devices": [{"name": "/dev/nvme0n1"}]},
    ]
    assert storage.ceph_nodes(load_stack_file(RK1)) == [{"name": f"talos-{i}", "devices": [{"name": "/dev/nvme0n1"}]} for i in range(1, 5)]


def test_by_id_names_reach_ceph_as_written(tmp_path: Path) -> None:
    disk = "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456"
    stack = _variant(tmp_path, "by-id", {"iluvatar:nodes[4].dataDisks": [disk, "/dev/nvme1n1"]})
    assert storage.ceph_nodes(stack)[1] == {"name": "tirion", "devices": [{"name": disk}, {"name": "/dev/nvme1n1"}]}


def test_three_hosts_three_mons_three_copies_one_per_host() -> None:
    values = _app(load_stack_file(HOMELAB), "rook-ceph-cluster").values
    spec = values["cephClusterSpec"]
    assert spec["mon"] == {"count": 3, "allowMultiplePerNode": False}
    assert spec["mgr"] == {"count": 2, "allowMultiplePerNode": False}
    assert spec["storage"]["useAllNodes"] is False and spec["storage"]["useAllDevices"] is False
    assert spec["cleanupPolicy"] == {"confirmation": "", "allowUninstallWithVolumes": False, "wipeDevicesFromOtherClusters": False}
    assert spec["removeOSDsIfOutAndSafeToRemove"] is False
    [pool] = values["cephBlockPools"]
    assert pool["spec"] == {"failureDomain": "host", "replicated": {"size": 3, "requireSafeReplicaSize": True}}
    [filesystem] = values["cephFileSystems"]
    assert filesystem["spec"]["metadataPool"] == {"failureDomain": "host", "replicated": {"size": 3, "requireSafeReplicaSize": True}}
    assert filesystem["spec"]["dataPools"] == [{"name": "data0", "failureDomain": "host", "replicated": {"size": 3, "requireSafeReplicaSize": True}}]


def test_fewer_hosts_fewer_mons_and_a_chosen_size(tmp_path: Path) -> None:
    stack = _variant(tmp_path, "two", {"iluvatar:storage.arda.ceph.replicas": 2}, ["iluvatar:nodes[5].dataDisks"])
    values = _app(stack, "rook-ceph-cluster").values
    assert values["cephClusterSpec"]["mon"]["count"] == 1
    assert values["cephBlockPools"][0]["spec"]["replicated"] == {"size": 2, "requireSafeReplicaSize": True}
    one = _variant(tmp_path, "one", {"iluvatar:storage.arda.ceph.replicas": 1}, ["iluvatar:nodes[5].dataDisks", "iluvatar:nodes[4].dataDisks"])
    # Rook refuses a one-copy pool unless told it is on purpose.
    assert _app(one, "rook-ceph-cluster").values["cephBlockPools"][0]["spec"]["replicated"] == {"size": 1, "requireSafeReplicaSize": False}


def test_adding_a_disk_changes_only_that_nodes_storage_values(tmp_path: Path) -> None:
    before = load_stack_file(HOMELAB)
    after = _variant(tmp_path, "more", {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"]})
    old, new = ({a.name: a.manifest for a in storage.applications(s)} for s in (before, after))
    assert [name for name in old if old[name] != new[name]] == ["rook-ceph-cluster"]
    nodes_before, nodes_after = (storage.ceph_nodes(s) for s in (before, after))
    assert [i for i, (a, b) in enumerate(zip(nodes_before, nodes_after, strict=True)) if a != b] == [1]
    old_values, new_values = (
        old["rook-ceph-cluster"]["spec"]["source"]["helm"]["valuesObject"],
        new["rook-ceph-cluster"]["spec"]["source"]["helm"]["valuesObject"],
    )
    new_values["cephClusterSpec"]["storage"]["nodes"][1] = old_values["cephClusterSpec"]["storage"]["nodes"][1]
    assert new_values == old_values


def test_retiring_a_disk_takes_it_out_of_the_cluster_and_runs_the_job(tmp_path: Path) -> None:
    stack = _variant(
        tmp_path, "retire", {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"], "iluvatar:nodes[4].retire": ["/dev/nvme1n1"]}
    )
    assert storage.ceph_nodes(stack)[1] == {"name": "tirion", "devices": [{"name": "/dev/nvme0n1"}]}
    [job] = storage.retire_jobs(stack)
    assert job["metadata"]["name"] == "osd-retire-tirion"
    assert job["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true", "iluvatar.dev/retiring": "/dev/nvme1n1"}
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "tirion"}
    script = pod["containers"][0]["command"][2]
    assert "ceph osd out $ids" in script and "until ceph osd safe-to-destroy $ids" in script
    # It only marks out and waits: purging stays a person's step (the runbook).
    assert not [line for line in script.splitlines() if line.strip().startswith("ceph osd purge")]
    assert storage.state(stack, Deployed({}, {}))["cephRetiring"] == {"tirion": ["/dev/nvme1n1"]}


def test_a_whole_machine_retires_from_the_crush_map(tmp_path: Path) -> None:
    stack = _variant(tmp_path, "whole", {"iluvatar:storage.arda.ceph.replicas": 2, "iluvatar:nodes[5].retire": True})
    assert [n["name"] for n in storage.ceph_nodes(stack)] == ["taniquetil", "tirion"]
    [job] = storage.retire_jobs(stack)
    pod = job["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert 'ids=$(ceph osd ls-tree "$host")' in pod["containers"][0]["command"][2]


# --- Real Helm, real kubeconform -------------------------------------------------------------------


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_rook_charts_render_and_every_object_passes_kubeconform(path: Path) -> None:
    stack = load_stack_file(path)
    operator = _render(stack, "rook-ceph")
    cluster = _render(stack, "rook-ceph-cluster")
    assert upstream.kubeconform([*operator, *cluster], stack.arda.kubernetes_version, crds=[ROOK]) == []
    kinds = {(o["kind"], o["metadata"]["name"]): o for o in cluster}
    ceph = kinds["CephCluster", "rook-ceph"]
    assert ceph["spec"]["storage"]["nodes"] == storage.ceph_nodes(stack)
    assert ceph["spec"]["mon"]["count"] == 3
    assert kinds["CephBlockPool", "ceph-blockpool"]["spec"] == {"failureDomain": "host", "replicated": {"size": 3, "requireSafeReplicaSize": True}}
    block = kinds["StorageClass", "ceph-block"]
    assert (block["reclaimPolicy"], block["allowVolumeExpansion"], block["metadata"]["annotations"][DEFAULT]) == ("Retain", True, "true")
    assert block["parameters"]["clusterID"] == "rook-ceph" and block["parameters"]["pool"] == "ceph-blockpool"
    assert block["parameters"]["csi.storage.k8s.io/provisioner-secret-namespace"] == "rook-ceph"
    assert (("CephFilesystem", "ceph-filesystem") in kinds) is (path == HOMELAB)
    assert not [o for o in cluster if o["kind"] in ("CephObjectStore", "CephFilesystemSubVolumeGroup") and path == RK1]


def test_the_cephfs_class_renders_with_its_pool() -> None:
    cluster = _render(load_stack_file(HOMELAB), "rook-ceph-cluster")
    fs = next(o for o in cluster if o["kind"] == "StorageClass" and o["metadata"]["name"] == "ceph-filesystem")
    assert fs["parameters"]["fsName"] == "ceph-filesystem" and fs["parameters"]["pool"] == "ceph-filesystem-data0"
    assert fs["metadata"]["annotations"][DEFAULT] == "false"


def test_every_value_set_is_a_key_the_charts_know() -> None:
    stack = load_stack_file(HOMELAB)
    for name in ("rook-ceph", "rook-ceph-cluster", "local-path-provisioner"):
        assert _unread_keys(_chart(name), _app(stack, name).values) == [], name
    # The check can fail: a misspelt key is found (under a key a template reads whole, such as csi, it cannot look).
    assert _unread_keys(_chart("rook-ceph"), {"enableDiscoveryDeamon": False, "crd": {"enabled": True}}) == ["enableDiscoveryDeamon", "crd"]
    assert _unread_keys(_chart("local-path-provisioner"), {"storageClass": {"defaultClas": True}}) == ["storageClass.defaultClas"]


def test_local_path_chart_renders_on_the_user_volume_and_passes_kubeconform() -> None:
    stack = load_stack_file(HOMELAB)
    objects = _render(stack, "local-path-provisioner")
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version) == []
    kinds = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    config = yaml.safe_load(kinds["ConfigMap", "local-path-config"]["data"]["config.json"])
    assert config["nodePathMap"] == [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/var/mnt/local-path-provisioner"]}]
    assert kinds["ConfigMap", "local-path-config"]["data"]["helperPod.yaml"].count("busybox:1.37.0") == 1
    local = kinds["StorageClass", "local-path"]
    assert (local["reclaimPolicy"], local["volumeBindingMode"], local["metadata"]["annotations"][DEFAULT]) == (
        "Retain",
        "WaitForFirstConsumer",
        "false",
    )


def test_what_pulumi_creates_passes_kubeconform(tmp_path: Path) -> None:
    stack = _variant(
        tmp_path,
        "all",
        {
            "iluvatar:storage.nfs": {"server": "taniquetil", "share": "/volume1/kubernetes"},
            "iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"],
            "iluvatar:nodes[4].retire": ["/dev/nvme1n1"],
        },
    )
    objects = [*storage.namespaces(stack, "arda"), *storage.namespaces(stack, "ainur"), storage.nfs_storage_class(stack), *storage.retire_jobs(stack)]
    assert [o["kind"] for o in objects] == ["Namespace"] * 4 + ["StorageClass", "Job"]
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version) == []
    # Every Application against the CRDs of the Argo CD that syncs it.
    assert upstream.kubeconform([a.manifest for a in storage.applications(stack)], stack.arda.kubernetes_version, crds=[ARGO_CD]) == []
    nfs = storage.nfs_storage_class(stack)
    # A name the plan resolves is written as its address: the mount never waits on DNS.
    assert nfs["parameters"] == {"server": "192.168.0.21", "share": "/volume1/kubernetes", "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}
    assert nfs["mountOptions"] == ["nfsvers=4.1", "hard", "noatime"]


def test_storage_namespaces_are_privileged() -> None:
    stack = load_stack_file(HOMELAB)
    names = {c: [ns["metadata"]["name"] for ns in storage.namespaces(stack, c)] for c in ("arda", "ainur")}
    assert names == {"arda": ["rook-ceph", "local-path-storage"], "ainur": ["longhorn-system"]}
    for cluster in names:
        for ns in storage.namespaces(stack, cluster):
            assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


# --- One default StorageClass per cluster -----------------------------------------------------------


def _arda_defaults(stack: StackConfig) -> list[str]:
    """Arda's default classes, as the rendered charts and Pulumi's own classes mark them."""
    objects = [*_render(stack, "rook-ceph-cluster"), *_render(stack, "local-path-provisioner")]
    if storage.nfs_enabled(stack):
        objects.append(storage.nfs_storage_class(stack))
    classes = [o for o in objects if o["kind"] == "StorageClass"]
    return [o["metadata"]["name"] for o in classes if o["metadata"].get("annotations", {}).get(DEFAULT) == "true"]


def test_exactly_one_default_storage_class_on_arda(tmp_path: Path) -> None:
    assert _arda_defaults(load_stack_file(HOMELAB)) == ["ceph-block"]
    nfs = {"server": "192.168.0.40", "share": "/volume1/kubernetes"}
    assert _arda_defaults(_variant(tmp_path, "nfs", {"iluvatar:storage.nfs": nfs, "iluvatar:storage.arda.defaultClass": "nfs"})) == ["nfs"]
    assert _arda_defaults(_variant(tmp_path, "local", {"iluvatar:storage.arda.defaultClass": "local-path"})) == ["local-path"]
    assert _arda_defaults(_variant(tmp_path, "cephfs", {"iluvatar:storage.arda.defaultClass": "ceph-filesystem"})) == ["ceph-filesystem"]
    # Unset: Ceph's block class when Ceph runs.
    assert _arda_defaults(_variant(tmp_path, "unset", delete=["iluvatar:storage.arda.defaultClass"])) == ["ceph-block"]


def test_exactly_one_default_storage_class_on_the_ainur(tmp_path: Path) -> None:
    def defaults(stack: StackConfig) -> list[str]:
        first = yaml.safe_load(k3s.config(stack, stack.ainur_nodes[0], "T"))
        k3s_local = [] if "local-storage" in first["disable"] else ["local-path"]  # k3s's addon marks its class default
        longhorn = ["longhorn"] if storage.longhorn_enabled(stack) and _app(stack, "longhorn").values["persistence"]["defaultClass"] else []
        return longhorn + k3s_local

    assert defaults(load_stack_file(HOMELAB)) == ["longhorn"]
    assert defaults(_variant(tmp_path, "local", {"iluvatar:storage.ainur.defaultClass": "local-path"})) == ["local-path"]
    no_disks = ["iluvatar:nodes[0].dataDisks", "iluvatar:nodes[1].dataDisks", "iluvatar:nodes[2].dataDisks", "iluvatar:storage.ainur"]
    assert defaults(_variant(tmp_path, "none", delete=no_disks)) == ["local-path"]


# --- Longhorn on the Ainur (its chart is not fetchable: its values, pinned) ---------------------------


def test_longhorn_values_follow_the_pis_with_a_data_disk(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    values = _app(stack, "longhorn").values
    assert values["persistence"] == {"defaultClass": True, "defaultClassReplicaCount": 3, "reclaimPolicy": "Retain"}
    assert values["defaultSettings"]["defaultDataPath"] == "/var/lib/longhorn"
    assert values["defaultSettings"]["createDefaultDiskLabeledNodes"] is True
    assert storage.longhorn_node_labels(stack) == {n: {"node.longhorn.io/create-default-disk": "true"} for n in ("manwe", "eonwe", "ilmare")}
    two = _variant(tmp_path, "two", delete=["iluvatar:nodes[2].dataDisks"])
    assert _app(two, "longhorn").values["persistence"]["defaultClassReplicaCount"] == 2
    assert sorted(storage.longhorn_node_labels(two)) == ["eonwe", "manwe"]


# --- Talos: local volumes on the system disk, never a data disk -------------------------------------


def test_talos_patches_never_touch_a_data_disk() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        for node in stack.arda_nodes:
            docs = talos.node_documents(stack, node, "installer")
            # The only mention of a data disk is the annotation Ceph's operator may read.
            annotation = docs[0]["machine"].pop("nodeAnnotations", None)
            assert annotation == ({"iluvatar/data-disks": ",".join(node.data_disks)} if node.data_disks else None)
            text = yaml.safe_dump_all(docs)
            assert not [d for d in node.data_disks if d in text], node.name
            assert "disks" not in docs[0]["machine"]
            volumes = [d for d in docs if d.get("kind") in ("UserVolumeConfig", "VolumeConfig", "RawVolumeConfig")]
            assert [d.get("provisioning", {}).get("diskSelector") for d in volumes] == [{"match": "system_disk"}, None]
            assert docs[0]["machine"]["kubelet"]["extraMounts"] == [local_volumes.KUBELET_MOUNT]


def test_no_local_volumes_no_user_volume(tmp_path: Path) -> None:
    stack = _variant(tmp_path, "off", {"iluvatar:storage.arda.local": {"enabled": False}})
    docs = talos.node_documents(stack, stack.arda_nodes[0], "installer")
    assert [d.get("kind") for d in docs if d.get("kind") in ("UserVolumeConfig", "VolumeConfig")] == []
    assert "extraMounts" not in docs[0]["machine"]["kubelet"]
    assert "local-path-provisioner" not in [a.name for a in storage.applications(stack)]
