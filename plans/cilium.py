"""Cilium plan: the Helm values and the load-balancer custom resources for Arda.

Cilium replaces kube-proxy, reaches the API through KubePrism (Talos' local API proxy,
which works before any Service does), and answers ARP for load-balancer IPs taken from
`network.loadBalancerPool`.
"""

from __future__ import annotations

import copy
from typing import Any

from plans import metrics
from plans.merge import deep_merge
from plans.talos import KUBEPRISM_PORT
from stacks.model import StackConfig

CHART = "cilium"
REPOSITORY = "https://helm.cilium.io"
NAMESPACE = "kube-system"
POOL_NAME = "iluvatar-lan"
L2_POLICY_NAME = "iluvatar-lan"

# Talos forbids loading kernel modules and mounts cgroup v2 itself (Talos' Cilium guide).
_TALOS_CAPABILITIES = {
    "ciliumAgent": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN", "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
    "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
}


def helm_values(stack: StackConfig) -> dict[str, Any]:
    settings = stack.arda.cilium
    values: dict[str, Any] = {
        "ipam": {"mode": "kubernetes"},
        # Also serves Services' external IPs: the 1.18 chart has no separate externalIPs value.
        "kubeProxyReplacement": True,
        "k8sServiceHost": "localhost",
        "k8sServicePort": KUBEPRISM_PORT,
        "securityContext": {"capabilities": copy.deepcopy(_TALOS_CAPABILITIES)},
        "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
        "l2announcements": {"enabled": True},
        "loadBalancer": {"algorithm": settings.load_balancer_algorithm},
        # L2 announcements renew a lease per Service; the default client rate limit starves them.
        "k8sClientRateLimit": {"qps": 20, "burst": 40},
        "operator": {"replicas": min(2, len(stack.by_role("valinor")) + len(stack.by_role("istari")))},
        "hubble": {"enabled": settings.hubble, "relay": {"enabled": settings.hubble}, "ui": {"enabled": settings.hubble}},
    }
    # With monitoring, its agent's and operator's metrics and their ServiceMonitors (plans.metrics).
    values = deep_merge(values, metrics.cilium(stack))
    return deep_merge(values, settings.values)


def load_balancer_pool(stack: StackConfig) -> dict[str, Any]:
    pool = stack.network.load_balancer_pool
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumLoadBalancerIPPool",
        "metadata": {"name": POOL_NAME},
        "spec": {"blocks": [{"start": str(pool.start), "stop": str(pool.end)}]},
    }


def l2_announcement_policy(stack: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": L2_POLICY_NAME},
        "spec": {"loadBalancerIPs": True, "externalIPs": True, "interfaces": ["^lan0$", "^e.*"]},
    }
