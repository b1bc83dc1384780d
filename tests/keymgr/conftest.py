"""Shared fixtures for the key manager's tests: a golden-model engine, a small SPD and PAD, and a
helper that plays the IKE daemon's part (it makes child-SA proposals with fresh SPIs and keys)."""

import itertools
import os

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.sw.driver import Engine
from ipchan.sw.keymgr import (AuthInfo, Box, ChildSaProposal, FiveTuple, Identity, KeyManager,
                              PadEntry, Protection, SpdEntry)


LOCAL = "192.0.2.1"
LAN = "198.51.100.0/24"
GCM16 = Protection("aes-gcm-16", 128)
GCM16_256 = Protection("aes-gcm-16", 256)
GCM8 = Protection("aes-gcm-8", 128)
GMAC = Protection("aes-gmac", 128)


def default_spd():
    return [
        # Optional protection (section 3) is allowed for this BYPASS entry.
        SpdEntry.parse("web-bypass", action="bypass", local_addr=LOCAL, remote_addr="*",
                       proto="tcp", local_port=80),
        SpdEntry.parse("no-optional", action="bypass", local_addr=LOCAL, remote_addr="*",
                       proto="tcp", local_port=81, allow_optional_protection=False),
        SpdEntry.parse("lan", action="protect", local_addr=LOCAL, remote_addr=LAN,
                       protection=GCM16),
        SpdEntry.parse("blocked", action="discard", local_addr=LOCAL, remote_addr="203.0.113.0/24"),
    ]


def default_pad():
    return [
        PadEntry.parse("corp", id_type="fqdn", pattern="*.corp.example", auth="certificate",
                       addresses=[LAN], trust_anchors=["Corp CA"]),
        # BTNS: any raw public key may claim any LAN address (the weak binding latching guards).
        PadEntry.parse("btns", id_type="public-key", pattern="*", auth="raw-public-key",
                       addresses=[LAN]),
    ]


def btns_peer(n):
    return Identity.btns(bytes([n]) * 32)


def cert_peer(name, anchor="Corp CA"):
    return Identity("fqdn", name, AuthInfo("certificate", certificate=name.encode() * 4,
                                           trust_anchor=anchor))


class Ike:
    """Plays the IKE daemon: proposals with fresh SPIs and keys, and a log of the key manager's
    requests (acquire, delete)."""

    def __init__(self):
        self._spi = itertools.count(0x1000, 2)
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def proposal(self, peer, *, local_addr=LOCAL, remote_addr, proto="*", local_port="*",
                 remote_port="*", protection=GCM16, trigger=None, local_id=None, nat=None):
        spi = next(self._spi)
        kb = protection.key_size.key_bytes
        return ChildSaProposal(
            peer=peer,
            selectors=Box.parse(local_addr=local_addr, remote_addr=remote_addr, proto=proto,
                                local_port=local_port, remote_port=remote_port),
            protection=protection, inbound_spi=spi, outbound_spi=spi + 1,
            inbound_key=os.urandom(kb), inbound_salt=os.urandom(4),
            outbound_key=os.urandom(kb), outbound_salt=os.urandom(4),
            local_id=local_id, trigger=trigger, nat=nat)

    def for_tuple(self, peer, ft, **kw):
        """A proposal narrowed by the initiator to exactly one 5-tuple (a FiveTuple)."""
        from ipchan.sw.keymgr.selectors import decode_addr
        return self.proposal(peer, local_addr=str(decode_addr(ft.local_addr)),
                             remote_addr=str(decode_addr(ft.remote_addr)), proto=ft.proto,
                             local_port=ft.local_port, remote_port=ft.remote_port, trigger=ft, **kw)


class Holder:
    """A latch holder (the ULP's TCB): records every notification."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def kinds(self):
        return [e.kind for e in self.events]


def tcp(remote, lport, rport, local=LOCAL):
    return FiveTuple.parse(local, remote, "tcp", lport, rport)


@pytest.fixture
def engine():
    return Engine.for_model(EngineParams(n_entries=64))


@pytest.fixture
def ike():
    return Ike()


@pytest.fixture
def km(engine, ike):
    return KeyManager(engine, spd=default_spd(), pad=default_pad(), ike=ike)


def check_invariants(km):
    """The LD, SAD, engine and database agree, and the latching invariants hold."""
    from ipchan.hw.contract import SlotState
    from ipchan.sw.keymgr import LatchState
    seen5, seen3 = set(), set()
    sas = km.child_sas()
    for h in km.latches():
        info = km.inquire_latch(h)
        if info.state in (LatchState.LARVAL, LatchState.ESTABLISHED):
            assert info.tuple not in seen5, f"two live latches on {info.tuple}"
            seen5.add(info.tuple)
        elif info.state == LatchState.LISTENER:
            assert info.tuple not in seen3, f"two listeners on {info.tuple}"
            seen3.add(info.tuple)
        if info.state == LatchState.ESTABLISHED:
            for sa in sas:
                if sa.selectors.contains(info.tuple):
                    assert not info.bypass, f"SA {sa.sa_id} matches bypass latch {h}"
                    assert (sa.peer, sa.protection) == (info.peer, info.protection), \
                        f"SA {sa.sa_id} conflicts with latch {h}"
        for s in info.sas:
            sa = km.child_sa(s.sa_id)
            assert (s.inbound_index, s.inbound_generation) == (sa.inbound.index, sa.inbound.generation)
    slots = {e.index: e for e in km.engine.entries()}
    want = {}
    for sa in sas:
        for ref in (sa.inbound, sa.outbound):
            want[ref.index] = (ref.spi, ref.generation)
    assert {i: (e.spi, e.generation) for i, e in slots.items()} == want
    assert all(e.state == SlotState.LIVE for e in slots.values())
    assert km.engine.staged() == 0
    assert [r["handle"] for r in km.store.latch_records()] == km.latches()
    assert sorted(r["sa_id"] for r in km.store.sa_records()) == sorted(sa.sa_id for sa in sas)
    assert km.store.integrity_check() == "ok"


def snapshot(km):
    """Everything observable about a key manager, to assert that a refused request changed nothing."""
    return (km.engine.version(),
            tuple(km.inquire_latch(h) for h in km.latches()),
            tuple(sorted((sa.sa_id, sa) for sa in km.child_sas())),
            tuple(sorted((e.index, e.spi, e.generation, e.state) for e in km.engine.entries())),
            tuple(sorted(map(repr, km.spd.logical_entries()))),
            km.store.latch_records(), km.store.sa_records())
