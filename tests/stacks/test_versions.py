"""stacks.versions: each feature's k3s floor, at its edge (the fixtures hold the releases below it)."""

from __future__ import annotations

import pytest

from stacks import versions
from stacks.data_model import Backup
from stacks.model import Ainur

S3 = Backup.model_validate({"target": "s3://s3.example.org/homelab"})
NFS = Backup.model_validate({"target": "nfs://192.168.0.40/volume1/backups"})


def _ainur(k3s: str) -> Ainur:
    return Ainur.model_validate(
        {"vip": "192.168.0.10", "serviceIp": "192.168.0.14", "k3sVersion": k3s, "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3Nz you@laptop"]}
    )


@pytest.mark.parametrize(
    ("k3s", "identity", "backup", "refused"),
    [
        ("v1.30.0+k3s1", True, None, False),  # sign-in's floor itself
        ("v1.29.15+k3s1", True, None, True),
        ("v1.29.15+k3s1", False, NFS, False),  # neither feature
        ("v1.30.3+k3s1", False, S3, False),  # S3 snapshots' floor itself
        ("v1.30.2+k3s2", False, S3, True),
        ("v1.30.2+k3s2", False, NFS, False),  # snapshots stay on the Pis: no secret to read
    ],
)
def test_each_floor_at_its_edge(k3s: str, identity: bool, backup: Backup | None, refused: bool) -> None:
    assert bool(versions.check(_ainur(k3s), identity, backup)) is refused


def test_no_ainur_no_floor() -> None:
    assert versions.check(None, True, S3) == []
