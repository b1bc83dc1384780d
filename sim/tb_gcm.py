"""cocotb testbench for the AES-GCM / GMAC core (:class:`ipchan.hw.crypto.gcm.GCMCore`).

Run from pytest (``tests/crypto/test_gcm_cocotb.py``) through cocotb's Python runner on Verilator,
once per profile. Every test is crossed with an idle generator on the two input streams and a
backpressure generator on the two output streams (as cocotbext-axi's testbenches do). Expected
values come from ``cryptography``'s AESGCM, which we did not write, and from the NIST CAVP files
(handed over by the pytest side as JSON in ``IPCHAN_GCM_VECTORS``).

A core built with key slots (``GCMCore("compact", key_slots=N)``, named by ``IPCHAN_KEY_SLOTS``)
gets message ``n``'s key loaded into slot ``n % N`` on its ``key`` stream, once the message that
used that slot before has its result, and the message's command only once its key is loaded.
"""

import itertools
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipchan.hw.crypto.aes_stored import key_word
from ipchan.hw.crypto.gcm import GCMCommand, GCMOutput, GCMResult, stored_key_command

from .streams import StreamSink, StreamSource


def cycle_pause():
    return itertools.cycle([1, 1, 1, 0])


def random_pause(seed=1):
    rng = random.Random(seed)
    while True:
        yield rng.random() < 0.4


def pack(layout, **fields):
    return layout.const(fields).as_value().value


def unpack(layout, value):
    return {name: (value >> field.offset) & ((1 << field.width) - 1) for name, field in layout}


def _beats(data):
    return [int.from_bytes(data[k:k + 16].ljust(16, b"\0"), "little")
            for k in range(0, len(data), 16)]


class Message:
    """One command and its input beats; ``received_tag`` only when decrypting."""

    def __init__(self, key, nonce, aad, text, *, decrypt=False, tag_bytes=16, received_tag=b""):
        self.key, self.nonce, self.aad, self.text = key, nonce, aad, text
        self.decrypt, self.tag_bytes, self.received_tag = decrypt, tag_bytes, received_tag

    def command(self, slots=None, index=None):
        """The command: with the key, or (a core with ``slots`` key slots) naming ``index``."""
        fields = dict(nonce=int.from_bytes(self.nonce, "little"), aad_len=len(self.aad),
                      text_len=len(self.text), decrypt=int(self.decrypt),
                      tag_bytes=self.tag_bytes)
        if slots is None:
            return pack(GCMCommand, key=int.from_bytes(self.key.ljust(32, b"\0"), "little"),
                        key256=int(len(self.key) == 32), **fields)
        return pack(stored_key_command(slots), key_index=index, **fields)

    def key_words(self, slots, index):
        """The ``key`` stream's beats that load this message's key into slot ``index``."""
        return [pack(key_word(slots), data=int.from_bytes(self.key[k:k + 4], "little"),
                     index=index, key256=int(len(self.key) == 32))
                for k in range(0, len(self.key), 4)]

    def beats(self):
        beats = _beats(self.aad) + _beats(self.text)
        if self.decrypt:
            beats += _beats(self.received_tag.ljust(16, b"\0"))
        return beats

    @property
    def n_out(self):
        return len(_beats(self.aad)) + len(_beats(self.text))


class TB:
    def __init__(self, dut):
        self.dut = dut
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.cmd = StreamSource(dut, "cmd", dut.clk)
        self.i = StreamSource(dut, "i", dut.clk)
        self.o = StreamSink(dut, "o", dut.clk)
        self.r = StreamSink(dut, "r", dut.clk)
        slots = os.environ.get("IPCHAN_KEY_SLOTS")
        self.slots = int(slots) if slots else None
        self.key = StreamSource(dut, "key", dut.clk) if self.slots else None
        self.results = 0

    def set_idle_generator(self, generator=None):
        for port, seed in ((self.cmd, 1), (self.i, 2), (self.key, 5)):
            if port is not None:
                port.set_pause_generator(generator(seed) if generator else None)

    def set_backpressure_generator(self, generator=None):
        for port, seed in ((self.o, 3), (self.r, 4)):
            port.set_pause_generator(generator(seed) if generator else None)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def run(self, messages, budget=None):
        """Send every message back to back; return (aad, text, result dict) for each."""
        for m in messages:
            if self.slots is None:
                self.cmd.send(m.command())
            for beat in m.beats():
                self.i.send(beat)
        if self.slots is not None:
            cocotb.start_soon(self._keys_and_commands(messages))
        out = []
        self.results = 0
        for m in messages:
            beats = [unpack(GCMOutput, await self.o.recv()) for _ in range(m.n_out)]
            result = unpack(GCMResult, await self.r.recv())
            self.results += 1
            for k, b in enumerate(beats):
                assert b["last"] == (k == len(beats) - 1), f"last flag wrong on beat {k}"
                assert b["aad"] == (k < len(_beats(m.aad))), f"aad flag wrong on beat {k}"
            chunks = [b["data"].to_bytes(16, "little")[:b["bytes"]] for b in beats]
            n_aad = len(_beats(m.aad))
            out.append((b"".join(chunks[:n_aad]), b"".join(chunks[n_aad:]), result))
        assert len(self.o) == 0 and len(self.r) == 0, "more output than messages"
        return out


    async def _keys_and_commands(self, messages):
        # A slot is loaded again only once the message that used it has its result; a command
        # is sent only once its key is loaded.
        for n, m in enumerate(messages):
            while self.results <= n - self.slots:
                await RisingEdge(self.dut.clk)
            for word in m.key_words(self.slots, n % self.slots):
                self.key.send(word)
            await self.key.wait()
            self.cmd.send(m.command(self.slots, n % self.slots))


def expected(m):
    """(ciphertext, 16-byte tag) from AESGCM, for the encryption of ``m``'s text."""
    sealed = AESGCM(m.key).encrypt(m.nonce, m.text, m.aad)
    return sealed[:-16], sealed[-16:]


def random_messages(rng, count):
    msgs, key = [], None
    for n in range(count):
        # Runs of the same key (H cached), then a new key, sometimes of the other size.
        if key is None or rng.random() < 0.5:
            key = rng.randbytes(rng.choice((16, 32)))
        aad = rng.randbytes(rng.choice((0, 8, 12, rng.randint(1, 40))))
        # Short texts mostly; ESP-sized ones (past the 33 blocks at which a pipeline could wrap
        # its block counter) often enough that every run has several.
        text = rng.randbytes(rng.choice((0, 16, rng.randint(1, 100), rng.randint(1, 100),
                                         rng.randint(520, 600), 1500)))
        tag_bytes = rng.choice((8, 12, 16))
        m = Message(key, rng.randbytes(12), aad, text, tag_bytes=tag_bytes)
        if rng.random() < 0.5:
            ct, tag = expected(m)
            received = tag[:tag_bytes]
            if rng.random() < 0.3:
                # Flip one bit of the ciphertext, the AAD or the tag: the check must fail.
                where = rng.choice(["tag"] + ["ct"] * bool(ct) + ["aad"] * bool(aad))
                if where == "ct":
                    k = rng.randrange(len(ct))
                    ct = ct[:k] + bytes([ct[k] ^ (1 << rng.randrange(8))]) + ct[k + 1:]
                elif where == "aad":
                    k = rng.randrange(len(aad))
                    aad = aad[:k] + bytes([aad[k] ^ 1]) + aad[k + 1:]
                else:
                    received = bytes([received[0] ^ 0x80]) + received[1:]
            m = Message(key, m.nonce, aad, ct, decrypt=True, tag_bytes=tag_bytes,
                        received_tag=received)
        msgs.append(m)
    return msgs


def _ctr(m):
    """CTR mode is its own inverse: AESGCM's encryption of ``m.text`` with no AAD gives the
    other half (ciphertext from plaintext, or plaintext from ciphertext)."""
    return AESGCM(m.key).encrypt(m.nonce, m.text, b"")[:len(m.text)]


def check(m, aad, text, result):
    """Check one message's output against AESGCM; returns whether it was a genuine decryption."""
    assert aad == m.aad, "AAD beats must pass through unchanged"
    assert text == _ctr(m), "text differs from AESGCM's"
    assert result["error"] == 0
    if not m.decrypt:
        tag = AESGCM(m.key).encrypt(m.nonce, m.text, m.aad)[-16:]
        # Only the first tag_bytes bytes are defined.
        assert result["tag"].to_bytes(16, "little")[:m.tag_bytes] == tag[:m.tag_bytes]
        assert result["match"] == 0, "an encryption must never report a match"
        return False
    # The tag over (AAD, ciphertext) is the tag of encrypting the plaintext they stand for.
    tag = AESGCM(m.key).encrypt(m.nonce, text, m.aad)[-16:]
    good = m.received_tag == tag[:m.tag_bytes]
    assert result["match"] == int(good), \
        f"match {result['match']} for a {'genuine' if good else 'forged'} message"
    return good


@cocotb.test()
@cocotb.parametrize(idle=[None, random_pause], backpressure=[None, random_pause])
async def test_random_against_aesgcm(dut, idle, backpressure):
    """Random messages, back to back, against AESGCM: encryptions and decryptions (genuine and
    tampered), empty AAD and text, lengths that are not a multiple of 16, tags of 8, 12 and 16
    bytes, runs under one key and key changes of either size."""
    tb = TB(dut)
    tb.set_idle_generator(idle)
    tb.set_backpressure_generator(backpressure)
    await tb.reset()
    rng = random.Random(int(os.environ.get("IPCHAN_SEED", "4106")))
    messages = random_messages(rng, int(os.environ.get("IPCHAN_MESSAGES", "24")))
    genuine = [check(m, *out) for m, out in zip(messages, await tb.run(messages))]
    decrypts = sum(m.decrypt for m in messages)
    # The sequence has both kinds of decryption, or the match checks would prove little.
    assert 0 < sum(genuine) < decrypts, (sum(genuine), decrypts)


@cocotb.test()
@cocotb.parametrize(idle=[None, random_pause], backpressure=[None, random_pause])
async def test_gmac(dut, idle, backpressure):
    """GMAC (RFC 4543): everything authenticated as AAD, nothing encrypted; generate, verify, and
    verify a tampered message."""
    tb = TB(dut)
    tb.set_idle_generator(idle)
    tb.set_backpressure_generator(backpressure)
    await tb.reset()
    rng = random.Random(4543)
    messages = []
    for size in (8, 12, 20, 64, 1500):
        key, nonce, aad = rng.randbytes(rng.choice((16, 32))), rng.randbytes(12), rng.randbytes(size)
        tag = AESGCM(key).encrypt(nonce, b"", aad)
        messages.append(Message(key, nonce, aad, b""))
        messages.append(Message(key, nonce, aad, b"", decrypt=True, received_tag=tag))
        forged = aad[:-1] + bytes([aad[-1] ^ 0x01])
        messages.append(Message(key, nonce, forged, b"", decrypt=True, received_tag=tag))
    results = await tb.run(messages)
    for n, (m, (aad, text, result)) in enumerate(zip(messages, results)):
        assert aad == m.aad and text == b""
        if not m.decrypt:
            tag = AESGCM(m.key).encrypt(m.nonce, b"", m.aad)
            assert result["tag"].to_bytes(16, "little") == tag and result["match"] == 0
        else:
            # Every third message is the genuine one, the one after it the forgery.
            assert result["match"] == (1 if n % 3 == 1 else 0), f"message {n}"


@cocotb.test()
@cocotb.parametrize(idle=[None, cycle_pause], backpressure=[None, cycle_pause])
async def test_nist_vectors(dut, idle, backpressure):
    """The NIST CAVP vectors chosen by the pytest side: encryptions must give CT and Tag, and
    decryptions must match, except the ones marked FAIL, which must not."""
    path = os.environ.get("IPCHAN_GCM_VECTORS")
    assert path, "IPCHAN_GCM_VECTORS names no vector file"
    with open(path) as f:
        vectors = json.load(f)
    assert vectors, f"{path} holds no vectors"
    tb = TB(dut)
    tb.set_idle_generator(None if idle is None else (lambda seed: idle()))
    tb.set_backpressure_generator(None if backpressure is None else (lambda seed: backpressure()))
    await tb.reset()
    messages = []
    for v in vectors:
        key, iv, aad, tag = (bytes.fromhex(v[k]) for k in ("key", "iv", "aad", "tag"))
        if v["decrypt"]:
            messages.append(Message(key, iv, aad, bytes.fromhex(v["ct"]), decrypt=True,
                                    tag_bytes=len(tag), received_tag=tag))
        else:
            messages.append(Message(key, iv, aad, bytes.fromhex(v["pt"]), tag_bytes=len(tag)))
    for v, m, (aad, text, result) in zip(vectors, messages, await tb.run(messages)):
        tag = bytes.fromhex(v["tag"])
        if v["decrypt"]:
            assert result["match"] == (0 if v["fail"] else 1), f"{v['name']}: match {result['match']}"
            if not v["fail"]:
                assert text.hex() == v["pt"], f"{v['name']}: plaintext differs"
        else:
            assert text.hex() == v["ct"], f"{v['name']}: ciphertext differs"
            assert result["tag"].to_bytes(16, "little")[:len(tag)] == tag, f"{v['name']}: tag differs"
