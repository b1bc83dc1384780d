"""The UART against a bit-level model of an 8N1 line, in Amaranth's simulator."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from ipchan.hw.uart import MIN_DIVISOR, UARTReceiver, UARTTransmitter, baud_divisor


def line_levels(data, period, *, stop_bits=1, idle=3.0, stop_level=1):
    """The line level in each clock cycle for ``data`` sent as 8N1 frames of ``period`` cycles a
    bit (a float, so a sender that is off the receiver's rate can be modelled)."""
    bits = []
    for byte in data:
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [stop_level] * stop_bits
    t = idle * period  # idle high before the first frame
    levels = [1] * round(t)
    for b in bits:
        t += period
        levels += [b] * (round(t) - len(levels))
    return levels + [1] * round(idle * period)


def decode_line(levels, divisor):
    """Decode cycle-by-cycle ``levels`` of a transmitter with an exact ``divisor``, checking
    every bit's length: returns the bytes."""
    out, i = [], 0
    while i < len(levels):
        if levels[i]:
            i += 1
            continue
        frame = levels[i:i + 10 * divisor]
        assert len(frame) == 10 * divisor, "frame cut short"
        bits = [frame[k * divisor:(k + 1) * divisor] for k in range(10)]
        for k, chunk in enumerate(bits):
            assert len(set(chunk)) == 1, f"bit {k} of frame at cycle {i} is not steady: {chunk}"
        assert bits[0][0] == 0 and bits[9][0] == 1
        out.append(sum(bits[1 + k][0] << k for k in range(8)))
        i += 10 * divisor
    return out


def run(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


# -- Divisor -------------------------------------------------------------------------------------

def test_baud_divisor_values():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(12_000_000, 1_000_000) == 12
    assert baud_divisor(25_000_000, 115200) == 217
    assert baud_divisor(25e6, 1_000_000) == 25


def test_baud_divisor_refuses_bad_rates():
    with pytest.raises(ValueError, match=r"^Baud rate 4000000 is too fast for a 12000000 Hz clock: "
                                         r"it needs at least 4 cycles per bit, not 3.00$"):
        baud_divisor(12_000_000, 4_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate 2500000 cannot be made from a 12000000 Hz "
                                         r"clock: the nearest divisor 5 gives 2400000 baud, 4.0% off"):
        baud_divisor(12_000_000, 2_500_000)
    with pytest.raises(ValueError, match=r"^Baud rate must be a positive number, not 0$"):
        baud_divisor(12e6, 0)
    with pytest.raises(ValueError, match=r"^Clock frequency must be a positive number, not '12'$"):
        baud_divisor("12", 9600)


@pytest.mark.parametrize("cls", [UARTTransmitter, UARTReceiver])
def test_divisor_checks(cls):
    with pytest.raises(TypeError, match=r"^Divisor must be an integer, not 4.0$"):
        cls(4.0)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer, not True$"):
        cls(True)
    with pytest.raises(ValueError, match=rf"^Divisor must be at least {MIN_DIVISOR} clock cycles "
                                         r"per bit, not 3$"):
        cls(3)
    assert cls(MIN_DIVISOR).divisor == MIN_DIVISOR


# -- Transmitter ---------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_transmitter_frames(divisor):
    dut = UARTTransmitter(divisor)
    data = [0x00, 0xFF, 0x55, 0xA5, 0x01, 0x80] + random.Random(divisor).choices(range(256), k=10)
    levels, accepted = [], []

    async def feed(ctx):
        for byte in data:
            ctx.set(dut.data.payload, byte)
            ctx.set(dut.data.valid, 1)
            await ctx.tick().until(dut.data.ready)
            accepted.append(byte)
        ctx.set(dut.data.valid, 0)

    async def watch(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            levels.append(tx)
            if len(levels) > (len(data) * 10 + 5) * divisor:
                return

    run(dut, feed, watch)
    assert accepted == data
    assert levels[0] == 1
    assert decode_line(levels, divisor) == data
    # Back to back: one stop bit and straight into the next start bit.
    first = levels.index(0)
    assert all(levels[first + 10 * divisor * k] == 0 for k in range(len(data)))


def test_transmitter_idle_line_is_high():
    dut = UARTTransmitter(5)

    async def tb(ctx):
        for _ in range(50):
            assert ctx.get(dut.tx) == 1
            assert ctx.get(dut.data.ready) == 1
            await ctx.tick()

    run(dut, tb)


# -- Receiver ------------------------------------------------------------------------------------

def receive(divisor, levels, *, take=True):
    """Drive ``levels`` into a receiver; return (bytes received, overrun cycles, frame-error
    cycles)."""
    dut = UARTReceiver(divisor)
    got, overruns, frame_errors = [], [], []
    done = False

    async def drive(ctx):
        nonlocal done
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick()
        done = True

    async def collect(ctx):
        cycle = 0
        ctx.set(dut.data.ready, int(take))
        while not done:
            if ctx.get(dut.data.valid) and take:
                got.append(ctx.get(dut.data.payload))
            if ctx.get(dut.overrun):
                overruns.append(cycle)
            if ctx.get(dut.frame_error):
                frame_errors.append(cycle)
            await ctx.tick()
            cycle += 1
        if not take and ctx.get(dut.data.valid):
            got.append(ctx.get(dut.data.payload))

    run(dut, drive, collect)
    return got, overruns, frame_errors


@pytest.mark.parametrize("divisor,skew", [
    (4, 1.0), (12, 1.0), (12, 0.97), (12, 1.03), (104, 0.98), (104, 1.02), (7, 1.0),
])
def test_receiver_samples_mid_bit(divisor, skew):
    # A sender up to 3% off the receiver's rate is still received: the sampling point is in the
    # middle of each bit.
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + random.Random(divisor).choices(range(256), k=6)
    got, overruns, frame_errors = receive(divisor, line_levels(data, divisor * skew))
    assert got == data
    assert overruns == [] and frame_errors == []


def test_receiver_ignores_glitches():
    divisor = 16
    # A low pulse shorter than half a bit is not a start bit.
    levels = [1] * 40 + [0] * (divisor // 2 - 3) + [1] * 40 + line_levels([0x3C], divisor)
    got, _, frame_errors = receive(divisor, levels)
    assert got == [0x3C]
    assert frame_errors == []


def test_receiver_frame_error_and_break():
    divisor = 8
    bad = line_levels([0x12], divisor, stop_level=0)
    brk = [0] * (divisor * 40)  # a break: many frame times of low line, counted once
    good = line_levels([0x34], divisor)
    got, overruns, frame_errors = receive(divisor, bad + good + brk + good)
    assert got == [0x34, 0x34]
    assert len(frame_errors) == 2
    assert overruns == []


def test_receiver_overrun_keeps_first_byte():
    divisor = 6
    got, overruns, frame_errors = receive(divisor, line_levels([0x11, 0x22, 0x33], divisor),
                                          take=False)
    # Nobody takes the bytes: the first one stays, the two that follow are dropped and counted.
    assert got == [0x11]
    assert len(overruns) == 2
    assert frame_errors == []


def test_loopback_random_bytes():
    divisor = 5
    data = random.Random(1).choices(range(256), k=64)
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def feed(ctx):
        for byte in data:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)

    async def collect(ctx):
        ctx.set(rx.data.ready, 1)
        while len(got) < len(data):
            payload, = await ctx.tick().sample(rx.data.payload).until(rx.data.valid)
            got.append(payload)

    run(m, feed, collect)
    assert got == data
