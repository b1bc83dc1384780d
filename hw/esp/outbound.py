"""The outbound ESP datapath: a plaintext IP packet and the slot of its SA in, ESP out.

Store and forward, in the order of ``docs/esp.md`` and
:meth:`ipchan.sw.esp.datapath.EspDatapathModel.outbound` (the normative text); as inbound, the
:class:`~.ring.PacketRing` receives one packet while the one before is processed (one at a time,
in order) and the one before that is sent.

1. **Receive** the packet into a free buffer of the ring behind 64 bytes of headroom
   (room for an outer IPv6 header, the ESP header and the IV); the SA's slot comes with the first
   beat (``sa_index``).
2. **SA**: the slot is read; beyond the table, not visible or not outbound: ``no_sa``.
3. **Parse** strictly (transport mode walks the IPv6 extension headers to the split point and
   refuses fragments; tunnel mode checks the fixed header and carries fragments), and refuse a
   result that would not fit the IP length fields or ``max_packet``: ``malformed``.
4. **Sequence number**: the last one used is the largest (2^32 - 1, 2^64 - 1 with ESN):
   ``seq_overflow``. Otherwise ``seq`` = last + 1, which is also the IV.
5. **Build** in place: transport mode moves the IP header 16 bytes down (protocol 50, length and
   IPv4 checksum rewritten) and writes the ESP header and IV behind it; tunnel mode writes the
   ESP header and IV, and in front of them the outer header from the SA's endpoints. The trailer
   (padding 1, 2, 3, pad length, next header) goes after the payload.
6. **Encrypt** in the :class:`~ipchan.hw.crypto.gcm.GCMCore`, the ciphertext written back over the
   plaintext and the ICV after it; then the slot's sequence number and counters are written
   back, the packet goes out on ``o`` with its tag in ``user``, and the tag on ``tag``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import contract
from ..contract import Algorithm, Direction, Mode, Verdict
from ..crypto.gcm import PROFILES, GCMCore
from ..sa_table import SaReadLayout, SaWriteLayout
from .handoff import handoff_states, packet_sender, packet_tag, verdict_counters
from .ring import PacketRing
from .inbound import _be16, _byte, _byteswap, _fold, _lanes
from .layouts import BEAT_BYTES, TagBeat, TaggedBeat, TagLayout


__all__ = ["OutboundEsp", "OUTBOUND_VERDICTS", "OutboundBeat", "HEADROOM"]

#: The verdicts an outbound packet can get, in the order of their counters.
OUTBOUND_VERDICTS = tuple(v for (d, v) in contract.VERDICT_COUNTERS if d == Direction.OUTBOUND)

#: A beat of a packet to protect: the slot of its SA rides along (read from the first beat).
OutboundBeat = data.StructLayout({"data": 8 * BEAT_BYTES, "keep": BEAT_BYTES, "last": 1,
                                  "sa_index": TagLayout["sa_index"].shape})

#: Bytes kept free in front of the packet in the buffer: outer IPv6 header + ESP header + IV.
HEADROOM = 64

_OUTER_TTL = 64


def _put16(value):
    """A 16-bit number as two bytes in stream order (big-endian)."""
    return Cat(value[8:16], value[0:8])


class OutboundEsp(wiring.Component):
    """The outbound datapath; see the module docstring. Table ports as
    :class:`~ipchan.hw.esp.inbound.InboundEsp`'s, less the lookup port (the host names the slot).
    ``counters``: packets by verdict in the order of :data:`OUTBOUND_VERDICTS`."""

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
            "i": In(stream.Signature(OutboundBeat)),
            "o": Out(stream.Signature(TaggedBeat)),
            "tag": Out(stream.Signature(TagBeat)),
            "sa_read": Out(stream.Signature(p.index_width)),
            "sa_data": In(stream.Signature(SaReadLayout(p))),
            "sa_write": Out(stream.Signature(SaWriteLayout(p))),
            "dp_hold": Out(1),
            "version": In(p.version_width),
            "counters": Out(data.ArrayLayout(32, len(OUTBOUND_VERDICTS))),
        })

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        H = HEADROOM
        m.submodules.ring = ring = PacketRing(H + p.max_packet + 32, base=H,
                                              max_packet=p.max_packet, beat=OutboundBeat)
        wiring.connect(m, wiring.flipped(self.i), ring.i)
        buf = ring.proc                           # this packet's buffer, while it is processed
        m.submodules.gcm = gcm = GCMCore(self.profile)
        LW = 18
        rd = buf.r_data

        plen = Signal(LW)
        too_long = Signal()
        rx_bad = Signal()
        index_in = Signal(16)
        ver6 = Signal()
        hl = Signal(LW)                          # transport: the header that stays in front
        nh = Signal(8)                           # IPv6 walk
        nh_off = Signal(LW)
        ext_count = Signal(range(contract.IPV6_MAX_EXT_HEADERS + 1))
        seen_routing = Signal()
        proto = Signal(8)                        # the trailer's next header
        ttl = Signal(8)
        tos = Signal(8)
        df = Signal()
        csum = Signal(22)
        csum_rest = Signal(22)
        cs_len = Signal(7)
        cs_k = Signal(3)
        version = Signal(p.version_width)
        verdict = Signal(3)
        sa_found = Signal()
        sa = Signal(SaReadLayout(p))
        seq = Signal(64)
        mv_w = Signal(LW - 4)
        hdr_k = Signal(2)

        flags = sa.entry.flags
        tunnel = flags.mode == Mode.TUNNEL
        icv_len = Signal(5)
        m.d.comb += icv_len.eq(Mux(flags.alg == Algorithm.AES_GCM_8, 8,
                                   Mux(flags.alg == Algorithm.AES_GCM_12, 12, 16)))
        gmac = flags.alg == Algorithm.AES_GMAC

        # Sizes, from the parse.
        data_len = Signal(LW)
        pad = Signal(2)
        body_len = Signal(LW)                    # payload + padding + 2: what is encrypted
        esp_len = Signal(LW)
        grow = Signal(LW)                        # ESP header, IV, padding, 2, ICV
        m.d.comb += [
            data_len.eq(Mux(tunnel, plen, plen - hl)),
            pad.eq(-(8 + data_len + 2)),
            body_len.eq(data_len + pad + 2),
            esp_len.eq(16 + body_len + icv_len),
            grow.eq(16 + pad + 2 + icv_len),
        ]
        outer_len = Signal(LW)                   # the IPv4 total length or IPv6 payload length
        out_bytes = Signal(LW)
        olen = Signal(7)                         # tunnel: the outer header
        m.d.comb += olen.eq(Mux(flags.outer6, 40, 20))
        with m.If(tunnel):
            m.d.comb += [outer_len.eq(esp_len + Mux(flags.outer6, 0, 20)),
                         out_bytes.eq(esp_len + olen)]
        with m.Else():
            m.d.comb += [outer_len.eq(plen + grow - Mux(ver6, 40, 0)), out_bytes.eq(plen + grow)]
        esp_start = Signal(LW)
        m.d.comb += esp_start.eq(Mux(tunnel, H - 16, H - 16 + hl))
        pt = Signal(LW)
        m.d.comb += pt.eq(esp_start + 16)
        out_start = Signal(LW)
        m.d.comb += out_start.eq(Mux(tunnel, H - 16 - olen, H - 16))

        # --- Counters ---
        count_now = verdict_counters(m, self.counters, OUTBOUND_VERDICTS, verdict)

        # --- Headers to write ---
        spi = sa.entry.spi
        esp_header = Cat(_byteswap(spi), _byteswap(seq[:32]), _byteswap(seq))   # 16 bytes
        src, dst = sa.src, sa.dst
        v4_words = [Cat(tos, Const(0x45, 8)), outer_len[:16], seq[:16],
                    Cat(Const(0, 14), df, Const(0, 1)), Const((_OUTER_TTL << 8) | 50, 16),
                    src[16:32], src[0:16], dst[16:32], dst[0:16]]
        v4_sum = Signal(22)
        m.d.comb += v4_sum.eq(sum(v4_words))
        v4_ck = ~_fold(v4_sum)
        outer4 = Cat(_put16(v4_words[0]), _put16(v4_words[1]), _put16(v4_words[2]),
                     _put16(v4_words[3]), _put16(v4_words[4]), _put16(v4_ck[:16]),
                     _byteswap(src[:32]), _byteswap(dst[:32]), Const(0, 160))
        # IPv6: version 6, traffic class, flow label 0 (bytes 0..3 big-endian), then the rest.
        first_word = Cat(Const(0, 20), tos, Const(6, 4))               # 32 bits, big-endian value
        outer6 = Cat(_byteswap(first_word), _put16(outer_len[:16]), Const(50, 8),
                     Const(_OUTER_TTL, 8), _byteswap(src), _byteswap(dst))
        outer = Signal(320)
        m.d.comb += outer.eq(Mux(flags.outer6, outer6, outer4))

        # --- GCM ---
        aad_prefix = Signal(128)
        prefix_len = Signal(5)
        m.d.comb += [
            aad_prefix.eq(Mux(flags.esn,
                              Cat(_byteswap(spi), _byteswap(seq[32:]), _byteswap(seq[:32])),
                              Cat(_byteswap(spi), _byteswap(seq[:32])))),
            prefix_len.eq(Mux(flags.esn, 12, 8)),
        ]
        cmd = gcm.cmd.payload
        m.d.comb += [
            cmd.key.eq(_byteswap(sa.key)),
            cmd.key256.eq(flags.keysize),
            cmd.nonce.eq(Cat(_byteswap(sa.salt), _byteswap(seq))),
            cmd.aad_len.eq(Mux(gmac, prefix_len + 8 + body_len, prefix_len)),
            cmd.text_len.eq(Mux(gmac, 0, body_len)),
            cmd.decrypt.eq(0),
            cmd.tag_bytes.eq(icv_len),
        ]
        seg = Signal(2)
        seg_beat = Signal(LW - 4)
        seg_beats = Signal(LW - 3)
        seg_base = Signal(LW)
        m.d.comb += [
            seg_beats.eq(Mux(seg == 0, Mux(gmac, (prefix_len + 8 + body_len + 15) >> 4, 1),
                             Mux(seg == 1, Mux(gmac, 0, (body_len + 15) >> 4), 0))),
            seg_base.eq(Mux(seg == 0, esp_start + 8 - prefix_len, pt)),
        ]
        feed_valid = Signal()
        feed_prefix = Signal()
        feed_done = Signal()
        cmd_done = Signal()
        ct_k = Signal(LW - 4)
        prefix_mask = Cat(*(_lanes(prefix_len)[k].replicate(8) for k in range(16)))
        m.d.comb += gcm.i.payload.eq(Mux(feed_prefix, (rd & ~prefix_mask) | (aad_prefix & prefix_mask),
                                         rd))

        # --- Tags ---
        tag = packet_tag(m, verdict=verdict, sa_found=sa_found, sa=sa, version=version, seq=seq)
        slot = packet_sender(m, self, port=ring.send, done=ring.send_done, length_width=LW)
        handed_up = Signal()

        def finish(v):
            m.d.sync += verdict.eq(v)
            m.next = "WRITE_BACK"

        with m.FSM(name="outbound"):
            with m.State("IDLE"):
                # The next packet the ring has received (see ring.py for the other two stages).
                m.d.comb += ring.received.ready.eq(1)
                with m.If(ring.received.valid):
                    got = ring.received.payload
                    m.d.sync += [plen.eq(got.plen), too_long.eq(got.too_long),
                                 rx_bad.eq(got.rx_bad), index_in.eq(got.user), sa_found.eq(0),
                                 handed_up.eq(0), seq.eq(0)]
                    m.next = "SA"

            with m.State("SA"):
                m.d.sync += [version.eq(self.version), sa.index.eq(index_in)]
                with m.If(index_in >= p.n_entries):
                    finish(Verdict.NO_SA)
                with m.Else():
                    m.next = "SA_READ"
            with m.State("SA_READ"):
                m.d.comb += [self.dp_hold.eq(1), self.sa_read.valid.eq(1),
                             self.sa_read.payload.eq(sa.index)]
                with m.If(self.sa_read.ready):
                    m.next = "SA_WAIT"
            with m.State("SA_WAIT"):
                m.d.comb += [self.dp_hold.eq(1), self.sa_data.ready.eq(1)]
                d = self.sa_data.payload
                with m.If(self.sa_data.valid):
                    m.d.sync += [sa.eq(d), version.eq(d.version)]
                    with m.If(~d.visible | (d.entry.flags.dir != Direction.OUTBOUND)):
                        finish(Verdict.NO_SA)
                    with m.Else():
                        m.d.sync += sa_found.eq(1)
                        m.next = "PARSE_A"

            with m.State("PARSE_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(H), buf.r_en.eq(1)]
                m.next = "PARSE_D"
            with m.State("PARSE_D"):
                m.d.comb += self.dp_hold.eq(1)
                v = rd[4:8]
                ihl_b = Cat(Const(0, 2), rd[0:4])
                m.d.sync += [ver6.eq(v == 6), ttl.eq(_byte(rd, 8)),
                             nh.eq(_byte(rd, 6)), nh_off.eq(6), hl.eq(40), ext_count.eq(0),
                             seen_routing.eq(0), cs_k.eq(0), csum.eq(0), csum_rest.eq(0),
                             cs_len.eq(ihl_b)]
                with m.If(v == 4):
                    m.d.sync += [tos.eq(_byte(rd, 1)), df.eq(rd[6 * 8 + 6]),
                                 proto.eq(Mux(tunnel, 4, _byte(rd, 9))), hl.eq(ihl_b),
                                 nh_off.eq(9)]
                with m.Else():
                    m.d.sync += [tos.eq(Cat(rd[12:16], rd[0:4])), df.eq(1), proto.eq(41)]
                with m.If(too_long | rx_bad | (plen == 0)):
                    finish(Verdict.MALFORMED)
                with m.Elif(v == 4):
                    frag = _be16(rd, 6)
                    with m.If((plen < 20) | (ihl_b < 20) | (ihl_b > plen) | (_be16(rd, 2) != plen) |
                              (~tunnel & (frag[:14] != 0))):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "CSUM_A"
                with m.Elif(v == 6):
                    with m.If((plen < 40) | (_be16(rd, 4) == 0) | (_be16(rd, 4) != plen - 40)):
                        finish(Verdict.MALFORMED)
                    with m.Elif(tunnel):
                        m.next = "SIZE"
                    with m.Else():
                        m.next = "EXT"
                with m.Else():
                    finish(Verdict.MALFORMED)

            with m.State("CSUM_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(H + (cs_k << 4)), buf.r_en.eq(1)]
                m.next = "CSUM_D"
            with m.State("CSUM_D"):
                m.d.comb += self.dp_hold.eq(1)
                total, rest = 0, 0
                for j in range(8):
                    word = Mux((cs_k << 4) + 2 * j < cs_len, _be16(rd, 2 * j), 0)
                    total = total + word
                    rest = rest + (word if j not in (1, 4, 5) else Mux(cs_k == 0, 0, word))
                m.d.sync += [csum.eq(csum + total), csum_rest.eq(csum_rest + rest),
                             cs_k.eq(cs_k + 1)]
                with m.If(((cs_k + 1) << 4) >= cs_len):
                    m.next = "CSUM_CHECK"
                with m.Else():
                    m.next = "CSUM_A"
            with m.State("CSUM_CHECK"):
                m.d.comb += self.dp_hold.eq(1)
                with m.If(_fold(csum) != 0xFFFF):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.next = "SIZE"

            # IPv6 transport: where ESP goes (after Hop-by-Hop, Routing, and Destination Options
            # before a Routing header).
            with m.State("EXT"):
                m.d.comb += self.dp_hold.eq(1)
                skip = (nh == 0) | (nh == 43) | ((nh == 60) & ~seen_routing)
                with m.If(nh == 44):
                    finish(Verdict.MALFORMED)
                with m.Elif(skip):
                    with m.If((ext_count == contract.IPV6_MAX_EXT_HEADERS) | (hl + 8 > plen)):
                        finish(Verdict.MALFORMED)
                    with m.Else():
                        m.next = "EXT_A"
                with m.Else():
                    m.d.sync += proto.eq(nh)
                    m.next = "SIZE"
            with m.State("EXT_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(H + hl), buf.r_en.eq(1)]
                m.next = "EXT_D"
            with m.State("EXT_D"):
                m.d.comb += self.dp_hold.eq(1)
                length = Cat(Const(0, 3), _byte(rd, 1) + 1)
                with m.If(hl + length > plen):
                    finish(Verdict.MALFORMED)
                with m.Else():
                    m.d.sync += [nh.eq(_byte(rd, 0)), nh_off.eq(hl), hl.eq(hl + length),
                                 ext_count.eq(ext_count + 1),
                                 seen_routing.eq(seen_routing | (nh == 43))]
                    m.next = "EXT"

            with m.State("SIZE"):
                m.d.comb += self.dp_hold.eq(1)
                top = sa.entry.seq
                last = Mux(flags.esn, top == (1 << 64) - 1, top >= (1 << 32) - 1)
                with m.If((outer_len > contract.IP_MAX_PACKET) | (out_bytes > p.max_packet)):
                    finish(Verdict.MALFORMED)
                with m.Elif(last):
                    m.d.sync += seq.eq(top)
                    finish(Verdict.SEQ_OVERFLOW)
                with m.Else():
                    m.d.sync += [seq.eq(top + 1), mv_w.eq(0), hdr_k.eq(0)]
                    with m.If(tunnel):
                        m.next = "OUTER"
                    with m.Else():
                        m.next = "MOVE_A"

            # Transport: the header moves 16 bytes down, word by word, first word first.
            with m.State("MOVE_A"):
                m.d.comb += [self.dp_hold.eq(1), buf.r_addr.eq(H + (mv_w << 4)), buf.r_en.eq(1)]
                m.next = "MOVE_D"
            with m.State("MOVE_D"):
                m.d.comb += self.dp_hold.eq(1)
                new_len = Signal(16)
                ck = Signal(16)
                m.d.comb += [new_len.eq(outer_len), ck.eq(~_fold(csum_rest + new_len + Cat(Const(50, 8), ttl)))]
                patched = []
                for j in range(16):
                    pos = (mv_w << 4) + j
                    b = Mux(pos == nh_off, 50, _byte(rd, j))
                    b = Mux(~ver6 & (pos == 2), new_len[8:], b)
                    b = Mux(~ver6 & (pos == 3), new_len[:8], b)
                    b = Mux(~ver6 & (pos == 10), ck[8:], b)
                    b = Mux(~ver6 & (pos == 11), ck[:8], b)
                    b = Mux(ver6 & (pos == 4), new_len[8:], b)
                    b = Mux(ver6 & (pos == 5), new_len[:8], b)
                    patched.append(b)
                left = hl - (mv_w << 4)
                m.d.comb += [buf.w_addr.eq(H - 16 + (mv_w << 4)), buf.w_data.eq(Cat(*patched)),
                             buf.w_mask.eq(_lanes(Mux(left >= 16, 16, left))), buf.w_en.eq(1)]
                m.d.sync += mv_w.eq(mv_w + 1)
                with m.If(left <= 16):
                    m.next = "ESP_HEADER"
                with m.Else():
                    m.next = "MOVE_A"

            # Tunnel: the outer header in front of the ESP header, 16 bytes a clock.
            with m.State("OUTER"):
                m.d.comb += self.dp_hold.eq(1)
                left = olen - (hdr_k << 4)
                m.d.comb += [buf.w_addr.eq(out_start + (hdr_k << 4)),
                             buf.w_data.eq(outer.word_select(hdr_k, 128)),
                             buf.w_mask.eq(_lanes(Mux(left >= 16, 16, left))), buf.w_en.eq(1)]
                m.d.sync += hdr_k.eq(hdr_k + 1)
                with m.If(left <= 16):
                    m.next = "ESP_HEADER"

            with m.State("ESP_HEADER"):
                m.d.comb += [self.dp_hold.eq(1), buf.w_addr.eq(esp_start), buf.w_data.eq(esp_header),
                             buf.w_mask.eq(0xFFFF), buf.w_en.eq(1)]
                m.next = "TRAILER"
            with m.State("TRAILER"):
                m.d.comb += self.dp_hold.eq(1)
                lanes = []
                for j in range(5):
                    lanes.append(Mux(j < pad, j + 1, Mux(j == pad, pad, proto)))
                m.d.comb += [buf.w_addr.eq(pt + data_len), buf.w_data.eq(Cat(*lanes)),
                             buf.w_mask.eq(_lanes(pad + 2)), buf.w_en.eq(1)]
                m.d.sync += [seg.eq(0), seg_beat.eq(0), feed_valid.eq(0), feed_done.eq(0),
                             cmd_done.eq(0), ct_k.eq(0)]
                m.next = "GCM"

            with m.State("GCM"):
                m.d.comb += self.dp_hold.eq(1)
                m.d.comb += [gcm.cmd.valid.eq(~cmd_done), gcm.i.valid.eq(feed_valid)]
                with m.If(gcm.cmd.ready):
                    m.d.sync += cmd_done.eq(1)
                advance = ~feed_valid | gcm.i.ready
                with m.If(advance):
                    with m.If(feed_done):
                        m.d.sync += feed_valid.eq(0)
                    with m.Elif(seg_beat >= seg_beats):
                        m.d.sync += [feed_valid.eq(0), seg.eq(seg + 1), seg_beat.eq(0)]
                        with m.If(seg == 1):
                            m.d.sync += feed_done.eq(1)
                    with m.Else():
                        m.d.comb += [buf.r_addr.eq(seg_base + (seg_beat << 4)), buf.r_en.eq(1)]
                        m.d.sync += [feed_valid.eq(1), feed_prefix.eq((seg == 0) & (seg_beat == 0)),
                                     seg_beat.eq(seg_beat + 1)]
                        with m.If(seg_beat + 1 == seg_beats):
                            m.d.sync += [seg.eq(seg + 1), seg_beat.eq(0)]
                            with m.If(seg == 1):
                                m.d.sync += feed_done.eq(1)
                m.d.comb += gcm.o.ready.eq(1)
                with m.If(gcm.o.valid & ~gcm.o.payload.aad):
                    m.d.comb += [buf.w_addr.eq(pt + (ct_k << 4)), buf.w_data.eq(gcm.o.payload.data),
                                 buf.w_mask.eq(_lanes(gcm.o.payload.bytes)), buf.w_en.eq(1)]
                    m.d.sync += ct_k.eq(ct_k + 1)
                m.d.comb += gcm.r.ready.eq(1)
                with m.If(gcm.r.valid):
                    # The ICV after the ciphertext (the core's last o beat was taken before r).
                    m.d.comb += [buf.w_addr.eq(pt + body_len), buf.w_data.eq(gcm.r.payload.tag),
                                 buf.w_mask.eq(_lanes(icv_len)), buf.w_en.eq(1)]
                    m.d.sync += handed_up.eq(1)
                    finish(Verdict.OK)

            handoff_states(m, self, sa=sa, sa_found=sa_found, verdict=verdict, seq=seq,
                           window=sa.window, handed_up=handed_up, tag=tag, out_start=out_start,
                           out_len=out_bytes, count_now=count_now, slot=slot,
                           proc_done=ring.proc_done)

        return m
