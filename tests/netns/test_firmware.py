"""Real PXE firmware netboots against the generated configs, in `dhcp` mode and in `proxy` mode.

QEMU (TCG, no KVM) runs the firmware a homelab machine has: SeaBIOS with the iPXE option ROM of
QEMU's e1000 (a BIOS PC whose NIC ROM is iPXE), OVMF's own UEFI PXE on a virtio NIC with no
option ROM (a UEFI PC: the firmware's PXE loads the served ipxe.efi over TFTP), and AAVMF, the same
UEFI for arm64 (an arm64 server: its PXE loads the served ipxe-arm64.efi). Each runs on a LAN
of network namespaces (tests.netns.lan) where the Ainur's real dnsmasq and nginx serve the
generated configs; in `proxy` mode a dnsmasq "router" is the DHCP server and fills siaddr with its
own address, as dnsmasq-based home routers do.

What is under test is the chain up to the machine's own script, fetched from its reserved address
(nginx's access log says who asked), and its kernel and initramfs: the served kernel is a tiny
stand-in, so the machine stops there. A Pi must not be booted: its firmware gives up on the network
(SeaBIOS' debug port says so) with no TFTP or HTTP request from it.

Both LANs discover (arda.discovery): an unknown machine, a BIOS PC or an arm64 server, chains from
boot.ipxe to the discovery script of the architecture its iPXE reports, and to that board's Talos
kernel with no config, from an address of the discovery pool (`dhcp`) or the router's (`proxy`). A
third LAN, `off`, does not: an unknown machine there gets an address and nothing to boot.

All machines of the three LANs run at once (two cores: about a minute, see the README's Tests).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import cast

import pytest

from stacks import StackConfig, parse_stack, read_stack_file
from stacks.boards import DISCOVERY_BOARDS
from tests.edit import HOMELAB
from tests.netns.firmware_machine import AAVMF_CODE, AAVMF_VARS, DISK_BOOTED, OVMF_CODE, OVMF_VARS, Machine
from tests.netns.lan import Lan, in_range, lan, require_root, stop

require_root()

DEADLINE = 360.0  # seconds for every machine to reach its end; the whole file takes about a minute of wall on two cores (docs/proof/performance.md)
GANDALF, TIRION, MANWE, STRANGER = "28:d2:44:30:00:01", "a8:b8:e0:20:00:02", "d8:3a:dd:10:00:01", "02:00:5e:00:00:99"
SARUMAN = "28:d2:44:30:00:02"  # made an arm64 UEFI server (generic-arm64) for this test
BINARY = {"uefi": ("ipxe.efi", "192.168.0.22"), "arm64": ("ipxe-arm64.efi", "192.168.0.32")}
ARM_STRANGER = "02:00:5e:00:00:9a"
UEFI_STRANGER = "02:00:5e:00:00:9b"
POOL = ("192.168.0.90", "192.168.0.99")


@dataclass
class Run:
    lans: dict[str, Lan]
    machines: dict[str, Machine]
    seconds: float


def _stack(mode: str, discovery: bool = False) -> StackConfig:
    """The homelab, with saruman an arm64 UEFI server, in the given DHCP mode, discovering unknown machines or not
    (with a pool in `dhcp` mode: in `proxy` mode the router lends every address)."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": mode}}
    raw["iluvatar:nodes"] = [{**n, "board": "generic-arm64", "arch": "arm64"} if n["mac"] == SARUMAN else n for n in raw["iluvatar:nodes"]]
    if discovery:
        pool = {"pool": {"start": POOL[0], "end": POOL[1]}} if mode == "dhcp" else {}
        raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "discovery": pool}
    return parse_stack(raw)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    for path in (OVMF_CODE, OVMF_VARS, AAVMF_CODE, AAVMF_VARS):
        assert path.exists(), f"{path}: Debian's ovmf and qemu-efi-aarch64 packages provide it; .ci/run installs them"
    tag = f"ilv{os.getpid() % 10000}"
    with ExitStack() as stack:
        lans = {
            "dhcp": stack.enter_context(lan(_stack("dhcp", discovery=True), tmp_path_factory.mktemp("fw-dhcp"), f"{tag}f")),
            "proxy": stack.enter_context(lan(_stack("proxy", discovery=True), tmp_path_factory.mktemp("fw-proxy"), f"{tag}x")),
            "off": stack.enter_context(lan(_stack("dhcp"), tmp_path_factory.mktemp("fw-off"), f"{tag}o")),
            # Discovering, but nobody armed the window (iluvatar discover --arm): review 1 MEDIUM 4.
            "closed": stack.enter_context(lan(_stack("dhcp", discovery=True), tmp_path_factory.mktemp("fw-closed"), f"{tag}c", window_open=False)),
        }
        machines: dict[str, Machine] = {}
        for mode in ("dhcp", "proxy"):
            for name, firmware, mac, boots in (
                ("bios-worker", "bios", GANDALF, True),
                ("uefi-control-plane", "uefi", TIRION, True),
                ("arm64-worker", "arm64", SARUMAN, True),
                ("bios-stranger", "bios", STRANGER, True),
                ("bios-pi", "bios", MANWE, False),
            ):
                machines[f"{mode}-{name}"] = Machine(lans[mode], f"{mode}-{name}", firmware, mac, boots)
        # An arm64 stranger in one mode (its firmware is the slowest under TCG); both modes' x86 strangers, and the one
        # of a LAN that does not discover.
        machines["dhcp-arm64-stranger"] = Machine(lans["dhcp"], "dhcp-arm64-stranger", "arm64", ARM_STRANGER, True)
        machines["off-bios-stranger"] = Machine(lans["off"], "off-bios-stranger", "bios", STRANGER, False)
        machines["closed-bios-stranger"] = Machine(lans["closed"], "closed-bios-stranger", "bios", STRANGER, False)
        # Review 2 HIGH 1: UEFI PCs and an arm64 server set to boot from the network first, with a disk after it.
        machines["closed-uefi-stranger"] = Machine(lans["closed"], "closed-uefi-stranger", "uefi", UEFI_STRANGER, False, disk=True)
        machines["closed-arm64-stranger"] = Machine(lans["closed"], "closed-arm64-stranger", "arm64", ARM_STRANGER, False, disk=True)
        start = time.monotonic()
        try:
            for machine in machines.values():
                machine.start()
            while time.monotonic() - start < DEADLINE:
                if all([m.done() for m in machines.values()]):  # a list: every machine's time is noted
                    break
                # A machine at its end is stopped then, not when the last is: after a booted machine's chain comes the
                # stand-in kernel refused, the script's `sleep 10; exit 1` and the firmware's next boot options (OVMF's
                # PXEv6 and HTTP boot), a full core each under TCG that the slowest machines (the closed LAN's UEFI
                # strangers) waited behind; after a machine that must not boot gave up (SeaBIOS's int 18, every boot
                # device tried), only SeaBIOS's wait to reboot; after a disk booted, its script's `sleep 1; poweroff`.
                # What each test asserts of a machine happened before its end (done()).
                for m in machines.values():
                    if m.finished is not None:
                        stop(m.proc)
                time.sleep(0.5)
        finally:
            for machine in machines.values():
                stop(machine.proc)
        elapsed = time.monotonic() - start
        for key, m in machines.items():
            done = f"{'chain fetched' if m.boots else 'gave up'} after {m.finished - m.started:.1f} s" if m.finished else "did not finish"
            print(f"firmware {key}: {done}")
        print(f"firmware: all {len(machines)} machines in {elapsed:.1f} s")
        yield Run(lans, machines, elapsed)


class _Log:
    """A LAN's stand-in for done()'s fixture: the homelab's inventory and a given access log."""

    def __init__(self, requests: list[tuple[str, str, int]]) -> None:
        self.stack, self.root, self._requests = _stack("dhcp"), Path("/nonexistent"), requests

    def requests(self) -> list[tuple[str, str, int]]:
        return self._requests


@pytest.mark.parametrize(
    ("firmware", "mac", "log", "done"),
    [
        # Its script alone is not the end: the run stopped it there once (a CI failure).
        ("uefi", TIRION, [("192.168.0.22", "/boot.ipxe", 200), ("192.168.0.22", "/ipxe/a8-b8-e0-20-00-02.ipxe", 200)], False),
        # The same board's kernel, fetched by another machine, is not its own.
        ("uefi", TIRION, [("192.168.0.22", "/ipxe/a8-b8-e0-20-00-02.ipxe", 200), ("192.168.0.31", "/assets/generic-x86/vmlinuz", 200)], False),
        ("uefi", TIRION, [("192.168.0.22", "/ipxe/a8-b8-e0-20-00-02.ipxe", 200), ("192.168.0.22", "/assets/generic-x86/vmlinuz", 200)], True),
        # BIOS iPXE goes on to the initramfs.
        ("bios", GANDALF, [("192.168.0.31", "/assets/generic-x86/vmlinuz", 200)], False),
        ("bios", GANDALF, [("192.168.0.31", "/assets/generic-x86/vmlinuz", 200), ("192.168.0.31", "/assets/generic-x86/initramfs.xz", 200)], True),
        ("arm64", SARUMAN, [("192.168.0.32", "/assets/generic-arm64/vmlinuz", 200)], True),
    ],
)
def test_a_machine_is_done_only_at_the_end_of_its_own_chain(firmware: str, mac: str, log: list[tuple[str, str, int]], done: bool) -> None:
    machine = Machine(cast(Lan, _Log(log)), "m", firmware, mac, boots=True)
    assert machine.done() is done


def _requests_from(net: Lan, ip: str) -> list[str]:
    return [path for client, path, _ in net.requests() if client == ip]


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
@pytest.mark.parametrize("machine", ["bios-worker", "uefi-control-plane", "arm64-worker"])
def test_machine_fetches_its_own_chain_from_its_reserved_address(run: Run, mode: str, machine: str) -> None:
    m = run.machines[f"{mode}-{machine}"]
    assert m.done(), f"{m.name} did not fetch {m.last_file} within {DEADLINE} s; nginx saw {m.lan.requests()}"
    ip, node = m.reserved_ip, m.node
    # In order, from the address the inventory reserves for it: boot.ipxe, its script, its kernel (and
    # on BIOS the initramfs: UEFI iPXE refuses the stand-in kernel, which is not an EFI image).
    chain = ["/boot.ipxe", m.script, f"/assets/{node.board}/vmlinuz"] + ([f"/assets/{node.board}/initramfs.xz"] if m.firmware == "bios" else [])
    assert node.board == ("generic-arm64" if m.firmware == "arm64" else "generic-x86")
    assert _requests_from(m.lan, ip)[: len(chain)] == chain
    assert all(status == 200 for client, _, status in m.lan.requests() if client == ip)
    assert [c for c, path, _ in m.lan.requests() if path == m.script] == [ip]


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
@pytest.mark.parametrize("machine", ["uefi-control-plane", "arm64-worker"])
def test_uefi_firmware_loads_the_served_ipxe_over_tftp(run: Run, mode: str, machine: str) -> None:
    m = run.machines[f"{mode}-{machine}"]
    binary, ip = BINARY[m.firmware]
    log = (m.lan.root / "dnsmasq.log").read_text()
    assert f"sent {m.lan.root}/tftp/{binary} to {ip}" in log


def test_proxy_mode_works_beside_a_router_that_fills_siaddr(run: Run) -> None:
    net = run.lans["proxy"]
    router = (net.root / "router.log").read_text()
    # The router handed out the reserved addresses and named itself next server...
    assert "DHCPACK(eth0) 192.168.0.31 28:d2:44:30:00:01 gandalf" in router
    assert "next server: 192.168.0.1" in router
    # ...and the Ainur only added boot information, naming the service address.
    ainur = (net.root / "dnsmasq.log").read_text()
    assert "DHCPACK" not in ainur
    assert f"bootfile name: http://{net.service_ip}/boot.ipxe" in ainur
    assert not [c for c, _, _ in net.requests() if c == "192.168.0.1"]


@pytest.mark.parametrize(
    ("key", "arch", "ip"), [("dhcp-bios-stranger", "amd64", None), ("dhcp-arm64-stranger", "arm64", None), ("proxy-bios-stranger", "amd64", "router")]
)
def test_an_unknown_machine_boots_talos_with_no_config_to_be_discovered(run: Run, key: str, arch: str, ip: str | None) -> None:
    """boot.ipxe sends it to its architecture's discovery script (iPXE's ${buildarch}), which loads that board's
    kernel with no talos.config, named discovery-<arch>-<mac> (the name its Talos asks DHCP with)."""
    m = run.machines[key]
    assert m.done(), f"{m.name} did not fetch {m.last_file} within {DEADLINE} s; nginx saw {m.lan.requests()}"
    log = (m.lan.root / ("router.log" if ip == "router" else "dnsmasq.log")).read_text()
    address = re.findall(rf"DHCPACK\(eth0\) (\S+) {m.mac}", log)[-1]
    if ip is None:  # the Ainur lent it an address of the pool
        assert IPv4Address(POOL[0]) <= IPv4Address(address) <= IPv4Address(POOL[1])
    else:  # the router did, from its DHCP range
        assert in_range(m.lan.stack, address)
    board = m.board
    assert board == DISCOVERY_BOARDS["arm64" if arch == "arm64" else "amd64"]
    assert m.address == address
    chain = ["/boot.ipxe", "/discovery/window.ipxe", f"/ipxe/discovery-{arch}.ipxe", f"/assets/{board}/vmlinuz"] + (
        [f"/assets/{board}/initramfs.xz"] if m.firmware == "bios" else []
    )
    assert _requests_from(m.lan, address)[: len(chain)] == chain
    script = (m.lan.root / "http" / "ipxe" / f"discovery-{arch}.ipxe").read_text()
    assert "talos.config" not in script
    assert f"talos.hostname=discovery-{arch}-${{mac:hexhyp}}" in script
    assert not [path for client, path, _ in m.lan.requests() if client == address and path.startswith("/configs/")]


@pytest.mark.parametrize("key", ["off-bios-stranger", "dhcp-bios-pi", "proxy-bios-pi"])
def test_unknown_machines_without_discovery_and_pis_are_not_booted(run: Run, key: str) -> None:
    m = run.machines[key]
    mode = "proxy" if key.startswith("proxy") else "dhcp"
    machine = key.split("-", 1)[1]
    assert m.done(), f"{m.name}'s firmware did not give up within {DEADLINE} s"
    log = (m.lan.root / "dnsmasq.log").read_text()
    if mode == "dhcp":
        # An address (the Pi its reservation), and no boot file.
        acks = re.findall(rf"DHCPACK\(eth0\) (\S+) {m.mac}", log)
        assert acks, log
        if machine == "bios-pi":
            assert set(acks) == {"192.168.0.11"}
        ip = acks[0]
    else:
        # The Ainur stay silent: every PXE request from it is ignored, so its firmware has no menu.
        assert re.findall(rf"PXE\(eth0\) {m.mac} (\S+)", log) and set(re.findall(rf"PXE\(eth0\) {m.mac} (\S+)", log)) == {"proxy-ignored"}
        router = (m.lan.root / "router.log").read_text()
        ip = re.findall(rf"DHCPACK\(eth0\) (\S+) {m.mac}", router)[0]
    assert _requests_from(m.lan, ip) == []
    assert f"to {ip}" not in "\n".join(line for line in log.splitlines() if "dnsmasq-tftp" in line)


@pytest.mark.parametrize("key", ["closed-bios-stranger", "closed-uefi-stranger", "closed-arm64-stranger"])
def test_an_unknown_machine_is_not_taken_over_while_the_discovery_window_is_closed(run: Run, key: str) -> None:
    """Review 1 MEDIUM 4: discovery on, nobody ran `iluvatar discover --arm`: the stranger's iPXE asks for the window's
    file, is answered 404, and exits to its firmware, which goes on to its next boot device: SeaBIOS's int 18, and
    (review 2 HIGH 1) on UEFI, OVMF and AAVMF, its own disk, which boots; no discovery script, no kernel. With a bare
    `exit` (status 0, EFI_SUCCESS), EDK2's BdsDxe shows its boot manager menu instead and the disk never boots."""
    m = run.machines[key]
    assert m.done(), f"{m.name}'s firmware did not go on to its next boot device within {DEADLINE} s; nginx saw {m.lan.requests()}"
    if m.disk:
        assert DISK_BOOTED in m.serial_log.read_text(errors="replace")
    address = re.findall(rf"DHCPACK\(eth0\) (\S+) {m.mac}", (m.lan.root / "dnsmasq.log").read_text())[-1]
    assert [(path, status) for client, path, status in m.lan.requests() if client == address] == [
        ("/boot.ipxe", 200),
        ("/discovery/window.ipxe", 404),
    ]
