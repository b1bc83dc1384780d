"""Verilog for simulators and other tools: the engine with flat, conventionally named ports.

The top module ``ipchan_engine`` has ``clk``, ``rst`` (synchronous, active high) and an AXI4-Lite
subordinate whose ports are named ``s_axil_<channel signal>`` (``s_axil_awaddr``, ...), the names
cocotbext-axi and most SoC integrators expect.
"""

import hashlib

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

from . import contract
from .engine import Engine


__all__ = ["TOP_NAME", "EngineTop", "engine_verilog", "design_hash"]

TOP_NAME = "ipchan_engine"


class EngineTop(Elaboratable):
    """:class:`~ipchan.hw.engine.Engine` with flat ports for a Verilog top level."""

    def __init__(self, params=contract.EngineParams()):
        self.engine = Engine(params)
        self.clk = Signal(name="clk")
        self.rst = Signal(name="rst")
        self.axil = {}
        for name, member in self.engine.axil.signature.members.items():
            self.axil[name] = Signal(member.shape, name=f"s_axil_{name}")

    @property
    def ports(self):
        return [self.clk, self.rst, *self.axil.values()]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.clk), cd.rst.eq(self.rst)]
        m.submodules.engine = engine = self.engine
        for name, member in engine.axil.signature.members.items():
            inner = getattr(engine.axil, name)
            # engine.axil is the subordinate's view: its inputs are the top's inputs.
            if member.flow.name == "In":
                m.d.comb += inner.eq(self.axil[name])
            else:
                m.d.comb += self.axil[name].eq(inner)
        return m


def engine_verilog(params=contract.EngineParams()):
    """Verilog text of ``ipchan_engine`` built with ``params``."""
    top = EngineTop(params)
    return verilog.convert(top, ports=top.ports, name=TOP_NAME, emit_src=False)


def design_hash(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]
