"""The internal zone as the LAN resolves it: every name the plan gives an address under network.domain.

With the Ainur, their dnsmasq answers the zone from its records alone (local=/<domain>/, plans.netboot.dnsmasq): the
machines, the VIPs, the service address, the Git mirror, the gateways, and the names the edge and identity add (each
app's host, Dex's, the CA page's, each Argo CD's). Without them, the LAN resolver on Arda answers it
(plans.edge.resolver_records). The program hands the Ainur these same records, and the stack's rules resolve a server
written by name through them, so a name is checked as the address it stands for.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from plans import edge, identity
from plans.netboot.dnsmasq import dns_records
from stacks.model import StackConfig


def extra_records(stack: StackConfig) -> list[tuple[str, IPv4Address]]:
    """What the other layers add to the Ainur's zone: the app hosts, and with identity Dex, the CA page and each Argo CD."""
    return [*edge.lan_records(stack), *identity.lan_records(stack)]


def records(stack: StackConfig) -> dict[str, IPv4Address]:
    """Each name of the internal zone (lower case, no trailing dot) and its address."""
    found = dns_records(stack, extra_records(stack)) if stack.ainur is not None else edge.resolver_records(stack)
    return {name.rstrip(".").lower(): ip for name, ip in found}
