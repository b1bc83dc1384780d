"""Verdicts, tags, counters and state changes of the datapath model, one rule at a time.

Packets with authentic but wrong contents (bad padding, a bad next header, TFC padding, dummy
packets) are sealed here by hand with cryptography's AESGCM, independently of the model."""

import os
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from ipchan.hw.contract import (TAG_FIELDS, Direction, EngineParams, Verdict,
                                pack_tag, unpack_tag)
from ipchan.sw.esp.datapath import EspDatapathModel
from ipchan.sw.driver import SaConfig
from ipchan.sw.esp.packet import build_ipv4, ipv4_checksum

from .helpers import Rig, scapy_encrypt, scapy_sa, seal, trailer

SPI = 0x4242
V4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=9) / Raw(b"payload!"))
V6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=7, dport=9) / Raw(b"six"))


def test_tag_has_exactly_the_contract_fields_and_packs():
    rig = Rig()
    out_idx, in_idx, key = rig.pair(spi=SPI)
    for out, tag in (rig.dp.outbound(V4, out_idx), rig.dp.inbound(b"\x45"),
                     rig.dp.inbound(rig.dp.outbound(V6, out_idx)[0])):
        assert list(tag) == [name for name, _, _ in TAG_FIELDS]
        assert unpack_tag(pack_tag(**tag)) == {k: int(v) for k, v in tag.items()}


def test_no_sa_unknown_spi_and_outbound_spi():
    rig = Rig()
    out_ref, key = rig.add(spi=SPI, direction="outbound")
    packet = scapy_encrypt(scapy_sa("aes-gcm-16", key, SPI), V4, 1)
    out, tag = rig.dp.inbound(packet)  # an outbound SA is never found by the lookup port
    assert out is None
    assert tag == {"verdict": Verdict.NO_SA, "sa_valid": 0, "sa_index": 0, "sa_generation": 0,
                   "version": 1, "seq": 0}
    assert rig.dp.counters[(Direction.INBOUND, Verdict.NO_SA)] == 1


def test_outbound_no_sa():
    rig = Rig(EngineParams(n_entries=4))
    in_ref, _ = rig.add(spi=SPI)
    assert rig.dp.outbound(V4, in_ref.index)[1]["verdict"] == Verdict.NO_SA   # inbound SA
    assert rig.dp.outbound(V4, 3)[1]["verdict"] == Verdict.NO_SA              # free slot
    assert rig.dp.outbound(V4, 4)[1]["verdict"] == Verdict.NO_SA              # beyond table
    with pytest.raises(ValueError, match="SA index must fit the tag's 16 bits, not 65536"):
        rig.dp.outbound(V4, 1 << 16)
    with pytest.raises(TypeError, match="SA index must be an integer, not '1'"):
        rig.dp.outbound(V4, "1")
    with pytest.raises(TypeError, match="Packet must be bytes, not str"):
        rig.dp.inbound("packet")


def test_visibility_version_and_generation():
    """A staged SA is invisible, a commit makes it visible under the new version, a staged
    delete keeps it visible, and a reused slot carries a new generation and fresh counters."""
    rig = Rig(EngineParams(n_entries=2))
    ref, key = rig.add(spi=SPI, commit=False)
    sa = scapy_sa("aes-gcm-16", key, SPI)
    assert rig.dp.inbound(scapy_encrypt(sa, V4, 1))[1]["verdict"] == Verdict.NO_SA
    rig.engine.commit()
    out, tag = rig.dp.inbound(scapy_encrypt(sa, V4, 1))
    assert out == V4 and (tag["version"], tag["sa_generation"]) == (1, ref.generation)
    rig.engine.delete(ref.index)
    assert rig.dp.inbound(scapy_encrypt(sa, V4, 2))[1]["verdict"] == Verdict.OK
    assert rig.dp.sa_counters(ref.index)[Verdict.OK] == 2
    rig.engine.commit()
    assert rig.dp.inbound(scapy_encrypt(sa, V4, 3))[1] == {
        "verdict": Verdict.NO_SA, "sa_valid": 0, "sa_index": 0, "sa_generation": 0,
        "version": 2, "seq": 0}
    rig.engine.bump_version()
    ref2, key2 = rig.add(spi=SPI)           # slot 1 first (FIFO free list), then slot 0 again
    ref3, key3 = rig.add(spi=SPI + 1)
    assert ref3.index == ref.index and ref3.generation == ref.generation + 1
    assert rig.dp.sa_counters(ref3.index)[Verdict.OK] == 0
    out, tag = rig.dp.inbound(scapy_encrypt(scapy_sa("aes-gcm-16", key3, SPI + 1), V4, 1))
    assert (tag["sa_index"], tag["sa_generation"], tag["version"]) == (ref.index,
                                                                       ref.generation + 1, 5)


@pytest.mark.parametrize("esn,last", [(False, (1 << 32) - 2), (True, (1 << 64) - 2)])
def test_seq_overflow(esn, last):
    rig = Rig()
    out_idx, in_idx, key = rig.pair(spi=SPI, esn=esn, seq=last - 5)
    rig.model.slots[in_idx].seq = last - 5  # the receiver is where the sender is
    for seq in range(last - 4, last + 2):
        out, tag = rig.dp.outbound(V4, out_idx)
        assert tag["verdict"] == Verdict.OK and tag["seq"] == seq
        assert rig.dp.inbound(out) == (V4, {**tag, "sa_index": in_idx})
    for _ in range(3):
        out, tag = rig.dp.outbound(V4, out_idx)
        assert out is None
        assert tag == {"verdict": Verdict.SEQ_OVERFLOW, "sa_valid": 1, "sa_index": out_idx,
                       "sa_generation": 1, "version": 1, "seq": last + 1}
    assert rig.model.slots[out_idx].seq == last + 1
    assert rig.dp.counters[(Direction.OUTBOUND, Verdict.SEQ_OVERFLOW)] == 3
    assert rig.dp.sa_counters(out_idx)[Verdict.SEQ_OVERFLOW] == 3


def _v4_with(**changes):
    pkt = IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / Raw(bytes(40))
    for k, v in changes.items():
        setattr(pkt, k, v)
    return bytes(pkt)


@pytest.mark.parametrize("packet", [
    b"", b"\x45", b"\x00" * 40, b"\x55" + bytes(39),
    _v4_with(proto=17),                               # not ESP
    _v4_with(flags="MF"), _v4_with(frag=3),           # fragments
    _v4_with(len=100), _v4_with(len=30),              # length mismatch
    _v4_with(chksum=1),                               # checksum
    _v4_with(ihl=4), _v4_with(ihl=15),                # header length
    bytes(IP(src="1.1.1.1", dst="2.2.2.2", proto=50) / Raw(b"1234567")),  # short ESP header
    bytes(IPv6(src="::1", dst="::2", nh=50) / Raw(bytes(40)))[:-1],       # plen mismatch
    bytes(IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(nh=50) / Raw(bytes(40))),
    bytes(IPv6(src="::1", dst="::2", nh=0, plen=0) / Raw(bytes(40))),
])
def test_inbound_malformed_before_lookup(packet):
    rig = Rig()
    out, tag = rig.dp.inbound(packet)
    assert out is None
    assert tag == {"verdict": Verdict.MALFORMED, "sa_valid": 0, "sa_index": 0,
                   "sa_generation": 0, "version": 0, "seq": 0}
    assert rig.model.counters["CNT_LOOKUPS"] == 0


def test_inbound_too_short_for_the_icv_is_malformed_and_counted_for_the_sa():
    rig = Rig()
    ref, key = rig.add(spi=SPI, algorithm="aes-gcm-16")
    esp = struct.pack("!II", SPI, 1) + bytes(8 + 2 + 15)
    out, tag = rig.dp.inbound(build_ipv4("192.0.2.1", "192.0.2.2", 50, esp))
    assert tag["verdict"] == Verdict.MALFORMED and tag["sa_valid"] == 0
    assert rig.dp.sa_counters(ref.index)[Verdict.MALFORMED] == 1
    # One byte more holds an ICV: then it is judged by the ICV.
    esp += b"\0"
    assert rig.dp.inbound(build_ipv4("192.0.2.1", "192.0.2.2", 50, esp))[1]["verdict"] == \
        Verdict.AUTH_FAIL


@pytest.mark.parametrize("alg", ["aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gmac"])
def test_auth_fail_does_not_move_the_window(alg):
    rig = Rig()
    ref, key = rig.add(spi=SPI, algorithm=alg)
    good = seal(key, SPI, 9, trailer(V4[20:], 17), alg=alg)
    for i in range(20, len(good)):  # every byte from the SPI on is authenticated
        bad = bytearray(good)
        bad[i] ^= 0x10
        out, tag = rig.dp.inbound(bytes(bad))
        assert out is None and tag["verdict"] in (Verdict.AUTH_FAIL, Verdict.NO_SA,
                                                  Verdict.REPLAY), i
        if 20 <= i < 24:
            assert tag["verdict"] == Verdict.NO_SA
    assert rig.model.slots[ref.index].seq == 0
    out, tag = rig.dp.inbound(good)
    assert tag["verdict"] == Verdict.OK and out[20:] == V4[20:] and out[9] == 17


def test_padding_and_trailer_checks():
    rig = Rig()
    ref, key = rig.add(spi=SPI)
    data = V4[20:]
    body = bytearray(trailer(data, 17, pad=6))
    body[len(data) + 3] = 9                       # padding 1,2,3,9,5,6
    out, tag = rig.dp.inbound(seal(key, SPI, 1, bytes(body)))
    assert tag["verdict"] == Verdict.MALFORMED and tag["sa_valid"] == 0 and tag["seq"] == 0
    assert rig.model.slots[ref.index].seq == 0    # the window did not move
    bad_len = data[:2] + bytes((3, 17))            # pad length 3 but only 2 bytes before it
    assert rig.dp.inbound(seal(key, SPI, 1, bad_len))[1]["verdict"] == Verdict.MALFORMED
    # Any amount of correct padding up to 255 is fine, aligned or not.
    out, tag = rig.dp.inbound(seal(key, SPI, 1, trailer(data, 17, pad=255)))
    assert tag["verdict"] == Verdict.OK and out[20:] == data
    assert rig.dp.sa_counters(ref.index) == {**{v: 0 for v in Verdict}, Verdict.OK: 1,
                                             Verdict.MALFORMED: 2}


def test_tunnel_next_header_inner_packet_and_tfc_padding():
    rig = Rig()
    ref, key = rig.add(spi=SPI, mode="tunnel")
    cases = [
        (trailer(V4, 6), Verdict.MALFORMED),           # not 4, 41 or 59
        (trailer(V4, 41), Verdict.MALFORMED),          # says IPv6, is IPv4
        (trailer(V6[:-1], 41), Verdict.MALFORMED),     # inner shorter than it says
        (trailer(V4[:10] + b"\0\0" + V4[12:], 4), Verdict.MALFORMED),  # inner checksum
        (trailer(V4 + bytes(13), 4), Verdict.OK),      # TFC padding, stripped
        (trailer(V6 + b"\xff" * 7, 41), Verdict.OK),
    ]
    for seq, (body, verdict) in enumerate(cases, start=1):
        out, tag = rig.dp.inbound(seal(key, SPI, seq, body, outer="v6"))
        assert tag["verdict"] == verdict, seq
        if verdict == Verdict.OK:
            assert out in (V4, V6)


def test_transport_next_header_is_restored_with_options_kept():
    rig = Rig()
    ref, key = rig.add(spi=SPI)
    # An IPv4 header with 4 bytes of options (NOP NOP NOP EOL) around an ESP payload.
    body = trailer(b"hello", 253)
    esp_pkt = seal(key, SPI, 1, body)
    header = bytearray(esp_pkt[:20] + b"\x01\x01\x01\x00")
    header[0] = 0x46
    header[2:4] = (len(esp_pkt) + 4).to_bytes(2, "big")
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header)).to_bytes(2, "big")
    out, tag = rig.dp.inbound(bytes(header) + esp_pkt[20:])
    assert tag["verdict"] == Verdict.OK
    assert out[24:] == b"hello" and out[9] == 253 and out[20:24] == b"\x01\x01\x01\x00"
    assert int.from_bytes(out[2:4], "big") == len(out) == 29
    assert ipv4_checksum(out[:24]) == 0


def test_dummy_packet_is_ok_dropped_and_moves_the_window():
    rig = Rig()
    ref, key = rig.add(spi=SPI, mode="tunnel")
    out, tag = rig.dp.inbound(seal(key, SPI, 5, trailer(os.urandom(30), 59)))
    assert out is None and tag["verdict"] == Verdict.OK and tag["seq"] == 5
    assert rig.model.slots[ref.index].seq == 5
    assert rig.dp.inbound(seal(key, SPI, 5, trailer(V4, 4)))[1]["verdict"] == Verdict.REPLAY


def test_esn_underflow_at_start_is_replay():
    """With T = 5 and W = 64, a low half near 2^32 belongs to the epoch before the first."""
    rig = Rig()
    ref, key = rig.add(spi=SPI, esn=True, seq=5)
    out, tag = rig.dp.inbound(seal(key, SPI, 0xFFFFFFF0, trailer(b"x", 17), esn=True))
    assert tag["verdict"] == Verdict.REPLAY
    assert tag["seq"] == (0xFFFFFFFF << 32) | 0xFFFFFFF0


def test_outbound_malformed_and_limits():
    ends = ("192.0.2.1", "192.0.2.2")
    rig = Rig()
    tr, _ = rig.add(spi=SPI, direction="outbound")
    tu, _ = rig.add(spi=SPI + 1, direction="outbound", mode="tunnel", endpoints=ends)
    bad_sum = bytearray(V4)
    bad_sum[10] ^= 1
    frag = bytes(IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP() / Raw(b"f"))
    big = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(65535 - 28 - 30)))
    for index in (tr.index, tu.index):
        assert rig.dp.outbound(bytes(bad_sum), index)[1]["verdict"] == Verdict.MALFORMED
        assert rig.dp.outbound(big, index)[1]["verdict"] == Verdict.MALFORMED
        assert rig.model.slots[index].seq == 0  # nothing consumed
    assert rig.dp.outbound(frag, tr.index)[1]["verdict"] == Verdict.MALFORMED
    assert rig.dp.outbound(frag, tu.index)[1]["verdict"] == Verdict.OK  # tunnels carry fragments
    # The biggest transport packet that fits: 20 + ESP (8 + IV 8 + 8 + n + 2 + ICV 16), with
    # the ESP payload a multiple of 4, is at most 65532 bytes; one payload byte more needs 3
    # bytes of padding and would make 65536.
    fits = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(65470)))
    out, tag = rig.dp.outbound(fits, tr.index)
    assert tag["verdict"] == Verdict.OK and len(out) == 65532
    too_big = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(65471)))
    assert rig.dp.outbound(too_big, tr.index)[1]["verdict"] == Verdict.MALFORMED


def test_outbound_tunnel_endpoints_checked():
    """Without endpoints the slot holds zeros, and the outer header says so."""
    rig = Rig()
    ref, _ = rig.add(spi=SPI, direction="outbound", mode="tunnel")
    out, tag = rig.dp.outbound(V4, ref.index)
    assert tag["verdict"] == Verdict.OK and out[12:20] == bytes(8)
    with pytest.raises(ValueError, match="one address family, not 192.0.2.1 and 2001:db8::1"):
        rig.add(spi=SPI, direction="outbound", mode="tunnel",
                endpoints=("192.0.2.1", "2001:db8::1"))
    with pytest.raises(ValueError, match="Tunnel endpoints come in pairs"):
        SaConfig(spi=SPI, direction="inbound", mode="tunnel", algorithm="aes-gmac",
                 key=bytes(20), src="192.0.2.1")


def test_tunnel_endpoints_live_in_the_slot():
    """The outer header comes from the slot (SA_SRC*/SA_DST*), read back by READ_ENTRY, and a
    released slot forgets them."""
    rig = Rig()
    ref, _ = rig.add(spi=SPI, direction="outbound", mode="tunnel",
                     endpoints=("2001:db8::1", "2001:db8::2"))
    info = rig.engine.read_entry(ref.index)
    assert (str(info.src), str(info.dst)) == ("2001:db8::1", "2001:db8::2")
    out, tag = rig.dp.outbound(V4, ref.index)
    assert tag["verdict"] == Verdict.OK and out[0] >> 4 == 6 and out[8:24] == info.src.packed
    rig.engine.delete(ref.index)
    rig.engine.commit()
    assert (rig.model.slots[ref.index].src, rig.model.slots[ref.index].dst) == (0, 0)


def test_counters_by_direction_and_verdict():
    rig = Rig()
    out_idx, in_idx, key = rig.pair(spi=SPI)
    packets = [rig.dp.outbound(V4, out_idx)[0] for _ in range(3)]
    rig.dp.inbound(packets[1])
    rig.dp.inbound(packets[1])
    rig.dp.inbound(packets[0])
    rig.dp.inbound(b"junk")
    c = rig.dp.counters
    assert c[(Direction.OUTBOUND, Verdict.OK)] == 3
    assert (c[(Direction.INBOUND, Verdict.OK)], c[(Direction.INBOUND, Verdict.REPLAY)],
            c[(Direction.INBOUND, Verdict.MALFORMED)]) == (2, 1, 1)
    assert rig.dp.sa_counters(in_idx)[Verdict.REPLAY] == 1
    assert rig.dp.sa_counters(out_idx)[Verdict.OK] == 3


def test_constructor_checks():
    with pytest.raises(TypeError, match="Engine model must be an EngineModel, not 3"):
        EspDatapathModel(3)
