"""Tiny cocotb tests of tiny designs, for ``run_cocotb`` itself
(``tests/test_sim_build.py``)."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


@cocotb.test()
async def counts(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    start = int(dut.count.value)
    await ClockCycles(dut.clk, 5)
    assert int(dut.count.value) == (start + 5) % 16


@cocotb.test()
async def ready_resolves(dut):
    """For ``kick`` (tests/test_sim_build.py): a combinational output whose inputs never change
    must still have its value, not X."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await ClockCycles(dut.clk, 3)
    assert dut.ready.value.is_resolvable and int(dut.ready.value) == 1, dut.ready.value
