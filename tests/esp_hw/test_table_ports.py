"""The SA table's datapath slot port, cycle by cycle: what a read returns, that a write-back
changes exactly the slot's sequence number, window and counters, and that the zeroizing scan
after a commit waits for ``dp_hold``."""

from amaranth.sim import Simulator

from ipchan.hw.contract import Algorithm, Direction, EngineParams, Error, Op
from ipchan.hw.sa_table import SaTable

PARAMS = EngineParams(n_entries=4, window_max=128)
KEY = int.from_bytes(bytes(range(32)), "big")


async def command(ctx, dut, op, *, index=0, wait=True):
    ctx.set(dut.cmd_op, op)
    ctx.set(dut.cmd_index, index)
    ctx.set(dut.cmd_stb, 1)
    await ctx.tick()
    ctx.set(dut.cmd_stb, 0)
    while wait and ctx.get(dut.busy):
        await ctx.tick()
    return Error(ctx.get(dut.error))


async def read_slot(ctx, dut, index):
    ctx.set(dut.sa_read.payload, index)
    ctx.set(dut.sa_read.valid, 1)
    await ctx.tick().until(dut.sa_read.ready)
    ctx.set(dut.sa_read.valid, 0)
    ctx.set(dut.sa_data.ready, 1)
    while True:
        _, _, valid, data = await ctx.tick().sample(dut.sa_data.valid, dut.sa_data.payload)
        if valid:
            ctx.set(dut.sa_data.ready, 0)
            return data


def test_read_write_back_and_hold():
    dut = SaTable(PARAMS)
    log = {}

    async def bench(ctx):
        while ctx.get(dut.busy):
            await ctx.tick()
        ctx.set(dut.sa_spi, 0x1234)
        ctx.set(dut.sa_key, KEY)
        ctx.set(dut.sa_salt, 0xA1B2C3D4)
        ctx.set(dut.sa_seq, 77)
        ctx.set(dut.sa_src, 0xC0000201)
        ctx.set(dut.sa_dst, 0xC0000202)
        for name, value in {"dir": Direction.INBOUND, "alg": Algorithm.AES_GCM_16,
                            "window": 100}.items():
            ctx.set(getattr(dut.sa_flags, name), value)
        assert await command(ctx, dut, Op.INSTALL) == Error.NONE
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        data = await read_slot(ctx, dut, 0)
        log["read"] = (data.visible, data.entry.spi, data.key, data.salt, data.entry.seq,
                       data.src, data.dst, data.entry.flags.window, data.generation)

        # A write-back: sequence number, window and one counter.
        ctx.set(dut.sa_write.payload.index, 0)
        ctx.set(dut.sa_write.payload.state, 1)
        ctx.set(dut.sa_write.payload.entry, data.entry)
        ctx.set(dut.sa_write.payload.entry.seq, 90)
        ctx.set(dut.sa_write.payload.window, 0b1011)
        ctx.set(dut.sa_write.payload.counters.replay, 5)
        ctx.set(dut.sa_write.valid, 1)
        await ctx.tick().until(dut.sa_write.ready)
        ctx.set(dut.sa_write.valid, 0)
        data = await read_slot(ctx, dut, 0)
        log["written"] = (data.entry.seq, data.window, data.counters.replay, data.entry.spi)
        assert await command(ctx, dut, Op.READ_ENTRY, index=0) == Error.NONE
        log["rb"] = (ctx.get(dut.rb_entry.seq), ctx.get(dut.rb_counters.replay),
                     ctx.get(dut.rb_src), ctx.get(dut.rb_dst))

        # Both datapaths hold an SA: delete and commit; the scan waits for both.
        ctx.set(dut.dp_hold, 0b11)
        assert await command(ctx, dut, Op.DELETE, index=0) == Error.NONE
        await command(ctx, dut, Op.COMMIT, wait=False)
        for _ in range(50):
            await ctx.tick()
        log["busy_while_held"] = ctx.get(dut.busy)
        ctx.set(dut.dp_hold, 0b01)             # the outbound one is done
        for _ in range(50):
            await ctx.tick()
        log["busy_while_one_held"] = ctx.get(dut.busy)
        data = await read_slot(ctx, dut, 0)
        log["held"] = (data.visible, data.entry.spi, data.key)
        # It lets go for one clock and holds again at once (its next packet): that packet
        # found its SA after the commit, so the scan goes ahead; it cannot be starved.
        ctx.set(dut.dp_hold, 0)
        await ctx.tick()
        ctx.set(dut.dp_hold, 0b01)
        for _ in range(100):
            await ctx.tick()
        log["busy_after_release"] = ctx.get(dut.busy)
        ctx.set(dut.dp_hold, 0)
        data = await read_slot(ctx, dut, 0)
        log["zeroized"] = (data.visible, data.entry.spi, data.key, data.salt, data.window,
                           data.counters.replay, data.src, data.dst, data.entry.seq)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run_until(5000 * 1e-8)
    assert log["read"] == (1, 0x1234, KEY, 0xA1B2C3D4, 77, 0xC0000201, 0xC0000202, 100, 1)
    assert log["written"] == (90, 0b1011, 5, 0x1234)
    assert log["rb"] == (90, 5, 0xC0000201, 0xC0000202)
    assert log["busy_while_held"] == log["busy_while_one_held"] == 1
    assert log["busy_after_release"] == 0
    assert log["held"] == (0, 0x1234, KEY)          # invisible since the commit, not yet wiped
    assert log["zeroized"] == (0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_argument_errors_name_the_value():
    import pytest
    from ipchan.hw.engine import Engine
    from ipchan.hw.esp.buffer import PacketBuffer
    from ipchan.hw.esp.inbound import InboundEsp
    from ipchan.hw.esp.outbound import OutboundEsp
    with pytest.raises(ValueError, match="ESP datapath must be None, 'compact' or 'fast', "
                                         "not 'turbo'"):
        Engine(esp="turbo")
    with pytest.raises(TypeError, match="Parameters must be an EngineParams, not 3"):
        InboundEsp(3)
    with pytest.raises(TypeError, match="Parameters must be an EngineParams, not 3"):
        OutboundEsp(3)
    with pytest.raises(ValueError, match="Profile must be 'compact' or 'fast', not 'tiny'"):
        InboundEsp(profile="tiny")
    with pytest.raises(ValueError, match="Buffer size must be a positive integer, not 0"):
        PacketBuffer(0)
    plain, esp = Engine(), Engine(esp="compact")
    for part in (plain, plain.table, esp, esp.table, esp.inbound, esp.outbound):
        part._MustUse__silence = True                         # looked at, not built
    assert not hasattr(plain, "s_axis_in")                    # no datapath unless asked for
    assert esp.s_axis_in.payload.shape().size == 128 + 16 + 1
