"""Cilium's Helm values and custom resources, pinned exactly (the chart itself checks them in test_cilium)."""

from __future__ import annotations

from typing import Any

from plans import cilium
from stacks import load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB

TALOS_AGENT_CAPABILITIES = [
    "CHOWN",
    "KILL",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "SYS_ADMIN",
    "SYS_RESOURCE",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
]


def test_homelab_values_exactly() -> None:
    values = cilium.helm_values(load_stack_file(HOMELAB))
    # externalIPs is left to the chart's own values schema (tests/plans/test_cilium.py), which decides whether it exists.
    values.pop("externalIPs", None)
    assert values == {
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": True,
        "k8sServiceHost": "localhost",
        "k8sServicePort": 7445,
        "securityContext": {
            "capabilities": {"ciliumAgent": TALOS_AGENT_CAPABILITIES, "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]}
        },
        "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
        "l2announcements": {"enabled": True},
        "loadBalancer": {"algorithm": "maglev"},
        # L2 announcements renew a lease per Service: the default client rate limit starves them.
        "k8sClientRateLimit": {"qps": 20, "burst": 40},
        # Two operators for five Arda machines (one per machine below two).
        "operator": {"replicas": 2, "prometheus": {"enabled": True, "serviceMonitor": {"enabled": True}}},
        "hubble": {"enabled": True, "relay": {"enabled": True}, "ui": {"enabled": True}},
        # Scraped by the homelab's Prometheus: the Prometheus Operator's CRDs are on Arda before Cilium
        # (components.monitoring), so the chart need not look for them.
        "prometheus": {"enabled": True, "serviceMonitor": {"enabled": True, "trustCRDsExist": True}},
    }


def test_hubble_off_turns_off_relay_and_ui_too() -> None:
    raw: dict[str, Any] = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "cilium": {"hubble": False, "loadBalancerAlgorithm": "random"}}
    values = cilium.helm_values(parse_stack(raw))
    assert values["hubble"] == {"enabled": False, "relay": {"enabled": False}, "ui": {"enabled": False}}
    assert values["loadBalancer"] == {"algorithm": "random"}


def test_values_are_fresh_each_time_and_never_alias_the_stack() -> None:
    raw: dict[str, Any] = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "cilium": {"values": {"bpf": {"masquerade": True}, "extra": ["a"]}}}
    stack = parse_stack(raw)
    values = cilium.helm_values(stack)
    values["securityContext"]["capabilities"]["ciliumAgent"].append("SYS_MODULE")
    values["bpf"]["masquerade"] = False
    values["extra"].append("b")
    again = cilium.helm_values(stack)
    assert again["securityContext"]["capabilities"]["ciliumAgent"] == TALOS_AGENT_CAPABILITIES
    assert stack.arda.cilium.values == {"bpf": {"masquerade": True}, "extra": ["a"]}
    assert (again["bpf"], again["extra"]) == ({"masquerade": True}, ["a"])


def test_load_balancer_pool_exactly() -> None:
    assert cilium.load_balancer_pool(load_stack_file(HOMELAB)) == {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumLoadBalancerIPPool",
        "metadata": {"name": "iluvatar-lan"},
        # .220 and .221 are the homelab's Minecraft server's and MQTT broker's, in pools of their own (app_pools).
        "spec": {"blocks": [{"start": "192.168.0.222", "stop": "192.168.0.239"}]},
    }


def test_each_raw_port_apps_address_is_a_pool_for_its_own_service_alone() -> None:
    """No other LoadBalancer Service, whatever it asks, gets an app's address: the general pool leaves it out, and its
    own pool selects the app's Service by namespace and name."""
    assert cilium.app_pools(load_stack_file(HOMELAB)) == [
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": f"iluvatar-lan-{app}-lan"},
            "spec": {
                "blocks": [{"start": ip, "stop": ip}],
                "serviceSelector": {"matchLabels": {"io.kubernetes.service.namespace": namespace, "io.kubernetes.service.name": f"{app}-lan"}},
            },
        }
        for ip, namespace, app in (("192.168.0.220", "selfhosted", "minecraft"), ("192.168.0.221", "home-automation", "mosquitto"))
    ]
