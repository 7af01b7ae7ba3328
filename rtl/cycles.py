"""Cycle model of the event-driven accelerator, from an IR and the golden interpreter's events.

Timing contract (the Amaranth generator must meet it exactly; until it exists this is the
specification of its schedule):

- per image: ``load`` = one cycle per input pixel (the pixel stream), then T timesteps,
  then one cycle per class score on the output stream;
- per timestep, the layers in order:
  - conv / linear / readout, **accumulate**: for every input event, 1 cycle (event fetch
    and row-pointer lookup) + ``rows[source]`` cycles (see ``program.py``), then
    ``PIPE`` cycles to drain the pipeline;
  - conv / linear, **update**: ``max_p slots_on_p`` cycles (each PE updates one of its
    neurons per cycle: leak, threshold, reset, saturation, spike to the event queue) +
    ``PIPE``;
  - pool: 1 cycle per input event (OR-merge into the pooled event queue) + ``PIPE``;
  - flatten: 0 cycles (event ids are already row-major).
- Input events: the non-zero pixels (sparse) or every pixel (dense); spike events: the
  spikes of the previous layer (sparse) or every neuron's output, 0 or 1 (dense).

Ideal bound per image = (unmasked synaptic events + live neuron updates) / P, where an
unmasked synaptic event is one accumulate of an event into a live neuron over a kept
synapse.  Everything is counted from the golden interpreter's spike trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ticketforge.model.ir.golden import conv_accumulate, or_pool, run
from ticketforge.model.ir.schema import Graph
from ticketforge.rtl.program import map_graph

__all__ = ["PIPE", "ImageCycles", "cycle_model"]

PIPE = 3


@dataclass
class ImageCycles:
    total: int
    per_layer: dict[str, int]
    synaptic_events: int        # accumulates into live neurons over kept synapses
    neuron_updates: int         # live neuron updates
    ideal_bound: float


def _inputs_per_layer(g: Graph, images: np.ndarray, spikes: dict[str, np.ndarray]):
    """For each layer, its input per timestep: [N, T, *in_shape] (0/1 or pixel codes)."""
    n = len(images)
    x = np.broadcast_to(images[:, None], (n, g.T) + images.shape[1:])
    out = {}
    for l in g.layers:
        out[l.name] = x
        if l.kind == "pool":
            x = or_pool(x.reshape((-1,) + x.shape[2:]), l.kernel).reshape((n, g.T) + tuple(l.out_shape))
        elif l.kind == "flatten":
            x = x.reshape(n, g.T, -1)
        elif l.kind in ("conv", "linear"):
            x = spikes[l.name]
    return out


def cycle_model(g: Graph, images: np.ndarray, P: int, dense: bool = False) -> list[ImageCycles]:
    """Exact cycles per image (and the counts behind the ideal bound) for `images`."""
    prog = map_graph(g, P, dense)
    gold = run(g, images, trace=True)
    ins = _inputs_per_layer(g, np.asarray(images).astype(np.int64), gold.spikes)
    n = len(images)
    totals = np.zeros(n, np.int64)
    per_layer = {l.name: np.zeros(n, np.int64) for l in g.layers}
    syn = np.zeros(n, np.int64)
    upd = np.zeros(n, np.int64)
    in_pixels = int(np.prod(g.input.shape))
    for l in g.layers:
        x = ins[l.name]                                           # [N, T, *in]
        if l.kind == "flatten":
            continue
        events = x != 0
        if dense:
            events = np.ones_like(events)
        if l.kind == "pool":
            c = events.reshape(n, -1).sum(1) + PIPE * g.T
        else:
            m = prog.layers[l.name]
            if l.kind == "conv":
                _, h, w = l.in_shape                                          # by channel and position class
                my, mx = m.rows.shape[1:]
                per_event_rows = m.rows[:, np.arange(h)[:, None] % my, np.arange(w)[None, :] % mx][None, None]
            else:
                per_event_rows = m.rows[None, None, :]
            c = (events * (1 + per_event_rows)).reshape(n, -1).sum(1) + PIPE * g.T
            if l.kind != "output":
                c = c + (m.update_cycles + PIPE) * g.T
                upd += int(g.tensor(l, "neuron_mask").sum()) * g.T      # live neurons, also when dense
            syn += _synaptic_events(g, l, (x != 0).astype(np.int64))
        per_layer[l.name] += c
        totals += c
    totals += in_pixels + g.layers[-1].out_shape[0]
    return [ImageCycles(int(totals[i]), {k: int(v[i]) for k, v in per_layer.items()}, int(syn[i]),
                        int(upd[i]), (int(syn[i]) + int(upd[i])) / P) for i in range(n)]


def _synaptic_events(g: Graph, l, active: np.ndarray) -> np.ndarray:
    """Accumulates into live neurons over kept synapses, per image, summed over T."""
    n, T = active.shape[:2]
    mask = g.tensor(l, "mask").astype(np.int64)
    flat = active.reshape((n * T,) + active.shape[2:])
    if l.kind == "conv":
        fan = conv_accumulate(flat, mask, l.stride, l.padding)            # [N*T, O, Ho, Wo]
    else:
        fan = flat @ mask.T
    live = g.tensor(l, "neuron_mask").astype(np.int64)[None] if l.kind != "output" else 1
    return (fan * live).reshape(n, -1).sum(1)
