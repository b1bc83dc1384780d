"""The gateware against scapy's ESP, both directions, with the golden model packet for packet.

tests/esp/test_scapy_interop.py runs these cases through the golden model; here they go through
the Verilator simulation of the engine with the compact ESP datapath (the cached build shared
with tests/test_verilator_esp.py), and the model runs beside it with the same SAs installed in
the same order (:class:`verilator_twin.Twin`): every packet's tag and bytes from the gateware
must equal the model's, and the gateware's packets must be scapy's. Every algorithm, AES-128 and
AES-256, transport and tunnel, IPv4 and IPv6 inside and outside, ESN across 2^32, the replay
window's edges, reordering inside the window and replays. Packets go in a few pipelined batches
so that the file takes well under a minute once the build is cached.
"""

import random

import pytest
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.inet import UDP
from scapy.packet import Raw

from ipchan.hw.contract import Verdict

# tests/ is on sys.path (pytest's rootdir-relative packages), as in tests/esp_hw.
from esp.helpers import ALGORITHMS, scapy_decrypt, scapy_encrypt, scapy_sa
from esp.test_scapy_interop import ENDPOINTS, outer_header, plain
from verilator_twin import Twin, build_esp_engine

SPI = 0x1234
#: (payload size, protocol) of the packets every SA carries: the model's interop test's, then
#: sizes around the 16-byte beats and blocks.
SHAPES = [(0, "udp"), (1, "tcp"), (2, "icmp"), (3, "udp"), (100, "tcp"), (1400, "udp"),
          (15, "udp"), (16, "udp"), (17, "tcp"), (31, "icmp"), (32, "udp"), (33, "udp"),
          (255, "tcp"), (1024, "udp")]


@pytest.fixture(scope="module")
def esp_build():
    return build_esp_engine()


@pytest.fixture
def twin(esp_build):
    t = Twin()
    yield t
    try:
        t.check_state()
    finally:
        t.close()


def key_of(rng, key_len):
    return rng.randbytes(key_len + 4)  # the AES key, then the 4-byte salt


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_both_directions(twin, alg):
    """Both key sizes, both modes, both families for ``alg``: ours decrypt in scapy and equal
    scapy's packet byte for byte (same IV); scapy's (random IVs) come out of ours."""
    rng = random.Random(f"both-{alg}")
    cases = []
    for n, (key_len, mode, family) in enumerate(
            [(k, m, f) for k in (16, 32) for m in ("transport", "tunnel") for f in (4, 6)]):
        key = key_of(rng, key_len)
        ends = ENDPOINTS[family] if mode == "tunnel" else None
        out_idx, in_idx = twin.pair(spi=SPI + n, mode=mode, algorithm=alg, key=key,
                                    endpoints=ends)
        cases.append((SPI + n, key, mode, family, out_idx, in_idx))
    twin.commit()

    # Outbound, the SAs interleaved: one pipelined batch.
    order = [(seq, size, proto, case) for seq, (size, proto) in enumerate(SHAPES, start=1)
             for case in cases]
    packets = {(seq, case[0]): plain(case[3], size, proto, tos=0x2E)
               for seq, size, proto, case in order}
    results = twin.run([("outbound", packets[seq, case[0]], case[4])
                        for seq, size, proto, case in order])
    inbound = []
    for (seq, size, proto, (spi, key, mode, family, out_idx, in_idx)), (tag, out) in \
            zip(order, results):
        packet = packets[seq, spi]
        assert (tag["verdict"], tag["seq"], tag["sa_valid"], tag["sa_index"]) == \
            (Verdict.OK, seq, 1, out_idx), tag
        header = outer_header(family, packet, seq) if mode == "tunnel" else None
        assert out == scapy_encrypt(scapy_sa(alg, key, spi, tunnel_header=header), packet, seq)
        assert scapy_decrypt(scapy_sa(alg, key, spi, tunnel_header=header), out) == packet
        theirs = scapy_encrypt(scapy_sa(alg, key, spi, tunnel_header=header), packet, seq,
                               iv=rng.randbytes(8))
        inbound.append((theirs, packet, seq, in_idx))

    # scapy's packets inbound: another batch.
    results = twin.run([("inbound", theirs, None) for theirs, _, _, _ in inbound])
    for (theirs, packet, seq, in_idx), (tag, got) in zip(inbound, results):
        assert (tag["verdict"], tag["sa_index"], tag["seq"], tag["version"]) == \
            (Verdict.OK, in_idx, seq, 1), tag
        assert got == packet


def test_tunnel_across_families(twin):
    """IPv4 in IPv6 and IPv6 in IPv4, for AES-GCM and AES-GMAC."""
    rng = random.Random("across")
    cases = []
    for n, (inner, outer, alg) in enumerate([(i, o, a) for i, o in ((4, 6), (6, 4))
                                             for a in ("aes-gcm-16", "aes-gmac")]):
        key = key_of(rng, 16 + 16 * (n % 2))
        out_idx, in_idx = twin.pair(spi=SPI + n, mode="tunnel", algorithm=alg, key=key,
                                    endpoints=ENDPOINTS[outer])
        cases.append((SPI + n, key, inner, outer, alg, out_idx, in_idx, plain(inner, 64, tos=1)))
    twin.commit()
    results = twin.run([("outbound", c[7], c[5]) for c in cases])
    for (spi, key, inner, outer, alg, out_idx, in_idx, packet), (tag, out) in \
            zip(cases, results):
        assert tag["verdict"] == Verdict.OK
        header = outer_header(outer, packet, 1)
        assert out == scapy_encrypt(scapy_sa(alg, key, spi, tunnel_header=header), packet, 1)
        assert scapy_decrypt(scapy_sa(alg, key, spi, tunnel_header=header), out) == packet
    back = twin.run([("inbound", out, None) for _, out in results])
    assert [(t["verdict"], t["sa_index"]) for t, _ in back] == \
        [(Verdict.OK, c[6]) for c in cases]
    assert [got for _, got in back] == [c[7] for c in cases]


def test_ipv6_extension_headers_transport(twin):
    """ESP after Hop-by-Hop, Routing and the Destination Options before Routing, as scapy puts
    it; inbound those headers are skipped and kept. Every algorithm."""
    rng = random.Random("ext")
    packet = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
                   / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=["2001:db8::3"])
                   / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / Raw(b"x" * 21))
    cases = []
    for n, alg in enumerate(ALGORITHMS):
        key = key_of(rng, 32 if n % 2 else 16)
        out_idx, in_idx = twin.pair(spi=SPI + n, algorithm=alg, key=key)
        cases.append((SPI + n, alg, key, out_idx, in_idx))
    twin.commit()
    results = twin.run([("outbound", packet, c[3]) for c in cases])
    theirs = []
    for (spi, alg, key, out_idx, in_idx), (tag, out) in zip(cases, results):
        assert tag["verdict"] == Verdict.OK
        assert out == scapy_encrypt(scapy_sa(alg, key, spi), packet, 1)
        theirs.append(scapy_encrypt(scapy_sa(alg, key, spi), packet, 2, iv=rng.randbytes(8)))
    back = twin.run([("inbound", p, None) for p in theirs])
    assert [(t["verdict"], t["sa_index"], t["seq"], got) for t, got in back] == \
        [(Verdict.OK, c[4], 2, packet) for c in cases]


def test_esn_across_2_32(twin):
    """Every algorithm in both modes with ESN, starting just below 2^32: outbound carries into
    the high half (scapy, told the high half, decrypts); inbound infers it from scapy's packets,
    delivered out of order across the boundary inside the window; then all are replays."""
    start = (1 << 32) - 3
    rng = random.Random("esn")
    cases = []
    for n, (alg, mode) in enumerate([(a, m) for a in ALGORITHMS
                                     for m in ("transport", "tunnel")]):
        key = key_of(rng, 16 if n % 3 else 32)
        ends = ENDPOINTS[4] if mode == "tunnel" else None
        out_idx, in_idx = twin.pair(spi=SPI + n, algorithm=alg, mode=mode, esn=True, seq=start,
                                    key=key, endpoints=ends)
        cases.append((SPI + n, alg, mode, key, out_idx, in_idx))
    twin.commit()
    packet = plain(4, 20)
    seqs = range(start + 1, start + 7)
    results = twin.run([("outbound", packet, c[4]) for _ in seqs for c in cases])
    sent = {}
    for (seq, (spi, alg, mode, key, out_idx, in_idx)), (tag, out) in \
            zip([(s, c) for s in seqs for c in cases], results):
        assert (tag["verdict"], tag["seq"]) == (Verdict.OK, seq)
        header = outer_header(4, packet, seq) if mode == "tunnel" else None
        assert out == scapy_encrypt(scapy_sa(alg, key, spi, tunnel_header=header, esn=True),
                                    packet, seq, esn=True)
        assert scapy_decrypt(scapy_sa(alg, key, spi, tunnel_header=header, esn=True), out,
                             seq, esn=True) == packet
        sent[spi, seq] = scapy_encrypt(scapy_sa(alg, key, spi, tunnel_header=header, esn=True),
                                       packet, seq, esn=True, iv=rng.randbytes(8))
    shuffled = [seqs[i] for i in (1, 0, 4, 2, 5, 3)]
    deliveries = [(c, s) for s in shuffled for c in cases] + [(c, s) for s in seqs for c in cases]
    back = twin.run([("inbound", sent[c[0], s], None) for c, s in deliveries])
    first = len(shuffled) * len(cases)
    for n, ((spi, alg, mode, key, out_idx, in_idx), seq), (tag, got) in \
            zip(range(len(deliveries)), deliveries, back):
        want = Verdict.OK if n < first else Verdict.REPLAY
        assert (tag["verdict"], tag["seq"], tag["sa_index"]) == (want, seq, in_idx), (n, tag)
        assert got == (packet if want == Verdict.OK else None)
    for spi, alg, mode, key, out_idx, in_idx in cases:
        assert twin.hw.read_entry(in_idx).seq == start + 6
        assert twin.hw.read_entry(out_idx).seq == start + 6


def test_esn_wrong_high_half_fails_auth(twin):
    """The high half is authenticated although never sent: a packet sealed with another high
    half fails its ICV, with the inferred sequence number in the tag."""
    key = key_of(random.Random("hi"), 16)
    twin.add(spi=SPI, direction="inbound", esn=True, seq=(5 << 32) + 100, key=key)
    twin.commit()
    theirs = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI, esn=True), plain(4), (4 << 32) + 101,
                           esn=True)
    right = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI, esn=True), plain(4), (5 << 32) + 101,
                          esn=True)
    (tag, got), (tag2, got2) = twin.run([("inbound", theirs, None), ("inbound", right, None)])
    assert (tag["verdict"], tag["seq"], got) == (Verdict.AUTH_FAIL, (5 << 32) + 101, None)
    assert (tag2["verdict"], tag2["seq"], got2) == (Verdict.OK, (5 << 32) + 101, plain(4))


#: (window, top of the window, ESN): this build's windows go up to 64; the ESN one has its
#: window straddle 2^32.
WINDOWS = [(1, 5000, False), (2, 5000, False), (32, 5000, False), (63, 5000, False),
           (64, 5000, False), (64, (1 << 32) + 5, True), (17, (1 << 32) + 3, True)]


def window_edges(window, top, esn):
    """(sequence number, verdict, sequence number in the tag): top T, T - W + 1 the oldest
    accepted, T - W a replay, T a replay, above T accepted, every accepted number a replay the
    second time, a jump of W. With ESN a number below the window is taken for the next high half
    (RFC 4303 appendix A), whose ICV does not match."""
    below = ((Verdict.AUTH_FAIL, 1 << 32) if esn else (Verdict.REPLAY, 0))
    oldest = Verdict.OK if window > 1 else Verdict.REPLAY  # (window 1: T - W + 1 is T)
    steps = [(top, Verdict.REPLAY, 0), (top - window, *below), (top - window + 1, oldest, 0),
             (top + 1, Verdict.OK, 0),
             (top - window + 1, *below) if window > 1 else (top, Verdict.REPLAY, 0),  # moved
             (top + 1, Verdict.REPLAY, 0),
             (top + 1 + window, Verdict.OK, 0)]   # clears everything but the new top
    if window > 1:
        steps.append((top + 2, Verdict.OK, 0))
    steps.append((top + 1, *below))            # T - W of the new top
    return [(seq, verdict, seq + carry) for seq, verdict, carry in steps]


def test_window_edges(twin):
    rng = random.Random("edges")
    cases = []
    for n, (window, top, esn) in enumerate(WINDOWS):
        key = key_of(rng, 16)
        index = twin.add(spi=SPI + n, direction="inbound", seq=top, replay_window=window,
                         esn=esn, key=key)
        sa = scapy_sa("aes-gcm-16", key, SPI + n, esn=esn)
        cases.append((index, n, [(seq, verdict, tag_seq, scapy_encrypt(sa, plain(6, 10), seq,
                                                                        esn=esn))
                                 for seq, verdict, tag_seq in window_edges(window, top, esn)]))
    twin.commit()
    # Step k of every SA, then step k + 1: the SAs' windows interleave in one batch.
    batch = [(index, n, s[k]) for k in range(max(len(s) for _, _, s in cases))
             for index, n, s in cases if k < len(s)]
    back = twin.run([("inbound", step[3], None) for _, _, step in batch])
    for (index, n, (seq, verdict, tag_seq, _)), (tag, _) in zip(batch, back):
        assert (tag["sa_index"], tag["seq"], tag["verdict"]) == (index, tag_seq, verdict), \
            (WINDOWS[n], seq)


def test_reordering_inside_window_random(twin):
    """Random delivery order with duplicates, two SAs interleaved (one with ESN crossing 2^32):
    the gateware accepts exactly what a set-based reference accepts."""
    rng = random.Random(4)
    configs = [("aes-gcm-8", 64, False, 0), ("aes-gmac", 32, True, (1 << 32) - 150)]
    streams = []
    for n, (alg, window, esn, base) in enumerate(configs):
        key = key_of(rng, 16 * (n + 1))
        index = twin.add(spi=SPI + n, direction="inbound", algorithm=alg, replay_window=window,
                         esn=esn, seq=base, key=key)
        sa = scapy_sa(alg, key, SPI + n, esn=esn)
        wire = {seq: scapy_encrypt(sa, plain(4, 8), seq, esn=esn)
                for seq in range(base + 1, base + 301)}
        order = list(range(base + 1, base + 301))
        for i in range(len(order)):  # local shuffles (reordering by up to ~80 places)
            j = min(len(order) - 1, i + rng.randrange(80))
            order[i], order[j] = order[j], order[i]
        order += rng.sample(range(base + 1, base + 301), 60)  # replays
        streams.append((index, window, esn, base, wire, order))
    twin.commit()
    batch = [(s, seq) for k in range(360) for s in streams for seq in [s[5][k]]]
    back = twin.run([("inbound", s[4][seq], None) for s, seq in batch])
    state = {s[0]: (set(), s[3]) for s in streams}
    verdicts = {}
    for ((index, window, esn, base, wire, order), seq), (tag, got) in zip(batch, back):
        seen, top = state[index]
        expect_ok = seq not in seen and (seq > top or top - seq < window)
        assert (tag["verdict"] == Verdict.OK) == expect_ok, (index, seq, top, tag)
        verdicts[tag["verdict"]] = verdicts.get(tag["verdict"], 0) + 1
        if expect_ok:
            seen.add(seq)
            state[index] = (seen, max(top, seq))
            assert got == plain(4, 8)
        elif esn and seq <= top - window:
            # RFC 4303 appendix A: a number below the window is taken for the next high half,
            # whose ICV does not match.
            assert tag["verdict"] == Verdict.AUTH_FAIL, (seq, top, tag)
        else:
            assert tag["verdict"] == Verdict.REPLAY, (seq, top, tag)
    # The delivery order really did exercise both sides of the window.
    assert set(verdicts) == {Verdict.OK, Verdict.REPLAY, Verdict.AUTH_FAIL}, verdicts


def test_replay_window_disabled_accepts_replays(twin):
    key = key_of(random.Random("w0"), 32)
    index = twin.add(spi=SPI, direction="inbound", replay_window=0, key=key)
    twin.commit()
    wire = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI), plain(4), 7)
    back = twin.run([("inbound", wire, None)] * 3)
    assert [t["verdict"] for t, _ in back] == [Verdict.OK] * 3
    assert twin.hw.read_entry(index).seq == 7


def test_no_next_header_is_a_dummy_packet(twin):
    """Transport mode, an IPv6 packet whose last next header is 59 (no next header): the
    Destination Options stay in front of ESP (as scapy puts them), so the ESP trailer says 59 and
    the receiver takes it for a dummy packet (RFC 4303 section 2.6): ok, nothing handed up. The
    long fuzz campaign met this with a random plaintext."""
    key = key_of(random.Random("nh59"), 16)
    out_idx, in_idx = twin.pair(spi=SPI, key=key)
    twin.commit()
    packet = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt(nh=59))
    (tag, out), = twin.run([("outbound", packet, out_idx)])
    assert tag["verdict"] == Verdict.OK
    assert out == scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI), packet, 1)
    # (scapy 2.8's decrypt() of this packet repeats the Destination Options header, so it is
    # not asked to open it.)
    (tag, got), (again, _) = twin.run([("inbound", out, None)] * 2)
    assert (tag["verdict"], tag["sa_index"], tag["seq"], got) == (Verdict.OK, in_idx, 1, None)
    assert again["verdict"] == Verdict.REPLAY  # the window moved: it was accepted
