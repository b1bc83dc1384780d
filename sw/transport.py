"""The one small interface through which the driver reaches an engine.

A transport moves 32-bit register reads and writes to an engine and back; it knows nothing of
what the registers mean. Implementations: :class:`ModelTransport` (the golden model, in this
process), ``ipchan.sim.cocotb_transport.CocotbTransport`` (AXI4-Lite in a cocotb testbench),
``ipchan.sw.socket_transport`` (a Verilator simulation in another process) and
``ipchan.sw.serial_transport`` (a board's UART).

A transport that reaches an ESP datapath also has ``process_packet(direction, data, sa_index)``
and ``process_packets(requests)`` (:class:`ModelTransport` through the golden model,
``VerilatorTransport`` of an engine built with ``esp=``); :func:`check_packet` is their one
argument check.
"""

from typing import Protocol, runtime_checkable


__all__ = ["Transport", "BusError", "ModelTransport", "check_packet", "PACKET_MAX"]

#: The longest packet there is (IPv4 total length, IPv6 payload length) and the link carries.
PACKET_MAX = 0xFFFF


def check_packet(direction, data, sa_index=None):
    """``(Direction, bytes, sa_index)`` for a packet to process, or a TypeError/ValueError naming
    the bad argument. Outbound packets name the SA by slot (``sa_index``); inbound ones do not."""
    from ipchan.hw.contract import Direction
    if isinstance(direction, str) and direction.upper() in Direction.__members__:
        direction = Direction[direction.upper()]
    if not isinstance(direction, Direction):
        raise ValueError(f"Direction must be 'inbound' or 'outbound', not {direction!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"Packet must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > PACKET_MAX:
        raise ValueError(f"Packet must be at most {PACKET_MAX} bytes, not {len(data)}")
    if direction == Direction.INBOUND:
        if sa_index is not None:
            raise ValueError(f"An inbound packet names no SA (its SPI does), not sa_index "
                             f"{sa_index!r}")
    else:
        if sa_index is None:
            raise ValueError("An outbound packet needs the sa_index of its SA")
        if not isinstance(sa_index, int) or isinstance(sa_index, bool):
            raise TypeError(f"SA index must be an integer, not {sa_index!r}")
        if not 0 <= sa_index <= 0xFFFF:
            raise ValueError(f"SA index must be from 0 to 65535, not {sa_index!r}")
    return direction, data, sa_index


class BusError(IOError):
    """The engine answered an access with an AXI error (an unmapped address)."""

    def __init__(self, addr, resp):
        self.addr, self.resp = addr, resp
        super().__init__(f"Bus error {resp} at address {addr:#05x}")


@runtime_checkable
class Transport(Protocol):
    def read(self, addr: int) -> int:
        """Read the 32-bit register at byte address ``addr``."""

    def write(self, addr: int, value: int) -> None:
        """Write the 32-bit register at byte address ``addr``."""

    def close(self) -> None:
        """Release the connection; further use is an error."""


class ModelTransport:
    """Reaches a :class:`~ipchan.sw.model.EngineModel` by direct calls."""

    def __init__(self, model):
        self.model = model
        self._closed = False

    def read(self, addr):
        self._check()
        return self.model.read(addr)

    def write(self, addr, value):
        self._check()
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"Register value must be a 32-bit unsigned integer, not {value!r}")
        self.model.write(addr, value)

    def reset(self):
        self._check()
        self.model.reset()

    def process_packet(self, direction, data, sa_index=None):
        """Run one packet through the golden model's ESP datapath: ``(tag dict, bytes or
        None)``, as :class:`~ipchan.sw.esp.datapath.EspDatapathModel` gives them."""
        (answer,) = self.process_packets([(direction, data, sa_index)])
        return answer

    def process_packets(self, requests):
        """:meth:`process_packet` for each ``(direction, data, sa_index)``, in order."""
        from ipchan.hw.contract import Direction
        self._check()
        checked = [check_packet(*req) for req in requests]
        if getattr(self, "_datapath", None) is None:
            from .esp.datapath import EspDatapathModel
            self._datapath = EspDatapathModel(self.model)
        answers = []
        for direction, data, sa_index in checked:
            if direction == Direction.INBOUND:
                out, tag = self._datapath.inbound(data)
            else:
                out, tag = self._datapath.outbound(data, sa_index)
            answers.append((tag, out))
        return answers

    def close(self):
        self._closed = True

    def _check(self):
        if self._closed:
            raise ValueError("Transport is closed")

    def __repr__(self):
        return f"ModelTransport({self.model.params!r})"
