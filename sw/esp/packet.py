"""IPv4 and IPv6 headers as the ESP datapath reads and writes them.

Parsing is strict on purpose: the engine must never hand up, or encrypt, a packet whose headers it
did not understand. Every refusal raises :class:`PacketError` with the reason, and the datapath
turns that into the verdict ``malformed``. What is refused:

* an empty packet, or a version nibble other than 4 or 6;
* IPv4: fewer than 20 bytes, IHL below 5 or beyond the packet, a total length different from the
  packet's length (a truncated packet, or trailing bytes), a wrong header checksum, and, where the
  caller says so, a fragment (MF set or a fragment offset);
* IPv6: fewer than 40 bytes, a payload length different from the packet's length minus 40
  (payload length 0, a jumbogram, is refused too), and, where the caller walks the extension
  headers, a Fragment header, an extension header beyond the packet, or more than
  :data:`IPV6_MAX_EXT_HEADERS` extension headers.

IPv6 extension headers are walked in one of two ways (``ext=``):

* ``"find"`` (inbound): skip Hop-by-Hop, Routing and Destination Options headers until some other
  next header, which is then the payload's protocol (for ESP, 50).
* ``"transport"`` (outbound transport mode): where ESP goes in the chain. As Linux (and scapy's
  ``split_for_transport``) do: after Hop-by-Hop, Routing, and Destination Options headers that
  come before a Routing header; a Destination Options header after a Routing header is the first
  thing protected.
* ``"none"``: the fixed header only; the payload is everything after it (tunnel mode's inner
  packet, which the engine carries without looking into it).
"""

import ipaddress
import struct
from dataclasses import dataclass

from ipchan.hw import contract


__all__ = [
    "PacketError", "IpHeader", "parse_ip", "ipv4_checksum", "build_ipv4", "build_ipv6",
    "PROTO_HOPOPT", "PROTO_IPV4", "PROTO_IPV6", "PROTO_ROUTING", "PROTO_FRAGMENT", "PROTO_ESP",
    "PROTO_AH", "PROTO_NONE", "PROTO_DSTOPTS", "IPV6_MAX_EXT_HEADERS", "IP_MAX_TOTAL",
]

PROTO_HOPOPT = 0
PROTO_IPV4 = 4
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_NONE = 59
PROTO_DSTOPTS = 60

#: At most this many IPv6 extension headers before ESP (inbound) or before the split point
#: (outbound transport): the gateware's header parser is built for this bound (the contract's).
IPV6_MAX_EXT_HEADERS = contract.IPV6_MAX_EXT_HEADERS
#: Largest IPv4 total length and IPv6 payload length (no jumbograms).
IP_MAX_TOTAL = contract.IP_MAX_PACKET

_SKIPPABLE = (PROTO_HOPOPT, PROTO_ROUTING, PROTO_DSTOPTS)


class PacketError(ValueError):
    """A packet the engine does not accept; the message says why."""


def ipv4_checksum(header):
    """The IPv4 header checksum of ``header`` (its checksum field must read zero)."""
    if len(header) % 2:
        raise ValueError(f"IPv4 header length must be even, not {len(header)}")
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class IpHeader:
    """A parsed packet: the headers the engine keeps (``header``) and what follows them.

    ``header`` is the IPv4 header with its options, or the IPv6 fixed header with the extension
    headers that stay in front of the payload; ``proto`` is the protocol of ``payload``, read from
    the byte at ``proto_offset`` in ``header``.
    """
    version: int
    header: bytes
    proto: int
    proto_offset: int
    payload: bytes
    src: object
    dst: object
    #: IPv4 TOS byte or IPv6 traffic class.
    tos: int
    #: IPv4 DF bit (False for IPv6).
    df: bool
    fragment: bool

    def rebuild(self, proto, payload):
        """This packet with ``payload`` (of protocol ``proto``) in place of its own: the protocol
        field, the total or payload length and the IPv4 header checksum are rewritten."""
        header = bytearray(self.header)
        header[self.proto_offset] = proto
        if self.version == 4:
            total = len(header) + len(payload)
            if total > IP_MAX_TOTAL:
                raise PacketError(f"IPv4 packet would be {total} bytes, more than {IP_MAX_TOTAL}")
            header[2:4] = total.to_bytes(2, "big")
            header[10:12] = b"\0\0"
            header[10:12] = ipv4_checksum(bytes(header)).to_bytes(2, "big")
        else:
            plen = len(header) - 40 + len(payload)
            if plen > IP_MAX_TOTAL:
                raise PacketError(f"IPv6 payload length would be {plen}, more than {IP_MAX_TOTAL}")
            header[4:6] = plen.to_bytes(2, "big")
        return bytes(header) + bytes(payload)


def parse_ip(packet, *, ext="none", allow_fragments=False):
    """Parse ``packet`` (bytes) strictly; see the module docstring for ``ext`` and what is refused."""
    if ext not in ("none", "find", "transport"):
        raise ValueError(f"Extension-header walk must be 'none', 'find' or 'transport', not {ext!r}")
    packet = bytes(packet)
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        return _parse_ipv4(packet, allow_fragments)
    if version == 6:
        return _parse_ipv6(packet, ext, allow_fragments)
    raise PacketError(f"IP version {version} (expected 4 or 6)")


def _parse_ipv4(packet, allow_fragments):
    if len(packet) < 20:
        raise PacketError(f"IPv4 packet of {len(packet)} bytes is shorter than a header (20)")
    ihl = (packet[0] & 0xF) * 4
    if ihl < 20:
        raise PacketError(f"IPv4 header length {ihl} is below 20")
    if ihl > len(packet):
        raise PacketError(f"IPv4 header length {ihl} is beyond the packet ({len(packet)} bytes)")
    total = int.from_bytes(packet[2:4], "big")
    if total != len(packet):
        raise PacketError(f"IPv4 total length {total} differs from the packet's {len(packet)} bytes")
    if ipv4_checksum(packet[:ihl]) != 0:
        raise PacketError("IPv4 header checksum is wrong")
    flags_frag = int.from_bytes(packet[6:8], "big")
    fragment = bool(flags_frag & 0x2000) or bool(flags_frag & 0x1FFF)
    if fragment and not allow_fragments:
        raise PacketError("IPv4 fragment (reassemble before ESP processing)")
    return IpHeader(
        version=4, header=packet[:ihl], proto=packet[9], proto_offset=9, payload=packet[ihl:],
        src=ipaddress.IPv4Address(packet[12:16]), dst=ipaddress.IPv4Address(packet[16:20]),
        tos=packet[1], df=bool(flags_frag & 0x4000), fragment=fragment)


def _parse_ipv6(packet, ext, allow_fragments):
    if len(packet) < 40:
        raise PacketError(f"IPv6 packet of {len(packet)} bytes is shorter than a header (40)")
    plen = int.from_bytes(packet[4:6], "big")
    if plen == 0:
        raise PacketError("IPv6 payload length 0 (jumbograms and empty payloads are refused)")
    if plen != len(packet) - 40:
        raise PacketError(f"IPv6 payload length {plen} differs from the packet's "
                          f"{len(packet) - 40} bytes after the header")
    nh, nh_offset, offset, count, seen_routing = packet[6], 6, 40, 0, False
    if ext != "none":
        while True:
            if nh == PROTO_FRAGMENT and not (ext == "transport" and allow_fragments):
                raise PacketError("IPv6 Fragment header (reassemble before ESP processing)")
            if nh not in _SKIPPABLE:
                break
            if ext == "transport" and nh == PROTO_DSTOPTS and seen_routing:
                break  # Destination Options after a Routing header: protected, inside ESP
            if count == IPV6_MAX_EXT_HEADERS:
                raise PacketError(f"more than {IPV6_MAX_EXT_HEADERS} IPv6 extension headers")
            if offset + 8 > len(packet):
                raise PacketError(f"IPv6 extension header at byte {offset} is beyond the packet")
            length = (packet[offset + 1] + 1) * 8
            if offset + length > len(packet):
                raise PacketError(f"IPv6 extension header at byte {offset} ({length} bytes) is "
                                  f"beyond the packet")
            seen_routing = seen_routing or nh == PROTO_ROUTING
            nh, nh_offset = packet[offset], offset
            offset += length
            count += 1
    flow = int.from_bytes(packet[0:4], "big")
    return IpHeader(
        version=6, header=packet[:offset], proto=nh, proto_offset=nh_offset,
        payload=packet[offset:], src=ipaddress.IPv6Address(packet[8:24]),
        dst=ipaddress.IPv6Address(packet[24:40]), tos=(flow >> 20) & 0xFF, df=False,
        fragment=nh == PROTO_FRAGMENT)


def build_ipv4(src, dst, proto, payload, *, tos=0, ident=0, df=False, ttl=64):
    """An IPv4 packet with a 20-byte header (no options) and a correct checksum."""
    total = 20 + len(payload)
    if total > IP_MAX_TOTAL:
        raise PacketError(f"IPv4 packet would be {total} bytes, more than {IP_MAX_TOTAL}")
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, total, ident & 0xFFFF,
                                   0x4000 if df else 0, ttl, proto, 0,
                                   ipaddress.IPv4Address(src).packed,
                                   ipaddress.IPv4Address(dst).packed))
    header[10:12] = ipv4_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + bytes(payload)


def build_ipv6(src, dst, nh, payload, *, tclass=0, flow=0, hlim=64):
    """An IPv6 packet with no extension headers."""
    if len(payload) > IP_MAX_TOTAL:
        raise PacketError(f"IPv6 payload length would be {len(payload)}, more than {IP_MAX_TOTAL}")
    first = (6 << 28) | ((tclass & 0xFF) << 20) | (flow & 0xFFFFF)
    return struct.pack("!IHBB16s16s", first, len(payload), nh, hlim,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + bytes(payload)
