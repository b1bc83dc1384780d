"""GHASH (NIST SP 800-38D section 6.4): ``Y_i = (Y_{i-1} xor X_i) * H`` in GF(2^128).

Both implementations take the same streams, so the GCM core does not know which it has:

``h``
    The hash subkey ``H = E(K, 0^128)``. Must not be sent while a message is in progress (between
    its first block and its ``o`` result). The fast profile precomputes ``H^2 .. H^L`` after it, so
    ``h`` is not ready for a few clocks.
``i``
    Blocks ``X_i`` of one message with ``remaining``, the number of blocks left in the message
    including this one (saturating; the GCM core knows it from the lengths). ``remaining == 1``
    ends the message.
``o``
    ``Y_n``, once per message, in the order of the messages.

Blocks and ``H`` are in GCM byte order (byte ``k`` is ``value[8*k:8*k+8]``, the first byte of the
block holding the coefficients of ``x^0 .. x^7`` from its most significant bit down). Inside, they are
rewired to polynomial order, where bit ``i`` is the coefficient of ``x^i`` (no logic).

* :class:`GHASHSerial` (*compact*): a digit-serial multiplier, ``digit`` bits of ``X`` per clock,
  ``128 / digit`` clocks per block.
* :class:`GHASHPipelined` (*fast*): a three-stage pipelined 128x128 multiplier used as a ring. A
  block cannot wait for the previous product (the multiplier takes three clocks), so consecutive
  blocks go to three interleaved lanes, each accumulating ``Y <- (Y xor X) * H^3``; the last three
  blocks of a message are multiplied by ``H^3, H^2, H^1`` instead (the power depends only on
  ``remaining``), which leaves each lane's share of ``Y_n`` exact, and the shares are XORed as they
  leave the ring. One block per clock.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .aes import wire


__all__ = ["GHASHBlock", "GHASHSerial", "GHASHPipelined", "GHASHLanes", "make_ghash",
           "to_poly", "clmul", "reduce_poly", "REMAINING_WIDTH"]


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
    only stores ``Y xor X`` and clears ``Z``, so the multiplier's inputs are all registers and the
    GCM core's handshake logic never reaches it (on the iCE40 that path set the clock).
    ``digit`` need not divide 128: ``Y xor X`` is stored zero-extended to a whole number of
    digits, so the first digit simply has leading zeros. The compact profile uses ``digit=10``:
    13 + 1 = 14 clocks per block, AES-256's 14 rounds.
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
        a = Signal(steps * d)       # Y xor X (zero-extended), shifted up one digit per clock
        z = Signal(128)             # partial product; between blocks Y so far
        # Y is zero before a message's first block. A flag says so instead of clearing z when
        # the result leaves: that kept the GCM core's result handshake off z's clock enable.
        fresh = Signal(init=1)
        count = Signal(range(steps + 1))
        busy = Signal()
        last = Signal()

        idle = ~busy & ~self.o.valid
        m.d.comb += [self.h.ready.eq(idle), self.i.ready.eq(idle)]
        accept = self.i.valid & self.i.ready

        z_next = wire(m, reduce_poly((z << d) ^ clmul(h, a[len(a) - d:])), "z_next")

        with m.If(self.h.valid & self.h.ready):
            m.d.sync += h.eq(to_poly(self.h.payload))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), fresh.eq(1)]
        with m.If(accept):
            m.d.sync += [a.eq(Mux(fresh, 0, z) ^ to_poly(self.i.payload.block)), z.eq(0),
                         busy.eq(1), fresh.eq(0),
                         count.eq(steps), last.eq(self.i.payload.remaining == 1)]
        with m.Elif(busy):
            m.d.sync += [a.eq(a << d), z.eq(z_next), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += busy.eq(0)
                with m.If(last):
                    m.d.sync += self.o.valid.eq(1)
        m.d.comb += self.o.payload.eq(to_poly(z))
        return m


class GHASHPipelined(wiring.Component):
    """GHASH with a three-stage pipelined multiplier and the powers ``H, H^2, H^3``: one block per
    clock (see the module docstring for the lane scheme)."""

    #: Registers around the ring, which is also the number of lanes and of powers of H.
    LANES = 3

    def __init__(self):
        super().__init__(_signature())

    def elaborate(self, platform):
        m = Module()
        lanes = self.LANES

        powers = Array(Signal(128, name=f"h_pow{k}") for k in range(lanes + 1))  # [0] unused
        computing = Signal()                    # computing H^2 .. H^L
        next_power = Signal(range(lanes + 2))

        # Stage 0: operands. Stage 1: four 128x32 partial products. Stage 2: reduced product.
        s0_a, s0_b = Signal(128), Signal(128)
        s1_pp = [Signal(128 + 31, name=f"s1_pp{k}") for k in range(4)]
        s2_p = Signal(128)
        flags = data.StructLayout({"valid": 1, "fin": 1, "last": 1, "power": 1})
        s0, s1, s2 = (Signal(flags, name=f"s{k}_flags") for k in range(3))
        share = Signal(128)                     # XOR of the lanes' final shares so far

        stuck = s2.valid & s2.last & self.o.valid & ~self.o.ready
        # A product that another block still has to build on ties the ring to the input rate.
        pending = Cat(s.valid & ~s.fin & ~s.power for s in (s0, s1, s2)).any()
        in_flight = Cat(s.valid for s in (s0, s1, s2)).any()
        inject = computing & ~in_flight & ~stuck

        m.d.comb += [
            self.i.ready.eq(~stuck & ~computing),
            self.h.ready.eq(~computing),
        ]
        accept = self.i.valid & self.i.ready
        en = wire(m, ~stuck & (accept | inject | ~pending), "en")

        remaining = self.i.payload.remaining
        feedback = Mux(s2.valid & ~s2.fin & ~s2.power, s2_p, 0)
        with m.If(en):
            with m.If(accept):
                m.d.sync += [
                    s0_a.eq(to_poly(self.i.payload.block) ^ feedback),
                    s0_b.eq(powers[Mux(remaining < lanes, remaining, lanes)]),
                    s0.valid.eq(1), s0.fin.eq(remaining <= lanes), s0.last.eq(remaining == 1),
                    s0.power.eq(0),
                ]
            with m.Elif(inject):
                m.d.sync += [
                    s0_a.eq(powers[next_power - 1]), s0_b.eq(powers[1]),
                    s0.valid.eq(1), s0.power.eq(1), s0.fin.eq(0), s0.last.eq(0),
                ]
            with m.Else():
                m.d.sync += s0.valid.eq(0)
            m.d.sync += [s1.eq(s0), s2.eq(s1)]
            m.d.sync += [pp.eq(clmul(s0_a, s0_b[32 * k:32 * k + 32])) for k, pp in enumerate(s1_pp)]
            full = Const(0, 255)
            for k, pp in enumerate(s1_pp):
                full = full ^ (pp << (32 * k))
            m.d.sync += s2_p.eq(reduce_poly(full[:255]))

            # What leaves stage 2 in this clock.
            with m.If(s2.valid & s2.power):
                m.d.sync += powers[next_power].eq(s2_p)
                with m.If(next_power == lanes):
                    m.d.sync += computing.eq(0)
                with m.Else():
                    m.d.sync += next_power.eq(next_power + 1)
            with m.If(s2.valid & s2.fin):
                with m.If(s2.last):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(to_poly(share ^ s2_p)),
                                 share.eq(0)]
                with m.Else():
                    m.d.sync += share.eq(share ^ s2_p)

        with m.If(self.o.valid & self.o.ready & ~(en & s2.valid & s2.fin & s2.last)):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.h.valid & self.h.ready):
            m.d.sync += [powers[1].eq(to_poly(self.h.payload)), computing.eq(1),
                         next_power.eq(2)]
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
