"""`validate(graph)`: reject a malformed IR with an error naming the layer and the field.

Checks what a backend relies on: known kinds, inputs that name the graph's input or an
earlier layer, shapes that match them and follow from the kernel/stride/padding (a skip
input's too), every referenced tensor present with the right shape and dtype,
weights inside their bit width and zero where the synapse mask is zero, thresholds and
biases that fit the membrane width, and a readout at the end.
"""
from __future__ import annotations

import numpy as np

from ticketforge.ir.schema import (INPUT, INPUT_ENCODINGS, LAYER_KINDS, LEAK_KINDS, NEURON_KINDS, RESETS, SCHEMA_ID,
                                         SCHEMA_VERSION, Graph, IRError, Layer)

__all__ = ["validate", "conv_out_hw"]

MAX_MEMBRANE_BITS = 48      # int64 arithmetic in the interpreter stays exact with headroom
MAX_T = 64


def conv_out_hw(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def _fail(l: Layer, field: str, msg: str):
    raise IRError(f"layer {l.name!r} ({l.kind}): field {field!r}: {msg}")


def _tensor(g: Graph, l: Layer, role: str, shape: tuple, kinds: str) -> np.ndarray:
    key = l.tensors.get(role)
    if key is None:
        _fail(l, f"tensors.{role}", "missing")
    if key not in g.tensors:
        _fail(l, f"tensors.{role}", f"refers to {key!r}, which is not in tensors.npz")
    a = g.tensors[key]
    if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
        _fail(l, f"tensors.{role}", f"{key!r} must be an integer array, got "
              f"{getattr(a, 'dtype', type(a).__name__)}")
    if tuple(a.shape) != tuple(shape):
        _fail(l, f"tensors.{role}", f"{key!r} has shape {list(a.shape)}, expected {list(shape)}")
    return a


def _expected_out(l: Layer) -> tuple[int, ...]:
    if l.kind == "conv":
        if len(l.in_shape) != 3:
            _fail(l, "in_shape", f"a conv takes [C, H, W], got {list(l.in_shape)}")
        if l.kernel < 1 or l.stride < 1 or l.padding < 0:
            _fail(l, "kernel", f"kernel {l.kernel}, stride {l.stride}, padding {l.padding} are not valid")
        h, w = conv_out_hw(l.in_shape[1], l.in_shape[2], l.kernel, l.stride, l.padding)
        if h < 1 or w < 1:
            _fail(l, "out_shape", f"kernel {l.kernel} does not fit input {list(l.in_shape)}")
        return (l.out_shape[0], h, w)
    if l.kind == "pool":
        if len(l.in_shape) != 3:
            _fail(l, "in_shape", f"a pool takes [C, H, W], got {list(l.in_shape)}")
        if l.kernel < 1 or l.stride != l.kernel:
            _fail(l, "kernel", f"pooling windows must tile (kernel == stride >= 1), got "
                  f"kernel {l.kernel} stride {l.stride}")
        c, h, w = l.in_shape
        if h < l.kernel or w < l.kernel:
            _fail(l, "kernel", f"window {l.kernel} is larger than the input {list(l.in_shape)}")
        return (c, h // l.kernel, w // l.kernel)
    if l.kind == "flatten":
        return (int(np.prod(l.in_shape)),)
    if l.kind == "attention":
        return tuple(l.in_shape)
    if len(l.in_shape) != 1:
        _fail(l, "in_shape", f"a {l.kind} layer takes a flat vector, got {list(l.in_shape)}")
    if len(l.out_shape) != 1:
        _fail(l, "out_shape", f"a {l.kind} layer gives a flat vector, got {list(l.out_shape)}")
    return l.out_shape


def validate(g: Graph) -> Graph:
    """Return `g` unchanged if it is a well-formed integer IR, else raise :class:`IRError`."""
    if g.schema != SCHEMA_ID or g.version != SCHEMA_VERSION:
        raise IRError(f"graph: schema {g.schema!r} version {g.version} is not {SCHEMA_ID!r} "
                      f"version {SCHEMA_VERSION}")
    if g.stage != "integer":
        raise IRError(f"graph: field 'stage' is {g.stage!r}; backends take only 'integer' IRs")
    if not 1 <= g.T <= MAX_T:
        raise IRError(f"graph: field 'T' must be in [1, {MAX_T}], got {g.T}")
    if g.score != "membrane_sum":
        raise IRError(f"graph: field 'score' must be 'membrane_sum', got {g.score!r}")
    if g.input.encoding not in INPUT_ENCODINGS:
        raise IRError(f"input: field 'encoding' must be one of {', '.join(INPUT_ENCODINGS)}, got {g.input.encoding!r}")
    if g.input.events and (g.input.bits, g.input.pixel_max) != (1, 1):
        raise IRError(f"input: an 'events' input is binary (bits 1, pixel_max 1), got bits {g.input.bits}, "
                      f"pixel_max {g.input.pixel_max}")
    if not 1 <= g.input.bits <= 16 or not 1 <= g.input.pixel_max < (1 << g.input.bits):
        raise IRError(f"input: bits {g.input.bits} / pixel_max {g.input.pixel_max} are inconsistent")
    if not g.layers:
        raise IRError("graph: field 'layers' is empty")
    sources = g.sources()
    shapes: dict[str, tuple] = {INPUT: tuple(g.input.shape)}
    max_out: dict[str, int] = {INPUT: g.input.pixel_max}      # the largest value each output carries
    for i, l in enumerate(g.layers):
        if l.name in shapes:
            _fail(l, "name", "used twice" if l.name != INPUT else f"{INPUT!r} names the graph's input")
        if l.kind not in LAYER_KINDS:
            _fail(l, "kind", f"unknown layer kind {l.kind!r}; allowed: {', '.join(LAYER_KINDS)}")
        srcs = sources[l.name]
        for src in srcs:
            if src not in shapes:
                _fail(l, "inputs", f"{src!r} is neither {INPUT!r} nor a layer before this one")
        if l.kind == "attention":
            if len(srcs) != 3 or len({shapes[x] for x in srcs}) != 1:
                _fail(l, "inputs", f"{list(srcs)}: an attention layer reads three inputs of one shape (Q, K, V), "
                      f"got shapes {[list(shapes[x]) for x in srcs]}")
        elif len(srcs) > 2 or (len(srcs) == 2 and l.kind not in ("conv", "linear")):
            _fail(l, "inputs", f"{list(srcs)}: a conv/linear layer reads one input and at most one skip "
                  "input; every other layer reads one")
        shape = shapes[srcs[0]]
        if tuple(l.in_shape) != shape:
            _fail(l, "in_shape", f"{list(l.in_shape)} does not match the output of {srcs[0]!r} {list(shape)}")
        if tuple(l.out_shape) != _expected_out(l):
            _fail(l, "out_shape", f"{list(l.out_shape)}, expected {list(_expected_out(l))}")
        if (l.kind == "output") != (i == len(g.layers) - 1):
            _fail(l, "kind", "the last layer, and only the last, must be the 'output' readout")
        if l.kind in NEURON_KINDS and l.neuron is None:
            _fail(l, "neuron", "a conv/linear layer needs neuron parameters")
        if l.attrs:
            _fail(l, "attrs", f"float parameters {sorted(l.attrs)} left in an integer IR")
        if l.kind not in NEURON_KINDS and l.neuron is not None:
            _fail(l, "neuron", f"a {l.kind} layer has no neurons")
        if l.kind != "attention" and not l.has_skip and (l.skip_kernel or {"skip_weight", "skip_mask"} & set(l.tensors)):
            _fail(l, "skip_kernel", "skip synapses without a second input in 'inputs'")
        if l.has_weights:
            skip = (shapes[srcs[1]], max_out[srcs[1]]) if l.has_skip else None
            _check_weights(g, l, max_out[srcs[0]], skip)
        if l.kind == "attention":
            _check_attention(g, l, [max_out[x] for x in srcs])
        shapes[l.name] = tuple(l.out_shape)
        max_out[l.name] = 1 if l.kind in NEURON_KINDS else max_out[srcs[0]]     # spikes from a neuron layer
    return g


def _check_attention(g: Graph, l: Layer, max_in: list[int]) -> None:
    if len(l.in_shape) != 3:
        _fail(l, "in_shape", f"attention takes a token map [C, H, W], got {list(l.in_shape)}")
    if l.heads < 1 or l.in_shape[0] % l.heads:
        _fail(l, "heads", f"{l.heads} heads do not divide its {l.in_shape[0]} channels")
    if max(max_in) != 1:
        _fail(l, "inputs", "attention reads spikes (Q, K and V from neuron layers), not pixel codes")
    if not 0 <= l.input_shift <= 24:
        _fail(l, "input_shift", f"must be in [0, 24], got {l.input_shift}")
    c, h, w = l.in_shape
    _check_neurons(g, l, c, (c // l.heads) * (h * w) ** 2 << l.input_shift)


def _skip_shape(l: Layer, src_shape: tuple) -> tuple:
    """The skip synapses' weight shape, after checking that their geometry maps the skip
    source onto the layer's outputs."""
    if l.kind == "linear":
        if len(src_shape) != 1:
            _fail(l, "inputs", f"a linear layer's skip source must be a flat vector, got {list(src_shape)}")
        return (l.out_shape[0], src_shape[0])
    if len(src_shape) != 3:
        _fail(l, "inputs", f"a conv layer's skip source must be [C, H, W], got {list(src_shape)}")
    if l.skip_kernel < 1 or l.skip_stride < 1 or l.skip_padding < 0:
        _fail(l, "skip_kernel", f"skip kernel {l.skip_kernel}, stride {l.skip_stride}, padding "
              f"{l.skip_padding} are not valid")
    hw = conv_out_hw(src_shape[1], src_shape[2], l.skip_kernel, l.skip_stride, l.skip_padding)
    if hw != tuple(l.out_shape[1:]):
        _fail(l, "skip_stride", f"the skip synapses map {list(src_shape)} to {list(hw)}, not to the "
              f"layer's output {list(l.out_shape[1:])}")
    return (l.out_shape[0], src_shape[0], l.skip_kernel, l.skip_kernel)


def _check_synapses(g: Graph, l: Layer, prefix: str, wshape: tuple) -> None:
    w = _tensor(g, l, prefix + "weight", wshape, "i")
    m = _tensor(g, l, prefix + "mask", wshape, "iub")
    wmax = (1 << (l.weight_bits - 1)) - 1
    if w.size and (w.max() > wmax or w.min() < -wmax):
        _fail(l, f"tensors.{prefix}weight", f"values in [{w.min()}, {w.max()}] exceed {l.weight_bits}-bit "
              f"narrow range [-{wmax}, {wmax}]")
    if np.any((m != 0) & (m != 1)):
        _fail(l, f"tensors.{prefix}mask", "must hold only 0 and 1")
    if np.any((m == 0) & (w != 0)):
        _fail(l, f"tensors.{prefix}weight", "a masked synapse (mask 0) has a non-zero weight")


def _check_weights(g: Graph, l: Layer, max_in: int, skip: tuple | None) -> None:
    if not 2 <= l.weight_bits <= 8:
        _fail(l, "weight_bits", f"must be in [2, 8], got {l.weight_bits}")
    if not 0 <= l.input_shift <= 24:
        _fail(l, "input_shift", f"must be in [0, 24], got {l.input_shift}")
    cout = l.out_shape[0]
    wshape = (cout, l.in_shape[0], l.kernel, l.kernel) if l.kind == "conv" else (cout, l.in_shape[0])
    _check_synapses(g, l, "", wshape)
    wmax = (1 << (l.weight_bits - 1)) - 1
    bound = max_in * wmax * int(np.prod(wshape[1:]))
    if skip is not None:
        sshape = _skip_shape(l, skip[0])
        _check_synapses(g, l, "skip_", sshape)
        bound += skip[1] * wmax * int(np.prod(sshape[1:]))
    if l.kind == "output":
        return
    _check_neurons(g, l, cout, bound << l.input_shift)


def _check_neurons(g: Graph, l: Layer, cout: int, acc_bound: int) -> None:
    n = l.neuron
    if n.reset not in RESETS:
        _fail(l, "neuron.reset", f"unknown reset {n.reset!r}; allowed: {', '.join(RESETS)}")
    if n.leak not in LEAK_KINDS:
        _fail(l, "neuron.leak", f"unknown leak {n.leak!r}; allowed: {', '.join(LEAK_KINDS)}")
    if n.leak == "shift" and not 1 <= n.leak_shift <= 30:
        _fail(l, "neuron.leak_shift", f"must be in [1, 30], got {n.leak_shift}")
    if n.leak == "fixed" and not (1 <= n.leak_frac_bits <= 16 and 0 <= n.leak_mult <= (1 << n.leak_frac_bits)):
        _fail(l, "neuron.leak_mult", f"leak_mult {n.leak_mult} / leak_frac_bits {n.leak_frac_bits} "
              "must satisfy 0 <= mult <= 2**frac_bits, 1 <= frac_bits <= 16")
    if not 2 <= n.membrane_bits <= MAX_MEMBRANE_BITS:
        _fail(l, "neuron.membrane_bits", f"must be in [2, {MAX_MEMBRANE_BITS}], got {n.membrane_bits}")
    b = _tensor(g, l, "bias", (cout,), "i")
    th = _tensor(g, l, "threshold", (cout,), "i")
    _tensor(g, l, "neuron_mask", tuple(l.out_shape), "iub")
    if th.size and th.min() < 1:
        _fail(l, "tensors.threshold", f"thresholds must be >= 1, got {th.min()}")
    if th.size and th.max() > n.vmax:
        _fail(l, "neuron.membrane_bits", f"{n.membrane_bits} bits (max {n.vmax}) cannot hold threshold {th.max()}")
    if b.size and (b.max() > n.vmax or b.min() < n.vmin):
        _fail(l, "neuron.membrane_bits", f"{n.membrane_bits} bits cannot hold bias in [{b.min()}, {b.max()}]")
    if acc_bound >= 1 << 52:
        _fail(l, "input_shift", "the accumulator could exceed 2**52 (the interpreter's exact range)")
