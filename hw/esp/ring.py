"""Packet buffers in rotation, so that a direction receives one packet, processes the one before
and sends the one before that, all at once.

A datapath is store and forward (nothing unauthenticated may leave), so with one buffer it
receives, processes and sends each packet in turn and its throughput is the sum of the three. The
ring holds ``depth`` :class:`~.buffer.PacketBuffer` s and three stages move through them in
order:

* the **receiver** (here) writes the packets of ``i`` into the next free buffer, 16 bytes a beat
  at byte ``base``, and offers the length and what it saw on ``received``;
* the **processor** (the direction's FSM) takes ``received`` and then owns that buffer through
  ``proc`` (read and write, as a :class:`~.buffer.PacketBuffer`), until ``proc_done``;
* the **sender** (:func:`~.handoff.packet_sender`) then owns it through ``send`` (read only) until
  ``send_done``, and the buffer is free again.

Each buffer belongs to one stage at a time, so every memory port has one driver in any clock and
packets leave in the order they came. The receiver stalls ``i`` only when every buffer is taken.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import contract
from .buffer import PacketBuffer
from .handoff import lanes
from .layouts import BEAT_BYTES, TagLayout


__all__ = ["RING_DEPTH", "RxInfoLayout", "buffer_port", "PacketRing"]

#: Buffers per direction: one for each stage.
RING_DEPTH = 3

#: What the receiver saw of a packet: its length (bytes kept, at most ``max_packet``), whether it
#: was longer than that, whether a beat before the last was short, and the first beat's
#: ``sa_index`` (outbound; 0 when the beats have none). ``plen`` holds a length up to
#: :data:`~ipchan.hw.contract.IP_MAX_PACKET` bytes.
RxInfoLayout = data.StructLayout({"plen": (contract.IP_MAX_PACKET + 1).bit_length(),
                                  "too_long": 1, "rx_bad": 1,
                                  "user": TagLayout["sa_index"].shape})


def buffer_port(addr_width, *, writes):
    """A :class:`~.buffer.PacketBuffer`'s port as its user sees it (``r_data`` comes in)."""
    members = {"r_addr": Out(addr_width), "r_en": Out(1), "r_data": In(8 * BEAT_BYTES)}
    if writes:
        members.update({"w_addr": Out(addr_width), "w_data": Out(8 * BEAT_BYTES),
                        "w_mask": Out(BEAT_BYTES), "w_en": Out(1)})
    return wiring.Signature(members)


class PacketRing(wiring.Component):
    """``depth`` buffers of ``size`` bytes; packets of at most ``max_packet`` bytes are stored from
    byte ``base`` (longer ones are cut there and flagged ``too_long``). ``beat`` is the layout of
    ``i``'s payload (``data``, ``keep``, ``last``, and optionally ``sa_index``)."""

    def __init__(self, size, *, base, max_packet, beat, depth=RING_DEPTH):
        for name, value, low in (("Buffer size", size, 1), ("Base", base, 0),
                                 ("Maximum packet", max_packet, 1), ("Depth", depth, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                self._MustUse__silence = True  # a refused part is not an unused one
                raise ValueError(f"{name} must be an integer of at least {low}, not {value!r}")
        if base + max_packet > size:
            self._MustUse__silence = True
            raise ValueError(f"Base {base} plus maximum packet {max_packet} must fit the buffer "
                             f"of {size} bytes")
        self.size, self.base, self.max_packet, self.depth = size, base, max_packet, depth
        self._beat = beat
        probe = PacketBuffer(size)
        probe._MustUse__silence = True    # only for its address width
        self.addr_width = probe.addr_width
        super().__init__({
            "i": In(stream.Signature(beat)),
            "received": Out(stream.Signature(RxInfoLayout)),
            "proc": In(buffer_port(self.addr_width, writes=True)),
            "proc_done": In(1),
            "send": In(buffer_port(self.addr_width, writes=False)),
            "send_done": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        D = self.depth
        bufs = [PacketBuffer(self.size) for _ in range(D)]
        for k, b in enumerate(bufs):
            m.submodules[f"buf{k}"] = b

        rx_idx = Signal(range(D))
        proc_idx = Signal(range(D))
        send_idx = Signal(range(D))
        pending = Signal(range(D + 1))    # received, not yet taken by the processor
        proc_busy = Signal()
        send_busy = Signal()
        info = Array(Signal(RxInfoLayout, name=f"info{k}") for k in range(D))

        def following(idx):
            return Mux(idx == D - 1, 0, idx + 1)

        # --- Receiver ---------------------------------------------------------------------------
        plen = Signal(RxInfoLayout["plen"].shape)
        too_long = Signal()
        rx_bad = Signal()
        first = Signal(init=1)
        user = Signal(RxInfoLayout["user"].shape)
        beat = self.i.payload
        n = Signal(range(BEAT_BYTES + 1))
        # Bytes in this beat: the run of ones from byte 0 of keep.
        m.d.comb += n.eq(BEAT_BYTES)
        for k in reversed(range(BEAT_BYTES)):
            with m.If(~beat.keep[k]):
                m.d.comb += n.eq(k)
        room = (pending + proc_busy + send_busy) < D
        m.d.comb += self.i.ready.eq(room)
        take = self.i.valid & room
        fits = plen + n <= self.max_packet
        keep = fits & ~too_long
        rx_w_en = Signal()
        m.d.comb += rx_w_en.eq(take & keep)
        beat_user = beat.sa_index if "sa_index" in self._beat.members else 0
        rx_done = Signal()
        with m.If(take):
            m.d.sync += [plen.eq(Mux(keep, plen + n, plen)), first.eq(0)]
            with m.If(first):
                m.d.sync += user.eq(beat_user)
            with m.If(~fits):
                m.d.sync += too_long.eq(1)
            with m.If(~beat.last & (n != BEAT_BYTES)):
                m.d.sync += rx_bad.eq(1)
            with m.If(beat.last):
                m.d.comb += rx_done.eq(1)
                m.d.sync += [
                    info[rx_idx].plen.eq(Mux(keep, plen + n, plen)),
                    info[rx_idx].too_long.eq(too_long | ~fits),
                    info[rx_idx].rx_bad.eq(rx_bad),
                    info[rx_idx].user.eq(Mux(first, beat_user, user)),
                    rx_idx.eq(following(rx_idx)),
                    plen.eq(0), too_long.eq(0), rx_bad.eq(0), first.eq(1),
                ]

        # --- Processor and sender ---------------------------------------------------------------
        m.d.comb += [self.received.valid.eq((pending != 0) & ~proc_busy),
                     self.received.payload.eq(info[proc_idx])]
        proc_take = self.received.valid & self.received.ready
        m.d.sync += pending.eq(pending + rx_done - proc_take)
        with m.If(proc_take):
            m.d.sync += proc_busy.eq(1)
        # The processor hands its buffer on only to an idle sender (packet_sender waits for it).
        with m.If(self.proc_done):
            m.d.sync += [proc_busy.eq(0), send_busy.eq(1), proc_idx.eq(following(proc_idx))]
        with m.If(self.send_done):
            m.d.sync += [send_busy.eq(0), send_idx.eq(following(send_idx))]

        # --- The buffers' ports: each driven by the stage that owns the buffer ------------------
        for k, b in enumerate(bufs):
            from_rx = rx_w_en & (rx_idx == k)
            proc_owns = proc_busy & (proc_idx == k)
            send_owns = send_busy & (send_idx == k)
            m.d.comb += [
                b.w_addr.eq(Mux(from_rx, self.base + plen, self.proc.w_addr)),
                b.w_data.eq(Mux(from_rx, beat.data, self.proc.w_data)),
                b.w_mask.eq(Mux(from_rx, lanes(n), self.proc.w_mask)),
                b.w_en.eq(from_rx | (proc_owns & self.proc.w_en)),
                b.r_addr.eq(Mux(send_owns, self.send.r_addr, self.proc.r_addr)),
                b.r_en.eq(Mux(send_owns, self.send.r_en, proc_owns & self.proc.r_en)),
            ]
        m.d.comb += [
            self.proc.r_data.eq(Array(b.r_data for b in bufs)[proc_idx]),
            self.send.r_data.eq(Array(b.r_data for b in bufs)[send_idx]),
        ]
        return m
