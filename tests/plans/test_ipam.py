"""IP arithmetic, checked against brute force on random networks."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from plans.ipam import free_static, hosts, span


@st.composite
def networks(draw: st.DrawFn) -> IPv4Network:
    prefix = draw(st.integers(min_value=22, max_value=32))
    return IPv4Network((draw(st.integers(min_value=0, max_value=(1 << 32) - 1)), prefix), strict=False)


@given(networks())
def test_hosts_are_inside_and_skip_network_and_broadcast(net: IPv4Network) -> None:
    first, last = hosts(net)
    assert first in net and last in net and first <= last
    if net.prefixlen <= 30:
        assert (first, last) == (net.network_address + 1, net.broadcast_address - 1)
        assert int(last) - int(first) + 1 == net.num_addresses - 2


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
