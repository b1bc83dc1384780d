"""The register decoder, generated from :mod:`ipchan.hw.contract`.

Every register in the contract becomes a port of :class:`RegisterFile`: a read-only register is an
input (its value is read as it stands), a writable one is an output holding the last value written
(reset value from the contract) plus a one-cycle ``<name>_stb`` strobe when it is written.
Write-only registers read as zero, so a key written through them can never be read back. The low
half of a 64-bit pair (``snapshot_hi``) captures the high half when read, so the host never sees a
torn value.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import contract
from .contract import Access


__all__ = ["RegisterFile"]


class RegisterFile(wiring.Component):
    def __init__(self, registers=contract.REGISTERS, *, addr_width=contract.ADDR_WIDTH):
        self._registers = tuple(registers)
        names = [r.name for r in self._registers]
        if len(set(names)) != len(names):
            raise ValueError(f"Register names must be unique, not {names!r}")
        addrs = [r.addr for r in self._registers]
        if len(set(addrs)) != len(addrs):
            raise ValueError(f"Register addresses must be unique, not {[hex(a) for a in addrs]!r}")
        self._addr_width = addr_width
        members = {
            "addr": In(addr_width),
            "w_stb": In(1),
            "w_data": In(32),
            "w_strb": In(4),
            "w_err": Out(1),
            "r_stb": In(1),
            "r_data": Out(32),
            "r_err": Out(1),
        }
        for reg in self._registers:
            name = reg.name.lower()
            if reg.access == Access.RO:
                members[name] = In(32)
            else:
                members[name] = Out(32, init=reg.reset)
                members[f"{name}_stb"] = Out(1)
        super().__init__(members)

    @property
    def registers(self):
        return self._registers

    def elaborate(self, platform):
        m = Module()
        word = self.addr[2:]
        shadows = {reg.snapshot_hi: Signal(32, name=f"{reg.snapshot_hi.lower()}_shadow")
                   for reg in self._registers if reg.snapshot_hi}

        # Writes.
        with m.If(self.w_stb):
            with m.Switch(word):
                for reg in self._registers:
                    with m.Case(reg.addr >> 2):
                        if reg.access != Access.RO:
                            port = getattr(self, reg.name.lower())
                            for lane in range(4):
                                with m.If(self.w_strb[lane]):
                                    m.d.sync += port[8 * lane:8 * lane + 8].eq(
                                        self.w_data[8 * lane:8 * lane + 8])
                            m.d.comb += getattr(self, f"{reg.name.lower()}_stb").eq(1)
                        # Writes to read-only registers are ignored, as the contract says.
                with m.Default():
                    m.d.comb += self.w_err.eq(1)

        # Reads: registered, one cycle after r_stb.
        with m.If(self.r_stb):
            m.d.sync += [self.r_data.eq(0), self.r_err.eq(0)]
            with m.Switch(word):
                for reg in self._registers:
                    with m.Case(reg.addr >> 2):
                        port = getattr(self, reg.name.lower())
                        if reg.access == Access.WO:
                            pass  # write-only: reads as zero
                        elif reg.name in shadows:
                            m.d.sync += self.r_data.eq(shadows[reg.name])
                        else:
                            m.d.sync += self.r_data.eq(port)
                        if reg.snapshot_hi:
                            m.d.sync += shadows[reg.snapshot_hi].eq(
                                getattr(self, reg.snapshot_hi.lower()))
                with m.Default():
                    m.d.sync += self.r_err.eq(1)
        return m
