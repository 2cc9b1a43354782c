"""Talos patches and schematics: every generated document passes the real Talos config schema."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings

from plans import logs, talos
from stacks import StackConfig, encryption, load_stack_file, parse_stack
from stacks.boards import BOARDS
from tests.edit import HOMELAB, RK1
from tests.plans.test_imagefactory import BOARD_IDS, TEXT_HASH_RK1
from tests.schemas import talos_errors
from tests.strategies import raw_stacks

IMAGE = "factory.talos.dev/metal-installer/abc123:v1.14.1"


def _docs(stack: StackConfig, name: str) -> list[dict[str, Any]]:
    node = next(n for n in stack.nodes if n.name == name)
    return [d for p in talos.node_patches(stack, node, IMAGE) for d in yaml.safe_load_all(p)]


def _all_documents(stack: StackConfig) -> list[dict[str, Any]]:
    return [d for n in stack.arda_nodes for p in talos.node_patches(stack, n, IMAGE) for d in yaml.safe_load_all(p)]


def test_the_schema_check_can_fail() -> None:
    assert talos_errors({"machine": {"instal": {"disk": "/dev/sda"}}}) != []
    assert talos_errors({"apiVersion": "v1alpha1", "kind": "LinkConfig", "up": True}) != []  # name is required
    assert talos_errors({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "10.0.0.1", "link": "lan0"}) == []


def test_every_homelab_and_rk1_patch_document_is_schema_valid() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        docs = _all_documents(stack)
        # With local volumes (GitOps on), each machine also gets its UserVolumeConfig and the EPHEMERAL cap. With
        # monitoring or sign-in, each control plane also gets the patch that opens its components' metrics and reads
        # Dex's authentication config; with sign-in, the StaticHostConfig that names Dex's address.
        # With logs (on with monitoring), every machine also gets its KmsgLogConfig (plans.logs).
        # With encryption by the Ainur's KMS, every machine also trusts the local CA (TrustedRootsConfig,
        # plans.volume_encryption); EPHEMERAL's encryption rides on the cap's VolumeConfig.
        kmsg = int(logs.enabled(stack))
        kms = int(encryption.uses_kms(stack))
        control_plane = 8 + (stack.monitoring is not None or stack.identity is not None) + (stack.identity is not None) + kmsg + kms
        assert len(docs) == control_plane * len(stack.by_role("valinor")) + (7 + kmsg + kms) * len(stack.by_role("istari"))
        for doc in docs:
            assert talos_errors(doc) == [], (path.name, doc)


@settings(max_examples=60, deadline=None)
@given(raw_stacks(vlans=True, selectors=True))
def test_patches_of_random_stacks_are_schema_valid(raw: dict[str, Any]) -> None:
    stack = parse_stack(raw)
    for doc in _all_documents(stack):
        assert talos_errors(doc) == [], doc


def test_control_plane_patch_content() -> None:
    stack = load_stack_file(HOMELAB)
    config, hostname, alias, link, resolver, vip, *_ = _docs(stack, "tirion")
    assert config["machine"]["install"] == {"disk": "/dev/sda", "image": IMAGE, "wipe": False}
    assert config["machine"]["features"]["kubePrism"] == {"enabled": True, "port": 7445}
    assert config["machine"]["kubelet"]["nodeIP"]["validSubnets"] == ["192.168.0.0/24"]
    assert config["machine"]["nodeLabels"] == {"iluvatar/role": "valinor", "iluvatar/board": "generic-x86", "iluvatar/storage": "true"}
    assert config["machine"]["nodeAnnotations"] == {"iluvatar/data-disks": "/dev/nvme0n1"}
    assert config["cluster"] == {
        "network": {"cni": {"name": "none"}},
        "proxy": {"disabled": True},
        "allowSchedulingOnControlPlanes": False,
        # Iluvatar's CoreDNS (plans.coredns) instead of Talos's bootstrap manifests.
        "coreDNS": {"disabled": True},
    }
    # auto off: the generated `auto: stable` would otherwise stay beside the hostname (Talos refuses both).
    assert hostname == {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "tirion"}
    assert alias["selector"] == {"match": 'mac(link.permanent_addr) == "a8:b8:e0:20:00:02"'}
    assert link["addresses"] == [{"address": "192.168.0.22/24"}]
    assert link["routes"] == [{"gateway": "192.168.0.1"}]
    assert resolver["nameservers"] == [{"address": "192.168.0.1"}]
    assert vip == {"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "192.168.0.20", "link": "lan0"}


def test_worker_patch_has_no_vip_and_no_data_disk_annotation() -> None:
    docs = _docs(load_stack_file(HOMELAB), "gandalf")
    assert [d.get("kind") for d in docs] == [
        None,
        "HostnameConfig",
        "LinkAliasConfig",
        "LinkConfig",
        "ResolverConfig",
        "UserVolumeConfig",
        "VolumeConfig",
        "TrustedRootsConfig",  # the KMS's CA: the homelab's volumes unlock through the Ainur's KMS (plans.volume_encryption)
        "KmsgLogConfig",
    ]
    assert "nodeAnnotations" not in docs[0]["machine"]
    assert "allowSchedulingOnControlPlanes" not in docs[0]["cluster"]
    # Only control planes render Talos's bootstrap manifests: a worker's config needs no say about CoreDNS.
    assert "coreDNS" not in docs[0]["cluster"]


def test_rk1_control_planes_allow_scheduling() -> None:
    docs = _docs(load_stack_file(RK1), "talos-1")
    assert docs[0]["cluster"]["allowSchedulingOnControlPlanes"] is True
    assert docs[0]["machine"]["install"]["disk"] == "/dev/mmcblk0"


def test_user_patches_follow_iluvatars_own_in_order() -> None:
    raw = {k: v for k, v in __import__("stacks").read_stack_file(HOMELAB).config.items()}
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "patches": [{"machine": {"sysctls": {"vm.nr_hugepages": "1024"}}}]}
    nodes = list(raw["iluvatar:nodes"])
    nodes[3] = {
        **nodes[3],
        "talosPatches": [
            {
                "apiVersion": "v1alpha1",
                "kind": "RawVolumeConfig",
                "name": "ceph",
                # A disk of its own, outside the inventory: one Ceph takes as an OSD is refused (stacks.rules).
                "provisioning": {"diskSelector": {"match": 'disk.dev_path == "/dev/sdb"'}},
            }
        ],
    }
    raw["iluvatar:nodes"] = nodes
    stack = parse_stack(raw)
    patches = talos.node_patches(stack, stack.nodes[3], IMAGE)
    # Iluvatar's two (the machine's, and the control plane's for monitoring and sign-in), then the stack's, then the machine's.
    assert len(patches) == 4
    # (With sign-in, the control plane's patch also carries the StaticHostConfig naming Dex's address.)
    assert set(next(yaml.safe_load_all(patches[1]))["cluster"]) == {"etcd", "scheduler", "controllerManager", "apiServer"}
    assert yaml.safe_load(patches[2]) == {"machine": {"sysctls": {"vm.nr_hugepages": "1024"}}}
    assert yaml.safe_load(patches[3])["kind"] == "RawVolumeConfig"
    for p in patches:
        for doc in yaml.safe_load_all(p):
            assert talos_errors(doc) == []


def test_install_disk_selector_is_rendered_as_talos_disk_selector() -> None:
    raw = dict(__import__("stacks").read_stack_file(HOMELAB).config)
    nodes = list(raw["iluvatar:nodes"])
    nodes[6] = {**nodes[6], "installDisk": {"model": "Samsung SSD 870*", "size": ">= 100GB", "type": "ssd", "busPath": "/pci0000:00/*"}}
    raw["iluvatar:nodes"] = nodes
    stack = parse_stack(raw)
    config = _docs(stack, "gandalf")[0]
    assert config["machine"]["install"] == {
        "diskSelector": {"size": ">= 100GB", "model": "Samsung SSD 870*", "type": "ssd", "busPath": "/pci0000:00/*"},
        "image": IMAGE,
        "wipe": False,
    }
    assert talos_errors(config) == []


def test_vlan_machine_gets_its_vlans_address_and_route() -> None:
    raw = dict(__import__("stacks").read_stack_file(HOMELAB).config)
    nodes = list(raw["iluvatar:nodes"])
    nodes[7] = {**nodes[7], "vlan": "iot", "ip": "192.168.20.32"}
    raw["iluvatar:nodes"] = nodes
    docs = _docs(parse_stack(raw), "saruman")
    link = next(d for d in docs if d.get("kind") == "LinkConfig")
    assert link["addresses"] == [{"address": "192.168.20.32/24"}]
    assert link["routes"] == [{"gateway": "192.168.20.1"}]
    assert docs[0]["machine"]["kubelet"]["nodeIP"]["validSubnets"] == ["192.168.20.0/24"]


def test_schematics_carry_storage_extensions_and_sbc_overlays() -> None:
    assert talos.schematic(BOARDS["generic-x86"]) == {
        "customization": {"systemExtensions": {"officialExtensions": ["siderolabs/iscsi-tools", "siderolabs/util-linux-tools"]}}
    }
    assert talos.schematic(BOARDS["rk1"])["overlay"] == {"image": "siderolabs/sbc-rockchip", "name": "turingrk1"}
    assert [b.name for b in talos.schematic_boards(load_stack_file(HOMELAB))] == ["generic-x86"]


def test_kernel_arguments_go_into_their_boards_schematic_only() -> None:
    """arda.kernelArgs, by board: the schematic's customization.extraKernelArgs (what Image Factory builds into the
    installer), so the board's ID and every one of its machines' installer change; another board's stay as they were."""
    raw = dict(__import__("stacks").read_stack_file(RK1).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "kernelArgs": {"rk1": ["console=ttyS2,1500000", "-talos.halt_if_installed"]}}
    stack = parse_stack(raw)
    assert talos.kernel_args(stack, "rk1") == ("console=ttyS2,1500000", "-talos.halt_if_installed")
    assert talos.kernel_args(stack, BOARDS["generic-arm64"]) == ()
    assert talos.schematic(BOARDS["rk1"], talos.kernel_args(stack, "rk1")) == {
        "customization": {
            "extraKernelArgs": ["console=ttyS2,1500000", "-talos.halt_if_installed"],
            "systemExtensions": {"officialExtensions": ["siderolabs/iscsi-tools", "siderolabs/util-linux-tools"]},
        },
        "overlay": {"image": "siderolabs/sbc-rockchip", "name": "turingrk1"},
    }
    changed = talos.schematic_id("rk1", talos.kernel_args(stack, "rk1"))
    assert changed != BOARD_IDS["rk1"]
    assert talos.schematic_id("generic-arm64", talos.kernel_args(stack, "generic-arm64")) == BOARD_IDS["generic-arm64"]


def test_config_path_is_what_ipxe_expands_the_mac_to() -> None:
    assert talos.config_path("a8:b8:e0:20:00:02") == "/configs/a8-b8-e0-20-00-02.yaml"


def test_patches_are_deterministic() -> None:
    stack = load_stack_file(HOMELAB)
    assert [talos.node_patches(stack, n, IMAGE) for n in stack.arda_nodes] == [talos.node_patches(stack, n, IMAGE) for n in stack.arda_nodes]


def test_the_talos_invokes_inputs() -> None:
    """What the Talos provider is given: the bare Kubernetes version, the VIP's API endpoint, a machine type per role."""
    stack = load_stack_file(HOMELAB)
    assert (talos.kubernetes_version(stack), talos.cluster_endpoint(stack)) == ("1.35.1", "https://192.168.0.20:6443")
    # A control plane generated as a worker would never start etcd; a worker as a control plane would join etcd.
    assert {n.name: talos.machine_type(n) for n in stack.arda_nodes} == {
        "taniquetil": "controlplane",
        "tirion": "controlplane",
        "alqualonde": "controlplane",
        "gandalf": "worker",
        "saruman": "worker",
    }


def test_the_generic_worker_takes_dhcp_and_a_generated_hostname() -> None:
    raw = dict(__import__("stacks").read_stack_file(RK1).config)
    docs = talos.generic_worker_documents(parse_stack(raw), "generic-arm64", "/dev/nvme0n1", IMAGE)
    assert docs == [
        {
            "machine": {
                "install": {"disk": "/dev/nvme0n1", "image": IMAGE, "wipe": False},
                "features": {"kubePrism": {"enabled": True, "port": 7445}},
                "nodeLabels": {"iluvatar/role": "istari", "iluvatar/board": "generic-arm64", "iluvatar/generic": "true"},
                # rk1 has monitoring, so logs: a generic worker sends its services' logs and kernel's messages too.
                "logging": {"destinations": [{"endpoint": "tcp://10.10.0.10:6050/", "format": "json_lines"}]},
            },
            # A worker: no allowSchedulingOnControlPlanes even where the stack allows it (rk1).
            "cluster": {"network": {"cni": {"name": "none"}}, "proxy": {"disabled": True}},
        },
        {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"},
        {"apiVersion": "v1alpha1", "kind": "ResolverConfig", "nameservers": [{"address": "10.10.0.1"}, {"address": "9.9.9.9"}]},
        {"apiVersion": "v1alpha1", "kind": "KmsgLogConfig", "name": "iluvatar-logs", "url": "tcp://10.10.0.10:6051/"},
    ]


def test_the_schematic_text_the_provider_gets() -> None:
    assert talos.schematic_yaml(BOARDS["rk1"]) == (
        "customization:\n  systemExtensions:\n    officialExtensions:\n    - siderolabs/iscsi-tools\n    - siderolabs/util-linux-tools\n"
        "overlay:\n  image: siderolabs/sbc-rockchip\n  name: turingrk1\n"
    )


def test_each_boards_schematic_id_is_image_factorys() -> None:
    """Image Factory's IDs (tests/plans/test_imagefactory.py), not hashes of the text: rk1's is 85f68390..., not 92fdcedd...."""
    assert {name: talos.schematic_id(board) for name, board in BOARDS.items()} == BOARD_IDS
    assert talos.schematic_id("rk1") == BOARD_IDS["rk1"] != TEXT_HASH_RK1


def test_the_generic_workers_board_gets_its_schematic() -> None:
    raw = dict(__import__("stacks").read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {
        **raw["iluvatar:ainur"],
        "netboot": {"mode": "dhcp", "unknownMacs": "generic-worker", "genericWorker": {"board": "generic-arm64", "installDisk": "/dev/sda"}},
    }
    assert [b.name for b in talos.schematic_boards(parse_stack(raw))] == ["generic-arm64", "generic-x86"]


def test_the_link_is_up_with_its_address_and_route() -> None:
    """The whole LinkConfig: `up: false` passes the schema and leaves the machine off the network."""
    link = next(d for d in _docs(load_stack_file(HOMELAB), "gandalf") if d.get("kind") == "LinkConfig")
    assert link == {
        "apiVersion": "v1alpha1",
        "kind": "LinkConfig",
        "name": "lan0",
        "up": True,
        "addresses": [{"address": "192.168.0.31/24"}],
        "routes": [{"gateway": "192.168.0.1"}],
    }


def test_every_data_disk_is_announced_comma_separated() -> None:
    raw = dict(__import__("stacks").read_stack_file(HOMELAB).config)
    nodes = list(raw["iluvatar:nodes"])
    nodes[4] = {**nodes[4], "dataDisks": ["/dev/nvme0n1", "/dev/sdb"]}
    raw["iluvatar:nodes"] = nodes
    config = _docs(parse_stack(raw), "tirion")[0]
    assert config["machine"]["nodeAnnotations"] == {"iluvatar/data-disks": "/dev/nvme0n1,/dev/sdb"}
