"""Discovery: a machine waiting in Talos's maintenance mode, as the inventory entry `iluvatar discover` prints.

`upgrader discover` (upgrader/internal/discovery) reads the netboot service's leases and asks each machine what it
is; this module turns its answer into an entry of `iluvatar:nodes`: a name the user may change, the MAC its firmware
netbooted with, the next free static address of the plan (plans.ipam), the board its architecture boots as, the
install disk as a selector that survives a reboot (model and serial, never `/dev/sdX`, which the kernel may name
another way at the next boot), the data disks by their `/dev/disk/by-id` names (udev's, from model and serial too),
and a role for the user to choose. A machine whose disks cannot be told apart that way gets an entry that says so,
as a comment, never a guess.

How Talos matches a selector decides what "told apart" means: `machine.install.diskSelector` becomes a CEL
expression over each block.Disk (machinery v1.13.0 config/types/v1alpha1/v1alpha1_provider.go:1248-1380: each field
set is `glob(pattern, disk.<field>)`, always with `disk.transport != ""`), evaluated by blockhelpers.MatchDisks
(config/types/block/blockhelpers/blockhelpers.go:22-51), and Talos installs to the first disk that matches
(internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go:1504-1522 at v1.12.4). `glob` is
ryanuber/go-glob's, whose only wildcard is `*` and which has no escape (`glob` below is it, line for line). A
selector is written only when it matches its disk and no other of the machine's: the tests check that in machinery's
own CEL evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from plans.ipam import free_static
from stacks.boards import DISCOVERY_BOARDS
from stacks.model import DiskSelector, StackConfig

# Talos's own partitions (pkg/machinery/constants: EFIPartitionLabel, BIOSGrubPartitionLabel, BootPartitionLabel,
# MetaPartitionLabel, StatePartitionLabel, EphemeralPartitionLabel): a disk holding META or STATE holds a Talos install.
TALOS_LABELS = frozenset({"META", "STATE", "EPHEMERAL"})
DISK_TRANSPORTS_NOT_INSTALLED_TO = frozenset({"usb"})  # a stick the machine booted or was flashed from


def glob(pattern: str, subject: str) -> bool:
    """ryanuber/go-glob v1.0.0's Glob (glob.go), which Talos's CEL `glob` calls (machinery cel/celenv/celenv.go:45-48)."""
    if pattern == "":
        return subject == pattern
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return subject == pattern
    leading, trailing = pattern.startswith("*"), pattern.endswith("*")
    end = len(parts) - 1
    for i in range(end):
        idx = subject.find(parts[i])
        if i == 0:
            if not leading and idx != 0:
                return False
        elif idx < 0:
            return False
        subject = subject[idx + len(parts[i]) :]
    return trailing or subject.endswith(parts[end])


@dataclass(frozen=True)
class Disk:
    """One block.Disk as the machine published it (upgrader discover's JSON)."""

    id: str
    dev_path: str
    size: int
    model: str = ""
    serial: str = ""
    transport: str = ""
    rotational: bool = False
    readonly: bool = False
    cdrom: bool = False
    symlinks: tuple[str, ...] = ()
    pretty_size: str = ""
    holds: tuple[str, ...] = ()  # what its volumes are: partition labels and filesystems

    @classmethod
    def from_json(cls, d: Mapping[str, Any], volumes: Sequence[Mapping[str, Any]]) -> Disk:
        held = []
        for v in volumes:
            if v.get("parentDevPath") == d["devPath"]:
                held.append(v.get("partitionLabel") or v.get("name") or "a partition")
            elif v.get("devPath") == d["devPath"] and v.get("type") == "disk" and v.get("name") not in ("", "gpt", "dos", None):
                held.append(str(v["name"]))  # a filesystem on the whole disk
        return cls(
            id=d["id"],
            dev_path=d["devPath"],
            size=int(d["size"]),
            model=(d.get("model") or "").strip(),
            serial=(d.get("serial") or "").strip(),
            transport=d.get("transport") or "",
            rotational=bool(d.get("rotational")),
            readonly=bool(d.get("readonly")),
            cdrom=bool(d.get("cdrom")),
            symlinks=tuple(d.get("symlinks") or ()),
            pretty_size=d.get("prettySize") or f"{int(d['size'])} B",
            holds=tuple(held),
        )

    @property
    def usable(self) -> bool:
        """A disk Talos could install to or Ceph could take: a real one (Talos's selector needs a transport), writable."""
        return bool(self.transport) and not self.readonly and not self.cdrom and self.transport not in DISK_TRANSPORTS_NOT_INSTALLED_TO

    @property
    def holds_talos(self) -> bool:
        return bool(TALOS_LABELS & set(self.holds))

    def matches(self, selector: DiskSelector) -> bool:
        """Talos's match of an install disk selector's model and serial (and its transport rule) against this disk."""
        return (
            self.transport != ""
            and (selector.model is None or glob(selector.model, self.model))
            and (selector.serial is None or glob(selector.serial, self.serial))
        )

    @property
    def by_id(self) -> str | None:
        """Its stable path: udev's /dev/disk/by-id name made of its model and serial (not a wwn- or eui. one, which
        name the same disk by another number), else any by-id name."""
        ids = sorted(s for s in self.symlinks if s.startswith("/dev/disk/by-id/"))
        named = [
            s
            for s in ids
            if self.serial and self.serial.replace(" ", "_") in s and not s.rsplit("/", 1)[1].startswith(("wwn-", "nvme-eui.", "nvme-nvme."))
        ]
        chosen = named or ids
        return chosen[0] if chosen else None

    def describe(self) -> str:
        kind = {"nvme": "NVMe", "sata": "SATA", "mmc": "SD/eMMC", "usb": "USB", "virtio": "virtio", "scsi": "SCSI"}.get(
            self.transport, self.transport or "virtual"
        )
        media = "" if self.transport in ("nvme", "mmc") else (" HDD" if self.rotational else " SSD")
        what = f'"{self.model}"' if self.model else "no model"
        serial = f" serial {self.serial}" if self.serial else " no serial"
        holds = "empty" if not self.holds else ("holds Talos: " if self.holds_talos else "holds ") + ", ".join(self.holds)
        return f"{self.id} {self.pretty_size} {kind}{media} {what}{serial} ({holds})"


@dataclass(frozen=True)
class Machine:
    """One machine in maintenance mode, as `upgrader discover` asked it."""

    name: str
    address: str
    mac: str  # the MAC it netbooted with (its lease's), else its up physical link's permanent one
    arch: str | None
    version: str
    disks: tuple[Disk, ...]
    links: tuple[Mapping[str, Any], ...]
    system: Mapping[str, Any] | None
    refused: tuple[str, ...] = ()
    error: str = ""

    @classmethod
    def from_json(cls, m: Mapping[str, Any], lease_mac: str | None = None) -> Machine:
        volumes = m.get("volumes") or []
        links = tuple(m.get("links") or ())
        physical = [link for link in links if link.get("physical")]
        mac = lease_mac or next((link.get("permanentAddr") or link.get("hardwareAddr") for link in physical if link.get("up")), None) or ""
        arch = m.get("arch") or _arch_of(m.get("hostname") or m.get("name") or "")
        return cls(
            name=m.get("name") or "",
            address=m.get("address") or "",
            mac=mac.lower(),
            arch=arch,
            version=m.get("version") or "",
            disks=tuple(Disk.from_json(d, volumes) for d in m.get("disks") or ()),
            links=links,
            system=m.get("system"),
            refused=tuple(m.get("refused") or ()),
            error=m.get("error") or "",
        )


def _arch_of(hostname: str) -> str | None:
    """The architecture its iPXE booted it as, from the name its discovery script gave it (`discovery-<arch>-<mac>`)."""
    for arch in DISCOVERY_BOARDS:
        if hostname.startswith(f"discovery-{arch}-"):
            return arch
    return None


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
    """The selector by model and serial (whichever it has) that matches this disk and no other of the machine's."""
    fields = {k: v for k, v in (("model", disk.model), ("serial", disk.serial)) if v}
    if not fields:
        return None
    selector = DiskSelector(**fields)
    return selector if [d.id for d in disks if d.matches(selector)] == [disk.id] else None


def install_disk(disks: Sequence[Disk]) -> Disk | None:
    """Where Talos goes: the smallest solid-state usable disk (a homelab's small boot SSD beside a big data disk), else
    the smallest usable one."""
    usable = [d for d in disks if d.usable]
    solid = [d for d in usable if not d.rotational]
    return min(solid or usable, key=lambda d: (d.size, d.id), default=None)


def entry(stack: StackConfig, machine: Machine, address: IPv4Address, names: set[str], role: str = "istari") -> Entry:
    """The inventory entry of a discovered machine, at `address` (the next free one: `next_address`)."""
    if machine.error:
        return Entry(machine, None, problem=f"could not be asked: {machine.error}")
    if not machine.mac:
        return Entry(machine, None, problem="no lease and no link with a MAC: which NIC netboots it is unknown")
    if machine.arch not in DISCOVERY_BOARDS:
        return Entry(
            machine, None, problem="its architecture is unknown (a Talos 1.12 machine not booted by discovery answers no Version): give --arch"
        )
    arch = str(machine.arch)
    target = install_disk(machine.disks)
    if target is None:
        return Entry(machine, None, problem="has no disk Talos could install to (every one is read-only, removable or virtual)")
    selector = _selector(target, machine.disks)
    notes = [f"installDisk: {target.describe()}"]
    if target.holds and not target.holds_talos:
        notes.append(f"installDisk {target.id} holds {', '.join(target.holds)}: installing Talos wipes it")
    if selector is None:
        twins = [d.id for d in machine.disks if d.transport and d.model == target.model and d.serial == target.serial]
        return Entry(
            machine,
            None,
            tuple(notes),
            problem=(
                f"its disks cannot be told apart by model and serial ({', '.join(twins)}: model {target.model or 'none'}, "
                f"serial {target.serial or 'none'}), so no installDisk selector would survive a reboot; write installDisk "
                "by hand (a busPath selector names the slot)"
            ),
        )
    data: list[str] = []
    for d in machine.disks:
        if d.id == target.id or not d.usable:
            continue
        if d.holds and not d.holds_talos:
            notes.append(f"not a data disk: {d.describe()}; to give it to storage (which wipes it), add it to dataDisks")
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


@dataclass
class Plan:
    """Every discovered machine's entry, in the order asked."""

    entries: list[Entry] = field(default_factory=list)


def plan(stack: StackConfig, machines: Sequence[Machine], role: str = "istari") -> Plan:
    """Entries for every machine not in the inventory yet (by MAC), each its own free address and unique name."""
    known = {n.mac for n in stack.nodes}
    names = {n.name for n in stack.nodes}
    used: set[IPv4Address] = set()
    out = Plan()
    for m in machines:
        if m.mac in known:
            continue
        free = next_addresses(stack, 1, used, role)
        if not free:
            out.entries.append(Entry(m, None, problem=f"network.lan {stack.network.lan} has no free static address left outside the pools"))
            continue
        e = entry(stack, m, free[0], names, role)
        if e.node is not None:
            names.add(e.node["name"])
            used.add(free[0])
        out.entries.append(e)
    return out
