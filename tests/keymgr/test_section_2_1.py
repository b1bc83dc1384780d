"""Section 2 and 2.1 (normative model: ULP interfaces to the key manager), one test per MUST and
SHOULD, each quoting its sentence. Everything runs on the golden-model engine."""

import pytest

from ipchan.sw.keymgr import (ChildSaRejected, FiveTuple, IkeEvent, KeyManager, LatchConflict,
                              LatchState, NatInfo, PolicyError, Protection, SpdEntry, UnknownLatch)

from conftest import (GCM16, GCM16_256, LAN, LOCAL, Holder, btns_peer, cert_peer,
                      default_pad, default_spd, snapshot, tcp)


# --- CREATE_LISTENER_LATCH -----------------------------------------------------------------------

def test_listener_created_atomically(km):
    """"If there is no conflicting connection latch object in the LISTENER state for the given
    3-tuple ..., and local policy permits it, then this operation atomically creates a connection
    latch object in the LISTENER state for the given 3-tuple." """
    v0 = km.version()
    h = km.create_listener_latch(LOCAL, "tcp", 143)
    info = km.inquire_latch(h)
    assert info.state == LatchState.LISTENER and info.kind == "listener"
    assert info.tuple_dict == {"local_addr": LOCAL, "proto": 6, "local_port": 143}
    assert km.version() == v0 + 1 == info.created_version == info.version
    before = snapshot(km)
    with pytest.raises(LatchConflict, match=rf"A listener latch for proto 6 {LOCAL}:143 \(listener\) "
                                            rf"already exists \(handle {h}\)"):
        km.create_listener_latch(LOCAL, 6, 143)
    assert snapshot(km) == before


def test_listener_refused_where_policy_discards(km):
    """"... and local policy permits it ..." (CREATE_LISTENER_LATCH): a 3-tuple whose traffic
    the SPD discards gets no listener."""
    before = snapshot(km)
    with pytest.raises(PolicyError, match="The SPD has no entry for traffic to proto 6 10.9.9.9:22"):
        km.create_listener_latch("10.9.9.9", "tcp", 22)
    assert snapshot(km) == before


def test_child_sa_on_listener_narrowed_to_single_local_address_and_port(km, ike):
    """"When a child SA is negotiated that would match a listener latch's 3-tuple then the key
    manager SHOULD narrow the child SA so that its local address and port ranges do not include the
    3-tuple or so that the SA has only one local address and port number: the one from the
    tuple." """
    km.create_listener_latch(LOCAL, "tcp", 143)
    peer = btns_peer(1)
    # Triggered by a packet to another port: the result must avoid port 143 entirely.
    other = tcp("198.51.100.7", 8080, 5000)
    r = km.narrow(ike.proposal(peer, remote_addr=LAN, trigger=other))
    assert r.selectors.contains(other)
    assert not (r.selectors.local_port[0] <= 143 <= r.selectors.local_port[1])
    assert r.listener is None and r.latch is None
    # Triggered by a packet to the listener: one local address and port, the tuple's.
    on = tcp("198.51.100.7", 143, 5000)
    r = km.narrow(ike.proposal(peer, remote_addr=LAN, trigger=on))
    assert r.selectors.local_port == (143, 143)
    assert r.selectors.local_addr[0] == r.selectors.local_addr[1] == on.local_addr
    assert r.listener is not None


def test_child_sa_on_listener_creates_established_latch_and_tells_holder(km, ike):
    """"When a child SA is created that matches a listener latch's 3-tuple, but not any
    ESTABLISHED connection latch's 5-tuple ..., then the key manager creates a new connection
    latch object in the ESTABLISHED state.  The key manager MUST inform the holder of the listener
    latch of connection latches created as a result of the listener latch." """
    holder = Holder()
    listener = km.create_listener_latch(LOCAL, "tcp", 143, holder=holder)
    ft = tcp("198.51.100.7", 143, 40000)
    result = km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    assert result.created is not None
    info = km.inquire_latch(result.created)
    assert info.state == LatchState.ESTABLISHED and info.tuple == ft and info.listener == listener
    assert [(e.kind, e.handle, e.listener, e.version) for e in holder.events] == \
        [("created", result.created, listener, result.version)]
    assert km.find_latch(LOCAL, "198.51.100.7", "tcp", 143, 40000) == result.created


# --- CREATE_CONNECTION_LATCH ---------------------------------------------------------------------

def test_connection_latch_larval_when_no_sa(km):
    """"If no connection latch exists in the LARVAL or ESTABLISHED states with the same 5-tuple,
    and if there exist no child SAs that match the given 5-tuple, ... then this operation creates a
    connection latch object in the LARVAL state for the given 5-tuple." """
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    info = km.inquire_latch(h)
    assert info.state == LatchState.LARVAL and info.sas == () and info.peer is None
    before = snapshot(km)
    with pytest.raises(LatchConflict, match=f"Latch {h} is already larval on proto 6 {LOCAL}:5000 "
                                            "<-> 198.51.100.9:22"):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert snapshot(km) == before


def test_connection_latch_over_consistent_sas(km, ike):
    """"... or all such SAs share the same type and quality of protection parameters and the same
    peer then this operation creates a connection latch object ..." (it is bound to them and, their
    parameters being known, ESTABLISHED at once)."""
    peer = btns_peer(3)
    ft = tcp("198.51.100.9", 5000, 22)
    sa = km.accept_child_sa(ike.proposal(peer, remote_addr="198.51.100.9", proto="tcp", trigger=ft))
    assert not sa.selectors.is_point() and sa.selectors.contains(ft)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    info = km.inquire_latch(h)
    assert info.state == LatchState.ESTABLISHED and info.peer == peer and info.protection == GCM16
    assert [s.sa_id for s in info.sas] == [sa.sa_id]
    assert (info.sas[0].inbound_index, info.sas[0].inbound_generation) == \
        (sa.inbound.index, sa.inbound.generation)


def test_connection_latch_refused_over_conflicting_sas(km, ike):
    """"Non-listener connection latches MUST NOT be created if there exist conflicting SAs in the
    SAD at the time the connection latch is requested ..." """
    ft = tcp("198.51.100.9", 5000, 22)
    km.accept_child_sa(ike.proposal(btns_peer(1), remote_addr="198.51.100.9", proto="tcp", trigger=ft))
    km.accept_child_sa(ike.proposal(btns_peer(2), remote_addr="198.51.100.0-198.51.100.20", proto="tcp",
                                    trigger=ft))
    # Plain IPsec allows both (no latch yet): two peers' SAs now match the 5-tuple.
    matching = km.sad.matching(tcp("198.51.100.9", 5000, 22))
    assert len({sa.peer for sa in matching}) == 2
    before = snapshot(km)
    with pytest.raises(LatchConflict, match=r"Conflicting child SAs 1 and 2 match proto 6 "
                                            r"192.0.2.1:5000 <-> 198.51.100.9:22 \(different peer or protection\)"):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert snapshot(km) == before


def test_latch_from_listener_refused_over_conflicting_sas(km, ike):
    """"Non-listener connection latches MUST NOT be created if there exist conflicting SAs in the
    SAD at the time the connection latch is requested or would be created (from a listener
    latch)." """
    ft = tcp("198.51.100.7", 143, 40000)
    # An SA of peer 1 covers the host before anyone listens.
    km.accept_child_sa(ike.proposal(btns_peer(1), remote_addr="198.51.100.7", proto="tcp", trigger=ft))
    km.create_listener_latch(LOCAL, "tcp", 143)
    before = snapshot(km)
    with pytest.raises(ChildSaRejected, match=r"cannot be created from listener 1: child SA 1 of peer "
                                              r"public-key:.* conflicts"):
        km.accept_child_sa(ike.for_tuple(btns_peer(2), ft))
    assert snapshot(km) == before


def test_connection_latch_established_directly_with_all_arguments(km):
    """"If the caller provided all the optional arguments to this operation then the resulting
    connection latch can be created in the ESTABLISHED state directly." """
    peer, me = cert_peer("mail.corp.example"), cert_peer("me.corp.example")
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 993, qop=GCM16_256,
                                   peer_id=peer, local_id=me)
    info = km.inquire_latch(h)
    assert info.state == LatchState.ESTABLISHED
    assert (info.peer, info.local_id, info.protection) == (peer, me, GCM16_256)


def test_connection_latch_asks_ike_for_child_sas(km, ike):
    """"If there exist no child SAs matching the given 5-tuple then the key manager SHOULD try to
    create a pair of child SAs for that 5-tuple." """
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, qop=GCM16_256)
    assert ike.events == [IkeEvent("acquire", five_tuple=km.inquire_latch(h).tuple,
                                   protection=GCM16_256, peer=None)]


def test_proposals_narrowed_to_match_no_latch_or_exactly_one(km, ike):
    """"When the key manager tries to create child SAs it should narrow the proposals so that
    their traffic selector match no connection latches in the LARVAL or ESTABLISHED states, or so
    that they match only the 5-tuple of a single such connection latch." """
    a = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    b = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    km.create_connection_latch(LOCAL, "198.51.100.30", "udp", 53, 53)
    peer = btns_peer(1)
    # Untriggered, whole LAN: narrowed to avoid all three.
    r = km.narrow(ike.proposal(peer, remote_addr=LAN))
    assert r.latch is None and not km.ld.live_in_box(r.selectors)
    # Triggered by a's 5-tuple: exactly a.
    r = km.narrow(ike.proposal(peer, remote_addr=LAN, trigger=tcp("198.51.100.9", 5000, 22)))
    assert r.latch == a and r.selectors.is_point()
    # Triggered by a neighbour of b's: a box containing it and no latch.
    near = tcp("198.51.100.9", 5002, 22)
    r = km.narrow(ike.proposal(peer, remote_addr=LAN, trigger=near))
    assert r.latch is None and r.selectors.contains(near) and not km.ld.live_in_box(r.selectors)
    # IKE may ask before it has keys, with the selectors alone.
    from ipchan.sw.keymgr import Box, SelectorProposal
    r = km.narrow(SelectorProposal(peer, Box.parse(local_addr=LOCAL, remote_addr=LAN), GCM16,
                                   trigger=tcp("198.51.100.9", 5001, 22)))
    assert r.latch == b and r.selectors.is_point() and r.conflict is None
    # Accepting the triggered proposal establishes b, exactly.
    res = km.accept_child_sa(ike.proposal(peer, remote_addr=LAN, trigger=tcp("198.51.100.9", 5001, 22)))
    assert res.latch == b and km.inquire_latch(b).state == LatchState.ESTABLISHED
    assert res.selectors == tcp("198.51.100.9", 5001, 22).box()
    assert km.inquire_latch(a).state == LatchState.LARVAL


# --- RELEASE_LATCH and INQUIRE_LATCH -------------------------------------------------------------

def test_release_closes_and_deletes(km):
    """"Changes the state of the given connection latch to CLOSED; the connection latch is then
    deleted." """
    holder = Holder()
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, holder=holder)
    v = km.release_latch(h)
    assert [(e.kind, e.handle, e.version) for e in holder.events] == [("closed", h, v)]
    with pytest.raises(UnknownLatch, match=f"No latch has handle {h} \\(never created, or released\\)"):
        km.inquire_latch(h)
    assert h not in km.latches() and km.store.latch_records() == []


def test_release_deletes_child_sas_and_tells_peer(km, ike, engine):
    """"The key manager SHOULD delete any existing child SAs that match the given latch if it had
    been in the LARVAL or ESTABLISHED states.  If the key manager does delete such SAs then it
    SHOULD inform the peer with an informational Delete payload" (an IkeEvent "delete")."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    res = km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    assert res.latch == h
    assert {e.spi for e in engine.entries()} == {res.inbound.spi, res.outbound.spi}
    ike.events.clear()
    km.release_latch(h)
    assert list(engine.entries()) == [] and km.child_sas() == []
    assert [(e.kind, e.sa.sa_id) for e in ike.events] == [("delete", res.sa_id)]
    assert not engine.lookup(res.inbound.spi).found


def test_release_keeps_sas_shared_with_other_latches(km, ike, engine):
    """"IPsec state related to connection latches MUST be torn down when latched connections are
    torn down" -- but only state that is this latch's: a host-wide SA serving another latch stays."""
    km.accept_child_sa(ike.proposal(btns_peer(1), remote_addr="198.51.100.9", proto="tcp",
                                    trigger=tcp("198.51.100.9", 5000, 22)))
    a = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    b = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    km.release_latch(a)
    assert len(km.child_sas()) == 1 and len(list(engine.entries())) == 2
    assert km.inquire_latch(b).state == LatchState.ESTABLISHED


def test_inquire_returns_everything_latched(km, ike):
    """"INQUIRE_LATCH(latch object handle) -> latch state, latched parameters: Returns all
    available information about the given latch."  and "Implementations that provide such
    programming interfaces MUST make available to applications all relevant information about a
    peer's ID, including authentication information.  This includes the peer certificate, when one
    is used, and the trust anchor that it was validated to." """
    peer = cert_peer("imap.corp.example")
    me = cert_peer("me.corp.example")
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 993, qop=GCM16)
    res = km.accept_child_sa(ike.for_tuple(peer, km.inquire_latch(h).tuple, local_id=me,
                                           protection=GCM16_256))
    info = km.inquire_latch(h)
    assert info.state == LatchState.ESTABLISHED
    assert info.peer.auth.certificate == peer.auth.certificate
    assert info.peer.auth.trust_anchor == "Corp CA" and info.local_id == me
    assert info.protection == GCM16_256 and info.type_of_protection == "confidentiality+integrity"
    assert info.protection.key_bits == 256 and info.protection.icv_len == 16
    assert info.protection.replay_window == 64 and info.mode.name == "TRANSPORT"
    assert info.requested_protection == GCM16
    assert [(s.inbound_index, s.inbound_generation, s.outbound_index, s.outbound_generation)
            for s in info.sas] == [(res.inbound.index, res.inbound.generation,
                                    res.outbound.index, res.outbound.generation)]
    assert info.established_version == res.version
    d = info.as_dict()
    assert d["peer"]["auth"]["certificate"] == peer.auth.certificate.hex()
    assert d["protection"]["algorithm"] == "aes-gcm-16"


def test_inquire_shows_btns_raw_public_key(km, ike):
    """"... all relevant information about a peer's ID, including authentication information" for
    a BTNS peer: its raw public key, and no trust anchor."""
    peer = btns_peer(9)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    km.accept_child_sa(ike.for_tuple(peer, km.inquire_latch(h).tuple))
    auth = km.inquire_latch(h).peer.auth
    assert auth.method == "raw-public-key" and auth.public_key == bytes([9]) * 32
    assert auth.trust_anchor is None


def test_inquire_shows_nat_information(km, ike):
    """"Implementations that provide such programming interfaces SHOULD make available to
    applications any available NAT-related information about the peer: whether it is behind a NAT
    and, if it is, the inner and outer tunnel addresses of the peer." """
    nat = NatInfo(peer_behind_nat=True, peer_outer_addr="203.0.113.50", peer_outer_port=4500,
                  peer_inner_addr="198.51.100.9")
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple, nat=nat))
    assert km.inquire_latch(h).nat == nat
    assert km.inquire_latch(h).as_dict()["nat"]["peer_outer_addr"] == "203.0.113.50"


def test_ld_updated_when_latch_created_deleted_broken(km):
    """"Needless to say, the LD is updated whenever a connection latch object is created, deleted
    or broken." """
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert [r["handle"] for r in km.store.latch_records()] == [h]
    km.break_latch(h, "test")
    assert km.store.latch_records()[0]["state"] == "broken"
    assert km.inquire_latch(h).reason == "test"
    km.release_latch(h)
    assert km.store.latch_records() == []


# --- Conflicts ------------------------------------------------------------------------------------

def test_key_manager_prevents_conflicts_amongst_latches(km):
    """"In particular the IPsec key manager MUST prevent conflicts amongst latches" -- one live
    latch per 5-tuple, one listener per 3-tuple; a BROKEN latch does not hold its 5-tuple."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    with pytest.raises(LatchConflict):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    km.break_latch(h)
    h2 = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert km.inquire_latch(h2).state == LatchState.LARVAL


def test_conflicting_proposal_narrowed_when_possible(km, ike):
    """"Child SA proposals that would conflict with an extant connection latch and whose traffic
    selectors can be narrowed to avoid the conflict MUST be narrowed (see section 2.9 of
    [RFC4306])" """
    owner = btns_peer(1)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    km.accept_child_sa(ike.for_tuple(owner, km.inquire_latch(h).tuple))
    holder = Holder()
    km.set_holder(h, holder)
    # Another peer proposes the whole LAN, triggered by some other connection.
    other = tcp("198.51.100.40", 6000, 80)
    res = km.accept_child_sa(ike.proposal(btns_peer(2), remote_addr=LAN, trigger=other))
    assert res.broken == () and holder.events == []
    assert not res.selectors.contains(km.inquire_latch(h).tuple) and res.selectors.contains(other)
    assert km.inquire_latch(h).state == LatchState.ESTABLISHED and km.inquire_latch(h).peer == owner


def test_unnarrowable_conflict_breaks_latch_before_accepting(km, ike, engine):
    """"Where child SA proposals that would conflict with an extant connection latch cannot be
    narrowed to avoid the conflict the key manager MUST break the connection latch and inform the
    holder (the ULP) prior to accepting the conflicting SAs." """
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    newcomer = ike.for_tuple(btns_peer(2), ft)
    seen = []

    def holder(event):
        # At the moment the holder hears, the newcomer's SA must not be visible yet.
        seen.append((event.kind, engine.lookup(newcomer.inbound_spi).found, event.version))
    km.set_holder(h, holder)
    res = km.accept_child_sa(newcomer)
    assert seen == [("broken", False, res.version - 1)]
    assert res.broken == (h,) and engine.lookup(newcomer.inbound_spi).found
    assert km.inquire_latch(h).state == LatchState.BROKEN
    assert "conflict (section 2.4)" in km.inquire_latch(h).reason


def test_rekey_with_same_parameters_is_not_a_conflict(km, ike):
    """"A child SA conflicts with another, in view of a latch, if and only if: a) its traffic
    selectors and the conflicting SA's match the give latch's, b) its peer, type of protection, or
    quality of protection parameters differ from the conflicting SA." -- same peer and protection:
    no conflict, the latch takes the new SA."""
    peer = btns_peer(1)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    first = km.accept_child_sa(ike.for_tuple(peer, ft))
    second = km.accept_child_sa(ike.for_tuple(peer, ft))
    assert second.broken == () and second.latch == h
    assert [s.sa_id for s in km.inquire_latch(h).sas] == [first.sa_id, second.sa_id]
    km.delete_child_sa(first.sa_id)
    assert [s.sa_id for s in km.inquire_latch(h).sas] == [second.sa_id]
    assert km.inquire_latch(h).state == LatchState.ESTABLISHED


def test_latched_parameters_never_change(km, ike):
    """"The parameters latched in an IPsec channel MUST remain unchanged once the channel is
    established." -- an SA of the same peer with other protection conflicts."""
    peer = btns_peer(1)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    km.accept_child_sa(ike.for_tuple(peer, ft))
    latched = km.inquire_latch(h)
    km.accept_child_sa(ike.for_tuple(peer, ft, protection=GCM16_256))
    after = km.inquire_latch(h)
    assert after.state == LatchState.BROKEN
    assert (after.peer, after.protection, after.established_version) == \
        (latched.peer, latched.protection, latched.established_version)


def test_requested_peer_enforced(km, ike):
    """"Implementations SHOULD provide applications with some control ... over what quality of
    protection, or the expected identity of a peer." -- an SA from another peer cannot establish
    the latch."""
    want = cert_peer("imap.corp.example")
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 993, peer_id=want)
    ft = km.inquire_latch(h).tuple
    r = km.narrow(ike.for_tuple(btns_peer(1), ft))
    assert r.latch == h and "is not the requested peer" in r.conflict
    res = km.accept_child_sa(ike.for_tuple(want, ft))
    assert km.inquire_latch(h).peer == want and res.latch == h


def test_spd_change_preserves_latched_protection(km):
    """"When such a configuration change takes place the key manager MUST either preserve a
    logical SPD entry such that the latched connection continues to obtain the required
    protection ..." (the default, spd_change="preserve")."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    v0 = km.version()
    result = km.insert_spd_entry(SpdEntry.parse("oops", action="bypass", local_addr=LOCAL,
                                                remote_addr="198.51.100.9"), 0)
    assert result.preserved == (h,) and result.version == v0 + 1
    d = km.spd.decide(ft)
    assert d.action == "protect" and d.protection == GCM16 and d.logical.reason == "preserved"
    # Another connection to that host now follows the new entry.
    assert km.spd.decide(tcp("198.51.100.9", 5001, 22)).action == "bypass"
    assert km.inquire_latch(h).preserved and km.inquire_latch(h).state == LatchState.LARVAL


def test_spd_change_breaks_latch_first_when_configured(engine, ike):
    """"... or the key manager MUST break the latch and inform the latch holder (ULP) before the
    change takes place." (spd_change="break")"""
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, spd_change="break")
    ft = tcp("198.51.100.9", 5000, 22)
    seen = []
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22,
                                   holder=lambda e: seen.append((e.kind, km.spd.decide(ft).action)))
    km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    result = km.replace_spd([SpdEntry.parse("all-bypass", action="bypass", local_addr=LOCAL,
                                            remote_addr=LAN)])
    assert result.broken == (h,)
    # The holder heard while the old SPD (PROTECT) was still in force.
    assert seen == [("broken", "protect")]
    assert km.spd.decide(ft).action == "bypass"
    assert km.child_sas() == []   # its dedicated SA went with it


def test_spd_change_that_keeps_protection_touches_nothing(km, ike):
    """"... the key manager MUST protect latched connections against SPD changes that would change
    the quality of protection afforded to a latched connection's traffic, or which would bypass
    it." -- a change that does neither leaves the latch and the version alone."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple, protection=GCM16_256))
    v = km.version()
    result = km.insert_spd_entry(SpdEntry.parse("stricter", action="protect", local_addr=LOCAL,
                                                remote_addr="198.51.100.9", protection=GCM16_256), 0)
    assert result == type(result)((), (), None) and km.version() == v
    result = km.insert_spd_entry(SpdEntry.parse("strictest", action="protect", local_addr=LOCAL,
                                                remote_addr="198.51.100.9",
                                                protection=Protection("aes-gcm-16", 256, esn=True)), 0)
    assert result.preserved == (h,)


# --- The race rule --------------------------------------------------------------------------------

def test_version_moves_once_per_change_atomically_with_sad_and_ld(km, ike, engine):
    """"Implementations MUST prevent such races.  One method to prevent these races is to tag
    packets passed up by the ESP/AH layer with a key manager state version number that is
    monotonically incremented every time that connection latching state changes; this version
    number must be incremented atomically relative to the SAD and the LD, including SAD subsets
    stored on IPsec offload hardware." """
    versions = [km.version()]
    listener = km.create_listener_latch(LOCAL, "tcp", 143)
    versions.append(km.version())
    ft = tcp("198.51.100.7", 143, 40000)
    proposal = ike.for_tuple(btns_peer(1), ft)
    commits = engine.counters()["commits"]
    res = km.accept_child_sa(proposal)
    versions.append(km.version())
    # The SA and the latch appeared in one engine commit, at the version the LD recorded.
    assert engine.counters()["commits"] == commits + 1
    look = engine.lookup(proposal.inbound_spi)
    assert look.found and (look.index, look.generation) == (res.inbound.index, res.inbound.generation)
    assert look.version == res.version == km.inquire_latch(res.created).established_version
    assert km.store.get_meta("version") == str(res.version)
    km.release_latch(res.created)
    versions.append(km.version())
    km.release_latch(listener)
    versions.append(km.version())
    assert versions == list(range(versions[0], versions[0] + 5))


def test_reused_slot_gets_new_generation(km, ike):
    """A tagged inbound packet can be judged by (SA index, generation, version) alone: a slot that
    is reused for another latch's SA reads a new generation."""
    ft = tcp("198.51.100.7", 5000, 22)
    a = km.create_connection_latch(LOCAL, "198.51.100.7", "tcp", 5000, 22)
    first = km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    km.release_latch(a)
    refs = {}
    for port in range(5001, 5001 + 40):
        h = km.create_connection_latch(LOCAL, "198.51.100.7", "tcp", port, 22)
        r = km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple))
        refs[(r.inbound.index)] = r.inbound.generation
        if r.inbound.index == first.inbound.index:
            assert r.inbound.generation != first.inbound.generation
            break
    else:
        pytest.fail("slot never reused")


def test_larval_latch_has_no_sa_until_established(km, engine):
    """"If an IPsec channel is desired then packets for a given connection MUST NOT be sent until
    the channel is established." -- the ULP's duty; the key manager's part is that a LARVAL latch
    names no SA for the ULP to use."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert km.inquire_latch(h).sas == () and list(engine.entries()) == []


def test_inbound_packets_judged_by_index_generation_and_version(km, ike, engine):
    """"As a result ULPs may not be able to trust some packets even though a suitable connection
    latch object may exist.  Implementations MUST prevent such races." -- a tagged inbound packet
    is judged by (SA index, generation, version) alone; the engine's own lookup gives the tag."""
    ft = tcp("198.51.100.7", 143, 40000)
    km.create_listener_latch(LOCAL, "tcp", 143)
    old = ike.for_tuple(btns_peer(1), ft)
    first = km.accept_child_sa(old)
    old_tag = engine.lookup(old.inbound_spi)
    assert km.check_inbound(first.created, old_tag.index, old_tag.generation, old_tag.version)
    # A packet whose SA was looked up before the latch existed cannot be trusted.
    assert not km.check_inbound(first.created, old_tag.index, old_tag.generation, old_tag.version - 1)
    # Section 2.4: another peer takes over the 5-tuple; the old peer's tag no longer passes, for
    # the broken latch or the new one, and the new peer's does, for the new one only.
    new = ike.for_tuple(btns_peer(2), ft)
    second = km.accept_child_sa(new)
    new_tag = engine.lookup(new.inbound_spi)
    assert not km.check_inbound(first.created, old_tag.index, old_tag.generation, new_tag.version)
    assert not km.check_inbound(second.created, old_tag.index, old_tag.generation, old_tag.version)
    assert km.check_inbound(second.created, new_tag.index, new_tag.generation, new_tag.version)
    assert not km.check_inbound(first.created, new_tag.index, new_tag.generation, new_tag.version)
    # After its SA is deleted and its slot reused, the slot's new generation names another SA.
    km.delete_child_sa(second.sa_id)
    assert not km.check_inbound(second.created, new_tag.index, new_tag.generation, km.version())
    with pytest.raises(ValueError, match=r"Generation must not be negative, not -1"):
        km.check_inbound(second.created, 0, -1, 0)
    with pytest.raises(TypeError, match=r"Version must be an integer, not '7'"):
        km.check_inbound(second.created, 0, 1, "7")


def test_removing_the_protecting_entry_is_preserved_against_until_release(km):
    """"... the key manager MUST either preserve a logical SPD entry such that the latched
    connection continues to obtain the required protection" -- also when the entry that protected
    it is removed; the logical entry lasts as long as the latch."""
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    assert km.remove_spd_entry("lan").preserved == (h,)
    assert km.spd.decide(ft).action == "protect"
    assert km.spd.decide(tcp("198.51.100.9", 5001, 22)).action == "discard"
    km.release_latch(h)
    assert km.spd.decide(ft).action == "discard" and km.spd.logical_entries() == []


def test_ipv6_latches_and_narrowing(engine, ike):
    """The same rules for IPv6 5-tuples (addresses of another family never meet)."""
    from ipchan.sw.keymgr import PadEntry
    spd = [SpdEntry.parse("v6", action="protect", local_addr="2001:db8::1", remote_addr="2001:db8:1::/48",
                          protection=GCM16)]
    pad = [PadEntry.parse("btns6", id_type="public-key", pattern="*", auth="raw-public-key",
                          addresses=["2001:db8:1::/48"])]
    km = KeyManager(engine, spd=spd, pad=pad, ike=ike)
    h = km.create_connection_latch("2001:db8::1", "2001:db8:1::9", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    other = FiveTuple.parse("2001:db8::1", "2001:db8:1::a", "tcp", 5000, 22)
    r = km.narrow(ike.proposal(btns_peer(1), local_addr="2001:db8::1", remote_addr="2001:db8:1::/48",
                               trigger=other))
    assert r.selectors.contains(other) and not r.selectors.contains(ft) and r.latch is None
    res = km.accept_child_sa(ike.proposal(btns_peer(1), local_addr="2001:db8::1",
                                          remote_addr="2001:db8:1::/48", trigger=ft))
    assert res.latch == h and km.inquire_latch(h).tuple_dict["remote_addr"] == "2001:db8:1::9"
    with pytest.raises(PolicyError, match=r"SPD has no entry for traffic to proto 6 192.0.2.1:80"):
        km.create_listener_latch(LOCAL, "tcp", 80)


def test_failing_holder_does_not_undo_the_change(km, caplog):
    """A holder that raises is logged and counted; the change it was told about stands, and other
    holders still hear."""
    def bad(event):
        raise RuntimeError("ULP bug")
    good = Holder()
    a = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, holder=bad)
    b = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22, holder=good)
    km.release_latch(a)
    km.release_latch(b)
    assert km.holder_errors == 1 and good.kinds() == ["closed"] and km.latches() == []
    assert "Latch holder" in caplog.text and "ULP bug" in caplog.text


# --- Section 2's requirements on packets, as the key manager answers for them -------------------

def test_inbound_packets_dropped_until_the_channel_is_established(km, ike):
    """"If an IPsec channel is desired then inbound packets for a given connection MUST NOT be
    accepted (they MUST be dropped) until the channel is established." -- a LARVAL latch accepts
    no tag, not even one of a genuine SA that protects other traffic; once its own SA is accepted
    it accepts that SA's tags."""
    other = km.create_connection_latch(LOCAL, "198.51.100.8", "tcp", 5000, 22)
    other_sa = km.accept_child_sa(ike.for_tuple(btns_peer(1), tcp("198.51.100.8", 5000, 22)))
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    assert km.inquire_latch(h).state == LatchState.LARVAL
    tag = other_sa.inbound
    assert km.check_inbound(other, tag.index, tag.generation, km.version())
    assert not km.check_inbound(h, tag.index, tag.generation, km.version())
    own = km.accept_child_sa(ike.for_tuple(btns_peer(2), tcp("198.51.100.9", 5000, 22)))
    assert own.latch == h and km.inquire_latch(h).state == LatchState.ESTABLISHED
    assert km.check_inbound(h, own.inbound.index, own.inbound.generation, km.version())


def test_established_channel_refuses_sas_that_do_not_match_its_parameters(km, ike):
    """"Once an IPsec channel is established packets for the latched connection MUST NOT be
    accepted unprotected nor protected by an SA that does not match the latched parameters (i.e.,
    such packets MUST be dropped)." -- the tag of an SA of another latch (another peer) is
    refused; the outbound SA the latch names for sending is its own SA's, and only its own."""
    a = km.create_connection_latch(LOCAL, "198.51.100.8", "tcp", 5000, 22)
    b = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    sa_a = km.accept_child_sa(ike.for_tuple(btns_peer(1), tcp("198.51.100.8", 5000, 22)))
    sa_b = km.accept_child_sa(ike.for_tuple(btns_peer(2), tcp("198.51.100.9", 5000, 22)))
    v = km.version()
    assert not km.check_inbound(a, sa_b.inbound.index, sa_b.inbound.generation, v)
    assert not km.check_inbound(b, sa_a.inbound.index, sa_a.inbound.generation, v)
    # The outbound slot is never one a latch may check inbound packets against.
    assert not km.check_inbound(a, sa_a.outbound.index, sa_a.outbound.generation, v)
    [s] = km.inquire_latch(a).sas
    assert (s.outbound_index, s.outbound_generation) == (sa_a.outbound.index, sa_a.outbound.generation)


def test_timeouts_while_establishing_are_packet_loss(km, ike):
    """"Timeouts while establishing an SA with parameters that match a those latched into an IPsec
    channel MUST be treated as packet loss" -- the key manager never breaks a LARVAL latch for want
    of an SA: it stays LARVAL, with IKE asked once, until a matching SA arrives (or the ULP gives
    up and releases it)."""
    holder = Holder()
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, holder=holder)
    assert [e.kind for e in ike.events] == ["acquire"]
    # Other changes come and go while the SA is not there; none of them touches the latch.
    for port in range(6000, 6010):
        km.release_latch(km.create_connection_latch(LOCAL, "198.51.100.10", "tcp", port, 22))
    assert km.inquire_latch(h).state == LatchState.LARVAL and holder.events == []
    res = km.accept_child_sa(ike.for_tuple(btns_peer(1), tcp("198.51.100.9", 5000, 22)))
    assert res.latch == h and km.inquire_latch(h).state == LatchState.ESTABLISHED
