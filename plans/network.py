"""The Eä network plan: DHCP reservations, DNS host records, VIPs and pools, from the inventory.

Everything here is ordered by address or name, never by the order of the stack file, so the
same inventory always gives the same plan and reordering machines changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from typing import Any

from plans.ipam import free_static
from stacks import outputs
from stacks.model import StackConfig


@dataclass(frozen=True)
class Reservation:
    """A DHCP reservation: this MAC always gets this IP and hostname."""

    name: str
    mac: str
    ip: str
    hostname: str
    role: str
    cluster: str
    vlan: str | None


@dataclass(frozen=True)
class DnsRecord:
    """An internal DNS record in the `network.domain` zone."""

    name: str
    type: str
    value: str


@dataclass(frozen=True)
class NetworkPlan:
    """Eä as data: what DHCP, DNS, netboot and the load balancer all read."""

    lan: str
    gateway: str
    dns_servers: tuple[str, ...]
    domain: str
    external_domain: str | None
    dhcp_range: tuple[str, str]
    load_balancer_pool: tuple[str, str]
    vlans: tuple[dict[str, Any], ...]
    reservations: tuple[Reservation, ...]
    dns_records: tuple[DnsRecord, ...]
    vips: dict[str, str]
    gateways: dict[str, str]
    free_static_addresses: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vip_names(stack: StackConfig) -> dict[str, IPv4Address]:
    """Name → VIP: the Ainur API (`ainur`) and the Arda API (its cluster name)."""
    vips: dict[str, IPv4Address] = {}
    if stack.ainur is not None:
        vips[outputs.AINUR_VIP] = stack.ainur.vip
    vips[stack.arda.cluster_name] = stack.arda.vip
    return vips


def gateway_addresses(stack: StackConfig) -> dict[str, IPv4Address]:
    """The Envoy gateways' addresses: the top two of the load-balancer pool, public one last.

    Reserved here so the edge layer, DNS and the diagram agree on them (the seed homelab uses
    .239 for envoy-external and .238 for envoy-internal).
    """
    end = stack.network.load_balancer_pool.end
    return {"envoy-external": end, "envoy-internal": end - 1}


def zone_records(stack: StackConfig) -> list[DnsRecord]:
    """Each machine's and each VIP's A record, in the order `plan_network` lists them before sorting. Read alone by the
    Ainur's zone (plans.netboot.dnsmasq.dns_records) and, without them, by the LAN resolver on Arda
    (plans.edge.resolver_records), which the stack's rules compute for every stack checked: the plan also counts the
    LAN's free addresses one by one, which takes minutes on a wide LAN (a /8)."""
    net = stack.network
    nodes = sorted(stack.nodes, key=lambda n: (n.vlan or "", n.ip))
    records = [DnsRecord(f"{n.name}.{net.domain}", "A", str(n.ip)) for n in nodes]
    records += [DnsRecord(f"{name}.{net.domain}", "A", str(ip)) for name, ip in vip_names(stack).items()]
    return records


def plan_network(stack: StackConfig) -> NetworkPlan:
    net = stack.network
    nodes = sorted(stack.nodes, key=lambda n: (n.vlan or "", n.ip))
    reservations = tuple(Reservation(n.name, n.mac, str(n.ip), f"{n.name}.{net.domain}", n.role, n.cluster, n.vlan) for n in nodes)
    vips = vip_names(stack)
    records = zone_records(stack)
    lan_taken = [n.ip for n in stack.nodes if n.vlan is None] + [*vips.values(), net.gateway]
    pools = [(net.dhcp_range.start, net.dhcp_range.end), (net.load_balancer_pool.start, net.load_balancer_pool.end)]
    return NetworkPlan(
        lan=str(net.lan),
        gateway=str(net.gateway),
        dns_servers=tuple(str(d) for d in net.dns),
        domain=net.domain,
        external_domain=net.external_domain,
        dhcp_range=(str(net.dhcp_range.start), str(net.dhcp_range.end)),
        load_balancer_pool=(str(net.load_balancer_pool.start), str(net.load_balancer_pool.end)),
        vlans=tuple({"id": v.id, "name": v.name, "cidr": str(v.cidr)} for v in sorted(net.vlans, key=lambda v: v.id)),
        reservations=reservations,
        dns_records=tuple(sorted(records, key=lambda r: r.name)),
        vips={k: str(v) for k, v in sorted(vips.items())},
        gateways={k: str(v) for k, v in sorted(gateway_addresses(stack).items())},
        free_static_addresses=sum(1 for _ in free_static(net.lan, lan_taken, pools)),
    )
