"""The golden model of the engine's ESP datapath: the executable specification the gateware matches
packet for packet and tag for tag.

:class:`EspDatapathModel` wraps an :class:`~ipchan.sw.model.EngineModel` (the SA table, its
versions and generations) and processes one packet at a time. Each call returns ``(out, tag)``:
``out`` is the packet handed up (bytes) or ``None`` when the packet is dropped, and ``tag`` a dict
with exactly the fields of :data:`ipchan.hw.contract.TAG_FIELDS` (``contract.pack_tag(**tag)``
packs it as it travels in ``tuser``). Every input packet produces exactly one tag, in input order,
dropped or not; the gateware delivers the tag of a dropped packet without data (see
``docs/esp.md``).

Algorithms (SA_FLAGS.ALG), keys (SA_KEY*, AES-128 in the first 16 bytes) and the salt (SA_SALT):

* AES-GCM (RFC 4106): nonce = salt (4 bytes) || IV (8 bytes); AAD = SPI || seq (32 bits), or with
  ESN SPI || seq high half || seq low half; the ICV is the first 8, 12 or 16 bytes of the GCM tag.
* AES-GMAC (RFC 4543): the same nonce; nothing is encrypted; the 16-byte ICV is the GCM tag of an
  empty plaintext under AAD = SPI || (seq high) || seq low || IV || payload || padding || pad
  length || next header.

Outbound (``outbound(packet, sa_index)``; the host names the SA by slot), checked in this order:

1. ``no_sa``: ``sa_index`` is not below ``n_entries``, or the slot is not visible (LIVE or
   STAGED_DEL), or its SA is not outbound.
2. ``malformed``: the packet fails :func:`~ipchan.sw.esp.packet.parse_ip` (transport mode walks the
   IPv6 extension headers to the split point and refuses fragments; tunnel mode checks the fixed
   header only and carries fragments), or the result would exceed 65535 bytes (IPv4 total
   length, IPv6 payload length).
3. ``seq_overflow``: the SA's last used number is 2^32 - 1 (no ESN) or 2^64 - 1 (ESN). Sequence
   numbers never wrap; the SA stays refused until the host replaces it.
4. ``ok``: seq = last + 1 is written back to the slot, and is the explicit IV (8 bytes, big
   endian), so an IV never repeats under a key. Padding 1, 2, 3, ... makes IV + payload + padding +
   2 a multiple of 4 (GCM needs no block alignment). Transport mode puts ESP where the IP payload
   was (IPv4: protocol 50, total length, checksum rewritten, options and TTL kept; IPv6: ESP after
   Hop-by-Hop, Routing and the Destination Options before a Routing header, the last of them
   pointing at 50, payload length rewritten). Tunnel mode carries the whole packet (next header 4
   or 41) under an outer header from the SA's endpoints, which the table holds (``SA_SRC*``,
   ``SA_DST*``, ``SA_FLAGS.OUTER6``; :class:`~ipchan.sw.driver.SaConfig` ``src``/``dst``): IPv4
   outer has IHL 5, TOS = the inner TOS or traffic
   class (DSCP and ECN copied, RFC 4301 5.1.2.1 / RFC 6040 normal mode), identification = the low
   16 bits of seq, DF = the inner DF (set for an inner IPv6 packet), TTL 64; IPv6 outer has
   traffic class = the inner TOS or traffic class, flow label 0, hop limit 64.

Only ``ok`` changes the slot (its sequence number). The outbound tag: ``sa_valid``, ``sa_index``,
``sa_generation`` name the slot for ``ok`` and ``seq_overflow`` and are 0 otherwise; ``seq`` is the
number used (``ok``), the SA's last number (``seq_overflow``, so the host sees it is exhausted), or
0; ``version`` is VERSION when the slot was read.

Inbound (``inbound(packet)``), checked in this order:

1. ``malformed``: the packet fails :func:`~ipchan.sw.esp.packet.parse_ip` (IPv6 extension headers
   Hop-by-Hop, Routing and Destination Options are skipped; fragments are refused), its protocol
   (the last next header) is not ESP (50), or fewer than 8 bytes of ESP header follow.
2. ``no_sa``: the SPI is not found by the lookup port (``EngineModel.lookup``: constant time, only
   visible inbound SAs), or the slot found does not hold an inbound SA. SAs are found by SPI alone
   (RFC 4301 4.1, unicast); the outer addresses are not compared.
3. ``malformed`` (the SA is known and counted): the ESP payload is shorter than header (8) + IV (8)
   + pad length and next header (2) + ICV.
4. ``replay``: the full sequence number is inferred (:func:`~ipchan.sw.esp.replay.infer_seq`) and
   fails :func:`~ipchan.sw.esp.replay.precheck` against the SA's window (SA_FLAGS.WINDOW, 0
   disables it), or its inferred high half over/underflowed.
5. ``auth_fail``: the ICV does not verify.
6. ``malformed`` (authentic, but): the pad length exceeds the plaintext, the padding is not 1, 2,
   3, ..., or tunnel mode's next header is not 4, 41 or 59, or the inner packet fails
   :func:`~ipchan.sw.esp.packet.parse_ip` (fixed header, fragments allowed) or is not the version
   its next header says. Tunnel mode allows TFC padding (RFC 4303 2.7): bytes after the inner
   packet's own length are dropped. (As Linux does, the window does not move for these.)
7. ``ok``: the window moves (:func:`~ipchan.sw.esp.replay.advance`), then: next header 59 is a
   dummy packet (RFC 4303 2.6), dropped with verdict ``ok``; tunnel mode hands up the inner packet
   byte for byte; transport mode hands up the received headers with the protocol field (IPv4
   protocol, or the next-header byte that said 50) set to the next header, the length rewritten
   and the IPv4 checksum recomputed, followed by the decrypted payload. The IV is not checked
   against the sequence number (RFC 4106 only asks the sender for unique IVs).

Only ``ok`` moves the window. Every verdict other than ``ok`` drops the packet (``out`` is
``None``). The inbound tag: ``sa_valid``, ``sa_index``, ``sa_generation`` name the SA for ``ok``,
``replay`` and ``auth_fail`` and are 0 for ``no_sa`` and ``malformed`` (as the contract says);
``seq`` is the inferred 64-bit number for those three verdicts and 0 otherwise; ``version`` is
VERSION in the cycle of the lookup (for a packet refused before its lookup, VERSION when its header
was parsed).

Left to the host, which has the tag for it: checking that a tunnel's inner packet matches the
SA's selectors (RFC 4301 5.2), RFC 6040 ECN decapsulation, and audit records of drops.

Packets longer than ``EngineParams.max_packet`` (the gateware's packet buffer) are ``malformed``:
inbound at step 1, outbound at step 2 (the packet, or the packet it would become).

Counters (32 bits, wrapping) live in the engine model, as in the gateware:
:attr:`EspDatapathModel.counters` by (direction, verdict) (the ``CNT_IN_*`` and ``CNT_OUT_*``
registers), every packet; :meth:`EspDatapathModel.sa_counters` by verdict for the SA in a slot
(the slot's ``RB_CNT_*``), for every packet whose SA was identified (including ``malformed`` after
the lookup); the slot's counters are zeroized with it, so a new generation starts from zero.
"""

import hmac
import ipaddress
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipchan.hw import contract
from ipchan.hw.contract import Algorithm, Direction, KeySize, Mode, SlotState, Verdict
from ipchan.sw.model import EngineModel
from ipchan.sw.regs import FIELD

from . import replay
from .packet import (PROTO_ESP, PROTO_IPV4, PROTO_IPV6, PROTO_NONE, IP_MAX_TOTAL, PacketError,
                     build_ipv4, build_ipv6, parse_ip)


__all__ = ["EspDatapathModel", "Endpoints", "COUNTER_MASK", "ESP_HEADER_LEN", "IV_LEN",
           "OUTER_TTL", "endpoints_of"]

ESP_HEADER_LEN = 8
IV_LEN = 8
OUTER_TTL = 64
COUNTER_MASK = 0xFFFFFFFF

_VISIBLE = (SlotState.LIVE, SlotState.STAGED_DEL)


@dataclass(frozen=True)
class Endpoints:
    """A tunnel-mode SA's outer addresses."""
    src: object
    dst: object

    def __post_init__(self):
        src, dst = ipaddress.ip_address(self.src), ipaddress.ip_address(self.dst)
        if src.version != dst.version:
            raise ValueError(f"Tunnel endpoints must be of one address family, not {src} and {dst}")
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)


@dataclass(frozen=True)
class _Sa:
    """What the datapath reads from a slot."""
    index: int
    generation: int
    spi: int
    mode: Mode
    algorithm: Algorithm
    esn: bool
    window: int
    key: bytes
    salt: bytes


def _read_sa(slot, index):
    f = FIELD.SA_FLAGS
    flags = slot.flags
    key_salt = slot.key.to_bytes(36, "big")
    key_len = KeySize(f.KEYSIZE.get(flags)).key_bytes
    return _Sa(index=index, generation=slot.gen, spi=slot.spi, mode=Mode(f.MODE.get(flags)),
               algorithm=Algorithm(f.ALG.get(flags)), esn=bool(f.ESN.get(flags)),
               window=f.WINDOW.get(flags), key=key_salt[:key_len], salt=key_salt[32:])


def endpoints_of(slot):
    """The :class:`Endpoints` a slot holds (``SA_SRC*``, ``SA_DST*``, ``SA_FLAGS.OUTER6``)."""
    if FIELD.SA_FLAGS.OUTER6.get(slot.flags):
        return Endpoints(ipaddress.IPv6Address(slot.src), ipaddress.IPv6Address(slot.dst))
    return Endpoints(ipaddress.IPv4Address(slot.src & 0xFFFFFFFF),
                     ipaddress.IPv4Address(slot.dst & 0xFFFFFFFF))


def _aad(spi, seq, esn):
    if esn:
        return struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF)
    return struct.pack("!II", spi, seq & 0xFFFFFFFF)


def _seal(sa, seq, iv, plaintext):
    """ESP payload after the IV: ciphertext (or cleartext for GMAC) || ICV."""
    nonce = sa.salt + iv
    aad = _aad(sa.spi, seq, sa.esn)
    aead = AESGCM(sa.key)
    if sa.algorithm == Algorithm.AES_GMAC:
        return plaintext + aead.encrypt(nonce, b"", aad + iv + plaintext)
    sealed = aead.encrypt(nonce, plaintext, aad)
    return sealed[:len(plaintext) + sa.algorithm.icv_len]


def _open(sa, seq, iv, body, icv):
    """The plaintext of ``body``, or None when ``icv`` does not verify."""
    nonce = sa.salt + iv
    aad = _aad(sa.spi, seq, sa.esn)
    if sa.algorithm == Algorithm.AES_GMAC:
        expected = AESGCM(sa.key).encrypt(nonce, b"", aad + iv + body)
        return body if hmac.compare_digest(expected, icv) else None
    decryptor = Cipher(algorithms.AES(sa.key),
                       modes.GCM(nonce, icv, min_tag_length=len(icv))).decryptor()
    decryptor.authenticate_additional_data(aad)
    plaintext = decryptor.update(body)
    try:
        decryptor.finalize()
    except InvalidTag:
        return None
    return plaintext


def _trailer_padding(data_len):
    return -(IV_LEN + data_len + 2) % 4


class EspDatapathModel:
    """The engine's ESP datapath over the SA table of ``engine_model``, whose slots hold the SAs
    (tunnel endpoints included) and whose registers hold the packet counters."""

    def __init__(self, engine_model):
        if not isinstance(engine_model, EngineModel):
            raise TypeError(f"Engine model must be an EngineModel, not {engine_model!r}")
        self.model = engine_model

    # --- Counters (the engine model's) ---------------------------------------------------------

    @property
    def counters(self):
        """Packets by (Direction, Verdict), 32 bits wrapping (0 where no counter exists)."""
        regs = self.model.counters
        return {(d, v): regs[contract.VERDICT_COUNTERS[(d, v)]]
                if (d, v) in contract.VERDICT_COUNTERS else 0
                for d in Direction for v in Verdict}

    def sa_counters(self, index):
        """Packets by :class:`Verdict` for the SA now in slot ``index`` (zero for a new generation)."""
        self._check_index(index)
        counts = self.model.slots[index].counters
        return {v: counts.get(v, 0) for v in Verdict}

    def _check_index(self, index):
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"SA index must be an integer, not {index!r}")
        if not 0 <= index < self.model.params.n_entries:
            raise ValueError(f"SA index must be from 0 to {self.model.params.n_entries - 1}, "
                             f"not {index!r}")

    # --- Bookkeeping ---------------------------------------------------------------------------

    def _finish(self, direction, verdict, version, sa=None, seq=0, out=None):
        self.model.count(direction, verdict, None if sa is None else sa.index)
        named = sa is not None and verdict not in (Verdict.NO_SA, Verdict.MALFORMED)
        tag = {
            "verdict": verdict,
            "sa_valid": int(named),
            "sa_index": sa.index if named else 0,
            "sa_generation": sa.generation if named else 0,
            "version": version,
            "seq": seq if named else 0,
        }
        return (out if verdict == Verdict.OK else None), tag

    # --- Inbound -------------------------------------------------------------------------------

    def inbound(self, packet):
        """Process one received packet: ``(plaintext packet or None, tag)``."""
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError(f"Packet must be bytes, not {type(packet).__name__}")
        packet = bytes(packet)
        done = lambda verdict, **kw: self._finish(Direction.INBOUND, verdict, **kw)
        version = self.model.version
        if len(packet) > self.model.params.max_packet:
            return done(Verdict.MALFORMED, version=version)
        try:
            ip = parse_ip(packet, ext="find")
        except PacketError:
            return done(Verdict.MALFORMED, version=version)
        if ip.proto != PROTO_ESP or len(ip.payload) < ESP_HEADER_LEN:
            return done(Verdict.MALFORMED, version=version)
        esp = ip.payload
        spi, seq_lo = struct.unpack("!II", esp[:ESP_HEADER_LEN])

        found, index, _ = self.model.lookup(spi)
        version = self.model.version
        if not found:
            return done(Verdict.NO_SA, version=version)
        slot = self.model.slots[index]
        if FIELD.SA_FLAGS.DIR.get(slot.flags) != Direction.INBOUND:
            return done(Verdict.NO_SA, version=version)
        sa = _read_sa(slot, index)

        icv_len = sa.algorithm.icv_len
        if len(esp) < ESP_HEADER_LEN + IV_LEN + 2 + icv_len:
            return done(Verdict.MALFORMED, version=version, sa=sa)

        window_bits = slot.window & ((1 << sa.window) - 1)
        seq, out_of_range = replay.infer_seq(seq_lo, slot.seq, sa.window, sa.esn)
        if out_of_range or not replay.precheck(seq, slot.seq, window_bits, sa.window):
            return done(Verdict.REPLAY, version=version, sa=sa, seq=seq)

        iv = esp[ESP_HEADER_LEN:ESP_HEADER_LEN + IV_LEN]
        body, icv = esp[ESP_HEADER_LEN + IV_LEN:-icv_len], esp[-icv_len:]
        plaintext = _open(sa, seq, iv, body, icv)
        if plaintext is None:
            return done(Verdict.AUTH_FAIL, version=version, sa=sa, seq=seq)

        pad_len, next_header = plaintext[-2], plaintext[-1]
        data_len = len(plaintext) - 2 - pad_len
        if data_len < 0 or plaintext[data_len:-2] != bytes(range(1, pad_len + 1)):
            return done(Verdict.MALFORMED, version=version, sa=sa)
        data = plaintext[:data_len]

        out = None
        if next_header != PROTO_NONE:
            try:
                if sa.mode == Mode.TUNNEL:
                    out = _inner_packet(next_header, data)
                else:
                    out = ip.rebuild(next_header, data)
            except PacketError:
                return done(Verdict.MALFORMED, version=version, sa=sa)

        slot.seq, slot.window = replay.advance(seq, slot.seq, window_bits, sa.window)
        return done(Verdict.OK, version=version, sa=sa, seq=seq, out=out)

    # --- Outbound ------------------------------------------------------------------------------

    def outbound(self, packet, sa_index):
        """Protect one packet with the SA in slot ``sa_index``: ``(ESP packet or None, tag)``."""
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError(f"Packet must be bytes, not {type(packet).__name__}")
        if not isinstance(sa_index, int) or isinstance(sa_index, bool):
            raise TypeError(f"SA index must be an integer, not {sa_index!r}")
        if not 0 <= sa_index < 1 << 16:
            raise ValueError(f"SA index must fit the tag's 16 bits, not {sa_index!r}")
        packet = bytes(packet)
        done = lambda verdict, **kw: self._finish(Direction.OUTBOUND, verdict, **kw)
        version = self.model.version

        if sa_index >= self.model.params.n_entries:
            return done(Verdict.NO_SA, version=version)
        slot = self.model.slots[sa_index]
        if slot.state not in _VISIBLE or FIELD.SA_FLAGS.DIR.get(slot.flags) != Direction.OUTBOUND:
            return done(Verdict.NO_SA, version=version)
        sa = _read_sa(slot, sa_index)

        try:
            if sa.mode == Mode.TRANSPORT:
                ip = parse_ip(packet, ext="transport")
                next_header, data = ip.proto, ip.payload
            else:
                ip = parse_ip(packet, ext="none", allow_fragments=True)
                next_header, data = (PROTO_IPV4 if ip.version == 4 else PROTO_IPV6), packet
        except PacketError:
            return done(Verdict.MALFORMED, version=version, sa=sa)

        pad_len = _trailer_padding(len(data))
        esp_len = ESP_HEADER_LEN + IV_LEN + len(data) + pad_len + 2 + sa.algorithm.icv_len
        if sa.mode == Mode.TRANSPORT:
            ends = None
            outer_len = len(ip.header) + esp_len - (0 if ip.version == 4 else 40)
        else:
            ends = endpoints_of(slot)
            outer_len = esp_len + (20 if ends.src.version == 4 else 0)
        out_bytes = outer_len + (0 if (ends.src.version if ends else ip.version) == 4 else 40)
        if outer_len > IP_MAX_TOTAL or max(len(packet), out_bytes) > self.model.params.max_packet:
            return done(Verdict.MALFORMED, version=version, sa=sa)

        limit = (1 << 64) - 1 if sa.esn else (1 << 32) - 1
        if slot.seq >= limit:
            return done(Verdict.SEQ_OVERFLOW, version=version, sa=sa, seq=slot.seq)
        seq = slot.seq + 1
        iv = seq.to_bytes(IV_LEN, "big")
        trailer = bytes(range(1, pad_len + 1)) + bytes((pad_len, next_header))
        esp = struct.pack("!II", sa.spi, seq & 0xFFFFFFFF) + iv + _seal(sa, seq, iv, data + trailer)

        if sa.mode == Mode.TRANSPORT:
            out = ip.rebuild(PROTO_ESP, esp)
        elif ends.src.version == 4:
            df = ip.df if ip.version == 4 else True
            out = build_ipv4(ends.src, ends.dst, PROTO_ESP, esp, tos=ip.tos, ident=seq & 0xFFFF,
                             df=df, ttl=OUTER_TTL)
        else:
            out = build_ipv6(ends.src, ends.dst, PROTO_ESP, esp, tclass=ip.tos, hlim=OUTER_TTL)
        slot.seq = seq
        return done(Verdict.OK, version=version, sa=sa, seq=seq, out=out)


def _inner_packet(next_header, data):
    """Tunnel mode: the inner packet in ``data``, without TFC padding; raises PacketError."""
    if next_header not in (PROTO_IPV4, PROTO_IPV6):
        raise PacketError(f"tunnel-mode next header {next_header} is not IPv4 (4) or IPv6 (41)")
    want = 4 if next_header == PROTO_IPV4 else 6
    if not data or data[0] >> 4 != want:
        raise PacketError(f"tunnel-mode inner packet is not IPv{want}")
    if want == 4:
        if len(data) < 4:
            raise PacketError("tunnel-mode inner IPv4 packet is shorter than its length field")
        length = int.from_bytes(data[2:4], "big")
    else:
        if len(data) < 6:
            raise PacketError("tunnel-mode inner IPv6 packet is shorter than its length field")
        length = 40 + int.from_bytes(data[4:6], "big")
    if length > len(data):
        raise PacketError(f"tunnel-mode inner packet says {length} bytes, only {len(data)} came")
    inner = data[:length]
    parse_ip(inner, ext="none", allow_fragments=True)
    return inner
