"""Iluvatar: the Pulumi program. Load the stack config once, build each layer in order, export."""

import pulumi

from components.ea import Ea, EaArgs
from stacks.pulumi_source import load

stack = load()

ea = Ea("ea", EaArgs(stack.config))

pulumi.export("lan", ea.lan)
pulumi.export("reservations", ea.reservations)
pulumi.export("dnsRecords", ea.dns_records)
pulumi.export("vips", ea.vips)
pulumi.export("loadBalancerPool", ea.load_balancer_pool)
