"""The ``ipchan`` command."""

import argparse
import sys
from pathlib import Path

from ipchan.hw.contract import EngineParams

from .backends import BACKENDS


def params_from_args(args, default_entries):
    """The engine parameters ``--entries`` asks for; on a board (``--backend serial``) without
    ``--entries``, None: the board reports its own."""
    if args.entries is None and args.backend == "serial":
        return None
    try:
        return EngineParams(n_entries=default_entries if args.entries is None else args.entries)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--entries: {exc}") from None


def serial_options(args):
    """``open_engine``'s keyword arguments for ``--port`` and ``--baudrate``: only the serial
    backend takes them, so giving them to another is an error that names the option."""
    given = {name: getattr(args, name) for name in ("port", "baudrate")
             if getattr(args, name) is not None}
    if args.backend == "serial":
        if "port" not in given:
            raise ValueError("--backend serial needs --port (a device such as /dev/ttyUSB1, or "
                             "a pyserial URL)")
    elif given:
        raise ValueError(f"--{next(iter(given))} is for --backend serial, "
                         f"not --backend {args.backend}")
    return given


def add_backend_arguments(parser, default, entries_default, help_backend):
    """``--backend``, ``--entries``, ``--port`` and ``--baudrate``, shared by every command that
    drives an engine."""
    from .serial_transport import DEFAULT_BAUDRATE
    parser.add_argument("--backend", choices=BACKENDS, default=default, help=help_backend)
    parser.add_argument("--entries", type=int, default=None,
                        help=f"SA table slots of a simulated engine (default {entries_default}; "
                             f"a board reports its own, and if given it must match)")
    parser.add_argument("--port", help="--backend serial: the board's serial device or a "
                                       "pyserial URL")
    parser.add_argument("--baudrate", type=int,
                        help=f"--backend serial: the board's baud rate "
                             f"(default {DEFAULT_BAUDRATE})")


def cmd_regmap(args):
    from ipchan.hw.regmap_doc import render
    text = render()
    if args.check:
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != text:
            print(f"ipchan: {args.output} is stale; run `ipchan regmap --output {args.output}`",
                  file=sys.stderr)
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


DEMO_ENTRIES = 16


def cmd_demo(args):
    from .demo import EngineUnavailable, run_demo
    try:
        options = serial_options(args)
        return run_demo(backend=args.backend, params=params_from_args(args, DEMO_ENTRIES),
                        out=sys.stdout, **options)
    except (ValueError, EngineUnavailable) as exc:
        print(f"ipchan demo: {exc}", file=sys.stderr)
        return 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ipchan",
        description="IPsec channels (RFC 5660 connection latching) with an ESP offload engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="drive the engine: install SAs, look up, commit, reuse slots",
                       description="Install SAs in the engine, look them up, commit, delete and "
                                   "reuse slots, showing indices, generations and the version "
                                   "tag as they move.")
    add_backend_arguments(p, "verilator", DEMO_ENTRIES,
                          "engine to drive (default: a Verilator simulation of the gateware; "
                          "serial: a board)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("regmap", help="write docs/regmap.md from the register contract")
    p.add_argument("--output", default="docs/regmap.md", help="file to write, or - for stdout")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    p.set_defaults(func=cmd_regmap)

    from .esp.cli import add_subcommands as add_esp_subcommands
    add_esp_subcommands(sub)
    from .keymgr.cli import add_subcommands as add_keymgr_subcommands
    add_keymgr_subcommands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
