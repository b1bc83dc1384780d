"""The register contract: the one description both sides of the engine agree on.

Every register, field, width, access and reset value of the engine's AXI4-Lite control port, the
commands, error codes, the SA-table encodings, the SPI hash functions, the inbound tag layout and
the verdict codes are written here once. The gateware's register decoder
(:mod:`ipchan.hw.regfile`), the driver's constants (:mod:`ipchan.sw.regs`), the golden model and
``docs/regmap.md`` are all derived from this module; nothing else may spell an address or a width.

This module is plain Python data on purpose: it imports no Amaranth, so the host side can use it on
a machine with no HDL toolchain.
"""

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Optional


__all__ = [
    "CONTRACT_VERSION", "ID_MAGIC", "Access", "Field", "Register", "REGISTERS", "REGISTERS_BY_NAME",
    "Op", "Error", "SlotState", "Direction", "Mode", "Algorithm", "KeySize", "Verdict",
    "EngineParams", "TAG_FIELDS", "tag_width", "spi_hash", "HASH_MASKS",
    "SPI_RESERVED_MAX", "register", "field_of", "IPV6_MAX_EXT_HEADERS", "IP_MAX_PACKET",
    "TAG_BEAT_FIELDS", "VERDICT_COUNTERS", "SA_VERDICT_COUNTERS",
]


#: Bumped when the contract changes in a way a driver must know about: (major, minor).
CONTRACT_VERSION = (1, 1)
#: Value of the ID register: "IPCH" in ASCII.
ID_MAGIC = 0x49504348
#: SPIs 1..255 are reserved by IANA (RFC 4303 section 2.1) and 0 means "no SA".
SPI_RESERVED_MAX = 255
#: The inbound header parser skips at most this many IPv6 extension headers before ESP (and the
#: outbound transport-mode split point at most this many); a packet with more is ``malformed``.
IPV6_MAX_EXT_HEADERS = 4
#: Largest IP packet there is (IPv4 total length, IPv6 payload length: no jumbograms).
IP_MAX_PACKET = 0xFFFF


class Access(IntEnum):
    """How the host may access a register."""
    RO = 0  #: read only; writes are ignored
    RW = 1  #: read and write
    WO = 2  #: write only; reads return zero (keys)


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    width: int
    doc: str = ""
    enum: Optional[type] = None

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.offset

    def get(self, word):
        return (word >> self.offset) & ((1 << self.width) - 1)

    def put(self, value):
        value = int(value)
        if not 0 <= value < (1 << self.width):
            raise ValueError(f"Value {value!r} does not fit field {self.name!r} of width {self.width}")
        return value << self.offset


@dataclass(frozen=True)
class Register:
    name: str
    addr: int
    access: Access
    doc: str
    fields: tuple = ()
    reset: int = 0
    #: For the low half of a 64-bit pair: reading it captures the high half into a shadow, which
    #: the paired high register then returns, so a 64-bit value is never torn.
    snapshot_hi: Optional[str] = None

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"Register {self.name!r} has no field {name!r}")

    @property
    def all_fields(self):
        """The fields, or one field spanning the register when none are declared."""
        return self.fields or (Field("value", 0, 32, self.doc),)


class Op(IntEnum):
    """Commands written to ``CMD.OP``. Each runs to completion while ``STATUS.BUSY`` is set; a
    command written meanwhile waits on the bus (AXI4-Lite backpressure), it is never lost."""
    NOP = 0
    #: Stage a new SA from the ``SA_*`` registers into a free slot (FIFO order); ``RESULT`` gets the
    #: slot index and its new generation. Inbound SAs are also placed in hash table
    #: ``SA_FLAGS.PLACE``, whose bucket for the SPI must be empty.
    INSTALL = 1
    #: Stage the deletion of the SA in slot ``CMD.INDEX``. Deleting a slot staged for install in
    #: this transaction cancels the install; that slot is zeroized and freed at the next COMMIT or
    #: ABORT, with the slots those release.
    DELETE = 2
    #: Apply every staged change at once: the slots' visibility and ``VERSION`` change in the same
    #: clock cycle. Then deleted slots are zeroized and returned to the free list.
    COMMIT = 3
    #: Drop every staged change; the visible table and ``VERSION`` are left as they were. A slot
    #: that an aborted install used keeps its advanced generation (generations never go back).
    ABORT = 4
    #: Look ``LOOKUP_SPI`` up through the datapath's own lookup port; results in ``RESULT`` and
    #: ``LOOKUP_VERSION``.
    LOOKUP = 5
    #: Copy slot ``CMD.INDEX``'s public fields (never its key) into the ``RB_*`` registers.
    READ_ENTRY = 6
    #: Copy bucket ``CMD.INDEX`` of hash table ``CMD.TABLE`` into the ``RB_BUCKET*`` registers.
    READ_BUCKET = 7
    #: Move the SPI in bucket ``CMD.INDEX`` of table ``CMD.TABLE`` to its bucket in the other
    #: table, which must be empty; both buckets change in the same cycle (cuckoo relocation that a
    #: lookup can never miss).
    MOVE_BUCKET = 8
    #: Move ``VERSION`` on by one with no table change: the key manager's latching state (the LD)
    #: changed while the SA table did not, and packets checked before must be told apart.
    BUMP_VERSION = 9


class Error(IntEnum):
    """``STATUS.ERROR`` after a command. A refused command changes nothing but this code and the
    ``CMD_ERRORS`` counter."""
    NONE = 0
    BAD_SPI = 1            #: SPI 0 or in the IANA-reserved range 1..255
    BAD_ALGORITHM = 2      #: SA_FLAGS.ALG is not an :class:`Algorithm`
    BAD_WINDOW = 3         #: replay window larger than the engine's maximum
    TABLE_FULL = 4         #: no free slot
    NO_SUCH_SA = 5         #: DELETE of a slot that holds no SA (or is already staged for deletion)
    NOTHING_STAGED = 6     #: COMMIT or ABORT with no staged change
    BAD_INDEX = 7          #: CMD.INDEX beyond the table or the hash table
    BUCKET_OCCUPIED = 8    #: INSTALL or MOVE_BUCKET whose target bucket is in use
    BUCKET_EMPTY = 9       #: MOVE_BUCKET of an empty bucket
    BAD_OP = 10            #: unknown CMD.OP
    VERSION_EXHAUSTED = 11 #: COMMIT or BUMP_VERSION would take VERSION past its largest value


class SlotState(IntEnum):
    """State of a table slot, as ``RB_STATE`` reports it."""
    FREE = 0        #: no SA; invisible to the datapath
    STAGED_ADD = 1  #: installed, not yet committed; invisible
    LIVE = 2        #: committed; visible
    STAGED_DEL = 3  #: deletion staged, not yet committed; still visible


class Direction(IntEnum):
    INBOUND = 0
    OUTBOUND = 1


class Mode(IntEnum):
    TRANSPORT = 0
    TUNNEL = 1


class Algorithm(IntEnum):
    """ESP transforms. Code 0 is kept invalid so an unprogrammed register cannot select a cipher."""
    AES_GCM_8 = 1    #: RFC 4106, 8-byte ICV
    AES_GCM_12 = 2   #: RFC 4106, 12-byte ICV
    AES_GCM_16 = 3   #: RFC 4106, 16-byte ICV
    AES_GMAC = 4     #: RFC 4543, integrity only, 16-byte ICV

    @property
    def icv_len(self):
        return {1: 8, 2: 12, 3: 16, 4: 16}[int(self)]

    @property
    def text(self):
        return {1: "aes-gcm-8", 2: "aes-gcm-12", 3: "aes-gcm-16", 4: "aes-gmac"}[int(self)]

    @classmethod
    def from_text(cls, text):
        for alg in cls:
            if alg.text == text:
                return alg
        raise ValueError(f"Unknown algorithm {text!r}; expected one of "
                         f"{', '.join(repr(a.text) for a in cls)}")


class KeySize(IntEnum):
    AES_128 = 0
    AES_256 = 1

    @property
    def key_bytes(self):
        return 16 if self == KeySize.AES_128 else 32


class Verdict(IntEnum):
    """The verdict an inbound or outbound packet carries in its tag."""
    OK = 0
    AUTH_FAIL = 1
    REPLAY = 2
    NO_SA = 3
    MALFORMED = 4
    SEQ_OVERFLOW = 5


# --- Engine parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineParams:
    """Build-time parameters of one engine. Both the gateware and the golden model take these; the
    ``CONFIG*`` registers report them so a driver can discover what it talks to."""
    n_entries: int = 256
    generation_width: int = 16
    version_width: int = 64
    window_max: int = 64
    #: Largest packet, in bytes, the datapath takes in or hands out (its packet buffer holds one
    #: whole packet, so nothing unauthenticated is handed up); longer ones are ``malformed``.
    max_packet: int = IP_MAX_PACKET
    #: Whether the SA table stores each SA's tunnel endpoints (``SA_SRC*``/``SA_DST*``), which
    #: only the outbound datapath uses. Without them a build saves a 256-bit memory and its
    #: registers (16 of the iCE40UP5K's 30 block RAMs); ``SA_SRC*``/``SA_DST*`` are then ignored,
    #: ``RB_SRC*``/``RB_DST*`` read zero, and the driver refuses an SA that has endpoints.
    tunnel_endpoints: bool = True

    def __post_init__(self):
        if not isinstance(self.n_entries, int) or isinstance(self.n_entries, bool):
            raise TypeError(f"Number of entries must be an integer, not {self.n_entries!r}")
        if self.n_entries < 2 or self.n_entries > 4096 or self.n_entries & (self.n_entries - 1):
            raise ValueError(f"Number of entries must be a power of two from 2 to 4096, "
                             f"not {self.n_entries!r}")
        if not isinstance(self.generation_width, int) or not 1 <= self.generation_width <= 16:
            raise ValueError(f"Generation width must be an integer from 1 to 16, "
                             f"not {self.generation_width!r}")
        if not isinstance(self.version_width, int) or not 4 <= self.version_width <= 64:
            raise ValueError(f"Version width must be an integer from 4 to 64, "
                             f"not {self.version_width!r}")
        if (not isinstance(self.window_max, int) or self.window_max not in (32, 64, 128, 256, 512, 1024)):
            raise ValueError(f"Maximum replay window must be one of 32, 64, 128, 256, 512, 1024, "
                             f"not {self.window_max!r}")
        if (not isinstance(self.max_packet, int) or isinstance(self.max_packet, bool) or
                not 64 <= self.max_packet <= IP_MAX_PACKET):
            raise ValueError(f"Maximum packet size must be an integer from 64 to {IP_MAX_PACKET}, "
                             f"not {self.max_packet!r}")
        if not isinstance(self.tunnel_endpoints, bool):
            raise TypeError(f"Tunnel endpoints must be a bool, not {self.tunnel_endpoints!r}")

    @property
    def index_width(self):
        return max(1, (self.n_entries - 1).bit_length())

    @property
    def n_buckets(self):
        """Buckets per hash table. Two tables of 2N buckets keep the load at most 25%, where
        cuckoo insertion practically never fails."""
        return 2 * self.n_entries

    @property
    def bucket_width(self):
        return (self.n_buckets - 1).bit_length()

    @property
    def version_max(self):
        return (1 << self.version_width) - 1

    @property
    def generation_mask(self):
        return (1 << self.generation_width) - 1


#: The small profile for the iCE40UP5K.
SMALL_PARAMS = EngineParams(n_entries=16, tunnel_endpoints=False)


# --- Registers --------------------------------------------------------------------------------------

def _f(name, offset, width, doc="", enum=None):
    return Field(name, offset, width, doc, enum)


REGISTERS = (
    # Identification and configuration.
    Register("ID", 0x000, Access.RO, "Reads \"IPCH\" (0x49504348).", reset=ID_MAGIC),
    Register("CONTRACT", 0x004, Access.RO, "Version of this register contract.",
             (_f("MINOR", 0, 16), _f("MAJOR", 16, 16)),
             reset=(CONTRACT_VERSION[0] << 16) | CONTRACT_VERSION[1]),
    Register("CONFIG0", 0x008, Access.RO, "Build parameters: table size and counter widths.",
             (_f("N_ENTRIES", 0, 16, "SA table slots"),
              _f("GEN_WIDTH", 16, 5, "bits of each slot's generation counter"),
              _f("VERSION_WIDTH", 24, 7, "bits of VERSION"))),
    Register("CONFIG1", 0x00C, Access.RO, "Build parameters: replay window and hash tables.",
             (_f("WINDOW_MAX", 0, 11, "largest replay window, in packets"),
              _f("N_BUCKETS", 16, 16, "buckets in each of the two SPI hash tables"))),
    Register("CONFIG2", 0x030, Access.RO, "Build parameters: the datapath.",
             (_f("MAX_PACKET", 0, 16, "largest packet the datapath takes, in bytes"),
              _f("MAX_EXT_HEADERS", 16, 4, "IPv6 extension headers the parser skips at most"),
              _f("ENDPOINTS", 20, 1, "the SA table stores tunnel endpoints (SA_SRC*, SA_DST*; "
                                     "without, they are ignored and RB_SRC*, RB_DST* read 0)"))),

    # Commands and status.
    Register("STATUS", 0x010, Access.RO, "Engine status.",
             (_f("BUSY", 0, 1, "a command (or the reset-time zeroization) is running"),
              _f("ERROR", 8, 8, "error code of the last command", Error),
              _f("STAGED", 16, 16, "changes staged since the last COMMIT or ABORT"))),
    Register("CMD", 0x014, Access.WO,
             "Writing starts a command. While one runs (STATUS.BUSY), every register write is held "
             "on the bus until it ends; reads are not.",
             (_f("OP", 0, 4, "the command", Op),
              _f("TABLE", 4, 1, "hash table for READ_BUCKET and MOVE_BUCKET"),
              _f("INDEX", 16, 16, "slot (DELETE, READ_ENTRY) or bucket (READ_BUCKET, MOVE_BUCKET)"))),
    Register("RESULT", 0x018, Access.RO, "Result of INSTALL and LOOKUP.",
             (_f("FOUND", 0, 1, "LOOKUP found a visible SA; INSTALL succeeded"),
              _f("INDEX", 16, 16, "slot index"))),
    Register("RESULT_GEN", 0x01C, Access.RO, "Generation of the slot in RESULT.",
             (_f("GENERATION", 0, 16),)),
    Register("VERSION_LO", 0x020, Access.RO,
             "Version tag, low half. Moves by one with every COMMIT, in the cycle the change "
             "becomes visible to the datapath. Reading it captures VERSION_HI.",
             snapshot_hi="VERSION_HI"),
    Register("VERSION_HI", 0x024, Access.RO, "Version tag, high half (as captured by VERSION_LO)."),
    Register("LIVE", 0x028, Access.RO, "Slots whose SA is visible to the datapath.",
             (_f("COUNT", 0, 16),)),
    Register("FREE", 0x02C, Access.RO, "Slots free for INSTALL.",
             (_f("COUNT", 0, 16),)),

    # Staging registers for INSTALL.
    Register("SA_SPI", 0x040, Access.RW, "SPI of the SA to install."),
    Register("SA_FLAGS", 0x044, Access.RW, "Parameters of the SA to install.",
             (_f("DIR", 0, 1, "direction", Direction),
              _f("MODE", 1, 1, "mode", Mode),
              _f("ESN", 2, 1, "64-bit extended sequence numbers"),
              _f("PLACE", 3, 1, "inbound: hash table that receives the SPI"),
              _f("ALG", 4, 3, "algorithm", Algorithm),
              _f("KEYSIZE", 8, 1, "AES key size", KeySize),
              _f("OUTER6", 9, 1, "the tunnel endpoints (SA_SRC*, SA_DST*) are IPv6 addresses"),
              _f("WINDOW", 16, 11, "inbound replay window in packets; 0 disables"))),
    Register("SA_SEQ_LO", 0x048, Access.RW,
             "Sequence number, low half: outbound, the last number used; inbound, the window top."),
    Register("SA_SEQ_HI", 0x04C, Access.RW, "Sequence number, high half (ESN)."),
    *(Register(f"SA_KEY{i}", 0x050 + 4 * i, Access.WO,
               f"AES key bytes {4 * i}..{4 * i + 3}, big-endian (key byte {4 * i} in bits 31..24). "
               "Write only.")
      for i in range(8)),
    Register("SA_SALT", 0x070, Access.WO, "RFC 4106 salt (nonce bytes 0..3), big-endian. Write only."),

    Register("LOOKUP_SPI", 0x078, Access.RW, "SPI for the LOOKUP command."),
    *(Register(f"SA_{end}{i}", base + 4 * i, Access.RW,
               f"{what} address bytes {4 * i}..{4 * i + 3}, big-endian (128 bits; an IPv4 "
               f"address in SA_{end}3). Outbound tunnel mode builds the outer header from it.")
      for end, base, what in (("SRC", 0x0C4, "Tunnel source"), ("DST", 0x0D4, "Tunnel destination"))
      for i in range(4)),

    # Read-back of one slot (READ_ENTRY): never the key.
    Register("RB_SPI", 0x080, Access.RO, "READ_ENTRY: SPI."),
    Register("RB_FLAGS", 0x084, Access.RO, "READ_ENTRY: flags, laid out as SA_FLAGS."),
    Register("RB_SEQ_LO", 0x088, Access.RO, "READ_ENTRY: sequence number, low half.",
             snapshot_hi="RB_SEQ_HI"),
    Register("RB_SEQ_HI", 0x08C, Access.RO, "READ_ENTRY: sequence number, high half."),
    Register("RB_STATE", 0x090, Access.RO, "READ_ENTRY: slot state and generation.",
             (_f("STATE", 0, 2, "slot state", SlotState),
              _f("GENERATION", 16, 16))),
    Register("RB_BUCKET", 0x094, Access.RO, "READ_BUCKET: whether the bucket is used, and its slot.",
             (_f("VALID", 0, 1), _f("INDEX", 16, 16))),
    Register("RB_BUCKET_SPI", 0x098, Access.RO, "READ_BUCKET: SPI in the bucket."),

    Register("LOOKUP_VERSION_LO", 0x0A0, Access.RO,
             "LOOKUP: VERSION in the cycle the lookup saw the table. Reading captures the high half.",
             snapshot_hi="LOOKUP_VERSION_HI"),
    Register("LOOKUP_VERSION_HI", 0x0A4, Access.RO, "LOOKUP: high half of the version."),

    # READ_ENTRY also copies the slot's packet counters (32 bits, wrapping; zeroized with the
    # slot, so a new generation starts from zero) and its tunnel endpoints.
    *(Register(f"RB_CNT_{v}", 0x0B0 + 4 * i, Access.RO,
               f"READ_ENTRY: packets of this SA with verdict {v.lower()}.")
      for i, v in enumerate(("OK", "AUTH_FAIL", "REPLAY", "MALFORMED", "SEQ_OVERFLOW"))),
    *(Register(f"RB_{end}{i}", base + 4 * i, Access.RO,
               f"READ_ENTRY: {what} address bytes {4 * i}..{4 * i + 3}, as SA_{end}{i}.")
      for end, base, what in (("SRC", 0x140, "tunnel source"), ("DST", 0x150, "tunnel destination"))
      for i in range(4)),

    # Counters: 32 bits, wrapping.
    Register("CNT_COMMITS", 0x100, Access.RO, "COMMITs applied."),
    Register("CNT_INSTALLS", 0x104, Access.RO, "INSTALLs staged."),
    Register("CNT_DELETES", 0x108, Access.RO, "DELETEs staged."),
    Register("CNT_LOOKUPS", 0x10C, Access.RO, "Lookups made (datapath and LOOKUP)."),
    Register("CNT_HITS", 0x110, Access.RO, "Lookups that found a visible SA."),
    Register("CNT_CMD_ERRORS", 0x114, Access.RO, "Commands refused."),
    *(Register(f"CNT_{d}_{v}", 0x118 + 4 * i, Access.RO,
               f"{'Inbound' if d == 'IN' else 'Outbound'} packets with verdict {v.lower()}.")
      for i, (d, v) in enumerate((("IN", "OK"), ("IN", "AUTH_FAIL"), ("IN", "REPLAY"),
                                  ("IN", "NO_SA"), ("IN", "MALFORMED"), ("OUT", "OK"),
                                  ("OUT", "NO_SA"), ("OUT", "MALFORMED"), ("OUT", "SEQ_OVERFLOW")))),
)

REGISTERS_BY_NAME = {r.name: r for r in REGISTERS}
COUNTERS = tuple(r.name for r in REGISTERS if r.name.startswith("CNT_"))
#: Number of address bits the decoder looks at (the whole map fits in 4 KiB).
ADDR_WIDTH = 12


def register(name):
    try:
        return REGISTERS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"No register named {name!r}") from None


def field_of(reg_name, field_name):
    return register(reg_name).field(field_name)


def _check_map():
    # An address written twice is a bug: refuse to import a contract with one.
    seen = {}
    for reg in REGISTERS:
        if reg.addr % 4 or not 0 <= reg.addr < (1 << ADDR_WIDTH):
            raise ValueError(f"Register {reg.name} has a bad address {reg.addr:#x}")
        if reg.addr in seen:
            raise ValueError(f"Registers {seen[reg.addr]} and {reg.name} share address {reg.addr:#x}")
        seen[reg.addr] = reg.name
        used = 0
        for f in reg.fields:
            if f.offset + f.width > 32 or used & f.mask:
                raise ValueError(f"Field {reg.name}.{f.name} overlaps or overflows")
            used |= f.mask
        if reg.snapshot_hi is not None and reg.snapshot_hi not in {r.name for r in REGISTERS}:
            raise ValueError(f"Register {reg.name} snapshots unknown {reg.snapshot_hi}")


_check_map()


def _verdict_counters():
    by_key = {}
    for reg in REGISTERS:
        for prefix, direction in (("CNT_IN_", Direction.INBOUND), ("CNT_OUT_", Direction.OUTBOUND)):
            if reg.name.startswith(prefix):
                by_key[(direction, Verdict[reg.name[len(prefix):]])] = reg.name
    return by_key


#: ``{(Direction, Verdict): counter register name}``: the global per-verdict packet counters.
VERDICT_COUNTERS = _verdict_counters()
#: ``{Verdict: RB_CNT_* register name}``: the per-SA packet counters (no_sa has no SA).
SA_VERDICT_COUNTERS = {Verdict[r.name[len("RB_CNT_"):]]: r.name
                       for r in REGISTERS if r.name.startswith("RB_CNT_")}


# --- SPI hash functions -----------------------------------------------------------------------------

def _make_masks(seed, count):
    # H3 hashing: bit j of the hash is the parity of (SPI AND mask j). Masks come from a fixed
    # xorshift stream so that gateware, model and driver compute the same buckets.
    masks, x = [], seed
    while len(masks) < count:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        if bin(x).count("1") >= 8:
            masks.append(x)
    return tuple(masks)


#: ``HASH_MASKS[table][bit]``: 16 masks per table, of which a build uses ``bucket_width``.
HASH_MASKS = (_make_masks(0x1B873593, 16), _make_masks(0xCC9E2D51, 16))


def spi_hash(table, spi, bucket_width):
    """Bucket of ``spi`` in hash ``table`` (0 or 1) for tables of ``2**bucket_width`` buckets."""
    if table not in (0, 1):
        raise ValueError(f"Hash table must be 0 or 1, not {table!r}")
    h = 0
    for j in range(bucket_width):
        h |= (bin(spi & HASH_MASKS[table][j]).count("1") & 1) << j
    return h


# --- Inbound and outbound packet tags (AXI4-Stream tuser) ------------------------------------------

#: The tag that travels with a packet in ``tuser``, least significant field first:
#: (name, width, doc). Widths are fixed so the layout does not depend on build parameters.
TAG_FIELDS = (
    ("verdict", 3, "Verdict code"),
    ("sa_valid", 1, "sa_index and sa_generation name an SA (false for no_sa and malformed)"),
    ("sa_index", 16, "SA table slot that protected (inbound) or is to protect (outbound) the packet"),
    ("sa_generation", 16, "generation of that slot"),
    ("version", 64, "VERSION in the cycle the packet's SA lookup was made"),
    ("seq", 64, "ESP sequence number (64 bits with ESN)"),
)


#: The tag streams (``m_axis_in_tag``, ``m_axis_out_tag``): one beat per input packet, in input
#: order, whether the packet was handed up or dropped: the tag (:data:`TAG_FIELDS`, packed) and
#: then these fields.
TAG_BEAT_FIELDS = (
    ("handed_up", 1, "the packet went out on the data stream, with this tag in its tuser"),
)


def tag_width():
    return sum(width for _, width, _ in TAG_FIELDS)


def pack_tag(**values):
    """Pack a tag into an integer, as it appears in ``tuser``."""
    word, offset = 0, 0
    names = {name for name, _, _ in TAG_FIELDS}
    for key in values:
        if key not in names:
            raise ValueError(f"Tag has no field {key!r}")
    for name, width, _ in TAG_FIELDS:
        value = int(values.get(name, 0))
        if not 0 <= value < (1 << width):
            raise ValueError(f"Tag field {name!r} value {value!r} does not fit in {width} bits")
        word |= value << offset
        offset += width
    return word


def unpack_tag(word):
    values, offset = {}, 0
    for name, width, _ in TAG_FIELDS:
        values[name] = (word >> offset) & ((1 << width) - 1)
        offset += width
    return values


# --- Link protocol ----------------------------------------------------------------------------------
# Register access over a byte stream: the same frames go over a board's UART (to the gateware's
# bridge) and over the local socket of a Verilator simulation process. All integers big-endian.
#
#   WRITE: 'W' addr:u16 data:u32        -> status:u8
#   READ:  'R' addr:u16                 -> status:u8 data:u32
#   RESET: 'X'                          -> status:u8          (reset for LINK_RESET_CYCLES)
#   CYCLES:'C'                          -> status:u8 cycles:u64 (clock cycles since start)
#   PACKET:'P' direction:u8 sa_index:u16 length:u16 bytes[length]
#                                       -> status:u8 tag_beat:u8[LINK_TAG_BEAT_BYTES]
#                                          length:u16 bytes[length]
#
# status is the AXI4-Lite response code (0 OKAY, 2 SLVERR, 3 DECERR); 0xFF is "unknown request".
#
# PACKET runs one packet through the ESP datapath (only a far end that has one: the Verilator
# simulation of an engine built with it; the board's bridge answers UNKNOWN): direction is a
# Direction, sa_index the outbound SA's slot (0 inbound). The answer is OKAY, the tag beat of
# m_axis_in_tag / m_axis_out_tag (TAG_FIELDS then TAG_BEAT_FIELDS, packed as an integer, big
# endian) and the packet handed up (length 0 when handed_up is 0). A request the far end cannot
# carry out (a direction that is none, sa_index beyond the stream's tuser, inbound with an
# sa_index) is answered SLVERR alone, and nothing reaches the datapath.

#: Clock cycles a RESET request holds the engine in reset.
LINK_RESET_CYCLES = 16


class LinkOp(IntEnum):
    WRITE = 0x57
    READ = 0x52
    RESET = 0x58
    CYCLES = 0x43
    PACKET = 0x50


#: Bytes of a tag beat in a PACKET answer: TAG_FIELDS then TAG_BEAT_FIELDS, rounded up to bytes.
LINK_TAG_BEAT_BYTES = (tag_width() + sum(width for _, width, _ in TAG_BEAT_FIELDS) + 7) // 8


class LinkStatus(IntEnum):
    OKAY = 0
    SLVERR = 2
    DECERR = 3
    UNKNOWN = 0xFF
