"""Cilium on Arda: the CNI (Helm release) and its LAN load-balancer IP pool and L2 announcements; with the Ainur's
KMS, the clusterwide policy that keeps every pod from reaching it (plans.cilium.kms_egress_deny).

Cilium's CRDs are not in its chart: cilium-operator registers them once it runs. A release reported
deployed is therefore no API that accepts the pool and the policy; a gate (`plans.bringup.admits_gate`)
waits until the API server admits both, as a server-side dry run. All go through the Arda
Kubernetes provider passed in `providers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.steps import ClusterAccess
from plans import bringup
from plans import cilium as plan
from stacks.model import StackConfig


@dataclass(frozen=True)
class CiliumArgs:
    """Cilium's input: the validated stack (Cilium settings and the load-balancer pool) and how its gate reaches Arda."""

    stack: StackConfig
    access: ClusterAccess
    # What the release waits for: the Prometheus Operator's CRDs, when its chart turns its ServiceMonitors on.
    after: Sequence[pulumi.Resource] = ()


class Cilium(pulumi.ComponentResource):
    """Cilium: the Helm release, the CiliumLoadBalancerIPPool and the CiliumL2AnnouncementPolicy."""

    release: k8s.helm.v3.Release
    # Passes once cilium-operator runs and has registered its CRDs: the CNI is up (what CoreDNS waits for).
    gate: pulumi.Resource
    pool: k8s.apiextensions.CustomResource
    l2_policy: k8s.apiextensions.CustomResource
    app_pools: list[k8s.apiextensions.CustomResource]
    kms_deny: k8s.apiextensions.CustomResource | None

    def __init__(self, name: str, args: CiliumArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:Cilium", name, None, opts)
        stack = args.stack
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="cilium",
            chart=plan.CHART,
            version=stack.arda.cilium.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=plan.REPOSITORY),
            namespace=plan.NAMESPACE,
            values=plan.helm_values(stack),
            opts=child,
        )
        pool, policy = plan.load_balancer_pool(stack), plan.l2_announcement_policy(stack)
        kms_deny = plan.kms_egress_deny(stack)
        admitted = [pool, policy, *([kms_deny] if kms_deny is not None else [])]
        crds = args.access.gate(
            f"{name}-gate-crds",
            bringup.admits_gate("cilium-operator registers them", [m["kind"] for m in admitted]),
            self,
            after=[self.release],
            manifests=admitted,
        )
        self.gate = crds
        after_crds = pulumi.ResourceOptions(parent=self, depends_on=[crds])
        self.pool = self._custom_resource(f"{name}-lb-pool", pool, after_crds)
        self.l2_policy = self._custom_resource(f"{name}-l2-policy", policy, after_crds)
        # Each app's own address, for its own Service (plans.cilium.app_pools).
        self.app_pools = [self._custom_resource(f"{name}-lb-pool-{p['metadata']['name']}", p, after_crds) for p in plan.app_pools(stack)]
        self.kms_deny = self._custom_resource(f"{name}-kms-deny", kms_deny, after_crds) if kms_deny is not None else None
        self.register_outputs({"releaseStatus": self.release.status})

    @staticmethod
    def _custom_resource(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            name,
            api_version=str(manifest["apiVersion"]),
            kind=str(manifest["kind"]),
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )
