"""The driver on the golden model: the host API's behaviour, its errors, and cuckoo placement."""

import random

import pytest

from ipchan.hw import contract
from ipchan.hw.contract import EngineParams, SlotState
from ipchan.sim.scoreboard import engine_state, random_sa
from ipchan.sw.driver import (Engine, HashFullError, NoSuchSaError, NothingStagedError, SaConfig,
                              TableFullError, VersionExhaustedError)
from ipchan.sw.model import EngineModel
from ipchan.sw.transport import BusError, ModelTransport


def sa(spi, **kw):
    args = dict(spi=spi, direction="inbound", mode="transport", algorithm="aes-gcm-16",
                key=bytes(range(16)), salt=b"salt")
    args.update(kw)
    return SaConfig(**args)


@pytest.fixture
def engine():
    return Engine.for_model(EngineParams(n_entries=8))


def test_staged_changes_are_invisible_until_commit(engine):
    ref = engine.install(sa(0x1234))
    assert engine.lookup(0x1234).found is False
    assert engine.staged() == 1
    assert engine.commit() == 1
    r = engine.lookup(0x1234)
    assert (r.found, r.index, r.generation, r.version) == (True, ref.index, ref.generation, 1)
    engine.delete(ref.index)
    assert engine.lookup(0x1234).found is True
    assert engine.commit() == 2
    assert engine.lookup(0x1234).found is False


def _visible(engine):
    state = engine_state(engine)
    return (state["version"], state["occupancy"],
            [s for s in state["slots"] if s.state != SlotState.FREE])


def test_abort_restores(engine):
    """ABORT leaves the visible table and the version as they were. The slot an aborted install
    used keeps its advanced generation: a slot's generation never goes back."""
    a = engine.install(sa(0x1000))
    engine.commit()
    before = _visible(engine)
    b = engine.install(sa(0x2000))
    engine.delete(a.index)
    engine.abort()
    assert _visible(engine) == before
    assert engine.lookup(0x1000).found and not engine.lookup(0x2000).found
    assert engine.read_entry(b.index).generation == b.generation


def test_transaction_commits_or_aborts(engine):
    with engine.transaction() as result:
        engine.install(sa(0x1000))
        engine.install(sa(0x2000, direction="outbound"))
    assert result == [1]
    before = _visible(engine)
    with pytest.raises(RuntimeError, match="boom"):
        with engine.transaction():
            engine.install(sa(0x3000))
            raise RuntimeError("boom")
    assert _visible(engine) == before


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(spi=0), ValueError, r'SPI 0 is reserved \(it means "no SA"'),
    (dict(spi=255), ValueError, r"SPI 255 is in the range 1..255 that IANA reserves"),
    (dict(spi=1 << 32), ValueError, r"SPI must fit in 32 bits, not 0x100000000"),
    (dict(spi="7"), TypeError, r"SPI must be an integer, not '7'"),
    (dict(key=bytes(15)), ValueError, r"Key must be 16 or 32 bytes .* not 15 bytes"),
    (dict(key="00" * 16), TypeError, r"Key must be bytes, not str"),
    (dict(salt=b"abc"), ValueError, r"Salt must be 4 bytes, not 3 bytes"),
    (dict(algorithm="aes-ccm"), ValueError, r"Unknown algorithm 'aes-ccm'"),
    (dict(direction="sideways"), ValueError, r"Direction must be one of 'inbound', 'outbound', not 'sideways'"),
    (dict(mode="bridge"), ValueError, r"Mode must be one of 'transport', 'tunnel', not 'bridge'"),
    (dict(seq=1 << 32), ValueError, r"Sequence number must be from 0 to 4294967295, not 4294967296"),
    (dict(replay_window=-1), ValueError, r"Replay window must be from 0 to 1024, not -1"),
    (dict(esn=1), TypeError, r"ESN must be a bool, not 1"),
])
def test_bad_sa_named(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        sa(**{"spi": 0x1000, **kwargs})


def test_key_with_salt_appended_is_split():
    cfg = SaConfig(spi=0x1000, direction="inbound", mode="tunnel", algorithm="aes-gmac",
                   key=bytes(32) + b"SALT")
    assert (len(cfg.key), cfg.salt) == (32, b"SALT")
    assert "key=<32 bytes>" in repr(cfg) and "SALT" not in repr(cfg)


def test_engine_errors_leave_state_unchanged(engine):
    refs = [engine.install(sa(0x1000 + i)) for i in range(3)]
    engine.commit()
    before = engine_state(engine)
    with pytest.raises(NoSuchSaError, match=r"No SA to delete in slot 7 \(the slot is free\)"):
        engine.delete(7)
    with pytest.raises(ValueError, match=r"Slot index must be from 0 to 7, not 8"):
        engine.delete(8)
    with pytest.raises(NothingStagedError, match=r"Nothing to commit: no change is staged"):
        engine.commit()
    with pytest.raises(NothingStagedError, match=r"Nothing to abort"):
        engine.abort()
    with pytest.raises(ValueError, match=r"Inbound SPI 0x00001001 is already in use by slot 1"):
        engine.install(sa(0x1001))
    with pytest.raises(ValueError, match=r"Replay window 128 is larger than this engine's maximum of 64"):
        engine.install(sa(0x5000, replay_window=128))
    with pytest.raises(TypeError, match=r"SA must be an SaConfig, not 5"):
        engine.install(5)
    assert engine_state(engine) == before
    engine.delete(refs[0].index)
    with pytest.raises(NoSuchSaError, match=r"the slot is staged_del"):
        engine.delete(refs[0].index)


def test_table_full(engine):
    for i in range(8):
        engine.install(sa(0x1000 + i, direction="outbound"))
    before = engine_state(engine)
    with pytest.raises(TableFullError, match=r"SA table is full: all 8 slots"):
        engine.install(sa(0x9999))
    assert engine_state(engine) == before


def test_version_exhaustion_on_model():
    engine = Engine.for_model(EngineParams(n_entries=4, version_width=4))
    for _ in range(15):
        engine.bump_version()
    assert engine.version() == 15
    engine.install(sa(0x1000))
    with pytest.raises(VersionExhaustedError, match=r"Version is at its largest value \(15\)"):
        engine.commit()
    assert engine.version() == 15 and engine.staged() == 1


def test_bus_error_on_unmapped_address():
    t = ModelTransport(EngineModel())
    with pytest.raises(BusError, match=r"Bus error DECERR at address 0xffc"):
        t.read(0xFFC)
    with pytest.raises(ValueError, match=r"Register value must be a 32-bit unsigned integer, not -1"):
        t.write(0x40, -1)


def _colliding_spis(params, count):
    """SPIs that all hash to the same bucket in both tables."""
    bw = params.bucket_width
    target = (contract.spi_hash(0, 0x1000, bw), contract.spi_hash(1, 0x1000, bw))
    out, spi = [], 0x1000
    while len(out) < count:
        if (contract.spi_hash(0, spi, bw), contract.spi_hash(1, spi, bw)) == target:
            out.append(spi)
        spi += 1
    return out


def test_cuckoo_gives_up_cleanly():
    params = EngineParams(n_entries=8)
    engine = Engine.for_model(params)
    s1, s2, s3 = _colliding_spis(params, 3)
    engine.install(sa(s1))
    engine.install(sa(s2))
    engine.commit()
    before = engine_state(engine)
    with pytest.raises(HashFullError, match=rf"No bucket can be freed for SPI {s3:#010x} .*"
                                            r"choose another SPI"):
        engine.install(sa(s3))
    assert engine_state(engine) == before


def test_cuckoo_moves_an_spi():
    """Fill buckets so that a new SPI finds both of its buckets taken, and check that a move
    makes room while every SPI stays findable."""
    params = EngineParams(n_entries=16)
    rng = random.Random(11)
    for _ in range(200):
        engine = Engine.for_model(params)
        spis = [rng.randrange(256, 1 << 32) for _ in range(16)]
        if len(set(spis)) < 16:
            continue
        for spi in spis:
            engine.install(sa(spi))
        engine.commit()
        assert all(engine.lookup(s).found for s in spis)
        if engine.relocations:
            return
    pytest.fail("no random fill needed a relocation; the test no longer tests relocation")


def test_reattach_rebuilds_view():
    """A second driver on the same engine (a restarted key manager) sees what the first left."""
    model = EngineModel(EngineParams(n_entries=8))
    first = Engine(ModelTransport(model))
    rng = random.Random(4)
    for i in range(5):
        first.install(random_sa(rng, spi=0x7000 + i, params=model.params))
    first.commit()
    first.delete(2)
    second = Engine(ModelTransport(model))
    assert [(e.index, e.state) for e in second.entries()] == \
        [(e.index, e.state) for e in first.entries()]
    assert second._buckets[0].keys() == first._buckets[0].keys()
    assert second.staged() == 1
    assert [e.state for e in second.entries()][2] == SlotState.STAGED_DEL


def test_wrong_device():
    class Zero:
        def read(self, addr):
            return 0

        def write(self, addr, value):
            pass

        def close(self):
            pass

        def __repr__(self):
            return "Zero()"

    with pytest.raises(IOError, match=r"No ipchan engine behind Zero\(\): ID register reads 0x00000000"):
        Engine(Zero())
    with pytest.raises(TypeError, match=r"Transport must provide read, write and close, not 3"):
        Engine(3)


def test_engine_without_tunnel_endpoints_refuses_an_sa_that_has_them():
    """The small (iCE40) profile stores no endpoints: the driver discovers it from CONFIG2 and
    refuses such an SA before anything is written; SAs without endpoints install as ever."""
    from ipchan.hw.contract import SMALL_PARAMS
    engine = Engine.for_model(SMALL_PARAMS)
    assert engine.params == SMALL_PARAMS and not engine.params.tunnel_endpoints
    cfg = SaConfig(spi=0x1000, direction="outbound", mode="tunnel", algorithm="aes-gcm-16",
                   key=bytes(20), src="192.0.2.1", dst="198.51.100.2")
    before = (engine.version(), engine.occupancy(), engine.staged())
    with pytest.raises(ValueError, match=r"This engine's SA table stores no tunnel endpoints "
                                         r"\(built with tunnel_endpoints=False\), so it cannot "
                                         r"hold an SA with src=192.0.2.1 and dst=198.51.100.2"):
        engine.install(cfg)
    assert (engine.version(), engine.occupancy(), engine.staged()) == before
    ref = engine.install(SaConfig(spi=0x1000, direction="outbound", mode="tunnel",
                                  algorithm="aes-gcm-16", key=bytes(20)))
    engine.commit()
    assert int(engine.read_entry(ref.index).src) == int(engine.read_entry(ref.index).dst) == 0


def test_tunnel_endpoints_parameter_is_checked():
    from ipchan.hw.contract import EngineParams
    with pytest.raises(TypeError, match=r"Tunnel endpoints must be a bool, not 1"):
        EngineParams(tunnel_endpoints=1)
