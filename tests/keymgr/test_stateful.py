"""Hypothesis stateful tests of the latching invariants, on the golden model.

Invariants checked after every step:
* no two LARVAL/ESTABLISHED latches on one 5-tuple (and one listener per 3-tuple);
* no ESTABLISHED latch whose 5-tuple is matched by an SA of another peer or protection;
* the version strictly increases with every change (by one per change) and never otherwise;
* ``inquire_latch`` always matches what was latched, and latched parameters never change;
* the engine's table holds exactly the SAD's SAs, and the database holds exactly the LD and SAD.
"""

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from ipchan.hw.contract import EngineParams, SlotState
from ipchan.sw.driver import Engine
from ipchan.sw.keymgr import KeyManager, KeyManagerError, LatchState, SpdEntry

from conftest import GCM16, GCM16_256, LAN, LOCAL, Ike, btns_peer, default_pad, default_spd, snapshot, tcp


HOSTS = ["198.51.100.7", "198.51.100.8"]
PORTS = [22, 143, 80]       # 80: the SPD bypasses it; latches there need optional protection
RPORTS = [40000, 40001]
PEERS = [btns_peer(1), btns_peer(2)]
PROTS = [GCM16, GCM16_256]

tuples = st.builds(tcp, st.sampled_from(HOSTS), st.sampled_from(PORTS), st.sampled_from(RPORTS))


class LatchMachine(RuleBasedStateMachine):
    handles = Bundle("handles")
    sas = Bundle("sas")
    #: Key manager configuration (the other machine below runs the non-default choices).
    MODES = {}

    def __init__(self):
        super().__init__()
        self.ike = Ike()
        self.km = KeyManager(Engine.for_model(EngineParams(n_entries=16)), spd=default_spd(),
                             pad=default_pad(), ike=self.ike, **self.MODES)
        self.version = self.km.version()
        self.latched = {}    # handle -> (peer, local_id, protection, established_version)
        self.tuples = {}     # handle -> tuple at creation

    # -- helpers --

    def _do(self, fn, *args, changes=1, **kwargs):
        """Run an operation; a refusal must change nothing, a success must move the version by
        exactly ``changes`` (or by what the result says)."""
        before = snapshot(self.km)
        try:
            result = fn(*args, **kwargs)
        except KeyManagerError:
            assert snapshot(self.km) == before
            return None
        if changes == "accept":
            changes = 1 + len(result.broken)
        now = self.km.version()
        assert now == self.version + changes, (fn.__name__, self.version, now)
        self.version = now
        return result

    # -- rules --

    @rule(target=handles, port=st.sampled_from(PORTS), qop=st.sampled_from([None, GCM16_256]))
    def listen(self, port, qop):
        h = self._do(self.km.create_listener_latch, LOCAL, "tcp", port, qop=qop)
        if h is not None:
            self.tuples[h] = self.km.inquire_latch(h).tuple
        return h if h is not None else -1

    @rule(target=handles, ft=tuples, qop=st.sampled_from([None, GCM16_256]),
          peer=st.sampled_from([None] + PEERS), bypass=st.sampled_from([False, False, True]))
    def connect(self, ft, qop, peer, bypass):
        from ipchan.sw.keymgr.selectors import decode_addr
        if bypass:
            qop = peer = None
        h = self._do(self.km.create_connection_latch, LOCAL, str(decode_addr(ft.remote_addr)), "tcp",
                     ft.local_port, ft.remote_port, qop=qop, peer_id=peer, bypass=bypass,
                     privileged=bypass)
        if h is not None:
            self.tuples[h] = ft
        return h if h is not None else -1

    @rule(handle=consumes(handles))
    def release(self, handle):
        self._do(self.km.release_latch, handle)

    @rule(handle=handles)
    def break_(self, handle):
        self._do(self.km.break_latch, handle)

    @rule(target=sas, ft=tuples, peer=st.sampled_from(PEERS), prot=st.sampled_from(PROTS),
          wide=st.booleans())
    def child_sa(self, ft, peer, prot, wide):
        if wide:
            proposal = self.ike.proposal(peer, remote_addr=LAN, trigger=ft, protection=prot)
        else:
            proposal = self.ike.for_tuple(peer, ft, protection=prot)
        result = self._do(self.km.accept_child_sa, proposal, changes="accept")
        if result is None:
            return -1
        for h in result.broken:
            assert self.km.inquire_latch(h).state == LatchState.BROKEN
        return result.sa_id

    @rule(sa_id=consumes(sas))
    def delete_sa(self, sa_id):
        self._do(self.km.delete_child_sa, sa_id)

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS),
          action=st.sampled_from(["bypass", "protect"]))
    def spd_hole(self, host, port, action):
        """Toggle an entry at the head of the SPD: a BYPASS hole, or a stricter PROTECT."""
        name = f"{action}-{host}-{port}"
        before = self.km.version()
        if any(e.name == name for e in self.km.spd.entries):
            result = self.km.remove_spd_entry(name)
        else:
            result = self.km.insert_spd_entry(SpdEntry.parse(
                name, action=action, local_addr=LOCAL, remote_addr=host, proto="tcp",
                local_port=port, protection=GCM16_256 if action == "protect" else None), 0)
        assert self.km.version() == before + (0 if result.version is None else 1)
        self.version = self.km.version()

    @rule()
    def restart(self):
        """The key-manager process restarts on the same database; the engine's table survives."""
        old = self.km
        before = {h: old.inquire_latch(h) for h in old.latches()}
        self.km = KeyManager(Engine(old.engine.transport), spd=list(old.spd.entries), pad=default_pad(),
                             ike=self.ike, db=old.store, **self.MODES)
        report = self.km.restart_report
        if report is None:       # nothing was ever stored: nothing to reconcile
            assert before == {} and self.km.version() == self.version
            return
        self.version += 1
        assert self.km.version() == self.version
        assert report.lost_sas == () and report.orphans_deleted == ()
        broken = dict(report.broken)
        for h, info in before.items():
            after = self.km.inquire_latch(h)
            if h in broken:
                # Only latches that relied on a logical SPD entry can be broken by a restart here.
                assert info.optional or info.preserved or info.bypass, (h, broken[h])
                assert after.state == LatchState.BROKEN and after.reason.startswith("restart")
            elif h in report.dropped_logical:
                assert after.state == LatchState.LISTENER and after.optional is None
            elif info.optional or info.preserved:
                # Restored without its logical SPD entry: the configured SPD protects it as well.
                assert after.optional is None and not after.preserved
                assert after.version == self.version
                assert replace(after, optional=info.optional, preserved=info.preserved,
                               version=info.version) == info
            else:
                assert after == info

    # -- invariants --

    @invariant()
    def one_live_latch_per_tuple(self):
        seen5, seen3 = set(), set()
        for h in self.km.latches():
            info = self.km.inquire_latch(h)
            if info.state in (LatchState.LARVAL, LatchState.ESTABLISHED):
                assert info.tuple not in seen5
                seen5.add(info.tuple)
            elif info.state == LatchState.LISTENER:
                assert info.tuple not in seen3
                seen3.add(info.tuple)

    @invariant()
    def no_established_latch_with_conflicting_sa(self):
        sas = self.km.child_sas()
        for h in self.km.latches():
            info = self.km.inquire_latch(h)
            if info.state != LatchState.ESTABLISHED:
                continue
            for sa in sas:
                if sa.selectors.contains(info.tuple):
                    assert not info.bypass
                    assert (sa.peer, sa.protection) == (info.peer, info.protection), (h, sa.sa_id)

    @invariant()
    def inquire_matches_what_was_latched(self):
        for h in self.km.latches():
            info = self.km.inquire_latch(h)
            assert info.handle == h and info.tuple == self.tuples.setdefault(h, info.tuple)
            if info.state == LatchState.ESTABLISHED:
                now = (info.peer, info.local_id, info.protection, info.established_version)
                assert self.latched.setdefault(h, now) == now
                if info.requested_peer is not None:
                    assert info.peer == info.requested_peer
                if info.requested_protection is not None and not info.bypass:
                    assert info.protection.meets(info.requested_protection)
            for s in info.sas:
                sa = self.km.child_sa(s.sa_id)
                assert (s.inbound_index, s.inbound_generation) == (sa.inbound.index, sa.inbound.generation)

    @invariant()
    def engine_and_database_agree(self):
        km = self.km
        slots = {e.index: e for e in km.engine.entries()}
        want = {}
        for sa in km.child_sas():
            for ref in (sa.inbound, sa.outbound):
                want[ref.index] = (ref.spi, ref.generation)
        assert {i: (e.spi, e.generation) for i, e in slots.items()} == want
        assert all(e.state == SlotState.LIVE for e in slots.values())
        assert [r["handle"] for r in km.store.latch_records()] == km.latches()
        assert sorted(r["sa_id"] for r in km.store.sa_records()) == sorted(sa.sa_id for sa in km.child_sas())
        assert km.engine.version() == self.version
        assert km.store.get_meta("version") in (None, str(self.version)) or self.version == 0


LatchMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_latch_invariants = LatchMachine.TestCase


class BreakRejectMachine(LatchMachine):
    """The same invariants with spd_change="break" and conflict="reject"."""
    MODES = {"spd_change": "break", "conflict": "reject"}


BreakRejectMachine.TestCase.settings = LatchMachine.TestCase.settings
test_latch_invariants_break_reject = BreakRejectMachine.TestCase


@pytest.mark.slow
@pytest.mark.parametrize("machine", [LatchMachine, BreakRejectMachine])
def test_latch_invariants_long(machine):
    from hypothesis.stateful import run_state_machine_as_test
    run_state_machine_as_test(machine, settings=settings(
        max_examples=2000, stateful_step_count=80, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
