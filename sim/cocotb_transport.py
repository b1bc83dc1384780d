"""The driver's transport inside a cocotb testbench: AXI4-Lite through cocotbext-axi.

The driver is ordinary blocking code; a cocotb test runs it in a thread with
:func:`cocotb.bridge` (see :func:`run_driver`), and each register access here blocks that thread
until the simulator has completed the AXI4-Lite transaction.
"""

from cocotbext.axi import AxiResp

try:
    from cocotb import bridge, resume
except ImportError:  # cocotb 2.1 keeps them in cocotb.task
    from cocotb.task import bridge, resume

from ipchan.sw.transport import BusError


__all__ = ["CocotbTransport", "run_driver"]


class CocotbTransport:
    def __init__(self, axil_master):
        self.master = axil_master
        self.reads = self.writes = 0
        self._closed = False
        self._read = resume(self._aread)
        self._write = resume(self._awrite)

    async def _aread(self, addr):
        result = await self.master.read(addr, 4)
        if result.resp != AxiResp.OKAY:
            raise BusError(addr, AxiResp(result.resp).name)
        return int.from_bytes(result.data, "little")

    async def _awrite(self, addr, value):
        result = await self.master.write(addr, value.to_bytes(4, "little"))
        if result.resp != AxiResp.OKAY:
            raise BusError(addr, AxiResp(result.resp).name)

    def read(self, addr):
        self._check()
        self.reads += 1
        return self._read(addr)

    def write(self, addr, value):
        self._check()
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"Register value must be a 32-bit unsigned integer, not {value!r}")
        self.writes += 1
        self._write(addr, value)

    def close(self):
        self._closed = True

    def _check(self):
        if self._closed:
            raise ValueError("Transport is closed")

    def __repr__(self):
        return "CocotbTransport()"


async def run_driver(func, *args, **kwargs):
    """Run blocking driver code ``func(*args, **kwargs)`` against the simulation."""
    return await bridge(func)(*args, **kwargs)
