"""Stabbing index over address ranges: "which stored ranges contain this address?".

A range is split into the few CIDR blocks that tile it exactly (at most ``2 * bits`` of them); each
block is a dictionary key ``(family, prefix length, network)``. A query masks the address once per
prefix length in use and looks each up, so its cost depends on how many distinct prefix lengths are
stored (at most 33 for IPv4, 129 for IPv6), not on how many ranges are. Used for the SPD and PAD
(ranges of selectors and claimable addresses) and for child SAs whose traffic selectors are wider
than one address.
"""

from collections import Counter

from .selectors import FAMILY_SHIFT


__all__ = ["PrefixIndex", "cidr_blocks"]


def cidr_blocks(lo, hi):
    """The CIDR blocks tiling the encoded range ``[lo, hi]``: ``[(family, plen, network), ...]``."""
    family = lo >> FAMILY_SHIFT
    bits = 32 if family == 4 else 128
    mask = (1 << FAMILY_SHIFT) - 1
    a, b = lo & mask, hi & mask
    blocks = []
    while a <= b:
        # The largest aligned block starting at a that does not pass b.
        size = (a & -a).bit_length() - 1 if a else bits
        while size > 0 and a + (1 << size) - 1 > b:
            size -= 1
        blocks.append((family, bits - size, a))
        a += 1 << size
    return blocks


class PrefixIndex:
    __slots__ = ("_buckets", "_lengths", "_blocks_of")

    def __init__(self):
        self._buckets = {}           # (family, plen, network) -> {item: None}
        self._lengths = {4: Counter(), 6: Counter()}
        self._blocks_of = {}         # item -> its blocks

    def __len__(self):
        return len(self._blocks_of)

    def add(self, item, lo, hi):
        if item in self._blocks_of:
            raise KeyError(f"{item!r} is already indexed")
        blocks = cidr_blocks(lo, hi)
        for key in blocks:
            self._buckets.setdefault(key, {})[item] = None
            self._lengths[key[0]][key[1]] += 1
        self._blocks_of[item] = blocks

    def remove(self, item):
        for key in self._blocks_of.pop(item):
            bucket = self._buckets[key]
            del bucket[item]
            if not bucket:
                del self._buckets[key]
            counter = self._lengths[key[0]]
            counter[key[1]] -= 1
            if not counter[key[1]]:
                del counter[key[1]]

    def stab(self, addr):
        """Items whose range contains the encoded address ``addr`` (each once; blocks are disjoint)."""
        family = addr >> FAMILY_SHIFT
        bits = 32 if family == 4 else 128
        raw = addr & ((1 << FAMILY_SHIFT) - 1)
        buckets = self._buckets
        for plen in self._lengths[family]:
            shift = bits - plen
            bucket = buckets.get((family, plen, (raw >> shift) << shift))
            if bucket:
                yield from bucket
