"""The netboot pod's readiness probes, as the kubelet runs them (tools/kubelet_probe.py) against the real dnsmasq and
nginx running the generated configs on the Pi of a LAN of network namespaces (tests.netns.lan).

The order on a real Pi: the pod starts, the kubelet probes it, and only once it is Ready does kube-vip v0.9.2 announce
the service address from this Pi (externalTrafficPolicy: Local; pkg/manager/watch_endpoints.go, getLocalEndpoints
counts the Endpoints' ready addresses alone). So each probe must pass while the Pi does not hold the service address:
a probe that needs it waits on itself, and Arda's boot gate (which waits for the netboot pod to be Ready) for ever.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest

from plans.netboot.pods import netboot_pod
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.netns.lan import Lan, in_ns, kubelet_probe, lan, require_root
from tests.tools import require

require_root()

SVC = "192.168.0.14"
PI = "192.168.0.13"


@pytest.fixture(scope="module")
def starting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """The Pi as the kubelet first probes the netboot pod: dnsmasq and nginx started, the service address not held."""
    # dnsmasq as its container runs it: the listener watch beside it makes a bind lost as the address came (records).
    with lan(load_stack_file(HOMELAB), tmp_path_factory.mktemp("probes"), f"ilv{os.getpid() % 10000}q", records_loop=True) as net:
        net.release_service_address()
        net.start_dnsmasq(keep_leases=False)
        yield net


def spec() -> dict[str, Any]:
    return netboot_pod(["28:d2:44:30:00:01"], "netboot-dnsmasq-0123456789")


def held(net: Lan) -> bool:
    return SVC in in_ns(net.pi, "ip", "-4", "-o", "addr", "show").stdout


def test_dnsmasqs_probe_passes_before_kube_vip_announces_the_service_address(starting: Lan) -> None:
    net = starting
    assert not held(net)
    got = kubelet_probe(net.pi, spec(), "dnsmasq", PI)
    assert got.returncode == 0, got.stderr
    assert got.stderr.strip() == "127.0.0.1:53 open"
    # What it vouches for: dnsmasq answers the inventory's names there (the Pi's loopback, which the kubelet shares).
    assert in_ns(net.pi, require("dig"), "@127.0.0.1", "+short", "+time=2", "+tries=1", "manwe.iluvatar.home.arpa").stdout.strip() == "192.168.0.11"


def test_the_first_dnsmasq_probe_dialled_the_pis_own_address_and_was_refused(starting: Lan) -> None:
    """The deliberate break: the probe with no host (the first version) dials the Pod's IP, the Pi's own address for a
    host-network Pod, where dnsmasq does not listen: never Ready, so never an endpoint, so never announced."""
    net = starting
    old = copy.deepcopy(spec())
    next(c for c in old["containers"] if c["name"] == "dnsmasq")["readinessProbe"]["tcpSocket"].pop("host", None)
    got = kubelet_probe(net.pi, old, "dnsmasq", PI)
    assert got.returncode == 1 and f"dial tcp {PI}:53" in got.stderr and "refused" in got.stderr, got.stderr


def test_a_dnsmasq_probe_at_the_service_address_would_wait_on_itself(starting: Lan) -> None:
    """The other tempting fix, pi-nfs's (host: the service address): before kube-vip announces it, nothing answers."""
    net = starting
    at_svc = copy.deepcopy(spec())
    next(c for c in at_svc["containers"] if c["name"] == "dnsmasq")["readinessProbe"]["tcpSocket"]["host"] = SVC
    got = kubelet_probe(net.pi, at_svc, "dnsmasq", PI)
    assert got.returncode == 1 and f"dial tcp {SVC}:53" in got.stderr, got.stderr


def test_the_lan_gets_no_answer_from_the_pi_until_it_holds_the_service_address(starting: Lan) -> None:
    """The loopback listener answers no one on the LAN: the Pi's own address stays silent, so two Pis never answer at
    once; once kube-vip adds the service address, dnsmasq (bind-dynamic) answers there."""
    net = starting
    client = net.host("c9", "192.168.0.250")
    silent = in_ns(client, require("dig"), f"@{PI}", "+short", "+time=1", "+tries=1", "manwe.iluvatar.home.arpa", check=False)
    assert silent.returncode != 0 and "192.168.0.11" not in silent.stdout, silent.stdout
    net.hold_service_address()
    try:
        answer = ""
        for _ in range(20):
            answer = in_ns(client, require("dig"), f"@{SVC}", "+short", "+time=1", "+tries=1", "manwe.iluvatar.home.arpa", check=False).stdout.strip()
            if answer:
                break
        assert answer == "192.168.0.11"
    finally:
        net.release_service_address()


def test_nginxs_probe_passes_at_the_pis_own_address(starting: Lan) -> None:
    """nginx listens on every address of the Pi (`listen 80;`, plans.netboot.nginx), so its httpGet probe with no host,
    at the Pod's IP, is answered before the service address exists: no deadlock, and /boot.ipxe is what iPXE asks first."""
    net = starting
    assert not held(net)
    got = kubelet_probe(net.pi, spec(), "http", PI)
    assert got.returncode == 0, got.stderr
    assert got.stderr.strip() == f"http://{PI}:80/boot.ipxe 200"


def test_nginxs_probe_fails_when_boot_ipxe_is_not_served(starting: Lan) -> None:
    """The deliberate break: a path nginx does not serve is a 404, which the kubelet counts as a failure (>= 400)."""
    net = starting
    broken = copy.deepcopy(spec())
    next(c for c in broken["containers"] if c["name"] == "http")["readinessProbe"]["httpGet"]["path"] = "/no-such-file"
    got = kubelet_probe(net.pi, broken, "http", PI)
    assert got.returncode == 1 and got.stderr.strip() == f"http://{PI}:80/no-such-file 404", got.stderr
