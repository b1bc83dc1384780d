"""AES cores against FIPS-197 appendix C and against ``cryptography``'s AES."""

import random

import pytest
from amaranth.sim import Simulator
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ipchan.hw.crypto.aes import AESIterative, AESPipelined, make_aes
from ipchan.hw.crypto.tables import RCON, SBOX

from .simutil import get, put, run


PROFILES = ["compact", "fast"]

# FIPS-197 appendix C.1 and C.3.
FIPS197 = [
    ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
]


def ecb(key, block):
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def request(key, block):
    return {"block": int.from_bytes(block, "little"),
            "key": int.from_bytes(key.ljust(32, b"\0"), "little"),
            "key256": int(len(key) == 32)}


def encrypt_all(profile, jobs, seed=None, gap=0.0, dut=None):
    """Run ``(key, block)`` jobs through a fresh core; returns the ciphertexts and the cycles."""
    dut = dut or make_aes(profile)
    rng = random.Random(seed) if seed is not None else None
    results, cycles = [], []

    async def producer(ctx):
        await put(ctx, dut.i, [request(k, b) for k, b in jobs], rng, gap)

    async def consumer(ctx):
        start = 0
        out = await get(ctx, dut.o, len(jobs), random.Random(seed + 1) if rng else None, gap)
        results.extend(v.to_bytes(16, "little") for v in out)

    run(dut, producer, consumer, deadline_cycles=100 * len(jobs) + 100)
    return results


def test_tables():
    assert SBOX[0x00] == 0x63 and SBOX[0x53] == 0xed and SBOX[0xff] == 0x16
    assert sorted(SBOX) == list(range(256))
    assert RCON[1:11] == (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36)


@pytest.mark.parametrize("profile", PROFILES)
def test_fips197(profile):
    jobs = [(bytes.fromhex(k), bytes.fromhex(p)) for k, p, _ in FIPS197]
    assert encrypt_all(profile, jobs) == [bytes.fromhex(c) for _, _, c in FIPS197]


@pytest.mark.parametrize("profile", PROFILES)
def test_random_keys_and_stalls(profile):
    rng = random.Random(197)
    jobs = [(rng.randbytes(rng.choice((16, 32))), rng.randbytes(16)) for _ in range(40)]
    assert encrypt_all(profile, jobs, seed=5, gap=0.3) == [ecb(k, b) for k, b in jobs]


@pytest.mark.parametrize("profile,round_clocks", [("compact", None), ("fast", 3), ("fast", 4)])
def test_back_to_back_latency(profile, round_clocks):
    """Full-rate input and output: the compact core takes Nr clocks a block, the fast one 1."""
    dut = make_aes(profile) if round_clocks is None else AESPipelined(round_clocks=round_clocks)
    key = bytes(range(32))
    # The fast core: more blocks than its credits, so that too few credits would show.
    n = 12 if profile == "compact" else 2 * dut.OUTPUT_FIFO_DEPTH
    cycles = {}

    async def producer(ctx):
        await put(ctx, dut.i, [request(key, bytes([i] * 16)) for i in range(n)])

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        count = 0
        cycle = 0
        while count < n:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            if valid:
                cycles.setdefault("first", cycle)
                cycles["last"] = cycle
                count += 1

    run(dut, producer, consumer, deadline_cycles=1000)
    per_block = (cycles["last"] - cycles["first"]) / (n - 1)
    assert per_block == (14 if profile == "compact" else 1)
    # The first block is accepted at edge 1; a result valid after edge k is sampled at edge k + 1.
    # The fast core expands the (new) key first.
    assert cycles["first"] - 2 == dut.LATENCY[256] + getattr(dut, "KEY_CLOCKS", 0)


def test_profile_name_checked():
    with pytest.raises(ValueError, match=r"Profile must be 'compact' or 'fast', not 'medium'"):
        make_aes("medium")


def test_round_clocks_checked():
    with pytest.raises(TypeError, match=r"round_clocks must be an integer, not True"):
        AESPipelined(round_clocks=True)
    with pytest.raises(TypeError, match=r"round_clocks must be an integer, not '3'"):
        AESPipelined(round_clocks="3")
    with pytest.raises(ValueError, match=r"round_clocks must be 1, 2, 3 or 4, not 5"):
        AESPipelined(round_clocks=5)


@pytest.mark.parametrize("round_clocks", [1, 2, 3])
def test_other_round_clocks(round_clocks):
    """The pipelines with one, two and three clocks a round are still a correct AES."""
    rng = random.Random(14)
    jobs = [(rng.randbytes(rng.choice((16, 32))), rng.randbytes(16)) for _ in range(20)]
    dut = AESPipelined(round_clocks=round_clocks)
    assert dut.LATENCY == {128: 6 + 14 * round_clocks, 256: 6 + 14 * round_clocks}
    assert encrypt_all("fast", jobs, seed=2, gap=0.3, dut=dut) == [ecb(k, b) for k, b in jobs]


def test_fast_credits_under_a_long_stall():
    """The consumer stalls while the producer keeps offering: the pipeline runs on, so only
    accepted requests may enter it (a request offered while ``i.ready`` is low once slipped in
    twice) and the output FIFO must hold every block in flight."""
    rng = random.Random(32)
    jobs = [(rng.randbytes(32), rng.randbytes(16)) for _ in range(80)]
    dut = AESPipelined()
    out = []

    async def producer(ctx):
        await put(ctx, dut.i, [request(k, b) for k, b in jobs])

    async def consumer(ctx):
        for _ in range(3 * dut.OUTPUT_FIFO_DEPTH):
            await ctx.tick()
        out.extend(await get(ctx, dut.o, len(jobs)))

    run(dut, producer, consumer, deadline_cycles=5000)
    assert [v.to_bytes(16, "little") for v in out] == [ecb(k, b) for k, b in jobs]


def _full_rate(dut, jobs):
    """``jobs`` offered back to back to an always-ready consumer; returns the ciphertexts and the
    clock (from the first offer) after which each became valid."""
    out, clocks = [], []

    async def producer(ctx):
        await put(ctx, dut.i, [request(k, b) for k, b in jobs])

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        clock = 0
        while len(out) < len(jobs):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            clock += 1
            if valid:
                out.append(payload.to_bytes(16, "little"))
                clocks.append(clock - 2)

    run(dut, producer, consumer, deadline_cycles=100 * len(jobs) + 200)
    return out, clocks


@pytest.mark.parametrize("round_clocks", [4, 1])
def test_fast_key_banks(round_clocks):
    """Two keys in turn stay in the two banks (one expansion each, then a block every
    1 + SWITCH_CLOCKS clocks); a third key evicts the bank used least recently, waiting for its
    blocks to leave the pipeline."""
    rng = random.Random(2)
    k1, k2, k3 = rng.randbytes(32), rng.randbytes(16), rng.randbytes(32)
    phases = [[k1, k2] * 8, [k3, k2] * 8, [k1, k2, k3] * 4, [k1] * 3]
    jobs = [(k, rng.randbytes(16)) for phase in phases for k in phase]
    dut = AESPipelined(round_clocks=round_clocks)
    out, clocks = _full_rate(dut, jobs)
    assert out == [ecb(k, b) for k, b in jobs]
    # The first two blocks each wait for an expansion, then the alternating pair streams.
    latency = dut.LATENCY[256]
    assert clocks[0] == latency + dut.KEY_CLOCKS
    assert clocks[1] == clocks[0] + dut.KEY_CLOCKS + 1
    assert [b - a for a, b in zip(clocks[1:16], clocks[2:16])] == [1 + dut.SWITCH_CLOCKS] * 14
    # One key: a block a clock.
    assert [b - a for a, b in zip(clocks[-3:], clocks[-2:])] == [1, 1]
    # k3 replaces k1 (used least recently) once k1's blocks have left the pipeline.
    assert clocks[16] - clocks[15] > dut.KEY_CLOCKS


def test_fast_key_clocks_measured():
    """A block whose key is already in a bank leaves :attr:`LATENCY` clocks after it is offered."""
    dut = AESPipelined()
    key = bytes(range(16))
    out, clocks = _full_rate(dut, [(key, bytes(16))])
    assert clocks == [dut.LATENCY[128] + dut.KEY_CLOCKS]


@pytest.mark.parametrize("round_clocks", [4, 1])
def test_fast_key_pool_with_stalls(round_clocks):
    """Keys drawn from a pool of three (runs of one key, two in turn, evictions), with random
    stalls on both streams."""
    rng = random.Random(3)
    pool = [rng.randbytes(32), rng.randbytes(16), rng.randbytes(32)]
    jobs = []
    while len(jobs) < 120:
        key = rng.choice(pool)
        jobs += [(key, rng.randbytes(16)) for _ in range(rng.choice((1, 1, 2, 5)))]
    assert encrypt_all("fast", jobs, seed=9, gap=0.3,
                       dut=AESPipelined(round_clocks=round_clocks)) == [ecb(k, b) for k, b in jobs]
