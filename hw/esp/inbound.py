"""The inbound ESP datapath: IPv4/IPv6 packets carrying ESP in, authenticated plaintext out.

Store and forward, in the order of ``docs/esp.md`` and
:class:`ipchan.sw.esp.datapath.EspDatapathModel` (the normative text; this module follows it step
for step). The :class:`~.ring.PacketRing` lets three packets be at different steps at once: one
received, one processed (steps 2 to 7, one packet at a time, in order) and one sent.

1. **Receive** the whole packet into a free buffer of the ring (longer than ``max_packet``, or a
   ``keep`` that is not all ones before the last beat: ``malformed``).
2. **Parse** the IP header strictly: IPv4 (version, IHL, total length, header checksum, no
   fragment, protocol 50) or IPv6 (payload length, then up to
   :data:`~ipchan.hw.contract.IPV6_MAX_EXT_HEADERS` Hop-by-Hop/Routing/Destination Options
   headers, no Fragment header, next header 50), and at least 8 bytes of ESP header.
3. **Look up** the SPI through the SA table's constant-time lookup port (``no_sa``), then read the
   slot (key, flags, window top, bitmap, counters). ``dp_hold`` is raised before the lookup and
   kept until the write-back, so a commit's zeroizing scan never takes the SA from under a packet.
4. **Length** check (``malformed``), **ESN inference** and the **anti-replay pre-check**
   (``replay``), against the window in block RAM.
5. **Decrypt and verify** in the :class:`~ipchan.hw.crypto.gcm.GCMCore`: AAD, text and received
   ICV are streamed from the buffer; the plaintext is written back over the ciphertext in the
   buffer, so nothing leaves before the core's ``match`` (``auth_fail``).
6. **Trailer**: pad length, padding bytes 1, 2, 3, ..., next header; tunnel mode checks the
   inner packet's fixed header (version, length, IPv4 checksum) and drops TFC padding
   (``malformed``). Next header 59 is a dummy packet: ``ok`` and not handed up.
7. **Commit**: the window moves (only for ``ok``) and the SA's counters are written back in one
   write; the packet goes out on ``o`` (transport mode: the received header moved in front of the
   plaintext with its protocol field, length and IPv4 checksum rewritten; tunnel mode: the inner
   packet), each beat carrying the tag in ``user``; then the tag goes out on ``tag`` (one beat per
   input packet, dropped or not, in input order).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import contract
from ..contract import Algorithm, Direction, Mode, Verdict
from ..crypto.gcm import PROFILES, GCMCore
from ..sa_table import LookupResultLayout, SaReadLayout, SaWriteLayout
from .handoff import handoff_states, lanes, packet_sender, packet_tag, verdict_counters
from .ring import PacketRing
from .layouts import PacketBeat, TagBeat, TaggedBeat


__all__ = ["InboundEsp", "INBOUND_VERDICTS", "connect_table"]

#: The verdicts an inbound packet can get, in the order of their counters.
INBOUND_VERDICTS = tuple(v for (d, v) in contract.VERDICT_COUNTERS if d == Direction.INBOUND)

_PROTO_ESP = 50
_PROTO_NONE = 59
_PROTO_IPV4 = 4
_PROTO_IPV6 = 41
_SKIPPABLE = (0, 43, 60)      # Hop-by-Hop, Routing, Destination Options
_PROTO_FRAGMENT = 44


def _byte(value, k):
    return value[8 * k:8 * k + 8]


def _be16(value, k):
    """Big-endian 16-bit number from bytes ``k`` and ``k + 1`` of ``value``."""
    return Cat(_byte(value, k + 1), _byte(value, k))


def _be32(value, k):
    return Cat(_byte(value, k + 3), _byte(value, k + 2), _byte(value, k + 1), _byte(value, k))


def _byteswap(value):
    return Cat(*(value[8 * k:8 * k + 8] for k in reversed(range(len(value) // 8))))


_lanes = lanes


def _fold(value):
    """Ones'-complement fold of a sum of 16-bit words (up to 22 bits) to 16 bits."""
    once = value[:16] + value[16:]
    return (once[:16] + once[16:])[:16]


class InboundEsp(wiring.Component):
    """The inbound datapath; see the module docstring.

    Members
    -------
    i : ``In(stream.Signature(PacketBeat))``
        Received IP packets.
    o : ``Out(stream.Signature(TaggedBeat))``
        Packets handed up (only ``ok`` ones), tag in ``user``.
    tag : ``Out(stream.Signature(TagBeat))``
        One beat per input packet, in input order.
    lookup_req, lookup_resp, sa_read, sa_data, sa_write, dp_hold, version
        To :class:`~ipchan.hw.sa_table.SaTable`.
    counters : ``Out(data.ArrayLayout(32, 5))``
        Packets by verdict, in the order of :data:`INBOUND_VERDICTS` (the ``CNT_IN_*`` registers).
    """

    def __init__(self, params=contract.EngineParams(), *, profile="compact"):
        if not isinstance(params, contract.EngineParams):
            self._MustUse__silence = True  # a refused part is not an unused one
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        self._params = p = params
        if profile not in PROFILES:
            self._MustUse__silence = True
            raise ValueError(f"Profile must be 'compact' or 'fast', not {profile!r}")
        self.profile = profile
        super().__init__({
            "i": In(stream.Signature(PacketBeat)),
            "o": Out(stream.Signature(TaggedBeat)),
            "tag": Out(stream.Signature(TagBeat)),
            "lookup_req": Out(stream.Signature(32)),
            "lookup_resp": In(stream.Signature(LookupResultLayout(p))),
            "sa_read": Out(stream.Signature(p.index_width)),
            "sa_data": In(stream.Signature(SaReadLayout(p))),
            "sa_write": Out(stream.Signature(SaWriteLayout(p))),
            "dp_hold": Out(1),
            "version": In(p.version_width),
            "counters": Out(data.ArrayLayout(32, len(INBOUND_VERDICTS))),
        })

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        m.submodules.ring = ring = PacketRing(p.max_packet, base=0, max_packet=p.max_packet,
                                              beat=PacketBeat)
        wiring.connect(m, wiring.flipped(self.i), ring.i)
        buf = ring.proc                           # this packet's buffer, while it is processed
        m.submodules.gcm = gcm = GCMCore(self.profile)
        LW = 17                                   # byte positions and lengths (up to 65536)

        # --- Packet state -----------------------------------------------------------------------
        plen = Signal(LW)                         # bytes received
        too_long = Signal()
        rx_bad = Signal()                         # a short beat before the last
        ver6 = Signal()
        ihl = Signal(7)
        esp_off = Signal(LW)                      # where the ESP header starts
        nh_off = Signal(LW)                       # the byte that says 50
        nh = Signal(8)                            # next header being walked (IPv6)
        ext_count = Signal(range(contract.IPV6_MAX_EXT_HEADERS + 1))
        ttl = Signal(8)
        csum = Signal(22)                         # sum of every header word
        csum_rest = Signal(22)                    # the same without total length, TTL/proto, sum
        cs_base = Signal(LW)
        cs_len = Signal(7)
        cs_k = Signal(3)
        cs_inner = Signal()                       # the checksum loop is checking the inner packet
        spi = Signal(32)
        seq_lo = Signal(32)
        iv = Signal(64)                           # bytes in stream order
        version = Signal(p.version_width)
        verdict = Signal(3)
        sa_found = Signal()                       # SA identified: its counters count the packet
        handed_up = Signal()
        sa = Signal(SaReadLayout(p))
        seq = Signal(64)
        pad_len = Signal(8)
        next_hdr = Signal(8)
        data_len = Signal(LW + 1)                 # signed use: checked for < 0
        pad_k = Signal(5)
        out_start = Signal(LW)
        out_len = Signal(LW)
        mv_w = Signal(LW - 4)

        flags = sa.entry.flags
        window = flags.window
        icv_len = Signal(5)
        m.d.comb += icv_len.eq(Mux(flags.alg == Algorithm.AES_GCM_8, 8,
                                   Mux(flags.alg == Algorithm.AES_GCM_12, 12, 16)))
        gmac = flags.alg == Algorithm.AES_GMAC
        esp_len = Signal(LW)
        body_len = Signal(LW)                     # ciphertext: ESP minus header, IV and ICV
        m.d.comb += [esp_len.eq(plen - esp_off), body_len.eq(esp_len - 16 - icv_len)]
        pt_end = Signal(LW)                       # end of the plaintext (= start of the ICV)
        m.d.comb += pt_end.eq(plen - icv_len)

        # The buffer's read data (reads and writes are enabled only where a state says so).
        rd = buf.r_data

        # --- Counters ---------------------------------------------------------------------------
        count_now = verdict_counters(m, self.counters, INBOUND_VERDICTS, verdict)

        # --- ESN inference and the replay pre-check (RFC 4303 3.4.3, appendix A2.2) -------------
        top = sa.entry.seq
        tl, th = top[:32], top[32:]
        wv = Signal(11)
        m.d.comb += wv.eq(Mux(window == 0, 1, window))
        low_edge = Signal(32)
        m.d.comb += low_edge.eq(tl - wv + 1)
        hi = Signal(33)                           # the high half, with its carry or borrow
        with m.If(tl >= wv - 1):
            m.d.comb += hi.eq(Mux(seq_lo >= low_edge, th, th + 1))
        with m.Else():
            m.d.comb += hi.eq(Mux(seq_lo >= low_edge, th - 1, th))
        inferred = Signal(64)
        out_of_range = Signal()
        m.d.comb += [
            inferred.eq(Mux(flags.esn, Cat(seq_lo, hi[:32]), seq_lo)),
            out_of_range.eq(flags.esn & hi[32]),
        ]
        diff = Signal(64)
        m.d.comb += diff.eq(top - seq)
        in_window = Signal()
        seen = Signal()
        m.d.comb += [
            in_window.eq((diff != 0) & (diff < window)),
            seen.eq(sa.window.bit_select(diff[:len(sa.window).bit_length()], 1)),
        ]
        passes = Signal()
        m.d.comb += passes.eq((window == 0) | (seq > top) | (in_window & ~seen))

        # The window after accepting seq.
        wmask = Signal(p.window_max)
        m.d.comb += wmask.eq(Cat(*((k < window) for k in range(p.window_max))))
        new_top = Signal(64)
        new_bits = Signal(p.window_max)
        shift = Signal(64)
        m.d.comb += shift.eq(seq - top)
        with m.If(window == 0):
            m.d.comb += [new_top.eq(Mux(seq > top, seq, top)), new_bits.eq(0)]
        with m.Elif(seq > top):
            shifted = Signal(p.window_max)
            m.d.comb += shifted.eq((sa.window | 1) << shift[:len(sa.window).bit_length()])
            m.d.comb += [new_top.eq(seq),
                         new_bits.eq(Mux(shift < window, (shifted | 1) & wmask, 1))]
        with m.Else():
            m.d.comb += [new_top.eq(top),
                         new_bits.eq((sa.window | (Const(1, p.window_max) <<
                                                   diff[:len(sa.window).bit_length()])) & wmask)]

        # --- The GCM command and its input ------------------------------------------------------
        aad_prefix = Signal(128)                  # SPI, [seq high], seq low, in stream order
        prefix_len = Signal(5)
        m.d.comb += [
            aad_prefix.eq(Mux(flags.esn,
                              Cat(_byteswap(spi), _byteswap(seq[32:]), _byteswap(seq_lo)),
                              Cat(_byteswap(spi), _byteswap(seq_lo)))),
            prefix_len.eq(Mux(flags.esn, 12, 8)),
        ]
        cmd = gcm.cmd.payload
        m.d.comb += [
            cmd.key.eq(_byteswap(sa.key)),
            cmd.key256.eq(flags.keysize),
            cmd.nonce.eq(Cat(_byteswap(sa.salt), iv)),
            cmd.aad_len.eq(Mux(gmac, prefix_len + 8 + body_len, prefix_len)),
            cmd.text_len.eq(Mux(gmac, 0, body_len)),
            cmd.decrypt.eq(1),
            cmd.tag_bytes.eq(icv_len),
        ]
        # Feed segments: 0 = AAD (prefix, then for GMAC the IV and body from the buffer),
        # 1 = ciphertext (GCM), 2 = the received ICV.
        seg = Signal(2)
        seg_beat = Signal(LW - 4)
        seg_beats = Signal(LW - 3)
        seg_base = Signal(LW)
        m.d.comb += [
            seg_beats.eq(Mux(seg == 0, Mux(gmac, (prefix_len + 8 + body_len + 15) >> 4, 1),
                             Mux(seg == 1, Mux(gmac, 0, (body_len + 15) >> 4), 1))),
            seg_base.eq(Mux(seg == 0, esp_off + 8 - prefix_len,
                            Mux(seg == 1, esp_off + 16, pt_end))),
        ]
        feed_valid = Signal()
        feed_prefix = Signal()
        feed_done = Signal()
        cmd_done = Signal()
        pt_k = Signal(LW - 4)                     # plaintext beats written back
        prefix_mask = Cat(*(_lanes(prefix_len)[k].replicate(8) for k in range(16)))
        m.d.comb += gcm.i.payload.eq(Mux(feed_prefix,
                                         (rd & ~prefix_mask) | (aad_prefix & prefix_mask), rd))

        # --- Tags -------------------------------------------------------------------------------
        tag = packet_tag(m, verdict=verdict, sa_found=sa_found, sa=sa, version=version, seq=seq)
        slot = packet_sender(m, self, port=ring.send, done=ring.send_done, length_width=LW)

        def finish(v):
            m.d.sync += verdict.eq(v)
            m.next = "WRITE_BACK"

        with m.FSM(name="inbound"):
            with m.State("IDLE"):
                # The next packet the ring has received (see ring.py for the other two stages).
                m.d.comb += ring.received.ready.eq(1)
                with m.If(ring.received.valid):
                    got = ring.received.payload
                    m.d.sync += [plen.eq(got.plen), too_long.eq(got.too_long),
                                 rx_bad.eq(got.rx_bad), sa_found.eq(0), handed_up.eq(0),
                                 seq.eq(0)]
                    m.next = "PARSE_A"

            # --- IP header ---
            with m.State("PARSE_A"):
                m.d.comb += [buf.r_addr.eq(0), buf.r_en.eq(1)]
                m.d.sync += version.eq(self.version)
                m.next = "PARSE_D"
            with m.State("PARSE_D"):
                v = rd[4:8]
                m.d.sync += [ver6.eq(v == 6), ihl.eq(Cat(Const(0, 2), rd[0:4])), ttl.eq(_byte(rd, 8)),
                             nh.eq(_byte(rd, 6)), nh_off.eq(6), esp_off.eq(40), ext_count.eq(0)]
                with m.If(too_long | rx_bad | (plen == 0)):
                    finish(Verdict.MALFORMED)
                with m.Elif(v == 4):
                    ihl_b = Cat(Const(0, 2), rd[0:4])
                    frag = _be16(rd, 6)
                    with m.If((plen < 20) | (ihl_b < 20) | (ihl_b > plen) | (_be16(rd, 2) != plen) |
                              (frag[:14] != 0) | (_byte(rd, 9) != _PROTO_ESP) |
                              (plen < ihl_b + 8)):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.d.sync += [esp_off.eq(ihl_b), nh_off.eq(9), cs_base.eq(0),
                                     cs_len.eq(ihl_b), cs_k.eq(0), cs_inner.eq(0),
                                     csum.eq(0), csum_rest.eq(0)]
                        m.next = "CSUM_A"
                with m.Elif(v == 6):
                    with m.If((plen < 40) | (_be16(rd, 4) == 0) | (_be16(rd, 4) != plen - 40)):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "EXT"
                with m.Else():
                    finish(Verdict.MALFORMED)

            # IPv4 header checksum (outer, or a tunnel's inner packet), 16 bytes a clock.
            with m.State("CSUM_A"):
                m.d.comb += [buf.r_addr.eq(cs_base + (cs_k << 4)), buf.r_en.eq(1)]
                m.next = "CSUM_D"
            with m.State("CSUM_D"):
                total = 0
                rest = 0
                for j in range(8):
                    word = Mux((cs_k << 4) + 2 * j < cs_len, _be16(rd, 2 * j), 0)
                    total = total + word
                    if j not in (1, 4, 5):
                        rest = rest + word
                    else:
                        rest = rest + Mux(cs_k == 0, 0, word)
                m.d.sync += [csum.eq(csum + total), csum_rest.eq(csum_rest + rest),
                             cs_k.eq(cs_k + 1)]
                with m.If(((cs_k + 1) << 4) >= cs_len):
                    m.next = "CSUM_CHECK"
                with m.Else():
                    m.next = "CSUM_A"
            with m.State("CSUM_CHECK"):
                with m.If(_fold(csum) != 0xFFFF):
                    finish(Verdict.MALFORMED)
                with m.Elif(cs_inner):
                    m.next = "ACCEPT"
                with m.Else():
                    m.next = "ESP_A"

            # IPv6 extension headers.
            with m.State("EXT"):
                with m.If(nh == _PROTO_FRAGMENT):
                    finish(Verdict.MALFORMED)
                with m.Elif((nh == _SKIPPABLE[0]) | (nh == _SKIPPABLE[1]) | (nh == _SKIPPABLE[2])):
                    with m.If((ext_count == contract.IPV6_MAX_EXT_HEADERS) | (esp_off + 8 > plen)):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "EXT_A"
                with m.Elif((nh != _PROTO_ESP) | (plen < esp_off + 8)):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.next = "ESP_A"
            with m.State("EXT_A"):
                m.d.comb += [buf.r_addr.eq(esp_off), buf.r_en.eq(1)]
                m.next = "EXT_D"
            with m.State("EXT_D"):
                length = Cat(Const(0, 3), _byte(rd, 1) + 1)
                with m.If(esp_off + length > plen):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.d.sync += [nh.eq(_byte(rd, 0)), nh_off.eq(esp_off),
                                 esp_off.eq(esp_off + length), ext_count.eq(ext_count + 1)]
                    m.next = "EXT"

            # --- ESP header, lookup, slot ---
            with m.State("ESP_A"):
                m.d.comb += [buf.r_addr.eq(esp_off), buf.r_en.eq(1)]
                m.next = "ESP_D"
            with m.State("ESP_D"):
                m.d.sync += [spi.eq(_be32(rd, 0)), seq_lo.eq(_be32(rd, 4)), iv.eq(rd[64:128])]
                m.next = "LOOKUP"
            with m.State("LOOKUP"):
                # Hold the table's scan from before the lookup, so the SA found stays ours.
                m.d.comb += [self.dp_hold.eq(1), self.lookup_req.valid.eq(1),
                             self.lookup_req.payload.eq(spi)]
                with m.If(self.lookup_req.ready):
                    m.next = "LOOKUP_WAIT"
            with m.State("LOOKUP_WAIT"):
                m.d.comb += [self.dp_hold.eq(1), self.lookup_resp.ready.eq(1)]
                r = self.lookup_resp.payload
                with m.If(self.lookup_resp.valid):
                    m.d.sync += [version.eq(r.version), sa.index.eq(r.index)]
                    with m.If(r.found):
                        m.next = "SA_READ"
                    with m.Else():
                        finish(Verdict.NO_SA)
            with m.State("SA_READ"):
                m.d.comb += [self.dp_hold.eq(1), self.sa_read.valid.eq(1),
                             self.sa_read.payload.eq(sa.index)]
                with m.If(self.sa_read.ready):
                    m.next = "SA_WAIT"
            with m.State("SA_WAIT"):
                m.d.comb += [self.dp_hold.eq(1), self.sa_data.ready.eq(1)]
                with m.If(self.sa_data.valid):
                    m.d.sync += [sa.eq(self.sa_data.payload), sa.version.eq(version)]
                    with m.If(self.sa_data.payload.entry.flags.dir != Direction.INBOUND):
                        finish(Verdict.NO_SA)
                    with m.Else():
                        m.d.sync += sa_found.eq(1)
                        m.next = "CHECK_LEN"
            with m.State("CHECK_LEN"):
                m.d.comb += self.dp_hold.eq(1)
                m.d.sync += seq.eq(inferred)
                with m.If(esp_len < 16 + 2 + icv_len):
                    finish(Verdict.MALFORMED)
                with m.Elif(out_of_range):
                    finish(Verdict.REPLAY)
                with m.Else():
                    m.next = "CHECK_REPLAY"
            with m.State("CHECK_REPLAY"):
                m.d.comb += self.dp_hold.eq(1)
                with m.If(~passes):
                    finish(Verdict.REPLAY)
                with m.Else():
                    m.d.sync += [seg.eq(0), seg_beat.eq(0), feed_valid.eq(0), feed_done.eq(0),
                                 cmd_done.eq(0), pt_k.eq(0)]
                    m.next = "GCM"

            # --- Decrypt and verify ---
            with m.State("GCM"):
                m.d.comb += self.dp_hold.eq(1)
                m.d.comb += [gcm.cmd.valid.eq(~cmd_done), gcm.i.valid.eq(feed_valid)]
                with m.If(gcm.cmd.ready):
                    m.d.sync += cmd_done.eq(1)
                # Feeder: a 16-byte read per beat, held while the core stalls.
                advance = ~feed_valid | gcm.i.ready
                with m.If(advance):
                    with m.If(feed_done):
                        m.d.sync += feed_valid.eq(0)
                    with m.Elif(seg_beat >= seg_beats):
                        # Empty segment (or finished): on to the next.
                        m.d.sync += [feed_valid.eq(0), seg.eq(seg + 1), seg_beat.eq(0)]
                        with m.If(seg == 2):
                            m.d.sync += feed_done.eq(1)
                    with m.Else():
                        m.d.comb += [buf.r_addr.eq(seg_base + (seg_beat << 4)), buf.r_en.eq(1)]
                        m.d.sync += [feed_valid.eq(1), feed_prefix.eq((seg == 0) & (seg_beat == 0)),
                                     seg_beat.eq(seg_beat + 1)]
                        with m.If((seg == 2) & (seg_beat + 1 == seg_beats)):
                            m.d.sync += [seg.eq(3), feed_done.eq(1)]
                        with m.Elif(seg_beat + 1 == seg_beats):
                            m.d.sync += [seg.eq(seg + 1), seg_beat.eq(0)]
                # Plaintext goes back over the ciphertext; AAD beats are dropped.
                m.d.comb += gcm.o.ready.eq(1)
                with m.If(gcm.o.valid & ~gcm.o.payload.aad):
                    m.d.comb += [buf.w_addr.eq(esp_off + 16 + (pt_k << 4)),
                                 buf.w_data.eq(gcm.o.payload.data),
                                 buf.w_mask.eq(_lanes(gcm.o.payload.bytes)), buf.w_en.eq(1)]
                    m.d.sync += pt_k.eq(pt_k + 1)
                m.d.comb += gcm.r.ready.eq(1)
                with m.If(gcm.r.valid):
                    with m.If(gcm.r.payload.match):
                        m.next = "TRAILER_A"
                    with m.Else():
                        finish(Verdict.AUTH_FAIL)

            # --- Trailer ---
            with m.State("TRAILER_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(pt_end - 16), buf.r_en.eq(1)]
                m.next = "TRAILER_D"
            with m.State("TRAILER_D"):
                m.d.comb += self.dp_hold.eq(1)
                m.d.sync += [pad_len.eq(_byte(rd, 14)), next_hdr.eq(_byte(rd, 15)),
                             data_len.eq(body_len - 2 - _byte(rd, 14)), pad_k.eq(0)]
                m.next = "PAD_CHECK"
            with m.State("PAD_CHECK"):
                m.d.comb += self.dp_hold.eq(1)
                with m.If(data_len[-1]):               # pad length beyond the plaintext
                    finish(Verdict.MALFORMED)
                with m.Elif(pad_k << 4 >= pad_len):
                    m.next = "NEXT_HEADER"
                with m.Else():
                    m.next = "PAD_A"
            with m.State("PAD_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(pt_end - 2 - ((pad_k + 1) << 4)),
                             buf.r_en.eq(1)]
                m.next = "PAD_D"
            with m.State("PAD_D"):
                m.d.comb += self.dp_hold.eq(1)
                # Lane j holds plaintext byte (pt_end - 2 - 16 (k + 1) + j); padding byte number
                # q (from 1) sits at pt_end - 2 - pad_len + q - 1.
                bad = 0
                for j in range(16):
                    back = (pad_k << 4) + 16 - j          # distance back from the pad-length byte
                    expect = pad_len - back + 1
                    bad = bad | ((back <= pad_len) & (_byte(rd, j) != expect[:8]))
                with m.If(bad):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.d.sync += pad_k.eq(pad_k + 1)
                    m.next = "PAD_CHECK"
            with m.State("NEXT_HEADER"):
                m.d.comb += self.dp_hold.eq(1)
                with m.If(next_hdr == _PROTO_NONE):
                    m.next = "ACCEPT_DUMMY"
                with m.Elif(flags.mode == Mode.TUNNEL):
                    with m.If((next_hdr != _PROTO_IPV4) & (next_hdr != _PROTO_IPV6)):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "INNER_A"
                with m.Else():
                    m.d.sync += [out_start.eq(16), out_len.eq(esp_off + data_len),
                                 mv_w.eq((esp_off - 1) >> 4)]
                    m.next = "MOVE_A"

            # Tunnel: the inner packet's fixed header.
            with m.State("INNER_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(esp_off + 16), buf.r_en.eq(1)]
                m.next = "INNER_D"
            with m.State("INNER_D"):
                m.d.comb += self.dp_hold.eq(1)
                want6 = next_hdr == _PROTO_IPV6
                v = rd[4:8]
                inner_len = Mux(want6, 40 + _be16(rd, 4), _be16(rd, 2))
                inner_ihl = Cat(Const(0, 2), rd[0:4])
                m.d.sync += [out_start.eq(esp_off + 16), out_len.eq(inner_len)]
                with m.If((data_len == 0) | (v != Mux(want6, 6, 4)) |
                          (data_len < Mux(want6, 6, 4)) | (inner_len > data_len)):
                    finish(Verdict.MALFORMED)
                with m.Elif(want6):
                    with m.If(_be16(rd, 4) == 0):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "ACCEPT"
                with m.Elif((inner_len < 20) | (inner_ihl < 20) | (inner_ihl > inner_len)):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.d.sync += [cs_base.eq(esp_off + 16), cs_len.eq(inner_ihl), cs_k.eq(0),
                                 cs_inner.eq(1), csum.eq(0), csum_rest.eq(0)]
                    m.next = "CSUM_A"

            # Transport: the received header moves up against the plaintext (word by word, last
            # first), with its protocol byte, length and IPv4 checksum rewritten on the way.
            with m.State("MOVE_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(mv_w << 4), buf.r_en.eq(1)]
                m.next = "MOVE_D"
            with m.State("MOVE_D"):
                m.d.comb += self.dp_hold.eq(1)
                total_len = Signal(16)
                ck = Signal(16)
                m.d.comb += [
                    total_len.eq(Mux(ver6, esp_off - 40 + data_len, esp_off + data_len)),
                    ck.eq(~_fold(csum_rest + total_len + Cat(next_hdr, ttl))),
                ]
                patched = []
                for j in range(16):
                    pos = (mv_w << 4) + j
                    b = _byte(rd, j)
                    b = Mux(pos == nh_off, next_hdr, b)
                    b = Mux(~ver6 & (pos == 2), total_len[8:], b)
                    b = Mux(~ver6 & (pos == 3), total_len[:8], b)
                    b = Mux(~ver6 & (pos == 10), ck[8:], b)
                    b = Mux(~ver6 & (pos == 11), ck[:8], b)
                    b = Mux(ver6 & (pos == 4), total_len[8:], b)
                    b = Mux(ver6 & (pos == 5), total_len[:8], b)
                    patched.append(b)
                m.d.comb += [buf.w_addr.eq((mv_w + 1) << 4), buf.w_data.eq(Cat(*patched)),
                             buf.w_mask.eq(_lanes(Mux(esp_off - (mv_w << 4) >= 16, 16,
                                                      esp_off - (mv_w << 4)))),
                             buf.w_en.eq(1)]
                m.d.sync += mv_w.eq(mv_w - 1)
                with m.If(mv_w == 0):
                    m.next = "ACCEPT"
                with m.Else():
                    m.next = "MOVE_A"

            with m.State("ACCEPT"):
                m.d.comb += self.dp_hold.eq(1)
                m.d.sync += handed_up.eq(1)
                finish(Verdict.OK)
            with m.State("ACCEPT_DUMMY"):
                m.d.comb += self.dp_hold.eq(1)
                finish(Verdict.OK)

            # --- Commit: counters and window, then the data, then the tag ---
            handoff_states(m, self, sa=sa, sa_found=sa_found, verdict=verdict, seq=new_top,
                           window=new_bits, handed_up=handed_up, tag=tag, out_start=out_start,
                           out_len=out_len, count_now=count_now, slot=slot,
                           proc_done=ring.proc_done)

        return m


def connect_table(m, inbound, table):
    """Wire ``inbound``'s table ports to ``table`` (an :class:`~ipchan.hw.sa_table.SaTable`)."""
    wiring.connect(m, inbound.lookup_req, table.lookup_req)
    wiring.connect(m, table.lookup_resp, inbound.lookup_resp)
    wiring.connect(m, inbound.sa_read, table.sa_read)
    wiring.connect(m, table.sa_data, inbound.sa_data)
    wiring.connect(m, inbound.sa_write, table.sa_write)
    m.d.comb += [table.dp_hold[0].eq(inbound.dp_hold), inbound.version.eq(table.version)]
