"""AES-256-GCM sealing in plain Python: the KMS's canary (plans.kms.canary) is sealed under the KMS key as the server
seals a passphrase (plans/kmsserver/main.go Seal: crypto/aes and crypto/cipher.NewGCM, a 12-byte nonce, a 16-byte
tag), so the key's restore drill can prove that the key it decrypted from the backup unseals what the live key sealed.

AES is FIPS 197 (the S-box computed from its definition, section 5.1.1; the key schedule of section 5.2 for 256-bit
keys); GCM is NIST SP 800-38D (GHASH in GF(2^128) with the reflected bit order of section 6.3, the 96-bit-nonce J0 of
section 7.1). Only encryption is needed: GCM opens with the cipher's forward direction too. Slow and fine for one
block a run; tests/plans/test_aes_gcm.py checks it against SP 800-38D's test vectors and Go's own GCM, the server.
"""

from __future__ import annotations


def _mul(a: int, b: int) -> int:
    """Multiplication in AES's GF(2^8) (FIPS 197 section 4.2)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return out


def _sbox() -> list[int]:
    """FIPS 197 section 5.1.1: the multiplicative inverse, then the affine transformation.

    The inverse from the powers of 3, which generates GF(2^8)'s 255 non-zero elements: 3^i's inverse is 3^(255-i).
    Searching each element's inverse among all 255 took 39 ms of every process that imports the program."""
    power, log = [0] * 255, [0] * 256
    p = 1
    for i in range(255):
        power[i], log[p] = p, i
        p = _mul(p, 3)
    box = []
    for x in range(256):
        inv = power[(255 - log[x]) % 255] if x else 0
        s = inv
        for shift in range(1, 5):
            s ^= ((inv << shift) | (inv >> (8 - shift))) & 0xFF
        box.append(s ^ 0x63)
    return box


SBOX = _sbox()


def _expand(key: bytes) -> list[list[int]]:
    """FIPS 197 section 5.2 for Nk = 8: fifteen round keys of four words (as bytes)."""
    if len(key) != 32:
        raise ValueError("AES-256 takes a 32-byte key")
    words = [list(key[i : i + 4]) for i in range(0, 32, 4)]
    rcon = 1
    for i in range(8, 60):
        temp = list(words[i - 1])
        if i % 8 == 0:
            temp = [SBOX[b] for b in temp[1:] + temp[:1]]
            temp[0] ^= rcon
            rcon = _mul(rcon, 2)
        elif i % 8 == 4:
            temp = [SBOX[b] for b in temp]
        words.append([a ^ b for a, b in zip(words[i - 8], temp, strict=True)])
    return [[b for word in words[r * 4 : r * 4 + 4] for b in word] for r in range(15)]


def _encrypt_block(rounds: list[list[int]], block: bytes) -> bytes:
    """FIPS 197 section 5.1 (Cipher), the state kept column by column as the input's byte order."""
    s = [b ^ k for b, k in zip(block, rounds[0], strict=True)]
    for r in range(1, 15):
        s = [SBOX[b] for b in s]
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows: row i % 4 moves left by its index
        if r != 14:
            mixed = []
            for c in range(4):
                a = s[4 * c : 4 * c + 4]
                mixed += [
                    _mul(a[0], 2) ^ _mul(a[1], 3) ^ a[2] ^ a[3],
                    a[0] ^ _mul(a[1], 2) ^ _mul(a[2], 3) ^ a[3],
                    a[0] ^ a[1] ^ _mul(a[2], 2) ^ _mul(a[3], 3),
                    _mul(a[0], 3) ^ a[1] ^ a[2] ^ _mul(a[3], 2),
                ]
            s = mixed
        s = [b ^ k for b, k in zip(s, rounds[r], strict=True)]
    return bytes(s)


_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    """SP 800-38D section 6.3, Algorithm 1: blocks as integers, the block's first bit the most significant."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = _gf_mul(y ^ int.from_bytes(data[i : i + 16].ljust(16, b"\0"), "big"), h)
    return y


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 16)


def seal(key: bytes, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """The ciphertext and its 16-byte tag, as Go's `aead.Seal(nil, nonce, plaintext, associated)` returns them."""
    if len(nonce) != 12:
        raise ValueError("a 96-bit nonce, as Go's NewGCM takes")
    rounds = _expand(key)
    h = int.from_bytes(_encrypt_block(rounds, bytes(16)), "big")
    j0 = nonce + b"\0\0\0\1"
    out = bytearray()
    for i in range(0, len(plaintext), 16):
        counter = nonce + (2 + i // 16).to_bytes(4, "big")
        stream = _encrypt_block(rounds, counter)
        out += bytes(a ^ b for a, b in zip(plaintext[i : i + 16], stream, strict=False))
    lengths = (len(associated) * 8).to_bytes(8, "big") + (len(out) * 8).to_bytes(8, "big")
    s = _ghash(h, _pad(associated) + _pad(bytes(out)) + lengths)
    tag = (s ^ int.from_bytes(_encrypt_block(rounds, j0), "big")).to_bytes(16, "big")
    return bytes(out) + tag
