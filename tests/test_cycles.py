"""The accelerator's mapping and cycle model (rtl/program.py, rtl/cycles.py)."""
import numpy as np
import pytest

from ticketforge.errors import UsageError
from ticketforge.ir import random_graph, random_images, run, validate
from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron
from ticketforge.rtl.cycles import ACC_DRAIN, LOAD_EXTRA, READ_LATENCY, UPD_DRAIN, cycle_model
from ticketforge.rtl.program import map_graph


def _tiny():
    t = {"fc.weight": np.array([[1, -1, 1, 1], [1, 1, -1, 1], [-1, 1, 1, 1]], np.int8),
         "fc.mask": np.ones((3, 4), np.uint8), "fc.bias": np.zeros(3, np.int64),
         "fc.threshold": np.array([50, 50, 50], np.int64), "fc.neuron_mask": np.ones(3, np.uint8),
         "out.weight": np.array([[1, -1, 1], [-1, 1, 1]], np.int8), "out.mask": np.ones((2, 3), np.uint8)}
    layers = (Layer("flat", "flatten", (1, 1, 4), (4,)),
              Layer("fc", "linear", (4,), (3,), weight_bits=2, neuron=Neuron(membrane_bits=12),
                    tensors={k.split(".")[1]: k for k in t if k.startswith("fc.")}),
              Layer("out", "output", (3,), (2,), weight_bits=2, tensors={"weight": "out.weight", "mask": "out.mask"}))
    return validate(Graph(T=1, input=InputSpec((1, 1, 4)), layers=layers, tensors=t))


def test_hand_computed_cycles():
    g = _tiny()
    img = np.array([[[[200, 0, 90, 0]]]], np.uint8)          # 2 input events
    spikes = int(run(g, img, trace=True).spikes["fc"].sum())
    c = cycle_model(g, img, P=2)[0]
    # fc: PE0 holds units 0 and 2, PE1 unit 1 -> 2 rows per input event; update 2 cycles
    fc = 1 + (READ_LATENCY + 1 + 2 * 2) + ACC_DRAIN + 2 + UPD_DRAIN
    # out: one row per spike (classes 0 and 1 on PEs 0 and 1)
    out = 1 + ((READ_LATENCY + 1 + spikes) if spikes else 1) + ACC_DRAIN
    assert c.per_layer["fc"] == fc and c.per_layer["out"] == out
    assert c.total == 4 + LOAD_EXTRA + fc + out + 1 + 2      # load, layers, next-timestep, scores
    assert c.synaptic_events == 2 * 3 + spikes * 2 and c.neuron_updates == 3
    # PE 0 walks 2 lanes an event, PE 1 one (it waits for nothing: the row streams are per
    # PE); a weight read is one synapse word: PE 0's two lanes (slots 0 and 1) share one, so
    # 2 per event
    assert c.counters["fc"] == {"accumulates": 6, "weight_reads": 4, "membrane_reads": 6 + 3,
                                "membrane_writes": 6 + 3, "neuron_updates": 3, "spikes": spikes}


@pytest.mark.parametrize("seed", range(20))
def test_model_properties_on_random_irs(seed):
    g = random_graph(seed)                       # binary and 2- to 8-bit weights alike
    x = random_images(g, 3, seed)
    for P in (1, 3, 8):
        sparse = cycle_model(g, x, P)
        dense = cycle_model(g, x, P, dense=True)
        for s, d in zip(sparse, dense):
            assert s.total <= d.total
            assert s.total >= s.ideal_bound
            assert s.synaptic_events == d.synaptic_events


def test_pruned_neurons_get_no_slot():
    g = _tiny()
    t = dict(g.tensors)
    t["fc.neuron_mask"] = np.array([1, 0, 1], np.uint8)
    g2 = g.with_layers(g.layers, t)
    m = map_graph(g2, 2).layer("fc")
    assert m.n_slots.sum() == 2 and m.update_cycles == 1
    assert map_graph(g2, 2, dense=True).layer("fc").n_slots.sum() == 3


def test_bad_pe_count():
    with pytest.raises(UsageError, match="number of PEs"):
        map_graph(_tiny(), 0)


@pytest.mark.parametrize("cout,classes,P", [(64, 2, 64), (32, 4, 64), (128, 1, 64), (32, 2, 16), (6, 4, 3), (5, 2, 4)])
def test_place_groups_spreads_channels_and_ranks_are_dense(cout, classes, P):
    from ticketforge.rtl.program import place_groups

    pe, rank = place_groups(cout, classes, P)
    o = np.arange(cout * classes) % cout
    for p in range(P):
        on = np.flatnonzero(pe == p)
        assert sorted(rank[on]) == list(range(len(on)))          # a PE's ranks are 0..n-1
        if len(on) <= cout and cout * classes % P == 0:
            assert len(set(o[on])) == len(on), (p, o[on])           # different channels
    if cout * classes % P == 0:
        assert np.bincount(pe, minlength=P).min() == cout * classes // P   # balanced


def test_position_classes_give_every_pe_two_groups():
    """64 channels on 64 PEs get two position classes (each PE then holds two different
    channels, see place_groups); 128 channels need none; 32 channels get four."""
    from ticketforge.rtl.program import GROUPS_PER_PE, position_classes

    assert GROUPS_PER_PE == 2
    assert position_classes(64, 64) == (1, 2) and position_classes(128, 64) == (1, 1)
    assert position_classes(32, 64) == (2, 2) and position_classes(64, 16) == (1, 1)


def test_cycle_overhead_bench_splits_the_whole_gap(tmp_path):
    """bench/cycle_overhead.py (which reads the cycle model's own pieces) on the shipped
    vgg9_binw IR: its cycles are the model's and each part of the gap sits where it should."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from ticketforge.ir import load_graph

    root = Path(__file__).parent.parent
    ir = tmp_path / "ir"
    shutil.copytree(root / "tests" / "data" / "vgg9_binw_ir", ir)
    g = load_graph(ir)
    codes = random_images(g, 2, 7)
    np.savez(ir / "test_inputs.npz", codes=codes, labels=np.zeros(2, np.int64))
    out = subprocess.run([sys.executable, str(root / "bench" / "cycle_overhead.py"), str(ir), "--images", "2"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    summary = json.loads(out[-1])
    model = cycle_model(g, codes, 16)
    assert summary["cycles_per_image"] == pytest.approx(np.mean([c.total for c in model]), abs=0.1)
    gap = summary["gap"]
    assert gap["pe_imbalance"] >= 0 and gap["fifo_credit"] >= 0 and gap["pools"] > 0
    # the rest holds what no other part counts, LOAD's one cycle per pixel among it
    assert gap["rest"] >= int(np.prod(g.input.shape))
    assert len(out) == 1 + sum(l.has_weights for l in g.layers)


def test_latency_budget_bench_reports_both_cycle_models(tmp_path):
    """bench/latency_budget.py on a random IR: its cycles are the lane and bitpar cycle
    models', and a figure is bold exactly when it is within the budget."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from ticketforge.ir import save_graph
    from ticketforge.rtl.bitpar.cycles import cycle_model as bitpar_cycle_model
    from ticketforge.rtl.bitpar.plan import plan_graph

    root = Path(__file__).parent.parent
    g = random_graph(1000, binary=True)
    ir = tmp_path / "ir"
    save_graph(g, ir)
    codes = random_images(g, 3, 5)
    np.savez(ir / "test_inputs.npz", codes=codes, labels=np.zeros(3, np.int64))
    (ir / "metrics.json").write_text(json.dumps({"accuracy_float": 0.5, "accuracy_integer": 0.25}))
    lane = [np.mean([c.total for c in cycle_model(g, codes, p)]) for p in (2, 4, 8)]
    bitpar = [np.mean([c.total for c in bitpar_cycle_model(plan_graph(g, n), codes)]) for n in (2, 4, 8, 16)]
    budget = sorted(lane + bitpar)[3]                     # some within it, some not
    out = subprocess.run([sys.executable, str(root / "bench" / "latency_budget.py"), str(ir), "--images", "3",
                          "--clock-mhz", "1", "--budget-us", str(budget)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    cells = [c.strip() for c in out[-1].strip("|").split("|")]
    assert cells[3:5] == ["50.0", "25.0"]
    for cell, cycles in zip(cells[7:], lane + bitpar):
        assert cell.strip("*") == f"{cycles:,.0f}" and cell.startswith("**") == (cycles <= budget), (cell, cycles)
    # --up5k: lane P = 1 too, then per P = 1, 2, 4 the SPRAMs of the PEs' synapse words
    # (ceil(width / 16) each) and the block RAMs, bold when both fit the UP5K
    from ticketforge.rtl.lane.plan import lane_plan

    out = subprocess.run([sys.executable, str(root / "bench" / "latency_budget.py"), str(ir), "--images", "3",
                          "--up5k"], capture_output=True, text=True, check=True).stdout.splitlines()
    cells = [c.strip() for c in out[-1].strip("|").split("|")]
    assert cells[7].strip("*") == f"{np.mean([c.total for c in cycle_model(g, codes, 1)]):,.0f}"
    for cell, p in zip(cells[-4:-1], (1, 2, 4)):
        spram, ebr = (int(v) for v in cell.strip("*").split(" / "))
        rows = [m for m in lane_plan(g, p, weights="runtime").memories if m["name"].endswith("_rows")]
        assert len(rows) == p and spram == sum(-(-m["width"] // 16) for m in rows), (cell, p)
        assert cell.startswith("**") == (spram <= 4 and ebr <= 30), cell
    assert cells[15] == "-" and cells[-1] == "-"         # a conv IR: no rowstream design
    # a fully connected IR: the rowstream cycles at 16 lanes, and its rows' SPRAMs
    from ticketforge.rtl.rowstream.cycles import cycle_model as rowstream_cycle_model
    from ticketforge.rtl.rowstream.plan import plan_graph as rowstream_plan

    fc = random_graph(1, max_conv=0, max_linear=3)
    save_graph(fc, ir)
    codes = random_images(fc, 3, 5)
    np.savez(ir / "test_inputs.npz", codes=codes, labels=np.zeros(3, np.int64))
    out = subprocess.run([sys.executable, str(root / "bench" / "latency_budget.py"), str(ir), "--images", "3",
                          "--up5k"], capture_output=True, text=True, check=True).stdout.splitlines()
    cells = [c.strip() for c in out[-1].strip("|").split("|")]
    want = np.mean([c.total for c in rowstream_cycle_model(rowstream_plan(fc, 16), codes)])
    assert cells[15].strip("*") == f"{want:,.0f}"
    # its rows: 16 lanes of the widest layer's weight bits, 16 bits to an SPRAM (one is deep enough)
    bits = max(l.weight_bits for l in fc.layers if l.has_weights)
    spram, ebr = (int(v) for v in cells[-1].strip("*").split(" / "))
    assert spram == 16 * bits // 16 and cells[-1].startswith("**") == (spram <= 4 and ebr <= 30)
