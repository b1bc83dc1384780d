"""Command-line subcommands of the key manager, for ``ipchan`` (:mod:`ipchan.sw.cli`) to add with
:func:`add_subcommands`:

    ipchan km serve --socket PATH --policy FILE [--db PATH] [--backend model|verilator|serial]
                    [--entries N] [--port DEVICE] [--baudrate N]
    ipchan latch list [--socket PATH]
    ipchan latch show HANDLE [--socket PATH]
"""

import os
import signal
import sys


__all__ = ["add_subcommands", "DEFAULT_SOCKET"]


DEFAULT_SOCKET = os.environ.get("IPCHAN_KM_SOCKET", "/run/ipchan/km.sock")
#: SA table slots of a simulated engine unless ``--entries`` says otherwise.
KM_ENTRIES = 256


def cmd_km_serve(args):
    from ipchan.sw.backends import open_engine
    from ipchan.sw.cli import params_from_args, serial_options
    from ipchan.sw.link import LinkError

    from .daemon import Daemon
    from .manager import KeyManager
    from .policy import load_policy
    try:
        spd, pad = load_policy(args.policy) if args.policy else ([], [])
        params = params_from_args(args, KM_ENTRIES)
        options = serial_options(args)
        engine = open_engine(args.backend, params, **options)
    except (OSError, TypeError, ValueError, LinkError) as e:
        print(f"ipchan km serve: {e}", file=sys.stderr)
        return 2
    km = KeyManager(engine, spd=spd, pad=pad, db=args.db, spd_change=args.spd_change,
                    conflict=args.conflict)
    if km.restart_report is not None:
        r = km.restart_report
        print(f"restart: {len(r.restored)} latch(es) restored, {len(r.broken)} broken, "
              f"{len(r.lost_sas)} child SA(s) lost, {len(r.orphans_deleted)} orphan slot(s) "
              f"deleted, version {r.version}", file=sys.stderr)
        for handle, why in r.broken:
            print(f"restart: latch {handle} broken: {why}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.socket)), exist_ok=True)
    daemon = Daemon(km, args.socket, privileged_uids=[0] + args.privileged_uid)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    print(f"ipchan km: serving on {args.socket}", file=sys.stderr, flush=True)
    try:
        daemon.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        km.close()
        engine.close()
    return 0


def _client(args):
    from .daemon import Client
    try:
        return Client(args.socket)
    except OSError as e:
        raise SystemExit(f"ipchan latch: cannot reach the key manager at {args.socket}: {e}")


def cmd_latch_list(args):
    from .format import format_latch
    with _client(args) as c:
        for d in c.call("list_latches"):
            print(format_latch(d))
    return 0


def cmd_latch_show(args):
    from .daemon import DaemonError
    from .format import format_latch
    with _client(args) as c:
        try:
            print(format_latch(c.call("inquire_latch", handle=args.handle)))
        except DaemonError as e:
            print(f"ipchan latch show: {e}", file=sys.stderr)
            return 1
    return 0


def add_subcommands(subparsers):
    """Add ``km`` and ``latch`` to an ``argparse`` subparsers object; each leaf sets ``func``."""
    from ipchan.sw.cli import add_backend_arguments

    km = subparsers.add_parser("km", help="the key manager (connection latching)")
    km_sub = km.add_subparsers(dest="km_command", metavar="COMMAND")
    km_sub.required = True
    p = km_sub.add_parser("serve", help="serve the latch API on a Unix socket",
                          description="Run the key manager as a daemon: the latch API of RFC 5660 "
                                      "section 2.1 for local processes, as JSON lines.")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"socket path (default {DEFAULT_SOCKET})")
    p.add_argument("--policy", help="YAML file with the SPD and PAD")
    p.add_argument("--db", default=":memory:", help="SQLite file for the LD and SAD (default: in memory)")
    add_backend_arguments(p, "model", KM_ENTRIES,
                          "engine (default: golden model; verilator: the simulated gateware; "
                          "serial: a board)")
    p.add_argument("--spd-change", choices=("preserve", "break"), default="preserve",
                   help="SPD changes that would lower a latch's protection (default preserve)")
    p.add_argument("--conflict", choices=("terminate", "reject"), default="terminate",
                   help="section 2.4 conflicts (default terminate the existing connection)")
    p.add_argument("--privileged-uid", type=int, action="append", default=[],
                   help="a user besides root who may request BYPASS and see every latch")
    p.set_defaults(func=cmd_km_serve)

    latch = subparsers.add_parser("latch", help="show the Latch Database")
    latch_sub = latch.add_subparsers(dest="latch_command", metavar="COMMAND")
    latch_sub.required = True
    p = latch_sub.add_parser("list", help="every latch you may see, like `ip xfrm state`")
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    p.set_defaults(func=cmd_latch_list)
    p = latch_sub.add_parser("show", help="one latch")
    p.add_argument("handle", type=int)
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    p.set_defaults(func=cmd_latch_show)
    return subparsers


def main(argv=None):
    """``python -m ipchan.sw.keymgr.cli ...``: the same subcommands without the ``ipchan`` wrapper."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m ipchan.sw.keymgr.cli")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_subcommands(sub)
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
