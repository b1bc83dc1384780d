"""GHASH cores against the bit-by-bit reference of SP 800-38D."""

import random

import pytest

from ipchan.hw.crypto.ghash import GHASHLanes, GHASHPipelined, GHASHSerial, make_ghash

from .reference import ghash, le
from .simutil import get, put, run


PROFILES = ["compact", "fast"]
#: The profiles' cores and the lane GHASH, which no profile uses yet.
CORES = {"compact": lambda: make_ghash("compact"), "fast": lambda: make_ghash("fast"),
         "lanes": GHASHLanes,
         **{f"ring-{levels}-{stages}": (lambda levels=levels, stages=stages:
                                          GHASHPipelined(levels=levels, stages=stages))
            for levels, stages in ((1, 3), (2, 4), (2, 5), (3, 4))}}


def run_messages(profile, messages, seed=None, gap=0.0):
    """``messages``: list of (h, blocks). Returns the Y of each, as bytes."""
    dut = CORES[profile]()
    rng = random.Random(seed) if seed is not None else None
    results = []

    async def producer(ctx):
        for h, blocks in messages:
            await put(ctx, dut.h, [le(h)], rng, gap)
            n = len(blocks)
            await put(ctx, dut.i, [{"block": le(b), "remaining": min(n - i, 15)}
                                   for i, b in enumerate(blocks)], rng, gap)

    async def consumer(ctx):
        out = await get(ctx, dut.o, len(messages),
                        random.Random(seed + 1) if rng else None, gap)
        results.extend(v.to_bytes(16, "little") for v in out)

    run(dut, producer, consumer, deadline_cycles=40 * sum(len(b) + 2 for _, b in messages) + 200)
    return results


async def offer(ctx, stream, payload):
    """Offer one beat on ``stream`` until it is taken; returns the clocks it took (1 if taken
    at once)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    clocks = 0
    while True:
        _, _, ready = await ctx.tick().sample(stream.ready)
        clocks += 1
        if ready:
            return clocks


def test_reference_against_sp800_38d():
    # GCM test case 2 of the original GCM specification (McGrew and Viega): H and C give this tag.
    h = bytes.fromhex("66e94bd4ef8a2c3b884cfa59ca342b2e")
    c = bytes.fromhex("0388dace60b6a392f328c2b971b2fe78")
    lengths = (0).to_bytes(8, "big") + (128).to_bytes(8, "big")
    assert ghash(h, [c, lengths]) == bytes.fromhex("f38cbb1ad69223dcc3457ae5b6b0f885")


@pytest.mark.parametrize("profile", CORES)
def test_messages_of_every_small_length(profile):
    rng = random.Random(128)
    messages = [(rng.randbytes(16), [rng.randbytes(16) for _ in range(n)]) for n in range(1, 9)]
    messages.append((messages[0][0], [bytes(16)] * 3))       # zero blocks
    messages.append((bytes(16), [rng.randbytes(16)] * 2))    # H = 0
    assert run_messages(profile, messages) == [ghash(h, b) for h, b in messages]


@pytest.mark.parametrize("profile", CORES)
def test_random_stalls(profile):
    rng = random.Random(38)
    messages = [(rng.randbytes(16), [rng.randbytes(16) for _ in range(rng.randint(1, 20))])
                for _ in range(12)]
    assert run_messages(profile, messages, seed=3, gap=0.4) == [ghash(h, b) for h, b in messages]


@pytest.mark.parametrize("profile", CORES)
def test_next_message_offered_with_the_result(profile):
    """Under one H, each message's first block is offered from the clock its predecessor's last
    block was taken and the result is taken the clock it appears: a core must start the next Y
    from zero, not from the Y that just left, and must not take a block before it can."""
    dut = CORES[profile]()
    rng = random.Random(4106)
    h = rng.randbytes(16)
    messages = [[rng.randbytes(16) for _ in range(n)] for n in (1, 2, 1, 3, 1)]
    results = []

    async def producer(ctx):
        await put(ctx, dut.h, [le(h)])
        for blocks in messages:
            await put(ctx, dut.i, [{"block": le(b), "remaining": min(len(blocks) - i, 15)}
                                   for i, b in enumerate(blocks)])

    async def consumer(ctx):
        results.extend(v.to_bytes(16, "little") for v in await get(ctx, dut.o, len(messages)))

    run(dut, producer, consumer, deadline_cycles=2000)
    assert results == [ghash(h, blocks) for blocks in messages]


@pytest.mark.parametrize("digit", [8, 10])
def test_serial_final_addend(digit):
    """A ``remaining == 0`` block after a message's blocks is added to Y without a
    multiplication, and the sum is the result (what the compact GCM core sends: E(K, J0), and,
    decrypting, the received tag too); a message ended by ``remaining == 1`` still gives Y. With
    random stalls, back to back, under two H."""
    rng = random.Random(4543)
    cases = []
    for n in (1, 3, 2, 5):
        h = rng.randbytes(16)
        blocks = [rng.randbytes(16) for _ in range(n)]
        addend = rng.randbytes(16) if n != 2 else None
        cases.append((h, blocks, addend))
    dut = GHASHSerial(digit)
    results = []
    stall = random.Random(1)

    async def producer(ctx):
        for h, blocks, addend in cases:
            await put(ctx, dut.h, [le(h)], stall, 0.3)
            last = 2 if addend is not None else 1
            beats = [{"block": le(b), "remaining": max(len(blocks) - i, last)}
                     for i, b in enumerate(blocks)]
            if addend is not None:
                beats.append({"block": le(addend), "remaining": 0})
            await put(ctx, dut.i, beats, stall, 0.3)

    async def consumer(ctx):
        out = await get(ctx, dut.o, len(cases), random.Random(2), 0.3)
        results.extend(v.to_bytes(16, "little") for v in out)

    run(dut, producer, consumer, deadline_cycles=3000)
    expected = []
    for h, blocks, addend in cases:
        y = ghash(h, blocks)
        expected.append(y if addend is None else bytes(a ^ b for a, b in zip(y, addend)))
    assert results == expected


@pytest.mark.parametrize("digit", [0, 33, 8.0, True])
def test_digit_checked(digit):
    with pytest.raises(ValueError, match=rf"Digit width must be an integer from 1 to 32, not {digit!r}"):
        GHASHSerial(digit=digit)


def test_cycles_per_block():
    assert [GHASHSerial(d).cycles_per_block for d in (8, 9, 10, 16)] == [17, 16, 14, 9]


@pytest.mark.parametrize("digit", [8, 10])
def test_clocks_per_block_at_full_rate(digit):
    """Blocks offered back to back are taken every ``cycles_per_block`` clocks."""
    dut = GHASHSerial(digit)
    taken = []

    async def producer(ctx):
        await put(ctx, dut.h, [le(bytes(range(16)))])
        for k in range(4):
            taken.append(await offer(ctx, dut.i, {"block": k + 1, "remaining": 4 - k}))
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        await get(ctx, dut.o, 1)

    run(dut, producer, consumer, deadline_cycles=500)
    assert taken[1:] == [dut.cycles_per_block] * 3


@pytest.mark.parametrize("digit", [4, 7, 8, 16, 32])
def test_other_digits(digit):
    rng = random.Random(digit)
    h, blocks = rng.randbytes(16), [rng.randbytes(16) for _ in range(3)]
    dut = GHASHSerial(digit=digit)
    out = []

    async def producer(ctx):
        await put(ctx, dut.h, [le(h)])
        await put(ctx, dut.i, [{"block": le(b), "remaining": 3 - i} for i, b in enumerate(blocks)])

    async def consumer(ctx):
        out.extend(await get(ctx, dut.o, 1))

    run(dut, producer, consumer, deadline_cycles=1000)
    assert out[0].to_bytes(16, "little") == ghash(h, blocks)


def _timing(dut, blocks=23, seed=5):
    """Send ``h`` and one message of ``blocks`` blocks back to back; returns the clock (after the
    ``h`` handshake) of every block taken, the clocks from the last block to the result, and
    whether the result is right."""
    rng = random.Random(seed)
    h, message = rng.randbytes(16), [rng.randbytes(16) for _ in range(blocks)]
    clocks = {"taken": [], "result": None}
    out = []

    async def producer(ctx):
        ctx.set(dut.h.payload, le(h))
        ctx.set(dut.h.valid, 1)
        await ctx.tick().until(dut.h.ready)
        ctx.set(dut.h.valid, 0)
        clock = 0
        for k, block in enumerate(message):
            clock += await offer(ctx, dut.i,
                                 {"block": le(block), "remaining": min(len(message) - k, 15)})
            clocks["taken"].append(clock)
        ctx.set(dut.i.valid, 0)
        while True:
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            clock += 1
            if valid:
                clocks["result"] = clock - clocks["taken"][-1]
                out.append(payload)
                break

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)

    run(dut, producer, consumer, deadline_cycles=500)
    return clocks["taken"], clocks["result"], out[0].to_bytes(16, "little") == ghash(h, message)


def test_lanes_take_a_block_every_clock():
    """Five lanes of four multiplier steps: back-to-back blocks never wait, and the result leaves
    a fixed time after the last block; a new H costs its three rounds of products."""
    taken, result, right = _timing(GHASHLanes())
    first = taken[0]
    assert taken == list(range(first, first + len(taken)))
    # After the h handshake, three power rounds, each a start, the steps and a clock to move on.
    assert first == 1 + 3 * (1 + GHASHLanes.STEPS + 1)
    # The input register, a lane's five clocks, the output register.
    assert result == 1 + GHASHLanes.LANES + 1
    assert right


@pytest.mark.parametrize("stages", [3, 4, 5])
def test_pipelined_ring_timing(stages):
    """The fast profile's ring, measured the same way (docs/crypto.md compares the cores): one
    block per clock, the first once ``H^2 .. H^stages`` are stored (``h`` is stored a clock after
    its handshake, the last power enters the ring at the last clock of the power schedule and is
    stored ``stages + 2`` clocks later), the result ``stages + 2`` clocks after the last block
    (the input register, the ring, the output register)."""
    dut = GHASHPipelined(stages=stages)
    taken, result, right = _timing(dut)
    first = 1 + dut.POWER_SCHEDULE[-1][0] + stages + 3
    assert taken == list(range(first, first + len(taken)))
    assert result == stages + 2
    assert right


def test_power_schedule():
    """One product a clock, each once its operands are stored; H^2 .. H^stages each once."""
    assert GHASHPipelined(stages=4).POWER_SCHEDULE == [(0, 2, 1, 1), (6, 3, 1, 2), (7, 4, 2, 2)]
    for stages in (3, 4, 5):
        schedule = GHASHPipelined(stages=stages).POWER_SCHEDULE
        assert sorted(target for _, target, _, _ in schedule) == list(range(2, stages + 1))
        stored = {1: 0}
        for clock, target, a, b in schedule:
            assert a + b == target and stored[a] <= clock and stored[b] <= clock
            stored[target] = clock + stages + 2


def test_pipelined_block_waits_for_its_lane():
    """A pause of one clock between two blocks of a message costs a turn of the ring: the block
    after the pause waits in the input register until its lane comes round again, so the block
    after it is accepted ``stages`` clocks later instead of one (``stages - 1`` clocks lost on top
    of the pause)."""
    dut = GHASHPipelined(stages=4)
    rng = random.Random(7)
    h, blocks = rng.randbytes(16), [rng.randbytes(16) for _ in range(6)]
    taken, out = [], []

    async def producer(ctx):
        await put(ctx, dut.h, [le(h)])
        clock = 0
        for k, block in enumerate(blocks):
            if k == 3:
                await ctx.tick()
                clock += 1
            clock += await offer(ctx, dut.i, {"block": le(block), "remaining": len(blocks) - k})
            taken.append(clock)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        out.extend(await get(ctx, dut.o, 1))

    run(dut, producer, consumer, deadline_cycles=500)
    assert [b - a for a, b in zip(taken, taken[1:])] == [1, 1, 2, 4, 1]
    assert out[0].to_bytes(16, "little") == ghash(h, blocks)


def test_pipelined_arguments_checked():
    with pytest.raises(TypeError, match=r"levels must be an integer, not 2\.0"):
        GHASHPipelined(levels=2.0)
    with pytest.raises(ValueError, match=r"levels must be one of \(1, 2, 3\), not 4"):
        GHASHPipelined(levels=4)
    with pytest.raises(TypeError, match=r"stages must be an integer, not True"):
        GHASHPipelined(stages=True)
    with pytest.raises(ValueError, match=r"stages must be one of \(3, 4, 5\), not 6"):
        GHASHPipelined(stages=6)
