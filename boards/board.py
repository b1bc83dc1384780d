"""What ipchan needs to know about a board beyond its amaranth-boards platform.

Each board module (:mod:`ipchan.boards.icebreaker`, :mod:`ipchan.boards.ulx3s`) defines one
:class:`Board`; :data:`ipchan.boards.build.BOARDS` lists them by name.
"""

from dataclasses import dataclass

from ..hw.contract import EngineParams


__all__ = ["Resource", "Board"]


@dataclass(frozen=True)
class Resource:
    """One line of a utilisation table: what the FPGA calls a kind of cell, and what we call it.

    ``source`` says where the count comes from: ``"nextpnr"`` (its ``--report`` JSON, which also
    gives what the device has) or ``"netlist"`` (cells of these types in the synthesised netlist,
    for what nextpnr does not count on its own, such as the iCE40's flip-flops, which it packs
    into logic cells).
    """
    label: str
    cell_types: tuple
    source: str = "nextpnr"


@dataclass(frozen=True)
class Board:
    """A board ipchan builds for.

    name
        What ``--board`` takes.
    title
        Board and FPGA, for people.
    platform
        The amaranth-boards platform class.
    params
        The engine this board is built with.
    bitstream
        File name suffix of the bitstream the programmer takes (``bin``, ``bit``).
    programmer
        The programming tool, and the environment variable amaranth-boards reads its path from.
    resources
        The utilisation table's lines.
    table
        How the engine's registers and SA table are built (:class:`~ipchan.hw.engine.Engine`'s
        ``table``): ``"serial"`` on the iCE40UP5K, where the parallel one leaves little room.
    leds
        The LEDs for :class:`~ipchan.boards.top.BoardTop`'s indicators, as ``(resource name,
        number)``: heartbeat, link error, activity.
    """
    name: str
    title: str
    platform: type
    params: EngineParams
    bitstream: str
    programmer: str
    programmer_env: str
    resources: tuple
    leds: tuple = (("led", 0), ("led", 1), ("led", 2))
    table: str = "parallel"

    def top(self, params=None):
        """The :class:`~ipchan.boards.top.BoardTop` to build, with ``params`` or the board's."""
        from .top import BoardTop
        return BoardTop(self.params if params is None else params, leds=self.leds,
                        table=self.table)

    @property
    def clk_freq(self):
        """The board's default clock, in hertz (what the design runs on)."""
        return self.platform().default_clk_frequency
