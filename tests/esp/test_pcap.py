"""The pcap reader and writer, and taking frames apart and back together."""

import struct

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

from ipchan.sw.esp.pcap import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW, Record,
                                join_link, output_linktype, read_pcap, split_link, write_pcap)

SMALL = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / UDP() / Raw(b"x"))  # 29 bytes


def test_round_trip_with_scapy(tmp_path):
    frames = [Ether() / IP() / UDP() / Raw(b"a" * 100), Ether() / IPv6() / UDP()]
    wrpcap(str(tmp_path / "a.pcap"), frames)
    cap = read_pcap(tmp_path / "a.pcap")
    assert cap.linktype == LINKTYPE_ETHERNET and [r.data for r in cap.records] == \
        [bytes(f) for f in frames]
    write_pcap(tmp_path / "b.pcap", cap.linktype, cap.records)
    assert [bytes(p) for p in rdpcap(str(tmp_path / "b.pcap"))] == [bytes(f) for f in frames]


def test_big_endian_nanosecond(tmp_path):
    blob = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_IPV4)
    blob += struct.pack(">IIII", 7, 999999999, len(SMALL), len(SMALL)) + SMALL
    (tmp_path / "be.pcap").write_bytes(blob)
    cap = read_pcap(tmp_path / "be.pcap")
    assert cap.nanosecond and cap.records == (Record(7, 999999999, SMALL, len(SMALL)),)
    assert output_linktype(cap.linktype) == LINKTYPE_RAW


def test_ethernet_padding_trimmed_and_vlan_kept():
    frame = bytes(Ether(type=0x0800) / SMALL)
    padded = frame + bytes(60 - len(frame))
    header, packet = split_link(LINKTYPE_ETHERNET, padded)
    assert packet == SMALL and len(header) == 14
    tagged = bytes(Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=6, type=0x0800) / SMALL)
    header, packet = split_link(LINKTYPE_ETHERNET, tagged)
    assert packet == SMALL and len(header) == 22
    six = bytes(IPv6() / UDP())
    frame6 = join_link(LINKTYPE_ETHERNET, header, six)
    assert frame6[:20] == tagged[:20] and frame6[20:22] == b"\x86\xdd" and frame6.endswith(six)
    # Not trimmed when the frame is above the minimum (a truncated capture stays truncated).
    big = bytes(Ether() / IP() / Raw(bytes(100)))
    assert split_link(LINKTYPE_ETHERNET, big)[1] == big[14:]
    assert split_link(LINKTYPE_RAW, SMALL) == (b"", SMALL)
