"""Logs plan: every machine's logs in one store on Arda, read in Grafana, with the few log alerts that matter.

- **The store**: VictoriaLogs (`STORE_IMAGE`), one StatefulSet in the `monitoring` namespace, its volume of
  `logs.size` on `logs.storageClass`; it keeps lines for `logs.retention` and drops the oldest days once
  `RETENTION_SHARE` of `logs.size` is used (`-retention.maxDiskSpaceUsageBytes`, `retention_bytes`). A Service in the cluster; with the
  Ainur, a LoadBalancer Service at the pool address `logs.address` that only the Pis may reach.
- **Talos's own logs**: every Arda machine's config sends its service logs (`machine.logging.destinations`) and its
  kernel messages (a `KmsgLogConfig` document) off the machine, to the Ainur's collectors (`talos_host`: so a machine
  whose own Kubernetes is down still gets them out), over TCP, as JSON lines (Talos v1.12.4 internal/app/machined/pkg/runtime/logging/sender_jsonlines.go: one JSON object per event,
  `msg`, `talos-time`, `talos-level` and the event's fields, newline-ended on TCP; a service's event carries
  `talos-service`, circular.go:83; a kernel message `facility`, `priority`, `seq`, `clock`, kmsg_log.go:195-205).
  Both apply without a reboot (`APPLY_WITHOUT_REBOOT`).
- **The collector**: the OpenTelemetry Collector (contrib, `COLLECTOR_IMAGE`) as a DaemonSet with the host's network
  on every machine: two `tcp_log` receivers for Talos (services, kernel) on the Pis (`talos_cluster`), each line named
  by its machine (`extraTags`, or the inventory's name for its sender's address), `file_log` for every pod's log files
  (`/var/log/pods`, the CRI format the container runtime writes); each line gets its `cluster`, `machine` and
  `service`, and goes to the store over OTLP. On every Pi the same collector reads the pods' files, and the Pi's
  journal reaches the store through journald's own forwarder, systemd-journal-upload (`journal_upload_script`).
- **Alerts**: vmalert (`VMALERT_IMAGE`) runs `LOG_ALERTS` against the store and sends what fires to Alertmanager,
  which routes them with the stack's other alerts (plans.monitoring).
- **Grafana**: a VictoriaLogs datasource (`datasource`, the plugin `PLUGIN`) and one dashboard per machine
  (`dashboards`): its kernel messages, its services' (Talos's or the Pi's units), its pods'.

Plain functions returning manifests and text; no Pulumi here.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any

from plans import gitops, netpol, yamltext
from plans.alert import Alert
from plans.nfs_guard import POD_CIDR
from plans.storage import BUSYBOX_IMAGE
from stacks import logs as rules
from stacks import pins
from stacks.logs_model import Logs
from stacks.model import Node, StackConfig
from stacks.storage import default_class

NAMESPACE = "monitoring"  # privileged on both clusters (node-exporter's, plans.monitoring): the collectors read the host
MANAGED_BY = gitops.MANAGED_BY

STORE = "victoria-logs"
STORE_VERSION = pins.APPS["victoria-logs"]
# VictoriaLogs, at the release whose Go module the tests build and run (tools/victorialogs).
STORE_IMAGE = f"docker.io/victoriametrics/victoria-logs:{STORE_VERSION}"
# The store's own listener: its readers query it here (Grafana, vmalert, Prometheus' scrape), and its inserter hands it
# what the writers send, over the pod's loopback.
STORE_PORT = 9428
# The inserter, a second VictoriaLogs in the store's pod that takes only inserts (`inserter_args`): the one port the
# writers (the collectors, the Pis' journals) reach. A writer so reads nothing and manages nothing.
INSERT_PORT = 9429
INSERTER = "inserter"
STORE_LAN = f"{STORE}-lan"
STORE_DATA = "/storage"
# The store's admin endpoints' key: a Secret made from a Pulumi RandomPassword (components.logs), mounted as a file the
# store reads it from (a `file://` flag value is re-read every 2 s, VictoriaMetrics lib/flagutil/password.go:58-86,
# 93-103, so a new key takes without a restart; until the file is read, a random key of its own, :99-102). Never on
# the command line, where the pod's spec and `ps` show it.
AUTH_SECRET = f"{STORE}-auth"
AUTH_KEY = "key"
AUTH_DIR = "/etc/victoria-logs/auth"
# The store's endpoints that act on its data, each behind the key (VictoriaLogs v1.52.1 app/vlstorage/main.go:59-67,
# 277-481: `/internal/partition/*` attaches, detaches (hides a day from queries and the log alerts), lists and
# snapshots partitions; force_merge, force_flush, log_new_streams), and the process's own (VictoriaMetrics
# lib/httpserver/httpserver.go:56-57, 446-475: /flags, /debug/pprof/*, a CPU profile on demand). Its deletes stay off
# (no `-delete.enable`, `-internaldelete.enable`: app/vlselect/main.go:37-39, 105-132). /metrics stays open to the
# readers: Prometheus scrapes it.
STORE_AUTH_FLAGS = (
    "partitionManageAuthKey",
    "forceMergeAuthKey",
    "forceFlushAuthKey",
    "logNewStreamsAuthKey",
    "flagsAuthKey",
    "pprofAuthKey",
)
# The inserter's endpoints behind the same key (`inserter_args`): the process's profiles alone.
INSERTER_AUTH_FLAGS = ("pprofAuthKey",)
# Where the OpenTelemetry logs go (VictoriaLogs v1.52.1 app/vlinsert/opentelemetry/opentelemetry.go:24) and where
# systemd-journal-upload posts (it appends /upload to its URL: app/vlinsert/journald/journald.go:101).
OTLP_PATH = "/insert/opentelemetry/v1/logs"
JOURNALD_PATH = "/insert/journald"
# The fields each line's stream is made of (VictoriaLogs' VL-Stream-Fields header): what a dashboard selects by.
STREAM_FIELDS = ("cluster", "machine", "service", "k8s.namespace.name", "k8s.pod.name", "k8s.container.name")

COLLECTOR = "log-collector"
COLLECTOR_VERSION = pins.APPS["otel-collector"]
# The OpenTelemetry Collector's contrib distribution, at the release whose components the tests build (tools/otelcol).
COLLECTOR_IMAGE = f"docker.io/otel/opentelemetry-collector-contrib:{COLLECTOR_VERSION}"
# Where Talos sends its services' logs and its kernel's messages (`talos_host`), each on its port, and the field its
# `extraTags` add to a service's every line.
SERVICE_PORT = 6050
KERNEL_PORT = 6051
MACHINE_TAG = "machine"
CHECKPOINTS = "/var/lib/iluvatar-log-collector"
# The two bbolt files in CHECKPOINTS (file_storage v0.165.0, one extension each), both `recreate`: a file a power
# cut left inconsistent makes bbolt panic at open (bbolt v1.5.0 db.go:1299-1301: the freelist rebuilt by walking
# every page, NoFreelistSync), and file_storage recovers that panic by renaming the file `<file>.<time>.backup` and
# starting on a fresh one only with recreate (extension.go:139-180); without it the collector panics on every start
# until someone deletes the file by hand (tests/netns/test_logs_outage.py). The lines in a set-aside queue are lost.
# Recreate's recovery is itself a race in bbolt v1.5.0: the walk goes on in its goroutine after the opening goroutine's
# panic, whose deferred Rollback clears the transaction under it (db.go:1277-1301, tx.go:639), so a start may still
# crash; the kubelet's restart of the container gets past it, on the same file or the fresh one.
# Recreate does not cover a page whose header is zeroed or foreign (what unsynced pages a cut never wrote look like):
# that check panics in the walk's own goroutine (db.go:1293-1296, tx.go:640, common/page.go:90-92), which nothing
# recovers, and the collector crash-loops. Only fsync prevents that: bbolt then writes and syncs the pages before the
# meta that points at them (client.go:51-57, `NoSync: !cfg.FSync`).
OFFSETS = "file_storage"
QUEUE = "file_storage/queue"
# fsync per file and cluster. Arda's disks: both. The Pis' SD cards: the queue (on the Pi holding Talos's address it
# holds all of Arda's Talos lines, which exist nowhere else: machined's ring overwrites them), at a put, a read and a
# delete per batch (exporterhelper v0.165.0 persistent_queue.go:286-312, 353-367, 401-424), about one batch a second;
# not file_log's offsets, rewritten at every poll (200 ms), whose zeroed page after a cut needs the manual delete
# (docs/monitoring.md's runbook). The card's write rate is not measured.
FSYNC = {OFFSETS: {"arda": True, "ainur": False}, QUEUE: {"arda": True, "ainur": True}}
# What recreate leaves behind (extension.go:165-170): removed when the pod starts, before the collector, so repeated
# power cuts do not fill a Pi's card with 256 MiB copies. The one a start makes stays until the next, to look at.
BACKUPS = "*.backup"
# While the store is away (its node drained in a Talos upgrade, a power cut, a restart) each collector keeps what it
# has read in a queue on its machine's disk (in CHECKPOINTS, the file_storage extension) and retries for as long as
# it takes, and a collector restarted meanwhile picks the queue up again. The defaults would drop it: an in-memory
# queue of 1,000 requests (exporterhelper v0.165.0 internal/queue_sender.go:37-43) and retries that give up after
# 5 minutes (configretry v1.71.0 generated_config.go:19-21, 78-80: "Once this value is reached, the data is
# discarded. If set to 0, the retries are never stopped"), while every source has already let its lines go (Talos
# once the TCP write succeeds, file_log's offsets as it reads). The queue is bounded in bytes of OTLP requests
# (the persistent queue counts them with its bytes sizer, internal/queue/persistent_queue.go:271-287); once full,
# new lines are refused and counted (otelcol_exporter_enqueue_failed_log_records), never the machine blocked.
QUEUE_BYTES = 256 * 1024 * 1024
TELEMETRY_PORT = 8888
PODS_LOG_DIR = "/var/log/pods"
# The label k3s gives a netbooted maia (plans.k3s.config: iluvatar/boot=netboot).
NETBOOT_LABEL = "iluvatar/boot"

VMALERT = "vmalert-logs"
VMALERT_VERSION = pins.APPS["vmalert"]
VMALERT_IMAGE = f"docker.io/victoriametrics/vmalert:{VMALERT_VERSION}"
VMALERT_PORT = 8880
ALERTMANAGER_URL = "http://alertmanager-main.monitoring.svc:9093"
# How often the log alerts look at the store, each at the lines of its own LOOKBACK ending 30 s before it runs
# (vmalert v1.151.0: `-rule.evalDelay` defaults to 30 s, rule/group.go:38).
EVALUATION_INTERVAL = "1m"

# Grafana's VictoriaLogs datasource plugin, installed by Grafana at its start, and the datasource's uid the dashboards use.
PLUGIN = "victoriametrics-logs-datasource"
PLUGIN_VERSION = pins.APPS["victoriametrics-logs-datasource"]
DATASOURCE_UID = "victorialogs"

# Talos applies both documents' changes without a reboot: ApplyConfiguration in AUTO mode (the upgrader's dry run)
# and NO_REBOOT (its apply) ask CanApplyImmediate (v1.12.4 internal/app/machined/internal/server/v1alpha1/
# v1alpha1_server.go:217-236; v1.13.0 line 242), which leaves `.machine.logging` out of its comparison and compares
# only the v1alpha1 document, not KmsgLogConfig (v1.12.4 internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go:119-200, line 176; v1.13.0 lines 130-211);
# machined swaps its log senders on the new config (v1alpha2_controller.go:567-569, 586-640) and the kmsg delivery
# restarts on the new KmsgLogConfig (controllers/runtime/kmsg_log_config.go:61-115, kmsg_log.go:167).
APPLY_WITHOUT_REBOOT = "log delivery (machine.logging, KmsgLogConfig): Talos applies it without a reboot"
KMSG_DOCUMENT = "iluvatar-logs"


def settings(stack: StackConfig) -> Logs:
    return stack.logs if stack.logs is not None else Logs()


def enabled(stack: StackConfig) -> bool:
    """Logs run with monitoring, unless `logs.enabled` is false (stacks.logs)."""
    return rules.enabled(stack.logs, stack.monitoring is not None)


def storage_class(stack: StackConfig) -> str:
    chosen = settings(stack).storage_class or default_class(stack, "arda")
    assert chosen is not None, "stacks.logs requires a StorageClass for the store"
    return chosen


def lan_address(stack: StackConfig) -> IPv4Address | None:
    """Where the Pis send (the store's LoadBalancer address), with the Ainur; None without."""
    return rules.address(settings(stack), stack.network) if stack.ainur is not None else None


def store_url(stack: StackConfig) -> str:
    """The store as its readers reach it: its Service on Arda, its query port."""
    return f"http://{STORE}.{NAMESPACE}.svc:{STORE_PORT}"


def insert_url(stack: StackConfig, cluster: str = "arda") -> str:
    """Where a cluster's writers send: the inserter's port, at the store's Service on Arda, its LAN address from the Ainur."""
    if cluster == "arda":
        return f"http://{STORE}.{NAMESPACE}.svc:{INSERT_PORT}"
    return f"http://{lan_address(stack)}:{INSERT_PORT}"


def _meta(name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {**MANAGED_BY, "app.kubernetes.io/name": name, **labels}}


# --- Talos: where each machine sends its logs ------------------------------------------------------------


def talos_cluster(stack: StackConfig) -> str:
    """Whose collectors receive Talos's logs: the Ainur's, off every Arda machine and off Arda itself, so a machine
    whose kubelet, containerd or collector pod is down (a boot that stops before Kubernetes, an upgrade's reboot, a
    kubelet that cannot start) still gets its service logs and kernel messages out; Arda's only without the Ainur."""
    return "ainur" if stack.ainur is not None else "arda"


def talos_host(stack: StackConfig) -> IPv4Address:
    """Where Talos sends: the Ainur's service address (kube-vip holds it on one Pi, whose collector listens on every
    address of the host), or, without the Ainur, Arda's VIP (a control plane holds it; its collector receives)."""
    return stack.ainur.service_ip if stack.ainur is not None else stack.arda.vip


def talos_logging(stack: StackConfig, machine: str | None) -> dict[str, Any]:
    """`machine.logging`: the services' logs as JSON lines over TCP to the Talos collector (`talos_host`), one
    destination (Talos sends every event to every destination: two would store each line twice), tagged with the
    machine's name (`extraTags`, added to every event's JSON, v1.12.4 sender_jsonlines.go:61-63; a generic worker,
    nameless in the inventory, is named by its address at the collector) ({} without logs)."""
    if not enabled(stack):
        return {}
    destination: dict[str, Any] = {"endpoint": f"tcp://{talos_host(stack)}:{SERVICE_PORT}/", "format": "json_lines"}
    if machine is not None:
        destination["extraTags"] = {MACHINE_TAG: machine}
    return {"destinations": [destination]}


def kmsg_document(stack: StackConfig) -> list[dict[str, Any]]:
    """The KmsgLogConfig document: the kernel's messages likewise, on their own port ([] without logs). It has only a
    `url` (v1.12.4 pkg/machinery/config/types/runtime/kmsg_log.go:66), so no tag: the collector names the machine from
    the connection's source address (`machine_by_address`)."""
    if not enabled(stack):
        return []
    return [{"apiVersion": "v1alpha1", "kind": "KmsgLogConfig", "name": KMSG_DOCUMENT, "url": f"tcp://{talos_host(stack)}:{KERNEL_PORT}/"}]


def machine_by_address(stack: StackConfig) -> dict[str, str]:
    """The inventory's Arda machines by address: the name of the machine a kernel line's connection came from."""
    return {str(n.ip): n.name for n in stack.arda_nodes}


# --- The store ---------------------------------------------------------------------------------------------


def retention_bytes(stack: StackConfig) -> int:
    """What the store may keep: RETENTION_SHARE of `logs.size`, in bytes, the bound the preview's fit check assumes.

    An absolute bound, not `-retention.maxDiskUsagePercent`: that one is a share of the *whole filesystem* holding
    -storageDataPath (VictoriaLogs v1.52.1 lib/logstorage/storage.go:835-839, `fs.MustGetTotalSpace`), and on
    local-path (a folder of the Talos user volume) or nfs (a subDir of the NAS share) that filesystem is not the
    claim, so `logs.size` would bound nothing. `-retention.maxDiskSpaceUsageBytes` (app/vlstorage/main.go:36, the
    two are mutually exclusive, main.go:126-127) is compared with the store's own partitions (storage.go:833-834,
    849-852) on every class. The store still keeps its last two days whatever their size (storage.go:855-858).
    """
    return round(int(settings(stack).size.removesuffix("Gi")) * 1024**3 * rules.RETENTION_SHARE)


def store_args(stack: StackConfig) -> list[str]:
    """The store's flags. `-futureRetention=1d`, the least the store allows (VictoriaLogs v1.52.1
    lib/logstorage/storage.go:633 raises anything lower to 24h): it takes lines up to the day of now+futureRetention
    (storage.go:1071-1073, 1178-1186), and its byte bound always keeps the two newest per-day partitions and drops every
    older one (storage.go:855-880). With the default 2d (app/vlstorage/main.go:39), a writer's burst stamped tomorrow
    and the day after would be those two, and the bound would drop today's lines, and each new part of today, until
    those days came; with 1d the two kept are tomorrow and today."""
    logs = settings(stack)
    return [
        f"-storageDataPath={STORE_DATA}",
        f"-retentionPeriod={logs.retention}",
        "-futureRetention=1d",
        f"-retention.maxDiskSpaceUsageBytes={retention_bytes(stack)}",
        f"-httpListenAddr=:{STORE_PORT}",
        "-loggerFormat=json",
        *(f"-{flag}=file://{AUTH_DIR}/{AUTH_KEY}" for flag in STORE_AUTH_FLAGS),
    ]


def inserter_args() -> list[str]:
    """The inserter: VictoriaLogs with a storage node (app/vlstorage/main.go:69, 109-114: it stores nothing itself
    and sends every insert to the store's /internal/insert, netinsert/netinsert.go:229-256, on the pod's loopback),
    no queries (`-select.disable`: /select/* and /internal/select/*, app/vlselect/main.go:34, 115-145) and no
    internal inserts, only the collectors' /insert/* (app/vlinsert/main.go:25-26, 53-59). Its partition, merge and
    new-streams endpoints answer nothing without a local storage (app/vlstorage/main.go:272, 295, 334 and each
    after); what it still answers (/health, /metrics, /flags, /internal/force_flush, which sends its pending rows early)
    reads no line and changes none. Its /debug/pprof (a CPU profile or a trace on demand, costing CPU in the store's
    pod) asks for the store's key, read from the same file (`INSERTER_AUTH_FLAGS`): without a key it answers every
    writer (VictoriaMetrics lib/httpserver/httpserver.go:468-475, 497-501). The file is in the inserter's container
    then: code run inside it, which already reads every line (the store's queries on the shared loopback take no key),
    would gain the store's admin calls too; a writer's request reaches no file. While the store is away it keeps what
    it took in memory and retries every second (netinsert.go:200-226): the collectors' disk queues hold the rest."""
    return [
        f"-httpListenAddr=:{INSERT_PORT}",
        f"-storageNode=127.0.0.1:{STORE_PORT}",
        "-select.disable",
        "-internalinsert.disable",
        "-loggerFormat=json",
        *(f"-{flag}=file://{AUTH_DIR}/{AUTH_KEY}" for flag in INSERTER_AUTH_FLAGS),
    ]


def auth_secret(key: str) -> dict[str, Any]:
    """The Secret holding the store's admin key (`STORE_AUTH_FLAGS`, `INSERTER_AUTH_FLAGS`), mounted as a file in the
    store's and the inserter's containers."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(AUTH_SECRET),
        "type": "Opaque",
        "stringData": {AUTH_KEY: key},
    }


def store(stack: StackConfig) -> list[dict[str, Any]]:
    """The store's StatefulSet, its inserter beside it, and its Service in the cluster."""
    labels = {"app.kubernetes.io/name": STORE}
    hardened = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    container = {
        "name": STORE,
        "image": STORE_IMAGE,
        "args": store_args(stack),
        "ports": [{"name": "http", "containerPort": STORE_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": hardened,
        "volumeMounts": [{"name": "data", "mountPath": STORE_DATA}, {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}],
    }
    inserter = {
        "name": INSERTER,
        "image": STORE_IMAGE,
        "args": inserter_args(),
        "ports": [{"name": "insert", "containerPort": INSERT_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "insert"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": hardened,
        "volumeMounts": [{"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}],
    }
    claim = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class(stack),
            "resources": {"requests": {"storage": settings(stack).size}},
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(STORE),
            "spec": {
                "serviceName": STORE,
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        # Neither the store nor its inserter calls the Kubernetes API: no account token in the pod.
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534},
                        "containers": [container, inserter],
                        "volumes": [{"name": "auth", "secret": {"secretName": AUTH_SECRET, "defaultMode": 0o440}}],
                    },
                },
                "volumeClaimTemplates": [claim],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(STORE),
            "spec": {
                "selector": labels,
                "ports": [
                    {"name": "http", "port": STORE_PORT, "targetPort": "http", "protocol": "TCP"},
                    {"name": "insert", "port": INSERT_PORT, "targetPort": "insert", "protocol": "TCP"},
                ],
            },
        },
    ]


def store_lan_service(stack: StackConfig) -> dict[str, Any] | None:
    """The store's inserter on the LAN for the Pis (with the Ainur): their journals and their pods' logs, from their
    addresses only. Its query port is not on the LAN."""
    address = lan_address(stack)
    if address is None:
        return None
    # No NodePort: the Pis' pods are kept from the store's address by their Pi (talos_firewall's `pods` chain), and a
    # NodePort on every Arda machine would be another address of the store, where a Pi's pod arrives masqueraded to its
    # Pi's address, inside the source ranges (Cilium v1.18.4 checks them on every frontend of the Service,
    # pkg/loadbalancer/reconciler/bpf_reconciler.go:829). `load_balancer` also releases the NodePort an older Service
    # holds (each port's `nodePort: 0`).
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_meta(STORE_LAN), "annotations": {"lbipam.cilium.io/ips": str(address)}},
        "spec": netpol.load_balancer(
            [{"name": "insert", "port": INSERT_PORT, "targetPort": "insert", "protocol": "TCP"}],
            selector={"app.kubernetes.io/name": STORE},
            loadBalancerSourceRanges=[f"{n.ip}/32" for n in stack.ainur_nodes],
        ),
    }


# Who reads the store, all in NAMESPACE on Arda: Grafana (its datasource), vmalert (the log alerts) and Prometheus (the
# store's own metrics, `service_monitor`), by the labels kube-prometheus v0.18.0 gives their pods
# (manifests/grafana-deployment.yaml:26, prometheus-prometheus.yaml:28: app.kubernetes.io/name; their own NetworkPolicies allow all egress) and vmalert's.
READERS = ("grafana", VMALERT, "prometheus")


def store_network_policies(stack: StackConfig) -> list[dict[str, Any]]:
    """The store admits its readers and its writers and nothing else: any other pod on Arda could read every machine's
    logs, insert lines or flood it until the oldest-first eviction drops real history and the log alerts.

    - The readers (`READERS`): a NetworkPolicy, pod to pod, on the query port (`STORE_PORT`) alone.
    - The writers, on the inserter's port (`INSERT_PORT`) alone, where nothing is read or managed, are the collectors, on the host's network of every Arda machine, and the Pis (their journals and their
      collectors, through the LAN Service `store_lan_service`). A NetworkPolicy cannot name a host-network pod: Cilium
      gives its traffic the `host` identity (its own machine) or `remote-node` (another), which an ipBlock does not
      match unless Cilium runs with `policy-cidr-match-mode: nodes` (docs.cilium.io, Network Policy, "ipBlock can now
      optionally select node IPs"). A CiliumNetworkPolicy names them by entity (`fromEntities`), and the Pis by
      address: a Pi's packet reaches the pod with its own address when the store runs on the machine that took it,
      else masqueraded to that machine's (remote-node), as Cilium's kube-proxy replacement forwards a LoadBalancer
      Service's traffic (externalTrafficPolicy Cluster). So every host-network pod of Arda may write too: the
      threat model (docs/security.md) lists it.

    Cilium admits the pod's own machine on every port (`allow-localhost`, the kubelet's probes, plans.netpol): a
    host-network pod on the store's machine reaches the query port too."""
    labels = {"app.kubernetes.io/name": STORE}
    port = {"port": STORE_PORT, "protocol": "TCP"}
    readers = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(STORE),
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}} for name in READERS], "ports": [port]}],
        },
    }
    to_port = [{"ports": [{"port": str(INSERT_PORT), "protocol": "TCP"}]}]
    writers: list[dict[str, Any]] = [{"fromEntities": ["host", "remote-node"], "toPorts": to_port}]
    if stack.ainur is not None:
        writers.append({"fromCIDR": [f"{n.ip}/32" for n in stack.ainur_nodes], "toPorts": to_port})
    return [
        readers,
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": _meta(f"{STORE}-writers"),
            "spec": {"endpointSelector": {"matchLabels": labels}, "ingress": writers},
        },
    ]


def vmalert_network_policy() -> dict[str, Any]:
    """vmalert's listener (its own metrics and its rules' state) admits Prometheus only."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(VMALERT),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": VMALERT}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
                    "ports": [{"port": VMALERT_PORT, "protocol": "TCP"}],
                }
            ],
        },
    }


def service_monitor() -> dict[str, Any]:
    """Prometheus scrapes the store: how much it keeps a day is what `logs.dailyVolume` should say."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(STORE),
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": STORE}}, "endpoints": [{"port": "http", "interval": "30s"}]},
    }


AINUR_COLLECTORS = f"ainur-{COLLECTOR}"


def monitors(stack: StackConfig) -> list[dict[str, Any]]:
    """What Prometheus scrapes of the pipeline besides the store: each collector's own metrics (its queue, its drops),
    Arda's by a PodMonitor, the Pis' at their addresses (Arda's Prometheus, as their node-exporter), each with its
    `machine`; and vmalert's (a Service for it), so a log pipeline that stops alerts (`pipeline_alerts`)."""
    machine = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "machine"}]
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": _meta(COLLECTOR),
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": COLLECTOR}},
                "podMetricsEndpoints": [{"port": "metrics", "interval": "30s", "relabelings": machine}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta(VMALERT),
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": VMALERT}}, "endpoints": [{"port": "http", "interval": "30s"}]},
        },
    ]
    if stack.ainur is not None:
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1alpha1",
                "kind": "ScrapeConfig",
                "metadata": _meta(AINUR_COLLECTORS),
                "spec": {
                    "jobName": AINUR_COLLECTORS,
                    "scrapeInterval": "30s",
                    "staticConfigs": [
                        {"targets": [f"{n.ip}:{TELEMETRY_PORT}"], "labels": {"machine": n.name, "cluster": "ainur"}}
                        for n in stack.ainur_nodes
                        # A netbooted maia runs no collector (`collector`): no target to find down.
                        if n.boot != "netboot"
                    ],
                },
            }
        )
    return out


# The collector's own metrics at v0.165.0 (exporterhelper internal/metadata/generated_telemetry.go: queue_size,
# enqueue_failed_log_records, send_failed_log_records; no `_total`, the distribution's telemetry defaults).
_EXPORTER = 'exporter="otlp_http/store"'
_COLLECTORS = f'job=~"{NAMESPACE}/{COLLECTOR}|{AINUR_COLLECTORS}"'


def _dropped(counter: str) -> str:
    """A failure counter that grew in the last 10 minutes, or was born in them: exporterhelper v0.165.0 creates it at
    the first failure, with the failed count as its first value (internal/obs_report_sender.go:118-121 only `if
    numFailedToSend > 0`, a series per failure's attributes; internal/queue/obs_queue.go:68-70 only `if err != nil`),
    and `increase` counts no first sample, so a one-off drop (the store refusing a batch) would never alert."""
    series = f"{counter}{{{_COLLECTORS},{_EXPORTER}}}"
    return f"increase({series}[10m]) > 0 or ({series} > 0 unless {series} offset 10m)"


# The store's own gauges (VictoriaLogs v1.52.1 app/vlstorage/main.go:676-690, 732-733): vl_storage_is_read_only is 1
# once free space at -storageDataPath is under -storage.minFreeDiskSpaceBytes (main.go:56, 10 MB), when every write is
# answered 429 (main.go:524-538); vl_max_disk_space_usage_bytes is -retention.maxDiskSpaceUsageBytes (written only when
# set, main.go:680-682); vl_data_size_bytes is what the store keeps (indexdb and parts); vl_free_disk_space_bytes and
# vl_total_disk_space_bytes are the filesystem's (main.go:683-684), shared on local-path and nfs.
_STORE_SERIES = f'{{}}{{{{job="{STORE}",namespace="{NAMESPACE}"}}}}'


def pipeline_alerts(stack: StackConfig) -> list[Alert]:
    """Prometheus's alerts on the log pipeline itself, each naming the machine or the pod: without them a store or a
    collector that stops makes every log alert fall silent, and nobody hears of it."""
    return [
        Alert(
            "LogStoreDown",
            f'up{{job="{STORE}",namespace="{NAMESPACE}"}} == 0 or absent(up{{job="{STORE}",namespace="{NAMESPACE}"}})',
            "10m",
            "critical",
            "The log store is down",
            f"Prometheus has not reached VictoriaLogs ({NAMESPACE}/{STORE}-0) for 10 minutes: no machine's lines are stored "
            "(each collector queues them) and no log alert can fire. "
            f"`kubectl -n {NAMESPACE} describe pod {STORE}-0` says why.",
        ),
        Alert(
            "LogStoreReadOnly",
            f"{_STORE_SERIES.format('vl_storage_is_read_only')} == 1",
            None,
            "critical",
            "The log store is full and refuses every line",
            "VictoriaLogs has less than 10 MB free on its volume's filesystem (`-storage.minFreeDiskSpaceBytes`) and "
            "refuses every line with 429 until it frees room: the collectors queue and then drop them. Its byte bound "
            "(80 % of logs.size) never drops the newest two days, so a log storm can fill it. Find the storm "
            "(Grafana's logs dashboard, the machine or pod with the most lines), stop it, then free room: the store "
            "frees a day once it is the third newest, or grow its claim (docs/day2.md#the-log-stores-size-or-class). "
            "On local-path or nfs the filesystem is shared: other apps' volumes are full too.",
        ),
        Alert(
            "LogStoreFilling",
            f"(sum without (type) ({_STORE_SERIES.format('vl_data_size_bytes')}) > ignoring (path) "
            f"{_STORE_SERIES.format('vl_max_disk_space_usage_bytes')}) "
            f"or ({_STORE_SERIES.format('vl_free_disk_space_bytes')} / {_STORE_SERIES.format('vl_total_disk_space_bytes')} < 0.1)",
            "15m",
            "warning",
            "The log store is filling its filesystem",
            "VictoriaLogs keeps more than its bound (80 % of logs.size: its newest two days alone are larger, a log "
            "storm), or the filesystem holding it has less than 10 % free. Once less than 10 MB is free it refuses every "
            "line (LogStoreReadOnly), and on local-path or nfs the filesystem is shared with other apps' volumes. Find the "
            "storm on Grafana's logs dashboard and stop it; if the rate is real, grow the store "
            "(docs/day2.md#the-log-stores-size-or-class).",
        ),
        Alert(
            "LogCollectorDown",
            f"up{{{_COLLECTORS}}} == 0",
            "10m",
            "warning",
            "The log collector on {{ $labels.machine }} is down",
            "Prometheus has not reached the log collector on {{ $labels.machine }} for 10 minutes: its pods' (and, on "
            "the machine holding Talos's address, Talos's) lines are not collected. "
            f"`kubectl -n {NAMESPACE} get pods -o wide -l app.kubernetes.io/name={COLLECTOR}`.",
        ),
        Alert(
            "LogCollectorStalled",
            f"min_over_time(otelcol_exporter_queue_size{{{_COLLECTORS},{_EXPORTER}}}[15m]) > 0",
            None,
            "warning",
            "The log collector on {{ $labels.machine }} cannot reach the store",
            "The collector on {{ $labels.machine }} has not emptied its queue for 15 minutes: the store is down or "
            "unreachable from that machine. Its lines wait on its disk (up to 256 MiB), and arrive when the store answers.",
        ),
        Alert(
            "LogCollectorDropping",
            " or ".join(_dropped(f"otelcol_exporter_{c}_failed_log_records") for c in ("enqueue", "send")),
            None,
            "critical",
            "The log collector on {{ $labels.machine }} is dropping lines",
            "The collector on {{ $labels.machine }} dropped lines in the last 10 minutes: its queue is full (the store has "
            "been away too long) or the store refuses them. Its log says why: "
            f"`kubectl -n {NAMESPACE} logs -l app.kubernetes.io/name={COLLECTOR} --field-selector spec.nodeName={{{{ $labels.machine }}}}`.",
        ),
        Alert(
            "LogAlertsDown",
            f'up{{job="{VMALERT}"}} == 0 or absent(up{{job="{VMALERT}"}}) or increase(vmalert_execution_errors_total{{job="{VMALERT}"}}[10m]) > 0',
            "10m",
            "critical",
            "The log alerts are not evaluated",
            f"vmalert ({NAMESPACE}/{VMALERT}) is down or cannot query the store: no log alert fires. "
            f"`kubectl -n {NAMESPACE} logs deploy/{VMALERT}` says why.",
        ),
    ]


# --- The collector ------------------------------------------------------------------------------------------


def _talos_receiver(stack: StackConfig, port: int, service: str | None) -> dict[str, Any]:
    """A tcp_log receiver of Talos's JSON lines, on every address of the host (Talos reaches the Pi or control plane
    holding `talos_host`): the fields parsed, `msg` the body, `talos-time` the time, `talos-level` the severity, the
    service (`talos-service`, or `service` for the kernel) and the machine resource attributes. The machine is its
    `extraTags` name where the line has one, else the inventory's name for the connection's source address (tcp input
    v0.165.0 pkg/stanza/operator/input/tcp/input.go:295-300, `add_attributes`: `net.peer.ip`), else that address (a
    generic worker, or a machine the inventory does not know)."""
    by_address = json.dumps(machine_by_address(stack), sort_keys=True)
    tag = f'attributes["{MACHINE_TAG}"]'
    operators: list[dict[str, Any]] = [
        {
            "type": "json_parser",
            # Go's time.RFC3339Nano, which Talos formats `talos-time` with (sender_jsonlines.go:58).
            "timestamp": {"parse_from": 'attributes["talos-time"]', "layout_type": "gotime", "layout": "2006-01-02T15:04:05.999999999Z07:00"},
            "severity": {"parse_from": 'attributes["talos-level"]'},
        },
        {"type": "move", "from": "attributes.msg", "to": "body"},
        # expr-lang v1.17.8 (the collector's): `??` takes the right side when the left is nil (a missing key).
        {
            "type": "add",
            "field": 'resource["machine"]',
            "value": f'EXPR({tag} ?? {by_address}[attributes["net.peer.ip"]] ?? attributes["net.peer.ip"])',
        },
        {"type": "remove", "field": tag, "if": f"{tag} != nil"},
    ]
    # The connection's attributes are the machine's name now: not stored with every line.
    operators += [{"type": "remove", "field": f'attributes["{a}"]'} for a in _PEER_ATTRIBUTES]
    if service is None:
        operators.append({"type": "move", "from": 'attributes["talos-service"]', "to": 'resource["service"]'})
    else:
        operators.append({"type": "add", "field": 'resource["service"]', "value": service})
    return {"listen_address": f"0.0.0.0:{port}", "add_attributes": True, "operators": operators}


# What `add_attributes` adds to each entry (tcp input v0.165.0 input.go:294-306).
_PEER_ATTRIBUTES = ("net.transport", "net.peer.ip", "net.peer.port", "net.peer.name", "net.host.ip", "net.host.port", "net.host.name")


def collector_config(stack: StackConfig, cluster: str) -> dict[str, Any]:
    """The collector's config on one cluster's machines: Talos's two receivers on Arda, the pods' files on both."""
    talos: dict[str, Any] = {}
    if cluster == talos_cluster(stack):
        talos["tcp_log/talos-services"] = _talos_receiver(stack, SERVICE_PORT, None)
        talos["tcp_log/talos-kernel"] = _talos_receiver(stack, KERNEL_PORT, "kernel")
    receivers: dict[str, Any] = {}
    receivers["file_log/pods"] = {
        # The kubelet's layout: <namespace>_<pod>_<uid>/<container>/<restarts>.log (kubernetes v1.34.1
        # pkg/kubelet/kuberuntime/helpers.go BuildContainerLogsDirectory), CRI lines in each.
        "include": [f"{PODS_LOG_DIR}/*/*/*.log"],
        "start_at": "beginning",
        "include_file_path": True,
        "storage": OFFSETS,
        # The container parser reads the CRI format (and joins its partial lines) and takes the namespace, pod and
        # container from the path as resource attributes; the container is the line's service.
        "operators": [
            {"type": "container", "format": "containerd"},
            {"type": "copy", "from": 'resource["k8s.container.name"]', "to": 'resource["service"]'},
        ],
    }
    return {
        "extensions": {
            OFFSETS: {"directory": CHECKPOINTS, "create_directory": True, "recreate": True, "fsync": FSYNC[OFFSETS][cluster]},
            # file_log's offsets, and the sending queue (up to QUEUE_BYTES) in a file of its own (FSYNC).
            QUEUE: {"directory": CHECKPOINTS, "create_directory": True, "recreate": True, "fsync": FSYNC[QUEUE][cluster]},
        },
        "receivers": receivers | talos,
        "processors": {
            # Talos's lines are Arda's, each named by its machine (its receiver), whichever collector receives them.
            **({"resource/talos": {"attributes": [{"key": "cluster", "value": "arda", "action": "upsert"}]}} if talos else {}),
            "resource/machine": {
                "attributes": [
                    {"key": "cluster", "value": cluster, "action": "upsert"},
                    {"key": "machine", "value": "${env:NODE_NAME}", "action": "upsert"},
                ]
            },
            "batch": {"timeout": "1s"},
        },
        "exporters": {
            "otlp_http/store": {
                "logs_endpoint": f"{insert_url(stack, cluster)}{OTLP_PATH}",
                "headers": {"VL-Stream-Fields": ",".join(STREAM_FIELDS)},
                "sending_queue": {"storage": QUEUE, "sizer": "bytes", "queue_size": QUEUE_BYTES},
                "retry_on_failure": {"enabled": True, "max_elapsed_time": "0s"},
            }
        },
        "service": {
            # The collector's own metrics (its queue, its failed sends) on the machine's address, for Prometheus; the
            # distribution's defaults otherwise (service v0.165.0 telemetry/otelconftelemetry/factory.go:49-62: no
            # scope info, units or type suffix, so a counter has no `_total`).
            "telemetry": {
                "metrics": {
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "${env:NODE_IP}",
                                        "port": TELEMETRY_PORT,
                                        "without_scope_info": True,
                                        "without_units": True,
                                        "without_type_suffix": True,
                                    }
                                }
                            }
                        }
                    ]
                }
            },
            "extensions": [OFFSETS, QUEUE],
            "pipelines": {
                "logs": {"receivers": list(receivers), "processors": ["resource/machine", "batch"], "exporters": ["otlp_http/store"]},
                **(
                    {"logs/talos": {"receivers": list(talos), "processors": ["resource/talos", "batch"], "exporters": ["otlp_http/store"]}}
                    if talos
                    else {}
                ),
            },
        },
    }


def collector(stack: StackConfig, cluster: str) -> list[dict[str, Any]]:
    """The collector on every machine of `cluster`: its config and its DaemonSet (the host's network, so Talos
    reaches it at the address the machine holds; root, to read the pods' log files)."""
    labels = {"app.kubernetes.io/name": COLLECTOR}
    data = {"config.yaml": yamltext.dump(collector_config(stack, cluster))}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(COLLECTOR), "data": data}
    container = {
        "name": COLLECTOR,
        "image": COLLECTOR_IMAGE,
        "args": ["--config=/etc/otelcol/config.yaml"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            # The host's network: the pod's address is the machine's, where Prometheus scrapes the collector.
            {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"name": "metrics", "containerPort": TELEMETRY_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/otelcol", "readOnly": True},
            {"name": "pods", "mountPath": PODS_LOG_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": CHECKPOINTS},
        ],
    }
    pod: dict[str, Any] = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        # Root on every machine's host network, and it reads no Kubernetes object (the pod's name and namespace come
        # from its log file's path, the machine's from the downward API): no account token, so that a role given
        # one day to the namespace's default account is not every host's.
        "automountServiceAccountToken": False,
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
        "initContainers": [
            {
                "name": "backups",
                "image": f"{BUSYBOX_IMAGE[0]}:{BUSYBOX_IMAGE[1]}",
                "command": ["find", CHECKPOINTS, "-maxdepth", "1", "-name", BACKUPS, "-type", "f", "-delete"],
                "securityContext": container["securityContext"],
                "volumeMounts": [{"name": "checkpoints", "mountPath": CHECKPOINTS}],
            }
        ],
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": COLLECTOR}},
            {"name": "pods", "hostPath": {"path": PODS_LOG_DIR}},
            {"name": "checkpoints", "hostPath": {"path": CHECKPOINTS, "type": "DirectoryOrCreate"}},
        ],
    }
    if cluster == "ainur":
        # Never on a netbooted maia: whoever takes its address reads and writes its root, so owns what runs there, and a
        # collector there would hold what the Ainur's Talos receivers take from Arda (the service address can move to
        # any Pi running one) and run as root on the host's network. Its own pods' logs are none to collect: the
        # maia's taint (plans.k3s.NETBOOT_TAINT) keeps every other pod off it; its journal goes on through
        # journald's forwarder. The toleration of everything stays (a Pi with a disk-pressure or a cordon taint keeps
        # its collector): the affinity, not a list of tolerations, is what excludes the maia, whatever its taints.
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": NETBOOT_LABEL, "operator": "NotIn", "values": ["netboot"]}]}]
                }
            }
        }
    return [
        config,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta(COLLECTOR),
            "spec": {
                "selector": {"matchLabels": labels},
                # A new config rolls the collectors (its digest in the template).
                "template": {
                    "metadata": {"labels": labels, "annotations": {"iluvatar.dev/config-digest": gitops.values_digest(data)}},
                    "spec": pod,
                },
            },
        },
    ]


# --- The Pis' journals ---------------------------------------------------------------------------------------

JOURNAL_UPLOAD_CONF = "/etc/systemd/journal-upload.conf"
# systemd-journal-upload exits on a failed upload (journal-upload.c: perform_upload returns -EIO, run() returns it);
# its unit restarts it on failure 100 ms later, 5 times in 10 s at most (systemd's defaults, the unit sets no
# RestartSec= nor start limit: units/systemd-journal-upload.service.in), then leaves it failed for good: a store
# refusing for a second (a restart, a power cut the Pis outlive) would end the forwarding until a reboot.
JOURNAL_UPLOAD_DROP_IN = "/etc/systemd/system/systemd-journal-upload.service.d/iluvatar.conf"
JOURNAL_UPLOAD_RESTART = "[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nRestart=always\nRestartSec=30s\n"
JOURNAL_UPLOAD_PACKAGE = "systemd-journal-remote"
# The journal step's own SSH bound. It runs after the Pi's join (the Pi is up), and its delete runs when logs are turned
# off, a Pi is removed or rebuilt: with the Pis' shared bound (plans.k3s.SSH_DIAL_ATTEMPTS, for a Pi still booting) a
# Pi that is off would hold every such `up` for about 20 minutes. pulumi-command v1.2.1 dials limit + 1 times
# (provider/pkg/provider/remote/connection.go:150-187, `dials > dialErrorLimit`), each bounded by perDialTimeout
# (connection.go:104), with pulumi sdk v3.224.0's retry.Until delays between them (go/common/util/retry/until.go:40-42:
# 100 ms, x1.5, at most 5 s): 4 dials of 15 s, about a minute, then "after 3 failed attempts: dial tcp <ip>:22: ...",
# under the step's name, which names the Pi (docs/day2.md#the-log-stores-size-or-class, for a Pi that is down).
JOURNAL_DIAL_ATTEMPTS = 3
JOURNAL_DIAL_SECONDS = 15


def journal_upload_conf(stack: StackConfig) -> str:
    """systemd-journal-upload's config: the store's journald endpoint on the LAN (it posts to <URL>/upload)."""
    return f"[Upload]\nURL={insert_url(stack, 'ainur')}{JOURNALD_PATH}\n"


# The Pis admit Talos's two ports only from the inventory's Arda machines (review M2): the receivers name a line by
# its own `machine` field, so anything else on the LAN could otherwise write into the store under any machine's name
# (a false DiskIOError, a silence hidden, the store filled). A table of its own (nftables: every base chain on the
# input hook sees the packet, and a drop in any is final), so k3s's and kube-proxy's rules are left alone; loaded
# again at boot by a unit before the network is up. Machines that netboot as generic workers (not in the inventory)
# are refused too: their Talos lines are not collected.
TALOS_FIREWALL = "/etc/iluvatar/talos-logs.nft"
TALOS_FIREWALL_UNIT = "/etc/systemd/system/iluvatar-talos-logs-firewall.service"
TALOS_FIREWALL_TABLE = "iluvatar_talos_logs"


def talos_firewall(stack: StackConfig) -> str:
    """The nftables ruleset: replaced whole and at once (the empty table made, deleted, made again in one file).

    Its `pods` chain keeps the Pi's pods from the store's LAN address. The store admits the Pis' addresses, for their
    journals and their collectors (host processes, host network), and k3s' flannel masquerades a pod's packets leaving
    the cluster's network to the Pi's address (plans.netpol): without the chain any pod of the Ainur would write to the
    store, or flood it until its oldest-first eviction dropped real history. On the prerouting hook at the raw
    priority a pod's packet still has its pod address (flannel masquerades at postrouting), and a host process's
    packets never pass prerouting (they leave by output)."""
    arda = ", ".join(sorted(machine_by_address(stack), key=lambda a: IPv4Address(a)))
    store = lan_address(stack)
    assert store is not None, "the Pis' steps exist only with the Ainur"
    return f"""table inet {TALOS_FIREWALL_TABLE} {{}}
delete table inet {TALOS_FIREWALL_TABLE}
table inet {TALOS_FIREWALL_TABLE} {{
  set arda {{
    type ipv4_addr
    elements = {{ {arda} }}
  }}
  chain input {{
    type filter hook input priority filter - 1; policy accept;
    tcp dport {{ {SERVICE_PORT}, {KERNEL_PORT} }} ip saddr != @arda drop
    tcp dport {{ {SERVICE_PORT}, {KERNEL_PORT} }} meta nfproto ipv6 drop
  }}
  chain pods {{
    type filter hook prerouting priority raw; policy accept;
    ip saddr {POD_CIDR} ip daddr {store} drop
  }}
}}
"""


TALOS_FIREWALL_SERVICE = f"""[Unit]
Description=iluvatar: Talos's log ports only from Arda's machines
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {TALOS_FIREWALL}

[Install]
WantedBy=sysinit.target
"""


def journal_upload_script(stack: StackConfig, node: Node) -> str:
    """What `pulumi up` runs on each Pi over SSH: Talos's log ports closed to all but Arda's machines
    (talos_firewall), then journald's forwarder installed, pointed at the store, started, and seen active within a
    bound."""
    conf = journal_upload_conf(stack)
    return f"""set -eu
if ! command -v nft >/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y nftables
fi
sudo mkdir -p {TALOS_FIREWALL.rsplit("/", 1)[0]}
printf '%s' '{talos_firewall(stack)}' | sudo tee {TALOS_FIREWALL} >/dev/null
printf '%s' '{TALOS_FIREWALL_SERVICE}' | sudo tee {TALOS_FIREWALL_UNIT} >/dev/null
sudo systemctl daemon-reload
sudo systemctl enable iluvatar-talos-logs-firewall.service
sudo nft -f {TALOS_FIREWALL}
if ! dpkg-query -W -f='${{Status}}' {JOURNAL_UPLOAD_PACKAGE} 2>/dev/null | grep -q 'install ok installed'; then
  sudo DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y {JOURNAL_UPLOAD_PACKAGE}
fi
printf '%s' '{conf}' | sudo tee {JOURNAL_UPLOAD_CONF} >/dev/null
sudo mkdir -p {JOURNAL_UPLOAD_DROP_IN.rsplit("/", 1)[0]}
printf '%s' '{JOURNAL_UPLOAD_RESTART}' | sudo tee {JOURNAL_UPLOAD_DROP_IN} >/dev/null
sudo systemctl daemon-reload
sudo systemctl enable systemd-journal-upload.service
sudo systemctl restart systemd-journal-upload.service
for _ in $(seq 30); do
  systemctl is-active --quiet systemd-journal-upload.service && exit 0
  sleep 2
done
echo "iluvatar: {node.name}: systemd-journal-upload was not active within 60 s; look with: sudo journalctl -u systemd-journal-upload" >&2
exit 1
"""


def journal_upload_delete_script(node: Node) -> str:
    """What the Pi's step runs when it is deleted (logs turned off, the Pi removed) or replaced (a rebuilt Pi, where
    it runs first, on the new card, and finds nothing): everything journal_upload_script did, undone. The forwarder
    stopped and disabled, its config and drop-in removed; Talos's firewall unit disabled, its unit and ruleset
    removed and its table deleted (stopping a oneshot unit with no ExecStop= leaves the table loaded). The packages
    stay (systemd-journal-remote and nftables do nothing unless enabled). Each part only if present, so a second run,
    or a run on a card the create never reached, succeeds."""
    firewall = TALOS_FIREWALL_UNIT.rsplit("/", 1)[1]
    return f"""set -eu
if dpkg-query -W -f='${{Status}}' {JOURNAL_UPLOAD_PACKAGE} 2>/dev/null | grep -q 'install ok installed'; then
  sudo systemctl disable --now systemd-journal-upload.service
fi
sudo rm -f {JOURNAL_UPLOAD_CONF} {JOURNAL_UPLOAD_DROP_IN}
drop_in={JOURNAL_UPLOAD_DROP_IN.rsplit("/", 1)[0]}
if sudo test -d "$drop_in"; then
  sudo rmdir --ignore-fail-on-non-empty "$drop_in"
fi
if sudo test -e {TALOS_FIREWALL_UNIT}; then
  sudo systemctl disable --now {firewall}
fi
sudo rm -f {TALOS_FIREWALL_UNIT} {TALOS_FIREWALL}
sudo systemctl daemon-reload
if command -v nft >/dev/null && sudo nft list table inet {TALOS_FIREWALL_TABLE} >/dev/null 2>&1; then
  sudo nft delete table inet {TALOS_FIREWALL_TABLE}
fi
if systemctl is-active --quiet systemd-journal-upload.service; then
  echo "iluvatar: {node.name}: systemd-journal-upload is still active after it was disabled; look with: sudo systemctl status systemd-journal-upload" >&2
  exit 1
fi
"""


# --- Alerts ---------------------------------------------------------------------------------------------------


# Each log alert looks at the lines stamped within LOOKBACK of its evaluation (its own `_time` filter: vmalert then
# adds none, rule/recording.go:340-349), not only within the evaluation interval it would get otherwise
# (datasource/client_vlogs.go:17-22): a line the store ingests late (the collector's batch, a queue draining after
# an outage, a loaded machine) is still counted. A line keeps its alert firing for that long.
LOOKBACK = "5m"
# A machine whose collector has sent nothing for this long (its Talos services always say something in that time),
# and a Pi whose journal has sent nothing (k3s and systemd always do).
SILENCE = "30m"
# How long a silence alert stays pending before it fires: a machine added to the inventory gets its rules on the `up`
# that starts installing it, and after a whole-lab power cut every machine is silent until the Pis, k3s, Arda's
# netboot, the store and the collectors are back; both take longer than vmalert's first evaluation (a minute). 30
# minutes more covers a netboot, the Talos install and reboot, the join and the collector's image pull on a slow
# link, and a cold start of the whole lab (an estimate: neither is measured here, on real machines);
# the price: a machine that stops sending in steady state pages after an hour (30 minutes of lines + 30 pending).
SILENCE_FOR = "30m"
# A Talos machine's own lines (its services' and its kernel's): they have no pod, its pods' lines do.
TALOS_LINES = 'k8s.pod.name:=""'
# A kernel line: a Talos machine's (its KmsgLogConfig) or a Pi's (journald's kernel transport).
KERNEL = "(service:=kernel OR _TRANSPORT:=kernel)"
# The machine a line is from: a Talos machine's collector says `machine`, a Pi's journal `_HOSTNAME`.
BY_MACHINE = "by (cluster, machine, _HOSTNAME)"
WHERE = "{{ $labels.machine }}{{ $labels._HOSTNAME }}"
CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

LOG_ALERTS = (
    Alert(
        "KernelOomKill",
        # mm/oom_kill.c: "Out of memory: Killed process ..." (or "Memory cgroup out of memory: ...").
        f'_time:{LOOKBACK} {KERNEL} "Killed process" i("out of memory") | stats {BY_MACHINE} count() as kills',
        None,
        "warning",
        f"The kernel of {WHERE} killed a process for memory",
        f"{WHERE}'s kernel ran out of memory (for a container, its limit) and killed a process. Its kernel messages "
        "(Grafana, its logs dashboard) name the process; raise its memory limit or find what grew.",
    ),
    Alert(
        "DiskIOError",
        # block/blk-core.c blk_print_req_error: "I/O error, dev sda, sector ..."; fs/buffer.c: "Buffer I/O error on dev".
        f'_time:{LOOKBACK} {KERNEL} i("I/O error") | stats {BY_MACHINE} count() as errors',
        None,
        "critical",
        f"{WHERE} has disk I/O errors",
        f"The kernel of {WHERE} reported I/O errors on a disk: it is failing, or its cable or port is. Its kernel "
        "messages name the device; move its data off before it goes.",
    ),
    Alert(
        "EtcdSlowApply",
        # etcd server/etcdserver/txn/util.go: "apply request took too long" (a warning per slow request).
        f'_time:{LOOKBACK} "apply request took too long" | stats {BY_MACHINE} count() as slow | filter slow:>=3',
        None,
        "warning",
        f"etcd on {WHERE} is slow to apply requests",
        f"etcd on {WHERE} logged 'apply request took too long' 3 times or more in {LOOKBACK}: its disk is too slow "
        "(an SD card, a busy disk) or the machine is starved; the API server slows with it.",
    ),
    Alert(
        "ControlPlanePodCrashLooping",
        # The kubelet's "Error syncing pod" with the back-off error of kuberuntime_manager.go:1631 (v1.34.1).
        f'_time:{LOOKBACK} service:=kubelet CrashLoopBackOff | extract "container=<container> pod=<pod>_kube-system(" '
        f"| filter container:in({', '.join(CONTROL_PLANE_PODS)}) | stats by (cluster, machine, pod) count() as backoffs",
        None,
        "critical",
        "Control-plane pod {{ $labels.pod }} on {{ $labels.machine }} is crash-looping",
        "The kubelet of {{ $labels.machine }} keeps restarting {{ $labels.pod }}: its own log (Grafana, the machine's "
        "logs dashboard, or `talosctl -n <its address> logs kubelet`) says why it exits.",
    ),
)


def silence_alerts(stack: StackConfig) -> list[Alert]:
    """Per machine of the inventory, an alert when its lines stop: a Talos machine's collector (its Talos services go
    through it), a Pi's journal forwarder. Stats without `by` always give one row, its count 0 when nothing matched."""
    out = []
    for node in stack.arda_nodes:
        out.append(
            Alert(
                "MachineLogsMissing",
                f'_time:{SILENCE} cluster:=arda machine:="{node.name}" | stats count() as lines | filter lines:=0',
                SILENCE_FOR,
                "warning",
                f"No logs from {node.name} for {SILENCE}",
                f"The store has no line from {node.name} for {SILENCE}: the machine is down, or its log collector "
                f"(kubectl -n {NAMESPACE} get pods -l app.kubernetes.io/name={COLLECTOR} -o wide) is not running or not "
                "sending; its log alerts are silent meanwhile.",
                (("machine", node.name),),
            )
        )
        out.append(
            Alert(
                "TalosLogsMissing",
                f'_time:{SILENCE} cluster:=arda machine:="{node.name}" {TALOS_LINES} | stats count() as lines | filter lines:=0',
                SILENCE_FOR,
                "warning",
                f"No Talos logs from {node.name} for {SILENCE}",
                f"The store has no line of {node.name}'s Talos services or kernel for {SILENCE}, its pods' lines aside: "
                f"Talos sends them to {talos_host(stack)}, whose collector is down or unreachable from it (LogCollectorDown "
                "names it), or the machine is down. Meanwhile its OOM kills, disk errors, slow etcd and crash-looping "
                "control plane do not alert, and its lines are overwritten in Talos's 1 MiB buffer.",
                (("machine", node.name),),
            )
        )
    if stack.ainur is not None:
        for node in stack.ainur_nodes:
            out.append(
                Alert(
                    "PiJournalMissing",
                    f'_time:{SILENCE} _HOSTNAME:="{node.name}" | stats count() as lines | filter lines:=0',
                    SILENCE_FOR,
                    "warning",
                    f"No journal from {node.name} for {SILENCE}",
                    f"The store has no line of {node.name}'s journal for {SILENCE}: the Pi is down, or its forwarder "
                    "stopped (`sudo systemctl status systemd-journal-upload` on it says why; `pulumi up` installs it "
                    "again); its kernel's OOM kills and disk errors do not alert meanwhile.",
                    (("machine", node.name),),
                )
            )
    return out


def log_alerts(stack: StackConfig) -> list[Alert]:
    return [*LOG_ALERTS, *silence_alerts(stack)]


def alert_names(stack: StackConfig) -> list[str]:
    return sorted({a.name for a in log_alerts(stack)})


def vmalert_rules(stack: StackConfig) -> dict[str, Any]:
    """vmalert's rule file: the log alerts as one group of VictoriaLogs rules."""
    return {"groups": [{"name": "iluvatar-logs", "type": "vlogs", "rules": [a.rule() for a in log_alerts(stack)]}]}


def vmalert_args(stack: StackConfig) -> list[str]:
    return [
        "-rule=/etc/vmalert/rules.yaml",
        f"-datasource.url={store_url(stack)}",
        "-rule.defaultRuleType=vlogs",
        f"-notifier.url={ALERTMANAGER_URL}",
        f"-evaluationInterval={EVALUATION_INTERVAL}",
        f"-httpListenAddr=:{VMALERT_PORT}",
    ]


def vmalert(stack: StackConfig) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": VMALERT}
    data = {"rules.yaml": yamltext.dump(vmalert_rules(stack))}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(VMALERT), "data": data}
    container = {
        "name": VMALERT,
        "image": VMALERT_IMAGE,
        "args": vmalert_args(stack),
        "ports": [{"name": "http", "containerPort": VMALERT_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "rules", "mountPath": "/etc/vmalert", "readOnly": True}],
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(VMALERT),
        "spec": {"selector": labels, "ports": [{"name": "http", "port": VMALERT_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
    return [
        config,
        service,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(VMALERT),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "annotations": {"iluvatar.dev/config-digest": gitops.values_digest(data)}},
                    # It queries the store and posts to Alertmanager, never the Kubernetes API: no account token.
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [container],
                        "volumes": [{"name": "rules", "configMap": {"name": VMALERT}}],
                    },
                },
            },
        },
    ]


# --- Grafana ---------------------------------------------------------------------------------------------------


def datasource(stack: StackConfig) -> dict[str, Any]:
    """The VictoriaLogs datasource, provisioned beside kube-prometheus's Prometheus one."""
    return {
        "access": "proxy",
        "editable": False,
        "name": "VictoriaLogs",
        "orgId": 1,
        "type": PLUGIN,
        "uid": DATASOURCE_UID,
        "url": store_url(stack),
        "version": 1,
    }


def machine_queries(stack: StackConfig, node: Node) -> dict[str, str]:
    """A machine's panels and their LogsQL: its kernel, its services, its pods."""
    if node in stack.ainur_nodes:
        host = f'_HOSTNAME:="{node.name}"'
        return {
            "Kernel messages": f"{host} _TRANSPORT:=kernel",
            "Services (journal)": f"{host} _TRANSPORT:!=kernel",
            "Pods": f'cluster:=ainur machine:="{node.name}"',
        }
    machine = f'cluster:=arda machine:="{node.name}"'
    return {
        "Kernel messages": f"{machine} service:=kernel",
        "Talos services": f'{machine} service:!=kernel k8s.pod.name:=""',
        "Pods": f'{machine} k8s.pod.name:!=""',
    }


def dashboard(stack: StackConfig, node: Node) -> dict[str, Any]:
    """One machine's logs dashboard: a logs panel per query, newest first."""
    panels = []
    for i, (title, query) in enumerate(machine_queries(stack, node).items()):
        panels.append(
            {
                "id": i + 1,
                "type": "logs",
                "title": title,
                "gridPos": {"h": 12, "w": 24, "x": 0, "y": 12 * i},
                "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
                "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending", "enableLogDetails": True},
                "targets": [
                    {"refId": "A", "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID}, "expr": query, "queryType": "instant", "maxLines": 1000}
                ],
            }
        )
    return {
        "uid": f"iluvatar-logs-{node.name}",
        "title": f"Logs: {node.name}",
        "tags": ["iluvatar", "logs"],
        "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "panels": panels,
    }


def dashboards(stack: StackConfig) -> dict[str, str]:
    """Grafana's dashboard files of the logs: one per machine of the inventory."""
    if not enabled(stack):
        return {}
    return {f"logs-{n.name}.json": json.dumps(dashboard(stack, n), indent=2, sort_keys=True) for n in stack.nodes}
