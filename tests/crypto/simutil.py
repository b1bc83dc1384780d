"""Small helpers for driving ``amaranth.lib.stream`` interfaces from Amaranth's simulator."""

from amaranth.sim import Simulator


async def put(ctx, stream, payloads, rng=None, gap=0.0):
    """Send every payload on ``stream``; with ``rng``, drop ``valid`` for random clocks before
    each beat (a fraction ``gap`` of the time)."""
    for payload in payloads:
        while rng is not None and rng.random() < gap:
            await ctx.tick()
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def get(ctx, stream, count, rng=None, gap=0.0):
    """Receive ``count`` payloads from ``stream``; with ``rng``, drop ``ready`` a fraction ``gap``
    of the clocks."""
    received = []
    while len(received) < count:
        ready = not (rng is not None and rng.random() < gap)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            received.append(payload)
    ctx.set(stream.ready, 0)
    return received


def run(dut, *testbenches, deadline_cycles=None, vcd=None, extra_processes=()):
    """Simulate ``dut`` with a 1 ns clock until every testbench returns. ``deadline_cycles``
    bounds the run (a hung handshake fails instead of spinning forever)."""
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for process in extra_processes:
        sim.add_process(process)
    if deadline_cycles is not None:
        async def watchdog(ctx):
            for _ in range(deadline_cycles):
                await ctx.tick()
            raise AssertionError(f"Simulation did not finish within {deadline_cycles} cycles")
        sim.add_process(watchdog)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
