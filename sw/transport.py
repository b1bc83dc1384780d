"""The one small interface through which the driver reaches an engine.

A transport moves 32-bit register reads and writes to an engine and back; it knows nothing of
what the registers mean. Implementations: :class:`ModelTransport` (the golden model, in this
process), ``ipchan.sim.cocotb_transport.CocotbTransport`` (AXI4-Lite in a cocotb testbench),
``ipchan.sw.socket_transport`` (a Verilator simulation in another process) and
``ipchan.sw.serial_transport`` (a board's UART).
"""

from typing import Protocol, runtime_checkable


__all__ = ["Transport", "BusError", "ModelTransport"]


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

    def close(self):
        self._closed = True

    def _check(self):
        if self._closed:
            raise ValueError("Transport is closed")

    def __repr__(self):
        return f"ModelTransport({self.model.params!r})"
