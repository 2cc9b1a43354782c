"""The edge: what makes the apps reachable, from the LAN and (optionally) from the internet.

`Edge` owns the category namespaces (the GitOps layer deploys into them) and four parts:
`Certificates` (cert-manager, trust-manager, the local root CA, the wildcard certificates),
`Gateways` (Envoy Gateway, `envoy-internal` and, with a public path, `envoy-external`, one route
per app), `Cloudflare` (components.cloudflare: the tunnel, cloudflared and the public records; only when
the stack turns the tunnel on, else no Cloudflare provider or resource exists) and, in a stack without the Ainur,
`Resolver` (the LAN's split DNS on Arda). Everything is derived from the app registry by the plans
(plans.edge, plans.gateways, plans.certificates, plans.cloudflare, plans.resolver).

The Kubernetes objects go through the Arda provider passed in `providers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.cloudflare import Cloudflare, CloudflareArgs
from components.local_ca import LocalCa
from components.steps import ClusterAccess
from plans import bringup
from plans import certificates as certs_plan
from plans import edge as plan
from plans import gateways as gateways_plan
from plans import gitops as gitops_plan
from plans import ports as ports_plan
from plans import resolver as resolver_plan
from stacks.edge import edge_addresses
from stacks.model import StackConfig


def custom_resource(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """A custom resource from a plan's manifest (its CRD comes from a Helm release it depends on)."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version=str(manifest["apiVersion"]),
        kind=str(manifest["kind"]),
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )


def resource_suffix(manifest: Mapping[str, Any]) -> str:
    """`<kind>-<namespace>-<name>`: unique across namespaces (two apps' routes share no name)."""
    meta = manifest["metadata"]
    return "-".join(p for p in (str(manifest["kind"]).lower(), meta.get("namespace"), meta["name"]) if p)


@dataclass(frozen=True)
class CertificatesArgs:
    """The validated stack, the Cloudflare API token (secret; with publicDns: cloudflare), the namespaces,
    how the webhook gates reach Arda, and the local root CA."""

    stack: StackConfig
    cloudflare_api_token: pulumi.Output[str] | None
    namespaces: Mapping[str, k8s.core.v1.Namespace]
    access: ClusterAccess
    ca: LocalCa


class Certificates(pulumi.ComponentResource):
    """Certificates: cert-manager and trust-manager, the local root CA's Secret (the CA itself is
    components.local_ca's), its issuer and trust bundle, Let's Encrypt (with Cloudflare DNS) and the gateways' wildcard certificates.

    cert-manager's and trust-manager's webhooks refuse their custom resources until a webhook pod
    answers ("failed calling webhook webhook.cert-manager.io"), which is after the release reports
    deployed: a gate per webhook waits until the API server admits the very objects that follow.
    """

    ca_certificate: pulumi.Output[str]
    certificates: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Certificates", name, None, opts)
        stack = args.stack
        namespace = args.namespaces[plan.CERT_MANAGER_NAMESPACE]
        # The root CA comes first, before any cluster (components.local_ca): the API servers trust Dex through it.
        key, cert = args.ca.key, args.ca.cert
        self.ca_certificate = pulumi.Output.unsecret(cert.cert_pem)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        pems: pulumi.Output[dict[str, str]] = pulumi.Output.all(cert.cert_pem, key.private_key_pem).apply(
            lambda pem: {"tls.crt": pem[0], "tls.key": pem[1]}
        )
        ca_data: pulumi.Output[dict[str, str]] = pulumi.Output.secret(pems)
        ca_secret = k8s.core.v1.Secret(
            f"{name}-ca-secret",
            metadata={"name": certs_plan.CA_SECRET, "namespace": plan.CERT_MANAGER_NAMESPACE, "labels": dict(plan.MANAGED_BY)},
            type="kubernetes.io/tls",
            string_data=ca_data,
            opts=in_namespace,
        )
        before_issuers: list[pulumi.Resource] = [ca_secret]
        if stack.public_dns == "cloudflare":
            assert args.cloudflare_api_token is not None
            before_issuers.append(
                k8s.core.v1.Secret(
                    f"{name}-cloudflare-token",
                    metadata={"name": certs_plan.CLOUDFLARE_TOKEN_SECRET, "namespace": plan.CERT_MANAGER_NAMESPACE, "labels": dict(plan.MANAGED_BY)},
                    type="Opaque",
                    string_data={certs_plan.CLOUDFLARE_TOKEN_KEY: args.cloudflare_api_token},
                    opts=in_namespace,
                )
            )

        def release(chart: str, version: str, values: Mapping[str, Any], after: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
            """A chart of jetstack's repository, released under its own name into cert-manager's namespace."""
            return k8s.helm.v3.Release(
                f"{name}-{chart}",
                name=chart,
                chart=chart,
                version=version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=certs_plan.REPOSITORY),
                namespace=plan.CERT_MANAGER_NAMESPACE,
                values=values,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, *after]),
            )

        cert_manager = release(certs_plan.CERT_MANAGER_CHART, certs_plan.CERT_MANAGER_VERSION, certs_plan.cert_manager_values(stack), [])
        # Its webhook's certificate comes from cert-manager.
        trust_manager = release(
            certs_plan.TRUST_MANAGER_CHART, certs_plan.TRUST_MANAGER_VERSION, certs_plan.trust_manager_values(stack), [cert_manager]
        )
        issuer_manifests, certificate_manifests = certs_plan.issuers(stack), certs_plan.certificates(stack)
        certificate_namespaces = [args.namespaces[m["metadata"]["namespace"]] for m in certificate_manifests]
        cert_manager_webhook = args.access.gate(
            f"{name}-gate-cert-manager",
            bringup.admits_gate("cert-manager's webhook answers", [m["kind"] for m in (*issuer_manifests, *certificate_manifests)]),
            self,
            after=[cert_manager, *certificate_namespaces],
            manifests=[*issuer_manifests, *certificate_manifests],
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[cert_manager_webhook, *before_issuers])
        issuers = [custom_resource(f"{name}-{resource_suffix(m)}", m, after) for m in issuer_manifests]
        bundle = certs_plan.trust_bundle()
        trust_manager_webhook = args.access.gate(
            f"{name}-gate-trust-manager",
            bringup.admits_gate("trust-manager's webhook answers", [bundle["kind"]]),
            self,
            after=[trust_manager],
            manifests=[bundle],
        )
        custom_resource(
            f"{name}-{resource_suffix(bundle)}", bundle, pulumi.ResourceOptions(parent=self, depends_on=[trust_manager_webhook, ca_secret])
        )
        self.certificates = {}
        for manifest in certificate_manifests:
            ns = args.namespaces[manifest["metadata"]["namespace"]]
            self.certificates[manifest["metadata"]["name"]] = custom_resource(
                f"{name}-{resource_suffix(manifest)}", manifest, pulumi.ResourceOptions(parent=self, depends_on=[ns, cert_manager_webhook, *issuers])
            )
        self.register_outputs({"caCertificate": self.ca_certificate})


@dataclass(frozen=True)
class GatewaysArgs:
    """The validated stack (the app registry), the namespaces, the certificates the gateways serve, and how the step
    after the gateways reaches Arda."""

    stack: StackConfig
    namespaces: Mapping[str, k8s.core.v1.Namespace]
    certificates: Mapping[str, pulumi.Resource]
    access: ClusterAccess


class Gateways(pulumi.ComponentResource):
    """Gateways: Envoy Gateway (Helm), its GatewayClass and EnvoyProxy, the gateways at their pool
    addresses, the https redirect and one HTTPRoute per app; then the step that takes back any NodePort a gateway's
    proxy Service still holds (plans.gateways.node_port_release)."""

    gateways: dict[str, k8s.apiextensions.CustomResource]
    routes: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: GatewaysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Gateways", name, None, opts)
        stack = args.stack
        release = k8s.helm.v3.Release(
            f"{name}-envoy-gateway",
            name=gateways_plan.RELEASE,
            chart=gateways_plan.CHART,
            version=gateways_plan.VERSION,
            namespace=plan.ENVOY_GATEWAY_NAMESPACE,
            values=gateways_plan.helm_values(stack),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.namespaces[plan.ENVOY_GATEWAY_NAMESPACE]]),
        )
        self.gateways, self.routes = {}, {}
        created: dict[tuple[str, str], k8s.apiextensions.CustomResource] = {}
        for manifest in gateways_plan.manifests(stack):
            kind, meta = manifest["kind"], manifest["metadata"]
            deps: list[pulumi.Resource] = [release]
            if meta.get("namespace"):
                deps.append(args.namespaces[meta["namespace"]])
            if kind == "GatewayClass":
                deps.append(created[("EnvoyProxy", gateways_plan.ENVOY_PROXY)])
            if kind == "Gateway":
                deps += [created[("GatewayClass", gateways_plan.GATEWAY_CLASS)], *args.certificates.values()]
            if kind == "HTTPRoute":
                deps += [created[("Gateway", g["name"])] for g in manifest["spec"]["parentRefs"]]
            resource = custom_resource(f"{name}-{resource_suffix(manifest)}", manifest, pulumi.ResourceOptions(parent=self, depends_on=deps))
            created[(kind, meta["name"])] = resource
            if kind == "Gateway":
                self.gateways[meta["name"]] = resource
            elif kind == "HTTPRoute" and meta["name"] != gateways_plan.REDIRECT_ROUTE:
                self.routes[meta["name"]] = resource
        # After Envoy Gateway runs, the EnvoyProxy that says no NodePort and every Gateway exist: Envoy Gateway makes
        # (or applies anew) each proxy Service from them, which the step waits for.
        self.node_ports = args.access.gate(
            f"{name}-release-node-ports",
            gateways_plan.node_port_release(stack),
            self,
            after=[release, created[("EnvoyProxy", gateways_plan.ENVOY_PROXY)], *self.gateways.values()],
        )
        self.register_outputs({})


@dataclass(frozen=True)
class ResolverArgs:
    """The validated stack (inventory and app registry) and the namespaces."""

    stack: StackConfig
    namespaces: Mapping[str, k8s.core.v1.Namespace]


class Resolver(pulumi.ComponentResource):
    """The LAN resolver (CoreDNS on Arda at its pool address): split DNS in a stack without the Ainur."""

    def __init__(self, name: str, args: ResolverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Resolver", name, None, opts)
        networking = args.namespaces[plan.GATEWAY_NAMESPACE]
        kube.create_all(name, resolver_plan.manifests(args.stack), pulumi.ResourceOptions(parent=self, depends_on=[networking]))
        self.register_outputs({})


@dataclass(frozen=True)
class PortsArgs:
    """The validated stack (its apps with raw ports), the namespaces, and how the Cilium gate reaches Arda."""

    stack: StackConfig
    namespaces: Mapping[str, k8s.core.v1.Namespace]
    access: ClusterAccess


class Ports(pulumi.ComponentResource):
    """The apps with raw TCP/UDP ports: each one's LoadBalancer Service at its own pool address and its
    CiliumNetworkPolicy (plans.ports). The policies wait for a gate that sees the API server admit them: Cilium
    registers its CRD once its agent runs, as for the log store's (components.logs)."""

    def __init__(self, name: str, args: PortsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Ports", name, None, opts)
        apps = ports_plan.apps(args.stack)
        namespaces = [args.namespaces[ns] for ns in sorted({a.namespace for a in apps})]
        policies = [ports_plan.network_policy(args.stack, a) for a in apps]
        admits = args.access.gate(
            f"{name}-gate-cilium",
            bringup.admits_gate("Cilium registers it", sorted({p["kind"] for p in policies})),
            self,
            after=namespaces,
            manifests=policies,
        )
        for app, policy in zip(apps, policies, strict=True):
            in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[args.namespaces[app.namespace]])
            guard = custom_resource(
                f"{name}-{resource_suffix(policy)}", policy, pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[admits]))
            )
            # The address is announced once the Service exists: its policy first, so no moment leaves the pods open.
            kube.create(
                name, ports_plan.service(args.stack, app), pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[guard]))
            )
        self.register_outputs({})


@dataclass(frozen=True)
class EdgeArgs:
    """The validated stack, how the edge's gates reach Arda, and the Cloudflare API token (secret; present
    when the stack uses Cloudflare)."""

    stack: StackConfig
    access: ClusterAccess
    ca: LocalCa
    cloudflare_api_token: pulumi.Output[str] | None = None
    # What the edge waits for (Arda's nodes gate): its namespaces, and so everything in them, come after.
    after: Sequence[pulumi.Resource] = ()


class Edge(pulumi.ComponentResource):
    """The edge: category namespaces, certificates, gateways, and Cloudflare and the LAN resolver when the stack has them."""

    namespaces: dict[str, k8s.core.v1.Namespace]
    category_namespaces: dict[str, k8s.core.v1.Namespace]  # the GitOps layer deploys each category's apps into these
    lan_records: list[tuple[str, IPv4Address]]
    certificates: Certificates
    gateways: Gateways
    cloudflare: Cloudflare | None
    resolver: Resolver | None
    ports: Ports | None
    ca_certificate: pulumi.Output[str]
    summary: dict[str, Any]

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Edge", name, None, opts)
        stack = args.stack
        child = pulumi.ResourceOptions(parent=self)
        # One Namespace per category (keyed by category, which is its name) and the controllers' own.
        in_order = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        self.namespaces = {
            key: k8s.core.v1.Namespace(f"{name}-namespace-{key}", metadata=manifest["metadata"], opts=in_order)
            for key, manifest in plan.namespaces(stack).items()
        }
        self.category_namespaces = {c: self.namespaces[c] for c in gitops_plan.categories(stack)}
        # What the LAN's DNS answers for the apps (the Ainur's zone takes them through NetbootArgs.dns_records).
        self.lan_records = plan.lan_records(stack)
        self.certificates = Certificates(
            f"{name}-certificates", CertificatesArgs(stack, args.cloudflare_api_token, self.namespaces, args.access, args.ca), opts=child
        )
        self.ca_certificate = self.certificates.ca_certificate
        self.gateways = Gateways(f"{name}-gateways", GatewaysArgs(stack, self.namespaces, self.certificates.certificates, args.access), opts=child)
        self.cloudflare = None
        if stack.uses_cloudflare and stack.public_ingress == "cloudflare-tunnel":
            assert args.cloudflare_api_token is not None
            self.cloudflare = Cloudflare(f"{name}-cloudflare", CloudflareArgs(stack, args.cloudflare_api_token, self.namespaces), opts=child)
        self.resolver = Resolver(f"{name}-resolver", ResolverArgs(stack, self.namespaces), opts=child) if stack.has_lan_resolver else None
        self.ports = Ports(f"{name}-ports", PortsArgs(stack, self.namespaces, args.access), opts=child) if ports_plan.apps(stack) else None
        self.summary = summary(stack)
        self.register_outputs({"caCertificate": self.ca_certificate, "summary": self.summary})


def summary(stack: StackConfig) -> dict[str, Any]:
    """The edge as plain data for the stack output: gateways, routes, LAN and public DNS, certificates."""
    addresses = edge_addresses(stack.network.load_balancer_pool, stack.edge)
    out: dict[str, Any] = {
        "publicIngress": stack.public_ingress,
        "publicDns": stack.public_dns,
        "gateways": {g: str(addresses[g]) for g in plan.gateway_names(stack)},
        "routes": [
            {
                "app": a.name,
                "host": a.host,
                "audience": a.audience,
                "gateway": plan.gateway_of(a),
                "namespace": a.namespace,
                "service": a.service_name,
                "port": a.http.port,
            }
            for a in sorted(stack.apps, key=lambda a: a.name)
            if a.service is not None
        ],
        "ports": {
            a.name: {"host": a.host, "address": str(a.address), "ports": [f"{p.port}/{p.protocol}" for p in a.ports]} for a in ports_plan.apps(stack)
        },
        "lanRecords": {host: str(ip) for host, ip in plan.lan_records(stack)},
        "publicRecords": [r.name for r in plan.public_records(stack)],
        "certificates": {
            c["metadata"]["name"]: {"dnsNames": c["spec"]["dnsNames"], "issuer": c["spec"]["issuerRef"]["name"]}
            for c in certs_plan.certificates(stack)
        },
    }
    if stack.has_lan_resolver:
        out["resolver"] = str(addresses["resolver"])
        out["conditionalForwarders"] = plan.forwarded_names(stack)
    return out
