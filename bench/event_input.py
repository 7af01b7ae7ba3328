"""What the AER input costs, against loading every frame, for an IR with event input.

    .venv/bin/python bench/event_input.py build/nmnist_binw/ir --images 100

For each datapath and size: mean cycles per sample over the first N test samples (the
exact cycle model, proven equal to the RTL), the input's share of them, and the input
cycles a frame input would take instead (every position of every timestep's frame
streamed, one a cycle, as the pixel input streams an image: ``T x C x H x W``). Also the
events per sample and per timestep. Model figures; the machine does not matter.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ticketforge.ir import load_graph, load_test_inputs
from ticketforge.rtl.cycles import LOAD_EXTRA
from ticketforge.rtl.datapath import cycle_model, load_cycles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--points", nargs="+", default=["lane:16", "bitpar:16", "bitpar:32"],
                    help="datapath:size (PEs or lanes)")
    args = ap.parse_args()
    g = load_graph(args.ir)
    if not g.input.events:
        raise SystemExit(f"{args.ir}: the IR's input is {g.input.encoding!r}, not events")
    frames = load_test_inputs(args.ir)[0][:args.images]
    n = len(frames)
    events = (frames.reshape(n, -1) != 0).sum(1)
    positions = int(np.prod(g.input.shape))
    print(json.dumps({"samples": n, "timesteps": g.T, "positions": positions,
                      "events_per_sample": round(float(events.mean()), 1),
                      "events_per_timestep": round(float(events.mean() / g.T), 1),
                      "active_fraction": round(float(events.mean() / (g.T * positions)), 4)}))
    for point in args.points:
        datapath, size = point.split(":")
        size = int(size)
        cyc = np.array([c.total for c in cycle_model(g, frames, size, datapath)])
        load = load_cycles(g, frames, size, datapath)
        frame_load = g.T * (positions + LOAD_EXTRA)
        print(json.dumps({"datapath": datapath, "size": size, "cycles_per_sample": round(float(cyc.mean()), 1),
                          "input_cycles": round(float(load.mean()), 1),
                          "input_share": round(float((load / cyc).mean()), 4),
                          "frame_input_cycles": frame_load,
                          "cycles_with_frame_input": round(float((cyc - load + frame_load).mean()), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
