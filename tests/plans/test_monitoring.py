"""Monitoring: what the plan derives from the stack, and its artifacts through the programs that read them.

kube-prometheus's kustomization is built by the kustomize release Argo CD runs, with the
Application's own patches; every alert rule passes Prometheus's `promtool check rules`, and a unit
test of each alert (`promtool test rules`) fires it on the series that should, and not on healthy
ones; Alertmanager's config loads in `amtool`, and Alertmanager's own routing and notifiers
(am-notify) deliver each alert to the stack's receiver: a webhook, ntfy, and e-mail through STARTTLS.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from plans import apiserver, gitops, monitoring, talos
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1
from tools import alert_check, upstream
from tools.upstream import kustomize


def homelab() -> StackConfig:
    return load_stack_file(HOMELAB)


def variant(path: Path = HOMELAB, **changes: Any) -> StackConfig:
    """The stack with some of iluvatar:monitoring's keys replaced (`receiver=...`) and the receiver's secret as set."""
    sf = read_stack_file(path)
    raw = dict(sf.config)
    settings = dict(raw.get("iluvatar:monitoring") or {})
    settings.update(changes)
    raw["iluvatar:monitoring"] = settings
    return parse_stack(raw, sf.secret_keys)


def without_secret(**changes: Any) -> StackConfig:
    sf = read_stack_file(HOMELAB)
    raw = {k: v for k, v in sf.config.items() if k != "iluvatar:alertReceiverSecret"}
    raw["iluvatar:monitoring"] = {**raw["iluvatar:monitoring"], **changes}
    return parse_stack(raw, sf.secret_keys)


# --- The plan -------------------------------------------------------------------------------------


def test_prometheus_keeps_its_samples_on_a_class_the_stack_has() -> None:
    stack = homelab()
    assert monitoring.storage_class(stack) == "ceph-block"  # storage.arda.defaultClass
    assert monitoring.storage_class(variant(prometheus={"storageClass": "local-path"})) == "local-path"
    assert monitoring.retention_size("50Gi") == "40960MiB"
    assert monitoring.retention_size("1Gi") == "819MiB"


def _patch(stack: StackConfig, kind: str, name: str) -> Any:
    [found] = [p for p in monitoring.patches(stack) if p["target"]["kind"] == kind and p["target"]["name"] == name]
    return json.loads(found["patch"])


def test_the_application_is_kube_prometheus_at_its_tag_with_the_stacks_patches() -> None:
    stack = homelab()
    app = monitoring.application(stack)
    source = app["spec"]["source"]
    assert source["repoURL"] == "https://github.com/prometheus-operator/kube-prometheus.git"
    assert (source["targetRevision"], source["path"]) == ("v0.18.0", ".")
    assert "helm" not in source
    assert source["kustomize"]["images"] == ["quay.io/prometheus-operator/prometheus-operator:v0.93.0"]
    assert app["spec"]["destination"] == {"server": gitops.IN_CLUSTER, "namespace": "monitoring"}
    assert app["spec"]["project"] == gitops.PLATFORM_PROJECT
    assert app["metadata"]["annotations"]["iluvatar.dev/values-digest"] == gitops.values_digest(source["kustomize"])
    prometheus = _patch(stack, "Prometheus", "k8s")["spec"]
    assert prometheus["retention"] == "30d" and prometheus["retentionSize"] == "40960MiB" and prometheus["replicas"] == 1
    claim = prometheus["storage"]["volumeClaimTemplate"]["spec"]
    assert claim == {"storageClassName": "ceph-block", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}
    assert _patch(stack, "Alertmanager", "main")["spec"] == {"replicas": 1, "configSecret": monitoring.ALERTMANAGER_SECRET}
    # The CRDs and the namespace are Pulumi's; kube-prometheus's Alertmanager Secret is replaced by Pulumi's.
    deleted = {(p["target"]["kind"], p["target"]["name"]) for p in monitoring.patches(stack) if '"$patch": "delete"' in p["patch"]}
    assert deleted == {
        ("Namespace", "monitoring"),
        ("Secret", "alertmanager-main"),
        *(
            ("CustomResourceDefinition", f"{n.removeprefix('monitoring.coreos.com_').removesuffix('.yaml')}.monitoring.coreos.com")
            for n in monitoring.CRD_FILES
        ),
    }
    assert "root_url = https://grafana.iluvatar.home.arpa/" in _patch(stack, "Secret", "grafana-config")["stringData"]["grafana.ini"]


def test_grafanas_service_takes_its_apps_port_only_when_it_differs() -> None:
    assert not [p for p in monitoring.patches(homelab()) if p["target"]["kind"] == "Service"]
    rk1 = load_stack_file(RK1)
    assert _patch(rk1, "Service", "grafana") == [{"op": "replace", "path": "/spec/ports/0/port", "value": 80}]
    assert "[server]" not in monitoring.grafana_ini(variant(grafana={}))


def test_the_crds_are_the_operators_release_files_byte_for_byte() -> None:
    """The repository's copy is exactly the release's files (the pinned module, its sum checked), nothing more, and
    reads as Go's YAML reads them (tools.upstream: a bare `=` is a string)."""
    release = upstream.module_dir(monitoring.OPERATOR_MODULE, monitoring.OPERATOR_VERSION) / monitoring.CRD_FOLDER
    assert sorted(p.name for p in monitoring.CRD_DIR.iterdir()) == sorted(monitoring.CRD_FILES) == sorted(p.name for p in release.iterdir())
    for name in monitoring.CRD_FILES:
        assert (monitoring.CRD_DIR / name).read_bytes() == (release / name).read_bytes(), name
    crds = monitoring.crds()
    assert crds == upstream.crds("prometheus-operator", monitoring.OPERATOR_VERSION)
    assert [c["metadata"]["name"] for c in crds] == [
        f"{n.removeprefix('monitoring.coreos.com_').removesuffix('.yaml')}.monitoring.coreos.com" for n in monitoring.CRD_FILES
    ]
    # `=` in the label-matcher enums, a string as Kubernetes reads it.
    matcher = crds[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["inhibitRules"]["items"]
    assert "=" in matcher["properties"]["sourceMatch"]["items"]["properties"]["matchType"]["enum"]
    # Each caller's own copy.
    crds[0]["metadata"]["name"] = "changed"
    assert monitoring.crds()[0]["metadata"]["name"] == "alertmanagerconfigs.monitoring.coreos.com"


def test_talos_control_planes_open_their_metrics_and_workers_are_untouched() -> None:
    stack = homelab()
    [taniquetil] = [n for n in stack.nodes if n.name == "taniquetil"]
    [gandalf] = [n for n in stack.nodes if n.name == "gandalf"]
    docs = apiserver.talos_documents(stack, taniquetil)
    cluster = docs[0]["cluster"]
    assert cluster["etcd"] == {"extraArgs": {"listen-metrics-urls": "http://0.0.0.0:2381"}}
    everywhere = "0.0.0.0"  # noqa: S104 - what Talos is told to bind, not a socket of the test's
    assert cluster["scheduler"] == {"extraArgs": {"bind-address": everywhere}}
    assert cluster["controllerManager"] == {"extraArgs": {"bind-address": everywhere}}
    assert apiserver.talos_documents(stack, gandalf) == []
    assert len(talos.node_patches(stack, gandalf, "img")) == 1 and len(talos.node_patches(stack, taniquetil, "img")) == 2
    bare = parse_stack(
        {
            k: v
            for k, v in read_stack_file(HOMELAB).config.items()
            if "monitoring" not in k and "identity" not in k and "alertReceiver" not in k and "remoteAccess" not in k
        }
    )
    assert apiserver.talos_documents(bare, taniquetil) == []


def test_the_control_planes_are_targets() -> None:
    stack = homelab()
    objects = {(o["kind"], o["metadata"]["name"]): o for o in monitoring.control_plane_services(stack)}
    assert objects[("Service", "kube-scheduler")]["spec"]["selector"] == {"k8s-app": "kube-scheduler", "tier": "control-plane"}
    assert objects[("Service", "kube-controller-manager")]["spec"]["ports"][0]["port"] == 10257
    endpoints = objects[("EndpointSlice", "etcd")]["endpoints"]
    assert [(e["addresses"], e["nodeName"]) for e in endpoints] == [([str(n.ip)], n.name) for n in stack.by_role("valinor")]
    scrape = next(m for m in monitoring.monitors(stack) if m["kind"] == "ScrapeConfig")
    assert [t["labels"]["node"] for t in scrape["spec"]["staticConfigs"]] == ["manwe", "eonwe", "ilmare"]
    assert not [m for m in monitoring.monitors(load_stack_file(RK1)) if m["kind"] == "ScrapeConfig"]


def test_the_pis_node_exporter_runs_on_every_pi_with_no_credential() -> None:
    """It tolerates a netbooted maia's taint (it reports that maia's health, docs/security.md), so it carries nothing
    its kubelet, whose credentials the maia's NFS root exposes, could use: no account token."""
    daemonset = next(m for m in monitoring.ainur_node_exporter() if m["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert (pod["automountServiceAccountToken"], pod["tolerations"]) == (False, [{"operator": "Exists"}])
    assert "serviceAccountName" not in pod


def test_the_pis_node_exporter_serves_the_newest_etcd_snapshot_s_time(tmp_path: Path) -> None:
    """The sidecar's script, in busybox's sh as its image runs it, on a snapshot folder: the newest file's time, in the
    textfile node-exporter reads; an empty folder (a maia's) writes none, and removes one written before."""
    from tests.tools import require

    busybox = require("busybox")
    daemonset = next(m for m in monitoring.ainur_node_exporter() if m["kind"] == "DaemonSet")
    exporter, sidecar = daemonset["spec"]["template"]["spec"]["containers"]
    assert f"--collector.textfile.directory={monitoring.SNAPSHOT_METRICS_DIR}" in exporter["args"]
    assert sidecar["command"][:2] == ["/bin/sh", "-c"] and sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["snapshots"]["hostPath"]["path"] == "/var/lib/rancher/k3s/server/db/snapshots"
    assert {"name": "snapshots", "mountPath": "/snapshots", "readOnly": True} in sidecar["volumeMounts"]
    folder, out = tmp_path / "snapshots", tmp_path / "etcd-snapshots.prom"
    folder.mkdir()

    def run() -> None:
        env = {"DIR": str(folder), "OUT": str(out), "ONCE": "1", "PATH": "/usr/bin:/bin"}
        done = subprocess.run([busybox, "sh", "-c", sidecar["command"][2]], env=env, capture_output=True, text=True, check=False, timeout=30)
        assert done.returncode == 0, done.stderr

    run()
    assert not out.exists()
    for name, when in (("etcd-snapshot-manwe-1800000000", 1_800_000_000), ("etcd-snapshot-manwe-1800021600.zip", 1_800_021_600)):
        (folder / name).write_bytes(b"snapshot")
        os.utime(folder / name, (when, when))
    run()
    assert out.read_text() == (
        "# HELP iluvatar_k3s_etcd_snapshot_newest_seconds When the newest etcd snapshot on this valar was written, seconds since the epoch.\n"
        "# TYPE iluvatar_k3s_etcd_snapshot_newest_seconds gauge\n"
        "iluvatar_k3s_etcd_snapshot_newest_seconds 1800021600\n"
    )
    for f in folder.iterdir():
        f.unlink()
    run()
    assert not out.exists()


def test_snapshots_that_stop_on_a_valar_fire_ainur_snapshots_stale() -> None:
    """Under promtool: the newest snapshot on manwe written at 0 s, the homelab's schedule ("0 */6 * * *") keeps the
    newest under 12 h; past it the alert is pending, an hour on it fires, naming the Pi."""
    stack = homelab()
    assert stack.backup is not None and stack.backup.etcd.schedule == "0 */6 * * *"
    rule = monitoring.alert_rules(stack, {})
    [found] = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "AinurSnapshotsStale"]
    assert found["expr"] == "time() - iluvatar_k3s_etcd_snapshot_newest_seconds > 43200"
    labels = {"job": monitoring.AINUR_JOB, "node": "manwe"}
    series = f'iluvatar_k3s_etcd_snapshot_newest_seconds{{job="{monitoring.AINUR_JOB}",node="manwe"}}'
    fired = {**labels, "severity": "critical"}
    annotations = {k: v.replace("{{ $labels.node }}", "manwe") for k, v in found["annotations"].items()}
    case = {
        "interval": "1h",
        "input_series": [{"series": series, "values": "0+0x20"}],
        "alert_rule_test": [
            {"eval_time": "13h", "alertname": "AinurSnapshotsStale", "exp_alerts": []},
            {"eval_time": "14h", "alertname": "AinurSnapshotsStale", "exp_alerts": [{"exp_labels": fired, "exp_annotations": annotations}]},
        ],
    }
    result = alert_check.unit_test_rules(rule, [case], evaluation_interval="1h")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_are_those_the_stack_can_raise() -> None:
    names = {a.name for a in monitoring.alerts(homelab())}
    assert names == {
        "ArdaNodeDown", "AinurNodeDown", "AinurCertificateExpiring", "AinurCACertificateExpiring", "AinurCertificateUnknown", "NodeDiskFilling", "NodeDiskAlmostFull", "CephHealthWarning", "CephHealthError",
        "CertificateExpiring", "CertificateNotReady", "BackupFailed", "BackupJobFailed", "ArgoCdAppDegraded",
        "RestoreDrillFailed", "RestoreDrillStale", "AinurSnapshotsStale", "HeadscaleCertificateExpiring", "HeadscaleCertificateUnknown", "ArdaMachineNotRestarted",
        "LogStoreDown", "LogCollectorDown", "LogCollectorStalled", "LogCollectorDropping", "LogAlertsDown",
        "LogStoreReadOnly", "LogStoreFilling",
    }  # fmt: skip
    # rk1: no Ainur; Ceph on its NVMe; GitOps.
    assert "AinurNodeDown" not in {a.name for a in monitoring.alerts(load_stack_file(RK1))}


# --- promtool -------------------------------------------------------------------------------------


def test_promtool_accepts_every_rule() -> None:
    result = alert_check.check_rules(monitoring.alert_rules(homelab()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(monitoring.alerts(homelab()))} rules found" in result.stdout


def test_promtool_check_can_fail() -> None:
    rule = monitoring.alert_rules(homelab())
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "kube_node_status_condition{condition=Ready} == 0"
    result = alert_check.check_rules(rule)
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr


def _expand(text: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus expands it for these labels (the rules use only `{{ $labels.x }}`)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


# Per alert: the series that should fire it (values at each minute), when to look, and the series that must not.
CASES: dict[str, tuple[list[tuple[str, str]], str, list[tuple[str, str]]]] = {
    "ArdaNodeDown": (
        [('kube_node_status_condition{condition="Ready",status="true",node="gandalf"}', "1 1 0x15")],
        "10m",
        [
            ('kube_node_status_condition{condition="Ready",status="true",node="saruman"}', "1x15"),
            ('kube_node_status_condition{condition="Ready",status="true",node="tirion"}', "0x3 1x12"),
        ],
    ),
    "AinurNodeDown": (
        [('up{job="ainur-node-exporter",node="eonwe",instance="192.168.0.12:9100"}', "1 0x15")],
        "10m",
        [
            ('up{job="node-exporter",node="gandalf",instance="192.168.0.31:9100"}', "0x15"),
            ('up{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100"}', "1x15"),
        ],
    ),
    # 30 days before a k3s certificate's end (its end 2592000 s after promtool's clock starts, at 0), for an hour: the
    # one ending a second later than 30 days after 2 h is quiet.
    "AinurCertificateExpiring": (
        [
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100",'
                'certificate="/var/lib/rancher/k3s/server/tls/client-admin.crt"}',
                "2592000x130",
            )
        ],
        "2h",
        [
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="eonwe",instance="192.168.0.12:9100",'
                'certificate="/var/lib/rancher/k3s/agent/client-kubelet.crt"}',
                "2599201x130",
            ),
            # A CA as near its end is the CA alert's: a restart, this alert's runbook, does not renew it.
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="ilmare",instance="192.168.0.13:9100",'
                'certificate="/var/lib/rancher/k3s/server/tls/server-ca.crt",ca="true"}',
                "2592000x130",
            ),
        ],
    ),
    # A k3s CA 30 days before its end (k3s never renews them): its own alert; a leaf as near is AinurCertificateExpiring's.
    # Before, the CAs were not in the metric at all, and nothing said when they end.
    "AinurCACertificateExpiring": (
        [
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100",'
                'certificate="/var/lib/rancher/k3s/server/tls/etcd/peer-ca.crt",ca="true"}',
                "2592000x130",
            )
        ],
        "2h",
        [
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100",'
                'certificate="/var/lib/rancher/k3s/server/tls/kube-scheduler/kube-scheduler.crt"}',
                "2592000x130",
            ),
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="eonwe",instance="192.168.0.12:9100",'
                'certificate="/var/lib/rancher/k3s/agent/server-ca.crt",ca="true"}',
                "2599201x130",
            ),
        ],
    ),
    # Eonwë's node-exporter answers but serves no certificate end (its file missing): the alert after an hour; manwë's,
    # which serves one, is quiet. Before, nothing fired for a Pi without the series.
    "AinurCertificateUnknown": (
        [('up{job="ainur-node-exporter",node="eonwe",instance="192.168.0.12:9100"}', "1x130")],
        "2h",
        [
            ('up{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100"}', "1x130"),
            (
                'iluvatar_k3s_certificate_end_seconds{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100",'
                'certificate="/var/lib/rancher/k3s/server/tls/client-admin.crt"}',
                "99999999x130",
            ),
        ],
    ),
    # Headscale's certificate, as the blackbox probe reads it: 20 days left (a renewal that stopped) fires after its
    # hour; 22 days left (renewal 8 days overdue, still retrying) stays quiet.
    "HeadscaleCertificateExpiring": (
        [('probe_ssl_earliest_cert_expiry{job="headscale-certificate",instance="https://hs.example.org/health"}', "1728000x70")],
        "62m",
        [('probe_ssl_earliest_cert_expiry{job="headscale-certificate",instance="https://other.example.org/health"}', "1900800x70")],
    ),
    # A valar whose newest etcd snapshot is 12 h and a second old (the homelab's "0 */6 * * *" keeps it under 12 h), an
    # hour on; beside one whose newest is under 9 h old.
    "AinurSnapshotsStale": (
        [('iluvatar_k3s_etcd_snapshot_newest_seconds{job="ainur-node-exporter",node="manwe",instance="192.168.0.11:9100"}', "-43201x70")],
        "62m",
        [('iluvatar_k3s_etcd_snapshot_newest_seconds{job="ainur-node-exporter",node="eonwe",instance="192.168.0.12:9100"}', "-30000x70")],
    ),
    # A machine booted 335 days and an hour before (its kubelet's serving certificate near its year), beside one booted
    # 334 days before.
    "ArdaMachineNotRestarted": (
        [('node_boot_time_seconds{job="node-exporter",instance="gandalf"}', "-28947600x70")],
        "62m",
        [('node_boot_time_seconds{job="node-exporter",instance="saruman"}', "-28857600x70")],
    ),
    "HeadscaleCertificateUnknown": (
        [('probe_success{job="headscale-certificate",instance="https://hs.example.org/health"}', "0x370")],
        "361m",
        [('probe_success{job="headscale-certificate",instance="https://other.example.org/health"}', "1x370")],
    ),
    "NodeDiskFilling": (
        [
            ('node_filesystem_avail_bytes{instance="gandalf",mountpoint="/var",fstype="xfs"}', "140-0.1x480"),
            ('node_filesystem_size_bytes{instance="gandalf",mountpoint="/var",fstype="xfs"}', "1000x480"),
            ('node_filesystem_readonly{instance="gandalf",mountpoint="/var",fstype="xfs"}', "0x480"),
        ],
        "7h",
        [
            # Low but steady, a tmpfs, and a read-only one: none fills.
            ('node_filesystem_avail_bytes{instance="saruman",mountpoint="/var",fstype="xfs"}', "140x480"),
            ('node_filesystem_size_bytes{instance="saruman",mountpoint="/var",fstype="xfs"}', "1000x480"),
            ('node_filesystem_readonly{instance="saruman",mountpoint="/var",fstype="xfs"}', "0x480"),
            ('node_filesystem_avail_bytes{instance="saruman",mountpoint="/run/user",fstype="tmpfs"}', "140-0.1x480"),
            ('node_filesystem_size_bytes{instance="saruman",mountpoint="/run/user",fstype="tmpfs"}', "1000x480"),
            ('node_filesystem_readonly{instance="saruman",mountpoint="/run/user",fstype="tmpfs"}', "0x480"),
            ('node_filesystem_avail_bytes{instance="tirion",mountpoint="/boot",fstype="vfat"}', "140-0.1x480"),
            ('node_filesystem_size_bytes{instance="tirion",mountpoint="/boot",fstype="vfat"}', "1000x480"),
            ('node_filesystem_readonly{instance="tirion",mountpoint="/boot",fstype="vfat"}', "1x480"),
        ],
    ),
    "NodeDiskAlmostFull": (
        [
            ('node_filesystem_avail_bytes{instance="manwe",mountpoint="/",fstype="ext4"}', "40x20"),
            ('node_filesystem_size_bytes{instance="manwe",mountpoint="/",fstype="ext4"}', "1000x20"),
            ('node_filesystem_readonly{instance="manwe",mountpoint="/",fstype="ext4"}', "0x20"),
        ],
        "15m",
        [
            ('node_filesystem_avail_bytes{instance="eonwe",mountpoint="/",fstype="ext4"}', "60x20"),
            ('node_filesystem_size_bytes{instance="eonwe",mountpoint="/",fstype="ext4"}', "1000x20"),
            ('node_filesystem_readonly{instance="eonwe",mountpoint="/",fstype="ext4"}', "0x20"),
        ],
    ),
    "CephHealthWarning": ([('ceph_health_status{job="rook-ceph-mgr"}', "0 1x30")], "20m", []),
    "CephHealthError": ([('ceph_health_status{job="rook-ceph-mgr"}', "0 2x30")], "10m", []),
    "CertificateExpiring": (
        # Prometheus's clock in a unit test starts at 0: this certificate ends 10 days after it.
        [('certmanager_certificate_expiration_timestamp_seconds{name="wildcard-internal-tls",namespace="networking"}', "864000x150")],
        "2h",
        [('certmanager_certificate_expiration_timestamp_seconds{name="wildcard-external-tls",namespace="networking"}', "5184000x150")],
    ),
    "CertificateNotReady": (
        [('certmanager_certificate_ready_status{condition="False",name="wildcard-external-tls",namespace="networking"}', "1x60")],
        "45m",
        [('certmanager_certificate_ready_status{condition="True",name="wildcard-internal-tls",namespace="networking"}', "1x60")],
    ),
    "BackupFailed": (
        [('volsync_volume_out_of_sync{obj_name="jellyfin-config",obj_namespace="media",role="source",method="restic"}', "0 1x150")],
        "2h",
        [('volsync_volume_out_of_sync{obj_name="hass-config",obj_namespace="home-automation",role="source",method="restic"}', "0x150")],
    ),
    "BackupJobFailed": (
        [('kube_job_failed{condition="true",job_name="talos-backup-29123456",namespace="kube-system"}', "1x20")],
        "10m",
        [('kube_job_failed{condition="true",job_name="grafana-migrate-1",namespace="monitoring"}', "1x20")],
    ),
    # The log pipeline's own alerts (plans.logs.pipeline_alerts), on the series Prometheus scrapes of it.
    "LogStoreDown": (
        [('up{job="victoria-logs",namespace="monitoring",pod="victoria-logs-0",instance="10.244.1.7:9428"}', "1 0x15")],
        "15m",
        [('up{job="node-exporter",namespace="monitoring",pod="node-exporter-x",instance="192.168.0.31:9100"}', "0x15")],
    ),
    "LogCollectorDown": (
        [('up{job="monitoring/log-collector",machine="gandalf",instance="192.168.0.31:8888"}', "1 0x15")],
        "15m",
        [
            ('up{job="ainur-log-collector",machine="manwe",instance="192.168.0.11:8888"}', "1x15"),
            ('up{job="monitoring/log-collector",machine="saruman",instance="192.168.0.32:8888"}', "0x3 1x12"),
        ],
    ),
    "LogCollectorStalled": (
        [
            (
                'otelcol_exporter_queue_size{job="monitoring/log-collector",exporter="otlp_http/store",data_type="logs",machine="gandalf"}',
                "0 100+100x20",
            )
        ],
        "20m",
        [
            # Busy but draining: empty at least once in every quarter hour.
            (
                'otelcol_exporter_queue_size{job="monitoring/log-collector",exporter="otlp_http/store",data_type="logs",machine="saruman"}',
                "0 900 0 900 0 900 0 900 0 900 0 900 0 900 0 900 0 900 0 900 0",
            ),
        ],
    ),
    # A counter is born at the first failure, with the failed count (exporterhelper v0.165.0
    # internal/obs_report_sender.go:118-121, internal/queue/obs_queue.go:68-70): a first drop, never repeated, fires;
    # a counter that has not moved for 10 minutes does not.
    "LogCollectorDropping": (
        [
            (
                'otelcol_exporter_send_failed_log_records{job="monitoring/log-collector",exporter="otlp_http/store",data_type="logs",machine="gandalf",error_permanent="true"}',
                "_x12 3x10",
            )
        ],
        "15m",
        [
            (
                'otelcol_exporter_enqueue_failed_log_records{job="ainur-log-collector",exporter="otlp_http/store",data_type="logs",machine="eonwe"}',
                "0x20",
            ),
            (
                'otelcol_exporter_send_failed_log_records{job="monitoring/log-collector",exporter="otlp_http/store",data_type="logs",machine="saruman"}',
                "3x20",
            ),
        ],
    ),
    "LogAlertsDown": (
        [('vmalert_execution_errors_total{job="vmalert-logs",namespace="monitoring",instance="10.244.2.9:8880"}', "0 1+1x20")],
        "15m",
        [('up{job="vmalert-logs",namespace="monitoring",instance="10.244.2.9:8880"}', "1x20")],
    ),
    "ArgoCdAppDegraded": (
        [('argocd_app_info{name="media-jellyfin",namespace="argocd",health_status="Degraded",sync_status="Synced"}', "1x30")],
        "20m",
        [('argocd_app_info{name="media-sonarr",namespace="argocd",health_status="Healthy",sync_status="Synced"}', "1x30")],
    ),
}


def _labels(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', series))


def _cases(stack: StackConfig) -> list[dict[str, Any]]:
    alerts = {a.name: a for a in monitoring.alerts(stack)}
    tests = []
    for name, (firing, at, quiet) in CASES.items():
        alert = alerts[name]
        labels = _labels(firing[0][0])
        expected = {**labels, "severity": alert.severity}
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in [*firing, *quiet]],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": expected,
                                "exp_annotations": {
                                    "summary": _expand(alert.summary, labels),
                                    "description": _expand(alert.description, labels),
                                    **({"runbook_url": alert.runbook} if alert.runbook is not None else {}),
                                },
                            }
                        ],
                    }
                ],
            }
        )
    return tests


def test_each_alert_fires_on_its_series_and_only_then() -> None:
    stack = homelab()
    # The restore drill's alerts have their own cases, over days of CronJob series (tests/plans/test_drill.py).
    # The log store's fill alerts too (test_the_log_stores_fill_alerts_fire_on_its_own_gauges: per-scenario labels).
    assert set(CASES) == {a.name for a in monitoring.alerts(stack)} - {"RestoreDrillFailed", "RestoreDrillStale", *STORE_FILL}, (
        "every alert has a case"
    )
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), _cases(stack))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


_STORE = 'job="victoria-logs",namespace="monitoring",pod="victoria-logs-0",instance="10.244.1.7:9428"'
_PATH = f'{_STORE},path="/storage"'
_OTHER = 'job="victoria-logs",namespace="monitoring",pod="victoria-logs-1",instance="10.244.2.8:9428",path="/storage"'
# The store's own gauges (VictoriaLogs v1.52.1 app/vlstorage/main.go:676-690, 732-733), as Prometheus scrapes them:
# each scenario, the series that fire (and what they fire with) beside a second store's that must not.
STORE_FILL: dict[str, list[tuple[list[tuple[str, str]], str, list[dict[str, str]]]]] = {
    "LogStoreReadOnly": [
        # Read-only at 10 MB free (main.go:56, 524-538): at once, a second store that is not stays quiet.
        ([(f"vl_storage_is_read_only{{{_PATH}}}", "0 0 1x5"), (f"vl_storage_is_read_only{{{_OTHER}}}", "0x7")], "3m", [_labels(_PATH)]),
        ([(f"vl_storage_is_read_only{{{_PATH}}}", "0x5")], "5m", []),
    ],
    "LogStoreFilling": [
        # The newest two days over the bound (18.1 GB kept against 16 GiB), the filesystem roomy: after 15 minutes.
        (
            [
                (f'vl_data_size_bytes{{{_STORE},type="storage"}}', "10e9 18e9x20"),
                (f'vl_data_size_bytes{{{_STORE},type="indexdb"}}', "1e8x20"),
                (f"vl_max_disk_space_usage_bytes{{{_PATH}}}", "17179869184x20"),
                (f"vl_free_disk_space_bytes{{{_PATH}}}", "50e9x20"),
                (f"vl_total_disk_space_bytes{{{_PATH}}}", "100e9x20"),
            ],
            "20m",
            [_labels(_STORE)],
        ),
        # A shared filesystem under 10 % free (local-path, nfs), the store within its bound.
        (
            [
                (f'vl_data_size_bytes{{{_STORE},type="storage"}}', "5e9x20"),
                (f"vl_max_disk_space_usage_bytes{{{_PATH}}}", "17179869184x20"),
                (f"vl_free_disk_space_bytes{{{_PATH}}}", "20e9 9e9x20"),
                (f"vl_total_disk_space_bytes{{{_PATH}}}", "100e9x20"),
            ],
            "20m",
            [_labels(_PATH)],
        ),
        # Within its bound with 12 % free; or over it for less than 15 minutes: quiet.
        (
            [
                (f'vl_data_size_bytes{{{_STORE},type="storage"}}', "10e9x5 18e9x10 10e9x5"),
                (f"vl_max_disk_space_usage_bytes{{{_PATH}}}", "17179869184x20"),
                (f"vl_free_disk_space_bytes{{{_PATH}}}", "12e9x20"),
                (f"vl_total_disk_space_bytes{{{_PATH}}}", "100e9x20"),
            ],
            "20m",
            [],
        ),
    ],
}


def test_the_log_stores_fill_alerts_fire_on_its_own_gauges() -> None:
    """The store turned read-only (it refuses every line), or keeping more than its bound (a storm: its newest two days
    are never dropped) or on a filesystem under 10 % free: each fires with the store's labels, and only then."""
    stack = homelab()
    alerts = {a.name: a for a in monitoring.alerts(stack)}
    tests = []
    for name, scenarios in STORE_FILL.items():
        for series, at, fired in scenarios:
            expected = [
                {
                    "exp_labels": {**labels, "severity": alerts[name].severity},
                    "exp_annotations": {"summary": alerts[name].summary, "description": alerts[name].description},
                }
                for labels in fired
            ]
            tests.append(
                {
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in series],
                    "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}],
                }
            )
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_an_alert_that_does_not_fire_fails_its_unit_test() -> None:
    stack = homelab()
    cases = _cases(stack)
    # The node is Ready again before the alert's 5 minutes: nothing fires, and promtool says so.
    cases[0]["input_series"][0]["values"] = "1 1 0x2 1x12"
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), cases[:1])
    assert result.returncode != 0 and "ArdaNodeDown" in result.stdout + result.stderr


# --- Alertmanager ----------------------------------------------------------------------------------


def _firing(stack: StackConfig) -> list[dict[str, Any]]:
    """Each of the stack's alerts as Prometheus sends it, and kube-prometheus's Watchdog."""
    out = [
        {"labels": {"alertname": a.name, "severity": a.severity, "namespace": "monitoring"}, "annotations": {"summary": a.summary}}
        for a in monitoring.alerts(stack)
    ]
    out.append({"labels": {"alertname": "Watchdog", "severity": "none"}, "annotations": {"summary": "always firing"}})
    return out


@pytest.mark.parametrize(
    "receiver",
    [
        None,
        {"ntfy": {"url": "https://ntfy.sh/iluvatar-alerts"}},
        {"webhook": {"url": "https://hooks.example.org/alerts"}},
        {"email": {"to": "me@example.org", "from": "alerts@example.org", "smarthost": "smtp.example.org:587", "username": "alerts"}},
    ],
    ids=["none", "ntfy", "webhook", "email"],
)
def test_amtool_accepts_the_config(receiver: dict[str, Any] | None) -> None:
    stack = variant(receiver=receiver) if receiver is not None else without_secret(receiver=None)
    result = alert_check.check_config(monitoring.alertmanager_config(stack, "s3cret"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_check_can_fail() -> None:
    config = monitoring.alertmanager_config(homelab(), "token")
    config["route"]["receiver"] = "nobody"
    result = alert_check.check_config(config)
    assert result.returncode != 0 and "nobody" in result.stdout + result.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


# Where the stack says the receiver is (a server of the homelab's LAN, as a house writes it) and where this lab serves it
# (loopback). Validation refuses a loopback receiver, which Alertmanager on Arda could not reach, so the stack names the
# house's server and the rendered config is pointed at the lab's, the one change between the render and Alertmanager.
RECEIVER_HOST = "192.168.0.50"


def to_lab(config: dict[str, Any], house: str, lab: str) -> dict[str, Any]:
    """The rendered Alertmanager config with the receiver's server `house` (`http://host:port` or `host:port`, as written) served at `lab`."""
    text = json.dumps(config)
    assert house in text, text
    moved: dict[str, Any] = json.loads(text.replace(house, lab))
    return moved


@pytest.fixture
def receiver() -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(the receiver's URL as the stack names it, the lab's URL of the same server, what it received)."""
    seen: list[dict[str, Any]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://{RECEIVER_HOST}:{port}", f"http://127.0.0.1:{port}", seen
    finally:
        server.shutdown()


def test_each_alert_reaches_the_ntfy_topic_with_its_token(receiver: tuple[str, str, list[dict[str, Any]]]) -> None:
    url, lab, seen = receiver
    stack = variant(receiver={"ntfy": {"url": f"{url}/iluvatar-alerts"}})
    results = alert_check.deliver(to_lab(monitoring.alertmanager_config(stack, "tk_ntfy"), url, lab), _firing(stack))
    reached = {r["alert"]: [x["receiver"] for x in r["receivers"]] for r in results}
    assert reached == {**{a.name: ["ntfy"] for a in monitoring.alerts(stack)}, "Watchdog": ["none"]}
    assert all(d.get("error") is None for r in results for x in r["receivers"] for d in x["deliveries"])
    assert len(seen) == len(monitoring.alerts(stack))
    first = seen[0]
    path = urlsplit(first["path"])
    assert path.path == "/iluvatar-alerts"
    query = parse_qs(path.query)
    assert query["template"] == ["yes"]
    assert query["title"] == [monitoring.NTFY_TITLE] and query["message"] == [monitoring.NTFY_MESSAGE]
    assert first["authorization"] == "Bearer tk_ntfy"
    # What ntfy's template reads: Alertmanager's webhook JSON.
    assert first["body"]["status"] == "firing" and first["body"]["alerts"][0]["annotations"]["summary"]
    assert unquote(path.query).count("{{") == NTFY_TITLE_TEMPLATES + NTFY_MESSAGE_TEMPLATES


NTFY_TITLE_TEMPLATES = monitoring.NTFY_TITLE.count("{{")
NTFY_MESSAGE_TEMPLATES = monitoring.NTFY_MESSAGE.count("{{")


def test_each_alert_reaches_the_webhook(receiver: tuple[str, str, list[dict[str, Any]]]) -> None:
    url, lab, seen = receiver
    stack = variant(receiver={"webhook": {"url": f"{url}/alerts"}})
    alert_check.deliver(to_lab(monitoring.alertmanager_config(stack, None), url, lab), _firing(stack))
    assert {s["body"]["commonLabels"]["alertname"] for s in seen} == {a.name for a in monitoring.alerts(stack)}
    assert {s["authorization"] for s in seen} == {None}


def test_zulip_gets_the_bots_api_key_in_the_url_not_as_a_bearer_token(receiver: tuple[str, str, list[dict[str, Any]]]) -> None:
    # Zulip's webhook_view reads `api_key` from the request's parameters (zerver/webhooks/alertmanager/doc.md's URL),
    # so the secret joins the URL's own parameters, and Alertmanager sends no Authorization header.
    url, lab, seen = receiver
    stack = variant(receiver={"webhook": {"url": f"{url}/api/v1/external/alertmanager?stream=home%20lab&name=alertname"}})
    config = monitoring.alertmanager_config(stack, "zk/ey+1")
    assert config["receivers"][1]["webhook_configs"] == [
        {"url": f"{url}/api/v1/external/alertmanager?stream=home%20lab&name=alertname&api_key=zk%2Fey%2B1", "send_resolved": True}
    ]
    alert_check.deliver(to_lab(config, url, lab), _firing(stack))
    assert len(seen) == len(monitoring.alerts(stack))
    assert {s["authorization"] for s in seen} == {None}
    path = urlsplit(seen[0]["path"])
    assert path.path == "/api/v1/external/alertmanager"
    assert parse_qs(path.query) == {"stream": ["home lab"], "name": ["alertname"], "api_key": ["zk/ey+1"]}


def test_zulip_without_parameters_gets_the_api_key_alone() -> None:
    stack = variant(receiver={"webhook": {"url": "https://lab.zulipchat.com/api/v1/external/alertmanager"}})
    (webhook,) = monitoring.alertmanager_config(stack, "k")["receivers"][1]["webhook_configs"]
    assert webhook == {"url": "https://lab.zulipchat.com/api/v1/external/alertmanager?api_key=k", "send_resolved": True}


# --- E-mail through STARTTLS -------------------------------------------------------------------------


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for Alertmanager's e-mail notifier: EHLO, STARTTLS, AUTH PLAIN, one message."""

    context: ssl.SSLContext
    seen: list[dict[str, Any]]

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 localhost ESMTP test")
        tls, auth = False, None
        message: dict[str, Any] = {"rcpt": []}
        while line := self.rfile.readline().decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                extensions = ["250-localhost", *(["250-AUTH PLAIN"] if tls else ["250-STARTTLS"]), "250 8BITMIME"]
                for extension in extensions:
                    self.reply(extension)
            elif verb == "STARTTLS":
                self.reply("220 go ahead")
                self.connection = self.context.wrap_socket(self.connection, server_side=True)
                self.rfile, self.wfile = self.connection.makefile("rb"), self.connection.makefile("wb")
                tls = True
            elif verb == "AUTH":
                auth = base64.b64decode(line.split()[2]).split(b"\0")
                self.reply("235 ok")
            elif verb == "MAIL":
                message["from"] = line
                self.reply("250 ok")
            elif verb == "RCPT":
                message["rcpt"].append(line)
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go")
                data = []
                while (chunk := self.rfile.readline().decode()) not in (".\r\n", ""):
                    data.append(chunk)
                self.seen.append({**message, "tls": tls, "auth": auth, "data": "".join(data)})
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def test_an_alert_reaches_the_mailbox_through_starttls_with_the_password(tmp_path: Path) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "1", "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.crt"), "-subj", "/CN=test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    _openssl("req", "-x509", *ec, "-days", "1", "-CA", str(tmp_path / "ca.crt"), "-CAkey", str(tmp_path / "ca.key"), "-keyout", str(tmp_path / "smtp.key"),
             "-out", str(tmp_path / "smtp.crt"), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "smtp.crt", tmp_path / "smtp.key")
    seen: list[dict[str, Any]] = []
    handler = type("Smtp", (_Smtp,), {"context": context, "seen": seen})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        # The house's mail server by its public name; this lab's at localhost, the name its certificate carries.
        stack = variant(
            receiver={"email": {"to": "me@example.org", "from": "alerts@example.org", "smarthost": f"smtp.example.org:{port}", "username": "alerts"}}
        )
        firing = [a for a in _firing(stack) if a["labels"]["alertname"] == "CephHealthError"]
        config = to_lab(monitoring.alertmanager_config(stack, "smtp-password"), f"smtp.example.org:{port}", f"localhost:{port}")
        results = alert_check.deliver(config, firing, ca_file=tmp_path / "ca.crt")
    finally:
        server.shutdown()
        server.server_close()
    assert [x["receiver"] for x in results[0]["receivers"]] == ["email"]
    assert results[0]["receivers"][0]["deliveries"][0].get("error") is None, results
    [mail] = seen
    assert mail["tls"] is True and mail["auth"] == [b"", b"alerts", b"smtp-password"]
    assert "me@example.org" in mail["rcpt"][0] and "CephHealthError" in mail["data"]


def test_the_config_secret_holds_the_receivers_secret_and_nothing_else_does() -> None:
    stack = homelab()
    secret = monitoring.alertmanager_secret(stack, "tk_abc")
    assert secret["metadata"]["name"] == monitoring.ALERTMANAGER_SECRET and secret["metadata"]["namespace"] == "monitoring"
    assert "tk_abc" in secret["stringData"]["alertmanager.yaml"]
    assert "tk_abc" not in json.dumps(monitoring.application(stack))


# --- kube-prometheus, built as Argo CD builds it -------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    source = monitoring.application(homelab())["spec"]["source"]
    return kustomize.build(
        source["repoURL"],
        source["targetRevision"],
        source["path"],
        source["kustomize"],
        build_options=gitops.KUSTOMIZE_BUILD_OPTIONS,
        kube_version="v1.35.1",
    )


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_kustomize_builds_the_application_with_its_patches(built: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in built}
    assert "CustomResourceDefinition" not in kinds and "Namespace" not in kinds
    assert not [o for o in built if o["kind"] == "Secret" and o["metadata"]["name"] == "alertmanager-main"]
    assert {o["metadata"].get("namespace", "monitoring") for o in built if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "APIService")} <= {
        "monitoring",
        "kube-system",
        "default",
    }
    operator = _one(built, "Deployment", "prometheus-operator")["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == "quay.io/prometheus-operator/prometheus-operator:v0.93.0"
    assert "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.93.0" in operator["args"]
    grafana = _one(built, "Deployment", "grafana")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "GF_SECURITY_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "grafana-admin", "key": "password"}}} in grafana["env"]
    ingress = _one(built, "NetworkPolicy", "grafana")["spec"]["ingress"]
    assert {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "networking"}}}],
        "ports": [{"port": 3000, "protocol": "TCP"}],
    } in ingress
    rules = _one(built, "ClusterRole", "prometheus-k8s")["rules"]
    assert {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]} in rules
    assert _one(built, "Prometheus", "k8s")["spec"]["storage"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "ceph-block"


def test_kustomize_refuses_a_patch_that_matches_nothing() -> None:
    source = monitoring.application(homelab())["spec"]["source"]
    broken = {
        **source["kustomize"],
        "patches": [{"target": {"kind": "Deployment", "name": "grafana"}, "patch": '[{"op": "replace", "path": "/spec/nothing/0", "value": 1}]'}],
    }
    with pytest.raises(kustomize.KustomizeError):
        kustomize.build(source["repoURL"], source["targetRevision"], source["path"], broken)


def test_a_pi_whose_metric_file_cannot_be_read_is_named_too() -> None:
    """node-exporter drops a textfile it cannot parse whole and says so in node_textfile_scrape_error: the certificate
    alert would be silent for that Pi, AinurCertificateUnknown is not."""
    stack = homelab()
    alert = next(a for a in monitoring.alerts(stack) if a.name == "AinurCertificateUnknown")
    labels = {"job": "ainur-node-exporter", "node": "ilmare", "instance": "192.168.0.13:9100"}
    series = ",".join(f'{k}="{v}"' for k, v in labels.items())
    case = {
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{series}}}", "values": "1x130"},
            {"series": f"node_textfile_scrape_error{{{series}}}", "values": "1x130"},
            {
                "series": f'iluvatar_k3s_certificate_end_seconds{{{series},certificate="/var/lib/rancher/k3s/agent/client-kubelet.crt"}}',
                "values": "99999999x130",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "2h",
                "alertname": "AinurCertificateUnknown",
                "exp_alerts": [
                    {
                        "exp_labels": {**labels, "severity": "warning"},
                        "exp_annotations": {"summary": _expand(alert.summary, labels), "description": _expand(alert.description, labels)},
                    }
                ],
            }
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case])
    assert result.returncode == 0, result.stdout + result.stderr
