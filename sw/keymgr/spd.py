"""The Security Policy Database: ordered entries plus the key manager's logical entries.

Configured entries are ordered; the first whose selectors contain a packet's 5-tuple decides
(RFC 4301 section 4.4.1), and a 5-tuple no entry matches is discarded. Point lookups go through a
:class:`~.prefixindex.PrefixIndex` on the remote address range, so they cost the number of
candidate entries for that address, not the SPD's length.

*Logical* entries (section 2.1's preserved per-5-tuple PROTECT entries and section 3's optional
protection) sit logically at the head of the SPD: a lookup sees them first. They are keyed by the
exact 5-tuple (or, for a listener's optional protection, the 3-tuple), belong to one latch, and are
never persisted.
"""

from dataclasses import dataclass
from typing import Optional

from .prefixindex import PrefixIndex
from .protection import Protection
from .selectors import Box, FiveTuple


__all__ = ["PROTECT", "BYPASS", "DISCARD", "ACTIONS", "SpdEntry", "LogicalEntry", "Decision", "Spd"]


PROTECT, BYPASS, DISCARD = "protect", "bypass", "discard"
ACTIONS = (PROTECT, BYPASS, DISCARD)


@dataclass(frozen=True)
class SpdEntry:
    name: str
    selectors: Box
    action: str
    protection: Optional[Protection] = None   # required protection of a PROTECT entry
    #: Section 3: whether applications may ask for protection of traffic this BYPASS entry matches.
    allow_optional_protection: bool = True

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SPD entry name must be a non-empty string, not {self.name!r}")
        if not isinstance(self.selectors, Box):
            raise TypeError(f"SPD entry selectors must be a Box, not {self.selectors!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"SPD action must be one of {', '.join(map(repr, ACTIONS))}, "
                             f"not {self.action!r}")
        if self.action == PROTECT and not isinstance(self.protection, Protection):
            raise ValueError(f"SPD entry {self.name!r} is PROTECT but names no required protection")
        if self.action != PROTECT and self.protection is not None:
            raise ValueError(f"SPD entry {self.name!r} is {self.action.upper()} and cannot require "
                             f"protection {self.protection}")

    @classmethod
    def parse(cls, name, *, action, local_addr="*", remote_addr="*", proto="*", local_port="*",
              remote_port="*", protection=None, allow_optional_protection=True):
        return cls(name, Box.parse(local_addr=local_addr, remote_addr=remote_addr, proto=proto,
                                   local_port=local_port, remote_port=remote_port),
                   action, Protection.coerce(protection, "protection"), allow_optional_protection)

    def as_dict(self):
        return {"name": self.name, "action": self.action, "selectors": self.selectors.as_dict(),
                "protection": self.protection.as_dict() if self.protection else None}


@dataclass(frozen=True)
class LogicalEntry:
    """A per-latch entry at the head of the SPD (never persisted)."""
    key: object               # FiveTuple or ThreeTuple
    action: str               # PROTECT or BYPASS
    protection: Optional[Protection]
    handle: int               # the latch it exists for
    reason: str               # "optional-protection", "optional-bypass" or "preserved"


@dataclass(frozen=True)
class Decision:
    action: str
    protection: Optional[Protection]
    entry: Optional[SpdEntry]          # the configured entry (None: no entry, or a logical one)
    logical: Optional[LogicalEntry] = None

    @property
    def name(self):
        if self.logical is not None:
            return f"logical:{self.logical.reason}:{self.logical.handle}"
        return self.entry.name if self.entry else "(no entry: default discard)"


class Spd:
    def __init__(self, entries=()):
        self._entries = []
        self._index = PrefixIndex()
        self.replace(entries)
        self._logical5 = {}      # FiveTuple -> LogicalEntry
        self._logical3 = {}      # ThreeTuple -> LogicalEntry

    # --- configured entries ---------------------------------------------------------------------

    @staticmethod
    def _check(entries):
        entries = list(entries)
        names = set()
        for e in entries:
            if not isinstance(e, SpdEntry):
                raise TypeError(f"SPD entries must be SpdEntry objects, not {e!r}")
            if e.name in names:
                raise ValueError(f"SPD entry name {e.name!r} is used twice")
            names.add(e.name)
        return entries

    def replace(self, entries):
        entries = self._check(entries)
        index = PrefixIndex()
        for pos, e in enumerate(entries):
            index.add(pos, *e.selectors.remote_addr)
        self._entries, self._index = entries, index

    @property
    def entries(self):
        return tuple(self._entries)

    def lookup_configured(self, point):
        best = None
        for pos in self._index.stab(point.remote_addr):
            if (best is None or pos < best) and self._entries[pos].selectors.contains(point):
                best = pos
        return self._entries[best] if best is not None else None

    def decide(self, point, *, ignore_handle=None):
        """The decision for a 5-tuple: logical entries first, then the configured SPD.
        ``ignore_handle``: decide as if that latch's logical 5-tuple entry were gone."""
        logical = self._logical5.get(point)
        if logical is not None and logical.handle == ignore_handle:
            logical = None
        logical = logical or self._logical3.get(point.three_tuple)
        if logical is not None:
            return Decision(logical.action, logical.protection, None, logical)
        entry = self.lookup_configured(point)
        if entry is None:
            return Decision(DISCARD, None, None)
        return Decision(entry.action, entry.protection, entry)

    def decide_configured(self, point, entries=None):
        """The decision of the configured entries alone (or of ``entries``, a candidate SPD)."""
        if entries is None:
            entry = self.lookup_configured(point)
        else:
            entry = next((e for e in entries if e.selectors.contains(point)), None)
        if entry is None:
            return Decision(DISCARD, None, None)
        return Decision(entry.action, entry.protection, entry)

    def first_intersecting(self, box):
        """The first configured entry whose selectors meet ``box``. Linear in the SPD's length:
        used only for child SAs wider than one 5-tuple, and the SPD is configuration-sized."""
        for e in self._entries:
            if e.selectors.intersects(box):
                return e
        return None

    # --- logical entries ------------------------------------------------------------------------

    def add_logical(self, entry):
        table = self._logical5 if isinstance(entry.key, FiveTuple) else self._logical3
        if entry.key in table:
            raise ValueError(f"A logical SPD entry already exists for {entry.key}")
        table[entry.key] = entry

    def remove_logical(self, key):
        table = self._logical5 if isinstance(key, FiveTuple) else self._logical3
        return table.pop(key, None)

    def logical(self, key):
        table = self._logical5 if isinstance(key, FiveTuple) else self._logical3
        return table.get(key)

    def logical_entries(self):
        return list(self._logical5.values()) + list(self._logical3.values())
