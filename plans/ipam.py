"""IP address management: the arithmetic behind the static IP plan, on plain `ipaddress` values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network


def hosts(net: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    """First and last usable host address (a /31 or /32 has no network/broadcast to skip)."""
    if net.prefixlen >= 31:
        return net.network_address, net.broadcast_address
    return net.network_address + 1, net.broadcast_address - 1


def span(start: IPv4Address, end: IPv4Address) -> range:
    """The addresses start..end inclusive, as integers, cheap to test membership on."""
    return range(int(start), int(end) + 1)


def free_static(net: IPv4Network, taken: Iterable[IPv4Address], pools: Iterable[tuple[IPv4Address, IPv4Address]]) -> Iterator[IPv4Address]:
    """Host addresses of `net` that are neither taken nor inside a pool, in ascending order."""
    first, last = hosts(net)
    used = {int(ip) for ip in taken}
    ranges = [span(a, b) for a, b in pools]
    for i in span(first, last):
        if i not in used and not any(i in r for r in ranges):
            yield IPv4Address(i)
