"""Cloudflare plan: the tunnel's ingress rules, the public records and the cloudflared Deployment.

The public path: Cloudflare's proxy answers for each external app host (a proxied CNAME to
`<tunnel-id>.cfargotunnel.com`), sends the request down the tunnel, and cloudflared on Arda
forwards it over https to `envoy-external`'s Service, asking for the app's host by SNI so the
gateway serves the right certificate and route. The tunnel is remotely managed (its ingress rules
live in Cloudflare, set by Pulumi), so cloudflared needs only the tunnel token.
"""

from __future__ import annotations

from typing import Any

from plans import netpol
from plans.edge import GATEWAY_NAMESPACE, MANAGED_BY
from stacks.model import StackConfig

CLOUDFLARED_IMAGE = "docker.io/cloudflare/cloudflared:2025.11.1"
CLOUDFLARED = "cloudflared"
TOKEN_SECRET = "cloudflared-token"  # noqa: S105 - a Kubernetes object name, not a secret
TOKEN_KEY = "token"  # noqa: S105 - a Kubernetes object name, not a secret
REPLICAS = 2
METRICS_PORT = 2000
# The tunnel secret's size: Cloudflare requires at least 32 bytes.
TUNNEL_SECRET_BYTES = 32
# envoy-external's proxy Service (Envoy Gateway names it after the Gateway in GatewayNamespace mode).
ORIGIN = f"https://envoy-external.{GATEWAY_NAMESPACE}.svc.cluster.local:443"
CATCH_ALL = "http_status:404"
RECORD_COMMENT = "Owned by Iluvatar (Pulumi); changes made elsewhere are overwritten"


def tunnel_name(stack: StackConfig) -> str:
    return f"iluvatar-{stack.arda.cluster_name}"


def external_hosts(stack: StackConfig) -> list[str]:
    return sorted(a.host for a in stack.apps if a.audience == "external")


def tunnel_config(stack: StackConfig) -> dict[str, Any]:
    """The tunnel's configuration as Cloudflare stores it and cloudflared reads it: one rule per
    external host to envoy-external, then the catch-all 404 every configuration must end with."""
    rules = [{"hostname": host, "service": ORIGIN, "originRequest": {"originServerName": host}} for host in external_hosts(stack)]
    return {"ingress": [*rules, {"service": CATCH_ALL}]}


def cloudflared_deployment(stack: StackConfig) -> dict[str, Any]:
    """Two cloudflared connectors on Arda, spread over nodes, reading the tunnel token from a Secret."""
    labels = {"app.kubernetes.io/name": CLOUDFLARED}
    probe = {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CLOUDFLARED, "namespace": GATEWAY_NAMESPACE, "labels": {**MANAGED_BY, **labels}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"},
                                }
                            ]
                        }
                    },
                    "containers": [
                        {
                            "name": CLOUDFLARED,
                            "image": CLOUDFLARED_IMAGE,
                            # The image is pinned: cloudflared must not replace itself.
                            "args": ["tunnel", "--no-autoupdate", "--metrics", f"0.0.0.0:{METRICS_PORT}", "run"],
                            "env": [{"name": "TUNNEL_TOKEN", "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": TOKEN_KEY}}}],
                            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "failureThreshold": 6},
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            },
        },
    }


def cloudflared_network_policy() -> dict[str, Any]:
    """cloudflared only dials out (to Cloudflare's edge, and to envoy-external for each request): it admits nothing. Its
    metrics and readiness listener (METRICS_PORT, on every address) only the kubelet reaches, from the pod's own machine
    (Cilium admits the local host: plans.netpol); no Prometheus scrapes it."""
    return netpol.allow(CLOUDFLARED, GATEWAY_NAMESPACE, {"app.kubernetes.io/name": CLOUDFLARED}, [], [], **MANAGED_BY)
