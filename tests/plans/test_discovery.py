"""plans.discovery: which disk Talos goes to, the selector that tells it apart, the next free address, the entry;
and iluvatar.discover's writing of it (a flow line YAML reads back as written, after the list's last line)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iluvatar.discover import DiscoverError, flow, insert_entries, scalar
from plans import discovery
from stacks import load_stack_file
from stacks.load import load_yaml
from stacks.model import DiskSelector
from tests.edit import HOMELAB

SSD = {"id": "sda", "devPath": "/dev/sda", "size": 250 * 10**9, "model": "Samsung SSD 860", "serial": "S3Z", "transport": "sata",
       "symlinks": ["/dev/disk/by-id/ata-Samsung_SSD_860_S3Z", "/dev/disk/by-id/wwn-0x5002"]}  # fmt: skip
NVME = {"id": "nvme0n1", "devPath": "/dev/nvme0n1", "size": 10**12, "model": "WD Blue", "serial": "22A", "transport": "nvme",
        "symlinks": ["/dev/disk/by-id/nvme-eui.e823", "/dev/disk/by-id/nvme-WD_Blue_22A"]}  # fmt: skip


def machine(
    *disks: dict[str, Any], volumes: tuple[dict[str, Any], ...] = (), arch: str | None = "amd64", mac: str = "02:00:5e:00:0d:01"
) -> discovery.Machine:
    return discovery.Machine.from_json(
        {"name": f"discovery-{arch}-x", "address": "192.168.0.90", "arch": arch or "", "disks": list(disks), "volumes": list(volumes), "links": []},
        mac,
    )


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("Samsung SSD 860", "Samsung SSD 860", True),
        ("Samsung SSD 860", "Samsung SSD 860 EVO", False),  # no wildcard: the whole string
        ("Samsung*", "Samsung SSD 860", True),
        ("*860", "Samsung SSD 860", True),
        ("S*S*0", "Samsung SSD 860", True),
        ("S*x*0", "Samsung SSD 860", False),
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("a?c", "abc", False),  # go-glob has no `?`: a literal
    ],
)
def test_glob_is_go_globs(pattern: str, subject: str, matches: bool) -> None:
    assert discovery.glob(pattern, subject) is matches


@given(st.text(alphabet=st.characters(blacklist_characters="*"), max_size=20))
def test_a_pattern_without_a_wildcard_matches_only_itself(text: str) -> None:
    assert discovery.glob(text, text)
    assert not discovery.glob(text, text + "x")


def test_the_install_disk_is_the_smallest_solid_state_one_and_its_selector_model_and_serial() -> None:
    hdd = {**SSD, "id": "sdb", "devPath": "/dev/sdb", "size": 100 * 10**9, "model": "WDC", "serial": "W1", "rotational": True}
    stick = {**SSD, "id": "sdc", "devPath": "/dev/sdc", "size": 10**9, "model": "Ultra", "serial": "U1", "transport": "usb"}
    m = machine(NVME, SSD, hdd, stick)
    assert discovery.install_disk(m.disks).id == "sda"  # type: ignore[union-attr]
    stack = load_stack_file(HOMELAB)
    e = discovery.entry(stack, m, IPv4Address("192.168.0.33"), set())
    assert e.node == {
        "name": "node-000d01", "role": "istari", "arch": "amd64", "board": "generic-x86", "mac": "02:00:5e:00:0d:01", "ip": "192.168.0.33",
        "installDisk": {"model": "Samsung SSD 860", "serial": "S3Z"},
        # by model and serial, not eui (another number for the same disk); the rotating disk is empty, so it is data too
        "dataDisks": ["/dev/disk/by-id/nvme-WD_Blue_22A", "/dev/disk/by-id/ata-Samsung_SSD_860_S3Z"],
    }  # fmt: skip


def test_twins_cannot_be_told_apart_and_get_no_entry() -> None:
    twin = {"devPath": "/dev/vda", "id": "vda", "size": 10**10, "model": "QEMU HARDDISK", "transport": "virtio"}
    e = discovery.entry(load_stack_file(HOMELAB), machine(twin, {**twin, "id": "vdb", "devPath": "/dev/vdb"}), IPv4Address("192.168.0.33"), set())
    assert e.node is None
    assert e.problem.startswith("its disks cannot be told apart by model and serial (vda, vdb: model QEMU HARDDISK, serial none)")
    # A serial that is a prefix of the other's is told apart: no wildcard, the whole string.
    a = {**twin, "serial": "A1"}
    b = {**twin, "id": "vdb", "devPath": "/dev/vdb", "serial": "A12"}
    assert discovery.entry(load_stack_file(HOMELAB), machine(a, b), IPv4Address("192.168.0.33"), set()).node is not None


def test_a_wildcard_in_a_model_that_would_match_another_disk_is_no_selector() -> None:
    one = {**SSD, "model": "Disk*", "serial": "X"}
    other = {**SSD, "id": "sdb", "devPath": "/dev/sdb", "size": 10**13, "model": "Disk 2", "serial": "X"}
    assert discovery._selector(discovery.Disk.from_json(one, []), [discovery.Disk.from_json(d, []) for d in (one, other)]) is None


def test_a_disk_holding_another_system_is_not_taken_for_data() -> None:
    volumes = ({"parentDevPath": "/dev/nvme0n1", "partitionLabel": "", "name": "ntfs"},)
    e = discovery.entry(load_stack_file(HOMELAB), machine(SSD, NVME, volumes=volumes), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and "dataDisks" not in e.node
    assert (
        'not a data disk: nvme0n1 1000000000000 B NVMe "WD Blue" serial 22A (holds ntfs); to give it to storage (which wipes it), add it to dataDisks'
        in e.notes
    )


def test_no_architecture_no_mac_no_disk_each_say_why() -> None:
    stack = load_stack_file(HOMELAB)
    assert "architecture is unknown" in discovery.entry(stack, machine(SSD, arch=None), IPv4Address("192.168.0.33"), set()).problem
    assert "no lease and no link" in discovery.entry(stack, machine(SSD, mac=""), IPv4Address("192.168.0.33"), set()).problem
    assert "no disk Talos could install to" in discovery.entry(stack, machine({**SSD, "readonly": True}), IPv4Address("192.168.0.33"), set()).problem


def test_addresses_follow_the_role_and_skip_every_pool_and_holder() -> None:
    stack = load_stack_file(HOMELAB)
    assert discovery.next_addresses(stack, 3) == [IPv4Address("192.168.0.33"), IPv4Address("192.168.0.34"), IPv4Address("192.168.0.35")]
    assert discovery.next_addresses(stack, 1, role="valinor") == [IPv4Address("192.168.0.24")]
    taken = discovery.taken_addresses(stack)
    assert {IPv4Address(a) for a in ("192.168.0.1", "192.168.0.10", "192.168.0.14", "192.168.0.15", "192.168.0.16", "192.168.0.20")} <= taken
    # Two new machines: two names, two addresses; a machine of the inventory is skipped.
    ms = [machine(SSD, mac="02:00:5e:00:0d:01"), machine(SSD, mac="02:00:5e:00:0e:01"), machine(SSD, mac="28:d2:44:30:00:01")]
    nodes = [e.node for e in discovery.plan(stack, ms).entries]
    assert [(n["name"], n["ip"]) for n in nodes if n] == [("node-000d01", "192.168.0.33"), ("node-000e01", "192.168.0.34")]


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_a_scalar_reads_back_as_written_in_a_flow_mapping(text: str) -> None:
    assert load_yaml(f"k: {{a: {scalar(text)}, b: 1}}") == {"k": {"a": text, "b": 1}}


def test_a_mac_and_numbers_are_quoted_a_model_is_not() -> None:
    node: dict[str, Any] = {
        "mac": "02:00:5e:00:0d:01",
        "installDisk": {"model": "Samsung SSD 860", "serial": "12345"},
        "dataDisks": ["/dev/disk/by-id/a"],
    }
    assert flow(node) == '{mac: "02:00:5e:00:0d:01", installDisk: {model: Samsung SSD 860, serial: "12345"}, dataDisks: [/dev/disk/by-id/a]}'
    assert DiskSelector(**load_yaml(f"x: {flow(node['installDisk'])}")["x"]).serial == "12345"


def test_entries_go_after_the_lists_last_line_and_its_comments(tmp_path: Path) -> None:
    text = "config:\n  iluvatar:nodes:\n    - {name: a}\n    - name: b\n      ip: 1.2.3.4\n    # more to come\n  # next\n  iluvatar:apps: []\n"
    new, indent = insert_entries(text, tmp_path / "Pulumi.x.yaml", ["    - {name: c}"])
    assert indent == "    "
    assert new == text.replace("    # more to come\n", "    # more to come\n    - {name: c}\n")
    with pytest.raises(DiscoverError, match=r"iluvatar:nodes is written as one \[ ... \] list"):
        insert_entries("config:\n  iluvatar:nodes: [{name: a}]\n", tmp_path / "Pulumi.x.yaml", [])
