"""AES constants, derived from their definitions in FIPS-197 rather than typed in.

Plain Python (no Amaranth) so tests and the host side can use it too.
"""

__all__ = ["SBOX", "RCON", "gf256_mul"]


def gf256_mul(a, b):
    """Multiply two bytes in GF(2^8) modulo the AES polynomial x^8 + x^4 + x^3 + x + 1."""
    result = 0
    for _ in range(8):
        if b & 1:
            result ^= a
        b >>= 1
        a = ((a << 1) ^ 0x11b) if a & 0x80 else (a << 1)
    return result


def _sbox():
    inverse = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if gf256_mul(a, b) == 1:
                inverse[a] = b
                break
    table = []
    for a in range(256):
        b = inverse[a]
        s = b
        for shift in range(1, 5):  # the affine map of FIPS-197 section 5.1.1
            s ^= ((b << shift) | (b >> (8 - shift))) & 0xff
        table.append(s ^ 0x63)
    return tuple(table)


#: The forward S-box (FIPS-197 figure 7).
SBOX = _sbox()


def _rcon():
    values, r = [0], 1
    for _ in range(14):
        values.append(r)
        r = gf256_mul(r, 2)
    return tuple(values)


#: Round constants, indexed from 1 as in FIPS-197 (``RCON[1] == 0x01``); ``RCON[0]`` is unused.
RCON = _rcon()
