"""k3s on the Ainur: each Pi's whole config.yaml, the kube-vip static pod and the kubeconfig rewrite, pinned.

These are what decide whether the Pis form one cluster (the first server initialises etcd, every other
Pi joins through the VIP), how fast a dead Pi is noticed (the netboot takeover), and who holds the API VIP.
"""

from __future__ import annotations

import pytest
import yaml

from plans import k3s
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB

VIP = "192.168.0.10"


def three_servers() -> StackConfig:
    """The homelab with all three Pis as valar: a three-member etcd."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:nodes"] = [{**n, "role": "valar"} if n["role"] == "maiar" else n for n in raw["iluvatar:nodes"]]
    return parse_stack(raw)


def test_the_first_server_initialises_etcd() -> None:
    stack = load_stack_file(HOMELAB)
    assert yaml.safe_load(k3s.config(stack, stack.nodes[0], "T0K3N")) == {
        "cluster-init": True,
        # The homelab's Pis run Longhorn as the default class, so k3s's own local-path default is off too.
        "disable": ["servicelb", "traefik", "local-storage"],
        "kube-controller-manager-arg": ["node-monitor-grace-period=16s"],
        "kubelet-arg": ["node-status-update-frequency=4s"],
        "node-ip": "192.168.0.11",
        "node-label": ["iluvatar/role=valar"],
        "tls-san": [VIP, "ainur.iluvatar.home.arpa"],
        "token": "T0K3N",
        "write-kubeconfig-mode": "0600",
    }


def test_an_agent_joins_through_the_vip() -> None:
    stack = load_stack_file(HOMELAB)
    assert yaml.safe_load(k3s.config(stack, stack.nodes[2], "T0K3N")) == {
        "kubelet-arg": ["node-status-update-frequency=4s"],
        "node-ip": "192.168.0.13",
        "node-label": ["iluvatar/role=maiar"],
        "server": f"https://{VIP}:6443",
        "token": "T0K3N",
    }


def test_every_later_server_joins_the_first_through_the_vip() -> None:
    stack = three_servers()
    first, *later = stack.by_role("valar")
    assert [n.name for n in later] == ["eonwe", "ilmare"]
    assert k3s.is_first_server(stack, first) and not any(k3s.is_first_server(stack, n) for n in later)
    assert not k3s.is_first_server(load_stack_file(HOMELAB), load_stack_file(HOMELAB).nodes[1])  # a maiar never is
    for node in later:
        doc = yaml.safe_load(k3s.config(stack, node, "T0K3N"))
        # A second `cluster-init` would start a second etcd: a split cluster.
        assert "cluster-init" not in doc
        assert (doc["server"], doc["node-label"], doc["disable"]) == (
            f"https://{VIP}:6443",
            ["iluvatar/role=valar"],
            ["servicelb", "traefik", "local-storage"],
        )
        assert doc["tls-san"] == [VIP, "ainur.iluvatar.home.arpa"]


def test_the_config_is_written_keys_sorted() -> None:
    """Sorted keys: the same stack gives the same file, so Pulumi sees no change to push over SSH."""
    stack = load_stack_file(HOMELAB)
    text = k3s.config(stack, stack.nodes[2], "T0K3N")
    assert text.splitlines()[0] == "kubelet-arg:"
    assert text.splitlines()[-1] == "token: T0K3N"


def test_join_installs_the_config_root_only_and_starts_the_right_service() -> None:
    stack = load_stack_file(HOMELAB)
    server, agent = stack.nodes[0], stack.nodes[1]
    assert k3s.join_command(server) == "sudo install -D -m 0600 /dev/stdin /etc/rancher/k3s/config.yaml && sudo systemctl enable --now k3s"
    assert k3s.join_command(agent) == "sudo install -D -m 0600 /dev/stdin /etc/rancher/k3s/config.yaml && sudo systemctl enable --now k3s-agent"


def test_kube_vip_static_pod() -> None:
    """ARP leader election for the API VIP only (Services are the kube-vip-services DaemonSet's)."""
    assert k3s.kube_vip_manifest(load_stack_file(HOMELAB)) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "kube-vip",
                    "image": "ghcr.io/kube-vip/kube-vip:v0.9.2",
                    "args": ["manager"],
                    "env": [
                        {"name": "vip_arp", "value": "true"},
                        {"name": "port", "value": "6443"},
                        {"name": "cp_enable", "value": "true"},
                        {"name": "svc_enable", "value": "false"},
                        {"name": "vip_leaderelection", "value": "true"},
                        {"name": "vip_leaseduration", "value": "5"},
                        {"name": "vip_renewdeadline", "value": "3"},
                        {"name": "vip_retryperiod", "value": "1"},
                        {"name": "address", "value": VIP},
                    ],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                    "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf"}],
                }
            ],
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}],
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": "/etc/rancher/k3s/k3s.yaml"}}],
        },
    }


def test_every_cluster_of_the_kubeconfig_points_at_the_vip_and_the_rest_is_kept() -> None:
    stack = load_stack_file(HOMELAB)
    given = (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}\n  name: default\n"
        "- cluster: {server: 'https://127.0.0.1:6443'}\n  name: other\n"
        "current-context: default\n"
    )
    assert k3s.rewrite_kubeconfig(given, stack) == (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n    certificate-authority-data: Q0E=\n    server: https://192.168.0.10:6443\n  name: default\n"
        "- cluster:\n    server: https://192.168.0.10:6443\n  name: other\n"
        "current-context: default\n"
    )


@pytest.mark.parametrize("empty", ["", "# nothing\n", "clusters: []\n", "[]\n", "just text\n"])
def test_no_kubeconfig_is_one_clear_error(empty: str) -> None:
    with pytest.raises(
        ValueError, match=r"^the first valar returned no kubeconfig from /etc/rancher/k3s/k3s.yaml; is k3s running on https://192.168.0.10:6443\?$"
    ):
        k3s.rewrite_kubeconfig(empty, load_stack_file(HOMELAB))
