"""The packet ring (``hw/esp/ring.py``) on its own, in Amaranth's simulator: three stages own its
buffers in turn, the receiver stalls only when all are taken, and each stage reads its own
packet."""

import pytest
from amaranth.sim import Simulator

from ipchan.hw.esp.layouts import PacketBeat
from ipchan.hw.esp.outbound import OutboundBeat
from ipchan.hw.esp.ring import RING_DEPTH, PacketRing


def beats(data):
    """``(data, keep, last)`` per 16-byte beat of ``data``."""
    out = []
    for k in range(0, max(len(data), 1), 16):
        chunk = data[k:k + 16]
        out.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, k + 16 >= len(data)))
    return out


async def send(ctx, ring, data, sa_index=None):
    """Offer ``data`` on ``i``, a beat per clock as ``ready`` allows."""
    for value, keep, last in beats(data):
        ctx.set(ring.i.payload.data, value)
        ctx.set(ring.i.payload.keep, keep)
        ctx.set(ring.i.payload.last, last)
        if sa_index is not None:
            ctx.set(ring.i.payload.sa_index, sa_index)
        ctx.set(ring.i.valid, 1)
        await ctx.tick().until(ring.i.ready)
    ctx.set(ring.i.valid, 0)


async def pulse(ctx, signal):
    """``signal`` high for one clock."""
    ctx.set(signal, 1)
    await ctx.tick()
    ctx.set(signal, 0)


async def read(ctx, port, addr):
    ctx.set(port.r_addr, addr)
    await pulse(ctx, port.r_en)
    return ctx.get(port.r_data).to_bytes(16, "little")


def run(ring, bench):
    sim = Simulator(ring)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_three_stages_own_the_buffers_in_turn():
    ring = PacketRing(128, base=16, max_packet=64, beat=OutboundBeat)
    packets = [bytes(range(k, k + 20 + 7 * k)) for k in range(4)]
    seen = {}

    async def bench(ctx):
        # Nobody processes: the ring takes one packet per buffer, then holds the next off.
        for k in range(RING_DEPTH):
            await send(ctx, ring, packets[k], sa_index=0x40 + k)
        ctx.set(ring.i.payload.last, 1)
        ctx.set(ring.i.valid, 1)
        await ctx.tick()
        seen["ready_when_full"] = ctx.get(ring.i.ready)
        ctx.set(ring.i.valid, 0)

        # The processor takes the first; it reads its own packet, from `base`.
        assert ctx.get(ring.received.valid)
        info = ctx.get(ring.received.payload)
        seen["info0"] = (info.plen, info.too_long, info.rx_bad, info.user)
        await pulse(ctx, ring.received.ready)
        seen["valid_while_busy"] = ctx.get(ring.received.valid)
        seen["proc0"] = await read(ctx, ring.proc, 16)
        # It writes over its packet, and hands the buffer to the sender.
        ctx.set(ring.proc.w_addr, 16)
        ctx.set(ring.proc.w_data, int.from_bytes(b"X" * 16, "little"))
        ctx.set(ring.proc.w_mask, 0xFFFF)
        await pulse(ctx, ring.proc.w_en)
        await pulse(ctx, ring.proc_done)
        # Still all three taken (one sending, two received), so the fourth packet waits ...
        seen["ready_sending"] = ctx.get(ring.i.ready)
        # ... while the processor takes the second and the sender reads the first.
        info = ctx.get(ring.received.payload)
        seen["info1"] = (info.plen, info.user)
        await pulse(ctx, ring.received.ready)
        seen["send0"] = await read(ctx, ring.send, 16)
        seen["proc1"] = await read(ctx, ring.proc, 16 + 16)
        await pulse(ctx, ring.send_done)
        # The first buffer is free again: the fourth packet goes into it.
        seen["ready_after_send"] = ctx.get(ring.i.ready)
        await send(ctx, ring, packets[3], sa_index=0x43)
        await pulse(ctx, ring.proc_done)
        ctx.set(ring.send_done, 1)       # the second, sent at once
        await ctx.tick()
        ctx.set(ring.send_done, 0)
        for k in (2, 3):
            info = ctx.get(ring.received.payload)
            seen[f"info{k}"] = (info.plen, info.user)
            await pulse(ctx, ring.received.ready)
            seen[f"proc{k}"] = await read(ctx, ring.proc, 16)
            await pulse(ctx, ring.proc_done)
            await pulse(ctx, ring.send_done)

    run(ring, bench)
    assert seen["ready_when_full"] == 0
    assert seen["info0"] == (20, 0, 0, 0x40)
    assert seen["valid_while_busy"] == 0
    assert seen["proc0"] == packets[0][:16]
    assert seen["ready_sending"] == 0
    assert seen["info1"] == (27, 0x41)
    assert seen["send0"] == b"X" * 16              # what the processor left there
    assert seen["proc1"][:11] == packets[1][16:27]  # its last 11 bytes, from its own buffer
    assert seen["ready_after_send"] == 1
    assert seen["info2"] == (34, 0x42) and seen["proc2"] == packets[2][:16]
    assert seen["info3"] == (41, 0x43) and seen["proc3"] == packets[3][:16]


def test_receiver_flags_long_and_short_beats():
    ring = PacketRing(64, base=0, max_packet=40, beat=PacketBeat)
    seen = []

    async def bench(ctx):
        await send(ctx, ring, bytes(50))                   # 10 bytes too many
        # A short beat before the last.
        for value, keep, last in [(0, 0xFF, 0), (0, 0xFFFF, 1)]:
            ctx.set(ring.i.payload.data, value)
            ctx.set(ring.i.payload.keep, keep)
            ctx.set(ring.i.payload.last, last)
            ctx.set(ring.i.valid, 1)
            await ctx.tick().until(ring.i.ready)
        ctx.set(ring.i.valid, 0)
        await send(ctx, ring, bytes(range(40)))            # exactly max_packet
        for _ in range(3):
            info = ctx.get(ring.received.payload)
            seen.append((info.plen, info.too_long, info.rx_bad))
            await pulse(ctx, ring.received.ready)
            await pulse(ctx, ring.proc_done)
            await pulse(ctx, ring.send_done)

    run(ring, bench)
    assert seen == [(32, 1, 0), (24, 0, 1), (40, 0, 0)]


@pytest.mark.parametrize("kwargs,message", [
    (dict(size=0, base=0, max_packet=1), "Buffer size must be an integer of at least 1, not 0"),
    (dict(size=64, base=-1, max_packet=1), "Base must be an integer of at least 0, not -1"),
    (dict(size=64, base=0, max_packet=True), "Maximum packet must be an integer of at least 1, "
                                             "not True"),
    (dict(size=64, base=0, max_packet=8, depth=1), "Depth must be an integer of at least 2, not 1"),
    (dict(size=64, base=32, max_packet=40), "Base 32 plus maximum packet 40 must fit the buffer "
                                            "of 64 bytes"),
])
def test_argument_checks(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        PacketRing(beat=PacketBeat, **kwargs)
