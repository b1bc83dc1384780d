"""Shared pieces of the ESP tests: an engine with SAs installed, and scapy's ESP as the reference.

scapy 2.8's ``AES-GCM`` goes through cryptography's ``AESGCM`` class, which always appends a
16-byte tag: it ignores ``crypt_icv_size`` when encrypting and fails every ICV shorter than 16
bytes when decrypting. For ICVs of 8 and 12 bytes the tests therefore give the scapy SA scapy's
own :class:`CryptAlgo` built on cryptography's ``Cipher``/``GCM`` API, the path scapy still
supports (``encryptor.tag[:icv_size]``, ``GCM(iv, tag, len(tag))``); the ESP framing, padding, AAD
and nonce stay scapy's. For 16-byte ICVs both the stock algorithm and this one are used.
"""

import os
import struct

from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers import ipsec as scapy_ipsec
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation

from ipchan.hw.contract import Algorithm, EngineParams
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.esp.datapath import EspDatapathModel
from ipchan.sw.esp.packet import build_ipv4, build_ipv6


ALGORITHMS = ("aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gmac")

_GCM_CIPHER_API = scapy_ipsec.CryptAlgo(
    "AES-GCM", cipher=algorithms.AES, mode=modes.GCM, salt_size=4, block_size=1, iv_size=8,
    icv_size=16, format_mode_iv=lambda sa, iv, **kw: sa.crypt_salt + iv)


def scapy_sa(algorithm, key, spi, *, tunnel_header=None, esn=False, stock=True):
    """A scapy SecurityAssociation for one of our algorithms; ``key`` includes the salt."""
    alg = Algorithm.from_text(algorithm)
    if alg == Algorithm.AES_GMAC:
        return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-NULL-GMAC", crypt_key=key,
                                   tunnel_header=tunnel_header, esn_en=esn)
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo="AES-GCM", crypt_key=key,
                             crypt_icv_size=alg.icv_len, tunnel_header=tunnel_header, esn_en=esn)
    if alg.icv_len != 16 or not stock:
        sa.crypt_algo = _GCM_CIPHER_API
    return sa


def scapy_packet(data):
    """A scapy packet parsed from bytes (a fresh object: scapy's decrypt modifies its argument)."""
    return IP(data) if data[0] >> 4 == 4 else IPv6(data)


def scapy_encrypt(sa, packet, seq, *, esn=False, iv=None):
    """``packet`` (bytes) protected by scapy with the 64-bit ``seq`` (IV = seq unless given)."""
    iv = seq.to_bytes(8, "big") if iv is None else iv
    kw = {"esn_en": True, "esn": seq >> 32} if esn else {}
    # scapy takes `seq_num or self.seq_num` (and `esn or self.esn`): a low half of 0 would be
    # replaced by the SA's own counter, so put the wanted values there too.
    sa.seq_num, sa.esn = seq & 0xFFFFFFFF, seq >> 32
    return bytes(sa.encrypt(scapy_packet(packet), seq_num=seq & 0xFFFFFFFF, iv=iv, **kw))


def scapy_decrypt(sa, packet, seq=0, *, esn=False):
    kw = {"esn_en": True, "esn": seq >> 32} if esn else {}
    sa.esn = seq >> 32
    return bytes(sa.decrypt(scapy_packet(packet), **kw))


class Rig:
    """An engine (golden model) with SAs installed through the driver, and its datapath model."""

    def __init__(self, params=EngineParams()):
        self.engine = Engine.for_model(params)
        self.model = self.engine.transport.model
        self.dp = EspDatapathModel(self.model)

    def add(self, *, spi=0x1000, direction="inbound", mode="transport", algorithm="aes-gcm-16",
            key=None, esn=False, seq=0, replay_window=64, endpoints=None, commit=True):
        key = key if key is not None else os.urandom(36)
        src, dst = endpoints if endpoints is not None else (None, None)
        cfg = SaConfig(spi=spi, direction=direction, mode=mode, algorithm=algorithm, key=key,
                       esn=esn, seq=seq,
                       replay_window=replay_window if direction == "inbound" else 0,
                       src=src, dst=dst)
        ref = self.engine.install(cfg)
        if commit:
            self.engine.commit()
        return ref, key

    def pair(self, **kw):
        """An outbound and an inbound SA with one key: (outbound index, inbound index, key)."""
        key = kw.pop("key", None) or os.urandom(36)
        endpoints = kw.pop("endpoints", None)
        window = kw.pop("replay_window", 64)
        out, _ = self.add(direction="outbound", key=key, endpoints=endpoints, commit=False, **kw)
        inb, _ = self.add(direction="inbound", key=key, replay_window=window, **kw)
        return out.index, inb.index, key


def seal(key, spi, seq, body, *, alg="aes-gcm-16", esn=False, outer="v4", iv=None):
    """An ESP packet whose encrypted part (payload || padding || pad len || nh) is ``body``."""
    algorithm = Algorithm.from_text(alg)
    iv = iv if iv is not None else os.urandom(8)
    nonce = key[-4:] + iv
    aad = struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF) if esn else \
        struct.pack("!II", spi, seq & 0xFFFFFFFF)
    gcm = AESGCM(key[:-4])
    if algorithm == Algorithm.AES_GMAC:
        sealed = body + gcm.encrypt(nonce, b"", aad + iv + body)
    else:
        sealed = gcm.encrypt(nonce, body, aad)[:len(body) + algorithm.icv_len]
    esp = struct.pack("!II", spi, seq & 0xFFFFFFFF) + iv + sealed
    if outer == "v4":
        return build_ipv4("192.0.2.1", "192.0.2.2", 50, esp)
    return build_ipv6("2001:db8::a", "2001:db8::b", 50, esp)


def trailer(data, nh, pad=None):
    pad_len = -(len(data) + 2 + 8) % 4 if pad is None else pad
    return data + bytes(range(1, pad_len + 1)) + bytes((pad_len, nh))
