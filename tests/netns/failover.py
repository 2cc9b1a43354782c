"""The serving Pi's death on the lab's LAN, and the takeover by another Pi, run by the timers that make it.

No kubelet, controller or kube-vip runs here, so each is a stand-in running its own timer with the program's value of
it (plans.netboot.failover, plans.k3s, the netboot pod's spec), as the upstream code at the pinned versions runs it:

- the dead Pi's kubelet renews its node Lease while it lives, every quarter of the Lease's 16 s (the program's kubelet
  drop-in, plans.k3s.KUBELET_DROPIN), 4 s, stretched by up to 4 % (Kubernetes v1.35
  pkg/kubelet/kubelet.go:235-236, :1077; component-helpers apimachinery/lease/controller.go:148, a sliding
  wait.JitterUntil that renews at once on start): its heartbeat, since its Node status is posted only every
  node-status-report-frequency (5 min) unless it changed (plans.netboot.failover.NODE_LEASE_RENEW_SECONDS);
- the node lifecycle controller (Kubernetes v1.35 pkg/controller/nodelifecycle/node_lifecycle_controller.go,
  monitorNodeHealth every `--node-monitor-period`, tryUpdateNodeHealth): a report newer than the last it saw sets the
  node's probe time to the controller's own clock at that check (`nodeHealth.probeTimestamp = nc.now()`), and the node
  is marked unknown, and tainted `node.kubernetes.io/unreachable:NoExecute`, at the first check after
  `probeTimestamp + node-monitor-grace-period`;
- the taint eviction controller (pkg/controller/tainteviction/taint_eviction.go, processPodOnNode): the pod is deleted
  `tolerationSeconds` after the taint; its ReplicaSet counts a deleted pod as gone (controller_utils.go,
  IsPodActive: DeletionTimestamp set) and creates the replacement at once, which the scheduler puts on another Pi;
- that Pi's kubelet starts it: restore-leases (here: the lease file the dead Pi's save-leases last wrote), the records
  (the same records folder) and the real dnsmasq with the program's dnsmasq.conf; then its readiness probe, the
  program's own (tools.kubelet_probe), at the container's start (the prober manager triggers a first run once the
  container runs: pkg/kubelet/prober/prober_manager.go, UpdatePodStatus) and every `periodSeconds` until it passes;
- kube-vip v0.9.2 on that Pi joins the Service's election once its endpoint is Ready (pkg/manager/
  watch_endpoints.go:246-300), as a new candidate: client-go v0.32.3 counts the dead holder's lease from its own first
  look (tools/leaderelection/leaderelection.go:449-457, :506-517) and retries every RetryPeriod stretched by up to
  JitterFactor (:72, :258-273); once it leads it puts the address on the Pi and sends a gratuitous ARP.

Every wait of a stand-in is its component's timer; the test waits on the takeover itself (`taken`), bounded.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Callable

from plans import netboot
from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import failover
from tests.netns.lan import Lan, in_ns, kubelet_probe, wait_until


class Failover:
    """The serving Pi (the lab's `pi`), its kubelet reporting and the controller watching it, until `kill`; then the
    takeover by the Pi at `other_ip`. `events` records when each step happened (time.time())."""

    def __init__(self, net: Lan, other_key: str, other_ip: str) -> None:
        self.net, self.other_key, self.other_ip = net, other_key, other_ip
        self.stopping = threading.Event()  # the lab's end: every stand-in stops
        self.dead = threading.Event()
        self.seen = threading.Event()  # the controller has seen the Pi's kubelet report at least once
        self.taken = threading.Event()  # the other Pi holds the address, announced
        self.events: dict[str, float] = {}
        self.errors: list[str] = []
        self.last_report = 0.0
        self.threads = [threading.Thread(target=self._run, args=(f,), daemon=True) for f in (self._kubelet, self._controller)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, f: Callable[[], None]) -> None:
        try:
            f()
        except Exception as e:  # a stand-in that failed is the test's failure, said by `wait_taken`
            self.errors.append(f"{f.__name__}: {e!r}")
            self.taken.set()

    def _kubelet(self) -> None:
        """The serving Pi's kubelet heartbeat while the Pi lives: its node Lease renewed at once, then again each renew
        interval stretched by up to the lease controller's jitter after the last renewal ended (sliding)."""
        while not self.dead.is_set() and not self.stopping.is_set():
            self.last_report = time.time()
            self.dead.wait(failover.NODE_LEASE_RENEW_SECONDS * (1 + random.random() * failover.NODE_LEASE_JITTER))

    def _controller(self) -> None:
        """monitorNodeHealth every node-monitor-period: the probe time moves to this check's clock when a newer report
        is seen; past it by the grace period, the node is marked and tainted."""
        grace = failover.seconds(NODE_MONITOR_GRACE_PERIOD)
        seen_report, probe_time = 0.0, 0.0
        while not self.stopping.wait(failover.NODE_MONITOR_PERIOD_SECONDS):
            now = time.time()
            if self.last_report > seen_report:
                seen_report, probe_time = self.last_report, now
                self.seen.set()
            elif probe_time and now > probe_time + grace:
                self.events["node marked unreachable"] = now
                self._evict()
                return

    def _evict(self) -> None:
        """The taint eviction controller's timer, then the replacement on the other Pi."""
        if self.stopping.wait(netboot.EVICTION_SECONDS):
            return
        self.events["pod evicted"] = time.time()
        ns = self._start_replacement()
        self.events["replacement started"] = time.time()
        spec = netboot.netboot_pod([], "netboot-dnsmasq")
        while kubelet_probe(ns, spec, "dnsmasq", self.other_ip).returncode != 0:
            if self.stopping.wait(failover.readiness_period()):
                return
        self.events["replacement ready"] = time.time()
        self._kube_vip(ns)

    def _start_replacement(self) -> str:
        net = self.net
        ns = net.host(self.other_key, self.other_ip)
        root = net.root / self.other_key
        (root / "leases").mkdir(parents=True, exist_ok=True)
        # restore-leases: what the dead Pi's save-leases last put in the cluster (it saves every LEASE_SYNC_SECONDS).
        saved = net.root / "leases" / "dnsmasq.leases"
        if saved.exists():
            shutil.copy(saved, root / "leases" / "dnsmasq.leases")
        conf = root / "dnsmasq.conf"
        conf.write_text(
            netboot.dnsmasq_conf(
                net.stack, tftp_root=str(net.root / "tftp"), lease_file=str(root / "leases" / "dnsmasq.leases"), records_dir=str(net.records)
            )
        )
        net._dnsmasq(f"dnsmasq-{self.other_key}", ns, conf, None, container=net.records_loop)
        return ns

    def _kube_vip(self, ns: str) -> None:
        """A new candidate for the Service's lease, which the dead Pi held: it waits a whole lease duration from its own
        first look, trying at each jittered retry."""
        lease = float(failover.SERVICE_LEASE_SECONDS)
        retry = float(failover.SERVICE_RETRY_SECONDS)
        first_look = time.time()
        while time.time() <= first_look + lease:
            if self.stopping.wait(retry * (1 + random.random() * failover.LEADER_ELECTION_JITTER)):
                return
        in_ns(ns, "ip", "addr", "replace", f"{self.net.service_ip}/32", "dev", "eth0")
        self.net.announce(ns, self.net.service_ip)
        self.events["address taken"] = time.time()
        self.taken.set()

    def wait_seen(self) -> None:
        """Until the controller has seen the live Pi's kubelet report (its first check), at most two of its periods."""
        wait_until(
            "the controller stand-in to see the Pi's kubelet report", self.seen.is_set, 2 * failover.NODE_MONITOR_PERIOD_SECONDS, lambda: self.errors
        )

    def kill(self) -> None:
        """The serving Pi dies: its kubelet stops reporting, its dnsmasq and its hold of the service address are gone."""
        self.dead.set()
        self.events["killed"] = time.time()
        self.net.release_service_address()
        self.net.stop("dnsmasq")

    def wait_taken(self) -> None:
        """Until the other Pi holds the service address, at most twice the bound (what a stand-in that hangs gives)."""
        wait_until("a Pi to take the service address over", self.taken.is_set, 2 * failover.bound(), self.timeline)
        assert not self.errors, self.errors

    def timeline(self) -> str:
        killed = self.events.get("killed", 0.0)
        return json.dumps({k: round(v - killed, 2) for k, v in self.events.items()})

    def stop(self) -> None:
        self.stopping.set()
        self.dead.set()
        for t in self.threads:
            t.join(timeout=10)
