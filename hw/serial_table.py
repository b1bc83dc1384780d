"""The register file and SA table for small FPGAs: everything in block RAM, one word a clock.

:class:`~ipchan.hw.regfile.RegisterFile` and :class:`~ipchan.hw.sa_table.SaTable` keep every
register in flip-flops and every SA field in a memory as wide as the field, so a slot is read or
written in one clock and the ESP datapath can take a whole SA at once. On an iCE40UP5K that
leaves no room (the iCEBreaker build with 16 SAs took 4,719 of the 5,280 logic cells): a 4 kbit
EBR is at most 16 bits wide, so a 288-bit key memory alone takes 18 of the 30, and every register
is a flip-flop behind a 72-way read multiplexer.

:class:`SerialTable` implements the same register contract, command for command and error for
error, with two 32-bit memories and a sequencer that moves one word a clock:

* **Register RAM** (128 words): every register whose value is stored (the staging registers, the
  read-back and result registers, the version, the counters). A host read of a stored register is
  a read of this RAM. Only STATUS, LIVE, FREE and the constant identification registers are
  flip-flops. Each access is registered before it reaches the RAM, a read twice, so a read
  answers three clocks after its strobe, not one (:class:`~ipchan.hw.axil.RegisterBridge` with
  ``read_latency=3``), and a write's error a clock after its strobe.
* **Slot RAM**: each slot's words (key, salt, SPI, flags, sequence number, generation and, if
  built with them, tunnel endpoints), both hash tables' buckets and the free list.

A command copies words between the two: INSTALL copies the staging registers into the slot,
READ_ENTRY the slot into the read-back registers, a counter is read, incremented and written back.
The slot states stay in flip-flops, so COMMIT and ABORT still change every slot, and ``VERSION``,
in one clock edge.

What it leaves out: the ESP datapath's ports (lookups by the datapath, whole-SA reads and
write-backs). Without a datapath no packet changes a replay window or a packet counter, so those
are not stored: the ``RB_CNT_*`` registers read zero, as they do on the flip-flop table built
without a datapath. For the same reason MOVE_BUCKET writes its two buckets in consecutive clocks
rather than one: no lookup can run between them.

Host reads are never held (STATUS can always be polled): a read of the register RAM takes its read
port in that clock, and the sequencer waits a clock. A 64-bit pair stays untorn as in the
flip-flop file: reading the low half makes the next two clocks copy the high half's current value
(kept at an address the contract leaves unmapped) into the word the high register reads.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import contract
from .contract import Access, Algorithm, Error, Op, SlotState
from .onehot import OneHotFSM
from .sa_table import spi_hash_hdl, staged_next_states


__all__ = ["SerialTable", "SLOT_WORDS", "REG_RAM_DEPTH", "LIVE_REGISTERS", "HIGH_HALF_LIVE"]


#: Registers held in flip-flops (or constants); every other stored register is in the register
#: RAM. CMD is not stored at all: writing it starts a command, reading it returns zero.
LIVE_REGISTERS = ("ID", "CONTRACT", "CONFIG0", "CONFIG1", "CONFIG2", "STATUS", "LIVE", "FREE")

#: Words of the register RAM (word addresses 0..127, byte addresses up to 0x1FC).
REG_RAM_DEPTH = 128

#: For each 64-bit pair, the word (unmapped in the contract) that holds the high half's current
#: value; the high register's own word is its snapshot, taken when the low half is read.
HIGH_HALF_LIVE = {"VERSION_HI": 0x034, "RB_SEQ_HI": 0x038, "LOOKUP_VERSION_HI": 0x03C}

#: A slot's words in the slot RAM, by the staging register they come from.
SLOT_WORDS = {
    **{f"KEY{i}": i for i in range(8)},
    "SALT": 8, "SPI": 9, "FLAGS": 10, "SEQ_LO": 11, "SEQ_HI": 12, "GEN": 13,
    **{f"SRC{i}": 16 + i for i in range(4)},
    **{f"DST{i}": 20 + i for i in range(4)},
}


def _word(name):
    return contract.register(name).addr >> 2


def _check_layout():
    # The register RAM's layout is derived from the contract; refuse one it cannot hold.
    mapped = {r.addr for r in contract.REGISTERS}
    for hi, live in HIGH_HALF_LIVE.items():
        if live in mapped:
            raise ValueError(f"The live high half of {hi} is kept at {live:#x}, which the "
                             f"contract maps")
    for reg in contract.REGISTERS:
        if reg.name in LIVE_REGISTERS or reg.name == "CMD":
            continue
        if reg.addr >> 2 >= REG_RAM_DEPTH:
            raise ValueError(f"Register {reg.name} at {reg.addr:#x} is beyond the register RAM "
                             f"({REG_RAM_DEPTH} words)")
        if reg.reset:
            raise ValueError(f"Register {reg.name} resets to {reg.reset:#x}, but the register "
                             f"RAM is zeroed at reset")


_check_layout()


class SerialTable(wiring.Component):
    """Register file, SA table and version register in two block RAMs.

    The register side is :class:`~ipchan.hw.axil.RegisterBridge`'s (``addr``, ``w_stb``,
    ``w_data``, ``w_strb``, then ``w_err`` a clock later, ``r_stb``, then ``r_data`` and ``r_err``
    :data:`READ_LATENCY` clocks later), with accesses spaced as the bridge spaces them: one at a
    time, and none sooner than ``READ_LATENCY + 2`` clocks after a read's ``r_stb`` (the two
    clocks after a read of a pair's low half copy its high half, through both RAM ports);
    ``busy`` is high while a command (or the reset-time zeroization) runs, and the bridge must
    hold writes meanwhile (``w_wait``).

    Parameters
    ----------
    params : :class:`~ipchan.hw.contract.EngineParams`
        The engine to build.
    """

    #: Clocks from ``r_stb`` to ``r_data``: the access is registered twice, then the RAM is read.
    READ_LATENCY = 3

    def __init__(self, params=contract.EngineParams()):
        if not isinstance(params, contract.EngineParams):
            self._MustUse__silence = True  # a refused table is not an unused one
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        self._params = params
        super().__init__({
            "addr": In(contract.ADDR_WIDTH),
            "w_stb": In(1),
            "w_data": In(32),
            "w_strb": In(4),
            "w_err": Out(1),
            "r_stb": In(1),
            "r_data": Out(32),
            "r_err": Out(1),
            "busy": Out(1, init=1),
        })

    @property
    def params(self):
        return self._params

    @property
    def slot_stride(self):
        """Words per slot in the slot RAM: 16, or 32 with tunnel endpoints."""
        return 32 if self._params.tunnel_endpoints else 16

    @property
    def slot_ram_depth(self):
        """Words of the slot RAM: the slots in the lower half; the buckets (two words each) and
        the free list in the upper half."""
        return 2 * self._params.n_entries * self.slot_stride

    def elaborate(self, platform):
        p = self._params
        m = Module()
        N, NB, IW, BW = p.n_entries, p.n_buckets, p.index_width, p.bucket_width
        GW, VW = p.generation_width, p.version_width
        SW = self.slot_stride.bit_length() - 1
        SD = self.slot_ram_depth
        SA = (SD - 1).bit_length()

        # Neither RAM is read at an address written in the same clock, so Yosys need not
        # emulate read-before-write on the iCE40's block RAM, whose result on such a collision
        # is undefined (the emulation costs a flip-flop per bit, a comparator and a multiplexer,
        # and it set the clock). In the register RAM: the sequencer does not write while the
        # host reads (``gw``), nor read a word the host writes (host writes only land while no
        # command runs), nor read and write in one state; the snapshot reads and writes words
        # that only it and the host's reads touch, and the bridge spaces the host's accesses.
        m.submodules.reg_ram = reg_ram = Memory(shape=32, depth=REG_RAM_DEPTH, init=[],
                                                attrs={"no_rw_check": 1})
        # In the slot RAM: only the sequencer uses it, and no state uses read data whose address
        # it wrote in the same clock (a state that writes either reads another region or ignores
        # what it read).
        m.submodules.slot_ram = slot_ram = Memory(shape=32, depth=SD, init=[],
                                                  attrs={"no_rw_check": 1})
        # Exposed for white-box tests (zeroization of keys).
        self.reg_ram, self.slot_ram = reg_ram, slot_ram
        rr_port = reg_ram.read_port()
        rw_port = reg_ram.write_port(granularity=8)
        sr_port = slot_ram.read_port()
        sw_port = slot_ram.write_port()
        rr, sr = rr_port.data, sr_port.data

        # --- Slot RAM addresses -------------------------------------------------------------------
        def slot_addr(slot, word):
            # ``word``: a name of SLOT_WORDS, or a word index.
            if isinstance(word, str):
                word = Const(SLOT_WORDS[word], SW)
            return Cat(word[:SW], slot[:IW], Const(0, 1))

        def bucket_addr(table, bucket, half):
            # half 0: the SPI; half 1: valid (bit 0) and index (bits 16..), as RB_BUCKET.
            return Cat(Const(half, 1), bucket[:BW], table, Const(0, SA - BW - 3), Const(1, 1))

        def free_addr(i):
            return Cat(i[:IW], Const(0, SA - IW - 2), Const(1, 1), Const(1, 1))

        def spi_hash(table, spi):
            return Mux(table, spi_hash_hdl(1, spi, BW), spi_hash_hdl(0, spi, BW))

        # --- Host side: decoding, reads, writes, snapshots ------------------------------------
        word = self.addr[2:]
        pairs = [r for r in contract.REGISTERS if r.snapshot_hi]
        # What each word address is, as one constant table indexed by the address (a function
        # of seven bits per output, not a comparator per register).
        Decode = data.StructLayout({
            "mapped": 1,
            "in_ram": 1,        # the register's value is in the register RAM
            "writable": 1,      # RW or WO, and stored
            "write_only": 1,
            "is_cmd": 1,
            "low_half": 2,      # 1 + which pair, when this is the low half of a 64-bit pair
        })
        table = [Decode.const({}) for _ in range(REG_RAM_DEPTH)]
        for reg in contract.REGISTERS:
            fields = {"mapped": 1}
            if reg.name == "CMD":
                fields.update(is_cmd=1, write_only=1)
            elif reg.name not in LIVE_REGISTERS:
                fields.update(in_ram=1, writable=int(reg.access != Access.RO),
                              write_only=int(reg.access == Access.WO))
            if reg.snapshot_hi:
                fields["low_half"] = 1 + pairs.index(reg)
            table[reg.addr >> 2] = Decode.const(fields)
        decode = Signal(Decode)
        with m.If(word[7:] == 0):
            m.d.comb += decode.eq(Array(table)[word[:7]])

        # Every access is registered before it reaches the RAMs: nothing of the bus's
        # combinational path reaches the sequencer. A write lands from this register; a read is
        # registered once more (so the bridge reads with a latency of three), which tells the
        # sequencer a clock ahead that the host will take the read port.
        h_read = Signal()
        h_write = Signal()
        h_word = Signal(7)
        h_data = Signal(32)
        h_strb = Signal(4)
        h = Signal(Decode)
        m.d.sync += [
            h_read.eq(self.r_stb), h_write.eq(self.w_stb), h_word.eq(word[:7]),
            h_data.eq(self.w_data), h_strb.eq(self.w_strb), h.eq(decode),
        ]
        # A write's error is decoded from the registered access, a clock after its strobe: from
        # the bus through the bridge's address multiplexer and this decode into the bridge's
        # write response, it set the clock.
        m.d.comb += self.w_err.eq(h_write & ~h.mapped)
        g_read = Signal()       # the read, registered twice
        g_word = Signal(7)
        g = Signal(Decode)
        host_read = Signal()    # the host reads the register RAM in this clock
        host_read_next = Signal()
        m.d.comb += host_read_next.eq(h_read & h.in_ram)
        m.d.sync += [g_read.eq(h_read), g_word.eq(h_word), g.eq(h),
                     host_read.eq(host_read_next)]

        # The snapshot of a pair's high half: the clock after the low half was read, read the
        # high half's live word; the clock after that, write it to the high register's word.
        snap_read = Signal(2)
        snap_write = Signal(2)
        m.d.sync += [
            snap_read.eq(Mux(g_read, g.low_half, 0)),
            snap_write.eq(snap_read),
        ]
        live_hi_addr = Signal(7)
        shadow_addr = Signal(7)
        with m.Switch(snap_read):
            for k, reg in enumerate(pairs):
                with m.Case(k + 1):
                    m.d.comb += live_hi_addr.eq(HIGH_HALF_LIVE[reg.snapshot_hi] >> 2)
        with m.Switch(snap_write):
            for k, reg in enumerate(pairs):
                with m.Case(k + 1):
                    m.d.comb += shadow_addr.eq(_word(reg.snapshot_hi))

        # What the sequencer may use this clock: the read port unless the host or a snapshot
        # reads, the write port unless either does or a snapshot writes. A read issued with
        # ``gr`` has its data the next clock. Writes wait while a snapshot is in flight, so the
        # two halves of a pair that the sequencer writes in consecutive clocks are never read
        # torn, and while the host reads, so no word is read and written in one clock. Both are
        # flip-flops, set a clock ahead from the registered access and snapshot: they gate most
        # of the sequencer's transitions and the RAMs' addresses and write enable.
        gr = Signal(init=1)
        gw = Signal(init=1)
        snap_reading = Signal()     # snap_read != 0
        snap_writing = Signal()     # snap_write != 0
        snap_reading_next = Signal()
        m.d.comb += snap_reading_next.eq(g_read & (g.low_half != 0))
        m.d.sync += [
            snap_reading.eq(snap_reading_next),
            snap_writing.eq(snap_reading),
            gr.eq(~host_read_next & ~snap_reading_next),
            gw.eq(~host_read_next & ~snap_reading_next & ~snap_reading),
        ]
        seq_raddr = Signal(7)
        seq_waddr = Signal(7)
        seq_wdata = Signal(32)
        seq_want = Signal()         # the sequencer has a word to write
        seq_pair_first = Signal()   # the low half of a pair (see r_write)
        seq_wen = Signal()          # and writes it in this clock
        # Any host read coming (``h_read``), not only one of the register RAM: one input fewer
        # on the write enable, for a clock's wait on a read of a flip-flop register.
        m.d.comb += seq_wen.eq(seq_want & gw & ~(seq_pair_first & h_read))
        m.d.comb += [
            rr_port.addr.eq(Mux(host_read, g_word, Mux(snap_reading, live_hi_addr, seq_raddr))),
        ]
        # The three writers never write in the same clock: host writes only reach here while no
        # command runs (the bridge holds them on busy, and one that it let through has reached
        # here before the command it starts writes), the sequencer waits while a snapshot is in
        # flight (``gw``), and the bridge spaces a snapshot and the host's next access. So the
        # byte enables are an OR, not a priority: from the sequencer's state through the
        # priority into the RAM's write enable was the engine's critical path.
        m.d.comb += rw_port.en.eq(snap_writing.replicate(4) |
                                  Mux(h_write & h.writable, h_strb, 0) | seq_wen.replicate(4))
        with m.If(snap_writing):
            m.d.comb += [rw_port.addr.eq(shadow_addr), rw_port.data.eq(rr)]
        with m.Elif(h_write):
            m.d.comb += [rw_port.addr.eq(h_word), rw_port.data.eq(h_data)]
        with m.Else():
            m.d.comb += [rw_port.addr.eq(seq_waddr), rw_port.data.eq(seq_wdata)]

        # --- Flip-flop state ------------------------------------------------------------------
        error = Signal(8)
        staged = Signal(16)
        version = Signal(VW)
        state = Signal(2 * N)       # slot states, so COMMIT changes every slot in one edge
        dirty = Signal(N)           # released, waiting for the zeroizing scan
        live_n = Signal(range(N + 1))
        free_n = Signal(range(N + 1))
        free_head = Signal(IW)
        free_tail = Signal(IW)
        n_add = Signal(range(N + 1))
        n_del = Signal(range(N + 1))

        # Host reads: the value three clocks after r_stb (the access registered twice, then the
        # RAM's read or this register).
        live_value = Signal(32)
        consts = {
            "ID": contract.register("ID").reset,
            "CONTRACT": contract.register("CONTRACT").reset,
            "CONFIG0": (contract.field_of("CONFIG0", "N_ENTRIES").put(p.n_entries) |
                        contract.field_of("CONFIG0", "GEN_WIDTH").put(GW) |
                        contract.field_of("CONFIG0", "VERSION_WIDTH").put(VW)),
            "CONFIG1": (contract.field_of("CONFIG1", "WINDOW_MAX").put(p.window_max) |
                        contract.field_of("CONFIG1", "N_BUCKETS").put(NB)),
            "CONFIG2": (contract.field_of("CONFIG2", "MAX_PACKET").put(p.max_packet) |
                        contract.field_of("CONFIG2", "MAX_EXT_HEADERS").put(
                            contract.IPV6_MAX_EXT_HEADERS) |
                        contract.field_of("CONFIG2", "ENDPOINTS").put(p.tunnel_endpoints)),
        }
        status = contract.register("STATUS")
        with m.Switch(g_word):
            for name, value in consts.items():
                with m.Case(_word(name)):
                    m.d.comb += live_value.eq(value)
            with m.Case(_word("STATUS")):
                for fname, value in (("BUSY", self.busy), ("ERROR", error), ("STAGED", staged)):
                    f = status.field(fname)
                    m.d.comb += live_value[f.offset:f.offset + f.width].eq(value)
            with m.Case(_word("LIVE")):
                m.d.comb += live_value.eq(live_n)
            with m.Case(_word("FREE")):
                m.d.comb += live_value.eq(free_n)
        r_from_ram = Signal()
        r_live = Signal(32)
        with m.If(g_read):
            m.d.sync += [
                r_from_ram.eq(g.in_ram & ~g.write_only),
                r_live.eq(Mux(g.mapped, live_value, 0)),
                self.r_err.eq(~g.mapped),
            ]
        m.d.comb += self.r_data.eq(Mux(r_from_ram, rr, r_live))

        # --- Sequencer --------------------------------------------------------------------------
        op = Signal(4)
        arg_table = Signal()
        arg_index = Signal(16)
        # Whether the index is past the slots and past the buckets, compared when the command
        # is taken: compared in DISPATCH, the 16-bit carry chain led into the FSM's next state.
        past_slots = Signal()
        past_buckets = Signal()
        spi = Signal(32)
        f_dir = Signal()
        f_place = Signal()
        cmd_bad = Signal()              # the command is refused, with error cmd_error
        cmd_error = Signal(8)
        bad_spi = Signal()              # INSTALL's checks, in the order they are reported
        bad_alg = Signal()
        bad_window = Signal()
        install_bad = Signal()
        install_error = Signal(8)
        cur = Signal(IW)
        k = Signal(6)                   # word of a copy or a zeroization
        scan_i = Signal(range(max(N, SD, REG_RAM_DEPTH) + 1))
        scan_end = Signal()
        scan_dirty = Signal()
        b_valid = Signal()
        b_same = Signal()
        b_index = Signal(IW)
        # The bucket every bucket access goes to, set a clock before: one address, not one per
        # command, in front of the slot RAM.
        b_table = Signal()
        b_bucket = Signal(BW)
        match0 = Signal()
        index0 = Signal(IW)
        found = Signal()
        new_gen = Signal(GW)
        counter = Signal(7)             # word of the counter being incremented
        count_sum = Signal(32)          # its new value
        AFTER_DONE, AFTER_HITS, AFTER_VERSION = range(3)
        after = Signal(2)

        def aim(table, bucket):
            fsm.assign(b_table, table, domain="sync")
            fsm.assign(b_bucket, bucket, domain="sync")

        def aim_hash(table):
            aim(table, spi_hash(table, spi))

        def bucket_word(half):
            return bucket_addr(b_table, b_bucket, half)

        version_hi = version[32:] if VW > 32 else 0
        # VERSION + 1 in two steps: the low half in the clock of the command, its carry into the
        # high half the clock after (a 64-bit carry chain is longer than a clock). Nothing reads
        # VERSION in between: the command then counts itself, or writes the low word first.
        LW = min(VW, 32)
        version_carry = Signal()

        def bump_version():
            m.d.sync += [version[:LW].eq(version[:LW] + 1),
                         version_carry.eq(version[:LW].all())]

        if VW > 32:
            with m.If(version_carry):
                m.d.sync += [version[32:].eq(version[32:] + 1), version_carry.eq(0)]
        version_at_max = Signal()
        m.d.sync += version_at_max.eq(version == p.version_max)
        staged_zero = Signal()
        m.d.sync += staged_zero.eq(staged == 0)
        free_empty = Signal()
        m.d.sync += free_empty.eq(free_n == 0)

        def visible(idx):
            return state.bit_select(idx * 2 + 1, 1)

        def slot_state(idx):
            return state.word_select(idx, 2)

        # One flip-flop a state; the RAM ports, which many states drive, are AND-OR
        # multiplexers over the states (see OneHotFSM.assign).
        fsm = OneHotFSM(m, init="INIT_REGS", name="seq")

        def r_read(addr):
            fsm.assign(seq_raddr, addr)
            return gr

        # The states that write the register RAM (each calls r_write), and whether each writes
        # a pair's low half (READBACK: only at one step, ``rb_pair_first``).
        writers = {}

        def r_write(addr, data, pair_first=0):
            # The low half of a 64-bit pair is written only where no host read comes between
            # it and the high half, written the clock after: such a read would hold the high
            # half back and let a snapshot read it old beside a new low half.
            writers[fsm.current] = pair_first
            ok = Signal()
            m.d.comb += ok.eq(gw & ~(pair_first & h_read))
            fsm.assign(seq_waddr, addr)
            fsm.assign(seq_wdata, data)
            return ok

        def s_read(addr):
            fsm.assign(sr_port.addr, addr)

        def s_write(addr, data, en=1):
            fsm.assign(sw_port.addr, addr)
            fsm.assign(sw_port.data, data)
            fsm.assign(sw_port.en, en)

        def done():
            m.d.sync += self.busy.eq(0)
            fsm.next = "IDLE"

        def refuse_first(bad, code, checks):
            # A verdict, registered: ``bad`` and the error ``code`` of the first of ``checks``
            # (``(condition, error)`` pairs, in the order the contract reports them) that holds.
            m.d.sync += bad.eq(1)
            for n, (condition, error_code) in enumerate(checks):
                with (m.Elif if n else m.If)(condition):
                    m.d.sync += code.eq(error_code)
            with m.Else():
                m.d.sync += bad.eq(0)

        def count(name, then):
            fsm.assign(counter, _word(name), domain="sync")
            fsm.assign(after, then, domain="sync")
            fsm.next = "COUNT_READ"

        def fail(code):
            fsm.assign(error, code, domain="sync")
            count("CNT_CMD_ERRORS", AFTER_DONE)

        # Copies between the RAMs, a word a clock, as (source word, destination word) lists.
        install_copy = [(_word(f"SA_KEY{i}"), f"KEY{i}") for i in range(8)] + [
            (_word("SA_SALT"), "SALT"), (_word("SA_SPI"), "SPI"), (_word("SA_FLAGS"), "FLAGS"),
            (_word("SA_SEQ_LO"), "SEQ_LO"), (_word("SA_SEQ_HI"), "SEQ_HI")]
        # READ_ENTRY: the sequence number last, its halves in consecutive clocks.
        entry_copy = [("SPI", _word("RB_SPI")), ("FLAGS", _word("RB_FLAGS")),
                      ("GEN", _word("RB_STATE"))]
        if p.tunnel_endpoints:
            install_copy += [(_word(f"SA_{e}{i}"), f"{e}{i}") for e in ("SRC", "DST")
                             for i in range(4)]
            entry_copy += [(f"{e}{i}", _word(f"RB_{e}{i}")) for e in ("SRC", "DST")
                           for i in range(4)]
        entry_copy += [("SEQ_LO", _word("RB_SEQ_LO")),
                       ("SEQ_HI", HIGH_HALF_LIVE["RB_SEQ_HI"] >> 2)]

        # READ_ENTRY and READ_BUCKET copy a slot RAM word into a register at each step. What
        # step j reads and writes, from registers (the command, the slot and the bucket):
        rb_state_step = [dst for _, dst in entry_copy].index(_word("RB_STATE"))
        rb_seq_lo_step = [dst for _, dst in entry_copy].index(_word("RB_SEQ_LO"))

        # INSTALL's copy: the register RAM word and the slot's word of step ``k``, and whether
        # it is the last, are registers set a step ahead (as READ_ENTRY's): decoded from ``k``
        # into the RAMs' addresses and the next state, they set the clock.
        copy_src = Signal(7)
        copy_dst = Signal(SW)
        copy_last = Signal()

        def copy_load(j):
            src, dst, last = Signal(7), Signal(SW), Signal()
            with m.Switch(j):
                for n, (reg_word, slot_word) in enumerate(install_copy):
                    with m.Case(n):
                        m.d.comb += [src.eq(reg_word), dst.eq(SLOT_WORDS[slot_word]),
                                     last.eq(n == len(install_copy) - 1)]
            m.d.sync += [copy_src.eq(src), copy_dst.eq(dst), copy_last.eq(last)]

        def readback_step(j):
            source = Signal(SA)     # the slot RAM word
            dest = Signal(7)        # the register RAM word
            last = Signal()         # the command's last step
            is_state = Signal()     # writes RB_STATE: the slot's state and generation
            pair_first = Signal()   # writes the low half of a pair (RB_SEQ_LO)
            with m.If(op == Op.READ_BUCKET):
                m.d.comb += [source.eq(Mux(j == 1, bucket_word(0), bucket_word(1))),
                             dest.eq(Mux(j == 0, _word("RB_BUCKET"), _word("RB_BUCKET_SPI"))),
                             last.eq(j == 1)]
            with m.Else():
                m.d.comb += [last.eq(j == len(entry_copy) - 1), is_state.eq(j == rb_state_step),
                             pair_first.eq(j == rb_seq_lo_step)]
                with m.Switch(j):
                    for n, (src, dst) in enumerate(entry_copy):
                        with m.Case(n):
                            m.d.comb += [source.eq(slot_addr(cur, src)), dest.eq(dst)]
            return source, dest, last, is_state, pair_first

        # The step's words and flags are registers, set a step ahead (the source two): from
        # ``k`` through these multiplexers into the RAMs' addresses and the sequencer's next
        # state, they set the clock.
        rb_source = Signal(SA)
        rb_source_next = Signal(SA)
        rb_dest = Signal(7)
        rb_last = Signal()
        rb_is_state = Signal()
        rb_pair_first = Signal()
        rb_first = readback_step(Const(0, len(k)))
        rb_second = readback_step(Const(1, len(k)))
        rb_next = readback_step(k + 1)
        rb_after_next = readback_step(k + 2)

        def rb_load(step):
            _, dest, last, is_state, pair_first = step
            m.d.sync += [rb_dest.eq(dest), rb_last.eq(last), rb_is_state.eq(is_state),
                         rb_pair_first.eq(pair_first)]

        # The state of slot ``cur``, for DELETE and READ_ENTRY: loaded together with ``cur`` in
        # DISPATCH (from registers), and no slot state moves while either command runs.
        cur_state = Signal(2)

        commit_state, commit_dirty, abort_state, abort_dirty = staged_next_states(m, state, dirty)

        w_op = h_data[contract.field_of("CMD", "OP").offset:][:4]
        w_index = h_data[contract.field_of("CMD", "INDEX").offset:][:16]
        w_table = h_data[contract.field_of("CMD", "TABLE").offset]
        place_bit = contract.field_of("SA_FLAGS", "PLACE").offset
        f_flags = {name: contract.field_of("SA_FLAGS", name) for name in
                   ("DIR", "PLACE", "ALG", "WINDOW")}

        def flag(word_value, name):
            f = f_flags[name]
            return word_value[f.offset:f.offset + f.width]

        with fsm:
            with fsm.State("INIT_REGS"):
                # After reset: zero the register RAM, then the slot RAM with the free list
                # 0..N-1. Block RAM keeps its contents across a reset, so this is also what
                # zeroizes keys then.
                with m.If(r_write(scan_i[:7], 0)):
                    m.d.sync += scan_i.eq(scan_i + 1)
                    with m.If(scan_i == REG_RAM_DEPTH - 1):
                        m.d.sync += scan_i.eq(0)
                        fsm.next = "INIT_SLOTS"
            with fsm.State("INIT_SLOTS"):
                in_free = scan_i[SA - 2:SA] == 0b11
                s_write(scan_i[:SA], Mux(in_free & (scan_i[:SA - 2] < N), scan_i[:IW], 0))
                m.d.sync += scan_i.eq(scan_i + 1)
                with m.If(scan_i == SD - 1):
                    m.d.sync += [free_head.eq(0), free_tail.eq(0), free_n.eq(N), scan_i.eq(0)]
                    done()

            with fsm.State("IDLE"):
                with m.If(h_write & h.is_cmd):
                    m.d.sync += [op.eq(w_op), arg_table.eq(w_table), arg_index.eq(w_index),
                                 past_slots.eq(w_index >= N), past_buckets.eq(w_index >= NB),
                                 self.busy.eq(1)]
                    fsm.assign(error, Error.NONE, domain="sync")
                    fsm.next = "CHECK"

            with fsm.State("CHECK"):
                # Whether the command is refused, and why, registered before DISPATCH acts on
                # it: through the op's decode and the checks into the next state and the error
                # and counter registers, they set the clock. From registers only: the command's
                # operands, and whether VERSION is at its largest value and whether anything is
                # staged, each registered at least a clock after it last moved.
                m.d.sync += cmd_bad.eq(1)
                with m.Switch(op):
                    with m.Case(Op.NOP, Op.INSTALL, Op.LOOKUP):
                        m.d.sync += cmd_bad.eq(0)
                    with m.Case(Op.DELETE):
                        m.d.sync += [cmd_bad.eq(past_slots), cmd_error.eq(Error.BAD_INDEX)]
                    with m.Case(Op.COMMIT):
                        refuse_first(cmd_bad, cmd_error, [
                            (staged_zero, Error.NOTHING_STAGED),
                            (version_at_max, Error.VERSION_EXHAUSTED)])
                    with m.Case(Op.ABORT):
                        m.d.sync += [cmd_bad.eq(staged_zero),
                                     cmd_error.eq(Error.NOTHING_STAGED)]
                    with m.Case(Op.BUMP_VERSION):
                        m.d.sync += [cmd_bad.eq(version_at_max),
                                     cmd_error.eq(Error.VERSION_EXHAUSTED)]
                    with m.Case(Op.READ_ENTRY):
                        m.d.sync += [cmd_bad.eq(past_slots), cmd_error.eq(Error.BAD_INDEX)]
                    with m.Case(Op.READ_BUCKET, Op.MOVE_BUCKET):
                        m.d.sync += [cmd_bad.eq(past_buckets), cmd_error.eq(Error.BAD_INDEX)]
                    with m.Default():
                        m.d.sync += cmd_error.eq(Error.BAD_OP)
                fsm.next = "DISPATCH"

            with fsm.State("DISPATCH"):
                # The slot and bucket that DELETE, READ_ENTRY, READ_BUCKET and MOVE_BUCKET start
                # from, set whatever the command: the others set their own before using them,
                # and under a command's checks these set the clock.
                m.d.sync += [k.eq(0), cur.eq(arg_index[:IW]),
                             cur_state.eq(slot_state(arg_index[:IW]))]
                aim(arg_table, arg_index[:BW])
                with m.If(cmd_bad):
                    fail(cmd_error)
                with m.Else():
                    with m.Switch(op):
                        with m.Case(Op.NOP):
                            done()
                        with m.Case(Op.INSTALL):
                            fsm.next = "INSTALL_SPI"
                        with m.Case(Op.DELETE):
                            fsm.next = "DELETE"
                        with m.Case(Op.COMMIT):
                            # The one edge where the table and its version move together.
                            m.d.sync += [
                                state.eq(commit_state), dirty.eq(commit_dirty),
                                live_n.eq(live_n + n_add - n_del),
                                n_add.eq(0), n_del.eq(0), staged.eq(0),
                            ]
                            bump_version()
                            count("CNT_COMMITS", AFTER_VERSION)
                        with m.Case(Op.ABORT):
                            m.d.sync += [state.eq(abort_state), dirty.eq(abort_dirty),
                                         n_add.eq(0), n_del.eq(0), staged.eq(0),
                                         scan_i.eq(0)]
                            fsm.next = "SCAN"
                        with m.Case(Op.BUMP_VERSION):
                            bump_version()
                            fsm.next = "VERSION_LO"
                        with m.Case(Op.LOOKUP):
                            fsm.next = "LOOKUP_SPI"
                        with m.Case(Op.READ_ENTRY, Op.READ_BUCKET):
                            fsm.next = "READBACK_FIRST"
                        with m.Case(Op.MOVE_BUCKET):
                            fsm.next = "MOVE_SRC_FLAGS"

            with fsm.State("DELETE"):
                # ``cur_state``, not ``slot_state(cur)``: the 16-way select in front of these
                # tests sat on the path into the FSM's next state.
                with m.If(cur_state == SlotState.LIVE):
                    m.d.sync += [slot_state(cur).eq(SlotState.STAGED_DEL),
                                 n_del.eq(n_del + 1), staged.eq(staged + 1)]
                    count("CNT_DELETES", AFTER_DONE)
                with m.Elif(cur_state == SlotState.STAGED_ADD):
                    # Cancels an install that was never visible.
                    m.d.sync += [slot_state(cur).eq(SlotState.FREE),
                                 dirty.bit_select(cur, 1).eq(1),
                                 n_add.eq(n_add - 1), staged.eq(staged + 1)]
                    count("CNT_DELETES", AFTER_DONE)
                with m.Else():
                    fail(Error.NO_SUCH_SA)

            # Counters: read, increment, write back; then what the command does next.
            with fsm.State("COUNT_READ"):
                with m.If(r_read(counter)):
                    fsm.next = "COUNT_ADD"
            with fsm.State("COUNT_ADD"):
                # The sum is registered before it is written: from the RAM's output through the
                # 32-bit carry chain into the write data, it set the clock of the engine beside
                # the compact GCM core (29.6 MHz).
                m.d.sync += count_sum.eq(rr + 1)
                fsm.next = "COUNT_WRITE"
            with fsm.State("COUNT_WRITE"):
                with m.If(r_write(counter, count_sum)):
                    with m.Switch(after):
                        with m.Case(AFTER_DONE):
                            done()
                        with m.Case(AFTER_HITS):
                            with m.If(found):
                                count("CNT_HITS", AFTER_DONE)
                            with m.Else():
                                done()
                        with m.Case(AFTER_VERSION):
                            fsm.next = "VERSION_LO"

            # The version's words, low then high in consecutive clocks.
            with fsm.State("VERSION_LO"):
                with m.If(r_write(_word("VERSION_LO"), version[:32], pair_first=1)):
                    fsm.next = "VERSION_HI"
            with fsm.State("VERSION_HI"):
                with m.If(r_write(HIGH_HALF_LIVE["VERSION_HI"] >> 2,
                                  version_hi)):
                    with m.If(op == Op.COMMIT):
                        m.d.sync += scan_i.eq(0)
                        fsm.next = "SCAN"
                    with m.Else():
                        done()

            # INSTALL: checks, a free slot, the bucket; then the copy.
            with fsm.State("INSTALL_SPI"):
                with m.If(r_read(_word("SA_SPI"))):
                    fsm.next = "INSTALL_SPI_DATA"
            with fsm.State("INSTALL_SPI_DATA"):
                m.d.sync += [spi.eq(rr), bad_spi.eq(rr <= contract.SPI_RESERVED_MAX)]
                fsm.next = "INSTALL_FLAGS"
            with fsm.State("INSTALL_FLAGS"):
                with m.If(r_read(_word("SA_FLAGS"))):
                    fsm.next = "INSTALL_FLAGS_DATA"
            with fsm.State("INSTALL_FLAGS_DATA"):
                # Each check, then their verdict, is registered before it is used: from the
                # RAM's output through the compares into the next state and the error and
                # counter registers, they set the clock.
                alg, window = flag(rr, "ALG"), flag(rr, "WINDOW")
                m.d.sync += [f_dir.eq(flag(rr, "DIR")), f_place.eq(flag(rr, "PLACE")),
                             bad_alg.eq((alg < min(Algorithm)) | (alg > max(Algorithm))),
                             bad_window.eq(window > p.window_max)]
                fsm.next = "INSTALL_VERDICT"
            with fsm.State("INSTALL_VERDICT"):
                refuse_first(install_bad, install_error, [
                    (bad_spi, Error.BAD_SPI), (bad_alg, Error.BAD_ALGORITHM),
                    (bad_window, Error.BAD_WINDOW), (free_empty, Error.TABLE_FULL)])
                fsm.next = "INSTALL_CHECK"
            with fsm.State("INSTALL_CHECK"):
                aim_hash(f_place)
                s_read(free_addr(free_head))
                with m.If(install_bad):
                    fail(install_error)
                with m.Else():
                    fsm.next = "INSTALL_SLOT"
            with fsm.State("INSTALL_SLOT"):
                # The free list's head arrived; read the SPI's bucket in its table.
                m.d.sync += [cur.eq(sr[:IW]), k.eq(0)]
                copy_load(Const(0, len(k)))
                s_read(bucket_word(1))
                fsm.next = "INSTALL_BUCKET"
            with fsm.State("INSTALL_BUCKET"):
                with m.If((f_dir == contract.Direction.INBOUND) & sr[0]):
                    fail(Error.BUCKET_OCCUPIED)
                with m.Else():
                    fsm.next = "INSTALL_COPY_READ"
            with fsm.State("INSTALL_COPY_READ"):
                with m.If(r_read(copy_src)):
                    fsm.next = "INSTALL_COPY_WRITE"
            with fsm.State("INSTALL_COPY_WRITE"):
                s_write(slot_addr(cur, copy_dst), rr)
                m.d.sync += k.eq(k + 1)
                copy_load(k + 1)
                with m.If(copy_last):
                    fsm.next = "INSTALL_GEN"
                with m.Else():
                    fsm.next = "INSTALL_COPY_READ"
            with fsm.State("INSTALL_GEN"):
                s_read(slot_addr(cur, "GEN"))
                fsm.next = "INSTALL_GEN_ADD"
            with fsm.State("INSTALL_GEN_ADD"):
                # Generations are never cleared, so a reused slot always reads a new one. The
                # sum is registered: from the RAM's output through the carry chain into its
                # write data was the engine's critical path.
                m.d.sync += new_gen.eq(sr + 1)
                fsm.next = "INSTALL_GEN_WRITE"
            with fsm.State("INSTALL_GEN_WRITE"):
                s_write(slot_addr(cur, "GEN"), new_gen)
                with m.If(f_dir == contract.Direction.INBOUND):
                    fsm.next = "INSTALL_BUCKET_SPI"
                with m.Else():
                    fsm.next = "INSTALL_RESULT"
            with fsm.State("INSTALL_BUCKET_SPI"):
                s_write(bucket_word(0), spi)
                fsm.next = "INSTALL_BUCKET_INDEX"
            with fsm.State("INSTALL_BUCKET_INDEX"):
                s_write(bucket_word(1), Cat(Const(1, 16), cur))
                fsm.next = "INSTALL_RESULT"
            with fsm.State("INSTALL_RESULT"):
                with m.If(r_write(_word("RESULT"), Cat(Const(1, 16), cur))):
                    fsm.next = "INSTALL_RESULT_GEN"
            with fsm.State("INSTALL_RESULT_GEN"):
                with m.If(r_write(_word("RESULT_GEN"), new_gen)):
                    m.d.sync += [
                        slot_state(cur).eq(SlotState.STAGED_ADD),
                        free_head.eq(free_head + 1),
                        free_n.eq(free_n - 1),
                        n_add.eq(n_add + 1),
                        staged.eq(staged + 1),
                    ]
                    count("CNT_INSTALLS", AFTER_DONE)

            # LOOKUP: both buckets, compared with the SPI in turn, then the slot's generation.
            with fsm.State("LOOKUP_SPI"):
                with m.If(r_read(_word("LOOKUP_SPI"))):
                    fsm.next = "LOOKUP_SPI_DATA"
            with fsm.State("LOOKUP_SPI_DATA"):
                m.d.sync += spi.eq(rr)
                fsm.next = "LOOKUP_AIM"
            with fsm.State("LOOKUP_AIM"):
                aim_hash(Const(0))
                fsm.next = "LOOKUP_T0"
            for t in range(2):
                with fsm.State(f"LOOKUP_T{t}"):
                    s_read(bucket_word(1))
                    fsm.next = f"LOOKUP_T{t}_INDEX"
                with fsm.State(f"LOOKUP_T{t}_INDEX"):
                    s_read(bucket_word(0))
                    # Whether the bucket names a visible slot, registered here: tested with the
                    # SPI's compare in one clock, the slot-state select led the sequencer's
                    # critical path (into ``found`` and ``cur``: 30.3 MHz).
                    m.d.sync += [b_valid.eq(sr[0] & visible(sr[16:16 + IW])),
                                 b_index.eq(sr[16:16 + IW])]
                    fsm.next = f"LOOKUP_T{t}_SPI"
                with fsm.State(f"LOOKUP_T{t}_SPI"):
                    # The SPI's compare, registered before it is used.
                    m.d.sync += b_same.eq(sr == spi)
                    fsm.next = f"LOOKUP_T{t}_HIT"
                with fsm.State(f"LOOKUP_T{t}_HIT"):
                    hit = b_valid & b_same
                    if t == 0:
                        m.d.sync += [match0.eq(hit), index0.eq(b_index)]
                        aim_hash(Const(1))
                        fsm.next = "LOOKUP_T1"
                    else:
                        m.d.sync += [found.eq(match0 | hit),
                                     cur.eq(Mux(match0, index0, Mux(hit, b_index, 0)))]
                        fsm.next = "LOOKUP_GEN"
            with fsm.State("LOOKUP_GEN"):
                s_read(slot_addr(cur, "GEN"))
                fsm.next = "LOOKUP_RESULT"
            with fsm.State("LOOKUP_RESULT"):
                s_read(slot_addr(cur, "GEN"))   # held, so its data waits for the write below
                with m.If(r_write(_word("RESULT"), Cat(found, Const(0, 15), cur))):
                    fsm.next = "LOOKUP_RESULT_GEN"
            with fsm.State("LOOKUP_RESULT_GEN"):
                s_read(slot_addr(cur, "GEN"))
                with m.If(r_write(_word("RESULT_GEN"), Mux(found, sr[:GW], 0))):
                    fsm.next = "LOOKUP_VERSION_LO"
            with fsm.State("LOOKUP_VERSION_LO"):
                # No command runs beside this one, so VERSION is the version the lookup saw.
                with m.If(r_write(_word("LOOKUP_VERSION_LO"), version[:32], pair_first=1)):
                    fsm.next = "LOOKUP_VERSION_HI"
            with fsm.State("LOOKUP_VERSION_HI"):
                with m.If(r_write(HIGH_HALF_LIVE["LOOKUP_VERSION_HI"] >> 2,
                                  version_hi)):
                    count("CNT_LOOKUPS", AFTER_HITS)

            # READ_ENTRY, READ_BUCKET: slot RAM words into the read-back registers, one a clock
            # (the slot RAM's address runs one word ahead of the write).
            with fsm.State("READBACK_FIRST"):
                s_read(rb_first[0])
                m.d.sync += [rb_source.eq(rb_first[0]), rb_source_next.eq(rb_second[0])]
                rb_load(rb_first)
                fsm.next = "READBACK"
            with fsm.State("READBACK"):
                rb_data = Signal(32)
                m.d.comb += rb_data.eq(sr)
                # The slot's state comes from a register: through the 16-way state select, this
                # was the iCE40 engine's critical path.
                with m.If(rb_is_state):
                    rb_state = contract.register("RB_STATE")
                    f_state, f_gen = rb_state.field("STATE"), rb_state.field("GENERATION")
                    m.d.comb += rb_data.eq(0)
                    m.d.comb += [rb_data[f_state.offset:f_state.offset + 2].eq(cur_state),
                                 rb_data[f_gen.offset:f_gen.offset + GW].eq(sr[:GW])]
                with m.If(r_write(rb_dest, rb_data, pair_first=rb_pair_first)):
                    s_read(rb_source_next)
                    m.d.sync += [k.eq(k + 1), rb_source.eq(rb_source_next),
                                 rb_source_next.eq(rb_after_next[0])]
                    rb_load(rb_next)
                    with m.If(rb_last):
                        done()
                with m.Else():
                    s_read(rb_source)

            # MOVE_BUCKET: check the source and the target, write the target, clear the source,
            # and record the new table in the slot's flags.
            with fsm.State("MOVE_SRC_FLAGS"):
                s_read(bucket_word(1))
                fsm.next = "MOVE_SRC_SPI"
            with fsm.State("MOVE_SRC_SPI"):
                s_read(bucket_word(0))
                m.d.sync += cur.eq(sr[16:16 + IW])
                with m.If(~sr[0]):
                    fail(Error.BUCKET_EMPTY)
                with m.Else():
                    fsm.next = "MOVE_SPI_DATA"
            with fsm.State("MOVE_SPI_DATA"):
                m.d.sync += spi.eq(sr)
                fsm.next = "MOVE_AIM"
            with fsm.State("MOVE_AIM"):
                aim_hash(~arg_table)
                fsm.next = "MOVE_DST"
            with fsm.State("MOVE_DST"):
                s_read(bucket_word(1))
                fsm.next = "MOVE_DST_CHECK"
            with fsm.State("MOVE_DST_CHECK"):
                # Only the write's enable depends on the check: under it, the address too came
                # from the RAM's output, and that set the clock.
                s_write(bucket_word(0), spi, en=~sr[0])
                with m.If(sr[0]):
                    fail(Error.BUCKET_OCCUPIED)
                with m.Else():
                    fsm.next = "MOVE_DST_INDEX"
            with fsm.State("MOVE_DST_INDEX"):
                s_write(bucket_word(1), Cat(Const(1, 16), cur))
                aim(arg_table, arg_index[:BW])
                fsm.next = "MOVE_CLEAR_SPI"
            with fsm.State("MOVE_CLEAR_SPI"):
                s_write(bucket_word(0), 0)
                fsm.next = "MOVE_CLEAR_INDEX"
            with fsm.State("MOVE_CLEAR_INDEX"):
                s_write(bucket_word(1), 0)
                s_read(slot_addr(cur, "FLAGS"))
                fsm.next = "MOVE_PLACE"
            with fsm.State("MOVE_PLACE"):
                flags = Signal(32)
                m.d.comb += [flags.eq(sr), flags[place_bit].eq(~arg_table)]
                s_write(slot_addr(cur, "FLAGS"), flags)
                done()

            # The scan after COMMIT and ABORT: every released slot loses its bucket and its
            # words (all but the generation) and goes back to the free list.
            with fsm.State("SCAN"):
                # Whether the scan is over and whether this slot is released, registered before
                # they are tested: through the slot select into the scan's next state and index,
                # they set the clock.
                m.d.sync += [scan_end.eq(scan_i == N),
                             scan_dirty.eq(dirty.bit_select(scan_i[:IW], 1))]
                fsm.next = "SCAN_TEST"
            with fsm.State("SCAN_TEST"):
                with m.If(scan_end):
                    done()
                with m.Elif(scan_dirty):
                    m.d.sync += cur.eq(scan_i)
                    fsm.next = "SCAN_FLAGS"
                with m.Else():
                    m.d.sync += scan_i.eq(scan_i + 1)
                    fsm.next = "SCAN"
            with fsm.State("SCAN_FLAGS"):
                s_read(slot_addr(cur, "FLAGS"))
                fsm.next = "SCAN_SPI"
            with fsm.State("SCAN_SPI"):
                s_read(slot_addr(cur, "SPI"))
                m.d.sync += [f_dir.eq(flag(sr, "DIR")), f_place.eq(flag(sr, "PLACE")), k.eq(0)]
                fsm.next = "SCAN_SPI_DATA"
            with fsm.State("SCAN_SPI_DATA"):
                # Latched first: the hash is taken of ``spi`` only, so there is one set of trees.
                m.d.sync += spi.eq(sr)
                fsm.next = "SCAN_AIM"
            with fsm.State("SCAN_AIM"):
                aim_hash(f_place)
                fsm.next = "SCAN_BUCKET_SPI"
            with fsm.State("SCAN_BUCKET_SPI"):
                s_write(bucket_word(0), 0, en=f_dir == contract.Direction.INBOUND)
                fsm.next = "SCAN_BUCKET_INDEX"
            with fsm.State("SCAN_BUCKET_INDEX"):
                s_write(bucket_word(1), 0, en=f_dir == contract.Direction.INBOUND)
                fsm.next = "SCAN_ZERO"
            with fsm.State("SCAN_ZERO"):
                s_write(slot_addr(cur, k[:SW]), 0, en=k[:SW] != SLOT_WORDS["GEN"])
                m.d.sync += k.eq(k + 1)
                with m.If(k == self.slot_stride - 1):
                    fsm.next = "SCAN_FREE"
            with fsm.State("SCAN_FREE"):
                s_write(free_addr(free_tail), cur)
                m.d.sync += [
                    dirty.bit_select(cur, 1).eq(0),
                    free_tail.eq(free_tail + 1),
                    free_n.eq(free_n + 1),
                    scan_i.eq(scan_i + 1),
                ]
                fsm.next = "SCAN"

            # The writing states as flip-flops of the state machine (asked for once every state
            # has been defined), so the RAM's write enable is a LUT4 or two of flip-flops: from
            # the state bits through an OR of the writing states, it set the clock.
            # rb_pair_first is only high in READBACK: it is loaded with each step, and the step
            # after the last (the one loaded on leaving) and READ_BUCKET's are not pairs.
            pair_writers = [state for state, pair_first in writers.items()
                            if isinstance(pair_first, int) and pair_first]
            m.d.comb += [
                seq_want.eq(fsm.active(writers, name="seq_writes")),
                seq_pair_first.eq(fsm.active(pair_writers, name="seq_writes_pair") |
                                  rb_pair_first),
            ]
        return m
