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
    ("k3s", "backup", "refused"),
    [
        ("v1.30.0+k3s1", None, False),  # the Ainur's floor itself (ValidatingAdmissionPolicy v1)
        ("v1.29.15+k3s1", None, True),
        ("v1.29.15+k3s1", NFS, True),  # with no feature of its own: the floor holds for every stack
        ("v1.30.3+k3s1", S3, False),  # S3 snapshots' floor itself
        ("v1.30.2+k3s2", S3, True),
        ("v1.30.2+k3s2", NFS, False),  # snapshots stay on the Pis: no secret to read
    ],
)
def test_each_floor_at_its_edge(k3s: str, backup: Backup | None, refused: bool) -> None:
    assert bool(versions.check(_ainur(k3s), backup)) is refused


def test_below_both_floors_one_problem_names_the_higher() -> None:
    [problem] = versions.check(_ainur("v1.29.15+k3s1"), S3)
    assert "write v1.30.3+k3s1 (the S3 target's etcd snapshots need it) or later" in str(problem)


def test_no_ainur_no_floor() -> None:
    assert versions.check(None, S3) == []
