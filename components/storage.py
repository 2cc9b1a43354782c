"""Storage: the inventory's data disks as storage classes, handed to each cluster's Argo CD.

`Storage` (`iluvatar:storage:Storage`) wires `plans.storage` into resources. Each storage chart
(Rook's operator and cluster, local-path-provisioner and csi-driver-nfs on Arda; Longhorn on the
Ainur) is a platform Application with its values inline, created after its namespace (Pulumi's,
privileged). Pulumi also owns the `nfs` StorageClass, the Jobs that retire OSDs, and the label
that gives each Pi with a data disk its Longhorn disk. The Talos side (the user volume for local
volumes) is in each machine's patch (`plans.local_volumes`), and the Pis' disk in their cloud-init.

Storage needs GitOps: without `iluvatar:gitops` nothing is installed, and the data disks stay as
they are (a warning says so). Its output `state` is what this deployment runs Ceph on; the
program exports it as `storage`, and the next run reads it back (`stacks.pulumi_source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.gitops import ArgoCd, GitOps, PlatformApplication, PlatformApplicationArgs
from plans import local_volumes
from plans import storage as plan
from stacks import storage as facts
from stacks.model import StackConfig


@dataclass(frozen=True)
class StorageArgs:
    """The storage layer's input: the stack, what the last deployment ran Ceph on, and the GitOps layer.

    `pi_joins`: each Pi's k3s join (a Pi is a node of the Ainur only after it), by name, for the
    Longhorn disk label.
    """

    stack: StackConfig
    deployed: facts.Deployed
    gitops: GitOps | None
    pi_joins: Mapping[str, pulumi.Resource] = field(default_factory=dict)


class Storage(pulumi.ComponentResource):
    """Storage on both clusters: Rook-Ceph, local volumes and NFS on Arda, Longhorn on the Ainur."""

    state: dict[str, Any]
    namespaces: dict[str, pulumi.CustomResource]
    applications: dict[str, PlatformApplication]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:storage:Storage", name, None, opts)
        stack = args.stack
        self._stack = stack
        self.state = plan.state(stack, args.deployed)
        self.namespaces, self.applications = {}, {}
        if args.gitops is None or not local_volumes.enabled(stack):
            if facts.osd_hosts(stack.nodes) or facts.longhorn_pis(stack.nodes):
                pulumi.log.warn(
                    "storage: the data disks stay as they are: Ceph and Longhorn are installed as Argo CD platform "
                    "Applications, and this stack has no iluvatar:gitops (docs/layers/storage.md)",
                    resource=self,
                )
            self.register_outputs({"state": self.state})
            return
        argocds: dict[str, ArgoCd] = {"arda": args.gitops.arda}
        if args.gitops.ainur is not None:
            argocds["ainur"] = args.gitops.ainur

        for cluster, argocd in argocds.items():
            for manifest in plan.namespaces(stack, cluster):
                self.namespaces[f"{cluster}/{manifest['metadata']['name']}"] = kube.create(
                    f"{name}-{cluster}", manifest, argocd.access.with_cluster(pulumi.ResourceOptions(parent=self, provider=argocd.provider))
                )
        # Longhorn's listeners behind their policies before its chart runs a pod (plans.storage.longhorn_network_policies).
        guards: dict[str, list[pulumi.Resource]] = {}
        if "ainur" in argocds:
            ainur = argocds["ainur"]
            for policy in plan.longhorn_network_policies(stack):
                guards.setdefault(f"ainur/{policy['metadata']['namespace']}", []).append(
                    kube.create(
                        f"{name}-ainur",
                        policy,
                        ainur.access.with_cluster(
                            pulumi.ResourceOptions(
                                parent=self, provider=ainur.provider, depends_on=[self.namespaces[f"ainur/{policy['metadata']['namespace']}"]]
                            )
                        ),
                    )
                )
        for app in plan.applications(stack):
            where = f"{app.cluster}/{app.namespace}"
            self.applications[app.name] = PlatformApplication(
                f"{name}-{app.cluster}-{app.name}",
                PlatformApplicationArgs(
                    app.manifest,
                    argocds[app.cluster],
                    after=[*([self.namespaces[where]] if where in self.namespaces else []), *guards.get(where, [])],
                ),
                opts=pulumi.ResourceOptions(parent=self, transformations=[argocds[app.cluster].access.in_cluster]),
            )

        arda = argocds["arda"]
        if plan.nfs_enabled(stack):
            kube.create(
                f"{name}-arda",
                plan.nfs_storage_class(stack),
                arda.access.with_cluster(
                    pulumi.ResourceOptions(parent=self, provider=arda.provider, depends_on=[self.applications["csi-driver-nfs"]])
                ),
            )
        if plan.longhorn_encrypted(stack) and "ainur" in argocds:
            self._encrypted_class(name, argocds["ainur"])
        for job in plan.retire_jobs(stack):
            # It needs the cluster's mon secret and endpoints: after the CephCluster's Application.
            after = [
                self.namespaces[f"arda/{plan.ROOK_NAMESPACE}"],
                *([self.applications["rook-ceph-cluster"]] if "rook-ceph-cluster" in self.applications else []),
            ]
            kube.create(f"{name}-arda", job, arda.access.with_cluster(pulumi.ResourceOptions(parent=self, provider=arda.provider, depends_on=after)))
        self._name, self._ainur = name, argocds.get("ainur")
        self._labelled: set[str] = set()
        self.label_pis(args.pi_joins)
        self.register_outputs({"state": self.state})

    def _encrypted_class(self, name: str, ainur: ArgoCd) -> None:
        """Longhorn's encrypted class and the Secret it opens volumes with (plans.storage.encrypted_storage_class): the
        passphrase a protected random password (a new one would leave every encrypted volume unopenable), secret end to end."""
        rnd = random.Provider(f"{name}-ainur-random", opts=pulumi.ResourceOptions(parent=self))
        passphrase = random.RandomPassword(
            f"{name}-ainur-longhorn-crypto",
            length=plan.CRYPTO_PASSPHRASE_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, provider=rnd, protect=True),
        ).result
        shape = plan.crypto_secret("")
        on_ainur = ainur.access.with_cluster(
            pulumi.ResourceOptions(parent=self, provider=ainur.provider, depends_on=[self.namespaces[f"ainur/{plan.LONGHORN_NAMESPACE}"]])
        )
        secret = k8s.core.v1.Secret(
            kube.resource_name(f"{name}-ainur", shape),
            metadata=shape["metadata"],
            type="Opaque",
            string_data=pulumi.Output.secret(passphrase.apply(lambda value: plan.crypto_secret(value)["stringData"])),
            opts=pulumi.ResourceOptions.merge(on_ainur, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
        )
        # After the Secret and Longhorn's Application: a claim of the class binds only once both are there.
        kube.create(
            f"{name}-ainur",
            plan.encrypted_storage_class(self._stack),
            ainur.access.with_cluster(
                pulumi.ResourceOptions(parent=self, provider=ainur.provider, depends_on=[secret, self.applications["longhorn"]])
            ),
        )

    def label_pis(self, pi_joins: Mapping[str, pulumi.Resource]) -> None:
        """Longhorn's labels on each Pi's Node, after its join: the Pis joined by then, and again later with the
        netbooting maiar, which join only once their roots' storage runs (components.netboot.Netboot.serve_pis)."""
        if getattr(self, "_ainur", None) is None:
            return
        argocd = self._ainur
        assert argocd is not None
        # Longhorn's tag for the netbooted roots' replicas, on the Pis that may hold one (plans.storage.pi_root_pis).
        tags = plan.longhorn_node_annotations(self._stack)
        for pi, labels in plan.longhorn_node_labels(self._stack).items():
            if pi in self._labelled or pi not in pi_joins:
                continue
            self._labelled.add(pi)
            k8s.core.v1.NodePatch(
                f"{self._name}-ainur-node-{pi}",
                metadata={"name": pi, "labels": labels, **({"annotations": tags[pi]} if pi in tags else {})},
                opts=argocd.access.with_cluster(pulumi.ResourceOptions(parent=self, provider=argocd.provider, depends_on=[pi_joins[pi]])),
            )
