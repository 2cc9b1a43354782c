"""How long the network part of a PXE install takes: real firmware, the Ainur's real dnsmasq and nginx.

    sudo .venv/bin/python scripts/benchmark_netboot.py [--runs N]

On a LAN of network namespaces (tests.netns.lan), QEMU runs the firmware a homelab machine has (SeaBIOS
with the e1000's iPXE ROM; OVMF's own UEFI PXE loading the served ipxe.efi) against the generated
dnsmasq and nginx config, and fetches a kernel and an initramfs the size of Talos's (Image Factory's
v1.12 amd64 assets with the storage extensions: about 18 MB and 95 MB; stand-ins, random bytes behind a
valid bzImage header, so iPXE fetches both and the boot itself stops there). Measured, per machine, from power-on: until its own iPXE script is fetched (DHCP, TFTP,
iPXE's own DHCP), its kernel, and its initramfs (BIOS only: UEFI's iPXE loads a kernel as an EFI image and
refuses the stand-in once fetched). QEMU runs without KVM (TCG), so these are upper bounds for a
real machine's network phase; docs/bring-up.md explains how they enter the apply step's bound.
A benchmark script, not a test: the figures go to docs/proof/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plans import netboot  # noqa: E402
from stacks import load_stack_file  # noqa: E402
from tests.netns.firmware_machine import Machine  # noqa: E402
from tests.netns.lan import lan, stop  # noqa: E402

KERNEL_BYTES = 18 * 1024 * 1024


def stand_in_kernel(size: int) -> bytes:
    """A stand-in for Talos's kernel: random bytes behind a valid bzImage header (boot protocol 2.15), so
    iPXE's `kernel` accepts it and the script goes on to fetch the initramfs. Booting it would jump into
    noise: the benchmark stops the machine once the initramfs is fetched."""
    image = bytearray(os.urandom(size))
    image[0x1F1] = 4  # setup_sects
    image[0x1FE:0x200] = b"\x55\xaa"  # boot_flag
    image[0x202:0x206] = b"HdrS"
    image[0x206:0x208] = (0x020F).to_bytes(2, "little")  # version
    image[0x210] = 0xFF  # type_of_loader: undefined
    image[0x211] = 0x01  # loadflags: LOADED_HIGH
    image[0x22C:0x230] = (0x7FFFFFFF).to_bytes(4, "little")  # initrd_addr_max
    image[0x230:0x234] = (0x200000).to_bytes(4, "little")  # kernel_alignment
    image[0x234] = 0  # relocatable_kernel
    image[0x238:0x23C] = (2048).to_bytes(4, "little")  # cmdline_size
    return bytes(image)


INITRAMFS_BYTES = 95 * 1024 * 1024
DEADLINE = 900.0
MACHINES = (("bios", "28:d2:44:30:00:01"), ("uefi", "a8:b8:e0:20:00:02"))


def one_run(tmp: Path, index: int) -> dict[str, tuple[float, float, float | None]]:
    """One machine per firmware, one after the other: seconds until its script, its kernel and its initramfs were fetched."""
    stack = load_stack_file(ROOT / "Pulumi.homelab.yaml")
    out: dict[str, tuple[float, float, float | None]] = {}
    (tmp / f"run{index}").mkdir()
    with lan(stack, tmp / f"run{index}", f"ilb{os.getpid() % 1000}{index}") as net:
        for board in netboot.asset_boards(stack):
            folder = net.root / "http" / "assets" / board
            (folder / "vmlinuz").write_bytes(stand_in_kernel(KERNEL_BYTES))
            (folder / "initramfs.xz").write_bytes(os.urandom(INITRAMFS_BYTES))
        for firmware, mac in MACHINES:
            # Memory for iPXE to hold the kernel and initramfs it downloads, as a real machine has.
            machine = Machine(net, f"bench-{firmware}", firmware, mac, boots=True, memory=1024)
            start = time.monotonic()
            machine.start()
            marks: dict[str, float] = {}
            try:
                while time.monotonic() - start < DEADLINE:
                    for _, path, status in net.requests():
                        for mark, suffix in (("script", machine.script), ("kernel", "/vmlinuz"), ("initramfs", "/initramfs.xz")):
                            if mark not in marks and path.endswith(suffix) and status == 200:
                                marks[mark] = time.monotonic() - start
                    # UEFI's iPXE loads a kernel as an EFI image: it refuses the stand-in, having fetched it.
                    if "initramfs" in marks or (firmware == "uefi" and "kernel" in marks and time.monotonic() - start > marks["kernel"] + 20):
                        break
                    time.sleep(0.2)
            finally:
                stop(machine.proc)
                net.access_log.write_text("")
            if "script" not in marks or "kernel" not in marks:
                raise SystemExit(f"{firmware}: did not fetch its script and kernel within {DEADLINE:.0f} s")
            out[firmware] = (marks["script"], marks["kernel"], marks.get("initramfs"))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmark_netboot: needs root (network namespaces)", file=sys.stderr)
        return 2
    import tempfile

    results: dict[str, list[tuple[float, float, float | None]]] = {f: [] for f, _ in MACHINES}
    with tempfile.TemporaryDirectory(prefix="iluvatar-netboot-bench-") as tmp:
        for i in range(args.runs):
            for firmware, times in one_run(Path(tmp), i).items():
                results[firmware].append(times)
                initramfs = f"{times[2]:.1f} s" if times[2] is not None else "not fetched (the stand-in kernel is no EFI image)"
                print(f"run {i + 1} {firmware}: script {times[0]:.1f} s, kernel {times[1]:.1f} s, initramfs {initramfs}", flush=True)
    print(f"firmware | own iPXE script | {KERNEL_BYTES >> 20} MB kernel | {INITRAMFS_BYTES >> 20} MB initramfs (medians, seconds from power-on)")
    for firmware, runs in results.items():
        fetched = [t[2] for t in runs if t[2] is not None]
        whole = f"{statistics.median(fetched):.1f}" if fetched else "-"
        print(f"{firmware} | {statistics.median(t[0] for t in runs):.1f} | {statistics.median(t[1] for t in runs):.1f} | {whole}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
