"""Exact cycle and counter model of the bitpar accelerator (`accel.py`).

The accelerator is two machines joined by a queue of group tags:

- **A**, the step sequencer, walks a layer's output positions (raster order) and lane
  groups and issues one step per cycle into a 4-stage pipeline (step row -> source word
  -> registered word and weights -> popcounts -> accumulators).  A group's steps follow the previous group's
  without a gap.  A group with no step, or a *dead* one (no live neuron, DynSNN), issues
  one empty step.  In a layer with pruned neurons each group first reads its keep word
  (``KEEP_READ``, one cycle).
- **B** takes a group's sums when its last step reaches the accumulators (the handoff) and
  runs: fetch (bias and thresholds), T updates (the readout: one, summing its T
  accumulators into the scores), then the write-back (the bitmap word read, ORed with the
  group's spikes when a pool follows, written).  A dead group skips the updates.  B holds
  a group ``hold_cycles``: T + 3 (live), 3 (dead), 2 (readout).

A issues a group's last step no earlier than the previous group's hold after the previous
group's last step, so a handoff never finds B busy.  Schedule per image (``busy`` cycles,
the status block's cycle counter):

- ``LOAD``: one cycle per pixel (the host keeps ``valid`` high); an ``events`` input: one
  cycle per word of its bitmap (cleared), two per event (read, then write with its bit)
  and one per step word (`load_cycles`);
- per weighted layer: ``LAYER_SETUP``, then the groups as above; the layer ends the last
  group's hold + ``PIPE`` cycles after its last step (the last write is done before the
  next layer reads);
- ``OUT``: one cycle per class score; then ``DONE``.

No term depends on the data but an event input's load: an image's cycles are fixed by the
plan.  The counters that depend on the data are the spikes.

Ideal bound of this datapath, per image and layer: the busier of its two units over the
live (position, group)s: the step pipeline (the steps whose source word exists: a kernel
tap in the padding reads nothing useful) or the update unit (T cycles a group, the
readout one).  The report sets the lane datapath's bound on P = L PEs beside it
(`deploy.report.one_synapse_bound`).
"""
from __future__ import annotations

import numpy as np

from ticketforge.ir.golden import GoldenResult, run
from ticketforge.rtl.bitpar.plan import BitparPlan, LayerPlan
from ticketforge.rtl.cycles import ImageCycles

__all__ = ["COUNTERS", "LAYER_SETUP", "KEEP_READ", "PIPE", "DONE", "hold_cycles", "cycle_model",
           "static_cycles", "in_bounds_steps", "layer_cycles", "load_cycles"]

COUNTERS = ("steps", "neuron_updates", "spikes", "words_written")
LAYER_SETUP = 1
KEEP_READ = 1             # per group, in a layer with pruned neurons
PIPE = 5                  # last step issued -> its handoff (4 stages), and B back to idle
DONE = 1


def hold_cycles(T: int, kind: str, dead: bool) -> int:
    """How long B holds a group: fetch, T updates, write-back read and write (a dead group:
    fetch and the write-back; the readout: fetch and one update)."""
    if kind == "output":
        return 2
    return 3 if dead else T + 3


def in_bounds_steps(lp: LayerPlan) -> np.ndarray:
    """[positions, groups]: steps whose source position lies inside the source."""
    if lp.planes:
        return np.array(lp.issues, np.int64)[None, :].repeat(lp.positions, 0)
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


def layer_cycles(plan: BitparPlan, lp: LayerPlan) -> int:
    """The layer's cycles, LAYER_SETUP to the end of its wait, replaying A's issue rule."""
    T = plan.T
    live = lp.live(plan.L)
    counts = lp.issues
    kread = KEEP_READ if lp.keep is not None else 0
    t = LAYER_SETUP                      # the cycle A may issue next (LAYER_SETUP is cycle 0)
    last, d_prev = -(1 << 30), 0
    for p in range(lp.positions):
        for g in range(lp.groups):
            t += kread
            dead = not live[p, g] and lp.kind != "output"
            n = 1 if dead or counts[g] == 0 else counts[g]
            t += n - 1
            last = max(t, last + d_prev)
            d_prev = hold_cycles(T, lp.kind, dead)
            t = last + 1
    return last + 1 + d_prev + PIPE


def _layer_static(plan: BitparPlan, lp: LayerPlan) -> dict:
    T, L = plan.T, plan.L
    live = lp.live(L)
    n = np.array(lp.issues, np.int64)[None, :]                           # [1, G]
    upd = 1 if lp.kind == "output" else T
    # the two units each group passes through, each one per cycle: the step pipeline (its
    # in-bounds steps) and the update (T timesteps; the readout one); they overlap
    ideal = float(max(np.where(live, in_bounds_steps(lp), 0).sum(), upd * live.sum()))
    counters = {"steps": int(np.where(live, n, 0).sum()), "neuron_updates": 0, "spikes": 0, "words_written": 0}
    if lp.kind != "output":
        keeps = sum(bin(lp.keep_word(L, p, g)).count("1") for p in range(lp.positions) for g in range(lp.groups)) \
            if lp.keep is not None else lp.positions * lp.out_channels
        counters["neuron_updates"] = T * keeps
        Ho, Wo = lp.out_hw
        kept = (Ho // lp.pool * lp.pool) * (Wo // lp.pool * lp.pool) if lp.pool else Ho * Wo
        counters["words_written"] = kept * lp.groups
    return {"cycles": layer_cycles(plan, lp), "ideal": ideal, "counters": counters}


def static_cycles(plan: BitparPlan) -> dict[str, dict]:
    """Per weighted layer: its cycles, its share of the ideal bound and its data-independent
    counters."""
    return {lp.name: _layer_static(plan, lp) for lp in plan.layers}


def load_cycles(plan: BitparPlan, images: np.ndarray) -> np.ndarray:
    """Per image, the cycles of its input: a pixel a cycle, or an ``events`` input's bitmap
    cleared (a word a cycle), two cycles per event and one per step word."""
    g = plan.graph
    n = len(images)
    if not g.input.events:
        return np.full(n, int(np.prod(g.input.shape)), np.int64)
    per_event = (np.asarray(images).reshape(n, -1) != 0).sum(1).astype(np.int64)
    return plan.input_words + 2 * per_event + plan.T


def cycle_model(plan: BitparPlan, images: np.ndarray, gold: GoldenResult | None = None) -> list[ImageCycles]:
    """Cycles and status counters of each image (pixel codes [N, C, H, W], or an ``events``
    input's frames [N, T, C, H, W])."""
    g = plan.graph
    images = np.asarray(images)
    if gold is None or not gold.spikes:             # the spike counters need the traced run
        gold = run(g, images, trace=True)
    st = static_cycles(plan)
    K = g.layers[-1].out_shape[0]
    base = load_cycles(plan, images) + sum(v["cycles"] for v in st.values()) + K + DONE
    ideal = sum(v["ideal"] for v in st.values())
    out = []
    for i in range(len(images)):
        counters = {}
        for lp in plan.layers:
            c = dict(st[lp.name]["counters"])
            if lp.kind != "output":
                c["spikes"] = int(gold.spikes[lp.name][i].sum())
            counters[lp.name] = c
        ic = ImageCycles(total=int(base[i]), per_layer={k: v["cycles"] for k, v in st.items()},
                         synaptic_events=0, neuron_updates=sum(c["neuron_updates"] for c in counters.values()),
                         ideal_bound=ideal, counters=counters,
                         ideal_per_layer={k: v["ideal"] for k, v in st.items()})
        out.append(ic)
    return out
