"""A small sorted list of comparable keys: a list of sorted blocks.

The Latch Database keeps hundreds of thousands of keys in order so that "which latches lie inside this
box of traffic selectors" costs a binary search plus the answer, not a scan. A single Python list
would make each insertion a memmove of the whole list; blocks of at most ``_LOAD * 2`` keys keep an
insertion or removal at O(sqrt n) small moves with O(log n) searches. (``sortedcontainers`` does the
same, but it is not a runtime dependency of this project.)
"""

from bisect import bisect_left, insort


__all__ = ["SortedList"]


_LOAD = 512


class SortedList:
    """Keys in ascending order; duplicates are not expected (callers append a unique tiebreak)."""

    __slots__ = ("_blocks", "_maxes", "_len")

    def __init__(self, keys=()):
        keys = sorted(keys)
        self._blocks = [keys[i:i + _LOAD] for i in range(0, len(keys), _LOAD)]
        self._maxes = [b[-1] for b in self._blocks]
        self._len = len(keys)

    def __len__(self):
        return self._len

    def add(self, key):
        if not self._blocks:
            self._blocks.append([key])
            self._maxes.append(key)
        else:
            i = bisect_left(self._maxes, key)
            if i == len(self._maxes):
                i -= 1
                self._blocks[i].append(key)
                self._maxes[i] = key
            else:
                insort(self._blocks[i], key)
            if len(self._blocks[i]) > 2 * _LOAD:
                block = self._blocks[i]
                self._blocks[i:i + 1] = [block[:_LOAD], block[_LOAD:]]
                self._maxes[i:i + 1] = [block[_LOAD - 1], block[-1]]
        self._len += 1

    def remove(self, key):
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            raise KeyError(key)
        block = self._blocks[i]
        j = bisect_left(block, key)
        if j == len(block) or block[j] != key:
            raise KeyError(key)
        del block[j]
        self._len -= 1
        if not block:
            del self._blocks[i]
            del self._maxes[i]
        elif j == len(block):
            self._maxes[i] = block[-1]

    def __contains__(self, key):
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        block = self._blocks[i]
        j = bisect_left(block, key)
        return j < len(block) and block[j] == key

    def irange(self, lo):
        """Keys ``>= lo`` in ascending order (the caller stops when it has passed its range)."""
        i = bisect_left(self._maxes, lo)
        if i == len(self._maxes):
            return
        blocks = self._blocks
        block = blocks[i]
        for key in block[bisect_left(block, lo):]:
            yield key
        for k in range(i + 1, len(blocks)):
            yield from blocks[k]

    def __iter__(self):
        for block in self._blocks:
            yield from block
