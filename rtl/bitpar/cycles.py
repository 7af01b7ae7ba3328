"""Exact cycle and counter model of the bitpar accelerator (`accel.py`).

Schedule per image (``busy`` cycles, the status block's cycle counter):

- ``LOAD``: one cycle per pixel taken (the host keeps ``valid`` high);
- per weighted layer: ``LAYER_SETUP``, then per output position (raster order) and lane
  group: ``GROUP_SETUP`` (group table and keep word read, then latched) and

  - a live (position, group): its steps, one per cycle, then ``DRAIN`` when it has any,
    then the update: T cycles (one LIF update per timestep, all lanes at once; the
    readout: one cycle that sums its T accumulators into the scores);
  - a dead one (no live neuron): nothing;

  then, for a conv or linear layer, ``WRITE_BACK`` (read the bitmap word, OR, write);
- ``OUT``: one cycle per class score; then ``DONE``.

There is no data-dependent term: the cycles of an image are fixed by the plan.  The
counters that depend on the data are the spikes.

Ideal bound of this datapath, per image: the steps whose source word exists (a kernel tap
that falls in the padding reads nothing useful) plus the update cycles, over the live
(position, group)s.  ``bound_one_synapse_per_pe`` is the earlier datapath's bound on the
same P = L: (unmasked synaptic events + live neuron updates) / L.
"""
from __future__ import annotations

import numpy as np

from ticketforge.model.ir.golden import GoldenResult, run
from ticketforge.rtl.bitpar.plan import BitparPlan, LayerPlan
from ticketforge.rtl.cycles import ImageCycles, cycle_model as lane_cycle_model

__all__ = ["COUNTERS", "LAYER_SETUP", "GROUP_SETUP", "DRAIN", "WRITE_BACK", "DONE", "cycle_model",
           "static_cycles", "in_bounds_steps"]

COUNTERS = ("steps", "neuron_updates", "spikes", "words_written")
LAYER_SETUP = 1
GROUP_SETUP = 2
DRAIN = 3
WRITE_BACK = 2
DONE = 1


def in_bounds_steps(lp: LayerPlan) -> np.ndarray:
    """[positions, groups]: steps whose source position lies inside the source."""
    Ho, Wo = lp.out_hw
    _, H, W = lp.src_shape
    out = np.zeros((lp.positions, lp.groups), np.int64)
    for g, rows in enumerate(lp.steps):
        if not rows:
            continue
        dy = np.array([r.dy for r in rows])
        dx = np.array([r.dx for r in rows])
        ys = np.arange(Ho)[:, None] * lp.stride + dy[None]          # [Ho, steps]
        xs = np.arange(Wo)[:, None] * lp.stride + dx[None]          # [Wo, steps]
        oky = (ys >= 0) & (ys < H)
        okx = (xs >= 0) & (xs < W)
        out[:, g] = (oky[:, None, :] & okx[None, :, :]).sum(-1).reshape(-1)
    return out


def _layer_static(plan: BitparPlan, lp: LayerPlan) -> dict:
    T, L = plan.T, plan.L
    live = lp.live(L)
    n = np.array([len(r) for r in lp.steps], np.int64)[None, :]          # [1, G]
    upd = 1 if lp.kind == "output" else T
    wb = 0 if lp.kind == "output" else WRITE_BACK
    per = GROUP_SETUP + np.where(live, n + DRAIN * (n > 0) + upd, 0) + wb
    cycles = LAYER_SETUP + int(per.sum())
    ideal = float(np.where(live, in_bounds_steps(lp) + upd, 0).sum())
    counters = {"steps": int(np.where(live, n, 0).sum()), "neuron_updates": 0, "spikes": 0, "words_written": 0}
    if lp.kind != "output":
        keeps = sum(bin(lp.keep_word(L, p, g)).count("1") for p in range(lp.positions) for g in range(lp.groups)) \
            if lp.keep is not None else lp.positions * lp.out_channels
        counters["neuron_updates"] = T * keeps
        Ho, Wo = lp.out_hw
        if lp.pool:
            kept = (Ho // lp.pool * lp.pool) * (Wo // lp.pool * lp.pool)
        else:
            kept = Ho * Wo
        counters["words_written"] = kept * lp.groups
    return {"cycles": cycles, "ideal": ideal, "counters": counters}


def static_cycles(plan: BitparPlan) -> dict[str, dict]:
    """Per weighted layer: its cycles, its share of the ideal bound and its data-independent
    counters."""
    return {lp.name: _layer_static(plan, lp) for lp in plan.layers}


def cycle_model(plan: BitparPlan, images: np.ndarray, gold: GoldenResult | None = None,
                with_lane_bound: bool = True) -> list[ImageCycles]:
    """Cycles and status counters of each image (pixel codes [N, C, H, W])."""
    g = plan.graph
    images = np.asarray(images)
    if gold is None or (plan.layers and any(lp.kind != "output" and lp.name not in gold.spikes
                                            for lp in plan.layers)):
        gold = run(g, images, trace=True)
    st = static_cycles(plan)
    n_pix = int(np.prod(g.input.shape))
    K = g.layers[-1].out_shape[0]
    base = n_pix + sum(v["cycles"] for v in st.values()) + K + DONE
    ideal = sum(v["ideal"] for v in st.values())
    lane_bounds = None
    if with_lane_bound:
        # the one-synapse-per-PE datapath's bound, on P = L PEs, for the report's comparison
        lane_bounds = [c.ideal_bound for c in lane_cycle_model(g, images, plan.L, gold=gold)]
    out = []
    for i in range(len(images)):
        counters = {}
        for lp in plan.layers:
            c = dict(st[lp.name]["counters"])
            if lp.kind != "output":
                c["spikes"] = int(gold.spikes[lp.name][i].sum())
            counters[lp.name] = c
        ic = ImageCycles(total=base, per_layer={k: v["cycles"] for k, v in st.items()},
                         synaptic_events=0, neuron_updates=sum(c["neuron_updates"] for c in counters.values()),
                         ideal_bound=ideal, counters=counters,
                         ideal_per_layer={k: v["ideal"] for k, v in st.items()})
        ic.lane_bound = lane_bounds[i] if lane_bounds is not None else float("nan")
        out.append(ic)
    return out
