"""The network plan: properties over random valid stacks, and the homelab plan exactly."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from plans.network import plan_network
from stacks import StackConfigError, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1
from tests.strategies import ip, lan_of, raw_stacks, subnet_of

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(raw_stacks())
def test_generated_stacks_are_valid(raw: dict[str, Any]) -> None:
    parse_stack(raw)


@FAST
@given(raw_stacks())
def test_every_planned_address_is_inside_its_subnet_and_outside_the_pools(raw: dict[str, Any]) -> None:
    plan = plan_network(parse_stack(raw))
    lan = lan_of(raw)
    net = raw["iluvatar:network"]
    pools = [(ip(net["dhcpRange"]["start"]), ip(net["dhcpRange"]["end"])), (ip(net["loadBalancerPool"]["start"]), ip(net["loadBalancerPool"]["end"]))]
    by_name = {n["name"]: n for n in raw["iluvatar:nodes"]}
    on_lan = [ip(r.ip) for r in plan.reservations if r.vlan is None] + [ip(v) for v in plan.vips.values()]
    for address in on_lan:
        assert address in lan
        assert address not in (lan.network_address, lan.broadcast_address, ip(net["gateway"]))
        assert not any(lo <= address <= hi for lo, hi in pools)
    for r in plan.reservations:
        subnet = subnet_of(raw, by_name[r.name])
        assert r.vlan == by_name[r.name].get("vlan")
        assert ip(r.ip) in subnet and ip(r.ip) not in (subnet.network_address, subnet.broadcast_address)
    event(f"reservations on VLANs: {sum(r.vlan is not None for r in plan.reservations) > 0}")
    assert len(set(on_lan)) == len(on_lan), "two machines or VIPs share an address"
    assert len({r.ip for r in plan.reservations}) == len(plan.reservations)
    gateways = [ip(g) for g in plan.gateways.values()]
    assert len(set(gateways)) == 2
    assert all(pools[1][0] <= g <= pools[1][1] for g in gateways), "gateways must come from the load-balancer pool"
    assert len({r.mac for r in plan.reservations}) == len(plan.reservations)
    assert len({d.name for d in plan.dns_records}) == len(plan.dns_records)


@FAST
@given(raw_stacks(two_address_pool=True))
def test_a_two_address_pool_is_exactly_the_two_gateways(raw: dict[str, Any]) -> None:
    plan = plan_network(parse_stack(raw))
    pool = raw["iluvatar:network"]["loadBalancerPool"]
    assert plan.gateways == {"envoy-external": pool["end"], "envoy-internal": pool["start"]}


@FAST
@given(raw_stacks())
def test_free_static_count_adds_up(raw: dict[str, Any]) -> None:
    stack = parse_stack(raw)
    plan = plan_network(stack)
    net = stack.network
    # Machines on a VLAN take an address of their VLAN, not of the LAN.
    used = sum(n.vlan is None for n in stack.nodes) + len(plan.vips) + 1  # and the gateway
    assert plan.free_static_addresses == net.lan.num_addresses - 2 - net.dhcp_range.size() - net.load_balancer_pool.size() - used


@FAST
@given(raw_stacks(), st.randoms(use_true_random=False))
def test_plan_ignores_node_order_and_mac_spelling(raw: dict[str, Any], rnd: Any) -> None:
    """Reordering or respelling the inventory changes nothing (determinism across processes: test_program)."""
    plan = plan_network(parse_stack(raw))
    shuffled = dict(raw)
    nodes = [dict(n, mac=n["mac"].upper().replace(":", "-")) if len(n["mac"]) == 17 else dict(n) for n in raw["iluvatar:nodes"]]
    rnd.shuffle(nodes)
    shuffled["iluvatar:nodes"] = nodes
    assert plan_network(parse_stack(shuffled)) == plan
    assert all(r.mac == r.mac.lower() and r.mac.count(":") == 5 for r in plan.reservations)


@FAST
@given(raw_stacks(), st.data())
def test_a_node_moved_into_the_dhcp_range_is_caught_at_its_path(raw: dict[str, Any], data: st.DataObject) -> None:
    net = raw["iluvatar:network"]
    lo, hi = int(ip(net["dhcpRange"]["start"])), int(ip(net["dhcpRange"]["end"]))
    k = data.draw(st.integers(min_value=0, max_value=len(raw["iluvatar:nodes"]) - 1))
    moved = str(IPv4Address(data.draw(st.integers(min_value=lo, max_value=hi))))
    nodes = list(raw["iluvatar:nodes"])
    # Onto the LAN, if it was on a VLAN: the DHCP range is the LAN's.
    nodes[k] = {**{key: v for key, v in nodes[k].items() if key != "vlan"}, "ip": moved}
    with pytest.raises(StackConfigError) as err:
        parse_stack({**raw, "iluvatar:nodes": nodes})
    # The fix names the LAN's first free address, which the stack's own addresses decide (stacks.rules.free_address).
    assert [str(p).split("; ")[0] for p in err.value.problems] == [
        f"iluvatar:nodes[{k}].ip: {moved} is inside network.dhcpRange {net['dhcpRange']['start']}-{net['dhcpRange']['end']}, "
        "so DHCP could hand it to another machine"
    ]
    assert str(err.value.problems[0]).split("; ")[1].startswith(f"write an address inside network.lan {net['lan']}, outside network.dhcpRange")


@FAST
@given(raw_stacks(vlans=True), st.data())
def test_a_vlan_machine_moved_off_its_vlan_is_caught_at_its_path(raw: dict[str, Any], data: st.DataObject) -> None:
    nodes = list(raw["iluvatar:nodes"])
    k = data.draw(st.sampled_from([i for i, n in enumerate(nodes) if n.get("vlan")]))
    subnet = subnet_of(raw, nodes[k])
    outside = str(subnet.broadcast_address + 1)  # the next block: outside this VLAN, and on no other (each has its own /24)
    nodes[k] = {**nodes[k], "ip": outside}
    with pytest.raises(StackConfigError) as err:
        parse_stack({**raw, "iluvatar:nodes": nodes})
    gateway = next(v.get("gateway") for v in raw["iluvatar:network"]["vlans"] if v["name"] == nodes[k]["vlan"])
    fix = f"write a host address of {subnet}" + (f" other than its gateway {gateway}" if gateway else "")
    assert [str(p) for p in err.value.problems] == [
        f"iluvatar:nodes[{k}].ip: {outside} is outside network.vlans {nodes[k]['vlan']} {subnet}; {fix}, or move {nodes[k]['name']} to the VLAN its address is on"
    ]


def test_homelab_plan() -> None:
    plan = plan_network(load_stack_file(HOMELAB))
    assert [(r.name, r.ip, r.mac) for r in plan.reservations] == [
        ("manwe", "192.168.0.11", "d8:3a:dd:10:00:01"),
        ("eonwe", "192.168.0.12", "d8:3a:dd:10:00:02"),
        ("ilmare", "192.168.0.13", "d8:3a:dd:10:00:03"),
        ("taniquetil", "192.168.0.21", "a8:b8:e0:20:00:01"),
        ("tirion", "192.168.0.22", "a8:b8:e0:20:00:02"),
        ("alqualonde", "192.168.0.23", "a8:b8:e0:20:00:03"),
        ("gandalf", "192.168.0.31", "28:d2:44:30:00:01"),
        ("saruman", "192.168.0.32", "28:d2:44:30:00:02"),
    ]
    assert plan.reservations[3].hostname == "taniquetil.iluvatar.home.arpa"
    assert plan.vips == {"ainur": "192.168.0.10", "arda": "192.168.0.20"}
    assert ("arda.iluvatar.home.arpa", "A", "192.168.0.20") in [(d.name, d.type, d.value) for d in plan.dns_records]
    assert len(plan.dns_records) == 10
    # 254 hosts - 100 DHCP - 20 pool - 8 nodes - 2 VIPs - gateway
    assert plan.free_static_addresses == 123


def test_rk1_plan_has_only_the_arda_vip() -> None:
    plan = plan_network(load_stack_file(RK1))
    assert plan.vips == {"turing": "10.10.0.10"}
    assert {r.cluster for r in plan.reservations} == {"arda"}


def _reservation(name: str, mac: str, ip: str, role: str, vlan: str | None = None) -> dict[str, Any]:
    cluster = "ainur" if role in ("valar", "maiar") else "arda"
    return {"name": name, "mac": mac, "ip": ip, "hostname": f"{name}.iluvatar.home.arpa", "role": role, "cluster": cluster, "vlan": vlan}


def test_the_whole_homelab_plan_with_a_machine_on_the_vlan() -> None:
    """Every field of the plan, exactly: LAN machines by address, then each VLAN's, and the VLAN address frees a LAN one."""
    raw = dict(read_stack_file(HOMELAB).config)
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    nodes[7] = {**nodes[7], "vlan": "iot", "ip": "192.168.20.32"}
    raw["iluvatar:nodes"] = list(reversed(nodes))  # the stack's order does not matter
    records = {
        "ainur": "192.168.0.10", "alqualonde": "192.168.0.23", "arda": "192.168.0.20", "eonwe": "192.168.0.12", "gandalf": "192.168.0.31",
        "ilmare": "192.168.0.13", "manwe": "192.168.0.11", "saruman": "192.168.20.32", "taniquetil": "192.168.0.21", "tirion": "192.168.0.22",
    }  # fmt: skip
    assert plan_network(parse_stack(raw)).to_dict() == {
        "lan": "192.168.0.0/24",
        "gateway": "192.168.0.1",
        "dns_servers": ("192.168.0.1",),
        "domain": "iluvatar.home.arpa",
        "external_domain": "example.com",
        "dhcp_range": ("192.168.0.100", "192.168.0.199"),
        "load_balancer_pool": ("192.168.0.220", "192.168.0.239"),
        "vlans": ({"id": 20, "name": "iot", "cidr": "192.168.20.0/24"},),
        "reservations": (
            _reservation("manwe", "d8:3a:dd:10:00:01", "192.168.0.11", "valar"),
            _reservation("eonwe", "d8:3a:dd:10:00:02", "192.168.0.12", "maiar"),
            _reservation("ilmare", "d8:3a:dd:10:00:03", "192.168.0.13", "maiar"),
            _reservation("taniquetil", "a8:b8:e0:20:00:01", "192.168.0.21", "valinor"),
            _reservation("tirion", "a8:b8:e0:20:00:02", "192.168.0.22", "valinor"),
            _reservation("alqualonde", "a8:b8:e0:20:00:03", "192.168.0.23", "valinor"),
            _reservation("gandalf", "28:d2:44:30:00:01", "192.168.0.31", "istari"),
            _reservation("saruman", "28:d2:44:30:00:02", "192.168.20.32", "istari", vlan="iot"),
        ),
        "dns_records": tuple({"name": f"{name}.iluvatar.home.arpa", "type": "A", "value": ip} for name, ip in records.items()),
        "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.20"},
        "gateways": {"envoy-external": "192.168.0.239", "envoy-internal": "192.168.0.238"},
        # 254 hosts - 100 DHCP - 20 pool - 7 LAN machines - 2 VIPs - the gateway
        "free_static_addresses": 124,
    }


def test_vlans_are_listed_by_id_and_the_rk1_plan_has_no_external_domain() -> None:
    raw = dict(read_stack_file(RK1).config)
    raw["iluvatar:network"] = {
        **raw["iluvatar:network"],
        "vlans": [{"id": 30, "name": "cameras", "cidr": "10.30.0.0/24"}, {"id": 20, "name": "iot", "cidr": "10.20.0.0/24"}],
    }
    plan = plan_network(parse_stack(raw))
    assert [v["id"] for v in plan.vlans] == [20, 30]
    assert (plan.external_domain, plan.dns_servers) == (None, ("10.10.0.1", "9.9.9.9"))


def test_lan_machines_come_before_every_vlans_whatever_its_name() -> None:
    """Sorted by (VLAN, address) with the LAN first, even before a VLAN whose name sorts before letters."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:network"] = {
        **raw["iluvatar:network"],
        "vlans": [*raw["iluvatar:network"]["vlans"], {"id": 40, "name": "0-lab", "cidr": "192.168.40.0/24", "gateway": "192.168.40.1"}],
    }
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    nodes[6] = {**nodes[6], "vlan": "0-lab", "ip": "192.168.40.31"}
    raw["iluvatar:nodes"] = nodes
    assert [r.name for r in plan_network(parse_stack(raw)).reservations][-2:] == ["saruman", "gandalf"]
