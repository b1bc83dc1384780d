"""The engine's host driver.

:class:`Engine` is the whole host API of the SA table: install, delete, commit, abort, read the
version, look up, read entries and counters. It talks to the engine only through a transport
(:mod:`ipchan.sw.transport`), so the same code runs on the golden model, in a cocotb testbench,
against a Verilator process and on a board.

The driver also plans where an inbound SPI goes in the engine's two hash tables (cuckoo hashing):
it keeps a mirror of the buckets, finds a relocation path when both of an SPI's buckets are taken,
and issues the MOVE_BUCKET commands that the gateware checks and applies.
"""

import enum
import ipaddress
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

from ipchan.hw import contract
from ipchan.hw.contract import (Algorithm, Direction, EngineParams, Error, KeySize, Mode, Op,
                                SlotState)

from .regs import ADDR, FIELD
from .transport import Transport


__all__ = [
    "SaConfig", "SaRef", "LookupResult", "EntryInfo", "Engine",
    "EngineError", "TableFullError", "HashFullError", "NoSuchSaError", "NothingStagedError",
    "VersionExhaustedError",
]


# --- Errors ---------------------------------------------------------------------------------------

class EngineError(RuntimeError):
    """The engine refused a command. ``code`` is the :class:`~ipchan.hw.contract.Error`."""

    def __init__(self, code, message):
        self.code = Error(code)
        super().__init__(message)


class TableFullError(EngineError):
    pass


class HashFullError(EngineError):
    pass


class NoSuchSaError(EngineError):
    pass


class NothingStagedError(EngineError):
    pass


class VersionExhaustedError(EngineError):
    pass


_ERROR_CLASSES = {
    Error.TABLE_FULL: TableFullError,
    Error.BUCKET_OCCUPIED: HashFullError,
    Error.NO_SUCH_SA: NoSuchSaError,
    Error.NOTHING_STAGED: NothingStagedError,
    Error.VERSION_EXHAUSTED: VersionExhaustedError,
}


# --- Values ---------------------------------------------------------------------------------------

def _enum_arg(enum_cls, value, what):
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        try:
            return enum_cls[value.upper()]
        except KeyError:
            pass
    names = ", ".join(repr(e.name.lower()) for e in enum_cls)
    raise ValueError(f"{what} must be one of {names}, not {value!r}")


def _int_arg(value, what, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be from {lo} to {hi}, not {value!r}")
    return value


def check_spi(spi):
    """Return ``spi`` if it may name an SA, else raise with the reason."""
    if not isinstance(spi, int) or isinstance(spi, bool):
        raise TypeError(f"SPI must be an integer, not {spi!r}")
    if spi == 0:
        raise ValueError("SPI 0 is reserved (it means \"no SA\", RFC 4303 section 2.1)")
    if 1 <= spi <= contract.SPI_RESERVED_MAX:
        raise ValueError(f"SPI {spi} is in the range 1..{contract.SPI_RESERVED_MAX} that IANA "
                         f"reserves (RFC 4303 section 2.1)")
    if spi > 0xFFFFFFFF:
        raise ValueError(f"SPI must fit in 32 bits, not {spi:#x}")
    return spi


@dataclass(frozen=True)
class SaConfig:
    """One SA as the engine holds it. Checked when made: a bad value raises with its name.

    ``key`` is the AES key (16 or 32 bytes) and ``salt`` the RFC 4106 salt (4 bytes); a key of 20
    or 36 bytes with no ``salt`` is split the way ``ip xfrm`` writes rfc4106 keys (key then salt).
    ``seq`` is, outbound, the last sequence number already used and, inbound, the top of the
    replay window. ``src`` and ``dst`` are the SA's tunnel endpoints (an address, as text or an
    ``ipaddress`` object, both of one family): an outbound tunnel-mode SA builds its outer header
    from them (without them it is 0.0.0.0 to 0.0.0.0), any other SA may carry them.
    """
    spi: int
    direction: Direction
    mode: Mode
    algorithm: Algorithm
    key: bytes
    salt: Optional[bytes] = None
    esn: bool = False
    seq: int = 0
    replay_window: int = 64
    src: Optional[object] = None
    dst: Optional[object] = None

    def __post_init__(self):
        check_spi(self.spi)
        object.__setattr__(self, "direction", _enum_arg(Direction, self.direction, "Direction"))
        object.__setattr__(self, "mode", _enum_arg(Mode, self.mode, "Mode"))
        alg = self.algorithm
        if isinstance(alg, str):
            alg = Algorithm.from_text(alg)
        elif not isinstance(alg, Algorithm):
            raise TypeError(f"Algorithm must be an Algorithm or one of "
                            f"{', '.join(repr(a.text) for a in Algorithm)}, not {alg!r}")
        object.__setattr__(self, "algorithm", alg)
        key, salt = self.key, self.salt
        if not isinstance(key, (bytes, bytearray)):
            raise TypeError(f"Key must be bytes, not {type(key).__name__}")
        if salt is None and len(key) in (20, 36):
            key, salt = key[:-4], key[-4:]
        if len(key) not in (16, 32):
            raise ValueError(f"Key must be 16 or 32 bytes (AES-128 or AES-256), or 20 or 36 with "
                             f"the salt, not {len(key)} bytes")
        if salt is None:
            raise ValueError("Salt is missing: give 4 bytes of salt, or a key with the salt "
                             "appended (20 or 36 bytes)")
        if not isinstance(salt, (bytes, bytearray)):
            raise TypeError(f"Salt must be bytes, not {type(salt).__name__}")
        if len(salt) != 4:
            raise ValueError(f"Salt must be 4 bytes, not {len(salt)} bytes")
        object.__setattr__(self, "key", bytes(key))
        object.__setattr__(self, "salt", bytes(salt))
        if not isinstance(self.esn, bool):
            raise TypeError(f"ESN must be a bool, not {self.esn!r}")
        _int_arg(self.seq, "Sequence number", 0, (1 << 64) - 1 if self.esn else (1 << 32) - 1)
        _int_arg(self.replay_window, "Replay window", 0, 1024)
        if (self.src is None) != (self.dst is None):
            raise ValueError(f"Tunnel endpoints come in pairs: src is {self.src!r}, "
                             f"dst is {self.dst!r}")
        if self.src is not None:
            ends = []
            for what, value in (("src", self.src), ("dst", self.dst)):
                try:
                    ends.append(ipaddress.ip_address(value))
                except ValueError:
                    raise ValueError(f"Tunnel endpoint {what} must be an IPv4 or IPv6 address, "
                                     f"not {value!r}") from None
            if ends[0].version != ends[1].version:
                raise ValueError(f"Tunnel endpoints must be of one address family, not "
                                 f"{ends[0]} and {ends[1]}")
            object.__setattr__(self, "src", ends[0])
            object.__setattr__(self, "dst", ends[1])

    @property
    def outer6(self):
        """The tunnel endpoints are IPv6 addresses."""
        return self.src is not None and self.src.version == 6

    @property
    def key_size(self):
        return KeySize.AES_128 if len(self.key) == 16 else KeySize.AES_256

    def __repr__(self):
        # Never print key material.
        return (f"SaConfig(spi={self.spi:#x}, direction={self.direction.name.lower()}, "
                f"mode={self.mode.name.lower()}, algorithm={self.algorithm.text}, "
                f"key=<{len(self.key)} bytes>, esn={self.esn}, seq={self.seq}, "
                f"replay_window={self.replay_window}"
                + (f", src={self.src}, dst={self.dst}" if self.src is not None else "") + ")")


@dataclass(frozen=True)
class SaRef:
    """Where an installed SA lives: its slot and the slot's generation at install."""
    index: int
    generation: int


@dataclass(frozen=True)
class LookupResult:
    found: bool
    index: int
    generation: int
    version: int


@dataclass(frozen=True)
class EntryInfo:
    """A slot's public fields as the engine reports them (never the key)."""
    index: int
    state: SlotState
    spi: int
    direction: Direction
    mode: Mode
    algorithm: Optional[Algorithm]
    key_size: KeySize
    esn: bool
    seq: int
    replay_window: int
    generation: int
    place: int
    #: Tunnel endpoints as the slot holds them (``ipaddress`` objects; zero addresses if unset).
    src: object = None
    dst: object = None


# --- The driver -----------------------------------------------------------------------------------

class _Bucket:
    __slots__ = ("spi", "index")

    def __init__(self, spi, index):
        self.spi, self.index = spi, index


class Engine:
    """Host driver for one engine, over any :class:`~ipchan.sw.transport.Transport`.

    Changes are staged by :meth:`install` and :meth:`delete` and become visible to the datapath
    together, with one move of the version, at :meth:`commit`.
    """

    #: How far the driver searches for a cuckoo relocation path (in moved SPIs).
    MAX_RELOCATIONS = 8
    #: How many STATUS polls a command may take before the engine is declared hung.
    MAX_POLLS = 100000

    def __init__(self, transport):
        if not isinstance(transport, Transport):
            raise TypeError(f"Transport must provide read, write and close, not {transport!r}")
        self.transport = transport
        ident = transport.read(ADDR.ID)
        if ident != contract.ID_MAGIC:
            raise IOError(f"No ipchan engine behind {transport!r}: ID register reads "
                          f"{ident:#010x}, expected {contract.ID_MAGIC:#010x}")
        word = transport.read(ADDR.CONTRACT)
        major = FIELD.CONTRACT.MAJOR.get(word)
        if major != contract.CONTRACT_VERSION[0]:
            raise IOError(f"Engine speaks register contract {major}.{FIELD.CONTRACT.MINOR.get(word)}, "
                          f"this driver {contract.CONTRACT_VERSION[0]}.{contract.CONTRACT_VERSION[1]}")
        c0, c1, c2 = (transport.read(a) for a in (ADDR.CONFIG0, ADDR.CONFIG1, ADDR.CONFIG2))
        self.params = EngineParams(
            n_entries=FIELD.CONFIG0.N_ENTRIES.get(c0),
            generation_width=FIELD.CONFIG0.GEN_WIDTH.get(c0),
            version_width=FIELD.CONFIG0.VERSION_WIDTH.get(c0),
            window_max=FIELD.CONFIG1.WINDOW_MAX.get(c1),
            max_packet=FIELD.CONFIG2.MAX_PACKET.get(c2),
            tunnel_endpoints=bool(FIELD.CONFIG2.ENDPOINTS.get(c2)),
        )
        #: SPIs moved between hash tables by this driver (cuckoo relocations).
        self.relocations = 0
        self._wait_idle()
        self._sync()

    # -- Constructors for the transports that need no simulator --

    @classmethod
    def for_model(cls, params=None):
        """An engine backed by the golden model (no simulator, no hardware)."""
        from .model import EngineModel
        from .transport import ModelTransport
        return cls(ModelTransport(EngineModel(params or EngineParams())))

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Engine({self.transport!r})"

    # -- Register plumbing --

    def _wait_idle(self):
        for _ in range(self.MAX_POLLS):
            status = self.transport.read(ADDR.STATUS)
            if not FIELD.STATUS.BUSY.get(status):
                return status
        raise TimeoutError(f"Engine behind {self.transport!r} stayed busy for {self.MAX_POLLS} polls")

    def _command(self, op, *, index=0, table=0):
        self.transport.write(ADDR.CMD, FIELD.CMD.OP.put(op) | FIELD.CMD.TABLE.put(table) |
                             FIELD.CMD.INDEX.put(index))
        status = self._wait_idle()
        return Error(FIELD.STATUS.ERROR.get(status))

    def _raise(self, code, message):
        raise _ERROR_CLASSES.get(code, EngineError)(code, message)

    def _read64(self, lo_name):
        lo = self.transport.read(getattr(ADDR, lo_name))
        hi = self.transport.read(getattr(ADDR, contract.register(lo_name).snapshot_hi))
        return (hi << 32) | lo

    def _sync(self):
        """Rebuild the driver's view (slots, buckets) from the engine itself."""
        self._buckets = [dict(), dict()]           # table -> {bucket: _Bucket}
        self._slots = {}                           # index -> EntryInfo of every non-free slot
        self._staged_ops = 0
        status = self.transport.read(ADDR.STATUS)
        free = FIELD.FREE.COUNT.get(self.transport.read(ADDR.FREE))
        if free == self.params.n_entries and FIELD.STATUS.STAGED.get(status) == 0:
            return  # an empty engine: nothing to read
        for index in range(self.params.n_entries):
            info = self.read_entry(index)
            if info.state != SlotState.FREE:
                self._slots[index] = info
        for table in range(2):
            for bucket in range(self.params.n_buckets):
                valid, spi, index = self.read_bucket(table, bucket)
                if valid:
                    self._buckets[table][bucket] = _Bucket(spi, index)
        self._staged_ops = FIELD.STATUS.STAGED.get(status)

    # -- Cuckoo placement --

    def _hash(self, table, spi):
        return contract.spi_hash(table, spi, self.params.bucket_width)

    def _plan_placement(self, spi):
        """A list of (table, bucket) moves to make, last to first, and the table for ``spi``."""
        # Breadth-first over relocation paths, so the fewest SPIs move.
        start = [(t, self._hash(t, spi)) for t in range(2)]
        queue = deque()
        seen = set()
        for t, b in start:
            if b not in self._buckets[t]:
                return [], t
            queue.append(((t, b), [(t, b)]))
            seen.add((t, b))
        while queue:
            (t, b), path = queue.popleft()
            if len(path) > self.MAX_RELOCATIONS:
                continue
            occupant = self._buckets[t][b]
            dt, db = 1 - t, self._hash(1 - t, occupant.spi)
            if db not in self._buckets[dt]:
                return path, path[0][0]
            if (dt, db) not in seen:
                seen.add((dt, db))
                queue.append(((dt, db), path + [(dt, db)]))
        raise HashFullError(Error.BUCKET_OCCUPIED,
                            f"No bucket can be freed for SPI {spi:#010x} within "
                            f"{self.MAX_RELOCATIONS} relocations; choose another SPI")

    def _move(self, table, bucket):
        code = self._command(Op.MOVE_BUCKET, index=bucket, table=table)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to move bucket {bucket} of table {table}: "
                              f"{code.name}")
        self.relocations += 1
        entry = self._buckets[table].pop(bucket)
        dst = 1 - table
        self._buckets[dst][self._hash(dst, entry.spi)] = entry
        info = self._slots.get(entry.index)
        if info is not None:
            self._slots[entry.index] = _replace(info, place=dst)

    # -- The API --

    def version(self):
        """The engine's version tag now."""
        return self._read64("VERSION_LO")

    def staged(self):
        """Changes staged since the last commit or abort."""
        return FIELD.STATUS.STAGED.get(self.transport.read(ADDR.STATUS))

    def install(self, cfg):
        """Stage ``cfg`` into a free slot; it becomes visible at :meth:`commit`."""
        if not isinstance(cfg, SaConfig):
            raise TypeError(f"SA must be an SaConfig, not {cfg!r}")
        if cfg.replay_window > self.params.window_max:
            raise ValueError(f"Replay window {cfg.replay_window} is larger than this engine's "
                             f"maximum of {self.params.window_max}")
        if cfg.src is not None and not self.params.tunnel_endpoints:
            raise ValueError(f"This engine's SA table stores no tunnel endpoints (built with "
                             f"tunnel_endpoints=False), so it cannot hold an SA with src={cfg.src} "
                             f"and dst={cfg.dst}")
        free = FIELD.FREE.COUNT.get(self.transport.read(ADDR.FREE))
        if free == 0:
            raise TableFullError(Error.TABLE_FULL,
                                 f"SA table is full: all {self.params.n_entries} slots are in use "
                                 f"or waiting for a commit")
        place = 0
        if cfg.direction == Direction.INBOUND:
            for index, info in self._slots.items():
                if (info.direction == Direction.INBOUND and info.spi == cfg.spi and
                        info.state in (SlotState.LIVE, SlotState.STAGED_ADD)):
                    raise ValueError(f"Inbound SPI {cfg.spi:#010x} is already in use by slot "
                                     f"{index}")
            path, place = self._plan_placement(cfg.spi)
            for table, bucket in reversed(path):
                self._move(table, bucket)
        t = self.transport
        t.write(ADDR.SA_SPI, cfg.spi)
        f = FIELD.SA_FLAGS
        t.write(ADDR.SA_FLAGS, f.DIR.put(cfg.direction) | f.MODE.put(cfg.mode) |
                f.ESN.put(cfg.esn) | f.PLACE.put(place) | f.ALG.put(cfg.algorithm) |
                f.KEYSIZE.put(cfg.key_size) | f.WINDOW.put(cfg.replay_window) |
                f.OUTER6.put(cfg.outer6))
        # Always written, so an SA without endpoints never inherits the previous install's.
        for end, addr in (("SRC", cfg.src), ("DST", cfg.dst)):
            value = 0 if addr is None else int(addr)
            for i in range(4):
                t.write(getattr(ADDR, f"SA_{end}{i}"), (value >> (32 * (3 - i))) & 0xFFFFFFFF)
        t.write(ADDR.SA_SEQ_LO, cfg.seq & 0xFFFFFFFF)
        t.write(ADDR.SA_SEQ_HI, cfg.seq >> 32)
        key = cfg.key.ljust(32, b"\0")
        for i in range(8):
            t.write(getattr(ADDR, f"SA_KEY{i}"), int.from_bytes(key[4 * i:4 * i + 4], "big"))
        t.write(ADDR.SA_SALT, int.from_bytes(cfg.salt, "big"))
        code = self._command(Op.INSTALL)
        # Do not leave key material in the staging registers.
        for i in range(8):
            t.write(getattr(ADDR, f"SA_KEY{i}"), 0)
        t.write(ADDR.SA_SALT, 0)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to install {cfg!r}: {code.name}")
        result = t.read(ADDR.RESULT)
        ref = SaRef(FIELD.RESULT.INDEX.get(result),
                    FIELD.RESULT_GEN.GENERATION.get(t.read(ADDR.RESULT_GEN)))
        if cfg.direction == Direction.INBOUND:
            self._buckets[place][self._hash(place, cfg.spi)] = _Bucket(cfg.spi, ref.index)
        self._slots[ref.index] = EntryInfo(
            index=ref.index, state=SlotState.STAGED_ADD, spi=cfg.spi, direction=cfg.direction,
            mode=cfg.mode, algorithm=cfg.algorithm, key_size=cfg.key_size, esn=cfg.esn,
            seq=cfg.seq, replay_window=cfg.replay_window, generation=ref.generation, place=place,
            src=_endpoint(int(cfg.src or 0), cfg.outer6), dst=_endpoint(int(cfg.dst or 0), cfg.outer6))
        return ref

    def delete(self, index):
        """Stage the deletion of the SA in slot ``index`` (it stays visible until commit)."""
        _int_arg(index, "Slot index", 0, self.params.n_entries - 1)
        info = self._slots.get(index)
        if info is None or info.state not in (SlotState.LIVE, SlotState.STAGED_ADD):
            state = "free" if info is None else info.state.name.lower()
            raise NoSuchSaError(Error.NO_SUCH_SA,
                                f"No SA to delete in slot {index} (the slot is {state})")
        code = self._command(Op.DELETE, index=index)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to delete slot {index}: {code.name}")
        if info.state == SlotState.LIVE:
            self._slots[index] = _replace(info, state=SlotState.STAGED_DEL)
        else:
            self._release(index)

    def _release(self, index):
        info = self._slots.pop(index)
        if info.direction == Direction.INBOUND:
            bucket = self._hash(info.place, info.spi)
            entry = self._buckets[info.place].get(bucket)
            if entry is not None and entry.index == index:
                del self._buckets[info.place][bucket]

    def commit(self):
        """Make every staged change visible at once; return the new version."""
        code = self._command(Op.COMMIT)
        if code == Error.NOTHING_STAGED:
            self._raise(code, "Nothing to commit: no change is staged")
        if code == Error.VERSION_EXHAUSTED:
            self._raise(code, f"Version is at its largest value ({self.params.version_max}); "
                              f"the engine refuses further commits until reset")
        if code != Error.NONE:
            self._raise(code, f"Engine refused to commit: {code.name}")
        for index, info in list(self._slots.items()):
            if info.state == SlotState.STAGED_ADD:
                self._slots[index] = _replace(info, state=SlotState.LIVE)
            elif info.state == SlotState.STAGED_DEL:
                self._release(index)
        return self.version()

    def abort(self):
        """Drop every staged change; the table and version stay as they were."""
        code = self._command(Op.ABORT)
        if code == Error.NOTHING_STAGED:
            self._raise(code, "Nothing to abort: no change is staged")
        if code != Error.NONE:
            self._raise(code, f"Engine refused to abort: {code.name}")
        for index, info in list(self._slots.items()):
            if info.state == SlotState.STAGED_ADD:
                self._release(index)
            elif info.state == SlotState.STAGED_DEL:
                self._slots[index] = _replace(info, state=SlotState.LIVE)

    def bump_version(self):
        """Move the version with no table change (latching state changed on the host only)."""
        code = self._command(Op.BUMP_VERSION)
        if code == Error.VERSION_EXHAUSTED:
            self._raise(code, f"Version is at its largest value ({self.params.version_max})")
        if code != Error.NONE:
            self._raise(code, f"Engine refused to bump the version: {code.name}")
        return self.version()

    @contextmanager
    def transaction(self):
        """Stage changes in the ``with`` body; commit them at the end, or abort on an exception.

        The block's value (``as``) is a list that receives the new version after the commit."""
        out = []
        try:
            yield out
        except BaseException:
            if self.staged():
                self.abort()
            raise
        if self.staged():
            out.append(self.commit())

    def lookup(self, spi):
        """Look ``spi`` up through the datapath's own lookup port."""
        if not isinstance(spi, int) or isinstance(spi, bool) or not 0 <= spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI must be a 32-bit unsigned integer, not {spi!r}")
        self.transport.write(ADDR.LOOKUP_SPI, spi)
        code = self._command(Op.LOOKUP)
        if code != Error.NONE:
            self._raise(code, f"Engine refused a lookup: {code.name}")
        result = self.transport.read(ADDR.RESULT)
        gen = FIELD.RESULT_GEN.GENERATION.get(self.transport.read(ADDR.RESULT_GEN))
        return LookupResult(found=bool(FIELD.RESULT.FOUND.get(result)),
                            index=FIELD.RESULT.INDEX.get(result), generation=gen,
                            version=self._read64("LOOKUP_VERSION_LO"))

    def read_entry(self, index):
        """The public fields of slot ``index`` as the engine holds them."""
        _int_arg(index, "Slot index", 0, self.params.n_entries - 1)
        code = self._command(Op.READ_ENTRY, index=index)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to read slot {index}: {code.name}")
        t = self.transport
        flags = t.read(ADDR.RB_FLAGS)
        state_word = t.read(ADDR.RB_STATE)
        f = FIELD.SA_FLAGS
        alg_code = f.ALG.get(flags)
        return EntryInfo(
            index=index,
            state=SlotState(FIELD.RB_STATE.STATE.get(state_word)),
            spi=t.read(ADDR.RB_SPI),
            direction=Direction(f.DIR.get(flags)),
            mode=Mode(f.MODE.get(flags)),
            algorithm=Algorithm(alg_code) if alg_code in {int(a) for a in Algorithm} else None,
            key_size=KeySize(f.KEYSIZE.get(flags)),
            esn=bool(f.ESN.get(flags)),
            seq=self._read64("RB_SEQ_LO"),
            replay_window=f.WINDOW.get(flags),
            generation=FIELD.RB_STATE.GENERATION.get(state_word),
            place=f.PLACE.get(flags),
            src=_endpoint(self._read128("RB_SRC"), f.OUTER6.get(flags)),
            dst=_endpoint(self._read128("RB_DST"), f.OUTER6.get(flags)),
        )

    def _read128(self, prefix):
        value = 0
        for i in range(4):
            value = (value << 32) | self.transport.read(getattr(ADDR, f"{prefix}{i}"))
        return value

    def sa_counters(self, index):
        """Packets of the SA in slot ``index`` by :class:`~ipchan.hw.contract.Verdict` (those an
        SA can have: not ``no_sa``); they start from zero with each new generation of the slot."""
        _int_arg(index, "Slot index", 0, self.params.n_entries - 1)
        code = self._command(Op.READ_ENTRY, index=index)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to read slot {index}: {code.name}")
        return {verdict: self.transport.read(getattr(ADDR, name))
                for verdict, name in contract.SA_VERDICT_COUNTERS.items()}

    def read_bucket(self, table, bucket):
        """Bucket ``bucket`` of hash table ``table``: (valid, spi, slot index)."""
        _int_arg(table, "Hash table", 0, 1)
        _int_arg(bucket, "Bucket", 0, self.params.n_buckets - 1)
        code = self._command(Op.READ_BUCKET, index=bucket, table=table)
        if code != Error.NONE:
            self._raise(code, f"Engine refused to read bucket {bucket} of table {table}: "
                              f"{code.name}")
        word = self.transport.read(ADDR.RB_BUCKET)
        return (bool(FIELD.RB_BUCKET.VALID.get(word)), self.transport.read(ADDR.RB_BUCKET_SPI),
                FIELD.RB_BUCKET.INDEX.get(word))

    def entries(self):
        """Every slot that is not free, as the engine reports it."""
        for index in sorted(self._slots):
            yield self.read_entry(index)

    def counters(self):
        """The engine's counters, by name (``commits``, ``installs``, ...)."""
        return {name[4:].lower(): self.transport.read(getattr(ADDR, name))
                for name in contract.COUNTERS}

    def occupancy(self):
        """(live slots, free slots) as the engine counts them."""
        return (FIELD.LIVE.COUNT.get(self.transport.read(ADDR.LIVE)),
                FIELD.FREE.COUNT.get(self.transport.read(ADDR.FREE)))

    # -- The ESP datapath (transports that reach one) --

    def process_packet(self, direction, data, sa_index=None):
        """Run one packet through the engine's ESP datapath: inbound (``sa_index`` None), or
        outbound through the SA in slot ``sa_index``. Returns ``(tag, out)``: ``tag`` a dict of
        :data:`ipchan.hw.contract.TAG_FIELDS`, ``out`` the packet handed up or None.

        Only transports that reach a datapath have it: the golden model
        (:meth:`for_model`) and a Verilator simulation built with ``esp=`` (``open_engine(
        "verilator", esp="compact")``). The datapath updates sequence numbers, windows and
        counters in the engine; :meth:`read_entry` and :meth:`sa_counters` read them."""
        (answer,) = self.process_packets([(direction, data, sa_index)])
        return answer

    def process_packets(self, requests):
        """:meth:`process_packet` for each ``(direction, data, sa_index)``, in order (pipelined
        where the transport can)."""
        process = getattr(self.transport, "process_packets", None)
        if process is None:
            raise TypeError(f"{self.transport!r} reaches no ESP datapath: packets need the golden "
                            f"model or a Verilator simulation of an engine built with esp=...")
        return process(list(requests))


def _endpoint(value, outer6):
    return ipaddress.IPv6Address(value) if outer6 else ipaddress.IPv4Address(value & 0xFFFFFFFF)


def _replace(info, **changes):
    from dataclasses import replace
    return replace(info, **changes)
