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
        ("glob('S73WNJ0W*', disk.serial)", BY_ID, U),
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
        # serial: a run of an nvme- link's last words (before a namespace's number), as a blank in it is a `_` too; an
        # ata-, usb- or scsi- link's is not the serial Talos reads ("" or ata_id's <model>_<serial>); wwid: a wwn or eui link's.
        ("disk.serial == 'S73WNJ0W123456A'", BY_ID, U),
        ("disk.serial == 'S73WNJ0W999999B'", BY_ID, False),
        ("disk.serial == 'S73WNJ0W123456A'", NVME, U),
        ("disk.serial.startsWith('S73WNJ0W')", BY_ID, U),
        ("disk.serial.startsWith('S74')", BY_ID, False),
        ("disk.serial == 'S5GXNF0R 123456'", "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R_123456", U),
        ("disk.serial == 'S5GX NF0R'", "/dev/disk/by-id/nvme-Samsung_SSD_980_S5GX_NF0R", U),
        ("disk.serial.startsWith('S5GX')", "/dev/disk/by-id/nvme-Samsung_SSD_980_S5GX_NF0R", U),
        ("disk.serial == 'S5GX  NF0R'", "/dev/disk/by-id/nvme-Samsung_SSD_980_S5GX_NF0R", U),  # udev writes a run of blanks as one _
        ("disk.serial == 'NF0R 2'", "/dev/disk/by-id/nvme-Samsung_SSD_980_S5GX_NF0R_1", False),
        ("disk.serial != 'S6PXNG0R123456' && !system_disk", "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S6PXNG0R123456", U),
        ("!system_disk && !disk.serial.startsWith('S6PX')", "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S6PXNG0R123456", U),
        ("disk.serial == ''", "/dev/disk/by-id/usb-Samsung_PSSD_T7_S6WRNS0T812345E-0:0", U),
        ("disk.serial == 'x'", "/dev/disk/by-id/scsi-35000c500a1b2c3d4", U),
        ("disk.wwid == 'naa.5002538e4099a1b2'", WWN, True),
        ("disk.wwid == 'naa.5002538e4099ffff'", WWN, False),
        ("disk.wwid == 'naa.5002538e4099a1b2'", NVME, U),
        # Literals: both quotes, uint and int, the unit constants (celenv.go:253-267), a list for `in`.
        ('disk.dev_path == "/dev/nvme0n1"', NVME, True),
        ("1u * GiB == 1073741824u && 2u * TB > 1999u * GB", NVME, True),
        ("disk.dev_path in ['/dev/sda', '/dev/nvme0n1']", NVME, True),
        ("disk.dev_path in ['/dev/sda', '/dev/sdb']", NVME, False),
        ("system_disk ? false : disk.dev_path == '/dev/nvme0n1'", NVME, True),
        ("disk.size > 10u ? true : true", NVME, True),
    ],
)
def test_a_selector_is_three_valued_at_the_edge_of_what_the_inventory_tells(match: str, disk: str, value: object) -> None:
    assert _value(match, disk) is value


# What each literal's and name's CEL type is, as cel-go's checker types it: an int literal, a uint one (`u`), a double,
# the uint size units (celenv.go:270-273) and disk.size (block.proto's uint64), and no conversion between them.
@pytest.mark.parametrize(
    ("match", "value"),
    [
        ("1u * GB == 1000000000u", True),
        ("0x10u == 16u", True),
        ("1000 * 1000 == 1000000", True),
        ("1.5 * 2.0 == 3.0", True),
        ("uint(2) * GB == 2u * GB", True),
        ("int(1u * KiB) == 1024", True),
        ("size('nvme') == 4", True),
        ("'/dev/nvme0n1'.size() == 12", True),
        ("[1, 1u].exists(x, x == 1u)", True),  # a list of two types is a list(dyn), whose == compares by value
        ("[true, false].all(b, b)", False),
        ("['a', 'b'].exists_one(x, x == 'a')", True),
        ("-9223372036854775808 < 0", True),  # int64's least, written as cel-go's parser reads it
        ("7 % -2 == 1 && -7 % 2 == -1", True),  # Go's remainder: the dividend's sign
        ("'b' > 'a' && true > false", True),
        # An error (out of range, by zero) is no value: unknown, not false.
        ("1u - 2u == 0u", U),
        ("9223372036854775807 + 1 > 0", U),
        ("uint(-1) > 0u", U),
        ("1 % 0 == 0", U),
        # A leading zero is base 10 (parser.go:763-795), hex is `0x` alone.
        ("0100u == 100u && 00 == 0 && 0x0100u == 256u", True),
        # Relations chain to the left (CEL.g4:36-39): (1 < 2) == true.
        ("1 < 2 == true", True),
        ("1u > 2u == false != false", True),
        ("!" * 500 + "true", True),  # a run of ! is one rule, however long
        ("true" + " == true" * 250, True),  # 250 relations deep: the most cel-go's parser visits
        (" && ".join(["true"] * 400), True),
        ("(" * 249 + "true" + ")" * 249, True),
    ],
)
def test_numbers_are_typed_and_bounded_at_each_boundary(match: str, value: object) -> None:
    assert _value(match, NVME) is value


# What Talos refuses as it reads the config (volume_config.go:436-437, cel.go:65-80): cel-go's checker's refusal, and
# the fix, where it is an int beside a uint, with every such int fixed and the whole checked again.
@pytest.mark.parametrize(
    ("match", "reason", "fix"),
    [
        (
            "disk.size > 100 * GB",
            "found no matching overload for '_*_' applied to '(int, uint)': in `100 * GB`, 100 is an int and GB a uint, and CEL "
            "converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            "disk.size > 100u * GB",
        ),
        (
            "disk.size > 120 * GB && disk.size < 1 * TB",
            "found no matching overload for '_*_' applied to '(int, uint)': in `120 * GB`, 120 is an int and GB a uint, and CEL "
            "converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            "disk.size > 120u * GB && disk.size < 1u * TB",
        ),
        (
            "disk.size == 0",
            "found no matching overload for '_==_' applied to '(uint, int)': in `disk.size == 0`, disk.size is a uint and 0 an int, "
            "and CEL converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            "disk.size == 0u",
        ),
        (
            "disk.size >= 0x10",
            "found no matching overload for '_>=_' applied to '(uint, int)': in `disk.size >= 0x10`, disk.size is a uint and 0x10 "
            "an int, and CEL converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            "disk.size >= 0x10u",
        ),
        (
            "disk.size > size(disk.symlinks)",
            "found no matching overload for '_>_' applied to '(uint, int)': in `disk.size > size(disk.symlinks)`, disk.size is a "
            "uint and size(disk.symlinks) an int, and CEL converts no number to another (Talos's size units and disk.size are "
            "uint, celenv.go:270-273)",
            "disk.size > uint(size(disk.symlinks))",
        ),
        (
            "disk.size > (100) * GB",
            "found no matching overload for '_*_' applied to '(int, uint)': in `(100) * GB`, (100) is an int and GB a uint, and "
            "CEL converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            "disk.size > uint((100)) * GB",
        ),
        (
            "disk.size > -1",
            "found no matching overload for '_>_' applied to '(uint, int)': in `disk.size > -1`, disk.size is a uint and -1 an int, "
            "and CEL converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            None,
        ),
        (
            "disk.size > 1.5",
            "found no matching overload for '_>_' applied to '(uint, double)': in `disk.size > 1.5`, disk.size is a uint and 1.5 a double",
            None,
        ),
        (
            "disk.dev_path == 1",
            "found no matching overload for '_==_' applied to '(string, int)': in `disk.dev_path == 1`, disk.dev_path is a string and 1 an int",
            None,
        ),
        ("-1u < 0u", "found no matching overload for '-_' applied to '(uint)': `-1u` negates a uint, and CEL negates an int or a double alone", None),
        ("disk.size", "its type is uint, not bool: expression output type is uint, expected bool (cel.go:76-78)", None),
        ("disk.dev_path", "its type is string, not bool: expression output type is string, expected bool (cel.go:76-78)", None),
        ("disk.size && true", "`disk.size` is a uint: && takes bools (found no matching overload for '_&&_')", None),
        ("disk.foo == 'x'", "disk.foo is not a field of Talos's disk (block.DiskSpec): undefined field 'foo'", None),
        ("disk.dev_path.foo == 'x'", "`disk.dev_path.foo`: type 'string' does not support field selection", None),
        (
            "lowerAscii(disk.model) == 'x'",
            "lowerAscii() is no function of Talos's selector environment: undeclared reference to 'lowerAscii' (it has glob() "
            "and cel-go's standard functions, celenv.go:36-57)",
            None,
        ),
        (
            "disk.model.lowerAscii() == 'x'",
            ".lowerAscii() is no function of Talos's selector environment (undeclared reference to 'lowerAscii')",
            None,
        ),
        (
            "disks.size > 1u",
            "disks is no name of Talos's selector environment: undeclared reference to 'disks' (it has disk, system_disk, glob() "
            "and the size units, celenv.go:36-57)",
            None,
        ),
        ("glob('/dev/sd*')", "found no matching overload for 'glob' applied to '(string)' (a pattern and a string)", None),
        (
            "contains(disk.model, 'EVO')",
            "found no matching overload for 'contains' applied to '(string, string)': it is a string's method, written s.contains(x)",
            None,
        ),
        ("size(disk.size) > 0", "found no matching overload for 'size' applied to '(uint)'", None),
        ("disk.transport in 'nvme'", "`'nvme'` is a string: in takes a list", None),
        (
            "disk.size in [1, 2]",
            "found no matching overload for '@in' applied to '(uint, list(int))': in `disk.size in [1, 2]`, disk.size is a uint and [1, 2] a list(int)",
            None,
        ),
        ("disk.dev_path == '/dev/sd\\q'", "'/dev/sd\\q' holds \\q, no escape CEL knows (write \\\\ for a backslash)", None),
        ("disk.dev_path == '/dev/nvme0n1", "\"'/dev/nvme0n1\" is no CEL token (cel-go's parser stops there)", None),
        ("disk.size >>> 10u", "'>' is not CEL there (a syntax error to cel-go's parser)", None),
        # cel-go's lexer is ASCII (CEL.g4:146,175,185-199): a no-break space, a vertical tab, another script's digit,
        # `0X`, a raw CR in a quoted string.
        (
            "disk.size\u00a0> 10u",
            "'\\xa0> 10u' is no CEL token: '\\xa0' (U+00A0) is no character of cel-go's lexer outside a string (its whitespace "
            "is ASCII space, tab, CR, LF and form feed, its digits 0-9 alone); write a plain space or an ASCII digit there",
            "disk.size > 10u",
        ),
        (
            "disk.size >\v10u",
            "'\\x0b10u' is no CEL token: '\\x0b' (U+000B) is no character of cel-go's lexer outside a string (its whitespace "
            "is ASCII space, tab, CR, LF and form feed, its digits 0-9 alone); write a plain space or an ASCII digit there",
            "disk.size > 10u",
        ),
        (
            "disk.size > \u0661u",
            "'\u0661u' is no CEL token: '\u0661' (U+0661) is no character of cel-go's lexer outside a string (its whitespace "
            "is ASCII space, tab, CR, LF and form feed, its digits 0-9 alone); write a plain space or an ASCII digit there",
            "disk.size > 1u",
        ),
        (
            "disk.size > 0X10u",
            "0X10u is no CEL number: cel-go's lexer reads 0 and then a name, a syntax error (a hex number is written 0x10u)",
            "disk.size > 0x10u",
        ),
        ("disk.dev_path == 'a\rb'", "\"'a\\rb'\" is no CEL token (cel-go's parser stops there)", None),
        (
            "system_disk" + " == true" * 251,
            "it nests 251 operators, selects and calls deep, more than cel-go's parser visits: max recursion depth exceeded (250, parser.go:54-56)",
            None,
        ),
        (
            "(" * 250 + "system_disk" + ")" * 250,
            "it nests deeper than cel-go's parser reads: expression recursion limit exceeded: 250 (parser.go:54-56)",
            None,
        ),
        ("100. > 1.0", "a name expected after '.', '>' found (a syntax error to cel-go's parser)", None),  # a double needs digits after its dot
        ("9223372036854775808 > 0", "9223372036854775808 is out of the range of an int (cel-go's parser refuses it)", None),
        (
            "disk.size > 1 * GB && has(disk.size)",
            "found no matching overload for '_*_' applied to '(int, uint)': in `1 * GB`, 1 is an int and GB a uint, and CEL "
            "converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)",
            None,
        ),
        ("5 - 9223372036854775808 < 0", "9223372036854775808 is out of the range of an int (cel-go's parser refuses it)", None),
        (
            "system_disk ? 1 : 'a'",
            "found no matching overload for '_?_:_' applied to '(bool, int, string)': the two sides of ?: are an int and a string, not one type",
            None,
        ),
    ],
)
def test_a_selector_talos_refuses_is_refused_with_its_fix(match: str, reason: str, fix: str | None) -> None:
    with pytest.raises(cel.RefusedError) as err:
        cel.parse(match)
    assert (str(err.value), err.value.fix) == (reason, fix)
    if fix is not None:
        cel.parse(fix)  # the fix is itself a selector Talos takes


# CEL Talos takes that is read no further here: the caller reads it as "may select any disk".
@pytest.mark.parametrize(
    ("match", "reason"),
    [
        ("has(disk.size)", "has() is not read here (glob, size, int and uint are)"),
        ("disk.symlinks.map(l, l).size() > 0", ".map() is not read here (startsWith, endsWith, contains, matches, size, exists and all are)"),
        ("string(disk.size) == '1'", "string() is not read here (glob, size, int and uint are)"),
        ("disk.symlinks[0] == 'x'", "an index ([...]) is not read here"),
        ("b'x' == b'x'", "\"b'x'\" is not read (a bytes literal)"),
    ],
)
def test_a_selector_outside_the_subset_is_unreadable(match: str, reason: str) -> None:
    with pytest.raises(cel.UnreadableError) as err:
        cel.parse(match)
    assert not isinstance(err.value, cel.RefusedError)
    assert str(err.value) == reason


# String literals as cel-go's parser reads them (parser/unescape.go:26-195): escapes, raw strings, triple quotes.
@pytest.mark.parametrize(
    ("match", "disk", "value"),
    [
        ("disk.dev_path.matches('^/dev/sd\\\\w$')", SATA, True),
        ("disk.dev_path.matches('^/dev/sd\\\\w$')", NVME, False),
        ("disk.dev_path.matches(r'^/dev/sd\\w$')", SATA, True),
        ("disk.dev_path == '\\x2fdev\\u002fsda'", SATA, True),
        ("disk.dev_path == '\\057dev/sda'", SATA, True),
        ('disk.dev_path == """/dev/sda"""', SATA, True),
        ("'it\\'s' == \"it's\"", SATA, True),
        # A `//` comment to the end of its line, as a YAML block selector may hold.
        ("disk.dev_path == '/dev/sda' // the SATA disk\n&& !system_disk // not the install disk", SATA, True),
        ("disk.dev_path == 'http://x' // a comment", SATA, False),
    ],
)
def test_string_literals_are_unescaped_as_cel_go_reads_them(match: str, disk: str, value: object) -> None:
    assert _value(match, disk) is value


# size() and the exists, all and exists_one macros over disk.symlinks, which the inventory tells in part: a link it
# names decides exists (true) or all (false); nothing else does.
@pytest.mark.parametrize(
    ("match", "disk", "value"),
    [
        ("disk.dev_path == '/dev/sdb' && size(disk.symlinks) > 0", NVME, False),
        ("size(disk.symlinks) > 0", NVME, U),
        ("disk.symlinks.size() > 0", BY_ID, U),
        ("size(disk.dev_path) == 12", NVME, True),
        ("size(disk.dev_path) == 12", BY_ID, U),
        ("disk.symlinks.exists(l, l.startsWith('/dev/disk/by-id/nvme-Samsung'))", BY_ID, True),
        ("disk.symlinks.exists(l, l.startsWith('/dev/disk/by-id/ata-'))", BY_ID, U),
        ("disk.symlinks.exists(l, l.startsWith('/dev/disk/by-id/nvme-'))", NVME, U),
        ("disk.symlinks.all(l, l.startsWith('/dev/disk/by-id/ata-'))", BY_ID, False),
        ("disk.symlinks.all(l, l.startsWith('/dev/disk/by-id/nvme-'))", BY_ID, U),
        ("disk.symlinks.exists_one(l, l == 'x')", BY_ID, U),
        ("disk.dev_path == '/dev/sdb' && disk.symlinks.exists(l, l.contains('Samsung'))", NVME, False),
    ],
)
def test_size_and_the_macros_at_the_edge_of_what_the_inventory_tells(match: str, disk: str, value: object) -> None:
    assert _value(match, disk) is value


# disk.model: an nvme-nvme.<...> link carries it whole; an nvme-<model>_<serial> link as udev spells it (each character
# but [0-9A-Za-z#+-.:=@_] written `_`), so a model whose spelling differs is another disk's, and one spelled alike may
# be this one's; an ata-, scsi- or usb- link's model is udev's ATA IDENTIFY model, not the SCSI INQUIRY product Talos
# reads from sysfs, and a kernel name tells none.
NVME_NVME = "/dev/disk/by-id/nvme-nvme.144d-533634414e533054313233343536-53616d73756e67205353442039383020315442-00000001"
ATA = "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_S6PUNX0T123456"


@pytest.mark.parametrize(
    ("match", "disk", "value"),
    [
        ("disk.model == 'Samsung SSD 870 EVO 1TB'", BY_ID, False),
        ("disk.model == 'Samsung SSD 990 PRO 2TB'", BY_ID, U),
        ("disk.model == 'Samsung_SSD_990_PRO_2TB'", BY_ID, U),
        # Where the model ends the link does not say (a serial's blank is a `_` too): any run of its first words may be it,
        # but never all of them, as a serial follows.
        ("disk.model == 'Samsung SSD'", BY_ID, U),
        ("disk.model == 'Samsung SSD 990 PRO 2TB S73WNJ0W123456A'", BY_ID, False),
        ("disk.model.startsWith('WD ')", BY_ID, False),
        ("disk.model.startsWith('Samsung ')", BY_ID, U),
        ("disk.model.contains('870')", BY_ID, False),
        ("glob('WD*', disk.model)", BY_ID, False),
        ("glob('Samsung SSD 990*', disk.model)", BY_ID, U),
        ("disk.model == 'Samsung SSD 980 1TB'", NVME_NVME, True),
        ("disk.model == 'Samsung SSD 870 EVO 1TB'", NVME_NVME, False),
        ("disk.serial == 'S64ANS0T123456'", NVME_NVME, True),
        ("disk.model == 'Samsung SSD 870 EVO 1TB'", ATA, U),
        ("disk.model == 'Samsung SSD  980'", "/dev/disk/by-id/nvme-Samsung_SSD_980_S5GXNF0R", U),  # two blanks: one _
        ("disk.model == 'Samsung SSD 870 EVO 1TB'", NVME, U),
        ("disk.model == 'Fanxiang S500PRO 1TB'", DIGITS, U),
        ("disk.model == 'Fanxiang S500PRO 1TB'", f"{DIGITS}_1", U),
        ("disk.model == 'Crucial P3'", f"{DIGITS}_1", False),
    ],
)
def test_a_model_is_read_where_the_link_tells_it(match: str, disk: str, value: object) -> None:
    assert _value(match, disk) is value


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
