"""The engine's gateware, driven through the host driver on Verilator and Icarus (cocotb), with
the golden model as scoreboard."""

import pytest

from ipchan.hw.contract import SMALL_PARAMS, EngineParams
from ipchan.hw.verilog import TOP_NAME, engine_verilog
from ipchan.sim.build import BUILD_ROOT, cached_verilog, params_to_env, run_cocotb


@pytest.mark.parametrize("simulator,params,table", [
    ("verilator", EngineParams(n_entries=16), "parallel"),
    ("icarus", EngineParams(n_entries=16), "parallel"),
    ("verilator", EngineParams(n_entries=256), "parallel"),
    # The block-RAM table of the iCE40 build, with and without tunnel endpoints.
    ("verilator", SMALL_PARAMS, "serial"),
    ("icarus", SMALL_PARAMS, "serial"),
    ("verilator", EngineParams(n_entries=16), "serial"),
    ("verilator", EngineParams(n_entries=256), "serial"),
], ids=["verilator-16", "icarus-16", "verilator-256", "serial-verilator-small",
        "serial-icarus-small", "serial-verilator-16", "serial-verilator-256"])
def test_engine_through_driver(request, simulator, params, table):
    verilog = cached_verilog(f"engine-{table}", lambda: engine_verilog(params, table=table),
                             params)
    build_dir = BUILD_ROOT / "sim" / request.node.name.replace("[", "-").rstrip("]")
    env = {"IPCHAN_PARAMS": params_to_env(params)}
    testcase = None
    if params.n_entries > 16:
        # The big table: the random walk only (the other tests cover logic, not size).
        testcase = ["test_random_against_model"]
        env["IPCHAN_STEPS"] = "200"
    run_cocotb(simulator=simulator, verilog=verilog, toplevel=TOP_NAME,
               test_module="ipchan.sim.tb_engine", build_dir=build_dir, testcase=testcase,
               extra_env=env)
