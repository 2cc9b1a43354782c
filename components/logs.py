"""Logs: the store on Arda, a collector on every machine, the Pis' journals, and the log alerts.

`Logs` (`iluvatar:logs:Logs`, with `iluvatar:monitoring`: on unless `iluvatar:logs.enabled` is false) wires
`plans.logs` into resources: on Arda, in the `monitoring` namespace, VictoriaLogs (its StatefulSet with its inserter,
its admin key's Secret, its Service, its LAN Service for the Pis, a ServiceMonitor), the collector's DaemonSet (Talos sends it its services' and kernel's lines:
plans.talos puts the destinations in every machine's config) and vmalert with the log alerts; on the Ainur, the
collector's DaemonSet for the pods' logs; on each Pi over SSH, journald's forwarder pointed at the store, once the
store's LAN Service exists. Grafana's datasource and dashboards are kube-prometheus's patches (plans.monitoring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.edge import custom_resource, resource_suffix
from components.gitops import ArgoCd
from components.steps import ClusterAccess, reconnect
from plans import bringup
from plans import logs as plan
from stacks.model import StackConfig


def journal_connection(pi: command.remote.ConnectionArgs) -> command.remote.ConnectionArgs:
    """The Pi's connection with the journal step's own short dial bound (plans.logs.JOURNAL_DIAL_ATTEMPTS): its delete
    runs whenever logs are turned off, and a Pi that is off must fail that `up` in a minute, not 20. The delete runs the
    state's connection (pulumi-command v1.2.1 commandController.go:85-92), so the bound holds from the `up` after the
    one that records it."""
    return reconnect(pi, dial_error_limit=plan.JOURNAL_DIAL_ATTEMPTS, per_dial_timeout=plan.JOURNAL_DIAL_SECONDS)


@dataclass(frozen=True)
class PiReach:
    """How to run a step on one Pi (components.ainur.Pi's connection and provider), and what it must come after."""

    connection: command.remote.ConnectionArgs
    provider: command.Provider
    after: Sequence[pulumi.Resource] = ()
    # The Pi's former name (renamed in the inventory): its step moves by alias rather than being deleted, since the
    # old step's delete would run after the new one's create, on the same Pi, and undo it.
    former: str | None = None


@dataclass(frozen=True)
class LogsArgs:
    """The stack, Arda (its provider, the monitoring CRDs' gate, the `monitoring` namespace), and the Ainur's access,
    provider and `monitoring` namespace (node-exporter's, components.monitoring) and Pis, when the stack has them."""

    stack: StackConfig
    arda: ClusterAccess
    arda_provider: k8s.Provider
    crds: pulumi.Resource
    namespace: pulumi.Resource
    after: Sequence[pulumi.Resource] = ()
    ainur: ClusterAccess | None = None
    ainur_provider: k8s.Provider | None = None
    ainur_namespace: pulumi.Resource | None = None
    pis: Mapping[str, PiReach] = field(default_factory=dict)


class Logs(pulumi.ComponentResource):
    """The log store, its collectors on both clusters, the Pis' journal forwarders, and vmalert."""

    store: list[pulumi.Resource]

    def __init__(self, name: str, args: LogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:logs:Logs", name, None, opts)
        stack = args.stack
        on_arda = args.arda.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.arda_provider, depends_on=[*args.after, args.namespace]))
        # The store's claim is on a class an Argo CD Application installs (Rook, local-path-provisioner, csi-driver-nfs),
        # long after this: pulumi-kubernetes gives up on a StatefulSet not Ready within 10 minutes, so the store waits
        # for the class and its driver first (plans.bringup.storage_class_gate), as the Git mirror's claim does.
        gate = args.arda.gate(f"{name}-gate-storage", bringup.storage_class_gate(plan.storage_class(stack)), self, after=args.after)
        # The store's admin key (plan.STORE_AUTH_FLAGS): a Pulumi secret end to end, read by the store from its Secret's file.
        random_provider = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
        key = random.RandomPassword(
            f"{name}-store-auth", length=32, special=False, opts=pulumi.ResourceOptions(parent=self, provider=random_provider)
        )
        auth = ArgoCd._secret(f"{name}-arda", plan.auth_secret, pulumi.Output.secret(key.result), on_arda)
        # Who may reach the store and vmalert (plan.store_network_policies). The CiliumNetworkPolicy after a gate that
        # sees the API server admit it: Cilium registers its CRD once its agent runs.
        policies = [*plan.store_network_policies(stack), plan.vmalert_network_policy()]
        cilium_kinds = [p for p in policies if p["kind"] != "NetworkPolicy"]
        admits = args.arda.gate(
            f"{name}-gate-cilium",
            bringup.admits_gate("Cilium registers it", [p["kind"] for p in cilium_kinds]),
            self,
            after=[*args.after, args.namespace],
            manifests=cilium_kinds,
        )
        guards = [
            kube.create(f"{name}-arda", policy, on_arda)
            if policy["kind"] == "NetworkPolicy"
            else custom_resource(
                f"{name}-arda-{resource_suffix(policy)}",
                policy,
                pulumi.ResourceOptions.merge(on_arda, pulumi.ResourceOptions(depends_on=[admits])),
            )
            for policy in policies
        ]
        # The store's pod (and vmalert's, after it) only once the policies above exist: a pod that started before them
        # would answer every pod on Arda on both ports until they came.
        on_store = pulumi.ResourceOptions.merge(on_arda, pulumi.ResourceOptions(depends_on=[gate, auth, *guards]))
        self.store = [kube.create(f"{name}-arda", m, on_store) for m in plan.store(stack)]
        lan = plan.store_lan_service(stack)
        lan_service = kube.create(f"{name}-arda", lan, on_arda) if lan is not None else None
        # The store's, the collectors' and vmalert's metrics, for the pipeline's own alerts (plan.pipeline_alerts).
        for monitor in [plan.service_monitor(), *plan.monitors(stack)]:
            custom_resource(
                f"{name}-arda-{resource_suffix(monitor)}",
                monitor,
                pulumi.ResourceOptions.merge(on_arda, pulumi.ResourceOptions(depends_on=[args.crds])),
            )
        # The collectors and vmalert after the store they send to and read.
        after_store = pulumi.ResourceOptions.merge(on_arda, pulumi.ResourceOptions(depends_on=self.store))
        # Each workload after the ConfigMap it mounts (plans.references).
        kube.create_all(f"{name}-arda", [*plan.collector(stack, "arda"), *plan.vmalert(stack)], after_store)
        if args.ainur is not None and args.ainur_provider is not None and lan_service is not None:
            on_ainur = args.ainur.with_cluster(
                pulumi.ResourceOptions(
                    parent=self,
                    provider=args.ainur_provider,
                    depends_on=[lan_service, *([args.ainur_namespace] if args.ainur_namespace is not None else [])],
                )
            )
            kube.create_all(f"{name}-ainur", plan.collector(stack, "ainur"), on_ainur)
            for node in stack.ainur_nodes:
                reach = args.pis.get(node.name)
                if reach is None:
                    continue
                # Its script's text is its trigger: a new store address runs it again (an update runs `create` when
                # there is no `update`, pulumi-command v1.2.1 provider/pkg/provider/remote/commandController.go:62-82).
                # Its delete undoes it (logs turned off, the Pi removed: commandController.go:85-92 runs the old
                # state's `delete`). A rebuilt Pi's runbook replaces it with the join (docs/day2.md): delete first, so
                # the old delete runs on the new card before the create, not after it (it would undo the new create).
                command.remote.Command(
                    f"{name}-ainur-{node.name}-journal-upload",
                    connection=journal_connection(reach.connection),
                    create=plan.journal_upload_script(stack, node),
                    delete=plan.journal_upload_delete_script(node),
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        provider=reach.provider,
                        depends_on=[*reach.after, lan_service, *self.store],
                        delete_before_replace=True,
                        aliases=[pulumi.Alias(name=f"{name}-ainur-{reach.former}-journal-upload")] if reach.former else None,
                    ),
                )
        self.register_outputs({})
