"""The app registry (`iluvatar:apps`): every app the edge serves, each written once.

An app names its category (one GitOps folder and one namespace of the same name), its host, its
audience (`internal`: the LAN through `envoy-internal`; `external`: the internet through the
Cloudflare tunnel and `envoy-external`) and its backend Service. Its route, its DNS records, its
certificate coverage and its public exposure all derive from that one entry (plans.edge).

This module holds the registry's rules; the models are `stacks.model.App` and `AppService`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stacks.errors import Problem
from stacks.model import App, Network

APPS = "iluvatar:apps"
_COUNT = {2: "two", 3: "three", 4: "four"}


def app_path(i: int, field: str = "") -> str:
    return f"{APPS}[{i}]" + (f".{field}" if field else "")


def under(host: str, zone: str) -> bool:
    """The host is the zone's apex or a name inside it."""
    return host == zone or host.endswith(f".{zone}")


def zone_of(host: str, network: Network) -> str | None:
    """The zone a host belongs to: the longer of network.domain and network.externalDomain it is under."""
    zones = [z for z in (network.domain, network.external_domain) if z is not None and under(host, z)]
    return max(zones, key=len) if zones else None


def _depth(host: str, zone: str) -> int:
    return 0 if host == zone else host.removesuffix(f".{zone}").count(".") + 1


def app_problems(
    apps: Sequence[tuple[int, App]],
    network: Network | None,
    public_ingress: str,
    categories: Sequence[str],
    zone_names: Mapping[str, str],
) -> list[Problem]:
    """Every problem of the registry: names and hosts once each, hosts in a zone the gateways'
    certificates cover, external apps in the public zone with a way in, known categories.

    `zone_names` maps the internal zone's other names (machines, VIPs, gateways) to what owns them.
    """
    out: list[Problem] = []
    first_name: dict[str, int] = {}
    first_host: dict[str, tuple[int, str]] = {}
    for i, app in apps:
        if app.name in first_name:
            out.append(Problem(app_path(i, "name"), f"{app.name} is already apps[{first_name[app.name]}].name"))
        first_name.setdefault(app.name, i)
        if app.host in first_host:
            j, other = first_host[app.host]
            out.append(Problem(app_path(i, "host"), f"{app.host} is already apps[{j}].host ({other})"))
        else:
            first_host[app.host] = (i, app.name)
        if app.category not in categories:
            out.append(Problem(app_path(i, "category"), f"{app.category} is not a known category (known: {', '.join(categories)})"))
        if app.audience == "external" and public_ingress == "none":
            out.append(
                Problem(
                    app_path(i, "audience"),
                    "external, but iluvatar:edge.publicIngress is none, so nothing carries it from the internet; "
                    "set publicIngress: cloudflare-tunnel or make the app internal",
                )
            )
        if network is not None:
            out += _host(i, app, network, zone_names)
    return out


def _host(i: int, app: App, network: Network, zone_names: Mapping[str, str]) -> list[Problem]:
    path, host, external = app_path(i, "host"), app.host, network.external_domain
    zone = zone_of(host, network)
    if zone is None:
        if external is None:
            return [Problem(path, f"{host} is not under network.domain {network.domain} (and network.externalDomain is not set)")]
        return [Problem(path, f"{host} is under neither network.domain {network.domain} nor network.externalDomain {external}")]
    out = []
    if app.audience == "external" and zone != external:
        if external is None:
            out.append(Problem(app_path(i, "audience"), "external needs network.externalDomain, the public zone its record is published in"))
        else:
            out.append(
                Problem(path, f"{host} is external, so it must be under network.externalDomain {external}; names under {zone} are never published")
            )
    depth = _depth(host, zone)
    if depth > 1:
        parent = host.split(".", depth - 1)[-1]
        out.append(
            Problem(
                path,
                f"{host} is {_COUNT.get(depth, str(depth))} labels below {zone}; the gateways' wildcard certificate *.{zone} "
                f"covers names one label below it, such as {parent}",
            )
        )
    if host in zone_names:
        out.append(Problem(path, f"{host} is already {zone_names[host]} in the internal zone; pick another host"))
    return out
