"""AES-GCM and GMAC (NIST SP 800-38D; RFC 4106 and RFC 4543 for ESP) with stream interfaces.

One message is: a command on ``cmd``, then its data beats on ``i``, while the processed beats leave
on ``o``, then one result on ``r``. Messages follow each other in order. A command is accepted once
the core has sent all of its message's blocks to the AES core (the AES core buffers one block in
the compact profile and about fifteen in the fast one, so that is shortly before the message's last
data beat), and the next command may follow at once, so its blocks enter the AES core while the
current message finishes.

Interfaces
----------
``cmd`` (:data:`GCMCommand`)
    ``key`` and ``key256`` (AES-128 uses ``key[0:128]``), ``nonce`` (96 bits: for RFC 4106 the
    4-byte salt then the 8-byte IV), ``aad_len`` and ``text_len`` in bytes (each 0 .. 65535),
    ``decrypt``, and ``tag_bytes`` (1 .. 16; 8, 12 or 16 for ESP). GMAC (RFC 4543) is a command
    whose whole input is AAD: ``text_len = 0``, ``aad_len`` = everything to authenticate. The core
    reads the key and nonce from the command until it accepts it, so they must stay stable while
    ``cmd.valid`` is high (the ordinary stream rule).
``i`` (128-bit beats)
    The AAD, zero-padded to whole beats, then the text (plaintext to encrypt, ciphertext to
    decrypt) likewise, and, when decrypting, one more beat holding the received tag in its first
    ``tag_bytes`` bytes. Byte ``k`` of a beat is ``data[8*k:8*k+8]``; padding bytes are ignored.
``o`` (:data:`GCMOutput`)
    One beat per AAD and text beat: AAD beats pass through unchanged (``aad = 1``), text beats
    carry the ciphertext (encrypt) or the plaintext (decrypt). ``bytes`` counts the valid bytes
    (1 .. 16; the rest are zero), ``last`` marks the final beat of the message. A message with no
    AAD and no text has no output beats.
``r`` (:data:`GCMResult`)
    One per message: ``tag`` (the computed tag, bytes past ``tag_bytes`` zero), ``match`` and
    ``error``.

The authentication contract (for the ESP layer)
------------------------------------------------
Decrypted plaintext leaves on ``o`` *before* its tag is checked: this core never holds a packet.
What it guarantees instead:

1. The result ``r`` of a message is offered only after the last ``o`` beat of that message has been
   accepted, and before any ``o`` beat of the next message. So a consumer that buffers a message's
   ``o`` beats until the ``r`` beat arrives always knows which packet the verdict belongs to.
2. ``match = 1`` only when ``decrypt = 1``, ``tag_bytes`` is 1 .. 16 and the first ``tag_bytes``
   bytes of the received tag equal the computed ones. It is 0 for every encryption and for an
   out-of-range ``tag_bytes`` (which also sets ``error``): a fault can only ever fail closed.

So the ESP layer must buffer (or hold back the commit of) each inbound packet's output until ``r``,
and release it only on ``match = 1``; anything else drops the packet.

Structure
---------
An *issuer* passes a descriptor of the message to a *consumer* and sends ``E(K, 0)``, the counter
blocks ``inc32^i(J0)`` and last ``E(K, J0)`` to the AES core, reading the key and nonce from the
command, which it accepts only with the last of these requests: keep ``cmd`` valid and stable until
then, as the stream rules require anyway. With ``cache_h`` (default for the fast profile) it keeps
the previous key and skips ``E(K, 0)`` when the key is unchanged, since ``H`` depends only on the
key. The consumer hands ``H`` to GHASH, XORs the key stream into the text, feeds GHASH with the
AAD, the ciphertext and the length block, and forms the tag from GHASH's result, ``E(K, J0)`` and
(decrypting) the received tag beat in the same clock, so none of them is stored. The AES and GHASH cores come from the profile
(:func:`ipchan.hw.crypto.aes.make_aes`, :func:`ipchan.hw.crypto.ghash.make_ghash`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .aes import make_aes, wire
from .ghash import REMAINING_WIDTH, make_ghash


__all__ = ["GCMCommand", "GCMOutput", "GCMResult", "GCMCore", "LEN_WIDTH", "PROFILES"]


#: Width of the byte lengths: ESP packets are at most 65535 bytes.
LEN_WIDTH = 16
PROFILES = ("compact", "fast")

GCMCommand = data.StructLayout({
    "key": 256,
    "key256": 1,
    "nonce": 96,
    "aad_len": LEN_WIDTH,
    "text_len": LEN_WIDTH,
    "decrypt": 1,
    "tag_bytes": 5,
})

GCMOutput = data.StructLayout({
    "data": 128,
    "bytes": 5,
    "aad": 1,
    "last": 1,
})

GCMResult = data.StructLayout({
    "tag": 128,
    "match": 1,
    "error": 1,
})

_Descriptor = data.StructLayout({
    "aad_len": LEN_WIDTH,
    "text_len": LEN_WIDTH,
    "decrypt": 1,
    "tag_bytes": 5,
    "new_h": 1,
})


def _byteswap(value):
    """Reverse the byte order: a little-endian integer into the big-endian bytes GCM uses."""
    return Cat(*(value[8 * k:8 * k + 8] for k in reversed(range(len(value) // 8))))


def _byte_mask(count):
    """128-bit mask of the first ``count`` bytes (``count`` 0 .. 16)."""
    return Cat(*((k < count).replicate(8) for k in range(16)))


def _blocks(length):
    return (length + 15) >> 4


class GCMCore(wiring.Component):
    """AES-GCM / GMAC core; see the module docstring for the interfaces and the contract.

    Parameters
    ----------
    profile : ``"compact"`` or ``"fast"``
    """

    def __init__(self, profile="compact", *, cache_h=None):
        if profile not in PROFILES:
            self._MustUse__silence = True  # a refused core is not an unused one
            raise ValueError(f"Profile must be 'compact' or 'fast', not {profile!r}")
        if cache_h is None:
            cache_h = profile == "fast"
        if not isinstance(cache_h, bool):
            self._MustUse__silence = True
            raise TypeError(f"cache_h must be a bool or None, not {cache_h!r}")
        self.profile = profile
        self.cache_h = cache_h
        super().__init__({
            "cmd": In(stream.Signature(GCMCommand)),
            "i": In(stream.Signature(unsigned(128))),
            "o": Out(stream.Signature(GCMOutput)),
            "r": Out(stream.Signature(GCMResult)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.aes = aes = make_aes(self.profile)
        m.submodules.ghash = ghash = make_ghash(self.profile)
        m.submodules.descriptors = fifo = SyncFIFOBuffered(width=_Descriptor.size, depth=2)
        self._issuer(m, aes, fifo)
        self._consumer(m, aes, ghash, fifo)
        return m

    def _issuer(self, m, aes, fifo):
        # The command stays valid and stable (the stream rule) until it is accepted, which happens
        # with its last AES request; so the key and nonce need no copy here.
        cmd = self.cmd.payload
        counter = Signal(32)
        blocks_left = Signal(LEN_WIDTH - 3)

        if self.cache_h:
            # H depends only on the key: skip E(K, 0) when the key is the previous message's.
            last_key = Signal(256)
            last_key256 = Signal()
            have_key = Signal()
            new_h = ~have_key | (cmd.key256 != last_key256) | Mux(
                cmd.key256, cmd.key != last_key, cmd.key[:128] != last_key[:128])
        else:
            new_h = Const(1)
        descriptor = Signal(_Descriptor)
        m.d.comb += [
            descriptor.aad_len.eq(cmd.aad_len), descriptor.text_len.eq(cmd.text_len),
            descriptor.decrypt.eq(cmd.decrypt), descriptor.tag_bytes.eq(cmd.tag_bytes),
            descriptor.new_h.eq(new_h),
            fifo.w_data.eq(descriptor),
            aes.i.payload.key.eq(cmd.key), aes.i.payload.key256.eq(cmd.key256),
        ]

        with m.FSM(name="issuer"):
            with m.State("IDLE"):
                m.d.comb += fifo.w_en.eq(self.cmd.valid)
                with m.If(self.cmd.valid & fifo.w_rdy):
                    m.d.sync += [counter.eq(2), blocks_left.eq(_blocks(cmd.text_len))]
                    if self.cache_h:
                        m.d.sync += [last_key.eq(cmd.key), last_key256.eq(cmd.key256),
                                     have_key.eq(1)]
                    with m.If(new_h):
                        m.next = "HASH_KEY"
                    with m.Elif(cmd.text_len != 0):
                        m.next = "COUNTER"
                    with m.Else():
                        m.next = "J0"
            with m.State("HASH_KEY"):
                m.d.comb += [aes.i.valid.eq(1), aes.i.payload.block.eq(0)]
                with m.If(aes.i.ready):
                    with m.If(blocks_left != 0):
                        m.next = "COUNTER"
                    with m.Else():
                        m.next = "J0"
            with m.State("COUNTER"):
                # inc32(J0), inc32^2(J0), ... for the text.
                m.d.comb += [aes.i.valid.eq(1),
                             aes.i.payload.block.eq(Cat(cmd.nonce, _byteswap(counter)))]
                with m.If(aes.i.ready):
                    m.d.sync += [counter.eq(counter + 1), blocks_left.eq(blocks_left - 1)]
                    with m.If(blocks_left == 1):
                        m.next = "J0"
            with m.State("J0"):
                # E(K, J0) last: the consumer needs it only for the tag, so it need not store it.
                m.d.comb += [aes.i.valid.eq(1),
                             aes.i.payload.block.eq(Cat(cmd.nonce, _byteswap(Const(1, 32)))),
                             self.cmd.ready.eq(aes.i.ready)]
                with m.If(aes.i.ready):
                    m.next = "IDLE"

    def _consumer(self, m, aes, ghash, fifo):
        desc = Signal(_Descriptor)
        aad_left = Signal(LEN_WIDTH)     # bytes of AAD still to come
        text_left = Signal(LEN_WIDTH)
        hash_left = Signal(LEN_WIDTH - 2)  # GHASH blocks still to come, including the lengths

        m.d.comb += ghash.i.payload.remaining.eq(
            Mux(hash_left >= (1 << REMAINING_WIDTH) - 1, (1 << REMAINING_WIDTH) - 1, hash_left))
        lengths = Cat(_byteswap(Cat(Const(0, 3), desc.aad_len, Const(0, 64 - 3 - LEN_WIDTH))),
                      _byteswap(Cat(Const(0, 3), desc.text_len, Const(0, 64 - 3 - LEN_WIDTH))))

        aad_bytes = wire(m, Mux(aad_left >= 16, 16, aad_left), "aad_bytes")
        text_bytes = wire(m, Mux(text_left >= 16, 16, text_left), "text_bytes")
        aad_data = wire(m, self.i.payload & _byte_mask(aad_bytes), "aad_data")
        text_in = wire(m, self.i.payload & _byte_mask(text_bytes), "text_in")
        text_out = wire(m, (self.i.payload ^ aes.o.payload) & _byte_mask(text_bytes), "text_out")

        # The result joins three streams in one clock: GHASH's Y, E(K, J0) from the AES core and,
        # when decrypting, the received tag on ``i``; none of them is stored.
        tag_ok = (desc.tag_bytes >= 1) & (desc.tag_bytes <= 16)
        tag_mask = _byte_mask(Mux(tag_ok, desc.tag_bytes, 16))
        tag = wire(m, (ghash.o.payload ^ aes.o.payload) & tag_mask, "tag")
        m.d.comb += [
            self.r.payload.tag.eq(tag),
            self.r.payload.match.eq(desc.decrypt & tag_ok & (tag == (self.i.payload & tag_mask))),
            self.r.payload.error.eq(~tag_ok),
        ]

        def after_aad():
            with m.If(desc.text_len != 0):
                m.next = "TEXT"
            with m.Else():
                m.next = "LENGTHS"

        with m.FSM(name="consumer"):
            with m.State("START"):
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy):
                    new = Signal(_Descriptor)
                    m.d.comb += new.eq(fifo.r_data)
                    m.d.sync += [
                        desc.eq(new), aad_left.eq(new.aad_len), text_left.eq(new.text_len),
                        hash_left.eq(_blocks(new.aad_len) + _blocks(new.text_len) + 1),
                    ]
                    with m.If(new.new_h):
                        m.next = "HASH_KEY"
                    with m.Elif(new.aad_len != 0):
                        m.next = "AAD"
                    with m.Elif(new.text_len != 0):
                        m.next = "TEXT"
                    with m.Else():
                        m.next = "LENGTHS"
            with m.State("HASH_KEY"):
                m.d.comb += [ghash.h.valid.eq(aes.o.valid), ghash.h.payload.eq(aes.o.payload),
                             aes.o.ready.eq(ghash.h.ready)]
                with m.If(aes.o.valid & ghash.h.ready):
                    with m.If(desc.aad_len != 0):
                        m.next = "AAD"
                    with m.Else():
                        after_aad()
            with m.State("AAD"):
                m.d.comb += [
                    self.o.payload.data.eq(aad_data), self.o.payload.bytes.eq(aad_bytes),
                    self.o.payload.aad.eq(1),
                    self.o.payload.last.eq((aad_left <= 16) & (desc.text_len == 0)),
                    ghash.i.payload.block.eq(aad_data),
                    self.o.valid.eq(self.i.valid & ghash.i.ready),
                    ghash.i.valid.eq(self.i.valid & self.o.ready),
                    self.i.ready.eq(self.o.ready & ghash.i.ready),
                ]
                with m.If(self.i.valid & self.o.ready & ghash.i.ready):
                    m.d.sync += [aad_left.eq(Mux(aad_left >= 16, aad_left - 16, 0)),
                                 hash_left.eq(hash_left - 1)]
                    with m.If(aad_left <= 16):
                        after_aad()
            with m.State("TEXT"):
                m.d.comb += [
                    self.o.payload.data.eq(text_out), self.o.payload.bytes.eq(text_bytes),
                    self.o.payload.last.eq(text_left <= 16),
                    ghash.i.payload.block.eq(Mux(desc.decrypt, text_in, text_out)),
                    self.o.valid.eq(self.i.valid & aes.o.valid & ghash.i.ready),
                    ghash.i.valid.eq(self.i.valid & aes.o.valid & self.o.ready),
                    self.i.ready.eq(aes.o.valid & self.o.ready & ghash.i.ready),
                    aes.o.ready.eq(self.i.valid & self.o.ready & ghash.i.ready),
                ]
                with m.If(self.i.valid & aes.o.valid & self.o.ready & ghash.i.ready):
                    m.d.sync += [text_left.eq(Mux(text_left >= 16, text_left - 16, 0)),
                                 hash_left.eq(hash_left - 1)]
                    with m.If(text_left <= 16):
                        m.next = "LENGTHS"
            with m.State("LENGTHS"):
                m.d.comb += [ghash.i.valid.eq(1), ghash.i.payload.block.eq(lengths)]
                with m.If(ghash.i.ready):
                    m.next = "RESULT"
            with m.State("RESULT"):
                tag_in = desc.decrypt
                m.d.comb += [
                    self.r.valid.eq(ghash.o.valid & aes.o.valid & (self.i.valid | ~tag_in)),
                    ghash.o.ready.eq(self.r.ready & aes.o.valid & (self.i.valid | ~tag_in)),
                    aes.o.ready.eq(self.r.ready & ghash.o.valid & (self.i.valid | ~tag_in)),
                    self.i.ready.eq(tag_in & self.r.ready & ghash.o.valid & aes.o.valid),
                ]
                with m.If(self.r.valid & self.r.ready):
                    m.next = "START"
