"""The edge boards ticketforge synthesises for, in one table.

Capacities are the devices' datasheet figures (Lattice iCE40 UltraPlus family data sheet
FPGA-DS-02008: UP5K 5,280 LUT4/FF, 30 x 4 Kbit EBR, 4 x 256 Kbit SPRAM, 8 DSP; Lattice
ECP5 family data sheet FPGA-DS-02012: LFE5U-85F 83,640 LUT4/FF, 208 x 18 Kbit EBR, 156
18x18 multipliers; Xilinx DS180 7-series overview: XC7A35T 20,800 LUT6, 41,600 FF, 50 x
36 Kbit BRAM, 90 DSP48E1; XC7Z020 53,200 LUT6, 106,400 FF, 140 x 36 Kbit BRAM, 220 DSP).
"""
from __future__ import annotations

from dataclasses import dataclass

from ticketforge.errors import TicketforgeError

__all__ = ["Board", "BOARDS", "BoardError", "get_board"]


class BoardError(TicketforgeError):
    pass


@dataclass(frozen=True)
class Board:
    name: str
    family: str             # ice40 | ecp5 | xilinx7 (yosys synth_<family>)
    device: str
    package: str
    luts: int
    ffs: int
    brams: int              # block RAMs of bram_kbits each
    bram_kbits: int
    dsps: int
    sprams: int = 0         # iCE40 UltraPlus single-port RAMs (256 Kbit each)
    place_and_route: bool = True
    note: str = ""

    @property
    def memory_kbits(self) -> int:
        return self.brams * self.bram_kbits + self.sprams * 256


BOARDS = {
    "icebreaker": Board("icebreaker", "ice40", "iCE40UP5K", "sg48", luts=5280, ffs=5280, brams=30, bram_kbits=4,
                        dsps=8, sprams=4),
    "ulx3s": Board("ulx3s", "ecp5", "LFE5U-85F", "CABGA381", luts=83640, ffs=83640, brams=208, bram_kbits=18,
                   dsps=156),
    "arty_a7": Board("arty_a7", "xilinx7", "XC7A35T", "CSG324", luts=20800, ffs=41600, brams=50, bram_kbits=36,
                     dsps=90, place_and_route=False,
                     note="estimate: yosys synth_xilinx resource counts, no place-and-route, no timing"),
    "pynq_z2": Board("pynq_z2", "xilinx7", "XC7Z020", "CLG400", luts=53200, ffs=106400, brams=140, bram_kbits=36,
                     dsps=220, place_and_route=False,
                     note="estimate: yosys synth_xilinx resource counts, no place-and-route, no timing"),
}


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise BoardError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]
