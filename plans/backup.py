"""Backup plan: the apps' volumes by VolSync (restic), Arda's etcd by talos-backup (age), the Ainur's by k3s.

- **Volumes.** VolSync (chart 0.16.0) on Arda. Each volume an app's `backup:` names gets a restic
  repository `<target>/volsync/<category>/<app>/<claim>` and a Secret `<claim>-restic` that Pulumi writes
  into the app's namespace (the repository, its password: a protected random password, and the S3
  credentials). The app's folder in Git (`iluvatar scaffold`) holds its ReplicationSource (the schedule,
  what to keep), its ReplicationDestination (a restore, once, of the newest snapshot) and the claim itself
  with `dataSourceRef` to that destination: on a rebuilt cluster, the claim is filled from the backup before
  the app starts; on a first install the restore finds an empty repository and the claim starts empty.
  Snapshot and Clone need CSI snapshots: the snapshot controller and its CRDs (external-snapshotter) and
  Rook's VolumeSnapshotClasses come with the storage layer. With Direct (a class without snapshots),
  the restore writes into the claim itself.
- **Arda's etcd.** talos-backup (a CronJob in `etcd-backup`) takes a snapshot through the Talos API (a
  `talos.dev` ServiceAccount with the `os:etcd:backup` role, which the control planes' config allows in
  that namespace), encrypts it with age to the public key of a protected Pulumi secret, and uploads it to
  the S3 target under `<prefix>/etcd/<cluster>/`.
- **The Ainur's etcd.** k3s's own schedule and retention on every valar (`etcd-snapshot-*` in its
  config), uploaded to the S3 target with the credentials of the Secret `kube-system/k3s-etcd-snapshot-s3`
  (`etcd-s3-config-secret`); with an NFS target they stay on each valar's disk.

Plain functions returning manifests and values as dicts; no Pulumi here.
"""

from __future__ import annotations

from typing import Any

from plans import gitops, netpol
from plans.local_volumes import enabled as storage_enabled
from stacks import data, pins
from stacks import storage as storage_facts
from stacks.data_model import AppBackup, BackupVolume, Keep
from stacks.model import App, StackConfig

CHART = "volsync"
VERSION = pins.CHARTS["volsync"]
REPOSITORY = "https://backube.github.io/helm-charts/"
NAMESPACE = "volsync-system"
API = "volsync.backube/v1alpha1"
MOUNT = "backup"  # an NFS target is mounted in the mover at /mnt/<MOUNT>
PRUNE_INTERVAL_DAYS = 7
CACHE = "1Gi"

ETCD_NAMESPACE = "etcd-backup"
TALOS_BACKUP_IMAGE = pins.IMAGES["talos-backup"]
TALOS_ROLE = "os:etcd:backup"
TALOS_BACKUP = "talos-backup"
TALOS_S3_SECRET = "talos-backup-s3"  # noqa: S105 - a Secret's name
K3S_S3_SECRET = "k3s-etcd-snapshot-s3"  # noqa: S105 - a Secret's name

# The CSI snapshot controller and its CRDs, at the release whose module is pinned (tools/upstream/modules.sum).
SNAPSHOTTER_REPOSITORY = "https://github.com/kubernetes-csi/external-snapshotter.git"
SNAPSHOTTER_VERSION = pins.MANIFESTS["external-snapshotter"]
SNAPSHOT_CRDS_PATH = "client/config/crd"
SNAPSHOT_CONTROLLER_PATH = "deploy/kubernetes/snapshot-controller"
# Rook's chart names its VolumeSnapshotClasses after the StorageClasses they snapshot.
SNAPSHOT_CLASSES = {"ceph-block": "ceph-block", "ceph-filesystem": "ceph-filesystem"}


def enabled(stack: StackConfig) -> bool:
    return stack.backup is not None


def apps(stack: StackConfig) -> list[App]:
    return [app for app in stack.apps if app.backup is not None]


def target(stack: StackConfig) -> data.Target:
    assert stack.backup is not None
    return data.target_of(stack.backup)


def nfs_server(stack: StackConfig) -> str:
    """The NFS target's server as an address: a name is resolved by the plan, from the machines' and VIPs' names. The
    rule that checks the target reads the whole internal zone (stacks.data.zone_address) and refuses every other name
    of it (an app's host, a gateway's, the Git mirror's: nothing there serves NFS), so for a stack that validates the two
    give the same address; the zone's records are not read here because plans.zone reads the netboot plans, which read
    plans.k3s, which reads this module."""
    host = target(stack).host
    zone = storage_facts.zone_addresses(list(enumerate(stack.nodes)), stack.arda, stack.ainur, stack.network)
    found = zone.get(host.rstrip(".").lower())
    return str(found) if found is not None else host


def helm_values() -> dict[str, Any]:
    """VolSync's chart values: its CRDs, one controller; the movers run as the namespace allows (no privileged movers).

    Its metrics (`volsync_volume_out_of_sync`, behind the alert BackupFailed) are served without a caller's token: the
    controller otherwise asks the API server to authenticate and authorize each scrape (volsync v0.16.0 cmd/main.go:132
    `--metrics-require-rbac` true by default, :306-311 filters.WithAuthenticationAndAuthorization), and the chart's
    ServiceMonitor sends no token (helm/volsync/templates/servicemonitor-volsync.yaml:11-17), so Prometheus's every scrape
    was refused. `metrics.disableAuth` is the chart's switch for it (values.yaml:39-41, deployment-controller.yaml:60-62:
    `--metrics-require-rbac=false`); the endpoint stays TLS. The ServiceMonitor is rendered only when Helm sees the
    monitoring.coreos.com/v1 API (servicemonitor-volsync.yaml:1): the Release follows Arda's gate, which follows the
    Prometheus Operator's CRDs (components.arda: Cilium's release waits for them, the gate for Cilium's)."""
    return {"manageCRDs": True, "replicaCount": 1, "metrics": {"disableAuth": True}}


# The controller's metrics listener (helm/volsync/templates/deployment-controller.yaml:52, `--metrics-bind-address`).
METRICS_PORT = 8443


def network_policy(stack: StackConfig) -> dict[str, Any]:
    """Who reaches VolSync's namespace: Prometheus alone, on the controller's metrics port (the chart's ServiceMonitor
    scrapes it, servicemonitor-volsync.yaml:9-17), and no one without monitoring. Its metrics ask no token
    (`helm_values`), so without this every pod of Arda would read them. Every pod of the namespace is selected: the
    controller is its only one (the movers run in the apps' namespaces), and a pod a later chart adds is closed, not
    open. Its health listener (8081) only the kubelet reaches, from the pod's own machine (plans.netpol)."""
    rules = [{"from": [netpol.pods("prometheus", "monitoring")], "ports": [netpol.port(METRICS_PORT)]}] if stack.monitoring is not None else []
    return {
        "apiVersion": netpol.API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": CHART, "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], **netpol.ingress(rules)},
    }


def namespaces(stack: StackConfig) -> list[dict[str, Any]]:
    """VolSync's namespace and talos-backup's (restricted: its pod runs as a user with no capabilities)."""
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(gitops.MANAGED_BY)}}]
    if arda_etcd(stack):
        labels = {**gitops.MANAGED_BY, **{f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}}
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ETCD_NAMESPACE, "labels": labels}})
    return [{**ns, "metadata": {**ns["metadata"], "annotations": dict(gitops.PULUMI_OWNED)}} for ns in out]


# --- Volumes ---------------------------------------------------------------------------------------


def volume_class(stack: StackConfig, volume: BackupVolume) -> str:
    chosen = volume.storage_class or storage_facts.default_class(stack, "arda")
    assert chosen is not None, "stacks.data refuses a backup on a cluster without a StorageClass"
    return chosen


def repository(stack: StackConfig, app: App, claim: str) -> str:
    """The restic repository of one claim, as RESTIC_REPOSITORY spells it."""
    where = target(stack)
    folder = f"volsync/{app.category}/{app.name}/{claim}"
    if where.kind == "nfs":
        return f"/mnt/{MOUNT}/{folder}"
    prefix = f"{where.prefix}/" if where.prefix else ""
    return f"s3:{where.endpoint}/{where.path}/{prefix}{folder}"


def restic_secret_name(claim: str) -> str:
    return f"{claim}-restic"


def restic_secret(stack: StackConfig, app: App, claim: str, password: str, s3: tuple[str, str] | None) -> dict[str, Any]:
    """The restic Secret VolSync's mover reads: the repository, its password and, for S3, the credentials.

    `password` and `s3` are Pulumi secrets at run time; the components keep the whole stringData secret.
    """
    data_: dict[str, str] = {"RESTIC_REPOSITORY": repository(stack, app, claim), "RESTIC_PASSWORD": password}
    if s3 is not None:
        assert stack.backup is not None
        data_ |= {"AWS_ACCESS_KEY_ID": s3[0], "AWS_SECRET_ACCESS_KEY": s3[1], "AWS_DEFAULT_REGION": stack.backup.region}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": restic_secret_name(claim),
            "namespace": app.namespace,
            "labels": {**gitops.MANAGED_BY, "iluvatar.dev/app": app.name},
            "annotations": dict(gitops.PULUMI_OWNED),
        },
        "type": "Opaque",
        "stringData": data_,
    }


def retain(keep: Keep) -> dict[str, int | str]:
    """VolSync's `retain` from the stack's keep. Every count is an integer in VolSync's CRD but `last`, a string
    (volsync v0.16.0 api/v1alpha1/replicationsource_types.go:176 `Last *string`, formatted into `--keep-last %s` at
    internal/controller/mover/restic/mover.go:703): a number there is refused by the API server."""
    return {k: str(v) if k == "last" else v for k, v in keep.model_dump(exclude_none=True).items()}


def _mover(stack: StackConfig, claim: str) -> dict[str, Any]:
    mover: dict[str, Any] = {"repository": restic_secret_name(claim)}
    if target(stack).kind == "nfs":
        mover["moverVolumes"] = [{"mountPath": MOUNT, "volumeSource": {"nfs": {"server": nfs_server(stack), "path": target(stack).path}}}]
    return mover


def copy_method(stack: StackConfig, backup: AppBackup, volume: BackupVolume) -> str:
    """The volume's copy method: the backup's, else what its class allows (stacks.data.copy_method)."""
    return data.copy_method(backup, volume_class(stack, volume))


def replication_source(stack: StackConfig, app: App, backup: AppBackup, volume: BackupVolume) -> dict[str, Any]:
    """The claim's scheduled backup (in the app's folder in Git)."""
    method = copy_method(stack, backup, volume)
    restic: dict[str, Any] = {
        **_mover(stack, volume.claim),
        "copyMethod": method,
        "pruneIntervalDays": PRUNE_INTERVAL_DAYS,
        "retain": retain(backup.keep),
        "cacheCapacity": CACHE,
    }
    cls = volume_class(stack, volume)
    if method == "Snapshot" and cls in SNAPSHOT_CLASSES:
        restic["volumeSnapshotClassName"] = SNAPSHOT_CLASSES[cls]
    return {
        "apiVersion": API,
        "kind": "ReplicationSource",
        "metadata": {"name": volume.claim},
        "spec": {"sourcePVC": volume.claim, "trigger": {"schedule": backup.schedule}, "restic": restic},
    }


def _restored_by_snapshot(stack: StackConfig, backup: AppBackup, volume: BackupVolume) -> bool:
    """Whether the claim is filled by VolSync's volume populator, from a snapshot of its class: a class with snapshots
    copied other than Direct. A volume on a class that clones but has no snapshots (nfs, with Clone) is restored into
    the claim itself, as Direct."""
    return copy_method(stack, backup, volume) != "Direct" and volume_class(stack, volume) in SNAPSHOT_CLASSES


def restore_name(claim: str) -> str:
    return f"{claim}-restore"


def replication_destination(stack: StackConfig, backup: AppBackup, volume: BackupVolume) -> dict[str, Any]:
    """The claim's restore, once: into a snapshot the claim is populated from, or (Direct) into the claim itself."""
    cls = volume_class(stack, volume)
    restic: dict[str, Any] = {**_mover(stack, volume.claim), "cacheCapacity": CACHE}
    if not _restored_by_snapshot(stack, backup, volume):
        restic |= {"copyMethod": "Direct", "destinationPVC": volume.claim}
    else:
        restic |= {
            "copyMethod": "Snapshot",
            "accessModes": ["ReadWriteOnce"],
            "capacity": volume.size,
            "storageClassName": cls,
            "volumeSnapshotClassName": SNAPSHOT_CLASSES[cls],
        }
    return {
        "apiVersion": API,
        "kind": "ReplicationDestination",
        "metadata": {"name": restore_name(volume.claim)},
        "spec": {"trigger": {"manual": "restore-once"}, "restic": restic},
    }


def claim(stack: StackConfig, backup: AppBackup, volume: BackupVolume) -> dict[str, Any]:
    """The app's claim: filled from its restore when the class has snapshots (VolSync's volume populator)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": volume_class(stack, volume),
        "resources": {"requests": {"storage": volume.size}},
    }
    if _restored_by_snapshot(stack, backup, volume):
        spec["dataSourceRef"] = {"kind": "ReplicationDestination", "apiGroup": "volsync.backube", "name": restore_name(volume.claim)}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": volume.claim}, "spec": spec}


def app_manifests(stack: StackConfig, app: App) -> dict[str, dict[str, Any]]:
    """What `iluvatar scaffold` writes into the app's folder for its backups: file name -> object."""
    backup = app.backup
    assert backup is not None
    out: dict[str, dict[str, Any]] = {}
    for volume in backup.volumes:
        out[f"{volume.claim}-pvc.yaml"] = claim(stack, backup, volume)
        out[f"{volume.claim}-backup.yaml"] = replication_source(stack, app, backup, volume)
        out[f"{volume.claim}-restore.yaml"] = replication_destination(stack, backup, volume)
    return out


# --- Snapshots (for the Snapshot and Clone copy methods) ----------------------------------------------


def snapshots_enabled(stack: StackConfig) -> bool:
    """The snapshot controller and Rook's snapshot classes run when a backup has a volume on Ceph."""
    return enabled(stack) and storage_enabled(stack) and bool(storage_facts.osd_hosts(stack.nodes))


def snapshot_applications() -> list[tuple[str, dict[str, Any]]]:
    """The CSI snapshot CRDs and controller as platform Applications (plain manifests from their Git tag): (namespace, app)."""
    out = []
    for name, path, namespace in (
        ("snapshot-crds", SNAPSHOT_CRDS_PATH, "kube-system"),
        ("snapshot-controller", SNAPSHOT_CONTROLLER_PATH, "kube-system"),
    ):
        app = gitops.platform_application(
            name, path=path, repo_url=SNAPSHOTTER_REPOSITORY, version=SNAPSHOTTER_VERSION, values={}, namespace=namespace, server_side_diff=True
        )
        del app["spec"]["source"]["helm"]  # plain manifests (a kustomization), not a chart
        out.append((namespace, app))
    return out


def rook_snapshot_values(stack: StackConfig) -> dict[str, Any]:
    """rook-ceph-cluster's values for its VolumeSnapshotClasses (merged into plans.storage's)."""
    if not snapshots_enabled(stack):
        return {}
    values: dict[str, Any] = {
        "cephBlockPoolsVolumeSnapshotClass": {"enabled": True, "name": "ceph-block", "isDefault": True, "deletionPolicy": "Delete"}
    }
    if stack.storage.arda.ceph.filesystem:
        values["cephFileSystemVolumeSnapshotClass"] = {"enabled": True, "name": "ceph-filesystem", "isDefault": False, "deletionPolicy": "Delete"}
    return values


# --- Arda's etcd: talos-backup -----------------------------------------------------------------------


def arda_etcd(stack: StackConfig) -> bool:
    return stack.backup is not None and data.arda_etcd_backup(stack.backup) and target(stack).kind == "s3"


def talos_features(stack: StackConfig, control_plane: bool) -> dict[str, Any]:
    """`machine.features` for talos-backup: the Talos API's `os:etcd:backup` role, to its namespace only (control planes)."""
    if not control_plane or not arda_etcd(stack):
        return {}
    return {
        "kubernetesTalosAPIAccess": {"enabled": True, "allowedRoles": [TALOS_ROLE], "allowedKubernetesNamespaces": [ETCD_NAMESPACE]},
    }


def talos_service_account() -> dict[str, Any]:
    """Talos's ServiceAccount: Talos writes a Secret of the same name holding a talosconfig with this role."""
    return {
        "apiVersion": "talos.dev/v1alpha1",
        "kind": "ServiceAccount",
        "metadata": {"name": TALOS_BACKUP, "namespace": ETCD_NAMESPACE, "labels": dict(gitops.MANAGED_BY)},
        "spec": {"roles": [TALOS_ROLE]},
    }


def talos_s3_secret(stack: StackConfig, key_id: str, secret_key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": TALOS_S3_SECRET, "namespace": ETCD_NAMESPACE, "labels": dict(gitops.MANAGED_BY)},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret_key},
    }


def etcd_prefix(stack: StackConfig, cluster: str) -> str:
    where = target(stack)
    return "/".join(p for p in (where.prefix, "etcd", cluster) if p)


def talos_backup_cronjob(stack: StackConfig, age_public_key: str) -> dict[str, Any]:
    """talos-backup's CronJob (its cronjob.sample.yaml, with the stack's schedule, target and key)."""
    assert stack.backup is not None
    where = target(stack)
    env = [
        {"name": "AWS_REGION", "value": stack.backup.region},
        {"name": "CUSTOM_S3_ENDPOINT", "value": where.endpoint},
        {"name": "BUCKET", "value": where.path},
        {"name": "CLUSTER_NAME", "value": stack.arda.cluster_name},
        {"name": "S3_PREFIX", "value": etcd_prefix(stack, stack.arda.cluster_name)},
        {"name": "USE_PATH_STYLE", "value": "true"},
        {"name": "AGE_X25519_PUBLIC_KEY", "value": age_public_key},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": TALOS_S3_SECRET, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ),
    ]
    container = {
        "name": TALOS_BACKUP,
        "image": TALOS_BACKUP_IMAGE,
        "workingDir": "/tmp",  # noqa: S108 - an emptyDir in the pod
        "imagePullPolicy": "IfNotPresent",
        "command": ["/talos-backup"],
        "env": env,
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"mountPath": "/tmp", "name": "tmp"},  # noqa: S108 - an emptyDir
            {"mountPath": "/var/run/secrets/talos.dev", "name": "talos-secrets"},
        ],
    }
    pod = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "talos-secrets", "secret": {"secretName": TALOS_BACKUP}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": TALOS_BACKUP, "namespace": ETCD_NAMESPACE, "labels": dict(gitops.MANAGED_BY)},
        "spec": {
            "schedule": stack.backup.etcd.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 3, "template": {"metadata": {"labels": {"app.kubernetes.io/name": TALOS_BACKUP}}, "spec": pod}}},
        },
    }


# --- The Ainur's etcd: k3s -----------------------------------------------------------------------------


def k3s_settings(stack: StackConfig) -> dict[str, Any]:
    """The `etcd-snapshot-*` (and, for S3, `etcd-s3`) settings of every valar's k3s config."""
    if stack.backup is None:
        return {}
    settings: dict[str, Any] = {
        # k3s hands the text to robfig/cron (pkg/etcd/etcd.go: NewETCD's cron.New(), setSnapshotFunction's
        # AddFunc(EtcdSnapshotCron)), which reads a schedule without a zone in the process's time.Local
        # (parser.go:94 at v3.0.1): the Pi's /etc/localtime, which Iluvatar does not pin. The prefix makes it UTC, as
        # Iluvatar reads the schedule (and as talos-backup's CronJob runs it), whatever the Pi's zone.
        "etcd-snapshot-schedule-cron": f"CRON_TZ=UTC {stack.backup.etcd.schedule}",
        "etcd-snapshot-retention": stack.backup.etcd.keep,
        "etcd-snapshot-compress": True,
    }
    if target(stack).kind == "s3":
        # Everything else (endpoint, bucket, folder, credentials) is in the Secret k3s reads (k3s_s3_secret).
        settings |= {"etcd-s3": True, "etcd-s3-config-secret": K3S_S3_SECRET}
    return settings


def k3s_s3_secret(stack: StackConfig, key_id: str, secret_key: str) -> dict[str, Any]:
    """kube-system/k3s-etcd-snapshot-s3: where k3s uploads the Ainur's snapshots (its etcd-s3-config-secret keys)."""
    assert stack.backup is not None
    where = target(stack)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": K3S_S3_SECRET, "namespace": "kube-system", "labels": dict(gitops.MANAGED_BY)},
        "type": "Opaque",
        "stringData": {
            "etcd-s3-endpoint": where.host,
            "etcd-s3-insecure": "false" if where.secure else "true",
            "etcd-s3-bucket": where.path,
            "etcd-s3-folder": etcd_prefix(stack, "ainur"),
            "etcd-s3-region": stack.backup.region,
            "etcd-s3-access-key": key_id,
            "etcd-s3-secret-key": secret_key,
        },
    }
