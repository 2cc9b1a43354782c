"""The bus path Talos reads for a disk (disk.bus_path), as a data disk's name shows it, and whether an install selector's
busPath glob can match it.

Talos's bus_path is the block device's sysfs path under /sys/devices less its last two components (go-blockdevice
block/device_linux.go:355: Dir(Dir(readlink /sys/dev/block/<major>:<minor>)) with ../../devices cut), and Talos
matches a busPath glob against it whole (glob(), go-glob, whose one wildcard `*` spans `/`). A /dev/disk/by-path link
names the same device by the way to it (systemd's src/udev/udev-builtin-path_id.c), so most of it can be read back to
that sysfs path; where the link or a kernel name leaves a part open (a SCSI host's number, the PCI bridges above a
controller, a USB bus's number), the part is any the kernel could write, and a glob is said to match the disk when it
can match one of those paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from stacks.disk_ids import by_path_canonical

# A bus path's pattern, written in a small regular language: literal characters; `H` one lower-case hex digit, `D` one
# decimal digit, `C` one character of a path component (no `/`); `(...)` a group, `|` within it alternatives; `+`, `*`
# and `?` after a character class or group. The kernel writes sysfs names in lower-case hex (PCI addresses: drivers/pci/
# probe.c "%04x:%02x:%02x.%d"), so a glob in upper case matches none of them, as Talos's case-exact glob does.
_CLASSES: dict[str, Callable[[str], bool]] = {
    "H": lambda c: c in "0123456789abcdef",
    "D": lambda c: c in "0123456789",
    "C": lambda c: c != "/",
}
# A character a class may stand for when a glob's `*` takes it: any works, as `*` takes every character.
_SAMPLE = {"H": "0", "D": "0", "C": "x"}


@dataclass
class _Nfa:
    """A Thompson automaton: edges[state] holds (label, next) with label None for an empty move, a class letter of
    `_CLASSES` marked by a leading backslash, or one literal character."""

    edges: list[list[tuple[str | None, int]]] = field(default_factory=list)

    def state(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1


def _compile(pattern: str) -> tuple[_Nfa, int, int]:
    nfa = _Nfa()
    pos = 0

    def alternatives() -> tuple[int, int]:
        nonlocal pos
        start, end = nfa.state(), nfa.state()
        while True:
            first, last = sequence()
            nfa.edges[start].append((None, first))
            nfa.edges[last].append((None, end))
            if pos < len(pattern) and pattern[pos] == "|":
                pos += 1
                continue
            return start, end

    def sequence() -> tuple[int, int]:
        nonlocal pos
        start = last = nfa.state()
        while pos < len(pattern) and pattern[pos] not in "|)":
            if pattern[pos] == "(":
                pos += 1
                first, end = alternatives()
                pos += 1  # the group's )
            else:
                first, end = nfa.state(), nfa.state()
                char = pattern[pos]
                nfa.edges[first].append((f"\\{char}" if char in _CLASSES else char, end))
                pos += 1
            if pos < len(pattern) and pattern[pos] in "+*?":
                op = pattern[pos]
                pos += 1
                if op in "+*":
                    nfa.edges[end].append((None, first))
                if op in "*?":
                    nfa.edges[first].append((None, end))
            nfa.edges[last].append((None, first))
            last = end
        return start, last

    start, end = alternatives()
    return nfa, start, end


def _closure(nfa: _Nfa, states: set[int]) -> set[int]:
    todo, seen = list(states), set(states)
    while todo:
        for label, nxt in nfa.edges[todo.pop()]:
            if label is None and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def can_match(glob_pattern: str, bus_pattern: str) -> bool:
    """Whether some path of `bus_pattern` (the small language above) matches `glob_pattern` as go-glob reads it (`*` any
    run of characters, `/` included; every other character itself): the two automata run side by side."""
    nfa, start, end = _compile(bus_pattern)
    todo = [(s, 0) for s in _closure(nfa, {start})]
    seen = set(todo)
    while todo:
        state, at = todo.pop()
        if state == end and all(c == "*" for c in glob_pattern[at:]):
            return True
        steps: list[tuple[int, int]] = []
        if at < len(glob_pattern) and glob_pattern[at] == "*":
            steps.append((state, at + 1))  # the star takes nothing more
        for label, nxt in nfa.edges[state]:
            if label is None:
                continue
            if at < len(glob_pattern) and glob_pattern[at] == "*":
                steps.append((nxt, at))  # the star takes this character, whichever the class allows
            elif at < len(glob_pattern) and (_CLASSES[label[1]](glob_pattern[at]) if label.startswith("\\") else label == glob_pattern[at]):
                steps.append((nxt, at + 1))
        for s, a in steps:
            for c in _closure(nfa, {s}):
                if (c, a) not in seen:
                    seen.add((c, a))
                    todo.append((c, a))
    return False


def _escape(text: str) -> str:
    """`text`, a name read from a link by a regex that admits lower-case letters, digits and `._:` alone, as literal
    characters of the pattern language (none of them is one of its classes or operators)."""
    if re.fullmatch(r"[0-9a-z._:]*", text) is None:
        raise ValueError(text)
    return text


def _at_least(n: int) -> str:
    """A decimal number of n or more (print_id ata<N> against a port's port_no n: stacks.rules.by_path_bus_path)."""
    if n <= 1:
        return "D+"
    if n <= 9:
        return "(" + "|".join(str(k) for k in range(n, 10)) + "|(1|2|3|4|5|6|7|8|9)D+)"
    return "D+"


_PCI = "HHHH:HH:HH.H"
# A by-path link as path_id writes it, read into the controller's PCI address (and the platform device above a SoC's
# PCIe root, `platform-<dev>-pci-...`: the platform branch writes the innermost platform device) and what follows it.
_LINK = re.compile(r"^(?:platform-(?P<platform>[0-9a-z._:]+)-)?pci-(?P<pci>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f])(?P<rest>(?:-.+)?)$")
_MMC_HOST = re.compile(r"^platform-(?P<host>[0-9a-z._:]*(?:mmc|sdhci)[0-9a-z._:]*)$")
_USB = re.compile(r"^-usb-0:(?P<port>[0-9]+(?:\.[0-9]+)*):(?P<config>[0-9]+)\.(?P<interface>[0-9]+)-scsi-0:0:0:(?P<lun>[0-9]+)$")
_SCSI = re.compile(r"^-scsi-[0-9]+:(?P<channel>[0-9]+):(?P<target>[0-9]+):(?P<lun>[0-9]+)$")
_ATA = re.compile(r"^-ata-(?P<port>[0-9]+)(?:\.(?P<target>[0-9]+)|\.(?P<pmp>[0-9]+)\.0)?$")
_SCSI_TAIL = "/hostD+/targetD+:D+:D+/D+:D+:D+:D+"


def by_path_pattern(disk: str) -> str | None:
    """The bus paths Talos could read for the disk a /dev/disk/by-path link names, in the pattern language of
    `can_match`, or None for a link whose way this does not read (sas-, an ACPI or Xen bus, iSCSI)."""
    name = by_path_canonical(disk)
    if name is None:
        return None
    if (mmc := _MMC_HOST.match(name)) is not None:
        # The card's bus path ends in its mmc_host and the card's own device (drivers/mmc/core/bus.c "%s:%04x").
        return f"/platform(/C+)*/{_escape(mmc['host'])}/mmc_host/mmcD+/mmcD+:H+"
    found = _LINK.match(name)
    if found is None:
        return None
    head = "/platform(/C+)*/" + _escape(found["platform"]) if found["platform"] is not None else ""
    # The PCI root (pci<domain>:<bus>, drivers/pci/probe.c "pci%04x:%02x") and the bridges above the controller,
    # which path_id leaves out (it writes the innermost PCI device alone).
    controller = f"{head}/pci{found['pci'][:4]}:HH(/{_PCI})*/{found['pci']}"
    rest = found["rest"]
    if rest == "":
        return controller + "/virtioD+"  # virtio-blk: the virtio device under the PCI function, then the disk
    if re.fullmatch(r"-nvme-[0-9]+", rest):
        return controller + "/nvme"  # the controller's nvme class device: every namespace's bus path
    if (ata := _ATA.match(rest)) is not None:
        port = int(ata["port"])
        if ata["target"] is not None:
            scsi = f"/hostD+/targetD+:0:{ata['target']}/D+:0:{ata['target']}:0"
        elif ata["pmp"] is not None:
            scsi = f"/hostD+/targetD+:{ata['pmp']}:0/D+:{ata['pmp']}:0:0"
        else:
            scsi = _SCSI_TAIL
        return f"{controller}/ata{_at_least(port)}{scsi}"
    if (usb := _USB.match(rest)) is not None:
        # handle_usb writes the port path after the bus (0:<port>) where sysfs has <bus>-<port>:<config>.<interface>.
        interface = f"D+-{usb['port']}:{usb['config']}.{usb['interface']}"
        return f"{controller}/usbD+(/D+-C+)*/{interface}/hostD+/targetD+:0:0/D+:0:0:{usb['lun']}"
    if (address := _SCSI.match(rest)) is not None:
        # handle_scsi_default rebases the host number, so it is read as any; the rest is the SCSI device's own.
        c, t, lun = address["channel"], address["target"], address["lun"]
        return f"{controller}(/C+)*/targetD+:{c}:{t}/D+:{c}:{t}:{lun}"
    return None


def kernel_name_pattern(disk: str) -> str | None:
    """The bus paths Talos could read for a disk named by its kernel name or a by-id link, as far as the name shows
    its bus, or None: an NVMe namespace's ends in its controller's nvme, a virtio disk's in virtio<n>, an MMC device's
    in its card, any SCSI disk's (SATA, SAS, USB) in its SCSI address."""
    name = disk.removeprefix("/dev/disk/by-id/") if disk.startswith("/dev/disk/by-id/") else disk.removeprefix("/dev/")
    if re.match(r"^nvme", name):
        return "(/C+)+/nvme"
    if re.match(r"^(?:vd[a-z]|virtio-)", name):
        return "(/C+)+/virtioD+"
    if re.match(r"^mmc", name):
        return "(/C+)+/mmc_host/mmcD+/mmcD+:H+"
    if re.match(r"^(?:sd[a-z]|ata-|scsi-|usb-|wwn-)", name):
        return "(/C+)+/D+:D+:D+:D+"
    return None
