"""The crypto benchmark's own logic: what it reads from nextpnr's log, and its argument checks.
(Running place and route is a benchmark, never a test.)"""

import json
import re

import pytest

from ipchan.hw.crypto import bench
from ipchan.hw.crypto.ghash import GHASHSerial


def test_unrouted_run_reports_placement_estimate_and_last_iteration(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text(
        "Info: \t        TRELLIS_COMB:   19737/  83640    23%\n"
        "Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 66.72 MHz (FAIL at 125.00 MHz)\n"
        "Info:     iter=1 wires=331401 overused=37825 overuse=48209 archfail=NA\n"
        "Info:     iter=2 wires=339867 overused=24827 overuse=27126 archfail=NA\n")
    assert bench._unrouted(log) == {
        "placed_mhz": 66.72, "unrouted": "24,827 wires overused after iteration 2"}
    assert bench._packed_utilisation(log) == {"TRELLIS_COMB": (19737, 83640)}


def test_stopped_before_routing(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Running main analytical placer\n")
    assert bench._unrouted(log) == {"placed_mhz": None, "unrouted": "routing had not started"}


@pytest.mark.parametrize("minutes", [0, -1, True, "5"])
def test_route_minutes_checked(minutes):
    with pytest.raises(ValueError, match=rf"route_minutes must be a positive number, not {minutes!r}"):
        bench.place_and_route("fast", "ecp5-85f", route_minutes=minutes)


def test_stream_ports_split_by_direction():
    core = GHASHSerial(digit=8)
    core._MustUse__silence = True
    inputs, outputs = bench._stream_ports(core)
    # h and i (payload, valid) and o.ready in; h.ready, i.ready, o (payload, valid) out.
    assert [len(v) for v in inputs] == [128, 1, 132, 1, 1]
    assert [len(v) for v in outputs] == [1, 1, 128, 1]


def test_units_are_designs_of_the_command_line(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--no-cycles", "--pnr", "nothing:ecp5-85f"])
    message = capsys.readouterr().err
    for unit in bench.UNITS:
        assert repr(unit) in message


@pytest.mark.parametrize("args", ["--placer-heap-beta 0.6", ["--seed", 2], None])
def test_nextpnr_args_checked(args):
    with pytest.raises(TypeError,
                       match=rf"nextpnr_args must be a list or tuple of strings, not {re.escape(repr(args))}"):
        bench.place_and_route("fast", "ecp5-85f", nextpnr_args=args)


def test_nextpnr_args_named_in_the_table():
    row = {"fpga": "ecp5-85f", "profile": "fast", "fmax_mhz": 90.0, "LUT4": 1, "LUT4_avail": 2,
           "FF": 3, "BRAM": 4, "BRAM_avail": 5, "seconds": 6,
           "nextpnr_args": "--placer-heap-beta 0.6"}
    assert bench._table_pnr([row])[2] == (
        "| ecp5-85f | fast (`--placer-heap-beta 0.6`) | 90.0 | 1 / 2 | 3 | 4 / 5 | 6 |")


def test_ice40_packing_read_from_the_log(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text(
        "Info: Packing LUT-FFs..\n"
        "Info:     3820 LCs used as LUT4 only\n"
        "Info:     1068 LCs used as LUT4 and DFF\n"
        "Info: Packing non-LUT FFs..\n"
        "Info:     1242 LCs used as DFF only\n"
        "Info: Packing carries..\n"
        "Info:       45 LCs used as CARRY only\n"
        "Info:       26 LCs used to legalise carry chains.\n")
    packing = bench._ice40_packing(log)
    assert packing == {"LUT4 only": 3820, "LUT4 + FF": 1068, "FF only": 1242, "carry only": 45}
    row = {"fpga": "ice40-up5k", "profile": "compact+engine", "packing": packing,
           "harness_inputs": 617}
    assert bench._table_packing([row, {"fpga": "ecp5-85f", "profile": "fast"}])[2:] == [
        "| ice40-up5k | compact+engine | 3,820 | 1,068 | 1,242 | 45 | 617 |"]


def test_ff_only_sources_counts_flip_flops_that_cannot_share_a_cell(tmp_path):
    # a -> LUT4 -> ff1 (shares a cell); the same LUT4 also drives the output, so ff1 cannot;
    # ff2 is fed by ff1 (no LUT4); ff3 by its own LUT4, whose only load it is.
    def ff(d, q):
        return {"type": "SB_DFF", "port_directions": {"C": "input", "D": "input", "Q": "output"},
                "connections": {"C": [2], "D": [d], "Q": [q]}}
    def lut(i, o):
        return {"type": "SB_LUT4", "port_directions": {"I0": "input", "O": "output"},
                "connections": {"I0": [i], "O": [o]}}
    netlist = {"modules": {"top": {
        "ports": {"y": {"direction": "output", "bits": [10]}},
        "cells": {"l1": lut(3, 10), "f1": ff(10, 11), "f2": ff(11, 12), "l3": lut(12, 13),
                  "f3": ff(13, 14)},
        "netnames": {"core.shared": {"bits": [11]}, "core.copy_SB_DFF_Q": {"bits": [12]},
                     "$auto$1": {"bits": [12]}, "core.own": {"bits": [14]}}}}}
    path = tmp_path / "top.json"
    path.write_text(json.dumps(netlist))
    assert bench._ff_only_sources(path) == [("core.shared", 1), ("core.copy", 1)]


@pytest.mark.parametrize("name", list(bench.CORES) + [None])
def test_harness_chain_feeds_every_input(name):
    """The harness's chain has a bit for each input of the core (and of the engine beside it),
    and the design converts to Verilog with every port connected."""
    from amaranth.back import verilog
    from ipchan.hw.contract import SMALL_PARAMS
    from ipchan.hw.engine import Engine

    with_engine = name == "compact-keys"
    top = bench.Harness(name, engine=SMALL_PARAMS if with_engine else None)
    verilog.convert(top, name="top", ports=[top.clk, top.sin, top.sout])
    core = bench.CORES[name or "compact"]()
    core._MustUse__silence = True
    expected = sum(len(v) for v in bench._stream_ports(core)[0])
    if with_engine:
        engine = Engine(SMALL_PARAMS, table="serial")
        engine._MustUse__silence = True
        expected += sum(len(getattr(engine.axil, n)) for n, member
                        in engine.axil.signature.members.items() if member.flow.name == "In")
    assert top.input_bits == expected


def test_cores_of_the_bench():
    assert bench.CORES["compact-keys"]().key_slots == bench.ICE40_KEY_SLOTS == 16
    assert bench.CORES["compact"]().key_slots is None
