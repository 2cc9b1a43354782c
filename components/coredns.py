"""Arda's cluster DNS: CoreDNS's objects (plans.coredns), which Talos's bootstrap manifests no longer create.

They go through the Arda Kubernetes provider passed in `providers`, after the CNI (`after`: Cilium's
gate): the Deployment becomes available only once its pods run on Ready machines with a pod network,
and the nodes gate waits for it in turn, so nothing that resolves a Service's name starts before
the cluster answers names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import kube
from plans import bringup
from plans import coredns as plan
from stacks.model import StackConfig


@dataclass(frozen=True)
class CoreDNSArgs:
    """The validated stack (its Talos version picks the image, its patches the Service's address) and what CoreDNS waits for."""

    stack: StackConfig
    after: Sequence[pulumi.Resource] = ()


class CoreDNS(pulumi.ComponentResource):
    """CoreDNS on Arda: its account and role, its Corefile, the Deployment and the `kube-dns` Service."""

    objects: dict[str, pulumi.CustomResource]

    def __init__(self, name: str, args: CoreDNSArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:CoreDNS", name, None, opts)
        # The Deployment is available only once machines are Ready: it may take as long as the nodes gate does
        # (pulumi-kubernetes's own wait for a Deployment is 10 minutes).
        bound = bringup.NODES_GATE_TIMEOUT
        timeouts = pulumi.CustomTimeouts(create=bound, update=bound)
        self.objects = kube.create_all(
            name, plan.manifests(args.stack), pulumi.ResourceOptions(parent=self, depends_on=list(args.after), custom_timeouts=timeouts)
        )
        self.register_outputs({})
