"""The whole accelerator in Amaranth simulation against the golden interpreter (scores and
every layer's spike trains) and the cycle model (total cycles and every status counter),
on random IRs from the fuzz generator: binary weights, and 2- to 8-bit ones."""
import numpy as np
import pytest

from conftest import sampled
from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir import random_images, run
from ticketforge.ir.random import random_graph, signs_only
from ticketforge.rtl.accel import Accelerator, bram18_blocks
from ticketforge.rtl.cycles import MIN_FIFO_DEPTH, cycle_model
from ticketforge.rtl.lane.plan import lane_plan
from ticketforge.rtl.program import map_graph
from ticketforge.rtl.simulate import simulate

SPARSE_SEEDS = range(30)
DEFAULT_SPARSE = 15       # the first 15 in the default suite (they hold every hard case), all 30 in make test-slow
DENSE_SEEDS = (5, 7, 8, 4, 18, 19)     # the first three in the default suite (conftest.sampled)


def _pes(seed: int) -> int:
    return (1, 3, 4, 4, 16)[seed % 5]


def _check(seed: int, P: int, dense: bool, n_images: int = 2, fifo_depth: int | None = None,
           events: bool = False, binary: bool = True):
    g = random_graph(seed, binary=binary, events=events)
    images = random_images(g, n_images, seed)
    acc = Accelerator(g, P, dense=dense, trace=True, fifo_depth=fifo_depth)
    rtl = simulate(acc, images)
    gold = run(g, images, trace=True)
    model = cycle_model(g, images, P, dense=dense, gold=gold, fifo_depth=fifo_depth)
    for i, (r, mdl) in enumerate(zip(rtl, model)):
        where = f"seed {seed}, P {P}, dense {dense}, FIFO depth {acc.fifo_depth}, image {i}"
        assert r.scores == gold.scores[i].tolist(), where
        for name, spikes in r.spikes.items():
            diff = np.argwhere(spikes != gold.spikes[name][i])
            assert not len(diff), f"{where}: layer {name} first spike mismatch at (t, neuron) {diff[0].tolist()}"
        assert r.cycles == mdl.total, where
        assert r.counters == mdl.counters, where


@pytest.mark.parametrize("seed", sampled(SPARSE_SEEDS, DEFAULT_SPARSE))
def test_random_ir_equals_golden_and_cycle_model(seed):
    _check(seed, _pes(seed), dense=False)


# seeds whose multi-bit IRs spike in every layer on their images (most random multi-bit IRs
# stay silent): 4- and 8-bit conv layers on 8-bit pixels (23, 13, 64), 4- and 8-bit layers
# behind binary ones (3, 12, 61); magnitudes of 3 to 7 bits in the words
MULTI_BIT_SEEDS = (3, 12, 13, 23, 61, 64)


@pytest.mark.parametrize("seed", MULTI_BIT_SEEDS)
def test_multi_bit_weights_equal_golden_and_cycle_model(seed):
    """2- to 8-bit weights: each synapse word carries its synapses' magnitudes, the PE adds
    value x |weight| (a multiply only for the first layer's pixels); a kept synapse whose
    integer weight is 0 has no lane, in the hardware and in the cycle model alike."""
    g = random_graph(seed)
    assert any(l.has_weights and l.weight_bits > 2 for l in g.layers)
    _check(seed, _pes(seed), dense=False, binary=False)
    if seed in (3, 13):
        _check(seed, _pes(seed), dense=True, binary=False)


def test_binary_words_store_no_magnitude():
    """Binary weights (-1, 0, +1) need no magnitude: their words and lanes have no such field,
    so binary designs are the netlists they were; a multi-bit design's words grow by W
    magnitudes of the largest weight's bits (against the same network's signs)."""
    multi = lane_plan(random_graph(13), 4)
    binary = lane_plan(signs_only(multi.graph), 4)
    assert binary.mag_bits == 0 and "mag" not in dict(binary.word) and "mag" not in dict(binary.lane)
    top = max(int(abs(multi.graph.tensor(l, "weight")).max()) for l in multi.graph.layers if l.has_weights)
    assert multi.mag_bits == (top - 1).bit_length() == 7
    assert multi.word["mag"].width == multi.W * 7 and multi.word.size == binary.word.size + multi.W * 7
    # the multi-bit seeds hold kept synapses whose weight is 0, which must cost no lane
    def zero_kept(g):
        return any(((g.tensor(l, "mask") == 1) & (g.tensor(l, "weight") == 0)).any() for l in g.layers if l.has_weights)
    assert sum(zero_kept(random_graph(seed)) for seed in MULTI_BIT_SEEDS) >= 3


EVENT_SEEDS = range(12)


@pytest.mark.parametrize("seed", sampled(EVENT_SEEDS, 6))
def test_event_input_equals_golden_and_cycle_model(seed):
    """An ``events`` input as an AER stream (rtl/aer.py): each timestep's events into the
    first layer's queue; scores, spike trains, cycles and counters as the golden model and
    the cycle model say."""
    _check(seed, _pes(seed), dense=False, events=True)


def test_event_input_takes_an_empty_timestep_and_a_full_one():
    g = random_graph(3, binary=True, events=True)
    frames = random_images(g, 2, 3)
    frames[0, 0] = 0                                  # a timestep without events: one step word
    frames[1, -1] = 1                                 # every position at once: the queue's depth
    acc = Accelerator(g, 3, trace=True)
    rtl, gold = simulate(acc, frames), run(g, frames, trace=True)
    model = cycle_model(g, frames, 3, gold=gold)
    assert [r.scores for r in rtl] == gold.scores.tolist()
    assert [r.cycles for r in rtl] == [c.total for c in model]


def test_event_input_has_no_dense_lane_design():
    g = random_graph(3, binary=True, events=True)
    with pytest.raises(UnsupportedError, match="no dense"):
        Accelerator(g, 2, dense=True)


def test_a_row_pointer_one_past_the_last_row_fits_its_field():
    """Seed 280 (found by bench/soak.py): the readout's sources hold no synapse word, so their
    row pointers point one past the last row; the field is sized for the largest pointer."""
    _check(280, 1, dense=False, n_images=3)


@pytest.mark.parametrize("seed", sampled(DENSE_SEEDS, 3))
def test_dense_variant_equals_golden_and_cycle_model(seed):
    _check(seed, _pes(seed), dense=True)


@pytest.mark.parametrize("seed,P,depth", sampled([(s, P, MIN_FIFO_DEPTH + d) for s in (1, 6, 4, 12, 19)
                                                   for P, d in ((3, 0), (4, 1), (16, 2))], 6))
def test_shallow_fifos_equal_golden_and_cycle_model(seed, P, depth):
    """With the shortest FIFOs the reader stalls on the busiest PE's credit all the time:
    the recurrence's credit term (not just its PE drift) is what these images exercise."""
    _check(seed, P, dense=seed == 4, fifo_depth=depth)


def test_the_seeds_cover_the_hard_cases():
    """The regression is only as good as what its IRs contain: pruned neurons, a fully
    pruned layer, sources whose synapses are all masked (no rows), layers that emit no
    spike, membranes that saturate, soft reset, fixed leak, stride 2, pooling: in the
    default suite's seeds."""
    seen = set()
    for seed in SPARSE_SEEDS[:DEFAULT_SPARSE]:
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
        seen |= {"regular conv"} if any(lp.regular for lp in prog.layers) else set()
        seen |= {"conv with lookup"} if any(lp.kind == "conv" and not lp.regular for lp in prog.layers) else set()
        seen |= {"masked rows"} if any(lp.rowptr is not None and (lp.rowptr[:, 1] == 0).any()
                                       for lp in prog.layers) else set()
    assert seen >= {"pruned", "empty layer", "silent layer", "saturation", "reset hard", "reset soft",
                    "leak none", "leak shift", "leak fixed", "stride 2", "pool", "masked rows", "regular conv",
                    "conv with lookup"}, seen


def test_constructor_checks_name_the_problem():
    g = random_graph(3, binary=True)
    with pytest.raises(UsageError, match="number of PEs"):
        Accelerator(g, 0)
    with pytest.raises(UsageError, match=r"got 'x'"):
        Accelerator(g, "x")
    with pytest.raises(TypeError, match="dense and trace"):
        Accelerator(g, 4, dense="yes")


def test_sparse_skips_work_that_dense_does():
    g = random_graph(7, binary=True)
    x = random_images(g, 2, 7)
    s, d = cycle_model(g, x, 4), cycle_model(g, x, 4, dense=True)
    for a, b in zip(s, d):
        assert a.total < b.total
        for name in a.counters:
            assert a.counters[name]["accumulates"] <= b.counters[name]["accumulates"]
            assert a.counters[name]["weight_reads"] <= b.counters[name]["weight_reads"]


def _two_phase_graph():
    """16 inputs -> 6 linear units on 2 PEs (even units on PE 0, odd on PE 1): the even
    units listen to inputs 0-7 only, the odd ones to inputs 8-15, so PE 0 is busy (3
    lanes an event) during the first half of the events and idle in the second, PE 1 the
    other way round.  Deep FIFOs let PE 1 start its half early; shallow ones make the
    reader wait for PE 0's credit."""
    from ticketforge.ir import validate
    from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron

    mask = np.zeros((6, 16), np.uint8)
    mask[0::2, :8] = 1
    mask[1::2, 8:] = 1
    t = {"fc.weight": (np.where(np.arange(96).reshape(6, 16) % 3, 1, -1) * mask).astype(np.int8), "fc.mask": mask,
         "fc.bias": np.zeros(6, np.int64), "fc.threshold": np.full(6, 300, np.int64),
         "fc.neuron_mask": np.ones(6, np.uint8),
         "out.weight": np.ones((2, 6), np.int8), "out.mask": np.ones((2, 6), np.uint8)}
    layers = (Layer("flat", "flatten", (1, 1, 16), (16,)),
              Layer("fc", "linear", (16,), (6,), weight_bits=2, neuron=Neuron(membrane_bits=12),
                    tensors={k.split(".")[1]: k for k in t if k.startswith("fc.")}),
              Layer("out", "output", (6,), (2,), weight_bits=2, tensors={"weight": "out.weight", "mask": "out.mask"}))
    return validate(Graph(T=2, input=InputSpec((1, 1, 16)), layers=layers, tensors=t))


def test_fifo_credit_makes_the_reader_wait_for_the_busiest_pe():
    g = _two_phase_graph()
    images = np.arange(1, 33, dtype=np.uint8).reshape(2, 1, 1, 16) * 7
    gold = run(g, images, trace=True)
    cycles = {}
    for depth in (MIN_FIFO_DEPTH, 32):
        rtl = simulate(Accelerator(g, 2, fifo_depth=depth), images)
        model = cycle_model(g, images, 2, gold=gold, fifo_depth=depth)
        assert [r.scores for r in rtl] == gold.scores.tolist()
        assert [r.cycles for r in rtl] == [m.total for m in model]
        assert [r.counters for r in rtl] == [m.counters for m in model]
        cycles[depth] = model[0].per_layer["fc"]
    # 16 events: PE 0's 8 x 3 lanes then PE 1's 8 x 3 lanes; with 32 entries they overlap
    assert cycles[MIN_FIFO_DEPTH] > cycles[32] + 10, cycles


def test_fifo_depth_is_checked_up_front():
    g = random_graph(3, binary=True)
    for bad in (MIN_FIFO_DEPTH - 1, 0, 2000, 4.0, True):
        with pytest.raises(ValueError, match=f"fifo_depth must be an integer.*got {bad!r}"):
            Accelerator(g, 2, fifo_depth=bad)


def test_cli_refuses_a_bad_fifo_depth_before_any_work(tmp_path, capsys):
    from ticketforge.cli import main

    assert main(["rtl", "--config", "mlp_binw_tiny", "--build-dir", str(tmp_path), "--fifo-depth", "3"]) == 2
    assert f"fifo_depth must be an integer in [{MIN_FIFO_DEPTH}, 1024]" in capsys.readouterr().err
    assert main(["rtl", "--config", "mlp_binw_tiny", "--build-dir", str(tmp_path), "--set", "hw.fifo_depth=2"]) == 2
    assert "hw.fifo_depth" in capsys.readouterr().err
    assert main(["rtl", "--config", "mlp_binw_tiny", "--build-dir", str(tmp_path), "--fifo-depth", "0"]) == 2
    assert "got 0" in capsys.readouterr().err          # 0 is refused, not taken for "the default"
    assert main(["hw", "--config", "mlp_binw_tiny", "--build-dir", str(tmp_path), "--pes", "0"]) == 2
    assert "--pes must be in [1, 1024], got 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())                 # nothing written


def test_parameter_tables_hold_only_the_pes_own_neurons():
    """No PE stores another PE's parameters: over all PEs, a regular conv layer has one
    entry per group and a linear layer one per live unit (before: every PE held every
    channel of every layer)."""
    checked = set()
    for seed in SPARSE_SEEDS:
        g = random_graph(seed, binary=True)
        P = _pes(seed)
        plan = lane_plan(g, P)
        for i in plan.neuron_layers:
            lp, l = plan.prog.layers[i], g.layers[i]
            entries = [plan.param_channels(i, p) for p in range(P)]
            if i in plan.regular:
                assert sum(map(len, entries)) == len(lp.group_pe)
                checked.add("regular conv")
            elif l.kind == "linear":
                assert sum(map(len, entries)) == int(g.tensor(l, "neuron_mask").sum())
                assert all(e == [int(o) for o in lp.slots[p][:, 1]] for p, e in enumerate(entries))
                checked.add("linear")
        assert int(plan.param_depth.sum()) == sum(len(plan.param_channels(i, p))
                                                 for i in plan.neuron_layers for p in range(P))
    assert checked == {"regular conv", "linear"}


def test_accumulator_width_holds_every_membrane_the_golden_model_reaches():
    """`u_range` sizes each layer's accumulator from bounds (V's range after the reset, the
    leak towards 0, bias, fan-in): the golden model's H before saturation (U after the
    last event) stays inside that width on random graphs, for random, all-zero and
    saturated images; and the membrane memory holds the width (split or not)."""
    checked = 0
    for seed in range(40):
        g = random_graph(seed, binary=True)
        images = random_images(g, 6, seed)
        images = np.concatenate([images, np.zeros_like(images[:1]), np.full_like(images[:1], (1 << g.input.bits) - 1)])
        plan = lane_plan(g, 4)
        h = run(g, images, measure_range=True).h_range
        for i, need in plan.acc_need.items():
            name = g.layers[i].name
            if name in h:
                lo, hi = h[name]
                assert -(1 << (need - 1)) <= lo and hi < (1 << (need - 1)), (seed, name, need, h[name])
                checked += 1
        assert plan.mem_lo_bits + (plan.acc_bits - plan.mem_lo_bits if plan.wide else 0) == plan.acc_bits
        assert all(plan.acc_need[i] > plan.mem_lo_bits for i in plan.wide)
    assert checked > 60


def test_block_ram_count_model():
    assert bram18_blocks(5504, 19) == 9 and bram18_blocks(5504, 18) == 6 and bram18_blocks(1568, 1) == 1
    assert bram18_blocks(0, 18) == 0 and bram18_blocks(512, 36) == 1 and bram18_blocks(513, 36) == 2


@pytest.mark.parametrize("seed,dense", [(3, False), (7, True), (11, False), (12, False)])
def test_runtime_weights_loaded_through_the_port_equal_golden_and_cycle_model(seed, dense):
    """weights="runtime": every memory with contents starts empty and is written through the
    core's load port first (`simulate` does it from `plan.load_contents()`); then scores,
    spike trains, cycles and every counter are those of the baked design."""
    g = random_graph(seed, binary=True)
    images = random_images(g, 2, seed)
    P = _pes(seed)
    acc = Accelerator(g, P, dense=dense, trace=True, weights="runtime")
    rtl = simulate(acc, images)
    gold = run(g, images, trace=True)
    model = cycle_model(g, images, P, dense=dense, gold=gold)
    for i, (r, mdl) in enumerate(zip(rtl, model)):
        assert r.scores == gold.scores[i].tolist() and r.cycles == mdl.total and r.counters == mdl.counters, i
        for name, spikes in r.spikes.items():
            assert (spikes == gold.spikes[name][i]).all(), (i, name)


def test_runtime_weights_not_loaded_give_other_answers():
    """The memories really come from the load port: without it the same images answer wrong."""
    g = random_graph(3, binary=True)
    images = random_images(g, 2, 3)
    rtl = simulate(Accelerator(g, 4, weights="runtime"), images, load=[])
    assert [r.scores for r in rtl] != run(g, images).scores.tolist()


def test_a_bitstream_capacity_is_refused_on_the_lane_datapath_and_weights_checked():
    from ticketforge.rtl.bitpar.capacity import capacity_of
    from ticketforge.rtl.datapath import accelerator

    g = random_graph(3, binary=True)
    with pytest.raises(UnsupportedError, match="capacity .* bitpar datapath"):
        accelerator(g, 4, "lane", weights="runtime", capacity=capacity_of(g, 4).to_json())
    with pytest.raises(ValueError, match="weights must be one of baked, runtime, got 'flash'"):
        lane_plan(g, 4, weights="flash")
