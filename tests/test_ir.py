"""The hardware IR: validation, disk format, fuzzing, passes, and the golden interpreter
against an independent torch implementation of the same integer semantics."""
import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_golden_equals_intsim
from ticketforge.model.intsim import torch_integer_run
from ticketforge.ir import (IRError, compact_pruned_neurons, flip_negative_channels, fold_batchnorm,
                                  integerize, load_graph, random_graph, random_images, run, save_graph,
                                  validate)
from ticketforge.ir.io import SCHEMA_FILE, graph_to_dict
from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron

SHIPPED = Path(__file__).parent / "data" / "vgg9_binw_ir"


def test_ir_package_is_torch_free():
    code = "import sys, ticketforge.ir as ir; ir.random_graph(0); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seed", range(60))
def test_golden_equals_torch_integer_model_on_random_irs(seed):
    g = random_graph(seed)
    assert_golden_equals_intsim(g, random_images(g, 6, seed))


def test_random_irs_cover_pruning_saturation_and_silence():
    seen = {"pruned": 0, "empty": 0, "saturated": 0, "leaks": set(), "resets": set()}
    for seed in range(60):
        g = random_graph(seed)
        r = run(g, random_images(g, 6, seed), measure_range=True)
        for l in g.layers:
            if l.neuron is None:
                continue
            keep = g.tensor(l, "neuron_mask")
            seen["pruned"] += int(0 < keep.mean() < 1)
            seen["empty"] += int(keep.sum() == 0)
            lo, hi = r.h_range.get(l.name, (0, 0))
            seen["saturated"] += int(hi > l.neuron.vmax or lo < l.neuron.vmin)
            seen["leaks"].add(l.neuron.leak)
            seen["resets"].add(l.neuron.reset)
    assert seen["pruned"] and seen["empty"] and seen["saturated"]
    assert seen["leaks"] == {"none", "shift", "fixed"} and seen["resets"] == {"hard", "soft"}


@pytest.mark.parametrize("seed", range(30))
def test_compacting_pruned_neurons_keeps_outputs(seed):
    g = random_graph(seed)
    c = validate(compact_pruned_neurons(g))
    x = random_images(g, 5, seed)
    assert np.array_equal(run(g, x).scores, run(c, x).scores)


def test_save_load_roundtrip(tmp_path):
    g = random_graph(7)
    save_graph(g, tmp_path)
    h = load_graph(tmp_path)
    assert graph_to_dict(h) == graph_to_dict(g)
    assert set(h.tensors) == set(g.tensors)
    assert all(np.array_equal(h.tensors[k], g.tensors[k]) for k in g.tensors)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads((tmp_path / "graph.json").read_text()), json.loads(SCHEMA_FILE.read_text()))


# -- validation: named errors ---------------------------------------------------------------

def _first_neuron(g):
    return next(l for l in g.layers if l.neuron is not None)


def _swap(g, old, new):
    return g.with_layers([new if l is old else l for l in g.layers])


def test_validate_names_layer_and_field():
    g = random_graph(3)
    l = _first_neuron(g)
    bad = _swap(g, l, replace(l, in_shape=(l.in_shape[0] + 1,) + tuple(l.in_shape[1:])))
    with pytest.raises(IRError, match=rf"layer '{l.name}'.*'in_shape'.*does not match"):
        validate(bad)
    bad = _swap(g, l, replace(l, tensors={k: v for k, v in l.tensors.items() if k != "threshold"}))
    with pytest.raises(IRError, match=rf"layer '{l.name}'.*'tensors.threshold': missing"):
        validate(bad)
    t = dict(g.tensors)
    t[l.tensors["mask"]] = t[l.tensors["mask"]][:1]
    with pytest.raises(IRError, match=rf"layer '{l.name}'.*tensors.mask.*shape"):
        validate(g.with_layers(g.layers, t))
    with pytest.raises(IRError, match=rf"layer '{l.name}'.*membrane_bits.*threshold"):
        t = dict(g.tensors)
        t[l.tensors["threshold"]] = np.full_like(t[l.tensors["threshold"]], 1 << 20)
        validate(g.with_layers(g.layers, t))
    with pytest.raises(IRError, match="unknown layer kind 'transformer'"):
        validate(_swap(g, l, replace(l, kind="transformer")))
    with pytest.raises(IRError, match="version"):
        validate(replace(g, version=99))
    t = dict(g.tensors)
    m = t[l.tensors["mask"]].copy()
    m.flat[0], t[l.tensors["weight"]].flat[0] = 0, 1
    t[l.tensors["mask"]] = m
    with pytest.raises(IRError, match="masked synapse"):
        validate(g.with_layers(g.layers, t))


def _mutations(d: dict, rng: np.random.Generator):
    """Yield corrupted copies of a graph.json dict."""
    junk = [None, "x", -3, 0, 2.5, [], {}, [0], True, 10 ** 9]
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + [i])
                walk(v, path + [i])
    walk(d, [])
    for _ in range(300):
        m = copy.deepcopy(d)
        path = paths[rng.integers(len(paths))]
        parent = m
        for p in path[:-1]:
            parent = parent[p]
        if rng.random() < 0.25 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = junk[rng.integers(len(junk))]
        yield m


def test_fuzz_corrupted_graph_json_gives_ir_errors(tmp_path):
    g = random_graph(11)
    save_graph(g, tmp_path)
    good = json.loads((tmp_path / "graph.json").read_text())
    rng = np.random.default_rng(0)
    rejected = 0
    for bad in _mutations(good, rng):
        (tmp_path / "graph.json").write_text(json.dumps(bad))
        try:
            load_graph(tmp_path)
        except IRError:
            rejected += 1
        # any other exception type fails the test: errors must be named, never numpy's
    assert rejected > 200
    (tmp_path / "graph.json").write_text("{not json")
    with pytest.raises(IRError, match="not valid JSON"):
        load_graph(tmp_path)


def test_fuzz_corrupted_tensors_give_ir_errors(tmp_path):
    g = random_graph(12)
    rng = np.random.default_rng(1)
    for i in range(80):
        t = dict(g.tensors)
        key = sorted(t)[rng.integers(len(t))]
        choice = i % 4
        if choice == 0:
            del t[key]
        elif choice == 1:
            t[key] = t[key].astype(np.float32)
        elif choice == 2:
            t[key] = np.zeros((2, 3, 4, 5)[: max(1, t[key].ndim)], dtype=t[key].dtype)
        else:
            t[key] = np.full_like(t[key], 99)
        save_graph(g.with_layers(g.layers, t), tmp_path)
        try:
            load_graph(tmp_path)
        except IRError:
            pass
    (tmp_path / "tensors.npz").write_bytes(b"garbage")
    with pytest.raises(IRError, match="not a readable .npz"):
        load_graph(tmp_path)
    with pytest.raises(IRError, match="missing"):
        load_graph(tmp_path / "nowhere")


def test_golden_rejects_wrong_input_shape():
    g = random_graph(2)
    with pytest.raises(IRError, match="expects"):
        run(g, np.zeros((1, 9, 9, 9), np.uint8))


# -- passes -----------------------------------------------------------------------------------

def _float_graph(rng, gamma_sign):
    cin, cout, T = 3, 4, 4
    w = np.where(rng.random((cout, cin)) < 0.5, -1, 1).astype(np.int8)
    mask = (rng.random((cout, cin)) < 0.7).astype(np.uint8)
    w = w * mask
    tensors = {"h.weight": w, "h.mask": mask, "h.bn_mean": rng.normal(0, 0.1, cout),
               "h.bn_var": rng.uniform(0.5, 2, cout), "h.bn_gamma": gamma_sign * rng.uniform(0.5, 2, cout),
               "h.bn_beta": rng.normal(0, 0.3, cout), "h.neuron_mask": np.ones(cout, np.uint8),
               "o.weight": np.ones((2, cout), np.int8), "o.mask": np.ones((2, cout), np.uint8)}
    refs = {k.split(".")[1]: k for k in tensors if k.startswith("h.")}
    layers = (Layer("flat", "flatten", (cin, 1, 1), (cin,)),
              Layer("h", "linear", (cin,), (cout,), weight_bits=2, neuron=Neuron(reset="hard"), tensors=refs,
                    attrs={"scale": 0.02, "bn_eps": 1e-5, "v_threshold": 1.0, "lam": 0.75}),
              Layer("o", "output", (cout,), (2,), weight_bits=2, tensors={"weight": "o.weight", "mask": "o.mask"}))
    return Graph(T=T, input=InputSpec((cin, 1, 1)), layers=layers, tensors=tensors, stage="float")


def _float_lif(g: Graph, x: np.ndarray) -> np.ndarray:
    """Reference float model of the float-stage graph above (spikes [N, T, cout])."""
    l = g.layers[1]
    t = g.tensors
    acc = x.reshape(len(x), -1).astype(np.float64) @ t["h.weight"].T.astype(np.float64)
    inv = t["h.bn_gamma"] / np.sqrt(t["h.bn_var"] + 1e-5)
    y = (l.attrs["scale"] * acc - t["h.bn_mean"]) * inv + t["h.bn_beta"]
    v = np.zeros_like(y)
    out = []
    for _ in range(g.T):
        h = 0.75 * v + y
        s = h >= 1.0
        v = np.where(s, 0.0, h)
        out.append(s)
    return np.stack(out, 1)


@pytest.mark.parametrize("gamma_sign", [1.0, -1.0])
def test_fold_flip_integerize_match_the_float_neuron(gamma_sign):
    rng = np.random.default_rng(5)
    g = _float_graph(rng, gamma_sign)
    x = rng.integers(0, 256, (400, 3, 1, 1)).astype(np.uint8)
    ref = _float_lif(g, x)
    ig = integerize(flip_negative_channels(fold_batchnorm(g)), precision_bits=16)
    validate(ig)
    l = ig.layers[1]
    assert l.neuron.leak == "shift" and l.neuron.leak_shift == 2           # 0.75 = 1 - 2**-2 exactly
    if gamma_sign < 0:                                                     # flipped channels
        assert np.array_equal(ig.tensor(l, "weight"), -g.tensors["h.weight"])
    got = run(ig, x, trace=True).spikes["h"].astype(bool)
    # the only float -> integer cost is rounding bias/threshold to 2**-16 of a step
    assert (got == ref).mean() > 0.999


def test_passes_check_their_stage():
    with pytest.raises(IRError, match="stage 'float'"):
        fold_batchnorm(random_graph(0))


# -- the shipped IR of vgg9_binw ---------------------------------------------------------------

def test_shipped_vgg9_binw_ir_golden_equals_torch_integer_model():
    g = load_graph(SHIPPED)
    v = np.load(SHIPPED / "vectors.npz")
    gold = run(g, v["inputs"], trace=True)
    assert np.array_equal(gold.scores, v["scores"])                  # reproduces what quantize recorded
    scores, spikes = torch_integer_run(g, v["inputs"])
    assert np.array_equal(scores, gold.scores)
    for name in gold.spikes:
        assert np.array_equal(spikes[name], gold.spikes[name]), name
        assert np.array_equal(v[f"spikes/{name}"], gold.spikes[name]), name
    assert (gold.predictions == v["labels"]).mean() >= 0.5


def test_conv_accumulate_equals_the_definition_on_both_paths():
    """Few channels take the im2col GEMM, many the per-tap GEMMs: both equal a direct sum."""
    from numpy.lib.stride_tricks import sliding_window_view

    from ticketforge.ir.golden import conv_accumulate

    rng = np.random.default_rng(1)
    for _ in range(200):
        c, k, s = int(rng.integers(1, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p, h, w_ = int(rng.integers(0, k)), int(rng.integers(k, 10)), int(rng.integers(k, 10))
        x = rng.integers(-3, 4, (int(rng.integers(1, 4)), c, h, w_))
        w = rng.integers(-2, 3, (int(rng.integers(1, 5)), c, k, k))
        win = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), (k, k), axis=(2, 3))[:, :, ::s, ::s]
        want = np.einsum("ncyxij,ocij->noyx", win, w)
        got = conv_accumulate(x, w, s, p, bound=3 * 2 * c * k * k)
        assert got.shape == want.shape and (got == want).all(), (c, k, s, p, h, w_)


def test_membranes_take_a_floor_and_only_saturate_later():
    """size_membranes with a floor (a runtime bitstream's widths): no layer narrower than its
    floor, none narrower than measured, and on the calibration images the outputs stay."""
    from ticketforge.ir import size_membranes

    g = random_graph(6)
    images = random_images(g, 8, 6)
    own = size_membranes(g, images)
    floor = {l.name: l.neuron.membrane_bits + 3 for l in own.layers if l.neuron is not None}
    wide = size_membranes(g, images, floor=floor)
    for a, b in zip(own.layers, wide.layers):
        if a.neuron is not None:
            assert b.neuron.membrane_bits == a.neuron.membrane_bits + 3
    assert (run(own, images).scores == run(wide, images).scores).all()
    assert size_membranes(g, images, floor={}) == own


@pytest.mark.parametrize("seed", range(30))
def test_event_input_golden_equals_torch_integer_model(seed):
    """An ``events`` input (a binary frame per timestep): the interpreter and the torch model
    agree on scores and every layer's spikes."""
    g = random_graph(seed, events=True)
    x = random_images(g, 6, seed)
    assert x.shape == (6, g.T, *g.input.shape) and set(np.unique(x)) <= {0, 1}
    assert_golden_equals_intsim(g, x)


def test_event_frames_enter_at_their_own_timestep():
    """One event at t = 2 only: the first layer (integrate-and-fire, threshold 1) fires at
    t = 2 and at no other step; a direct input would have fired every step."""
    spec = InputSpec((2, 1, 1), encoding="events", bits=1, pixel_max=1)
    fc = Layer("fc0", "linear", (2,), (1,), weight_bits=2, neuron=Neuron("none", reset="hard", membrane_bits=8),
               tensors={r: f"fc0.{r}" for r in ("weight", "mask", "bias", "threshold", "neuron_mask")})
    out = Layer("out", "output", (1,), (1,), weight_bits=2, tensors={"weight": "out.weight", "mask": "out.mask"})
    g = validate(Graph(T=4, input=spec, layers=(Layer("flatten", "flatten", (2, 1, 1), (2,)), fc, out), tensors={
        "fc0.weight": np.array([[1, 1]], np.int8), "fc0.mask": np.ones((1, 2), np.uint8),
        "fc0.bias": np.zeros(1, np.int64), "fc0.threshold": np.ones(1, np.int64),
        "fc0.neuron_mask": np.ones(1, np.uint8), "out.weight": np.ones((1, 1), np.int8),
        "out.mask": np.ones((1, 1), np.uint8)}))
    x = np.zeros((1, 4, 2, 1, 1), np.uint8)
    x[0, 2, 0] = 1
    res = run(g, x, trace=True)
    assert res.spikes["fc0"][0, :, 0].tolist() == [0, 0, 1, 0] and res.scores.tolist() == [[1]]
    with pytest.raises(IRError, match=r"expects \[N, 4, 2, 1, 1\]"):
        run(g, x[:, 0])                             # a frame, not one per timestep


def test_event_input_is_validated_saved_and_refused_by_the_hls_path(tmp_path):
    """Saved and reloaded; both accelerator datapaths take it (tests/test_rtl_accel.py,
    test_rtl_bitpar.py); the HLS path refuses it by name."""
    from ticketforge.errors import UnsupportedError
    from ticketforge.hls.from_ir import layer_list

    g = random_graph(7, binary=True, events=True)
    save_graph(g, tmp_path / "ir")
    back = load_graph(tmp_path / "ir")
    assert back.input == g.input and back.input.events
    with pytest.raises(IRError, match="binary"):
        validate(replace(g, input=replace(g.input, bits=8, pixel_max=255)))
    with pytest.raises(IRError, match="one of direct, events"):
        validate(replace(g, input=replace(g.input, encoding="rate")))
    with pytest.raises(UnsupportedError, match="'events'"):
        layer_list(g)
