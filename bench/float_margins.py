"""How far float32 decision values move with the CPU's kernels and thread count, and how that
compares with the stated near-tie margin (``ticketforge.model.margins.NEAR_TIE``).

    .venv/bin/python bench/float_margins.py          # this process's settings
    .venv/bin/python bench/float_margins.py --all    # every ATEN_CPU_CAPABILITY x {1, 2} threads

For the float-sensitive tests' networks (the untrained BNN-BinAct MLP of the hls4ml baseline
test, a binary-weight LIF MLP as in the NIR round trip, a binary-weight LIF conv net), it runs
float32 and float64 on the same images and prints, over the images whose float64 decisions are
all clear of the margin (``settled``): the largest |float32 - float64| of any decision value
(0/1-activation inputs, LIF ``H - theta``) and its ratio to the margin.  On settled images
every layer sees identical 0/1 inputs in both runs, so the difference is rounding alone.
``--all`` re-runs itself in a child process per setting (torch reads both at start-up).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TORCH_LOGS", "-all")    # torch's "Triton not available" notice

import numpy as np
import torch

from ticketforge.model.config import ModelConfig, load_config
from ticketforge.model.margins import NEAR_TIE, decision_margins, decision_values
from ticketforge.model.zoo import build_model

CAPABILITIES = ("default", "avx2", "avx512")


def _nets() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    bnn = build_model(load_config("mlp_binw_digits", {"model.variant": "bnn"}).model, (1, 8, 8), 10)
    for m in bnn.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-2, 2)
            m.running_var.uniform_(0.5, 2)
    bnn_images = torch.from_numpy(rng.integers(0, 256, (400, 1, 8, 8))).float() / 255
    out = {"bnn_mlp_8x8": (bnn.eval(), bnn_images)}
    for arch, shape, width in (("mlp", (1, 28, 28), 1.0), ("conv4", (1, 16, 16), 0.125)):
        torch.manual_seed(0)
        net = build_model(ModelConfig(arch=arch, variant="binw", r_p=0.4, T=4, lam=0.9, width=width), shape, 10)
        for _ in range(3):
            net(torch.rand(16, *shape))                 # batch-norm statistics
        out[f"binw_lif_{arch}"] = (net.eval(), torch.rand(200, *shape))
    return out


def measure() -> dict:
    rows = {}
    for name, (net, images) in _nets().items():
        m = decision_margins(net, images)
        settled = m.settled()
        v32, _ = decision_values(net, images, torch.float32)
        v64, _ = decision_values(net, images, torch.float64)
        worst = max(float(np.abs(v32[k][settled].astype(np.float64) - v64[k][settled]).max(initial=0.0))
                    for k in v64)
        rows[name] = {"images": len(images), "settled": int(settled.sum()), "clear": int(m.clear().sum()),
                      "max_abs_f32_minus_f64": worst, "margin_over_worst": NEAR_TIE / worst if worst else None}
    return {"aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"),
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "nets": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--all", action="store_true", help="every ATEN_CPU_CAPABILITY x {1, 2} threads")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)   # the child's output
    args = ap.parse_args()
    if not args.all:
        res = measure()
        if args.json:
            print(json.dumps(res))
            return 0
        results = [res]
    else:
        results = []
        for cap in CAPABILITIES:
            for threads in (1, 2):
                env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(threads)}
                out = subprocess.run([sys.executable, __file__, "--json"], env=env, text=True,
                                     capture_output=True, check=True, timeout=600)
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"near-tie margin {NEAR_TIE:g}; max |float32 - float64| of a decision value over settled images")
    print(f"{'ATEN_CPU_CAPABILITY':>20} {'used':>8} {'thr':>3}  {'net':<16} {'settled':>9} {'clear':>7} "
          f"{'max diff':>9} {'margin/diff':>11}")
    for r in results:
        for name, n in r["nets"].items():
            ratio = f"{n['margin_over_worst']:.0f}x" if n["margin_over_worst"] else "-"
            print(f"{r['aten_cpu_capability']:>20} {r['cpu_capability']:>8} {r['threads']:>3}  {name:<16} "
                  f"{n['settled']:>4}/{n['images']:<4} {n['clear']:>7} {n['max_abs_f32_minus_f64']:>9.2e} {ratio:>11}")
    worst = max(n["max_abs_f32_minus_f64"] for r in results for n in r["nets"].values())
    print(f"largest difference {worst:.2e}: the margin is {NEAR_TIE / worst:.0f} times it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
