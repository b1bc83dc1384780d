"""A board's engine over its USB serial port: the link protocol over pyserial.

:class:`SerialTransport` is a :class:`~ipchan.sw.link.LinkClient` whose bytes travel through
pyserial, so it takes anything :func:`serial.serial_for_url` opens: a device such as
``/dev/ttyUSB1`` (the iCEBreaker's and the ULX3S's FTDI UART) or a URL such as
``socket://127.0.0.1:5000`` (which is how the tests reach a simulated board).

The gateware side is :class:`ipchan.hw.link_bridge.SerialLinkBridge`; the constants below are the
facts both sides must agree on beyond the frames themselves, which :mod:`ipchan.sw.link` defines.
"""

import time

from .link import (REQUEST_LENGTH, RESPONSE_LENGTH, LinkClient, LinkError, LinkOp)


__all__ = [
    "DEFAULT_BAUDRATE", "RX_BUFFER_BYTES", "FRAME_TIMEOUT", "DEFAULT_MAX_BATCH",
    "LinkTimeout", "SerialTransport", "describe_request",
]


#: The boards' UART speed: 1 Mbaud is an exact divisor of both the iCEBreaker's 12 MHz and the
#: ULX3S's 25 MHz clock, and of the FTDI chips' 3 MHz baud generator.
DEFAULT_BAUDRATE = 1_000_000
#: Bytes of requests the board's bridge buffers while it is busy answering earlier ones. A host
#: that sends more than this before reading answers may lose bytes.
RX_BUFFER_BYTES = 512
#: Seconds without a byte after which the board's bridge drops a partly received request, so a
#: host that keeps quiet longer than this is back in step.
FRAME_TIMEOUT = 0.02
#: Requests sent ahead of their answers: as many of the longest request as the buffer holds, so no
#: batch can overflow it however long the engine takes to answer.
DEFAULT_MAX_BATCH = RX_BUFFER_BYTES // max(REQUEST_LENGTH.values())


class LinkTimeout(LinkError, TimeoutError):
    """No (complete) answer came in time."""


def describe_request(request):
    """``(op, addr, data)`` in words, for error messages."""
    op = LinkOp(request[0])
    if op == LinkOp.WRITE:
        return f"WRITE of {request[2]:#010x} to {request[1]:#05x}"
    if op == LinkOp.READ:
        return f"READ of {request[1]:#05x}"
    return op.name


class SerialTransport(LinkClient):
    """Register access to a board over a serial port.

    Parameters
    ----------
    port : str
        Device path or pyserial URL.
    baudrate : int
        Must match the board's build (:data:`DEFAULT_BAUDRATE` unless built otherwise).
    timeout : float
        Seconds to wait for an answer.
    max_batch : int
        Requests sent before their answers are read (see :data:`DEFAULT_MAX_BATCH`).

    On opening, and after any timeout or out-of-step answer, the transport keeps quiet for twice
    :data:`FRAME_TIMEOUT` and discards whatever arrived, so a half-sent request or a late answer
    never poisons the next exchange.
    """

    def __init__(self, port, baudrate=DEFAULT_BAUDRATE, *, timeout=1.0,
                 max_batch=DEFAULT_MAX_BATCH):
        import serial  # pyserial: only needed once a port is actually opened

        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"Baud rate must be a positive integer, not {baudrate!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"Timeout must be a positive number of seconds, not {timeout!r}")
        if max_batch > DEFAULT_MAX_BATCH:
            raise ValueError(f"Batch size must be at most {DEFAULT_MAX_BATCH} requests (the board "
                             f"buffers {RX_BUFFER_BYTES} bytes), not {max_batch!r}")
        super().__init__(self._send, self._recv_exact, max_batch=max_batch)
        self.port, self.baudrate, self.timeout = port, baudrate, timeout
        self._pending = None
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout,
                                                 write_timeout=timeout)
        except (serial.SerialException, ValueError) as exc:
            raise LinkError(f"Cannot open serial port {port!r} at {baudrate} baud: {exc}") from exc
        try:
            # FTDI adapters otherwise hold answers back for up to 16 ms; devices and URLs that
            # have no such setting simply keep their default.
            self._serial.set_low_latency_mode(True)
        except (AttributeError, OSError, ValueError):
            pass
        self.resync()

    def resync(self):
        """Get back in step with the board: wait out its frame timeout, drop stale bytes."""
        self._check_open()
        time.sleep(2 * FRAME_TIMEOUT)
        self._serial.reset_input_buffer()

    def transact(self, requests):
        requests = [tuple(r) for r in requests]
        # Which answer each received byte belongs to, so a timeout can name its request.
        ends, total = [], 0
        for req in requests:
            total += RESPONSE_LENGTH[LinkOp(req[0])]
            ends.append(total)
        self._pending = (requests, ends, 0)
        try:
            return super().transact(requests)
        except LinkError:
            self.resync()
            raise
        finally:
            self._pending = None

    def close(self):
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"SerialTransport({self.port!r}, {self.baudrate})"

    def _check_open(self):
        if self._serial is None:
            raise LinkError(f"Serial transport on {self.port!r} is closed")

    def _send(self, data):
        self._check_open()
        import serial
        try:
            self._serial.write(data)
        except serial.SerialTimeoutException as exc:
            raise LinkTimeout(f"Could not send {len(data)} bytes to {self.port!r} within "
                              f"{self.timeout} s") from exc

    def _recv_exact(self, n):
        self._check_open()
        data = self._serial.read(n)
        if self._pending is not None:
            requests, ends, received = self._pending
            self._pending = (requests, ends, received + len(data))
        if len(data) == n:
            return data
        if self._pending is None:
            what = "an answer"
        else:
            index = next(i for i, end in enumerate(ends) if end > received + len(data))
            what = (f"the answer to {describe_request(requests[index])} "
                    f"(request {index + 1} of {len(requests)})")
        raise LinkTimeout(f"No answer from {self.port!r} within {self.timeout} s: waiting for "
                          f"{what}, got {len(data)} of {n} bytes")
