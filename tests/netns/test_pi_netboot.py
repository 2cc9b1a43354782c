"""The netbooting maiar's bootloaders against the real dnsmasq running the generated config, in both DHCP modes.

A scripted Raspberry Pi 4 and Pi 5 bootloader (tests/netns/pi_bootloader.py: what each sends, with its sources) asks
the LAN of tests/netns/lan.py: in `dhcp` mode dnsmasq on the Pi is the DHCP server; in `proxy` mode the router
(another dnsmasq) gives addresses and the Ainur's answers are ProxyDHCP. The TFTP folders are made by the program's
own script (plans.netboot.pis.tftp_script) over an Ubuntu-shaped image the program's builder extracted (tests/pi_image.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from plans import netboot
from plans.netboot import pi_pods, pis
from stacks import StackConfig, parse_stack, read_stack_file
from tests import pi_image
from tests.edit import HOMELAB
from tests.netns.lan import Lan, lan, require_root, write_pi_tftp

require_root()

SVC = "192.168.0.14"
# eonwe a Pi 4 and ilmare a Pi 5, both netbooting; a Pi nobody listed.
EONWE, EONWE_SERIAL = "d8:3a:dd:10:00:02", "9ffefdef"
ILMARE, ILMARE_SERIAL = "d8:3a:dd:10:00:03", "1a2b3c4d"
STRANGER, STRANGER_SERIAL = "d8:3a:dd:10:00:99", "0badc0de"
GANDALF = "28:d2:44:30:00:01"
# Option 43 of the answer to a Pi, as dnsmasq 2.90 encodes the PXE menu: discovery control 3, the menu item of
# type 0 "Raspberry Pi Boot", and the prompt ("PXE", dnsmasq's own, in dhcp mode; "Iluvatar" in proxy mode). The
# bytes of raspberrypi/documentation boot-net.adoc's capture (6.1.3.10.4.0.80.88.69.9.20.0.0.17.R...) in dhcp mode.
MENU = "0601030a04005058450914000011" + b"Raspberry Pi Boot".hex() + "ff"
PROXY_MENU = "06010309140000" + "11" + b"Raspberry Pi Boot".hex() + "0a0900" + b"Iluvatar".hex() + "ff"


# A BIOS PC's PXE ROM: the vendor class and client architecture a Pi's bootloader sends, its SMBIOS UUID as option 97.
PC, PC_GUID = "02:00:5e:00:0e:01", "00" + "4c4c4544003110508052b4c04f4e3132"
POOL = ("192.168.0.90", "192.168.0.93")


def stack_for(mode: str, discovery: bool = False) -> StackConfig:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": mode}}
    if discovery:
        # arda.discovery on: with a pool of addresses to lend in dhcp mode (proxy mode has none: the router lends them).
        pool = {"pool": {"start": POOL[0], "end": POOL[1]}} if mode == "dhcp" else {}
        raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "discovery": pool}
    pis_ = {"eonwe": ("rpi4", EONWE_SERIAL), "ilmare": ("rpi5", ILMARE_SERIAL)}
    raw["iluvatar:nodes"] = [
        {**n, "board": pis_[n["name"]][0], "boot": "netboot", "serial": pis_[n["name"]][1]} if n["name"] in pis_ else n for n in raw["iluvatar:nodes"]
    ]
    return parse_stack(raw)


@pytest.fixture(scope="module")
def lans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Lan]]:
    """Both modes, and both again with arda.discovery on (`dhcp-discovery`, `proxy-discovery`)."""
    tag = f"ilv{os.getpid() % 10000}"
    # The image as the program's builder leaves it on a Pi (tests/pi_image.py makes an Ubuntu-shaped one), built once:
    # the four stacks differ only in their netboot mode and discovery, not in their image, so the builder's run on
    # another copy of the same source image would leave the same files (its own tests are tests/netns/test_pi_nfs.py's).
    built: dict[str, Path] = {}
    with ExitStack() as stack:
        out = {}
        for mode, letter, discovery in (("dhcp", "q", False), ("proxy", "y", False), ("dhcp", "d", True), ("proxy", "x", True)):
            root = tmp_path_factory.mktemp(f"pi-{mode}")
            # The netboot pod runs on manwe, a Pi that boots from its card (never on a netbooting one).
            net = stack.enter_context(lan(stack_for(mode, discovery), root, f"{tag}{letter}", pi_ip="192.168.0.11"))
            image_id = pis.image_id(net.stack)
            if image_id in built:
                image = root / "images" / image_id
                shutil.copytree(built[image_id], image, symlinks=True)
            else:
                image = built[image_id] = pi_image.built(root, image_id)
            write_pi_tftp(root, net.stack, image.parent)
            out[f"{mode}-discovery" if discovery else mode] = net
        yield out


def node(net: Lan, name: str) -> Any:
    return next(n for n in net.stack.nodes if n.name == name)


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def image_file(net: Lan, name: str) -> dict[str, Any]:
    data = (net.root / "images" / pis.image_id(net.stack) / "boot" / name).read_bytes()
    return {"size": len(data), "sha256": sha(data)}


@pytest.mark.parametrize("mode", ["dhcp", "proxy", "dhcp-discovery", "proxy-discovery"])
@pytest.mark.parametrize(
    ("name", "mac", "serial", "model", "first"), [("eonwe", EONWE, EONWE_SERIAL, 4, "start4.elf"), ("ilmare", ILMARE, ILMARE_SERIAL, 5, "config.txt")]
)
def test_a_pi_boots_its_own_files_under_its_serial(lans: dict[str, Lan], mode: str, name: str, mac: str, serial: str, model: int, first: str) -> None:
    net = lans[mode]
    files = [
        f"{serial}/{first}",
        f"{serial}/config.txt",
        f"{serial}/vmlinuz",
        f"{serial}/initrd.img",
        f"{serial}/cmdline.txt",
        f"{serial}/overlays/README",
    ]
    got = net.pi_boot(mac, serial, model, *files)
    boot = [o for o in got["offers"] if o["raspberry_pi_boot"]]
    assert len(boot) == 1, got["offers"]
    assert boot[0]["option43"] == (MENU if mode.startswith("dhcp") else PROXY_MENU)
    assert (boot[0]["siaddr"], boot[0]["server_id"], boot[0]["vendor_class"]) == (SVC, SVC, "PXEClient")
    if mode.startswith("dhcp"):
        assert boot[0]["yiaddr"] == str(node(net, name).ip)  # its reserved address, in the same answer
    else:
        assert boot[0]["yiaddr"] == "0.0.0.0"  # noqa: S104 - a ProxyDHCP answer: the address is the router's
        assert [o["from"] for o in got["offers"] if not o["raspberry_pi_boot"]] == ["192.168.0.1"]
    assert (got["address"], got["tftp_server"]) == (str(node(net, name).ip), SVC)
    expected = {f: image_file(net, f.split("/", 1)[1]) for f in files if not f.endswith("cmdline.txt")}
    expected[f"{serial}/cmdline.txt"] = {"size": len(pis.cmdline(net.stack, node(net, name))), "sha256": sha(pis.cmdline(net.stack, node(net, name)))}
    assert got["tftp"] == expected


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
def test_a_pi_never_reads_another_pis_files(lans: dict[str, Lan], mode: str) -> None:
    """By its serial, by the other's whole path, or up out of its own folder: dnsmasq serves it from its MAC's folder."""
    net = lans[mode]
    theirs = f"{ILMARE_SERIAL}/cmdline.txt"
    got = net.pi_boot(
        EONWE, EONWE_SERIAL, 4, theirs, f"{pis.tftp_dir(node(net, 'ilmare'))}/cmdline.txt", f"../{pis.tftp_dir(node(net, 'ilmare'))}/cmdline.txt"
    )
    assert got["address"] == "192.168.0.12"
    errors = {name: result.get("error", "") for name, result in got["tftp"].items()}
    mine = net.root / "tftp" / "d8-3a-dd-10-00-02"
    assert errors == {
        theirs: f"file {mine}/{theirs} not found for 192.168.0.12",
        f"d8-3a-dd-10-00-03/{theirs}": f"file {mine}/d8-3a-dd-10-00-03/{theirs} not found for 192.168.0.12",
        f"../d8-3a-dd-10-00-03/{theirs}": f"cannot access {mine}/../d8-3a-dd-10-00-03/{theirs}: Permission denied",
    }


def test_an_unknown_pi_gets_no_answer_it_can_boot_from_in_dhcp_mode(lans: dict[str, Lan]) -> None:
    """It gets an address, as any device on the LAN does, but its answer's menu lacks "Raspberry Pi Boot"; and the TFTP
    root, where a Pi whose prefix folder is missing falls back to, has nothing a Pi boots."""
    net = lans["dhcp"]
    got = net.pi_boot(STRANGER, STRANGER_SERIAL, 5, server=SVC)
    assert [o["raspberry_pi_boot"] for o in got["offers"]] == [False]
    assert got["offers"][0]["option43"] == "0601080a0400505845ff"  # control 8, no menu
    assert "ack" not in got
    # Were it to read TFTP anyway (an address of its own, the server its EEPROM names): its prefix folder is missing,
    # and the root, where the bootloader then looks, has no firmware, config.txt or kernel.
    files = [f"{STRANGER_SERIAL}/start4.elf", "start4.elf", "start.elf", "config.txt", "vmlinuz", "kernel8.img"]
    got = net.pi_boot(STRANGER, STRANGER_SERIAL, 4, *files, server=SVC, address="192.168.0.150")
    assert got["tftp"] == {f: {"error": f"file {net.root / 'tftp'}/{f} not found for 192.168.0.150"} for f in files}


def test_an_unknown_pi_gets_no_answer_at_all_in_proxy_mode(lans: dict[str, Lan]) -> None:
    net = lans["proxy"]
    # (The router pings an address before it offers it to a new client: 3 s.)
    got = net.pi_boot(STRANGER, STRANGER_SERIAL, 4, wait=6)
    assert [o["from"] for o in got["offers"]] == ["192.168.0.1"]  # the router's offer only
    assert not got["offers"][0]["raspberry_pi_boot"]


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
def test_the_tftp_root_has_nothing_a_pi_falls_back_to(lans: dict[str, Lan], mode: str) -> None:
    tftp = lans[mode].root / "tftp"
    assert sorted(p.name for p in tftp.iterdir()) == sorted([*netboot.IPXE_FILES, "d8-3a-dd-10-00-02", "d8-3a-dd-10-00-03"])
    # Under its MAC, its serial only: a link to the folder of this version of its files, beside it (hidden).
    mine = tftp / "d8-3a-dd-10-00-02"
    assert sorted(p.name for p in mine.iterdir() if not p.name.startswith(".")) == [EONWE_SERIAL]
    target = os.readlink(mine / EONWE_SERIAL)
    assert target.startswith(f".{EONWE_SERIAL}.") and "/" not in target
    assert sorted(p.name for p in mine.iterdir()) == sorted([EONWE_SERIAL, target])


@pytest.mark.parametrize("mode", ["dhcp-discovery", "proxy-discovery"])
@pytest.mark.parametrize("model", [4, 5])
def test_with_discovery_on_an_unknown_pi_gets_nothing_and_a_pc_still_gets_discovered(lans: dict[str, Lan], mode: str, model: int) -> None:
    """arda.discovery boots unknown machines, and a Pi's bootloader asks as a BIOS PC does (architecture 0, the same
    vendor class): without its option 97 (R,P,i,4 or R,P,i,5) told apart, an unknown Pi got undionly.kpxe and, in dhcp
    mode, an address of the pool. It gets no answer at all; a PC asking the same way, with its own UUID, still gets
    the pool's address and the BIOS iPXE (in proxy mode, the router's address and the Ainur's PXE menu)."""
    net = lans[mode]
    pi = net.pi_boot(STRANGER, STRANGER_SERIAL, model, wait=6)
    pc = net.pi_boot(PC, STRANGER_SERIAL, model, wait=6, guid=PC_GUID)
    if mode.startswith("dhcp"):
        assert pi["offers"] == []
        assert [(o["server_id"], o["file"], o["siaddr"]) for o in pc["offers"]] == [(SVC, "undionly.kpxe", SVC)]
        assert POOL[0] <= pc["offers"][0]["yiaddr"] <= POOL[1] and len(pc["offers"][0]["yiaddr"]) == len(POOL[0])
    else:
        assert [o["from"] for o in pi["offers"]] == ["192.168.0.1"]  # the router's offer only
        assert sorted(o["server_id"] for o in pc["offers"]) == ["192.168.0.1", SVC]
        proxy = next(o for o in pc["offers"] if o["server_id"] == SVC)
        assert (proxy["yiaddr"], bytes.fromhex(proxy["option43"]).count(b"Iluvatar iPXE")) == ("0.0.0.0", 1)  # noqa: S104
    assert not any(o["raspberry_pi_boot"] for o in pi["offers"] + pc["offers"])


def test_a_pis_boot_files_follow_its_pointer_and_no_other_pis_do(lans: dict[str, Lan]) -> None:
    """Day 2 (plans.netboot.roll): eonwe's boot pointer names a new image; the next pass of pi-tftp (every 2 s on each
    disk-booting Pi) gives its bootloader that image's kernel and a cmdline.txt naming its root of it, in one rename;
    ilmare's files stay as they were. A pointer naming an image not built on the Pi gives that Pi nothing new."""
    net = lans["dhcp"]
    images = net.root / "images"
    newer = "ubuntu-24.04.4-newer"
    boot = {**pi_image.BOOT, "vmlinuz": "the newer kernel\n"}
    xz, sha256, _ = pi_image.make(net.root / "newer-src", boot=boot)
    assert pi_image.build(__import__("plans.netboot.pi_image", fromlist=["x"]).build_script(), xz, sha256, images / newer).returncode == 0
    eonwe, ilmare = node(net, "eonwe"), node(net, "ilmare")
    moved = {**pi_pods.boot_projection(net.stack), "eonwe/image": newer, "eonwe/cmdline.txt": pis.cmdline(net.stack, eonwe, newer)}
    folder = net.root / "tftp" / "d8-3a-dd-10-00-02"
    before = os.readlink(folder / EONWE_SERIAL)
    try:
        done = write_pi_tftp(net.root, net.stack, images, moved)
        assert done.stderr == f"iluvatar: eonwe boots {newer}\n"
        after = os.readlink(folder / EONWE_SERIAL)
        assert after != before and sorted(p.name for p in folder.iterdir()) == sorted([EONWE_SERIAL, after])
        got = net.pi_boot(EONWE, EONWE_SERIAL, 4, f"{EONWE_SERIAL}/vmlinuz", f"{EONWE_SERIAL}/cmdline.txt", f"{EONWE_SERIAL}/start4.elf")
        new_cmdline = pis.cmdline(net.stack, eonwe, newer)
        assert f"nfsroot={SVC}:/pis/eonwe/{newer}," in new_cmdline
        assert got["tftp"] == {
            f"{EONWE_SERIAL}/vmlinuz": {"size": len(boot["vmlinuz"]), "sha256": sha(boot["vmlinuz"])},
            f"{EONWE_SERIAL}/cmdline.txt": {"size": len(new_cmdline), "sha256": sha(new_cmdline)},
            f"{EONWE_SERIAL}/start4.elf": {"size": len(boot["start4.elf"]), "sha256": sha(boot["start4.elf"])},
        }
        theirs = net.pi_boot(ILMARE, ILMARE_SERIAL, 5, f"{ILMARE_SERIAL}/cmdline.txt", f"{ILMARE_SERIAL}/vmlinuz")
        assert theirs["tftp"] == {
            f"{ILMARE_SERIAL}/cmdline.txt": {"size": len(pis.cmdline(net.stack, ilmare)), "sha256": sha(pis.cmdline(net.stack, ilmare))},
            f"{ILMARE_SERIAL}/vmlinuz": image_file(net, "vmlinuz"),
        }
        # The next pass changes nothing; a pointer to an image this Pi has not built leaves the folder as it is.
        assert write_pi_tftp(net.root, net.stack, images, moved).stderr == ""
        unbuilt = {**moved, "eonwe/image": "ubuntu-24.10-notyet"}
        assert write_pi_tftp(net.root, net.stack, images, unbuilt).stderr == (
            "iluvatar: the Pi image ubuntu-24.10-notyet is not built on this Pi yet: eonwe gets no boot files here until it is\n"
        )
        assert os.readlink(folder / EONWE_SERIAL) == after
        # A Pi no longer listed loses its folder.
        alone = {k: v for k, v in moved.items() if not k.startswith("eonwe/")}
        write_pi_tftp(net.root, net.stack, images, alone)
        assert not folder.exists()
    finally:
        write_pi_tftp(net.root, net.stack, images)


def test_arda_machines_still_get_ipxe_beside_the_pis(lans: dict[str, Lan]) -> None:
    lease = lans["dhcp"].lease(GANDALF)
    assert (lease["ip"], lease["boot_file"], lease["siaddr"]) == ("192.168.0.31", "undionly.kpxe", SVC)
