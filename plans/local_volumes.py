"""Local volumes, Talos's side: the user volume each Arda machine keeps for them, and the kubelet's view of it.

Every Arda machine gets a Talos user volume on its system disk (never on a data disk, whatever its
name: the selector is `system_disk`), mounted at /var/mnt/local-path-provisioner, where
local-path-provisioner puts one folder per claim (plans.storage). Talos creates EPHEMERAL (/var)
at first boot and, uncapped, would give it the whole disk, so it is capped at the rest. The kubelet
gets /var/mnt bound read-write with its mounts shared, as Talos's local-storage guide asks for
hostPath volumes.

Kept apart from plans.storage because plans.talos needs it and plans.storage needs plans.gitops,
which imports plans.cilium, which imports plans.talos.
"""

from __future__ import annotations

import copy
from typing import Any

from stacks.model import StackConfig

# Talos: the user volume local volumes live on (mounted at /var/mnt/<name>), and the mount the
# kubelet needs to see volumes under /var/mnt read-write with their mounts shared (Talos's
# local-storage guide, hostPath mounts).
USER_VOLUME = "local-path-provisioner"
USER_VOLUME_ROOT = "/var/mnt"
USER_VOLUME_PATH = f"{USER_VOLUME_ROOT}/{USER_VOLUME}"
USER_VOLUME_MIN_SIZE = "1GiB"
KUBELET_MOUNT = {"destination": USER_VOLUME_ROOT, "type": "bind", "source": USER_VOLUME_ROOT, "options": ["bind", "rshared", "rw"]}


def enabled(stack: StackConfig) -> bool:
    """Storage runs only with GitOps: every storage chart is an Argo CD platform Application."""
    return stack.gitops is not None


def local_volumes(stack: StackConfig) -> bool:
    return enabled(stack) and stack.storage.arda.local.enabled


def talos_documents(stack: StackConfig, encryption: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Talos documents local volumes add to every Arda machine: the user volume, and EPHEMERAL capped, both
    encrypted with `encryption` when the machine's volumes are (plans.volume_encryption.spec).

    Both live on the system disk (`system_disk`), never on a data disk, whatever its name. Talos
    creates EPHEMERAL (/var) at first boot and, uncapped, would give it the whole disk; capped at
    the rest, it leaves the user volume its share. A separate volume also keeps a full local claim
    from filling /var (etcd, images, logs).
    """
    if not local_volumes(stack):
        return []
    share = int(stack.storage.arda.local.size.removesuffix("%"))
    sealed = {"encryption": copy.deepcopy(encryption)} if encryption is not None else {}
    return [
        {
            "apiVersion": "v1alpha1",
            "kind": "UserVolumeConfig",
            "name": USER_VOLUME,
            "provisioning": {
                "diskSelector": {"match": "system_disk"},
                "minSize": USER_VOLUME_MIN_SIZE,
                "maxSize": f"{share}%",
                "grow": False,
            },
            "filesystem": {"type": "xfs"},
            **sealed,
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {"maxSize": f"{100 - share}%"},
            **copy.deepcopy(sealed),
        },
    ]


def kubelet_mounts(stack: StackConfig) -> list[dict[str, Any]]:
    """`machine.kubelet.extraMounts`: /var/mnt bound into the kubelet read-write, mounts shared (hostPath volumes)."""
    return [copy.deepcopy(KUBELET_MOUNT)] if local_volumes(stack) else []
