"""IP arithmetic, checked against brute force on random networks."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from plans.ipam import free_static, hosts, span


@st.composite
def networks(draw: st.DrawFn, min_prefix: int = 22, max_prefix: int = 32) -> IPv4Network:
    prefix = draw(st.integers(min_value=min_prefix, max_value=max_prefix))
    return IPv4Network((draw(st.integers(min_value=0, max_value=(1 << 32) - 1)), prefix), strict=False)


@given(networks(max_prefix=30))
def test_hosts_skip_the_network_and_broadcast_addresses(net: IPv4Network) -> None:
    first, last = hosts(net)
    assert (first, last) == (net.network_address + 1, net.broadcast_address - 1)
    assert int(last) - int(first) + 1 == net.num_addresses - 2


@given(networks(min_prefix=31))
def test_point_to_point_and_host_networks_use_every_address(net: IPv4Network) -> None:
    """A /31 (RFC 3021) or /32 has no network or broadcast address to skip."""
    assert hosts(net) == (net.network_address, net.broadcast_address)


@given(net=networks(), data=st.data())
def test_free_static_is_the_set_difference(net: IPv4Network, data: st.DataObject) -> None:
    first, last = hosts(net)
    addr = st.integers(min_value=int(first), max_value=int(last)).map(IPv4Address)
    taken = data.draw(st.lists(addr, max_size=8))
    pools = [tuple(sorted(p)) for p in data.draw(st.lists(st.tuples(addr, addr), max_size=3))]
    free = list(free_static(net, taken, pools))  # type: ignore[arg-type]
    expected = [IPv4Address(i) for i in span(first, last) if IPv4Address(i) not in taken and not any(int(a) <= i <= int(b) for a, b in pools)]
    assert free == expected
    assert all(f in net for f in free)
