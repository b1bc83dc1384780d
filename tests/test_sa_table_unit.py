"""Cycle-level properties of the SA table, in Amaranth's simulator.

These are the properties a register-level test cannot see: that a COMMIT changes what the
datapath's lookup port finds in the very cycle the version moves, that keys are zeroized in the
block RAM itself, and what the version does at its last value.
"""

import pytest
from amaranth.sim import Simulator

from ipchan.hw.contract import Algorithm, Direction, EngineParams, Error, Op
from ipchan.hw.sa_table import SaTable


PARAMS = EngineParams(n_entries=4)


def flags(*, direction=Direction.INBOUND, alg=Algorithm.AES_GCM_16, place=0, window=0):
    return {"dir": direction, "alg": alg, "place": place, "window": window}


async def command(ctx, dut, op, *, index=0, table=0, spi=None, key=0, salt=0, **flag_values):
    """Run one command to completion; return its error code."""
    if spi is not None:
        ctx.set(dut.sa_spi, spi)
        ctx.set(dut.sa_key, key)
        ctx.set(dut.sa_salt, salt)
        ctx.set(dut.sa_flags.as_value(), 0)
        for name, value in flags(**flag_values).items():
            ctx.set(getattr(dut.sa_flags, name), value)
    ctx.set(dut.cmd_op, op)
    ctx.set(dut.cmd_index, index)
    ctx.set(dut.cmd_table, table)
    ctx.set(dut.cmd_stb, 1)
    await ctx.tick()
    ctx.set(dut.cmd_stb, 0)
    while ctx.get(dut.busy):
        await ctx.tick()
    return Error(ctx.get(dut.error))


async def wait_ready(ctx, dut):
    while ctx.get(dut.busy):
        await ctx.tick()


def run(dut, *testbenches, deadline=20000):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(deadline * 1e-8)


def test_commit_is_atomic_with_version():
    """Every lookup result pairs 'found' with the version it was made under: the SA appears in
    exactly the cycle VERSION moves, and disappears in exactly the cycle it moves again."""
    dut = SaTable(PARAMS)
    spi = 0x12345678
    seen = []
    marks = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        assert await command(ctx, dut, Op.INSTALL, spi=spi) == Error.NONE
        index = ctx.get(dut.result_index)
        for _ in range(20):
            await ctx.tick()
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        marks["installed"] = ctx.get(dut.version)
        for _ in range(20):
            await ctx.tick()
        assert await command(ctx, dut, Op.DELETE, index=index) == Error.NONE
        for _ in range(20):
            await ctx.tick()
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        marks["deleted"] = ctx.get(dut.version)
        for _ in range(20):
            await ctx.tick()
        marks["done"] = True

    async def datapath(ctx):
        # Back-to-back lookups on the datapath's port for the whole run.
        ctx.set(dut.lookup_req.payload, spi)
        ctx.set(dut.lookup_req.valid, 1)
        ctx.set(dut.lookup_resp.ready, 1)
        while "done" not in marks:
            await ctx.tick()
            if ctx.get(dut.lookup_resp.valid):
                seen.append((ctx.get(dut.lookup_resp.payload.found),
                             ctx.get(dut.lookup_resp.payload.version)))

    run(dut, host, datapath)
    assert marks["installed"] == 1 and marks["deleted"] == 2
    assert len(seen) > 15
    for found, version in seen:
        assert found == (version == 1), (found, version)
    assert {v for _, v in seen} == {0, 1, 2}


def _key_words(dut, ctx, index):
    return ctx.get(dut.key_mem.data[index])


def test_delete_zeroizes_key():
    """A deleted SA's key and salt are overwritten with zeros in the block RAM once the
    deletion is committed; an aborted install leaves no key behind either."""
    dut = SaTable(PARAMS)
    key = int.from_bytes(bytes(range(1, 33)), "big")
    salt = 0xCAFEF00D
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        assert await command(ctx, dut, Op.INSTALL, spi=0x1000, key=key, salt=salt) == Error.NONE
        a = ctx.get(dut.result_index)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["stored"] = _key_words(dut, ctx, a)
        assert await command(ctx, dut, Op.DELETE, index=a) == Error.NONE
        out["staged_delete"] = _key_words(dut, ctx, a)   # still in use until the commit
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["after_delete"] = _key_words(dut, ctx, a)
        assert await command(ctx, dut, Op.INSTALL, spi=0x2000, key=key, salt=salt) == Error.NONE
        b = ctx.get(dut.result_index)
        assert await command(ctx, dut, Op.ABORT) == Error.NONE
        out["after_abort"] = _key_words(dut, ctx, b)
        out["buckets"] = [ctx.get(mem.data[i]).valid for mem in dut.bucket_mems
                          for i in range(PARAMS.n_buckets)]

    run(dut, host)
    assert out["stored"] == (key << 32) | salt
    assert out["staged_delete"] == out["stored"]
    assert out["after_delete"] == 0
    assert out["after_abort"] == 0
    assert not any(out["buckets"]), "a released SA left its SPI in a hash bucket"


def test_version_never_wraps():
    """At its largest value the version refuses to move (VERSION_EXHAUSTED) rather than wrap,
    and the refused COMMIT leaves the staged change in place."""
    dut = SaTable(EngineParams(n_entries=4, version_width=4))
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        for _ in range(14):
            assert await command(ctx, dut, Op.BUMP_VERSION) == Error.NONE
        assert await command(ctx, dut, Op.INSTALL, spi=0x1000) == Error.NONE
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["top"] = ctx.get(dut.version)
        assert await command(ctx, dut, Op.INSTALL, spi=0x2000) == Error.NONE
        out["commit"] = await command(ctx, dut, Op.COMMIT)
        out["bump"] = await command(ctx, dut, Op.BUMP_VERSION)
        out["after"] = ctx.get(dut.version)
        out["staged"] = ctx.get(dut.staged)

    run(dut, host)
    assert out == {"top": 15, "commit": Error.VERSION_EXHAUSTED,
                   "bump": Error.VERSION_EXHAUSTED, "after": 15, "staged": 1}


def test_generation_moves_on_reuse():
    """A slot that is freed and installed again reads a new generation; FIFO reuse order."""
    dut = SaTable(EngineParams(n_entries=2))
    got = []

    async def host(ctx):
        await wait_ready(ctx, dut)
        for round_ in range(3):
            assert await command(ctx, dut, Op.INSTALL, spi=0x1000 + round_,
                                 direction=Direction.OUTBOUND) == Error.NONE
            idx, gen = ctx.get(dut.result_index), ctx.get(dut.result_gen)
            got.append((idx, gen))
            assert await command(ctx, dut, Op.COMMIT) == Error.NONE
            assert await command(ctx, dut, Op.DELETE, index=idx) == Error.NONE
            assert await command(ctx, dut, Op.COMMIT) == Error.NONE

    run(dut, host)
    assert got == [(0, 1), (1, 1), (0, 2)]


def test_sa_table_rejects_bad_params():
    with pytest.raises(TypeError, match=r"Parameters must be an EngineParams, not 16"):
        SaTable(16)


@pytest.mark.parametrize("n_entries", [4, 256])
def test_lookup_latency_is_constant(n_entries):
    """SPI to index takes the same number of cycles whatever N is (two buckets compared in
    parallel, no N-wide comparator bank)."""
    dut = SaTable(EngineParams(n_entries=n_entries))
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        assert await command(ctx, dut, Op.INSTALL, spi=0xABCDEF01) == Error.NONE
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        for name, spi in (("hit", 0xABCDEF01), ("miss", 0x12345678)):
            ctx.set(dut.lookup_req.payload, spi)
            ctx.set(dut.lookup_req.valid, 1)
            ctx.set(dut.lookup_resp.ready, 1)
            cycles = 0
            while not ctx.get(dut.lookup_req.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.lookup_req.valid, 0)
            while not ctx.get(dut.lookup_resp.valid):
                await ctx.tick()
                cycles += 1
            out[name] = (cycles, ctx.get(dut.lookup_resp.payload.found))
            await ctx.tick()

    run(dut, host, deadline=4 * n_entries * 20 + 2000)
    assert out == {"hit": (LOOKUP_CYCLES, 1), "miss": (LOOKUP_CYCLES, 0)}


#: Cycles from a lookup request being taken to its result being valid.
LOOKUP_CYCLES = 3
