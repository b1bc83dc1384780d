"""The driver's register constants, derived from :mod:`ipchan.hw.contract` (never written here).

``ADDR.VERSION_LO`` is an address; ``FIELD.STATUS.ERROR`` is a :class:`~ipchan.hw.contract.Field`
with ``get(word)`` and ``put(value)``.
"""

from types import SimpleNamespace

from ipchan.hw import contract


__all__ = ["ADDR", "FIELD"]

ADDR = SimpleNamespace(**{r.name: r.addr for r in contract.REGISTERS})
FIELD = SimpleNamespace(**{
    r.name: SimpleNamespace(**{f.name: f for f in r.fields}) for r in contract.REGISTERS
})
