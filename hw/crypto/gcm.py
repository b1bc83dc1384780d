"""AES-GCM and GMAC (NIST SP 800-38D; RFC 4106 and RFC 4543 for ESP) with stream interfaces.

One message is: a command on ``cmd``, then its data beats on ``i``, while the processed beats leave
on ``o``, then one result on ``r``. Messages follow each other in order. A command is accepted once
the core has sent all of its message's blocks to the AES core (the AES core buffers one block in
the compact profile and up to 64 in the fast one, so that is up to that many blocks before the
message's last data beat), and the next command may follow at once, so its blocks enter the AES
core while the current message finishes.

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
    One per message: ``tag``, ``match`` and ``error``. When encrypting, the first ``tag_bytes``
    bytes of ``tag`` are the tag (the bytes after them are not defined: the fast core zeroes them,
    the compact one leaves them); when decrypting, ``tag`` is not defined (``match`` is the
    answer; the compact core gives the computed tag XOR the received one).

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
(decrypting) the received tag beat while all three wait on their streams (two clocks: the 128-bit
comparison is registered half-way), so none of them is stored. (The compact core hands E(K, J0)
and the received tag to its GHASH as a final addend instead, and takes the tag, or the tag XOR the
received one, from GHASH's result: no 128-bit XOR of its own.) The AES and GHASH cores come from
the profile
(:func:`ipchan.hw.crypto.aes.make_aes`, :func:`ipchan.hw.crypto.ghash.make_ghash`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .aes import make_aes, same_key_pieces, wire
from .aes_stored import AESStoredKeys, check_slots, index_width, key_word
from .ghash import GHASHSerial, REMAINING_WIDTH, make_ghash
from ..onehot import OneHotFSM


__all__ = ["GCMCommand", "GCMOutput", "GCMResult", "GCMCore", "LEN_WIDTH", "PROFILES",
           "stored_key_command"]


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


def stored_key_command(key_slots):
    """The command of a core built with ``key_slots``: :data:`GCMCommand` with the key named by
    its slot (``key_index``) instead of carried (``key``, ``key256``)."""
    fields = {"key_index": index_width(key_slots)}
    fields.update((name, shape) for name, shape in GCMCommand.members.items()
                  if name not in ("key", "key256"))
    return data.StructLayout(fields)


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


def _blocks(length):
    return (length + 15) >> 4


class GCMCore(wiring.Component):
    """AES-GCM / GMAC core; see the module docstring for the interfaces and the contract.

    Parameters
    ----------
    profile : ``"compact"`` or ``"fast"``
    cache_h : bool or None
        Skip ``E(K, 0)`` when a message's key is the previous one's (default: the fast profile).
    key_slots : int or None
        Compact profile only: keep the round keys of this many keys (a power of two) in block RAM
        (:class:`~ipchan.hw.crypto.aes_stored.AESStoredKeys`), loaded once per key on the ``key``
        stream, a 32-bit word a beat; a command then names its key by slot (``key_index``,
        :func:`stored_key_command`) instead of carrying it. This is the iCE40 build: it saves the
        on-the-fly key schedule and the 256-bit key of every command, for one clock more per AES
        block. A slot must not be loaded while a message that names it is still in the core.
    """

    def __init__(self, profile="compact", *, cache_h=None, key_slots=None):
        def refuse(error):
            self._MustUse__silence = True  # a refused core is not an unused one
            raise error
        if profile not in PROFILES:
            refuse(ValueError(f"Profile must be 'compact' or 'fast', not {profile!r}"))
        if key_slots is not None:
            if profile != "compact":
                refuse(ValueError(f"key_slots needs the compact profile, not {profile!r}"))
            try:
                check_slots(key_slots, "key_slots")
            except (TypeError, ValueError) as error:
                refuse(error)
            if cache_h:
                # H belongs to a key, not to a slot, and a slot can be loaded with another key.
                refuse(ValueError("cache_h cannot be used with key_slots"))
            cache_h = False
        if cache_h is None:
            cache_h = profile == "fast"
        if not isinstance(cache_h, bool):
            refuse(TypeError(f"cache_h must be a bool or None, not {cache_h!r}"))
        self.profile = profile
        self.cache_h = cache_h
        self.key_slots = key_slots
        members = {
            "cmd": In(stream.Signature(GCMCommand if key_slots is None
                                       else stored_key_command(key_slots))),
            "i": In(stream.Signature(unsigned(128))),
            "o": Out(stream.Signature(GCMOutput)),
            "r": Out(stream.Signature(GCMResult)),
        }
        if key_slots is not None:
            members["key"] = In(stream.Signature(key_word(key_slots)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.key_slots is None:
            m.submodules.aes = aes = make_aes(self.profile)
        else:
            m.submodules.aes = aes = AESStoredKeys(self.key_slots)
            wiring.connect(m, wiring.flipped(self.key), aes.key)
        m.submodules.ghash = ghash = make_ghash(self.profile)
        if self.profile == "compact":
            # The issuer runs at most one message ahead of the consumer: the compact AES core
            # holds one block, so a message's last request (E(K, J0)) is only accepted once the
            # consumer has taken all but the last of its text blocks, i.e. after it read the
            # message's descriptor.
            fifo = SyncFIFO(width=_Descriptor.size, depth=1)
        else:
            # The fast AES core holds up to 64 blocks: the issuer may finish several short
            # messages while the consumer is still in the one before.
            fifo = SyncFIFOBuffered(width=_Descriptor.size, depth=4)
        m.submodules.descriptors = fifo
        self._issuer(m, aes, fifo)
        self._consumer(m, aes, ghash, fifo)
        return m

    def _issuer(self, m, aes, fifo):
        # The command stays valid and stable (the stream rule) until it is accepted, which happens
        # with its last AES request; so the key and nonce need no copy here.
        cmd = self.cmd.payload
        # inc32 of J0 never carries past bit 12: a 65535-byte text has 4096 blocks, counters 2..4097.
        counter = Signal(LEN_WIDTH - 3)
        blocks_left = Signal(LEN_WIDTH - 3)

        if self.cache_h:
            # H depends only on the key: skip E(K, 0) when the key is the previous message's.
            # The compare takes two clocks (16-bit pieces, registered, then their AND): in one it
            # set the whole fast core's clock (86.6 MHz, 9.1 ns of it routing). ``checked`` says
            # the pieces are of this command: it stays stable while valid, and ``last_key``
            # changes only when a command is taken, which clears ``checked``.
            last_key = Signal(256)
            last_key256 = Signal()
            have_key = Signal()
            pieces = Signal(18)
            checked = Signal()
            m.d.sync += pieces.eq(Cat(same_key_pieces(cmd.key, cmd.key256, last_key, last_key256),
                                      have_key))
            new_h = ~pieces.all()
        else:
            new_h = Const(1)
            checked = Const(1)
        descriptor = Signal(_Descriptor)
        m.d.comb += [
            descriptor.aad_len.eq(cmd.aad_len), descriptor.text_len.eq(cmd.text_len),
            descriptor.decrypt.eq(cmd.decrypt), descriptor.tag_bytes.eq(cmd.tag_bytes),
            descriptor.new_h.eq(new_h),
            fifo.w_data.eq(descriptor),
        ]
        if self.key_slots is None:
            m.d.comb += [aes.i.payload.key.eq(cmd.key), aes.i.payload.key256.eq(cmd.key256)]
        else:
            m.d.comb += aes.i.payload.index.eq(cmd.key_index)

        with m.FSM(name="issuer"):
            with m.State("IDLE"):
                m.d.comb += fifo.w_en.eq(self.cmd.valid & checked)
                if self.cache_h:
                    m.d.sync += checked.eq(self.cmd.valid & ~(checked & fifo.w_rdy))
                with m.If(self.cmd.valid & checked & fifo.w_rdy):
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
                             aes.i.payload.block.eq(
                                 Cat(cmd.nonce, _byteswap(Cat(counter, Const(0, 32 - len(counter))))))]
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
        # Bytes still to come of the current part (AAD, then text): one counter serves both.
        left = Signal(LEN_WIDTH)
        in_aad, in_text, in_final = Signal(), Signal(), Signal()
        # Whether the message has AAD and text, registered with its descriptor: tested as
        # 16-bit ORs of the descriptor's lengths, they led the compact core's critical path
        # beside the serial engine on the iCE40.
        has_aad, has_text = Signal(), Signal()
        # The compact GHASH adds E(K, J0) (and, decrypting, the received tag) to Y itself, as a
        # final addend, so its result is the tag (or the tag XOR the received one) and the core
        # needs no 128-bit XOR for either.
        final_addend = isinstance(ghash, GHASHSerial)

        # Masks and byte counts by decoding, not comparing: Yosys turns every `<` into a carry
        # chain, which on the iCE40 is a logic cell per bit.
        full = wire(m, left[4:].any(), "full")                     # 16 or more bytes left
        # "At most 16 bytes left", kept in a register beside ``left`` (it drives the FSM's
        # transitions, where the 16-bit comparison set the iCE40's clock).
        last_beat = Signal()

        def at_most(value, limit_log2):
            # value <= 2**limit_log2, without a carry chain.
            return (value[limit_log2 + 1:] == 0) & ~(value[limit_log2] & value[:limit_log2].any())

        def set_masks(mask, enc):
            # The input's bytes for the output and GHASH, and the key stream's for GHASH (when
            # encrypting, GHASH takes the ciphertext: the input XOR the key stream).
            if not part_masks:
                m.d.sync += [dp_mask.eq(mask), ks_mask.eq(Mux(enc, mask, 0))]

        def load_left(value):
            m.d.sync += [left.eq(value), last_beat.eq(at_most(value, 4))]

        def goto(state, decrypt, length=None):
            # A transition, with the data path's controls for the state it goes to. After any
            # ``consumed_beat`` of the same clock: outside AAD and TEXT the masks are zero
            # (GHASH's lengths block must not see the input), except in FINAL, where GHASH takes
            # E(K, J0) and, decrypting, the received tag. For AAD and TEXT, ``length`` is the
            # part's byte count, a register (the mask of a value selected by the state set the
            # iCE40's clock: 30.8 MHz).
            fsm.next = state
            enc = (state == "TEXT") & ~decrypt
            m.d.sync += [dp_text.eq(state == "TEXT"), dp_enc.eq(enc),
                         dp_len.eq(state == "LENGTHS")]
            if part_masks:
                m.d.sync += [dp_part.eq(state in ("AAD", "TEXT")),
                             dp_hkey.eq(state == "HASH_KEY"),
                             dp_final.eq(state == "FINAL"),
                             dp_final_dec.eq((state == "FINAL") & decrypt)]
            elif state in ("AAD", "TEXT"):
                set_masks(byte_mask(length), enc)
            elif state == "FINAL":
                m.d.sync += [dp_mask.eq(Mux(decrypt, 0xFFFF, 0)), ks_mask.eq(0xFFFF)]
            elif state != "HASH_KEY":
                set_masks(0, 0)

        def last_mask(value):
            # The valid bytes of a part's last beat, for a part of ``value`` bytes.
            mask = Signal(16)
            with m.Switch(value[:4]):
                for k in range(16):
                    with m.Case(k):
                        m.d.comb += mask.eq((1 << k) - 1 if k else 0xFFFF)
            return mask

        def byte_mask(value):
            # The valid bytes of a beat with ``value`` bytes left: all 16, or the low ones.
            mask = Signal(16)
            with m.If(value[4:].any()):
                m.d.comb += mask.eq(0xFFFF)
            with m.Else():
                with m.Switch(value[:4]):
                    for k in range(16):
                        with m.Case(k):
                            m.d.comb += mask.eq((1 << k) - 1)
            return mask

        part_bytes = Mux(full, 16, left[:4])

        # The data path's controls are registers, set with every change of ``left`` and every
        # transition (see ``load_left``, ``consumed_beat`` and ``goto``), so that each bit of the
        # output and of GHASH's input is one LUT4 of the input bit, the key stream bit, a control
        # and its byte's mask. Decoded from ``left`` and the state in the same clock, Yosys
        # (ABC) spread the decodes into every bit: the core's own logic took 1,121 LUT4 then,
        # 1,055 with these registers (``synth_ice40 -noflatten``, the stored-key core).
        dp_mask = Signal(16)            # valid bytes of this AAD or text beat; zero elsewhere
        ks_mask = Signal(16)            # the key stream's bytes that GHASH takes
        dp_text = Signal()              # in TEXT: XOR the key stream into the output
        dp_enc = Signal()               # in TEXT, encrypting: GHASH takes the output
        dp_len = Signal()               # in LENGTHS: GHASH takes the lengths block
        # The compact core sets its masks once a message, not once a beat: the masks of the
        # AAD's and the text's last beats are registers loaded when the message starts, and a
        # beat's masks are the part's or all ones as ``last_beat`` says, two LUT4 levels of
        # registers per byte. Set with every beat, the masks' enables and inputs came from the
        # beat's handshake and the byte count, and beside the serial engine on the iCE40 those
        # paths set the clock. The fast core keeps the registered masks: its data path has no
        # LUT level to spare.
        part_masks = final_addend
        if part_masks:
            aad_mask = Signal(16)
            text_mask = Signal(16)
            part_mask = Mux(dp_text, text_mask, aad_mask)
            dp_part = Signal()          # in AAD or TEXT
            dp_hkey = Signal()          # in HASH_KEY
            dp_final = Signal()         # in FINAL: GHASH takes E(K, J0) ...
            dp_final_dec = Signal()     # ... and, decrypting, the received tag
            beat_mask = Mux(last_beat, part_mask, 0xFFFF)
            m.d.comb += [
                dp_mask.eq((beat_mask & dp_part.replicate(16)) | dp_final_dec.replicate(16)),
                ks_mask.eq((beat_mask & dp_enc.replicate(16)) | dp_final.replicate(16)),
            ]
        bit_ok = Cat(*(dp_mask[k].replicate(8) for k in range(16)))
        ks_ok = Cat(*(ks_mask[k].replicate(8) for k in range(16)))

        # AAD passes through; text is XORed with the key stream; GHASH gets the ciphertext,
        # which is the output when encrypting and the input when decrypting.
        stream_o = wire(m, aes.o.payload & dp_text.replicate(128), "stream_o")
        data_out = wire(m, (self.i.payload ^ stream_o) & bit_ok, "data_out")
        lengths = Cat(_byteswap(Cat(Const(0, 3), desc.aad_len, Const(0, 64 - 3 - LEN_WIDTH))),
                      _byteswap(Cat(Const(0, 3), desc.text_len, Const(0, 64 - 3 - LEN_WIDTH))))
        hash_in = wire(m, ((self.i.payload & bit_ok) ^ (aes.o.payload & ks_ok))
                       | (lengths & dp_len.replicate(128)), "hash_in")
        m.d.comb += [
            self.o.payload.data.eq(data_out),
            self.o.payload.bytes.eq(part_bytes),
            self.o.payload.aad.eq(in_aad),
            self.o.payload.last.eq(last_beat & (in_text | ~has_text)),
            ghash.i.payload.block.eq(hash_in),
            # In every state, not only HASH_KEY: ``h.valid`` says when it counts. Assigned in
            # that state alone, it was a 128-bit AND with the state decode: 117 LUT4 more for
            # Yosys on the iCE40 (but no more logic cells: each shared one with a bit of H).
            ghash.h.payload.eq(aes.o.payload),
        ]
        if final_addend:
            # The digit-serial GHASH needs no count: every block is multiplied (the lengths
            # block too), then a final addend (``remaining == 0``) brings E(K, J0) and,
            # decrypting, the received tag.
            m.d.comb += ghash.i.payload.remaining.eq(Mux(in_final, 0, 2))
        else:
            hash_left = Signal(LEN_WIDTH - 2)  # GHASH blocks still to come, with the lengths
            top = (1 << REMAINING_WIDTH) - 1
            m.d.comb += ghash.i.payload.remaining.eq(Mux(hash_left >= top, top, hash_left))
            with m.If(ghash.i.valid & ghash.i.ready):
                m.d.sync += hash_left.eq(hash_left - 1)

        # The fast core's result joins three streams: GHASH's Y, E(K, J0) from the AES core and,
        # when decrypting, the received tag on ``i``; none of them is stored. The compact one's
        # comes from GHASH alone (``final_addend``). The tag's byte mask is decoded when the
        # descriptor is read, into registers: decoded here, it was the start of the iCE40's
        # critical path (decode -> 128 XORs -> OR tree).
        tag_mask_bytes = Signal(16)
        tag_ok = Signal()
        next_mask_bytes = Signal(16)
        next_tag_ok = Signal()
        with m.Switch(_Descriptor(fifo.r_data).tag_bytes):
            for k in range(1, 17):
                with m.Case(k):
                    m.d.comb += [next_mask_bytes.eq((1 << k) - 1), next_tag_ok.eq(1)]
            with m.Default():
                m.d.comb += next_mask_bytes.eq(0xFFFF)
        with m.If(fifo.r_en & fifo.r_rdy):
            m.d.sync += [tag_mask_bytes.eq(next_mask_bytes), tag_ok.eq(next_tag_ok)]
        tag_mask = Cat(*(tag_mask_bytes[k].replicate(8) for k in range(16)))
        if final_addend:
            # GHASH's result is the tag, or (decrypting) the tag XOR the received one: the
            # bytes past ``tag_bytes`` are left as they are (the contract does not define them).
            tag = ghash.o.payload
            differs = wire(m, ghash.o.payload & tag_mask, "differs")
        else:
            tag = wire(m, (ghash.o.payload ^ aes.o.payload) & tag_mask, "tag")
            differs = wire(m, (tag ^ self.i.payload) & tag_mask, "differs")
        # The 128-bit comparison takes two clocks (RESULT, then VERDICT): the first ORs it into
        # eight 16-bit groups, registered; the three inputs stay valid meanwhile (nothing is
        # consumed before VERDICT). In one clock it was the iCE40's critical path.
        differs_groups = Signal(8)
        m.d.comb += [
            self.r.payload.tag.eq(tag),
            self.r.payload.match.eq(desc.decrypt & tag_ok & ~differs_groups.any()),
            self.r.payload.error.eq(~tag_ok),
        ]

        def after_aad():
            load_left(desc.text_len)
            with m.If(has_text):
                goto("TEXT", desc.decrypt, desc.text_len)
            with m.Else():
                goto("LENGTHS", desc.decrypt)

        def consumed_beat():
            # 16 bytes fewer: the next beat is whole if 32 or more were left.
            m.d.sync += [left.eq(Cat(left[:4], left[4:] - 1)), last_beat.eq(at_most(left, 5))]
            set_masks(byte_mask(Cat(left[:4], left[5:], Const(0, 1))), dp_enc)

        tag_there = self.i.valid | ~desc.decrypt
        if part_masks:
            # The compact core's handshakes, from the data path's controls, which say the state
            # as flip-flops of their own (``goto`` sets them with every transition into
            # HASH_KEY, AAD, TEXT, LENGTHS and FINAL, and clears them with every other): decoded
            # from the state register, the handshake into GHASH's clock enables set the iCE40's
            # clock beside the serial engine. The states below use the same signals.
            st_aad = dp_part & ~dp_text
            beat = st_aad | (dp_text & aes.o.valid)     # a beat of the message can pass
            m.d.comb += [
                in_aad.eq(st_aad), in_text.eq(dp_text), in_final.eq(dp_final),
                self.o.valid.eq(self.i.valid & ghash.i.ready & beat),
                ghash.i.valid.eq((self.i.valid & self.o.ready & beat) | dp_len |
                                 (dp_final & aes.o.valid & tag_there)),
                self.i.ready.eq(ghash.i.ready & ((self.o.ready & beat) |
                                                 (dp_final & desc.decrypt & aes.o.valid))),
                aes.o.ready.eq((dp_text & self.i.valid & self.o.ready & ghash.i.ready) |
                               (dp_final & ghash.i.ready & tag_there) |
                               (dp_hkey & ghash.h.ready)),
                ghash.h.valid.eq(dp_hkey & aes.o.valid),
            ]

        fsm = OneHotFSM(m, init="START", name="consumer")
        with fsm:
            def setup(d, d_has_aad, d_has_text):
                # The first part of the message described by ``d``.
                if part_masks:
                    m.d.sync += [aad_mask.eq(last_mask(d.aad_len)),
                                 text_mask.eq(last_mask(d.text_len))]
                if not final_addend:
                    m.d.sync += hash_left.eq(_blocks(d.aad_len) + _blocks(d.text_len) + 1)
                with m.If(d_has_aad):
                    load_left(d.aad_len)
                with m.Else():
                    load_left(d.text_len)
                with m.If(d.new_h):
                    goto("HASH_KEY", d.decrypt)
                with m.Elif(d_has_aad):
                    goto("AAD", d.decrypt, d.aad_len)
                with m.Elif(d_has_text):
                    goto("TEXT", d.decrypt, d.text_len)
                with m.Else():
                    goto("LENGTHS", d.decrypt)

            with fsm.State("START"):
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy):
                    new = Signal(_Descriptor)
                    m.d.comb += new.eq(fifo.r_data)
                    m.d.sync += [desc.eq(new), has_aad.eq(new.aad_len != 0),
                                 has_text.eq(new.text_len != 0)]
                    if final_addend:
                        # The compact core uses the copy, in SETUP, a clock later: from the
                        # FIFO's output, the byte count's load and the masks set the iCE40's
                        # clock (39.9 MHz). The fast core's FIFO has a registered output, and a
                        # clock a message counts there.
                        fsm.next = "SETUP"
                    else:
                        setup(new, new.aad_len != 0, new.text_len != 0)
            if final_addend:
                with fsm.State("SETUP"):
                    setup(desc, has_aad, has_text)
            with fsm.State("HASH_KEY"):
                if not part_masks:
                    m.d.comb += [ghash.h.valid.eq(aes.o.valid), aes.o.ready.eq(ghash.h.ready)]
                with m.If(aes.o.valid & ghash.h.ready):
                    with m.If(has_aad):
                        goto("AAD", desc.decrypt, left)
                    with m.Elif(has_text):
                        goto("TEXT", desc.decrypt, left)
                    with m.Else():
                        goto("LENGTHS", desc.decrypt)
            with fsm.State("AAD"):
                if not part_masks:
                    m.d.comb += [
                        in_aad.eq(1),
                        self.o.valid.eq(self.i.valid & ghash.i.ready),
                        ghash.i.valid.eq(self.i.valid & self.o.ready),
                        self.i.ready.eq(self.o.ready & ghash.i.ready),
                    ]
                with m.If(self.i.valid & self.o.ready & ghash.i.ready):
                    consumed_beat()
                    with m.If(last_beat):
                        after_aad()
            with fsm.State("TEXT"):
                if not part_masks:
                    m.d.comb += [
                        in_text.eq(1),
                        self.o.valid.eq(self.i.valid & aes.o.valid & ghash.i.ready),
                        ghash.i.valid.eq(self.i.valid & aes.o.valid & self.o.ready),
                        self.i.ready.eq(aes.o.valid & self.o.ready & ghash.i.ready),
                        aes.o.ready.eq(self.i.valid & self.o.ready & ghash.i.ready),
                    ]
                with m.If(self.i.valid & aes.o.valid & self.o.ready & ghash.i.ready):
                    consumed_beat()
                    with m.If(last_beat):
                        goto("LENGTHS", desc.decrypt)
            with fsm.State("LENGTHS"):
                if not part_masks:
                    m.d.comb += ghash.i.valid.eq(1)
                with m.If(ghash.i.ready):
                    goto("FINAL" if final_addend else "RESULT", desc.decrypt)
            # E(K, J0) and the received tag, one beat each, waiting until both are there.
            if final_addend:
                with fsm.State("FINAL"):
                    if not part_masks:
                        m.d.comb += [
                            in_final.eq(1),
                            ghash.i.valid.eq(aes.o.valid & tag_there),
                            aes.o.ready.eq(ghash.i.ready & tag_there),
                            self.i.ready.eq(desc.decrypt & aes.o.valid & ghash.i.ready),
                        ]
                    with m.If(aes.o.valid & tag_there & ghash.i.ready):
                        goto("RESULT", desc.decrypt)
            with fsm.State("RESULT"):
                # Wait for the result's parts; consume nothing yet.
                m.d.sync += differs_groups.eq(Cat(*(differs[16 * k:16 * k + 16].any()
                                                    for k in range(8))))
                with m.If(ghash.o.valid & (Const(1) if final_addend
                                           else aes.o.valid & tag_there)):
                    fsm.next = "VERDICT"
            with fsm.State("VERDICT"):
                # What RESULT waited for is still valid (a valid stream stays valid until taken).
                m.d.comb += [self.r.valid.eq(1), ghash.o.ready.eq(self.r.ready)]
                if not final_addend:
                    m.d.comb += [aes.o.ready.eq(self.r.ready),
                                 self.i.ready.eq(desc.decrypt & self.r.ready)]
                with m.If(self.r.ready):
                    fsm.next = "START"
