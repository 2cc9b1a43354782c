"""Iluvatar: the Pulumi program. Load the stack config once, build each layer in order, export."""

import pulumi

from components.arda import TalosCluster, TalosClusterArgs
from components.ea import Ea, EaArgs
from stacks.pulumi_source import load

stack = load()

ea = Ea("ea", EaArgs(stack.config))
arda = TalosCluster("arda", TalosClusterArgs(stack.config), opts=pulumi.ResourceOptions(depends_on=[ea]))

pulumi.export("lan", ea.lan)
pulumi.export("reservations", ea.reservations)
pulumi.export("dnsRecords", ea.dns_records)
pulumi.export("vips", ea.vips)
pulumi.export("loadBalancerPool", ea.load_balancer_pool)
pulumi.export("ardaTalosconfig", arda.talosconfig)
pulumi.export("ardaKubeconfig", arda.kubeconfig)
pulumi.export("ardaInstallerImages", arda.installer_images)
