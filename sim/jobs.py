"""The regression's jobs: the images each simulator process runs, with their reference results
(the golden interpreter's scores and spike trains, the cycle model's cycles and counters),
written as ``job.npz`` + ``job.json`` for the testbench (`sim/tb.py`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.ir import Graph, run
from ticketforge.rtl.datapath import counter_names, cycle_model, status_layers as model_status_layers
from ticketforge.rtl.program import map_graph

__all__ = ["write_job", "write_job_meta", "shard_bounds", "spread_traced", "Shard", "write_jobs"]


def write_job(g: Graph, images: np.ndarray, pes: int, dense: bool, traced: list[int], job: Path,
              trace_port: bool, chunk: int = 100, progress=None, fifo_depth: int | None = None,
              datapath: str = "lane", weights: str = "baked") -> dict:
    """Reference results for `images` into job.json / job.npz (chunked: the traced golden
    run of 1,000 VGG images would not fit in memory at once)."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    prog = map_graph(g, pes, dense) if datapath == "lane" else None
    scores, cycles, counters, layer_cycles, layer_ideal, ideal = [], [], [], [], [], []
    status_layers = model_status_layers(g, datapath)     # also the cycle model's layers
    names = counter_names(datapath)
    traced_spikes: dict[str, list] = {}
    n = len(images)
    for s in range(0, n, chunk):
        part = images[s:s + chunk]
        gold = run(g, part, trace=True)
        model = cycle_model(g, part, pes, datapath, dense=dense, gold=gold, prog=prog, fifo_depth=fifo_depth,
                            weights=weights)
        scores.append(gold.scores)
        for mdl in model:
            cycles.append(mdl.total)
            counters.append([mdl.total] + [mdl.counters[name][c] for name in status_layers for c in names])
            layer_cycles.append([mdl.per_layer[name] for name in status_layers])
            layer_ideal.append([mdl.ideal_per_layer[name] for name in status_layers])
            ideal.append(mdl.ideal_bound)
        for i in traced:
            if s <= i < s + chunk:
                for name, sp in gold.spikes.items():
                    traced_spikes.setdefault(name, []).append(sp[i - s])
        if progress:
            progress(min(s + chunk, n))
    job.mkdir(parents=True, exist_ok=True)
    arrays = {"images": np.asarray(images, np.int64), "scores": np.concatenate(scores),
              "cycles": np.array(cycles, np.int64), "counters": np.array(counters, np.int64),
              "traced": np.array(sorted(traced), np.int64),
              # the cycle model's per-layer figures, kept for the report (no second golden run)
              "layer_cycles": np.array(layer_cycles, np.int64).reshape(n, len(status_layers)),
              "layer_ideal": np.array(layer_ideal, np.float64).reshape(n, len(status_layers)),
              "ideal": np.array(ideal, np.float64)}
    for name, lst in traced_spikes.items():
        arrays[f"spikes/{name}"] = np.stack(lst)
    np.savez(job / "job.npz", **arrays)
    return {"layers": [{"name": l.name, "kind": l.kind, "out_shape": list(l.out_shape)} for l in g.layers],
            "model_layers": status_layers,
            "T": g.T, "pes": pes, "trace": trace_port, "events": g.input.events}


def _write_job_star(args: tuple, fifo_depth: int | None, datapath: str = "lane", weights: str = "baked") -> dict:
    return write_job(*args, fifo_depth=fifo_depth, datapath=datapath, weights=weights)


def write_job_meta(job: Path, meta: dict, man: dict, progress: bool, stop_at_first_mismatch: bool) -> None:
    """The job's ``job.json`` (what the testbench reads besides ``job.npz``); stale outputs go."""
    meta.update({"status": man["status"], "score_bits": man["score_bits"], "trace_fields": man["trace_fields"],
                 "progress": progress, "stop_at_first_mismatch": stop_at_first_mismatch})
    if "weights_file" in man:              # runtime weights: the testbench loads them first
        meta.update({"weights_file": man["weights_file"], "load_layout": man["load"]["layout"]})
    (job / "job.json").write_text(json.dumps(meta))
    for stale in ("results.json", "progress"):
        if (job / stale).exists():
            (job / stale).unlink()


def shard_bounds(n: int, jobs: int) -> np.ndarray:
    """Where the contiguous shards of ``n`` images start and end, ``jobs`` of them."""
    jobs = max(1, min(int(jobs), n))
    return np.linspace(0, n, jobs + 1).astype(int)


def spread_traced(k: int, n: int, jobs: int) -> list[int]:
    """``k`` of ``n`` images to trace, the first images of each shard in turn: a traced
    image wakes Python every cycle (~20 s for one vgg9_binw image), so each simulator
    process takes its share instead of the first one taking them all."""
    bounds = shard_bounds(n, jobs)
    round_robin = [int(a + i) for i in range(n) for a, b in zip(bounds[:-1], bounds[1:]) if a + i < b]
    return sorted(round_robin[:k])


class Shard:
    """One simulator process's contiguous images ``[start, end)`` and its job folder."""

    def __init__(self, start: int, end: int, job: Path):
        self.start, self.end, self.job = start, end, job


def write_jobs(g: Graph, images: np.ndarray, out_dir: Path, jobs: int, traced: list[int], man: dict,
               trace_port: bool, progress: bool, stop_at_first_mismatch: bool) -> tuple[list[Shard], list[dict]]:
    """Split ``images`` into ``jobs`` contiguous shards and write each one's job (the
    references in parallel, one process per shard); returns the shards and their metas."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    params = man["params"]
    pes, dense, fifo_depth = params["pes"], params["dense"], params["fifo_depth"]
    datapath, weights = params.get("datapath", "lane"), params.get("weights", "baked")
    bounds = shard_bounds(len(images), jobs)
    n = len(bounds) - 1
    shards = [Shard(int(a), int(b), out_dir / (f"job{k}" if n > 1 else "job"))
              for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    job_args = [(g, images[s.start:s.end], pes, dense, [i - s.start for i in traced if s.start <= i < s.end], s.job,
                 trace_port) for s in shards]
    if n > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("fork")) as pool:
            metas = list(pool.map(_write_job_star, job_args, [fifo_depth] * n, [datapath] * n, [weights] * n))
    else:
        metas = [write_job(*job_args[0], fifo_depth=fifo_depth, datapath=datapath, weights=weights)]
    for s, meta in zip(shards, metas):
        write_job_meta(s.job, meta, man, progress, stop_at_first_mismatch)
    return shards, metas
