"""The edge's config rules (`iluvatar:edge`): its modes, what Cloudflare needs, and its LAN addresses.

The public path (Cloudflare's proxy, the tunnel, `envoy-external`) is optional: `publicIngress`
and `publicDns` say whether Cloudflare carries the internet's traffic and serves the public zone.
The private path (the LAN to `envoy-internal`) always exists. The gateways (and, in a stack
without the Ainur, the LAN resolver for the internal zone) take fixed addresses in the
load-balancer pool, so DNS can name them before Cilium hands them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from stacks.errors import Problem, UnsetSecret
from stacks.model import AddressRange, Cloudflare, Edge, Network
from stacks.reach import private_tld
from stacks.special_names import special_use

EDGE = "iluvatar:edge"
# Each edge address: its stack key under edge.addresses, and its place from the pool's top.
ADDRESS_KEYS = {"envoy-external": ("envoyExternal", 0), "envoy-internal": ("envoyInternal", 1), "resolver": ("resolver", 2)}
TOKEN = "iluvatar:cloudflareApiToken"  # noqa: S105 - the config key, not a token


def edge_addresses(pool: AddressRange, edge: Edge) -> dict[str, IPv4Address]:
    """envoy-external, envoy-internal and the resolver: the stack's address, else the pool's last,
    the one before, and the one before that (the seed homelab's .239 and .238)."""
    set_ = {"envoy-external": edge.addresses.envoy_external, "envoy-internal": edge.addresses.envoy_internal, "resolver": edge.addresses.resolver}
    return {name: given if given is not None else pool.end - ADDRESS_KEYS[name][1] for name, given in set_.items()}


def _why(edge: Edge, cloudflare_set: bool) -> str:
    if edge.dns(cloudflare_set) == "cloudflare":
        return f"Cloudflare is on ({EDGE}.publicDns is cloudflare)"
    return f"Cloudflare is on ({EDGE}.publicIngress is cloudflare-tunnel)"


def edge_problems(
    edge: Edge,
    network: Network | None,
    cloudflare: Cloudflare | None,
    cloudflare_set: bool,
    token_set: bool,
    has_ainur: bool,
    taken: Mapping[IPv4Address, str],
    has_apps: bool = True,
) -> list[Problem]:
    """The modes agree with each other and with what Cloudflare needs; the edge's addresses are
    usable. `taken` maps the LAN's static addresses (machines, VIPs) to what holds them."""
    out: list[Problem] = []
    ingress, dns = edge.ingress(cloudflare_set), edge.dns(cloudflare_set)
    if ingress == "cloudflare-tunnel" and dns != "cloudflare":
        out.append(
            Problem(
                f"{EDGE}.publicIngress",
                "cloudflare-tunnel needs publicDns: cloudflare: the tunnel's hosts are proxied records in the Cloudflare zone",
            )
        )
    if ingress == "cloudflare-tunnel" or dns == "cloudflare":
        why = _why(edge, cloudflare_set)
        if network is not None and network.external_domain is None:
            out.append(Problem("iluvatar:network.externalDomain", f"is required when {why}: it names the Cloudflare zone"))
        elif network is not None and network.external_domain is not None and network.external_domain != network.domain:
            out += _private_zone(network.external_domain, why)  # the zone that is network.domain is said once, below
        if not cloudflare_set:
            out.append(
                Problem("iluvatar:cloudflare", f"is required when {why}: set accountId, the Cloudflare account that holds the zone and the tunnel")
            )
        if not token_set:
            out.append(UnsetSecret(TOKEN, f"is required when {why}; run `pulumi config set --secret {TOKEN} <value>`", (TOKEN,)))
    if dns == "cloudflare" and edge.acme_email is None:
        out.append(
            Problem(
                f"{EDGE}.acmeEmail",
                f"is required when {EDGE}.publicDns is cloudflare: Let's Encrypt registers the public certificate's account with it",
            )
        )
    if network is not None:
        if network.external_domain is not None and network.external_domain == network.domain:
            out.append(
                Problem("iluvatar:network.externalDomain", f"{network.external_domain} is also network.domain; the public zone must be another")
            )
        out += _addresses(edge, network, has_ainur, has_apps, taken)
    return out


def _private_zone(zone: str, why: str) -> list[Problem]:
    """The public zone under a private-use suffix (.home.arpa, .internal, .lan, .local, ...: stacks.reach.private_tld, the
    list Headscale's URL is checked against): Cloudflare adds a zone only for a registered domain, and Let's Encrypt
    issues only for a name under a public suffix (Boulder's policy refuses the rest as rejectedIdentifier), so neither the
    tunnel's records nor the wildcard certificate of DNS-01 would ever exist."""
    suffix = private_tld(zone)
    if suffix is None or special_use(zone) is not None:
        return []  # a special-use zone is refused wherever it is written (stacks.special_names)
    return [
        Problem(
            "iluvatar:network.externalDomain",
            f"{zone} ends in .{suffix}, a private name no public resolver answers and Let's Encrypt does not certify: {why}, "
            "and Cloudflare hosts only a registered domain's zone, so the external apps' records, the tunnel's hosts and the "
            "public certificate would never exist; write a domain you registered (e.g. example.com), or turn Cloudflare off",
        )
    ]


def resolver_needed(has_ainur: bool, has_apps: bool) -> bool:
    """The LAN resolver exists without the Ainur, for the app hosts (and the internal zone beside them)."""
    return not has_ainur and has_apps


def _addresses(edge: Edge, network: Network, has_ainur: bool, has_apps: bool, taken: Mapping[IPv4Address, str]) -> list[Problem]:
    out: list[Problem] = []
    pool = network.load_balancer_pool
    if pool.start > pool.end:
        return out  # the pool's own rule reports it
    addresses = edge_addresses(pool, edge)
    if has_ainur:
        if edge.addresses.resolver is not None:
            out.append(
                Problem(f"{EDGE}.addresses.resolver", f"{edge.addresses.resolver}: the Ainur serve the LAN's DNS (at ainur.serviceIp); remove it")
            )
        del addresses["resolver"]
    elif not resolver_needed(has_ainur, has_apps):
        del addresses["resolver"]  # no app to resolve: no resolver, whatever the stack sets
    elif edge.addresses.resolver is None and pool.size() < 3:
        out.append(
            Problem(
                "iluvatar:network.loadBalancerPool",
                f"{pool} has {pool.size()} addresses; without the Ainur the two Envoy gateways and the LAN resolver take its top three",
            )
        )
    given = {"envoy-external": edge.addresses.envoy_external, "envoy-internal": edge.addresses.envoy_internal, "resolver": edge.addresses.resolver}
    seen: dict[IPv4Address, str] = {}
    # Defaults first, so a clash is reported at the key the user wrote.
    for name, ip in sorted(addresses.items(), key=lambda item: given[item[0]] is not None):
        path = f"{EDGE}.addresses.{ADDRESS_KEYS[name][0]}"
        if given[name] is None and ip not in pool:
            continue  # a default outside a too-small pool: the pool's rule says so
        if ip not in pool:
            out.append(Problem(path, f"{ip} is outside network.loadBalancerPool {pool}, so Cilium cannot give it to {name}"))
        # A machine or VIP inside the pool is refused on its own; a default address is in the pool.
        if ip in taken and given[name] is not None:
            out.append(Problem(path, f"{ip} is {taken[ip]}; {name} needs an address of its own"))
        if ip in seen:
            out.append(Problem(path, f"{ip} is also {seen[ip]}'s address"))
        seen.setdefault(ip, name)
        if name == "resolver" and ip in network.dns:
            k = network.dns.index(ip)
            out.append(
                Problem(f"iluvatar:network.dns[{k}]", f"{ip} is the LAN resolver's address; it forwards to network.dns, so it must be another server")
            )
    return out
