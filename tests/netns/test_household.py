"""The household's DHCP and DNS through the program's changes, on the lab's LAN with the real dnsmasq (tests.netns.household).

Two LANs, one per DHCP mode, each built once for the module and both run at once: `proxy` beside an ISP-like router (the lab's router, a
second real dnsmasq lending the household its addresses), and `dhcp` with the router's DHCP off. On each, the household
runs through the bring-up, an app added, a machine added, its address changed, its replacement by another machine, a
Talos bump, a k3s upgrade and the serving Pi killed, one after another. Whether a change replaces the netboot pod is the program's to say (tests.netns.household.template_changes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import EVICTION_SECONDS, failover
from stacks import parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns.household import K3S_FROM, MOVED_IP, NEW_MAC, REPLACEMENT_MAC, Result, run_all
from tests.netns.lan import abandonable, in_ns, lan, require_root

require_root()

CLIENTS = 3
MODES = ["proxy", "dhcp"]
VALAR = "192.168.0.11"
SCENARIOS = ["bring-up", "app added", "machine added", "machine's address changed", "machine replaced", "Talos bump", "k3s upgrade", "Pi killed"]
# The changes the program makes with the netboot pod left running.
IN_PLACE = ["app added", "machine added", "machine's address changed", "machine replaced", "Talos bump", "k3s upgrade"]


def _run(mode: str, root: Path, prefix: str, called_off: threading.Event) -> dict[str, Result]:
    with abandonable(called_off):
        return _lab(mode, root, prefix)


def _lab(mode: str, root: Path, prefix: str) -> dict[str, Result]:
    raw = dict(read_stack_file(HOMELAB).config)
    ainur = raw["iluvatar:ainur"]
    raw["iluvatar:ainur"] = {**ainur, "k3sVersion": K3S_FROM, "netboot": {**ainur["netboot"], "mode": mode}}
    with lan(parse_stack(raw), root, prefix) as net:
        # Before the bring-up: no netboot pod yet (the address stays on the Pi: kube-vip announces it once the pod is
        # Ready, and the bring-up's dnsmasq is started with it held).
        net.stop("dnsmasq")
        valar = net.host("v", VALAR)
        assert net.stack.nodes[0].ip.exploded == VALAR
        in_ns(valar, "ip", "link", "set", "eth0", "address", net.stack.nodes[0].mac)
        return {r.scenario: r for r in run_all(net, raw, CLIENTS, valar, breaks=mode == "proxy")}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[dict[str, Result]]]]:
    """Both LANs run at once, each on its own thread: they share nothing (their own namespaces, bridge, programs and
    files), and each run is wall bound by the timers it waits out (the failover's above all), not by CPU, so one after
    the other only doubled the wall.

    A run still going at the module's end is wanted by no test: its lab is called off (tests.netns.lan.abandonable) and
    torn down before the pool's `with` ends. That is a Ctrl-C's case (on KeyboardInterrupt pytest 9.2.0 still runs
    pytest_sessionfinish, _pytest/main.py:339-370, which tears the fixtures down, _pytest/runner.py:111-112), or a `-k`
    that picked one mode's tests."""
    called_off = threading.Event()
    with ThreadPoolExecutor(len(MODES)) as pool:
        try:
            yield {
                mode: pool.submit(_run, mode, tmp_path_factory.mktemp(f"household-{mode}"), f"ilv{os.getpid() % 10000}h{mode[0]}", called_off)
                for mode in MODES
            }
        finally:
            called_off.set()


@pytest.fixture(scope="module", params=MODES)
def runs(request: pytest.FixtureRequest, both: dict[str, Future[dict[str, Result]]]) -> dict[str, Result]:
    return both[request.param].result()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_nak_no_duplicate_address_no_two_servers(runs: dict[str, Result], scenario: str) -> None:
    counts = runs[scenario].counts
    assert counts["discovers sampled"] > 0 and counts["dhcp renewals"] > 0, counts
    assert (counts["dhcp NAKs"], counts["duplicate addresses"], counts["two servers answering"]) == (0, 0, 0), counts


@pytest.mark.parametrize("scenario", IN_PLACE)
def test_no_gap_where_dnsmasq_keeps_running(runs: dict[str, Result], scenario: str) -> None:
    """The program leaves the netboot pod running for these (computed from its own objects: household.template_changes),
    a machine that boots from its disk added, given another address or replaced included (its reservation is a line of
    the DHCP hosts file, which the records loop hands the running dnsmasq with a SIGHUP), and the household misses
    nothing. A Talos bump and a k3s upgrade reach no file of dnsmasq's in the lab (k3s itself is not restarted: see
    docs/proof/household.md), so their zeros say only that the program leaves dnsmasq running for them."""
    result = runs[scenario]
    assert not result.restarts_dnsmasq
    counts = result.counts
    assert counts["dns queries"] > 0, counts
    assert (counts["dhcp failed"], counts["dns failed"]) == (0, 0), counts


@pytest.mark.parametrize("runs", ["dhcp"], indirect=True)
def test_the_running_dnsmasq_lends_the_reservations_as_they_now_are(runs: dict[str, Result]) -> None:
    """A real DHCP client of the machine's MAC after each change, with dnsmasq never restarted: the machine added is
    lent its reservation; given another address, the new one (not the old, which its client holds); removed and its
    address reserved for another MAC, the old MAC is lent an address of the range, never the reserved one, and the
    new MAC is lent it. A dnsmasq that only added the new lines (a dhcp-hostsdir) would lend 192.168.0.33 twice."""
    assert runs["machine added"].leased == {NEW_MAC: "192.168.0.33"}
    assert runs["machine's address changed"].leased == {NEW_MAC: MOVED_IP}
    replaced = runs["machine replaced"].leased
    assert replaced[REPLACEMENT_MAC] == MOVED_IP, replaced
    old = IPv4Address(replaced[NEW_MAC])
    dhcp_range = parse_stack(dict(read_stack_file(HOMELAB).config)).network.dhcp_range
    assert dhcp_range.start <= old <= dhcp_range.end, replaced


@pytest.mark.parametrize("runs", ["proxy"], indirect=True)
def test_the_counts_see_a_second_server_and_a_nak(runs: dict[str, Result]) -> None:
    """What the zeros above stand on: on the proxy-mode LAN (the breaks need its router lending the household), a second
    authoritative server beside the router is seen answering the sampler's DISCOVERs, and the router's DHCP replaced by
    one lending another range NAKs the household."""
    assert runs["break: a second server"].counts["two servers answering"] > 0, runs["break: a second server"].counts
    assert runs["break: the router's DHCP replaced"].counts["dhcp NAKs"] > 0, runs["break: the router's DHCP replaced"].counts


@pytest.mark.parametrize("runs", ["proxy", "dhcp"], indirect=True)
def test_the_pi_killed_leaves_the_household_a_gap_within_the_failover_bound(runs: dict[str, Result], request: pytest.FixtureRequest) -> None:
    """The serving Pi killed, and the takeover run by the failover's own timers (tests.netns.failover): the longest any
    household client went without a DNS answer (both modes) or without a lease (dhcp mode, where the Ainur lend) is
    within the bound the docs state (plans.netboot.failover.bound, from the same constants the program sets), and at
    least what those timers cannot beat: a grace period of silence (from the Pi's last node Lease renewal, at most a
    jittered renew interval before its death), the toleration and a whole lease of the service election. In proxy mode
    the router goes on lending: no renewal fails."""
    result = runs["Pi killed"]
    floor = failover.seconds(NODE_MONITOR_GRACE_PERIOD) - failover.node_lease_renew() + EVICTION_SECONDS + failover.SERVICE_LEASE_SECONDS
    gaps, bound = result.gaps, failover.bound()
    assert floor <= gaps["dns gap"] <= bound, (gaps, result.timeline)
    if request.node.callspec.params["runs"] == "dhcp":
        assert floor <= gaps["dhcp gap"] <= bound, (gaps, result.timeline)
        assert result.counts["dhcp failed"] > 0, result.counts
    else:
        assert result.counts["dhcp failed"] == 0, (result.counts, gaps)
