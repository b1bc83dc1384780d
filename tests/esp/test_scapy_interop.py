"""Both directions against scapy's ESP, which we did not write: every algorithm, key size, mode
and address family; ESN across 2^32; window edges, reordering inside the window, replays."""

import os
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                ICMPv6EchoRequest)
from scapy.packet import Raw

from ipchan.hw.contract import EngineParams, Verdict, pack_tag

from .helpers import ALGORITHMS, Rig, scapy_decrypt, scapy_encrypt, scapy_packet, scapy_sa

SPI = 0x1234


def plain(family, size=40, proto="udp", src=None, dst=None, tos=0):
    """A plaintext packet of about ``size`` payload bytes."""
    payload = Raw(bytes(random.Random(size).getrandbits(8) for _ in range(size)))
    if family == 4:
        ip = IP(src=src or "10.0.0.1", dst=dst or "10.0.0.2", tos=tos, id=77, flags="DF")
        l4 = {"udp": UDP(sport=4000, dport=53), "tcp": TCP(sport=4000, dport=80),
              "icmp": ICMP()}[proto]
    else:
        ip = IPv6(src=src or "2001:db8::1", dst=dst or "2001:db8::2", tc=tos, fl=0x12345)
        l4 = {"udp": UDP(sport=4000, dport=53), "tcp": TCP(sport=4000, dport=80),
              "icmp": ICMPv6EchoRequest()}[proto]
    return bytes(ip / l4 / payload)


def outer_header(family, inner, seq):
    """scapy's tunnel header with the fields our model chooses (so outputs compare byte for byte)."""
    ip = scapy_packet(inner)
    tos = ip.tos if ip.version == 4 else ip.tc
    if family == 4:
        df = bool(ip.flags.DF) if ip.version == 4 else True
        return IP(src="192.0.2.1", dst="192.0.2.2", tos=tos, id=seq & 0xFFFF, ttl=64,
                  flags="DF" if df else 0)
    return IPv6(src="2001:db8:f::1", dst="2001:db8:f::2", tc=tos, fl=0, hlim=64)


ENDPOINTS = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8:f::1", "2001:db8:f::2")}
CASES = [(alg, key_len, mode, family) for alg in ALGORITHMS for key_len in (16, 32)
         for mode in ("transport", "tunnel") for family in (4, 6)]


@pytest.mark.parametrize("alg,key_len,mode,family", CASES)
def test_both_directions(alg, key_len, mode, family):
    rig = Rig()
    key = os.urandom(key_len + 4)
    out_idx, in_idx, _ = rig.pair(spi=SPI, mode=mode, algorithm=alg, key=key,
                                  endpoints=ENDPOINTS[family] if mode == "tunnel" else None)
    for seq, (size, proto) in enumerate([(0, "udp"), (1, "tcp"), (2, "icmp"), (3, "udp"),
                                         (100, "tcp"), (1400, "udp")], start=1):
        packet = plain(family, size, proto, tos=0x2E)
        # Ours out, scapy in; and byte-for-byte the same as scapy's with the same IV.
        out, tag = rig.dp.outbound(packet, out_idx)
        assert tag["verdict"] == Verdict.OK and tag["seq"] == seq
        assert (tag["sa_valid"], tag["sa_index"]) == (1, out_idx)
        pack_tag(**tag)
        header = outer_header(family, packet, seq) if mode == "tunnel" else None
        ref = scapy_sa(alg, key, SPI, tunnel_header=header)
        assert out == scapy_encrypt(ref, packet, seq)
        assert scapy_decrypt(scapy_sa(alg, key, SPI, tunnel_header=header), out) == packet
        # scapy out (with a random IV, not the sequence number), ours in.
        theirs = scapy_encrypt(scapy_sa(alg, key, SPI, tunnel_header=header), packet, seq,
                               iv=os.urandom(8))
        got, tag = rig.dp.inbound(theirs)
        assert tag["verdict"] == Verdict.OK, tag
        assert got == packet
        assert (tag["sa_index"], tag["seq"], tag["version"]) == (in_idx, seq, 1)


def test_stock_and_cipher_api_scapy_agree():
    """AES-GCM-16 through both of scapy's GCM code paths gives the same packet, so the
    Cipher-API path used for the short ICVs is scapy's ESP as much as the stock one is."""
    key = os.urandom(20)
    packet = plain(4, 33)
    a = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI, stock=True), packet, 5)
    b = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI, stock=False), packet, 5)
    assert a == b
    # ...and the stock path really cannot take a short ICV (why helpers.py swaps it).
    stock12 = scapy_sa("aes-gcm-16", key, SPI, stock=True)
    stock12.crypt_icv_size = 12
    assert len(scapy_encrypt(stock12, packet, 5)) == len(a)


@pytest.mark.parametrize("inner,outer", [(4, 6), (6, 4)])
@pytest.mark.parametrize("alg", ("aes-gcm-16", "aes-gmac"))
def test_tunnel_across_families(inner, outer, alg):
    rig = Rig()
    out_idx, in_idx, key = rig.pair(spi=SPI, mode="tunnel", algorithm=alg,
                                    endpoints=ENDPOINTS[outer])
    packet = plain(inner, 64, tos=0x01)
    out, tag = rig.dp.outbound(packet, out_idx)
    header = outer_header(outer, packet, 1)
    assert out == scapy_encrypt(scapy_sa(alg, key, SPI, tunnel_header=header), packet, 1)
    assert scapy_decrypt(scapy_sa(alg, key, SPI, tunnel_header=header), out) == packet
    got, tag = rig.dp.inbound(out)
    assert got == packet and tag["verdict"] == Verdict.OK


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_ipv6_extension_headers_transport(alg):
    """ESP goes after Hop-by-Hop, Routing and the Destination Options before Routing, as in
    scapy (and Linux); inbound, those headers are skipped and kept."""
    rig = Rig()
    out_idx, in_idx, key = rig.pair(spi=SPI, algorithm=alg)
    packet = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
                   / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=["2001:db8::3"])
                   / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / Raw(b"x" * 21))
    out, tag = rig.dp.outbound(packet, out_idx)
    assert out == scapy_encrypt(scapy_sa(alg, key, SPI), packet, 1)
    theirs = scapy_encrypt(scapy_sa(alg, key, SPI), packet, 1)
    got, tag = rig.dp.inbound(theirs)
    assert tag["verdict"] == Verdict.OK and got == packet


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("mode", ("transport", "tunnel"))
def test_esn_across_2_32(alg, mode):
    """Outbound carries into the high half; inbound infers it (RFC 4303 appendix A) from scapy's
    packets, and the high half is in the AAD (scapy is told it per packet)."""
    start = (1 << 32) - 3
    rig = Rig()
    ends = ENDPOINTS[4] if mode == "tunnel" else None
    out_idx, in_idx, key = rig.pair(spi=SPI, algorithm=alg, mode=mode, esn=True, seq=start,
                                    endpoints=ends)
    packet = plain(4, 20)
    sent = []
    for seq in range(start + 1, start + 7):
        out, tag = rig.dp.outbound(packet, out_idx)
        assert tag["seq"] == seq and tag["verdict"] == Verdict.OK
        header = outer_header(4, packet, seq) if mode == "tunnel" else None
        assert scapy_decrypt(scapy_sa(alg, key, SPI, tunnel_header=header, esn=True), out,
                             seq, esn=True) == packet
        theirs = scapy_encrypt(scapy_sa(alg, key, SPI, tunnel_header=header, esn=True),
                               packet, seq, esn=True, iv=os.urandom(8))
        sent.append((seq, theirs))
    # Delivered out of order across the boundary, inside the window.
    for seq, pkt in [sent[1], sent[0], sent[4], sent[2], sent[5], sent[3]]:
        got, tag = rig.dp.inbound(pkt)
        assert (tag["verdict"], tag["seq"]) == (Verdict.OK, seq) and got == packet
    assert rig.model.slots[in_idx].seq == start + 6
    for seq, pkt in sent:
        got, tag = rig.dp.inbound(pkt)
        assert (tag["verdict"], tag["seq"], got) == (Verdict.REPLAY, seq, None)


def test_esn_wrong_high_half_fails_auth():
    """A packet whose high half is not what the receiver infers fails its ICV: the high half is
    authenticated although it is never sent."""
    rig = Rig()
    ref, key = rig.add(spi=SPI, esn=True, seq=(5 << 32) + 100)
    theirs = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI, esn=True), plain(4), (4 << 32) + 101,
                           esn=True)
    got, tag = rig.dp.inbound(theirs)
    assert tag["verdict"] == Verdict.AUTH_FAIL and tag["seq"] == (5 << 32) + 101


@pytest.mark.parametrize("window", [1, 32, 64, 128, 1024])
def test_window_edges(window):
    """Top T: T - W + 1 is the oldest accepted, T - W is a replay; T itself is a replay; above T
    is always accepted; every accepted number is a replay the second time."""
    rig = Rig(EngineParams(n_entries=4, window_max=max(64, window)))
    top = 5000
    ref, key = rig.add(spi=SPI, seq=top, replay_window=window)
    sa = scapy_sa("aes-gcm-16", key, SPI)
    packet = plain(6, 10)

    def deliver(seq):
        return rig.dp.inbound(scapy_encrypt(sa, packet, seq))[1]["verdict"]

    assert deliver(top) == Verdict.REPLAY
    assert deliver(top - window) == Verdict.REPLAY
    assert deliver(top - window + 1) == Verdict.OK or window == 1  # (window 1: that is T)
    assert deliver(top + 1) == Verdict.OK
    # The window moved by one: the old oldest is now out of it.
    assert deliver(top - window + 1) == Verdict.REPLAY
    assert deliver(top + 1) == Verdict.REPLAY
    # A jump of exactly W clears everything but the new top.
    assert deliver(top + 1 + window) == Verdict.OK
    if window > 1:
        assert deliver(top + 2) == Verdict.OK
    assert deliver(top + 1) == Verdict.REPLAY


def test_reordering_inside_window_random():
    """Random delivery order with duplicates: the model accepts exactly what a set-based
    reference accepts."""
    rng = random.Random(4)
    window = 64
    rig = Rig()
    ref, key = rig.add(spi=SPI, replay_window=window, algorithm="aes-gcm-8")
    sa = scapy_sa("aes-gcm-8", key, SPI)
    packet = plain(4, 8)
    wire = {seq: scapy_encrypt(sa, packet, seq) for seq in range(1, 301)}
    order = list(range(1, 301))
    for i in range(len(order)):  # local shuffles (reordering by up to ~80 places)
        j = min(len(order) - 1, i + rng.randrange(80))
        order[i], order[j] = order[j], order[i]
    order += rng.sample(range(1, 301), 60)  # replays
    seen, top = set(), 0
    for seq in order:
        expect_ok = seq not in seen and (seq > top or top - seq < window)
        got, tag = rig.dp.inbound(wire[seq])
        assert (tag["verdict"] == Verdict.OK) == expect_ok, (seq, top)
        if expect_ok:
            seen.add(seq)
            top = max(top, seq)
        else:
            assert tag["verdict"] == Verdict.REPLAY


def test_replay_window_disabled_accepts_replays():
    rig = Rig()
    ref, key = rig.add(spi=SPI, replay_window=0)
    wire = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI), plain(4), 7)
    for _ in range(3):
        assert rig.dp.inbound(wire)[1]["verdict"] == Verdict.OK
    assert rig.model.slots[ref.index].seq == 7
