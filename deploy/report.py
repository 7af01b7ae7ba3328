"""The main job's report: ``build/<name>/report.json``, ``report.md``, ``report.html`` and
the PNG plots next to them, from what the stages measured and wrote:

- ``ticket/metrics.json`` (float accuracy, firing rates, the papers' SOP energy),
- ``ir/metrics.json`` (integer accuracy of the golden interpreter),
- ``rtl/manifest.json`` (PEs, memories), ``sim/results.json`` (the regression: agreement,
  RTL accuracy, measured cycles and event counters),
- ``synth/<board>.json`` (resources, fit, Fmax),
- the cycle model (`rtl/cycles.py`, proven equal to the RTL by the regression) for the
  per-layer split and the ideal bound and dense figures on the same images.
Nothing here is estimated except the energies, which say so.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ticketforge.deploy.energy import hardware_events_energy
from ticketforge.errors import TicketforgeError
from ticketforge.ir.prefix import accelerator_prefix, describe_prefix

__all__ = ["cycles_from_sim", "ReportError", "model_cycles", "build_report", "write_report", "REQUIRED_KEYS", "residual_cost"]

# the keys the deploy issue asks of report.json (dotted paths; boards.<board>.* per board)
REQUIRED_KEYS = ("model", "dataset", "accuracy.float", "accuracy.integer", "accuracy.rtl", "accuracy.images",
                 "rtl_matches_golden", "images_checked", "cycles.per_image_mean", "cycles.ideal_bound_mean",
                 "cycles.dense_per_image_mean", "cycles.pes", "energy_uj_per_image.theoretical_sop",
                 "energy_uj_per_image.hardware_events", "boards", "stage_seconds")
BOARD_KEYS = ("fits", "luts", "ffs", "brams", "dsps", "fmax_mhz", "latency_us")
# nextpnr's placed logic cells: one LUT4 and its carry each (iCE40 ICESTORM_LC, ECP5
# TRELLIS_COMB), the figure the device's capacity is quoted in
PLACED_LOGIC_CELLS = ("ICESTORM_LC", "TRELLIS_COMB")


class ReportError(TicketforgeError):
    pass


def _read(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise ReportError(f"{path} is missing: run the {stage} stage first (`make hw` runs them all)")
    return json.loads(path.read_text())


def _chunk_cycles(g, part: np.ndarray, pes: int, fifo_depth: int | None, datapath: str = "lane",
                  weights: str = "baked"):
    from ticketforge.ir import run
    from ticketforge.rtl.datapath import cycle_model

    gold = run(g, part, trace=True)
    return (cycle_model(g, part, pes, datapath, gold=gold, fifo_depth=fifo_depth, weights=weights),
            cycle_model(g, part, pes, datapath, dense=True, gold=gold, fifo_depth=fifo_depth))


def one_synapse_bound(g, images: np.ndarray, pes: int) -> float:
    """Mean over ``images`` of the one-synapse-per-PE bound, (unmasked synaptic events + live
    neuron updates) / P: the floor of the lane datapath on ``pes`` PEs."""
    from ticketforge.rtl.cycles import cycle_model

    return float(np.mean([c.ideal_bound for c in cycle_model(g, images, pes)]))


def model_cycles(g, images: np.ndarray, pes: int, chunk: int = 100, jobs: int = 1,
                 fifo_depth: int | None = None, datapath: str = "lane", weights: str = "baked") -> dict:
    """Mean per-layer cycles (sparse and dense), ideal bound, over ``images``, from the
    cycle model (chunked: the golden interpreter's traces of a chunk at a time; chunks on
    `jobs` processes)."""
    parts = [images[i:i + chunk] for i in range(0, len(images), chunk)]
    if jobs > 1 and len(parts) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as pool:
            done = list(pool.map(_chunk_cycles, [g] * len(parts), parts, [pes] * len(parts),
                                 [fifo_depth] * len(parts), [datapath] * len(parts), [weights] * len(parts)))
    else:
        done = [_chunk_cycles(g, part, pes, fifo_depth, datapath, weights) for part in parts]
    sparse = [c for s, _ in done for c in s]
    dense = [c for _, d in done for c in d]
    names = [k for k in sparse[0].per_layer if k != "flatten"]
    mean = lambda xs: float(np.mean(xs))                                          # noqa: E731
    return {"images": len(images), "per_image_mean": mean([c.total for c in sparse]),
            "ideal_bound_mean": mean([c.ideal_bound for c in sparse]),
            "dense_per_image_mean": mean([c.total for c in dense]),
            "per_layer": {k: {"sparse": mean([c.per_layer[k] for c in sparse]),
                              "dense": mean([c.per_layer[k] for c in dense]),
                              "ideal": mean([c.ideal_per_layer[k] for c in sparse])} for k in names}}


def cycles_from_sim(g, sim: dict, images: np.ndarray, pes: int, fifo_depth: int | None = None,
                    datapath: str = "lane") -> dict:
    """`model_cycles`'s figures from the sim stage's ``cycle_model`` section (the sparse
    per-layer means and the ideal bound, computed there for every simulated image) and one
    dense run: the dense design meets the same events on every image, so one image gives
    its cycles exactly but for the input's load, which an event input makes depend on the
    data: that term is the mean over ``images`` (the simulated ones)."""
    from ticketforge.rtl.datapath import cycle_model, load_cycles

    cm = sim["cycle_model"]
    dense = cycle_model(g, images[:1], pes, datapath, dense=True, fifo_depth=fifo_depth)[0]
    load = load_cycles(g, images, pes, datapath, dense=True)
    total = float(dense.total) + float(load.mean()) - float(load[0])
    return {"images": cm["images"], "per_image_mean": cm["per_image_mean"], "ideal_bound_mean": cm["ideal_bound_mean"],
            "dense_per_image_mean": total,
            "per_layer": {k: {"sparse": v["sparse"], "dense": float(dense.per_layer[k]), "ideal": v["ideal"]}
                          for k, v in cm["per_layer"].items()}}


def _board_entry(r: dict, cycles_mean: float) -> dict:
    res = r.get("resources", {})
    fmax = r.get("fmax_mhz")
    placed = r.get("placed") or {}
    cells = next((placed[k]["used"] for k in PLACED_LOGIC_CELLS if k in placed), None)
    e = {"fits": r["fits"], "device": r["device"], "luts": res.get("luts"), "logic_cells_placed": cells,
         "ffs": res.get("ffs"), "brams": res.get("brams"), "sprams": res.get("sprams"), "dsps": res.get("dsps"),
         "fmax_mhz": fmax,
         # the latency at the clock the core runs at on the board (the PLL's output, or the
         # board's oscillator), only when the placed design meets it; and at Fmax, for reference
         "latency_us": round(cycles_mean / r["clock_mhz"], 1)
         if r.get("clock_mhz") and fmax and r.get("meets_board_clock", True) else None,
         "latency_us_at_fmax": round(cycles_mean / fmax, 1) if fmax else None,
         "clock_mhz": r.get("clock_mhz"), "meets_board_clock": r.get("meets_board_clock"),
         "board_clock_mhz": r.get("board_clock_mhz", r.get("clock_mhz")), "pll": r.get("pll"),
         "utilisation": r.get("utilisation"), "over": r.get("over") or {}, "estimate": r.get("estimate", False),
         "design": r.get("design") or "core only (yosys synthesis)" + (f"; board design {r['board_design']}"
                                                                        if r.get("board_design") else ""),
         "seconds": r.get("seconds")}
    if not r["fits"]:
        e["why_no_fmax"] = "does not fit: " + ", ".join(
            f"{k} {v['used']} of {v['available']} ({v['ratio']}x)" for k, v in r["over"].items())
    elif fmax is None:
        e["why_no_fmax"] = "estimate without place-and-route"
    return e


def build_report(root: Path, name: str, cycles: dict, synth: dict[str, dict], stage_seconds: dict,
                 hls: dict | None = None) -> dict:
    """Assemble report.json's content from the stage outputs under ``root`` (build/<name>)."""
    root = Path(root)
    ir = _read(root / "ir" / "metrics.json", "quantize") if (root / "ir" / "metrics.json").is_file() else {}
    if ir.get("source") == "nir":
        # an imported network has no model stage: its float accuracy is the NIR graph's own,
        # and the SOP formula (which needs the float model's firing rates) does not apply
        graph = json.loads((root / "ir" / "graph.json").read_text())
        ticket = {"dataset": graph.get("provenance", {}).get("dataset"),
                  "final_test_accuracy": ir["accuracy_float"],
                  "energy": {"energy_uj": None}, "firing_rate": {}}
    else:
        ticket = _read(root / "ticket" / "metrics.json", "model")
        ir = _read(root / "ir" / "metrics.json", "quantize")
    rtl = _read(root / "rtl" / "manifest.json", "rtl")
    sim = _read(root / "sim" / "results.json", "sim")
    n = sim["images_run"]
    if not n:
        raise ReportError(f"{root / 'sim' / 'results.json'} ran no image")
    per_image = {layer: {k: v / n for k, v in cnt.items()} for layer, cnt in sim["counters_summed"].items()}
    hw = hardware_events_energy(per_image, rtl)
    cyc_mean = sim["cycles"]["mean"]
    rep = {
        "model": name, "dataset": ticket.get("dataset"),
        "accuracy": {"float": ticket.get("final_test_accuracy"), "integer": ir.get("accuracy_integer"),
                     "rtl": sim["accuracy_rtl"], "images": n, "integer_images": ir.get("images")},
        **({"accelerator_prefix": sim["accelerator_prefix"]} if sim.get("accelerator_prefix") else {}),
        "rtl_matches_golden": bool(sim["rtl_matches_golden"]), "images_checked": n,
        "simulator": sim.get("simulator_version"),
        "cycles": {"per_image_mean": cyc_mean, "per_image_min": sim["cycles"]["min"],
                   "per_image_max": sim["cycles"]["max"], "measured_on": "RTL simulation, every image",
                   "ideal_bound_mean": cycles["ideal_bound_mean"],
                   "dense_per_image_mean": cycles["dense_per_image_mean"], "pes": rtl["params"]["pes"],
                   "fifo_depth": rtl["params"].get("fifo_depth"),
                   "over_ideal": cyc_mean / cycles["ideal_bound_mean"],
                   "dense_over_sparse": cycles["dense_per_image_mean"] / cyc_mean,
                   "model_images": cycles["images"], "per_layer": cycles["per_layer"],
                   "datapath": rtl["params"].get("datapath", "lane"),
                   "bound_one_synapse_per_pe": cycles.get("bound_one_synapse_per_pe",
                                                          cycles["ideal_bound_mean"])},
        "energy_uj_per_image": {"theoretical_sop": ticket["energy"]["energy_uj"], "hardware_events": hw["uj"],
                                "hardware_events_per_layer": {k: v["uj"] for k, v in hw["layers"].items()},
                                "hardware_events_by_event_uj": {k: v["by_event_uj"] for k, v in hw["layers"].items()},
                                "pj_per_event": hw["pj_per_event"], "method": hw["method"],
                                "theoretical_sop_method": "the papers' formula (model stage): "
                                                          "SOPs x E_AC + first-layer MACs x E_MAC, 45 nm"},
        "firing_rate": ticket.get("firing_rate", {}),
        "rtl": {"memory_bits": rtl["memory_bits"], "memories": len(rtl["memories"]), "membrane_bits": rtl["membrane_bits"]},
        "boards": {b: _board_entry(r, cyc_mean) for b, r in synth.items()},
        "stage_seconds": stage_seconds,
    }
    if hls is not None:
        rep["hls"] = hls
    skips = residual_cost(root / "ir")
    if skips:
        rep["residual"] = skips
    missing = [k for k in REQUIRED_KEYS if _get(rep, k) is _MISSING]
    if missing:
        raise ReportError(f"report for {name} lacks {', '.join(missing)}")
    return rep


def residual_cost(ir_dir: Path) -> dict | None:
    """A residual IR's skip inputs and the copy neurons its chain form adds to carry them
    (what the accelerator pays for the residuals, docs/IR.md); None for a chain."""
    from ticketforge.ir import copy_neurons, load_graph

    gj = Path(ir_dir) / "graph.json"
    if not gj.is_file() or not any(len(l.get("inputs", ())) > 1 for l in json.loads(gj.read_text()).get("layers", ())):
        return None
    g = load_graph(ir_dir)
    g = accelerator_prefix(g) or g          # a transformer: what its accelerator prefix keeps
    if not any(l.has_skip for l in g.layers):
        return None
    copies = copy_neurons(g)
    neurons = sum(int(np.prod(l.out_shape)) for l in g.layers if l.neuron is not None)
    return {"skip_inputs": [l.name for l in g.layers if l.has_skip], "copy_neurons": copies,
            "copy_neurons_total": sum(copies.values()), "neurons": neurons}


_MISSING = object()


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return _MISSING
        d = d[part]
    return d


def _plots(rep: dict, out: Path) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    pl = rep["cycles"]["per_layer"]
    names = list(pl)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for j, (key, label) in enumerate((("dense", "dense variant"), ("sparse", "event-driven (this design)"),
                                      ("ideal", "ideal bound"))):
        ax.bar(x + (j - 1) * 0.27, [pl[k][key] for k in names], 0.27, label=label)
    ax.set_xticks(x, names, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("cycles per image")
    ax.set_title(f"{rep['model']}: cycles per layer, P = {rep['cycles']['pes']}")
    ax.legend(fontsize=8)
    figs.append(("cycles_per_layer.png", "Cycles per layer: dense vs event-driven vs ideal bound"))
    fig.tight_layout(); fig.savefig(out / figs[-1][0], dpi=110); plt.close(fig)

    by = rep["energy_uj_per_image"]["hardware_events_by_event_uj"]
    layers = list(by)
    events = list(next(iter(by.values())))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bottom = np.zeros(len(layers))
    for ev in events:
        vals = np.array([by[l][ev] for l in layers])
        ax.bar(layers, vals, bottom=bottom, label=ev)
        bottom += vals
    ax.set_ylabel("uJ per image (45 nm estimate)")
    ax.set_title("Energy per layer from the RTL's event counters")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    figs.append(("energy_per_layer.png", "Energy per layer by event (estimate)"))
    fig.tight_layout(); fig.savefig(out / figs[-1][0], dpi=110); plt.close(fig)

    fr = rep["firing_rate"]
    if fr:
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar(list(fr), list(fr.values()))
        ax.set_ylabel("spikes per neuron per step")
        ax.set_title("Firing rate per spiking layer (test split, model stage)")
        ax.tick_params(axis="x", rotation=30)
        figs.append(("firing_rate.png", "Firing rate per layer"))
        fig.tight_layout(); fig.savefig(out / figs[-1][0], dpi=110); plt.close(fig)

    boards = rep["boards"]
    if boards:
        res = ("luts", "ffs", "brams", "dsps")
        fig, ax = plt.subplots(figsize=(8, 3.2))
        for j, b in enumerate(boards):
            u = boards[b].get("utilisation") or {}
            ax.bar(np.arange(len(res)) + j * 0.8 / len(boards), [100 * (u.get(r) or 0) for r in res],
                   0.8 / len(boards), label=f"{b} ({boards[b]['device']})")
        ax.axhline(100, color="k", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(res)) + 0.4 - 0.4 / len(boards), res)
        ax.set_ylabel("% of the device")
        ax.set_title("Resources vs board capacity")
        ax.legend(fontsize=8)
        figs.append(("resources.png", "Resources vs board capacity"))
        fig.tight_layout(); fig.savefig(out / figs[-1][0], dpi=110); plt.close(fig)
    return figs


def _fmt(v, digits=4):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _markdown(rep: dict, figs) -> str:
    a, c, e = rep["accuracy"], rep["cycles"], rep["energy_uj_per_image"]
    lines = [f"# ticketforge report: {rep['model']} ({rep['dataset']})", "",
             "| | |", "|---|---|",
             f"| accuracy float / integer IR / RTL | {a['float']:.4f} / {a['integer']:.4f} / {_fmt(a['rtl'])} "
             f"({a['images']} test images) |",
             *([f"| accelerator prefix | {describe_prefix(rep['accelerator_prefix'])} |"]
               if rep.get("accelerator_prefix") else []),
             f"| RTL equals the golden model | **{rep['rtl_matches_golden']}** on {rep['images_checked']} images "
             f"({rep.get('simulator')}) |",
             f"| cycles per image (measured) | {_fmt(c['per_image_mean'])} (min {_fmt(c['per_image_min'])}, "
             f"max {_fmt(c['per_image_max'])}), P = {c['pes']} |",
             f"| ideal bound / ratio | {_fmt(c['ideal_bound_mean'])} / {c['over_ideal']:.3f}x |",
             f"| dense variant / dense over sparse | {_fmt(c['dense_per_image_mean'])} / {c['dense_over_sparse']:.2f}x |",
             "| energy per image: theoretical SOP | "
             + (f"{e['theoretical_sop']:.4f} uJ"
                + (" (the whole network; the accelerator runs its prefix) |"
                   if rep.get("accelerator_prefix") else " |") if e["theoretical_sop"] is not None else
                "- (an imported network: no model stage to give firing rates) |"),
             f"| energy per image: hardware events (estimate) | {e['hardware_events']:.4f} uJ |",
             f"| on-chip memory | {rep['rtl']['memory_bits'] / 1e6:.2f} Mbit in {rep['rtl']['memories']} memories |",
             *([f"| residual skip inputs | {', '.join(rep['residual']['skip_inputs'])}, carried on the accelerator by "
                f"{_fmt(rep['residual']['copy_neurons_total'])} copy neurons (the network's own: "
                f"{_fmt(rep['residual']['neurons'])}) |"] if "residual" in rep else []),
             "", "## Boards", "",
             "| board | device | fits | LUTs | logic cells placed | FFs | BRAMs | SPRAM | DSPs | Fmax MHz | "
             "core clock MHz | latency us | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in rep["boards"].items():
        note = r.get("why_no_fmax", "") or r["design"]
        if r.get("meets_board_clock") is False:
            note += f"; Fmax below the core's {r['clock_mhz']:g} MHz clock"
        if r.get("pll"):
            note += f"; core clock from the PLL ({r['board_clock_mhz']:g} MHz oscillator)"
        lines.append(f"| {b} | {r['device']} | {r['fits']} | {_fmt(r['luts'])} | {_fmt(r.get('logic_cells_placed'))} | "
                     f"{_fmt(r['ffs'])} | {_fmt(r['brams'])} | {_fmt(r.get('sprams'))} | {_fmt(r['dsps'])} | "
                     f"{_fmt(r['fmax_mhz'])} | {_fmt(r.get('clock_mhz'))} | "
                     f"{_fmt(r['latency_us'])} | {note} |")
    lines += ["", "## Stage seconds", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rep["stage_seconds"].items()]
    if "netlist" in rep:
        n = rep["netlist"]
        bram = {k: v for k, v in n["cells"].items() if k in ("DP16KD", "SB_RAM40_4K", "SB_SPRAM256KA")}
        lines += ["", "## Synthesized netlist", "",
                  f"The {n['board']} ({n['family']}) netlist, {', '.join(f'{v} {k}' for k, v in bram.items()) or 'no block RAM'}, "
                  f"on {n['simulator']} with the cell models: **{n['agree']}/{n['images']}** images identical to the "
                  f"golden model (scores, cycles, counters); cycles equal to the model: {n['cycles_equal_model']}."]
    if "hls" in rep:
        lines += _hls_markdown(rep["hls"], a)
    lines += ["", "Energies are estimates: " + e["method"] + ".", ""]
    lines += [f"![{t}]({f})" for f, t in figs]
    return "\n".join(lines) + "\n"


def _hls_markdown(h: dict, acc: dict) -> list[str]:
    lines = ["", "## HLS path (hls4ml, C simulation)", "",
             "| | |", "|---|---|",
             f"| project | hls4ml {h['backend']} backend, part {h['part']}, spiking extension layers |",
             f"| equals the golden model | **{h['matches_golden']}**: {h['agree']}/{h['images']} images "
             f"({h['compared']}) |",
             f"| accuracy (C simulation) | {h['accuracy_hls']:.4f} (RTL {_fmt(acc['rtl'])}) |"]
    w = h.get("synapse_loop_iterations_per_image")
    if w:
        lines += [f"| synapse-loop iterations per image | {w['kept']:,} (dense loops: {w['dense']:,}, "
                  f"{w['dense_over_kept']:.2f}x); live neurons {w['live_neurons']:,} of {w['neurons']:,} |"]
    lines += [f"| seconds | compile {h['seconds']['write_compile']:.0f}, C simulation {h['seconds']['csim']:.0f} "
              f"on {h['jobs']} processes ({h['seconds_per_image']:.3f} s per image per process) |",
              f"| verified here / not | {h['verified']} / {h['not_verified']} |"]
    b = h.get("baseline")
    if b:
        lines += [f"| baseline {b['name']} (BNN-BinAct, brevitas -> QONNX -> hls4ml) | accuracy: torch "
                  f"{b['accuracy_torch']:.4f}, brevitas {b['accuracy_brevitas']:.4f}, hls4ml C-sim "
                  f"{b['accuracy_hls']:.4f} on {b['images']} images; hls4ml vs brevitas: predictions agree on "
                  f"{b['prediction_agreement_hls_brevitas']:.4f}, scores max abs difference "
                  f"{b['score_max_abs_diff']:.4g} |"]
    return lines


def _html(md: str, figs, title: str) -> str:
    # a small, dependency-free rendering of the markdown tables and images
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(x.strip()).replace("**", "") for x in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            t, f = line[2:].split("](")
            body.append(f'<p><img src="{html.escape(f[:-1])}" alt="{html.escape(t)}"></p>')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:960px;margin:2em auto}td{border:1px solid #ccc;padding:2px 6px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(rep: dict, root: Path) -> list[Path]:
    root = Path(root)
    (root / "report.json").write_text(json.dumps(rep, indent=1))
    figs = _plots(rep, root)
    md = _markdown(rep, figs)
    (root / "report.md").write_text(md)
    (root / "report.html").write_text(_html(md, figs, f"ticketforge report: {rep['model']}"))
    return [root / "report.json", root / "report.md", root / "report.html"] + [root / f for f, _ in figs]
