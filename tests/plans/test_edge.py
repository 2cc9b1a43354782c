"""The edge plan: namespaces and their Pod Security levels, and split DNS (LAN and public) from the app registry."""

from __future__ import annotations

import functools
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plans import edge, netboot
from stacks import StackConfig, identity, load_stack_file, parse_stack, read_stack_file
from stacks.categories import known_categories
from tests.edit import HOMELAB, RK1, with_apps
from tools import upstream


@functools.cache
def _stack(path: Any) -> StackConfig:
    return load_stack_file(path)


def _with_apps(apps: list[dict[str, Any]], path: Any = HOMELAB) -> StackConfig:
    sf = read_stack_file(path)
    return parse_stack(with_apps(dict(sf.config), apps), sf.secret_keys)


def test_one_namespace_per_category_then_the_controllers() -> None:
    spaces = edge.namespaces(_stack(HOMELAB))
    assert list(spaces) == [*known_categories(), "cert-manager", "envoy-gateway-system"]
    assert spaces["media"] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "media",
            "labels": {
                "app.kubernetes.io/managed-by": "pulumi",
                "app.kubernetes.io/part-of": "iluvatar",
                "iluvatar.dev/category": "media",
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
            # Pulumi's, never Argo CD's to prune or delete with an app.
            "annotations": {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false"},
        },
    }
    levels = {name: ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for name, ns in spaces.items()}
    assert levels == {
        "ai": "baseline",
        "banking": "baseline",
        "home-automation": "privileged",
        "media": "baseline",
        "monitoring": "privileged",
        "networking": "baseline",
        "security": "baseline",
        "selfhosted": "baseline",
        "system": "privileged",
        "cert-manager": "restricted",
        "envoy-gateway-system": "restricted",
    }


def test_an_app_raises_its_categorys_level_never_lowers_it() -> None:
    apps = [
        {"name": "vpn", "category": "networking", "host": "vpn.iluvatar.home.arpa", "service": {"port": 443}, "podSecurity": "privileged"},
        {"name": "mqtt", "category": "home-automation", "host": "mqtt.iluvatar.home.arpa", "service": {"port": 8883}, "podSecurity": "restricted"},
        {"name": "wiki", "category": "selfhosted", "host": "wiki.iluvatar.home.arpa", "service": {"port": 80}, "podSecurity": "restricted"},
    ]
    stack = _with_apps(apps)
    assert [edge.pod_security(stack, c) for c in ("networking", "home-automation", "selfhosted")] == ["privileged", "privileged", "baseline"]


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_namespaces_pass_kubeconform(path: Any) -> None:
    stack = _stack(path)
    assert upstream.kubeconform(list(edge.namespaces(stack).values()), stack.arda.kubernetes_version) == []


def test_lan_records_send_each_host_to_its_audiences_gateway() -> None:
    # Sorted by host; Grafana and Headlamp are the registry's apps like any other (internal); the raw-port apps'
    # hosts name their own addresses (plans.ports).
    assert edge.lan_records(_stack(HOMELAB)) == [
        ("grafana.iluvatar.home.arpa", IPv4Address("192.168.0.238")),
        ("hass.iluvatar.home.arpa", IPv4Address("192.168.0.238")),
        ("headlamp.iluvatar.home.arpa", IPv4Address("192.168.0.238")),
        ("jellyfin.example.com", IPv4Address("192.168.0.238")),
        ("minecraft.iluvatar.home.arpa", IPv4Address("192.168.0.220")),
        ("mqtt.iluvatar.home.arpa", IPv4Address("192.168.0.221")),
        ("www.example.com", IPv4Address("192.168.0.239")),
    ]


def test_the_ainur_zone_answers_app_hosts_of_both_zones() -> None:
    stack = _stack(HOMELAB)
    hosts = netboot.hosts_file(stack, edge.lan_records(stack))
    assert [line for line in hosts.splitlines() if "example.com" in line or "hass." in line] == [
        "192.168.0.238 hass.iluvatar.home.arpa",
        "192.168.0.238 jellyfin.example.com",
        "192.168.0.239 www.example.com",
    ]
    assert "local=/example.com/" not in netboot.dnsmasq_conf(stack), "the rest of the public zone still resolves upstream"


def test_the_lan_resolver_answers_the_zone_and_the_app_hosts() -> None:
    stack = _stack(RK1)
    assert edge.resolver_records(stack) == [
        ("envoy-internal.turing.home.arpa", IPv4Address("10.10.0.218")),
        ("grafana.turing.home.arpa", IPv4Address("10.10.0.218")),
        ("home.turing.home.arpa", IPv4Address("10.10.0.218")),
        ("talos-1.turing.home.arpa", IPv4Address("10.10.0.11")),
        ("talos-2.turing.home.arpa", IPv4Address("10.10.0.12")),
        ("talos-3.turing.home.arpa", IPv4Address("10.10.0.13")),
        ("talos-4.turing.home.arpa", IPv4Address("10.10.0.14")),
        ("turing.turing.home.arpa", IPv4Address("10.10.0.10")),
    ]
    assert edge.forwarded_names(stack) == ["turing.home.arpa"]


def test_the_router_forwards_the_zone_and_each_public_zone_app_host() -> None:
    assert edge.forwarded_names(_stack(HOMELAB)) == ["iluvatar.home.arpa", "jellyfin.example.com", "www.example.com"]


def test_public_records_only_external_apps_as_proxied_cnames() -> None:
    assert edge.public_records(_stack(HOMELAB)) == [edge.PublicRecord("blog", "www.example.com", "CNAME", True, 1)]
    assert edge.public_records(_stack(HOMELAB))[0].content("c0ffee") == "c0ffee.cfargotunnel.com"
    assert edge.public_records(_stack(RK1)) == []


def test_the_public_guard_refuses_private_addresses_and_internal_hosts() -> None:
    stack = _stack(HOMELAB)
    edge.check_public(stack, [("www.example.com", "tunnel.cfargotunnel.com"), ("www.example.com", "1.1.1.1")])
    with pytest.raises(edge.PublicDnsError, match=r"^www.example.com would publish 192.168.0.239, a private address$"):
        edge.check_public(stack, [("www.example.com", "192.168.0.239")])
    with pytest.raises(edge.PublicDnsError, match=r"^jellyfin.example.com is not an external app's host; it must never be published$"):
        edge.check_public(stack, [("jellyfin.example.com", "x.cfargotunnel.com")])
    with pytest.raises(edge.PublicDnsError, match=r"^tirion.iluvatar.home.arpa is not an external app's host"):
        edge.check_public(stack, [("tirion.iluvatar.home.arpa", "x.cfargotunnel.com")])
    with pytest.raises(edge.PublicDnsError, match=r"10.0.0.1, a private address$"):
        edge.check_public(stack, [("www.example.com", "10.0.0.1")])


# --- Properties over random registries -------------------------------------------------------------------


@st.composite
def registries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid random app registry for the homelab: unique names and hosts, one label under a zone,
    external apps only in the public zone."""
    count = draw(st.integers(min_value=0, max_value=12))
    labels = draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z"), min_size=count, max_size=count, unique=True))
    apps: list[dict[str, Any]] = []
    for i, label in enumerate(labels):
        audience = draw(st.sampled_from(["internal", "external"]))
        zone = "example.com" if audience == "external" else draw(st.sampled_from(["iluvatar.home.arpa", "example.com"]))
        host = zone if draw(st.integers(0, 20)) == 0 else f"{label}.{zone}"
        apps.append(
            {
                "name": f"app-{i}",
                "category": draw(st.sampled_from(known_categories())),
                "host": host,
                "audience": audience,
                "service": {"port": draw(st.integers(1, 65535))},
            }
        )
    taken = {"taniquetil", "tirion", "alqualonde", "gandalf", "saruman", "manwe", "eonwe", "ilmare", "arda", "ainur", "netboot", "git"}
    taken |= {label for _, label in identity.HOSTS.values()}  # dex, ca, argocd, argocd-ainur: the sign-in's own names
    hosts = [str(a["host"]) for a in apps]
    assume(len(set(hosts)) == len(hosts) and not any(h.split(".")[0] in taken | {"envoy-external", "envoy-internal"} for h in hosts))
    return apps


@given(registries())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_internal_host_or_private_address_is_ever_public(apps: list[dict[str, Any]]) -> None:
    stack = _with_apps(apps)
    external = sorted(a["host"] for a in apps if a["audience"] == "external")
    records = edge.public_records(stack)
    assert sorted(r.name for r in records) == external
    assert all(r.type == "CNAME" and r.proxied and r.ttl == 1 for r in records)
    lan = dict(edge.lan_records(stack))
    assert lan == {a["host"]: IPv4Address("192.168.0.239" if a["audience"] == "external" else "192.168.0.238") for a in apps}
    # The Ainur's zone takes every app host as written, beside the machines' records.
    zone = dict(netboot.dns_records(stack, edge.lan_records(stack)))
    assert {h: zone[h] for h in lan} == lan


def test_a_public_zone_inside_the_internal_domain_is_still_published() -> None:
    """Validation places a host in the longer zone it is under (stacks.apps.zone_of): with network.domain example.com
    and externalDomain pub.example.com, www.pub.example.com is the public zone's. The guard used to call it internal
    and stop the program after validation had accepted the stack."""
    sf = read_stack_file(HOMELAB)
    raw = with_apps(
        dict(sf.config),
        [
            {"name": "blog", "category": "selfhosted", "host": "www.pub.example.com", "audience": "external", "service": {"port": 80}},
            {"name": "wiki", "category": "selfhosted", "host": "wiki.example.com", "service": {"port": 80}},
        ],
    )
    raw["iluvatar:network"] = {**raw["iluvatar:network"], "domain": "example.com", "externalDomain": "pub.example.com"}
    stack = parse_stack(raw, sf.secret_keys)
    assert edge.public_records(stack) == [edge.PublicRecord("blog", "www.pub.example.com", "CNAME", True, 1)]
    with pytest.raises(edge.PublicDnsError, match=r"^wiki.example.com is not an external app's host"):
        edge.check_public(stack, [("wiki.example.com", "x.cfargotunnel.com")])


def test_every_record_is_checked_not_only_the_first() -> None:
    stack = _with_apps(
        [
            {"name": "blog", "category": "selfhosted", "host": "www.example.com", "audience": "external", "service": {"port": 80}},
            {"name": "shop", "category": "selfhosted", "host": "shop.example.com", "audience": "external", "service": {"port": 80}},
        ]
    )
    with pytest.raises(edge.PublicDnsError, match=r"^shop.example.com would publish 192.168.0.5, a private address$"):
        edge.check_public(stack, [("www.example.com", "t.cfargotunnel.com"), ("shop.example.com", "192.168.0.5")])


def test_the_gateways_and_the_controllers_namespaces() -> None:
    assert edge.gateway_names(_stack(HOMELAB)) == ["envoy-external", "envoy-internal"]
    assert edge.gateway_names(_stack(RK1)) == ["envoy-internal"]
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    for name in ("cert-manager", "envoy-gateway-system"):
        assert edge.namespaces(_stack(HOMELAB))[name] == {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", **restricted}},
        }
