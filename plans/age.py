"""age X25519 keys from 32 random bytes: the identity (`AGE-SECRET-KEY-1...`) and its recipient (`age1...`).

The etcd snapshots of Arda are encrypted by talos-backup to the recipient; the identity, which
decrypts them, is a protected Pulumi secret generated as 32 random bytes (components.data). age's
format (age-encryption.org/v1): the identity is the X25519 scalar, the recipient its public key
(RFC 7748's X25519 of the base point), each Bech32-encoded (BIP 173) with the HRPs below. Both
steps are here in plain Python, so the program needs no native dependency; a test opens a
snapshot encrypted to the recipient with the identity, through a real age implementation (pyrage).
"""

from __future__ import annotations

IDENTITY_HRP = "age-secret-key-"
RECIPIENT_HRP = "age"
_P = 2**255 - 19
_A24 = 121665
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _clamp(scalar: bytes) -> int:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(bytes(k), "little")


def x25519(scalar: bytes, u: int = 9) -> bytes:
    """RFC 7748 section 5: X25519(k, u) by the Montgomery ladder (u = 9: the public key)."""
    k = _clamp(scalar)
    x1, x2, z2, x3, z3, swap = u, 1, 0, u, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3, z3 = (da + cb) ** 2 % _P, x1 * (da - cb) ** 2 % _P
        x2, z2 = aa * bb % _P, e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generator[i] if (top >> i) & 1 else 0
    return checksum


def _bits(data: bytes) -> list[int]:
    acc, bits, out = 0, 0, []
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def bech32(hrp: str, data: bytes) -> str:
    """BIP 173 Bech32 of `data` under `hrp` (lower case)."""
    words = _bits(data)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod([*expanded, *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in [*words, *checksum])


def identity(scalar: bytes) -> str:
    """The age identity (secret key) of 32 random bytes, as age-keygen prints it."""
    if len(scalar) != 32:
        raise ValueError(f"an age X25519 identity is 32 bytes, not {len(scalar)}")
    return bech32(IDENTITY_HRP, scalar).upper()


def recipient(scalar: bytes) -> str:
    """The age recipient (public key) of the identity made from the same 32 bytes."""
    if len(scalar) != 32:
        raise ValueError(f"an age X25519 identity is 32 bytes, not {len(scalar)}")
    return bech32(RECIPIENT_HRP, x25519(scalar))
