"""Random valid IRs for the fuzz and regression tests of every backend.

Seeded; small conv/pool/linear stacks with random masks, weights, thresholds, biases,
leaks, resets, pruned neurons (sometimes a whole layer) and narrow membranes that
saturate.  ``random_graph(seed)`` always passes :func:`validate`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron
from ticketforge.ir.validate import conv_out_hw, validate

__all__ = ["random_graph", "random_images", "random_ticket_like", "signs_only"]


def _neuron(rng: np.random.Generator) -> Neuron:
    kind = rng.choice(["none", "shift", "fixed"])
    bits = int(rng.integers(6, 14))
    if kind == "shift":
        return Neuron("shift", leak_shift=int(rng.integers(1, 6)), reset=str(rng.choice(["hard", "soft"])),
                      membrane_bits=bits)
    if kind == "fixed":
        f = int(rng.integers(2, 9))
        return Neuron("fixed", leak_mult=int(rng.integers(0, (1 << f) + 1)), leak_frac_bits=f,
                      reset=str(rng.choice(["hard", "soft"])), membrane_bits=bits)
    return Neuron("none", reset=str(rng.choice(["hard", "soft"])), membrane_bits=bits)


def _weights(rng, shape, bits):
    wmax = (1 << (bits - 1)) - 1
    mask = (rng.random(shape) < rng.uniform(0.2, 1.0)).astype(np.uint8)
    w = rng.integers(-wmax, wmax + 1, shape)
    if bits == 2:
        w = np.where(rng.random(shape) < 0.5, -1, 1)
    return (w * mask).astype(np.int8), mask


def _residual(rng, layers: list, stride: int):
    """A skip source for the next weighted layer, or None: the neuron layer two back when
    the layer between is a neuron layer of the same kind (no pool, no flatten), with the
    1x1 skip stride that maps it onto the new layer's outputs (the product of the strides);
    drawn with probability 0.6."""
    if len(layers) < 2 or rng.random() >= 0.6:
        return None
    src, mid = layers[-2], layers[-1]
    if src.neuron is None or mid.neuron is None or src.kind != mid.kind:
        return None
    return src.name, tuple(src.out_shape), mid.stride * stride


def random_graph(seed: int, max_conv: int = 2, max_linear: int = 2, binary: bool = False,
                 events: bool = False, residual: bool = False, attention: bool = False) -> Graph:
    """``binary``: every weighted layer gets weight_bits 2.  The signs of a binary layer are
    drawn after its magnitudes, so once a layer that would have been multi-bit is binary the
    later draws (neurons, masks, the next layers) differ: the binary and the multi-bit graph
    of a seed are different networks.
    ``events``: an event-camera input, binary frames of 2 channels (ON, OFF) that differ
    per timestep, instead of 8-bit pixels (the same draws otherwise).
    ``residual``: one more conv and linear layer allowed, and a weighted layer whose two
    previous layers are neuron layers of its kind reads the first of them as a skip input,
    with probability 0.6 (version-2 DAGs; without it the draws are those of a chain).
    ``attention``: a graph with convolutions ends them with a transformer block (Q, K, V,
    spiking self-attention, a projection with a skip input from the block's input)."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(4, 9)), int(rng.integers(4, 9))
    spec = InputSpec((c, h, w), bits=8, pixel_max=255)
    if events:
        c = 2
        spec = InputSpec((c, h, w), encoding="events", bits=1, pixel_max=1)
    layers, tensors = [], {}
    shape: tuple = (c, h, w)
    first = True

    def neuron_layer(name, kind, in_shape, out_shape, wshape, skip=None, like=None, **kw):
        """``skip``: (source layer, its shape, skip stride) for a residual layer; ``like``: a
        layer whose weight bits, neuron and input shift this one shares."""
        nonlocal first
        bits = int(rng.choice([2, 2, 2, 4, 8])) if like is None else like.weight_bits
        bits = 2 if binary else bits
        wt, mk = _weights(rng, wshape, bits)
        if skip is not None:
            src, sshape, sstride = skip
            sw, sm = _weights(rng, (out_shape[0], sshape[0], 1, 1) if kind == "conv" else (out_shape[0], sshape[0]),
                              bits)
            tensors[f"{name}.skip_weight"], tensors[f"{name}.skip_mask"] = sw, sm
            kw.update(inputs=(kw.get("inputs", (layers[-1].name,))[0], src))
            if kind == "conv":
                kw.update(skip_kernel=1, skip_stride=sstride, skip_padding=0)
            wshape = (wshape[0], int(np.prod(wshape[1:])) + int(np.prod(sw.shape[1:])))   # fan-in below
        n = _neuron(rng) if like is None else like.neuron
        cout = out_shape[0]
        vmax = (1 << (n.membrane_bits - 1)) - 1
        shift = int(rng.integers(0, 3)) if like is None else like.input_shift
        fan_in = int(np.prod(wshape[1:]))
        # thresholds on the scale of a typical accumulation, so that layers do spike
        typical = max(2, int(fan_in * (60 if first and not events else 1) * (1 << shift) * 0.3))
        thr = np.minimum(rng.integers(1, typical + 1, cout), vmax)
        bias = rng.integers(-typical // 4, typical // 4 + 1, cout).clip(-vmax - 1, vmax)
        p_prune = 1.0 if name == empty_layer else float(rng.choice([0.0, 0.0, 0.3]))
        keep = (rng.random(out_shape) >= p_prune).astype(np.uint8)
        refs = {role: f"{name}.{role}" for role in ("skip_weight", "skip_mask")} if skip is not None else {}
        for role, arr in (("weight", wt), ("mask", mk), ("bias", bias.astype(np.int64)),
                          ("threshold", thr.astype(np.int64)), ("neuron_mask", keep)):
            refs[role] = f"{name}.{role}"
            tensors[refs[role]] = arr
        layers.append(Layer(name, kind, in_shape, out_shape, weight_bits=bits, input_shift=shift,
                            neuron=n, tensors=refs, **kw))
        first = False

    n_conv = int(rng.integers(0, max_conv + 1 + residual))
    n_linear = int(rng.integers(0 if n_conv else 1, max_linear + 1 + residual))
    # about one graph in ten has one fully pruned ("empty") layer
    empty_layer = rng.choice([f"conv{i}" for i in range(n_conv)] + [f"fc{i}" for i in range(n_linear)]) \
        if rng.random() < 0.1 else None
    for i in range(n_conv):
        cout, k = int(rng.integers(1, 5)), int(rng.choice([1, 3]))
        stride, pad = int(rng.choice([1, 1, 2])), int(k // 2)
        ho, wo = conv_out_hw(shape[1], shape[2], k, stride, pad)
        out = (cout, ho, wo)
        neuron_layer(f"conv{i}", "conv", shape, out, (cout, shape[0], k, k), kernel=k, stride=stride, padding=pad,
                     skip=_residual(rng, layers, stride) if residual else None)
        shape = out
        if rng.random() < 0.5 and min(shape[1:]) >= 2:
            out = (shape[0], shape[1] // 2, shape[2] // 2)
            layers.append(Layer(f"pool{i}", "pool", shape, out, kernel=2, stride=2))
            shape = out
    if attention and n_conv:
        # a transformer block on the token map: Q, K, V (1x1 convs of the map, one neuron
        # and weight format, as a trained block's), spiking self-attention, then a 1x1
        # projection whose membrane also takes the map (skip)
        src, c = layers[-1].name, shape[0]
        for role in ("q", "k", "v"):
            neuron_layer(f"attn_{role}", "conv", shape, shape, (c, c, 1, 1), kernel=1, inputs=(src,),
                         like=layers[-1] if role != "q" else None)
        heads = int(rng.choice([h for h in (1, 2, 4) if c % h == 0]))
        n = _neuron(rng)
        thr = np.minimum(rng.integers(1, max(2, c // heads) + 1, c), n.vmax)      # low: sparse Q, K, V
        refs = {"bias": "attn.bias", "threshold": "attn.threshold", "neuron_mask": "attn.neuron_mask"}
        tensors.update({"attn.bias": np.zeros(c, np.int64), "attn.threshold": thr.astype(np.int64),
                        "attn.neuron_mask": np.ones(shape, np.uint8)})
        layers.append(Layer("attn", "attention", shape, shape, heads=heads, neuron=n, tensors=refs,
                            inputs=("attn_q", "attn_k", "attn_v")))
        neuron_layer("attn_proj", "conv", shape, shape, (c, c, 1, 1), kernel=1, skip=(src, shape, 1))
    flat = (int(np.prod(shape)),)
    layers.append(Layer("flatten", "flatten", shape, flat))
    shape = flat
    for i in range(n_linear):
        out = (int(rng.integers(1, 12)),)
        neuron_layer(f"fc{i}", "linear", shape, out, (out[0], shape[0]),
                     skip=_residual(rng, layers, 1) if residual else None)
        shape = out
    classes = int(rng.integers(2, 6))
    wbits = int(rng.choice([2, 4]))
    wbits = 2 if binary else wbits
    wt, mk = _weights(rng, (classes, shape[0]), wbits)
    tensors["out.weight"], tensors["out.mask"] = wt, mk
    layers.append(Layer("out", "output", shape, (classes,), weight_bits=wbits,
                        tensors={"weight": "out.weight", "mask": "out.mask"}))
    g = Graph(T=int(rng.integers(1, 6)), input=spec, layers=tuple(layers), tensors=tensors,
              provenance={"generator": "ticketforge.ir.random", "seed": seed})
    return validate(g)


def signs_only(g: Graph) -> Graph:
    """``g`` with every weight replaced by its sign (weight_bits 2): the same network, layers,
    neurons, masks and zeros, with binary weights (what a multi-bit design is compared with)."""
    tensors, layers = dict(g.tensors), []
    for l in g.layers:
        if l.has_weights:
            tensors[l.tensors["weight"]] = np.sign(g.tensor(l, "weight")).astype(np.int8)
            l = dataclasses.replace(l, weight_bits=2)
        layers.append(l)
    return validate(g.with_layers(layers, tensors))


def random_ticket_like(g: Graph, seed: int) -> Graph:
    """Another ticket of ``g``'s architecture (what one runtime-weights bitstream runs): the
    same layers, shapes, neuron configurations and input shifts; new weights and synapse
    masks, thresholds and biases redrawn from ``g``'s per-layer ranges (so they stay inside
    the membranes), and new pruned neurons."""
    rng = np.random.default_rng(seed)
    tensors = dict(g.tensors)
    for l in g.layers:
        if not l.has_weights:
            continue
        w = g.tensor(l, "weight")
        wt, mk = _weights(rng, w.shape, l.weight_bits)
        tensors[l.tensors["weight"]], tensors[l.tensors["mask"]] = wt, mk
        if l.neuron is None:
            continue
        for role in ("threshold", "bias"):
            v = g.tensor(l, role)
            lo, hi = int(v.min()), int(v.max())
            tensors[l.tensors[role]] = rng.integers(lo, hi + 1, v.shape).astype(np.int64)
        nm = g.tensor(l, "neuron_mask")
        tensors[l.tensors["neuron_mask"]] = (rng.random(nm.shape) >= rng.choice([0.0, 0.3, 0.6])).astype(nm.dtype)
    return validate(g.with_layers(g.layers, tensors))


def random_images(g: Graph, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random inputs: pixel codes [n, C, H, W], a third of them silent; for an
    ``events`` input binary frames [n, T, C, H, W], about one pixel in five active per step."""
    rng = np.random.default_rng(seed)
    if g.input.events:
        return (rng.random((n, g.T, *g.input.shape)) < 0.2).astype(np.uint8)
    imgs = rng.integers(0, g.input.pixel_max + 1, (n, *g.input.shape))
    imgs[rng.random(imgs.shape) < 0.3] = 0          # silent pixels, as real images have
    return imgs.astype(np.uint8)
