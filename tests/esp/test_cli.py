"""``ipchan esp process`` end to end on the model backend, and its errors: a message naming the
file and the field on stderr, exit status 2, and no output (not even a temporary) left behind."""

import json
import os
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

from ipchan.sw.esp.cli import main
from ipchan.sw.esp.pcap import LINKTYPE_RAW, Record, pcap_bytes

from .helpers import scapy_decrypt, scapy_sa

KEY_A = "0x" + "11" * 16 + "a1a2a3a4"
KEY_B = "22" * 32 + "b1b2b3b4"
KEY_C = "33" * 16 + "c1c2c3c4"

SAS = f"""\
sas:
  - spi: 0x1001
    direction: outbound
    mode: transport
    algorithm: aes-gcm-12
    key: "{KEY_A}"
    src: 10.0.0.1
    dst: 10.0.0.2
    seq: 41
  - spi: 0x1002
    direction: outbound
    mode: tunnel
    algorithm: aes-gmac
    key: "{KEY_B}"
    src: 2001:db8:f::1
    dst: 2001:db8:f::2
    esn: true
    seq: 0xfffffffe
    selectors:
      - {{src: 10.9.0.0/16, dst: 10.8.0.0/16, proto: tcp, dst_port: 443}}
  - spi: 0x1001
    direction: inbound
    mode: transport
    algorithm: aes-gcm-12
    key: "{KEY_A}"
    src: 10.0.0.1
    dst: 10.0.0.2
    replay_window: 32
  - spi: 0x1002
    direction: inbound
    mode: tunnel
    algorithm: aes-gmac
    key: "{KEY_B}"
    src: 2001:db8:f::1
    dst: 2001:db8:f::2
    esn: true
    seq: 0xfffffffe
    replay_window: 1024
"""

PACKETS = [
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"first"),
    IP(src="10.9.1.1", dst="10.8.1.1") / TCP(sport=5, dport=443) / Raw(b"tunnelled"),
    IP(src="10.9.1.1", dst="10.8.1.1") / TCP(sport=5, dport=80) / Raw(b"no SA for this"),
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"second"),
    IP(src="10.9.1.1", dst="10.8.1.1") / TCP(sport=5, dport=443) / Raw(b"across 2^32"),
]


def run(tmp_path, direction, pcap_in, sas=SAS, backend="model", capsys=None):
    sa_file = tmp_path / "sas.yaml"
    sa_file.write_text(sas)
    out, tags = tmp_path / f"{direction}.pcap", tmp_path / f"{direction}.jsonl"
    argv = ["esp", "process", "--sa", str(sa_file), "--direction", direction, "--in",
            str(pcap_in), "--out", str(out), "--tags", str(tags)]
    if backend:
        argv += ["--backend", backend]
    code = main(argv)
    return code, out, tags


def read_tags(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("link", ["ether", "raw"])
def test_outbound_then_inbound(tmp_path, link):
    pin = tmp_path / "plain.pcap"
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p if link == "ether"
              else p for p in PACKETS]
    wrpcap(str(pin), frames)
    code, out, tags = run(tmp_path, "outbound", pin)
    assert code == 0
    t = read_tags(tags)
    assert [x["verdict"] for x in t] == ["ok", "ok", "no_sa", "ok", "ok"]
    assert [x["out"] for x in t] == [0, 1, None, 2, 3]
    assert [x["seq"] for x in t] == [42, 0xFFFFFFFF, 0, 43, 1 << 32]
    assert [x["in"] for x in t] == list(range(5))
    assert all(x["version"] == 1 for x in t)
    assert t[0]["sa_index"] == 0 and t[1]["sa_index"] == 1 and t[2]["sa_valid"] is False
    assert all(set(x) >= {"in", "verdict", "sa_index", "sa_generation", "version", "seq", "out"}
               for x in t)
    sealed = rdpcap(str(out))
    assert len(sealed) == 4
    # scapy opens what we sealed.
    ip_of = (lambda f: bytes(f[Ether].payload)) if link == "ether" else bytes
    key_a, key_b = bytes.fromhex(KEY_A[2:]), bytes.fromhex(KEY_B)
    assert scapy_decrypt(scapy_sa("aes-gcm-12", key_a, 0x1001), ip_of(sealed[0])) == \
        bytes(PACKETS[0])
    tunnel = IPv6(src="2001:db8:f::1", dst="2001:db8:f::2")
    assert scapy_decrypt(scapy_sa("aes-gmac", key_b, 0x1002, tunnel_header=tunnel, esn=True),
                         ip_of(sealed[3]), 1 << 32, esn=True) == bytes(PACKETS[4])
    if link == "ether":
        assert sealed[1][Ether].type == 0x86DD and sealed[0][Ether].type == 0x0800

    # ...and back through the inbound SAs, with a replay and a corrupted packet added.
    broken = bytearray(bytes(sealed[2]))
    broken[-1] ^= 1
    frames = [Ether(bytes(broken)) if link == "ether" else IP(bytes(broken))]
    frames += list(sealed) + [sealed[0]]
    pin2 = tmp_path / "sealed.pcap"
    wrpcap(str(pin2), frames)
    code, out2, tags2 = run(tmp_path, "inbound", pin2)
    assert code == 0
    t2 = read_tags(tags2)
    # A failed ICV does not move the window: the genuine packet 43 is accepted after it.
    assert [x["verdict"] for x in t2] == ["auth_fail", "ok", "ok", "ok", "ok", "replay"]
    assert [x["seq"] for x in t2] == [43, 42, 0xFFFFFFFF, 43, 1 << 32, 42]
    assert [x["out"] for x in t2] == [None, 0, 1, 2, 3, None]
    opened = [ip_of(f) for f in rdpcap(str(out2))]
    assert opened == [bytes(PACKETS[i]) for i in (0, 1, 3, 4)]


def test_tags_carry_packed_tag(tmp_path):
    from ipchan.hw.contract import unpack_tag
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS[:2])
    code, out, tags = run(tmp_path, "outbound", pin)
    for x in read_tags(tags):
        word = unpack_tag(int(x["tag"], 16))
        assert (word["sa_index"], word["seq"], word["version"]) == (x["sa_index"], x["seq"],
                                                                    x["version"])


def test_subprocess_and_exit_status(tmp_path):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS)
    (tmp_path / "sas.yaml").write_text(SAS)
    result = subprocess.run(
        [sys.executable, "-m", "ipchan.sw.esp.cli", "esp", "process", "--sa",
         str(tmp_path / "sas.yaml"), "--direction", "outbound", "--in", str(pin), "--out",
         str(tmp_path / "o.pcap"), "--tags", str(tmp_path / "t.jsonl"), "--backend", "model"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(read_tags(tmp_path / "t.jsonl")) == 5


def assert_nothing_left(tmp_path, keep=("sas.yaml", "in.pcap")):
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in keep)
    assert left == [], left


def test_verilator_is_the_default_backend_and_compact_the_default_profile():
    # Running it is tests/test_verilator_esp.py's job (it needs the cached Verilator build).
    import argparse
    from ipchan.sw.esp.cli import add_subcommands
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers())
    args = parser.parse_args(["esp", "process", "--sa", "s", "--direction", "inbound", "--in",
                              "i", "--out", "o", "--tags", "t"])
    assert (args.backend, args.profile) == ("verilator", "compact")


def sa_with(**fields):
    base = {"spi": 4096, "direction": "inbound", "mode": "transport", "algorithm": "aes-gcm-16",
            "key": '"' + KEY_C + '"', "src": "10.0.0.1", "dst": "10.0.0.2"}
    base.update(fields)
    lines = ["sas:"]
    for k, v in base.items():
        if v is not None:
            lines.append(("  - " if len(lines) == 1 else "    ") + f"{k}: {v}")
    return "\n".join(lines) + "\n"


BAD_YAML = [
    ("sas: [", "sas.yaml: line 1, column 7: not valid YAML: expected the node content"),
    ("- 1\n", "sas.yaml: expected a mapping with a 'sas' list at the top, not a list"),
    ("sa: []\n", "sas.yaml: sa: unknown key (the file holds only 'sas')"),
    ("sas: 3\n", "sas.yaml: sas: expected a list of SAs, not an integer (3)"),
    ("sas:\n  - 7\n", "sas.yaml: sas[0]: expected a mapping of SA fields, not an integer (7)"),
    (sa_with(key='"' + "ab" * 17 + '"'),
     "sas.yaml: sas[0].key: expected 20 or 36 bytes of hex, got 17 bytes"),
    (sa_with(key='"abc"'), "sas.yaml: sas[0].key: odd number of hex digits (3)"),
    (sa_with(key='"xyz1"'), "sas.yaml: sas[0].key: expected a hex string"),
    (sa_with(key="1234"), "sas.yaml: sas[0].key: expected a hex string, not an integer"),
    (sa_with(spi=7), "sas.yaml: sas[0].spi: SPI 7 is in the range 1..255 that IANA reserves"),
    (sa_with(spi='"seven"'), "sas.yaml: sas[0].spi: expected an integer, not 'seven'"),
    (sa_with(spi=None), "sas.yaml: sas[0].spi: missing"),
    (sa_with(direction="sideways"),
     "sas.yaml: sas[0].direction: expected one of inbound, outbound, not 'sideways'"),
    (sa_with(mode="tunel"), "sas.yaml: sas[0].mode: expected one of transport, tunnel, not 'tunel'"),
    (sa_with(algorithm="aes-cbc"), "sas.yaml: sas[0].algorithm: expected one of aes-gcm-8, "
                                   "aes-gcm-12, aes-gcm-16, aes-gmac, not 'aes-cbc'"),
    (sa_with(src="10.0.0.300"), "sas.yaml: sas[0].src: expected an IPv4 or IPv6 address, "
                                "not '10.0.0.300'"),
    (sa_with(dst="2001:db8::1"), "sas.yaml: sas[0].dst: IPv6 address, but src is IPv4"),
    (sa_with(esn="yes please"), "sas.yaml: sas[0].esn: expected true or false"),
    (sa_with(seq=1 << 32), "sas.yaml: sas[0].seq: expected an integer from 0 to 4294967295 "
                           "(without esn; with esn up to 2^64-1), not 4294967296"),
    (sa_with(seq=-1), "sas.yaml: sas[0].seq: expected an integer from 0 to 4294967295"),
    (sa_with(replay_window=2048),
     "sas.yaml: sas[0].replay_window: expected an integer from 0 to 1024, not 2048"),
    (sa_with(direction="outbound", replay_window=64),
     "sas.yaml: sas[0].replay_window: only inbound SAs have a replay window"),
    (sa_with(selectors="[{proto: tcp}]"), "sas.yaml: sas[0].selectors: selectors choose "
                                          "outbound SAs"),
    (sa_with(direction="outbound", selectors="[{proto: tcp, dst_port: 99-9}]"),
     "sas.yaml: sas[0].selectors[0].dst_port: range '99-9' is empty"),
    (sa_with(direction="outbound", selectors="[{proto: icmp, dst_port: 9}]"),
     "sas.yaml: sas[0].selectors[0].proto: protocol 1 has no ports"),
    (sa_with(direction="outbound", selectors="[{src: 10.0.0.0/33}]"),
     "sas.yaml: sas[0].selectors[0].src: expected an address or a prefix, not '10.0.0.0/33'"),
    (sa_with(direction="outbound", selectors="[{port: 9}]"),
     "sas.yaml: sas[0].selectors[0].port: unknown field"),
    (sa_with(lifetime=3), "sas.yaml: sas[0].lifetime: unknown field"),
    (sa_with() + sa_with()[5:], "sas.yaml: sas[1].spi: inbound SPI 0x00001000 is already used "
                                "by sas[0]"),
]


@pytest.mark.parametrize("text,message", BAD_YAML)
def test_bad_yaml(tmp_path, capsys, text, message):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS[:1])
    sa_file = tmp_path / "sas.yaml"
    sa_file.write_text(text)
    argv = ["esp", "process", "--sa", "sas.yaml", "--direction", "inbound", "--in", "in.pcap",
            "--out", "o.pcap", "--tags", "t.jsonl", "--backend", "model"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1
    assert_nothing_left(tmp_path)
    # Key material never appears in a message.
    assert KEY_C not in err and "abab" not in err


def test_key_never_in_messages(tmp_path, capsys):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS[:1])
    code, *_ = run(tmp_path, "inbound", pin, sas=sa_with(key='"' + KEY_C + 'zz"'))
    assert code == 2 and KEY_C not in capsys.readouterr().err


def test_sa_the_engine_cannot_hold(tmp_path, capsys):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS[:1])
    sas = "sas:\n" + "".join(
        f"  - {{spi: {0x1000 + i}, direction: outbound, mode: transport, algorithm: aes-gcm-16, "
        f"key: '{KEY_C}', src: 10.0.0.1, dst: 10.0.{i // 250}.{i % 250}}}\n" for i in range(257))
    code, *_ = run(tmp_path, "outbound", pin, sas=sas)
    err = capsys.readouterr().err
    assert code == 2
    assert "sas.yaml: sas[256]: the engine cannot hold this SA: SA table is full" in err
    assert_nothing_left(tmp_path)


BAD_PCAP = [
    (b"", "in.pcap: not a pcap file: 0 bytes is shorter than the 24-byte file header"),
    (b"hello, this is not a pcap file", "in.pcap: not a pcap file (magic number 68656c6c)"),
    (b"\x0a\x0d\x0d\x0a" + bytes(40), "in.pcap: pcapng is not supported; convert it with"),
    (pcap_bytes(LINKTYPE_RAW, [Record(0, 0, b"abc", 3)])[:-1],
     "in.pcap: packet 0 at byte 24: data truncated (2 of 3 bytes)"),
    (pcap_bytes(LINKTYPE_RAW, [Record(0, 0, b"abc", 3)]) + b"\0" * 5,
     "in.pcap: packet 1 at byte 43: record header truncated (5 of 16 bytes)"),
    (pcap_bytes(LINKTYPE_RAW, [])[:20] + (147).to_bytes(4, "little"),
     "in.pcap: link type 147 is not supported"),
    (None, "in.pcap: cannot read: No such file or directory"),
]


@pytest.mark.parametrize("blob,message", BAD_PCAP)
def test_bad_pcap(tmp_path, capsys, blob, message):
    pin = tmp_path / "in.pcap"
    if blob is not None:
        pin.write_bytes(blob)
    sa_file = tmp_path / "sas.yaml"
    sa_file.write_text(SAS)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["esp", "process", "--sa", "sas.yaml", "--direction", "inbound", "--in",
                     "in.pcap", "--out", "o.pcap", "--tags", "t.jsonl", "--backend", "model"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert_nothing_left(tmp_path)


def test_unwritable_output_leaves_nothing(tmp_path, capsys):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS)
    (tmp_path / "sas.yaml").write_text(SAS)
    missing = tmp_path / "no" / "such" / "dir" / "t.jsonl"
    code = main(["esp", "process", "--sa", str(tmp_path / "sas.yaml"), "--direction", "outbound",
                 "--in", str(pin), "--out", str(tmp_path / "o.pcap"), "--tags", str(missing),
                 "--backend", "model"])
    err = capsys.readouterr().err
    assert code == 2 and f"{missing}: cannot write: No such file or directory" in err
    assert_nothing_left(tmp_path)


def test_out_and_tags_must_differ(tmp_path, capsys):
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), PACKETS)
    (tmp_path / "sas.yaml").write_text(SAS)
    same = str(tmp_path / "x")
    code = main(["esp", "process", "--sa", str(tmp_path / "sas.yaml"), "--direction", "outbound",
                 "--in", str(pin), "--out", same, "--tags", same, "--backend", "model"])
    assert code == 2 and "--out and --tags name the same file" in capsys.readouterr().err
    assert_nothing_left(tmp_path)


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["esp", "process", "--sa", "x", "--direction", "sideways", "--in", "a", "--out",
              "b", "--tags", "c"])
    assert exc.value.code == 2
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_malformed_and_unreadable_packets_get_tags(tmp_path):
    """Packets the engine refuses still get one tag each, in order."""
    pin = tmp_path / "in.pcap"
    wrpcap(str(pin), [Raw(b"\x45\x00"), PACKETS[0], Raw(b"")], linktype=LINKTYPE_RAW)
    code, out, tags = run(tmp_path, "outbound", pin)
    assert code == 0
    assert [x["verdict"] for x in read_tags(tags)] == ["malformed", "ok", "malformed"]
    code, out, tags = run(tmp_path, "inbound", pin)
    assert [x["verdict"] for x in read_tags(tags)] == ["malformed", "malformed", "malformed"]
    assert len(rdpcap(str(out))) == 0
