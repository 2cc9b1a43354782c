"""iluvatar:edge:Cloudflare: the remotely managed tunnel and its ingress rules, cloudflared on Arda, and one
proxied CNAME per external app (plans.cloudflare). Only a stack that turns the tunnel on builds it.

Its resources and invokes are registered exactly as pulumi-cloudflare's generated classes register them
(the type token, the inputs the class makes secret, the old types it aliases, the outputs its schema marks
secret, the plugin version), without importing that SDK: `import pulumi_cloudflare` loads every one of its
780 resource modules and 12 MB of input and output types, 1.2 s of `iluvatar render homelab` (and of every
`pulumi preview`) for four resources and two invokes. tests/components/test_cloudflare.py registers them
both ways under the mock runtime and compares the engine's requests field by field, so an SDK upgrade that
changes what its classes send fails there.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from plans import cloudflare as plan
from plans import edge as edge_plan
from stacks.model import StackConfig

PACKAGE = "cloudflare"
# The provider plugin the engine runs: the SDK's own version, as its classes ask for it (its pulumi-plugin.json).
VERSION = importlib.metadata.version("pulumi_cloudflare")


@dataclass(frozen=True)
class Kind:
    """What pulumi-cloudflare's generated class adds when it registers a resource of one type."""

    token: str
    secret_inputs: tuple[str, ...] = ()  # inputs it wraps in Output.secret
    aliases: tuple[str, ...] = ()  # the types this one was renamed from (an old state still matches)
    secret_outputs: tuple[str, ...] = ()  # additional_secret_outputs: what its schema marks secret


_PROVIDER_SECRETS = ("apiKey", "apiToken", "apiUserServiceKey")
PROVIDER = Kind(f"pulumi:providers:{PACKAGE}", secret_inputs=_PROVIDER_SECRETS, secret_outputs=_PROVIDER_SECRETS)
TUNNEL = Kind(
    "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
    secret_inputs=("tunnelSecret",),
    aliases=("cloudflare:index/tunnel:Tunnel",),
    secret_outputs=("tunnelSecret",),
)
TUNNEL_CONFIG = Kind(
    "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig", aliases=("cloudflare:index/tunnelConfig:TunnelConfig",)
)
DNS_RECORD = Kind("cloudflare:index/dnsRecord:DnsRecord", aliases=("cloudflare:index/record:Record",))
GET_ZONE = "cloudflare:index/getZone:getZone"
GET_TUNNEL_TOKEN = "cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken"  # noqa: S105 - a function name


def _props(kind: Kind, inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: pulumi.Output.secret(value) if key in kind.secret_inputs else value for key, value in inputs.items() if value is not None}


def _options(kind: Kind, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    # In the generated class's order: its defaults, the caller's options, then its aliases and secret outputs.
    merged = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=VERSION), opts)
    if kind.aliases:
        merged = pulumi.ResourceOptions.merge(merged, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=t) for t in kind.aliases]))
    if kind.secret_outputs:
        merged = pulumi.ResourceOptions.merge(merged, pulumi.ResourceOptions(additional_secret_outputs=list(kind.secret_outputs)))
    return merged


def register(kind: Kind, name: str, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """One resource as its generated class registers it: `inputs` by the provider's (camelCase) names; None is left out."""
    return pulumi.CustomResource(kind.token, name, _props(kind, inputs), _options(kind, opts))


def provider(name: str, api_token: pulumi.Input[str], opts: pulumi.ResourceOptions) -> pulumi.ProviderResource:
    """The provider, as `pulumi_cloudflare.Provider(name, api_token=...)` registers it."""
    return pulumi.ProviderResource(PACKAGE, name, _props(PROVIDER, {"apiToken": api_token}), _options(PROVIDER, opts))


def invoke(token: str, args: Mapping[str, Any], opts: pulumi.InvokeOutputOptions) -> pulumi.Output[dict[str, Any]]:
    """A data source as its generated `*_output` function calls it; the result by the provider's (camelCase) names."""
    merged = pulumi.InvokeOutputOptions.merge(pulumi.InvokeOptions(version=VERSION), opts)
    return pulumi.runtime.invoke_output(token, dict(args), opts=merged)


@dataclass(frozen=True)
class CloudflareArgs:
    """The validated stack (account, zone, external apps), the API token (secret) and the namespaces."""

    stack: StackConfig
    api_token: pulumi.Output[str]
    namespaces: Mapping[str, k8s.core.v1.Namespace]


class Cloudflare(pulumi.ComponentResource):
    """Cloudflare: the remotely managed tunnel and its ingress rules, cloudflared on Arda, and one
    proxied CNAME per external app. Pulumi is the only writer of these public records."""

    tunnel: pulumi.CustomResource
    tunnel_token: pulumi.Output[str]
    records: dict[str, pulumi.CustomResource]

    def __init__(self, name: str, args: CloudflareArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:Cloudflare", name, None, opts)
        stack = args.stack
        assert stack.cloudflare is not None
        assert stack.network.external_domain is not None
        account = stack.cloudflare.account_id
        child = pulumi.ResourceOptions(parent=self)
        cloudflare = provider(f"{name}-provider", args.api_token, child)
        random_provider = random.Provider(f"{name}-random", opts=child)
        tunnel_secret = random.RandomBytes(
            f"{name}-tunnel-secret",
            length=plan.TUNNEL_SECRET_BYTES,
            opts=pulumi.ResourceOptions(parent=self, provider=random_provider, additional_secret_outputs=["base64", "hex"]),
        )
        on_cloudflare = pulumi.ResourceOptions(parent=self, provider=cloudflare)
        self.tunnel = register(
            TUNNEL,
            f"{name}-tunnel",
            {"accountId": account, "name": plan.tunnel_name(stack), "configSrc": "cloudflare", "tunnelSecret": tunnel_secret.base64},
            pulumi.ResourceOptions.merge(on_cloudflare, pulumi.ResourceOptions(additional_secret_outputs=["tunnelSecret"])),
        )
        register(
            TUNNEL_CONFIG,
            f"{name}-tunnel-config",
            {"accountId": account, "tunnelId": self.tunnel.id, "config": {"ingresses": plan.tunnel_config(stack)["ingress"]}},
            on_cloudflare,
        )
        calls = pulumi.InvokeOutputOptions(parent=self, provider=cloudflare)
        token = invoke(GET_TUNNEL_TOKEN, {"accountId": account, "tunnelId": self.tunnel.id}, calls)
        # The provider does not mark the token secret; it is the tunnel's credential.
        self.tunnel_token = pulumi.Output.secret(token["token"])
        networking = args.namespaces[edge_plan.GATEWAY_NAMESPACE]
        token_secret = k8s.core.v1.Secret(
            f"{name}-cloudflared-token",
            metadata={"name": plan.TOKEN_SECRET, "namespace": edge_plan.GATEWAY_NAMESPACE, "labels": dict(edge_plan.MANAGED_BY)},
            type="Opaque",
            string_data={plan.TOKEN_KEY: self.tunnel_token},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[networking]),
        )
        kube.create(name, plan.cloudflared_deployment(stack), pulumi.ResourceOptions(parent=self, depends_on=[networking, token_secret]))
        kube.create(name, plan.cloudflared_network_policy(), pulumi.ResourceOptions(parent=self, depends_on=[networking]))
        zone = invoke(GET_ZONE, {"filter": {"name": stack.network.external_domain, "match": "all"}}, calls)
        target = self.tunnel.id.apply(lambda tunnel_id: f"{tunnel_id}.cfargotunnel.com")
        self.records = {
            record.app: register(
                DNS_RECORD,
                f"{name}-record-{record.app}",
                {
                    "zoneId": zone["id"],
                    "name": record.name,
                    "type": record.type,
                    "content": target,
                    "proxied": record.proxied,
                    "ttl": record.ttl,
                    "comment": plan.RECORD_COMMENT,
                },
                on_cloudflare,
            )
            for record in edge_plan.public_records(stack)
        }
        # Component outputs are written to the state as registered: the token stays secret there only as marked here.
        self.register_outputs({"tunnelId": self.tunnel.id, "tunnelToken": self.tunnel_token})
