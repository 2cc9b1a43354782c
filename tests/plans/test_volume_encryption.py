"""Volume encryption (plans.volume_encryption, stacks.encryption): the documents, the key per board, and what follows
from it (Rook's OSDs, the Secure Boot installer, the key recorded for the next preview). Talos's own verdict on these
documents: tests/test_talos_check.py."""

from __future__ import annotations

import dataclasses

import pytest

from plans import bringup, rollout, storage, talos, volume_encryption
from stacks import StackConfig, boards, encryption, load_stack_file
from stacks.model import Encryption
from tests.edit import HOMELAB, RK1

KMS = {"provider": "luks2", "keys": [{"slot": 0, "kms": {"endpoint": "https://192.168.0.14:4050"}}]}
TPM = {"provider": "luks2", "keys": [{"slot": 0, "tpm": {"checkSecurebootStatusOnEnroll": True}}]}


def _with(stack: StackConfig, **settings: object) -> StackConfig:
    return stack.model_copy(update={"arda": stack.arda.model_copy(update={"encryption": Encryption(**settings)})})


@pytest.fixture
def tpm_board(monkeypatch: pytest.MonkeyPatch) -> None:
    """generic-x86 as a board whose every machine has a TPM 2.0 with Secure Boot (no known board is)."""
    monkeypatch.setitem(boards.BOARDS, "generic-x86", dataclasses.replace(boards.BOARDS["generic-x86"], tpm=True))


def test_no_known_board_has_a_tpm_talos_can_seal_to_and_each_says_why() -> None:
    assert {name: b.tpm for name, b in boards.BOARDS.items()} == dict.fromkeys(boards.BOARDS, False)
    assert all(b.tpm_source for b in boards.BOARDS.values())


def test_the_homelab_seals_ephemeral_and_local_volumes_by_the_ainurs_kms_and_trusts_the_local_ca() -> None:
    stack = load_stack_file(HOMELAB)
    node = next(n for n in stack.arda_nodes if n.name == "gandalf")
    docs = talos.node_documents(stack, node, "img", ca_certificate="CA")
    volumes = [d for d in docs if d.get("kind") in ("VolumeConfig", "UserVolumeConfig", "TrustedRootsConfig")]
    assert volumes == [
        {
            "apiVersion": "v1alpha1",
            "kind": "UserVolumeConfig",
            "name": "local-path-provisioner",
            "provisioning": {"diskSelector": {"match": "system_disk"}, "minSize": "1GiB", "maxSize": "25%", "grow": False},
            "filesystem": {"type": "xfs"},
            "encryption": KMS,
        },
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "EPHEMERAL", "provisioning": {"maxSize": "75%"}, "encryption": KMS},
        {"apiVersion": "v1alpha1", "kind": "TrustedRootsConfig", "name": "iluvatar-kms", "certificates": "CA"},
    ]
    assert talos.installer_image("generic-x86", "v1.14.1").startswith("factory.talos.dev/metal-installer/")
    assert not talos.secureboot(stack, "generic-x86")


def test_without_local_volumes_ephemeral_still_gets_its_own_encrypted_volume_config() -> None:
    stack = load_stack_file(HOMELAB)
    stack = stack.model_copy(update={"gitops": None})  # no GitOps: no storage, no local volumes (plans.local_volumes)
    node = next(n for n in stack.arda_nodes if n.name == "gandalf")
    docs = [d for d in talos.node_documents(stack, node, "img", ca_certificate="CA") if d.get("kind") == "VolumeConfig"]
    assert docs == [{"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "EPHEMERAL", "encryption": KMS}]


def test_encryption_off_writes_no_encryption_anywhere() -> None:
    stack = _with(load_stack_file(HOMELAB), enabled=False)
    for node in stack.arda_nodes:
        docs = talos.node_documents(stack, node, "img")
        assert not any("encryption" in d or d.get("kind") == "TrustedRootsConfig" for d in docs), node.name
    assert "config" not in storage.ceph_cluster_values(stack)["cephClusterSpec"]["storage"]
    assert "encryption" not in rollout.node_state(stack, "img", "p", "gandalf")
    assert not encryption.uses_kms(stack)


@pytest.mark.usefixtures("tpm_board")
def test_a_tpm_board_seals_state_too_and_installs_the_secure_boot_installer() -> None:
    stack = load_stack_file(HOMELAB)
    node = next(n for n in stack.arda_nodes if n.name == "gandalf")
    docs = talos.node_documents(stack, node, "img", ca_certificate="CA")
    assert [(d["kind"], d["name"], d["encryption"]) for d in docs if "encryption" in d] == [
        ("UserVolumeConfig", "local-path-provisioner", TPM),
        ("VolumeConfig", "EPHEMERAL", TPM),
        ("VolumeConfig", "STATE", TPM),
    ]
    assert not any(d.get("kind") == "TrustedRootsConfig" for d in docs)
    assert talos.secureboot(stack, "generic-x86")
    assert talos.installer_image("generic-x86", "v1.14.1", (), secureboot=True) == (
        f"factory.talos.dev/metal-installer-secureboot/{talos.schematic_id('generic-x86')}:v1.14.1"
    )
    # A roll across Talos minors installs the same signed installer (plans.bringup.talos_roll).
    assert "metal-installer-secureboot/" in " ".join(bringup.talos_roll(stack, node, "v1.14.1").args)
    # And `keys` can still choose the KMS for it.
    assert volume_encryption.spec(_with(stack, enabled=True, keys={"generic-x86": "kms"}), "generic-x86") == KMS
    assert rollout.node_state(stack, "img", "p", "gandalf")["encryption"] == "tpm"


def test_the_generic_worker_is_sealed_as_its_board() -> None:
    stack = load_stack_file(HOMELAB)
    docs = talos.generic_worker_documents(stack, "generic-x86", "/dev/sda", "img", ca_certificate="CA")
    assert docs[-2:] == [
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "EPHEMERAL", "encryption": KMS},
        {"apiVersion": "v1alpha1", "kind": "TrustedRootsConfig", "name": "iluvatar-kms", "certificates": "CA"},
    ]


def test_ceph_osds_are_dm_crypt_encrypted_and_the_key_is_recorded_for_the_next_preview() -> None:
    stack = load_stack_file(HOMELAB)
    assert storage.ceph_cluster_values(stack)["cephClusterSpec"]["storage"]["config"] == {"encryptedDevice": "true"}
    assert rollout.node_state(stack, "img", "p", "taniquetil")["encryption"] == "kms"
    assert encryption.uses_kms(stack)


def test_rk1_without_the_ainur_stays_in_clear() -> None:
    stack = load_stack_file(RK1)
    assert not stack.arda.encryption.enabled
    assert all(volume_encryption.spec(stack, n.board) is None for n in stack.arda_nodes)
