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

from ticketforge.ir.chain import chain_form
from ticketforge.hls.extension import SpikePool, SpikingLIF, register
from ticketforge.errors import UnsupportedError
from ticketforge.ir.schema import Graph, Layer

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


def _neuron_layer(g: Graph, l: Layer, max_in: int, first: bool) -> dict:
    w = g.tensor(l, "weight").astype(np.int64)
    start, taps, tap_w = _taps(w)
    if taps.size == 0:                             # keep the C arrays non-empty; the CSR has no entry
        taps, tap_w = np.zeros(1, np.int64), np.ones(1, np.int64)
    nm = g.tensor(l, "neuron_mask").astype(bool).reshape(-1)
    live = np.flatnonzero(nm).astype(np.int64)
    if live.size == 0:
        live = np.zeros(1, np.int64)               # an all-pruned layer: n_live = 0, array kept at 1
    n_live = int(nm.sum())
    bias = g.tensor(l, "bias").astype(np.int64)
    thr = g.tensor(l, "threshold").astype(np.int64)
    n = l.neuron
    fan = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max()) if w.size else 0
    max_acc = max_in * fan
    mem = 1 << (n.membrane_bits - 1)
    h_bound = mem * max(1, n.leak_mult) + (max_acc << l.input_shift) + int(np.abs(bias).max(initial=0)) \
        + int(np.abs(thr).max(initial=0))
    if l.kind == "conv":
        c, h, wd = l.in_shape
        oc, oh, ow = l.out_shape
        k, stride, pad = l.kernel, l.stride, l.padding
    else:
        c, h, wd = l.in_shape[0], 1, 1
        oc, oh, ow = l.out_shape[0], 1, 1
        k, stride, pad = 1, 1, 0
    return {
        "class_name": "SpikingLIF", "name": l.name, "T": g.T,
        "in_c": c, "in_h": h, "in_w": wd, "out_c": oc, "out_h": oh, "out_w": ow,
        "kernel": k, "stride": stride, "padding": pad, "input_per_step": not first,
        "n_out": oc * oh * ow, "n_live": n_live, "n_taps": len(taps),
        "binary": l.weight_bits == 2, "input_shift": l.input_shift,
        "leak_code": _LEAK_CODE[n.leak], "leak_shift": n.leak_shift, "leak_mult": n.leak_mult,
        "leak_frac_bits": n.leak_frac_bits, "soft_reset": n.reset == "soft",
        "vmin": n.vmin, "vmax": n.vmax, "membrane_bits": n.membrane_bits,
        "acc_bits": _signed_bits(max_acc), "wide_bits": _signed_bits(h_bound),
        "tables": {"live": live, "tap_start": start, "taps": taps, "tap_w": tap_w, "bias": bias,
                   "threshold": thr},
    }


def layer_list(g: Graph) -> list[dict]:
    """The hls4ml layer dictionaries of an integer IR, in execution order."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    if g.input.events:
        raise UnsupportedError("the IR's input is 'events' (a binary frame per timestep): the HLS path's input is "
                               "a pixel image entering every timestep ('direct')")
    c, h, w = g.input.shape
    layers: list[dict] = [{"class_name": "InputLayer", "name": "image", "input_shape": [c * h * w]}]
    max_in = (1 << g.input.bits) - 1
    spiking = False                                # does the running tensor hold spikes (per step)?
    for l in g.layers:
        if l.kind in ("conv", "linear"):
            layers.append(_neuron_layer(g, l, max_in, first=not spiking))
            spiking, max_in = True, 1
        elif l.kind == "pool":
            if not spiking:
                raise UnsupportedError(f"layer {l.name!r} (pool): the HLS path pools spikes only; put a conv layer "
                              "before the first pool")
            pc, ph, pw = l.in_shape
            layers.append({"class_name": "SpikePool", "name": l.name, "T": g.T, "c": pc, "in_h": ph, "in_w": pw,
                           "kernel": l.kernel, "out_h": l.out_shape[1], "out_w": l.out_shape[2]})
        elif l.kind == "flatten":
            continue                               # [T][C][H][W] is already flat in C, H, W order
        elif l.kind == "output":
            if not spiking:
                raise UnsupportedError(f"layer {l.name!r} (output): the HLS readout reads spikes; the IR has no "
                              "neuron layer before it")
            wt = g.tensor(l, "weight").astype(np.int64)
            start, taps, tap_w = _taps(wt)
            if taps.size == 0:
                taps, tap_w = np.zeros(1, np.int64), np.ones(1, np.int64)
            bound = g.T * int(np.abs(wt).sum(axis=1).max(initial=0))
            layers.append({"class_name": "SpikeReadout", "name": l.name, "T": g.T, "n_in": wt.shape[1],
                           "n_classes": wt.shape[0], "n_taps": len(taps), "binary": l.weight_bits == 2,
                           "score_bits": _signed_bits(bound),
                           "tables": {"tap_start": start, "taps": taps, "tap_w": tap_w}})
        else:
            raise UnsupportedError(f"layer {l.name!r}: kind {l.kind!r} has no HLS implementation "
                          "(the HLS path takes conv, linear, pool, flatten, output)")
    if layers[-1]["class_name"] != "SpikeReadout":
        raise UnsupportedError("the IR's last layer must be the output readout for the HLS path")
    return layers


def loop_work(g: Graph) -> dict:
    """Synapse-loop iterations per image of the generated C++ (`T x sum over live neurons of
    their channel's kept synapses`, a static count from the tables; padding taps included)
    next to what a dense loop would do (every neuron, every weight position)."""
    out = {}
    for l in g.layers:
        if l.neuron is None:
            continue
        rows = g.tensor(l, "weight").reshape(l.out_shape[0], -1)
        per_channel_live = g.tensor(l, "neuron_mask").reshape(l.out_shape[0], -1).sum(axis=1)
        plane = int(np.prod(l.out_shape[1:])) if l.kind == "conv" else 1
        out[l.name] = {"kept": int(g.T * (per_channel_live * np.count_nonzero(rows, axis=1)).sum()),
                       "dense": int(g.T * rows.size * plane),
                       "live_neurons": int(per_channel_live.sum()), "neurons": int(l.out_shape[0] * plane)}
    return out


def traced_layers(g: Graph) -> list[str]:
    """Names of the neuron layers whose spike trains the C simulation returns."""
    return [l.name for l in g.layers if l.kind in ("conv", "linear")]


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
        if isinstance(layer, (SpikingLIF, SpikePool)):
            # hls4ml partitions every io_parallel tensor into registers; a spike tensor has
            # T*C*H*W entries (100,352 for vgg9's conv1): it stays one array, in block RAM
            layer.get_output_variable().pragma = None
    return model
