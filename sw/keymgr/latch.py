"""Connection latch objects, their states and the transitions between them.

States are the spec's five (section 2). The transitions the key manager makes are exactly these:

=============  ==================================  ===========================================
from           to                                  when
=============  ==================================  ===========================================
(new)          LISTENER                            create_listener_latch
(new)          LARVAL                              create_connection_latch, no matching SA
(new)          ESTABLISHED                         create_connection_latch with matching SAs (or
                                                   every optional argument given); a child SA for
                                                   a listener's 3-tuple
LARVAL         ESTABLISHED                         a child SA for its 5-tuple is accepted
LARVAL         BROKEN                              a conflicting SA, or an SPD change (break mode)
ESTABLISHED    BROKEN                              same, or a restart that lost its SAs
LISTENER,      CLOSED (then deleted)               release_latch
LARVAL,
ESTABLISHED,
BROKEN
=============  ==================================  ===========================================

Nothing leaves BROKEN except CLOSED, and CLOSED is final: the latch is deleted from the LD at once.
"""

import enum
from dataclasses import dataclass
from typing import Optional

from .errors import InvalidTransition
from .identity import Identity
from .protection import Protection
from .sad import NatInfo
from .selectors import FiveTuple, ThreeTuple


__all__ = ["LatchState", "TRANSITIONS", "LIVE_STATES", "Latch", "LatchInfo", "LatchEvent", "SaSummary"]


class LatchState(enum.Enum):
    LISTENER = "listener"
    LARVAL = "larval"
    ESTABLISHED = "established"
    BROKEN = "broken"
    CLOSED = "closed"

    def __str__(self):
        return self.value


TRANSITIONS = {
    LatchState.LISTENER: frozenset({LatchState.CLOSED}),
    LatchState.LARVAL: frozenset({LatchState.ESTABLISHED, LatchState.BROKEN, LatchState.CLOSED}),
    LatchState.ESTABLISHED: frozenset({LatchState.BROKEN, LatchState.CLOSED}),
    LatchState.BROKEN: frozenset({LatchState.CLOSED}),
    LatchState.CLOSED: frozenset(),
}

LIVE_STATES = frozenset({LatchState.LARVAL, LatchState.ESTABLISHED})


class Latch:
    """The LD's mutable record of one latch (the key manager owns it; callers see :class:`LatchInfo`)."""

    __slots__ = ("handle", "state", "tuple", "requested", "requested_peer", "requested_local",
                 "bypass", "optional", "policy_action", "policy_protection", "policy_entry",
                 "peer", "local_id", "protection", "nat", "sa_ids", "created_version",
                 "established_version", "version", "listener", "holder", "reason", "preserved")

    def __init__(self, handle, state, tuple_, *, requested=None, requested_peer=None,
                 requested_local=None, bypass=False, optional=None, policy_action=None,
                 policy_protection=None, policy_entry=None, holder=None, listener=None):
        self.handle = handle
        self.state = state
        self.tuple = tuple_
        self.requested = requested              # application's requested protection (a minimum)
        self.requested_peer = requested_peer
        self.requested_local = requested_local
        self.bypass = bypass                    # section 3: a privileged BYPASS latch
        self.optional = optional                # "protect"/"bypass" when a section 3 logical entry exists
        self.policy_action = policy_action      # the SPD's decision at creation
        self.policy_protection = policy_protection
        self.policy_entry = policy_entry
        self.peer = None                        # latched once ESTABLISHED
        self.local_id = None
        self.protection = None
        self.nat = None
        self.sa_ids = []
        self.created_version = None
        self.established_version = None
        self.version = None                     # version of the latest change to this latch
        self.listener = listener                # the listener latch it was created from
        self.holder = holder
        self.reason = None                      # why it broke
        self.preserved = False                  # a section 2.1 logical PROTECT entry preserves it

    @property
    def is_listener(self):
        return isinstance(self.tuple, ThreeTuple)

    @property
    def requirement(self):
        """The protection an SA must meet to establish this latch: the application's request,
        else the SPD's."""
        return self.requested if self.requested is not None else self.policy_protection

    def clone(self):
        """A copy to change: the key manager builds the new state, persists it, commits the engine
        and only then swaps it into the LD, so a failure at any step leaves the old one intact."""
        new = Latch.__new__(Latch)
        for name in Latch.__slots__:
            setattr(new, name, getattr(self, name))
        new.sa_ids = list(self.sa_ids)
        return new

    def move(self, state):
        if state not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"Latch {self.handle} cannot go from {self.state} to {state}")
        self.state = state

    def establish(self, peer, local_id, protection, nat, version):
        """LARVAL -> ESTABLISHED, fixing the latched parameters (never changed afterwards)."""
        self.move(LatchState.ESTABLISHED)
        self.peer, self.local_id, self.protection, self.nat = peer, local_id, protection, nat
        self.established_version = version

    # --- persistence ----------------------------------------------------------------------------

    def to_record(self):
        def d(x):
            return x.as_dict() if x is not None else None
        return {
            "handle": self.handle, "state": self.state.value,
            "kind": "listener" if self.is_listener else "connection", "tuple": list(self.tuple),
            "requested": d(self.requested), "requested_peer": d(self.requested_peer),
            "requested_local": d(self.requested_local), "bypass": self.bypass,
            "optional": self.optional, "policy_action": self.policy_action,
            "policy_protection": d(self.policy_protection), "policy_entry": self.policy_entry,
            "peer": d(self.peer), "local_id": d(self.local_id), "protection": d(self.protection),
            "nat": d(self.nat), "sa_ids": list(self.sa_ids),
            "created_version": self.created_version,
            "established_version": self.established_version, "version": self.version,
            "listener": self.listener, "reason": self.reason, "preserved": self.preserved,
        }

    @classmethod
    def from_record(cls, r):
        def ident(x):
            return Identity.from_dict(x) if x is not None else None

        def prot(x):
            return Protection.from_dict(x) if x is not None else None
        tuple_ = (ThreeTuple(*r["tuple"]) if r["kind"] == "listener" else FiveTuple(*r["tuple"]))
        latch = cls(r["handle"], LatchState(r["state"]), tuple_, requested=prot(r["requested"]),
                    requested_peer=ident(r["requested_peer"]),
                    requested_local=ident(r["requested_local"]), bypass=r["bypass"],
                    optional=r["optional"], policy_action=r["policy_action"],
                    policy_protection=prot(r["policy_protection"]), policy_entry=r["policy_entry"],
                    listener=r["listener"])
        latch.peer, latch.local_id = ident(r["peer"]), ident(r["local_id"])
        latch.protection, latch.nat = prot(r["protection"]), NatInfo.from_dict(r["nat"])
        latch.sa_ids = list(r["sa_ids"])
        latch.created_version = r["created_version"]
        latch.established_version = r["established_version"]
        latch.version = r["version"]
        latch.reason, latch.preserved = r["reason"], r["preserved"]
        return latch


@dataclass(frozen=True)
class SaSummary:
    sa_id: int
    inbound_spi: int
    inbound_index: int
    inbound_generation: int
    outbound_spi: int
    outbound_index: int
    outbound_generation: int


@dataclass(frozen=True)
class LatchInfo:
    """Everything latched, as ``inquire_latch`` returns it (an immutable snapshot)."""
    handle: int
    kind: str                              # "listener" or "connection"
    state: LatchState
    tuple: object                          # FiveTuple or ThreeTuple (encoded; see .tuple_dict)
    tuple_dict: dict
    requested_protection: Optional[Protection]
    requested_peer: Optional[Identity]
    requested_local_id: Optional[Identity]
    peer: Optional[Identity]               # with its authentication information
    local_id: Optional[Identity]
    protection: Optional[Protection]       # type and quality of protection and mode, once latched
    bypass: bool
    nat: Optional[NatInfo]
    sas: tuple                             # SaSummary of each child SA bound to it
    created_version: Optional[int]
    established_version: Optional[int]
    version: Optional[int]
    listener: Optional[int]
    reason: Optional[str]
    optional: Optional[str]
    preserved: bool
    policy_entry: Optional[str]

    @property
    def type_of_protection(self):
        return self.protection.type if self.protection else None

    @property
    def mode(self):
        return self.protection.mode if self.protection else None

    def as_dict(self):
        def d(x):
            return x.as_dict() if x is not None else None
        return {
            "handle": self.handle, "kind": self.kind, "state": self.state.value,
            "tuple": self.tuple_dict, "requested_protection": d(self.requested_protection),
            "requested_peer": d(self.requested_peer), "requested_local_id": d(self.requested_local_id),
            "peer": d(self.peer), "local_id": d(self.local_id), "protection": d(self.protection),
            "bypass": self.bypass, "nat": d(self.nat),
            "sas": [s.__dict__.copy() for s in self.sas],
            "created_version": self.created_version,
            "established_version": self.established_version, "version": self.version,
            "listener": self.listener, "reason": self.reason, "optional": self.optional,
            "preserved": self.preserved, "policy_entry": self.policy_entry,
        }


@dataclass(frozen=True)
class LatchEvent:
    """A notification to a latch's holder.

    ``kind`` is ``"created"`` (sent to a listener's holder: ``handle`` is the new connection latch,
    ``listener`` the listener), ``"broken"`` (``reason`` says why) or ``"closed"``."""
    kind: str
    handle: int
    version: int
    reason: Optional[str] = None
    listener: Optional[int] = None
