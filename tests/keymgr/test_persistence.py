"""Persistence and restart: the LD and SAD in SQLite, reconciled with the engine at start.

"Implementations that have a restartable key management process (or "daemon") MUST arrange for
existing latched connections to either be reset and disconnected, or for them to survive the
restart of key exchange processes."

The crash tests kill a key-manager process (SIGKILL) at random points while it works. The engine
(the golden model) lives in this process and is served to the key manager over a Unix socket with
the project's link protocol, so it survives the key manager, as a board would.
"""

import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import threading
import time

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.sw import link
from ipchan.sw.driver import Engine
from ipchan.sw.keymgr import KeyManager, KeyManagerError, LatchState, PersistenceError
from ipchan.sw.keymgr.selectors import decode_addr
from ipchan.sw.model import EngineModel
from ipchan.sw.transport import BusError

from conftest import (GCM16, GCM16_256, LOCAL, Ike, btns_peer, check_invariants, default_pad,
                      default_spd, tcp)


# --- Restart in one process ------------------------------------------------------------------------

def _populate(km, ike):
    listener = km.create_listener_latch(LOCAL, "tcp", 143)
    larval = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    est = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    res = km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(est).tuple))
    from_listener = km.accept_child_sa(ike.for_tuple(btns_peer(2), tcp("198.51.100.7", 143, 40000))).created
    broken = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5002, 22)
    km.break_latch(broken, "test")
    return listener, larval, est, res, from_listener, broken


def test_restart_with_surviving_engine_restores_every_latch(tmp_path, engine, ike):
    """"... or for them to survive the restart of key exchange processes." -- with the engine's
    table intact, every latch comes back as it was, bound to the same slots and generations."""
    db = str(tmp_path / "km.db")
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, db=db)
    handles = _populate(km, ike)
    before = {h: km.inquire_latch(h) for h in km.latches()}
    v = km.version()
    km.close()
    again = KeyManager(Engine(engine.transport), spd=default_spd(), pad=default_pad(), db=db)
    report = again.restart_report
    assert report.broken == () and report.lost_sas == () and report.orphans_deleted == ()
    assert sorted(report.restored) == sorted(before)
    assert report.version == v + 1 == again.version()
    for h, info in before.items():
        assert again.inquire_latch(h) == info
    check_invariants(again)
    # It keeps working: handles and SA ids continue, and the restored latches behave as before.
    new = again.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5003, 22)
    assert new > max(before)
    again.release_latch(handles[2])
    assert again.child_sas() == [sa for sa in again.child_sas() if sa.sa_id != handles[3].sa_id]
    check_invariants(again)


def test_restart_with_reset_engine_breaks_established_latches(tmp_path, engine, ike):
    """"... MUST arrange for existing latched connections to either be reset and disconnected" --
    when the engine's table was lost (a reset or another engine), latches whose SAs are gone are
    broken and say so; listeners and LARVAL latches are restored."""
    db = str(tmp_path / "km.db")
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, db=db)
    listener, larval, est, res, from_listener, broken = _populate(km, ike)
    km.close()
    fresh = Engine.for_model(EngineParams(n_entries=64))
    again = KeyManager(fresh, spd=default_spd(), pad=default_pad(), db=db)
    report = again.restart_report
    assert dict(report.broken) == {est: "restart: its child SAs are no longer in the engine",
                                   from_listener: "restart: its child SAs are no longer in the engine"}
    assert set(report.lost_sas) == {res.sa_id, res.sa_id + 1}
    states = {h: again.inquire_latch(h).state for h in again.latches()}
    assert states == {listener: LatchState.LISTENER, larval: LatchState.LARVAL,
                      est: LatchState.BROKEN, from_listener: LatchState.BROKEN,
                      broken: LatchState.BROKEN}
    assert again.child_sas() == []
    check_invariants(again)


class Crash(BaseException):
    """Stands for the process dying at this point (not an Exception: nothing may catch it)."""


def _setup_for_crash(km, ike):
    """Latches and SAs for every kind of change to crash in."""
    from ipchan.sw.keymgr import SpdEntry
    listener = km.create_listener_latch(LOCAL, "tcp", 143)
    larval = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    est = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5002, 22)
    sa = km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(est).tuple))
    conn = km.accept_child_sa(ike.for_tuple(btns_peer(1), tcp("198.51.100.7", 143, 40000)))
    return {"listener": listener, "larval": larval, "est": est, "sa": sa, "conn": conn.created,
            "hole": SpdEntry.parse("hole", action="bypass", local_addr=LOCAL, remote_addr="198.51.100.9")}


CRASH_OPS = {
    "create-listener": lambda km, ike, s: km.create_listener_latch(LOCAL, "tcp", 993),
    "create-connection": lambda km, ike, s: km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5003, 22),
    "establish": lambda km, ike, s: km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(s["larval"]).tuple)),
    "from-listener": lambda km, ike, s: km.accept_child_sa(ike.for_tuple(btns_peer(2), tcp("198.51.100.8", 143, 1))),
    "conflict": lambda km, ike, s: km.accept_child_sa(ike.for_tuple(btns_peer(2), km.inquire_latch(s["conn"]).tuple)),
    # The same, crashing in its second change (the install), after the break committed.
    "conflict-install": lambda km, ike, s: km.accept_child_sa(ike.for_tuple(btns_peer(2), km.inquire_latch(s["conn"]).tuple)),
    "release": lambda km, ike, s: km.release_latch(s["est"]),
    "delete-sa": lambda km, ike, s: km.delete_child_sa(s["sa"].sa_id),
    "break": lambda km, ike, s: km.break_latch(s["est"]),
    "spd-preserve": lambda km, ike, s: km.insert_spd_entry(s["hole"], 0),
}


@pytest.mark.parametrize("where", ["before-engine-commit", "after-engine-commit"])
@pytest.mark.parametrize("op", sorted(CRASH_OPS))
def test_crash_inside_a_change_is_reconciled(tmp_path, engine, ike, where, op):
    """A crash between the engine's commit and the database's leaves the engine one change ahead;
    one at the engine's commit leaves staged changes in the engine. The next start repairs both:
    staged changes are aborted, SAs the database does not know are deleted, latches whose SAs are
    gone are broken, and everything else is as the database says."""
    db = str(tmp_path / "km.db")
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, db=db)
    state = _setup_for_crash(km, ike)
    recorded = {h: km.inquire_latch(h) for h in km.latches()}

    skip = [1 if op == "conflict-install" else 0]

    def crashing(real):
        def call():
            if skip[0]:
                skip[0] -= 1
                return real()
            raise Crash()
        return call
    if where == "after-engine-commit":
        km.store.commit = crashing(km.store.commit)
    else:
        # The process dies at the engine's commit: nothing runs after it (not even the abort).
        engine.commit = crashing(engine.commit)
        engine.bump_version = crashing(engine.bump_version)
        engine.abort = crashing(engine.abort)
    with pytest.raises(Crash):
        CRASH_OPS[op](km, ike, state)
    # The process is gone: its SQLite connection dies without committing.
    km.store._db.close()
    again = KeyManager(Engine(engine.transport), spd=default_spd(), pad=default_pad(), db=db)
    check_invariants(again)
    report = again.restart_report
    # The database holds the state before the crashed change (the conflict's first change, the
    # break, may have committed): latches are as recorded, unless their SAs are gone.
    for h, info in recorded.items():
        now = again.inquire_latch(h)
        if h in dict(report.broken):
            assert where == "after-engine-commit"
            assert now.state == LatchState.BROKEN
        elif op == "conflict-install" and h == state["conn"]:
            assert now.state == LatchState.BROKEN and "conflict" in now.reason   # the break committed
        else:
            assert (now.state, now.tuple, now.peer, now.protection) == \
                (info.state, info.tuple, info.peer, info.protection)
    assert set(again.latches()) - set(recorded) == set()
    if where == "before-engine-commit":
        assert report.broken == () and report.orphans_deleted == () and report.lost_sas == ()


# --- Killing a key-manager process at random points ------------------------------------------------

class ModelServer:
    """Serves a golden-model engine over a Unix socket with the link protocol (one client at a time),
    so that the engine outlives the key-manager processes that use it."""

    def __init__(self, path, params):
        self.path = path
        self.model = EngineModel(params)
        self._stop = threading.Event()
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(path)
        self._srv.listen(1)
        self._srv.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except socket.timeout:
                continue
            with conn:
                buf = b""
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        break
                    if not data:
                        break
                    buf += data
                    out, off = bytearray(), 0
                    while (req := link.decode_request(buf, off)) is not None:
                        op, addr, value, n = req
                        off += n
                        try:
                            if op == link.LinkOp.WRITE:
                                self.model.write(addr, value)
                                out += link.encode_response(op, link.LinkStatus.OKAY)
                            elif op == link.LinkOp.READ:
                                out += link.encode_response(op, link.LinkStatus.OKAY, self.model.read(addr))
                            elif op == link.LinkOp.CYCLES:
                                out += link.encode_response(op, link.LinkStatus.OKAY, 0)
                            elif op == link.LinkOp.RESET:
                                self.model.reset()
                                out += link.encode_response(op, link.LinkStatus.OKAY)
                            else:
                                out += link.encode_response(op, link.LinkStatus.UNKNOWN)
                        except BusError:
                            out += link.encode_response(op, link.LinkStatus.SLVERR, 0)
                    buf = buf[off:]
                    try:
                        conn.sendall(out)
                    except OSError:
                        break

    def close(self):
        self._stop.set()
        self._thread.join()
        self._srv.close()


def _open(sock, db):
    from ipchan.sw.socket_transport import SocketTransport
    return KeyManager(Engine(SocketTransport(sock, timeout=10)), spd=default_spd(), pad=default_pad(),
                      db=db)


def _worker(sock, db, seed, progress):
    """A key manager doing random work until it is killed; after each operation it reports the
    version it reached (the operation is durable by then)."""
    km = _open(sock, db)
    ike = Ike()
    ike._spi = iter(range(0x10000 + seed * 0x100000, 0x10000 + (seed + 1) * 0x100000, 2))
    rng = random.Random(seed)
    hosts = ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
    while True:
        op = rng.random()
        ft = tcp(rng.choice(hosts), rng.choice([22, 143]), rng.choice([40000, 40001, 40002]))
        try:
            if op < 0.3:
                km.create_connection_latch(LOCAL, str(decode_addr(ft.remote_addr)), "tcp",
                                           ft.local_port, ft.remote_port)
            elif op < 0.4:
                km.create_listener_latch(LOCAL, "tcp", rng.choice([143, 993]))
            elif op < 0.7:
                km.accept_child_sa(ike.for_tuple(rng.choice([btns_peer(1), btns_peer(2)]), ft,
                                                 protection=rng.choice([GCM16, GCM16_256])))
            elif op < 0.85 and km.latches():
                km.release_latch(rng.choice(km.latches()))
            elif km.child_sas():
                km.delete_child_sa(rng.choice(km.child_sas()).sa_id)
        except KeyManagerError:
            pass
        progress.put(km.engine.version())


def _raw_db_consistent(db):
    """Before any reconciliation: the database alone is consistent (every change was atomic)."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        latches = [json.loads(r) for (r,) in con.execute("SELECT record FROM latches")]
        sas = {json.loads(r)["sa_id"] for (r,) in con.execute("SELECT record FROM child_sas")}
        meta = dict(con.execute("SELECT key, value FROM meta"))
    finally:
        con.close()
    live = [tuple(l["tuple"]) for l in latches if l["state"] in ("larval", "established")]
    assert len(live) == len(set(live))
    for l in latches:
        assert set(l["sa_ids"]) <= sas, l
        assert l["handle"] < int(meta.get("next_handle", 1))
    assert all(s < int(meta.get("next_sa_id", 1)) for s in sas)
    return int(meta.get("version", 0))


def _kill_loop(tmp_path, kills, seed):
    sock = str(tmp_path / "engine.sock")
    db = str(tmp_path / "km.db")
    server = ModelServer(sock, EngineParams(n_entries=32))
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(seed)
    try:
        reached = 0
        for i in range(kills):
            progress = ctx.Queue()
            child = ctx.Process(target=_worker, args=(sock, db, seed * 1000 + i, progress), daemon=True)
            child.start()
            # Wait until it has done some work, then kill it at a random moment.
            first = progress.get(timeout=60)
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            last = first
            while True:
                try:
                    last = progress.get(timeout=0.2)
                except Exception:
                    break
            progress.close()
            recorded = _raw_db_consistent(db)
            # What the process reported done is durable; at most one change was in flight after it
            # (two for a conflict that breaks a latch before accepting).
            assert last <= recorded <= last + 2 and recorded >= reached
            km = _open(sock, db)
            check_invariants(km)
            assert km.version() > last
            reached = int(km.store.get_meta("version"))
            km.close()
            km.engine.close()
    finally:
        server.close()


def test_killed_key_manager_leaves_consistent_state(tmp_path):
    """Kill a key-manager process at random points (a few times); after each kill the database is
    consistent on its own, and the next start reconciles it with the engine."""
    _kill_loop(tmp_path, kills=3, seed=1)


@pytest.mark.slow
def test_killed_key_manager_many_times(tmp_path):
    _kill_loop(tmp_path, kills=40, seed=2)


def test_database_failure_after_engine_commit_stops_changes_until_restart(tmp_path, engine, ike):
    """If SQLite cannot commit after the engine did, the two disagree: the key manager says so and
    refuses further changes; a restart reconciles."""
    db = str(tmp_path / "km.db")
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, db=db)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    real = km.store.commit

    def failing():
        raise sqlite3.OperationalError("disk I/O error")
    km.store.commit = failing
    with pytest.raises(PersistenceError, match=r"Engine committed version \d+ but the database did not "
                                               r"\(disk I/O error\); restart the key manager to reconcile"):
        km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple))
    km.store.commit = real
    with pytest.raises(PersistenceError, match=r"refuses changes until it is restarted: the engine "
                                               r"committed version"):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5002, 22)
    km.close()
    again = KeyManager(Engine(engine.transport), spd=default_spd(), pad=default_pad(), db=db)
    assert len(again.restart_report.orphans_deleted) == 2
    assert again.inquire_latch(h).state == LatchState.LARVAL
    check_invariants(again)
