"""cocotb drivers for ``amaranth.lib.stream`` ports: ``<name>__valid``, ``<name>__ready`` and
``<name>__payload`` on the Verilog that Amaranth writes.

cocotbext-axi drives AXI4-Stream ports (``tdata``/``tvalid``/...); these are the same idea for the
bare valid/ready streams inside the engine (the crypto core's command, data and result streams),
with the same way of adding stalls: :meth:`set_pause_generator` takes an iterator, and every clock
in which it yields a true value the source withholds ``valid`` (idle) or the sink withholds
``ready`` (backpressure).

Both sample and drive just after the rising edge, as a register would, and never look at a
combinational output before the edge: an Amaranth stream may make ``ready`` depend on ``valid`` in
the same clock (the GCM core does).
"""

import collections

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge


__all__ = ["StreamSource", "StreamSink"]


class _Port:
    def __init__(self, dut, name, clock):
        for member in ("valid", "ready", "payload"):
            if not hasattr(dut, f"{name}__{member}"):
                raise ValueError(f"The design has no stream port {name!r}: "
                                 f"{name}__{member} is missing")
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.width = len(self.payload)
        self.clock = clock
        self._pause = None

    def set_pause_generator(self, generator=None):
        """Stall in every clock for which ``generator`` yields a true value (``None``: never)."""
        self._pause = iter(generator) if generator is not None else None

    def _paused(self):
        return self._pause is not None and bool(next(self._pause))


class StreamSource(_Port):
    """Sends payload integers on an input stream of the design, in order."""

    def __init__(self, dut, name, clock):
        super().__init__(dut, name, clock)
        self._queue = collections.deque()
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        self.payload.value = 0
        cocotb.start_soon(self._run())

    def send(self, payload):
        """Queue one beat (an integer that fits the payload)."""
        if not isinstance(payload, int) or not 0 <= payload < (1 << self.width):
            raise ValueError(f"Payload for {self.name!r} must be an integer of at most "
                             f"{self.width} bits, not {payload!r}")
        self._queue.append(payload)
        self._idle.clear()

    def empty(self):
        return not self._queue

    async def wait(self):
        """Until every queued beat has been taken."""
        await self._idle.wait()

    async def _run(self):
        presenting = taken = False
        while True:
            await RisingEdge(self.clock)
            if taken:
                self._queue.popleft()
                presenting = False
                if not self._queue:
                    self._idle.set()
            # Once valid is high it stays high until the beat is taken (the stream rule).
            if not presenting and self._queue and not self._paused():
                self.payload.value = self._queue[0]
                presenting = True
            self.valid.value = int(presenting)
            # The handshake at the next edge, from this clock's settled values.
            await ReadOnly()
            taken = presenting and bool(self.ready.value)


class StreamSink(_Port):
    """Receives payload integers from an output stream of the design."""

    def __init__(self, dut, name, clock):
        super().__init__(dut, name, clock)
        self._queue = collections.deque()
        self._arrived = Event()
        self.ready.value = 0
        cocotb.start_soon(self._run())

    def __len__(self):
        return len(self._queue)

    async def recv(self):
        """The next beat's payload, waiting for it."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        return self._queue.popleft()

    async def _run(self):
        ready = False
        while True:
            await ReadOnly()
            if ready and self.valid.value:
                self._queue.append(int(self.payload.value))
                self._arrived.set()
            await RisingEdge(self.clock)
            ready = not self._paused()
            self.ready.value = int(ready)
