"""The link bridge in Amaranth's simulator: request bytes in, AXI4-Lite accesses out, answers back.

The bus side is a Python AXI4-Lite subordinate that stalls at random and checks the manager's
half of the protocol (a valid stays up, with the same address and data, until it is taken); the
answers are checked against a plain model of what each request must do.
"""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ipchan.hw import axil
from ipchan.hw.contract import ADDR_WIDTH, LinkOp, LinkStatus
from ipchan.hw.link_bridge import LinkBridge
from ipchan.sw import link


class AxiSubordinate:
    """Background testbench: a register space on ``bus`` (the flipped side of a manager port).

    ``errors`` maps addresses to the error response they get (and nothing is stored there).
    ``stall`` is the chance, each cycle, that a ready or a response is held back.
    """

    def __init__(self, bus, *, seed=0, stall=0.5, errors=None):
        self.bus = bus
        self.rng = random.Random(seed)
        self.stall = stall
        self.errors = dict(errors or {})
        self.mem = {}
        self.log = []

    def _go(self):
        return self.rng.random() >= self.stall

    async def run(self, ctx):
        bus = self.bus
        aw = w = ar = None
        b = r = None
        prev = {}
        while True:
            ctx.set(bus.awready, aw is None and self._go())
            ctx.set(bus.wready, w is None and self._go())
            ctx.set(bus.arready, ar is None and r is None and self._go())
            ctx.set(bus.bvalid, b is not None)
            ctx.set(bus.bresp, b or 0)
            ctx.set(bus.rvalid, r is not None)
            ctx.set(bus.rresp, r[0] if r else 0)
            ctx.set(bus.rdata, r[1] if r else 0)
            (_, _, awvalid, awready, awaddr, wvalid, wready, wdata, wstrb, arvalid, arready,
             araddr, bready, rready) = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.awaddr, bus.wvalid, bus.wready, bus.wdata,
                bus.wstrb, bus.arvalid, bus.arready, bus.araddr, bus.bready, bus.rready)

            # The manager's rules: once valid, it stays valid with the same payload until taken.
            for name, valid, ready, payload in (("aw", awvalid, awready, awaddr),
                                                ("w", wvalid, wready, (wdata, wstrb)),
                                                ("ar", arvalid, arready, araddr)):
                if name in prev:
                    assert valid, f"{name}valid dropped before it was taken"
                    assert payload == prev[name], f"{name} payload changed while waiting"
                    del prev[name]
                if valid and not ready:
                    prev[name] = payload

            if awvalid and awready:
                aw = awaddr
            if wvalid and wready:
                assert wstrb == 0b1111
                w = wdata
            if arvalid and arready:
                ar = araddr
            if b is not None and bready:
                b = None
            if r is not None and rready:
                r = None
            if aw is not None and w is not None and b is None and self._go():
                self.log.append(("W", aw, w))
                b = self.errors.get(aw, axil.Resp.OKAY)
                if b == axil.Resp.OKAY:
                    self.mem[aw] = w
                aw = w = None
            if ar is not None and r is None and self._go():
                self.log.append(("R", ar))
                resp = self.errors.get(ar, axil.Resp.OKAY)
                r = (resp, self.mem.get(ar, 0) if resp == axil.Resp.OKAY else 0)
                ar = None


class Host:
    """Testbenches for the byte side: sends request bytes (with random gaps) and collects answer
    bytes (holding ``ready`` low at random)."""

    def __init__(self, bridge, *, seed=0, gap=0.3, hold=0.3):
        self.bridge = bridge
        self.rng = random.Random(seed)
        self.gap, self.hold = gap, hold
        self.answers = bytearray()
        self.cycle = 0

    async def send(self, ctx, data):
        rx = self.bridge.rx
        for byte in data:
            while self.rng.random() < self.gap:
                await ctx.tick()
            ctx.set(rx.payload, byte)
            ctx.set(rx.valid, 1)
            await ctx.tick().until(rx.ready)
            ctx.set(rx.valid, 0)

    async def collect(self, ctx):
        tx = self.bridge.tx
        while True:
            ctx.set(tx.ready, self.rng.random() >= self.hold)
            _, _, valid, ready, payload = await ctx.tick().sample(tx.valid, tx.ready, tx.payload)
            self.cycle += 1
            if valid and ready:
                self.answers.append(payload)

    async def wait_answers(self, ctx, n, *, limit=20000):
        for _ in range(limit):
            if len(self.answers) >= n:
                return
            await ctx.tick()
        raise AssertionError(f"only {len(self.answers)} of {n} answer bytes came")


def simulate(dut, *testbenches, background=(), max_cycles=10_000):
    """Run until every testbench in ``testbenches`` has finished; a bridge that hangs fails the
    test after ``max_cycles`` instead of hanging it."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    cycles = 0

    async def count(ctx):
        nonlocal cycles
        while True:
            await ctx.tick()
            cycles += 1
            if cycles >= max_cycles:
                raise TimeoutError(f"testbenches still running after {max_cycles} cycles")

    sim.add_testbench(count, background=True)
    for tb in background:
        sim.add_testbench(tb, background=True)
    for tb in testbenches:
        sim.add_testbench(tb)
    try:
        sim.run()
    except (AssertionError, TimeoutError) as exc:
        # Re-raised without the simulator's coroutine frames, which pytest (on Python 3.11)
        # cannot always format.
        raise AssertionError(f"at cycle {cycles}: {exc}") from None
    return cycles


OPCODES = {int(op) for op in LinkOp}


def encode(req):
    """Request bytes for ``(op, addr, data)``; a byte that is no opcode goes as it is."""
    if req[0] not in OPCODES:
        return bytes([req[0]])
    return link.encode_request(*req)


def expected_answer(req, mem, errors):
    """What the bridge must answer to ``req`` = (op, addr, data), updating ``mem``."""
    op, addr, data = req
    if op == LinkOp.WRITE:
        if addr >= 1 << ADDR_WIDTH:
            return link.encode_response(op, LinkStatus.DECERR)
        status = errors.get(addr, LinkStatus.OKAY)
        if status == LinkStatus.OKAY:
            mem[addr] = data
        return link.encode_response(op, status)
    if op == LinkOp.READ:
        if addr >= 1 << ADDR_WIDTH:
            return link.encode_response(op, LinkStatus.DECERR, 0)
        status = errors.get(addr, LinkStatus.OKAY)
        return link.encode_response(op, status, mem.get(addr, 0) if status == LinkStatus.OKAY else 0)
    if op == LinkOp.RESET:
        return link.encode_response(op, LinkStatus.OKAY)
    raise AssertionError(op)


# -- Construction --------------------------------------------------------------------------------

def test_bridge_argument_checks():
    with pytest.raises(ValueError, match=r"^Address width must be at most 16 bits \(the link's "
                                         r"address field\), not 17$"):
        LinkBridge(addr_width=17)
    with pytest.raises(TypeError, match=r"^Address width must be a positive integer, not '12'$"):
        LinkBridge(addr_width="12")
    with pytest.raises(ValueError, match=r"^Frame timeout must be a positive number of cycles or "
                                         r"None, not 0$"):
        LinkBridge(frame_timeout=0)
    bridge = LinkBridge()
    assert bridge.addr_width == ADDR_WIDTH and bridge.frame_timeout is None
    assert bridge.signature.members["bus"].signature == axil.Signature(addr_width=ADDR_WIDTH)


# -- Protocol ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_requests_against_model(seed):
    rng = random.Random(seed)
    bridge = LinkBridge()
    errors = {0x7F0: LinkStatus.SLVERR, 0x7F4: LinkStatus.DECERR}
    sub = AxiSubordinate(bridge.bus, seed=seed, errors=errors)
    host = Host(bridge, seed=seed)
    addrs = [0x000, 0x004, 0x010, 0xFFC, 0x7F0, 0x7F4, 0x1000, 0xFFFC, 0x123]
    requests = []
    for _ in range(80):
        kind = rng.random()
        if kind < 0.45:
            requests.append((LinkOp.WRITE, rng.choice(addrs), rng.getrandbits(32)))
        elif kind < 0.9:
            requests.append((LinkOp.READ, rng.choice(addrs), None))
        elif kind < 0.95:
            requests.append((LinkOp.RESET, None, None))
        else:
            requests.append((rng.choice([0x00, 0x41, 0xFF, 0x77]), None, None))  # not an opcode
    mem, expected, bus_log = {}, bytearray(), []
    for req in requests:
        op = req[0]
        if op not in OPCODES:
            expected += bytes([LinkStatus.UNKNOWN])
            continue
        expected += expected_answer(req, mem, errors)
        if op in (LinkOp.WRITE, LinkOp.READ) and req[1] < 1 << ADDR_WIDTH:
            bus_log.append(("W", req[1], req[2]) if op == LinkOp.WRITE else ("R", req[1]))
    wire = b"".join(encode(req) for req in requests)

    async def tb(ctx):
        await host.send(ctx, wire)
        await host.wait_answers(ctx, len(expected))
        for _ in range(50):
            await ctx.tick()

    simulate(bridge, tb, background=[sub.run, host.collect])
    assert bytes(host.answers) == bytes(expected)
    assert sub.log == bus_log  # beyond-the-bus addresses never reach it


def test_address_beyond_bus_never_reaches_it():
    bridge = LinkBridge()
    sub = AxiSubordinate(bridge.bus, stall=0)
    host = Host(bridge, gap=0, hold=0)

    async def tb(ctx):
        await host.send(ctx, link.encode_write(1 << ADDR_WIDTH, 0xDEADBEEF) +
                        link.encode_read((1 << ADDR_WIDTH) | 4) + link.encode_read(0))
        await host.wait_answers(ctx, 1 + 5 + 5)

    simulate(bridge, tb, background=[sub.run, host.collect])
    assert link.decode_response(LinkOp.WRITE, host.answers[:1]) == (LinkStatus.DECERR, None)
    assert link.decode_response(LinkOp.READ, host.answers[1:6]) == (LinkStatus.DECERR, 0)
    assert link.decode_response(LinkOp.READ, host.answers[6:]) == (LinkStatus.OKAY, 0)
    assert sub.log == [("R", 0)]


def test_unknown_opcode_then_back_in_step():
    bridge = LinkBridge()
    sub = AxiSubordinate(bridge.bus, stall=0.2)
    host = Host(bridge)

    async def tb(ctx):
        await host.send(ctx, b"\x00\xAA" + link.encode_write(0x40, 0x01020304) +
                        b"w" + link.encode_read(0x40))
        await host.wait_answers(ctx, 1 + 1 + 1 + 1 + 5)

    simulate(bridge, tb, background=[sub.run, host.collect])
    assert bytes(host.answers) == (bytes([LinkStatus.UNKNOWN] * 2) + bytes([LinkStatus.OKAY]) +
                                   bytes([LinkStatus.UNKNOWN]) +
                                   link.encode_response(LinkOp.READ, LinkStatus.OKAY, 0x01020304))


def test_reset_holds_engine_reset_for_the_contract_cycles():
    bridge = LinkBridge()
    host = Host(bridge, gap=0, hold=0)
    high = []

    async def watch(ctx):
        async for _, _, rst in ctx.tick().sample(bridge.engine_rst):
            high.append(rst)

    async def tb(ctx):
        await host.send(ctx, link.encode_reset())
        await host.wait_answers(ctx, 1)
        for _ in range(5):
            await ctx.tick()
        await host.send(ctx, link.encode_reset())
        await host.wait_answers(ctx, 2)

    simulate(bridge, tb, background=[watch, host.collect])
    assert bytes(host.answers) == bytes([LinkStatus.OKAY] * 2)
    runs = "".join(map(str, high)).split("0")
    assert [len(r) for r in runs if r] == [link.RESET_CYCLES] * 2


def test_cycles_counts_clock_cycles():
    bridge = LinkBridge()
    host = Host(bridge, gap=0, hold=0)
    cycle = 0
    marks = []

    async def clock(ctx):
        nonlocal cycle
        while True:
            await ctx.tick()
            cycle += 1

    async def tb(ctx):
        for wait in (0, 100, 1000):
            for _ in range(wait):
                await ctx.tick()
            before = cycle
            await host.send(ctx, link.encode_cycles())
            marks.append((before, cycle))
        await host.wait_answers(ctx, 3 * link.RESPONSE_LENGTH[LinkOp.CYCLES])

    simulate(bridge, tb, background=[clock, host.collect])
    n = link.RESPONSE_LENGTH[LinkOp.CYCLES]
    values = [link.decode_response(LinkOp.CYCLES, host.answers[i:i + n])
              for i in range(0, 3 * n, n)]
    for (status, value), (before, after) in zip(values, marks):
        assert status == LinkStatus.OKAY
        assert before <= value <= after


def test_frame_timeout_drops_a_partial_request():
    timeout = 50
    bridge = LinkBridge(frame_timeout=timeout)
    sub = AxiSubordinate(bridge.bus, stall=0)
    host = Host(bridge, gap=0, hold=0)

    async def tb(ctx):
        # Half a WRITE, then silence for longer than the timeout: it must be forgotten, so the
        # READ that follows is read as a READ and nothing is written.
        await host.send(ctx, link.encode_write(0x20, 0x11223344)[:4])
        for _ in range(timeout + 5):
            await ctx.tick()
        await host.send(ctx, link.encode_read(0x20))
        await host.wait_answers(ctx, 5)
        # Gaps shorter than the timeout are fine.
        for byte in link.encode_write(0x24, 0x55667788):
            await host.send(ctx, bytes([byte]))
            for _ in range(timeout - 5):
                await ctx.tick()
        await host.wait_answers(ctx, 6)

    simulate(bridge, tb, background=[sub.run, host.collect])
    assert bytes(host.answers) == (link.encode_response(LinkOp.READ, LinkStatus.OKAY, 0) +
                                   bytes([LinkStatus.OKAY]))
    assert sub.log == [("R", 0x20), ("W", 0x24, 0x55667788)]


def test_through_register_bridge():
    # Gateware on both sides of the bus: the bridge as manager of the AXI4-Lite front end that
    # the engine's register file sits behind, with a four-register file and an unmapped rest.
    m = Module()
    m.submodules.bridge = bridge = LinkBridge()
    m.submodules.regbridge = rb = axil.RegisterBridge(addr_width=ADDR_WIDTH)
    wiring.connect(m, bridge.bus, rb.bus)
    regs = [Signal(32, name=f"reg{i}") for i in range(4)]
    mapped = rb.addr[4:] == 0
    with m.If(rb.w_stb & mapped):
        with m.Switch(rb.addr[2:4]):
            for i, reg in enumerate(regs):
                with m.Case(i):
                    m.d.sync += reg.eq(rb.w_data)
    m.d.comb += rb.w_err.eq(~mapped)
    with m.If(rb.r_stb):
        m.d.sync += [rb.r_data.eq(0), rb.r_err.eq(~mapped)]
        with m.Switch(rb.addr[2:4]):
            for i, reg in enumerate(regs):
                with m.Case(i):
                    m.d.sync += rb.r_data.eq(reg)
    host = Host(bridge)

    async def tb(ctx):
        await host.send(ctx, link.encode_write(0x8, 0xCAFEF00D) + link.encode_read(0x8) +
                        link.encode_read(0x4) + link.encode_write(0x100, 1) +
                        link.encode_read(0x100))
        await host.wait_answers(ctx, 1 + 5 + 5 + 1 + 5)

    simulate(m, tb, background=[host.collect])
    assert bytes(host.answers) == (
        bytes([LinkStatus.OKAY]) +
        link.encode_response(LinkOp.READ, LinkStatus.OKAY, 0xCAFEF00D) +
        link.encode_response(LinkOp.READ, LinkStatus.OKAY, 0) +
        bytes([LinkStatus.DECERR]) +
        link.encode_response(LinkOp.READ, LinkStatus.DECERR, 0))
