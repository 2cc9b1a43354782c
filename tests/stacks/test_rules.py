"""Cross-section rules that the fixture set does not reach on its own."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from stacks import StackConfigError, load_stack_file, parse_stack, read_stack_file
from stacks.releases import KUBERNETES_NEWEST, TALOS_MINORS, newest_kubernetes
from stacks.rules import TALOS_KUBERNETES, by_path_bus_path, install_disk_problems
from stacks.warn import warnings
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack


def _raw(path: Path = HOMELAB) -> dict[str, Any]:
    return dict(read_stack_file(path).config)


def test_single_control_plane_is_a_valid_quorum() -> None:
    raw = _raw(RK1)
    raw["iluvatar:nodes"] = raw["iluvatar:nodes"][:1]
    raw["iluvatar:storage"] = {"arda": {"ceph": {"replicas": 1}}}  # one OSD host: one copy
    stack = parse_stack(raw)
    assert len(stack.nodes) == 1


@pytest.mark.parametrize("talos", sorted(TALOS_KUBERNETES))
def test_support_matrix_bounds_are_inclusive(talos: tuple[int, int]) -> None:
    low, high = TALOS_KUBERNETES[talos]
    for minor, ok in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
        raw = _raw()
        raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "talosVersion": f"v{talos[0]}.{talos[1]}.0", "kubernetesVersion": f"v1.{minor}.0"}
        # Without Ceph, whose Rook needs Kubernetes 1.31 (fixture rook-needs-kubernetes-1-31): Talos's bounds alone.
        raw["iluvatar:nodes"] = [
            {k: v for k, v in n.items() if k != "dataDisks" or n["role"] not in ("valinor", "istari")} for n in raw["iluvatar:nodes"]
        ]
        raw["iluvatar:storage"] = {"arda": {"defaultClass": "local-path"}}
        # Nor the apps' backups, whose Snapshot copies need Ceph's snapshots.
        raw["iluvatar:apps"] = [{k: v for k, v in a.items() if k != "backup"} for a in raw["iluvatar:apps"]]
        if ok and minor <= max(KUBERNETES_NEWEST):
            parse_stack(raw)
        elif ok:
            # Inside Talos's bounds but past the newest minor released when this Iluvatar was made: refused for that
            # alone, and the message says so (no image exists yet).
            with pytest.raises(StackConfigError, match=rf"Kubernetes 1\.{minor} had no release when this Iluvatar was made") as err:
                parse_stack(raw)
            assert len(err.value.problems) == 1
        else:
            with pytest.raises(StackConfigError, match=r"iluvatar:arda\.kubernetesVersion"):
                parse_stack(raw)


@pytest.mark.parametrize(
    ("talos", "message"),
    [
        ("v1.99.0", "v1.99.0 is not a Talos release this version of Iluvatar supports (v1.12 to v1.14); the newest it knows is v1.14.1"),
        (
            "v1.11.3",
            "v1.11.3 is not a Talos release this version of Iluvatar supports (v1.12 to v1.14); a cluster on it first goes to Talos v1.12 "
            "with an Iluvatar that knows both (a new cluster: write v1.14.1)",
        ),
    ],
)
def test_a_talos_minor_no_stack_may_run_is_refused_with_the_path_that_works(talos: str, message: str) -> None:
    raw = _raw()
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "talosVersion": talos}
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert str(err.value.problems[0]) == f"iluvatar:arda.talosVersion: {message}"


def test_main_shipped_talos_1_12_stack_still_validates() -> None:
    # Review H3 of issue #42: main shipped Talos v1.12.4 and Kubernetes v1.34.1; updating Iluvatar must not refuse a
    # stack that keeps them (nor force it across two Talos minors in the run that makes an unrelated change).
    raw = _raw()
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "talosVersion": "v1.12.4", "kubernetesVersion": "v1.34.1"}
    assert parse_stack(raw).arda.talos_version == "v1.12.4"


def test_node_on_a_vlan_is_checked_against_that_vlan_not_the_lan() -> None:
    raw = _raw()
    nodes = list(raw["iluvatar:nodes"])
    nodes[7] = {**nodes[7], "vlan": "iot", "ip": "192.168.20.32"}
    raw["iluvatar:nodes"] = nodes
    stack = parse_stack(raw)
    assert stack.nodes[7].vlan == "iot"


def test_broken_node_does_not_hide_other_nodes_problems() -> None:
    raw = _raw()
    nodes = list(raw["iluvatar:nodes"])
    nodes[0] = {**nodes[0], "mac": "bad"}
    nodes[7] = {**nodes[7], "ip": "192.168.0.21"}
    raw["iluvatar:nodes"] = nodes
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert err.value.paths() == ["iluvatar:nodes[0].mac", "iluvatar:nodes[7].ip"]


def test_a_lan_of_eight_addresses_is_not_too_small() -> None:
    """The smallest LAN accepted is a /29; a /30 is refused (fixture lan-too-small)."""
    raw = _raw(RK1)
    raw.pop("iluvatar:monitoring")  # its Grafana app does not fit either
    raw["iluvatar:network"] = {
        "lan": "10.10.0.0/29",
        "gateway": "10.10.0.1",
        "dns": ["10.10.0.1"],
        "dhcpRange": {"start": "10.10.0.2", "end": "10.10.0.2"},
        "loadBalancerPool": {"start": "10.10.0.5", "end": "10.10.0.6"},
        "domain": "turing.home.arpa",
    }
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "vip": "10.10.0.3"}
    raw["iluvatar:nodes"] = [{**raw["iluvatar:nodes"][0], "ip": "10.10.0.4"}]
    # No apps: without the Ainur, apps would need a LAN resolver, a third pool address a /29 has no room for.
    del raw["iluvatar:apps"]
    raw["iluvatar:storage"] = {"arda": {"ceph": {"replicas": 1}}}  # one OSD host: one copy
    stack = parse_stack(raw)
    assert str(stack.network.lan) == "10.10.0.0/29"


def test_a_machine_may_be_called_ainur_when_there_are_no_ainur() -> None:
    raw = _raw(RK1)
    raw["iluvatar:nodes"] = [{**raw["iluvatar:nodes"][0], "name": "ainur"}, *raw["iluvatar:nodes"][1:]]
    assert parse_stack(raw).nodes[0].name == "ainur"


def test_a_selector_and_by_id_data_disks_of_other_serials_are_accepted() -> None:
    # The install selector's serial is another disk's than each by-id data disk's, its partition's, its namespace's.
    raw = _raw()
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    nodes[3] = {
        **nodes[3],
        "installDisk": {"serial": "S64ANS0T111111"},
        "dataDisks": ["/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T222222_1", "/dev/disk/by-id/wwn-0x5002538e40a1b2c3"],
    }
    raw["iluvatar:nodes"] = nodes
    stack = parse_stack(raw)
    assert stack.nodes[3].data_disks[0].endswith("S64ANS0T222222_1")


@pytest.mark.parametrize(
    "disk", ["/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T111111_1", "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S64ANS0T111111-part1"]
)
def test_a_by_id_data_disk_of_the_selectors_serial_is_refused_in_every_udev_form(disk: str) -> None:
    raw = _raw()
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    nodes[3] = {**nodes[3], "installDisk": {"serial": "S64ANS0T1*"}, "dataDisks": [disk]}
    raw["iluvatar:nodes"] = nodes
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert [p.path for p in err.value.problems] == ["iluvatar:nodes[3].dataDisks[0]"]


def test_a_data_disk_that_is_a_partition_of_the_install_disk_is_told_so_once() -> None:
    # Writing the partition's disk instead, as a partition elsewhere is told to, would name the system disk.
    raw = _raw()
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    nodes[3] = {**nodes[3], "installDisk": "/dev/nvme0n1", "dataDisks": ["/dev/nvme0n1p3"]}
    raw["iluvatar:nodes"] = nodes
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert [(p.path, p.message) for p in err.value.problems] == [
        (
            "iluvatar:nodes[3].dataDisks[0]",
            "/dev/nvme0n1p3 is a partition of installDisk /dev/nvme0n1: Ceph and Longhorn take whole disks, and this one holds "
            "the system; name another disk",
        )
    ]


def test_a_pod_network_that_holds_the_service_network_validates(tmp_path: Path) -> None:
    """kube-controller-manager's range allocator occupies the shares a Service network inside the pod network covers
    (filterOutServiceRange) and hands out the rest: 10.0.0.0/8 around Talos's 10.96.0.0/12 leaves 65536 - 4096 /24 shares,
    so the overlap is no refusal."""
    from stacks.rules import _free_shares

    doc = edit(homelab_doc(), {"iluvatar:arda.patches": [{"cluster": {"network": {"podSubnets": ["10.0.0.0/8"]}}}]})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert _free_shares(IPv4Network("10.0.0.0/8"), [IPv4Network("10.96.0.0/12")], 24) == 65536 - 4096
    # Two Service networks, one inside the other, and one narrower than a share: each share counted once.
    nets = [IPv4Network("10.244.0.0/22"), IPv4Network("10.244.1.0/24"), IPv4Network("10.244.8.16/28")]
    assert _free_shares(IPv4Network("10.244.0.0/16"), nets, 24) == 256 - 5
    assert _free_shares(IPv4Network("10.96.0.0/16"), [IPv4Network("10.96.0.0/12")], 24) == 0


# Every version key written out of range, past its table, as a minor alone or as a tag, beside each Talos a stack may run:
# one problem, at the key, whose fix written back literally validates (and so does the other Talos it names, if any).
_VERSION_FIX = re.compile(r"(?:write|e\.g\.|the newest it knows is) .*?(?<![\d.])(v?\d+\.\d+\.\d+(?:\+k3s\d+)?)")
_OTHER_TALOS = re.compile(r"or arda\.talosVersion (v\d+\.\d+\.\d+), which runs")
VERSIONS_WRITTEN = [
    *(
        ("arda.kubernetesVersion", v)
        for v in ("v2.0.0", "v1.99.0", "v1.38.0", "v1.37.0", "v1.36.9", "v1.36.2", "v1.29.0", "v0.9.0", "1.36", "1.31", "1.29", "v1.37", "v1.99")
    ),
    *(("arda.talosVersion", v) for v in ("v2.0.0", "v1.15.0", "v1.14.9", "v1.11.0", "v0.9.0", "1.14", "v1.15")),
    *(
        ("ainur.k3sVersion", v)
        for v in ("v1.37.0+k3s1", "v1.35.99+k3s1", "v1.29.5+k3s1", "v1.34.0+k3s1", "v1.32.11+k3s2", "1.35", "v1.37", "v1.35.8", "2.0.0")
    ),
    *(("arda.cilium.version", v) for v in ("1.18", "1.17", "v1.18.4", "2.0")),
    *(("gitops.argocd.version", v) for v in ("10.8", "v10.8.0", "9.1")),
]


def _set(raw: dict[str, Any], key: str, value: str) -> None:
    section, *path = key.split(".")
    target = raw[f"iluvatar:{section}"] = dict(raw[f"iluvatar:{section}"])
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


@pytest.mark.parametrize("talos", sorted(row.newest for row in TALOS_MINORS if row.target))
@pytest.mark.parametrize(("key", "written"), VERSIONS_WRITTEN, ids=[f"{k}={v}" for k, v in VERSIONS_WRITTEN])
def test_a_version_refused_names_a_fix_that_validates(talos: str, key: str, written: str) -> None:
    raw = _raw()
    _set(raw, "arda.talosVersion", talos)
    # Each Talos's newest Kubernetes release, so that the key written is the one thing wrong.
    _set(raw, "arda.kubernetesVersion", newest_kubernetes(talos) or "")
    parse_stack(raw)
    _set(raw, key, written)
    try:
        parse_stack(raw)
    except StackConfigError as e:
        err = e
    else:
        assert (key, written) == ("arda.kubernetesVersion", "v1.36.2") and talos != "v1.12.11"  # 1.13 and 1.14 run 1.36
        return
    [problem] = err.problems
    assert problem.path == f"iluvatar:{key}"
    fix = _VERSION_FIX.search(problem.message)
    assert fix is not None, problem.message
    _set(raw, key, fix.group(1))
    parse_stack(raw)
    if (other := _OTHER_TALOS.search(problem.message)) is not None:
        _set(raw, key, written)
        _set(raw, "arda.talosVersion", other.group(1))
        parse_stack(raw)


# Upper-case kernel names whose lower case the rules refuse too (an IDE name, a partition, a controller, an eMMC boot
# area, RAID and device-mapper volumes, loop and optical devices), beside ones whose lower case is a disk.
_UPPER_CASE_NAMES = [
    "/dev/SDA",
    "/dev/Nvme1n1",
    "/dev/MMCBLK0",
    "/dev/HDA",
    "/dev/HDB2",
    "/dev/SDA1",
    "/dev/NVME0",
    "/dev/NVME0N0",
    "/dev/Nvme1n1p2",
    "/dev/MMCBLK0BOOT0",
    "/dev/MMCBLK0RPMB",
    "/dev/SR0",
    "/dev/MD0",
    "/dev/DM-1",
    "/dev/LOOP0",
    "/dev/NBD0",
    "/dev/ZRAM0",
]


@pytest.mark.parametrize("disk", _UPPER_CASE_NAMES)
@pytest.mark.parametrize(("talos", "install"), [(True, False), (False, False), (False, True)])
def test_every_fix_of_an_upper_case_name_passes_the_disk_rules(disk: str, talos: bool, install: bool) -> None:
    # The fix said for an upper-case kernel name (stacks.rules.no_such_device) is a disk the same rules take, for a data
    # disk (on Talos or Ubuntu) and an install disk alike; where the lower-case name is refused too, the message says so.
    from stacks.rules import _whole_disk_problem, install_disk_problems, no_such_device

    said = install_disk_problems(disk)[0] if install else no_such_device(disk, talos=talos)
    assert said is not None and said.startswith(f"{disk} is no device name: the kernel names disks in lower case")
    lowered = disk.lower()
    if install:
        refused = next(iter(install_disk_problems(lowered)), None)
    else:
        refused = no_such_device(lowered, talos=talos) or _whole_disk_problem(lowered, False)
    assert (f"; in lower case, {lowered} " in said) == (refused is not None), said
    fix = re.search(r"write (/dev/[^ ;,]+)", said.rsplit("; in lower case, ", 1)[-1])
    if fix is None:
        return  # advice in words (write one of the machine's disks): no name to check
    name = fix.group(1)
    assert name == name.lower()
    if install:
        assert install_disk_problems(name) == [], said
    else:
        assert no_such_device(name, talos=talos) is None and _whole_disk_problem(name, False) is None, said


# Subnet lists Talos filters a machine's addresses through (stacks.rules._address_filters), written so that every
# machine keeps its address: the kubelet's entries are appended to the subnet plans.talos writes, the VIP's exclusion
# is Talos's own, and a later patch's entries are appended to an earlier one's.
KEEPS_AN_ADDRESS = [
    {"iluvatar:arda.patches": [{"machine": {"kubelet": {"nodeIP": {"validSubnets": ["10.0.0.0/8"]}}}}]},
    {"iluvatar:arda.patches": [{"machine": {"kubelet": {"nodeIP": {"validSubnets": ["!192.168.0.20/32"]}}}}]},
    {"iluvatar:arda.patches": [{"cluster": {"etcd": {"advertisedSubnets": ["192.168.0.0/24", "!192.168.0.20"]}}}]},
    {"iluvatar:arda.patches": [{"cluster": {"etcd": {"subnet": "192.168.0.0/24", "listenSubnets": ["192.168.0.21/30"]}}}]},
    {
        "iluvatar:arda.patches": [{"cluster": {"etcd": {"advertisedSubnets": ["10.0.0.0/8"]}}}],
        **{f"iluvatar:nodes[{i}].talosPatches": [{"cluster": {"etcd": {"advertisedSubnets": ["192.168.0.0/24"]}}}] for i in (3, 4, 5)},
    },
    # etcd on a VLAN of its own, each control plane's address there given by its own patch.
    {
        "iluvatar:arda.patches": [{"cluster": {"etcd": {"advertisedSubnets": ["10.10.0.0/24"]}}}],
        **{
            f"iluvatar:nodes[{i}].talosPatches": [
                {
                    "apiVersion": "v1alpha1",
                    "kind": "VLANConfig",
                    "name": "etcd0",
                    "vlanID": 30,
                    "parent": "enp1s0",
                    "addresses": [{"address": f"10.10.0.2{i - 2}/24"}],
                }
            ]
            for i in (3, 4, 5)
        },
    },
    # An address from a DHCP server on another link cannot be known here: the list is left unjudged.
    {
        "iluvatar:arda.patches": [
            {"cluster": {"etcd": {"advertisedSubnets": ["10.10.0.0/24"]}}},
            {"apiVersion": "v1alpha1", "kind": "DHCPv4Config", "name": "enp2s0"},
        ]
    },
]


@pytest.mark.parametrize("edits", KEEPS_AN_ADDRESS)
def test_subnet_lists_that_keep_each_machines_address_validate(edits: dict[str, Any], tmp_path: Path) -> None:
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), edits)), require_secrets=True)


def test_the_fix_for_etcd_subnets_that_hold_no_control_plane_validates(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:arda.patches": [{"cluster": {"etcd": {"advertisedSubnets": ["10.0.0.0/8"]}}}]})
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    (problem,) = err.value.problems
    fix = re.search(r"; write (\[[^]]+\]), the control planes' own subnet", str(problem))
    assert fix is not None
    subnets = fix.group(1).strip("[]").split(", ")
    doc = edit(homelab_doc(), {"iluvatar:arda.patches": [{"cluster": {"etcd": {"advertisedSubnets": subnets}}}]})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


def test_filter_ips_reads_the_list_in_order_as_talos_does() -> None:
    from ipaddress import IPv4Address

    from stacks.rules import _filter_ips

    ip = IPv4Address("192.168.0.21")
    assert _filter_ips([ip], ["192.168.0.0/24", "!192.168.0.21"]) == []
    assert _filter_ips([ip], ["!192.168.0.21", "192.168.0.0/24"]) == [ip]  # the exclusion came before the entry
    assert _filter_ips([ip], ["!10.0.0.0/8"]) == []  # an exclusion alone adds nothing
    assert _filter_ips([ip], ["192.168.0.21"]) == [ip]  # an address is its /32
    assert _filter_ips([ip], ["fd00::/8", "192.168.0.16/28"]) == [ip]
    assert _filter_ips([ip], ["lan"]) is None


# A component's image a patch may keep: the release arda.kubernetesVersion names (v1.35.1 in the homelab), from any
# registry, with a digest beside the tag, or a kubelet variant Talos's upgrade keeps; and the mirror the refusal offers.
SAME_RELEASE = [
    {"cluster": {"apiServer": {"image": "mirror.lan:5000/kube-apiserver:v1.35.1"}}},
    {"cluster": {"controllerManager": {"image": "registry.k8s.io/kube-controller-manager:v1.35.1@sha256:" + "0" * 64}}},
    {"machine": {"kubelet": {"image": "ghcr.io/siderolabs/kubelet:v1.35.1-fat"}}},
    {"apiVersion": "v1alpha1", "kind": "RegistryMirrorConfig", "name": "registry.k8s.io", "endpoints": [{"url": "https://mirror.lan:5000"}]},
]


@pytest.mark.parametrize("patch", SAME_RELEASE)
def test_a_component_image_of_the_stacks_release_validates(patch: dict[str, Any], tmp_path: Path) -> None:
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:arda.patches": [patch]})), require_secrets=True)


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.k8s.io/kube-apiserver:v1.35.1", "v1.35.1"),
        ("mirror.lan:5000/kube-apiserver", None),
        ("mirror.lan:5000/kube-apiserver:v1.35.1@sha256:abc", "v1.35.1"),
        ("registry.k8s.io/kube-apiserver@sha256:abc", None),
    ],
)
def test_image_tag_reads_a_registry_port_apart_from_a_tag(image: str, tag: str | None) -> None:
    from stacks.rules import image_tag

    assert image_tag(image) == tag


def _volume(match: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1alpha1",
        "kind": "UserVolumeConfig",
        "name": "media",
        "provisioning": {"diskSelector": {"match": match}, "minSize": "100GB"},
    }


BY_ID = "/dev/disk/by-id/nvme-Samsung_SSD_990_PRO_2TB_S73WNJ0W123456A"

# Volume selectors false for every data disk as the inventory tells it (stacks.cel), and one Iluvatar cannot read on a
# machine with no data disk: each validates.
KEEPS_OFF_CEPH = [
    {"iluvatar:nodes[3].talosPatches": [_volume("system_disk")]},
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.dev_path == '/dev/sdb' && !system_disk")]},
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.transport == 'nvme' && !system_disk && disk.dev_path != '/dev/nvme0n1'")]},
    {"iluvatar:arda.patches": [_volume("(disk.dev_path == '/dev/nvme0n1' || disk.size > 1u * TB) && disk.dev_path != '/dev/nvme0n1'")]},
    # An sd data disk is no NVMe disk, whichever bus it is on.
    {
        "iluvatar:nodes[3].installDisk": "/dev/nvme0n1",
        "iluvatar:nodes[3].dataDisks": ["/dev/sda"],
        "iluvatar:nodes[3].talosPatches": [_volume("disk.transport == 'nvme' && !system_disk")],
    },
    {"iluvatar:nodes[3].dataDisks": [BY_ID], "iluvatar:nodes[3].talosPatches": [_volume("disk.serial == 'S73WNJ0W999999B'")]},
    {"iluvatar:nodes[3].dataDisks": [BY_ID], "iluvatar:nodes[3].talosPatches": [_volume(f"!system_disk && !('{BY_ID}' in disk.symlinks)")]},
    {"iluvatar:nodes[6].talosPatches": [_volume("has(disk.size)")]},
    # Talos's own forms, typed as its checker types them (the size units are uint), kept off the data disk.
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.size > 120u * GB && disk.size < 1u * TB && disk.dev_path != '/dev/nvme0n1'")]},
    {"iluvatar:nodes[6].talosPatches": [_volume("disk.size > 120u * GB && disk.size < 1u * TB")]},
    # size(), an escape, a raw string, exists: CEL Talos takes, read as it reads it.
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.dev_path == '/dev/sdb' && size(disk.symlinks) > 0")]},
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.dev_path.matches('^/dev/sd\\\\w$')")]},
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.dev_path.matches(r'^/dev/sd\\w$')")]},
    {"iluvatar:nodes[3].talosPatches": [_volume("disk.dev_path == '/dev/sdb' && disk.symlinks.exists(l, l.contains('Samsung'))")]},
    # go-glob's `?` is itself, so this names no disk /dev/nvme0n1 is.
    {"iluvatar:nodes[3].talosPatches": [_volume("glob('/dev/nvme?n1', disk.dev_path)")]},
    # An NVMe data disk's link spells its model: another model's spelling is another disk's.
    {"iluvatar:nodes[3].dataDisks": [BY_ID], "iluvatar:nodes[3].talosPatches": [_volume("disk.model == 'Samsung SSD 870 EVO 1TB' && !system_disk")]},
]


@pytest.mark.parametrize("edits", KEEPS_OFF_CEPH)
def test_volume_selectors_that_keep_off_every_data_disk_validate(edits: dict[str, Any], tmp_path: Path) -> None:
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), edits)), require_secrets=True)


# Selectors Talos refuses (the int/uint mixes of tests/fixtures/invalid_stacks.yaml): the selector the message says to
# write validates.
@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("iluvatar:nodes[3].talosPatches", "disk.dev_path == '/dev/sdb' && disk.size > 100 * GB"),
        ("iluvatar:nodes[3].talosPatches", "disk.size > 120 * GB && disk.size < 1 * TB"),
        ("iluvatar:arda.patches", "disk.transport == 'nvme' && disk.size > 1 * TB"),
        ("iluvatar:nodes[6].talosPatches", "disk.size >= size(disk.symlinks)"),
    ],
)
def test_the_fix_a_refused_selectors_message_writes_validates(where: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(StackConfigError) as raised:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {where: [_volume(match)]})), require_secrets=True)
    [problem] = raised.value.problems
    fix = re.findall(r"write `([^`]*)`$", str(problem))
    assert len(fix) == 1, str(problem)
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {where: [_volume(fix[0])]})), require_secrets=True)


# An etcd image a patch may keep: the etcd arda.talosVersion runs (3.7.1 at v1.14.1, the homelab's), from any registry,
# with or without a v, or as registry.k8s.io's -0 build of it.
@pytest.mark.parametrize("image", ["registry.k8s.io/etcd:3.7.1", "mirror.lan:5000/etcd:v3.7.1", "registry.k8s.io/etcd:3.7.1-0"])
def test_an_etcd_image_of_the_talos_releases_etcd_validates(image: str, tmp_path: Path) -> None:
    patch = {"cluster": {"etcd": {"image": image}}}
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:arda.patches": [patch]})), require_secrets=True)


# A later patch of the release's etcd minor is warned of (stacks.warn._etcd_newer_patch), not refused; an earlier patch,
# another minor, no tag or no release is compared as before.
@pytest.mark.parametrize(
    ("talos", "image", "newer"),
    [
        ("v1.14.1", "registry.k8s.io/etcd:3.7.2", True),
        ("v1.14.1", "registry.k8s.io/etcd:3.7.10-0", True),
        ("v1.14.1", "gcr.io/etcd-development/etcd:v3.7.2", True),
        ("v1.14.1", "registry.k8s.io/etcd:3.7.1", False),
        ("v1.14.1", "registry.k8s.io/etcd:3.7.0", False),
        ("v1.14.1", "registry.k8s.io/etcd:3.8.0", False),
        ("v1.14.1", "registry.k8s.io/etcd:3.6.99", False),
        ("v1.14.1", "registry.k8s.io/etcd", False),
        ("v1.14.1", "registry.k8s.io/etcd:latest", False),
        ("v1.13.5", "registry.k8s.io/etcd:v3.6.13", True),
        ("v1.13.5", "registry.k8s.io/etcd:v3.6.12", False),
    ],
)
def test_newer_etcd_patch_at_each_boundary(talos: str, image: str, newer: bool) -> None:
    from stacks.rules import newer_etcd_patch

    assert newer_etcd_patch(talos, image) is newer


def test_an_etcd_image_at_a_talos_1_13_release_is_compared_with_its_etcd(tmp_path: Path) -> None:
    """At v1.13.5 Talos runs etcd v3.6.12 (pkg/machinery/constants/constants.go:428): that validates, v3.6.11 does not."""

    def stack(image: str) -> Path:
        patches = [{"cluster": {"etcd": {"image": image}}}]
        return write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:arda.talosVersion": "v1.13.5", "iluvatar:arda.patches": patches}))

    load_stack_file(stack("registry.k8s.io/etcd:v3.6.12"), require_secrets=True)
    with pytest.raises(StackConfigError) as raised:
        load_stack_file(stack("registry.k8s.io/etcd:v3.6.11"), require_secrets=True)
    assert [str(p).split(": the patch")[0] for p in raised.value.problems] == [
        "iluvatar:arda.patches[0].cluster.etcd.image: registry.k8s.io/etcd:v3.6.11 is etcd 3.6.11, not etcd 3.6.12, the etcd Talos v1.13.5 runs"
    ]


_SATA = "/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"


@pytest.mark.parametrize(
    ("link", "bus_path", "said"),
    [
        # path_id's ata-<port>.<target> and its compat ata-<port>, against the busPath Talos prints down to the device.
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.0", _SATA, "same"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1", _SATA, "same"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.1", _SATA, None),  # another target of the port
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-2.0", _SATA, None),
        ("/dev/disk/by-path/pci-0000:00:1f.2-ata-1.0", _SATA, None),  # another controller
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.0", "/pci0000:00/0000:00:17.0/ata1/*", "same"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.2.0", "/pci0000:00/0000:00:17.0/ata1/host0/target0:2:0/0:2:0:0", "same"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.2.0", _SATA, None),  # behind a port multiplier's port 2
        # ata3 may be port 1 of a controller counted after one of two ports; port 4 of it cannot be.
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1", "/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0", "maybe"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-4", "/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0", None),
        # port 3 is ata3 only where no port was counted before this controller's
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-3.0", "/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0", "maybe"),
        ("/dev/disk/by-path/pci-0000:00:1f.2-ata-1.0", "/pci0000:00/0000:00:1F.2/ata1/host0/target0:0:0/0:0:0:0", None),  # case-exact
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-3.0", "/pci0000:00/0000:00:17.0/ata\u0663/host2/target2:0:0/2:0:0:0", None),
        ("/dev/disk/by-path/pci-0000:01:00.0-nvme-1", "/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/nvme0n1", "same"),
        ("/dev/disk/by-path/pci-0000:01:00.0-nvme-1", _SATA, None),
        ("/dev/disk/by-path/pci-0000:01:00.0-nvme-2", "/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme", "namespace"),
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.0", "/pci0000:00/0000:00:17.0/*", "class"),  # every port of it
        ("/dev/disk/by-path/pci-0000:00:17.0-ata-1.0", "/pci0000:00/0000:00:17.0/*/host0/*", None),  # the glob does not say
    ],
)
def test_a_by_path_link_is_read_as_path_id_writes_it(link: str, bus_path: str, said: str | None) -> None:
    assert by_path_bus_path(link, bus_path) == said


@pytest.mark.parametrize(
    "disk", ["/dev/sda", "/dev/sdaa", "/dev/vdb", "/dev/xvda", "/dev/nvme0n1", "/dev/nvme12n3", "/dev/mmcblk0", "/dev/disk/by-id/ata-X_Y"]
)
def test_whole_disk_names_are_taken(disk: str) -> None:
    assert install_disk_problems(disk) == []


@pytest.mark.parametrize(
    "disk",
    ["/dev/ng0n1", "/dev/nvme0c1n1", "/dev/sg3", "/dev/bsg/1:0:0:0", "/dev/root", "/dev/fd0", "/dev/nst0", "/dev/nvme-fabrics", "/dev/ubiblock0_0"],
)
def test_other_device_nodes_are_refused_once(disk: str) -> None:
    assert len(install_disk_problems(disk)) == 1


def test_a_persistent_memory_namespace_is_a_whole_disk() -> None:
    # Talos lists pmem<n> as a disk (a block device of type disk) and its arm64 kernel builds the driver in.
    assert install_disk_problems("/dev/pmem0") == []


@pytest.mark.parametrize(
    "dns",
    [["192.168.0.10", "192.168.0.15"], ["192.168.0.16", "192.168.0.12", "192.168.0.21"], ["192.168.0.1", "192.168.0.21"]],
    ids=["the-ainurs-vip-and-git-mirror", "three-of-the-homelabs-addresses", "beside-the-router"],
)
def test_a_dns_entry_at_the_homelabs_address_is_said_at_the_entry_and_its_fix_validates(dns: list[str], tmp_path: Path) -> None:
    # Each entry is one slip, said at network.dns[i]; its first fix applied to every entry (the router, offered once,
    # then "remove it") leaves a stack that validates with no warning of network.dns (no server listed twice).
    doc = homelab_doc()
    doc["config"]["iluvatar:network"]["dns"] = dns
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    problems = err.value.problems
    assert [p.path for p in problems] == [f"iluvatar:network.dns[{i}]" for i in range(len(dns)) if dns[i] != "192.168.0.1"]
    fixed = list(dns)
    for p in problems:
        i = int(p.path.removeprefix("iluvatar:network.dns[").removesuffix("]"))
        if "; write the LAN's resolver in" in p.message:
            found = re.search(r"the router, network\.gateway (\S+), or a Pi-hole;", p.message)
            assert found is not None, p.message
            fixed[i] = found.group(1)
        else:
            assert "; remove it (" in p.message, p.message
            fixed[i] = ""
    doc["config"]["iluvatar:network"]["dns"] = [d for d in fixed if d]
    stack = load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path.startswith("iluvatar:network.dns")] == []


def test_a_dns_entry_at_the_homelabs_address_beside_another_resolver_is_removed_and_the_router_not_added(tmp_path: Path) -> None:
    # A Pi-hole stays listed: the fix removes the entry, never writes the router beside it, and the stack then validates
    # with no warning of network.dns.
    doc = homelab_doc()
    doc["config"]["iluvatar:network"]["dns"] = ["192.168.0.16", "192.168.0.53"]
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    [problem] = err.value.problems
    assert problem.path == "iluvatar:network.dns[0]"
    assert "; remove it (network.dns[1] 192.168.0.53 stays, the resolver they go to); " in problem.message
    assert "network.gateway" not in problem.message
    doc["config"]["iluvatar:network"]["dns"] = ["192.168.0.53"]
    stack = load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert [str(w) for w in warnings(stack) if w.path.startswith("iluvatar:network.dns")] == []
