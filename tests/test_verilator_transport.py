"""The Verilator transport: link framing, the build cache, the socket harness, and the engine.

Most tests drive a small AXI4-Lite register file (16 read/write registers and a free-running
counter, behind hw/axil.py's RegisterBridge) so that the harness and the cache are tested on a
design that builds in seconds; the last tests run the real engine the same way.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ipchan.hw import axil, contract
from ipchan.hw.contract import LinkOp, LinkStatus
from ipchan.sim import verilator_build as vb
from ipchan.sw import link, transport
from ipchan.sw.socket_transport import SimulationError, SocketTransport, VerilatorTransport


N_REGS = 16
COUNTER = 4 * N_REGS  # address of the read-only cycle counter


class RegFileTop(wiring.Component):
    """``ipchan_engine`` with the engine's ports but only a register file inside.

    Registers 0..N_REGS-1 (byte addresses 0, 4, ...) read back what was written, byte strobes
    honoured; ``COUNTER`` counts clock cycles since reset; everything else answers DECERR.
    """

    def __init__(self, *, n_regs=N_REGS, tag=0):
        self.n_regs = n_regs
        self.tag = tag  # changes the design (the reset value of register 0) without changing it
        members = {f"s_axil_{name}": (In if member.flow == Out else Out)(member.shape)
                   for name, member in axil.Signature(addr_width=contract.ADDR_WIDTH)
                   .members.items()}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = axil.RegisterBridge(addr_width=contract.ADDR_WIDTH)
        for name, member in bridge.bus.signature.members.items():
            ours, theirs = getattr(self, f"s_axil_{name}"), getattr(bridge.bus, name)
            m.d.comb += (theirs.eq(ours) if member.flow == In else ours.eq(theirs))

        regs = [Signal(32, name=f"reg{i}", init=self.tag if i == 0 else 0)
                for i in range(self.n_regs)]
        counter = Signal(32)
        m.d.sync += counter.eq(counter + 1)
        mapped = bridge.addr < 4 * self.n_regs
        m.d.comb += bridge.w_err.eq(~mapped)
        with m.If(bridge.w_stb & mapped):
            with m.Switch(bridge.addr[2:]):
                for i, reg in enumerate(regs):
                    with m.Case(i):
                        for b in range(4):
                            with m.If(bridge.w_strb[b]):
                                m.d.sync += reg[8 * b:8 * b + 8].eq(bridge.w_data[8 * b:8 * b + 8])
        with m.If(bridge.r_stb):
            m.d.sync += bridge.r_err.eq(0)
            with m.Switch(bridge.addr[2:]):
                for i, reg in enumerate(regs):
                    with m.Case(i):
                        m.d.sync += bridge.r_data.eq(reg)
                with m.Case(self.n_regs):
                    m.d.sync += bridge.r_data.eq(counter)
                with m.Default():
                    m.d.sync += [bridge.r_data.eq(0), bridge.r_err.eq(1)]
        return m


def regfile_verilog(**kwargs):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return amaranth_verilog.convert(RegFileTop(**kwargs), name=vb.TOP, emit_src=False)


@pytest.fixture(scope="session")
def regfile():
    return regfile_verilog()


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory):
    """A build cache of the test session's own, so these tests always exercise a real build."""
    return tmp_path_factory.mktemp("verilator-cache")


@pytest.fixture(scope="session")
def regfile_build(regfile, sim_cache):
    return vb.build(regfile, cache_dir=sim_cache, progress=None)


@pytest.fixture
def sim(regfile, sim_cache, regfile_build):
    with VerilatorTransport(verilog=regfile, cache_dir=sim_cache, progress=None) as t:
        yield t


def start_harness(executable, path, *args):
    proc = subprocess.Popen([str(executable), str(path), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == f"ipchan-sim: listening on {path}\n"
    return proc


# --- Link framing --------------------------------------------------------------------------------

def test_request_frames_are_the_contracts():
    assert link.encode_write(0x014, 0x12345678) == b"W\x00\x14\x12\x34\x56\x78"
    assert link.encode_read(0xFFC) == b"R\x0f\xfc"
    assert link.encode_reset() == b"X"
    assert link.encode_cycles() == b"C"
    for op in LinkOp:
        if op == LinkOp.PACKET:
            continue  # its length is in its header: see tests/test_verilator_esp.py
        assert link.REQUEST_LENGTH[op] == len(link.encode_request(
            op, *{LinkOp.WRITE: (1, 2), LinkOp.READ: (1,)}.get(op, ())))


def test_decode_request_round_trips_and_waits_for_a_whole_frame():
    stream = (link.encode_write(0x40, 0xDEADBEEF) + link.encode_read(0x10) + link.encode_reset()
              + link.encode_cycles() + b"Z")
    offset, seen = 0, []
    while offset < len(stream):
        op, addr, data, length = link.decode_request(stream, offset)
        seen.append((op, addr, data))
        offset += length
    assert seen == [(LinkOp.WRITE, 0x40, 0xDEADBEEF), (LinkOp.READ, 0x10, None),
                    (LinkOp.RESET, None, None), (LinkOp.CYCLES, None, None), (ord("Z"), None, None)]
    assert link.decode_request(link.encode_write(1, 2)[:6]) is None
    assert link.decode_request(b"") is None


def test_responses_round_trip():
    assert link.decode_response(LinkOp.READ, link.encode_response(LinkOp.READ, 0, 0xCAFEF00D)) \
        == (LinkStatus.OKAY, 0xCAFEF00D)
    assert link.decode_response(LinkOp.CYCLES, link.encode_response(LinkOp.CYCLES, 0, 2**40 + 3)) \
        == (LinkStatus.OKAY, 2**40 + 3)
    assert link.decode_response(LinkOp.WRITE, b"\x03") == (LinkStatus.DECERR, None)
    assert link.encode_response(ord("Z"), LinkStatus.UNKNOWN) == b"\xff"


def test_bad_responses_are_protocol_errors():
    with pytest.raises(link.ProtocolError, match=r"does not know the WRITE request \(opcode "
                                                 r"0x57\): it answered UNKNOWN"):
        link.decode_response(LinkOp.WRITE, b"\xff")
    with pytest.raises(link.ProtocolError, match=r"answered READ with status 0x01, which is not a "
                                                 r"link status"):
        link.decode_response(LinkOp.READ, b"\x01\x00\x00\x00\x00")
    with pytest.raises(link.ProtocolError, match=r"The answer to READ must be 5 bytes, not 3"):
        link.decode_response(LinkOp.READ, b"\x00\x00\x00")


def test_bad_requests_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"^Address must be from 0 to 0xffff, not 65536$"):
        link.encode_read(0x10000)
    with pytest.raises(TypeError, match=r"^Address must be an integer, not True$"):
        link.encode_read(True)
    with pytest.raises(ValueError, match=r"^Data must be from 0 to 0xffffffff, not -1$"):
        link.encode_write(0, -1)
    with pytest.raises(TypeError, match=r"^Data must be an integer, not '1'$"):
        link.encode_write(0, "1")
    with pytest.raises(ValueError, match=r"^Link operation must be one of WRITE, READ, RESET, "
                                         r"CYCLES, PACKET, not 'Q'$"):
        link.encode_request("Q")
    with pytest.raises(TypeError, match=r"^RESET takes no address, not 4$"):
        link.encode_request(LinkOp.RESET, 4)
    with pytest.raises(ValueError, match=r"^Batch size must be a positive integer, not 0$"):
        link.LinkClient(None, None, max_batch=0)


# --- Build cache ---------------------------------------------------------------------------------

def test_build_key_follows_every_input(regfile):
    tool = vb.Verilator.find()
    key = vb.build_key(regfile, verilator=tool, compiler="c++ 1")
    assert key == vb.build_key(regfile, verilator=tool, compiler="c++ 1")
    others = {
        vb.build_key(regfile + "\n", verilator=tool, compiler="c++ 1"),
        vb.build_key(regfile, trace=True, verilator=tool, compiler="c++ 1"),
        vb.build_key(regfile, verilator=vb.Verilator(tool.root, "5.0"), compiler="c++ 1"),
        vb.build_key(regfile, verilator=tool, compiler="c++ 2"),
    }
    assert key not in others and len(others) == 4


def test_contract_header_spells_the_contract():
    header = vb.contract_header()
    for op in LinkOp:
        assert f"#define IPCHAN_LINK_OP_{op.name} 0x{int(op):02X}\n" in header
    for status in LinkStatus:
        assert f"#define IPCHAN_LINK_{status.name} 0x{int(status):02X}\n" in header
    assert f"#define IPCHAN_AXIL_ADDR_WIDTH {contract.ADDR_WIDTH}\n" in header


def test_second_construction_does_not_invoke_verilator(tmp_path, capfd):
    design = regfile_verilog(tag=1)
    first = vb.build(design, cache_dir=tmp_path)
    err = capfd.readouterr().err
    assert first.built
    assert f"ipchan: building the Verilator simulation of ipchan_engine (no tracing" in err
    assert f"into {first.directory}" in err
    assert f"ipchan: Verilator build finished in {first.seconds:.1f} s" in err
    # What a cache entry holds: what went in, and the executable.
    assert sorted(p.name for p in first.directory.iterdir()) == [
        "harness.cpp", "ipchan_contract.h", "ipchan_engine.v", "ipchan_sim", "manifest.json"]
    manifest = json.loads((first.directory / "manifest.json").read_text())
    assert sorted(manifest) == ["compiler", "flags", "harness_sha256", "key", "recipe", "top",
                                "trace", "verilator", "verilog_sha256"]
    assert manifest["key"] == first.key and manifest["verilator"] == vb.Verilator.find().version
    assert (first.directory / "ipchan_engine.v").read_text() == design
    before = first.executable.stat()

    # A Verilator that cannot run at all: any attempt to build would fail loudly.
    nowhere = vb.Verilator(root=tmp_path / "no-verilator", version=vb.Verilator.find().version)
    with VerilatorTransport(verilog=design, cache_dir=tmp_path, verilator=nowhere) as sim:
        assert sim.build.key == first.key and not sim.build.built
        sim.write(0, 5)
        assert sim.read(0) == 5
    assert capfd.readouterr().err == ""
    after = first.executable.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list((tmp_path / ".tmp").iterdir())

    # ... while a design it has not seen does need it.
    with pytest.raises(vb.VerilatorBuildError, match=r"Cannot run Verilator .*no-verilator"):
        vb.build(regfile_verilog(tag=2), cache_dir=tmp_path, verilator=nowhere, progress=None)


def test_builds_do_not_depend_on_when_or_where_they_ran(tmp_path):
    design = regfile_verilog(tag=5)
    a = vb.build(design, cache_dir=tmp_path / "a", progress=None)
    time.sleep(1.1)  # a timestamp with a resolution of seconds would now differ
    b = vb.build(design, cache_dir=tmp_path / "b", progress=None)
    assert a.built and b.built and a.key == b.key
    for name in sorted(p.name for p in a.directory.iterdir()):
        assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name


def test_failed_build_publishes_nothing(tmp_path):
    broken = "module ipchan_engine(input clk, input rst);\n  wire x = ;\nendmodule\n"
    with pytest.raises(vb.VerilatorBuildError) as info:
        vb.build(broken, cache_dir=tmp_path, progress=None)
    key = vb.build_key(broken)
    log = tmp_path / f"{key}.failed.log"
    assert f"full log in {log}" in str(info.value)
    assert "ipchan_engine.v:2" in str(info.value)  # the end of the log names the bad line
    assert log.is_file()
    assert not (tmp_path / key).exists()
    assert not list((tmp_path / ".tmp").iterdir())


def test_design_without_the_top_module_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"The Verilog has no module named 'ipchan_engine'"):
        vb.build("module other; endmodule\n", cache_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Verilog must be a string, not b'x'$"):
        vb.build(b"x", cache_dir=tmp_path)


def test_killed_build_leaves_no_broken_entry(tmp_path):
    design = regfile_verilog(tag=3)
    source = tmp_path / "design.v"
    source.write_text(design)
    cache = tmp_path / "cache"
    key = vb.build_key(design)
    proc = subprocess.Popen([sys.executable, "-m", "ipchan.sim.verilator_build", "--verilog",
                             str(source), "--cache", str(cache)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Kill the whole build (Python, Verilator, make, the compilers) once Verilator has begun.
        deadline = time.monotonic() + 60
        while not list(cache.glob(f".tmp/{key}-*/obj_dir/*.mk")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "Verilator never started"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (cache / key).exists()
    assert list(cache.glob(f".tmp/{key}-*"))  # the debris is there...
    again = vb.build(design, cache_dir=cache, progress=None)
    assert again.built and again.directory == cache / key
    assert not list(cache.glob(f".tmp/{key}-*"))  # ...and the next build cleared it


def test_concurrent_builds_of_one_design_build_once(tmp_path):
    design = regfile_verilog(tag=4)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "ipchan.sim.verilator_build", "--verilog",
                               "-", "--cache", str(cache)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [proc.communicate(design) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    key = vb.build_key(design)
    assert [out.strip() for out, _ in outs] == [str(cache / key / "ipchan_sim")] * 2
    errs = "".join(err for _, err in outs)
    assert errs.count("ipchan: Verilator build finished") == 1


# --- The harness over the socket -----------------------------------------------------------------

def test_registers_read_back_what_was_written(sim):
    rng = random.Random(7)
    values = [rng.getrandbits(32) for _ in range(N_REGS)]
    for i, value in enumerate(values):
        sim.write(4 * i, value)
    assert [sim.read(4 * i) for i in range(N_REGS)] == values
    assert sim.read_many(4 * i for i in range(N_REGS)) == values


def test_cycles_are_counted_exactly(sim):
    # The design's own counter and the harness's count agree on how long accesses take.
    v1, c1 = sim.read(COUNTER), sim.cycles()
    sim.write(0, 1)
    v2, c2 = sim.read(COUNTER), sim.cycles()
    assert v2 - v1 == c2 - c1 > 0
    assert sim.cycles() == c2  # asking costs no cycles


def test_reset_holds_reset_for_the_contract_cycles(sim):
    sim.write(8, 0x1234)
    before = sim.cycles()
    sim.reset()
    assert sim.cycles() - before == link.RESET_CYCLES
    assert sim.read(8) == 0
    assert sim.read(COUNTER) < 8  # the counter restarted too


def test_bus_errors_name_the_access_and_leave_the_link_usable(sim):
    sim.write(4, 99)
    with pytest.raises(link.BusError, match=r"^Register read of 0x100 answered DECERR \(no "
                                            r"register at that address\)$") as info:
        sim.read(0x100)
    assert isinstance(info.value, transport.BusError)
    assert (info.value.addr, info.value.resp, info.value.status) == (0x100, "DECERR",
                                                                     LinkStatus.DECERR)
    with pytest.raises(link.BusError, match=r"^Register write to 0x104 answered DECERR"):
        sim.write(0x104, 1)
    # Beyond the 12-bit port: refused, never wrapped onto register 1.
    with pytest.raises(link.BusError, match=r"^Register write to 0x1004 answered DECERR"):
        sim.write(0x1004, 7)
    assert sim.read(4) == 99


def test_pipelined_batches_answer_in_order(sim):
    answers = sim.transact([(LinkOp.WRITE, 0, 11), (LinkOp.READ, 0x200), (LinkOp.READ, 0),
                            (LinkOp.CYCLES,), (LinkOp.WRITE, 4, 22), (LinkOp.READ, 4)])
    assert [status for status, _ in answers] == [0, LinkStatus.DECERR, 0, 0, 0, 0]
    assert answers[2][1] == 11 and answers[5][1] == 22
    # Batches larger than the client's window still come back whole and in order.
    pairs = [(4 * (i % N_REGS), i) for i in range(5000)]
    sim.write_many(pairs)
    last = {addr: value for addr, value in pairs}
    assert sim.read_many(4 * i for i in range(N_REGS)) == [last[4 * i] for i in range(N_REGS)]
    with pytest.raises(link.BusError, match=r"^Register read of 0x200 answered DECERR"):
        sim.read_many([0, 0x200, 4])


def test_bad_request_in_a_batch_sends_nothing(sim):
    sim.write(0, 1)
    cycles = sim.cycles()
    with pytest.raises(ValueError, match=r"^Data must be from 0 to 0xffffffff, not 4294967296$"):
        sim.write_many([(0, 2), (4, 2**32)])
    assert sim.cycles() == cycles
    assert sim.read(0) == 1


def test_unknown_opcode_is_answered_and_the_stream_goes_on(regfile_build, tmp_path):
    path = tmp_path / "s"
    proc = start_harness(regfile_build.executable, path)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(path))
        raw.sendall(b"Z" + link.encode_cycles() + b"\x00" + link.encode_read(0))
        answer = b""
        while len(answer) < 1 + 9 + 1 + 5:
            chunk = raw.recv(64)
            assert chunk
            answer += chunk
    assert answer[0] == LinkStatus.UNKNOWN and answer[10] == LinkStatus.UNKNOWN
    assert link.decode_response(LinkOp.CYCLES, answer[1:10]) == (0, link.RESET_CYCLES)
    assert link.decode_response(LinkOp.READ, answer[11:]) == (0, 0)
    assert proc.wait(timeout=10) == 0
    assert not path.exists()


def test_socket_transport_reaches_a_kept_server(regfile_build, tmp_path):
    path = tmp_path / "kept.sock"
    proc = start_harness(regfile_build.executable, path, "--keep")
    try:
        with SocketTransport(path) as first:
            first.write(12, 0xABCD)
        with SocketTransport(path) as second:  # the same simulation, state kept
            assert second.read(12) == 0xABCD
            assert repr(second) == f"<SocketTransport {path}>"
        with pytest.raises(ValueError, match=r"^Transport is closed$"):
            second.read(12)
        # A second server on a live socket is refused; the first is untouched.
        other = subprocess.run([str(regfile_build.executable), str(path)], capture_output=True,
                               text=True, timeout=30)
        assert other.returncode == 2
        assert f"another simulation is already listening on {path}" in other.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not path.exists()
    with pytest.raises(SimulationError, match=rf"^Cannot connect to a simulation at {path}: "):
        SocketTransport(path)


def test_simulation_exits_when_the_client_leaves(regfile, sim_cache, regfile_build):
    t = VerilatorTransport(verilog=regfile, cache_dir=sim_cache, progress=None)
    proc, workdir = t._proc, Path(t.path).parent
    t.read(0)
    t.close()
    assert proc.returncode == 0
    assert not workdir.exists()
    t.close()  # closing twice is harmless


def test_sigterm_stops_the_simulation_cleanly(sim):
    sim.read(0)
    sim.terminate()
    sim._proc.wait(timeout=10)
    with pytest.raises(SimulationError, match=r"\(pid \d+\) exited with code 0 (before answering|"
                                              r"while we were sending a request); its stderr is "
                                              r"empty$"):
        sim.read(0)


def test_a_killed_simulation_is_named(sim):
    os.kill(sim.pid, signal.SIGKILL)
    with pytest.raises(SimulationError, match=r"ipchan_sim \(pid \d+\) was killed by SIGKILL "):
        sim.read(0)


def test_a_design_that_never_answers_ends_with_a_clear_error(regfile, sim_cache, regfile_build):
    # A bus timeout of one cycle is shorter than any access: the harness gives up on the first.
    with VerilatorTransport(verilog=regfile, cache_dir=sim_cache, bus_timeout=1,
                            progress=None) as t:
        with pytest.raises(SimulationError) as info:
            t.write(0x8, 1)
        assert t.returncode == 3
    assert "exited with code 3 before answering; the end of its stderr:\n" \
           "ipchan-sim: AXI4-Lite write at 0x008 got no response in 1 cycles" in str(info.value)


def test_harness_refuses_bad_arguments(regfile_build, tmp_path):
    exe = str(regfile_build.executable)
    cases = [
        ([], "no socket path given"),
        ([str(tmp_path / "s"), "--frobnicate"], "unknown option --frobnicate"),
        ([str(tmp_path / "s"), "--bus-timeout", "x"],
         "option --bus-timeout needs a non-negative number, not x"),
        ([str(tmp_path / ("x" * 120))], "longer than the 107 a Unix socket allows"),
        ([str(tmp_path / "s"), "--trace", str(tmp_path / "w.fst")],
         "this simulation was built without tracing"),
    ]
    for args, message in cases:
        result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, args
        assert message in result.stderr, args
    result = subprocess.run([exe, str(tmp_path / "s"), "--accept-timeout", "0.2"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 4
    assert "ipchan-sim: no client connected within 0.2 s" in result.stderr
    assert not (tmp_path / "s").exists()


def test_harness_idle_cycles_benchmark_runs(regfile_build):
    out = subprocess.run([str(regfile_build.executable), "--bench-cycles", "1000"],
                         capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert out[:2] == ["cycles", "1000"] and float(out[out.index("cycles_per_second") + 1]) > 0


def test_transport_argument_errors(regfile):
    with pytest.raises(TypeError, match=r"^Give either engine parameters or Verilog, not both "):
        VerilatorTransport(contract.EngineParams(), verilog=regfile)
    with pytest.raises(TypeError, match=r"^Parameters must be an EngineParams, not 16$"):
        vb.build_engine(16)


def test_waveform_on_request(regfile, sim_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPCHAN_WAVES", "1")
    lines = []
    with VerilatorTransport(verilog=regfile, cache_dir=sim_cache, progress=lines.append) as t:
        assert t.build.trace
        t.write(0, 0x55)
        assert t.read(0) == 0x55
        wave = t.trace_path
    assert wave.parent == tmp_path / "build" / "waves" and wave.suffix == ".fst"
    assert lines[-1] == f"ipchan: writing the waveform to {wave}"
    data = wave.read_bytes()
    # An FST file opens with its header block (type 0, 329 bytes) and names the design's signals
    # in its (compressed) hierarchy; a closed file also ends with a complete block.
    assert data[0] == 0 and int.from_bytes(data[1:9], "big") == 329 and len(data) > 400


# --- The real engine -----------------------------------------------------------------------------

def test_engine_answers_over_the_socket():
    params = contract.EngineParams()
    # The user's cache (as `ipchan demo` uses it): a first run builds, later ones start at once.
    with VerilatorTransport(params) as sim:
        reg = contract.register
        assert sim.read(reg("ID").addr) == contract.ID_MAGIC
        word = sim.read(reg("CONTRACT").addr)
        assert (reg("CONTRACT").field("MAJOR").get(word),
                reg("CONTRACT").field("MINOR").get(word)) == contract.CONTRACT_VERSION
        config0 = sim.read(reg("CONFIG0").addr)
        assert reg("CONFIG0").field("N_ENTRIES").get(config0) == params.n_entries
        assert reg("CONFIG0").field("VERSION_WIDTH").get(config0) == params.version_width
        sim.write(reg("SA_SPI").addr, 0x1000)
        assert sim.read(reg("SA_SPI").addr) == 0x1000
        sim.write(reg("SA_KEY0").addr, 0xDEADBEEF)
        assert sim.read(reg("SA_KEY0").addr) == 0  # keys are write-only
        assert sim.read_many([reg("ID").addr] * 3) == [contract.ID_MAGIC] * 3
    # The second construction finds the build through the source index, without regenerating
    # the Verilog, and never needs Verilator.
    nowhere = vb.Verilator(root=Path("/nonexistent/verilator"),
                           version=vb.Verilator.find().version)
    with VerilatorTransport(params, verilator=nowhere, progress=None) as again:
        assert again.build.key == sim.build.key and not again.build.built and again.build.indexed
        assert again.read(reg("ID").addr) == contract.ID_MAGIC
