"""The gateware and the golden model side by side, for tests/test_verilator_scapy.py and
tests/test_verilator_fuzz.py.

:class:`Twin` holds two driver :class:`~ipchan.sw.driver.Engine` objects: a Verilator simulation
of the engine with the compact ESP datapath and the golden model, built with the same parameters.
Every SA goes into both through the driver in the same order (so both give it the same slot and
generation), and every batch of packets goes through both; :meth:`Twin.run` fails on the first
packet whose tag or bytes differ, naming the packet, its SA and both answers.

The parameters are those of the cached build tests/test_verilator_esp.py and the CLI use (16
slots, windows up to 64), so no second Verilator build is made.
"""

from ipchan.hw.contract import Direction, EngineParams, Verdict, pack_tag
from ipchan.sim import verilator_build as vb
from ipchan.sw.backends import open_engine
from ipchan.sw.driver import SaConfig

#: The build tests/test_verilator_esp.py shares (what the CLI builds for <= 16 SAs, windows <= 64).
PARAMS = EngineParams(n_entries=16)
PROFILE = "compact"


def build_esp_engine():
    """The shared cached Verilator build (made once per machine, a minute or so)."""
    return vb.build_engine(PARAMS, esp=PROFILE)


def check_tag(tag):
    """A tag the contract can pack, with a verdict it knows."""
    pack_tag(**tag)
    assert tag["verdict"] in set(Verdict), tag


def _direction(d):
    return Direction[d.upper()] if isinstance(d, str) else Direction(d)


class Twin:
    """The gateware (Verilator) and the golden model, with the same SAs and the same packets."""

    def __init__(self, params=PARAMS):
        self.hw = open_engine("verilator", params, esp=PROFILE, progress=None)
        try:
            self.md = open_engine("model", params)
        except BaseException:
            self.hw.close()
            raise
        self.sas = {}  # slot index -> SaConfig
        self.packets = 0

    def close(self):
        self.md.close()
        self.hw.close()

    def add(self, *, spi, direction, mode="transport", algorithm="aes-gcm-16", key,
            esn=False, seq=0, replay_window=64, endpoints=None):
        """Install one SA in both (not committed); its slot index."""
        src, dst = endpoints if endpoints is not None else (None, None)
        cfg = SaConfig(spi=spi, direction=direction, mode=mode, algorithm=algorithm, key=key,
                       esn=esn, seq=seq,
                       replay_window=replay_window if direction == "inbound" else 0,
                       src=src, dst=dst)
        hw_ref, md_ref = self.hw.install(cfg), self.md.install(cfg)
        assert hw_ref == md_ref, (cfg, hw_ref, md_ref)
        self.sas[hw_ref.index] = (cfg, key)
        return hw_ref.index

    def pair(self, *, key, replay_window=64, **kw):
        """An outbound and an inbound SA with one key: (outbound index, inbound index)."""
        out = self.add(direction="outbound", key=key, **kw)
        inb = self.add(direction="inbound", key=key, replay_window=replay_window, **kw)
        return out, inb

    def commit(self):
        self.hw.commit()
        self.md.commit()

    def describe(self, n, request, got, want):
        """A reproducer of a disagreement: the packet, its SA (with the test key) and both
        answers."""
        direction, data, sa_index = request
        lines = [f"gateware and model disagree on packet {n} of the batch:",
                 f"  direction {direction.name.lower()}, sa_index {sa_index}, "
                 f"{len(data)} bytes: {data.hex()}"]
        if direction == Direction.OUTBOUND and sa_index in self.sas:
            cfg, key = self.sas[sa_index]
            lines.append(f"  SA {cfg!r} key {key.hex()}")
        elif direction == Direction.INBOUND:
            for index, (cfg, key) in sorted(self.sas.items()):
                if cfg.direction == Direction.INBOUND:
                    lines.append(f"  inbound SA in slot {index}: {cfg!r} key {key.hex()}")
        for who, (tag, out) in (("gateware", got), ("model", want)):
            lines.append(f"  {who}: tag {tag}, out {None if out is None else out.hex()}")
        return "\n".join(lines)

    def run(self, requests):
        """Every ``(direction, data, sa_index)`` through the model and the gateware (one
        pipelined call each); the model's answers, after checking the gateware gave the same
        tag and bytes for every packet."""
        requests = [(_direction(d), bytes(data), sa) for d, data, sa in requests]
        want = self.md.process_packets(requests)
        got = self.hw.process_packets(requests)
        assert len(got) == len(want) == len(requests)
        for n, (req, g, w) in enumerate(zip(requests, got, want)):
            if g != w:
                raise AssertionError(self.describe(n, req, g, w))
            check_tag(w[0])
            # Only ok hands a packet up (ok with nothing handed up is a dummy packet, next
            # header 59, RFC 4303 section 2.6).
            assert w[1] is None or w[0]["verdict"] == Verdict.OK, w
        self.packets += len(requests)
        return want

    def check_state(self):
        """The engine-wide counters, and every installed slot's entry and counters, agree."""
        assert self.hw.counters() == self.md.counters()
        for index in sorted(self.sas):
            assert self.hw.read_entry(index) == self.md.read_entry(index), index
            assert self.hw.sa_counters(index) == self.md.sa_counters(index), index
