"""Strict IP parsing and building: every refusal has its reason."""

import ipaddress

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.packet import Raw

from ipchan.sw.esp.packet import (IPV6_MAX_EXT_HEADERS, PacketError, build_ipv4, build_ipv6,
                                  ipv4_checksum, parse_ip)


def test_build_ipv4_matches_scapy():
    ours = build_ipv4("10.0.0.1", "10.0.0.2", 17, b"abcdefgh", tos=0xB8, ident=513, df=True,
                      ttl=9)
    ref = bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=17, tos=0xB8, id=513, flags="DF",
                   ttl=9) / Raw(b"abcdefgh"))
    assert ours == ref
    assert ipv4_checksum(ours[:20]) == 0


def test_build_ipv6_matches_scapy():
    ours = build_ipv6("2001:db8::1", "2001:db8::2", 50, b"xyz", tclass=0x2E, flow=5, hlim=3)
    ref = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=50, tc=0x2E, fl=5, hlim=3)
                / Raw(b"xyz"))
    assert ours == ref


def test_parse_and_rebuild_ipv4():
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP()
                / Raw(b"hi"))
    ip = parse_ip(pkt)
    assert (ip.version, ip.proto, len(ip.header), ip.src) == (4, 17, 24,
                                                               ipaddress.ip_address("10.0.0.1"))
    again = ip.rebuild(6, b"12345")
    assert again[9] == 6 and len(again) == 29 == int.from_bytes(again[2:4], "big")
    assert ipv4_checksum(again[:24]) == 0
    with pytest.raises(PacketError, match="IPv4 packet would be 65536 bytes, more than 65535"):
        ip.rebuild(6, bytes(65536 - 24))


def test_ipv6_extension_walks():
    chain = (IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
             / IPv6ExtHdrRouting(addresses=["::3"]) / IPv6ExtHdrDestOpt() / UDP() / Raw(b"p"))
    pkt = bytes(chain)
    found = parse_ip(pkt, ext="find")
    assert found.proto == 17 and len(found.header) == 40 + 8 + 8 + 24 + 8
    split = parse_ip(pkt, ext="transport")
    assert split.proto == 60 and len(split.header) == 40 + 8 + 8 + 24
    assert split.header[split.proto_offset] == 60
    assert parse_ip(pkt).proto == 0 and len(parse_ip(pkt).header) == 40
    rebuilt = split.rebuild(50, b"E" * 10)
    assert rebuilt[40 + 16] == 50 and int.from_bytes(rebuilt[4:6], "big") == 8 + 8 + 24 + 10


@pytest.mark.parametrize("packet,message", [
    (b"", "empty packet"),
    (b"\x75" + bytes(30), "IP version 7 (expected 4 or 6)"),
    (b"\x45" + bytes(10), "IPv4 packet of 11 bytes is shorter than a header (20)"),
    (bytes(IP(ihl=4) / Raw(bytes(8))), "IPv4 header length 16 is below 20"),
    (bytes(IP(ihl=15)), "IPv4 header length 60 is beyond the packet (20 bytes)"),
    (bytes(IP(len=30) / Raw(bytes(8))), "IPv4 total length 30 differs from the packet's 28 bytes"),
    (bytes(IP(chksum=0x1234)), "IPv4 header checksum is wrong"),
    (bytes(IP(flags="MF")), "IPv4 fragment (reassemble before ESP processing)"),
    (bytes(IP(frag=1)), "IPv4 fragment"),
    (b"\x60" + bytes(20), "IPv6 packet of 21 bytes is shorter than a header (40)"),
    (bytes(IPv6()), "IPv6 payload length 0 (jumbograms and empty payloads are refused)"),
    (bytes(IPv6(plen=9) / Raw(bytes(8))), "IPv6 payload length 9 differs from the packet's 8"),
])
def test_refusals(packet, message):
    with pytest.raises(PacketError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_ip(packet, ext="find")


def test_ipv6_extension_refusals():
    frag = bytes(IPv6() / IPv6ExtHdrFragment() / UDP())
    with pytest.raises(PacketError, match="IPv6 Fragment header"):
        parse_ip(frag, ext="find")
    many = IPv6()
    for _ in range(IPV6_MAX_EXT_HEADERS + 1):
        many = many / IPv6ExtHdrDestOpt()
    with pytest.raises(PacketError, match="more than 4 IPv6 extension headers"):
        parse_ip(bytes(many / UDP()), ext="find")
    cut = bytes(IPv6(nh=0, plen=4) / Raw(b"\x11\x00\x00\x00"))
    with pytest.raises(PacketError, match="IPv6 extension header at byte 40 is beyond the packet"):
        parse_ip(cut, ext="find")
    long_ext = bytes(IPv6(nh=60) / Raw(b"\x11\x05" + bytes(14)))
    with pytest.raises(PacketError, match=r"at byte 40 \(48 bytes\) is beyond the packet"):
        parse_ip(long_ext, ext="find")
    with pytest.raises(ValueError, match="Extension-header walk must be 'none', 'find' or "
                                         "'transport', not 'all'"):
        parse_ip(frag, ext="all")
