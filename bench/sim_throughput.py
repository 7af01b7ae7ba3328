"""Simulated cycles per wall second of the generated accelerator on Verilator vs Icarus,
measured in one run on the same Verilog (build/<name>/rtl/top.v) and the same images.

    .venv/bin/python bench/sim_throughput.py build/vgg9_binw --images 1
    .venv/bin/python bench/sim_throughput.py build/vgg9_binw --images 20 --simulators verilator --pgo

Prints one JSON line per simulator (build seconds, run seconds, simulated cycles, cycles per
wall second) and the ratio.  The testbench loop time (between the first start and the last
done) is what the rate uses; building is reported separately.  ``--pgo`` adds Verilator with
the profile-guided build (`sim/build.py`; the regression uses it from PGO_MIN_CYCLES up)
and its ratio to the plain build.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ticketforge.ir import load_graph, load_test_inputs
from ticketforge.sim.runner import PGO_ENV, run_sim


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="build/<name> with ir/ and rtl/")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--simulators", nargs="+", default=["verilator", "icarus"])
    ap.add_argument("--pgo", action="store_true", help="also Verilator with the profile-guided build")
    args = ap.parse_args()
    g = load_graph(args.build / "ir")
    images = load_test_inputs(args.build / "ir")[0][:args.images]
    rates = {}
    runs = [(sim, {PGO_ENV: str(1 << 62)} if sim == "verilator" else {}) for sim in args.simulators]
    if args.pgo:
        runs.append(("verilator-pgo", {PGO_ENV: "0"}))
    for name, env in runs:
        sim = name.split("-")[0]
        os.environ.update(env)
        r = run_sim(args.build / "rtl", g, images, args.build / "sim-bench" / name, sim, log=lambda *a, **k: None)
        rates[name] = r["simulated_cycles_per_wall_second"]
        print(json.dumps({"simulator": r["simulator_version"], "build": name, "images": len(images),
                          "matches_golden": r["rtl_matches_golden"], "simulated_cycles": r["cycles"]["total"],
                          "build_seconds": r["wall_seconds"]["build"],
                          "run_seconds": r["wall_seconds"]["testbench_loop"],
                          "cycles_per_wall_second": rates[name]}), flush=True)
    if {"verilator", "icarus"} <= set(rates):
        print(json.dumps({"verilator_over_icarus": round(rates["verilator"] / rates["icarus"], 1)}))
    if {"verilator", "verilator-pgo"} <= set(rates):
        print(json.dumps({"pgo_over_plain": round(rates["verilator-pgo"] / rates["verilator"], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
