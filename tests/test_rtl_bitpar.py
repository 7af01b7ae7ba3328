"""The bitpar accelerator in Amaranth simulation against the golden interpreter (scores and
every layer's spike trains, through the trace port) and its cycle model (total cycles and
every status counter), on random binary-weight IRs; its lanes against a reference model;
and the refusals of what it cannot take."""
from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import sampled
from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir import load_graph, random_images, run
from ticketforge.ir.random import random_graph
from ticketforge.rtl.bitpar.accel import BitparAccelerator
from ticketforge.rtl.bitpar.cycles import cycle_model, static_cycles
from ticketforge.rtl.bitpar.lanes import LaneArray
from ticketforge.rtl.bitpar.plan import WORD, bit_index, plan_graph
from ticketforge.rtl.simulate import simulate

SEEDS = range(12)
DENSE_SEEDS = (3, 7, 12)


def _lanes(seed: int) -> int:
    # (32 lanes are the Icarus test's: their Amaranth simulation takes ~30 s an IR)
    return (1, 2, 4, 8, 16)[seed % 5]


def _check(seed: int, L: int, dense: bool = False, n_images: int = 2, binary: bool = True, events: bool = False):
    g = random_graph(seed, binary=binary, events=events)
    images = random_images(g, n_images, seed)
    acc = BitparAccelerator(g, L, trace=True, dense=dense)
    rtl = simulate(acc, images)
    gold = run(g, images, trace=True)
    model = cycle_model(acc.plan, images, gold)
    for i, (r, mdl) in enumerate(zip(rtl, model)):
        where = f"random IR seed {seed}, {L} lanes, dense {dense}, image {i}"
        assert r.scores == gold.scores[i].tolist(), where
        for name, spikes in r.spikes.items():
            diff = np.argwhere(spikes != gold.spikes[name][i])
            assert not len(diff), f"{where}: layer {name} first spike mismatch at (t, neuron) {diff[0].tolist()}"
        assert r.cycles == mdl.total, where
        assert r.counters == mdl.counters, where


@pytest.mark.parametrize("seed", sampled(SEEDS, 8))
def test_random_ir_equals_golden_and_cycle_model(seed):
    _check(seed, _lanes(seed))


# event input (the AER stream set into the first layer's bitmap), binary and multi-bit weights
EVENT_SEEDS = [(1100, True), (10, False), (1103, True), (13, False), (1101, True), (1104, True)]


@pytest.mark.parametrize("seed,binary", sampled(EVENT_SEEDS, 4))
def test_event_input_equals_golden_and_cycle_model(seed, binary):
    _check(seed, _lanes(seed), binary=binary, events=True)


# random IRs with 4- and 8-bit weights (bit-serial rows); 10 has a linear first layer (pixel
# bit planes) with dead groups
MULTI_BIT_SEEDS = (1, 4, 10, 11, 13)


@pytest.mark.parametrize("seed", MULTI_BIT_SEEDS)
def test_multi_bit_random_ir_equals_golden_and_cycle_model(seed):
    assert any(l.has_weights and l.weight_bits > 2 for l in random_graph(seed).layers)
    _check(seed, _lanes(seed), binary=False)


def test_a_weight_costs_one_row_per_magnitude_bit_it_has():
    """Bit-serial weights: each stored row adds one magnitude bit of its lanes' weights, and
    together the rows hold every weight exactly."""
    def chained(lp):            # a linear layer fed by a linear one: a row's word is channels off*32..
        return lp.kind in ("linear", "output") and not lp.first and tuple(lp.src_shape[1:]) == (1, 1)

    for seed in range(200):
        g = random_graph(seed)
        plan = plan_graph(g, 2)
        if any(chained(lp) and g.layers[lp.index].weight_bits == 8 for lp in plan.layers):
            break
    checked = 0
    for lp in plan.layers:
        l = g.layers[lp.index]
        if not chained(lp):
            continue
        checked += 1
        w = g.tensor(l, "weight").astype(np.int64).reshape(l.out_shape[0], -1)
        rebuilt = np.zeros_like(w)
        for grp, rows in enumerate(lp.steps):
            for r in rows:
                assert 0 <= r.shift < l.weight_bits - 1
                for lane in range(2):
                    o = grp * 2 + lane
                    for j in range(WORD):
                        c = r.off * WORD + j
                        if o < w.shape[0] and c < w.shape[1]:
                            rebuilt[o, c] += (((r.pos[lane] >> j) & 1) - ((r.neg[lane] >> j) & 1)) << r.shift
        assert (rebuilt == w).all(), l.name
    assert checked


@pytest.mark.parametrize("seed", DENSE_SEEDS)
def test_dense_variant_equals_golden_and_cycle_model(seed):
    _check(seed, _lanes(seed), dense=True)


def test_a_pruned_position_costs_no_step_and_the_dense_variant_runs_it():
    """A layer with pruned neurons: its dead (position, group)s run no step; the dense plan
    runs every one and stores every tap, so it is never faster."""
    for seed in range(200):
        g = random_graph(seed, binary=True)
        sp, de = plan_graph(g, 1), plan_graph(g, 1, dense=True)
        if any(lp.keep is not None and not lp.live(1).all() for lp in sp.layers):
            break
    else:
        pytest.fail("no random IR with a dead (position, group) in 200 seeds")
    a, b = static_cycles(sp), static_cycles(de)
    assert sum(v["counters"]["steps"] for v in a.values()) < sum(v["counters"]["steps"] for v in b.values())
    assert sum(v["cycles"] for v in a.values()) < sum(v["cycles"] for v in b.values())


def test_shipped_vgg9_plan_counts():
    """The shipped vgg9_binw IR on 32 lanes: the cycles are fixed by the plan (no data term),
    one step per kept (tap, 32-channel word) of each lane group."""
    g = load_graph("tests/data/vgg9_binw_ir")
    plan = plan_graph(g, 32)
    st = static_cycles(plan)
    assert [len(s) for s in plan.layers[1].steps] == [9]            # conv2: 32 -> 32, one word per tap
    assert [len(s) for s in plan.layers[3].steps] == [18, 18]        # conv4: 64 -> 64, two words per tap
    images = random_images(g, 2, 0)
    res = cycle_model(plan, images)
    assert res[0].total == res[1].total == 784 + sum(v["cycles"] for v in st.values()) + 10 + 1


def test_bit_index_is_a_permutation():
    for T in (1, 3, 4):
        for L in (1, 4, 32):
            idx = {bit_index(T, L, t, c) for t in range(T) for c in range(WORD)}
            assert idx == set(range(T * WORD))


class LanesModel:
    """The reference of LaneArray: popcounts registered one cycle, accumulated the next."""

    def __init__(self, L, T, bits, shifts=0):
        self.L, self.T, self.bits, self.shifts = L, T, bits, shifts
        self.acc = [[0] * T for _ in range(L)]
        self.pending = None

    def step(self, spikes, pixel, pos, neg, first, add, clear, shift=0):
        """The accumulators after this cycle's inputs, and this cycle's ``total``."""
        lo, span = -(1 << (self.bits - 1)), 1 << self.bits
        total = [[(self.acc[lane][t] + (self.pending[lane][t] if self.pending else 0) - lo) % span + lo
                  for t in range(self.T)] for lane in range(self.L)]
        self.acc = [[0] * self.T for _ in range(self.L)] if clear else total
        self.pending = None
        if add:
            pc = []
            for lane in range(self.L):
                row = []
                for t in range(self.T):
                    s = sum(((spikes >> bit_index(self.T, self.L, t, c)) & 1) << c for c in range(WORD))
                    if first:
                        row.append((pixel if pos[lane] & 1 else -pixel if neg[lane] & 1 else 0) << shift)
                    else:
                        row.append((bin(s & pos[lane]).count("1") - bin(s & neg[lane]).count("1")) << shift)
                pc.append(row)
            self.pending = pc
        return total, [row[:] for row in self.acc]


@pytest.mark.parametrize("L,T,shifts", [(1, 1, 0), (4, 3, 0), (8, 2, 0), (2, 2, 8), (4, 2, 14)])
def test_lane_array_equals_the_model(L, T, shifts):
    rng = np.random.default_rng(L * 10 + T + shifts)
    bits = 24
    dut = LaneArray(L, T, bits, shifts=shifts)
    model = LanesModel(L, T, bits, shifts)
    n = 120

    def word(b):
        return int.from_bytes(rng.bytes(24), "little") & ((1 << b) - 1)

    async def bench(ctx):
        for k in range(n):
            spikes, pixel = word(T * WORD), int(rng.integers(0, 256))
            pos = [word(WORD) for _ in range(L)]
            neg = [word(WORD) & ~p for p in pos]
            first, add, clear = bool(rng.random() < 0.3), bool(rng.random() < 0.8), bool(rng.random() < 0.05)
            shift = int(rng.integers(0, shifts)) if shifts > 1 else 0
            if shifts > 1:
                ctx.set(dut.shift, shift)
            ctx.set(dut.spikes, spikes)
            ctx.set(dut.pixel, pixel)
            ctx.set(dut.weights, [{"pos": p, "neg": q} for p, q in zip(pos, neg)])
            ctx.set(dut.first, first)
            ctx.set(dut.add, add)
            ctx.set(dut.clear, clear)
            total, acc = model.step(spikes, pixel, pos, neg, first, add, clear, shift)
            assert [[ctx.get(dut.total[lane][t]) for t in range(T)] for lane in range(L)] == total, f"cycle {k}"
            await ctx.tick()
            assert [[ctx.get(dut.acc[lane][t]) for t in range(T)] for lane in range(L)] == acc, f"cycle {k}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_what_it_cannot_take_is_refused_by_name():
    g = random_graph(1, binary=True)
    with pytest.raises(UsageError, match="lanes must be one of 1, 2, 4, 8, 16, 32 .* got 3"):
        BitparAccelerator(g, 3)
    wide = g.with_layers([replace(l, weight_bits=12) if l.has_weights else l for l in g.layers])
    with pytest.raises(UnsupportedError, match="takes weights of 2 to 8 bits, got 12"):
        BitparAccelerator(wide, 4)
    with pytest.raises(ValueError, match="acc_bits must be an integer >= 10, got 4"):
        LaneArray(2, 2, 4)


def test_cli_refuses_what_the_bitpar_datapath_has_not_before_any_work(tmp_path, capsys):
    from ticketforge.cli import main

    base = ["rtl", "--config", "mlp_binw_tiny", "--build-dir", str(tmp_path), "--datapath", "bitpar"]
    assert main(base + ["--pes", "3"]) == 2
    assert "lane count of the bitpar datapath: one of 1, 2, 4, 8, 16, 32, got 3" in capsys.readouterr().err
    assert main(base + ["--pes", "4", "--fifo-depth", "8"]) == 2
    assert "no event FIFOs" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())                 # nothing written


@pytest.mark.parametrize("seed,binary", [(1, True), (8, True), (12, False)])
def test_runtime_weights_one_design_runs_two_tickets(seed, binary):
    """Runtime weights: the design of a ticket's architecture is the same netlist for another
    ticket of that architecture (same RTLIL), and with the other ticket's tables loaded it
    equals that ticket's golden model and cycle model."""
    from amaranth.back import rtlil

    from ticketforge.ir import random_ticket_like
    from ticketforge.rtl.bitpar.capacity import capacity_of

    L = _lanes(seed)
    a = random_graph(seed, binary=binary)
    b = random_ticket_like(a, seed + 100)
    acc_a = BitparAccelerator(a, L, trace=True, weights="runtime")
    acc_b = BitparAccelerator(b, L, trace=True, weights="runtime", capacity=capacity_of(a, L))
    assert rtlil.convert(acc_a, name="core") == rtlil.convert(acc_b, name="core")
    images = random_images(b, 2, seed)
    rtl = simulate(acc_a, images, load=acc_b.load_contents())
    gold = run(b, images, trace=True)
    for i, (r, mdl) in enumerate(zip(rtl, cycle_model(acc_b.plan, images, gold))):
        assert r.scores == gold.scores[i].tolist(), f"seed {seed} image {i}"
        for name, spikes in r.spikes.items():
            assert (spikes == gold.spikes[name][i]).all(), f"seed {seed} image {i} layer {name}"
        assert (r.cycles, r.counters) == (mdl.total, mdl.counters), f"seed {seed} image {i}"


def test_a_ticket_of_another_architecture_is_refused_naming_what_differs():
    from ticketforge.rtl.bitpar.capacity import capacity_of, fit_problems

    a = random_graph(4, binary=True)
    cap = capacity_of(a, 4)
    assert fit_problems(cap, a) == []
    lay = next(l for l in a.layers if l.neuron is not None)
    wider = a.with_layers([replace(l, neuron=replace(l.neuron, membrane_bits=l.neuron.membrane_bits + 2))
                           if l is lay else l for l in a.layers])
    with pytest.raises(UnsupportedError, match=rf"layer '{lay.name}': neuron membrane_bits .*over by 2 bits"):
        BitparAccelerator(wider, 4, weights="runtime", capacity=cap)
    other = random_graph(5, binary=True)
    assert fit_problems(cap, other)
    smaller = replace(cap, rows=tuple(max(0, r - 1) for r in cap.rows))
    problems = fit_problems(smaller, a)
    assert any("step rows" in p and "over by" in p for p in problems), problems


def test_an_imported_nir_network_runs_on_the_accelerator():
    """A NIR graph (conv, LIF, scale, sum pool folded into the fc, spiking readout) imported
    with 6-bit weights: the accelerator equals its golden model and cycle model."""
    from test_nir_import import DT, conv_net

    from ticketforge.ir import LOWERING_PASSES, size_membranes, validate
    from ticketforge.model.nir_import import float_graph, nir_blocks

    in_shape, blocks = nir_blocks(conv_net(2), DT)
    g = float_graph(in_shape, blocks, (1, 8, 8), 3, 6, "soft", 255, {})
    for p in LOWERING_PASSES:
        g = p(g) if p.__name__ != "integerize" else p(g, precision_bits=8)
    images = np.random.default_rng(1).integers(0, 256, (16, 1, 8, 8)).astype(np.uint8)
    g = validate(size_membranes(g, images))
    acc = BitparAccelerator(g, 4, trace=True)
    rtl = simulate(acc, images[:2])
    gold = run(g, images[:2], trace=True)
    for i, (r, mdl) in enumerate(zip(rtl, cycle_model(acc.plan, images[:2], gold))):
        assert r.scores == gold.scores[i].tolist()
        assert (r.cycles, r.counters) == (mdl.total, mdl.counters)
        for name, spikes in r.spikes.items():
            assert (spikes == gold.spikes[name][i]).all(), name
