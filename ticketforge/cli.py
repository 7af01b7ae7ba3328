"""`ticketforge` command line: one subcommand per stage.

    ticketforge train --config vgg9_binw [--set train.epochs=3 ...] [--data-dir DIR]
    ticketforge eval  --config vgg9_binw          # reload the ticket, re-measure accuracy
    ticketforge hw    --config vgg9_binw          # the main job (stages wired so far)
    ticketforge configs                           # list shipped configs

Heavy libraries are imported inside the subcommands, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from ticketforge.errors import StageMissingError, TicketforgeError, UsageError
from ticketforge.records import clear_record, write_record

__all__ = ["main", "build_parser"]


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision-bits", type=int, default=8,
                   help="bits of threshold precision per channel when integerizing (default 8)")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="MODEL name (model/configs/<name>.toml) or path to a .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--data-dir", default=None,
                   help="folder with on-disk datasets (default: $TICKETFORGE_DATA)")
    p.add_argument("--build-dir", default="build", help="root of the build folders (default: build)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_rtl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datapath", choices=("lane", "bitpar"), default=None,
                   help="the accelerator's datapath: lane (event driven, one synapse per PE per cycle) or "
                        "bitpar (bit-parallel, layer-major; --pes is its lane count); default: the config's "
                        "hw.datapath")
    p.add_argument("--pes", type=int, default=None,
                   help="processing elements of the accelerator (default: the config's hw.pes, 16)")
    p.add_argument("--fifo-depth", type=int, default=None,
                   help="entries of each PE's event FIFO (default: the config's hw.fifo_depth, else 2 x PEs; "
                        "deeper lets PEs with uneven work drift further apart)")
    p.add_argument("--dense", action="store_true",
                   help="the no-skipping reference design (written to build/<name>/rtl-dense/)")
    p.add_argument("--memory-style", choices=("auto", "block", "logic"), default="auto",
                   help="how synthesis maps the memories: its choice, block RAM, or logic (default auto)")
    p.add_argument("--no-trace", dest="trace", action="store_false",
                   help="leave out the per-PE spike-trace debug port (the cocotb regression checks spike "
                        "trains through it)")


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default=None,
                   help="icebreaker, ulx3s (placed and routed), arty_a7, pynq_z2 (yosys estimates); "
                        "default: the config's hw.board")
    p.add_argument("--bitstream", action="store_true",
                   help="also pack a bitstream (icepack / ecppack) when the design fits and is routed")


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="verilator",
                   help="HDL simulator (default verilator)")
    p.add_argument("--images", default="all",
                   help="test images to run: a number or 'all' (the whole test split; default)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="simulator processes sharing the images (default: one per core)")
    p.add_argument("--trace-images", type=int, default=2,
                   help="how many of them also get their per-layer spike trains checked (default 2; "
                        "the first image of each simulator process in turn)")


def _add_hls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("Vitis", "Vivado"), default="Vitis",
                   help="hls4ml backend the HLS project is written for (default Vitis)")
    p.add_argument("--baseline", default=None, metavar="CONFIG",
                   help="also run a BNN-BinAct config (e.g. vgg9_bnn; trained first if needed) through "
                        "brevitas -> QONNX -> hls4ml and C-simulate it on its whole test split")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ticketforge", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a network or search a ticket; writes build/<name>/ticket/")
    _add_config_args(p)
    p = sub.add_parser("eval", help="reload a ticket and re-measure its test accuracy")
    _add_config_args(p)
    p.add_argument("--ticket", default=None, help="ticket folder (default: build/<name>/ticket)")
    p = sub.add_parser("prune", help="prune synapses (IMP, EB, ET, baselines) or neurons (DynSNN); "
                                     "writes build/<name>/prune-<method>/")
    _add_config_args(p)
    p.add_argument("--method", required=True,
                   help="imp, eb, et-imp, et-eb, random, snip, transfer, dynsnn, dynsnn-train")
    p.add_argument("--sparsity", type=float, default=None,
                   help="target synapse sparsity (sets the IMP rounds), or for dynsnn the fraction "
                        "of neurons to remove")
    p = sub.add_parser("sweep", help="a grid of searches/pruning runs in parallel, cached; sweep-<keys>.json + plots")
    _add_config_args(p)
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a grid axis, e.g. --grid r_p=0.2,0.4 --grid T=1,2,4 --grid lambda=0.5,0.99 "
                        "--grid method=imp,et-imp --grid sparsity=0.5,0.9 (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    p = sub.add_parser("quantize", help="lower a ticket to the integer hardware IR: build/<name>/ir/")
    _add_config_args(p)
    p.add_argument("--ticket", default=None, help="ticket folder (default: build/<name>/ticket)")
    _add_precision_arg(p)
    p = sub.add_parser("rtl", help="generate the accelerator's Verilog from the IR: build/<name>/rtl/")
    _add_config_args(p)
    _add_rtl_args(p)
    p = sub.add_parser("sim", help="cocotb regression of build/<name>/rtl/top.v on Icarus or Verilator "
                                   "against the golden model and the cycle model: build/<name>/sim/")
    _add_config_args(p)
    _add_sim_args(p)
    p.add_argument("--netlist", default=None, metavar="BOARD",
                   help="simulate the core as yosys synthesizes it for BOARD's family (icebreaker, ulx3s), "
                        "with the cell models, on Icarus: build/<name>/sim-netlist-<board>/")
    p = sub.add_parser("synth", help="synthesis, place-and-route (and --bitstream) of build/<name>/rtl for a "
                                     "board: build/<name>/synth/<board>/")
    _add_config_args(p)
    _add_synth_args(p)
    p = sub.add_parser("board", help="run the test split on a flashed board over its serial port and check "
                                     "every answer against the golden model and the cycle model: build/<name>/board/")
    _add_config_args(p)
    p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--images", default="all", help="test images to run: a number or 'all' (default)")
    p.add_argument("--baud", type=int, default=115200, help="the link's baud rate (default 115200, as built)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an image's answer (default 5)")
    p = sub.add_parser("hls", help="the IR as an hls4ml project with the spiking extension; g++ C simulation "
                                   "against the golden model: build/<name>/hls/")
    _add_config_args(p)
    p.add_argument("--images", default="all",
                   help="test images to C-simulate: a number or 'all' (the whole test split; default)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="C-simulation processes sharing the images (default: one per core)")
    _add_hls_args(p)
    p = sub.add_parser("hw", help="the main job: model -> quantize -> rtl -> sim -> synth [-> hls] -> report")
    _add_config_args(p)
    _add_precision_arg(p)
    _add_rtl_args(p)
    _add_sim_args(p)
    _add_synth_args(p)
    p.add_argument("--hls", action="store_true",
                   help="also run the HLS stage (`ticketforge hls` on the same images) before the report")
    _add_hls_args(p)
    sub.add_parser("configs", help="list the shipped configs")
    return ap


def _load(args):
    from ticketforge.model.config import load_config, parse_overrides, with_overrides

    cfg = load_config(args.config, parse_overrides(args.overrides))
    if args.data_dir:
        cfg = with_overrides(cfg, data={"data_dir": args.data_dir})
    return cfg


def cmd_train(args) -> int:
    from ticketforge.model.train import train

    cfg = _load(args)
    out = Path(args.build_dir) / cfg.name / "ticket"
    print(f"[{cfg.name}] {cfg.model.arch}/{cfg.model.variant} on {cfg.data.dataset}: "
          f"width {cfg.model.width}, T={cfg.model.timesteps}, r_p={cfg.model.r_p}, "
          f"{cfg.train.epochs} epochs -> {out}", flush=True)
    m = train(cfg, out, progress=False if args.quiet else None, build_root=Path(args.build_dir))
    e = m["energy"]
    print(f"[{cfg.name}] test accuracy {m['final_test_accuracy']:.4f} "
          f"({m['test_correct']}/{m['test_images']}), search {m['search_seconds']:.1f} s, "
          f"SOPs {e['sops_total'] / 1e6:.3f} M, energy {e['energy_uj']:.4f} uJ/image")
    return 0


def cmd_eval(args) -> int:
    from ticketforge.model.data import load_dataset
    from ticketforge.model.ticket import load_ticket
    from ticketforge.model.train import evaluate

    cfg = _load(args)
    tdir = Path(args.ticket) if args.ticket else Path(args.build_dir) / cfg.name / "ticket"
    net, tcfg, meta = load_ticket(tdir)
    ds = load_dataset(tcfg.data.dataset, cfg.data.data_dir or tcfg.data.data_dir)
    acc, correct = evaluate(net, ds.test, ds.pixel_max, tcfg.data.eval_batch_size)
    recorded = None
    mpath = tdir / "metrics.json"
    if mpath.is_file():
        recorded = json.loads(mpath.read_text()).get("final_test_accuracy")
    same = recorded is not None and acc == recorded
    print(f"[{tcfg.name}] test accuracy {acc:.4f} ({correct}/{len(ds.test)})"
          + (f"; recorded {recorded:.4f}: {'reproduced exactly' if same else 'DIFFERENT'}"
             if recorded is not None else ""))
    if recorded is not None and not same:
        print(f"  {abs(round((acc - recorded) * len(ds.test)))} image(s) differ from training's record.  Float "
              "results depend on the CPU's kernels and thread count (a score within rounding of a tie "
              "flips); on the machine and settings that trained the ticket they must be equal.  From "
              "`ticketforge quantize` on, the integer IR is exact everywhere.")
    return 0 if recorded is None or same else 1


def cmd_prune(args) -> int:
    from ticketforge.model.pruning.run import prune

    cfg = _load(args)
    out = Path(args.build_dir) / cfg.name / f"prune-{args.method}"
    m = prune(cfg, args.method, out, args.sparsity, Path(args.build_dir), progress=False if args.quiet else None)
    p = m["prune"]
    print(f"[{cfg.name}] prune {args.method} -> {out}: test accuracy {m['final_test_accuracy']:.4f}, "
          f"synapse sparsity {100 * p['synapse_sparsity']:.2f}%, neurons removed "
          f"{100 * p['neurons_removed_fraction']:.2f}%, search {m['search_seconds']:.1f} s, "
          f"energy {m['energy']['energy_uj']:.4f} uJ/image")
    return 0


def cmd_sweep(args) -> int:
    from ticketforge.model.sweep import parse_grid, run_sweep

    cfg = _load(args)
    out = run_sweep(cfg, parse_grid(args.grid), Path(args.build_dir), jobs=args.jobs)
    print(f"[{cfg.name}] sweep of {len(out['points'])} points -> {Path(args.build_dir) / cfg.name / 'sweep'}")
    for p in out["points"]:
        print(f"  {p['overrides']}: accuracy {p['test_accuracy']:.4f}, synapse sparsity "
              f"{100 * p['synapse_sparsity']:.1f}%, neurons removed {100 * p['neurons_removed_fraction']:.1f}%, "
              f"{p['seconds']:.0f} s")
    for f in out["plots"]:
        print(f"  plot: {f}")
    return 0


def cmd_quantize(args) -> int:
    from ticketforge.model.quantize import quantize_ticket

    cfg = _load(args)
    tdir = Path(args.ticket) if args.ticket else Path(args.build_dir) / cfg.name / "ticket"
    out = Path(args.build_dir) / cfg.name / "ir"
    m = quantize_ticket(tdir, out, data_dir=cfg.data.data_dir or None, precision_bits=args.precision_bits)
    print(f"[{cfg.name}] IR -> {out}: accuracy float {m['accuracy_float']:.4f}, integer "
          f"{m['accuracy_integer']:.4f} on {m['images']} test images "
          f"(golden interpreter {m['golden_seconds']:.1f} s)")
    return 0


def _resolve_rtl_args(args, cfg) -> None:
    """PEs and FIFO depth: the command line, else the config, else the generator's default
    (resolved here so that the rtl stage's manifest records the number that was built)."""
    from ticketforge.errors import ConfigError
    from ticketforge.rtl.cycles import check_fifo_depth, default_fifo_depth
    from ticketforge.rtl.program import MAX_PES

    # `is None`, not `or`: an explicit 0 is bad input to refuse, not a request for the default
    args.pes = cfg.hw.pes if args.pes is None else args.pes
    args.datapath = getattr(args, "datapath", None) or cfg.hw.datapath
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
    from ticketforge.rtl.emit import write_rtl

    cfg = _load(args)
    _resolve_rtl_args(args, cfg)
    root = Path(args.build_dir) / cfg.name
    out = root / ("rtl-dense" if args.dense else "rtl")
    if not (root / "ir" / "graph.json").is_file():
        raise StageMissingError(f"no IR in {root / 'ir'}: run `ticketforge quantize --config {cfg.name}` first "
                      f"(or `make hw MODEL={cfg.name}`)")
    m = write_rtl(root / "ir", out, pes=args.pes, dense=args.dense, trace=args.trace, memory_style=args.memory_style,
                  fifo_depth=args.fifo_depth, progress=lambda s, **k: print(s, **k) if not args.quiet else None,
                  datapath=args.datapath)
    lint = m.get("lint", {})
    what = (f"{args.pes} bitpar lanes" if args.datapath == "bitpar" else
            f"{args.pes} PEs ({args.fifo_depth}-entry event FIFOs)")
    print(f"[{cfg.name}] RTL -> {out / 'top.v'}: {what}, membranes {m['membrane_bits']} bits, "
          f"{len(m['memories'])} memories, {m['memory_bits'] / 8192:.1f} KiB; verilator lint: "
          f"{sum(lint.get('explained', {}).values())} explained warnings, "
          f"{len(lint.get('unexplained', []))} unexplained ({m['seconds']:.1f} s)")
    return 0


def cmd_sim(args) -> int:
    from ticketforge.model.ir import load_graph
    from ticketforge.sim.runner import run_sim, spread_traced

    cfg = _load(args)
    root = Path(args.build_dir) / cfg.name
    rtldir = root / "rtl"
    if not (rtldir / "top.v").is_file():
        raise StageMissingError(f"no Verilog in {rtldir}: run `ticketforge rtl --config {cfg.name}` first "
                      f"(or `make hw MODEL={cfg.name}`)")
    g = load_graph(root / "ir")
    images, labels, integer = _test_split(root, args.images)   # the input quantizer's codes of the test split
    n = len(images)
    netlist, sim_dir = None, root / "sim"
    board_netlist = getattr(args, "netlist", None)      # (`hw` runs this stage on the RTL only)
    if board_netlist:
        from ticketforge.deploy.boards import get_board
        from ticketforge.deploy.netlist import synth_netlist

        board = get_board(board_netlist)
        sim_dir = root / f"sim-netlist-{board.name}"
        if not args.quiet:
            print(f"[sim] synthesizing {rtldir} for {board.name} ({board.family}) into a netlist", flush=True)
        netlist = synth_netlist(rtldir, sim_dir / "netlist", board.family)
        args.simulator = "icarus"
    clear_record(sim_dir / "results.json")             # the stage's record: removed first, written last
    res = run_sim(rtldir, g, images, sim_dir, args.simulator, labels=labels,
                  traced=spread_traced(args.trace_images, n, args.jobs), progress=not args.quiet, jobs=args.jobs,
                  log=lambda s, **k: print(s, **k) if not args.quiet else None, netlist=netlist)
    res["accuracy_integer_ir"] = integer
    res["inputs"] = _digests(_sim_inputs(root))
    res["params"] = {"simulator": args.simulator, "images": str(args.images),
                     **({"netlist": board_netlist} if board_netlist else {})}   # (what `hw` compares)
    write_record(sim_dir / "results.json", res)
    what = f"{board_netlist} netlist on {args.simulator}" if netlist else args.simulator
    print(f"[{cfg.name}] {what}: {res['agree']}/{res['images_run']} images identical to the golden "
          f"model (scores, cycles, counters; spike trains on {len(res['traced_images'])}); RTL accuracy "
          f"{res['accuracy_rtl']:.4f}" + (f" (integer IR {integer:.4f})" if integer is not None else "")
          + f"; cycles/image {res['cycles']['mean']:.0f}; {res['simulated_cycles_per_wall_second']:.0f} "
          f"simulated cycles/s; run {res['wall_seconds']['run']:.0f} s -> {sim_dir / 'results.json'}")
    return 0


def _digests(inputs: dict[str, Path]) -> dict[str, str]:
    import hashlib

    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in inputs.items() if p.is_file()}


def _stage_fresh(folder: Path, inputs: dict[str, Path], record: str = "manifest.json", expect: dict | None = None,
                 outputs: tuple[str, ...] = ()) -> bool:
    """A stage is kept when its record holds the same input digests as now, the ``expect``ed
    fields (parameters, generator digest) and its ``outputs`` files exist."""
    man = folder / record
    if not man.is_file() or not all((folder / f).is_file() for f in outputs):
        return False
    rec = json.loads(man.read_text())
    now = _digests(inputs)
    return bool(now) and rec.get("inputs", {}) == now and all(rec.get(k) == v for k, v in (expect or {}).items())


def quantize_fresh(irdir: Path, tdir: Path, precision_bits: int, data_dir: str | None) -> bool:
    """The quantize stage's IR is kept when it was made from this ticket, with these
    parameters, by this lowering code (``model.quantize.lowering_digest``)."""
    from ticketforge.model.quantize import lowering_digest

    return _stage_fresh(irdir, {"model.pt": tdir / "model.pt", "ticket.json": tdir / "ticket.json"},
                        expect={"params": {"precision_bits": precision_bits, "data_dir": data_dir},
                                "code": lowering_digest()},
                        outputs=("test_inputs.npz",))


def _sim_inputs(root: Path) -> dict[str, Path]:
    """What a sim result depends on (recorded by `sim`, compared by `hw`)."""
    return {"top.v": root / "rtl" / "top.v", "graph.json": root / "ir" / "graph.json",
            "test_inputs.npz": root / "ir" / "test_inputs.npz"}


def _synth_inputs(root: Path) -> dict[str, Path]:
    return {"core.il": root / "rtl" / "core.il", "synth_top.v": root / "rtl" / "synth_top.v"}


def _synth_one(cfg, root: Path, board_name: str, bitstream: bool, quiet: bool) -> dict:
    """Synthesise build/<name>/rtl for one board; writes synth/<board>.json and returns it."""
    from ticketforge.deploy.board_build import PLATFORMS, build_board
    from ticketforge.deploy.boards import get_board
    from ticketforge.deploy.synth import synthesize
    from ticketforge.model.ir import load_graph

    board = get_board(board_name)
    rtldir = root / "rtl"
    out = root / "synth" / board.name
    clear_record(root / "synth" / f"{board.name}.json")   # the stage's record: removed first, written last
    log = (lambda s, **k: None) if quiet else print
    if board.name in PLATFORMS:
        g = load_graph(root / "ir")
        r = build_board(rtldir, board, out, pixels=math.prod(g.input.shape), classes=g.layers[-1].out_shape[0],
                        bitstream=bitstream, log=log, clock_mhz=cfg.hw.clock_mhz)
    else:
        r = synthesize(rtldir, board, out, log=log)
        r["fmax_mhz"] = None
    r["inputs"] = _digests(_synth_inputs(root))
    r["params"] = {"bitstream": bitstream, "clock_mhz": cfg.hw.clock_mhz}
    write_record(root / "synth" / f"{board.name}.json", r)
    return r


def cmd_synth(args) -> int:
    from ticketforge.deploy.boards import BoardError, get_board
    from ticketforge.deploy.synth import closest_fit_hint

    cfg = _load(args)
    root = Path(args.build_dir) / cfg.name
    board = get_board(args.board or cfg.hw.board)
    r = _synth_one(cfg, root, board.name, args.bitstream, args.quiet)
    res = r["resources"]
    print(f"[{cfg.name}] {board.name} ({board.device}): LUTs {res['luts']}, FFs {res['ffs']}, BRAMs {res['brams']}, "
          f"DSPs {res['dsps']}" + (f", Fmax {r['fmax_mhz']} MHz" if r.get("fmax_mhz") else "")
          + (f"; bitstream {r['bitstream']}" if r.get("bitstream") else "")
          + f" -> {root / 'synth' / (board.name + '.json')}")
    if not r["fits"]:
        over = ", ".join(f"{k}: {v['used']} used, {v['available']} available (over by {v['over_by']})"
                         for k, v in r["over"].items())
        raise BoardError(f"{cfg.name} does not fit the {board.name} ({board.device}): {over}. "
                         f"{closest_fit_hint(root / 'ir', board)}")
    return 0


def _test_split(root: Path, images: str):
    """The IR's test input codes and labels (the first `images` of them: 'all' or a count) and
    the IR's integer accuracy when they are the whole split (else None)."""
    from ticketforge.model.ir import load_test_inputs

    codes, labels = load_test_inputs(root / "ir")
    n = len(codes) if images == "all" else int(images) if str(images).isdigit() else -1
    if not 1 <= n <= len(codes):
        raise UsageError(f"--images must be 'all' or 1..{len(codes)}, got {images!r}")
    metrics = root / "ir" / "metrics.json"
    integer = json.loads(metrics.read_text()).get("accuracy_integer") \
        if metrics.is_file() and n == len(codes) else None
    return codes[:n], labels[:n], integer


def cmd_board(args) -> int:
    from tqdm import tqdm

    from ticketforge.deploy.host import validate_on_board

    cfg = _load(args)
    root = Path(args.build_dir) / cfg.name
    man = root / "rtl" / "manifest.json"
    if not (root / "ir" / "graph.json").is_file() or not man.is_file():
        raise StageMissingError(f"{root} has no IR and RTL to check the board against: run `make hw MODEL={cfg.name}` "
                      f"(or `ticketforge synth --config {cfg.name} --bitstream`) first")
    codes, _, _ = _test_split(root, args.images)
    params = json.loads(man.read_text())["params"]
    with tqdm(total=len(codes), desc=f"[board] {args.port}", unit="image", dynamic_ncols=True) as bar:
        res = validate_on_board(root / "ir", args.port, pes=params["pes"], fifo_depth=params.get("fifo_depth"),
                                images=len(codes), baud=args.baud, timeout_s=args.timeout,
                                out_dir=root / "board", progress=lambda done, total: bar.update(1),
                                datapath=params.get("datapath", "lane"))
    print(f"[{cfg.name}] board on {args.port}: {res['images_identical']}/{res['images']} images identical to the "
          f"golden model and the cycle model; accuracy {res['accuracy_board']:.4f} (golden "
          f"{res['accuracy_golden']:.4f}); {res['images_per_second']} images/s -> {root / 'board' / 'results.json'}")
    return 0 if res["board_matches_golden"] else 1


def cmd_hls(args) -> int:
    from ticketforge.hls.csim import run_csim
    from ticketforge.model.ir import load_graph

    cfg = _load(args)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    bcfg = _baseline_config(args.baseline) if args.baseline else None    # a bad name fails now, not later
    root = Path(args.build_dir) / cfg.name
    if not (root / "ir" / "graph.json").is_file():
        raise StageMissingError(f"no IR in {root / 'ir'}: run `ticketforge quantize --config {cfg.name}` first")
    g = load_graph(root / "ir")
    images, labels, integer = _test_split(root, args.images)
    res = run_csim(g, images, labels, root / "hls", jobs=args.jobs, backend=args.backend, progress=not args.quiet)
    res["inputs"] = _digests(_hls_inputs(root))
    res["accuracy_integer_ir"] = integer
    (root / "hls" / "results.json").write_text(json.dumps(res, indent=1))   # kept if the baseline fails
    if bcfg is not None:
        res["baseline"] = _bnn_baseline(args, bcfg, root)
        (root / "hls" / "results.json").write_text(json.dumps(res, indent=1))
    print(f"[{cfg.name}] hls4ml {args.backend} C simulation: {res['agree']}/{res['images']} images identical to the "
          f"golden model (scores and every layer's spike trains); accuracy {res['accuracy_hls']:.4f}"
          + (f" (integer IR {integer:.4f})" if integer is not None else "")
          + f"; compile {res['seconds']['write_compile']:.0f} s, C-sim {res['seconds']['csim']:.0f} s on "
          f"{res['jobs']} processes -> {root / 'hls'}")
    if "baseline" in res:
        b = res["baseline"]
        print(f"[{b['name']}] BNN-BinAct baseline, brevitas -> QONNX -> hls4ml C simulation on {b['images']} "
              f"images: accuracy {b['accuracy_hls']:.4f} (brevitas {b['accuracy_brevitas']:.4f}, torch "
              f"{b['accuracy_torch']:.4f}); predictions equal to brevitas' on "
              f"{b['prediction_agreement_hls_brevitas']:.4f}, scores identical on {b['images_scores_identical']} "
              f"images (max |difference| {b['score_max_abs_diff']:.3g})")
    return 0 if res["matches_golden"] else 1


def _baseline_config(name: str):
    from ticketforge.model.config import ConfigError, load_config

    bcfg = load_config(name)
    if bcfg.model.variant != "bnn":
        raise ConfigError(f"--baseline {name}: a BNN-BinAct baseline needs a `bnn` variant config "
                          f"(this one is {bcfg.model.variant!r}), e.g. vgg9_bnn")
    return bcfg


def _bnn_baseline(args, bcfg, root: Path) -> dict:
    """Train (if needed), export through brevitas and C-simulate the BNN-BinAct baseline."""
    import argparse

    from ticketforge.hls.bnn import run_bnn_csim
    from ticketforge.model.config import ConfigError

    broot = Path(args.build_dir) / bcfg.name
    if not (broot / "ticket" / "model.pt").is_file():
        print(f"[hls] baseline {bcfg.name}: no trained network in {broot / 'ticket'}; training it", flush=True)
        if cmd_train(argparse.Namespace(**{**vars(args), "config": args.baseline, "overrides": []})):
            raise ConfigError(f"training the baseline {bcfg.name} failed")
    export_dir = broot / "bnn-qonnx"
    digest = _digests({"model.pt": broot / "ticket" / "model.pt"})["model.pt"]
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
    return run_bnn_csim(export_dir, root / "hls" / "baseline", bcfg.name, jobs=args.jobs, backend=args.backend,
                        progress=not args.quiet)


def _hls_inputs(root: Path) -> dict[str, Path]:
    """What an HLS result depends on (recorded by `hls`, checked by the report)."""
    return {"graph.json": root / "ir" / "graph.json", "tensors.npz": root / "ir" / "tensors.npz",
            "test_inputs.npz": root / "ir" / "test_inputs.npz"}


def cmd_hw(args) -> int:
    """Run every stage wired so far, in order, skipping a stage whose inputs are unchanged."""
    from ticketforge.deploy.boards import get_board

    cfg = _load(args)
    _resolve_rtl_args(args, cfg)
    get_board(args.board or cfg.hw.board)        # an unknown board fails now, not after the simulation
    if args.hls and args.baseline:
        _baseline_config(args.baseline)            # so does a wrong baseline
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
        if fresh():
            say(f"[hw] {name} stage: {kept_why}, kept")
            kept.append(name)
            rc = 0
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
        if _stage_fresh(root / "synth", _synth_inputs(root), f"{board}.json",
                        expect={"params": {"bitstream": args.bitstream, "clock_mhz": cfg.hw.clock_mhz}}):
            synth.update(json.loads((root / "synth" / f"{board}.json").read_text()))
            return True
        return False

    def synth_run() -> int:
        synth.update(_synth_one(cfg, root, board, args.bitstream, args.quiet))
        return 0

    def hls_fresh() -> bool:
        want = {"images": len(_test_split(root, args.images)[0]), "backend": args.backend}
        return _stage_fresh(root / "hls", _hls_inputs(root), "results.json", expect=want) and (
            not args.baseline or json.loads((root / "hls" / "results.json").read_text())
            .get("baseline", {}).get("name") == args.baseline)

    steps = [
        ("model", model_fresh, f"{tdir} was made from this exact config", "ticket search", lambda: cmd_train(args)),
        ("quantize", lambda: quantize_fresh(irdir, tdir, args.precision_bits, cfg.data.data_dir or None),
         f"{irdir} is up to date with the ticket, --precision-bits and the lowering code",
         "brevitas view, BN folding, integer IR, golden interpreter", quantize),
        ("rtl", lambda: _stage_fresh(rtldir, {"graph.json": irdir / "graph.json", "tensors.npz": irdir / "tensors.npz"},
                                     expect={"params": rtl_params, "generator": generator_digest()}),
         f"{rtldir} is up to date with the IR", "Amaranth accelerator -> Verilog, verilator lint",
         lambda: cmd_rtl(args)),
    ]
    if args.dense:
        print("[hw] the dense reference design: model, quantize and rtl only (no sim, synth or report)")
    else:
        steps += [
            ("sim", lambda: _stage_fresh(root / "sim", _sim_inputs(root), "results.json",
                                         expect={"params": {"simulator": args.simulator, "images": str(args.images)}}),
             f"{root / 'sim' / 'results.json'} was measured on this Verilog", f"cocotb regression on {args.simulator}",
             lambda: cmd_sim(args)),
            ("synth", synth_fresh, f"{root / 'synth' / f'{board}.json'} was made from this RTL", board, synth_run),
        ]
        if args.hls:
            steps.append(("hls", hls_fresh, f"{root / 'hls' / 'results.json'} was made from this IR",
                          f"hls4ml {args.backend} project, C simulation", lambda: cmd_hls(args)))
    beside = None
    for k, step in enumerate(steps):
        if step[0] == "sim" and k + 1 < len(steps) and steps[k + 1][0] == "synth":
            # synthesis needs only the RTL: it runs beside the simulation (one yosys process;
            # the simulation's reference and build phases leave a core to it much of the time)
            from concurrent.futures import ThreadPoolExecutor

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
    t5 = time.perf_counter()
    print("[hw] report stage: cycle model on the simulated images, energy, plots", flush=True)
    rep = _report(cfg, root, {board: synth}, seconds)
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


def _report(cfg, root: Path, synth: dict, seconds: dict) -> dict:
    """The report's content; the cycle model's per-layer figures are cached per sim result."""
    from ticketforge.deploy.report import build_report, cycles_from_sim, model_cycles
    from ticketforge.model.ir import load_graph, load_test_inputs

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
                        hls=_hls_section(root))


def _hls_section(root: Path) -> dict | None:
    """The `hls` section of the report: present when `ticketforge hls` ran on this IR."""
    res_path = root / "hls" / "results.json"
    if not res_path.is_file():
        return None
    res = json.loads(res_path.read_text())
    if res.get("inputs") != _digests(_hls_inputs(root)):
        print(f"[hw] note: {res_path} was made from another IR; re-run `ticketforge hls` to report it")
        return None
    keys = ("backend", "part", "images", "agree", "matches_golden", "compared", "accuracy_hls",
            "synapse_loop_iterations_per_image", "seconds",
            "seconds_per_image", "jobs", "verified", "not_verified", "baseline")
    return {k: res[k] for k in keys if k in res}




def cmd_configs(_args) -> int:
    from ticketforge.model.config import available_configs, load_config

    for name in available_configs():
        c = load_config(name)
        print(f"{name:16s} {c.model.arch}/{c.model.variant} on {c.data.dataset}, width {c.model.width}, "
              f"r_p {c.model.r_p}, T {c.model.timesteps}, {c.train.epochs} epochs")
    return 0


_COMMANDS = {"train": cmd_train, "eval": cmd_eval, "prune": cmd_prune, "sweep": cmd_sweep, "quantize": cmd_quantize, "rtl": cmd_rtl, "sim": cmd_sim, "synth": cmd_synth, "board": cmd_board, "hls": cmd_hls, "hw": cmd_hw,
             "configs": cmd_configs}


# the commands that write into build/<name>/ (eval and configs only read)
_WRITERS = ("train", "prune", "sweep", "quantize", "rtl", "sim", "synth", "board", "hls", "hw")


def _lock_for(args):
    """The build folder's lock for a command that writes into it (ticketforge/buildlock.py)."""
    from contextlib import nullcontext

    from ticketforge.buildlock import build_lock

    if args.command not in _WRITERS:
        return nullcontext()
    return build_lock(Path(args.build_dir) / _load(args).name, args.command)


def main(argv: list[str] | None = None) -> int:
    # torch prints a "Triton not available" notice at import on CPU-only machines
    os.environ.setdefault("TORCH_LOGS", "-all")
    args = build_parser().parse_args(argv)
    from ticketforge.interrupt import Interrupted, children_end_with_us

    try:
        with children_end_with_us(), _lock_for(args):
            return _COMMANDS[args.command](args)
    except TicketforgeError as e:
        print(f"ticketforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\nticketforge {args.command}: stopped by {e}; every process it started has ended. A stage "
              "records its inputs last, so the stages that finished are kept and the interrupted one is "
              "redone by the next run.", file=sys.stderr)
        return 128 + e.signum
