"""A Talos volume's CEL disk selector read against what the inventory tells of a disk (stacks.cel)."""

from __future__ import annotations

import pytest

from stacks import cel, rules

NVME = "/dev/nvme0n1"
SATA = "/dev/sda"
BY_ID = "/dev/disk/by-id/nvme-Samsung_SSD_990_PRO_2TB_S73WNJ0W123456A"
DIGITS = "/dev/disk/by-id/nvme-Fanxiang_S500PRO_1TB_2023051500123"
WWN = "/dev/disk/by-id/wwn-0x5002538e4099a1b2"
U = cel.UNKNOWN


def _disk(name: str, system_disk: bool = False) -> cel.Disk:
    return cel.inventory_disk(name, system_disk=system_disk, transport=rules._transport(name))


def _value(match: str, name: str, system_disk: bool = False) -> object:
    return cel.evaluate(cel.parse(match), _disk(name, system_disk)).value


@pytest.mark.parametrize(
    ("match", "disk", "value"),
    [
        # The reviewer's forms, on the shipped homelab's data disk.
        ("disk.transport == 'nvme' && !system_disk", NVME, True),
        ("disk.dev_path == '/dev/nvme0n1' || disk.dev_path == '/dev/sdb'", NVME, True),
        ("(disk.dev_path == '/dev/nvme0n1')", NVME, True),
        ("disk.dev_path.startsWith('/dev/nvme')", NVME, True),
        ("disk.dev_path == '/dev/nvme0n1' && disk.size > 100u * GB", NVME, U),
        ("disk.dev_path=='/dev/nvme0n1'", NVME, True),
        # A known part false makes a conjunction false whatever the unknown parts are; a known part true, a disjunction true.
        ("disk.dev_path == '/dev/sdb' && disk.size > 100u * GB", NVME, False),
        ("disk.size > 100u * GB || disk.dev_path == '/dev/nvme0n1'", NVME, True),
        ("disk.size > 100u * GB || disk.dev_path == '/dev/sdb'", NVME, U),
        ("!(disk.dev_path == '/dev/nvme0n1') && disk.size > 0u", NVME, False),
        # system_disk: true for the install disk alone.
        ("system_disk", NVME, False),
        ("system_disk", SATA, False),
        ("!system_disk", NVME, True),
        # transport: an sd name is no NVMe and no SD/eMMC disk, but which bus it is the name does not tell.
        ("disk.transport == 'nvme'", SATA, False),
        ("disk.transport != 'nvme'", SATA, True),
        ("disk.transport == 'sata'", SATA, U),
        ("disk.transport == 'sata' && !disk.rotational && !system_disk", NVME, False),
        ("disk.transport == 'sata' && !disk.rotational && !system_disk", SATA, U),
        ("!disk.rotational", NVME, True),
        # String functions on known and partly known values (a by-id link's kernel name is /dev/nvme<something>).
        ("disk.dev_path.endsWith('n1')", NVME, True),
        ("disk.dev_path.contains('sd')", NVME, False),
        ("disk.dev_path.matches('^/dev/nvme[0-9]+n1$')", NVME, True),
        ("disk.dev_path.matches('^/dev/sd')", NVME, False),
        ("disk.dev_path.matches('(?i)NVME')", NVME, U),
        ("disk.dev_path.startsWith('/dev/nvme')", BY_ID, True),
        ("disk.dev_path.startsWith('/dev/sd')", BY_ID, False),
        ("disk.dev_path == '/dev/nvme0n1'", BY_ID, U),
        ("disk.dev_path == '/dev/sda'", BY_ID, False),
        ("glob('/dev/nvme*', disk.dev_path)", NVME, True),
        ("glob('/dev/sd*', disk.dev_path)", BY_ID, False),
        # glob() is go-glob's (celenv.go:50): `?` and `[...]` are themselves, so these match no disk of those names.
        ("glob('/dev/nvme?n1', disk.dev_path)", NVME, False),
        ("glob('/dev/nvme[!0]n1', disk.dev_path)", "/dev/nvme1n1", False),
        ("glob('/dev/nvme*n1', disk.dev_path)", NVME, True),
        ("glob('S73WNJ0W*', disk.serial)", BY_ID, True),
        ("glob('S73WNJ0W?23456A', disk.serial)", BY_ID, False),
        # symlinks: the link the inventory writes is one; another model_serial link of the bus is another disk's; a
        # kernel name tells no link.
        (f"'{BY_ID}' in disk.symlinks", BY_ID, True),
        (f"'{BY_ID}_1' in disk.symlinks", BY_ID, U),
        ("'/dev/disk/by-id/nvme-Samsung_SSD_990_PRO_2TB_S73WNJ0W999999B' in disk.symlinks", BY_ID, False),
        # Division truncates toward zero, as cel-go's; by zero it is CEL's error, no disk's true nor false.
        ("-7 / 2 == -3", NVME, True),
        ("disk.dev_path == '/dev/sdb' || 1u / 0u == 1u", NVME, U),
        ("disk.dev_path == '/dev/sdb' && 1u / 0u == 1u", NVME, False),
        # A serial of digits alone: the namespace's link is the disk's link with _<nsid> after it, either way round.
        (f"'{DIGITS}_1' in disk.symlinks", DIGITS, U),
        (f"'{DIGITS}' in disk.symlinks", f"{DIGITS}_1", U),
        (f"'{DIGITS}_2' in disk.symlinks", f"{DIGITS}_1", False),
        ("'/dev/disk/by-id/nvme-eui.0025388b11223344' in disk.symlinks", BY_ID, U),
        (f"'{BY_ID}' in disk.symlinks", NVME, U),
        (f"!('{BY_ID}' in disk.symlinks)", BY_ID, False),
        # serial: the last part of a model_serial link (before an NVMe namespace's number); wwid: a wwn or eui link's.
        ("disk.serial == 'S73WNJ0W123456A'", BY_ID, True),
        ("disk.serial == 'S73WNJ0W999999B'", BY_ID, False),
        ("disk.serial == 'S73WNJ0W123456A'", NVME, U),
        ("disk.serial.startsWith('S73WNJ0W')", BY_ID, True),
        ("disk.wwid == 'naa.5002538e4099a1b2'", WWN, True),
        ("disk.wwid == 'naa.5002538e4099ffff'", WWN, False),
        ("disk.wwid == 'naa.5002538e4099a1b2'", NVME, U),
        # Literals: both quotes, uint and int, the unit constants (celenv.go:253-267), a list for `in`.
        ('disk.dev_path == "/dev/nvme0n1"', NVME, True),
        ("1u * GiB == 1073741824u && 2 * TB > 1999 * GB", NVME, True),
        ("disk.dev_path in ['/dev/sda', '/dev/nvme0n1']", NVME, True),
        ("disk.dev_path in ['/dev/sda', '/dev/sdb']", NVME, False),
        ("system_disk ? false : disk.dev_path == '/dev/nvme0n1'", NVME, True),
        ("disk.size > 10u ? true : true", NVME, True),
    ],
)
def test_a_selector_is_three_valued_at_the_edge_of_what_the_inventory_tells(match: str, disk: str, value: object) -> None:
    assert _value(match, disk) is value


@pytest.mark.parametrize(
    ("match", "reason"),
    [
        ("disk.foo == 'x'", "disk.foo is not a field of Talos's disk (block.DiskSpec)"),
        ("size(disk.symlinks) > 0", "size is not read here (disk, system_disk, glob and the size units are)"),
        ("disk.dev_path == '/dev/nvme0n1\\''", "\"'/dev/nvme0n1\\\\''\" is not read (a string with an escape, a raw or bytes string, a double)"),
        ("disk.dev_path == '/dev/nvme0n1", '"\'/dev/nvme0n1" is not read (a string with an escape, a raw or bytes string, a double)'),
        ("disk.size >>> 10", "'>' is not read there"),
        ("disk.dev_path.size() > 1", ".size() is not read here (startsWith, endsWith, contains and matches are)"),
        ("disk.dev_path", "it is not a boolean"),
        ("disk.dev_path == 1", "it compares values of two types with =="),
    ],
)
def test_a_selector_outside_the_subset_is_unreadable(match: str, reason: str) -> None:
    with pytest.raises(cel.UnreadableError) as err:
        cel.evaluate(cel.parse(match), _disk(NVME))
    assert str(err.value) == reason


@pytest.mark.parametrize(
    ("match", "disks"),
    [
        ("disk.transport == 'nvme' && !system_disk", [NVME]),
        ("disk.dev_path == '/dev/nvme0n1' || disk.dev_path == '/dev/sdb'", [NVME]),
        ("system_disk ? false : disk.size > 10u * GB", [NVME, SATA]),
        ("disk.serial == 'S73WNJ0W123456A'", [BY_ID, WWN]),
        ("disk.size > 10u", ["/dev/disk/by-path/pci-0000:01:00.0-nvme-1"]),
    ],
)
def test_the_fix_a_refusal_suggests_selects_none_of_the_data_disks(match: str, disks: list[str]) -> None:
    fixed = cel.parse(rules.volume_fix(match, disks))
    assert [cel.evaluate(fixed, _disk(d)).value for d in disks] == [False] * len(disks)
