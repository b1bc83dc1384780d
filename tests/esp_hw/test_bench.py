"""Cycles per packet of the inbound and outbound datapaths in Amaranth's simulator (``pytest -m bench -s
tests/esp_hw/test_bench.py``): packets sent back to back with no valid/ready gaps; the figure
is clocks between consecutive tags, the datapath's steady-state cost per packet."""

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from ipchan.hw.contract import EngineParams, Verdict

from .hwrig import HwRig


@pytest.mark.bench
@pytest.mark.parametrize("profile", ["compact", "fast"])
@pytest.mark.parametrize("algorithm", ["aes-gcm-16", "aes-gmac"])
@pytest.mark.parametrize("size", [64, 576, 1500])
def test_inbound_cycles_per_packet(profile, algorithm, size):
    rig = HwRig(EngineParams(n_entries=4, max_packet=2048), profile=profile)
    peer, ref, _ = rig.sa(spi=0x1000, algorithm=algorithm, key=bytes(range(20)))
    plain = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(size - 28)))
    count = 6
    for _ in range(count):
        assert rig.inbound(rig.seal(plain, peer))[1]["verdict"] == Verdict.OK
    stats = rig.run(gap=0.0)
    ends = stats["packet_cycles"]
    per_packet = (ends[-1] - ends[0]) / (count - 1)
    print(f"\ninbound {profile} {algorithm} {size}-byte packet ({len(rig.steps[-1][2])} bytes "
          f"with ESP): {per_packet:.0f} clocks per packet, {8 * size / per_packet:.2f} bits/clock")


@pytest.mark.bench
@pytest.mark.parametrize("profile", ["compact", "fast"])
@pytest.mark.parametrize("algorithm", ["aes-gcm-16", "aes-gmac"])
@pytest.mark.parametrize("size", [64, 576, 1500])
def test_outbound_cycles_per_packet(profile, algorithm, size):
    rig = HwRig(EngineParams(n_entries=4, max_packet=2048), profile=profile)
    ref, _ = rig.add(spi=0x1000, direction="outbound", algorithm=algorithm, key=bytes(range(20)))
    plain = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(bytes(size - 28)))
    count = 6
    for _ in range(count):
        assert rig.outbound(plain, ref.index)[1]["verdict"] == Verdict.OK
    stats = rig.run(gap=0.0)
    ends = stats["packet_cycles"]
    per_packet = (ends[-1] - ends[0]) / (count - 1)
    print(f"\noutbound {profile} {algorithm} {size}-byte packet: {per_packet:.0f} clocks per "
          f"packet, {8 * size / per_packet:.2f} bits/clock")
