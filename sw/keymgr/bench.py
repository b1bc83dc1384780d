"""Benchmark: latch operations and child-SA installs at 10^3 .. 10^6 live latches.

    python -m ipchan.sw.keymgr.bench                  # 1000, 100000, 1000000 live latches
    python -m ipchan.sw.keymgr.bench --sizes 1000 100000

Each size fills a fresh key manager (golden-model engine, in-memory SQLite) with that many LARVAL
connection latches through the ordinary API, 16 per remote host, then measures, with the LD at that
size:

* ``create+release``: create a connection latch on a new 5-tuple and release it;
* ``find``: look a 5-tuple up in the LD;
* ``narrow``: narrow a host-wide child-SA proposal around one latched 5-tuple (the conflict check);
* ``install+delete``: accept a child SA for a LARVAL latch (narrowing, conflict checks, PAD and SPD,
  engine install and commit, LD and SAD update) and delete it again.

The point is the growth from one size to the next: the indices should keep every column roughly
flat. Rates are operations per second of this process's CPU time (``time.process_time``), so
other jobs on a shared machine do not distort them. Prints a Markdown table.
"""

import argparse
import os
import sys
import time

from ipchan.hw.contract import EngineParams
from ipchan.sw.driver import Engine

from .identity import Identity
from .manager import ChildSaProposal, KeyManager
from .pad import PadEntry
from .protection import Protection
from .selectors import Box, FiveTuple
from .spd import SpdEntry


LOCAL = "192.0.2.1"
PER_HOST = 16


def _remote(i):
    host = i // PER_HOST
    return f"10.{(host >> 16) & 0xFF}.{(host >> 8) & 0xFF}.{host & 0xFF}", 40000 + i % PER_HOST


def _make(n):
    engine = Engine.for_model(EngineParams(n_entries=256))
    km = KeyManager(engine, spd=[SpdEntry.parse("net10", action="protect", local_addr=LOCAL,
                                                remote_addr="10.0.0.0/8", protection=Protection())],
                    pad=[PadEntry.parse("btns", id_type="public-key", pattern="*",
                                        auth="raw-public-key", addresses=["10.0.0.0/8"])],
                    synchronous="OFF")
    t0 = time.process_time()
    for i in range(n):
        addr, port = _remote(i)
        km.create_connection_latch(LOCAL, addr, "tcp", 5000, port)
    return km, time.process_time() - t0


def _rate(fn, count):
    # CPU time of this process, so that other jobs on a shared machine do not count.
    t0 = time.process_time()
    for i in range(count):
        fn(i)
    dt = time.process_time() - t0
    return count / dt


def run(n, *, count=2000):
    km, fill = _make(n)
    peer = Identity.btns(os.urandom(32))
    prot = Protection()
    spi = iter(range(0x10000, 1 << 32, 2))
    results = {"latches": n, "fill ops/s": n / fill}

    def create_release(i):
        addr, port = _remote(n + 32 + i)
        h = km.create_connection_latch(LOCAL, addr, "tcp", 6000, port)
        km.release_latch(h)
    results["create+release /s"] = _rate(create_release, count)

    def find(i):
        addr, port = _remote((i * 7919) % n)
        assert km.find_latch(LOCAL, addr, "tcp", 5000, port) is not None
    results["find /s"] = _rate(find, count)

    def proposal(i):
        addr, port = _remote((i * 7919) % n)
        ft = FiveTuple.parse(LOCAL, addr, "tcp", 5000, port)
        s = next(spi)
        return ChildSaProposal(peer, Box.parse(local_addr=LOCAL, remote_addr=addr, proto="tcp"), prot,
                               s, s + 1, bytes(16), bytes(4), bytes(16), bytes(4), trigger=ft)

    props = [proposal(i) for i in range(count)]

    def narrow(i):
        r = km.narrow(props[i])
        assert r.latch is not None and r.selectors.is_point()
    results["narrow /s"] = _rate(narrow, count)

    installs = min(count, 1000)
    fresh = [proposal(n // 2 + i) for i in range(installs)]

    def install_delete(i):
        r = km.accept_child_sa(fresh[i])
        km.delete_child_sa(r.sa_id)
    results["install+delete /s"] = _rate(install_delete, installs)
    km.close()
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000, 1000000])
    ap.add_argument("--count", type=int, default=2000, help="operations timed per column")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(run(n, count=args.count))
        print(f"# {n} latches done", file=sys.stderr, flush=True)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,.0f}" for c in cols) + " |")
    return rows


if __name__ == "__main__":
    main()
