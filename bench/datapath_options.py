"""Datapath options for the accelerator, compared by cycles, memory traffic and energy per image
before any RTL is written (the design study behind docs/DATAPATH.md).

    .venv/bin/python bench/datapath_options.py                      # the shipped vgg9_binw IR
    .venv/bin/python bench/datapath_options.py build/vgg9_binw/ir --images 200 --pes 16 64

Every figure is counted from the golden interpreter's events on real test images (the first
N of the mnist5k test split, the split the IR was made from):

- ``lane`` (the RTL today): event driven, one kept synapse per PE per cycle, a membrane
  read and write per accumulate.  Cycles and counters are the exact cycle model
  (`rtl/cycles.py`, proven equal to the RTL); energy is the report's estimate
  (`deploy/energy.py`) over the generator's own memory inventory.
- ``word`` (direction a): the same event-driven dataflow, but all kept taps of one
  synapse word in one cycle (membranes banked by (y mod k, x mod k), so a word's taps never
  collide).  Cycles: the ideal bound of that datapath, (weight words read + neuron updates)
  / P.  Its memory events are today's, so its energy is today's.
- ``bitpar`` (direction b): output-stationary and bit-parallel, a layer over all T before
  the next.  All PEs work on the same output position, each on its own output channels
  (``lanes`` of them per PE); per kernel tap and timestep one word of the input spike bitmap
  (all input channels: one bit each) is read and broadcast, and each lane adds
  ``popcount(s & m & positive) - popcount(s & m & negative)`` of its channel's mask and sign
  words.  A tap whose spike word is zero is skipped (an occupancy check: the spike words are
  the events), a position none of whose lanes has a live neuron is skipped, and a masked
  synapse is a 0 in the AND.  The membrane stays in a register over the T timesteps (layer-
  major: t is the innermost loop), so there is no membrane memory at all; the spikes go to
  the next layer's bitmap (a pool ORs them into its pooled bitmap as they are written).  The
  first layer's input is the same at every t (direct encoding), so its input current is
  summed once (one nonzero pixel of a tap per cycle) and the LIF update runs T times.
  Cycles per position and lane group: the taps' nonzero spike words (T of them per tap at
  most) + T LIF updates.
- ``bitpar dense``: the same datapath with nothing skipped (every word of every position
  and every neuron), the reference the skipping is measured against.
- ``bitpar_time_major``: ``bitpar`` with the timestep outermost, as today's schedule: every
  neuron's membrane is read and written once per timestep (not per accumulate).

The ``bitpar`` cycle count takes a zero spike word to cost no cycle: the RTL needs the
words' occupancy ahead of the reads (one bit per word, set as the producing layer writes its
spikes, scanned by a priority encoder while the previous position is processed).  The
``18Kb`` column counts 18 Kbit block RAMs (ECP5 DP16KD) at the best aspect ratio: today's
from the generator's memory inventory (the memories it leaves to block RAM); ``bitpar``'s
from its weight words, one memory per lane (2 x word bits wide: the lanes read in parallel),
and the two spike bitmaps a layer has live (its input, the next layer's).  ``time-major``
adds the membranes (one 18-bit word per live neuron).

Energy prices are deploy/energy.py's (Horowitz ISSCC 2014, 45 nm): an SRAM read of a word of
that memory's size and width, an add of the accumulator's width.  An n-bit popcount is
priced as n full adders, i.e. n / 8 8-bit adds (an 8-bit ripple-carry add is 8 full adders).
Word memories of ``bitpar`` are sized from the layer shapes: the spike bitmaps (T x C_in
bits per position), the mask and sign words (2 x C_in bits per output channel and tap).
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from ticketforge.deploy.energy import add_pj, hardware_events_energy, sram_pj
from ticketforge.ir import load_graph, load_test_inputs, run
from ticketforge.ir.io import TEST_INPUTS_FILE
from ticketforge.rtl.accel import Accelerator, bram18_blocks
from ticketforge.rtl.cycles import cycle_model, layer_inputs

SHIPPED = Path(__file__).resolve().parents[1] / "tests" / "data" / "vgg9_binw_ir"
WORD = 64                 # bits of a spike word (a lane's synapses per cycle), by default


def _test_images(g, folder: Path, n: int) -> np.ndarray:
    """The IR's test split as the hardware receives it (``test_inputs.npz``, written by the
    quantize stage), or for an IR without one (the shipped one) its dataset's test split."""
    if (folder / TEST_INPUTS_FILE).is_file():
        return load_test_inputs(folder)[0][:n].astype(np.int64)
    from ticketforge.model.data import load_dataset

    name = g.provenance.get("config", {}).get("data", {}).get("dataset", "mnist5k")
    return np.asarray(load_dataset(name, None).test.images[:n]).astype(np.int64)


def _bitpar_layer(g, l, x, P: int, lanes: int, first: bool, word: int = WORD, dense: bool = False) -> dict:
    """Cycles and memory events per image of one weighted layer on the ``bitpar`` datapath."""
    n, T = x.shape[:2]
    par = P * lanes
    live = (np.ones(l.out_shape, bool) if l.kind == "output" or dense
            else g.tensor(l, "neuron_mask").astype(bool))
    if dense:                   # no skipping: every word of every position is an event
        x = np.ones(x.shape, bool)
    acc_bits = 18
    if l.kind == "conv":
        C, H, W = l.in_shape
        Co, Ho, Wo = l.out_shape
        k, s, p = g.tensor(l, "mask").shape[-1], l.stride, l.padding
        groups = math.ceil(Co / par)
        # live lane groups per output position: a position with no live neuron in a group is skipped
        pad_c = groups * par - Co
        lv = np.concatenate([live, np.zeros((pad_c, Ho, Wo), bool)]).reshape(groups, par, Ho, Wo).any(1)
        live_groups = lv.sum(0)                                        # [Ho, Wo]
        xp = np.pad(x != 0, ((0, 0), (0, 0), (0, 0), (p, p), (p, p)))   # [N, T, C, H+2p, W+2p]
        if first:
            # the input is the same at every t: one pixel per cycle, summed once
            nz = xp[:, 0]                                              # [N, C, Hp, Wp]: each pixel nonzero
            per_tap = nz.sum(1)                                        # nonzero pixels of the C channels
            word_any = per_tap > 0
        else:
            # a position's C spike bits are ceil(C / word) words; a zero word is skipped
            chunks = math.ceil(C / word)
            xw = np.concatenate([xp, np.zeros(xp.shape[:2] + (chunks * word - C,) + xp.shape[3:], bool)], 2)
            word_nz = xw.reshape(n, T, chunks, word, *xp.shape[3:]).any(3)   # [N, T, chunks, Hp, Wp]
            per_tap = word_nz.sum((1, 2))                              # nonzero words over T
            word_any = word_nz.any(1).sum(1)                           # words read once over T
        taps = np.zeros((n, Ho, Wo), np.int64)
        taps_any = np.zeros((n, Ho, Wo), np.int64)
        for ky in range(k):
            for kx in range(k):
                taps += per_tap[:, ky:ky + s * Ho:s, kx:kx + s * Wo:s]
                taps_any += word_any[:, ky:ky + s * Ho:s, kx:kx + s * Wo:s]
        cycles = ((taps + T) * live_groups).reshape(n, -1).sum(1)
        spike_reads = (taps * live_groups).reshape(n, -1).sum(1)       # one broadcast read per cycle
        weight_reads = (taps_any * live_groups).reshape(n, -1).sum(1) * par   # per lane, once over T
        popcount_bits = min(C, word)
        # (depth, width) of the input memory: the spike bitmap, T x words per position;
        # the first layer's 8-bit pixels, one word of C pixels per position
        spike_mem = (H * W, 8 * C) if first else (T * H * W * math.ceil(C / word), min(C, word))
        weight_mem = (math.ceil(Co / par) * k * k * math.ceil(C / word), 2 * min(C, word))
        n_pos = int(live.sum())
        updates = T * n_pos
    else:
        n_in = int(np.prod(l.in_shape))
        n_out = l.out_shape[0]
        groups = math.ceil(n_out / par)
        wd = min(n_in, word)
        words = math.ceil(n_in / wd)
        xi = (x.reshape(n, T, -1) != 0)
        xi = np.concatenate([xi, np.zeros((n, T, words * wd - n_in), bool)], 2).reshape(n, T, words, wd).any(3)
        nzw = xi.sum((1, 2))                                           # nonzero input words over T
        anyw = xi.any(1).sum(1)
        live_groups = int(np.concatenate([live, np.zeros(groups * par - n_out, bool)]).reshape(groups, par).any(1).sum())
        out_layer = l.kind == "output"
        cycles = (nzw + (0 if out_layer else T)) * live_groups
        spike_reads = nzw * live_groups
        weight_reads = anyw * live_groups * par
        popcount_bits = wd
        spike_mem = (T * words, wd)
        weight_mem = (groups * words, 2 * wd)
        updates = 0 if out_layer else T * int(live.sum())
    e_spike = sram_pj(*spike_mem)
    e_weight = sram_pj(*weight_mem)
    popcount_pj = 2 * popcount_bits / 8 * add_pj(8)                   # positive and negative halves
    if first:
        popcount_pj = add_pj(acc_bits)                                 # a +-pixel shift-add per lane
    e = {"spike_reads": spike_reads * e_spike,
         "weight_reads": weight_reads * e_weight,
         "adds": spike_reads * par * (popcount_pj + add_pj(acc_bits)),
         "neuron_updates": np.full(n, updates * (2 * add_pj(acc_bits))),
         "spike_writes": np.full(n, 0.0)}
    if l.kind != "output":
        out_words = T * int(np.prod(l.out_shape[1:])) if l.kind == "conv" else T
        e["spike_writes"] = np.full(n, out_words * sram_pj(out_words, l.out_shape[0]))
    return {"cycles": cycles, "energy_pj": e, "input_mem": spike_mem, "weight_mem": weight_mem}


def bitpar(g, images, gold, P: int, lanes: int, time_major: bool = False, word: int = WORD,
           dense: bool = False) -> dict:
    ins = layer_inputs(g, images, gold.spikes)
    n = len(images)
    cycles = np.zeros(n, np.int64)
    energy = {}
    first = True
    weight_depth, width = 0, 0          # one lane's weight memory: all layers' words, stacked
    bitmaps = []                        # per weighted layer: its input memory's blocks
    for l in g.layers:
        if not l.has_weights:
            continue
        r = _bitpar_layer(g, l, ins[l.name], P, lanes, first, word, dense)
        first = False
        cycles += r["cycles"]
        for k, v in r["energy_pj"].items():
            energy[k] = energy.get(k, 0) + v
        if time_major and l.kind != "output":
            live = int(g.tensor(l, "neuron_mask").sum())
            depth = math.ceil(live / P)
            energy["membrane"] = energy.get("membrane", 0) + 2 * g.T * live * sram_pj(depth, 18)
        weight_depth += r["weight_mem"][0]
        width = max(width, r["weight_mem"][1])
        bitmaps.append(bram18_blocks(*r["input_mem"]))
    cycles += int(np.prod(g.input.shape)) + g.layers[-1].out_shape[0]     # LOAD and OUT, as today
    uj = float(np.mean(sum(energy.values()))) * 1e-6
    return {"cycles": cycles, "uj": uj, "by_event_uj": {k: float(np.mean(v)) * 1e-6 for k, v in energy.items()},
            # a layer reads its input bitmap while it writes the next layer's: two live at a time
            "brams": P * lanes * bram18_blocks(weight_depth, width)
                     + max(a + b for a, b in zip(bitmaps, bitmaps[1:] + [0]))}


def lane(g, images, gold, P: int) -> dict:
    res = cycle_model(g, images, P, gold=gold)
    acc = Accelerator(g, P)
    acc.elaborate(None)                                   # the memory inventory, as the manifest has it
    manifest = {"memories": acc.memories, "membrane_bits": acc.acc_bits}
    counters = {k: {c: float(np.mean([r.counters[k][c] for r in res])) for c in res[0].counters[k]}
                for k in res[0].counters}
    e = hardware_events_energy(counters, manifest)
    by = {}
    for layer in e["layers"].values():
        for k, v in layer["by_event_uj"].items():
            by[k] = by.get(k, 0) + v
    words = np.array([sum(r.counters[k]["weight_reads"] for k in r.counters) for r in res])
    updates = np.array([r.neuron_updates for r in res])
    # the memories the generator leaves to block RAM (the rest it asks for in logic, and the
    # FIFOs map to LUT RAM): 203 for vgg9_binw at P = 16, what yosys maps (docs/RTL.md)
    brams = sum(bram18_blocks(m["depth"], m["width"]) for m in acc.memories if m["style"] in ("auto", "block"))
    return {"cycles": np.array([r.total for r in res]), "uj": e["uj"], "by_event_uj": by, "brams": brams,
            "ideal": np.array([r.ideal_bound for r in res]), "word_bound": (words + updates) / P}


def lane_cost_ecp5(width: int, acc_bits: int = 18) -> dict:
    """One PopcountLane of `width` synapses through yosys' synth_ecp5: LUT4, CCU2C (carry
    cells, two LUT4 each) and FFs."""
    import json
    import subprocess
    import tempfile

    from amaranth.back import rtlil

    from ticketforge.deploy.synth import yosys_cmd
    from ticketforge.rtl.popcount_lane import PopcountLane

    with tempfile.TemporaryDirectory() as d:
        il = Path(d) / "lane.il"
        il.write_text(rtlil.convert(PopcountLane(width, acc_bits), name="lane"))
        # relative paths: the yowasp (WebAssembly) yosys sees the working directory
        r = subprocess.run(yosys_cmd() + ["-q", "-p", "read_rtlil lane.il; synth_ecp5 -top lane; "
                                          "tee -q -o stat.json stat -json"],
                           cwd=d, capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"yosys failed on the lane: {r.stderr[-2000:] or r.stdout[-2000:]}")
        cells = json.loads((Path(d) / "stat.json").read_text())["design"]["num_cells_by_type"]
    lut4, ccu, ffs = cells.get("LUT4", 0), cells.get("CCU2C", 0), cells.get("TRELLIS_FF", 0)
    return {"width": width, "lut4": lut4, "ccu2c": ccu, "lut4_equiv": lut4 + 2 * ccu, "ffs": ffs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", nargs="?", default=str(SHIPPED), help="an IR folder (default: the shipped vgg9_binw IR)")
    ap.add_argument("--images", type=int, default=50, help="test images (default 50)")
    ap.add_argument("--pes", type=int, nargs="+", default=[16], help="PE counts (default 16)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4], help="bitpar output channels per PE")
    ap.add_argument("--mhz", type=float, default=40.0, help="clock for the latency column (default 40)")
    ap.add_argument("--word", type=int, nargs="+", default=[WORD],
                    help=f"bitpar spike word widths, a lane's synapses per cycle (default {WORD})")
    ap.add_argument("--yosys", action="store_true", help="also synthesize one bitpar lane (synth_ecp5) and "
                                                         "print the lanes' logic per P and lanes")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*created but never used")   # the inventory-only elaboration
    g = load_graph(args.ir)
    images = _test_images(g, Path(args.ir), args.images)
    gold = run(g, images, trace=True)
    print(f"{Path(args.ir)}: {args.images} test images, T = {g.T}; latency at {args.mhz:g} MHz; "
          "energy: 45 nm event estimate (deploy/energy.py)")
    print(f"{'datapath':<24} {'P':>3} {'lanes':>5} {'cycles/image':>13} {'x lane':>7} {'latency us':>10} "
          f"{'energy uJ':>9} {'18Kb':>6}  largest terms")
    for P in args.pes:
        today = lane(g, images, gold, P)
        base = today["cycles"].mean()

        def row(name, lanes_, cyc, uj, by, brams):
            top = sorted(by.items(), key=lambda kv: -kv[1])[:3]
            terms = ", ".join(f"{k} {v:.1f}" for k, v in top)
            print(f"{name:<24} {P:>3} {lanes_:>5} {cyc:>13,.0f} {base / cyc:>6.1f}x {cyc / args.mhz:>10.0f} "
                  f"{uj:>9.1f} {brams:>6}  {terms}")
        row("lane (RTL today)", 1, base, today["uj"], today["by_event_uj"], today["brams"])
        row("  its ideal bound", 1, today["ideal"].mean(), float("nan"), {}, "")
        row("word (a): bound", 9, today["word_bound"].mean(), today["uj"], today["by_event_uj"],
            f">={today['brams']}")
        for wd in args.word:
            for L in args.lanes:
                r = bitpar(g, images, gold, P, L, word=wd)
                row(f"bitpar (b) w{wd}", L, r["cycles"].mean(), r["uj"], r["by_event_uj"], r["brams"])
        r = bitpar(g, images, gold, P, args.lanes[-1], word=args.word[0], dense=True)
        row(f"bitpar w{args.word[0]} dense", args.lanes[-1], r["cycles"].mean(), r["uj"], r["by_event_uj"], r["brams"])
        r = bitpar(g, images, gold, P, args.lanes[0], time_major=True, word=args.word[0])
        row(f"bitpar w{args.word[0]} time-major", args.lanes[0], r["cycles"].mean(), r["uj"], r["by_event_uj"],
            f"+{math.ceil(sum(int(g.tensor(l, 'neuron_mask').sum()) for l in g.layers if l.neuron) / P / 1024) * P}")
    if args.yosys:
        # a lane takes the widest word of any layer (narrower ones are zero-padded)
        for wd in args.word:
            widest = max(min(int(np.prod(l.in_shape)) if l.kind != "conv" else l.in_shape[0], wd)
                         for l in g.layers if l.has_weights)
            cost = lane_cost_ecp5(widest)
            print(f"one bitpar lane of {widest} synapses (synth_ecp5): {cost['lut4']} LUT4 + {cost['ccu2c']} "
                  f"CCU2C = {cost['lut4_equiv']} LUT4 equivalents, {cost['ffs']} FF")
            for P in args.pes:
                for L in args.lanes:
                    print(f"  P = {P:>3}, lanes = {L}: {P * L * cost['lut4_equiv']:>7,} LUT4 equivalents, "
                          f"{P * L * cost['ffs']:>6,} FF in the lanes (ECP5-85F: 83,640 LUT4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
