"""Report assembly from stage outputs, the 45 nm energy model, nextpnr report parsing and
the Amaranth build-script parsing of the board flow."""
import json

import numpy as np

import pytest

from ticketforge.deploy.board_build import _commands, parse_nextpnr_report
from ticketforge.deploy.energy import add_pj, hardware_events_energy, sram_pj
from ticketforge.errors import StageMissingError
from ticketforge.deploy.report import REQUIRED_KEYS, ReportError, _get, build_report, model_cycles, write_report
from ticketforge.ir import random_images
from ticketforge.ir.random import random_graph


def test_energy_constants_and_interpolation():
    assert add_pj(8) == 0.03 and add_pj(32) == 0.1
    assert 0.03 < add_pj(12) < 0.05                              # between the reference points
    assert sram_pj(1024, 64) == 10.0                              # 8 KB, 64-bit word: the 8 KB figure
    assert sram_pj(1024, 32) == 5.0                               # half the word, half the energy
    assert 10.0 < sram_pj(2048, 64) < 20.0                        # 16 KB between 8 and 32 KB


def _manifest():
    return {"membrane_bits": 16, "memories": [
        {"name": "pe0_rows", "width": 64, "depth": 1024, "bits": 65536},
        {"name": "pe0_membranes", "width": 16, "depth": 256, "bits": 4096},
        {"name": "pe0_params", "width": 32, "depth": 4, "bits": 128},
        {"name": "pe0_spikes", "width": 16, "depth": 64, "bits": 1024}]}


def test_hardware_events_energy_sums_counters_times_prices():
    e = hardware_events_energy({"fc": {"accumulates": 1000, "weight_reads": 10}}, _manifest())
    assert e["uj"] == pytest.approx((1000 * 0.05 + 10 * 10.0) * 1e-6)
    with pytest.raises(StageMissingError, match="no memory named .pe0_rows.*re-run `ticketforge rtl`"):
        hardware_events_energy({}, {"membrane_bits": 8, "memories": []})


def test_parse_nextpnr_report():
    rep = {"fmax": {"clk_a": {"achieved": 31.2, "constraint": 12.0}, "clk_b": {"achieved": 55.0, "constraint": 12.0}},
           "utilization": {"ICESTORM_LC": {"used": 1000, "available": 5280}, "SB_GB": {"used": 0, "available": 8}}}
    r = parse_nextpnr_report(rep)
    assert r["fmax_mhz"] == 31.2 and r["placed"] == {"ICESTORM_LC": {"used": 1000, "available": 5280}}
    assert parse_nextpnr_report({})["fmax_mhz"] is None


def test_amaranth_build_script_commands():
    script = ('set -e\n: ${YOSYS:=yosys}\n"$YOSYS" -q -l board.rpt board.ys\n'
              '"$NEXTPNR_ICE40" --quiet --report report.json --up5k --json board.json\n"$ICEPACK" board.asc board.bin\n')
    cmds = _commands(script)
    assert [c[0] for c in cmds] == ["$YOSYS", "$NEXTPNR_ICE40", "$ICEPACK"] and cmds[1][-1] == "board.json"


def _stage_outputs(root, g, n):
    (root / "ticket").mkdir(parents=True)
    (root / "ir").mkdir()
    (root / "rtl").mkdir()
    (root / "sim").mkdir()
    (root / "ticket" / "metrics.json").write_text(json.dumps(
        {"dataset": "synthetic", "final_test_accuracy": 0.9, "energy": {"energy_uj": 0.5},
         "firing_rate": {"lif0": 0.1}}))
    (root / "ir" / "metrics.json").write_text(json.dumps({"accuracy_integer": 0.89, "images": n}))
    (root / "rtl" / "manifest.json").write_text(json.dumps({**_manifest(), "params": {"pes": 2}, "memory_bits": 70784}))
    (root / "sim" / "results.json").write_text(json.dumps(
        {"images_run": n, "rtl_matches_golden": True, "accuracy_rtl": 0.89, "simulator_version": "v",
         "cycles": {"mean": 1000.0, "min": 900, "max": 1100},
         "counters_summed": {"fc0": {"accumulates": 4 * n, "weight_reads": 2 * n}}}))


def test_report_has_every_required_key_and_writes_files(tmp_path):
    g = random_graph(3, binary=True)
    images = random_images(g, 3, 3)
    cycles = model_cycles(g, images, 2, chunk=2)
    assert model_cycles(g, images, 2, chunk=1, jobs=2) == cycles        # the same figures on 2 processes
    assert cycles["images"] == 3 and cycles["ideal_bound_mean"] > 0
    # the per-layer ideal shares add up to the bound
    assert sum(v["ideal"] for v in cycles["per_layer"].values()) == pytest.approx(cycles["ideal_bound_mean"])
    root = tmp_path / "x"
    _stage_outputs(root, g, 3)
    synth = {"icebreaker": {"fits": True, "device": "iCE40UP5K", "clock_mhz": 12.0, "fmax_mhz": 20.0,
                            "meets_board_clock": True,
                            "resources": {"luts": 10, "ffs": 5, "brams": 1, "dsps": 0, "sprams": 2},
                            "placed": {"ICESTORM_LC": {"used": 14, "available": 5280},
                                       "ICESTORM_SPRAM": {"used": 2, "available": 4}},
                            "utilisation": {"luts": 0.01, "ffs": 0.01, "brams": 0.03, "dsps": 0.0}},
             # placed and routed, but slower than the board's 25 MHz clock
             "ulx3s": {"fits": True, "device": "LFE5U-85F", "clock_mhz": 25.0, "fmax_mhz": 20.0,
                       "meets_board_clock": False, "resources": {"luts": 10, "ffs": 5, "brams": 1, "dsps": 0}}}
    rep = build_report(root, "x", cycles, synth, {"model": 1.0})
    for k in REQUIRED_KEYS:
        assert _get(rep, k) is not None, k
    b = rep["boards"]["icebreaker"]
    assert b["latency_us"] == pytest.approx(83.3) and b["latency_us_at_fmax"] == 50.0   # at its 12 MHz clock
    # nextpnr's placed logic cells and the SPRAMs beside yosys' LUT4 (the ULX3S here was not placed)
    assert (b["logic_cells_placed"], b["sprams"]) == (14, 2) and rep["boards"]["ulx3s"]["logic_cells_placed"] is None
    u = rep["boards"]["ulx3s"]
    assert u["latency_us_at_fmax"] == 50.0 and u["meets_board_clock"] is False and u["latency_us"] is None
    assert rep["energy_uj_per_image"]["hardware_events"] == pytest.approx((4 * 0.05 + 2 * 10.0) * 1e-6)
    files = write_report(rep, root)
    assert all(f.is_file() for f in files)
    assert json.loads((root / "report.json").read_text())["rtl_matches_golden"] is True
    assert "<table>" in (root / "report.html").read_text() and "cycles_per_layer.png" in (root / "report.md").read_text()
    assert "| icebreaker | iCE40UP5K | True | 10 | 14 | 5 | 1 | 2 | 0 | 20 |" in (root / "report.md").read_text()


def test_report_names_the_missing_stage(tmp_path):
    with pytest.raises(ReportError, match="run the model stage"):
        build_report(tmp_path, "x", {}, {}, {})


def test_board_that_does_not_fit_has_no_fmax_and_says_why(tmp_path):
    g = random_graph(3, binary=True)
    root = tmp_path / "x"
    _stage_outputs(root, g, 1)
    cycles = model_cycles(g, random_images(g, 1, 3), 2)
    synth = {"ulx3s": {"fits": False, "device": "LFE5U-85F", "fmax_mhz": None,
                       "resources": {"luts": 10, "ffs": 5, "brams": 611, "dsps": 0},
                       "over": {"brams": {"used": 611, "available": 208, "over_by": 403, "ratio": 2.94}}}}
    b = build_report(root, "x", cycles, synth, {})["boards"]["ulx3s"]
    assert b["fmax_mhz"] is None and b["latency_us"] is None and "brams 611 of 208" in b["why_no_fmax"]


def test_an_imported_network_reports_its_nir_float_accuracy_and_no_sop_energy(tmp_path):
    """A network from NIR has no model stage: the float accuracy is the NIR graph's own
    (ir/metrics.json), the SOP energy formula does not apply, and the markdown says so."""
    import shutil

    g = random_graph(3, binary=True)
    root = tmp_path / "x"
    _stage_outputs(root, g, 2)
    shutil.rmtree(root / "ticket")
    (root / "ir" / "metrics.json").write_text(json.dumps(
        {"source": "nir", "accuracy_float": 0.938, "accuracy_integer": 0.94, "images": 2}))
    (root / "ir" / "graph.json").write_text(json.dumps({"provenance": {"dataset": "mnist5k"}}))
    rep = build_report(root, "x", model_cycles(g, random_images(g, 2, 3), 2), {}, {})
    assert rep["accuracy"]["float"] == 0.938 and rep["dataset"] == "mnist5k"
    assert rep["energy_uj_per_image"]["theoretical_sop"] is None
    write_report(rep, root)
    assert "an imported network: no model stage" in (root / "report.md").read_text()


@pytest.mark.parametrize("datapath,size", [("lane", 2), ("bitpar", 4)])
def test_the_figures_from_the_sim_stage_equal_the_cycle_model_on_event_input(datapath, size):
    """The report reads the sparse figures from the sim stage and runs the dense design on one
    sample; with event input that sample's load differs from the others' on the bitpar
    datapath, and the mean must still be the model's over every sample."""
    import numpy as np

    from ticketforge.deploy.report import cycles_from_sim
    from ticketforge.rtl.datapath import cycle_model

    g = random_graph(1101, binary=True, events=True)
    frames = random_images(g, 6, 3)
    frames[0] = 0                                          # the dense run's sample: no event at all
    direct = model_cycles(g, frames, size, datapath=datapath)
    sparse = cycle_model(g, frames, size, datapath)
    sim = {"cycle_model": {"images": len(frames), "per_image_mean": float(np.mean([c.total for c in sparse])),
                           "ideal_bound_mean": direct["ideal_bound_mean"],
                           "per_layer": {k: {"sparse": v["sparse"], "ideal": v["ideal"]}
                                         for k, v in direct["per_layer"].items()}}}
    got = cycles_from_sim(g, sim, frames, size, datapath=datapath)
    assert got["dense_per_image_mean"] == pytest.approx(direct["dense_per_image_mean"])
    assert got["per_image_mean"] == pytest.approx(direct["per_image_mean"])


def test_a_residual_irs_report_counts_the_copy_neurons_of_its_chain_form(tmp_path):
    from ticketforge.deploy.report import residual_cost
    from ticketforge.ir import chain_form, copy_neurons, random_graph, save_graph

    g = next(random_graph(s, residual=True) for s in range(100) if copy_neurons(random_graph(s, residual=True)))
    save_graph(g, tmp_path / "dag")
    r = residual_cost(tmp_path / "dag")
    c = chain_form(g)
    assert r["skip_inputs"] == [l.name for l in g.layers if l.has_skip]
    assert r["copy_neurons_total"] == sum(int(np.prod(l.out_shape)) for l in c.layers if l.neuron) - r["neurons"] > 0
    save_graph(random_graph(7), tmp_path / "chain")
    assert residual_cost(tmp_path / "chain") is None


def test_a_transformers_report_names_its_accelerator_prefix_and_has_no_rtl_accuracy(tmp_path):
    """The sim stage of a transformer IR ran its accelerator prefix (ir/prefix.py): the
    report says what runs and what is left out, and shows no RTL accuracy."""
    from ticketforge.deploy.report import residual_cost
    from ticketforge.ir import save_graph
    from ticketforge.ir.prefix import accelerator_prefix, prefix_info

    g = random_graph(5, binary=True, residual=True, attention=True)
    root = tmp_path / "x"
    _stage_outputs(root, g, 3)
    res = json.loads((root / "sim" / "results.json").read_text())
    info = prefix_info(accelerator_prefix(g))
    res.update(accuracy_rtl=None, accelerator_prefix=info)
    (root / "sim" / "results.json").write_text(json.dumps(res))
    rep = build_report(root, "x", model_cycles(accelerator_prefix(g), random_images(g, 3, 5), 2), {}, {})
    assert rep["accuracy"]["rtl"] is None and rep["accelerator_prefix"] == info
    write_report(rep, root)
    md = (root / "report.md").read_text()
    assert "/ n/a (3 test images)" in md and "not on it: attn, attn_proj" in md
    assert "uJ (the whole network; the accelerator runs its prefix) |" in md
    save_graph(g, tmp_path / "ir")               # the prefix keeps no skip input: no residual row
    assert any(l.has_skip for l in g.layers) and residual_cost(tmp_path / "ir") is None
