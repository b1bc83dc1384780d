"""The Peer Authorization Database: which identities may claim which addresses (RFC 4301 4.4.3).

Entries are ordered; the first whose ID pattern matches a peer's identity and whose authentication
rule the peer satisfied decides which remote addresses that peer may claim in child-SA traffic
selectors. Patterns are an exact value, ``"*"`` (any value of that ID type) or ``"*.suffix"``
(FQDN and RFC 822 names). BTNS peers are matched by ``id_type="public-key"`` with
``auth="raw-public-key"``: any key is accepted, and the address association is as weak as the
entry's address list says, which is exactly why connection latching matters.

Exact patterns are found in a dictionary; only wildcard entries are checked one by one, and a
configuration has few of those.
"""

from dataclasses import dataclass

from .identity import AUTH_METHODS, ID_TYPES
from .selectors import parse_addr_range


__all__ = ["PadEntry", "Pad"]


@dataclass(frozen=True)
class PadEntry:
    name: str
    id_type: str
    pattern: str                    # exact value, "*" or "*.suffix"
    auth: str                       # required authentication method
    addresses: tuple                # encoded (lo, hi) ranges the peer may claim
    trust_anchors: tuple = ()       # for auth="certificate": anchors accepted (empty: any)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"PAD entry name must be a non-empty string, not {self.name!r}")
        if self.id_type not in ID_TYPES:
            raise ValueError(f"PAD ID type must be one of {', '.join(map(repr, ID_TYPES))}, "
                             f"not {self.id_type!r}")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError(f"PAD ID pattern must be a non-empty string, not {self.pattern!r}")
        if self.auth not in AUTH_METHODS:
            raise ValueError(f"PAD authentication must be one of {', '.join(map(repr, AUTH_METHODS))}, "
                             f"not {self.auth!r}")

    @classmethod
    def parse(cls, name, *, id_type, pattern, auth, addresses, trust_anchors=()):
        if isinstance(addresses, str):
            addresses = [addresses]
        return cls(name, id_type, pattern, auth,
                   tuple(parse_addr_range(a, "PAD address range") for a in addresses),
                   tuple(trust_anchors))

    @property
    def is_wildcard(self):
        return self.pattern.startswith("*")

    def matches(self, peer):
        if peer.id_type != self.id_type or peer.auth.method != self.auth:
            return False
        if (self.auth == "certificate" and self.trust_anchors
                and peer.auth.trust_anchor not in self.trust_anchors):
            return False
        if self.pattern == "*":
            return True
        if self.pattern.startswith("*."):
            return peer.value.lower().endswith(self.pattern[1:].lower())
        return peer.value == self.pattern

    def may_claim(self, lo, hi):
        return any(a <= lo and hi <= b for a, b in self.addresses)


class Pad:
    def __init__(self, entries=()):
        self.replace(entries)

    def replace(self, entries):
        entries = list(entries)
        names = set()
        exact, wild = {}, []
        for pos, e in enumerate(entries):
            if not isinstance(e, PadEntry):
                raise TypeError(f"PAD entries must be PadEntry objects, not {e!r}")
            if e.name in names:
                raise ValueError(f"PAD entry name {e.name!r} is used twice")
            names.add(e.name)
            if e.is_wildcard:
                wild.append((pos, e))
            else:
                exact.setdefault((e.id_type, e.pattern), []).append((pos, e))
        self._entries, self._exact, self._wild = entries, exact, wild

    @property
    def entries(self):
        return tuple(self._entries)

    def lookup(self, peer):
        """The first entry matching ``peer`` (an :class:`Identity`), or None."""
        best = None
        for pos, e in self._exact.get((peer.id_type, peer.value), ()):
            if e.matches(peer):
                best = (pos, e)
                break
        for pos, e in self._wild:
            if best is not None and pos > best[0]:
                break
            if e.matches(peer):
                best = (pos, e)
                break
        return best[1] if best else None

    def authorize(self, peer, remote_range):
        """Why ``peer`` may not claim the encoded address range, or None when it may."""
        entry = self.lookup(peer)
        if entry is None:
            return f"no PAD entry matches peer {peer}"
        if not entry.may_claim(*remote_range):
            return f"PAD entry {entry.name!r} does not let peer {peer} claim those remote addresses"
        return None
