"""`ticketforge explore`: the hardware design space of one ticket on one board.

    ticketforge explore --config vgg9_binw --board ulx3s --grid pes=4,8,16,32 --grid weights=baked,runtime
    ticketforge explore --config mlp_binw_tiny --grid pes=1,2,4 --grid fifo_depth=8,16 --place

For every point of the grid (hardware keys: ``datapath``, ``pes``, ``fifo_depth``,
``weights``, ``memory_style``; each value checked as the config's ``hw.<key>``) it measures
  - the cycles per image with the exact cycle model, over the first ``images`` test images;
  - the memory inventory of the generated design (its memories' bits);
  - yosys synthesis of the core for the board: LUTs, FFs, block RAMs, SPRAM, DSPs, and the
    fit against the board's capacity; with ``place``, the board design (link + core) placed
    and routed by nextpnr against the config's clock: Fmax (``all``: every point that fits;
    ``best``: the points that fit, fastest first, until one meets the clock).
Latency is the cycles at the config's clock (``hw.clock_mhz``, else the board's oscillator);
a placed point that misses that clock, or that nextpnr cannot place, does not fit.  It
writes, under ``build/<name>/explore/<board>/``, ``explore.json``, ``explore.md`` (the
table, Pareto points marked: none of the others is at least as fast with at most as many
LUTs and block RAMs) and ``explore.png`` (latency against LUTs and against block RAMs, the
board's capacity drawn), and names the fastest point that fits.

Each point is cached by a digest of the IR, its settings, the board and the measurement,
in ``<digest>/point.json``, so a rerun measures only new points.  Points run in parallel
local processes, or as Ray tasks with ``--ray`` (`ticketforge.distributed`): a task gets
the IR and the images as bytes and returns its figures; the driver writes every file.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ticketforge.errors import ConfigError
from ticketforge.model.config import RunConfig, build_config

__all__ = ["GRID_KEYS", "parse_hw_grid", "expand_points", "measure_point", "pareto", "fastest_fit", "run_explore",
           "plot_explore", "explore_table"]

GRID_KEYS = ("datapath", "pes", "fifo_depth", "weights", "memory_style")
ASPECTS = ("latency_us", "luts", "brams")          # what the Pareto front minimises


def parse_hw_grid(items: list[str]) -> dict[str, list[str]]:
    """``--grid key=v1,v2`` axes over the hardware keys (``hw.`` prefix optional)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("hw.")
        if not sep or key not in GRID_KEYS:
            raise ConfigError(f"--grid {item!r}: expected KEY=v1,v2,... with KEY one of {', '.join(GRID_KEYS)}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"--grid {item!r}: no values")
        grid[key] = vals
    return grid


def expand_points(cfg: RunConfig, grid: dict[str, list[str]]) -> list[dict]:
    """One entry per grid point, its settings checked by the config's own rules (a bad
    value fails here, before anything runs): ``{"overrides", "hw"}``."""
    base = {k: v for k, v in cfg.to_dict().items() if k != "name"}
    points = []
    for combo in itertools.product(*grid.values()):
        over = dict(zip(grid, combo))
        pcfg = build_config(cfg.name, base, {f"hw.{k}": v for k, v in over.items()}, source="--grid")
        hw = pcfg.hw
        if hw.datapath != "lane" and hw.fifo_depth is not None:
            hw_fifo = None                               # only the lane datapath has event FIFOs
        else:
            hw_fifo = hw.fifo_depth
        points.append({"overrides": over,
                       "hw": {"datapath": hw.datapath, "pes": hw.pes, "fifo_depth": hw_fifo, "weights": hw.weights,
                              "memory_style": hw.memory_style}})
    return points


def _digest(ir_digest: str, hw: dict, board: str, place: bool, images: int, clock_mhz) -> str:
    key = {"ir": ir_digest, "hw": hw, "board": board, "place": place, "images": images, "clock_mhz": clock_mhz,
           "measure": 2}        # 2: a runtime core's synthesis maps its SPRAM memories as the board's does
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def measure_point(hw: dict, ir_files: dict[str, bytes], images: bytes, board_name: str, place: bool,
                  clock_mhz: float | None) -> dict:
    """One design point, measured in a temporary folder (the task body, local or on Ray):
    cycle model, memory inventory, yosys (and nextpnr with ``place``).  Its figures."""
    from ticketforge.deploy.board_build import build_board
    from ticketforge.deploy.boards import BoardError, get_board
    from ticketforge.deploy.synth import parse_stat, synthesize
    from ticketforge.ir import load_graph
    from ticketforge.ir.prefix import accelerator_form
    from ticketforge.rtl.datapath import cycle_model
    from ticketforge.rtl.emit import write_rtl

    board = get_board(board_name)
    x = np.load(io.BytesIO(images))
    out: dict = {"hw": hw, "seconds": {}}
    with tempfile.TemporaryDirectory(prefix="ticketforge-explore-") as tmp:
        ir_dir = Path(tmp) / "ir"
        ir_dir.mkdir()
        for name, data in ir_files.items():
            (ir_dir / name).write_bytes(data)
        g = accelerator_form(load_graph(ir_dir))
        t = time.perf_counter()
        models = cycle_model(g, x, hw["pes"], hw["datapath"], fifo_depth=hw["fifo_depth"], weights=hw["weights"])
        cycles = np.array([m.total for m in models], np.int64)
        out["cycles"] = {"mean": float(cycles.mean()), "min": int(cycles.min()), "max": int(cycles.max()),
                         "images": int(len(cycles)), "ideal_bound_mean": float(np.mean([m.ideal_bound for m in models]))}
        out["seconds"]["cycle_model"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        man = write_rtl(ir_dir, Path(tmp) / "rtl", pes=hw["pes"], trace=False, run_lint=False,
                        memory_style=hw["memory_style"], fifo_depth=hw["fifo_depth"], datapath=hw["datapath"],
                        weights=hw["weights"], simulation=False, progress=lambda *a, **k: None)
        out["memory_bits"] = man["memory_bits"]
        out["memories"] = len(man["memories"])
        out["seconds"]["rtl"] = round(time.perf_counter() - t, 1)
        quiet = lambda *a, **k: None                                      # noqa: E731
        if place:
            try:
                res = build_board(Path(tmp) / "rtl", board, Path(tmp) / "board", man["pixels"], man["classes"],
                                  log=quiet, clock_mhz=clock_mhz)
            except BoardError as e:
                stat = Path(tmp) / "board" / "stat.json"
                if not stat.is_file():          # yosys itself failed: not a fit question
                    raise
                # yosys' counts fit, but nextpnr could not place the design (on the iCE40 a
                # logic cell holds a LUT and a carry, so LUT4 counts under the capacity can
                # still need more cells than there are): this point does not fit
                last = [ln for ln in str(e).splitlines() if ln.startswith("ERROR")][-1:] or [str(e)[-200:]]
                res = {"resources": parse_stat(json.loads(stat.read_text()), board.family), "fits": False,
                       "over": {"placement": {"error": last[0]}}, "seconds": {}, "clock_mhz": None}
            out["seconds"].update(res["seconds"])
            out["fmax_mhz"] = res.get("fmax_mhz")
            out["clock_mhz"] = res["clock_mhz"]
            out["meets_clock"] = bool(res.get("meets_board_clock"))
            out["design"] = "board (link + core)"
        else:
            t = time.perf_counter()
            res = synthesize(Path(tmp) / "rtl", board, Path(tmp) / "synth", log=quiet)
            out["seconds"]["yosys"] = round(time.perf_counter() - t, 1)
            out["design"] = "core"
        r = res["resources"]
        out["resources"] = {k: r.get(k, 0) for k in ("luts", "ffs", "brams", "sprams", "dsps", "lutram")}
        out["fits_resources"] = bool(res["fits"])
        out["over"] = res["over"]
    return out


def pareto(points: list[dict]) -> list[int]:
    """Indices of the points that no other point beats: at most its latency, LUTs and block
    RAMs, and less in one."""
    def vec(p):
        return (p["latency_us"], p["resources"]["luts"], p["resources"]["brams"])

    front = []
    for i, p in enumerate(points):
        a = vec(p)
        if not any(all(b <= c for b, c in zip(vec(q), a)) and vec(q) != a for j, q in enumerate(points) if j != i):
            front.append(i)
    return front


def fastest_fit(points: list[dict]) -> int | None:
    """The fastest point that fits (fewest LUTs among equally fast ones); None if none does."""
    fit = [i for i, p in enumerate(points) if p["fits"]]
    return min(fit, key=lambda i: (points[i]["latency_us"], points[i]["resources"]["luts"])) if fit else None


def _ir_files(ir_dir: Path) -> dict[str, bytes]:
    return {n: (ir_dir / n).read_bytes() for n in ("graph.json", "tensors.npz")}


def _npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x))
    return buf.getvalue()


PLACE_MODES = ("none", "all", "best")


def run_explore(cfg: RunConfig, grid: dict[str, list[str]], build_root: Path, board_name: str, images: int = 20,
                place: str = "none", jobs: int = 1, executor=None, log=print) -> dict:
    """Measure every grid point (cached), write explore.json/.md/.png; the summary.
    ``place``: "none" (yosys of the core only), "all" (every point's board design placed and
    routed when yosys says it fits) or "best" (yosys for all, then the points that fit
    placed fastest first until one meets the clock: the choice is then placed, the rest
    are yosys figures)."""
    from ticketforge.deploy.board_build import platform_for
    from ticketforge.deploy.boards import get_board
    from ticketforge.errors import StageMissingError
    from ticketforge.ir import load_test_inputs

    if place not in PLACE_MODES:
        raise ConfigError(f"--place {place!r}: one of {', '.join(PLACE_MODES)}")
    board = get_board(board_name)
    root = Path(build_root) / cfg.name
    ir_dir = root / "ir"
    if not (ir_dir / "graph.json").is_file():
        raise StageMissingError(f"no IR in {ir_dir}: run `ticketforge quantize --config {cfg.name}` first "
                                f"(or `make hw MODEL={cfg.name}`)")
    points = expand_points(cfg, grid)
    codes, _ = load_test_inputs(ir_dir)
    if images < 1:
        raise ConfigError(f"--images {images}: at least 1")
    x = codes[:images]
    clock = cfg.hw.clock_mhz or platform_for(board).default_clk_frequency / 1e6
    ir_files = _ir_files(ir_dir)
    ir_digest = hashlib.sha256(b"".join(ir_files[k] for k in sorted(ir_files))).hexdigest()
    folder = root / "explore" / board.name
    folder.mkdir(parents=True, exist_ok=True)
    xb = _npy_bytes(x)

    def measure(batch: list[dict], placed: bool) -> dict[str, dict]:
        """The points' figures, cached ones read, the others measured in parallel."""
        got: dict[str, dict] = {}
        todo = []
        for p in batch:
            key = _digest(ir_digest, p["hw"], board.name, placed, len(x), clock)
            cached = folder / key / "point.json"
            if cached.is_file():
                got[p["digest"]] = json.loads(cached.read_text())
                log(f"[explore] {p['overrides']}{' placed' if placed else ''}: cached")
            elif all(q[1] != key for q in todo):
                todo.append((p, key))
        args = [(p["hw"], ir_files, xb, board.name, placed, cfg.hw.clock_mhz) for p, _ in todo]
        t0 = time.perf_counter()

        def done(i, res, node=None):
            p, key = todo[i]
            _write_point(folder / key, res)
            got[p["digest"]] = res
            fmax = f", Fmax {res.get('fmax_mhz')} MHz" if placed else ""
            log(f"[explore] {len(got) - (len(batch) - len(todo))}/{len(todo)} {p['overrides']}: "
                f"{res['cycles']['mean']:.0f} cycles, {res['resources']['luts']} LUT, {res['resources']['brams']} "
                f"block RAM{fmax}{' on ' + node if node else ''} ({time.perf_counter() - t0:.0f} s)", flush=True)

        if todo and executor is not None:
            from ticketforge.distributed import per_node_line, ray_session, task_map

            with ray_session(executor, log):
                task_map(executor, measure_point, args, num_cpus=1, what="design point", on_done=done)
            log(per_node_line(executor, "point(s)"))
        elif todo:
            with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
                futs = {pool.submit(measure_point, *a): i for i, a in enumerate(args)}
                for f in as_completed(futs):
                    done(futs[f], f.result())
        return {p["digest"]: got[p["digest"]] for p in batch}

    for p in points:            # the point's name in this run (its settings)
        p["digest"] = _digest(ir_digest, p["hw"], board.name, False, len(x), clock)
    measured = measure(points, place == "all")
    rows = [_row(p, measured[p["digest"]], clock) for p in points]
    if place == "best":
        for i in sorted((i for i, r in enumerate(rows) if r["fits"]),
                        key=lambda i: (rows[i]["latency_us"], rows[i]["resources"]["luts"])):
            rows[i] = _row(points[i], measure([points[i]], True)[points[i]["digest"]], clock)
            if rows[i]["fits"]:
                break
    front = pareto(rows)
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    best = fastest_fit(rows)
    shipped = {k: getattr(cfg.hw, k) for k in GRID_KEYS}
    out = {"config": cfg.name, "board": board.name, "device": board.device, "grid": grid, "images": int(len(x)),
           "clock_mhz": clock, "placed": place,
           "capacity": {"luts": board.luts, "brams": board.brams, "sprams": board.sprams, "dsps": board.dsps},
           "points": rows, "fastest_fit": best, "config_hw": shipped,
           "config_point": next((i for i, r in enumerate(rows)
                                 if all(r["hw"][k] == shipped[k] for k in grid)), None)}
    (folder / "explore.json").write_text(json.dumps(out, indent=1))
    (folder / "explore.md").write_text(explore_table(out))
    out["plot"] = plot_explore(out, folder / "explore.png")
    out["folder"] = str(folder)
    return out


def _write_point(folder: Path, res: dict) -> None:
    """``point.json`` written beside and renamed: a crash never leaves half a point."""
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "point.json.part"
    part.write_text(json.dumps(res, indent=1))
    os.replace(part, folder / "point.json")


def _row(p: dict, m: dict, clock: float) -> dict:
    """A table row: the point's figures, its latency at the clock it runs at, and whether it
    fits (resources, and the clock when placed)."""
    run_mhz = m.get("clock_mhz") or clock
    fits = m["fits_resources"] and m.get("meets_clock", True)
    return {"overrides": p["overrides"], "hw": p["hw"], "digest": p["digest"], "cycles": m["cycles"]["mean"],
            "latency_us": round(m["cycles"]["mean"] / run_mhz, 2), "clock_mhz": run_mhz,
            "fmax_mhz": m.get("fmax_mhz"), "resources": m["resources"], "memory_bits": m["memory_bits"],
            "fits": bool(fits), "over": m["over"], "design": m["design"], "placed": m["design"] != "core",
            "seconds": m["seconds"]}


def _label(r: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in r["overrides"].items())


def explore_table(out: dict) -> str:
    """The Markdown table of explore.md."""
    cap = out["capacity"]
    mode = out["placed"]
    placed = mode != "none"
    how = {"none": f"latency at {out['clock_mhz']:g} MHz (the config's clock; not placed: Fmax not measured); "
                   "resources: yosys for the core alone",
           "all": "latency at the clock each placed design runs at (the PLL's; nextpnr's Fmax checked against it); "
                  "resources: yosys for the board design (link + core)",
           "best": "resources: yosys for the core alone; then the points that fit placed and routed (board design: "
                   "link + core), fastest first, until one met the clock (those rows: the board design's "
                   f"resources and Fmax); latency at {out['clock_mhz']:g} MHz"}[mode]
    lines = [f"# `{out['config']}` on {out['board']} ({out['device']})", "",
             f"Cycles: the exact cycle model, mean over the first {out['images']} test images; {how}. "
             f"Capacity: {cap['luts']:,} LUT4, {cap['brams']} block RAMs, {cap['dsps']} DSPs"
             + (f", {cap['sprams']} SPRAM" if cap["sprams"] else "") + ". P: on the Pareto front.", "",
             "| point | cycles/image | latency us | LUT4 | FF | block RAM | SPRAM | DSP | memory kbit |"
             + (" Fmax MHz |" if placed else "") + " fits | P |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if placed else "") + "---|---|"]
    for i, r in enumerate(out["points"]):
        res = r["resources"]
        mark = "**" if i == out["fastest_fit"] else ""
        over = ", ".join("nextpnr could not place it" if k == "placement" else f"{k} {v['ratio']}x"
                         for k, v in r["over"].items())
        fits = ("yes" if r["placed"] or not placed else "yes (yosys)") if r["fits"] else \
            ("no: " + over if over else "no: misses the clock")
        lines.append(f"| {mark}{_label(r)}{mark} | {r['cycles']:,.0f} | {r['latency_us']:,.1f} | {res['luts']:,} | "
                     f"{res['ffs']:,} | {res['brams']} | {res['sprams']} | {res['dsps']} | "
                     f"{r['memory_bits'] / 1024:,.0f} |" + (f" {r['fmax_mhz'] if r['fmax_mhz'] else '-'} |" if placed else "")
                     + f" {fits} | {'P' if r['pareto'] else ''} |")
    best = out["fastest_fit"]
    lines.append("")
    if best is None:
        lines.append("No point fits the board.")
    else:
        r = out["points"][best]
        lines.append(f"Fastest point that fits: **{_label(r)}**, {r['latency_us']:,.1f} us per image.")
    cp = out["config_point"]
    if cp is not None:
        lines.append(f"The config's own point: {_label(out['points'][cp])}"
                     + (" (the same)." if cp == best else "."))
    return "\n".join(lines) + "\n"


def plot_explore(out: dict, path: Path) -> str:
    """Latency against LUTs and against block RAMs, one marker per point (filled: fits;
    ringed: Pareto; star: the fastest that fits), the board's capacity dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = out["points"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, cap, name in ((axes[0], "luts", out["capacity"]["luts"], "LUT4"),
                               (axes[1], "brams", out["capacity"]["brams"], "block RAMs")):
        for i, r in enumerate(rows):
            x, y = r["resources"][key], r["latency_us"]
            ax.scatter([x], [y], s=40, c="tab:blue" if r["fits"] else "white", edgecolors="tab:blue", zorder=3)
            if r["pareto"]:
                ax.scatter([x], [y], s=140, facecolors="none", edgecolors="tab:orange", zorder=2)
            if i == out["fastest_fit"]:
                ax.scatter([x], [y], s=220, marker="*", c="tab:red", zorder=4)
            ax.annotate("/".join(str(v) for v in r["overrides"].values()), (x, y), fontsize=6,
                        xytext=(4, -8 if i % 2 else 4), textcoords="offset points")
        ax.axvline(cap, ls="--", c="gray")
        ax.text(cap, 0.02, f" {out['board']}: {cap:,}", fontsize=7, va="bottom", c="gray",
                transform=ax.get_xaxis_transform())
        ax.set_xlabel(f"{name} (yosys)")
        if cap >= 10_000:               # 83,640 LUT4 tick labels run into each other
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("latency per image (us)")
    fig.suptitle(f"{out['config']} on {out['board']}: filled = fits, ring = Pareto, star = fastest that fits\n"
                 f"labels: {' / '.join(out['grid'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
