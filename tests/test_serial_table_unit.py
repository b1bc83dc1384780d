"""Cycle-level properties of the block-RAM register file and SA table (:class:`SerialTable`).

The table is driven on its register side directly (no AXI): ``w_stb`` for one clock while
``busy`` is low, ``r_stb`` for one clock with ``r_data`` valid ``SerialTable.READ_LATENCY``
clocks later, accesses spaced as :class:`~ipchan.hw.axil.RegisterBridge` spaces them. What these
tests look at is what a register-level test through the bridge cannot see: keys zeroized in the
slot RAM itself, the snapshot of a 64-bit pair against the sequencer's writes, reads answered
while a command runs, and the reset-time zeroization of both RAMs.
"""

import gc
import re
import warnings

import pytest
from amaranth.hdl import ResetInserter, Signal, UnusedElaboratable
from amaranth.sim import Simulator

from ipchan.hw import contract
from ipchan.hw.contract import (Access, Algorithm, Direction, EngineParams, Error, Op, SlotState,
                                field_of, register)
from ipchan.hw.serial_table import HIGH_HALF_LIVE, REG_RAM_DEPTH, SLOT_WORDS, SerialTable


PARAMS = EngineParams(n_entries=4, tunnel_endpoints=False)
ENDPOINT_PARAMS = EngineParams(n_entries=4, tunnel_endpoints=True)

KEY = [int.from_bytes(bytes(range(4 * i + 1, 4 * i + 5)), "big") for i in range(8)]
SALT = 0xCAFEF00D
#: Clocks from ``r_stb`` to ``r_data``.
READ_LATENCY = SerialTable.READ_LATENCY
#: Idle clocks between two host reads through :class:`~ipchan.hw.axil.RegisterBridge`: r_stb in
#: IDLE, ``READ_LATENCY`` clocks to READ_DATA, READ_RESP, and IDLE again at the earliest.
BRIDGE_GAP = READ_LATENCY + 1
MAPPED = {r.addr for r in contract.REGISTERS}


# --- Register-side helpers ---------------------------------------------------------------------

def addr_of(name):
    return name if isinstance(name, int) else register(name).addr


async def wait_ready(ctx, dut):
    while ctx.get(dut.busy):
        await ctx.tick()


async def idle(ctx, clocks):
    for _ in range(clocks):
        await ctx.tick()


async def write(ctx, dut, name, value, strb=0b1111):
    """One register write (held until ``busy`` is low); returns ``w_err``, which the table
    decodes from the registered access: the clock after the strobe."""
    await wait_ready(ctx, dut)
    ctx.set(dut.addr, addr_of(name))
    ctx.set(dut.w_data, value)
    ctx.set(dut.w_strb, strb)
    ctx.set(dut.w_stb, 1)
    await ctx.tick()
    ctx.set(dut.w_stb, 0)
    return ctx.get(dut.w_err)


async def read_at(ctx, dut, schedule):
    """Reads issued at the given clocks (``[(clock, name), ...]``, counted from now, one a
    clock at most): ``r_stb`` for one clock each, ``(r_data, r_err)`` sampled
    ``READ_LATENCY`` clocks later (for a latency of 1: after the tick, before the next)."""
    by_clock = dict(schedule)
    assert len(by_clock) == len(schedule)
    results = {}
    for clock in range(max(by_clock) + READ_LATENCY):
        if clock in by_clock:
            ctx.set(dut.addr, addr_of(by_clock[clock]))
            ctx.set(dut.r_stb, 1)
        else:
            ctx.set(dut.r_stb, 0)
        await ctx.tick()
        if clock + 1 - READ_LATENCY in by_clock:
            results[clock + 1 - READ_LATENCY] = (ctx.get(dut.r_data), ctx.get(dut.r_err))
    ctx.set(dut.r_stb, 0)
    return [results[clock] for clock, _ in schedule]


async def read_full(ctx, dut, name):
    """One register read; ``(r_data, r_err)``."""
    return (await read_at(ctx, dut, [(0, name)]))[0]


async def read(ctx, dut, name):
    return (await read_full(ctx, dut, name))[0]


async def read_pair(ctx, dut, lo, hi, gap=BRIDGE_GAP):
    """The low half, then ``gap`` clocks without a read, then the high half (``gap=0``: r_stb
    in consecutive clocks)."""
    (lo_value, _), (hi_value, _) = await read_at(ctx, dut, [(0, lo), (gap + 1, hi)])
    return lo_value, hi_value


def cmd_word(op, index=0, table=0):
    return (field_of("CMD", "OP").put(op) | field_of("CMD", "INDEX").put(index) |
            field_of("CMD", "TABLE").put(table))


async def start(ctx, dut, op, index=0, table=0):
    """Write CMD; return once the command shows ``busy``, without waiting for it to end."""
    await write(ctx, dut, "CMD", cmd_word(op, index, table))
    await idle(ctx, READ_LATENCY - 1)     # a table that registers the access starts a clock later


async def error(ctx, dut):
    return Error(field_of("STATUS", "ERROR").get(await read(ctx, dut, "STATUS")))


async def command(ctx, dut, op, index=0, table=0):
    """Run one command to completion; return its error code."""
    await start(ctx, dut, op, index, table)
    await wait_ready(ctx, dut)
    return await error(ctx, dut)


def flags_word(direction=Direction.INBOUND, alg=Algorithm.AES_GCM_16, place=0, window=0):
    return (field_of("SA_FLAGS", "DIR").put(direction) | field_of("SA_FLAGS", "ALG").put(alg) |
            field_of("SA_FLAGS", "PLACE").put(place) | field_of("SA_FLAGS", "WINDOW").put(window))


async def stage(ctx, dut, spi, *, key=KEY, salt=SALT, seq=(0, 0), src=None, dst=None,
                **flag_values):
    """Write the staging registers for one SA."""
    await write(ctx, dut, "SA_SPI", spi)
    await write(ctx, dut, "SA_FLAGS", flags_word(**flag_values))
    await write(ctx, dut, "SA_SEQ_LO", seq[0])
    await write(ctx, dut, "SA_SEQ_HI", seq[1])
    for i, word in enumerate(key):
        await write(ctx, dut, f"SA_KEY{i}", word)
    await write(ctx, dut, "SA_SALT", salt)
    for end, words in (("SRC", src), ("DST", dst)):
        if words is not None:
            for i, word in enumerate(words):
                await write(ctx, dut, f"SA_{end}{i}", word)


async def install(ctx, dut, spi, **kwargs):
    """Stage and INSTALL one SA; return its slot index (the command must succeed)."""
    await stage(ctx, dut, spi, **kwargs)
    assert await command(ctx, dut, Op.INSTALL) == Error.NONE
    result = await read(ctx, dut, "RESULT")
    assert field_of("RESULT", "FOUND").get(result) == 1
    return field_of("RESULT", "INDEX").get(result)


def spis_in_distinct_buckets(params, n, first=0x1000):
    """``n`` SPIs whose table-0 buckets differ, so they can all be installed inbound."""
    spis, buckets, spi = [], set(), first
    while len(spis) < n:
        bucket = contract.spi_hash(0, spi, params.bucket_width)
        if bucket not in buckets:
            buckets.add(bucket)
            spis.append(spi)
        spi += 1
    return spis


# --- White-box RAM access ------------------------------------------------------------------------

def slot_word_addr(dut, slot, word):
    return (slot << (dut.slot_stride.bit_length() - 1)) | word


def slot_words(ctx, dut, slot):
    """Every word of a slot, by word number (0 .. slot_stride - 1)."""
    return [ctx.get(dut.slot_ram.data[slot_word_addr(dut, slot, w)])
            for w in range(dut.slot_stride)]


def named_slot_words(ctx, dut, slot):
    return {name: ctx.get(dut.slot_ram.data[slot_word_addr(dut, slot, w)])
            for name, w in SLOT_WORDS.items() if w < dut.slot_stride}


def ram_dump(ctx, dut):
    return ([ctx.get(dut.reg_ram.data[i]) for i in range(REG_RAM_DEPTH)],
            [ctx.get(dut.slot_ram.data[i]) for i in range(dut.slot_ram_depth)])


def run(top, *testbenches, deadline=20000):
    # Building the simulator elaborates the table, which creates dut.reg_ram and dut.slot_ram.
    sim = Simulator(top)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)

    async def watchdog(ctx):
        for _ in range(deadline):
            await ctx.tick()
        raise AssertionError(f"The testbench did not finish in {deadline} clocks")

    sim.add_testbench(watchdog, background=True)
    sim.run()


def slot_words_list(named, dut):
    """The words of a slot, from named_slot_words."""
    words = [0] * dut.slot_stride
    for name, value in named.items():
        words[SLOT_WORDS[name]] = value
    return words


def assert_zeroized(words, gen):
    """A released slot: every word zero but the generation, which is kept."""
    expected = [gen if w == SLOT_WORDS["GEN"] else 0 for w in range(len(words))]
    assert words == expected, [hex(w) for w in words]


# --- 1. Zeroization of keys in the slot RAM ----------------------------------------------------

def test_delete_and_abort_zeroize_slot_ram():
    """A committed SA's key, salt and public words sit in the slot RAM; once its deletion is
    committed (and the command has finished) every word of the slot is zero but the generation.
    An aborted install, and an install cancelled by DELETE and then committed, leave no key."""
    dut = SerialTable(PARAMS)
    spi_a, spi_b, spi_c, spi_d = spis_in_distinct_buckets(PARAMS, 4)
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        a = await install(ctx, dut, spi_a, seq=(0x1234, 0x5678))
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["stored"] = named_slot_words(ctx, dut, a)
        assert await command(ctx, dut, Op.DELETE, index=a) == Error.NONE
        out["staged_delete"] = slot_words(ctx, dut, a)   # still visible: still keyed
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        assert not ctx.get(dut.busy)
        out["after_delete"] = slot_words(ctx, dut, a)
        out["free_after_delete"] = await read(ctx, dut, "FREE")
        bucket = contract.spi_hash(0, spi_a, PARAMS.bucket_width)
        assert await command(ctx, dut, Op.READ_BUCKET, index=bucket, table=0) == Error.NONE
        out["bucket_after_delete"] = await read(ctx, dut, "RB_BUCKET")

        # ABORT of a staged install.
        b = await install(ctx, dut, spi_b, salt=0x5A17)
        out["staged_b"] = named_slot_words(ctx, dut, b)
        assert await command(ctx, dut, Op.ABORT) == Error.NONE
        out["after_abort"] = slot_words(ctx, dut, b)

        # An install cancelled by DELETE, released by the next COMMIT (with another SA).
        c = await install(ctx, dut, spi_c)
        assert await command(ctx, dut, Op.DELETE, index=c) == Error.NONE
        d = await install(ctx, dut, spi_d)
        out["staged_c"] = named_slot_words(ctx, dut, c)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["after_cancel"] = slot_words(ctx, dut, c)
        out["d"] = named_slot_words(ctx, dut, d)
        out["done"] = True

    run(dut, host)
    assert out.get("done")
    stored = out["stored"]
    assert [stored[f"KEY{i}"] for i in range(8)] == KEY
    assert stored["SALT"] == SALT
    assert stored["SPI"] == spi_a
    assert stored["FLAGS"] == flags_word()
    assert (stored["SEQ_LO"], stored["SEQ_HI"]) == (0x1234, 0x5678)
    assert stored["GEN"] == 1
    assert out["staged_delete"] == slot_words_list(stored, dut)
    assert_zeroized(out["after_delete"], gen=1)
    assert out["free_after_delete"] == PARAMS.n_entries
    assert field_of("RB_BUCKET", "VALID").get(out["bucket_after_delete"]) == 0

    assert out["staged_b"]["SALT"] == 0x5A17
    assert [out["staged_b"][f"KEY{i}"] for i in range(8)] == KEY
    assert_zeroized(out["after_abort"], gen=out["staged_b"]["GEN"])
    assert out["staged_b"]["GEN"] != 0

    assert [out["staged_c"][f"KEY{i}"] for i in range(8)] == KEY
    assert_zeroized(out["after_cancel"], gen=out["staged_c"]["GEN"])
    assert out["staged_c"]["GEN"] != 0
    # The SA committed alongside keeps its key.
    assert [out["d"][f"KEY{i}"] for i in range(8)] == KEY


# --- 2. Staging registers --------------------------------------------------------------------

def test_staging_registers():
    """SA_KEY* and SA_SALT read zero yet hold what was written (INSTALL copies it); every RW
    register reads back what was written; a write changes only the bytes its strobes select."""
    dut = SerialTable(PARAMS)
    rw = [r.name for r in contract.REGISTERS if r.access == Access.RW]
    wo = [f"SA_KEY{i}" for i in range(8)] + ["SA_SALT"]
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        for n, name in enumerate(rw):
            await write(ctx, dut, name, 0x10203040 + 0x01010101 * n)
        out["rw"] = {name: await read(ctx, dut, name) for name in rw}
        await stage(ctx, dut, 0x4242, key=[0xDEAD0000 + i for i in range(8)], salt=0xFEEDBEEF,
                    direction=Direction.OUTBOUND)
        out["wo"] = {name: await read_full(ctx, dut, name) for name in wo}
        out["cmd"] = await read_full(ctx, dut, "CMD")
        assert await command(ctx, dut, Op.INSTALL) == Error.NONE
        index = field_of("RESULT", "INDEX").get(await read(ctx, dut, "RESULT"))
        out["slot"] = named_slot_words(ctx, dut, index)

        lanes = {}
        for lane in range(4):
            await write(ctx, dut, "LOOKUP_SPI", 0xAABBCCDD)
            await write(ctx, dut, "LOOKUP_SPI", 0x11223344, strb=1 << lane)
            lanes[lane] = await read(ctx, dut, "LOOKUP_SPI")
        await write(ctx, dut, "SA_FLAGS", 0xFFFFFFFF)
        await write(ctx, dut, "SA_FLAGS", 0, strb=0b0001)
        lanes["flags"] = await read(ctx, dut, "SA_FLAGS")
        out["lanes"] = lanes
        out["done"] = True

    run(dut, host)
    assert out.get("done")
    assert out["rw"] == {name: 0x10203040 + 0x01010101 * n for n, name in enumerate(rw)}
    assert out["wo"] == {name: (0, 0) for name in wo}
    assert out["cmd"] == (0, 0)
    slot = out["slot"]
    assert [slot[f"KEY{i}"] for i in range(8)] == [0xDEAD0000 + i for i in range(8)]
    assert slot["SALT"] == 0xFEEDBEEF
    assert out["lanes"] == {0: 0xAABBCC44, 1: 0xAABB33DD, 2: 0xAA22CCDD, 3: 0x11BBCCDD,
                            "flags": 0xFFFFFF00}


# --- 3. Unmapped addresses and read-only registers -------------------------------------------

def test_unmapped_and_read_only():
    """An unmapped write sets w_err the clock after its strobe and changes nothing, not even the words the
    table keeps at unmapped addresses or registers the address aliases in the register RAM; an
    unmapped read returns 0 with r_err. A write to a read-only register is ignored, no error."""
    dut = SerialTable(PARAMS)
    alias = register("SA_SPI").addr + 4 * REG_RAM_DEPTH       # same register-RAM word
    top = (1 << contract.ADDR_WIDTH) - 4
    unmapped = [*HIGH_HALF_LIVE.values(), alias, top]
    assert not MAPPED & set(unmapped)
    read_only = ["RB_SPI", "RB_SEQ_LO", "VERSION_LO", "RESULT", "CNT_INSTALLS", "FREE", "LIVE",
                 "STATUS", "ID", "CONFIG0"]
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        index = await install(ctx, dut, 0x7777, seq=(0x11111111, 0x22222222),
                              direction=Direction.OUTBOUND)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        assert await command(ctx, dut, Op.READ_ENTRY, index=index) == Error.NONE
        await write(ctx, dut, "SA_SPI", 0x5555)
        before = {name: await read(ctx, dut, name) for name in read_only}
        out["unmapped_reads"] = {a: await read_full(ctx, dut, a) for a in unmapped}
        errs = {}
        for a in unmapped:
            errs[a] = await write(ctx, dut, a, 0xFFFFFFFF)
            await ctx.tick()
            errs[a] = (errs[a], ctx.get(dut.w_err))   # and low again the clock after
        out["unmapped_w_err"] = errs
        out["ro_w_err"] = {name: await write(ctx, dut, name, 0xA5A5A5A5) for name in read_only}
        out["mapped_w_err"] = await write(ctx, dut, "LOOKUP_SPI", 1)
        out["busy_after_ro_writes"] = ctx.get(dut.busy)
        after = {name: await read(ctx, dut, name) for name in read_only}
        out["before"], out["after"] = before, after
        out["sa_spi"] = await read(ctx, dut, "SA_SPI")
        out["version"] = await read_pair(ctx, dut, "VERSION_LO", "VERSION_HI")
        out["rb_seq"] = await read_pair(ctx, dut, "RB_SEQ_LO", "RB_SEQ_HI")
        out["lookup_version"] = await read_pair(ctx, dut, "LOOKUP_VERSION_LO",
                                                "LOOKUP_VERSION_HI")
        out["errors"] = await error(ctx, dut)
        out["cnt_errors"] = await read(ctx, dut, "CNT_CMD_ERRORS")
        out["done"] = True

    run(dut, host)
    assert out.get("done")
    assert out["unmapped_reads"] == {a: (0, 1) for a in unmapped}
    assert out["unmapped_w_err"] == {a: (1, 0) for a in unmapped}
    assert out["ro_w_err"] == {name: 0 for name in read_only}
    assert out["mapped_w_err"] == 0
    assert out["busy_after_ro_writes"] == 0
    assert out["before"]["RB_SPI"] == 0x7777 and out["before"]["VERSION_LO"] == 1
    assert out["after"] == out["before"]
    assert out["sa_spi"] == 0x5555
    assert out["version"] == (1, 0)
    assert out["rb_seq"] == (0x11111111, 0x22222222)
    assert out["lookup_version"] == (0, 0)
    assert out["errors"] == Error.NONE and out["cnt_errors"] == 0


# --- 4. 64-bit pairs -------------------------------------------------------------------------

A_SEQ = (0x11111111, 0x22222222)
B_SEQ = (0x33333333, 0x44444444)


# The closest RegisterBridge issues two reads; closer ones are outside SerialTable's interface.
@pytest.mark.parametrize("gap", [BRIDGE_GAP, BRIDGE_GAP + 1], ids=["bridge_spacing", "one_more"])
def test_pair_snapshot(gap):
    """RB_SEQ_HI returns what was captured when RB_SEQ_LO was last read, not the current high
    half; reading LO then HI (``gap`` clocks apart) gives the whole current pair."""
    dut = SerialTable(PARAMS)
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        a = await install(ctx, dut, 0x1001, seq=A_SEQ, direction=Direction.OUTBOUND)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        assert await command(ctx, dut, Op.READ_ENTRY, index=a) == Error.NONE
        out["a"] = await read_pair(ctx, dut, "RB_SEQ_LO", "RB_SEQ_HI", gap)
        b = await install(ctx, dut, 0x1002, seq=B_SEQ, direction=Direction.OUTBOUND)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        assert await command(ctx, dut, Op.READ_ENTRY, index=b) == Error.NONE
        out["hi_first"] = await read(ctx, dut, "RB_SEQ_HI")
        await idle(ctx, 5)
        out["hi_again"] = await read(ctx, dut, "RB_SEQ_HI")
        out["b"] = await read_pair(ctx, dut, "RB_SEQ_LO", "RB_SEQ_HI", gap)
        out["done"] = True

    run(dut, host)
    assert out.get("done")
    assert out["a"] == A_SEQ
    assert out["hi_first"] == A_SEQ[1]
    assert out["hi_again"] == A_SEQ[1]
    assert out["b"] == B_SEQ


@pytest.mark.parametrize("gap", [BRIDGE_GAP, BRIDGE_GAP + 1], ids=["bridge_spacing", "one_more"])
def test_pair_never_torn_during_read_entry(gap):
    """While READ_ENTRY rewrites RB_SEQ from one SA's to another's, every (LO, HI) read pair,
    started 0..30 clocks after the CMD write, is one SA's whole sequence number."""
    dut = SerialTable(PARAMS)
    pairs = {}
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        a = await install(ctx, dut, 0x1001, seq=A_SEQ, direction=Direction.OUTBOUND)
        b = await install(ctx, dut, 0x1002, seq=B_SEQ, direction=Direction.OUTBOUND)
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        for delay in range(31):
            for old, new, old_seq, expected in ((a, b, A_SEQ, B_SEQ), (b, a, B_SEQ, A_SEQ)):
                assert await command(ctx, dut, Op.READ_ENTRY, index=old) == Error.NONE
                await read_pair(ctx, dut, "RB_SEQ_LO", "RB_SEQ_HI", BRIDGE_GAP)
                await start(ctx, dut, Op.READ_ENTRY, index=new)
                await idle(ctx, delay)
                seen = []
                while True:
                    was_busy = ctx.get(dut.busy)
                    seen.append(await read_pair(ctx, dut, "RB_SEQ_LO", "RB_SEQ_HI", gap))
                    if not was_busy:
                        break
                    await idle(ctx, 3)
                pairs[(delay, new)] = seen
                assert await error(ctx, dut) == Error.NONE
                out.setdefault("last", []).append((seen[-1], expected))
                out.setdefault("first_is_old", []).append(seen[0] == old_seq)
        out["done"] = True

    run(dut, host, deadline=60000)
    assert out.get("done")
    torn = {k: [(hex(lo), hex(hi)) for lo, hi in v if (lo, hi) not in (A_SEQ, B_SEQ)]
            for k, v in pairs.items()}
    torn = {k: v for k, v in torn.items() if v}
    assert not torn, (f"{len(torn)} of {len(pairs)} runs read a torn (LO, HI) pair; at "
                      f"(delay, slot): {dict(list(torn.items())[:4])}")
    for seen, expected in out["last"]:
        assert seen == expected
    # Some pairs were read while the copy had not reached RB_SEQ yet, some after it.
    assert 0 < sum(out["first_is_old"]) < len(out["first_is_old"])


def test_write_after_pair_read_lands():
    """A write as soon after the read of a pair's low half as RegisterBridge can issue it, or
    later, is not lost to the snapshot of the high half."""
    dut = SerialTable(PARAMS)
    landed = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        # Clocks from r_stb to w_stb: the bridge's READ_WAIT, READ_DATA and READ_RESP come
        # between, so its soonest write is READ_LATENCY + 2 clocks after the read.
        for delay in range(READ_LATENCY + 2, READ_LATENCY + 6):
            await write(ctx, dut, "SA_SPI", 0)
            await idle(ctx, BRIDGE_GAP)
            ctx.set(dut.addr, addr_of("VERSION_LO"))
            ctx.set(dut.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.r_stb, 0)
            await idle(ctx, delay - 1)
            await write(ctx, dut, "SA_SPI", 0x1000 + delay)
            await idle(ctx, BRIDGE_GAP)
            landed[delay] = await read(ctx, dut, "SA_SPI")
        landed["done"] = True

    run(dut, host)
    assert landed.pop("done")
    lost = {delay: hex(value) for delay, value in landed.items() if value != 0x1000 + delay}
    assert not lost, f"writes lost, by clocks from the VERSION_LO r_stb to w_stb: {lost}"


# --- 5. Reads while a command runs -----------------------------------------------------------

def test_reads_never_held_while_busy():
    """STATUS reads during a command answer BUSY=1 in the clock after r_stb, SA_SPI reads answer
    its value, and the commands (INSTALL, COMMIT with a zeroizing scan, READ_ENTRY) end exactly
    as they do without the interleaved reads: same registers, same RAM contents."""
    spis = spis_in_distinct_buckets(PARAMS, PARAMS.n_entries)
    readable = [r.name for r in contract.REGISTERS if r.access != Access.WO]
    rb = [name for name in readable if name.startswith("RB_") and not name.startswith("RB_BUCKET")]

    def scenario(interleave):
        dut = SerialTable(PARAMS)
        out = {"status": [], "sa_spi": [], "rb": []}

        async def run_cmd(ctx, op, index=0, phase=0):
            await start(ctx, dut, op, index)
            n = phase
            while ctx.get(dut.busy):
                if not interleave:
                    await ctx.tick()
                    continue
                # STATUS, SA_SPI, an idle clock, in a rotation that starts where phase says.
                kind = n % 3
                n += 1
                if kind == 0:
                    value = await read(ctx, dut, "STATUS")
                    # busy falls once, at the end: still high now, it was high all along.
                    out["status"].append((ctx.get(dut.busy), field_of("STATUS", "BUSY").get(value)))
                elif kind == 1:
                    out["sa_spi"].append((await read(ctx, dut, "SA_SPI"), out["spi"]))
                else:
                    await ctx.tick()
            return await error(ctx, dut)

        async def host(ctx):
            await wait_ready(ctx, dut)
            indexes = []
            for n, spi in enumerate(spis):
                await stage(ctx, dut, spi, seq=(n + 1, 0x100 + n),
                            key=[(0x01000000 * (n + 1)) | i for i in range(8)])
                out["spi"] = spi
                assert await run_cmd(ctx, Op.INSTALL, phase=n) == Error.NONE
                indexes.append(field_of("RESULT", "INDEX").get(await read(ctx, dut, "RESULT")))
            assert await run_cmd(ctx, Op.COMMIT) == Error.NONE
            for n, index in enumerate(indexes[:-1]):
                assert await run_cmd(ctx, Op.DELETE, index, phase=n) == Error.NONE
            assert await run_cmd(ctx, Op.COMMIT, phase=1) == Error.NONE
            for n, index in enumerate(indexes):
                assert await run_cmd(ctx, Op.READ_ENTRY, index, phase=n) == Error.NONE
                out["rb"].append({name: await read(ctx, dut, name) for name in rb})
            regs = {}
            for name in readable:
                regs[name] = await read(ctx, dut, name)
                await idle(ctx, BRIDGE_GAP)
            out["regs"] = regs
            out["rams"] = ram_dump(ctx, dut)
            out["done"] = True

        run(dut, host, deadline=20000)
        assert out.get("done")
        return out

    quiet = scenario(False)
    busy = scenario(True)
    during = [bit for still_busy, bit in busy["status"] if still_busy]
    assert len(during) >= 20 and all(during), busy["status"]
    assert len(busy["sa_spi"]) >= 20
    assert all(got == expected for got, expected in busy["sa_spi"]), busy["sa_spi"]
    assert busy["rb"] == quiet["rb"]
    assert busy["regs"] == quiet["regs"]
    assert busy["rams"] == quiet["rams"]
    # And what the run did, so that two identical wrong answers cannot pass.
    regs = quiet["regs"]
    assert (regs["FREE"], regs["LIVE"], regs["VERSION_LO"]) == (PARAMS.n_entries - 1, 1, 2)
    assert (regs["CNT_INSTALLS"], regs["CNT_DELETES"], regs["CNT_COMMITS"]) == (4, 3, 2)
    states = [field_of("RB_STATE", "STATE").get(r["RB_STATE"]) for r in quiet["rb"]]
    assert states == [SlotState.FREE] * 3 + [SlotState.LIVE]
    assert [(r["RB_SPI"], r["RB_SEQ_LO"]) for r in quiet["rb"]] == \
        [(0, 0)] * 3 + [(spis[-1], PARAMS.n_entries)]


# --- 6. Reset ------------------------------------------------------------------------------

def test_reset_zeroizes():
    """Busy from reset until both RAMs are cleared (STATUS answers meanwhile), then FREE is
    N, LIVE, VERSION and every counter 0; a reset with a keyed SA and keys staged (block RAM
    keeps its contents) leaves neither RAM holding a key."""
    dut = SerialTable(PARAMS)
    rst = Signal()
    top = ResetInserter(rst)(dut)
    counters = [r.name for r in contract.REGISTERS if r.name.startswith("CNT_")]
    out = {}

    async def after_reset(ctx):
        state = {"busy_at_start": ctx.get(dut.busy)}
        value = await read(ctx, dut, "STATUS")
        state["status_busy"] = field_of("STATUS", "BUSY").get(value)
        clocks = 1
        while ctx.get(dut.busy):
            await ctx.tick()
            clocks += 1
        state["clocks"] = clocks
        state["free"] = await read(ctx, dut, "FREE")
        state["live"] = await read(ctx, dut, "LIVE")
        state["version"] = await read_pair(ctx, dut, "VERSION_LO", "VERSION_HI")
        state["status"] = await read(ctx, dut, "STATUS")
        state["counters"] = {name: await read(ctx, dut, name) for name in counters}
        state["rams"] = ram_dump(ctx, dut)
        return state

    async def host(ctx):
        out["power_up"] = await after_reset(ctx)
        index = await install(ctx, dut, 0x2222, seq=(5, 6))
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        assert await command(ctx, dut, Op.BUMP_VERSION) == Error.NONE
        await stage(ctx, dut, 0x3333, key=[0xBAD0000 | i for i in range(8)], salt=0xBADBAD)
        out["keyed"] = named_slot_words(ctx, dut, index)
        out["keyed_regs"] = {name: await read(ctx, dut, name) for name in
                             ("FREE", "LIVE", "VERSION_LO", "CNT_INSTALLS", "SA_SPI")}
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        out["reset"] = await after_reset(ctx)
        out["sa_spi"] = await read(ctx, dut, "SA_SPI")
        out["done"] = True

    run(top, host)
    assert out.get("done")
    assert [out["keyed"][f"KEY{i}"] for i in range(8)] == KEY
    assert out["keyed_regs"] == {"FREE": 3, "LIVE": 1, "VERSION_LO": 2, "CNT_INSTALLS": 1,
                                 "SA_SPI": 0x3333}
    n = PARAMS.n_entries
    free_list_base = dut.slot_ram_depth - dut.slot_ram_depth // 4
    expected_slot_ram = [0] * dut.slot_ram_depth
    expected_slot_ram[free_list_base:free_list_base + n] = range(n)
    for phase in ("power_up", "reset"):
        state = out[phase]
        assert state["busy_at_start"] == 1, phase
        assert state["status_busy"] == 1, phase
        assert state["clocks"] > REG_RAM_DEPTH, phase
        assert state["free"] == n, phase
        assert state["live"] == 0, phase
        assert state["version"] == (0, 0), phase
        assert state["status"] == 0, phase
        assert state["counters"] == {name: 0 for name in counters}, phase
        reg_ram, slot_ram = state["rams"]
        assert reg_ram == [0] * REG_RAM_DEPTH, phase
        assert slot_ram == expected_slot_ram, phase
    assert out["sa_spi"] == 0


# --- 7. Tunnel endpoints ---------------------------------------------------------------------

ENDS = {f"{end}{i}": 0x20010DB8 + 0x1000 * (end == "DST") + i for end in ("SRC", "DST")
        for i in range(4)}


def _endpoints(params):
    dut = SerialTable(params)
    out = {}

    async def host(ctx):
        await wait_ready(ctx, dut)
        src = [ENDS[f"SRC{i}"] for i in range(4)]
        dst = [ENDS[f"DST{i}"] for i in range(4)]
        a = await install(ctx, dut, 0x6000, direction=Direction.OUTBOUND, src=src, dst=dst)
        b = await install(ctx, dut, 0x6001, direction=Direction.OUTBOUND,
                          src=[w ^ 0xFFFF for w in src], dst=[w ^ 0xFFFF for w in dst])
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["config2"] = await read(ctx, dut, "CONFIG2")
        out["staging"] = {name: await read(ctx, dut, f"SA_{name}") for name in ENDS}
        for label, index in (("b", b), ("a", a)):
            assert await command(ctx, dut, Op.READ_ENTRY, index=index) == Error.NONE
            out[label] = {name: await read(ctx, dut, f"RB_{name}") for name in ENDS}
        out["slot_a"] = named_slot_words(ctx, dut, a)
        assert await command(ctx, dut, Op.DELETE, index=a) == Error.NONE
        assert await command(ctx, dut, Op.COMMIT) == Error.NONE
        out["after_delete"] = slot_words(ctx, dut, a)
        out["gen_a"] = out["slot_a"]["GEN"]
        out["done"] = True

    run(dut, host)
    assert out.get("done")
    return dut, out


def test_tunnel_endpoints_read_back():
    """With endpoints, SA_SRC*/SA_DST* written before INSTALL come back in RB_SRC*/RB_DST* for
    that slot (not the last one read), sit in the slot RAM and are zeroized with it."""
    dut, out = _endpoints(ENDPOINT_PARAMS)
    assert field_of("CONFIG2", "ENDPOINTS").get(out["config2"]) == 1
    assert out["a"] == ENDS
    assert out["b"] == {name: value ^ 0xFFFF for name, value in ENDS.items()}
    assert {name: out["slot_a"][name] for name in ENDS} == ENDS
    assert dut.slot_stride == 32
    assert_zeroized(out["after_delete"], gen=out["gen_a"])


def test_no_tunnel_endpoints_read_zero():
    """Without endpoints, the staging registers still read back (they are RW registers) but
    RB_SRC*/RB_DST* read zero."""
    dut, out = _endpoints(PARAMS)
    assert field_of("CONFIG2", "ENDPOINTS").get(out["config2"]) == 0
    assert out["staging"] == {name: ENDS[name] ^ 0xFFFF for name in ENDS}
    assert out["a"] == {name: 0 for name in ENDS}
    assert out["b"] == {name: 0 for name in ENDS}
    assert dut.slot_stride == 16


# --- 8. Parameters -----------------------------------------------------------------------------

def test_rejects_bad_params():
    with warnings.catch_warnings():
        # A refused table must not be reported as an unused elaboratable.
        warnings.simplefilter("error", UnusedElaboratable)
        with pytest.raises(TypeError,
                           match=re.escape("Parameters must be an EngineParams, not 'x'")) as info:
            SerialTable("x")
        del info
        gc.collect()
