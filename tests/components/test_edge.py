"""The edge under the mock runtime: the graph, the public path only when on, secrets, and day-2 app changes."""

from __future__ import annotations

import base64
import contextlib
import functools
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from iluvatar import simulate as sim_module
from iluvatar.render import render_files
from iluvatar.simulate import SecretValue, Simulation, simulate
from stacks import read_stack_file
from tests.edit import RK1, ciphertext, edit, homelab_doc, write_stack
from tests.sims import simulated

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
TUNNEL = "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared"


@functools.cache
def _rk1() -> Simulation:
    return simulated(RK1)


def _with_apps(tmp_path: Path, apps: list[dict[str, Any]], **changes: Any) -> Simulation:
    doc = edit(homelab_doc(), {"iluvatar:apps": apps, **changes})
    return simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))


def _names(sim: Simulation, parent: str) -> list[str]:
    return sorted(r.name for r in sim.children(sim.named()[parent]))


def test_graph(homelab: Simulation) -> None:
    regs = homelab.named()
    assert regs["edge"].type == "iluvatar:edge:Edge"
    assert regs["edge"].parent.endswith("::iluvatar-homelab")
    categories = ["ai", "banking", "home-automation", "media", "monitoring", "networking", "security", "selfhosted", "system"]
    assert _names(homelab, "edge") == sorted(
        ["edge-certificates", "edge-cloudflare", "edge-gateways", "edge-ports"]
        + [f"edge-namespace-{c}" for c in [*categories, "cert-manager", "envoy-gateway-system"]]
    )
    # The raw-port apps: each one's Service at its own address and its policy, after a gate that sees Cilium's CRD.
    assert _names(homelab, "edge-ports") == [
        "edge-ports-ciliumnetworkpolicy-home-automation-mosquitto-lan",
        "edge-ports-ciliumnetworkpolicy-selfhosted-minecraft-lan",
        "edge-ports-gate-cilium",
        "edge-ports-service-minecraft-lan",
        "edge-ports-service-mosquitto-lan",
    ]
    assert regs["edge-ports-service-mosquitto-lan"].inputs["metadata"]["annotations"] == {"lbipam.cilium.io/ips": "192.168.0.221"}
    assert regs["edge-ports-gate-cilium"].urn in regs["edge-ports-ciliumnetworkpolicy-selfhosted-minecraft-lan"].dependencies
    # The address is announced once its Service exists: each Service waits for its own policy, so no moment leaves the
    # pods open to any source.
    for namespace, app in (("selfhosted", "minecraft"), ("home-automation", "mosquitto")):
        assert regs[f"edge-ports-ciliumnetworkpolicy-{namespace}-{app}-lan"].urn in regs[f"edge-ports-service-{app}-lan"].dependencies
    assert _names(homelab, "edge-cloudflare") == [
        "edge-cloudflare-cloudflared-token",
        "edge-cloudflare-deployment-cloudflared",
        "edge-cloudflare-networkpolicy-cloudflared",
        "edge-cloudflare-provider",
        "edge-cloudflare-random",
        "edge-cloudflare-record-blog",
        "edge-cloudflare-tunnel",
        "edge-cloudflare-tunnel-config",
        "edge-cloudflare-tunnel-secret",
    ]
    assert _names(homelab, "edge-gateways") == [
        "edge-gateways-envoy-gateway",
        "edge-gateways-envoyproxy-envoy-gateway-system-envoy",
        "edge-gateways-gateway-networking-envoy-external",
        "edge-gateways-gateway-networking-envoy-internal",
        "edge-gateways-gatewayclass-envoy",
        "edge-gateways-httproute-home-automation-home-assistant",
        "edge-gateways-httproute-media-jellyfin",
        # Grafana (iluvatar:monitoring) and Headlamp (iluvatar:identity) are apps of the registry: routes like any other.
        "edge-gateways-httproute-monitoring-grafana",
        "edge-gateways-httproute-networking-https-redirect",
        "edge-gateways-httproute-selfhosted-blog",
        "edge-gateways-httproute-system-headlamp",
        "edge-gateways-release-node-ports",
    ]
    # Once Envoy Gateway runs and the EnvoyProxy and every Gateway exist, the step that takes back any NodePort a
    # gateway's proxy Service still holds (plans.gateways.node_port_release; tests/kube/test_gateway_node_ports.py).
    release = regs["edge-gateways-release-node-ports"]
    command = ".venv/bin/iluvatar upgrader release-node-ports --gateways networking/envoy-external,networking/envoy-internal --timeout 10m"
    assert release.inputs["create"] == release.inputs["update"] == command
    assert {
        regs[n].urn
        for n in (
            "edge-gateways-envoy-gateway",
            "edge-gateways-envoyproxy-envoy-gateway-system-envoy",
            "edge-gateways-gateway-networking-envoy-external",
            "edge-gateways-gateway-networking-envoy-internal",
        )
    } <= set(release.dependencies)
    assert release.provider.startswith(regs["arda-command"].urn + "::")
    assert isinstance(release.inputs["stdin"], SecretValue) and set(json.loads(release.inputs["stdin"].value)) == {"kubeconfig"}


def test_the_edge_comes_after_every_arda_machine_is_ready_on_ardas_provider(homelab: Simulation) -> None:
    regs = homelab.named()
    # Its namespaces wait for Arda's nodes gate (after Cilium), and everything of the edge's is in one of them.
    for namespace in (r for r in homelab.registrations if r.name.startswith("edge-namespace-")):
        assert namespace.dependencies == (regs["arda-gate-nodes"].urn,), namespace.name
    arda = regs["arda-kubernetes"].urn
    for r in homelab.registrations:
        if r.type.startswith("kubernetes:") and r.custom and r.name.startswith("edge-"):
            assert r.provider.startswith(arda + "::"), r.name


def test_each_external_app_has_exactly_one_record_and_one_route_internal_apps_no_record(tmp_path: Path) -> None:
    apps = [
        *homelab_doc()["config"]["iluvatar:apps"],
        {"name": "status", "category": "monitoring", "host": "status.example.com", "audience": "external", "service": {"port": 3001}},
        {"name": "photos", "category": "media", "host": "photos.example.com", "service": {"port": 2283}},
        {"name": "site", "category": "selfhosted", "host": "example.com", "audience": "external", "service": {"port": 80}},
    ]
    sim = _with_apps(tmp_path, apps)
    records = sim.by_type(RECORD)
    routes = [r for r in sim.by_type(ROUTE) if r.name.startswith("edge-") and r.inputs["metadata"]["name"] != "https-redirect"]
    for app in apps:
        host = app["host"]
        mine = [r for r in records if r.inputs["name"] == host]
        assert len(mine) == (1 if app.get("audience") == "external" else 0), host
        # An app with raw ports has its own address and no route (plans.ports).
        assert len([r for r in routes if r.inputs["spec"]["hostnames"] == [host]]) == (0 if "ports" in app else 1), host
    assert len(records) == 3 and len(routes) == len([a for a in apps if "ports" not in a])


def test_every_public_record_is_a_proxied_cname_to_the_tunnel_and_nothing_private(homelab: Simulation) -> None:
    [tunnel] = homelab.by_type(TUNNEL)
    tunnel_id = homelab.outputs["tunnelId"]
    [zone_call] = [args for token, args in homelab.invocations if token == "cloudflare:index/getZone:getZone"]
    assert zone_call["filter"] == {"name": "example.com", "match": "all"}
    internal_hosts = {a["host"] for a in homelab_doc()["config"]["iluvatar:apps"] if a.get("audience") != "external"}
    records = homelab.by_type(RECORD)
    assert [r.inputs["name"] for r in records] == ["www.example.com"]
    for record in records:
        inputs = record.inputs
        assert (inputs["type"], inputs["proxied"], inputs["ttl"], inputs["content"]) == ("CNAME", True, 1, f"{tunnel_id}.cfargotunnel.com")
        assert inputs["zoneId"] == sim_module._zone({"filter": {"name": "example.com"}})["id"], "the zone the lookup found"
        assert record.provider.startswith(homelab.named()["edge-cloudflare-provider"].urn)
        for value in inputs.values():
            with contextlib.suppress(ValueError):
                assert ipaddress.ip_address(str(value)).is_global, (record.name, value)
        assert inputs["name"] not in internal_hosts and not inputs["name"].endswith(".iluvatar.home.arpa")
    assert tunnel.inputs["configSrc"] == "cloudflare" and tunnel.inputs["accountId"] == "0123456789abcdef0123456789abcdef"


def test_with_cloudflare_off_nothing_of_cloudflare_is_registered_or_called() -> None:
    sim = _rk1()
    assert [r.name for r in sim.registrations if r.type.startswith(("cloudflare:", "pulumi:providers:cloudflare"))] == []
    assert [t for t, _ in sim.invocations if t.startswith("cloudflare:")] == []
    assert "tunnelId" not in sim.outputs
    assert "envoy-external" not in sim.outputs["edge"]["gateways"]
    assert _names(sim, "edge-resolver") == [
        "edge-resolver-configmap-lan-resolver",
        "edge-resolver-deployment-lan-resolver",
        "edge-resolver-service-lan-resolver",
    ]


def test_cloudflare_dns_without_the_tunnel_registers_only_the_token_for_lets_encrypt(tmp_path: Path) -> None:
    apps = [a for a in homelab_doc()["config"]["iluvatar:apps"] if a.get("audience") != "external"]
    sim = _with_apps(tmp_path, apps, **{"iluvatar:edge.publicIngress": "none"})
    assert [r.type for r in sim.registrations if r.type.startswith(("cloudflare:", "pulumi:providers:cloudflare"))] == []
    token = sim.named()["edge-certificates-cloudflare-token"]
    assert isinstance(token.inputs["stringData"], SecretValue)


def test_secrets_stay_secret(homelab: Simulation) -> None:
    regs = homelab.named()
    assert isinstance(regs["edge-cloudflare-tunnel"].inputs["tunnelSecret"], SecretValue)
    assert regs["edge-cloudflare-tunnel-secret"].inputs["length"] == 32
    assert isinstance(regs["edge-cloudflare-cloudflared-token"].inputs["stringData"], SecretValue)
    assert isinstance(regs["edge-certificates-ca-secret"].inputs["stringData"], SecretValue)
    assert isinstance(regs["edge-certificates-cloudflare-token"].inputs["stringData"], SecretValue)
    assert isinstance(regs["edge-cloudflare-provider"].inputs["apiToken"], SecretValue)
    # The CA's certificate is public (users install it); the export must not be a secret, and no other edge output is.
    assert homelab.outputs["caCertificate"] == sim_module.MOCK_CA_PEM
    assert not isinstance(homelab.outputs["edge"], SecretValue)


def test_the_local_ca_is_generated_once_and_protected(homelab: Simulation) -> None:
    regs = homelab.named()
    key, cert = regs["edge-certificates-ca-key"], regs["edge-certificates-ca-cert"]
    assert (key.protect, cert.protect) == (True, True)
    assert (key.inputs["algorithm"], key.inputs["rsaBits"]) == ("RSA", 4096)
    assert cert.inputs["isCaCertificate"] is True
    assert cert.inputs["validityPeriodHours"] == 87600
    assert cert.inputs["allowedUses"] == ["cert_signing", "crl_signing", "digital_signature"]
    assert cert.inputs["subject"] == {"commonName": "Iluvatar arda root CA", "organization": "Iluvatar"}
    assert key.provider.startswith(regs["edge-certificates-tls"].urn + "::")


def test_nothing_secret_appears_in_any_rendered_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tunnel secret's canary is 32 bytes in base64, as the provider gives them: the age identity of the
    # backups (components.data) is made of the same RandomBytes outputs.
    tunnel = base64.b64encode(b"CANARY-TUNNEL-SECRET-7c1e".ljust(32, b"!")).decode()
    canaries = {"tunnel": tunnel, "key": "CANARY-CA-KEY-0b5d", "token": "CANARY-TUNNEL-TOKEN-93fa"}
    monkeypatch.setitem(sim_module.RESOURCE_STATE, "random:index/randomBytes:RandomBytes", lambda a: {"base64": canaries["tunnel"], "hex": "00"})
    monkeypatch.setitem(sim_module.RESOURCE_STATE, "tls:index/privateKey:PrivateKey", lambda a: {"privateKeyPem": canaries["key"]})
    token_call = "cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken"
    monkeypatch.setitem(sim_module.INVOKES, token_call, lambda a: {**a, "token": canaries["token"]})
    doc = edit(homelab_doc(), {"iluvatar:cloudflareApiToken": {"secure": ciphertext("CANARY-CF-CIPHERTEXT")}})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    # The canaries must flow through the program, or their absence below proves nothing.
    assert regs["edge-cloudflare-tunnel"].inputs["tunnelSecret"].value == canaries["tunnel"]
    assert regs["edge-certificates-ca-secret"].inputs["stringData"].value["tls.key"] == canaries["key"]
    assert regs["edge-cloudflare-cloudflared-token"].inputs["stringData"].value == {"token": canaries["token"]}
    for rel, content in render_files(sim).items():
        for canary in (*canaries.values(), ciphertext("CANARY-CF-CIPHERTEXT")):
            assert canary not in content, f"{canary} in clear in {rel}"
    for key, value in sim.outputs.items():
        if not isinstance(value, SecretValue):
            assert not any(c in repr(value) for c in canaries.values()), key


def _inputs(sim: Simulation) -> dict[str, Any]:
    return {r.name: (r.type, r.inputs) for r in sim.registrations}


def test_adding_an_app_changes_only_its_resources_and_the_aggregates_that_list_apps(homelab: Simulation, tmp_path: Path) -> None:
    apps = [
        *homelab_doc()["config"]["iluvatar:apps"],
        {"name": "status", "category": "monitoring", "host": "status.example.com", "audience": "external", "service": {"port": 3001}},
    ]
    after = _with_apps(tmp_path, apps)
    before_inputs, after_inputs = _inputs(homelab), _inputs(after)
    assert sorted(set(after_inputs) - set(before_inputs)) == ["edge-cloudflare-record-status", "edge-gateways-httproute-monitoring-status"]
    assert set(before_inputs) - set(after_inputs) == set()
    changed = sorted(n for n in before_inputs if before_inputs[n] != after_inputs[n])
    # The tunnel's ingress rules, and the Ainur's DNS zone: the records in the netboot ConfigMap, which the running dnsmasq
    # reads anew (plans.netboot.records). Not the netboot pod's template: no replacement of dnsmasq (the LAN's DHCP and
    # DNS), and so no clearance before one (plans.netboot.cache.clearance_script).
    assert changed == ["edge-cloudflare-tunnel-config", "netboot-configmap-netboot"]


def test_adding_an_internal_app_touches_no_cloudflare_resource(homelab: Simulation, tmp_path: Path) -> None:
    apps = [
        *homelab_doc()["config"]["iluvatar:apps"],
        {"name": "wiki", "category": "selfhosted", "host": "wiki.iluvatar.home.arpa", "service": {"port": 80}},
    ]
    after = _with_apps(tmp_path, apps)
    before_inputs, after_inputs = _inputs(homelab), _inputs(after)
    assert sorted(set(after_inputs) - set(before_inputs)) == ["edge-gateways-httproute-selfhosted-wiki"]
    assert sorted(n for n in before_inputs if before_inputs[n] != after_inputs[n]) == ["netboot-configmap-netboot"]


def test_without_the_ainur_an_app_changes_the_lan_resolvers_map(tmp_path: Path) -> None:
    doc = read_stack_file(RK1)
    raw: dict[str, Any] = {"config": {k: v for k, v in doc.config.items()}}
    raw["config"]["iluvatar:apps"] = [
        *raw["config"]["iluvatar:apps"],
        {"name": "wiki", "category": "selfhosted", "host": "wiki.turing.home.arpa", "service": {"port": 80}},
    ]
    after = simulate(read_stack_file(write_stack(tmp_path, raw, stack="rk1")))
    before_inputs, after_inputs = _inputs(_rk1()), _inputs(after)
    assert sorted(set(after_inputs) - set(before_inputs)) == ["edge-gateways-httproute-selfhosted-wiki"]
    assert sorted(n for n in before_inputs if before_inputs[n] != after_inputs[n]) == ["edge-resolver-configmap-lan-resolver"]
    hosts = after.named()["edge-resolver-configmap-lan-resolver"].inputs["data"]["lan.hosts"]
    assert "10.10.0.218 wiki.turing.home.arpa" in hosts.splitlines()
