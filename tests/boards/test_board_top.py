"""The board top's own logic (indicators, argument checks, pins) and its agreement with the host
transport about the line, without synthesis."""

import gc
import inspect

import pytest
from amaranth.sim import Simulator

from ipchan.boards.build import BOARDS
from ipchan.boards.top import ACTIVITY_HOLD, BoardTop, SerialEngine, frame_timeout_cycles
from ipchan.hw.contract import SMALL_PARAMS, EngineParams, LinkOp, LinkStatus
from ipchan.hw.uart import baud_divisor
from ipchan.sw.link import RESET_CYCLES
from ipchan.sw.serial_transport import DEFAULT_BAUDRATE, FRAME_TIMEOUT, SerialTransport


SMALL = EngineParams(n_entries=4)

# Amaranth warns about an elaboratable that is collected without having been elaborated, as the
# ones made only to read their properties, or whose constructor refused its arguments, are: those
# tests collect them themselves, under this mark.
_unelaborated = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# -- The line: what the boards are built for is what the transport opens --------------------------

@_unelaborated
@pytest.mark.parametrize("name, clk_freq, divisor", [("icebreaker", 12e6, 12), ("ulx3s", 25e6, 25)])
def test_board_line_matches_transport(name, clk_freq, divisor):
    board = BOARDS[name]
    assert board.clk_freq == clk_freq
    core = SerialEngine(board.params, clk_freq=board.clk_freq)
    # SerialTransport's default rate is the boards' default rate ...
    default = inspect.signature(SerialTransport).parameters["baudrate"].default
    assert default == DEFAULT_BAUDRATE == core.baudrate
    # ... and the gateware counts that rate's bit time and the transport's frame timeout.
    assert core.divisor == divisor == baud_divisor(clk_freq, DEFAULT_BAUDRATE)
    assert core.frame_timeout == round(FRAME_TIMEOUT * clk_freq)
    del core
    gc.collect()


def test_board_engines():
    assert BOARDS["icebreaker"].params == SMALL_PARAMS
    assert BOARDS["icebreaker"].table == "serial"
    assert BOARDS["ulx3s"].params == EngineParams()
    assert BOARDS["ulx3s"].params.n_entries == 256
    assert BOARDS["ulx3s"].table == "parallel"


def test_frame_timeout_cycles():
    assert frame_timeout_cycles(12_000_000) == 240_000
    assert frame_timeout_cycles(25e6) == 500_000
    assert frame_timeout_cycles(10) == 1  # never zero: rounded up
    with pytest.raises(ValueError, match=r"^Clock frequency must be a positive number of hertz, "
                                         r"not 0$"):
        frame_timeout_cycles(0)


# -- Argument checks -------------------------------------------------------------------------------

@_unelaborated
def test_serial_engine_argument_checks():
    with pytest.raises(TypeError, match=r"^Parameters must be an EngineParams, not 16$"):
        SerialEngine(16, clk_freq=12e6)
    with pytest.raises(ValueError, match=r"^Clock frequency must be a positive number of hertz, "
                                         r"not -1$"):
        SerialEngine(SMALL, clk_freq=-1)
    with pytest.raises(ValueError, match=r"^Clock frequency must be a positive number of hertz, "
                                         r"not True$"):
        SerialEngine(SMALL, clk_freq=True)
    with pytest.raises(ValueError, match=r"^Baud rate 3000000 is too fast for a 8000000.0 Hz "
                                         r"clock: it needs at least 4 cycles per bit, not 2.67$"):
        SerialEngine(SMALL, clk_freq=8e6, baudrate=3_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate 115200 cannot be made from a 1000000 Hz "
                                         r"clock"):
        SerialEngine(SMALL, clk_freq=1_000_000, baudrate=115_200)
    with pytest.raises(ValueError, match=r"^Table must be 'parallel' or 'serial', not 'flat'$"):
        SerialEngine(SMALL, clk_freq=12e6, table="flat")
    gc.collect()


@_unelaborated
def test_board_top_argument_checks():
    with pytest.raises(TypeError, match=r"^Parameters must be an EngineParams, not 'small'$"):
        BoardTop("small")
    with pytest.raises(TypeError, match=r"^BoardTop needs a platform \(its UART and LEDs are "
                                        r"pins\); simulate SerialEngine instead$"):
        BoardTop(SMALL).elaborate(None)
    with pytest.raises(ValueError, match=r"^LEDs must be at most 3 \(name, number\) pairs, one "
                                         r"for each of heartbeat, link_error, activity, not "):
        BoardTop(SMALL, leds=[("led", i) for i in range(4)])
    with pytest.raises(ValueError, match=r"^Table must be 'parallel' or 'serial', not None$"):
        BoardTop(SMALL, table=None)
    gc.collect()


def test_board_top_on_icebreaker_pins(tmp_path):
    """Elaborated on the real platform (no synthesis): UART and LEDs on the board's pins, and the
    core built for the board's clock."""
    board = BOARDS["icebreaker"]
    top = board.top(SMALL)
    plan = board.platform().build(top, name="top", do_build=False)
    assert top.core.clk_freq == 12e6 and top.core.divisor == 12
    # The bridge in the design counts what the transport's constants give on this clock.
    assert top.core.bridge.divisor == baud_divisor(12e6, DEFAULT_BAUDRATE) == 12
    assert top.core.bridge._bridge.frame_timeout == round(FRAME_TIMEOUT * 12e6)
    pcf = plan.files["top.pcf"]
    pcf = pcf.decode() if isinstance(pcf, bytes) else pcf
    pins = dict(line.split()[1:3] for line in pcf.splitlines() if line.startswith("set_io"))
    # iCEBreaker: FTDI UART rx on pin 6, tx on 9; green LED (pin 37) heartbeat, red (11) error.
    assert {pins[p] for p in pins if "uart" in p} == {"6", "9"}
    assert {pins[p] for p in pins if "led_g" in p} == {"37"}
    assert {pins[p] for p in pins if "led_r" in p} == {"11"}
    assert len([p for p in pins if "led" in p]) == 2


# -- Indicators, in simulation ---------------------------------------------------------------------

# A slow made-up clock, so that a heartbeat and the activity hold take few cycles: 400 Hz, 100 baud.
CLK, BAUD = 400, 100


def send_byte(ctx, dut, byte, divisor):
    async def run():
        for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
    return run()


async def recv_byte(ctx, dut, divisor, limit=10_000):
    for _ in range(limit):
        if not ctx.get(dut.tx):
            break
        await ctx.tick()
    else:
        raise AssertionError("no answer")
    await ctx.tick().repeat(divisor // 2)
    byte = 0
    for i in range(8):
        await ctx.tick().repeat(divisor)
        byte |= ctx.get(dut.tx) << i
    await ctx.tick().repeat(divisor)
    assert ctx.get(dut.tx) == 1
    return byte


def test_heartbeat_toggles_every_half_second():
    dut = SerialEngine(SMALL, clk_freq=CLK, baudrate=BAUD)
    levels = []

    async def bench(ctx):
        for _ in range(3 * CLK):
            levels.append(ctx.get(dut.heartbeat))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1 / CLK)
    sim.add_testbench(bench)
    sim.run()
    edges = [i for i in range(1, len(levels)) if levels[i] != levels[i - 1]]
    assert len(edges) == 5
    assert {b - a for a, b in zip(edges, edges[1:])} == {CLK // 2}


def test_link_error_is_sticky_until_link_reset_and_activity_shows_the_line():
    dut = SerialEngine(SMALL, clk_freq=CLK, baudrate=BAUD)
    divisor = dut.divisor
    hold = round(CLK * ACTIVITY_HOLD)
    seen = {}

    async def bench(ctx):
        await ctx.tick().repeat(hold + 10)
        assert not ctx.get(dut.link_error) and not ctx.get(dut.activity)
        # A break: the line low for two frames. The stop bit is low, so a frame error.
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(3)  # through the synchroniser
        assert ctx.get(dut.activity)
        await ctx.tick().repeat(20 * divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * hold)
        assert ctx.get(dut.link_error), "the break was not counted"
        assert not ctx.get(dut.activity), "activity stayed on after the line went quiet"
        # Sticky: still on after a good request.
        await send_byte(ctx, dut, LinkOp.CYCLES, divisor)
        answer = [await recv_byte(ctx, dut, divisor) for _ in range(9)]
        assert answer[0] == LinkStatus.OKAY
        assert ctx.get(dut.link_error)
        # The link's RESET clears it (and resets the engine).
        await send_byte(ctx, dut, LinkOp.RESET, divisor)
        seen["reset answer"] = await recv_byte(ctx, dut, divisor)
        assert not ctx.get(dut.link_error)

    sim = Simulator(dut)
    sim.add_clock(1 / CLK)
    sim.add_testbench(bench)
    sim.run()
    assert seen["reset answer"] == LinkStatus.OKAY
    assert RESET_CYCLES < 10 * divisor  # the reset was over before its answer was sent
