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
stand-in, so the machine stops there. An unknown MAC and a Pi must not be booted: their firmware
gives up on the network (SeaBIOS' debug port says so) with no TFTP or HTTP request from them.

All machines of both modes run at once (two cores: about a minute, see the README's Tests).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from stacks import StackConfig, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns.firmware_machine import AAVMF_CODE, AAVMF_VARS, OVMF_CODE, OVMF_VARS, Machine
from tests.netns.lan import Lan, lan, require_root, stop

require_root()

DEADLINE = 240.0  # seconds for every machine to reach its end; it takes about 60 here
GANDALF, TIRION, MANWE, STRANGER = "28:d2:44:30:00:01", "a8:b8:e0:20:00:02", "d8:3a:dd:10:00:01", "02:00:5e:00:00:99"
SARUMAN = "28:d2:44:30:00:02"  # made an arm64 UEFI server (generic-arm64) for this test
BINARY = {"uefi": ("ipxe.efi", "192.168.0.22"), "arm64": ("ipxe-arm64.efi", "192.168.0.32")}


@dataclass
class Run:
    lans: dict[str, Lan]
    machines: dict[str, Machine]
    seconds: float


def _stack(mode: str) -> StackConfig:
    """The homelab, with saruman an arm64 UEFI server, in the given DHCP mode."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": mode}}
    raw["iluvatar:nodes"] = [{**n, "board": "generic-arm64", "arch": "arm64"} if n["mac"] == SARUMAN else n for n in raw["iluvatar:nodes"]]
    return parse_stack(raw)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    for path in (OVMF_CODE, OVMF_VARS, AAVMF_CODE, AAVMF_VARS):
        assert path.exists(), f"{path}: Debian's ovmf and qemu-efi-aarch64 packages provide it; .ci/run installs them"
    tag = f"ilv{os.getpid() % 10000}"
    with ExitStack() as stack:
        lans = {
            "dhcp": stack.enter_context(lan(_stack("dhcp"), tmp_path_factory.mktemp("fw-dhcp"), f"{tag}f")),
            "proxy": stack.enter_context(lan(_stack("proxy"), tmp_path_factory.mktemp("fw-proxy"), f"{tag}x")),
        }
        machines: dict[str, Machine] = {}
        for mode, net in lans.items():
            for name, firmware, mac, boots in (
                ("bios-worker", "bios", GANDALF, True),
                ("uefi-control-plane", "uefi", TIRION, True),
                ("arm64-worker", "arm64", SARUMAN, True),
                ("bios-stranger", "bios", STRANGER, False),
                ("bios-pi", "bios", MANWE, False),
            ):
                machines[f"{mode}-{name}"] = Machine(net, f"{mode}-{name}", firmware, mac, boots)
        start = time.monotonic()
        try:
            for machine in machines.values():
                machine.start()
            while time.monotonic() - start < DEADLINE:
                if all([m.done() for m in machines.values()]):  # a list: every machine's time is noted
                    break
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


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
@pytest.mark.parametrize("machine", ["bios-stranger", "bios-pi"])
def test_unknown_machines_and_pis_are_not_booted(run: Run, mode: str, machine: str) -> None:
    m = run.machines[f"{mode}-{machine}"]
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
