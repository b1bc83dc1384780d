"""Verilog for simulators and other tools: the engine with flat, conventionally named ports.

The top module ``ipchan_engine`` has ``clk``, ``rst`` (synchronous, active high) and an AXI4-Lite
subordinate whose ports are named ``s_axil_<channel signal>`` (``s_axil_awaddr``, ...), the names
cocotbext-axi and most SoC integrators expect.

Built with the ESP datapath (``esp="compact"`` or ``"fast"``), it also has six AXI4-Stream ports,
``<port>_t<signal>`` as cocotbext-axi's ``AxiStreamBus.from_prefix(dut, port)`` finds them:

=================== ====== ====================================================================
port                 dir    signals
=================== ====== ====================================================================
``s_axis_in``        in     ``tdata`` (128), ``tkeep`` (16), ``tlast``: IP packets carrying ESP
``m_axis_in_data``   out    ``tdata``, ``tkeep``, ``tlast``, ``tuser`` (the tag): packets handed up
``m_axis_in_tag``    out    ``tdata`` (the tag beat: the tag, then ``handed_up``): one per packet
``s_axis_out``       in     ``tdata``, ``tkeep``, ``tlast``, ``tuser`` (the SA's slot index)
``m_axis_out_data``  out    as ``m_axis_in_data``: the ESP packets
``m_axis_out_tag``   out    as ``m_axis_in_tag``
=================== ====== ====================================================================

All with ``tvalid`` and ``tready``. Byte ``k`` of a packet beat is ``tdata[8k+7:8k]`` (AXI4-Stream's
little-endian byte lanes), so cocotbext-axi's frames are the packets' bytes in order.
"""

import hashlib

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

from . import contract
from .engine import Engine


__all__ = ["TOP_NAME", "STREAM_PORTS", "EngineTop", "engine_verilog", "design_hash"]

TOP_NAME = "ipchan_engine"


#: Each stream port's payload fields, as AXI4-Stream signals (``None``: the whole payload).
_AXIS_FIELDS = {
    "s_axis_in": {"data": "tdata", "keep": "tkeep", "last": "tlast"},
    "m_axis_in_data": {"data": "tdata", "keep": "tkeep", "last": "tlast", "user": "tuser"},
    "m_axis_in_tag": {None: "tdata"},
    "s_axis_out": {"data": "tdata", "keep": "tkeep", "last": "tlast", "sa_index": "tuser"},
    "m_axis_out_data": {"data": "tdata", "keep": "tkeep", "last": "tlast", "user": "tuser"},
    "m_axis_out_tag": {None: "tdata"},
}
#: The top's AXI4-Stream ports, by name prefix (``s_`` in, ``m_`` out).
STREAM_PORTS = tuple(_AXIS_FIELDS)


class EngineTop(Elaboratable):
    """:class:`~ipchan.hw.engine.Engine` with flat ports for a Verilog top level."""

    def __init__(self, params=contract.EngineParams(), *, esp=None, table="parallel"):
        self._MustUse__silence = True      # a top whose engine was refused is not an unused one
        self.engine = Engine(params, esp=esp, table=table)
        self._MustUse__silence = False
        self.clk = Signal(name="clk")
        self.rst = Signal(name="rst")
        self.axil = {}
        for name, member in self.engine.axil.signature.members.items():
            self.axil[name] = Signal(member.shape, name=f"s_axil_{name}")
        # (port, AXI4-Stream signal) -> (flat signal, inner value, the flat signal is an input)
        self.axis = {}
        if esp is not None:
            for port, fields in _AXIS_FIELDS.items():
                inner = getattr(self.engine, port)
                is_input = port.startswith("s_")
                for field, axis_name in fields.items():
                    value = inner.payload if field is None else inner.payload[field]
                    value = value.as_value() if hasattr(value, "as_value") else value
                    self.axis[port, axis_name] = (
                        Signal(len(value), name=f"{port}_{axis_name}"), value, is_input)
                self.axis[port, "tvalid"] = (Signal(name=f"{port}_tvalid"), inner.valid, is_input)
                self.axis[port, "tready"] = (Signal(name=f"{port}_tready"), inner.ready,
                                             not is_input)

    @property
    def ports(self):
        return [self.clk, self.rst, *self.axil.values(), *(s for s, _, _ in self.axis.values())]

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
        for flat, inner, is_input in self.axis.values():
            m.d.comb += inner.eq(flat) if is_input else flat.eq(inner)
        return m


def engine_verilog(params=contract.EngineParams(), *, esp=None, table="parallel"):
    """Verilog text of ``ipchan_engine`` built with ``params`` (and the ESP datapath with GCM
    profile ``esp``, if not ``None``; the SA table as :class:`~ipchan.hw.engine.Engine`'s
    ``table``)."""
    top = EngineTop(params, esp=esp, table=table)
    return verilog.convert(top, ports=top.ports, name=TOP_NAME, emit_src=False)


def design_hash(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]
