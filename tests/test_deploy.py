"""Board table, yosys stat parsing, the fit check, and a real synthesis of a tiny design."""
import json

import numpy as np

import pytest

from ticketforge.deploy.boards import BOARDS, BoardError, get_board
from ticketforge.deploy.synth import fit_check, parse_stat, synthesize
from ticketforge.ir import save_graph
from ticketforge.ir.random import random_graph
from ticketforge.rtl.emit import write_rtl


def test_board_table():
    assert {"icebreaker", "ulx3s", "arty_a7", "pynq_z2"} <= set(BOARDS)
    up5k = get_board("icebreaker")
    assert (up5k.device, up5k.package, up5k.luts, up5k.brams, up5k.sprams) == ("iCE40UP5K", "sg48", 5280, 30, 4)
    assert get_board("ulx3s").device == "LFE5U-85F" and not get_board("arty_a7").place_and_route
    with pytest.raises(BoardError, match="unknown board 'de10'"):
        get_board("de10")


def test_parse_stat_classes_cells():
    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 120, "SB_DFFE": 30, "SB_DFF": 10, "SB_CARRY": 9,
                                             "SB_RAM40_4K": 3, "SB_SPRAM256KA": 1, "SB_MAC16": 2}}}
    r = parse_stat(stat, "ice40")
    assert (r["luts"], r["ffs"], r["brams"], r["sprams"], r["dsps"]) == (120, 40, 3, 1, 2)
    x = parse_stat({"design": {"num_cells_by_type": {"LUT6": 5, "LUT3": 2, "FDRE": 4, "RAMB18E1": 3,
                                                     "RAMB36E1": 1}}}, "xilinx7")
    assert (x["luts"], x["ffs"], x["brams"]) == (7, 4, 3)      # 3 RAMB18 take 2 RAMB36 sites


def test_fit_check_names_the_resource_over():
    f = fit_check({"luts": 6000, "ffs": 100, "brams": 31, "dsps": 0, "sprams": 0}, get_board("icebreaker"))
    assert not f["fits"] and set(f["over"]) == {"luts", "brams"}
    assert f["over"]["brams"] == {"used": 31, "available": 30, "over_by": 1, "ratio": 1.03}
    assert fit_check({"luts": 10}, get_board("ulx3s"))["fits"]


def test_tiny_design_synthesises_and_fits_the_up5k(tmp_path):
    g = random_graph(3, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=2, trace=False, run_lint=False, progress=lambda *a, **k: None)
    r = synthesize(tmp_path / "rtl", get_board("icebreaker"), tmp_path / "synth", log=lambda *a, **k: None)
    assert r["fits"], r
    assert r["resources"]["luts"] > 0 and r["resources"]["ffs"] > 0
    assert json.loads((tmp_path / "synth" / "stat.json").read_text())["design"]["num_cells_by_type"]


def test_a_runtime_core_puts_its_weight_rows_in_spram_as_the_board_design_does(tmp_path):
    """The core's own synthesis (what `ticketforge explore` measures before placing) maps a
    runtime-weights design's weight rows to SPRAM, as the board design's does, instead of
    counting them as block RAMs."""
    g = random_graph(18, max_conv=0, max_linear=3)          # fully connected: the rowstream datapath
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=16, trace=False, run_lint=False, progress=lambda *a, **k: None,
              datapath="rowstream", weights="runtime")
    r = synthesize(tmp_path / "rtl", get_board("icebreaker"), tmp_path / "synth", log=lambda *a, **k: None)
    assert r["resources"]["sprams"] >= 1, r["resources"]


@pytest.mark.parametrize("board, cells, bitstream, constraints, pins, n_pins, mhz, pll_cell", [
    ("icebreaker", "ICESTORM_LC", "board.bin", "board.pcf", "set_io", 3, 15.0, "ICESTORM_PLL"),  # clock, uart rx/tx
    ("ulx3s", "TRELLIS_COMB", "board.bit", "board.lpf", "LOCATE COMP", 5, 40.0, "EHXPLLL")])     # + uart rts/dtr
def test_board_build_places_routes_and_packs_with_the_pll(tmp_path, board, cells, bitstream, constraints, pins,
                                                          n_pins, mhz, pll_cell, monkeypatch):
    """The board design with the core clocked from the FPGA's PLL (the oscillator path is the
    hw flow test's): placed, routed and timed against the PLL's clock, and packed.  It never
    changes the process's working directory: `hw` runs it in a thread beside the regression."""
    import os

    from ticketforge.deploy.board_build import build_board
    g = random_graph(3, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=2, run_lint=False, progress=lambda *a, **k: None)

    def no_chdir(path):
        raise AssertionError(f"the board build changed the working directory to {path}")

    monkeypatch.setattr(os, "chdir", no_chdir)
    r = build_board(tmp_path / "rtl", get_board(board), tmp_path / "b", pixels=int(np.prod(g.input.shape)),
                    classes=g.layers[-1].out_shape[0], bitstream=True, log=lambda *a, **k: None, clock_mhz=mhz)
    assert r["fits"] and r["fmax_mhz"] > 0 and r["placed"][cells]["used"] > 0
    assert r["placed"][pll_cell]["used"] == 1 and r["clock_mhz"] == mhz and r["pll"]["family"] == get_board(board).family
    (clock,) = r["clocks"].values()                          # nextpnr timed the core against the PLL's output
    assert clock["constraint_mhz"] == pytest.approx(mhz, rel=1e-3) and r["meets_board_clock"]
    assert (tmp_path / "b" / bitstream).stat().st_size > 50_000
    assert (tmp_path / "b" / constraints).read_text().count(pins) == n_pins


def test_pll_settings_follow_each_familys_limits():
    from ticketforge.deploy.pll import ecp5_pll, ice40_pll
    from ticketforge.errors import UnsupportedError
    for target in (21e6, 28e6, 40e6, 55.5e6, 100e6):
        s = ecp5_pll(25e6, target)
        d = s.dividers
        assert s.f_out_hz <= target and s.f_out_hz == 25e6 * d["CLKFB_DIV"] / d["CLKI_DIV"]
        assert 3.125e6 <= 25e6 / d["CLKI_DIV"] <= 400e6 and 400e6 <= s.f_out_hz * d["CLKOP_DIV"] <= 800e6
    assert ecp5_pll(25e6, 40e6).f_out_hz == 40e6 and ecp5_pll(25e6, 28e6).f_out_hz == 25e6   # 28.125 is over
    for target in (9e6, 15e6, 16.1e6, 30e6):
        s = ice40_pll(12e6, target)
        d = s.dividers
        assert s.f_out_hz <= target and s.f_out_hz == 12e6 * (d["DIVF"] + 1) / ((d["DIVR"] + 1) * 2 ** d["DIVQ"])
        assert 533e6 <= 12e6 / (d["DIVR"] + 1) * (d["DIVF"] + 1) <= 1066e6
    with pytest.raises(UnsupportedError, match="no iCE40 PLL setting gives at most 5.00 MHz"):
        ice40_pll(12e6, 5e6)


def test_fit_hint_names_what_the_design_needs(tmp_path):
    from ticketforge.deploy.synth import closest_fit_hint
    from ticketforge.deploy.boards import Board
    g = random_graph(3, binary=True)
    save_graph(g, tmp_path / "ir")
    tiny = Board("tiny", "ice40", "x", "y", luts=10, ffs=10, brams=0, bram_kbits=4, dsps=0)
    assert "no PE count fits" in closest_fit_hint(tmp_path / "ir", tiny)
    roomy = Board("roomy", "ice40", "x", "y", luts=10, ffs=10, brams=1000, bram_kbits=4, dsps=0)
    assert "try --pes 16" in closest_fit_hint(tmp_path / "ir", roomy)
    assert "With the lane datapath" in closest_fit_hint(tmp_path / "ir", tiny, "bitpar", 8)
    wide = next(s for s in range(100) if any(l.has_weights and l.weight_bits > 2 for l in random_graph(s).layers))
    save_graph(random_graph(wide), tmp_path / "ir8")
    hint = closest_fit_hint(tmp_path / "ir8", roomy, "bitpar", 8)      # multi-bit weights: the lane datapath too
    assert "try --pes 4" in hint and "With the lane datapath" in hint and "try --pes" in hint.split("lane datapath")[-1]


def test_platform_for_an_estimate_board_is_refused():
    from ticketforge.deploy.board_build import platform_for
    with pytest.raises(BoardError, match="estimate only"):
        platform_for(get_board("arty_a7"))


def test_hw_refuses_an_unknown_board_before_any_stage(tmp_path, root):
    from conftest import run_cli
    r = run_cli("hw", "--config", "vgg9_binw", "--board", "nosuch", "--build-dir", str(tmp_path), cwd=root)
    assert r.returncode == 2 and "unknown board 'nosuch'" in r.stderr and "icebreaker" in r.stderr
    assert not any(tmp_path.iterdir())                    # nothing started, nothing written
