"""Synthesis of the generated Verilog for a board with the open yosys flow: resource
counts by cell class and the fit check against the board's capacity.

The tools come from the yowasp wheels unless an environment variable names another
executable (``$YOSYS``, ``$NEXTPNR_ICE40``, ``$NEXTPNR_ECP5``, ``$ICEPACK``, ``$ECPPACK``:
a user's system tools).  This module synthesises the rtl stage's ``core.il`` +
``synth_top.v`` as they are (the Xilinx estimate); `board_build.py` places and routes the
board design.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ticketforge.deploy.boards import Board, BoardError

__all__ = ["ABC9_BUG", "CELL_CLASSES", "tool_cmd", "yosys_cmd", "parse_stat", "fit_check", "closest_fit_hint", "synthesize",
           "memory_script"]

# the assertion yosys 0.70's abc9 pass stops on for some ECP5 designs (rtlil.cc:3091)
ABC9_BUG = "GetSize(conn.first) == GetSize(conn.second)"
# cell type -> resource class, per family (what each yosys synth_<family> maps to)
CELL_CLASSES = {
    "ice40": {"SB_LUT4": "luts", "SB_RAM40_4K": "brams", "SB_SPRAM256KA": "sprams", "SB_MAC16": "dsps"},
    "ecp5": {"LUT4": "luts", "TRELLIS_FF": "ffs", "DP16KD": "brams", "MULT18X18D": "dsps",
             "TRELLIS_DPR16X4": "lutram"},
    "xilinx7": {**{f"LUT{i}": "luts" for i in range(1, 7)},
                **{k: "ffs" for k in ("FDRE", "FDSE", "FDCE", "FDPE")},
                "RAMB36E1": "brams", "RAMB18E1": "brams_half", "DSP48E1": "dsps",
                **{k: "lutram" for k in ("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D",
                                         "RAM256X1S", "RAM32X1S", "RAM64X1S", "RAM128X1S")}},
}
SYNTH = {"ice40": "synth_ice40 -dsp -spram", "ecp5": "synth_ecp5", "xilinx7": "synth_xilinx -family xc7"}


def memory_script(rtl_dir: Path, family: str) -> str:
    """yosys commands (after reading the core) that place a runtime-weights design's synapse
    words (each PE's ``rows`` memory) in the iCE40's SPRAM: ``ram_style = "huge"``, and
    their initial contents removed, which SPRAM cannot hold (Amaranth gives every memory
    initial contents, zeros here: the words come through the load port).  Empty for other
    designs and families."""
    import json

    man = Path(rtl_dir) / "manifest.json"
    if family != "ice40" or not man.is_file() or \
            json.loads(man.read_text())["params"].get("weights") != "runtime":
        return ""
    return 'setattr -set ram_style "huge" m:rows; delete t:$meminit_v2 r:MEMID=\\rows %i'


def tool_cmd(name: str) -> list[str]:
    """The command for an open FPGA tool: ``$NAME`` (``nextpnr-ecp5`` -> ``$NEXTPNR_ECP5``)
    if set, else the yowasp wheel's ``yowasp-<name>``."""
    var = name.upper().replace("-", "_")
    exe = os.environ.get(var)
    if exe:
        if not shutil.which(exe):
            raise BoardError(f"${var} is {exe!r}, which is not an executable on PATH")
        return [exe]
    # the wheel's entry point sits next to this interpreter (a venv's bin/ need not be on PATH)
    wasm = f"yowasp-{name}"
    exe = shutil.which(wasm) or shutil.which(wasm, path=str(Path(sys.executable).parent))
    if not exe:
        raise BoardError(f"{name} is not installed: run `make setup` (it installs {wasm}) or set ${var} "
                         f"to a {name} executable")
    return [exe]


def yosys_cmd() -> list[str]:
    return tool_cmd("yosys")


def parse_stat(stat: dict, family: str) -> dict[str, int]:
    """Resource counts from yosys' ``stat -json`` output (the whole design)."""
    cells = stat.get("design", {}).get("num_cells_by_type")
    if cells is None:                          # single-module designs: take the top module
        mods = stat.get("modules", {})
        if not mods:
            raise BoardError("yosys stat output has no design or module section")
        cells = next(iter(mods.values())).get("num_cells_by_type", {})
    out = {"luts": 0, "ffs": 0, "brams": 0, "dsps": 0, "sprams": 0, "lutram": 0}
    classes = CELL_CLASSES[family]
    half = 0
    for cell, n in cells.items():
        cls = classes.get(cell)
        if cls is None and family == "ice40" and cell.startswith("SB_DFF"):
            cls = "ffs"
        if cls == "brams_half":
            half += int(n)
        elif cls:
            out[cls] += int(n)
    out["brams"] += (half + 1) // 2 if family == "xilinx7" else 0   # two RAMB18 share one RAMB36 site
    out["cells"] = {k: int(v) for k, v in sorted(cells.items())}
    return out


def fit_check(res: dict[str, int], board: Board) -> dict:
    """Fits or not; for each resource over capacity, used / available and by how much."""
    caps = {"luts": board.luts, "ffs": board.ffs, "brams": board.brams, "dsps": board.dsps,
            "sprams": board.sprams}
    over = {}
    for k, cap in caps.items():
        used = res.get(k, 0)
        if used > cap:
            over[k] = {"used": used, "available": cap, "over_by": used - cap, "ratio": round(used / max(cap, 1), 2)}
    return {"fits": not over, "over": over,
            "utilisation": {k: round(res.get(k, 0) / cap, 4) if cap else None for k, cap in caps.items()}}


def closest_fit_hint(ir_dir: Path, board: Board, datapath: str = "lane", lanes: int = 0) -> str:
    """What would fit: the on-chip memory the design needs against the board's, per PE count
    (memories are the binding resource of these designs).  A bitpar design's block RAMs
    follow its memories' widths more than their bits, so its hint names the lanes first."""
    from ticketforge.ir import load_graph
    from ticketforge.ir.prefix import accelerator_form
    from ticketforge.rtl.lane.plan import lane_plan

    if datapath == "rowstream":
        return (f"A rowstream design's weight rows are {lanes} lanes wide and one row per input and group of "
                f"{lanes} neurons: fewer hidden neurons, fewer weight bits (--weight-bits) or another board; its "
                "logic grows with --pes")
    if datapath == "bitpar":
        fewer = f"--pes {lanes // 2}" if lanes > 1 else "the lane datapath"
        hint = (f"A bitpar design's block RAMs follow its memories' widths (each step row holds {lanes} lanes x 64 "
                f"synapse bits, each spike bitmap word T x 32 bits) and its logic the lanes' popcounts: try {fewer}")
        return hint + ", or --datapath lane. With the lane datapath: " + closest_fit_hint(ir_dir, board)
    g = accelerator_form(load_graph(ir_dir))
    cap = board.memory_kbits * 1024
    tried = []
    for P in (16, 8, 4, 2, 1):
        bits = sum(m["bits"] for m in lane_plan(g, P).memories)
        tried.append(f"P={P}: {bits / 1e6:.2f} Mbit")
        if bits <= 0.8 * cap:
            return f"P={P} would need {bits / 1e6:.2f} Mbit of the board's {cap / 1e6:.2f} Mbit: try --pes {P}"
    return (f"no PE count fits this network's memories in {board.name}'s {cap / 1e6:.2f} Mbit of block RAM "
            f"({'; '.join(tried)}); a smaller network (fewer neurons, fewer kept synapses) is needed")


def synthesize(rtl_dir: Path, board: Board, out_dir: Path, log=print) -> dict:
    """yosys synth_<family> of the rtl stage's core (``core.il`` + ``synth_top.v``, no
    board wrapper); writes ``out_dir/stat.json``, ``synth.log`` and returns resources, the
    fit check and seconds."""
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in ("core.il", "synth_top.v"):
        if not (rtl_dir / f).is_file():
            raise BoardError(f"{rtl_dir / f} is missing: run `ticketforge rtl` first")
        # yowasp's WebAssembly yosys sees only the directory it runs in: work inside out_dir
        shutil.copyfile(rtl_dir / f, out_dir / f)
    top = json.loads((rtl_dir / "manifest.json").read_text())["top"]
    # runtime weights on the iCE40: the synapse words / weight rows in SPRAM, as the board
    # design's synthesis puts them (board_build.py)
    memories = memory_script(rtl_dir, board.family)
    script = f"read_rtlil core.il; read_verilog synth_top.v; {memories + '; ' if memories else ''}" \
             f"{SYNTH[board.family]} -top {top}; tee -q -o stat.json stat -json"
    t0 = time.perf_counter()
    log(f"[synth] yosys {SYNTH[board.family]} for {board.name} ({board.device})", flush=True)
    extra = {}
    r = _yosys(script, out_dir)
    if r.returncode != 0 and board.family == "ecp5" and ABC9_BUG in _log_text(out_dir):
        # yosys 0.70's abc9 assertion (deploy/board_build.py meets it too): synth_ecp5 up to its
        # LUT mapping, the LUTs mapped by abc, then synth_ecp5's remaining steps
        log(f"[synth] {board.name}: yosys 0.70's abc9 failed ({ABC9_BUG}); again with the LUTs mapped by abc",
            flush=True)
        script = (f"read_rtlil core.il; read_verilog synth_top.v; {SYNTH[board.family]} -top {top} -run "
                  f"begin:map_luts; techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
                  f"{SYNTH[board.family]} -top {top} -run map_cells:; tee -q -o stat.json stat -json")
        r = _yosys(script, out_dir)
        extra["yosys_workaround"] = f"LUTs mapped by `abc -lut 4` (yosys 0.70's abc9 failed: {ABC9_BUG})"
    if r.returncode != 0 or not (out_dir / "stat.json").is_file():
        tail = "\n".join((r.stderr or r.stdout).splitlines()[-10:])
        raise BoardError(f"yosys failed for {board.name}; see {out_dir / 'synth.log'}\n{tail}")
    res = parse_stat(json.loads((out_dir / "stat.json").read_text()), board.family)
    return {"board": board.name, "device": board.device, "family": board.family, "resources": res,
            **fit_check(res, board), "estimate": not board.place_and_route, "note": board.note,
            "seconds": round(time.perf_counter() - t0, 1), **extra}


def _yosys(script: str, out_dir: Path) -> subprocess.CompletedProcess:
    (out_dir / "stat.json").unlink(missing_ok=True)
    return subprocess.run(yosys_cmd() + ["-q", "-l", "synth.log", "-p", script], capture_output=True, text=True,
                          cwd=out_dir)


def _log_text(out_dir: Path) -> str:
    try:
        return (out_dir / "synth.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""
