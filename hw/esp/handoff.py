"""What both ESP directions do once a packet has its verdict: the tag, the per-verdict counters,
and the last three states of the direction's FSM.

``WRITE_BACK``
    One write of the SA's counters (the verdict's one more) and, for an ``ok`` packet only, of its
    sequence number and replay window. A packet that found no SA writes nothing.
``OUT``
    The packet leaves the buffer, ``out_len`` bytes from ``out_start``, in 16-byte beats, each
    with the tag in ``user``; a beat's buffer read is held while the receiver stalls.
``TAG``
    One tag beat per input packet, handed up or not, then back to ``IDLE``.

Inbound and outbound differ only in what they write back and where their packet lies in the
buffer, so both build these states here and cannot drift apart.
"""

from amaranth.hdl import Cat, Mux, Signal

from .. import contract
from ..contract import Verdict
from .layouts import BEAT_BYTES, TagLayout


__all__ = ["lanes", "packet_tag", "verdict_counters", "handoff_states"]


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


def handoff_states(m, esp, *, buf, sa, sa_found, verdict, seq, window, handed_up, tag,
                   out_start, out_len, count_now, length_width):
    """The ``WRITE_BACK``, ``OUT`` and ``TAG`` states of ``esp``'s FSM (call inside it).

    ``seq`` and ``window`` are what an ``ok`` packet leaves in the SA (the new window top and
    bitmap inbound; the sequence number used outbound, with the window unchanged). ``handed_up``
    says whether the packet goes out before its tag.
    """
    out_k = Signal(length_width - 4)
    out_valid = Signal()
    out_lastbeat = Signal()
    out_keep = Signal(BEAT_BYTES)

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
            m.d.sync += [out_k.eq(0), out_valid.eq(0)]
            with m.If(handed_up):
                m.next = "OUT"
            with m.Else():
                m.next = "TAG"

    with m.State("OUT"):
        n_beats = (out_len + BEAT_BYTES - 1) >> 4
        m.d.comb += esp.o.valid.eq(out_valid)
        advance = ~out_valid | esp.o.ready
        with m.If(advance):
            with m.If(out_k < n_beats):
                m.d.comb += [buf.r_addr.eq(out_start + (out_k << 4)), buf.r_en.eq(1)]
                left = out_len - (out_k << 4)
                m.d.sync += [out_valid.eq(1), out_k.eq(out_k + 1),
                             out_lastbeat.eq(left <= BEAT_BYTES),
                             out_keep.eq(lanes(Mux(left >= BEAT_BYTES, BEAT_BYTES, left)))]
            with m.Else():
                m.d.sync += out_valid.eq(0)
                # Either the last beat was just taken, or there was none to send.
                with m.If(out_valid | (n_beats == 0)):
                    m.next = "TAG"
        m.d.comb += [
            esp.o.payload.data.eq(buf.r_data & Cat(*(out_keep[k].replicate(8)
                                                     for k in range(BEAT_BYTES)))),
            esp.o.payload.keep.eq(out_keep),
            esp.o.payload.last.eq(out_lastbeat),
            esp.o.payload.user.eq(tag),
        ]

    with m.State("TAG"):
        m.d.comb += [esp.tag.valid.eq(1), esp.tag.payload.tag.eq(tag),
                     esp.tag.payload.handed_up.eq(handed_up)]
        with m.If(esp.tag.ready):
            m.next = "IDLE"
