"""The anti-replay window and ESN inference, against definitions written differently."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ipchan.sw.esp.replay import advance, infer_seq, precheck

M32 = 1 << 32


def test_rfc4303_appendix_a_cases():
    w = 64
    # Case A, Tl >= W - 1: inside the window -> same epoch, below it -> next epoch.
    assert infer_seq(100, (3 << 32) | 100, w, True) == ((3 << 32) | 100, False)
    assert infer_seq(37, (3 << 32) | 100, w, True) == ((3 << 32) | 37, False)
    assert infer_seq(36, (3 << 32) | 100, w, True) == ((4 << 32) | 36, False)
    # Case B, Tl < W - 1: the window straddles the epoch boundary.
    assert infer_seq(M32 - 10, (3 << 32) | 5, w, True) == ((2 << 32) | (M32 - 10), False)
    assert infer_seq(6, (3 << 32) | 5, w, True) == ((3 << 32) | 6, False)
    # ...and at the very start there is no previous epoch.
    seq, out = infer_seq(M32 - 10, 5, w, True)
    assert out and seq == (0xFFFFFFFF << 32) | (M32 - 10)
    # ...nor a next one at the very end.
    seq, out = infer_seq(3, (0xFFFFFFFF << 32) | 1000, w, True)
    assert out and seq == 3
    # Without ESN the number is the 32 bits on the wire.
    assert infer_seq(36, 100, w, False) == (36, False)


@settings(max_examples=400, deadline=None)
@given(top=st.integers(0, (1 << 64) - 1), window=st.sampled_from([0, 1, 2, 32, 64, 1000, 1024]),
       seq_lo=st.integers(0, M32 - 1))
def test_inference_is_the_number_in_the_window_span(top, window, seq_lo):
    """Appendix A's guess is the unique S = seq_lo (mod 2^32) in [T - W + 1, T - W + 1 + 2^32)."""
    w = max(window, 1)
    bottom = top - w + 1
    s = bottom + ((seq_lo - bottom) % M32)
    seq, out = infer_seq(seq_lo, top, window, True)
    assert out == (not 0 <= s < 1 << 64)
    if not out:
        assert seq == s


@settings(max_examples=300, deadline=None)
@given(window=st.sampled_from([1, 2, 5, 32, 64, 100]),
       seqs=st.lists(st.integers(1, 400), max_size=120), start=st.integers(0, 50))
def test_window_matches_a_set(window, seqs, start):
    """precheck/advance accept exactly: not seen, not the start top, above T or within W of T."""
    top, bitmap = start, 0
    seen = {start}
    for seq in seqs:
        ok = precheck(seq, top, bitmap, window)
        assert ok == (seq not in seen and (seq > top or top - seq < window))
        if ok:
            top, bitmap = advance(seq, top, bitmap, window)
            seen.add(seq)
        assert bitmap < 1 << window


def test_window_zero_accepts_everything_and_tracks_top():
    top, bitmap = 10, 0
    for seq in (10, 3, 10, 0, 12, 11):
        assert precheck(seq, top, bitmap, 0)
        top, bitmap = advance(seq, top, bitmap, 0)
    assert (top, bitmap) == (12, 0)
