"""``ipchan esp process --backend verilator``: the gateware's ESP datapath in the Verilator process,
reached over the link's PACKET request, against the golden model (``--backend model``).

Every test here shares one cached Verilator build of the engine with the compact ESP datapath and
a 16-slot table (what the CLI builds for a file of at most 16 SAs with replay windows of at most
64): the first run on a machine builds it (a few minutes, see docs/simulation.md), later runs find
it in the cache.
"""

import json
import socket
import struct
import subprocess
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from ipchan.hw.contract import Direction, EngineParams, LinkOp, LinkStatus, Verdict
from ipchan.sim import verilator_build as vb
from ipchan.sw import link
from ipchan.sw.backends import open_engine
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.esp.cli import main
from ipchan.sw.esp.pcap import LINKTYPE_RAW, Record, pcap_bytes, read_pcap
from ipchan.sw.socket_transport import SimulationError, VerilatorTransport

#: What the CLI builds for the SAS file below (<= 16 SAs, windows <= 64).
PARAMS = EngineParams(n_entries=16)
PROFILE = "compact"

KEY_A = "11" * 16 + "a1a2a3a4"
KEY_B = "22" * 32 + "b1b2b3b4"
KEY_C = "33" * 32 + "c1c2c3c4"
KEY_D = "44" * 16 + "d1d2d3d4"
KEY_E = "55" * 16 + "e1e2e3e4"

# Outbound SAs and their inbound twins: both modes, IPv4 and IPv6 inside and outside, all four
# algorithms, AES-128 and -256, ESN across 2^32, an exhausted sequence number, windows 0..64.
SAS = f"""\
sas:
  - {{spi: 0x2001, direction: outbound, mode: transport, algorithm: aes-gcm-16, key: "{KEY_A}",
     src: 10.0.0.1, dst: 10.0.0.2, seq: 41}}
  - {{spi: 0x2002, direction: outbound, mode: tunnel, algorithm: aes-gmac, key: "{KEY_B}",
     src: "2001:db8:f::1", dst: "2001:db8:f::2", esn: true, seq: 0xfffffffe,
     selectors: [{{src: 10.9.0.0/16, dst: 10.8.0.0/16, proto: tcp}}]}}
  - {{spi: 0x2003, direction: outbound, mode: transport, algorithm: aes-gcm-8, key: "{KEY_C}",
     src: "2001:db8:1::1", dst: "2001:db8:1::2"}}
  - {{spi: 0x2004, direction: outbound, mode: transport, algorithm: aes-gcm-12, key: "{KEY_D}",
     src: 10.7.0.1, dst: 10.7.0.2, seq: 0xffffffff}}
  - {{spi: 0x2005, direction: outbound, mode: tunnel, algorithm: aes-gcm-12, key: "{KEY_E}",
     src: 192.0.2.1, dst: 192.0.2.2,
     selectors: [{{src: "2001:db8:2::/48", dst: "2001:db8:3::/48"}}]}}
  - {{spi: 0x2001, direction: inbound, mode: transport, algorithm: aes-gcm-16, key: "{KEY_A}",
     src: 10.0.0.1, dst: 10.0.0.2, replay_window: 32}}
  - {{spi: 0x2002, direction: inbound, mode: tunnel, algorithm: aes-gmac, key: "{KEY_B}",
     src: "2001:db8:f::1", dst: "2001:db8:f::2", esn: true, seq: 0xfffffffe, replay_window: 64}}
  - {{spi: 0x2003, direction: inbound, mode: transport, algorithm: aes-gcm-8, key: "{KEY_C}",
     src: "2001:db8:1::1", dst: "2001:db8:1::2", replay_window: 0}}
  - {{spi: 0x2005, direction: inbound, mode: tunnel, algorithm: aes-gcm-12, key: "{KEY_E}",
     src: 192.0.2.1, dst: 192.0.2.2, replay_window: 1}}
"""


def _fragment():
    p = IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=1, dport=2) / Raw(b"frag")
    return bytes(p)


def _bad_checksum():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"sum"))
    raw[10] ^= 0xFF
    return bytes(raw)


PLAIN = [
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"first"),
    IP(src="10.9.1.1", dst="10.8.1.1", tos=0xB8) / TCP(sport=5, dport=443) / Raw(b"tunnelled"),
    IP(src="10.9.1.1", dst="10.8.1.1") / TCP(sport=5, dport=80) / Raw(b"across 2^32"),
    IPv6(src="2001:db8:1::1", dst="2001:db8:1::2") / UDP(sport=7, dport=8) / Raw(b"six" * 20),
    IP(src="10.7.0.1", dst="10.7.0.2") / UDP(sport=5, dport=6) / Raw(b"exhausted"),
    IP(src="10.6.0.1", dst="10.6.0.2") / UDP(sport=5, dport=6) / Raw(b"no SA matches"),
    b"\x45\x00",                                           # no IP header to read
    IPv6(src="2001:db8:2::1", dst="2001:db8:3::1", tc=0x28) / UDP(sport=1, dport=2) / b"v6 in v4",
    _fragment(),                                           # transport mode refuses fragments
    _bad_checksum(),
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(bytes(range(256)) * 5),
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b""),
    IPv6(src="2001:db8:1::1", dst="2001:db8:1::2") / UDP(sport=7, dport=8) / Raw(b"x" * 1400),
]


def write_pcap(path, packets):
    blob = pcap_bytes(LINKTYPE_RAW, [Record(n, 0, bytes(p), len(bytes(p)))
                                     for n, p in enumerate(packets)])
    path.write_bytes(blob)
    return path


def run_cli(tmp_path, direction, pcap_in, backend, name):
    sas = tmp_path / "sas.yaml"
    sas.write_text(SAS)
    out, tags = tmp_path / f"{name}.pcap", tmp_path / f"{name}.jsonl"
    code = main(["esp", "process", "--sa", str(sas), "--direction", direction, "--in",
                 str(pcap_in), "--out", str(out), "--tags", str(tags), "--backend", backend])
    assert code == 0
    return out.read_bytes(), tags.read_text()


def verdicts(tags_text):
    return [json.loads(line)["verdict"] for line in tags_text.splitlines()]


@pytest.fixture(scope="module")
def esp_build():
    """The shared build (in the user's cache, where the CLI finds it)."""
    start = time.monotonic()
    build = vb.build_engine(PARAMS, esp=PROFILE)
    print(f"\nESP engine build: {'built in %.1f s' % build.seconds if build.built else 'cached'} "
          f"({time.monotonic() - start:.2f} s to find or make)")
    return build


def test_cli_verilator_matches_model_outbound_then_inbound(tmp_path, esp_build):
    plain = write_pcap(tmp_path / "plain.pcap", PLAIN)
    model_out, model_tags = run_cli(tmp_path, "outbound", plain, "model", "out-model")
    hw_out, hw_tags = run_cli(tmp_path, "outbound", plain, "verilator", "out-hw")
    assert verdicts(model_tags) == ["ok", "ok", "ok", "ok", "seq_overflow", "no_sa", "malformed",
                                    "ok", "malformed", "malformed", "ok", "ok", "ok"]
    assert hw_tags == model_tags
    assert hw_out == model_out

    # Back through the inbound SAs, with every inbound verdict.
    sealed = [r.data for r in read_pcap_bytes(model_out)]
    first = sealed[0]
    wrong_icv = bytearray(sealed[1])
    wrong_icv[-1] ^= 0x40
    unknown_spi = bytearray(first)
    unknown_spi[20:24] = (0x3999).to_bytes(4, "big")
    unknown_spi = bytes(IP(bytes(unknown_spi)))
    short_esp = bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=50) / Raw(first[20:40]))
    not_esp = bytes(PLAIN[0])
    trailing = first + b"\0"
    inbound = ([bytes(wrong_icv)] + sealed + [first, unknown_spi, short_esp, not_esp, trailing,
                                               b"", sealed[3]])
    pin = write_pcap(tmp_path / "sealed.pcap", inbound)
    model_out2, model_tags2 = run_cli(tmp_path, "inbound", pin, "model", "in-model")
    hw_out2, hw_tags2 = run_cli(tmp_path, "inbound", pin, "verilator", "in-hw")
    assert verdicts(model_tags2) == (["auth_fail"] + ["ok"] * len(sealed) +
                                     ["replay", "no_sa", "malformed", "malformed", "malformed",
                                      "malformed", "ok"])   # window 0: no replay check
    assert hw_tags2 == model_tags2
    assert hw_out2 == model_out2
    opened = [r.data for r in read_pcap_bytes(hw_out2)]
    wanted = [bytes(PLAIN[i]) for i in (0, 1, 2, 3, 7, 10, 11, 12, 3)]
    assert opened == wanted


def read_pcap_bytes(blob, _n=[0]):
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(blob)
        f.flush()
        return read_pcap(f.name).records


def _engines():
    hw = open_engine("verilator", PARAMS, esp=PROFILE)
    md = open_engine("model", PARAMS)
    key = bytes(range(20))
    for e in (hw, md):
        e.install(SaConfig(spi=0x1000, direction="outbound", mode="transport",
                           algorithm="aes-gcm-16", key=key))
        e.install(SaConfig(spi=0x1000, direction="inbound", mode="transport",
                           algorithm="aes-gcm-16", key=key))
        e.commit()
    return hw, md


def test_driver_packet_interface_is_one_on_both_backends(esp_build):
    """Engine.process_packet: the no_sa cases only the host can ask for (an inbound slot, a free
    slot, beyond the table), state the engine keeps between calls, and the counters."""
    hw, md = _engines()
    try:
        p = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"hi")
        requests = [(Direction.OUTBOUND, p, 0), (Direction.OUTBOUND, p, 1),
                    (Direction.OUTBOUND, p, 7), (Direction.OUTBOUND, p, 300),
                    ("outbound", p, 0)]
        got, want = hw.process_packets(requests), md.process_packets(requests)
        assert got == want
        assert [Verdict(t["verdict"]) for t, _ in want] == [Verdict.OK] + [Verdict.NO_SA] * 3 + \
            [Verdict.OK]
        for (_, sealed) in (want[0], want[4]):
            assert hw.process_packet("inbound", sealed) == md.process_packet("inbound", sealed)
        assert hw.process_packet("inbound", want[0][1]) == md.process_packet("inbound", want[0][1])
        assert hw.counters() == md.counters()
        assert hw.sa_counters(1) == md.sa_counters(1)
    finally:
        hw.close()
        md.close()


def test_packet_arguments_are_checked_before_anything_is_sent(esp_build):
    hw, md = _engines()
    try:
        for engine in (hw, md):
            with pytest.raises(ValueError, match=r"^Direction must be 'inbound' or 'outbound', "
                                                 r"not 'sideways'$"):
                engine.process_packet("sideways", b"")
            with pytest.raises(ValueError, match=r"^An outbound packet needs the sa_index of its "
                                                 r"SA$"):
                engine.process_packet(Direction.OUTBOUND, b"")
            with pytest.raises(ValueError, match=r"^An inbound packet names no SA \(its SPI does\), "
                                                 r"not sa_index 3$"):
                engine.process_packet(Direction.INBOUND, b"", 3)
            with pytest.raises(TypeError, match=r"^Packet must be bytes, not str$"):
                engine.process_packet(Direction.INBOUND, "x")
            with pytest.raises(ValueError, match=r"^Packet must be at most 65535 bytes, not "
                                                 r"65536$"):
                engine.process_packet(Direction.INBOUND, bytes(65536))
            with pytest.raises(ValueError, match=r"^SA index must be from 0 to 65535, not -1$"):
                engine.process_packet(Direction.OUTBOUND, b"", -1)
        # Nothing went out: the engines still agree, and the next packet gets sequence number 1.
        p = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"hi")
        (tag, _), = hw.process_packets([(Direction.OUTBOUND, p, 0)])
        assert tag["seq"] == 1
    finally:
        hw.close()
        md.close()


def test_cached_second_start_is_quick(esp_build):
    """The start of a cached ESP engine (measured, not asserted: see docs/simulation.md)."""
    t0 = time.monotonic()
    with VerilatorTransport(PARAMS, esp=PROFILE, progress=None) as t:
        engine = Engine(t)
        start = time.monotonic() - t0
        assert not t.build.built and t.build.indexed and t.build.key == esp_build.key
        assert engine.params == PARAMS
    print(f"\ncached start of the ESP engine to the driver ready: {start:.3f} s")


# --- The PACKET request on the wire --------------------------------------------------------------

def test_packet_frames():
    frame = link.encode_packet(Direction.OUTBOUND, b"abc", 5)
    assert frame == b"P\x01\x00\x05\x00\x03abc"
    assert link.decode_request(frame + b"C") == (LinkOp.PACKET, (1, 5), b"abc", 9)
    assert link.decode_request(frame[:8]) is None and link.decode_request(frame[:3]) is None
    tag = {"verdict": 4, "sa_valid": 1, "sa_index": 3, "sa_generation": 2, "version": 7,
           "seq": 1 << 40}
    answer = link.encode_packet_response(LinkStatus.OKAY, tag, True, b"xyz")
    assert len(answer) == 1 + link.TAG_BEAT_BYTES + 2 + 3
    assert link.decode_packet_response(answer) == (LinkStatus.OKAY, tag, True, b"xyz")
    assert link.decode_packet_response(b"\x02") == (LinkStatus.SLVERR, None, False, None)
    with pytest.raises(link.ProtocolError, match=r"does not know the PACKET request \(opcode "
                                                 r"0x50\): it answered UNKNOWN; it has no ESP "
                                                 r"datapath"):
        link.decode_packet_response(b"\xff")
    with pytest.raises(link.ProtocolError, match=r"announces 3 bytes of packet but has 2$"):
        link.decode_packet_response(answer[:-1])
    with pytest.raises(link.ProtocolError, match=r"handed up 3 bytes of a packet whose tag says "
                                                 r"it was not handed up"):
        link.decode_packet_response(link.encode_packet_response(0, tag, False, b"xyz"))
    with pytest.raises(ValueError, match=r"^Direction must be one of INBOUND \(0\), OUTBOUND "
                                         r"\(1\), not 2$"):
        link.encode_packet(2, b"")
    with pytest.raises(ValueError, match=r"^An inbound packet names no SA \(sa_index 0\), "
                                         r"not 4$"):
        link.encode_packet(Direction.INBOUND, b"", 4)
    with pytest.raises(TypeError, match=r"^PACKET requests are encoded by encode_packet"):
        link.encode_request(LinkOp.PACKET)


def start_harness(executable, path):
    proc = subprocess.Popen([str(executable), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == f"ipchan-sim: listening on {path}\n"
    return proc


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"the simulation closed the link after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_harness_refuses_bad_packet_requests_and_goes_on(esp_build, tmp_path):
    path = tmp_path / "s"
    proc = start_harness(esp_build.executable, path)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(path))
        bad_direction = struct.pack(">BBHH", LinkOp.PACKET, 2, 0, 3) + b"abc"
        inbound_with_sa = struct.pack(">BBHH", LinkOp.PACKET, 0, 1, 2) + b"WR"
        raw.sendall(bad_direction + inbound_with_sa + link.encode_cycles()
                    + link.encode_packet(Direction.INBOUND, b"\x45"))
        assert recv_exactly(raw, 2) == bytes([LinkStatus.SLVERR, LinkStatus.SLVERR])
        # The packets' bytes were never taken for requests (no 'W', no 'R' was answered) and no
        # clock ran for them: CYCLES still says 16, the reset.
        assert link.decode_response(LinkOp.CYCLES, recv_exactly(raw, 9)) == (0, link.RESET_CYCLES)
        head = recv_exactly(raw, 1 + link.TAG_BEAT_BYTES + 2)
        answer = link.decode_packet_response(head)
        assert answer.tag["verdict"] == Verdict.MALFORMED and answer.data is None
    assert proc.wait(timeout=30) == 0


def test_harness_names_a_truncated_packet_request(esp_build, tmp_path):
    path = tmp_path / "s"
    proc = start_harness(esp_build.executable, path)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(path))
        raw.sendall(link.encode_packet(Direction.INBOUND, bytes(100))[:16])
    assert proc.wait(timeout=30) == 5
    assert "ipchan-sim: the client left in the middle of a request: 16 of its 106 bytes came " \
           "(opcode 0x50)" in proc.stderr.read()


def test_engine_without_the_datapath_says_so():
    with VerilatorTransport(EngineParams()) as t:
        engine = Engine(t)
        with pytest.raises(link.ProtocolError, match=r"it answered UNKNOWN; it has no ESP "
                                                     r"datapath"):
            engine.process_packet(Direction.INBOUND, b"\x45" + bytes(30))
        # The whole frame was read and refused: the link is in step.
        assert engine.version() == 0

    class RegistersOnly:
        def __init__(self, inner):
            self.inner = inner

        def read(self, addr):
            return self.inner.read(addr)

        def write(self, addr, value):
            self.inner.write(addr, value)

        def close(self):
            pass

        def __repr__(self):
            return "<RegistersOnly>"

    engine = Engine(RegistersOnly(Engine.for_model(PARAMS).transport))
    with pytest.raises(TypeError, match=r"^<RegistersOnly> reaches no ESP datapath: packets need "
                                        r"the golden model or a Verilator simulation"):
        engine.process_packet(Direction.INBOUND, b"")
