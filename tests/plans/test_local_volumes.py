"""Local volumes' Talos documents and kubelet mount (plans.local_volumes), pinned whole.

Talos itself accepts or refuses these documents in tests/test_talos_check.py; here the values that
decide what the disk looks like are pinned: the user volume's share, that it does not grow into
the rest, and that EPHEMERAL (Talos's own name for /var, case-sensitive) is capped at the rest.
"""

from __future__ import annotations

from pathlib import Path

from plans import local_volumes
from stacks import StackConfig, load_stack_file
from tests.edit import HOMELAB, edit, homelab_doc, write_stack

MOUNT = {"destination": "/var/mnt", "type": "bind", "source": "/var/mnt", "options": ["bind", "rshared", "rw"]}


def _stack(tmp_path: Path, local: dict[str, object]) -> StackConfig:
    return load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:storage.arda.local": local})))


def test_the_user_volume_takes_its_share_and_ephemeral_the_rest(tmp_path: Path) -> None:
    assert local_volumes.talos_documents(_stack(tmp_path, {"size": "30%"})) == [
        {
            "apiVersion": "v1alpha1",
            "kind": "UserVolumeConfig",
            "name": "local-path-provisioner",
            "provisioning": {"diskSelector": {"match": "system_disk"}, "minSize": "1GiB", "maxSize": "30%", "grow": False},
            "filesystem": {"type": "xfs"},
        },
        # Talos names /var's volume EPHEMERAL; uncapped it would take the whole disk at first boot.
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "EPHEMERAL", "provisioning": {"maxSize": "70%"}},
    ]


def test_the_homelab_keeps_the_default_quarter() -> None:
    docs = local_volumes.talos_documents(load_stack_file(HOMELAB))
    assert [d["provisioning"]["maxSize"] for d in docs] == ["25%", "75%"]


def test_the_kubelet_sees_var_mnt_shared_and_each_machine_gets_its_own_copy() -> None:
    stack = load_stack_file(HOMELAB)
    mounts = local_volumes.kubelet_mounts(stack)
    assert mounts == [MOUNT]
    # Machine configs are merged and edited per node: editing one must not edit the next one's mount.
    mounts[0]["options"].append("ro")
    assert local_volumes.kubelet_mounts(stack) == [MOUNT]
    assert local_volumes.KUBELET_MOUNT == MOUNT


def test_off_means_no_documents_and_no_mount(tmp_path: Path) -> None:
    stack = _stack(tmp_path, {"enabled": False})
    assert local_volumes.talos_documents(stack) == []
    assert local_volumes.kubelet_mounts(stack) == []
