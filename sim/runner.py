"""Host side of the cocotb regression: build the Verilog with a real simulator (Icarus or
Verilator, through ``cocotb_tools.runner``), hand the testbench (`sim/tb.py`) a job of
images with their reference results, and turn what it measured into
``results.json`` (and ``mismatches.json`` when the RTL disagrees).

The reference is the golden interpreter of the IR (itself proven equal to the PyTorch
integer model, `ticketforge.model.intsim`) for scores and spike trains, and the cycle
model (`ticketforge.rtl.cycles`) for cycles and every status counter.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ticketforge.ir.prefix import accelerator_form, prefix_info
from ticketforge.ir import Graph
from ticketforge.sim import jobs as sim_jobs
from ticketforge.sim.build import (PGO_ENV, PGO_MIN_CYCLES, SIMULATORS, SIM_TOP, build_simulation, log_tail,
                                   pgo_min_cycles, simulator_version)
from ticketforge.sim.errors import SimError, SimMismatch
from ticketforge.sim.jobs import spread_traced, write_job

__all__ = ["SIMULATORS", "SimError", "SimMismatch", "simulator_version", "write_job", "run_sim", "spread_traced",
           "PGO_ENV", "PGO_MIN_CYCLES"]

TB_MODULE = "ticketforge.sim.tb"


def run_sim(rtl_dir: Path, g: Graph, images: np.ndarray, out_dir: Path, simulator: str = "icarus",
            labels: np.ndarray | None = None, traced: list[int] = (), progress: bool = False,
            stop_at_first_mismatch: bool = True, jobs: int = 1, log=print, netlist=None, executor=None) -> dict:
    """Build `rtl_dir/top.v` with `simulator`, run `images` through it, check everything,
    write ``out_dir/results.json`` and return it.  Raises SimMismatch after writing
    ``out_dir/mismatches.json`` when anything differs.  ``jobs`` > 1 splits the images
    into that many contiguous shards, each run by its own simulator process on the one
    build (the testbench is single-threaded; the machines have several cores).
    ``netlist``: a `deploy.netlist.Netlist` to simulate instead of ``top.v`` (the synthesized
    core with its cell models; no trace port), against the same references.
    ``executor``: a `ticketforge.distributed.RayExecutor` runs each shard as a Ray task
    (`sim/remote.py`) instead of a local process; the results are the same."""
    version = simulator_version(simulator)
    pgo_threshold = pgo_min_cycles() if simulator == "verilator" else None    # a bad override fails now
    g = accelerator_form(g)    # what the RTL runs: the chain form, or a transformer's prefix (ir/prefix.py)
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir)
    man = json.loads((rtl_dir / "manifest.json").read_text())
    if man["params"].get("weights") == "runtime":
        # the testbench loads it before the images, from its own working folder: an absolute path
        man["weights_file"] = str((rtl_dir / "weights.bin").resolve())
    trace_port = man["params"]["trace"]
    if netlist is not None:
        trace_port = False                      # synth_top.v, which synthesis reads, has no debug port
    traced = [i for i in traced if i < len(images)] if trace_port else []

    t0 = time.perf_counter()
    shards, metas = sim_jobs.write_jobs(g, images, out_dir, jobs, traced, man, trace_port, progress,
                                        stop_at_first_mismatch)
    ref_s = time.perf_counter() - t0
    refs = [np.load(s.job / "job.npz") for s in shards]      # the references, read once
    expected_cycles = sum(int(d["cycles"].sum()) for d in refs)

    def one_image(job: Path, build_dir: Path) -> None:
        """The profile-guided build's training run: the first image."""
        p = man["params"]
        meta = sim_jobs.write_job(g, images[:1], p["pes"], p["dense"], [], job, trace_port,
                                  fifo_depth=p["fifo_depth"], datapath=p.get("datapath", "lane"),
                                  weights=p.get("weights", "baked"))
        sim_jobs.write_job_meta(job, meta, man, False, True)
        run_testbench(simulator, build_dir, job, out_dir / "run-verilator-profile.log")

    pgo = pgo_threshold is not None and expected_cycles >= pgo_threshold
    log(f"[sim] building {rtl_dir / 'top.v'} with {version}" +
        (f", profile-guided ({expected_cycles / 1e6:.0f}M cycles to simulate)" if pgo else ""), flush=True)
    build_dir, build_s = build_simulation(simulator, rtl_dir, out_dir, netlist=netlist, trace_port=trace_port,
                                          profile_run=one_image if pgo else None)

    where = f"{len(shards)} Ray task(s)" if executor is not None else f"{len(shards)} process(es)"
    log(f"[sim] running {len(images)} images on {simulator} in {where} (built in {build_s:.1f} s)", flush=True)
    t2 = time.perf_counter()
    if executor is not None:
        parts = _run_shards_on_ray(executor, simulator, build_dir, shards, len(images), progress, log)
    else:
        parts = _run_shards(simulator, build_dir, shards, out_dir, len(images), progress)
    run_s = time.perf_counter() - t2

    results = _results(_merge(shards, parts), parts, refs, metas, man, images, labels, netlist)
    prefix = prefix_info(g)
    if prefix is not None:
        # an accelerator prefix (ir/prefix.py): its readout counts spikes, it does not predict
        results.update(accuracy_rtl=None, accuracy_golden=None, accelerator_prefix=prefix)
    results.update({"simulator": simulator, "simulator_version": version,
                    "wall_seconds": {"reference": round(ref_s, 2), "build": round(build_s, 2), "run": round(run_s, 2),
                                     "testbench_loop": round(max(p["wall_seconds"] for p in parts), 2)},
                    "simulated_cycles_per_wall_second": round(results["cycles"]["total"] / run_s, 1) if run_s else None})
    return _write_results(out_dir, results)


def run_testbench(simulator: str, build_dir: Path, job: Path, logf: Path) -> dict:
    """One simulator process running the testbench on ``job``; its ``results.json``."""
    from cocotb_tools.runner import get_runner

    # one BLAS thread: the testbench does no linear algebra, and idle OpenBLAS threads
    # spin on the cores the other simulator processes need
    env = {"TICKETFORGE_SIM_JOB": str(job.resolve()), "PYTHONPATH": os.pathsep.join(sys.path),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        get_runner(simulator).test(test_module=TB_MODULE, hdl_toplevel=SIM_TOP, hdl_toplevel_lang="verilog",
                                   build_dir=build_dir, test_dir=job, extra_env=env,
                                   results_xml=str((job / "results.xml").resolve()), log_file=logf)
    except (Exception, SystemExit) as e:     # a failing cocotb test makes the runner exit 1
        if not (job / "results.json").exists():
            raise SimError(f"{simulator} run failed: {e}\n{log_tail(logf)}") from None
    if not (job / "results.json").exists():
        raise SimError(f"the testbench wrote no results; see {logf}\n{log_tail(logf)}")
    return json.loads((job / "results.json").read_text())


def _run_shards(simulator: str, build_dir: Path, shards, out_dir: Path, total: int, progress: bool) -> list[dict]:
    """Every shard's testbench, each in its own simulator process, at once."""
    from concurrent.futures import ThreadPoolExecutor

    many = len(shards) > 1

    def one(shard):
        return run_testbench(simulator, build_dir, shard.job,
                             out_dir / f"run-{simulator}{'-' + shard.job.name if many else ''}.log")

    with ThreadPoolExecutor(len(shards)) as pool:      # each shard is a simulator subprocess
        futures = [pool.submit(one, s) for s in shards]
        if progress:
            _progress_bar(futures, [s.job for s in shards], total, simulator)
        return [f.result() for f in futures]


def _run_shards_on_ray(executor, simulator: str, build_dir: Path, shards, total: int, progress: bool,
                       log) -> list[dict]:
    """Every shard as a Ray task (`sim/remote.py`): the build shipped once, one bar over the
    images all nodes finished, each shard's results written into its job folder here."""
    from ticketforge.distributed import per_node_line, progress_tally, ray_session, task_map
    from ticketforge.sim.remote import job_files, run_shard_on_node, simulation_files

    with ray_session(executor, log) as ray:
        build_ref = ray.put(simulation_files(simulator, build_dir))
        tally = progress_tally()
        bar = _tqdm_bar(total, f"[sim] {simulator} on Ray") if progress else None

        def poll():
            if bar is not None:
                bar.update(ray.get(tally.total.remote()) - bar.n)

        def done(i, res, node):
            (shards[i].job / "results.json").write_text(json.dumps(res))
            poll()

        args = [(simulator, build_ref, job_files(s.job), k, tally) for k, s in enumerate(shards)]
        try:
            parts = task_map(executor, run_shard_on_node, args, num_cpus=1, what="regression shard",
                             on_done=done, poll=poll)
        finally:
            if bar is not None:
                bar.close()
    log(per_node_line(executor, "shard(s)"), flush=True)
    return parts


def _merge(shards, parts: list[dict]) -> dict:
    """The shards' testbench results as one run, image numbers global; a shard after one
    that stopped at a mismatch is not counted."""
    r = {"images_run": 0, "agree": 0, "mismatches": [], "scores": [], "cycles": [], "counters": [], "traced": []}
    for s, p in zip(shards, parts):
        if r["images_run"] < s.start:               # an earlier shard stopped at a mismatch
            break
        r["images_run"] += p["images_run"]
        r["agree"] += p["agree"]
        r["mismatches"] += [{**m, "image": m["image"] + s.start} for m in p["mismatches"]]
        r["scores"] += p["scores"]
        r["cycles"] += p["cycles"]
        r["counters"] += p["counters"]
        r["traced"] += [i + s.start for i in p["traced"]]
    return r


def _results(r: dict, parts: list[dict], refs, metas: list[dict], man: dict, images, labels, netlist) -> dict:
    """``results.json``'s content from the merged run and the references (the caller adds
    the simulator and the wall times)."""
    data = {k: np.concatenate([d[k] for d in refs]) for k in ("scores", "cycles", "layer_cycles", "layer_ideal", "ideal")}
    n_run = r["images_run"]
    cyc = np.array(r["cycles"], np.int64)
    counters = np.array(r["counters"], np.int64)
    summed: dict[str, dict[str, int]] = {}
    for j, s in enumerate(man["status"][1:], start=1):
        summed.setdefault(s["layer"], {})[s["counter"]] = int(counters[:, j].sum()) if n_run else 0
    preds = np.array([int(np.argmax(s)) for s in r["scores"]], np.int64)
    gold_preds = data["scores"][:n_run].argmax(1)
    params = man["params"]
    loop_s = sum(p["wall_seconds"] for p in parts)
    return {
        "images_run": n_run, "images_requested": int(len(images)),
        "netlist": netlist.describe() if netlist is not None else None,
        "rtl_matches_golden": bool(n_run == len(images) and r["agree"] == n_run),
        "agree": int(r["agree"]), "mismatching_images": len({m["image"] for m in r["mismatches"]}),
        "mismatches": r["mismatches"],
        "traced_images": r["traced"],
        "accuracy_rtl": float((preds == labels[:n_run]).mean()) if labels is not None and n_run else None,
        "accuracy_golden": float((gold_preds == labels[:n_run]).mean()) if labels is not None and n_run else None,
        "cycles": {"mean": float(cyc.mean()) if n_run else None, "min": int(cyc.min()) if n_run else None,
                   "max": int(cyc.max()) if n_run else None, "total": int(cyc.sum())},
        "cycles_equal_model": bool(n_run and (cyc == data["cycles"][:n_run]).all()),
        "counters_summed": summed,
        # the cycle model over the images run (equal to the RTL's when cycles_equal_model)
        "cycle_model": {"images": n_run,
                        "per_image_mean": float(data["cycles"][:n_run].mean()) if n_run else None,
                        "ideal_bound_mean": float(data["ideal"][:n_run].mean()) if n_run else None,
                        "per_layer": {name: {"sparse": float(data["layer_cycles"][:n_run, k].mean()),
                                             "ideal": float(data["layer_ideal"][:n_run, k].mean())}
                                      for k, name in enumerate(metas[0]["model_layers"])} if n_run else {}},
        "pes": params["pes"], "fifo_depth": params["fifo_depth"], "dense": params["dense"],
        "datapath": params.get("datapath", "lane"),
        "weights": params.get("weights", "baked"),
        "processes": len(parts),
        "simulated_cycles_per_wall_second_per_process":
            round(float(sum(sum(p["cycles"]) for p in parts)) / loop_s, 1) if loop_s else None,
    }


def _write_results(out_dir: Path, results: dict) -> dict:
    """``results.json``, and ``mismatches.json`` (raising SimMismatch) when anything differs."""
    mismatches = results.pop("mismatches")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    mm = out_dir / "mismatches.json"
    if mismatches:
        mm.write_text(json.dumps(mismatches, indent=1))
        raise SimMismatch(f"RTL differs from the reference on {results['mismatching_images']} image(s); first: "
                          f"{_describe(mismatches[0])}; all in {mm}")
    if mm.exists():
        mm.unlink()
    return results


def _tqdm_bar(total: int, desc: str):
    from tqdm import tqdm

    # into a log file (make hw > log) one line a minute, not one per poll
    return tqdm(total=total, desc=desc, unit="image", dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 60)


def _progress_bar(futures, jobs: list[Path], total: int, simulator: str, poll_s: float = 2.0) -> None:
    """A tqdm bar over the images finished by all simulator processes (each testbench
    writes its count to ``<job>/progress``)."""
    def done_images() -> int:
        n = 0
        for job in jobs:
            try:
                n += int((job / "progress").read_text() or 0)
            except (FileNotFoundError, ValueError):
                pass
        return n

    with _tqdm_bar(total, f"[sim] {simulator}") as bar:
        while not all(f.done() for f in futures):
            time.sleep(poll_s)
            bar.update(done_images() - bar.n)
        bar.update(done_images() - bar.n)


def _describe(m: dict) -> str:
    where = f"image {m['image']}"
    if m["what"] == "spikes":
        return f"{where}, layer {m['layer']}, timestep {m['timestep']}, neuron {m['neuron']}: spike rtl {m['rtl']} golden {m['golden']}"
    if m["what"] == "counter":
        return f"{where}, layer {m['layer']}, counter {m['counter']}: rtl {m['rtl']} model {m['model']}"
    if m["what"] == "cycles":
        return f"{where}: cycles rtl {m['rtl']} model {m['model']}"
    return f"{where}: scores rtl {m['rtl']} golden {m['golden']}"
