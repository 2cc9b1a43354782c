"""A household on the lab's LAN (tests.netns.lan), and the program's changes run beside it, counted.

The household: clients each running a real DHCP client, busybox udhcpc, for good (not one transaction and exit),
told to renew (SIGUSR1) as soon as its last renewal ended and a pause passed; and a DNS query against the service
address every half second from the same client. A sampler, on a namespace of its own, sends a DHCPDISCOVER every
second (plans.netboot.dhcp_probe.collect) and records every server that offers an address.

Each renewal is one DHCP transaction: its outcome is the hook's next event (busybox 1.35 networking/udhcp/dhcpc.c):
`renew` (an ACK, to the unicast REQUEST or the broadcast one of rebinding), `nak`, or `deconfig`/`leasefail` (the
lease lost, no server answering). A renewal is sent only once the last one ended: udhcpc told to renew while a renewal
is under way gives the lease up (perform_renew, RENEW_REQUESTED: "impatient are we? fine, square 1").

The scenarios (`SCENARIOS`) are the program's changes, each as far as the lab can run it: the kubelet's update of the
ConfigMap's volume, which the records loop running beside dnsmasq (plans.netboot.records.run_script) hands over, with a
SIGHUP for the DHCP hosts, when the netboot pod's template stays as it is, or the pod replaced (the Deployment is
Recreate: the old dnsmasq exits, the new one starts with the leases kept and its records filled first) when the
template changes, which `template_changes` computes from the program's own objects (plans.netboot.objects), never
assumed; the bring-up runs the program's DHCP probe step first (plans.netboot.dhcp_probe) and then dnsmasq; the
serving Pi killed is taken over by a second Pi through the failover's own timers (tests.netns.failover), its dnsmasq
started with the leases restored.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from itertools import pairwise
from pathlib import Path
from typing import Any

from plans import netboot
from plans.netboot import dhcp_probe, objects
from stacks import StackConfig, parse_stack
from tests.netns.failover import Failover
from tests.netns.lan import DHCP_PROBE, REPO, Lan, wait_until
from tests.tools import require

# The hook udhcpc runs on each event: the lease applied (or dropped), and one line per event for the counts.
HOOK = """#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
echo "$(date +%s.%N) $1 ${ip:-} ${serverid:-}" >> "$EVENTS"
"""
# One DNS query (A, recursion desired) of NAME to SERVER every half second, 1 s timeout: a line per query, its end,
# whether it was answered, and when it was sent.
DNS_LOOP = """
import random, socket, struct, sys, time
server, name = sys.argv[1], sys.argv[2]
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
while True:
    qid = random.randrange(65536)
    ok = False
    sent = time.time()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        s.sendto(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1), (server, 53))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            data = s.recv(512)
            if struct.unpack("!H", data[:2])[0] == qid:
                ok = (data[3] & 0x0F) == 0 and struct.unpack("!H", data[6:8])[0] > 0
                break
        s.close()
    except OSError:
        pass
    print(f"{time.time():.3f} {int(ok)} {sent:.3f}", flush=True)
    time.sleep(0.5)
"""
# A DHCPDISCOVER a second, each answer's server MAC, kind and offered address: a line per DISCOVER.
SAMPLER = (
    DHCP_PROBE
    + """
import json, time
while True:
    got = dhcp_probe.collect("eth0", tries=1, gap=1.0, listen=1.0)
    print(json.dumps([time.time(), [[a.mac, a.kind, a.offered] for a in got]]), flush=True)
"""
)
SAMPLER_MAC = "02:00:5e:00:fe:01"
RENEW_PAUSE = 1.0  # seconds between one renewal's end and the next one's start
# The longest a renewal takes to end, whatever the LAN does: udhcpc's unicast REQUESTs and the broadcast ones of
# rebinding, each `-T 1` apart, then the DISCOVERs of `-t 3` and the `-A 1` pause; with a wide margin.
RENEWAL_BOUND = 30.0
# The longest a scenario's own step may take before its household's last events are read.
STEP_BOUND = 60.0


@dataclass
class Client:
    mac: str
    ns: str
    events: Path
    udhcpc: subprocess.Popen[bytes] | None = None
    dns: subprocess.Popen[str] | None = None
    dns_lines: list[tuple[float, bool]] = field(default_factory=list)  # each query's end and whether it was answered
    dns_queries: list[tuple[float, float, bool]] = field(default_factory=list)  # each query's sending, end, and answer
    renewals: list[float] = field(default_factory=list)  # when each SIGUSR1 was sent
    # The hook's lines parsed so far, and how many bytes of `events` they are: the file only grows (the hook appends a
    # line per event), and it is read every 50 ms by the renewal loop and the waits, so each read parses only what was
    # appended since the last, never the whole run's again. Read from the renewal thread and the test's at once.
    parsed: list[tuple[float, str, str, str]] = field(default_factory=list)
    parsed_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_events(self) -> list[tuple[float, str, str, str]]:
        with self.lock:
            if self.events.exists():
                with self.events.open("rb") as f:
                    f.seek(self.parsed_bytes)
                    new = f.read()
                # A line the hook is still writing is left for the next read.
                whole = new.rfind(b"\n") + 1
                for line in new[:whole].decode().splitlines():
                    t, kind, *rest = line.split(" ")
                    self.parsed.append((float(t), kind, rest[0] if rest else "", rest[1] if len(rest) > 1 else ""))
                self.parsed_bytes += whole
            return list(self.parsed)


class Household:
    """The clients' DHCP and DNS loops and the DISCOVER sampler, running until `stop`."""

    def __init__(self, net: Lan, clients: int, name: str) -> None:
        self.net, self.name = net, name
        self.stopping = threading.Event()
        # While set, no client starts a renewal (`held`); `idle` counts the clients with none under way.
        self.holding = threading.Event()
        self.idle = threading.Semaphore(0)
        self.clients = [Client(f"02:00:5e:00:ab:{i:02x}", net.client(f"02:00:5e:00:ab:{i:02x}"), net.root / f"events-{i}") for i in range(clients)]
        self.samples: list[tuple[float, list[list[str]]]] = []
        self.threads: list[threading.Thread] = []
        self.sampler: subprocess.Popen[str] | None = None
        self.errors: list[str] = []  # what a client's renewal loop met that the test must fail on
        (net.root / "household-hook.sh").write_text(HOOK)
        (net.root / "household-hook.sh").chmod(0o755)

    def start(self) -> None:
        sampler_ns = self.net.client(SAMPLER_MAC)
        assert self.net.stack.ainur is not None
        if self.net.stack.ainur.netboot.mode == "proxy":
            # The router pings an address before it offers it to a MAC it holds no lease of, and stays deaf to every
            # other DHCP packet meanwhile (up to 3 s; dnsmasq 2.90 src/dnsmasq.c icmp_ping), then trusts that ping for
            # 30 s (src/rfc2131.c do_icmp_ping, PING_CACHE_TIME): the sampler's DISCOVER a second, never followed by
            # a REQUEST, made it do so every 30 s, and a renewal sent as one began could miss udhcpc's 4 s of tries.
            # A device of the household holds a lease, which the router offers again without a ping
            # (rfc2131.c, DHCPDISCOVER: the lease's address before address_allocate): so does the sampler.
            lease_of(self.net, SAMPLER_MAC)
        # Before the clients start: the router pings each of their new addresses in turn too.
        for c in self.clients:
            c.events.unlink(missing_ok=True)
            cmd = [require("udhcpc"), "-f", "-i", "eth0", "-s", str(self.net.root / "household-hook.sh"), "-t", "3", "-T", "1", "-A", "1"]
            c.udhcpc = subprocess.Popen(
                ["ip", "netns", "exec", c.ns, "env", f"EVENTS={c.events}", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            c.dns = subprocess.Popen(
                ["ip", "netns", "exec", c.ns, sys.executable, "-c", DNS_LOOP, self.net.service_ip, self.name],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.threads.append(threading.Thread(target=self._renew, args=(c,), daemon=True))
            self.threads.append(threading.Thread(target=self._read_dns, args=(c,), daemon=True))
        self.sampler = subprocess.Popen(
            ["ip", "netns", "exec", sampler_ns, sys.executable, "-c", SAMPLER], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        self.threads.append(threading.Thread(target=self._read_samples, daemon=True))
        for t in self.threads:
            t.start()

    def wait_bound(self) -> None:
        """Until every client holds a lease (the router's, before the bring-up in proxy mode). Seconds on a new LAN: the
        router's dnsmasq pings each new address before it offers it, up to 3 s, reading no other DHCP packet meanwhile
        (src/dnsmasq.c, icmp_ping), so its first offers come late and one by one."""
        wait_until(
            "every client of the household to hold a lease",
            lambda: all(any(kind == "bound" for _, kind, _, _ in c.read_events()) for c in self.clients),
            STEP_BOUND,
            lambda: f"\n{self.state()}",
        )

    def _renew(self, c: Client) -> None:
        """Renew as soon as the last transaction ended (and a pause): only from a bound lease."""
        while not self.stopping.is_set():
            if self.holding.is_set():
                self.idle.release()
                while self.holding.is_set() and not self.stopping.is_set():
                    self.stopping.wait(0.05)
                continue
            events = c.read_events()
            if events and events[-1][1] in ("bound", "renew"):
                assert c.udhcpc is not None
                seen = len(events)
                c.renewals.append(time.time())
                c.udhcpc.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + RENEWAL_BOUND
                while len(c.read_events()) == seen and not self.stopping.is_set():
                    if time.monotonic() > deadline:
                        self.errors.append(f"{c.mac}: udhcpc's renewal never ended (no hook event in {RENEWAL_BOUND} s)")
                        return
                    self.stopping.wait(0.05)
                self.stopping.wait(RENEW_PAUSE)
            else:
                self.stopping.wait(0.05)

    @contextmanager
    def held(self) -> Iterator[None]:
        """No renewal under way or begun while the LAN's DHCP servers are swapped: a transaction sent while none runs
        fails after udhcpc's 4 s of tries (one unicast REQUEST, three broadcast; busybox 1.35 dhcpc.c, RENEW_REQUESTED
        and REBINDING) and its client starts over from a DISCOVER, which a slow swap does to every client."""
        self.holding.set()
        try:
            for _ in self.clients:
                assert self.idle.acquire(timeout=RENEWAL_BOUND), f"a renewal did not end in {RENEWAL_BOUND} s:\n{self.state()}"
            yield
        finally:
            self.holding.clear()

    def _read_dns(self, c: Client) -> None:
        assert c.dns is not None and c.dns.stdout is not None
        for line in c.dns.stdout:
            t, ok, sent = line.split()
            c.dns_queries.append((float(sent), float(t), ok == "1"))
            c.dns_lines.append((float(t), ok == "1"))

    def _read_samples(self) -> None:
        assert self.sampler is not None and self.sampler.stdout is not None
        for line in self.sampler.stdout:
            t, got = json.loads(line)
            self.samples.append((t, got))

    def wait(self, after: float, what: str, renewals: int = 2, queries: int = 2, samples: int = 1) -> None:
        """Until every client has `renewals` successful renewals and `queries` answered DNS queries begun after `after`,
        and the sampler `samples` DISCOVERs ended after it (the first may have begun before): the household has seen
        the LAN as the scenario left it; a renewal that failed meanwhile fails it at once."""

        def done() -> bool:
            for c in self.clients:
                if sum(1 for t, kind, _, _ in c.read_events() if t > after and kind == "renew") < renewals:
                    return False
                if sum(1 for t, ok in list(c.dns_lines) if t > after and ok) < queries:
                    return False
            return sum(1 for t, _ in list(self.samples) if t > after) >= samples

        def settled() -> bool:
            if done():
                return True
            assert not self.errors, self.errors
            return False

        wait_until(f"the household to renew and resolve ({what})", settled, STEP_BOUND, lambda: f"\n{self.state()}")

    def state(self) -> str:
        clients = "\n".join(f"{c.mac}: {c.read_events()[-3:]} dns {c.dns_lines[-3:]}" for c in self.clients)
        return f"{clients}\n{self.net.dns_state()}"

    def counts(self, start: float, end: float) -> dict[str, int]:
        """What the household saw between `start` and `end`."""
        counts: Counter[str] = Counter()
        held: dict[str, str] = {}
        duplicates: set[tuple[str, ...]] = set()
        timeline = sorted((t, c.mac, kind, ip) for c in self.clients for t, kind, ip, _ in c.read_events())
        for t, mac, kind, ip in timeline:
            if kind in ("bound", "renew"):
                held[mac] = ip
                owners = sorted(m for m, a in held.items() if a == ip)
                if len(owners) > 1 and t >= start:
                    duplicates.add((ip, *owners))
            elif kind in ("deconfig", "leasefail"):
                held.pop(mac, None)
        for c in self.clients:
            every = c.read_events()
            events = [e for e in every if start <= e[0] <= end]
            counts["dhcp renewals"] += sum(1 for t in c.renewals if start <= t <= end)
            counts["dhcp NAKs"] += sum(1 for e in events if e[1] == "nak")
            # A transaction that failed: the lease lost (no server answered the renewal nor the rebinding) or a
            # DISCOVER unanswered; the first deconfig of udhcpc's start is none.
            counts["dhcp failed"] += sum(1 for e in events if e[1] == "leasefail" or (e[1] == "deconfig" and e != every[0]))
            counts["dns queries"] += sum(1 for t, _ in c.dns_lines if start <= t <= end)
            counts["dns failed"] += sum(1 for t, ok in c.dns_lines if start <= t <= end and not ok)
        offers = [{m for m, kind, _ in got if kind == "offer"} for t, got in self.samples if start <= t <= end]
        counts["duplicate addresses"] = len(duplicates)
        counts["discovers sampled"] = len(offers)
        counts["two servers answering"] = sum(1 for o in offers if len(o) > 1)
        return dict(counts)

    def gaps(self, start: float, end: float) -> dict[str, float]:
        """The longest any client went without an answer over [start, end], counted from its last answer before
        `start`: for DNS, between two of its answered queries; for DHCP, between two of its transactions that ended
        with a lease (bound or renew). Each includes the client's own pace (a query every 0.5 s after up to 1 s of
        waiting; a renewal 1 s after the last ended, and once the lease is lost, udhcpc's rounds of 3 DISCOVERs 1 s
        apart and 1 s of rest), which is what a household device sees."""

        def longest(times: list[float]) -> float:
            before = [t for t in times if t < start]
            points = [before[-1] if before else start, *(t for t in times if start <= t <= end), end]
            return max(b - a for a, b in pairwise(points))

        dns = max(longest(sorted(t for t, ok in list(c.dns_lines) if ok)) for c in self.clients)
        dhcp = max(longest(sorted(t for t, kind, _, _ in c.read_events() if kind in ("bound", "renew"))) for c in self.clients)
        return {"dns gap": round(dns, 1), "dhcp gap": round(dhcp, 1)}

    def stop(self) -> None:
        self.stopping.set()
        procs = [p for c in self.clients for p in (c.udhcpc, c.dns)] + [self.sampler]
        for p in procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in procs:
            if p is not None:
                p.wait(timeout=10)
        for t in self.threads:
            t.join(timeout=10)


# --- The program's changes ------------------------------------------------------------------------


def netboot_template(stack: StackConfig, extra: list[tuple[str, IPv4Address]]) -> Any:
    """The netboot Deployment's pod template, as the program renders it (plans.netboot.objects.manifests): a change of it
    replaces the pod (Recreate), anything else leaves dnsmasq running."""
    [deployment] = [
        m for m in objects.manifests(stack, netboot.config_macs(stack), extra) if m["kind"] == "Deployment" and m["metadata"]["name"] == "netboot"
    ]
    return deployment["spec"]["template"]


def template_changes(before: StackConfig, after: StackConfig, extra_before: list[Any], extra_after: list[Any]) -> bool:
    return bool(netboot_template(before, extra_before) != netboot_template(after, extra_after))


def with_config(stack: StackConfig, raw: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> tuple[StackConfig, dict[str, Any]]:
    changed = json.loads(json.dumps(raw))
    edit(changed)
    return parse_stack(changed), changed


APP = ("music.iluvatar.home.arpa", IPv4Address("192.168.0.40"))
NEW_NODE = {
    "name": "nienna",
    "role": "istari",
    "arch": "amd64",
    "board": "generic-x86",
    "mac": "02:00:5e:00:0e:33",
    "ip": "192.168.0.33",
    "boot": "disk",
    "installDisk": {"model": "Samsung SSD 860"},
}
OTHER_PI = "192.168.0.12"
# The k3s upgrade: the stack starts a patch behind the newest the program knows (stacks' check), and moves to it.
K3S_FROM, K3S_TO = "v1.35.7+k3s1", "v1.35.8+k3s1"


# The machine added's address changed, then the machine replaced by another at that address (a new MAC).
MOVED_IP = "192.168.0.34"
REPLACEMENT = {**NEW_NODE, "name": "vaire", "mac": "02:00:5e:00:0e:35", "ip": MOVED_IP}
NEW_MAC, REPLACEMENT_MAC = "02:00:5e:00:0e:33", "02:00:5e:00:0e:35"


@dataclass
class Result:
    scenario: str
    restarts_dnsmasq: bool
    counts: dict[str, int]
    # In dhcp mode, the address a real DHCP client of each inventory MAC named was offered and leased after the change.
    leased: dict[str, str] = field(default_factory=dict)
    # The longest the household went without an answer (Household.gaps), and the takeover's steps, for the Pi killed.
    gaps: dict[str, float] = field(default_factory=dict)
    timeline: str = ""


def lease_of(net: Lan, mac: str) -> str:
    """The address busybox udhcpc, on a namespace of its own with `mac`, is offered and leased: one transaction from a
    DISCOVER (no address asked for), then it exits."""
    ns = net.client(mac)
    done = subprocess.run(
        ["ip", "netns", "exec", ns, require("udhcpc"), "-q", "-f", "-n", "-i", "eth0", "-t", "5", "-T", "1", "-s", "/bin/true"],
        capture_output=True,
        text=True,
        timeout=STEP_BOUND,
        check=False,
    )
    got = [line.split()[3] for line in done.stderr.splitlines() if line.startswith("udhcpc: lease of ")]
    assert done.returncode == 0 and got, done.stderr
    return got[-1]


class Scenarios:
    """The program's changes, one after another on one LAN, its household running throughout."""

    def __init__(self, net: Lan, raw: dict[str, Any], house: Household, renewals: int = 2) -> None:
        self.net, self.raw, self.house, self.renewals = net, raw, house, renewals
        self.stack = net.stack
        self.extra: list[tuple[str, IPv4Address]] = []
        self.results: list[Result] = []

    def _measure(self, scenario: str, restarts: bool, step: Callable[[], None], samples: int = 1) -> Result:
        start = time.time()
        step()
        self.house.wait(time.time(), scenario, renewals=self.renewals, samples=samples)
        result = Result(scenario, restarts, self.house.counts(start, time.time()))
        self.results.append(result)
        return result

    def _apply(self, stack: StackConfig, extra: list[tuple[str, IPv4Address]]) -> None:
        """`pulumi up` of the change as it reaches the netboot pod: replaced when its template changes, else the kubelet's
        update of the ConfigMap's volume, which the records loop beside dnsmasq hands over."""
        restarts = template_changes(self.stack, stack, self.extra, extra)
        if restarts:
            self.net.start_dnsmasq(stack, keep_leases=True, extra_records=extra)
        else:
            log = self.net.root / "dnsmasq.log"
            mark = len(log.read_text())
            # The kubelet's update of the volume; the records loop running beside dnsmasq sees it within its poll.
            self.net.project_records(stack, extra)
            if netboot.hosts_file(stack, extra) != netboot.hosts_file(self.stack, self.extra):
                wait_for_line(log, f"read {self.net.records}/hosts/iluvatar", mark)
            if netboot.dhcp_hosts_file(stack) != netboot.dhcp_hosts_file(self.stack):
                # The records loop's SIGHUP: dnsmasq read its DHCP hosts file anew (src/option.c:5822).
                wait_for_line(log, f"read {self.net.records}/dhcp-hosts/iluvatar", mark)
        self.net.stack, self.stack, self.extra = stack, stack, extra

    def bring_up(self, valar: str) -> Result:
        """The probe step on the first valar, as `pulumi up` runs it, then the netboot pod's first start."""
        assert self.stack.ainur is not None
        mode = self.stack.ainur.netboot.mode

        def step() -> None:
            # In dhcp mode the step passes only after a window of silence (dhcp_probe.probe): here 12 s, three rounds, in
            # place of the program's minute, which only a busy router's missed rounds need, and the lab's is off then.
            window = 12.0 if mode == "dhcp" else dhcp_probe.PROXY_RETRY_SECONDS
            lan, gateway = str(self.stack.network.lan), str(self.stack.network.gateway)
            script = dhcp_probe.probe_script(mode, (self.net.service_ip,), lan, gateway, retry=window)
            probe = subprocess.run(["ip", "netns", "exec", valar, "sh", "-c", script], capture_output=True, text=True, timeout=90, check=False)
            router = self.net.root / "router.log"
            assert probe.returncode == 0, probe.stdout + probe.stderr + router.read_text()[-3000:]
            self.net.start_dnsmasq(keep_leases=False)

        return self._measure("bring-up", True, step)

    def change(self, scenario: str, stack: StackConfig, extra: list[tuple[str, IPv4Address]]) -> Result:
        restarts = template_changes(self.stack, stack, self.extra, extra)

        def step() -> None:
            self._apply(stack, extra)

        return self._measure(scenario, restarts, step)

    def app_added(self) -> Result:
        return self.change("app added", self.stack, [*self.extra, APP])

    def _leases(self, result: Result, *macs: str) -> Result:
        """In dhcp mode, where the Ainur lend the inventory its reservations: what a real client of each MAC is leased."""
        assert self.stack.ainur is not None
        if self.stack.ainur.netboot.mode == "dhcp":
            result.leased = {mac: lease_of(self.net, mac) for mac in macs}
        return result

    def machine_added(self) -> Result:
        stack, self.raw = with_config(self.stack, self.raw, lambda c: c["iluvatar:nodes"].append(NEW_NODE))
        return self._leases(self.change("machine added", stack, self.extra), NEW_MAC)

    def _edit_node(self, name: str, node: dict[str, Any] | None) -> Callable[[dict[str, Any]], None]:
        def edit(c: dict[str, Any]) -> None:
            nodes = [n for n in c["iluvatar:nodes"] if n["name"] != name]
            c["iluvatar:nodes"] = nodes + ([node] if node is not None else [])

        return edit

    def address_changed(self) -> Result:
        """The machine added given another address: its client, which holds the old one, is offered the new one."""
        stack, self.raw = with_config(self.stack, self.raw, self._edit_node("nienna", {**NEW_NODE, "ip": MOVED_IP}))
        return self._leases(self.change("machine's address changed", stack, self.extra), NEW_MAC)

    def machine_replaced(self) -> Result:
        """The machine removed and another (a new MAC) reserved its address: the old MAC, which holds a lease of that
        address, is no longer offered it, and the new machine is."""
        stack, self.raw = with_config(self.stack, self.raw, self._edit_node("nienna", REPLACEMENT))
        return self._leases(self.change("machine replaced", stack, self.extra), NEW_MAC, REPLACEMENT_MAC)

    def talos_bump(self) -> Result:
        # A change of Talos version: to the previous patch, since the stack's own is the newest this Iluvatar knows.
        stack, self.raw = with_config(self.stack, self.raw, lambda c: c["iluvatar:arda"].update(talosVersion="v1.14.0"))
        return self.change("Talos bump", stack, self.extra)

    def k3s_upgrade(self) -> Result:
        stack, self.raw = with_config(self.stack, self.raw, lambda c: c["iluvatar:ainur"].update(k3sVersion=K3S_TO))
        return self.change("k3s upgrade", stack, self.extra)

    def pi_killed(self) -> Result:
        """The serving Pi dies: its kubelet, its dnsmasq and its hold of the service address with it. The takeover is
        the failover's own timers (tests.netns.failover: the node lifecycle controller, the taint eviction, the
        replacement's start and readiness on a second Pi, its kube-vip's election), with the program's values."""
        takeover = Failover(self.net, "p2", OTHER_PI)
        takeover.start()
        try:
            takeover.wait_seen()
            start = time.time()
            takeover.kill()
            takeover.wait_taken()
            self.house.wait(time.time(), "Pi killed", renewals=self.renewals)
            end = time.time()
        finally:
            takeover.stop()
        result = Result("Pi killed", True, self.house.counts(start, end), gaps=self.house.gaps(start, end), timeline=takeover.timeline())
        self.results.append(result)
        return result


def _rogue(net: Lan, ns: str, key: str, pool: tuple[str, str]) -> None:
    """An authoritative DHCP server that pings nothing, lending `pool`: what the Ainur's dnsmasq in dhcp mode is."""
    conf = net.root / f"{key}.conf"
    lines = [
        "port=0",
        "interface=eth0",
        "bind-interfaces",
        "log-dhcp",
        "dhcp-authoritative",
        "no-ping",
        f"dhcp-range={pool[0]},{pool[1]},255.255.255.0,12h",
    ]
    conf.write_text("\n".join(lines) + "\n")
    net._dnsmasq(key, ns, conf, net.root / f"{key}.leases")


class Breaks(Scenarios):
    """Deliberate breaks, after the scenarios, that the counts must show: what the assertions stand on."""

    def second_server(self) -> Result:
        """More authoritative servers on the LAN lending the router's range, beside the router: two servers answer.

        Two of them, since the sampler listens 1 s per DISCOVER and the lab's router pings an address for up to 3 s
        before it offers one (dnsmasq's default): its offer may come after the window, and the router alone cannot be
        counted on to be the second. The rogues ping nothing, so both answer in every window."""
        lent = (str(self.stack.network.dhcp_range.start), str(self.stack.network.dhcp_range.end))

        def step() -> None:
            _rogue(self.net, self.net.host("x", "192.168.0.240"), "rogue", lent)
            _rogue(self.net, self.net.host("y", "192.168.0.241"), "rogue-2", lent)

        result = self._measure("break: a second server", True, step, samples=3)
        self.net.stop("rogue")
        self.net.stop("rogue-2")
        return result

    def router_replaced(self) -> Result:
        """The router's DHCP replaced by an authoritative server lending another range, at the router's address: the
        household's renewals of its old addresses are NAKed."""

        def step() -> None:
            with self.house.held():
                self.net.stop("router")
                _rogue(self.net, self.net.router, "rogue-router", ("192.168.0.150", "192.168.0.160"))

        return self._measure("break: the router's DHCP replaced", True, step)


def wait_for_line(log: Path, line: str, after: int) -> None:
    """Until dnsmasq's log says it read the records file anew, at most 20 s."""
    wait_until(f"dnsmasq to say {line!r}", lambda: line in log.read_text()[after:], 20, lambda: f"\n{log.read_text()[after:]}")


def run_all(net: Lan, raw: dict[str, Any], clients: int, valar: str, renewals: int = 2, breaks: bool = False) -> list[Result]:
    """Every scenario in order on `net` (whose netboot dnsmasq is not started yet), the household running throughout;
    with `breaks` (proxy mode: the router's DHCP is the household's), the deliberate breaks after them."""
    house = Household(net, clients, f"manwe.{net.stack.network.domain}")
    # dnsmasq as its container runs it: the records loop beside it hands it the changes (plans.netboot.records).
    net.records_loop = True
    house.start()
    try:
        assert net.stack.ainur is not None
        if net.stack.ainur.netboot.mode == "proxy":
            house.wait_bound()
        run = Breaks(net, raw, house, renewals)
        run.bring_up(valar)
        run.app_added()
        run.machine_added()
        run.address_changed()
        run.machine_replaced()
        run.talos_bump()
        run.k3s_upgrade()
        run.pi_killed()
        if breaks:
            run.second_server()
            run.router_replaced()
        return run.results
    finally:
        house.stop()
