"""The key manager as a daemon: the latch API for local processes over a Unix socket.

Protocol: one JSON object per line each way. A request is ``{"id": N, "op": NAME, "args": {...}}``;
its answer ``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok": false, "error": CLASS,
"message": TEXT}``. Notifications for latches a connection holds are pushed as
``{"event": KIND, "handle": H, "version": V, "reason": ..., "listener": ...}``.

Operations: ``create_listener_latch``, ``create_connection_latch``, ``release_latch``,
``inquire_latch``, ``find_latch``, ``list_latches`` and ``version``, with the key manager's
argument names (``qop`` and identities as dictionaries, see :meth:`Protection.from_dict` and
:meth:`Identity.from_dict`). For an IKE daemon in another process, privileged users also have
``narrow``, ``accept_child_sa`` (keys and salts in hex), ``delete_child_sa`` and ``subscribe_ike``,
after which the key manager's requests (``acquire``, ``delete``) are pushed to that connection as
``{"ike_event": KIND, ...}``.

Who may do what: the peer's credentials come from the socket (``SO_PEERCRED``), never from the
message. A connection holds the latches it created (and those created from its listeners); it may
inquire about and release only those, unless its user is privileged (``privileged_uids``, default
root only). Only a privileged user may ask for BYPASS (section 3) or list every latch. When a
connection closes, the latches it holds are released: the daemon cannot tell a crashed ULP from a
finished one, and "IPsec state related to connection latches MUST be torn down when latched
connections are torn down, even when the latter is implied".

Everything runs in the serving thread, one request at a time: the key manager is not shared
between threads.
"""

import json
import os
import queue
import selectors
import socket
import struct
import threading

from .errors import KeyManagerError, PrivilegeError, UnknownLatch
from .identity import Identity
from .manager import ChildSaProposal, SelectorProposal
from .protection import Protection
from .sad import NatInfo
from .selectors import Box, FiveTuple


__all__ = ["Daemon", "Client", "DaemonError"]


MAX_LINE = 1 << 20


class DaemonError(Exception):
    """An error answer from the daemon: ``kind`` is the exception class name on its side."""

    def __init__(self, kind, message):
        self.kind = kind
        super().__init__(f"{kind}: {message}")


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


class _Conn:
    def __init__(self, sock, creds, privileged):
        self.sock = sock
        self.pid, self.uid, self.gid = creds
        self.privileged = privileged
        self.inbuf = b""
        self.outbuf = bytearray()
        self.held = set()
        self.closing = False


class Daemon:
    def __init__(self, km, path, *, privileged_uids=(0,)):
        self.km = km
        self.path = str(path)
        self.privileged_uids = frozenset(privileged_uids)
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._listener.bind(self.path)
        os.chmod(self.path, 0o666)    # any local user may ask; privilege comes from SO_PEERCRED
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._conns = {}
        self._ike_subscribers = []
        if km._ike is None:
            km.set_ike_handler(self._ike_event)
        # Work from other threads (an in-process IKE daemon) runs in the serving thread.
        self._calls = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # --- the loop -------------------------------------------------------------------------------

    def serve_forever(self, poll=0.2):
        try:
            while not self._stop.is_set():
                for key, mask in self._sel.select(timeout=poll):
                    if key.data is None:
                        self._accept()
                        continue
                    if key.data == "wake":
                        self._run_calls()
                        continue
                    conn = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if not conn.closing and mask & selectors.EVENT_WRITE:
                        self._flush(conn)
                for conn in list(self._conns.values()):
                    self._update_interest(conn)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._sel.close()
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()
            if os.path.exists(self.path):
                os.unlink(self.path)

    def stop(self):
        self._stop.set()

    def submit(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` in the serving thread (the key manager is not shared between
        threads); returns a :class:`concurrent.futures.Future`. This is how an IKE daemon in the same
        process hands over child SAs, so that holders' notifications go out in order."""
        from concurrent.futures import Future
        future = Future()
        self._calls.put((future, fn, args, kwargs))
        self._wake_w.send(b"x")
        return future

    def _run_calls(self):
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while True:
            try:
                future, fn, args, kwargs = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)

    def _accept(self):
        sock, _ = self._listener.accept()
        sock.setblocking(False)
        creds = peer_credentials(sock)
        conn = _Conn(sock, creds, creds[1] in self.privileged_uids)
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        while b"\n" in conn.inbuf:
            line, conn.inbuf = conn.inbuf.split(b"\n", 1)
            if line.strip():
                self._send(conn, self._handle(conn, line))
        if len(conn.inbuf) > MAX_LINE:
            self._send(conn, {"id": None, "ok": False, "error": "ValueError",
                              "message": f"Request longer than {MAX_LINE} bytes"})
            conn.inbuf = b""

    def _send(self, conn, obj):
        conn.outbuf += json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self._flush(conn)

    def _flush(self, conn):
        if not conn.outbuf or conn.closing:
            return
        try:
            sent = conn.sock.send(conn.outbuf)
            del conn.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)

    def _update_interest(self, conn):
        if conn.closing:
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        self._sel.modify(conn.sock, want, conn)

    def _close(self, conn):
        if conn.closing:
            return
        conn.closing = True
        if conn.sock.fileno() in self._conns:
            del self._conns[conn.sock.fileno()]
            self._sel.unregister(conn.sock)
        if conn in self._ike_subscribers:
            self._ike_subscribers.remove(conn)
        for handle in sorted(conn.held):
            try:
                self.km.release_latch(handle)
            except UnknownLatch:
                pass
        conn.held.clear()
        conn.sock.close()

    # --- requests -------------------------------------------------------------------------------

    def _holder(self, conn):
        def holder(event):
            if event.kind == "created":
                conn.held.add(event.handle)
            if event.kind == "closed":
                conn.held.discard(event.handle)
            if not conn.closing:
                self._send(conn, {"event": event.kind, "handle": event.handle, "version": event.version,
                                  "reason": event.reason, "listener": event.listener})
        return holder

    def _owned(self, conn, handle):
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise TypeError(f"Latch handle must be an integer, not {handle!r}")
        if handle not in conn.held and not conn.privileged:
            # Do not tell an unprivileged caller whether someone else's handle exists.
            raise UnknownLatch(f"No latch has handle {handle} (never created, or released)")
        return handle

    def _handle(self, conn, line):
        rid = None
        try:
            try:
                req = json.loads(line)
            except ValueError as e:
                raise ValueError(f"Request is not JSON: {e}") from None
            if not isinstance(req, dict):
                raise ValueError(f"Request must be a JSON object, not {req!r}")
            rid = req.get("id")
            op, args = req.get("op"), req.get("args", {})
            if not isinstance(args, dict):
                raise ValueError(f"Request args must be an object, not {args!r}")
            fn = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
            if fn is None:
                raise ValueError(f"Unknown operation {op!r}")
            return {"id": rid, "ok": True, "result": fn(conn, **args)}
        except (KeyManagerError, TypeError, ValueError, KeyError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return {"id": rid, "ok": False, "error": type(e).__name__, "message": str(message)}

    def _op_create_listener_latch(self, conn, *, local_addr, proto, local_port, qop=None):
        handle = self.km.create_listener_latch(local_addr, proto, local_port,
                                               qop=Protection.coerce(qop), holder=self._holder(conn))
        conn.held.add(handle)
        return handle

    def _op_create_connection_latch(self, conn, *, local_addr, remote_addr, proto, local_port,
                                    remote_port, qop=None, peer_id=None, local_id=None, bypass=False):
        handle = self.km.create_connection_latch(
            local_addr, remote_addr, proto, local_port, remote_port, qop=Protection.coerce(qop),
            peer_id=Identity.coerce(peer_id, "peer ID"), local_id=Identity.coerce(local_id, "local ID"),
            holder=self._holder(conn), bypass=bypass, privileged=conn.privileged)
        conn.held.add(handle)
        return handle

    def _op_release_latch(self, conn, *, handle):
        version = self.km.release_latch(self._owned(conn, handle))
        conn.held.discard(handle)
        return version

    def _op_inquire_latch(self, conn, *, handle):
        return self.km.inquire_latch(self._owned(conn, handle)).as_dict()

    def _op_find_latch(self, conn, *, local_addr, remote_addr, proto, local_port, remote_port):
        handle = self.km.find_latch(local_addr, remote_addr, proto, local_port, remote_port)
        return handle if handle is not None and (conn.privileged or handle in conn.held) else None

    def _op_list_latches(self, conn):
        handles = self.km.latches() if conn.privileged else sorted(conn.held)
        return [self.km.inquire_latch(h).as_dict() for h in handles]

    def _op_version(self, conn):
        return self.km.version()

    # --- the IKE daemon's side (privileged) -----------------------------------------------------

    def _privileged(self, conn, what):
        if not conn.privileged:
            raise PrivilegeError(f"{what} needs a privileged caller (uid {conn.uid} is not)")

    def _ike_event(self, event):
        msg = {"ike_event": event.kind,
               "five_tuple": event.five_tuple.as_dict() if event.five_tuple else None,
               "sa_id": event.sa.sa_id if event.sa else None,
               "inbound_spi": event.sa.inbound.spi if event.sa else None,
               "outbound_spi": event.sa.outbound.spi if event.sa else None,
               "protection": event.protection.as_dict() if event.protection else None,
               "peer": event.peer.as_dict() if event.peer else None}
        for conn in list(self._ike_subscribers):
            if not conn.closing:
                self._send(conn, msg)

    def _op_subscribe_ike(self, conn):
        self._privileged(conn, "Receiving the key manager's IKE requests")
        if conn not in self._ike_subscribers:
            self._ike_subscribers.append(conn)
        return True

    @staticmethod
    def _selector_args(peer, selectors, protection, local_id, trigger):
        if not isinstance(selectors, dict):
            raise TypeError(f"selectors must be an object, not {selectors!r}")
        box = Box.parse(**selectors)
        if trigger is not None:
            if not isinstance(trigger, dict):
                raise TypeError(f"trigger must be an object, not {trigger!r}")
            trigger = FiveTuple.parse(**trigger)
        return dict(peer=Identity.coerce(peer, "peer"), selectors=box,
                    protection=Protection.coerce(protection, "protection"),
                    local_id=Identity.coerce(local_id, "local ID"), trigger=trigger)

    @staticmethod
    def _narrow_result(r):
        return {"selectors": r.selectors.as_dict() if r.selectors else None, "latch": r.latch,
                "listener": r.listener, "conflict": r.conflict, "policy": r.policy}

    def _op_narrow(self, conn, *, peer, selectors, protection, local_id=None, trigger=None):
        self._privileged(conn, "Narrowing child SA proposals")
        args = self._selector_args(peer, selectors, protection, local_id, trigger)
        return self._narrow_result(self.km.narrow(SelectorProposal(**args)))

    def _op_accept_child_sa(self, conn, *, peer, selectors, protection, inbound_spi, outbound_spi,
                            inbound_key, inbound_salt, outbound_key, outbound_salt, local_id=None,
                            trigger=None, nat=None):
        self._privileged(conn, "Accepting child SAs")
        args = self._selector_args(peer, selectors, protection, local_id, trigger)
        keys = {}
        for name, value in (("inbound_key", inbound_key), ("inbound_salt", inbound_salt),
                            ("outbound_key", outbound_key), ("outbound_salt", outbound_salt)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a hex string, not {type(value).__name__}")
            try:
                keys[name] = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{name} must be a hex string") from None
        if nat is not None and not isinstance(nat, dict):
            raise TypeError(f"nat must be an object, not {nat!r}")
        proposal = ChildSaProposal(inbound_spi=inbound_spi, outbound_spi=outbound_spi,
                                   nat=NatInfo.from_dict(nat), **args, **keys)
        r = self.km.accept_child_sa(proposal)
        return {"sa_id": r.sa_id, "selectors": r.selectors.as_dict(), "inbound": r.inbound.as_dict(),
                "outbound": r.outbound.as_dict(), "version": r.version, "latch": r.latch,
                "created": r.created, "broken": list(r.broken)}

    def _op_delete_child_sa(self, conn, *, sa_id):
        self._privileged(conn, "Deleting child SAs")
        return self.km.delete_child_sa(sa_id)


class Client:
    """A blocking client of the daemon: ``call(op, **args)`` returns the result or raises
    :exc:`DaemonError`; pushed notifications collect in ``events``."""

    def __init__(self, path, *, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buf = b""
        self._next = 0
        self.events = []

    def _line(self):
        while b"\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("The key manager closed the connection")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, op, **args):
        self._next += 1
        rid = self._next
        self.sock.sendall(json.dumps({"id": rid, "op": op, "args": args}).encode() + b"\n")
        while True:
            msg = self._line()
            if "event" in msg or "ike_event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != rid:
                raise ConnectionError(f"Answer {msg!r} does not belong to request {rid}")
            if not msg["ok"]:
                raise DaemonError(msg["error"], msg["message"])
            return msg["result"]

    def wait_event(self):
        """Block until a notification arrives (or return one already received)."""
        if self.events:
            return self.events.pop(0)
        msg = self._line()
        if "event" not in msg and "ike_event" not in msg:
            raise ConnectionError(f"Expected a notification, got {msg!r}")
        return msg

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
