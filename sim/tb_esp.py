"""cocotb testbench for the whole engine with its ESP datapath, in the cocotbext-axi manner.

The Verilog is ``ipchan.hw.verilog.engine_verilog(params, esp=profile)``. SAs are installed through
the host driver over AXI4-Lite (:mod:`ipchan.sim.cocotb_transport`) and, in lockstep, into a
golden-model engine (:class:`ipchan.sim.scoreboard.Twin`), whose
:class:`~ipchan.sw.esp.datapath.EspDatapathModel` is the scoreboard: packets go in on ``s_axis_in``
and ``s_axis_out`` (``tuser`` = the SA's slot) through cocotbext-axi's ``AxiStreamSource``, and
every packet handed up (its bytes, its ``tkeep``, the tag in ``tuser`` on every byte) and every tag
beat (``m_axis_*_tag``: the tag, then ``handed_up``) that ``AxiStreamSink`` receives must be the
model's, in order. At the end the per-verdict counters, global and per SA, must be the model's.

Run from pytest (``tests/test_esp_cocotb.py``) through cocotb's Python runner. The traffic tests
are crossed with packet sizes (``IPCHAN_ESP_SIZES``, the plaintext IP packet's length in bytes),
an idle generator on the two sources and a backpressure generator on the four sinks.
``bench_throughput`` runs only with ``IPCHAN_ESP_BENCH=1`` and writes its figures as JSON to
``IPCHAN_ESP_BENCH_OUT``.
"""

import collections
import itertools
import json
import logging
import os
import random
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotb.utils import get_time_from_sim_steps
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from ipchan.hw import contract
from ipchan.hw.contract import Direction, EngineParams, Verdict
from ipchan.hw.verilog import STREAM_PORTS
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.esp.datapath import EspDatapathModel
from ipchan.sw.esp.packet import build_ipv4, build_ipv6

from .cocotb_transport import run_driver
from .scoreboard import Mismatch, Twin
from .tb_engine import TB as _ControlTB


__all__ = ["TB", "Scoreboard", "check_tag_beat", "check_data", "cycle_pause"]

CLOCK_NS = 10
TAG_WIDTH = contract.tag_width()
SIZES = [int(s) for s in os.environ.get("IPCHAN_ESP_SIZES", "64,576,1500,41,333,1023").split(",")]


def cycle_pause():
    return itertools.cycle([1, 1, 1, 0])


# --- The comparison (kept as plain functions so a test can show that they fail) -----------------

def check_tag_beat(where, want_tag, want_handed_up, beat):
    """``beat`` (the integer on ``m_axis_*_tag``'s tdata) against the model's tag and handed_up."""
    got_tag, got_up = beat & ((1 << TAG_WIDTH) - 1), beat >> TAG_WIDTH
    want = contract.pack_tag(**want_tag)
    if got_tag != want:
        raise Mismatch(f"{where}: tag {contract.unpack_tag(got_tag)}, model {want_tag}")
    if got_up != int(want_handed_up):
        raise Mismatch(f"{where}: handed_up {got_up}, model {int(want_handed_up)}")


def check_data(where, want_out, want_tag, frame):
    """An uncompacted ``AxiStreamFrame`` from a data sink against the model's packet and tag."""
    n = len(frame.tdata)
    keep = list(frame.tkeep)
    if n % 16 or keep != [1] * (n - 16) + sorted(keep[n - 16:], reverse=True):
        raise Mismatch(f"{where}: tkeep is not all ones then a run from byte 0 of the last beat")
    kept = keep.count(1)
    got = bytes(frame.tdata[:kept])
    if got != want_out:
        diff = next((k for k in range(min(len(got), len(want_out))) if got[k] != want_out[k]),
                    min(len(got), len(want_out)))
        raise Mismatch(f"{where}: {len(got)} bytes handed up, model {len(want_out)}; first "
                       f"difference at byte {diff}: {got[diff:diff + 8].hex()} vs "
                       f"{want_out[diff:diff + 8].hex()}")
    want = contract.pack_tag(**want_tag)
    bad = [k for k, u in enumerate(frame.tuser) if u != want]
    if bad:
        raise Mismatch(f"{where}: tuser {contract.unpack_tag(frame.tuser[bad[0]])} at byte "
                       f"{bad[0]}, the tag is {want_tag}")


# --- Testbench ----------------------------------------------------------------------------------

class TB(_ControlTB):
    """The control TB (clock, reset, AXI4-Lite master, driver transport) plus the six streams."""

    STREAMS = STREAM_PORTS

    def __init__(self, dut):
        super().__init__(dut)
        # As for the AXI4-Lite bus: a four-state simulator starts the stream inputs at X, so they
        # are idled at once, and the cocotbext-axi endpoints (which sample the engine's outputs
        # every cycle) are made only once those outputs resolve after reset.
        for port in self.STREAMS:
            getattr(dut, f"{port}_{'tvalid' if port.startswith('s_') else 'tready'}").value = 0
        self.source = self.data = self.tags = None

    async def reset(self):
        await super().reset()
        if self.source is not None:
            return
        dut, clk, rst = self.dut, self.dut.clk, self.dut.rst
        outputs = [getattr(dut, f"{p}_{'tready' if p.startswith('s_') else 'tvalid'}")
                   for p in self.STREAMS]
        for _ in range(64):
            if all(o.value.is_resolvable for o in outputs):
                break
            await RisingEdge(clk)
        else:
            raise AssertionError("AXI4-Stream outputs never resolved after reset")
        # Quiet before they are made: each prints a banner and then one line per frame.
        for port in self.STREAMS:
            logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.WARNING)
        self.source = {Direction.INBOUND: AxiStreamSource(
                           AxiStreamBus.from_prefix(dut, "s_axis_in"), clk, rst),
                       Direction.OUTBOUND: AxiStreamSource(
                           AxiStreamBus.from_prefix(dut, "s_axis_out"), clk, rst)}
        self.data = {Direction.INBOUND: AxiStreamSink(
                         AxiStreamBus.from_prefix(dut, "m_axis_in_data"), clk, rst),
                     Direction.OUTBOUND: AxiStreamSink(
                         AxiStreamBus.from_prefix(dut, "m_axis_out_data"), clk, rst)}
        # The tag ports have neither tkeep nor tlast: one 165-bit "byte" per beat, a frame each.
        self.tags = {Direction.INBOUND: AxiStreamSink(
                         AxiStreamBus.from_prefix(dut, "m_axis_in_tag"), clk, rst, byte_lanes=1),
                     Direction.OUTBOUND: AxiStreamSink(
                         AxiStreamBus.from_prefix(dut, "m_axis_out_tag"), clk, rst, byte_lanes=1)}

    def set_stream_idle_generator(self, generator=None):
        for port in self.source.values():
            port.set_pause_generator(generator() if generator else None)

    def set_stream_backpressure_generator(self, generator=None):
        for port in (*self.data.values(), *self.tags.values()):
            port.set_pause_generator(generator() if generator else None)

    def twin(self):
        return Twin(Engine(self.transport), Engine.for_model(self.params))


class Scoreboard:
    """The model's answer for every packet sent, checked against what the sinks receive."""

    def __init__(self, tb, model_engine):
        self.tb = tb
        self.dp = EspDatapathModel(model_engine.transport.model)
        self.expected = {d: collections.deque() for d in Direction}
        self.sent = {d: 0 for d in Direction}
        self.checked = {d: 0 for d in Direction}

    async def send(self, direction, packet, index=None):
        """Send one packet to the DUT and to the model; returns the model's (out, tag)."""
        if direction == Direction.INBOUND:
            out, tag = self.dp.inbound(packet)
            frame = AxiStreamFrame(packet)
        else:
            out, tag = self.dp.outbound(packet, index)
            frame = AxiStreamFrame(packet, tuser=index)
        self.expected[direction].append((packet, out, tag))
        self.sent[direction] += 1
        await self.tb.source[direction].send(frame)
        return out, tag

    async def check(self, direction, timeout_ns):
        """Receive and check everything still expected on ``direction``; returns
        [(input, handed-up packet or None, tag)]."""
        name = direction.name.lower()
        results = []
        while self.expected[direction]:
            packet, out, tag = self.expected[direction].popleft()
            where = f"{name} packet {self.checked[direction]} ({len(packet)} bytes in)"
            beat = await with_timeout(self.tb.tags[direction].recv(), timeout_ns, "ns")
            check_tag_beat(where, tag, out is not None, beat.tdata[0])
            if out is not None:
                frame = await with_timeout(self.tb.data[direction].recv(compact=False),
                                           timeout_ns, "ns")
                check_data(where, out, tag, frame)
            self.checked[direction] += 1
            results.append((packet, out, tag))
        return results

    async def drain(self, timeout_ns):
        """Check both directions, then that nothing more comes out."""
        got = {}
        for d in Direction:
            got[d] = await self.check(d, timeout_ns)
        await ClockCycles(self.tb.dut.clk, 50)
        for d in Direction:
            extra = (self.tb.tags[d].count(), self.tb.data[d].count())
            if extra != (0, 0):
                raise Mismatch(f"{d.name.lower()}: {extra[0]} more tags and {extra[1]} more "
                               f"packets than packets sent")
        return got


def timeout_for(size, generators):
    """Generous simulated time for one packet of ``size`` bytes to come out (compact GCM needs
    about one clock per plaintext bit; each pause generator stalls 3 clocks of 4)."""
    return CLOCK_NS * (4000 + 4 * size) * (4 if generators else 1) * 4


# --- Traffic ------------------------------------------------------------------------------------

def plain_packet(family, size, seed):
    """A UDP-in-IP plaintext packet of exactly ``size`` bytes (random payload from ``seed``)."""
    rng = random.Random(seed)
    if family == 4:
        return build_ipv4("10.1.0.1", "10.2.0.2", 17, rng.randbytes(size - 20), ident=seed)
    return build_ipv6("2001:db8:1::1", "2001:db8:2::2", 17, rng.randbytes(size - 40))


#: The SA configurations of the traffic test: (name, mode, algorithm, key bytes, ESN, endpoints).
PROFILES = (
    ("transport-gcm16", "transport", "aes-gcm-16", 16, False, None),
    ("tunnel6-gmac", "tunnel", "aes-gmac", 32, False, ("2001:db8::a", "2001:db8::b")),
    ("tunnel4-gcm12-esn", "tunnel", "aes-gcm-12", 16, True, ("192.0.2.1", "192.0.2.2")),
    ("transport-gcm8", "transport", "aes-gcm-8", 32, False, None),
)
#: ESN SAs start here, so their packets cross from 2^32-1 to 2^32.
ESN_START = (1 << 32) - 3


class Traffic:
    """The DUT's SA table and a peer (golden model) that seals the packets the DUT receives.

    For each of :data:`PROFILES` the DUT holds an outbound SA and an inbound SA with one key and
    SPI (the outbound round trip) and a second inbound SA whose sender is the peer. Plus an
    outbound SA one number short of the end of its sequence space."""

    def __init__(self, tb):
        self.tb = tb
        self.peer = Engine.for_model(EngineParams(n_entries=16))
        self.peer_dp = EspDatapathModel(self.peer.transport.model)
        self.sas = []         # dicts: name, out (slot), rt_in (slot), in (slot), peer (slot)

    def setup(self, twin):
        """Blocking: install everything (run through run_driver)."""
        rng = random.Random(4303)
        for k, (name, mode, alg, key_len, esn, ends) in enumerate(PROFILES):
            key = rng.randbytes(key_len + 4)
            src, dst = ends if ends else (None, None)
            start = ESN_START if esn else 0
            common = dict(mode=mode, algorithm=alg, key=key, esn=esn, seq=start)
            spi = 0x1000 + 0x100 * k
            out = twin.call("install", SaConfig(spi=spi, direction="outbound", src=src, dst=dst,
                                                **common))
            rt_in = twin.call("install", SaConfig(spi=spi, direction="inbound",
                                                  replay_window=64, **common))
            peer_key = rng.randbytes(key_len + 4)
            common["key"] = peer_key
            inb = twin.call("install", SaConfig(spi=spi + 1, direction="inbound",
                                                replay_window=32 if k % 2 else 64, **common))
            peer = self.peer.install(SaConfig(spi=spi + 1, direction="outbound", src=src,
                                              dst=dst, **common))
            self.sas.append(dict(name=name, mode=mode, out=out.index, rt_in=rt_in.index,
                                 inb=inb.index, peer=peer.index))
        self.last = twin.call("install", SaConfig(
            spi=0x2000, direction="outbound", mode="transport", algorithm="aes-gcm-16",
            key=rng.randbytes(20), seq=(1 << 32) - 2))
        # A peer SA the DUT does not know (no_sa), and one whose SPI the DUT holds outbound only.
        self.stranger = self.peer.install(SaConfig(
            spi=0x7777, direction="outbound", mode="transport", algorithm="aes-gcm-16",
            key=rng.randbytes(20)))
        self.wrong_way = self.peer.install(SaConfig(
            spi=0x2000, direction="outbound", mode="transport", algorithm="aes-gcm-16",
            key=rng.randbytes(20)))
        twin.call("commit")
        self.peer.commit()

    def seal(self, packet, peer_index):
        out, tag = self.peer_dp.outbound(packet, peer_index)
        assert out is not None, f"the peer refused to seal: {tag}"
        return out


async def send_traffic(tb, sb, traffic, size):
    """Phase 1 of the traffic test: every verdict in both directions. Returns the outbound
    plaintexts sent to SAs that have an inbound twin, for the round trip."""
    round_trip = []

    async def outbound():
        n = 0
        for sa in traffic.sas:
            for family in (4, 6):
                plain = plain_packet(family, size, n)
                n += 1
                out, tag = await sb.send(Direction.OUTBOUND, plain, sa["out"])
                assert tag["verdict"] == Verdict.OK, (sa["name"], tag)
                round_trip.append((sa, plain, out))
        plain = plain_packet(4, size, 99)
        # no_sa: an inbound SA's slot, a free slot; malformed: a wrong IPv4 checksum.
        for index, verdict in ((traffic.sas[0]["inb"], Verdict.NO_SA),
                               (tb.params.n_entries - 1, Verdict.NO_SA)):
            assert (await sb.send(Direction.OUTBOUND, plain, index))[1]["verdict"] == verdict
        broken = bytearray(plain)
        broken[10] ^= 0x01
        tag = (await sb.send(Direction.OUTBOUND, bytes(broken), traffic.sas[0]["out"]))[1]
        assert tag["verdict"] == Verdict.MALFORMED, tag
        # The last sequence number, then seq_overflow.
        for verdict in (Verdict.OK, Verdict.SEQ_OVERFLOW):
            tag = (await sb.send(Direction.OUTBOUND, plain, traffic.last.index))[1]
            assert tag["verdict"] == verdict, tag

    async def inbound():
        n = 100
        for sa in traffic.sas:
            sealed = []
            for family in (4, 6, 4):
                sealed.append(traffic.seal(plain_packet(family, size, n), sa["peer"]))
                n += 1
            for packet in sealed[:2]:
                assert (await sb.send(Direction.INBOUND, packet))[1]["verdict"] == Verdict.OK
            forged = bytearray(sealed[2])
            forged[-20] ^= 0x40          # in the ciphertext or ICV
            tag = (await sb.send(Direction.INBOUND, bytes(forged)))[1]
            assert tag["verdict"] == Verdict.AUTH_FAIL, (sa["name"], tag)
            tag = (await sb.send(Direction.INBOUND, sealed[0]))[1]
            assert tag["verdict"] == Verdict.REPLAY, (sa["name"], tag)
            # The genuine third packet still gets in after its forgery.
            assert (await sb.send(Direction.INBOUND, sealed[2]))[1]["verdict"] == Verdict.OK
        plain = plain_packet(4, size, 199)
        for peer_index in (traffic.stranger.index, traffic.wrong_way.index):
            tag = (await sb.send(Direction.INBOUND, traffic.seal(plain, peer_index)))[1]
            assert tag["verdict"] == Verdict.NO_SA, tag
        good = traffic.seal(plain_packet(4, size, 200), traffic.sas[0]["peer"])
        bad_checksum = bytearray(good)
        bad_checksum[10] ^= 0x80
        # The ESP header and 4 bytes of IV: refused after the lookup, so the SA counts it.
        truncated = build_ipv4("192.0.2.9", "192.0.2.8", 50, good[20:20 + 12])
        for packet in (bytes(bad_checksum), good[:-1], truncated):
            tag = (await sb.send(Direction.INBOUND, packet))[1]
            assert tag["verdict"] == Verdict.MALFORMED, tag

    # Both directions at once: they share nothing but the table, which nobody changes now.
    tasks = [cocotb.start_soon(outbound()), cocotb.start_soon(inbound())]
    for task in tasks:
        await task
    return round_trip


async def check_counters(twin, sb, used_slots):
    """Global and per-SA counters, DUT against model, over AXI4-Lite."""
    def read():
        got = twin.call("counters")
        per_sa = {i: twin.call("sa_counters", i) for i in used_slots}
        return got, per_sa
    got, per_sa = await run_driver(read)
    # Twin.call already compared DUT and model; also the model's own view of the datapath.
    for (d, v), name in contract.VERDICT_COUNTERS.items():
        assert got[name[4:].lower()] == sb.dp.counters[(d, v)], name
    return got, per_sa


async def start(dut, idle=None, backpressure=None):
    tb = TB(dut)
    await tb.reset()
    tb.set_stream_idle_generator(idle)
    tb.set_stream_backpressure_generator(backpressure)
    return tb


@cocotb.test()
@cocotb.parametrize(size=SIZES, idle=[None, cycle_pause], backpressure=[None, cycle_pause])
async def test_traffic(dut, size, idle, backpressure):
    """Both directions, both modes, IPv4 and IPv6 inside and outside, all four algorithms, every
    verdict (inbound ok/auth_fail/replay/no_sa/malformed; outbound ok/no_sa/malformed/
    seq_overflow), ESN across 2^32; then the outbound round trip: what outbound produced goes back
    inbound and comes out as the original. Counters, global and per SA, at the end."""
    tb = await start(dut, idle, backpressure)
    twin = await run_driver(tb.twin)
    traffic = Traffic(tb)
    await run_driver(traffic.setup, twin)
    sb = Scoreboard(tb, twin.model)
    timeout = timeout_for(size, idle or backpressure)

    # The sinks queue what arrives while the sources are still sending.
    round_trip = await send_traffic(tb, sb, traffic, size)
    await sb.drain(timeout)

    # Phase 2: the round trip, through the DUT's inbound twins.
    originals = []
    for sa, plain, sealed in round_trip:
        out, tag = await sb.send(Direction.INBOUND, sealed)
        assert tag["verdict"] == Verdict.OK and tag["sa_index"] == sa["rt_in"], (sa["name"], tag)
        assert out == plain, f"{sa['name']}: the model's round trip lost the packet"
        originals.append(plain)
    results = (await sb.drain(timeout))[Direction.INBOUND]
    assert [out for _, out, _ in results] == originals

    used = sorted({s[k] for s in traffic.sas for k in ("out", "rt_in", "inb")} |
                  {traffic.last.index})
    counters, per_sa = await check_counters(twin, sb, used)
    for name in ("in_ok", "in_auth_fail", "in_replay", "in_no_sa", "in_malformed", "out_ok",
                 "out_no_sa", "out_malformed", "out_seq_overflow"):
        assert counters[name] > 0, f"the traffic never produced {name}"
    dut._log.info("size %d: %d inbound and %d outbound packets agreed with the model; "
                  "counters %s", size, sb.checked[Direction.INBOUND],
                  sb.checked[Direction.OUTBOUND],
                  {k: v for k, v in counters.items() if k.startswith(("in_", "out_"))})


@cocotb.test()
async def test_scoreboard_catches_one_byte(dut):
    """The comparison is not vacuous: a real packet and its tag pass, and the same with one byte
    of the expected packet, or one bit of the expected tag, changed does not."""
    tb = await start(dut)
    twin = await run_driver(tb.twin)
    traffic = Traffic(tb)
    await run_driver(traffic.setup, twin)
    sb = Scoreboard(tb, twin.model)
    sa = traffic.sas[0]
    out, tag = await sb.send(Direction.OUTBOUND, plain_packet(4, 100, 1), sa["out"])
    sb.expected[Direction.OUTBOUND].clear()        # received and compared by hand below
    beat = (await with_timeout(tb.tags[Direction.OUTBOUND].recv(), 10 ** 6, "ns")).tdata[0]
    frame = await with_timeout(tb.data[Direction.OUTBOUND].recv(compact=False), 10 ** 6, "ns")
    check_tag_beat("genuine", tag, True, beat)
    check_data("genuine", out, tag, frame)
    wrong_byte = bytearray(out)
    wrong_byte[len(out) // 2] ^= 0x01
    wrong_tag = dict(tag, seq=tag["seq"] + 1)
    for name, check in (
            ("one byte", lambda: check_data("corrupted", bytes(wrong_byte), tag, frame)),
            ("one byte short", lambda: check_data("corrupted", out[:-1], tag, frame)),
            ("tuser", lambda: check_data("corrupted", out, wrong_tag, frame)),
            ("tag beat", lambda: check_tag_beat("corrupted", wrong_tag, True, beat)),
            ("handed_up", lambda: check_tag_beat("corrupted", tag, False, beat))):
        try:
            check()
        except Mismatch as exc:
            dut._log.info("%s: caught: %s", name, exc)
        else:
            raise AssertionError(f"the scoreboard did not notice a changed {name}")


# --- Throughput ---------------------------------------------------------------------------------

BENCH = os.environ.get("IPCHAN_ESP_BENCH") == "1"


@cocotb.test(skip=not BENCH)
async def bench_throughput(dut):
    """Back-to-back packets with no stalls: clocks between consecutive tags (the steady-state cost
    of a packet, since each direction handles one at a time) for IPv4 transport, AES-128
    GCM-16, 64/576/1500-byte plaintext packets, inbound and outbound."""
    tb = await start(dut)
    twin = await run_driver(tb.twin)

    def setup():
        out = twin.call("install", SaConfig(spi=0x3000, direction="outbound", mode="transport",
                                            algorithm="aes-gcm-16", key=bytes(range(20))))
        inb = twin.call("install", SaConfig(spi=0x3001, direction="inbound", mode="transport",
                                            algorithm="aes-gcm-16", key=bytes(range(20)),
                                            replay_window=64))
        twin.call("commit")
        return out.index, inb.index
    out_index, _ = await run_driver(setup)
    peer = Engine.for_model(EngineParams(n_entries=4))
    peer_out = peer.install(SaConfig(spi=0x3001, direction="outbound", mode="transport",
                                     algorithm="aes-gcm-16", key=bytes(range(20))))
    peer.commit()
    peer_dp = EspDatapathModel(peer.transport.model)
    sb = Scoreboard(tb, twin.model)
    count = int(os.environ.get("IPCHAN_ESP_BENCH_COUNT", "8"))
    rows = []
    for direction in (Direction.INBOUND, Direction.OUTBOUND):
        for size in (64, 576, 1500):
            packets = []
            for n in range(count):
                plain = plain_packet(4, size, n)
                packets.append(plain if direction == Direction.OUTBOUND else
                               peer_dp.outbound(plain, peer_out.index)[0])
            wall = time.monotonic()
            for packet in packets:
                tag = (await sb.send(direction, packet, out_index))[1]
                assert tag["verdict"] == Verdict.OK, tag
            # Tag arrival times, taken as the sink receives them (before the scoreboard drains).
            ends = []
            for _ in packets:
                beat = await with_timeout(tb.tags[direction].recv(), 10 ** 7, "ns")
                ends.append(beat.sim_time_end)
                packet, out, want = sb.expected[direction].popleft()
                check_tag_beat(f"bench {size}", want, True, beat.tdata[0])
                frame = await with_timeout(tb.data[direction].recv(compact=False), 10 ** 7, "ns")
                check_data(f"bench {size}", out, want, frame)
            wall = time.monotonic() - wall
            # sim_time_end is in simulator steps.
            span_ns = get_time_from_sim_steps(ends[-1] - ends[0], "ns")
            clocks = span_ns / (count - 1) / CLOCK_NS
            rows.append(dict(direction=direction.name.lower(), size=size,
                             wire=len(packets[0]) if direction == Direction.INBOUND
                             else len(out), clocks=clocks, bits_per_clock=8 * size / clocks,
                             sim_packets_per_s=count / wall))
            dut._log.info("%s", rows[-1])
    path = os.environ.get("IPCHAN_ESP_BENCH_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
