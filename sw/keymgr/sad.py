"""The Security Association Database: child SAs and where they live in the engine.

A child SA is a pair of engine SAs (inbound and outbound) negotiated with one peer for one box of
traffic selectors. The key manager never stores keys here: they go to the engine and nowhere else.

Indices (so conflict checks do not scan the SAD): child SAs whose selectors are a single 5-tuple are
found by that 5-tuple in a dictionary; wider ones through a :class:`~.prefixindex.PrefixIndex` on the
remote address range; inbound SPIs in a dictionary.
"""

from dataclasses import dataclass
from typing import Optional

from .identity import Identity
from .prefixindex import PrefixIndex
from .protection import Protection
from .selectors import Box


__all__ = ["NatInfo", "EngineRef", "ChildSa", "Sad"]


@dataclass(frozen=True)
class NatInfo:
    """What IKE learned about NAT (section 2.1: made available when known)."""
    peer_behind_nat: bool = False
    local_behind_nat: bool = False
    peer_outer_addr: Optional[str] = None
    peer_outer_port: Optional[int] = None
    peer_inner_addr: Optional[str] = None

    def as_dict(self):
        return {"peer_behind_nat": self.peer_behind_nat, "local_behind_nat": self.local_behind_nat,
                "peer_outer_addr": self.peer_outer_addr, "peer_outer_port": self.peer_outer_port,
                "peer_inner_addr": self.peer_inner_addr}

    @classmethod
    def from_dict(cls, d):
        return cls(**d) if d is not None else None


@dataclass(frozen=True)
class EngineRef:
    """An SA's place in the engine's table: the slot, its generation and the SPI."""
    spi: int
    index: int
    generation: int

    def as_dict(self):
        return {"spi": self.spi, "index": self.index, "generation": self.generation}


@dataclass(frozen=True)
class ChildSa:
    sa_id: int
    peer: Identity
    local_id: Optional[Identity]
    selectors: Box
    protection: Protection
    inbound: EngineRef
    outbound: EngineRef
    nat: Optional[NatInfo] = None
    version: int = 0          # engine version at which it became visible

    def same_association(self, peer, protection):
        """Section 2.1 (b): same peer and same type and quality of protection."""
        return self.peer == peer and self.protection == protection

    def as_dict(self):
        return {"sa_id": self.sa_id, "peer": self.peer.as_dict(),
                "local_id": self.local_id.as_dict() if self.local_id else None,
                "selectors": self.selectors.as_dict(), "protection": self.protection.as_dict(),
                "inbound": self.inbound.as_dict(), "outbound": self.outbound.as_dict(),
                "nat": self.nat.as_dict() if self.nat else None, "version": self.version}

    def to_record(self):
        d = self.as_dict()
        d["selectors"] = self.selectors.to_json()
        return d

    @classmethod
    def from_record(cls, d):
        return cls(d["sa_id"], Identity.from_dict(d["peer"]),
                   Identity.from_dict(d["local_id"]) if d["local_id"] else None,
                   Box.from_json(d["selectors"]), Protection.from_dict(d["protection"]),
                   EngineRef(**d["inbound"]), EngineRef(**d["outbound"]),
                   NatInfo.from_dict(d["nat"]), d["version"])


class Sad:
    def __init__(self):
        self._by_id = {}
        self._by_point = {}          # FiveTuple -> {sa_id: None}
        self._wide = PrefixIndex()   # sa_id over remote address range, for non-point selectors
        self._by_inbound_spi = {}

    def __len__(self):
        return len(self._by_id)

    def __iter__(self):
        return iter(list(self._by_id.values()))

    def get(self, sa_id):
        return self._by_id.get(sa_id)

    def by_inbound_spi(self, spi):
        return self._by_inbound_spi.get(spi)

    def add(self, sa):
        if sa.sa_id in self._by_id:
            raise KeyError(f"Child SA {sa.sa_id} already exists")
        self._by_id[sa.sa_id] = sa
        self._by_inbound_spi[sa.inbound.spi] = sa
        if sa.selectors.is_point():
            self._by_point.setdefault(sa.selectors.point(), {})[sa.sa_id] = None
        else:
            self._wide.add(sa.sa_id, *sa.selectors.remote_addr)

    def remove(self, sa_id):
        sa = self._by_id.pop(sa_id)
        del self._by_inbound_spi[sa.inbound.spi]
        if sa.selectors.is_point():
            point = sa.selectors.point()
            bucket = self._by_point[point]
            del bucket[sa_id]
            if not bucket:
                del self._by_point[point]
        else:
            self._wide.remove(sa_id)
        return sa

    def matching(self, point):
        """Child SAs whose traffic selectors contain the 5-tuple ``point``."""
        out = [self._by_id[i] for i in self._by_point.get(point, ())]
        for sa_id in list(self._wide.stab(point.remote_addr)):
            sa = self._by_id[sa_id]
            if sa.selectors.contains(point):
                out.append(sa)
        return out

    def exactly(self, point):
        """Child SAs whose selectors are exactly the 5-tuple ``point``."""
        return [self._by_id[i] for i in self._by_point.get(point, ())]
