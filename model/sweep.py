"""`ticketforge sweep`: a grid of searches or pruning runs, in parallel processes, cached.

    ticketforge sweep --config vgg9_binw --grid r_p=0.2,0.4,0.6 --grid variant=binw,bnn
    ticketforge sweep --config mlp_snn_lth --grid method=imp,et-imp,random --grid sparsity=0.5,0.9

Grid keys are config keys (``r_p``, ``T``, ``lambda`` = ``model.lam``, ``variant``,
``train.epochs``, ...) plus ``method`` (``train`` or a ``ticketforge prune`` method) and
``sparsity`` (the prune target).  Each point's result is cached under
``build/<name>/sweep/<digest>/`` keyed by the digest of its full config, method and target,
so a rerun skips finished points.  ``--ray [ADDRESS]`` runs each point as a Ray task
(`ticketforge.distributed`): the task trains into its node's temporary folder and returns the
files, which the driver writes into the same cache folder (each point asks Ray for the CPUs
of one local job; the flow trains on CPUs, so no task asks for a GPU).  Writes ``sweep-<keys>.json`` and one PNG per grid key: test
accuracy against that key (or against the sparsity reached, for pruning grids), one line
per combination of the other keys.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from ticketforge.errors import ConfigError
from ticketforge.model.config import RunConfig, build_config

__all__ = ["parse_grid", "expand", "run_sweep", "plot_sweep", "ALIASES"]

ALIASES = {"lambda": "model.lam", "lam": "model.lam"}
SPECIAL = ("method", "sparsity")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected key=v1,v2,..., e.g. --grid r_p=0.2,0.4")
        key, values = item.split("=", 1)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"--grid {item!r}: no values")
        grid[ALIASES.get(key.strip(), key.strip())] = vals
    return grid


def expand(cfg: RunConfig, grid: dict[str, list[str]]) -> list[dict]:
    """One entry per grid point: overrides, the point's config, method and target.
    Bad keys or values fail here, before anything runs."""
    from ticketforge.model.pruning.run import METHODS

    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        over = dict(zip(keys, combo))
        method = over.get("method", "train")
        if method != "train" and method not in METHODS:
            raise ConfigError(f"--grid method: unknown {method!r}; allowed: train, {', '.join(METHODS)}")
        target = float(over["sparsity"]) if "sparsity" in over else None
        cfg_over = {k: v for k, v in over.items() if k not in SPECIAL}
        base = {k: v for k, v in cfg.to_dict().items() if k != "name"}
        pcfg = build_config(cfg.name, base, cfg_over, source="--grid")
        if pcfg.model.variant in ("ann", "snn"):
            # dense variants ignore r_p: equal configs share one digest, so they run once
            pcfg = replace(pcfg, model=replace(pcfg.model, r_p=0.0))
        digest = hashlib.sha256(json.dumps({"config": pcfg.to_dict(), "method": method, "target": target},
                                           sort_keys=True).encode()).hexdigest()[:16]
        points.append({"overrides": over, "method": method, "target": target, "digest": digest, "cfg": pcfg})
    return points


def _run_point(point: dict, out: Path, build_root: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    cfg: RunConfig = point["cfg"]
    if point["method"] == "train":
        from ticketforge.model.train import train
        m = train(cfg, out, progress=False, build_root=Path(build_root))
    else:
        from ticketforge.model.pruning.run import prune
        m = prune(cfg, point["method"], out, point["target"], Path(build_root), progress=False)
    return m


def _point_files(point: dict, build_root: str, threads: int) -> dict[str, bytes]:
    """A point as a Ray task: run it into a temporary folder on the node and return that
    folder's files (relative path -> bytes) for the driver to write."""
    with tempfile.TemporaryDirectory(prefix="ticketforge-sweep-") as tmp:
        out = Path(tmp) / point["digest"]
        _run_point(point, out, build_root, threads)
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}


def _write_point(folder: Path, files: dict[str, bytes]) -> dict:
    """A point's files from a Ray task into its cache folder, all or nothing: written beside
    it, then renamed into place; its metrics."""
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    for rel, data in files.items():
        (part / rel).parent.mkdir(parents=True, exist_ok=True)
        (part / rel).write_bytes(data)
    shutil.rmtree(folder, ignore_errors=True)       # what a crashed run left (it has no metrics.json)
    os.replace(part, folder)
    return json.loads((folder / "metrics.json").read_text())


def _summary(point: dict, m: dict) -> dict:
    p = m.get("prune", {})
    return {"overrides": point["overrides"], "method": point["method"], "target": point["target"],
            "digest": point["digest"], "test_accuracy": m["final_test_accuracy"],
            "synapse_sparsity": p.get("synapse_sparsity", 1 - m["unmasked_weights"] / m["weights"]),
            "neurons_removed_fraction": p.get("neurons_removed_fraction", 1 - m["live_neurons"] / max(1, m["neurons"])),
            "seconds": m["search_seconds"], "energy_uj": m["energy"]["energy_uj"],
            "sops": m["energy"]["sops_total"], "rounds": p.get("rounds")}


def run_sweep(cfg: RunConfig, grid: dict[str, list[str]], build_root: Path, jobs: int = 2,
              log=print, executor=None) -> dict:
    points = expand(cfg, grid)
    root = build_root / cfg.name / "sweep"
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    todo = []
    for p in points:
        mpath = root / p["digest"] / "metrics.json"
        if mpath.is_file():
            results[p["digest"]] = _summary(p, json.loads(mpath.read_text()))
            log(f"[sweep] {p['overrides']}: cached")
        elif all(q["digest"] != p["digest"] for q in todo):
            todo.append(p)
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    t0 = time.perf_counter()
    if todo and executor is not None:
        _run_on_ray(executor, todo, root, build_root, threads, results, log, t0)
    elif todo:
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
            futs = {pool.submit(_run_point, p, root / p["digest"], str(build_root), threads): p for p in todo}
            for i, f in enumerate(as_completed(futs), 1):
                p = futs[f]
                results[p["digest"]] = _summary(p, f.result())
                log(f"[sweep] {i}/{len(todo)} {p['overrides']}: test accuracy "
                    f"{results[p['digest']]['test_accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)")
    base = (f"{cfg.model.arch} on {cfg.data.dataset}, width {cfg.model.width}, {cfg.train.epochs} epochs, "
            f"T={cfg.model.T}, r_p={cfg.model.r_p}, seed {cfg.train.seed}")
    out = {"config": cfg.name, "base": base, "grid": grid,
           "points": [{**results[p["digest"]], "overrides": p["overrides"]} for p in points]}
    (root / f"sweep-{'-'.join(k.replace('.', '_') for k in grid)}.json").write_text(json.dumps(out, indent=2))
    out["plots"] = plot_sweep(out, root)
    return out


def _run_on_ray(executor, todo: list[dict], root: Path, build_root: Path, threads: int, results: dict, log,
                t0: float) -> None:
    from ticketforge.distributed import per_node_line, ray_session, task_map

    finished = [0]

    def done(i, files, node):
        p = todo[i]
        results[p["digest"]] = _summary(p, _write_point(root / p["digest"], files))
        finished[0] += 1
        log(f"[sweep] {finished[0]}/{len(todo)} {p['overrides']}: test accuracy "
            f"{results[p['digest']]['test_accuracy']:.4f} on {node} ({time.perf_counter() - t0:.0f} s)")

    with ray_session(executor, log):
        task_map(executor, _point_files, [(p, str(build_root), threads) for p in todo], num_cpus=threads,
                 what="sweep point", on_done=done)
    log(per_node_line(executor, "point(s)"))


def _x_of(key: str, point: dict):
    if key == "sparsity":            # plot what was reached, not what was asked
        return 100 * (point["neurons_removed_fraction"] if point["method"].startswith("dynsnn")
                      else point["synapse_sparsity"])
    try:
        return float(point["overrides"][key])
    except ValueError:
        return point["overrides"][key]


_LABELS = {"r_p": "pruning rate r_p", "model.r_p": "pruning rate r_p", "T": "timesteps T",
           "model.T": "timesteps T", "model.lam": "decay rate lambda"}


def _label(key: str, points: list[dict]) -> str:
    if key != "sparsity":
        return _LABELS.get(key, key)
    neuron = {p["method"].startswith("dynsnn") for p in points}
    if neuron == {True}:
        return "neurons removed (%)"
    if neuron == {False}:
        return "synapse sparsity reached (%)"
    return "sparsity reached (%): synapses, or neurons for DynSNN"


def plot_sweep(sweep: dict, folder: Path) -> list[str]:
    """One PNG per grid key: accuracy (%) vs that key, a line per other-key combination."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    keys = list(sweep["grid"])
    for key in keys:
        if key == "method" and len(keys) > 1:
            continue
        others = [k for k in keys if k != key]
        series: dict[str, list] = {}
        for p in sweep["points"]:
            label = ", ".join(f"{k}={p['overrides'][k]}" for k in others) or sweep["config"]
            series.setdefault(label, []).append((_x_of(key, p), 100 * p["test_accuracy"]))
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, pts in sorted(series.items()):
            pts.sort(key=lambda t: (isinstance(t[0], str), t[0]))
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
        label = _label(key, sweep["points"])
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{sweep['config']}: test accuracy vs {label}\n{sweep.get('base', '')}", fontsize=9)
        ax.grid(True, alpha=0.3)
        if len(series) > 1 or others:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"accuracy_vs_{key.replace('.', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(str(path))
    return files

