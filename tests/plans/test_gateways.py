"""Gateways plan: exact objects, checked against Envoy Gateway's chart and CRDs at the version the program installs.

Envoy Gateway 1.9.0 bundles Gateway API v1.6.1 (experimental channel): the Gateway API schemas
come from the envoy-gateway chart's CRDs, not the gateway-api module (tools.upstream).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import yaml

from plans import gateways
from stacks import StackConfig, load_stack_file
from tests.edit import HOMELAB, RK1
from tools import upstream

SOURCE = ("envoy-gateway", gateways.VERSION)


@functools.cache
def _stack(path: Any) -> StackConfig:
    return load_stack_file(path)


def _errors(manifest: dict[str, Any]) -> list[str]:
    validator = upstream.crd_validator(manifest["apiVersion"], manifest["kind"], source=SOURCE[0], version=SOURCE[1])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]


def test_envoy_external_is_pinned_to_its_pool_address() -> None:
    assert gateways.gateway(_stack(HOMELAB), "envoy-external") == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": "envoy-external",
            "namespace": "networking",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
        },
        "spec": {
            "gatewayClassName": "envoy",
            "infrastructure": {"annotations": {"lbipam.cilium.io/ips": "192.168.0.239"}},
            "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Same"}}},
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                    "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": "wildcard-external-tls"}]},
                },
            ],
        },
    }


def test_envoy_internal_serves_both_zones_certificates() -> None:
    internal = gateways.gateway(_stack(HOMELAB), "envoy-internal")
    assert internal["spec"]["infrastructure"] == {"annotations": {"lbipam.cilium.io/ips": "192.168.0.238"}}
    assert [r["name"] for r in internal["spec"]["listeners"][1]["tls"]["certificateRefs"]] == ["wildcard-internal-tls", "wildcard-external-tls"]
    rk1 = gateways.gateway(_stack(RK1), "envoy-internal")
    assert [r["name"] for r in rk1["spec"]["listeners"][1]["tls"]["certificateRefs"]] == ["wildcard-internal-tls"]


def test_routes_one_per_app_on_its_audiences_gateway() -> None:
    stack = _stack(HOMELAB)
    routes = {m["metadata"]["name"]: m for m in gateways.manifests(stack) if m["kind"] == "HTTPRoute"}
    # Grafana and Headlamp are the homelab registry's apps too (iluvatar:monitoring and iluvatar:identity name them).
    assert sorted(routes) == ["blog", "grafana", "headlamp", "home-assistant", "https-redirect", "jellyfin"]
    assert routes["grafana"]["spec"]["rules"] == [{"backendRefs": [{"name": "grafana", "port": 3000}]}]
    assert routes["blog"] == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "blog",
            "namespace": "selfhosted",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", "iluvatar/app": "blog"},
        },
        "spec": {
            "parentRefs": [{"name": "envoy-external", "namespace": "networking", "sectionName": "https"}],
            "hostnames": ["www.example.com"],
            "rules": [{"backendRefs": [{"name": "ghost", "port": 2368}]}],
        },
    }
    assert routes["home-assistant"]["spec"]["parentRefs"] == [{"name": "envoy-internal", "namespace": "networking", "sectionName": "https"}]
    assert routes["home-assistant"]["spec"]["rules"] == [{"backendRefs": [{"name": "home-assistant", "port": 8123}]}]
    assert routes["https-redirect"]["spec"] == {
        "parentRefs": [
            {"name": "envoy-external", "namespace": "networking", "sectionName": "http"},
            {"name": "envoy-internal", "namespace": "networking", "sectionName": "http"},
        ],
        "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
    }


def test_the_class_names_its_envoy_proxy() -> None:
    assert gateways.gateway_class()["spec"] == {
        "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
        "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": "envoy", "namespace": "envoy-gateway-system"},
    }
    assert gateways.envoy_proxy()["spec"] == {
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                "envoyDeployment": {"replicas": 2},
                "envoyService": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "externalTrafficPolicy": "Cluster"},
            },
        }
    }


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_every_object_validates_against_its_crd_at_the_charts_version(path: Any) -> None:
    manifests = gateways.manifests(_stack(path))
    assert {m["kind"] for m in manifests} == {"EnvoyProxy", "GatewayClass", "Gateway", "HTTPRoute"}
    for manifest in manifests:
        assert _errors(manifest) == [], manifest


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_every_object_passes_kubeconform(path: Any) -> None:
    stack = _stack(path)
    assert upstream.kubeconform(gateways.manifests(stack), stack.arda.kubernetes_version, crds=[SOURCE]) == []


def test_the_crd_check_can_fail() -> None:
    gateway = gateways.gateway(_stack(HOMELAB), "envoy-internal")
    gateway["spec"]["listeners"][1]["port"] = 0
    gateway["spec"]["addresses"] = "192.168.0.238"
    assert _errors(gateway) == [
        "spec/addresses: '192.168.0.238' is not of type 'array'",
        "spec/listeners/1/port: 0 is less than the minimum of 1",
    ]


@functools.cache
def _rendered(path: Any) -> tuple[dict[str, Any], ...]:
    stack = _stack(path)
    return tuple(
        upstream.helm_template(
            upstream.chart("gateway-helm", gateways.VERSION),
            gateways.helm_values(stack),
            release=gateways.RELEASE,
            namespace="envoy-gateway-system",
            kube_version=stack.arda.kubernetes_version,
        )
    )


def test_the_chart_renders_gateway_namespace_mode_with_the_programs_values() -> None:
    objects = _rendered(HOMELAB)
    [config] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "envoy-gateway-config"]
    eg = yaml.safe_load(config["data"]["envoy-gateway.yaml"])
    assert (eg["provider"]["type"], eg["provider"]["kubernetes"]["deploy"]) == ("Kubernetes", {"type": "GatewayNamespace"})
    assert eg["gateway"] == {"controllerName": gateways.CONTROLLER_NAME}
    # GatewayNamespace mode needs the controller to create proxies in any namespace and review their tokens.
    [role] = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "eg-gateway-helm-cluster-infra-manager"]
    assert {"tokenreviews"} <= {r for rule in role["rules"] for r in rule.get("resources", [])}
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"} >= {
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "envoyproxies.gateway.envoyproxy.io",
    }


def test_the_default_values_do_not_set_gateway_namespace_mode() -> None:
    """Guards the test above: without the program's values the chart renders no cluster infra manager."""
    stack = _stack(HOMELAB)
    objects = upstream.helm_template(
        upstream.chart("gateway-helm", gateways.VERSION),
        {},
        release="eg",
        namespace="envoy-gateway-system",
        kube_version=stack.arda.kubernetes_version,
    )
    assert not [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "eg-gateway-helm-cluster-infra-manager"]


def test_every_rendered_object_passes_kubeconform() -> None:
    stack = _stack(HOMELAB)
    assert upstream.kubeconform(_rendered(HOMELAB), stack.arda.kubernetes_version, crds=[SOURCE]) == []


def test_the_class_the_redirect_and_the_controllers_values_whole() -> None:
    managed = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
    assert gateways.gateway_class()["metadata"] == {"name": "envoy", "labels": managed}
    assert gateways.envoy_proxy()["metadata"] == {"name": "envoy", "namespace": "envoy-gateway-system", "labels": managed}
    assert gateways.redirect_route(load_stack_file(HOMELAB)) == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "https-redirect", "namespace": "networking", "labels": managed},
        "spec": {
            "parentRefs": [
                {"name": "envoy-external", "namespace": "networking", "sectionName": "http"},
                {"name": "envoy-internal", "namespace": "networking", "sectionName": "http"},
            ],
            "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
        },
    }
    # One proxy Deployment per Gateway, in the Gateway's own namespace (envoy-external's Service name the tunnel targets).
    assert gateways.helm_values(load_stack_file(HOMELAB)) == {
        "config": {"envoyGateway": {"provider": {"type": "Kubernetes", "kubernetes": {"deploy": {"type": "GatewayNamespace"}}}}}
    }
