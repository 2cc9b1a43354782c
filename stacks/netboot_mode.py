"""The Ainur's DHCP mode (`iluvatar:ainur.netboot.mode`): what a stack may say, and what a live homelab lets it change.

The LAN's DHCP serves the whole household. In `proxy` mode the router keeps lending every address and the Ainur answer
only PXE; in `dhcp` mode the Ainur are the LAN's DHCP server (dnsmasq `dhcp-authoritative` over `network.dhcpRange`),
which is safe only where the router's DHCP is off. The default is `proxy`: a new stack beside an ISP router never fights
it. It was `dhcp`, so a deployed homelab that never stated the mode ran dhcp; read as today's default it would stop
serving its LAN's DHCP on the next `up`. The last deployment's mode is read back from its own output `dnsmasqConf`
(plans.netboot.dnsmasq.dnsmasq_conf, exported by every deployment with the Ainur since the first): `dhcp-authoritative`
is written in `dhcp` mode only, `dhcp-range=<lan>,proxy,<netmask>` in `proxy` mode only.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from stacks import addresses
from stacks.errors import Problem
from stacks.model import AddressRange, Ainur, Discovery, Network, StackConfig

MODE = "iluvatar:ainur.netboot.mode"
ROUTER_DHCP_OFF = "iluvatar:ainur.netboot.routerDhcpOff"
ROUTER_POOL = "iluvatar:ainur.netboot.routerPool"
ROUTER_ADDRESS = "iluvatar:ainur.netboot.routerAddress"
LEASE_TIME = "iluvatar:ainur.netboot.leaseTime"
RUNBOOK = "docs/layers/netboot.md#changing-the-dhcp-mode"
MODES = "docs/layers/netboot.md#dhcp-modes"
# routerPool's word that no other DHCP server's lease is held on the LAN.
NO_POOL = "none"


def deployed_mode(dnsmasq_conf: Any) -> str | None:
    """The mode the last deployment ran the Ainur's dnsmasq in, from its exported config; None where there was none."""
    if not isinstance(dnsmasq_conf, str):
        return None
    for line in dnsmasq_conf.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "dhcp-authoritative":
            return "dhcp"
        if key == "dhcp-range" and value.split(",")[1:2] == ["proxy"]:
            return "proxy"
    return None


def deployed_service_ip(dnsmasq_conf: Any) -> str | None:
    """The service address the last deployment's dnsmasq answered from (its `listen-address` other than the loopback,
    plans.netboot.dnsmasq), or None where there was none: until the netboot objects change, the running dnsmasq answers
    from it, so the DHCP probe counts its answers as the Ainur's own (plans.netboot.dhcp_probe)."""
    if not isinstance(dnsmasq_conf, str):
        return None
    for line in dnsmasq_conf.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "listen-address" and value != "127.0.0.1":
            return value
    return None


def stated(ainur: Ainur) -> bool:
    """Whether the stack says its mode (else it is the default, `proxy`)."""
    return "mode" in ainur.netboot.model_fields_set


def static(ainur: Ainur | None, network: Network | None = None, discovery: Discovery | None = None) -> list[Problem]:
    """What a proxy-mode stack cannot also say: that the router's DHCP is off, or a lease time (the router's); a router
    pool it may say (the one the router lends, read on a move from dhcp); in dhcp mode, a router pool off the LAN or that the ranges the Ainur lend (of `network`,
    `discovery`) overlap; in either, a router address off the LAN."""
    if ainur is None:
        return []
    nb, out = ainur.netboot, []
    if nb.router_address is not None and network is not None and nb.router_address not in network.lan:
        out.append(
            Problem(
                ROUTER_ADDRESS,
                f"{nb.router_address} is not in network.lan {network.lan}: the router's DHCP server answers the LAN's devices "
                f"from an address on it; give the address its DHCP answers carry as server identifier, or remove routerAddress "
                f"to take network.gateway {network.gateway}",
            )
        )
    if nb.mode == "dhcp":
        return out + (_on_lan(nb.router_pool, network) or _apart(ainur, network, discovery))
    if nb.router_dhcp_off:
        out.append(
            Problem(
                ROUTER_DHCP_OFF,
                "true with ainur.netboot.mode proxy: in proxy mode the Ainur answer only the machines they boot, and the "
                "router's DHCP lends every address, so with it off nothing would lend the household theirs; turn the "
                "router's DHCP on and remove routerDhcpOff, or set ainur.netboot.mode: dhcp",
            )
        )
    if "lease_time" in nb.model_fields_set:
        out.append(
            Problem(
                LEASE_TIME,
                f"{nb.lease_time} has no effect with ainur.netboot.mode proxy: the router lends the addresses and sets "
                "their lease time; remove leaseTime, or set ainur.netboot.mode: dhcp",
            )
        )
    # In proxy mode a range is the pool the router lends: asked on a move from dhcp, where it must stay apart from the
    # ranges the Ainur lent until their leases end (check), and harmless after; `none` says only that no other
    # server's lease is held.
    return out + _on_lan(nb.router_pool, network)


def _on_lan(pool: AddressRange | str | None, network: Network | None) -> list[Problem]:
    """A router pool outside network.lan: the router lends on the LAN the Ainur serve, so a pool elsewhere is a slip
    (192.168.1.x on a 192.168.0.0/24 LAN) that no overlap with the Ainur's ranges could ever catch."""
    if not isinstance(pool, AddressRange) or network is None or (pool.start in network.lan and pool.end in network.lan):
        return []
    return [
        Problem(
            ROUTER_POOL,
            f"{pool} is not in network.lan {network.lan}: the router lends addresses on the LAN the Ainur serve, so the pool "
            f"it lent is in it. Copy start and end from the router's DHCP settings (both in {network.lan}), or say "
            f"routerPool: {NO_POOL} if no DHCP server but the Ainur ever lent on this LAN ({RUNBOOK})",
        )
    ]


def _apart(ainur: Ainur, network: Network | None, discovery: Discovery | None) -> list[Problem]:
    """A router pool the Ainur's ranges overlap: the household holds the router's leases from it until each ends, and
    the Ainur's dnsmasq lends without a ping first (`no-ping`), so it would offer a held address to the next device that
    joins. dnsmasq 2.90 takes an address from the range when no lease of its own and no reservation holds it
    (src/dhcp.c:777-870, address_allocate: lease_find_by_addr, config_find_by_address; do_icmp_ping returns "free" at
    once with no-ping). A range apart from the router's pool is never offered a router's lease; a device holding one
    that asks to keep it is refused (authoritative: src/rfc2131.c:1308-1310, "address not available") and takes a new address."""
    pool = ainur.netboot.router_pool
    if not isinstance(pool, AddressRange):
        return []
    return [
        Problem(
            ROUTER_POOL,
            f"{pool} overlaps {lent.key} {lent.range}, which the Ainur lend: the household's devices keep the addresses the router lent "
            "them until their leases end, and the Ainur lend without a ping first, so a device joining could be given an "
            f"address another holds. Move {lent.key} apart from the router's pool (if that pool spans the LAN, shrink it on the "
            f"router first, in proxy mode, and wait its lease time), and keep routerPool until the router's lease time has "
            f"passed since its DHCP went off ({RUNBOOK})",
        )
        for lent in addresses.lent_ranges(network, ainur, discovery.pool if discovery is not None else None)
        if lent.lender == "ainur" and lent.range.overlaps(pool)
    ]


def check(stack: StackConfig, dnsmasq_conf: Any) -> list[Problem]:
    """The mode against the one the last deployment ran (its output `dnsmasqConf`): a mode the stack does not state that
    differs from it, and a move to `dhcp` the stack does not say the router is ready for, are refused at preview."""
    if stack.ainur is None:
        return []
    before, nb = deployed_mode(dnsmasq_conf), stack.ainur.netboot
    if before is None and nb.mode == "dhcp" and nb.router_pool is None:
        # The first time the Ainur lend: the router lent until now, as a rule (it lends through this `up` until
        # netboot-router-off asks its DHCP off, right before the netboot pod), and the probe cannot see leases already
        # held, so the pool is asked as on a move.
        return [
            Problem(
                ROUTER_POOL,
                f"is not set, and ainur.netboot.mode is dhcp on the Ainur's first deployment: the household's devices keep "
                "the addresses the router lent them until their leases end, and the Ainur lend network.dhcpRange "
                f"{stack.network.dhcp_range} without a ping first, so a device joining could be given an address another "
                "holds. Say the pool the router lent (its DHCP settings) as ainur.netboot.routerPool: {start: ..., end: ...}, "
                f"with network.dhcpRange apart from it; or routerPool: {NO_POOL} if no DHCP server but the Ainur ever lent "
                "on this LAN or the router's DHCP has been off for longer than its lease time; or set mode: proxy "
                f"({MODES})",
            )
        ]
    if before is None or before == nb.mode:
        return []
    if not stated(stack.ainur):
        return [
            Problem(
                MODE,
                f"is not set, so it is {nb.mode} (a new stack's default), and the last deployment ran the Ainur in mode "
                f"{before}: the next `up` would {_would(before)}. State the mode: ainur.netboot.mode: {before} keeps the "
                f"LAN as it runs; {nb.mode} changes it ({RUNBOOK})",
            )
        ]
    if nb.mode == "proxy":
        return _router_apart(stack, dnsmasq_conf)
    if nb.mode == "dhcp" and not nb.router_dhcp_off:
        return [
            Problem(
                MODE,
                "dhcp, and the last deployment ran the Ainur in mode proxy, beside the router's DHCP: with it still on once "
                "the Ainur lend, the LAN would have two DHCP servers, the Ainur authoritative (they refuse the router's leases) "
                "and neither checking an address is free first. Say you will turn the router's DHCP server off with "
                "ainur.netboot.routerDhcpOff: true: `up` says when (the step netboot-router-off, right before the netboot pod "
                f"restarts in dhcp mode); or keep mode: proxy ({RUNBOOK})",
            )
        ]
    if nb.mode == "dhcp" and nb.router_pool == NO_POOL:
        return [
            Problem(
                ROUTER_POOL,
                f"{NO_POOL}, and the last deployment ran the Ainur in mode proxy, where the router lends every address: the "
                "household's devices hold the router's leases until they end. Say the pool the router lent (its DHCP "
                "settings) as ainur.netboot.routerPool: {start: ..., end: ...}, with network.dhcpRange apart from it; or "
                f"keep mode: proxy ({RUNBOOK})",
            )
        ]
    if nb.mode == "dhcp" and nb.router_pool is None:
        return [
            Problem(
                ROUTER_POOL,
                "is not set, and the last deployment ran the Ainur in mode proxy: the household's devices keep the "
                "addresses the router lent them until their leases end, and the Ainur lend network.dhcpRange without a "
                "ping first, so a device joining could be given an address another holds. Say the pool the router lent "
                "(its DHCP settings) as ainur.netboot.routerPool: {start: ..., end: ...}, with network.dhcpRange apart "
                f"from it; or keep mode: proxy ({RUNBOOK})",
            )
        ]
    return []


def deployed_ranges(dnsmasq_conf: Any) -> list[tuple[AddressRange, str]]:
    """The ranges the last deployment's dnsmasq lent, each with its lease time, from its `dhcp-range` lines
    (plans.netboot.dnsmasq: `[tag:...,]START,END,NETMASK,LEASE`; a proxy range lends nothing)."""
    if not isinstance(dnsmasq_conf, str):
        return []
    out = []
    for line in dnsmasq_conf.splitlines():
        key, _, value = line.strip().partition("=")
        items = [i for i in value.split(",") if not i.startswith(("tag:", "set:"))]
        if key != "dhcp-range" or len(items) < 4 or "proxy" in items:
            continue
        out.append((AddressRange(start=IPv4Address(items[0]), end=IPv4Address(items[1])), items[-1]))
    return out


def deployed_reservations(dnsmasq_conf: Any) -> list[tuple[str, IPv4Address]]:
    """The (MAC, address) reservations the last deployment's dnsmasq served, from the `dhcp-host` lines of its exported
    config (plans.netboot.dnsmasq.served_conf: `MAC,IP,NAME,infinite`), lower-case MACs."""
    if not isinstance(dnsmasq_conf, str):
        return []
    out = []
    for line in dnsmasq_conf.splitlines():
        key, _, value = line.strip().partition("=")
        if key != "dhcp-host":
            continue
        items = value.split(",")
        macs = [i.lower() for i in items if i.count(":") == 5]
        ips = [i for i in items if i.count(".") == 3 and all(part.isdigit() for part in i.split("."))]
        if macs and ips:
            out.append((macs[0], IPv4Address(ips[0])))
    return out


def _gone_reservations(stack: StackConfig, dnsmasq_conf: Any, pool: AddressRange) -> list[Problem]:
    """A move from dhcp to proxy: each machine the last deployment reserved holds its address on an infinite lease, and
    asks for it again only when it restarts (an infinite lease, RFC 2131 3.3, is never renewed). The router learns the
    inventory's reservations as static leases (the `reservations` output), but a reservation the stack no longer has
    (its machine removed, or given another address or MAC) is in no such list: a router pool over it would lend the
    address a machine still holds."""
    kept = {(n.mac.lower(), n.ip) for n in stack.nodes}
    return [
        Problem(
            ROUTER_POOL,
            f"{pool} holds {ip}, which the last deployment's Ainur reserved for {mac} on an infinite lease, and the stack no "
            "longer does: that machine keeps the address until it restarts, and the router, with no static lease for it, "
            f"could lend it to another device. Set the router's DHCP pool apart from {ip} and say it as routerPool, until "
            f"that machine has restarted or left the LAN; or keep the machine's reservation; or keep mode: dhcp ({RUNBOOK})",
        )
        for mac, ip in deployed_reservations(dnsmasq_conf)
        if pool.start <= ip <= pool.end and (mac, ip) not in kept
    ]


def _router_apart(stack: StackConfig, dnsmasq_conf: Any) -> list[Problem]:
    """A move from dhcp to proxy: the router starts lending while the household still holds the Ainur's leases (up to
    the last deployment's lease time), which the router does not know, so a router that lends without first checking an
    address is free would give a device joining an address another holds. Its pool must be said, and apart from the
    ranges the Ainur lent (read from the last deployment's own config: the stack's may have changed with the move)."""
    lent = deployed_ranges(dnsmasq_conf)
    assert stack.ainur is not None
    pool = stack.ainur.netboot.router_pool
    if not lent:
        return []
    held = ", ".join(f"{r} (leases of up to {t})" for r, t in lent)
    longest = max((t for _, t in lent), key=_lease_seconds)
    if not isinstance(pool, AddressRange):
        return [
            Problem(
                ROUTER_POOL,
                f"{'is not set' if pool is None else pool}, and the last deployment ran the Ainur in mode dhcp: the "
                f"household's devices keep the addresses the Ainur lent them from {held} after the switch, and the router "
                "does not know those leases, so a router that lends without first checking an address is free would give a "
                "device joining an address another holds. Set the router's DHCP pool apart from them and say it as "
                f"ainur.netboot.routerPool: {{start: ..., end: ...}}; once {longest} has passed since the switch, the "
                f"router's pool may grow back (update routerPool to it); or keep mode: dhcp ({RUNBOOK})",
            )
        ]
    return _gone_reservations(stack, dnsmasq_conf, pool) + [
        Problem(
            ROUTER_POOL,
            f"{pool} overlaps {r}, which the last deployment's Ainur lent (leases of up to {t}): the household's devices "
            "keep those addresses after the switch, and the router does not know the leases, so a router that lends "
            "without first checking an address is free would give a device joining an address another holds. Set the "
            f"router's DHCP pool apart from {r} and say it as routerPool; once {t} has passed since the switch, it may "
            f"grow back; or keep mode: dhcp ({RUNBOOK})",
        )
        for r, t in lent
        if r.overlaps(pool)
    ]


def _lease_seconds(lease: str) -> float:
    """A dnsmasq lease time (`45m`, `12h`, `2d`, `infinite`) in seconds, to name the longest."""
    if lease == "infinite":
        return float("inf")
    return float(lease[:-1]) * {"m": 60, "h": 3600, "d": 86400}.get(lease[-1], 1)


def _would(before: str) -> str:
    if before == "dhcp":
        return (
            "stop the Ainur lending the household's addresses, and with the router's DHCP off every device would lose its "
            "address when its lease runs out"
        )
    return "make the Ainur a second, authoritative DHCP server beside the router's"
