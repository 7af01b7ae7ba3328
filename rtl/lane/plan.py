"""The lane accelerator's static plan: everything decided from the IR and the PE mapping
before any hardware exists.

- the word layouts (`amaranth.lib.data` layouts, least significant field first): events,
  queue words, row pointers, synapse words, lanes, slot / lookup / group / parameter words,
  the event FIFOs' entries;
- widths: the accumulator (`u_range`, with the membrane memory split in a low and a high
  part, `LanePlan.membrane_split`), scores, slots, local indices;
- per-PE memory bases and depths (pruned neurons take nothing), the row-pointer table;
- every memory's shape, depth and synthesis style (`LanePlan.memories`: the inventory the
  rtl manifest and the synthesis report read, available without elaborating anything);
- every memory's contents (`row_words`, `rowptr_words`, `pe_words`).

The components of `rtl/lane/` build their hardware from one `LanePlan`; `rtl/accel.py`
joins them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Const, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from ticketforge.ir.schema import Graph, IRError, Neuron
from ticketforge.rtl.cycles import COUNTERS, check_fifo_depth, default_fifo_depth
from ticketforge.rtl.program import LANE_FIELDS, Program, map_graph

__all__ = ["LanePlan", "lane_plan", "load_port", "ubits", "sbits", "fan_in", "u_range", "bram18_blocks", "status_map", "pack",
           "field_map", "FieldMap", "MEMORY_STYLES", "WEIGHTS", "SMALL_ROM_BITS", "COUNTER_BITS"]

# How synthesis should map the memories (the `ram_style` attribute yosys' memory mapper
# honours): "auto" lets it choose, "block" asks for block RAM, "logic" for LUTs/FFs.
MEMORY_STYLES = ("auto", "block", "logic")
# Where the network's numbers live: "baked" as memory initial values (a new ticket is a new
# bitstream), or "runtime": every memory with contents is written through the core's
# ``load`` port before the first image (`LanePlan.loadable`)
WEIGHTS = ("baked", "runtime")
# "auto" still puts read-only tables up to this size in logic: a block RAM holds 4-18 Kbit,
# and a 34-entry parameter table would take a whole one (the UP5K has 30)
SMALL_ROM_BITS = 2048
COUNTER_BITS = 32


def ubits(n: int) -> int:
    """Bits of an unsigned value up to n (at least 1)."""
    return max(1, int(n).bit_length())


def sbits(lo: int, hi: int) -> int:
    """Bits of a signed value in [lo, hi]."""
    return max(ubits(max(hi, 0)), ubits(max(-lo - 1, 0))) + 1


def _struct(**fields) -> data.StructLayout:
    """A struct layout of unsigned fields given by width (or by shape), first field lowest."""
    return data.StructLayout({k: unsigned(v) if isinstance(v, int) else v for k, v in fields.items()})


def pack(layout: data.StructLayout, **values) -> int:
    """A word of ``layout`` as an integer (memory contents), each field's value checked to fit
    its width (either signedness: a bias is stored as its two's complement)."""
    for k, v in values.items():
        w = layout[k].width
        if not -(1 << w) < int(v) < (1 << w):
            raise IRError(f"value {int(v)} does not fit the {w}-bit field {k!r}")
    return Const.cast(layout.const({k: int(v) for k, v in values.items()})).value


@dataclass(frozen=True)
class FieldMap:
    """A word's field widths and offsets as plain numbers: the trace port's description in the
    rtl manifest, which the testbenches decode without Amaranth."""
    widths: dict
    offsets: dict
    width: int


def field_map(layout: data.StructLayout) -> FieldMap:
    return FieldMap({k: f.width for k, f in layout}, {k: f.offset for k, f in layout}, layout.size)


def fan_in(g: Graph, l) -> int:
    """The largest number of kept synapses into one neuron of weighted layer ``l``."""
    mask = g.tensor(l, "mask")
    return int(mask.reshape(len(mask), -1).sum(1).max(initial=0))


def u_range(g: Graph, l, max_in: int) -> tuple[int, int]:
    """Bounds of the pre-leaked membrane U of neuron layer ``l`` at any point of an
    accumulate phase, for event values up to ``max_in``.  V (after the reset) lies in
    [vmin, vmax], or up to vmax - min(threshold) for a soft reset with a negative
    threshold, and is 0 for a pruned neuron; every leak moves V towards 0 (floor shifts
    included: docs/IR.md); so U0 = leak(V) + bias is within [min(vmin, 0) + min(bias),
    max(vhi, 0) + max(bias)], and the events add at most ``fan * max_in << input_shift``
    either way, in any order."""
    n = l.neuron
    thr, bias = g.tensor(l, "threshold"), g.tensor(l, "bias")
    vhi = n.vmax - (min(int(thr.min(initial=0)), 0) if n.reset == "soft" else 0)
    span = max_in * fan_in(g, l) << l.input_shift
    return (min(n.vmin, 0) + int(bias.min(initial=0)) - span, max(vhi, 0) + int(bias.max(initial=0)) + span)


def bram18_blocks(depth: int, width: int) -> int:
    """18 Kbit block RAMs (ECP5 DP16KD, Xilinx RAMB18: 16384 x 1 .. 512 x 36) that a
    depth x width memory takes at the best aspect ratio."""
    if depth <= 0 or width <= 0:
        return 0
    return min(-(-depth // d) * -(-width // w) for d, w in
               ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)))


def status_map(g: Graph) -> list[tuple[str, str]]:
    """(layer, counter) of each status address; address 0 is ("", "cycles")."""
    out = [("", "cycles")]
    for l in g.layers:
        if l.kind != "flatten":
            out += [(l.name, c) for c in COUNTERS]
    return out


def lane_plan(graph: Graph, pes: int, dense: bool = False, memory_style: str = "auto",
              fifo_depth: int | None = None, weights: str = "baked") -> "LanePlan":
    """The plan of ``graph`` on ``pes`` PEs: the mapping checked (`program.map_graph`) and the
    FIFO depth checked (default `cycles.default_fifo_depth`)."""
    if memory_style not in MEMORY_STYLES:
        raise ValueError(f"memory_style must be one of {', '.join(MEMORY_STYLES)}, got {memory_style!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    prog = map_graph(graph, pes, dense)
    depth = check_fifo_depth(default_fifo_depth(pes) if fifo_depth is None else fifo_depth)
    return LanePlan(graph, prog, pes, dense, memory_style, depth, weights)


class LanePlan:
    """The plan of ``graph`` mapped on ``prog.P`` PEs (`program.map_graph`), ``dense`` for the
    no-skipping reference, with memories mapped as ``memory_style`` asks and event FIFOs of
    ``fifo_depth`` entries; ``weights`` (`WEIGHTS`): memory contents baked in or loaded at
    run time."""

    def __init__(self, graph: Graph, prog: Program, pes: int, dense: bool, memory_style: str, fifo_depth: int,
                 weights: str = "baked"):
        self.graph, self.prog, self.P, self.dense = graph, prog, pes, dense
        self.memory_style, self.fifo_depth = memory_style, fifo_depth
        self.weights, self.runtime = weights, weights == "runtime"
        self._layouts()
        self._bases()
        self._words_and_lanes()
        self.memories = self._inventory()
        self._loadable()

    # ---------------------------------------------------------------- layouts and widths
    def _layouts(self) -> None:
        g, prog = self.graph, self.prog
        # flatten keeps its events' (c, y, x): its out_shape (C*H*W) is no event coordinate
        shapes = [tuple(g.input.shape)] + [tuple(l.out_shape) for l in g.layers if l.kind != "flatten"]
        max_c = max(s[0] for s in shapes)
        max_h = max(s[1] if len(s) == 3 else 1 for s in shapes)
        max_w = max(s[2] if len(s) == 3 else 1 for s in shapes)
        self.vbits = g.input.bits
        cyx = dict(c=ubits(max_c - 1), y=ubits(max_h - 1), x=ubits(max_w - 1))
        self.ev_xyz = _struct(**cyx)                              # a neuron's position
        self.ev = _struct(value=self.vbits, **cyx)                # an event: its value and position
        # spike and pooled queues hold a 1-bit value (a spike; dense: 0 or 1) and (c, y, x);
        # the reader widens the value to the event's pixel-wide field
        self.queue = _struct(value=1, **cyx)
        # the input queue holds pixel events with the input's own (narrower) position fields
        # (a single-channel image stores no channel: 18 bits for 28 x 28 x 8-bit, one ECP5
        # block RAM wide)
        cin0, hin0, win0 = g.input.shape
        self.in_ev = _struct(value=self.vbits, c=(cin0 - 1).bit_length(), y=(hin0 - 1).bit_length(),
                             x=(win0 - 1).bit_length())
        # source of every layer's input: ("input", None) | ("spk", None) | ("pool", layer index)
        self.source, self.src_shape = {}, {}
        src, shape = ("input", None), tuple(g.input.shape)
        for i, l in enumerate(g.layers):
            self.source[i], self.src_shape[i] = src, shape
            if l.kind in ("conv", "linear"):
                src, shape = ("spk", None), tuple(l.out_shape)
            elif l.kind == "pool":
                src, shape = ("pool", i), tuple(l.out_shape)
        self.neuron_layers = [i for i, l in enumerate(g.layers) if l.kind in ("conv", "linear")]
        self.weighted = [i for i, l in enumerate(g.layers) if l.has_weights]
        self.pool_layers = [i for i, l in enumerate(g.layers) if l.kind == "pool"]
        self.order = [i for i, l in enumerate(g.layers) if l.kind != "flatten"]     # layers run, in order
        self.out_layer = len(g.layers) - 1
        self.classes = g.layers[-1].out_shape[0]
        lps = prog.layers
        # *Regular* conv layers (no pruned neuron, every position class full): a PE's slot
        # is its neuron's local index, so the slot -> (c, y, x) table and the local index ->
        # slot lookup are not stored: counters and a per-PE table of its groups produce them
        self.regular = [i for i in self.neuron_layers if lps[i].regular]
        # membrane width: each neuron layer's accumulator holds U over the accumulation
        # (`u_range`); one bit over the membrane at least (the update's own arithmetic)
        # (an input of at most max_in times a weight of at most wmax: what one synapse adds)
        max_in, self.acc_need = (1 << g.input.bits) - 1, {}
        for i, l in enumerate(g.layers):
            if not l.has_weights:
                continue
            wmax = max(1, int(np.abs(g.tensor(l, "weight")).max(initial=0)))
            if l.kind == "output":
                top = max_in * wmax * fan_in(g, l) * g.T
                self.score_bits = sbits(-top, top)
                continue
            self.acc_need[i] = max(l.neuron.membrane_bits + 1, sbits(*u_range(g, l, max_in * wmax)))
            max_in = 1
        self.acc_bits = max(self.acc_need.values(), default=2)
        self.mem_lo_bits, self.wide = self.membrane_split()
        # distinct neuron configurations share one update unit per PE
        self.configs: list[Neuron] = []
        self.config_of = {}
        for i in self.neuron_layers:
            n = g.layers[i].neuron
            if n not in self.configs:
                self.configs.append(n)
            self.config_of[i] = self.configs.index(n)
        self.status = status_map(g)
        self.counter_layers = [i for i, l in enumerate(g.layers) if l.kind != "flatten"]

    def _bases(self) -> None:
        """Per-PE memory bases (membranes, slot tables, lookup tables, groups, parameters),
        exact: pruned neurons take nothing.  Per-PE parameter tables hold only what the
        PE's neurons use: a regular conv layer's entry per group (by rank), a linear
        layer's per slot, a conv layer with a lookup table every channel (its slot words
        carry the channel, not the group)."""
        g, lps, P = self.graph, self.prog.layers, self.P
        self.mbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers}
        self.tbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers if i not in self.regular}
        self.lbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers
                      if g.layers[i].kind == "conv" and i not in self.regular}
        self.gbase, self.pbase = {}, {}
        m_acc, t_acc, l_acc, g_acc, p_acc = (np.zeros(P, np.int64) for _ in range(5))
        for i in self.membrane_order:
            self.mbase[i] = m_acc.copy()
            m_acc += lps[i].n_slots
        # the wide layers come first, so their high bits share the low part's address
        self.mem_hi_depth = sum((lps[i].n_slots for i in self.wide), np.zeros(P, np.int64))
        for i in self.neuron_layers:
            self.pbase[i] = p_acc.copy()
            p_acc += np.array([len(self.param_channels(i, p)) for p in range(P)], np.int64)
            if i in self.tbase:
                self.tbase[i] = t_acc.copy()
                t_acc += lps[i].n_slots
            if i in self.lbase:
                self.lbase[i] = l_acc.copy()
                l_acc += np.array([len(t) for t in lps[i].lookup], np.int64)
            if i in self.regular:
                self.gbase[i] = g_acc.copy()
                g_acc += np.bincount(lps[i].group_pe, minlength=P)
        self.mem_depth, self.slot_depth, self.lut_depth, self.group_depth, self.param_depth = \
            m_acc, t_acc, l_acc, g_acc, p_acc
        self.queue_depth = max([int(lps[i].n_slots.max()) for i in self.neuron_layers] + [1])
        self.pool_depth = max([int(np.prod(l.out_shape)) for l in g.layers if l.kind == "pool"] + [1])
        self.in_depth = int(np.prod(g.input.shape))
        self.update_cycles = {i: lps[i].update_cycles for i in self.neuron_layers}

    def _words_and_lanes(self) -> None:
        prog, lps, P = self.prog, self.prog.layers, self.P
        # row pointers: one table, layer bases
        self.rbase, self.rpbase, r_acc, rp_acc = {}, {}, 0, 0
        for i in self.weighted:
            self.rbase[i], self.rpbase[i] = r_acc, rp_acc
            r_acc += len(lps[i].words)
            rp_acc += len(lps[i].word_ptr)
        self.n_rows, self.n_rowptr = r_acc, rp_acc
        max_words = max([int(lps[i].word_counts.max()) if len(lps[i].word_ptr) else 0 for i in self.weighted] + [1])
        # one row-pointer word per source: the first word row, and how many words each PE reads
        # (a source with no words on any PE may point one past the layer's last row, so the
        # field holds the largest start stored, not the last row)
        max_start = max([self.rbase[i] + int(lps[i].word_ptr[:, 0].max()) for i in self.weighted
                         if len(lps[i].word_ptr)] + [0])
        self.word_count_bits = ubits(max_words)
        self.rp = _struct(start=ubits(max_start),
                          **{n: self.word_count_bits for n in dict.fromkeys(self.count_field(p) for p in range(P))})
        # an event FIFO's entry: the event, its first word row, the PE's word count
        self.entry = data.StructLayout({"ev": self.ev, "start": unsigned(ubits(max_start)),
                                        "count": unsigned(self.word_count_bits)})
        # a stored synapse word (program.WORD_FIELDS): a group rank / slot chunk and W-bit
        # mask, signs (and zero flags when dense) of its candidate synapses, and with multi-bit
        # weights W magnitudes less one of mag_bits each
        W = self.W = prog.W
        self.mag_bits = prog.mag_bits
        waddr = max([int(lps[i].words[:, :, 0].max()) for i in self.weighted if len(lps[i].words)] + [0])
        # implicit addresses (program.py): the PE counts its words of the event instead
        self.word = _struct(addr=0 if prog.implicit_addr else ubits(waddr), mask=W, sign=W,
                            zero=W if self.dense else 0, **({"mag": W * self.mag_bits} if self.mag_bits else {}))
        all_lanes = [lps[i].lanes for i in self.weighted if len(lps[i].lanes)]
        lanes = np.concatenate([a.reshape(-1, len(LANE_FIELDS)) for a in all_lanes]) if all_lanes else \
            np.zeros((1, len(LANE_FIELDS)), np.int64)
        dmax = int(np.abs(lanes[:, 4:6]).max()) if len(lanes) else 0
        # the lane a PE emits each cycle from its current word (its pipeline's own format)
        self.lane = _struct(neg=1, zero=1 if self.dense else 0, addr=ubits(int(lanes[:, 3].max())),
                            dy=signed(ubits(dmax) + 1), dx=signed(ubits(dmax) + 1),
                            **({"mag": self.mag_bits} if self.mag_bits else {}))       # binary: no field
        self.param = _struct(bias=signed(self.acc_bits), thr=signed(self.acc_bits))
        self.slot = _struct(keep=1, c=self.ev_xyz["c"].width, y=self.ev_xyz["y"].width, x=self.ev_xyz["x"].width)
        lut_max = max([int(max((t.max(initial=-1) for t in lps[i].lookup), default=-1))
                       for i in self.lbase] + [0])
        self.lut = _struct(valid=1, slot=ubits(lut_max))
        self.slot_bits = ubits(max([int(lps[i].n_slots.max()) for i in self.neuron_layers] + [1]))
        # a conv neuron's local index on its PE (with pruned neurons, beyond its slots)
        self.local_bits = ubits(max([len(t) for i in self.neuron_layers for t in lps[i].lookup] + [1]))
        # a regular layer's group on a PE: its channel and position class
        self.grp = _struct(c=self.ev_xyz["c"].width, py=ubits(max([lps[i].ry - 1 for i in self.regular] + [0])),
                           px=ubits(max([lps[i].rx - 1 for i in self.regular] + [0])))

    def count_field(self, p: int) -> str:
        """The row-pointer field holding PE p's word count: one for every PE with uniform
        rows (program._uniform_rows), else one per PE."""
        return "n" if self.prog.uniform_rows else f"n{p}"

    def membrane_split(self) -> tuple[int, list[int]]:
        """(low width, wide layers): the membrane memory is ``low`` bits wide for every
        slot, and a second memory holds the ``acc_bits - low`` high bits of the *wide*
        layers' slots only (those whose accumulator needs more than ``low``).  ``low`` is
        the layer width that takes the fewest 18 Kbit block RAMs (`bram18_blocks`, summed
        over the PEs; no split on a tie): e.g. when only the first layer needs a 19th bit
        (8-bit pixels into the membrane), an 18-bit memory and that layer's 19th bits
        beside it take 6 + 1 blocks per PE of 5,504 slots, 19 bits everywhere 9 (3 of
        2048 x 9 side by side)."""
        slots = {i: self.prog.layers[i].n_slots for i in self.acc_need}
        total = sum(slots.values(), np.zeros(self.P, np.int64))

        def blocks(lo):
            hi = sum((n for i, n in slots.items() if self.acc_need[i] > lo), np.zeros(self.P, np.int64))
            return sum(bram18_blocks(int(a), lo) + bram18_blocks(int(b), self.acc_bits - lo) for a, b in zip(total, hi))

        lo = min(sorted(set(self.acc_need.values()) | {self.acc_bits}, reverse=True), key=blocks)
        return lo, [i for i in self.neuron_layers if self.acc_need.get(i, 0) > lo]

    @property
    def membrane_order(self) -> list[int]:
        """Neuron layers in membrane-memory order: the wide ones (`membrane_split`) first."""
        return self.wide + [i for i in self.neuron_layers if i not in self.wide]

    def param_index(self, i: int) -> str:
        """How the update of neuron layer i addresses its PE's parameter table."""
        if i in self.regular:
            return "rank"
        return "channel" if self.graph.layers[i].kind == "conv" else "slot"

    def param_channels(self, i: int, p: int) -> list[int]:
        """The output channel of each entry of PE p's parameter table for layer i."""
        lp, cout = self.prog.layers[i], self.graph.layers[i].out_shape[0]
        how = self.param_index(i)
        if how == "rank":
            return [int(grp) % cout for grp in np.flatnonzero(lp.group_pe == p)]      # rank order
        if how == "slot":
            return [int(o) for o in lp.slots[p][:, 1]]
        return list(range(cout))

    # ---------------------------------------------------------------- memories
    def _inventory(self) -> list[dict]:
        """Every memory of the design: name, width, depth, bits, synthesis style, read-only."""
        P, mems = self.P, []

        def add(name, width, depth, rom=False, style=None):
            depth = max(1, int(depth))
            if style is None:
                style = self.memory_style
                if style == "auto" and rom and width * depth <= SMALL_ROM_BITS:
                    style = "logic"
            mems.append({"name": name, "width": int(width), "depth": depth, "bits": int(width) * depth,
                         "style": style, "rom": rom})

        add("in_queue", self.in_ev.size, self.in_depth)
        add("pool_queue", self.queue.size, self.pool_depth)
        add("pool_bitmap", 1, self.pool_depth)
        add("rowptr", self.rp.size, self.n_rowptr, rom=True)
        for p in range(P):
            add(f"pe{p}_rows", self.word.size, self.n_rows, rom=True)
        for p in range(P):
            add(f"pe{p}_spikes", self.queue.size, self.queue_depth)
            add(f"pe{p}_membranes", self.mem_lo_bits, self.mem_depth[p])
            if self.wide:
                add(f"pe{p}_membranes_hi", self.acc_bits - self.mem_lo_bits, self.mem_hi_depth[p])
            add(f"pe{p}_slots", self.slot.size, self.slot_depth[p], rom=True)
            add(f"pe{p}_lookup", self.lut.size, self.lut_depth[p] if self.lbase else 0, rom=True)
            add(f"pe{p}_groups", self.grp.size, self.group_depth[p], rom=True)
            add(f"pe{p}_params", self.param.size, self.param_depth[p], rom=True)
        for p in range(P):
            # lib.fifo's own memory (asynchronous read: LUT RAM or registers), listed so that
            # the memory totals are the design's
            add(f"pe{p}_events", self.entry.size, self.fifo_depth, style="fifo")
        return mems

    def _loadable(self) -> None:
        """The memories written through the ``load`` port with runtime weights: every one with
        contents (the row pointers; per PE its synapse words, membranes, slot, lookup, group
        and parameter tables), numbered in this order.  A PE's membranes are one memory of
        ``acc_bits`` here, whatever their low/high split; the rest keep their width."""
        names = ["rowptr"] + [f"pe{p}_{k}" for p in range(self.P)
                              for k in ("rows", "membranes", "slots", "lookup", "groups", "params")]
        spec = {s["name"]: s for s in self.memories}
        self.loadable = [{"index": i, "name": n, "depth": spec[n]["depth"],
                          "width": self.acc_bits if n.endswith("_membranes") else spec[n]["width"]}
                         for i, n in enumerate(names)]
        self.load_index = {d["name"]: d["index"] for d in self.loadable}
        self.load_layout = data.StructLayout({
            "memory": range(max(2, len(self.loadable))),
            "addr": unsigned(ubits(max(d["depth"] for d in self.loadable) - 1)),
            "data": unsigned(max(d["width"] for d in self.loadable))})
        if self.runtime:
            for s in self.memories:          # writable now: no longer a ROM that logic may hold
                if s["name"] in self.load_index or s["name"].endswith("_membranes_hi"):
                    s["rom"], s["loadable"] = False, True
                    if s["style"] == "logic" and self.memory_style == "auto":
                        s["style"] = "auto"

    def load_contents(self) -> list[tuple[dict, list[int]]]:
        """Each loadable memory with its words (what baked weights put in as initial values)."""
        words = {"rowptr": self.rowptr_words()}
        for p in range(self.P):
            mem, slots, lut, groups, params = self.pe_words(p)
            words.update({f"pe{p}_rows": self.row_words(p), f"pe{p}_membranes": mem, f"pe{p}_slots": slots,
                          f"pe{p}_lookup": lut, f"pe{p}_groups": groups, f"pe{p}_params": params})
        return [(d, words[d["name"]][:d["depth"]]) for d in self.loadable]

    def memory(self, name: str, init=()) -> Memory:
        """The memory ``name`` of the inventory, with its contents ``init`` (integers; none with
        runtime weights: they come through the ``load`` port)."""
        spec = next(s for s in self.memories if s["name"] == name)
        attrs = {} if spec["style"] == "auto" else {"ram_style": spec["style"]}
        if spec.get("loadable"):
            init = ()
        return Memory(shape=unsigned(spec["width"]), depth=spec["depth"], init=list(init), attrs=attrs)

    def load_hit(self, load, name: str):
        """A ``load`` stream's word is for the memory ``name`` (runtime weights)."""
        return load.valid & (load.payload.memory == self.load_index[name])


    def row_words(self, p: int) -> list[int]:
        """PE p's column of the synapse store (its word of every word row)."""
        words = []
        for i in self.weighted:
            for row in self.prog.layers[i].words:
                addr, mask, sign, zero, mag = (int(a) for a in row[p])
                kw = dict(mask=mask, sign=sign) if self.prog.implicit_addr else dict(addr=addr, mask=mask, sign=sign)
                if self.dense:
                    kw["zero"] = zero
                if self.mag_bits:
                    kw["mag"] = mag
                words.append(pack(self.word, **kw))
        return words or [0]

    def rowptr_words(self) -> list[int]:
        words = []
        for i in self.weighted:
            lp = self.prog.layers[i]
            for (start, _), counts in zip(lp.word_ptr, lp.word_counts):
                words.append(pack(self.rp, start=self.rbase[i] + int(start),
                                  **{self.count_field(p): int(c) for p, c in enumerate(counts)}))
        return words or [0]

    def pe_words(self, p: int):
        """PE p's memory contents: (membranes, slot table, lookup table, groups, parameters)."""
        g, lps = self.graph, self.prog.layers
        mem, slots, lut, groups, params = [], [], [], [], []
        for i in self.membrane_order:
            bias = g.tensor(g.layers[i], "bias")
            mem += [int(bias[o]) & ((1 << self.acc_bits) - 1) for o in lps[i].slots[p][:, 1]]   # U = leak(0) + bias
        for i in self.neuron_layers:
            l = g.layers[i]
            bias = g.tensor(l, "bias")
            for keep, o, y, x in lps[i].slots[p]:
                if i in self.tbase:
                    slots.append(pack(self.slot, keep=keep, c=o, y=y, x=x))
            if i in self.lbase:
                for s in lps[i].lookup[p]:
                    lut.append(pack(self.lut, valid=int(s >= 0), slot=max(int(s), 0)))
            if i in self.regular:
                cout, rx = l.out_shape[0], lps[i].rx
                for grp in np.flatnonzero(lps[i].group_pe == p):            # in rank order
                    cls = int(grp) // cout
                    groups.append(pack(self.grp, c=int(grp) % cout, py=cls // rx, px=cls % rx))
            for o in self.param_channels(i, p):
                params.append(pack(self.param, bias=int(bias[o]), thr=int(g.tensor(l, "threshold")[o])))
        return mem or [0], slots or [0], lut or [0], groups or [0], params or [0]


def load_port(m, plan: LanePlan, memory: Memory, name: str, load) -> None:
    """A write port on ``memory`` that takes the ``load`` stream's words for ``name``."""
    w = memory.write_port()
    m.d.comb += [w.addr.eq(load.payload.addr), w.data.eq(load.payload.data), w.en.eq(plan.load_hit(load, name))]
