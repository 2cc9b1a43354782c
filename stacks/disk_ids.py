"""A disk's /dev/disk/by-id/ link read for what names one physical disk: its serial, its wwid.

udev names a disk's links after its bus, model and serial, or its wwid (60-persistent-storage.rules), so a link and a
Talos install disk selector's serial or wwid may name the same disk: on one machine, where the system disk would be a
data disk too (stacks.rules refuses it), or on two, most likely copied from one to the other, though twin disks may
share a serial (stacks.storage.shared_disk_names warns of it).
"""

from __future__ import annotations

import re
from typing import Literal


def glob(pattern: str, subject: str) -> bool:
    """Whether `subject` matches `pattern` as Talos's glob() reads it: ryanuber/go-glob v1.0.0's Glob (glob.go:11-56), in
    which `*` alone is special (any run of characters) and `?`, `[` and `\\` are themselves. A pattern with no `*` is
    compared whole; else its first part must start the subject, each middle part is found leftmost in what is left, and
    the last part must end it."""
    if pattern == "":
        return subject == ""
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return subject == pattern
    leading, trailing = pattern.startswith("*"), pattern.endswith("*")
    for i, part in enumerate(parts[:-1]):
        idx = subject.find(part)
        if (i == 0 and not leading and idx != 0) or (i > 0 and idx < 0):
            return False
        subject = subject[idx + len(part) :]
    return trailing or subject.endswith(parts[-1])


def by_id_name(disk: str) -> str:
    """A /dev/disk/by-id/ link's name without what udev adds after the device's own: a partition's -partN, and a usb-
    link's -<lun> (usb-Samsung_PSSD_T7_S6WRNS0T812345E-0:0: 60-persistent-storage.rules appends the SCSI address)."""
    name = re.sub(r"-part\d+$", "", disk.removeprefix("/dev/disk/by-id/"))
    return re.sub(r"-\d+:\d+$", "", name) if name.startswith("usb-") else name


def namespace_links(a: str, b: str) -> bool:
    """Whether two by-id link names are one NVMe namespace's two links: udev writes nvme-<model>_<serial> and
    nvme-<model>_<serial>_<nsid> for one device (systemd 60-persistent-storage.rules since v252), so one is the other
    with `_<digits>` after it. Read that way, not by taking a trailing `_<digits>` off each: a serial of digits alone
    (nvme-<model>_2023051500123) would lose the serial itself."""
    return re.fullmatch(re.escape(a) + r"_\d+", b) is not None or re.fullmatch(re.escape(b) + r"_\d+", a) is not None


def by_id_has_serial(disk: str, serial: str) -> bool:
    """Whether `disk` is a /dev/disk/by-id/ name carrying `serial` (a glob, as Talos's selector reads it) as one of its
    `_`-separated parts, as udev names ata-, scsi-, usb- and nvme- links after the model and serial, or the serial an
    nvme-nvme.<vendor>-<serial hex>-<model hex>-<nsid> link carries (nvme_wwid_parts)."""
    if not disk.startswith("/dev/disk/by-id/") or serial.strip("*") == "":
        return False
    if (wwid := nvme_wwid_of_link(disk)) is not None and (parts := nvme_wwid_parts(wwid)) is not None:
        return glob(serial, parts[0])
    name = by_id_name(disk)
    if name.startswith("nvme-"):
        # Talos globs the sysfs serial, blanks and all (go-blockdevice block/device_linux.go:343-344 at v2.0.3); the
        # link spells it as udev does, so the glob is spelled so too and matched against each run the serial may be.
        pattern = "*".join(udev_spelling(part) for part in serial.split("*"))
        return any(glob(pattern, run) for run in nvme_serial_runs(name.removeprefix("nvme-")))
    return any(glob(serial, part) for part in name.split("_")[1:])


# A SAS disk's (or a SATA disk's behind a SAT layer's) scsi- link: udev's ID_SERIAL from scsi_id is the VPD page 0x83
# NAA designator's type 3 and its hex, so the link is scsi-3<hex> where the kernel's wwid is naa.<hex> and the wwn- link
# wwn-0x<hex> (Linux drivers/scsi/scsi_lib.c scsi_vpd_lun_id "naa.%8phN" / "naa.%16phN"; 60-persistent-storage.rules).
_SCSI_NAA = re.compile(r"^scsi-3((?:[0-9a-fA-F]{16}){1,2})$")


def one_wwn(a: str, b: str) -> bool:
    """Whether by-id links `a` and `b` are one disk's wwn-0x<hex> and scsi-3<hex> links, one NAA in each."""
    names = {by_id_name(x).lower() for x in (a, b) if x.startswith("/dev/disk/by-id/") and "-part" not in x}
    wwn = next((n.removeprefix("wwn-0x") for n in names if n.startswith("wwn-0x")), None)
    scsi = next((m.group(1) for n in names if (m := _SCSI_NAA.match(n)) is not None), None)
    return len(names) == 2 and wwn is not None and wwn == scsi


def by_id_has_wwid(disk: str, wwid: str) -> bool:
    """Whether `disk` is the /dev/disk/by-id/ link of the device whose wwid (a glob, as Talos reads the kernel's
    device/wwid) is `wwid`: udev names a SCSI or ATA disk's naa.<hex> wwn-0x<hex> and, from scsi_id's ID_SERIAL (the
    NAA designator's type 3 and its hex), scsi-3<hex>; an NVMe namespace's wwid itself after nvme- (nvme-eui.<hex>,
    nvme-uuid.<uuid>, nvme-nvme.<...>: 60-persistent-storage.rules); a namespace whose wwid is nvme.<...> also
    nvme-<model>_<serial>, the serial and model the wwid carries (nvme_link_is_wwid)."""
    if not disk.startswith("/dev/disk/by-id/") or wwid.strip("*") == "":
        return False
    if nvme_link_is_wwid(disk, wwid):
        return True
    name = by_id_name(disk)
    if name.startswith("wwn-0x"):
        linked = "naa." + name.removeprefix("wwn-0x")
    elif (naa := _SCSI_NAA.match(name)) is not None:
        linked = "naa." + naa.group(1)
    elif name.startswith(("nvme-eui.", "nvme-nvme.", "nvme-uuid.")):
        linked = name.removeprefix("nvme-")
    else:
        return False
    # udev writes the link's hex as the kernel writes the wwid, in lower case (wwn-0x<ID_WWN>, nvme-<device/wwid>), so a
    # link written in upper case still means that disk; Talos compares the glob with the wwid case and all, so the wwid
    # is compared as written.
    # A naa. wwid in upper case is a SCSI name string's (scsi_lib.c scsi_vpd_lun_id copies it verbatim): the same NAA
    # that udev's links carry in lower case (ID_WWN from the NAA designator), so it is compared in that case.
    if re.fullmatch(r"naa\.[0-9A-F*]+", wwid):
        wwid = wwid.lower()
    return glob(wwid, linked.lower())


# An NVMe namespace with no UUID, NGUID or EUI-64 gets the wwid nvme.<vendor id>-<serial>-<model>-<nsid>, its serial and
# model as the hex of their ASCII with the trailing blanks cut (Linux drivers/nvme/host/sysfs.c wwid_show,
# "nvme.%04x-%*phN-%*phN-%08x"), and udev links it as nvme-<wwid> (60-persistent-storage.rules).
_NVME_WWID = re.compile(r"^nvme\.([0-9a-f]{4})-((?:[0-9a-f]{2})+)-((?:[0-9a-f]{2})+)-([0-9a-f]{8})$")
# What udev leaves of a model or serial in a link's name (OPTIONS="string_escape=replace": systemd's udev_replace_chars
# keeps ASCII letters and digits and #+-.:=@_, and writes _ for anything else, a blank among them).
_UDEV_KEPT = re.compile(r"[^0-9A-Za-z#+\-.:=@_]")


def nvme_wwid_parts(wwid: str) -> tuple[str, str, int] | None:
    """The serial, model and namespace id an NVMe wwid of the nvme.<vendor>-<serial hex>-<model hex>-<nsid> form carries
    (the serial and model as udev's $attr reads them, blanks at either end cut), or None for any other form."""
    m = _NVME_WWID.match(wwid.lower())
    if m is None:
        return None
    try:
        serial, model = (bytes.fromhex(m[k]).decode("ascii").strip(" \0") for k in (2, 3))
    except UnicodeDecodeError:
        return None
    return (serial, model, int(m[4], 16)) if serial and model else None


def _nvme_model_serial_name(wwid: str) -> tuple[str, int] | None:
    """The name udev gives the namespace of NVMe wwid `wwid` (nvme.<...> form) as nvme-<model>_<serial>, and its nsid."""
    parts = nvme_wwid_parts(wwid)
    if parts is None:
        return None
    serial, model, nsid = parts
    return f"nvme-{_UDEV_KEPT.sub('_', model)}_{_UDEV_KEPT.sub('_', serial)}", nsid


def nvme_link_is_wwid(disk: str, wwid: str) -> bool:
    """Whether `disk` is the nvme-<model>_<serial> or nvme-<model>_<serial>_<nsid> link of the namespace whose wwid (the
    nvme.<vendor>-<serial hex>-<model hex>-<nsid> form, no glob) is `wwid`: udev links one namespace under both."""
    if not disk.startswith("/dev/disk/by-id/nvme-") or (named := _nvme_model_serial_name(wwid)) is None:
        return False
    name, nsid = named
    link = by_id_name(disk)
    return "-part" not in disk and (link == name or link == f"{name}_{nsid}")


def nvme_wwid_of_link(disk: str) -> str | None:
    """The wwid an nvme-nvme.<vendor>-<serial hex>-<model hex>-<nsid> link is named after (the serial and model it carries
    are readable), or None for any other name."""
    if not disk.startswith("/dev/disk/by-id/nvme-nvme.") or "-part" in disk:
        return None
    wwid = by_id_name(disk).removeprefix("nvme-")
    return wwid if nvme_wwid_parts(wwid) is not None else None


def one_nvme_namespace(a: str, b: str) -> bool:
    """Whether by-id links `a` and `b` are one NVMe namespace's nvme-nvme.<...> link and its nvme-<model>_<serial> link
    (with or without _<nsid>), read from the serial and model the first carries."""
    return any((wwid := nvme_wwid_of_link(x)) is not None and nvme_link_is_wwid(y, wwid) for x, y in ((a, b), (b, a)))


def nvme_links_comparable(a: str, b: str) -> bool:
    """Whether `a` and `b` are an nvme-nvme.<...> link whose serial and model are readable and an nvme-<model>_<serial>
    link: one_nvme_namespace tells whether they are one namespace, so neither may be said to be unknowable."""
    model_serial = re.compile(r"^/dev/disk/by-id/nvme-(?!(?:eui|nvme|uuid)\.)")
    return any(nvme_wwid_of_link(x) is not None and model_serial.match(y) is not None for x, y in ((a, b), (b, a)))


def udev_spelling(text: str) -> str:
    """`text` as udev writes it in a link's name (OPTIONS="string_escape=replace"): the blanks at its ends cut and each
    run of blanks within written as one `_` (systemd src/shared/udev-util.c, udev_replace_whitespace, which C's isspace
    reads: space, tab, LF, VT, FF, CR), then each character but the few it keeps written `_` (_UDEV_KEPT)."""
    return _UDEV_KEPT.sub("_", re.sub(r"[ \t\n\v\f\r]+", "_", text.strip(" \t\n\v\f\r")))


def nvme_serial_runs(name: str) -> list[str]:
    """The spellings an nvme-<model>_<serial>[_<nsid>] link's name (after nvme-) may give the serial: each run of its
    `_`-separated words that ends the name, or ends before a namespace's number, and leaves one word or more of model
    before it (udev spells a blank in the serial `_` as it does in the model, so where the model ends is not told)."""
    words = name.split("_")
    ends = [len(words)] + ([len(words) - 1] if len(words) > 2 and words[-1].isdigit() else [])
    return list(dict.fromkeys("_".join(words[k:end]) for end in ends for k in range(1, end)))


# systemd-udevd links one disk under several by-path names (60-persistent-storage.rules, the by-path block, from
# src/udev/udev-builtin-path_id.c): ID_PATH, and beside it a SATA disk's ID_PATH_ATA_COMPAT (handle_scsi_ata writes
# ata-<port_no>.<target>, or ata-<port_no>.<bus>.0 behind a port multiplier, and the compat link ata-<port_no>), a USB
# disk's ID_PATH_WITH_USB_REVISION (handle_usb's usb-0:<port> again as usbv<revision>-0:<port>), and a virtio disk's
# legacy virtio-<ID_PATH> (virtio-pci-<address>). Read back to the one name each stands for, they compare as the disk.
_BY_PATH_ATA = re.compile(r"^(?P<head>.+)-ata-(?P<port>[0-9]+)(?:\.(?P<sub>[0-9]+(?:\.0)?))?$")


def by_path_canonical(disk: str) -> str | None:
    """A whole disk's by-path link with udev's second spellings read back to ID_PATH's (virtio-pci- to pci-, usbv<n>- to
    usb-), or None for another name."""
    if not disk.startswith("/dev/disk/by-path/") or re.search(r"-part[0-9]+$", disk):
        return None
    name = disk.removeprefix("/dev/disk/by-path/")
    name = re.sub(r"^virtio-pci-", "pci-", name)
    return re.sub(r"-usbv[0-9]+-", "-usb-", name)


def by_path_one_disk(a: str, b: str) -> Literal["same", "maybe"] | None:
    """Whether by-path links `a` and `b` name one disk: "same" when they are one name as udev's several spellings of it
    are read back (`by_path_canonical`), or a SATA port's compat link ata-<port> beside the port's ata-<port>.0; "maybe"
    for the compat link beside ata-<port>.<target> or ata-<port>.<bus>.0, which are a PATA slave's or a port multiplier's
    disks, each of which udev may give the port's one compat link; None for two disks, or names not both by-path."""
    one, other = by_path_canonical(a), by_path_canonical(b)
    if one is None or other is None:
        return None
    if one == other:
        return "same"
    found, theirs = _BY_PATH_ATA.match(one), _BY_PATH_ATA.match(other)
    if found is None or theirs is None or (found["head"], found["port"]) != (theirs["head"], theirs["port"]):
        return None
    subs = {found["sub"], theirs["sub"]}
    if None not in subs:
        return None  # two targets, or two port-multiplier ports, of one SATA port
    return "same" if subs == {None, "0"} else "maybe"
