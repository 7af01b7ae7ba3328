"""The command line's argument parser: one subcommand per stage, and the options stages share."""
from __future__ import annotations

import argparse
import os

__all__ = ["build_parser", "HW_STAGES"]

# `ticketforge hw`'s stages, in order (synth runs beside sim; netlist for the iCE40 and ECP5
# boards; hls only with --hls)
HW_STAGES = ("model", "quantize", "rtl", "sim", "synth", "netlist", "hls")


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision-bits", type=int, default=None,
                   help="bits of threshold precision per channel when integerizing (default: the config's "
                        "hw.precision_bits, 8)")


def _add_weight_bits_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weight-bits", type=int, default=None,
                   help="signed bits (2-8) of a real-valued ticket's (snn, slt) weights in the IR, quantized "
                        "after training; binary tickets are 2-bit (default: the config's hw.weight_bits, 8)")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="MODEL name (model/configs/<name>.toml) or path to a .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--data-dir", default=None,
                   help="folder with on-disk datasets (default: $TICKETFORGE_DATA)")
    p.add_argument("--build-dir", default="build", help="root of the build folders (default: build)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_fit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fit-to", default=None, metavar="CONFIG|RTL_DIR",
                   help="run this ticket on another ticket's runtime-weights bitpar design (a config name or its "
                        "rtl folder): quantize takes its membrane widths, rtl refuses a ticket that does not fit "
                        "(naming what is over) and writes only a new weights.bin for the same netlist; default: "
                        "the config's hw.fit_to, none")


def _add_rtl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datapath", choices=("lane", "bitpar", "rowstream"), default=None,
                   help="the accelerator's datapath: lane (event driven, one synapse per PE per cycle), "
                        "bitpar (bit-parallel, layer-major; --pes is its lane count) or rowstream (fully "
                        "connected networks: a weight row of --pes lanes per input event a cycle); default: the "
                        "config's hw.datapath")
    p.add_argument("--pes", type=int, default=None,
                   help="processing elements of the accelerator (default: the config's hw.pes, 16)")
    p.add_argument("--fifo-depth", type=int, default=None,
                   help="entries of each PE's event FIFO (default: the config's hw.fifo_depth, else 2 x PEs; "
                        "deeper lets PEs with uneven work drift further apart)")
    p.add_argument("--dense", action="store_true",
                   help="the no-skipping reference design (written to build/<name>/rtl-dense/)")
    p.add_argument("--memory-style", choices=("auto", "block", "logic"), default=None,
                   help="how synthesis maps the memories: its choice, block RAM, or logic (default: the "
                        "config's hw.memory_style, auto)")
    p.add_argument("--weights", choices=("baked", "runtime"), default=None,
                   help="where the network's numbers live: baked in as memory initial values, or runtime: "
                        "loaded over the board link before the first image (build/<name>/rtl/weights.bin); "
                        "default: the config's hw.weights, baked")
    _add_fit_arg(p)
    p.add_argument("--no-trace", dest="trace", action="store_false", default=None,
                   help="leave out the per-PE spike-trace debug port (the cocotb regression checks spike "
                        "trains through it; default: the config's hw.trace, true)")


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default=None,
                   help="icebreaker, ulx3s (placed and routed), arty_a7, pynq_z2 (yosys estimates); "
                        "default: the config's hw.board")
    p.add_argument("--bitstream", action="store_true", default=None,
                   help="also pack a bitstream (icepack / ecppack) when the design fits and is routed "
                        "(default: the config's hw.bitstream, false)")


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", choices=("icarus", "verilator"), default=None,
                   help="HDL simulator (default: the config's hw.simulator, verilator)")
    p.add_argument("--images", default=None,
                   help="test images to run: a number or 'all' (the whole test split; default: the config's "
                        "hw.images, all)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="simulator processes sharing the images (default: one per core)")
    p.add_argument("--trace-images", type=int, default=None,
                   help="how many of them also get their per-layer spike trains checked (the first image "
                        "of each simulator process in turn; default: the config's hw.trace_images, 2)")
    _add_ray_arg(p, "the regression's shards (one per --jobs)")


def _add_ray_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help=f"run {what} as Ray tasks: on the cluster at ADDRESS (host:port), else at $RAY_ADDRESS, "
                        f"else on a local Ray instance started for the run (default: local processes)")


def _add_hls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("Vitis", "Vivado"), default=None,
                   help="hls4ml backend the HLS project is written for (default: the config's hw.hls_backend, "
                        "Vitis)")
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
    p.add_argument("--jobs", type=int, default=2,
                   help="parallel processes (default 2); with --ray, the CPUs each point's task asks for are "
                        "the machine's cores / jobs")
    _add_ray_arg(p, "the grid points")
    p = sub.add_parser("quantize", help="lower a ticket to the integer hardware IR: build/<name>/ir/")
    _add_config_args(p)
    p.add_argument("--ticket", default=None, help="ticket folder (default: build/<name>/ticket)")
    _add_precision_arg(p)
    _add_weight_bits_arg(p)
    _add_fit_arg(p)
    p = sub.add_parser("import", help="a NIR network (snnTorch, Norse, Sinabs, ...) lowered to the integer IR: "
                                      "build/<name>/ir/ (and, with --nir, the config build/<name>/<name>.toml)")
    p.add_argument("--config", default=None, help="a config whose [nir] table names the file (instead of --nir ...)")
    p.add_argument("--nir", default=None, metavar="FILE", help="the NIR file")
    p.add_argument("--name", default=None, help="the build name: build/<name>/")
    p.add_argument("--dt", type=float, default=None, help="the exporter's time step (snnTorch writes dt = 1e-4)")
    p.add_argument("--reset", choices=("hard", "soft"), default=None,
                   help="the neurons' reset: NIR does not record it (snnTorch's subtract reset is soft)")
    p.add_argument("--timesteps", type=int, default=None, help="T, the timesteps the network was trained with")
    p.add_argument("--dataset", default="mnist5k", help="the data to calibrate and test on (default mnist5k)")
    p.add_argument("--weight-bits", type=int, default=8, help="signed bits per weight in the IR, 2..8 (default 8)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (with --config)")
    p.add_argument("--data-dir", default=None, help="folder of on-disk datasets")
    p.add_argument("--build-dir", default="build", help="root of the build folders (default: build)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
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
                        "with the cell models: build/<name>/sim-netlist-<board>/")
    p = sub.add_parser("synth", help="synthesis, place-and-route (and --bitstream) of build/<name>/rtl for a "
                                     "board: build/<name>/synth/<board>/")
    _add_config_args(p)
    _add_synth_args(p)
    p = sub.add_parser("run", help="run the test split on a flashed board over its serial port (or on the "
                                   "simulated board) and check every answer against the golden model and the "
                                   "cycle model: build/<name>/run/")
    _add_config_args(p)
    p.add_argument("--board", default=None,
                   help="the board (for the core's clock: the on-chip latency); default: the config's hw.board")
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB0")
    link.add_argument("--simulated", action="store_true",
                      help="the whole board design (UART link + core) in Verilator behind a pseudo-terminal: "
                           "the same host code, no board")
    p.add_argument("--mode", choices=("validate", "throughput"), default="validate",
                   help="validate: check each answer as it comes (default); throughput: send the images back "
                        "to back, timed, and check them after")
    p.add_argument("--images", default="all", help="test images to run: a number or 'all' (default)")
    p.add_argument("--baud", type=int, default=115200, help="the link's baud rate (default 115200, as built)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for each answer of the board (default 5)")
    p.add_argument("--no-load", action="store_true",
                   help="runtime weights: do not load build/<name>/rtl/weights.bin first (the board must hold it "
                        "already: its weights id is checked)")
    p = sub.add_parser("hls", help="the IR as an hls4ml project with the spiking extension; g++ C simulation "
                                   "against the golden model: build/<name>/hls/")
    _add_config_args(p)
    p.add_argument("--images", default=None,
                   help="test images to C-simulate: a number or 'all' (the whole test split; default: the "
                        "config's hw.images, all)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="C-simulation processes sharing the images (default: one per core)")
    _add_hls_args(p)
    p = sub.add_parser("hw", help="the main job: model -> quantize -> rtl -> sim -> synth [-> hls] -> report")
    _add_config_args(p)
    _add_precision_arg(p)
    _add_weight_bits_arg(p)
    _add_rtl_args(p)
    _add_sim_args(p)
    _add_synth_args(p)
    p.add_argument("--netlist-images", type=int, default=None,
                   help="test images run through the board's synthesized netlist after synth (the netlist "
                        "stage; 0: none; default: the config's hw.netlist_images, 2)")
    p.add_argument("--hls", action="store_true", default=None,
                   help="also run the HLS stage (`ticketforge hls` on the same images) before the report "
                        "(default: the config's hw.hls, false)")
    p.add_argument("--from", dest="from_stage", choices=HW_STAGES, default=None,
                   help="redo this stage and every later one even when its inputs are unchanged; the earlier "
                        "stages must be up to date")
    p.add_argument("--to", dest="to_stage", choices=HW_STAGES, default=None,
                   help="stop after this stage (no report)")
    _add_hls_args(p)
    p = sub.add_parser("explore", help="hardware design-space exploration of one ticket on a board: cycle model, "
                                       "memory inventory and synthesis per grid point; Pareto table and plot: "
                                       "build/<name>/explore/<board>/")
    _add_config_args(p)
    p.add_argument("--board", default=None, help="the board (default: the config's hw.board)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a hardware axis: pes, datapath, fifo_depth, weights or memory_style, e.g. --grid "
                        "pes=4,8,16 --grid weights=baked,runtime (repeatable; the other keys: the config's)")
    p.add_argument("--images", type=int, default=20,
                   help="test images the cycle model averages over (default 20)")
    p.add_argument("--place", nargs="?", const="all", default="none", choices=("none", "all", "best"),
                   help="also place and route the board design (link + core) against the config's clock, for "
                        "all: every point that fits; best: the points that fit, fastest first, until one meets "
                        "the clock (slow on the ECP5: ~15 minutes per vgg9_binw point); a point that misses the "
                        "clock does not fit (default: none, yosys of the core only)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="points measured at once (default: one per core)")
    _add_ray_arg(p, "each design point")
    sub.add_parser("configs", help="list the shipped configs")
    return ap
