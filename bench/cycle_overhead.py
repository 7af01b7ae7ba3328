"""Where the accelerator's cycles above the ideal bound go, per layer, from the cycle model
(rtl/cycles.py, proven equal to the RTL).

    .venv/bin/python bench/cycle_overhead.py build/vgg9_binw/ir --pes 16 --images 20

For each weighted layer, means per image over the first N test images (all T timesteps):

- ``walk_mean``: the PEs' walk cycles for the layer's events (lanes and empty words, at least
  one cycle per event on each PE) over P: the layer's share if the PEs were perfectly
  balanced and never waited;
- ``walk_busiest``: the busiest PE's walk cycles: with unbounded FIFOs the layer's ACC
  phases would take this long;
- ``run``: the ACC phases' streaming cycles with the design's FIFO depth (the RUN term of
  the cycle model), so ``run - walk_busiest`` is what FIFO credit costs (with the reader's
  start-up, READ_LATENCY cycles per timestep);
- ``ideal``: the layer's share of the ideal bound (its accumulates and live neuron updates
  over P); ``total``: the layer's cycles.

The last line splits the whole image's gap to the ideal bound into PE imbalance
(busiest - mean), FIFO credit (run - busiest), walk over ideal (mean walk - the
accumulates' share: lanes that add into no neuron, since a synapse word holds every kept
tap of its input position and on a padded convolution's border some taps point past the
edge; empty words; events without lanes on a PE), the pool layers, and the rest (neuron
updates, pipeline drains, set-up, LOAD, OUT).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ticketforge.ir import load_graph, load_test_inputs, run
from ticketforge.rtl import cycles as cm
from ticketforge.rtl.program import map_graph


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--pes", type=int, default=16)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--fifo-depth", type=int, default=None, help="default: the generator's, 2 P")
    args = ap.parse_args()
    g = load_graph(args.ir)
    images = load_test_inputs(args.ir)[0][:args.images].astype(np.int64)
    P, n = args.pes, len(images)
    depth = cm.check_fifo_depth(cm.default_fifo_depth(P) if args.fifo_depth is None else args.fifo_depth)
    prog = map_graph(g, P, False)
    gold = run(g, images, trace=True)
    model = cm.cycle_model(g, images, P, gold=gold, prog=prog, fifo_depth=depth)
    # the model's own pieces: the reader's event order and each PE's walk per event position
    order = cm._event_order(g, prog, images, gold.spikes, False)
    split = {"pe_imbalance": 0.0, "fifo_credit": 0.0, "walk_over_ideal": 0.0, "pools": 0.0}
    for l, lp in zip(g.layers, prog.layers):
        total = float(np.mean([c.per_layer[l.name] for c in model]))
        if l.kind == "pool":
            split["pools"] += total
            continue
        if not l.has_weights:
            continue
        lanes = cm._lanes_of_positions(lp, l.in_shape, lp.walk_counts)                   # [positions, P]
        walk = np.maximum(lanes, 1)                     # an event without lanes still costs a PE a cycle
        events = mean = busiest = streamed = 0.0
        for t in range(g.T):
            per_image = [order[l.name][i][t] for i in range(n)]
            for ev in per_image:
                events += len(ev)
                if len(ev):
                    w = walk[ev].sum(0)
                    mean += w.sum() / P
                    busiest += w.max()
            streamed += cm._stream_run(per_image, lanes, depth).sum()
        ideal = float(np.mean([c.ideal_per_layer[l.name] for c in model]))
        row = {"layer": l.name, "events": events / n, "walk_mean": round(mean / n, 1),
               "walk_busiest": round(busiest / n, 1), "run": round(streamed / n, 1), "ideal": round(ideal, 1),
               "total": round(total, 1)}
        print(json.dumps(row))
        split["pe_imbalance"] += (busiest - mean) / n
        split["fifo_credit"] += (streamed - busiest) / n
        accumulates = float(np.mean([c.counters[l.name]["accumulates"] for c in model]))
        split["walk_over_ideal"] += mean / n - accumulates / P
    cycles = float(np.mean([c.total for c in model]))
    bound = float(np.mean([c.ideal_bound for c in model]))
    split["rest"] = cycles - bound - sum(split.values())
    print(json.dumps({"P": P, "fifo_depth": depth, "images": n, "cycles_per_image": round(cycles, 1),
                      "ideal_bound": round(bound, 1), "cycles_over_ideal": round(cycles / bound, 3),
                      "gap": {k: round(v, 1) for k, v in split.items()},
                      "gap_share_of_cycles": {k: round(v / cycles, 4) for k, v in split.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
