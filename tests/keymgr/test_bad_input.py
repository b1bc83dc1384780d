"""Bad input gets a clear error naming what was wrong, and changes nothing."""

import pytest

from ipchan.sw.keymgr import (Box, ChildSaProposal, ChildSaRejected, KeyManager, PolicyError,
                              Protection, SpdEntry, UnknownChildSa, UnknownLatch)

from conftest import GCM8, GCM16, LAN, LOCAL, btns_peer, cert_peer, snapshot, tcp


@pytest.fixture
def busy(km, ike):
    """A key manager with a listener, a LARVAL latch and an ESTABLISHED one with its SA."""
    km.create_listener_latch(LOCAL, "tcp", 143)
    km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5001, 22)
    km.accept_child_sa(ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple))
    return km


def _refused(km, exc, match, fn, *args, **kwargs):
    before = snapshot(km)
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    assert snapshot(km) == before


@pytest.mark.parametrize("handle, exc, match", [
    (999, UnknownLatch, r"No latch has handle 999 \(never created, or released\)"),
    (-1, UnknownLatch, r"No latch has handle -1"),
    ("1", TypeError, r"Latch handle must be an integer, not '1'"),
    (True, TypeError, r"Latch handle must be an integer, not True"),
    (None, TypeError, r"Latch handle must be an integer, not None"),
])
def test_unknown_or_bad_handle(busy, handle, exc, match):
    for op in (busy.inquire_latch, busy.release_latch, busy.break_latch):
        _refused(busy, exc, match, op, handle)


def test_released_handle_is_unknown(busy):
    h = busy.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 6000, 22)
    busy.release_latch(h)
    _refused(busy, UnknownLatch, f"No latch has handle {h}", busy.release_latch, h)


@pytest.mark.parametrize("args, exc, match", [
    (("192.0.2.300", "198.51.100.9", "tcp", 1, 2), ValueError,
     r"Local address must be an IPv4 or IPv6 address, not '192.0.2.300'"),
    ((LOCAL, 1234, "tcp", 1, 2), TypeError,
     r"Remote address must be a string or an ipaddress address, not 1234"),
    ((LOCAL, "2001:db8::1", "tcp", 1, 2), ValueError,
     r"Local address '192.0.2.1' and remote address '2001:db8::1' are of different IP versions"),
    ((LOCAL, "198.51.100.9", "tcpx", 1, 2), ValueError, r"Protocol must be a number from 1 to 255 or one of"),
    ((LOCAL, "198.51.100.9", 0, 1, 2), ValueError, r"Protocol must be from 1 to 255, not 0"),
    ((LOCAL, "198.51.100.9", "tcp", 65536, 2), ValueError, r"Local port must be from 0 to 65535, not 65536"),
    ((LOCAL, "198.51.100.9", "tcp", 1, "22"), TypeError, r"Remote port must be an integer, not '22'"),
    ((LOCAL, "198.51.100.9", "tcp", 1, -1), ValueError, r"Remote port must be from 0 to 65535, not -1"),
])
def test_malformed_five_tuple(busy, args, exc, match):
    _refused(busy, exc, match, busy.create_connection_latch, *args)


@pytest.mark.parametrize("args, exc, match", [
    (("not-an-ip", "tcp", 1), ValueError, r"Local address must be an IPv4 or IPv6 address, not 'not-an-ip'"),
    ((LOCAL, "tcp", 1.5), TypeError, r"Local port must be an integer, not 1.5"),
    ((LOCAL, None, 1), TypeError, r"Protocol must be an integer or a name, not None"),
])
def test_malformed_three_tuple(busy, args, exc, match):
    _refused(busy, exc, match, busy.create_listener_latch, *args)


@pytest.mark.parametrize("qop, exc, match", [
    (Protection(replay_window=128), ValueError, r"Replay window 128 is larger than the engine's maximum of 64"),
    ({"algorithm": "aes-cbc"}, ValueError, r"Unknown algorithm 'aes-cbc'"),
    ({"key_bits": 192}, ValueError, r"Key size must be one of 'aes_128', 'aes_256', not 192"),
    ({"algorithm": "aes-gmac", "type": "confidentiality+integrity"}, ValueError,
     r"Protection type 'confidentiality\+integrity' does not match algorithm 'aes-gmac' \('integrity'\)"),
    ({"icv_len": 12}, ValueError, r"Protection icv_len 12 does not match algorithm 'aes-gcm-16' \(16\)"),
    ({"colour": "blue"}, ValueError, r"Protection has no field\(s\) 'colour'"),
    ("strong", TypeError, r"qop must be a Protection, a dict or None, not 'strong'"),
    (GCM8, PolicyError, r"is below what SPD entry 'lan' requires"),
])
def test_impossible_qop(busy, qop, exc, match):
    _refused(busy, exc, match, busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, qop=qop)


def test_protection_constructor_errors():
    with pytest.raises(ValueError, match=r"Replay window must be from 0 \(off\) to 1024 packets, not 2048"):
        Protection(replay_window=2048)
    with pytest.raises(TypeError, match=r"ESN must be a bool, not 1"):
        Protection(esn=1)
    with pytest.raises(ValueError, match=r"Mode must be one of 'transport', 'tunnel', not 'beet'"):
        Protection(mode="beet")


def test_bad_holder_and_flags(busy):
    _refused(busy, TypeError, r"Holder must be a callable taking a LatchEvent, or None, not 3",
             busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, holder=3)
    _refused(busy, ValueError, r"A BYPASS latch cannot also request protection \(qop\)",
             busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, qop=GCM16,
             bypass=True, privileged=True)
    _refused(busy, ValueError, r"A BYPASS latch has no IPsec peer: it cannot request a peer ID or a local ID",
             busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, peer_id=btns_peer(1),
             bypass=True, privileged=True)
    _refused(busy, TypeError, r"privileged must be a bool, not 'yes'",
             busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, bypass=True,
             privileged="yes")
    _refused(busy, TypeError, r"Peer ID must be an Identity, a dict or None, not 'bob'",
             busy.create_connection_latch, LOCAL, "198.51.100.9", "tcp", 7000, 22, peer_id="bob")


def test_bad_child_sa_proposals(busy, ike):
    ft = tcp("198.51.100.9", 7000, 22)
    good = ike.for_tuple(btns_peer(1), ft)
    with pytest.raises(ValueError, match=r"SPI 5 is in the range 1..255 that IANA reserves"):
        ChildSaProposal(**{**good.__dict__, "inbound_spi": 5})
    with pytest.raises(ValueError, match=r"Inbound key must be 16 bytes for AES-128, not 32 bytes"):
        ChildSaProposal(**{**good.__dict__, "inbound_key": bytes(32)})
    with pytest.raises(ValueError, match=r"Salt must be 4 bytes, not 3 bytes"):
        ChildSaProposal(**{**good.__dict__, "outbound_salt": bytes(3)})
    with pytest.raises(ValueError, match=r"Trigger proto 6 192.0.2.1:7000 <-> 198.51.100.9:22 is outside "
                                         r"the proposed selectors"):
        ChildSaProposal(**{**good.__dict__, "selectors": tcp("198.51.100.9", 7001, 22).box()})
    _refused(busy, TypeError, r"Proposal must be a ChildSaProposal, not 'x'", busy.accept_child_sa, "x")
    # SPI already used by the established latch's SA.
    used = busy.child_sas()[0].inbound.spi
    dup = ChildSaProposal(**{**good.__dict__, "inbound_spi": used})
    _refused(busy, ChildSaRejected, rf"Inbound SPI {used:#010x} is already used by child SA 1",
             busy.accept_child_sa, dup)
    # Protection below the SPD's.
    _refused(busy, ChildSaRejected, r"proposed protection aes-gcm-8 .* is below what SPD entry 'lan' requires",
             busy.accept_child_sa, ike.for_tuple(btns_peer(1), ft, protection=GCM8))
    # A peer the PAD does not know, and a certificate from an anchor the PAD does not trust.
    _refused(busy, ChildSaRejected, r"no PAD entry matches peer fqdn:evil.example",
             busy.accept_child_sa, ike.for_tuple(cert_peer("evil.example"), ft))
    _refused(busy, ChildSaRejected, r"no PAD entry matches peer fqdn:x.corp.example",
             busy.accept_child_sa, ike.for_tuple(cert_peer("x.corp.example", anchor="Other CA"), ft))
    # A peer claiming an address outside what the PAD lets it claim (the SPD would protect it).
    busy.insert_spd_entry(SpdEntry.parse("lan2", action="protect", local_addr=LOCAL,
                                         remote_addr="198.51.101.0/24", protection=GCM16))
    _refused(busy, ChildSaRejected, r"PAD entry 'btns' does not let peer .* claim those remote addresses",
             busy.accept_child_sa, ike.for_tuple(btns_peer(1), tcp("198.51.101.9", 5000, 1)))
    # Traffic the SPD bypasses or discards.
    _refused(busy, ChildSaRejected, r"SPD entry 'blocked' says DISCARD",
             busy.accept_child_sa, ike.for_tuple(btns_peer(1), tcp("203.0.113.9", 5000, 1)))
    _refused(busy, ChildSaRejected, r"SPD entry .web-bypass. says BYPASS for proto 6 192.0.2.1:80",
             busy.accept_child_sa, ike.for_tuple(btns_peer(1), tcp("198.51.100.9", 80, 1)))


def test_unknown_child_sa(busy):
    _refused(busy, UnknownChildSa, r"No child SA has id 77", busy.delete_child_sa, 77)
    _refused(busy, TypeError, r"Child SA id must be an integer, not '1'", busy.delete_child_sa, "1")


def test_bad_spd_edits(busy):
    _refused(busy, ValueError, r"SPD entry name 'lan' is used twice", busy.insert_spd_entry,
             SpdEntry.parse("lan", action="bypass", local_addr=LOCAL, remote_addr=LAN))
    _refused(busy, ValueError, r"Position must be an integer from 0 to 4, not 9", busy.insert_spd_entry,
             SpdEntry.parse("x", action="bypass", local_addr=LOCAL, remote_addr=LAN), 9)
    _refused(busy, KeyError, r"No SPD entry is named 'nope'", busy.remove_spd_entry, "nope")
    with pytest.raises(ValueError, match=r"SPD entry 'p' is PROTECT but names no required protection"):
        SpdEntry.parse("p", action="protect", local_addr=LOCAL, remote_addr=LAN)
    with pytest.raises(ValueError, match=r"SPD action must be one of 'protect', 'bypass', 'discard', not 'allow'"):
        SpdEntry.parse("p", action="allow", local_addr=LOCAL, remote_addr=LAN)
    with pytest.raises(ValueError, match=r"Local address range '10.0.0.9-10.0.0.1' is empty"):
        Box.parse(local_addr="10.0.0.9-10.0.0.1", remote_addr="*")


def test_bad_constructor_arguments(engine):
    with pytest.raises(TypeError, match=r"Engine must be an ipchan.sw.driver.Engine, not 'model'"):
        KeyManager("model")
    with pytest.raises(ValueError, match=r"spd_change must be 'preserve' or 'break', not 'ignore'"):
        KeyManager(engine, spd_change="ignore")
    with pytest.raises(ValueError, match=r"conflict must be 'terminate' or 'reject', not 'both'"):
        KeyManager(engine, conflict="both")


def test_full_engine_table_rejects_child_sa_and_changes_nothing(km, ike):
    """An engine with no room refuses the child SA; the latch stays LARVAL and nothing changes."""
    for port in range(32):
        km.accept_child_sa(ike.for_tuple(btns_peer(1), tcp("198.51.100.20", 6000 + port, 1)))
    h = km.create_connection_latch(LOCAL, "198.51.100.9", "tcp", 5000, 22)
    _refused(km, ChildSaRejected, r"The engine's SA table has 0 free slot\(s\); a child SA needs 2",
             km.accept_child_sa, ike.for_tuple(btns_peer(1), km.inquire_latch(h).tuple))
    assert km.inquire_latch(h).state.value == "larval"
