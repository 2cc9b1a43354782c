"""kube-vip's election of the service address, run on a lab Pi against the real API server (tests.netns.lan, tools.kube_cluster).

kube-vip is not run here; what decides when the address is on a Pi is its election, which is client-go's, and that is
what this module runs, with the program's settings (plans.netboot.failover.service_election):

- kube-vip v0.9.2 runs one election per Service with a Lease lock named `kubevip-<service>` in the Service's namespace,
  its node's name as identity (pkg/manager/servicesLeader.go:47-60), `RunOrDie` with the configured lease, renew
  deadline and retry period (:83-95). On starting to lead it syncs the Service: the address on the interface and a
  gratuitous ARP (ARP mode); on stopping it deletes the address (:96-113). Its caller starts the election again at once
  whenever it returns (pkg/manager/watch_endpoints.go:288-306), with a new LeaderElector.
- client-go v0.32.3 tools/leaderelection/leaderelection.go: `Run` acquires, then renews (:211-222); `acquire` tries
  at once and then a RetryPeriod stretched by up to JitterFactor 1.2 after each try (:252-275, wait.JitterUntil,
  sliding); `renew` runs rounds a RetryPeriod apart (wait.Until, sliding), each trying at once and every RetryPeriod
  (a ticker from the round's start: wait.PollUntilContextTimeout is not sliding) until RenewDeadline from the round's
  start, and gives up leading when a round ends unrenewed (:278-297); `tryAcquireOrRenew` (:405-475): the leader's fast
  update, else a get, a create when there is none, the observed record and its time noted when the record changed
  (:449-453), a refusal when another holds a lease still valid by that time (:455-458), else the update.
- resourcelock/leaselock.go: the record is the Lease's spec; an update puts the Lease as last read or written (its
  resourceVersion), so a stale writer gets a conflict.
- `renew` ends with `release()` before `Run`'s deferred OnStoppedLeading (:211-213, :301-304; kube-vip sets
  ReleaseOnCancel, servicesLeader.go:91): while the record it last saw names it, one update that empties the holder and
  shortens the lease to 1 s, bounded by RenewDeadline (:308-327). kube-vip's client bounds every request by 10 s
  (pkg/k8s/client.go:17, :65), so against an API that black-holes requests the holder keeps the address up to
  RenewDeadline + min(RenewDeadline, 10 s) after the round that failed began.
- kube-vip in ARP mode announces an address it holds with gratuitous ARP from its ARP manager, every vip_arpRate (3 s by
  default, pkg/kubevip/config_environment.go:278-290; pkg/arp/arp.go:78-96), alternately a reply whose target hardware
  address is its own and a request, both with the address as sender and target (pkg/vip/arp.go:70-115). Linux takes
  either as gratuitous (net/ipv4/arp.c arp_is_garp) and so moves a neighbour entry to the new holder even within the
  entry's locktime (1 s after its last update); an ARP reply to the broadcast hardware address is not gratuitous to it
  and is dropped in that second, leaving a client sending to the old holder until its entry's probes fail, ~8 s later.
  Here the first goes out at once; kube-vip's first comes at its manager's next tick, up to 3 s later.
- SIGTERM (the kubelet stopping kube-vip's container: its pod deleted) closes kube-vip's shutdown channel
  (pkg/manager/manager.go:203-214, manager_arp.go:34-42), which cancels the Service's election
  (watch_endpoints.go:161-186); the election was run with ReleaseOnCancel (servicesLeader.go:91), so client-go releases
  the lease it holds, a record with no holder and a 1 s lease (leaderelection.go:301-304, :308-330), before `Run`'s
  deferred OnStoppedLeading deletes the address (:211-213; servicesLeader.go:104-113). The process then exits.

The elector runs as a process in the Pi's network namespace (`python -m tests.netns.election`), its API requests leaving
from there, and writes one JSON line per event. A k3s restart closes the API server's connections and refuses new ones
until it serves again: each request here dials anew, and the lab's API outage (`cut`) is a route that fails every dial
at once, as a refused one does. A link cut or a valar lost without a reset answers nothing instead: `black_hole` drops
every packet to the API server, and each request hangs until its timeout.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JITTER_FACTOR = 1.2  # client-go v0.32.3 tools/leaderelection/leaderelection.go:72
CLIENT_TIMEOUT = 10.0  # kube-vip v0.9.2 pkg/k8s/client.go:17 defaultTimeout, the rest.Config's Timeout (:65)
ARP_RATE = 3.0  # kube-vip v0.9.2 vip_arpRate's default, in seconds (pkg/kubevip/config_environment.go:278-290)


class RequestError(Exception):
    """A request that got no answer it could use (refused, unreachable, timed out, or an error status)."""


class TerminatedError(Exception):
    """SIGTERM: the kubelet stopping kube-vip's container."""


def _terminate(signum: int, frame: object) -> None:
    raise TerminatedError()


class Api:
    """HTTPS to the API server with a service account's token: a new connection per request (see the module's doc)."""

    def __init__(self, host: str, port: int, ca: Path, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.context = ssl.create_default_context(cafile=str(ca))

    def request(self, method: str, path: str, body: Any, deadline: float) -> tuple[int, Any]:
        timeout = min(deadline - time.monotonic(), CLIENT_TIMEOUT)
        if timeout <= 0:
            raise RequestError("context deadline exceeded")
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
        except (OSError, http.client.HTTPException) as e:
            raise RequestError(repr(e)) from e
        finally:
            connection.close()


def micro_time(t: float) -> str:
    """metav1.MicroTime as JSON writes it (RFC 3339 with microseconds, UTC)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """resourcelock.LeaseLock: the record is the Lease's spec; updates put the Lease as last seen."""

    def __init__(self, api: Api, namespace: str, name: str, identity: str) -> None:
        self.api, self.identity = api, identity
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name, self.namespace = name, namespace
        self.lease: dict[str, Any] | None = None

    def get(self, deadline: float) -> tuple[dict[str, Any], bytes] | None:
        """The record and its raw form; None when there is no Lease."""
        status, answer = self.api.request("GET", f"{self.path}/{self.name}", None, deadline)
        if status == 404:
            return None
        if status != 200:
            raise RequestError(f"get: HTTP {status}")
        self.lease = answer
        spec = dict(answer.get("spec") or {})
        return spec, json.dumps(spec, sort_keys=True).encode()

    def create(self, record: dict[str, Any], deadline: float) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record}
        status, answer = self.api.request("POST", self.path, body, deadline)
        if status != 201:
            raise RequestError(f"create: HTTP {status}")
        self.lease = answer

    def update(self, record: dict[str, Any], deadline: float) -> None:
        if self.lease is None:
            raise RequestError("lease not initialized, call get or create first")
        body = {**self.lease, "spec": record}
        status, answer = self.api.request("PUT", f"{self.path}/{self.name}", body, deadline)
        if status != 200:
            raise RequestError(f"update: HTTP {status}")
        self.lease = answer


@dataclass
class LeaderElector:
    """One client-go LeaderElector (a new one each time kube-vip starts the Service's election again)."""

    lock: LeaseLock
    lease_duration: float
    renew_deadline: float
    retry_period: float
    log: Callable[..., None]
    observed: dict[str, Any] = field(default_factory=dict)
    observed_raw: bytes = b""
    observed_time: float = 0.0

    def is_leader(self) -> bool:
        return bool(self.observed.get("holderIdentity") == self.lock.identity)

    def lease_valid(self, now: float) -> bool:
        return self.observed_time + float(self.observed.get("leaseDurationSeconds") or 0) > now

    def _observe(self, record: dict[str, Any], raw: bytes | None = None) -> None:
        self.observed, self.observed_time = record, time.monotonic()
        self.observed_raw = raw if raw is not None else json.dumps(record, sort_keys=True).encode()

    def try_acquire_or_renew(self, deadline: float) -> bool:
        now_wall, now = time.time(), time.monotonic()
        record = {
            "holderIdentity": self.lock.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": micro_time(now_wall),
            "renewTime": micro_time(now_wall),
            "leaseTransitions": 0,
        }
        try:
            # 1. The leader's fast path: update the record it last saw.
            if self.is_leader() and self.lease_valid(now):
                record.update(acquireTime=self.observed.get("acquireTime"), leaseTransitions=self.observed.get("leaseTransitions", 0))
                try:
                    self.lock.update(record, deadline)
                    self._observe(record)
                    return True
                except RequestError:
                    pass  # falling back to the slow path
            # 2. Obtain or create the record.
            got = self.lock.get(deadline)
            if got is None:
                self.lock.create(record, deadline)
                self._observe(record)
                return True
            old, raw = got
            # 3. Note it, and its time, when it changed.
            if raw != self.observed_raw:
                self._observe(old, raw)
            if old.get("holderIdentity") and self.lease_valid(now) and not self.is_leader():
                self.log("held", holder=old.get("holderIdentity"))
                return False
            # 4. Update it.
            if self.is_leader():
                record.update(acquireTime=old.get("acquireTime"), leaseTransitions=old.get("leaseTransitions", 0))
            else:
                record["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
            self.lock.update(record, deadline)
            self._observe(record)
            return True
        except RequestError as e:
            self.log("try failed", error=str(e))
            return False

    def release(self) -> bool:
        """client-go's release() (leaderelection.go:308-330): a leader writes a record with no holder and a 1 s lease,
        bounded by RenewDeadline; whether the update went through."""
        if not self.is_leader():
            return True
        now = micro_time(time.time())
        record = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": self.observed.get("leaseTransitions", 0),
        }
        try:
            self.lock.update(record, time.monotonic() + self.renew_deadline)
        except RequestError:
            return False
        self._observe(record)
        return True

    def acquire(self) -> None:
        """Try at once, then a jittered RetryPeriod after each try ended, until one succeeds."""
        while not self.try_acquire_or_renew(time.monotonic() + 3600):
            time.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))

    def renew(self) -> None:
        """Rounds a RetryPeriod apart; a round tries on a RetryPeriod ticker until RenewDeadline from its start."""
        while True:
            start = time.monotonic()
            deadline = start + self.renew_deadline
            tick = start
            renewed = False
            while time.monotonic() < deadline:
                if self.try_acquire_or_renew(deadline):
                    renewed = True
                    break
                tick += self.retry_period
                time.sleep(max(0.0, min(tick, deadline) - time.monotonic()))
            if not renewed:
                # ReleaseOnCancel's release, before OnStoppedLeading (leaderelection.go:301-304).
                if self.is_leader():
                    self.log("released" if self.release() else "release failed")
                return
            self.log("renewed")
            time.sleep(self.retry_period)


def gratuitous_arp(ip: str, request: bool) -> None:
    """One of kube-vip's gratuitous ARPs for an address it holds (pkg/vip/arp.go:70-115), broadcast: a reply whose target
    hardware address is this Pi's own, or a request; either moves the LAN's neighbour entries to this Pi at once."""
    addr = socket.inet_aton(ip)
    hw = bytes.fromhex(Path("/sys/class/net/eth0/address").read_text().strip().replace(":", ""))
    broadcast = b"\xff" * 6
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1 if request else 2, hw, addr, broadcast if request else hw, addr)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind(("eth0", 0))
        s.send(broadcast + hw + b"\x08\x06" + arp)


def announce(ip: str, stop: threading.Event) -> None:
    """kube-vip's ARP manager while the address is held: a reply, then every ARP_RATE the other kind (pkg/arp/arp.go:
    78-96; the alternation starts with a reply, pkg/vip/arp.go:25-26, :106-112), until `stop`."""
    request = False
    while True:
        gratuitous_arp(ip, request)
        request = not request
        if stop.wait(ARP_RATE):
            return


def main(argv: list[str]) -> int:
    """One Pi's kube-vip election for the service address, for good: a JSON line per event on standard output."""
    parser = argparse.ArgumentParser()
    for name in ("host", "port", "ca", "token-file", "namespace", "lease", "identity", "address", "election"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    election = json.loads(args.election)

    def log(event: str, **extra: Any) -> None:
        print(json.dumps({"t": time.time(), "event": event, **extra}), flush=True)

    api = Api(args.host, int(args.port), Path(args.ca), Path(args.token_file).read_text().strip())
    signal.signal(signal.SIGTERM, _terminate)
    log("started")
    elector: LeaderElector | None = None
    holding = False
    stop = threading.Event()
    try:
        while True:  # watch_endpoints.go:288-306: started again at once whenever it returns
            lock = LeaseLock(api, args.namespace, args.lease, args.identity)
            elector = LeaderElector(
                lock, float(election["vip_leaseduration"]), float(election["vip_renewdeadline"]), float(election["vip_retryperiod"]), log
            )
            elector.acquire()
            log("leading")
            holding = True
            subprocess.run(["ip", "addr", "replace", f"{args.address}/32", "dev", "eth0"], check=True)
            stop = threading.Event()
            arp = threading.Thread(target=announce, args=(args.address, stop), daemon=True)
            arp.start()
            log("address added")
            elector.renew()
            log("stopped leading")
            stop.set()
            arp.join()
            subprocess.run(["ip", "addr", "del", f"{args.address}/32", "dev", "eth0"], check=False)
            holding = False
            log("address deleted")
    except TerminatedError:
        # Release first, then the address, as the module's doc says kube-vip does.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if elector is not None and elector.is_leader():
            log("released" if elector.release() else "release failed")
        stop.set()
        if holding:
            subprocess.run(["ip", "addr", "del", f"{args.address}/32", "dev", "eth0"], check=False)
            log("address deleted")
        log("exited")
        return 0


# --- The lab's side: the API server on a link into each Pi, an elector per Pi ---------------------------------------


@dataclass
class Candidate:
    """A Pi running the election: its process and what it said."""

    ns: str
    identity: str
    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def times(self, event: str, after: float = 0.0) -> list[float]:
        return [e["t"] for e in list(self.events) if e["event"] == event and e["t"] > after]

    def holding(self) -> list[tuple[float, float]]:
        """When it held the address: (added, deleted), the last open until now."""
        spans, added = [], None
        for e in list(self.events):
            if e["event"] == "address added":
                added = e["t"]
            elif e["event"] == "address deleted" and added is not None:
                spans.append((added, e["t"]))
                added = None
        if added is not None:
            spans.append((added, time.time()))
        return spans


@contextmanager
def api_links(prefix: str, pis: dict[str, str], block: int) -> Iterator[str]:
    """A veth from the test's namespace into each Pi (`pis`: key -> namespace), each a /30 of 169.254.0.0/16 from
    `block` on: the API server's address is the first link's near end, which every other Pi reaches through its own."""
    made: list[str] = []

    def address(n: int, i: int) -> str:
        base = (169 << 24) | (254 << 16) | ((block + n) << 2)
        return socket.inet_ntoa(struct.pack("!I", base + i))

    api = address(0, 1)
    try:
        for n, (key, ns) in enumerate(pis.items()):
            veth = f"{prefix}k{key}"
            subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "kube0", "netns", ns], check=True)
            made.append(veth)
            subprocess.run(["ip", "addr", "add", f"{address(n, 1)}/30", "dev", veth], check=True)
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
            run = ["ip", "netns", "exec", ns, "ip"]
            subprocess.run([*run, "addr", "add", f"{address(n, 2)}/30", "dev", "kube0"], check=True)
            subprocess.run([*run, "link", "set", "kube0", "up"], check=True)
            if n:
                subprocess.run([*run, "route", "add", f"{api}/32", "via", address(n, 1)], check=True)
        yield api
    finally:
        for veth in made:
            subprocess.run(["ip", "link", "del", veth], check=False)


def cut(ns: str, api: str) -> None:
    """The API server unreachable from `ns`: a rule that prohibits its address, so every dial fails at once."""
    subprocess.run(["ip", "netns", "exec", ns, "ip", "rule", "add", "to", f"{api}/32", "prohibit", "priority", "100"], check=True)


def mend(ns: str, api: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "ip", "rule", "del", "to", f"{api}/32", "prohibit", "priority", "100"], check=True)


def black_hole(ns: str, api: str) -> None:
    """The API server silent to `ns`: every packet to it dropped, so dials and requests hang rather than fail."""
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-I", "OUTPUT", "-d", f"{api}/32", "-p", "tcp", "-j", "DROP"], check=True)


def unblock(ns: str, api: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-D", "OUTPUT", "-d", f"{api}/32", "-p", "tcp", "-j", "DROP"], check=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
