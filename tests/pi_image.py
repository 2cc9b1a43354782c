"""A small image shaped as Ubuntu Server for Raspberry Pi's, made with the real tools (mkfs.vfat and mtools for the FAT
boot partition, mke2fs for the ext4 root, sfdisk for the MBR, cpio and zstd for the initramfs), nothing mounted.

Its layout is Ubuntu 24.04's preinstalled raspi image's: an MBR (label dos) with a bootable FAT32 partition (type c,
label system-boot) holding flash-kernel's flat boot tree, then the ext4 root (type 83, label writable).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
from pathlib import Path

from tests.tools import require

MIB = 1024 * 1024
# The boot partition's files: each names itself, so a test can tell what it was served.
BOOT = {
    "config.txt": "[all]\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n",
    "cmdline.txt": "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash\n",
    "vmlinuz": "stand-in kernel\n",
    "start4.elf": "stand-in Pi 4 firmware\n",
    "fixup4.dat": "stand-in Pi 4 firmware fixups\n",
    "bcm2711-rpi-4-b.dtb": "stand-in Pi 4 device tree\n",
    "bcm2712-rpi-5-b.dtb": "stand-in Pi 5 device tree\n",
    "overlays/README": "overlays\n",
    "user-data": "#cloud-config\n",
    "meta-data": "instance-id: cloud-image\n",
}
ROOT = {
    "etc/issue": "Ubuntu 24.04.3 LTS \\n \\l\n",
    "etc/fstab": "LABEL=writable\t/\text4\tdiscard,errors=remount-ro\t0 1\nLABEL=system-boot\t/boot/firmware\tvfat\tdefaults\t0 1\n",
    "etc/hostname": "ubuntu\n",
    "usr/lib/os-release": "NAME=Ubuntu\nVERSION_ID=24.04\n",
}
# What an initramfs built with initramfs-tools' MODULES=most carries for an NFS root (paths as Ubuntu's has them).
INITRD = ("usr/bin/nfsmount", "usr/lib/modules/6.8.0-1010-raspi/kernel/fs/nfs/nfs.ko.zst", "scripts/nfs", "init")


def _run(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    return subprocess.run(list(args), check=True, capture_output=True, cwd=cwd, input=stdin).stdout


def initrd(path: Path, files: tuple[str, ...] = INITRD) -> None:
    """A zstd-compressed newc cpio archive, as Ubuntu 24.04's initramfs-tools makes it (COMPRESS=zstd)."""
    src = path.parent / f"{path.name}.src"
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(f"stand-in {name}\n")
    names = "\n".join(str(p.relative_to(src)) for p in sorted(src.rglob("*"))).encode() + b"\n"
    archive = _run(require("cpio"), "-o", "-H", "newc", "--quiet", cwd=src, stdin=names)
    path.write_bytes(_run(require("zstd"), "-q", "-c", stdin=archive))
    shutil.rmtree(src)


def make(folder: Path, boot: dict[str, str] | None = None, root: dict[str, str] | None = None, initrd_files: tuple[str, ...] = INITRD,
         root_type: str = "83") -> tuple[Path, str, bytes]:  # fmt: skip
    """Write `folder/ubuntu.img.xz`; return it, its SHA-256, and the root partition's bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    boot_src, root_src = folder / "boot-src", folder / "root-src"
    for base, files in ((boot_src, BOOT if boot is None else boot), (root_src, ROOT if root is None else root)):
        for name, text in files.items():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_text(text)
    if initrd_files:
        initrd(boot_src / "initrd.img", initrd_files)
    fat, ext4 = folder / "boot.fat", folder / "root.ext4"
    _run(require("mkfs.vfat"), "-C", "-F", "32", "-n", "SYSTEM-BOOT", str(fat), str(36 * 1024))
    _run(require("mcopy"), "-s", "-i", str(fat), *[str(p) for p in sorted(boot_src.iterdir())], "::/")
    _run(require("mkfs.ext4"), "-q", "-L", "writable", "-d", str(root_src), str(ext4), "16M")
    start, fat_size = 2048, fat.stat().st_size // 512
    root_start = start + fat_size
    disk = folder / "ubuntu.img"
    with disk.open("wb") as out:
        out.truncate((root_start * 512) + ext4.stat().st_size)
    _run(
        require("sfdisk"),
        "--quiet",
        str(disk),
        stdin=f"label: dos\nstart={start}, size={fat_size}, type=c, bootable\nstart={root_start}, type={root_type}\n".encode(),
    )
    with disk.open("r+b") as out:
        out.seek(start * 512)
        out.write(fat.read_bytes())
        out.seek(root_start * 512)
        out.write(ext4.read_bytes())
    root_bytes = ext4.read_bytes()
    xz = folder / "ubuntu.img.xz"
    xz.write_bytes(lzma.compress(disk.read_bytes(), preset=0))
    for p in (disk, fat, ext4):
        p.unlink()
    shutil.rmtree(boot_src)
    shutil.rmtree(root_src)
    return xz, hashlib.sha256(xz.read_bytes()).hexdigest(), root_bytes


def build(script: str, xz: Path, sha256: str, out: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the program's builder (plans.netboot.pi_image.build_script) on it, offline: curl reads the file: URL.
    `extra`: more of its environment (PIS, BOOTS)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / "build-pi-image.sh"
    path.write_text(script)
    env = {**os.environ, "URL": f"file://{xz}", "SHA256": sha256, "OUT": str(out), **extra}
    return subprocess.run(["sh", str(path)], capture_output=True, text=True, env=env, timeout=300, check=False)


def built(folder: Path, image_id: str) -> Path:
    """An Ubuntu-shaped image put through the program's builder, as a Pi's cache holds it: `folder/images/<id>`."""
    from plans.netboot import pi_image as plan

    xz, sha, _ = make(folder / "ubuntu-src")
    out = folder / "images" / image_id
    done = build(plan.build_script(), xz, sha, out)
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return out
