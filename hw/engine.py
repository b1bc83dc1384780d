"""The ipchan engine: AXI4-Lite control port, register file, SA table and (optionally) the inbound
ESP datapath."""

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from . import axil, contract
from .regfile import RegisterFile
from .sa_table import SaTable
from .serial_table import SerialTable


__all__ = ["Engine"]


def _field(reg_name, field_name):
    f = contract.field_of(reg_name, field_name)
    return slice(f.offset, f.offset + f.width)


def _connect_register_side(m, bridge, regs):
    # The bridge's register side to a register file's (``RegisterFile`` or ``SerialTable``).
    m.d.comb += [
        regs.addr.eq(bridge.addr),
        regs.w_stb.eq(bridge.w_stb),
        regs.w_data.eq(bridge.w_data),
        regs.w_strb.eq(bridge.w_strb),
        bridge.w_err.eq(regs.w_err),
        regs.r_stb.eq(bridge.r_stb),
        bridge.r_data.eq(regs.r_data),
        bridge.r_err.eq(regs.r_err),
    ]


class Engine(wiring.Component):
    """The engine as a SoC sees it.

    Members
    -------
    axil : ``In(axil.Signature(addr_width=contract.ADDR_WIDTH))``
        Control port (registers of :mod:`ipchan.hw.contract`).

    With ``esp="compact"`` or ``"fast"`` (the :class:`~ipchan.hw.crypto.gcm.GCMCore` profile) the
    engine also has the ESP datapaths, each with its own GCM core
    (:class:`~ipchan.hw.esp.inbound.InboundEsp`, :class:`~ipchan.hw.esp.outbound.OutboundEsp`):

    s_axis_in : ``In(stream.Signature(PacketBeat))``
        Received IP packets carrying ESP.
    m_axis_in_data : ``Out(stream.Signature(TaggedBeat))``
        Inbound packets handed up, each beat with its tag in ``user``.
    m_axis_in_tag : ``Out(stream.Signature(TagBeat))``
        One tag per inbound packet, in input order.
    s_axis_out : ``In(stream.Signature(OutboundBeat))``
        Plaintext IP packets to protect, with the slot of their SA (``sa_index``).
    m_axis_out_data, m_axis_out_tag
        The ESP packets and the outbound tags, as for inbound.

    Without it (``esp=None``, the default) the packet counters read zero: no packet goes through.

    ``table`` chooses how the registers and the SA table are built: ``"parallel"`` (the default)
    keeps the registers in flip-flops and reads or writes a whole slot in one clock, which the
    ESP datapath needs; ``"serial"`` (:class:`~ipchan.hw.serial_table.SerialTable`) keeps both in
    block RAM and moves one word a clock, a fraction of the size, for small FPGAs such as the
    iCE40UP5K. Both answer the same register contract; ``"serial"`` has no datapath ports.
    """

    TABLES = ("parallel", "serial")

    def __init__(self, params=contract.EngineParams(), *, esp=None, table="parallel"):
        if not isinstance(params, contract.EngineParams):
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        if esp not in (None, "compact", "fast"):
            self._MustUse__silence = True  # a refused part is not an unused one
            raise ValueError(f"ESP datapath must be None, 'compact' or 'fast', not {esp!r}")
        if esp is not None and not params.tunnel_endpoints:
            self._MustUse__silence = True
            raise ValueError(f"The ESP datapath needs the SA table's tunnel endpoints, not "
                             f"{params!r}")
        if table not in self.TABLES:
            self._MustUse__silence = True
            raise ValueError(f"Table must be 'parallel' or 'serial', not {table!r}")
        if esp is not None and table != "parallel":
            self._MustUse__silence = True
            raise ValueError(f"The ESP datapath needs the parallel SA table, not table={table!r}")
        self._params = params
        self.esp = esp
        self.table_kind = table
        members = {"axil": In(axil.Signature(addr_width=contract.ADDR_WIDTH))}
        if esp is not None:
            from .esp.layouts import PacketBeat, TagBeat, TaggedBeat
            from .esp.outbound import OutboundBeat
            members.update({
                "s_axis_in": In(stream.Signature(PacketBeat)),
                "m_axis_in_data": Out(stream.Signature(TaggedBeat)),
                "m_axis_in_tag": Out(stream.Signature(TagBeat)),
                "s_axis_out": In(stream.Signature(OutboundBeat)),
                "m_axis_out_data": Out(stream.Signature(TaggedBeat)),
                "m_axis_out_tag": Out(stream.Signature(TagBeat)),
            })
        super().__init__(members)
        self.table = SaTable(params) if table == "parallel" else SerialTable(params)
        self.inbound = self.outbound = None
        if esp is not None:
            from .esp.inbound import InboundEsp
            from .esp.outbound import OutboundEsp
            self.inbound = InboundEsp(params, profile=esp)
            self.outbound = OutboundEsp(params, profile=esp)

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        if self.table_kind == "serial":
            # The serial table registers each access before it reaches its RAMs.
            m.submodules.bridge = bridge = axil.RegisterBridge(
                addr_width=contract.ADDR_WIDTH, read_latency=SerialTable.READ_LATENCY)
            m.submodules.table = table = self.table
            connect(m, flipped(self.axil), bridge.bus)
            _connect_register_side(m, bridge, table)
            # As with the parallel table, writes wait while a command runs; reads never do.
            m.d.comb += bridge.w_wait.eq(table.busy)
            return m
        m.submodules.bridge = bridge = axil.RegisterBridge(addr_width=contract.ADDR_WIDTH)
        m.submodules.regs = regs = RegisterFile()
        m.submodules.table = table = self.table

        connect(m, flipped(self.axil), bridge.bus)
        _connect_register_side(m, bridge, regs)

        # Identification and build parameters.
        m.d.comb += [
            regs.id.eq(contract.register("ID").reset),
            regs.contract.eq(contract.register("CONTRACT").reset),
            regs.config0[_field("CONFIG0", "N_ENTRIES")].eq(p.n_entries),
            regs.config0[_field("CONFIG0", "GEN_WIDTH")].eq(p.generation_width),
            regs.config0[_field("CONFIG0", "VERSION_WIDTH")].eq(p.version_width),
            regs.config1[_field("CONFIG1", "WINDOW_MAX")].eq(p.window_max),
            regs.config1[_field("CONFIG1", "N_BUCKETS")].eq(p.n_buckets),
            regs.config2[_field("CONFIG2", "MAX_PACKET")].eq(p.max_packet),
            regs.config2[_field("CONFIG2", "MAX_EXT_HEADERS")].eq(contract.IPV6_MAX_EXT_HEADERS),
            regs.config2[_field("CONFIG2", "ENDPOINTS")].eq(p.tunnel_endpoints),
        ]

        # Commands. Any write while the table is busy waits on the bus (never lost, never
        # refused): a command queues behind a long one such as a COMMIT's scan, and the staging
        # registers cannot change under a running INSTALL. Reads are never held, so STATUS can
        # always be polled.
        m.d.comb += [
            bridge.w_wait.eq(table.busy),
            table.cmd_stb.eq(regs.cmd_stb),
            table.cmd_op.eq(regs.w_data[_field("CMD", "OP")]),
            table.cmd_table.eq(regs.w_data[_field("CMD", "TABLE")]),
            table.cmd_index.eq(regs.w_data[_field("CMD", "INDEX")]),
            table.sa_spi.eq(regs.sa_spi),
            table.sa_flags.eq(regs.sa_flags),
            table.sa_seq.eq((regs.sa_seq_hi << 32) | regs.sa_seq_lo),
            table.sa_key.eq(sum((getattr(regs, f"sa_key{i}") << (32 * (7 - i)))
                                for i in range(8))),
            table.sa_salt.eq(regs.sa_salt),
            table.lookup_spi.eq(regs.lookup_spi),
            table.sa_src.eq(sum((getattr(regs, f"sa_src{i}") << (32 * (3 - i))) for i in range(4))),
            table.sa_dst.eq(sum((getattr(regs, f"sa_dst{i}") << (32 * (3 - i))) for i in range(4))),
        ]
        # Status and results.
        m.d.comb += [
            regs.status[_field("STATUS", "BUSY")].eq(table.busy),
            regs.status[_field("STATUS", "ERROR")].eq(table.error),
            regs.status[_field("STATUS", "STAGED")].eq(table.staged),
            regs.result[_field("RESULT", "FOUND")].eq(table.result_found),
            regs.result[_field("RESULT", "INDEX")].eq(table.result_index),
            regs.result_gen[_field("RESULT_GEN", "GENERATION")].eq(table.result_gen),
            regs.version_lo.eq(table.version[:32]),
            regs.version_hi.eq(table.version[32:] if p.version_width > 32 else 0),
            regs.live[_field("LIVE", "COUNT")].eq(table.live_count),
            regs.free[_field("FREE", "COUNT")].eq(table.free_count),
            regs.rb_spi.eq(table.rb_entry.spi),
            regs.rb_flags.eq(table.rb_entry.flags),
            regs.rb_seq_lo.eq(table.rb_entry.seq[:32]),
            regs.rb_seq_hi.eq(table.rb_entry.seq[32:]),
            regs.rb_state[_field("RB_STATE", "STATE")].eq(table.rb_state),
            regs.rb_state[_field("RB_STATE", "GENERATION")].eq(table.rb_gen),
            regs.rb_bucket[_field("RB_BUCKET", "VALID")].eq(table.rb_bucket.valid),
            regs.rb_bucket[_field("RB_BUCKET", "INDEX")].eq(table.rb_bucket.index),
            regs.rb_bucket_spi.eq(table.rb_bucket.spi),
            regs.lookup_version_lo.eq(table.result_version[:32]),
            regs.lookup_version_hi.eq(table.result_version[32:] if p.version_width > 32 else 0),
            regs.cnt_commits.eq(table.cnt_commits),
            regs.cnt_installs.eq(table.cnt_installs),
            regs.cnt_deletes.eq(table.cnt_deletes),
            regs.cnt_lookups.eq(table.cnt_lookups),
            regs.cnt_hits.eq(table.cnt_hits),
            regs.cnt_cmd_errors.eq(table.cnt_cmd_errors),
        ]
        for i in range(4):
            m.d.comb += [
                getattr(regs, f"rb_src{i}").eq(table.rb_src[32 * (3 - i):32 * (4 - i)]),
                getattr(regs, f"rb_dst{i}").eq(table.rb_dst[32 * (3 - i):32 * (4 - i)]),
            ]
        if self.inbound is not None:
            from .esp.arbiter import SlotPortArbiter
            from .esp.inbound import INBOUND_VERDICTS
            from .esp.outbound import OUTBOUND_VERDICTS
            m.submodules.inbound = inbound = self.inbound
            m.submodules.outbound = outbound = self.outbound
            m.submodules.slot_arbiter = arb = SlotPortArbiter(p)
            connect(m, inbound.lookup_req, table.lookup_req)
            connect(m, table.lookup_resp, inbound.lookup_resp)
            for client, dp in ((arb.a, inbound), (arb.b, outbound)):
                connect(m, dp.sa_read, client.sa_read)
                connect(m, client.sa_data, dp.sa_data)
                connect(m, dp.sa_write, client.sa_write)
                m.d.comb += dp.version.eq(table.version)
            connect(m, arb.sa_read, table.sa_read)
            connect(m, table.sa_data, arb.sa_data)
            connect(m, arb.sa_write, table.sa_write)
            m.d.comb += table.dp_hold.eq(Cat(inbound.dp_hold, outbound.dp_hold))
            for dp, prefix in ((inbound, "in"), (outbound, "out")):
                connect(m, flipped(getattr(self, f"s_axis_{prefix}")), dp.i)
                connect(m, dp.o, flipped(getattr(self, f"m_axis_{prefix}_data")))
                connect(m, dp.tag, flipped(getattr(self, f"m_axis_{prefix}_tag")))
            for direction, verdicts, dp in ((contract.Direction.INBOUND, INBOUND_VERDICTS, inbound),
                                            (contract.Direction.OUTBOUND, OUTBOUND_VERDICTS,
                                             outbound)):
                for k, verdict in enumerate(verdicts):
                    name = contract.VERDICT_COUNTERS[(direction, verdict)]
                    m.d.comb += getattr(regs, name.lower()).eq(dp.counters[k])
        for verdict, name in contract.SA_VERDICT_COUNTERS.items():
            m.d.comb += getattr(regs, name.lower()).eq(
                getattr(table.rb_counters, verdict.name.lower()))
        return m
