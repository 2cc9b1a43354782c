"""k3s plan for the Ainur: each Pi's k3s config, the kube-vip static pod, and kubeconfig rewriting.

The join token never appears here in clear: `config` takes it as a parameter, and the program
passes a Pulumi secret that reaches the Pi only over SSH (never through user-data).
"""

from __future__ import annotations

import datetime
import math
import shlex
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml

from plans import apiserver, backup, storage
from stacks import pins
from stacks.model import Node, StackConfig
from stacks.rules import K3S_NETWORKS

API_PORT = 6443
# Failure detection for the netboot pod's takeover (docs/layers/ainur.md#failover): a node whose heartbeat is 16 s old
# is marked unreachable, instead of 40 s. The heartbeat is the kubelet's node Lease (plans.netboot.failover), renewed
# every quarter of its duration (Kubernetes v1.35.1 pkg/kubelet/kubelet.go:235-236, :1077): a 16 s Lease, instead of the
# default 40 s (pkg/kubelet/apis/config/v1beta1/defaults.go:150-151), renews every 4 s, so the 16 s grace outlasts two
# missed renewals rather than one renewal 4.6 s late. The 4 s status frequency only makes the kubelet compute its Node
# status more often: it posts it when it changed, and otherwise every 5 min, so that status is no heartbeat.
NODE_STATUS_UPDATE_FREQUENCY = "4s"
NODE_LEASE_DURATION_SECONDS = 16
NODE_MONITOR_GRACE_PERIOD = "16s"
# The kubelet has no flag for its Lease's duration (v1.35.1 cmd/kubelet/app/options/options.go registers none: an
# unknown flag in `kubelet-arg` stops the kubelet, and k3s with it), only the KubeletConfiguration field. k3s runs its
# kubelet with `--config-dir` on this folder, writes its own defaults there as 00-k3s-defaults.conf on every start
# (without nodeLeaseDurationSeconds) and leaves other files alone; the kubelet merges the folder's *.conf in name order,
# a later file's fields winning (k3s pkg/daemons/agent writeKubeletConfig and kubeletArgsAndConfig `config-dir`; k3s
# docs, "Kubelet Configuration Files": a drop-in here is the recommended way). The join installs this file.
KUBELET_DROPIN = "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/50-iluvatar.conf"
KUBE_VIP_IMAGE = pins.IMAGES["kube-vip"]
# The API VIP's kube-vip leader election (the valar's static pod): a lease of 5 s renewed every 3 s,
# retried every second, so the VIP moves within seconds of its valar dying. The service address has its
# own, longer one (plans.netboot.failover.service_election): it must outlast a k3s restart on one valar.
KUBE_VIP_ELECTION = {"vip_leaseduration": "5", "vip_renewdeadline": "3", "vip_retryperiod": "1"}
# The taint every netbooted maia carries (`config`, and plans.netboot.roll for one that registered before it).
NETBOOT_TAINT_KEY = "iluvatar/boot"
NETBOOT_TAINT = f"{NETBOOT_TAINT_KEY}=netboot:NoExecute"
STATIC_POD_DIR = "/var/lib/rancher/k3s/agent/pod-manifests"
CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"


def server_url(stack: StackConfig) -> str:
    assert stack.ainur is not None
    return f"https://{stack.ainur.vip}:{API_PORT}"


# The `kubernetes` Service's ClusterIP, the one in-cluster config reaches the API at: the first address of the Service
# network (Kubernetes pkg/controlplane ServiceIPRange: utilnet.GetIndexedIP(range, 1)), k3s's default
# 10.43.0.0/16, which Iluvatar does not move (stacks.rules.K3S_NETWORKS). k3s puts it in its serving certificate's names
# (pkg/cli/server/server.go: ControlConfig.SANs gets apiServerServiceIP), and kube-proxy sends it to a valar's :6443.
KUBERNETES_SERVICE_URL = f"https://{next(K3S_NETWORKS[1][1].hosts())}:443"


def services_api(stack: StackConfig) -> str | None:
    """Where kube-vip-services (the service address's election, plans.netboot.kube_vip) reaches the API, when not at the
    `kubernetes` ClusterIP (None). With two valar or more, the API VIP: a valar lost under its connection is then
    replaced by one that resets it. With one valar, the ClusterIP: the VIP reaches the same API server and would add its
    own kube-vip, which lets the VIP go 3 s into every k3s restart there (its 5 s lease renewed through that API,
    KUBE_VIP_ELECTION; kube-vip v0.9.2 pkg/cluster/clusterLeaderElection.go:171-199 deletes the address as it stops
    leading) and again as the join restarts it (kube_vip_restart), each time until after the API is back, while a dial
    to the absent VIP hangs instead of being refused: the API outage the service election rides out would shrink."""
    assert stack.ainur is not None
    return server_url(stack) if len(stack.by_role("valar")) > 1 else None


def is_first_server(stack: StackConfig, node: Node) -> bool:
    """The first valar listed initialises embedded etcd; the rest join through the VIP."""
    return node.role == "valar" and stack.by_role("valar")[0].name == node.name


def kubelet_dropin() -> str:
    """The kubelet's configuration drop-in on every Pi (`KUBELET_DROPIN`): its node Lease's duration."""
    return yaml.safe_dump(
        {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "nodeLeaseDurationSeconds": NODE_LEASE_DURATION_SECONDS},
        sort_keys=False,
    )


def config(stack: StackConfig, node: Node, token: str) -> str:
    """/etc/rancher/k3s/config.yaml for one Pi."""
    assert stack.ainur is not None
    doc: dict[str, Any] = {
        "token": token,
        "node-ip": str(node.ip),
        "node-label": [f"iluvatar/role={node.role}"],
        "kubelet-arg": [f"node-status-update-frequency={NODE_STATUS_UPDATE_FREQUENCY}"],
    }
    if node.boot == "netboot":
        # Its root is NFS: the Ainur's netboot pods never run on it (plans.netboot.pods), and containerd's overlayfs
        # snapshotter cannot keep its layers on NFS (an overlay's upper layer must be a local filesystem): k3s's
        # `snapshotter: native` copies layers instead (k3s agent --snapshotter: overlayfs, fuse-overlayfs, native, stargz).
        doc["node-label"].append("iluvatar/boot=netboot")
        doc["snapshotter"] = "native"
        # Its root (the join token, the kubelet's client certificate and key) is readable by any machine that takes its
        # address, so its kubelet identity is no secret: the taint keeps off it every pod that does not tolerate it, so
        # no pod whose account reaches beyond the maia runs there for that identity to ask tokens of (the Node
        # authorizer lets a kubelet get tokens only for its own pods' accounts). NoExecute: pods already there leave.
        # k3s applies node-taint when the Node registers (an existing Node gets it from the roll, plans.netboot.roll),
        # and NodeRestriction forbids a kubelet to remove its own taints (docs/security.md).
        doc["node-taint"] = [NETBOOT_TAINT]
    if node.role == "valar":
        doc.update(
            {
                "tls-san": [str(stack.ainur.vip), f"ainur.{stack.network.domain}"],
                # kube-vip answers for the API VIP and LoadBalancer Services; k3s' own would fight it.
                # With Longhorn the default StorageClass, k3s's local-path addon (default too) is off.
                "disable": ["servicelb", "traefik", *(["local-storage"] if storage.k3s_disables_local_storage(stack) else [])],
                "write-kubeconfig-mode": "0600",
                "kube-controller-manager-arg": [f"node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}"],
                # The API server's trust in Dex, with identity (plans.apiserver).
                **apiserver.k3s_server_config(stack),
            }
        )
        # The Ainur's etcd snapshots: k3s's schedule and retention, uploaded to an S3 target (plans.backup).
        doc.update(backup.k3s_settings(stack))
        # Every Secret sealed in the datastore, the KMS's own key among them (secrets_encryption below).
        if stack.ainur.secrets_encryption:
            doc["secrets-encryption"] = True
        if is_first_server(stack, node):
            doc["cluster-init"] = True
        else:
            doc["server"] = server_url(stack)
    else:
        doc["server"] = server_url(stack)
    return yaml.safe_dump(doc, sort_keys=True)


def service(node: Node) -> str:
    return "k3s" if node.role == "valar" else "k3s-agent"


# How long a join waits for cloud-init to finish on a Pi that is still booting (package upgrades,
# the packages Longhorn needs, k3s's download: 3 to 10 minutes on a Pi 5 with a home connection),
# and then for k3s to answer once started.
CLOUD_INIT_TIMEOUT_SECONDS = 1800
READY_TIMEOUT_SECONDS = 600
# SSH retries while the Pi boots: pulumi-command dials this many times, each attempt bounded by
# SSH_DIAL_SECONDS, backing off between them (retry.Until's defaults, pulumi sdk v3.224.0 until.go:39-43: 100 ms,
# x1.5, at most 5 s): 61 dials and about 261 s of waits (pulumi-command v1.2.1 connection.go:150-187, 252-255), so
# 4.4 to 19.6 minutes in all before a step gives up (docs/layers/ainur.md, step 4 of the first netboot).
SSH_DIAL_ATTEMPTS = 60
SSH_DIAL_SECONDS = 15
KUBELET_HEALTHZ = "http://127.0.0.1:10248/healthz"


# --- The health gate between two Pis' restarts -------------------------------------------------------
#
# A change of a Pi's k3s config restarts k3s on it, and the Pis' joins run one after the other
# (components.ainur), so a change every config carries rolls one Pi at a time. Each restart is bounded in
# the script itself (pulumi-command's remote Command runs `session.Run(cmd)` without its context once
# connected, provider/pkg/provider/remote/commandOutputs.go:95 at v1.2.1, so neither Ctrl-C nor the
# engine's timeout reaches it), and the join returns only once the new state is seen: k3s back, the Pi's
# Node Ready with a heartbeat from after the restart, and on a valar etcd healthy with every member.

# A restart owed: a Pi's step writes this file before it changes what runs (a config it installs, k3s's binary the
# installer replaces) and removes it only once its gates have passed. pulumi-command reports a step that failed or was
# cut short as failed, and the next `pulumi up` runs it again; without the mark that run would find nothing to change
# (the config already installed, the binary already at its version: k3s's installer re-run at the same version skips
# the restart too, install.sh service_enable_and_start "No change detected so skipping service start") and pass at
# once, and the next Pi would restart beside one that never came back. With it, the step restarts k3s again and waits
# for the gates.
RESTART_OWED = "/var/lib/rancher/iluvatar/restart-owed"

# Bounds of the gate's waits, in the remote script itself.
RESTART_TIMEOUT_SECONDS = 600  # systemd reporting k3s started (a Pi's k3s server: 30 to 90 s; an etcd rejoin more)
NODE_TIMEOUT_SECONDS = 600  # the restarted kubelet's first status (it posts at once: kubelet_node_status.go)
ETCD_TIMEOUT_SECONDS = 300  # every etcd member started, a voter and healthy
GATE_POLL_SECONDS = 2
# Each call a gate makes is bounded on its own, so `wait_for`'s bound holds: it checks its deadline only between
# calls, and an API server or kubelet that accepts a connection and never answers would hold one call for ever
# (kubectl has no request timeout by default: k8s.io/client-go rest.Config.Timeout zero; curl none without
# --max-time).
REQUEST_TIMEOUT_SECONDS = 10
KUBECTL = f"k3s kubectl --request-timeout={REQUEST_TIMEOUT_SECONDS}s"
# k3s's etcd snapshot before an upgrade (a Pi's datastore: tens of MB, seconds) and its uninstall script (stops
# k3s, removes its files): neither has a bound of its own.
SNAPSHOT_SECONDS = 300
UNINSTALL_SECONDS = 600

# k3s's etcd client certificates and its client URL on a server (k3s pkg/daemons/control/deps/deps.go:
# runtime.ClientETCDCert/Key and ETCDServerCA under <data-dir>/server/tls/etcd; etcd listens on 127.0.0.1:2379).
ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd"
ETCD_URL = "https://127.0.0.1:2379"
# The member list through etcd's gRPC gateway (on by default: etcd server embed/config.go:707, EnableGRPCGateway),
# pattern_Cluster_MemberList_0 in api/v3 etcdserverpb/gw/rpc.pb.gw.go:3066 (v3.5.21): POST /v3/cluster/member/list.
ETCD_MEMBER_LIST = f"{ETCD_URL}/v3/cluster/member/list"

# Each member of the list (etcdserverpb.Member, api/v3 rpc.pb.go:3060-3070 at v3.5.21: `name` and `clientURLs`
# are empty until the member has started; `isLearner` while it catches up) as `name=clientURL`, or why not.
MEMBERS_SCRIPT = """import json, sys
members = json.load(sys.stdin).get("members") or []
if not members:
    sys.exit("etcd lists no member")
for m in members:
    ident, name, urls, peers = m.get("ID"), m.get("name") or "", m.get("clientURLs") or [], m.get("peerURLs") or ["?"]
    if not name or not urls:
        sys.exit(f"etcd member {ident} ({peers[0]}) has not started")
    if m.get("isLearner"):
        sys.exit(f"etcd member {name} is still a learner")
print(" ".join(m["name"] + "=" + m["clientURLs"][0] for m in members))
"""


# A time as the API server writes it (metav1.Time: RFC 3339 in UTC, whole seconds, apimachinery v0.35.1
# pkg/apis/meta/v1/time.go:162-172), read on a Pi by python3, never by `date -d`: the uutils `date` of Ubuntu 25.10
# refuses that form, and a Pi runs whatever Ubuntu its card was flashed with (the stack names only the netbooted
# maiar's image, ainur.piImage). python3 is on every Ubuntu Server image for the Pi: cloud-init, which configures
# each Pi at its first boot (plans.cloudinit), is a python3 program. `Z` is spelled `+00:00` for the python3 3.10 of
# Ubuntu 22.04, whose fromisoformat does not take `Z`; a time without a zone is refused, not read as local time.
# The shared definition of `rfc3339(text)`, which raises ValueError on a text it cannot read.
RFC3339_FUNCTION = """import datetime
def rfc3339(text):
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when
"""
# argv[1] as seconds since the epoch, or an exit naming the text it could not read.
EPOCH_SCRIPT = (
    RFC3339_FUNCTION
    + """import sys
try:
    print(int(rfc3339(sys.argv[1]).timestamp()))
except ValueError as e:
    sys.exit(f"{sys.argv[1]!r} is not an RFC 3339 time ({e})")
"""
)


def gate_functions(node: Node) -> str:
    """The shell functions the gates use: `etcd_healthy` (every member started, a voter, and answering etcd's
    /health with "true": server etcdhttp/health.go:60-69 and 153-154 at v3.6.5, alarms, a leader and a quorum read),
    `node_ready_since EPOCH` (its Node Ready, heartbeat after EPOCH; a heartbeat time it cannot read stops the script), `node_version` (its Node's kubelet version:
    the running k3s's, whose kubelet is built in), and `wait_for SECONDS WHAT CHECK...`, which stops the script
    naming what it waited for. A failed check says why in `$why`."""
    svc = service(node)
    kubeconfig = "" if node.role == "valar" else f" --kubeconfig {AGENT_KUBECONFIG}"
    ready = '{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}'
    curl = f"sudo curl -sf --max-time 5 --cacert {ETCD_TLS}/server-ca.crt --cert {ETCD_TLS}/client.crt --key {ETCD_TLS}/client.key"
    return f"""why=""
etcd_healthy() {{
  list=$({curl} -X POST -d '{{}}' {ETCD_MEMBER_LIST} 2>/dev/null) || {{ why="etcd on $(hostname) does not answer its member list"; return 1; }}
  members=$(printf '%s' "$list" | python3 -c {shlex.quote(MEMBERS_SCRIPT)} 2>&1) || {{ why=$members; return 1; }}
  for member in $members; do
    {curl} "${{member#*=}}/health" 2>/dev/null | grep -q '"health":"true"' || {{ why="etcd member ${{member%%=*}} (${{member#*=}}) is not healthy"; return 1; }}
  done
}}
node_version() {{
  sudo {KUBECTL}{kubeconfig} get node {node.name} --ignore-not-found -o jsonpath='{{.status.nodeInfo.kubeletVersion}}' 2>/dev/null
}}
node_ready_since() {{
  got=$(sudo {KUBECTL}{kubeconfig} get node {node.name} -o jsonpath='{ready}' 2>/dev/null) || {{ why="its Node cannot be read"; return 1; }}
  [ "${{got%% *}}" = True ] || {{ why="its Node is not Ready (${{got%% *}})"; return 1; }}
  # A time that cannot be read stops the step, saying what it read: waiting would only run out the bound.
  at=$(python3 -c {shlex.quote(EPOCH_SCRIPT)} "${{got#* }}" 2>&1) || {{
    echo "iluvatar: $(hostname): its Node's last report time cannot be read: $at; look with: sudo {KUBECTL}{kubeconfig} get node {node.name} -o yaml" >&2
    exit 1
  }}
  [ "$at" -gt "$1" ] || {{ why="its Node has not reported since the restart (last at ${{got#* }})"; return 1; }}
}}
wait_for() {{
  bound=$1 what=$2
  shift 2
  end=$(( $(date +%s) + bound ))
  until "$@"; do
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "iluvatar: $(hostname): waited $bound s for $what; still: ${{why:-no answer}}; look with: sudo journalctl -u {svc}" >&2
      exit 1
    fi
    sleep {GATE_POLL_SECONDS}
  done
}}
"""


# --- k3s's certificates: renewed only as k3s starts -------------------------------------------------------
#
# k3s's leaf certificates (each component's client certificate, the API server's, etcd's; the agent's kubelet and
# kube-proxy certificates) last 365 days, its CAs ten years. k3s renews a leaf certificate only as it starts, when it is
# within CertificateRenewDays of its end (pkg/daemons/control/deps/deps.go: createClientCertKey regenerates when
# `expired(certFile)`, certutil.IsCertExpired(cert, config.CertificateRenewDays)); that window is 120 days since
# v1.33.1+k3s1 (pkg/daemons/config/types.go `CertificateRenewDays = 120`, k3s-io/k3s#12232 for #12171; 90 before,
# docs.k3s.io "certificate": "Any certificates that are expired or within 120 days to expire are automatically renewed
# every time K3s starts"), so for the pinned k3s (stacks.pins.K3S) too. Nothing else renews them: a k3s left running
# for a year stops serving. The k3s step restarts k3s (gated, one Pi at a time) when one of them is within the window,
# and `up` runs that step when the last deployment recorded an end within it (plans.rollout.certificate_trigger).
CERTIFICATE_RENEW_DAYS = 120
# How long before a certificate's end the homelab warns: a month to run `pulumi up` (the alert AinurCertificateExpiring
# with the monitoring layer; a warning at every preview and `up` from the recorded ends, with or without it).
CERTIFICATE_WARNING_DAYS = 30
# Where k3s keeps them (deps.go CreateRuntimeCertFiles: <data-dir>/server/tls and tls/etcd; the agent's under
# <data-dir>/agent, pkg/agent/config). The CAs (`*-ca.crt`, and the single-certificate `*-ca.nochain.crt` copies) are
# left out of the restart decision: k3s never renews them, and they last ten years (K3S_METRIC_ONLY_DIRS).
K3S_TLS_DIRS = ("/var/lib/rancher/k3s/server/tls", "/var/lib/rancher/k3s/server/tls/etcd", "/var/lib/rancher/k3s/agent")
# Counted in the metric (so alerted 30 days ahead), never in the restart decision: the CAs in K3S_TLS_DIRS (labelled
# ca="true", their own alert: k3s never renews them, a restart would not help, and one within 120 days would restart the
# Pi at every new end), and the kube-controller-manager and kube-scheduler serving certificates k3s issues since
# v1.33.1+k3s1 in folders of their own (k3s-io/k3s#12285, #12295), which k3s renews as it starts, as the others: on an
# Ainur upgraded across v1.33.1 they were made later than the rest, so their end is out of step with the one the
# renewal is keyed on, and only the alert says when they near it.
K3S_METRIC_ONLY_DIRS = ("/var/lib/rancher/k3s/server/tls/kube-controller-manager", "/var/lib/rancher/k3s/server/tls/kube-scheduler")
# node-exporter's textfile collector reads this directory on each Pi (plans.monitoring.ainur_node_exporter), so Arda's
# Prometheus sees each certificate's end (the alert AinurCertificateExpiring).
METRICS_DIR = "/var/lib/rancher/iluvatar/metrics"
CERTIFICATE_METRIC = "iluvatar_k3s_certificate_end_seconds"
# The earliest end of the leaf certificates in the directories given (those that exist) as `EPOCH RFC3339 PATH`, and the
# metric file with every one of them when `--metrics FILE` is given; nothing printed when k3s made none yet. Each end is
# read by openssl (on every Ubuntu image: ca-certificates depends on it) and parsed by python3's ssl module, never
# `date -d` (see RFC3339_FUNCTION); the first certificate of a file is the leaf (k3s writes the leaf, then its CA).
CERTIFICATES_SCRIPT = f"""import glob, os, ssl, stat, subprocess, sys, time
args = sys.argv[1:]
metrics = None
if args[:1] == ["--metrics"]:
    metrics, args = args[1], args[2:]
ends, more = [], []
also = False
for folder in args:
    if folder == "--also":
        also = True
        continue
    for path in sorted(glob.glob(os.path.join(folder, "*.crt"))):
        if path.endswith("-ca.nochain.crt"):
            continue
        ca = path.endswith("-ca.crt")
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path], capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.startswith("notAfter="):
            sys.exit(f"{{path}} cannot be read as a certificate: {{(out.stderr or out.stdout).strip()}}")
        (more if ca or also else ends).append((int(ssl.cert_time_to_seconds(out.stdout.strip()[len("notAfter="):])), path, ca))
if metrics is not None:
    os.makedirs(os.path.dirname(metrics), exist_ok=True)
    # node-exporter reads the textfile directory as uid 65534 (plans.monitoring): older secrets switch steps left its
    # parent 0700 (SECRETS_RECORD_MOVED), and makedirs sets no mode on what exists, so each run gives a 0700 parent 0755.
    parent = os.path.dirname(os.path.dirname(metrics))
    if stat.S_IMODE(os.stat(parent).st_mode) == 0o700:
        os.chmod(parent, 0o755)
    lines = ["# HELP {CERTIFICATE_METRIC} When a k3s certificate ends (NotAfter), seconds since the epoch.",
             "# TYPE {CERTIFICATE_METRIC} gauge"]
    labelled = [(t, p, ',ca="true"' if ca else "") for t, p, ca in ends + more]
    lines += [f'{CERTIFICATE_METRIC}{{{{certificate="{{p}}"{{c}}}}}} {{t}}' for t, p, c in labelled]
    with open(metrics + ".tmp", "w") as f:
        f.write("\\n".join(lines) + "\\n")
    os.replace(metrics + ".tmp", metrics)
if ends:
    end, path, _ = min(ends)
    print(end, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)), path)
"""
# The line the k3s step ends its stdout with: the earliest end after its run (plans.rollout reads it back next run).
CERTIFICATES_LINE = "k3s-certificates-end="
# The line it prints, with the Pi's clock, when that clock put its certificates outside k3s's window while the run
# renews them (upgrade_script): the next run reads it back and runs the step again (plans.rollout.certificate_trigger).
CLOCK_LINE = "k3s-certificates-clock-behind="
# A certificate that has ended, or ends within this margin, is renewed by a restart that asks neither the API nor etcd
# first: both are reached through the very certificates that ended (the admin client's, the kubelet's, etcd's client
# certificate), so the Node's version cannot be read and etcd's gate cannot pass until k3s has started again. k3s
# regenerates an ended leaf as it starts, the same as one within its window (deps.go genCerts -> createClientCertKey,
# `expired(certFile)` is certutil.IsCertExpired(cert, CertificateRenewDays), true for a NotAfter already past; an agent's
# certificates are signed anew from a CSR at every start, pkg/agent/config/config.go getKubeletClientCert). The margin
# covers the restart and its gates, minutes.
EXPIRED_MARGIN_SECONDS = 3600


def certificates_functions(dirs: tuple[str, ...] = K3S_TLS_DIRS, metrics: str = METRICS_DIR, also: tuple[str, ...] = K3S_METRIC_ONLY_DIRS) -> str:
    """`certificates_end`: the earliest end of this Pi's k3s leaf certificates (`EPOCH RFC3339 PATH`, empty when there is
    none yet), writing the metric file node-exporter serves (with the CAs and `also`, K3S_METRIC_ONLY_DIRS); it fails
    naming a certificate it cannot read."""
    folders = " ".join(shlex.quote(d) for d in [*dirs, "--also", *also])
    return f"""certificates_end() {{
  sudo python3 -c {shlex.quote(CERTIFICATES_SCRIPT)} --metrics {shlex.quote(metrics + "/k3s-certificates.prom")} {folders}
}}
"""


INSTALLER = "https://get.k3s.io"
UPGRADE_TIMEOUT_SECONDS = 900
# k3s's installer, fetched, then run, each under its own bound: pulumi-command never cancels a remote command once
# it runs (see above), and neither has one of its own. The fetch is one small script; the install downloads k3s
# (about 70 MB) with `curl -o $1 -sfL $2` (install.sh download(): no time limit) and ends with `systemctl restart`
# of a unit with TimeoutStartSec=0 (systemd_start, create_systemd_service_file), so it runs under `timeout`, which
# stops the installer and everything it started (its own process group); systemd goes on starting k3s.
FETCH_CONNECT_SECONDS = 10
FETCH_SECONDS = 120
INSTALL_SECONDS = 1200  # the download on a slow home connection, and k3s's restart (as the join's RESTART_TIMEOUT_SECONDS)
AGENT_KUBECONFIG = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"


def install_env(stack: StackConfig, node: Node, *extra: str) -> str:
    """The environment k3s's installer runs with on this Pi: the pinned version (and `extra`), server or agent."""
    assert stack.ainur is not None
    kind = "server" if node.role == "valar" else "agent"
    env = " ".join([f"INSTALL_K3S_VERSION={stack.ainur.k3s_version}", *extra, f"INSTALL_K3S_EXEC={kind}"])
    if kind == "agent":
        # Without K3S_URL the script installs a server; the real URL comes with the token over SSH.
        env += f" K3S_URL={server_url(stack)}"
    return env


def node_ready(node: Node, version: str) -> str:
    """A shell test that passes once this Pi's Node is Ready with its kubelet at `version`: a server asks with
    k3s's admin access, an agent with its kubelet's own credentials (a kubelet may read its own Node).

    Ready alone is not enough after an upgrade: the Node stays Ready at the old version until the node
    lifecycle controller notices the restarted kubelet's silence (16 s on the Ainur), so a wait on Ready
    alone returns at once and the next Pi goes down while this one is still coming back."""
    kubeconfig = "" if node.role == "valar" else f" --kubeconfig {AGENT_KUBECONFIG}"
    wanted = '{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}'
    return f"[ \"$(sudo {KUBECTL}{kubeconfig} get node {node.name} -o jsonpath='{wanted}' 2>/dev/null)\" = '{version} True' ]"


@dataclass(frozen=True)
class Outage:
    """What the one valar's restart costs the service address (plans.netboot.failover): its election rides out `ridden`
    seconds of the API down, drops the address `dropped` seconds in, and has it back within `back` of the API's return.
    `server`: the API's URL as kube-vip-services reaches it (services_api), which the watcher polls."""

    ridden: int
    dropped: int
    back: float
    server: str


# Each /readyz poll of the outage watcher is bounded to this: well under the service election's 19 s ride-out.
WATCH_POLL_SECONDS = 2


def outage_functions(node: Node, outage: Outage, bound: int) -> str:
    """`api_watch_start`, run right before k3s restarts on the one valar: a watcher in the background asking the API
    /readyz every second at the address kube-vip-services reaches it at (`outage.server`: what the service election
    rides on, not k3s's local 127.0.0.1), for at most `bound` seconds, noting its first unanswered poll and its next answer; and
    `api_watch_report`, once the step has seen k3s back: how long the API did not answer, and a warning when that is
    longer than the service address's election rides out (the household's DNS, and DHCP in `dhcp` mode, then went
    for about the excess). Measured to about ±2 s: a poll each second, each a `k3s kubectl` start (0.3-1 s on a Pi),
    and a poll k3s holds without answering ends at its bound (WATCH_POLL_SECONDS, kubectl's last --request-timeout
    wins). With one valar this is the API every Pi's
    kube-vip renews through (kube-vip-services uses in-cluster config, kube-vip v0.9.2 pkg/manager/manager.go:140)."""
    poll = f"sudo {KUBECTL} --request-timeout={WATCH_POLL_SECONDS}s --server {outage.server} get --raw /readyz >/dev/null 2>&1"
    lost = f"$((down - {outage.dropped})) to $((down - {outage.dropped} + {math.ceil(outage.back)}))"
    return f"""api_watch=""
api_watch_start() {{
  api_watch=$(mktemp -d)
  # Its own output nowhere: a step that stops early must not have its SSH session wait on the watcher's. It stops with
  # the step ($$, the step's shell, gone: failed or killed before its report) and then removes its folder, or when the
  # report asks (a file `stop`), which reads its record and removes the folder; each poll is bounded (a k3s that takes
  # the connection and never answers), so the report waits a poll at most.
  # Its record, `watch`, is written whole, by rename(2) of a file written beside it (`>` empties a file before it
  # writes), in a folder of the step's user alone (mktemp -d: mode 0700), which no other user can put a file in.
  (
    first="" end=$(( $(date +%s) + {bound} ))
    while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$api_watch/stop" ] && kill -0 $$ 2>/dev/null; do
      if {poll}; then
        if [ -n "$first" ]; then echo "$first $(date +%s)" > "$api_watch/new" && mv -f "$api_watch/new" "$api_watch/watch"; break; fi
      elif [ -z "$first" ]; then
        first=$(date +%s)
        echo "$first" > "$api_watch/new" && mv -f "$api_watch/new" "$api_watch/watch"
      fi
      sleep 1
    done
    while [ ! -e "$api_watch/stop" ] && kill -0 $$ 2>/dev/null; do sleep 1; done
    [ -e "$api_watch/stop" ] || rm -rf "$api_watch"
  ) </dev/null >/dev/null 2>&1 &
  api_watcher=$!
}}
api_watch_report() {{
  waited=0
  while [ -s "$api_watch/watch" ] && [ -z "$(cut -s -d' ' -f2 "$api_watch/watch")" ] && [ "$waited" -lt 5 ]; do sleep 1; waited=$((waited + 1)); done
  # Asked to stop, not killed: the watcher ends its poll and its write, so what it saw is in its record when it is read.
  touch "$api_watch/stop"
  wait "$api_watcher" 2>/dev/null || true
  first="" back=""
  [ ! -s "$api_watch/watch" ] || read -r first back < "$api_watch/watch" || true
  if [ -z "${{first:-}}" ]; then
    echo "iluvatar: {node.name}: the Ainur's API answered every poll while k3s restarted" >&2
  elif [ -z "${{back:-}}" ]; then
    echo "iluvatar: {node.name}: the Ainur's API stopped answering at $(date -d "@$first" +%T 2>/dev/null || echo "$first") and its watcher did not see it back, so how long it was down is not known" >&2
  else
    down=$((back - first))
    echo "iluvatar: {node.name}: the Ainur's API (its one valar, at {outage.server}, where kube-vip-services reaches it) did not answer for about $down s while k3s restarted" >&2
    if [ "$down" -gt {outage.ridden} ]; then
      echo "iluvatar: warning: {node.name}: that is longer than the {outage.ridden} s the service address's election rides out: kube-vip let the address go {outage.dropped} s in, so the household was without DNS (and DHCP in dhcp mode) for about {lost} s; look with: sudo journalctl -u {service(node)} (how long k3s took to serve)" >&2
    fi
  fi
  rm -rf "$api_watch"
  api_watch=""
}}
"""


def stopped(node: Node) -> str:
    """`systemctl stop` of k3s's unit, run before a restart's `since` is taken (`restarted`). The kubelet runs inside
    k3s's own process, which the stop ends (the unit's KillMode=process, k3s's install.sh create_systemd_service_file),
    and stamps each status it posts before it sends it (Kubernetes v1.35.1 pkg/kubelet/nodestatus/setters.go:483-489,
    then kubelet_node_status.go:534 patches): once the stop returns, no heartbeat of the old k3s can be later than the
    clock read after it. In one `systemctl restart`, `since` would be read before the stop, and a post the old kubelet
    made while it stopped, in a later second, would pass the wait for the new one. systemd bounds the stop itself: the unit sets no
    TimeoutStopSec, so DefaultTimeoutStopSec (90 s) and then SIGKILL (systemd.service(5)). A stop that fails asks systemd
    to start the unit before the step fails, without waiting for it (`--no-block`): as `systemctl restart` would have gone
    on to, so a failed step leaves k3s, and on a valar the Ainur's API and the household's DHCP and DNS behind its VIP,
    running rather than stopped until the next `up` (a start of a unit still running is nothing)."""
    svc = service(node)
    return f"""sudo systemctl stop {svc} || {{
  status=$?
  sudo systemctl start --no-block {svc} || true
  echo "iluvatar: $(hostname): systemctl stop {svc} failed (status $status), k3s's start asked of systemd again; look with: sudo journalctl -u {svc}" >&2
  exit 1
}}
"""


def restarted(node: Node, restart_timeout: int) -> str:
    """k3s's restart, stopped, then `since` (the clock after the stop: only the new kubelet reports later), then started."""
    return stopped(node) + "since=$(date +%s)\n" + bounded_start(node, "restart", restart_timeout)


def bounded_start(node: Node, verb: str, restart_timeout: int) -> str:
    """`systemctl start` of k3s's unit under `timeout`: it returns when k3s tells systemd it is ready (`Type=notify`) and
    the unit has no bound of its own (`TimeoutStartSec=0`, k3s's install.sh create_systemd_service_file). `verb` says
    what the start is part of (`start`, `restart` after `stopped`, or a shell expansion: `$verb`)."""
    svc = service(node)
    return f"""status=0
sudo timeout {restart_timeout} systemctl start {svc} || status=$?
if [ "$status" -eq 124 ]; then
  echo "iluvatar: $(hostname): systemd did not see {svc} start within {restart_timeout} s of its {verb} (its unit has no bound of its own: TimeoutStartSec=0); look with: sudo journalctl -u {svc}" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "iluvatar: $(hostname): systemctl start {svc} failed (status $status); look with: sudo journalctl -u {svc}" >&2
  exit 1
fi
"""


def seen_by(node: Node) -> str:
    """What a restart is seen through by: the gates after it."""
    return "its Node Ready, etcd healthy" if node.role == "valar" else "its Node Ready"


def owe_restart(owed: str) -> str:
    """The mark of a restart owed (RESTART_OWED), written before what would need one."""
    return f'sudo mkdir -p "$(dirname {owed})" && sudo touch {owed}\n'


# The API VIP's kube-vip (the valar's static pod, kube_vip_manifest) reads k3s's admin kubeconfig once, as it starts
# (kube-vip v0.9.2 pkg/manager/manager.go:95-130 through pkg/k8s/client.go:47-66, clientcmd.BuildConfigFromFlags: the
# certificate is embedded data, held in memory, never read again). k3s writes that file anew, with the admin certificate
# it holds, at every start (pkg/cli/server/server.go writeKubeConfig), but k3s's unit stops only its own process
# (KillMode=process, install.sh create_systemd_service_file), so a restart of k3s leaves the running kube-vip container
# alone, and the restarted kubelet keeps a static pod whose manifest did not change. A kube-vip that is not the leader
# never restarts on its own (pkg/cluster/clusterLeaderElection.go:171-199: only a leader that loses its lease exits):
# once the certificate it started with ends, it can never take the VIP. So after each restart of k3s on a valar, its
# kube-vip container is stopped, and the kubelet starts a new one in the same pod: a container of a running pod that is
# not running is started again under the pod's restartPolicy, Always for a pod that names none (Kubernetes v1.35
# pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions, kubecontainer.ShouldContainerBeRestarted), and the
# new container mounts the file as it is now. A stop rather than an edit of the manifest: cloud-init wrote the manifest
# (plans.cloudinit) and it stays as written. The stop is graceful (crictl stop --timeout: SIGTERM first), so a kube-vip
# holding the VIP lets its lease go and another valar's takes the VIP within the election's lease (KUBE_VIP_ELECTION).
# Pod and container are picked by the labels the kubelet puts on every container (io.kubernetes.pod.name is the static
# pod's name, `kube-vip-<node>`; the LoadBalancer DaemonSet's container is named kube-vip too, in another pod).
KUBE_VIP_SECONDS = 120  # the kubelet's next sync after the container stopped (PLEG's relist: 1 s), and its start
CRICTL_SECONDS = 30  # one crictl call, the graceful stop's 10 s included


def kube_vip_restart(node: Node, timeout: int = KUBE_VIP_SECONDS) -> str:
    """On a valar, after its k3s restarted: stop its API VIP kube-vip container and wait for the kubelet's new one to
    run, so it reads k3s's admin kubeconfig as k3s wrote it at this start. Nothing on a maia (no such pod)."""
    if node.role != "valar":
        return ""
    labels = f"--label io.kubernetes.pod.namespace=kube-system --label io.kubernetes.pod.name=kube-vip-{node.name} --label io.kubernetes.container.name=kube-vip"
    ps = f"sudo timeout {CRICTL_SECONDS} k3s crictl ps --state running {labels} -q"
    return f"""kube_vip_new() {{
  now=$({ps} 2>/dev/null) || {{ why="crictl does not answer"; return 1; }}
  [ -n "$now" ] && [ "$now" != "$1" ] || {{ why="no kube-vip container runs but the one stopped (${{1:-none}})"; return 1; }}
}}
old=$({ps}) || {{ echo "iluvatar: {node.name}: its kube-vip containers cannot be listed (crictl failed), so the API VIP's kube-vip still holds the admin certificate it started with; look with: sudo k3s crictl ps" >&2; exit 1; }}
if [ -n "$old" ]; then
  echo "iluvatar: {node.name}: restarting its API VIP kube-vip ($old), which read k3s's admin kubeconfig only as it started" >&2
  sudo timeout {CRICTL_SECONDS} k3s crictl stop --timeout 10 $old >/dev/null || {{ echo "iluvatar: {node.name}: its kube-vip container $old did not stop; look with: sudo k3s crictl ps" >&2; exit 1; }}
  wait_for {timeout} "its API VIP kube-vip started again by the kubelet" kube_vip_new "$old"
fi
"""


def install_k3s(stack: StackConfig, node: Node, installer: str, fetch_timeout: int, install_timeout: int) -> str:
    """Fetch k3s's installer to a file and run it, each bounded, each failure naming what did not finish.

    Not `curl | sh`: a fetch that failed there ran an empty script, which succeeds."""
    svc = service(node)
    return f"""installer=$(mktemp)
trap 'rm -f "$installer"' EXIT
status=0
curl -sfL --connect-timeout {FETCH_CONNECT_SECONDS} --max-time {fetch_timeout} -o "$installer" {installer} || status=$?
if [ "$status" -ne 0 ]; then
  echo "iluvatar: {node.name}: k3s's installer was not fetched from {installer} within {fetch_timeout} s (curl's exit status $status; 28: the time ran out), so nothing was installed; look with: curl -sSfL -o /dev/null {installer}" >&2
  exit 1
fi
status=0
sudo {install_env(stack, node)} timeout {install_timeout} sh "$installer" >&2 || status=$?
if [ "$status" -eq 124 ]; then
  echo "iluvatar: {node.name}: k3s's installer did not finish within {install_timeout} s (it downloads k3s, then restarts {svc}, whose unit has no start timeout): stopped; look with: sudo journalctl -u {svc}" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "iluvatar: {node.name}: k3s's installer failed (status $status); look with: sudo journalctl -u {svc}" >&2
  exit 1
fi
"""


def upgrade_script(
    stack: StackConfig,
    node: Node,
    snapshot: bool,
    timeout: int = UPGRADE_TIMEOUT_SECONDS,
    etcd_timeout: int = ETCD_TIMEOUT_SECONDS,
    installer: str = INSTALLER,
    fetch_timeout: int = FETCH_SECONDS,
    install_timeout: int = INSTALL_SECONDS,
    restart_timeout: int = RESTART_TIMEOUT_SECONDS,
    owed: str = RESTART_OWED,
    snapshot_timeout: int = SNAPSHOT_SECONDS,
    head: str = "",
    tls_dirs: tuple[str, ...] = K3S_TLS_DIRS,
    metrics_dir: str = METRICS_DIR,
    renewing: str | None = None,
    kube_vip_timeout: int = KUBE_VIP_SECONDS,
    outage: Outage | None = None,
) -> str:
    """Run over SSH on one Pi: bring k3s to the stack's version, then wait until its Node is Ready again.

    `snapshot` (the first valar, which goes first) saves a k3s etcd snapshot before anything changes, to
    restore from if the upgrade goes wrong (docs/day2.md#runbooks). k3s's installer replaces the binary
    (install.sh setup_binary, `mv -f`) and only then restarts the service (systemd_start), so a binary at the
    version is not a k3s running it. A Pi whose binary is at the version is restarted when a restart is owed
    (RESTART_OWED: an earlier run of this step or of the join did not see its gates pass), when k3s is not
    active, or when its Node's kubelet (built into k3s) is at another version (the running k3s is older than
    its binary), or when one of its k3s certificates ends within CERTIFICATE_RENEW_DAYS (k3s renews them only as it
    starts); a fresh Pi, installed at the version by cloud-init and running, is left alone. Either way the
    gates run: its Node Ready at the version and, on a valar, etcd healthy with every member. Its stdout ends with
    CERTIFICATES_LINE and the earliest end of its certificates after the run (empty when k3s made none). `head`: comment lines
    after the first (a netbooting maia's image, so the step runs again on its new root: plans.netboot.roll).

    The certificates are read first, before anything asks the API: one already ended (or within
    EXPIRED_MARGIN_SECONDS) restarts k3s without the Node's version or etcd's gate before it, which the ended
    certificates themselves would fail. `renewing` (the recorded end this run's trigger names,
    plans.rollout.certificate_trigger): a certificate ending at or before it restarts k3s, unless the Pi's clock puts it
    outside k3s's window (k3s renews by that clock, so the restart would renew nothing): then a warning naming the Pi's
    clock, no restart for it, no failure, and CLOCK_LINE, so the next run tries again. After a restart owed to the certificates, they are read again and the step fails, naming the certificate and the
    Pi's clock, unless their earliest end moved past `renewing` and out of k3s's window: a failed step keeps the last
    trigger in the state, so the next `up` tries again.

    On a valar, after k3s restarted or was installed (and its gates passed), its API VIP kube-vip is restarted
    (kube_vip_restart) before the mark of a restart owed goes, so a kube-vip the kubelet did not start again is tried
    again by the next run.

    `outage` (the one valar of an Ainur): a restart of a running k3s is watched from the API's side, and the step says
    how long the API did not answer, warning past what the service address rides out (outage_functions).
    """
    assert stack.ainur is not None
    want = stack.ainur.k3s_version
    svc = service(node)
    save = (
        f"sudo timeout {snapshot_timeout} k3s etcd-snapshot save --name iluvatar-before-{want.replace('+', '-')} >&2 || "
        f'{{ status=$?; echo "iluvatar: $(hostname): the etcd snapshot before the upgrade failed or did not finish within {snapshot_timeout} s '
        '(status $status); look with: sudo journalctl -u k3s" >&2; exit 1; }\n'
        if snapshot
        else ""
    )
    # A valar's upgrade restarts a member of etcd: only with every member healthy, and the next Pi only once it is again.
    before = after = restarted_before = ""
    if node.role == "valar":
        before = f'wait_for {etcd_timeout} "etcd healthy with every member before k3s restarts" etcd_healthy\n'
        # A member already down cannot cost quorum by restarting: the gate waits only for a running one.
        restarted_before = f'[ "$active" = 1 ] && [ "$expired" = 0 ] && {before}'
        if len(stack.by_role("valar")) > 1:
            # Several valar whose certificates all ended: this one's etcd cannot reach its peers (their peer certificates
            # ended too), so its restart waits out its bound in vain; the runbook restarts every valar at once.
            restarted_before = (
                f'if [ "$expired" = 1 ]; then echo "iluvatar: {node.name}: its certificates ended: if every valar\'s did too, '
                "restarting them one at a time cannot bring back etcd's quorum: restart k3s on every valar at once, by hand "
                '(docs/day2.md#the-ainurs-k3s-certificates, Ended certificates, by hand)" >&2; fi\n'
            ) + restarted_before
        after = f'wait_for {etcd_timeout} "etcd healthy with every member after its k3s upgrade" etcd_healthy\n'
    seen = seen_by(node)
    kubeconfig = "" if node.role == "valar" else f" --kubeconfig {AGENT_KUBECONFIG}"
    # k3s restarted or installed (`since` set): its new admin kubeconfig reaches the API VIP's kube-vip only by a restart.
    kube_vip = f'if [ -n "$since" ]; then\n{textwrap.indent(kube_vip_restart(node, kube_vip_timeout), "  ")}fi\n' if node.role == "valar" else ""
    # `since` once the old k3s has stopped, after the etcd gate (minutes, while the old kubelet may still report).
    watch = f"if sudo systemctl is-active --quiet {svc}; then api_watch_start; fi\n" if outage else ""
    restart = textwrap.indent(restarted_before + owe_restart(owed) + watch + restarted(node, restart_timeout), "    ")
    watched = outage_functions(node, outage, restart_timeout + install_timeout + timeout) if outage else ""
    report = '[ -z "$api_watch" ] || api_watch_report\n' if outage else ""

    window = CERTIFICATE_RENEW_DAYS * 86400
    renew_epoch = int(datetime.datetime.strptime(renewing, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()) if renewing else 0
    behind = ""
    if renewing:
        behind = f"""# k3s renews a leaf by this Pi's own clock (deps.go createClientCertKey: IsCertExpired(cert, CertificateRenewDays) reads
# time.Now()): due by the end this run renews but not within k3s's window by that clock, a restart renews nothing. The
# clock is behind (the run names this end only from {CERTIFICATE_RENEW_DAYS - 1} days before it, by the operator's clock):
# no restart for it and no failure that would hold the Pis after it; a warning and the clock line, so the next run tries again.
if [ "$due" = 1 ] && [ "${{ending%% *}}" -ge "$(( $(date +%s) + {window} ))" ]; then
  due=0
  echo "iluvatar: warning: {node.name}: its clock says $(date -u +%Y-%m-%dT%H:%M:%SZ), by which ${{rest#* }} (ending ${{rest%% *}}) is not within k3s's {CERTIFICATE_RENEW_DAYS} days, and k3s renews by its own clock: k3s is not restarted to renew it and the step goes on; this run renews those ending by {renewing}, from {CERTIFICATE_RENEW_DAYS - 1} days before by the operator's clock, so the Pi's clock is behind: set it (look with: timedatectl status) and run pulumi up again" >&2
  echo "{CLOCK_LINE}$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
"""
    return f"""set -eu
{head}{gate_functions(node)}{watched}{certificates_functions(tls_dirs, metrics_dir)}since=""
# Its certificates first: reading them needs no API (an ended one makes the API and etcd unreachable from here).
if ! ending=$(certificates_end); then
  echo "iluvatar: {node.name}: its k3s certificates cannot be read, so whether k3s must restart to renew them is not known and it is left as it is" >&2
  exit 1
fi
rest=${{ending#* }}
due=0 expired=0
if [ -n "$ending" ] && {{ [ "${{ending%% *}}" -lt "$(( $(date +%s) + {window} ))" ] || [ "${{ending%% *}}" -le {renew_epoch} ]; }}; then due=1; fi
if [ -n "$ending" ] && [ "${{ending%% *}}" -le "$(( $(date +%s) + {EXPIRED_MARGIN_SECONDS} ))" ]; then expired=1; fi
{behind}have=$(k3s --version 2>/dev/null | awk 'NR==1 {{print $3}}')
if [ "$have" = "{want}" ]; then
  active=0
  if sudo systemctl is-active --quiet {svc}; then active=1; fi
  why=""
  if sudo test -e {owed}; then why="an earlier run's restart was not seen through ({seen})"
  elif [ "$active" = 0 ]; then why="{svc} is not running"
  elif [ "$expired" = 1 ]; then
    why="its certificate ${{rest#* }} ended at ${{rest%% *}} (or ends within {EXPIRED_MARGIN_SECONDS} s), so neither its Node nor etcd can be asked through it, and k3s renews it only as it starts"
  elif ! running=$(node_version); then
    echo "iluvatar: {node.name}: its Node cannot be read, so whether the running k3s is {want} is not known and it is left as it is; look with: sudo {KUBECTL}{kubeconfig} get node {node.name}" >&2
    exit 1
  elif [ -z "$running" ]; then why="its Node is not registered (a kubelet registers it only as it starts)"
  elif [ "$running" != "{want}" ]; then why="its Node's kubelet runs $running, not the installed {want}"
  elif [ "$due" = 1 ]; then
    why="its certificate ${{rest#* }} ends at ${{rest%% *}}, within {CERTIFICATE_RENEW_DAYS} days, and k3s renews its certificates only as it starts"
  fi
  if [ -z "$why" ]; then
    echo "iluvatar: k3s {want} already runs on {node.name}" >&2
  else
    echo "iluvatar: {node.name}: k3s {want} is installed, but $why: restarting {svc}" >&2
{restart}  fi
else
  echo "iluvatar: {node.name}: k3s $have -> {want}" >&2
{before}{save}{owe_restart(owed)}{watch}since=$(date +%s)
{install_k3s(stack, node, installer, fetch_timeout, install_timeout)}fi
deadline=$(( $(date +%s) + {timeout} ))
until {node_ready(node, want)}; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "iluvatar: {node.name} was not Ready at {want} within {timeout} s of its k3s upgrade; look with: sudo journalctl -u {service(node)}" >&2
    exit 1
  fi
  sleep 3
done
# The Node may say Ready at the version before the restart: a restart at the version it ran already, or a Node object
# that outlived its k3s (a Pi reflashed, a downgrade whose report never came). It stays so until the node lifecycle
# controller notices the silence, so only a report from after the restart or install says k3s came back: a restarted
# kubelet reports at once (Kubernetes v1.35.1 pkg/kubelet/kubelet_node_status.go:523: lastStatusReportTime is zero at its start).
if [ -n "$since" ]; then
  wait_for {timeout} "its Node Ready again after k3s's restart" node_ready_since "$since"
fi
{report}{after}{kube_vip}sudo rm -f {owed}
ending=$(certificates_end)
rest=${{ending#* }}
# A restart owed to the certificates that did not move their end (a Pi's clock behind, a certificate k3s does not renew)
# fails the step: its trigger stays as it was in the state, so the next run tries again.
if [ "$due" = 1 ] && [ -n "$ending" ] && {{ [ "${{ending%% *}}" -le {renew_epoch} ] || [ "${{ending%% *}}" -lt "$(( $(date +%s) + {window} ))" ]; }}; then
  echo "iluvatar: {node.name}: k3s restarted to renew its certificates, but ${{rest#* }} still ends at ${{rest%% *}} (this Pi's clock says $(date -u +%Y-%m-%dT%H:%M:%SZ){f"; the run renews those ending by {renewing}" if renewing else ""}); look with: sudo k3s certificate check --output table" >&2
  exit 1
fi
echo "{CERTIFICATES_LINE}${{rest%% *}}"
"""


# What k3s's installer leaves for removing it (a server's script, or an agent's), run when a Pi leaves.
UNINSTALL_SCRIPT = f"""set -eu
for script in /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh; do
  if [ -x "$script" ]; then
    sudo timeout {UNINSTALL_SECONDS} "$script" || {{ status=$?; echo "iluvatar: $(hostname): $script failed or did not finish within {UNINSTALL_SECONDS} s (status $status)" >&2; exit 1; }}
  fi
done
"""


def ready_check(node: Node) -> str:
    """A shell test that passes once k3s on this Pi serves: a server's API answers /readyz locally,
    an agent's kubelet answers its health check (it has no credentials for the API)."""
    if node.role == "valar":
        return f"sudo {KUBECTL} get --raw /readyz >/dev/null 2>&1"
    return f"curl -sf --max-time {REQUEST_TIMEOUT_SECONDS} {KUBELET_HEALTHZ} >/dev/null 2>&1"


# Where a k3s server keeps its embedded etcd: absent on a Pi whose disk is new or reflashed.
DATASTORE = "/var/lib/rancher/k3s/server/db/etcd"


def _rejoin(url: str, config_path: str, datastore: str) -> str:
    """The first valar's guard against starting a second cluster beside the first.

    Its config says `cluster-init` (it starts the cluster on a first bring-up). Rebuilt after a
    failure (a new SD card: no datastore) while the other valar still run the cluster, it must join
    them through the VIP instead: k3s would otherwise initialise a new, empty etcd and hold the VIP
    against the real one. So when it has no datastore and a cluster already answers at the VIP (k3s
    serves its CA at `/cacerts` to anyone), or it joined that way before, the script writes `server:`
    in place of `cluster-init`. On a first bring-up nothing answers at the VIP yet: kube-vip starts
    with this Pi's k3s.
    """
    swap = f"sed -i 's|^cluster-init: true$|server: {url}|' \"$new\""
    return f"""if ! sudo test -e {datastore} && curl -sfk --max-time 5 {url}/cacerts >/dev/null 2>&1; then
  echo "iluvatar: $(hostname) has no datastore and a cluster answers at {url}: joining it, not starting another" >&2
  {swap}
elif sudo grep -qx 'server: {url}' {config_path} 2>/dev/null; then
  {swap}
fi
"""


def join_script(
    node: Node,
    config_path: str = CONFIG_PATH,
    ready_timeout: int = READY_TIMEOUT_SECONDS,
    rejoin: str | None = None,
    datastore: str = DATASTORE,
    restart_timeout: int = RESTART_TIMEOUT_SECONDS,
    node_timeout: int = NODE_TIMEOUT_SECONDS,
    etcd_timeout: int = ETCD_TIMEOUT_SECONDS,
    owed: str = RESTART_OWED,
    check: str = "",
    gate: str = "",
    outage: Outage | None = None,
    kubelet: str = KUBELET_DROPIN,
) -> str:
    """Run over SSH with the k3s config on stdin: wait for cloud-init, install the config and the kubelet's drop-in
    (`kubelet_dropin`, at `kubelet`), (re)start k3s when either changed, and
    return only once the Pi is back: k3s serves, its Node is Ready again, and on a valar etcd is healthy.

    Safe to run again at any point: an unchanged config leaves a running k3s alone (`start` is a
    no-op), a changed one restarts it (`enable --now` would not), and a Pi already joined rejoins
    with the same token. `rejoin` (the VIP's URL, for the first valar) lets a rebuilt first valar
    join the running cluster instead of starting a new one (`_rejoin`). The config holds the join token: it is written by root, mode 0600, and
    the temporary copy is removed on any exit.

    The restart is the roll's one disruption, so every wait around it is bounded here, each naming what it
    waited for:
    - a valar whose k3s runs restarts only once etcd is healthy with every member (a member down already and
      this one restarting would cost quorum);
    - a restart is `systemctl stop`, which systemd bounds (90 s, then SIGKILL), then `systemctl start`, which
      returns when k3s tells systemd it is ready (`Type=notify`: a server once its API
      server and etcd are up, k3s pkg/cli/server/server.go, the goroutine after server.StartServer; an agent
      once its networking starts, pkg/agent/run.go) and k3s's unit has no bound of its own (`TimeoutStartSec=0`,
      k3s's install.sh create_systemd_service_file), so it runs under `timeout`;
    - a Pi (re)started waits for its Node Ready with a heartbeat later than the clock read between the stop and the
      start (`stopped`: only the new kubelet posts after it; a restarted kubelet
      posts its status at once: kubelet_node_status.go tryUpdateNodeStatus, lastStatusReportTime zero; the
      Node stays Ready from before until the node lifecycle controller notices, 16 s on the Ainur);
    - a valar then waits for etcd healthy with every member again, so the next Pi's join starts on a whole cluster.

    A restart is owed (RESTART_OWED) from before the config is installed until these gates pass: a join that failed
    or was cut short after it installed the config is run again by the next `pulumi up` with the config unchanged,
    and restarts k3s again and waits again, rather than passing on a Pi that never came back.

    `check`: lines run first, before anything changes, and `gate`: lines run last, before the mark of a restart owed goes
    (a netbooting maia's: it runs the stack's image; its Node Ready since it booted: plans.netboot.roll).

    `outage` (the one valar of an Ainur): a restart of a running k3s is watched from the API's side, and the step says
    how long the API did not answer, warning past what the service address rides out (outage_functions).
    """
    svc = service(node)
    limit = CLOUD_INIT_TIMEOUT_SECONDS
    valar = node.role == "valar"
    before = f'  [ "$active" = 1 ] && wait_for {etcd_timeout} "etcd healthy with every member before k3s restarts" etcd_healthy\n' if valar else ""
    etcd_after = f'wait_for {etcd_timeout} "etcd healthy with every member once k3s runs" etcd_healthy\n' if valar else ""
    # k3s (re)started here, renewing any certificate within its window: the API VIP's kube-vip reads the new admin
    # kubeconfig only by a restart (kube_vip_restart), and the k3s step after the join finds nothing left to renew.
    kube_vip = f'if [ "$changed" = 1 ] || [ "$active" = 0 ]; then\n{textwrap.indent(kube_vip_restart(node), "  ")}fi\n' if valar else ""
    return f"""set -eu
{check}# cloud-init installs k3s in its final stage, after SSH is already up: wait for it (0 done, 2 done with
# recoverable errors; anything else failed or timed out).
status=0
timeout {limit} cloud-init status --wait </dev/null >/dev/null 2>&1 || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  echo "iluvatar: cloud-init on $(hostname) did not finish within {limit} s (status $status); look with: sudo cloud-init status --long" >&2
  exit 1
fi
{gate_functions(node)}{outage_functions(node, outage, restart_timeout + ready_timeout) if outage else ""}umask 077
new=$(mktemp)
dropin=$(mktemp)
trap 'rm -f "$new" "$dropin"' EXIT
cat > "$new"
cat > "$dropin" <<'ILUVATAR_KUBELET'
{kubelet_dropin()}ILUVATAR_KUBELET
{_rejoin(rejoin, config_path, datastore) if rejoin else ""}{secrets_guard(config_path) if valar else ""}if sudo cmp -s "$new" {config_path}; then changed=0; else changed=1; fi
# The kubelet reads its drop-in only as it starts: a new one is a restart too.
sudo cmp -s "$dropin" {kubelet} || changed=1
sudo systemctl enable {svc} >/dev/null 2>&1
active=0
if sudo systemctl is-active --quiet {svc}; then active=1; fi
if sudo test -e {owed}; then
  [ "$changed" = 1 ] || echo "iluvatar: $(hostname): an earlier run's restart of {svc} was not seen through ({seen_by(node)}): restarting it again" >&2
  changed=1
fi
if [ "$changed" = 1 ]; then
{before}  {owe_restart(owed)}  sudo install -D -m 0600 "$new" {config_path}
  sudo install -D -m 0600 "$dropin" {kubelet}
fi
{'if [ "$changed" = 1 ] && [ "$active" = 1 ]; then api_watch_start; fi' + chr(10) if outage else ""}if [ "$changed" = 1 ]; then verb=restart; else verb=start; fi
# A restart stops the old k3s before `since` (`stopped`): a heartbeat later than it is the new kubelet's.
if [ "$verb" = restart ]; then
{textwrap.indent(stopped(node), "  ")}fi
since=$(date +%s)
{bounded_start(node, "$verb", restart_timeout)}deadline=$(( $(date +%s) + {ready_timeout} ))
until {ready_check(node)}; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "iluvatar: {svc} on $(hostname) did not serve within {ready_timeout} s; look with: sudo journalctl -u {svc}" >&2
    exit 1
  fi
  sleep 2
done
{'[ -z "$api_watch" ] || api_watch_report' + chr(10) if outage else ""}if [ "$changed" = 1 ] || [ "$active" = 0 ]; then
  wait_for {node_timeout} "its Node Ready again after k3s's $verb" node_ready_since "$since"
fi
{etcd_after}{kube_vip}{gate}sudo rm -f {owed}
"""


# --- Secrets encrypted at rest --------------------------------------------------------------------------------------
#
# With `secrets-encryption: true` in a server's config, k3s starts its API server with an EncryptionConfiguration for
# Secrets whose first provider is aescbc with a 32-byte key it generates when the file is missing, identity after it
# (k3s pkg/daemons/control/deps/deps.go genEncryptionConfigAndState; CreateRuntimeCertFiles puts it at
# SECRETS_ENCRYPTION_CONFIG). So a Secret written after the restart is sealed; one written before is still read through
# identity, and stays in clear in etcd until it is written again. aescbc, k3s's default provider: `reencrypt` refuses
# secretbox (pkg/server/secrets-encrypt.go encryptionReencrypt).
#
# On an Ainur deployed without it, the config change rolls the valar one at a time like any change of their config (the
# join's gates: etcd healthy, the Node Ready again), and then SECRETS_REWRITE_SCRIPT runs once, on the first valar:
# `k3s secrets-encrypt rotate-keys` adds a new key, waits for every API server to reload the config, rewrites every
# Secret (updateSecrets: a list and an update of each) and drops the old key (encryptionRotateKeys, reencryptAndRemoveKey),
# ending at the stage `reencrypt_finished`. It starts only from `start` or `reencrypt_finished` with every server's
# hash equal (verifyEncryptionHashAnnotation), so the script waits for the hashes to match first.
#
# A rewrite cut short resumes (the k3s sources read are those of the search index, named by commit: the pinned tag's
# tree could not be fetched here). rotate-keys marks the Node `reencrypt_active` without writing k3s's hash file
# (pkg/server/handlers/secrets-encrypt.go encryptionRotateKeys, WriteEncryptionHashAnnotation(..., skipFile=true),
# index 0b6425a), writes the config twice (addAndRotateKeys): first with the new key appended behind the old
# (AppendNewEncryptionKey), then rotated so the new key seals and the old one reads what is not rewritten yet; only at
# the end it drops the last key of the list and writes `reencrypt_finished` to the file. So:
# - while a rewrite runs, the stage reads `reencrypt_active`; the rewrite runs inside k3s's server to its end, whether or
#   not the command that asked for it is still there, so the script waits for the stage to leave it;
# - after k3s restarted mid-rewrite, the Node's annotation comes back from the hash file (pkg/server/server.go
#   setNodeLabelsAndAnnotations, BootstrapEncryptionHashAnnotation): the old stage, with a hash that is no longer the
#   config's, so rotate-keys is refused ("invalid hash", verifyEncryptionHashAnnotation) while status lists two keys (its
#   Active and inactive rows, pkg/cli/secretsencrypt/secrets_encrypt.go Status). `reencrypt --force` skips that check
#   (encryptionReencrypt) and runs the same reencryptAndRemoveKey: every Secret rewritten under the first key, the last
#   key dropped, `reencrypt_finished` written. Cut short between addAndRotateKeys's two writes, the old key is still the
#   first and the new one last: the rewrite then keeps the old key and drops the unused new one, and the Secrets stay
#   sealed (the old key is a k3s key too). It is asked only with two keys listed: with one, it would drop the only key.
# - a stage left at `reencrypt_active` by a rewrite that failed (k3s still up) never moves: the step stops and says how
#   to put back the saved stage (a k3s restart) so that the next run resumes.
# - cut short between reencryptAndRemoveKey's write of the one-key config and its write of `reencrypt_finished` to the
#   hash file (WriteEncryptionHashAnnotation(..., false, ...), which comes after a Node PATCH): one key, the file's
#   stage `start` with the hash of the config before, so rotate-keys is refused ("invalid hash") at every run, and
#   `reencrypt --force` would drop the only key. Every Secret was rewritten by then; the step stops and says how to
#   save the stage k3s would have saved: `reencrypt_finished-<SHA-256 of the config file>` in the hash file
#   (GenEncryptionConfigHash hashes the file's bytes; runtime.EncryptionHash is cred/encryption-state.json,
#   pkg/daemons/control/deps/deps.go), then a restart, which puts it on the Node.
#
# The copies in clear a rewrite leaves behind, said once it is done (docs/security.md#the-ainurs-secrets-at-rest): the
# snapshots taken before it, and every snapshot taken after it until k3s next starts. The old revisions stay live in
# etcd until the apiserver compacts them (every 5 minutes, --etcd-compaction-interval), then as freed pages of etcd's
# bbolt file until a defragment; an etcd snapshot is that file copied whole, freed pages included (bbolt tx.go WriteTo,
# io.CopyN of the whole file), and k3s defragments only as it starts (pkg/etcd/etcd.go defragment, "Defragmenting etcd
# database"). k3s's own schedule takes those snapshots, so the way out is a restart of k3s past one compaction and a
# fresh snapshot, then the older ones deleted. The step restarts nothing itself: a restart of the only valar is the
# operator's choice of when the Ainur's API goes away for a minute.
SNAPSHOTS_BEFORE = (
    "the etcd snapshots taken before now, and every one k3s takes (on its own schedule too) until k3s next starts, can still "
    "hold the Secrets written before the rewrite in clear, the KMS key among them: etcd's file keeps their old revisions in "
    "its freed pages, which a snapshot copies, until k3s defragments it as it starts; so, after 5 minutes (the apiserver's "
    "compaction), run 'sudo systemctl restart k3s' here, wait for the node Ready, take 'sudo k3s etcd-snapshot save', and "
    "delete every snapshot older than that one, here and on the backup target: list them with 'sudo k3s etcd-snapshot list' "
    "and delete with 'sudo k3s etcd-snapshot delete <name>...' (docs/security.md, The Ainur's Secrets at rest)"
)
# What the key protects, and what it does not: docs/security.md#the-ainurs-secrets-at-rest.
SECRETS_ENCRYPTION_CONFIG = "/var/lib/rancher/k3s/server/cred/encryption-config.json"
SECRETS_ENCRYPTION_STATE = "/var/lib/rancher/k3s/server/cred/encryption-state.json"
# Said when a rewrite that ended lost its saved stage (the comment above), printed as is (a quoted here-document). The
# file is written as k3s writes it: mode 0600, no newline.
SECRETS_SAVED_LOST = (
    "k3s refuses rotate-keys for an invalid hash with one key at the stage start: a rewrite that had ended was cut short "
    "before k3s saved its stage, and no run resumes that (reencrypt would drop the only key). Every Secret is already "
    "sealed under that key. Save the stage k3s would have saved, then restart it and run pulumi up again: "
    f'sudo sh -c \'umask 077; printf reencrypt_finished-%s "$(sha256sum {SECRETS_ENCRYPTION_CONFIG} | cut -d" " -f1)" '
    f">{SECRETS_ENCRYPTION_STATE}' && sudo systemctl restart k3s"
)
SECRETS_REWRITE_TIMEOUT_SECONDS = 600
# The lines of `k3s secrets-encrypt status` the script reads (pkg/cli/secretsencrypt/secrets_encrypt.go Status).
ENCRYPTION_ENABLED = "Encryption Status: Enabled"
HASHES_MATCH = "Server Encryption Hashes: All hashes match"
STAGE_LINE = "Current Rotation Stage: "
SECRETS_DONE = "reencrypt_finished"
SECRETS_ACTIVE = "reencrypt_active"
# Every aescbc key k3s names holds this (genEncryptionConfigAndState's first key, AppendNewEncryptionKey's
# `aescbckey-<RFC 3339 time>`): one row of status's key table each. Only two or more mean a rewrite cut short; a table
# the script cannot read (none counted) never makes it rotate again.
KEY_NAME = "aescbckey"


# The rewrite step leaves the on step's record (SECRETS_SWITCHED, below) naming the config it ends with, so that a later
# run of the on step (its command changed in a new release, a new SSH key, the flag given back after an off-`up` that
# did not finish) finds `sealed <the config k3s has>` and stops after one status, with no restart of the only valar:
# - after its own rotation: rotate-keys waits for every API server to load the new config before it rewrites
#   (encryptionRotateKeys, WaitForEncryptionConfigReload), and a rewrite resumed with `reencrypt --force` follows a
#   restart of k3s, which loads the file; either way every Secret is then sealed under a config the API server runs;
# - at its "already rewritten" exit only over a record that says `sealed` already: the on step finished under an
#   earlier config and every switch marks the record before its verb, so what changed the config since is a rotation.


def secrets_rewrite_script(timeout: int = SECRETS_REWRITE_TIMEOUT_SECONDS, poll: int = 5) -> str:
    """Run on the first valar once every valar runs with `secrets-encryption`: rewrite the Secrets written before it, so
    none stays in clear in the datastore or a later snapshot. Safe to run again: from `reencrypt_finished` with one key it
    only says so; from a rewrite cut short it resumes (the comment above)."""
    return f"""set -eu
status() {{ sudo timeout {REQUEST_TIMEOUT_SECONDS} k3s secrets-encrypt status 2>&1; }}
stage() {{ printf '%s\n' "$1" | sed -n 's/^{STAGE_LINE}//p'; }}
keys() {{ printf '%s\n' "$1" | grep -c '{KEY_NAME}' || true; }}
digest() {{ sudo sha256sum {SECRETS_ENCRYPTION_CONFIG} | cut -d' ' -f1; }}
sealed() {{ was=$(digest); sudo install -d -m 0700 {SECRETS_RECORD_DIR}; printf 'sealed %s\n' "$was" | sudo tee {SECRETS_SWITCHED} >/dev/null; }}
end=$(( $(date +%s) + {timeout} ))
{SECRETS_RECORD_MOVED}# Every server restarted with the config and on the same key (rotate-keys refuses otherwise), and no rewrite under way.
until now=$(status) && printf '%s\n' "$now" | grep -qF '{ENCRYPTION_ENABLED}' && printf '%s\n' "$now" | grep -qF '{HASHES_MATCH}' && [ "$(stage "$now")" != {SECRETS_ACTIVE} ]; do
  if [ "$(date +%s)" -ge "$end" ]; then
    if [ "$(stage "${{now:-}}")" = {SECRETS_ACTIVE} ]; then
      echo "iluvatar: $(hostname): a rewrite of the Secrets k3s started did not end within {timeout} s; k3s says: $now; look with: sudo journalctl -u k3s | grep -i secrets; if it failed, 'sudo systemctl restart k3s' puts back the stage k3s last saved, and the next pulumi up resumes from it" >&2
    else
      echo "iluvatar: $(hostname): k3s's secrets encryption is not on with the same key on every valar within {timeout} s; k3s says: $now; look with: sudo k3s secrets-encrypt status" >&2
    fi
    exit 1
  fi
  sleep {poll}
done
if [ "$(stage "$now")" = {SECRETS_DONE} ] && [ "$(keys "$now")" -le 1 ]; then
  echo "iluvatar: $(hostname): the Ainur's Secrets are already rewritten under k3s's key" >&2
  # Sealed under an earlier config by the on step, and rotated since by this step (the comment above secrets_rewrite_script).
  case "$(sudo cat {SECRETS_SWITCHED} 2>/dev/null || true)" in "sealed "*) sealed ;; esac
  exit 0
fi
if [ "$(keys "$now")" -gt 1 ]; then
  # A rewrite cut short by a restart: the new key seals, the old one still reads what was not rewritten.
  echo "iluvatar: $(hostname): resuming the rewrite of the Ainur's Secrets cut short (k3s secrets-encrypt reencrypt --force)" >&2
  sudo timeout {timeout} k3s secrets-encrypt reencrypt --force >&2 || {{ rc=$?; echo "iluvatar: $(hostname): reencrypt returned $rc; waiting for its stage" >&2; }}
else
  echo "iluvatar: $(hostname): rewriting every Secret of the Ainur under k3s's key (k3s secrets-encrypt rotate-keys)" >&2
  # The request may outlive the CLI's own wait while k3s rewrites; the stage says when it is done.
  rc=0; said=$(sudo timeout {timeout} k3s secrets-encrypt rotate-keys 2>&1) || rc=$?
  [ -z "$said" ] || printf '%s\n' "$said" >&2
  if [ "$rc" -ne 0 ]; then
    if printf '%s\n' "$said" | grep -q 'invalid hash' && [ "$(stage "$now")" = start ] && [ "$(keys "$now")" -eq 1 ]; then
      # One key, the stage start, and a hash that is not the config's: a rewrite that had ended, cut short before k3s
      # saved its stage (the comment above). No run resumes it; the fix is the stage k3s would have saved.
      {{ printf 'iluvatar: %s: ' "$(hostname)"; cat <<'SAVED_LOST'
{SECRETS_SAVED_LOST}
SAVED_LOST
      }} >&2
      exit 1
    fi
    echo "iluvatar: $(hostname): rotate-keys returned $rc; waiting for its stage" >&2
  fi
fi
until now=$(status) && [ "$(stage "$now")" = {SECRETS_DONE} ] && [ "$(keys "$now")" -le 1 ] && printf '%s\n' "$now" | grep -qF '{HASHES_MATCH}'; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): the Secrets were not rewritten within {timeout} s; k3s says: $now; look with: sudo journalctl -u k3s | grep -i secrets; the next pulumi up resumes a rewrite cut short" >&2
    exit 1
  fi
  sleep {poll}
done
sealed
echo "iluvatar: $(hostname): every Secret of the Ainur is sealed under k3s's key" >&2
echo "iluvatar: $(hostname): {SNAPSHOTS_BEFORE}" >&2
"""


# Turning the flag off over an Ainur that may have sealed its Secrets. k3s gives its API server the encryption config
# only with the flag (pkg/daemons/control/server.go apiServer: `if cfg.EncryptSecrets { argsMap["encryption-provider-
# config"] = ... }`), so a valar rolled without it reads no Secret stored sealed (`k8s:enc:aescbc:v1:`). The stack's word
# is not the truth of the valar: SECRETS_OFF_SCRIPT runs on the first valar before any Pi's roll and does k3s's own
# disable (k3s-io/docs docs/cli/secrets-encrypt.md, "Secrets Encryption Disable/Re-enable"): `disable`, a restart,
# `reencrypt --force --skip`. SECRETS_ON_SCRIPT does its re-enable after the valar are rolled with the flag again:
# `enable`, a restart, `reencrypt --force --skip`. k3s keeps an encryption config it finds (deps.go
# genEncryptionConfigAndState: `if s, err := os.Stat(runtime.EncryptionConfig); err == nil && s.Size() > 0 { ... return
# nil }`), so valar restarted with the flag over a disable still read identity first until `enable`.
#
# What k3s says and what it does not (k3s sources as the search index holds them, the pinned tag's tree could not be
# fetched: pkg/server/handlers/secrets-encrypt.go at 0b6425a, pkg/secretsencrypt/config.go, pkg/cli/secretsencrypt/
# secrets_encrypt.go at 025949a):
# - status's "Enabled"/"Disabled" is the config *file* (encryptionStatus: GetEncryptionProviders is os.ReadFile), not
#   what the API server runs. `enable` and `disable` (encryptionEnable) write the file first, then cluster.Save, then
#   rewrite every Secret inline (reencryptAndRemoveKey with skip) through the config the API server still holds: they
#   wait for no reload (rotate-keys alone calls WaitForEncryptionConfigReload). So right after either, status says the
#   new word while the Secrets were rewritten under the old one, and nothing in k3s records whether a later rewrite
#   ran: the stage goes back to the one saved in the hash file (BootstrapEncryptionHashAnnotation) after any rewrite
#   with skip, and neither verb writes the hash file or the annotation.
# - the CLI sends `enable`/`disable` with no timeout of its own (secrets_encrypt.go Enable/Disable: info.Put without
#   WithTimeout; RotateKeys alone asks 70 s), so the client's 10 s (pkg/clientaccess/token.go defaultClientTimeout)
#   ends the command while the server goes on rewriting (k3s-io/k3s#11384; #11385 moved only `reencrypt` into a
#   goroutine). Its failure says nothing: the step reads the file's state back from status instead.
# - `reencrypt` marks the Node reencrypt_active before it answers and rewrites in a goroutine (encryptionReencrypt;
#   synchronous before #11385's backports, #11440-#11442, where the CLI gives up the same way with the stage still
#   active), so the step waits for the stage to leave reencrypt_active.
# So a run never takes the status line for done. What proves the Secrets rewritten under the config k3s runs is this
# step's own record, SECRETS_SWITCHED: written only after a rewrite the step saw start and end after its own restart of
# k3s onto the config (`systemctl restart` returns once k3s is ready, Type=notify, its API server running on the file
# as it was then), and naming the SHA-256 of that config (GenEncryptionConfigHash hashes the same bytes), so that any
# later change of the config (a disable, an enable, a rotation by hand) voids it. Without the record, whatever status
# says (but for the config k3s made itself, FRESH_STAGE), a run restarts k3s and rewrites every Secret again, both harmless (one valar: the API away for the restart, as
# in the roll); so a run cut short anywhere, or an `enable` the CLI gave up on, is finished by the next one. The restart
# is not skipped by comparing the file's time with k3s's start: that needs systemd's timestamp parsed with `date -d` on
# the Pi, which the scripts here never ask (uutils date refuses times GNU date reads), and a clock a Pi without its NTP
# time yet cannot vouch for. The valar's join reads the same record
# before it drops the flag (secrets_guard).
#
# One valar: the procedure is k3s's single-server one. On several servers `disable`/`enable` reload only the one they
# run on, and status's "All hashes match" cannot show the others' reload (the hashes are the Nodes' annotations, which
# neither verb nor a restart changes), so the step refuses when k3s lists more than one server rather than rewrite while
# the others still seal; the stack refuses the flag on several valar (stacks.rules._counts).
SECRETS_DISABLED = "Encryption Status: Disabled"
SECRETS_NEVER = "no configuration file found"
# The step's record on the first valar: `clear <sha256>` or `sealed <sha256>` of SECRETS_ENCRYPTION_CONFIG once a switch
# is done, `switching to clear|sealed` from before a switch changes anything until then. In a directory of its own,
# root's alone (0700): its parent also holds METRICS_DIR, which node-exporter's textfile collector reads as uid 65534
# with every capability dropped (plans.monitoring), so the parent keeps the mode `mkdir -p` and the k3s step's
# `os.makedirs` gave it under root's umask (0755), and no script here sets it.
SECRETS_RECORD_DIR = "/var/lib/rancher/iluvatar/secrets"
SECRETS_SWITCHED = f"{SECRETS_RECORD_DIR}/switched"
# Where the record was kept before it had a directory of its own: the steps that wrote it there set the parent to 0700
# (`install -d -m 0700` changes an existing directory's mode), which left the textfile directory unreadable to
# node-exporter. Each switch moves such a record into SECRETS_RECORD_DIR; the join's guard reads either. Every switch
# gives the parent back its 0755 whether or not a record was there to move: a run cut after the `mv` leaves no old record
# for the next run to find, and an Ainur switched off by those steps keeps a 0700 parent with no record beside it (the k3s
# step's certificate writer repairs it too, CERTIFICATES_SCRIPT, whenever a Pi's k3s step runs, whatever the flag).
SECRETS_SWITCHED_BEFORE = "/var/lib/rancher/iluvatar/secrets-switched"
SECRETS_RECORD_MOVED = f"""if sudo test -f {SECRETS_SWITCHED_BEFORE}; then
  sudo install -d -m 0700 {SECRETS_RECORD_DIR}
  sudo test -e {SECRETS_SWITCHED} || sudo mv {SECRETS_SWITCHED_BEFORE} {SECRETS_SWITCHED}
  sudo rm -f {SECRETS_SWITCHED_BEFORE}
fi
if sudo test -d {SECRETS_RECORD_DIR.rsplit("/", 1)[0]}; then sudo chmod 0755 {SECRETS_RECORD_DIR.rsplit("/", 1)[0]}; fi
"""
# ainur-secrets-on is in the program whenever the stack asks for secrets encryption, not only in the `up` that turns it
# back on (components.ainur): so it runs on every Ainur with the flag, a fresh one included, once. Where k3s made its
# config itself as it started with the flag, its API server has run that config from its start and no restart is
# needed: k3s writes it before it starts the API server on it, with one aescbc key named exactly `aescbckey`, and saves
# the stage `start` (pkg/daemons/control/deps/deps.go genEncryptionConfigAndState: `Name: "aescbckey"`, `ann := "start-"
# + hex...` written to runtime.EncryptionHash; the search index's copy). Every other way to an aescbc-first config
# leaves a sign the on step reads: a rotation names its key `aescbckey-<time>` and ends at `reencrypt_finished`
# (AppendNewEncryptionKey, reencryptAndRemoveKey), and the rewrite step rotates once after the flag is given; an
# `enable` after a `disable` can write the very bytes k3s made (WriteEncryptionConfig marshals the same structure) and
# leaves the saved stage as it was, but every switch here writes SECRETS_SWITCHED before its verb. So: status Enabled,
# no SECRETS_SWITCHED at all, the stage `start` and one key `aescbckey` is k3s's own config, and the step only rewrites
# (harmless, and it seals what a first-time flag found in clear before the rewrite step rotates). A `disable`/`enable`
# run by hand before the rewrite step ever finished is the one way past that, and not a way this program takes.
FRESH_STAGE = "start"
K3S_SERVERS = "node-role.kubernetes.io/control-plane=true"


def secrets_off_script(timeout: int = SECRETS_REWRITE_TIMEOUT_SECONDS, poll: int = 5) -> str:
    """Run on the first valar before any valar is rolled without `secrets-encryption`: every Secret rewritten in clear
    under k3s's identity-first config, or the step fails and no valar loses the flag."""
    return _secrets_switch_script(False, timeout, poll)


def secrets_on_script(timeout: int = SECRETS_REWRITE_TIMEOUT_SECONDS, poll: int = 5) -> str:
    """Run on the first valar after the valar are rolled with `secrets-encryption`, before the rewrite step, on every
    Ainur with the flag (once; again each time the flag comes back): a config k3s kept identity-first from a disable is
    turned back on and every Secret sealed again; a config k3s made itself is only rewritten under (FRESH_STAGE)."""
    return _secrets_switch_script(True, timeout, poll)


SECRETS_OFF_STEP = "secrets-off"
SECRETS_ON_STEP = "secrets-on"


def secrets_guard(config_path: str = CONFIG_PATH) -> str:
    """Lines of a valar's join, run with its new config in `$new` before anything changes: a join that would drop the
    flag over Secrets k3s may still seal stops there.

    The off step (ainur-secrets-off) is planned from the last deployment's output, which says what the stack asked, not
    what ran on the valar. So the join reads the valar itself: dropping the flag (the installed config has it, the new one does not)
    over a kept encryption config needs the off step's record that every Secret was rewritten in clear under that very
    config (SECRETS_SWITCHED, written only once its rewrite was seen through under the config k3s had loaded). Status's
    "Disabled" with no rewrite under way is no proof: `disable`'s own rewrite goes through the config the API server
    still holds and puts the saved stage back (encryptionEnable, reencryptAndRemoveKey with skip). It stops with the way
    back: two `up`s, the first of which plans the steps that turn encryption back on, the second the off step.

    Nothing checks the other way (the flag given over a config k3s kept identity-first): k3s sets its encryption
    config's path only with the flag (pkg/daemons/control/deps/deps.go as the search index holds it: `if
    config.EncryptSecrets { runtime.EncryptionConfig = ... }`), so no `enable` can run before the roll; ainur-secrets-on
    follows every roll that gives the flag instead, as it is in the program whenever the stack asks for the flag: an
    `up` that fails or is cut short before it finishes leaves it to the next `up`, and the first `up` with the flag
    after any `up` that planned the off step runs it again (its trigger, components.ainur)."""
    flag = "secrets-encryption: true"
    return f"""if ! grep -qx '{flag}' "$new" && sudo grep -qx '{flag}' {config_path} 2>/dev/null && sudo test -s {SECRETS_ENCRYPTION_CONFIG} \
  && [ "$(sudo cat {SECRETS_SWITCHED} 2>/dev/null || sudo cat {SECRETS_SWITCHED_BEFORE} 2>/dev/null || true)" != "clear $(sudo sha256sum {SECRETS_ENCRYPTION_CONFIG} | cut -d' ' -f1)" ]; then
  echo "iluvatar: $(hostname): this join drops secrets-encryption, and nothing here says every Secret k3s sealed was rewritten in clear under the config k3s runs (ainur-{SECRETS_OFF_STEP} did not finish here): an API server without the flag reads no sealed Secret, so k3s keeps the flag. This up plans no ainur-{SECRETS_OFF_STEP} because the last deployment's output says the Ainur ran without it; to get it, set iluvatar:ainur.secretsEncryption true and run pulumi up (ainur-{SECRETS_ON_STEP} seals every Secret again), then set it false and run pulumi up" >&2
  exit 1
fi
"""


# Said when the on-step is done: the off period's etcd snapshots hold every Secret in clear (the off step rewrote them
# so), and the on step's rewrite leaves the clear revisions in etcd's freed pages as the first rewrite does
# (SNAPSHOTS_BEFORE).
SNAPSHOTS_WHILE_OFF = (
    "every etcd snapshot taken since k3s's secrets encryption was turned off holds every Secret in clear, the KMS key "
    "among them, and so can every one k3s takes until k3s next starts: " + SNAPSHOTS_BEFORE.split(" in clear, the KMS key among them: ", 1)[1]
)


# Said instead where the on step restarted k3s with no off period on record (SNAPSHOTS_WHILE_OFF's condition).
SEALED_ALL_ALONG = (
    "nothing here records an off period of k3s's secrets encryption: every Secret was sealed before this rewrite too, so "
    "no etcd snapshot needs deleting because of this step"
)


def _secrets_switch_script(enable: bool, timeout: int, poll: int) -> str:
    if enable:
        want, wrong, verb, record = ENCRYPTION_ENABLED, SECRETS_DISABLED, "enable", "sealed"
        said = {
            "never": "no encryption config yet: the rewrite step waits for the one k3s makes",
            "made": "k3s made this config itself as it started with secrets-encryption and no switch ran here since (one key, aescbckey, at the stage start): its API server runs it, no restart",
            "already": "every Secret of the Ainur was sealed again by an earlier run, under the config k3s runs",
            "start": "k3s kept its config from a disable (identity first): turning it back on (k3s secrets-encrypt enable)",
            "rewrite": "sealing every Secret written in clear meanwhile (k3s secrets-encrypt reencrypt --force --skip)",
            "done": "every Secret of the Ainur is sealed again under k3s's kept key",
            "after": "the next pulumi up runs this step again",
            "flagless": "k3s runs here without secrets-encryption (its status reads no configuration file) over the encryption config it kept: this valar's join did not restart it with the flag, so nothing is sealed; the next pulumi up runs this step again (look with: sudo grep secrets-encryption /etc/rancher/k3s/config.yaml; sudo systemctl status k3s)",
        }
    else:
        want, wrong, verb, record = SECRETS_DISABLED, ENCRYPTION_ENABLED, "disable", "clear"
        said = {
            "never": "k3s never sealed the Ainur's Secrets (no encryption config): nothing to decrypt",
            "already": "every Secret of the Ainur was rewritten in clear by an earlier run, under the config k3s runs",
            "start": "turning k3s's secrets encryption off before the valar lose the flag (k3s secrets-encrypt disable)",
            "rewrite": "rewriting every Secret of the Ainur in clear (k3s secrets-encrypt reencrypt --force --skip)",
            "done": "every Secret of the Ainur is stored in clear; the valar may run without secrets-encryption",
            "after": "no valar was rolled without secrets-encryption; the next pulumi up runs this step again",
            "flagless": "k3s runs here without secrets-encryption (its status reads no configuration file) over the encryption config it kept, and nothing here says every Secret was rewritten in clear under it: its API server reads no Secret stored sealed. Set iluvatar:ainur.secretsEncryption true and run pulumi up (the valar rolled with the flag, ainur-secrets-on seals every Secret again), then set it false and run pulumi up (docs/security.md#the-ainurs-secrets-at-rest)",
        }
    word = "Enabled" if enable else "Disabled"
    # The snapshots' advice only after an off period this valar shows: status Disabled at this run's start (it runs
    # `enable`), or a record of the off step begun or done, or of an on step begun over one. A restart alone (an Ainur an
    # older Iluvatar deployed with the flag, a run whose record a manual rotation voided) follows no off period here:
    # its Secrets were sealed all along, and the rewrite leaves no copy in clear behind.
    snapshots = (
        f"""if [ "$off" = 1 ]; then
  echo "iluvatar: $(hostname): {SNAPSHOTS_WHILE_OFF}" >&2
elif [ "$restart" = 1 ]; then
  echo "iluvatar: $(hostname): {SEALED_ALL_ALONG}" >&2
fi
"""
        if enable
        else ""
    )
    # Where an on step's mark says it began over an off period, so that a run cut short and run again still says it.
    offs = (
        f"""off=0; from=''
if has "$now" '{SECRETS_DISABLED}'; then off=1; fi
case "$(sudo cat {SECRETS_SWITCHED} 2>/dev/null || true)" in "clear "*|"switching to clear"*|"switching to sealed from clear"*) off=1 ;; esac
if [ "$off" = 1 ]; then from=' from clear'; fi
"""
        if enable
        else "from=''\n"
    )
    fresh = (
        f"""restart=1
if has "$now" '{ENCRYPTION_ENABLED}' && ! sudo test -e {SECRETS_SWITCHED} && [ "$(stage "$now")" = {FRESH_STAGE} ] && made "$now"; then
  echo "iluvatar: $(hostname): {said["made"]}" >&2
  restart=0
fi
"""
        if enable
        else "restart=1\n"
    )
    # Without the flag, status says no configuration file: only the off direction is done there (its record says clear);
    # in the on direction k3s still runs without the flag, whatever the record, and the step fails.
    flagless_done = (
        ""
        if enable
        else f"""  if [ "$(sudo cat {SECRETS_SWITCHED} 2>/dev/null || true)" = "clear $(digest)" ]; then
    echo "iluvatar: $(hostname): {said["already"]}" >&2
    exit 0
  fi
"""
    )
    absent = (
        ""
        if enable
        else f"""if ! command -v k3s >/dev/null 2>&1 || ! sudo test -d {SECRETS_ENCRYPTION_CONFIG.rsplit("/", 1)[0]}; then
  # A first valar rebuilt or not yet installed: no k3s server here has sealed anything.
  echo "iluvatar: $(hostname): no k3s server here yet: nothing to decrypt" >&2
  exit 0
fi
"""
    )
    return f"""set -eu
status() {{ sudo timeout {REQUEST_TIMEOUT_SECONDS} k3s secrets-encrypt status 2>&1; }}
stage() {{ printf '%s\n' "$1" | sed -n 's/^{STAGE_LINE}//p'; }}
has() {{ printf '%s\n' "$1" | grep -qF "$2"; }}
digest() {{ sudo sha256sum {SECRETS_ENCRYPTION_CONFIG} | cut -d' ' -f1; }}
made() {{ [ "$(printf '%s\n' "$1" | grep -c 'AES-CBC' || true)" = 1 ] && printf '%s\n' "$1" | grep -q ' {KEY_NAME}[[:space:]]*$'; }}
end=$(( $(date +%s) + {timeout} ))
{SECRETS_RECORD_MOVED}{absent}until now=$(status); do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): k3s's secrets encryption status could not be read within {timeout} s; k3s says: $now; {said["after"]} (look with: sudo k3s secrets-encrypt status)" >&2
    exit 1
  fi
  sleep {poll}
done
if has "$now" '{SECRETS_NEVER}'; then
  # k3s gives status the config's path only with the flag (deps.go: `if config.EncryptSecrets {{ runtime.EncryptionConfig
  # = ... }}`; encryptionStatus then reads "" and says no configuration file found): that line is no proof that nothing
  # was sealed where the file k3s kept is there.
  if ! sudo test -s {SECRETS_ENCRYPTION_CONFIG}; then
    echo "iluvatar: $(hostname): {said["never"]}" >&2
    exit 0
  fi
{flagless_done}  echo "iluvatar: $(hostname): {said["flagless"]}" >&2
  exit 1
fi
if has "$now" '{want}' && [ "$(sudo cat {SECRETS_SWITCHED} 2>/dev/null || true)" = "{record} $(digest)" ]; then
  echo "iluvatar: $(hostname): {said["already"]}" >&2
  exit 0
fi
servers=$(sudo {KUBECTL} get nodes -l {K3S_SERVERS} -o name) || {{ echo "iluvatar: $(hostname): k3s's servers could not be listed; {said["after"]}" >&2; exit 1; }}
servers=$(printf '%s\n' "$servers" | grep -c . || true)
if [ "$servers" -gt 1 ]; then
  echo "iluvatar: $(hostname): k3s runs $servers servers: its {verb} reloads only the server it runs on, and this step does k3s's single-server procedure, the only one built; with iluvatar:ainur.secretsEncryption true, take the Ainur to one valar first (docs/day2.md#a-dead-pi-removed-for-good), then {"run pulumi up again" if enable else "set it false"}; {said["after"]} (docs/security.md#the-ainurs-secrets-at-rest)" >&2
  exit 1
fi
{fresh}{offs}# Before anything changes: a run cut short from here on leaves this mark, never no record (FRESH_STAGE's comment).
sudo install -d -m 0700 {SECRETS_RECORD_DIR}
echo "switching to {record}$from" | sudo tee {SECRETS_SWITCHED} >/dev/null
if has "$now" '{wrong}'; then
  echo "iluvatar: $(hostname): {said["start"]}" >&2
  # The CLI gives up after 10 s while k3s goes on: the file's state, read back below, says whether it was written.
  sudo timeout {timeout} k3s secrets-encrypt {verb} >&2 || {{ rc=$?; echo "iluvatar: $(hostname): k3s secrets-encrypt {verb} returned $rc; reading k3s's config back" >&2; }}
fi
until now=$(status) && has "$now" '{want}'; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): k3s's secrets encryption is not {word} within {timeout} s; k3s says: $now; {said["after"]}" >&2
    exit 1
  fi
  sleep {poll}
done
was=$(digest)
if [ "$restart" = 1 ]; then
  echo "iluvatar: $(hostname): restarting k3s so that its API server runs that config" >&2
  sudo timeout {timeout} systemctl restart k3s
fi
until now=$(status) && has "$now" '{want}' && [ "$(stage "$now")" != {SECRETS_ACTIVE} ]; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): k3s's secrets encryption is not {word} with no rewrite under way within {timeout} s; k3s says: $now; {said["after"]}" >&2
    exit 1
  fi
  sleep {poll}
done
echo "iluvatar: $(hostname): {said["rewrite"]}" >&2
# k3s marks the stage reencrypt_active before it answers and rewrites in a goroutine: once it answered, the stage
# leaving reencrypt_active is the end. When the CLI failed (a refusal, or its 10 s on a k3s whose reencrypt is
# synchronous) only a stage seen active says the rewrite ran.
seen=0
if sudo timeout {timeout} k3s secrets-encrypt reencrypt --force --skip >&2; then seen=1; else rc=$?; echo "iluvatar: $(hostname): reencrypt returned $rc; reading its stage" >&2; fi
until now=$(status) && [ "$(stage "$now")" != {SECRETS_ACTIVE} ] && [ "$seen" = 1 ]; do
  if [ "$(stage "${{now:-}}")" = {SECRETS_ACTIVE} ]; then
    seen=1
  elif [ "$seen" = 0 ] && [ -n "$(stage "${{now:-}}")" ]; then
    echo "iluvatar: $(hostname): k3s did not start the rewrite (reencrypt failed and its stage never read {SECRETS_ACTIVE}); k3s says: $now; look with: sudo journalctl -u k3s | grep -i secrets; {said["after"]}" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): the Secrets were not rewritten within {timeout} s; k3s says: $now; look with: sudo journalctl -u k3s | grep -i secrets; {said["after"]}" >&2
    exit 1
  fi
  sleep {poll}
done
has "$now" '{want}' && [ "$(digest)" = "$was" ] || {{ echo "iluvatar: $(hostname): k3s's config changed during the rewrite; k3s says: $now; {said["after"]}" >&2; exit 1; }}
sudo install -d -m 0700 {SECRETS_RECORD_DIR}
printf '{record} %s\n' "$(digest)" | sudo tee {SECRETS_SWITCHED} >/dev/null
echo "iluvatar: $(hostname): {said["done"]}" >&2
{snapshots}"""


def kube_vip_container(env: dict[str, str]) -> dict[str, Any]:
    """The kube-vip container, as both of the Ainur's kube-vips run it (the API VIP's static pod, and the
    LoadBalancer addresses' DaemonSet, plans.netboot.kube_vip): only their settings differ."""
    return {
        "name": "kube-vip",
        "image": KUBE_VIP_IMAGE,
        "args": ["manager"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
    }


def kube_vip_manifest(stack: StackConfig) -> dict[str, Any]:
    """Static pod on each valar: ARP leader election holds the API VIP (LoadBalancer addresses are
    the kube-vip-services DaemonSet's, which runs on every Pi, plans.netboot)."""
    assert stack.ainur is not None
    env = {
        "vip_arp": "true",
        "port": str(API_PORT),
        "cp_enable": "true",
        "svc_enable": "false",
        "vip_leaderelection": "true",
        **KUBE_VIP_ELECTION,
        "address": str(stack.ainur.vip),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": True,
            "containers": [{**kube_vip_container(env), "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf"}]}],
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}],
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": KUBECONFIG_PATH}}],
        },
    }


def rewrite_kubeconfig(kubeconfig: str, stack: StackConfig) -> str:
    """k3s writes https://127.0.0.1:6443; point it at the VIP so it works from anywhere."""
    doc = yaml.safe_load(kubeconfig) if kubeconfig else None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise ValueError(f"the first valar returned no kubeconfig from /etc/rancher/k3s/k3s.yaml; is k3s running on {server_url(stack)}?")
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = server_url(stack)
    return yaml.safe_dump(doc, sort_keys=False)


# --- Who may register a Node ----------------------------------------------------------------------------------------
#
# A maia's join token lets whoever holds it join a node of their own (a netbooted maia's token is on its NFS root, which
# any machine taking its address reads). NodeRestriction (k8s v1.35.1 plugin/pkg/admission/noderestriction/
# admission.go) lets a kubelet create its own Node with any taints and forbids it only to set
# `node-restriction.kubernetes.io/` labels (:520-524, :601-620) and, on update, to change its taints (:545-548); the Node
# authorizer gives a node no delete of its Node (plugin/pkg/auth/authorizer/node/node_authorizer.go:416-446). So a node
# joined under a new name would register untainted and every DaemonSet would run there for it. This policy refuses a
# Node created by a node identity whose name is not a Pi of the inventory, and a netbooted maia's Node without its taint.
NODE_ADMISSION = "iluvatar-node-registration"


def _cel_list(names: list[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def node_admission(stack: StackConfig) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy (GA since Kubernetes 1.30) and its binding (Deny) on the Ainur."""
    pis = sorted(n.name for n in stack.ainur_nodes)
    netbooted = sorted(n.name for n in stack.ainur_nodes if n.boot == "netboot")
    tainted = (
        f"has(object.spec.taints) && object.spec.taints.exists(t, t.key == '{NETBOOT_TAINT_KEY}' && t.value == 'netboot' && t.effect == 'NoExecute')"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NODE_ADMISSION},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["nodes"]}]},
            # Only a kubelet's own registration: an admin (or kwok, or k3s' server) may still create any Node.
            "matchConditions": [{"name": "by-a-node", "expression": "request.userInfo.username.startsWith('system:node:')"}],
            "validations": [
                {
                    "expression": f"object.metadata.name in {_cel_list(pis)}",
                    "messageExpression": f"'node ' + object.metadata.name + ' is not a Pi of the inventory ({', '.join(pis)}): a join token does not make a new Pi; add it to iluvatar:nodes'",
                    "reason": "Forbidden",
                },
                {
                    "expression": f"!(object.metadata.name in {_cel_list(netbooted)}) || ({tainted})",
                    "messageExpression": f"'node ' + object.metadata.name + ' netboots and must register with its taint {NETBOOT_TAINT} (its k3s config node-taint)'",
                    "reason": "Forbidden",
                },
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NODE_ADMISSION},
        "spec": {"policyName": NODE_ADMISSION, "validationActions": ["Deny"]},
    }
    return [policy, binding]
