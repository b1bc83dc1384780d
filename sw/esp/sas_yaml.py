"""SAS.yaml: the SAs of ``ipchan esp process``, checked field by field and installed in an engine.

The format (issue 4)::

    sas:
      - spi: 0x1000                # int (or a "0x..." string); 256 .. 2^32-1
        direction: inbound         # inbound | outbound
        mode: tunnel               # transport | tunnel
        algorithm: aes-gcm-16      # aes-gcm-8 | aes-gcm-12 | aes-gcm-16 | aes-gmac
        key: "0x00112233...."      # AES key (16 or 32 bytes) then the 4-byte salt, in hex
        src: 192.0.2.1             # the SA's outer addresses (tunnel endpoints in tunnel mode)
        dst: 192.0.2.2
        esn: false                 # default false
        seq: 0                     # outbound: last number used; inbound: window top; default 0
        replay_window: 64          # inbound only; 0 disables; default 64
        selectors:                 # outbound only; default: from src to dst, any protocol
          - {src: 10.0.0.0/24, dst: 10.1.0.0/24, proto: tcp, dst_port: 443}

Selectors choose the outbound SA of a packet: the first outbound SA (in file order) with a
selector matching the packet's addresses, upper-layer protocol and ports. In a selector every key
is optional (absent or ``any``: anything): ``src`` and ``dst`` are an address or a prefix (of one
family), ``proto`` a number or a name (``tcp``, ``udp``, ``icmp``, ``ipv6-icmp``, ``sctp``,
``esp``), ``src_port`` and ``dst_port`` a number or a ``"lo-hi"`` range (they only match TCP,
UDP, UDP-Lite and SCTP packets whose ports can be read).

Every error is a :class:`SasError` whose message names the file and the field, e.g.
``sas.yaml: sas[2].key: expected 20 or 36 bytes of hex, got 17 bytes``; key material is never
part of a message.
"""

import ipaddress
import os
from dataclasses import dataclass
from typing import Optional

import yaml

from ipchan.hw.contract import Direction, EngineParams
from ipchan.sw.driver import EngineError, SaConfig, check_spi

from .packet import PacketError, parse_ip


__all__ = ["SasError", "Selector", "SaSpec", "SaRecord", "parse_sas", "install_sas", "load_sas",
           "engine_params_for", "select_sa", "PROTO_NAMES", "WINDOW_DEFAULT"]

WINDOW_DEFAULT = 64
PROTO_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "esp": 50, "ah": 51, "ipv6-icmp": 58,
               "icmpv6": 58, "sctp": 132, "udplite": 136}
_PORT_PROTOS = (6, 17, 132, 136)

_SA_KEYS = ("spi", "direction", "mode", "algorithm", "key", "src", "dst", "esn", "seq",
            "replay_window", "selectors")
_REQUIRED = ("spi", "direction", "mode", "algorithm", "key", "src", "dst")
_SELECTOR_KEYS = ("src", "dst", "proto", "src_port", "dst_port")


class SasError(ValueError):
    """A SAS.yaml the engine cannot take; the message names the file and the field."""


class _Where:
    def __init__(self, name):
        self.name = name

    def fail(self, field, message):
        raise SasError(f"{self.name}: {field}: {message}" if field else f"{self.name}: {message}")


@dataclass(frozen=True)
class Selector:
    """One outbound traffic selector; ``None`` means any."""
    src: Optional[object] = None
    dst: Optional[object] = None
    proto: Optional[int] = None
    src_port: Optional[tuple] = None
    dst_port: Optional[tuple] = None

    def matches(self, src, dst, proto, ports):
        """``ports`` is ``(src, dst)`` or ``None`` when the packet has none that can be read."""
        if self.src is not None and (src.version != self.src.version or src not in self.src):
            return False
        if self.dst is not None and (dst.version != self.dst.version or dst not in self.dst):
            return False
        if self.proto is not None and proto != self.proto:
            return False
        if self.src_port is not None or self.dst_port is not None:
            if ports is None:
                return False
            for want, have in ((self.src_port, ports[0]), (self.dst_port, ports[1])):
                if want is not None and not want[0] <= have <= want[1]:
                    return False
        return True


@dataclass(frozen=True)
class SaSpec:
    """One SA of the file, checked; ``position`` is its index in ``sas``."""
    position: int
    config: SaConfig
    src: object
    dst: object
    selectors: tuple

    @property
    def label(self):
        return f"sas[{self.position}]"


@dataclass(frozen=True)
class SaRecord:
    """The host-side record of an installed SA: what the file said and where the engine put it."""
    spec: SaSpec
    index: int
    generation: int

    @property
    def config(self):
        return self.spec.config

    @property
    def src(self):
        return self.spec.src

    @property
    def dst(self):
        return self.spec.dst

    @property
    def selectors(self):
        return self.spec.selectors


# --- Parsing --------------------------------------------------------------------------------------

def parse_sas(path):
    """Read and check ``path``; return the list of :class:`SaSpec` (nothing is installed)."""
    name = os.fspath(path)
    where = _Where(name)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        where.fail(None, f"cannot read: {exc.strerror or exc}")
    except UnicodeDecodeError:
        where.fail(None, "not a text file (it is not UTF-8)")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        where.fail(None, f"{at}not valid YAML: {problem}")
    if not isinstance(doc, dict):
        where.fail(None, f"expected a mapping with a 'sas' list at the top, "
                         f"not {_kind(doc)}")
    for key in doc:
        if key != "sas":
            where.fail(str(key), "unknown key (the file holds only 'sas')")
    if "sas" not in doc:
        where.fail("sas", "missing (a list of SAs)")
    sas = doc["sas"]
    if sas is None:
        sas = []
    if not isinstance(sas, list):
        where.fail("sas", f"expected a list of SAs, not {_kind(sas)}")
    specs = [_parse_sa(where, i, item) for i, item in enumerate(sas)]
    _check_unique(where, specs)
    return specs


def _kind(value):
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _parse_sa(where, i, item):
    label = f"sas[{i}]"
    if not isinstance(item, dict):
        where.fail(label, f"expected a mapping of SA fields, not {_kind(item)}")
    for key in item:
        if key not in _SA_KEYS:
            where.fail(f"{label}.{key}", f"unknown field; expected one of {', '.join(_SA_KEYS)}")
    for key in _REQUIRED:
        if key not in item:
            where.fail(f"{label}.{key}", "missing")

    def field(name):
        return f"{label}.{name}"

    spi = item["spi"]
    if isinstance(spi, str):
        try:
            spi = int(spi, 0)
        except ValueError:
            where.fail(field("spi"), f"expected an integer, not {spi!r}")
    if not isinstance(spi, int) or isinstance(spi, bool):
        where.fail(field("spi"), f"expected an integer, not {_kind(spi)}")
    try:
        check_spi(spi)
    except (TypeError, ValueError) as exc:
        where.fail(field("spi"), str(exc))

    direction = _choice(where, field("direction"), item["direction"], ("inbound", "outbound"))
    mode = _choice(where, field("mode"), item["mode"], ("transport", "tunnel"))
    algorithm = _choice(where, field("algorithm"), item["algorithm"],
                        ("aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gmac"))
    key = _hex_key(where, field("key"), item["key"])
    src = _address(where, field("src"), item["src"])
    dst = _address(where, field("dst"), item["dst"])
    if src.version != dst.version:
        where.fail(field("dst"), f"IPv{dst.version} address, but src is IPv{src.version}; an SA's "
                                 f"outer addresses are of one family")

    esn = item.get("esn", False)
    if not isinstance(esn, bool):
        where.fail(field("esn"), f"expected true or false, not {_kind(esn)}")
    seq_max = (1 << 64) - 1 if esn else (1 << 32) - 1
    seq = _integer(where, field("seq"), item.get("seq", 0), 0, seq_max,
                   "" if esn else " (without esn; with esn up to 2^64-1)")

    inbound = direction == "inbound"
    if "replay_window" in item and not inbound:
        where.fail(field("replay_window"), "only inbound SAs have a replay window")
    window = _integer(where, field("replay_window"), item.get("replay_window", WINDOW_DEFAULT),
                      0, 1024, "") if inbound else 0

    if "selectors" in item and inbound:
        where.fail(field("selectors"), "selectors choose outbound SAs; an inbound SA is found "
                                       "by its SPI")
    if item.get("selectors") is None:
        host_bits = src.max_prefixlen
        selectors = (Selector(src=ipaddress.ip_network(f"{src}/{host_bits}"),
                              dst=ipaddress.ip_network(f"{dst}/{host_bits}")),)
    else:
        selectors = _selectors(where, field("selectors"), item["selectors"])

    config = SaConfig(spi=spi, direction=direction, mode=mode, algorithm=algorithm, key=key,
                      esn=esn, seq=seq, replay_window=window, src=src, dst=dst)
    return SaSpec(position=i, config=config, src=src, dst=dst, selectors=selectors)


def _choice(where, field, value, choices):
    if value not in choices or not isinstance(value, str):
        shown = repr(value) if isinstance(value, str) else _kind(value)
        where.fail(field, f"expected one of {', '.join(choices)}, not {shown}")
    return value


def _integer(where, field, value, lo, hi, note):
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            where.fail(field, f"expected an integer, not {value!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        where.fail(field, f"expected an integer, not {_kind(value)}")
    if not lo <= value <= hi:
        where.fail(field, f"expected an integer from {lo} to {hi}{note}, not {value}")
    return value


def _hex_key(where, field, value):
    if isinstance(value, int) and not isinstance(value, bool):
        where.fail(field, "expected a hex string, not an integer (put the key in quotes)")
    if not isinstance(value, str):
        where.fail(field, f"expected a hex string, not {_kind(value)}")
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if any(c not in "0123456789abcdefABCDEF" for c in text):
        where.fail(field, "expected a hex string (digits 0-9 and a-f, optionally after 0x)")
    if len(text) % 2:
        where.fail(field, f"odd number of hex digits ({len(text)})")
    key = bytes.fromhex(text)
    if len(key) not in (20, 36):
        where.fail(field, f"expected 20 or 36 bytes of hex, got {len(key)} bytes "
                          f"(a 16- or 32-byte AES key followed by the 4-byte salt)")
    return key


def _address(where, field, value):
    if not isinstance(value, str):
        where.fail(field, f"expected an IPv4 or IPv6 address, not {_kind(value)}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        where.fail(field, f"expected an IPv4 or IPv6 address, not {value!r}")


def _selectors(where, field, value):
    if not isinstance(value, list) or not value:
        where.fail(field, f"expected a non-empty list of selectors, not {_kind(value)}")
    out = []
    for j, sel in enumerate(value):
        here = f"{field}[{j}]"
        if not isinstance(sel, dict):
            where.fail(here, f"expected a mapping, not {_kind(sel)}")
        for key in sel:
            if key not in _SELECTOR_KEYS:
                where.fail(f"{here}.{key}", f"unknown field; expected one of "
                                            f"{', '.join(_SELECTOR_KEYS)}")
        src = _prefix(where, f"{here}.src", sel.get("src"))
        dst = _prefix(where, f"{here}.dst", sel.get("dst"))
        if src is not None and dst is not None and src.version != dst.version:
            where.fail(f"{here}.dst", f"IPv{dst.version}, but src is IPv{src.version}")
        proto = sel.get("proto")
        if proto is not None and proto != "any":
            if isinstance(proto, str):
                if proto.lower() not in PROTO_NAMES:
                    where.fail(f"{here}.proto", f"expected a protocol number or one of "
                                                f"{', '.join(PROTO_NAMES)}, not {proto!r}")
                proto = PROTO_NAMES[proto.lower()]
            else:
                proto = _integer(where, f"{here}.proto", proto, 0, 255, "")
        else:
            proto = None
        ports = [_ports(where, f"{here}.{k}", sel.get(k)) for k in ("src_port", "dst_port")]
        if any(p is not None for p in ports) and proto is not None and proto not in _PORT_PROTOS:
            where.fail(f"{here}.proto", f"protocol {proto} has no ports, but the selector "
                                        f"gives some")
        out.append(Selector(src, dst, proto, *ports))
    return tuple(out)


def _prefix(where, field, value):
    if value is None or value == "any":
        return None
    if not isinstance(value, str):
        where.fail(field, f"expected an address or a prefix, not {_kind(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        where.fail(field, f"expected an address or a prefix, not {value!r}")


def _ports(where, field, value):
    if value is None or value == "any":
        return None
    if isinstance(value, str) and "-" in value:
        lo_text, _, hi_text = value.partition("-")
        lo = _integer(where, field, lo_text.strip(), 0, 65535, "")
        hi = _integer(where, field, hi_text.strip(), 0, 65535, "")
        if lo > hi:
            where.fail(field, f"range {value!r} is empty")
        return lo, hi
    port = _integer(where, field, value, 0, 65535, "")
    return port, port


def _check_unique(where, specs):
    inbound, outbound = {}, {}
    for spec in specs:
        cfg = spec.config
        if cfg.direction == Direction.INBOUND:
            other = inbound.setdefault(cfg.spi, spec)
            if other is not spec:
                where.fail(f"{spec.label}.spi", f"inbound SPI {cfg.spi:#010x} is already used by "
                                                f"{other.label}")
        else:
            other = outbound.setdefault((cfg.spi, spec.dst), spec)
            if other is not spec:
                where.fail(f"{spec.label}.spi", f"outbound SPI {cfg.spi:#010x} to {spec.dst} is "
                                                f"already used by {other.label}")


# --- Installing -----------------------------------------------------------------------------------

def engine_params_for(specs, base=EngineParams()):
    """``base`` with a replay window large enough for every SA of ``specs``."""
    from dataclasses import replace
    need = max([base.window_max] + [s.config.replay_window for s in specs])
    window_max = next(w for w in (32, 64, 128, 256, 512, 1024) if w >= need)
    return replace(base, window_max=window_max)


def install_sas(engine, specs, source="SAS.yaml"):
    """Install ``specs`` through ``engine`` (:class:`~ipchan.sw.driver.Engine`) and commit once.

    Returns the :class:`SaRecord` list in file order. An SA the engine cannot hold raises
    :class:`SasError` naming ``source`` and the SA; the engine is then left with nothing staged."""
    where = _Where(os.fspath(source))
    records = []
    try:
        for spec in specs:
            if spec.config.replay_window > engine.params.window_max:
                where.fail(f"{spec.label}.replay_window",
                           f"{spec.config.replay_window} is larger than this engine's maximum "
                           f"of {engine.params.window_max}")
            try:
                ref = engine.install(spec.config)
            except (EngineError, ValueError) as exc:
                where.fail(spec.label, f"the engine cannot hold this SA: {exc}")
            records.append(SaRecord(spec, ref.index, ref.generation))
    except BaseException:
        if engine.staged():
            engine.abort()
        raise
    if engine.staged():
        engine.commit()
    return records


def load_sas(path, engine):
    """:func:`parse_sas` then :func:`install_sas`: the SAs of ``path``, installed and committed."""
    return install_sas(engine, parse_sas(path), path)


# --- Outbound selection ---------------------------------------------------------------------------

def packet_selector_view(packet):
    """``(src, dst, proto, ports)`` of a plaintext packet for selector matching, or ``None`` when
    its IP header cannot be read. ``proto`` is ``None`` when an IPv6 extension-header chain hides
    it, ``ports`` ``None`` when the packet has none that can be read (a non-first fragment, a
    protocol without ports, a payload shorter than 4 bytes)."""
    try:
        ip = parse_ip(packet, ext="find", allow_fragments=True)
    except PacketError:
        try:
            ip = parse_ip(packet, ext="none", allow_fragments=True)
        except PacketError:
            return None
        return ip.src, ip.dst, None, None
    first_fragment = True
    if ip.version == 4:
        first_fragment = int.from_bytes(ip.header[6:8], "big") & 0x1FFF == 0
    ports = None
    if ip.proto in _PORT_PROTOS and first_fragment and len(ip.payload) >= 4:
        ports = (int.from_bytes(ip.payload[0:2], "big"), int.from_bytes(ip.payload[2:4], "big"))
    return ip.src, ip.dst, ip.proto, ports


def select_sa(records, packet):
    """The first outbound :class:`SaRecord` whose selectors match ``packet``: ``(record, view)``
    where ``record`` is ``None`` when none matches and ``view`` is ``None`` when the packet's
    header cannot be read."""
    view = packet_selector_view(packet)
    if view is None:
        return None, None
    for record in records:
        if record.config.direction != Direction.OUTBOUND:
            continue
        if any(sel.matches(*view) for sel in record.selectors):
            return record, view
    return None, view
