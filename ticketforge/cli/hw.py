"""`ticketforge hw`: every stage in order, keeping a stage whose inputs did not change, then
the report."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ticketforge.cli.hardware_cmds import (baseline_config, cmd_hls, cmd_rtl, cmd_sim, resolve_rtl_args, synth_one,
                                         load_split)
from ticketforge.cli.model_cmds import cmd_quantize, cmd_train, load_cfg
from ticketforge.cli.parser import HW_STAGES
from ticketforge.errors import StageMissingError, UsageError
from ticketforge.cli.freshness import digests, hls_inputs, quantize_fresh, sim_inputs, stage_fresh, synth_inputs

__all__ = ["cmd_hw"]


def cmd_hw(args) -> int:
    """Run every stage in order, skipping a stage whose inputs are unchanged."""
    from ticketforge.deploy.boards import get_board

    cfg = load_cfg(args)
    resolve_rtl_args(args, cfg)
    get_board(args.board or cfg.hw.board)        # an unknown board fails now, not after the simulation
    if args.hls and args.baseline:
        baseline_config(args.baseline)            # so does a wrong baseline
    first, last = args.from_stage, args.to_stage
    root = Path(args.build_dir) / cfg.name
    tdir, irdir = root / "ticket", root / "ir"
    seconds, kept = {}, []
    t_run = time.perf_counter()

    def say(line: str) -> None:
        # one write per line: the synth stage's thread prints beside the sim stage's
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def stage(name: str, fresh, kept_why: str, doing: str, run) -> int:
        """Keep the stage when ``fresh()`` says its inputs are unchanged, else ``run()``;
        one line each way and one with the stage's seconds."""
        t = time.perf_counter()
        forced = first is not None and HW_STAGES.index(name) >= HW_STAGES.index(first)
        if not forced and fresh():
            say(f"[hw] {name} stage: {kept_why}, kept")
            kept.append(name)
            rc = 0
        elif first is not None and not forced:
            raise StageMissingError(f"--from {first}: the {name} stage before it is not up to date; run "
                                    f"`ticketforge hw` with --from {name}, or without --from")
        else:
            say(f"[hw] {name} stage: {doing}")
            rc = run()
        seconds[name] = time.perf_counter() - t
        if not rc:
            say(f"[hw] {name} stage done ({seconds[name]:.1f} s)")
        return rc

    def model_fresh() -> bool:
        # the ticket depends on these tables only (not on [prune], which `prune` reads)
        keys = ("name", "model", "data", "train", "energy")
        meta = tdir / "ticket.json"
        if not (meta.is_file() and (tdir / "metrics.json").is_file()):
            return False
        have = json.loads(meta.read_text()).get("config", {})
        return {k: v for k, v in have.items() if k in keys} == {k: v for k, v in cfg.to_dict().items() if k in keys}

    def quantize() -> int:
        args.ticket = None
        return cmd_quantize(args)

    from ticketforge.rtl.emit import generator_digest
    rtldir = root / ("rtl-dense" if args.dense else "rtl")
    rtl_params = {"pes": args.pes, "dense": args.dense, "trace": args.trace, "memory_style": args.memory_style,
                  "fifo_depth": args.fifo_depth, "datapath": args.datapath}
    board = args.board or cfg.hw.board
    synth: dict = {}

    def synth_fresh() -> bool:
        if stage_fresh(root / "synth", synth_inputs(root), f"{board}.json",
                       expect={"params": {"bitstream": args.bitstream, "clock_mhz": cfg.hw.clock_mhz}}):
            synth.update(json.loads((root / "synth" / f"{board}.json").read_text()))
            return True
        return False

    def synth_run() -> int:
        synth.update(synth_one(cfg, root, board, args.bitstream, args.quiet))
        return 0

    def hls_fresh() -> bool:
        want = {"images": len(load_split(root, args.images)[0]), "backend": args.backend}
        return stage_fresh(root / "hls", hls_inputs(root), "results.json", expect=want) and (
            not args.baseline or json.loads((root / "hls" / "results.json").read_text())
            .get("baseline", {}).get("name") == args.baseline)

    steps = [
        ("model", model_fresh, f"{tdir} was made from this exact config", "ticket search", lambda: cmd_train(args)),
        ("quantize", lambda: quantize_fresh(irdir, tdir, args.precision_bits, cfg.data.data_dir or None),
         f"{irdir} is up to date with the ticket, --precision-bits and the lowering code",
         "brevitas view, BN folding, integer IR, golden interpreter", quantize),
        ("rtl", lambda: stage_fresh(rtldir, {"graph.json": irdir / "graph.json", "tensors.npz": irdir / "tensors.npz"},
                                    expect={"params": rtl_params, "generator": generator_digest()}),
         f"{rtldir} is up to date with the IR", "Amaranth accelerator -> Verilog, verilator lint",
         lambda: cmd_rtl(args)),
    ]
    if args.dense:
        print("[hw] the dense reference design: model, quantize and rtl only (no sim, synth or report)")
    else:
        steps += [
            ("sim", lambda: stage_fresh(root / "sim", sim_inputs(root), "results.json",
                                        expect={"params": {"simulator": args.simulator, "images": str(args.images)}}),
             f"{root / 'sim' / 'results.json'} was measured on this Verilog", f"cocotb regression on {args.simulator}",
             lambda: cmd_sim(args)),
            ("synth", synth_fresh, f"{root / 'synth' / f'{board}.json'} was made from this RTL", board, synth_run),
        ]
        if args.hls:
            steps.append(("hls", hls_fresh, f"{root / 'hls' / 'results.json'} was made from this IR",
                          f"hls4ml {args.backend} project, C simulation", lambda: cmd_hls(args)))
    _check_range(args, [st[0] for st in steps])          # before any stage runs
    if last is not None:
        steps = [st for st in steps if HW_STAGES.index(st[0]) <= HW_STAGES.index(last)]
    beside = None
    for k, step in enumerate(steps):
        if step[0] == "sim" and k + 1 < len(steps) and steps[k + 1][0] == "synth":
            # synthesis needs only the RTL: it runs beside the simulation (one yosys process;
            # the simulation's reference and build phases leave a core to it much of the time)
            from concurrent.futures import ThreadPoolExecutor

            if args.simulator == "verilator":
                # the Verilator build's environment is set before the synthesis thread
                # starts, not while it runs (sim/build.py: verilator_environment)
                from ticketforge.sim.build import verilator_environment

                verilator_environment()
            pool = ThreadPoolExecutor(1, thread_name_prefix="synth")
            beside = pool.submit(stage, *steps[k + 1])
            pool.shutdown(wait=False)
        rc = beside.result() if step[0] == "synth" and beside is not None else stage(*step)
        if rc:
            return rc
        if step[0] == "synth" and not synth["fits"]:
            over = ", ".join(f"{k} {v['used']} of {v['available']}" for k, v in synth["over"].items())
            print(f"[hw] warning: {cfg.name} does not fit the {board} ({over}); the report says so")
    if args.dense:
        return 0
    if last is not None:
        print(f"[hw] stopped after the {last} stage (--to {last}); no report")
        return 0
    t5 = time.perf_counter()
    print("[hw] report stage: cycle model on the simulated images, energy, plots", flush=True)
    rep = assemble_report(cfg, root, {board: synth}, seconds)
    seconds["report"] = time.perf_counter() - t5
    # a kept stage reports what it took when it ran (the previous report's figure);
    # this run's own wall time is `run_seconds`
    prev = json.loads((root / "report.json").read_text()).get("stage_seconds", {}) \
        if (root / "report.json").is_file() else {}
    rep["run_seconds"] = round(time.perf_counter() - t_run, 1)      # wall time (synth overlaps sim)
    rep["stage_seconds"] = {k: prev.get(k, round(v, 1)) if k in kept else round(v, 1) for k, v in seconds.items()}
    rep["stages_kept"] = kept
    from ticketforge.deploy.report import write_report
    files = write_report(rep, root)
    b = rep["boards"][board]
    print(f"[hw] report stage done ({seconds['report']:.1f} s) -> {files[0]}, {files[1].name}, {files[2].name}")
    print(f"[{cfg.name}] RTL == golden on {rep['images_checked']} images: {rep['rtl_matches_golden']}; accuracy "
          f"float {rep['accuracy']['float']:.4f}, integer {rep['accuracy']['integer']:.4f}, RTL "
          f"{rep['accuracy']['rtl']:.4f}; {rep['cycles']['per_image_mean']:.0f} cycles/image; "
          f"{board}: fits {b['fits']}, Fmax {b['fmax_mhz']} MHz, latency {b['latency_us']} us at {b['clock_mhz']} MHz; "
          f"wall {rep['run_seconds']:.0f} s")
    return 0


def _check_range(args, stages: list[str]) -> None:
    """``--from`` and ``--to`` against each other and against ``stages``, this run's stages."""
    first, last = args.from_stage, args.to_stage
    for opt, st in (("--from", first), ("--to", last)):
        if st is not None and st not in stages:
            why = "--dense builds model, quantize and rtl only" if args.dense else "the hls stage runs with --hls only"
            raise UsageError(f"{opt} {st}: this run has no {st} stage ({why})")
    if first is not None and last is not None and HW_STAGES.index(first) > HW_STAGES.index(last):
        raise UsageError(f"--from {first} comes after --to {last}")


def assemble_report(cfg, root: Path, synth: dict, seconds: dict) -> dict:
    """The report's content; the cycle model's per-layer figures are cached per sim result."""
    from ticketforge.deploy.report import build_report, cycles_from_sim, model_cycles
    from ticketforge.ir import load_graph, load_test_inputs

    sim = json.loads((root / "sim" / "results.json").read_text())
    cache = root / "sim" / "cycle_model.json"
    datapath = sim.get("datapath", "lane")
    key = {"inputs": sim["inputs"], "images": sim["images_run"], "pes": sim["pes"], "fifo_depth": sim.get("fifo_depth"),
           "datapath": datapath}
    if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
        cycles = json.loads(cache.read_text())["cycles"]
    else:
        g = load_graph(root / "ir")
        codes, _ = load_test_inputs(root / "ir")
        if sim.get("cycle_model", {}).get("images") == sim["images_run"] and sim["images_run"]:
            cycles = cycles_from_sim(g, sim, codes[0], sim["pes"], fifo_depth=sim.get("fifo_depth"),
                                     datapath=datapath)
        else:                               # a results.json from before the sim stage kept them
            cycles = model_cycles(g, codes[:sim["images_run"]], sim["pes"], jobs=os.cpu_count() or 1,
                                  fifo_depth=sim.get("fifo_depth"), datapath=datapath)
        if datapath == "bitpar":
            # the one-synapse-per-PE floor on the same P, beside this datapath's own bound
            from ticketforge.deploy.report import one_synapse_bound

            cycles["bound_one_synapse_per_pe"] = one_synapse_bound(g, codes[:sim["images_run"]], sim["pes"])
        cache.write_text(json.dumps({"key": key, "cycles": cycles}, indent=1))
    return build_report(root, cfg.name, cycles, synth, {k: round(v, 1) for k, v in seconds.items()},
                        hls=hls_section(root))


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
