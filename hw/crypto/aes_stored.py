"""The compact AES with its round keys *stored*: expanded in gateware once per key, into block RAM.

:class:`~ipchan.hw.crypto.aes.AESIterative` computes each round key in the clock of its round, from
the cipher key that every request carries. On an iCE40UP5K beside the SA table that costs too
much: the on-the-fly schedule is about 505 LUT4 and 256 flip-flops, and the 256-bit key a request
carries must sit in some register for a whole message (measured, docs/crypto-performance.md,
seventh session). :class:`AESStoredKeys` keeps the round keys of ``slots`` keys in one 128-bit wide
block RAM instead, one row a round (``slot * 16 + round``; 16 slots are 8 iCE40 EBR), and a request
names its key by slot. A key is loaded once, as four or eight 32-bit words on the ``key`` stream
(the width at which an SA table holds it), and expanded there by a word-serial expander that
borrows four of the state S-boxes while no block is in flight: the host never supplies round keys.

Costs and what they buy:

* A block takes ``Nr + 1`` clocks (11 for AES-128, 15 for AES-256), one more than
  :class:`AESIterative`: the RAM has one read port, and a block needs ``Nr + 1`` round keys, so
  round key 0 of the next block is read in the clock after the last round (the clock the next
  block's whitening needs it), not beside round key ``Nr``. Holding it in flip-flops instead would
  cost 128 cells; 15 clocks a block still gives more than 8 text bits a clock on 1500 bytes.
* Loading a key takes ``Nk`` clocks for its words, then two clocks for each of the other
  ``4 * (Nr + 1) - Nk`` words (the expander reads ``w[i - Nk]`` from the RAM and looks up
  ``SubWord(w[i - 1])`` in one clock, and writes ``w[i]`` in the next): :data:`EXPAND_CLOCKS`
  (82 for AES-128, 106 for AES-256) before a block can start. Key
  loads take precedence over blocks between two blocks, and no block is accepted while one runs.
* The slot a key is loaded into must not be named by a block still to be encrypted (the ESP layer
  frees a slot before it reuses it): a load never waits for the blocks of the key it replaces.

Byte order as in :mod:`.aes`: byte ``k`` of a block is ``value[8*k:8*k+8]``, and key word ``j``
holds key bytes ``4j .. 4j+3`` (byte ``4j`` in bits 0..7).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .aes import _byte, _rot_word, _word, _xtime, mix_columns, sbox_lookups, shift_rows, wire
from .tables import SBOX, gf256_mul


__all__ = ["AESStoredKeys", "stored_request", "key_word", "check_slots", "index_width",
           "EXPAND_CLOCKS", "ROWS_PER_SLOT", "ROUNDS", "KEY_WORDS", "SCHEDULE_WORDS"]


#: Rows of the round-key RAM a slot takes (15 are used by AES-256; a power of two keeps the row
#: address a concatenation).
ROWS_PER_SLOT = 16

#: By key size: rounds (Nr), words of the key (Nk) and words of its schedule (4 * (Nr + 1)).
ROUNDS = {128: 10, 256: 14}
KEY_WORDS = {128: 4, 256: 8}
SCHEDULE_WORDS = {size: 4 * (rounds + 1) for size, rounds in ROUNDS.items()}

#: Clock edges from the one that takes a key's last word to the first that can accept a block
#: (under any key), by key size: two a word for every word after the key's own, then one to read
#: the block's round key 0, and the accepting edge.
EXPAND_CLOCKS = {size: 2 * (SCHEDULE_WORDS[size] - KEY_WORDS[size]) + 2 for size in ROUNDS}


def _by_size(key256, table, offset=0):
    # ``table``'s value (plus ``offset``) for the key size ``key256`` selects.
    return Mux(key256, table[256] + offset, table[128] + offset)


def check_slots(slots, name="slots"):
    """Refuse a slot count that is not a power of two (so that every value of the index field
    names a slot that has rows), naming the argument ``name``."""
    if not isinstance(slots, int) or isinstance(slots, bool):
        raise TypeError(f"{name} must be an integer, not {slots!r}")
    if slots < 1 or slots & (slots - 1):
        raise ValueError(f"{name} must be a power of two, not {slots!r}")


def index_width(slots):
    """Width of a slot index for ``slots`` slots (at least one bit)."""
    check_slots(slots)
    return max(1, (slots - 1).bit_length())


def stored_request(slots):
    """One block to encrypt under the key in slot ``index``."""
    return data.StructLayout({"block": 128, "index": index_width(slots)})


def key_word(slots):
    """One 32-bit word of a key to load into slot ``index``; ``key256`` selects AES-256 (eight
    words) or AES-128 (four). ``index`` and ``key256`` must be the same on all of a key's words."""
    return data.StructLayout({"data": 32, "index": index_width(slots), "key256": 1})


#: The S-box with each entry's double beside it, ``S(x) | 2·S(x) << 8``: an iCE40 block RAM is 16
#: bits wide anyway, and with the doubles looked up, MixColumns is XORs of table outputs only
#: (no xtime), one LUT level less in front of the next S-box address.
SBOX_DOUBLED = tuple(SBOX[x] | gf256_mul(SBOX[x], 2) << 8 for x in range(256))


def _sub_state_doubled(m, name, state, en):
    """SubBytes of ``state`` through :data:`SBOX_DOUBLED`: the substituted state and its bytes
    doubled (valid a clock after the address, held while ``en`` is low)."""
    outs = sbox_lookups(m, name, [_byte(state, k) for k in range(16)], en,
                        table=SBOX_DOUBLED, width=16)
    return (wire(m, Cat(*(o[:8] for o in outs)), f"{name}_out"),
            wire(m, Cat(*(o[8:] for o in outs)), f"{name}_double"))


class AESStoredKeys(wiring.Component):
    """Compact AES, one round a clock, with round keys stored per key slot (module docstring).

    Parameters
    ----------
    slots : int
        How many keys the round-key RAM holds.

    Members
    -------
    key : ``In(stream.Signature(key_word(slots)))``
        Keys to load, a word a beat.
    i : ``In(stream.Signature(stored_request(slots)))``
        Blocks to encrypt, each naming its key's slot.
    o : ``Out(stream.Signature(unsigned(128)))``
        Ciphertext blocks, in request order.
    """

    #: Clock edges from the one that accepts a block to the one after which its result is valid,
    #: for AES-128 and AES-256 (a round a clock, as :class:`~ipchan.hw.crypto.aes.AESIterative`).
    LATENCY = ROUNDS

    #: Clocks a block takes at full rate, by key size: its rounds and the clock that reads the
    #: next block's round key 0.
    CLOCKS_PER_BLOCK = {size: rounds + 1 for size, rounds in ROUNDS.items()}

    def __init__(self, slots):
        try:
            check_slots(slots)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a refused core is not an unused one
            raise
        self.slots = slots
        super().__init__({
            "key": In(stream.Signature(key_word(slots))),
            "i": In(stream.Signature(stored_request(slots))),
            "o": Out(stream.Signature(unsigned(128))),
        })

    def elaborate(self, platform):
        m = Module()
        req = self.i.payload
        width = index_width(self.slots)

        rk_ram = Memory(shape=unsigned(128), depth=(1 << width) * ROWS_PER_SLOT, init=[],
                        # No read ever meets a write of the same row in a way that matters (a
                        # block is only primed once no key is loading), so Yosys need not
                        # emulate read-before-write: that was a 128-bit bypass multiplexer.
                        attrs={"ram_style": "block", "no_rw_check": 1})
        # Kept on the component for white-box tests (the expansion in the RAM).
        m.submodules.round_keys = self._round_keys = rk_ram
        rd = rk_ram.read_port(domain="sync")
        wr = rk_ram.write_port(granularity=32)
        rk = rd.data                    # the round key of this clock's round (or of the next
                                        # block's whitening, when primed)

        # Which slots hold an AES-256 key.
        key256_of = Signal(1 << width)

        # --- The round unit ---------------------------------------------------------------------
        busy = Signal()
        rnd = Signal(4)                 # the round this clock computes, 1 .. Nr
        slot = Signal(width)            # the block's key slot
        last = Signal()                 # this is the last round (registered, decoded early)
        # The RAM's output is round key 0 of the request on ``i``: the previous clock read that
        # row for it (``i.payload`` is stable while ``i.valid``), and nothing else has been read
        # since. Only then can the request be accepted, since its first step (the whitening)
        # needs that key in the clock it is accepted.
        primed = Signal()
        loading = Signal()              # a key is being loaded or expanded: no block may start

        last_round = busy & last
        # As in AESIterative: the last round finishes only into an empty output register, so
        # nothing depends on ``o.ready`` combinationally.
        finishing = last_round & ~self.o.valid
        stall = last_round & self.o.valid
        # A key load goes first: between two blocks, a load that is waiting starts.
        start_load = ~busy & ~loading & self.key.valid
        m.d.comb += self.i.ready.eq(~busy & primed & ~loading & ~self.key.valid)
        accept = self.i.valid & self.i.ready
        advance = busy & ~last

        req_256 = wire(m, Array(key256_of)[req.index], "req_256")
        key256 = Signal()
        # Round 1 is never the last (AES has 10 or 14 rounds), so ``last`` is decoded from the
        # registers only: through ``accept``, the slot's key size and the compare it set the
        # compact core's clock beside the serial engine on the iCE40.
        with m.If(accept):
            m.d.sync += [rnd.eq(1), key256.eq(req_256), last.eq(0),
                         busy.eq(1), slot.eq(req.index)]
        with m.Elif(advance):
            m.d.sync += [rnd.eq(rnd + 1), last.eq(rnd + 1 == _by_size(key256, ROUNDS))]

        state_addr = Signal(128)
        # --- The expander, declared here because it borrows the state S-boxes -------------------
        expanding = Signal()            # two clocks a word: ``phase`` 0 looks up, 1 writes
        phase = Signal()
        sub_addr = Signal(32)
        sb, sb2 = _sub_state_doubled(m, "sbox", state_addr, ~stall)

        shifted = wire(m, shift_rows(sb), "shifted")
        mixed = wire(m, mix_columns(shifted, shift_rows(sb2)), "mixed")
        s_next = wire(m, Mux(last, shifted, mixed) ^ rk, "s_next")

        # While expanding, the first four S-boxes look up ``sub_addr``; the other twelve need no
        # address of their own then, so they keep the round's (no select in front of them).
        with m.If(accept):
            m.d.comb += state_addr.eq(req.block ^ rk)
        with m.Else():
            m.d.comb += state_addr.eq(Cat(Mux(expanding, sub_addr, s_next[:32]), s_next[32:]))

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(finishing):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(s_next), busy.eq(0)]

        # --- The expander -----------------------------------------------------------------------
        # FIPS-197 figure 11, a word at a time: w[i] = w[i - Nk] ^ temp, where temp is
        # SubWord(RotWord(w[i - 1])) ^ Rcon when i % Nk == 0, SubWord(w[i - 1]) when Nk = 8 and
        # i % 8 == 4, else w[i - 1]. w[i - Nk] is read back from the RAM (it is in the same
        # column of its row as w[i], since Nk is 4 or 8), w[i - 1] is kept in ``prev``, and
        # SubWord(RotWord(x)) is RotWord(SubWord(x)), so the S-boxes always look up ``prev`` as
        # it is.
        ld_slot = Signal(width)
        ld_256 = Signal()
        word = Signal(6)                # the word being loaded or computed, i
        prev = Signal(32)
        rcon = Signal(8)
        m.d.comb += sub_addr.eq(prev)
        nk_mask = _by_size(ld_256, KEY_WORDS, -1)
        first_of_nk = (word & nk_mask) == 0
        middle_256 = ld_256 & (word[:3] == 4)
        sub = sb[:32]
        temp = Signal(32)
        with m.If(first_of_nk):
            m.d.comb += temp.eq(_rot_word(sub) ^ rcon)
        with m.Elif(middle_256):
            m.d.comb += temp.eq(sub)
        with m.Else():
            m.d.comb += temp.eq(prev)
        old = wire(m, Array(_word(rk, j) for j in range(4))[word[:2]], "old")
        computed = wire(m, old ^ temp, "computed")
        last_word = word == _by_size(ld_256, SCHEDULE_WORDS, -1)

        key_in = self.key.payload
        m.d.comb += self.key.ready.eq(start_load | (loading & ~expanding))
        take_word = self.key.valid & self.key.ready
        this_slot = Mux(loading, ld_slot, key_in.index)
        this_256 = Mux(loading, ld_256, key_in.key256)
        with m.If(take_word):
            m.d.comb += [
                wr.addr.eq(Cat(word[2:], this_slot)),
                wr.data.eq(key_in.data.replicate(4)),
                wr.en.eq(Const(1, 4) << word[:2]),
            ]
            m.d.sync += [prev.eq(key_in.data), word.eq(word + 1)]
            with m.If(start_load):
                m.d.sync += [loading.eq(1), ld_slot.eq(key_in.index), ld_256.eq(key_in.key256),
                             rcon.eq(1)]
            with m.If(word == _by_size(this_256, KEY_WORDS, -1)):
                m.d.sync += [expanding.eq(1), phase.eq(0)]
        with m.If(expanding):
            m.d.sync += phase.eq(~phase)
            with m.If(phase):
                m.d.comb += [
                    wr.addr.eq(Cat(word[2:], ld_slot)),
                    wr.data.eq(computed.replicate(4)),
                    wr.en.eq(Const(1, 4) << word[:2]),
                ]
                m.d.sync += [prev.eq(computed), word.eq(word + 1)]
                with m.If(first_of_nk):
                    m.d.sync += rcon.eq(_xtime(rcon))
                with m.If(last_word):
                    m.d.sync += [expanding.eq(0), loading.eq(0), word.eq(0),
                                 key256_of.bit_select(ld_slot, 1).eq(ld_256)]

        # --- The round-key RAM's read address -------------------------------------------------
        # Expanding: the row of w[i - Nk]. In a round before the last: the next round's key.
        # Otherwise (idle, or the last round): round key 0 of the request on ``i``, which primes
        # it; in the clock a block is accepted, its round key 1.
        exp_row = (word - _by_size(ld_256, KEY_WORDS))[2:6]
        with m.If(expanding):
            m.d.comb += rd.addr.eq(Cat(exp_row, ld_slot))
        with m.Elif(busy & ~last):
            m.d.comb += rd.addr.eq(Cat((rnd + 1)[:4], slot))
        with m.Elif(accept):
            m.d.comb += rd.addr.eq(Cat(Const(1, 4), req.index))
        with m.Else():
            m.d.comb += rd.addr.eq(Cat(Const(0, 4), req.index))
        # A stalled last round keeps its round key on the RAM's output (and its S-box outputs).
        m.d.comb += rd.en.eq(~stall)
        m.d.sync += primed.eq(self.i.valid & ~accept & ~(busy & ~last) & ~stall & ~loading
                              & ~start_load)
        return m
