"""IR -> hls4ml ModelGraph: the integer IR's layers as ticketforge's spiking hls4ml layers.

The model is built from the IR (`ModelGraph.from_layer_list`), never from the float
network, so the C simulation checks the same integers the golden interpreter defines.
Tables computed here (the "compression" that makes skipping structural):
- `live`: flat indices (o*H*W + y*W + x) of the neurons DynSNN kept;
- `tap_start`/`taps`/`tap_w`: per output channel, the kept synapses only, as the flat
  position c*k*k + i*k + j in the channel's weight window and the integer weight.
Every type is sized from the IR's values (ap_int widths), so nothing saturates that the IR
does not saturate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hls4ml.model.graph import ModelGraph

from ticketforge.hls.extension import SpikeAttention, SpikePool, SpikingLIF, SpikingSkipLIF, register
from ticketforge.errors import UnsupportedError
from ticketforge.ir.schema import INPUT, Graph, Layer

__all__ = ["HLS_PART", "layer_list", "build_model", "traced_layers", "loop_work"]

# The PYNQ-Z2's Zynq-7020: an edge board a Vitis HLS user would target (deploy.boards).
HLS_PART = "xc7z020clg400-1"
_LEAK_CODE = {"none": 0, "shift": 1, "fixed": 2}


def _signed_bits(bound: int) -> int:
    """Width of a signed integer holding every value in [-bound, bound]."""
    return max(int(bound), 1).bit_length() + 1


def _taps(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the kept synapses per output channel: (start [O+1], flat position, weight)."""
    rows = weight.reshape(weight.shape[0], -1)
    out_ch, pos = np.nonzero(rows)                 # row-major: grouped by channel, positions ascending
    start = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(rows, axis=1), out=start[1:])
    return start, pos.astype(np.int64), rows[out_ch, pos].astype(np.int64)


def _neuron_fields(g: Graph, l: Layer, max_acc: int) -> dict:
    """The LIF neuron's constants and its live/bias/threshold tables, types sized from
    ``max_acc``, the layer's largest |accumulation| in one step."""
    nm = g.tensor(l, "neuron_mask").astype(bool).reshape(-1)
    live = np.flatnonzero(nm).astype(np.int64)
    if live.size == 0:
        live = np.zeros(1, np.int64)               # an all-pruned layer: n_live = 0, array kept at 1
    bias = g.tensor(l, "bias").astype(np.int64)
    thr = g.tensor(l, "threshold").astype(np.int64)
    n = l.neuron
    mem = 1 << (n.membrane_bits - 1)
    h_bound = mem * max(1, n.leak_mult) + (max_acc << l.input_shift) + int(np.abs(bias).max(initial=0)) \
        + int(np.abs(thr).max(initial=0))
    oc, oh, ow = (l.out_shape[0], 1, 1) if len(l.out_shape) == 1 else l.out_shape
    return {
        "name": l.name, "T": g.T, "out_c": oc, "out_h": oh, "out_w": ow, "n_out": oc * oh * ow,
        "n_live": int(nm.sum()), "input_shift": l.input_shift,
        "leak_code": _LEAK_CODE[n.leak], "leak_shift": n.leak_shift, "leak_mult": n.leak_mult,
        "leak_frac_bits": n.leak_frac_bits, "soft_reset": n.reset == "soft",
        "vmin": n.vmin, "vmax": n.vmax, "membrane_bits": n.membrane_bits,
        "acc_bits": _signed_bits(max_acc), "wide_bits": _signed_bits(h_bound),
        "tables": {"live": live, "bias": bias, "threshold": thr},
    }


def _geometry(shape: tuple) -> tuple[int, int, int]:
    """(C, H, W) of a tensor: a flat vector is C x 1 x 1."""
    return (shape[0], 1, 1) if len(shape) == 1 else tuple(shape)


def _binary(w: np.ndarray) -> bool:
    """Are the weights +-1 (or 0, pruned)?  Then the C++ adds or subtracts: no multiply."""
    return bool(np.isin(w, (-1, 0, 1)).all())


def _synapses(w: np.ndarray, max_in: int) -> tuple[dict, int]:
    """The kept-synapse tables of weights ``w`` and the bound on their accumulation."""
    start, taps, tap_w = _taps(w.astype(np.int64))
    if taps.size == 0:                             # keep the C arrays non-empty; the CSR has no entry
        taps, tap_w = np.zeros(1, np.int64), np.ones(1, np.int64)
    fan = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    return {"tap_start": start, "taps": taps, "tap_w": tap_w}, max_in * fan


def _neuron_layer(g: Graph, l: Layer, src_shapes: list[tuple], max_in: list[int], per_step: list[bool]) -> dict:
    """A conv or linear LIF layer; with a skip input (two sources) a `SpikingSkipLIF`."""
    tables, max_acc = _synapses(g.tensor(l, "weight"), max_in[0])
    c, h, wd = _geometry(src_shapes[0])
    conv = l.kind == "conv"
    d = {"class_name": "SpikingLIF", "in_c": c, "in_h": h, "in_w": wd,
         "kernel": l.kernel if conv else 1, "stride": l.stride if conv else 1, "padding": l.padding if conv else 0,
         "input_per_step": per_step[0], "n_taps": len(tables["taps"]), "binary": _binary(g.tensor(l, "weight"))}
    if l.has_skip:
        skip, skip_acc = _synapses(g.tensor(l, "skip_weight"), max_in[1])
        max_acc += skip_acc
        sc, sh, sw = _geometry(src_shapes[1])
        d.update({"class_name": "SpikingSkipLIF", "skip_c": sc, "skip_h": sh, "skip_w": sw,
                  "skip_kernel": l.skip_kernel if conv else 1, "skip_stride": l.skip_stride if conv else 1,
                  "skip_padding": l.skip_padding if conv else 0, "skip_per_step": per_step[1],
                  "n_skip_taps": len(skip["taps"]),
                  "skip_binary": _binary(g.tensor(l, "skip_weight"))})
        tables.update({"skip_" + k: v for k, v in skip.items()})
    fields = _neuron_fields(g, l, max_acc)
    fields["tables"].update(tables)
    return {**fields, **d}


def _attention_layer(g: Graph, l: Layer) -> dict:
    """Spiking self-attention: its accumulation is at most tokens x (channels per head)."""
    c, h, w = l.out_shape
    dh = c // l.heads
    return {**_neuron_fields(g, l, h * w * dh), "class_name": "SpikeAttention", "heads": l.heads,
            "score_bits": max(dh.bit_length(), 1),
            # lif_config's synapse geometry, unused by spike_attention: Q, K, V have its shape
            "in_c": c, "in_h": h, "in_w": w, "kernel": 1, "stride": 1, "padding": 0, "input_per_step": True,
            "n_taps": 1, "binary": True}


def layer_list(g: Graph) -> list[dict]:
    """The hls4ml layer dictionaries of an integer IR, in execution order.  The IR's graph
    is kept as it is: every layer names its hls4ml inputs (a residual layer two, attention
    three), so a residual IR needs no copy neurons here."""
    if g.input.events:
        raise UnsupportedError("the IR's input is 'events' (a binary frame per timestep): the HLS path's input is "
                               "a pixel image entering every timestep ('direct')")
    c, h, w = g.input.shape
    layers: list[dict] = [{"class_name": "InputLayer", "name": "image", "input_shape": [c * h * w]}]
    sources = g.sources()
    # per IR tensor: the hls4ml layer that holds it (flatten is a no-op on the [T][C][H][W]
    # layout), its largest value, whether it holds spikes (one frame per step) and its shape
    held = {INPUT: "image"}
    max_out = {INPUT: (1 << g.input.bits) - 1}
    spiking = {INPUT: False}
    shape = {INPUT: tuple(g.input.shape)}
    for l in g.layers:
        srcs = sources[l.name]
        inputs = [held[s] for s in srcs]
        if l.kind in ("conv", "linear"):
            d = _neuron_layer(g, l, [shape[s] for s in srcs], [max_out[s] for s in srcs], [spiking[s] for s in srcs])
        elif l.kind == "attention":
            d = _attention_layer(g, l)
        elif l.kind == "pool":
            if not spiking[srcs[0]]:
                raise UnsupportedError(f"layer {l.name!r} (pool): the HLS path pools spikes only; put a conv layer "
                                       "before the first pool")
            pc, ph, pw = l.in_shape
            d = {"class_name": "SpikePool", "name": l.name, "T": g.T, "c": pc, "in_h": ph, "in_w": pw,
                 "kernel": l.kernel, "out_h": l.out_shape[1], "out_w": l.out_shape[2]}
        elif l.kind == "flatten":
            held[l.name], max_out[l.name], spiking[l.name] = inputs[0], max_out[srcs[0]], spiking[srcs[0]]
            shape[l.name] = tuple(l.out_shape)
            continue
        elif l.kind == "output":
            if not spiking[srcs[0]]:
                raise UnsupportedError(f"layer {l.name!r} (output): the HLS readout reads spikes; the IR has no "
                                       "neuron layer before it")
            wt = g.tensor(l, "weight").astype(np.int64)
            tables, _ = _synapses(wt, 1)
            bound = g.T * int(np.abs(wt).sum(axis=1).max(initial=0))
            d = {"class_name": "SpikeReadout", "name": l.name, "T": g.T, "n_in": wt.shape[1],
                 "n_classes": wt.shape[0], "n_taps": len(tables["taps"]), "binary": _binary(wt),
                 "score_bits": _signed_bits(bound), "tables": tables}
        else:
            raise UnsupportedError(f"layer {l.name!r}: kind {l.kind!r} has no HLS implementation "
                                   "(the HLS path takes conv, linear, attention, pool, flatten, output)")
        d["inputs"] = inputs
        layers.append(d)
        held[l.name], max_out[l.name], spiking[l.name] = l.name, 1, True
        shape[l.name] = tuple(l.out_shape)
    if layers[-1]["class_name"] != "SpikeReadout":
        raise UnsupportedError("the IR's last layer must be the output readout for the HLS path")
    return layers


def loop_work(g: Graph) -> dict:
    """Inner-loop iterations per image of the generated C++ next to what a dense loop would
    do, a static count from the tables.  A conv/linear layer: `T x sum over live neurons of
    their channel's kept synapses` (main and skip; padding taps included) against every
    neuron and every weight position.  Attention: the heads' token-by-token scores (`T x C x
    tokens^2`, one AND per channel) plus `T x live neurons x tokens` value reads, against all
    neurons."""
    out = {}
    for l in g.layers:
        if l.neuron is None:
            continue
        plane = int(np.prod(l.out_shape[1:])) if len(l.out_shape) == 3 else 1
        per_channel_live = g.tensor(l, "neuron_mask").reshape(l.out_shape[0], -1).sum(axis=1)
        neurons = int(l.out_shape[0] * plane)
        if l.kind == "attention":
            scores = g.T * l.out_shape[0] * plane * plane
            out[l.name] = {"kept": int(scores + g.T * per_channel_live.sum() * plane),
                           "dense": int(scores + g.T * neurons * plane),
                           "live_neurons": int(per_channel_live.sum()), "neurons": neurons}
            continue
        rows = [g.tensor(l, "weight").reshape(l.out_shape[0], -1)]
        if l.has_skip:
            rows.append(g.tensor(l, "skip_weight").reshape(l.out_shape[0], -1))
        out[l.name] = {"kept": int(sum(g.T * (per_channel_live * np.count_nonzero(r, axis=1)).sum() for r in rows)),
                       "dense": int(sum(g.T * r.size * plane for r in rows)),
                       "live_neurons": int(per_channel_live.sum()), "neurons": neurons}
    return out


def traced_layers(g: Graph) -> list[str]:
    """Names of the neuron layers whose spike trains the C simulation returns."""
    return [l.name for l in g.layers if l.neuron is not None]


def build_model(g: Graph, out_dir: Path, backend: str = "Vitis", part: str = HLS_PART,
                project_name: str = "ticketforge", trace: bool = True) -> ModelGraph:
    """An hls4ml ModelGraph of the IR, its project folder `out_dir` (written on `compile`)."""
    register(backend)
    layers = layer_list(g)
    config = {
        "OutputDir": str(out_dir), "ProjectName": project_name, "Backend": backend, "Part": part,
        "ClockPeriod": 10, "IOType": "io_parallel",
        "HLSConfig": {
            # DATAFLOW: one process per layer, spike tensors in block RAM between them.  hls4ml's
            # io_parallel default (PIPELINE over the whole top) would unroll every loop of a
            # network this size; the layer loops here have data-dependent bounds by design.
            "Model": {"Precision": "ap_int<16>", "ReuseFactor": 1, "Strategy": "Resource",
                      "PipelineStyle": "dataflow"},
            "LayerName": {"image": {"Precision": {"result": f"ap_uint<{g.input.bits}>"}},
                          **{name: {"Trace": trace} for name in traced_layers(g)}},
        },
    }
    model = ModelGraph.from_layer_list(config, layers)
    for layer in model.get_layers():
        if isinstance(layer, (SpikingLIF, SpikingSkipLIF, SpikeAttention, SpikePool)):
            # hls4ml partitions every io_parallel tensor into registers; a spike tensor has
            # T*C*H*W entries (100,352 for vgg9's conv1): it stays one array, in block RAM
            layer.get_output_variable().pragma = None
    return model
