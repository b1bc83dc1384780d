"""The link protocol: register access over a byte stream.

The frames are defined in :mod:`ipchan.hw.contract` (``LinkOp``, ``LinkStatus``); this module is
their one Python encoder and decoder. The same frames travel over the Unix socket of a Verilator
simulation (:mod:`ipchan.sw.socket_transport`) and over a board's UART to the gateware bridge, so
both transports build on :class:`LinkClient` and differ only in how bytes are moved.

Requests may be pipelined: a client can send many requests before reading the first answer, and
the far end answers them in order. :meth:`LinkClient.transact` does so in bounded batches.

``PACKET`` runs one packet through the ESP datapath of a far end that has one (a Verilator
simulation of an engine built with ``esp=``): :func:`encode_packet`, :func:`decode_packet_request`,
:func:`encode_packet_response`, :func:`decode_packet_response` and :meth:`LinkClient.packets`.
Its frames carry their own length, so it is not in :data:`RESPONSE_LENGTH`.
"""

import struct

from ..hw import contract
from ..hw.contract import LinkOp, LinkStatus
from .transport import BusError as _TransportBusError


__all__ = [
    "LinkOp", "LinkStatus", "ADDR_MAX", "DATA_MAX", "RESET_CYCLES",
    "REQUEST_LENGTH", "RESPONSE_LENGTH",
    "LinkError", "BusError", "ProtocolError", "LinkClosed",
    "encode_write", "encode_read", "encode_reset", "encode_cycles", "encode_request",
    "decode_request", "encode_response", "decode_response", "LinkClient",
    "PACKET_HEADER_LENGTH", "PACKET_MAX", "TAG_BEAT_BYTES", "PacketAnswer", "PacketRefused",
    "encode_packet", "decode_packet_request", "encode_packet_response", "decode_packet_response",
    "pack_tag_beat", "unpack_tag_beat", "SA_INDEX_MAX",
]


#: Addresses travel as u16, data as u32.
ADDR_MAX = 0xFFFF
DATA_MAX = 0xFFFF_FFFF
#: Cycles a RESET request holds the engine in reset (the contract's description of RESET).
RESET_CYCLES = contract.LINK_RESET_CYCLES

#: Bytes in a request, opcode included. PACKET's is the opcode alone: the header
#: (:data:`PACKET_HEADER_LENGTH`) and the packet follow it, which a far end without a datapath
#: (the board's bridge) never reads: it answers the opcode UNKNOWN.
REQUEST_LENGTH = {LinkOp.WRITE: 7, LinkOp.READ: 3, LinkOp.RESET: 1, LinkOp.CYCLES: 1,
                  LinkOp.PACKET: 1}
#: Bytes in the answer to a register request, status included. An UNKNOWN status is always a
#: single byte. (PACKET answers carry their own length.)
RESPONSE_LENGTH = {LinkOp.WRITE: 1, LinkOp.READ: 5, LinkOp.RESET: 1, LinkOp.CYCLES: 9}

#: PACKET request: opcode, direction:u8, sa_index:u16, length:u16, then the bytes.
PACKET_HEADER_LENGTH = 6
#: The longest packet a PACKET request (or answer) carries.
PACKET_MAX = 0xFFFF
#: Bytes of the tag beat in a PACKET answer (the contract's tag, then ``handed_up``).
TAG_BEAT_BYTES = contract.LINK_TAG_BEAT_BYTES
#: Largest ``sa_index`` the link carries.
SA_INDEX_MAX = 0xFFFF

_STATUS_TEXT = {
    LinkStatus.OKAY: "OKAY",
    LinkStatus.SLVERR: "SLVERR (the register refused the access)",
    LinkStatus.DECERR: "DECERR (no register at that address)",
    LinkStatus.UNKNOWN: "UNKNOWN (the far end did not understand the request)",
}


class LinkError(Exception):
    """Anything that went wrong on a link."""


class BusError(_TransportBusError):
    """The engine answered a register access with an AXI4-Lite error response.

    It is the driver's :class:`ipchan.sw.transport.BusError` (``addr``, ``resp`` the response's
    name), with the operation and the :class:`LinkStatus` too. The link itself is fine and stays
    usable.
    """

    def __init__(self, op, addr, status):
        self.op = LinkOp(op)
        self.status = LinkStatus(status)
        super().__init__(addr, self.status.name)
        verb = "write to" if self.op == LinkOp.WRITE else "read of"
        self._text = f"Register {verb} {addr:#05x} answered {_STATUS_TEXT[self.status]}"

    def __str__(self):
        return self._text


class ProtocolError(LinkError):
    """The far end answered something the protocol does not allow: the stream is out of step."""


class LinkClosed(LinkError):
    """The far end closed the link."""


def _check_addr(addr):
    if not isinstance(addr, int) or isinstance(addr, bool):
        raise TypeError(f"Address must be an integer, not {addr!r}")
    if not 0 <= addr <= ADDR_MAX:
        raise ValueError(f"Address must be from 0 to {ADDR_MAX:#x}, not {addr!r}")


def _check_data(data):
    if not isinstance(data, int) or isinstance(data, bool):
        raise TypeError(f"Data must be an integer, not {data!r}")
    if not 0 <= data <= DATA_MAX:
        raise ValueError(f"Data must be from 0 to {DATA_MAX:#x}, not {data!r}")


def encode_write(addr, data):
    _check_addr(addr)
    _check_data(data)
    return struct.pack(">BHI", LinkOp.WRITE, addr, data)


def encode_read(addr):
    _check_addr(addr)
    return struct.pack(">BH", LinkOp.READ, addr)


def encode_reset():
    return bytes([LinkOp.RESET])


def encode_cycles():
    return bytes([LinkOp.CYCLES])


def encode_request(op, addr=None, data=None):
    """Encode ``(op, addr, data)``; ``addr`` only for READ and WRITE, ``data`` only for WRITE.
    (PACKET has its own encoder, :func:`encode_packet`.)"""
    try:
        op = LinkOp(op)
    except ValueError:
        raise ValueError(f"Link operation must be one of {', '.join(o.name for o in LinkOp)}, "
                         f"not {op!r}") from None
    if op == LinkOp.PACKET:
        raise TypeError("PACKET requests are encoded by encode_packet(direction, data, sa_index)")
    if op == LinkOp.WRITE:
        if addr is None or data is None:
            raise TypeError(f"WRITE needs an address and data, not {addr!r} and {data!r}")
        return encode_write(addr, data)
    if data is not None:
        raise TypeError(f"{op.name} takes no data, not {data!r}")
    if op == LinkOp.READ:
        if addr is None:
            raise TypeError("READ needs an address")
        return encode_read(addr)
    if addr is not None:
        raise TypeError(f"{op.name} takes no address, not {addr!r}")
    return bytes([op])


def decode_request(buf, offset=0):
    """Decode the request at ``buf[offset:]``, as the far end (a bridge or simulation) does.

    Returns ``(op, addr, data, length)``: ``op`` is a :class:`LinkOp`, or the raw byte for an
    unknown opcode (which is one byte long and must be answered ``LinkStatus.UNKNOWN``); ``addr``
    and ``data`` are None where the request has none. For PACKET, ``addr`` is
    ``(direction, sa_index)`` (raw integers, as they came) and ``data`` the packet's bytes.
    Returns None when the request is not complete yet.
    """
    if offset >= len(buf):
        return None
    try:
        op = LinkOp(buf[offset])
    except ValueError:
        return buf[offset], None, None, 1
    length = REQUEST_LENGTH[op]
    if op == LinkOp.PACKET:
        return decode_packet_request(buf, offset)
    if len(buf) - offset < length:
        return None
    if op == LinkOp.WRITE:
        addr, data = struct.unpack_from(">HI", buf, offset + 1)
        return op, addr, data, length
    if op == LinkOp.READ:
        (addr,) = struct.unpack_from(">H", buf, offset + 1)
        return op, addr, None, length
    return op, None, None, length


def encode_response(op, status, value=0):
    """Encode the answer to a request of kind ``op`` (the raw byte for an unknown opcode)."""
    status = LinkStatus(status)
    if status == LinkStatus.UNKNOWN:
        return bytes([status])
    op = LinkOp(op)
    if op == LinkOp.READ:
        return struct.pack(">BI", status, value)
    if op == LinkOp.CYCLES:
        return struct.pack(">BQ", status, value)
    return bytes([status])


def _status(op, byte):
    try:
        status = LinkStatus(byte)
    except ValueError:
        raise ProtocolError(f"The far end answered {op.name} with status {byte:#04x}, which is not "
                            f"a link status; the byte stream is out of step") from None
    if status == LinkStatus.UNKNOWN:
        raise ProtocolError(f"The far end does not know the {op.name} request "
                            f"(opcode {int(op):#04x}): it answered UNKNOWN")
    return status


def decode_response(op, frame):
    """Decode the complete answer ``frame`` to a request of kind ``op``: ``(status, value)``.

    ``value`` is the data of a READ, the cycle count of CYCLES, and None otherwise. An UNKNOWN
    status or a code that is not a :class:`LinkStatus` raises :exc:`ProtocolError`.
    """
    op = LinkOp(op)
    if not frame:
        raise ProtocolError(f"Empty answer to {op.name}")
    status = _status(op, frame[0])
    if len(frame) != RESPONSE_LENGTH[op]:
        raise ProtocolError(f"The answer to {op.name} must be {RESPONSE_LENGTH[op]} bytes, "
                            f"not {len(frame)}")
    if op == LinkOp.READ:
        return status, struct.unpack_from(">I", frame, 1)[0]
    if op == LinkOp.CYCLES:
        return status, struct.unpack_from(">Q", frame, 1)[0]
    return status, None


# --- PACKET --------------------------------------------------------------------------------------

class PacketRefused(LinkError):
    """The far end refused a PACKET request (SLVERR): nothing reached its datapath."""


class PacketAnswer(tuple):
    """The answer to a PACKET request: ``(status, tag, handed_up, data)``; ``tag`` is a dict of
    :data:`ipchan.hw.contract.TAG_FIELDS`, ``data`` the packet handed up (None if not)."""

    __slots__ = ()

    def __new__(cls, status, tag, handed_up, data):
        return super().__new__(cls, (status, tag, handed_up, data))

    status = property(lambda self: self[0])
    tag = property(lambda self: self[1])
    handed_up = property(lambda self: self[2])
    data = property(lambda self: self[3])


def _direction(direction):
    try:
        return contract.Direction(direction)
    except ValueError:
        raise ValueError(f"Direction must be one of "
                         f"{', '.join(f'{d.name} ({int(d)})' for d in contract.Direction)}, "
                         f"not {direction!r}") from None


def encode_packet(direction, data, sa_index=0):
    """A PACKET request: ``data`` (bytes) inbound, or outbound through the SA in ``sa_index``."""
    if isinstance(direction, bool) or not isinstance(direction, int):
        raise TypeError(f"Direction must be a contract.Direction, not {direction!r}")
    direction = _direction(direction)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"Packet must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > PACKET_MAX:
        raise ValueError(f"Packet must be at most {PACKET_MAX} bytes, not {len(data)}")
    if not isinstance(sa_index, int) or isinstance(sa_index, bool):
        raise TypeError(f"SA index must be an integer, not {sa_index!r}")
    if not 0 <= sa_index <= SA_INDEX_MAX:
        raise ValueError(f"SA index must be from 0 to {SA_INDEX_MAX}, not {sa_index!r}")
    if direction == contract.Direction.INBOUND and sa_index:
        raise ValueError(f"An inbound packet names no SA (sa_index 0), not {sa_index!r}")
    return struct.pack(">BBHH", LinkOp.PACKET, direction, sa_index, len(data)) + data


def decode_packet_request(buf, offset=0):
    """The PACKET request at ``buf[offset:]`` as :func:`decode_request` returns it, or None when
    it is not complete yet."""
    if len(buf) - offset < PACKET_HEADER_LENGTH:
        return None
    op, direction, sa_index, length = struct.unpack_from(">BBHH", buf, offset)
    if op != LinkOp.PACKET:
        raise ValueError(f"Not a PACKET request: opcode {op:#04x}")
    end = offset + PACKET_HEADER_LENGTH + length
    if len(buf) < end:
        return None
    return (LinkOp.PACKET, (direction, sa_index), bytes(buf[offset + PACKET_HEADER_LENGTH:end]),
            PACKET_HEADER_LENGTH + length)


def pack_tag_beat(tag, handed_up):
    """The tag beat as an integer: the packed tag, then ``handed_up`` above it."""
    return contract.pack_tag(**tag) | (int(bool(handed_up)) << contract.tag_width())


def unpack_tag_beat(word):
    """``(tag dict, handed_up)`` of a tag beat integer."""
    return contract.unpack_tag(word & ((1 << contract.tag_width()) - 1)), \
        bool((word >> contract.tag_width()) & 1)


def encode_packet_response(status, tag=None, handed_up=False, data=None):
    """The answer to a PACKET request: OKAY with the tag beat and the packet handed up (if any),
    or an error status alone."""
    status = LinkStatus(status)
    if status != LinkStatus.OKAY:
        return bytes([status])
    data = bytes(data or b"")
    return (bytes([status]) + pack_tag_beat(tag, handed_up).to_bytes(TAG_BEAT_BYTES, "big")
            + struct.pack(">H", len(data)) + data)


def _packet_status(byte):
    try:
        status = LinkStatus(byte)
    except ValueError:
        raise ProtocolError(f"The far end answered PACKET with status {byte:#04x}, which is not "
                            f"a link status; the byte stream is out of step") from None
    if status == LinkStatus.UNKNOWN:
        raise ProtocolError(f"The far end does not know the PACKET request (opcode "
                            f"{int(LinkOp.PACKET):#04x}): it answered UNKNOWN; it has no ESP "
                            f"datapath (a simulation of an engine built without esp=..., or a "
                            f"board's bridge)")
    return status


def _packet_answer(status, beat, data):
    tag, handed_up = unpack_tag_beat(int.from_bytes(beat, "big"))
    if not handed_up and data:
        raise ProtocolError(f"The far end handed up {len(data)} bytes of a packet whose tag says "
                            f"it was not handed up")
    return PacketAnswer(status, tag, handed_up, data if handed_up else None)


def decode_packet_response(frame):
    """Decode the complete answer ``frame`` to a PACKET request: a :class:`PacketAnswer`
    (``tag`` and ``data`` None for an error status)."""
    if not frame:
        raise ProtocolError("Empty answer to PACKET")
    status = _packet_status(frame[0])
    if status != LinkStatus.OKAY:
        if len(frame) != 1:
            raise ProtocolError(f"An error answer to PACKET is 1 byte, not {len(frame)}")
        return PacketAnswer(status, None, False, None)
    head = 1 + TAG_BEAT_BYTES + 2
    if len(frame) < head:
        raise ProtocolError(f"The answer to PACKET is at least {head} bytes, not {len(frame)}")
    (length,) = struct.unpack_from(">H", frame, head - 2)
    if len(frame) != head + length:
        raise ProtocolError(f"The answer to PACKET announces {length} bytes of packet but has "
                            f"{len(frame) - head}")
    return _packet_answer(status, frame[1:1 + TAG_BEAT_BYTES], bytes(frame[head:]))


class LinkClient:
    """Register access over any byte stream.

    Parameters
    ----------
    send : callable
        ``send(data)`` writes all of ``data``.
    recv_exact : callable
        ``recv_exact(n)`` returns exactly ``n`` bytes, or raises (:exc:`LinkClosed`, a timeout...).
    max_batch : int
        Requests sent ahead of their answers by :meth:`transact`. Bounded so that the answers
        never outgrow the stream's buffers while the client is still sending.
    """

    def __init__(self, send, recv_exact, *, max_batch=1024):
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ValueError(f"Batch size must be a positive integer, not {max_batch!r}")
        self._send = send
        self._recv_exact = recv_exact
        self._max_batch = max_batch

    def _answer(self, op):
        status = _status(op, self._recv_exact(1)[0])
        rest = RESPONSE_LENGTH[op] - 1
        if op == LinkOp.READ:
            return status, struct.unpack(">I", self._recv_exact(rest))[0]
        if op == LinkOp.CYCLES:
            return status, struct.unpack(">Q", self._recv_exact(rest))[0]
        return status, None

    def transact(self, requests):
        """Send ``requests`` (tuples ``(op, addr, data)`` as :func:`encode_request` takes them),
        pipelined, and return their answers in order as ``(status, value)`` pairs.

        Error statuses are returned, not raised: a batch always completes.
        """
        encoded = [(LinkOp(req[0]), encode_request(*req)) for req in requests]
        answers = []
        for start in range(0, len(encoded), self._max_batch):
            chunk = encoded[start:start + self._max_batch]
            self._send(b"".join(frame for _, frame in chunk))
            answers.extend(self._answer(op) for op, _ in chunk)
        return answers

    def _packet_answer(self):
        status = _packet_status(self._recv_exact(1)[0])
        if status != LinkStatus.OKAY:
            return PacketAnswer(status, None, False, None)
        beat = self._recv_exact(TAG_BEAT_BYTES)
        (length,) = struct.unpack(">H", self._recv_exact(2))
        return _packet_answer(status, beat, self._recv_exact(length) if length else b"")

    def packets(self, requests, *, max_bytes=1 << 16):
        """Run ``requests`` (tuples ``(direction, data, sa_index)``) through the far end's
        datapath, pipelined in batches of about ``max_bytes`` request bytes, and return a
        :class:`PacketAnswer` for each, in order. Every packet is checked before anything is
        sent; an SLVERR answer raises :exc:`PacketRefused` after the batch is complete."""
        frames = [encode_packet(*req) for req in requests]
        answers, start = [], 0
        while start < len(frames):
            end, size = start, 0
            while end < len(frames) and (end == start or size + len(frames[end]) <= max_bytes) \
                    and end - start < self._max_batch:
                size += len(frames[end])
                end += 1
            self._send(b"".join(frames[start:end]))
            answers.extend(self._packet_answer() for _ in range(end - start))
            start = end
        for n, answer in enumerate(answers):
            if answer.status != LinkStatus.OKAY:
                raise PacketRefused(f"The far end refused PACKET request {n} "
                                    f"({LinkStatus(answer.status).name}): direction, sa_index or "
                                    f"length it cannot carry")
        return answers

    def write(self, addr, data):
        (status, _), = self.transact([(LinkOp.WRITE, addr, data)])
        if status != LinkStatus.OKAY:
            raise BusError(LinkOp.WRITE, addr, status)

    def read(self, addr):
        (status, value), = self.transact([(LinkOp.READ, addr)])
        if status != LinkStatus.OKAY:
            raise BusError(LinkOp.READ, addr, status)
        return value

    def reset(self):
        """Hold the engine in reset for :data:`RESET_CYCLES` cycles."""
        (status, _), = self.transact([(LinkOp.RESET,)])
        if status != LinkStatus.OKAY:
            raise ProtocolError(f"RESET answered {LinkStatus(status).name}")

    def cycles(self):
        """Clock cycles the engine has run since it started."""
        (status, value), = self.transact([(LinkOp.CYCLES,)])
        if status != LinkStatus.OKAY:
            raise ProtocolError(f"CYCLES answered {LinkStatus(status).name}")
        return value

    def write_many(self, pairs):
        """Write each ``(addr, data)`` in order, pipelined. Every write is made; then the first
        error response, if any, is raised."""
        pairs = list(pairs)
        answers = self.transact([(LinkOp.WRITE, addr, data) for addr, data in pairs])
        for (addr, _), (status, _) in zip(pairs, answers):
            if status != LinkStatus.OKAY:
                raise BusError(LinkOp.WRITE, addr, status)

    def read_many(self, addrs):
        """Read each address in order, pipelined; raises the first error response, if any."""
        addrs = list(addrs)
        answers = self.transact([(LinkOp.READ, addr) for addr in addrs])
        for addr, (status, _) in zip(addrs, answers):
            if status != LinkStatus.OKAY:
                raise BusError(LinkOp.READ, addr, status)
        return [value for _, value in answers]
