"""Write, compile and C-simulate the hls4ml project of an IR; compare with the golden model.

Every image's class scores and every neuron layer's spike trains (hls4ml's `trace`) are
compared with the golden interpreter with `==`.  Images are split over worker processes
(forked after the one compile, so each inherits the loaded library).
"""
from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from ticketforge.hls.from_ir import HLS_PART, build_model, loop_work, traced_layers
from ticketforge.ir import golden
from ticketforge.errors import UsageError
from ticketforge.ir.schema import Graph

__all__ = ["run_csim", "write_project", "parallel_chunks", "CHUNK"]

CHUNK = 20                     # images per trace call: bounds the memory of traced spike trains
_STATE: dict = {}              # what the running parallel_chunks hands its workers (inherited by fork)


@contextmanager
def _quiet():
    """hls4ml prints a line per trace call ("Recompiling ... with tracing")."""
    with redirect_stdout(StringIO()):
        yield


def write_project(g: Graph, out_dir: Path, backend: str = "Vitis", part: str = HLS_PART):
    """Write and compile the project (tracing on); returns the compiled ModelGraph."""
    model = build_model(g, out_dir, backend=backend, part=part, trace=True)
    with _quiet():
        model.config.trace_output = True
        model.compile()
    # hls4ml's trace() rebuilds the library on every call; it is built with tracing on
    # already, so later calls reuse the loaded one.
    model.compile = lambda: None
    return model


def _call(fn, lo: int, hi: int):
    return fn(_STATE, lo, hi)


def parallel_chunks(fn, state: dict, n: int, jobs: int, desc: str | None, chunk: int = CHUNK) -> list[dict]:
    """``fn(state, lo, hi)`` over [0, n) in chunks, on `jobs` processes forked from this one
    (so `state`, a compiled library included, is inherited, not pickled); results in order.
    `desc`: a tqdm bar."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    chunks = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    bar = None
    if desc:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="img", desc=desc, leave=False)
    results = []
    _STATE.update(state)
    try:
        if jobs == 1 or len(chunks) == 1:
            for lo, hi in chunks:
                results.append(fn(state, lo, hi))
                bar and bar.update(hi - lo)
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as pool:
                for (lo, hi), f in zip(chunks, [pool.submit(_call, fn, lo, hi) for lo, hi in chunks]):
                    results.append(f.result())
                    bar and bar.update(hi - lo)
    finally:
        bar and bar.close()
        _STATE.clear()
    return results


def _flat(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.float64)


def _check(state: dict, lo: int, hi: int) -> dict:
    """C-simulate images [lo, hi) and compare them with the golden interpreter."""
    model, g, images = state["model"], state["graph"], state["images"]
    x = images[lo:hi]
    t0 = time.perf_counter()
    with _quiet():
        pred, trace = model.trace(_flat(x))
    seconds = time.perf_counter() - t0
    scores = np.rint(np.asarray(pred, dtype=np.float64)).reshape(len(x), -1).astype(np.int64)
    ref = golden.run(g, x, trace=True)
    same = np.all(scores == ref.scores, axis=1)
    for name in traced_layers(g):
        want = ref.spikes[name]
        got = np.asarray(trace[name]).reshape(want.shape)
        same &= np.all((got.reshape(len(x), -1) == want.reshape(len(x), -1)), axis=1)
    return {"scores": scores, "same": same, "seconds": seconds}


def _work_summary(work: dict) -> dict:
    kept = sum(w["kept"] for w in work.values())
    dense = sum(w["dense"] for w in work.values())
    return {"kept": kept, "dense": dense, "dense_over_kept": round(dense / max(kept, 1), 3),
            "live_neurons": sum(w["live_neurons"] for w in work.values()),
            "neurons": sum(w["neurons"] for w in work.values()), "per_layer": work}


def run_csim(g: Graph, images: np.ndarray, labels: np.ndarray, out_dir: Path, jobs: int = 2,
             backend: str = "Vitis", progress: bool = True) -> dict:
    """C-simulate `images` ([N, C, H, W] input codes) on the hls4ml project written to
    `out_dir`/project; returns the result (the caller records it) and saves `scores.npy`."""
    if len(images) == 0:
        raise UsageError("no images to simulate")
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    model = write_project(g, out_dir / "project", backend=backend)
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = parallel_chunks(_check, {"model": model, "graph": g, "images": np.asarray(images)}, len(images),
                              jobs, "hls csim" if progress else None)
    run_s = time.perf_counter() - t1
    scores = np.concatenate([r["scores"] for r in results])
    same = np.concatenate([r["same"] for r in results])
    mismatched = [int(i) for i in np.flatnonzero(~same)]
    res = {
        "backend": backend, "part": HLS_PART, "io_type": "io_parallel",
        "images": int(len(images)), "agree": int(same.sum()), "matches_golden": bool(same.all()),
        "mismatched_images": mismatched[:20],
        "compared": "class scores and every neuron layer's spike trains (hls4ml trace), every image",
        "accuracy_hls": float(np.mean(scores.argmax(axis=1) == labels)),
        "synapse_loop_iterations_per_image": _work_summary(loop_work(g)),
        "seconds": {"write_compile": round(compile_s, 2), "csim": round(run_s, 2)},
        "seconds_per_image": round(run_s * jobs / len(images), 4), "jobs": jobs,
        "verified": "C simulation (g++ build of the hls4ml project, ap_int types as written)",
        "not_verified": "vendor HLS synthesis, co-simulation and timing (no Vitis HLS on these machines)",
    }
    np.save(out_dir / "scores.npy", scores)
    return res
