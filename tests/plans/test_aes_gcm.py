"""plans.aes_gcm against FIPS 197's and the GCM specification's test vectors (the real server's Go GCM opening its
seals is in tests/plans/test_kms_server.py)."""

from __future__ import annotations

import pytest

from plans import aes_gcm


def test_aes_256_encrypts_fips_197_s_example_block() -> None:
    # FIPS 197 appendix C.3 (AES-256).
    rounds = aes_gcm._expand(bytes(range(32)))
    assert aes_gcm._encrypt_block(rounds, bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == "8ea2b7ca516745bfeafc49904b496089"


@pytest.mark.parametrize(
    ("key", "nonce", "plain", "associated", "sealed"),
    [
        # The GCM specification's (McGrew and Viega, the vectors SP 800-38D's validation uses) test cases 13, 14 and 16.
        ("00" * 32, "00" * 12, "", "", "530f8afbc74536b9a963b4f1c4cb738b"),
        ("00" * 32, "00" * 12, "00" * 16, "", "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ],
)
def test_seal_gives_the_specifications_ciphertext_and_tag(key: str, nonce: str, plain: str, associated: str, sealed: str) -> None:
    assert aes_gcm.seal(bytes.fromhex(key), bytes.fromhex(nonce), bytes.fromhex(plain), bytes.fromhex(associated)).hex() == sealed
