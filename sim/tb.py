"""cocotb testbench of the generated accelerator (this module runs inside the simulator).

The host side (`sim/runner.py`) writes a *job*: the images, and for each the expected
class scores (golden interpreter), cycles and status counters (cycle model, proven equal
to the golden interpreter's events), and for a subset the expected per-layer spike
trains.  The pieces here are small and typed:

- :class:`TB` owns reset (the clock runs in the HDL: no Python or VPI write per edge);
- :class:`WeightLoader` writes a runtime-weights design's memories from its load image;
- :class:`InputDriver` streams an image into ``pixels``, or an event sample's AER words
  (`rtl.aer`) into ``aer``, timestep by timestep (valid/ready);
- :class:`ScoreMonitor` collects the class scores from ``scores``;
- :class:`StatusBlock` reads the counters after ``done``;
- :class:`TraceMonitor` rebuilds spike trains from the trace port (traced images only:
  it is the one piece that wakes Python every cycle);
- :class:`Scoreboard` compares with the reference and records mismatches.

Between ``start`` and ``done`` Python only waits on edges of ``done`` / ``scores__valid``,
so the simulator runs at its own speed.  Results go to the job's ``results.json``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from ticketforge.rtl.cycles import STATUS_LATENCY

JOB_ENV = "TICKETFORGE_SIM_JOB"


class TB:
    """Reset of the DUT; its clock runs inside the simulation top (`build.clocked_top`)."""

    def __init__(self, dut):
        self.dut = dut

    async def start(self):
        d = self.dut
        d.rst.value = 1
        d.start.value = 0
        (d.aer__valid if hasattr(d, "aer__valid") else d.pixels__valid).value = 0
        d.scores__ready.value = 0
        d.status_addr.value = 0
        if hasattr(d, "load__valid"):            # runtime weights: no load during reset
            d.load__valid.value = 0
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)


class WeightLoader:
    """Runtime weights: every word of the load image (``rtl/weights.bin``) through the core's
    ``load`` port, one per cycle, before the first image."""

    def __init__(self, dut, meta: dict):
        self.dut, self.meta = dut, meta

    async def load(self) -> int:
        from ticketforge.rtl.load_image import read_load_image

        d, off = self.dut, self.meta["load_layout"]["offsets"]
        image = read_load_image(Path(self.meta["weights_file"]))
        d.load__valid.value = 1
        for sec in image.sections:
            for a, w in enumerate(sec.words):
                d.load__payload.value = sec.index << off["memory"] | a << off["addr"] | w << off["data"]
                await RisingEdge(d.clk)
        d.load__valid.value = 0
        await RisingEdge(d.clk)
        return image.words


class InputDriver:
    def __init__(self, dut, events: bool):
        self.dut, self.events = dut, events
        prefix = "aer" if events else "pixels"
        self.valid, self.payload, self.ready = (getattr(dut, f"{prefix}__{k}") for k in ("valid", "payload", "ready"))

    async def send(self, sample: np.ndarray) -> None:
        """Pulse start, then one word per cycle while ready: an image's pixels (the design
        takes them back to back), or an event sample's AER words, whose ``ready`` drops
        while the layers run a timestep (Python then sleeps until it rises again)."""
        from ticketforge.rtl.aer import aer_words

        d = self.dut
        words = aer_words(sample) if self.events else sample.reshape(-1).tolist()
        await FallingEdge(d.clk)
        d.start.value = 1
        await FallingEdge(d.clk)
        d.start.value = 0
        self.valid.value = 1
        i = 0
        while i < len(words):
            self.payload.value = int(words[i])
            await ReadOnly()                       # ready is a function of the state: stable here
            if not self.ready.value:
                await RisingEdge(self.ready)
                await FallingEdge(d.clk)
                continue
            await RisingEdge(d.clk)
            i += 1
            await FallingEdge(d.clk)
        self.valid.value = 0


class ScoreMonitor:
    def __init__(self, dut, classes: int, bits: int):
        self.dut, self.classes, self.bits = dut, classes, bits

    async def collect(self) -> list[int]:
        d = self.dut
        d.scores__ready.value = 1
        out: list[int] = []
        await RisingEdge(d.scores__valid)          # no Python per cycle until the scores come
        await ReadOnly()
        while True:
            if d.scores__valid.value:
                out.append(d.scores__payload.value.to_signed())
            if len(out) == self.classes:
                break
            await RisingEdge(d.clk)
            await ReadOnly()
        return out


class StatusBlock:
    def __init__(self, dut, size: int):
        self.dut, self.size = dut, size

    async def read_all(self) -> list[int]:
        vals = []
        for a in range(self.size):
            await FallingEdge(self.dut.clk)
            self.dut.status_addr.value = a
            for _ in range(STATUS_LATENCY):
                await RisingEdge(self.dut.clk)
            await ReadOnly()
            vals.append(int(self.dut.status_data.value))
        await FallingEdge(self.dut.clk)           # leave the read-only phase: the next image drives inputs
        return vals


class TraceMonitor:
    """Samples the trace port every cycle while the accelerator is busy."""

    def __init__(self, dut, meta: dict):
        self.dut, self.meta = dut, meta
        self.P = meta["pes"]
        f = meta["trace_fields"]
        self.w, self.off, self.wid = f["width"], f["offsets"], f["widths"]

    async def run(self, spikes: dict[str, np.ndarray]) -> None:
        d, layers = self.dut, self.meta["layers"]
        await RisingEdge(d.busy)
        while True:
            await RisingEdge(d.clk)
            await ReadOnly()
            if not d.busy.value:
                return
            tv = d.trace_valid.value
            if not tv.is_resolvable:
                raise AssertionError(f"trace_valid {tv} layer {d.trace_layer.value} t {d.trace_t.value} at {cocotb.utils.get_sim_time('ns')}")
            valid = int(tv)
            if not valid:
                continue
            layer = layers[int(d.trace_layer.value)]
            t = int(d.trace_t.value)
            bits = str(d.trace_event.value)       # MSB first; idle lanes may hold X (unread ROM words)
            width = len(bits)
            for p in range(self.P):
                if valid >> p & 1:
                    lane = int(bits[width - (p + 1) * self.w:width - p * self.w], 2)
                    c, y, x = (lane >> self.off[k] & ((1 << self.wid[k]) - 1) for k in ("c", "y", "x"))
                    idx = (t, c, y, x) if layer["kind"] == "conv" else (t, c)
                    spikes[layer["name"]][idx] = 1


@dataclass
class Scoreboard:
    status: list[dict]
    mismatches: list[dict] = field(default_factory=list)
    agree: int = 0

    def check(self, i: int, scores, exp_scores, cycles, exp_cycles, counters, exp_counters,
              spikes=None, exp_spikes=None) -> bool:
        bad = []
        if list(scores) != list(exp_scores):
            bad.append({"image": i, "what": "scores", "rtl": list(map(int, scores)),
                        "golden": list(map(int, exp_scores))})
        if cycles != exp_cycles:
            bad.append({"image": i, "what": "cycles", "rtl": int(cycles), "model": int(exp_cycles)})
        for s, a, b in zip(self.status[1:], counters[1:], exp_counters[1:]):
            if a != b:
                bad.append({"image": i, "what": "counter", "layer": s["layer"], "counter": s["counter"],
                            "rtl": int(a), "model": int(b)})
        for name, sp in (spikes or {}).items():
            diff = np.argwhere(sp != exp_spikes[name])
            if len(diff):
                t, *neuron = diff[0].tolist()
                bad.append({"image": i, "what": "spikes", "layer": name, "timestep": t, "neuron": neuron,
                            "rtl": int(sp[tuple(diff[0])]), "golden": int(exp_spikes[name][tuple(diff[0])]),
                            "differing": int(len(diff))})
        self.mismatches += bad
        self.agree += not bad
        return not bad


@cocotb.test()
async def run_job(dut):
    job = Path(os.environ[JOB_ENV])
    meta = json.loads((job / "job.json").read_text())
    data = np.load(job / "job.npz")
    images, exp_scores = data["images"], data["scores"]
    exp_cycles, exp_counters = data["cycles"], data["counters"]
    traced = set(int(i) for i in data["traced"])
    tb = TB(dut)
    await tb.start()
    if "weights_file" in meta:
        await WeightLoader(dut, meta).load()
    driver, status = InputDriver(dut, meta.get("events", False)), StatusBlock(dut, len(meta["status"]))
    monitor = ScoreMonitor(dut, exp_scores.shape[1], meta["score_bits"])
    board = Scoreboard(meta["status"])
    tracer = TraceMonitor(dut, meta) if meta["trace"] else None
    out_scores, out_cycles, out_counters = [], [], []
    t0 = time.perf_counter()
    stop_at_first = meta.get("stop_at_first_mismatch", True)
    for i, img in enumerate(images):
        spikes = None
        trace_task = None
        if tracer is not None and i in traced:
            spikes = {l["name"]: np.zeros([meta["T"]] + l["out_shape"], np.uint8)
                      for l in meta["layers"] if l["kind"] in ("conv", "linear")}
            trace_task = cocotb.start_soon(tracer.run(spikes))
        scores_task = cocotb.start_soon(monitor.collect())
        await driver.send(img)
        scores = await scores_task
        await RisingEdge(dut.done)
        if trace_task is not None:
            await trace_task
        counters = await status.read_all()
        exp_sp = {k[len("spikes/"):]: data[k][sorted(traced).index(i)] for k in data.files
                  if k.startswith("spikes/")} if spikes is not None else None
        ok = board.check(i, scores, exp_scores[i], counters[0], exp_cycles[i], counters, exp_counters[i],
                         spikes, exp_sp)
        out_scores.append(scores)
        out_cycles.append(counters[0])
        out_counters.append(counters)
        if meta.get("progress"):
            # the host's progress bar polls this file (one small write per image)
            (job / "progress").write_text(str(len(out_scores)))
        if not ok and stop_at_first:
            break
    wall = time.perf_counter() - t0
    (job / "results.json").write_text(json.dumps({
        "images_run": len(out_scores), "agree": board.agree, "mismatches": board.mismatches,
        "scores": out_scores, "cycles": out_cycles, "counters": out_counters,
        "traced": sorted(i for i in traced if i < len(out_scores)), "wall_seconds": wall,
    }))
    assert not board.mismatches, f"{len(board.mismatches)} mismatch(es); first: {board.mismatches[0]}"
