"""plans.age_file: files age itself opens (the age v1.3.1 command the restore drill uses, and pyrage), deterministic."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyrage

from plans import age, age_file
from tools import gotools


def test_rfc_8439_chacha20_poly1305_vector() -> None:
    """RFC 8439 section 2.8.2's key, nonce and plaintext: its ciphertext, which the associated data does not change (age
    uses none, so its tag is not the vector's; age and pyrage opening the files below check the tag)."""
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
    sealed = age_file.seal(key, nonce, plaintext)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert len(sealed) == len(plaintext) + 16


def test_age_opens_the_file_with_the_identity(tmp_path: Path) -> None:
    scalar = os.urandom(32)
    secret = os.urandom(32)
    armored = age_file.encrypt(secret, age.recipient(scalar), "iluvatar kms key")
    assert armored.startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    (tmp_path / "key.txt").write_text(age.identity(scalar) + "\n")
    (tmp_path / "kms-key.age").write_text(armored)
    command = [str(gotools.build("age")), "--decrypt", "-i", str(tmp_path / "key.txt"), str(tmp_path / "kms-key.age")]
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == secret
    ident = pyrage.x25519.Identity.from_str(age.identity(scalar))
    assert pyrage.decrypt(armored.encode(), [ident]) == secret


def test_the_same_inputs_give_the_same_file_and_another_identity_cannot_open_it(tmp_path: Path) -> None:
    scalar, other, secret = os.urandom(32), os.urandom(32), os.urandom(32)
    first = age_file.encrypt(secret, age.recipient(scalar), "label")
    assert age_file.encrypt(secret, age.recipient(scalar), "label") == first
    assert age_file.encrypt(secret, age.recipient(other), "label") != first
    (tmp_path / "key.txt").write_text(age.identity(other) + "\n")
    (tmp_path / "f.age").write_text(first)
    done = subprocess.run(
        [str(gotools.build("age")), "--decrypt", "-i", str(tmp_path / "key.txt"), str(tmp_path / "f.age")], capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert b"no identity matched any of the recipients" in done.stderr
