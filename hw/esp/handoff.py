"""What both ESP directions do once a packet has its verdict: the tag, the per-verdict counters,
the write-back, and the sender that hands the packet and its tag out.

In the direction's FSM (:func:`handoff_states`):

``WRITE_BACK``
    One write of the SA's counters (the verdict's one more) and, for an ``ok`` packet only, of its
    sequence number and replay window. A packet that found no SA writes nothing.
``HANDOFF``
    The tag, where the packet lies in its buffer and whether it is handed up go to the sender as
    soon as it is free, and the buffer with them (:class:`~.ring.PacketRing`'s ``proc_done``);
    the FSM is then free for the next packet.

The sender (:func:`packet_sender`, beside the FSM) sends the packet, ``length`` bytes from
``start``, in 16-byte beats each with the tag in ``user`` (a beat's buffer read held while the
receiver stalls), then one tag beat per input packet, handed up or not, and frees the buffer
(``send_done``). So one packet leaves while the next is processed.

Inbound and outbound differ only in what they write back and where their packet lies in the
buffer, so both build these states here and cannot drift apart.
"""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import data

from .. import contract
from ..contract import Verdict
from .layouts import BEAT_BYTES, TagLayout


__all__ = ["lanes", "packet_tag", "verdict_counters", "SendSlotLayout", "packet_sender",
           "handoff_states"]


def lanes(count):
    """Byte mask of the first ``count`` lanes (``count`` 0 .. 16)."""
    return Cat(*((k < count) for k in range(BEAT_BYTES)))


def packet_tag(m, *, verdict, sa_found, sa, version, seq):
    """The packet's tag (:data:`~.layouts.TagLayout`). The SA is named only when the packet found
    one and was well formed: ``no_sa`` and ``malformed`` packets name none."""
    named = Signal()
    m.d.comb += named.eq(sa_found & (verdict != Verdict.NO_SA) & (verdict != Verdict.MALFORMED))
    tag = Signal(TagLayout)
    m.d.comb += [
        tag.verdict.eq(verdict),
        tag.sa_valid.eq(named),
        tag.sa_index.eq(Mux(named, sa.index, 0)),
        tag.sa_generation.eq(Mux(named, sa.generation, 0)),
        tag.version.eq(version),
        tag.seq.eq(Mux(named, seq, 0)),
    ]
    return tag


def verdict_counters(m, counters, verdicts, verdict):
    """Counts ``verdict`` in ``counters`` (one per entry of ``verdicts``) in each cycle where the
    returned signal is high."""
    count_now = Signal()
    with m.If(count_now):
        for k, v in enumerate(verdicts):
            with m.If(verdict == v):
                m.d.sync += counters[k].eq(counters[k] + 1)
    return count_now


def SendSlotLayout(length_width):
    """What the processor hands the sender with a buffer."""
    return data.StructLayout({"valid": 1, "handed_up": 1, "start": length_width,
                              "length": length_width, "tag": TagLayout})


def packet_sender(m, esp, *, port, done, length_width):
    """The sender of ``esp`` (its ``o`` and ``tag`` streams) reading its buffer through ``port``
    and pulsing ``done`` when the buffer is free. Returns its slot (:func:`SendSlotLayout`), which
    :func:`handoff_states` fills."""
    slot = Signal(SendSlotLayout(length_width))
    out_k = Signal(length_width - 4)
    out_valid = Signal()
    out_lastbeat = Signal()
    out_keep = Signal(BEAT_BYTES)

    with m.FSM(name="sender"):
        with m.State("IDLE"):
            with m.If(slot.valid):
                m.d.sync += [out_k.eq(0), out_valid.eq(0)]
                with m.If(slot.handed_up):
                    m.next = "OUT"
                with m.Else():
                    m.next = "TAG"

        with m.State("OUT"):
            n_beats = (slot.length + BEAT_BYTES - 1) >> 4
            m.d.comb += esp.o.valid.eq(out_valid)
            advance = ~out_valid | esp.o.ready
            with m.If(advance):
                with m.If(out_k < n_beats):
                    m.d.comb += [port.r_addr.eq(slot.start + (out_k << 4)), port.r_en.eq(1)]
                    left = slot.length - (out_k << 4)
                    m.d.sync += [out_valid.eq(1), out_k.eq(out_k + 1),
                                 out_lastbeat.eq(left <= BEAT_BYTES),
                                 out_keep.eq(lanes(Mux(left >= BEAT_BYTES, BEAT_BYTES, left)))]
                with m.Else():
                    m.d.sync += out_valid.eq(0)
                    # Either the last beat was just taken, or there was none to send.
                    with m.If(out_valid | (n_beats == 0)):
                        m.next = "TAG"
            m.d.comb += [
                esp.o.payload.data.eq(port.r_data & Cat(*(out_keep[k].replicate(8)
                                                          for k in range(BEAT_BYTES)))),
                esp.o.payload.keep.eq(out_keep),
                esp.o.payload.last.eq(out_lastbeat),
                esp.o.payload.user.eq(slot.tag),
            ]

        with m.State("TAG"):
            m.d.comb += [esp.tag.valid.eq(1), esp.tag.payload.tag.eq(slot.tag),
                         esp.tag.payload.handed_up.eq(slot.handed_up)]
            with m.If(esp.tag.ready):
                m.d.comb += done.eq(1)
                m.d.sync += slot.valid.eq(0)
                m.next = "IDLE"
    return slot


def handoff_states(m, esp, *, sa, sa_found, verdict, seq, window, handed_up, tag, out_start,
                   out_len, count_now, slot, proc_done):
    """The ``WRITE_BACK`` and ``HANDOFF`` states of ``esp``'s FSM (call inside it); ``HANDOFF``
    goes on to ``IDLE``.

    ``seq`` and ``window`` are what an ``ok`` packet leaves in the SA (the new window top and
    bitmap inbound; the sequence number used outbound, with the window unchanged). ``handed_up``
    says whether the packet goes out before its tag. ``slot`` is :func:`packet_sender`'s.
    """
    with m.State("WRITE_BACK"):
        m.d.comb += esp.dp_hold.eq(sa_found)
        wb = esp.sa_write.payload
        m.d.comb += [
            wb.index.eq(sa.index),
            wb.state.eq(verdict == Verdict.OK),
            wb.entry.eq(sa.entry),
            wb.entry.seq.eq(seq),
            wb.window.eq(window),
            wb.counters.eq(sa.counters),
        ]
        for v in contract.SA_VERDICT_COUNTERS:
            with m.If(verdict == v):
                field = getattr(sa.counters, v.name.lower())
                m.d.comb += getattr(wb.counters, v.name.lower()).eq(field + 1)
        m.d.comb += esp.sa_write.valid.eq(sa_found)
        with m.If(~sa_found | esp.sa_write.ready):
            m.d.comb += count_now.eq(1)
            m.next = "HANDOFF"

    with m.State("HANDOFF"):
        # After the write-back, so a sender stalled by its receiver never holds the SA (dp_hold
        # would keep a commit's zeroizing scan, and with it the host, waiting).
        with m.If(~slot.valid):
            m.d.sync += [slot.valid.eq(1), slot.handed_up.eq(handed_up), slot.start.eq(out_start),
                         slot.length.eq(out_len), slot.tag.eq(tag)]
            m.d.comb += proc_done.eq(1)
            m.next = "IDLE"
