"""Storage plan: the inventory's data disks as Ceph, local volumes, Longhorn and NFS, as plain data.

- **Arda, Rook-Ceph** (`rook-ceph` and `rook-ceph-cluster` charts, Rook v1.20.4): one CephCluster on
  exactly the inventory's data disks (`useAllNodes`/`useAllDevices` off, `nodes` listed), mons and
  managers from the number of OSD hosts, a replicated block pool (and CephFS when asked) with a
  copy per host, their StorageClasses. Nothing ever wipes a disk: no cleanup confirmation, no
  wiping of other clusters' disks, no automatic OSD removal.
- **Arda, local volumes**: a Talos user volume on each machine's system disk (the system disk
  only: a data disk is never touched), mounted into the kubelet, and local-path-provisioner
  (v0.0.30) putting one folder per claim on it.
- **The Ainur, Longhorn** (1.10.1) on the Pis' data disk that cloud-init formats, one replica per
  Pi with a disk (up to three); the Git mirror's volume moves onto it.
- **Arda, NFS**: csi-driver-nfs (4.12.1) and a StorageClass for `iluvatar:storage.nfs`.

Each chart is handed to Argo CD as a platform Application with its values inline
(`plans.gitops.platform_application`), so Git never holds a disk or a node's name. Every
StorageClass keeps its volume when its claim goes (`reclaimPolicy: Retain`): an app pruned from Git
by mistake leaves its data behind. Each cluster has exactly one default StorageClass
(`stacks.storage.default_class`).

Retiring (`retire:` on a node): its disks leave the CephCluster (Rook then never touches them
again) and a Job marks their OSDs out and waits until Ceph says every copy lives elsewhere. The
stack output `state()` remembers which disks ran OSDs, so the next run can refuse a removal that
skipped this (`stacks.storage.check_removals`).

Plain functions returning manifests and values as dicts; no Pulumi here.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from plans import backup, gitops, metrics, netpol
from plans.local_volumes import USER_VOLUME_PATH, enabled, local_volumes
from plans.merge import deep_merge
from stacks import pins
from stacks import storage as facts
from stacks.model import Node, StackConfig

# Charts, pinned: the Rook release Iluvatar checks (tools.upstream), and the three it cannot fetch.
ROOK_VERSION = pins.CHARTS["rook-ceph"]
ROOK_REPOSITORY = "https://charts.rook.io/release"
ROOK_NAMESPACE = "rook-ceph"
ROOK_IMAGE = f"docker.io/rook/ceph:{ROOK_VERSION}"
# local-path-provisioner publishes its chart only in its Git repository; Argo CD reads it there.
LOCAL_PATH_VERSION = pins.CHARTS["local-path-provisioner"]
LOCAL_PATH_REPOSITORY = "https://github.com/rancher/local-path-provisioner.git"
LOCAL_PATH_CHART_PATH = "deploy/chart/local-path-provisioner"
LOCAL_PATH_NAMESPACE = "local-path-storage"
# The chart's helper image defaults to busybox:latest: pinned, so a claim never runs an unknown image.
BUSYBOX_IMAGE = (pins.IMAGES["busybox"].rsplit(":", 1)[0], pins.IMAGES["busybox"].rsplit(":", 1)[1])
LONGHORN_VERSION = pins.CHARTS["longhorn"]
LONGHORN_REPOSITORY = "https://charts.longhorn.io"
LONGHORN_NAMESPACE = "longhorn-system"
CSI_NFS_VERSION = pins.CHARTS["csi-driver-nfs"]
CSI_NFS_REPOSITORY = "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/master/charts"
CSI_NFS_NAMESPACE = "csi-nfs"
NFS_PROVISIONER = "nfs.csi.k8s.io"

# Longhorn's disk on each Pi: cloud-init mounts dataDisks[0] there (plans.cloudinit.LONGHORN_MOUNT).
LONGHORN_DATA_PATH = "/var/lib/longhorn"
LONGHORN_DISK_LABEL = "node.longhorn.io/create-default-disk"

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CONTROL_PLANE_TOLERATION = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
PRIVILEGED = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/warn": "privileged",
    "pod-security.kubernetes.io/audit": "privileged",
}


def ceph_enabled(stack: StackConfig) -> bool:
    return enabled(stack) and bool(facts.osd_hosts(stack.nodes))


def longhorn_enabled(stack: StackConfig) -> bool:
    return enabled(stack) and stack.ainur is not None and bool(facts.longhorn_pis(stack.nodes))


def nfs_enabled(stack: StackConfig) -> bool:
    return enabled(stack) and stack.storage.nfs is not None


def is_default(stack: StackConfig, cluster: str, name: str) -> bool:
    return facts.default_class(stack, cluster) == name


# --- Rook-Ceph ---------------------------------------------------------------------------------


def ceph_nodes(stack: StackConfig) -> list[dict[str, Any]]:
    """The CephCluster's `storage.nodes`: every Arda machine's data disks but the retiring ones, as the inventory names them."""
    return [{"name": h.name, "devices": [{"name": d} for d in h.devices]} for h in facts.active_hosts(stack.nodes)]


def mon_count(stack: StackConfig) -> int:
    """Three mons (a quorum survives one down) once there are three OSD hosts, else one."""
    return 3 if len(facts.active_hosts(stack.nodes)) >= 3 else 1


def mgr_count(stack: StackConfig) -> int:
    return 2 if len(facts.active_hosts(stack.nodes)) >= 2 else 1


def _pool_size(stack: StackConfig) -> dict[str, Any]:
    size = facts.replicas(stack.storage)
    # Rook refuses a pool of one copy unless told it is on purpose.
    return {"size": size, "requireSafeReplicaSize": size > 1}


def _csi_secrets(kind: str) -> dict[str, str]:
    """The CSI secret parameters of the chart's own StorageClasses (its defaults, templated with the release namespace)."""
    namespace = "{{ .Release.Namespace }}"
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


def _storage_class(stack: StackConfig, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "name": name,
        "isDefault": is_default(stack, "arda", name),
        # A claim deleted (an app pruned from Git) leaves its volume: data is never deleted by accident.
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
        **extra,
    }


def osd_encryption(stack: StackConfig) -> dict[str, Any]:
    """With `iluvatar:arda.encryption` on, every OSD dm-crypt encrypted: Rook's `encryptedDevice` (a string, as its
    CephCluster storage config takes every value) has ceph-volume prepare it with `--dmcrypt`, whose key Ceph keeps in
    the monitors' config-key store, under dataDirHostPath on EPHEMERAL, itself sealed by the machine's key
    (plans.volume_encryption): a data disk carried off alone holds no key. Rook applies it to OSDs it creates; one made
    before stays as it is (stacks.day2 refuses turning encryption on for a machine that runs)."""
    return {"config": {"encryptedDevice": "true"}} if stack.arda.encryption.enabled else {}


def ceph_cluster_values(stack: StackConfig) -> dict[str, Any]:
    """The rook-ceph-cluster chart's values: the CephCluster on the inventory's disks, its pools and classes."""
    pool = _pool_size(stack)
    spec: dict[str, Any] = {
        "dataDirHostPath": "/var/lib/rook",
        "mon": {"count": mon_count(stack), "allowMultiplePerNode": False},
        "mgr": {"count": mgr_count(stack), "allowMultiplePerNode": False},
        # Ceph's daemons may run on the control planes (the homelab's disks are in them).
        "placement": {"all": {"tolerations": [dict(CONTROL_PLANE_TOLERATION)]}},
        "storage": {"useAllNodes": False, "useAllDevices": False, "nodes": ceph_nodes(stack), **osd_encryption(stack)},
        # Never wipe a disk: no cleanup on deletion, no wiping of disks another cluster left, no
        # uninstall while volumes exist, and no OSD removed by the operator on its own.
        "cleanupPolicy": {"confirmation": "", "allowUninstallWithVolumes": False, "wipeDevicesFromOtherClusters": False},
        "removeOSDsIfOutAndSafeToRemove": False,
    }
    values: dict[str, Any] = {
        "operatorNamespace": ROOK_NAMESPACE,
        # The toolbox is how the retire runbook talks to Ceph (`ceph osd ...`).
        "toolbox": {"enabled": True},
        "cephClusterSpec": spec,
        "cephBlockPools": [
            {
                "name": "ceph-blockpool",
                "spec": {"failureDomain": "host", "replicated": dict(pool)},
                "storageClass": _storage_class(
                    stack, "ceph-block", parameters={"imageFormat": "2", "imageFeatures": "layering", **_csi_secrets("rbd")}
                ),
            }
        ],
        "cephFileSystems": [],
        "cephObjectStores": [],
        # VolumeSnapshotClasses for the pools, when a backup snapshots a volume on them (plans.backup).
        **backup.rook_snapshot_values(stack),
    }
    if stack.storage.arda.ceph.filesystem:
        values["cephFileSystems"] = [
            {
                "name": "ceph-filesystem",
                "spec": {
                    "metadataPool": {"failureDomain": "host", "replicated": dict(pool)},
                    "dataPools": [{"name": "data0", "failureDomain": "host", "replicated": dict(pool)}],
                    "metadataServer": {"activeCount": 1, "activeStandby": True},
                },
                "storageClass": _storage_class(stack, "ceph-filesystem", pool="data0", parameters=_csi_secrets("cephfs")),
            }
        ]
    return values


def rook_operator_values() -> dict[str, Any]:
    """The rook-ceph chart's values: its CRDs, and CSI through ceph-csi-operator (Rook v1.20's only CSI)."""
    return {
        "crds": {"enabled": True},
        "csi": {"installCsiOperator": True},
        "enableDiscoveryDaemon": False,
        "monitoring": {"enabled": False},
    }


# --- Local volumes -------------------------------------------------------------------------------


def local_path_values(stack: StackConfig) -> dict[str, Any]:
    """local-path-provisioner's values: a folder per claim on the Talos user volume, the class `local-path`."""
    repository, tag = BUSYBOX_IMAGE
    return {
        "helperImage": {"repository": repository, "tag": tag},
        "storageClass": {
            "create": True,
            "name": "local-path",
            "defaultClass": is_default(stack, "arda", "local-path"),
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [USER_VOLUME_PATH]}],
        # Claims on control planes too, where workloads may run (allowSchedulingOnControlPlanes).
        "tolerations": [dict(CONTROL_PLANE_TOLERATION)],
    }


# --- Longhorn on the Ainur -------------------------------------------------------------------------


def longhorn_replicas(stack: StackConfig) -> int:
    """One replica per Pi with a data disk, up to three (each on its own Pi)."""
    return min(3, len(facts.longhorn_pis(stack.nodes)))


def longhorn_values(stack: StackConfig) -> dict[str, Any]:
    """Longhorn's values: disks only where cloud-init prepared one, a replica per such Pi, small for Pis."""
    replicas = longhorn_replicas(stack)
    return {
        "persistence": {
            "defaultClass": is_default(stack, "ainur", "longhorn"),
            "defaultClassReplicaCount": replicas,
            "reclaimPolicy": "Retain",
        },
        "defaultSettings": {
            "defaultDataPath": LONGHORN_DATA_PATH,
            # A default disk only on Pis labelled for it: those whose data disk cloud-init mounted.
            "createDefaultDiskLabeledNodes": True,
            "defaultReplicaCount": replicas,
            # A Deployment's pod on a dead Pi is deleted, so its volume can attach elsewhere (the Git mirror).
            "nodeDownPodDeletionPolicy": "delete-both-statefulset-and-deployment-pod",
            # Uninstalling Longhorn needs this flag set by hand: never by a values change.
            "deletingConfirmationFlag": False,
        },
        # Longhorn's pre-upgrade hook fails under Argo CD (its documented setting for Argo CD).
        "preUpgradeChecker": {"jobEnabled": False},
        "longhornUI": {"replicas": 1},
    }


# Longhorn's components, by the labels they carry at v1.10.1: the chart's own workloads (chart/templates/
# daemonset-sa.yaml:15, deployment-ui.yaml:43, deployment-driver.yaml:18) and the pods longhorn-manager makes
# (types/types.go:521-531, the component label; csi/deployment.go:303, the CSI plugin's). The manager labels its own
# pod for the admission webhook and the recovery backend once each serves (app/daemon.go:199, :309).
LONGHORN_MANAGER = {"app": "longhorn-manager"}
LONGHORN_UI = {"app": "longhorn-ui"}
LONGHORN_CSI_PLUGIN = {"app": "longhorn-csi-plugin"}
LONGHORN_DRIVER_DEPLOYER = {"app": "longhorn-driver-deployer"}
LONGHORN_COMPONENT = "longhorn.io/component"
LONGHORN_WEBHOOK = {"longhorn.io/admission-webhook": "longhorn-admission-webhook"}
LONGHORN_RECOVERY_BACKEND = {"longhorn.io/recovery-backend": "longhorn-recovery-backend"}
# The support-bundle manager, a Deployment the manager makes while a support bundle exists (longhorn-manager v1.10.1
# datastore/kubernetes.go:72-77, types/support_bundle.go:12), serving the bundle's status and file on 8080 (:15), which
# the managers fetch from its pod's address (controller/support_bundle_controller.go:412, :539; the API's download,
# api/supportbundle.go:63); and the agents it starts on every node, which post their nodes' bundles to it
# (support-bundle-kit pkg/manager/manager.go:366, their labels pkg/manager/agent.go:63-74, pkg/types/types.go:23).
LONGHORN_SUPPORT_BUNDLE_MANAGER = {"app": "support-bundle-manager"}
LONGHORN_SUPPORT_BUNDLE_AGENT = {"app": "support-bundle-agent"}
LONGHORN_SUPPORT_BUNDLE_PORT = 8080
# The managers' API, the admission webhook and the recovery backend (daemonset-sa.yaml:51-56).
LONGHORN_API_PORT = 9500
LONGHORN_WEBHOOK_PORT = 9502
LONGHORN_RECOVERY_PORT = 9503


def _component(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {LONGHORN_COMPONENT: name}}}


def longhorn_network_policies(stack: StackConfig) -> list[dict[str, Any]]:
    """Who reaches Longhorn's listeners on the Ainur: its own components alone, as its chart's policies at v1.10.1 have
    it (chart/templates/network-policies/, rendered only with `networkPolicies.enabled`), rendered by the program so that
    the matrix reads them (tools.netpol_check), and one more for the UI.

    The managers' API (9500) deletes volumes and reads the backup target's credentials: only the managers, the UI
    (which proxies it), the CSI plugin, the driver deployer and the manager's own jobs reach it
    (manager-network-policy.yaml:13-34). The admission webhook (9502) from anywhere: the API server calls it from a
    server's host, which no pod selector names (webhook-network-policy.yaml:13-16); it answers admission reviews
    only. The recovery backend (9503) from the share managers alone, its only client (the chart admits anyone,
    recovery-backend-network-policy.yaml:13-16). The instance managers (the engines and replicas, their data ports)
    and the backing images' managers from each other and the managers (instance-manager-networking.yaml:13-26). The
    UI from nobody: it is reached by `kubectl port-forward`, which enters its pod's own network (docs/layers/storage.md);
    the chart's own UI policy is for an ingress this program does not render. The support-bundle manager (a bundle holds
    every Longhorn log and object of the namespace) from the managers and its own agents alone, on its port; the
    chart has no policy for it. The pods' own Pi (the kubelet's probes, the engine's iSCSI initiator on the host) is
    always admitted (plans.netpol)."""
    if not longhorn_enabled(stack):
        return []
    ns = LONGHORN_NAMESPACE
    data_peers = [
        {"podSelector": {"matchLabels": LONGHORN_MANAGER}},
        _component("instance-manager"),
        _component("backing-image-manager"),
        _component("backing-image-data-source"),
    ]
    api_peers: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": LONGHORN_MANAGER}},
        {"podSelector": {"matchLabels": LONGHORN_UI}},
        {"podSelector": {"matchLabels": LONGHORN_CSI_PLUGIN}},
        {
            "podSelector": {
                "matchLabels": {"longhorn.io/managed-by": "longhorn-manager"},
                "matchExpressions": [{"key": "recurring-job.longhorn.io", "operator": "Exists"}],
            }
        },
        {"podSelector": {"matchExpressions": [{"key": "longhorn.io/job-task", "operator": "Exists"}]}},
        {"podSelector": {"matchLabels": LONGHORN_DRIVER_DEPLOYER}},
    ]
    return [
        netpol.allow("longhorn-manager", ns, LONGHORN_MANAGER, [], api_peers),
        netpol.allow("longhorn-admission-webhook", ns, LONGHORN_WEBHOOK, [netpol.port(LONGHORN_WEBHOOK_PORT)]),
        netpol.allow(
            "longhorn-recovery-backend", ns, LONGHORN_RECOVERY_BACKEND, [netpol.port(LONGHORN_RECOVERY_PORT)], [_component("share-manager")]
        ),
        netpol.allow("instance-manager", ns, {LONGHORN_COMPONENT: "instance-manager"}, [], data_peers),
        netpol.allow("backing-image-manager", ns, {LONGHORN_COMPONENT: "backing-image-manager"}, [], data_peers),
        netpol.allow("backing-image-data-source", ns, {LONGHORN_COMPONENT: "backing-image-data-source"}, [], data_peers),
        netpol.allow("longhorn-ui", ns, LONGHORN_UI, []),
        netpol.allow(
            "longhorn-support-bundle-manager",
            ns,
            LONGHORN_SUPPORT_BUNDLE_MANAGER,
            [netpol.port(LONGHORN_SUPPORT_BUNDLE_PORT)],
            [{"podSelector": {"matchLabels": LONGHORN_MANAGER}}, {"podSelector": {"matchLabels": LONGHORN_SUPPORT_BUNDLE_AGENT}}],
        ),
    ]


def longhorn_node_labels(stack: StackConfig) -> dict[str, dict[str, str]]:
    """The Pis Longhorn may keep replicas on, by name, with the label that gives each its default disk."""
    return {n.name: {LONGHORN_DISK_LABEL: "true"} for n in facts.longhorn_pis(stack.nodes)} if longhorn_enabled(stack) else {}


# Longhorn's tag on the Pis that may hold a replica of a netbooted maia's root: those that boot from their cards. Longhorn
# copies a Kubernetes Node's `node.longhorn.io/default-node-tags` annotation (a JSON list) into its Longhorn Node's
# spec.tags whenever that Node has no tag yet (longhorn-manager v1.10.1 controller/kubernetes_node_controller.go:335-352,
# syncDefaultNodeTags, on every change of either Node), and the replica scheduler places a volume's replicas only on
# Nodes whose tags hold every one of its nodeSelector (scheduler/replica_scheduler.go:397, types/types.go:1319
# IsSelectorsInTags), which the CSI driver takes from its StorageClass's `nodeSelector` parameter (csi/util.go:248).
LONGHORN_NODE_TAGS_ANNOTATION = "node.longhorn.io/default-node-tags"
PI_ROOT_TAG = "pi-root"


def pi_root_pis(stack: StackConfig) -> list[Node]:
    """The Pis Longhorn may keep a netbooted root's replicas on: a data disk, and a card to boot from. Never a netbooting
    maia: after a power cut its root must be served before it can boot, so no root may depend on its disk."""
    if not longhorn_enabled(stack) or not any(n.boot == "netboot" for n in stack.ainur_nodes):
        return []
    return [n for n in facts.longhorn_pis(stack.nodes) if n.boot != "netboot"]


def longhorn_node_annotations(stack: StackConfig) -> dict[str, dict[str, str]]:
    """Longhorn's default node tags, by Pi: PI_ROOT_TAG on each Pi that may hold a root's replica (`pi_root_pis`)."""
    return {n.name: {LONGHORN_NODE_TAGS_ANNOTATION: json.dumps([PI_ROOT_TAG])} for n in pi_root_pis(stack)}


def pi_root_replicas(stack: StackConfig) -> int:
    """A netbooted root's replicas: one per Pi that may hold one, up to three (Longhorn keeps one per node)."""
    return min(3, len(pi_root_pis(stack)))


# --- Longhorn's encrypted class ------------------------------------------------------------------------------------
#
# Longhorn v1.10.1 encrypts a volume whose StorageClass says `encrypted: "true"`: its CSI node plugin formats the block
# device with LUKS (cryptsetup, in the instance manager) and opens it with the passphrase the CSI sidecars read from the
# Secret the class names, at each stage and publish; a missing Secret leaves the claim Pending (longhorn
# enhancements/20221024-pv-encryption.md, "User Experience In Detail"; examples/crypto/storageclass-crypto-global.yaml
# and secret-crypto-global.yaml at v1.10.1: CRYPTO_KEY_VALUE, CRYPTO_KEY_PROVIDER "secret"). One Secret for every
# volume (the example's "global" key). A replica on a Pi's disk, and a Longhorn backup of it, is ciphertext; the
# passphrase is a Kubernetes Secret on the Ainur, sealed there by k3s's secrets encryption (plans.k3s), and a
# protected Pulumi secret. The class is the program's (the chart's own `longhorn` class has no encryption setting,
# chart/templates/storageclass.yaml at v1.10.1), with the chart's class's replica count.
ENCRYPTED_CLASS = "longhorn-encrypted"
CRYPTO_OBJECT = "longhorn-crypto"
CRYPTO_PASSPHRASE_LENGTH = 48
# The CSI operations that need the passphrase: the provisioner's (to fail early without it), the node's stage and
# publish (to open the volume), as Longhorn's example names them, and the node's expand: without a secret there,
# NodeExpandVolume skips resizing the LUKS mapping and still reports the new size, so an online expansion leaves the
# filesystem at its old size until the volume is staged again (longhorn-manager csi/node_server.go:849-853 and :890
# at v1.10.1; kubelet passes it since CSINodeExpandSecret went GA in Kubernetes 1.29).
CRYPTO_OPERATIONS = ("provisioner", "node-publish", "node-stage", "node-expand")


def longhorn_encrypted(stack: StackConfig) -> bool:
    """Whether the Ainur's claims go on Longhorn's encrypted class: Longhorn runs, and the stack asks for it."""
    return longhorn_enabled(stack) and stack.storage.ainur.encrypted


def crypto_secret(passphrase: str) -> dict[str, Any]:
    """The Secret Longhorn opens every encrypted volume with (`passphrase`: a Pulumi secret, never in the render)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CRYPTO_OBJECT, "namespace": LONGHORN_NAMESPACE},
        "type": "Opaque",
        "stringData": {"CRYPTO_KEY_VALUE": passphrase, "CRYPTO_KEY_PROVIDER": "secret"},
    }


def encrypted_storage_class(stack: StackConfig) -> dict[str, Any]:
    """`longhorn-encrypted`: the chart's class's settings (a replica per Pi with a disk, Retain, grown in place) and
    LUKS, its passphrase CRYPTO_OBJECT's."""
    secrets: dict[str, str] = {}
    for operation in CRYPTO_OPERATIONS:
        secrets[f"csi.storage.k8s.io/{operation}-secret-name"] = CRYPTO_OBJECT
        secrets[f"csi.storage.k8s.io/{operation}-secret-namespace"] = LONGHORN_NAMESPACE
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": ENCRYPTED_CLASS},
        "provisioner": "driver.longhorn.io",
        "parameters": {
            "numberOfReplicas": str(longhorn_replicas(stack)),
            "staleReplicaTimeout": "30",
            "fsType": "ext4",
            "encrypted": "true",
            **secrets,
        },
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }


def git_mirror_class(stack: StackConfig) -> str:
    """Where the Ainur's Git mirror and Headscale keep their state: Longhorn when it runs (the pod can move to any Pi),
    encrypted when the stack asks for it, else k3s's local-path."""
    if longhorn_encrypted(stack):
        return ENCRYPTED_CLASS
    return "longhorn" if longhorn_enabled(stack) else "local-path"


def k3s_disables_local_storage(stack: StackConfig) -> bool:
    """k3s's local-path addon marks its class default; with Longhorn the default, k3s runs without it."""
    return longhorn_enabled(stack) and is_default(stack, "ainur", "longhorn")


# --- NFS ---------------------------------------------------------------------------------------


def csi_nfs_values() -> dict[str, Any]:
    """csi-driver-nfs's values: the driver only; its StorageClass is Pulumi's (`nfs_storage_class`)."""
    return {"storageClass": {"create": False}, "externalSnapshotter": {"enabled": False}, "controller": {"runOnControlPlane": False}}


def nfs_storage_class(stack: StackConfig) -> dict[str, Any]:
    """The `nfs` StorageClass: a folder per claim (`<namespace>/<claim>`) on the export, by the server's address."""
    nfs = stack.storage.nfs
    assert nfs is not None
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "nfs",
            "labels": dict(gitops.MANAGED_BY),
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true" if is_default(stack, "arda", "nfs") else "false"},
        },
        "provisioner": NFS_PROVISIONER,
        "parameters": {"server": facts.nfs_address(stack), "share": nfs.share, "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"},
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
        "mountOptions": list(nfs.mount_options),
    }


# --- The restore drill's scratch classes ------------------------------------------------------

SCRATCH_PREFIX = "drill-scratch-"


def scratch_class_name(name: str) -> str:
    return f"{SCRATCH_PREFIX}{name}"


def scratch_class(stack: StackConfig, name: str) -> dict[str, Any]:
    """Arda's class `name` as its chart (or Pulumi) makes it, but with `reclaimPolicy: Delete`, for the restore drill's
    scratch claims (plans.drill): every class above keeps a volume whose claim goes, so a drill restoring into one
    would leave a full copy of the volume it drilled behind at every run. The provisioner and parameters are those
    the charts render (rook v1.20.4 deploy/charts/rook-ceph-cluster/templates/cephblockpool.yaml and
    cephfilesystem.yaml: `<operatorNamespace>.rbd|cephfs.csi.ceph.com`, `clusterID` the release's namespace, the
    pool; local-path-provisioner v0.0.30's chart: `cluster.local/local-path-provisioner`), compared with the rendered charts in
    tests/plans/test_storage.py."""
    made: dict[str, Any]
    if name == "nfs":
        made = nfs_storage_class(stack)
    else:
        made = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {}, "allowVolumeExpansion": True}
        if name == "local-path":
            # The chart names its provisioner `cluster.local/<release>` (its provisionerName helper), not upstream's default.
            made |= {"provisioner": "cluster.local/local-path-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}
        else:
            values = ceph_cluster_values(stack)
            namespace = {"{{ .Release.Namespace }}": ROOK_NAMESPACE}
            pools = {p["storageClass"]["name"]: p for p in values["cephBlockPools"]}
            filesystems = {f["storageClass"]["name"]: f for f in values["cephFileSystems"]}
            if name in pools:
                pool = pools[name]
                parameters = {"pool": pool["name"], "clusterID": ROOK_NAMESPACE, **pool["storageClass"]["parameters"]}
                made["provisioner"] = f"{ROOK_NAMESPACE}.rbd.csi.ceph.com"
            else:
                fs = filesystems[name]
                parameters = {"fsName": fs["name"], "pool": f"{fs['name']}-{fs['storageClass']['pool']}", "clusterID": ROOK_NAMESPACE}
                parameters |= fs["storageClass"]["parameters"]
                made["provisioner"] = f"{ROOK_NAMESPACE}.cephfs.csi.ceph.com"
            made["parameters"] = {k: namespace.get(v, v) for k, v in parameters.items()}
            made["volumeBindingMode"] = "Immediate"
    labels = {**gitops.MANAGED_BY}
    return {
        **made,
        "metadata": {"name": scratch_class_name(name), "labels": labels, "annotations": {DEFAULT_CLASS_ANNOTATION: "false"}},
        # The one class here that deletes: only the drill's scratch claims use it.
        "reclaimPolicy": "Delete",
    }


# --- Namespaces and Applications -------------------------------------------------------------


def namespace(name: str) -> dict[str, Any]:
    """A storage namespace, Pulumi's: privileged (Talos enforces baseline; storage daemons need the host)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**gitops.MANAGED_BY, **PRIVILEGED}, "annotations": dict(gitops.PULUMI_OWNED)},
    }


@dataclass(frozen=True)
class App:
    """A storage chart as Argo CD gets it: on which cluster, in which namespace, the Application itself."""

    cluster: str
    namespace: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = self.manifest["spec"]["source"]["helm"]["valuesObject"]
        return values


def applications(stack: StackConfig) -> list[App]:
    """Every storage chart as a platform Application, per cluster."""
    apps: list[App] = []
    if ceph_enabled(stack):
        # With monitoring, the Ceph manager's metrics and their ServiceMonitor (plans.metrics).
        charts = (
            ("rook-ceph", deep_merge(rook_operator_values(), metrics.rook_operator(stack))),
            ("rook-ceph-cluster", deep_merge(ceph_cluster_values(stack), metrics.rook_cluster(stack))),
        )
        for release, values in charts:
            # The cluster's CRDs come with the operator's chart: its sync retries until they exist.
            application = gitops.platform_application(
                release, chart=release, repo_url=ROOK_REPOSITORY, version=ROOK_VERSION, values=values, namespace=ROOK_NAMESPACE
            )
            apps.append(App("arda", ROOK_NAMESPACE, application))
    if local_volumes(stack):
        apps.append(
            App(
                "arda",
                LOCAL_PATH_NAMESPACE,
                gitops.platform_application(
                    "local-path-provisioner",
                    path=LOCAL_PATH_CHART_PATH,
                    repo_url=LOCAL_PATH_REPOSITORY,
                    version=LOCAL_PATH_VERSION,
                    values=local_path_values(stack),
                    namespace=LOCAL_PATH_NAMESPACE,
                ),
            )
        )
    if nfs_enabled(stack):
        apps.append(
            App(
                "arda",
                CSI_NFS_NAMESPACE,
                gitops.platform_application(
                    "csi-driver-nfs",
                    chart="csi-driver-nfs",
                    repo_url=CSI_NFS_REPOSITORY,
                    version=CSI_NFS_VERSION,
                    values=csi_nfs_values(),
                    namespace=CSI_NFS_NAMESPACE,
                ),
            )
        )
    if backup.snapshots_enabled(stack):
        # The CSI snapshot CRDs and controller, for the backups' Snapshot and Clone copies.
        apps += [App("arda", namespace, application) for namespace, application in backup.snapshot_applications()]
    if longhorn_enabled(stack):
        apps.append(
            App(
                "ainur",
                LONGHORN_NAMESPACE,
                gitops.platform_application(
                    "longhorn",
                    chart="longhorn",
                    repo_url=LONGHORN_REPOSITORY,
                    version=LONGHORN_VERSION,
                    values=longhorn_values(stack),
                    namespace=LONGHORN_NAMESPACE,
                ),
            )
        )
    return apps


def namespaces(stack: StackConfig, cluster: str) -> list[dict[str, Any]]:
    """The namespaces the cluster's storage Applications install into."""
    # kube-system (the snapshot controller's) is Kubernetes' own, never Pulumi's.
    return [namespace(ns) for ns in dict.fromkeys(app.namespace for app in applications(stack) if app.cluster == cluster) if ns != "kube-system"]


# --- Retiring OSDs -------------------------------------------------------------------------------


def retire_script(host: str, disks: tuple[str, ...], every_disk: bool) -> str:
    """Mark the OSDs on `host` (all of them, or those on `disks`) out, then wait until Ceph can lose them.

    Out OSDs keep serving while Ceph copies their data to the other hosts; `ceph osd safe-to-destroy`
    answers yes only once no placement group needs them. The script purges nothing: the runbook
    does, after this Job completes (docs/day2.md#retiring-a-disk-or-a-machine).
    """
    pick = (
        'ids=$(ceph osd ls-tree "$host")\n'
        if every_disk
        else (
            "wanted=''\n"
            'for disk in $disks; do wanted="$wanted $(basename "$(readlink -f "/host${disk#/dev}")")"; done\n'
            "ids=''\n"
            'for id in $(ceph osd ls-tree "$host"); do\n'
            '  devices=$(ceph osd metadata "$id" -f json | python3 -c \'import json,sys; print(json.load(sys.stdin).get("devices", ""))\')\n'
            '  for dev in $(echo "$devices" | tr , " "); do\n'
            '    case " $wanted " in *" $dev "*) ids="$ids $id";; esac\n'
            "  done\n"
            "done\n"
        )
    )
    return (
        "set -eu\n"
        f"host={shlex.quote(host)}\n"
        f"disks={shlex.quote(' '.join(disks))}\n"
        f"{pick}"
        'if [ -z "$(echo $ids)" ]; then echo "retire $host: no OSD on $disks (already purged?)"; exit 0; fi\n'
        'echo "retire $host: marking out osd $ids"\n'
        "ceph osd out $ids\n"
        "until ceph osd safe-to-destroy $ids; do\n"
        '  echo "retire $host: Ceph still needs osd $ids; waiting for the data to move"; sleep 60\n'
        "done\n"
        'echo "retire $host: osd $ids are safe to destroy; purge them with the runbook: ceph osd purge <id> --yes-i-really-mean-it"\n'
    )


def ceph_job(
    name: str, container: str, script: str, labels: dict[str, str], on_node: str | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Job that runs `script` with Ceph's admin credentials (the toolbox Job of Rook's examples).

    `on_node`: run on that machine, with its /dev read-only at /host (to match inventory paths to the kernel names Ceph reports).
    """
    volumes: list[dict[str, Any]] = [
        {
            "name": "ceph-admin-secret",
            "secret": {"secretName": "rook-ceph-mon", "optional": False, "items": [{"key": "ceph-secret", "path": "secret.keyring"}]},
        },
        {"name": "mon-endpoint-volume", "configMap": {"name": "rook-ceph-mon-endpoints", "items": [{"key": "data", "path": "mon-endpoints"}]}},
        {"name": "ceph-config", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "ceph-config", "mountPath": "/etc/ceph", "readOnly": True}]
    pod: dict[str, Any] = {"restartPolicy": "OnFailure", "tolerations": [dict(CONTROL_PLANE_TOLERATION)]}
    if on_node is not None:
        volumes.append({"name": "host-dev", "hostPath": {"path": "/dev", "type": "Directory"}})
        mounts.append({"name": "host-dev", "mountPath": "/host", "readOnly": True})
        pod["nodeSelector"] = {"kubernetes.io/hostname": on_node}
    pod |= {
        "initContainers": [
            {
                "name": "config-init",
                "image": ROOK_IMAGE,
                "command": ["/usr/local/bin/toolbox.sh"],
                "args": ["--skip-watch"],
                "env": [{"name": "ROOK_CEPH_USERNAME", "valueFrom": {"secretKeyRef": {"name": "rook-ceph-mon", "key": "ceph-username"}}}],
                "volumeMounts": [
                    {"name": "ceph-config", "mountPath": "/etc/ceph"},
                    {"name": "mon-endpoint-volume", "mountPath": "/etc/rook"},
                    {"name": "ceph-admin-secret", "mountPath": "/var/lib/rook-ceph-mon"},
                ],
            }
        ],
        "containers": [{"name": container, "image": ROOK_IMAGE, "command": ["bash", "-c", script], "volumeMounts": mounts}],
        "volumes": volumes,
    }
    metadata: dict[str, Any] = {"name": name, "namespace": ROOK_NAMESPACE, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"backoffLimit": 10, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def retire_job(node: Node) -> dict[str, Any]:
    """The Job that takes a retiring node's OSDs out (plans.storage.ceph_job with the retire script).

    `retire: true` needs only the CRUSH map; retiring some disks runs on the node itself, with its
    /dev read-only, to match each inventory path (a by-id link too) to the kernel name Ceph reports.
    """
    every = node.retire is True
    disks = node.retired_disks
    labels = {**gitops.MANAGED_BY, "app.kubernetes.io/name": "osd-retire", "iluvatar.dev/node": node.name}
    return ceph_job(
        f"osd-retire-{node.name}",
        "retire",
        retire_script(node.name, disks, every),
        labels,
        on_node=None if every else node.name,
        # Draining a disk takes hours: `pulumi up` does not wait for it (the runbook does).
        annotations={**SKIP_AWAIT, "iluvatar.dev/retiring": ",".join(disks)},
    )


# How long, after a Ceph host came back, its placement groups may take to be all active+clean again.
RECOVERY_WAIT_SECONDS = 1200
NOOUT_SET = "ceph-noout-set"
NOOUT_UNSET = "ceph-noout-unset"


def noout_jobs() -> dict[str, list[dict[str, Any]]]:
    """The upgrader's hooks around a Ceph host's reboot (upgrader apply's stdin `hooks`: a list of Jobs each side, as
    the upgrader reads it): `before` sets `noout` so Ceph does not start copying the host's data away while it reboots;
    `after` unsets it and waits until every placement group is active+clean again, so the next host goes down only once
    the data is whole."""
    labels = {**gitops.MANAGED_BY, "app.kubernetes.io/name": "ceph-noout"}
    wait = (
        f"deadline=$(( $(date +%s) + {RECOVERY_WAIT_SECONDS} ))\n"
        'until ceph pg stat -f json | python3 -c \'import json,sys; s=json.load(sys.stdin)["pg_summary"]; '
        'clean=sum(p["num"] for p in s["num_pg_by_state"] if p["name"]=="active+clean"); sys.exit(clean != s["num_pgs"])\'; do\n'
        '  if [ "$(date +%s)" -ge "$deadline" ]; then\n'
        f'    echo "Ceph\'s placement groups are not all active+clean {RECOVERY_WAIT_SECONDS} s after the host came back; look with: ceph status" >&2\n'
        "    exit 1\n"
        "  fi\n"
        "  sleep 10\n"
        "done\n"
    )
    return {
        "before": [ceph_job(NOOUT_SET, "noout", "set -eu\nceph osd set noout\n", labels)],
        "after": [ceph_job(NOOUT_UNSET, "noout", "set -eu\nceph osd unset noout\n" + wait, labels)],
    }


def retire_jobs(stack: StackConfig) -> list[dict[str, Any]]:
    """One Job per Arda machine with retiring disks."""
    return [retire_job(n) for n in stack.arda_nodes if n.retired_disks] if enabled(stack) else []


# --- What this deployment ran Ceph on (the stack output the next run reads back) -------------------


def state(stack: StackConfig, deployed: facts.Deployed) -> dict[str, Any]:
    """The stack output `storage`: the disks that run OSDs (retiring ones included), the retiring ones, the classes.

    Without GitOps storage is not deployed, so the last deployment's OSDs are carried over: a
    Ceph cluster Argo CD stopped managing still holds data on them.
    """
    if enabled(stack):
        osds = {h.name: [*h.devices, *h.retiring] for h in facts.osd_hosts(stack.nodes)}
        retiring = {h.name: list(h.retiring) for h in facts.osd_hosts(stack.nodes) if h.retiring}
    else:
        osds = {host: list(disks) for host, disks in deployed.osds.items()}
        retiring = {host: list(disks) for host, disks in deployed.retiring.items()}
    return {"cephOsds": dict(sorted(osds.items())), "cephRetiring": dict(sorted(retiring.items())), "classes": storage_classes(stack)}


def storage_classes(stack: StackConfig) -> dict[str, dict[str, bool]]:
    """Each cluster's StorageClasses and which one is the default (True), as deployed."""
    out: dict[str, dict[str, bool]] = {}
    if enabled(stack):
        out["arda"] = {name: is_default(stack, "arda", name) for name in facts.arda_classes(stack)}
        if stack.ainur is not None:
            out["ainur"] = {name: is_default(stack, "ainur", name) for name in facts.ainur_classes(stack)}
    return out
