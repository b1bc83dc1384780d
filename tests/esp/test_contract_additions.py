"""The contract's datapath additions (contract 1.1) on the model and the driver: packet counters
per verdict and per SA, tunnel endpoints in the slot, max_packet and CONFIG2."""

import ipaddress

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from ipchan.hw import contract
from ipchan.hw.contract import Direction, EngineParams, Verdict
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.regs import ADDR, FIELD

from .helpers import Rig

V4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=9) / Raw(b"payload!"))


def test_counter_registers_cover_the_verdicts():
    assert set(contract.VERDICT_COUNTERS) == {
        (Direction.INBOUND, v) for v in (Verdict.OK, Verdict.AUTH_FAIL, Verdict.REPLAY,
                                         Verdict.NO_SA, Verdict.MALFORMED)} | {
        (Direction.OUTBOUND, v) for v in (Verdict.OK, Verdict.NO_SA, Verdict.MALFORMED,
                                          Verdict.SEQ_OVERFLOW)}
    assert set(contract.SA_VERDICT_COUNTERS) == set(Verdict) - {Verdict.NO_SA}
    assert [contract.register(n).addr for n in contract.VERDICT_COUNTERS.values()] == \
        list(range(0x118, 0x13C, 4))
    assert contract.CONTRACT_VERSION == (1, 1)


def test_max_packet_checked_and_reported():
    with pytest.raises(ValueError, match=r"Maximum packet size must be an integer from 64 to "
                                         r"65535, not 63"):
        EngineParams(max_packet=63)
    with pytest.raises(ValueError, match=r"not True"):
        EngineParams(max_packet=True)
    engine = Engine.for_model(EngineParams(n_entries=4, max_packet=1500))
    assert engine.params.max_packet == 1500
    word = engine.transport.read(ADDR.CONFIG2)
    assert FIELD.CONFIG2.MAX_EXT_HEADERS.get(word) == contract.IPV6_MAX_EXT_HEADERS == 4


def test_packets_beyond_max_packet_are_malformed():
    rig = Rig(EngineParams(n_entries=4, max_packet=128))
    out_idx, in_idx, key = rig.pair(spi=0x1000)
    fits = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(128 - 28 - 36)))
    out, tag = rig.dp.outbound(fits, out_idx)
    assert tag["verdict"] == Verdict.OK and len(out) == 128
    assert rig.dp.inbound(out)[1]["verdict"] == Verdict.OK
    bigger = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(128 - 28 - 32)))
    assert rig.dp.outbound(bigger, out_idx)[1]["verdict"] == Verdict.MALFORMED   # result 129+
    assert rig.dp.inbound(out + b"\0")[1]["verdict"] == Verdict.MALFORMED          # 129 bytes
    assert rig.dp.sa_counters(out_idx)[Verdict.MALFORMED] == 1
    assert rig.dp.sa_counters(in_idx)[Verdict.MALFORMED] == 0   # refused before the lookup


def test_counters_live_in_the_engine_and_read_through_the_driver():
    rig = Rig(EngineParams(n_entries=4))
    out_idx, in_idx, key = rig.pair(spi=0x1000)
    packet = rig.dp.outbound(V4, out_idx)[0]
    rig.dp.inbound(packet)
    rig.dp.inbound(packet)
    counters = rig.engine.counters()
    assert (counters["in_ok"], counters["in_replay"], counters["out_ok"]) == (1, 1, 1)
    assert rig.engine.sa_counters(in_idx) == {Verdict.OK: 1, Verdict.AUTH_FAIL: 0,
                                              Verdict.REPLAY: 1, Verdict.MALFORMED: 0,
                                              Verdict.SEQ_OVERFLOW: 0}
    rig.engine.delete(in_idx)
    rig.engine.commit()
    assert set(rig.engine.sa_counters(in_idx).values()) == {0}       # zeroized with the slot
    assert rig.engine.counters()["in_ok"] == 1                      # the global ones stay


def test_endpoints_in_sa_config():
    cfg = SaConfig(spi=0x1000, direction="outbound", mode="tunnel", algorithm="aes-gmac",
                   key=bytes(20), src="2001:db8::1", dst=ipaddress.ip_address("2001:db8::2"))
    assert cfg.outer6 and cfg.src == ipaddress.ip_address("2001:db8::1")
    assert "src=2001:db8::1" in repr(cfg)
    with pytest.raises(ValueError, match="Tunnel endpoint dst must be an IPv4 or IPv6 address, "
                                         "not 'nowhere'"):
        SaConfig(spi=0x1000, direction="outbound", mode="tunnel", algorithm="aes-gmac",
                 key=bytes(20), src="192.0.2.1", dst="nowhere")
    engine = Engine.for_model(EngineParams(n_entries=4))
    ref = engine.install(cfg)
    info = engine.read_entry(ref.index)
    assert (info.src, info.dst) == (cfg.src, cfg.dst)
    # The next SA without endpoints does not inherit these from the staging registers.
    ref2 = engine.install(SaConfig(spi=0x1001, direction="outbound", mode="transport",
                                   algorithm="aes-gmac", key=bytes(20)))
    info2 = engine.read_entry(ref2.index)
    assert (str(info2.src), str(info2.dst)) == ("0.0.0.0", "0.0.0.0")
