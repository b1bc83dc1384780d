"""Type and quality of protection: what a latch latches and what an SPD entry requires.

The spec's REQUIRED latched parameters are the type of protection (confidentiality and/or
integrity), transport vs tunnel mode, and the quality of protection (algorithm suite, key length,
replay protection). :class:`Protection` holds exactly those for the engine's transforms; the ICV
length and the type follow from the algorithm.
"""

from dataclasses import dataclass

from ipchan.hw.contract import Algorithm, KeySize, Mode


__all__ = ["Protection", "CONFIDENTIALITY_AND_INTEGRITY", "INTEGRITY"]


CONFIDENTIALITY_AND_INTEGRITY = "confidentiality+integrity"
INTEGRITY = "integrity"


def _enum(cls, value, what):
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        if cls is Algorithm:
            return Algorithm.from_text(value)
        if cls is Mode and value.lower() in ("transport", "tunnel"):
            return Mode[value.upper()]
        if cls is KeySize and value in ("128", "256"):
            return KeySize.AES_128 if value == "128" else KeySize.AES_256
    if isinstance(value, int) and not isinstance(value, bool):
        if cls is KeySize and value in (128, 256):
            return KeySize.AES_128 if value == 128 else KeySize.AES_256
    raise ValueError(f"{what.capitalize()} must be one of "
                     f"{', '.join(repr(m.text if cls is Algorithm else m.name.lower()) for m in cls)}, "
                     f"not {value!r}")


@dataclass(frozen=True)
class Protection:
    """One SA's (or one requirement's) type and quality of protection.

    As a requirement, another protection *meets* it when it has at least its type, key length, ICV
    length and replay window, ESN if it asks for ESN, and the same mode.
    """
    algorithm: Algorithm = Algorithm.AES_GCM_16
    key_size: KeySize = KeySize.AES_128
    esn: bool = False
    replay_window: int = 64
    mode: Mode = Mode.TRANSPORT

    def __post_init__(self):
        object.__setattr__(self, "algorithm", _enum(Algorithm, self.algorithm, "algorithm"))
        object.__setattr__(self, "key_size", _enum(KeySize, self.key_size, "key size"))
        object.__setattr__(self, "mode", _enum(Mode, self.mode, "mode"))
        if not isinstance(self.esn, bool):
            raise TypeError(f"ESN must be a bool, not {self.esn!r}")
        w = self.replay_window
        if not isinstance(w, int) or isinstance(w, bool):
            raise TypeError(f"Replay window must be an integer, not {w!r}")
        if w < 0 or w > 1024:
            raise ValueError(f"Replay window must be from 0 (off) to 1024 packets, not {w!r}")

    @property
    def icv_len(self):
        return self.algorithm.icv_len

    @property
    def key_bits(self):
        return 8 * self.key_size.key_bytes

    @property
    def type(self):
        return INTEGRITY if self.algorithm == Algorithm.AES_GMAC else CONFIDENTIALITY_AND_INTEGRITY

    def meets(self, required):
        """Whether this protection meets or exceeds ``required`` (section 3)."""
        if required is None:
            return True
        if required.type == CONFIDENTIALITY_AND_INTEGRITY and self.type != CONFIDENTIALITY_AND_INTEGRITY:
            return False
        return (self.key_bits >= required.key_bits and self.icv_len >= required.icv_len
                and self.replay_window >= required.replay_window
                and (self.esn or not required.esn) and self.mode == required.mode)

    def check_engine(self, params):
        """Refuse what the engine cannot do (an impossible QoP), naming the value."""
        if self.replay_window > params.window_max:
            raise ValueError(f"Replay window {self.replay_window} is larger than the engine's maximum "
                             f"of {params.window_max}")

    def as_dict(self):
        return {"type": self.type, "algorithm": self.algorithm.text, "key_bits": self.key_bits,
                "icv_len": self.icv_len, "esn": self.esn, "replay_window": self.replay_window,
                "mode": self.mode.name.lower()}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise TypeError(f"Protection must be a Protection or a dict, not {d!r}")
        unknown = set(d) - {"type", "algorithm", "key_bits", "icv_len", "esn", "replay_window", "mode"}
        if unknown:
            raise ValueError(f"Protection has no field(s) {', '.join(sorted(map(repr, unknown)))}")
        p = cls(algorithm=d.get("algorithm", "aes-gcm-16"), key_size=d.get("key_bits", 128),
                esn=d.get("esn", False), replay_window=d.get("replay_window", 64),
                mode=d.get("mode", "transport"))
        for derived in ("type", "icv_len"):
            if derived in d and d[derived] != getattr(p, derived):
                raise ValueError(f"Protection {derived} {d[derived]!r} does not match algorithm "
                                 f"{p.algorithm.text!r} ({getattr(p, derived)!r})")
        return p

    @classmethod
    def coerce(cls, value, what="qop"):
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"{what} must be a Protection, a dict or None, not {value!r}")

    def __str__(self):
        return (f"{self.algorithm.text} aes-{self.key_bits} icv {self.icv_len} "
                f"{'esn ' if self.esn else ''}window {self.replay_window} {self.mode.name.lower()}")
