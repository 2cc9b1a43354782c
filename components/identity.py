"""Identity: one login (the Ainur's Dex) for Argo CD, Headlamp and kubectl on both clusters, and the CA page.

`Identity` (`iluvatar:identity:Identity`, with `iluvatar:identity`) creates:

- on the Ainur (it must outlive Arda: every login depends on it): Dex with a certificate of the local
  CA and its config (a Secret: the clients' secrets Pulumi generates, the connector's secret), the
  front door at `identity.ip` (Dex and the Ainur's Argo CD by name, the CA page), the Ainur's Argo
  CD's own certificate and Dex client secret;
- on both clusters: each group of the stack bound to its ClusterRole (the API servers trust Dex
  through their authentication config, plans.apiserver, in Talos's and k3s's own configs);
- on Arda: Argo CD's client secret and its route on envoy-internal; Headlamp (a platform
  Application) with its client secret and the local CA.

Exports the kubeconfigs that sign in with Dex (`signIn`: no secret in them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.edge import custom_resource, resource_suffix
from components.gitops import ArgoCd, GitOps, PlatformApplication, PlatformApplicationArgs
from components.local_ca import LocalCa
from components.steps import ClusterAccess
from plans import identity as plan
from plans import references
from stacks.model import StackConfig


@dataclass(frozen=True)
class IdentityArgs:
    """The stack, the local CA, each cluster's access and Kubernetes provider and what its objects wait for,
    the GitOps layer (its Argo CDs sign in with Dex), the edge's namespaces and gateways (Headlamp's app and
    Argo CD's route), and the connector's secret (`iluvatar:identityConnectorSecret`)."""

    stack: StackConfig
    ca: LocalCa
    connector_secret: pulumi.Output[str]
    ainur: ClusterAccess
    ainur_provider: k8s.Provider
    arda: ClusterAccess
    arda_provider: k8s.Provider
    ainur_after: Sequence[pulumi.Resource] = ()
    arda_after: Sequence[pulumi.Resource] = ()
    gitops: GitOps | None = None
    namespaces: Mapping[str, pulumi.Resource] | None = None
    gateways: pulumi.Resource | None = None


class Identity(pulumi.ComponentResource):
    """Dex on the Ainur and everything that trusts it."""

    client_secrets: dict[str, pulumi.Output[str]]
    sign_in: dict[str, Any]

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:identity:Identity", name, None, opts)
        stack, ca = args.stack, args.ca
        random_provider = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
        self.client_secrets = {
            client: pulumi.Output.secret(
                random.RandomPassword(
                    f"{name}-client-{client}", length=40, special=False, opts=pulumi.ResourceOptions(parent=self, provider=random_provider)
                ).result
            )
            for client in plan.confidential_clients(stack)
        }

        # --- the Ainur: Dex and the front door ---
        in_ainur = args.ainur.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.ainur_provider, depends_on=list(args.ainur_after)))
        namespace = kube.create(f"{name}-ainur", plan.namespace(), in_ainur)
        in_namespace = pulumi.ResourceOptions.merge(in_ainur, pulumi.ResourceOptions(depends_on=[namespace]))
        certs = plan.certificate_names(stack)
        dex_cert, dex_key = ca.issue(
            f"{name}-{plan.DEX}", certs[plan.DEX], self, plan.CERTIFICATE_VALIDITY_HOURS, plan.CERTIFICATE_EARLY_RENEWAL_HOURS
        )
        made: dict[references.Ref, pulumi.Resource] = {}
        for render, value, blank in (
            (
                lambda pair: plan.tls_secret(plan.DEX_TLS_SECRET, plan.NAMESPACE, pair[0], pair[1]),
                pulumi.Output.all(dex_cert, dex_key),
                ("", ""),
            ),
            (
                lambda values: plan.dex_config_secret(stack, values[1], values[0]),
                pulumi.Output.all(args.connector_secret, pulumi.Output.all(**self.client_secrets)),
                ("", dict.fromkeys(self.client_secrets, "")),
            ),
        ):
            _secret(f"{name}-ainur", render, value, blank, in_namespace, made)
        # Each object after the ones it names (plans.references): Dex after its account and Secrets, its
        # bindings after their role and account, the front door after its ConfigMap.
        dex = kube.create_all(f"{name}-ainur", plan.dex_manifests(), in_namespace, existing=made)
        made.update({references.identity(m): dex[kube.resource_name(f"{name}-ainur", m)] for m in plan.dex_manifests()})
        door: pulumi.Output[list[dict[str, Any]]] = ca.certificate.apply(lambda pem: plan.front_door_manifests(stack, pem))
        shapes = plan.front_door_manifests(stack, "")
        for i, shape in sorted(enumerate(shapes), key=lambda pair: references.pod_spec(pair[1]) is not None):
            deps = [made[ref] for ref in references.references(shape) if ref in made]
            made[references.identity(shape)] = _from_output(
                f"{name}-ainur", shape, _item(door, i), pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=deps))
            )
        bindings = plan.cluster_role_bindings(stack)
        kube.create_all(f"{name}-ainur", bindings, in_ainur)

        # --- the Argo CDs ---
        argocds: dict[str, ArgoCd] = {}
        if args.gitops is not None:
            argocds["arda"] = args.gitops.arda
            if args.gitops.ainur is not None:
                argocds["ainur"] = args.gitops.ainur
        for cluster, argocd in argocds.items():
            access = args.ainur if cluster == "ainur" else args.arda
            opts = access.with_cluster(pulumi.ResourceOptions(parent=self, provider=argocd.provider, depends_on=[argocd.release]))
            client = plan.ARGOCD_CLIENTS[cluster]
            ArgoCd._secret(f"{name}-{cluster}", plan.argocd_oidc_secret, self.client_secrets[client], opts)
            if cluster == "ainur":
                cert, key = ca.issue(
                    f"{name}-argocd-ainur", certs["argocd-ainur"], self, plan.CERTIFICATE_VALIDITY_HOURS, plan.CERTIFICATE_EARLY_RENEWAL_HOURS
                )
                _secret(
                    f"{name}-ainur",
                    lambda pair: plan.tls_secret(plan.ARGOCD_TLS_SECRET, "argocd", pair[0], pair[1], **{"app.kubernetes.io/part-of": "argocd"}),
                    pulumi.Output.all(cert, key),
                    ("", ""),
                    opts,
                )
            elif args.gateways is not None:
                route = plan.argocd_route(stack)
                custom_resource(
                    f"{name}-arda-{resource_suffix(route)}",
                    route,
                    pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[args.gateways])),
                )

        # --- Arda: the bindings and Headlamp ---
        in_arda = args.arda.with_cluster(pulumi.ResourceOptions(parent=self, provider=args.arda_provider, depends_on=list(args.arda_after)))
        kube.create_all(f"{name}-arda", bindings, in_arda)
        app = plan.headlamp_app(stack)
        if app is not None and "arda" in argocds:
            assert args.namespaces is not None
            in_app = pulumi.ResourceOptions.merge(in_arda, pulumi.ResourceOptions(depends_on=[args.namespaces[app.namespace]]))
            secret = ArgoCd._secret(
                f"{name}-arda", lambda value: plan.headlamp_secret(stack, value), self.client_secrets[plan.HEADLAMP_CLIENT], in_app
            )
            config_map = _from_output(
                f"{name}-arda", plan.headlamp_ca(stack, ""), ca.certificate.apply(lambda pem: plan.headlamp_ca(stack, pem)), in_app
            )
            PlatformApplication(
                f"{name}-arda-headlamp",
                PlatformApplicationArgs(
                    plan.headlamp_application(stack), argocds["arda"], after=[args.namespaces[app.namespace], secret, config_map]
                ),
                opts=pulumi.ResourceOptions(parent=self, transformations=[args.arda.in_cluster]),
            )

        self.sign_in = {
            "issuer": plan.issuer(stack),
            "caPage": f"http://{plan.hosts(stack)['ca']}/",
            "groups": {b.group: b.cluster_role for b in plan.settings(stack).groups},
        }
        self.register_outputs({"signIn": self.sign_in})


def _secret(
    prefix: str,
    render: Callable[[Any], dict[str, Any]],
    value: pulumi.Output[Any],
    blank: Any,
    opts: pulumi.ResourceOptions,
    named: dict[references.Ref, pulumi.Resource] | None = None,
) -> k8s.core.v1.Secret:
    """A Secret the plan renders around secret values (a TLS key, Dex's config): secret end to end. `blank` is a
    stand-in of the value's shape: the Secret's name and labels do not depend on it. `named` records it by
    the reference other objects name it by."""
    shape = render(blank)
    made = k8s.core.v1.Secret(
        kube.resource_name(prefix, shape),
        metadata=shape["metadata"],
        type=shape["type"],
        string_data=pulumi.Output.secret(value.apply(lambda v: render(v)["stringData"])),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
    )
    if named is not None:
        named[references.identity({"kind": "Secret", "metadata": shape["metadata"]})] = made
    return made


def _item(manifests: pulumi.Output[list[dict[str, Any]]], i: int) -> pulumi.Output[dict[str, Any]]:
    return manifests.apply(lambda docs: docs[i])


def _from_output(prefix: str, shape: dict[str, Any], manifest: pulumi.Output[dict[str, Any]], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A plain object whose content waits for an Output (the CA's certificate): named from `shape`, its fields from `manifest`."""
    cls: Any = kube.KINDS[(shape["apiVersion"], shape["kind"])]
    fields = {key: _field(manifest, key) for key in shape if key not in ("apiVersion", "kind", "metadata")}
    snake = {"".join(f"_{c.lower()}" if c.isupper() else c for c in key): value for key, value in fields.items()}
    made: pulumi.CustomResource = cls(kube.resource_name(prefix, shape), metadata=shape["metadata"], **snake, opts=opts)
    return made


def _field(manifest: pulumi.Output[dict[str, Any]], key: str) -> pulumi.Output[Any]:
    return manifest.apply(lambda m: m[key])
