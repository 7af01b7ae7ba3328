"""Exact cycle and counter model of the accelerator (`accel.py`), from an IR and the
golden interpreter's events.  Tests prove the Amaranth RTL (and, in `sim/`, its Verilog
on Icarus and Verilator) equal to it cycle for cycle and count for count.

Schedule, per image (``busy`` cycles; the status block's cycle counter):

- ``LOAD``: one cycle per input pixel, and ``LOAD_EXTRA`` (the pixel stream is registered);
  an ``events`` input loads at every timestep: one cycle per AER word (the timestep's
  events and its step word, `rtl.aer`) and ``LOAD_EXTRA``;
- per timestep, each layer in order (flatten costs nothing), then 1 cycle (``NEXT_T``):
  - conv / linear / readout, **ACC**: ``1`` (reader set-up) + ``RUN`` + ``ACC_DRAIN``.
    ``RUN`` is ``1`` when the source has no event; otherwise the *per-PE row streams*:
    the reader broadcasts event e (in queue order, see `_event_order`) at cycle ``b[e]``
    into every PE's FIFO of depth D, and PE p pops it at ``s_p[e]`` and then walks its
    own ``c_p[e]`` lanes of the event's source, one per cycle (``program.LayerProgram.
    walk_counts``: its lanes, and its empty words with implicit addresses; an event
    without lanes on a PE costs that PE one cycle)::

        b[0] = 1,   b[e] = max(b[e-1] + 1, max_p s_p[e-D] + 1)      (FIFO credit)
        s_p[e] = max(b[e] + READ_LATENCY, f_p[e-1]),   f_p[-1] = 0
        f_p[e] = s_p[e] + max(1, c_p[e]),              RUN = max_p f_p[last]

  - conv / linear, **UPD**: ``max over PEs of slots on the PE`` + ``UPD_DRAIN`` (nothing
    when the layer has no slot at all);
  - pool, **POOL**: ``1`` + (``1`` without events, else ``READ_LATENCY + events``) +
    ``POOL_DRAIN``; dense adds the sweep: one cycle per pooled position + ``SWEEP_DRAIN``;
- ``OUT``: one cycle per class score.

Events, in the order the reader meets them: the non-zero pixels in C-H-W order (dense:
every pixel; an ``events`` input: the timestep's events in C-H-W order, the order
`rtl.aer.aer_words` sends them); the spikes of the previous neuron layer, PE 0's queue first, each queue in
slot order (dense: every neuron, spiking or not); a pool's OR-merged spikes in the order
their first spike arrived (dense: every pooled position, C-H-W).

Ideal bound per image = (unmasked synaptic events + live neuron updates) / P, where an
unmasked synaptic event is one accumulate of an event into a live neuron over a kept
synapse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.ir.golden import GoldenResult, or_pool, run
from ticketforge.errors import ConfigError
from ticketforge.ir.schema import Graph
from ticketforge.rtl.program import Program, kept_synapses, map_graph

__all__ = ["STATUS_LATENCY", "LOAD_EXTRA", "READ_LATENCY", "ACC_DRAIN", "UPD_DRAIN", "POOL_DRAIN", "SWEEP_DRAIN", "COUNTERS",
           "MIN_FIFO_DEPTH", "ImageCycles", "cycle_model", "load_cycles", "layer_inputs", "default_fifo_depth", "check_fifo_depth"]

STATUS_LATENCY = 2        # status_addr -> status_data: both registered (not counted in any image's cycles)
LOAD_EXTRA = 1            # the registered pixel stream: a pixel is written the cycle after it is taken
READ_LATENCY = 4          # reader: queue read -> event register -> row-pointer read -> FIFO push
ACC_DRAIN = 3             # PE pipeline after the last row: lane decode, slot lookup, read-add-write
UPD_DRAIN = 2             # update pipeline: slot read, membrane+parameter read, update and write
POOL_DRAIN = 2            # event register -> bitmap read -> set and queue
SWEEP_DRAIN = 1
# Per-PE event FIFOs: READ_LATENCY + 1 entries keep a PE that takes one cycle per event
# (and the pool, which pops every cycle) from ever waiting on the reader; deeper FIFOs let
# the PEs drift further apart, which is what absorbs their uneven lane counts per event.
MIN_FIFO_DEPTH = READ_LATENCY + 1
MAX_FIFO_DEPTH = 1024
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


def layer_inputs(g: Graph, images: np.ndarray, spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each layer, its input per timestep: [N, T, *in_shape] (0/1 or pixel codes)."""
    n = len(images)
    x = images if g.input.events else np.broadcast_to(images[:, None], (n, g.T) + images.shape[1:])
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


def default_fifo_depth(P: int) -> int:
    """The generator's default per-PE FIFO depth, 2 P (at least MIN_FIFO_DEPTH): how far
    the fastest and the slowest PE drift apart grows with the number of PEs, and one PE
    needs no slack at all.  Measured on vgg9_binw (bench/fifo_depth.py, docs/RTL.md)."""
    return max(MIN_FIFO_DEPTH, 2 * int(P))


def check_fifo_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or \
            not MIN_FIFO_DEPTH <= depth <= MAX_FIFO_DEPTH:
        raise ConfigError(f"fifo_depth must be an integer in [{MIN_FIFO_DEPTH}, {MAX_FIFO_DEPTH}] "
                          f"(READ_LATENCY + 1 at least), got {depth!r} (--fifo-depth / hw.fifo_depth)")
    return int(depth)


def _lanes_of_positions(lp, in_shape, counts: np.ndarray | None = None) -> np.ndarray:
    """[positions, P]: each PE's lanes (or ``counts`` per source, e.g. words) for an event
    at each flat (C-H-W) input position."""
    counts = lp.lane_counts if counts is None else counts
    if lp.kind == "conv":
        c, h, w = in_shape
        my, mx = lp.class_shape
        per = counts.reshape(c, my, mx, -1)[:, (np.arange(h) % my)[:, None], (np.arange(w) % mx)[None, :]]
        return per.reshape(c * h * w, -1)
    return counts


def _queue_order(lp, out_shape) -> np.ndarray:
    """Flat output positions of a neuron layer in the order its spike queues are read:
    PE 0's slots first, each PE's in slot order."""
    shape = tuple(out_shape) if len(out_shape) == 3 else (out_shape[0], 1, 1)
    parts = [np.ravel_multi_index((s[:, 1], s[:, 2], s[:, 3]), shape) for s in lp.slots if len(s)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _event_order(g: Graph, prog: Program, images: np.ndarray, spikes: dict, dense: bool):
    """For every weighted layer: per image and timestep, the flat input positions of its
    events in the order the reader broadcasts them (list over images of lists over t)."""
    n, T = len(images), g.T
    flat_in = np.asarray(images).reshape(n, T if g.input.events else 1, -1)
    if dense:
        cur = [[np.arange(flat_in.shape[2])] * T for _ in range(n)]
    elif g.input.events:
        cur = [[np.flatnonzero(flat_in[i, t]) for t in range(T)] for i in range(n)]
    else:
        cur = [[np.flatnonzero(flat_in[i, 0])] * T for i in range(n)]
    out = {}
    for l, lp in zip(g.layers, prog.layers):
        if l.has_weights:
            out[l.name] = cur
        if l.kind in ("conv", "linear"):
            order = _queue_order(lp, l.out_shape)
            if dense:
                cur = [[order] * T for _ in range(n)]
            else:
                sp = spikes[l.name].reshape(n, T, -1)
                cur = [[order[sp[i, t, order] != 0] for t in range(T)] for i in range(n)]
        elif l.kind == "pool":
            c, h, w = l.in_shape
            _, hp, wp = l.out_shape
            k = l.kernel
            if dense:
                cur = [[np.arange(c * hp * wp)] * T for _ in range(n)]
                continue
            nxt = []
            for per_t in cur:
                row = []
                for ev in per_t:
                    cc, yy, xx = np.unravel_index(ev, (c, h, w))
                    py, px = yy // k, xx // k
                    keep = (py < hp) & (px < wp)
                    pooled = ((cc * hp + py) * wp + px)[keep]
                    _, first = np.unique(pooled, return_index=True)
                    row.append(pooled[np.sort(first)])
                nxt.append(row)
            cur = nxt
    return out


def _stream_run(seqs: list[np.ndarray], lanes: np.ndarray, depth: int) -> np.ndarray:
    """RUN cycles of one weighted layer and timestep per image (module docstring's
    recurrence), vectorised over images and PEs; ``seqs``: each image's event positions."""
    n = len(seqs)
    E = np.array([len(s) for s in seqs], np.int64)
    run_c = np.ones(n, np.int64)
    if not n or E.max() == 0:
        return run_c
    pos = np.zeros((n, int(E.max())), np.int64)
    for i, s in enumerate(seqs):
        pos[i, :len(s)] = s
    cost = np.maximum(lanes, 1)
    b = np.zeros(n, np.int64)
    finish = np.zeros((n, lanes.shape[1]), np.int64)
    pops = np.zeros((depth, n, lanes.shape[1]), np.int64)      # s_p of the last `depth` events
    for e in range(int(E.max())):
        live = (e < E)[:, None]
        be = b + 1
        if e >= depth:
            be = np.maximum(be, pops[e % depth].max(1) + 1)
        s = np.maximum(be[:, None] + READ_LATENCY, finish)
        pops[e % depth] = s
        finish = np.where(live, s + cost[pos[:, e]], finish)
        b = np.where(live[:, 0], be, b)
    return np.where(E > 0, finish.max(1), 1)


def _fan_out(l, g: Graph, dense: bool) -> np.ndarray:
    """Per input position (the layer's ``in_shape``), how many accumulates one event there
    causes: the kept synapses with a non-zero weight (`program.kept_synapses`; dense: all)
    from it into neurons with a slot (the output layer and dense: all neurons).  An image's
    accumulates are then its events weighted by this map, one dot product instead of a
    convolution per image and timestep."""
    mask = kept_synapses(g, l).astype(np.int64)
    if dense:
        mask = np.ones_like(mask)
    live = (np.ones(l.out_shape, np.int64) if dense or l.kind == "output"
            else g.tensor(l, "neuron_mask").astype(np.int64))
    if l.kind != "conv":
        return live @ mask                                             # [in]
    C, H, W = l.in_shape
    _, Ho, Wo = l.out_shape
    k, s, p = mask.shape[-1], l.stride, l.padding
    fan = np.zeros((C, H + 2 * p, W + 2 * p), np.int64)
    for ky in range(k):
        for kx in range(k):
            # the event at padded (c, y*s+ky, x*s+kx) reaches neuron (o, y, x) over tap (ky, kx)
            fan[:, ky:ky + s * Ho:s, kx:kx + s * Wo:s] += np.einsum("oyx,oc->cyx", live, mask[:, :, ky, kx])
    return fan[:, p:p + H, p:p + W]


def load_cycles(g: Graph, images: np.ndarray, dense: bool = False) -> np.ndarray:
    """Per image, the cycles of ``LOAD``: a pixel a cycle and ``LOAD_EXTRA``; an ``events``
    input, at every timestep, a cycle per AER word (its events, every position when dense,
    and the step word) and ``LOAD_EXTRA``."""
    n, T, n_in = len(images), g.T, int(np.prod(g.input.shape))
    if not g.input.events:
        return np.full(n, n_in + LOAD_EXTRA, np.int64)
    words = np.full(n, T * n_in, np.int64) if dense else (np.asarray(images).reshape(n, -1) != 0).sum(1)
    return words.astype(np.int64) + T * (1 + LOAD_EXTRA)


def cycle_model(g: Graph, images: np.ndarray, P: int, dense: bool = False,
                gold: GoldenResult | None = None, prog: Program | None = None,
                fifo_depth: int | None = None) -> list[ImageCycles]:
    """Exact cycles and status counters per image for `images` (``gold``: the golden
    interpreter's traced run of the same images, if already computed; ``fifo_depth``: the
    generator's per-PE FIFO depth, default `default_fifo_depth`)."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    prog = prog or map_graph(g, P, dense)
    depth = check_fifo_depth(default_fifo_depth(P) if fifo_depth is None else fifo_depth)
    images = np.asarray(images).astype(np.int64)
    gold = gold if gold is not None else run(g, images, trace=True)
    ins = layer_inputs(g, images, gold.spikes)
    n, T = len(images), g.T
    order = _event_order(g, prog, images, gold.spikes, dense)
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
            lanes = _lanes_of_positions(lp, l.in_shape, lp.walk_counts)
            if dense:           # every image and timestep meets the same events: one run serves all
                run_c = np.full((n, T), _stream_run([order[l.name][0][0]], lanes, depth)[0], np.int64)
            else:
                run_c = np.stack([_stream_run([order[l.name][i][t] for i in range(n)], lanes, depth)
                                  for t in range(T)], 1)
            c = (1 + run_c + ACC_DRAIN).sum(1)
            # a weight read is one synapse word read by one PE (its lanes come out of it)
            words = _lanes_of_positions(lp, l.in_shape, lp.word_counts).sum(1)
            cnt["weight_reads"] += (events.reshape(n, T, -1) * words).reshape(n, -1).sum(1)
            # (events summed over T per position, weighted by the accumulates one event causes)
            acc = events.reshape(n, T, -1).sum(1) @ _fan_out(l, g, dense).reshape(-1)
            cnt["accumulates"] += acc
            layer_syn = acc if not dense else (x != 0).reshape(n, T, -1).sum(1) @ _fan_out(l, g, False).reshape(-1)
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
    totals = sum(per_layer.values()) + load_cycles(g, images, dense) + T + g.layers[-1].out_shape[0]
    return [ImageCycles(int(totals[i]), {k: int(v[i]) for k, v in per_layer.items()}, int(syn[i]),
                        int(upd[i]), (int(syn[i]) + int(upd[i])) / P,
                        {k: {c: int(v[i]) for c, v in d.items()} for k, d in counters.items()},
                        {k: int(v[i]) / P for k, v in ideal.items()})
            for i in range(n)]
