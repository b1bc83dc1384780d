"""NIST CAVP GCM vectors (SP 800-38D validation files, 96-bit IVs) through both profiles.

The default run takes one vector from every parameter group of every file (each key size, tag
length, AAD length and text length class appears, and the decrypt groups include FAIL entries),
spread over the groups' Count numbers; ``-m slow`` runs every 96-bit-IV vector.
"""

import pytest

from .gcmbench import CORES, Message, run_gcm
from .nist import FILES, load


PROFILES = list(CORES)
#: Vectors per simulation: one core takes them back to back, so keys change on every message.
CHUNK = 400


def _subset(vectors, stride):
    return [v for v in vectors if (v.count - v.section) % 15 == 0][::stride]


def _message(v):
    if v.decrypt:
        return Message(v.key, v.iv, v.aad, v.ct, decrypt=True, tag_bytes=len(v.tag),
                       received_tag=v.tag)
    return Message(v.key, v.iv, v.aad, v.pt, tag_bytes=len(v.tag))


def check(profile, vectors):
    failures = []
    for start in range(0, len(vectors), CHUNK):
        chunk = vectors[start:start + CHUNK]
        outcomes = run_gcm(profile, [_message(v) for v in chunk])
        for v, out in zip(chunk, outcomes):
            t = len(v.tag)
            problems = []
            if out.aad != v.aad:
                problems.append("AAD not passed through")
            if out.error:
                problems.append("error flag")
            if v.decrypt:
                if out.match == v.fail:
                    problems.append(f"match={out.match} but FAIL={v.fail}")
                if not v.fail and out.text != v.pt:
                    problems.append("plaintext differs")
            else:
                if out.text != v.ct:
                    problems.append("ciphertext differs")
                if out.tag[:t] != v.tag:
                    problems.append(f"tag {out.tag.hex()} != {v.tag.hex()}")
                if out.match:
                    problems.append("match set on encryption")
            if problems:
                failures.append(f"{v.name}: {', '.join(problems)}")
    assert not failures, f"{len(failures)} of {len(vectors)} vectors failed:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("file", FILES)
def test_nist_subset(profile, file):
    vectors = _subset(load(file), stride=STRIDE[profile])
    assert len(vectors) >= 20
    check(profile, vectors)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("file", FILES)
def test_nist_full(profile, file):
    vectors = load(file)
    assert len(vectors) == 2625
    check(profile, vectors)


#: Every STRIDE-th of the one-per-group selection runs by default (keeps tests/crypto/ ~3 min).
STRIDE = {"compact": 4, "compact-keys": 4, "fast": 4}


@pytest.mark.parametrize("profile", PROFILES)
def test_subset_covers_every_class(profile):
    for file in FILES:
        vectors = _subset(load(file), stride=STRIDE[profile])
        assert {len(v.tag) for v in vectors} == {4, 8, 12, 13, 14, 15, 16}
        assert {len(v.aad) for v in vectors} == {0, 16, 20, 48, 90}
        assert {len(v.key) for v in vectors} == {16 if "128" in file else 32}
        if "Decrypt" in file:
            assert any(v.fail for v in vectors) and not all(v.fail for v in vectors)
        else:
            assert {len(v.pt) for v in vectors} == {0, 13, 16, 32, 51}
