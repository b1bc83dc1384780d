"""Drive :class:`ipchan.hw.crypto.gcm.GCMCore` in Amaranth's simulator with whole messages."""

import random
from dataclasses import dataclass
from typing import Optional

from ipchan.hw.crypto.gcm import GCMCore

from .simutil import get, put, run


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


def command(msg):
    return {
        "key": int.from_bytes(msg.key.ljust(32, b"\0"), "little"),
        "key256": int(len(msg.key) == 32),
        "nonce": int.from_bytes(msg.nonce, "little"),
        "aad_len": len(msg.aad), "text_len": len(msg.text),
        "decrypt": int(msg.decrypt), "tag_bytes": msg.tag_bytes,
    }


def input_beats(msg):
    beats = _beats(msg.aad) + _beats(msg.text)
    if msg.decrypt:
        beats += _beats(msg.received_tag.ljust(16, b"\0"))
    return beats


def run_gcm(profile, messages, seed=None, gap=0.0, dut=None, stats=None):
    """Run ``messages`` back to back through one core; returns an :class:`Outcome` for each.
    With ``seed``, every stream gets random valid/ready gaps (a fraction ``gap`` of clocks).
    ``stats``, a dict, receives the cycle count."""
    dut = dut or GCMCore(profile)
    rngs = [random.Random(seed + k) if seed is not None else None for k in range(4)]
    n_out = sum(len(_beats(m.aad)) + len(_beats(m.text)) for m in messages)
    beats_out, results = [], []
    cycles = {"count": 0}

    async def commands(ctx):
        await put(ctx, dut.cmd, [command(m) for m in messages], rngs[0], gap)

    async def data_in(ctx):
        await put(ctx, dut.i, [b for m in messages for b in input_beats(m)], rngs[1], gap)

    async def data_out(ctx):
        beats_out.extend(await get(ctx, dut.o, n_out, rngs[2], gap))

    async def result(ctx):
        results.extend(await get(ctx, dut.r, len(messages), rngs[3], gap))

    async def clock_counter(ctx):
        while True:
            await ctx.tick()
            cycles["count"] += 1

    budget = 200 * (n_out + 20 * len(messages)) + 500
    run(dut, commands, data_in, data_out, result, deadline_cycles=budget,
        extra_processes=[clock_counter])
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
