"""Monitoring plan: Prometheus, Alertmanager and Grafana on Arda, the targets they scrape, and the alerts.

- **The Prometheus Operator's CRDs** (v0.93.0, `CRD_FILES` from its release tag, copied into `CRD_DIR`) go
  on Arda right after its API answers, before Cilium (components.monitoring), so every chart Iluvatar
  installs can turn its ServiceMonitors on (plans.metrics).
- **kube-prometheus** v0.18.0 is an Argo CD platform Application (`application`): its own
  kustomization (the operator, Prometheus, Alertmanager, Grafana with its dashboards, node-exporter,
  kube-state-metrics, blackbox-exporter, prometheus-adapter and their rules), with inline kustomize
  patches derived from the stack, as a Helm chart gets inline values: Prometheus's retention and
  volume (a StorageClass the stack has), one replica of each, Alertmanager reading Pulumi's config
  Secret, Grafana's URL and port from its app of the registry, Grafana's admin password from Pulumi,
  and the operator at the CRDs' version. Its CRDs and its namespace are cut out: Pulumi owns both.
- **Targets** (`objects`): Services for Talos's scheduler and controller-manager static pods, etcd's
  metrics on every control plane (an EndpointSlice of their addresses: etcd is no pod on Talos),
  Envoy Gateway and its proxies, and the Ainur's Pis (node-exporter there, a ScrapeConfig here).
- **Alerts** (`alert_rules`): the few a homelab needs, each routed to the stack's receiver
  (`alertmanager_config`); kube-prometheus's own rules stay visible in Alertmanager and Grafana only.

Plain functions returning manifests and text; no Pulumi here.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from plans import drill, gitops, k3s, logs, remote_access, yamltext
from plans.alert import Alert
from plans.apiserver import ETCD_METRICS_PORT
from plans.storage import ceph_enabled
from stacks import data as data_rules
from stacks import monitoring as rules
from stacks import pins
from stacks.model import App, Monitoring, StackConfig
from stacks.storage import default_class

# cert-manager renews a third of a certificate's duration before its end (30 days of its default 90): one within this
# many days of its end is not being renewed (CertificateExpiring).
CERT_MANAGER_ALERT_DAYS = 14

# The Prometheus Operator whose CRDs Pulumi installs, and whose image runs them.
OPERATOR_VERSION = pins.MANIFESTS["prometheus-operator"]
# Where its release has them: the Go module github.com/prometheus-operator/prometheus-operator at OPERATOR_VERSION.
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
CRD_FOLDER = "example/prometheus-operator-crd"
# The release's CRD files, copied byte for byte into the repository: the program reads them at every run, a
# `pulumi preview` included, without the network (a yaml ConfigGroup of their URLs had the provider fetch them, and
# ask the cluster, at preview). tests/plans/test_monitoring.py compares each with the pinned Go module's
# (tools/upstream/modules.sum, github.com/prometheus-operator/prometheus-operator v0.93.0).
CRD_DIR = Path(__file__).resolve().parent / "crds" / f"prometheus-operator-{OPERATOR_VERSION}"
CRD_FILES = tuple(
    f"monitoring.coreos.com_{kind}.yaml"
    for kind in (
        "alertmanagerconfigs", "alertmanagers", "podmonitors", "probes", "prometheusagents",
        "prometheuses", "prometheusrules", "scrapeconfigs", "servicemonitors", "thanosrulers",
    )
)  # fmt: skip
OPERATOR_IMAGE = "quay.io/prometheus-operator/prometheus-operator"
CONFIG_RELOADER_IMAGE = "quay.io/prometheus-operator/prometheus-config-reloader"
# kube-prometheus: its release's kustomization, as Argo CD builds it.
KUBE_PROMETHEUS_VERSION = pins.MANIFESTS["kube-prometheus"]
KUBE_PROMETHEUS_REPOSITORY = "https://github.com/prometheus-operator/kube-prometheus.git"
APPLICATION = "kube-prometheus"
NAMESPACE = rules.GRAFANA_NAMESPACE
# Pulumi's Secrets the Application's objects read: Alertmanager's config and Grafana's admin password.
ALERTMANAGER_SECRET = "alertmanager-iluvatar"  # noqa: S105 - a Kubernetes object name, not a secret
GRAFANA_ADMIN_SECRET = "grafana-admin"  # noqa: S105 - a Kubernetes object name, not a secret
GRAFANA_PORT = 3000
# The share of Prometheus's volume its samples may fill before the oldest go (the rest: the WAL, compaction).
RETENTION_SHARE = 0.8
# The gateways' proxies run in the networking namespace (plans.edge): they reach Grafana there.
GATEWAY_NAMESPACE = "networking"
# The Ainur's node-exporter: the Pis' host metrics on their LAN address, scraped from Arda.
NODE_EXPORTER_IMAGE = pins.IMAGES["node-exporter"]
NODE_EXPORTER_PORT = 9100
AINUR_JOB = "ainur-node-exporter"
RULES_NAME = "iluvatar-alerts"
MANAGED_BY = gitops.MANAGED_BY


@functools.cache
def _crds_json() -> str:
    found = [doc for name in CRD_FILES for doc in yamltext.load_all_manifests((CRD_DIR / name).read_text())]
    if [doc.get("kind") for doc in found] != ["CustomResourceDefinition"] * len(CRD_FILES):
        raise ValueError(f"{CRD_DIR}: expected one CustomResourceDefinition per file of CRD_FILES")
    return json.dumps(found)


def crds() -> list[dict[str, Any]]:
    """The operator's CRDs, one per file of CRD_FILES in that order, from the repository's copy of its release files.

    4.5 MB of YAML: parsed once per process (0.8 s) and kept as JSON, which gives each caller its own copy in a
    twentieth of the time a deep copy takes.
    """
    found: list[dict[str, Any]] = json.loads(_crds_json())
    return found


def settings(stack: StackConfig) -> Monitoring:
    if stack.monitoring is None:
        raise ValueError("the stack has no iluvatar:monitoring")
    return stack.monitoring


def storage_class(stack: StackConfig) -> str:
    """The StorageClass of Prometheus's volume: the stack's choice, else Arda's default (stacks.monitoring checks one exists)."""
    chosen = settings(stack).prometheus.storage_class or default_class(stack, "arda")
    assert chosen is not None, "stacks.monitoring requires a StorageClass for Prometheus"
    return chosen


def retention_size(size: str) -> str:
    """What Prometheus may keep on a volume of `size` (e.g. 20Gi): RETENTION_SHARE of it, in MiB."""
    return f"{int(int(size.removesuffix('Gi')) * 1024 * RETENTION_SHARE)}MiB"


def grafana_app(stack: StackConfig) -> App | None:
    name = settings(stack).grafana.app
    return next((a for a in stack.apps if a.name == name), None) if name is not None else None


def grafana_ini(stack: StackConfig) -> str:
    """Grafana's settings: UTC (kube-prometheus's), its public URL when an app routes to it, no sign-up, and with logs
    the VictoriaLogs datasource plugin, which Grafana installs in the background at its start, at the pinned version."""
    app = grafana_app(stack)
    lines = ["[date_formats]", "default_timezone = UTC", "", "[users]", "allow_sign_up = false", ""]
    if app is not None:
        lines = [*lines, "[server]", f"root_url = https://{app.host}/", ""]
    if logs.enabled(stack):
        # `preinstall` (installed in the background: preinstall_async defaults to true), never `preinstall_sync`: a
        # failed synchronous install halts Grafana's start (grafana pkg/services/pluginsintegration/plugininstaller
        # service.go, "Halt execution in the synchronous scenario"), and kube-prometheus v0.18.0 keeps the plugin
        # folder in an emptyDir, so every new pod downloads it again: without the internet, Grafana would not start.
        lines = [*lines, "[plugins]", f"preinstall = {logs.PLUGIN}@{logs.PLUGIN_VERSION}", ""]
    return "\n".join(lines)


# Grafana's datasources: kube-prometheus v0.18.0's own (manifests/grafana-dashboardDatasources.yaml), and with logs the
# store's. The Secret is replaced whole: its one key holds them all.
PROMETHEUS_DATASOURCE = {
    "access": "proxy",
    "editable": False,
    "name": "prometheus",
    "orgId": 1,
    "type": "prometheus",
    "url": "http://prometheus-k8s.monitoring.svc:9090",
    "version": 1,
}
DASHBOARDS = "grafana-dashboard-iluvatar"  # the ConfigMap of Iluvatar's dashboards, in Grafana's provider folder
DASHBOARDS_PATH = f"/grafana-dashboard-definitions/0/{DASHBOARDS.removeprefix('grafana-dashboard-')}"


def grafana_datasources(stack: StackConfig) -> str:
    found = [PROMETHEUS_DATASOURCE, *([logs.datasource(stack)] if logs.enabled(stack) else [])]
    return json.dumps({"apiVersion": 1, "datasources": found}, indent=4, sort_keys=True)


def dashboards(stack: StackConfig) -> dict[str, str]:
    """Iluvatar's own Grafana dashboards, file name -> JSON: each machine's logs, the restore drills."""
    return {**logs.dashboards(stack), **drill.dashboards(stack)}


def dashboards_configmap(stack: StackConfig) -> dict[str, Any] | None:
    found = dashboards(stack)
    if not found:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(DASHBOARDS, NAMESPACE), "data": found}


# --- The kube-prometheus Application ------------------------------------------------------------------


def _patch(kind: str, name: str, patch: dict[str, Any] | list[dict[str, Any]], namespace: str | None = NAMESPACE) -> dict[str, Any]:
    """One kustomize patch, as Argo CD's `kustomize.patches` takes it: a strategic merge (a mapping) or a JSON 6902 patch (a list)."""
    target: dict[str, Any] = {"kind": kind, "name": name}
    if namespace is not None:
        target["namespace"] = namespace
    return {"target": target, "patch": json.dumps(patch, sort_keys=True)}


def _delete(api_version: str, kind: str, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return _patch(kind, name, {"$patch": "delete", "apiVersion": api_version, "kind": kind, "metadata": metadata}, namespace)


# The metrics API adapter's port (kube-prometheus v0.18.0 manifests/prometheusAdapter-deployment.yaml:39, :51) and its
# pods' labels (:14-17).
ADAPTER = "prometheus-adapter"
ADAPTER_PORT = 6443
ADAPTER_LABELS = {"app.kubernetes.io/component": "metrics-adapter", "app.kubernetes.io/name": ADAPTER, "app.kubernetes.io/part-of": "kube-prometheus"}


def adapter_ingress() -> list[dict[str, Any]]:
    """What the adapter's NetworkPolicy admits in place of kube-prometheus' everything
    (manifests/prometheusAdapter-networkPolicy.yaml: `ingress: [{}]`): Prometheus' scrape of its own metrics, on its
    port. The API server, its only other client (the metrics API is an aggregated API), runs on the control planes'
    host network, which no NetworkPolicy peer names on Cilium: `adapter_api_server_policy` admits it."""
    prometheus = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    return [{"from": [prometheus], "ports": [{"port": ADAPTER_PORT, "protocol": "TCP"}]}]


def adapter_api_server_policy() -> dict[str, Any]:
    """The API server to the adapter: a CiliumNetworkPolicy admitting the machines' own traffic (`host`, `remote-node`:
    the control planes' kube-apiserver, host network) on the adapter's port alone. Every host-network pod of Arda is such
    traffic too (as for the log store, plans.logs.store_network_policies): the threat model says so."""
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": f"{ADAPTER}-api-server", "namespace": NAMESPACE},
        "spec": {
            "endpointSelector": {"matchLabels": dict(ADAPTER_LABELS)},
            "ingress": [{"fromEntities": ["host", "remote-node"], "toPorts": [{"ports": [{"port": str(ADAPTER_PORT), "protocol": "TCP"}]}]}],
        },
    }


def patches(stack: StackConfig) -> list[dict[str, Any]]:
    """The stack's changes to kube-prometheus's objects (the Application's `kustomize.patches`)."""
    prometheus = settings(stack).prometheus
    out = [
        # Pulumi owns the monitoring namespace (the edge's, privileged: node-exporter reads the host) and the CRDs (v0.93.0).
        _delete("v1", "Namespace", NAMESPACE, None),
        *(
            _delete(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                f"{name.removeprefix('monitoring.coreos.com_').removesuffix('.yaml')}.monitoring.coreos.com",
                None,
            )
            for name in CRD_FILES
        ),
        # Alertmanager reads Pulumi's config Secret (it holds the receiver's secret), not kube-prometheus's.
        _delete("v1", "Secret", "alertmanager-main"),
        _patch(
            "Prometheus",
            "k8s",
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "Prometheus",
                "metadata": {"name": "k8s", "namespace": NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "retention": prometheus.retention,
                    "retentionSize": retention_size(prometheus.size),
                    "storage": {
                        "volumeClaimTemplate": {
                            "spec": {
                                "storageClassName": storage_class(stack),
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": prometheus.size}},
                            }
                        }
                    },
                },
            },
        ),
        _patch(
            "Alertmanager",
            "main",
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "Alertmanager",
                "metadata": {"name": "main", "namespace": NAMESPACE},
                "spec": {"replicas": 1, "configSecret": ALERTMANAGER_SECRET},
            },
        ),
        # The operator at the CRDs' version (kube-prometheus v0.18.0 runs v0.92.0), and its config reloader with it.
        _patch(
            "Deployment",
            "prometheus-operator",
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/args/1",
                    "value": f"--prometheus-config-reloader={CONFIG_RELOADER_IMAGE}:{OPERATOR_VERSION}",
                }
            ],
        ),
        # Prometheus discovers targets in every namespace (kube-prometheus grants it three): the charts' ServiceMonitors live in theirs.
        _patch(
            "ClusterRole",
            "prometheus-k8s",
            [
                {
                    "op": "add",
                    "path": "/rules/-",
                    "value": {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list", "watch"]},
                },
                {
                    "op": "add",
                    "path": "/rules/-",
                    "value": {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                },
            ],
            None,
        ),
        # Grafana: Pulumi's admin password, the stack's settings, and the gateways' proxies let in.
        _patch(
            "Deployment",
            "grafana",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "grafana", "namespace": NAMESPACE},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "grafana",
                                    "env": [
                                        {"name": "GF_SECURITY_ADMIN_USER", "value": "admin"},
                                        {
                                            "name": "GF_SECURITY_ADMIN_PASSWORD",
                                            "valueFrom": {"secretKeyRef": {"name": GRAFANA_ADMIN_SECRET, "key": "password"}},
                                        },
                                    ],
                                }
                            ]
                        }
                    }
                },
            },
        ),
        _patch(
            "Secret",
            "grafana-config",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "grafana-config", "namespace": NAMESPACE},
                "stringData": {"grafana.ini": grafana_ini(stack)},
            },
        ),
        # The metrics API adapter admits Prometheus alone (and the API server, adapter_api_server_policy), not everyone.
        _patch("NetworkPolicy", ADAPTER, [{"op": "replace", "path": "/spec/ingress", "value": adapter_ingress()}]),
        _patch(
            "NetworkPolicy",
            "grafana",
            [
                {
                    "op": "add",
                    "path": "/spec/ingress/-",
                    "value": {
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}}}],
                        "ports": [{"port": GRAFANA_PORT, "protocol": "TCP"}],
                    },
                }
            ],
        ),
    ]
    app = grafana_app(stack)
    if app is not None and app.http.port != GRAFANA_PORT:
        out.append(_patch("Service", "grafana", [{"op": "replace", "path": "/spec/ports/0/port", "value": app.http.port}]))
    blackbox = blackbox_configuration(stack)
    if blackbox is not None:
        out.append(_patch("ConfigMap", BLACKBOX_CONFIGURATION, blackbox))
    return out + _logs_and_drill_patches(stack)


def _logs_and_drill_patches(stack: StackConfig) -> list[dict[str, Any]]:
    """Grafana reads Iluvatar's dashboards and, with logs, the store's datasource; Alertmanager takes vmalert's alerts;
    kube-state-metrics copies each drill's labels into its CronJob's series (what the drill alerts name)."""
    out: list[dict[str, Any]] = []
    if dashboards(stack):
        out.append(
            _patch(
                "Deployment",
                "grafana",
                [
                    {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": DASHBOARDS, "configMap": {"name": DASHBOARDS}}},
                    {
                        "op": "add",
                        "path": "/spec/template/spec/containers/0/volumeMounts/-",
                        "value": {"name": DASHBOARDS, "mountPath": DASHBOARDS_PATH, "readOnly": False},
                    },
                ],
            )
        )
    if logs.enabled(stack):
        out.append(
            _patch(
                "Secret",
                "grafana-datasources",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "grafana-datasources", "namespace": NAMESPACE},
                    "stringData": {"datasources.yaml": grafana_datasources(stack)},
                },
            )
        )
        out.append(
            _patch(
                "NetworkPolicy",
                "alertmanager-main",
                [
                    {
                        "op": "add",
                        "path": "/spec/ingress/-",
                        "value": {
                            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": logs.VMALERT}}}],
                            "ports": [{"port": 9093, "protocol": "TCP"}],
                        },
                    }
                ],
            )
        )
    if drill.enabled(stack):
        allow = f"--metric-labels-allowlist=cronjobs=[{drill.LABEL},{drill.KIND_LABEL}]"
        out.append(_patch("Deployment", "kube-state-metrics", [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": allow}]))
    return out


def application(stack: StackConfig) -> dict[str, Any]:
    """kube-prometheus as an Argo CD platform Application: its kustomization at the release tag, with the stack's patches inline."""
    manifest = gitops.platform_application(
        APPLICATION,
        path=".",
        repo_url=KUBE_PROMETHEUS_REPOSITORY,
        version=KUBE_PROMETHEUS_VERSION,
        values={},
        namespace=NAMESPACE,
    )
    source = manifest["spec"]["source"]
    del source["helm"]
    kustomize = {"images": [f"{OPERATOR_IMAGE}:{OPERATOR_VERSION}"], "patches": patches(stack)}
    source["kustomize"] = kustomize
    manifest["metadata"]["annotations"]["iluvatar.dev/values-digest"] = gitops.values_digest(kustomize)
    return manifest


# --- What Pulumi creates beside it ----------------------------------------------------------------------


def _meta(name: str, namespace: str | None, **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **labels}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def control_plane_services(stack: StackConfig) -> list[dict[str, Any]]:
    """What kube-prometheus's ServiceMonitors for the scheduler and the controller-manager select (kube-system
    Services of Talos's static pods, which Talos labels `k8s-app`), and etcd's metrics on each control plane."""
    out: list[dict[str, Any]] = []
    for name, port in (("kube-scheduler", 10259), ("kube-controller-manager", 10257)):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(name, "kube-system", **{"app.kubernetes.io/name": name}),
                "spec": {
                    "clusterIP": "None",
                    "selector": {"k8s-app": name, "tier": "control-plane"},
                    "ports": [{"name": "https-metrics", "port": port, "targetPort": port, "protocol": "TCP"}],
                },
            }
        )
    labels = {"app.kubernetes.io/name": "etcd"}
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("etcd", "kube-system", **labels),
            "spec": {
                "clusterIP": "None",
                "ports": [{"name": "metrics", "port": ETCD_METRICS_PORT, "targetPort": ETCD_METRICS_PORT, "protocol": "TCP"}],
            },
        }
    )
    out.append(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": _meta(
                "etcd", "kube-system", **labels, **{"kubernetes.io/service-name": "etcd", "endpointslice.kubernetes.io/managed-by": "iluvatar"}
            ),
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": ETCD_METRICS_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [str(n.ip)], "nodeName": n.name, "conditions": {"ready": True}} for n in stack.by_role("valinor")],
        }
    )
    return out


def monitors(stack: StackConfig) -> list[dict[str, Any]]:
    """The monitors no chart ships: etcd, Envoy Gateway's controller and its proxies, Headscale's certificate, and the
    Ainur's Pis."""
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta("etcd", NAMESPACE),
            "spec": {
                "jobLabel": "app.kubernetes.io/name",
                "namespaceSelector": {"matchNames": ["kube-system"]},
                "selector": {"matchLabels": {"app.kubernetes.io/name": "etcd"}},
                "endpoints": [{"port": "metrics", "interval": "30s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta("envoy-gateway", NAMESPACE),
            "spec": {
                "namespaceSelector": {"matchNames": ["envoy-gateway-system"]},
                "selector": {"matchLabels": {"control-plane": "envoy-gateway"}},
                "endpoints": [{"port": "metrics", "interval": "30s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": _meta("envoy-proxies", NAMESPACE),
            "spec": {
                "namespaceSelector": {"matchNames": [GATEWAY_NAMESPACE]},
                "selector": {"matchLabels": {"app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway"}},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/stats/prometheus", "interval": "30s"}],
            },
        },
    ]
    probe = headscale_probe(stack)
    if probe is not None:
        out.append(probe)
    if stack.ainur is not None:
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1alpha1",
                "kind": "ScrapeConfig",
                "metadata": _meta(AINUR_JOB, NAMESPACE),
                "spec": {
                    "jobName": AINUR_JOB,
                    "scrapeInterval": "30s",
                    "staticConfigs": [
                        {"targets": [f"{n.ip}:{NODE_EXPORTER_PORT}"], "labels": {"node": n.name, "cluster": "ainur"}} for n in stack.ainur_nodes
                    ],
                },
            }
        )
    return out


# The Ainur's etcd snapshots as each valar's k3s keeps them (k3s's --etcd-snapshot-dir default, <data-dir>/db/snapshots
# under /var/lib/rancher/k3s/server, docs.k3s.io "etcd-snapshot"; unverified at the pinned k3s). On an S3 target the
# drill reads the bucket's; on NFS k3s uploads nothing (it speaks S3 only), so only the cards hold them, and nothing on
# Arda could see them stop. A sidecar of each Pi's node-exporter, root (the folder is k3s's, owner-only) with no
# capability, on the folder alone and read-only, writes the newest file's time into a textfile node-exporter serves;
# a folder with no snapshot (a maia's: the mount makes it empty there) writes nothing.
SNAPSHOT_DIR = "/var/lib/rancher/k3s/server/db/snapshots"
SNAPSHOT_METRIC = "iluvatar_k3s_etcd_snapshot_newest_seconds"
SNAPSHOT_METRICS_DIR = "/snapshot-metrics"
SNAPSHOT_ALERT = "AinurSnapshotsStale"
SNAPSHOT_INTERVAL_SECONDS = 300
SNAPSHOT_EXPORTER_IMAGE = pins.IMAGES["busybox"]
# In busybox's sh. Environment: DIR (the snapshots), OUT (the textfile), ONCE (set: one pass, as a test runs it).
SNAPSHOT_SCRIPT = f"""set -eu
while :; do
  newest=0
  for f in "$DIR"/*; do
    if [ -f "$f" ]; then
      t=$(stat -c %Y "$f")
      if [ "$t" -gt "$newest" ]; then newest=$t; fi
    fi
  done
  if [ "$newest" -gt 0 ]; then
    printf '# HELP {SNAPSHOT_METRIC} When the newest etcd snapshot on this valar was written, seconds since the epoch.\n# TYPE {SNAPSHOT_METRIC} gauge\n{SNAPSHOT_METRIC} %s\n' "$newest" > "$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
  else
    rm -f "$OUT"
  fi
  if [ -n "${{ONCE:-}}" ]; then exit 0; fi
  sleep {SNAPSHOT_INTERVAL_SECONDS}
done
"""


def ainur_node_exporter() -> list[dict[str, Any]]:
    """node-exporter on every Pi, on its LAN address, for Arda's Prometheus (the Ainur have none of their own)."""
    labels = {"app.kubernetes.io/name": "node-exporter", "app.kubernetes.io/part-of": "iluvatar"}
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": dict(MANAGED_BY), "annotations": dict(gitops.PULUMI_OWNED)},
    }
    pod = {
        "hostNetwork": True,
        "hostPID": True,
        "priorityClassName": "system-node-critical",
        # Every Pi, a netbooted maia too (its taint tolerated, docs/security.md says why): it reports that maia's own
        # health only, as nobody with no capability on a read-only root, and holds no credential: no token is mounted,
        # and its account (the namespace's default) has no role anyway.
        "automountServiceAccountToken": False,
        "tolerations": [{"operator": "Exists"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534},
        "containers": [
            {
                "name": "node-exporter",
                "image": NODE_EXPORTER_IMAGE,
                "args": [
                    f"--web.listen-address=:{NODE_EXPORTER_PORT}",
                    "--path.sysfs=/host/sys",
                    "--path.rootfs=/host/root",
                    "--path.procfs=/host/root/proc",
                    "--no-collector.wifi",
                    # The Pi's k3s certificates' ends, as its k3s step writes them (plans.k3s.CERTIFICATES_SCRIPT).
                    f"--collector.textfile.directory=/host/root{k3s.METRICS_DIR}",
                    # The newest etcd snapshot's time, as the sidecar below writes it (the flag is repeatable).
                    f"--collector.textfile.directory={SNAPSHOT_METRICS_DIR}",
                    "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run/k3s/containerd/.+|var/lib/kubelet/pods/.+)($|/)",
                ],
                "ports": [{"name": "metrics", "containerPort": NODE_EXPORTER_PORT, "hostPort": NODE_EXPORTER_PORT, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "20m", "memory": "40Mi"}, "limits": {"memory": "120Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "sys", "mountPath": "/host/sys", "readOnly": True, "mountPropagation": "HostToContainer"},
                    {"name": "root", "mountPath": "/host/root", "readOnly": True, "mountPropagation": "HostToContainer"},
                    {"name": "snapshot-metrics", "mountPath": SNAPSHOT_METRICS_DIR, "readOnly": True},
                ],
            },
            {
                "name": "etcd-snapshots",
                "image": SNAPSHOT_EXPORTER_IMAGE,
                "command": ["/bin/sh", "-c", SNAPSHOT_SCRIPT],
                "env": [{"name": "DIR", "value": "/snapshots"}, {"name": "OUT", "value": f"{SNAPSHOT_METRICS_DIR}/etcd-snapshots.prom"}],
                "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
                "securityContext": {
                    "runAsUser": 0,
                    "runAsNonRoot": False,
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "snapshots", "mountPath": "/snapshots", "readOnly": True},
                    {"name": "snapshot-metrics", "mountPath": SNAPSHOT_METRICS_DIR},
                ],
            },
        ],
        "volumes": [
            {"name": "sys", "hostPath": {"path": "/sys"}},
            {"name": "root", "hostPath": {"path": "/"}},
            {"name": "snapshots", "hostPath": {"path": SNAPSHOT_DIR, "type": "DirectoryOrCreate"}},
            {"name": "snapshot-metrics", "emptyDir": {"sizeLimit": "1Mi"}},
        ],
    }
    return [
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("node-exporter", NAMESPACE, **labels),
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}},
        },
    ]


# --- Alerts ---------------------------------------------------------------------------------------------


_FILESYSTEMS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|fuse.*",mountpoint!~"/run($|/.*)"'
# VolSync's gauge (github.com/backube/volsync v0.16.0, internal/controller/metrics.go): 1 while a
# ReplicationSource's last copy failed or is overdue. Prometheus reads it through the chart's ServiceMonitor, which
# sends no token, so the controller serves its metrics without one (plans.backup.helm_values, metrics.disableAuth).
VOLSYNC_OUT_OF_SYNC = "volsync_volume_out_of_sync"
# How long before a certificate's end its alert fires: a month to run `pulumi up` (issue 57).
CERTIFICATE_WARNING_DAYS = k3s.CERTIFICATE_WARNING_DAYS
# Where each expiry alert's owner reads what to do (the alert's `runbook_url`).
ENDS_RUNBOOK = "docs/day2.md#what-ends-and-who-renews-it"
# The ends only Pulumi's state knows (the Talos provider's client certificates, the CAs, what the local CA issued): one
# rule each, the end written into the rule at each `pulumi up` (`credential_alerts`), so it fires with nothing to scrape
# and an `up` that renews rewrites it.
CREDENTIAL_ALERT = "CredentialExpiring"
# 28 days before the end: inside every renewal window an `up` has, so the `up` the alert asks for renews. The Talos
# provider renews the talosconfig's certificate only within a calendar month of its end, 28 to 31 days
# (terraform-provider-talos v0.11.0 talos_machine_secrets_resource.go:372-373, NotAfter.Before(now.AddDate(0, 1, 0))),
# the kubeconfig within 720 h (talos_cluster_kubeconfig_resource.go:150-154), the local CA's leaves within 30 days
# (plans.identity and plans.kms CERTIFICATE_EARLY_RENEWAL_HOURS); an alert at 30 days could ask for an `up` too early.
CREDENTIAL_WARNING_DAYS = 28
CREDENTIAL_UNKNOWN_ALERT = "CredentialEndUnknown"
ENDS_GROUP = "iluvatar-ends"
# Headscale's Let's Encrypt certificate, as its clients see it: kube-prometheus v0.18.0's blackbox-exporter
# (manifests/blackboxExporter-service.yaml:16-18, its plain-HTTP probe port; -configuration.yaml:5-8 `http_2xx`, which
# verifies against the public roots, as HEADSCALE_MODULE does) fetches Headscale's /health (headscale v0.27.1
# hscontrol/app.go:448) with its public name each hour. Headscale renews through x/crypto's autocert with no RenewBefore (app.go:874-881), so 30 days
# before the end (golang.org/x/crypto v0.43.0, headscale's go.mod:43, acme/autocert/autocert.go:1031-1036): under 21
# days left, its renewals have failed for nine days (a lost port forward, TLS-ALPN-01 unreachable).
HEADSCALE_PROBE_JOB = "headscale-certificate"
# An Arda machine's kubelet serving certificate is self-signed for a year and made again only as the kubelet starts
# (talos v1.13.0 internal/app/machined/pkg/controllers/k8s/kubelet_service.go:207, :504-521; the same at v1.14.0-rc.1
# :207, :507-524): a machine up this long without a reboot or an upgrade nears its end. Its boot time is the bound
# (kube-prometheus's node-exporter, job "node-exporter"); a kubelet restarted without a reboot (`talosctl upgrade-k8s`,
# a kubelet setting changed) only makes it fire early, and its text says so.
UNREBOOTED_ALERT = "ArdaMachineNotRestarted"
UNREBOOTED_DAYS = 335
HEADSCALE_CERTIFICATE_DAYS = 21
# The probe runs each hour (HEADSCALE_PROBE_INTERVAL), but an instant selector reads a series only five minutes back
# (prometheus v3.12.0 promql/engine.go:64, kube-prometheus v0.18.0 sets no query.lookbackDelta) and the rules are
# evaluated every 30 s (prometheus-operator v0.93.0 monitoring.coreos.com_prometheuses.yaml:4026-4030): a bare selector
# is empty 55 minutes of each hour, and a pending alert whose expression is empty is dropped (rules/alerting.go:510-511),
# so no `for:` longer than five minutes is ever reached. The alerts read the newest probe within an interval and a
# quarter instead.
HEADSCALE_PROBE_INTERVAL = "1h"
HEADSCALE_PROBE_RANGE = "75m"
BLACKBOX_PROBER = f"blackbox-exporter.{NAMESPACE}.svc:19115"


def alerts(stack: StackConfig) -> list[Alert]:
    """The alerts a homelab needs, for what this stack runs."""
    out = [
        Alert(
            "ArdaNodeDown",
            'kube_node_status_condition{condition="Ready",status="true"} == 0',
            "5m",
            "critical",
            "Arda machine {{ $labels.node }} is not Ready",
            "{{ $labels.node }} has not been Ready for 5 minutes: it is off, unreachable, or its kubelet has stopped. "
            "Its pods move elsewhere after the eviction timeout; `talosctl -n <its address> dmesg` says why.",
        ),
        Alert(
            "NodeDiskFilling",
            f"(node_filesystem_avail_bytes{{{_FILESYSTEMS}}} / node_filesystem_size_bytes{{{_FILESYSTEMS}}} < 0.15"
            f" and predict_linear(node_filesystem_avail_bytes{{{_FILESYSTEMS}}}[6h], 24 * 3600) < 0)"
            f" and node_filesystem_readonly{{{_FILESYSTEMS}}} == 0",
            "30m",
            "warning",
            "{{ $labels.mountpoint }} on {{ $labels.instance }} fills within a day",
            "Less than 15 % of {{ $labels.mountpoint }} on {{ $labels.instance }} is free and, at the last six hours' rate, it is full within 24 hours.",
        ),
        Alert(
            "NodeDiskAlmostFull",
            f"node_filesystem_avail_bytes{{{_FILESYSTEMS}}} / node_filesystem_size_bytes{{{_FILESYSTEMS}}} < 0.05"
            f" and node_filesystem_readonly{{{_FILESYSTEMS}}} == 0",
            "10m",
            "critical",
            "{{ $labels.mountpoint }} on {{ $labels.instance }} is almost full",
            "Less than 5 % of {{ $labels.mountpoint }} on {{ $labels.instance }} is free: writes start failing soon.",
        ),
        Alert(
            "CertificateExpiring",
            f"certmanager_certificate_expiration_timestamp_seconds - time() < {CERT_MANAGER_ALERT_DAYS} * 24 * 3600",
            "1h",
            "warning",
            f"Certificate {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} expires within {CERT_MANAGER_ALERT_DAYS} days",
            "cert-manager renews 30 days before the end; a certificate this close to its end is not being renewed. "
            "`kubectl -n {{ $labels.namespace }} describe certificate {{ $labels.name }}` says why.",
        ),
        Alert(
            "CertificateNotReady",
            'certmanager_certificate_ready_status{condition="False"} == 1',
            "30m",
            "critical",
            "Certificate {{ $labels.namespace }}/{{ $labels.name }} is not ready",
            "cert-manager could not issue or renew {{ $labels.namespace }}/{{ $labels.name }} for 30 minutes; the gateways may be serving an old or no certificate.",
        ),
        Alert(
            "BackupFailed",
            f"{VOLSYNC_OUT_OF_SYNC} == 1",
            "1h",
            "critical",
            "Backup {{ $labels.obj_namespace }}/{{ $labels.obj_name }} is failing",
            "VolSync's last copy of {{ $labels.obj_namespace }}/{{ $labels.obj_name }} ({{ $labels.method }}) failed or is overdue: the volume is not backed up. "
            "`kubectl -n {{ $labels.obj_namespace }} describe replicationsource {{ $labels.obj_name }}` says why.",
        ),
        Alert(
            "BackupJobFailed",
            f'kube_job_failed{{condition="true",job_name=~".*(backup|snapshot).*",job_name!~"{drill.PREFIX}.*"}} == 1',
            "5m",
            "critical",
            "Backup job {{ $labels.namespace }}/{{ $labels.job_name }} failed",
            "A backup or snapshot job (such as the etcd snapshots) failed; `kubectl -n {{ $labels.namespace }} logs job/{{ $labels.job_name }}` says why.",
        ),
    ]
    out += drill_alerts(stack)
    if logs.enabled(stack):
        out += logs.pipeline_alerts(stack)
    if stack.gitops is not None:
        out.append(
            Alert(
                "ArgoCdAppDegraded",
                'argocd_app_info{health_status="Degraded"} == 1',
                "15m",
                "warning",
                "Argo CD application {{ $labels.name }} is Degraded",
                "{{ $labels.name }} has been Degraded for 15 minutes: one of its resources is failing (a crashing pod, a failed job). Its page in Argo CD shows which.",
            )
        )
    if stack.ainur is not None:
        out.append(
            Alert(
                "AinurNodeDown",
                f'up{{job="{AINUR_JOB}"}} == 0',
                "5m",
                "critical",
                "Ainur Pi {{ $labels.node }} is down",
                "Arda's Prometheus has not reached {{ $labels.node }}'s node-exporter for 5 minutes: the Pi is off, unreachable, or k3s stopped. "
                "The Ainur keep serving with the others while a quorum of valar remains.",
            )
        )
        out.append(
            Alert(
                "AinurCertificateExpiring",
                f'{k3s.CERTIFICATE_METRIC}{{ca!="true"}} - time() < {CERTIFICATE_WARNING_DAYS} * 86400',
                "1h",
                "warning",
                f"A k3s certificate on {{{{ $labels.node }}}} ends within {CERTIFICATE_WARNING_DAYS} days",
                f"{{{{ $labels.certificate }}}} on {{{{ $labels.node }}}} ends within {CERTIFICATE_WARNING_DAYS} days, and k3s renews its "
                f"certificates only as it starts, within {k3s.CERTIFICATE_RENEW_DAYS} days of their end. `pulumi up` restarts k3s on that Pi "
                "(its k3s step, gated, one Pi at a time), which renews them, ended ones included; a Pi that does not answer on SSH is "
                "skipped with a warning. So does `sudo systemctl restart k3s` (k3s-agent on a maia) on it. Expired, that Pi's k3s stops "
                "serving (and a valar's API server, with the netboot failover); with several valar all ended, restart k3s on every "
                "valar at once (etcd's peers reach each other through the ended certificates), then `pulumi up` (docs/day2.md).",
            )
        )
        # k3s's CAs (ten years) are never renewed by k3s, so no restart helps: their own alert, and the runbook that does.
        out.append(
            Alert(
                "AinurCACertificateExpiring",
                f'{k3s.CERTIFICATE_METRIC}{{ca="true"}} - time() < {CERTIFICATE_WARNING_DAYS} * 86400',
                "1h",
                "warning",
                f"A k3s CA on {{{{ $labels.node }}}} ends within {CERTIFICATE_WARNING_DAYS} days",
                f"The CA {{{{ $labels.certificate }}}} on {{{{ $labels.node }}}} ends within {CERTIFICATE_WARNING_DAYS} days. k3s never "
                "renews its CAs (ten years), and every certificate they signed stops verifying at their end, restart or not: "
                "rotate them by hand with `k3s certificate rotate-ca` on the first valar (docs.k3s.io, Certificate Management, "
                "and docs/day2.md), then restart k3s on every Pi, one at a time.",
            )
        )
        # The alert above sees only the series it has: a Pi whose metric file is missing (its step never wrote it, a
        # reflashed card) or unreadable (node-exporter drops the whole file, node_textfile_scrape_error) would be silent.
        out.append(
            Alert(
                "AinurCertificateUnknown",
                f'((up{{job="{AINUR_JOB}"}} == 1) unless on(node) {k3s.CERTIFICATE_METRIC}) '
                f'or (node_textfile_scrape_error{{job="{AINUR_JOB}"}} == 1)',
                "1h",
                "warning",
                "The k3s certificates' ends on {{ $labels.node }} are not known",
                "{{ $labels.node }}'s node-exporter answers, but serves no end for its k3s certificates (or cannot read its "
                f"textfile directory {k3s.METRICS_DIR}), so AinurCertificateExpiring cannot fire for it. Its k3s step writes the "
                "file: run `pulumi up` (on a Pi rebuilt on a new card, `pulumi up --replace '**::ainur-{{ $labels.node }}-k3s'`: its step's "
                "inputs did not change, so a plain `up` does not run it); look with `ls -l` on that directory and "
                "`sudo k3s certificate check --output table`.",
            )
        )
    if stack.ainur is not None and stack.backup is not None:
        bound = int(data_rules.newest_within(stack.backup.etcd.schedule).total_seconds())
        out.append(
            Alert(
                SNAPSHOT_ALERT,
                f"time() - {SNAPSHOT_METRIC} > {bound}",
                "1h",
                "critical",
                "The Ainur's etcd snapshots on {{ $labels.node }} have stopped",
                f'The newest etcd snapshot in {SNAPSHOT_DIR} on {{{{ $labels.node }}}} is older than the {bound} s its schedule ("{stack.backup.etcd.schedule}") '
                "allows: k3s has stopped taking them. Look with `sudo k3s etcd-snapshot list` and `sudo journalctl -u k3s | grep -i snapshot` on it.",
            )
        )
    out += headscale_alerts(stack)
    out.append(
        Alert(
            UNREBOOTED_ALERT,
            f'time() - node_boot_time_seconds{{job="node-exporter"}} > {UNREBOOTED_DAYS} * 86400',
            "1h",
            "warning",
            f"Arda machine {{{{ $labels.instance }}}} has run {UNREBOOTED_DAYS} days without a restart",
            "Its kubelet's self-signed serving certificate lasts a year and is made again only as the kubelet starts. Reboot it "
            "(`talosctl -n <its address> reboot`, one machine at a time) or upgrade Talos, which restarts it. A `talosctl "
            "upgrade-k8s` since its boot renewed the certificate already without resetting the boot time this alert reads: "
            "then it is early, and a reboot silences it.",
            runbook=ENDS_RUNBOOK,
        )
    )
    if ceph_enabled(stack):
        out += [
            Alert(
                "CephHealthWarning",
                "ceph_health_status == 1",
                "15m",
                "warning",
                "Ceph is in HEALTH_WARN",
                "Ceph has reported HEALTH_WARN for 15 minutes (a full disk, a slow or down OSD, degraded copies). "
                "`kubectl -n rook-ceph exec deploy/rook-ceph-tools -- ceph health detail` says which.",
            ),
            Alert(
                "CephHealthError",
                "ceph_health_status == 2",
                "5m",
                "critical",
                "Ceph is in HEALTH_ERR",
                "Ceph reports HEALTH_ERR: some data may be unavailable. `kubectl -n rook-ceph exec deploy/rook-ceph-tools -- ceph health detail` says why.",
            ),
        ]
    return out


def headscale_alerts(stack: StackConfig) -> list[Alert]:
    """Headscale's served certificate ends within HEADSCALE_CERTIFICATE_DAYS (its renewal is failing), or its probe has
    failed for six hours (no end known: the expiry alert cannot fire)."""
    if stack.remote_access is None or stack.remote_access.headscale is None:
        return []
    job = f'job="{HEADSCALE_PROBE_JOB}"'
    return [
        Alert(
            "HeadscaleCertificateExpiring",
            f"last_over_time(probe_ssl_earliest_cert_expiry{{{job}}}[{HEADSCALE_PROBE_RANGE}]) - time() < {HEADSCALE_CERTIFICATE_DAYS} * 86400",
            "1h",
            "critical",
            f"Headscale's certificate ends within {HEADSCALE_CERTIFICATE_DAYS} days",
            "Headscale renews its Let's Encrypt certificate 30 days before its end, over TLS-ALPN-01 on its public :443; "
            f"under {HEADSCALE_CERTIFICATE_DAYS} days left, those renewals are failing (a lost port forward, a new router, "
            "port 443 blocked). At its end, devices away from home cannot sign in, reconnect or enrol. "
            "`kubectl -n remote-access logs deploy/headscale | grep -i acme` says why; fix the forward while you are home.",
            runbook=ENDS_RUNBOOK,
        ),
        Alert(
            "HeadscaleCertificateUnknown",
            f"last_over_time(probe_success{{{job}}}[{HEADSCALE_PROBE_RANGE}]) == 0",
            "6h",
            "warning",
            "Headscale's certificate cannot be read",
            "Arda's blackbox-exporter has not fetched Headscale's /health (its LoadBalancer address on the LAN, with "
            "its public name) for six hours, so HeadscaleCertificateExpiring cannot fire: Headscale is down, its address "
            "moved, or its certificate does not verify for its name (ended already?). "
            f"`curl -v --resolve {remote_access.headscale_host(stack)}:{urlsplit(remote_access.headscale_url(stack)).port or 443}:"
            f"{stack.remote_access.headscale.ip} "
            f"{remote_access.headscale_url(stack)}/health` from the LAN says which.",
            runbook=ENDS_RUNBOOK,
        ),
    ]


# kube-prometheus v0.18.0's blackbox-exporter reads one file, config.yml of this ConfigMap
# (manifests/blackboxExporter-configuration.yaml:3, :50; blackboxExporter-deployment.yaml:31, :116-117), and its
# module-configmap-reloader sidecar has it reloaded on a change (:59-62). Its `http_2xx` (:5-8) dials the target's own name; Headscale's is the home's public
# address, which a router without NAT loopback does not turn back in (docs/remote-access.md). HEADSCALE_MODULE dials
# Headscale's LoadBalancer address on the LAN instead, as the subnet router does (plans.remote_access.router_manifests'
# hostAliases), and still asks for and verifies the public name: blackbox_exporter v0.28.0 sends `headers`' Host
# (config/config.go:311) and takes `tls_config.server_name` (the inlined http_client_config, :320) as the name TLS
# verifies, before any Host header or the target's address (prober/http.go:415-428).
BLACKBOX_CONFIGURATION = "blackbox-exporter-configuration"
HEADSCALE_MODULE = "headscale_lan"


def blackbox_configuration(stack: StackConfig) -> dict[str, Any] | None:
    """kube-prometheus's blackbox-exporter configuration with HEADSCALE_MODULE, for a stack with Headscale: its
    `http_2xx` as kube-prometheus writes it (the only other module a Probe of Iluvatar's names), and Headscale's."""
    if stack.remote_access is None or stack.remote_access.headscale is None:
        return None
    host = remote_access.headscale_host(stack)
    modules = {
        "http_2xx": {"prober": "http", "http": {"preferred_ip_protocol": "ip4"}},
        HEADSCALE_MODULE: {
            "prober": "http",
            "http": {
                "preferred_ip_protocol": "ip4",
                "headers": {"Host": remote_access.headscale_url(stack).removeprefix("https://")},
                "tls_config": {"server_name": host},
            },
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": BLACKBOX_CONFIGURATION, "namespace": NAMESPACE},
        "data": {"config.yml": yamltext.dump({"modules": modules}, sort_keys=True)},
    }


def headscale_probe_target(stack: StackConfig) -> str:
    """Headscale's /health at its LoadBalancer address on the LAN (its public URL with the address for the name)."""
    headscale = remote_access.settings(stack).headscale
    assert headscale is not None
    url = remote_access.headscale_url(stack)
    return url.replace(remote_access.headscale_host(stack), str(headscale.ip), 1) + "/health"


def headscale_probe(stack: StackConfig) -> dict[str, Any] | None:
    """The blackbox probe of Headscale's certificate (HEADSCALE_PROBE_JOB), which kube-prometheus's Prometheus selects
    (manifests/prometheus-prometheus.yaml:33-34, every Probe) and whose exporter may dial out (its policy's `egress: [{}]`)."""
    if stack.remote_access is None or stack.remote_access.headscale is None:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Probe",
        "metadata": _meta(HEADSCALE_PROBE_JOB, NAMESPACE),
        "spec": {
            "jobName": HEADSCALE_PROBE_JOB,
            "interval": HEADSCALE_PROBE_INTERVAL,
            "module": HEADSCALE_MODULE,
            "prober": {"url": BLACKBOX_PROBER},
            "targets": {"staticConfig": {"static": [headscale_probe_target(stack)]}},
        },
    }


def _epoch(end: str) -> int:
    return int(datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp())


def credential_alerts(ends: Mapping[str, str | None]) -> list[Alert]:
    """One alert per end Pulumi's state records (what -> `2027-11-25T12:07:33Z`, None when it could not be read):
    CREDENTIAL_ALERT from CREDENTIAL_WARNING_DAYS before it, or CREDENTIAL_UNKNOWN_ALERT at once for an unread end."""
    out: list[Alert] = []
    for what, end in sorted(ends.items()):
        labels = (("credential", what),)
        if end is None:
            out.append(
                Alert(
                    CREDENTIAL_UNKNOWN_ALERT,
                    "vector(1)",
                    None,
                    "warning",
                    f"The end of {what} is not known",
                    f"`pulumi up` could not read when {what} ends, so {CREDENTIAL_ALERT} cannot fire for it: `iluvatar doctor` says what it reads.",
                    labels,
                    ENDS_RUNBOOK,
                )
            )
            continue
        warn = _epoch(end) - CREDENTIAL_WARNING_DAYS * 86400
        out.append(
            Alert(
                CREDENTIAL_ALERT,
                f"vector(time()) > {warn}",
                None,
                "warning",
                f"{what} ends within {CREDENTIAL_WARNING_DAYS} days ({end})",
                f"{what} ends on {end}. `pulumi up` renews what Pulumi issues (the Talos provider's client certificates, "
                "the local CA's leaves) and rewrites this rule; a CA is rotated by hand. `iluvatar doctor` says which.",
                labels,
                ENDS_RUNBOOK,
            )
        )
    return out


# A drill's CronJob (plans.drill) and what it drills, from kube-state-metrics v2.19.0's CronJob series
# (internal/store/cronjob.go: kube_cronjob_labels, kube_cronjob_status_last_schedule_time,
# kube_cronjob_status_last_successful_time, kube_cronjob_status_active, kube_cronjob_created).
_DRILLS = f'cronjob=~"{drill.PREFIX}.+"'
_DRILL_NAMES = "* on(namespace, cronjob) group_left(label_iluvatar_dev_drill, label_iluvatar_dev_drill_kind) " + drill.DRILL_LABEL_SERIES


def drill_alerts(stack: StackConfig) -> list[Alert]:
    """A drill whose last run ended without a success (failed), or whose last success is too old (stale)."""
    if not drill.enabled(stack):
        return []
    assert stack.backup is not None
    stale = int(data_rules.stale_after(stack.backup.drill).total_seconds())
    ended_without_success = (
        f"(kube_cronjob_status_last_schedule_time{{{_DRILLS}}} > on(namespace, cronjob) kube_cronjob_status_last_successful_time"
        f" or (kube_cronjob_status_last_schedule_time{{{_DRILLS}}} unless on(namespace, cronjob) kube_cronjob_status_last_successful_time))"
        f" and on(namespace, cronjob) kube_cronjob_status_active{{{_DRILLS}}} == 0"
    )
    too_old = (
        f"(time() - kube_cronjob_status_last_successful_time{{{_DRILLS}}} > {stale}"
        f" or (time() - kube_cronjob_created{{{_DRILLS}}} > {stale} unless on(namespace, cronjob) kube_cronjob_status_last_successful_time))"
    )
    what = "{{ $labels.label_iluvatar_dev_drill }} ({{ $labels.label_iluvatar_dev_drill_kind }})"
    return [
        Alert(
            "RestoreDrillFailed",
            f"({ended_without_success}) {_DRILL_NAMES}",
            "5m",
            "critical",
            f"The restore drill of {what} failed",
            f"The last restore drill of {what} ended without restoring its newest backup: that backup may not come back. "
            "`kubectl -n {{ $labels.namespace }} logs job/<the newest job of cronjob {{ $labels.cronjob }}>` says what failed "
            "(restic check, the restore, the count, the decryption, etcdutl, or the KMS key's unseal of its canary).",
        ),
        Alert(
            "RestoreDrillStale",
            f"({too_old}) {_DRILL_NAMES}",
            "1h",
            "warning",
            f"No good restore drill of {what} for {_days(stale)}",
            f"No restore drill of {what} has passed in {_days(stale)}: it does not run (its CronJob is suspended, its pods "
            "cannot be scheduled) or it keeps failing. `kubectl -n {{ $labels.namespace }} describe cronjob {{ $labels.cronjob }}`.",
        ),
    ]


def _days(seconds: int) -> str:
    return f"{seconds // 86400} days" if seconds % 86400 == 0 else f"{seconds // 3600} hours"


def alert_rules(stack: StackConfig, ends: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The PrometheusRule of the stack's alerts (kube-prometheus's Prometheus selects every rule), with `ends` (what
    Pulumi's state says ends when, `credential_alerts`) in a group of their own."""
    groups = [{"name": "iluvatar", "rules": [a.rule() for a in alerts(stack)]}]
    if ends:
        groups.append({"name": ENDS_GROUP, "rules": [a.rule() for a in credential_alerts(ends)]})
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(RULES_NAME, NAMESPACE),
        "spec": {"groups": groups},
    }


# --- Alertmanager ---------------------------------------------------------------------------------------

NTFY_TITLE = '{{ if eq .status "firing" }}🔥{{ else }}✅{{ end }} {{ .commonLabels.alertname }}'
NTFY_MESSAGE = "{{ range .alerts }}{{ .annotations.summary }}\n{{ end }}"


def ntfy_url(url: str) -> str:
    """An ntfy topic's URL with ntfy's own message templating on (`template=yes`) over Alertmanager's JSON."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}template=yes&title={quote(NTFY_TITLE, safe='')}&message={quote(NTFY_MESSAGE, safe='')}"


HEARTBEAT = "heartbeat"


def alertmanager_config(stack: StackConfig, secret: str | None) -> dict[str, Any]:
    """Alertmanager's config: the stack's alerts to its receiver; everything else (kube-prometheus's own
    rules, its Watchdog) to no one, visible in Alertmanager's and Grafana's pages. `secret` is
    `iluvatar:alertReceiverSecret` (callers pass a Pulumi secret and keep the whole config secret)."""
    receiver = settings(stack).receiver
    # The stack's Prometheus alerts, and with logs vmalert's (plans.logs).
    names = "|".join(
        sorted(
            [
                *(a.name for a in alerts(stack)),
                CREDENTIAL_ALERT,
                CREDENTIAL_UNKNOWN_ALERT,
                *(logs.alert_names(stack) if logs.enabled(stack) else []),
            ]
        )
    )
    config: dict[str, Any] = {
        "global": {"resolve_timeout": "5m"},
        "route": {"receiver": "none", "group_by": ["alertname", "namespace"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h"},
        # A critical alert silences the warning of the same name on the same thing (the disk alerts).
        "inhibit_rules": [
            {
                "source_matchers": ["severity = critical"],
                "target_matchers": ["severity = warning"],
                "equal": ["instance", "mountpoint", "namespace", "name"],
            }
        ],
        "receivers": [{"name": "none"}],
    }
    heartbeat = settings(stack).heartbeat
    routes: list[dict[str, Any]] = []
    if heartbeat is not None:
        # kube-prometheus v0.18.0's Watchdog always fires (manifests/kubePrometheus-prometheusRule.yaml:25, :35 `vector(1)`):
        # posted each hour to the switch, it stops when Prometheus, Alertmanager or their rules stop. A receiver that
        # refuses its deliveries (a revoked token, a changed password) fires kube-prometheus's
        # AlertmanagerFailedToSendAlerts (alertmanager-prometheusRule.yaml:44-56), which mutes the Watchdog: the switch sees
        # that too, though the alert saying so cannot be delivered.
        routes.append({"receiver": HEARTBEAT, "matchers": ['alertname="Watchdog"'], "group_wait": "0s", "repeat_interval": "1h"})
        config["receivers"].append({"name": HEARTBEAT, "webhook_configs": [{"url": heartbeat, "send_resolved": False}]})
        config["inhibit_rules"].append(
            {"source_matchers": ['alertname="AlertmanagerFailedToSendAlerts"'], "target_matchers": ['alertname="Watchdog"'], "equal": []}
        )
        config["route"]["routes"] = routes
    kind = receiver.kind if receiver is not None else None
    if receiver is None or kind is None:
        return config
    config["route"]["routes"] = [*routes, {"receiver": kind, "matchers": [f'alertname=~"{names}"']}]
    target: dict[str, Any] = {"name": kind}
    if kind == "email" and receiver.email is not None:
        email = receiver.email
        config["global"] |= {"smtp_smarthost": email.smarthost, "smtp_from": email.sender, "smtp_require_tls": True}
        if email.username is not None:
            config["global"] |= {"smtp_auth_username": email.username, "smtp_auth_password": secret or ""}
        target["email_configs"] = [{"to": email.to, "send_resolved": True}]
    elif kind == "webhook" and receiver.webhook is not None:
        webhook: dict[str, Any] = {"url": receiver.webhook.url, "send_resolved": True}
        url = receiver.webhook.url
        if secret and url is not None and rules.zulip(url) is not None:
            # Zulip reads its bot's API key from the URL's parameters only (stacks.credentials.ZULIP_WEBHOOK).
            split = urlsplit(url)
            query = "&".join(q for q in (split.query, urlencode({"api_key": secret})) if q)
            webhook["url"] = urlunsplit(split._replace(query=query))
        elif secret:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": secret}}
        target["webhook_configs"] = [webhook]
    elif receiver.ntfy is not None:
        assert receiver.ntfy.url is not None
        ntfy: dict[str, Any] = {"url": ntfy_url(receiver.ntfy.url), "send_resolved": True}
        if secret:
            ntfy["http_config"] = {"authorization": {"type": "Bearer", "credentials": secret}}
        target["webhook_configs"] = [ntfy]
    config["receivers"].append(target)
    return config


def alertmanager_secret(stack: StackConfig, secret: str | None) -> dict[str, Any]:
    """The Secret Alertmanager reads its config from (the Alertmanager's `configSecret`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(ALERTMANAGER_SECRET, NAMESPACE),
        "type": "Opaque",
        "stringData": {"alertmanager.yaml": yamltext.dump(alertmanager_config(stack, secret))},
    }


def grafana_admin_secret(password: str) -> dict[str, Any]:
    """Grafana's admin password (Pulumi generates it; the stack output `grafanaAdminPassword`, secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(GRAFANA_ADMIN_SECRET, NAMESPACE),
        "type": "Opaque",
        "stringData": {"password": password},
    }


def gate_manifests() -> list[dict[str, Any]]:
    """What the CRD gate dry-runs: one object of each kind the program creates (a ServiceMonitor, the kind the
    charts install, a PodMonitor, a PrometheusRule, a ScrapeConfig, a Probe), so each kind's CRD serves before its objects."""
    meta = {"name": "iluvatar-gate", "namespace": "kube-system"}
    selector = {"matchLabels": {"app.kubernetes.io/name": "iluvatar-gate"}}
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {"selector": selector, "endpoints": [{"port": "metrics"}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": meta,
            "spec": {"selector": selector, "podMetricsEndpoints": [{"port": "metrics"}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": {"groups": [{"name": "iluvatar-gate", "rules": [{"record": "iluvatar:gate", "expr": "vector(1)"}]}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": meta,
            "spec": {"staticConfigs": [{"targets": ["127.0.0.1:9100"]}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Probe",
            "metadata": meta,
            "spec": {"prober": {"url": "127.0.0.1:9115"}, "targets": {"staticConfig": {"static": ["https://127.0.0.1/health"]}}},
        },
    ]
