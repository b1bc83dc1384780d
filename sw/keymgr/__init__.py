"""The key manager: SPD, PAD, SAD and the Latch Database of connection latching (RFC 5660,
draft-ietf-btns-connection-latching-04 sections 2.1, 2.4 and 3), driving the engine through
:class:`ipchan.sw.driver.Engine`."""

from .errors import (ChildSaRejected, InvalidTransition, KeyManagerError, LatchConflict,
                     PersistenceError, PolicyError, PrivilegeError, UnknownChildSa, UnknownLatch)
from .identity import AuthInfo, Identity
from .latch import LatchEvent, LatchInfo, LatchState, SaSummary, TRANSITIONS
from .manager import (AcceptResult, ChildSaProposal, IkeEvent, KeyManager, NarrowResult,
                      RestartReport, SelectorProposal, SpdChangeResult)
from .pad import Pad, PadEntry
from .protection import Protection
from .sad import ChildSa, EngineRef, NatInfo
from .selectors import Box, FiveTuple, ThreeTuple
from .spd import BYPASS, DISCARD, PROTECT, Spd, SpdEntry
from .store import Store


__all__ = [
    "KeyManager", "ChildSaProposal", "SelectorProposal", "AcceptResult", "NarrowResult",
    "SpdChangeResult", "IkeEvent",
    "RestartReport", "LatchState", "LatchInfo", "LatchEvent", "SaSummary", "TRANSITIONS",
    "Identity", "AuthInfo", "Protection", "Box", "FiveTuple", "ThreeTuple", "SpdEntry", "Spd",
    "PadEntry", "Pad", "ChildSa", "EngineRef", "NatInfo", "Store", "PROTECT", "BYPASS", "DISCARD",
    "KeyManagerError", "UnknownLatch", "UnknownChildSa", "PolicyError", "PrivilegeError",
    "LatchConflict", "ChildSaRejected", "InvalidTransition", "PersistenceError",
]
