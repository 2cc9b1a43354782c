"""Discovery: a machine waiting in Talos's maintenance mode, as the inventory entry `iluvatar discover` prints.

`upgrader discover` (upgrader/internal/discovery) reads the netboot service's leases and asks each machine what it
is; this module turns its answer into an entry of `iluvatar:nodes`: a name the user may change, the MAC its firmware
netbooted with (the one its discovery name carries), the next free static address of the plan (plans.ipam), the
board its architecture boots as, the install disk as a selector that survives a reboot (model, serial and WWID,
never `/dev/sdX`, which the kernel may name another way at the next boot), the data disks by their
`/dev/disk/by-id` names, and a role for the user to choose. A machine whose disks cannot be told apart that way gets
an entry that says so, as a comment, never a guess.

How Talos matches a selector decides what "told apart" means: `machine.install.diskSelector` becomes a CEL
expression over each block.Disk (machinery v1.13.0 config/types/v1alpha1/v1alpha1_provider.go:1248-1380: each field
set is `glob(pattern, disk.<field>)`, wwid included (:1310), always with `disk.transport != ""`), evaluated by
blockhelpers.MatchDisks (config/types/block/blockhelpers/blockhelpers.go:22-51), and Talos installs to the first disk
that matches (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go:1504-1522 at v1.12.4). `glob`
is ryanuber/go-glob's, whose only wildcard is `*` and which has no escape (`glob`, imported from stacks.disk_ids, is it, line for line). A
selector is written only when it matches its disk and no other of the machine's: the tests check that in machinery's
own CEL evaluation. What Talos reports of a disk decides which fields a selector can use: a SATA disk has no serial
there (go-blockdevice v2.0.23 block/device_linux.go:343-360 reads sysfs `device/serial`, which only NVMe and
virtio disks have, and Talos runs udev's ata_id or scsi_id only for the transports `ata` and `scsi`, never `sata`:
internal/app/machined/pkg/controllers/block/disks.go:220-226, 265-283 at v1.12.4), but a WWID (sysfs `wwid` or
`device/wwid`, device_linux.go:346-351), which is written whenever it is reported.

What a disk holds decides whether it is free. Talos installs with force (v1alpha1_sequencer_tasks.go:1541 at
v1.12.4: `install.WithForce(true)`; cmd/installer/pkg/install/install.go:290-304 then skips its "disk is not empty"
check and wipes the disk), so an install disk holding another system or data is lost: such an entry is a comment
unless the user names the machine with --wipe. Storage wipes its data disks too, so only an empty disk is one.

Every string here comes from the machine, which anyone on the LAN can be: `upgrader discover` escapes every control
and non-printable character before its JSON, and `printable` below does again, so no field can end a comment line
of the stack file or start a line of its own; a field that needed escaping is never used in a selector or a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from plans.ipam import free_static
from stacks.boards import DISCOVERY_BOARDS
from stacks.disk_ids import glob
from stacks.model import DiskSelector, StackConfig

# Talos's own partitions (pkg/machinery/constants/constants.go at v1.12.4: EFIPartitionLabel, BIOSGrubPartitionLabel,
# BootPartitionLabel, MetaPartitionLabel, StatePartitionLabel, EphemeralPartitionLabel, ImageCachePartitionLabel).
TALOS_SYSTEM_LABELS = frozenset({"EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL", "IMAGECACHE"})
# A disk with one of these holds a Talos install (EFI or BIOS alone may be any system's).
TALOS_MARKERS = frozenset({"META", "STATE", "EPHEMERAL"})
# Talos's user and raw volumes (constants.UserVolumePrefix, RawVolumePrefix): a workload's data, not Talos's.
TALOS_DATA_PREFIXES = ("u-", "r-")
DISK_TRANSPORTS_NOT_INSTALLED_TO = frozenset({"usb"})  # a stick the machine booted or was flashed from
# The name its iPXE discovery script gives it (plans.netboot.ipxe: talos.hostname=discovery-<arch>-${mac:hexhyp}).
DISCOVERY_NAME = re.compile(r"^discovery-(amd64|arm64)-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")
MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def printable(text: object) -> str:
    """`text` with every control and non-printable character written as an escape (`\\x0a`, `\\u2028`): what the
    machine said, on one line that cannot end a comment. Printable text, and a backslash, are kept as they are."""
    out = []
    for ch in str(text):
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def exact(text: str) -> bool:
    """Whether a field is the machine's own text, usable in a selector or a path: printable, and with no backslash
    (`upgrader discover` and `printable` escape what is not, and go-glob has no escape for one)."""
    return text.isprintable() and "\\" not in text


def _text(value: object) -> str:
    return printable(value).strip() if value is not None else ""


# The names go-blockdevice v2.0.23 gives a whole disk's partition table (blkid/internal/partitions/gpt/gpt.go: "gpt";
# it has no MBR prober, but the kernel's MBR partitions are published as partitions, block/discovery.go:122-150).
PARTITION_TABLES = ("gpt", "dos")
UNREADABLE_WHY = "blank, or used whole by what Talos 1.12 cannot read (btrfs, an mdraid member, NTFS, exFAT, f2fs, bcache, ...)"
UNREADABLE = "Talos reads nothing on it: " + UNREADABLE_WHY


@dataclass(frozen=True)
class Disk:
    """One block.Disk as the machine published it (upgrader discover's JSON), every string made printable."""

    id: str
    dev_path: str
    size: int
    model: str = ""
    serial: str = ""
    wwid: str = ""
    transport: str = ""
    rotational: bool = False
    readonly: bool = False
    cdrom: bool = False
    symlinks: tuple[str, ...] = ()
    pretty_size: str = ""
    holds: tuple[str, ...] = ()  # what its volumes are: partition labels and filesystems
    # The partition table Talos read on the whole disk ("gpt"), if any: with no partition, the one proof of an empty disk.
    table: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any], volumes: Sequence[Mapping[str, Any]]) -> Disk:
        held, table = [], ""
        for v in volumes:
            if v.get("devPath") == d["devPath"] and v.get("type") == "disk" and v.get("name") in PARTITION_TABLES:
                table = _text(v["name"])
            if v.get("parentDevPath") == d["devPath"]:
                held.append(_text(v.get("partitionLabel") or v.get("name") or "a partition"))
            elif v.get("devPath") == d["devPath"] and v.get("type") == "disk" and v.get("name") not in ("", "gpt", "dos", None):
                held.append(_text(v["name"]))  # a filesystem on the whole disk
        return cls(
            id=_text(d["id"]),
            dev_path=_text(d["devPath"]),
            size=int(d["size"]),
            model=_text(d.get("model")),
            serial=_text(d.get("serial")),
            wwid=_text(d.get("wwid")),
            transport=_text(d.get("transport")),
            rotational=bool(d.get("rotational")),
            readonly=bool(d.get("readonly")),
            cdrom=bool(d.get("cdrom")),
            symlinks=tuple(_text(s) for s in d.get("symlinks") or ()),
            pretty_size=_text(d.get("prettySize")) or f"{int(d['size'])} B",
            holds=tuple(held),
            table=table,
        )

    @property
    def unreadable(self) -> bool:
        """Talos read nothing on it: no partition, no partition table, no filesystem. Blank, or used whole by what
        Talos 1.12's probing cannot name (btrfs, an mdraid member, NTFS, exFAT, f2fs, bcache, ...): not proof of empty."""
        return not self.holds and not self.table

    @property
    def usable(self) -> bool:
        """A disk Talos could install to or Ceph could take: a real one (Talos's selector needs a transport), writable."""
        return bool(self.transport) and not self.readonly and not self.cdrom and self.transport not in DISK_TRANSPORTS_NOT_INSTALLED_TO

    @property
    def holds_talos(self) -> bool:
        """Holds a Talos install and nothing else: Talos's own partitions, no user volume, no other filesystem."""
        return bool(TALOS_MARKERS & set(self.holds)) and set(self.holds) <= TALOS_SYSTEM_LABELS

    @property
    def holds_data(self) -> bool:
        """Holds anything but a Talos install: another system, a filesystem, a Talos user volume."""
        return bool(self.holds) and not self.holds_talos

    def matches(self, selector: DiskSelector) -> bool:
        """Talos's match of an install disk selector's model, serial and WWID (and its transport rule) against this disk."""
        return (
            self.transport != ""
            and (selector.model is None or glob(selector.model, self.model))
            and (selector.serial is None or glob(selector.serial, self.serial))
            and (selector.wwid is None or glob(selector.wwid, self.wwid))
        )

    @property
    def by_id(self) -> str | None:
        """Its stable path: a udev /dev/disk/by-id name (not a partition's), the one made of its model and serial
        before a wwn- or eui. one, which name the same disk by another number."""
        ids = [s for s in self.symlinks if s.startswith("/dev/disk/by-id/") and exact(s) and "-part" not in s.rsplit("/", 1)[1]]

        def rank(path: str) -> tuple[bool, bool, str]:
            base = path.rsplit("/", 1)[1]
            return (not (self.serial and self.serial.replace(" ", "_") in base), base.startswith(("wwn-", "nvme-eui.", "nvme-nvme.")), base)

        return min(ids, key=rank, default=None)

    def describe(self) -> str:
        kind = {"nvme": "NVMe", "sata": "SATA", "mmc": "SD/eMMC", "usb": "USB", "virtio": "virtio", "scsi": "SCSI"}.get(
            self.transport, self.transport or "virtual"
        )
        media = "" if self.transport in ("nvme", "mmc") else (" HDD" if self.rotational else " SSD")
        what = f'"{self.model}"' if self.model else "no model"
        ids = (f" serial {self.serial}" if self.serial else " no serial") + (f" wwid {self.wwid}" if self.wwid else "")
        if self.holds:
            holds = ("holds Talos: " if self.holds_talos else "holds ") + ", ".join(self.holds)
        else:
            holds = f"empty {self.table} partition table" if self.table else UNREADABLE
        return f"{self.id} {self.pretty_size} {kind}{media} {what}{ids} ({holds})"


@dataclass(frozen=True)
class Machine:
    """One machine in maintenance mode, as `upgrader discover` asked it, every string made printable."""

    name: str  # the lease's hostname, else the --address machine's
    address: str
    mac: str  # the NIC it netbooted from: its discovery name's; else its lease's; else its up physical link's
    arch: str | None
    version: str
    disks: tuple[Disk, ...]
    links: tuple[Mapping[str, Any], ...]
    system: Mapping[str, Any] | None
    refused: tuple[str, ...] = ()
    error: str = ""
    configured: bool = False  # it asked for a client certificate: a configured Talos, not one in maintenance mode
    lease_mac: str = ""  # the MAC of the lease it was found by (another NIC of it, when dnsmasq moved the name there)

    @classmethod
    def from_json(cls, m: Mapping[str, Any], lease_mac: str | None = None) -> Machine:
        volumes = m.get("volumes") or []
        links = tuple({k: (_text(v) if isinstance(v, str) else v) for k, v in link.items()} for link in m.get("links") or ())
        physical = [link for link in links if link.get("physical")]
        hostname = _text(m.get("hostname")) or _text(m.get("name"))
        named = DISCOVERY_NAME.match(hostname)
        lease = _text(lease_mac).lower()
        up = next((link.get("permanentAddr") or link.get("hardwareAddr") for link in physical if link.get("up")), None) or ""
        mac = named.group(2).replace("-", ":") if named else lease or str(up).lower()
        arch = _text(m.get("arch")) or (named.group(1) if named else None)
        system = {k: _text(v) for k, v in m["system"].items()} if isinstance(m.get("system"), Mapping) else None
        return cls(
            name=_text(m.get("name")),
            address=_text(m.get("address")),
            mac=mac if MAC.match(mac) else "",
            arch=arch or None,
            version=_text(m.get("version")),
            disks=tuple(Disk.from_json(d, volumes) for d in m.get("disks") or ()),
            links=links,
            system=system,
            refused=tuple(_text(r) for r in m.get("refused") or ()),
            error=_text(m.get("error")),
            configured=bool(m.get("configured")),
            lease_mac=lease if MAC.match(lease) else "",
        )

    @property
    def link_macs(self) -> tuple[str, ...]:
        """Its physical links' MACs: each permanent one (what the NIC's ROM has), and the current one where it differs."""
        out: list[str] = []
        for link in self.links:
            if link.get("physical"):
                for key in ("permanentAddr", "hardwareAddr"):
                    mac = str(link.get(key) or "").lower()
                    if MAC.match(mac) and mac not in out:
                        out.append(mac)
        return tuple(out)


@dataclass(frozen=True)
class Entry:
    """A machine's inventory entry, or the reason it cannot have one (`problem`), with what the user should read."""

    machine: Machine
    node: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    problem: str = ""


def taken_addresses(stack: StackConfig) -> set[IPv4Address]:
    """Every static address of network.lan the stack holds: machines, VIPs, the front door, the gateway, its DNS."""
    net = stack.network
    taken = {n.ip for n in stack.nodes if n.vlan is None} | {net.gateway, stack.arda.vip, *net.dns}
    if stack.ainur is not None:
        taken |= {stack.ainur.vip, stack.ainur.service_ip}
        if stack.ainur.git_mirror is not None:
            taken.add(stack.ainur.git_mirror.ip)
    if stack.identity is not None:
        taken.add(stack.identity.ip)
    edge = stack.edge.addresses
    taken |= {ip for ip in (edge.envoy_external, edge.envoy_internal, edge.resolver) if ip is not None}
    return taken


def pools(stack: StackConfig) -> list[tuple[IPv4Address, IPv4Address]]:
    """The ranges others hand out: the DHCP range, the load-balancer pool, the discovery pool."""
    net = stack.network
    out = [(net.dhcp_range.start, net.dhcp_range.end), (net.load_balancer_pool.start, net.load_balancer_pool.end)]
    if stack.discovery is not None and stack.discovery.pool is not None:
        out.append((stack.discovery.pool.start, stack.discovery.pool.end))
    return out


def _name(mac: str, names: set[str]) -> str:
    """A name the user may change: the MAC's last three bytes, unique among the inventory's."""
    base = "node-" + mac.replace(":", "")[-6:]
    name, n = base, 2
    while name in names:
        name, n = f"{base}-{n}", n + 1
    return name


def _selector(disk: Disk, disks: Sequence[Disk]) -> DiskSelector | None:
    """The selector by model, serial and WWID (those it has, each exactly as Talos reports it) that matches this disk
    and no other of the machine's."""
    fields = {k: v for k, v in (("model", disk.model), ("serial", disk.serial), ("wwid", disk.wwid)) if v and exact(v)}
    if not fields:
        return None
    selector = DiskSelector(**fields)
    return selector if [d.id for d in disks if d.matches(selector)] == [disk.id] else None


def install_disk(disks: Sequence[Disk], wipe: bool = False) -> Disk | None:
    """Where Talos goes. Without `wipe`: a disk holding an earlier Talos (the install replaces it, rather than leave
    two META and STATE partitions, of which Talos v1.12.4 mounts the first it finds: controllers/block/system_disk.go:70-76,
    internal/volumes/locate.go:47-88), before an empty one (an empty partition table), before one Talos reads nothing
    on (blank, or btrfs, mdraid, NTFS...: `unreadable`), before one holding anything else; then solid-state before
    rotating (a homelab's small boot SSD beside a big data disk); then the smallest. With `wipe` (the user let its disks
    be wiped): what each holds does not count."""
    usable = [d for d in disks if d.usable]

    def rank(d: Disk) -> tuple[int, bool, int, str]:
        held = 0 if wipe or d.holds_talos else 1 if not d.holds and d.table else 2 if d.unreadable else 3
        return (held, d.rotational, d.size, d.id)

    return min(usable, key=rank, default=None)


def entry(stack: StackConfig, machine: Machine, address: IPv4Address, names: set[str], role: str = "istari", wipe: bool = False) -> Entry:
    """The inventory entry of a discovered machine, at `address` (the next free one: `next_address`). `wipe`: the user
    named it with --wipe, so an install disk holding another system or data may be taken (and is wiped)."""
    if machine.configured:
        return Entry(
            machine,
            None,
            problem=(
                "it answers as a configured Talos, not in maintenance mode: a disk of it holds a Talos STATE with a machine "
                "config from an earlier install, which Talos boots instead of waiting (internal/app/machined/pkg/controllers/"
                "config/acquire.go:175, 244-300 at v1.12.4), so it cannot be read; reset it with that cluster's talosconfig "
                "(`talosctl reset --graceful=false --reboot -n IP`) or wipe its disks, then boot it again"
            ),
        )
    if machine.error:
        return Entry(machine, None, problem=f"could not be asked: {machine.error}")
    if not machine.mac:
        return Entry(machine, None, problem="no discovery name, lease or link with a MAC: which NIC netboots it is unknown")
    links = machine.link_macs
    if links and machine.mac not in links:
        return Entry(
            machine,
            None,
            problem=(
                f"its discovery name says it netbooted from {machine.mac}, but none of its links has that MAC "
                f"({', '.join(links)}): not the machine the name is for; boot it again"
            ),
        )
    if machine.arch not in DISCOVERY_BOARDS:
        return Entry(
            machine, None, problem="its architecture is unknown (a Talos 1.12 machine not booted by discovery answers no Version): give --arch"
        )
    arch = str(machine.arch)
    target = install_disk(machine.disks, wipe)
    if target is None:
        return Entry(machine, None, problem="has no disk Talos could install to (every one is read-only, removable or virtual)")
    notes = [f"installDisk: {target.describe()}"]
    if target.holds_talos:
        notes.append(f"installDisk {target.id} holds an earlier Talos install: installing replaces it")
    # The disk it would have gone to if what they hold did not count: named, so the user may choose it with --wipe.
    preferred = None if wipe else install_disk(machine.disks, wipe=True)
    if preferred is not None and preferred.id != target.id and preferred.holds_data:
        notes.append(
            f"passed over for installDisk: {preferred.id} holds {', '.join(preferred.holds)}; to install there instead (wiping it), "
            f"give --wipe {machine.mac}"
        )
    if target.holds_data:
        if not wipe:
            return Entry(
                machine,
                None,
                tuple(notes),
                problem=(
                    f"every disk it could install to holds something: {target.id} holds {', '.join(target.holds)}, and "
                    f"installing Talos wipes its install disk whatever it holds (installer WithForce); to install there, "
                    f"give --wipe {machine.mac}"
                ),
            )
        notes.append(f"installDisk {target.id} holds {', '.join(target.holds)}: installing Talos wipes it (--wipe)")
    if target.unreadable:
        # Review 2 HIGH 2: Talos v1.12.4 names a disk's content by go-blockdevice v2.0.23's blkid, which probes GPT and
        # bluestore, ext2/3/4, iso9660, luks, lvm2, squashfs, swap, talosmeta, vfat, xfs and zfs only
        # (blkid/internal/chain/chain.go); the installer wipes whatever else is there (WithForce).
        if not wipe:
            return Entry(
                machine,
                None,
                tuple(notes),
                problem=(
                    f"Talos reads nothing on {target.id}, the disk it would install to: it is {UNREADABLE_WHY}, and installing "
                    f"Talos wipes it; if it holds nothing you keep, give --wipe {machine.mac}"
                ),
            )
        notes.append(f"installDisk {target.id}: Talos reads nothing on it; installing Talos wipes it (--wipe)")
    selector = _selector(target, machine.disks)
    if selector is None:
        twins = [d.id for d in machine.disks if d.transport and d.model == target.model and d.serial == target.serial and d.wwid == target.wwid]
        return Entry(
            machine,
            None,
            tuple(notes),
            problem=(
                f"its disks cannot be told apart by model, serial and WWID ({', '.join(twins)}: model {target.model or 'none'}, "
                f"serial {target.serial or 'none'}, wwid {target.wwid or 'none'}), so no installDisk selector would survive a "
                "reboot; write installDisk by hand (a busPath selector names the slot)"
            ),
        )
    if selector.serial is None and selector.wwid is None:
        notes.append(
            f"installDisk {target.id} is chosen by its model alone (Talos reports no serial or WWID for it): another disk of that model would match too"
        )
    data: list[str] = []
    for d in machine.disks:
        if d.id == target.id or not d.usable:
            continue
        if d.unreadable and not wipe:
            notes.append(
                f"not a data disk: {d.describe()}: it may hold what Talos cannot read; if it holds nothing you keep, give --wipe {machine.mac}"
            )
            continue
        if d.holds:
            what = "an earlier Talos's partitions" if d.holds_talos else ", ".join(d.holds)
            notes.append(f"not a data disk: {d.describe()}: it holds {what}, which storage would wipe; to give it to storage, add it to dataDisks")
            continue
        path = d.by_id
        if path is None:
            notes.append(f"not a data disk: {d.describe()} has no /dev/disk/by-id name that survives a reboot")
            continue
        data.append(path)
        notes.append(f"dataDisks: {d.describe()}")
    node: dict[str, Any] = {
        "name": _name(machine.mac, names),
        "role": role,
        "arch": arch,
        "board": DISCOVERY_BOARDS[arch],  # type: ignore[index]
        "mac": machine.mac,
        "ip": str(address),
        "installDisk": selector.talos(),
    }
    if data:
        node["dataDisks"] = data
    return Entry(machine, node, tuple(notes))


def next_addresses(stack: StackConfig, count: int, also_taken: Iterable[IPv4Address] = (), role: str = "istari") -> list[IPv4Address]:
    """The next `count` free static addresses of network.lan (plans.ipam): after the last machine of the role (else of
    Arda), as a homelab numbers its machines by kind (.2x control planes, .3x workers), then from the lowest."""
    free = list(free_static(stack.network.lan, taken_addresses(stack) | set(also_taken), pools(stack)))
    peers = [n.ip for n in stack.nodes if n.role == role and n.vlan is None] or [n.ip for n in stack.arda_nodes if n.vlan is None]
    after = max(peers, default=IPv4Address(0))
    return ([ip for ip in free if ip > after] + [ip for ip in free if ip < after])[:count]


def known_as(stack: StackConfig, machine: Machine) -> str | None:
    """The inventory machine it is, by any MAC it has (the one it netbooted from, its lease's, any link's): a second NIC
    of a known machine that PXE-booted is that machine, not a new one."""
    by_mac = {n.mac: n.name for n in stack.nodes}
    for mac in (machine.mac, machine.lease_mac, *machine.link_macs):
        if mac in by_mac:
            return by_mac[mac]
    return None


@dataclass
class Plan:
    """Every discovered machine's entry, in the order asked, and the ones the inventory already has."""

    entries: list[Entry] = field(default_factory=list)
    known: list[tuple[Machine, str]] = field(default_factory=list)  # (machine, the inventory's name for it)


def plan(stack: StackConfig, machines: Sequence[Machine], role: str = "istari", wipe: Iterable[str] = ()) -> Plan:
    """Entries for every machine not in the inventory yet (by any of its MACs), each once (a machine found at two
    addresses, one per NIC, is one), each its own free address and unique name. `wipe`: MACs the user let be wiped."""
    names = {n.name for n in stack.nodes}
    wiped = {m.lower() for m in wipe}
    used: set[IPv4Address] = set()
    seen: set[str] = set()
    out = Plan()
    for m in machines:
        name = known_as(stack, m)
        if name is not None:
            out.known.append((m, name))
            continue
        if m.mac and m.mac in seen:
            continue
        seen.add(m.mac)
        free = next_addresses(stack, 1, used, role)
        if not free:
            out.entries.append(Entry(m, None, problem=f"network.lan {stack.network.lan} has no free static address left outside the pools"))
            continue
        e = entry(stack, m, free[0], names, role, wipe=m.mac in wiped)
        if e.node is not None:
            names.add(e.node["name"])
            used.add(free[0])
        out.entries.append(e)
    return out
