"""Cycle-model figures of the event-driven accelerator for an IR (rtl/cycles.py).

    .venv/bin/python bench/cycles.py build/vgg9_binw/ir --pes 16 64 --images 100

Prints, per P: mean cycles per image over the first N test images, the ideal bound
(unmasked synaptic events + live neuron updates) / P, their ratio (with the generator's
default FIFO depth, 2 P; bench/fifo_depth.py sweeps it), the dense variant's
cycles and dense / sparse.  These are model figures; the cycle model is proven equal to
the RTL cycle for cycle (tests/test_rtl_accel.py in Amaranth simulation, sim/ on Icarus
and Verilator).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ticketforge.ir import load_graph, load_test_inputs
from ticketforge.rtl.cycles import cycle_model, default_fifo_depth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--pes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()
    g = load_graph(args.ir)
    images = load_test_inputs(args.ir)[0][:args.images]      # the codes the hardware receives
    for P in args.pes:
        sparse = cycle_model(g, images, P)
        dense = cycle_model(g, images, P, dense=True)
        cyc = np.mean([c.total for c in sparse])
        ideal = np.mean([c.ideal_bound for c in sparse])
        dcyc = np.mean([c.total for c in dense])
        print(json.dumps({"P": P, "fifo_depth": default_fifo_depth(P), "images": len(images), "cycles_per_image": round(float(cyc), 1),
                          "ideal_bound": round(float(ideal), 1), "cycles_over_ideal": round(float(cyc / ideal), 3),
                          "dense_cycles_per_image": round(float(dcyc), 1),
                          "dense_over_sparse": round(float(dcyc / cyc), 3),
                          "per_layer_mean": {k: round(float(np.mean([c.per_layer[k] for c in sparse])), 1)
                                             for k in sparse[0].per_layer}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
