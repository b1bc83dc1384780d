"""Peer and local identities with their authentication information.

RFC 4301's PAD names peers by ID type and value; BTNS (RFC 5386) adds unauthenticated peers known
only by a raw public key. A latch records the whole :class:`Identity`, including what authenticated
it (a certificate and the trust anchor it was validated to, or the raw public key), because the spec
requires making "all relevant information about a peer's ID, including authentication information"
available through ``inquire_latch``.
"""

import hashlib
from dataclasses import dataclass
from typing import Optional


__all__ = ["ID_TYPES", "AUTH_METHODS", "AuthInfo", "Identity"]


#: RFC 7296 ID types, plus ``public-key`` for BTNS peers named by their raw key's SHA-256.
ID_TYPES = ("ipv4-addr", "ipv6-addr", "fqdn", "rfc822-addr", "der-asn1-dn", "key-id", "public-key")
AUTH_METHODS = ("certificate", "raw-public-key", "psk", "none")


def _bytes_or_none(value, what):
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{what} must be bytes or a hex string, not {value!r}") from None
    raise TypeError(f"{what} must be bytes or a hex string, not {value!r}")


@dataclass(frozen=True)
class AuthInfo:
    """How a peer was authenticated. ``trust_anchor`` is None for BTNS (leap-of-faith) peers."""
    method: str = "none"
    certificate: Optional[bytes] = None
    public_key: Optional[bytes] = None
    trust_anchor: Optional[str] = None

    def __post_init__(self):
        if self.method not in AUTH_METHODS:
            raise ValueError(f"Authentication method must be one of "
                             f"{', '.join(map(repr, AUTH_METHODS))}, not {self.method!r}")
        object.__setattr__(self, "certificate", _bytes_or_none(self.certificate, "Certificate"))
        object.__setattr__(self, "public_key", _bytes_or_none(self.public_key, "Public key"))
        if self.trust_anchor is not None and not isinstance(self.trust_anchor, str):
            raise TypeError(f"Trust anchor must be a string or None, not {self.trust_anchor!r}")
        if self.method == "certificate" and self.certificate is None:
            raise ValueError("Authentication method 'certificate' needs the certificate")
        if self.method == "raw-public-key" and self.public_key is None:
            raise ValueError("Authentication method 'raw-public-key' needs the public key")

    def as_dict(self):
        return {"method": self.method,
                "certificate": self.certificate.hex() if self.certificate is not None else None,
                "public_key": self.public_key.hex() if self.public_key is not None else None,
                "trust_anchor": self.trust_anchor}

    @classmethod
    def from_dict(cls, d):
        return cls(method=d.get("method", "none"), certificate=d.get("certificate"),
                   public_key=d.get("public_key"), trust_anchor=d.get("trust_anchor"))


@dataclass(frozen=True)
class Identity:
    """An IKE identity (peer or local): ID type, value and authentication information. Two
    identities are the same peer only if all three are equal: a BTNS peer that comes back with
    another key is another peer."""
    id_type: str
    value: str
    auth: AuthInfo = AuthInfo()

    def __post_init__(self):
        if self.id_type not in ID_TYPES:
            raise ValueError(f"ID type must be one of {', '.join(map(repr, ID_TYPES))}, "
                             f"not {self.id_type!r}")
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(f"ID value must be a non-empty string, not {self.value!r}")
        if not isinstance(self.auth, AuthInfo):
            raise TypeError(f"Authentication information must be an AuthInfo, not {self.auth!r}")
        if self.id_type == "public-key" and self.auth.public_key is not None:
            if self.value != hashlib.sha256(self.auth.public_key).hexdigest():
                raise ValueError(f"Public-key ID {self.value!r} is not the SHA-256 of its public key")

    @classmethod
    def btns(cls, public_key):
        """An unauthenticated (BTNS) peer known only by its raw public key."""
        public_key = _bytes_or_none(public_key, "Public key")
        return cls("public-key", hashlib.sha256(public_key).hexdigest(),
                   AuthInfo("raw-public-key", public_key=public_key))

    def as_dict(self):
        return {"id_type": self.id_type, "value": self.value, "auth": self.auth.as_dict()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["id_type"], d["value"], AuthInfo.from_dict(d.get("auth", {})))

    @classmethod
    def coerce(cls, value, what="identity"):
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"{what[0].upper() + what[1:]} must be an Identity, a dict or None, not {value!r}")

    def __str__(self):
        return f"{self.id_type}:{self.value[:40]}"
