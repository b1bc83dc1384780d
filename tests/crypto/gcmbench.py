"""Drive :class:`ipchan.hw.crypto.gcm.GCMCore` in Amaranth's simulator with whole messages."""

import random
from dataclasses import dataclass
from typing import Optional

from ipchan.hw.crypto.gcm import GCMCore

from .simutil import get, put, run


#: Slots of the stored-key core in the tests: few, so that slots are loaded again and again.
TEST_KEY_SLOTS = 4

#: The cores the tests run: the two profiles, and the compact one with stored round keys.
CORES = ("compact", "compact-keys", "fast")


def make_core(name):
    """A fresh core of one of :data:`CORES`."""
    if name == "compact-keys":
        return GCMCore("compact", key_slots=TEST_KEY_SLOTS)
    return GCMCore(name)


@dataclass
class Message:
    key: bytes
    nonce: bytes
    aad: bytes
    text: bytes
    decrypt: bool = False
    tag_bytes: int = 16
    received_tag: bytes = b""   # decrypt only


@dataclass
class Outcome:
    aad: bytes          # AAD bytes as they left on ``o``
    text: bytes         # text bytes as they left on ``o``
    tag: bytes          # the 16-byte tag field of the result
    match: bool
    error: bool
    beats: list         # (bytes, aad, last) of each output beat


def _beats(data):
    return [int.from_bytes(data[k:k + 16].ljust(16, b"\0"), "little") for k in range(0, len(data), 16)]


def command(msg, key_index=None):
    """The core's command for ``msg``: with the key, or (a core with key slots) naming the slot
    ``key_index`` that holds it."""
    fields = {
        "nonce": int.from_bytes(msg.nonce, "little"),
        "aad_len": len(msg.aad), "text_len": len(msg.text),
        "decrypt": int(msg.decrypt), "tag_bytes": msg.tag_bytes,
    }
    if key_index is None:
        fields.update(key=int.from_bytes(msg.key.ljust(32, b"\0"), "little"),
                      key256=int(len(msg.key) == 32))
    else:
        fields.update(key_index=key_index)
    return fields


def key_words(key, index):
    """The ``key`` stream's beats that load ``key`` into slot ``index``."""
    return [{"data": int.from_bytes(key[k:k + 4], "little"), "index": index,
             "key256": int(len(key) == 32)} for k in range(0, len(key), 4)]


def input_beats(msg):
    beats = _beats(msg.aad) + _beats(msg.text)
    if msg.decrypt:
        beats += _beats(msg.received_tag.ljust(16, b"\0"))
    return beats


def run_gcm(profile, messages, seed=None, gap=0.0, dut=None, stats=None):
    """Run ``messages`` back to back through one core (``dut``, or a new one of ``profile``, a
    name of :data:`CORES`); returns an :class:`Outcome` for each. A core with key slots gets
    message ``n``'s key loaded into slot ``n % key_slots`` (the loads run beside the messages).
    With ``seed``, every stream gets random valid/ready gaps (a fraction ``gap`` of clocks).
    ``stats``, a dict, receives the cycle count."""
    dut = dut or make_core(profile)
    rngs = [random.Random(seed + k) if seed is not None else None for k in range(4)]
    n_out = sum(len(_beats(m.aad)) + len(_beats(m.text)) for m in messages)
    beats_out, results = [], []
    cycles = {"count": 0}

    slots = getattr(dut, "key_slots", None)
    loaded = {"count": 0}

    async def commands(ctx):
        if slots is None:
            await put(ctx, dut.cmd, [command(m) for m in messages], rngs[0], gap)
            return
        # Message n's key is in slot n % slots; its command waits until that key is loaded.
        for n, msg in enumerate(messages):
            while loaded["count"] <= n:
                await ctx.tick()
            await put(ctx, dut.cmd, [command(msg, n % slots)], rngs[0], gap)

    async def keys(ctx):
        # A slot is loaded again only once the message that used it has its result (the rule
        # the core states: a slot must not be loaded while a message naming it is in the core).
        rng = random.Random(seed + 4) if seed is not None else None
        for n, msg in enumerate(messages):
            while len(results) <= n - slots:
                await ctx.tick()
            await put(ctx, dut.key, key_words(msg.key, n % slots), rng, gap)
            loaded["count"] = n + 1

    async def data_in(ctx):
        await put(ctx, dut.i, [b for m in messages for b in input_beats(m)], rngs[1], gap)

    async def data_out(ctx):
        beats_out.extend(await get(ctx, dut.o, n_out, rngs[2], gap))

    async def result(ctx):
        # One at a time: the key loader watches how many have arrived.
        for _ in messages:
            results.extend(await get(ctx, dut.r, 1, rngs[3], gap))

    async def clock_counter(ctx):
        while True:
            await ctx.tick()
            cycles["count"] += 1

    budget = 200 * (n_out + 20 * len(messages)) + 500
    testbenches = [commands, data_in, data_out, result] + ([keys] if slots is not None else [])
    run(dut, *testbenches, deadline_cycles=budget, extra_processes=[clock_counter])
    if stats is not None:
        stats["cycles"] = cycles["count"]

    outcomes, index = [], 0
    for msg, res in zip(messages, results):
        n_aad, n_text = len(_beats(msg.aad)), len(_beats(msg.text))
        mine = beats_out[index:index + n_aad + n_text]
        index += n_aad + n_text
        aad = b"".join(int(b.data).to_bytes(16, "little")[:int(b.bytes)] for b in mine[:n_aad])
        text = b"".join(int(b.data).to_bytes(16, "little")[:int(b.bytes)] for b in mine[n_aad:])
        outcomes.append(Outcome(
            aad=aad, text=text, tag=int(res.tag).to_bytes(16, "little"),
            match=bool(res.match), error=bool(res.error),
            beats=[(int(b.bytes), bool(b.aad), bool(b.last)) for b in mine]))
    return outcomes
