"""The stack config model: the typed inventory every layer of Iluvatar is derived from.

One stack file (`Pulumi.<stack>.yaml`) holds the network plan and the list of machines;
these frozen models are its only reading. Field names are snake_case in Python and
camelCase in the stack file, which is how Pulumi users write config keys.

Each model checks what it can see alone (an address parses, a MAC is a unicast MAC, a
version is well formed). Rules that relate several fields or sections live in
`stacks.rules`, so that each can name the exact config path it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from stacks import pins, repository
from stacks.boards import AINUR_ROLES, ARDA_ROLES, BOARDS, Arch, Role, discovery_boards
from stacks.credentials import masked_kernel_arg
from stacks.data_model import AppBackup, AppSecret, Backup
from stacks.disk_ids import by_id_name
from stacks.errors import show, yaml_number_text
from stacks.fields import (
    _LABEL,
    CHART_VERSION,
    BoardName,
    Cidr,
    DiskPath,
    DnsName,
    IPv4,
    K3sVersion,
    KubernetesVersion,
    Label,
    LeaseTime,
    Mac,
    Model,
    TalosVersion,
    _pattern,
    _text,
)
from stacks.logs_model import Logs
from stacks.pi_revision import pi_revision
from stacks.remote_model import RemoteAccess


def _ordered(r: AddressRange) -> AddressRange:
    if r.start > r.end:
        raise ValueError(f"start {r.start} is after end {r.end}")
    return r


class AddressRange(Model):
    """An inclusive range of IPv4 addresses, such as the DHCP pool."""

    start: IPv4
    end: IPv4

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, IPv4Address) and self.start <= ip <= self.end

    def overlaps(self, other: AddressRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def addresses(self) -> Iterator[IPv4Address]:
        for i in range(int(self.start), int(self.end) + 1):
            yield IPv4Address(i)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


OrderedRange = Annotated[AddressRange, AfterValidator(_ordered)]


class Vlan(Model):
    """An 802.1Q VLAN with its own subnet (e.g. an IoT network) and, for machines on it, its router."""

    id: int = Field(ge=1, le=4094)
    name: Label
    cidr: Cidr
    # The VLAN's router: a Talos machine on the VLAN gets its default route through it.
    gateway: IPv4 | None = None

    @field_validator("id")
    @classmethod
    def _not_the_default_vlan(cls, id: int) -> int:
        # VLAN 1 is the default VLAN of 802.1Q switches (UniFi's Default network, every port's untagged VLAN out of the
        # box): network.lan is it already, so a "VLAN" 1 shares the LAN's broadcast domain, the Ainur's DHCP answers on
        # it, and none of the isolation it was for exists.
        if id == 1:
            raise ValueError(
                "1 is the default VLAN, the untagged LAN itself on UniFi and almost every switch (network.lan), so this network "
                "would share the LAN's broadcast domain and be isolated from nothing; write the id the switch tags it with, "
                "another from 2 to 4094 (e.g. 20)"
            )
        return id


class Network(Model):
    """Eä's plan: the LAN, its gateway and DNS, the DHCP pool, the load-balancer pool, VLANs, zones."""

    lan: Cidr
    gateway: IPv4
    dns: tuple[IPv4, ...] = Field(min_length=1)
    dhcp_range: OrderedRange
    load_balancer_pool: OrderedRange
    vlans: tuple[Vlan, ...] = ()
    # Not under a special-use suffix (.local, .localhost, ...): stacks.special_names.
    domain: DnsName
    external_domain: DnsName | None = None

    def subnets(self) -> list[IPv4Network]:
        """The homelab's own networks: network.lan, then each VLAN's cidr."""
        return [self.lan, *(v.cidr for v in self.vlans)]


_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$"
)
_URL = re.compile(r"^(https?|git|ssh)://[^\s]+$")


# A disk size as Talos's install disk selector reads it: an optional comparison, then a size
# with an optional unit (go-humanize: 512GB, 1.5TB, 476GiB, or bytes).
_DISK_SIZE = re.compile(r"^\s*(>=|<=|>|<|==)?\s*\d+(\.\d+)?\s*([kKMGTPE]i?B|B)?\s*$")
SELECTOR_FIELDS = ("size", "model", "serial", "type", "wwid", "busPath")
# A /dev/disk/by-id link's name where a serial or a wwid was meant (stacks.disk_ids reads these names).
_BY_ID_SERIAL = re.compile(r"^(ata|nvme|scsi|usb|mmc|virtio)-[^*?\[]*_[^*?\[]+$")
# udev writes these names in lower case; a link name in another case is the same mistake, and read so (IGNORECASE).
# scsi-3<hex> is a SAS disk's: scsi_id's ID_SERIAL, the NAA designator's type 3 and its hex (stacks.disk_ids).
_BY_ID_WWID = re.compile(r"^(?:nvme-((?:eui|nvme|uuid)\.[^*?\[]+)|wwn-0x[0-9a-f]+|scsi-3((?:[0-9a-f]{16}){1,2}))$", re.IGNORECASE)
# The wwid forms the kernel writes in lower-case hex (device/wwid): naa.<hex> and eui.<hex> of a SCSI or SATA disk's
# VPD page 0x83 (Linux drivers/scsi/scsi_lib.c scsi_vpd_lun_id, "naa.%8phN", "eui.%8phN", which scsi_sysfs.c
# sdev_show_wwid prints), eui.<hex>, uuid.<uuid> and nvme.<vendor>-<serial hex>-<model hex>-<nsid> of an NVMe namespace
# (drivers/nvme/host/sysfs.c wwid_show: "eui.%16phN", "uuid.%pU", "nvme.%04x-%*phN-%*phN-%08x"). A t10. wwid carries the
# disk's vendor and model text as the disk reports it, upper case included (scsi_vpd_lun_id, "t10.%*pE"), so is left be.
_WWID_FORM = re.compile(r"^(naa|eui|uuid|nvme)\.", re.IGNORECASE)
# The WWN as lsblk -o WWN prints it (0x<hex>, udev's ID_WWN) or as a vendor tool does (hex alone, 16 or 32 digits).
_WWID_0X = re.compile(r"^0[xX]([0-9a-fA-F]+)$")
# A PCI root (pci<domain>:<bus>) or a PCI address (<domain>:<bus>:<device>.<function>) in a busPath, in any case.
_BUS_PATH_PCI_PART = re.compile(r"^(?:pci[0-9a-fA-F]{4}:[0-9a-fA-F]{2}|[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F])$", re.IGNORECASE)
# The SCSI wwid as multipath -ll, /etc/multipath/wwids, scsi_id -g and udev's ID_SERIAL print it: 3 (the NAA
# designator's type) and the NAA's hex, where the kernel writes naa.<hex>.
_WWID_SCSI_ID = re.compile(r"^3((?:[0-9a-fA-F]{16}){1,2})$")
# naa. or eui. with 0x in front of the hex, as lsblk's WWN is written: the kernel writes the hex alone.
_WWID_PREFIXED_0X = re.compile(r"^(naa|eui)\.0[xX]([0-9a-fA-F]+)$", re.IGNORECASE)
# A SCSI name string designator copied verbatim (scsi_lib.c scsi_vpd_lun_id, designator type 8, preferred where a
# device reports one): SPC writes its NAA hex in upper case, so a SAS disk or array LUN's wwid may be naa.<HEX>.
_WWID_NAME_STRING = re.compile(r"^naa\.[0-9A-F]+$")
_WWID_BARE = re.compile(r"^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$")


def _serial_fix(link: str) -> str:
    """What to write instead of a by-id link's name (`link`, /dev/disk/by-id/ left out) as an install selector's serial:
    what Talos reads as the disk's serial for the link's bus. Talos takes the kernel's device/serial, and only where that
    is empty runs udev's ata_id (ata) or scsi_id (scsi) and takes its ID_SERIAL, <model>_<serial>
    (internal/app/machined/pkg/controllers/block/disks.go:225-232, 267-299 at v1.14.0-rc.1); udev names the link
    <bus>-<ID_SERIAL> (60-persistent-storage.rules). An NVMe namespace, an SD card and a virtio disk have device/serial,
    the serial alone; a USB disk has neither, so no serial selects it."""
    name = by_id_name(link)
    bus, _, rest = name.partition("-")
    if bus in ("ata", "scsi"):
        kind = "an ATA" if bus == "ata" else "a SCSI"
        return f"write serial: {rest} (the name after {bus}-: Talos reads {kind} disk's serial as udev's ata_id and scsi_id give it, model and serial), or "
    if bus == "usb":
        return "Talos reads no serial of a USB disk (no device/serial, and its udev helpers run for ATA and SCSI disks alone), so write "
    parts = name.split("_")
    # Without an NVMe link's _<namespace> (udev links a namespace both with and without it).
    part = parts[-2] if bus == "nvme" and len(parts) > 2 and parts[-1].isdigit() else parts[-1]
    return f"write serial: {part} (the part of the name after the model), or " if len(parts) > 1 else "write the serial alone, or "


class DiskSelector(Model):
    """A Talos install disk selector (`machine.install.diskSelector`): the disk by what it is, not its /dev name.

    Every field set must match (model, serial, wwid and busPath take shell globs); Talos installs
    to the first disk that matches. Fields and their meaning are those of machinery v1.12.4's
    InstallDiskSelector (its `name` and `uuid`/`modalias` are left out: Talos refuses `name`).
    """

    size: Annotated[str, _pattern(_DISK_SIZE, ">= 256GB", "disk size condition")] | None = None
    model: str | None = Field(default=None, min_length=1)
    serial: str | None = Field(default=None, min_length=1)
    type: Literal["ssd", "hdd", "nvme", "sd"] | None = None
    wwid: str | None = Field(default=None, min_length=1)
    bus_path: str | None = Field(default=None, min_length=1)

    @field_validator("serial")
    @classmethod
    def _serial_not_a_path(cls, value: str | None) -> str | None:
        # Talos matches the glob against the serial the disk reports (disk.serial), which holds no /: a /dev path there
        # selects no disk and the install stops at `pulumi up`.
        if value is not None and value.startswith("/dev/"):
            fix = _serial_fix(value) if value.startswith("/dev/disk/by-id/") else "write the serial alone, or "
            raise ValueError(
                f"{value} is a /dev path, not a serial: Talos compares serial with the serial the disk reports, so it selects no "
                f"disk; {fix}installDisk: {value} as the path itself"
            )
        return value

    @field_validator("serial")
    @classmethod
    def _serial_not_a_link_name(cls, value: str | None) -> str | None:
        # The same mistake without /dev/disk/by-id/ in front, as `ls /dev/disk/by-id/` prints the name (`_serial_fix`).
        if value is not None and _BY_ID_SERIAL.match(value) is not None:
            raise ValueError(
                f"{value} is a /dev/disk/by-id link's name (<bus>-<model>_<serial>), not a serial: Talos compares serial with the "
                f"serial it reads of the disk, so it selects no disk; {_serial_fix(value)}installDisk: /dev/disk/by-id/{value} as "
                "the path itself"
            )
        return value

    @field_validator("wwid")
    @classmethod
    def _wwid_not_a_link_name(cls, value: str | None) -> str | None:
        # udev names an NVMe namespace's wwid link nvme-<wwid> (nvme-eui.<hex>) and a SCSI or ATA disk's wwn-0x<hex>
        # (60-persistent-storage.rules); Talos reads the kernel's device/wwid, eui.<hex> or naa.<hex> (stacks.disk_ids).
        if value is not None and (found := _BY_ID_WWID.match(value)) is not None:
            named = found.group(1) or (f"naa.{found.group(2)}" if found.group(2) is not None else "naa." + value[len("wwn-0x") :])
            wwid = named.lower()
            raise ValueError(
                f"{value} is a /dev/disk/by-id link's name, not a wwid: Talos compares wwid with the disk's wwid as the kernel "
                f"reports it, so it selects no disk; write wwid: {wwid}, or installDisk: /dev/disk/by-id/{value.lower()} as the path itself"
            )
        return value

    @field_validator("wwid")
    @classmethod
    def _wwid_as_the_kernel_writes_it(cls, value: str | None) -> str | None:
        # Talos matches the glob against the kernel's device/wwid, case and all (glob(), go-glob), and the kernel writes
        # a naa., eui., uuid. or nvme. wwid in lower-case hex (_WWID_FORM): another spelling selects no disk.
        if value is None or _BY_ID_WWID.match(value) is not None:
            return value
        said = "Talos compares wwid with the disk's wwid as the kernel writes it (device/wwid), case and all, so it selects no disk"
        if (hexed := _WWID_0X.match(value)) is not None:
            raise ValueError(
                f"{value} is the WWN as lsblk -o WWN prints it, not a wwid: {said}; the kernel writes a SATA or SAS disk's as "
                f"naa.<hex>: write wwid: naa.{hexed.group(1).lower()}"
            )
        if (scsi_id := _WWID_SCSI_ID.match(value)) is not None:
            raise ValueError(
                f"{value} is the SCSI wwid as multipath -ll and scsi_id print it (3, the NAA designator's type, then its hex), "
                f"not the kernel's: {said}; write wwid: naa.{scsi_id.group(1).lower()}"
            )
        if (prefixed := _WWID_PREFIXED_0X.match(value)) is not None:
            kind = prefixed.group(1).lower()
            raise ValueError(
                f"{value} is not the kernel's spelling, which writes the hex of a {kind}. wwid without 0x: {said}; write wwid: "
                f"{kind}.{prefixed.group(2).lower()}"
            )
        if _WWID_BARE.match(value) is not None:
            raise ValueError(
                f"{value} is a WWN without the kernel's prefix: {said}; write wwid: naa.{value.lower()} for a SATA or SAS disk, "
                f"or wwid: eui.{value.lower()} for an NVMe namespace (`talosctl get disks -o yaml` shows its wwid)"
            )
        if (form := _WWID_FORM.match(value)) is not None and value != value.lower() and _WWID_NAME_STRING.match(value) is None:
            kind = form.group(1).lower()
            case = (
                "in lower case (a SCSI name string's, which it copies as the disk reports it, all in upper case)"
                if kind == "naa"
                else "in lower case"
            )
            raise ValueError(f"{value} is not the kernel's spelling, which writes a {kind}. wwid {case}: {said}; write wwid: {value.lower()}")
        return value

    @field_validator("bus_path")
    @classmethod
    def _bus_path_not_a_device(cls, value: str | None) -> str | None:
        # Talos's busPath is the disk's path under /sys/devices (/pci0000:00/... on a PC, /platform/... on an ARM board):
        # a /dev path matches no disk.
        if value is not None and value.startswith("/dev/"):
            raise ValueError(
                f"{value} is a /dev path, not a bus path: Talos matches busPath against the disk's path under /sys/devices "
                "(e.g. /pci0000:00/0000:00:1d.0/0000:3a:00.0/nvme/nvme0/nvme0n1; `talosctl get disks -o yaml` shows it as "
                f"bus_path), so it selects no disk; write that path, or installDisk: {value} as the path itself"
            )
        return value

    @field_validator("bus_path")
    @classmethod
    def _bus_path_as_sysfs_writes_it(cls, value: str | None) -> str | None:
        # The kernel writes a PCI root and address in lower-case hex (drivers/pci/probe.c "pci%04x:%02x", and
        # pci_setup_device's "%04x:%02x:%02x.%d"), and Talos matches the glob against that path case and all (glob(),
        # go-glob), so a PCI component in upper case matches no disk.
        if value is None:
            return value
        upper = [p for p in value.split("/") if _BUS_PATH_PCI_PART.match(p) and p != p.lower()]
        if upper:
            raise ValueError(
                f"{value} writes {upper[0]} in upper case, which sysfs never does: Talos matches busPath against the disk's "
                f"path under /sys/devices case and all, where the kernel writes PCI addresses in lower-case hex, so it "
                f"selects no disk; write busPath: {'/'.join(p.lower() if _BUS_PATH_PCI_PART.match(p) else p for p in value.split('/'))}"
            )
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> DiskSelector:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError(f"a disk selector needs at least one of {', '.join(SELECTOR_FIELDS)}")
        return self

    def talos(self) -> dict[str, str]:
        """The selector as Talos's config spells it (camelCase keys, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in self.talos().items()) + "}"


def _disk_kind(value: object) -> str:
    return "<selector>" if isinstance(value, dict | DiskSelector) else "<path>"


# A `/dev/...` path, or a selector mapping. The tags are dropped from error paths (stacks.load).
InstallDisk = Annotated[
    Annotated[DiskPath, Tag("<path>")] | Annotated[DiskSelector, Tag("<selector>")],
    Discriminator(_disk_kind),
]


class GenericWorker(Model):
    """What an unknown machine installs when it netboots as a generic Arda worker."""

    board: BoardName
    install_disk: InstallDisk


def _router_pool_form(value: object) -> str:
    return "<unset>" if value is None else "<none>" if isinstance(value, str) else "<range>"


# `{start, end}`, `none` or unset, each read as itself alone: a mapping's slip is said against the range's keys, any
# text is `none` or refused as not it (the tags start with "<", which stacks.load leaves out of a key's path). Unset is
# one of the forms, so the schema lists the three side by side (stacks.schema, iluvatar.reference).
RouterPool = Annotated[
    Annotated[OrderedRange, Tag("<range>")] | Annotated[Literal["none"], Tag("<none>")] | Annotated[None, Tag("<unset>")],
    Discriminator(_router_pool_form),
]


class Netboot(Model):
    """How the Ainur netboot machines: proxy-DHCP beside the home router, or the LAN's DHCP server."""

    # `proxy` (the default, since a new stack must never fight the router: the router keeps lending addresses and the
    # Ainur answer only PXE) or `dhcp` (the Ainur lend every address; the router's DHCP must be off). A stack that
    # leaves it unset on a homelab deployed before the default was `proxy` is refused at preview (stacks.netboot_mode).
    mode: Literal["dhcp", "proxy"] = "proxy"
    unknown_macs: Literal["ignore", "generic-worker"] = "ignore"
    generic_worker: GenericWorker | None = None
    lease_time: LeaseTime = "12h"
    # The user's word that no other DHCP server answers on network.lan (the router's is off): needed to move a deployed
    # homelab from proxy to dhcp, refused with proxy, where the router's DHCP is the household's (stacks.netboot_mode).
    router_dhcp_off: bool = False
    # The pool the router lent, whose addresses the household holds until their leases end: the Ainur lend without a
    # ping first, so the ranges they lend must stay apart from it. Asked wherever the Ainur start lending (a first
    # bring-up in dhcp mode, a move from proxy); `none`: no lease of another DHCP server is held on the LAN (the router
    # never lent on it, or its DHCP has been off longer than its lease time) (stacks.netboot_mode).
    router_pool: RouterPool = None
    # The router's DHCP server, where it is not network.gateway: in proxy mode the DHCP probe counts an answer as the
    # router's only from this address, and refuses any other server (plans.netboot.dhcp_probe).
    router_address: IPv4 | None = None


# A Raspberry Pi's serial number as its bootloader asks TFTP under it (TFTP_PREFIX=0, the default): the
# low 8 hex digits, lower case (raspberrypi/documentation eeprom-bootloader.adoc, TFTP_PREFIX: "9ffefdef/";
# a Pi 5's 16-digit serial is cut to its low 8 too, rpi-eeprom#563). Upper case is accepted and lowered:
# /proc/cpuinfo and the HDMI diagnostics screen print it in lower case, and dnsmasq's TFTP is case-sensitive.
_PI_SERIAL = re.compile(r"^[0-9a-fA-F]{8}$")


# The head of the 16 hex digits `grep Serial /proc/cpuinfo` shows, which is no board's serial: a Pi 4's line starts
# 10000000 and a Pi 3's 00000000, its serial being the last 8 (the bootloader asks TFTP under those). Every board of a
# model would share it, so no Pi's bootloader would ever ask under it and netboot by serial finds nothing.
_SERIAL_HEADS = frozenset({"10000000", "00000000"})
_CPUINFO_SERIAL = re.compile(r"^[0-9a-fA-F]{16}$")


def _pi_serial(value: object) -> object:
    if (read := yaml_number_text(value, 8)) is not None:
        # A serial of digits alone, or of digits and one e, written unquoted: YAML's number, said with the text it was
        # read from, which the fix quotes.
        written, how = read
        if written.lstrip("+-")[:2].lower() in ("0x", "0o", "0b"):
            # A base prefix (how `vcgencmd otp_dump` users write hex): the text as written is no serial either, so the
            # fix is its hex digits alone where they are 8, else what a serial looks like.
            digits = written.lstrip("+-")[2:].replace("_", "")
            fix = (
                f'write its 8 hex digits without the 0x, quoted: serial: "{digits.lower()}"'
                if written.lstrip("+-")[:2].lower() == "0x" and _PI_SERIAL.match(digits)
                else 'quote the serial\'s 8 hex digits, as `grep Serial /proc/cpuinfo` shows their last 8 (e.g. serial: "5e813307")'
            )
            raise ValueError(
                f"{show(value)} is the number YAML reads from {written} written unquoted ({how}), and {written} is no Pi serial "
                f"either: a Pi's serial is 8 hex digits alone, which its bootloader asks TFTP under; {fix}"
            )
        if not written:
            raise ValueError(
                f"{show(value)} is what YAML reads from a serial written unquoted such as 5e813307 ({how}), and the digits are lost; "
                'quote the serial\'s 8 hex digits, as `grep Serial /proc/cpuinfo` shows their last 8 (e.g. serial: "5e813307")'
            )
        quoted = " or ".join(f'serial: "{text}"' for text in written.split(" or "))
        it = "it" if " or " not in written else "the one written"
        raise ValueError(f"{show(value)} is the number YAML reads from {written} written unquoted ({how}); quote {it}: {quoted}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'{show(value)} is a number; quote the serial\'s 8 hex digits as a string (e.g. "9ffefdef")')
    if isinstance(value, str) and _CPUINFO_SERIAL.match(value):
        raise ValueError(
            f"{value} is the whole Serial line of /proc/cpuinfo; the Pi's bootloader asks TFTP under its last 8 hex digits: "
            f"write {value[-8:].lower()}"
        )
    if isinstance(value, str) and value.lower() in _SERIAL_HEADS:
        raise ValueError(
            f"{value} is the head of the Serial line /proc/cpuinfo shows (16 hex digits, the same on every Pi of a model), not "
            "this Pi's serial, so its bootloader would never ask TFTP under it; set the last 8 hex digits of "
            "`grep Serial /proc/cpuinfo` (or of the serial on its HDMI diagnostics screen)"
        )
    if isinstance(value, str) and len(value) < 8 and (revision := pi_revision(value)) is not None:
        raise ValueError(
            f"{value} is {revision.said()}, not the Pi's serial: its bootloader asks TFTP under the serial; set the last 8 "
            "hex digits of `grep Serial /proc/cpuinfo` (or of `vcgencmd otp_dump | grep 28:`, the digits after 28:)"
        )
    if not isinstance(value, str) or not _PI_SERIAL.match(value):
        raise ValueError(
            f"{show(value)} is not a Raspberry Pi serial as its bootloader asks TFTP under it: 8 hex digits, the last 8 of "
            "`grep Serial /proc/cpuinfo` (e.g. 9ffefdef)"
        )
    return value.lower()


PiSerial = Annotated[
    str, BeforeValidator(_pi_serial, json_schema_input_type=_text(_PI_SERIAL.pattern, "9ffefdef", "a Raspberry Pi serial (8 hex digits)"))
]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_URL = re.compile(r"^https?://\S+\.img\.xz$")


_RELEASE = re.compile(r"^\d{2}\.\d{2}(\.\d+)?$")
_IMAGE_RELEASE = re.compile(r"^ubuntu-(\d{2}\.\d{2}(?:\.\d+)?)-")
# The only image the Pi image builder reads (plans.netboot.pi_image): Ubuntu's preinstalled server image for arm64 Pis.
_SERVER_IMAGE = re.compile(r"ubuntu-\d{2}\.\d{2}(?:\.\d+)?-preinstalled-server-arm64\+raspi\.img\.xz")


# Each Ubuntu release the Pi image builder reads (23.10 to 25.04) and the last day of its standard support (the server's,
# for an LTS): Debian's distro-info-data 0.58+deb12u6, /usr/share/distro-info/ubuntu.csv (its `eol` column, `eol-server`
# for an LTS), which tests/stacks/test_model.py reads against this table. Past that day Canonical publishes no security
# update for the release, so a netbooted maia would boot, and apt would keep, a system nobody patches.
UBUNTU_SUPPORT_READ = date(2026, 11, 27)
UBUNTU_SUPPORT: dict[str, date] = {
    "23.10": date(2024, 7, 11),
    "24.04": date(2029, 5, 31),
    "24.10": date(2025, 7, 10),
    "25.04": date(2026, 1, 15),
}

# The newest point release of each series published on cdimage.ubuntu.com (releases/<series>.<n>/release/) by
# UBUNTU_SUPPORT_READ, from Ubuntu's release schedules (wiki.ubuntu.com/NobleNumbat/ReleaseSchedule: 24.04.1 in August
# 2024, .2 in February 2025, .3 in August 2025, .4 in February 2026, .5, the schedule's last, in August 2026); 0 for a
# series that has none, as interim releases have none. A point release past it has no folder there, and the builder's
# download fails at `pulumi up`; one Ubuntu publishes later is refused until this table is bumped, with
# UBUNTU_SUPPORT_READ. Where the table may be ahead of cdimage (a release delayed), nothing worse follows: a url and
# sha256 of a file that does not exist cannot be copied from anywhere.
UBUNTU_POINTS: dict[str, int] = {"23.10": 0, "24.04": 5, "24.10": 0, "25.04": 0}

# cdimage.ubuntu.com's releases/<codename>/release/ is its releases/<series>/release/ under another name (a link to it),
# so it holds only the series' newest point release too. Each series' codename from distro-info-data's ubuntu.csv (its
# `series` column; tests/stacks/test_model.py reads it against this table): those the builder takes (23.10 to 25.04) and
# the LTS and interim releases either side, which a url copied from another guide may name.
UBUNTU_CODENAMES: dict[str, str] = {
    "jammy": "22.04",
    "kinetic": "22.10",
    "lunar": "23.04",
    "mantic": "23.10",
    "noble": "24.04",
    "oracular": "24.10",
    "plucky": "25.04",
    "questing": "25.10",
    "resolute": "26.04",
}


def supported_release(today: date) -> str:
    """The newest release of UBUNTU_SUPPORT still supported on `today`, as a fix names it."""
    live = [r for r, end in UBUNTU_SUPPORT.items() if end >= today]
    if not live:
        return "a release this Iluvatar does not know yet (none it knows is supported any more)"
    newest = max(live, key=lambda r: tuple(int(x) for x in r.split(".")))
    return f"{newest}{' LTS' if newest.endswith('.04') and int(newest[:2]) % 2 == 0 else ''} (supported to {UBUNTU_SUPPORT[newest]})"


def _release_problem(release: str) -> str | None:
    """Why the Pi image builder cannot take a well-formed Ubuntu release, or None. The builder (plans.netboot.pi_image)
    copies vmlinuz, initrd.img and both boards' device trees from the boot partition's root: flash-kernel's flat layout
    with a Pi 5 device tree is Ubuntu 23.10 to 25.04 (23.10 is the first with the Pi 5's bcm2712 tree; from 25.10 the
    boot assets moved to the A/B `current/` folder). Of those, the fix names the one still supported on the day the
    support table was read. Said at `.release`, the key."""
    year, month = (int(x) for x in release.split(".")[:2])
    supported = f"23.10 to 25.04 still in standard support: {supported_release(UBUNTU_SUPPORT_READ)}"
    if (year, month) >= (25, 10):
        return (
            f"{release} boots from the A/B layout (boot assets under current/, from Ubuntu 25.10 on), which the "
            f"Pi image builder cannot read: it needs vmlinuz, initrd.img and the device trees at the boot partition's root; "
            f"use a release from {supported}"
        )
    if (year, month) < (23, 10):
        return (
            f"{release} has no Raspberry Pi 5 device tree (bcm2712-rpi-5-b.dtb, first in Ubuntu 23.10), which the "
            f"Pi image builder requires of every image; use a release from {supported}"
        )
    series = f"{year:02d}.{month:02d}"
    if series not in UBUNTU_SUPPORT:
        return f"{release} is no Ubuntu release (Ubuntu releases in April and October, YY.04 and YY.10); use a release from {supported}"
    # Against the day the table was read, not the clock: a stack that validates keeps validating, so an unattended
    # homelab's `pulumi up` never starts failing on a calendar date (24.04's end, years ahead, is an end to plan for,
    # not a validation error).
    if UBUNTU_SUPPORT[series] < UBUNTU_SUPPORT_READ:
        return (
            f"{release}: Ubuntu {series}'s standard support ended on {UBUNTU_SUPPORT[series]} (distro-info-data), "
            f"so no security update reaches the netbooted Pis; use {supported_release(UBUNTU_SUPPORT_READ)}, with its url and sha256"
        )
    point = int(release.split(".")[2]) if release.count(".") == 2 else 0
    newest = UBUNTU_POINTS[series]
    if point > newest:
        known = f"the newest this Iluvatar knows is {series}.{newest}" if newest else f"{series} has none (interim releases have no point releases)"
        use = f"{series}.{newest}" if newest else series
        return (
            f"{release} is no published point release of Ubuntu {series}: {known}, so cdimage.ubuntu.com has no "
            f"releases/{release}/ and the Pi image builder's download would fail at `pulumi up`; use {use}, with its url and "
            f"sha256 (or, if Ubuntu has published {release} since, an Iluvatar whose table knows it)"
        )
    return None


class PiImage(Model):
    """The Ubuntu Server for Raspberry Pi image the netbooting maiar boot: its release, where it is, its SHA-256.

    The default is Ubuntu 24.04.3 LTS (noble), whose boot partition keeps flash-kernel's flat layout (vmlinuz,
    initrd.img and the device trees at its root; the A/B `current/` layout arrived in 25.10). The checksum is of
    the `.img.xz` as cdimage.ubuntu.com's SHA256SUMS lists it; the builder refuses an image that does not match.
    """

    release: Annotated[str, _pattern(_RELEASE, "24.04.3", "Ubuntu release")] = "24.04.3"
    url: Annotated[
        str,
        _pattern(
            _IMAGE_URL,
            "https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz",
            "image URL (.img.xz)",
        ),
    ] = "https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
    sha256: Annotated[
        str, _pattern(_SHA256, "9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56", "SHA-256 (64 lower-case hex digits)")
    ] = "9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56"

    @model_validator(mode="before")
    @classmethod
    def _checksum_with_url(cls, data: object) -> object:
        # The default checksum is the default image's: another URL with it would be refused by the builder only
        # on the Pis, after `pulumi up` had started. Say so at preview.
        if isinstance(data, dict) and "url" in data and "sha256" not in data:
            raise ValueError(
                "sets url without sha256: give the image's SHA-256 from the SHA256SUMS beside it, so the builder can check what it downloads"
            )
        return data

    @field_validator("release", mode="before")
    @classmethod
    def _written_as_a_number(cls, release: object) -> object:
        # `release: 24.10` unquoted: the stack's YAML reader gives a float (stacks.load._go_yaml_number, as Pulumi's
        # yaml.v3 does), 24.1, which no release is. Ubuntu's releases are YY.04 and YY.10, so the zero the number lost is
        # the month's last digit: two decimals give the text written back.
        if not isinstance(release, int | float) or isinstance(release, bool):
            return release
        written = f"{release:.2f}" if isinstance(release, float) else str(release)
        said = f"{show(release)} is the number YAML reads from {written} unquoted, not the release as text"
        if (why := _release_problem(written)) is not None:
            raise ValueError(f'{said}; quoted, "{written}" is refused in turn: {why}')
        raise ValueError(f'{said}; quote it, "{written}"')

    @field_validator("release")
    @classmethod
    def _a_layout_the_builder_reads(cls, release: str) -> str:
        if (why := _release_problem(release)) is not None:
            raise ValueError(why)
        return release

    @field_validator("sha256")
    @classmethod
    def _not_a_placeholder(cls, sha256: str, info: ValidationInfo) -> str:
        # One digit 64 times (all zeros, all f) is a placeholder left in, never an image's hash: the builder would refuse
        # the download on the Pis at `pulumi up`, and the netbooting Pis never boot.
        if len(set(sha256)) == 1:
            url = info.data.get("url")
            where = (
                f"the hash {url.rsplit('/', 1)[0]}/SHA256SUMS gives for {url.rsplit('/', 1)[1]}"
                if isinstance(url, str) and "/" in url
                else "the image's hash from the SHA256SUMS beside it"
            )
            raise ValueError(f"{sha256} is a placeholder, not an image's SHA-256 (one digit 64 times): write {where}")
        return sha256

    @field_validator("url")
    @classmethod
    def _an_arm64_image(cls, url: str) -> str:
        # The netbooting Pis' k3s and the Ainur's images are arm64, not armhf.
        if "+raspi" in url and "-arm64+raspi" not in url:
            raise ValueError(
                f"{url} is not an arm64 image: the netbooting Pis run arm64 (k3s and the Ainur's images are arm64); "
                f"use the -preinstalled-server-arm64+raspi.img.xz of {supported_release(UBUNTU_SUPPORT_READ)}"
            )
        return url

    @field_validator("url")
    @classmethod
    def _a_file_path_alone(cls, url: str) -> str:
        # The release and the file the checks below compare are read from the url's path. A fragment is never sent (curl
        # drops it), so `…/release/#/<file>` downloads the folder's index page; a query is the server's to read, so the
        # path's last part need not be the file it serves. Either way the builder's checksum fails on the Pis at `up`.
        parts = urlsplit(url)
        if "#" in url:
            raise ValueError(
                f"{url}: what follows # is a fragment, which curl never sends: the Pi image builder would download "
                f"{urlunsplit(parts._replace(fragment=''))}, not the image, and refuse its SHA-256 on the card Pis at `pulumi up`; "
                "write the image file's own url, without #"
            )
        if "?" in url:
            raise ValueError(
                f"{url}: ?{parts.query} is a query string, which the server reads as it likes, so the release and the file "
                f"this url names cannot be read from it (its path ends in {parts.path.rsplit('/', 1)[-1] or '/'}); write the "
                "image file's own url, without ?"
            )
        return url

    @model_validator(mode="after")
    def _release_is_the_urls(self) -> PiImage:
        name = self.url.rsplit("/", 1)[-1]
        if _SERVER_IMAGE.fullmatch(name) is None:
            # The builder (plans.netboot.pi_image BOOT_FILES, ROOT_LABEL) needs Ubuntu's preinstalled server layout: a FAT
            # boot partition with vmlinuz and initrd.img, then an ext4 root labelled writable. Raspberry Pi OS (kernel8.img,
            # root `rootfs`) and Ubuntu Core (a FAT ubuntu-boot second partition) stop it in the middle of `pulumi up`.
            raise ValueError(
                f"url {self.url} is not an Ubuntu server image for the Pis: the Pi image builder reads only "
                "ubuntu-<release>-preinstalled-server-arm64+raspi.img.xz (vmlinuz and initrd.img on a FAT boot partition, an "
                "ext4 root labelled writable); give that file of a release from 23.10 to 25.04, e.g. "
                "https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
            )
        found = _image_mismatches(self.release, self.url, self.sha256)
        if found:
            raise _value_errors(type(self).__name__, [(loc, getattr(self, str(loc[0])) if loc else self, m) for loc, m in found])
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[PiImage]) -> PiImage:
        # A release refused on its own (out of support, no Pi 5 tree, the A/B layout) stops pydantic before the checks of
        # the whole image above, yet a url and sha256 that do not match each other are a second problem with its own fix:
        # both are said. Only when the release is all that failed, so url and sha256 are each well-formed.
        try:
            return handler(data)
        except ValidationError as e:
            errors = e.errors(include_url=False)
            if not isinstance(data, dict) or not all(err["type"] == "value_error" and err["loc"] == ("release",) for err in errors):
                raise
            url, sha256 = (data.get(k, PiImage.model_fields[k].default) for k in ("url", "sha256"))
            if _SERVER_IMAGE.fullmatch(str(url).rsplit("/", 1)[-1]) is None:
                raise
            release = data.get("release", PiImage.model_fields["release"].default)
            well_formed = isinstance(release, str) and _RELEASE.fullmatch(release) is not None
            found = _image_mismatches(release if well_formed else None, str(url), str(sha256))
            if not found:
                raise
            said = [(err["loc"], err["input"], str(err["msg"]).removeprefix("Value error, ")) for err in errors]
            given = {"url": url, "sha256": sha256}
            raise _value_errors(cls.__name__, [*said, *((loc, given[str(loc[0])] if loc else data, m) for loc, m in found)]) from None


def _image_mismatches(release: str | None, url: str, sha256: str) -> list[tuple[tuple[str, ...], str]]:
    """What of a Pi image's release, url and sha256 does not name one file (each well-formed alone; release None where it
    is not, and is said so on its own), every one, each with the key it is said at (() for the image as a whole)."""
    out: list[tuple[tuple[str, ...], str]] = []
    # cdimage.ubuntu.com names each image after its release (ubuntu-<release>-preinstalled-server-arm64+raspi.img.xz);
    # a release left behind when url and sha256 moved makes the render name the wrong release everywhere.
    name = url.rsplit("/", 1)[-1]
    named = _IMAGE_RELEASE.search(name)
    image = named.group(1) if named is not None else None
    parts = urlsplit(url)
    # A folder is compared as the server reads it: percent-decoded (24%2E04.2 is folder 24.04.2).
    folders = unquote(parts.path).split("/")[:-1]
    other = [f for f in dict.fromkeys(folders) if image is not None and _names_other(f, image)]
    if named is not None and release is not None and named.group(1) != release:
        # Setting release to the url's is the fix only where that release is one the builder takes; else it is
        # refused in turn, and the url is what to change. Where the url's folder cannot hold its file either, release
        # set alone still leaves that 404, and the url's message writes the release written's file: both ways out are
        # given whole, the one the url's message gives first.
        urls = _release_problem(named.group(1))
        fix = (
            f"; keep release {release} and write its url and sha256 (as said at url), or set release: {named.group(1)} with url: "
            f"{_moved(url, folders, named.group(1))}, its file in its own folder"
            if urls is None and other and _release_problem(release) is None
            else f"; set release: {named.group(1)}, or the url and sha256 of the release you meant"
            if urls is None
            else f", which is refused as a release: {urls}"
            # The release written, where the builder takes it, is the other way out: the one the folder's message points at.
            + ("" if _release_problem(release) is not None else f"; or keep release {release} and write its url and sha256")
        )
        out.append(((), f"release is {release}, but url names Ubuntu {named.group(1)} ({url}){fix}"))
    # cdimage.ubuntu.com keeps each image in its own release's folder (releases/<release>/release/, and a series' newest
    # point release in releases/<series>/release/ too): a folder naming another release than the file name holds no such
    # file, and the builder's `curl --fail` stops at a 404 on the card Pis. Each folder is compared with the file name's
    # release, which the check above compares with `release`, so every release the url names meets `release`.
    if other and image is not None:
        out.append((("url",), _folder_problem(url, folders, other, image, release, sha256)))
    # A SHA-256 names one file: the default's is the default image's (24.04.3), so with another file the builder
    # refuses the download on the Pis half-way through `pulumi up`. A mirror's url ending in the default's own file
    # name serves that file (Ubuntu's mirrors keep cdimage's names), and the sha256 is what the builder checks.
    default_url, default_sha = (PiImage.model_fields[k].default for k in ("url", "sha256"))
    default_name = default_url.rsplit("/", 1)[-1]
    if sha256 == default_sha and name != default_name:
        image = named.group(1) if named is not None else str(release)
        out.append(
            (
                (),
                f"sha256 is {sha256}, the SHA-256 of the default image ({default_url}), but url is {url}, another "
                f"file, which the Pi image builder would refuse on the Pis; write the sha256 that the SHA256SUMS beside it "
                f"lists for {name} (Ubuntu {image})",
            )
        )
    # And the converse: that file, from cdimage or a mirror of it under its own name, has the default's SHA-256 and no
    # other, so any other sha256 beside it (another release's line of SHA256SUMS, the .img's) is refused by the builder
    # (plans.netboot.pi_image: `[ "$got" = "$SHA256" ] || fail`) on the Pis half-way through `pulumi up`.
    if sha256 != default_sha and name == default_name:
        where = "the default url" if url == default_url else f"url {url}, a copy of it under its name"
        out.append(
            (
                ("sha256",),
                f"{sha256} is not the SHA-256 of {name} ({where}), which is {default_sha}: the Pi image builder would refuse "
                f"the download on the Pis at `pulumi up`; write sha256: {default_sha}, or, if {sha256} is another image's, set "
                "url (and release) to that image",
            )
        )
    return out


def _series(release: str) -> str:
    """A release's series, `24.04` of 24.04.3: cdimage.ubuntu.com's releases/<series>/release/ holds its newest point release."""
    return ".".join(release.split(".")[:2])


def _folders_of(release: str) -> tuple[str, ...]:
    """The release folders cdimage.ubuntu.com keeps a release's image in: its own (releases/<release>/release/), and its
    series' (releases/<series>/release/) where it is that series' newest point release (UBUNTU_POINTS), which alone the
    series folder holds. A series this Iluvatar does not know is refused as a release on its own: its folder is let be."""
    series = _series(release)
    points = UBUNTU_POINTS.get(series)
    newest = series if points == 0 else f"{series}.{points}"
    return (release, series) if points is None or release == newest else (release,)


def _folder_release(folder: str) -> str | None:
    """The release a url's folder names, a codename read as its series (noble/ is 24.04/), or None for another folder."""
    if _RELEASE.fullmatch(folder):
        return folder
    return UBUNTU_CODENAMES.get(folder)


def _names_other(folder: str, release: str) -> bool:
    """Whether a url's folder is a release folder that cannot hold `release`'s image."""
    named = _folder_release(folder)
    return named is not None and named not in _folders_of(release)


def _moved(url: str, folders: list[str], target: str) -> str:
    """`url` (its file `target`'s) with each release folder that cannot hold `target`'s image named `target` instead."""
    path = [target if _names_other(f, target) else f for f in folders]
    return urlunsplit(urlsplit(url)._replace(path="/".join([*path, url.rsplit("/", 1)[-1]])))


def _folder_problem(url: str, folders: list[str], other: list[str], image: str, release: str | None, sha256: str) -> str:
    """The url's folders `other` name other releases than its file name, `image`: the message, and one url to write whose
    folder, file name and release agree on a release the builder takes: `release` as written where it takes it (the
    file name is the slip where the folder is the release written), else the file name's, else none is offered."""
    name = url.rsplit("/", 1)[-1]
    target = next((r for r in (release, image) if r is not None and _release_problem(r) is None), None)
    folder_note = ", the release written" if release is not None and [_folder_release(f) for f in other] == [release] else ""
    file_note = ", the release written" if image == release else ""
    shown = " and ".join(f"{f}/" for f in other)
    series = _series(image)
    read = [_folder_release(f) for f in other]
    held = (
        f"; releases/{series}/release/ holds only {series}'s newest point release, {series}.{UBUNTU_POINTS[series]}"
        if series in read and UBUNTU_POINTS.get(series)
        else ""
    )
    # A codename folder is said with the series it stands for, so the message and its fix name the same release.
    names = " and ".join(f if f == r else f"{r} ({f} is {r}'s codename)" for f, r in zip(other, read, strict=True))
    said = (
        f"{url}: its folder {shown} names Ubuntu {names}{folder_note}, but its file name Ubuntu {image}{file_note}: "
        f"cdimage.ubuntu.com keeps each image in its own release's folder (releases/<release>/release/{held}), so there is no "
        f"{name} under {shown} and the Pi image builder's download would fail (404) on the card Pis at `pulumi up`"
    )
    if target is None:
        return f"{said}; write the url, release and sha256 of a release the builder takes, its file in its own folder"
    renamed = name.replace(f"ubuntu-{image}-", f"ubuntu-{target}-", 1)
    fixed = _moved(url.removesuffix(name) + renamed, folders, target)
    if target == image:
        return f"{said}; write url: {fixed}"
    default_url, default_sha = (PiImage.model_fields[k].default for k in ("url", "sha256"))
    if renamed == default_url.rsplit("/", 1)[-1]:
        checksum = "" if sha256 == default_sha else f", and sha256: {default_sha}, that file's"
    else:
        checksum = f", with the sha256 the SHA256SUMS beside it lists for {renamed}"
    return f"{said}; write url: {fixed} (release {target}'s file, the release written){checksum}"


def _value_errors(title: str, errors: list[tuple[tuple[str | int, ...], Any, str]]) -> ValidationError:
    """Several problems of one model, each at its key, as pydantic reports a model's errors (a validator raises one)."""
    return ValidationError.from_exception_data(
        title, [InitErrorDetails(type="value_error", loc=loc, input=given, ctx={"error": ValueError(m)}) for loc, given, m in errors]
    )


class GitMirror(Model):
    """A mirror of the GitOps repository on the Ainur, so Arda can rebuild without the internet."""

    # Defaults to iluvatar:gitops.repoUrl (stacks.gitops): the mirror serves the GitOps repository.
    url: Annotated[str, _pattern(_URL, "https://github.com/you/homelab.git", "Git URL")] | None = None
    ip: IPv4
    interval_minutes: int = Field(default=10, ge=1, le=1440)


class Ainur(Model):
    """Ainur: the Raspberry Pi bootstrap cluster (k3s), optional."""

    vip: IPv4
    # The address the LAN reaches the Ainur's services at (DHCP server identifier, TFTP, HTTP,
    # DNS). kube-vip holds it on whichever Pi runs the netboot pod, so it moves with the service.
    service_ip: IPv4
    k3s_version: K3sVersion = Field(alias="k3sVersion")
    ssh_user: Label = "ubuntu"
    ssh_authorized_keys: tuple[Annotated[str, _pattern(_SSH_KEY, "ssh-ed25519 AAAAC3Nz... you@laptop", "SSH public key")], ...] = Field(min_length=1)
    netboot: Netboot = Field(default_factory=Netboot)
    git_mirror: GitMirror | None = None
    # The image the netbooting maiar (nodes with boot: netboot) boot from the Ainur.
    pi_image: PiImage = Field(default_factory=PiImage)
    # k3s's secrets encryption at rest (plans.k3s.secrets_encryption): every Secret in the Ainur's datastore and in its
    # etcd snapshots sealed with a key k3s keeps on each valar's disk. Absent: off, so a deployed Ainur is not rolled onto
    # it by an upgrade of Iluvatar; `iluvatar init` and the shipped stack write it on, so a new Ainur starts with it. On a
    # one-valar Ainur already running, turning it on rolls the valar and rewrites its Secrets (docs/security.md); with
    # more valar it is refused (stacks.rules._counts): k3s's procedure for several servers is not built.
    secrets_encryption: bool = False
    # Retired: it said the Secrets were rewritten in clear by hand before an `up` turned encryption off. That `up` now
    # does k3s's disable itself and asks the valar (plans.k3s.secrets_off_script), so a word in the stack is no
    # evidence; kept in the model only so that a stack still carrying it is told to remove it (stacks.rules._counts).
    secrets_decrypted: bool = False


_CHART_VERSION = re.compile(r"^\d+\.\d+\.\d+$")

TalosPatch = dict[str, Any]
# One kernel argument as Image Factory takes it in a schematic's customization.extraKernelArgs: a word, `key` or
# `key=value`, or `-key` to drop a default (Talos procfs.WithDeleteNegatedArgs, pkg/imager/imager.go:413-418 at v1.12.4).
_KERNEL_ARG = re.compile(r"^\S+$")
# What follows the comma of an argument that holds one, as YAML splits `[console=ttyS2,1500000]` (a flow sequence's
# items end at a comma, YAML 1.2 section 7.4): a number, or a serial console's options (the kernel's
# admin-guide/serial-console.rst: baud, then parity n/o/e and bits, then r for RTS). No kernel parameter is spelled so.
_SPLIT_TAIL = re.compile(r"^\d+(?:[noe][5-8]r?)?$")


def _kernel_arg(value: object) -> object:
    # The example is quoted: written bare inside [...], its comma would split it too.
    if not isinstance(value, str) or not _KERNEL_ARG.match(value):
        shown = masked_kernel_arg(value) if isinstance(value, str) else show(value)
        raise ValueError(f"{shown} is not a well-formed kernel argument (one word, no spaces) (e.g. 'console=ttyS2,1500000')")
    return value


def _split_at_commas(value: object) -> object:
    """A board's kernel arguments written `[console=ttyS2,1500000]`: YAML reads two items, `console=ttyS2` and the number
    1500000, and Image Factory would put both on the command line, neither the console meant. Said of the list, with
    the arguments joined back and quoted."""
    if not isinstance(value, list | tuple):
        return value

    def tail(item: object) -> bool:
        number = isinstance(item, int | float) and not isinstance(item, bool)
        return number or (isinstance(item, str) and _SPLIT_TAIL.match(item) is not None)

    if not any(tail(item) for item in value):
        return value
    items = [masked_kernel_arg(item) if isinstance(item, str) else show(item) for item in value]
    joined: list[str] = []
    for k, item in enumerate(value):
        if k > 0 and tail(item):
            joined[-1] += f",{items[k]}"
        else:
            joined.append(items[k])
    fixed = "[" + ", ".join(f"'{arg}'" if "," in arg else arg for arg in joined) + "]"
    raise ValueError(
        f"[{','.join(items)}] is {len(items)} items to YAML ({', '.join(items)}): inside [...] a comma ends an item, so an "
        f"argument that holds one is split there; quote it: {fixed}"
    )


KernelArg = Annotated[
    str,
    BeforeValidator(
        _kernel_arg, json_schema_input_type=_text(_KERNEL_ARG.pattern, "console=ttyS2,1500000", "a kernel argument (one word, no spaces)")
    ),
]
KernelArgs = Annotated[tuple[KernelArg, ...], BeforeValidator(_split_at_commas)]


class Cilium(Model):
    """Cilium, Arda's CNI: typed settings for what Iluvatar relies on, raw Helm values for the rest."""

    version: Annotated[str, _pattern(_CHART_VERSION, pins.CHARTS["cilium"], CHART_VERSION)] = pins.CHARTS["cilium"]
    load_balancer_algorithm: Literal["maglev", "random"] = "maglev"
    hubble: bool = True
    values: dict[str, Any] = Field(default_factory=dict)


class Discovery(Model):
    """`iluvatar:arda.discovery`: a machine the inventory does not know that PXE-boots from the Ainur boots Talos
    into maintenance mode (no config, no secret), so `iluvatar discover` can ask it what it is (stacks.discovery)."""

    # The addresses the Ainur's DHCP lends such machines while they wait: required in netboot mode dhcp, refused in proxy
    # mode, where the router lends them its own (stacks.discovery).
    pool: OrderedRange | None = None
    # The segment they are discovered on: network.lan when unset (the only one the Ainur netboot), or a VLAN's name.
    vlan: Label | None = None
    # The architectures booted to be discovered (the Talos kernels every Pi caches for them); unset: those of the
    # inventory's Arda machines, or amd64 (stacks.boards.discovery_arches).
    arches: tuple[Arch, ...] | None = Field(default=None, min_length=1)


class Encryption(Model):
    """`iluvatar:arda.encryption`: every Arda volume (STATE, EPHEMERAL, the local volumes, the Ceph OSDs) encrypted at
    rest with LUKS2, its key never on the machine in a form a thief can use (plans.talos, docs/layers/data.md).

    Absent: off, so a stack deployed before it keeps its volumes as they are (turning it on for running machines is a
    roll: stacks.day2); `iluvatar init` writes it on. The key is chosen per board: `tpm` where the board has a TPM 2.0
    with Secure Boot (stacks.boards.Board.tpm), else `kms`, the KMS the Ainur serve (plans.kms). `keys` overrides that
    per board; `static` and `nodeID` are refused (stacks.rules), so its values are checked there, by name.
    """

    enabled: bool = False
    keys: dict[BoardName, str] = Field(default_factory=dict)


class Arda(Model):
    """Arda: the Talos Linux workload cluster."""

    cluster_name: Label
    vip: IPv4
    talos_version: TalosVersion
    kubernetes_version: KubernetesVersion
    allow_scheduling_on_control_planes: bool = False
    cilium: Cilium = Field(default_factory=Cilium)
    patches: tuple[TalosPatch, ...] = ()
    # By board: its schematic's extraKernelArgs, so its installer (and disk and PXE images) boot with them (plans.talos).
    kernel_args: dict[BoardName, KernelArgs] = Field(default_factory=dict)
    # Unknown machines boot into maintenance mode to be discovered; unset: they are not booted at all.
    discovery: Discovery | None = None
    # Volume encryption at rest (plans.talos, stacks.encryption); absent: off.
    encryption: Encryption = Field(default_factory=Encryption)
    # Says Arda already runs the pod and Service subnets the patches set, where the last deployment's output does not
    # record them (an Iluvatar before `clusterNetwork`): without it such a stack's non-default subnets are refused, since
    # preview cannot tell them from a move (stacks.day2). Refused once the subnets are recorded.
    subnets_running: bool = False


class ArgoCd(Model):
    """Argo CD itself: the argo-cd Helm chart's version and raw values merged over Iluvatar's."""

    version: Annotated[str, _pattern(_CHART_VERSION, pins.CHARTS["argo-cd"], CHART_VERSION)] = pins.CHARTS["argo-cd"]
    values: dict[str, Any] = Field(default_factory=dict)


RepoPath = Annotated[
    str,
    BeforeValidator(
        repository.normalise_repo_path,
        json_schema_input_type=Annotated[
            str, Field(examples=["kubernetes/apps"], description="a folder of the GitOps repository, relative to its root")
        ],
    ),
]
RepoUrl = Annotated[
    str,
    BeforeValidator(
        repository.check_repo_url,
        json_schema_input_type=Annotated[
            str,
            Field(
                pattern=r"^(https://\S+|ssh://[^/\s@]+@\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$",
                examples=["https://github.com/you/homelab.git", "git@github.com:you/homelab.git"],
                description="the GitOps repository: https://, or SSH with a user",
            ),
        ],
    ),
]


def _self_heal(value: object) -> object:
    if isinstance(value, bool) or (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
        return value
    raise ValueError(f"{show(value)} is not true, false or a list of categories (e.g. [system, networking])")


class GitOps(Model):
    """The GitOps hand-off: the repository Argo CD reads, where the apps live in it, how they sync."""

    repo_url: RepoUrl
    revision: Annotated[
        str,
        BeforeValidator(
            repository.check_revision,
            json_schema_input_type=Annotated[str, Field(examples=["main"], description="a branch, tag or commit Argo CD follows")],
        ),
    ] = "HEAD"
    apps_path: RepoPath = "apps"
    ainur_path: RepoPath = "ainur"
    # A private repository needs its credential as a secret: iluvatar:gitopsToken (https) or
    # iluvatar:gitopsSshPrivateKey (SSH, always needed for SSH).
    private: bool = False
    username: Annotated[str, _pattern(re.compile(r"^[A-Za-z0-9._@-]{1,128}$"), "git", "Git user name")] = "git"
    # true or false for every category, or the categories whose apps Argo CD self-heals.
    self_heal: Annotated[bool | tuple[str, ...], BeforeValidator(_self_heal)] = False
    categories: tuple[Label, ...] = ()
    ssh_known_hosts: tuple[
        Annotated[
            str,
            BeforeValidator(
                repository.check_known_host,
                json_schema_input_type=Annotated[
                    str, Field(examples=["git.example.com ssh-ed25519 AAAAC3Nz..."], description="a known_hosts line, as ssh-keyscan prints it")
                ],
            ),
        ],
        ...,
    ] = ()
    argocd: ArgoCd = Field(default_factory=ArgoCd)


# --- Storage: what the inventory's dataDisks become (stacks.storage checks it, plans.storage derives it) ---

# The StorageClasses each cluster can have (plans.storage.storage_classes says which it does have).
ArdaStorageClass = Literal["ceph-block", "ceph-filesystem", "local-path", "nfs"]
AinurStorageClass = Literal["longhorn", "local-path"]
_PERCENT = re.compile(r"^([1-9]|[1-8][0-9]|90)%$")
_EXPORT = re.compile(r"^/[^\s]*$")


class Ceph(Model):
    """Rook-Ceph on Arda's data disks: how many copies of each object, and whether CephFS runs too."""

    # Copies of every object, each on its own host (failureDomain: host). None: 3, Ceph's own default.
    replicas: int | None = Field(default=None, ge=1, le=7)
    filesystem: bool = False


class LocalVolumes(Model):
    """Node-local volumes: a Talos user volume on each Arda machine's system disk, for local-path-provisioner."""

    enabled: bool = True
    # The user volume's share of the system disk; Talos's EPHEMERAL (/var) is capped at the rest.
    size: Annotated[str, _pattern(_PERCENT, "25%", "share of the system disk (1% to 90%)")] = "25%"


class ArdaStorage(Model):
    """Arda's storage: which StorageClass is the default, Ceph's replication, local volumes."""

    default_class: ArdaStorageClass | None = None
    ceph: Ceph = Field(default_factory=Ceph)
    local: LocalVolumes = Field(default_factory=LocalVolumes)


class AinurStorage(Model):
    """The Ainur's storage: which StorageClass is the default (Longhorn on the Pis' data disks, or k3s's local-path)."""

    default_class: AinurStorageClass | None = None
    # The Ainur's own claims on Longhorn (Headscale's state, the Git mirror) on Longhorn's encrypted class
    # (plans.storage.encrypted_storage_class). Absent: off, so a deployed Ainur keeps its claims where they are (a claim's
    # class cannot change: docs/day2.md moves them); `iluvatar init` and the shipped stacks write it on.
    encrypted: bool = False


def _source_name(value: object) -> object:
    """A source of an app's ports is a network's name; an address or CIDR written there is said as that."""
    if isinstance(value, str) and re.match(r"^[0-9.:/]+$", value.strip()) and any(c in value for c in ".:/"):
        raise ValueError(
            f"{value} is an address, and a source is a network's name: lan (network.lan) or the name of one of "
            "network.vlans, whose CIDR Cilium lets in (the Service's loadBalancerSourceRanges)"
        )
    return value


def _nfs_server(value: object) -> object:
    if isinstance(value, str) and value.strip():
        text = value.strip().rstrip(".").lower()  # DNS names have no case (RFC 4343); the zone's are lower case
        try:
            return str(IPv4Address(text))
        except ValueError:
            if all(_LABEL.match(label) for label in text.split(".")):
                return text
    raise ValueError(f"{show(value)} is not an IPv4 address or a host name (e.g. 192.168.0.40 or nas)")


def _mount_option(value: object) -> object:
    """One mount option. csi-driver-nfs mounts through k8s mount-utils, which joins the list into one `-o` argument
    (k8s.io/mount-utils@v0.35.1 mount_linux.go:367, `"-o", strings.Join(combinedOptions, ",")`): an item with spaces
    becomes part of one option's value, and a `-o` in it an option named `-o ...`."""
    if not isinstance(value, str) or not value:
        return value  # the schema's own message (a string, not empty)
    if value.startswith("-") or any(c.isspace() for c in value):
        options = [o for o in re.split(r"[\s,]+", value.removeprefix("-o").strip()) if o and o != "-o"]
        raise ValueError(
            f"{value} is not one mount option: the items are joined with commas into mount's -o, so spaces and a -o stay in an "
            f"option's value; write one option per item, without -o (e.g. [{', '.join(options) or 'nfsvers=4.1, hard'}])"
        )
    return value


class Nfs(Model):
    """An NFS export (a NAS) that Arda's csi-driver-nfs provisions volumes from, one folder per claim."""

    server: Annotated[str, BeforeValidator(_nfs_server, json_schema_input_type=_text(r"^\S+$", "192.168.0.40", "the NFS server's address or name"))]
    share: Annotated[str, _pattern(_EXPORT, "/volume1/kubernetes", "NFS export path")]
    # NFS 4.1 with hard mounts: a NAS that reboots makes I/O wait, never fail with a half-written file.
    mount_options: tuple[Annotated[str, Field(min_length=1), BeforeValidator(_mount_option)], ...] = ("nfsvers=4.1", "hard", "noatime")


class Storage(Model):
    """`iluvatar:storage`: settings for what the inventory's data disks become; every key has a default."""

    arda: ArdaStorage = Field(default_factory=ArdaStorage)
    ainur: AinurStorage = Field(default_factory=AinurStorage)
    nfs: Nfs | None = None


def _retire(value: object) -> object:
    if isinstance(value, bool) or (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
        return value
    raise ValueError(f"{show(value)} is not true or a list of the node's dataDisks (e.g. [/dev/nvme1n1])")


# A Linux network interface name as the kernel has it (IFNAMSIZ: at most 15 characters, no '/' or space).
_LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")


class WakeOnLan(Model):
    """Power on by Wake-on-LAN: the Ainur send the magic packet; Talos keeps the NIC armed (EthernetConfig)."""

    # The NIC's kernel name on Talos (`talosctl get links`): Talos's EthernetConfig takes no alias.
    link: Annotated[str, _pattern(_LINK_NAME, "enp1s0", "network interface name")]


class Bmc(Model):
    """Power on (and optionally flash) through a board management controller: a Turing Pi 2's BMC."""

    type: Literal["turing-pi-2"] = "turing-pi-2"
    address: IPv4
    # The board's slot the machine sits in (node1 to node4 in the BMC's API).
    slot: int = Field(ge=1, le=4)
    # The BMC's login; its password is the secret iluvatar:bmcPasswords["<address>"] (stacks.power).
    username: Annotated[str, _pattern(re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"), "root", "BMC user name")] = "root"
    # Write the Image Factory disk image to the slot when Pulumi first adds the machine and Talos does not answer.
    flash: bool = False


class Power(Model):
    """How Pulumi powers a machine on when it needs it: one of Wake-on-LAN or a BMC."""

    # Editors flag `power: {}` and both ways at once as the user types (the validator below says why).
    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    wake_on_lan: WakeOnLan | None = None
    bmc: Bmc | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Power:
        if self.wake_on_lan is None and self.bmc is None:
            raise ValueError("says nothing: set wakeOnLan: {link: ...} or bmc: {address: ..., slot: ...}, or leave power out")
        if self.wake_on_lan is not None and self.bmc is not None:
            raise ValueError("sets both wakeOnLan and bmc; a machine is powered on one way: keep one")
        return self


class Node(Model):
    """One machine of the inventory: written once, every layer derives from it."""

    name: Label
    role: Role
    arch: Arch
    board: BoardName
    mac: Mac
    ip: IPv4
    install_disk: InstallDisk
    data_disks: tuple[DiskPath, ...] = ()
    vlan: Label | None = None
    talos_patches: tuple[TalosPatch, ...] = ()
    boot: Literal["netboot", "disk"] | None = None
    # Take this machine's Ceph OSDs out (true: all of them; a list: those data disks) before it or
    # they leave the inventory (stacks.storage, docs/day2.md#retiring-a-disk-or-a-machine).
    retire: Annotated[bool | tuple[DiskPath, ...], BeforeValidator(_retire)] = False
    # How Pulumi powers this Arda machine on when it needs it (components.power); unset: by hand.
    power: Power | None = None
    # A netbooting Pi's serial number: its bootloader asks TFTP for its files under it (plans.netboot.pis).
    serial: PiSerial | None = None
    # A netbooting maia's SSH host key is read once and pinned (components.ainur.Pi): a Pi rebuilt with a new key
    # has it read again when this number goes up (its host-key step has a new name, so the engine creates it anew,
    # with the program's connection: docs/layers/ainur.md, "A Pi rebuilt with a new host key").
    host_key_read: int = Field(default=0, ge=0)

    @property
    def retired_disks(self) -> tuple[str, ...]:
        """The data disks being retired: all of them with `retire: true`."""
        if isinstance(self.retire, bool):
            return self.data_disks if self.retire else ()
        return self.retire

    @property
    def cluster(self) -> str:
        return "ainur" if self.role in AINUR_ROLES else "arda"


class Cloudflare(Model):
    """The Cloudflare account that serves the external zone (token is a separate secret)."""

    account_id: Annotated[str, _pattern(re.compile(r"^[0-9a-f]{32}$"), "32 lower-case hex digits", "Cloudflare account id")]


class AppService(Model):
    """An app's backend: a Service in the app's category namespace (its name defaults to the app's)."""

    name: Label | None = None
    port: int = Field(ge=1, le=65535)


class AppPort(Model):
    """One raw TCP or UDP port of an app (`apps[].ports[]`), served at the app's own pool address (plans.ports).

    `protocol` is a plain string so a protocol the path cannot carry (TLS, SCTP, QUIC written as such) is refused by
    stacks.apps with the way to do it instead, not by the schema's generic "not one of"."""

    port: int
    protocol: str = "tcp"
    # The container's port, when it is not `port` (a number, or the name the pod's container gives it).
    target_port: int | Label | None = None
    # The Service port's name (Kubernetes requires one per port when there are several): protocol-port by default.
    name: Label | None = None

    @property
    def port_name(self) -> str:
        return self.name or f"{self.protocol}-{self.port}"

    @property
    def container_port(self) -> int | str:
        """The port the app's container serves: targetPort where set (a number or its name), else the Service's port."""
        return self.target_port if self.target_port is not None else self.port


# A model of its own, though it adds no field, so that the reference (docs/reference/keys.yaml) describes its targetPort
# and name as a host-network pod takes them, not as an app's Service port does.
class AppHostPort(AppPort):
    """One port a host-network pod listens on (`apps[].hostNetwork.ports[]`): the container's port is the machine's, with no
    Service in front to translate it, so a targetPort other than `port` is refused (stacks.apps.host_network_problems)
    and one equal to it warned of as unused (stacks.warn), and no Service port takes the name."""


class AppHostNetwork(Model):
    """An app whose pod shares one Arda machine's network (`apps[].hostNetwork`): Home Assistant's device discovery
    (mDNS, SSDP) and Matter need the pod on the LAN's own segment, which no Service address gives (stacks.apps says
    why host networking and not a second interface). `node` is the machine (an istari); `ports` every port the pod
    listens on there (no targetPort: no Service translates them), so another listener on that machine is refused at
    preview."""

    node: Label
    ports: tuple[AppHostPort, ...] = ()


class AppClient(Model):
    """Pods of Arda that reach an app with ports (`apps[].clients[]`): every app's pod is shut to what its policy does
    not admit (plans.ports), so an in-cluster MQTT client, or the gateway in front of the app's HTTP part, is named here.

    `pods` are the client pods' labels (every pod of `namespace` when unset; the namespace is `namespace`'s alone);
    `ports` the app's container ports they reach (a port's targetPort where set, not the Service's port), TCP (the app's
    own `ports` when unset, each with its protocol)."""

    namespace: Label
    pods: dict[str, str] | None = None
    ports: tuple[int, ...] = ()


PodSecurityLevel = Literal["restricted", "baseline", "privileged"]
POD_SECURITY_LEVELS: tuple[PodSecurityLevel, ...] = ("restricted", "baseline", "privileged")


class App(Model):
    """One app of the registry (`iluvatar:apps`): written once, it drives its route, its DNS record(s),
    its certificate coverage and, when external, its public exposure."""

    name: Label
    # One category is one GitOps folder and one namespace of the same name (stacks.categories).
    category: Label
    host: DnsName
    audience: Literal["internal", "external"] = "internal"
    # An HTTP app's backend, behind its audience's gateway; an app with `ports` instead has its own address.
    service: AppService | None = None
    # Raw TCP/UDP ports, reached at `address` (a fixed address of network.loadBalancerPool, the host's record in the
    # internal zone), on the pods `selector` matches (app.kubernetes.io/name: the app's name by default).
    ports: tuple[AppPort, ...] = ()
    address: IPv4 | None = None
    selector: dict[str, str] | None = None
    # Who outside the cluster reaches those ports: `lan` (network.lan) and names of network.vlans. Cilium drops any
    # other source at the Service's address (its loadBalancerSourceRanges), whichever node took it (plans.ports).
    sources: tuple[Annotated[Label, BeforeValidator(_source_name)], ...] = ("lan",)
    # Pods of the cluster that reach them (AppClient).
    clients: tuple[AppClient, ...] = ()
    # On one Arda machine's own network (AppHostNetwork), for protocols that need the LAN's segment.
    host_network: AppHostNetwork | None = None
    # What the app's pods need of their namespace's Pod Security level; the category namespace
    # takes the most permissive level any of its apps needs (plans.edge.namespaces).
    pod_security: PodSecurityLevel | None = None
    # Its Secret's entries (stacks.data_model.AppSecret) and its volumes' backups (AppBackup).
    secrets: tuple[AppSecret, ...] = ()
    backup: AppBackup | None = None

    @property
    def namespace(self) -> str:
        return self.category

    @property
    def service_name(self) -> str:
        return self.service.name if self.service is not None and self.service.name else self.name

    @property
    def http(self) -> AppService:
        """The HTTP backend of an app the gateways serve; the rules refuse an app with neither `service` nor `ports`."""
        if self.service is None:
            raise ValueError(f"app {self.name} has no service: it is served on its own address (ports)")
        return self.service

    @property
    def pod_selector(self) -> dict[str, str]:
        return dict(self.selector) if self.selector else {"app.kubernetes.io/name": self.name}


_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def _email(value: object) -> object:
    """An e-mail address; its domain, which DNS reads in any case, in lower case (the part before @ as written: only
    its own server may tell cases apart)."""
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise ValueError(f"{show(value)} is not a well-formed e-mail address ({_email_fix(value)})")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _email_fix(value: object) -> str:
    """What to write instead: the address alone, out of a display name's brackets, one of a list, or an example."""
    found = re.findall(r"[^@\s<>,;\[\]\"']+@[^@\s<>,;\[\]\"']+", value if isinstance(value, str) else show(value))
    addresses = [a for a in found if _EMAIL.match(a)]
    if len(addresses) > 1:
        return f"one address: write one of {', '.join(addresses)}"
    if addresses:
        return f"write the address alone: {addresses[0]}"
    return "e.g. you@example.org"


EmailAddress = Annotated[str, BeforeValidator(_email, json_schema_input_type=_text(_EMAIL.pattern, "you@example.org", "an e-mail address"))]


class EdgeAddresses(Model):
    """Where the edge listens on the LAN; each defaults to one of the load-balancer pool's top three."""

    envoy_external: IPv4 | None = None
    envoy_internal: IPv4 | None = None
    # The LAN's resolver for the internal zone and the app hosts, on Arda; only in a stack without
    # the Ainur (which serve DNS themselves).
    resolver: IPv4 | None = None


class Edge(Model):
    """The edge's modes: how the internet reaches external apps and who serves the public zone.

    Unset modes follow `iluvatar:cloudflare`: with it, the Cloudflare tunnel and Cloudflare DNS (what
    that key turned on before this section existed); without it, none of either.
    """

    public_ingress: Literal["cloudflare-tunnel", "none"] | None = None
    public_dns: Literal["cloudflare", "none"] | None = None
    # Let's Encrypt registers the ACME account for the public wildcard certificate with it.
    acme_email: EmailAddress | None = None
    addresses: EdgeAddresses = Field(default_factory=EdgeAddresses)

    def ingress(self, cloudflare_set: bool) -> str:
        return self.public_ingress or ("cloudflare-tunnel" if cloudflare_set else "none")

    def dns(self, cloudflare_set: bool) -> str:
        return self.public_dns or ("cloudflare" if cloudflare_set else "none")


# --- Monitoring and identity: see what runs, and sign in to it (stacks.monitoring, stacks.identity check them) ---

_RETENTION = re.compile(r"^[1-9]\d*[hdwy]$")
_VOLUME_SIZE = re.compile(r"^[1-9]\d*Gi$")
_SMARTHOST = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")


def _host_port(what: str, port: int, example: str) -> Any:
    """A host:port, as Alertmanager's smarthost and Dex's LDAP host take it: no scheme (`smtp://`, `ldaps://`), and a port
    (neither program adds one); a value with either is refused with the host:port to write."""

    def check(value: object) -> object:
        if isinstance(value, str) and _SMARTHOST.match(value):
            return value
        text = value.strip() if isinstance(value, str) else ""
        bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", text).rstrip("/")
        if bare != text and _SMARTHOST.match(bare):
            raise ValueError(f"{show(value)} is not a well-formed {what}: it takes no scheme; write {bare}")
        if re.fullmatch(r"[A-Za-z0-9.-]+", bare):
            raise ValueError(f"{show(value)} is not a well-formed {what}: it has no port; write {bare}:{port}")
        raise ValueError(f"{show(value)} is not a well-formed {what} (e.g. {example})")

    return BeforeValidator(check, json_schema_input_type=_text(_SMARTHOST.pattern, example, f"a {what}"))


_HTTPS_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
HttpUrl = Annotated[str, _pattern(_HTTPS_URL, "https://ntfy.sh/iluvatar-alerts", "http(s) URL")]


class Prometheus(Model):
    """Prometheus on Arda: how long it keeps samples, and the volume it keeps them on."""

    retention: Annotated[str, _pattern(_RETENTION, "15d", "retention (hours, days, weeks or years)")] = "15d"
    # Its volume; Prometheus also stops keeping old samples before the volume is full (stacks.monitoring).
    size: Annotated[str, _pattern(_VOLUME_SIZE, "20Gi", "volume size in Gi")] = "20Gi"
    # None: Arda's default StorageClass (storage.arda.defaultClass).
    storage_class: ArdaStorageClass | None = None


class Grafana(Model):
    """Grafana on Arda: the app of the registry (`iluvatar:apps`) whose route reaches it."""

    app: Label | None = None


class EmailReceiver(Model):
    """Alerts by e-mail through an SMTP server; its password is the secret `iluvatar:alertReceiverSecret`."""

    to: EmailAddress | None = None
    sender: EmailAddress | None = Field(default=None, alias="from")
    smarthost: Annotated[str, _host_port("SMTP host:port", 587, "smtp.example.org:587")] | None = None
    username: str | None = Field(default=None, min_length=1)


class WebhookReceiver(Model):
    """Alerts as Alertmanager's JSON to a URL; a bearer token, if it needs one, is `iluvatar:alertReceiverSecret`."""

    url: HttpUrl | None = None


class NtfyReceiver(Model):
    """Alerts as ntfy notifications to a topic's URL; an access token, if it needs one, is `iluvatar:alertReceiverSecret`."""

    url: HttpUrl | None = None


class AlertReceiver(Model):
    """Where alerts go: one of e-mail, a webhook or ntfy."""

    email: EmailReceiver | None = None
    webhook: WebhookReceiver | None = None
    ntfy: NtfyReceiver | None = None

    @property
    def kind(self) -> str | None:
        kinds = [k for k in ("email", "webhook", "ntfy") if getattr(self, k) is not None]
        return kinds[0] if len(kinds) == 1 else None


class Monitoring(Model):
    """`iluvatar:monitoring`: Prometheus, Alertmanager and Grafana on Arda (needs `iluvatar:gitops`), and where alerts go."""

    prometheus: Prometheus = Field(default_factory=Prometheus)
    grafana: Grafana = Field(default_factory=Grafana)
    receiver: AlertReceiver | None = None
    # A dead-man's switch off the homelab (a healthchecks.io check's ping URL, an Uptime Kuma push monitor): Alertmanager
    # posts kube-prometheus's always-firing Watchdog to it each hour, and stops while the alert path is broken; the
    # switch tells you, by its own way, when the posts stop.
    heartbeat: HttpUrl | None = None


ConnectorType = Literal["github", "ldap", "static"]


class Connector(Model):
    """Where people sign in: GitHub, an LDAP directory, or one static admin; its secret is
    `iluvatar:identityConnectorSecret` (the OAuth app's client secret, the LDAP bind password, or the admin's bcrypt hash)."""

    type: ConnectorType
    # github: the OAuth app's client id.
    client_id: str | None = Field(default=None, min_length=1)
    # github: the organisations whose members may sign in; their teams are the groups (`org:team`).
    orgs: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # ldap: the directory (host:port, over TLS), who binds, where users and groups live.
    host: Annotated[str, _host_port("LDAP host:port", 636, "ldap.example.org:636")] | None = None
    bind_dn: str | None = Field(default=None, min_length=1)
    user_base_dn: str | None = Field(default=None, min_length=1)
    group_base_dn: str | None = Field(default=None, min_length=1)
    # static: the admin's e-mail (what they sign in with) and the groups they are in.
    email: EmailAddress | None = None
    groups: tuple[Annotated[str, Field(min_length=1)], ...] = ()


class GroupBinding(Model):
    """A group of the connector and the ClusterRole its members get on both clusters (and its Argo CD role)."""

    group: str = Field(min_length=1)
    cluster_role: str = Field(min_length=1)


class IdentityHosts(Model):
    """The internal zone's names of what people sign in to; each defaults to `<name>.<network.domain>`."""

    dex: DnsName | None = None
    ca: DnsName | None = None
    argocd: DnsName | None = None
    argocd_ainur: DnsName | None = None


class Headlamp(Model):
    """Headlamp on Arda: the app of the registry whose route (through envoy-internal) reaches it."""

    app: Label


class Identity(Model):
    """`iluvatar:identity`: one login (Dex on the Ainur) for Argo CD, Headlamp and kubectl, and the local CA's page."""

    # The Ainur's front door on the LAN: Dex, the Ainur's Argo CD and the CA page, by name.
    ip: IPv4
    hosts: IdentityHosts = Field(default_factory=IdentityHosts)
    connector: Connector
    groups: tuple[GroupBinding, ...] = Field(min_length=1)
    headlamp: Headlamp | None = None


class StackConfig(Model):
    """A whole, validated stack: built only once every rule in `stacks.rules` has passed."""

    network: Network
    ainur: Ainur | None = None
    arda: Arda
    nodes: tuple[Node, ...]
    apps: tuple[App, ...] = ()
    edge: Edge = Field(default_factory=Edge)
    cloudflare: Cloudflare | None = None
    gitops: GitOps | None = None
    storage: Storage = Field(default_factory=Storage)
    monitoring: Monitoring | None = None
    identity: Identity | None = None
    backup: Backup | None = None
    logs: Logs | None = None
    remote_access: RemoteAccess | None = None
    # The names set under iluvatar:appSecrets, by app (never the values): a secret config key, so no field of the
    # inventory, yet a value there no app reads is a warning of a valid stack (stacks.warn._leftover_secrets).
    _app_secrets_set: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @property
    def app_secrets_set(self) -> dict[str, tuple[str, ...]]:
        """The names set under iluvatar:appSecrets, by app, as the stack file has them (stacks.load sets them)."""
        return self._app_secrets_set

    @property
    def public_ingress(self) -> str:
        """`cloudflare-tunnel` or `none`: how the internet reaches the external apps."""
        return self.edge.ingress(self.cloudflare is not None)

    @property
    def public_dns(self) -> str:
        """`cloudflare` or `none`: who serves the public zone (and answers Let's Encrypt's DNS-01)."""
        return self.edge.dns(self.cloudflare is not None)

    @property
    def has_lan_resolver(self) -> bool:
        """Without the Ainur, a resolver on Arda answers the app hosts (stacks.edge.resolver_needed)."""
        return self.ainur is None and bool(self.apps)

    @property
    def uses_cloudflare(self) -> bool:
        """Any Cloudflare resource at all: with neither mode on, no Cloudflare provider is registered."""
        return self.public_dns == "cloudflare" or self.public_ingress == "cloudflare-tunnel"

    @property
    def generic_worker(self) -> GenericWorker | None:
        """What unknown machines netboot as, when the stack lets them (unknownMacs: generic-worker)."""
        if self.ainur is None or self.ainur.netboot.unknown_macs != "generic-worker":
            return None
        return self.ainur.netboot.generic_worker

    @property
    def discovery(self) -> Discovery | None:
        """How unknown machines are discovered, when the stack lets them (arda.discovery, served by the Ainur)."""
        return self.arda.discovery if self.ainur is not None else None

    @property
    def discovery_boards(self) -> dict[Arch, str]:
        """The boards a machine being discovered boots as, by architecture (none without discovery)."""
        if self.discovery is None:
            return {}
        return discovery_boards(self.discovery.arches, (n.arch for n in self.arda_nodes))

    def boots_from_network(self, node: Node) -> bool:
        """Netboot unless the node says disk; the default needs an Ainur and a board that can."""
        if node.boot is not None:
            return node.boot == "netboot"
        return self.ainur is not None and node.role in ARDA_ROLES and bool(BOARDS[node.board].netboot) and node.vlan is None

    def by_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    @property
    def ainur_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role in AINUR_ROLES)

    @property
    def arda_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role in ARDA_ROLES)
