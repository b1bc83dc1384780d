"""The host side of ipchan: the golden model, the engine's driver and its transports, the ESP
tools and the key manager.

``KeyManager`` is importable from here (``from ipchan.sw import KeyManager``); it is loaded on
first use so that importing the driver alone does not pull in the key manager and SQLite.
"""

__all__ = ["KeyManager"]


def __getattr__(name):
    if name == "KeyManager":
        from .keymgr import KeyManager
        return KeyManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
