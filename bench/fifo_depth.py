"""How deep each PE's event FIFO should be: exact cycle-model figures (rtl/cycles.py, proven
equal to the RTL) for a sweep of FIFO depths.

    .venv/bin/python bench/fifo_depth.py build/vgg9_binw/ir --pes 16 64 --depths 8 16 32 64 128 --images 100

The per-PE row streams let a PE with few synapses for an event run ahead of the busiest
one; the FIFO depth bounds how far.  Prints, per P and depth: mean cycles per image, the
ideal bound, their ratio, and the bits the P FIFOs take (entry width x depth x P, from the
generator's memory inventory).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from amaranth.hdl import UnusedElaboratable

from ticketforge.ir import load_graph, load_test_inputs, run
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl.cycles import cycle_model, default_fifo_depth
from ticketforge.rtl.program import map_graph


def fifo_bits(g, P: int, depth: int) -> int:
    acc = Accelerator(g, P, trace=False, fifo_depth=depth)
    with warnings.catch_warnings():                 # elaborated only for its memory inventory
        warnings.simplefilter("ignore", UnusedElaboratable)
        acc.elaborate(None)
    return sum(m["bits"] for m in acc.memories if m["style"] == "fifo")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--pes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()
    g = load_graph(args.ir)
    images = load_test_inputs(args.ir)[0][:args.images]
    gold = run(g, images, trace=True)
    for P in args.pes:
        prog = map_graph(g, P)
        for d in args.depths:
            c = cycle_model(g, images, P, gold=gold, prog=prog, fifo_depth=d)
            cyc, ideal = np.mean([x.total for x in c]), np.mean([x.ideal_bound for x in c])
            print(json.dumps({"P": P, "fifo_depth": d, "default": d == default_fifo_depth(P), "images": len(images),
                              "cycles_per_image": round(float(cyc), 1), "ideal_bound": round(float(ideal), 1),
                              "cycles_over_ideal": round(float(cyc / ideal), 3),
                              "fifo_kbit": round(fifo_bits(g, P, d) / 1024, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
