"""Opening an engine by backend name: what the CLI's ``--backend`` chooses between.

The key manager and every other user of the driver take an :class:`~ipchan.sw.driver.Engine`
and never know which of these is behind it.
"""

import dataclasses

from ipchan.hw.contract import EngineParams

from .driver import Engine


__all__ = ["BACKENDS", "ESP_BACKENDS", "ESP_PROFILES", "open_engine"]

#: Backend names, the default first. ``serial`` is a board (its engine is what was built into
#: the bitstream, so its parameters are discovered, not chosen).
BACKENDS = ("verilator", "model", "serial")
#: The backends with an ESP datapath (``ipchan esp process --backend``): a board's bridge does
#: not carry packets.
ESP_BACKENDS = ("verilator", "model")


#: GCM profiles of the ESP datapath, the default first (see docs/esp.md for the choice).
ESP_PROFILES = ("compact", "fast")


def open_engine(backend="verilator", params=None, *, esp=None, progress=None, port=None,
                baudrate=None, timeout=None):
    """An :class:`Engine` on ``backend`` built with ``params`` (default :class:`EngineParams`).

    ``verilator`` builds (or reuses from its cache) a Verilator simulation of the gateware and
    starts it as a separate process reached over a Unix socket; ``model`` is the golden model.
    ``esp`` (``"compact"`` or ``"fast"``) builds the simulated engine with the ESP datapath of
    that GCM profile, so :meth:`Engine.process_packet` works on both backends (the model always
    has its datapath and ignores the profile). ``progress`` gets a line of text (a callable or a
    file; None: stderr) when something slow (a build) is under way.

    ``serial`` is a board (:mod:`ipchan.boards`) on ``port``, a device such as ``/dev/ttyUSB1``
    or a pyserial URL, at ``baudrate`` (default: the boards' build) with answers awaited for
    ``timeout`` seconds. The board's engine reports its own parameters; ``params``, if given,
    must be exactly those (so a key manager configured for one table never drives another).
    """
    if esp is not None and esp not in ESP_PROFILES:
        raise ValueError(f"ESP profile must be None or one of "
                         f"{', '.join(repr(p) for p in ESP_PROFILES)}, not {esp!r}")
    if params is not None and not isinstance(params, EngineParams):
        raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
    if backend == "serial":
        return _open_serial(params, esp=esp, port=port, baudrate=baudrate, timeout=timeout)
    for name, value in (("port", port), ("baudrate", baudrate), ("timeout", timeout)):
        if value is not None:
            raise ValueError(f"The {name} is for the serial backend, not {backend!r}")
    if params is None:
        params = EngineParams()
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


def _open_serial(params, *, esp, port, baudrate, timeout):
    from .serial_transport import DEFAULT_BAUDRATE, SerialTransport
    if esp is not None:
        raise ValueError(f"A board's link carries no packets: the serial backend has no ESP "
                         f"datapath, so the ESP profile must be None, not {esp!r}")
    if port is None:
        raise ValueError("The serial backend needs a port: a device such as /dev/ttyUSB1 or a "
                         "pyserial URL such as socket://HOST:PORT")
    if not isinstance(port, str):
        raise TypeError(f"Port must be a string, not {port!r}")
    options = {} if timeout is None else {"timeout": timeout}
    transport = SerialTransport(port, DEFAULT_BAUDRATE if baudrate is None else baudrate,
                                **options)
    try:
        engine = Engine(transport)
        if params is not None and engine.params != params:
            differ = ", ".join(f"{f.name} {getattr(engine.params, f.name)!r} (not "
                               f"{getattr(params, f.name)!r})"
                               for f in dataclasses.fields(params)
                               if getattr(engine.params, f.name) != getattr(params, f.name))
            raise ValueError(f"The board on {port} was built with other parameters: {differ}")
        return engine
    except BaseException:
        transport.close()
        raise
