"""The AES forward cipher (FIPS-197) for 128- and 256-bit keys, with the key schedule in gateware.

GCM only ever encrypts, so there is no inverse cipher. Each request carries the cipher key itself,
never round keys; the cores expand them. :class:`AESIterative` expands them *on the fly*, one per
round, next to the data path: a key change is free, it costs four S-box lookups per round, and no
round-key storage has to exist (on the iCE40 a 128-bit wide round-key RAM would take eight block
RAMs, more than the extra S-boxes). :class:`AESPipelined` expands each new key once into one of
two banks of round-key registers, one bank per round unit, because carrying the key schedule
beside the data made its pipeline too wide to route.

Byte order: byte ``k`` of a block or key (``k = 0`` first, as FIPS-197 numbers them) is
``value[8*k:8*k+8]``; state byte ``k`` is row ``k % 4``, column ``k // 4``. An AES-128 key occupies
``key[0:128]`` and ``key[128:256]`` is ignored.

S-boxes are :class:`amaranth.lib.memory.Memory` with synchronous read ports, two ports per memory so
that one ECP5 DP16KD serves two lookups (the iCE40's one-read-port EBR is simply duplicated by
Yosys).

Two implementations share the round and key-step logic:

* :class:`AESIterative` (*compact*): one round unit used ``Nr`` times, 16 + 4 S-box lookups,
  ``Nr`` clocks per block (10 for AES-128, 14 for AES-256) with the next block accepted in the clock
  the previous one finishes. The read port's output register *is* the round register: a round is
  one clock, S-box output -> ShiftRows/MixColumns -> AddRoundKey -> next S-box address.
* :class:`AESPipelined` (*fast*): 14 unrolled round units, one block per clock, each round split
  into three clocks by default (an AES-128 result leaves round 10 and is delayed so blocks of either
  key size stay in order), free-running, with stored round keys, an output FIFO and credits for
  backpressure.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .tables import RCON, SBOX


__all__ = ["AESRequest", "AESIterative", "AESPipelined", "make_aes",
           "same_key_pieces", "shift_rows", "mix_columns", "key_step", "sbox_lookups", "wire"]


#: One block to encrypt. ``key256`` selects AES-256 (else AES-128, whose key is ``key[0:128]``).
AESRequest = data.StructLayout({
    "block": 128,
    "key": 256,
    "key256": 1,
})


def _byte(value, k):
    return value[8 * k:8 * k + 8]


def _word(value, j):
    return value[32 * j:32 * j + 32]


def shift_rows(state):
    """ShiftRows: row ``r`` rotates left by ``r`` columns (pure wiring)."""
    return Cat(*(_byte(state, 4 * ((c + r) % 4) + r) for c in range(4) for r in range(4)))


def _xtime(a):
    # Multiplication by x in GF(2^8): a shift, with the AES polynomial folded back in.
    return Cat(a[7], a[0] ^ a[7], a[1], a[2] ^ a[7], a[3] ^ a[7], a[4], a[5], a[6])


def mix_columns(state, doubled=None):
    """MixColumns on all four columns. ``doubled``, if given, holds each byte of ``state``
    multiplied by x (looked up beside the S-box, see :mod:`.aes_stored`); else it is computed."""
    out = []
    for c in range(4):
        a = [_byte(state, 4 * c + r) for r in range(4)]
        x = ([_xtime(b) for b in a] if doubled is None
             else [_byte(doubled, 4 * c + r) for r in range(4)])
        out += [x[0] ^ x[1] ^ a[1] ^ a[2] ^ a[3],
                a[0] ^ x[1] ^ x[2] ^ a[2] ^ a[3],
                a[0] ^ a[1] ^ x[2] ^ x[3] ^ a[3],
                x[0] ^ a[0] ^ a[1] ^ a[2] ^ x[3]]
    return Cat(*out)


def key_step(base, t):
    """One round key from the round key ``base`` it builds on and the substituted word ``t``:
    ``w[j] = base[0] ^ ... ^ base[j] ^ t`` (FIPS-197 figure 11 unrolled over four words).

    ``t`` comes from an S-box in the same clock, ``base`` from registers, so the prefix XORs of
    ``base`` are formed first and ``t`` enters last: one LUT level after the S-box, not four."""
    words, prefix = [], None
    for j in range(4):
        prefix = _word(base, j) if prefix is None else prefix ^ _word(base, j)
        words.append(prefix ^ t)
    return Cat(*words)


def _rot_word(word):
    return Cat(word[8:32], word[0:8])


def sbox_lookups(m, name, addrs, en, table=SBOX, width=8):
    """Synchronous lookups in ``table`` (256 entries of ``width`` bits; the S-box by default) of
    every address in ``addrs``, two per memory. Returns the data outputs (valid one clock after the
    address, held while ``en`` is low)."""
    outs = []
    for index in range(0, len(addrs), 2):
        # Yosys would otherwise map these small ROMs to logic ("FF mapping"), about 200 LUT4 each.
        memory = Memory(shape=unsigned(width), depth=256, init=table,
                        attrs={"ram_style": "block"})
        m.submodules[f"{name}_{index // 2}"] = memory
        for addr in addrs[index:index + 2]:
            port = memory.read_port(domain="sync")
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            outs.append(port.data)
    return outs


def wire(m, value, name):
    """``value`` as a named combinational signal. Besides naming things in waveforms, this keeps
    Amaranth's simulator fast: it evaluates a slice of a ``Cat`` by building the whole ``Cat``, so
    unnamed nested byte shuffles multiply its work."""
    signal = Signal(len(value), name=name)
    m.d.comb += signal.eq(value)
    return signal


def _sub_state(m, name, state, en):
    return wire(m, Cat(*sbox_lookups(m, name, [_byte(state, k) for k in range(16)], en)),
                f"{name}_out")


def _sub_word(m, name, word, en):
    return wire(m, Cat(*sbox_lookups(m, name, [_byte(word, k) for k in range(4)], en)),
                f"{name}_out")


def _aes_signature():
    return {
        "i": In(stream.Signature(AESRequest)),
        "o": Out(stream.Signature(unsigned(128))),
    }


class AESIterative(wiring.Component):
    """Compact AES: one round per clock through a single round unit.

    Members
    -------
    i : ``In(stream.Signature(AESRequest))``
        Blocks to encrypt, each with its key.
    o : ``Out(stream.Signature(unsigned(128)))``
        Ciphertext blocks, in request order.
    """

    #: Clock edges from the one that accepts a block to the one after which its result is valid,
    #: for AES-128 and AES-256.
    LATENCY = {128: 10, 256: 14}

    def __init__(self):
        super().__init__(_aes_signature())

    def elaborate(self, platform):
        m = Module()
        req = self.i.payload

        busy = Signal()
        rnd = Signal(4)
        key256 = Signal()
        # The two previous round keys. A block starts with p2 = the key's first half (round key 0)
        # and p1 = its second half, which *is* round key 1 of AES-256: so the second half needs no
        # register of its own, and AES-256's round 1 takes p1 as its round key and shifts nothing.
        # The key step always builds on p2: AES-128 moves each new round key into both.
        p1 = Signal(128)
        p2 = Signal(128)
        # Per-round controls, registered (decoded from the *next* round number one clock early)
        # so that no decoder of ``rnd`` sits in front of the 128-bit selects they drive.
        last = Signal()        # this is the last round
        hold = Signal()        # AES-256 round 1: the round key is p1, the keys do not shift
        # RotWord before SubWord (all but AES-256's odd rounds) is done on the key S-boxes'
        # *address* (RotWord and SubWord commute: SubWord works byte by byte), for the round the
        # looked-up word is for: the next one. After the S-boxes the select was the first of the
        # iCE40's critical path (a 32-way fan-out, then the key step, AddRoundKey and the next
        # S-box address); before them it sits beside the address's own select.
        arot = Signal()
        rcon = Signal(8)

        last_round = busy & last
        # The last round finishes only into an empty output register, never into one that is
        # being read in the same clock: so nothing here depends on ``o.ready`` combinationally,
        # and the consumer's handshake logic does not reach the S-box addresses (on the iCE40
        # that chain was the critical path). It costs a clock only when the consumer is slower
        # than the AES core anyway.
        finishing = last_round & ~self.o.valid
        stall = last_round & self.o.valid
        m.d.comb += self.i.ready.eq(~busy | finishing)
        accept = self.i.valid & self.i.ready
        advance = busy & ~last

        # The controls of the next round (FIPS-197 5.2): AES-128 rotates every round with
        # Rcon[r]; AES-256 alternates rotate+Rcon[r/2] (even r) and a bare SubWord (odd r).
        next_rnd = Mux(accept, 1, rnd + 1)
        next_256 = Mux(accept, self.i.payload.key256, key256)
        next_rcon = _rcon(m, next_rnd[:4], next_256, "next_rcon")
        with m.If(accept | advance):
            m.d.sync += [
                rnd.eq(next_rnd), key256.eq(next_256), rcon.eq(next_rcon),
                last.eq(next_rnd == Mux(next_256, 14, 10)),
                hold.eq(next_256 & (next_rnd == 1)),
                # The word looked up in round r is rotated for round r + 1.
                arot.eq(~next_256 | next_rnd[0]),
            ]

        state_addr = Signal(128)
        key_addr = Signal(32)
        sb = _sub_state(m, "sbox", state_addr, ~stall)
        ksb = _sub_word(m, "kbox", key_addr, ~stall)

        t = wire(m, ksb ^ rcon, "t")
        rk = wire(m, Mux(hold, p1, key_step(p2, t)), "rk")

        shifted = wire(m, shift_rows(sb), "shifted")
        mixed = wire(m, mix_columns(shifted), "mixed")
        s_next = wire(m, Mux(last, shifted, mixed) ^ rk, "s_next")

        with m.If(accept):
            m.d.comb += [
                state_addr.eq(req.block ^ req.key[0:128]),
                # For round 1: rotated for AES-128; AES-256's round 1 does not use it.
                key_addr.eq(_rot_word(_word(req.key, 3))),
            ]
        with m.Else():
            m.d.comb += [
                state_addr.eq(s_next),
                key_addr.eq(Mux(arot, _rot_word(_word(rk, 3)), _word(rk, 3))),
            ]

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        # Not gated by ``busy``: between blocks the keys may shift garbage, the next block
        # reloads them; fewer inputs to this 256-bit clock enable (on the iCE40's critical path).
        with m.If(~(last | hold)):
            m.d.sync += [p2.eq(Mux(key256, p1, rk)), p1.eq(rk)]
        with m.If(finishing):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(s_next), busy.eq(0)]
        with m.If(accept):
            m.d.sync += [
                busy.eq(1), p2.eq(req.key[0:128]), p1.eq(req.key[128:256]),
            ]
        return m


class AESPipelined(wiring.Component):
    """Fast AES: 14 unrolled rounds, one block per clock, with the round keys *stored*.

    ``round_clocks`` sets how many clocks a round takes. An ECP5 DP16KD used without its output
    register (Yosys 0.70 always maps it so) has about 5.8 ns clock-to-out, so a one-clock round
    (block RAM -> three LUT levels -> block RAM) stops at about 105 MHz. With 2, a register right
    after the S-box block RAM splits the round: one round alone measured 143 MHz, but in the
    whole pipeline the placer puts that register far from its block RAM (78.8 MHz routed, the
    path being 5.6 ns of clock-to-out plus 7.1 ns of wire). With 3 a second register
    follows the first, so the first may sit by the block RAM and the second by the logic that
    uses it: the pipeline routed at 92.1 MHz, for 14 more clocks of latency and 128 more
    flip-flops a round. With 4, the round's output (after MixColumns and AddRoundKey) is
    registered as well, so the next round's block RAM address comes straight from flip-flops:
    in the whole fast core, with 3, the S-box register -> MixColumns -> block RAM address path
    set the clock (90.0 MHz, 9.9 ns of its 11.1 ns routing). 4 is the default.

    Round keys: expanding them beside the data (as :class:`AESIterative` does) made every stage
    carry 256 bits of key schedule next to its 128 bits of state, and cost four more S-box
    lookups a round. That 384-bit bundle, 28 stages long, did not route on the ECP5-85F. Here
    each round holds its round key in one of two *banks* (two keys, so the next key can be
    expanded while blocks of the last one are still in flight). A block carries one bank bit.
    A request whose key is in neither bank waits at the head of the input until the bank not
    used last holds no block in flight, then an expander computes that key's 14 round keys, one
    every two clocks from S-boxes in logic, and sends each down a *wave* register chain that
    moves one round a clock, so that no net spans the pipeline. The wave outruns the blocks (``round_clocks``
    clocks a round), so a block of the new key may follow as soon as the expander is done:
    :attr:`KEY_CLOCKS` more clocks for a block whose key is new, :attr:`SWITCH_CLOCKS` for one
    whose key is in the other bank.

    Backpressure: the pipeline never stalls (no clock enable on its flip-flops and 112 block
    RAMs, whose fan-out alone would cost the clock). Results enter a :data:`OUTPUT_FIFO_DEPTH`-deep
    FIFO and ``i.ready`` counts credits: a block is accepted only while fewer than that many are
    in the input register and FIFO, the pipeline, the output FIFO and register together, so a
    stalled consumer never loses one. ``i.ready`` is a function of registers only.

    Members as :class:`AESIterative`.
    """

    #: Depth of the output FIFO, and the number of blocks in flight at most. An always-ready
    #: consumer sees one block per clock only with at least the latency + 2 credits (four-clock
    #: rounds, latency 62: 63 credits fail ``test_back_to_back_latency``, 64 pass).
    OUTPUT_FIFO_DEPTH = 64

    #: Depth of the input FIFO (in LUT RAM, where requests wait for their key).
    INPUT_FIFO_DEPTH = 4

    #: Extra clocks for a block whose key is in neither bank (when the bank to replace is idle).
    KEY_CLOCKS = 36

    #: Extra clocks for a block whose key is the other bank's (two SAs in turn).
    SWITCH_CLOCKS = 3

    def __init__(self, round_clocks=4):
        if not isinstance(round_clocks, int) or isinstance(round_clocks, bool):
            self._MustUse__silence = True
            raise TypeError(f"round_clocks must be an integer, not {round_clocks!r}")
        if round_clocks not in (1, 2, 3, 4):
            self._MustUse__silence = True
            raise ValueError(f"round_clocks must be 1, 2, 3 or 4, not {round_clocks!r}")
        self.round_clocks = round_clocks
        # Two input registers and the FIFO, the issue register, the rounds, the output FIFO and
        # its register.
        latency = 3 + 14 * round_clocks + 3
        self.LATENCY = {128: latency, 256: latency}
        super().__init__(_aes_signature())

    def elaborate(self, platform):
        m = Module()
        depth = self.OUTPUT_FIFO_DEPTH
        in_flight = Signal(range(depth + 1))

        # No 256-bit key compare may sit in front of the issue decision: it set the clock at
        # 46.6 and 51.4 MHz in the first two routed runs. So each request is compared with the
        # request *before* it, in a register stage ahead of the input FIFO, and enters the FIFO
        # with a flag "same key as the previous one". A flagged block issues at once, into the
        # bank of the block issued before it (which holds that key: only the other bank is ever
        # replaced). An unflagged one is compared with the other bank's key over two clocks: a hit
        # (two SAs in turn) issues it there, a miss starts an expansion into that bank.
        # That compare takes two register stages too: 16-bit pieces, then their AND (in one clock
        # it was the critical path at 96.1 MHz).
        in_r, in_r2 = Signal(AESRequest), Signal(AESRequest)
        in_r_valid, in_r2_valid = Signal(), Signal()
        accept = self.i.valid & self.i.ready
        m.d.sync += [in_r.eq(self.i.payload), in_r_valid.eq(accept),
                     in_r2.eq(in_r), in_r2_valid.eq(in_r_valid)]
        m.d.sync += in_flight.eq(in_flight + accept - (self.o.valid & self.o.ready))

        prev_key = Signal(256)
        prev_256 = Signal()
        prev_ok = Signal()
        prev_pieces = Signal(18)
        m.d.sync += prev_pieces.eq(Cat(same_key_pieces(in_r.key, in_r.key256, prev_key, prev_256),
                                       prev_ok))
        same_as_prev = wire(m, prev_pieces.all(), "same_as_prev")
        with m.If(in_r_valid):
            m.d.sync += [prev_key.eq(in_r.key), prev_256.eq(in_r.key256), prev_ok.eq(1)]

        # The FIFO keeps its entries in LUT RAM, so a block waiting for its key holds only a
        # read pointer (a register here would need a clock enable on 385 bits). The flags are
        # kept beside it in flip-flops, so that the issue decision reads no LUT RAM.
        in_depth = self.INPUT_FIFO_DEPTH
        m.submodules.in_fifo = in_fifo = SyncFIFO(width=AESRequest.size, depth=in_depth)
        head = AESRequest(in_fifo.r_data)
        head_valid = in_fifo.r_rdy
        flags = Signal(in_depth)
        flag_w, flag_r = Signal(range(in_depth)), Signal(range(in_depth))
        m.d.comb += [
            # The register stages may hold two more requests than the FIFO's level counts.
            self.i.ready.eq((in_fifo.level + in_r_valid + in_r2_valid < in_depth)
                            & (in_flight != depth)),
            in_fifo.w_data.eq(in_r2), in_fifo.w_en.eq(in_r2_valid),
        ]
        with m.If(in_r2_valid):
            m.d.sync += [flags.bit_select(flag_w, 1).eq(same_as_prev), flag_w.eq(flag_w + 1)]
        head_same = wire(m, flags.bit_select(flag_r, 1), "head_same")

        # The two banks' keys; the head is compared with the bank not used last.
        bank_key = [Signal(256, name=f"bank{b}_key") for b in range(2)]
        bank_256 = [Signal(name=f"bank{b}_key256") for b in range(2)]
        bank_ok = [Signal(name=f"bank{b}_ok") for b in range(2)]
        last_bank = Signal()        # the bank of the block issued last; the other is replaced
        other_hit = Signal()        # the head's key is in the other bank (registered)
        checked = Signal()          # ... and that compare is of the present head and banks
        banks_change = Signal()
        # The compare takes three clocks. First the head's key is copied from the LUT RAM into
        # flip-flops loaded every clock (no clock enable): read address -> LUT RAM -> compare
        # was the critical path at 92.1 MHz. Then 16-bit pieces, registered, then their AND (in
        # one clock it was the critical path, 75.1 MHz).
        head_key = Signal(256)
        head_256 = Signal()
        m.d.sync += [head_key.eq(head.key), head_256.eq(head.key256)]
        hits = []
        for b in range(2):
            pieces = Signal(18, name=f"bank{b}_pieces")
            m.d.sync += pieces.eq(Cat(same_key_pieces(head_key, head_256, bank_key[b],
                                                      bank_256[b]), bank_ok[b]))
            hits.append(pieces.all())
        m.d.sync += other_hit.eq(Mux(last_bank, hits[0], hits[1]))

        issue_same = head_valid & head_same
        issue_other = head_valid & ~head_same & checked & other_hit
        issue = wire(m, issue_same | issue_other, "issue")
        issue_bank = wire(m, last_bank ^ issue_other, "issue_bank")
        # Nothing changed at the last three clock edges (the compare's three registers): not the
        # head, not the banks.
        unchanged = head_valid & ~issue & ~banks_change
        steady = Signal(2)
        m.d.sync += [steady.eq(Cat(unchanged, steady[0] & unchanged)),
                     checked.eq(steady[1] & unchanged)]
        m.d.comb += in_fifo.r_en.eq(issue)
        with m.If(issue):
            m.d.sync += [flag_r.eq(flag_r + 1), last_bank.eq(issue_bank)]

        # Blocks of each bank in the pipeline (issued, not yet in the output FIFO).
        in_use = [Signal(range(depth + 1), name=f"bank{b}_in_use") for b in range(2)]
        exit_valid, exit_bank = Signal(), Signal()
        for b in range(2):
            m.d.sync += in_use[b].eq(in_use[b] + (issue & (issue_bank == b))
                                     - (exit_valid & (exit_bank == b)))
        # The expander: one round key every two clocks (FIPS-197 5.2), S-boxes in logic. Its
        # S-box outputs are registered (``phase`` 0), then the key step runs (``phase`` 1): in
        # one clock, S-box -> RotWord/Rcon -> key step -> the next S-box set the fast core's clock
        # (92.5 MHz, 8.4 ns of its 10.8 ns routing).
        expanding = Signal()
        phase = Signal()
        target = Signal()
        rnd = Signal(range(16))
        x256 = Signal()
        prev, prev2 = Signal(128), Signal(128)   # round keys rnd - 1 and rnd - 2
        # Registered, so that the compare does not drive the loads below (770 clock enables).
        # The head cannot change meanwhile: it matches neither bank, and the banks change only
        # here and when an expansion ends. So the loads may take the head's key from its copy in
        # flip-flops, not from the LUT RAM.
        start = Signal()
        m.d.sync += start.eq(head_valid & ~head_same & checked & ~other_hit & ~expanding & ~start
                             & (Mux(last_bank, in_use[0], in_use[1]) == 0))
        m.d.comb += banks_change.eq(start | (expanding & phase & (rnd == 14)))
        with m.If(start):
            m.d.sync += [expanding.eq(1), phase.eq(0), target.eq(~last_bank), rnd.eq(1),
                         x256.eq(head_256),
                         prev.eq(head_key[:128]), prev2.eq(head_key[128:])]
            for b in range(2):
                with m.If(last_bank != b):
                    m.d.sync += [bank_key[b].eq(head_key), bank_256[b].eq(head_256),
                                 bank_ok[b].eq(0)]
        sub = Signal(32)
        m.d.sync += sub.eq(Cat(*(_logic_sbox(m, f"x_sbox{k}", _byte(_word(prev, 3), k))
                                 for k in range(4))))
        # AES-128's rounds 11-14 get Rcon too; their round keys are never used.
        rcon = _rcon(m, rnd, x256, "x_rcon", aes128_rounds=14)
        rot = ~x256 | ~rnd[0]
        t = Mux(rot, _rot_word(sub), sub) ^ rcon
        # AES-256's round key 1 is the key's second half, which starts in prev2.
        rk_new = wire(m, Mux(x256 & (rnd == 1), prev2, key_step(Mux(x256, prev2, prev), t)),
                      "x_rk")
        with m.If(expanding):
            m.d.sync += phase.eq(~phase)
        with m.If(expanding & phase):
            m.d.sync += [prev.eq(rk_new), prev2.eq(prev), rnd.eq(rnd + 1)]
            with m.If(rnd == 14):
                m.d.sync += expanding.eq(0)
                for b in range(2):
                    with m.If(target == b):
                        m.d.sync += bank_ok[b].eq(1)
        wave = {"valid": expanding & phase, "index": rnd, "bank": target, "rk": rk_new}

        def stage_reg(value, name):
            reg = Signal(len(value), name=name)
            m.d.sync += reg.eq(value)
            return reg

        # Stage 0, the issue register: AddRoundKey with the cipher key.
        state = stage_reg(head.block ^ head.key[:128], "r0_state")
        # What a block carries beside its state (AES-128's result too, from round 10 on).
        carried = {"valid": stage_reg(issue, "r0_valid"), "bank": stage_reg(issue_bank, "r0_bank"),
                   "key256": stage_reg(head.key256, "r0_key256")}
        for r in range(1, 15):
            def carry(c):
                # One register on, in the round's clock ``c``.
                return {k: stage_reg(v, f"r{r}_{k}_{c}") for k, v in carried.items()}

            sb = _sub_state(m, f"r{r}_sbox", state, Const(1))
            # The wave passes by; this round takes the round key meant for it. Whether it does is
            # decoded a clock early, into a register per bank: each drives the clock enable of
            # 128 flip-flops (decoded in the same clock, that was the critical path, 74.2 MHz).
            loads = [stage_reg(wave["valid"] & (wave["index"] == r) & (wave["bank"] == b),
                               f"r{r}_load{b}") for b in range(2)]
            wave = {k: stage_reg(v, f"r{r}_wave_{k}") for k, v in wave.items()}
            keys = [Signal(128, name=f"r{r}_rk{b}") for b in range(2)]
            for b in range(2):
                with m.If(loads[b]):
                    m.d.sync += keys[b].eq(wave["rk"])
            carried = carry(0)
            # Each extra clock of the round: the S-box output, and what the block carries, move
            # one register on. The round key is chosen (by the block's bank) one clock before it is
            # used, and registered once: a bank's keys hold still while its blocks are in flight.
            sb_clocks = min(self.round_clocks, 3)
            for c in range(1, sb_clocks):
                sb = stage_reg(sb, f"r{r}_sb" if c == sb_clocks - 1 else f"r{r}_sb_{c}")
                if c == sb_clocks - 1:
                    rk = stage_reg(Mux(carried["bank"], keys[1], keys[0]), f"r{r}_rk")
                carried = carry(c)
            if sb_clocks == 1:
                rk = Mux(carried["bank"], keys[1], keys[0])
            rk = wire(m, rk, f"r{r}_rk_use")

            shifted = wire(m, shift_rows(sb), f"r{r}_shifted")
            if r == 10:
                carried["res128"] = wire(m, shifted ^ rk, "res128")
            if r < 14:
                state = wire(m, mix_columns(shifted) ^ rk, f"r{r}_state")
            else:
                result = wire(m, Mux(carried["key256"], shifted ^ rk, carried["res128"]),
                              "result")
            if self.round_clocks == 4:
                # The round's output is registered too: the next round's block RAM address then
                # comes straight from flip-flops, not through MixColumns.
                if r < 14:
                    state = stage_reg(state, f"r{r}_out")
                else:
                    result = stage_reg(result, "result_r")
                carried = carry(3)
        m.d.comb += [exit_valid.eq(carried["valid"]), exit_bank.eq(carried["bank"])]

        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=128, depth=depth)
        m.d.comb += [fifo.w_en.eq(carried["valid"]), fifo.w_data.eq(result)]
        # A register after the FIFO (its memory's read data would otherwise reach the GCM
        # datapath straight from a block RAM's slow clock-to-out), and a skid register beside it,
        # so that the FIFO is read by a register (``~skid_valid``), not by the consumer's
        # handshake: GCM's join of three streams -> the FIFO's level logic -> its read register
        # set the fast core's clock (84.2 MHz).
        skid = Signal(128)
        skid_valid = Signal()
        m.d.comb += fifo.r_en.eq(~skid_valid)
        room = ~self.o.valid | self.o.ready
        with m.If(skid_valid):
            with m.If(room):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
        with m.Elif(room):
            m.d.sync += [self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data)]
        with m.Elif(fifo.r_rdy):
            m.d.sync += [skid.eq(fifo.r_data), skid_valid.eq(1)]
        return m


def _rcon(m, rnd, key256, name, aes128_rounds=10):
    """The Rcon that round ``rnd`` (4 bits) XORs in (FIPS-197 5.2): ``RCON[rnd]`` for AES-128
    (rounds 1 to ``aes128_rounds``), ``RCON[rnd / 2]`` in AES-256's even rounds, else 0."""
    rcon = Signal(8, name=name)
    with m.Switch(Cat(rnd, key256)):
        for r in range(1, 15):
            if r <= aes128_rounds:
                with m.Case(r):
                    m.d.comb += rcon.eq(RCON[r])
            if r % 2 == 0:
                with m.Case(r | 16):
                    m.d.comb += rcon.eq(RCON[r // 2])
    return rcon


def same_key_pieces(key, key256, other, other256):
    """Whether two (key, key256) pairs name the same AES key (an AES-128 key ignores its upper
    half), as 17 terms whose AND is the answer: one per 16 bits of key, one for ``key256``.
    Registered, they split the 257-bit compare over two clocks (in one, it set the clock of the
    fast AES's issue logic, and then of the whole fast core as GCM's ``cache_h`` check)."""
    return Cat(*((key[16 * k:16 * k + 16] == other[16 * k:16 * k + 16])
                 | (~key256 if k >= 8 else 0) for k in range(16)),
               key256 == other256)


def _logic_sbox(m, name, addr):
    """One S-box lookup in logic (a ROM with an asynchronous read; on the ECP5 an eight-input
    function is one LUT4 level and three of the slice's wide-function multiplexers)."""
    memory = Memory(shape=unsigned(8), depth=256, init=SBOX, attrs={"ram_style": "logic"})
    m.submodules[name] = memory
    port = memory.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    return port.data


def make_aes(profile):
    """The AES core of a profile: ``"compact"`` or ``"fast"``."""
    if profile == "compact":
        return AESIterative()
    if profile == "fast":
        return AESPipelined()
    raise ValueError(f"Profile must be 'compact' or 'fast', not {profile!r}")
