"""Synthesis, place-and-route and bitstream of the board design for a board with an
Amaranth board definition (amaranth-boards: icebreaker, ulx3s).

Amaranth's platform writes the build plan (yosys script, pin constraints from the board
definition, the nextpnr and pack commands); we run its commands one at a time with the
yowasp tools (or the user's, see `synth.tool_cmd`) so that the fit check can stop before
nextpnr on a design that cannot fit, and read nextpnr's JSON report for Fmax.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from ticketforge.deploy.board_top import BoardTop, CoreInstance
from ticketforge.deploy.host import expected_identity
from ticketforge.deploy.boards import Board, BoardError
from ticketforge.deploy.pll import pll_for
from ticketforge.deploy.synth import ABC9_BUG, fit_check, memory_script, parse_stat, tool_cmd

__all__ = ["PLATFORMS", "platform_for", "parse_nextpnr_report", "build_board"]

# board name -> amaranth-boards platform class (imported lazily: module path, class name)
PLATFORMS = {"icebreaker": ("amaranth_boards.icebreaker", "ICEBreakerPlatform"),
             "ulx3s": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform")}
SYNTH_OPTS = {"ice40": "-dsp -spram", "ecp5": ""}
NAME = "board"
# what follows `synth_ecp5 -run begin:map_luts` in its place: abc maps the LUTs (the netlist
# stage's ECP5 mapping), then synth_ecp5's remaining steps and the resource count
ABC_LUTS_AFTER_SYNTH = (f"techmap -map +/lattice/latches_map.v\nabc -lut 4\nclean\n"
                        f"synth_ecp5 -top {NAME} -run map_cells:\ntee -q -o stat.json stat -json")


def platform_for(board: Board):
    if board.name not in PLATFORMS:
        raise BoardError(f"board {board.name!r} has no place-and-route flow here (an estimate only); "
                         f"placed boards: {', '.join(PLATFORMS)}")
    import importlib
    mod, cls = PLATFORMS[board.name]
    return getattr(importlib.import_module(mod), cls)()


def parse_nextpnr_report(report: dict) -> dict:
    """Fmax (MHz, the slowest clock's achieved figure) and cell utilisation from nextpnr's
    ``--report`` JSON."""
    fmax = report.get("fmax", {})
    achieved = [v["achieved"] for v in fmax.values() if "achieved" in v]
    return {"fmax_mhz": round(min(achieved), 2) if achieved else None,
            "clocks": {k: {"achieved_mhz": round(v.get("achieved", 0), 2), "constraint_mhz": v.get("constraint")}
                       for k, v in fmax.items()},
            "placed": {k: {"used": v["used"], "available": v["available"]}
                            for k, v in report.get("utilization", {}).items() if v.get("used")}}


def _commands(script: str) -> list[list[str]]:
    """The tool invocations of Amaranth's build_<name>.sh, as argv lists ("$TOOL" kept)."""
    return [shlex.split(line) for line in script.splitlines() if line.startswith('"$')]


def _run(argv: list[str], out_dir: Path, what: str) -> None:
    tools = {"$YOSYS": "yosys", "$NEXTPNR_ICE40": "nextpnr-ice40", "$NEXTPNR_ECP5": "nextpnr-ecp5",
             "$ICEPACK": "icepack", "$ECPPACK": "ecppack"}
    argv = tool_cmd(tools[argv[0]]) + argv[1:]
    r = subprocess.run(argv, cwd=out_dir, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).splitlines()[-12:])
        raise BoardError(f"{what} failed in {out_dir} ({' '.join(argv[:1])}):\n{tail}")


def _write_plan(plan, out_dir: Path) -> None:
    """The build plan's files into ``out_dir``.  Written here instead of ``BuildPlan.extract``,
    which changes the process's working directory while it writes: ``ticketforge hw`` runs
    this stage in a thread beside the regression, whose relative paths would then point into
    this folder (a fresh-clone `make hw` failed that way)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in plan.files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise BoardError(f"the Amaranth build plan names a file outside its folder: {name}")
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / rel).write_bytes(content.encode() if isinstance(content, str) else content)


def build_board(rtl_dir: Path, board: Board, out_dir: Path, pixels: int, classes: int,
                bitstream: bool = False, log=print, clock_mhz: float | None = None) -> dict:
    """Board design (UART link + the rtl stage's core) through yosys, and when it fits,
    nextpnr (+ icepack/ecppack with ``bitstream``).  Returns resources, the fit check,
    Fmax and seconds per step; writes everything under ``out_dir``.  ``clock_mhz``: run the
    core from the FPGA's PLL at the highest frequency it makes at or below this (None: the
    board's oscillator); nextpnr then times the design against that clock."""
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir)
    for f in ("core.il", "synth_top.v", "interface.json"):
        if not (rtl_dir / f).is_file():
            raise BoardError(f"{rtl_dir / f} is missing: run `ticketforge rtl` first")
    plat = platform_for(board)
    pll = pll_for(board.family, plat.default_clk_frequency, clock_mhz * 1e6) if clock_mhz else None
    clk_hz = pll.f_out_hz if pll else plat.default_clk_frequency

    def write_plan(synth_opts: str, after_synth: str = "tee -q -o stat.json stat -json") -> list[list[str]]:
        """The Amaranth build plan of the board design into ``out_dir``; its tool steps."""
        plat = platform_for(board)
        core = CoreInstance(json.loads((rtl_dir / "interface.json").read_text()))
        man = json.loads((rtl_dir / "manifest.json").read_text())
        top = BoardTop(core, pixels=pixels, classes=classes, clk_hz=clk_hz, pll=pll,
                       design_id=expected_identity(rtl_dir), load=man.get("load"), aer=man.get("aer"))
        plat.add_file("core.il", (rtl_dir / "core.il").read_text())
        plat.add_file("synth_top.v", (rtl_dir / "synth_top.v").read_text())
        plan = plat.build(top, name=NAME, do_build=False, synth_opts=synth_opts,
                          script_after_read=memory_script(rtl_dir, board.family).replace("; ", "\n"),
                          script_after_synth=after_synth, nextpnr_opts="--report report.json")
        _write_plan(plan, out_dir)
        steps = _commands((out_dir / f"build_{NAME}.sh").read_text())
        if len(steps) != 3:
            raise BoardError(f"unexpected Amaranth build script in {out_dir}: {len(steps)} tool steps, expected 3")
        return steps

    steps = write_plan(SYNTH_OPTS[board.family])
    out = {"board": board.name, "device": board.device, "family": board.family,
           # the clock the core runs at: the PLL's output, or the board's oscillator
           "clock_mhz": round(clk_hz / 1e6, 4), "board_clock_mhz": plat.default_clk_frequency / 1e6,
           "pll": {"family": pll.family, **pll.dividers} if pll else None,
           "design": "UART link + core (deploy/board_top.py)", "seconds": {}}

    t = time.perf_counter()
    log(f"[synth] {board.name}: yosys synth_{board.family} (board design: UART link + core)", flush=True)
    try:
        _run(steps[0], out_dir, "yosys")
    except BoardError:
        if board.family != "ecp5" or ABC9_BUG not in (out_dir / f"{NAME}.rpt").read_text(errors="replace"):
            raise
        # yosys 0.70's abc9 fails its reintegration assertion on some designs (the netlist
        # stage meets it too, deploy/netlist.py), and its synth_ecp5 has no option to skip
        # abc9: those run synth_ecp5 up to its LUT mapping, map the LUTs with abc, and run
        # synth_ecp5's remaining steps
        log(f"[synth] {board.name}: yosys 0.70's abc9 failed ({ABC9_BUG}); again with the LUTs mapped by abc",
            flush=True)
        steps = write_plan(SYNTH_OPTS[board.family] + " -run begin:map_luts", ABC_LUTS_AFTER_SYNTH)
        _run(steps[0], out_dir, "yosys")
        out["yosys_workaround"] = f"LUTs mapped by `abc -lut 4` (yosys 0.70's abc9 failed: {ABC9_BUG})"
    out["seconds"]["yosys"] = round(time.perf_counter() - t, 1)
    res = parse_stat(json.loads((out_dir / "stat.json").read_text()), board.family)
    out["resources"] = res
    out.update(fit_check(res, board))
    if not out["fits"]:
        over = ", ".join(f"{k} {v['used']} of {v['available']} ({v['ratio']}x)" for k, v in out["over"].items())
        log(f"[synth] {board.name}: does not fit ({over}); no place-and-route", flush=True)
        out["fmax_mhz"] = None
        return out

    t = time.perf_counter()
    log(f"[synth] {board.name}: nextpnr-{board.family} place and route", flush=True)
    # the achieved Fmax is the figure: a design below the board's clock is reported as such
    # (meets_board_clock), not failed after the place-and-route
    _run(steps[1] + ["--timing-allow-fail"], out_dir, f"nextpnr-{board.family}")
    out["seconds"]["nextpnr"] = round(time.perf_counter() - t, 1)
    out.update(parse_nextpnr_report(json.loads((out_dir / "report.json").read_text())))
    # (the key keeps its name: "the clock the core runs on the board", the PLL's when there is one)
    out["meets_board_clock"] = out["fmax_mhz"] is not None and out["fmax_mhz"] >= out["clock_mhz"]
    if bitstream and not out["meets_board_clock"]:
        out["why_no_bitstream"] = (f"Fmax {out['fmax_mhz']} MHz is below the core's clock ({out['clock_mhz']} MHz): "
                                   "a bitstream would not meet timing; set hw.clock_mhz (the PLL) at or below "
                                   f"{out['fmax_mhz']}")
        log(f"[synth] {board.name}: no bitstream: {out['why_no_bitstream']}", flush=True)
    elif bitstream:
        t = time.perf_counter()
        _run(steps[2], out_dir, "bitstream packing")
        out["seconds"]["pack"] = round(time.perf_counter() - t, 1)
        out["bitstream"] = str(out_dir / (f"{NAME}.bin" if board.family == "ice40" else f"{NAME}.bit"))
    return out
