"""Projection (not the RTL): cycles if each PE walked its own synapse rows from a small event
FIFO ("per-PE row streams", docs/RTL.md next steps), against today's shared rows.

    .venv/bin/python bench/pe_streams.py build/vgg9_binw/ir --pes 16 64 --depths 4 16 --images 20

Today one row is issued to all PEs per cycle, so an event costs its busiest PE's lane count
(`rtl/cycles.py`, exact).  Here, per weighted layer and timestep, event e costs PE p
``lanes(e, p)`` cycles (its own kept synapses of the event's source, from `rtl/program.py`),
and the recurrence of a reader broadcasting one event per cycle into per-PE FIFOs of depth D:
``b[e] = max(b[e-1] + 1, min over PEs of start[e-D])``, ``start_p[e] = max(b[e] + 1,
finish_p[e-1])``, ``finish_p[e] = start_p[e] + lanes(e, p)``.  A PE with no lane for an event pops it at no
cost, or (``--pop-cycle``) in one cycle: the two ends of what a real FIFO pop would cost.  Everything else (updates, pools,
pipeline fill) is today's exact figure.  Printed: mean cycles/image, ideal bound, ratio, for
today and for each FIFO depth.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ticketforge.model.ir import load_graph, load_test_inputs, run
from ticketforge.rtl.cycles import _inputs_per_layer, _rows_of_positions, cycle_model
from ticketforge.rtl.program import map_graph


def _lanes_per_position(lp, in_shape) -> np.ndarray:
    """[positions, P]: each PE's lane count for an event at each flat input position."""
    valid = lp.lanes[:, :, 0]
    per_source = np.stack([valid[s:s + c].sum(0) for s, c in lp.rowptr]) if len(lp.rowptr) else \
        np.zeros((0, valid.shape[1]), np.int64)
    if lp.kind == "conv":
        c, h, w = in_shape
        my, mx = lp.class_shape
        per_source = per_source.reshape(c, my, mx, -1)
        idx = per_source[:, (np.arange(h) % my)[:, None], (np.arange(w) % mx)[None, :]]   # c h w P
        return idx.reshape(c * h * w, -1)
    return per_source


def _streamed(cost: np.ndarray, depth: int) -> int:
    """Cycles from the first broadcast to the last PE's finish, for events [E, P]."""
    n_ev, pes = cost.shape
    start_hist = np.zeros((n_ev, pes), np.int64)
    finish = np.zeros(pes, np.int64)
    b = -1
    for e in range(n_ev):
        b = b + 1
        if e >= depth:
            b = max(b, int(start_hist[e - depth].min()))
        start = np.maximum(b + 1, finish)
        start_hist[e] = start
        finish = start + cost[e]
    return int(finish.max()) + 1 if n_ev else 1


def project(g, images: np.ndarray, P: int, depths: list[int], pop_cycle: bool = False) -> dict:
    prog = map_graph(g, P)
    gold = run(g, images, trace=True)
    today = cycle_model(g, images, P, gold=gold, prog=prog)
    ins = _inputs_per_layer(g, images, gold.spikes)
    n, T = len(images), g.T
    shared = np.zeros(n, np.int64)                 # today's row-walk cycles (the part that changes)
    streamed = {d: np.zeros(n, np.int64) for d in depths}
    for l, lp in zip(g.layers, prog.layers):
        if not l.has_weights:
            continue
        lanes = _lanes_per_position(lp, l.in_shape)
        rows = _rows_of_positions(lp, l.in_shape).reshape(-1)
        x = ins[l.name].reshape(n, T, -1)
        for i in range(n):
            for t in range(T):
                ev = np.flatnonzero(x[i, t])
                if not len(ev):
                    continue
                shared[i] += int(np.maximum(1, rows[ev]).sum())
                cost = np.maximum(lanes[ev], 1) if pop_cycle else lanes[ev]
                for d in depths:
                    streamed[d][i] += _streamed(cost, d)
    total = np.array([c.total for c in today])
    ideal = np.array([c.ideal_bound for c in today])
    out = {"P": P, "images": n, "pop_cycle": pop_cycle, "today": {"cycles": float(total.mean()), "over_ideal": float((total / ideal).mean())},
           "ideal_bound": float(ideal.mean())}
    for d in depths:
        proj = total - shared + streamed[d]
        out[f"fifo_depth_{d}"] = {"cycles": float(proj.mean()), "over_ideal": float((proj / ideal).mean())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--pes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--pop-cycle", action="store_true", help="an event without lanes still costs a PE one cycle")
    args = ap.parse_args()
    g = load_graph(args.ir)
    images = load_test_inputs(args.ir)[0][:args.images]
    for P in args.pes:
        print(json.dumps(project(g, images, P, args.depths, args.pop_cycle)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
