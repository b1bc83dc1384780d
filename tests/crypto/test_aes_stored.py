"""The compact AES with stored round keys (``AESStoredKeys``): the key expansion in its RAM against
FIPS-197, encryption against ``cryptography`` across slots, key sizes and stalls, how loads and
blocks take turns, its clocks, and its argument checks."""

import random

import pytest

from ipchan.hw.crypto.aes_stored import (AESStoredKeys, EXPAND_CLOCKS, ROWS_PER_SLOT, index_width,
                                         key_word, stored_request)
from ipchan.hw.crypto.tables import RCON, SBOX

from .gcmbench import key_words
from .simutil import get, put, run
from .test_aes import FIPS197, ecb


def expand_key(key):
    """FIPS-197 5.2 in Python: the round keys of ``key``, each as 16 bytes."""
    nk = len(key) // 4
    words = [key[4 * i:4 * i + 4] for i in range(nk)]
    for i in range(nk, 4 * (nk + 7)):
        temp = words[i - 1]
        if i % nk == 0:
            temp = bytes(SBOX[b] for b in temp[1:] + temp[:1])
            temp = bytes([temp[0] ^ RCON[i // nk]]) + temp[1:]
        elif nk == 8 and i % 8 == 4:
            temp = bytes(SBOX[b] for b in temp)
        words.append(bytes(a ^ b for a, b in zip(words[i - nk], temp)))
    return [b"".join(words[4 * r:4 * r + 4]) for r in range(nk + 7)]


def block_request(index, block):
    return {"block": int.from_bytes(block, "little"), "index": index}


def test_expansion_matches_fips197():
    # FIPS-197 appendix A.1 and A.3: the last round key of each.
    assert expand_key(bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))[10].hex() == (
        "d014f9a8c9ee2589e13f0cc8b6630ca6")
    assert expand_key(bytes.fromhex("603deb1015ca71be2b73aef0857d7781"
                                    "1f352c073b6108d72d9810a30914dff4"))[14].hex() == (
        "fe4890d1e6188d0b046df344706c631e")


@pytest.mark.parametrize("size", [16, 32])
def test_round_keys_in_the_ram(size):
    """After a load, the slot's rows hold the FIPS-197 expansion, and the other slots are
    untouched."""
    rng = random.Random(size)
    key, other = rng.randbytes(size), rng.randbytes(32)
    dut = AESStoredKeys(4)

    async def testbench(ctx):
        await put(ctx, dut.key, key_words(other, 0) + key_words(key, 2))
        await ctx.tick().repeat(EXPAND_CLOCKS[8 * size])
        for slot, expected in ((2, expand_key(key)), (0, expand_key(other))):
            rows = [ctx.get(dut._round_keys.data[slot * ROWS_PER_SLOT + r]).to_bytes(16, "little")
                    for r in range(len(expected))]
            assert rows == expected
        assert all(ctx.get(dut._round_keys.data[1 * ROWS_PER_SLOT + r]) == 0
                   for r in range(ROWS_PER_SLOT))

    run(dut, testbench, deadline_cycles=2000)


def run_jobs(dut, loads, jobs, seed=None, gap=0.0, start_after=0):
    """Load ``loads`` (``(slot, key)``), then encrypt ``jobs`` (``(slot, block)``); returns the
    ciphertexts."""
    rngs = [random.Random(seed + k) if seed is not None else None for k in range(3)]
    results = []

    async def loader(ctx):
        await put(ctx, dut.key, [b for slot, key in loads for b in key_words(key, slot)],
                  rngs[0], gap)

    async def producer(ctx):
        if start_after:
            await ctx.tick().repeat(start_after)
        await put(ctx, dut.i, [block_request(s, b) for s, b in jobs], rngs[1], gap)

    async def consumer(ctx):
        out = await get(ctx, dut.o, len(jobs), rngs[2], gap)
        results.extend(v.to_bytes(16, "little") for v in out)

    run(dut, loader, producer, consumer, deadline_cycles=200 * (len(jobs) + 8 * len(loads)) + 500)
    return results


def test_fips197():
    dut = AESStoredKeys(2)
    keys = [bytes.fromhex(k) for k, _, _ in FIPS197]
    jobs = [(slot, bytes.fromhex(p)) for slot, (_, p, _) in enumerate(FIPS197)]
    # The blocks are offered from the start: they wait until the loads are done.
    assert run_jobs(dut, list(enumerate(keys)), jobs) == [bytes.fromhex(c) for _, _, c in FIPS197]


def test_random_keys_slots_and_stalls():
    """Every slot, both key sizes, blocks in any slot order, with random gaps on all three
    streams; then every slot loaded again with a key of the other size."""
    rng = random.Random(197)
    slots = 8
    first = [(s, rng.randbytes(rng.choice((16, 32)))) for s in range(slots)]
    jobs = [(rng.randrange(slots), rng.randbytes(16)) for _ in range(40)]
    dut = AESStoredKeys(slots)
    got = run_jobs(dut, first, jobs, seed=5, gap=0.3, start_after=2000)
    keys = dict(first)
    assert got == [ecb(keys[s], b) for s, b in jobs]

    second = [(s, rng.randbytes(48 - len(keys[s]))) for s in range(slots)]
    dut = AESStoredKeys(slots)
    got = run_jobs(dut, first + second, jobs, seed=9, gap=0.3, start_after=4000)
    keys = dict(second)
    assert got == [ecb(keys[s], b) for s, b in jobs]


def test_load_waits_for_the_block_in_flight_and_blocks_wait_for_the_load():
    """A key offered while a block is encrypted is taken when that block is done; a block
    offered during the load is taken only once the expansion is over; the key of a slot that
    is not loaded again is unaffected."""
    rng = random.Random(3)
    k0, k1 = rng.randbytes(32), rng.randbytes(16)
    b = [rng.randbytes(16) for _ in range(3)]
    dut = AESStoredKeys(2)
    events = {}

    async def testbench(ctx):
        await put(ctx, dut.key, key_words(k0, 0))
        await ctx.tick().repeat(EXPAND_CLOCKS[256])
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, block_request(0, b[0]))
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        # Block 0 is in flight: the key's first word must wait.
        ctx.set(dut.key.payload, key_words(k1, 1)[0])
        ctx.set(dut.key.valid, 1)
        clock = 0
        while True:
            _, _, ready = await ctx.tick().sample(dut.key.ready)
            clock += 1
            if ready:
                break
        events["first_word"] = clock
        for beat in key_words(k1, 1)[1:]:
            ctx.set(dut.key.payload, beat)
            await ctx.tick().until(dut.key.ready)
        ctx.set(dut.key.valid, 0)
        # Blocks under both keys, offered at once: neither starts before the expansion is over.
        ctx.set(dut.i.payload, block_request(1, b[1]))
        ctx.set(dut.i.valid, 1)
        waited = 0
        while True:
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if ready:
                break
            waited += 1
        events["waited"] = waited
        ctx.set(dut.i.payload, block_request(0, b[2]))
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    outputs = []

    async def consumer(ctx):
        outputs.extend(await get(ctx, dut.o, 3))

    run(dut, testbench, consumer, deadline_cycles=3000)
    assert [v.to_bytes(16, "little") for v in outputs] == [ecb(k0, b[0]), ecb(k1, b[1]),
                                                           ecb(k0, b[2])]
    # Block 0 (AES-256) finished before the load started: its first word is taken in the clock
    # after the block's last round.
    assert events["first_word"] == AESStoredKeys.LATENCY[256] + 1
    # Offered from the clock after the last word was taken, block 1 is taken EXPAND_CLOCKS edges
    # after that word.
    assert events["waited"] + 1 == EXPAND_CLOCKS[128]


@pytest.mark.parametrize("size", [128, 256])
def test_clocks_per_block_and_latency(size):
    """At full rate a block takes Nr + 1 clocks (the next block's round key 0 is read after the
    last round); a result is valid LATENCY edges after its block is accepted; a load takes
    EXPAND_CLOCKS after its last word."""
    key = bytes(range(size // 8))
    n = 8
    dut = AESStoredKeys(2)
    marks = {}

    async def producer(ctx):
        ctx.set(dut.key.valid, 1)
        for beat in key_words(key, 1):
            ctx.set(dut.key.payload, beat)
            await ctx.tick().until(dut.key.ready)
        ctx.set(dut.key.valid, 0)
        marks["loaded"] = marks["clock"]
        ctx.set(dut.i.valid, 1)
        for k in range(n):
            ctx.set(dut.i.payload, block_request(1, bytes([k] * 16)))
            await ctx.tick().until(dut.i.ready)
            marks.setdefault("accepted", marks["clock"])
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        count = 0
        while count < n:
            _, _, valid, value = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                marks.setdefault("first", marks["clock"])
                marks["last"] = marks["clock"]
                assert value.to_bytes(16, "little") == ecb(key, bytes([count] * 16))
                count += 1

    async def clock(ctx):
        marks["clock"] = 0
        while True:
            await ctx.tick()
            marks["clock"] += 1

    run(dut, producer, consumer, deadline_cycles=1000, extra_processes=[clock])
    assert (marks["last"] - marks["first"]) / (n - 1) == AESStoredKeys.CLOCKS_PER_BLOCK[size]
    assert marks["accepted"] - marks["loaded"] == EXPAND_CLOCKS[size]
    # The consumer samples ``o.valid`` at the edge after the one that set it.
    assert marks["first"] - marks["accepted"] == AESStoredKeys.LATENCY[size] + 1


def test_layouts():
    assert index_width(1) == 1 and index_width(16) == 4 and index_width(64) == 6
    assert stored_request(16).size == 128 + 4
    assert key_word(16).size == 32 + 4 + 1


@pytest.mark.parametrize("slots,error,message", [
    (0, ValueError, "slots must be a power of two, not 0"),
    (12, ValueError, "slots must be a power of two, not 12"),
    (-4, ValueError, "slots must be a power of two, not -4"),
    (True, TypeError, "slots must be an integer, not True"),
    (16.0, TypeError, "slots must be an integer, not 16.0"),
])
def test_slots_checked(slots, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        AESStoredKeys(slots)
    with pytest.raises(error, match=f"^{message}$"):
        key_word(slots)
