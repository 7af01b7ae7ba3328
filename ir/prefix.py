"""`accelerator_form(g)`: the IR that the accelerator stages (rtl, sim, synth, report) run.

A chain or a residual IR runs whole, as its `chain_form`.  Neither datapath has spiking
self-attention, so an IR with an `attention` layer runs its *accelerator prefix* instead:
every layer before the first attention layer, with the attention's Q, K and V projections
fused into one layer, and a readout that counts the last layer's spikes per channel.  The
golden model of that prefix is what the RTL is compared with (scores, cycles, every
layer's counters, and spike trains on traced images), so everything up to the attention
block is checked bit for bit; the rest of the network (the attention layers and all after
them) is named in the prefix IR's provenance (``accelerator_prefix``), which the sim
results and the report carry.

**The fused QKV projection.** Q, K and V are three neuron layers reading one source with the
same geometry and neuron.  Their concatenation along the output channels is one layer with
the same spikes (a neuron's accumulation reads only its own weights), so the prefix keeps
all three projections while staying a chain: ``qkv`` channels ``[0, C)`` are Q, ``[C, 2C)``
K, ``[2C, 3C)`` V.  When they differ in anything the datapaths configure per layer (kind,
kernel, stride, padding, input shift, weight bits, neuron), the prefix stops before them.

**The readout.** ``prefix_readout`` has one class per channel of the last layer, with a +1
synapse from each of that channel's neurons, so its score is the channel's spike count over
the image's T steps.  Its argmax is not a prediction: the sim results leave
``accuracy_rtl`` out for a prefix (the HLS path runs the whole network, attention included).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.ir.schema import Graph, IRError, Layer
from ticketforge.ir.validate import validate

__all__ = ["accelerator_form", "accelerator_prefix", "prefix_info", "describe_prefix"]

# the per-layer settings a fused layer must share (what a datapath configures per layer)
_SHARED = ("kind", "kernel", "stride", "padding", "input_shift", "weight_bits", "neuron")


def accelerator_form(g: Graph) -> Graph:
    """The chain the accelerators run for ``g``: its chain form, or, with attention, the
    chain form of its accelerator prefix (module docstring)."""
    p = accelerator_prefix(g)
    return chain_form(g if p is None else p)


def prefix_info(g: Graph) -> dict | None:
    """What an accelerator prefix keeps and leaves out (``None`` for a whole network)."""
    return g.provenance.get("accelerator_prefix")


def describe_prefix(info: dict) -> str:
    """One line for people: what runs on the accelerator and what does not."""
    fused = "; ".join(f"{k} = {' + '.join(v)}" for k, v in info["fused"].items())
    return (f"the accelerator runs the prefix {', '.join(info['runs'])}" + (f" (fused: {fused})" if fused else "")
            + f", read out as {info['readout']}; not on it: {', '.join(info['left_out'])} ({info['why']})")


def accelerator_prefix(g: Graph) -> Graph | None:
    """``None`` when ``g`` has no attention layer; else its accelerator prefix."""
    names = [l.name for l in g.layers]
    at = next((i for i, l in enumerate(g.layers) if l.kind == "attention"), None)
    if at is None:
        return None
    sources = g.sources()
    qkv = [g.layer(s) for s in sources[names[at]]]
    first = min(names.index(l.name) for l in qkv)
    layers, tensors = list(g.layers[:first]), dict(g.tensors)
    fused = _fuse(g, qkv, sources, tensors) if sorted(names.index(l.name) for l in qkv) == \
        list(range(first, first + 3)) else None
    if fused is not None:
        layers.append(fused)
    last = next((l for l in reversed(layers) if l.neuron is not None), None)
    if last is None or last is not layers[-1]:
        raise IRError(f"layer {names[at]!r} (attention): the layers before it do not end in a neuron layer, so "
                      "there is no accelerator prefix to run (neither datapath has spiking self-attention)")
    layers += _readout(last, tensors)
    info = {"runs": [l.name for l in g.layers[:first]] + ([l.name for l in qkv] if fused is not None else []),
            "fused": {fused.name: [l.name for l in qkv]} if fused is not None else {},
            "left_out": names[first + (3 if fused is not None else 0):],
            "why": f"layer {names[at]!r} is spiking self-attention, which neither accelerator datapath has; "
                   "the HLS path (`ticketforge hls`) runs the whole network",
            "readout": f"per-channel spike counts of {last.name!r} (not a prediction)"}
    kept = {key for l in layers for key in l.tensors.values()}
    out = g.with_layers(layers, {k: v for k, v in tensors.items() if k in kept})
    return validate(replace(out, provenance={**g.provenance, "accelerator_prefix": info}))


def _fuse(g: Graph, qkv: list[Layer], sources: dict, tensors: dict) -> Layer | None:
    """Q, K and V as one layer (their output channels concatenated), or ``None`` when they
    differ in what the datapaths configure per layer or are not neuron layers of one source."""
    q = qkv[0]
    if q.kind not in ("conv", "linear") or any(l.has_skip for l in qkv):
        return None
    if len({sources[l.name] for l in qkv}) != 1 or any(
            getattr(l, f) != getattr(q, f) for l in qkv[1:] for f in _SHARED):
        return None
    name = "_".join(l.name for l in qkv)
    refs = {}
    for role in ("weight", "mask", "bias", "threshold", "neuron_mask"):
        refs[role] = f"{name}.{role}"
        tensors[refs[role]] = np.concatenate([g.tensor(l, role) for l in qkv])
    out = (sum(l.out_shape[0] for l in qkv),) + tuple(q.out_shape[1:])
    return replace(q, name=name, out_shape=out, tensors=refs, inputs=sources[q.name])


def _readout(last: Layer, tensors: dict) -> list[Layer]:
    """Flatten (for a conv) and a readout of +1 synapses, one class per channel of ``last``."""
    c = last.out_shape[0]
    plane = int(np.prod(last.out_shape[1:]))
    w = np.kron(np.eye(c, dtype=np.int8), np.ones((1, plane), np.int8))     # [c, c * plane]
    tensors["prefix_readout.weight"], tensors["prefix_readout.mask"] = w, w.astype(np.uint8)
    flat = (c * plane,)
    out = []
    if len(last.out_shape) == 3:
        out.append(Layer("prefix_flatten", "flatten", tuple(last.out_shape), flat))
    out.append(Layer("prefix_readout", "output", flat, (c,), weight_bits=2,
                     tensors={"weight": "prefix_readout.weight", "mask": "prefix_readout.mask"}))
    return out
