"""Which tickets meet a latency budget on which datapath, before any RTL is generated: the
exact cycle models of the datapaths on each IR's first test images, against a budget at a
clock (the design studies behind docs/SCALING.md, "97% on the UP5K" and "What 97% on the
UP5K needs from a convolutional ticket").

    .venv/bin/python bench/latency_budget.py build/a/mlp_binw_tiny/ir build/b/mlp_binw_tiny/ir
    .venv/bin/python bench/latency_budget.py <ir>... --clock-mhz 15 --budget-us 500 --images 20

Per IR, one markdown row: weight bits, float and integer accuracy (the quantize stage's
metrics.json), neurons, the bits a weight-streaming design reads per image (mask and sign
of every synapse of a binary layer, the value of every synapse of a multi-bit one), and
cycles per image on the lane datapath at 2, 4 and 8 PEs (`rtl/cycles.py`) and on the
bitpar datapath at 2-16 lanes (`rtl/bitpar/cycles.py`), and for a fully connected IR on the
rowstream datapath at 16 lanes (`rtl/rowstream/cycles.py`; "-" for other IRs).  A cycle count
within the budget (budget_us x clock_mhz cycles) is in bold.

``--up5k`` adds, per lane PE count, the iCE40 UP5K memory a lane design with runtime
weights needs (`up5k_memory`): each PE's synapse words in SPRAM (16 bits x 16K each, one
address per PE, so a PE takes ceil(word bits / 16) of them), the other memories in
RAM40_4K block RAMs at their best aspect ratio, tables up to `SMALL_ROM_BITS` in logic.
It is the generator's memory inventory mapped by hand, an estimate of what yosys does (the
synth stage measures it); bold when it fits the UP5K's 4 SPRAM and 30 RAM40_4K.  The same
for the rowstream design at 16 lanes: its weight rows in SPRAM (16K rows of 16 bits each),
the rest in RAM40_4K.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ticketforge.ir import load_graph, load_test_inputs
from ticketforge.rtl.bitpar.cycles import cycle_model as bitpar_cycle_model
from ticketforge.rtl.bitpar.plan import plan_graph
from ticketforge.rtl.cycles import cycle_model as lane_cycle_model
from ticketforge.errors import UnsupportedError
from ticketforge.rtl.datapath import accelerator
from ticketforge.rtl.lane.plan import SMALL_ROM_BITS, lane_plan
from ticketforge.rtl.rowstream.cycles import cycle_model as rowstream_cycle_model
from ticketforge.rtl.rowstream.plan import plan_graph as rowstream_plan

LANE_PES = (2, 4, 8)
UP5K_PES = (1, 2, 4)          # --up5k: one PE too (a UP5K holds few), and the memory of each
BITPAR_LANES = (2, 4, 8, 16)
ROWSTREAM_LANES = 16          # a row of 4-bit weights is then the UP5K's four SPRAMs side by side


def weight_stream_bits(g) -> int:
    """Bits of every synapse of every weighted layer: 2 (mask, sign) for a binary layer,
    weight_bits for a multi-bit one."""
    return sum(int(g.tensor(l, "weight").size) * (2 if l.weight_bits == 2 else l.weight_bits)
               for l in g.layers if l.has_weights)


def ice40_blocks(depth: int, width: int) -> int:
    """RAM40_4K blocks (256 x 16, 512 x 8, 1024 x 4, 2048 x 2) that a depth x width memory
    takes at the best aspect ratio."""
    return min(-(-depth // d) * -(-width // w) for d, w in ((256, 16), (512, 8), (1024, 4), (2048, 2)))


def up5k_memory(g, pes: int) -> tuple[int, int]:
    """(SPRAMs, RAM40_4K blocks) of the lane design with runtime weights on ``pes`` PEs."""
    return _up5k_of(lane_plan(g, pes, weights="runtime").memories)


def rowstream_up5k_memory(g) -> tuple[int, int] | None:
    """(SPRAMs, RAM40_4K blocks) of the rowstream design with runtime weights at
    `ROWSTREAM_LANES` lanes; None for an IR it does not run."""
    try:
        acc = accelerator(g, ROWSTREAM_LANES, "rowstream", weights="runtime")
    except UnsupportedError:
        return None
    from amaranth.back import rtlil

    rtlil.convert(acc)              # the memory inventory is the elaborated design's
    return _up5k_of(acc.memories)


def _up5k_of(memories) -> tuple[int, int]:
    spram = ebr = 0
    for m in memories:
        if m["name"].endswith("rows"):
            spram += -(-m["width"] // 16) * -(-m["depth"] // 16384)
        elif m["bits"] > SMALL_ROM_BITS and m.get("style") != "fifo":
            ebr += ice40_blocks(m["depth"], m["width"])
    return spram, ebr


def row(ir: Path, images: int, budget_cycles: float, lane_pes, up5k_pes) -> str:
    g = load_graph(ir)
    x, _ = load_test_inputs(ir)
    x = x[:images]
    metrics = json.loads((ir / "metrics.json").read_text())
    lane = [np.mean([c.total for c in lane_cycle_model(g, x, p)]) for p in lane_pes]
    bitpar = [np.mean([c.total for c in bitpar_cycle_model(plan_graph(g, n), x)]) for n in BITPAR_LANES]
    try:
        rowstream = np.mean([c.total for c in rowstream_cycle_model(rowstream_plan(g, ROWSTREAM_LANES), x)])
    except UnsupportedError:
        rowstream = None
    bits = sorted({l.weight_bits for l in g.layers if l.has_weights})
    neurons = sum(int(np.prod(l.out_shape)) for l in g.layers if l.kind in ("conv", "linear"))
    cell = lambda c: f"**{c:,.0f}**" if c <= budget_cycles else f"{c:,.0f}"  # noqa: E731
    return (f"| {ir} | {g.T} | {'/'.join(map(str, bits))} | {metrics['accuracy_float'] * 100:.1f} | "
            f"{metrics['accuracy_integer'] * 100:.1f} | {neurons:,} | {weight_stream_bits(g) / 1024:,.0f} | "
            + " | ".join(cell(c) for c in lane + bitpar) + f" | {'-' if rowstream is None else cell(rowstream)} |"
            + "".join(_up5k_cell(up5k_memory(g, p)) for p in up5k_pes)
            + (_up5k_cell(rowstream_up5k_memory(g)) if up5k_pes else ""))


def _up5k_cell(memory: tuple[int, int] | None) -> str:
    if memory is None:
        return " - |"
    spram, ebr = memory
    text = f"{spram} / {ebr}"
    return f" **{text}** |" if spram <= 4 and ebr <= 30 else f" {text} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("irs", nargs="+", type=Path, help="IR folders (build/<name>/ir)")
    ap.add_argument("--clock-mhz", type=float, default=15.0, help="the core's clock (default: the UP5K's 15 MHz PLL)")
    ap.add_argument("--budget-us", type=float, default=500.0, help="latency budget per image")
    ap.add_argument("--images", type=int, default=20, help="test images the cycle models run")
    ap.add_argument("--up5k", action="store_true",
                    help="also the UP5K memory (SPRAM / RAM40_4K) of the lane design at each PE count and of "
                         "the rowstream design")
    a = ap.parse_args()
    budget = a.budget_us * a.clock_mhz
    print(f"budget: {a.budget_us:g} us at {a.clock_mhz:g} MHz = {budget:,.0f} cycles per image; "
          f"mean of the first {a.images} test images\n")
    lane_pes = sorted(set(LANE_PES) | (set(UP5K_PES) if a.up5k else set()))
    up5k_pes = UP5K_PES if a.up5k else ()
    print("| IR | T | weight bits | float % | integer % | neurons | weight Kbit | "
          + " | ".join(f"lane P={p}" for p in lane_pes) + " | " + " | ".join(f"bitpar L={n}" for n in BITPAR_LANES)
          + f" | rowstream L={ROWSTREAM_LANES} |" + "".join(f" UP5K P={p} |" for p in up5k_pes)
          + (f" UP5K rowstream L={ROWSTREAM_LANES} |" if up5k_pes else ""))
    print("|" + "---|" * (8 + len(lane_pes) + len(BITPAR_LANES) + len(up5k_pes) + bool(up5k_pes)))
    for ir in a.irs:
        print(row(ir, a.images, budget, lane_pes, up5k_pes), flush=True)


if __name__ == "__main__":
    main()
