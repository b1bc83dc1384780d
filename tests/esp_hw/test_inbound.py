"""The inbound ESP datapath in gateware against the golden model, packet for packet and tag for
tag, in Amaranth's simulator with random valid/ready gaps on every stream (see ``hwrig.py``).

Authentic packets with wrong contents (bad padding, bad next header, TFC padding, dummies) are
sealed by hand with cryptography's AESGCM, independently of the model."""

import random

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.packet import Raw

from ipchan.hw.contract import EngineParams, Verdict
from ipchan.sw.esp.packet import build_ipv4, build_ipv6

from esp.helpers import seal, trailer  # tests/ is on sys.path (rootdir-relative packages)

from .hwrig import HwRig


def v4(n, **kw):
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2", **kw) / UDP(sport=7, dport=9) /
                 Raw(random.Random(n).randbytes(n)))


def v6(n, ext=(), **kw):
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2", **kw)
    for header in ext:
        pkt = pkt / header
    return bytes(pkt / UDP(sport=7, dport=9) / Raw(random.Random(n).randbytes(n)))


def key_of(size, spi):
    return random.Random(spi).randbytes(size + 4)


def check(rig, out_tag, verdict):
    """The model's verdict is the one the test meant (so the test exercises what it says)."""
    assert out_tag[1]["verdict"] == verdict, out_tag[1]


@pytest.mark.parametrize("profile,every", [
    ("compact", 3),
    pytest.param("compact", 1, marks=pytest.mark.slow),
    pytest.param("fast", 3, marks=pytest.mark.slow),
], ids=["compact-sample", "compact-all", "fast-sample"])
def test_modes_families_algorithms(profile, every):
    """Every algorithm, both key sizes, transport and tunnel, IPv4 and IPv6 inside and outside,
    IPv6 extension headers, sizes across the 16-byte beats. The default run sends every third
    (plaintext, SA) pair, so each SA still sees IPv4 and IPv6; ``-m slow`` sends all of them."""
    rig = HwRig(EngineParams(n_entries=16, max_packet=2048), profile=profile)
    sas = []
    for k, (mode, alg, size, ends) in enumerate([
            ("transport", "aes-gcm-16", 16, None),
            ("transport", "aes-gcm-8", 32, None),
            ("transport", "aes-gcm-12", 16, None),
            ("transport", "aes-gmac", 32, None),
            ("tunnel", "aes-gcm-16", 32, ("192.0.2.1", "192.0.2.2")),
            ("tunnel", "aes-gmac", 16, ("2001:db8::a", "2001:db8::b")),
            ("tunnel", "aes-gcm-12", 16, ("2001:db8::a", "2001:db8::b"))]):
        spi = 0x1000 + k
        sas.append(rig.sa(spi=spi, mode=mode, algorithm=alg, key=key_of(size, spi),
                          endpoints=ends))
    plaintexts = [v4(0), v4(1), v4(13), v4(14), v4(15), v4(16), v4(33), v4(100),
                  v6(0), v6(7), v6(40), v6(5, ext=[IPv6ExtHdrHopByHop()]),
                  v6(9, ext=[IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt()]),
                  bytes(IP(src="10.9.9.9", dst="10.8.8.8", options=b"\x01" * 8, tos=0xB8) /
                        TCP() / Raw(b"opts"))]
    for n, plain in enumerate(plaintexts):
        for k, (peer, ref, _) in enumerate(sas):
            if (n + k) % every == 0:
                check(rig, rig.inbound(rig.seal(plain, peer)), Verdict.OK)
    rig.run(seed=1, gap=0.3)


def test_verdicts():
    """no_sa, every kind of malformed, auth_fail, replay and ok dummies, with the counters."""
    rig = HwRig(EngineParams(n_entries=8, max_packet=512))
    peer, ref, key = rig.sa(spi=0x2000)
    tpeer, tref, tkey = rig.sa(spi=0x2001, mode="tunnel", algorithm="aes-gcm-8")
    good = rig.seal(v4(20), peer)
    check(rig, rig.inbound(good), Verdict.OK)
    check(rig, rig.inbound(good), Verdict.REPLAY)                        # twice
    other = bytearray(rig.seal(v4(21), peer))
    other[20:24] = (0x3000).to_bytes(4, "big")                            # unknown SPI
    check(rig, rig.inbound(bytes(other)), Verdict.NO_SA)
    flipped = bytearray(rig.seal(v4(22), peer))
    flipped[40] ^= 0x10                                                   # ciphertext
    check(rig, rig.inbound(bytes(flipped)), Verdict.AUTH_FAIL)
    flipped = bytearray(rig.seal(v4(23), peer))
    flipped[-1] ^= 0x01                                                   # ICV
    check(rig, rig.inbound(bytes(flipped)), Verdict.AUTH_FAIL)
    flipped = bytearray(rig.seal(v4(24), peer))
    flipped[31] ^= 0x40                                                   # sequence number
    check(rig, rig.inbound(bytes(flipped)), Verdict.AUTH_FAIL)

    sealed = rig.seal(v4(25), peer)
    bad_sum = bytearray(sealed)
    bad_sum[10] ^= 1
    check(rig, rig.inbound(bytes(bad_sum)), Verdict.MALFORMED)           # IPv4 checksum
    check(rig, rig.inbound(sealed[:-1]), Verdict.MALFORMED)              # truncated
    check(rig, rig.inbound(sealed + b"\0"), Verdict.MALFORMED)           # trailing byte
    check(rig, rig.inbound(b""), Verdict.MALFORMED)
    check(rig, rig.inbound(b"\x45"), Verdict.MALFORMED)
    check(rig, rig.inbound(b"\x75" + sealed[1:]), Verdict.MALFORMED)     # version 7
    check(rig, rig.inbound(v4(10)), Verdict.MALFORMED)                   # not ESP
    frag = bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=50, flags="MF") / Raw(sealed[20:]))
    check(rig, rig.inbound(frag), Verdict.MALFORMED)
    check(rig, rig.inbound(build_ipv4("192.0.2.1", "192.0.2.2", 50, sealed[20:27])),
          Verdict.MALFORMED)                                             # 7 bytes of ESP
    check(rig, rig.inbound(build_ipv4("192.0.2.1", "192.0.2.2", 50, sealed[20:20 + 33])),
          Verdict.MALFORMED)                                             # SA known, too short
    check(rig, rig.inbound(build_ipv4("192.0.2.1", "192.0.2.2", 50, sealed[20:] + bytes(500))),
          Verdict.MALFORMED)                                             # beyond max_packet
    six = build_ipv6("2001:db8::a", "2001:db8::b", 44, bytes(IPv6ExtHdrFragment(nh=50)) +
                     sealed[20:])
    check(rig, rig.inbound(six), Verdict.MALFORMED)                      # IPv6 fragment
    hbh = bytes(IPv6ExtHdrHopByHop(nh=0))
    many = build_ipv6("2001:db8::a", "2001:db8::b", 0, hbh * 4 + bytes(IPv6ExtHdrHopByHop(nh=50))
                      + sealed[20:])
    check(rig, rig.inbound(many), Verdict.MALFORMED)                     # 5 extension headers
    four = build_ipv6("2001:db8::a", "2001:db8::b", 0, hbh * 3 + bytes(IPv6ExtHdrHopByHop(nh=50))
                      + rig.seal(v4(26), peer)[20:])
    check(rig, rig.inbound(four), Verdict.OK)                            # 4 are fine
    check(rig, rig.inbound(build_ipv6("2001:db8::a", "2001:db8::b", 0, hbh[:4])),
          Verdict.MALFORMED)                                             # header beyond packet

    # Authentic, but wrong inside (the window does not move for these).
    data = v4(5)[20:]
    check(rig, rig.inbound(seal(key, 0x2000, 100, trailer(data, 17, pad=3)[:-5] + b"\1\2\4\3\x11")),
          Verdict.MALFORMED)                                             # padding 1, 2, 4
    check(rig, rig.inbound(seal(key, 0x2000, 101, b"\0" * 6 + bytes((200, 17)))),
          Verdict.MALFORMED)                                             # pad length too big
    check(rig, rig.inbound(seal(key, 0x2000, 102, trailer(b"", 59))), Verdict.OK)  # dummy
    check(rig, rig.inbound(seal(key, 0x2000, 103, trailer(data, 17, pad=0))), Verdict.OK)
    check(rig, rig.inbound(seal(key, 0x2000, 104, trailer(data, 17, pad=255))), Verdict.OK)
    check(rig, rig.inbound(seal(key, 0x2000, 105, trailer(data, 17, pad=17))), Verdict.OK)
    inner = v6(3)
    tunnel = lambda seq, body: seal(tkey, 0x2001, seq, body, alg="aes-gcm-8", outer="v6")
    check(rig, rig.inbound(tunnel(5, trailer(inner, 41))), Verdict.OK)
    check(rig, rig.inbound(tunnel(6, trailer(inner + b"TFC padding", 41))), Verdict.OK)
    check(rig, rig.inbound(tunnel(7, trailer(inner, 4))), Verdict.MALFORMED)     # says IPv4
    check(rig, rig.inbound(tunnel(8, trailer(inner, 17))), Verdict.MALFORMED)    # not 4/41/59
    check(rig, rig.inbound(tunnel(9, trailer(inner[:-1], 41))), Verdict.MALFORMED)  # short
    check(rig, rig.inbound(tunnel(10, trailer(b"", 59))), Verdict.OK)             # dummy
    check(rig, rig.inbound(tunnel(11, trailer(b"", 41))), Verdict.MALFORMED)      # empty
    bad_inner = bytearray(v4(4))
    bad_inner[11] ^= 0x80
    check(rig, rig.inbound(tunnel(12, trailer(bytes(bad_inner), 4))), Verdict.MALFORMED)
    check(rig, rig.inbound(tunnel(13, trailer(v4(4, flags="MF"), 4))), Verdict.OK)  # fragment
    check(rig, rig.inbound(tunnel(14, trailer(v4(4, options=b"\1" * 4) + b"xy", 4))), Verdict.OK)
    check(rig, rig.inbound(tunnel(14, trailer(v4(4), 4))), Verdict.REPLAY)
    rig.run(seed=2, gap=0.3)


def test_esn_across_2_32_and_window_edges():
    """ESN inference both sides of 2^32 (appendix A, cases A and B), late packets inside the
    window, at its edge, below it, duplicates; a disabled window; a 128-packet window."""
    rig = HwRig(EngineParams(n_entries=8, max_packet=512, window_max=128))
    top = (1 << 32) - 3
    peer, ref, key = rig.sa(spi=0x3000, esn=True, seq=top - 100, peer_seq=top - 100)
    sealed = {}
    for _ in range(110):                                          # top-99 .. top+10
        packet = rig.seal(v4(3), peer)
        sealed[rig.peer.model.slots[peer].seq] = packet
    order = [top - 90, top - 95, top - 1, top, top + 1, top + 2, top + 3, top - 2, top - 60,
             top + 3, top - 61, top + 10, top - 53, top - 54, top - 55, top + 9, top - 70]
    for seq in order:
        rig.inbound(sealed[seq])
    verdicts = [t["verdict"] for _, t in rig.steps_packets()]
    assert Verdict.REPLAY in verdicts and verdicts.count(Verdict.OK) >= 10
    # An ESN SA at the very end of the space: the high half would overflow.
    peer2, ref2, key2 = rig.sa(spi=0x3001, esn=True, seq=(1 << 64) - 5, replay_window=0)
    for _ in range(3):
        check(rig, rig.inbound(rig.seal(v6(2), peer2)), Verdict.OK)
    # Window 128 with 32-bit numbers, and a disabled window.
    peer3, ref3, _ = rig.sa(spi=0x3002, replay_window=128, seq=1000, peer_seq=999)
    packets = [rig.seal(v4(1), peer3) for _ in range(140)]         # 1000 .. 1139
    for n in (139, 12, 11, 10, 139, 138, 100, 13):                 # 1139, then 1012 (edge) ...
        rig.inbound(packets[n])
    peer4, ref4, _ = rig.sa(spi=0x3003, replay_window=0, seq=50)
    packets = [rig.seal(v4(1), peer4) for _ in range(3)]
    for n in (2, 0, 0, 1):
        check(rig, rig.inbound(packets[n]), Verdict.OK)            # no check at all
    rig.run(seed=3, gap=0.3)


def test_table_changes_between_packets():
    """A deleted SA stops being found at the commit (with the new version in the tag), a reused
    slot carries the next generation and fresh counters."""
    rig = HwRig(EngineParams(n_entries=2, max_packet=512))
    peer, ref, key = rig.sa(spi=0x4000)
    check(rig, rig.inbound(rig.seal(v4(1), peer)), Verdict.OK)
    rig.engine.delete(ref.index)
    check(rig, rig.inbound(rig.seal(v4(2), peer)), Verdict.OK)     # still visible: not committed
    rig.engine.commit()
    check(rig, rig.inbound(rig.seal(v4(3), peer)), Verdict.NO_SA)
    peer2, ref2, _ = rig.sa(spi=0x4001)
    peer3, ref3, _ = rig.sa(spi=0x4000)
    assert ref3.index == ref.index and ref3.generation == ref.generation + 1
    check(rig, rig.inbound(rig.seal(v4(4), peer3)), Verdict.OK)
    check(rig, rig.inbound(rig.seal(v4(5), peer2)), Verdict.OK)
    rig.engine.bump_version()
    check(rig, rig.inbound(rig.seal(v4(6), peer2)), Verdict.OK)
    rig.run(seed=4, gap=0.4)


def test_rig_notices_a_difference():
    """The comparison can fail: a model answer changed behind the rig's back is caught."""
    rig = HwRig(EngineParams(n_entries=2, max_packet=256))
    peer, ref, key = rig.sa(spi=0x5000)
    rig.inbound(rig.seal(v4(1), peer))
    kind, direction, packet, index, out, tag = rig.steps[-1]
    rig.steps[-1] = (kind, direction, packet, index, out[:-1] + bytes([out[-1] ^ 1]), tag)
    with pytest.raises(AssertionError, match="inbound packet 0: handed up"):
        rig.run(gap=0.0)


def mutate(rng, packet):
    """``packet`` with one random change: a bit flip, a byte overwrite, a truncation, an
    extension, or a wrong length field (then the IPv4 checksum fixed, so the change goes deeper)."""
    p = bytearray(packet)
    kind = rng.randrange(5)
    if kind == 0:
        bit = rng.randrange(8 * len(p))
        p[bit // 8] ^= 1 << (bit % 8)
    elif kind == 1:
        p[rng.randrange(len(p))] = rng.randrange(256)
    elif kind == 2:
        del p[rng.randrange(len(p)):]
    elif kind == 3:
        p += rng.randbytes(rng.randint(1, 40))
    else:
        if p[0] >> 4 == 4:
            p[2:4] = rng.randrange(1 << 16).to_bytes(2, "big")
            p[10:12] = b"\0\0"
            from ipchan.sw.esp.packet import ipv4_checksum
            p[10:12] = ipv4_checksum(bytes(p[:(p[0] & 15) * 4])).to_bytes(2, "big")
        else:
            p[4:6] = rng.randrange(1 << 16).to_bytes(2, "big")
    return bytes(p)


@pytest.mark.parametrize("seed,count", [
    (11, 40),
    pytest.param(12, 400, marks=pytest.mark.slow),
], ids=["default", "long"])
def test_mutated_packets_agree_with_the_model(seed, count):
    """Sealed packets under several SAs, mutated at random or sent intact (some twice, some out
    of order): the gateware says what the model says about each."""
    rng = random.Random(seed)
    rig = HwRig(EngineParams(n_entries=8, max_packet=512))
    sas = [rig.sa(spi=0x6000, algorithm="aes-gcm-12"),
           rig.sa(spi=0x6001, mode="tunnel", algorithm="aes-gmac",
                  endpoints=("2001:db8::a", "2001:db8::b")),
           rig.sa(spi=0x6002, esn=True, seq=(1 << 32) - 20, replay_window=32)]
    sent = []
    for n in range(count):
        peer = sas[rng.randrange(len(sas))][0]
        if sent and rng.random() < 0.15:
            packet = rng.choice(sent)                         # a replay, or a late packet
        else:
            plain = (v4 if rng.random() < 0.5 else v6)(rng.randrange(0, 90))
            packet = rig.seal(plain, peer)
            if rng.random() < 0.2:
                sent.append(packet)
                continue                                      # held back: sent later
            sent.append(packet)
        if rng.random() < 0.6:
            packet = mutate(rng, packet)
        rig.inbound(packet)
    verdicts = {t["verdict"] for _, t in rig.steps_packets()}
    assert {Verdict.OK, Verdict.MALFORMED, Verdict.AUTH_FAIL} <= verdicts
    rig.run(seed=seed, gap=0.3)


def test_window_of_1024():
    """The largest window: the edge at 1023 behind the top, shifts of more and less than it."""
    rig = HwRig(EngineParams(n_entries=2, max_packet=256, window_max=1024))
    peer, ref, key = rig.sa(spi=0x7000, replay_window=1024, seq=10, peer_seq=10)
    numbers = [11, 2000, 977, 976, 1500, 2000, 3100, 2077, 2076, 4200, 4199, 3177]
    for seq in numbers:
        body = trailer(v4(seq % 7)[20:], 17)
        rig.inbound(seal(key, 0x7000, seq, body))
    verdicts = [t["verdict"] for _, t in rig.steps_packets()]
    assert verdicts == [Verdict.OK, Verdict.OK, Verdict.OK, Verdict.REPLAY, Verdict.OK,
                        Verdict.REPLAY, Verdict.OK, Verdict.OK, Verdict.REPLAY, Verdict.OK,
                        Verdict.OK, Verdict.OK]
    rig.run(seed=8, gap=0.3)
