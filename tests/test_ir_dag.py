"""IR version 2: layers that name their inputs, residual skip inputs, the migration of
version-1 files, the chain form the accelerators run (ir/chain.py) and a transformer's
accelerator prefix (ir/prefix.py)."""
import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import assert_golden_equals_intsim
from ticketforge.ir import (IRError, compact_pruned_neurons, load_graph, random_graph, random_images, run,
                            save_graph, validate)
from ticketforge.ir.chain import chain_form, copy_neurons
from ticketforge.ir.io import SCHEMA_FILE, graph_to_dict
from ticketforge.ir.schema import INPUT

# the residual generator's seeds whose graph has at least one skip input
DAG_SEEDS = [s for s in range(200) if not random_graph(s, residual=True).is_chain][:40]


def _skips(g):
    return [l for l in g.layers if l.has_skip]


def test_the_generator_draws_residual_convs_and_linears_some_strided():
    skips = [l for s in DAG_SEEDS for l in _skips(random_graph(s, residual=True))]
    assert len(DAG_SEEDS) == 40
    assert {l.kind for l in skips} == {"conv", "linear"}
    assert any(l.kind == "conv" and l.skip_stride > 1 for l in skips)
    # without ``residual`` the draws are those of a chain, as before
    assert all(random_graph(s).is_chain for s in range(60))


@pytest.mark.parametrize("seed", DAG_SEEDS)
def test_golden_equals_torch_integer_model_on_random_residual_irs(seed):
    g = random_graph(seed, residual=True)
    assert_golden_equals_intsim(g, random_images(g, 6, seed))


def test_a_skip_input_adds_into_the_membrane():
    """Removing the skip synapses changes what the residual layers compute: the skips are
    not silent in the random IRs."""
    changed = 0
    for seed in DAG_SEEDS:
        g = random_graph(seed, residual=True)
        t = dict(g.tensors)
        for l in _skips(g):
            t[l.tensors["skip_weight"]] = np.zeros_like(t[l.tensors["skip_weight"]])
        x = random_images(g, 6, seed)
        a, b = run(g, x, trace=True), run(g.with_layers(g.layers, t), x, trace=True)
        changed += any(not np.array_equal(a.spikes[l.name], b.spikes[l.name]) for l in _skips(g))
    assert changed >= 10


@pytest.mark.parametrize("seed", DAG_SEEDS)
def test_the_chain_form_computes_the_same_and_its_copies_are_the_skip_sources(seed):
    g = random_graph(seed, residual=True)
    c = chain_form(g)
    assert c.is_chain and not any(l.has_skip for l in c.layers)
    assert chain_form(c) is c
    x = random_images(g, 6, seed)
    a, b = run(g, x, trace=True), run(c, x, trace=True)
    assert np.array_equal(a.scores, b.scores)
    for name, s in a.spikes.items():                   # the original neurons are unchanged
        assert np.array_equal(b.spikes[name][:, :, :s.shape[2]], s), name
    added = copy_neurons(g)
    src, names = g.sources(), [l.name for l in g.layers]
    for l in _skips(g):                                 # the layer before it carries the source's spikes
        mids = g.layers[names.index(src[l.name][1]) + 1:names.index(l.name)]
        if not mids:
            continue
        S, prev = a.spikes[src[l.name][1]], mids[-1].name
        copies = b.spikes[prev][:, :, a.spikes[prev].shape[2]:]
        f = int(np.prod([m.stride for m in mids if m.kind == "conv"]))
        assert np.array_equal(copies, S[:, :, :, ::f, ::f] if S.ndim == 5 else S), l.name
    assert sum(added.values()) == sum(int(np.prod(l.out_shape)) for l in c.layers if l.neuron) - \
        sum(int(np.prod(l.out_shape)) for l in g.layers if l.neuron)


def test_compacting_pruned_neurons_keeps_residual_outputs():
    for seed in DAG_SEEDS[:15]:
        g = random_graph(seed, residual=True)
        x = random_images(g, 5, seed)
        assert np.array_equal(run(g, x).scores, run(validate(compact_pruned_neurons(g)), x).scores)


def test_a_residual_ir_saves_loads_and_matches_the_json_schema(tmp_path):
    g = random_graph(DAG_SEEDS[0], residual=True)
    save_graph(g, tmp_path)
    raw = json.loads((tmp_path / "graph.json").read_text())
    assert raw["version"] == 2 and all(l["inputs"] for l in raw["layers"])
    assert any(len(l["inputs"]) == 2 for l in raw["layers"])
    h = load_graph(tmp_path)
    assert graph_to_dict(h) == graph_to_dict(g)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(raw, json.loads(SCHEMA_FILE.read_text()))


def test_a_version_1_ir_loads_as_the_same_chain_and_other_versions_are_refused(tmp_path):
    g = random_graph(7)
    save_graph(g, tmp_path)
    raw = json.loads((tmp_path / "graph.json").read_text())
    for l in raw["layers"]:
        del l["inputs"]
    raw["version"] = 1
    (tmp_path / "graph.json").write_text(json.dumps(raw))
    h = load_graph(tmp_path)
    assert h.version == 2 and h.is_chain and graph_to_dict(h) == graph_to_dict(g)
    raw["layers"][0]["inputs"] = [INPUT]
    (tmp_path / "graph.json").write_text(json.dumps(raw))
    with pytest.raises(IRError, match="'inputs' is a version-2 field in a version-1 IR"):
        load_graph(tmp_path)
    raw["version"] = 3
    (tmp_path / "graph.json").write_text(json.dumps(raw))
    with pytest.raises(IRError, match="reads versions 1, 2; re-run `ticketforge quantize`"):
        load_graph(tmp_path)


def _residual_layer(g):
    return next(l for l in g.layers if l.has_skip)


def _swap(g, old, new):
    return g.with_layers([new if l is old else l for l in g.layers])


def test_validate_names_the_layer_and_field_of_a_bad_input():
    g = random_graph(DAG_SEEDS[0], residual=True)
    r = _residual_layer(g)
    later = g.layers[-1].name
    cases = [
        (replace(r, inputs=(r.inputs[0], "nowhere")), "field 'inputs': 'nowhere' is neither 'input' nor a layer before"),
        (replace(r, inputs=(r.inputs[0], later)), f"field 'inputs': '{later}' is neither"),
        (replace(r, inputs=(r.inputs[0], r.inputs[1], r.inputs[1])), "field 'inputs'"),
        (replace(r, inputs=()), "field 'skip_kernel': skip synapses without a second input"),
    ]
    if r.kind == "conv":
        cases.append((replace(r, skip_stride=r.skip_stride + 1), "field 'skip_stride': the skip synapses map"))
    for bad, msg in cases:
        with pytest.raises(IRError, match=f"layer '{r.name}'.*{msg}"):
            validate(_swap(g, r, bad))
    gp = next(random_graph(s) for s in range(60) if any(l.kind == "pool" for l in random_graph(s).layers))
    pool = next(l for l in gp.layers if l.kind == "pool")
    with pytest.raises(IRError, match="reads one input and at most one skip input"):
        validate(_swap(gp, pool, replace(pool, inputs=(gp.sources()[pool.name][0], INPUT))))


def test_the_chain_form_refuses_what_it_cannot_carry_by_name():
    g = next(random_graph(s, residual=True) for s in DAG_SEEDS
             if any(l.kind == "conv" for l in _skips(random_graph(s, residual=True))))
    r = next(l for l in _skips(g) if l.kind == "conv")
    src = g.layer(r.inputs[1])
    # a skip from the input image: pixels are not spikes
    t = dict(g.tensors)
    t[r.tensors["skip_weight"]] = np.zeros((r.out_shape[0], g.input.shape[0], 1, 1), np.int8)
    t[r.tensors["skip_mask"]] = np.zeros((r.out_shape[0], g.input.shape[0], 1, 1), np.uint8)
    names = [l.name for l in g.layers]
    hw_in = g.input.shape[1:]
    stride = 1
    for l in g.layers[:names.index(r.name) + 1]:
        stride *= l.stride if l.kind in ("conv", "pool") else 1
    if all(-(-h // stride) == o for h, o in zip(hw_in, r.out_shape[1:])):
        bad = validate(_swap(g.with_layers(g.layers, t), r, replace(r, inputs=(r.inputs[0], INPUT), skip_stride=stride)))
        with pytest.raises(IRError, match="skip source is the input image"):
            chain_form(bad)
    # a 3x3 skip kernel (valid IR, golden runs it; the chain has no place for it)
    t = dict(g.tensors)
    cs = src.out_shape[0]
    t[r.tensors["skip_weight"]] = np.ones((r.out_shape[0], cs, 3, 3), np.int8)
    t[r.tensors["skip_mask"]] = np.ones((r.out_shape[0], cs, 3, 3), np.uint8)
    bad = validate(_swap(g.with_layers(g.layers, t), r, replace(r, skip_kernel=3, skip_padding=1)))
    run(bad, random_images(bad, 2, 0))
    with pytest.raises(IRError, match=f"layer '{r.name}': its skip input cannot run on the accelerators: a 3x3 skip"):
        chain_form(bad)


def _float_residual(rng, shortcut: str):
    """A float-stage graph: input -> h1 (linear, BN, LIF) -> h2 (linear, BN, LIF) reading h1
    through a skip (``shortcut``: "identity", weight 1 at scale 1; or "bn": binary synapses
    with their own scale and BatchNorm) -> readout; plus the float reference of h2."""
    from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron

    cin, c, T = 5, 4, 4
    t = {}

    def hidden(name, fan_in, prefix=""):
        w = np.where(rng.random((c, fan_in)) < 0.5, -1, 1).astype(np.int8)
        if shortcut == "fine" and name == "h2" and not prefix:   # 8-bit main weights of a fine step
            w = rng.integers(-127, 128, (c, fan_in)).astype(np.int8)
        m = (rng.random((c, fan_in)) < 0.8).astype(np.uint8)
        t[f"{name}.{prefix}weight"], t[f"{name}.{prefix}mask"] = w * m, m
        for role, v in (("bn_mean", rng.normal(0, 0.1, c)), ("bn_var", rng.uniform(0.5, 2, c)),
                        ("bn_gamma", rng.choice([-1, 1], c) * rng.uniform(0.5, 2, c)), ("bn_beta", rng.normal(0, 0.3, c))):
            t[f"{name}.{prefix}{role}"] = v
    hidden("h1", cin)
    hidden("h2", c)
    refs1 = {r: f"h1.{r}" for r in ("weight", "mask", "bn_mean", "bn_var", "bn_gamma", "bn_beta")}
    refs2 = {r: f"h2.{r}" for r in ("weight", "mask", "bn_mean", "bn_var", "bn_gamma", "bn_beta")}
    attrs = {"bn_eps": 1e-5, "v_threshold": 1.0, "lam": 0.75}
    if shortcut in ("identity", "fine"):
        t["h2.skip_weight"], t["h2.skip_mask"] = np.eye(c, dtype=np.int8), np.eye(c, dtype=np.uint8)
        skip_attrs = {"skip_scale": 1.0}
        refs2.update(skip_weight="h2.skip_weight", skip_mask="h2.skip_mask")
    else:
        hidden("h2", c, "skip_")
        skip_attrs = {"skip_scale": 0.3, "skip_bn_eps": 1e-5}
        refs2.update({f"skip_{r}": f"h2.skip_{r}" for r in ("weight", "mask", "bn_mean", "bn_var", "bn_gamma", "bn_beta")})
    for n in ("h1", "h2"):
        t[f"{n}.neuron_mask"] = np.ones(c, np.uint8)
        (refs1 if n == "h1" else refs2)["neuron_mask"] = f"{n}.neuron_mask"
    t["o.weight"], t["o.mask"] = np.ones((2, c), np.int8), np.ones((2, c), np.uint8)
    main_scale = 0.4 / 127 if shortcut == "fine" else 0.4
    layers = (Layer("flat", "flatten", (cin, 1, 1), (cin,)),
              Layer("h1", "linear", (cin,), (c,), weight_bits=2, neuron=Neuron(reset="soft"), tensors=refs1,
                    attrs={**attrs, "scale": 0.01}),
              Layer("h2", "linear", (c,), (c,), weight_bits=8 if shortcut == "fine" else 2, neuron=Neuron(reset="soft"),
                    tensors=refs2, attrs={**attrs, "scale": main_scale, **skip_attrs}, inputs=("h1", "h1")),
              Layer("o", "output", (c,), (2,), weight_bits=2, tensors={"weight": "o.weight", "mask": "o.mask"}))
    g = Graph(T=T, input=InputSpec((cin, 1, 1)), layers=layers, tensors=t, stage="float")

    def bn(prefix, y):
        inv = t[f"h{prefix}gamma"] / np.sqrt(t[f"h{prefix}var"] + 1e-5)
        return (y - t[f"h{prefix}mean"]) * inv + t[f"h{prefix}beta"]

    def reference(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        y1 = bn("1.bn_", 0.01 * x @ t["h1.weight"].T.astype(np.float64))
        v1 = v2 = 0.0
        out = []
        for _ in range(T):
            h1 = 0.75 * v1 + y1
            s1 = (h1 >= 1.0).astype(np.float64)
            v1 = h1 - s1
            y2 = bn("2.bn_", main_scale * s1 @ t["h2.weight"].T.astype(np.float64))
            y2 = y2 + (s1 if shortcut in ("identity", "fine") else bn("2.skip_bn_", 0.3 * s1 @ t["h2.skip_weight"].T.astype(np.float64)))
            h2 = 0.75 * v2 + y2
            s2 = h2 >= 1.0
            v2 = h2 - s2
            out.append(s2)
        return np.stack(out, 1)
    return g, reference


@pytest.mark.parametrize("shortcut", ["identity", "bn", "fine"])
def test_fold_flip_integerize_of_a_residual_match_the_float_neurons(shortcut):
    """The passes on a layer with a skip input (both shortcut forms, BatchNorm gammas of
    both signs): its spikes equal the float block's but for rounding near a threshold.
    "fine": 8-bit main weights of step 0.4/127 beside an identity skip worth hundreds of
    main steps, so the main weights are rounded to a coarser step (k < 0)."""
    from ticketforge.ir import flip_negative_channels, fold_batchnorm, integerize

    rng = np.random.default_rng(11)
    g, reference = _float_residual(rng, shortcut)
    ig = validate(integerize(flip_negative_channels(fold_batchnorm(g)), precision_bits=12))
    h2 = ig.layer("h2")
    assert h2.inputs == ("h1", "h1") and h2.weight_bits > 2
    x = rng.integers(0, 256, (500, 5, 1, 1))
    agree = (run(ig, x, trace=True).spikes["h2"].astype(bool) == reference(x)).mean()
    main = ig.tensor(h2, "weight")
    if shortcut == "fine":
        # k < 0: the main weights on a coarser step (here 6 bits of their 8), the skip's
        # weight 1 at a few hundred main steps rounded to 7 bits
        assert np.abs(main).max() < 64 and np.abs(ig.tensor(h2, "skip_weight")).max() > 64
        assert agree > 0.95
        return
    # binary main weights leave k <= 6 bits of skip precision in 8-bit weights (a skip weight
    # rounds to within 1/128 of itself): agreement is that of a 7-bit skip
    assert agree > 0.98
    assert set(np.unique(np.abs(main[main != 0]))) == {int(np.abs(main).max())}   # +-2**k, one k


# -- spiking self-attention ------------------------------------------------------------------

def _attention_fires(seed: int) -> bool:
    g = random_graph(seed, residual=True, attention=True)
    return any(l.kind == "attention" for l in g.layers) and run(g, random_images(g, 3, seed), trace=True).spikes["attn"].any()


ATTN_SEEDS = [s for s in range(80) if any(l.kind == "attention" for l in random_graph(s, residual=True, attention=True).layers)][:24]
# the ones whose attention layer fires on three random inputs (a random Q, K or V is often silent)
FIRING_SEEDS = [s for s in range(120) if _attention_fires(s)][:10]


@pytest.mark.parametrize("seed", sorted(set(ATTN_SEEDS + FIRING_SEEDS)))
def test_golden_equals_torch_integer_model_on_random_attention_irs(seed):
    g = random_graph(seed, residual=True, attention=True)
    assert_golden_equals_intsim(g, random_images(g, 6, seed))


def test_attention_is_the_integer_product_of_its_definition():
    """docs/IR.md's loop, written out, on the Q, K, V spikes of random attention IRs whose
    attention layer fires."""
    from ticketforge.ir.golden import attention_accumulate

    assert len(FIRING_SEEDS) == 10
    for seed in FIRING_SEEDS:
        g = random_graph(seed, residual=True, attention=True)
        r = run(g, random_images(g, 3, seed), trace=True)
        q, k, v = (r.spikes[f"attn_{x}"].reshape((-1,) + g.layer("attn").in_shape) for x in "qkv")   # every (image, t)
        heads = g.layer("attn").heads
        n, c, h, w = q.shape
        dh, tok = c // heads, h * w
        qf, kf, vf = (a.reshape(n, c, tok).astype(np.int64) for a in (q, k, v))
        expect = np.zeros((n, c, tok), np.int64)
        for i in range(n):
            for d in range(c):
                e = slice(d // dh * dh, d // dh * dh + dh)
                for t in range(tok):
                    expect[i, d, t] = sum(vf[i, d, m] * int((qf[i, e, t] * kf[i, e, m]).sum()) for m in range(tok))
        assert np.array_equal(attention_accumulate(q, k, v, heads).reshape(n, c, tok), expect)
        assert expect.any()


def test_attention_is_validated_saved_and_refused_by_the_hardware_by_name(tmp_path):
    g = random_graph(ATTN_SEEDS[0], residual=True, attention=True)
    a = g.layer("attn")
    save_graph(g, tmp_path)
    assert graph_to_dict(load_graph(tmp_path)) == graph_to_dict(g)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads((tmp_path / "graph.json").read_text()), json.loads(SCHEMA_FILE.read_text()))
    for bad, msg in ((replace(a, inputs=a.inputs[:2]), "reads three inputs of one shape"),
                     (replace(a, heads=a.in_shape[0] + 1), "field 'heads'")):
        with pytest.raises(IRError, match=f"layer 'attn'.*{msg}"):
            validate(_swap(g, a, bad))
    with pytest.raises(IRError, match="layer 'attn' \\(attention\\): spiking self-attention runs in the golden model"):
        chain_form(g)


# -- the accelerator prefix of a transformer (ir/prefix.py) ------------------------------------

@pytest.mark.parametrize("seed", ATTN_SEEDS[:12])
def test_the_accelerator_prefix_computes_the_networks_spikes_up_to_attention(seed):
    """Every layer the prefix keeps spikes as in the whole network, the fused QKV layer is
    Q, K and V side by side, the readout counts its spikes per channel, and what is left out
    is named."""
    from ticketforge.ir.prefix import accelerator_form, accelerator_prefix, prefix_info

    g = random_graph(seed, residual=True, attention=True)
    p = accelerator_prefix(g)
    info = prefix_info(p)
    assert info["fused"] == {"attn_q_attn_k_attn_v": ["attn_q", "attn_k", "attn_v"]}
    assert info["left_out"][0] == "attn" and "attn_proj" in info["left_out"]
    assert accelerator_form(g).is_chain and prefix_info(accelerator_form(g)) == info
    x = random_images(g, 4, seed)
    a, b = run(g, x, trace=True), run(p, x, trace=True)
    for name in info["runs"]:
        if name in a.spikes and name not in ("attn_q", "attn_k", "attn_v"):
            assert np.array_equal(a.spikes[name], b.spikes[name]), name
    qkv = np.concatenate([a.spikes[f"attn_{r}"] for r in "qkv"], axis=2)
    assert np.array_equal(b.spikes["attn_q_attn_k_attn_v"], qkv)
    assert np.array_equal(b.scores, qkv.sum(axis=(1, 3, 4)))


def test_a_prefix_stops_before_projections_it_cannot_fuse_and_a_chain_has_none():
    from ticketforge.ir.prefix import accelerator_form, accelerator_prefix, prefix_info

    g = random_graph(ATTN_SEEDS[0], residual=True, attention=True)
    k = g.layer("attn_k")
    p = accelerator_prefix(_swap(g, k, replace(k, input_shift=k.input_shift + 1)))
    info = prefix_info(p)
    assert info["fused"] == {} and info["left_out"][:4] == ["attn_q", "attn_k", "attn_v", "attn"]
    assert p.layers[-1].name == "prefix_readout" and p.layers[-1].out_shape[0] == g.layer("attn_q").in_shape[0]
    chain = random_graph(ATTN_SEEDS[0])
    assert accelerator_prefix(chain) is None and accelerator_form(chain) is chain
