"""Two datapaths sharing the SA table's slot port (``sa_read``/``sa_data``, ``sa_write``).

A read is granted to one client from its request until its answer is taken, the other waiting
(inbound first when both ask in the same clock); write-backs are single beats, inbound first.
Each datapath drives its own bit of the table's ``dp_hold`` directly.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import contract
from ..sa_table import SaReadLayout, SaWriteLayout


__all__ = ["SlotPortArbiter"]


def _client(p):
    return wiring.Signature({
        "sa_read": In(stream.Signature(p.index_width)),
        "sa_data": Out(stream.Signature(SaReadLayout(p))),
        "sa_write": In(stream.Signature(SaWriteLayout(p))),
    })


class SlotPortArbiter(wiring.Component):
    def __init__(self, params=contract.EngineParams()):
        if not isinstance(params, contract.EngineParams):
            self._MustUse__silence = True  # a refused part is not an unused one
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        p = params
        super().__init__({
            "a": Out(_client(p)),
            "b": Out(_client(p)),
            "sa_read": Out(stream.Signature(p.index_width)),
            "sa_data": In(stream.Signature(SaReadLayout(p))),
            "sa_write": Out(stream.Signature(SaWriteLayout(p))),
        })

    def elaborate(self, platform):
        m = Module()
        a, b = self.a, self.b
        owner = Signal()          # 0: a, 1: b
        busy = Signal()

        # Reads.
        with m.If(~busy):
            with m.If(a.sa_read.valid):
                m.d.comb += [self.sa_read.valid.eq(1), self.sa_read.payload.eq(a.sa_read.payload),
                             a.sa_read.ready.eq(self.sa_read.ready)]
                with m.If(self.sa_read.ready):
                    m.d.sync += [busy.eq(1), owner.eq(0)]
            with m.Elif(b.sa_read.valid):
                m.d.comb += [self.sa_read.valid.eq(1), self.sa_read.payload.eq(b.sa_read.payload),
                             b.sa_read.ready.eq(self.sa_read.ready)]
                with m.If(self.sa_read.ready):
                    m.d.sync += [busy.eq(1), owner.eq(1)]
        m.d.comb += [a.sa_data.payload.eq(self.sa_data.payload),
                     b.sa_data.payload.eq(self.sa_data.payload)]
        with m.If(busy):
            with m.If(owner):
                m.d.comb += [b.sa_data.valid.eq(self.sa_data.valid),
                             self.sa_data.ready.eq(b.sa_data.ready)]
            with m.Else():
                m.d.comb += [a.sa_data.valid.eq(self.sa_data.valid),
                             self.sa_data.ready.eq(a.sa_data.ready)]
            with m.If(self.sa_data.valid & self.sa_data.ready):
                m.d.sync += busy.eq(0)

        # Write-backs.
        with m.If(a.sa_write.valid):
            m.d.comb += [self.sa_write.valid.eq(1), self.sa_write.payload.eq(a.sa_write.payload),
                         a.sa_write.ready.eq(self.sa_write.ready)]
        with m.Elif(b.sa_write.valid):
            m.d.comb += [self.sa_write.valid.eq(1), self.sa_write.payload.eq(b.sa_write.payload),
                         b.sa_write.ready.eq(self.sa_write.ready)]
        return m
