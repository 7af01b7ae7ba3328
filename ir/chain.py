"""`chain_form(g)`: a residual IR as the chain of layers the accelerators run, computing
exactly the same scores.  (The HLS path takes the graph as it is: its layers may have
several sources, `ticketforge.hls.from_ir`.)

Both accelerator datapaths stream one layer's spikes into the next.  A residual layer R
reads a second, earlier source S through its skip synapses; the chain carries S's spikes
to R instead, through *copy neurons*: every layer between S and R gets one extra output
channel (or unit) per carried channel of S, whose only synapse is a +1 from that channel at
the kernel's centre tap, with bias 0 and threshold ``1 << input_shift``.  Such a neuron's
membrane is 0 at every timestep (leak(0) = 0; a spike resets it to 0 whether the reset is
hard or soft, since H = threshold exactly), so it fires exactly when its source did, in
the same timestep.  R then reads the copies as extra input channels, with the skip
synapses at its own kernel's centre tap.  The original neurons, their spikes and the
scores are unchanged (`tests/test_ir.py` proves golden(chain_form(g)) == golden(g) on
random residual IRs); the cost is the copy neurons and their synapses, which the hardware
reports count like any other.

What maps (and what a residual network of the zoo uses): a skip source that is a neuron
layer, layers between it and R that are convs with an odd kernel and "same" padding (or
linear layers), and a 1x1 skip of the stride that the layers between and R make together.
Anything else is refused by name.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ticketforge.ir.schema import INPUT, Graph, IRError, Layer
from ticketforge.ir.validate import validate

__all__ = ["chain_form", "copy_neurons"]


def _refuse(l: Layer, why: str):
    raise IRError(f"layer {l.name!r}: its skip input cannot run on the accelerators: {why}")


def _centre(l: Layer) -> int:
    return l.kernel // 2


def chain_form(g: Graph) -> Graph:
    """``g`` itself when it is a chain; else the equivalent chain (module docstring)."""
    if g.is_chain:
        return g
    for l in g.layers:
        if l.kind == "attention":
            raise IRError(f"layer {l.name!r} (attention): spiking self-attention runs in the golden model and the "
                          "torch integer model and the HLS path (`ticketforge hls`); neither accelerator datapath has it yet")
    sources = g.sources()
    layers = list(g.layers)
    for i, l in enumerate(layers):
        if sources[l.name][0] != (layers[i - 1].name if i else INPUT):
            raise IRError(f"layer {l.name!r}: reads {sources[l.name][0]!r} as its main input, not the layer "
                          "before it; the accelerators take a chain with residual skips only")
    tensors = dict(g.tensors)
    carrying: set[str] = set()
    for r in range(len(layers)):
        if not layers[r].has_skip:
            continue
        R = layers[r]
        src = R.inputs[1]
        if src == INPUT:
            _refuse(R, "its skip source is the input image, whose pixel codes are not spikes a copy neuron can carry")
        s = next(i for i, l in enumerate(layers) if l.name == src)
        if layers[s].neuron is None:
            _refuse(R, f"its skip source {src!r} is a {layers[s].kind} layer, not a neuron layer")
        sw, sm = tensors[R.tensors["skip_weight"]], tensors[R.tensors["skip_mask"]]
        carried = sw.shape[1]               # S's own channels (S may carry copies of its own)
        stride, offset = 1, None            # where the previous layer put the copies
        for m in range(s + 1, r):
            M = layers[m]
            if M.name in carrying:
                _refuse(R, f"layer {M.name!r} already carries another skip's spikes (overlapping skips)")
            carrying.add(M.name)
            if M.kind not in ("conv", "linear") or M.kind != R.kind:
                _refuse(R, f"layer {M.name!r} between it and its skip source {src!r} is a {M.kind} layer "
                        f"(only {R.kind} layers can carry the skip source's spikes)")
            if M.kind == "conv" and (M.kernel % 2 == 0 or M.padding != _centre(M)):
                _refuse(R, f"layer {M.name!r} between it and {src!r} has kernel {M.kernel} and padding "
                        f"{M.padding}; carrying spikes needs an odd kernel with padding kernel // 2")
            layers[m] = _add_copies(M, tensors, carried, offset)
            offset = M.out_shape[0]
            stride *= M.stride if M.kind == "conv" else 1
        layers[r] = _merge_skip(R, tensors, sw, sm, stride, offset)
    for l in layers:                        # the merged skips' tensors are gone
        for role in ("skip_weight", "skip_mask"):
            tensors.pop(f"{l.name}.{role}", None)
    out = g.with_layers([replace(l, inputs=()) for l in _chain_shapes(layers)], tensors)
    return validate(replace(out, provenance={**g.provenance, "chain_form": copy_neurons(g)}))


def copy_neurons(g: Graph) -> dict[str, int]:
    """Copy neurons per layer that `chain_form` adds (the cost of the residual skips)."""
    sources, out, names = g.sources(), {}, [l.name for l in g.layers]
    for l in g.layers:
        if l.has_skip:
            s, r = names.index(sources[l.name][1]), names.index(l.name)
            for m in g.layers[s + 1:r]:
                per = int(np.prod(m.out_shape[1:])) if m.kind == "conv" else 1
                out[m.name] = out.get(m.name, 0) + g.tensor(l, "skip_weight").shape[1] * per
    return out


def _add_copies(M: Layer, tensors: dict, carried: int, offset: int | None) -> Layer:
    """``M`` with ``carried`` copy neurons appended, reading input channels ``offset`` ..
    (``None``: its own source's first ``carried`` channels)."""
    w, mk = tensors[M.tensors["weight"]], tensors[M.tensors["mask"]]
    if offset is not None:                  # the previous layer's copies: new input columns, unread by M's own
        w, mk = _widen_inputs(w, carried), _widen_inputs(mk, carried)
    first = 0 if offset is None else offset
    cw = np.zeros((carried, w.shape[1]) + w.shape[2:], w.dtype)     # +1 weights fit every weight_bits
    idx = np.arange(carried)
    if M.kind == "conv":
        c = _centre(M)
        cw[idx, first + idx, c, c] = 1
    else:
        cw[idx, first + idx] = 1
    thr = 1 << M.input_shift
    if thr > M.neuron.vmax:
        raise IRError(f"layer {M.name!r}: a copy neuron's threshold {thr} (1 << input_shift) does not fit its "
                      f"{M.neuron.membrane_bits}-bit membrane")
    nm = tensors[M.tensors["neuron_mask"]]
    tensors[M.tensors["weight"]] = np.concatenate([w, cw])
    tensors[M.tensors["mask"]] = np.concatenate([mk, (cw != 0).astype(mk.dtype)])
    tensors[M.tensors["bias"]] = np.concatenate([tensors[M.tensors["bias"]], np.zeros(carried, np.int64)])
    tensors[M.tensors["threshold"]] = np.concatenate([tensors[M.tensors["threshold"]], np.full(carried, thr, np.int64)])
    tensors[M.tensors["neuron_mask"]] = np.concatenate([nm, np.ones((carried,) + nm.shape[1:], nm.dtype)])
    return replace(M, out_shape=(M.out_shape[0] + carried,) + tuple(M.out_shape[1:]))


def _merge_skip(R: Layer, tensors: dict, sw: np.ndarray, sm: np.ndarray, stride: int, offset: int | None) -> Layer:
    """``R`` reading its skip source's carried copies (input channels ``offset`` ..; ``None``:
    its main input is the skip source itself) through the skip synapses, at its centre tap."""
    w, mk = tensors[R.tensors["weight"]], tensors[R.tensors["mask"]]
    if R.kind == "conv":
        if R.kernel % 2 == 0 or R.padding != _centre(R):
            _refuse(R, f"kernel {R.kernel} with padding {R.padding}: its skip synapses go to the kernel's "
                    "centre tap, which needs an odd kernel with padding kernel // 2")
        if (R.skip_kernel, R.skip_padding) != (1, 0) or R.skip_stride != stride * R.stride:
            _refuse(R, f"a {R.skip_kernel}x{R.skip_kernel} skip of stride {R.skip_stride}, padding "
                    f"{R.skip_padding}; the chain carries a 1x1 skip of stride {stride * R.stride} "
                    "(the strides of the layers it passes)")
    carried = sw.shape[1]
    first = w.shape[1] if offset is not None else 0
    if offset is not None:                       # new input columns: the carried copies
        w, mk = _widen_inputs(w, carried), _widen_inputs(mk, carried)
    w, mk = w.astype(np.int64), mk.copy()
    cols = first + np.arange(carried)
    if R.kind == "conv":
        c = _centre(R)
        w[:, cols, c, c] += sw[:, :, 0, 0]
        mk[:, cols, c, c] |= sm[:, :, 0, 0]
    else:
        w[:, cols] += sw
        mk[:, cols] |= sm
    wmax = (1 << (R.weight_bits - 1)) - 1
    if np.abs(w).max(initial=0) > wmax:
        _refuse(R, f"its skip source is also its main input, and the summed weights exceed {R.weight_bits} bits")
    tensors[R.tensors["weight"]], tensors[R.tensors["mask"]] = w.astype(np.int8), mk
    refs = {k: v for k, v in R.tensors.items() if not k.startswith("skip_")}
    return replace(R, tensors=refs, skip_kernel=0, skip_stride=1, skip_padding=0)


def _widen_inputs(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` [O, C, ...] with ``n`` zero input channels appended."""
    return np.concatenate([a, np.zeros((a.shape[0], n) + a.shape[2:], a.dtype)], axis=1)


def _chain_shapes(layers: list[Layer]) -> list[Layer]:
    """Every layer's in_shape from the one before (copies widened some outputs)."""
    out, shape = [], None
    for l in layers:
        if shape is not None and l.kind in ("conv", "linear", "output"):
            l = replace(l, in_shape=(shape[0],) + tuple(l.in_shape[1:]))
        out.append(l)
        shape = l.out_shape
    return out
