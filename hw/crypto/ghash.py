"""GHASH (NIST SP 800-38D section 6.4): ``Y_i = (Y_{i-1} xor X_i) * H`` in GF(2^128).

Both implementations take the same streams, so the GCM core does not know which it has:

``h``
    The hash subkey ``H = E(K, 0^128)``. Must not be sent while a message is in progress (between
    its first block and its ``o`` result). The fast profile precomputes ``H^2 .. H^L`` after it, so
    ``h`` is not ready for a few clocks.
``i``
    Blocks ``X_i`` of one message with ``remaining``, the number of blocks left in the message
    including this one (saturating; the GCM core knows it from the lengths). ``remaining == 1``
    ends the message. :class:`GHASHSerial` also takes a *final addend* (``remaining == 0``) after
    a message's blocks: added to ``Y_n`` without a multiplication, and the sum is the result.
``o``
    ``Y_n``, once per message, in the order of the messages.

Blocks and ``H`` are in GCM byte order (byte ``k`` is ``value[8*k:8*k+8]``, the first byte of the
block holding the coefficients of ``x^0 .. x^7`` from its most significant bit down). Inside, they are
rewired to polynomial order, where bit ``i`` is the coefficient of ``x^i`` (no logic).

* :class:`GHASHSerial` (*compact*): a digit-serial multiplier, ``digit`` bits of ``X`` per clock,
  ``128 / digit`` clocks per block.
* :class:`GHASHPipelined` (*fast*): a pipelined Karatsuba multiplier used as a ring of ``L``
  registers (five by default). A block cannot wait for the previous product (the multiplier takes
  ``L`` clocks), so consecutive blocks go to ``L`` interleaved lanes, each accumulating
  ``Y <- (Y xor X) * H^L``; the last ``L`` blocks of a message are multiplied by ``H^L .. H^1``
  instead (the power depends only on ``remaining``), which leaves each lane's share of ``Y_n``
  exact, and the shares are XORed as they leave the ring. One block per clock.
* :class:`GHASHLanes`: the same lane scheme on five independent digit-serial multipliers (not
  used by a profile; kept for its place-and-route comparison).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .aes import wire


__all__ = ["GHASHBlock", "GHASHSerial", "GHASHPipelined", "GHASHLanes", "make_ghash",
           "to_poly", "clmul", "karatsuba_operands", "karatsuba_join", "reduce_poly",
           "REMAINING_WIDTH"]


#: Width of :data:`GHASHBlock`'s ``remaining`` field; it saturates at its largest value.
REMAINING_WIDTH = 4

GHASHBlock = data.StructLayout({
    "block": 128,
    "remaining": REMAINING_WIDTH,
})


def to_poly(value):
    """GCM byte order <-> polynomial order: reverses the bits of each byte (its own inverse)."""
    return Cat(*(value[8 * k + 7 - j] for k in range(16) for j in range(8)))


def clmul(a, b):
    """Carry-less product of two polynomials in bit order, ``len(a) + len(b) - 1`` bits."""
    width = len(a) + len(b) - 1
    acc = Const(0, width)
    for i in range(len(b)):
        acc = acc ^ (Mux(b[i], a, 0) << i)
    return acc[:width]


def karatsuba_operands(a, b, levels):
    """The operand pairs of a ``levels``-deep Karatsuba product of ``a`` and ``b`` (equal widths,
    divisible by ``2 ** levels``): ``3 ** levels`` pairs of ``len(a) >> levels`` bits. Each level
    splits ``a = a0 + a1 x^h`` into the products ``a0 b0``, ``a1 b1`` and
    ``(a0 + a1)(b0 + b1)``; :func:`karatsuba_join` puts the leaf products back together."""
    if levels == 0:
        return [(a, b)]
    h = len(a) // 2
    a0, a1, b0, b1 = a[:h], a[h:], b[:h], b[h:]
    return (karatsuba_operands(a0, b0, levels - 1) + karatsuba_operands(a1, b1, levels - 1)
            + karatsuba_operands(a0 ^ a1, b0 ^ b1, levels - 1))


def karatsuba_join(products, width, levels):
    """The carry-less product (``2 * width - 1`` bits) of two ``width``-bit polynomials from the
    leaf products of :func:`karatsuba_operands`, in its order."""
    if levels == 0:
        return products[0]
    n, h = len(products) // 3, width // 2
    p0 = karatsuba_join(products[:n], h, levels - 1)
    p1 = karatsuba_join(products[n:2 * n], h, levels - 1)
    pm = karatsuba_join(products[2 * n:], h, levels - 1)
    # (a0 + a1)(b0 + b1) - a0 b0 - a1 b1 is the middle term; in GF(2) minus is XOR.
    return (p0 ^ ((pm ^ p0 ^ p1) << h) ^ (p1 << 2 * h))[:2 * width - 1]


def reduce_poly(value):
    """``value`` modulo the GCM polynomial ``x^128 + x^7 + x^2 + x + 1``, as 128 bits."""
    while len(value) > 128:
        high, low = value[128:], value[:128]
        value = low ^ high ^ (high << 1) ^ (high << 2) ^ (high << 7)
        value = value[:max(128, len(high) + 7)]
    return value[:128]


def _signature():
    return {
        "h": In(stream.Signature(unsigned(128))),
        "i": In(stream.Signature(GHASHBlock)),
        "o": Out(stream.Signature(unsigned(128))),
    }


class GHASHSerial(wiring.Component):
    """Digit-serial GHASH: ``digit`` bits of ``Y xor X`` per clock, most significant digit first
    (Horner's rule: ``Z <- Z * x^digit xor d * H``).

    A block takes ``cycles_per_block = ceil(128 / digit) + 1`` clocks: the clock that accepts it
    only stores ``Y xor X`` (and the first step takes ``Z`` as zero), so the multiplier's inputs
    are all registers and the GCM core's handshake logic never reaches it, nor the wide
    registers' clock enables (on the iCE40 each of those paths set the clock).
    ``digit`` need not divide 128: ``Y xor X`` is stored zero-extended to a whole number of
    digits, so the first digit simply has leading zeros. The compact profile uses ``digit=10``:
    13 + 1 = 14 clocks per block, AES-256's 14 rounds.

    One more kind of block than the other cores take: a *final addend*, ``remaining == 0``. It is
    XORed into ``Y`` without a multiplication, and the sum is the result: so the GCM core gets
    ``Y xor E(K, J0)`` (the tag) or, decrypting, that XOR the received tag from here, through the
    register every block goes through anyway (``Y xor X``), and needs no 128-bit XOR of its own for
    either. The result always leaves from that register: after a block with ``remaining == 1`` it
    is copied there from ``Z`` a clock after the last step (the same multiplexer input, with ``X``
    taken as zero), so this core still ends a message as the other GHASH cores do. Measured with
    Yosys ``synth_ice40 -noflatten`` on ``GCMCore("compact", key_slots=16)``: the GCM core's own
    logic 1,055 LUT4 before, 862 after; this core 1,178 before, 1,325 after (in the bench's pair,
    also ``-noflatten``: 1,308, and 1,195 since its first step takes ``Z`` as zero instead of
    clearing it on accept); flattened and placed
    beside the engine, the copy path costs nothing measurable (the pair without it: 5,251 cells,
    with it 5,238).
    """

    def __init__(self, digit=8):
        if not isinstance(digit, int) or isinstance(digit, bool) or not 1 <= digit <= 32:
            self._MustUse__silence = True  # a refused core is not an unused one
            raise ValueError(f"Digit width must be an integer from 1 to 32, not {digit!r}")
        self.digit = digit
        #: Multiplier steps per block.
        self.steps = -(-128 // digit)
        #: Clocks per block: the steps and the clock that accepts the block.
        self.cycles_per_block = self.steps + 1
        super().__init__(_signature())

    def elaborate(self, platform):
        m = Module()
        d, steps = self.digit, self.steps

        h = Signal(128)             # H, polynomial order
        a = Signal(steps * d)       # Y xor X (zero-extended), shifted up one digit per clock;
                                    # the result, once a message is done
        z = Signal(128)             # partial product; between blocks Y so far
        # Y is zero before a message's first block. A flag says so instead of clearing z when
        # the result leaves: that kept the GCM core's result handshake off z's clock enable.
        fresh = Signal(init=1)
        count = Signal(range(steps + 1))
        busy = Signal()
        last = Signal()
        copy = Signal()             # the last block's product goes to ``a``, as the result

        idle = ~busy & ~copy & ~self.o.valid
        m.d.comb += [self.h.ready.eq(idle), self.i.ready.eq(idle)]
        accept = self.i.valid & self.i.ready
        final = self.i.payload.remaining == 0

        # The wide registers' clock enables are registers too, never ``accept``: ``z`` moves
        # while busy, and its first step takes it as zero (``first``) instead of clearing it
        # when the block is accepted; ``a`` loads whenever it holds nothing (no result waits,
        # no block is in the multiplier), so between blocks it loads what it will not use.
        # With ``accept`` on their enables, the GCM core's handshake reached 256 flip-flops
        # through a global buffer, and beside the serial engine that set the iCE40's clock.
        first = Signal()
        z_in = wire(m, Mux(first, 0, z), "z_in")
        z_next = wire(m, reduce_poly((z_in << d) ^ clmul(h, a[len(a) - d:])), "z_next")
        # What ``a`` loads: Y xor X for a block, Y alone (X taken as zero) for the copy.
        x = wire(m, to_poly(self.i.payload.block) & ~copy.replicate(128), "x")

        with m.If(self.h.valid & self.h.ready):
            m.d.sync += h.eq(to_poly(self.h.payload))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), fresh.eq(1)]
        with m.If(busy):
            m.d.sync += a.eq(a << d)
        with m.Elif(~self.o.valid):
            m.d.sync += a.eq(Mux(fresh, 0, z) ^ x)
        with m.If(accept & final):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(accept):
            m.d.sync += [busy.eq(1), first.eq(1), fresh.eq(0),
                         count.eq(steps), last.eq(self.i.payload.remaining == 1)]
        with m.Elif(busy):
            m.d.sync += [z.eq(z_next), first.eq(0), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += [busy.eq(0), copy.eq(last)]
        with m.If(copy):
            m.d.sync += [copy.eq(0), self.o.valid.eq(1)]
        m.d.comb += self.o.payload.eq(to_poly(a[:128]))
        return m


def _power_schedule(stages):
    """When to compute ``H^2 .. H^stages`` on a ring of ``stages`` registers: a list of
    ``(clock, target, a, b)``, ``H^target = H^a * H^b`` entering the ring at ``clock`` (counted
    from the first clock after ``h``), one product a clock, each as soon as its operands are
    stored (``stages + 2`` clocks after they entered: the ring, a copy of the product, then the
    power's register)."""
    known = {1: 0}                              # power -> first clock it may enter the ring
    schedule = []
    clock = 0
    while len(known) < stages:
        for target in range(2, stages + 1):
            if target in known:
                continue
            pairs = [(a, target - a) for a in range(1, target // 2 + 1)
                     if known.get(a, clock + 1) <= clock and known.get(target - a, clock + 1) <= clock]
            if pairs:
                schedule.append((clock, target, *pairs[-1]))
                known[target] = clock + stages + 2
                break
        clock += 1
    return schedule


class GHASHPipelined(wiring.Component):
    """GHASH on a free-running ring: a pipelined Karatsuba multiplier whose ``stages`` registers
    hold ``stages`` interleaved lanes (see the module docstring), one block per clock.

    The multiplier is a ``levels``-deep Karatsuba product (``3 ** levels`` leaf products of
    ``128 >> levels`` bits; by default three levels, 27 products of 16 bits), then the reduction.
    Its register stages, by ``stages``:

    * 3: operands; leaf products; the reduced product;
    * 4: operands; leaf products; the 255-bit product; the reduced product;
    * 5 (the default): operands; the leaves' operands (Karatsuba's sums); leaf products; the
      255-bit product; the reduced product.

    Why Karatsuba and a free-running ring (measured on the ECP5-85F, see the performance notes):
    the schoolbook multiplier (four 128x32 partial products of one operand register, every
    operand bit fanning out to 128 LUTs) took 13,288 LUT4 and never routed; a two-level Karatsuba
    took 8,816 and routed. And a clock enable on the whole ring (to hold it while no block comes)
    became the critical path once the multiplier routed. So the ring never stops: a lane with no
    block this turn is multiplied by 1 and comes round unchanged. The price: the blocks of a
    message must reach consecutive lanes, so a block that misses its lane's turn (the producer
    paused) waits for it to come round again, up to ``stages - 1`` clocks.

    A block first enters an input register with a one-hot choice of its power of H; what stage 0
    loads (a block, a power of H, or the lane's value) and which power is operand b are registers
    decided a clock early; so neither the producer's logic nor a power multiplexer reaches the
    ring's wide nets, and ``i.ready`` is a function of registers only. A message's last block is followed by no other block until its result has
    left on ``o`` (the GCM core waits for that result anyway), so a result never waits in the
    ring. ``H^2 .. H^stages`` are computed on the ring after ``h`` (:func:`_power_schedule`).
    """

    def __init__(self, levels=3, stages=5):
        for name, value, allowed in (("levels", levels, (1, 2, 3)), ("stages", stages, (3, 4, 5))):
            if not isinstance(value, int) or isinstance(value, bool):
                self._MustUse__silence = True
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value not in allowed:
                self._MustUse__silence = True
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        self.levels = levels
        #: Registers around the ring: also its lanes, and the highest power of H.
        self.stages = stages
        self.POWER_SCHEDULE = _power_schedule(stages)
        super().__init__(_signature())

    def _multiplier(self, m, a, b):
        """The product ``a * b`` in GF(2^128), ``self.stages - 1`` registers after ``a`` and
        ``b`` (which are registers)."""
        levels = self.levels

        def register(values, name):
            regs = [Signal(len(v), name=f"{name}{k}") for k, v in enumerate(values)]
            m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
            return regs

        pairs = karatsuba_operands(a, b, levels)
        if self.stages == 5:
            xs = register([x for x, _ in pairs], "mul_x")
            ys = register([y for _, y in pairs], "mul_y")
            pairs = list(zip(xs, ys))
        products = register([clmul(x, y) for x, y in pairs], "mul_leaf")
        full = karatsuba_join(products, 128, levels)[:255]
        if self.stages >= 4:
            full, = register([full], "mul_full")
        product, = register([reduce_poly(full)], "mul_product")
        return product

    def elaborate(self, platform):
        m = Module()
        lanes = self.stages
        schedule = self.POWER_SCHEDULE

        powers = Array(Signal(128, name=f"h_pow{k}") for k in range(lanes + 1))  # [0] unused
        computing = Signal()                    # computing H^2 .. H^L
        power_clock = Signal(range(schedule[-1][0] + 2))
        finishing = Signal()                    # a message's last block taken, result not left
        in_message = Signal()                   # a message's first block has been taken
        share = Signal(128)                     # XOR of the lanes' final shares so far

        # The input register: a block (polynomial order), which power of H it takes (one-hot)
        # and its flags.
        in_valid = Signal()
        in_block = Signal(128)
        in_sel = Signal(lanes + 1)
        in_fin, in_last, in_first = Signal(), Signal(), Signal()

        # ``carry``: the product is a lane's value that the lane's next block builds on.
        flags = data.StructLayout({"valid": 1, "carry": 1, "fin": 1, "last": 1, "power": 1,
                                   "target": range(lanes + 1)})
        stage = [Signal(flags, name=f"s{k}_flags") for k in range(lanes)]
        s0_a, s0_b = Signal(128), Signal(128)
        product = self._multiplier(m, s0_a, s0_b)
        out = stage[-1]
        m.d.sync += [stage[k + 1].eq(stage[k]) for k in range(lanes - 1)]

        # ``h`` is copied every clock, without a clock enable; the clock after its handshake
        # stores it as H (the handshake, from the producer's logic, never reaches a clock enable).
        h_copy = Signal(128)
        h_taken = Signal()
        m.d.sync += [h_copy.eq(self.h.payload), h_taken.eq(self.h.valid & self.h.ready)]

        # The lane at the ring's input in this clock, and the lane the message's next block is due
        # in (consecutive blocks, consecutive lanes).
        slot = Signal(range(lanes))
        due = Signal(range(lanes))
        # What stage 0 loads in this clock is decided a clock early, into registers: the choice
        # drives the multiplexers of all 256 operand bits.
        take = Signal()
        injects = [Signal(name=f"inject{k}") for k in range(len(schedule))]

        m.d.comb += [
            self.i.ready.eq(~computing & ~h_taken & ~finishing & (~in_valid | take)),
            self.h.ready.eq(~computing & ~h_taken & ~finishing & ~in_valid & ~in_message),
        ]
        accept = self.i.valid & self.i.ready
        remaining = self.i.payload.remaining
        # The input register loads whenever it is free, valid or not: its clock enable is then
        # a function of registers, not of the producer's handshake (which was the critical path).
        in_free = ~in_valid | take
        new_sel = Cat(Const(0, 1), *(remaining == k for k in range(1, lanes)), remaining >= lanes)
        with m.If(in_free):
            m.d.sync += [
                in_block.eq(to_poly(self.i.payload.block)), in_sel.eq(new_sel),
                in_fin.eq(remaining <= lanes), in_last.eq(remaining == 1),
                in_first.eq(~in_message),
            ]
        with m.If(accept):
            m.d.sync += in_message.eq(remaining != 1)
            with m.If(remaining == 1):
                m.d.sync += finishing.eq(1)
        next_slot = Mux(slot == lanes - 1, 0, slot + 1)
        next_valid = accept | (in_valid & ~take)
        next_first = Mux(accept, ~in_message, in_first)
        # After a take, the next lane is due in the next clock.
        next_take = next_valid & (next_first | take | (next_slot == due))
        m.d.sync += [slot.eq(next_slot), in_valid.eq(next_valid), take.eq(next_take)]
        with m.If(take):
            m.d.sync += due.eq(next_slot)
        next_injects = [(h_taken & (clock == 0)) | (computing & (power_clock + 1 == clock))
                        for clock, _, _, _ in schedule]
        m.d.sync += [inject.eq(n) for inject, n in zip(injects, next_injects)]
        # Operand b, one-hot, also chosen a clock early: bit 0 is the polynomial 1, bit k is H^k.
        # So no power multiplexer sits between the producer's ``remaining`` and a register.
        b_sel = Signal(lanes + 1)
        not_taken = Const(1, lanes + 1)
        for n, (_, _, _, b) in zip(next_injects, schedule):
            not_taken = Mux(n, 1 << b, not_taken)
        m.d.sync += b_sel.eq(Mux(next_take, Mux(in_free, new_sel, in_sel), not_taken))
        s0_b_next = Const(0, 128)
        for k in range(1, lanes + 1):
            s0_b_next = s0_b_next | (powers[k] & b_sel[k].replicate(128))
        m.d.sync += s0_b.eq(s0_b_next | b_sel[0])

        # Stage 0, loaded every clock: a block joins its lane's value; or a power of H enters;
        # or the lane's value comes round times 1.
        feedback = wire(m, Mux(out.carry, product, 0), "feedback")
        s0 = stage[0]
        with m.If(take):
            m.d.sync += [s0_a.eq(feedback ^ in_block),
                         s0.valid.eq(1), s0.carry.eq(~in_fin), s0.fin.eq(in_fin),
                         s0.last.eq(in_last), s0.power.eq(0), s0.target.eq(0)]
        for inject, (_, target, a, b) in zip(injects, schedule):
            with m.Elif(inject):
                m.d.sync += [s0_a.eq(powers[a]),
                             s0.eq(flags.const({"valid": 1, "power": 1, "target": target}))]
        with m.Else():
            m.d.sync += [s0_a.eq(feedback),
                         s0.eq(flags.const({})), s0.valid.eq(out.carry), s0.carry.eq(out.carry)]

        # What leaves the ring in this clock. A power of H is stored a clock later, from a copy
        # of the product, by a register per power: each drives the clock enable of 128 flip-flops
        # spread over the multiplier, and that net was the critical path when it was decoded from
        # the ring's flags in the same clock.
        power_data = Signal(128)
        power_store = Signal(lanes + 1)
        m.d.sync += [power_data.eq(product),
                     power_store.eq(Mux(out.valid & out.power, 1 << out.target, 0))]
        for k in range(2, lanes + 1):
            with m.If(power_store[k]):
                m.d.sync += powers[k].eq(power_data)
        with m.If(power_store[schedule[-1][1]]):
            m.d.sync += computing.eq(0)
        with m.If(out.valid & out.fin):
            with m.If(out.last):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(to_poly(share ^ product)),
                             share.eq(0)]
            with m.Else():
                m.d.sync += share.eq(share ^ product)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), finishing.eq(0)]

        with m.If(computing):
            m.d.sync += power_clock.eq(power_clock + 1)
        with m.If(h_taken):
            m.d.sync += [powers[1].eq(to_poly(h_copy)), computing.eq(1), power_clock.eq(0)]
        return m


class GHASHLanes(wiring.Component):
    """GHASH from :attr:`LANES` independent digit-serial multipliers: one block per clock.

    Each lane is :class:`GHASHSerial`'s datapath with a 32-bit digit: it takes a block, then
    multiplies for ``128 / 32 = 4`` clocks, so with five lanes taken in turn one block enters
    every clock. Lane ``j`` gets the blocks ``i = j, j + 5, ...`` of a message and accumulates
    ``Y <- (Y xor X) * H^5``; the last five blocks of a message are multiplied by
    ``H^5 .. H^1`` instead (by ``remaining``), which leaves each lane's share of ``Y_n`` exact,
    and the shares are XORed as they come out. Blocks finish in the order they came, five clocks
    after they reached the lanes.

    Why lanes and not one pipelined 128x128 multiplier (:class:`GHASHPipelined`): there, the
    four 128x32 partial products all read one 128-bit operand register, so every operand bit
    fans out to 128 LUTs and the multiplier is one dense block that nextpnr's router struggles
    with on the ECP5-85F. Here each lane has its own operand registers and its multiplier only
    reaches its own accumulator: five blocks, each the size of the 32-bit digit-serial multiplier.

    Timing: a block first enters an input register, together with its power of H already
    selected, so neither the producer's handshake logic nor the power multiplexer reaches a lane;
    ``i.ready`` is a register. A lane is always free when its turn comes back (the four other
    lanes take at least four clocks), so the lanes need no handshake of their own.

    ``H^2 .. H^5`` are computed on the lanes after ``h`` (three rounds of one or two products), so
    ``h`` is not ready for 18 clocks. A message's last block is followed by no other block until
    its result has left on ``o`` (the GCM core waits for that result anyway).
    """

    DIGIT = 32
    #: Multiplier steps per block.
    STEPS = 128 // DIGIT
    #: One lane per clock of a block's passage: the clock that takes it and the steps.
    LANES = STEPS + 1

    # The powers are computed in rounds of (lane, target, operand a, operand h):
    # H^2 = H * H; then H^3 = H^2 * H and H^4 = H^2 * H^2; then H^5 = H^4 * H.
    _POWER_ROUNDS = (((0, 2, 1, 1),), ((0, 3, 2, 1), (1, 4, 2, 2)), ((0, 5, 4, 1),))

    def __init__(self):
        super().__init__(_signature())

    def elaborate(self, platform):
        m = Module()
        lanes, steps, d = self.LANES, self.STEPS, self.DIGIT

        powers = Array(Signal(128, name=f"h_pow{k}") for k in range(lanes + 1))  # [0] unused
        computing = Signal()                    # computing H^2 .. H^5
        power_round = Signal(range(len(self._POWER_ROUNDS) + 1))
        round_started = Signal()
        # A message's last block was taken and its result has not left yet.
        finishing = Signal()
        turn = Signal(lanes, init=1)            # one-hot: the lane that takes the next block
        share = Signal(128)                     # XOR of the finished lanes' shares so far

        # The input register: a block (polynomial order), its power of H and its flags.
        in_valid = Signal()
        in_block = Signal(128)
        in_power = Signal(128)
        in_fin = Signal()                       # one of the message's last five blocks
        in_last = Signal()

        lane_a = [Signal(128, name=f"lane{j}_a") for j in range(lanes)]
        lane_h = [Signal(128, name=f"lane{j}_h") for j in range(lanes)]
        lane_z = [Signal(128, name=f"lane{j}_z") for j in range(lanes)]
        count = [Signal(range(steps + 1), name=f"lane{j}_count") for j in range(lanes)]
        busy = [Signal(name=f"lane{j}_busy") for j in range(lanes)]
        # The lane's Y is zero: its last block of a message (or none) has been taken.
        fresh = [Signal(init=1, name=f"lane{j}_fresh") for j in range(lanes)]
        # Flags of the lane's block: its share of Y_n, the message's last block, a power.
        fin = [Signal(name=f"lane{j}_fin") for j in range(lanes)]
        last = [Signal(name=f"lane{j}_last") for j in range(lanes)]
        target = [Signal(range(lanes + 1), name=f"lane{j}_target") for j in range(lanes)]
        # z holds a finished product in this clock.
        done = [Signal(name=f"lane{j}_done") for j in range(lanes)]

        any_busy = Cat(*busy).any()
        m.d.comb += [
            self.i.ready.eq(~computing & ~finishing),
            self.h.ready.eq(~computing & ~finishing & ~in_valid & ~any_busy),
        ]
        accept = self.i.valid & self.i.ready
        remaining = self.i.payload.remaining
        m.d.sync += in_valid.eq(accept)
        with m.If(accept):
            m.d.sync += [
                in_block.eq(to_poly(self.i.payload.block)),
                in_power.eq(powers[Mux(remaining < lanes, remaining, lanes)]),
                in_fin.eq(remaining <= lanes), in_last.eq(remaining == 1),
            ]
            with m.If(remaining == 1):
                m.d.sync += finishing.eq(1)
        with m.If(in_valid):
            m.d.sync += turn.eq(turn.rotate_left(1))

        starts = {j: [] for j in range(lanes)}
        for k, rnd in enumerate(self._POWER_ROUNDS):
            for lane, to, a, h in rnd:
                starts[lane].append((k, to, a, h))
        start_power = computing & ~round_started

        for j in range(lanes):
            z_next = wire(m, reduce_poly((lane_z[j] << d) ^ clmul(lane_h[j], lane_a[j][128 - d:])),
                          f"lane{j}_z_next")
            take = wire(m, in_valid & turn[j], f"lane{j}_take")
            m.d.sync += done[j].eq(0)
            with m.If(take):
                m.d.sync += [
                    lane_a[j].eq(Mux(fresh[j], 0, lane_z[j]) ^ in_block),
                    lane_h[j].eq(in_power),
                    fresh[j].eq(in_fin), fin[j].eq(in_fin), last[j].eq(in_last),
                    target[j].eq(0),
                ]
            power_starts = []
            for k, to, a, h in starts[j]:
                power_start = start_power & (power_round == k)
                power_starts.append(power_start)
                with m.If(power_start):
                    m.d.sync += [lane_a[j].eq(powers[a]), lane_h[j].eq(powers[h]),
                                 fin[j].eq(0), last[j].eq(0), target[j].eq(to)]
            with m.If(take | Cat(*power_starts).any()):
                m.d.sync += [lane_z[j].eq(0), busy[j].eq(1), count[j].eq(steps)]
            with m.Elif(busy[j]):
                m.d.sync += [lane_a[j].eq(lane_a[j] << d), lane_z[j].eq(z_next),
                             count[j].eq(count[j] - 1)]
                with m.If(count[j] == 1):
                    m.d.sync += [busy[j].eq(0), done[j].eq(1)]
            with m.If(done[j] & (target[j] != 0)):
                m.d.sync += powers[target[j]].eq(lane_z[j])

        # At most one share finishes per clock (one block reaches the lanes per clock, and each
        # takes the same time), so the finished share is an AND-OR of the lanes.
        share_done = [wire(m, done[j] & fin[j], f"lane{j}_share_done") for j in range(lanes)]
        finished = Const(0, 128)
        for j in range(lanes):
            finished = finished | (lane_z[j] & share_done[j].replicate(128))
        finished = wire(m, finished, "finished")
        last_done = Cat(share_done[j] & last[j] for j in range(lanes)).any()
        with m.If(Cat(*share_done).any()):
            with m.If(last_done):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(to_poly(share ^ finished)),
                             share.eq(0)]
            with m.Else():
                m.d.sync += share.eq(share ^ finished)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), finishing.eq(0)]

        # The power rounds: start one, wait until its lanes are done (their products are stored
        # at the end of that clock, so the next round, a clock later, reads them), then the next.
        with m.If(start_power):
            m.d.sync += round_started.eq(1)
        with m.If(computing & round_started & ~any_busy):
            m.d.sync += [round_started.eq(0), power_round.eq(power_round + 1)]
            with m.If(power_round == len(self._POWER_ROUNDS) - 1):
                m.d.sync += computing.eq(0)
        with m.If(self.h.valid & self.h.ready):
            m.d.sync += [powers[1].eq(to_poly(self.h.payload)), computing.eq(1),
                         power_round.eq(0), round_started.eq(0)]
        return m


#: The compact profile's digit width: 14 clocks per block (see :class:`GHASHSerial`).
COMPACT_DIGIT = 10


def make_ghash(profile):
    """The GHASH core of a profile: ``"compact"`` (10 bits per clock) or ``"fast"``."""
    if profile == "compact":
        return GHASHSerial(digit=COMPACT_DIGIT)
    if profile == "fast":
        return GHASHPipelined()
    raise ValueError(f"Profile must be 'compact' or 'fast', not {profile!r}")
