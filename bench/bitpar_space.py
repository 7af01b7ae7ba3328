"""The bitpar datapath's design space on one IR: for each lane count, the cycles per image
(the exact cycle model), the memory inventory (block RAMs of 18 Kbit at the best aspect
ratio), the event-energy estimate, latency at a clock, and with ``--yosys`` the LUT4, FF,
DP16KD and DSP counts from yosys synth_ecp5 of the core.

    .venv/bin/python bench/bitpar_space.py                          # the shipped vgg9_binw IR
    .venv/bin/python bench/bitpar_space.py --lanes 8 16 32 --yosys --images 100
    .venv/bin/python bench/bitpar_space.py build/mlp_binw_tiny/ir --lanes 1 2 4 --mhz 16

Cycles and counters are counts, not timings, so the machine does not matter; yosys takes
minutes per point.  Fmax needs place-and-route (`ticketforge synth --board ...`): the
table gives latency at ``--mhz`` and says so.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ticketforge.deploy.energy import hardware_events_energy
from ticketforge.ir import load_graph, run
from ticketforge.rtl.accel import bram18_blocks
from ticketforge.rtl.bitpar.accel import BitparAccelerator
from ticketforge.rtl.bitpar.cycles import cycle_model
from ticketforge.rtl.bitpar.plan import plan_graph

sys.path.insert(0, str(Path(__file__).parent))
from datapath_options import SHIPPED, _test_images  # noqa: E402  (the study's IR and test split)


def synth_ecp5(acc) -> dict:
    """yosys synth_ecp5 of the core alone: LUT4, CCU2C, FF, DP16KD, MULT18X18D."""
    from amaranth.back import rtlil

    from ticketforge.deploy.synth import yosys_cmd

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "core.il").write_text(rtlil.convert(acc, name="core", emit_src=False))
        r = subprocess.run(yosys_cmd() + ["-q", "-p", "read_rtlil core.il; synth_ecp5 -top core; "
                                          "tee -q -o stat.json stat -json"], cwd=d, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"yosys failed: {r.stderr[-2000:]}")
        cells = json.loads((Path(d) / "stat.json").read_text())["design"]["num_cells_by_type"]
    return {k: cells.get(c, 0) for k, c in (("lut4", "LUT4"), ("ccu2c", "CCU2C"), ("ff", "TRELLIS_FF"),
                                            ("dp16kd", "DP16KD"), ("dsp", "MULT18X18D"))}


def point(g, images, gold, L: int, yosys: bool) -> dict:
    plan = plan_graph(g, L)
    res = cycle_model(plan, images, gold)
    acc = BitparAccelerator(g, L)
    acc.elaborate(None)                         # for its memory inventory (main() silences Amaranth's
                                                # "created but never used" notes of these parts)
    manifest = {"params": {"datapath": "bitpar"}, "memories": acc.memories, "membrane_bits": acc.u_bits,
                "bitpar": {"lanes": L, "T": g.T, "acc_bits": acc.acc_bits, "word": 32}}
    counters = {k: {c: float(np.mean([r.counters[k][c] for r in res])) for c in res[0].counters[k]}
                for k in res[0].counters}
    out = {"lanes": L, "cycles": res[0].total, "ideal": res[0].ideal_bound,
           "uj": hardware_events_energy(counters, manifest)["uj"],
           "brams": sum(bram18_blocks(m["depth"], m["width"]) for m in acc.memories if m["style"] != "logic")}
    if yosys:
        out.update(synth_ecp5(BitparAccelerator(g, L)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", nargs="?", default=str(SHIPPED), help="an IR folder (default: the shipped vgg9_binw IR)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--images", type=int, default=20, help="test images for the energy's spike counts (default 20)")
    ap.add_argument("--mhz", type=float, default=40.0, help="clock for the latency column (default 40: the ULX3S core from its PLL)")
    ap.add_argument("--yosys", action="store_true", help="also synthesize each point (synth_ecp5; minutes each)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*created but never used")
    g = load_graph(args.ir)
    images = _test_images(g, Path(args.ir), args.images)
    gold = run(g, images, trace=True)
    print(f"{args.ir}: T = {g.T}; latency at {args.mhz:g} MHz; energy: 45 nm event estimate over {len(images)} "
          "test images (deploy/energy.py)")
    head = f"{'lanes':>5} {'cycles':>9} {'x ideal':>7} {'latency us':>10} {'energy uJ':>9} {'18Kb':>5}"
    if args.yosys:
        head += f" {'LUT4':>7} {'CCU2C':>6} {'FF':>6} {'DP16KD':>6} {'DSP':>4}"
    print(head)
    for L in args.lanes:
        p = point(g, images, gold, L, args.yosys)
        row = (f"{L:>5} {p['cycles']:>9,} {p['cycles'] / p['ideal']:>7.3f} {p['cycles'] / args.mhz:>10.0f} "
               f"{p['uj']:>9.2f} {p['brams']:>5}")
        if args.yosys:
            row += f" {p['lut4']:>7,} {p['ccu2c']:>6,} {p['ff']:>6,} {p['dp16kd']:>6} {p['dsp']:>4}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
