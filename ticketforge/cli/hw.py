"""`ticketforge hw`: every stage in order (`ticketforge.cli.stages`), keeping a stage whose
inputs, settings, code and tools did not change (`ticketforge.flow`), then the report."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ticketforge.cli.freshness import digests, hls_inputs
from ticketforge.cli.model_cmds import load_cfg
from ticketforge.cli.stages import hw_settings, hw_stages, resolve_hw_args, synth_result
from ticketforge.errors import UsageError
from ticketforge.ir.prefix import describe_prefix

__all__ = ["cmd_hw"]


def cmd_hw(args) -> int:
    """Run every stage in order, keeping a stage that is up to date."""
    from ticketforge.cli.hardware_cmds import baseline_config
    from ticketforge.deploy.boards import get_board
    from ticketforge.flow import run_stages

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    board = get_board(args.board).name           # an unknown board fails now, not after the simulation
    if args.hls and args.baseline:
        baseline_config(args.baseline)            # so does a wrong baseline
    if args.dense and {args.from_stage, args.to_stage} & {"sim", "synth", "netlist", "hls"}:
        st = args.to_stage if args.to_stage in ("sim", "synth", "netlist", "hls") else args.from_stage
        raise UsageError(f"--from/--to {st}: --dense builds model, quantize and rtl only")
    if not args.hls and "hls" in (args.from_stage, args.to_stage):
        raise UsageError("--from/--to hls: the hls stage runs with --hls only")
    root = Path(args.build_dir) / cfg.name
    t_run = time.perf_counter()

    def say(line: str) -> None:
        # one write per line: the synth stage's thread prints beside the sim stage's
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def after(outcome) -> None:
        if outcome.name == "synth":
            r = json.loads(synth_result(root, board).read_text())
            if not r["fits"]:
                over = ", ".join(f"{k} {v['used']} of {v['available']}" for k, v in r["over"].items())
                say(f"[hw] warning: {cfg.name} does not fit the {board} ({over}); the report says so")

    if args.dense:
        print("[hw] the dense reference design: model, quantize and rtl only (no sim, synth or report)")
    stages = hw_stages(args, cfg)
    if args.simulator == "verilator" and not args.dense:
        # the Verilator build's environment is set before the synthesis thread starts, not
        # while it runs (sim/build.py: verilator_environment)
        from ticketforge.sim.build import verilator_environment

        verilator_environment()
    done = run_stages(stages, args.from_stage, args.to_stage, say=say, tag="hw", after=after)
    if args.dense:
        return 0
    if args.to_stage is not None:
        print(f"[hw] stopped after the {args.to_stage} stage (--to {args.to_stage}); no report")
        return 0
    t5 = time.perf_counter()
    print("[hw] report stage: cycle model on the simulated images, energy, plots", flush=True)
    synth = json.loads(synth_result(root, board).read_text())
    seconds = {name: o.seconds for name, o in done.items()}
    rep = assemble_report(cfg, root, {board: synth}, seconds)
    seconds["report"] = time.perf_counter() - t5
    rep["run_seconds"] = round(time.perf_counter() - t_run, 1)      # wall time (synth overlaps sim)
    # a kept stage reports what it took when it ran (its record)
    rep["stage_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    rep["stages_kept"] = [name for name, o in done.items() if o.kept]
    rep["stages"] = {name: {"kept": o.kept, "seconds": round(o.seconds, 1), **o.record.get("key", {}),
                            "finished": o.record.get("finished")} for name, o in done.items()}
    rep["settings"] = hw_settings(args, cfg)
    if "netlist" in done:
        rep["netlist"] = netlist_section(next(s.folder for s in stages if s.name == "netlist"), board)
    from ticketforge.deploy.report import write_report
    files = write_report(rep, root)
    b = rep["boards"][board]
    print(f"[hw] report stage done ({seconds['report']:.1f} s) -> {files[0]}, {files[1].name}, {files[2].name}")
    print(f"[{cfg.name}] RTL == golden on {rep['images_checked']} images: {rep['rtl_matches_golden']}; accuracy "
          f"float {rep['accuracy']['float']:.4f}, integer {rep['accuracy']['integer']:.4f}, RTL "
          + (f"{rep['accuracy']['rtl']:.4f}" if rep['accuracy']['rtl'] is not None else
             f"n/a ({describe_prefix(rep['accelerator_prefix'])})")
          + f"; {rep['cycles']['per_image_mean']:.0f} cycles/image; "
          f"{board}: fits {b['fits']}, Fmax {b['fmax_mhz']} MHz, latency {b['latency_us']} us at {b['clock_mhz']} MHz; "
          f"wall {rep['run_seconds']:.0f} s")
    return 0


def assemble_report(cfg, root: Path, synth: dict, seconds: dict) -> dict:
    """The report's content; the cycle model's per-layer figures are cached per sim result."""
    from ticketforge.deploy.report import build_report, cycles_from_sim, model_cycles
    from ticketforge.ir import load_graph, load_test_inputs
    from ticketforge.ir.prefix import accelerator_form

    sim = json.loads((root / "sim" / "results.json").read_text())
    cache = root / "sim" / "cycle_model.json"
    datapath = sim.get("datapath", "lane")
    key = {"inputs": sim["inputs"], "images": sim["images_run"], "pes": sim["pes"], "fifo_depth": sim.get("fifo_depth"),
           "datapath": datapath, "weights": sim.get("weights", "baked")}
    if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
        cycles = json.loads(cache.read_text())["cycles"]
    else:
        g = accelerator_form(load_graph(root / "ir"))
        codes, _ = load_test_inputs(root / "ir")
        if sim.get("cycle_model", {}).get("images") == sim["images_run"] and sim["images_run"]:
            cycles = cycles_from_sim(g, sim, codes[:sim["images_run"]], sim["pes"], fifo_depth=sim.get("fifo_depth"),
                                     datapath=datapath)
        else:                               # a results.json from before the sim stage kept them
            cycles = model_cycles(g, codes[:sim["images_run"]], sim["pes"], jobs=os.cpu_count() or 1,
                                  fifo_depth=sim.get("fifo_depth"), datapath=datapath,
                                  weights=sim.get("weights", "baked"))
        if datapath != "lane":
            # the one-synapse-per-PE floor on the same P, beside this datapath's own bound (the lane
            # datapath's cycle model)
            from ticketforge.deploy.report import one_synapse_bound

            cycles["bound_one_synapse_per_pe"] = one_synapse_bound(g, codes[:sim["images_run"]], sim["pes"])
        cache.write_text(json.dumps({"key": key, "cycles": cycles}, indent=1))
    return build_report(root, cfg.name, cycles, synth, {k: round(v, 1) for k, v in seconds.items()},
                        hls=hls_section(root))


def netlist_section(folder: Path, board: str) -> dict:
    """The `netlist` section of the report: the board's synthesized netlist against the golden
    model and the cycle model."""
    res = json.loads((folder / "results.json").read_text())
    nl = res.get("netlist") or {}
    return {"board": board, "family": nl.get("family"), "simulator": res.get("simulator_version"),
            "images": res["images_run"], "agree": res["agree"], "matches_golden": bool(res["rtl_matches_golden"]),
            "cycles_equal_model": bool(res.get("cycles_equal_model")), "cells": nl.get("cells", {}),
            "synth": nl.get("synth")}


def hls_section(root: Path) -> dict | None:
    """The `hls` section of the report: present when `ticketforge hls` ran on this IR."""
    res_path = root / "hls" / "results.json"
    if not res_path.is_file():
        return None
    res = json.loads(res_path.read_text())
    if res.get("inputs") != digests(hls_inputs(root)):
        print(f"[hw] note: {res_path} was made from another IR; re-run `ticketforge hls` to report it")
        return None
    keys = ("backend", "part", "images", "agree", "matches_golden", "compared", "accuracy_hls",
            "synapse_loop_iterations_per_image", "seconds",
            "seconds_per_image", "jobs", "verified", "not_verified", "baseline")
    return {k: res[k] for k in keys if k in res}
