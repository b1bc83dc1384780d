"""The SA table: the hardware's part of the SAD, its SPI index and the version-tag register.

Storage
-------
Each slot holds an SA's public fields (``entry``), its key and salt (``key``; write-only: nothing
but the cipher may ever read it), its replay-window bitmap (``window``) and a generation counter
(``gen``) that is *not* cleared when the slot is freed, so a reused slot always reads a new
generation. A slot's state (:class:`~ipchan.hw.contract.SlotState`) lives in flip-flops; bit 1 of
the state is "visible to the datapath".

Atomic commits
--------------
INSTALL and DELETE only stage: an installed slot is invisible (STAGED_ADD) and a deleted one stays
visible (STAGED_DEL). COMMIT rewrites every slot's state in one clock edge, and ``version`` moves
on that same edge, so every lookup sees a (table, version) pair that existed. After a COMMIT or
ABORT a scan zeroizes the key, entry and window of every released slot, clears its hash bucket and
returns it to the free list (FIFO order, so a slot is reused as late as possible).

SPI index
---------
Inbound SAs are found by SPI in two hash tables of ``2N`` buckets each (cuckoo hashing; H3 hash
functions from the contract). A lookup reads one bucket in each table in the same cycle and
compares both, so it takes the same three cycles whatever ``N`` is, with two comparators, not
``N``. The host chooses which table an SPI goes into and relocates SPIs with MOVE_BUCKET (the
driver plans the cuckoo path); the gateware checks every step, and a MOVE writes the new bucket
and clears the old one in the same cycle, so a lookup never misses a visible SA.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import contract
from .contract import Algorithm, Error, Op, SlotState


__all__ = ["EntryLayout", "BucketLayout", "LookupResultLayout", "SaCountersLayout", "SaReadLayout",
           "SaWriteLayout", "SaTable", "spi_hash_hdl", "staged_next_states"]


FlagsLayout = data.StructLayout({
    f.name.lower(): f.width for f in contract.register("SA_FLAGS").fields
})


def _flags_view_layout():
    # SA_FLAGS as a 32-bit struct, fields at the contract's offsets (with padding between).
    fields, pos = {}, 0
    for f in sorted(contract.register("SA_FLAGS").fields, key=lambda f: f.offset):
        if f.offset > pos:
            fields[f"_pad{pos}"] = f.offset - pos
        fields[f.name.lower()] = f.width
        pos = f.offset + f.width
    fields["_pad_top"] = 32 - pos
    return data.StructLayout(fields)


#: SA_FLAGS, RB_FLAGS: the register word as a struct.
FlagsWordLayout = _flags_view_layout()


class EntryLayout(data.StructLayout):
    """A slot's public fields, as stored (everything READ_ENTRY may show)."""
    def __init__(self):
        super().__init__({
            "spi": 32,
            "flags": FlagsWordLayout,
            "seq": 64,
        })


class BucketLayout(data.StructLayout):
    def __init__(self, index_width):
        super().__init__({"valid": 1, "spi": 32, "index": index_width})


class LookupResultLayout(data.StructLayout):
    def __init__(self, params):
        super().__init__({
            "found": 1,
            "index": params.index_width,
            "generation": params.generation_width,
            "version": params.version_width,
        })


#: A slot's packet counters (``RB_CNT_*``), 32 bits each, by verdict name.
SaCountersLayout = data.StructLayout({
    verdict.name.lower(): 32 for verdict in contract.SA_VERDICT_COUNTERS
})


class SaReadLayout(data.StructLayout):
    """What the datapath reads of a slot (``sa_read`` answers): everything it needs to process a
    packet under this SA, including the key, which leaves the table only this way."""
    def __init__(self, params):
        super().__init__({
            "index": params.index_width,
            "visible": 1,
            "generation": params.generation_width,
            "version": params.version_width,
            "entry": EntryLayout(),
            "key": 256,     # SA_KEY0..7 as one big-endian integer (key byte 0 in bits 255..248)
            "salt": 32,     # SA_SALT, big-endian
            "window": params.window_max,
            "src": 128,
            "dst": 128,
            "counters": SaCountersLayout,
        })


class SaWriteLayout(data.StructLayout):
    """A datapath write-back (``sa_write``): the counters always, the sequence number and the
    replay window when ``state`` is set (an inbound ``ok``, an outbound ``ok``)."""
    def __init__(self, params):
        super().__init__({
            "index": params.index_width,
            "state": 1,
            "entry": EntryLayout(),
            "window": params.window_max,
            "counters": SaCountersLayout,
        })


def staged_next_states(m, state, dirty):
    """The slot states and ``dirty`` bits after a COMMIT and after an ABORT, for every slot at
    once (``state`` holds two bits a slot): ``(commit_state, commit_dirty, abort_state,
    abort_dirty)``. A slot a command releases becomes dirty, to be zeroized by the scan."""
    n = len(dirty)
    commit_state, commit_dirty = Signal(2 * n), Signal(n)
    abort_state, abort_dirty = Signal(2 * n), Signal(n)
    for i in range(n):
        s = state.word_select(i, 2)
        m.d.comb += [
            commit_state.word_select(i, 2).eq(
                Mux(s == SlotState.STAGED_ADD, SlotState.LIVE,
                    Mux(s == SlotState.STAGED_DEL, SlotState.FREE, s))),
            commit_dirty[i].eq(dirty[i] | (s == SlotState.STAGED_DEL)),
            abort_state.word_select(i, 2).eq(
                Mux(s == SlotState.STAGED_ADD, SlotState.FREE,
                    Mux(s == SlotState.STAGED_DEL, SlotState.LIVE, s))),
            abort_dirty[i].eq(dirty[i] | (s == SlotState.STAGED_ADD)),
        ]
    return commit_state, commit_dirty, abort_state, abort_dirty


def spi_hash_hdl(table, spi, bucket_width):
    """The contract's H3 hash in gateware: a parity tree per bucket bit."""
    return Cat(*((spi & Const(contract.HASH_MASKS[table][j], 32)).xor()
                 for j in range(bucket_width)))


class SaTable(wiring.Component):
    """SA table, SPI index and version register.

    Command side (from the register file): ``cmd_stb`` starts ``cmd_op`` with the ``sa_*``,
    ``cmd_table``, ``cmd_index`` and ``lookup_spi`` inputs; ``busy`` is high until it finishes and
    ``error`` then holds its :class:`~ipchan.hw.contract.Error` code.

    Datapath side: ``lookup_req`` (an SPI) and ``lookup_resp``; requests from here take priority
    over the host's LOOKUP command. ``sa_read`` (a slot index) answers with the slot's contents
    (:class:`SaReadLayout`); ``sa_write`` writes back what a packet changed
    (:class:`SaWriteLayout`), taken in any cycle where no command writes the table.

    ``dp_hold`` has one bit per datapath (inbound, outbound), each high from the packet's lookup
    or slot read until its write-back. The zeroizing scan after a COMMIT or ABORT waits until
    every datapath that was holding at the commit has let go once, so a packet that found its SA
    before the commit finishes under it and its write-back never lands on a released slot.
    Lookups and reads after the commit cannot find the released slots, so a datapath that holds
    again at once (the next packet) does not make the scan wait: it cannot be starved.
    """

    def __init__(self, params=contract.EngineParams()):
        if not isinstance(params, contract.EngineParams):
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        self._params = p = params
        super().__init__({
            # Commands.
            "cmd_stb": In(1),
            "cmd_op": In(4),
            "cmd_table": In(1),
            "cmd_index": In(16),
            "sa_spi": In(32),
            "sa_flags": In(FlagsWordLayout),
            "sa_seq": In(64),
            "sa_key": In(256),
            "sa_salt": In(32),
            "lookup_spi": In(32),
            "sa_src": In(128),
            "sa_dst": In(128),
            # Status and results.
            "busy": Out(1, init=1),
            "error": Out(8),
            "staged": Out(16),
            "result_found": Out(1),
            "result_index": Out(p.index_width),
            "result_gen": Out(p.generation_width),
            "result_version": Out(p.version_width),
            "version": Out(p.version_width),
            "live_count": Out(16),
            "free_count": Out(16),
            "rb_entry": Out(EntryLayout()),
            "rb_state": Out(2),
            "rb_gen": Out(p.generation_width),
            "rb_bucket": Out(BucketLayout(p.index_width)),
            "rb_src": Out(128),
            "rb_dst": Out(128),
            "rb_counters": Out(SaCountersLayout),
            "cnt_commits": Out(32),
            "cnt_installs": Out(32),
            "cnt_deletes": Out(32),
            "cnt_lookups": Out(32),
            "cnt_hits": Out(32),
            "cnt_cmd_errors": Out(32),
            # Datapath lookups.
            "lookup_req": In(stream.Signature(32)),
            "lookup_resp": Out(stream.Signature(LookupResultLayout(p))),
            "sa_read": In(stream.Signature(p.index_width)),
            "sa_data": Out(stream.Signature(SaReadLayout(p))),
            "sa_write": In(stream.Signature(SaWriteLayout(p))),
            "dp_hold": In(2),
        })

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        N, NB, IW, BW = p.n_entries, p.n_buckets, p.index_width, p.bucket_width

        # --- Storage ----------------------------------------------------------------------------
        m.submodules.entry_mem = entry_mem = Memory(shape=EntryLayout(), depth=N, init=[])
        m.submodules.key_mem = key_mem = Memory(shape=unsigned(256 + 32), depth=N, init=[])
        m.submodules.window_mem = window_mem = Memory(shape=unsigned(p.window_max), depth=N, init=[])
        m.submodules.gen_mem = gen_mem = Memory(shape=unsigned(p.generation_width), depth=N, init=[])
        m.submodules.free_mem = free_mem = Memory(shape=unsigned(IW), depth=N, init=[])
        # Built without tunnel endpoints, the memory is written only with zeros and so synthesis
        # removes it (it is kept so that every port below stays the same).
        m.submodules.ends_mem = ends_mem = Memory(
            shape=unsigned(256 if p.tunnel_endpoints else 1), depth=N, init=[])
        m.submodules.count_mem = count_mem = Memory(shape=SaCountersLayout, depth=N, init=[])
        bucket_mems = []
        for t in range(2):
            mem = Memory(shape=BucketLayout(IW), depth=NB, init=[])
            m.submodules[f"bucket{t}_mem"] = mem
            bucket_mems.append(mem)
        # Exposed for white-box tests (zeroization of keys).
        self.key_mem, self.entry_mem, self.gen_mem = key_mem, entry_mem, gen_mem
        self.bucket_mems = bucket_mems

        entry_w = entry_mem.write_port()
        entry_r = entry_mem.read_port()
        key_w = key_mem.write_port()
        window_w = window_mem.write_port()
        gen_w = gen_mem.write_port()
        gen_r = gen_mem.read_port()
        gen_lr = gen_mem.read_port()
        free_w = free_mem.write_port()
        free_r = free_mem.read_port()
        bucket_w = [mem.write_port() for mem in bucket_mems]
        bucket_r = [mem.read_port() for mem in bucket_mems]
        bucket_lr = [mem.read_port() for mem in bucket_mems]
        ends_w = ends_mem.write_port()
        ends_r = ends_mem.read_port()
        count_w = count_mem.write_port()
        count_r = count_mem.read_port()
        # The datapath's read ports (the key has no other).
        entry_dr = entry_mem.read_port()
        key_dr = key_mem.read_port()
        window_dr = window_mem.read_port()
        gen_dr = gen_mem.read_port()
        ends_dr = ends_mem.read_port()
        count_dr = count_mem.read_port()

        # Slot state in flip-flops, so a COMMIT can change every slot in one edge.
        state = Signal(2 * N)
        place = Signal(N)       # which hash table holds each inbound slot's SPI
        dirty = Signal(N)       # released, waiting for the zeroizing scan
        inbound = Signal(N)     # the slot holds an inbound SA (has a bucket)

        def slot_state(idx):
            return state.word_select(idx, 2)

        def visible(idx):
            return state.bit_select(idx * 2 + 1, 1)

        free_head = Signal(IW)
        free_tail = Signal(IW)
        free_n = Signal(range(N + 1))
        m.d.comb += [
            self.free_count.eq(free_n),
            free_r.addr.eq(free_head),
        ]

        live_n = Signal(range(N + 1))
        m.d.comb += self.live_count.eq(live_n)
        # Visible slots are counted where COMMIT and ABORT change them.

        error = Signal(8)
        m.d.comb += self.error.eq(error)

        staged = Signal(16)
        m.d.comb += self.staged.eq(staged)

        # --- Lookup unit ------------------------------------------------------------------------
        # One request at a time; the datapath's port first, then the host's LOOKUP.
        lk_spi = Signal(32)
        lk_host = Signal()          # the request in flight is the host's
        host_lk_pending = Signal()
        lk_match = Signal(2)
        lk_index = Signal(IW)
        lk_found = Signal()
        lk_version = Signal(p.version_width)
        host_lk_done = Signal()     # pulses when the host's lookup has written RESULT
        for t in range(2):
            m.d.comb += bucket_lr[t].addr.eq(spi_hash_hdl(t, lk_spi, BW))
        m.d.comb += gen_lr.addr.eq(lk_index)

        with m.FSM(name="lookup"):
            with m.State("IDLE"):
                m.d.comb += self.lookup_req.ready.eq(1)
                with m.If(self.lookup_req.valid):
                    m.d.sync += [lk_spi.eq(self.lookup_req.payload), lk_host.eq(0)]
                    m.next = "READ"
                with m.Elif(host_lk_pending):
                    m.d.sync += [lk_spi.eq(self.lookup_spi), lk_host.eq(1),
                                 host_lk_pending.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                # Bucket addresses are driven from lk_spi this cycle; data arrives next cycle.
                m.next = "MATCH"
            with m.State("MATCH"):
                # The visibility check and the version are sampled in the same cycle: the pair
                # always describes one committed table state.
                for t in range(2):
                    b = bucket_lr[t].data
                    m.d.comb += lk_match[t].eq(b.valid & (b.spi == lk_spi) & visible(b.index))
                m.d.sync += [
                    lk_found.eq(lk_match.any()),
                    lk_index.eq(Mux(lk_match[0], bucket_lr[0].data.index, bucket_lr[1].data.index)),
                    lk_version.eq(self.version),
                    self.cnt_lookups.eq(self.cnt_lookups + 1),
                ]
                with m.If(lk_match.any()):
                    m.d.sync += self.cnt_hits.eq(self.cnt_hits + 1)
                m.next = "GEN"
            with m.State("GEN"):
                # gen_lr.addr follows lk_index; its data is valid in the next state.
                m.next = "RESULT"
            with m.State("RESULT"):
                gen_value = Mux(lk_found, gen_lr.data, 0)
                index_value = Mux(lk_found, lk_index, 0)
                with m.If(lk_host):
                    m.d.sync += [
                        host_lk_done.eq(1),
                        self.result_found.eq(lk_found),
                        self.result_index.eq(index_value),
                        self.result_gen.eq(gen_value),
                        self.result_version.eq(lk_version),
                    ]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [
                        self.lookup_resp.valid.eq(1),
                        self.lookup_resp.payload.found.eq(lk_found),
                        self.lookup_resp.payload.index.eq(index_value),
                        self.lookup_resp.payload.generation.eq(gen_value),
                        self.lookup_resp.payload.version.eq(lk_version),
                    ]
                    with m.If(self.lookup_resp.ready):
                        m.next = "IDLE"
        with m.If(host_lk_done):
            m.d.sync += host_lk_done.eq(0)

        # --- Datapath slot reads and write-backs --------------------------------------------------
        rd_index = Signal(IW)
        for port in (entry_dr, key_dr, window_dr, gen_dr, ends_dr, count_dr):
            m.d.comb += port.addr.eq(rd_index)
        with m.FSM(name="sa_read"):
            with m.State("IDLE"):
                m.d.comb += self.sa_read.ready.eq(1)
                with m.If(self.sa_read.valid):
                    m.d.sync += rd_index.eq(self.sa_read.payload)
                    m.next = "READ"
            with m.State("READ"):
                m.next = "DATA"
            with m.State("DATA"):
                d = self.sa_data.payload
                m.d.comb += [
                    self.sa_data.valid.eq(1),
                    d.index.eq(rd_index),
                    d.visible.eq(visible(rd_index)),
                    d.generation.eq(gen_dr.data),
                    d.version.eq(self.version),
                    d.entry.eq(entry_dr.data),
                    d.salt.eq(key_dr.data[:32]),
                    d.key.eq(key_dr.data[32:]),
                    d.window.eq(window_dr.data),
                    d.src.eq(ends_dr.data[128:] if p.tunnel_endpoints else 0),
                    d.dst.eq(ends_dr.data[:128] if p.tunnel_endpoints else 0),
                    d.counters.eq(count_dr.data),
                ]
                with m.If(self.sa_data.ready):
                    m.next = "IDLE"

        # A write-back goes through in any cycle where the command sequencer writes none of these
        # memories (its writes below override these defaults, and sa_write.ready says so).
        wb = self.sa_write.payload
        wb_go = Signal()
        m.d.comb += [
            wb_go.eq(self.sa_write.valid & self.sa_write.ready),
            count_w.addr.eq(wb.index), count_w.data.eq(wb.counters), count_w.en.eq(wb_go),
            entry_w.addr.eq(wb.index), entry_w.data.eq(wb.entry), entry_w.en.eq(wb_go & wb.state),
            window_w.addr.eq(wb.index), window_w.data.eq(wb.window),
            window_w.en.eq(wb_go & wb.state),
        ]

        # --- Command sequencer ------------------------------------------------------------------
        op = Signal(4)
        arg_table = Signal()
        arg_index = Signal(16)
        cur = Signal(IW)                 # slot being installed, or scanned
        scan_i = Signal(range(max(N, NB) + 1))
        mv_src = Signal(BucketLayout(IW))
        mv_dst_addr = Signal(BW)
        drain = Signal(2)                # datapaths that held an SA at the commit and still do
        flags = self.sa_flags

        def fail(code):
            m.d.sync += [error.eq(code), self.cnt_cmd_errors.eq(self.cnt_cmd_errors + 1)]

        def done():
            m.d.sync += self.busy.eq(0)
            m.next = "IDLE"

        for t in range(2):
            m.d.comb += bucket_r[t].addr.eq(Mux(op == Op.MOVE_BUCKET,
                                                Mux(arg_table == t, arg_index, mv_dst_addr),
                                                Mux(op == Op.READ_BUCKET, arg_index,
                                                    spi_hash_hdl(t, self.sa_spi, BW))))
        entry_raddr = Signal(IW)
        m.d.comb += [
            entry_raddr.eq(cur),
            entry_r.addr.eq(Mux(op == Op.READ_ENTRY, arg_index, entry_raddr)),
            gen_r.addr.eq(Mux(op == Op.READ_ENTRY, arg_index, free_r.data)),
            ends_r.addr.eq(arg_index),
            count_r.addr.eq(arg_index),
        ]

        commit_state, commit_dirty, abort_state, abort_dirty = staged_next_states(m, state, dirty)
        # Staged installs and deletions still pending, so COMMIT can update the live count
        # without counting N slots.
        n_add = Signal(range(N + 1))
        n_del = Signal(range(N + 1))

        with m.FSM(name="cmd", init="INIT") as cmd_fsm:
            with m.State("INIT"):
                # After reset: zero every memory and fill the free list with 0..N-1. Block RAM
                # keeps its contents across a reset, so this is also what zeroizes keys then.
                m.d.comb += [
                    entry_w.addr.eq(scan_i), entry_w.data.eq(0), entry_w.en.eq(scan_i < N),
                    key_w.addr.eq(scan_i), key_w.data.eq(0), key_w.en.eq(scan_i < N),
                    window_w.addr.eq(scan_i), window_w.data.eq(0), window_w.en.eq(scan_i < N),
                    gen_w.addr.eq(scan_i), gen_w.data.eq(0), gen_w.en.eq(scan_i < N),
                    free_w.addr.eq(scan_i), free_w.data.eq(scan_i), free_w.en.eq(scan_i < N),
                    ends_w.addr.eq(scan_i), ends_w.data.eq(0), ends_w.en.eq(scan_i < N),
                    count_w.addr.eq(scan_i), count_w.data.eq(0), count_w.en.eq(scan_i < N),
                ]
                for t in range(2):
                    m.d.comb += [bucket_w[t].addr.eq(scan_i), bucket_w[t].data.eq(0),
                                 bucket_w[t].en.eq(1)]
                m.d.sync += scan_i.eq(scan_i + 1)
                with m.If(scan_i == NB - 1):
                    m.d.sync += [free_head.eq(0), free_tail.eq(0), free_n.eq(N), scan_i.eq(0)]
                    done()

            with m.State("IDLE"):
                with m.If(self.cmd_stb):
                    m.d.sync += [op.eq(self.cmd_op), arg_table.eq(self.cmd_table),
                                 arg_index.eq(self.cmd_index), error.eq(Error.NONE),
                                 self.busy.eq(1)]
                    with m.Switch(self.cmd_op):
                        with m.Case(Op.NOP):
                            m.d.sync += self.busy.eq(0)
                        with m.Case(Op.INSTALL):
                            alg_ok = ((flags.alg >= min(Algorithm)) & (flags.alg <= max(Algorithm)))
                            with m.If(self.sa_spi <= contract.SPI_RESERVED_MAX):
                                fail(Error.BAD_SPI)
                                m.d.sync += self.busy.eq(0)
                            with m.Elif(~alg_ok):
                                fail(Error.BAD_ALGORITHM)
                                m.d.sync += self.busy.eq(0)
                            with m.Elif(flags.window > p.window_max):
                                fail(Error.BAD_WINDOW)
                                m.d.sync += self.busy.eq(0)
                            with m.Elif(free_n == 0):
                                fail(Error.TABLE_FULL)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.next = "INSTALL_ADDR"
                        with m.Case(Op.DELETE):
                            with m.If(self.cmd_index >= N):
                                fail(Error.BAD_INDEX)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.next = "DELETE"
                        with m.Case(Op.COMMIT):
                            with m.If(staged == 0):
                                fail(Error.NOTHING_STAGED)
                                m.d.sync += self.busy.eq(0)
                            with m.Elif(self.version == p.version_max):
                                fail(Error.VERSION_EXHAUSTED)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                # The one edge where the table and its version move together.
                                m.d.sync += [
                                    state.eq(commit_state),
                                    dirty.eq(commit_dirty),
                                    self.version.eq(self.version + 1),
                                    live_n.eq(live_n + n_add - n_del),
                                    n_add.eq(0), n_del.eq(0),
                                    staged.eq(0),
                                    self.cnt_commits.eq(self.cnt_commits + 1),
                                    scan_i.eq(0),
                                    drain.eq(0b11),
                                ]
                                m.next = "SCAN"
                        with m.Case(Op.ABORT):
                            with m.If(staged == 0):
                                fail(Error.NOTHING_STAGED)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.d.sync += [state.eq(abort_state), dirty.eq(abort_dirty),
                                             n_add.eq(0), n_del.eq(0),
                                             staged.eq(0), scan_i.eq(0), drain.eq(0b11)]
                                m.next = "SCAN"
                        with m.Case(Op.BUMP_VERSION):
                            with m.If(self.version == p.version_max):
                                fail(Error.VERSION_EXHAUSTED)
                            with m.Else():
                                m.d.sync += self.version.eq(self.version + 1)
                            m.d.sync += self.busy.eq(0)
                        with m.Case(Op.LOOKUP):
                            m.d.sync += host_lk_pending.eq(1)
                            m.next = "LOOKUP_WAIT"
                        with m.Case(Op.READ_ENTRY):
                            with m.If(self.cmd_index >= N):
                                fail(Error.BAD_INDEX)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.next = "READ_WAIT"
                        with m.Case(Op.READ_BUCKET):
                            with m.If(self.cmd_index >= NB):
                                fail(Error.BAD_INDEX)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.next = "READ_WAIT"
                        with m.Case(Op.MOVE_BUCKET):
                            with m.If(self.cmd_index >= NB):
                                fail(Error.BAD_INDEX)
                                m.d.sync += self.busy.eq(0)
                            with m.Else():
                                m.next = "MOVE_ADDR"
                        with m.Default():
                            fail(Error.BAD_OP)
                            m.d.sync += self.busy.eq(0)

            with m.State("INSTALL_ADDR"):
                # The read ports are addressed from the latched command from this cycle on.
                m.next = "INSTALL_READ"

            with m.State("INSTALL_READ"):
                # Bucket reads (addressed by the SPI's hashes) and the free-list head are valid
                # now; the slot's old generation arrives next cycle.
                with m.If((flags.dir == contract.Direction.INBOUND) &
                          Mux(flags.place, bucket_r[1].data.valid, bucket_r[0].data.valid)):
                    fail(Error.BUCKET_OCCUPIED)
                    done()
                with m.Else():
                    m.d.sync += cur.eq(free_r.data)
                    m.next = "INSTALL_WRITE"

            with m.State("INSTALL_WRITE"):
                new_gen = Signal(p.generation_width)
                m.d.comb += new_gen.eq(gen_r.data + 1)
                m.d.comb += [
                    entry_w.addr.eq(cur), entry_w.en.eq(1),
                    entry_w.data.spi.eq(self.sa_spi),
                    entry_w.data.flags.eq(flags),
                    entry_w.data.seq.eq(self.sa_seq),
                    key_w.addr.eq(cur), key_w.en.eq(1),
                    key_w.data.eq(Cat(self.sa_salt, self.sa_key)),
                    window_w.addr.eq(cur), window_w.en.eq(1), window_w.data.eq(0),
                    gen_w.addr.eq(cur), gen_w.en.eq(1), gen_w.data.eq(new_gen),
                    ends_w.addr.eq(cur), ends_w.en.eq(1),
                    ends_w.data.eq(Cat(self.sa_dst, self.sa_src) if p.tunnel_endpoints else 0),
                    count_w.addr.eq(cur), count_w.en.eq(1), count_w.data.eq(0),
                ]
                with m.If(flags.dir == contract.Direction.INBOUND):
                    for t in range(2):
                        m.d.comb += [
                            bucket_w[t].addr.eq(spi_hash_hdl(t, self.sa_spi, BW)),
                            bucket_w[t].data.valid.eq(1),
                            bucket_w[t].data.spi.eq(self.sa_spi),
                            bucket_w[t].data.index.eq(cur),
                            bucket_w[t].en.eq(flags.place == t),
                        ]
                m.d.sync += [
                    slot_state(cur).eq(SlotState.STAGED_ADD),
                    place.bit_select(cur, 1).eq(flags.place),
                    inbound.bit_select(cur, 1).eq(flags.dir == contract.Direction.INBOUND),
                    free_head.eq(free_head + 1),
                    free_n.eq(free_n - 1),
                    n_add.eq(n_add + 1),
                    staged.eq(staged + 1),
                    self.result_found.eq(1),
                    self.result_index.eq(cur),
                    self.result_gen.eq(new_gen),
                    self.cnt_installs.eq(self.cnt_installs + 1),
                ]
                done()

            with m.State("DELETE"):
                idx = arg_index[:IW]
                with m.Switch(slot_state(idx)):
                    with m.Case(SlotState.LIVE):
                        m.d.sync += [slot_state(idx).eq(SlotState.STAGED_DEL),
                                     n_del.eq(n_del + 1),
                                     staged.eq(staged + 1),
                                     self.cnt_deletes.eq(self.cnt_deletes + 1)]
                    with m.Case(SlotState.STAGED_ADD):
                        # Cancels an install that was never visible.
                        m.d.sync += [slot_state(idx).eq(SlotState.FREE),
                                     dirty.bit_select(idx, 1).eq(1),
                                     n_add.eq(n_add - 1),
                                     staged.eq(staged + 1),
                                     self.cnt_deletes.eq(self.cnt_deletes + 1)]
                    with m.Default():
                        fail(Error.NO_SUCH_SA)
                done()

            with m.State("SCAN"):
                # Visit every slot; released ones are zeroized and returned to the free list,
                # once no packet in the datapath holds an SA it found before the commit.
                m.d.comb += entry_raddr.eq(scan_i)  # so SCAN_CLEAR sees this slot's entry
                m.d.sync += drain.eq(drain & self.dp_hold)
                with m.If((drain & self.dp_hold).any()):
                    pass
                with m.Elif(scan_i == N):
                    done()
                with m.Elif(dirty.bit_select(scan_i[:IW], 1)):
                    m.d.sync += cur.eq(scan_i)
                    m.next = "SCAN_CLEAR"
                with m.Else():
                    m.d.sync += scan_i.eq(scan_i + 1)

            with m.State("SCAN_CLEAR"):
                # entry_r.data is this slot's entry (read with cur = scan_i last cycle).
                old = entry_r.data
                with m.If(inbound.bit_select(cur, 1)):
                    for t in range(2):
                        m.d.comb += [
                            bucket_w[t].addr.eq(spi_hash_hdl(t, old.spi, BW)),
                            bucket_w[t].data.eq(0),
                            bucket_w[t].en.eq(place.bit_select(cur, 1) == t),
                        ]
                m.d.comb += [
                    entry_w.addr.eq(cur), entry_w.data.eq(0), entry_w.en.eq(1),
                    key_w.addr.eq(cur), key_w.data.eq(0), key_w.en.eq(1),
                    window_w.addr.eq(cur), window_w.data.eq(0), window_w.en.eq(1),
                    free_w.addr.eq(free_tail), free_w.data.eq(cur), free_w.en.eq(1),
                    ends_w.addr.eq(cur), ends_w.data.eq(0), ends_w.en.eq(1),
                    count_w.addr.eq(cur), count_w.data.eq(0), count_w.en.eq(1),
                ]
                m.d.sync += [
                    dirty.bit_select(cur, 1).eq(0),
                    inbound.bit_select(cur, 1).eq(0),
                    place.bit_select(cur, 1).eq(0),
                    free_tail.eq(free_tail + 1),
                    free_n.eq(free_n + 1),
                    scan_i.eq(scan_i + 1),
                ]
                m.next = "SCAN"

            with m.State("LOOKUP_WAIT"):
                with m.If(host_lk_done):
                    done()

            with m.State("READ_WAIT"):
                m.next = "READ_DONE"

            with m.State("READ_DONE"):
                with m.If(op == Op.READ_ENTRY):
                    m.d.sync += [
                        self.rb_entry.eq(entry_r.data),
                        self.rb_entry.flags.place.eq(place.bit_select(arg_index[:IW], 1)),
                        self.rb_state.eq(slot_state(arg_index[:IW])),
                        self.rb_gen.eq(gen_r.data),
                        self.rb_src.eq(ends_r.data[128:] if p.tunnel_endpoints else 0),
                        self.rb_dst.eq(ends_r.data[:128] if p.tunnel_endpoints else 0),
                        self.rb_counters.eq(count_r.data),
                    ]
                with m.Else():
                    m.d.sync += self.rb_bucket.eq(
                        Mux(arg_table, bucket_r[1].data.as_value(), bucket_r[0].data.as_value()))
                done()

            with m.State("MOVE_ADDR"):
                m.next = "MOVE_READ_SRC"

            with m.State("MOVE_READ_SRC"):
                # bucket_r[arg_table] holds the source bucket now.
                src = Mux(arg_table, bucket_r[1].data.as_value(), bucket_r[0].data.as_value())
                src_view = BucketLayout(IW)(src)
                with m.If(~src_view.valid):
                    fail(Error.BUCKET_EMPTY)
                    done()
                with m.Else():
                    m.d.sync += [
                        mv_src.eq(src_view),
                        mv_dst_addr.eq(Mux(arg_table, spi_hash_hdl(0, src_view.spi, BW),
                                           spi_hash_hdl(1, src_view.spi, BW))),
                    ]
                    m.next = "MOVE_READ_DST"

            with m.State("MOVE_READ_DST"):
                # The other table's read port now addresses mv_dst_addr; data next cycle.
                m.next = "MOVE_CHECK"

            with m.State("MOVE_CHECK"):
                dst = Mux(arg_table, bucket_r[0].data.as_value(), bucket_r[1].data.as_value())
                with m.If(BucketLayout(IW)(dst).valid):
                    fail(Error.BUCKET_OCCUPIED)
                with m.Else():
                    # Both buckets change in this one edge: a lookup sees the SPI in exactly one.
                    for t in range(2):
                        is_dst = Const(t) != arg_table
                        m.d.comb += [
                            bucket_w[t].en.eq(1),
                            bucket_w[t].addr.eq(Mux(is_dst, mv_dst_addr, arg_index)),
                            bucket_w[t].data.eq(Mux(is_dst, mv_src.as_value(), 0)),
                        ]
                    m.d.sync += place.bit_select(mv_src.index, 1).eq(~arg_table)
                done()

        # The write-back waits while a command writes the table itself.
        m.d.comb += self.sa_write.ready.eq(~(cmd_fsm.ongoing("INIT") |
                                             cmd_fsm.ongoing("INSTALL_WRITE") |
                                             cmd_fsm.ongoing("SCAN_CLEAR")))
        return m
