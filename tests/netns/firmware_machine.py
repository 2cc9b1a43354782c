"""One QEMU machine with real PXE firmware on a LAN of network namespaces (tests.netns.lan).

Shared by the firmware tests and the netboot benchmark (scripts/benchmark_netboot.py): SeaBIOS with the
iPXE option ROM of QEMU's e1000 (a BIOS PC), OVMF's own UEFI PXE on a virtio NIC with no option ROM (a
UEFI PC), and AAVMF, the same UEFI for arm64. QEMU runs without KVM (TCG).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from plans import netboot
from stacks.boards import DISCOVERY_BOARDS
from stacks.model import Node
from tests.netns.lan import Lan
from tests.tools import require

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")


@dataclass
class Machine:
    """One QEMU machine on a LAN: which firmware, which MAC, and whether it should boot."""

    lan: Lan
    name: str
    firmware: str  # "bios", "uefi" (x86-64) or "arm64" (UEFI)
    mac: str
    boots: bool
    ip: str | None = None
    # Memory in MiB: enough for the firmware and a tiny image; a real Talos initramfs needs more.
    memory: int = 256
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    finished: float | None = None

    @property
    def debug_log(self) -> Path:
        return self.lan.root / f"{self.name}.debugcon"

    @property
    def script(self) -> str:
        return f"/ipxe/{netboot.mac_name(self.mac)}.ipxe"

    def start(self) -> None:
        tap = self.lan.tap()
        binary = "qemu-system-aarch64" if self.firmware == "arm64" else "qemu-system-x86_64"
        qemu = [require(binary), "-accel", "tcg", "-display", "none", "-serial", "none",
                "-monitor", "none", "-no-reboot", "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no"]  # fmt: skip
        if self.firmware == "arm64":
            vars_copy = self.lan.root / f"{self.name}.vars.fd"
            shutil.copy(AAVMF_VARS, vars_copy)
            qemu += ["-machine", "virt", "-cpu", "cortex-a57", "-m", "512", "-drive", f"if=pflash,format=raw,readonly=on,file={AAVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,file={vars_copy}", "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]  # fmt: skip
        elif self.firmware == "bios":
            # SeaBIOS, and the e1000's option ROM, which is iPXE.
            qemu += ["-machine", "pc", "-m", str(self.memory), "-boot", "n", "-device", f"e1000,netdev=n0,mac={self.mac}",
                     "-chardev", f"file,id=dbg,path={self.debug_log}", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]  # fmt: skip
        else:
            vars_copy = self.lan.root / f"{self.name}.vars.fd"
            shutil.copy(OVMF_VARS, vars_copy)
            # romfile= leaves no iPXE ROM on the NIC: OVMF's own PXE client boots.
            qemu += ["-machine", "q35", "-m", str(self.memory), "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,file={vars_copy}", "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.lan.switch, *qemu], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def node(self) -> Node:
        """The inventory's machine of this MAC: its board and the address reserved for it."""
        return next(n for n in self.lan.stack.nodes if n.mac == self.mac)

    @property
    def known(self) -> bool:
        return any(n.mac == self.mac for n in self.lan.stack.nodes)

    @property
    def board(self) -> str:
        """Its board: the inventory's, or for an unknown machine the one it is discovered as (by its architecture)."""
        return self.node.board if self.known else DISCOVERY_BOARDS["arm64" if self.firmware == "arm64" else "amd64"]

    @property
    def last_file(self) -> str:
        """The last file its chain fetches from the LAN's stand-ins: the initramfs on BIOS; the kernel on UEFI,
        whose iPXE refuses the stand-in kernel (no EFI image) once fetched, and so never asks for the initramfs."""
        return f"/assets/{self.board}/{'initramfs.xz' if self.firmware == 'bios' else 'vmlinuz'}"

    @property
    def reserved_ip(self) -> str:
        return str(self.node.ip)

    @property
    def address(self) -> str | None:
        """Where it fetches from: its reserved address, or an unknown machine's lease (the Ainur's, else the router's)."""
        if self.known:
            return self.reserved_ip
        for leases in (self.lan.root / "leases" / "dnsmasq.leases", self.lan.root / "router.leases"):
            for line in leases.read_text().splitlines() if leases.exists() else []:
                fields = line.split()
                if len(fields) >= 3 and fields[1] == self.mac:
                    return fields[2]
        return None

    def done(self) -> bool:
        """Booted: it fetched its chain's last file from its own address. Not merely its script: the machines
        are stopped once all are done, and one stopped between its script and its kernel fails its test. Not
        booted: its firmware gave up on the network."""
        if self.finished is None:
            # From its own address: machines of one board share their kernel's path.
            booted = self.boots and (self.address, self.last_file) in {(c, path) for c, path, _ in self.lan.requests()}
            gave_up = not self.boots and self.debug_log.exists() and b"enter handle_18" in self.debug_log.read_bytes()
            if booted or gave_up:
                self.finished = time.monotonic()
        return self.finished is not None
