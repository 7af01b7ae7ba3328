"""The board design's core clock from the FPGA's PLL, at the frequency the placed design meets,
instead of the board's oscillator.

Each family's divider search is written here because amaranth-boards ships no PLL helper:
- ECP5 ``EHXPLLL`` (Lattice TN1263, the search of prjtrellis' ``ecppll``): ``f_out = f_in *
  CLKFB_DIV / CLKI_DIV`` with the feedback from CLKOP, the phase-detector input ``f_in /
  CLKI_DIV`` in 3.125..400 MHz and the VCO ``f_out * CLKOP_DIV`` in 400..800 MHz;
- iCE40 ``SB_PLL40_PAD`` (Lattice iCE40 sysCLOCK PLL guide, the search of icestorm's
  ``icepll``): ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``, the phase-detector
  input 10..133 MHz, the VCO 533..1066 MHz, the loop filter range from the PFD frequency.
Both return the highest output frequency at or below the target.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

from ticketforge.errors import UnsupportedError

__all__ = ["PllSetting", "ecp5_pll", "ice40_pll", "pll_for", "PllClock"]


@dataclass(frozen=True)
class PllSetting:
    family: str
    f_in_hz: float
    f_out_hz: float
    dividers: dict


def ecp5_pll(f_in_hz: float, f_target_hz: float) -> PllSetting:
    best = None
    for clki in range(1, 129):
        pfd = f_in_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f_out = pfd * clkfb
            if f_out > f_target_hz:
                break
            for clkop in range(1, 129):
                if 400e6 <= f_out * clkop <= 800e6:
                    if best is None or f_out > best[0]:
                        best = (f_out, clki, clkfb, clkop)
                    break
    if best is None:
        raise UnsupportedError(f"no ECP5 PLL setting gives at most {f_target_hz / 1e6:.2f} MHz from "
                               f"{f_in_hz / 1e6:.2f} MHz")
    f_out, clki, clkfb, clkop = best
    return PllSetting("ecp5", f_in_hz, f_out, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                                               "CLKOP_CPHASE": clkop - 1})


def _ice40_filter_range(pfd_hz: float) -> int:
    for limit, rng in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if pfd_hz < limit:
            return rng
    return 6


def ice40_pll(f_in_hz: float, f_target_hz: float) -> PllSetting:
    best = None
    for divr in range(16):
        pfd = f_in_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = vco / 2 ** divq
                if f_out <= f_target_hz and (best is None or f_out > best[0]):
                    best = (f_out, divr, divf, divq, pfd)
    if best is None:
        raise UnsupportedError(f"no iCE40 PLL setting gives at most {f_target_hz / 1e6:.2f} MHz from "
                               f"{f_in_hz / 1e6:.2f} MHz (its VCO runs at 533..1066 MHz, divided by at most 64)")
    f_out, divr, divf, divq, pfd = best
    return PllSetting("ice40", f_in_hz, f_out, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                                "FILTER_RANGE": _ice40_filter_range(pfd)})


def pll_for(family: str, f_in_hz: float, f_target_hz: float) -> PllSetting:
    if family == "ecp5":
        return ecp5_pll(f_in_hz, f_target_hz)
    if family == "ice40":
        return ice40_pll(f_in_hz, f_target_hz)
    raise UnsupportedError(f"no PLL for the {family} family here (ecp5, ice40)")


class PllClock(Elaboratable):
    """The ``sync`` domain from the PLL, fed by the platform's default clock pin; ``sync`` is
    held in reset until the PLL locks."""

    def __init__(self, setting: PllSetting):
        self.setting = setting

    def elaborate(self, platform):
        m = Module()
        s = self.setting
        out, lock = Signal(), Signal()
        m.domains.sync = ClockDomain("sync")
        d = s.dividers
        if s.family == "ecp5":
            clk = platform.request(platform.default_clk, dir="i").i
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{s.f_in_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{s.f_out_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=d["CLKI_DIV"],
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=d["CLKOP_DIV"], p_CLKOP_CPHASE=d["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=d["CLKFB_DIV"],
                i_RST=0, i_STDBY=0, i_CLKI=clk, o_CLKOP=out, i_CLKFB=out, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_LOCK=lock)
        else:
            pad = platform.request(platform.default_clk, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=d["DIVR"], p_DIVF=d["DIVF"], p_DIVQ=d["DIVQ"],
                p_FILTER_RANGE=d["FILTER_RANGE"], i_PACKAGEPIN=pad.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=out, o_LOCK=lock)
        m.d.comb += [ClockSignal("sync").eq(out), ResetSignal("sync").eq(~lock)]
        platform.add_clock_constraint(out, s.f_out_hz)
        return m
