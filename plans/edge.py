"""The edge plan: namespaces, and where every app host resolves, on the LAN and in public.

The edge has two paths (seed homelab, "Network Architecture"): the internet reaches external apps
through Cloudflare's proxy and a cloudflared tunnel to `envoy-external`; the LAN reaches every app
through the gateway its audience names. Split DNS makes the same host work from both sides: on the
LAN each app host resolves to its gateway's pool address (through the Ainur's DNS, or the LAN
resolver on Arda in a stack without them), while the public zone holds only proxied CNAMEs to the
tunnel for external apps. Nothing here touches Pulumi: plain data the components wire up.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

from plans import gitops
from plans.network import zone_records
from stacks.apps import under, zone_of
from stacks.edge import edge_addresses
from stacks.model import POD_SECURITY_LEVELS, App, PodSecurityLevel, StackConfig

# The gateways, the Envoy proxies (GatewayNamespace mode) and cloudflared live in the networking
# category's namespace, as the seed homelab keeps them; the controllers in their own.
GATEWAY_NAMESPACE = "networking"
ENVOY_GATEWAY_NAMESPACE = "envoy-gateway-system"
CERT_MANAGER_NAMESPACE = "cert-manager"
GATEWAYS = ("envoy-external", "envoy-internal")
MANAGED_BY = gitops.MANAGED_BY

# The Pod Security level each category's namespace enforces unless one of its apps needs more.
# Home automation (host network for mDNS and device discovery, USB radios), monitoring (node
# exporters read the host) and system (node feature discovery, snapshot controllers) run node
# agents that need privileged; the rest run ordinary workloads.
CATEGORY_POD_SECURITY: dict[str, PodSecurityLevel] = {"home-automation": "privileged", "monitoring": "privileged", "system": "privileged"}
DEFAULT_POD_SECURITY: PodSecurityLevel = "baseline"
# The edge's own controllers all run under the restricted profile.
SYSTEM_NAMESPACES = (CERT_MANAGER_NAMESPACE, ENVOY_GATEWAY_NAMESPACE)


def pod_security(stack: StackConfig, category: str) -> PodSecurityLevel:
    """The category's level, raised to the most permissive any of its apps asks for."""
    levels = [CATEGORY_POD_SECURITY.get(category, DEFAULT_POD_SECURITY)]
    levels += [a.pod_security for a in stack.apps if a.category == category and a.pod_security is not None]
    return max(levels, key=POD_SECURITY_LEVELS.index)


def _namespace(name: str) -> dict[str, Any]:
    """A controller's namespace: restricted Pod Security, enforced."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                **MANAGED_BY,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def namespaces(stack: StackConfig) -> dict[str, dict[str, Any]]:
    """Every namespace the edge owns, by name: one per category (the GitOps layer's ApplicationSets
    deploy into them and never create them), then the edge's controllers' own."""
    out = {c: gitops.category_namespace(c, pod_security(stack, c)) for c in gitops.categories(stack)}
    out.update({ns: _namespace(ns) for ns in SYSTEM_NAMESPACES})
    return out


# --- DNS ---------------------------------------------------------------------------------------


def gateway_names(stack: StackConfig) -> list[str]:
    """envoy-internal always; envoy-external when the tunnel carries a public path to it."""
    return ["envoy-external", "envoy-internal"] if stack.public_ingress == "cloudflare-tunnel" else ["envoy-internal"]


def gateway_of(app: App) -> str:
    return "envoy-external" if app.audience == "external" else "envoy-internal"


def lan_records(stack: StackConfig) -> list[tuple[str, IPv4Address]]:
    """Each app host and the address it resolves to on the LAN, by host: its gateway's, or its own for an app with
    raw ports (plans.ports). What the Ainur's DNS (plans.netboot.dns_records) or the LAN resolver adds to the
    internal zone; dnsmasq re-reads its records without a restart."""
    addresses = edge_addresses(stack.network.load_balancer_pool, stack.edge)
    return sorted((app.host, app.address if app.ports and app.address is not None else addresses[gateway_of(app)]) for app in stack.apps)


def resolver_records(stack: StackConfig) -> list[tuple[str, IPv4Address]]:
    """What the LAN resolver answers in a stack without the Ainur: the internal zone (machines,
    VIPs and the gateways that exist) and every app host, by name."""
    domain = stack.network.domain
    addresses = edge_addresses(stack.network.load_balancer_pool, stack.edge)
    records = {r.name: IPv4Address(r.value) for r in zone_records(stack)}
    records.update({f"{name}.{domain}": addresses[name] for name in gateway_names(stack)})
    records.update(lan_records(stack))
    return sorted(records.items())


def forwarded_names(stack: StackConfig) -> list[str]:
    """What the router forwards to the LAN resolver (conditional forwarding): the internal zone,
    and each app host under the public zone, so the rest of that zone still resolves in public."""
    domain = stack.network.domain
    return [domain, *sorted(a.host for a in stack.apps if not under(a.host, domain))]


@dataclass(frozen=True)
class PublicRecord:
    """A record in the public zone: a proxied CNAME from an external app host to the tunnel."""

    app: str
    name: str
    type: str
    proxied: bool
    ttl: int

    def content(self, tunnel_id: str) -> str:
        return f"{tunnel_id}.cfargotunnel.com"


def public_records(stack: StackConfig) -> list[PublicRecord]:
    """The public zone's records, one per external app, and nothing else: internal apps and the
    internal zone are never published. Empty unless the tunnel carries the public path."""
    if stack.public_ingress != "cloudflare-tunnel":
        return []
    # ttl 1 is Cloudflare's "automatic", the only TTL a proxied record takes.
    records = [PublicRecord(a.name, a.host, "CNAME", True, 1) for a in stack.apps if a.audience == "external"]
    check_public(stack, [(r.name, r.content("tunnel")) for r in records])
    return sorted(records, key=lambda r: r.name)


class PublicDnsError(ValueError):
    """A record the program was about to publish would leak the LAN: a private address or an internal host."""


def check_public(stack: StackConfig, records: list[tuple[str, str]]) -> None:
    """Refuse any public record (name, content) that holds a private address or names a host that
    is not an external app's (an internal app's, or anything in the internal zone)."""
    external = {a.host for a in stack.apps if a.audience == "external"}
    for name, content in records:
        # In the internal zone is judged as stacks.apps judges an app's zone: the longer zone a name is under wins,
        # so a public zone inside network.domain (pub.example.com in example.com) is still the public zone.
        if name not in external or zone_of(name, stack.network) == stack.network.domain:
            raise PublicDnsError(f"{name} is not an external app's host; it must never be published")
        try:
            address = ip_address(content)
        except ValueError:
            continue
        if not address.is_global:
            raise PublicDnsError(f"{name} would publish {content}, a private address")
