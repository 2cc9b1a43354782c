"""The Git mirror on the Ainur: the GitOps repository served to both clusters' Argo CD from the LAN.

Its copy lives on a volume of `plans.storage.git_mirror_class`: Longhorn when the Pis run it (the
copy is replicated, so the mirror moves to any Pi), else k3s's built-in local-path. Longhorn is an
Argo CD platform Application of the storage layer, installed long after the netboot objects, so
the mirror's claim waits for a gate (`plans.bringup.storage_class_gate`): the class exists and its
CSI driver runs. Without the gate the claim's await gives up (pulumi-kubernetes waits 5 minutes for
a claim to bind) long before Longhorn has pulled its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import kube
from components.steps import ClusterAccess
from plans import bringup, netboot, storage
from stacks.model import StackConfig


@dataclass(frozen=True)
class GitMirrorArgs:
    """The stack, how the storage gate reaches the Ainur, and what must exist first.

    `after`: the namespace the mirror lives in (the netboot layer's), the mirror's credential, and
    what installs its storage class when an operator does (the Longhorn Application).
    """

    stack: StackConfig
    access: ClusterAccess
    after: Sequence[pulumi.Resource] = ()


class GitMirror(pulumi.ComponentResource):
    """The mirror's claim, Deployment and Service, after its storage class serves."""

    objects: dict[str, pulumi.CustomResource]

    def __init__(self, name: str, args: GitMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:ainur:GitMirror", name, None, opts)
        stack = args.stack
        after = list(args.after)
        volume_class = storage.git_mirror_class(stack)
        if volume_class != "local-path":
            # k3s serves local-path from its start; any other class is an operator's, installed later.
            after.append(args.access.gate(f"{name}-gate-storage", bringup.storage_class_gate(volume_class), self, after=args.after))
        self.objects = kube.create_all(name, netboot.git_mirror_manifests(stack), pulumi.ResourceOptions(parent=self, depends_on=after))
        self.register_outputs({})
