"""Simulated cycles per wall second of the generated accelerator on Verilator vs Icarus,
measured in one run on the same Verilog (build/<name>/rtl/top.v) and the same images.

    .venv/bin/python bench/sim_throughput.py build/vgg9_binw --images 1

Prints one JSON line per simulator (build seconds, run seconds, simulated cycles, cycles per
wall second) and the ratio.  The testbench loop time (between the first start and the last
done) is what the rate uses; building is reported separately.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ticketforge.model.ir import load_graph, load_test_inputs
from ticketforge.sim.runner import run_sim


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="build/<name> with ir/ and rtl/")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--simulators", nargs="+", default=["verilator", "icarus"])
    args = ap.parse_args()
    g = load_graph(args.build / "ir")
    images = load_test_inputs(args.build / "ir")[0][:args.images]
    rates = {}
    for sim in args.simulators:
        r = run_sim(args.build / "rtl", g, images, args.build / "sim-bench" / sim, sim, log=lambda *a, **k: None)
        rates[sim] = r["simulated_cycles_per_wall_second"]
        print(json.dumps({"simulator": r["simulator_version"], "images": len(images),
                          "matches_golden": r["rtl_matches_golden"], "simulated_cycles": r["cycles"]["total"],
                          "build_seconds": r["wall_seconds"]["build"],
                          "run_seconds": r["wall_seconds"]["testbench_loop"],
                          "cycles_per_wall_second": rates[sim]}), flush=True)
    if {"verilator", "icarus"} <= set(rates):
        print(json.dumps({"verilator_over_icarus": round(rates["verilator"] / rates["icarus"], 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
