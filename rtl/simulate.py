"""Running the generated accelerator in Amaranth's own simulator (no Verilog needed):
the unit-level check of the RTL against the golden interpreter and the cycle model.
The Verilog regression on Icarus and Verilator lives in `sim/`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl.aer import aer_words
from ticketforge.rtl.cycles import STATUS_LATENCY

__all__ = ["RTLResult", "simulate"]


@dataclass
class RTLResult:
    scores: list[int]
    cycles: int
    counters: dict[str, dict[str, int]]                       # layer -> counter -> value
    spikes: dict[str, np.ndarray] = field(default_factory=dict)   # layer -> uint8 [T, *out] (trace=True)


def simulate(acc: Accelerator, images: np.ndarray, max_cycles: int = 10_000_000, load=None) -> list[RTLResult]:
    """Run ``images`` (pixel codes [N, C, H, W], or an ``events`` input's binary frames [N, T,
    C, H, W], sent as AER words) one after another; with ``acc.trace`` the
    spike trains are rebuilt from the trace port.  ``max_cycles`` per image guards against
    a hang (an error, not a wrong answer).  A design with runtime weights gets every memory
    word through its ``load`` port first (``load`` may hold other contents: a list of
    (memory, words) as the accelerator's ``load_contents()`` returns)."""
    g = acc.graph
    results: list[RTLResult] = []
    xyz = acc.ev_xyz
    runtime = getattr(acc, "weights", "baked") == "runtime"
    contents = (load if load is not None else acc.load_contents()) if runtime else []

    async def bench(ctx):
        for spec, words in contents:
            ctx.set(acc.load.payload.memory, spec["index"])
            for a, w in enumerate(words):
                ctx.set(acc.load.payload.addr, a)
                ctx.set(acc.load.payload.data, int(w))
                ctx.set(acc.load.valid, 1)
                await ctx.tick()
        if contents:
            ctx.set(acc.load.valid, 0)
            await ctx.tick()
        for img in np.asarray(images):
            spikes = {l.name: np.zeros((g.T,) + tuple(l.out_shape), np.uint8)
                      for l in g.layers if l.kind in ("conv", "linear")} if acc.trace else {}
            ctx.set(acc.start, 1)
            await ctx.tick()
            ctx.set(acc.start, 0)
            port = acc.aer if g.input.events else acc.pixels
            payload = port.payload.as_value() if g.input.events else port.payload
            flat = aer_words(img) if g.input.events else img.reshape(-1)
            ctx.set(acc.scores.ready, 1)
            scores, k = [], 0
            # one loop for the input words and the outputs: an event input's words go in at
            # every timestep, while the layers before it spike
            for _ in range(max_cycles * g.T):
                if k < len(flat):
                    ctx.set(port.valid, 1)
                    ctx.set(payload, int(flat[k]))
                else:
                    ctx.set(port.valid, 0)
                if ctx.get(acc.scores.valid):
                    scores.append(ctx.get(acc.scores.payload))
                if acc.trace and ctx.get(acc.trace_valid):
                    _collect(ctx, acc, xyz, spikes)
                if ctx.get(acc.done):
                    break
                ready = k < len(flat) and ctx.get(port.ready)   # a word is taken on an edge where ready is high
                await ctx.tick()
                k += bool(ready)
            else:
                raise RuntimeError(f"the accelerator did not finish an image in {max_cycles} cycles (it took {k} "
                                   f"of {len(flat)} input words)")
            status = []
            for a in range(len(acc.status)):
                ctx.set(acc.status_addr, a)
                await ctx.tick().repeat(STATUS_LATENCY)
                status.append(ctx.get(acc.status_data))
            counters: dict[str, dict[str, int]] = {}
            for (layer, name), value in zip(acc.status[1:], status[1:]):
                counters.setdefault(layer, {})[name] = int(value)
            results.append(RTLResult([int(s) for s in scores], int(status[0]), counters, spikes))
            await ctx.tick()

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def _collect(ctx, acc: Accelerator, xyz, spikes: dict) -> None:
    g = acc.graph
    valid = ctx.get(acc.trace_valid)
    layer = g.layers[ctx.get(acc.trace_layer)]
    t = ctx.get(acc.trace_t)
    word = ctx.get(acc.trace_event)
    for p in range(acc.P):
        if valid >> p & 1:
            lane = word >> (p * xyz.width)
            c = lane >> xyz.offsets["c"] & ((1 << xyz.widths["c"]) - 1)
            y = lane >> xyz.offsets["y"] & ((1 << xyz.widths["y"]) - 1)
            x = lane >> xyz.offsets["x"] & ((1 << xyz.widths["x"]) - 1)
            idx = (t, c, y, x) if layer.kind == "conv" else (t, c)
            spikes[layer.name][idx] = 1
