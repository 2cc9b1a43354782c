"""plans.backup: defaults that follow the stack (a copy method each volume's class supports, Arda's etcd backup only
to a target talos-backup can upload to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plans import backup
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB, edit, homelab_doc, write_stack


def _stack(tmp_path: Path, set_: dict[str, Any] | None = None, delete: list[str] | None = None) -> StackConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return load_stack_file(write_stack(tmp_path, edit(homelab_doc(), set_, delete)), require_secrets=True)


def test_an_unset_copy_method_is_what_each_volumes_class_allows(tmp_path: Path) -> None:
    # jellyfin backs up one volume on Ceph (Arda's default class, with snapshots) and one on local-path (none).
    stack = _stack(
        tmp_path,
        {
            "iluvatar:apps[1].backup.volumes": [
                {"claim": "jellyfin-config", "size": "10Gi"},
                {"claim": "jellyfin-cache", "size": "1Gi", "class": "local-path"},
            ]
        },
    )
    app = stack.apps[1]
    assert app.backup is not None and app.backup.copy_method is None
    files = backup.app_manifests(stack, app)
    on_ceph, on_local = files["jellyfin-config-backup.yaml"], files["jellyfin-cache-backup.yaml"]
    assert on_ceph["spec"]["restic"]["copyMethod"] == "Snapshot"
    assert on_ceph["spec"]["restic"]["volumeSnapshotClassName"] == "ceph-block"
    assert on_local["spec"]["restic"]["copyMethod"] == "Direct"
    assert "volumeSnapshotClassName" not in on_local["spec"]["restic"]
    # Direct restores into the claim itself; a snapshot restore fills the claim through its dataSourceRef.
    assert files["jellyfin-cache-restore.yaml"]["spec"]["restic"] | {} == {
        "repository": "jellyfin-cache-restic",
        "cacheCapacity": backup.CACHE,
        "copyMethod": "Direct",
        "destinationPVC": "jellyfin-cache",
    }
    assert "dataSourceRef" not in files["jellyfin-cache-pvc.yaml"]["spec"]
    assert files["jellyfin-config-pvc.yaml"]["spec"]["dataSourceRef"]["name"] == "jellyfin-config-restore"


def test_a_copy_method_given_is_kept(tmp_path: Path) -> None:
    stack = _stack(tmp_path, {"iluvatar:apps[1].backup.copyMethod": "Direct"})
    files = backup.app_manifests(stack, stack.apps[1])
    assert files["jellyfin-config-backup.yaml"]["spec"]["restic"]["copyMethod"] == "Direct"


def test_arda_etcd_backup_follows_the_target_when_unset(tmp_path: Path) -> None:
    assert backup.arda_etcd(_stack(tmp_path / "s3")) is True  # the homelab's target is S3, etcd.arda unset
    nfs = {"iluvatar:backup.target": "nfs://192.168.0.40/volume1/backups"}
    no_s3 = ["iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey"]
    assert backup.arda_etcd(_stack(tmp_path / "nfs", nfs, no_s3)) is False
    assert backup.talos_features(_stack(tmp_path / "nfs2", nfs, no_s3), control_plane=True) == {}
    assert backup.arda_etcd(_stack(tmp_path / "off", {"iluvatar:backup.etcd.arda": False})) is False


def test_clone_on_the_nfs_class_clones_and_restores_into_the_claim(tmp_path: Path) -> None:
    # csi-driver-nfs clones a volume (VolSync's Clone) but the program gives it no snapshots: the restore goes into the
    # claim itself, as Direct, never through a VolumeSnapshotClass the class lacks.
    stack = _stack(
        tmp_path,
        {
            "iluvatar:storage.nfs": {"server": "192.168.0.41", "share": "/volume1/k8s"},
            "iluvatar:apps[1].backup.copyMethod": "Clone",
            "iluvatar:apps[1].backup.volumes": [{"claim": "jellyfin-config", "size": "10Gi", "class": "nfs"}],
        },
    )
    files = backup.app_manifests(stack, stack.apps[1])
    assert files["jellyfin-config-backup.yaml"]["spec"]["restic"]["copyMethod"] == "Clone"
    assert "volumeSnapshotClassName" not in files["jellyfin-config-backup.yaml"]["spec"]["restic"]
    assert files["jellyfin-config-restore.yaml"]["spec"]["restic"] == {
        "repository": "jellyfin-config-restic",
        "cacheCapacity": backup.CACHE,
        "copyMethod": "Direct",
        "destinationPVC": "jellyfin-config",
    }
    assert "dataSourceRef" not in files["jellyfin-config-pvc.yaml"]["spec"]


def test_volsync_serves_its_metrics_to_the_servicemonitors_tokenless_scrape() -> None:
    """The chart's ServiceMonitor scrapes https://…:8443/metrics with no token, and VolSync's controller asked the API
    server to authenticate each scrape (`--metrics-require-rbac`, true by default): every scrape was refused, so
    `volsync_volume_out_of_sync` never existed and BackupFailed could not fire. With the stack's values, real Helm renders
    the controller with the check off and the ServiceMonitor (the monitoring API present, as after Arda's gate)."""
    from tools import upstream

    homelab = load_stack_file(HOMELAB)
    objects = upstream.helm_template(
        upstream.chart(backup.CHART, backup.VERSION),
        backup.helm_values(),
        release="volsync",
        namespace=backup.NAMESPACE,
        kube_version=homelab.arda.kubernetes_version,
        api_versions=["monitoring.coreos.com/v1/ServiceMonitor"],
        include_crds=False,
    )
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [manager] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "manager"]
    assert "--metrics-require-rbac=false" in manager["args"] and "--metrics-bind-address=:8443" in manager["args"]
    [monitor] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"] == [
        {"interval": "30s", "path": "/metrics", "port": "https", "scheme": "https", "tlsConfig": {"insecureSkipVerify": True}}
    ]
    assert "authorization" not in monitor["spec"]["endpoints"][0] and "bearerTokenFile" not in monitor["spec"]["endpoints"][0]
    # The port its policy admits Prometheus to is the one the controller serves them on (backup.network_policy).
    assert f"--metrics-bind-address=:{backup.METRICS_PORT}" in manager["args"]


def test_volsyncs_tokenless_metrics_admit_prometheus_alone(tmp_path: Path) -> None:
    """VolSync's metrics ask no token: its namespace admits Arda's Prometheus alone, on the metrics port alone, and no
    one when the stack has no monitoring."""
    assert backup.network_policy(load_stack_file(HOMELAB)) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "volsync", "namespace": "volsync-system"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                        }
                    ],
                    "ports": [{"port": 8443, "protocol": "TCP"}],
                }
            ],
        },
    }
    unwatched = backup.network_policy(_stack(tmp_path, delete=["iluvatar:monitoring", "iluvatar:alertReceiverSecret"]))
    # No rule, no `ingress`: an empty list is not stored, so every apply of one would be a change (plans.netpol.ingress).
    assert unwatched["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_a_keep_last_renders_a_replicationsource_volsyncs_crd_accepts(tmp_path: Path) -> None:
    """VolSync's CRD types retain.last as a string (every other count an integer): a `keep.last` written as a number
    gave a ReplicationSource the API server refuses, so the app was never backed up. Real kubeconform, strict, against
    the CRDs of the VolSync release the program installs."""
    from tools import upstream

    stack = _stack(tmp_path, {"iluvatar:apps[1].backup.keep": {"last": 3, "daily": None, "weekly": None, "monthly": None}})
    source = backup.app_manifests(stack, stack.apps[1])["jellyfin-config-backup.yaml"]
    assert upstream.kubeconform([source], stack.arda.kubernetes_version, crds=[("volsync", f"v{backup.VERSION}")]) == []
    assert source["spec"]["restic"]["retain"] == {"last": "3"}


def test_the_nfs_targets_lookup_gives_each_name_the_address_the_zones_records_give_it(tmp_path: Path) -> None:
    # plans.backup.nfs_server resolves a target's name from the machines' and VIPs' names, the rule that validates the
    # target from the zone's records (stacks.data.zone_address): on every name the first holds, they must agree.
    from plans import zone
    from stacks import data
    from stacks import storage as storage_facts

    stack = _stack(tmp_path)
    names = storage_facts.zone_addresses(list(enumerate(stack.nodes)), stack.arda, stack.ainur, stack.network)
    records = zone.records(stack)
    assert len(names) == 2 * (len(stack.nodes) + 3)
    assert {name: data.zone_address(name, records, stack.network) for name in names} == names
