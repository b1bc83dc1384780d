"""The golden model (through the driver) against a much simpler oracle: plain dictionaries of
what is committed and what is staged. The gateware is checked against the model, so the model is
checked here against the specification in its plainest form."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ipchan.hw.contract import EngineParams
from ipchan.sw.driver import (Engine, HashFullError, NoSuchSaError,
                              NothingStagedError, SaConfig, TableFullError)

N = 8
SPIS = st.sampled_from([0x1000 + 7 * i for i in range(12)])


class ModelAgainstOracle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.engine = Engine.for_model(EngineParams(n_entries=N))
        self.version = 0
        self.live = {}          # index -> (spi, inbound, generation): committed and visible
        self.adds = {}          # index -> (spi, inbound, generation): staged installs
        self.dels = set()       # indices of live SAs staged for deletion
        self.cancelled = set()  # staged installs deleted again: freed at the next commit/abort
        self.generation = {}    # index -> last generation handed out
        self.staged = 0

    def _in_use(self):
        return len(self.live) + len(self.adds) + len(self.cancelled)

    @rule(spi=SPIS, inbound=st.booleans())
    def install(self, spi, inbound):
        cfg = SaConfig(spi=spi, direction="inbound" if inbound else "outbound",
                       mode="transport", algorithm="aes-gcm-16", key=bytes(16), salt=bytes(4))
        taken = any(s == spi and i for idx, (s, i, _) in {**self.live, **self.adds}.items()
                    if idx not in self.dels)
        try:
            ref = self.engine.install(cfg)
        except TableFullError:
            # Slots freed only by a commit (staged deletions) are still occupied.
            assert self._in_use() == N
            return
        except HashFullError:
            return
        except ValueError as exc:
            assert inbound and taken, exc
            return
        assert not (inbound and taken), "a duplicate inbound SPI was accepted"
        assert ref.index not in self.live and ref.index not in self.adds
        assert ref.generation == (self.generation.get(ref.index, 0) + 1) & 0xFFFF
        self.generation[ref.index] = ref.generation
        self.adds[ref.index] = (spi, inbound, ref.generation)
        self.staged += 1

    @rule(index=st.integers(0, N - 1))
    def delete(self, index):
        try:
            self.engine.delete(index)
        except NoSuchSaError:
            assert index not in self.adds and (index not in self.live or index in self.dels)
            return
        if index in self.adds:
            del self.adds[index]           # cancels a staged install
            self.cancelled.add(index)
        else:
            assert index in self.live and index not in self.dels
            self.dels.add(index)
        self.staged += 1

    @rule()
    def commit(self):
        try:
            version = self.engine.commit()
        except NothingStagedError:
            assert self.staged == 0
            return
        assert self.staged > 0
        self.version += 1
        assert version == self.version
        for index in self.dels:
            del self.live[index]
        self.live.update(self.adds)
        self.adds, self.dels, self.cancelled, self.staged = {}, set(), set(), 0

    @rule()
    def abort(self):
        try:
            self.engine.abort()
        except NothingStagedError:
            assert self.staged == 0
            return
        self.adds, self.dels, self.cancelled, self.staged = {}, set(), set(), 0

    @rule()
    def bump(self):
        self.version += 1
        assert self.engine.bump_version() == self.version

    @invariant()
    def lookups_match(self):
        visible = {spi: (idx, gen) for idx, (spi, inbound, gen) in self.live.items() if inbound}
        for spi in [0x1000 + 7 * i for i in range(12)]:
            r = self.engine.lookup(spi)
            assert r.version == self.version
            if spi in visible:
                assert (r.found, r.index, r.generation) == (True, *visible[spi]), hex(spi)
            else:
                assert not r.found, hex(spi)

    @invariant()
    def counts_match(self):
        live, free = self.engine.occupancy()
        assert live == len(self.live)
        assert free == N - self._in_use()
        assert self.engine.staged() == self.staged


TestModelAgainstOracle = ModelAgainstOracle.TestCase
TestModelAgainstOracle.settings = settings(max_examples=60, stateful_step_count=40,
                                           deadline=None)
