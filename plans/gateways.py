"""Gateways plan: Envoy Gateway's Helm values and the Gateway API objects, from the app registry.

Envoy Gateway runs its proxies in each Gateway's own namespace (deploy type `GatewayNamespace`), so
`envoy-external`'s proxy Service is `envoy-external.networking.svc`, the name the Cloudflare tunnel
sends to. Each Gateway asks Cilium for its fixed pool address with the `lbipam.cilium.io/ips`
annotation on its infrastructure (Envoy Gateway copies it to the proxy Service; `spec.addresses`
means something else to Envoy Gateway). Port 80 only redirects to https; port 443 serves every
app whose audience names that gateway, with the wildcard certificates (plans.certificates).
"""

from __future__ import annotations

from typing import Any

from plans import bringup, certificates
from plans.edge import ENVOY_GATEWAY_NAMESPACE, GATEWAY_NAMESPACE, MANAGED_BY, gateway_names, gateway_of
from stacks import pins
from stacks.edge import edge_addresses
from stacks.model import App, StackConfig

CHART = "oci://docker.io/envoyproxy/gateway-helm"
# The chart version, also the Envoy Gateway release whose CRDs and translator the tests use.
VERSION = pins.CHARTS["gateway-helm"]
RELEASE = "eg"
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY_CLASS = "envoy"
ENVOY_PROXY = "envoy"
GATEWAY_API = "gateway.networking.k8s.io/v1"
LBIPAM_ANNOTATION = "lbipam.cilium.io/ips"
REDIRECT_ROUTE = "https-redirect"
# Two proxies per gateway: one can restart (a node drain, an upgrade) while the other serves.
PROXY_REPLICAS = 2


def helm_values(stack: StackConfig) -> dict[str, Any]:
    return {"config": {"envoyGateway": {"provider": {"type": "Kubernetes", "kubernetes": {"deploy": {"type": "GatewayNamespace"}}}}}}


def gateway_class() -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "labels": dict(MANAGED_BY)},
        "spec": {
            "controllerName": CONTROLLER_NAME,
            "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": ENVOY_PROXY, "namespace": ENVOY_GATEWAY_NAMESPACE},
        },
    }


def envoy_proxy() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": {"name": ENVOY_PROXY, "namespace": ENVOY_GATEWAY_NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {
                    "envoyDeployment": {"replicas": PROXY_REPLICAS},
                    # No NodePort on the proxies' Service (plans.ports.service says why Arda's Services need none):
                    # EnvoyProxy's envoyService takes the Service's allocateLoadBalancerNodePorts (Envoy Gateway v1.9.0
                    # api/v1alpha1/envoyproxy_types.go:567, shared_types.go:350-356) and copies it to the Service it
                    # applies (internal/infrastructure/kubernetes/resource/resource.go:36-38).
                    # externalTrafficPolicy Cluster, as the apps' Services (plans.ports.service says why): Envoy Gateway
                    # makes it Local when unset (v1.9.0 resource.go:28-30, kubernetes_helpers.go:98-99), and Cilium's L2
                    # announcements elect the announcing machine without looking where the proxies run, so Local drops
                    # the LAN's traffic whenever the lease lands on a machine with no proxy (Cilium v1.18.4
                    # Documentation/network/l2-announcements.rst:92-93). The field: shared_types.go:375-380.
                    "envoyService": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "externalTrafficPolicy": "Cluster"},
                },
            }
        },
    }


def node_port_release(stack: StackConfig) -> bringup.Step:
    """The step after the gateways: each one's proxy Service holds no NodePort (stdin: Arda's kubeconfig).

    `allocateLoadBalancerNodePorts: false` (envoy_proxy) allocates none to a Service Envoy Gateway makes now, but one it
    made before keeps the NodePorts it holds: Envoy Gateway applies the Service by server-side apply with no nodePort
    field (v1.9.0 internal/infrastructure/kubernetes/infra_resource.go:427, infra_client.go:28-31; its ports:
    proxy/resource_provider.go:203-208), and an apply never removes a field it does not own. The upgrader's
    `release-node-ports` finds each gateway's Service as Envoy Gateway does in the GatewayNamespace mode it runs in
    (helm_values): in the gateways' namespace only, by the owning-gateway labels and managed-by envoy-gateway
    (predicates.go:752-757,800-803; infra_resource.go:756-792), so a Service of an app namespace with the same labels
    is never waited for nor patched; it waits until Envoy Gateway has applied `allocateLoadBalancerNodePorts: false` to it (before that the API server gives a removed
    NodePort back), and removes each nodePort it holds with a JSON patch, which leaves no field manager of its own on
    the Service: Envoy Gateway's next apply neither conflicts with it nor brings a NodePort back. On a new Arda it only
    waits for the Services. The bound is an operator's: Envoy Gateway runs (its Helm release waited for it) and makes
    each Service within seconds of accepting the Gateway."""
    gateways = ",".join(f"{GATEWAY_NAMESPACE}/{g}" for g in gateway_names(stack))
    return bringup.Step(
        ("release-node-ports", "--gateways", gateways),
        bringup.OPERATOR_GATE_TIMEOUT,
        f"the proxy Services of {gateways.replace(',', ', ')} to hold no NodePort",
    )


def gateway(stack: StackConfig, name: str) -> dict[str, Any]:
    address = edge_addresses(stack.network.load_balancer_pool, stack.edge)[name]
    secrets = certificates.gateway_secrets(stack, name)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "infrastructure": {"annotations": {LBIPAM_ANNOTATION: str(address)}},
            "listeners": [
                # Plain HTTP only redirects: only the redirect route, in this namespace, may attach.
                {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Same"}}},
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                    "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": s} for s in secrets]},
                },
            ],
        },
    }


def redirect_route(stack: StackConfig) -> dict[str, Any]:
    """Port 80 on every gateway answers with a permanent redirect to https, for any host."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": REDIRECT_ROUTE, "namespace": GATEWAY_NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "parentRefs": [{"name": g, "namespace": GATEWAY_NAMESPACE, "sectionName": "http"} for g in gateway_names(stack)],
            "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
        },
    }


def app_route(app: App) -> dict[str, Any]:
    """The app's route: its host on its audience's gateway, to its Service in its category namespace."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": app.name, "namespace": app.namespace, "labels": {**MANAGED_BY, "iluvatar/app": app.name}},
        "spec": {
            "parentRefs": [{"name": gateway_of(app), "namespace": GATEWAY_NAMESPACE, "sectionName": "https"}],
            "hostnames": [app.host],
            "rules": [{"backendRefs": [{"name": app.service_name, "port": app.http.port}]}],
        },
    }


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """Every Gateway API and Envoy Gateway object, in apply order: class and proxy settings, the
    gateways, the redirect, then one route per HTTP app (by app name; an app with raw ports has its own
    address instead, plans.ports)."""
    return [
        envoy_proxy(),
        gateway_class(),
        *(gateway(stack, g) for g in gateway_names(stack)),
        redirect_route(stack),
        *(app_route(a) for a in sorted(stack.apps, key=lambda a: a.name) if a.service is not None),
    ]
