"""Opening an engine by backend name: what the CLI's ``--backend`` chooses between.

The key manager and every other user of the driver take an :class:`~ipchan.sw.driver.Engine`
and never know which of these is behind it.
"""

from ipchan.hw.contract import EngineParams

from .driver import Engine


__all__ = ["BACKENDS", "open_engine"]

#: Backend names, the default first.
BACKENDS = ("verilator", "model")


def open_engine(backend="verilator", params=None, *, progress=None):
    """An :class:`Engine` on ``backend`` built with ``params`` (default :class:`EngineParams`).

    ``verilator`` builds (or reuses from its cache) a Verilator simulation of the gateware and
    starts it as a separate process reached over a Unix socket; ``model`` is the golden model.
    ``progress`` is called with a line of text when something slow (a build) is under way.
    """
    if params is None:
        params = EngineParams()
    if not isinstance(params, EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    if backend == "model":
        return Engine.for_model(params)
    if backend == "verilator":
        from .socket_transport import VerilatorTransport
        transport = VerilatorTransport(params)
        try:
            return Engine(transport)
        except BaseException:
            transport.close()
            raise
    raise ValueError(f"Backend must be one of {', '.join(repr(b) for b in BACKENDS)}, "
                     f"not {backend!r}")
