"""SAS.yaml beyond the CLI: what is installed, and how outbound SAs are selected."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.packet import Raw

from ipchan.hw.contract import Direction, Mode, SlotState
from ipchan.sw.driver import Engine
from ipchan.sw.esp.sas_yaml import (SasError, engine_params_for, install_sas, load_sas,
                                    parse_sas, select_sa)

KEY = "'" + "44" * 36 + "'"

FILE = f"""\
sas:
  - {{spi: 0x2001, direction: outbound, mode: tunnel, algorithm: aes-gcm-16, key: {KEY},
      src: 192.0.2.1, dst: 192.0.2.2,
      selectors: [{{src: 10.1.0.0/16, dst: 10.2.0.0/16, proto: udp, dst_port: 5000-5010}},
                  {{src: 10.1.0.0/16, dst: 10.2.0.0/16, proto: icmp}}]}}
  - {{spi: 0x2002, direction: outbound, mode: tunnel, algorithm: aes-gmac, key: {KEY},
      src: 2001:db8::1, dst: 2001:db8::2, selectors: [{{dst: 2001:db8:2::/48}}]}}
  - {{spi: 0x2003, direction: outbound, mode: transport, algorithm: aes-gcm-8, key: {KEY},
      src: 10.1.0.1, dst: 10.2.0.1}}
  - {{spi: 0x2001, direction: inbound, mode: tunnel, algorithm: aes-gcm-16, key: {KEY},
      src: 192.0.2.2, dst: 192.0.2.1, esn: true, seq: 0x100000000, replay_window: 200}}
"""


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "sas.yaml"
    path.write_text(FILE)
    specs = parse_sas(path)
    engine = Engine.for_model(engine_params_for(specs))
    assert engine.params.window_max == 256
    return engine, install_sas(engine, specs, path)


def test_installed_with_one_commit(records):
    engine, recs = records
    assert engine.version() == 1
    assert [r.index for r in recs] == [0, 1, 2, 3]
    entries = list(engine.entries())
    assert [e.state for e in entries] == [SlotState.LIVE] * 4
    assert entries[3].direction == Direction.INBOUND and entries[3].esn
    assert entries[3].seq == 1 << 32 and entries[3].replay_window == 200
    assert entries[0].mode == Mode.TUNNEL and entries[0].replay_window == 0
    assert str(recs[1].dst) == "2001:db8::2"


@pytest.mark.parametrize("packet,spi", [
    (IP(src="10.1.3.4", dst="10.2.0.9") / UDP(dport=5005), 0x2001),
    (IP(src="10.1.3.4", dst="10.2.0.9") / UDP(dport=5011), None),
    (IP(src="10.1.3.4", dst="10.2.0.9") / ICMP(), 0x2001),
    (IP(src="10.1.0.1", dst="10.2.0.1") / UDP(dport=5005), 0x2001),   # first match wins
    (IP(src="10.1.0.1", dst="10.2.0.1") / TCP(dport=5005), 0x2003),   # default selector
    (IP(src="10.1.0.1", dst="10.2.0.1", frag=5, proto=17) / Raw(bytes(8)), 0x2003),
    (IP(src="10.1.3.4", dst="10.2.0.9", frag=5, proto=17) / Raw(bytes(8)), None),  # no ports
    (IPv6(src="::5", dst="2001:db8:2::7") / IPv6ExtHdrHopByHop() / TCP(), 0x2002),
    (IPv6(src="::5", dst="2001:db8:2::7") / IPv6ExtHdrFragment() / TCP(), 0x2002),
    (IPv6(src="::5", dst="2001:db8:3::7") / TCP(), None),
])
def test_selection(records, packet, spi):
    _, recs = records
    record, view = select_sa(recs, bytes(packet))
    assert view is not None
    assert (record.config.spi if record else None) == spi


def test_unreadable_packet_has_no_view(records):
    _, recs = records
    assert select_sa(recs, b"\x45\x00") == (None, None)


def test_failed_install_leaves_nothing_staged(tmp_path):
    path = tmp_path / "sas.yaml"
    path.write_text(FILE)
    engine = Engine.for_model()  # window_max 64: the inbound SA's 200 does not fit
    with pytest.raises(SasError, match=r"sas.yaml: sas\[3\].replay_window: 200 is larger than "
                                       r"this engine's maximum of 64"):
        load_sas(path, engine)
    assert engine.staged() == 0 and engine.version() == 0
    assert engine.occupancy() == (0, engine.params.n_entries)
