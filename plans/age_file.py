"""An age file (age-encryption.org/v1) to one X25519 recipient, in plain Python and deterministic.

The KMS key's backup (plans.kms.key_backup) is encrypted to the backups' age recipient, so the identity that opens
Arda's etcd snapshots (`backupAgeKey`) opens it too. age's own tools make a fresh file key, ephemeral share and
nonce each time; here they come from HMAC-SHA256 of the plaintext under a label, so the same key and recipient give
the same file at every `pulumi up` (no diff, nothing replaced), and nothing but the plaintext's holder can make
them. The format, step by step as age's spec (C2SP age.md) and filippo.io/age v1.3.1 write it:

- header: `age-encryption.org/v1`, one `-> X25519 <share>` stanza whose body is the file key sealed with
  ChaCha20-Poly1305 (zero nonce) under HKDF-SHA256(shared secret, salt share||recipient, "age-encryption.org/v1/X25519"),
  then `--- <mac>`, the HMAC-SHA256 of the header under HKDF(file key, "header");
- payload: a 16-byte nonce, then STREAM chunks of 64 KiB under HKDF(file key, nonce, "payload") (one, the last, here);
- armor: `-----BEGIN AGE ENCRYPTED FILE-----`, standard base64 in lines of 64, `-----END AGE ENCRYPTED FILE-----`.

ChaCha20-Poly1305 is RFC 8439's; X25519 is plans.age's. tests/plans/test_age_file.py opens the files with age itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from plans.age import RECIPIENT_HRP, x25519

_MASK = 0xFFFFFFFF
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
CHUNK = 64 * 1024


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _MASK) | (v >> (32 - c))


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 7)


def _block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3: one ChaCha20 block."""
    start = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
    s = list(start)
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12)
        _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14)
        _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15)
        _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13)
        _quarter(s, 3, 4, 9, 14)
    return struct.pack("<16I", *((x + y) & _MASK for x, y in zip(s, start, strict=True)))


def _chacha20(key: bytes, counter: int, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(data), 64):
        stream = _block(key, counter + i // 64, nonce)
        out += bytes(a ^ b for a, b in zip(data[i : i + 64], stream, strict=False))
    return bytes(out)


def _poly1305(key: bytes, message: bytes) -> bytes:
    """RFC 8439 section 2.5."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(message), 16):
        acc = (acc + int.from_bytes(message[i : i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _pad16(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 16)


def seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """RFC 8439 section 2.8: ChaCha20-Poly1305 with no associated data (age uses none)."""
    one_time = _block(key, 0, nonce)[:32]
    ciphertext = _chacha20(key, 1, nonce, plaintext)
    return ciphertext + _poly1305(one_time, _pad16(ciphertext) + struct.pack("<QQ", 0, len(ciphertext)))


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-SHA256 (one block: age asks for 32 bytes at most)."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _from_bech32(text: str) -> bytes:
    hrp, _, data = text.lower().rpartition("1")
    if hrp != RECIPIENT_HRP:
        raise ValueError(f"{text!r} is not an age X25519 recipient")
    acc, bits, out = 0, 0, bytearray()
    for char in data[:-6]:
        acc, bits = (acc << 5) | _CHARSET.index(char), bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def encrypt(plaintext: bytes, recipient: str, label: str) -> str:
    """`plaintext` encrypted to the age `recipient` (`age1...`), armored; the same inputs give the same file."""
    if len(plaintext) > CHUNK:
        raise ValueError("one chunk only: the KMS key is 32 bytes")

    def derive(purpose: str, length: int) -> bytes:
        return hmac.new(plaintext, f"{label}\0{recipient}\0{purpose}".encode(), hashlib.sha256).digest()[:length]

    their = _from_bech32(recipient)
    ephemeral = derive("ephemeral", 32)
    share = x25519(ephemeral)
    shared = x25519(ephemeral, int.from_bytes(their, "little"))
    file_key = derive("file key", 16)
    wrap = hkdf(shared, share + their, b"age-encryption.org/v1/X25519")
    header = f"age-encryption.org/v1\n-> X25519 {_b64(share)}\n{_b64(seal(wrap, bytes(12), file_key))}\n---"
    mac = hmac.new(hkdf(file_key, b"", b"header"), header.encode(), hashlib.sha256).digest()
    nonce = derive("nonce", 16)
    payload = seal(hkdf(file_key, nonce, b"payload"), bytes(11) + b"\x01", plaintext)
    binary = f"{header} {_b64(mac)}\n".encode() + nonce + payload
    text = base64.b64encode(binary).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join(["-----BEGIN AGE ENCRYPTED FILE-----", *lines, "-----END AGE ENCRYPTED FILE-----"]) + "\n"
