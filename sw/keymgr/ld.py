"""The Latch Database (section 2.1) and its indices.

* by handle: every latch that is not yet deleted;
* ``live``: exact 5-tuple -> the LARVAL or ESTABLISHED latch on it (at most one, an invariant);
* ``listeners``: exact 3-tuple -> the LISTENER latch;
* ordered keys of live latches by (remote address, local address, protocol, remote port, local
  port), and of listeners by (local address, protocol, local port), so that "which latches lie in
  this box of traffic selectors" is a binary search plus the latches in the box's address range;
* child SA id -> handles of the latches bound to it.

Lookups of one 5-tuple or 3-tuple are dictionary lookups; box queries cost O(log n + k) for the k
latches whose address falls in the box's address range, whatever the total.
"""

from .latch import LIVE_STATES, LatchState
from .sortedlist import SortedList


__all__ = ["LatchDatabase"]


def _live_key(t, handle):
    return (t.remote_addr, t.local_addr, t.proto, t.remote_port, t.local_port, handle)


def _listener_key(t, handle):
    return (t.local_addr, t.proto, t.local_port, handle)


class LatchDatabase:
    def __init__(self):
        self.by_handle = {}
        self.live = {}
        self.listeners = {}
        self._live_keys = SortedList()
        self._listener_keys = SortedList()
        self.bound = {}          # sa_id -> {handle: None}

    def __len__(self):
        return len(self.by_handle)

    def get(self, handle):
        return self.by_handle.get(handle)

    # --- membership ---------------------------------------------------------------------------

    def add(self, latch):
        """Insert a latch in whatever state it is in."""
        if latch.handle in self.by_handle:
            raise KeyError(f"Latch {latch.handle} is already in the LD")
        self.by_handle[latch.handle] = latch
        self._index(latch)
        for sa_id in latch.sa_ids:
            self.bound.setdefault(sa_id, {})[latch.handle] = None

    def _index(self, latch):
        if latch.state == LatchState.LISTENER:
            self.listeners[latch.tuple] = latch
            self._listener_keys.add(_listener_key(latch.tuple, latch.handle))
        elif latch.state in LIVE_STATES:
            self.live[latch.tuple] = latch
            self._live_keys.add(_live_key(latch.tuple, latch.handle))

    def _unindex(self, latch):
        if latch.state == LatchState.LISTENER:
            del self.listeners[latch.tuple]
            self._listener_keys.remove(_listener_key(latch.tuple, latch.handle))
        elif latch.state in LIVE_STATES:
            del self.live[latch.tuple]
            self._live_keys.remove(_live_key(latch.tuple, latch.handle))

    def remove(self, latch):
        self._unindex(latch)
        del self.by_handle[latch.handle]
        for sa_id in latch.sa_ids:
            self._unbind(sa_id, latch.handle)

    def replace(self, old, new):
        """Swap a latch's record for its changed copy (same handle)."""
        self.remove(old)
        self.add(new)

    def set_state(self, latch, state):
        """Move a latch through a permitted transition, keeping the indices right."""
        was_live = latch.state in LIVE_STATES
        if was_live and state in LIVE_STATES:
            latch.move(state)
            return
        self._unindex(latch)
        latch.move(state)
        self._index(latch)

    def bind(self, latch, sa_id):
        latch.sa_ids.append(sa_id)
        self.bound.setdefault(sa_id, {})[latch.handle] = None

    def unbind(self, latch, sa_id):
        latch.sa_ids.remove(sa_id)
        self._unbind(sa_id, latch.handle)

    def _unbind(self, sa_id, handle):
        bucket = self.bound.get(sa_id)
        if bucket is not None:
            bucket.pop(handle, None)
            if not bucket:
                del self.bound[sa_id]

    def bound_to(self, sa_id):
        return [self.by_handle[h] for h in self.bound.get(sa_id, ())]

    # --- box queries ----------------------------------------------------------------------------

    def live_in_box(self, box):
        """LARVAL and ESTABLISHED latches whose 5-tuple lies in ``box``."""
        (plo, phi), (lalo, lahi), (lplo, lphi), (ralo, rahi), (rplo, rphi) = box
        out = []
        for key in self._live_keys.irange((ralo,)):
            ra, la, proto, rp, lp, handle = key
            if ra > rahi:
                break
            if lalo <= la <= lahi and plo <= proto <= phi and rplo <= rp <= rphi and lplo <= lp <= lphi:
                out.append(self.by_handle[handle])
        return out

    def listeners_in_box(self, box):
        """LISTENER latches whose 3-tuple the box's local side and protocol include."""
        (plo, phi), (lalo, lahi), (lplo, lphi) = box[0], box[1], box[2]
        family = box.remote_addr[0] >> 128
        out = []
        for key in self._listener_keys.irange((lalo,)):
            la, proto, lp, handle = key
            if la > lahi:
                break
            if plo <= proto <= phi and lplo <= lp <= lphi and la >> 128 == family:
                out.append(self.by_handle[handle])
        return out
