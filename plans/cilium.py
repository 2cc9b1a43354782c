"""Cilium plan: the Helm values and the load-balancer custom resources for Arda.

Cilium replaces kube-proxy, reaches the API through KubePrism (Talos' local API proxy,
which works before any Service does), and answers ARP for load-balancer IPs taken from
`network.loadBalancerPool`.
"""

from __future__ import annotations

import copy
from ipaddress import IPv4Address
from typing import Any

from plans import kms, logs, metrics
from plans.merge import deep_merge
from stacks.model import StackConfig
from stacks.talos_ports import KUBEPRISM_PORT

CHART = "cilium"
REPOSITORY = "https://helm.cilium.io"
NAMESPACE = "kube-system"
POOL_NAME = "iluvatar-lan"
KMS_DENY_NAME = "iluvatar-kms-no-pods"
L2_POLICY_NAME = "iluvatar-lan"
# The name of an app's LoadBalancer Service is the app's with this suffix (plans.ports.SUFFIX, which imports it).
APP_SERVICE_SUFFIX = "-lan"

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


def _reserved(stack: StackConfig) -> dict[IPv4Address, tuple[str, str]]:
    """The addresses of the apps with raw ports, each with its Service's namespace and name (plans.ports)."""
    return {a.address: (a.namespace, a.name + APP_SERVICE_SUFFIX) for a in stack.apps if a.ports and a.address is not None}


def load_balancer_pool(stack: StackConfig) -> dict[str, Any]:
    """network.loadBalancerPool for every Service, but the apps' own addresses (`app_pools`): LB-IPAM gives any free
    address of a pool that selects a Service, to a Service asking for it by annotation or to one asking for none, first
    come (Cilium v1.18.4 Documentation/network/lb-ipam.rst, "Requesting IPs"), so a Service out of Git could otherwise
    hold an app's address and its name would send the app's clients to it."""
    pool = stack.network.load_balancer_pool
    reserved = set(_reserved(stack))
    blocks: list[dict[str, str]] = []
    start: IPv4Address | None = None
    for ip in pool.addresses():
        if ip in reserved:
            if start is not None:
                blocks.append({"start": str(start), "stop": str(ip - 1)})
            start = None
        elif start is None:
            start = ip
    if start is not None:
        blocks.append({"start": str(start), "stop": str(pool.end)})
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumLoadBalancerIPPool",
        "metadata": {"name": POOL_NAME},
        "spec": {"blocks": blocks},
    }


def app_pools(stack: StackConfig) -> list[dict[str, Any]]:
    """One pool per app with raw ports: its address alone, for its own Service alone. The serviceSelector matches
    the labels LB-IPAM gives every Service for its namespace and name (lb-ipam.rst, "Service Selectors":
    io.kubernetes.service.namespace, io.kubernetes.service.name), so no other Service, whatever it asks, gets the
    address: a Service of that name in that namespace is the program's (plans.ports.service)."""
    return [
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": f"{POOL_NAME}-{service}"},
            "spec": {
                "blocks": [{"start": str(ip), "stop": str(ip)}],
                "serviceSelector": {"matchLabels": {"io.kubernetes.service.namespace": namespace, "io.kubernetes.service.name": service}},
            },
        }
        for ip, (namespace, service) in sorted(_reserved(stack).items())
    ]


def l2_announcement_policy(stack: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": L2_POLICY_NAME},
        "spec": {"loadBalancerIPs": True, "externalIPs": True, "interfaces": ["^lan0$", "^e.*"]},
    }


def kms_egress_deny(stack: StackConfig) -> dict[str, Any] | None:
    """No pod on Arda reaches the Ainur's KMS, nor the Pis' receivers of Talos's logs: only the machines themselves
    (Talos, on the host network) may.

    The KMS admits the Arda machines by address (plans.kms.admitted), and Cilium masquerades a pod's traffic to the
    LAN to its node's address (the chart's `enableIPv4Masquerade`, on here), so without this any pod on Arda (an
    internet-facing app, the tailnet's subnet router) would pass as its machine and could unseal a stolen disk's blob.
    Talos's KMS client sends no client certificate (internal/pkg/encryption/keys/kms.go:134-148 at v1.13.9: TLS with
    RootCAs only), so the machine cannot prove itself otherwise. A deny rule wins over every allow (docs.cilium.io,
    Deny Policies); host-network processes are no endpoint and are not selected. `enableDefaultDeny` off both ways:
    a policy with egress rules otherwise isolates every pod it selects, and this one selects them all (CRD field
    `enableDefaultDeny`: "the default is true for each traffic direction that has rules").

    The Pis' collectors take Talos's JSON lines on 6050 and 6051 from the same Arda addresses (plans.logs.talos_firewall)
    and name the machine from the line's own `machine` tag: a pod passing as its machine would write lines under any
    machine's name and time stamp (a forged kernel I/O error raises DiskIOError), so those ports are denied too whenever
    logs go to the Ainur (plans.logs.talos_cluster). Every Pi runs a receiver listening on all its addresses, and its
    firewall checks only the source, so those ports are denied towards the whole LAN (each Pi's own address, the API
    VIP, every kube-vip address), not the service address alone; the KMS answers on the service address only.
    """
    receivers = logs.enabled(stack) and logs.talos_cluster(stack) == "ainur"
    if not kms.enabled(stack) and not receivers:
        return None
    assert stack.ainur is not None

    def deny(cidr: str, ports: list[int]) -> dict[str, Any]:
        return {"toCIDR": [cidr], "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"} for port in ports]}]}

    rules = [deny(f"{stack.ainur.service_ip}/32", [kms.PORT])] if kms.enabled(stack) else []
    if receivers:
        rules.append(deny(str(stack.network.lan), [logs.SERVICE_PORT, logs.KERNEL_PORT]))
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": KMS_DENY_NAME},
        "spec": {
            "description": "No pod reaches the Ainur's KMS or Talos's log receivers: they admit the Arda machines' addresses, which pods masquerade as",
            "endpointSelector": {},
            "enableDefaultDeny": {"egress": False, "ingress": False},
            "egressDeny": rules,
        },
    }
