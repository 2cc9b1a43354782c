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

from typing import Any

from stacks.errors import Problem
from stacks.model import Ainur, StackConfig

MODE = "iluvatar:ainur.netboot.mode"
ROUTER_DHCP_OFF = "iluvatar:ainur.netboot.routerDhcpOff"
LEASE_TIME = "iluvatar:ainur.netboot.leaseTime"
RUNBOOK = "docs/layers/netboot.md#changing-the-dhcp-mode"


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


def stated(ainur: Ainur) -> bool:
    """Whether the stack says its mode (else it is the default, `proxy`)."""
    return "mode" in ainur.netboot.model_fields_set


def static(ainur: Ainur | None) -> list[Problem]:
    """What a proxy-mode stack cannot also say: that the router's DHCP is off, or a lease time, both the router's."""
    if ainur is None or ainur.netboot.mode != "proxy":
        return []
    nb, out = ainur.netboot, []
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
    return out


def check(stack: StackConfig, dnsmasq_conf: Any) -> list[Problem]:
    """The mode against the one the last deployment ran (its output `dnsmasqConf`): a mode the stack does not state that
    differs from it, and a move to `dhcp` the stack does not say the router is ready for, are refused at preview."""
    if stack.ainur is None:
        return []
    before, nb = deployed_mode(dnsmasq_conf), stack.ainur.netboot
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
    if nb.mode == "dhcp" and not nb.router_dhcp_off:
        return [
            Problem(
                MODE,
                "dhcp, and the last deployment ran the Ainur in mode proxy, beside the router's DHCP: with it still on, "
                "the LAN would have two DHCP servers, the Ainur authoritative (they refuse the router's leases) and neither "
                "checking an address is free first. Turn the router's DHCP server off, then say so with "
                f"ainur.netboot.routerDhcpOff: true; or keep mode: proxy ({RUNBOOK})",
            )
        ]
    return []


def _would(before: str) -> str:
    if before == "dhcp":
        return (
            "stop the Ainur lending the household's addresses, and with the router's DHCP off every device would lose its "
            "address when its lease runs out"
        )
    return "make the Ainur a second, authoritative DHCP server beside the router's"
