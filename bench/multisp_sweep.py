"""MultiSp's patch-level sweep (the SLT paper's Fig. 2, right): accuracy against the patch
pruning ratio P_b, for the ANN lottery ticket (LT) and the spiking one (SLT), each starting
from its PEPSp ticket (stage 1: the ConvPEP's BinW-SLT ticket at P_a).

    .venv/bin/python bench/multisp_sweep.py --lt build/table2/pepsp_lt/spikformer_multisp/ticket \\
        --slt build/table2/pepsp_slt/spikformer_multisp/ticket --out docs/img/multisp_sweep.png

For each ticket and each P_b in 0.1 .. 0.6: the ticket is loaded, the patches of the
smallest embedding magnitude are pruned (`model/pruning/multisp.py`) and it trains
``--epochs`` more epochs with the patch keep-mask at the config's ``train.patch_lr`` (stage
2, as `ticketforge train` runs it; ``train.patch_epochs`` by default); the test accuracy is
measured on the full test split.
Prints a markdown table and writes the plot and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from ticketforge.model.data import load_dataset
from ticketforge.model.pruning.multisp import patch_importance, prune_patches
from ticketforge.model.ticket import load_ticket
from ticketforge.model.train import evaluate, fit

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def sweep(ticket: Path, ratios, epochs: int | None) -> dict:
    base, cfg, _ = load_ticket(ticket)
    ds = load_dataset(cfg.data.dataset, cfg.data.data_dir, timesteps=cfg.model.timesteps)
    acc0, _ = evaluate(base, ds.test, ds.pixel_max, cfg.data.eval_batch_size)
    out = {"ticket": str(ticket), "P_a": cfg.model.r_p, "variant": cfg.model.variant, "P_b=0": acc0, "points": []}
    for p_b in ratios:
        net, _, _ = load_ticket(ticket)
        imp = patch_importance(net, ds.train, cfg.data.eval_batch_size, ds.pixel_max)
        kept = prune_patches(net, p_b, imp)
        n = cfg.train.patch_epochs if epochs is None else epochs
        rcfg = replace(cfg, model=replace(cfg.model, patch_prune=p_b), train=replace(cfg.train, lr=cfg.train.patch_lr))
        fit(net, ds, rcfg, n, torch.Generator().manual_seed(cfg.train.seed), False)
        acc, _ = evaluate(net, ds.test, ds.pixel_max, cfg.data.eval_batch_size)
        out["points"].append({"P_b": p_b, "patches_kept": kept["patches_kept"], "patches": kept["patches"],
                              "epochs": n, "test_accuracy": acc})
        print(f"  {cfg.model.variant} P_b {p_b}: {kept['patches_kept']}/{kept['patches']} patches, "
              f"{n} epochs -> {acc:.4f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lt", type=Path, required=True, help="the ANN PEPSp ticket folder (stage 1)")
    ap.add_argument("--slt", type=Path, required=True, help="the spiking PEPSp ticket folder (stage 1)")
    ap.add_argument("--epochs", type=int, default=None, help="stage-2 epochs (default: the config's patch_epochs)")
    ap.add_argument("--out", type=Path, default=Path("multisp_sweep.png"))
    args = ap.parse_args()
    res = {name: sweep(t, RATIOS, args.epochs) for name, t in (("LT", args.lt), ("SLT", args.slt))}
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    print("\n| P_b | patches kept | MultiSp-LT % | MultiSp-SLT % |\n|---|---|---|---|")
    print(f"| 0 (PEPSp) | all | {100 * res['LT']['P_b=0']:.1f} | {100 * res['SLT']['P_b=0']:.1f} |")
    for a, b in zip(res["LT"]["points"], res["SLT"]["points"]):
        print(f"| {a['P_b']} | {a['patches_kept']}/{a['patches']} | {100 * a['test_accuracy']:.1f} | "
              f"{100 * b['test_accuracy']:.1f} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, style in (("LT", "o--"), ("SLT", "s-")):
        xs = [0.0] + [p["P_b"] for p in res[name]["points"]]
        ys = [100 * res[name]["P_b=0"]] + [100 * p["test_accuracy"] for p in res[name]["points"]]
        ax.plot(xs, ys, style, label=f"MultiSp-{name}s (P_a = {res[name]['P_a']})")
    ax.set_xlabel("patch pruning ratio P_b")
    ax.set_ylabel("test accuracy % (mnist5k)")
    ax.set_title("spikformer, MultiSp: patch-level sparsity")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
