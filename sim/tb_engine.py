"""cocotb testbench for the engine: the host driver, over AXI4-Lite, against the golden model.

Run from pytest (tests/test_engine_sim.py) through cocotb's Python runner, on Verilator and
Icarus. Every test drives the gateware only through :class:`ipchan.sw.driver.Engine`.
"""

import itertools
import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from ipchan.hw.contract import Error, Op
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.regs import ADDR, FIELD

from .build import params_from_env
from .cocotb_transport import CocotbTransport, run_driver
from .scoreboard import Twin, engine_state, random_sa, random_walk


def cycle_pause():
    return itertools.cycle([1, 1, 1, 0])


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.params = params_from_env(os.environ["IPCHAN_PARAMS"])
        # Four-state simulators start every input at X: hold reset and idle the bus first.
        dut.rst.value = 1
        for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
            getattr(dut, f"s_axil_{name}").value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axil = self.transport = None

    def set_idle_generator(self, generator=None):
        if generator:
            for ch in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                       self.axil.read_if.ar_channel):
                ch.set_pause_generator(generator())

    def set_backpressure_generator(self, generator=None):
        if generator:
            for ch in (self.axil.write_if.b_channel, self.axil.read_if.r_channel):
                ch.set_pause_generator(generator())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        # Icarus evaluates some combinational blocks only once an input changes, so the ready
        # outputs read X until the engine leaves its reset-time zeroization. The AXI master
        # samples them every cycle, so it starts once they resolve.
        for _ in range(4 * self.params.n_buckets + 16):
            await RisingEdge(self.dut.clk)
            if all(getattr(self.dut, f"s_axil_{n}").value.is_resolvable
                   for n in ("awready", "wready", "arready", "bvalid", "rvalid")):
                break
        else:
            raise AssertionError("AXI4-Lite outputs never resolved after reset")
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(self.dut, "s_axil"), self.dut.clk,
                                  self.dut.rst)
        # Thousands of register accesses per test: log only what goes wrong.
        self.axil.write_if.log.setLevel(logging.WARNING)
        self.axil.read_if.log.setLevel(logging.WARNING)
        self.transport = CocotbTransport(self.axil)

    def twin(self):
        return Twin(Engine(self.transport), Engine.for_model(self.params))


@cocotb.test()
@cocotb.parametrize(idle_inserter=[None, cycle_pause], backpressure_inserter=[None, cycle_pause])
async def test_walking_skeleton(dut, idle_inserter=None, backpressure_inserter=None):
    """Install, look up, commit, delete, reuse: every answer and the whole table match the model."""
    tb = TB(dut)
    await tb.reset()
    tb.set_idle_generator(idle_inserter)
    tb.set_backpressure_generator(backpressure_inserter)

    def scenario():
        twin = tb.twin()
        rng = random.Random(1)
        n = tb.params.n_entries
        refs = [twin.call("install", random_sa(rng, spi=0x1000 + i, params=tb.params))
                for i in range(n)]
        assert [r.index for r in refs] == list(range(n))
        assert twin.call("lookup", 0x1000).found is False   # staged, not yet visible
        v1 = twin.call("commit")
        assert v1 == 1
        twin.call("install", random_sa(rng, params=tb.params))   # table full, on both
        for i in range(0, n, 2):
            twin.call("delete", i)
        twin.call("lookup", 0x1000)
        assert twin.call("commit") == 2
        for i in range(n // 2):
            twin.call("install", random_sa(rng, spi=0x2000 + i, params=tb.params))
        assert twin.call("commit") == 3
        twin.check_state()
        return twin.steps

    steps = await run_driver(scenario)
    dut._log.info("%d lockstep steps agreed with the model", steps)


@cocotb.test()
async def test_random_against_model(dut):
    """A long seeded random sequence agrees with the golden model, step by step."""
    tb = TB(dut)
    await tb.reset()
    seed = int(os.environ.get("IPCHAN_SEED", "2026"))
    steps = int(os.environ.get("IPCHAN_STEPS", "300"))

    def scenario():
        twin = tb.twin()
        random_walk(twin, seed, steps)
        return twin.dut.counters()

    counters = await run_driver(scenario)
    dut._log.info("seed %d, %d steps: counters %s", seed, steps, counters)


@cocotb.test()
async def test_bad_input_changes_nothing(dut):
    """Each refused command names what was wrong and leaves table and version exactly as before,
    both when the driver refuses and when raw register writes reach the gateware."""
    tb = TB(dut)
    await tb.reset()

    def scenario():
        twin = tb.twin()
        rng = random.Random(7)
        for i in range(3):
            twin.call("install", random_sa(rng, spi=0x4000 + i, params=tb.params))
        twin.call("commit")
        twin.call("install", random_sa(rng, spi=0x5000, params=tb.params))   # one staged
        dut_engine = twin.dut
        before = engine_state(dut_engine)
        errors_before = dut_engine.counters()["cmd_errors"]
        empty_bucket = next(b for b in range(tb.params.n_buckets)
                            if not dut_engine.read_bucket(0, b)[0])

        # Raw register writes that bypass the driver's checks: the gateware must refuse them,
        # with the same code as the model.
        def raw(t, op, index=0, table=0, spi=None, flags=None):
            if spi is not None:
                t.write(ADDR.SA_SPI, spi)
                t.write(ADDR.SA_FLAGS, flags)
            t.write(ADDR.CMD, FIELD.CMD.OP.put(op) | FIELD.CMD.INDEX.put(index) |
                    FIELD.CMD.TABLE.put(table))
            while FIELD.STATUS.BUSY.get(t.read(ADDR.STATUS)):
                pass
            return Error(FIELD.STATUS.ERROR.get(t.read(ADDR.STATUS)))

        f = FIELD.SA_FLAGS
        good_alg = f.ALG.put(3)
        cases = {
            "spi 0": (dict(op=Op.INSTALL, spi=0, flags=good_alg), Error.BAD_SPI),
            "spi 255": (dict(op=Op.INSTALL, spi=255, flags=good_alg), Error.BAD_SPI),
            "alg 0": (dict(op=Op.INSTALL, spi=0x9000, flags=f.ALG.put(0)), Error.BAD_ALGORITHM),
            "alg 7": (dict(op=Op.INSTALL, spi=0x9000, flags=f.ALG.put(7)), Error.BAD_ALGORITHM),
            "window": (dict(op=Op.INSTALL, spi=0x9000,
                            flags=good_alg | f.WINDOW.put(tb.params.window_max + 1)),
                       Error.BAD_WINDOW),
            "delete free": (dict(op=Op.DELETE, index=tb.params.n_entries - 1), Error.NO_SUCH_SA),
            "delete beyond": (dict(op=Op.DELETE, index=tb.params.n_entries), Error.BAD_INDEX),
            "read beyond": (dict(op=Op.READ_ENTRY, index=tb.params.n_entries), Error.BAD_INDEX),
            "bucket beyond": (dict(op=Op.READ_BUCKET, index=tb.params.n_buckets),
                              Error.BAD_INDEX),
            "move empty": (dict(op=Op.MOVE_BUCKET, index=empty_bucket), Error.BUCKET_EMPTY),
            "bad op": (dict(op=15), Error.BAD_OP),
        }
        for name, (kwargs, want) in cases.items():
            got_dut = raw(tb.transport, **kwargs)
            got_model = raw(twin.model.transport, **kwargs)
            assert (got_dut, got_model) == (want, want), (name, got_dut, got_model)
        assert engine_state(dut_engine) == before
        assert dut_engine.counters()["cmd_errors"] == errors_before + len(cases)
        twin.check_state()

        # The driver's own refusals, each with a clear message, on DUT and model alike.
        for bad in (dict(spi=0), dict(spi=1), dict(key=bytes(24)), dict(algorithm="aes-cbc")):
            kw = dict(spi=0x6000, direction="inbound", mode="transport",
                      algorithm="aes-gcm-16", key=bytes(20))
            kw.update(bad)
            try:
                SaConfig(**kw)
            except (TypeError, ValueError) as exc:
                assert str(exc)
            else:
                raise AssertionError(f"{bad} was accepted")
        twin.call("delete", tb.params.n_entries - 1)      # absent SA
        twin.call("commit")                                # commits the staged install
        twin.call("commit")                                # nothing staged
        twin.call("abort")                                 # nothing staged
        # Table full: fill every slot, then one more.
        while twin.model.occupancy()[1]:
            twin.call("install", random_sa(rng, params=tb.params))
        full_before = engine_state(dut_engine)
        twin.call("install", random_sa(rng, params=tb.params))
        assert engine_state(dut_engine) == full_before
        twin.check_state()

    await run_driver(scenario)


@cocotb.test()
async def test_keys_never_read_back(dut):
    """Key registers are write-only: whatever is written, they read as zero."""
    tb = TB(dut)
    await tb.reset()

    def scenario():
        t = tb.transport
        for i in range(8):
            t.write(getattr(ADDR, f"SA_KEY{i}"), 0xA5A5A5A5 ^ i)
        t.write(ADDR.SA_SALT, 0xDEADBEEF)
        assert [t.read(getattr(ADDR, f"SA_KEY{i}")) for i in range(8)] == [0] * 8
        assert t.read(ADDR.SA_SALT) == 0

    await run_driver(scenario)


@cocotb.test()
async def test_cuckoo_relocation_in_gateware(dut):
    """SPIs chosen so that inserting them needs MOVE_BUCKET relocations: the gateware moves
    them, every SPI stays findable, and the buckets match the model's."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(11)

    def inbound(spi):
        return SaConfig(spi=spi, direction="inbound", mode="transport", algorithm="aes-gcm-16",
                        key=bytes(16), salt=bytes(4))

    # Find a fill that forces relocations, on the model alone.
    while True:
        spis = rng.sample(range(256, 1 << 32), tb.params.n_entries)
        probe = Engine.for_model(tb.params)
        for spi in spis:
            probe.install(inbound(spi))
        if probe.relocations:
            break

    def scenario():
        twin = tb.twin()
        for spi in spis:
            twin.call("install", inbound(spi))
        twin.call("commit")
        for spi in spis:
            assert twin.call("lookup", spi).found
        twin.check_state()
        assert twin.dut.relocations == twin.model.relocations > 0
        return twin.dut.relocations

    moves = await run_driver(scenario)
    dut._log.info("%d relocations made in the gateware", moves)
