"""Fuzzing the gateware: random and mutated packets through the Verilator simulation of the engine
with the compact ESP datapath, each compared with the golden model tag for tag and byte for byte.

Mutated inbound packets (truncated, extended, bits flipped anywhere, bytes overwritten, IP
length fields rewritten, SPIs replaced), random inbound packets (random bytes, IP packets of
random protocols, ESP with a known or an unknown SPI and a random body), replays (in the window
and of old packets) and random outbound plaintexts (round-tripped when accepted) never crash or
hang the simulation, never come out ``ok`` unless the packet is genuine in all that ESP protects
(only the outer header, which ESP does not protect, may differ), and leave the windows as if they
had not been sent. A hang is caught by the harness (no tag within its bus timeout: it exits with
code 3) and by the socket's timeout; either raises :exc:`SimulationError`, which fails the run.

The default run is a short seeded run; ``pytest -m fuzz tests/test_verilator_fuzz.py -s`` runs
the long campaign (``IPCHAN_FUZZ_PACKETS`` packets, default 100000; ``IPCHAN_FUZZ_SEED`` picks
the seed) and prints the packets run and the verdicts seen; its count is in docs/esp-fuzz.md.
"""

import os
import random
import time
from collections import Counter

import pytest

from ipchan.hw.contract import Direction, Verdict
from ipchan.sw.esp.packet import PROTO_NONE, build_ipv4, build_ipv6, parse_ip

# tests/ is on sys.path (pytest's rootdir-relative packages), as in tests/esp_hw.
from esp.test_fuzz import esp_offset, mutate
from verilator_twin import Twin, build_esp_engine

DEFAULT_PACKETS = 20000
FUZZ_PACKETS = int(os.environ.get("IPCHAN_FUZZ_PACKETS", "100000"))
FUZZ_SEED = int(os.environ.get("IPCHAN_FUZZ_SEED", "20261202"))
#: Cases per round: one outbound batch, then one inbound batch (about 2.5 packets a case).
ROUND = 200

# (mode, algorithm, esn, window, outer family, inner family, key bytes): 14 SAs of this build's
# 16, windows up to its maximum of 64.
PAIRS = [
    ("transport", "aes-gcm-8", False, 64, 4, 4, 16),
    ("transport", "aes-gcm-12", True, 32, 6, 6, 32),
    ("tunnel", "aes-gcm-16", False, 64, 4, 6, 32),
    ("tunnel", "aes-gmac", True, 0, 6, 4, 16),
    ("transport", "aes-gmac", False, 1, 4, 4, 32),
    ("tunnel", "aes-gcm-8", True, 64, 6, 6, 16),
    ("tunnel", "aes-gcm-12", False, 17, 4, 4, 16),
]
#: SPIs far from the small numbers a sequence number or a length takes, so that a mutation
#: which moves where the SPI is read does not land on a known one by accident.
SPI_BASE = 0x5A1C0000

ENDS = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::a", "2001:db8::b")}


@pytest.fixture(scope="module")
def esp_build():
    return build_esp_engine()


class World:
    """The twin with PAIRS installed, and what the campaign saw."""

    def __init__(self, twin, seed):
        self.twin = twin
        self.seed = seed
        self.rng = random.Random(seed)
        self.pairs = []
        for i, (mode, alg, esn, window, outer, inner, key_len) in enumerate(PAIRS):
            key = self.rng.randbytes(key_len + 4)
            seq = (1 << 32) - 40 if esn else 0  # the ESN pairs cross 2^32 during the run
            out_idx, in_idx = twin.pair(spi=SPI_BASE + i, mode=mode, algorithm=alg, key=key,
                                        esn=esn, seq=seq, replay_window=window,
                                        endpoints=ENDS[outer] if mode == "tunnel" else None)
            self.pairs.append((out_idx, in_idx))
        # An outbound SA 100 numbers from the end of its (32-bit) sequence numbers, and slots
        # that hold no outbound SA: the outbound side's seq_overflow and no_sa.
        self.exhaust = twin.add(spi=SPI_BASE + 0x100, direction="outbound", seq=(1 << 32) - 100,
                                key=self.rng.randbytes(20))
        self.exhaust_next = (1 << 32) - 99
        twin.commit()
        self.not_outbound = sorted(set(range(twin.hw.params.n_entries)) - {
            i for i, (cfg, _) in twin.sas.items() if cfg.direction == Direction.OUTBOUND})
        self.spis = {SPI_BASE + i for i in range(len(PAIRS))}
        self.accepted = []      # (pair, sealed): genuine packets already accepted, for replays
        self.kinds = Counter()
        self.verdicts = Counter()
        self.ok_mutants = Counter()  # mutants that came out ok: True if the bytes were genuine
        self.dummies = 0             # accepted outbound plaintexts that came back as dummies

    def plaintext(self, family, payload, proto=17):
        if family == 4:
            return build_ipv4("10.0.0.1", "10.0.0.2", proto, payload)
        return build_ipv6("2001:db8::1", "2001:db8::2", proto, payload)

    # -- Random inputs, as tests/esp/test_fuzz.py's hypothesis strategies draw them --

    def size(self):
        r = self.rng.random()
        return self.rng.randint(1, 48) if r < 0.5 else \
            self.rng.randint(1, 300) if r < 0.95 else self.rng.randint(300, 2000)

    def steps(self):
        rng = self.rng
        out = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(("truncate", "extend", "flip", "flip", "overwrite", "length",
                               "spi"))
            if kind == "truncate":
                out.append((kind, rng.randint(0, 2000)))
            elif kind == "extend":
                out.append((kind, rng.randbytes(rng.randint(1, 24))))
            elif kind == "flip":
                out.append((kind, rng.randint(0, 2000), rng.randint(0, 7)))
            elif kind == "overwrite":
                out.append((kind, rng.randint(0, 2000), rng.randbytes(rng.randint(1, 8))))
            elif kind == "length":
                out.append((kind, rng.randint(0, 0xFFFF)))
            else:
                out.append((kind, rng.choice(sorted(self.spis)) if rng.random() < 0.2
                            else rng.getrandbits(32)))
        return out

    def ip_blob(self):
        rng = self.rng
        if rng.random() < 0.3:
            return rng.randbytes(rng.randint(0, 300))
        body = rng.randbytes(rng.randint(1, 300))
        proto = rng.choice([6, 17, 50, 0, 43, 44, 60, 4, 41])
        if rng.random() < 0.5:
            return build_ipv4("10.1.1.1", "10.2.2.2", proto, body)
        return build_ipv6("::1", "::2", proto, body)

    def random_esp(self):
        rng = self.rng
        spi = rng.choice(sorted(self.spis)) if rng.random() < 0.7 else rng.getrandbits(32)
        seq = rng.getrandbits(32) if rng.random() < 0.5 else rng.randint(0, 5000)
        esp = spi.to_bytes(4, "big") + seq.to_bytes(4, "big") + rng.randbytes(rng.randint(0, 200))
        if rng.random() < 0.5:
            return build_ipv4("192.0.2.1", "192.0.2.2", 50, esp)
        return build_ipv6("2001:db8::a", "2001:db8::b", 50, esp)

    # -- One round: an outbound batch, then an inbound batch --

    def round(self, n_cases):
        rng, twin = self.rng, self.twin
        cases = []
        for _ in range(n_cases):
            r = rng.random()
            which = rng.randrange(len(PAIRS))
            if r < 0.48:
                size = self.size()
                plain = self.plaintext(PAIRS[which][5], rng.randbytes(size))
                cases.append(["mutant", which, plain, size, self.steps()])
            elif r < 0.66:
                cases.append(["outbound", which, self.ip_blob()])
            elif r < 0.78:
                cases.append(["random", self.ip_blob()])
            elif r < 0.88:
                cases.append(["esp", self.random_esp()])
            elif r < 0.94:
                cases.append(["old", which])
            elif r < 0.97:
                # An inbound SA's slot, a free one, or one beyond the table.
                slot = rng.choice(self.not_outbound) if rng.random() < 0.7 else \
                    rng.randint(twin.hw.params.n_entries, 0xFFFF)
                cases.append(["wrong-slot", slot, self.ip_blob()])
            else:
                cases.append(["exhaust", self.exhaust, self.plaintext(4, rng.randbytes(20))])
        outbound = [c for c in cases if c[0] in ("mutant", "outbound", "wrong-slot", "exhaust")]
        results = twin.run([(Direction.OUTBOUND, c[2], c[1] if c[0] in ("wrong-slot", "exhaust")
                             else self.pairs[c[1]][0]) for c in outbound])
        for c, (tag, sealed) in zip(outbound, results):
            self.count("outbound " + c[0], tag)
            if c[0] == "mutant":
                assert tag["verdict"] == Verdict.OK, tag
            elif c[0] == "wrong-slot":
                assert (tag["verdict"], tag["sa_valid"]) == (Verdict.NO_SA, 0), (c[1], tag)
            elif c[0] == "exhaust":
                if self.exhaust_next < 1 << 32:
                    assert (tag["verdict"], tag["seq"]) == (Verdict.OK, self.exhaust_next), tag
                    self.exhaust_next += 1
                else:
                    assert tag["verdict"] == Verdict.SEQ_OVERFLOW, tag
            elif tag["verdict"] == Verdict.OK:
                # Anything the outbound side takes is a packet the SA's mode can carry.
                mode = PAIRS[c[1]][0]
                parse_ip(c[2], ext="transport" if mode == "transport" else "none",
                         allow_fragments=mode == "tunnel")
            c.append(sealed)

        # The inbound batch, in case order: the genuine packets of one SA in rising order.
        inbound, plan = [], []
        for c in cases:
            kind = c[0]
            if kind == "mutant":
                sealed = c[5]
                bad = mutate(sealed, c[4])
                plan.append((c, len(inbound)))
                inbound += [bad, sealed, sealed]
                c.append(bad)
            elif kind == "outbound" and c[3] is not None:
                plan.append((c, len(inbound)))
                inbound.append(c[3])
            elif kind in ("random", "esp"):
                plan.append((c, len(inbound)))
                inbound.append(c[1])
            elif kind == "old":
                old = [p for p in self.accepted if p[0] == c[1]]
                if old:
                    c.append(rng.choice(old)[1])
                    plan.append((c, len(inbound)))
                    inbound.append(c[2])
        answers = twin.run([(Direction.INBOUND, p, None) for p in inbound])
        for c, at in plan:
            self.check_inbound(c, answers, at)
        if len(self.accepted) > 2000:
            del self.accepted[:1000]

    def count(self, kind, tag):
        self.kinds[kind] += 1
        self.verdicts[kind.split()[0], Verdict(tag["verdict"]).name.lower()] += 1

    def check_inbound(self, c, answers, at):
        kind = c[0]
        tag, out = answers[at]
        self.count("inbound " + kind, tag)
        verdict = tag["verdict"]
        if kind == "mutant":
            _, which, plain, size, steps, sealed, bad = c
            mode, window = PAIRS[which][0], PAIRS[which][3]
            off = esp_offset(sealed)
            if verdict == Verdict.OK:
                # Only the unprotected outer header may have changed.
                assert len(bad) == len(sealed) and bad[off:] == sealed[off:], \
                    (steps, bad.hex(), sealed.hex())
                assert out == plain if mode == "tunnel" else out[-size:] == plain[-size:]
                self.ok_mutants[bad == sealed] += 1
            if len(bad) >= off + 4 and int.from_bytes(bad[off:off + 4], "big") not in self.spis:
                assert verdict in (Verdict.NO_SA, Verdict.MALFORMED), (steps, tag)
            # A failed mutant moved nothing: the genuine packet is still accepted once (unless
            # the mutant was it in all that ESP protects, and took its place), then a replay.
            again, third = answers[at + 1][0]["verdict"], answers[at + 2][0]["verdict"]
            for t in (answers[at + 1][0], answers[at + 2][0]):
                self.count("inbound genuine", t)
            if window == 0:
                assert (again, third) == (Verdict.OK, Verdict.OK)
            else:
                assert again == (Verdict.REPLAY if verdict == Verdict.OK else Verdict.OK), \
                    (steps, tag)
                assert third == Verdict.REPLAY
            self.accepted.append((which, sealed))
        elif kind == "outbound":
            _, which, blob, sealed = c
            assert verdict == Verdict.OK, (blob.hex(), tag)
            if out is None:
                # A dummy packet (RFC 4303 section 2.6): a transport-mode packet whose last next
                # header is 59 (no next header) is sealed with next header 59 and dropped.
                assert PAIRS[which][0] == "transport", (blob.hex(), tag)
                assert parse_ip(blob, ext="transport").proto == PROTO_NONE, (blob.hex(), tag)
                self.dummies += 1
            else:
                assert out == blob, (blob.hex(), tag)
            self.accepted.append((which, sealed))
        elif kind in ("random", "esp"):
            assert verdict != Verdict.OK, (c[1].hex(), tag)
        else:  # an old genuine packet again
            which = c[1]
            esn, window = PAIRS[which][2], PAIRS[which][3]
            # Below the window an ESN SA takes it for the next high half (RFC 4303 appendix A;
            # a window of 0 infers with 1), whose ICV does not match.
            if window == 0:
                assert verdict in ((Verdict.OK, Verdict.AUTH_FAIL) if esn else (Verdict.OK,)), tag
            else:
                assert verdict in ((Verdict.REPLAY, Verdict.AUTH_FAIL) if esn
                                   else (Verdict.REPLAY,)), tag

    def report(self, seconds):
        total = sum(self.kinds.values())
        lines = [f"{total} packets through the gateware and the model in {seconds:.1f} s "
                 f"({total / seconds:.0f} packets/s), seed {self.seed}",
                 *(f"{d} verdicts: " + ", ".join(f"{k} {v}" for (dd, k), v in
                                                 sorted(self.verdicts.items()) if dd == d)
                   for d in ("outbound", "inbound")),
                 "kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items())),
                 f"mutants that came out ok: {self.ok_mutants[True]} whose bytes were left "
                 f"genuine, {self.ok_mutants[False]} changed only in the outer header",
                 f"random plaintexts sealed and opened as dummy packets (next header 59): "
                 f"{self.dummies}"]
        return "\n".join(lines)


def campaign(n_packets, seed, progress=None):
    """``n_packets`` or a few more (whole rounds) through a fresh twin; (world, seconds).
    ``progress`` gets a line every 250 rounds."""
    twin = Twin()
    try:
        world = World(twin, seed)
        start = time.monotonic()
        rounds = 0
        while twin.packets < n_packets:
            try:
                world.round(ROUND)
            except Exception as exc:
                raise AssertionError(f"round {rounds} of the campaign with seed {seed} "
                                     f"({twin.packets} packets before it): {exc}") from exc
            rounds += 1
            if rounds % 20 == 0:
                twin.check_state()
            if progress is not None and rounds % 250 == 0:
                progress(f"{twin.packets} packets, {time.monotonic() - start:.0f} s")
        twin.check_state()
        elapsed = time.monotonic() - start
        assert sum(world.kinds.values()) == twin.packets
        return world, elapsed
    finally:
        twin.close()


def test_fuzz_short(esp_build):
    world, elapsed = campaign(DEFAULT_PACKETS, seed=1)
    print("\n" + world.report(elapsed))
    # The run reached every kind of input and every verdict an inbound packet can get.
    assert {"inbound mutant", "inbound random", "inbound esp", "inbound old",
            "inbound outbound", "outbound outbound"} <= set(world.kinds)
    assert {("inbound", v) for v in ("ok", "auth_fail", "replay", "no_sa", "malformed")} | \
        {("outbound", v) for v in ("ok", "malformed", "no_sa", "seq_overflow")} <= \
        set(world.verdicts)


@pytest.mark.fuzz
def test_fuzz_campaign(esp_build):
    world, elapsed = campaign(FUZZ_PACKETS, FUZZ_SEED,
                              progress=lambda line: print(line, flush=True))
    print(f"\nIPCHAN_FUZZ_PACKETS={FUZZ_PACKETS} IPCHAN_FUZZ_SEED={FUZZ_SEED}\n"
          + world.report(elapsed))
