"""A netbooting Pi's boot files as the netboot pod's dnsmasq sees them: through its container's mounts, not the host's.

netboot-cache's pi-tftp fills each Pi's TFTP folder with links into the built image; dnsmasq, in another container,
follows them. Both run here in mount namespaces laid out from the rendered Pod specs (tests/netns/container_view.py):
pi-tftp with its volumes, then the real dnsmasq, chrooted into its container's view, serving TFTP on a loopback of its
own, read by the bootloader's TFTP client (tests/netns/pi_bootloader.py). The first version linked to a folder only
the cache pod mounted: every Pi's start4.elf and config.txt were dangling links in dnsmasq's container, and no Pi booted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plans import netboot
from plans.netboot import objects, pi_pods, pis
from plans.netboot.base import HOST_CACHE, TFTP_ROOT
from stacks import StackConfig
from tests import pi_image
from tests.netns import container_view
from tests.netns.lan import REPO, require_root
from tests.netns.test_pi_netboot import EONWE_SERIAL, ILMARE_SERIAL, stack_for

require_root()

BOOT_FILES = ("start4.elf", "config.txt", "vmlinuz", "initrd.img", "bcm2711-rpi-4-b.dtb")


def specs(stack: StackConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The netboot-cache DaemonSet's and the netboot Deployment's Pod specs, as `pulumi up` applies them."""
    found = {m["metadata"]["name"]: m["spec"]["template"]["spec"] for m in objects.manifests(stack, []) if m["kind"] in ("DaemonSet", "Deployment")}
    return found["netboot-cache"], found["netboot"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> tuple[StackConfig, Path]:
    """A Pi's filesystem after netboot-cache ran: the image built into its cache, and pi-tftp's one pass, in its container."""
    stack = stack_for("dhcp")
    tmp = tmp_path_factory.mktemp("pi-view")
    tmp.chmod(0o755)
    h = tmp / "host"
    images = h / pis.PI_IMAGES.lstrip("/")
    images.mkdir(parents=True)
    shutil.move(str(pi_image.built(tmp / "build", pis.image_id(stack))), str(images / pis.image_id(stack)))
    cache, _ = specs(stack)
    files = {"pi-netboot": {"pi-tftp.sh": pis.tftp_script()}, "pi-boots": pi_pods.boot_projection(stack)}
    text = container_view.script(cache, "pi-tftp", h, tmp / "stage-tftp", files, ["sh", "/etc/iluvatar-pi/pi-tftp.sh"], {"ONCE": "1"})
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", text], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return stack, h


def serve(stack: StackConfig, h: Path, netboot_spec: dict[str, Any], stage: Path, names: list[str]) -> dict[str, Any]:
    """Run the real dnsmasq in the dnsmasq container's view, with the rendered config's TFTP lines on a loopback of its
    own, and read `names` from it as a Pi's bootloader does."""
    rendered = netboot.dnsmasq_conf(stack).splitlines()
    # The rendered TFTP lines but tftp-unique-root (it needs the client's MAC from ARP, which loopback has not: the
    # names read here carry the MAC folder it would add); DNS off, on 127.0.0.1 alone.
    tftp = [line for line in rendered if (line.startswith("tftp-") or line == "enable-tftp") and not line.startswith("tftp-unique-root")]
    assert f"tftp-root={TFTP_ROOT}" in tftp
    conf = "\n".join(["port=0", "listen-address=127.0.0.1", "bind-interfaces", *tftp]) + "\n"
    dnsmasq = next(c for c in netboot_spec["containers"] if c["name"] == "dnsmasq")
    text = container_view.script(netboot_spec, "dnsmasq", h, stage, {"dnsmasq": {"dnsmasq.conf": conf}}, ["dnsmasq", *dnsmasq["args"]])
    client = (
        f"import json,sys; from tests.netns.pi_bootloader import tftp_read; print(json.dumps({{n: tftp_read('127.0.0.1', n) for n in {names!r}}}))"
    )
    outer = (
        "ip link set lo up\n"
        f"sh -c {shlex.quote(text)} 2>{stage}/dnsmasq.log &\n"
        # dnsmasq listening on 69 (its log says so), within 10 s.
        f"for i in $(seq 50); do grep -q 'TFTP root' {stage}/dnsmasq.log 2>/dev/null && break; sleep 0.2; done\n"
        f"{shlex.quote(sys.executable)} -c {shlex.quote(client)}\n"
        "kill $! 2>/dev/null || true\n"
    )
    stage.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", outer],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + (stage / "dnsmasq.log").read_text()
    return {"reads": json.loads(done.stdout.strip().splitlines()[-1]), "log": (stage / "dnsmasq.log").read_text()}


def sha(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_pi_tftp_links_each_pis_boot_files_to_the_image_where_the_containers_see_it(host: tuple[StackConfig, Path]) -> None:
    stack, h = host
    eonwe = next(n for n in stack.nodes if n.name == "eonwe")
    folder = h / HOST_CACHE.lstrip("/") / "tftp" / pis.tftp_dir(eonwe)
    # The links name the image as both containers mount it, not the host's test folder.
    assert [str(p.readlink()) for p in sorted(folder.iterdir()) if p.name == "start4.elf"] == [
        f"{pis.PI_IMAGES}/{pis.image_id(stack)}/boot/start4.elf"
    ]


def test_the_netboot_pods_dnsmasq_serves_each_pi_its_boot_files_through_its_own_mounts(host: tuple[StackConfig, Path], tmp_path: Path) -> None:
    stack, h = host
    _, netboot_spec = specs(stack)
    boot = h / pis.PI_IMAGES.lstrip("/") / pis.image_id(stack) / "boot"
    names = {n.name: n for n in stack.nodes}
    want = {f"{pis.tftp_dir(names['eonwe'])}/{f}": sha((boot / f).read_bytes()) for f in BOOT_FILES}
    want[f"{pis.tftp_dir(names['eonwe'])}/cmdline.txt"] = sha(pis.cmdline(stack, names["eonwe"]).encode())
    want[f"{pis.tftp_dir(names['ilmare'])}/config.txt"] = sha((boot / "config.txt").read_bytes())
    got = serve(stack, h, netboot_spec, tmp_path / "stage", sorted(want))
    assert got["reads"] == want, got["log"]
    assert EONWE_SERIAL in pis.tftp_dir(names["eonwe"]) and ILMARE_SERIAL in pis.tftp_dir(names["ilmare"])


def test_without_the_images_mount_dnsmasq_finds_none_of_the_images_files(host: tuple[StackConfig, Path], tmp_path: Path) -> None:
    """The deliberate break: the first version's dnsmasq container, with the TFTP folder alone. The links dangle there;
    only the Pi's own cmdline.txt (a file in the folder) is served."""
    stack, h = host
    _, netboot_spec = specs(stack)
    spec = copy.deepcopy(netboot_spec)
    dnsmasq = next(c for c in spec["containers"] if c["name"] == "dnsmasq")
    dnsmasq["volumeMounts"] = [m for m in dnsmasq["volumeMounts"] if m["mountPath"] != pis.PI_IMAGES]
    eonwe = pis.tftp_dir(next(n for n in stack.nodes if n.name == "eonwe"))
    got = serve(stack, h, spec, tmp_path / "stage", [f"{eonwe}/start4.elf", f"{eonwe}/config.txt", f"{eonwe}/cmdline.txt"])
    for f in ("start4.elf", "config.txt"):
        assert got["reads"][f"{eonwe}/{f}"] == {"error": f"file {TFTP_ROOT}/{eonwe}/{f} not found for 127.0.0.1"}, got
    assert "sha256" in got["reads"][f"{eonwe}/cmdline.txt"]
