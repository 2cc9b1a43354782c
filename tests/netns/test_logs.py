"""Logs end to end, in network namespaces: the store, the collector, the Pi's journal forwarder and vmalert run as the
homelab configures them, and what Talos, the container runtime and journald send arrives with its machine and service.

One LAN (a bridge): Arda's node with the store (VictoriaLogs) at its address and at the LAN address of its LoadBalancer
Service, and vmalert beside it; a Talos machine whose collector (the OpenTelemetry Collector, the Arda config) reads
/var/log/pods, and which sends its own service logs and kernel messages off the machine, to where its config says (the
Ainur's service address); a Pi holding that address, whose collector (the Ainur config) receives them and names each
line's machine (its `extraTags`, or its address), and whose journal systemd-journal-upload sends with the rendered
journal-upload.conf. Each program's config is the plan's text, in its place (a mount namespace binds /etc/hosts,
/var/log/pods, the checkpoints and journal-upload.conf; the store's data folder and vmalert's rules file are the only
paths changed, and vmalert's evaluation interval, shortened from 1m to 20s so the test waits less).

What is sent is what each sender writes (its source is the spec): Talos's JSON lines from tools.talos_logs; a pod's
line in the CRI format the container runtime writes (containerd v2 internal/cri/io/logger.go: `<RFC 3339 nano> <stream>
<F|P> <text>`) at the kubelet's path; a journal entry in journald's export format, written to a journal file by
systemd-journal-remote and read back by systemd-journal-upload. Each is read back from the store's query API.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plans import logs as plan
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tests.netns.lan import in_ns, require_root, sh, stop
from tests.tools import require
from tools import gotools, talos_logs

require_root()

# This process's own namespace names: two runs of this file on one machine (two clones, two sessions) made the same
# fixed `lgsw` and the second failed "File exists".
PREFIX = f"lg{os.getpid() % 10000}s"
STORE_IP = "192.168.0.22"  # the node the store runs on: tirion, another control plane of the homelab
TALOS_MACHINE = "taniquetil"
PI = "manwe"
NOW = datetime.datetime.now(datetime.UTC)


@dataclass
class Net:
    root: Path
    stack: StackConfig
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def switch(self) -> str:
        return f"{PREFIX}w"

    def ns(self, name: str) -> str:
        return f"{PREFIX}{name}"

    def add(self, name: str, *addresses: str) -> str:
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        in_ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", f"v{name}", "netns", self.switch, "type", "veth", "peer", "name", "eth0", "netns", ns)
        in_ns(self.switch, "ip", "link", "set", f"v{name}", "master", "br0", "up")
        for address in addresses:
            in_ns(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        in_ns(ns, "ip", "link", "set", "eth0", "up")
        return ns

    def start(self, key: str, ns: str, script: str, env: dict[str, str] | None = None) -> None:
        """A program in `ns`, in a mount namespace of its own (the script binds what it needs, then execs it)."""
        log = (self.root / f"{key}.log").open("wb")
        self.procs[key] = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-ec", script], stdout=log, stderr=subprocess.STDOUT, env=env
        )

    def log(self, key: str) -> str:
        return (self.root / f"{key}.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return load_stack_file(HOMELAB)


@pytest.fixture(scope="module")
def net(stack: StackConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    for tool in ("unshare", "curl"):
        require(tool)
    root = tmp_path_factory.mktemp("logs")
    root.chmod(0o755)
    made = Net(root, stack)
    lan = str(plan.lan_address(stack))
    try:
        sh("ip", "netns", "add", made.switch)
        in_ns(made.switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(made.switch, "ip", "link", "set", "br0", "up")
        arda = made.add("a", STORE_IP, lan)
        talos = made.add("t", _talos_ip(stack))
        # The Pi holds the Ainur's service address (kube-vip's), where every Talos machine sends (plans.logs.talos_host).
        pi = made.add("p", str(next(n.ip for n in stack.nodes if n.name == PI)), str(plan.talos_host(stack)))
        hosts = root / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{STORE_IP} {plan.STORE}.{plan.NAMESPACE}.svc\n127.0.0.1 alertmanager-main.monitoring.svc\n")
        _start_store(made, arda)
        _start_alertmanager(made)
        _start_collector(made, "collector", talos, "arda", TALOS_MACHINE, _talos_ip(stack), hosts)
        pi_ip = str(next(n.ip for n in stack.nodes if n.name == PI))
        _start_collector(made, "collector-ainur", pi, "ainur", PI, pi_ip, hosts)
        _start_vmalert(made, arda, hosts)
        yield made
    finally:
        for key in list(made.procs):
            stop(made.procs.pop(key))
        for name in ("t", "p", "a"):
            sh("ip", "netns", "delete", made.ns(name), check=False)
        sh("ip", "netns", "delete", made.switch, check=False)


def _start_store(net: Net, ns: str) -> None:
    data = net.root / "store"
    data.mkdir()
    start_store(net, ns, data)


# The store's admin key, as the Secret's file holds it (components.logs makes it from a RandomPassword).
ADMIN_KEY = "the-stores-admin-key"


def start_store(net: Net, ns: str, data: Path) -> None:
    """The store's pod: the store and its inserter beside it on the pod's loopback (the namespace's), each with its
    rendered flags, the store on `data` and the admin key's file where the test keeps it (the only paths changed)."""
    auth = net.root / "auth"
    auth.mkdir(exist_ok=True)
    (auth / plan.AUTH_KEY).write_text(ADMIN_KEY)
    rendered = plan.store_args(net.stack)
    moved = {f"-storageDataPath={plan.STORE_DATA}": f"-storageDataPath={data}"}
    moved |= {f"-{flag}=file://{plan.AUTH_DIR}/{plan.AUTH_KEY}": f"-{flag}=file://{auth / plan.AUTH_KEY}" for flag in plan.STORE_AUTH_FLAGS}
    assert set(moved) <= set(rendered), rendered
    binary = str(gotools.build("victoria-logs"))
    net.start("store", ns, "exec " + " ".join([binary, *(moved.get(a, a) for a in rendered)]))
    _wait(lambda: _get(f"http://{STORE_IP}:{plan.STORE_PORT}/health", ns) == "OK", "the store answering /health", net, "store")
    inserting = plan.inserter_args()
    keyed = {f"-{flag}=file://{plan.AUTH_DIR}/{plan.AUTH_KEY}": f"-{flag}=file://{auth / plan.AUTH_KEY}" for flag in plan.INSERTER_AUTH_FLAGS}
    assert set(keyed) <= set(inserting), inserting
    net.start("inserter", ns, "exec " + " ".join([binary, *(keyed.get(a, a) for a in inserting)]))
    _wait(lambda: _get(f"http://{STORE_IP}:{plan.INSERT_PORT}/health", ns) == "OK", "the inserter answering /health", net, "inserter")


# A stand-in for Alertmanager's receiving API (vmalert only posts to it): each POST to /api/v2/alerts, a line of alerts.
ALERTMANAGER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/api/v2/alerts":
            with open(sys.argv[1], "a") as out:
                out.write(json.dumps(json.loads(body)) + "\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", 9093), Handler).serve_forever()
"""


def _start_alertmanager(net: Net) -> None:
    (net.root / "alertmanager.py").write_text(ALERTMANAGER)
    net.start("alertmanager", net.ns("a"), f"exec python3 {net.root / 'alertmanager.py'} {net.root / 'posted.jsonl'}")
    _wait(lambda: _listening(net.ns("a"), 9093), "the Alertmanager stand-in", net, "alertmanager")


def posted(net: Net) -> list[dict[str, Any]]:
    path = net.root / "posted.jsonl"
    return [a for line in (path.read_text().splitlines() if path.exists() else []) for a in json.loads(line)]


def _start_collector(net: Net, key: str, ns: str, cluster: str, node: str, node_ip: str, hosts: Path) -> None:
    """One cluster's collector on one machine, its DaemonSet pod's host paths in their places."""
    pods, checkpoints = net.root / key / "pods", net.root / key / "checkpoints"
    pods.mkdir(parents=True)
    checkpoints.mkdir()
    config = net.root / key / "collector.yaml"
    config.write_text(plan.collector(net.stack, cluster)[0]["data"]["config.yaml"])
    binary = gotools.build("otelcol")
    # The host paths of the DaemonSet's pod (the pods' logs, the checkpoints) and the cluster's names, in their places.
    mounts = f"""
mount -t tmpfs none /var/log && mkdir -p {plan.PODS_LOG_DIR} && mount --bind {pods} {plan.PODS_LOG_DIR}
mount -t tmpfs none /var/lib && mkdir -p {plan.CHECKPOINTS} && mount --bind {checkpoints} {plan.CHECKPOINTS}
mount --bind {hosts} /etc/hosts
"""
    # The DaemonSet's downward API: the node's name, and its address (the pod's, on the host's network).
    env = {"NODE_NAME": node, "NODE_IP": node_ip, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    checked = subprocess.run(
        ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-ec", f"{mounts}exec {binary} validate --config={config}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    net.start(key, ns, f"{mounts}exec {binary} --config={config}", env=env)
    if cluster == plan.talos_cluster(net.stack):
        _wait(lambda: _listening(ns, plan.SERVICE_PORT) and _listening(ns, plan.KERNEL_PORT), "the collector listening for Talos", net, key)
    else:
        _wait(lambda: _get(f"http://{node_ip}:{plan.TELEMETRY_PORT}/metrics", ns) != "", "the collector's metrics", net, key)


def _talos_ip(stack: StackConfig) -> str:
    return str(next(n.ip for n in stack.nodes if n.name == TALOS_MACHINE))


def _start_vmalert(net: Net, ns: str, hosts: Path) -> None:
    rules = net.root / "rules.yaml"
    rules.write_text(plan.vmalert(net.stack)[0]["data"]["rules.yaml"])
    args = []
    for arg in plan.vmalert_args(net.stack):
        if arg.startswith("-rule="):
            arg = f"-rule={rules}"
        elif arg.startswith("-evaluationInterval="):
            # Each evaluation counts the lines stamped within its interval, so a line the store took longer than the interval to
            # ingest (the collector's batch, a loaded machine) is never counted: 20 s leaves that lag room, at 5 s CI missed it.
            arg = "-evaluationInterval=20s"
        args.append(arg)
    binary = gotools.build("vmalert")
    net.start("vmalert", ns, f"mount --bind {hosts} /etc/hosts\nexec {binary} " + " ".join(f"'{a}'" for a in args))
    _wait(lambda: _get(f"http://127.0.0.1:{plan.VMALERT_PORT}/health", ns) == "OK", "vmalert answering /health", net, "vmalert")


def _listening(ns: str, port: int) -> bool:
    listening = in_ns(ns, "ss", "-Hltn", check=False).stdout
    # On any local address (Go's listener on every address shows as `*`); the peer column has no port.
    return f":{port} " in listening


def _get(url: str, ns: str) -> str:
    done = in_ns(ns, "curl", "-sS", "--max-time", "5", url, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _wait(ready: Any, what: str, net: Net, key: str, bound: float = 90) -> None:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if ready():
            return
        if net.procs[key].poll() is not None:
            pytest.fail(f"{key} exited while waiting for {what}:\n{net.log(key)}")
        time.sleep(0.5)
    pytest.fail(f"waited {bound} s for {what}:\n{net.log(key)}")


def query(net: Net, logsql: str) -> list[dict[str, Any]]:
    """The store's query API, as Grafana's plugin asks it (/select/logsql/query, one JSON object a line)."""
    url = f"http://{STORE_IP}:{plan.STORE_PORT}/select/logsql/query?" + urllib.parse.urlencode({"query": logsql, "limit": "100"})
    out = _get(url, net.ns("a"))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(net: Net, logsql: str, count: int = 1, bound: float = 60) -> list[dict[str, Any]]:
    end = time.monotonic() + bound
    found: list[dict[str, Any]] = []
    while time.monotonic() < end:
        found = query(net, logsql)
        if len(found) >= count:
            return found
        time.sleep(1)
    pytest.fail(f"the store has {len(found)} line(s) for {logsql!r}, not {count}:\ncollector:\n{net.log('collector')}\nstore:\n{net.log('store')}")


# --- What each machine sends ------------------------------------------------------------------------------------

BOOT = NOW - datetime.timedelta(hours=1)
KERNEL_OOM = "Out of memory: Killed process 4242 (stress-ng) total-vm:1048576kB, anon-rss:524288kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1104kB oom_score_adj:1000"
KERNEL_IO = "I/O error, dev sdb, sector 4096 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2"
KERNEL_QUIET = "I/O scheduler mq-deadline registered"
ETCD_SLOW = '{"level":"warn","ts":"%s","caller":"txn/util.go:93","msg":"apply request took too long","took":"1.2s","expected-duration":"100ms"}'
KUBELET_BACKOFF = (
    'E1125 18:00:00.000000    1234 pod_workers.go:1324] "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for '
    '\\"{c}\\" with CrashLoopBackOff: \\"back-off 40s restarting failed container={c} pod={p}_{ns}(0f1d2c3b-aaaa-bbbb-cccc-000000000001)\\"" '
    'pod="{ns}/{p}" podUID="0f1d2c3b-aaaa-bbbb-cccc-000000000001"'
)
POD_LINE = "jellyfin: library scan finished in 42 s"


def _send_talos(net: Net) -> None:
    """The machine's lines sent where its config sends them (its one destination, with its `extraTags`; its
    KmsgLogConfig's url), from the machine's own address: off the machine, to the Pi holding the Ainur's address."""
    [destination] = plan.talos_logging(net.stack, TALOS_MACHINE)["destinations"]
    [kmsg] = plan.kmsg_document(net.stack)
    tags = destination["extraTags"]

    def service(name: str, line: str) -> bytes:
        return talos_logs.service_line(name, line, NOW, tags)

    services = [service("etcd", ETCD_SLOW % talos_logs.rfc3339_nano(NOW + datetime.timedelta(milliseconds=i))) for i in range(3)]
    services.append(service("kubelet", KUBELET_BACKOFF.format(c="kube-apiserver", p=f"kube-apiserver-{TALOS_MACHINE}", ns="kube-system")))
    services.append(service("kubelet", KUBELET_BACKOFF.format(c="jellyfin", p="jellyfin-7d9f8-abcde", ns="media")))
    # In kube-system, but not a control plane's: CoreDNS crash-looping is not ControlPlanePodCrashLooping.
    services.append(service("kubelet", KUBELET_BACKOFF.format(c="coredns", p="coredns-6d4b75cb6d-x2x9z", ns="kube-system")))
    clock = int((NOW - BOOT).total_seconds() * 1_000_000)
    kernel = [
        talos_logs.kernel_line(f"3,1042,{clock};{KERNEL_OOM}", BOOT),
        talos_logs.kernel_line(f"3,1043,{clock + 10};{KERNEL_IO}", BOOT),
        talos_logs.kernel_line(f"6,1044,{clock + 20};{KERNEL_QUIET}", BOOT),
    ]
    for url, lines in ((destination["endpoint"], services), (kmsg["url"], kernel)):
        where = urllib.parse.urlsplit(url)
        assert where.scheme == "tcp" and where.hostname == str(plan.talos_host(net.stack)), url
        file = net.root / f"talos-{where.port}.jsonl"
        file.write_bytes(b"".join(lines))
        done = in_ns(net.ns("t"), "python3", "-m", "tools.talos_logs", str(where.port), str(file), where.hostname, check=False, timeout=30)
        assert done.returncode == 0, done.stderr


def _write_pod_line(net: Net) -> None:
    # The kubelet's layout (BuildContainerLogsDirectory): <namespace>_<pod>_<uid>/<container>/<restart count>.log.
    folder = net.root / "collector" / "pods" / "media_jellyfin-7d9f8-abcde_0f1d2c3b-aaaa-bbbb-cccc-000000000002" / "jellyfin"
    folder.mkdir(parents=True)
    half = len(POD_LINE) // 2
    stamp = talos_logs.rfc3339_nano(NOW)
    # A line the runtime split in two (P, then F): the collector joins it.
    (folder / "0.log").write_text(f"{stamp} stdout P {POD_LINE[:half]}\n{stamp} stdout F {POD_LINE[half:]}\n")


def _send_journal(net: Net) -> None:
    """Two entries of a Pi's journal (its k3s unit, its kernel) uploaded as systemd-journal-upload does."""
    usec = int(NOW.timestamp() * 1_000_000)
    entries = [
        {
            "MESSAGE": "Killed process 777 (k3s-server) total-vm:1200000kB; Memory cgroup out of memory",
            "_TRANSPORT": "kernel",
            "SYSLOG_IDENTIFIER": "kernel",
            "PRIORITY": "3",
        },
        {
            "MESSAGE": "k3s: etcd: apply request took too long",
            "_TRANSPORT": "journal",
            "_SYSTEMD_UNIT": "k3s.service",
            "SYSLOG_IDENTIFIER": "k3s",
            "PRIORITY": "4",
        },
    ]
    export = b""
    for i, entry in enumerate(entries):
        fields = {
            "__CURSOR": f"s=0;i={i + 1}",
            "__REALTIME_TIMESTAMP": str(usec + i),
            "__MONOTONIC_TIMESTAMP": str(1000 + i),
            "_BOOT_ID": "4b2c4f0d6f3e4b1c9f3e0c6a2d9e8f70",
            "_MACHINE_ID": "0d6f3e4b1c9f3e0c6a2d9e8f704b2c4f",
            "_HOSTNAME": PI,
            **entry,
        }
        export += b"".join(f"{k}={v}\n".encode() for k, v in fields.items()) + b"\n"
    journal = net.root / "pi.journal"
    remote = require("systemd-journal-remote") if Path("/usr/bin/systemd-journal-remote").exists() else "/lib/systemd/systemd-journal-remote"
    made = subprocess.run([remote, f"--output={journal}", "-"], input=export, capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    conf = net.root / "journal-upload.conf"
    conf.write_text(plan.journal_upload_conf(net.stack))
    upload = "/lib/systemd/systemd-journal-upload"
    # --follow=no: the file is all there is (the unit follows the system journal); the URL is the config's.
    script = f"mount --bind {conf} {plan.JOURNAL_UPLOAD_CONF}\nexec {upload} --file={journal} --follow=no --save-state={net.root}/upload.state"
    done = subprocess.run(["ip", "netns", "exec", net.ns("p"), "unshare", "-m", "sh", "-ec", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def sent(net: Net) -> Net:
    # The lines are stamped when sent, not when the module was imported: in a full run the file starts minutes after
    # collection, and vmalert counts only lines stamped within its lookback, so stamps from import time never alerted.
    global NOW
    NOW = datetime.datetime.now(datetime.UTC)
    _send_talos(net)
    _write_pod_line(net)
    _send_journal(net)
    return net


# --- What arrives -------------------------------------------------------------------------------------------------


def test_the_configs_pass_their_programs_checks(net: Net) -> None:
    """The collector's (`otelcol validate`, at the fixture) and vmalert's rules (`-dryRun`), as rendered."""
    rules = net.root / "dry-rules.yaml"
    rules.write_text(plan.vmalert(net.stack)[0]["data"]["rules.yaml"])
    done = subprocess.run(
        [str(gotools.build("vmalert")), "-dryRun", f"-rule={rules}", "-rule.defaultRuleType=vlogs"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Each component by its name at v0.165.0, not a deprecated alias (tcplog, filelog, otlphttp warned as such).
    for key in ("collector", "collector-ainur"):
        assert "deprecated" not in net.log(key), net.log(key)


def test_the_store_runs_with_the_stacks_size_as_its_bound(net: Net) -> None:
    """The store started with the rendered flags bounds its data at 80 % of `logs.size` in bytes, whatever the
    filesystem: VictoriaLogs lists every flag it parsed on /metrics (VictoriaMetrics lib/appmetrics/appmetrics.go:86)."""
    metrics = _get(f"http://{STORE_IP}:{plan.STORE_PORT}/metrics", net.ns("a"))
    flags = dict(re.findall(r'^flag\{name="(retention\.max\w+)", value="([^"]*)", is_set="true"\} 1$', metrics, re.M))
    assert flags == {"retention.maxDiskSpaceUsageBytes": str(plan.retention_bytes(net.stack))}, flags
    assert plan.retention_bytes(net.stack) == int(plan.settings(net.stack).size.removesuffix("Gi")) * 1024**3 * 4 // 5
    # Every store gauge the store's fill alerts read is one the real store exposes, by that name, under its path; it is
    # writable now, and its bound is the stack's.
    read = {m for a in plan.pipeline_alerts(net.stack) for m in re.findall(r"vl_\w+", a.expr)}
    assert read == {
        "vl_storage_is_read_only",
        "vl_data_size_bytes",
        "vl_max_disk_space_usage_bytes",
        "vl_free_disk_space_bytes",
        "vl_total_disk_space_bytes",
    }
    gauges = {m.group(1) for m in re.finditer(r"^(vl_\w+)\{", metrics, re.M)}
    assert read <= gauges, sorted(read - gauges)
    # (The path is the test's own data folder, -storageDataPath, put in for plan.STORE_DATA.)
    assert re.search(r'^vl_storage_is_read_only\{path="[^"]+"\} 0$', metrics, re.M), "writable"
    assert re.search(rf'^vl_max_disk_space_usage_bytes\{{path="[^"]+"\}} {plan.retention_bytes(net.stack)}$', metrics, re.M)


def test_the_collectors_metrics_are_on_its_machines_address_under_the_alerts_names(sent: Net) -> None:
    """What Prometheus scrapes (plans.logs.monitors) and the pipeline's alerts read: the exporter's queue and failure
    counters, by these names, at the machine's address."""
    wait_for(sent, f'machine:="{TALOS_MACHINE}" service:=etcd', 3)
    # The store shows a line as it takes it in, before its answer reaches the collector, which counts the line sent only
    # once that answer is back (exporterhelper v0.165.0 internal/obs_report_sender.go:93-94, Send then endOp): a CI run
    # read the metrics in between. So wait for the counter itself.
    url, metrics = f"http://{_talos_ip(sent.stack)}:{plan.TELEMETRY_PORT}/metrics", ""

    def counted() -> bool:
        nonlocal metrics
        metrics = _get(url, sent.ns("a"))
        return re.search(r'^otelcol_exporter_sent_log_records\{[^}]*exporter="otlp_http/store"[^}]*\} [1-9]', metrics, re.M) is not None

    _wait(counted, "the collector's exporter to count a line sent to the store", sent, "collector")
    series = {m.group(1): m.group(2) for m in re.finditer(r'^(otelcol_exporter_\w+)\{[^}]*exporter="otlp_http/store"[^}]*\} (\S+)$', metrics, re.M)}
    assert {"otelcol_exporter_queue_size", "otelcol_exporter_sent_log_records"} <= set(series), metrics
    assert float(series["otelcol_exporter_queue_capacity"]) == plan.QUEUE_BYTES, "the queue's bound, in bytes"
    # Every collector metric the pipeline's alerts read is one the collector exposes, by that name (no `_total`).
    read = {m for a in plan.pipeline_alerts(sent.stack) for m in re.findall(r"otelcol_\w+", a.expr)}
    assert read == {"otelcol_exporter_queue_size", "otelcol_exporter_enqueue_failed_log_records", "otelcol_exporter_send_failed_log_records"}
    exposed = set(re.findall(r"^# TYPE (otelcol_\w+) ", metrics, re.M))
    # The two failure counters appear only once something failed; until then their names are the pinned module's own
    # (the collector's build downloaded it), made as their exposed sibling counter `sent_log_records` is: no `_total`.
    generated = Path(gotools.go_env()["GOMODCACHE"]) / "go.opentelemetry.io/collector/exporter/exporterhelper@v0.165.0"
    names = set(re.findall(r'"(otelcol_exporter_\w+)"', (generated / "internal/metadata/generated_telemetry.go").read_text()))
    assert "otelcol_exporter_queue_size" in exposed and "# TYPE otelcol_exporter_sent_log_records counter" in metrics
    assert read - exposed <= names and "otelcol_exporter_sent_log_records" in names, sorted(read - exposed - names)


def test_a_talos_service_line_arrives_with_its_machine_and_service(sent: Net) -> None:
    [line, *_] = wait_for(sent, f'machine:="{TALOS_MACHINE}" service:=etcd "apply request took too long"', 3)
    assert line["cluster"] == "arda"
    assert line["_msg"] == "apply request took too long"
    # Talos's own fields of the line (extract.go kept them), as the collector parsed them.
    assert line["caller"] == "txn/util.go:93" and line["took"] == "1.2s"
    assert line["_stream"] == '{cluster="arda",machine="taniquetil",service="etcd"}'


def test_talos_lines_leave_the_machine_without_its_own_collector(sent: Net) -> None:
    """Nothing on the Talos machine listens for Talos (its kubelet, containerd or collector may be down): its lines
    reach the Pi's collector, which names them by the machine, not by itself."""
    wait_for(sent, f'machine:="{TALOS_MACHINE}" service:=kernel', 3)
    assert not _listening(sent.ns("t"), plan.SERVICE_PORT) and not _listening(sent.ns("t"), plan.KERNEL_PORT)
    assert query(sent, f'machine:="{PI}" cluster:=arda') == [], "no Talos line is named after the Pi that received it"


def test_a_kernel_message_arrives_as_talos_sends_it(sent: Net) -> None:
    """KmsgLogConfig has no tag: the machine is the inventory's name for the address the connection came from."""
    [line] = wait_for(sent, f'machine:="{TALOS_MACHINE}" service:=kernel "Killed process"')
    assert line["_msg"] == KERNEL_OOM
    assert (line["facility"], line["priority"], line["seq"]) == ("kern", "err", "1042")
    assert line["_stream"] == '{cluster="arda",machine="taniquetil",service="kernel"}'


def test_a_pod_line_arrives_joined_with_its_pod(sent: Net) -> None:
    [line] = wait_for(sent, f'machine:="{TALOS_MACHINE}" k8s.pod.name:="jellyfin-7d9f8-abcde"')
    assert line["_msg"] == POD_LINE, "the runtime's partial line (P) and its end (F) are one line"
    assert (line["k8s.namespace.name"], line["k8s.container.name"], line["service"]) == ("media", "jellyfin", "jellyfin")


def test_a_pis_journal_arrives_with_its_host_and_unit(sent: Net) -> None:
    [line] = wait_for(sent, f'_HOSTNAME:="{PI}" _SYSTEMD_UNIT:="k3s.service"')
    assert line["_msg"] == "k3s: etcd: apply request took too long"
    assert line["_stream"] == '{_HOSTNAME="manwe",_MACHINE_ID="0d6f3e4b1c9f3e0c6a2d9e8f704b2c4f",_SYSTEMD_UNIT="k3s.service"}'


def test_each_machines_dashboard_shows_its_own_lines(sent: Net) -> None:
    """Every panel's query of the two machines' dashboards, as the datasource plugin sends it: its own lines only."""
    wait_for(sent, "service:=kernel", 3)
    talos = next(n for n in sent.stack.nodes if n.name == TALOS_MACHINE)
    pi = next(n for n in sent.stack.nodes if n.name == PI)
    got = {title: sorted(line["_msg"] for line in query(sent, q)) for title, q in plan.machine_queries(sent.stack, talos).items()}
    assert got["Kernel messages"] == sorted([KERNEL_OOM, KERNEL_IO, KERNEL_QUIET])
    assert len(got["Talos services"]) == 6
    assert all(any(w in m for w in ("kube-apiserver", "jellyfin", "coredns", "apply request")) for m in got["Talos services"])
    assert got["Pods"] == [POD_LINE]
    pi_got = {title: [line["_msg"] for line in query(sent, q)] for title, q in plan.machine_queries(sent.stack, pi).items()}
    assert pi_got["Kernel messages"] == ["Killed process 777 (k3s-server) total-vm:1200000kB; Memory cgroup out of memory"]
    assert pi_got["Services (journal)"] == ["k3s: etcd: apply request took too long"]
    other = next(n for n in sent.stack.nodes if n.name == "tirion")
    assert all(query(sent, q) == [] for q in plan.machine_queries(sent.stack, other).values()), "a machine that sent nothing shows nothing"


def test_the_log_alerts_fire_on_the_lines_that_should_fire_them(sent: Net) -> None:
    """vmalert, with the rendered rules, against the store: what it posts to Alertmanager."""
    expected = {
        ("KernelOomKill", "taniquetil"),
        ("KernelOomKill", "manwe"),
        ("DiskIOError", "taniquetil"),
        ("EtcdSlowApply", "taniquetil"),
        ("ControlPlanePodCrashLooping", "taniquetil"),
    }
    # Every machine that sent nothing has its silence alert pending by its name (the store's stats without `by` give
    # one row, of 0), for 30 minutes before it fires: none is posted (a machine being installed pages nobody). The two
    # that sent are not pending: their lines came in before the rule's first evaluation found the silence, or after.
    missing = ("MachineLogsMissing", "TalosLogsMissing", "PiJournalMissing")
    silent = {
        *((name, n.name) for n in sent.stack.arda_nodes if n.name != TALOS_MACHINE for name in ("MachineLogsMissing", "TalosLogsMissing")),
        *(("PiJournalMissing", n.name) for n in sent.stack.ainur_nodes if n.name != PI),
    }
    end = time.monotonic() + 120
    fired: set[tuple[str, str]] = set()
    active: set[tuple[str, str]] = set()
    summaries: dict[tuple[str, str], str] = {}
    while time.monotonic() < end and not (expected <= fired and active == silent):
        fired = {
            (a["labels"]["alertname"], a["labels"].get("machine") or a["labels"].get("_HOSTNAME", ""))
            for a in posted(sent)
            if a["labels"].get("machine") != LATE_MACHINE
        }
        listed = json.loads(_get(f"http://127.0.0.1:{plan.VMALERT_PORT}/api/v1/alerts", sent.ns("a")) or '{"data": {"alerts": []}}')
        pending = [a for a in listed["data"]["alerts"] if a["labels"]["alertname"] in missing and a["state"] == "pending"]
        active = {(a["labels"]["alertname"], a["labels"]["machine"]) for a in pending}
        summaries = {(a["labels"]["alertname"], a["labels"]["machine"]): a["annotations"]["summary"] for a in pending}
        time.sleep(1)
    assert fired == expected, f"fired {sorted(fired)}\nvmalert:\n{sent.log('vmalert')}"
    assert active == silent, f"active {sorted(active)}"
    crashes = [a for a in posted(sent) if a["labels"]["alertname"] == "ControlPlanePodCrashLooping"]
    assert sorted({a["labels"].get("pod", "") for a in crashes}) == ["kube-apiserver-taniquetil"], (
        "jellyfin's and CoreDNS's back-offs are no control plane's"
    )
    crash = crashes[0]
    assert crash["annotations"]["summary"] == "Control-plane pod kube-apiserver-taniquetil on taniquetil is crash-looping"
    oom = {a["labels"].get("machine") or a["labels"]["_HOSTNAME"]: a for a in posted(sent) if a["labels"]["alertname"] == "KernelOomKill"}
    assert oom["manwe"]["annotations"]["summary"] == "The kernel of manwe killed a process for memory"
    # The Pi's k3s line says "apply request took too long" once: under EtcdSlowApply's three.
    assert ("EtcdSlowApply", "manwe") not in fired
    pi = next(n.name for n in sent.stack.ainur_nodes if n.name != PI)
    assert summaries["PiJournalMissing", pi] == f"No journal from {pi} for 30m"
    assert summaries["TalosLogsMissing", "tirion"] == "No Talos logs from tirion for 30m"


LATE_MACHINE = "valmar"  # not in the inventory: its alert is this test's alone


def test_a_line_the_store_ingests_late_still_alerts(sent: Net) -> None:
    """A kernel OOM line stamped 3 minutes before the store takes it, as a collector's queue delivers it after an
    outage: older than any evaluation interval (20 s here), inside the rules' own 5-minute lookback, so it alerts; on one
    interval's lines (vmalert's time filter without `_time`) it never would. Written to the inserter's JSON lines API."""
    stamp = talos_logs.rfc3339_nano(datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=3))
    line = {"_time": stamp, "_msg": "Out of memory: Killed process 9 (late)", "cluster": "arda", "machine": LATE_MACHINE, "service": "kernel"}
    body = sent.root / "late.json"
    body.write_text(json.dumps(line) + "\n")
    url = f"http://{STORE_IP}:{plan.INSERT_PORT}/insert/jsonline?_stream_fields=cluster,machine,service"
    # Its own content type: with curl's default (a form), the store reads the body as the form's parameters.
    done = in_ns(sent.ns("a"), "curl", "-sS", "--fail", "-H", "Content-Type: application/stream+json", "--data-binary", f"@{body}", url, check=False)
    assert done.returncode == 0, done.stderr
    wait_for(sent, f'machine:="{LATE_MACHINE}"')
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if any(a["labels"]["alertname"] == "KernelOomKill" and a["labels"].get("machine") == LATE_MACHINE for a in posted(sent)):
            return
        time.sleep(2)
    pytest.fail(f"no KernelOomKill for the late line\nvmalert:\n{sent.log('vmalert')}")


def _call(ns: str, url: str, *curl: str) -> tuple[int, str]:
    """An HTTP request from `ns`: its status and its body."""
    done = in_ns(ns, "curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", *curl, url, check=False)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body.strip()


def test_a_writer_writes_and_reads_nothing_and_cannot_delete_or_detach_a_day(sent: Net) -> None:
    """What the writers reach (the inserter's port, plans.logs.store_network_policies) takes their lines into the store,
    and answers no query, no delete and no partition call; the store's own port, which only the readers reach, answers
    a query, deletes nothing, and detaches a day (or lists, or snapshots) only with the key of its Secret's file."""
    ns = sent.ns("t")  # a writer's machine: the Talos machine, whose collector sends to the inserter
    writer, store = f"http://{STORE_IP}:{plan.INSERT_PORT}", f"http://{STORE_IP}:{plan.STORE_PORT}"
    line = {"_msg": "a writer's own line", "cluster": "arda", "machine": TALOS_MACHINE, "service": "forged"}
    body = sent.root / "writer.json"
    body.write_text(json.dumps(line) + "\n")
    stream = "/insert/jsonline?_stream_fields=cluster,machine,service"
    assert _call(ns, writer + stream, "-H", "Content-Type: application/stream+json", "--data-binary", f"@{body}") == (200, "")
    wait_for(sent, '"a writer\'s own line"')
    asked = "?" + urllib.parse.urlencode({"query": "*", "limit": "10"})
    assert _call(ns, f"{writer}/select/logsql/query{asked}") == (400, "requests to /select/* are disabled with -select.disable command-line flag")
    assert _call(ns, f"{writer}/internal/select/query{asked}")[0] == 400
    assert _call(ns, f"{writer}/select/vmui/")[0] == 400
    today = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    # No storage of its own: the partition calls are no path of the inserter's.
    for call in ("detach", "attach", "list", "snapshot/create", "snapshot/list", "snapshot/delete_stale"):
        status, said = _call(ns, f"{writer}/internal/partition/{call}?name={today}", "-X", "POST")
        assert (status, said) == (400, f'unsupported path requested: "/internal/partition/{call}"'), call
    for url in (writer, store):
        status, said = _call(ns, f"{url}/delete/run_task?" + urllib.parse.urlencode({"filter": "*"}), "-X", "POST")
        assert status == 400 and said.startswith("requests to /delete/* are disabled"), (url, said)
        status, said = _call(ns, f"{url}/internal/delete/run_task", "-X", "POST")
        assert status == 400 and said.startswith("requests to /internal/delete/* are disabled"), (url, said)
    # The store's port (the readers'): its partitions only with the key the Secret's file holds.
    assert _call(ns, f"{store}/internal/partition/detach?name={today}", "-X", "POST") == (
        401,
        "Expected to receive non-empty authKey when -partitionManageAuthKey is set",
    )
    assert _call(ns, f"{store}/internal/partition/detach?name={today}&authKey=guessed", "-X", "POST") == (
        401,
        "The provided authKey doesn't match -partitionManageAuthKey",
    )
    for path in ("/internal/force_merge", "/internal/force_flush", "/internal/log_new_streams", "/flags", "/debug/pprof/cmdline"):
        assert _call(ns, store + path)[0] == 401, path
    # Nor the inserter's profiles (a CPU profile or a trace costs the store's pod CPU) without the key.
    for path in ("/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"):
        assert _call(ns, writer + path) == (401, "Expected to receive non-empty authKey when -pprofAuthKey is set"), path
    assert _call(ns, f"{writer}/debug/pprof/cmdline?authKey={ADMIN_KEY}")[0] == 200
    status, days = _call(ns, f"{store}/internal/partition/list?authKey={ADMIN_KEY}")
    assert status == 200 and today in json.loads(days), days
    assert len(query(sent, '"a writer\'s own line"')) == 1, "the day is still there"
