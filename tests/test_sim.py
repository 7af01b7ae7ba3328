"""cocotb regression of the generated Verilog (sim/): random IRs on Icarus, the error
paths, and the mismatch report."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import sampled
from ticketforge.ir import random_images, run, save_graph
from ticketforge.ir.chain import chain_form
from ticketforge.ir.random import random_graph
from ticketforge.rtl.emit import write_rtl
from ticketforge.rtl.lane.plan import lane_plan
from ticketforge.sim.runner import SimError, SimMismatch, run_sim, simulator_version, spread_traced

# 50 random binary IRs: pruned neurons, empty layers, saturating membranes, all leak and
# reset kinds, strides, pools (the same generator and cases as tests/test_rtl_accel.py);
# the first 8 in the default suite, all 50 in `make test-slow`
SEEDS = range(1000, 1050)
EVENT_SEEDS = range(1100, 1106)


def _pes(seed: int) -> int:
    return (1, 2, 3, 4, 8)[seed % 5]


def _regress(g, seed: int, pes: int, tmp_path, **write) -> dict:
    """``g``'s RTL (write_rtl with ``write``) on Icarus on 2 random images, both traced: scores,
    spike trains, cycles and counters equal to the golden and cycle models."""
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=pes, progress=lambda *a, **k: None, **write)
    x = random_images(g, 2, seed)
    try:
        r = run_sim(tmp_path / "rtl", g, x, tmp_path / "sim", "icarus", traced=[0, 1], log=lambda *a, **k: None)
    except SimMismatch as e:
        pytest.fail(f"random IR seed {seed} (P={pes}, {write}): {e}")
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"] and r["traced_images"] == [0, 1]
    return r


@pytest.mark.parametrize("seed,events", sampled([(s, False) for s in SEEDS], 8) + sampled([(s, True) for s in EVENT_SEEDS], 3))
def test_random_ir_on_icarus_equals_golden(seed, events, tmp_path):
    """``events``: an event-camera input (binary frames per timestep) as the AER stream."""
    g = random_graph(seed, binary=True, events=events)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=_pes(seed), run_lint=False, progress=lambda *a, **k: None)
    x = random_images(g, 2, seed)
    try:
        r = run_sim(tmp_path / "rtl", g, x, tmp_path / "sim", "icarus", traced=[0, 1], log=lambda *a, **k: None)
    except SimMismatch as e:
        pytest.fail(f"random IR seed {seed} (P={_pes(seed)}): {e}")
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"]
    assert r["traced_images"] == [0, 1]
    assert not (tmp_path / "sim" / "mismatches.json").exists()


@pytest.mark.parametrize("seed,weights", [(13, "baked"), (64, "baked"), (3, "runtime")])
def test_multi_bit_random_ir_on_icarus_equals_golden(seed, weights, tmp_path):
    """The lane datapath's Verilog with 4- and 8-bit weights (tests/test_rtl_accel.py:
    MULTI_BIT_SEEDS): 13 and 64 multiply 8-bit pixels by 4- and 8-bit weights in the first
    layer; 3 loads its magnitudes through the load port (runtime weights)."""
    g = random_graph(seed)
    assert any(l.has_weights and l.weight_bits > 2 for l in g.layers)
    r = _regress(g, seed, _pes(seed), tmp_path, run_lint=seed == 13, weights=weights)
    assert r["datapath"] == "lane"


def test_a_wrong_reference_is_reported_with_image_layer_timestep_neuron(tmp_path, monkeypatch):
    """Feed the testbench a reference whose spikes and scores are wrong: the run must
    fail and mismatches.json must name where."""
    import ticketforge.sim.jobs as sim_jobs

    g = random_graph(1003, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=3, run_lint=False, progress=lambda *a, **k: None)
    real = sim_jobs.write_job

    def corrupt(*a, **k):
        meta = real(*a, **k)
        job = a[5]
        d = dict(np.load(job / "job.npz"))
        name = next(k for k in d if k.startswith("spikes/"))
        d[name][0].flat[0] ^= 1                      # image 0, t 0, first neuron
        d["scores"][0, 0] += 1
        np.savez(job / "job.npz", **d)
        return meta

    monkeypatch.setattr(sim_jobs, "write_job", corrupt)
    with pytest.raises(SimMismatch, match="image 0"):
        run_sim(tmp_path / "rtl", g, random_images(g, 1, 3), tmp_path / "sim", "icarus", traced=[0],
                log=lambda *a, **k: None)
    mm = json.loads((tmp_path / "sim" / "mismatches.json").read_text())
    kinds = {m["what"] for m in mm}
    assert kinds == {"scores", "spikes"}
    sp = next(m for m in mm if m["what"] == "spikes")
    assert sp["image"] == 0 and sp["timestep"] == 0 and sp["neuron"] == [0] * (len(sp["neuron"]))


def test_missing_simulator_names_the_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SimError, match="apt-get install iverilog"):
        simulator_version("icarus")
    with pytest.raises(SimError, match="unknown simulator 'modelsim'"):
        simulator_version("modelsim")


def test_traced_images_are_spread_over_the_simulator_processes():
    assert spread_traced(2, 1000, 2) == [0, 500]
    assert spread_traced(3, 1000, 2) == [0, 1, 500]
    assert spread_traced(2, 1000, 1) == [0, 1]
    assert spread_traced(4, 3, 2) == [0, 1, 2]          # more wanted than images: all of them
    assert spread_traced(3, 3, 8) == [0, 1, 2]          # more processes than images
    assert spread_traced(0, 10, 2) == []


def test_a_malformed_profile_guided_threshold_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETFORGE_PGO_MIN_CYCLES", "lots")
    # refused before any work: there is not even a design in tmp_path
    with pytest.raises(SimError, match=r"TICKETFORGE_PGO_MIN_CYCLES='lots' is not a whole number"):
        run_sim(tmp_path / "rtl", None, np.zeros((1, 4)), tmp_path / "sim", "verilator")


# by default: convs at 1, 2, 8 and 32 lanes, 4- and 8-bit weights, the AER input (with convs
# and with multi-bit weights); the rest in `make test-slow`
@pytest.mark.parametrize("seed,binary,events", sampled([(1000, True, False), (1, False, False), (1103, True, True),
                                                        (1004, True, False), (13, False, True), (1001, True, False),
                                                        (1003, True, False), (10, False, False), (1102, True, True)], 5))
def test_random_ir_on_the_bitpar_datapath_on_icarus_equals_golden(seed, binary, events, tmp_path):
    """The bitpar accelerator's Verilog: scores, traced spike trains, cycles and every counter
    (bench/soak.py --datapath bitpar runs many more); seeds 1, 10 and 13 with 4- and 8-bit weights;
    ``events``: the AER input."""
    g = random_graph(seed, binary=binary, events=events)
    assert binary or any(l.has_weights and l.weight_bits > 2 for l in g.layers)
    r = _regress(g, seed, (1, 2, 4, 8, 32)[seed % 5], tmp_path, run_lint=seed == 1000, datapath="bitpar")
    assert r["datapath"] == "bitpar"


@pytest.mark.parametrize("seed,binary,lanes,weights", [(1, False, 4, "baked"), (18, False, 3, "runtime"),
                                                      (9, True, 16, "baked")])
def test_random_ir_on_the_rowstream_datapath_on_icarus_equals_golden(seed, binary, lanes, weights, tmp_path):
    """The rowstream accelerator's Verilog on fully connected random IRs (8-bit weights,
    pruned neurons, several neuron configurations; binary at T = 1): scores, traced spike
    trains, cycles and every counter; runtime weights through the load port."""
    g = random_graph(seed, max_conv=0, max_linear=3, binary=binary)
    r = _regress(g, seed, lanes, tmp_path, run_lint=seed == 1, datapath="rowstream", weights=weights)
    assert r["datapath"] == "rowstream"


@pytest.mark.parametrize("seed", (1050, 1051, 1052, 1054))
def test_runtime_weights_on_icarus_equal_golden(seed, tmp_path, monkeypatch):
    """A design with runtime weights: its memories start empty, the testbench writes every
    word of the rtl stage's weights.bin through the load port, then the images are exact.
    The rtl folder is given relative to the working directory, as `make hw`'s build/ is
    (the testbench runs in another folder)."""
    g = random_graph(seed, binary=True)
    save_graph(g, tmp_path / "ir")
    man = write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=_pes(seed), run_lint=False,
                    progress=lambda *a, **k: None, weights="runtime")
    assert man["params"]["weights"] == "runtime" and (tmp_path / "rtl" / "weights.bin").is_file()
    contents = lane_plan(g, _pes(seed), weights="runtime").load_contents()
    assert man["load"]["words"] == sum(len(words) for _, words in contents)
    x = random_images(g, 2, seed)
    monkeypatch.chdir(tmp_path)
    r = run_sim(Path("rtl"), g, x, Path("sim"), "icarus", traced=[0], log=lambda *a, **k: None)
    assert r["rtl_matches_golden"] and r["agree"] == 2 and r["cycles_equal_model"]


# residual (version-2) IRs, run as their chain form: 7 on the lane datapath and 3 on the
# bitpar one per default run, the rest of the 40 in `make test-slow`
DAG_SEEDS = [s for s in range(2000, 2300) if not random_graph(s, binary=True, residual=True).is_chain][:40]


# bitpar: the designs of at most 4 lanes by default (a 32-lane design takes 30 s on Icarus)
BITPAR_DAG_SEEDS = sorted(DAG_SEEDS[28:], key=lambda s: ((1, 2, 4, 8, 32)[s % 5] > 4, s))


@pytest.mark.parametrize("seed,datapath", sampled([(s, "lane") for s in DAG_SEEDS[:28]], 7) +
                         sampled([(s, "bitpar") for s in BITPAR_DAG_SEEDS], 3))
def test_random_residual_ir_on_icarus_equals_golden(seed, datapath, tmp_path):
    """Skip inputs carried by copy neurons (ir/chain.py): scores, the spike trains of every
    layer (copies included), cycles and counters equal to the golden and cycle models of
    the chain form, whose scores are the residual IR's."""
    g = random_graph(seed, binary=True, residual=True)
    pes = (1, 2, 3, 4, 8)[seed % 5] if datapath == "lane" else (1, 2, 4, 8, 32)[seed % 5]
    r = _regress(g, seed, pes, tmp_path, run_lint=False, datapath=datapath)
    assert r["datapath"] == datapath
    x = random_images(g, 2, seed)
    assert np.array_equal(run(chain_form(g), x).scores, run(g, x).scores)      # the chain's scores are the DAG's


# transformer IRs (residuals and spiking self-attention): their accelerator prefix (ir/prefix.py),
# up to and with the fused Q, K, V projection; 4 lane and 2 bitpar per default run, 16 in all
ATTN_DAG_SEEDS = [s for s in range(2000, 2400)
                  if any(l.kind == "attention" for l in random_graph(s, binary=True, residual=True, attention=True).layers)][:16]


@pytest.mark.parametrize("seed,datapath", sampled([(s, "lane") for s in ATTN_DAG_SEEDS[:11]], 4) +
                         sampled([(s, "bitpar") for s in sorted(ATTN_DAG_SEEDS[11:], key=lambda s: ((1, 2, 4, 8, 32)[s % 5] > 4, s))], 2))
def test_random_transformer_irs_prefix_on_icarus_equals_golden(seed, datapath, tmp_path):
    """The RTL of a transformer IR runs everything before its attention layer, Q, K and V
    fused: scores (per-channel spike counts), spike trains, cycles and counters equal to the
    golden and cycle models of that prefix; the results name what is left out."""
    g = random_graph(seed, binary=True, residual=True, attention=True)
    pes = (1, 2, 3, 4, 8)[seed % 5] if datapath == "lane" else (1, 2, 4, 8, 32)[seed % 5]
    r = _regress(g, seed, pes, tmp_path, run_lint=False, datapath=datapath)
    assert r["accelerator_prefix"]["left_out"][0] == "attn" and r["accuracy_rtl"] is None
    assert "attn_q_attn_k_attn_v" in r["counters_summed"]
