"""What multi-bit weights cost the lane datapath in logic and memory: a random IR with its
own 2- to 8-bit weights, and the same IR with every weight replaced by its sign (binary),
through yosys for each board.

    .venv/bin/python bench/multibit_cost.py                         # seed 13 at 4 PEs, ulx3s and icebreaker
    .venv/bin/python bench/multibit_cost.py --seeds 13 64 --pes 4 16 --boards ulx3s

The two designs differ only in the weights' magnitudes: the same layers, neurons, masks,
signs and zeros. Each row is the core alone (`deploy.synth.synthesize`, yosys synth_ice40 / synth_ecp5): LUT4, flip-flops,
block RAMs and DSP blocks, beside the synapse words' width and the stored bits.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from ticketforge.deploy.boards import get_board
from ticketforge.deploy.synth import synthesize
from ticketforge.ir import save_graph
from ticketforge.ir.random import random_graph, signs_only
from ticketforge.rtl.emit import write_rtl
from ticketforge.rtl.lane.plan import lane_plan


def measure(seed: int, pes: int, binary: bool, boards: list[str], tmp: Path) -> list[dict]:
    g = random_graph(seed)
    g = signs_only(g) if binary else g
    plan = lane_plan(g, pes)
    rows_bits = sum(s["bits"] for s in plan.memories if s["name"].endswith("_rows"))
    d = tmp / f"{seed}-{pes}-{binary}"
    save_graph(g, d / "ir")
    write_rtl(d / "ir", d / "rtl", pes=pes, run_lint=False, progress=lambda *a, **k: None)
    bits = sorted({l.weight_bits for l in g.layers if l.has_weights})
    out = []
    for b in boards:
        res = synthesize(d / "rtl", get_board(b), d / b, log=lambda *a, **k: None)["resources"]
        out.append({"seed": seed, "pes": pes, "weights": "binary" if binary else "/".join(map(str, bits)) + " bits",
                    "board": b, "word_bits": plan.word.size, "mag_bits": plan.mag_bits, "synapse_kbit": rows_bits / 1024,
                    **{k: res.get(k, 0) for k in ("luts", "ffs", "brams", "dsps")}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[13], help="random IR seeds (default 13: 4- and 8-bit "
                    "conv layers on 8-bit pixels)")
    ap.add_argument("--pes", type=int, nargs="+", default=[4], help="PE counts (default 4)")
    ap.add_argument("--boards", nargs="+", default=["ulx3s", "icebreaker"], help="boards (default ulx3s icebreaker)")
    args = ap.parse_args()
    print("| seed | PEs | weights | board | word bits | mag bits | synapse words (Kbit) | LUT4 | FF | BRAM | DSP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in args.seeds:
            for pes in args.pes:
                for binary in (True, False):
                    for r in measure(seed, pes, binary, args.boards, Path(tmp)):
                        print(f"| {r['seed']} | {r['pes']} | {r['weights']} | {r['board']} | {r['word_bits']} | "
                              f"{r['mag_bits']} | {r['synapse_kbit']:.1f} | {r['luts']:,} | {r['ffs']:,} | "
                              f"{r['brams']} | {r['dsps']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
