"""Section 2.4 (conflict resolution) end to end on the golden model, and section 3 (optional
protection)."""

import pytest

from ipchan.sw.keymgr import (ChildSaRejected, KeyManager, LatchState, PolicyError, PrivilegeError,
                              Protection, SpdEntry)

from conftest import (GCM8, GCM16, GCM16_256, LAN, LOCAL, Holder, btns_peer, cert_peer,
                      default_pad, default_spd, snapshot, tcp)


# --- Section 2.4 ----------------------------------------------------------------------------------

def _imap_scenario(km, ike, engine):
    """The IMAP server of section 2.4: a listener, a first peer's long-lived connection."""
    server = Holder()
    listener = km.create_listener_latch(LOCAL, "tcp", 143, holder=server)
    ft = tcp("198.51.100.7", 143, 40000)
    first_peer = cert_peer("laptop1.corp.example")
    first = km.accept_child_sa(ike.for_tuple(first_peer, ft))
    conn = first.created
    tcb = Holder()
    km.set_holder(conn, tcb)
    return server, listener, ft, first_peer, first, conn, tcb


def test_section_2_4_default_terminates_existing_connection(km, ike, engine):
    """"Implementors MUST provide termination of the existing connection as the default behaviour
    in such cases." -- a peer disappears, another takes its address and opens the same 5-tuple."""
    _section_2_4_scenario(km, ike, engine)


def test_section_2_4_scenario_on_verilator(ike):
    """The same scenario with the engine a Verilator simulation of the gateware. (The default
    parameters, so that it shares its cached build with the other Verilator tests.)"""
    from ipchan.hw.contract import EngineParams
    from ipchan.sw.backends import open_engine
    engine = open_engine("verilator", EngineParams())
    try:
        km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike)
        _section_2_4_scenario(km, ike, engine)
    finally:
        engine.close()


def _section_2_4_scenario(km, ike, engine):
    server, listener, ft, first_peer, first, conn, tcb = _imap_scenario(km, ike, engine)
    assert km.conflict == "terminate"
    # The first peer's laptop dies; a second peer gets its DHCP address and opens the same 5-tuple.
    second_peer = cert_peer("laptop2.corp.example")
    proposal = ike.proposal(second_peer, remote_addr=LAN, trigger=ft)
    plan = km.narrow(proposal)
    assert plan.latch == conn and plan.selectors == ft.box() and "laptop1" in plan.conflict
    v0 = km.version()
    result = km.accept_child_sa(proposal)
    # The existing connection was terminated: latch broken, its holder told, its SA deleted.
    assert result.broken == (conn,)
    assert [(e.kind, e.handle, e.version) for e in tcb.events] == [("broken", conn, v0 + 1)]
    assert km.inquire_latch(conn).state == LatchState.BROKEN
    assert not engine.lookup(first.inbound.spi).found
    assert km.inquire_latch(conn).peer == first_peer          # what it was latched to stays visible
    # The newcomer's connection is latched afresh from the listener, at the next version.
    assert result.version == v0 + 2 and result.created not in (None, conn)
    new = km.inquire_latch(result.created)
    assert new.state == LatchState.ESTABLISHED and new.peer == second_peer and new.tuple == ft
    look = engine.lookup(proposal.inbound_spi)
    assert look.found and look.version == result.version
    assert (look.index, look.generation) == (new.sas[0].inbound_index, new.sas[0].inbound_generation)
    assert [e.kind for e in server.events] == ["created", "created"]
    # The ULP resets the old connection and releases the broken latch.
    km.release_latch(conn)
    assert [e.kind for e in tcb.events] == ["broken", "closed"]
    assert km.latches() == [listener, result.created]


def test_section_2_4_reject_option(engine, ike):
    """"Implementors MAY provide a configuration option for selecting the other behaviours." --
    conflict="reject" refuses the newcomer's child SA and changes nothing."""
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, conflict="reject")
    server, listener, ft, first_peer, first, conn, tcb = _imap_scenario(km, ike, engine)
    before = snapshot(km)
    proposal = ike.proposal(cert_peer("laptop2.corp.example"), remote_addr=LAN, trigger=ft)
    with pytest.raises(ChildSaRejected, match=r"rejected \(section 2.4, conflict='reject'\): latch 2 "
                                              r"is latched to peer fqdn:laptop1.corp.example"):
        km.accept_child_sa(proposal)
    assert snapshot(km) == before and tcb.events == []
    assert not engine.lookup(proposal.inbound_spi).found


def test_section_2_4_btns_peer_with_other_key_is_another_peer(km, ike, engine):
    """Section 2.4 with BTNS peers: "The new peer's TCP SYN packet will fail to match the existing
    connection's latch." -- a raw-key peer coming back with a different key is a different peer."""
    h = km.create_connection_latch(LOCAL, "198.51.100.7", "tcp", 5000, 22)
    ft = km.inquire_latch(h).tuple
    km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    res = km.accept_child_sa(ike.for_tuple(btns_peer(2), ft))
    assert res.broken == (h,) and res.created is None and res.latch is None


# --- Section 3 ------------------------------------------------------------------------------------

def test_requested_protection_must_meet_spd_for_connection_latches(km):
    """"... for the model described in Section 2.1 the check that requested protection meets or
    exceeds that required by the SPD is performed by the IPsec key manager when creating connection
    latch and connection latch listener objects." (connection latches)"""
    before = snapshot(km)
    with pytest.raises(PolicyError, match=r"Requested protection aes-gcm-8 aes-128 icv 8 window 64 "
                                          r"transport is below what SPD entry 'lan' requires \(aes-gcm-16"):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, qop=GCM8)
    assert snapshot(km) == before
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, qop=GCM16_256)
    assert km.inquire_latch(h).requested_protection == GCM16_256


def test_requested_protection_must_meet_spd_for_listeners(km):
    """"... performed by the IPsec key manager when creating connection latch and connection latch
    listener objects." (listeners)"""
    before = snapshot(km)
    with pytest.raises(PolicyError, match="is below what SPD entry 'lan' requires"):
        km.create_listener_latch(LOCAL, "tcp", 143, qop=Protection("aes-gmac", 256))
    assert snapshot(km) == before


def test_requested_protection_limited_by_policy(km):
    """"... these interfaces MUST limit what values applications may request according to system
    policy (i.e., the IPsec PAD and SPD) and the application's privilege." """
    before = snapshot(km)
    with pytest.raises(PolicyError, match=r"SPD entry 'blocked' discards proto 6 192.0.2.1:1 <-> 203.0.113.5:2"):
        km.create_connection_latch(LOCAL, "203.0.113.5", "tcp", 1, 2)
    with pytest.raises(PolicyError, match=r"Policy does not allow optional protection of .* \(SPD entry 'no-optional'\)"):
        km.create_connection_latch(LOCAL, "203.0.113.5", "tcp", 81, 2, qop=GCM16)
    assert snapshot(km) == before


def test_optional_protection_over_bypass_updates_spd_atomically(km, ike, engine):
    """"When an application requests, and IPsec permits, either additional protection, or
    bypassing protection, then the SPD MUST be logically updated such that there exists a suitable
    SPD entry protecting or bypassing the exact 5-tuple recorded by the corresponding connection
    latch.  Such logical SPD updates MUST be made at connection latch creation time, and MUST be
    made atomically" (protection where the SPD says BYPASS: anyone policy allows)."""
    ft = tcp("198.51.100.9", 80, 33000)
    assert km.spd.decide(ft).action == "bypass"
    v0 = km.version()
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 80, 33000, qop=GCM16)
    # Created and logically protected in the same change, at one version.
    assert km.version() == v0 + 1 == km.inquire_latch(h).created_version
    d = km.spd.decide(ft)
    assert (d.action, d.protection, d.logical.handle, d.logical.reason) == \
        ("protect", GCM16, h, "optional-protection")
    assert km.inquire_latch(h).optional == "protect"
    # Only the exact 5-tuple: its neighbour still bypasses.
    assert km.spd.decide(tcp("198.51.100.9", 80, 33001)).action == "bypass"
    # IKE can now negotiate an SA for it, which establishes the latch.
    res = km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    assert res.latch == h and km.inquire_latch(h).state == LatchState.ESTABLISHED
    km.release_latch(h)
    assert km.spd.decide(ft).action == "bypass" and km.spd.logical_entries() == []


def test_optional_protection_for_listener(km, ike):
    """Section 3 for listeners: a listener asking for protection where the SPD says BYPASS gets a
    logical 3-tuple entry, and each connection latch created from it gets its own 5-tuple entry
    ("protecting ... the exact 5-tuple recorded by the corresponding connection latch")."""
    holder = Holder()
    listener = km.create_listener_latch(LOCAL, "tcp", 80, qop=GCM16, holder=holder)
    ft = tcp("198.51.100.9", 80, 33000)
    assert km.spd.decide(ft).action == "protect"
    res = km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    assert res.created is not None and holder.kinds() == ["created"]
    km.release_latch(listener)
    d = km.spd.decide(ft)
    assert d.action == "protect" and d.logical.handle == res.created
    assert km.spd.decide(tcp("198.51.100.9", 80, 33001)).action == "bypass"


def test_bypass_over_protect_needs_privilege(km):
    """"Locally privileged applications could request that their connections' packets be bypassed
    rather than protected; that is, privileged applications could override PROTECT policy." --
    an unprivileged request is refused and changes nothing."""
    before = snapshot(km)
    with pytest.raises(PrivilegeError, match=r"Bypassing protection for proto 6 192.0.2.1:5000 <-> "
                                             r"198.51.100.9:22 needs a privileged caller \(section 3\)"):
        km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, bypass=True)
    assert snapshot(km) == before


def test_privileged_bypass_updates_spd_atomically(km, ike):
    """"... then the SPD MUST be logically updated such that there exists a suitable SPD entry
    ... bypassing the exact 5-tuple recorded by the corresponding connection latch." (a privileged
    BYPASS where the SPD says PROTECT)."""
    ft = tcp("198.51.100.9", 5000, 22)
    v0 = km.version()
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, bypass=True, privileged=True)
    assert km.version() == v0 + 1
    info = km.inquire_latch(h)
    assert info.state == LatchState.ESTABLISHED and info.bypass and info.protection is None
    assert km.spd.decide(ft).action == "bypass"
    assert km.spd.decide(tcp("198.51.100.9", 5001, 22)).action == "protect"
    # No SA may take a bypassed 5-tuple: proposals are narrowed around it or refused on it.
    r = km.narrow(ike.proposal(btns_peer(1), remote_addr=LAN, trigger=tcp("198.51.100.9", 5001, 22)))
    assert not r.selectors.contains(ft)
    with pytest.raises(ChildSaRejected, match="says BYPASS"):
        km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))


def test_optional_spd_updates_do_not_survive_restart(tmp_path, engine, ike):
    """"Such updates of the SPD MUST NOT survive system crashes or reboots." (section 3; likewise
    the preserved entries of section 2.1) -- after a restart the latches that depended on them are
    broken, and the logical entries are gone."""
    db = str(tmp_path / "km.db")
    km = KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike, db=db)
    listener = km.create_listener_latch(LOCAL, "tcp", 80, qop=GCM16)
    opt = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 80, 33000, qop=GCM16)
    byp = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22, bypass=True, privileged=True)
    kept = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    pres = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5002, 22)
    km.insert_spd_entry(SpdEntry.parse("hole", action="bypass", local_addr=LOCAL,
                                       remote_addr="198.51.100.9", proto="tcp", local_port=5002), 0)
    assert km.inquire_latch(pres).preserved
    spd_now = list(km.spd.entries)
    km.close()
    again = KeyManager(type(engine)(engine.transport), spd=spd_now, pad=default_pad(), db=db)
    assert again.spd.logical_entries() == []
    states = {h: again.inquire_latch(h).state for h in (opt, byp, kept, pres)}
    assert states == {opt: LatchState.BROKEN, byp: LatchState.BROKEN, kept: LatchState.LARVAL,
                      pres: LatchState.BROKEN}
    assert "logical SPD entry is gone" in again.inquire_latch(opt).reason
    assert dict(again.restart_report.broken).keys() == {opt, byp, pres}
    # The listener is restored, without its optional-protection entry.
    assert again.restart_report.dropped_logical == (listener,)
    assert again.inquire_latch(listener).state == LatchState.LISTENER
    assert again.spd.decide(tcp("198.51.100.9", 80, 1)).action == "bypass"


def test_conflict_on_a_preserved_latch_is_checked_against_the_spd_it_would_leave(km, ike):
    """Found by the stateful test: a latch kept by a preserved logical entry (section 2.1) meets a
    newcomer (section 2.4). Breaking the latch would drop the logical entry and leave the 5-tuple
    to an SPD that bypasses it, so the newcomer is refused and the latch is not broken."""
    holder = Holder()
    h = km.create_connection_latch(LOCAL, "198.51.100.7", "tcp", 22, 40001, holder=holder)
    ft = km.inquire_latch(h).tuple
    km.accept_child_sa(ike.for_tuple(btns_peer(2), ft))
    km.insert_spd_entry(SpdEntry.parse("hole", action="bypass", local_addr=LOCAL,
                                       remote_addr="198.51.100.7", proto="tcp", local_port=22), 0)
    assert km.inquire_latch(h).preserved
    before = snapshot(km)
    with pytest.raises(ChildSaRejected, match=r"it conflicts with latch 1 \(latch 1 is latched to peer .*\), "
                                              r"and once that latch were broken SPD entry 'hole' would "
                                              r"bypass this 5-tuple"):
        km.accept_child_sa(ike.for_tuple(btns_peer(1), ft))
    assert snapshot(km) == before and holder.events == []
