"""The whole engine with its ESP datapath on Verilator (cocotb, ``ipchan.sim.tb_esp``): SAs installed
through the driver over AXI4-Lite, packets through cocotbext-axi's AXI4-Stream source and sinks,
the golden model as scoreboard, crossed with packet sizes and idle/backpressure generators.

Default run: the compact profile, three sizes on Verilator and two on Icarus. ``-m slow``: every
size, both profiles.
``-m bench -s``: clocks per packet and bits per clock, as a Markdown table.
"""

import json

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.hw.verilog import TOP_NAME, engine_verilog
from ipchan.sim.build import BUILD_ROOT, cached_verilog, params_to_env, run_cocotb


PARAMS = EngineParams(n_entries=16)
DEFAULT_SIZES = "64,1500,41"
ALL_SIZES = "64,576,1500,41,333,1023"


def _build_dir(request):
    return BUILD_ROOT / "sim" / request.node.name.replace("[", "-").rstrip("]")


def _run(request, profile, *, testcase=None, env=(), simulator="verilator"):
    verilog = cached_verilog(f"engine-esp-{profile}",
                             lambda: engine_verilog(PARAMS, esp=profile), PARAMS, profile)
    build_dir = _build_dir(request)
    return run_cocotb(simulator=simulator, verilog=verilog, toplevel=TOP_NAME,
                      test_module="ipchan.sim.tb_esp", build_dir=build_dir, testcase=testcase,
                      extra_env={"IPCHAN_PARAMS": params_to_env(PARAMS), **dict(env)})


def test_esp_engine_on_verilator(request):
    """Compact profile: sizes 64, 1500 and 41 bytes crossed with idle and backpressure, and the
    check that the scoreboard notices a one-byte difference."""
    _run(request, "compact", env={"IPCHAN_ESP_SIZES": DEFAULT_SIZES})


def test_esp_engine_on_icarus(request):
    """The second simulator: Icarus's four-state semantics and event scheduling, on the compact
    profile with a short and an odd size, crossed with idle and backpressure."""
    _run(request, "compact", env={"IPCHAN_ESP_SIZES": "64,41"}, simulator="icarus")


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["compact", "fast"])
def test_esp_engine_on_verilator_every_size(request, profile):
    _run(request, profile, env={"IPCHAN_ESP_SIZES": ALL_SIZES})


@pytest.mark.bench
@pytest.mark.parametrize("profile", ["compact", "fast"])
def test_esp_throughput_on_verilator(request, profile):
    """Clocks per packet (between consecutive tags, packets back to back, no stalls) and bits per
    clock of plaintext, IPv4 transport, AES-128 GCM-16; printed as a Markdown table."""
    out = _build_dir(request) / "bench.json"
    out.unlink(missing_ok=True)
    _run(request, profile, testcase=["bench_throughput"],
         env={"IPCHAN_ESP_BENCH": "1", "IPCHAN_ESP_BENCH_OUT": str(out)})
    rows = json.loads(out.read_text())
    print(f"\n\n{profile} profile, cocotb + Verilator, 100 MHz clock assumed for packets/s\n")
    print("| plaintext (on the wire) | dir | clocks/packet | bits/clock | Mpackets/s at 100 MHz "
          "| Gbit/s at 100 MHz | simulated packets/s (wall clock) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} ({r['wire']}) bytes | {r['direction']} | {r['clocks']:.0f} "
              f"| {r['bits_per_clock']:.2f} | {100 / r['clocks']:.3f} "
              f"| {r['bits_per_clock'] / 10:.2f} | {r['sim_packets_per_s']:.0f} |")
