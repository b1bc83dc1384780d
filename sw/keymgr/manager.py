"""The key manager: the latch API of section 2.1 and the IKE daemon's side of it.

Every change follows one protocol (:class:`_Change`), which is how the race rule of section 2.1 is
kept: "this version number must be incremented atomically relative to the SAD and the LD, including
SAD subsets stored on IPsec offload hardware".

1. Validate everything; build the *new* latch records as copies (nothing in memory changes yet).
2. Stage the engine's SA installs and deletions (invisible to the datapath until commit).
3. Open one SQLite transaction and write the new LD and SAD rows, stamped with the next version.
4. ``engine.commit()`` (or ``engine.bump_version()`` when no SA changed): the SA table and the
   version change together in the engine, in one step.
5. Commit SQLite, then swap the new records into the in-memory LD, SAD and SPD.
6. Tell the holders.

A failure in steps 1-4 aborts the engine's staged changes and rolls SQLite back: nothing changed.
A crash between 4 and 5 leaves the engine one change ahead of the database; the reconciliation at
the next start deletes SAs the database does not know and breaks latches whose SAs are gone.
So every change to latching state moves the version exactly once, and the LD records that version.
"""

import logging
import sqlite3
from dataclasses import dataclass
from typing import Optional

from ipchan.hw.contract import Direction, SlotState
from ipchan.sw.driver import Engine, EngineError, SaConfig

from .errors import (ChildSaRejected, InvalidTransition, LatchConflict, PersistenceError,
                     PolicyError, PrivilegeError, UnknownChildSa, UnknownLatch)
from .identity import Identity
from .latch import LIVE_STATES, Latch, LatchEvent, LatchInfo, LatchState, SaSummary
from .ld import LatchDatabase
from .pad import Pad
from .protection import Protection
from .sad import ChildSa, EngineRef, NatInfo, Sad
from .selectors import DIMS, Box, FiveTuple, ThreeTuple
from .spd import BYPASS, DISCARD, PROTECT, LogicalEntry, Spd, SpdEntry
from .store import Store


__all__ = ["KeyManager", "ChildSaProposal", "SelectorProposal", "AcceptResult", "NarrowResult",
           "SpdChangeResult",
           "IkeEvent", "RestartReport"]


log = logging.getLogger("ipchan.keymgr")


# --- What the IKE daemon hands over and gets back ----------------------------------------------

@dataclass(frozen=True)
class ChildSaProposal:
    """A negotiated child SA, before the key manager accepts it.

    ``selectors`` is the proposed box of traffic selectors (from our side: local and remote);
    ``trigger`` is the 5-tuple of the packet that caused the exchange when IKE knows it (the first
    traffic selector of RFC 7296 section 2.9), which narrowing keeps inside the result.
    """
    peer: Identity
    selectors: Box
    protection: Protection
    inbound_spi: int
    outbound_spi: int
    inbound_key: bytes
    inbound_salt: bytes
    outbound_key: bytes
    outbound_salt: bytes
    local_id: Optional[Identity] = None
    trigger: Optional[FiveTuple] = None
    nat: Optional[NatInfo] = None

    def __post_init__(self):
        if not isinstance(self.peer, Identity):
            raise TypeError(f"Peer must be an Identity, not {self.peer!r}")
        if self.local_id is not None and not isinstance(self.local_id, Identity):
            raise TypeError(f"Local ID must be an Identity or None, not {self.local_id!r}")
        if not isinstance(self.selectors, Box):
            raise TypeError(f"Selectors must be a Box, not {self.selectors!r}")
        if not isinstance(self.protection, Protection):
            raise TypeError(f"Protection must be a Protection, not {self.protection!r}")
        if self.trigger is not None:
            if not isinstance(self.trigger, FiveTuple):
                raise TypeError(f"Trigger must be a FiveTuple or None, not {self.trigger!r}")
            if not self.selectors.contains(self.trigger):
                raise ValueError(f"Trigger {self.trigger} is outside the proposed selectors {self.selectors}")
        if self.nat is not None and not isinstance(self.nat, NatInfo):
            raise TypeError(f"NAT information must be a NatInfo or None, not {self.nat!r}")
        want = self.protection.key_size.key_bytes
        for name in ("inbound_key", "outbound_key"):
            key = getattr(self, name)
            if not isinstance(key, (bytes, bytearray)):
                raise TypeError(f"{name.replace('_', ' ').capitalize()} must be bytes, "
                                f"not {type(key).__name__}")
            if len(key) != want:
                raise ValueError(f"{name.replace('_', ' ').capitalize()} must be {want} bytes for "
                                 f"AES-{8 * want}, not {len(key)} bytes")
        # SaConfig checks SPIs, salts and the rest, naming the bad value. (The two directions may
        # share an SPI: they are different SAs, and only inbound SPIs must be unique.)
        self.configs()

    def configs(self):
        p = self.protection
        inbound = SaConfig(self.inbound_spi, Direction.INBOUND, p.mode, p.algorithm,
                           bytes(self.inbound_key), bytes(self.inbound_salt), esn=p.esn,
                           replay_window=p.replay_window)
        outbound = SaConfig(self.outbound_spi, Direction.OUTBOUND, p.mode, p.algorithm,
                            bytes(self.outbound_key), bytes(self.outbound_salt), esn=p.esn,
                            replay_window=0)
        return inbound, outbound

    def __repr__(self):
        return (f"ChildSaProposal(peer={self.peer}, selectors={self.selectors}, "
                f"protection={self.protection}, spis=({self.inbound_spi:#x}, {self.outbound_spi:#x}))")


@dataclass(frozen=True)
class SelectorProposal:
    """What narrowing needs of a child-SA proposal, before any key exists (IKE narrows while it
    builds its answer): the peer, the proposed selectors, the protection, and the trigger."""
    peer: Identity
    selectors: Box
    protection: Protection
    local_id: Optional[Identity] = None
    trigger: Optional[FiveTuple] = None

    def __post_init__(self):
        if not isinstance(self.peer, Identity):
            raise TypeError(f"Peer must be an Identity, not {self.peer!r}")
        if not isinstance(self.selectors, Box):
            raise TypeError(f"Selectors must be a Box, not {self.selectors!r}")
        if not isinstance(self.protection, Protection):
            raise TypeError(f"Protection must be a Protection, not {self.protection!r}")
        if self.local_id is not None and not isinstance(self.local_id, Identity):
            raise TypeError(f"Local ID must be an Identity or None, not {self.local_id!r}")
        if self.trigger is not None:
            if not isinstance(self.trigger, FiveTuple):
                raise TypeError(f"Trigger must be a FiveTuple or None, not {self.trigger!r}")
            if not self.selectors.contains(self.trigger):
                raise ValueError(f"Trigger {self.trigger} is outside the proposed selectors {self.selectors}")


@dataclass(frozen=True)
class NarrowResult:
    """What :meth:`KeyManager.narrow` would make of a proposal."""
    selectors: Optional[Box]          # None: policy refuses the proposal
    latch: Optional[int] = None       # the one live latch whose 5-tuple the result is exactly
    listener: Optional[int] = None    # the listener whose 3-tuple the result is on
    conflict: Optional[str] = None    # why the latch cannot take this SA (section 2.4)
    policy: Optional[str] = None      # the SPD entry (or refusal reason)


@dataclass(frozen=True)
class AcceptResult:
    sa_id: int
    selectors: Box
    inbound: EngineRef
    outbound: EngineRef
    version: int
    latch: Optional[int] = None        # latch established or joined by this SA
    created: Optional[int] = None      # connection latch created from a listener
    broken: tuple = ()                 # latches broken (before the SA was accepted)


@dataclass(frozen=True)
class SpdChangeResult:
    preserved: tuple
    broken: tuple
    version: Optional[int]             # None: no latch was affected, the version did not move


@dataclass(frozen=True)
class IkeEvent:
    """A request to the IKE daemon: ``"acquire"`` (negotiate child SAs for ``five_tuple``) or
    ``"delete"`` (tell the peer with an informational Delete payload that ``sa`` is gone)."""
    kind: str
    five_tuple: Optional[FiveTuple] = None
    sa: Optional[ChildSa] = None
    protection: Optional[Protection] = None
    peer: Optional[Identity] = None


@dataclass(frozen=True)
class RestartReport:
    restored: tuple                    # handles restored as they were
    broken: tuple                      # (handle, reason)
    lost_sas: tuple                    # child SA ids whose engine entries were gone or different
    orphans_deleted: tuple             # engine slots no child SA owned
    version: int
    dropped_logical: tuple = ()        # listeners restored without their optional-protection entry


# --- One change: engine staging, one SQLite transaction, one commit ------------------------------

class _Change:
    def __init__(self, km):
        self.km = km
        self.engine = km.engine
        self.version = None
        self._writes = []
        self._applies = []
        self.events = []          # (holder, LatchEvent)
        self.ike = []             # IkeEvent
        self.installed = 0

    def __enter__(self):
        if self.engine.staged():
            # Someone left changes staged (another user of the engine, or a crashed attempt):
            # they are not ours to commit.
            self.engine.abort()
        self.version = self.engine.version() + 1
        return self

    def install(self, cfg):
        ref = self.engine.install(cfg)
        self.installed += 1
        return ref

    def delete(self, index):
        self.engine.delete(index)
        self.installed += 1

    def write(self, fn):
        self._writes.append(fn)

    def apply(self, fn):
        self._applies.append(fn)

    def put_latch(self, old, new):
        """Record ``new`` (a changed copy of ``old``, or a new latch when ``old`` is None)."""
        new.version = self.version
        self._writes.append(lambda s: s.put_latch(new))
        ld = self.km.ld
        if old is None:
            self._applies.append(lambda: ld.add(new))
        else:
            self._applies.append(lambda: ld.replace(old, new))

    def drop_latch(self, old):
        self._writes.append(lambda s: s.delete_latch(old.handle))
        self._applies.append(lambda: self.km.ld.remove(old))

    def notify(self, latch, event_kind, handle, reason=None, listener=None):
        if latch.holder is not None:
            self.events.append((latch.holder, (event_kind, handle, reason, listener)))

    def __exit__(self, exc_type, exc, tb):
        engine, store, km = self.engine, self.km.store, self.km
        if exc_type is not None:
            if engine.staged():
                engine.abort()
            return False
        try:
            store.begin()
            for fn in self._writes:
                fn(store)
            store.set_meta("version", self.version)
            store.set_meta("next_handle", km._next_handle)
            store.set_meta("next_sa_id", km._next_sa_id)
            version = engine.commit() if engine.staged() else engine.bump_version()
        except BaseException:
            store.rollback()
            if engine.staged():
                engine.abort()
            raise
        if version != self.version:
            store.rollback()
            km._stuck = (f"the engine's version moved to {version}, expected {self.version}: "
                         f"another writer uses this engine")
            raise PersistenceError(f"Engine version moved to {version}, expected {self.version}: "
                                   f"another writer uses this engine")
        try:
            store.commit()
        except sqlite3.Error as e:
            try:
                store.rollback()
            except sqlite3.Error:
                pass
            km._stuck = f"the engine committed version {version} but the database did not ({e})"
            raise PersistenceError(f"Engine committed version {version} but the database did not "
                                   f"({e}); restart the key manager to reconcile") from e
        for fn in self._applies:
            fn()
        km.changes += 1
        for holder, (kind, handle, reason, listener) in self.events:
            km._deliver(holder, LatchEvent(kind, handle, version, reason, listener))
        for event in self.ike:
            km._ike_event(event)
        return False


def _check_handle(handle):
    if not isinstance(handle, int) or isinstance(handle, bool):
        raise TypeError(f"Latch handle must be an integer, not {handle!r}")
    return handle


def _check_holder(holder):
    if holder is not None and not callable(holder):
        raise TypeError(f"Holder must be a callable taking a LatchEvent, or None, not {holder!r}")
    return holder


class KeyManager:
    """Connection latching over one engine.

    ``spd_change``: what an SPD change that would lower or bypass a latched connection's protection
    does: ``"preserve"`` (default: keep a logical per-5-tuple PROTECT entry at the head of the SPD)
    or ``"break"`` (break the latch and tell its holder before the change takes place).
    ``conflict``: section 2.4: ``"terminate"`` (default: break the existing latch, tell its holder,
    then accept the newcomer) or ``"reject"`` (refuse the newcomer's child SA).
    ``allow_optional_protection``: whether applications may ask for protection where the SPD says
    BYPASS (section 3); BYPASS where it says PROTECT always needs ``privileged=True``.
    ``ike``: a callable that receives :class:`IkeEvent` requests for the IKE daemon.
    """

    SPD_CHANGE_MODES = ("preserve", "break")
    CONFLICT_MODES = ("terminate", "reject")

    def __init__(self, engine, *, spd=(), pad=(), db=":memory:", spd_change="preserve",
                 conflict="terminate", allow_optional_protection=True, ike=None,
                 synchronous="FULL"):
        if not isinstance(engine, Engine):
            raise TypeError(f"Engine must be an ipchan.sw.driver.Engine, not {engine!r}")
        if spd_change not in self.SPD_CHANGE_MODES:
            raise ValueError(f"spd_change must be 'preserve' or 'break', not {spd_change!r}")
        if conflict not in self.CONFLICT_MODES:
            raise ValueError(f"conflict must be 'terminate' or 'reject', not {conflict!r}")
        if not isinstance(allow_optional_protection, bool):
            raise TypeError(f"allow_optional_protection must be a bool, not {allow_optional_protection!r}")
        if ike is not None and not callable(ike):
            raise TypeError(f"ike must be a callable taking an IkeEvent, or None, not {ike!r}")
        self.engine = engine
        self.spd = spd if isinstance(spd, Spd) else Spd(spd)
        self.pad = pad if isinstance(pad, Pad) else Pad(pad)
        self.spd_change = spd_change
        self.conflict = conflict
        self.allow_optional_protection = allow_optional_protection
        self._ike = ike
        self.ld = LatchDatabase()
        self.sad = Sad()
        self.store = db if isinstance(db, Store) else Store(db, synchronous=synchronous)
        self._next_handle = int(self.store.get_meta("next_handle", 1))
        self._next_sa_id = int(self.store.get_meta("next_sa_id", 1))
        #: Changes committed by this instance (each moved the engine's version once).
        self.changes = 0
        self.holder_errors = 0
        self._stuck = None
        self.restart_report = None
        if self.store.latch_records() or self.store.sa_records() or self.store.get_meta("version"):
            self.restart_report = self._reconcile()

    # --- notifications ----------------------------------------------------------------------------

    def _deliver(self, holder, event):
        try:
            holder(event)
        except Exception:
            # A holder's bug must not undo a committed change or stop other holders hearing.
            self.holder_errors += 1
            log.exception("Latch holder %r failed on %r", holder, event)

    def _ike_event(self, event):
        if self._ike is None:
            return
        try:
            self._ike(event)
        except Exception:
            log.exception("IKE event handler failed on %r", event)

    def set_ike_handler(self, ike):
        """Set (or clear, with None) the callable that receives :class:`IkeEvent` requests."""
        if ike is not None and not callable(ike):
            raise TypeError(f"ike must be a callable taking an IkeEvent, or None, not {ike!r}")
        self._ike = ike

    def set_holder(self, handle, holder):
        """Attach a holder to a latch (after a restart, holders are not persisted)."""
        latch = self._latch(handle)
        latch.holder = _check_holder(holder)

    # --- reading ----------------------------------------------------------------------------------

    def _latch(self, handle):
        _check_handle(handle)
        latch = self.ld.get(handle)
        if latch is None:
            raise UnknownLatch(f"No latch has handle {handle} (never created, or released)")
        return latch

    def version(self):
        return self.engine.version()

    def inquire_latch(self, handle):
        """INQUIRE_LATCH: the state and every latched parameter of a latch."""
        latch = self._latch(handle)
        return self._info(latch)

    def _info(self, latch):
        sas = []
        for sa_id in latch.sa_ids:
            sa = self.sad.get(sa_id)
            if sa is not None:
                sas.append(SaSummary(sa.sa_id, sa.inbound.spi, sa.inbound.index, sa.inbound.generation,
                                     sa.outbound.spi, sa.outbound.index, sa.outbound.generation))
        return LatchInfo(
            handle=latch.handle, kind="listener" if latch.is_listener else "connection",
            state=latch.state, tuple=latch.tuple, tuple_dict=latch.tuple.as_dict(),
            requested_protection=latch.requested, requested_peer=latch.requested_peer,
            requested_local_id=latch.requested_local, peer=latch.peer, local_id=latch.local_id,
            protection=latch.protection, bypass=latch.bypass, nat=latch.nat, sas=tuple(sas),
            created_version=latch.created_version, established_version=latch.established_version,
            version=latch.version, listener=latch.listener, reason=latch.reason,
            optional=latch.optional, preserved=latch.preserved, policy_entry=latch.policy_entry)

    def check_inbound(self, handle, sa_index, generation, version):
        """May an inbound packet for this latch's connection be accepted, judged by the tag the
        engine gave it alone: the SA table slot and generation that protected it and the version at
        which its SA was looked up?

        Yes only if the latch is ESTABLISHED (and not a BYPASS latch), the lookup happened at or
        after the version the latch was established at ("ULPs may not be able to trust some
        packets" that raced with the change), and that slot and generation hold an SA bound to this
        latch now (a generation names one SA: a reused slot reads a new one). Packets of an SA that
        has since been deleted are refused, which the ULP sees as packet loss; keeping the SAs of
        the past would let a generation that wrapped around name another SA."""
        latch = self._latch(handle)
        for name, value in (("SA index", sa_index), ("Generation", generation), ("Version", version)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")
        if latch.state != LatchState.ESTABLISHED or latch.bypass:
            return False
        if version < latch.established_version:
            return False
        for sa_id in latch.sa_ids:
            sa = self.sad.get(sa_id)
            if sa is not None and (sa.inbound.index, sa.inbound.generation) == (sa_index, generation):
                return True
        return False

    def latches(self):
        """Handles of every latch in the LD, in creation order."""
        return sorted(self.ld.by_handle)

    def find_latch(self, local_addr, remote_addr, proto, local_port, remote_port):
        """The LARVAL or ESTABLISHED latch on a 5-tuple, or None (the ULP's "was one created?")."""
        latch = self.ld.live.get(FiveTuple.parse(local_addr, remote_addr, proto, local_port, remote_port))
        return latch.handle if latch else None

    def child_sa(self, sa_id):
        sa = self.sad.get(sa_id)
        if sa is None:
            raise UnknownChildSa(f"No child SA has id {sa_id!r}")
        return sa

    def child_sas(self):
        return list(self.sad)

    # --- policy -----------------------------------------------------------------------------------

    def _connection_policy(self, ft, qop, peer_id, local_id, bypass, privileged):
        """Section 2.1/3: what the SPD permits for a new connection latch.

        Returns (action, required protection, entry name, logical entry kind or None)."""
        decision = self.spd.decide(ft)
        if decision.logical is not None and isinstance(decision.logical.key, FiveTuple):
            # Only a live latch on this 5-tuple has a 5-tuple logical entry; checked by the caller.
            raise LatchConflict(f"A logical SPD entry for {ft} exists for latch {decision.logical.handle}")
        if bypass:
            if qop is not None:
                raise ValueError("A BYPASS latch cannot also request protection (qop)")
            if peer_id is not None or local_id is not None:
                raise ValueError("A BYPASS latch has no IPsec peer: it cannot request a peer ID or a "
                                 "local ID")
            if not privileged:
                raise PrivilegeError(f"Bypassing protection for {ft} needs a privileged caller "
                                     f"(section 3)")
            if decision.action == DISCARD:
                raise PolicyError(f"SPD entry {decision.name!r} discards {ft}; it cannot be bypassed")
            if decision.action == BYPASS:
                return BYPASS, None, decision.name, None
            return BYPASS, None, decision.name, "bypass"
        if decision.action == DISCARD:
            raise PolicyError(f"SPD entry {decision.name!r} discards {ft}")
        if decision.logical is not None and decision.action == PROTECT:
            # A listener's optional protection covers this 3-tuple: this connection gets its own.
            if qop is not None and not qop.meets(decision.protection):
                raise PolicyError(f"Requested protection {qop} is below what {decision.name!r} "
                                  f"requires ({decision.protection})")
            return PROTECT, qop or decision.protection, decision.name, "protect"
        if decision.action == BYPASS:
            if qop is None:
                raise PolicyError(f"SPD entry {decision.name!r} bypasses {ft}; request protection "
                                  f"with qop= to latch it (optional protection, section 3)")
            entry = decision.entry
            if not self.allow_optional_protection or (entry is not None and
                                                      not entry.allow_optional_protection):
                raise PolicyError(f"Policy does not allow optional protection of {ft} "
                                  f"(SPD entry {decision.name!r})")
            return PROTECT, qop, decision.name, "protect"
        if qop is not None and not qop.meets(decision.protection):
            raise PolicyError(f"Requested protection {qop} is below what SPD entry "
                              f"{decision.name!r} requires ({decision.protection})")
        return PROTECT, decision.protection, decision.name, None

    # --- the ULP interface (section 2.1) ----------------------------------------------------------

    def create_listener_latch(self, local_addr, proto, local_port, *, qop=None, holder=None):
        """CREATE_LISTENER_LATCH(3-tuple, [type and quality of protection]) -> handle."""
        tt = ThreeTuple.parse(local_addr, proto, local_port)
        qop = Protection.coerce(qop)
        if qop is not None:
            qop.check_engine(self.engine.params)
        _check_holder(holder)
        existing = self.ld.listeners.get(tt)
        if existing is not None:
            raise LatchConflict(f"A listener latch for {tt} already exists (handle {existing.handle})")
        box = tt.box()
        optional = None
        required = None
        first = self.spd.first_intersecting(box)
        if first is None or first.action == DISCARD:
            raise PolicyError(f"The SPD {'discards' if first else 'has no entry for'} traffic to {tt}")
        if first.action == BYPASS:
            if qop is None:
                raise PolicyError(f"SPD entry {first.name!r} bypasses traffic to {tt}; request "
                                  f"protection with qop= to latch it (optional protection, section 3)")
            if not self.allow_optional_protection or not first.allow_optional_protection:
                raise PolicyError(f"Policy does not allow optional protection of {tt} "
                                  f"(SPD entry {first.name!r})")
            optional = "protect"
        else:
            required = first.protection
        if qop is not None:
            for e in self.spd.entries:
                if e.action == PROTECT and e.selectors.intersects(box) and not qop.meets(e.protection):
                    raise PolicyError(f"Requested protection {qop} is below what SPD entry "
                                      f"{e.name!r} requires ({e.protection})")
        handle = self._alloc_handle()
        latch = Latch(handle, LatchState.LISTENER, tt, requested=qop, optional=optional,
                      policy_action=PROTECT, policy_protection=qop if optional else required,
                      policy_entry=first.name, holder=holder)
        with self._change() as ch:
            latch.created_version = ch.version
            ch.put_latch(None, latch)
            if optional:
                entry = LogicalEntry(tt, PROTECT, qop, handle, "optional-protection")
                ch.apply(lambda: self.spd.add_logical(entry))
        return handle

    def create_connection_latch(self, local_addr, remote_addr, proto, local_port, remote_port, *,
                                qop=None, peer_id=None, local_id=None, holder=None, bypass=False,
                                privileged=False):
        """CREATE_CONNECTION_LATCH(5-tuple, [QoP], [peer ID], [local ID]) -> handle.

        ``bypass=True`` asks for the connection to be bypassed where the SPD would protect it
        (section 3), which needs ``privileged=True``."""
        ft = FiveTuple.parse(local_addr, remote_addr, proto, local_port, remote_port)
        qop = Protection.coerce(qop)
        if qop is not None:
            qop.check_engine(self.engine.params)
        peer_id = Identity.coerce(peer_id, "peer ID")
        local_id = Identity.coerce(local_id, "local ID")
        _check_holder(holder)
        if not isinstance(bypass, bool):
            raise TypeError(f"bypass must be a bool, not {bypass!r}")
        if not isinstance(privileged, bool):
            raise TypeError(f"privileged must be a bool, not {privileged!r}")
        existing = self.ld.live.get(ft)
        if existing is not None:
            raise LatchConflict(f"Latch {existing.handle} is already {existing.state} on {ft}")
        action, required, entry_name, optional = self._connection_policy(ft, qop, peer_id, local_id,
                                                                         bypass, privileged)
        sas = self.sad.matching(ft)
        if bypass and sas:
            raise LatchConflict(f"Child SA {sas[0].sa_id} protects {ft}; it cannot be bypassed")
        if sas:
            first = sas[0]
            for sa in sas[1:]:
                if not sa.same_association(first.peer, first.protection):
                    raise LatchConflict(f"Conflicting child SAs {first.sa_id} and {sa.sa_id} match "
                                        f"{ft} (different peer or protection)")
            why = self._unsuitable(first.peer, first.local_id, first.protection,
                                   qop or required, peer_id, local_id)
            if why:
                raise LatchConflict(f"Child SA {first.sa_id} already protects {ft} but {why}")
        handle = self._alloc_handle()
        latch = Latch(handle, LatchState.LARVAL, ft, requested=qop, requested_peer=peer_id,
                      requested_local=local_id, bypass=bypass, optional=optional,
                      policy_action=action, policy_protection=required, policy_entry=entry_name,
                      holder=holder)
        acquire = None
        with self._change() as ch:
            latch.created_version = ch.version
            if bypass:
                latch.establish(None, local_id, None, None, ch.version)
            elif sas:
                latch.establish(sas[0].peer, sas[0].local_id, sas[0].protection, sas[0].nat, ch.version)
                latch.sa_ids = [sa.sa_id for sa in sas]
            elif qop is not None and peer_id is not None and local_id is not None:
                # "If the caller provided all the optional arguments ... ESTABLISHED directly."
                latch.establish(peer_id, local_id, qop, None, ch.version)
            else:
                acquire = IkeEvent("acquire", five_tuple=ft, protection=latch.requirement, peer=peer_id)
            ch.put_latch(None, latch)
            if optional:
                entry = LogicalEntry(ft, BYPASS if bypass else PROTECT, None if bypass else required, handle,
                                     "optional-bypass" if bypass else "optional-protection")
                ch.apply(lambda: self.spd.add_logical(entry))
            if acquire:
                # "If there exist no child SAs matching the given 5-tuple then the key manager
                # SHOULD try to create a pair of child SAs for that 5-tuple."
                ch.ike.append(acquire)
        return handle

    def release_latch(self, handle):
        """RELEASE_LATCH: the latch goes to CLOSED and is deleted; SAs made only for it go too."""
        latch = self._latch(handle)
        with self._change() as ch:
            closing = latch.clone()
            closing.move(LatchState.CLOSED)
            if latch.state in LIVE_STATES:
                self._delete_dedicated(ch, latch)
            ch.drop_latch(latch)
            self._drop_logical(ch, latch)
            ch.notify(latch, "closed", handle)
        return ch.version

    # --- helpers shared by the changes ------------------------------------------------------------

    def _alloc_handle(self):
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def _change(self):
        if self._stuck:
            # The engine and the database disagree; only a restart (reconciliation) can settle it.
            raise PersistenceError(f"The key manager refuses changes until it is restarted: {self._stuck}")
        return _Change(self)

    @staticmethod
    def _unsuitable(peer, local_id, protection, required, want_peer, want_local):
        """Why an SA with these parameters cannot serve a latch with these wishes (or None)."""
        if want_peer is not None and peer != want_peer:
            return f"its peer {peer} is not the requested peer {want_peer}"
        if want_local is not None and local_id != want_local:
            return f"its local ID {local_id} is not the requested local ID {want_local}"
        if not protection.meets(required):
            return f"its protection {protection} does not meet {required}"
        return None

    def _drop_logical(self, ch, latch):
        key = latch.tuple
        if latch.optional or latch.preserved:
            ch.apply(lambda: self.spd.remove_logical(key))

    def _delete_dedicated(self, ch, latch):
        """Stage deletion of the child SAs whose selectors are exactly this latch's 5-tuple and that
        serve no other latch (section 2.1: the key manager SHOULD delete SAs matching the latch)."""
        for sa in self.sad.exactly(latch.tuple):
            others = [h for h in self.ld.bound.get(sa.sa_id, ()) if h != latch.handle]
            if others:
                continue
            ch.delete(sa.inbound.index)
            ch.delete(sa.outbound.index)
            sa_id = sa.sa_id
            ch.write(lambda s, sa_id=sa_id: s.delete_sa(sa_id))
            ch.apply(lambda sa_id=sa_id: self.sad.remove(sa_id))
            ch.ike.append(IkeEvent("delete", five_tuple=latch.tuple, sa=sa, peer=sa.peer))

    def _break_in(self, ch, latch, reason):
        """Within change ``ch``: move ``latch`` to BROKEN, delete its dedicated SAs, drop its logical
        SPD entries, and queue the holder's notification."""
        new = latch.clone()
        new.move(LatchState.BROKEN)
        new.reason = reason
        self._delete_dedicated(ch, latch)
        for sa_id in list(new.sa_ids):
            new.sa_ids.remove(sa_id)
        new.preserved = False
        new.optional = None
        self._drop_logical(ch, latch)
        ch.put_latch(latch, new)
        ch.notify(latch, "broken", latch.handle, reason)
        return new

    def break_latch(self, handle, reason="broken by the administrator"):
        """Break a LARVAL or ESTABLISHED latch and tell its holder."""
        latch = self._latch(handle)
        if latch.state not in LIVE_STATES:
            raise InvalidTransition(f"Latch {handle} is {latch.state}; only LARVAL and ESTABLISHED "
                                    f"latches can be broken")
        with self._change() as ch:
            self._break_in(ch, latch, reason)
        return ch.version

    # --- the IKE daemon's side: narrowing ---------------------------------------------------------

    def _policy_box(self, box, p):
        """Narrow ``box`` to what the SPD decision at ``p`` covers. Returns (decision, box or None)."""
        decision = self.spd.decide(p)
        if decision.action != PROTECT:
            return decision, None
        if decision.logical is not None:
            key = decision.logical.key
            return decision, (p.box() if isinstance(key, FiveTuple) else box.intersection(key.box()))
        b = box.intersection(decision.entry.selectors)
        # Exclude earlier entries the box still meets (the SPD need not be decorrelated).
        for e in self.spd.entries:
            if e is decision.entry:
                break
            if e.selectors.intersects(b):
                b = _exclude(b, e.selectors, p)
        return decision, b

    def _narrow_latches(self, box, p):
        """RFC 7296 section 2.9 style narrowing around ``p``: the result contains ``p`` and either
        no LARVAL/ESTABLISHED latch and no listener 3-tuple, or is exactly ``p``."""
        ld = self.ld
        for d in range(len(DIMS)):
            points = ld.live_in_box(box)
            lines = ld.listeners_in_box(box)
            if not points and not lines:
                return box
            values = {latch.tuple[d] for latch in points}
            if d < 3:      # listeners are fixed in protocol, local address and local port only
                values.update(latch.tuple[d] for latch in lines)
            v = p[d]
            lo, hi = box[d]
            if v in values:
                rng = (v, v)
            else:
                below = max((x for x in values if x < v), default=lo - 1)
                above = min((x for x in values if x > v), default=hi + 1)
                rng = (below + 1, above - 1)
            box = box._replace(**{DIMS[d]: rng})
        if ld.live_in_box(box) or ld.listeners_in_box(box):
            return p.box()
        return box

    def _plan(self, proposal):
        """Narrow a proposal and decide what accepting it would do (no changes)."""
        p = proposal.trigger or proposal.selectors.low_corner()
        decision, box = self._policy_box(proposal.selectors, p)
        if box is None:
            return NarrowResult(None, policy=f"SPD entry {decision.name!r} says {decision.action.upper()} "
                                             f"for {p}, not PROTECT")
        if not proposal.protection.meets(decision.protection):
            return NarrowResult(None, policy=f"proposed protection {proposal.protection} is below what "
                                             f"SPD entry {decision.name!r} requires ({decision.protection})")
        box = self._narrow_latches(box, p)
        why = self.pad.authorize(proposal.peer, box.remote_addr)
        if why:
            return NarrowResult(None, policy=why)
        if not box.is_point():
            return NarrowResult(box, policy=decision.name)
        latch = self.ld.live.get(p)
        if latch is not None:
            return NarrowResult(box, latch=latch.handle, conflict=self._latch_conflict(latch, proposal),
                                policy=decision.name)
        listener = self.ld.listeners.get(p.three_tuple)
        return NarrowResult(box, listener=listener.handle if listener else None, policy=decision.name)

    def _latch_conflict(self, latch, proposal):
        """Section 2.1: why this proposal's SA would conflict with ``latch`` (None: it would not)."""
        if latch.bypass:
            return f"latch {latch.handle} bypasses IPsec for {latch.tuple}"
        if latch.state == LatchState.ESTABLISHED:
            if latch.peer != proposal.peer:
                return f"latch {latch.handle} is latched to peer {latch.peer}, not {proposal.peer}"
            if latch.protection != proposal.protection:
                return (f"latch {latch.handle} is latched to protection {latch.protection}, "
                        f"not {proposal.protection}")
            if (latch.local_id is not None and proposal.local_id is not None
                    and latch.local_id != proposal.local_id):
                return f"latch {latch.handle} is latched to local ID {latch.local_id}"
        else:
            why = self._unsuitable(proposal.peer, proposal.local_id, proposal.protection,
                                   latch.requirement, latch.requested_peer, latch.requested_local)
            if why:
                return f"latch {latch.handle} cannot take it: {why}"
        for sa in self.sad.matching(latch.tuple):
            if not sa.same_association(proposal.peer, proposal.protection):
                return f"child SA {sa.sa_id} of peer {sa.peer} already matches {latch.tuple}"
        return None

    def narrow(self, proposal):
        """What accepting ``proposal`` would do: the narrowed selectors, the latch or listener they
        land on, and any conflict. Changes nothing."""
        if not isinstance(proposal, (ChildSaProposal, SelectorProposal)):
            raise TypeError(f"Proposal must be a ChildSaProposal or a SelectorProposal, not {proposal!r}")
        return self._plan(proposal)

    # --- the IKE daemon's side: accepting and deleting child SAs ----------------------------------

    def accept_child_sa(self, proposal):
        """Narrow, check and install a negotiated child SA (both directions) in one commit (two
        when it must first break a conflicting latch).

        Section 2.1: a proposal that can be narrowed away from latches is narrowed; one that cannot
        (it is exactly a latch's 5-tuple with another peer or protection) either breaks that latch
        first, telling its holder before the SA is accepted (``conflict="terminate"``, the default
        of section 2.4), or is rejected (``conflict="reject"``). A child SA on a listener's
        3-tuple creates an ESTABLISHED connection latch and tells the listener's holder."""
        if not isinstance(proposal, ChildSaProposal):
            raise TypeError(f"Proposal must be a ChildSaProposal, not {proposal!r}")
        proposal.protection.check_engine(self.engine.params)
        plan = self._plan(proposal)
        if plan.selectors is None:
            raise ChildSaRejected(f"Child SA from {proposal.peer} rejected: {plan.policy}")
        if self.sad.by_inbound_spi(proposal.inbound_spi) is not None:
            raise ChildSaRejected(f"Inbound SPI {proposal.inbound_spi:#010x} is already used by child SA "
                                  f"{self.sad.by_inbound_spi(proposal.inbound_spi).sa_id}")
        occupancy = getattr(self.engine, "occupancy", None)
        if occupancy is not None:
            free = occupancy()[1]
            if free < 2:
                raise ChildSaRejected(f"The engine's SA table has {free} free slot(s); a child SA needs 2")
        box = plan.selectors
        latch = self.ld.get(plan.latch) if plan.latch is not None else None
        listener = self.ld.get(plan.listener) if plan.listener is not None else None
        broken = []
        if latch is not None and plan.conflict:
            if self.conflict == "reject":
                raise ChildSaRejected(f"Child SA from {proposal.peer} for {box} rejected (section 2.4, "
                                      f"conflict='reject'): {plan.conflict}")
            p = box.point()
            # Once the latch is broken its logical SPD entry goes too: the SA must still be what
            # the SPD wants for this 5-tuple then. Check before breaking anything.
            after = self.spd.decide(p, ignore_handle=latch.handle)
            if after.action != PROTECT or not proposal.protection.meets(after.protection):
                raise ChildSaRejected(
                    f"Child SA from {proposal.peer} for {box} rejected: it conflicts with latch "
                    f"{latch.handle} ({plan.conflict}), and once that latch were broken SPD entry "
                    f"{after.name!r} would {after.action} this 5-tuple"
                    + (f" with {after.protection}" if after.action == PROTECT else ""))
            # Would a connection latch created after the break (from a listener) be refused? Check
            # that too. The broken latch's dedicated SAs are deleted with it.
            doomed = {sa.sa_id for sa in self.sad.exactly(p)
                      if set(self.ld.bound.get(sa.sa_id, ())) <= {latch.handle}}
            self._check_listener_after(p, proposal, doomed)
            reason = f"conflict (section 2.4): {plan.conflict}"
            with self._change() as ch:
                self._break_in(ch, latch, reason)
            broken.append(latch.handle)
            latch = None
            listener = self.ld.listeners.get(p.three_tuple)
        elif latch is None and listener is not None:
            self._check_listener_after(box.point(), proposal, set())
        return self._install(proposal, box, latch, listener, tuple(broken))

    def _check_listener_after(self, p, proposal, doomed):
        listener = self.ld.listeners.get(p.three_tuple)
        if listener is None:
            return
        if not proposal.protection.meets(listener.requirement):
            raise ChildSaRejected(f"Child SA for {p} does not meet listener latch {listener.handle}'s "
                                  f"protection {listener.requirement}")
        for sa in self.sad.matching(p):
            if sa.sa_id not in doomed and not sa.same_association(proposal.peer, proposal.protection):
                # "Non-listener connection latches MUST NOT be created if there exist conflicting
                # SAs in the SAD at the time the connection latch ... would be created (from a
                # listener latch)."
                raise ChildSaRejected(f"A connection latch for {p} cannot be created from listener "
                                      f"{listener.handle}: child SA {sa.sa_id} of peer {sa.peer} conflicts")

    def _install(self, proposal, box, latch, listener, broken):
        inbound_cfg, outbound_cfg = proposal.configs()
        sa_id = self._next_sa_id
        self._next_sa_id += 1
        created = None
        try:
            with self._change() as ch:
                inref = ch.install(inbound_cfg)
                outref = ch.install(outbound_cfg)
                sa = ChildSa(sa_id, proposal.peer, proposal.local_id, box, proposal.protection,
                             EngineRef(inbound_cfg.spi, inref.index, inref.generation),
                             EngineRef(outbound_cfg.spi, outref.index, outref.generation),
                             proposal.nat, ch.version)
                ch.write(lambda s: s.put_sa(sa))
                ch.apply(lambda: self.sad.add(sa))
                if latch is not None:
                    new = latch.clone()
                    if latch.state == LatchState.LARVAL:
                        new.establish(proposal.peer, proposal.local_id, proposal.protection,
                                      proposal.nat, ch.version)
                    new.sa_ids.append(sa_id)
                    ch.put_latch(latch, new)
                elif listener is not None and box.is_point():
                    p = box.point()
                    decision = self.spd.decide(p)
                    handle = self._alloc_handle()
                    new = Latch(handle, LatchState.LARVAL, p, requested=listener.requested,
                                policy_action=PROTECT, policy_protection=decision.protection,
                                policy_entry=decision.name, holder=listener.holder,
                                listener=listener.handle)
                    new.created_version = ch.version
                    new.establish(proposal.peer, proposal.local_id, proposal.protection,
                                  proposal.nat, ch.version)
                    new.sa_ids.append(sa_id)
                    ch.put_latch(None, new)
                    if decision.logical is not None:
                        # The listener's optional protection (section 3) must cover this exact
                        # 5-tuple on its own, even after the listener is released.
                        new.optional = "protect"
                        entry = LogicalEntry(p, PROTECT, decision.protection, handle, "optional-protection")
                        ch.apply(lambda: self.spd.add_logical(entry))
                    # "The key manager MUST inform the holder of the listener latch of connection
                    # latches created as a result of the listener latch."
                    ch.notify(listener, "created", handle, listener=listener.handle)
                    created = handle
        except (EngineError, ValueError) as e:
            # Staged installs were aborted by the change; nothing of this SA remains.
            raise ChildSaRejected(f"The engine refused the child SA: {e}") from e
        return AcceptResult(sa_id, box, sa.inbound, sa.outbound, ch.version,
                            latch=latch.handle if latch is not None else None, created=created,
                            broken=broken)

    def delete_child_sa(self, sa_id):
        """Delete a child SA (both directions) from the engine and the SAD in one commit. Latches
        bound to it stay ESTABLISHED (a rekey may follow) but no longer list it."""
        if not isinstance(sa_id, int) or isinstance(sa_id, bool):
            raise TypeError(f"Child SA id must be an integer, not {sa_id!r}")
        sa = self.child_sa(sa_id)
        with self._change() as ch:
            ch.delete(sa.inbound.index)
            ch.delete(sa.outbound.index)
            ch.write(lambda s: s.delete_sa(sa_id))
            ch.apply(lambda: self.sad.remove(sa_id))
            for latch in self.ld.bound_to(sa_id):
                new = latch.clone()
                new.sa_ids.remove(sa_id)
                ch.put_latch(latch, new)
        return ch.version

    # --- SPD and PAD changes ----------------------------------------------------------------------

    def replace_pad(self, entries):
        """Replace the PAD. Existing SAs and latches are unaffected: latches keep their peers."""
        self.pad.replace(entries)

    def replace_spd(self, entries):
        """Replace the whole SPD. Every live latch is checked (configuration-time cost)."""
        entries = Spd._check(entries)
        return self._spd_change(entries, list(self.ld.live.values()))

    def insert_spd_entry(self, entry, position=None):
        """Insert one entry (at the end by default). Only latches inside its selectors are checked."""
        if not isinstance(entry, SpdEntry):
            raise TypeError(f"SPD entry must be an SpdEntry, not {entry!r}")
        entries = list(self.spd.entries)
        if position is None:
            position = len(entries)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= len(entries):
            raise ValueError(f"Position must be an integer from 0 to {len(entries)}, not {position!r}")
        entries.insert(position, entry)
        entries = Spd._check(entries)
        return self._spd_change(entries, self.ld.live_in_box(entry.selectors))

    def remove_spd_entry(self, name):
        entries = list(self.spd.entries)
        for i, e in enumerate(entries):
            if e.name == name:
                del entries[i]
                return self._spd_change(entries, self.ld.live_in_box(e.selectors))
        raise KeyError(f"No SPD entry is named {name!r}")

    def _affected(self, latch, candidate):
        """Why the candidate SPD would change the protection of ``latch`` (None: it would not)."""
        if latch.optional or latch.preserved:
            return None          # its logical entry at the head of the SPD decides, not the change
        d = self.spd.decide_configured(latch.tuple, candidate)
        if latch.bypass:
            return None if d.action == BYPASS else f"SPD entry {d.name!r} would {d.action} it"
        if d.action != PROTECT:
            return f"SPD entry {d.name!r} would {d.action} its traffic"
        if latch.state == LatchState.ESTABLISHED and latch.protection is not None:
            if latch.protection.meets(d.protection):
                return None
            return f"SPD entry {d.name!r} would require {d.protection}, not the latched {latch.protection}"
        if d.protection == latch.policy_protection or (latch.requested is not None
                                                       and latch.requested.meets(d.protection)):
            return None
        return f"SPD entry {d.name!r} would change its required protection to {d.protection}"

    def _spd_change(self, entries, candidates):
        affected = [(latch, why) for latch in candidates
                    if (why := self._affected(latch, entries)) is not None]
        if not affected:
            self.spd.replace(entries)
            return SpdChangeResult((), (), None)
        if self.spd_change == "break":
            # "... or the key manager MUST break the latch and inform the latch holder (ULP) before
            # the change takes place."
            with self._change() as ch:
                for latch, why in affected:
                    self._break_in(ch, latch, f"SPD change: {why}")
            self.spd.replace(entries)
            return SpdChangeResult((), tuple(l.handle for l, _ in affected), ch.version)
        with self._change() as ch:
            for latch, why in affected:
                new = latch.clone()
                new.preserved = True
                ch.put_latch(latch, new)
                if latch.bypass:
                    entry = LogicalEntry(latch.tuple, BYPASS, None, latch.handle, "preserved")
                else:
                    entry = LogicalEntry(latch.tuple, PROTECT, latch.protection or latch.requirement,
                                         latch.handle, "preserved")
                ch.apply(lambda entry=entry: self.spd.add_logical(entry))
            ch.apply(lambda: self.spd.replace(entries))
        return SpdChangeResult(tuple(l.handle for l, _ in affected), (), ch.version)

    # --- restart ----------------------------------------------------------------------------------

    def _reconcile(self):
        """Load the LD and SAD and settle them with the engine's table (section 2.1: latched
        connections either survive a restart or are broken; logical SPD entries do not survive)."""
        engine = self.engine
        if engine.staged():
            engine.abort()
        slots = {info.index: info for info in engine.entries()}
        kept, lost = [], []
        for record in self.store.sa_records():
            sa = ChildSa.from_record(record)
            ok = all(_slot_matches(slots.get(ref.index), ref, direction, sa.protection)
                     for ref, direction in ((sa.inbound, Direction.INBOUND),
                                            (sa.outbound, Direction.OUTBOUND)))
            (kept if ok else lost).append(sa)
        owned = {ref.index for sa in kept for ref in (sa.inbound, sa.outbound)}
        orphans = sorted(i for i, info in slots.items()
                         if i not in owned and info.state in (SlotState.LIVE, SlotState.STAGED_DEL))
        for sa in kept:
            self.sad.add(sa)
        lost_ids = {sa.sa_id for sa in lost}
        restored, broken, dropped = [], [], []
        changed = []
        for record in self.store.latch_records():
            latch = Latch.from_record(record)
            old_sas = list(latch.sa_ids)
            latch.sa_ids = [i for i in latch.sa_ids if i not in lost_ids]
            why = None
            had_logical = bool(latch.optional or latch.preserved)
            if latch.state in LIVE_STATES:
                if old_sas and not latch.sa_ids:
                    why = "restart: its child SAs are no longer in the engine"
                elif latch.optional or latch.preserved:
                    # Logical SPD entries are not restored; the configured SPD must do on its own.
                    latch.optional, latch.preserved = None, False
                    why = self._affected(latch, None)
                    if why:
                        why = f"restart: its logical SPD entry is gone and {why}"
                else:
                    why = self._affected(latch, None)
                    if why:
                        why = f"restart: {why}"
            elif latch.state == LatchState.LISTENER and latch.optional:
                # Its optional-protection entry is not restored either: the listener stays, but
                # traffic to its 3-tuple follows the configured SPD until the application asks again.
                latch.optional = None
                dropped.append(latch.handle)
            if why:
                latch.move(LatchState.BROKEN)
                latch.reason = why
                latch.sa_ids = []
                broken.append((latch.handle, why))
            else:
                restored.append(latch.handle)
            if why or old_sas != latch.sa_ids or had_logical:
                changed.append(latch)
            self.ld.add(latch)
        with self._change() as ch:
            for index in orphans:
                ch.delete(index)
            for sa in lost:
                ch.write(lambda s, sa_id=sa.sa_id: s.delete_sa(sa_id))
            for latch in changed:
                latch.version = ch.version
                ch.write(lambda s, latch=latch: s.put_latch(latch))
        for handle, why in broken:
            log.warning("Latch %d broken at restart: %s", handle, why)
        return RestartReport(tuple(restored), tuple(broken), tuple(sorted(lost_ids)),
                             tuple(orphans), ch.version, tuple(dropped))

    def close(self):
        self.store.close()


def _slot_matches(info, ref, direction, protection):
    return (info is not None and info.state == SlotState.LIVE and info.generation == ref.generation
            and info.spi == ref.spi and info.direction == direction and info.mode == protection.mode
            and info.algorithm == protection.algorithm and info.key_size == protection.key_size
            and info.esn == protection.esn)


def _exclude(box, other, p):
    """Shrink ``box`` so it no longer meets ``other``, keeping ``p`` (which is not in ``other``)."""
    for d, ((lo, hi), (olo, ohi)) in enumerate(zip(box, other)):
        v = p[d]
        if v < olo:
            return box._replace(**{DIMS[d]: (lo, min(hi, olo - 1))})
        if v > ohi:
            return box._replace(**{DIMS[d]: (max(lo, ohi + 1), hi)})
    raise AssertionError(f"{p} lies in {other}")
