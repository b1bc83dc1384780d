"""Run the gateware's inbound ESP datapath (``Engine(params, esp=...)``) in Amaranth's simulator
beside the golden model, and compare them packet for packet and tag for tag.

A test drives a :class:`HwRig` as it would the model: it installs SAs through the driver (on the
golden model; every register write is recorded) and sends packets (the golden model answers at
once). :meth:`HwRig.run` then replays the same register writes over the engine's AXI4-Lite port
and the same packets on ``s_axis_in``, with random valid/ready gaps on every stream, and checks
every tag, every packet handed up, the counters and the SA state against what the model said.
"""

import random

from amaranth.sim import Simulator

from ipchan.hw import contract
from ipchan.hw.contract import Direction
from ipchan.hw.engine import Engine
from ipchan.sw.regs import ADDR, FIELD

from esp.helpers import Rig  # tests/ is on sys.path (pytest rootdir-relative packages)


class RecordingTransport:
    """A transport that passes everything to ``inner`` and records the writes."""

    def __init__(self, inner):
        self.inner = inner
        self.writes = []

    def read(self, addr):
        return self.inner.read(addr)

    def write(self, addr, value):
        self.writes.append((addr, value))
        return self.inner.write(addr, value)

    def close(self):
        self.inner.close()

    def take(self):
        writes, self.writes = self.writes, []
        return writes


def beats_of(packet):
    """``packet`` as ``s_axis_in`` beats (data, keep, last)."""
    chunks = [packet[k:k + 16] for k in range(0, len(packet), 16)] or [b""]
    return [{"data": int.from_bytes(c.ljust(16, b"\0"), "little"), "keep": (1 << len(c)) - 1,
             "last": int(k == len(chunks) - 1)} for k, c in enumerate(chunks)]


class HwRig(Rig):
    """:class:`tests.esp.helpers.Rig` whose steps are replayed on the gateware by :meth:`run`."""

    def __init__(self, params=contract.EngineParams(n_entries=8, max_packet=2048),
                 profile="compact"):
        super().__init__(params)
        self.profile = profile
        self.recorder = RecordingTransport(self.engine.transport)
        self.engine.transport = self.recorder
        self.steps = []          # ("writes", [(addr, value)]) or ("packet", bytes, out, tag)
        #: The sending side: its own engine model, holding the outbound twins of our SAs.
        self.peer = Rig(contract.EngineParams(n_entries=64))

    def steps_packets(self, direction=Direction.INBOUND):
        """(out, tag) the model gave for every packet of ``direction`` so far."""
        return [(s[4], s[5]) for s in self.steps if s[0] == "packet" and s[1] == direction]

    def sa(self, *, spi, mode="transport", algorithm="aes-gcm-16", esn=False, seq=0,
           replay_window=64, key=None, peer_seq=None, commit=True, **kw):
        """An inbound SA here and its outbound twin at the peer (same key): returns
        (peer slot, our SaRef, key). ``peer_seq`` is the peer's last used number (default
        ``seq``)."""
        key = key if key is not None else random.Random(spi).randbytes(36)
        out, _ = self.peer.add(spi=spi, direction="outbound", mode=mode, algorithm=algorithm,
                               key=key, esn=esn, seq=seq if peer_seq is None else peer_seq,
                               endpoints=kw.pop("endpoints", ("192.0.2.1", "192.0.2.2")))
        ref, _ = self.add(spi=spi, direction="inbound", mode=mode, algorithm=algorithm, key=key,
                          esn=esn, seq=seq, replay_window=replay_window, commit=commit, **kw)
        return out.index, ref, key

    def seal(self, packet, peer_index):
        """``packet`` protected by the peer's SA in ``peer_index`` (raises if it refuses)."""
        out, tag = self.peer.dp.outbound(packet, peer_index)
        assert out is not None, f"the peer refused the packet: {tag}"
        return out

    def _flush(self):
        writes = self.recorder.take()
        if writes:
            self.steps.append(("writes", writes))

    def inbound(self, packet):
        """Send ``packet`` to the model now and to the gateware at :meth:`run`; returns the
        model's (out, tag)."""
        self._flush()
        out, tag = self.dp.inbound(packet)
        self.steps.append(("packet", Direction.INBOUND, bytes(packet), None, out, tag))
        return out, tag

    def outbound(self, packet, index):
        """As :meth:`inbound`, for a packet to protect with the SA in slot ``index``."""
        self._flush()
        out, tag = self.dp.outbound(packet, index)
        self.steps.append(("packet", Direction.OUTBOUND, bytes(packet), index, out, tag))
        return out, tag

    def run(self, seed=0, gap=0.3):
        """Replay everything on the gateware; assert it matches; return the statistics."""
        self._flush()
        dut = Engine(self.model.params, esp=self.profile)
        packets = [s for s in self.steps if s[0] == "packet"]
        rng = random.Random(seed)
        ports = {Direction.INBOUND: (dut.s_axis_in, dut.m_axis_in_data, dut.m_axis_in_tag),
                 Direction.OUTBOUND: (dut.s_axis_out, dut.m_axis_out_data, dut.m_axis_out_tag)}
        got_tags = {d: [] for d in ports}
        got_data = {d: [] for d in ports}
        want = {d: sum(s[1] == d for s in packets) for d in ports}
        stats = {"cycles": 0, "packet_cycles": [], "starts": []}
        bus = dut.axil

        async def axil_write(ctx, addr, value):
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.wdata, value)
            ctx.set(bus.wstrb, 0xF)
            ctx.set(bus.awvalid, 1)
            ctx.set(bus.wvalid, 1)
            ctx.set(bus.bready, 1)
            await ctx.tick().until(bus.awready)
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
            await ctx.tick().until(bus.bvalid)
            ctx.set(bus.bready, 0)

        async def axil_read(ctx, addr):
            ctx.set(bus.araddr, addr)
            ctx.set(bus.arvalid, 1)
            ctx.set(bus.rready, 1)
            await ctx.tick().until(bus.arready)
            ctx.set(bus.arvalid, 0)
            while True:
                _, _, valid, value = await ctx.tick().sample(bus.rvalid, bus.rdata)
                if valid:
                    ctx.set(bus.rready, 0)
                    return value

        async def wait_idle(ctx):
            while FIELD.STATUS.BUSY.get(await axil_read(ctx, ADDR.STATUS)):
                pass

        done = {"sender": False}
        final = {}
        sent = {d: 0 for d in ports}

        def all_tagged():
            return all(len(got_tags[d]) >= sent[d] for d in ports)

        async def send(ctx, stream, beats):
            for beat in beats:
                while rng.random() < gap:
                    await ctx.tick()
                ctx.set(stream.payload, beat)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
                ctx.set(stream.valid, 0)

        async def sender(ctx):
            await wait_idle(ctx)
            for step in self.steps:
                if step[0] == "writes":
                    # Table changes apply between packets, as in the model: let the datapaths
                    # finish what they have first.
                    while not all_tagged():
                        await ctx.tick()
                    for addr, value in step[1]:
                        await axil_write(ctx, addr, value)
                    await wait_idle(ctx)
                    continue
                _, direction, packet, index, _, _ = step
                beats = beats_of(packet)
                if direction == Direction.OUTBOUND:
                    beats = [dict(b, sa_index=index) for b in beats]
                stats["starts"].append(stats["cycles"])
                await send(ctx, ports[direction][0], beats)
                sent[direction] += 1
            while not all_tagged():
                await ctx.tick()
            await wait_idle(ctx)
            # The state the host can see, for the comparison with the model.
            final["counters"] = {}
            for name in contract.VERDICT_COUNTERS.values():
                final["counters"][name] = await axil_read(ctx, getattr(ADDR, name))
            final["slots"] = {}
            for index in range(self.model.params.n_entries):
                await axil_write(ctx, ADDR.CMD, FIELD.CMD.OP.put(contract.Op.READ_ENTRY) |
                                 FIELD.CMD.INDEX.put(index))
                await wait_idle(ctx)
                seq = await axil_read(ctx, ADDR.RB_SEQ_LO)
                seq |= await axil_read(ctx, ADDR.RB_SEQ_HI) << 32
                counts = {}
                for v, name in contract.SA_VERDICT_COUNTERS.items():
                    counts[v] = await axil_read(ctx, getattr(ADDR, name))
                final["slots"][index] = (seq, counts)
            done["sender"] = True

        def tag_receiver(direction):
            async def receive(ctx):
                stream = ports[direction][2]
                while len(got_tags[direction]) < want[direction]:
                    ready = rng.random() >= gap
                    ctx.set(stream.ready, ready)
                    _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
                    if ready and valid:
                        got_tags[direction].append((payload.tag.as_value().value,
                                                    int(payload.handed_up)))
                        stats["packet_cycles"].append(stats["cycles"])
                ctx.set(stream.ready, 0)
            return receive

        def data_receiver(direction):
            async def receive(ctx):
                stream = ports[direction][1]
                current = b""
                while not done["sender"]:
                    ready = rng.random() >= gap
                    ctx.set(stream.ready, ready)
                    _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
                    if ready and valid:
                        keep = int(payload.keep)
                        n = bin(keep).count("1")
                        assert keep == (1 << n) - 1, f"keep {keep:#x} is not a run from byte 0"
                        current += int(payload.data).to_bytes(16, "little")[:n]
                        if payload.last:
                            got_data[direction].append((current, payload.user.as_value().value))
                            current = b""
                assert current == b"", "a packet was left unfinished"
            return receive

        async def clock(ctx):
            while True:
                await ctx.tick()
                stats["cycles"] += 1

        sim = Simulator(dut)
        sim.add_clock(1e-9)
        sim.add_testbench(sender)
        for d in ports:
            sim.add_testbench(tag_receiver(d))
            sim.add_testbench(data_receiver(d))
        sim.add_process(clock)
        budget = int(20000 + sum(40 * len(s[2]) + 600 for s in packets) * (1 + 3 * gap)
                     + 400 * sum(len(s[1]) for s in self.steps if s[0] == "writes"))

        async def watchdog(ctx):
            for _ in range(budget):
                await ctx.tick()
            raise AssertionError(f"simulation did not finish in {budget} cycles "
                                 f"({ {d.name: len(t) for d, t in got_tags.items()} } tags of "
                                 f"{ {d.name: n for d, n in want.items()} })")
        sim.add_process(watchdog)
        sim.run()
        for d in ports:
            self._compare(d, [s for s in packets if s[1] == d], got_tags[d], got_data[d])
        self._compare_state(final)
        return stats

    def _compare(self, direction, packets, got_tags, got_data):
        name = direction.name.lower()
        assert len(got_tags) == len(packets)
        handed = iter(got_data)
        for n, (step, (got_tag, got_up)) in enumerate(zip(packets, got_tags)):
            out, tag = step[4], step[5]
            want = contract.pack_tag(**tag)
            assert got_tag == want, (f"{name} packet {n}: tag {contract.unpack_tag(got_tag)}, "
                                     f"model {tag}")
            assert got_up == (out is not None), (f"{name} packet {n}: handed_up {got_up}, "
                                                 f"model {out!r}")
            if out is not None:
                data, user = next(handed)
                assert user == want, f"{name} packet {n}: tuser differs from its tag"
                assert data == out, (f"{name} packet {n}: handed up {data.hex()}, "
                                     f"model {out.hex()}")
        assert next(handed, None) is None, f"the gateware handed up more {name} packets"

    def _compare_state(self, final):
        for name, value in final["counters"].items():
            assert value == self.model.counters[name], (
                f"{name}: gateware {value}, model {self.model.counters[name]}")
        for index, (seq, counts) in final["slots"].items():
            slot = self.model.slots[index]
            assert seq == slot.seq, f"slot {index}: sequence number {seq}, model {slot.seq}"
            assert counts == slot.counters, f"slot {index}: counters {counts}, model {slot.counters}"
