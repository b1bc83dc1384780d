"""ULX3S: a Lattice ECP5 LFE5U-85F with a 25 MHz clock and an FTDI FT231X UART (/dev/ttyUSB0,
typically). Built with the default engine (:class:`EngineParams`: 256 SAs); programmed with
``openFPGALoader``.
"""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..hw.contract import EngineParams
from .board import Board, Resource


__all__ = ["BOARD"]


BOARD = Board(
    name="ulx3s",
    title="ULX3S (ECP5 LFE5U-85F-6BG381)",
    platform=ULX3S_85F_Platform,
    params=EngineParams(n_entries=256),
    bitstream="bit",
    programmer="openFPGALoader",
    programmer_env="OPENFPGALOADER",
    resources=(
        Resource("LUT4", ("TRELLIS_COMB",)),
        Resource("flip-flops", ("TRELLIS_FF",)),
        Resource("DP16KD (18 kbit block RAM)", ("DP16KD",)),
        Resource("IO", ("TRELLIS_IO",)),
    ),
)
