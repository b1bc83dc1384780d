"""The register contract is self-consistent, and everything derived from it agrees with it."""

import pytest

from ipchan.hw import contract
from ipchan.hw.contract import EngineParams, Field
from ipchan.sw.regs import ADDR, FIELD


def test_addresses_unique_and_aligned():
    addrs = [r.addr for r in contract.REGISTERS]
    assert len(addrs) == len(set(addrs))
    assert all(a % 4 == 0 and a < (1 << contract.ADDR_WIDTH) for a in addrs)


def test_driver_constants_come_from_contract():
    for reg in contract.REGISTERS:
        assert getattr(ADDR, reg.name) == reg.addr
        for f in reg.fields:
            assert getattr(getattr(FIELD, reg.name), f.name) is f


def test_field_put_refuses_overflow():
    f = Field("X", 4, 3)
    assert f.put(5) == 5 << 4 and f.get(5 << 4) == 5
    with pytest.raises(ValueError, match=r"Value 8 does not fit field 'X' of width 3"):
        f.put(8)


def test_tag_round_trip_and_width():
    assert contract.tag_width() == sum(w for _, w, _ in contract.TAG_FIELDS)
    tag = contract.pack_tag(verdict=contract.Verdict.REPLAY, sa_valid=1, sa_index=7,
                            sa_generation=3, version=(1 << 63) + 5, seq=(1 << 40) + 9)
    assert contract.unpack_tag(tag) == {"verdict": 2, "sa_valid": 1, "sa_index": 7,
                                        "sa_generation": 3, "version": (1 << 63) + 5,
                                        "seq": (1 << 40) + 9}
    with pytest.raises(ValueError, match=r"Tag field 'sa_index' value 65536 does not fit"):
        contract.pack_tag(sa_index=1 << 16)
    with pytest.raises(ValueError, match=r"Tag has no field 'colour'"):
        contract.pack_tag(colour=1)


def test_hash_is_deterministic_and_in_range():
    for spi in (0x100, 0xDEADBEEF, 0xFFFFFFFF):
        for t in (0, 1):
            h = contract.spi_hash(t, spi, 9)
            assert 0 <= h < 512 and h == contract.spi_hash(t, spi, 9)
    # The two tables' hashes differ, or cuckoo hashing would gain nothing.
    same = sum(contract.spi_hash(0, s, 9) == contract.spi_hash(1, s, 9) for s in range(256, 4352))
    assert same < 4096 // 64
    with pytest.raises(ValueError, match=r"Hash table must be 0 or 1, not 2"):
        contract.spi_hash(2, 0x1000, 9)


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(n_entries=12), ValueError, r"Number of entries must be a power of two from 2 to 4096, not 12"),
    (dict(n_entries="16"), TypeError, r"Number of entries must be an integer, not '16'"),
    (dict(generation_width=17), ValueError, r"Generation width must be an integer from 1 to 16, not 17"),
    (dict(version_width=3), ValueError, r"Version width must be an integer from 4 to 64, not 3"),
    (dict(window_max=100), ValueError, r"Maximum replay window must be one of .*, not 100"),
])
def test_params_checked(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        EngineParams(**kwargs)


def test_algorithm_text():
    assert contract.Algorithm.from_text("aes-gmac") is contract.Algorithm.AES_GMAC
    assert [a.icv_len for a in contract.Algorithm] == [8, 12, 16, 16]
    with pytest.raises(ValueError, match=r"Unknown algorithm 'aes-cbc'; expected one of"):
        contract.Algorithm.from_text("aes-cbc")
