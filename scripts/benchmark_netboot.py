"""How long the network part of a PXE install takes: real firmware, the Ainur's real dnsmasq and nginx.

    sudo .venv/bin/python scripts/benchmark_netboot.py [--runs N]

On a LAN of network namespaces (tests.netns.lan), QEMU runs the firmware a homelab machine has (SeaBIOS
with the e1000's iPXE ROM; OVMF's own UEFI PXE loading the served ipxe.efi) against the generated
dnsmasq and nginx config, and fetches a kernel and an initramfs the size of Talos's (Image Factory's
v1.12 amd64 assets with the storage extensions: about 18 MB and 95 MB; random bytes, so the boot itself
stops there). Measured, per machine: until its own iPXE script is fetched (DHCP, TFTP, iPXE's own DHCP),
and until the initramfs is fetched whole. QEMU runs without KVM (TCG), so these are upper bounds for a
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
INITRAMFS_BYTES = 95 * 1024 * 1024
DEADLINE = 900.0
MACHINES = (("bios", "28:d2:44:30:00:01"), ("uefi", "a8:b8:e0:20:00:02"))


def one_run(tmp: Path, index: int) -> dict[str, tuple[float, float]]:
    stack = load_stack_file(ROOT / "Pulumi.homelab.yaml")
    out: dict[str, tuple[float, float]] = {}
    (tmp / f"run{index}").mkdir()
    with lan(stack, tmp / f"run{index}", f"ilb{os.getpid() % 1000}{index}") as net:
        for board in netboot.asset_boards(stack):
            folder = net.root / "http" / "assets" / board
            (folder / "vmlinuz").write_bytes(os.urandom(KERNEL_BYTES))
            (folder / "initramfs.xz").write_bytes(os.urandom(INITRAMFS_BYTES))
        for firmware, mac in MACHINES:
            machine = Machine(net, f"bench-{firmware}", firmware, mac, boots=True)
            start = time.monotonic()
            machine.start()
            script_at = initramfs_at = None
            try:
                while time.monotonic() - start < DEADLINE and initramfs_at is None:
                    requests = net.requests()
                    if script_at is None and any(path == machine.script for _, path, _ in requests):
                        script_at = time.monotonic() - start
                    if any(path.endswith("/initramfs.xz") and status == 200 for _, path, status in requests):
                        initramfs_at = time.monotonic() - start
                    time.sleep(0.2)
            finally:
                stop(machine.proc)
                net.access_log.write_text("")
            if script_at is None or initramfs_at is None:
                raise SystemExit(f"{firmware}: did not fetch its script and initramfs within {DEADLINE:.0f} s")
            out[firmware] = (script_at, initramfs_at)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmark_netboot: needs root (network namespaces)", file=sys.stderr)
        return 2
    import tempfile

    results: dict[str, list[tuple[float, float]]] = {f: [] for f, _ in MACHINES}
    with tempfile.TemporaryDirectory(prefix="iluvatar-netboot-bench-") as tmp:
        for i in range(args.runs):
            for firmware, times in one_run(Path(tmp), i).items():
                results[firmware].append(times)
                print(
                    f"run {i + 1} {firmware}: script after {times[0]:.1f} s, {INITRAMFS_BYTES >> 20} MB initramfs after {times[1]:.1f} s", flush=True
                )
    print("firmware | own iPXE script fetched | kernel + initramfs fetched (median of runs)")
    for firmware, runs in results.items():
        print(f"{firmware} | {statistics.median(t[0] for t in runs):.1f} s | {statistics.median(t[1] for t in runs):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
