"""The packet buffer: one whole packet, read and written 16 bytes at any byte address.

Words of 16 bytes alternate between two banks (even words in one, odd in the other), so the two
words an unaligned 16-byte access touches are always in different banks and one access takes one
clock: a read gives its data the clock after ``r_en`` (and holds it while ``r_en`` is low), a write
with a byte mask happens at the clock edge. Byte ``k`` of a 16-byte value is ``[8k:8k+8]``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import BEAT_BYTES


__all__ = ["PacketBuffer"]


class PacketBuffer(wiring.Component):
    """Buffer of ``size`` bytes (a multiple of 32 is used), byte addresses of ``addr_width`` bits."""

    def __init__(self, size):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            self._MustUse__silence = True  # a refused part is not an unused one
            raise ValueError(f"Buffer size must be a positive integer, not {size!r}")
        # One spare word, so a 16-byte read at the last byte still has a second word.
        words = -(-size // BEAT_BYTES) + 1
        self.rows = -(-words // 2)
        self.size = size
        self.addr_width = (2 * self.rows * BEAT_BYTES - 1).bit_length()
        super().__init__({
            "r_addr": In(self.addr_width),
            "r_en": In(1),
            "r_data": Out(8 * BEAT_BYTES),
            "w_addr": In(self.addr_width),
            "w_data": In(8 * BEAT_BYTES),
            "w_mask": In(BEAT_BYTES),
            "w_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        banks = [Memory(shape=8 * BEAT_BYTES, depth=self.rows, init=[]) for _ in range(2)]
        m.submodules.bank0, m.submodules.bank1 = banks
        reads = [bank.read_port() for bank in banks]
        writes = [bank.write_port(granularity=8) for bank in banks]

        # Read: words w and w+1 (w = addr // 16); word w is in bank w % 2 at row w // 2.
        word = self.r_addr[4:]
        odd = word[0]
        row = word[1:]
        m.d.comb += [
            reads[0].addr.eq(Mux(odd, row + 1, row)), reads[1].addr.eq(row),
            reads[0].en.eq(self.r_en), reads[1].en.eq(self.r_en),
        ]
        r_odd = Signal()
        r_shift = Signal(4)
        with m.If(self.r_en):
            m.d.sync += [r_odd.eq(odd), r_shift.eq(self.r_addr[:4])]
        pair = Mux(r_odd, Cat(reads[1].data, reads[0].data), Cat(reads[0].data, reads[1].data))
        m.d.comb += self.r_data.eq((pair >> (r_shift * 8))[:8 * BEAT_BYTES])

        # Write: the value shifted to its byte offset, split over words w and w+1.
        w_word = self.w_addr[4:]
        w_odd = w_word[0]
        w_row = w_word[1:]
        shift = self.w_addr[:4]
        wide = Signal(16 * BEAT_BYTES)
        wide_mask = Signal(2 * BEAT_BYTES)
        m.d.comb += [wide.eq(self.w_data << (shift * 8)), wide_mask.eq(self.w_mask << shift)]
        lo, hi = wide[:8 * BEAT_BYTES], wide[8 * BEAT_BYTES:]
        lo_mask, hi_mask = wide_mask[:BEAT_BYTES], wide_mask[BEAT_BYTES:]
        m.d.comb += [
            writes[0].addr.eq(Mux(w_odd, w_row + 1, w_row)), writes[1].addr.eq(w_row),
            writes[0].data.eq(Mux(w_odd, hi, lo)), writes[1].data.eq(Mux(w_odd, lo, hi)),
            writes[0].en.eq(Mux(self.w_en, Mux(w_odd, hi_mask, lo_mask), 0)),
            writes[1].en.eq(Mux(self.w_en, Mux(w_odd, lo_mask, hi_mask), 0)),
        ]
        return m
