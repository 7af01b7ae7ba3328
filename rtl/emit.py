"""Writing the accelerator for an IR as Verilog: ``build/<name>/rtl/``.

- ``top.v``: the design (module ``ticketforge_top``: the Amaranth core
  ``ticketforge_core`` behind a registered reset, see `reset_wrapper`; by default with the spike-trace
  debug port that the cocotb regression checks, see `accel.py`; a synthesis wrapper
  leaves it unconnected and yosys removes its wiring), with a ```timescale 1ns/1ps`` line
  so that every simulator agrees on time units; memories carry their contents as
  initial values (the IR's weights, lookup tables and biases are baked in).
- ``core.il`` + ``synth_top.v``: the same core as RTLIL and its reset wrapper without
  the trace port, which the synthesis stage reads.
- ``interface.json``: the component's interface (Amaranth ``ComponentMetadata``).
- ``manifest.json``: the Verilator lint result (every warning class explained in
  `lint.py`), input digests (the stage is skipped when they are unchanged), the
  generator's parameters, the memory inventory, the status-block address map and the
  field layout of the trace port, which the cocotb testbench reads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import amaranth
import numpy as np
from amaranth.back import rtlil, verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from ticketforge.errors import StageMissingError, UnsupportedError, UsageError
from ticketforge.ir import load_graph
from ticketforge.ir.prefix import accelerator_form
from ticketforge.records import clear_record, write_record
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl import cycles
from ticketforge.rtl.datapath import accelerator
from ticketforge.rtl.lane.plan import field_map
from ticketforge.rtl.lint import LintError, lint
from ticketforge.rtl.load_image import Section, write_load_image

__all__ = ["TOP", "CORE", "write_rtl", "reset_wrapper", "generator_digest", "design_id_of", "reference_design"]

TOP = "ticketforge_top"
CORE = "ticketforge_core"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def design_id_of(rtlil_text: str) -> int:
    """A core's design id: the first 32 bits of the SHA-256 of its RTLIL.  A board running the
    core answers it to the link's identity query (deploy/protocol.py), so the host knows
    which design the board runs."""
    return int(hashlib.sha256(rtlil_text.encode()).hexdigest()[:8], 16)


def generator_digest() -> str:
    """sha256 over the generator's own sources: a stage built by other code is stale."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for f in sorted(here.rglob("*.py")):
        h.update(str(f.relative_to(here)).encode() + f.read_bytes())
    return h.hexdigest()


def _cycle_constants(datapath: str) -> dict:
    if datapath == "bitpar":
        from ticketforge.rtl.bitpar import cycles as bc

        return {k: getattr(bc, k) for k in ("LAYER_SETUP", "KEEP_READ", "PIPE", "DONE")}
    if datapath == "rowstream":
        from ticketforge.rtl.rowstream import cycles as rc

        return {k: getattr(rc, k) for k in ("LAYER_SETUP", "PASS_END", "SWEEP_FILL", "DONE")}
    return {k: getattr(cycles, k) for k in ("READ_LATENCY", "ACC_DRAIN", "UPD_DRAIN", "POOL_DRAIN", "SWEEP_DRAIN")}


def reset_wrapper(acc: Accelerator, debug_ports: bool = True) -> str:
    """The top module: the Amaranth core behind a registered reset, ports unchanged.

    Written by hand because it is one flip-flop that Amaranth cannot express without a
    second clock domain in the core.  Why: a board's reset comes from a button or a host,
    so it should pass a flip-flop before it fans out to every register; and for Verilator
    a reset that is a *top input* makes every register's next-state logic depend on an
    input, which Verilator then re-evaluates on every input change (both clock edges).
    Behind the flip-flop that logic runs once per rising edge: the regression runs ~2x
    faster (measured in docs/RTL.md).  The core leaves reset one cycle after ``rst``
    falls; the testbench waits longer than that before ``start``.

    ``debug_ports=False`` leaves the spike-trace port unconnected (the synthesis top:
    yosys then removes the trace wiring, and a board needs ~360 fewer pins).
    """
    ports = [("input", 1, "clk"), ("input", 1, "rst")]
    for path, member, value in acc.signature.flatten(acc):
        name = "__".join(map(str, path))
        if debug_ports or not name.startswith("trace_"):
            ports.append(("input" if member.flow == wiring.In else "output", len(Value.cast(value)), name))
    decl = "\n".join(f"  {d}{f' [{w - 1}:0]' if w > 1 else ''} {n};" for d, w, n in ports)
    conns = ",\n".join(f"    .{n}({'rst_q' if n == 'rst' else n})" for _, _, n in ports)
    return (f"module {TOP}({', '.join(n for _, _, n in ports)});\n{decl}\n"
            f"  reg rst_q = 1'b1;\n  always @(posedge clk) rst_q <= rst;\n"
            f"  {CORE} core (\n{conns}\n  );\nendmodule\n")


def reference_design(rtl_dir: Path, datapath: str, pes: int, weights: str) -> dict:
    """The rtl manifest of the runtime-weights design in ``rtl_dir`` that a ticket is to be
    fitted onto, checked to be one (bitpar, runtime weights, the same lane count)."""
    man_path = Path(rtl_dir) / "manifest.json"
    if not man_path.is_file():
        raise StageMissingError(f"{man_path} is missing: the design to fit onto must be generated first "
                                f"(`ticketforge rtl --config <its config> --weights runtime`)")
    man = json.loads(man_path.read_text())
    p = man.get("params", {})
    if p.get("datapath") != "bitpar" or p.get("weights") != "runtime" or "capacity" not in man:
        raise UnsupportedError(f"{rtl_dir} is not a bitpar design with runtime weights (datapath "
                               f"{p.get('datapath')!r}, weights {p.get('weights')!r}): only those hold other tickets")
    if datapath != "bitpar" or weights != "runtime":
        raise UnsupportedError(f"fitting onto {rtl_dir} needs --datapath bitpar and --weights runtime, got "
                               f"{datapath} and {weights}")
    if pes != p.get("pes"):
        raise UnsupportedError(f"{rtl_dir} has {p.get('pes')} lanes, this build asks for {pes}: use --pes {p.get('pes')}")
    return man


def write_rtl(ir_dir: Path, out_dir: Path, pes: int = 16, dense: bool = False, trace: bool = True,
              run_lint: bool = True, memory_style: str = "auto", fifo_depth: int | None = None,
              progress=print, datapath: str = "lane", weights: str = "baked", fit_to: Path | None = None,
              simulation: bool = True) -> dict:
    """Generate, write and (``run_lint``) lint the accelerator for the IR in ``ir_dir``.
    Raises LintError, after writing everything, when Verilator reports a warning that
    `lint.EXPLAINED` does not cover.  ``fit_to``: the rtl folder of a runtime-weights bitpar
    design (another ticket's) that this ticket must run on: the design is generated from
    that one's capacity, must come out the same netlist, and only ``weights.bin`` is new;
    a ticket that does not fit is refused, naming what is over and by how much.
    ``simulation=False`` writes only what synthesis reads (no ``top.v``, one elaboration
    instead of two: `ticketforge explore`), and then cannot lint."""
    if not simulation and run_lint:
        raise UsageError("write_rtl: the lint reads top.v, which simulation=False does not write")
    ir_dir, out_dir = Path(ir_dir), Path(out_dir)
    clear_record(out_dir / "manifest.json")            # the stage's record: removed first, written last
    g = accelerator_form(load_graph(ir_dir))
    t0 = time.perf_counter()
    ref = reference_design(fit_to, datapath, pes, weights) if fit_to is not None else None
    acc = accelerator(g, pes, datapath, dense=dense, trace=trace, memory_style=memory_style, fifo_depth=fifo_depth,
                      weights=weights, capacity=ref["capacity"] if ref else None)
    unit = f"lanes ({datapath})" if datapath != "lane" else "PEs"
    progress(f"[rtl] {g.provenance.get('config', {}).get('name', ir_dir.name)}: {pes} {unit}"
             f"{' (dense)' if dense else ''}; elaborating and emitting Verilog through yosys", flush=True)
    # Two forms of the one design: RTLIL for synthesis (yosys reads the memories' contents
    # as single constants in seconds, where the Verilog's 10^6 `initial` statements take
    # it tens of minutes) and Verilog for the simulators.  Each public converter elaborates
    # the design itself; the generator is deterministic, so both describe the same netlist.
    core_il = rtlil.convert(acc, name=CORE, emit_src=False)
    mems = acc.memories
    out_dir.mkdir(parents=True, exist_ok=True)
    if simulation:
        text = verilog.convert(acc, name=CORE, emit_src=False) + reset_wrapper(acc)
        (out_dir / "top.v").write_text("`timescale 1ns/1ps\n" + text)
    (out_dir / "core.il").write_text(core_il)
    (out_dir / "synth_top.v").write_text(reset_wrapper(acc, debug_ports=False))
    (out_dir / "interface.json").write_text(json.dumps(acc.metadata.as_json(), indent=1))
    manifest = {
        "stage": "rtl",
        "inputs": {"graph.json": _digest(ir_dir / "graph.json"), "tensors.npz": _digest(ir_dir / "tensors.npz")},
        "params": {"pes": pes, "dense": dense, "trace": trace, "memory_style": memory_style,
                   "fifo_depth": acc.fifo_depth, "datapath": datapath, "weights": weights},
        "top": TOP,
        "generator": generator_digest(),
        "files": ["top.v"] * simulation + ["core.il", "synth_top.v", "interface.json", "manifest.json"],
        "amaranth": amaranth.__version__,
        "membrane_bits": acc.acc_bits if datapath == "lane" else acc.u_bits,
        "score_bits": acc.score_bits,
        "pixels": int(np.prod(g.input.shape)), "classes": int(g.layers[-1].out_shape[0]),
        "memories": mems,
        "memory_bits": sum(m["bits"] for m in mems),
        "status": [{"address": a, "layer": layer, "counter": c} for a, (layer, c) in enumerate(acc.status)],
        "trace_fields": {"widths": acc.ev_xyz.widths, "offsets": acc.ev_xyz.offsets, "width": acc.ev_xyz.width},
        "cycle_model": _cycle_constants(datapath),
        "seconds": round(time.perf_counter() - t0, 2),
        # what a board running this core answers to the link's identity query (deploy/protocol.py)
        "design_id": design_id_of(core_il),
    }
    if g.input.events:
        # the board link's sample buffer for the AER stream (deploy/protocol.py)
        from ticketforge.deploy.protocol import aer_capacity
        from ticketforge.rtl.aer import aer_width

        manifest["aer"] = {"capacity": aer_capacity(g.T, manifest["pixels"]), "width": aer_width(g.input.shape)}
    if weights == "runtime":
        # the load image: every loadable memory's words, for the host to send (load_image.py)
        image = write_load_image(out_dir / "weights.bin", manifest["design_id"], [
            Section(spec["index"], spec["name"], spec["width"], spec["depth"], tuple(int(w) for w in words))
            for spec, words in acc.load_contents()])
        manifest["files"].insert(-1, "weights.bin")
        manifest["load"] = {"memories": acc.loadable, "layout": dataclasses.asdict(field_map(acc.load_layout)),
                            "weights_id": image.weights_id, "words": image.words}
    if getattr(acc, "capacity", None) is not None:
        manifest["capacity"] = acc.capacity.to_json()
    if ref is not None:
        if manifest["design_id"] != ref["design_id"] or trace != ref["params"]["trace"] \
                or memory_style != ref["params"]["memory_style"]:
            raise UnsupportedError(
                f"this ticket's design is not the one in {fit_to} (design 0x{manifest['design_id']:08x} vs "
                f"0x{ref['design_id']:08x}): generate both with the same trace and memory style settings")
        manifest["fit_to"] = {"rtl_dir": str(Path(fit_to).resolve()), "design_id": ref["design_id"]}
    if datapath == "bitpar":
        # what the energy estimate prices a step with (deploy/energy.py)
        manifest["bitpar"] = {"lanes": pes, "T": g.T, "acc_bits": acc.acc_bits, "word": 32}
    if datapath == "rowstream":
        # what the energy estimate prices a row read with (deploy/energy.py)
        manifest["rowstream"] = {"lanes": pes, "T": g.T, "acc_bits": acc.acc_bits,
                                 "weight_bits": acc.plan.weight_bits, "value_bits": acc.value_bits}
    if run_lint:
        progress("[rtl] verilator --lint-only -Wall", flush=True)
        manifest["lint"] = lint(out_dir / "top.v", TOP)
    write_record(out_dir / "manifest.json", manifest)
    if run_lint and manifest["lint"]["unexplained"]:
        bad = manifest["lint"]["unexplained"]
        raise LintError(f"Verilator reports {len(bad)} unexplained warning(s) on {out_dir / 'top.v'}, first: "
                        f"{bad[0]}; see manifest.json")
    return manifest
