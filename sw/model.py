"""The golden model: a pure-Python, bit-accurate model of the engine's registers and SA table.

It answers register reads and writes exactly as the gateware does once a command has finished
(it is cycle-independent: ``STATUS.BUSY`` always reads 0). The driver reaches it through
:class:`ipchan.sw.transport.ModelTransport`, the same way it reaches a simulator or a board, and the
cocotb testbenches use it as their scoreboard.

Everything here follows :mod:`ipchan.hw.contract`; where the gateware has a choice (free-list
order, the scan that zeroizes released slots in index order, what a refused command leaves
behind) the model makes the same one.
"""

from collections import deque
from dataclasses import dataclass

from ipchan.hw import contract
from ipchan.hw.contract import Access, Algorithm, Direction, EngineParams, Error, Op, SlotState

from .regs import ADDR, FIELD
from .transport import BusError


__all__ = ["EngineModel", "Bucket"]


@dataclass
class Bucket:
    valid: int = 0
    spi: int = 0
    index: int = 0


class _Slot:
    """One slot. ``src`` and ``dst`` are the tunnel endpoints as 128-bit integers (an IPv4
    address in the low 32 bits; ``SA_FLAGS.OUTER6`` in ``flags`` says which); ``counters`` holds
    the slot's packets by :class:`~ipchan.hw.contract.Verdict` (the ``RB_CNT_*`` ones)."""
    __slots__ = ("spi", "flags", "seq", "key", "window", "gen", "state", "place", "dirty",
                 "inbound", "src", "dst", "counters")

    def __init__(self):
        self.spi = self.flags = self.seq = self.key = self.window = self.gen = 0
        self.src = self.dst = 0
        self.counters = dict.fromkeys(contract.SA_VERDICT_COUNTERS, 0)
        self.state = SlotState.FREE
        self.place = self.dirty = self.inbound = 0

    def zeroize(self):
        self.spi = self.flags = self.seq = self.key = self.window = 0
        self.src = self.dst = 0
        self.counters = dict.fromkeys(contract.SA_VERDICT_COUNTERS, 0)

    def count(self, verdict):
        """Count one packet of this slot's SA with ``verdict`` (32 bits, wrapping)."""
        self.counters[verdict] = (self.counters[verdict] + 1) & 0xFFFFFFFF


class EngineModel:
    """Register-level model of one engine built with ``params``."""

    def __init__(self, params=EngineParams()):
        if not isinstance(params, EngineParams):
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        self.params = params
        self.reset()

    # --- Bus ----------------------------------------------------------------------------------

    def reset(self):
        p = self.params
        self._rw = {r.name: r.reset for r in contract.REGISTERS if r.access != Access.RO}
        self._shadow = {r.snapshot_hi: 0 for r in contract.REGISTERS if r.snapshot_hi}
        self.slots = [_Slot() for _ in range(p.n_entries)]
        self.buckets = [[Bucket() for _ in range(p.n_buckets)] for _ in range(2)]
        self.free = deque(range(p.n_entries))
        self.version = 0
        self.staged = 0
        self.n_add = self.n_del = 0
        self.live = 0
        self.error = Error.NONE
        self.result = {"found": 0, "index": 0, "gen": 0, "version": 0}
        self.rb = {"spi": 0, "flags": 0, "seq": 0, "state": 0, "gen": 0, "src": 0, "dst": 0,
                   "counters": dict.fromkeys(contract.SA_VERDICT_COUNTERS, 0)}
        self.rb_bucket = Bucket()
        self.counters = {name: 0 for name in contract.COUNTERS}

    def write(self, addr, value, strb=0xF):
        reg = self._reg_at(addr)
        if reg.access == Access.RO:
            return
        mask = 0
        for lane in range(4):
            if strb >> lane & 1:
                mask |= 0xFF << (8 * lane)
        self._rw[reg.name] = (self._rw[reg.name] & ~mask) | (value & mask)
        if reg.name == "CMD":
            self._command(self._rw["CMD"])

    def read(self, addr):
        reg = self._reg_at(addr)
        if reg.access == Access.WO:
            value = 0
        elif reg.name in self._shadow:
            value = self._shadow[reg.name]
        else:
            value = self._value(reg.name)
        if reg.snapshot_hi:
            self._shadow[reg.snapshot_hi] = self._value(reg.snapshot_hi)
        return value & 0xFFFFFFFF

    def _reg_at(self, addr):
        reg = _BY_WORD.get((addr % (1 << contract.ADDR_WIDTH)) >> 2)
        if reg is None:
            raise BusError(addr, "DECERR")
        return reg

    def _value(self, name):
        p = self.params
        if name in self._rw:
            return self._rw[name]
        f = FIELD
        if name == "ID":
            return contract.ID_MAGIC
        if name == "CONTRACT":
            return contract.register("CONTRACT").reset
        if name == "CONFIG0":
            return (f.CONFIG0.N_ENTRIES.put(p.n_entries) |
                    f.CONFIG0.GEN_WIDTH.put(p.generation_width) |
                    f.CONFIG0.VERSION_WIDTH.put(p.version_width))
        if name == "CONFIG1":
            return f.CONFIG1.WINDOW_MAX.put(p.window_max) | f.CONFIG1.N_BUCKETS.put(p.n_buckets)
        if name == "CONFIG2":
            return (f.CONFIG2.MAX_PACKET.put(p.max_packet) |
                    f.CONFIG2.MAX_EXT_HEADERS.put(contract.IPV6_MAX_EXT_HEADERS) |
                    f.CONFIG2.ENDPOINTS.put(p.tunnel_endpoints))
        if name == "STATUS":
            return f.STATUS.ERROR.put(self.error) | f.STATUS.STAGED.put(self.staged)
        if name == "RESULT":
            return f.RESULT.FOUND.put(self.result["found"]) | f.RESULT.INDEX.put(self.result["index"])
        if name == "RESULT_GEN":
            return self.result["gen"]
        if name == "VERSION_LO":
            return self.version & 0xFFFFFFFF
        if name == "VERSION_HI":
            return self.version >> 32
        if name == "LIVE":
            return self.live
        if name == "FREE":
            return len(self.free)
        if name == "RB_SPI":
            return self.rb["spi"]
        if name == "RB_FLAGS":
            return self.rb["flags"]
        if name == "RB_SEQ_LO":
            return self.rb["seq"] & 0xFFFFFFFF
        if name == "RB_SEQ_HI":
            return self.rb["seq"] >> 32
        if name == "RB_STATE":
            return f.RB_STATE.STATE.put(self.rb["state"]) | f.RB_STATE.GENERATION.put(self.rb["gen"])
        if name in _RB_COUNTER:
            return self.rb["counters"][_RB_COUNTER[name]]
        if name.startswith(("RB_SRC", "RB_DST")):
            word = int(name[-1])
            return (self.rb[name[3:6].lower()] >> (32 * (3 - word))) & 0xFFFFFFFF
        if name == "RB_BUCKET":
            return (f.RB_BUCKET.VALID.put(self.rb_bucket.valid) |
                    f.RB_BUCKET.INDEX.put(self.rb_bucket.index))
        if name == "RB_BUCKET_SPI":
            return self.rb_bucket.spi
        if name == "LOOKUP_VERSION_LO":
            return self.result["version"] & 0xFFFFFFFF
        if name == "LOOKUP_VERSION_HI":
            return self.result["version"] >> 32
        if name in self.counters:
            return self.counters[name]
        raise AssertionError(f"register {name} has no model")  # the contract grew: model it

    # --- Commands -----------------------------------------------------------------------------

    def _fail(self, code):
        self.error = code
        self.counters["CNT_CMD_ERRORS"] = (self.counters["CNT_CMD_ERRORS"] + 1) & 0xFFFFFFFF

    def _count(self, name):
        self.counters[name] = (self.counters[name] + 1) & 0xFFFFFFFF

    def _command(self, word):
        p = self.params
        op, table, index = FIELD.CMD.OP.get(word), FIELD.CMD.TABLE.get(word), FIELD.CMD.INDEX.get(word)
        self.error = Error.NONE
        if op == Op.NOP:
            return
        if op == Op.INSTALL:
            return self._install()
        if op == Op.DELETE:
            if index >= p.n_entries:
                return self._fail(Error.BAD_INDEX)
            return self._delete(index)
        if op == Op.COMMIT:
            if self.staged == 0:
                return self._fail(Error.NOTHING_STAGED)
            if self.version == p.version_max:
                return self._fail(Error.VERSION_EXHAUSTED)
            for slot in self.slots:
                if slot.state == SlotState.STAGED_ADD:
                    slot.state = SlotState.LIVE
                elif slot.state == SlotState.STAGED_DEL:
                    slot.state = SlotState.FREE
                    slot.dirty = 1
            self.version += 1
            self.live += self.n_add - self.n_del
            self.n_add = self.n_del = self.staged = 0
            self._count("CNT_COMMITS")
            return self._scan()
        if op == Op.ABORT:
            if self.staged == 0:
                return self._fail(Error.NOTHING_STAGED)
            for slot in self.slots:
                if slot.state == SlotState.STAGED_ADD:
                    slot.state = SlotState.FREE
                    slot.dirty = 1
                elif slot.state == SlotState.STAGED_DEL:
                    slot.state = SlotState.LIVE
            self.n_add = self.n_del = self.staged = 0
            return self._scan()
        if op == Op.BUMP_VERSION:
            if self.version == p.version_max:
                return self._fail(Error.VERSION_EXHAUSTED)
            self.version += 1
            return
        if op == Op.LOOKUP:
            found, idx, gen = self.lookup(self._rw["LOOKUP_SPI"])
            self.result = {"found": int(found), "index": idx, "gen": gen, "version": self.version}
            return
        if op == Op.READ_ENTRY:
            if index >= p.n_entries:
                return self._fail(Error.BAD_INDEX)
            s = self.slots[index]
            flags = (s.flags & ~FIELD.SA_FLAGS.PLACE.mask) | FIELD.SA_FLAGS.PLACE.put(s.place)
            self.rb = {"spi": s.spi, "flags": flags, "seq": s.seq, "state": int(s.state),
                       "gen": s.gen, "src": s.src, "dst": s.dst, "counters": dict(s.counters)}
            return
        if op == Op.READ_BUCKET:
            if index >= p.n_buckets:
                return self._fail(Error.BAD_INDEX)
            b = self.buckets[table][index]
            self.rb_bucket = Bucket(b.valid, b.spi, b.index)
            return
        if op == Op.MOVE_BUCKET:
            if index >= p.n_buckets:
                return self._fail(Error.BAD_INDEX)
            src = self.buckets[table][index]
            if not src.valid:
                return self._fail(Error.BUCKET_EMPTY)
            dst_table = 1 - table
            dst_addr = contract.spi_hash(dst_table, src.spi, p.bucket_width)
            if self.buckets[dst_table][dst_addr].valid:
                return self._fail(Error.BUCKET_OCCUPIED)
            self.buckets[dst_table][dst_addr] = Bucket(1, src.spi, src.index)
            self.buckets[table][index] = Bucket()
            self.slots[src.index].place = dst_table
            return
        return self._fail(Error.BAD_OP)

    def _install(self):
        p = self.params
        spi, flags = self._rw["SA_SPI"], self._rw["SA_FLAGS"]
        f = FIELD.SA_FLAGS
        if spi <= contract.SPI_RESERVED_MAX:
            return self._fail(Error.BAD_SPI)
        if f.ALG.get(flags) not in {int(a) for a in Algorithm}:
            return self._fail(Error.BAD_ALGORITHM)
        if f.WINDOW.get(flags) > p.window_max:
            return self._fail(Error.BAD_WINDOW)
        if not self.free:
            return self._fail(Error.TABLE_FULL)
        inbound = f.DIR.get(flags) == Direction.INBOUND
        place = f.PLACE.get(flags)
        bucket_addr = contract.spi_hash(place, spi, p.bucket_width)
        if inbound and self.buckets[place][bucket_addr].valid:
            return self._fail(Error.BUCKET_OCCUPIED)
        idx = self.free.popleft()
        s = self.slots[idx]
        s.spi, s.flags = spi, flags
        s.seq = (self._rw["SA_SEQ_HI"] << 32) | self._rw["SA_SEQ_LO"]
        s.key = (sum(self._rw[f"SA_KEY{i}"] << (32 * (7 - i)) for i in range(8)) << 32) \
            | self._rw["SA_SALT"]
        s.window = 0
        s.src, s.dst = (sum(self._rw[f"SA_{end}{i}"] << (32 * (3 - i)) for i in range(4))
                        if p.tunnel_endpoints else 0 for end in ("SRC", "DST"))
        s.counters = dict.fromkeys(contract.SA_VERDICT_COUNTERS, 0)
        s.gen = (s.gen + 1) & p.generation_mask
        s.state = SlotState.STAGED_ADD
        s.place = place
        s.inbound = int(inbound)
        if inbound:
            self.buckets[place][bucket_addr] = Bucket(1, spi, idx)
        self.n_add += 1
        self.staged += 1
        self.result = dict(self.result, found=1, index=idx, gen=s.gen)
        self._count("CNT_INSTALLS")

    def _delete(self, idx):
        s = self.slots[idx]
        if s.state == SlotState.LIVE:
            s.state = SlotState.STAGED_DEL
            self.n_del += 1
        elif s.state == SlotState.STAGED_ADD:
            s.state = SlotState.FREE
            s.dirty = 1
            self.n_add -= 1
        else:
            return self._fail(Error.NO_SUCH_SA)
        self.staged += 1
        self._count("CNT_DELETES")

    def _scan(self):
        # As the gateware's SCAN: released slots in index order, zeroized, bucket cleared, freed.
        p = self.params
        for idx, s in enumerate(self.slots):
            if not s.dirty:
                continue
            if s.inbound:
                self.buckets[s.place][contract.spi_hash(s.place, s.spi, p.bucket_width)] = Bucket()
            s.zeroize()
            s.dirty = s.inbound = s.place = 0
            self.free.append(idx)

    # --- The datapath's view -----------------------------------------------------------------

    def lookup(self, spi):
        """What the lookup port answers for ``spi`` now: (found, index, generation)."""
        self._count("CNT_LOOKUPS")
        for t in range(2):
            b = self.buckets[t][contract.spi_hash(t, spi, self.params.bucket_width)]
            if b.valid and b.spi == spi and self.slots[b.index].state in (SlotState.LIVE,
                                                                         SlotState.STAGED_DEL):
                self._count("CNT_HITS")
                return True, b.index, self.slots[b.index].gen
        return False, 0, 0

    def key_of(self, idx):
        """The stored key and salt of slot ``idx`` (for white-box tests of zeroization only)."""
        return self.slots[idx].key


    def count(self, direction, verdict, slot=None):
        """Count one packet of the datapath: globally by direction and verdict, and, when its SA
        was identified (``slot``, an index), in that slot's counters too."""
        self._count(contract.VERDICT_COUNTERS[(direction, verdict)])
        if slot is not None:
            self.slots[slot].count(verdict)


_BY_WORD = {r.addr >> 2: r for r in contract.REGISTERS}
_RB_COUNTER = {name: verdict for verdict, name in contract.SA_VERDICT_COUNTERS.items()}
