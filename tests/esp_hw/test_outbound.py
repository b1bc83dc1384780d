"""The outbound ESP datapath in gateware against the golden model (whose output is checked
against scapy in ``tests/esp``), byte for byte and tag for tag, with random valid/ready gaps."""

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.packet import Raw

from ipchan.hw.contract import EngineParams, Verdict

from .hwrig import HwRig
from .test_inbound import check, key_of, v4, v6


@pytest.mark.parametrize("profile,every", [
    ("compact", 2),
    pytest.param("compact", 1, marks=pytest.mark.slow),
    pytest.param("fast", 2, marks=pytest.mark.slow),
], ids=["compact-sample", "compact-all", "fast-sample"])
def test_modes_families_algorithms(profile, every):
    rig = HwRig(EngineParams(n_entries=16, max_packet=2048), profile=profile)
    slots = []
    for k, (mode, alg, size, ends) in enumerate([
            ("transport", "aes-gcm-16", 16, None),
            ("transport", "aes-gcm-8", 32, None),
            ("transport", "aes-gmac", 16, None),
            ("tunnel", "aes-gcm-12", 32, ("192.0.2.1", "192.0.2.2")),
            ("tunnel", "aes-gmac", 32, ("192.0.2.1", "192.0.2.2")),
            ("tunnel", "aes-gcm-16", 16, ("2001:db8::a", "2001:db8::b"))]):
        spi = 0x1000 + k
        ref, _ = rig.add(spi=spi, direction="outbound", mode=mode, algorithm=alg,
                         key=key_of(size, spi), endpoints=ends, esn=k % 2 == 1,
                         seq=(1 << 32) - 2 if k % 2 else 5)
        slots.append(ref.index)
    plaintexts = [v4(0), v4(1), v4(14), v4(15), v4(16), v4(61), v4(3, tos=0xB9, flags="DF"),
                  v4(2, options=b"\x01" * 12), v6(0), v6(6, tc=0x2F), v6(33),
                  v6(4, ext=[IPv6ExtHdrHopByHop()]),
                  v6(8, ext=[IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt()]),
                  v6(5, ext=[IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting()]),
                  bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=59)),           # no payload
                  bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59) / Raw(b"x" * 8))]
    for n, plain in enumerate(plaintexts):
        for k, index in enumerate(slots):
            if (n + k) % every == 0:
                check(rig, rig.outbound(plain, index), Verdict.OK)
    # Tunnel mode carries fragments.
    frag = bytes(IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP() / Raw(b"f" * 20))
    check(rig, rig.outbound(frag, slots[3]), Verdict.OK)
    frag6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment() / Raw(b"g" * 9))
    check(rig, rig.outbound(frag6, slots[5]), Verdict.OK)
    rig.run(seed=5, gap=0.3)


def test_verdicts_and_sequence_numbers():
    rig = HwRig(EngineParams(n_entries=8, max_packet=256))
    tr, _ = rig.add(spi=0x2000, direction="outbound")
    inbound, _ = rig.add(spi=0x2001)
    last32, _ = rig.add(spi=0x2002, direction="outbound", seq=(1 << 32) - 2)
    last64, _ = rig.add(spi=0x2003, direction="outbound", esn=True, seq=(1 << 64) - 2)
    tun, _ = rig.add(spi=0x2004, direction="outbound", mode="tunnel",
                     endpoints=("2001:db8::a", "2001:db8::b"))
    check(rig, rig.outbound(v4(5), inbound.index), Verdict.NO_SA)          # an inbound SA
    check(rig, rig.outbound(v4(5), 7), Verdict.NO_SA)                      # a free slot
    check(rig, rig.outbound(v4(5), 8), Verdict.NO_SA)                      # beyond the table
    check(rig, rig.outbound(v4(5), 1000), Verdict.NO_SA)
    bad = bytearray(v4(5))
    bad[10] ^= 1
    check(rig, rig.outbound(bytes(bad), tr.index), Verdict.MALFORMED)      # checksum
    check(rig, rig.outbound(v4(5)[:-1], tr.index), Verdict.MALFORMED)      # truncated
    check(rig, rig.outbound(b"", tr.index), Verdict.MALFORMED)
    check(rig, rig.outbound(b"\x65" + v4(5)[1:], tr.index), Verdict.MALFORMED)
    check(rig, rig.outbound(v4(5, flags="MF"), tr.index), Verdict.MALFORMED)   # fragment
    frag6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment() / Raw(b"g"))
    check(rig, rig.outbound(frag6, tr.index), Verdict.MALFORMED)
    hbh = IPv6ExtHdrHopByHop()
    check(rig, rig.outbound(v6(1, ext=[hbh] * 5), tr.index), Verdict.MALFORMED)  # 5 headers
    check(rig, rig.outbound(v6(1, ext=[hbh] * 4), tr.index), Verdict.OK)
    check(rig, rig.outbound(v4(200), tr.index), Verdict.MALFORMED)         # result > 256
    check(rig, rig.outbound(v4(300), tr.index), Verdict.MALFORMED)         # input > 256
    check(rig, rig.outbound(v6(150), tun.index), Verdict.MALFORMED)        # outer header too
    check(rig, rig.outbound(v4(120), tun.index), Verdict.OK)
    check(rig, rig.outbound(v4(7), last32.index), Verdict.OK)              # 2^32-1, then ...
    check(rig, rig.outbound(v4(7), last32.index), Verdict.SEQ_OVERFLOW)
    check(rig, rig.outbound(v6(7), last32.index), Verdict.SEQ_OVERFLOW)
    check(rig, rig.outbound(v4(8), last64.index), Verdict.OK)
    check(rig, rig.outbound(v4(8), last64.index), Verdict.SEQ_OVERFLOW)
    rig.engine.delete(tr.index)
    rig.engine.commit()
    check(rig, rig.outbound(v4(9), tr.index), Verdict.NO_SA)               # deleted
    rig.run(seed=6, gap=0.3)


def test_both_directions_at_once():
    """Outbound packets of one SA come back in through its twin while both datapaths run: the
    slot port is shared."""
    rig = HwRig(EngineParams(n_entries=8, max_packet=512))
    out_idx, in_idx, key = rig.pair(spi=0x3000, mode="tunnel",
                                    endpoints=("192.0.2.1", "192.0.2.2"))
    sealed = []
    for n in range(8):
        out, tag = rig.outbound(v4(10 + n) if n % 2 else v6(n), out_idx)
        sealed.append(out)
        if n:
            check(rig, rig.inbound(sealed[n - 1]), Verdict.OK)
    check(rig, rig.inbound(sealed[0]), Verdict.REPLAY)
    rig.run(seed=7, gap=0.2)
