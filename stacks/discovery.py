"""Discovery config (`iluvatar:arda.discovery`): machines the inventory does not know, booted to be read.

With it, the Ainur's netboot service boots a machine whose MAC no node has into Talos's maintenance
mode: Talos with no machine config, which installs nothing, holds no secret and serves a read-only API
to anyone (docs/day2.md#adding-a-machine). `iluvatar discover` reads it there and prints its inventory
entry. The model is `stacks.model.Discovery`; this module holds its rules, each naming its config path.

What the Ainur can serve decides what discovery can be: they answer DHCP and PXE on network.lan only
(plans.netboot), so that is the one segment; a pool of addresses is theirs to lend only when they are
the LAN's DHCP server (netboot mode dhcp), and it must stay clear of every address the stack hands out
otherwise, or two machines would answer at one address.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address

from stacks.errors import Problem
from stacks.model import AddressRange, Ainur, Arda, Network
from stacks.rules import _range

DISCOVERY = "iluvatar:arda.discovery"


def pool_owner(pool: AddressRange) -> str:
    """What holds a pool address, as another rule names it (`taken` in stacks.load)."""
    return f"arda.discovery.pool {pool}, which the Ainur lend to machines being discovered"


def check(arda: Arda | None, ainur: Ainur | None, ainur_set: bool, network: Network | None, taken: Mapping[IPv4Address, str]) -> list[Problem]:
    """Every problem of arda.discovery; `taken` maps the LAN's static addresses (machines, VIPs) to what holds them."""
    if arda is None or arda.discovery is None:
        return []
    return list(_problems(arda, ainur, ainur_set, network, taken))


def _problems(arda: Arda, ainur: Ainur | None, ainur_set: bool, network: Network | None, taken: Mapping[IPv4Address, str]) -> Iterator[Problem]:
    discovery = arda.discovery
    assert discovery is not None
    if not ainur_set:
        yield Problem(
            DISCOVERY,
            "boots unknown machines from the Ainur's netboot service (DHCP, PXE), and this stack has no iluvatar:ainur; "
            "add the Ainur, or remove arda.discovery and read a machine's MAC and disks by hand (docs/day2.md#adding-a-machine)",
        )
    if discovery.vlan is not None:
        vlans = [v.name for v in network.vlans] if network is not None else []
        if network is not None and discovery.vlan not in vlans:
            yield Problem(f"{DISCOVERY}.vlan", f"{discovery.vlan} is not in network.vlans (known: {', '.join(vlans) or 'none defined'})")
        else:
            yield Problem(
                f"{DISCOVERY}.vlan",
                f"{discovery.vlan}: the Ainur's netboot service answers DHCP and PXE on network.lan only, so no machine on VLAN "
                f"{discovery.vlan} would boot to be discovered; remove vlan (discover on network.lan), then move the machine",
            )
    if ainur is not None and ainur.netboot.unknown_macs == "generic-worker":
        yield Problem(
            DISCOVERY,
            "and ainur.netboot.unknownMacs: generic-worker both claim the machines the inventory does not know (one boots them "
            "into maintenance mode to be read, the other makes them workers); keep one",
        )
    pool = discovery.pool
    path = f"{DISCOVERY}.pool"
    if pool is None and ainur is not None and ainur.netboot.mode == "dhcp":
        # Review 2 MEDIUM 3: a discovered machine would keep its network.dhcpRange lease (leaseTime) once `pulumi up`
        # reserves its address: Talos renews at half the lease (operator/dhcp4.go:183 at v1.12.4), past the apply's
        # 45-minute wait for it at that address. The pool's 2-minute lease is what moves it within a minute.
        yield Problem(
            path,
            "is not set: in ainur.netboot.mode dhcp a discovered machine would hold a network.dhcpRange address for "
            "network.leaseTime after `pulumi up` reserves its own, and the apply would not reach it; give a pool of a few "
            "free addresses outside network.dhcpRange and network.loadBalancerPool, e.g. pool: {start: A, end: B}",
        )
    if pool is None or network is None:
        return
    if ainur is not None and ainur.netboot.mode == "proxy":
        yield Problem(
            path,
            f"{pool}: in ainur.netboot.mode proxy the router hands out every address, so the Ainur have no pool to lend; "
            "remove pool (discovered machines then take the router's addresses) or set the mode to dhcp",
        )
    held = sorted((ip, owner) for ip, owner in taken.items() if ip in pool)
    # The gateway inside the pool with a fixed address beside it is one mistake, the pool's: said once, below, with a
    # pool clear of both (the gateway's own fix, a start past it, could still hold the other).
    gateway_too = network.gateway in pool and bool(held)
    yield from (p for p in _range(path, pool, network) if not (gateway_too and p.path == path and "contains network.gateway" in p.message))
    for what, other in (("network.dhcpRange", network.dhcp_range), ("network.loadBalancerPool", network.load_balancer_pool)):
        if pool.overlaps(other):
            yield Problem(path, f"{pool} overlaps {what} {other}; give the pool addresses outside it")
    if gateway_too:
        held = sorted([(network.gateway, "network.gateway"), *held])
    clear = _clear_pool(pool, network, ainur, taken)
    instead = f", e.g. {{start: {clear.start}, end: {clear.end}}}" if clear is not None else ""
    if len(held) == 1:
        yield Problem(path, f"{pool} holds {held[0][0]}, which is {held[0][1]}; move the pool past it{instead}")
    elif held:
        # One mistake, one problem: the pool is what moves, whatever it holds.
        listed = ", ".join(f"{ip} is {owner}" for ip, owner in held)
        yield Problem(path, f"{pool} holds {len(held)} fixed addresses: {listed}; move the pool past them{instead}")


def _clear_pool(pool: AddressRange, network: Network, ainur: Ainur | None, taken: Mapping[IPv4Address, str]) -> AddressRange | None:
    """A pool of `pool`'s size every rule of the pool takes: host addresses of network.lan apart from the gateway,
    network.dhcpRange, network.loadBalancerPool, the router's pool and every fixed address; the first from `pool`'s start
    on, else the first on the LAN; None when no run of free addresses is that long."""
    lent = [network.dhcp_range, network.load_balancer_pool]
    if ainur is not None and isinstance(ainur.netboot.router_pool, AddressRange):
        lent.append(ainur.netboot.router_pool)
    first, last = int(network.lan.network_address) + 1, int(network.lan.broadcast_address) - 1
    size = pool.size()

    def free(i: int) -> bool:
        ip = IPv4Address(i)
        return ip != network.gateway and ip not in taken and not any(ip in r for r in lent)

    for start in [*range(max(first, int(pool.start)), last + 1), *range(first, last + 1)]:
        if start + size - 1 <= last and all(free(i) for i in range(start, start + size)):
            return AddressRange(start=IPv4Address(start), end=IPv4Address(start + size - 1))
    return None
