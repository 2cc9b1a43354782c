"""Monitoring: Prometheus, Alertmanager and Grafana on Arda, what they scrape, and where alerts go.

`crds` puts the Prometheus Operator's CRDs on Arda right after its API answers (one CustomResourceDefinition
per file of the operator's release, then a gate until the API server admits a ServiceMonitor), so the
charts installed after it (Cilium first) can turn their ServiceMonitors on.

`Monitoring` (`iluvatar:monitoring:Monitoring`, with `iluvatar:monitoring` and GitOps) creates, on
Arda: kube-prometheus as a platform Application (`plans.monitoring.application`), Alertmanager's
config Secret (the receiver's secret in it: a Pulumi secret), Grafana's admin password (generated,
exported as the secret `grafanaAdminPassword`), the stack's alerts, the Services and monitors of
what no chart exposes (Talos's scheduler, controller-manager and etcd; Envoy Gateway); on the Ainur,
node-exporter on every Pi, which Arda's Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.edge import custom_resource, resource_suffix
from components.gitops import ArgoCd, GitOps, PlatformApplication, PlatformApplicationArgs
from components.steps import ClusterAccess
from plans import bringup
from plans import monitoring as plan
from stacks.model import StackConfig

# What installed the CRDs before (a yaml/v2 ConfigGroup, which asks the cluster for its schema at preview): its
# children were named `<group>:<CRD name>` under it (pulumi-kubernetes v4.32.0 provider/pkg/provider/yaml/v2
# configgroup.go lines 99-105 and 134, yaml.go lines 344-351). Aliased to those, each CRD stays the same resource on
# a cluster that has them: a new resource would delete the old CRD last, and every custom resource of its kind with it.
FORMER_GROUP = "kubernetes:yaml/v2:ConfigGroup"


def crds(name: str, access: ClusterAccess, provider: k8s.Provider, parent: pulumi.Resource) -> pulumi.Resource:
    """The operator's CRDs on Arda, each a plain CustomResourceDefinition (nothing asks the cluster at preview),
    and the gate that returns once the API server admits their kinds."""
    group = f"{name}-crds"
    former = pulumi.create_urn(group, FORMER_GROUP, parent=parent)
    made = [
        kube.create(
            group,
            crd,
            access.with_cluster(
                pulumi.ResourceOptions(
                    parent=parent, provider=provider, aliases=[pulumi.Alias(name=f"{group}:{crd['metadata']['name']}", parent=former)]
                )
            ),
        )
        for crd in plan.crds()
    ]
    gates = plan.gate_manifests()
    return access.gate(
        f"{name}-gate-crds",
        bringup.admits_gate("the Prometheus Operator's CRDs are established", [gate["kind"] for gate in gates]),
        parent,
        after=made,
        manifests=gates,
    )


@dataclass(frozen=True)
class MonitoringArgs:
    """The stack, the GitOps layer (Arda's Argo CD syncs kube-prometheus), the CRDs' gate, the namespaces
    the edge owns (`monitoring` is its category namespace), what Envoy Gateway's monitors follow, the
    Ainur's access, and the receiver's secret (`iluvatar:alertReceiverSecret`)."""

    stack: StackConfig
    gitops: GitOps
    crds: pulumi.Resource
    namespaces: dict[str, pulumi.Resource]
    gateways: pulumi.Resource
    ainur: ClusterAccess | None = None
    ainur_provider: k8s.Provider | None = None
    receiver_secret: pulumi.Output[str] | None = None
    # What Arda's objects wait for besides the CRDs: every machine Ready (its nodes gate).
    after: Sequence[pulumi.Resource] = ()


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana (kube-prometheus), their targets, and the stack's alerts."""

    application: PlatformApplication
    grafana_admin_password: pulumi.Output[str]
    # The `monitoring` namespace on the Ainur (node-exporter's), which the logs' collector there shares.
    ainur_namespace: pulumi.Resource | None

    def alert_on(self, ends: pulumi.Output[dict[str, str | None]]) -> None:
        """The stack's alerts, with one rule per end `ends` holds (plans.monitoring.credential_alerts): the program
        calls it once every certificate it records is made. The rule keeps its name as the ends move."""
        name, stack, opts = self._rules
        static = plan.alert_rules(stack)
        custom_resource(name, {**static, "spec": ends.apply(lambda found: plan.alert_rules(stack, found)["spec"])}, opts)

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:monitoring:Monitoring", name, None, opts)
        stack = args.stack
        arda = args.gitops.arda
        namespace = args.namespaces[plan.NAMESPACE]
        in_arda = pulumi.ResourceOptions(parent=self, provider=arda.provider, depends_on=[*args.after, args.crds])
        after_crds = arda.access.with_cluster(pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[namespace])))
        random_provider = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))

        password = random.RandomPassword(
            f"{name}-grafana-admin", length=24, special=False, opts=pulumi.ResourceOptions(parent=self, provider=random_provider)
        )
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        grafana = ArgoCd._secret(f"{name}-arda", plan.grafana_admin_secret, self.grafana_admin_password, after_crds)
        receiver = args.receiver_secret if args.receiver_secret is not None else pulumi.Output.secret("")
        alertmanager = ArgoCd._secret(f"{name}-arda", lambda secret: plan.alertmanager_secret(stack, secret or None), receiver, after_crds)
        # The alerts' rule waits for `alert_on`: its ends are those of certificates made later in the program.
        self._rules = (f"{name}-arda-{resource_suffix(plan.alert_rules(stack))}", stack, after_crds)
        # Iluvatar's own dashboards (each machine's logs, the restore drills), which kube-prometheus's Grafana mounts.
        board = plan.dashboards_configmap(stack)
        dashboards = [kube.create(f"{name}-arda", board, after_crds)] if board is not None else []
        for manifest in plan.control_plane_services(stack):
            kube.create(f"{name}-arda", manifest, arda.access.with_cluster(in_arda))
        for manifest in plan.monitors(stack):
            deps: list[pulumi.Resource] = [namespace, *([args.gateways] if "envoy" in manifest["metadata"]["name"] else [])]
            custom_resource(
                f"{name}-arda-{resource_suffix(manifest)}",
                manifest,
                arda.access.with_cluster(pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=deps))),
            )
        # The API server's way to the metrics API adapter, once kube-prometheus' patched policy admits only Prometheus
        # (plan.adapter_api_server_policy): after a gate that sees the API server admit it (Cilium registers its CRD once
        # its agent runs), and before the Application, so the metrics API is never cut off by the patch.
        adapter = plan.adapter_api_server_policy()
        admits = arda.access.gate(
            f"{name}-gate-cilium",
            bringup.admits_gate("Cilium registers it", [adapter["kind"]]),
            self,
            after=[*args.after, namespace],
            manifests=[adapter],
        )
        adapter_policy = custom_resource(
            f"{name}-arda-{resource_suffix(adapter)}",
            adapter,
            arda.access.with_cluster(pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[namespace, admits]))),
        )
        self.application = PlatformApplication(
            f"{name}-arda-{plan.APPLICATION}",
            PlatformApplicationArgs(plan.application(stack), arda, after=[args.crds, namespace, grafana, alertmanager, *dashboards, adapter_policy]),
            opts=pulumi.ResourceOptions(parent=self, transformations=[arda.access.in_cluster]),
        )
        self.ainur_namespace = None
        if args.ainur is not None and args.ainur_provider is not None:
            in_ainur = args.ainur.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.ainur_provider))
            made: list[pulumi.Resource] = []
            for manifest in plan.ainur_node_exporter():
                made.append(
                    kube.create(f"{name}-ainur", manifest, pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=made[:1])))
                )
            self.ainur_namespace = made[0]
        self.register_outputs({"grafanaAdminPassword": self.grafana_admin_password})
