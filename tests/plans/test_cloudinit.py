"""Ainur cloud-init: every user-data and network-config passes the real `cloud-init schema`, the
values that protect data are pinned, and nothing carries a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from plans import cloudinit, k3s
from stacks import load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.strategies import raw_stacks
from tests.tools import cloud_init_network_schema, cloud_init_schema


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    result = cloud_init_schema("#cloud-config\npackages: 3\n", tmp_path)
    assert result.returncode != 0
    assert "packages" in result.stdout + result.stderr


def test_every_pi_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    assert [n.name for n in stack.ainur_nodes] == ["manwe", "eonwe", "ilmare"]
    for node in stack.ainur_nodes:
        result = cloud_init_schema(cloudinit.user_data(stack, node), tmp_path, node.name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid cloud-config" in result.stdout


def test_user_data_content() -> None:
    stack = load_stack_file(HOMELAB)
    text = cloudinit.user_data(stack, stack.nodes[0])
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert (doc["hostname"], doc["fqdn"]) == ("manwe", "manwe.iluvatar.home.arpa")
    assert doc["users"][0]["ssh_authorized_keys"] == list(stack.ainur.ssh_authorized_keys)  # type: ignore[union-attr]
    assert doc["ssh_pwauth"] is False
    assert {"open-iscsi", "nfs-common", "xfsprogs"} <= set(doc["packages"])
    assert doc["fs_setup"] == [{"label": "longhorn", "filesystem": "xfs", "device": "/dev/nvme0n1", "partition": "auto", "overwrite": False}]
    assert doc["mounts"][0][:3] == ["LABEL=longhorn", "/var/lib/longhorn", "xfs"]
    install = doc["runcmd"][1][2]
    assert "INSTALL_K3S_VERSION=v1.35.8+k3s1" in install and "INSTALL_K3S_EXEC=server" in install
    assert "INSTALL_K3S_SKIP_START=true" in install


def test_only_valar_carry_kube_vip_and_agents_know_the_vip() -> None:
    stack = load_stack_file(HOMELAB)
    valar, maiar = yaml.safe_load(cloudinit.user_data(stack, stack.nodes[0])), yaml.safe_load(cloudinit.user_data(stack, stack.nodes[1]))
    [pod] = [f for f in valar["write_files"] if f["path"].endswith("kube-vip.yaml")]
    assert "192.168.0.10" in pod["content"]
    assert "write_files" not in maiar
    assert "K3S_URL=https://192.168.0.10:6443" in maiar["runcmd"][1][2]


def test_user_data_holds_no_token() -> None:
    stack = load_stack_file(HOMELAB)
    for node in stack.ainur_nodes:
        text = cloudinit.user_data(stack, node)
        assert "token" not in text.lower()
        assert "K3S_TOKEN" not in text


def test_k3s_configs_join_through_the_vip() -> None:
    stack = load_stack_file(HOMELAB)
    first, agent = (yaml.safe_load(k3s.config(stack, n, "T0K3N")) for n in stack.nodes[:2])
    assert first["cluster-init"] is True and "server" not in first
    assert first["tls-san"] == ["192.168.0.10", "ainur.iluvatar.home.arpa"]
    # Longhorn is the homelab's default class: k3s's local-path addon (a default class too) is off.
    assert first["disable"] == ["servicelb", "traefik", "local-storage"]
    assert agent["server"] == "https://192.168.0.10:6443" and agent["token"] == "T0K3N"
    assert "systemctl enable k3s-agent" in k3s.join_script(stack.nodes[1])


def test_missing_kubeconfig_is_a_clear_error() -> None:
    stack = load_stack_file(HOMELAB)
    for empty in ("", "# nothing\n", "clusters: []\n"):
        with pytest.raises(ValueError, match=r"returned no kubeconfig from /etc/rancher/k3s/k3s.yaml; is k3s running on https://192.168.0.10:6443\?"):
            k3s.rewrite_kubeconfig(empty, stack)


def test_kubeconfig_is_pointed_at_the_vip() -> None:
    stack = load_stack_file(HOMELAB)
    out = yaml.safe_load(k3s.rewrite_kubeconfig("clusters:\n- cluster: {server: 'https://127.0.0.1:6443'}\n  name: default\n", stack))
    assert out["clusters"][0]["cluster"]["server"] == "https://192.168.0.10:6443"


def test_the_network_config_check_can_fail(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    doc = cloudinit.network_config_document(stack, stack.nodes[0])
    doc["network"]["ethernets"]["lan"]["dhcp4"] = "maybe"
    result = cloud_init_network_schema(yaml.safe_dump(doc), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "network.ethernets.lan.dhcp4: 'maybe' is not one of ['yes', 'no', True, False]" in result.stderr


def test_every_pi_network_config_passes_cloud_init_schema(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    for node in stack.ainur_nodes:
        result = cloud_init_network_schema(cloudinit.network_config(stack, node), tmp_path, node.name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid schema" in result.stdout


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_stacks())
def test_network_configs_of_random_stacks_pass_cloud_init_schema(tmp_path: Path, raw: dict[str, Any]) -> None:
    stack = parse_stack(raw)
    for node in stack.ainur_nodes:
        result = cloud_init_network_schema(cloudinit.network_config(stack, node), tmp_path, node.name)
        assert result.returncode == 0, result.stdout + result.stderr


def test_network_config_is_the_inventory_address_static() -> None:
    stack = load_stack_file(HOMELAB)
    eonwe = stack.nodes[1]
    assert cloudinit.network_config_document(stack, eonwe) == {
        "network": {
            "version": 2,
            "ethernets": {
                "lan": {
                    "match": {"macaddress": "d8:3a:dd:10:00:02"},
                    "dhcp4": False,
                    "dhcp6": False,
                    "addresses": ["192.168.0.12/24"],
                    "routes": [{"to": "default", "via": "192.168.0.1"}],
                    # network.dns, never the Ainur's own service address: it only exists once k3s runs.
                    "nameservers": {"addresses": ["192.168.0.1"], "search": ["iluvatar.home.arpa"]},
                }
            },
        }
    }


def test_user_data_values_that_protect_data_and_access() -> None:
    stack = load_stack_file(HOMELAB)
    for node in stack.ainur_nodes:
        doc = yaml.safe_load(cloudinit.user_data(stack, node))
        # The NVMe is partitioned only if it has no partition table: a reflash keeps Longhorn's data.
        assert doc["disk_setup"] == {"/dev/nvme0n1": {"table_type": "gpt", "layout": True, "overwrite": False}}
        assert doc["fs_setup"] == [{"label": "longhorn", "filesystem": "xfs", "device": "/dev/nvme0n1", "partition": "auto", "overwrite": False}]
        # A missing or failed disk must not stop the Pi booting (nofail).
        assert doc["mounts"] == [["LABEL=longhorn", "/var/lib/longhorn", "xfs", "defaults,nofail,discard", "0", "2"]]
        # No password login anywhere, no root login.
        assert (doc["ssh_pwauth"], doc["disable_root"], doc["users"][0]["lock_passwd"]) == (False, True, True)
        # k3s is installed but neither enabled nor started until Pulumi brings its token.
        install = doc["runcmd"][1]
        kind = "server" if node.role == "valar" else "agent"
        agent = " K3S_URL=https://192.168.0.10:6443" if kind == "agent" else ""
        assert install == [
            "sh",
            "-c",
            "curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION=v1.35.8+k3s1 INSTALL_K3S_SKIP_START=true "
            f"INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_EXEC={kind}{agent} sh -",
        ]


def test_the_whole_user_data_of_a_server_and_an_agent() -> None:
    """Every key of the document, so a misspelt key (which `cloud-init schema` lets through) or a changed value fails."""
    stack = load_stack_file(HOMELAB)
    assert stack.ainur is not None
    install = "curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION=v1.35.8+k3s1 INSTALL_K3S_SKIP_START=true INSTALL_K3S_SKIP_ENABLE=true "

    def expected(name: str, kind: str) -> dict[str, Any]:
        return {
            "hostname": name,
            "fqdn": f"{name}.iluvatar.home.arpa",
            "manage_etc_hosts": True,
            "ssh_pwauth": False,
            "disable_root": True,
            "users": [
                {
                    "name": "ubuntu",
                    "groups": ["adm", "sudo"],
                    "shell": "/bin/bash",
                    "sudo": "ALL=(ALL) NOPASSWD:ALL",
                    "lock_passwd": True,
                    "ssh_authorized_keys": list(stack.ainur.ssh_authorized_keys),  # type: ignore[union-attr]
                }
            ],
            "package_update": True,
            "packages": ["open-iscsi", "nfs-common", "xfsprogs", "cryptsetup", "curl", "jq", "zstd"],
            # Longhorn's iSCSI initiator must run before k3s schedules a volume.
            "runcmd": [["systemctl", "enable", "--now", "iscsid"], ["sh", "-c", install + kind]],
            "disk_setup": {"/dev/nvme0n1": {"table_type": "gpt", "layout": True, "overwrite": False}},
            "fs_setup": [{"label": "longhorn", "filesystem": "xfs", "device": "/dev/nvme0n1", "partition": "auto", "overwrite": False}],
            "mounts": [["LABEL=longhorn", "/var/lib/longhorn", "xfs", "defaults,nofail,discard", "0", "2"]],
        }

    server = yaml.safe_load(cloudinit.user_data(stack, stack.nodes[0]))
    [kube_vip] = server.pop("write_files")
    assert server == expected("manwe", "INSTALL_K3S_EXEC=server sh -")
    # The static pod's file is root's alone: it names the kubeconfig kube-vip reads.
    assert (kube_vip["path"], kube_vip["permissions"]) == ("/var/lib/rancher/k3s/agent/pod-manifests/kube-vip.yaml", "0600")
    assert yaml.safe_load(kube_vip["content"]) == k3s.kube_vip_manifest(stack)
    agent = yaml.safe_load(cloudinit.user_data(stack, stack.nodes[2]))
    assert agent == expected("ilmare", "INSTALL_K3S_EXEC=agent K3S_URL=https://192.168.0.10:6443 sh -")


def test_a_pi_without_a_data_disk_gets_no_disk_setup() -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:nodes"] = [{k: v for k, v in n.items() if k != "dataDisks"} if n["name"] == "eonwe" else n for n in raw["iluvatar:nodes"]]
    stack = parse_stack(raw)
    doc = cloudinit.user_data_document(stack, stack.nodes[1])
    assert not {"disk_setup", "fs_setup", "mounts"} & set(doc)
