"""The link bridge: register access over a byte stream, as an AXI4-Lite manager.

:class:`LinkBridge` speaks the link protocol of :mod:`ipchan.hw.contract` (``LinkOp``,
``LinkStatus``; frame lengths from :mod:`ipchan.sw.link`, the protocol's one Python description)
on a pair of byte streams and turns each request into one AXI4-Lite access:

* ``W`` addr data: one write; the answer is the write response (``bresp``).
* ``R`` addr: one read; the answer is ``rresp`` and ``rdata``.
* ``X``: holds ``engine_rst`` high for :data:`~ipchan.sw.link.RESET_CYCLES` cycles, then OKAY.
* ``C``: OKAY and the number of clock cycles since the bridge came out of reset.
* anything else: the single byte ``LinkStatus.UNKNOWN``; the next byte is read as a new request.

An address the bus cannot carry (above ``addr_width`` bits) is answered DECERR without a bus
access, so it can never alias onto a real register. Requests are answered strictly in order, so
a host may send several before reading the answers, as long as the receive side buffers them.

If a request stops arriving halfway (a host killed mid-frame) the bridge would take the next
request's bytes as the rest of it; with ``frame_timeout`` set it drops a partial request when no
byte has come for that many cycles, so a host can always get back in step by keeping quiet for
longer than that (:data:`~ipchan.sw.serial_transport.FRAME_TIMEOUT`).

:class:`SerialLinkBridge` is the bridge behind a UART, with the receive buffer that makes
pipelined requests safe: what a board puts between its serial pins and the engine.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from . import axil
from .contract import ADDR_WIDTH, LinkOp, LinkStatus
from .uart import UARTReceiver, UARTTransmitter
from ..sw.link import REQUEST_LENGTH, RESET_CYCLES, RESPONSE_LENGTH
from ..sw.serial_transport import RX_BUFFER_BYTES


__all__ = ["LinkBridge", "SerialLinkBridge"]


# Field sizes, in bytes, as the frame lengths define them.
_ADDR_BYTES = REQUEST_LENGTH[LinkOp.READ] - 1
_DATA_BYTES = REQUEST_LENGTH[LinkOp.WRITE] - REQUEST_LENGTH[LinkOp.READ]
_CYCLES_BYTES = RESPONSE_LENGTH[LinkOp.CYCLES] - 1
_ARG_BYTES = max(REQUEST_LENGTH.values()) - 1
_RESP_BYTES = max(RESPONSE_LENGTH.values())
# The bridge passes AXI response codes straight through as link statuses: the contract makes them
# the same numbers. Refuse to build if that ever stops being true.
assert (LinkStatus.OKAY, LinkStatus.SLVERR, LinkStatus.DECERR) == \
       (axil.Resp.OKAY, axil.Resp.SLVERR, axil.Resp.DECERR)
assert RESPONSE_LENGTH[LinkOp.READ] - 1 == _DATA_BYTES
assert {op for op in LinkOp if REQUEST_LENGTH[op] > 1} == {LinkOp.READ, LinkOp.WRITE}


class LinkBridge(wiring.Component):
    """Link-protocol requests from ``rx`` become AXI4-Lite accesses on ``bus``; answers go to ``tx``.

    Parameters
    ----------
    addr_width : int
        Address width of ``bus``, at most the link's 16 address bits.
    frame_timeout : int or None
        Clock cycles without a byte after which a partial request is dropped; None never drops.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes.
    tx : ``Out(stream.Signature(8))``
        Answer bytes.
    bus : ``Out(axil.Signature(addr_width=addr_width))``
        The AXI4-Lite manager port (32-bit data).
    engine_rst : ``Out(1)``
        Reset for whatever is behind ``bus``; high for ``RESET_CYCLES`` cycles per RESET request.
    """

    def __init__(self, *, addr_width=ADDR_WIDTH, frame_timeout=None):
        bus_sig = axil.Signature(addr_width=addr_width)  # checks the width's type
        if addr_width > 8 * _ADDR_BYTES:
            raise ValueError(f"Address width must be at most {8 * _ADDR_BYTES} bits (the link's "
                             f"address field), not {addr_width!r}")
        if frame_timeout is not None and (not isinstance(frame_timeout, int) or
                                          isinstance(frame_timeout, bool) or frame_timeout < 1):
            raise ValueError(f"Frame timeout must be a positive number of cycles or None, "
                             f"not {frame_timeout!r}")
        self._addr_width = addr_width
        self._frame_timeout = frame_timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "bus": Out(bus_sig),
            "engine_rst": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def frame_timeout(self):
        return self._frame_timeout

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        op = Signal(8)
        # Request arguments, shifted in from the bottom: the last byte received is bits 7..0.
        args = Signal(8 * _ARG_BYTES)
        need = Signal(range(_ARG_BYTES + 1))
        req_addr = Signal(8 * _ADDR_BYTES)
        addr = Signal(8 * _ADDR_BYTES)
        data = Signal(8 * _DATA_BYTES)
        # The answer, sent from its top byte down.
        resp = Signal(8 * _RESP_BYTES)
        left = Signal(range(_RESP_BYTES + 1))
        cycles = Signal(8 * _CYCLES_BYTES)
        rst_count = Signal(range(RESET_CYCLES))
        aw_done = Signal()
        w_done = Signal()

        m.d.sync += cycles.eq(cycles + 1)

        def answer(status, value=None, value_bytes=0):
            # Load the answer: status in the top byte, then the value, big-endian.
            top = 8 * _RESP_BYTES
            stmts = [resp[top - 8:top].eq(status), left.eq(1 + value_bytes)]
            if value is not None:
                stmts.append(resp[top - 8 - 8 * value_bytes:top - 8].eq(value))
            return stmts

        m.d.comb += [
            bus.awaddr.eq(addr),
            bus.araddr.eq(addr),
            bus.wdata.eq(data),
            bus.wstrb.eq(Const(-1, len(bus.wstrb))),
            self.tx.payload.eq(resp[-8:]),
        ]

        if self._frame_timeout is not None:
            idle = Signal(range(self._frame_timeout + 1))

        with m.FSM():
            with m.State("OPCODE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += op.eq(self.rx.payload)
                    if self._frame_timeout is not None:
                        m.d.sync += idle.eq(0)
                    with m.Switch(self.rx.payload):
                        with m.Case(LinkOp.WRITE, LinkOp.READ):
                            m.d.sync += need.eq(REQUEST_LENGTH[LinkOp.WRITE] - 1)
                            with m.If(self.rx.payload == LinkOp.READ):
                                m.d.sync += need.eq(REQUEST_LENGTH[LinkOp.READ] - 1)
                            m.next = "ARGS"
                        with m.Case(LinkOp.RESET):
                            m.d.sync += [self.engine_rst.eq(1), rst_count.eq(RESET_CYCLES - 1)]
                            m.next = "RESET"
                        with m.Case(LinkOp.CYCLES):
                            m.d.sync += answer(LinkStatus.OKAY, cycles, _CYCLES_BYTES)
                            m.next = "SEND"
                        with m.Default():
                            m.d.sync += answer(LinkStatus.UNKNOWN)
                            m.next = "SEND"

            with m.State("ARGS"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [
                        args.eq(Cat(self.rx.payload, args[:-8])),
                        need.eq(need - 1),
                    ]
                    if self._frame_timeout is not None:
                        m.d.sync += idle.eq(0)
                    with m.If(need == 1):
                        m.next = "DECODE"
                if self._frame_timeout is not None:
                    with m.Else():
                        m.d.sync += idle.eq(idle + 1)
                        with m.If(idle == self._frame_timeout - 1):
                            m.next = "OPCODE"  # the rest of the request never came: drop it

            with m.State("DECODE"):
                is_write = op == LinkOp.WRITE
                # A WRITE's address comes before its data; a READ's address is all it has.
                m.d.comb += req_addr.eq(Mux(is_write,
                                            args[8 * _DATA_BYTES:8 * (_DATA_BYTES + _ADDR_BYTES)],
                                            args[:8 * _ADDR_BYTES]))
                m.d.sync += [addr.eq(req_addr), data.eq(args[:8 * _DATA_BYTES])]
                with m.If(req_addr[self._addr_width:] != 0):
                    # Beyond the bus: refuse here rather than let the address wrap onto a register.
                    with m.If(is_write):
                        m.d.sync += answer(LinkStatus.DECERR)
                    with m.Else():
                        m.d.sync += answer(LinkStatus.DECERR, 0, _DATA_BYTES)
                    m.next = "SEND"
                with m.Elif(is_write):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "WRITE"
                with m.Else():
                    m.next = "READ"

            with m.State("WRITE"):
                # Address and data are offered together but may be taken in either order.
                m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
                aw_now = aw_done | bus.awready
                w_now = w_done | bus.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "WRITE_RESP"

            with m.State("WRITE_RESP"):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    m.d.sync += answer(bus.bresp)
                    m.next = "SEND"

            with m.State("READ"):
                m.d.comb += bus.arvalid.eq(1)
                with m.If(bus.arready):
                    m.next = "READ_RESP"

            with m.State("READ_RESP"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.sync += answer(bus.rresp, bus.rdata, _DATA_BYTES)
                    m.next = "SEND"

            with m.State("RESET"):
                with m.If(rst_count == 0):
                    m.d.sync += [self.engine_rst.eq(0)] + answer(LinkStatus.OKAY)
                    m.next = "SEND"
                with m.Else():
                    m.d.sync += rst_count.eq(rst_count - 1)

            with m.State("SEND"):
                m.d.comb += self.tx.valid.eq(1)
                with m.If(self.tx.ready):
                    m.d.sync += [resp.eq(resp << 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "OPCODE"
        return m


class SerialLinkBridge(wiring.Component):
    """A :class:`LinkBridge` behind an 8N1 UART, with a receive buffer of
    :data:`~ipchan.sw.serial_transport.RX_BUFFER_BYTES` bytes so that a host may send that many
    bytes of requests before it reads any answer.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (:func:`ipchan.hw.uart.baud_divisor`).
    addr_width, frame_timeout
        As for :class:`LinkBridge`.

    Members
    -------
    rx : ``In(1)``
        Serial line from the host (asynchronous; idle high).
    tx : ``Out(1)``
        Serial line to the host.
    bus : ``Out(axil.Signature(addr_width=addr_width))``
    engine_rst : ``Out(1)``
    overrun, frame_error : ``Out(1)``
        The receiver's error pulses (a byte was lost: the host sent more than the buffer holds,
        or the line is noisy or at the wrong baud rate).
    """

    def __init__(self, *, divisor, addr_width=ADDR_WIDTH, frame_timeout=None):
        self._uart_rx = UARTReceiver(divisor)
        self._uart_tx = UARTTransmitter(divisor)
        self._bridge = LinkBridge(addr_width=addr_width, frame_timeout=frame_timeout)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(axil.Signature(addr_width=addr_width)),
            "engine_rst": Out(1),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = self._uart_rx
        m.submodules.uart_tx = uart_tx = self._uart_tx
        m.submodules.bridge = bridge = self._bridge
        # One more entry than the buffer promises: the FIFO's output register, so that the memory
        # behind it has a power-of-two depth.
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_BUFFER_BYTES + 1)

        m.d.comb += [
            uart_rx.rx.eq(self.rx),
            self.tx.eq(uart_tx.tx),
            self.overrun.eq(uart_rx.overrun),
            self.frame_error.eq(uart_rx.frame_error),
            self.engine_rst.eq(bridge.engine_rst),

            fifo.w_data.eq(uart_rx.data.payload),
            fifo.w_en.eq(uart_rx.data.valid),
            uart_rx.data.ready.eq(fifo.w_rdy),

            bridge.rx.payload.eq(fifo.r_data),
            bridge.rx.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(bridge.rx.ready),
        ]
        connect(m, bridge.tx, uart_tx.data)
        wiring.connect(m, bridge.bus, wiring.flipped(self.bus))
        return m
