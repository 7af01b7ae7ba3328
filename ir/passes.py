"""Transformations over the IR: small pure functions ``Graph -> Graph``, run as explicit lists.

Float stage (what ``ticketforge.model.quantize`` lowers from torch): a neuron layer has
integer weights (``tensors.weight``, from brevitas), ``attrs.scale`` (the float value of one
weight step times the input step: ``alpha`` for spikes, ``alpha / pixel_max`` for pixels),
BatchNorm tensors and ``attrs.v_threshold``/``attrs.lam``.  The passes turn that into the
integer neuron of docs/IR.md:

1. :func:`fold_batchnorm`  float membrane input ``y = a*acc + b`` per channel,
   ``a = scale*gamma/sqrt(var+eps)``, ``b = beta - mean*gamma/sqrt(var+eps)``.
2. :func:`flip_negative_channels`  where ``a < 0`` negate that channel's weights and use
   ``|a|``: dividing the membrane by a negative number would flip the threshold compare.
3. :func:`integerize`  divide the membrane by ``a / 2**s``: each accumulated input enters
   as ``acc << s``, ``bias = round(b * 2**s / a)``, ``threshold = round(v_th * 2**s / a)``;
   ``s`` is the smallest shift giving every channel's threshold ``precision_bits`` bits.
   The leak becomes a shift ``V - (V >> k)`` when ``1 - 2**-k`` is within 0.0025 of lam,
   else fixed point ``(V * round(lam * 2**F)) >> F`` with F = 8.
4. :func:`size_membranes` (needs data) picks each layer's membrane width from the range
   the interpreter measures, plus guard bits; saturation is part of the semantics.
5. :func:`compact_pruned_neurons` removes fully pruned channels/units and their synapses.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ticketforge.ir.schema import Graph, IRError, Neuron

__all__ = ["fold_batchnorm", "flip_negative_channels", "integerize", "size_membranes",
           "compact_pruned_neurons", "choose_leak", "projection_groups", "LOWERING_PASSES"]

LEAK_SHIFT_TOLERANCE = 0.0025
LEAK_FRAC_BITS = 8
PROVISIONAL_MEMBRANE_BITS = 48


def _require_stage(g: Graph, stage: str, pass_name: str) -> None:
    if g.stage != stage:
        raise IRError(f"{pass_name} takes a graph at stage {stage!r}, got {g.stage!r}")


def fold_batchnorm(g: Graph) -> Graph:
    """Float stage -> folded: per-channel ``fold_a``/``fold_b`` replace the BN tensors."""
    _require_stage(g, "float", "fold_batchnorm")
    tensors = dict(g.tensors)
    layers = []
    for l in g.layers:
        if l.neuron is None:
            layers.append(l)
            continue
        if "bn_mean" not in l.tensors:          # no BatchNorm (the attention neurons): y = scale * acc
            refs = {**l.tensors, "fold_a": f"{l.name}.fold_a", "fold_b": f"{l.name}.fold_b"}
            tensors[refs["fold_a"]] = np.full(l.out_shape[0], float(l.attrs["scale"]))
            tensors[refs["fold_b"]] = np.zeros(l.out_shape[0])
            layers.append(replace(l, tensors=refs, attrs={k: v for k, v in l.attrs.items() if k != "scale"}))
            continue
        mean = tensors.pop(l.tensors["bn_mean"]).astype(np.float64)
        var = tensors.pop(l.tensors["bn_var"]).astype(np.float64)
        gamma = tensors.pop(l.tensors["bn_gamma"]).astype(np.float64) if "bn_gamma" in l.tensors else 1.0
        beta = tensors.pop(l.tensors["bn_beta"]).astype(np.float64) if "bn_beta" in l.tensors else 0.0
        inv = gamma / np.sqrt(var + l.attrs["bn_eps"])
        a = np.broadcast_to(l.attrs["scale"] * inv, mean.shape).copy()
        b = np.broadcast_to(beta - mean * inv, mean.shape).copy()
        refs = {k: v for k, v in l.tensors.items() if not k.startswith(("bn_", "skip_bn_"))}
        refs["fold_a"], refs["fold_b"] = f"{l.name}.fold_a", f"{l.name}.fold_b"
        tensors[refs["fold_a"]], tensors[refs["fold_b"]] = a, b
        if l.has_skip:
            # the skip synapses' own float membrane input a_s*acc_s + b_s (their BatchNorm,
            # or none: an identity shortcut adds its spikes at scale 1)
            a_s = np.full(mean.shape, float(l.attrs["skip_scale"]))
            b_s = np.zeros(mean.shape)
            if "skip_bn_mean" in l.tensors:
                pop = lambda role, default: (tensors.pop(l.tensors[role]).astype(np.float64)  # noqa: E731
                                             if role in l.tensors else default)
                inv_s = pop("skip_bn_gamma", 1.0) / np.sqrt(pop("skip_bn_var", None) + l.attrs["skip_bn_eps"])
                a_s = a_s * inv_s
                b_s = pop("skip_bn_beta", 0.0) - pop("skip_bn_mean", None) * inv_s
            refs["fold_skip_a"], refs["fold_skip_b"] = f"{l.name}.fold_skip_a", f"{l.name}.fold_skip_b"
            tensors[refs["fold_skip_a"]], tensors[refs["fold_skip_b"]] = a_s, b_s
        attrs = {k: v for k, v in l.attrs.items() if k not in ("scale", "bn_eps", "skip_scale", "skip_bn_eps")}
        layers.append(replace(l, tensors=refs, attrs=attrs))
    return replace(g.with_layers(layers, tensors), stage="folded")


def flip_negative_channels(g: Graph) -> Graph:
    """Folded -> folded with every ``fold_a > 0`` (weights of flipped channels negated)."""
    _require_stage(g, "folded", "flip_negative_channels")
    tensors = dict(g.tensors)
    for l in g.layers:
        if l.neuron is None:
            continue
        a = tensors[l.tensors["fold_a"]]
        neg = a < 0
        if l.kind == "attention" and neg.any():
            raise IRError(f"layer {l.name!r}: an attention layer's scale must be positive")
        if np.any(a == 0):
            raise IRError(f"layer {l.name!r}: a channel has a zero fold factor (BatchNorm gamma = 0 or "
                          "scale 0); it can never fire and cannot be integerized: prune it first")
        if neg.any():
            w = tensors[l.tensors["weight"]].copy()
            w[neg] = -w[neg]
            tensors[l.tensors["weight"]] = w
            tensors[l.tensors["fold_a"]] = np.abs(a)
    return g.with_layers(g.layers, tensors)


def choose_leak(lam: float) -> dict:
    """Integer leak parameters for a decay rate (see module docstring)."""
    if lam >= 1.0:
        return {"leak": "none"}
    for k in range(1, 31):
        if abs((1.0 - 2.0 ** -k) - lam) <= LEAK_SHIFT_TOLERANCE:
            return {"leak": "shift", "leak_shift": k}
    return {"leak": "fixed", "leak_mult": int(round(lam * (1 << LEAK_FRAC_BITS))),
            "leak_frac_bits": LEAK_FRAC_BITS}


def projection_groups(g: Graph) -> list[tuple[str, ...]]:
    """The Q, K, V layers of each attention layer that read one source: they share their
    input shift and membrane width (`integerize`, `size_membranes`), so that a datapath can
    run them as one layer (their output channels side by side: `ir/prefix.py`)."""
    sources, groups = g.sources(), []
    for l in g.layers:
        if l.kind != "attention":
            continue
        qkv = [g.layer(s) for s in sources[l.name]]
        if all(p.neuron is not None and not p.has_skip for p in qkv) and len({sources[p.name] for p in qkv}) == 1:
            groups.append(tuple(p.name for p in qkv))
    return groups


def _shared(values: dict[str, int], groups: list[tuple[str, ...]]) -> dict[str, int]:
    """``values`` with every group's members at the group's largest."""
    out = dict(values)
    for grp in groups:
        for name in grp:
            out[name] = max(values[n] for n in grp)
    return out


def integerize(g: Graph, precision_bits: int = 8, reset: str | None = None) -> Graph:
    """Folded -> integer (membrane width provisional until :func:`size_membranes`).  Each
    layer's input shift s is the smallest with ``min_o(v_th * 2**s / a_o) >= 2**precision_bits``;
    an attention layer's Q, K and V take the largest of theirs (`projection_groups`: a finer
    step for the others, never a coarser one)."""
    _require_stage(g, "folded", "integerize")
    tensors = dict(g.tensors)
    shifts = _shared({l.name: max(0, math.ceil(precision_bits - math.log2(float(l.attrs["v_threshold"]) /
                                                                            float(tensors[l.tensors["fold_a"]].max()))))
                      for l in g.layers if l.neuron is not None}, projection_groups(g))
    layers = []
    for l in g.layers:
        if l.neuron is None:
            layers.append(replace(l, attrs={}))
            continue
        a = tensors.pop(l.tensors["fold_a"])
        b = tensors.pop(l.tensors["fold_b"])
        vth = float(l.attrs["v_threshold"])
        s = shifts[l.name]
        step = (2.0 ** s) / a
        thr = np.maximum(1, np.round(vth * step)).astype(np.int64)
        extra = {}
        if l.has_skip:
            b = b + tensors[l.tensors["fold_skip_b"]]
            s, extra = _integerize_skip(l, tensors, a, s)
        bias = np.round(b * step).astype(np.int64)
        refs = {k: v for k, v in l.tensors.items() if not k.startswith("fold_")}
        refs["bias"], refs["threshold"] = f"{l.name}.bias", f"{l.name}.threshold"
        tensors[refs["bias"]], tensors[refs["threshold"]] = bias, thr
        for k in [k for k in l.tensors if k.startswith("fold_")]:
            tensors.pop(l.tensors[k], None)
        neuron = Neuron(reset=reset or l.neuron.reset, membrane_bits=PROVISIONAL_MEMBRANE_BITS,
                        **choose_leak(float(l.attrs["lam"])))
        layers.append(replace(l, tensors=refs, attrs={}, input_shift=s, neuron=neuron, **extra))
    return replace(g.with_layers(layers, tensors), stage="integer")


SKIP_WEIGHT_BITS = 8
MAX_INPUT_SHIFT = 24            # validate's bound on input_shift


def _integerize_skip(l, tensors: dict, a: np.ndarray, s: int) -> tuple[int, dict]:
    """A residual layer's two sets of synapses on one integer membrane (docs/IR.md).

    The membrane is divided by ``a_o / 2**s`` as for any layer, so a main synapse adds
    ``w << s``; a skip synapse must add ``w_s * a_s,o / a_o * 2**s``, which is not a whole
    multiple of ``2**s``.  So the layer's input shift becomes ``s - k``: the main weights
    are multiplied by ``2**k`` and the skip weights are ``round(w_s * a_s,o / a_o * 2**k)``,
    k as large as fits ``SKIP_WEIGHT_BITS``-bit weights (k extra bits of skip precision;
    the rounding is the float -> integer cost, measured like every other).  A skip worth
    more than 127 main steps (fine multi-bit main weights) takes a negative k: the main
    weights are rounded to a coarser step.  Returns the input shift and the layer's new
    ``weight_bits``."""
    w = tensors[l.tensors["weight"]].astype(np.int64)
    ws = tensors[l.tensors["skip_weight"]].astype(np.int64)
    ratio = (tensors.pop(l.tensors["fold_skip_a"]) / a).reshape((-1,) + (1,) * (ws.ndim - 1))
    wmax = (1 << (SKIP_WEIGHT_BITS - 1)) - 1
    for k in range(s, -SKIP_WEIGHT_BITS, -1):
        # k < 0: the skip is over wmax main steps (multi-bit main weights with a fine step):
        # the main weights are rounded to a step 2**-k times coarser instead (a cost the
        # integer accuracy measures)
        main = w << k if k >= 0 else np.round(w / 2.0 ** -k).astype(np.int64)
        skip = np.round(ws * ratio * 2.0 ** k).astype(np.int64)
        if max(np.abs(main).max(initial=0), np.abs(skip).max(initial=0)) <= wmax and s - k <= MAX_INPUT_SHIFT:
            break
    else:
        raise IRError(f"layer {l.name!r}: its skip synapses are {float(np.abs(ratio).max()):.1f} times its main "
                      f"synapses' step; no common step fits {SKIP_WEIGHT_BITS}-bit weights")
    skip = skip * (tensors[l.tensors["skip_mask"]] != 0)
    tensors[l.tensors["weight"]], tensors[l.tensors["skip_weight"]] = main.astype(np.int8), skip.astype(np.int8)
    m = int(max(np.abs(main).max(initial=1), np.abs(skip).max(initial=1)))
    return s - k, {"weight_bits": _bits_for(-m, m)}


def _bits_for(lo: int, hi: int) -> int:
    """Signed width holding every value in [lo, hi]."""
    b = 2
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


def size_membranes(g: Graph, images: np.ndarray, guard_bits: int = 1, floor: dict | None = None) -> Graph:
    """Integer -> integer with each layer's membrane width from the measured range of H
    on `images` (plus `guard_bits`), never narrower than its thresholds and biases need,
    nor than ``floor[layer name]`` where given (a bitstream's widths: a wider membrane
    saturates later, the only change); an attention layer's Q, K and V take the widest of
    theirs (`projection_groups`)."""
    from ticketforge.ir.golden import run

    _require_stage(g, "integer", "size_membranes")
    ranges = run(g, images, measure_range=True).h_range
    widths = {}
    for l in g.layers:
        if l.neuron is None:
            continue
        lo, hi = ranges.get(l.name, (0, 0))
        thr, bias = g.tensor(l, "threshold"), g.tensor(l, "bias")
        lo = min(lo, int(bias.min()) if bias.size else 0)
        hi = max(hi, int(thr.max()) if thr.size else 0, int(bias.max()) if bias.size else 0)
        widths[l.name] = max(_bits_for(lo, hi) + guard_bits, int((floor or {}).get(l.name, 0)))
    widths = _shared(widths, projection_groups(g))
    return g.with_layers([replace(l, neuron=replace(l.neuron, membrane_bits=widths[l.name])) if l.neuron is not None
                          else l for l in g.layers])


def compact_pruned_neurons(g: Graph) -> Graph:
    """Integer -> integer without the channels (conv) or units (linear) whose neurons are all
    pruned, and without the synapses that read them.  A removed neuron never fired, so the
    outputs are unchanged (a test checks it against the interpreter)."""
    _require_stage(g, "integer", "compact_pruned_neurons")
    if any(l.kind == "attention" for l in g.layers):
        return g            # attention mixes every channel of its head: nothing is compacted
    tensors = dict(g.tensors)
    layers = list(g.layers)
    keep_in: np.ndarray | None = None      # kept indices of the current layer's input channels
    spatial = 1                            # flatten: positions per channel
    # a residual's skip source keeps its channels: its skip synapses index them too
    skip_sources = {g.sources()[l.name][1] for l in layers if l.has_skip}
    for i, l in enumerate(layers):
        if keep_in is not None and l.kind in ("conv", "linear", "output"):
            w = tensors[l.tensors["weight"]]
            m = tensors[l.tensors["mask"]]
            cols = keep_in if l.kind == "conv" or spatial == 1 else \
                (keep_in[:, None] * spatial + np.arange(spatial)[None]).reshape(-1)
            tensors[l.tensors["weight"]] = w[:, cols]
            tensors[l.tensors["mask"]] = m[:, cols]
            l = replace(l, in_shape=(len(cols),) + tuple(l.in_shape[1:]))
            keep_in, spatial = None, 1
        elif keep_in is not None and l.kind == "pool":
            l = replace(l, in_shape=(len(keep_in),) + tuple(l.in_shape[1:]),
                        out_shape=(len(keep_in),) + tuple(l.out_shape[1:]))
        elif keep_in is not None and l.kind == "flatten":
            spatial = int(np.prod(l.in_shape[1:]))
            l = replace(l, in_shape=(len(keep_in),) + tuple(l.in_shape[1:]),
                        out_shape=(len(keep_in) * spatial,))
        if l.neuron is not None:
            nm = tensors[l.tensors["neuron_mask"]]
            alive = nm.reshape(nm.shape[0], -1).any(axis=1)
            if alive.any() and not alive.all() and l.name not in skip_sources:   # an all-pruned layer stays
                keep = np.flatnonzero(alive)
                for role in ("weight", "mask", "bias", "threshold", "neuron_mask", "skip_weight", "skip_mask"):
                    if role in l.tensors:
                        tensors[l.tensors[role]] = tensors[l.tensors[role]][keep]
                l = replace(l, out_shape=(len(keep),) + tuple(l.out_shape[1:]))
                keep_in = keep
        layers[i] = l
    return g.with_layers(layers, tensors)


# The lowering pipeline, in order (size_membranes needs calibration data and runs after).
LOWERING_PASSES = (fold_batchnorm, flip_negative_channels, integerize)
