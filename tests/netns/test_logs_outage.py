"""The collector through a store outage, in network namespaces: the real collector with the plan's config keeps what
Talos sent while the store is away, longer than its retries' limit and across its own restart, and delivers it when
the store is back (plans.logs: the persistent sending queue and retries without end).

The same LAN as tests/netns/test_logs.py (its own namespaces): the store (VictoriaLogs) on Arda's node (and its LAN
address), a Talos machine that sends its service logs where its config says, and the Pi holding that address (the
Ainur's service address), whose collector (the config of `plans.logs.talos_cluster`) receives them. Two timings of the config are shortened so the test waits less, each a
setting the collector reads the same way whatever its value (configretry v1.71.0 generated_config.go:15-31): the
retries' first and longest interval (1 s, 5 s instead of 5 s, 30 s), and, where the config leaves the retries' limit
at its default of 5 minutes (`max_elapsed_time`, after which "the data is discarded"), that limit scaled to 20 s. A
limit the config sets itself is kept as rendered (the plan's 0: never give up). The store is away for 30 s, longer
than the scaled limit; the collector is killed (SIGKILL, as a power cut or an OOM kill) and restarted meanwhile.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import logs as plan
from plans.nfs_guard import POD_CIDR
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tests.netns import test_logs as base
from tests.netns.lan import in_ns, require_root, sh, stop, wait_until
from tests.tools import require
from tools import gotools, talos_logs

require_root()

# This process's own namespace names: two runs of this file on one machine (two clones, two sessions) made the same
# fixed `lgow` and the second failed "File exists".
PREFIX = f"lg{os.getpid() % 10000}o"
OUTAGE = 30  # seconds the store is away: longer than the scaled default limit
SCALED_LIMIT = "20s"  # the default 5 minutes of configretry, scaled for the test
OUTSIDER = "192.168.0.250"  # on the LAN, not in the inventory


class Net(base.Net):
    """test_logs' LAN under this file's own names (xdist may run both files at once)."""

    @property
    def switch(self) -> str:
        return f"{PREFIX}w"

    def ns(self, name: str) -> str:
        return f"{PREFIX}{name}"


def shortened(config: dict[str, Any]) -> dict[str, Any]:
    """The rendered collector config with the test's timings (module docstring): intervals shorter, and the limit
    scaled only where the config leaves it at the default."""
    exporter = config["exporters"]["otlp_http/store"]
    retry = exporter.setdefault("retry_on_failure", {})
    retry |= {"initial_interval": "1s", "max_interval": "5s", "randomization_factor": 0}
    retry.setdefault("max_elapsed_time", SCALED_LIMIT)
    return config


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    require("unshare")
    stack: StackConfig = load_stack_file(HOMELAB)
    root = tmp_path_factory.mktemp("logs-outage")
    root.chmod(0o755)
    made = Net(root, stack)
    try:
        sh("ip", "netns", "add", made.switch)
        in_ns(made.switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(made.switch, "ip", "link", "set", "br0", "up")
        made.add("a", base.STORE_IP, str(plan.lan_address(stack)))
        made.add("t", str(next(n.ip for n in stack.nodes if n.name == base.TALOS_MACHINE)))
        made.add("p", str(next(n.ip for n in stack.nodes if n.name == base.PI)), str(plan.talos_host(stack)))
        made.add("x", OUTSIDER)
        hosts = root / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{base.STORE_IP} {plan.STORE}.{plan.NAMESPACE}.svc\n")
        (root / "store").mkdir()
        (root / "pods").mkdir()
        (root / "checkpoints").mkdir()
        config = shortened(yaml.safe_load(plan.collector(stack, plan.talos_cluster(stack))[0]["data"]["config.yaml"]))
        (root / "collector.yaml").write_text(yaml.safe_dump(config))
        start_store(made)
        start_collector(made, hosts)
        yield made
    finally:
        for key in list(made.procs):
            stop(made.procs.pop(key))
        for name in ("t", "p", "a", "x"):
            sh("ip", "netns", "delete", made.ns(name), check=False)
        sh("ip", "netns", "delete", made.switch, check=False)


def start_store(net: Net) -> None:
    """The store's pod (the store and its inserter) on its data folder (kept between its runs, as its volume is)."""
    base.start_store(net, net.ns("a"), net.root / "store")


def start_collector(net: Net, hosts: Path) -> None:
    """The collector with the DaemonSet pod's host paths in their places (the checkpoints folder is the hostPath that
    outlives the pod, and holds the queue)."""
    launch_collector(net, hosts)
    base._wait(lambda: base._listening(net.ns("p"), plan.SERVICE_PORT), "the collector listening for Talos", net, "collector")


def launch_collector(net: Net, hosts: Path) -> None:
    """The collector started as `start_collector` starts it, not waited for."""
    ns = net.ns("p")
    mounts = f"""
mount -t tmpfs none /var/log && mkdir -p {plan.PODS_LOG_DIR} && mount --bind {net.root / "pods"} {plan.PODS_LOG_DIR}
mount -t tmpfs none /var/lib && mkdir -p {plan.CHECKPOINTS} && mount --bind {net.root / "checkpoints"} {plan.CHECKPOINTS}
mount --bind {hosts} /etc/hosts
"""
    env = {"NODE_NAME": base.PI, "NODE_IP": "127.0.0.1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    net.start("collector", ns, f"{mounts}exec {gotools.build('otelcol')} --config={net.root / 'collector.yaml'}", env=env)


# How many times the kubelet may have to start the collector's container before one start gets past a damaged file.
RESTARTS = 5


def start_collector_as_the_kubelet_does(net: Net, hosts: Path) -> list[str]:
    """The collector started, and started again each time it exits before it listens, as the kubelet restarts the
    DaemonSet's container (restartPolicy Always); each start's log, in order. A start that meets a damaged file can
    crash however `recreate` is set: bbolt v1.5.0's DB.freepages panics on the walk's first error in the opening
    goroutine, which file_storage recovers, but the walk goes on in its own goroutine, and the panic's deferred Rollback
    clears tx.db under it (db.go:1277-1301; tx.go:639, Tx.page): a nil dereference there, which nothing recovers, kills
    the process. Which comes first is a race, so a start may crash; the next one, on the same file or on the fresh one
    recreate left, gets further. The production collector is the same code, so its pod restarts the same way."""
    logs: list[str] = []
    for _ in range(RESTARTS):
        launch_collector(net, hosts)
        proc = net.procs["collector"]

        def started(proc: subprocess.Popen[bytes] = proc) -> str:
            if base._listening(net.ns("p"), plan.SERVICE_PORT):
                return "listening"
            return "exited" if proc.poll() is not None else ""

        listening = wait_until("the collector listening for Talos, or exiting", started, 90, lambda: net.log("collector"), interval=0.5)
        logs.append((net.root / "collector.log").read_text(errors="replace"))
        if listening == "listening":
            return logs
        net.procs.pop("collector")
        # Only the race above may end a start: any other exit is the collector's own failure.
        assert "go.etcd.io/bbolt.(*DB).freepages" in logs[-1], logs[-1][-4000:]
    pytest.fail(f"the collector did not listen after {RESTARTS} starts:\n{logs[-1][-4000:]}")


def send(net: Net, text: str) -> None:
    """One etcd line, as Talos's sender writes it to its destination (with its `extraTags`), off the machine."""
    [destination] = plan.talos_logging(net.stack, base.TALOS_MACHINE)["destinations"]
    line = talos_logs.service_line("etcd", text, datetime.datetime.now(datetime.UTC), destination["extraTags"])
    file = net.root / f"{text}.jsonl"
    file.write_bytes(line)
    host = str(plan.talos_host(net.stack))
    done = in_ns(net.ns("t"), "python3", "-m", "tools.talos_logs", str(plan.SERVICE_PORT), str(file), host, check=False, timeout=30)
    assert done.returncode == 0, done.stderr


def test_lines_sent_while_the_store_is_away_arrive_when_it_is_back(net: Net) -> None:
    send(net, "before the outage")
    base.wait_for(net, '"before the outage"')
    # The store's pod away (its node drained): the store and its inserter.
    stop(net.procs.pop("inserter"))
    stop(net.procs.pop("store"))
    away = time.monotonic()
    # Killed once the line is in the queue on disk and its first send refused: the exporter logs each refused send it
    # will retry (exporterhelper v0.165.0 internal/retry_sender.go:136), of a request its consumer took from the queue.
    retried = "Exporting failed. Will retry the request after interval."
    before = (net.root / "collector.log").read_text(errors="replace").count(retried)
    send(net, "queued then the collector killed")
    wait_until(
        "the collector's first refused send of the queued line",
        lambda: (net.root / "collector.log").read_text(errors="replace").count(retried) > before,
        60,
        lambda: net.log("collector"),
        interval=0.2,
    )
    collector = net.procs.pop("collector")
    collector.send_signal(signal.SIGKILL)
    collector.wait(timeout=10)
    start_collector(net, net.root / "hosts")
    send(net, "queued past the retries limit")
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - away)))
    start_store(net)
    # The last retry interval is 5 s: both lines are in the store within a few of them.
    base.wait_for(net, '"queued then the collector killed"', bound=45)
    [line] = base.wait_for(net, '"queued past the retries limit"', bound=45)
    assert line["machine"] == base.TALOS_MACHINE and line["service"] == "etcd"
    assert "Dropping data" not in net.log("collector"), net.log("collector")


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def damage(path: Path) -> None:
    """A power cut's inconsistent file, as bbolt meets it: both meta pages valid (checksummed, so the file opens) but
    their high-water mark below the pages their tree uses, as a meta written before the pages it counts. Opening it
    walks every reachable page to rebuild the freelist (NoFreelistSync), the walk reports the out-of-bounds page and
    Open panics with it (bbolt v1.5.0 tx_check.go:155-157, db.go:1299-1301). The layout: a 16-byte page header, then
    the meta (internal/common/meta.go: magic, version, page size, flags, root bucket, freelist, pgid, txid, checksum,
    the FNV-64a of what precedes it, meta.go:61-65)."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16 + 8 : 16 + 12], "little")
    for page in (0, 1):
        meta = page * size + 16
        data[meta + 40 : meta + 48] = (2).to_bytes(8, "little")  # pgid, the high-water mark: only the metas and one page
        data[meta + 56 : meta + 64] = fnv64a(bytes(data[meta : meta + 56])).to_bytes(8, "little")
    path.write_bytes(bytes(data))


def test_a_queue_file_damaged_by_a_power_cut_is_set_aside_and_new_lines_still_arrive(net: Net) -> None:
    send(net, "before the damage")
    base.wait_for(net, '"before the damage"')
    collector = net.procs.pop("collector")
    collector.send_signal(signal.SIGKILL)
    collector.wait(timeout=10)
    files = sorted(p for p in (net.root / "checkpoints").iterdir() if not p.name.endswith(".backup"))
    assert len(files) == 2, files  # file_log's offsets and the queue
    for file in files:
        damage(file)
    # Without `recreate` the collector panics opening the file, on every start: these starts fail.
    logs = start_collector_as_the_kubelet_does(net, net.root / "hosts")
    send(net, "after the damage")
    [line] = base.wait_for(net, '"after the damage"', bound=45)
    assert line["machine"] == base.TALOS_MACHINE
    assert any("Database corruption detected" in log for log in logs), logs[-1][-4000:]
    backups = [p.name for p in (net.root / "checkpoints").iterdir() if p.name.endswith(".backup")]
    assert len(backups) == 2, backups  # recreate set each damaged file aside as <file>.<time>.backup


POD = "10.42.1.5"  # a pod of the Pi, in k3s' pod network (plans.nfs_guard.POD_CIDR)
POD_GATEWAY = "10.42.1.1"  # its Pi's end of the pod network (flannel's cni0)


def _insert(net: Net, ns: str, text: str) -> subprocess.CompletedProcess[str]:
    """One line written to the inserter's JSON lines API at the store's LAN address, from `ns`, as a pod or the Pi would."""
    line = {"_msg": text, "cluster": "ainur", "machine": base.PI, "service": "forged"}
    body = net.root / f"{text}.json"
    body.write_text(json.dumps(line) + "\n")
    url = f"http://{plan.lan_address(net.stack)}:{plan.INSERT_PORT}/insert/jsonline?_stream_fields=cluster,machine,service"
    return in_ns(
        ns, "curl", "-sS", "--fail", "--max-time", "5", "-H", "Content-Type: application/stream+json", "--data-binary", f"@{body}", url, check=False
    )


def test_no_pod_of_a_pi_writes_to_the_store_but_the_pi_itself_does(net: Net) -> None:
    """A pod of the Pi (a namespace behind it, masqueraded to the Pi's address on the way out as k3s' flannel does:
    v0.28.4 pkg/trafficmngr/iptables/iptables.go:149-161) writes nothing to the store at its LAN address once the Pi's
    ruleset is loaded (plans.logs.talos_firewall, its `pods` chain); the Pi's own processes (its journal, its
    collector on the host network) still do."""
    pod, pi = net.ns("q"), net.ns("p")
    ruleset = net.root / "talos-logs-pods.nft"
    ruleset.write_text(plan.talos_firewall(net.stack))
    flannel = net.root / "flannel.nft"
    flannel.write_text(
        "table ip test_flannel {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {POD_CIDR} ip daddr != {POD_CIDR} masquerade\n  }}\n}}\n"
    )
    try:
        sh("ip", "netns", "add", pod)
        in_ns(pod, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "cni0", "netns", pi, "type", "veth", "peer", "name", "eth0", "netns", pod)
        in_ns(pi, "ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", "cni0")
        in_ns(pi, "ip", "link", "set", "cni0", "up")
        in_ns(pod, "ip", "addr", "add", f"{POD}/24", "dev", "eth0")
        in_ns(pod, "ip", "link", "set", "eth0", "up")
        in_ns(pod, "ip", "route", "add", "default", "via", POD_GATEWAY)
        in_ns(pi, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        in_ns(pi, "nft", "-f", str(flannel))
        # The path itself works: before the ruleset, the pod's line arrives (as its Pi's address).
        assert _insert(net, pod, "a pod before the guard").returncode == 0
        base.wait_for(net, '"a pod before the guard"')
        in_ns(pi, "nft", "-f", str(ruleset))
        done = _insert(net, pod, "a pod past the guard")
        assert done.returncode != 0 and "timed out" in done.stderr, done.stderr
        assert _insert(net, pi, "the pi itself").returncode == 0
        base.wait_for(net, '"the pi itself"')
        assert base.query(net, '"a pod past the guard"') == []
    finally:
        in_ns(pi, "nft", "delete", "table", "inet", plan.TALOS_FIREWALL_TABLE, check=False)
        in_ns(pi, "nft", "delete", "table", "ip", "test_flannel", check=False)
        sh("ip", "netns", "delete", pod, check=False)


def test_the_pis_take_talos_lines_only_from_ardas_machines(net: Net) -> None:
    """The Pi's nftables ruleset (plans.logs.talos_firewall, as journal_upload_script loads it): a line sent from an
    address the inventory does not have, naming an Arda machine, never reaches the store; the machine's own does."""
    assert OUTSIDER not in plan.machine_by_address(net.stack)
    ruleset = net.root / "talos-logs.nft"
    ruleset.write_text(plan.talos_firewall(net.stack))
    in_ns(net.ns("p"), "nft", "-f", str(ruleset))
    try:
        [destination] = plan.talos_logging(net.stack, base.TALOS_MACHINE)["destinations"]
        forged = net.root / "forged.jsonl"
        forged.write_bytes(talos_logs.service_line("etcd", "forged from the LAN", datetime.datetime.now(datetime.UTC), destination["extraTags"]))
        host = str(plan.talos_host(net.stack))
        done = in_ns(net.ns("x"), "python3", "-m", "tools.talos_logs", str(plan.SERVICE_PORT), str(forged), host, check=False, timeout=30)
        assert done.returncode != 0 and "timed out" in done.stderr, done.stderr
        send(net, "from the machine itself")
        base.wait_for(net, '"from the machine itself"')
        assert base.query(net, '"forged from the LAN"') == []
    finally:
        in_ns(net.ns("p"), "nft", "delete", "table", "inet", plan.TALOS_FIREWALL_TABLE, check=False)
