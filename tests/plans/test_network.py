"""The network plan: properties over random valid stacks, and the homelab plan exactly."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plans.network import plan_network
from stacks import StackConfigError, load_stack_file, parse_stack
from tests.edit import HOMELAB, RK1
from tests.strategies import ip, lan_of, raw_stacks

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
    statics = [ip(r.ip) for r in plan.reservations] + [ip(v) for v in plan.vips.values()]
    for address in statics:
        assert address in lan
        assert address not in (lan.network_address, lan.broadcast_address, ip(net["gateway"]))
        assert not any(lo <= address <= hi for lo, hi in pools)
    assert len(set(statics)) == len(statics), "two machines or VIPs share an address"
    gateways = [ip(g) for g in plan.gateways.values()]
    assert len(set(gateways)) == 2
    assert all(pools[1][0] <= g <= pools[1][1] for g in gateways), "gateways must come from the load-balancer pool"
    assert len({r.mac for r in plan.reservations}) == len(plan.reservations)
    assert len({d.name for d in plan.dns_records}) == len(plan.dns_records)


@FAST
@given(raw_stacks())
def test_free_static_count_adds_up(raw: dict[str, Any]) -> None:
    stack = parse_stack(raw)
    plan = plan_network(stack)
    net = stack.network
    used = len(stack.nodes) + len(plan.vips) + 1  # and the gateway
    assert plan.free_static_addresses == net.lan.num_addresses - 2 - net.dhcp_range.size() - net.load_balancer_pool.size() - used


@FAST
@given(raw_stacks(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_and_ignores_node_order_and_mac_spelling(raw: dict[str, Any], rnd: Any) -> None:
    plan = plan_network(parse_stack(raw))
    assert plan == plan_network(parse_stack(raw))
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
    nodes[k] = {**nodes[k], "ip": moved}
    with pytest.raises(StackConfigError) as err:
        parse_stack({**raw, "iluvatar:nodes": nodes})
    assert [str(p) for p in err.value.problems] == [
        f"iluvatar:nodes[{k}].ip: {moved} is inside network.dhcpRange {net['dhcpRange']['start']}-{net['dhcpRange']['end']}, "
        "so DHCP could hand it to another machine"
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
