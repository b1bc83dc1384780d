"""Addresses, ports, 5-tuples, 3-tuples and traffic-selector boxes.

Every address is kept as one integer, ``family << 128 | address`` (family 4 or 6), so that IPv4 and
IPv6 sort apart, a range never straddles families, and comparisons are single integer compares. A
traffic selector is a box: one inclusive ``(lo, hi)`` range in each of five dimensions, in the fixed
order :data:`DIMS`. A 5-tuple is a point of that space; a box whose ranges are all single values
"matches exactly" that 5-tuple.
"""

import ipaddress
from typing import NamedTuple


__all__ = ["DIMS", "FAMILY_SHIFT", "encode_addr", "decode_addr", "addr_bits", "parse_addr",
           "parse_addr_range", "parse_port", "parse_port_range", "parse_proto", "FiveTuple",
           "ThreeTuple", "Box", "ANY_PORT", "ANY_PROTO"]


#: Dimension order of points and boxes.
DIMS = ("proto", "local_addr", "local_port", "remote_addr", "remote_port")
FAMILY_SHIFT = 128
ANY_PORT = (0, 65535)
ANY_PROTO = (0, 255)


def encode_addr(ip):
    """``ipaddress`` address -> the key manager's integer."""
    return (ip.version << FAMILY_SHIFT) | int(ip)


def decode_addr(value):
    family, raw = value >> FAMILY_SHIFT, value & ((1 << FAMILY_SHIFT) - 1)
    return ipaddress.IPv4Address(raw) if family == 4 else ipaddress.IPv6Address(raw)


def addr_bits(value):
    return 32 if value >> FAMILY_SHIFT == 4 else 128


def parse_addr(value, what="address"):
    """A single address from a string, an ``ipaddress`` object or an already encoded integer."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return encode_addr(value)
    if isinstance(value, str):
        try:
            return encode_addr(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{what.capitalize()} must be an IPv4 or IPv6 address, not {value!r}") from None
    raise TypeError(f"{what.capitalize()} must be a string or an ipaddress address, not {value!r}")


def parse_addr_range(value, what="address range"):
    """``"10.0.0.0/8"``, ``"10.0.0.1-10.0.0.9"``, ``"*"`` (any IPv4 and IPv6 is not one range, so
    ``"*"`` means any IPv4; ``"*6"`` any IPv6), a single address, or an ``(lo, hi)`` pair of
    addresses. Returns an encoded ``(lo, hi)``."""
    if isinstance(value, tuple) and len(value) == 2:
        lo, hi = parse_addr(value[0], what), parse_addr(value[1], what)
    elif isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        lo, hi = encode_addr(value.network_address), encode_addr(value.broadcast_address)
    elif isinstance(value, str):
        text = value.strip()
        if text in ("*", "*4"):
            return parse_addr_range(ipaddress.ip_network("0.0.0.0/0"))
        if text == "*6":
            return parse_addr_range(ipaddress.ip_network("::/0"))
        if "/" in text:
            try:
                return parse_addr_range(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{what.capitalize()} must be a prefix, a range or an address, "
                                 f"not {value!r}") from None
        if "-" in text:
            a, _, b = text.partition("-")
            lo, hi = parse_addr(a.strip(), what), parse_addr(b.strip(), what)
        else:
            lo = hi = parse_addr(text, what)
    elif isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        lo = hi = encode_addr(value)
    else:
        raise TypeError(f"{what.capitalize()} must be a prefix, a range or an address, not {value!r}")
    if lo >> FAMILY_SHIFT != hi >> FAMILY_SHIFT:
        raise ValueError(f"{what.capitalize()} {value!r} mixes IPv4 and IPv6")
    if lo > hi:
        raise ValueError(f"{what.capitalize()} {value!r} is empty (its start is above its end)")
    return lo, hi


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_port(value, what="port"):
    if not _is_int(value):
        raise TypeError(f"{what.capitalize()} must be an integer, not {value!r}")
    if not 0 <= value <= 65535:
        raise ValueError(f"{what.capitalize()} must be from 0 to 65535, not {value!r}")
    return value


def parse_port_range(value, what="port range"):
    """``"*"``, a port, ``"lo-hi"`` or a ``(lo, hi)`` pair."""
    if value == "*" or value is None:
        return ANY_PORT
    if _is_int(value):
        return (parse_port(value, what),) * 2
    if isinstance(value, str) and "-" in value:
        a, _, b = value.partition("-")
        try:
            value = (int(a), int(b))
        except ValueError:
            raise ValueError(f"{what.capitalize()} must be '*', a port or 'lo-hi', not {value!r}") from None
    elif isinstance(value, str):
        try:
            return (parse_port(int(value), what),) * 2
        except ValueError:
            raise ValueError(f"{what.capitalize()} must be '*', a port or 'lo-hi', not {value!r}") from None
    if isinstance(value, tuple) and len(value) == 2:
        lo, hi = parse_port(value[0], what), parse_port(value[1], what)
        if lo > hi:
            raise ValueError(f"{what.capitalize()} {value!r} is empty (its start is above its end)")
        return lo, hi
    raise TypeError(f"{what.capitalize()} must be '*', a port, 'lo-hi' or a pair, not {value!r}")


_PROTO_NAMES = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipv6-icmp": 58, "dccp": 33, "udplite": 136}


def parse_proto(value, what="protocol"):
    """An IP protocol number 1..255 or its name (``"tcp"``, ``"udp"``, ...)."""
    if isinstance(value, str):
        if value.lower() in _PROTO_NAMES:
            return _PROTO_NAMES[value.lower()]
        raise ValueError(f"{what.capitalize()} must be a number from 1 to 255 or one of "
                         f"{', '.join(sorted(_PROTO_NAMES))}, not {value!r}")
    if not _is_int(value):
        raise TypeError(f"{what.capitalize()} must be an integer or a name, not {value!r}")
    if not 1 <= value <= 255:
        raise ValueError(f"{what.capitalize()} must be from 1 to 255, not {value!r}")
    return value


def _fmt_addr(value):
    return str(decode_addr(value))


class FiveTuple(NamedTuple):
    """A connection: a point of the selector space (fields in :data:`DIMS` order)."""
    proto: int
    local_addr: int
    local_port: int
    remote_addr: int
    remote_port: int

    @classmethod
    def parse(cls, local_addr, remote_addr, proto, local_port, remote_port):
        """Validate the spec's argument order (local, remote, protocol, local port, remote port)."""
        la = parse_addr(local_addr, "local address")
        ra = parse_addr(remote_addr, "remote address")
        if la >> FAMILY_SHIFT != ra >> FAMILY_SHIFT:
            raise ValueError(f"Local address {local_addr!r} and remote address {remote_addr!r} "
                             f"are of different IP versions")
        return cls(parse_proto(proto), la, parse_port(local_port, "local port"), ra,
                   parse_port(remote_port, "remote port"))

    @property
    def three_tuple(self):
        return ThreeTuple(self.proto, self.local_addr, self.local_port)

    def box(self):
        return Box(*((v, v) for v in self))

    def as_dict(self):
        return {"local_addr": _fmt_addr(self.local_addr), "remote_addr": _fmt_addr(self.remote_addr),
                "proto": self.proto, "local_port": self.local_port, "remote_port": self.remote_port}

    def __str__(self):
        return (f"proto {self.proto} {_fmt_addr(self.local_addr)}:{self.local_port} "
                f"<-> {_fmt_addr(self.remote_addr)}:{self.remote_port}")

    def __repr__(self):
        return f"FiveTuple({self})"


class ThreeTuple(NamedTuple):
    """A listener: local address, protocol and local port."""
    proto: int
    local_addr: int
    local_port: int

    @classmethod
    def parse(cls, local_addr, proto, local_port):
        return cls(parse_proto(proto), parse_addr(local_addr, "local address"),
                   parse_port(local_port, "local port"))

    def box(self):
        family = self.local_addr >> FAMILY_SHIFT
        base = family << FAMILY_SHIFT
        any_remote = (base, base | ((1 << (32 if family == 4 else 128)) - 1))
        return Box((self.proto,) * 2, (self.local_addr,) * 2, (self.local_port,) * 2, any_remote, ANY_PORT)

    def as_dict(self):
        return {"local_addr": _fmt_addr(self.local_addr), "proto": self.proto,
                "local_port": self.local_port}

    def __str__(self):
        return f"proto {self.proto} {_fmt_addr(self.local_addr)}:{self.local_port} (listener)"

    def __repr__(self):
        return f"ThreeTuple(proto {self.proto} {_fmt_addr(self.local_addr)}:{self.local_port})"


class Box(NamedTuple):
    """Traffic selectors as an inclusive range in every dimension of :data:`DIMS`."""
    proto: tuple
    local_addr: tuple
    local_port: tuple
    remote_addr: tuple
    remote_port: tuple

    @classmethod
    def parse(cls, *, local_addr, remote_addr, proto="*", local_port="*", remote_port="*"):
        la = parse_addr_range(local_addr, "local address range")
        ra = parse_addr_range(remote_addr, "remote address range")
        if la[0] >> FAMILY_SHIFT != ra[0] >> FAMILY_SHIFT:
            raise ValueError(f"Local range {local_addr!r} and remote range {remote_addr!r} are of "
                             f"different IP versions")
        if proto in ("*", 0, None):
            pr = ANY_PROTO
        else:
            pr = (parse_proto(proto),) * 2
        return cls(pr, la, parse_port_range(local_port, "local port range"), ra,
                   parse_port_range(remote_port, "remote port range"))

    @property
    def family(self):
        return self.local_addr[0] >> FAMILY_SHIFT

    def contains(self, point):
        for (lo, hi), v in zip(self, point):
            if not lo <= v <= hi:
                return False
        return True

    def contains_box(self, other):
        for (lo, hi), (olo, ohi) in zip(self, other):
            if not (lo <= olo and ohi <= hi):
                return False
        return True

    def intersects(self, other):
        for (lo, hi), (olo, ohi) in zip(self, other):
            if ohi < lo or olo > hi:
                return False
        return True

    def intersection(self, other):
        if not self.intersects(other):
            return None
        return Box(*((max(lo, olo), min(hi, ohi)) for (lo, hi), (olo, ohi) in zip(self, other)))

    def is_point(self):
        return all(lo == hi for lo, hi in self)

    def point(self):
        """The 5-tuple of a point box."""
        if not self.is_point():
            raise ValueError(f"Traffic selectors {self} are not a single 5-tuple")
        return FiveTuple(*(lo for lo, _ in self))

    def low_corner(self):
        return FiveTuple(*(lo for lo, _ in self))

    def as_dict(self):
        def addr(r):
            return _fmt_addr(r[0]) if r[0] == r[1] else f"{_fmt_addr(r[0])}-{_fmt_addr(r[1])}"

        def rng(r):
            return r[0] if r[0] == r[1] else f"{r[0]}-{r[1]}"
        return {"local_addr": addr(self.local_addr), "remote_addr": addr(self.remote_addr),
                "proto": "*" if self.proto == ANY_PROTO else rng(self.proto),
                "local_port": rng(self.local_port), "remote_port": rng(self.remote_port)}

    def __str__(self):
        d = self.as_dict()
        return (f"proto {d['proto']} {d['local_addr']}:{d['local_port']} "
                f"<-> {d['remote_addr']}:{d['remote_port']}")

    def __repr__(self):
        return f"Box({self})"

    def to_json(self):
        return [list(r) for r in self]

    @classmethod
    def from_json(cls, value):
        return cls(*(tuple(r) for r in value))
