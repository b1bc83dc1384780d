"""The engine as the CLI reaches it: a Verilator process over a Unix socket, in lockstep with the
golden model (the same scoreboard the cocotb testbenches use)."""

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.sim.scoreboard import Twin, random_walk
from ipchan.sw.backends import open_engine
from ipchan.sw.driver import Engine


@pytest.fixture(scope="module")
def verilator_engine():
    engine = open_engine("verilator", EngineParams())
    yield engine
    engine.close()


def test_random_walk_over_socket(verilator_engine):
    twin = Twin(verilator_engine, Engine.for_model(EngineParams()))
    random_walk(twin, seed=5660, steps=600)
    assert twin.dut.counters() == twin.model.counters()


def test_open_engine_refuses_unknown_backend():
    with pytest.raises(ValueError, match=r"Backend must be one of 'verilator', 'model', 'serial', not 'fpga'"):
        open_engine("fpga")
    with pytest.raises(TypeError, match=r"Parameters must be an EngineParams, not 16"):
        open_engine("model", 16)
