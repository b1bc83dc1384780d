"""The key manager as a daemon over a Unix socket, and its command-line subcommands."""

import contextlib
import os
import threading

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.sw.driver import Engine
from ipchan.sw.keymgr import KeyManager
from ipchan.sw.keymgr.daemon import Client, Daemon, DaemonError
from ipchan.sw.keymgr.policy import load_policy, parse_policy

from conftest import GCM16, LAN, LOCAL, Ike, btns_peer, default_pad, default_spd, tcp


@contextlib.contextmanager
def serving(tmp_path, *, privileged):
    km = KeyManager(Engine.for_model(EngineParams(n_entries=64)), spd=default_spd(), pad=default_pad())
    path = tmp_path / "km.sock"
    daemon = Daemon(km, path, privileged_uids=[os.getuid()] if privileged else [])
    thread = threading.Thread(target=daemon.serve_forever, daemon=True)
    thread.start()
    try:
        yield km, daemon, path
    finally:
        daemon.stop()
        thread.join(5)


def test_latch_api_over_the_socket_with_pushed_notifications(tmp_path):
    with serving(tmp_path, privileged=False) as (km, daemon, path), Client(path) as c:
        listener = c.call("create_listener_latch", local_addr=LOCAL, proto="tcp", local_port=143)
        h = c.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9", proto="tcp",
                   local_port=5000, remote_port=22, qop=GCM16.as_dict())
        info = c.call("inquire_latch", handle=h)
        assert info["state"] == "larval" and info["requested_protection"]["algorithm"] == "aes-gcm-16"
        # The IKE side (in the daemon's thread) accepts a child SA on the listener's 3-tuple.
        ike = Ike()
        res = daemon.submit(km.accept_child_sa, ike.for_tuple(btns_peer(1), tcp("198.51.100.7", 143, 40000))).result(5)
        event = c.wait_event()
        assert event == {"event": "created", "handle": res.created, "version": res.version,
                         "reason": None, "listener": listener}
        # The connection holds latches created from its listener.
        assert c.call("inquire_latch", handle=res.created)["peer"]["id_type"] == "public-key"
        daemon.submit(km.break_latch, h, "test").result(5)
        assert c.wait_event()["event"] == "broken"
        assert c.call("release_latch", handle=h) == km.version()
        assert c.wait_event()["event"] == "closed"
        assert sorted(d["handle"] for d in c.call("list_latches")) == [listener, res.created]


def test_privilege_comes_from_socket_credentials(tmp_path):
    """Section 3: "Locally privileged applications could request that their connections' packets
    be bypassed" -- privilege is the peer's uid from SO_PEERCRED, not anything in the message."""
    with serving(tmp_path, privileged=False) as (km, daemon, path), Client(path) as c:
        with pytest.raises(DaemonError, match=r"PrivilegeError: Bypassing protection for .* needs a "
                                              r"privileged caller"):
            c.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9", proto="tcp",
                   local_port=5000, remote_port=22, bypass=True)
        # A message cannot claim privilege.
        with pytest.raises(DaemonError, match=r"unexpected keyword argument 'privileged'"):
            c.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9", proto="tcp",
                   local_port=5000, remote_port=22, bypass=True, privileged=True)
        assert km.latches() == []
    with serving(tmp_path, privileged=True) as (km, daemon, path), Client(path) as c:
        h = c.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9", proto="tcp",
                   local_port=5000, remote_port=22, bypass=True)
        assert c.call("inquire_latch", handle=h)["bypass"] is True


def test_connections_see_only_their_latches_and_release_them_on_close(tmp_path):
    """"IPsec state related to connection latches MUST be torn down when latched connections are
    torn down, even when the latter is implied" -- a client that goes away loses its latches."""
    with serving(tmp_path, privileged=False) as (km, daemon, path):
        with Client(path) as a, Client(path) as b:
            h = a.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9",
                       proto="tcp", local_port=5000, remote_port=22)
            with pytest.raises(DaemonError, match=rf"UnknownLatch: No latch has handle {h}"):
                b.call("inquire_latch", handle=h)
            with pytest.raises(DaemonError, match=rf"UnknownLatch: No latch has handle {h}"):
                b.call("release_latch", handle=h)
            assert b.call("list_latches") == []
            assert daemon.submit(km.latches).result(5) == [h]
        # Both closed: the daemon notices and releases a's latch.
        for _ in range(50):
            if daemon.submit(km.latches).result(5) == []:
                break
            threading.Event().wait(0.05)
        assert daemon.submit(km.latches).result(5) == []


def test_bad_requests_get_clear_errors(tmp_path):
    with serving(tmp_path, privileged=False) as (km, daemon, path), Client(path) as c:
        with pytest.raises(DaemonError, match=r"ValueError: Unknown operation 'explode'"):
            c.call("explode")
        with pytest.raises(DaemonError, match=r"TypeError: .*unexpected keyword argument 'colour'"):
            c.call("create_listener_latch", local_addr=LOCAL, proto="tcp", local_port=1, colour="red")
        with pytest.raises(DaemonError, match=r"ValueError: Local port must be from 0 to 65535, not 70000"):
            c.call("create_listener_latch", local_addr=LOCAL, proto="tcp", local_port=70000)
        c.sock.sendall(b"{not json\n")
        answer = c._line()
        assert answer["ok"] is False and answer["message"].startswith("Request is not JSON")
        assert km.latches() == [] and c.call("version") == km.version()


def test_cli_latch_list_and_show(tmp_path, capsys):
    from ipchan.sw.cli import build_parser
    parser = build_parser()  # the `ipchan` command itself
    with serving(tmp_path, privileged=True) as (km, daemon, path):
        h = daemon.submit(km.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 5000, 22).result(5)
        res = daemon.submit(km.accept_child_sa, Ike().for_tuple(btns_peer(1), tcp("198.51.100.9", 5000, 22))).result(5)
        args = parser.parse_args(["latch", "list", "--socket", str(path)])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"latch {h} established proto 6 {LOCAL}:5000 <-> 198.51.100.9:22"
        assert f"\tsa {res.sa_id} in spi {res.inbound.spi:#010x} index {res.inbound.index} " \
               f"gen {res.inbound.generation}" in out
        assert "protection aes-gcm-16 aes-128 icv 16 replay-window 64 transport" in out
        args = parser.parse_args(["latch", "show", "999", "--socket", str(path)])
        assert args.func(args) == 1
        assert "UnknownLatch: No latch has handle 999" in capsys.readouterr().err


def test_policy_file(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("""
spd:
  - {name: lan, action: protect, local_addr: 192.0.2.1, remote_addr: 198.51.100.0/24,
     protection: {algorithm: aes-gcm-16, key_bits: 256}}
pad:
  - {name: btns, id_type: public-key, pattern: "*", auth: raw-public-key, addresses: [198.51.100.0/24]}
""")
    spd, pad = load_policy(f)
    assert spd[0].protection.key_bits == 256 and pad[0].auth == "raw-public-key"
    with pytest.raises(ValueError, match=r"policy: spd\[0\] \('x'\): SPD action must be one of"):
        parse_policy({"spd": [{"name": "x", "action": "allow"}]})
    with pytest.raises(ValueError, match=r"policy: unknown section\(s\) 'sad'"):
        parse_policy({"sad": []})


def test_km_serve_process_survives_a_kill(tmp_path):
    """`km serve` as its own process: killed with SIGKILL and started again on the same database,
    it restores the LD (restart reconciliation) and says so."""
    import signal
    import subprocess
    import sys
    policy = tmp_path / "policy.yaml"
    policy.write_text("spd:\n  - {name: lan, action: protect, local_addr: 192.0.2.1, "
                      "remote_addr: 198.51.100.0/24, protection: {algorithm: aes-gcm-16}}\npad: []\n")
    sock, db = tmp_path / "km.sock", tmp_path / "km.db"
    cmd = [sys.executable, "-m", "ipchan.sw.cli", "km", "serve", "--socket", str(sock),
           "--policy", str(policy), "--db", str(db), "--privileged-uid", str(os.getuid())]

    def start():
        import select
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
        buf = b""
        while b"serving on" not in buf:
            # Never hang the test run on a server that does not come up. (Unbuffered reads: a
            # buffered reader could hold the line select() is waiting for.)
            ready, _, _ = select.select([proc.stderr], [], [], 60)
            assert ready, f"km serve said nothing for 60 s; so far: {buf!r}"
            data = os.read(proc.stderr.fileno(), 4096)
            assert data, f"km serve exited: {buf!r}"
            buf += data
        return proc, buf.decode().splitlines()

    proc, _ = start()
    try:
        c = Client(sock)
        h = c.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9", proto="tcp",
                   local_port=5000, remote_port=22)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        c.close()
        proc, lines = start()
        assert lines[0].startswith("restart: 1 latch(es) restored, 0 broken")
        with Client(sock) as c2:
            [d] = c2.call("list_latches")
            assert (d["handle"], d["state"]) == (h, "larval")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_km_serve_refuses_a_bad_policy_file(tmp_path, capsys):
    from ipchan.sw.keymgr.cli import main
    bad = tmp_path / "policy.yaml"
    bad.write_text("spd:\n  - {name: x, action: allow}\n")
    assert main(["km", "serve", "--socket", str(tmp_path / "s"), "--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"ipchan km serve: {bad}: spd[0] ('x'): SPD action must be one of" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv,message", [
    (["--backend", "serial"], "ipchan km serve: --backend serial needs --port"),
    (["--backend", "serial", "--port", "/dev/ipchan-no-such-board"],
     "ipchan km serve: Cannot open serial port '/dev/ipchan-no-such-board' at 1000000 baud"),
    (["--port", "/dev/ttyUSB1"], "ipchan km serve: --port is for --backend serial, not --backend model"),
])
def test_km_serve_refuses_a_board_it_cannot_reach(tmp_path, capsys, argv, message):
    from ipchan.sw.keymgr.cli import main
    assert main(["km", "serve", "--socket", str(tmp_path / "s"), *argv]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "s").exists()


def _wire_proposal(ike, peer, ft):
    """A child-SA proposal as an IKE daemon in another process sends it (JSON, keys in hex)."""
    from ipchan.sw.keymgr.selectors import decode_addr
    p = ike.for_tuple(peer, ft)
    return dict(peer=peer.as_dict(), selectors={"local_addr": str(decode_addr(ft.local_addr)),
                                                "remote_addr": str(decode_addr(ft.remote_addr)),
                                                "proto": ft.proto, "local_port": ft.local_port,
                                                "remote_port": ft.remote_port},
                protection=p.protection.as_dict(), inbound_spi=p.inbound_spi,
                outbound_spi=p.outbound_spi, inbound_key=p.inbound_key.hex(),
                inbound_salt=p.inbound_salt.hex(), outbound_key=p.outbound_key.hex(),
                outbound_salt=p.outbound_salt.hex(), trigger=ft.as_dict())


def test_ike_daemon_in_another_process_drives_the_key_manager(tmp_path):
    """The IKE side over the socket: a privileged IKE client hears ACQUIREs ("the key manager
    SHOULD try to create a pair of child SAs"), hands over child SAs, and hears DELETEs; a ULP
    client's latch is established and, in the section 2.4 scenario, broken with a pushed
    notification before the newcomer's SA is accepted."""
    with serving(tmp_path, privileged=True) as (km, daemon, path), Client(path) as ulp, Client(path) as iked:
        assert iked.call("subscribe_ike") is True
        ike = Ike()
        h = ulp.call("create_connection_latch", local_addr=LOCAL, remote_addr="198.51.100.9",
                     proto="tcp", local_port=5000, remote_port=22)
        acquire = iked.wait_event()
        assert acquire["ike_event"] == "acquire" and acquire["five_tuple"]["remote_port"] == 22
        ft = tcp("198.51.100.9", 5000, 22)
        plan = iked.call("narrow", peer=btns_peer(1).as_dict(),
                         selectors={"local_addr": LOCAL, "remote_addr": LAN}, protection=GCM16.as_dict(),
                         trigger=ft.as_dict())
        assert plan["latch"] == h and plan["conflict"] is None
        first = iked.call("accept_child_sa", **_wire_proposal(ike, btns_peer(1), ft))
        assert first["latch"] == h and ulp.call("inquire_latch", handle=h)["state"] == "established"
        second = iked.call("accept_child_sa", **_wire_proposal(ike, btns_peer(2), ft))
        assert second["broken"] == [h]
        event = ulp.wait_event()
        assert (event["event"], event["handle"], event["version"]) == ("broken", h, second["version"] - 1)
        delete = iked.wait_event()
        assert (delete["ike_event"], delete["sa_id"]) == ("delete", first["sa_id"])
        assert iked.call("delete_child_sa", sa_id=second["sa_id"]) == km.version()


def test_ike_operations_need_privilege(tmp_path):
    with serving(tmp_path, privileged=False) as (km, daemon, path), Client(path) as c:
        for op, args in (("subscribe_ike", {}), ("delete_child_sa", {"sa_id": 1}),
                         ("accept_child_sa", _wire_proposal(Ike(), btns_peer(1), tcp("198.51.100.9", 1, 2)))):
            with pytest.raises(DaemonError, match=rf"PrivilegeError: .* needs a privileged caller "
                                                  rf"\(uid {os.getuid()} is not\)"):
                c.call(op, **args)
        assert km.child_sas() == [] and km.latches() == []
