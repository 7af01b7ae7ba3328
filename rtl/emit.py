"""Writing the accelerator for an IR as Verilog: ``build/<name>/rtl/``.

- ``top.v``: the design (module ``ticketforge_top``; by default with the spike-trace
  debug port that the cocotb regression checks, see `accel.py`; a synthesis wrapper
  leaves it unconnected and yosys removes its wiring), with a ```timescale 1ns/1ps`` line
  so that every simulator agrees on time units; memories carry their contents as
  initial values (the IR's weights, lookup tables and biases are baked in).
- ``interface.json``: the component's interface (Amaranth ``ComponentMetadata``).
- ``manifest.json``: the Verilator lint result (every warning class explained in
  `lint.py`), input digests (the stage is skipped when they are unchanged), the
  generator's parameters, the memory inventory, the status-block address map and the
  field layout of the trace port, which the cocotb testbench reads.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import amaranth
from amaranth.back import verilog

from ticketforge.model.ir import load_graph
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl import cycles
from ticketforge.rtl.lint import LintError, lint

__all__ = ["TOP", "write_rtl"]

TOP = "ticketforge_top"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_rtl(ir_dir: Path, out_dir: Path, pes: int = 16, dense: bool = False, trace: bool = True,
              run_lint: bool = True, memory_style: str = "auto", progress=print) -> dict:
    """Generate, write and (``run_lint``) lint the accelerator for the IR in ``ir_dir``.
    Raises LintError, after writing everything, when Verilator reports a warning that
    `lint.EXPLAINED` does not cover."""
    ir_dir, out_dir = Path(ir_dir), Path(out_dir)
    g = load_graph(ir_dir)
    t0 = time.perf_counter()
    acc = Accelerator(g, pes, dense=dense, trace=trace, memory_style=memory_style)
    progress(f"[rtl] {g.provenance.get('config', {}).get('name', ir_dir.name)}: {pes} PEs"
             f"{' (dense)' if dense else ''}; elaborating and emitting Verilog through yosys", flush=True)
    text = verilog.convert(acc, name=TOP, emit_src=False)
    mems = acc.memories
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "top.v").write_text("`timescale 1ns/1ps\n" + text)
    (out_dir / "interface.json").write_text(json.dumps(acc.metadata.as_json(), indent=1))
    manifest = {
        "stage": "rtl",
        "inputs": {"graph.json": _digest(ir_dir / "graph.json"), "tensors.npz": _digest(ir_dir / "tensors.npz")},
        "params": {"pes": pes, "dense": dense, "trace": trace, "memory_style": memory_style},
        "top": TOP,
        "files": ["top.v", "interface.json", "manifest.json"],
        "amaranth": amaranth.__version__,
        "membrane_bits": acc.acc_bits,
        "score_bits": acc.score_bits,
        "memories": mems,
        "memory_bits": sum(m["bits"] for m in mems),
        "status": [{"address": a, "layer": layer, "counter": c} for a, (layer, c) in enumerate(acc.status)],
        "trace_fields": {"widths": acc.ev_xyz.widths, "offsets": acc.ev_xyz.offsets, "width": acc.ev_xyz.width},
        "cycle_model": {k: getattr(cycles, k) for k in ("READ_LATENCY", "ACC_DRAIN", "UPD_DRAIN",
                                                         "POOL_DRAIN", "SWEEP_DRAIN")},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if run_lint:
        progress("[rtl] verilator --lint-only -Wall", flush=True)
        manifest["lint"] = lint(out_dir / "top.v", TOP)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if run_lint and manifest["lint"]["unexplained"]:
        bad = manifest["lint"]["unexplained"]
        raise LintError(f"Verilator reports {len(bad)} unexplained warning(s) on {out_dir / 'top.v'}, first: "
                        f"{bad[0]}; see manifest.json")
    return manifest
