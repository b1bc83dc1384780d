"""``ipchan.sim.build``: engine parameters through the environment, and cocotb builds that are
skipped when nothing they depend on changed."""

import pytest

from ipchan.hw.contract import SMALL_PARAMS, EngineParams
from ipchan.sim.build import icarus_verilog, params_from_env, params_to_env, run_cocotb

COUNTER = """\
module counter(input clk, input rst, output reg [3:0] count);
  always @(posedge clk) count <= rst ? 4'd0 : count + 4'd1;
endmodule
"""


@pytest.mark.parametrize("params", [EngineParams(), SMALL_PARAMS,
                                    EngineParams(n_entries=4, window_max=1024, max_packet=64)])
def test_params_round_trip(params):
    assert params_from_env(params_to_env(params)) == params


def test_params_left_out_keep_defaults():
    assert params_from_env("n_entries=16") == EngineParams(n_entries=16)


@pytest.mark.parametrize("text,message", [
    ("n_entries", "IPCHAN_PARAMS item must be NAME=VALUE with NAME one of"),
    ("entries=16", "not 'entries=16'"),
    ("n_entries=lots", "IPCHAN_PARAMS n_entries must be an integer, not 'lots'"),
    ("tunnel_endpoints=0", "IPCHAN_PARAMS tunnel_endpoints must be True or False, not '0'"),
])
def test_params_from_env_names_the_bad_item(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        params_from_env(text)


def test_params_to_env_wants_engine_params():
    with pytest.raises(TypeError,
                       match=r"Parameters must be an EngineParams, not \{'n_entries': 16\}"):
        params_to_env({"n_entries": 16})


def test_unchanged_verilator_build_is_skipped(tmp_path):
    verilog = tmp_path / "counter.v"
    verilog.write_text(COUNTER)
    build_dir = tmp_path / "build"

    def run():
        run_cocotb(simulator="verilator", verilog=verilog, toplevel="counter",
                   test_module="tb_counter", build_dir=build_dir, testcase=["counts"])
        return (build_dir / "counter").stat().st_mtime_ns

    first = run()
    assert run() == first                       # nothing changed: not rebuilt, and still passes
    verilog.write_text(COUNTER + "// changed\n")
    assert run() != first                       # the Verilog changed: rebuilt


def test_icarus_copy_kicks_every_combinational_block(tmp_path):
    # The shape of Yosys's output: a dummy register tested at the top of each always @* block.
    text = ("module m(input a, output reg y);\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  always @* begin\n"
            "    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n"
            "    y = 1'h1;\n"
            "  end\n"
            "endmodule\n")
    source = tmp_path / "m.v"
    source.write_text(text)
    out = icarus_verilog(source, tmp_path / "build")
    patched = out.read_text()
    assert patched == text.replace(
        "dump_module$1  = 0;\n",
        "dump_module$1  = 0;\n"
        "  initial #1 \\$auto$verilog_backend.cc:2355:dump_module$1  = 1'h1;\n")
    assert source.read_text() == text          # the cached Verilog is left as it was


def test_icarus_runs_a_block_whose_inputs_never_change(tmp_path):
    # Without the kick, Icarus 11 leaves `ready` at X: nothing it reads ever changes.
    text = ("module kick(input clk, input rst, output reg ready);\n"
            "  reg [1:0] state = 2'h0;\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  always @(posedge clk) state <= state;\n"
            "  always @* begin\n"
            "    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n"
            "    ready = 1'h0;\n"
            "    if (state == 2'h0) ready = 1'h1;\n"
            "  end\n"
            "endmodule\n")
    verilog = tmp_path / "kick.v"
    verilog.write_text(text)
    run_cocotb(simulator="icarus", verilog=verilog, toplevel="kick", test_module="tb_counter",
               build_dir=tmp_path / "build", testcase=["ready_resolves"])
