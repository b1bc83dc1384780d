"""The ``ipchan`` command."""

import argparse
import sys
from pathlib import Path

from ipchan.hw.contract import EngineParams

from .backends import BACKENDS


def _params_from_args(args):
    try:
        return EngineParams(n_entries=args.entries)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"ipchan: --entries: {exc}")


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


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(backend=args.backend, params=_params_from_args(args), out=sys.stdout)


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
    p.add_argument("--backend", choices=BACKENDS, default="verilator",
                   help="engine to drive (default: a Verilator simulation of the gateware)")
    p.add_argument("--entries", type=int, default=16,
                   help="SA table slots of the simulated engine (default 16)")
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
