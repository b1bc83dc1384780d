"""The inbound anti-replay window and ESN inference (RFC 4303 section 3.4.3 and appendix A).

State per inbound SA: ``top`` (T, the highest sequence number received, 64 bits with ESN) and a
bitmap of ``window`` (W) bits in which bit ``i`` says that ``T - i`` was received.

* ``T`` counts as received whatever bit 0 says: installing an SA with ``seq = T`` means "T and
  everything above the window is spent", and a fresh SA (T = 0) refuses sequence number 0, which no
  sender uses (the first packet of an SA has sequence number 1, RFC 4303 section 3.3.3).
* A number above ``T`` passes; one at ``T``, at or below ``T - W``, or whose bit is set is a replay.
* ``W = 0`` disables the check: every number passes (RFC 4303 section 3.4.3 lets the receiver
  turn it off), but ``T`` still follows the highest number accepted, because ESN inference needs it.
* The window moves only when the datapath says so (after the ICV verified and the packet came out
  ``ok``): a number above ``T`` sets bit 0 (the old ``T``), shifts the bitmap left by the
  difference and becomes ``T`` with bit 0 set; a number inside the window sets its bit. The
  bitmap keeps ``W`` bits (bits at ``W`` and above are always 0).

ESN inference is appendix A2.2 verbatim, with ``W`` replaced by 1 when the window is disabled (the
appendix needs a window; with 1 the guess is "the same epoch if not below T, else the next"). The
high half is computed modulo 2^32 as the gateware's 32-bit adder does; a carry out of ``Th + 1`` or
a borrow out of ``Th - 1`` means the packet cannot belong to this SA (before its first or after its
last number) and is a replay whatever the window.
"""

__all__ = ["infer_seq", "precheck", "advance"]

_MASK32 = 0xFFFFFFFF


def infer_seq(seq_lo, top, window, esn):
    """The full sequence number of a packet carrying ``seq_lo``: ``(seq, out_of_range)``.

    ``seq`` is 64 bits (the high half modulo 2^32); ``out_of_range`` is true when the high half
    over- or underflowed."""
    if not esn:
        return seq_lo, False
    w = max(window, 1)
    tl, th = top & _MASK32, top >> 32
    if tl >= w - 1:                                      # Case A
        if seq_lo >= tl - w + 1:
            hi = th
        else:
            hi = th + 1
    else:                                                # Case B
        if seq_lo >= (tl - w + 1) & _MASK32:
            hi = th - 1
        else:
            hi = th
    out_of_range = not 0 <= hi <= _MASK32
    return ((hi & _MASK32) << 32) | seq_lo, out_of_range


def precheck(seq, top, bitmap, window):
    """True when ``seq`` may be accepted (before the ICV is verified)."""
    if window == 0:
        return True
    if seq > top:
        return True
    diff = top - seq
    if diff == 0 or diff >= window:
        return False
    return not (bitmap >> diff) & 1


def advance(seq, top, bitmap, window):
    """The new ``(top, bitmap)`` once ``seq`` has been accepted."""
    if window == 0:
        return max(top, seq), 0
    mask = (1 << window) - 1
    if seq > top:
        shift = seq - top
        # The old top counts as received (bit 0 may be clear after install): carry it as set.
        bitmap = (((bitmap | 1) << shift) | 1) & mask if shift < window else 1
        return seq, bitmap
    return top, (bitmap | (1 << (top - seq))) & mask
