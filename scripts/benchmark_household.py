"""The household's DHCP and DNS through a failover of the Ainur's dnsmasq: real clients, the real dnsmasq, counted.

    sudo .venv/bin/python scripts/benchmark_household.py [--seconds 30] [--clients 4]

On a LAN of network namespaces (tests.netns.lan, the homelab's stack, `dhcp` mode), a household of clients each runs a
real DHCP client (busybox udhcpc: one whole transaction, DISCOVER to ACK, every 2 s) and a DNS query against the
service address every 0.5 s, while a sampler sends a DHCPDISCOVER every second and counts the servers answering it
(plans.netboot.dhcp_probe.collect). Per scenario it counts failed DHCP transactions, NAKs, duplicate addresses (two
clients holding one address at once) and failed DNS queries, and the most servers that answered one DISCOVER.

Scenarios, each from a fresh LAN whose first Pi serves:
- steady: nothing happens;
- k3s restart: a third of the way in, the serving Pi's kube-vip deletes the service address (its pod is not ready), and
  `--gap` seconds later the replacement on the second Pi, started with the leases restored (restore-leases), gets it;
  the first Pi's dnsmasq keeps running throughout (a k3s restart keeps containers);
- Pi killed: the same, but the first Pi's dnsmasq dies with it.

A benchmark script, not a test: `--gap` models how long the replacement takes to be Ready and announced (the node
grace, the toleration, the pod's start), which this LAN does not run; what is measured is what the household sees.

Then the program's changes (tests.netns.household, the scenarios tests/netns/test_household.py asserts on), on one LAN
per DHCP mode (`proxy` beside an ISP-like router, a second real dnsmasq lending the addresses; `dhcp` with the router's
DHCP off): the bring-up (the program's DHCP probe step, then dnsmasq), an app added, a machine added, a Talos bump, a
k3s upgrade (each: the netboot pod replaced when the program's template of it changes, else the records loop's pass)
and the serving Pi killed (a second Pi takes over through the failover's own timers, tests.netns.failover: the longest
the household went without a DNS answer or a lease is measured, against plans.netboot.failover.bound). Each client runs
udhcpc for good and renews as soon as its last renewal ended (1 s apart), and queries the service address every 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plans import netboot  # noqa: E402
from stacks import load_stack_file, parse_stack, read_stack_file  # noqa: E402
from tests.netns import household  # noqa: E402
from tests.netns.lan import Lan, in_ns, lan  # noqa: E402
from tests.tools import require  # noqa: E402

OTHER_PI = "192.168.0.12"
SAMPLER = (
    "import json,sys,time\n"
    "from plans.netboot.dhcp_probe import collect\n"
    "end=time.monotonic()+float(sys.argv[1])\n"
    "while time.monotonic()<end:\n"
    "    got=collect('eth0',tries=1,gap=1.0,listen=1.0)\n"
    "    print(json.dumps([a.mac for a in got if a.kind=='offer']),flush=True)\n"
)


class Household:
    """The clients' loops and their counts."""

    def __init__(self, net: Lan, clients: int, seconds: float) -> None:
        self.net, self.seconds = net, seconds
        self.macs = [f"02:00:5e:00:ab:{i:02x}" for i in range(clients)]
        self.counts: Counter[str] = Counter()
        self.held: dict[str, str] = {}
        self.duplicates: set[tuple[str, ...]] = set()
        self.lock = threading.Lock()

    def dhcp(self, mac: str) -> None:
        ns = self.net.client(mac)
        end = time.monotonic() + self.seconds
        udhcpc = require("udhcpc")
        lease = self.net.root / f"bench-{mac.replace(':', '')}"
        while time.monotonic() < end:
            lease.unlink(missing_ok=True)
            cmd = ["env", f"LEASE_FILE={lease}", udhcpc, "-i", "eth0", "-f", "-q", "-n", "-t", "2", "-T", "1", "-A", "0"]
            done = in_ns(ns, *cmd, "-s", str(self.net.root / "udhcpc.sh"), check=False, timeout=30)
            with self.lock:
                self.counts["dhcp transactions"] += 1
                self.counts["dhcp NAKs"] += (done.stdout + done.stderr).count("received DHCP NAK")
                if not lease.exists():
                    self.counts["dhcp failed"] += 1
                    self.held.pop(mac, None)
                else:
                    ip = dict(line.split("=", 1) for line in lease.read_text().splitlines())["ip"]
                    self.held[mac] = ip
                    owners = [m for m, a in self.held.items() if a == ip]
                    if len(owners) > 1:
                        self.duplicates.add((ip, *sorted(owners)))
            time.sleep(2)

    def dns(self, mac: str) -> None:
        ns = self.net.client(mac)
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            got = in_ns(ns, require("dig"), f"@{self.net.service_ip}", "+short", "+time=1", "+tries=1", "manwe.iluvatar.home.arpa", check=False)
            with self.lock:
                self.counts["dns queries"] += 1
                self.counts["dns failed"] += got.stdout.strip() != "192.168.0.11"
            time.sleep(0.5)


def second_pi(net: Lan, leases_from: Path | None) -> None:
    """The replacement netboot pod's dnsmasq on the second Pi, its leases restored from the first's (restore-leases)."""
    ns = net.host("p2", OTHER_PI)
    root = net.root / "p2"
    (root / "leases").mkdir(parents=True, exist_ok=True)
    if leases_from is not None and leases_from.exists():
        shutil.copy(leases_from, root / "leases" / "dnsmasq.leases")
    conf = root / "dnsmasq.conf"
    conf.write_text(netboot.dnsmasq_conf(net.stack, tftp_root=str(net.root / "tftp"), lease_file=str(root / "leases" / "dnsmasq.leases")))
    net._dnsmasq("dnsmasq-p2", ns, conf, None)


def run(scenario: str, seconds: float, clients: int, gap: float, prefix: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, lan(load_stack_file(ROOT / "Pulumi.homelab.yaml"), Path(tmp), prefix) as net:
        house = Household(net, clients, seconds)
        for mac in house.macs:
            net.client(mac)
        sampler_ns = net.client("02:00:5e:00:fe:01")
        sampler = subprocess.Popen(
            [require("ip"), "netns", "exec", sampler_ns, sys.executable, "-c", SAMPLER, str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        threads = [threading.Thread(target=f, args=(m,)) for m in house.macs for f in (house.dhcp, house.dns)]
        for t in threads:
            t.start()
        if scenario != "steady":
            time.sleep(seconds / 3)
            net.release_service_address()
            if scenario == "pi killed":
                net.stop("dnsmasq")
            time.sleep(gap)
            second_pi(net, net.root / "leases" / "dnsmasq.leases")
            ns = net.clients["host-p2"]
            in_ns(ns, "ip", "addr", "replace", f"{net.service_ip}/32", "dev", "eth0")
            net.announce(ns, net.service_ip)
        for t in threads:
            t.join()
        out, _ = sampler.communicate(timeout=60)
        answered = [len(set(json.loads(line))) for line in out.splitlines() if line.strip()]
        return {
            "scenario": scenario,
            **{k: house.counts[k] for k in ("dhcp transactions", "dhcp failed", "dhcp NAKs", "dns queries", "dns failed")},
            "duplicate addresses": len(house.duplicates),
            "discovers sampled": len(answered),
            "most servers answering one DISCOVER": max(answered, default=0),
            "discovers unanswered": answered.count(0),
        }


def run_changes(mode: str, clients: int, prefix: str, renewals: int) -> list[dict[str, object]]:
    """The program's changes one after another on one LAN in `mode`, as tests/netns/test_household.py runs them."""
    raw = dict(read_stack_file(ROOT / "Pulumi.homelab.yaml").config)
    ainur = raw["iluvatar:ainur"]
    raw["iluvatar:ainur"] = {**ainur, "k3sVersion": household.K3S_FROM, "netboot": {**ainur["netboot"], "mode": mode}}
    with tempfile.TemporaryDirectory() as tmp, lan(parse_stack(raw), Path(tmp), prefix) as net:
        net.stop("dnsmasq")
        valar = net.host("v", "192.168.0.11")
        in_ns(valar, "ip", "link", "set", "eth0", "address", net.stack.nodes[0].mac)
        rows: list[dict[str, object]] = []
        for r in household.run_all(net, raw, clients, valar, renewals):
            gaps = {k: r.gaps.get(k, "") for k in ("dhcp gap", "dns gap")}
            rows.append({"mode": mode, "scenario": r.scenario, "netboot pod replaced": "yes" if r.restarts_dnsmasq else "no", **r.counts, **gaps})
            if r.timeline:
                print(f"{mode} {r.scenario}: the takeover's steps, seconds after the kill: {r.timeline}", file=sys.stderr)
        return rows


def table(rows: list[dict[str, object]]) -> None:
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, 0)) for k in keys) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--gap", type=float, default=6, help="seconds between the old Pi losing the address and the new one taking it")
    parser.add_argument("--renewals", type=int, default=5, help="each client's renewals after each change, before the next")
    parser.add_argument("--only", choices=("failover", "changes"), help="run one of the two sets")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    if args.only != "changes":
        table([run(s, args.seconds, args.clients, args.gap, f"ilvh{i}") for i, s in enumerate(("steady", "k3s restart", "pi killed"))])
    if args.only != "failover":
        table([row for i, mode in enumerate(("proxy", "dhcp")) for row in run_changes(mode, args.clients, f"ilvc{i}", args.renewals)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
