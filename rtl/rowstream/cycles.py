"""Exact cycle and counter model of the rowstream accelerator (`accel.py`).

Two machines (``busy`` cycles, the status block's cycle counter, are A's):

- **A** runs the *passes*. ``LOAD``: one cycle per pixel (the host keeps ``valid`` high); a
  non-zero pixel (every pixel when dense) is appended to the pixel list.  Per weighted
  layer: ``LAYER_SETUP``, then per group of L neurons a pass per timestep over the layer's
  input list of that timestep: one event a cycle (its weight row read, its value multiplied
  into the L accumulators), plus ``PASS_END``.  The first layer reads the pixel list once
  (direct encoding: its input is the same at every timestep); the readout accumulates its T
  passes.  After a pass (the readout: after its T) A hands the sums to B (``HAND``: the
  first cycle in which B is idle) and starts the next pass; after the layer's last handoff
  it waits for B (``LWAIT``) before the next layer reads the spikes.  ``OUT``: one cycle per
  class score; then ``DONE``.
- **B** runs the *sweeps* on the handed-on sums (`lanes.MacLanes`' shadows) while A's
  next pass accumulates: the L neurons updated one a cycle (a spike appended to the next
  layer's list of that timestep), plus ``SWEEP_FILL`` for the parameter read; the first
  layer's handoff is T sweeps (one per timestep), the readout's one, writing its scores.

So an image's cycles depend on its data through its non-zero pixels and the spikes of each
hidden layer per timestep, which the golden model's trace gives exactly.

Ideal bound of this datapath: one weight row a cycle, i.e. the rows read (its passes
without their ends, the sweeps, the load and the output).
"""
from __future__ import annotations

import numpy as np

from ticketforge.ir.golden import GoldenResult, run
from ticketforge.rtl.cycles import ImageCycles
from ticketforge.rtl.rowstream.plan import RowstreamPlan

__all__ = ["COUNTERS", "LAYER_SETUP", "PASS_END", "SWEEP_FILL", "DONE", "cycle_model", "load_cycles",
           "layer_events"]

COUNTERS = ("row_reads", "neuron_updates", "spikes")
LAYER_SETUP = 1
PASS_END = 1              # the cycle that finds the list's end
SWEEP_FILL = 1            # the first lane's parameters are read a cycle before its update
DONE = 1


def load_cycles(plan: RowstreamPlan, images: np.ndarray) -> np.ndarray:
    """Per image, the cycles of its input: a pixel a cycle."""
    return np.full(len(images), plan.n_pix, np.int64)


def layer_events(plan: RowstreamPlan, images: np.ndarray, gold: GoldenResult) -> dict[str, np.ndarray]:
    """Per weighted layer, the events of each pass: [N, passes] (the first layer: one pass,
    its non-zero pixels; the others: one per timestep, the previous layer's spikes)."""
    n = len(images)
    out, prev = {}, None
    g = plan.graph
    for lp in plan.layers:
        if lp.first:
            ev = (np.full((n, 1), plan.n_pix) if plan.dense else
                  (np.asarray(images).reshape(n, -1) != 0).sum(1)[:, None])
        else:
            spk = gold.spikes[prev.name].reshape(n, g.T, -1)
            ev = np.full((n, g.T), prev.n_out) if plan.dense else spk.sum(2)
        out[lp.name] = ev.astype(np.int64)
        prev = lp
    return out


def cycle_model(plan: RowstreamPlan, images: np.ndarray, gold: GoldenResult | None = None) -> list[ImageCycles]:
    """Cycles and status counters of each image (pixel codes [N, C, H, W])."""
    def layer_cycles(lp, ev: np.ndarray) -> int:
        """One image's cycles of a layer, LAYER_SETUP to the end of LWAIT, replaying A and B."""
        a, b_free = LAYER_SETUP, 0          # A's next cycle; the first cycle B is idle
        first = lp.first and lp.kind != "output"
        units = ([[int(n) for n in ev]] if lp.kind == "output" or lp.first   # one handoff: all passes
                 else [[int(n)] for n in ev])                                 # a handoff per timestep
        for _ in range(lp.groups):
            for passes in units:
                a += sum(n + PASS_END for n in passes)
                h = max(a, b_free)                                  # HAND
                b_free = h + (T if first else 1) * (L + SWEEP_FILL) + 1
                a = h + 1
        return max(a, b_free) + 1                                   # LWAIT, then the next state

    g, L, T = plan.graph, plan.L, plan.T
    images = np.asarray(images)
    if gold is None or not gold.spikes:             # the event counts need the traced run
        gold = run(g, images, trace=True)
    n = len(images)
    events = layer_events(plan, images, gold)
    K = g.layers[-1].out_shape[0]
    totals = load_cycles(plan, images) + K + DONE
    per_layer, counters, ideal, syn = {}, {}, {}, np.zeros(n, np.int64)
    x = np.asarray(images).reshape(n, -1).astype(np.int64)
    prev_spikes = None
    for lp in plan.layers:
        l = g.layers[lp.index]
        ev = events[lp.name]                                        # [N, passes]
        cyc = np.array([layer_cycles(lp, e) for e in ev], np.int64)
        per_layer[lp.name] = cyc
        totals = totals + cyc
        reads = lp.groups * ev.sum(1)
        live = (g.tensor(l, "neuron_mask").astype(bool) if lp.kind != "output"
                else np.ones(lp.n_out, bool))
        kept = (g.tensor(l, "weight").reshape(lp.n_out, lp.n_in) != 0) & live[:, None]     # [O, I]
        if lp.first:
            syn += (x != 0).astype(np.int64) @ kept.sum(0)
        else:
            syn += (prev_spikes.reshape(n, T, -1).astype(np.int64) @ kept.sum(0)).sum(1)
        c = {"row_reads": reads,
             "neuron_updates": np.full(n, T * int(live.sum()) if lp.kind != "output" else 0),
             "spikes": (gold.spikes[lp.name].reshape(n, -1).sum(1) if lp.kind != "output" else np.zeros(n))}
        counters[lp.name] = c
        ideal[lp.name] = reads
        if lp.kind != "output":
            prev_spikes = gold.spikes[lp.name]
    out = []
    for i in range(n):
        cs = {name: {k: int(v[i]) for k, v in c.items()} for name, c in counters.items()}
        out.append(ImageCycles(total=int(totals[i]), per_layer={k: int(v[i]) for k, v in per_layer.items()},
                               synaptic_events=int(syn[i]),
                               neuron_updates=sum(c["neuron_updates"] for c in cs.values()),
                               ideal_bound=float(sum(int(v[i]) for v in ideal.values())), counters=cs,
                               ideal_per_layer={k: float(v[i]) for k, v in ideal.items()}))
    return out
