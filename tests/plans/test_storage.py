"""The storage plan, checked by its real consumers: Helm with the pinned Rook and local-path-provisioner
charts, kubeconform against Rook's CRDs (v1.20.4), Argo CD's and Kubernetes' own schemas.

Longhorn's and csi-driver-nfs's charts are not served by the Go module proxy (docs/layers/storage.md):
their values are pinned here by value, and what Pulumi itself creates for them (the nfs
StorageClass, the Applications, the namespaces) goes through kubeconform like everything else.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import backup, k3s, local_volumes, storage, talos
from stacks import StackConfig, load_stack_file
from stacks.storage import Deployed
from tests.edit import APP_BACKUPS, GOES_WITH_GITOPS, HOMELAB, RK1, edit, homelab_doc, write_stack
from tools import upstream

ROOK = ("rook", storage.ROOK_VERSION)
ARGO_CD = ("argo-cd", "v3.5.2")
DEFAULT = storage.DEFAULT_CLASS_ANNOTATION


def _variant(
    tmp_path: Path, name: str, set_: dict[str, Any] | None = None, delete: list[str] | None = None, keep_backups: bool = False
) -> StackConfig:
    folder = tmp_path / name
    folder.mkdir()
    # Without backups (plans.backup): a variant's classes or GitOps may not carry the apps' Snapshot copies, and
    # the snapshot Applications would blur what each storage case pins (the homelab's own are pinned above).
    backups = [
        *APP_BACKUPS,
        "iluvatar:backup",
        "iluvatar:backupS3AccessKeyId",
        "iluvatar:backupS3SecretAccessKey",
    ]
    # Without GitOps, without what goes with it (Grafana's and Headlamp's Applications).
    with_gitops = [p for p in GOES_WITH_GITOPS if p not in backups] if "iluvatar:gitops" in (delete or []) else []
    drop = [*([] if keep_backups else backups), *with_gitops, *(delete or [])]
    return load_stack_file(write_stack(folder, edit(homelab_doc(), set_, list(dict.fromkeys(drop)))))


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
    after = _variant(tmp_path, "more", {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"]}, keep_backups=True)
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
    # The VolumeSnapshotClasses (homelab's backups snapshot Ceph volumes) against the CSI snapshot CRDs the program installs.
    snapshots = ("external-snapshotter", backup.SNAPSHOTTER_VERSION)
    assert upstream.kubeconform([*operator, *cluster], stack.arda.kubernetes_version, crds=[ROOK, snapshots]) == []
    assert {o["metadata"]["name"] for o in cluster if o["kind"] == "VolumeSnapshotClass"} == (
        {"ceph-block", "ceph-filesystem"} if path == HOMELAB else set()
    )
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
            "iluvatar:storage.nfs": {"server": "eonwe", "share": "/volume1/kubernetes"},
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
    assert nfs["parameters"] == {"server": "192.168.0.12", "share": "/volume1/kubernetes", "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}
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
    # EPHEMERAL keeps its encryption (the homelab's iluvatar:arda.encryption, plans.volume_encryption), uncapped.
    assert [(d.get("kind"), d.get("name"), "provisioning" in d) for d in docs if d.get("kind") in ("UserVolumeConfig", "VolumeConfig")] == [
        ("VolumeConfig", "EPHEMERAL", False)
    ]
    assert "extraMounts" not in docs[0]["machine"]["kubelet"]
    assert "local-path-provisioner" not in [a.name for a in storage.applications(stack)]


# --- The retire Job, pinned whole, and its script run by bash against a stand-in `ceph` -------------------

TOOLBOX_VOLUMES = [
    {
        "name": "ceph-admin-secret",
        "secret": {"secretName": "rook-ceph-mon", "optional": False, "items": [{"key": "ceph-secret", "path": "secret.keyring"}]},
    },
    {"name": "mon-endpoint-volume", "configMap": {"name": "rook-ceph-mon-endpoints", "items": [{"key": "data", "path": "mon-endpoints"}]}},
    {"name": "ceph-config", "emptyDir": {}},
]
# Rook's toolbox Job (deploy/examples/toolbox-job.yaml): the init container writes /etc/ceph from the mon Secret.
CONFIG_INIT = {
    "name": "config-init",
    "image": "docker.io/rook/ceph:v1.20.4",
    "command": ["/usr/local/bin/toolbox.sh"],
    "args": ["--skip-watch"],
    "env": [{"name": "ROOK_CEPH_USERNAME", "valueFrom": {"secretKeyRef": {"name": "rook-ceph-mon", "key": "ceph-username"}}}],
    "volumeMounts": [
        {"name": "ceph-config", "mountPath": "/etc/ceph"},
        {"name": "mon-endpoint-volume", "mountPath": "/etc/rook"},
        {"name": "ceph-admin-secret", "mountPath": "/var/lib/rook-ceph-mon"},
    ],
}


def _retire_job(stack: StackConfig) -> tuple[dict[str, Any], str]:
    [job] = storage.retire_jobs(stack)
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["command"].pop()
    return job, script


def test_the_retire_job_for_some_disks_exactly(tmp_path: Path) -> None:
    stack = _variant(
        tmp_path,
        "some",
        {
            "iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1", "/dev/nvme2n1"],
            "iluvatar:nodes[4].retire": ["/dev/nvme1n1", "/dev/nvme2n1"],
        },
    )
    job, script = _retire_job(stack)
    labels = {
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "iluvatar",
        "app.kubernetes.io/name": "osd-retire",
        "iluvatar.dev/node": "tirion",
    }
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "osd-retire-tirion",
            "namespace": "rook-ceph",
            "labels": labels,
            "annotations": {"pulumi.com/skipAwait": "true", "iluvatar.dev/retiring": "/dev/nvme1n1,/dev/nvme2n1"},
        },
        "spec": {
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                    # On the node itself, its /dev read-only under /host: the inventory's paths are matched there.
                    "nodeSelector": {"kubernetes.io/hostname": "tirion"},
                    "initContainers": [CONFIG_INIT],
                    "containers": [
                        {
                            "name": "retire",
                            "image": "docker.io/rook/ceph:v1.20.4",
                            "command": ["bash", "-c"],
                            "volumeMounts": [
                                {"name": "ceph-config", "mountPath": "/etc/ceph", "readOnly": True},
                                {"name": "host-dev", "mountPath": "/host", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [*TOOLBOX_VOLUMES, {"name": "host-dev", "hostPath": {"path": "/dev", "type": "Directory"}}],
                },
            },
        },
    }
    assert script == storage.retire_script("tirion", ("/dev/nvme1n1", "/dev/nvme2n1"), every_disk=False)


def test_the_retire_job_for_a_whole_machine_exactly(tmp_path: Path) -> None:
    stack = _variant(tmp_path, "whole", {"iluvatar:storage.arda.ceph.replicas": 2, "iluvatar:nodes[5].retire": True})
    job, script = _retire_job(stack)
    pod = job["spec"]["template"]["spec"]
    # The CRUSH map alone says which OSDs: no host path, runs anywhere.
    assert job["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true", "iluvatar.dev/retiring": "/dev/nvme0n1"}
    assert sorted(pod) == ["containers", "initContainers", "restartPolicy", "tolerations", "volumes"]
    assert pod["volumes"] == TOOLBOX_VOLUMES
    assert pod["containers"][0]["volumeMounts"] == [{"name": "ceph-config", "mountPath": "/etc/ceph", "readOnly": True}]
    assert script == storage.retire_script("alqualonde", ("/dev/nvme0n1",), every_disk=True)
    assert storage.retire_jobs(_variant(tmp_path, "none")) == []
    # Without GitOps there is no Ceph to take OSDs out of.
    no_gitops = {"iluvatar:nodes[5].retire": True, "iluvatar:ainur.gitMirror.url": "https://github.com/example/gitops.git"}
    assert storage.retire_jobs(_variant(tmp_path, "no-gitops", no_gitops, ["iluvatar:gitops"])) == []


def _ceph(tmp_path: Path, safe_after: int, out_fails: bool = False) -> Path:
    """A stand-in `ceph` (and `sleep`) on PATH: OSDs 3, 4, 7 on the host, on nvme0n1, nvme1n1 and sda (7 has two devices)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "ceph").write_text(
        "#!/bin/sh\n"
        f'echo "ceph $*" >> {tmp_path}/calls\n'
        'case "$1 $2" in\n'
        '  "osd ls-tree") [ "$3" = tirion ] && printf "3\\n4\\n7\\n" ;;\n'
        '  "osd metadata") case "$3" in 3) echo \'{"devices": "nvme0n1"}\';; 4) echo \'{"devices": "nvme1n1"}\';; 7) echo \'{"devices": "sdb,sda"}\';; esac ;;\n'
        f'  "osd safe-to-destroy") n=$(grep -c safe-to-destroy {tmp_path}/calls); [ "$n" -gt {safe_after} ] ;;\n'
        f'  "osd out") [ {str(out_fails).lower()} = false ] ;;\n'
        "esac\n"
    )
    (bin_ / "sleep").write_text(f'#!/bin/sh\necho "sleep $*" >> {tmp_path}/calls\n')
    for tool in ("ceph", "sleep"):
        (bin_ / tool).chmod(0o755)
    # The node's /dev as the Job mounts it: a by-id link to the kernel name Ceph reports.
    (tmp_path / "host" / "disk" / "by-id").mkdir(parents=True)
    (tmp_path / "host" / "nvme1n1").touch()
    (tmp_path / "host" / "sda").touch()
    (tmp_path / "host" / "disk" / "by-id" / "nvme-Samsung_1").symlink_to("../../nvme1n1")
    return tmp_path / "calls"


def _retire(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    # /host is where the Job mounts the node's /dev; here, the folder _ceph made.
    script = script.replace('"/host${disk#/dev}"', f'"{tmp_path}/host${{disk#/dev}}"')
    env = {"PATH": f"{tmp_path}/bin:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False)


def test_retiring_disks_marks_out_only_their_osds_and_waits_until_safe(tmp_path: Path) -> None:
    calls = _ceph(tmp_path, safe_after=2)
    script = storage.retire_script("tirion", ("/dev/disk/by-id/nvme-Samsung_1", "/dev/sda"), every_disk=False)
    assert f'"{tmp_path}/host' not in script  # the replacement below must change something
    run = _retire(tmp_path, script)
    assert (run.returncode, run.stderr) == (0, "")
    assert calls.read_text().splitlines() == [
        "ceph osd ls-tree tirion",
        "ceph osd metadata 3 -f json",
        "ceph osd metadata 4 -f json",
        "ceph osd metadata 7 -f json",
        "ceph osd out 4 7",
        "ceph osd safe-to-destroy 4 7",
        "sleep 60",
        "ceph osd safe-to-destroy 4 7",
        "sleep 60",
        "ceph osd safe-to-destroy 4 7",
    ]
    assert run.stdout.splitlines() == [
        "retire tirion: marking out osd  4 7",
        "retire tirion: Ceph still needs osd  4 7; waiting for the data to move",
        "retire tirion: Ceph still needs osd  4 7; waiting for the data to move",
        "retire tirion: osd  4 7 are safe to destroy; purge them with the runbook: ceph osd purge <id> --yes-i-really-mean-it",
    ]


def test_retiring_a_machine_marks_out_every_osd_of_its_host(tmp_path: Path) -> None:
    calls = _ceph(tmp_path, safe_after=0)
    run = _retire(tmp_path, storage.retire_script("tirion", ("/dev/nvme0n1",), every_disk=True))
    assert (run.returncode, run.stderr) == (0, "")
    assert calls.read_text().splitlines() == ["ceph osd ls-tree tirion", "ceph osd out 3 4 7", "ceph osd safe-to-destroy 3 4 7"]
    # (`ceph osd ls-tree` lists one id a line, and the messages show them so.)
    assert run.stdout.endswith("7 are safe to destroy; purge them with the runbook: ceph osd purge <id> --yes-i-really-mean-it\n")


def test_retiring_what_is_already_gone_changes_nothing(tmp_path: Path) -> None:
    calls = _ceph(tmp_path, safe_after=0)
    run = _retire(tmp_path, storage.retire_script("tirion", ("/dev/nvme2n1",), every_disk=False))
    assert (run.returncode, run.stdout, run.stderr) == (0, "retire tirion: no OSD on /dev/nvme2n1 (already purged?)\n", "")
    assert [c for c in calls.read_text().splitlines() if not c.startswith("ceph osd metadata")] == ["ceph osd ls-tree tirion"]
    assert "ceph osd out" not in calls.read_text()


# --- Every value pinned whole (the charts' renders above check they are read; these, that they are these) --


def _csi(kind: str) -> dict[str, str]:
    namespace = "{{ .Release.Namespace }}"  # the chart's own default, templated by Helm (rendered above)
    return {
        "csi.storage.k8s.io/provisioner-secret-name": f"rook-csi-{kind}-provisioner",
        "csi.storage.k8s.io/provisioner-secret-namespace": namespace,
        "csi.storage.k8s.io/controller-expand-secret-name": f"rook-csi-{kind}-provisioner",
        "csi.storage.k8s.io/controller-expand-secret-namespace": namespace,
        "csi.storage.k8s.io/controller-publish-secret-name": f"rook-csi-{kind}-provisioner",
        "csi.storage.k8s.io/controller-publish-secret-namespace": namespace,
        "csi.storage.k8s.io/node-stage-secret-name": f"rook-csi-{kind}-node",
        "csi.storage.k8s.io/node-stage-secret-namespace": namespace,
        "csi.storage.k8s.io/fstype": "ext4",
    }


def test_the_ceph_cluster_values_exactly() -> None:
    stack = load_stack_file(HOMELAB)
    three = {"size": 3, "requireSafeReplicaSize": True}
    kept = {"enabled": True, "reclaimPolicy": "Retain", "allowVolumeExpansion": True, "volumeBindingMode": "Immediate"}
    assert storage.ceph_cluster_values(stack) == {
        "operatorNamespace": "rook-ceph",
        "toolbox": {"enabled": True},
        "cephClusterSpec": {
            "dataDirHostPath": "/var/lib/rook",
            "mon": {"count": 3, "allowMultiplePerNode": False},
            "mgr": {"count": 2, "allowMultiplePerNode": False},
            "placement": {"all": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}},
            # Every OSD dm-crypt encrypted: the homelab's iluvatar:arda.encryption (plans.storage.osd_encryption).
            "storage": {"useAllNodes": False, "useAllDevices": False, "nodes": storage.ceph_nodes(stack), "config": {"encryptedDevice": "true"}},
            "cleanupPolicy": {"confirmation": "", "allowUninstallWithVolumes": False, "wipeDevicesFromOtherClusters": False},
            "removeOSDsIfOutAndSafeToRemove": False,
        },
        "cephBlockPools": [
            {
                "name": "ceph-blockpool",
                "spec": {"failureDomain": "host", "replicated": three},
                "storageClass": {
                    **kept,
                    "name": "ceph-block",
                    "isDefault": True,
                    "parameters": {"imageFormat": "2", "imageFeatures": "layering", **_csi("rbd")},
                },
            }
        ],
        "cephFileSystems": [
            {
                "name": "ceph-filesystem",
                "spec": {
                    "metadataPool": {"failureDomain": "host", "replicated": three},
                    "dataPools": [{"name": "data0", "failureDomain": "host", "replicated": three}],
                    "metadataServer": {"activeCount": 1, "activeStandby": True},
                },
                "storageClass": {**kept, "name": "ceph-filesystem", "isDefault": False, "pool": "data0", "parameters": _csi("cephfs")},
            }
        ],
        "cephObjectStores": [],
        # The homelab's backups snapshot volumes on both Ceph classes (plans.backup): a VolumeSnapshotClass for each.
        "cephBlockPoolsVolumeSnapshotClass": {"enabled": True, "name": "ceph-block", "isDefault": True, "deletionPolicy": "Delete"},
        "cephFileSystemVolumeSnapshotClass": {"enabled": True, "name": "ceph-filesystem", "isDefault": False, "deletionPolicy": "Delete"},
    }
    assert storage.rook_operator_values() == {
        "crds": {"enabled": True},
        "csi": {"installCsiOperator": True},
        "enableDiscoveryDaemon": False,
        "monitoring": {"enabled": False},
    }
    # The pools' copies are separate dicts: the chart's values are edited per pool by nobody, but one edit must stay one.
    values = storage.ceph_cluster_values(stack)
    values["cephBlockPools"][0]["spec"]["replicated"]["size"] = 1
    assert values["cephFileSystems"][0]["spec"]["metadataPool"]["replicated"]["size"] == 3


def test_one_host_one_mon_one_mgr(tmp_path: Path) -> None:
    gone = ["iluvatar:nodes[5].dataDisks", "iluvatar:nodes[4].dataDisks"]
    one = _variant(tmp_path, "one", {"iluvatar:storage.arda.ceph.replicas": 1}, gone)
    assert (storage.mon_count(one), storage.mgr_count(one)) == (1, 1)
    two = _variant(tmp_path, "two", {"iluvatar:storage.arda.ceph.replicas": 2}, gone[:1])
    assert (storage.mon_count(two), storage.mgr_count(two)) == (1, 2)


def test_the_local_path_and_nfs_values_exactly(tmp_path: Path) -> None:
    stack = _variant(tmp_path, "local", {"iluvatar:storage.arda.defaultClass": "local-path"})
    assert storage.local_path_values(stack) == {
        "helperImage": {"repository": "docker.io/library/busybox", "tag": "1.37.0"},
        "storageClass": {
            "create": True,
            "name": "local-path",
            "defaultClass": True,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/var/mnt/local-path-provisioner"]}],
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
    }
    # csi-driver-nfs makes no class of its own (Pulumi's is the one), and its controller stays off the control planes.
    assert storage.csi_nfs_values() == {
        "storageClass": {"create": False},
        "externalSnapshotter": {"enabled": False},
        "controller": {"runOnControlPlane": False},
    }


def test_the_nfs_storage_class_exactly(tmp_path: Path) -> None:
    nfs = {"server": "eonwe", "share": "/volume1/kubernetes", "mountOptions": ["nfsvers=4.2"]}
    stack = _variant(tmp_path, "nfs", {"iluvatar:storage.nfs": nfs, "iluvatar:storage.arda.defaultClass": "nfs"})
    assert storage.nfs_storage_class(stack) == {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "nfs",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "nfs.csi.k8s.io",
        "parameters": {"server": "192.168.0.12", "share": "/volume1/kubernetes", "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"},
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
        "mountOptions": ["nfsvers=4.2"],
    }
    assert _app(stack, "csi-driver-nfs").namespace == "csi-nfs"
    # Not the default: marked so (one default class per cluster).
    other = _variant(tmp_path, "other", {"iluvatar:storage.nfs": nfs})
    assert storage.nfs_storage_class(other)["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "false"}
    assert storage.storage_classes(stack)["arda"] == {"ceph-block": False, "ceph-filesystem": False, "local-path": False, "nfs": True}


def test_the_longhorn_values_exactly() -> None:
    assert storage.longhorn_values(load_stack_file(HOMELAB)) == {
        "persistence": {"defaultClass": True, "defaultClassReplicaCount": 3, "reclaimPolicy": "Retain"},
        "defaultSettings": {
            "defaultDataPath": "/var/lib/longhorn",
            "createDefaultDiskLabeledNodes": True,
            "defaultReplicaCount": 3,
            "nodeDownPodDeletionPolicy": "delete-both-statefulset-and-deployment-pod",
            "deletingConfirmationFlag": False,
        },
        "preUpgradeChecker": {"jobEnabled": False},
        "longhornUI": {"replicas": 1},
    }


def test_the_git_mirror_and_k3s_follow_longhorn(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    # The homelab's Ainur claims are on Longhorn's encrypted class (iluvatar:storage.ainur.encrypted); without it, the chart's.
    assert (storage.git_mirror_class(stack), storage.k3s_disables_local_storage(stack)) == ("longhorn-encrypted", True)
    clear = _variant(tmp_path, "clear", delete=["iluvatar:storage.ainur.encrypted"])
    assert (storage.git_mirror_class(clear), storage.longhorn_encrypted(clear)) == ("longhorn", False)
    # Longhorn runs but k3s's local-path is the default: k3s keeps its addon.
    local = _variant(tmp_path, "local", {"iluvatar:storage.ainur.defaultClass": "local-path"})
    assert (storage.git_mirror_class(local), storage.k3s_disables_local_storage(local)) == ("longhorn-encrypted", False)
    no_disks = ["iluvatar:nodes[0].dataDisks", "iluvatar:nodes[1].dataDisks", "iluvatar:nodes[2].dataDisks", "iluvatar:storage.ainur"]
    none = _variant(tmp_path, "none", delete=no_disks)
    assert (storage.git_mirror_class(none), storage.k3s_disables_local_storage(none), storage.longhorn_node_labels(none)) == ("local-path", False, {})
    assert storage.storage_classes(none)["ainur"] == {"local-path": True}
    one = _variant(tmp_path, "one", delete=no_disks[1:3])
    assert storage.longhorn_replicas(one) == 1 and storage.longhorn_node_labels(one) == {"manwe": {"node.longhorn.io/create-default-disk": "true"}}


def test_the_storage_output_exactly(tmp_path: Path) -> None:
    stack = _variant(
        tmp_path, "retire", {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"], "iluvatar:nodes[4].retire": ["/dev/nvme1n1"]}
    )
    assert storage.state(stack, Deployed({"gone": ("/dev/sdz",)}, {})) == {
        "cephOsds": {"alqualonde": ["/dev/nvme0n1"], "taniquetil": ["/dev/nvme0n1"], "tirion": ["/dev/nvme0n1", "/dev/nvme1n1"]},
        "cephRetiring": {"tirion": ["/dev/nvme1n1"]},
        "classes": {"arda": {"ceph-block": True, "ceph-filesystem": False, "local-path": False}, "ainur": {"longhorn": True}},
    }
    # Without GitOps nothing is deployed: the last deployment's OSDs are carried over, sorted, and no class is claimed.
    off = _variant(tmp_path, "off", {"iluvatar:ainur.gitMirror.url": "https://github.com/example/gitops.git"}, ["iluvatar:gitops"])
    deployed = Deployed({"tirion": ("/dev/nvme0n1", "/dev/nvme1n1"), "alqualonde": ("/dev/nvme0n1",)}, {"tirion": ("/dev/nvme1n1",)})
    assert storage.state(off, deployed) == {
        "cephOsds": {"alqualonde": ["/dev/nvme0n1"], "tirion": ["/dev/nvme0n1", "/dev/nvme1n1"]},
        "cephRetiring": {"tirion": ["/dev/nvme1n1"]},
        "classes": {},
    }
    assert list(storage.state(off, deployed)["cephOsds"]) == ["alqualonde", "tirion"]
    assert storage.applications(off) == [] and storage.namespaces(off, "arda") == []
    # No Longhorn without GitOps, so no Pi is labelled for its disk either.
    assert storage.longhorn_node_labels(off) == {}
    assert storage.state(load_stack_file(RK1), Deployed({}, {}))["classes"] == {"arda": {"ceph-block": True, "local-path": False}}


def test_each_chart_is_its_application(tmp_path: Path) -> None:
    nfs = {"server": "192.168.0.40", "share": "/volume1/kubernetes"}
    stack = _variant(tmp_path, "nfs", {"iluvatar:storage.nfs": nfs})
    sources = {
        a.name: (a.cluster, a.namespace, a.manifest["spec"]["destination"]["namespace"], a.manifest["spec"]["source"])
        for a in storage.applications(stack)
    }
    for _, _, _, source in sources.values():
        source.pop("helm")
    assert sources == {
        "rook-ceph": (
            "arda",
            "rook-ceph",
            "rook-ceph",
            {"repoURL": "https://charts.rook.io/release", "chart": "rook-ceph", "targetRevision": "v1.20.4"},
        ),
        "rook-ceph-cluster": (
            "arda",
            "rook-ceph",
            "rook-ceph",
            {"repoURL": "https://charts.rook.io/release", "chart": "rook-ceph-cluster", "targetRevision": "v1.20.4"},
        ),
        "local-path-provisioner": (
            "arda",
            "local-path-storage",
            "local-path-storage",
            {
                "repoURL": "https://github.com/rancher/local-path-provisioner.git",
                "path": "deploy/chart/local-path-provisioner",
                "targetRevision": "v0.0.30",
            },
        ),
        "csi-driver-nfs": (
            "arda",
            "csi-nfs",
            "csi-nfs",
            {
                "repoURL": "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/master/charts",
                "chart": "csi-driver-nfs",
                "targetRevision": "4.12.1",
            },
        ),
        "longhorn": (
            "ainur",
            "longhorn-system",
            "longhorn-system",
            {"repoURL": "https://charts.longhorn.io", "chart": "longhorn", "targetRevision": "1.10.1"},
        ),
    }
    assert _app(stack, "csi-driver-nfs").values == storage.csi_nfs_values()
    assert storage.namespaces(stack, "arda")[2]["metadata"]["name"] == "csi-nfs"


def test_no_data_disk_on_arda_no_ceph(tmp_path: Path) -> None:
    stack = _variant(
        tmp_path,
        "no-ceph",
        {"iluvatar:storage.arda.defaultClass": "local-path"},
        ["iluvatar:storage.arda.ceph", *(f"iluvatar:nodes[{i}].dataDisks" for i in (3, 4, 5))],
    )
    assert [a.name for a in storage.applications(stack)] == ["local-path-provisioner", "longhorn"]
    assert storage.storage_classes(stack) == {"arda": {"local-path": True}, "ainur": {"longhorn": True}}


def test_longhorn_keeps_three_replicas_with_four_pis(tmp_path: Path) -> None:
    doc = homelab_doc()
    pi = {"name": "varda", "role": "maiar", "arch": "arm64", "board": "rpi5", "mac": "d8:3a:dd:10:00:04", "ip": "192.168.0.17"}
    doc["config"]["iluvatar:nodes"].append({**pi, "installDisk": "/dev/mmcblk0", "dataDisks": ["/dev/nvme0n1"]})
    stack = load_stack_file(write_stack(tmp_path, doc))
    assert (len(storage.longhorn_node_labels(stack)), storage.longhorn_replicas(stack)) == (4, 3)


def test_a_failed_mark_out_stops_the_retire_job(tmp_path: Path) -> None:
    calls = _ceph(tmp_path, safe_after=0, out_fails=True)
    run = _retire(tmp_path, storage.retire_script("tirion", ("/dev/nvme0n1",), every_disk=True))
    # `set -e`: the Job fails (and is retried) rather than waiting on OSDs that were never marked out.
    assert run.returncode != 0
    assert calls.read_text().splitlines() == ["ceph osd ls-tree tirion", "ceph osd out 3 4 7"]


# --- The hooks around a Ceph host's reboot, run by bash with a stand-in `ceph` ------------------------

CEPH_STAND_IN = """#!/bin/sh
# A stand-in for ceph (the real one needs a cluster): logs its call; `pg stat` answers from $PGS.
echo "ceph $*" >> "$LOG"
case "$*" in
  "pg stat -f json") cat "$PGS" ;;
esac
"""


def _noout(tmp_path: Path, which: str, pgs: list[dict[str, Any]], total: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ceph").write_text(CEPH_STAND_IN)
    (bin_dir / "ceph").chmod(0o755)
    (tmp_path / "pgs.json").write_text(json.dumps({"pg_ready": True, "pg_summary": {"num_pg_by_state": pgs, "num_pgs": total}}))
    (job,) = storage.noout_jobs()[which]
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    # The recovery bound shortened for the test (the script's logic is what is under test, not the wait).
    script = script.replace(f"+ {storage.RECOVERY_WAIT_SECONDS} ))", "+ 2 ))").replace("sleep 10", "sleep 1")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "PGS": str(tmp_path / "pgs.json")}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    return result, (tmp_path / "log").read_text().splitlines()


def test_noout_is_set_before_a_ceph_host_reboots(tmp_path: Path) -> None:
    result, calls = _noout(tmp_path, "before", [], 0)
    assert (result.returncode, calls) == (0, ["ceph osd set noout"])


def test_noout_is_unset_after_once_every_placement_group_is_clean(tmp_path: Path) -> None:
    result, calls = _noout(tmp_path, "after", [{"name": "active+clean", "num": 97}], 97)
    assert (result.returncode, calls) == (0, ["ceph osd unset noout", "ceph pg stat -f json"])


def test_the_next_host_waits_while_data_is_degraded_then_fails_saying_where_to_look(tmp_path: Path) -> None:
    result, calls = _noout(tmp_path, "after", [{"name": "active+clean", "num": 90}, {"name": "active+undersized+degraded", "num": 7}], 97)
    assert result.returncode == 1
    assert calls[0] == "ceph osd unset noout" and calls.count("ceph pg stat -f json") >= 2
    assert result.stderr.strip() == "Ceph's placement groups are not all active+clean 1200 s after the host came back; look with: ceph status"


# --- The restore drill's scratch classes ---------------------------------------------------------


def test_each_drill_scratch_class_is_its_class_as_the_charts_render_it_but_deletes_its_volumes(tmp_path: Path) -> None:
    """A drill's scratch claim holds a full copy of the volume it restored: its class must delete that copy with the
    claim, where every class the charts and Pulumi make keeps it (Retain). The copy differs from the class as rendered
    by the real charts (helm template) in nothing else but its name."""
    stack = _variant(tmp_path, "nfs", {"iluvatar:storage.nfs": {"server": "eonwe", "share": "/volume1/kubernetes"}})
    rendered = [*_render(stack, "rook-ceph-cluster"), *_render(stack, "local-path-provisioner"), storage.nfs_storage_class(stack)]
    classes = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "StorageClass"}
    assert sorted(classes) == ["ceph-block", "ceph-filesystem", "local-path", "nfs"]
    for name, live in classes.items():
        scratch = storage.scratch_class(stack, name)
        assert live["reclaimPolicy"] == "Retain"
        assert (scratch["metadata"]["name"], scratch["reclaimPolicy"]) == (f"drill-scratch-{name}", "Delete"), name
        assert scratch["metadata"]["annotations"] == {DEFAULT: "false"}
        same = ("provisioner", "parameters", "volumeBindingMode", "allowVolumeExpansion", "mountOptions")
        assert {k: scratch.get(k) for k in same} == {k: live.get(k) for k in same}, name
    assert upstream.kubeconform([storage.scratch_class(stack, n) for n in classes], stack.arda.kubernetes_version) == []


def test_only_card_pis_with_a_data_disk_are_tagged_for_the_netbooted_roots_replicas(tmp_path: Path) -> None:
    """Review 41-1 M2: the tag goes to the Pis that boot from their cards and have a Longhorn disk, never a netbooting
    maia (its disk is not there before it boots); none without a netbooting maia; the roots' replicas one per tagged Pi
    up to three; without Longhorn (no GitOps) the roots are local-path's."""
    from plans.netboot import pi_pods

    assert storage.longhorn_node_annotations(load_stack_file(HOMELAB)) == {}
    one = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"})))
    tag = {"node.longhorn.io/default-node-tags": '["pi-root"]'}
    assert storage.longhorn_node_annotations(one) == {"manwe": tag, "eonwe": tag}
    assert (storage.pi_root_replicas(one), pi_pods.roots_class(one)) == (2, "pi-roots")
    assert pi_pods.roots_storage_class(one)["parameters"]["nodeSelector"] == "pi-root"
    # Without GitOps there is no Longhorn: no tag, and the roots on local-path (one card Pi: stacks.storage allows it).
    bare = {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git", "iluvatar:nodes[1].boot": "netboot",
            "iluvatar:nodes[1].serial": "9ffefdef", "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}  # fmt: skip
    local = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), bare, list(GOES_WITH_GITOPS))))
    assert (storage.longhorn_node_annotations(local), pi_pods.roots_class(local)) == ({}, "local-path")
    assert [m["kind"] for m in pi_pods.manifests(local)].count("StorageClass") == 0


def test_each_roots_volume_follows_the_programs_count_and_a_single_copy_is_said(tmp_path: Path) -> None:
    """Review 41-6 H2, M1: each root's Longhorn Volume is patched to one copy per tagged Pi (up to three) and the pi-root
    selector, whatever its class said when it was made; with one tagged Pi (manwe, eonwe and ilmare netbooting) a
    warning names the claims, the one disk that holds them and the fix; with two, none."""
    from plans.netboot import pi_pods

    netboot = {"iluvatar:nodes[1].board": "rpi4", "iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "9ffefdef",
               "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}  # fmt: skip
    single = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), netboot)))
    assert pi_pods.root_volume_spec(single) == {"numberOfReplicas": 1, "nodeSelector": ["pi-root"]}
    assert pi_pods.single_copy_warning(single) == (
        "the netbooted roots (pi-root-eonwe, pi-root-ilmare) have one copy each, on manwe's data disk: only manwe boots "
        "from its card and has `dataDisks` (iluvatar:nodes[].dataDisks). If that disk fails, every netbooting Pi loses "
        "its root. Give a second Pi that boots from its card a data disk: the next `up` makes a second copy of every root."
    )
    two = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"})))
    assert (pi_pods.root_volume_spec(two), pi_pods.single_copy_warning(two)) == ({"numberOfReplicas": 2, "nodeSelector": ["pi-root"]}, None)
    assert "kubectl -n longhorn-system get replicas.longhorn.io -l longhornvolume=" in pi_pods.legacy_replicas_note()
    # Review 41-10 H1: the first version's volume is given the selector alone, never a lowered count.
    assert pi_pods.root_volume_spec(single, legacy=True) == {"nodeSelector": ["pi-root"]}


def test_the_first_versions_roots_claim_is_kept_only_where_the_last_deployment_had_it() -> None:
    """Review 41-6 H1: what the last deployment's `ainur` output said, else whether it ran a netbooting Pi (whose roots
    the first version's claim holds); a new homelab, or one that never netbooted a Pi, has none."""
    from plans.netboot import pi_pods

    netbooted = {"nodes": {"manwe": {"mac": "m"}, "ilmare": {"mac": "i", "image": "bookworm-x"}}}
    assert pi_pods.keeps_legacy_claim({}) is False
    # Review 41-10 M1: an older output with no `image` and no dnsmasq config to tell: kept (a dropped claim loses roots).
    assert pi_pods.keeps_legacy_claim({"nodes": {"manwe": {"mac": "m"}}}) is True
    assert pi_pods.keeps_legacy_claim({"nodes": {"manwe": {"mac": "m"}}}, "dhcp-host=m,set:known\n") is False
    assert pi_pods.keeps_legacy_claim(netbooted) is True
    assert pi_pods.keeps_legacy_claim({**netbooted, "legacyRoots": False}) is False
    assert pi_pods.keeps_legacy_claim({"nodes": {}, "legacyRoots": True}) is True


FIRST_NETBOOT = Path(__file__).parents[1] / "fixtures" / "outputs-66ca479"


def test_the_first_netboot_versions_outputs_say_which_pis_it_netbooted() -> None:
    """Review 41-10 M1: 66ca479's `ainur` output names no netbooting Pi (no `image`); its `dnsmasqConf` does, by the
    `set:rpiboot` tag on the Pi's dhcp-host line, so its single roots' claim is kept. The fixtures are 66ca479's own
    ainur_state and dnsmasq_conf of the homelab with and without ilmarë netbooting."""
    from plans.netboot import pi_pods
    from stacks import day2

    ainur = json.loads((FIRST_NETBOOT / "netbooting-ainur.json").read_text())
    conf = (FIRST_NETBOOT / "netbooting-dnsmasq.conf").read_text()
    assert day2.netbooted_before(ainur, conf) == frozenset({"ilmare"})
    assert pi_pods.keeps_legacy_claim(ainur, conf) is True
    card = json.loads((FIRST_NETBOOT / "card-ainur.json").read_text())
    card_conf = (FIRST_NETBOOT / "card-dnsmasq.conf").read_text()
    assert day2.netbooted_before(card, card_conf) == frozenset()
    assert pi_pods.keeps_legacy_claim(card, card_conf) is False
    # A netbooting Pi the conf does not name (on a VLAN: no dhcp-host line), or no conf at all: unknown, so kept.
    unnamed = "\n".join(line for line in conf.splitlines() if "set:rpiboot" not in line)
    assert "tag:rpiboot" in unnamed and day2.netbooted_before(ainur, unnamed) is None
    assert pi_pods.keeps_legacy_claim(ainur, unnamed) is True and pi_pods.keeps_legacy_claim(ainur) is True
    # The MAC as the user wrote it, in either case.
    upper = {**ainur, "nodes": {**ainur["nodes"], "ilmare": {**ainur["nodes"]["ilmare"], "mac": "D8:3A:DD:10:00:03"}}}
    assert day2.netbooted_before(upper, conf) == frozenset({"ilmare"})


def test_the_encrypted_class_and_its_secret_exactly() -> None:
    """Longhorn v1.10.1's encrypted class as its example writes it (examples/crypto/storageclass-crypto-global.yaml): LUKS
    with the one Secret's passphrase at provisioning, staging, publishing and expanding, the chart's class's other settings."""
    stack = load_stack_file(HOMELAB)
    assert storage.longhorn_encrypted(stack)
    assert storage.encrypted_storage_class(stack) == {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "longhorn-encrypted"},
        "provisioner": "driver.longhorn.io",
        "parameters": {
            "numberOfReplicas": "3",
            "staleReplicaTimeout": "30",
            "fsType": "ext4",
            "encrypted": "true",
            "csi.storage.k8s.io/provisioner-secret-name": "longhorn-crypto",
            "csi.storage.k8s.io/provisioner-secret-namespace": "longhorn-system",
            "csi.storage.k8s.io/node-publish-secret-name": "longhorn-crypto",
            "csi.storage.k8s.io/node-publish-secret-namespace": "longhorn-system",
            "csi.storage.k8s.io/node-stage-secret-name": "longhorn-crypto",
            "csi.storage.k8s.io/node-stage-secret-namespace": "longhorn-system",
            # Without it an online expansion grows neither the LUKS mapping nor the filesystem, yet reports success.
            "csi.storage.k8s.io/node-expand-secret-name": "longhorn-crypto",
            "csi.storage.k8s.io/node-expand-secret-namespace": "longhorn-system",
        },
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }
    assert storage.crypto_secret("P4SS") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "longhorn-crypto", "namespace": "longhorn-system"},
        "type": "Opaque",
        "stringData": {"CRYPTO_KEY_VALUE": "P4SS", "CRYPTO_KEY_PROVIDER": "secret"},
    }
    assert upstream.kubeconform([storage.encrypted_storage_class(stack), storage.crypto_secret("P4SS")], "v1.35.8") == []


def test_no_encrypted_class_without_longhorn_even_when_asked(tmp_path: Path) -> None:
    no_disks = ["iluvatar:nodes[0].dataDisks", "iluvatar:nodes[1].dataDisks", "iluvatar:nodes[2].dataDisks", "iluvatar:storage.ainur.defaultClass"]
    none = _variant(tmp_path, "none", delete=no_disks)
    assert none.storage.ainur.encrypted
    assert (storage.longhorn_encrypted(none), storage.git_mirror_class(none)) == (False, "local-path")
