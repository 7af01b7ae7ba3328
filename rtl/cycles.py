"""Exact cycle and counter model of the accelerator (`accel.py`), from an IR and the
golden interpreter's events.  Tests prove the Amaranth RTL (and, in `sim/`, its Verilog
on Icarus and Verilator) equal to it cycle for cycle and count for count.

Schedule, per image (``busy`` cycles; the status block's cycle counter):

- ``LOAD``: one cycle per input pixel;
- per timestep, each layer in order (flatten costs nothing), then 1 cycle (``NEXT_T``):
  - conv / linear / readout, **ACC**: ``1`` (reader set-up) + ``1`` when the source has
    no event, else ``READ_LATENCY + 1 + sum over events of max(1, rows(event))``, then
    ``ACC_DRAIN``.  ``rows(event)`` is the number of rows of the event's source in the
    synapse store (`program.py`): one cycle per row, every PE doing at most one
    accumulate per row, and an event without rows costs one cycle;
  - conv / linear, **UPD**: ``max over PEs of slots on the PE`` + ``UPD_DRAIN`` (nothing
    when the layer has no slot at all);
  - pool, **POOL**: ``1`` + (``1`` without events, else ``READ_LATENCY + events``) +
    ``POOL_DRAIN``; dense adds the sweep: one cycle per pooled position + ``SWEEP_DRAIN``;
- ``OUT``: one cycle per class score.

Events: the non-zero pixels (dense: every pixel); the spikes of the previous neuron layer
(dense: every neuron, spiking or not); a pool's OR-merged spikes (dense: every pooled
position).

Ideal bound per image = (unmasked synaptic events + live neuron updates) / P, where an
unmasked synaptic event is one accumulate of an event into a live neuron over a kept
synapse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ticketforge.model.ir.golden import GoldenResult, conv_accumulate, or_pool, run
from ticketforge.model.ir.schema import Graph
from ticketforge.rtl.program import Program, map_graph

__all__ = ["READ_LATENCY", "ACC_DRAIN", "UPD_DRAIN", "POOL_DRAIN", "SWEEP_DRAIN", "COUNTERS",
           "ImageCycles", "cycle_model"]

READ_LATENCY = 3          # reader: queue read -> row-pointer read -> FIFO push
ACC_DRAIN = 3             # PE pipeline after the last row: lane decode, slot lookup, read-add-write
UPD_DRAIN = 2             # update pipeline: slot read, membrane+parameter read, update and write
POOL_DRAIN = 1            # bitmap read -> set and queue
SWEEP_DRAIN = 1
COUNTERS = ("accumulates", "weight_reads", "membrane_reads", "membrane_writes", "neuron_updates", "spikes")


@dataclass
class ImageCycles:
    total: int
    per_layer: dict[str, int]
    synaptic_events: int        # accumulates into live neurons over kept synapses
    neuron_updates: int         # live neuron updates
    ideal_bound: float
    counters: dict[str, dict[str, int]] = field(default_factory=dict)   # layer -> COUNTERS -> count
    ideal_per_layer: dict[str, float] = field(default_factory=dict)     # the bound's share of each layer


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


def _rows_of_positions(lp, in_shape) -> np.ndarray:
    """Rows per input position of a weighted layer: [*in_shape]."""
    if lp.kind == "conv":
        _, h, w = in_shape
        my, mx = lp.class_shape
        rows = lp.rows_per_source.reshape(-1, my, mx)
        return rows[:, np.arange(h)[:, None] % my, np.arange(w)[None, :] % mx]
    return lp.rows_per_source.reshape(in_shape)


def _accumulates(l, g: Graph, active: np.ndarray, dense: bool) -> np.ndarray:
    """Accumulates the PEs perform, per image, summed over T: an event into a neuron with a
    slot over a synapse with a lane (dense: every synapse, every neuron, every event)."""
    n, T = active.shape[:2]
    flat = active.reshape((n * T,) + active.shape[2:]).astype(np.int64)
    mask = g.tensor(l, "mask").astype(np.int64)
    if dense:
        mask = np.ones_like(mask)
    if l.kind == "conv":
        fan = conv_accumulate(flat, mask, l.stride, l.padding)            # [N*T, O, Ho, Wo]
    else:
        fan = flat @ mask.T
    if l.kind != "output" and not dense:
        fan = fan * g.tensor(l, "neuron_mask").astype(np.int64)[None]
    return fan.reshape(n, -1).sum(1)


def cycle_model(g: Graph, images: np.ndarray, P: int, dense: bool = False,
                gold: GoldenResult | None = None, prog: Program | None = None) -> list[ImageCycles]:
    """Exact cycles and status counters per image for `images` (``gold``: the golden
    interpreter's traced run of the same images, if already computed)."""
    prog = prog or map_graph(g, P, dense)
    images = np.asarray(images).astype(np.int64)
    gold = gold if gold is not None else run(g, images, trace=True)
    ins = _inputs_per_layer(g, images, gold.spikes)
    n, T = len(images), g.T
    per_layer = {l.name: np.zeros(n, np.int64) for l in g.layers}
    counters = {l.name: {c: np.zeros(n, np.int64) for c in COUNTERS} for l in g.layers if l.kind != "flatten"}
    syn = np.zeros(n, np.int64)
    upd = np.zeros(n, np.int64)
    ideal = {l.name: np.zeros(n, np.int64) for l in g.layers}      # work (events + updates) per layer
    for l, lp in zip(g.layers, prog.layers):
        if l.kind == "flatten":
            continue
        x = ins[l.name]                                           # [N, T, *in]
        events = np.ones(x.shape, bool) if dense else x != 0
        n_events = events.reshape(n, T, -1).sum(2)                # [N, T]
        cnt = counters[l.name]
        if l.kind == "pool":
            run_c = np.where(n_events == 0, 1, READ_LATENCY + n_events)
            c = (1 + run_c + POOL_DRAIN).sum(1)
            if dense:
                c = c + T * (int(np.prod(l.out_shape)) + SWEEP_DRAIN)
            cnt["spikes"] += (or_pool(x.reshape((-1,) + x.shape[2:]), l.kernel) != 0).reshape(n, -1).sum(1, dtype=np.int64)
        else:
            rows = _rows_of_positions(lp, l.in_shape)[None, None]
            occupied = (events * np.maximum(1, rows)).reshape(n, T, -1).sum(2)
            run_c = np.where(n_events == 0, 1, READ_LATENCY + 1 + occupied)
            c = (1 + run_c + ACC_DRAIN).sum(1)
            cnt["weight_reads"] += (events * rows).reshape(n, -1).sum(1)
            acc = _accumulates(l, g, events, dense)
            cnt["accumulates"] += acc
            layer_syn = _accumulates(l, g, x != 0, False)
            syn += layer_syn
            ideal[l.name] += layer_syn
            if l.kind != "output":
                slots = int(lp.n_slots.sum())
                if lp.update_cycles:
                    c = c + T * (lp.update_cycles + UPD_DRAIN)
                cnt["neuron_updates"] += T * slots
                cnt["membrane_reads"] += acc + T * slots
                cnt["membrane_writes"] += acc + T * slots
                cnt["spikes"] += gold.spikes[l.name].reshape(n, -1).sum(1, dtype=np.int64)
                upd += int(g.tensor(l, "neuron_mask").sum()) * T          # live neurons, also when dense
                ideal[l.name] += int(g.tensor(l, "neuron_mask").sum()) * T
        per_layer[l.name] += c
    totals = sum(per_layer.values()) + int(np.prod(g.input.shape)) + T + g.layers[-1].out_shape[0]
    return [ImageCycles(int(totals[i]), {k: int(v[i]) for k, v in per_layer.items()}, int(syn[i]),
                        int(upd[i]), (int(syn[i]) + int(upd[i])) / P,
                        {k: {c: int(v[i]) for c, v in d.items()} for k, d in counters.items()},
                        {k: int(v[i]) / P for k, v in ideal.items()})
            for i in range(n)]
