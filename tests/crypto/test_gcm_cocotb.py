"""The AES-GCM / GMAC core on Verilator through cocotb (``ipchan.sim.tb_gcm``), for both profiles:
random messages against ``cryptography``'s AESGCM, GMAC, and NIST CAVP vectors, each crossed with
idle and backpressure generators on the core's streams. (The Amaranth-simulator tests beside this
one cover the same ground at the unit level and run the full NIST files under ``-m slow``.)"""

import json

import pytest

from ipchan.sim.build import BUILD_ROOT, cached_verilog, run_cocotb

from . import nist
from .gcmbench import CORES, TEST_KEY_SLOTS, make_core


PROFILES = list(CORES)


def _verilog(profile):
    from amaranth.back import verilog
    return verilog.convert(make_core(profile), name="gcm_core")


def _vectors(every=False):
    """Every 96-bit-IV vector of the four files, or (default) the first vector of each group and,
    in the decrypt files, its first of the other kind (FAIL or not): every key size, tag length,
    AAD and text length class, about 1,050 vectors."""
    chosen = []
    for name in nist.FILES:
        by_group = {}
        for v in nist.load(name):
            by_group.setdefault(v.section, []).append(v)
        for section in sorted(by_group):
            group = by_group[section]
            picks = group if every else [group[0]]
            if group[0].decrypt and not every:
                picks += [v for v in group if v.fail != group[0].fail][:1]
            chosen += picks
    return [dict(name=v.name, decrypt=v.decrypt, fail=v.fail, key=v.key.hex(), iv=v.iv.hex(),
                 aad=v.aad.hex(), pt=(v.pt or b"").hex(), ct=v.ct.hex(), tag=v.tag.hex())
            for v in chosen]


def test_vector_choice_covers_every_kind():
    vectors = _vectors()
    assert len(_vectors(every=True)) == 4 * 2625
    kinds = {(v["decrypt"], v["fail"], len(v["key"]) // 2, len(v["tag"]) // 2) for v in vectors}
    for decrypt, fail in ((False, False), (True, False), (True, True)):
        for key_bytes in (16, 32):
            for tag_bytes in (4, 8, 12, 13, 14, 15, 16):
                assert (decrypt, fail, key_bytes, tag_bytes) in kinds, \
                    (decrypt, fail, key_bytes, tag_bytes)


def _run(request, profile, *, every, testcase=None, messages=100):
    verilog = cached_verilog(f"gcm-{profile}", lambda: _verilog(profile))
    build_dir = BUILD_ROOT / "sim" / request.node.name.replace("[", "-").rstrip("]")
    build_dir.mkdir(parents=True, exist_ok=True)
    vectors = build_dir / "nist-vectors.json"
    vectors.write_text(json.dumps(_vectors(every)))
    run_cocotb(simulator="verilator", verilog=verilog, toplevel="gcm_core",
               test_module="ipchan.sim.tb_gcm", build_dir=build_dir, testcase=testcase,
               extra_env={"IPCHAN_GCM_VECTORS": str(vectors), "IPCHAN_MESSAGES": str(messages),
                          **({"IPCHAN_KEY_SLOTS": str(TEST_KEY_SLOTS)}
                             if profile == "compact-keys" else {})})


@pytest.mark.parametrize("profile", PROFILES)
def test_gcm_core_on_verilator(request, profile):
    _run(request, profile, every=False)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_gcm_core_on_verilator_every_nist_vector(request, profile):
    """All 10,500 vectors (without stalls; the default run crosses a subset with them)."""
    _run(request, profile, every=True, testcase=["test_nist_vectors/idle=None/backpressure=None"])
