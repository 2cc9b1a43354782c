"""One QEMU machine with real PXE firmware on a LAN of network namespaces (tests.netns.lan).

Shared by the firmware tests and the netboot benchmark (scripts/benchmark_netboot.py): SeaBIOS with the
iPXE option ROM of QEMU's e1000 (a BIOS PC), OVMF's own UEFI PXE on a virtio NIC with no option ROM (a
UEFI PC), and AAVMF, the same UEFI for arm64. QEMU runs without KVM (TCG).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from plans import netboot
from stacks.boards import DISCOVERY_BOARDS
from stacks.model import Node
from tests.netns.lan import Lan
from tests.tools import require
from tools import debian

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
    leased: str | None = None  # an unknown machine's address, noted when it is done: its 2-minute lease may expire before the test looks
    # Memory in MiB: enough for the firmware and a tiny image; a real Talos initramfs needs more.
    memory: int = 256
    # UEFI only: a second boot device after the NIC, its own "disk" (disk_image), which must boot when the network
    # hands the machine back (review 2 HIGH 1).
    disk: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    finished: float | None = None

    @property
    def debug_log(self) -> Path:
        return self.lan.root / f"{self.name}.debugcon"

    @property
    def serial_log(self) -> Path:
        return self.lan.root / f"{self.name}.serial"

    @property
    def script(self) -> str:
        return f"/ipxe/{netboot.mac_name(self.mac)}.ipxe"

    def start(self) -> None:
        tap = self.lan.tap()
        binary = "qemu-system-aarch64" if self.firmware == "arm64" else "qemu-system-x86_64"
        # -nodefaults: none of QEMU's default devices, which no firmware here boots from: a PC's VGA, which the firmware
        # draws its screens into under TCG, and its empty DVD-ROM (and floppy), which it tries and fails before the NIC
        # (OVMF's serial log: `failed to load Boot0001 "UEFI QEMU DVD-ROM"`). The NIC, and a UEFI machine's disk, are
        # given below. OVMF's boot to its PXE took 0.4 s less CPU so (4.2 s against 3.8 s, five alternated pairs).
        qemu = [require(binary), "-accel", "tcg", "-nodefaults", "-display", "none", "-serial", "none",
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
        if self.disk:
            # The NIC first, then the disk, as on a PC set to boot from the network first; UEFI's console (and the
            # disk's marker) goes to the serial port.
            assert self.firmware != "bios", "a disk after the NIC is modelled for UEFI firmware only"
            image = disk_image(self.lan.root / f"{self.name}.disk", "BOOTAA64.EFI" if self.firmware == "arm64" else "BOOTX64.EFI")
            qemu[qemu.index("-serial") + 1] = f"file:{self.serial_log}"
            # The order is the PC's own, in its variable store (as a PC set up that way keeps it): the NIC's IPv4 PXE,
            # then the disk. Not QEMU's bootindex=: OVMF's and AAVMF's QemuBootOrderLib match the NIC's OpenFirmware
            # path as a prefix of every option of the NIC (edk2-stable202211 OvmfPkg/Library/QemuBootOrderLib/
            # QemuBootOrderLib.c:1957), so PXEv6, HTTPv4 and HTTPv6 came before the disk too, and HTTPv4's four DHCP
            # discovers (4, 8, 16 and 32 s, NetworkPkg/HttpBootDxe/HttpBootDhcp4.c:27) cost a minute at a full core
            # under TCG. With no bootindex, QEMU's fw_cfg "bootorder" is empty and the firmware leaves BootOrder as it
            # is (QemuBootOrderLib.c:2198-2200, 2307); its refresh adds the other options after it
            # (OvmfPkg/Library/PlatformBootManagerLib/BdsPlatform.c:1712, ArmVirtPkg/Library/PlatformBootManagerLib/
            # PlatformBm.c:952).
            nic, disk = SLOTS[self.firmware]
            qemu = [a.replace(f"mac={self.mac},romfile=", f"mac={self.mac},romfile=,addr=0x{nic:x}") for a in qemu]
            vars_copy.write_bytes(boot_order_vars(empty_vars(self.firmware), self.mac, nic, disk))
            qemu += ["-drive", f"if=none,id=d0,format=raw,file={image}", "-device", f"virtio-blk-pci,drive=d0,addr=0x{disk:x}"]
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
        if self.leased is not None:
            return self.leased
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
            if self.disk:
                gave_up = not self.boots and self.serial_log.exists() and DISK_BOOTED.encode() in self.serial_log.read_bytes()
            else:
                gave_up = not self.boots and self.debug_log.exists() and b"enter handle_18" in self.debug_log.read_bytes()
            if booted or gave_up:
                self.finished = time.monotonic()
                self.leased = None if self.known else self.address
        return self.finished is not None


DISK_BOOTED = "ILUVATAR-TEST: the machine's own disk booted"

# A UEFI machine's NIC and disk, at fixed PCI slots (q35's 00:01.0 was its VGA before -nodefaults), which its boot options name.
SLOTS = {"uefi": (2, 3), "arm64": (1, 2)}

# AAVMF's empty variable store as edk2 defines it (edk2-stable202211 ArmVirtPkg/VarStore.fdf.inc:23-71: the firmware
# volume's and the variable store's headers at 0, the fault-tolerant write's working block at 0x40000), erased (0xff)
# elsewhere. Debian's AAVMF_VARS.fd is zeros, which the firmware formats on its first boot; it takes this header as
# formatted (OvmfPkg/VirtNorFlashDxe/VirtNorFlashFvb.c:184-260: revision, signature, length, GUIDs, checksum).
AAVMF_STORE = bytes.fromhex(
    "00000000000000000000000000000000"
    "8d2bf1ff96768b4ca9852747075b4f50"
    "00000c0000000000"
    "5f465648fffe0400"
    "4800280900000002"
    "0300000000000400"
    "0000000000000000"  # EFI_FIRMWARE_VOLUME_HEADER
    "782cf3aa7b949a43a1802e144ec37792"
    "b8ff0300"
    "5afe000000000000"  # VARIABLE_STORE_HEADER
)
AAVMF_FTW = bytes.fromhex("2b29589e687c7d49a0ce6500fd9f1b955be7c686feffffffe0ff030000000000")


def empty_vars(firmware: str) -> bytes:
    """The firmware's empty variable store: Debian's OVMF_VARS_4M.fd; for AAVMF, edk2's (above) in Debian's 64 MiB."""
    if firmware == "uefi":
        return OVMF_VARS.read_bytes()
    store = bytearray(b"\xff" * 0xC0000)
    store[: len(AAVMF_STORE)] = AAVMF_STORE
    store[0x40000 : 0x40000 + len(AAVMF_FTW)] = AAVMF_FTW
    return bytes(store) + bytes(AAVMF_VARS.stat().st_size - len(store))


def _device_path(*nodes: tuple[int, int, bytes]) -> bytes:
    """A UEFI device path: (type, subtype, data) nodes, then the end node (UEFI 2.9, 10.3.1)."""
    out = b"".join(struct.pack("<BBH", kind, sub, 4 + len(data)) + data for kind, sub, data in nodes)
    return out + b"\x7f\xff\x04\x00"


def _load_option(description: str, path: bytes) -> bytes:
    """An EFI_LOAD_OPTION, active (UEFI 2.9, 3.1.3)."""
    return struct.pack("<IH", 1, len(path)) + (description + "\0").encode("utf-16-le") + path


def boot_order_vars(store: bytes, mac: str, nic_slot: int, disk_slot: int) -> bytes:
    """An empty variable store (empty_vars) with Boot0000, the NIC's IPv4 PXE, Boot0001, the disk,
    and BootOrder 0000,0001: a PC set to boot from the network (IPv4), then its disk. Each variable is an edk2
    AUTHENTICATED_VARIABLE_HEADER (MdeModulePkg/Include/Guid/VariableFormat.h:154-192, edk2-stable202211), state
    VAR_ADDED, 4-byte aligned, after the store's header at 0x64, in the space edk2 leaves erased (0xff)."""
    pci = (2, 1, struct.pack("<II", 0x0A0341D0, 0))  # PciRoot(0x0): ACPI PNP0A03, UID 0
    nic = [pci, (1, 1, bytes([0, nic_slot])), (3, 11, bytes.fromhex(mac.replace(":", "")).ljust(32, b"\0") + b"\x01")]
    ipv4 = (3, 12, bytes(23))  # IPv4(0.0.0.0,0x0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0), the firmware's own PXEv4 option
    label = mac.replace(":", "").upper()
    variables = [
        ("Boot0000", _load_option(f"UEFI PXEv4 (MAC:{label})", _device_path(*nic, ipv4))),
        ("Boot0001", _load_option("UEFI disk", _device_path(pci, (1, 1, bytes([0, disk_slot]))))),
        ("BootOrder", struct.pack("<HH", 0, 1)),
    ]
    global_guid = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c").bytes_le
    start = 0x64
    assert store[0x48:0x58] == uuid.UUID("aaf32c78-947b-439a-a180-2e144ec37792").bytes_le, "not an authenticated edk2 variable store"
    assert store[start : start + 4] == b"\xff" * 4, "the variable store is not empty"
    out = b""
    for name, data in variables:
        encoded = (name + "\0").encode("utf-16-le")
        header = struct.pack("<HBBIQ16sIII16s", 0x55AA, 0x3F, 0, 7, 0, bytes(16), 0, len(encoded), len(data), global_guid)
        out += header + encoded + data
        out += b"\xff" * (-len(out) % 4)
    return store[:start] + out + store[start + len(out) :]


def disk_image(path: Path, loader: str) -> Path:
    """A machine's own disk: a FAT file system (UEFI reads one on a disk with no partition table) whose
    EFI/BOOT/<loader> is the served iPXE of that architecture, run by the firmware as the disk's default boot
    file, with an autoexec.ipxe that prints DISK_BOOTED and powers the machine off (QEMU exits)."""
    ipxe = debian.path("ipxe") / "usr/lib/ipxe"
    source = "ipxe-arm64.efi" if loader == "BOOTAA64.EFI" else "ipxe.efi"
    script = path.with_suffix(".ipxe")
    script.write_text(f"#!ipxe\necho {DISK_BOOTED}\nsleep 1\npoweroff\n")
    subprocess.run([require("mkfs.vfat"), "-C", str(path), "4096"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([require("mmd"), "-i", str(path), "::/EFI", "::/EFI/BOOT"], check=True)
    subprocess.run([require("mcopy"), "-i", str(path), str(ipxe / source), f"::/EFI/BOOT/{loader}"], check=True)
    subprocess.run([require("mcopy"), "-i", str(path), str(script), "::/autoexec.ipxe"], check=True)
    return path
