"""AXI4-Lite: the engine's control port.

:class:`Signature` is the bus seen from the manager (the side that issues reads and writes), so a
subordinate such as the engine's register file takes ``In(axil.Signature(...))``, or
``axil.Signature(...).flip()``. Channel member names follow the AMBA specification in lower case
(``awaddr``, ``wvalid``, ...), so a flattened port is ``<prefix>_awaddr`` as cocotbext-axi expects.

:class:`RegisterBridge` turns the five channels into a simple one-access-at-a-time register
interface (address, read strobe, write strobe), which is all the register file needs: every
register answers in one cycle.
"""

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["Resp", "Signature", "RegisterBridge"]


class Resp:
    OKAY = 0b00
    SLVERR = 0b10
    DECERR = 0b11


class Signature(wiring.Signature):
    """AXI4-Lite, from the manager's side.

    Parameters
    ----------
    addr_width : int
        Width of ``awaddr`` and ``araddr``, in bits (byte addresses).
    data_width : int
        32 or 64.
    """

    def __init__(self, *, addr_width, data_width=32):
        if not isinstance(addr_width, int) or isinstance(addr_width, bool) or addr_width <= 0:
            raise TypeError(f"Address width must be a positive integer, not {addr_width!r}")
        if data_width not in (32, 64):
            raise ValueError(f"Data width must be 32 or 64, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    def __eq__(self, other):
        return (isinstance(other, Signature) and self.addr_width == other.addr_width and
                self.data_width == other.data_width)

    def __repr__(self):
        return f"axil.Signature(addr_width={self.addr_width}, data_width={self.data_width})"


class RegisterBridge(wiring.Component):
    """AXI4-Lite subordinate that serialises accesses into single-cycle register strobes.

    One access is in flight at a time; a write and a read that arrive together are taken write
    first, so a host that writes then reads always sees its write. ``addr`` is the byte address of
    the access (the low two bits are ignored by the register file).

    Register side:

    * ``addr``: the address, valid while ``r_stb`` or ``w_stb`` is high;
    * ``w_stb``, ``w_data``, ``w_strb``: a write, for one cycle; while ``w_wait`` is high (it may
      depend on ``addr``) the write is held on the bus instead;
    * ``r_stb``: a read, for one cycle; ``r_data`` must hold the value ``read_latency`` cycles
      later (1: a registered read; 2 or 3: a register file that registers the access once or
      twice first) and ``r_err`` whether the address was unmapped.

    ``w_err`` is taken in the clock of ``w_stb`` when ``read_latency`` is 1, and the clock after
    it otherwise: a register file that registers its accesses decodes the registered address
    (and the write response leaves a clock later).
    """

    def __init__(self, *, addr_width, data_width=32, read_latency=1):
        if read_latency not in (1, 2, 3):
            self._MustUse__silence = True  # a refused bridge is not an unused one
            raise ValueError(f"Read latency must be 1, 2 or 3, not {read_latency!r}")
        self._read_latency = read_latency
        self._bus_sig = Signature(addr_width=addr_width, data_width=data_width)
        super().__init__({
            "bus": In(self._bus_sig),
            "addr": Out(addr_width),
            "w_stb": Out(1),
            "w_data": Out(data_width),
            "w_strb": Out(data_width // 8),
            "w_err": In(1),
            "w_wait": In(1),
            "r_stb": Out(1),
            "r_data": In(data_width),
            "r_err": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        m.d.comb += [
            self.w_data.eq(bus.wdata),
            self.w_strb.eq(bus.wstrb),
        ]

        def respond_write():
            # The write response, with ``w_err`` of this clock.
            m.d.sync += [
                bus.bvalid.eq(1),
                bus.bresp.eq(Mux(self.w_err, Resp.DECERR, Resp.OKAY)),
            ]
            m.next = "WRITE_RESP"

        with m.FSM():
            with m.State("START"):
                # One cycle out of reset before serving the bus. Besides being harmless, this
                # moves the state register once, which makes event-driven simulators (Icarus)
                # evaluate the ready outputs instead of leaving them at X until an input changes.
                m.next = "IDLE"
            with m.State("IDLE"):
                # A write needs both its address and its data; take them in the same cycle.
                with m.If(bus.awvalid & bus.wvalid):
                    m.d.comb += self.addr.eq(bus.awaddr)
                with m.If(bus.awvalid & bus.wvalid & ~self.w_wait):
                    m.d.comb += [
                        bus.awready.eq(1), bus.wready.eq(1),
                        self.w_stb.eq(1),
                    ]
                    if self._read_latency == 1:
                        respond_write()
                    else:
                        m.next = "WRITE_ERR"
                with m.Elif(bus.arvalid & ~(bus.awvalid & bus.wvalid)):
                    m.d.comb += [
                        bus.arready.eq(1),
                        self.addr.eq(bus.araddr), self.r_stb.eq(1),
                    ]
                    m.next = "READ_DATA" if self._read_latency == 1 else "READ_WAIT_1"
            with m.State("WRITE_ERR"):
                # The register file's decode of the registered write.
                respond_write()
            for i in range(1, self._read_latency):
                with m.State(f"READ_WAIT_{i}"):
                    m.next = "READ_DATA" if i == self._read_latency - 1 else f"READ_WAIT_{i + 1}"
            with m.State("WRITE_RESP"):
                with m.If(bus.bready):
                    m.d.sync += bus.bvalid.eq(0)
                    m.next = "IDLE"
            with m.State("READ_DATA"):
                # The register file answers one cycle after r_stb; hold the beat until taken.
                m.d.sync += [
                    bus.rvalid.eq(1),
                    bus.rdata.eq(self.r_data),
                    bus.rresp.eq(Resp.DECERR * self.r_err),
                ]
                m.next = "READ_RESP"
            with m.State("READ_RESP"):
                with m.If(bus.rready):
                    m.d.sync += bus.rvalid.eq(0)
                    m.next = "IDLE"
        return m
