"""The GCM/GMAC core against ``cryptography``'s AESGCM: random messages, stalls, framing, GMAC,
decryption with tampering, tag lengths, and the authentication contract."""

import random
import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipchan.hw.crypto.gcm import GCMCore

from .gcmbench import CORES, Message, make_core, run_gcm


PROFILES = list(CORES)


def expected(msg):
    """(text out, 16-byte tag) that AESGCM gives for an encryption ``msg``."""
    sealed = AESGCM(msg.key).encrypt(msg.nonce, msg.text, msg.aad)
    return sealed[:-16], sealed[-16:]


def random_message(rng, key=None, text_len=None, aad_len=None):
    key = key or rng.randbytes(rng.choice((16, 32)))
    aad = rng.randbytes(aad_len if aad_len is not None else rng.choice((0, 8, 12, rng.randint(0, 40))))
    text = rng.randbytes(text_len if text_len is not None else rng.choice((0, rng.randint(1, 70))))
    return Message(key, rng.randbytes(12), aad, text, tag_bytes=rng.choice((8, 12, 16)))


def sealed(msg):
    """The decryption command that undoes the encryption ``msg``."""
    ct, tag = expected(msg)
    return Message(msg.key, msg.nonce, msg.aad, ct, decrypt=True, tag_bytes=msg.tag_bytes,
                   received_tag=tag[:msg.tag_bytes])


def check_encrypt(msg, out):
    ct, tag = expected(msg)
    t = msg.tag_bytes
    assert (out.aad, out.text) == (msg.aad, ct)
    # Only the first tag_bytes bytes are defined (the compact core leaves the rest as they are).
    assert out.tag[:t] == tag[:t]
    assert (out.match, out.error) == (False, False)


def check_framing(msg, out):
    n_aad, n_text = -(-len(msg.aad) // 16), -(-len(msg.text) // 16)
    assert [a for _, a, _ in out.beats] == [True] * n_aad + [False] * n_text
    assert [last for _, _, last in out.beats] == [False] * (n_aad + n_text - 1) + [True] * (
        n_aad + n_text > 0)
    sizes = [min(16, len(msg.aad) - 16 * k) for k in range(n_aad)]
    sizes += [min(16, len(msg.text) - 16 * k) for k in range(n_text)]
    assert [b for b, _, _ in out.beats] == sizes


@pytest.mark.parametrize("profile,cache_h", [("compact", None), ("fast", None), ("compact", True),
                                             ("fast", False), ("compact-keys", None)])
def test_random_encrypt_with_stalls(profile, cache_h):
    rng = random.Random(4106)
    messages = [random_message(rng) for _ in range(16)]
    # Same key twice in a row (H is reused), a key that differs only in its size, empty messages.
    messages[3] = random_message(rng, key=messages[2].key)
    previous = messages[3].key
    messages[4] = random_message(rng, key=previous + bytes(16) if len(previous) == 16 else previous[:16])
    messages[5] = random_message(rng, text_len=0, aad_len=0)
    messages[6] = random_message(rng, text_len=0, aad_len=0)
    dut = make_core(profile) if cache_h is None else GCMCore(profile, cache_h=cache_h)
    for msg, out in zip(messages, run_gcm(profile, messages, seed=7, gap=0.35, dut=dut)):
        check_encrypt(msg, out)
        check_framing(msg, out)


@pytest.mark.parametrize("profile", PROFILES)
def test_random_decrypt_and_tamper(profile):
    rng = random.Random(4543)
    messages, good, plain = [], [], []
    for k in range(14):
        original = random_message(rng)
        plain.append(original.text)
        msg = sealed(original)
        tamper = k % 3
        if tamper == 1 and msg.text:
            flip = rng.randrange(len(msg.text))
            msg.text = msg.text[:flip] + bytes([msg.text[flip] ^ 0x01]) + msg.text[flip + 1:]
        elif tamper == 1 or tamper == 2:
            msg.received_tag = bytes([msg.received_tag[0] ^ 0x80]) + msg.received_tag[1:]
        messages.append(msg)
        good.append(tamper == 0)
    for msg, ok, text, out in zip(messages, good, plain,
                                  run_gcm(profile, messages, seed=11, gap=0.3)):
        assert out.match == ok
        assert not out.error
        assert out.aad == msg.aad
        if ok:
            assert out.text == text
        check_framing(msg, out)


@pytest.mark.parametrize("profile", PROFILES)
def test_decrypted_text_matches(profile):
    rng = random.Random(5)
    plain = [random_message(rng, text_len=n) for n in (1, 15, 16, 17, 33, 64)]
    for msg, out in zip(plain, run_gcm(profile, [sealed(m) for m in plain])):
        assert out.text == msg.text and out.match


@pytest.mark.parametrize("profile", PROFILES)
def test_gmac_rfc4543(profile):
    """GMAC: everything is AAD, nothing encrypted; the data passes through unchanged."""
    rng = random.Random(4543)
    key = rng.randbytes(32)
    packet = rng.randbytes(8 + 8 + 45)           # SPI, sequence number, IV, payload
    gen = Message(key, rng.randbytes(12), packet, b"", tag_bytes=16)
    tag = AESGCM(key).encrypt(gen.nonce, b"", packet)
    check = Message(key, gen.nonce, packet, b"", decrypt=True, received_tag=tag)
    bad = Message(key, gen.nonce, packet[:-1] + b"\0", b"", decrypt=True, received_tag=tag)
    out = run_gcm(profile, [gen, check, bad], seed=1, gap=0.2)
    assert out[0].aad == packet and out[0].text == b"" and out[0].tag == tag
    assert out[1].match and not out[2].match
    assert out[2].aad == packet[:-1] + b"\0"


@pytest.mark.parametrize("profile", PROFILES)
def test_invalid_tag_length_fails_closed(profile):
    rng = random.Random(0)
    good = sealed(random_message(rng))
    zero = Message(good.key, good.nonce, good.aad, good.text, decrypt=True, tag_bytes=0,
                   received_tag=good.received_tag)
    big = Message(good.key, good.nonce, good.aad, good.text, decrypt=True, tag_bytes=17,
                  received_tag=good.received_tag)
    out = run_gcm(profile, [good, zero, big])
    assert (out[0].match, out[0].error) == (True, False)
    assert (out[1].match, out[1].error) == (False, True)
    assert (out[2].match, out[2].error) == (False, True)


def test_profile_checked():
    with pytest.raises(ValueError, match=r"Profile must be 'compact' or 'fast', not 'tiny'"):
        GCMCore("tiny")


def test_cache_h_checked():
    with pytest.raises(TypeError, match=r"cache_h must be a bool or None, not 1"):
        GCMCore("fast", cache_h=1)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"profile": "fast", "key_slots": 16}, ValueError, "key_slots needs the compact profile, not 'fast'"),
    ({"key_slots": 12}, ValueError, "key_slots must be a power of two, not 12"),
    ({"key_slots": "16"}, TypeError, "key_slots must be an integer, not '16'"),
    ({"key_slots": 16, "cache_h": True}, ValueError, "cache_h cannot be used with key_slots"),
])
def test_key_slots_checked(kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        GCMCore(**kwargs)


def test_stored_key_command_names_the_slot():
    core = GCMCore("compact", key_slots=16)
    fields = dict(core.cmd.payload.shape().members)
    assert fields["key_index"] == 4 and "key" not in fields and "key256" not in fields
    assert {"nonce", "aad_len", "text_len", "decrypt", "tag_bytes"} <= set(fields)
    assert core.key.payload.shape().size == 32 + 4 + 1
    assert not hasattr(GCMCore("compact"), "key")
