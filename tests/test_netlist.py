"""The synthesized iCE40 netlist (yosys synth_ice40 -> structural Verilog, with yosys' cell
models) equals the golden model and the cycle model, block RAM included."""
import numpy as np
import pytest

from ticketforge.deploy.netlist import synth_netlist
from ticketforge.errors import UnsupportedError
from ticketforge.model.ir import random_images, save_graph
from ticketforge.model.ir.random import random_graph
from ticketforge.rtl.emit import write_rtl
from ticketforge.sim.runner import run_sim


@pytest.fixture(scope="module")
def small_rtl(tmp_path_factory):
    d = tmp_path_factory.mktemp("nl")
    g = random_graph(3, binary=True)
    save_graph(g, d / "ir")
    # every memory in block RAM: the netlist's SB_RAM40_4K cells, their INIT contents and
    # read timing are what this checks beyond the RTL regression
    write_rtl(d / "ir", d / "rtl", pes=2, run_lint=False, memory_style="block", progress=lambda *a, **k: None)
    return g, d


def test_ice40_netlist_with_block_ram_equals_golden_and_cycle_model(small_rtl):
    g, d = small_rtl
    nl = synth_netlist(d / "rtl", d / "netlist", "ice40")
    assert nl.cells.get("SB_RAM40_4K", 0) >= 4, nl.cells
    images = random_images(g, 2, seed=3)
    r = run_sim(d / "rtl", g, images, d / "sim-netlist", "icarus", netlist=nl, log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"], r.get("mismatches")
    assert r["netlist"]["family"] == "ice40" and r["traced_images"] == []
    again = synth_netlist(d / "rtl", d / "netlist", "ice40")          # kept: the rtl stage did not change
    assert again.verilog.stat().st_mtime_ns == nl.verilog.stat().st_mtime_ns


def test_ecp5_netlists_are_refused_naming_the_missing_model(small_rtl, tmp_path):
    _, d = small_rtl
    with pytest.raises(UnsupportedError, match="DP16KD.*no behaviour"):
        synth_netlist(d / "rtl", tmp_path, "ecp5")
    with pytest.raises(Exception, match="on icarus"):
        run_sim(d / "rtl", random_graph(3, binary=True), np.zeros((1, 1, 1, 1)), tmp_path, "verilator",
                netlist=synth_netlist(d / "rtl", d / "netlist", "ice40"))
