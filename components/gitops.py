"""GitOps: Pulumi installs Argo CD on Arda (and its seed on the Ainur), then Git owns the apps.

`GitOps` (`iluvatar:gitops:GitOps`) holds one `ArgoCd` (`iluvatar:gitops:ArgoCd`) per cluster: Argo
CD from the argo-cd Helm chart, its Redis password, the repository credential when it reads the
repository itself, an AppProject for the cluster's Git apps and one for Pulumi's platform
Applications, and the ApplicationSets (one per category on Arda, one on the Ainur). On Arda it
also owns the category namespaces (`plans.gitops.namespaces`). With a private repository and the
Ainur's mirror, the mirror's credential goes to the Ainur alone: both Argo CDs read the mirror.

Ownership: Argo CD never manages itself. Pulumi owns its install (a `helm.v3.Release`), its projects
and ApplicationSets; Argo CD owns the apps. A Release, not a `helm.v4.Chart`: a v4 Chart asks its
cluster for the server version while it is constructed, so a cluster that is down would fail every
preview, other clusters' changes included (pulumi-kubernetes `helm/v4/chart.go`); a Release previews
against a cluster that is down. Each `ArgoCd` talks to its cluster through a provider that adopts
objects already there (`upsertExistingObjects`), so a `pulumi up` interrupted at any point converges
when run again.

`PlatformApplication` (`iluvatar:gitops:PlatformApplication`) is how a layer hands Argo CD a chart
whose values come from the inventory (`plans.gitops.platform_application`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.steps import ClusterAccess
from plans import gitops as plan
from plans import identity as identity_plan
from stacks.model import StackConfig


@dataclass(frozen=True)
class ArgoCdArgs:
    """One cluster's Argo CD: the stack, how to reach the cluster, and what must exist first.

    `after`: Arda's Cilium (nothing runs without a CNI), or the Ainur's netboot layer (which owns
    the seed's `argocd` namespace and the mirror). `credential`: the repository's token or SSH key,
    when this Argo CD reads the repository itself. `registry`: the categories `iluvatar:apps` uses
    (None: the stack's own registry). `namespaces`: Arda's category namespaces by category, when
    another layer owns them (the edge); None: this component creates them (plans.gitops.namespaces).
    """

    stack: StackConfig
    cluster: plan.Cluster
    access: ClusterAccess
    after: Sequence[pulumi.Resource] = ()
    credential: pulumi.Output[str] | None = None
    registry: Sequence[str] | None = None
    namespaces: Mapping[str, pulumi.Resource] | None = None
    # The local CA, with iluvatar:identity: Argo CD signs in with the Ainur's Dex, whose certificate is the CA's.
    ca_certificate: pulumi.Output[str] | None = None


class ArgoCd(pulumi.ComponentResource):
    """Argo CD on one cluster: the chart, its secrets, its AppProjects and its ApplicationSets."""

    provider: k8s.Provider
    access: ClusterAccess
    release: k8s.helm.v3.Release
    projects: dict[str, k8s.apiextensions.CustomResource]
    application_sets: dict[str, k8s.apiextensions.CustomResource]
    namespaces: dict[str, pulumi.Resource]
    repo_url: str

    def __init__(self, name: str, args: ArgoCdArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:gitops:ArgoCd", name, None, opts)
        stack, cluster = args.stack, args.cluster
        self.repo_url = plan.repo_url(stack, cluster)
        self.access = args.access
        self.provider = kube.cluster_provider(f"{name}-kubernetes", args.access.kubeconfig, args.access.identifier, self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        random_provider = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))

        first: list[pulumi.Resource] = list(args.after)
        if cluster == "arda":
            # The Ainur's netboot layer owns the seed's namespace there; on Arda it is ours.
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.NAMESPACE, "labels": dict(plan.MANAGED_BY)}}
            first.append(kube.create(name, namespace, pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=list(args.after)))))
        in_namespace = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=first)

        redis_password = random.RandomPassword(
            f"{name}-redis-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self, provider=random_provider)
        )
        secrets = [self._secret(name, plan.redis_secret, redis_password.result, in_namespace)]
        if args.credential is not None and cluster == "arda" and plan.reads_upstream(stack):
            secrets.append(self._secret(name, lambda credential: plan.repository_secret(stack, credential), args.credential, in_namespace))

        values: pulumi.Input[Mapping[str, Any]] = plan.helm_values(stack, cluster)
        if args.ca_certificate is not None and stack.identity is not None:
            # Signing in with Dex: its oidc.config carries the local CA (argo-cd#4344), known at `pulumi up`.
            values = args.ca_certificate.apply(lambda ca: plan.helm_values(stack, cluster, identity_plan.argocd_values(stack, cluster, ca)))
        # Its listeners behind the program's policies before the chart runs a pod (plan.network_policies).
        policies = [kube.create(name, policy, in_namespace) for policy in plan.network_policies(stack, cluster)]
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            chart=plan.CHART,
            version=plan.gitops_of(stack).argocd.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=plan.REPOSITORY),
            name="argocd",
            namespace=plan.NAMESPACE,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[*first, *secrets, *policies]),
        )
        after_chart = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.release])

        self.namespaces = dict(args.namespaces or {})
        if cluster == "arda" and args.namespaces is None:
            for manifest in plan.namespaces(stack, args.registry):
                self.namespaces[manifest["metadata"]["name"]] = kube.create(
                    name, manifest, pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=first))
                )

        self.projects = {
            project["metadata"]["name"]: self._custom_resource(name, project, after_chart)
            for project in (plan.git_app_project(stack, cluster, args.registry), plan.platform_app_project())
        }
        self.application_sets = {}
        for appset in plan.application_sets(stack, cluster, args.registry):
            key = appset["metadata"]["name"]
            # A category's apps start once its namespace exists (the Ainur's create their own).
            deps = [self.release, *self.projects.values(), *([self.namespaces[key]] if key in self.namespaces else [])]
            self.application_sets[key] = self._custom_resource(
                name, appset, pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=deps)
            )
        self.register_outputs({"repoUrl": self.repo_url, "applicationSets": sorted(self.application_sets)})

    @staticmethod
    def _secret(prefix: str, render: Callable[[str], dict[str, Any]], value: pulumi.Output[str], opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        """A Secret the plan renders around one secret value: its data stay a Pulumi secret throughout."""
        shape = render("")  # name, namespace and labels do not depend on the value
        return k8s.core.v1.Secret(
            kube.resource_name(prefix, shape),
            metadata=shape["metadata"],
            type=shape["type"],
            string_data=pulumi.Output.secret(value.apply(lambda v: render(v)["stringData"])),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
        )

    @staticmethod
    def _custom_resource(prefix: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            kube.resource_name(prefix, dict(manifest)),
            api_version=str(manifest["apiVersion"]),
            kind=str(manifest["kind"]),
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )


@dataclass(frozen=True)
class GitOpsArgs:
    """The GitOps layer's input: the stack, how to reach each cluster and what it waits for.

    `credential`: the repository's token or SSH key (`iluvatar:gitopsToken` or
    `iluvatar:gitopsSshPrivateKey`), None for a public https repository. `namespaces`: Arda's
    category namespaces when another layer creates them (see `ArgoCdArgs`).
    """

    stack: StackConfig
    arda: ClusterAccess
    arda_after: Sequence[pulumi.Resource]
    ainur: ClusterAccess | None = None
    ainur_after: Sequence[pulumi.Resource] = ()
    credential: pulumi.Output[str] | None = None
    registry: Sequence[str] | None = None
    namespaces: Mapping[str, pulumi.Resource] | None = None
    # The local CA, with iluvatar:identity (see ArgoCdArgs).
    ca_certificate: pulumi.Output[str] | None = None


class GitOps(pulumi.ComponentResource):
    """GitOps: Argo CD on Arda, the Argo CD seed on the Ainur, and the mirror's credential."""

    arda: ArgoCd
    ainur: ArgoCd | None
    # The Git mirror's credential on the Ainur, when the mirror clones a private or SSH repository.
    mirror_credentials: k8s.core.v1.Secret | None

    def __init__(self, name: str, args: GitOpsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:gitops:GitOps", name, None, opts)
        stack = args.stack
        self.arda = ArgoCd(
            f"{name}-arda",
            ArgoCdArgs(stack, "arda", args.arda, args.arda_after, args.credential, args.registry, args.namespaces, args.ca_certificate),
            # Its objects go with Arda (deleted_with): `pulumi destroy` resets the machines instead.
            opts=pulumi.ResourceOptions(parent=self, transformations=[args.arda.in_cluster]),
        )
        self.ainur = None
        self.mirror_credentials = None
        if stack.ainur is not None:
            assert args.ainur is not None, "an Ainur stack hands GitOps the Ainur's access"
            self.ainur = ArgoCd(
                f"{name}-ainur",
                ArgoCdArgs(stack, "ainur", args.ainur, args.ainur_after, ca_certificate=args.ca_certificate),
                opts=pulumi.ResourceOptions(parent=self, transformations=[args.ainur.in_cluster]),
            )
            if stack.ainur.git_mirror is not None and plan.mirror_credential_kind(stack) is not None:
                assert args.credential is not None, "stacks.gitops requires the credential of a private or SSH repository"
                files: pulumi.Output[Any] = args.credential.apply(lambda credential: plan.mirror_credentials(stack, credential))
                data: Any = pulumi.Output.secret(files)
                metadata: Any = {"name": plan.MIRROR_CREDENTIALS, "namespace": "netboot", "labels": dict(plan.MANAGED_BY)}
                self.mirror_credentials = k8s.core.v1.Secret(
                    f"{name}-ainur-secret-{plan.MIRROR_CREDENTIALS}",
                    metadata=metadata,
                    type="Opaque",
                    string_data=data,
                    opts=args.ainur.with_cluster(
                        pulumi.ResourceOptions(
                            parent=self,
                            provider=self.ainur.provider,
                            depends_on=list(args.ainur_after),
                            additional_secret_outputs=["data", "stringData"],
                        )
                    ),
                )
        self.register_outputs({"ardaRepoUrl": self.arda.repo_url, "ainurRepoUrl": self.ainur.repo_url if self.ainur else None})


@dataclass(frozen=True)
class PlatformApplicationArgs:
    """A platform Application (from `plans.gitops.platform_application`) and the Argo CD that syncs it.

    `after`: what must exist before Argo CD syncs it (the namespace the layer creates for it).
    """

    manifest: Mapping[str, Any]
    argocd: ArgoCd
    after: Sequence[pulumi.Resource] = ()


class PlatformApplication(pulumi.ComponentResource):
    """An Argo CD Application Pulumi generates from the inventory, with its Helm values inline.

    Pulumi owns the Application (its values change when the stack does); Argo CD owns what it
    installs. Created after Argo CD's chart and its `platform` AppProject.
    """

    application: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: PlatformApplicationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:gitops:PlatformApplication", name, None, opts)
        argocd = args.argocd
        deps = [argocd.release, argocd.projects[plan.PLATFORM_PROJECT], *args.after]
        self.application = ArgoCd._custom_resource(
            name, args.manifest, pulumi.ResourceOptions(parent=self, provider=argocd.provider, depends_on=deps)
        )
        self.register_outputs({"name": args.manifest["metadata"]["name"]})
