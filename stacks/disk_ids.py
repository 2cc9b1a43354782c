"""A disk's /dev/disk/by-id/ link read for what names one physical disk: its serial, its wwid.

udev names a disk's links after its bus, model and serial, or its wwid (60-persistent-storage.rules), so a link and a
Talos install disk selector's serial or wwid may name the same disk: on one machine, where the system disk would be a
data disk too (stacks.rules refuses it), or on two, most likely copied from one to the other, though twin disks may
share a serial (stacks.storage.shared_disk_names warns of it).
"""

from __future__ import annotations

import fnmatch
import re


def by_id_name(disk: str) -> str:
    """A /dev/disk/by-id/ link's name without what udev adds after the device's own: a partition's -partN, and a usb-
    link's -<lun> (usb-Samsung_PSSD_T7_S6WRNS0T812345E-0:0: 60-persistent-storage.rules appends the SCSI address)."""
    name = re.sub(r"-part\d+$", "", disk.removeprefix("/dev/disk/by-id/"))
    return re.sub(r"-\d+:\d+$", "", name) if name.startswith("usb-") else name


def by_id_has_serial(disk: str, serial: str) -> bool:
    """Whether `disk` is a /dev/disk/by-id/ name carrying `serial` (a glob, as Talos's selector reads it) as one of its
    `_`-separated parts, as udev names ata-, scsi-, usb- and nvme- links after the model and serial."""
    if not disk.startswith("/dev/disk/by-id/") or serial.strip("*?") == "":
        return False
    return any(fnmatch.fnmatchcase(part, serial) for part in by_id_name(disk).split("_")[1:])


def by_id_has_wwid(disk: str, wwid: str) -> bool:
    """Whether `disk` is the /dev/disk/by-id/ link of the device whose wwid (a glob, as Talos reads the kernel's
    device/wwid) is `wwid`: udev names a SCSI or ATA disk's naa.<hex> wwn-0x<hex>, and an NVMe namespace's wwid itself
    after nvme- (nvme-eui.<hex>, 60-persistent-storage.rules)."""
    if not disk.startswith("/dev/disk/by-id/") or wwid.strip("*?") == "":
        return False
    name = by_id_name(disk)
    if name.startswith("wwn-0x"):
        linked = "naa." + name.removeprefix("wwn-0x")
    elif name.startswith(("nvme-eui.", "nvme-nvme.")):
        linked = name.removeprefix("nvme-")
    else:
        return False
    return fnmatch.fnmatchcase(linked.lower(), wwid.lower())
