"""Eä: the network component, the derived IP plan every later layer reads.

Eä owns no device: a home router or the Ainur's dnsmasq serves what it plans. It publishes
the per-node DHCP reservations, internal DNS host records, the VIPs and the load-balancer
pool, computed once by the pure `plans.network` from the inventory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pulumi

from plans.network import NetworkPlan, plan_network
from stacks.model import StackConfig


@dataclass(frozen=True)
class EaArgs:
    """Eä's input: the validated stack (network section and the inventory)."""

    stack: StackConfig


class Ea(pulumi.ComponentResource):
    """Eä: the network plan (reservations, DNS records, VIPs, pools) as a component with outputs."""

    # Known when the program starts, so plain values: wrapping thousands of small dicts in
    # Outputs made the SDK build an Output per field (measured: 0.6 s at 1,000 nodes).
    plan: NetworkPlan
    reservations: list[dict[str, Any]]
    dns_records: list[dict[str, Any]]
    vips: dict[str, str]
    gateways: dict[str, str]
    load_balancer_pool: dict[str, str]
    lan: str

    def __init__(self, name: str, args: EaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:network:Ea", name, None, opts)
        self.plan = plan_network(args.stack)
        start, end = self.plan.load_balancer_pool
        self.reservations = [asdict(r) for r in self.plan.reservations]
        self.dns_records = [asdict(r) for r in self.plan.dns_records]
        self.vips = dict(self.plan.vips)
        self.gateways = dict(self.plan.gateways)
        self.load_balancer_pool = {"start": start, "end": end}
        self.lan = self.plan.lan
        self.register_outputs(
            {
                "reservations": self.reservations,
                "dnsRecords": self.dns_records,
                "vips": self.vips,
                "gateways": self.gateways,
                "loadBalancerPool": self.load_balancer_pool,
                "lan": self.lan,
            }
        )
