"""The whole accelerator in Amaranth simulation against the golden interpreter (scores and
every layer's spike trains) and the cycle model (total cycles and every status counter),
on random binary-weight IRs from the fuzz generator."""
import numpy as np
import pytest

from ticketforge.model.ir import IRError, random_images, run
from ticketforge.model.ir.random import random_graph
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl.cycles import cycle_model
from ticketforge.rtl.program import map_graph
from ticketforge.rtl.simulate import simulate

SPARSE_SEEDS = range(30)
DENSE_SEEDS = (4, 5, 7, 8, 18, 19)


def _pes(seed: int) -> int:
    return (1, 3, 4, 4, 16)[seed % 5]


def _check(seed: int, P: int, dense: bool, n_images: int = 2):
    g = random_graph(seed, binary=True)
    images = random_images(g, n_images, seed)
    acc = Accelerator(g, P, dense=dense, trace=True)
    rtl = simulate(acc, images)
    gold = run(g, images, trace=True)
    model = cycle_model(g, images, P, dense=dense, gold=gold)
    for i, (r, mdl) in enumerate(zip(rtl, model)):
        where = f"seed {seed}, P {P}, dense {dense}, image {i}"
        assert r.scores == gold.scores[i].tolist(), where
        for name, spikes in r.spikes.items():
            diff = np.argwhere(spikes != gold.spikes[name][i])
            assert not len(diff), f"{where}: layer {name} first spike mismatch at (t, neuron) {diff[0].tolist()}"
        assert r.cycles == mdl.total, where
        assert r.counters == mdl.counters, where


@pytest.mark.parametrize("seed", SPARSE_SEEDS)
def test_random_ir_equals_golden_and_cycle_model(seed):
    _check(seed, _pes(seed), dense=False)


@pytest.mark.parametrize("seed", DENSE_SEEDS)
def test_dense_variant_equals_golden_and_cycle_model(seed):
    _check(seed, _pes(seed), dense=True)


def test_the_seeds_cover_the_hard_cases():
    """The regression is only as good as what its IRs contain: pruned neurons, a fully
    pruned layer, sources whose synapses are all masked (no rows), layers that emit no
    spike, membranes that saturate, soft reset, fixed leak, stride 2, pooling."""
    seen = set()
    for seed in SPARSE_SEEDS:
        g = random_graph(seed, binary=True)
        r = run(g, random_images(g, 2, seed), trace=True, measure_range=True)
        prog = map_graph(g, _pes(seed))
        for l in g.layers:
            if l.kind in ("conv", "linear"):
                keep = g.tensor(l, "neuron_mask")
                seen |= {"pruned"} if keep.min() == 0 else set()
                seen |= {"empty layer"} if keep.max() == 0 else set()
                seen |= {"silent layer"} if (r.spikes[l.name].reshape(2, -1).sum(1) == 0).any() else set()
                lo, hi = r.h_range.get(l.name, (0, 0))
                seen |= {"saturation"} if lo < l.neuron.vmin or hi > l.neuron.vmax else set()
                seen |= {f"reset {l.neuron.reset}", f"leak {l.neuron.leak}"}
            seen |= {"stride 2"} if l.kind == "conv" and l.stride == 2 else set()
            seen |= {"pool"} if l.kind == "pool" else set()
        seen |= {"masked rows"} if any(lp.rowptr is not None and (lp.rowptr[:, 1] == 0).any()
                                       for lp in prog.layers) else set()
    assert seen >= {"pruned", "empty layer", "silent layer", "saturation", "reset hard", "reset soft",
                    "leak none", "leak shift", "leak fixed", "stride 2", "pool", "masked rows"}, seen


def test_constructor_checks_name_the_problem():
    g = random_graph(3, binary=True)
    with pytest.raises(IRError, match="number of PEs"):
        Accelerator(g, 0)
    with pytest.raises(IRError, match=r"got 'x'"):
        Accelerator(g, "x")
    with pytest.raises(TypeError, match="dense and trace"):
        Accelerator(g, 4, dense="yes")
    g4 = random_graph(2)                               # seed 2 has a 4-bit readout
    with pytest.raises(IRError, match=r"layer 'out': weight_bits 4"):
        Accelerator(g4, 4)


def test_sparse_skips_work_that_dense_does():
    g = random_graph(7, binary=True)
    x = random_images(g, 2, 7)
    s, d = cycle_model(g, x, 4), cycle_model(g, x, 4, dense=True)
    for a, b in zip(s, d):
        assert a.total < b.total
        for name in a.counters:
            assert a.counters[name]["accumulates"] <= b.counters[name]["accumulates"]
            assert a.counters[name]["weight_reads"] <= b.counters[name]["weight_reads"]
