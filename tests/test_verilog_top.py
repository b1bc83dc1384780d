"""The Verilog top level: AXI4-Lite and, with the ESP datapath, AXI4-Stream ports named as
cocotbext-axi's buses expect, with widths from the contract's layouts."""

import re

import pytest

from ipchan.hw import contract
from ipchan.hw.esp.layouts import BEAT_BYTES, TagBeat, TagLayout
from ipchan.hw.esp.outbound import OutboundBeat
from ipchan.hw.verilog import TOP_NAME, EngineTop, engine_verilog


def _top_ports(text):
    body = text[text.index(f"module {TOP_NAME}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for direction, width, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                             body, re.M):
        ports[name] = (direction, int(width) + 1 if width else 1)
    return ports


def test_top_without_esp_has_only_the_control_port():
    ports = _top_ports(engine_verilog(contract.EngineParams(n_entries=4)))
    assert not [p for p in ports if "axis" in p]
    assert ports["s_axil_awaddr"] == ("input", contract.ADDR_WIDTH)
    assert ports["s_axil_rdata"] == ("output", 32)


@pytest.fixture(scope="module")
def esp_ports():
    return _top_ports(engine_verilog(contract.EngineParams(n_entries=4), esp="compact"))


@pytest.mark.parametrize("port,direction", [("s_axis_in", "input"), ("s_axis_out", "input"),
                                            ("m_axis_in_data", "output"),
                                            ("m_axis_out_data", "output")])
def test_packet_ports_are_axi4_stream(esp_ports, port, direction):
    other = "output" if direction == "input" else "input"
    assert esp_ports[f"{port}_tdata"] == (direction, 8 * BEAT_BYTES)
    assert esp_ports[f"{port}_tkeep"] == (direction, BEAT_BYTES)
    assert esp_ports[f"{port}_tlast"] == (direction, 1)
    assert esp_ports[f"{port}_tvalid"] == (direction, 1)
    assert esp_ports[f"{port}_tready"] == (other, 1)
    if port.startswith("m_"):
        assert esp_ports[f"{port}_tuser"] == (direction, TagLayout.size)
        assert TagLayout.size == contract.tag_width()
    elif port == "s_axis_out":
        assert esp_ports[f"{port}_tuser"] == (direction, OutboundBeat["sa_index"].width)
    else:
        assert f"{port}_tuser" not in esp_ports


@pytest.mark.parametrize("port", ["m_axis_in_tag", "m_axis_out_tag"])
def test_tag_ports_carry_one_tag_beat(esp_ports, port):
    assert esp_ports[f"{port}_tdata"] == ("output", TagBeat.size)
    assert TagBeat.size == contract.tag_width() + 1            # the tag, then handed_up
    assert esp_ports[f"{port}_tready"] == ("input", 1)
    assert f"{port}_tkeep" not in esp_ports and f"{port}_tlast" not in esp_ports


def test_top_refuses_an_unknown_profile():
    with pytest.raises(ValueError, match=r"ESP datapath must be None, 'compact' or 'fast', not 'tiny'"):
        EngineTop(contract.EngineParams(n_entries=4), esp="tiny")


def test_engine_refuses_a_bad_table():
    with pytest.raises(ValueError, match=r"^Table must be 'parallel' or 'serial', not 'ram'$"):
        EngineTop(contract.EngineParams(n_entries=4), table="ram")
    # The serial table has no datapath ports.
    with pytest.raises(ValueError, match=r"^The ESP datapath needs the parallel SA table, not "
                                         r"table='serial'$"):
        EngineTop(contract.EngineParams(n_entries=4), esp="compact", table="serial")


def test_serial_engine_ports_are_the_parallel_ones():
    """The same Verilog top for either table (the datapath's streams aside): a board or a
    testbench swaps one for the other without a change."""
    params = contract.EngineParams(n_entries=4)
    assert _top_ports(engine_verilog(params, table="serial")) == _top_ports(engine_verilog(params))


@pytest.mark.parametrize("latency", [0, 4, "2"])
def test_register_bridge_refuses_a_bad_read_latency(latency):
    from ipchan.hw.axil import RegisterBridge
    with pytest.raises(ValueError,
                       match=rf"^Read latency must be 1, 2 or 3, not {latency!r}$"):
        RegisterBridge(addr_width=12, read_latency=latency)
