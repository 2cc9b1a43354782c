"""The netbooting maiar: what the Ainur serve a Raspberry Pi with no card, from its bootloader to its NFS root.

A maia with `boot: netboot` boots as its EEPROM bootloader does it (raspberrypi/documentation,
documentation/asciidoc/computers/raspberry-pi/eeprom-bootloader.adoc and boot-net.adoc):

1. DHCP: it sends a PXE-style DISCOVER (vendor class `PXEClient:Arch:00000:UNDI:002001`, architecture 0) and
   takes only an answer whose option 43 holds "Raspberry Pi Boot". dnsmasq gives that answer to the inventory's
   netbooting Pis alone (plans.netboot.dnsmasq): with their address in `dhcp` mode, as a ProxyDHCP answer beside
   the router in `proxy` mode (the bootloader takes its address from the router's offer and the TFTP server from
   the proxy's: the Raspberry Pi network boot tutorial runs dnsmasq as a proxy, and rpi-eeprom issue #376's log
   shows a Pi 4 doing it).
2. TFTP: it reads every file under its serial (`TFTP_PREFIX=0`, the low 8 hex digits of its serial), from the
   service address (`TFTP_IP`, set in its EEPROM by `eeprom_config`). dnsmasq serves each Pi from a folder of its
   own MAC (`tftp-unique-root=mac`), so `<mac>/<serial>/` holds its boot partition and a Pi that asks for another
   serial finds nothing. Nothing is at the TFTP root a Pi could fall back to: the bootloader drops the prefix when
   neither start4.elf nor start.elf is under it (ibid., TFTP_PREFIX), and an unknown Pi then finds only the iPXE
   binaries, which it cannot boot.
3. The firmware boots Ubuntu's kernel and initramfs with `cmdline.txt`: initramfs-tools' nfs script mounts the root
   with klibc's nfsmount (`nfsroot=<server>:<path>,<options>`, scripts/nfs) over the network `ip=` configures.
4. The root is the Pi's own export on the Ainur's NFS server (plans.netboot.nfs): an overlay of one read-only
   Ubuntu root shared by every Pi, with the Pi's own writable layer; cloud-init finds its seed in the root's
   /var/lib/cloud/seed/nocloud (DataSourceNoCloud's first place, before any label), and its network-config on
   the kernel command line (see `cmdline`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib

import yaml

from plans import cloudinit
from plans.netboot.base import HOST_CACHE, mac_name, service_ip

# NFS's ports as klibc's nfsmount speaks them, kept in the leaf module a netbooted Pi's guard of them reads (plans.nfs_guard).
from plans.nfs_guard import MOUNT_PORT as MOUNT_PORT
from plans.nfs_guard import NFS_PORT as NFS_PORT
from stacks.model import Node, StackConfig

# The Pi's bootloader: the vendor class its DISCOVER carries, the string its answer's option 43 must hold.
PI_VENDOR_CLASS = "PXEClient:Arch:00000:UNDI:002001"
PI_OPTION43 = "Raspberry Pi Boot"

# Where each Pi's root is exported, and the mount options its cmdline.txt gives nfsmount (its own spellings:
# `v3` and `tcp`, not the kernel's `vers=3`: nfsmount refuses an option it does not know). `hard`: a server that
# moves (a failover) makes I/O wait, never fail; timeo in tenths of a second, as the kernel's NFS client reads it.
EXPORT_ROOT = "/pis"
NFS_OPTIONS = ("v3", "tcp", f"port={NFS_PORT}", "hard", "timeo=600", "retrans=10")
# The Pi images on each disk-booting Pi (plans.netboot.pi_image builds them) and the per-Pi TFTP folders.
PI_IMAGES = f"{HOST_CACHE}/pi-images"
# The bootloader settings a netbooting Pi needs in its EEPROM (eeprom-bootloader.adoc): try the SD card, then the
# network, then start again (0xf21, what rpi-eeprom's own network-boot preset sets: imager/2711-config and
# 2712-config/boot-conf-network.txt); files under the serial; the TFTP server named outright (it overrides the DHCP
# answer's server address, so no router's next-server can redirect it); and a per-file TFTP timeout long enough for
# Ubuntu's initramfs over lock-step TFTP (the default 30 s aborts large files: tinkerbell's Raspberry Pi 5 guide).
BOOT_ORDER = "0xf21"
TFTP_FILE_TIMEOUT_MS = 300000
# cloud-init's kernel command line network config: base64 of gzip of YAML (cloudinit/net/cmdline.py,
# read_kernel_cmdline_config and _b64dgz, cloud-init 25.1.4).
CMDLINE_LIMIT = 1024


def netboot_pis(stack: StackConfig) -> list[Node]:
    """The maiar that boot from the Ainur, in inventory order."""
    return [n for n in stack.ainur_nodes if n.boot == "netboot"]


def pi_model(node: Node) -> int:
    return {"rpi4": 4, "rpi5": 5}[node.board]


def tftp_dir(node: Node) -> str:
    """The Pi's folder under the TFTP root: its MAC (dnsmasq's tftp-unique-root=mac adds it), then its serial (the
    bootloader's prefix)."""
    assert node.serial is not None
    return f"{mac_name(node.mac)}/{node.serial}"


def export_path(node: Node, image: str) -> str:
    """Where the Pi's root of `image` is exported: each image a Pi has a root of is its own export (plans.netboot.nfs),
    so a Pi runs on one while the next is ready beside it, and its reboot, not the server, moves it."""
    return f"{EXPORT_ROOT}/{node.name}/{image}"


# Every image's folder name starts so: what the NFS server tells a root by (plans.netboot.nfs.serve_script).
IMAGE_PREFIX = "ubuntu-"


def image_id(stack: StackConfig) -> str:
    """The image's folder name: its release and the start of its checksum, so a new image is a new folder."""
    assert stack.ainur is not None
    image = stack.ainur.pi_image
    return f"{IMAGE_PREFIX}{image.release}-{image.sha256[:12]}"


def network_config_arg(stack: StackConfig, node: Node) -> str:
    """`network-config=...`: the Pi's netplan config as cloud-init reads it from the kernel command line.

    With `ip=` on the command line and klibc's /run/net-*.conf from the initramfs, cloud-init would otherwise take
    the initramfs's network config before the datasource's (cloudinit/stages.py, _find_networking_config: CMD_LINE,
    INITRAMFS, SYSTEM_CFG, DS; net/cmdline.py, KlibcNetworkConfigSource.is_applicable); the command line comes first.
    """
    doc = cloudinit.network_config_document(stack, node)["network"]
    text = yaml.safe_dump(doc, sort_keys=True, width=4096).encode()
    # mtime 0: the same config gives the same bytes, so cmdline.txt (and the pod's digest) only change with it.
    return "network-config=" + base64.b64encode(gzip.compress(text, mtime=0)).decode()


def _ip_arg(stack: StackConfig, node: Node) -> str:
    # ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1> (klibc ipconfig, as
    # initramfs-tools' configure_networking passes it). The device is left empty: BOOTIF names it by MAC, so the
    # kernel's name for the Pi's NIC (eth0, end0) does not matter.
    net = stack.network
    dns = [str(d) for d in net.dns[:2]]
    return f"ip={node.ip}::{net.gateway}:{net.lan.netmask}:{node.name}::off:" + ":".join(dns)


def cmdline(stack: StackConfig, node: Node, image: str | None = None) -> str:
    """cmdline.txt for one Pi: an NFS root on the service address (its root of `image`, by default the stack's), its
    address, its network config for cloud-init."""
    nfsroot = f"nfsroot={service_ip(stack)}:{export_path(node, image or image_id(stack))}," + ",".join(NFS_OPTIONS)
    words = [
        # Ubuntu's own consoles (the image's cmdline.txt): the serial header and the screen.
        "console=serial0,115200",
        "console=tty1",
        "multipath=off",
        "dwc_otg.lpm_enable=0",
        # initramfs-tools: root=/dev/nfs makes BOOT=nfs (init), and scripts/nfs mounts nfsroot= with nfsmount.
        "root=/dev/nfs",
        nfsroot,
        _ip_arg(stack, node),
        # configure_networking picks the NIC with this MAC (scripts/functions, BOOTIF).
        f"BOOTIF=01-{mac_name(node.mac)}",
        "rw",
        # The initramfs retries the mount for 180 s (ROOTDELAY's default), then panics: reboot 10 s later, and the
        # bootloader starts over (BOOT_ORDER's restart), rather than wait at a shell for hands.
        "panic=10",
        network_config_arg(stack, node),
    ]
    text = " ".join(words)
    if len(text) > CMDLINE_LIMIT:
        raise ValueError(f"{node.name}'s cmdline.txt is {len(text)} characters, over {CMDLINE_LIMIT}")
    return text + "\n"


def eeprom_config(stack: StackConfig, node: Node) -> str:
    """The lines to set in the Pi's bootloader (`sudo rpi-eeprom-config --edit` on the Pi, once, with its card)."""
    lines = [
        f"# {node.name} ({node.board}, serial {node.serial}): the bootloader settings that netboot it from the Ainur.",
        "# Set once with its card in: sudo rpi-eeprom-config --edit, paste these under [all], save, reboot, remove the card.",
        "[all]",
        f"BOOT_ORDER={BOOT_ORDER}",
        "TFTP_PREFIX=0",
        f"TFTP_IP={service_ip(stack)}",
        f"TFTP_FILE_TIMEOUT={TFTP_FILE_TIMEOUT_MS}",
    ]
    return "\n".join(lines) + "\n"


def fstab(stack: StackConfig, node: Node) -> str:
    """/etc/fstab of a netbooted root: Ubuntu's names the card's partitions (LABEL=writable, LABEL=system-boot), which
    a Pi without a card has not; systemd would stop at an emergency shell waiting for the boot partition. The root is
    the initramfs's NFS mount and stays as it is (the Raspberry Pi network boot tutorial leaves no root line either)."""
    return f"# Written by Iluvatar: {node.name}'s root is NFS ({service_ip(stack)}:{EXPORT_ROOT}/{node.name}/<image>), mounted by the initramfs; it has no card.\n"


def meta_data(stack: StackConfig, node: Node) -> str:
    """NoCloud's meta-data: an instance id that changes with the user-data, so a changed one runs again."""
    digest = hashlib.sha256(cloudinit.user_data(stack, node).encode()).hexdigest()[:12]
    return yaml.safe_dump({"instance-id": f"iluvatar-{node.name}-{digest}", "local-hostname": node.name}, sort_keys=True)


def seed_files(stack: StackConfig, node: Node) -> dict[str, str]:
    """The files the Pi's own layer of its root carries, by path in the root: the NoCloud seed and its fstab."""
    seed = "/var/lib/cloud/seed/nocloud"
    return {
        "/etc/fstab": fstab(stack, node),
        f"{seed}/user-data": cloudinit.user_data(stack, node),
        f"{seed}/meta-data": meta_data(stack, node),
        f"{seed}/network-config": cloudinit.network_config(stack, node),
    }


def boot_files(stack: StackConfig, node: Node) -> dict[str, str]:
    """The files of the Pi's TFTP folder that are its own; the rest is the image's boot partition as it is."""
    return {"cmdline.txt": cmdline(stack, node)}


def boot_pointer(stack: StackConfig, node: Node) -> dict[str, str]:
    """What the Pi boots next: its TFTP folder, the image whose boot files it gets, and its cmdline.txt naming its root
    of that image. The data of its `pi-boot-<pi>` ConfigMap, which `pulumi up` moves to a new image one Pi at a time,
    each right before that Pi's reboot (plans.netboot.roll): the switch of its root."""
    return {"folder": tftp_dir(node), "image": image_id(stack), "cmdline.txt": cmdline(stack, node)}


def pointer_digest(stack: StackConfig, node: Node) -> str:
    """A digest of the Pi's whole boot pointer (its image and its cmdline.txt: the network, the service address, the NFS
    options), carried by each step of its roll (plans.netboot.roll), so that any change of what the Pi boots, not only
    a new image, rolls it one Pi at a time (review 41-2 M2)."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(boot_pointer(stack, node).items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cmdline_checked_words(stack: StackConfig, node: Node) -> list[str]:
    """The words of cmdline.txt the running kernel's /proc/cmdline must hold, and no others, for the Pi to run its
    pointer: all but the consoles, which the firmware rewrites (`serial0` becomes the UART config.txt selects:
    raspberrypi/documentation, config_txt/boot.adoc, enable_uart). The firmware's own words come before cmdline.txt's
    (as a Pi's /proc/cmdline shows; the firmware is closed, so this is observed, not read in source): the reboot step
    reads cmdline.txt's part from the first console on (plans.netboot.roll.reboot_script), so cmdline.txt must start
    with one."""
    words = cmdline(stack, node).split()
    assert words[0].startswith("console="), words[0]
    return [w for w in words if not w.startswith("console=")]


def tftp_script() -> str:
    """Serve each netbooting Pi, over TFTP, the boot files of the image its boot pointer (`boot_pointer`) names, and its
    cmdline.txt; run for ever on every Pi that boots from its card (netboot-cache's `pi-tftp`), every 2 s, so whichever
    Pi the netboot pod runs on serves what each Pi's pointer says, within seconds of the kubelet updating the volume.

    Each Pi's folder `<mac>/<serial>` is a link to a folder of this version (`<mac>/.<serial>.XXXXXX`), replaced in one
    rename: a bootloader reading while it changes reads the old files or the new, never a mix or nothing. The image's
    files are links into the image (dnsmasq follows links; nothing is copied). Folders of Pis no longer listed go.
    Environment: TFTP_ROOT, IMAGES (the built images), BOOTS (the pointers as the kubelet projects them:
    `<pi>/folder`, `<pi>/image`, `<pi>/cmdline.txt`), ONCE (set: one pass, then exit).
    """
    return r"""#!/bin/sh
# Serve each netbooting Pi the boot files its pi-boot ConfigMap names (plans.netboot.pis.tftp_script). Generated by Iluvatar.
set -eu
# PID 1 of its container: the kernel delivers it no signal it has no handler for, so without this each roll of the
# cache waited the pod's 30 s grace for the kill (review 41-12 L2). A pass cut short is finished by the next one.
trap 'exit 0' TERM
: "${TFTP_ROOT:?}" "${IMAGES:?}" "${BOOTS:?}"
said=""
once() {
  # Say each thing once, not every 2 s.
  case "$said" in *"|$1|"*) return 0 ;; esac
  said="$said|$1|"
  echo "iluvatar: $2" >&2
}
# The pass reads its own copy of one version of the pointers, never the projected volume itself.
boots=$(mktemp -d)
trap 'rm -rf "$boots"' EXIT
snapshot() {
  # The kubelet replaces a ConfigMap volume's files at once: it writes a new version folder, renames ..data_tmp over
  # ..data to point at it, then removes the old folder whole (Kubernetes v1.35.1 pkg/volume/util/atomic_writer.go:
  # 213-233 and 259-261, Write steps 8, 9 and 12). A pass that resolved ..data before a swap finds its folder gone, or
  # going while it reads: read one version whole into a copy, and resolve ..data again when the version went. A
  # folder is never changed in place, so a copy that succeeds is one version. The same version failing twice is no
  # swap: the pass is skipped, and the next one, 2 s later, tries again.
  tried=""
  while :; do
    rm -rf "$boots" && mkdir "$boots"
    from=$BOOTS
    if [ -L "$BOOTS/..data" ]; then from="$BOOTS/$(readlink "$BOOTS/..data" || echo ..unreadable)"; fi
    if cp -R "$from/." "$boots/" 2>/dev/null; then return 0; fi
    [ "$from" != "$tried" ] || return 1
    tried=$from
  done
}
pass() {
  if ! snapshot; then
    once "unreadable $BOOTS" "the boot pointers under $BOOTS cannot be read; every Pi's TFTP folder is left as it is"
    return 0
  fi
  listed=" "
  for pi in "$boots"/*; do
    [ -f "$pi/folder" ] && [ -f "$pi/image" ] && [ -f "$pi/cmdline.txt" ] || continue
    name=$(basename "$pi") folder=$(cat "$pi/folder") image=$(cat "$pi/image")
    mac=${folder%%/*} serial=${folder#*/}
    listed="$listed$mac "
    if [ ! -f "$IMAGES/$image/.complete" ]; then
      once "missing $name $image" "the Pi image $image is not built on this Pi yet: $name gets no boot files here until it is"
      continue
    fi
    stamp="$image $(cksum < "$pi/cmdline.txt" | cut -d' ' -f1)"
    dir="$TFTP_ROOT/$mac"
    [ "$(cat "$dir/$serial/.iluvatar" 2>/dev/null || true)" != "$stamp" ] || continue
    mkdir -p "$dir"
    new=$(mktemp -d "$dir/.$serial.XXXXXX")
    for f in "$IMAGES/$image"/boot/* "$IMAGES/$image"/boot/.[!.]*; do
      [ -e "$f" ] || continue
      ln -s "$f" "$new/$(basename "$f")"
    done
    # The Pi's own cmdline.txt over the image's.
    rm -f "$new/cmdline.txt"
    cp "$pi/cmdline.txt" "$new/cmdline.txt"
    echo "$stamp" > "$new/.iluvatar"
    chmod 755 "$new"
    # A folder of an earlier layout cannot be renamed over: it goes first.
    if [ -d "$dir/$serial" ] && [ ! -L "$dir/$serial" ]; then rm -rf "${dir:?}/$serial"; fi
    ln -sfn "$(basename "$new")" "$dir/.$serial.link"
    mv -T "$dir/.$serial.link" "$dir/$serial"
    # Only this Pi's serial under its MAC, and only this version of it.
    for old in "$dir"/* "$dir"/.[!.]*; do
      case "$(basename "$old")" in "$serial"|"$(basename "$new")") ;; *) rm -rf "$old" ;; esac
    done
    echo "iluvatar: $name boots $image" >&2
  done
  # Folders named like a MAC belong to this script (dnsmasq's tftp-unique-root=mac): a Pi no longer listed loses its own.
  for old in "$TFTP_ROOT"/??-??-??-??-??-??; do
    [ -e "$old" ] || continue
    case "$listed" in *" $(basename "$old") "*) ;; *) rm -rf "$old" ;; esac
  done
}
while :; do
  pass
  [ -z "${ONCE:-}" ] || break
  sleep 2 &
  wait $!
done
"""
