"""The board's gateware end to end: the host driver over the real serial transport, through a TCP
socket, onto the simulated UART lines of :class:`ipchan.boards.top.SerialEngine` (bridge, receive
buffer, engine), in Amaranth's simulator.

The testbench is the board's USB-serial chip: it takes bytes from the socket that
``SerialTransport("socket://...")`` connects to and sends them as 8N1 frames on ``rx``, and turns
the frames on ``tx`` back into bytes for the socket, both at the bit time that the transport's
baud rate gives on the simulated clock. So the gateware only answers if its divisor agrees with
what the transport was opened with.

The design is the board's with a small engine and a short bit (``SIM_DIVISOR`` cycles): the
simulator runs the whole design every cycle, and a register access is about 80 bit times.
"""

import socket
import threading
import time

import pytest

from amaranth.sim import Simulator

from ipchan.boards.top import SerialEngine, frame_timeout_cycles
from ipchan.hw.contract import EngineParams
from ipchan.hw.uart import baud_divisor
from ipchan.sw.backends import open_engine
from ipchan.sw.driver import Engine, SaConfig
from ipchan.sw.serial_transport import FRAME_TIMEOUT, SerialTransport


PARAMS = EngineParams(n_entries=4)
#: Cycles per bit in simulation: the UART's smallest divisor.
SIM_DIVISOR = 4
#: The baud rate the transport is opened with, and the board built for. Its value does not change
#: the simulation's speed; it only names the simulated clock: SIM_DIVISOR cycles per bit.
SIM_BAUDRATE = 115_200
SIM_CLK_FREQ = SIM_DIVISOR * SIM_BAUDRATE
#: How often (in cycles) the testbench looks at the socket while it has nothing to send.
POLL_CYCLES = 2 * SIM_DIVISOR
#: Wall-clock limit on the whole exchange.
DEADLINE = 120.0


class SocketUart:
    """The far end of the simulated board's serial lines: a TCP listener on 127.0.0.1.

    ``divisor`` is the bit time the testbench uses on both lines, from the transport's baud rate.
    """

    def __init__(self, dut, divisor):
        self.dut = dut
        self.divisor = divisor
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.conn = None
        self.hangups = 0  # connections the host has closed (it may open another)
        self.to_board = bytearray()
        self.sent = 0  # bytes put on rx
        self.from_board = bytearray()  # every byte the board sent, for the record
        self.cycles = 0
        self.link_error_seen = False

    def _poll(self):
        if self.conn is None:
            try:
                self.conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            self.conn.setblocking(False)
            # Answers go out a byte at a time: do not let Nagle hold them back.
            self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            data = self.conn.recv(4096)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if data:
            self.to_board += data
        else:
            self.conn.close()
            self.conn = None
            self.hangups += 1

    async def drive_rx(self, ctx, host_alive):
        """Critical testbench: the host's bytes onto ``rx``, until the host is done and has hung
        up (it may connect several times)."""
        rx = self.dut.rx
        start = time.monotonic()
        while True:
            if time.monotonic() - start > DEADLINE:
                raise TimeoutError(f"The host did not finish within {DEADLINE} s "
                                   f"({self.cycles} cycles simulated)")
            if self.conn is None and not host_alive():
                return  # done, or gave up; its thread has any error
            self._poll()
            if not self.to_board:
                await ctx.tick().repeat(POLL_CYCLES)
                self.cycles += POLL_CYCLES
                continue
            byte = self.to_board.pop(0)
            self.sent += 1
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(rx, bit)
                await ctx.tick().repeat(self.divisor)
                self.cycles += self.divisor
            self.link_error_seen |= bool(ctx.get(self.dut.link_error))

    async def watch_tx(self, ctx):
        """Background testbench: 8N1 frames on ``tx`` back to the socket."""
        tx = self.dut.tx
        while True:
            while ctx.get(tx):
                await ctx.changed(tx)
            with ctx.critical():
                # The transmitter's output is registered: it changed on a clock edge. Sample each
                # bit in its middle.
                await ctx.tick().repeat(self.divisor // 2)
                assert ctx.get(tx) == 0, "start bit shorter than half a bit"
                byte = 0
                for i in range(8):
                    await ctx.tick().repeat(self.divisor)
                    byte |= ctx.get(tx) << i
                await ctx.tick().repeat(self.divisor)
                assert ctx.get(tx) == 1, f"stop bit of {byte:#04x} is low"
                self.from_board.append(byte)
                if self.conn is not None:
                    self.conn.sendall(bytes([byte]))

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def sa(spi, direction="inbound", key_byte=0x11):
    return SaConfig(spi=spi, direction=direction, mode="transport", algorithm="aes-gcm-16",
                    key=bytes([key_byte]) * 16, salt=bytes(4))


def session(engine, golden, log):
    """Install, commit, look up, delete, commit, look up: every answer as the golden model's."""
    def both(what, call):
        got, want = call(engine), call(golden)
        assert got == want, f"{what}: the board answered {got!r}, the golden model {want!r}"
        log.append((what, got))
        return got

    both("install inbound", lambda e: e.install(sa(0x1000A001)))
    both("install outbound", lambda e: e.install(sa(0x2000B002, "outbound", 0x22)))
    both("commit", lambda e: e.commit())
    both("lookup installed", lambda e: e.lookup(0x1000A001))
    both("lookup absent", lambda e: e.lookup(0x0BADCAFE))
    both("delete", lambda e: e.delete(0))
    both("commit after delete", lambda e: e.commit())
    both("lookup deleted", lambda e: e.lookup(0x1000A001))
    both("entries", lambda e: list(e.entries()))
    both("counters", lambda e: e.counters())


# "serial": the block-RAM table the iCEBreaker is built with.
@pytest.mark.parametrize("table", ["parallel", "serial"])
def test_driver_through_serial_transport_on_simulated_board(table):
    dut = SerialEngine(PARAMS, clk_freq=SIM_CLK_FREQ, baudrate=SIM_BAUDRATE, table=table)
    # The board and the transport must agree on the line: the gateware's divisor is what the
    # transport's baud rate gives on this clock, and its frame timeout is the transport's.
    assert dut.divisor == SIM_DIVISOR == baud_divisor(SIM_CLK_FREQ, SIM_BAUDRATE)
    assert dut.frame_timeout == frame_timeout_cycles(SIM_CLK_FREQ) >= FRAME_TIMEOUT * SIM_CLK_FREQ

    uart = None
    result = {}
    log = []

    def host():
        try:
            url = f"socket://127.0.0.1:{uart.port}"
            # The way the CLI opens a board (`--backend serial --port URL`). Configured for
            # another table, it is refused, naming the difference ...
            try:
                open_engine("serial", EngineParams(n_entries=8), port=url,
                            baudrate=SIM_BAUDRATE, timeout=30.0)
            except ValueError as exc:
                result["mismatch"] = str(exc)
            # ... and without parameters it takes the board's own.
            with open_engine("serial", port=url, baudrate=SIM_BAUDRATE, timeout=30.0) as engine:
                transport = engine.transport
                assert isinstance(transport, SerialTransport)
                assert transport.baudrate == SIM_BAUDRATE
                assert engine.params == PARAMS
                session(engine, Engine.for_model(PARAMS), log)
                result["cycles"] = transport.cycles()
        except BaseException as exc:  # re-raised in the test's own thread
            result["error"] = exc

    # The UART the testbench plays uses the rate the transport is opened with.
    uart = SocketUart(dut, divisor=round(SIM_CLK_FREQ / SIM_BAUDRATE))
    thread = threading.Thread(target=host, name="serial-host", daemon=True)
    sim = Simulator(dut)
    sim.add_clock(1 / SIM_CLK_FREQ)

    async def rx_bench(ctx):
        await uart.drive_rx(ctx, thread.is_alive)

    async def tx_bench(ctx):
        await uart.watch_tx(ctx)

    sim.add_testbench(rx_bench)
    sim.add_testbench(tx_bench, background=True)
    start = time.monotonic()
    thread.start()
    try:
        sim.run()
    finally:
        uart.close()
        thread.join(timeout=10)
    seconds = time.monotonic() - start
    if "error" in result:
        raise result["error"]
    assert result.get("mismatch") == ("The board on socket://127.0.0.1:%d was built with other "
                                      "parameters: n_entries 4 (not 8)" % uart.port)
    assert uart.hangups == 2
    assert [what for what, _ in log][-1] == "counters"
    # No byte was lost on the way in (the sticky light stayed off) ...
    assert not uart.link_error_seen
    # ... and the bridge's cycle counter saw at least the time every byte before its CYCLES
    # answer took on the wire (the driver never pipelines, so no two of them overlapped).
    wire_bytes = uart.sent - 1 + len(uart.from_board) - 9
    assert result["cycles"] >= 10 * SIM_DIVISOR * wire_bytes
    print(f"\n{uart.cycles} cycles, {len(uart.from_board)} bytes from the board in "
          f"{seconds:.1f} s: {uart.cycles / seconds:.0f} cycles/s")
