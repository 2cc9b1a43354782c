"""The Pi image builder (plans.netboot.pi_image.build_script), run offline on small Ubuntu-shaped images that
tests/pi_image.py makes with the real mkfs.vfat, mtools, mke2fs, sfdisk, cpio and zstd: the same script the Pis run,
with curl reading a file: URL."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from plans.netboot import pi_image as plan
from tests import pi_image


@pytest.fixture(scope="module")
def ubuntu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    return pi_image.make(tmp_path_factory.mktemp("ubuntu"))


def test_it_extracts_the_boot_tree_and_the_root_as_they_are(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    xz, sha, root = ubuntu
    out = tmp_path / "images" / "ubuntu-24.04.3-test"
    done = pi_image.build(plan.build_script(), xz, sha, out)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "iluvatar: built Pi image ubuntu-24.04.3-test\n"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted(
        [".complete", "boot", "root.img", "boot/overlays", *(f"boot/{n}" for n in [*pi_image.BOOT, "initrd.img"])]
    )
    for name, text in pi_image.BOOT.items():
        assert (out / "boot" / name).read_text() == text, name
    assert hashlib.sha256((out / "root.img").read_bytes()).digest() == hashlib.sha256(root).digest()
    assert (out / ".complete").read_text() == f"{sha}\n"
    assert not (tmp_path / "images" / "ubuntu-24.04.3-test.work").exists()
    # Run again (the DaemonSet restarts, a Pi reboots): nothing is downloaded or changed.
    again = pi_image.build(plan.build_script(), tmp_path / "gone.img.xz", sha, out)
    assert (again.returncode, again.stdout) == (0, "iluvatar: Pi image ubuntu-24.04.3-test is already built\n")


def test_a_download_that_is_not_the_pinned_image_is_refused_and_nothing_kept(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    xz, _, _ = ubuntu
    out = tmp_path / "img"
    wrong = "0" * 64
    done = pi_image.build(plan.build_script(), xz, wrong, out)
    assert done.returncode == 1
    got = hashlib.sha256(xz.read_bytes()).hexdigest()
    assert done.stderr == (
        f"iluvatar: Pi image file://{xz}: its SHA-256 is {got}, not the pinned {wrong} (iluvatar:ainur.piImage.sha256): "
        "the wrong file, or a broken download\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build-pi-image.sh"]


def test_a_download_that_fails_keeps_nothing(tmp_path: Path) -> None:
    done = pi_image.build(plan.build_script(), tmp_path / "missing.img.xz", "0" * 64, tmp_path / "img")
    assert done.returncode == 1
    assert done.stderr.endswith(f"iluvatar: Pi image file://{tmp_path}/missing.img.xz: the download failed\n")
    assert not (tmp_path / "img").exists() and not (tmp_path / "img.work").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"initrd_files": ("init", "scripts/nfs", "usr/lib/modules/6.8.0-1010-raspi/kernel/fs/nfs/nfs.ko.zst")},
         "its initramfs has no nfsmount (klibc-utils): it cannot mount an NFS root"),
        ({"initrd_files": ("init", "usr/bin/nfsmount")},
         "its initramfs has no nfs module (initramfs-tools' MODULES=most puts it in): it cannot mount an NFS root"),
        ({"boot": {k: v for k, v in pi_image.BOOT.items() if k != "bcm2712-rpi-5-b.dtb"}},
         "its boot partition has no bcm2712-rpi-5-b.dtb, which a netbooting Pi 4 or Pi 5 reads"),
        ({"boot": {k: v for k, v in pi_image.BOOT.items() if k != "start4.elf"}},
         "its boot partition has no start4.elf, which a netbooting Pi 4 or Pi 5 reads"),
        ({"root_type": "82"}, "its second partition is not a Linux root (type 82)"),
    ],
)  # fmt: skip
def test_an_image_a_netbooting_pi_cannot_use_is_refused_saying_why(tmp_path: Path, change: dict[str, object], message: str) -> None:
    xz, sha, _ = pi_image.make(tmp_path / "src", **change)  # type: ignore[arg-type]
    done = pi_image.build(plan.build_script(), xz, sha, tmp_path / "img")
    assert (done.returncode, done.stderr) == (1, f"iluvatar: Pi image file://{xz}: {message}\n")
    assert not (tmp_path / "img").exists() and not (tmp_path / "img.work").exists()


def test_a_build_killed_halfway_is_finished_by_the_next(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    xz, sha, root = ubuntu
    out = tmp_path / "img"
    # A power cut after the download: a work folder with a half-unpacked disk, no image.
    (tmp_path / "img.work" / "boot").mkdir(parents=True)
    (tmp_path / "img.work" / "disk.img").write_bytes(b"half")
    assert not out.exists()
    done = pi_image.build(plan.build_script(), xz, sha, out)
    assert done.returncode == 0, done.stderr
    assert (out / "root.img").read_bytes() == root and not (tmp_path / "img.work").exists()


def pointers(folder: Path, images: dict[str, str]) -> Path:
    """The boot pointers' volume as the kubelet projects it (`<pi>/image`, behind ..data), naming each Pi's image."""
    version = folder / "boots" / "..2025_01_01_00_00_00.000000001"
    for pi, image in images.items():
        (version / pi).mkdir(parents=True)
        (version / pi / "image").write_text(image)
    (folder / "boots" / "..data").symlink_to(version.name)
    return folder / "boots"


def test_an_image_no_pi_boots_goes_and_none_goes_while_a_pointer_is_missing(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    """The builder keeps its own image and every image a netbooting Pi's boot pointer names; removes the others (and a
    leftover work folder of another); removes none while a listed Pi has no pointer yet (its first boot, or a layout
    from before the pointers: a Pi may run an image nothing names)."""
    xz, sha, _ = ubuntu
    images = tmp_path / "images"
    for name in ("ubuntu-24.04.1-aaaaaaaaaaaa", "ubuntu-24.04.2-bbbbbbbbbbbb", "ubuntu-24.04.2-cccccccccccc.work"):
        (images / name).mkdir(parents=True)
    out = images / "ubuntu-24.04.3-test"
    boots = pointers(tmp_path / "one", {"eonwe": "ubuntu-24.04.2-bbbbbbbbbbbb"})
    waiting = pi_image.build(plan.build_script(), xz, sha, out, PIS="eonwe ilmare", BOOTS=str(boots))
    assert waiting.returncode == 0, waiting.stderr
    assert waiting.stderr == "iluvatar: ilmare's boot pointer is not here yet, so no Pi image is removed\n"
    assert sorted(p.name for p in images.glob("ubuntu-*")) == [
        "ubuntu-24.04.1-aaaaaaaaaaaa", "ubuntu-24.04.2-bbbbbbbbbbbb", "ubuntu-24.04.2-cccccccccccc.work", "ubuntu-24.04.3-test"
    ]  # fmt: skip
    # Every Pi's pointer here: eonwe still boots 24.04.2, ilmare the new one. The run finds its image built.
    boots = pointers(tmp_path / "two", {"eonwe": "ubuntu-24.04.2-bbbbbbbbbbbb", "ilmare": "ubuntu-24.04.3-test"})
    done = pi_image.build(plan.build_script(), xz, sha, out, PIS="eonwe ilmare", BOOTS=str(boots))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "iluvatar: Pi image ubuntu-24.04.3-test is already built\n"
        "iluvatar: Pi image ubuntu-24.04.1-aaaaaaaaaaaa is removed: no Pi boots it\n"
        "iluvatar: Pi image ubuntu-24.04.2-cccccccccccc.work is removed: no Pi boots it\n"
    )
    assert sorted(p.name for p in images.glob("ubuntu-*")) == ["ubuntu-24.04.2-bbbbbbbbbbbb", "ubuntu-24.04.3-test"]


def test_the_tools_it_needs_are_the_ones_its_image_installs() -> None:
    script = plan.build_script()
    used = {
        "curl": "curl",
        "xz": "xz-utils",
        "sfdisk": "fdisk",
        "mcopy": "mtools",
        "e2fsck": "e2fsprogs",
        "e2label": "e2fsprogs",
        "debugfs": "e2fsprogs",
        "cpio": "cpio",
        "zstd": "zstd",
    }
    for tool, package in used.items():
        assert f"{tool} " in script and package in plan.BUILDER_PACKAGES, tool
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0


def test_no_ssh_host_key_of_the_image_survives_in_the_root_every_pi_shares(tmp_path: Path) -> None:
    """Review 41-3 M4: root.img is the read-only lower layer of every netbooted Pi's root, and each root keeps the keys
    it has (cloud-init's ssh_deletekeys false): a host key the image ships would be every Pi's. The builder removes
    /etc/ssh/ssh_host_* from it (debugfs, offline), keeps the rest of /etc/ssh, and leaves a clean ext4."""
    keys = {f"etc/ssh/ssh_host_{kind}_key{ext}": f"{kind}{ext}\n" for kind in ("ed25519", "rsa", "ecdsa") for ext in ("", ".pub")}
    xz, sha, _ = pi_image.make(tmp_path / "src", root={**pi_image.ROOT, **keys, "etc/ssh/sshd_config": "PermitRootLogin no\n"})
    out = tmp_path / "images" / "ubuntu-24.04.3-keys"
    done = pi_image.build(plan.build_script(), xz, sha, out)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "iluvatar: removed the image's SSH host keys from the shared root: ssh_host_ecdsa_key ssh_host_ecdsa_key.pub "
        "ssh_host_ed25519_key ssh_host_ed25519_key.pub ssh_host_rsa_key ssh_host_rsa_key.pub\n"
        "iluvatar: built Pi image ubuntu-24.04.3-keys\n"
    )
    listing = subprocess.run(["debugfs", "-R", "ls -p /etc/ssh", str(out / "root.img")], capture_output=True, text=True, check=True).stdout
    names = sorted(line.split("/")[5] for line in listing.splitlines() if line.count("/") >= 6)
    assert names == [".", "..", "sshd_config"], listing
    dumped = subprocess.run(["debugfs", "-R", "cat /etc/ssh/sshd_config", str(out / "root.img")], capture_output=True, text=True, check=True)
    assert dumped.stdout == "PermitRootLogin no\n"
    assert subprocess.run(["e2fsck", "-n", "-f", str(out / "root.img")], capture_output=True, check=False).returncode == 0


def test_a_listing_debugfs_fails_fails_the_build_with_its_message(tmp_path: Path) -> None:
    """Review 41-4 N6: debugfs exits 0 whatever its request met (e2fsprogs 1.47.0), so a listing it could not make read
    as "no keys" and the image's keys stayed in the shared root. The real debugfs, pointed at a file that is no
    filesystem for that one listing, prints its error: the build fails with it and keeps nothing."""
    keys = {"etc/ssh/ssh_host_ed25519_key": "ed25519\n"}
    xz, sha, _ = pi_image.make(tmp_path / "src", root={**pi_image.ROOT, **keys})
    shim = tmp_path / "bin" / "debugfs"
    shim.parent.mkdir()
    real = subprocess.run(["sh", "-c", "command -v debugfs"], capture_output=True, text=True, check=True).stdout.strip()
    shim.write_text(f'#!/bin/sh\n[ "$2" = "ls -p /etc/ssh" ] && exec {real} -R "$2" {tmp_path / "not-a-filesystem"}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "not-a-filesystem").write_bytes(b"\0" * 4096)
    out = tmp_path / "images" / "ubuntu-24.04.3-keys"
    done = pi_image.build(plan.build_script(), xz, sha, out, PATH=f"{shim.parent}:{os.environ['PATH']}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"iluvatar: Pi image file://{xz}: debugfs could not list /etc/ssh in its root, so its SSH host keys cannot be removed: "
        "debugfs: Bad magic number in super-block while trying to open "
    ), done.stderr
    assert "ls: Filesystem not open" in done.stderr
    assert not out.exists() and not out.with_name(out.name + ".work").exists()


def test_the_builders_tools_are_installed_only_when_there_is_an_image_to_build(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    """Review 41-1 M3: the step installed its tools (apt-get update) at every start, so after a power cut with no
    internet netboot-cache crash-looped and nothing netbooted. TOOLS (the pinned packages' download and install, in the
    pod) runs only before a build, and a built image asks for nothing."""
    xz, sha, _ = ubuntu
    out = tmp_path / "images" / "ubuntu-24.04.3-test"
    marker = tmp_path / "tools-ran"
    tools = f"echo installing >> {marker}"
    done = pi_image.build(plan.build_script(), xz, sha, out, TOOLS=tools)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "iluvatar: Pi image ubuntu-24.04.3-test is not built on this Pi: installing the builder's tools first\n"
        "iluvatar: built Pi image ubuntu-24.04.3-test\n"
    )
    assert marker.read_text() == "installing\n"
    # Built: the next start (a reboot, a power cut with no internet) neither installs nor downloads.
    again = pi_image.build(plan.build_script(), tmp_path / "gone.img.xz", sha, out, TOOLS=f"{tools}; exit 1")
    assert (again.returncode, again.stdout) == (0, "iluvatar: Pi image ubuntu-24.04.3-test is already built\n")
    assert marker.read_text() == "installing\n"


def test_tools_that_cannot_be_installed_fail_the_build_before_any_download(ubuntu: tuple[Path, str, bytes], tmp_path: Path) -> None:
    xz, sha, _ = ubuntu
    out = tmp_path / "img"
    done = pi_image.build(plan.build_script(), xz, sha, out, TOOLS="echo 'no network' >&2; exit 1")
    assert done.returncode == 1
    assert done.stderr == f"no network\niluvatar: Pi image file://{xz}: the builder's tools could not be installed (the lines above say why)\n"
    assert not out.exists() and not (tmp_path / "img.work").exists()
    # A tool missing after the install is named, not met as a confusing failure halfway.
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in {"sh", "mkdir", "rm", "cat", "basename", "dirname", *plan.TOOLS} - {"curl"}:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    missing = pi_image.build(plan.build_script(), xz, sha, out, PATH=str(bin_dir))
    assert missing.returncode == 1
    assert missing.stderr.endswith("the builder has no curl (plans.netboot.pi_image.BUILDER_PACKAGES)\n")
