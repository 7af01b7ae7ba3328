"""The hardware-side subcommands, one stage each: rtl, sim, synth, hls; and run (a board)."""
from __future__ import annotations

import json
from pathlib import Path

from ticketforge.cli.freshness import digests
from ticketforge.cli.model_cmds import cmd_train, load_cfg
from ticketforge.errors import StageMissingError, UnsupportedError, UsageError
from ticketforge.ir.prefix import describe_prefix

__all__ = ["resolve_rtl_args", "cmd_rtl", "cmd_sim", "cmd_synth", "load_split", "cmd_run", "run_clock_mhz", "cmd_hls",
           "baseline_config"]


def resolve_rtl_args(args, cfg) -> None:
    """PEs and FIFO depth: the command line, else the config, else the generator's default
    (resolved here so that the rtl stage's manifest records the number that was built)."""
    from ticketforge.errors import ConfigError
    from ticketforge.rtl.cycles import check_fifo_depth, default_fifo_depth
    from ticketforge.rtl.program import MAX_PES

    # `is None`, not `or`: an explicit 0 is bad input to refuse, not a request for the default
    args.pes = cfg.hw.pes if args.pes is None else args.pes
    args.datapath = getattr(args, "datapath", None) or cfg.hw.datapath
    if args.datapath == "rowstream":
        from ticketforge.rtl.rowstream.plan import MAX_LANES

        if not 1 <= args.pes <= MAX_LANES:
            raise ConfigError(f"--pes is the lane count of the rowstream datapath: in [1, {MAX_LANES}], got {args.pes}")
        if args.fifo_depth is not None:
            raise ConfigError("--fifo-depth is a parameter of the lane datapath; the rowstream datapath has no "
                              "event FIFOs")
        args.fifo_depth = None
        return
    if args.datapath == "bitpar":
        from ticketforge.rtl.bitpar.plan import LANES

        if args.pes not in LANES:
            raise ConfigError(f"--pes is the lane count of the bitpar datapath: one of "
                              f"{', '.join(map(str, LANES))}, got {args.pes}")
        if args.fifo_depth is not None:
            raise ConfigError("--fifo-depth is a parameter of the lane datapath; the bitpar datapath has no "
                              "event FIFOs")
        args.fifo_depth = None
        return
    if not 1 <= args.pes <= MAX_PES:
        raise ConfigError(f"--pes must be in [1, {MAX_PES}], got {args.pes}")
    depth = cfg.hw.fifo_depth if args.fifo_depth is None else args.fifo_depth
    args.fifo_depth = check_fifo_depth(default_fifo_depth(args.pes) if depth is None else depth)


def cmd_rtl(args) -> int:
    from ticketforge.cli.stages import resolve_hw_args, rtl_stage
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    root = Path(args.build_dir) / cfg.name
    if not (root / "ir" / "graph.json").is_file():
        raise StageMissingError(f"no IR in {root / 'ir'}: run `ticketforge quantize --config {cfg.name}` first "
                      f"(or `make hw MODEL={cfg.name}`)")
    stage = rtl_stage(args, cfg)
    run_stage(stage, force=True)
    m = json.loads((stage.folder / "manifest.json").read_text())
    lint = m.get("lint", {})
    what = (f"{args.pes} {args.datapath} lanes" if args.datapath != "lane" else
            f"{args.pes} PEs ({args.fifo_depth}-entry event FIFOs)")
    print(f"[{cfg.name}] RTL -> {stage.folder / 'top.v'}: {what}, membranes {m['membrane_bits']} bits, "
          f"{len(m['memories'])} memories, {m['memory_bits'] / 8192:.1f} KiB; verilator lint: "
          f"{sum(lint.get('explained', {}).values())} explained warnings, "
          f"{len(lint.get('unexplained', []))} unexplained ({m['seconds']:.1f} s)")
    return 0


def cmd_sim(args) -> int:
    from ticketforge.cli.stages import resolve_hw_args, sim_stage
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    root = Path(args.build_dir) / cfg.name
    if not (root / "rtl" / "top.v").is_file():
        raise StageMissingError(f"no Verilog in {root / 'rtl'}: run `ticketforge rtl --config {cfg.name}` first "
                      f"(or `make hw MODEL={cfg.name}`)")
    load_split(root, args.images)                      # a bad --images fails now
    if args.netlist:
        from ticketforge.deploy.boards import get_board
        from ticketforge.deploy.netlist import NETLIST_FAMILIES

        board = get_board(args.netlist)                # an unknown board fails now
        if board.family not in NETLIST_FAMILIES:
            raise UnsupportedError(f"--netlist {board.name}: no cell models for its family ({board.family}); "
                                   f"netlists simulate for the iCE40 and ECP5 boards (icebreaker, ulx3s)")
    stage = sim_stage(args, cfg, netlist_board=args.netlist)
    run_stage(stage, force=True)
    res = json.loads((stage.folder / "results.json").read_text())
    integer = res.get("accuracy_integer_ir")
    what = f"{args.netlist} netlist on {args.simulator}" if args.netlist else args.simulator
    print(f"[{cfg.name}] {what}: {res['agree']}/{res['images_run']} images identical to the golden "
          f"model (scores, cycles, counters; spike trains on {len(res['traced_images'])}); "
          + (describe_prefix(res["accelerator_prefix"]) if res.get("accelerator_prefix") else
             f"RTL accuracy {res['accuracy_rtl']:.4f}" + (f" (integer IR {integer:.4f})" if integer is not None else ""))
          + f"; cycles/image {res['cycles']['mean']:.0f}; {res['simulated_cycles_per_wall_second']:.0f} "
          f"simulated cycles/s; run {res['wall_seconds']['run']:.0f} s -> {stage.folder / 'results.json'}")
    return 0


def cmd_synth(args) -> int:
    from ticketforge.cli.stages import resolve_hw_args, synth_stage
    from ticketforge.deploy.boards import BoardError, get_board
    from ticketforge.deploy.synth import closest_fit_hint
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    root = Path(args.build_dir) / cfg.name
    board = get_board(args.board)
    for f in ("core.il", "synth_top.v"):
        if not (root / "rtl" / f).is_file():
            raise StageMissingError(f"{root / 'rtl' / f} is missing: run `ticketforge rtl --config {cfg.name}` "
                                    f"first (or `make hw MODEL={cfg.name}`)")
    stage = synth_stage(args, cfg)
    run_stage(stage, force=True)
    r = json.loads((stage.folder / "synth.json").read_text())
    res = r["resources"]
    print(f"[{cfg.name}] {board.name} ({board.device}): LUTs {res['luts']}, FFs {res['ffs']}, BRAMs {res['brams']}, "
          f"DSPs {res['dsps']}" + (f", Fmax {r['fmax_mhz']} MHz" if r.get("fmax_mhz") else "")
          + (f"; bitstream {r['bitstream']}" if r.get("bitstream") else "")
          + f" -> {stage.folder / 'synth.json'}")
    if not r["fits"]:
        built = json.loads((root / "rtl" / "manifest.json").read_text())["params"]
        over = ", ".join(f"{k}: {v['used']} used, {v['available']} available (over by {v['over_by']})"
                         for k, v in r["over"].items())
        raise BoardError(f"{cfg.name} does not fit the {board.name} ({board.device}): {over}. "
                         f"{closest_fit_hint(root / 'ir', board, built.get('datapath', 'lane'), built.get('pes', 0))}")
    return 0


def load_split(root: Path, images: str):
    """The IR's test input codes and labels (the first `images` of them: 'all' or a count) and
    the IR's integer accuracy when they are the whole split (else None)."""
    from ticketforge.ir import load_test_inputs

    codes, labels = load_test_inputs(root / "ir")
    n = len(codes) if images == "all" else int(images) if str(images).isdigit() else -1
    if not 1 <= n <= len(codes):
        raise UsageError(f"--images must be 'all' or 1..{len(codes)}, got {images!r}")
    metrics = root / "ir" / "metrics.json"
    integer = json.loads(metrics.read_text()).get("accuracy_integer") \
        if metrics.is_file() and n == len(codes) else None
    return codes[:n], labels[:n], integer


def run_clock_mhz(root: Path, cfg, board_name: str) -> float | None:
    """The core's clock on the board: the synth stage's (the PLL's output, when the placed
    design meets it), else the config's ``hw.clock_mhz``; None when neither says, or when
    the placed design misses its clock (no latency is claimed at a clock it cannot run)."""
    from ticketforge.cli.stages import synth_result

    res = synth_result(root, board_name)
    if res.is_file():
        r = json.loads(res.read_text())
        if r.get("meets_board_clock"):
            return float(r["clock_mhz"])
        if r.get("fmax_mhz") is not None:
            return None
    return cfg.hw.clock_mhz


def cmd_run(args) -> int:
    """The test split on a board over its serial link (or on the simulated board), every
    answer checked against the golden model and the cycle model: ``build/<name>/run/``."""
    from contextlib import nullcontext

    from tqdm import tqdm

    from ticketforge.deploy.boards import get_board
    from ticketforge.deploy.host import expected_identity, validate_on_board

    cfg = load_cfg(args)
    root = Path(args.build_dir) / cfg.name
    man = root / "rtl" / "manifest.json"
    if not (root / "ir" / "graph.json").is_file() or not man.is_file():
        raise StageMissingError(f"{root} has no IR and RTL to check the board against: run `make hw MODEL={cfg.name}` "
                                f"(or `ticketforge synth --config {cfg.name} --bitstream`) first")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout}")
    board = get_board(args.board or cfg.hw.board)
    codes, _, _ = load_split(root, args.images)
    rtl_man = json.loads(man.read_text())
    params = rtl_man["params"]
    design_id = expected_identity(root / "rtl")
    # a ticket fitted onto another's runtime-weights design runs on that design's bitstream
    board_rtl = Path(rtl_man["fit_to"]["rtl_dir"]) if "fit_to" in rtl_man else root / "rtl"
    if board_rtl != root / "rtl":
        if not (board_rtl / "manifest.json").is_file() or expected_identity(board_rtl) != design_id:
            raise StageMissingError(f"{root / 'rtl'} was fitted onto the design in {board_rtl}, which is no longer "
                                    f"there or no longer design 0x{design_id:08x}: rebuild it, then run "
                                    f"`ticketforge rtl --config {cfg.name}` again")
        print(f"[run] {cfg.name}'s weights on the design of {board_rtl} (0x{design_id:08x})")
    clock = run_clock_mhz(board_rtl.parent, cfg, board.name)
    weights = root / "rtl" / "weights.bin" if params.get("weights") == "runtime" else None
    if weights is None and args.no_load:
        print(f"[run] {cfg.name} has its weights baked into the bitstream: --no-load changes nothing")
    if args.simulated:
        from ticketforge.sim.board import SimulatedBoard

        link = SimulatedBoard(board_rtl, board_rtl.parent / "run" / "simboard", log=print if not args.quiet else
                              (lambda *a, **k: None))
        what = "the simulated board (Verilator, pseudo-terminal)"
    else:
        link, what = nullcontext(), args.port
    with link as sim:
        port = sim.port if args.simulated else args.port
        with tqdm(total=len(codes), desc=f"[run] {args.mode}", unit="image", dynamic_ncols=True,
                  disable=args.quiet or args.mode == "throughput") as bar:
            def progress(done, total, bad):
                bar.update(1)
                bar.set_postfix(mismatches=bad, refresh=False)

            res = validate_on_board(root / "ir", port, pes=params["pes"], design_id=design_id,
                                    fifo_depth=params.get("fifo_depth"), images=len(codes), baud=args.baud,
                                    timeout_s=args.timeout, out_dir=root / "run", progress=progress,
                                    datapath=params.get("datapath", "lane"), mode=args.mode, clock_mhz=clock,
                                    link="simulated" if args.simulated else args.port, weights=weights,
                                    no_load=args.no_load)
    if res["weights"] == "runtime":
        how = "already on the board" if res["load_seconds"] is None else f"loaded in {res['load_seconds']} s"
        print(f"[run] runtime weights {res['weights_id']} ({res['words']} words) {how}")
    latency = f"{res['latency_us']} us per image on chip at {clock} MHz" if clock else \
        ("no on-chip latency (no clock for the board: set hw.clock_mhz or run `ticketforge synth`, or the "
         "placed design misses its clock: a lower hw.clock_mhz and `ticketforge synth` again)")
    print(f"[{cfg.name}] {args.mode} on {what}: {res['images_identical']}/{res['images']} images identical to the "
          f"golden model and the cycle model; accuracy {res['accuracy_board']:.4f} (golden "
          f"{res['accuracy_golden']:.4f}); {res['images_per_second']} images/s over the link; {latency} "
          f"-> {root / 'run' / 'results.json'}")
    return 0 if res["board_matches_golden"] else 1


def cmd_hls(args) -> int:
    from ticketforge.cli.stages import hls_stage, resolve_hw_args
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.baseline:
        baseline_config(args.baseline)                 # a bad name fails before the IR is looked for
    root = Path(args.build_dir) / cfg.name
    if not (root / "ir" / "graph.json").is_file():
        raise StageMissingError(f"no IR in {root / 'ir'}: run `ticketforge quantize --config {cfg.name}` first")
    load_split(root, args.images)                      # a bad --images fails now
    stage = hls_stage(args, cfg)
    run_stage(stage, force=True)
    res = json.loads((stage.folder / "results.json").read_text())
    integer = res.get("accuracy_integer_ir")
    print(f"[{cfg.name}] hls4ml {args.backend} C simulation: {res['agree']}/{res['images']} images identical to the "
          f"golden model (scores and every layer's spike trains); accuracy {res['accuracy_hls']:.4f}"
          + (f" (integer IR {integer:.4f})" if integer is not None else "")
          + f"; compile {res['seconds']['write_compile']:.0f} s, C-sim {res['seconds']['csim']:.0f} s on "
          f"{res['jobs']} processes -> {stage.folder}")
    if "baseline" in res:
        b = res["baseline"]
        print(f"[{b['name']}] BNN-BinAct baseline, brevitas -> QONNX -> hls4ml C simulation on {b['images']} "
              f"images: accuracy {b['accuracy_hls']:.4f} (brevitas {b['accuracy_brevitas']:.4f}, torch "
              f"{b['accuracy_torch']:.4f}); predictions equal to brevitas' on "
              f"{b['prediction_agreement_hls_brevitas']:.4f}, scores identical on {b['images_scores_identical']} "
              f"images (max |difference| {b['score_max_abs_diff']:.3g})")
    return 0 if res["matches_golden"] else 1


def baseline_config(name: str):
    from ticketforge.model.config import ConfigError, load_config

    bcfg = load_config(name)
    if bcfg.model.variant != "bnn":
        raise ConfigError(f"--baseline {name}: a BNN-BinAct baseline needs a `bnn` variant config "
                          f"(this one is {bcfg.model.variant!r}), e.g. vgg9_bnn")
    return bcfg


def bnn_baseline(args, bcfg, root: Path, out_dir: Path) -> dict:
    """Train (if needed), export through brevitas and C-simulate the BNN-BinAct baseline into
    ``out_dir``."""
    import argparse

    from ticketforge.hls.bnn import run_bnn_csim
    from ticketforge.model.config import ConfigError

    broot = Path(args.build_dir) / bcfg.name
    if not (broot / "ticket" / "model.pt").is_file():
        print(f"[hls] baseline {bcfg.name}: no trained network in {broot / 'ticket'}; training it", flush=True)
        if cmd_train(argparse.Namespace(**{**vars(args), "config": args.baseline, "overrides": []})):
            raise ConfigError(f"training the baseline {bcfg.name} failed")
    export_dir = broot / "bnn-qonnx"
    digest = digests({"model.pt": broot / "ticket" / "model.pt"})["model.pt"]
    stamp = export_dir / "brevitas.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()).get("model_sha256") == digest
            and (export_dir / "bnn.onnx").is_file() and (export_dir / "reference.npz").is_file()):
        import torch

        from ticketforge.model.bnn_qonnx import export_bnn
        from ticketforge.model.data import load_dataset
        from ticketforge.model.ticket import load_ticket

        net, cfg, _ = load_ticket(broot / "ticket")
        ds = load_dataset(cfg.data.dataset, args.data_dir or cfg.data.data_dir)
        as_float = lambda a: torch.from_numpy(a).float() / ds.pixel_max  # noqa: E731
        print(f"[hls] baseline {bcfg.name}: brevitas model -> QONNX ({export_dir})", flush=True)
        info = export_bnn(net, as_float(ds.train.images[:1000]), as_float(ds.test.images), ds.test.labels,
                          export_dir)
        stamp.write_text(json.dumps({**info, "model_sha256": digest}, indent=1))
    return run_bnn_csim(export_dir, out_dir, bcfg.name, jobs=args.jobs, backend=args.backend,
                        progress=not args.quiet)


def cmd_explore(args) -> int:
    from ticketforge.deploy.boards import get_board
    from ticketforge.deploy.explore import parse_hw_grid, run_explore
    from ticketforge.distributed import ray_executor

    cfg = load_cfg(args)
    board = get_board(args.board or cfg.hw.board)
    out = run_explore(cfg, parse_hw_grid(args.grid), Path(args.build_dir), board.name, images=args.images,
                      place=args.place, jobs=args.jobs, executor=ray_executor(args.ray),
                      log=(lambda *a, **k: None) if args.quiet else print)
    print((Path(out["folder"]) / "explore.md").read_text())
    print(f"[{cfg.name}] {len(out['points'])} points -> {out['folder']}/explore.json, explore.md, explore.png")
    return 0
