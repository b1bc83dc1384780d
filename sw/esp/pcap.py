"""A small pcap (libpcap format) reader and writer for the IP packets of ``ipchan esp process``.

Link types read: Ethernet (1, with up to two 802.1Q/802.1ad tags), raw IP (101) and raw IPv4 /
IPv6 (228, 229); both byte orders, microsecond and nanosecond timestamps. pcapng is refused with a
hint to convert it. Every error names the file and the record.

:func:`split_link` takes a frame apart into its link-layer header and the IP packet the engine
sees; :func:`join_link` puts a processed packet back into a frame like the one it came in (the
Ethernet type follows the packet's IP version). Ethernet frames padded to the 60-byte minimum are
trimmed to the IP packet's own length; nothing else is trimmed, so a truncated capture reaches the
engine truncated (and comes out ``malformed``).
"""

import os
import struct
from dataclasses import dataclass


__all__ = ["PcapError", "Record", "Capture", "read_pcap", "write_pcap", "split_link",
           "join_link", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_IPV4", "LINKTYPE_IPV6"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
_LINKTYPES = {LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP", LINKTYPE_IPV4: "raw IPv4",
              LINKTYPE_IPV6: "raw IPv6"}

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_MAGIC_PCAPNG = 0x0A0D0D0A
#: Largest record accepted (libpcap's own limit for most link types).
MAX_RECORD = 262144

_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_ETH_VLAN = (0x8100, 0x88A8)
_ETH_MIN_FRAME = 60


class PcapError(ValueError):
    """A pcap file this module cannot read (or a packet it cannot write)."""


@dataclass(frozen=True)
class Record:
    ts_sec: int
    ts_frac: int
    data: bytes
    orig_len: int


@dataclass(frozen=True)
class Capture:
    linktype: int
    nanosecond: bool
    records: tuple


def read_pcap(path):
    """Read ``path`` whole; raise :class:`PcapError` naming the file and what is wrong."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise PcapError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(blob) < 24:
        raise PcapError(f"{name}: not a pcap file: {len(blob)} bytes is shorter than the "
                        f"24-byte file header")
    for endian in "<>":
        magic = struct.unpack(endian + "I", blob[:4])[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        if struct.unpack("<I", blob[:4])[0] == _MAGIC_PCAPNG:
            raise PcapError(f"{name}: pcapng is not supported; convert it with "
                            f"`editcap -F pcap {name} OUT.pcap`")
        raise PcapError(f"{name}: not a pcap file (magic number {blob[:4].hex()})")
    major, minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(endian + "HHiIII", blob[4:24])
    if major != 2:
        raise PcapError(f"{name}: pcap version {major}.{minor} is not supported (expected 2.4)")
    linktype &= 0xFFFF  # the upper bits carry FCS information, which the link types here lack
    if linktype not in _LINKTYPES:
        raise PcapError(f"{name}: link type {linktype} is not supported; expected one of "
                        + ", ".join(f"{k} ({v})" for k, v in _LINKTYPES.items()))
    records, offset = [], 24
    while offset < len(blob):
        n = len(records)
        if offset + 16 > len(blob):
            raise PcapError(f"{name}: packet {n} at byte {offset}: record header truncated "
                            f"({len(blob) - offset} of 16 bytes)")
        ts_sec, ts_frac, incl, orig = struct.unpack(endian + "IIII", blob[offset:offset + 16])
        if incl > MAX_RECORD:
            raise PcapError(f"{name}: packet {n} at byte {offset}: captured length {incl} is "
                            f"larger than {MAX_RECORD}")
        offset += 16
        if offset + incl > len(blob):
            raise PcapError(f"{name}: packet {n} at byte {offset - 16}: data truncated "
                            f"({len(blob) - offset} of {incl} bytes)")
        records.append(Record(ts_sec, ts_frac, blob[offset:offset + incl], orig))
        offset += incl
    return Capture(linktype, magic == _MAGIC_NS, tuple(records))


def pcap_bytes(linktype, records, nanosecond=False):
    """A whole little-endian pcap file as bytes."""
    if linktype not in _LINKTYPES:
        raise PcapError(f"link type {linktype} is not supported")
    out = [struct.pack("<IHHiIII", _MAGIC_NS if nanosecond else _MAGIC_US, 2, 4, 0, 0,
                       MAX_RECORD, linktype)]
    for rec in records:
        if len(rec.data) > MAX_RECORD:
            raise PcapError(f"packet of {len(rec.data)} bytes is larger than {MAX_RECORD}")
        out.append(struct.pack("<IIII", rec.ts_sec, rec.ts_frac, len(rec.data), len(rec.data)))
        out.append(rec.data)
    return b"".join(out)


def write_pcap(path, linktype, records, nanosecond=False):
    with open(path, "wb") as f:
        f.write(pcap_bytes(linktype, records, nanosecond))


def output_linktype(linktype):
    """The link type to write processed packets of a capture of ``linktype`` with: raw IPv4 and
    raw IPv6 become raw IP, because tunnel mode can change the address family."""
    return LINKTYPE_RAW if linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6) else linktype


def split_link(linktype, frame):
    """``(link header, IP packet)`` of one captured frame."""
    if linktype != LINKTYPE_ETHERNET:
        return b"", frame
    offset = 12
    while offset + 2 <= len(frame):
        ethertype = int.from_bytes(frame[offset:offset + 2], "big")
        if ethertype in _ETH_VLAN and offset < 20:
            offset += 4
            continue
        break
    offset = min(offset + 2, len(frame))
    header, packet = frame[:offset], frame[offset:]
    if len(frame) <= _ETH_MIN_FRAME and len(header) >= 14:
        ethertype = int.from_bytes(header[-2:], "big")
        if ethertype == _ETH_IPV4 and len(packet) >= 4:
            length = int.from_bytes(packet[2:4], "big")
        elif ethertype == _ETH_IPV6 and len(packet) >= 6:
            length = 40 + int.from_bytes(packet[4:6], "big")
        else:
            length = len(packet)
        if length < len(packet):
            packet = packet[:length]
    return header, packet


def join_link(linktype, header, packet):
    """A frame for ``packet`` built like the one ``header`` came from."""
    if linktype != LINKTYPE_ETHERNET:
        return packet
    if len(header) < 14:
        # A runt frame came in; make a plain Ethernet header with zero addresses.
        header = bytes(14)
    ethertype = _ETH_IPV6 if packet and packet[0] >> 4 == 6 else _ETH_IPV4
    return header[:-2] + ethertype.to_bytes(2, "big") + packet
