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
from stacks import disk_ids, load_stack_file
from stacks.load import load_yaml
from stacks.model import DiskSelector
from tests.edit import HOMELAB

SSD = {"id": "sda", "devPath": "/dev/sda", "size": 250 * 10**9, "model": "Samsung SSD 860", "serial": "S3Z", "transport": "sata",
       "symlinks": ["/dev/disk/by-id/ata-Samsung_SSD_860_S3Z", "/dev/disk/by-id/wwn-0x5002"]}  # fmt: skip
NVME = {"id": "nvme0n1", "devPath": "/dev/nvme0n1", "size": 10**12, "model": "WD Blue", "serial": "22A", "transport": "nvme",
        "symlinks": ["/dev/disk/by-id/nvme-eui.e823", "/dev/disk/by-id/nvme-WD_Blue_22A"]}  # fmt: skip


def machine(
    *disks: dict[str, Any],
    volumes: tuple[dict[str, Any], ...] = (),
    arch: str | None = "amd64",
    mac: str = "02:00:5e:00:0d:01",
    blank: tuple[str, ...] = (),
) -> discovery.Machine:
    """Every disk has a GPT (Talos publishes the whole disk's volume named "gpt"), but those named in `blank`: Talos read
    nothing on them (its whole-disk volume has no name)."""
    tables = [{"id": d["id"], "devPath": d["devPath"], "type": "disk", "name": "" if d["id"] in blank else "gpt"} for d in disks]
    return discovery.Machine.from_json(
        {
            "name": f"discovery-{arch}-x",
            "address": "192.168.0.90",
            "arch": arch or "",
            "disks": list(disks),
            "volumes": [*tables, *volumes],
            "links": [],
        },
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
    assert disk_ids.glob(pattern, subject) is matches


@given(st.text(alphabet=st.characters(blacklist_characters="*"), max_size=20))
def test_a_pattern_without_a_wildcard_matches_only_itself(text: str) -> None:
    assert disk_ids.glob(text, text)
    assert not disk_ids.glob(text, text + "x")


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
    assert e.problem.startswith("its disks cannot be told apart by model, serial and WWID (vda, vdb: model QEMU HARDDISK, serial none, wwid none)")
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
        'not a data disk: nvme0n1 1000000000000 B NVMe "WD Blue" serial 22A (holds ntfs): it holds ntfs, which storage would wipe; '
        "to give it to storage, add it to dataDisks" in e.notes
    )


def test_no_architecture_no_mac_no_disk_each_say_why() -> None:
    stack = load_stack_file(HOMELAB)
    assert "architecture is unknown" in discovery.entry(stack, machine(SSD, arch=None), IPv4Address("192.168.0.33"), set()).problem
    assert "no discovery name, lease or link with a MAC" in discovery.entry(stack, machine(SSD, mac=""), IPv4Address("192.168.0.33"), set()).problem
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


# --- review 1: an install disk that holds something, machine-supplied text, NICs, WWIDs ---------------------------

WINDOWS = ({"parentDevPath": "/dev/sda", "partitionLabel": "EFI system partition", "name": "vfat"},
           {"parentDevPath": "/dev/sda", "partitionLabel": "Basic data partition", "name": "ntfs"})  # fmt: skip


def test_an_install_disk_holding_another_system_is_never_chosen_without_wipe() -> None:
    """Talos installs with force (v1alpha1_sequencer_tasks.go:1541 at v1.12.4), which wipes whatever the disk holds:
    the only disk holding Windows gets no entry unless the user names the machine with --wipe."""
    stack = load_stack_file(HOMELAB)
    alone = machine(SSD, volumes=WINDOWS)
    e = discovery.entry(stack, alone, IPv4Address("192.168.0.33"), set())
    assert e.node is None
    assert e.problem == (
        "every disk it could install to holds something: sda holds EFI system partition, Basic data partition, and installing Talos "
        "wipes its install disk whatever it holds (installer WithForce); to install there, give --wipe 02:00:5e:00:0d:01"
    )
    wiped = discovery.entry(stack, alone, IPv4Address("192.168.0.33"), set(), wipe=True)
    assert wiped.node is not None and wiped.node["installDisk"] == {"model": "Samsung SSD 860", "serial": "S3Z"}
    assert "installDisk sda holds EFI system partition, Basic data partition: installing Talos wipes it (--wipe)" in wiped.notes
    # An empty disk is taken before the smaller SSD that holds Windows, which is named as passed over.
    empty_hdd = {**SSD, "id": "sdb", "devPath": "/dev/sdb", "size": 10**12, "model": "WDC", "serial": "W1", "rotational": True}
    e = discovery.entry(stack, machine(SSD, empty_hdd, volumes=WINDOWS), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and e.node["installDisk"] == {"model": "WDC", "serial": "W1"}
    assert "dataDisks" not in e.node
    assert (
        "passed over for installDisk: sda holds EFI system partition, Basic data partition; to install there instead (wiping it), "
        "give --wipe 02:00:5e:00:0d:01"
    ) in e.notes
    # The plan passes --wipe by MAC, for that machine only.
    ms = [machine(SSD, volumes=WINDOWS), machine(SSD, volumes=WINDOWS, mac="02:00:5e:00:0e:01")]
    entries = discovery.plan(stack, ms, wipe=["02:00:5E:00:0E:01"]).entries
    assert [e.node is not None for e in entries] == [False, True]


def test_an_earlier_talos_is_replaced_but_a_talos_user_volume_is_data() -> None:
    talos = tuple({"parentDevPath": "/dev/sda", "partitionLabel": label} for label in ("EFI", "META", "STATE", "EPHEMERAL"))
    stack = load_stack_file(HOMELAB)
    e = discovery.entry(stack, machine(SSD, volumes=talos), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and "installDisk sda holds an earlier Talos install: installing replaces it" in e.notes
    # A user volume (u-) beside them is a workload's data: not "an earlier Talos", so not installed over.
    with_data = (*talos, {"parentDevPath": "/dev/sda", "partitionLabel": "u-postgres"})
    assert discovery.entry(stack, machine(SSD, volumes=with_data), IPv4Address("192.168.0.33"), set()).node is None
    # Review 2 LOW 7: an earlier Talos on a second disk is installed over, not left beside a new one (two META and
    # STATE partitions, of which Talos mounts the first it finds); the empty disk is data.
    nv = tuple({"parentDevPath": "/dev/nvme0n1", "partitionLabel": label} for label in ("META", "STATE"))
    e = discovery.entry(stack, machine(SSD, NVME, volumes=nv), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and e.node["installDisk"] == {"model": "WD Blue", "serial": "22A"}
    assert e.node["dataDisks"] == ["/dev/disk/by-id/ata-Samsung_SSD_860_S3Z"]
    # Talos's own partitions on a disk it does not install to are not offered as a data disk (review 1 LOW 12).
    e = discovery.entry(stack, machine(SSD, NVME, volumes=nv), IPv4Address("192.168.0.33"), set(), wipe=True)
    assert e.node is not None and e.node["installDisk"] == {"model": "Samsung SSD 860", "serial": "S3Z"} and "dataDisks" not in e.node
    assert any(n.startswith("not a data disk: nvme0n1") and "an earlier Talos's partitions" in n for n in e.notes)


GPT_SDA = {"id": "sda", "devPath": "/dev/sda", "type": "disk", "name": "gpt"}
HOSTILE = "Samsung\nconfig:\n  iluvatar:nodes: []\u2028# x"


def test_machine_text_is_made_printable_and_never_used_in_a_selector() -> None:
    """A model with a newline (anyone on the LAN can answer as a machine) stays one escaped line of a comment and is
    not a selector field; the stack file gains only the entry's own lines."""
    evil = {**SSD, "model": HOSTILE, "serial": "S3Z"}
    m = discovery.Machine.from_json(
        {"name": "discovery-amd64-x", "address": "192.168.0.90", "arch": "amd64", "disks": [evil], "volumes": [GPT_SDA], "links": [],
         "system": {"manufacturer": "ACME\r\n- {name: evil}", "productName": "Box"}},
        "02:00:5e:00:0d:01",
    )  # fmt: skip
    assert m.disks[0].model == "Samsung\\x0aconfig:\\x0a  iluvatar:nodes: []\\u2028# x"
    assert m.system is not None and m.system["manufacturer"] == "ACME\\x0d\\x0a- {name: evil}"
    e = discovery.entry(load_stack_file(HOMELAB), m, IPv4Address("192.168.0.33"), set())
    assert e.node is not None and e.node["installDisk"] == {"serial": "S3Z"}  # the escaped model is not the disk's
    from iluvatar.discover import entry_lines

    lines = entry_lines(e, "    ")
    assert all("\n" not in line and "\r" not in line and "\u2028" not in line for line in lines)
    assert [line for line in lines if not line.lstrip().startswith("#")] == ["    - " + flow(e.node)]
    assert discovery.printable("tab\there\\") == "tab\\x09here\\"
    assert not discovery.exact("a\\x0ab") and discovery.exact("Samsung SSD 860")


def test_a_sata_disk_without_a_serial_is_told_apart_by_its_wwid() -> None:
    """Talos reports no serial for a SATA disk (sysfs device/serial is NVMe's and virtio's; udev's ata_id runs for
    transport ata and scsi only) but its WWID: the selector carries it, and it tells two disks of one model apart."""
    a = {**SSD, "serial": "", "wwid": "naa.5002538e40a1b2c3"}
    b = {**SSD, "id": "sdb", "devPath": "/dev/sdb", "size": 500 * 10**9, "serial": "", "wwid": "naa.5002538e40ffffff"}
    e = discovery.entry(load_stack_file(HOMELAB), machine(a, b), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and e.node["installDisk"] == {"model": "Samsung SSD 860", "wwid": "naa.5002538e40a1b2c3"}
    only_model = discovery.entry(load_stack_file(HOMELAB), machine({**SSD, "serial": ""}), IPv4Address("192.168.0.33"), set())
    assert only_model.node is not None and only_model.node["installDisk"] == {"model": "Samsung SSD 860"}
    assert any("chosen by its model alone" in n for n in only_model.notes)


NIC1, NIC2 = "02:00:5e:00:0d:01", "02:00:5e:00:0d:02"


def two_nics(name_mac: str, lease_mac: str, address: str = "192.168.0.90", configured: bool = False) -> discovery.Machine:
    links = [{"id": "enp1s0", "physical": True, "up": True, "permanentAddr": NIC1, "hardwareAddr": NIC1},
             {"id": "enp2s0", "physical": True, "up": True, "permanentAddr": NIC2, "hardwareAddr": NIC2}]  # fmt: skip
    return discovery.Machine.from_json(
        {"name": f"discovery-amd64-{name_mac.replace(':', '-')}", "hostname": f"discovery-amd64-{name_mac.replace(':', '-')}",
         "address": address, "disks": [SSD], "volumes": [GPT_SDA], "links": links, "configured": configured},
        lease_mac,
    )  # fmt: skip


def test_a_machine_with_two_nics_is_one_entry_with_the_mac_it_netbooted_from() -> None:
    stack = load_stack_file(HOMELAB)
    # Found by the second NIC's lease: the MAC is the one its discovery name carries (the NIC its firmware booted).
    m = two_nics(NIC1, NIC2)
    assert (m.mac, m.lease_mac, m.arch) == (NIC1, NIC2, "amd64")
    # Found twice (one lease per NIC): one entry.
    p = discovery.plan(stack, [m, two_nics(NIC1, NIC1, "192.168.0.91")])
    assert [e.node["mac"] for e in p.entries if e.node] == [NIC1]
    assert len(p.entries) == 1
    # A name whose MAC none of its links has is not trusted.
    stranger = two_nics("02:00:5e:00:0f:0f", NIC1)
    assert "none of its links has that MAC" in discovery.entry(stack, stranger, IPv4Address("192.168.0.33"), set()).problem


def test_a_second_nic_of_a_known_machine_is_that_machine() -> None:
    stack = load_stack_file(HOMELAB)
    known = stack.arda_nodes[0]
    links = [{"id": "enp1s0", "physical": True, "up": True, "permanentAddr": known.mac, "hardwareAddr": known.mac},
             {"id": "enp2s0", "physical": True, "up": True, "permanentAddr": NIC2, "hardwareAddr": NIC2}]  # fmt: skip
    m = discovery.Machine.from_json(
        {"name": "x", "hostname": f"discovery-amd64-{NIC2.replace(':', '-')}", "address": "192.168.0.90", "disks": [SSD], "links": links}, NIC2
    )
    p = discovery.plan(stack, [m])
    assert (p.entries, [(x.mac, name) for x, name in p.known]) == ([], [(NIC2, known.name)])


def test_a_configured_talos_is_named_so_with_how_to_reset_it() -> None:
    e = discovery.entry(load_stack_file(HOMELAB), two_nics(NIC1, NIC1, configured=True), IPv4Address("192.168.0.33"), set())
    assert e.node is None and e.problem.startswith("it answers as a configured Talos, not in maintenance mode")
    assert "talosctl reset --graceful=false --reboot" in e.problem


@pytest.mark.parametrize("text", ["12e3", "0o17", "0b101", "1_2", "+.inf", ".NaN", "null", "TRUE", "2024-01-02", "yes", "on", "0x1F", "12345"])
def test_a_value_yaml_1_2_reads_as_no_string_is_quoted(text: str) -> None:
    """Review 1 LOW 9: Pulumi reads the stack file with gopkg.in/yaml.v3 (YAML 1.2), PyYAML is 1.1: a serial such as
    12e3 (a float to 1.2, a string to 1.1) is quoted, so both read the string the disk reported."""
    assert scalar(text) == f'"{text}"'


@pytest.mark.parametrize("text", ["S3Z9NB0K123456A", "naa.5002538e40a1b2c3", "192.168.0.33", "Samsung SSD 860", "WD-WCC4M1234567", "inf"])
def test_a_plain_string_in_both_yaml_versions_stays_plain(text: str) -> None:
    assert scalar(text) == text


def test_write_keeps_crlf_a_symlink_and_validates_beside_pulumi_yaml(tmp_path: Path) -> None:
    """Review 1 LOW 10 and 11: a CRLF file stays CRLF, a symlinked stack file stays a symlink (its target written),
    and the written stack is validated beside the project's Pulumi.yaml."""
    from iluvatar.discover import write

    real = tmp_path / "real"
    real.mkdir()
    (real / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    text = HOMELAB.read_text().replace("./stacks/stack.schema.json", str(HOMELAB.parent / "stacks/stack.schema.json"))
    target = real / "Pulumi.homelab.yaml"
    target.write_bytes(text.replace("\n", "\r\n").encode())
    link = tmp_path / "Pulumi.homelab.yaml"
    link.symlink_to(target)
    stack = load_stack_file(link)
    e = discovery.entry(stack, machine(SSD), IPv4Address("192.168.0.33"), {n.name for n in stack.nodes})
    assert write(link, stack, [e]) == 1
    assert link.is_symlink()
    raw = target.read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert load_stack_file(link).nodes[-1].mac == "02:00:5e:00:0d:01"


def test_a_disk_talos_reads_nothing_on_is_never_taken_without_wipe() -> None:
    """Review 2 HIGH 2: Talos 1.12 names a disk's content by go-blockdevice v2.0.23's blkid, which has no btrfs, mdraid,
    NTFS or exFAT prober: a disk used whole by one of them is published with no name and no partition, as a blank one
    is. Not proof of empty: it is neither the install disk nor a data disk without --wipe."""
    stack = load_stack_file(HOMELAB)
    md = {**SSD, "id": "sdb", "devPath": "/dev/sdb", "size": 100 * 10**9, "model": "WDC", "serial": "W1"}
    os_disk = ({"parentDevPath": "/dev/sda", "partitionLabel": "", "name": "ext4"},)
    # An old NAS: a partitioned OS disk (holds ext4), and a whole-disk md member Talos reads nothing on.
    e = discovery.entry(stack, machine(SSD, md, volumes=os_disk, blank=("sdb",)), IPv4Address("192.168.0.33"), set())
    assert e.node is None
    assert e.problem == (
        "Talos reads nothing on sdb, the disk it would install to: it is blank, or used whole by what Talos 1.12 cannot read "
        "(btrfs, an mdraid member, NTFS, exFAT, f2fs, bcache, ...), and installing Talos wipes it; if it holds nothing you keep, "
        "give --wipe 02:00:5e:00:0d:01"
    )
    assert discovery.Disk.from_json(md, [{"devPath": "/dev/sdb", "type": "disk", "name": ""}]).describe() == (
        'sdb 100000000000 B SATA SSD "WDC" serial W1 (Talos reads nothing on it: blank, or used whole by what Talos 1.12 '
        "cannot read (btrfs, an mdraid member, NTFS, exFAT, f2fs, bcache, ...))"
    )
    # --wipe: the user says it holds nothing they keep; it is taken (the smaller SSD holds ext4, wiped too as ranked).
    w = discovery.entry(stack, machine(SSD, md, volumes=os_disk, blank=("sdb",)), IPv4Address("192.168.0.33"), set(), wipe=True)
    assert w.node is not None and w.node["installDisk"] == {"model": "WDC", "serial": "W1"}
    # An empty GPT beside it: installed there; the unreadable disk is not data without --wipe, named with the fix.
    e = discovery.entry(stack, machine(SSD, md, blank=("sdb",)), IPv4Address("192.168.0.33"), set())
    assert e.node is not None and e.node["installDisk"] == {"model": "Samsung SSD 860", "serial": "S3Z"} and "dataDisks" not in e.node
    assert any(n.startswith("not a data disk: sdb") and n.endswith("give --wipe 02:00:5e:00:0d:01") for n in e.notes)
    assert discovery.entry(stack, machine(SSD, md, blank=("sdb",)), IPv4Address("192.168.0.33"), set(), wipe=True).node == {
        **e.node, "installDisk": {"model": "WDC", "serial": "W1"}, "dataDisks": ["/dev/disk/by-id/ata-Samsung_SSD_860_S3Z"]
    }  # fmt: skip
