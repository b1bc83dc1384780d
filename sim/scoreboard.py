"""Scoreboard: run every driver operation on the device under test and on the golden model, and
insist that both answer the same (the same value, or the same error with the same message)."""

import random

from ipchan.hw.contract import Algorithm, Direction, Mode
from ipchan.sw.driver import Engine, EngineError, SaConfig


__all__ = ["Mismatch", "Twin", "engine_state", "random_sa", "random_walk"]


class Mismatch(AssertionError):
    pass


def _outcome(func, *args):
    try:
        return ("ok", func(*args))
    except (EngineError, ValueError, TypeError) as exc:
        return ("error", type(exc).__name__, str(exc))


def engine_state(engine):
    """Everything the host can observe of an engine's table (without changing it)."""
    p = engine.params
    return {
        "version": engine.version(),
        "staged": engine.staged(),
        "occupancy": engine.occupancy(),
        "slots": [engine.read_entry(i) for i in range(p.n_entries)],
        "buckets": [engine.read_bucket(t, b) for t in range(2) for b in range(p.n_buckets)],
    }


class Twin:
    """The DUT's driver and the model's driver, driven in lockstep."""

    def __init__(self, dut: Engine, model: Engine):
        if dut.params != model.params:
            raise Mismatch(f"DUT parameters {dut.params} differ from the model's {model.params}")
        self.dut, self.model = dut, model
        self.steps = 0

    def call(self, name, *args):
        got = _outcome(getattr(self.dut, name), *args)
        want = _outcome(getattr(self.model, name), *args)
        self.steps += 1
        if got != want:
            raise Mismatch(f"step {self.steps}: {name}{args!r}: DUT gave {got!r}, model {want!r}")
        if got[0] == "error":
            return None
        return got[1]

    def check_state(self):
        got, want = engine_state(self.dut), engine_state(self.model)
        for key in want:
            if got[key] != want[key]:
                raise Mismatch(f"step {self.steps}: {key} differs: DUT {got[key]!r}, "
                               f"model {want[key]!r}")
        counters_dut, counters_model = self.dut.counters(), self.model.counters()
        if counters_dut != counters_model:
            raise Mismatch(f"step {self.steps}: counters differ: DUT {counters_dut}, "
                           f"model {counters_model}")


def random_sa(rng, spi=None, params=None):
    window_max = params.window_max if params else 64
    key_len = rng.choice((16, 32))
    esn = rng.random() < 0.3
    return SaConfig(
        spi=spi if spi is not None else rng.randrange(256, 1 << 32),
        direction=rng.choice(list(Direction)),
        mode=rng.choice(list(Mode)),
        algorithm=rng.choice(list(Algorithm)),
        key=rng.randbytes(key_len), salt=rng.randbytes(4), esn=esn,
        seq=rng.randrange(1 << (64 if esn else 32)),
        replay_window=rng.choice((0, 32, window_max)),
    )


def random_walk(twin, seed, steps, *, spi_pool=None):
    """A seeded random sequence of installs, deletes, commits, aborts, bumps and lookups.

    SPIs are drawn from a small pool so that lookups hit, SPIs collide in buckets and get
    relocated, and slots are reused (generations move)."""
    rng = random.Random(seed)
    p = twin.model.params
    pool = spi_pool or [rng.randrange(256, 1 << 32) for _ in range(p.n_entries * 2)]
    for _ in range(steps):
        r = rng.random()
        if r < 0.35:
            twin.call("install", random_sa(rng, spi=rng.choice(pool), params=p))
        elif r < 0.55:
            twin.call("delete", rng.randrange(p.n_entries))
        elif r < 0.70:
            twin.call("commit")
        elif r < 0.75:
            twin.call("abort")
        elif r < 0.78:
            twin.call("bump_version")
        else:
            twin.call("lookup", rng.choice(pool))
        if rng.random() < 0.05:
            twin.check_state()
    twin.check_state()
