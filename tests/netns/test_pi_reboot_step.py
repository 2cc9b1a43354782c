"""A netbooted maia's reboot step (plans.netboot.roll.reboot_script) deciding whether the Pi runs its boot pointer: the
program's script run by bash in a mount namespace of its own where /proc/cmdline and the root's image mark are the Pi's
(as the firmware passes cmdline.txt: tests/netns/pis.py, firmware_cmdline), with stand-ins for what it asks of others:
sudo (the Pi user's NOPASSWD rule), curl's TFTP (the served cmdline.txt), the NFS mount of its new root (its image
mark; tests/netns/test_pi_nfs.py runs that gate against the real Ganesha) and systemd-run (the reboot, logged)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

from plans.netboot import pis as pis_plan
from plans.netboot import roll
from stacks import StackConfig
from tests.netns.lan import require_root
from tests.netns.pis import firmware_cmdline
from tests.plans.test_netboot_pis import netbooting, node

require_root()

STUBS = {
    "sudo": '#!/bin/sh\nexec "$@"\n',
    "curl": '#!/bin/sh\ncat "$FAKE/served"\n',
    "mount": '#!/bin/sh\nmkdir -p "$7/etc/iluvatar"\necho "${6##*/}" > "$7/etc/iluvatar/pi-image"\n',
    "umount": '#!/bin/sh\nrm -rf "$1/etc"\n',
    "systemd-run": '#!/bin/sh\necho "$*" >> "$FAKE/reboots"\n',
    "systemctl": "#!/bin/sh\nexit 0\n",
}


def run(
    tmp: Path, stack: StackConfig, booted: StackConfig, booted_cmdline: str | None = None
) -> tuple[subprocess.CompletedProcess[str], str]:
    """eonwe's reboot step for `stack`, on an eonwe that booted `booted`'s pointer (its root's mark and its cmdline.txt,
    or `booted_cmdline`), with `stack`'s cmdline.txt served over TFTP."""
    eonwe = node(stack, "eonwe")
    fake = tmp / "fake"
    (fake / "bin").mkdir(parents=True)
    for name, text in STUBS.items():
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    (fake / "served").write_text(pis_plan.cmdline(stack, eonwe))
    (fake / "cmdline").write_text(firmware_cmdline(booted_cmdline or pis_plan.cmdline(booted, node(booted, "eonwe"))))
    upper = fake / "etc-upper"
    (upper / "iluvatar").mkdir(parents=True)
    (upper / "iluvatar" / "pi-image").write_text(pis_plan.image_id(booted) + "\n")
    (fake / "etc-work").mkdir()
    (fake / "step.sh").write_text(roll.reboot_script(stack, eonwe, tftp_timeout=2, nfs_timeout=2))
    setup = (
        f"/usr/bin/mount -t overlay pi-etc -o lowerdir=/etc,upperdir={upper},workdir={fake / 'etc-work'} /etc && "
        f"/usr/bin/mount --bind {fake / 'cmdline'} /proc/cmdline && exec bash {fake / 'step.sh'}"
    )
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE": str(fake)}
    got = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    reboots = fake / "reboots"
    return got, reboots.read_text() if reboots.exists() else ""


def test_a_pi_on_its_pointer_is_not_rebooted(tmp_path: Path) -> None:
    """Its root of the image and the kernel started with the pointer's cmdline.txt (the firmware's own words and its
    console rewritten beside it): nothing to do."""
    stack = netbooting()
    got, reboots = run(tmp_path, stack, stack)
    assert got.returncode == 0, got.stderr
    assert "iluvatar: eonwe already runs" in got.stderr and reboots == ""


def test_a_new_dns_server_reboots_the_pi_on_its_image_with_the_new_cmdline(tmp_path: Path) -> None:
    """Review 41-2 M2: a change of what cmdline.txt carries (here `network.dns`, in its ip= and network-config=) with the
    image unchanged: the Pi runs the image but not the pointer, so its reboot step reboots it (after the TFTP and NFS
    gates), where it used to find the image and return, leaving every maia to take the change at its next power cut."""
    stack = netbooting()
    raw_dns = ["192.168.0.2", "192.168.0.1"]
    changed = stack.model_copy(update={"network": stack.network.model_copy(update={"dns": tuple(ipaddress.ip_address(d) for d in raw_dns)})})
    assert pis_plan.image_id(changed) == pis_plan.image_id(stack)
    assert pis_plan.cmdline(changed, node(changed, "eonwe")) != pis_plan.cmdline(stack, node(stack, "eonwe"))
    got, reboots = run(tmp_path, changed, stack)
    assert got.returncode == 0, got.stderr
    assert (
        f"iluvatar: eonwe runs {pis_plan.image_id(stack)}, booted with another cmdline.txt (it differs at: ip network-config); "
        "it reboots with its new one"
    ) in got.stderr
    assert reboots == "--quiet --unit iluvatar-reboot --on-active=3 systemctl reboot\n"


def test_a_word_removed_from_cmdline_txt_reboots_the_pi(tmp_path: Path) -> None:
    """Review 41-3 L2: the kernel was given a word that cmdline.txt no longer has (here `rootwait` and a `quiet`, as an
    older cmdline.txt might have carried): the Pi does not run its pointer, so it reboots, where a check of cmdline.txt's
    words alone found them all and left it on the old command line. The firmware's own words, in front, still count for
    nothing (test_a_pi_on_its_pointer_is_not_rebooted)."""
    stack = netbooting()
    text = pis_plan.cmdline(stack, node(stack, "eonwe"))
    older = text.replace(" rw ", " rw rootwait quiet=1 ")
    assert older != text
    got, reboots = run(tmp_path, stack, stack, booted_cmdline=older)
    assert got.returncode == 0, got.stderr
    assert (
        f"iluvatar: eonwe runs {pis_plan.image_id(stack)}, booted with another cmdline.txt (it differs at: rootwait quiet); "
        "it reboots with its new one"
    ) in got.stderr
    assert reboots == "--quiet --unit iluvatar-reboot --on-active=3 systemctl reboot\n"
