"""The event-driven, neuron-per-PE accelerator, generated with Amaranth from an IR.

One image at a time: ``start``, then the image's pixels on the ``pixels`` stream (an
``events`` input: each timestep's AER words on the ``aer`` stream, `rtl.aer`), then the
class scores on the ``scores`` stream, then a one-cycle ``done``.  The layers run one
after another on one array of P PEs, every timestep; spikes between layers stay on chip
in event queues.  The blocks, each a ``wiring.Component`` of `rtl/lane/` with its own
reference test (see ``cycles.py`` for the exact cycle count of what they do together)::

    pixels -> PixelLoader --input queue--+
                                         +--> EventReader --FIFO per PE--> PEArray --> scores
    PEArray --spike queue per PE---------+         |                     (LanePE x P)
    OrPool  --pooled queue---------------+         +--FIFO 0--> OrPool
    Schedule (the state machine: LOAD, ACC, UPD, POOL, NEXT_T, OUT)
    StatusBlock (cycle count and per-layer counters -> status_addr / status_data)

- ``LOAD``: `loader.PixelLoader` writes the non-zero pixels (all of them when dense) to the
  input event queue, which every timestep's first layer reads again (direct encoding).
- ``ACC``: `reader.EventReader` broadcasts the layer's source events with their row
  pointers into every PE's event FIFO; each `pe.LanePE` walks its own synapse words, one
  kept synapse per cycle, and adds ``+-value << input_shift`` to the target membrane.
- ``UPD``: every PE steps through its live slots, one per cycle: the integer LIF update of
  docs/IR.md (`neuron.py`) and a spike event into the PE's spike queue.
- ``POOL``: `pool.OrPool` OR-merges the conv's spikes into the pooled queue.
- ``OUT``: one class score per cycle on the output stream.

A status block exposes counters (``status_addr`` -> ``status_data``, registered: the word
of an address is there two cycles later, and only while not busy): address 0 is the cycle
count of the last image, then 6 per layer (``COUNTERS``).
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ticketforge.ir.schema import Graph
from ticketforge.rtl.datapath import check_input
from ticketforge.rtl.cycles import COUNTERS
from ticketforge.rtl.aer import aer_layout
from ticketforge.rtl.lane.loader import EventLoader, PixelLoader
from ticketforge.rtl.lane.pe import PEArray
from ticketforge.rtl.lane.plan import (COUNTER_BITS, MEMORY_STYLES, SMALL_ROM_BITS, LanePlan, bram18_blocks, fan_in,
                                       field_map, lane_plan, sbits, status_map, u_range, ubits)
from ticketforge.rtl.lane.pool import OrPool
from ticketforge.rtl.lane.reader import EventReader
from ticketforge.rtl.lane.schedule import Schedule
from ticketforge.rtl.lane.status import StatusBlock

__all__ = ["Accelerator", "core_members", "core_memory", "const_table", "status_registers", "status_map", "fan_in", "u_range", "bram18_blocks", "MEMORY_STYLES",
           "COUNTER_BITS"]


def core_members(g: Graph, score_bits: int, status_words: int, trace_lanes: int, event_width: int,
                 trace: bool, load_layout=None) -> dict:
    """The accelerator's outside, whatever its datapath: the pixel stream (an ``events``
    input: the ``aer`` stream of `rtl.aer`), the score stream, start, busy, done, the status
    block, and with ``trace`` the spike-trace port of ``trace_lanes`` lanes of
    ``event_width``-bit (c, y, x) events (the testbench and board top rely on it); with a
    ``load_layout`` (runtime weights) the ``load`` stream of memory words."""
    sig = {
        **({"aer": In(stream.Signature(aer_layout(g.input.shape)))} if g.input.events else
           {"pixels": In(stream.Signature(unsigned(g.input.bits)))}),
        "scores": Out(stream.Signature(signed(score_bits))),
        "start": In(1), "busy": Out(1), "done": Out(1),
        "status_addr": In(range(max(2, status_words))),
        "status_data": Out(COUNTER_BITS),
    }
    if load_layout is not None:
        # (ready is an output the core drives high: a constant port cannot be a Verilog port)
        sig["load"] = In(stream.Signature(load_layout))
    if trace:
        sig.update({"trace_valid": Out(trace_lanes), "trace_event": Out(trace_lanes * event_width),
                    "trace_layer": Out(range(len(g.layers))), "trace_t": Out(range(max(2, g.T)))})
    return sig


def const_table(values, shape=None) -> Array:
    """Per-layer (or per-group) constants for a layer-at-a-time datapath, to index with a
    signal: an ``Array`` of ``Const``s, in ``shape`` or the narrowest that holds them all."""
    vals = [int(v) for v in values]
    shape = shape or (signed(sbits(min(vals), max(vals))) if min(vals) < 0 else unsigned(ubits(max(vals))))
    return Array(Const(v, shape) for v in vals)


def core_memory(m: Module, core, name: str, shape, depth: int, init=(), rom: bool = False, comb_read: bool = False,
                load_port: bool = True):
    """A memory of a layer-at-a-time datapath (bitpar, rowstream), added to ``m`` and to the
    inventory ``core.memories``: a read-only table (``rom``) of ``init``, or with runtime
    weights, when ``name`` is one of ``core.LOADABLE``, a RAM that starts empty and that the
    ``load`` stream writes (``load_port=False``: the caller wires that write itself, as a
    single-port RAM does).  ``core.memory_style`` becomes the ``ram_style`` attribute; "auto"
    puts a read-only table up to `SMALL_ROM_BITS` in logic, and ``comb_read`` (a read in
    the same cycle) keeps a memory out of block RAM."""
    width = shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width
    loadable = core.runtime and name in core.LOADABLE
    if loadable:                    # written through the load port: a RAM, empty at start
        init, rom = (), False
    style = core.memory_style
    if comb_read and style == "block":      # a block RAM has no read in the same cycle
        style = "auto"
    if style == "auto" and rom and width * max(1, depth) <= SMALL_ROM_BITS:
        style = "logic"
    attrs = {} if style == "auto" else {"ram_style": style}
    mem = Memory(shape=shape, depth=max(1, depth), init=list(init), attrs=attrs)
    m.submodules[name] = mem
    core.memories.append({"name": name, "width": width, "depth": max(1, depth),
                          "bits": width * max(1, depth), "style": style, "rom": rom}
                         | ({"loadable": True} if loadable else {}))
    if loadable and load_port:
        load = core.load
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(load.payload.addr), wp.data.eq(load.payload.data[:width]),
                     wp.en.eq(load.valid & (load.payload.memory == core.load_index[name]))]
    return mem


def status_registers(m: Module, core, clear, layer, increments: dict[str, dict], names: tuple[str, ...]) -> None:
    """The status block of a layer-at-a-time datapath (bitpar, rowstream): the cycle count of
    the image (every ``busy`` cycle) and per layer the counters ``names``, each adding its
    ``increments[layer name][name]`` in the cycles its layer (in the dict's order) is the
    current one (``layer``);
    ``clear`` zeroes them all (an image's start).  ``core.status_data`` answers
    ``core.status_addr`` a cycle later (`cycles.STATUS_LATENCY`): address 0 the cycles, then
    the counters in layer order."""
    cycles = Signal(COUNTER_BITS, name="cycles")
    counters = [[Signal(COUNTER_BITS, name=f"{layer_name}_{c}") for c in names] for layer_name in increments]
    incs = list(increments.values())
    with m.If(clear):
        m.d.sync += [cycles.eq(0)] + [c.eq(0) for cs in counters for c in cs]
    with m.Else():
        with m.If(core.busy):
            m.d.sync += cycles.eq(cycles + 1)
        for li, cs in enumerate(counters):
            with m.If(layer == li):
                for j, c in enumerate(names):
                    m.d.sync += cs[j].eq(cs[j] + incs[li][c])
    words = [cycles] + [c for cs in counters for c in cs]
    addr_q = Signal.like(core.status_addr)
    m.d.sync += [addr_q.eq(core.status_addr), core.status_data.eq(Array(words)[addr_q])]


class Accelerator(wiring.Component):
    """Parameters: the integer IR ``graph``, the number of PEs ``pes``, ``dense`` for the
    no-skipping reference, ``memory_style`` (MEMORY_STYLES), ``fifo_depth`` of each PE's
    event FIFO (default `cycles.default_fifo_depth`), ``trace`` to add the spike-trace debug
    port (one lane per PE: ``trace_valid`` bit p set when PE p emitted a spike this cycle,
    ``trace_event`` its (c, y, x) packed as ``ev_xyz``, ``trace_layer`` and ``trace_t``).
    ``weights="runtime"``: the memories start empty and the ``load`` stream writes them, one
    word (memory index, address, data: ``loadable``) per valid cycle, while the core is
    idle and before the first image; ``load_contents()`` is what they must hold.

    ``plan`` (`lane.plan.LanePlan`) holds the static design: widths, memory bases, and the
    memory inventory ``memories``."""

    def __new__(cls, graph: Graph, pes: int, dense: bool = False, trace: bool = False,
                memory_style: str = "auto", fifo_depth: int | None = None, weights: str = "baked"):
        # The configuration is checked and mapped before the Elaboratable exists: Amaranth
        # warns about every elaboratable that is created and never elaborated, and a
        # refused configuration would otherwise leave one behind.
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be an ticketforge IR Graph, got {type(graph).__name__}")
        check_input(graph, "lane", dense)
        if not isinstance(dense, bool) or not isinstance(trace, bool):
            raise TypeError(f"dense and trace must be bools, got {dense!r}, {trace!r}")
        plan = lane_plan(graph, pes, dense, memory_style, fifo_depth, weights)
        self = super().__new__(cls, src_loc_at=1)           # (the warning's location: the caller)
        self.plan = plan
        return self

    def __init__(self, graph: Graph, pes: int, dense: bool = False, trace: bool = False,
                 memory_style: str = "auto", fifo_depth: int | None = None, weights: str = "baked"):
        plan: LanePlan = self.plan            # planned, and fifo_depth checked, in __new__
        self.graph, self.prog, self.P, self.dense, self.trace = graph, plan.prog, pes, dense, trace
        self.memory_style, self.fifo_depth, self.weights = memory_style, plan.fifo_depth, weights
        self.memories = plan.memories
        self.acc_bits, self.score_bits, self.status = plan.acc_bits, plan.score_bits, plan.status
        self.ev_xyz = field_map(plan.ev_xyz)
        self.loadable, self.load_layout = plan.loadable, plan.load_layout
        super().__init__(core_members(graph, plan.score_bits, len(plan.status), pes, self.ev_xyz.width, trace,
                                      plan.load_layout if plan.runtime else None))

    def load_contents(self) -> list[tuple[dict, list[int]]]:
        """Runtime weights: each loadable memory with the words it must hold."""
        return self.plan.load_contents()

    def elaborate(self, platform):
        m = Module()
        plan, P = self.plan, self.P
        m.submodules.schedule = sched = Schedule(plan)
        m.submodules.loader = loader = EventLoader(plan) if plan.graph.input.events else PixelLoader(plan)
        m.submodules.reader = reader = EventReader(plan)
        m.submodules.pes = pes = PEArray(plan)
        m.submodules.pool = pool = OrPool(plan)
        inc_bits = ubits(4 * P + 4)
        m.submodules.status = status = StatusBlock(len(plan.graph.layers), plan.counter_layers, inc_bits)

        # outside
        if plan.graph.input.events:
            wiring.connect(m, wiring.flipped(self.aer), loader.aer)
        else:
            wiring.connect(m, wiring.flipped(self.pixels), loader.pixels)
        m.d.comb += [sched.start.eq(self.start), self.busy.eq(sched.busy), self.done.eq(sched.done),
                     self.scores.payload.eq(pes.score), self.scores.valid.eq(sched.scores_valid),
                     sched.scores_ready.eq(self.scores.ready), pes.score_index.eq(sched.score_index),
                     status.status_addr.eq(self.status_addr), self.status_data.eq(status.status_data)]
        # the schedule's phases
        layer = sched.layer
        m.d.comb += [loader.active.eq(sched.load), loader.clear.eq(sched.image_start | sched.step_start),
                     sched.loaded.eq(loader.loaded),
                     reader.layer.eq(layer), reader.start.eq(sched.reader_start),
                     sched.reader_idle.eq(reader.idle), sched.head_level.eq(reader.head_level),
                     pes.layer.eq(layer), pes.last_t.eq(sched.last_t), pes.acc_run.eq(sched.acc_run),
                     pes.upd_start.eq(sched.upd_start), pes.upd_run.eq(sched.upd_run),
                     pes.spk_clear.eq(sched.spk_clear), pes.clear_scores.eq(sched.image_start),
                     sched.pe_idle.eq(pes.idle), sched.upd_last.eq(pes.upd_last),
                     pool.layer.eq(layer), pool.run.eq(sched.pool_run), pool.enter.eq(sched.pool_enter),
                     pool.sweep.eq(sched.sweep_run), pool.sweep_start.eq(sched.sweep_start),
                     sched.sweep_last.eq(pool.sweep_last)]
        # the source queues, read by the reader at one address
        m.d.comb += [loader.addr.eq(reader.addr), reader.in_data.eq(loader.data), reader.in_count.eq(loader.count),
                     pool.addr.eq(reader.addr), reader.pool_data.eq(pool.data), reader.pool_count.eq(pool.count),
                     pes.spk_addr.eq(reader.addr)]
        for p in range(P):
            m.d.comb += [reader.spk_data[p].eq(pes.spk_data[p]), reader.spk_count[p].eq(pes.spk_count[p])]
        wiring.connect(m, reader.read_back, pool.read_back)
        if plan.runtime:
            m.d.comb += self.load.ready.eq(1)
            for dst in (reader.load, pes.load):
                m.d.comb += [dst.valid.eq(self.load.valid), dst.payload.eq(self.load.payload)]
        # every PE's event FIFO; in a POOL phase the pool takes FIFO 0's events and all
        # FIFOs are popped together (they hold the same events)
        for p in range(P):
            src, dst = reader.events[p], pes.events[p]
            m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload),
                         src.ready.eq(dst.ready | pool.events.ready)]
        m.d.comb += [pool.events.valid.eq(reader.events[0].valid), pool.events.payload.eq(reader.events[0].payload.ev)]
        # the status block
        index = {name: j for j, name in enumerate(COUNTERS)}
        m.d.comb += [status.layer.eq(layer), status.busy.eq(sched.busy), status.clear.eq(sched.image_start),
                     status.latch.eq(sched.last_score),
                     status.increments[index["weight_reads"]].eq(pes.weight_reads),
                     status.increments[index["accumulates"]].eq(pes.accumulates),
                     status.increments[index["membrane_reads"]].eq(pes.membrane_accesses),
                     status.increments[index["membrane_writes"]].eq(pes.membrane_accesses),
                     status.increments[index["neuron_updates"]].eq(pes.neuron_updates),
                     status.increments[index["spikes"]].eq(pes.spike_count + pool.pushed)]
        if self.trace:
            m.d.comb += [self.trace_valid.eq(pes.spikes), self.trace_event.eq(pes.neurons),
                         self.trace_layer.eq(layer), self.trace_t.eq(sched.t)]
        return m
