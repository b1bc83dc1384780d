"""iCEBreaker: a Lattice iCE40UP5K with a 12 MHz clock and an FTDI FT2232H (its second channel is
the UART at /dev/ttyUSB1, typically). Built with the small engine, :data:`SMALL_PARAMS`, on the
block-RAM SA table (``table="serial"``); programmed with ``iceprog``.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from ..hw.contract import SMALL_PARAMS
from .board import Board, Resource


__all__ = ["BOARD"]


BOARD = Board(
    name="icebreaker",
    title="iCEBreaker (iCE40UP5K-SG48)",
    platform=ICEBreakerPlatform,
    params=SMALL_PARAMS,
    bitstream="bin",
    programmer="iceprog",
    programmer_env="ICEPROG",
    resources=(
        Resource("logic cells (LUT4 + FF)", ("ICESTORM_LC",)),
        Resource("flip-flops", ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS",
                                "SB_DFFESR", "SB_DFFER", "SB_DFFES", "SB_DFFSS", "SB_DFFESS"),
                 source="netlist"),
        Resource("EBR (4 kbit block RAM)", ("ICESTORM_RAM",)),
        Resource("IO", ("SB_IO",)),
    ),
    # The two LEDs on the main board: green for the heartbeat, red for a link error.
    leds=(("led_g", 0), ("led_r", 0)),
    # Registers and SA table in block RAM: a fraction of the parallel table's logic cells, so
    # the UP5K has room for the compact AES-GCM core beside them.
    table="serial",
)
