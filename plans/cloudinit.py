"""Cloud-init for the Ainur: one user-data and one network-config document per Pi, for flashing.

Neither holds a secret (the k3s token arrives later over SSH), so they can be written to disk
and shown in a stack output. The user-data prepares the OS: hostname, SSH keys, the packages
k3s, Longhorn and NFS need, the NVMe data disk as XFS for Longhorn, and k3s at the pinned
version, installed but not started. The network-config gives the Pi its inventory address,
so the Pis never depend on DHCP: after a power cut they come back before any DHCP server does,
and the DHCP server is theirs.
"""

from __future__ import annotations

from typing import Any

import yaml

from plans import k3s, nfs_guard
from stacks.model import Node, StackConfig
from stacks.storage import longhorn_pis

LONGHORN_MOUNT = "/var/lib/longhorn"
PACKAGES = ("open-iscsi", "nfs-common", "xfsprogs", "cryptsetup", "curl", "jq", "zstd")
# A netbooted Pi's kernel packages (Ubuntu's raspi flavour and flash-kernel, which copies a kernel to the card it has not).
NETBOOT_HELD = ("linux-raspi", "linux-image-raspi", "linux-headers-raspi", "linux-modules-extra-raspi", "flash-kernel")


def _k3s_install(stack: StackConfig, node: Node) -> str:
    # Installed, not started: the join starts it once its config (with the token) is there.
    return f"curl -sfL {k3s.INSTALLER} | {k3s.install_env(stack, node, 'INSTALL_K3S_SKIP_START=true', 'INSTALL_K3S_SKIP_ENABLE=true')} sh -"


def user_data_document(stack: StackConfig, node: Node) -> dict[str, Any]:
    assert stack.ainur is not None
    ainur = stack.ainur
    doc: dict[str, Any] = {
        "hostname": node.name,
        "fqdn": f"{node.name}.{stack.network.domain}",
        "manage_etc_hosts": True,
        "ssh_pwauth": False,
        "disable_root": True,
        "users": [
            {
                "name": ainur.ssh_user,
                "groups": ["adm", "sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": list(ainur.ssh_authorized_keys),
            }
        ],
        "package_update": True,
        "packages": list(PACKAGES),
        "write_files": [],
        "runcmd": [
            ["systemctl", "enable", "--now", "iscsid"],
            ["sh", "-c", _k3s_install(stack, node)],
        ],
    }
    # Only a Longhorn Pi's disk (stacks.storage.longhorn_pis): a netbooted maia's dataDisks are no Longhorn disk.
    if longhorn_pis([node]):
        disk = node.data_disks[0]
        doc["disk_setup"] = {disk: {"table_type": "gpt", "layout": True, "overwrite": False}}
        # overwrite: false everywhere: a re-run (a reflash, an upgrade) never reformats a disk that has data.
        doc["fs_setup"] = [{"label": "longhorn", "filesystem": "xfs", "device": disk, "partition": "auto", "overwrite": False}]
        doc["mounts"] = [["LABEL=longhorn", LONGHORN_MOUNT, "xfs", "defaults,nofail,discard", "0", "2"]]
    if node.role == "valar":
        doc["write_files"].append(
            {
                "path": f"{k3s.STATIC_POD_DIR}/kube-vip.yaml",
                "permissions": "0600",
                "content": yaml.safe_dump(k3s.kube_vip_manifest(stack), sort_keys=False),
            }
        )
    if node.boot == "netboot":
        # Its SSH host keys outlive an image: the NFS server copies them into its root of a new image
        # (plans.netboot.nfs.KEPT_ON_NEW_IMAGE) and its steps pin the ed25519 one (components.ainur).
        # A new root is a new instance to cloud-init, whose ssh module deletes every host key first unless told not
        # to, then makes only the missing ones (cloud-init 25.1.4 cloudinit/config/cc_ssh.py:32, 100-106, 177-180).
        doc["ssh_deletekeys"] = False
        # Its kernel and initramfs come from the Ainur's TFTP, not from this root: an upgraded kernel package here
        # would leave the booted kernel without its modules. A new image (ainur.piImage) brings a new kernel.
        doc["runcmd"].insert(0, ["apt-mark", "hold", *NETBOOT_HELD])
        # Its pods never reach the NFS server of its root (plans.netboot.pis.nfs_guard_rules), from before k3s's install.
        doc["write_files"].append({"path": nfs_guard.UNIT, "permissions": "0644", "content": nfs_guard.unit(stack)})
        doc["runcmd"].insert(1, ["systemctl", "enable", "--now", nfs_guard.UNIT.rsplit("/", 1)[1]])
    if not doc["write_files"]:
        del doc["write_files"]
    return doc


def network_config_document(stack: StackConfig, node: Node) -> dict[str, Any]:
    """netplan v2: the NIC with the node's MAC gets its static address, the router and network.dns.

    The Pis resolve through network.dns, never through the Ainur's own DNS, which only runs once
    k3s is up on them.
    """
    net = stack.network
    return {
        "network": {
            "version": 2,
            "ethernets": {
                "lan": {
                    "match": {"macaddress": node.mac},
                    "dhcp4": False,
                    "dhcp6": False,
                    "addresses": [f"{node.ip}/{net.lan.prefixlen}"],
                    "routes": [{"to": "default", "via": str(net.gateway)}],
                    "nameservers": {"addresses": [str(d) for d in net.dns], "search": [net.domain]},
                    # A netbooted Pi's root is NFS over this link: networkd keeps the address the initramfs set
                    # when it (re)starts (netplan's critical: KeepConfiguration), never dropping the root's link.
                    **({"critical": True} if node.boot == "netboot" else {}),
                }
            },
        }
    }


def network_config(stack: StackConfig, node: Node) -> str:
    return yaml.safe_dump(network_config_document(stack, node), sort_keys=False, width=4096)


def user_data(stack: StackConfig, node: Node) -> str:
    return "#cloud-config\n" + yaml.safe_dump(user_data_document(stack, node), sort_keys=False, width=4096)
