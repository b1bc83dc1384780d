"""What a board runs: the engine behind its serial port, and LEDs that say how it is doing.

:class:`SerialEngine` is the board-independent part: a
:class:`~ipchan.hw.link_bridge.SerialLinkBridge` on the serial lines, driving the
:class:`~ipchan.hw.engine.Engine`'s AXI4-Lite port, with the engine held in reset by the bridge's
``engine_rst`` (the link's RESET request), and three indicator outputs. It has no pins of its own,
so the tests simulate exactly this with the host's serial transport on the far end of its lines.

:class:`BoardTop` puts it on a platform's pins: ``uart`` 0 and the first LEDs.

The UART runs at :data:`~ipchan.sw.serial_transport.DEFAULT_BAUDRATE` unless told otherwise, and
the bridge drops a half-received request after
:data:`~ipchan.sw.serial_transport.FRAME_TIMEOUT` seconds of silence: both are the host
transport's constants turned into clock cycles here, so a board and ``SerialTransport`` cannot
disagree about them.
"""

import math

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..hw.contract import EngineParams
from ..hw.engine import Engine
from ..hw.link_bridge import SerialLinkBridge
from ..hw.uart import baud_divisor
from ..sw.serial_transport import DEFAULT_BAUDRATE, FRAME_TIMEOUT


__all__ = ["ACTIVITY_HOLD", "frame_timeout_cycles", "SerialEngine", "BoardTop"]


#: Seconds the activity light stays on after the host's line was last busy, so that a single
#: request (tens of microseconds) is still visible.
ACTIVITY_HOLD = 0.05


def _check_clk_freq(clk_freq):
    if isinstance(clk_freq, bool) or not isinstance(clk_freq, (int, float)) or not clk_freq > 0:
        raise ValueError(f"Clock frequency must be a positive number of hertz, not {clk_freq!r}")


def frame_timeout_cycles(clk_freq):
    """:data:`~ipchan.sw.serial_transport.FRAME_TIMEOUT` in cycles of a ``clk_freq`` clock.

    Rounded up: the bridge may wait a little longer than the host assumes, never less, and the
    host keeps quiet for twice as long when it gets back in step.
    """
    _check_clk_freq(clk_freq)
    # The tolerance keeps a product that lands a rounding error above a whole number on it.
    return max(1, math.ceil(FRAME_TIMEOUT * clk_freq * (1 - 1e-12)))


class SerialEngine(wiring.Component):
    """The engine behind a UART link bridge, with indicator outputs.

    Parameters
    ----------
    params : :class:`~ipchan.hw.contract.EngineParams`
        The engine to build.
    clk_freq : int or float
        The clock the design runs on, in hertz: sets the UART divisor, the frame timeout and the
        indicators' timing.
    baudrate : int
        The UART's speed; :func:`ipchan.hw.uart.baud_divisor` refuses one the clock cannot make.
    table : str
        :class:`~ipchan.hw.engine.Engine`'s ``table``: ``"parallel"`` or ``"serial"``.

    Members
    -------
    rx : ``In(1)``
        Serial line from the host (asynchronous; idle high).
    tx : ``Out(1)``
        Serial line to the host.
    heartbeat : ``Out(1)``
        Toggles every half second: the design is loaded and its clock runs.
    link_error : ``Out(1)``
        Sticky: a received byte was lost (overrun, or a frame error: a wrong baud rate, a noisy
        line, a break). Cleared by the link's RESET request, which also resets the engine.
    activity : ``Out(1)``
        On while the host's line is busy and for :data:`ACTIVITY_HOLD` seconds after.
    """

    def __init__(self, params, *, clk_freq, baudrate=DEFAULT_BAUDRATE, table="parallel"):
        if not isinstance(params, EngineParams):
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        if table not in Engine.TABLES:
            raise ValueError(f"Table must be 'parallel' or 'serial', not {table!r}")
        _check_clk_freq(clk_freq)
        self._table = table
        self._params = params
        self._clk_freq = clk_freq
        self._baudrate = baudrate
        self._divisor = baud_divisor(clk_freq, baudrate)
        self._frame_timeout = frame_timeout_cycles(clk_freq)
        # Made at elaboration (a component that is made but never elaborated is warned about):
        # everything they would check is checked above.
        self.bridge = self.engine = None
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "heartbeat": Out(1),
            "link_error": Out(1),
            "activity": Out(1),
        })

    @property
    def params(self):
        return self._params

    @property
    def clk_freq(self):
        return self._clk_freq

    @property
    def baudrate(self):
        return self._baudrate

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def frame_timeout(self):
        """Cycles of silence after which the bridge drops a partial request."""
        return self._frame_timeout

    def elaborate(self, platform):
        m = Module()
        self.bridge = SerialLinkBridge(divisor=self._divisor, frame_timeout=self._frame_timeout)
        self.engine = Engine(self._params, table=self._table)
        m.submodules.bridge = bridge = self.bridge
        # The bridge stays out of reset while it resets the engine: it must answer the request.
        m.submodules.engine = engine = ResetInserter(bridge.engine_rst)(self.engine)
        wiring.connect(m, bridge.bus, engine.axil)
        m.d.comb += [
            bridge.rx.eq(self.rx),
            self.tx.eq(bridge.tx),
        ]

        half_second = max(1, round(self._clk_freq / 2))
        beat = Signal(range(half_second))
        with m.If(beat == half_second - 1):
            m.d.sync += [beat.eq(0), self.heartbeat.eq(~self.heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)

        with m.If(bridge.engine_rst):
            m.d.sync += self.link_error.eq(0)
        with m.Elif(bridge.overrun | bridge.frame_error):
            m.d.sync += self.link_error.eq(1)

        # The line itself, not the bridge's bytes: a host talking at the wrong speed still shows.
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        hold = max(1, round(self._clk_freq * ACTIVITY_HOLD))
        left = Signal(range(hold + 1))
        with m.If(~rx):
            m.d.sync += left.eq(hold)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += self.activity.eq(left != 0)
        return m


class BoardTop(Elaboratable):
    """:class:`SerialEngine` on a platform's ``uart`` 0 and LEDs, at the platform's default clock.

    ``leds`` names the platform resource, as ``(name, number)``, that shows each indicator of
    :data:`INDICATORS` in turn (None: not shown); by default ``led`` 0, 1 and 2.
    """

    #: Indicator outputs of :class:`SerialEngine`, in the order ``leds`` lists their LEDs.
    INDICATORS = ("heartbeat", "link_error", "activity")

    def __init__(self, params, *, baudrate=DEFAULT_BAUDRATE,
                 leds=(("led", 0), ("led", 1), ("led", 2)), table="parallel"):
        if not isinstance(params, EngineParams):
            raise TypeError(f"Parameters must be an EngineParams, not {params!r}")
        leds = tuple(leds)
        if len(leds) > len(self.INDICATORS):
            raise ValueError(f"LEDs must be at most {len(self.INDICATORS)} (name, number) pairs, "
                             f"one for each of {', '.join(self.INDICATORS)}, not {leds!r}")
        if table not in Engine.TABLES:
            raise ValueError(f"Table must be 'parallel' or 'serial', not {table!r}")
        self.params = params
        self.baudrate = baudrate
        self.leds = leds
        self.table = table
        #: The :class:`SerialEngine`, once elaborated (its clock is the platform's).
        self.core = None

    def elaborate(self, platform):
        if platform is None:
            raise TypeError("BoardTop needs a platform (its UART and LEDs are pins); simulate "
                            "SerialEngine instead")
        m = Module()
        self.core = core = SerialEngine(self.params, clk_freq=platform.default_clk_frequency,
                                        baudrate=self.baudrate, table=self.table)
        m.submodules.core = core

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]

        for indicator, led in zip(self.INDICATORS, self.leds):
            if led is None:
                continue
            m.submodules[f"led_{indicator}"] = led_buf = io.Buffer("o", platform.request(*led,
                                                                                         dir="-"))
            m.d.comb += led_buf.o.eq(getattr(core, indicator))
        return m
