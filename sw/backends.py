"""Opening an engine by backend name: what the CLI's ``--backend`` chooses between.

The key manager and every other user of the driver take an :class:`~ipchan.sw.driver.Engine`
and never know which of these is behind it.
"""

from ipchan.hw.contract import EngineParams

from .driver import Engine


__all__ = ["BACKENDS", "ESP_PROFILES", "open_engine"]

#: Backend names, the default first.
BACKENDS = ("verilator", "model")


#: GCM profiles of the ESP datapath, the default first (see docs/esp.md for the choice).
ESP_PROFILES = ("compact", "fast")


def open_engine(backend="verilator", params=None, *, esp=None, progress=None):
    """An :class:`Engine` on ``backend`` built with ``params`` (default :class:`EngineParams`).

    ``verilator`` builds (or reuses from its cache) a Verilator simulation of the gateware and
    starts it as a separate process reached over a Unix socket; ``model`` is the golden model.
    ``esp`` (``"compact"`` or ``"fast"``) builds the simulated engine with the ESP datapath of
    that GCM profile, so :meth:`Engine.process_packet` works on both backends (the model always
    has its datapath and ignores the profile). ``progress`` gets a line of text (a callable or a
    file; None: stderr) when something slow (a build) is under way.
    """
    if esp is not None and esp not in ESP_PROFILES:
        raise ValueError(f"ESP profile must be None or one of "
                         f"{', '.join(repr(p) for p in ESP_PROFILES)}, not {esp!r}")
    if params is None:
        params = EngineParams()
    if not isinstance(params, EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    if backend == "model":
        return Engine.for_model(params)
    if backend == "verilator":
        from .socket_transport import VerilatorTransport
        options = {} if progress is None else {"progress": progress}
        transport = VerilatorTransport(params, esp=esp, **options)
        try:
            return Engine(transport)
        except BaseException:
            transport.close()
            raise
    raise ValueError(f"Backend must be one of {', '.join(repr(b) for b in BACKENDS)}, "
                     f"not {backend!r}")
