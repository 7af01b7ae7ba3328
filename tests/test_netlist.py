"""The synthesized netlists (yosys synth_ice40 / synth_ecp5 -> structural Verilog, with the
cell models) equal the golden model and the cycle model, block RAM included."""
import pytest

from ticketforge.deploy.netlist import synth_netlist
from ticketforge.errors import UnsupportedError
from ticketforge.ir import random_images, save_graph
from ticketforge.ir.random import random_graph
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
    # an iCE40 netlist on Verilator is `hw`'s netlist stage in test_quantize's whole-flow test


def test_ecp5_netlist_with_dp16kd_of_mixed_widths_equals_golden_and_cycle_model(small_rtl):
    """The project's DP16KD model (deploy/cells/ecp5_dp16kd_sim.v) under yosys' ECP5 mapping:
    ports of different widths on one block RAM (4, 2 or 9 bits against 18) read each other's
    words, so the row layout is what this checks (packing narrow words into all 18 bits of
    a row instead of its two nine-bit halves gives other scores on these images)."""
    import re

    g, d = small_rtl
    nl = synth_netlist(d / "rtl", d / "netlist-ecp5", "ecp5")
    text = nl.verilog.read_text()
    pairs = set(re.findall(r"DATA_WIDTH_A\(32'd(\d+)\),\s*\.DATA_WIDTH_B\(32'd(\d+)\)", text))
    assert nl.cells.get("DP16KD", 0) >= 8 and any(a != b for a, b in pairs), (nl.cells, pairs)
    assert "MULT18X18D" not in nl.cells                                 # mapped with -nodsp
    images = random_images(g, 2, seed=3)
    r = run_sim(d / "rtl", g, images, d / "sim-netlist-ecp5", "icarus", netlist=nl, log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"], r.get("mismatches")
    # the same netlist on Verilator (what `hw`'s netlist stage runs by default, and for the
    # ULX3S: the DP16KD model under both simulators)
    r = run_sim(d / "rtl", g, images, d / "sim-netlist-ecp5-verilator", "verilator", netlist=nl,
                log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"], r.get("mismatches")


def test_other_families_are_refused_by_name(small_rtl, tmp_path):
    _, d = small_rtl
    with pytest.raises(UnsupportedError, match="xilinx7.*ice40, ecp5"):
        synth_netlist(d / "rtl", tmp_path, "xilinx7")


def test_runtime_weights_on_ice40_put_the_synapse_words_in_spram(tmp_path):
    """A design with runtime weights: the iCE40 synthesis places each PE's synapse words in an
    SB_SPRAM256KA (no initial contents: they come through the load port), and that netlist,
    loaded by the testbench from weights.bin, equals the golden model on Icarus."""
    g = random_graph(3, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=2, run_lint=False, progress=lambda *a, **k: None,
              weights="runtime")
    nl = synth_netlist(tmp_path / "rtl", tmp_path / "netlist", "ice40")
    assert nl.cells.get("SB_SPRAM256KA", 0) == 2, nl.cells                # one per PE
    images = random_images(g, 2, seed=3)
    r = run_sim(tmp_path / "rtl", g, images, tmp_path / "sim", "icarus", netlist=nl, log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"], r.get("mismatches")


@pytest.mark.slow          # ~4 minutes on 2 cores: yosys' ECP5 mapping of 16 lanes, then Icarus
def test_a_runtime_bitpar_netlist_with_36_bit_block_ram_equals_golden(tmp_path):
    """The runtime-weights bitpar design on the ECP5: its wide group table becomes DP16KDs in
    the 36-bit pseudo-dual-port mode (port A writes DIB:DIA, port B reads DOB:DOA), which
    the project's model covers; loaded from weights.bin, the netlist equals the golden model."""
    import re

    g = random_graph(4, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=16, run_lint=False, progress=lambda *a, **k: None,
              weights="runtime", datapath="bitpar", memory_style="block")
    nl = synth_netlist(tmp_path / "rtl", tmp_path / "netlist", "ecp5")
    widths = set(re.findall(r"DATA_WIDTH_A\(32'd(\d+)\),\s*\.DATA_WIDTH_B\(32'd(\d+)\)", nl.verilog.read_text()))
    assert ("36", "36") in widths, widths
    images = random_images(g, 2, seed=4)
    r = run_sim(tmp_path / "rtl", g, images, tmp_path / "sim", "icarus", netlist=nl, log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"], r.get("mismatches")
