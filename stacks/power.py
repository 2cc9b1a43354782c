"""Power-on rules: which machines Pulumi can power on, and the BMC passwords that lets it.

A node's `power` says how Pulumi powers it on when it needs it (components.power): Wake-on-LAN,
sent from the Ainur, or a Turing Pi 2 BMC, reached from the operator's machine with a password
that is a Pulumi secret. The secret `iluvatar:bmcPasswords` holds one password per BMC address,
set with Pulumi's structured config so that each is encrypted on its own and the addresses stay
readable:

    pulumi config set --secret --path 'iluvatar:bmcPasswords["10.10.0.5"]' <password>

which writes `iluvatar:bmcPasswords: {10.10.0.5: {secure: v1:...}}` to the stack file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stacks.boards import ARDA_ROLES, BOARDS
from stacks.credentials import masked_kernel_arg
from stacks.errors import Problem, UnsetSecret
from stacks.model import Node

NODES = "iluvatar:nodes"
PASSWORDS = "bmcPasswords"
PASSWORDS_KEY = f"iluvatar:{PASSWORDS}"
# The alias plans.talos gives every Arda machine's NIC (LinkAliasConfig). Talos sets it as the link's
# ifalias, which the kernel's ethtool interface does not look up, so EthernetConfig cannot name it.
TALOS_LINK_ALIAS = "lan0"
# The kernel's own names for a NIC (eth0, eth1, ...), which Talos keeps only with predictable names off: its udevd renames
# every NIC by NamePolicy=keep kernel database onboard slot path mac (hack/udevd/99-default.link:13 at v1.13.9, installed
# as /usr/lib/systemd/network/99-default.link by its Dockerfile:784), to enp1s0, eno1 or end0, unless the kernel command
# line has net.ifnames=0 (pkg/machinery/constants/constants.go:92; only an upgrade from Talos before 1.5 adds it on its
# own, cmd/installer/pkg/install/errata.go:24-38, and Iluvatar's Talos starts at 1.12). udev reads the argument as a
# boolean, in any case (systemd's parse_boolean, src/basic/parse-util.c: strcaseeq against 0, no, n, false, f, off), and
# the last one on the command line wins (proc_cmdline_get_key scans on and keeps each later value); a bare
# `net.ifnames` is true. Image Factory drops every earlier `net.ifnames` for a `-net.ifnames` (procfs
# WithDeleteNegatedArgs, stacks.model.KernelArg).
_KERNEL_NAME = re.compile(r"^eth\d+$")
# udev's predictable names for an Ethernet NIC (systemd's udev-builtin-net_id: en + o/s/p/x/d/P...): with names off,
# the kernel's ethN is kept and no NIC has one of these.
_PREDICTABLE_NAME = re.compile(r"^en[a-zA-Z]")
_OFF = frozenset({"0", "no", "n", "false", "f", "off"})
# A wireless NIC's name: the kernel's wlanN, and udev's predictable wl prefix (systemd's udev-builtin-net_id names a
# wlan device type "wl": wlp3s0, wlo1, wlx<mac>), whatever net.ifnames says.
_WIRELESS_NAME = re.compile(r"^wl")
# A mobile-broadband modem's name: the kernel's WWAN framework names a modem's link wwan0, and udev's predictable names
# give a wwan device type the "ww" prefix (udev-builtin-net_id.c: devtype "wwan" -> "ww", wwp0s20f0u6). Its link is a
# cellular network, which no magic packet sent on the LAN reaches.
_WWAN_NAME = re.compile(r"^ww")


def predictable_names_off(kernel_args: Sequence[str]) -> bool:
    """Whether udev keeps the kernel's NIC names with these kernel arguments: the last `net.ifnames` is false."""
    off = False
    for arg in kernel_args:
        key, eq, value = arg.partition("=")
        if key == "-net.ifnames":
            off = False
        elif key == "net.ifnames":
            off = bool(eq) and value.lower() in _OFF
    return off


def password_path(address: object) -> str:
    """The config path of one BMC's password, as `pulumi config set --path` spells it."""
    return f'{PASSWORDS_KEY}["{address}"]'


def set_password(address: object) -> str:
    return f"`pulumi config set --secret --path '{password_path(address)}' <password>`"


def _node(i: int, field: str = "") -> str:
    return f"{NODES}[{i}]" + (f".{field}" if field else "")


def check(
    nodes: Sequence[tuple[int, Node]],
    nodes_complete: bool,
    ainur_set: bool,
    passwords: Any,
    passwords_set: bool,
    secure: type,
    kernel_args: Mapping[str, Sequence[str]] | None = None,
    written: Sequence[str] = (),
) -> list[Problem]:
    """Every problem with the nodes' `power` and the BMC passwords.

    `passwords` is what the stack holds at iluvatar:bmcPasswords as parse_stack sees it: a mapping of
    BMC address to value (each a `secure` instance when it is a Pulumi secret), one `secure` value
    (a single secret, not one per address), or anything else (plain text, which stacks.load refuses). `kernel_args` is
    iluvatar:arda.kernelArgs, by board. `written` is every BMC address the stack's node entries write, those that did not
    parse included (a slot out of range leaves its machine out of `nodes`), so the fix of a password written whole names
    the stack's own BMCs.
    """
    out: list[Problem] = []
    ips = {n.ip: (i, n.name) for i, n in nodes}
    slots: dict[tuple[object, int], tuple[int, str]] = {}
    needed: dict[str, tuple[int, str]] = {}  # BMC address -> the first node logging in to it
    offer = _offer(nodes, passwords)
    for i, node in nodes:
        if node.power is None:
            continue
        if node.role not in ARDA_ROLES:
            out.append(
                Problem(
                    _node(i, "power"),
                    f"{node.name} is {node.role}: the Ainur run before `pulumi up` does (they serve what Arda boots from), so Pulumi never "
                    "powers them on; power is for Arda machines",
                )
            )
            continue
        wol, bmc = node.power.wake_on_lan, node.power.bmc
        if wol is not None:
            out += _slot_powered(i, node, offer)
            out += _no_wake_on_lan(i, node, offer)
            out += _wake_on_lan(i, node, ainur_set, (kernel_args or {}).get(node.board, ()))
        if bmc is not None and not BOARDS[node.board].turing_pi_slot:
            # flash is not said beside it: the image would be for a module that is not there.
            board = BOARDS[node.board]
            way = (
                f"power it with wakeOnLan: {{link: enp1s0}} (its NIC's name, which `talosctl get links --insecure --nodes {node.ip}` "
                "shows in maintenance mode)"
                if ainur_set and node.vlan is None
                else "leave power out and power it on by hand (Wake-on-LAN is sent from the Ainur's LAN)"
            )
            out.append(
                Problem(
                    _node(i, "power.bmc"),
                    f"{node.name} is a {board.name} ({board.description}), which no Turing Pi 2 node slot holds (its slots take 260-pin "
                    f"compute modules: a Turing RK1, a Raspberry Pi CM4 on its adapter, an NVIDIA Jetson), so switching slot {bmc.slot} "
                    f"of the BMC at {bmc.address} on never powers {node.name}; {way}, or set board to the module that sits in the slot",
                )
            )
        if bmc is not None:
            if bmc.address in ips:
                j, other = ips[bmc.address]
                out.append(Problem(_node(i, "power.bmc.address"), f"{bmc.address} is nodes[{j}].ip ({other}); the BMC has an address of its own"))
            if (bmc.address, bmc.slot) in slots:
                j, other = slots[(bmc.address, bmc.slot)]
                out.append(
                    Problem(
                        _node(i, "power.bmc.slot"),
                        f"slot {bmc.slot} of the BMC at {bmc.address} is already nodes[{j}]'s ({other}); " + _free_slots(node, bmc.address, nodes),
                    )
                )
            slots.setdefault((bmc.address, bmc.slot), (i, node.name))
            board = BOARDS[node.board]
            if bmc.flash and board.talos_overlay is None and board.turing_pi_slot:
                out.append(
                    Problem(
                        _node(i, "power.bmc.flash"),
                        f"{board.name} ({board.description}) has no Talos disk image to flash (only boards with an Image Factory overlay do); "
                        "remove flash",
                    )
                )
            needed.setdefault(str(bmc.address), (i, node.name))
    out += _passwords(needed, passwords, passwords_set, nodes_complete, secure, offer.address if offer.slots else None, written)
    return out


# The slots of a Turing Pi 2 board, node1 to node4 in its BMC's API (stacks.model.Bmc).
SLOTS = range(1, 5)
# Boards that are compute modules for a Turing Pi 2 slot alone: the Turing RK1 is made for the board's SO-DIMM slots (the
# Turing Pi 2 docs' compute modules, docs.turingpi.com/docs/turing-pi2-supported-compute-modules). The board turns its
# modules on and off (the docs' Specs and I/O Ports: Key1 and the BMC's `tpi power`), and the BMC powers a slot off
# whole: bmcd's PowerController.set_power_node writes `disabled` to /sys/bus/platform/devices/node<N>-power/state, the
# slot's supply, and drops its PORT<N>_EN line (turing-machines/bmcd src/hal/power_controller.rs:50-61, 86-95 at
# 1c7eb45), so no standby power is left for the module's NIC to listen for a magic packet. An arm64 module (a Jetson,
# generic-arm64) may sit in a slot or on a carrier of its own with standby power, and the stack does not say which, so
# it is not refused here.
SLOT_MODULES: frozenset[str] = frozenset({"rk1"})
# Boards whose hardware wakes on no magic packet, wherever they sit. A Raspberry Pi 4, the Model B and the Compute
# Module 4 alike (one BCM2711 and its bootloader), halts until its power is cycled or GLOBAL_EN (or, with the
# bootloader's WAKE_ON_GPIO, GPIO3) is pulled low: Raspberry Pi closed the request for Wake-on-LAN on it as wontfix,
# "the hardware can't support this" (raspberrypi/rpi-eeprom issue 160), and its bootloader's documented ways out of
# halt are those pins alone (raspberrypi/documentation, computers/raspberry-pi/eeprom-bootloader.adoc, WAKE_ON_GPIO and
# POWER_OFF_ON_HALT). A CM4 in a Turing Pi 2 slot is powered through the BMC; any other, by hand. The Raspberry Pi 5 is
# not here: no Raspberry Pi source says either way whether it wakes on LAN (its documented wakes from halt are its
# power button and the RTC's wake alarm), so stacks.warn warns of it instead of refusing.
NO_WAKE_ON_LAN: frozenset[str] = frozenset({"rpi4"})


@dataclass(frozen=True)
class _Offer:
    """The BMC and slot the refusals of Wake-on-LAN offer each machine it cannot wake (`slots`, by node index: None
    when no slot of the board is left), so that two machines are never offered one slot: `address` is the stack's one
    BMC, or the one iluvatar:bmcPasswords names when no machine is on a BMC yet; None when the stack names none or
    several."""

    address: str | None
    slots: Mapping[int, int | None]

    def fix(self, i: int) -> str:
        if self.address is None:
            return "bmc: {address: <the board's BMC address>, slot: <the slot it sits in, 1-4>}"
        slot = self.slots.get(i)
        return f"bmc: {{address: {self.address}, slot: {slot if slot is not None else '<its slot, 1-4>'}}} (the slot it sits in)"


def _offer(nodes: Sequence[tuple[int, Node]], passwords: Any) -> _Offer:
    """The slots offered to the machines on Wake-on-LAN whose board cannot wake by it (`SLOT_MODULES` first, which
    certainly sit in a slot, then `NO_WAKE_ON_LAN`), in inventory order, each a slot of the BMC that no machine of the
    stack names and no other such machine was offered."""
    boards = {i: n.board for i, n in nodes}
    moved = sorted(
        (i for i, n in nodes if n.power is not None and n.power.wake_on_lan is not None and n.board in SLOT_MODULES | NO_WAKE_ON_LAN),
        key=lambda i: (boards[i] not in SLOT_MODULES, i),
    )
    bmcs = sorted({str(n.power.bmc.address) for _, n in nodes if n.power is not None and n.power.bmc is not None})
    if not bmcs and isinstance(passwords, Mapping) and len(passwords) == 1:
        bmcs = [str(next(iter(passwords)))]  # the password of a BMC no machine names yet: the board they sit in
    if len(bmcs) != 1 or not moved:
        return _Offer(None, {})
    taken = {n.power.bmc.slot for _, n in nodes if n.power is not None and n.power.bmc is not None}
    free = [s for s in SLOTS if s not in taken]
    return _Offer(bmcs[0], {i: free[k] if k < len(free) else None for k, i in enumerate(moved)})


def _free_slots(node: Node, address: object, nodes: Sequence[tuple[int, Node]]) -> str:
    """The way out of a slot taken twice: the BMC's slots no machine of the stack names, or another BMC when none is left."""
    taken = {n.power.bmc.slot for _, n in nodes if n.power is not None and n.power.bmc is not None and n.power.bmc.address == address}
    free = [str(s) for s in SLOTS if s not in taken]
    if not free:
        return f"its four slots are all taken: give {node.name} the slot it sits in on another board's BMC"
    listed = free[0] if len(free) == 1 else f"{', '.join(free[:-1])} or {free[-1]}"
    return f"write the slot {node.name} sits in: {listed} {'is' if len(free) == 1 else 'are'} free on that board (slots 1-4)"


def _slot_powered(i: int, node: Node, offer: _Offer) -> Iterator[Problem]:
    """Wake-on-LAN on a compute module that only a Turing Pi 2 slot takes (`SLOT_MODULES`): its power is the BMC's."""
    if node.board not in SLOT_MODULES:
        return
    board = BOARDS[node.board]
    yield Problem(
        _node(i, "power.wakeOnLan"),
        f"{node.name} is {board.name} ({board.description}), which sits in a Turing Pi 2 slot, and the board's BMC powers a slot "
        f"off whole: no standby power reaches its NIC, so the magic packet would wake nothing; power it with {offer.fix(i)}",
    )


def _no_wake_on_lan(i: int, node: Node, offer: _Offer) -> Iterator[Problem]:
    """Wake-on-LAN on a board whose hardware wakes on no magic packet (`NO_WAKE_ON_LAN`): a Compute Module 4 in a Turing
    Pi 2 slot is powered by the BMC, any other Pi 4 by hand."""
    if node.board not in NO_WAKE_ON_LAN:
        return
    board = BOARDS[node.board]
    yield Problem(
        _node(i, "power.wakeOnLan"),
        f"{node.name} is {board.name} ({board.description}), whose hardware cannot wake on LAN: a halted Pi 4, Model B or "
        "Compute Module 4, starts again only when its power is cycled or its GLOBAL_EN pin is pulled low (raspberrypi/rpi-eeprom "
        f"issue 160), so the magic packet would wake nothing; for a CM4 in a Turing Pi 2 slot, power it with {offer.fix(i)}, "
        "otherwise leave power out and power it on by hand",
    )


def _wake_on_lan(i: int, node: Node, ainur_set: bool, kernel_args: Sequence[str]) -> Iterator[Problem]:
    assert node.power is not None
    assert node.power.wake_on_lan is not None
    link = node.power.wake_on_lan.link
    path = _node(i, "power.wakeOnLan")
    if not ainur_set:
        yield Problem(path, "the magic packet is sent from the Ainur, and this stack has none (iluvatar:ainur): use bmc, or power it on by hand")
    elif node.vlan is not None:
        yield Problem(
            path,
            f"{node.name} is on VLAN {node.vlan}, and the Ainur, which send the magic packet, are on network.lan only: a broadcast does "
            f"not cross the router. Move {node.name} to network.lan, use bmc, or power it on by hand",
        )
    if link == TALOS_LINK_ALIAS:
        yield Problem(
            f"{path}.link",
            f"{link} is the alias Iluvatar gives the NIC, and Talos's EthernetConfig takes the kernel's name; write the name "
            f"`talosctl get links --insecure --nodes {node.ip}` shows in maintenance mode (enp1s0, eno1, end0)",
        )
    elif _WIRELESS_NAME.match(link.lower()):
        yield Problem(
            f"{path}.link",
            f"{link} is a Wi-Fi NIC's name (the kernel names wireless NICs wlan0, udev wlp3s0, wlo1 or wlx<mac>): Talos joins no "
            "Wi-Fi network (it has no supplicant), and the Ainur send the magic packet on the wired LAN, which a Wi-Fi NIC never "
            f"hears while the machine is off; write the wired NIC's name `talosctl get links --insecure --nodes {node.ip}` shows "
            "in maintenance mode (enp1s0, eno1, end0), or power it on by hand",
        )
    elif _WWAN_NAME.match(link.lower()):
        yield Problem(
            f"{path}.link",
            f"{link} is a mobile-broadband modem's name (the kernel names a WWAN device wwan0, udev ww<path> such as wwp0s20f0u6): its link is the cellular "
            "network, and the Ainur send the magic packet on the wired LAN, which it never hears; write the wired NIC's name "
            f"`talosctl get links --insecure --nodes {node.ip}` shows in maintenance mode (enp1s0, eno1, end0), or power it on by hand",
        )
    elif link != link.lower():
        yield Problem(
            f"{path}.link",
            f"{link} is a name Talos gives no NIC: the kernel and udev name every NIC in lower case (enp1s0, eno1, end0), and "
            f"Linux reads a link's name letter by letter, so EthernetConfig would arm nothing and the magic packet wake nothing; "
            f"write {link.lower()} if that is the name `talosctl get links --insecure --nodes {node.ip}` shows in maintenance mode",
        )
    elif _KERNEL_NAME.match(link) and not predictable_names_off(kernel_args):
        written = [a for a in kernel_args if a.partition("=")[0] in ("net.ifnames", "-net.ifnames")]
        why = "does not" if not written else f"ends with {masked_kernel_arg(written[-1])}, which keeps them on (udev reads the last)"
        yield Problem(
            f"{path}.link",
            f"{link} is a name Talos gives no NIC: it renames each by udev's predictable names (enp1s0, eno1, end0) unless "
            f"the kernel command line has net.ifnames=0, and iluvatar:arda.kernelArgs.{node.board} {why}, so EthernetConfig "
            f"would arm nothing and the magic packet wake nothing; write the name `talosctl get links --insecure --nodes "
            f"{node.ip}` shows in maintenance mode, or add net.ifnames=0 to iluvatar:arda.kernelArgs.{node.board}",
        )
    elif _PREDICTABLE_NAME.match(link) and predictable_names_off(kernel_args):
        yield Problem(
            f"{path}.link",
            f"{link} is a predictable name, and iluvatar:arda.kernelArgs.{node.board} turns those off (net.ifnames=0): udev keeps "
            f"the kernel's names (eth0, eth1), so EthernetConfig would arm nothing and the magic packet wake nothing; write the "
            f"name `talosctl get links --insecure --nodes {node.ip}` shows in maintenance mode, or drop net.ifnames=0",
        )


def _passwords(
    needed: Mapping[str, tuple[int, str]],
    passwords: Any,
    passwords_set: bool,
    nodes_complete: bool,
    secure: type,
    offered: str | None = None,
    written: Sequence[str] = (),
) -> Iterator[Problem]:
    """The BMC passwords against the BMCs the machines log in to (`needed`). `offered` is the BMC a refusal of
    Wake-on-LAN offers a machine (`_Offer`): its password is the one the fix needs, not one to remove. A password written
    whole is replaced by one per BMC the stack names (`written`, in inventory order, then `offered`): the docs' example
    address only when it names none."""
    bmcs = list(dict.fromkeys([*written, *needed, *([offered] if offered is not None else [])]))
    run = " and ".join(set_password(a) for a in bmcs) if bmcs else f"{set_password('10.10.0.5')} for each BMC"
    if not passwords_set:
        for address, (i, name) in needed.items():
            yield UnsetSecret(
                PASSWORDS_KEY,
                f"is required: nodes[{i}].power.bmc ({name}) logs in to the BMC at {address}; run {set_password(address)}",
                (PASSWORDS_KEY, address),
            )
        return
    if isinstance(passwords, secure):
        # One secret for the whole key: it cannot say which BMC a password is for.
        yield Problem(
            PASSWORDS_KEY,
            f"is one secret, but it holds one password per BMC address: remove it and run {run}",
        )
        return
    if not isinstance(passwords, Mapping):
        # Never echo the value: it is a password the user just leaked into a file.
        yield Problem(PASSWORDS_KEY, f"is in plain text, and holds one password per BMC address: remove it and run {run}")
        return
    given = {str(k) for k in passwords}
    for address, (i, name) in needed.items():
        if address not in given:
            yield UnsetSecret(
                password_path(address),
                f"is required: nodes[{i}].power.bmc ({name}) logs in to the BMC at {address}; run {set_password(address)}",
                (PASSWORDS_KEY, address),
            )
    for key, value in passwords.items():
        if not isinstance(value, secure):
            # Never echo the value: it is the password the user just leaked into a file.
            yield Problem(password_path(key), f"is in plain text; remove it and run {set_password(key)}")
        elif nodes_complete and str(key) not in needed and str(key) != offered:
            yield Problem(password_path(key), f"is set, but no machine's power.bmc.address is {key}; remove it")


def addresses_only(value: Any, secret: bool, secure: type) -> Any:
    """iluvatar:bmcPasswords as the engine hands it to the program (decrypted JSON text), for the rules above.

    Only the addresses are kept: every password becomes a `secure` instance when the key is a secret
    (Pulumi marks the whole key secret once any entry is; which entries were does not reach the
    program, so an entry in plain text beside secret ones is caught by `iluvatar validate`, which reads
    the file), or a marker of plain text when it is not.
    """
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return {str(k): secure() if secret else "[plain text]" for k in parsed}
    return secure() if secret else "[plain text]"
