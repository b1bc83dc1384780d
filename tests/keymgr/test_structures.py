"""The key manager's data structures against brute force: selectors, the sorted list, the prefix
index, the SPD, the PAD and the LD's box queries."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipchan.sw.keymgr import (AuthInfo, Box, FiveTuple, Identity, Pad, PadEntry, Protection, Spd,
                              SpdEntry)
from ipchan.sw.keymgr.latch import Latch, LatchState
from ipchan.sw.keymgr.ld import LatchDatabase
from ipchan.sw.keymgr.prefixindex import PrefixIndex, cidr_blocks
from ipchan.sw.keymgr.selectors import decode_addr, encode_addr, parse_addr_range, parse_port_range
from ipchan.sw.keymgr.sortedlist import SortedList

from conftest import GCM16, GCM16_256, GMAC, btns_peer, cert_peer


V4 = 4 << 128
v4 = st.integers(0, 2**32 - 1).map(lambda x: V4 | x)
small_v4 = st.integers(0, 255).map(lambda x: V4 | 0x0A000000 | x)


def _check_sorted_list(adds, removes, lo):
    sl, ref = SortedList(), []
    for x in adds:
        sl.add(x)
        ref.append(x)
    ref.sort()
    for x in removes:
        if x in ref:
            ref.remove(x)
            sl.remove(x)
        else:
            with pytest.raises(KeyError):
                sl.remove(x)
    assert list(sl) == ref and len(sl) == len(ref)
    assert list(sl.irange(lo)) == [x for x in ref if x >= lo]
    assert all((x in sl) == (x in ref) for x in range(-55, 55, 7))


test_sorted_list_matches_sorted = given(
    st.lists(st.integers(-50, 50)), st.lists(st.integers(-50, 50)), st.integers(-60, 60)
)(settings(max_examples=60)(_check_sorted_list))


def test_sorted_list_splits_blocks():
    import random
    rng = random.Random(1)
    keys = rng.sample(range(100000), 5000)
    _check_sorted_list(keys, keys[::3], 50000)


@given(v4, v4)
@settings(max_examples=200, deadline=None)
def test_cidr_blocks_tile_the_range_exactly(a, b):
    lo, hi = min(a, b), max(a, b)
    blocks = cidr_blocks(lo, hi)
    covered = []
    for family, plen, network in blocks:
        size = 1 << (32 - plen)
        assert network % size == 0
        covered.append((network, network + size - 1))
    covered.sort()
    assert covered[0][0] == lo & 0xFFFFFFFF and covered[-1][1] == hi & 0xFFFFFFFF
    assert all(x[1] + 1 == y[0] for x, y in zip(covered, covered[1:]))
    assert len(blocks) <= 62


@given(st.lists(st.tuples(small_v4, small_v4), max_size=20), st.lists(small_v4, max_size=10))
@settings(max_examples=100, deadline=None)
def test_prefix_index_stab_matches_brute_force(ranges, probes):
    idx = PrefixIndex()
    ranges = [(min(a, b), max(a, b)) for a, b in ranges]
    for i, (lo, hi) in enumerate(ranges):
        idx.add(i, lo, hi)
    for i in range(0, len(ranges), 3):
        idx.remove(i)
    live = {i: r for i, r in enumerate(ranges) if i % 3}
    for p in probes:
        assert sorted(idx.stab(p)) == sorted(i for i, (lo, hi) in live.items() if lo <= p <= hi)


def test_address_and_port_parsing():
    assert parse_addr_range("10.0.0.0/8") == (V4 | 0x0A000000, V4 | 0x0AFFFFFF)
    assert parse_addr_range("10.0.0.1-10.0.0.9") == (V4 | 0x0A000001, V4 | 0x0A000009)
    assert parse_addr_range("2001:db8::/32")[0] >> 128 == 6
    assert decode_addr(encode_addr(ipaddress.ip_address("2001:db8::1"))) == ipaddress.ip_address("2001:db8::1")
    assert parse_port_range("*") == (0, 65535) and parse_port_range("10-20") == (10, 20)
    assert parse_port_range(7) == (7, 7)
    with pytest.raises(ValueError, match=r"Address range '10.0.0.1-2001:db8::1' mixes IPv4 and IPv6"):
        parse_addr_range("10.0.0.1-2001:db8::1")
    with pytest.raises(ValueError, match=r"Port range \(9, 3\) is empty"):
        parse_port_range((9, 3))
    with pytest.raises(ValueError, match=r"Port range must be '\*', a port or 'lo-hi', not 'a-b'"):
        parse_port_range("a-b")


def test_box_operations():
    box = Box.parse(local_addr="10.0.0.1", remote_addr="10.1.0.0/16", proto="tcp", local_port="1-100")
    p = FiveTuple.parse("10.0.0.1", "10.1.2.3", "tcp", 50, 4000)
    assert box.contains(p) and not box.is_point() and p.box().is_point() and p.box().point() == p
    assert box.intersection(p.box()) == p.box()
    assert str(p) == "proto 6 10.0.0.1:50 <-> 10.1.2.3:4000"
    assert Box.from_json(box.to_json()) == box
    with pytest.raises(ValueError, match=r"Traffic selectors .* are not a single 5-tuple"):
        box.point()


def test_protection_ordering():
    """Section 3's "meets or exceeds": type, key length, ICV, window, ESN; same mode."""
    assert GCM16_256.meets(GCM16) and not GCM16.meets(GCM16_256)
    assert not GMAC.meets(GCM16)          # integrity only does not meet confidentiality
    assert GCM16.meets(GMAC)
    assert not Protection("aes-gcm-8").meets(GCM16)
    assert not Protection(replay_window=32).meets(GCM16)
    assert not Protection(mode="tunnel").meets(GCM16)
    assert Protection(esn=True).meets(GCM16) and not GCM16.meets(Protection(esn=True))
    assert Protection.from_dict(GCM16_256.as_dict()) == GCM16_256


def test_spd_first_match_and_logical_entries():
    from ipchan.sw.keymgr.spd import LogicalEntry
    spd = Spd([SpdEntry.parse("a", action="bypass", local_addr="10.0.0.1", remote_addr="10.1.0.5"),
               SpdEntry.parse("b", action="protect", local_addr="10.0.0.1", remote_addr="10.1.0.0/16",
                              protection=GCM16),
               SpdEntry.parse("c", action="bypass", local_addr="10.0.0.1", remote_addr="*")])
    p = FiveTuple.parse("10.0.0.1", "10.1.0.5", 6, 1, 2)
    q = FiveTuple.parse("10.0.0.1", "10.1.0.6", 6, 1, 2)
    r = FiveTuple.parse("10.0.0.1", "10.2.0.6", 6, 1, 2)
    assert [spd.decide(x).name for x in (p, q, r)] == ["a", "b", "c"]
    assert spd.decide(FiveTuple.parse("10.0.0.2", "10.2.0.6", 6, 1, 2)).action == "discard"
    spd.add_logical(LogicalEntry(p, "protect", GCM16_256, 7, "optional-protection"))
    assert spd.decide(p).protection == GCM16_256 and spd.decide(p).name == "logical:optional-protection:7"
    with pytest.raises(ValueError, match="A logical SPD entry already exists for"):
        spd.add_logical(LogicalEntry(p, "protect", GCM16, 8, "x"))
    spd.remove_logical(p)
    assert spd.decide(p).name == "a"


def test_pad_order_wildcards_and_anchors():
    pad = Pad([PadEntry.parse("exact", id_type="fqdn", pattern="a.corp.example", auth="certificate",
                              addresses=["10.0.0.1"], trust_anchors=["CA1"]),
               PadEntry.parse("wild", id_type="fqdn", pattern="*.corp.example", auth="certificate",
                              addresses=["10.0.0.0/8"], trust_anchors=["CA1"]),
               PadEntry.parse("btns", id_type="public-key", pattern="*", auth="raw-public-key",
                              addresses=["192.168.0.0/16"])])
    a = cert_peer("a.corp.example", "CA1")
    b = cert_peer("b.corp.example", "CA1")
    assert pad.lookup(a).name == "exact" and pad.lookup(b).name == "wild"
    assert pad.lookup(cert_peer("b.corp.example", "CA2")) is None
    assert pad.authorize(a, parse_addr_range("10.0.0.1")) is None
    assert "does not let peer" in pad.authorize(a, parse_addr_range("10.0.0.2"))
    assert pad.lookup(btns_peer(4)).name == "btns"


def test_btns_identity_checks_its_key():
    with pytest.raises(ValueError, match=r"Public-key ID 'abc' is not the SHA-256 of its public key"):
        Identity("public-key", "abc", AuthInfo("raw-public-key", public_key=b"k" * 32))
    with pytest.raises(ValueError, match=r"Authentication method 'certificate' needs the certificate"):
        AuthInfo("certificate")
    assert Identity.from_dict(btns_peer(3).as_dict()) == btns_peer(3)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)), max_size=40),
       st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3)),
       st.tuples(st.integers(0, 3), st.integers(0, 3)))
@settings(max_examples=100, deadline=None)
def test_ld_box_queries_match_brute_force(points, ra, lp, rp):
    ld = LatchDatabase()
    latches = {}
    for i, (a, b, c) in enumerate(points):
        ft = FiveTuple(6, V4 | 1, 100 + b, V4 | (50 + a), 1000 + c)
        if ft in ld.live:
            continue
        latch = Latch(i + 1, LatchState.LARVAL, ft)
        ld.add(latch)
        latches[i + 1] = latch
    box = Box((6, 6), (V4 | 1, V4 | 1), (100 + min(lp), 100 + max(lp)),
              (V4 | (50 + min(ra)), V4 | (50 + max(ra))), (1000 + min(rp), 1000 + max(rp)))
    got = sorted(l.handle for l in ld.live_in_box(box))
    assert got == sorted(h for h, l in latches.items() if box.contains(l.tuple))


def test_transition_table_is_exactly_the_documented_one():
    """States LISTENER, LARVAL, ESTABLISHED, BROKEN, CLOSED; any other move is refused."""
    from ipchan.sw.keymgr import InvalidTransition, TRANSITIONS
    allowed = {("listener", "closed"), ("larval", "established"), ("larval", "broken"),
               ("larval", "closed"), ("established", "broken"), ("established", "closed"),
               ("broken", "closed")}
    assert {(a.value, b.value) for a, bs in TRANSITIONS.items() for b in bs} == allowed
    for a in LatchState:
        for b in LatchState:
            latch = Latch(1, a, FiveTuple.parse("10.0.0.1", "10.0.0.2", 6, 1, 2))
            if (a.value, b.value) in allowed:
                latch.move(b)
                assert latch.state == b
            else:
                with pytest.raises(InvalidTransition, match=f"Latch 1 cannot go from {a.value} to {b.value}"):
                    latch.move(b)
                assert latch.state == a


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3), st.integers(0, 3)), max_size=25),
       st.lists(st.integers(0, 3), max_size=2),
       st.tuples(st.integers(0, 7), st.integers(0, 7)), st.tuples(st.integers(0, 3), st.integers(0, 3)),
       st.tuples(st.integers(0, 3), st.integers(0, 3)), st.data())
@settings(max_examples=60, deadline=None)
def test_narrowing_result_contains_trigger_and_avoids_every_other_latch(points, listen, ra, lp, rp, data):
    """Section 2.1: narrowed selectors "match no connection latches in the LARVAL or ESTABLISHED
    states, or ... only the 5-tuple of a single such connection latch", and (for listeners) do not
    include a listener's 3-tuple or have only its local address and port."""
    from ipchan.hw.contract import EngineParams
    from ipchan.sw.driver import Engine
    from ipchan.sw.keymgr import KeyManager, LatchConflict
    from conftest import default_pad, default_spd
    km = KeyManager(Engine.for_model(EngineParams(n_entries=16)), spd=default_spd(), pad=default_pad())
    for a, b, c in points:
        try:
            km.create_connection_latch("192.0.2.1", f"198.51.100.{10 + a}", "tcp", 1000 + b, 2000 + c)
        except LatchConflict:
            pass
    for port in set(listen):
        km.create_listener_latch("192.0.2.1", "tcp", 1000 + port)
    box = Box.parse(local_addr="192.0.2.1", remote_addr=f"198.51.100.{10 + min(ra)}-198.51.100.{10 + max(ra)}",
                    proto="tcp", local_port=(1000 + min(lp), 1000 + max(lp)),
                    remote_port=(2000 + min(rp), 2000 + max(rp)))
    trigger = FiveTuple(6, box.local_addr[0],
                        data.draw(st.integers(*box.local_port)),
                        data.draw(st.integers(*box.remote_addr)),
                        data.draw(st.integers(*box.remote_port)))
    result = km._narrow_latches(box, trigger)
    assert result.contains(trigger) and box.contains_box(result)
    inside = km.ld.live_in_box(result)
    if result.is_point():
        assert [l.tuple for l in inside] in ([], [trigger])
    else:
        assert inside == []
        for l in km.ld.listeners_in_box(result):
            raise AssertionError(f"listener {l.tuple} left inside a non-point box {result}")
