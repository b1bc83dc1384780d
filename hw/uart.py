"""An 8N1 UART: a transmitter and a receiver with byte streams on the fabric side.

Both halves count ``divisor`` clock cycles per bit; :func:`baud_divisor` picks the divisor for a
clock and a baud rate and refuses a pair whose rate error would make the link unreliable.

The receiver brings the line into the clock domain through a two-flip-flop synchroniser, then
samples each bit in its middle: it waits half a bit after the falling edge that starts a frame,
checks that the line is still low (a shorter glitch is ignored), then samples every ``divisor``
cycles. A UART cannot be stalled, so the receiver's stream has no real backpressure: a byte that
completes while the previous one has not been taken is dropped and ``overrun`` pulses. A frame
whose stop bit is low is dropped and ``frame_error`` pulses; the receiver then waits for the line
to go idle (high), so a held-low line (a break) counts once, not once per ten bits.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["MIN_DIVISOR", "MAX_BAUD_ERROR", "baud_divisor", "UARTTransmitter", "UARTReceiver"]


#: Fewest clock cycles per bit: the receiver needs a distinct middle of the start bit, and the
#: synchroniser's two cycles of latency must stay well inside half a bit.
MIN_DIVISOR = 4
#: Largest relative baud-rate error :func:`baud_divisor` accepts. Sampling in the middle of the bit
#: tolerates about 5% of total drift over the ten bits of a frame; the far end gets the other half.
MAX_BAUD_ERROR = 0.02


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"Divisor must be an integer, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor!r}")


def baud_divisor(clk_freq, baudrate):
    """Clock cycles per bit for ``baudrate`` on a ``clk_freq`` clock (both in hertz).

    Raises :exc:`ValueError` when the nearest divisor is below :data:`MIN_DIVISOR` or misses the
    baud rate by more than :data:`MAX_BAUD_ERROR`.
    """
    for name, value in (("Clock frequency", clk_freq), ("Baud rate", baudrate)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    divisor = round(clk_freq / baudrate)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baudrate!r} is too fast for a {clk_freq!r} Hz clock: it "
                         f"needs at least {MIN_DIVISOR} cycles per bit, not {clk_freq / baudrate:.2f}")
    error = abs(clk_freq / divisor - baudrate) / baudrate
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baudrate!r} cannot be made from a {clk_freq!r} Hz clock: the "
                         f"nearest divisor {divisor} gives {clk_freq / divisor:.0f} baud, "
                         f"{error:.1%} off (at most {MAX_BAUD_ERROR:.0%} allowed)")
    return divisor


class UARTTransmitter(wiring.Component):
    """Sends each byte of ``data`` as an 8N1 frame on ``tx``, least significant bit first.

    ``data.ready`` is high while the line is idle and in the last cycle of a stop bit, so
    back-to-back bytes go out with exactly one stop bit between them.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Members
    -------
    data : ``In(stream.Signature(8))``
        Bytes to send.
    tx : ``Out(1)``
        The serial line; idle high. Registered, so it never glitches.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        # Bit periods left in the frame, the current one included: start + 8 data + stop.
        periods = Signal(range(11))
        timer = Signal(range(self._divisor))
        # The data bits not yet on the line, then the stop bit.
        shreg = Signal(9)

        # Ready while idle and in the last cycle of the stop bit, so that a waiting byte's start
        # bit follows the stop bit with no gap.
        last_cycle = (periods == 1) & (timer == 0)
        m.d.comb += self.data.ready.eq((periods == 0) | last_cycle)

        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                self.tx.eq(0),
                shreg.eq(Cat(self.data.payload, Const(1, 1))),
                periods.eq(10),
                timer.eq(self._divisor - 1),
            ]
        with m.Elif(periods == 0):
            pass
        with m.Elif(timer == 0):
            m.d.sync += [
                timer.eq(self._divisor - 1),
                periods.eq(periods - 1),
            ]
            # After the stop bit's period the line simply stays high.
            with m.If(periods != 1):
                m.d.sync += [
                    self.tx.eq(shreg[0]),
                    shreg.eq(shreg >> 1),
                ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """Receives 8N1 frames from ``rx`` into the byte stream ``data``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Members
    -------
    rx : ``In(1)``
        The serial line, asynchronous to the clock; idle high.
    data : ``Out(stream.Signature(8))``
        Received bytes. A byte stays valid until taken.
    overrun : ``Out(1)``
        Pulses for one cycle when a byte was dropped because the previous one was still waiting.
    frame_error : ``Out(1)``
        Pulses for one cycle when a frame was dropped because its stop bit was low.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        # The line is idle high, so the synchroniser starts high too: no false start bit at
        # power-up.
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(divisor))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # The edge was seen at some point during the last cycle: the middle of the
                    # start bit is half a bit from here.
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"  # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        timer.eq(divisor - 1),
                        shreg.eq(Cat(shreg[1:], rx)),
                        bit.eq(bit + 1),
                    ]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    # Back to IDLE in the middle of the stop bit: half a bit of slack for the
                    # next start bit of a faster sender.
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.frame_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m
