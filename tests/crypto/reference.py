"""Bit-by-bit reference GHASH, straight from NIST SP 800-38D algorithms 1 and 2."""

_R = 0xE1 << 120


def gf_mult(x, y):
    """``x * y`` in GF(2^128) with blocks as big-endian integers (SP 800-38D algorithm 1)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def ghash(h, blocks):
    """GHASH of 16-byte ``blocks`` under the 16-byte subkey ``h``; returns 16 bytes."""
    hi, y = int.from_bytes(h, "big"), 0
    for block in blocks:
        y = gf_mult(y ^ int.from_bytes(block, "big"), hi)
    return y.to_bytes(16, "big")


def le(block):
    """A 16-byte block as the integer an Amaranth 128-bit signal holds (byte 0 in bits 0..7)."""
    return int.from_bytes(block, "little")
