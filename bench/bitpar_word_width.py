"""What a narrower spike word would buy the bitpar datapath on the iCE40 UP5K, before the
generator offers it: the bitpar design of one IR with its spike word (``rtl/bitpar/plan.py``
``WORD``, 32 channels) set to each width given, its exact cycle model, its memory inventory
and yosys ``synth_ice40`` of the core (LUT4, FF, RAM40_4K).

    .venv/bin/python bench/bitpar_word_width.py build/mlp_binw_tiny/mlp_binw_tiny/ir --words 32 16 --lanes 2 4

A UP5K block RAM is 16 bits wide, and the bitpar memories are as wide as the word: T x WORD
bits per spike word, 2 x WORD per lane per weight row, WORD pixels per bit-plane word.  The
width is a module constant today, so this study sets it in each module that reads it (the
plan, the accelerator, its lanes and the capacity) for the run of this script only: a
measurement of a variant, not a generator option.  Minutes per point on a 2-core machine.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ticketforge.deploy.boards import BOARDS
from ticketforge.deploy.synth import synthesize
from ticketforge.ir import load_graph, load_test_inputs
from ticketforge.rtl.bitpar import accel, capacity, lanes, plan
from ticketforge.rtl.bitpar.cycles import cycle_model
from ticketforge.rtl.emit import write_rtl

MODULES_READING_WORD = (plan, accel, lanes, capacity)


def measure(ir: Path, word: int, lanes_: int, work: Path, images: int) -> dict:
    for mod in MODULES_READING_WORD:
        mod.WORD = word
    g = load_graph(ir)
    x, _ = load_test_inputs(ir)
    cycles = float(np.mean([c.total for c in cycle_model(plan.plan_graph(g, lanes_), x[:images])]))
    man = write_rtl(ir, work / "rtl", pes=lanes_, datapath="bitpar", run_lint=False, progress=lambda *a, **k: None)
    r = synthesize(work / "rtl", BOARDS["icebreaker"], work / "synth", log=lambda *a, **k: None)
    wide = ", ".join(f"{m['name']} {m['width']} x {m['depth']}" for m in man["memories"] if m["bits"] > 2048)
    return {"cycles": cycles, **{k: r["resources"][k] for k in ("luts", "ffs", "brams")}, "fits": r["fits"],
            "memories": wide}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ir", type=Path, help="an IR folder (build/<name>/ir)")
    ap.add_argument("--words", type=int, nargs="+", default=[32, 16], help="spike word widths (channels)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[2, 4], help="lane counts")
    ap.add_argument("--images", type=int, default=5, help="test images the cycle model runs")
    ap.add_argument("--clock-mhz", type=float, default=15.0, help="for the latency column (the UP5K's PLL clock)")
    a = ap.parse_args()
    print(f"| word | lanes | cycles / image | us at {a.clock_mhz:g} MHz | LUT4 | FF | RAM40_4K (of 30) | fits (yosys) | "
          "memories over 2 Kbit (width x depth) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for word in a.words:
        for n in a.lanes:
            with tempfile.TemporaryDirectory() as tmp:
                r = measure(a.ir, word, n, Path(tmp), a.images)
            print(f"| {word} | {n} | {r['cycles']:,.0f} | {r['cycles'] / a.clock_mhz:,.0f} | {r['luts']:,} | "
                  f"{r['ffs']:,} | {r['brams']} | {'yes' if r['fits'] else 'no'} | {r['memories']} |", flush=True)


if __name__ == "__main__":
    main()
