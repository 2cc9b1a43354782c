"""The DHCP mode (stacks.netboot_mode): the last deployment's mode read from the dnsmasq config it served, and what a
stack may change against it. Each refusal's exact message is a fixture of tests/fixtures/invalid_stacks.yaml."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from iluvatar import summary
from plans.netboot import dnsmasq_conf
from stacks import StackConfigError, load_stack_file, netboot_mode
from stacks.load import parse_stack, read_stack_file
from stacks.model import AddressRange, StackConfig
from tests.edit import HOMELAB, MINIMAL, edit, homelab_doc, write_stack
from tests.plans.test_netboot import VARIANTS
from tests.stacks.test_invalid_stacks import CASES as INVALID_CASES

FIRST_NETBOOT = Path(__file__).parent.parent / "fixtures" / "outputs-66ca479"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_mode_a_deployment_ran_is_read_from_the_config_it_served(name: str) -> None:
    """Every mode and discovery variant, as plans.netboot renders it and the netboot layer exports it (`dnsmasqConf`)."""
    stack = VARIANTS[name]()
    assert stack.ainur is not None
    assert netboot_mode.deployed_mode(dnsmasq_conf(stack)) == stack.ainur.netboot.mode


def test_the_first_netboot_versions_config_reads_as_dhcp() -> None:
    """The outputs of the first version with netboot (66ca479), whose stacks ran the old default."""
    for conf in ("card-dnsmasq.conf", "netbooting-dnsmasq.conf"):
        assert netboot_mode.deployed_mode((FIRST_NETBOOT / conf).read_text()) == "dhcp"


def test_no_config_no_mode() -> None:
    nothing: tuple[object, ...] = (None, {}, "", "bind-dynamic\n")
    assert [netboot_mode.deployed_mode(v) for v in nothing] == [None, None, None, None]


def _with(**netboot: object) -> StackConfig:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": netboot}
    return parse_stack(raw)


DHCP_RAN = dnsmasq_conf(load_stack_file(HOMELAB))
PROXY_RAN = dnsmasq_conf(_with(mode="proxy"))


def test_what_a_stack_may_say_against_the_mode_that_runs() -> None:
    # The same mode, stated or not: nothing to refuse (a new stack's proxy against a proxy deployment, too).
    assert netboot_mode.check(_with(mode="dhcp"), DHCP_RAN) == []
    assert netboot_mode.check(_with(), PROXY_RAN) == []
    # A first deployment: nothing ran, nothing to compare.
    assert netboot_mode.check(_with(), None) == []
    # Stated moves: to proxy with the pool the router will lend named, apart from the range the Ainur lent (the plan
    # says what the router needs, and when); to dhcp once the router's DHCP is off, with the pool it lent named
    # (network.dhcpRange apart from it: the static rule).
    assert netboot_mode.check(_with(mode="proxy", routerPool={"start": "192.168.0.240", "end": "192.168.0.250"}), DHCP_RAN) == []
    assert netboot_mode.check(_with(mode="dhcp", routerDhcpOff=True, routerPool={"start": "192.168.0.240", "end": "192.168.0.250"}), PROXY_RAN) == []
    # Refused: the default moving a dhcp homelab, dhcp beside a router the stack does not say is off, and dhcp lending
    # while the household holds the router's leases from a pool the stack does not name.
    assert [p.path for p in netboot_mode.check(_with(), DHCP_RAN)] == [netboot_mode.MODE]
    assert [p.path for p in netboot_mode.check(_with(mode="dhcp"), PROXY_RAN)] == [netboot_mode.MODE]
    assert [p.path for p in netboot_mode.check(_with(mode="dhcp", routerDhcpOff=True), PROXY_RAN)] == [netboot_mode.ROUTER_POOL]
    # Once dhcp runs, the pool is the user's to keep (it is still checked against the ranges) or remove.
    assert netboot_mode.check(_with(mode="dhcp"), DHCP_RAN) == []


def test_a_first_bring_up_in_dhcp_mode_names_the_pool_the_router_lent() -> None:
    """The Ainur's first deployment in dhcp mode follows a router that lent until just now: the household holds its
    leases, which the probe cannot see, so the pool (or `none`: no lease of another server held) is asked as on a move."""
    assert [p.path for p in netboot_mode.check(_with(mode="dhcp"), None)] == [netboot_mode.ROUTER_POOL]
    assert [p.path for p in netboot_mode.check(_with(mode="dhcp", routerDhcpOff=True), None)] == [netboot_mode.ROUTER_POOL]
    assert netboot_mode.check(_with(mode="dhcp", routerPool="none"), None) == []
    assert netboot_mode.check(_with(mode="dhcp", routerPool={"start": "192.168.0.240", "end": "192.168.0.250"}), None) == []
    # `none` is no word on a move from proxy, where the router lent every address until now.
    assert [p.path for p in netboot_mode.check(_with(mode="dhcp", routerDhcpOff=True, routerPool="none"), PROXY_RAN)] == [netboot_mode.ROUTER_POOL]
    # It says nothing proxy mode contradicts, so a dhcp stack keeps it on a move to proxy.
    assert netboot_mode.static(_with(mode="proxy", routerPool="none").ainur) == []


def test_a_move_to_proxy_names_the_routers_pool_apart_from_the_ainurs_leases() -> None:
    """dhcp to proxy: the household keeps the Ainur's leases of network.dhcpRange (12 h) after the switch, and the
    router, which does not know them, starts lending: its pool must be said, and apart from the range the last
    deployment lent (read from its config, whatever the stack now says), or a router that does not check an address
    first lends one a device holds."""
    apart = {"start": "192.168.0.200", "end": "192.168.0.250"}
    unsaid = netboot_mode.check(_with(mode="proxy"), DHCP_RAN)
    assert [p.path for p in unsaid] == [netboot_mode.ROUTER_POOL]
    assert "192.168.0.100-192.168.0.199 (leases of up to 12h)" in unsaid[0].message, unsaid[0].message
    assert [p.path for p in netboot_mode.check(_with(mode="proxy", routerPool="none"), DHCP_RAN)] == [netboot_mode.ROUTER_POOL]
    overlapping = netboot_mode.check(_with(mode="proxy", routerPool={"start": "192.168.0.150", "end": "192.168.0.250"}), DHCP_RAN)
    assert [p.message.split(":")[0] for p in overlapping] == [
        "192.168.0.150-192.168.0.250 overlaps 192.168.0.100-192.168.0.199, which the last deployment's Ainur lent (leases of up to 12h)"
    ]
    assert netboot_mode.check(_with(mode="proxy", routerPool=apart), DHCP_RAN) == []
    # Once proxy runs, the pool is the router's to grow back: nothing compares it any more.
    assert netboot_mode.check(_with(mode="proxy", routerPool={"start": "192.168.0.100", "end": "192.168.0.250"}), PROXY_RAN) == []
    stack = _with(mode="proxy", routerPool=apart)
    assert netboot_mode.static(stack.ainur, stack.network) == []
    assert netboot_mode.deployed_ranges(DHCP_RAN) == [(AddressRange(start="192.168.0.100", end="192.168.0.199"), "12h")]
    assert netboot_mode.deployed_ranges(PROXY_RAN) == []


def test_a_router_pool_is_on_the_lan() -> None:
    """A pool half off network.lan (a typo in its end) is refused at validate, as one wholly off it is (a fixture)."""
    with pytest.raises(StackConfigError) as err:
        _with(mode="dhcp", routerPool={"start": "192.168.0.240", "end": "192.168.1.10"})
    assert [p.path for p in err.value.problems] == [netboot_mode.ROUTER_POOL]
    stack = _with(mode="dhcp", routerPool={"start": "192.168.0.240", "end": "192.168.0.254"})
    assert netboot_mode.static(stack.ainur, stack.network) == []


def test_the_service_address_a_deployment_answered_from_is_read_from_its_config() -> None:
    """The DHCP probe counts answers from it as the Ainur's own while a move of ainur.serviceIp is on its way."""
    assert netboot_mode.deployed_service_ip(DHCP_RAN) == "192.168.0.14"
    assert netboot_mode.deployed_service_ip(PROXY_RAN) == "192.168.0.14"
    for conf in ("card-dnsmasq.conf", "netbooting-dnsmasq.conf"):
        assert netboot_mode.deployed_service_ip((FIRST_NETBOOT / conf).read_text()) == "192.168.0.14"
    nothing: tuple[object, ...] = (None, {}, "", "listen-address=127.0.0.1\n")
    assert [netboot_mode.deployed_service_ip(v) for v in nothing] == [None, None, None, None]


def test_the_shipped_stacks_state_the_mode_they_ran() -> None:
    """Pulumi.homelab.yaml and the example ran dhcp, the old default; both say so, so the new default changes neither.
    Pulumi.rk1.yaml has no Ainur, so no mode."""
    for path in (HOMELAB, MINIMAL):
        stack = load_stack_file(path)
        assert stack.ainur is not None and netboot_mode.stated(stack.ainur) and stack.ainur.netboot.mode == "dhcp"
        assert netboot_mode.check(stack, DHCP_RAN) == []


# The broken stacks of the LAN's plan and of the service address, from tests/fixtures/invalid_stacks.yaml: none depends
# on the mode (the pool is the router's in proxy mode, and the inventory's fixed addresses stay out of it all the same).
NETWORK_CASES = [
    c
    for c in INVALID_CASES
    if set(c.get("set") or {})
    and all(k.startswith(("iluvatar:network", "iluvatar:ainur.serviceIp")) for k in c["set"])
    and not {"delete", "add", "file", "deployed", "arda", "dnsmasqConf"} & set(c)
    # Rules of dhcp mode alone: a DNS server or the NAS inside the range is one the Ainur could lend; in proxy mode it is
    # the router's pool, where the device may hold a reservation (stacks.addresses; the NAS is warned of, stacks.warn).
    # The range moved over the gateway takes the homelab's NAS in with it.
    and c["name"] not in ("dns-server-inside-the-range-the-ainur-lend", "dhcp-range-contains-gateway")
]


def test_there_are_network_cases_to_try() -> None:
    assert len(NETWORK_CASES) >= 20


@pytest.mark.parametrize("case", NETWORK_CASES, ids=[c["name"] for c in NETWORK_CASES])
def test_a_proxy_mode_stack_is_checked_as_a_dhcp_one(case: dict[str, Any], tmp_path: Path) -> None:
    """Proxy mode's dnsmasq answers on network.lan (`dhcp-range=<lan>,proxy,<netmask>`) at ainur.serviceIp, beside the
    router's pool network.dhcpRange: every check of those keys holds in proxy mode, with the same message."""
    # A copy: tests.edit.edit puts a case's values into the document it edits (tests/stacks/test_schema.py does the same).
    doc = edit(homelab_doc(), {**copy.deepcopy(case["set"]), "iluvatar:ainur.netboot.mode": "proxy"})
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert [str(p) for p in err.value.problems] == case["expect"]


def test_validate_says_when_the_mode_is_the_default_not_the_stacks() -> None:
    """Offline, before the preview that compares it with the deployment: a stack that leaves the mode to the default is
    told so, and what a homelab serving its LAN's DHCP must write."""
    assert summary.ainur(_with()) == (
        "Ainur: k3s v1.35.8+k3s1, API VIP 192.168.0.10, DHCP/TFTP/HTTP/DNS at 192.168.0.14 (netboot proxy, the default, as "
        "ainur.netboot.mode is not set: a homelab whose Ainur serve its DHCP must set it to dhcp), Git mirror at 192.168.0.15; Secrets encrypted at rest"
    )
    assert "(netboot proxy), Git mirror" in str(summary.ainur(_with(mode="proxy")))


def test_a_move_to_proxy_keeps_the_routers_pool_off_a_reservation_the_stack_dropped() -> None:
    """#53: each machine the last dhcp deployment reserved holds its address on an infinite lease, renewed never, until
    it restarts. The router learns the stack's reservations as static leases; one the stack dropped (saruman given
    another address with the move) is in no such list, so a router pool over its old address would lend it twice."""
    from plans.netboot import served_conf

    ran = served_conf(load_stack_file(HOMELAB))
    assert ("28:d2:44:30:00:02", IPv4Address("192.168.0.32")) in netboot_mode.deployed_reservations(ran)
    over = {"start": "192.168.0.30", "end": "192.168.0.60"}
    # The stack keeps every reservation: the router's static leases hold them, nothing to refuse.
    assert netboot_mode.check(_with(mode="proxy", routerPool=over), ran) == []
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": "proxy", "routerPool": over}}
    raw["iluvatar:nodes"] = [{**n, "ip": "192.168.0.35"} if n["name"] == "saruman" else n for n in raw["iluvatar:nodes"]]
    [problem] = netboot_mode.check(parse_stack(raw), ran)
    assert (problem.path, problem.message) == (
        netboot_mode.ROUTER_POOL,
        "192.168.0.30-192.168.0.60 holds 192.168.0.32, which the last deployment's Ainur reserved for 28:d2:44:30:00:02 on "
        "an infinite lease, and the stack no longer does: that machine keeps the address until it restarts, and the router, "
        "with no static lease for it, could lend it to another device. Set the router's DHCP pool apart from 192.168.0.32 "
        "and say it as routerPool, until that machine has restarted or left the LAN; or keep the machine's reservation; or "
        "keep mode: dhcp (docs/layers/netboot.md#changing-the-dhcp-mode)",
    )
    raw["iluvatar:ainur"]["netboot"]["routerPool"] = {"start": "192.168.0.33", "end": "192.168.0.60"}
    assert netboot_mode.check(parse_stack(raw), ran) == []
