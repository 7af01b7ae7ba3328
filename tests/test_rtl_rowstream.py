"""The rowstream accelerator in Amaranth simulation against the golden interpreter (scores and
every layer's spike trains, through the trace port) and its cycle model (total cycles and
every status counter), on random fully connected IRs (binary and 4- and 8-bit weights, one to
three hidden layers, every leak and reset, DynSNN-pruned neurons, T = 1 to 5); runtime
weights through the load port; its lanes against a reference model; and the refusals of what
it cannot take."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir import random_images, run
from ticketforge.ir.random import random_graph
from ticketforge.rtl.rowstream.accel import RowstreamAccelerator
from ticketforge.rtl.rowstream.cycles import LAYER_SETUP, PASS_END, SWEEP_FILL, cycle_model
from ticketforge.rtl.rowstream.lanes import MacLanes, lane_weight, pack_row
from ticketforge.rtl.rowstream.plan import plan_graph
from ticketforge.rtl.simulate import simulate

# (seed, binary, lanes): the first four alone hold 8-bit weights, three configurations of neurons,
# pruned neurons, T = 1 and a lane count that is no power of two
CASES = [(1, False, 4), (5, False, 3), (18, False, 16), (9, True, 2), (13, False, 8), (15, True, 1),
         (19, False, 5), (22, False, 4)]


def linear_graph(seed: int, binary: bool = False):
    return random_graph(seed, max_conv=0, max_linear=3, binary=binary)


def _check(seed: int, binary: bool, L: int, dense: bool = False, weights: str = "baked", n_images: int = 3):
    g = linear_graph(seed, binary)
    images = random_images(g, n_images, seed)
    acc = RowstreamAccelerator(g, L, trace=True, dense=dense, weights=weights)
    rtl = simulate(acc, images)
    gold = run(g, images, trace=True)
    model = cycle_model(acc.plan, images, gold)
    for i, (r, mdl) in enumerate(zip(rtl, model)):
        where = f"random IR seed {seed}, {L} lanes, dense {dense}, {weights} weights, image {i}"
        assert r.scores == gold.scores[i].tolist(), where
        for name, spikes in r.spikes.items():
            diff = np.argwhere(spikes != gold.spikes[name][i])
            assert not len(diff), f"{where}: layer {name} first spike mismatch at (t, neuron) {diff[0].tolist()}"
        assert r.cycles == mdl.total, where
        assert r.counters == mdl.counters, where
    return g, acc, model


@pytest.mark.parametrize("seed,binary,lanes", CASES)
def test_random_ir_equals_golden_and_cycle_model(seed, binary, lanes):
    _check(seed, binary, lanes)


def test_the_cases_hold_the_hard_ones():
    """The default cases cover what could go wrong: multi-bit and binary weights, several
    neuron configurations in one network, pruned neurons, one timestep, lanes that are no
    power of two and groups that a layer does not fill."""
    gs = [(linear_graph(s, b), L) for s, b, L in CASES[:4]]
    weighted = [[l for l in g.layers if l.has_weights] for g, _ in gs]
    assert any(l.weight_bits == 8 for ls in weighted for l in ls)
    assert any(all(l.weight_bits == 2 for l in ls) for ls in weighted)
    assert any(len({l.neuron for l in ls if l.neuron}) >= 2 for ls in weighted)
    assert any((g.tensor(l, "neuron_mask") == 0).any() for (g, _), ls in zip(gs, weighted) for l in ls if l.neuron)
    assert any(g.T == 1 for g, _ in gs)
    assert any(L & (L - 1) for _, L in gs)
    assert any(l.out_shape[0] % L for (_, L), ls in zip(gs, weighted) for l in ls)


@pytest.mark.parametrize("seed,binary,lanes", [(1, False, 4), (4, True, 2)])
def test_dense_variant_equals_golden_and_cycle_model(seed, binary, lanes):
    g, acc, model = _check(seed, binary, lanes, dense=True, n_images=2)
    first = acc.plan.layers[0]
    # every pixel is an event: the first layer's pass is the same for every image
    assert {m.counters[first.name]["row_reads"] for m in model} == {first.groups * acc.plan.n_pix}


@pytest.mark.parametrize("seed,binary,lanes", [(1, False, 4), (18, False, 16)])
def test_runtime_weights_equal_golden_and_cycle_model(seed, binary, lanes):
    _, acc, _ = _check(seed, binary, lanes, weights="runtime", n_images=2)
    assert [d["name"] for d in acc.loadable] == ["rows", "params"]
    rows = dict((d["name"], w) for d, w in acc.load_contents())["rows"]
    assert len(rows) == acc.plan.rows


def test_the_sweeps_overlap_the_next_passes():
    """The closed forms of the two machines on the first layer (docs/RTL.md): when its
    passes are longer than its sweeps, a group costs its pass, PASS_END and the handoff, and
    only the last group's sweeps are seen; when every pass is empty (an image with no pixel)
    each handoff waits for the previous group's sweeps."""
    g = linear_graph(9, True)                   # T = 1, one hidden layer
    L = 2
    S = g.T * (L + SWEEP_FILL)                  # B's cycles per handoff of the first layer
    images = random_images(g, 2, 9)
    images[1] = 0
    dense = plan_graph(g, L, dense=True)        # every pixel an event: n_pix per pass
    assert dense.n_pix + PASS_END >= S
    hidden = dense.layers[0]
    m = cycle_model(dense, images[:1], run(g, images[:1], trace=True))[0]
    assert m.per_layer[hidden.name] == LAYER_SETUP + hidden.groups * (dense.n_pix + PASS_END + 1) + S + 1
    sparse = plan_graph(g, L)
    m = cycle_model(sparse, images[1:], run(g, images[1:], trace=True))[0]
    assert m.counters[hidden.name]["row_reads"] == 0
    assert m.per_layer[hidden.name] == LAYER_SETUP + PASS_END + 1 + hidden.groups * (S + 1)


class LanesModel:
    def __init__(self, L):
        self.acc = [0] * L
        self.shadow = [0] * L

    def step(self, value, weights, add, clear, handoff, rotate):
        self.acc = [(0 if clear else a) + (value * w if add else 0) for a, w in zip(self.acc, weights)]
        if handoff:
            self.shadow = list(self.acc)
        elif rotate:
            self.shadow = self.shadow[1:] + self.shadow[:1]


@pytest.mark.parametrize("L,B,vbits", [(1, 2, 1), (3, 4, 8), (16, 4, 8), (5, 8, 8)])
def test_mac_lanes_equal_the_model(L, B, vbits):
    rng = np.random.default_rng(L * 100 + B)
    dut = MacLanes(L, B, vbits, 24)
    model = LanesModel(L)
    top = (1 << (B - 1)) - 1

    async def bench(ctx):
        for k in range(150):
            value = int(rng.integers(0, 1 << vbits))
            weights = [int(w) for w in rng.integers(-top, top + 1, L)]
            word = pack_row(weights, B)
            assert [lane_weight(word, j, B) for j in range(L)] == weights
            add, clear = bool(rng.random() < 0.8), bool(rng.random() < 0.1)
            handoff, rotate = bool(rng.random() < 0.15), bool(rng.random() < 0.5)
            ctx.set(dut.value, value)
            ctx.set(dut.weights, word)
            ctx.set(dut.add, add)
            ctx.set(dut.clear, clear)
            ctx.set(dut.handoff, handoff)
            ctx.set(dut.rotate, rotate)
            await ctx.tick()
            model.step(value, weights, add, clear, handoff, rotate)
            assert ctx.get(dut.head) == model.shadow[0], f"cycle {k}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_what_it_cannot_take_is_refused_by_name():
    with pytest.raises(UnsupportedError, match="fully connected networks .* layer 'conv0' is conv"):
        RowstreamAccelerator(random_graph(1), 4)
    with pytest.raises(UnsupportedError, match="takes pixel images .* input is events"):
        RowstreamAccelerator(random_graph(1, max_conv=0, events=True), 4)
    g = linear_graph(2)
    with pytest.raises(UsageError, match=r"lane count must be in \[1, 64\], got 65"):
        RowstreamAccelerator(g, 65)
    readout_only = g.with_layers([l for l in g.layers if l.kind in ("flatten", "output")])
    with pytest.raises(UnsupportedError, match="at least one hidden linear layer"):
        RowstreamAccelerator(readout_only, 4)


def test_cli_refuses_what_the_rowstream_datapath_has_not_before_any_work(tmp_path, capsys):
    from ticketforge.cli import main

    base = ["rtl", "--config", "mnist_up5k", "--build-dir", str(tmp_path), "--datapath", "rowstream"]
    assert main(base + ["--pes", "65"]) == 2
    assert "lane count of the rowstream datapath: in [1, 64], got 65" in capsys.readouterr().err
    assert main(base + ["--pes", "4", "--fifo-depth", "8"]) == 2
    assert "no event FIFOs" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())                 # nothing written


def test_memory_style_block_keeps_the_same_cycle_read_out_of_block_ram():
    """The scores are read in the cycle the OUT stream shows them, which a block RAM cannot:
    "block" maps every other memory there and leaves that one to synthesis."""
    from amaranth.back import rtlil

    acc = RowstreamAccelerator(linear_graph(1), 4, memory_style="block")
    rtlil.convert(acc)
    styles = {m["name"]: m["style"] for m in acc.memories}
    assert styles == {"list0": "block", "list1": "block", "rows": "block", "params": "block", "scores": "auto"}
