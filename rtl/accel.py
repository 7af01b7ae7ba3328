"""The event-driven, neuron-per-PE accelerator, generated with Amaranth from an IR.

One image at a time: ``start``, then the image's pixels on the ``pixels`` stream, then the
class scores on the ``scores`` stream, then a one-cycle ``done``.  The layers run one
after another on one array of P PEs, every timestep; spikes between layers stay on chip
in event queues.  What runs where and when (see ``cycles.py`` for the exact count):

``LOAD``   one pixel per cycle (taken into a register, written the next cycle); the
           non-zero ones (all of them when dense) are written to the input event queue,
           which every timestep's first layer reads again (direct encoding).
``ACC``    conv / linear / readout: the *event reader* walks the layer's source queue
           (input queue, the previous neuron layer's per-PE spike queues, or the pooled
           queue) one event per cycle, looks up the event's row pointer (first word row,
           and each PE's word count) and broadcasts it into every PE's event FIFO, as long
           as every FIFO has room.  *Per-PE row streams*: each PE pops its own FIFO and
           walks its own synapse words (`program.py`), one lane (kept synapse) per cycle
           (an event without lanes on the PE costs it one cycle), so a PE with few
           synapses for an event
           runs ahead instead of waiting for the busiest PE.  The PE decodes the lane,
           finds the target neuron's slot (conv: through its lookup table, or in a
           regular layer the neuron's local index itself) and adds
           ``+-value << input_shift`` to the slot's membrane: read, add, write in a 4-stage
           pipeline whose membrane read port is transparent to the write port, so
           back-to-back updates of one neuron chain.
``UPD``    conv / linear: every PE steps through its live slots, one per cycle: the
           integer LIF update of docs/IR.md (`neuron.py`), membrane write-back, and a spike
           event into the PE's own spike queue.  One queue per PE serves every layer:
           a layer's accumulate phase has read all of its source's events before its
           update phase writes the first of its own (the count is reset in between).
``POOL``   the reader walks the conv's spike queues; an OR-pool is a bitmap of pooled
           positions: the first spike in a window sets the bit and queues the pooled
           event; the consumer's reader clears the bit when it reads the event back.
           Dense: every input sets its bit when it is 1, then a sweep queues every
           pooled position with its value and clears the bitmap.
``OUT``    one class score per cycle on the output stream.

The membrane memory holds, per slot, the *pre-leaked* membrane ``U = leak(V) + bias``
(see `neuron.py`), so its initial contents are the biases and the accumulate phase is a
plain add.  A status block exposes counters (``status_addr`` -> ``status_data``, registered:
the word of an address is there two cycles later, and only while not busy): address 0 is
the cycle count of the last image, then 6 per layer (``COUNTERS``).
"""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ticketforge.ir.schema import Graph, IRError, Neuron
from ticketforge.rtl.cycles import ACC_DRAIN, COUNTERS, POOL_DRAIN, UPD_DRAIN, check_fifo_depth, default_fifo_depth
from ticketforge.rtl.neuron import NeuronUpdate
from ticketforge.rtl.program import LANE_FIELDS, Program, map_graph

__all__ = ["Accelerator", "core_members", "status_map", "fan_in", "u_range", "bram18_blocks", "MEMORY_STYLES"]

# How synthesis should map the memories (the `ram_style` attribute yosys' memory mapper
# honours): "auto" lets it choose, "block" asks for block RAM, "logic" for LUTs/FFs.
MEMORY_STYLES = ("auto", "block", "logic")
# "auto" still puts read-only tables up to this size in logic: a block RAM holds 4-18 Kbit,
# and a 34-entry parameter table would take a whole one (the UP5K has 30)
SMALL_ROM_BITS = 2048

# SWEEP_DRAIN (cycles.py) is the one-cycle *_SWEEP_DRAIN state below.
COUNTER_BITS = 32


def _bits(n: int) -> int:
    """Bits of an unsigned value up to n (at least 1)."""
    return max(1, int(n).bit_length())


def _sbits(lo: int, hi: int) -> int:
    """Bits of a signed value in [lo, hi]."""
    return max(_bits(max(hi, 0)), _bits(max(-lo - 1, 0))) + 1


def _widen(v, width: int):
    """An unsigned value zero-extended to ``width`` bits (for Cat, which keeps widths)."""
    return Cat(v, C(0, width - len(v))) if width > len(v) else v


def _widen_value(word, vbits: int):
    """A queue word (1-bit value, then c, y, x) as an event word (vbits-bit value first)."""
    return Cat(_widen(word[0], vbits), word[1:])


class Fields:
    """A packed word: named unsigned/signed fields, least significant first.  Used for the
    memories' contents so that Python packs the init values and Amaranth slices them with
    the same offsets."""

    def __init__(self, **widths: int):
        self.widths = {k: int(v) for k, v in widths.items()}
        self.offsets, off = {}, 0
        for k, w in self.widths.items():
            self.offsets[k] = off
            off += w
        self.width = max(1, off)

    def pack(self, **values) -> int:
        word = 0
        for k, v in values.items():
            w = self.widths[k]
            v = int(v)
            if not -(1 << w) < v < (1 << w):
                raise IRError(f"value {v} does not fit the {w}-bit field {k!r}")
            word |= (v & ((1 << w) - 1)) << self.offsets[k]
        return word

    def pack_signals(self, **values):
        """The word as an Amaranth value: each field's signal truncated or zero-extended to
        its width (fields not given are 0)."""
        parts = []
        for k, w in self.widths.items():
            if w:
                v = values.get(k, C(0, w))
                parts.append(v[:w] if len(v) >= w else _widen(v, w))
        return Cat(*parts)

    def get(self, sig, name: str, signed_: bool = False):
        o, w = self.offsets[name], self.widths[name]
        v = sig[o:o + w]
        return v.as_signed() if signed_ else v


def _step_chw(m: Module, c, y, x, h: int, w: int) -> None:
    """Advance a (c, y, x) position counter in C-H-W order (x fastest) by one."""
    with m.If(x == w - 1):
        m.d.sync += x.eq(0)
        with m.If(y == h - 1):
            m.d.sync += [y.eq(0), c.eq(c + 1)]
        with m.Else():
            m.d.sync += y.eq(y + 1)
    with m.Else():
        m.d.sync += x.eq(x + 1)


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


def core_members(g: Graph, score_bits: int, status_words: int, trace_lanes: int, event_width: int,
                 trace: bool) -> dict:
    """The accelerator's outside, whatever its datapath: the pixel and score streams, start,
    busy, done, the status block, and with ``trace`` the spike-trace port of ``trace_lanes``
    lanes of ``event_width``-bit (c, y, x) events (the testbench and board top rely on it)."""
    sig = {
        "pixels": In(stream.Signature(unsigned(g.input.bits))),
        "scores": Out(stream.Signature(signed(score_bits))),
        "start": In(1), "busy": Out(1), "done": Out(1),
        "status_addr": In(range(max(2, status_words))),
        "status_data": Out(COUNTER_BITS),
    }
    if trace:
        sig.update({"trace_valid": Out(trace_lanes), "trace_event": Out(trace_lanes * event_width),
                    "trace_layer": Out(range(len(g.layers))), "trace_t": Out(range(max(2, g.T)))})
    return sig


class Accelerator(wiring.Component):
    """Parameters: the integer IR ``graph``, the number of PEs ``pes``, ``dense`` for the
    no-skipping reference, ``memory_style`` (MEMORY_STYLES), ``fifo_depth`` of each PE's
    event FIFO (default `cycles.default_fifo_depth`), ``trace`` to add the spike-trace debug port (one lane per PE:
    ``trace_valid`` bit p set when PE p emitted a spike this cycle, ``trace_event`` its
    (c, y, x) packed as ``event_fields``, ``trace_layer`` and ``trace_t``)."""

    def __new__(cls, graph: Graph, pes: int, dense: bool = False, trace: bool = False,
                memory_style: str = "auto", fifo_depth: int | None = None):
        # The configuration is checked and mapped before the Elaboratable exists: Amaranth
        # warns about every elaboratable that is created and never elaborated, and a
        # refused configuration would otherwise leave one behind.
        if memory_style not in MEMORY_STYLES:
            raise ValueError(f"memory_style must be one of {', '.join(MEMORY_STYLES)}, got {memory_style!r}")
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be an ticketforge IR Graph, got {type(graph).__name__}")
        if not isinstance(dense, bool) or not isinstance(trace, bool):
            raise TypeError(f"dense and trace must be bools, got {dense!r}, {trace!r}")
        prog = map_graph(graph, pes, dense)
        depth = check_fifo_depth(default_fifo_depth(pes) if fifo_depth is None else fifo_depth)
        self = super().__new__(cls, src_loc_at=1)           # (the warning's location: the caller)
        self.prog, self.fifo_depth = prog, depth
        return self

    def __init__(self, graph: Graph, pes: int, dense: bool = False, trace: bool = False,
                 memory_style: str = "auto", fifo_depth: int | None = None):
        self.prog: Program            # mapped, and fifo_depth checked, in __new__
        self.memory_style = memory_style
        self.graph = g = graph
        self.P, self.dense, self.trace = pes, dense, trace
        self._plan()
        super().__init__(core_members(g, self.score_bits, len(self.status), pes, self.ev_xyz.width, trace))

    # ---------------------------------------------------------------- static plan
    def _plan(self) -> None:
        g, prog, P = self.graph, self.prog, self.P
        # flatten keeps its events' (c, y, x): its out_shape (C*H*W) is no event coordinate
        shapes = [tuple(g.input.shape)] + [tuple(l.out_shape) for l in g.layers if l.kind != "flatten"]
        max_c = max(s[0] for s in shapes)
        max_h = max(s[1] if len(s) == 3 else 1 for s in shapes)
        max_w = max(s[2] if len(s) == 3 else 1 for s in shapes)
        self.vbits = g.input.bits
        self.ev = Fields(value=self.vbits, c=_bits(max_c - 1), y=_bits(max_h - 1), x=_bits(max_w - 1))
        self.ev_xyz = Fields(c=self.ev.widths["c"], y=self.ev.widths["y"], x=self.ev.widths["x"])
        # the input queue holds pixel events with the input's own (narrower) position fields
        cin0, hin0, win0 = g.input.shape
        # (a single-channel image stores no channel: 18 bits for 28 x 28 x 8-bit, one ECP5 block RAM wide)
        self.in_ev = Fields(value=self.vbits, c=(cin0 - 1).bit_length(), y=(hin0 - 1).bit_length(),
                            x=(win0 - 1).bit_length())
        # source of every layer's input: ("input", None) | ("spk", None) | ("pool", layer index)
        self.source = {}
        src, shape = ("input", None), tuple(g.input.shape)
        self.src_shape = {}
        for i, l in enumerate(g.layers):
            self.source[i], self.src_shape[i] = src, shape
            if l.kind in ("conv", "linear"):
                src, shape = ("spk", None), tuple(l.out_shape)
            elif l.kind == "pool":
                src, shape = ("pool", i), tuple(l.out_shape)
            elif l.kind == "flatten":
                pass                                  # event coordinates stay (c, y, x)
        self.neuron_layers = [i for i, l in enumerate(g.layers) if l.kind in ("conv", "linear")]
        self.weighted = [i for i, l in enumerate(g.layers) if l.has_weights]
        lps = prog.layers
        # *Regular* conv layers (no pruned neuron, every position class full): a PE's slot
        # is its neuron's local index, so the slot -> (c, y, x) table and the local index ->
        # slot lookup are not stored: counters and a per-PE table of its groups produce them
        self.regular = [i for i in self.neuron_layers if lps[i].regular]
        # membrane width: each neuron layer's accumulator holds U over the accumulation
        # (`_u_range`); one bit over the membrane at least (the update's own arithmetic)
        max_in, self.acc_need = (1 << g.input.bits) - 1, {}
        for i, l in enumerate(g.layers):
            if not l.has_weights:
                continue
            if l.kind == "output":
                top = max_in * fan_in(g, l) * g.T
                self.score_bits = _sbits(-top, top)
                continue
            self.acc_need[i] = max(l.neuron.membrane_bits + 1, _sbits(*u_range(g, l, max_in)))
            max_in = 1
        self.acc_bits = max(self.acc_need.values(), default=2)
        self.mem_lo_bits, self.wide = self._membrane_split()
        # per-PE memory bases (membranes, slot tables, lookup tables, groups, parameters),
        # exact: pruned neurons take nothing
        self.mbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers}
        self.tbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers if i not in self.regular}
        self.lbase = {i: np.zeros(P, np.int64) for i in self.neuron_layers
                      if g.layers[i].kind == "conv" and i not in self.regular}
        self.gbase = {}
        # per-PE parameter tables hold only what the PE's neurons use: a regular conv layer's
        # entry per group (by rank), a linear layer's per slot, a conv layer with a lookup
        # table every channel (its slot words carry the channel, not the group)
        self.pbase = {}
        m_acc, t_acc, l_acc, g_acc, p_acc = (np.zeros(P, np.int64) for _ in range(5))
        for i in self.membrane_order:
            self.mbase[i] = m_acc.copy()
            m_acc += lps[i].n_slots
        # the wide layers come first, so their high bits share the low part's address
        self.mem_hi_depth = sum((lps[i].n_slots for i in self.wide), np.zeros(P, np.int64))
        for i in self.neuron_layers:
            self.pbase[i] = p_acc.copy()
            p_acc += np.array([len(self._param_channels(i, p)) for p in range(P)], np.int64)
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
        self.rp = Fields(start=_bits(max_start),
                         **{n: _bits(max_words) for n in dict.fromkeys(self._count_field(p) for p in range(P))})
        self.word_count_bits = _bits(max_words)
        # a stored synapse word (program.WORD_FIELDS): a group rank / slot chunk and W-bit
        # mask, signs (and zero flags when dense) of its candidate synapses
        W = prog.W
        waddr = max([int(lps[i].words[:, :, 0].max()) for i in self.weighted if len(lps[i].words)] + [0])
        # implicit addresses (program.py): the PE counts its words of the event instead
        self.word = Fields(addr=0 if prog.implicit_addr else _bits(waddr), mask=W, sign=W,
                           zero=W if self.dense else 0)
        all_lanes = [lps[i].lanes for i in self.weighted if len(lps[i].lanes)]
        lanes = np.concatenate([a.reshape(-1, len(LANE_FIELDS)) for a in all_lanes]) if all_lanes else \
            np.zeros((1, len(LANE_FIELDS)), np.int64)
        dmax = int(np.abs(lanes[:, 4:6]).max()) if len(lanes) else 0
        # the lane a PE emits each cycle from its current word (its pipeline's own format)
        self.lane = Fields(neg=1, zero=1 if self.dense else 0, addr=_bits(int(lanes[:, 3].max())),
                           dy=_bits(dmax) + 1, dx=_bits(dmax) + 1)
        self.param = Fields(bias=self.acc_bits, thr=self.acc_bits)
        self.slot = Fields(keep=1, c=self.ev.widths["c"], y=self.ev.widths["y"], x=self.ev.widths["x"])
        lut_max = max([int(max((t.max(initial=-1) for t in lps[i].lookup), default=-1))
                       for i in self.lbase] + [0])
        self.lut = Fields(valid=1, slot=_bits(lut_max))
        self.slot_bits = _bits(max([int(lps[i].n_slots.max()) for i in self.neuron_layers] + [1]))
        # a conv neuron's local index on its PE (with pruned neurons, beyond its slots)
        self.local_bits = _bits(max([len(t) for i in self.neuron_layers for t in lps[i].lookup] + [1]))
        # a regular layer's group on a PE: its channel and position class
        self.grp = Fields(c=self.ev.widths["c"], py=_bits(max([lps[i].ry - 1 for i in self.regular] + [0])),
                          px=_bits(max([lps[i].rx - 1 for i in self.regular] + [0])))
        # distinct neuron configurations share one update unit per PE
        self.configs: list[Neuron] = []
        self.config_of = {}
        for i in self.neuron_layers:
            n = g.layers[i].neuron
            if n not in self.configs:
                self.configs.append(n)
            self.config_of[i] = self.configs.index(n)
        self.status = status_map(g)
        self.counter_index = {}
        k = 1
        for i, l in enumerate(g.layers):
            if l.kind != "flatten":
                self.counter_index[i] = k
                k += len(COUNTERS)

    def _count_field(self, p: int) -> str:
        """The row-pointer field holding PE p's word count: one for every PE with uniform
        rows (program._uniform_rows), else one per PE."""
        return "n" if self.prog.uniform_rows else f"n{p}"

    def _membrane_split(self) -> tuple[int, list[int]]:
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
        """Neuron layers in membrane-memory order: the wide ones (`_membrane_split`) first."""
        return self.wide + [i for i in self.neuron_layers if i not in self.wide]

    def _param_index(self, i: int) -> str:
        """How the update of neuron layer i addresses its PE's parameter table."""
        if i in self.regular:
            return "rank"
        return "channel" if self.graph.layers[i].kind == "conv" else "slot"

    def _param_channels(self, i: int, p: int) -> list[int]:
        """The output channel of each entry of PE p's parameter table for layer i."""
        lp, cout = self.prog.layers[i], self.graph.layers[i].out_shape[0]
        how = self._param_index(i)
        if how == "rank":
            return [int(grp) % cout for grp in np.flatnonzero(lp.group_pe == p)]      # rank order
        if how == "slot":
            return [int(o) for o in lp.slots[p][:, 1]]
        return list(range(cout))

    # ---------------------------------------------------------------- memory contents
    def _row_words(self, p: int) -> list[int]:
        """PE p's column of the synapse store (its word of every word row)."""
        words = []
        for i in self.weighted:
            for row in self.prog.layers[i].words:
                addr, mask, sign, zero = (int(a) for a in row[p])
                kw = dict(mask=mask, sign=sign) if self.prog.implicit_addr else dict(addr=addr, mask=mask, sign=sign)
                if self.dense:
                    kw["zero"] = zero
                words.append(self.word.pack(**kw))
        return words or [0]

    def _rowptr_words(self) -> list[int]:
        words = []
        for i in self.weighted:
            lp = self.prog.layers[i]
            for (start, _), counts in zip(lp.word_ptr, lp.word_counts):
                words.append(self.rp.pack(start=self.rbase[i] + int(start),
                                          **{self._count_field(p): int(c) for p, c in enumerate(counts)}))
        return words or [0]

    def _pe_words(self, p: int):
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
                    slots.append(self.slot.pack(keep=keep, c=o, y=y, x=x))
            if i in self.lbase:
                for s in lps[i].lookup[p]:
                    lut.append(self.lut.pack(valid=int(s >= 0), slot=max(int(s), 0)))
            if i in self.regular:
                cout, rx = l.out_shape[0], lps[i].rx
                for grp in np.flatnonzero(lps[i].group_pe == p):            # in rank order
                    cls = int(grp) // cout
                    groups.append(self.grp.pack(c=int(grp) % cout, py=cls // rx, px=cls % rx))
            for o in self._param_channels(i, p):
                params.append(self.param.pack(bias=int(bias[o]), thr=int(g.tensor(l, "threshold")[o])))
        return mem or [0], slots or [0], lut or [0], groups or [0], params or [0]

    # ---------------------------------------------------------------- hardware
    def elaborate(self, platform):
        m = Module()
        g, P, ev, lane = self.graph, self.P, self.ev, self.lane
        L = len(g.layers)
        T = g.T
        K = g.layers[-1].out_shape[0]

        cur = Signal(range(max(2, L)))           # layer being run
        t = Signal(range(max(2, T)))
        last_t = Signal()
        m.d.comb += last_t.eq(t == T - 1)

        # ---------------- memories
        self.memories = []          # the inventory, for the manifest and the synthesis report

        def mk(name, width, depth, init=None, rom=False):
            style = self.memory_style
            if style == "auto" and rom and width * max(1, depth) <= SMALL_ROM_BITS:
                style = "logic"
            attrs = {} if style == "auto" else {"ram_style": style}
            mem = Memory(shape=unsigned(width), depth=max(1, depth), init=init or [], attrs=attrs)
            m.submodules[name] = mem
            self.memories.append({"name": name, "width": width, "depth": max(1, depth),
                                  "bits": width * max(1, depth), "style": style, "rom": rom})
            return mem

        in_q = mk("in_queue", self.in_ev.width, self.in_depth)
        in_w, in_r = in_q.write_port(), in_q.read_port()
        in_count = Signal(range(self.in_depth + 1))
        # spike and pooled queues hold a 1-bit value (a spike; dense: 0 or 1) and (c, y, x);
        # the reader widens the value to the event's pixel-wide field
        qw = 1 + self.ev_xyz.width
        pool_q = mk("pool_queue", qw, self.pool_depth)
        pool_w, pool_r = pool_q.write_port(), pool_q.read_port()
        pool_count = Signal(range(self.pool_depth + 1))
        pool_bm = mk("pool_bitmap", 1, self.pool_depth)
        bm_w = pool_bm.write_port()
        bm_r = pool_bm.read_port(transparent_for=(bm_w,))
        rowptr = mk("rowptr", self.rp.width, self.n_rowptr, self._rowptr_words(), rom=True)
        rp_r = rowptr.read_port()
        row_r = [mk(f"pe{p}_rows", self.word.width, self.n_rows, self._row_words(p), rom=True).read_port()
                 for p in range(P)]

        QD = self.queue_depth
        spk_w, spk_r, spk_count = [], [], []
        mem_w, mem_r, slot_r, lut_r, grp_r, par_r = [], [], [], [], [], []
        mem_wide = Signal()             # the current layer keeps high membrane bits
        m.d.comb += mem_wide.eq(Array(C(int(i in self.wide), 1) for i in range(L))[cur])
        for p in range(P):
            memw, slotw, lutw, grpw, parw = self._pe_words(p)
            q = mk(f"pe{p}_spikes", qw, QD)
            spk_w.append(q.write_port())
            spk_r.append(q.read_port())
            spk_count.append(Signal(range(QD + 1), name=f"pe{p}_count"))
            # the membranes: the low bits of every slot, the high bits of the wide layers'
            # slots (`_membrane_split`); the PE sees one acc_bits-wide port of each kind
            lo, depth = self.mem_lo_bits, int(self.mem_depth[p])
            mm = mk(f"pe{p}_membranes", lo, depth, [w & ((1 << lo) - 1) for w in memw])
            lo_w = mm.write_port()
            lo_r = mm.read_port(transparent_for=(lo_w,))
            w = SimpleNamespace(addr=Signal(range(max(2, depth)), name=f"mem_waddr{p}"),
                                data=Signal(self.acc_bits, name=f"mem_wdata{p}"), en=Signal(name=f"mem_we{p}"))
            r = SimpleNamespace(addr=Signal(range(max(2, depth)), name=f"mem_raddr{p}"),
                                data=Signal(signed(self.acc_bits), name=f"mem_rdata{p}"))
            m.d.comb += [lo_w.addr.eq(w.addr), lo_w.data.eq(w.data[:lo]), lo_w.en.eq(w.en), lo_r.addr.eq(r.addr)]
            if self.wide:
                mh = mk(f"pe{p}_membranes_hi", self.acc_bits - lo, int(self.mem_hi_depth[p]),
                        [v >> lo for v in memw[:int(self.mem_hi_depth[p])]])
                hi_w = mh.write_port()
                hi_r = mh.read_port(transparent_for=(hi_w,))
                # a wide layer's slots are the first ones: the same address, truncated
                m.d.comb += [hi_w.addr.eq(w.addr), hi_w.data.eq(w.data[lo:]), hi_w.en.eq(w.en & mem_wide),
                             hi_r.addr.eq(r.addr),
                             r.data.eq(Mux(mem_wide, Cat(lo_r.data, hi_r.data), lo_r.data.as_signed()))]
            else:
                m.d.comb += r.data.eq(lo_r.data.as_signed())
            mem_w.append(w)
            mem_r.append(r)
            slot_r.append(mk(f"pe{p}_slots", self.slot.width, int(self.slot_depth[p]), slotw, rom=True).read_port())
            lut_r.append(mk(f"pe{p}_lookup", self.lut.width, int(self.lut_depth[p]) if self.lbase else 0,
                            lutw, rom=True).read_port())
            grp_r.append(mk(f"pe{p}_groups", self.grp.width, int(self.group_depth[p]), grpw, rom=True).read_port())
            par_r.append(mk(f"pe{p}_params", self.param.width, int(self.param_depth[p]), parw, rom=True).read_port())

        # ---------------- counters and status
        cycles = Signal(COUNTER_BITS)
        last_cycles = Signal(COUNTER_BITS)
        counters = {i: [Signal(COUNTER_BITS, name=f"{g.layers[i].name}_{c}") for c in COUNTERS]
                    for i in self.counter_index}
        flat = [last_cycles] + [s for i in sorted(counters) for s in counters[i]]
        # Inputs are registered before any logic reads them (status_addr, start, the pixel
        # stream's data), and the FSM's transitions never depend on an input: logic that
        # does lands in Verilator's input-combinational region, evaluated on every clock
        # edge (13% of the simulation time when the whole FSM was there).  The status word
        # of an address is there cycles.STATUS_LATENCY (2) cycles later, only while not busy.
        status_addr = Signal.like(self.status_addr)
        m.d.sync += status_addr.eq(self.status_addr)
        with m.If(~self.busy):
            m.d.sync += self.status_data.eq(Array(flat)[status_addr])

        parts: dict[int, list] = {j: [] for j in range(len(COUNTERS))}

        def count(j, amount):
            """Add `amount` to counter j (COUNTERS index) of the current layer, in the
            current If-context.  The contributions are summed and applied at the end of
            elaborate with one adder per counter kind (not one per layer)."""
            part = Signal(range(4 * P + 4), name=f"count_{COUNTERS[j]}_{len(parts[j])}")
            m.d.comb += part.eq(amount)
            parts[j].append(part)

        # ---------------- event reader (source queue -> row pointer -> every PE's FIFO)
        D = self.fifo_depth
        ent = Fields(ev=ev.width, start=self.rp.widths["start"], count=self.word_count_bits)
        ffs = []
        for p in range(P):
            ffs.append(fifo.SyncFIFO(width=ent.width, depth=D))
            m.submodules[f"pe{p}_events"] = ffs[-1]
            # lib.fifo's own memory (asynchronous read: LUT RAM or registers), listed in the
            # inventory so that the memory totals are the design's
            self.memories.append({"name": f"pe{p}_events", "width": ent.width, "depth": D, "bits": ent.width * D,
                                  "style": "fifo", "rom": False})
        rd_active = Signal()
        rd_q = Signal(range(max(2, P)))
        rd_idx = Signal(range(max(self.in_depth, self.pool_depth, QD) + 1))
        src_kind = Signal(2)                    # 0 input queue, 1 spike queues, 2 pooled queue
        v1, v1r, v2 = Signal(), Signal(), Signal()
        q1 = Signal.like(rd_q)
        ev2 = Signal(ev.width)
        credit = Signal()
        # an event in flight (v1, v1r, v2) will land in every FIFO: all of them must have room
        m.d.comb += credit.eq(Cat(f.level + v1 + v1r + v2 < D for f in ffs).all())
        cnt_now = Signal.like(rd_idx)
        m.d.comb += cnt_now.eq(Mux(src_kind == 0, in_count,
                                   Mux(src_kind == 2, pool_count, Array(spk_count)[rd_q])))
        # next non-empty PE queue above rd_q (a priority encoder; no bubbles between queues)
        nonempty = Signal(P)
        m.d.comb += nonempty.eq(Cat(c != 0 for c in spk_count))
        nxt_found, nxt_q, first_found, first_q = Signal(), Signal.like(rd_q), Signal(), Signal.like(rd_q)
        for p in reversed(range(P)):
            with m.If(nonempty[p] & (p > rd_q)):
                m.d.comb += [nxt_found.eq(1), nxt_q.eq(p)]
            with m.If(nonempty[p]):
                m.d.comb += [first_found.eq(1), first_q.eq(p)]
        issue_rd = Signal()
        m.d.comb += issue_rd.eq(rd_active & credit)
        m.d.comb += [in_r.addr.eq(rd_idx), pool_r.addr.eq(rd_idx)]
        for p in range(P):
            m.d.comb += spk_r[p].addr.eq(rd_idx)
        m.d.sync += [v1.eq(issue_rd), v1r.eq(v1), v2.eq(v1r)]
        with m.If(issue_rd):
            m.d.sync += q1.eq(rd_q)
            with m.If(rd_idx + 1 < cnt_now):
                m.d.sync += rd_idx.eq(rd_idx + 1)
            with m.Elif((src_kind == 1) & nxt_found):
                m.d.sync += [rd_q.eq(nxt_q), rd_idx.eq(0)]
            with m.Else():
                m.d.sync += rd_active.eq(0)
        ev1, in_as_ev = Signal(ev.width), Signal(ev.width)
        m.d.comb += in_as_ev.eq(Cat(*(_widen(self.in_ev.get(in_r.data, k), ev.widths[k])
                                      for k in ("value", "c", "y", "x"))))
        m.d.comb += ev1.eq(Mux(src_kind == 0, in_as_ev,
                               Mux(src_kind == 2, _widen_value(pool_r.data, self.vbits),
                                   _widen_value(Array(r.data for r in spk_r)[q1], self.vbits))))
        # the event is registered before its row-pointer index (and a pooled event's bitmap
        # address) is computed from it: queue read -> PE mux -> index products -> row
        # pointer address was the critical path on the ECP5 (44 ns)
        ev1r = Signal(ev.width)
        m.d.sync += ev1r.eq(ev1)
        e1c, e1y, e1x = ev.get(ev1r, "c"), ev.get(ev1r, "y"), ev.get(ev1r, "x")
        # row-pointer index of the event for the consumer layer: constants per layer, then a mux
        with m.Switch(cur):
            for i in self.weighted:
                l, lp = g.layers[i], self.prog.layers[i]
                with m.Case(i):
                    if l.kind == "conv":
                        my, mx = lp.class_shape
                        idx = ((e1c * my + (e1y & (my - 1))) * mx) + (e1x & (mx - 1))
                    else:
                        sh = self.src_shape[i]
                        hh, ww = (sh[1], sh[2]) if len(sh) == 3 else (1, 1)
                        idx = (e1c * hh + e1y) * ww + e1x
                    m.d.comb += rp_r.addr.eq(self.rpbase[i] + idx)
        m.d.sync += ev2.eq(ev1r)
        for p, f in enumerate(ffs):
            m.d.comb += [f.w_data.eq(Cat(ev2, self.rp.get(rp_r.data, "start"),
                                         self.rp.get(rp_r.data, self._count_field(p)))),
                         f.w_en.eq(v2)]

        # ---------------- per-PE row streams: each PE walks its own words of its head event,
        # one lane (the lowest set bit of the word's mask) per cycle.  The read port always
        # addresses the word the PE needs next cycle, so a word's first lane comes straight
        # from the port (``fresh``) and the rest from a register of what is left of its mask.
        acc_run = Signal()
        head_ev = ffs[0].r_data[:ev.width]          # the pool reads PE 0's FIFO (all pop together)
        W, word = self.prog.W, self.word
        a0_issue, pop_acc, idle, fetched = [], [], [], []
        a1_v = [Signal(name=f"a1_v{p}") for p in range(P)]
        a1_ev = [Signal(ev.width, name=f"a1_ev{p}") for p in range(P)]
        a1_lane = [Signal(lane.width, name=f"a1_lane{p}") for p in range(P)]
        for p, f in enumerate(ffs):
            cur_ev = Signal(ev.width, name=f"cur_ev{p}")
            cur_row = Signal(max(1, self.rp.widths["start"]), name=f"cur_row{p}")
            words_left = Signal(range(2 ** self.word_count_bits), name=f"words_left{p}")
            fresh = Signal(name=f"fresh{p}")
            held = Signal(word.width, name=f"held_word{p}")
            rest_reg = Signal(W, name=f"rest_mask{p}")
            cur_w, mask, rest = Signal(word.width, name=f"word{p}"), Signal(W, name=f"mask{p}"), \
                Signal(W, name=f"rest{p}")
            bit = Signal(range(max(2, W)), name=f"bit{p}")
            m.d.comb += [cur_w.eq(Mux(fresh, row_r[p].data, held)),
                         mask.eq(Mux(fresh, word.get(row_r[p].data, "mask"), rest_reg)),
                         rest.eq(mask & (mask - 1))]                      # the mask without its lowest bit
            for j in reversed(range(W)):                                  # lowest set bit
                with m.If(mask[j]):
                    m.d.comb += bit.eq(j)
            pop, issue, word_done = Signal(name=f"pop{p}"), Signal(name=f"issue{p}"), Signal(name=f"word_done{p}")
            last = Signal(name=f"last_lane{p}")
            m.d.comb += [issue.eq(acc_run & (words_left != 0)), word_done.eq(rest == 0),
                         last.eq((words_left == 0) | (issue & word_done & (words_left == 1))),
                         pop.eq(acc_run & f.r_rdy & last),
                         row_r[p].addr.eq(Mux(pop, ent.get(f.r_data, "start"),
                                              Mux(issue & word_done, cur_row + 1, cur_row)))]
            widx = Signal(range(2 ** self.word_count_bits), name=f"word_index{p}")   # implicit address
            with m.If(issue):
                with m.If(word_done):
                    m.d.sync += [words_left.eq(words_left - 1), cur_row.eq(cur_row + 1), fresh.eq(1),
                                 widx.eq(widx + 1)]
                with m.Else():
                    m.d.sync += [rest_reg.eq(rest), held.eq(cur_w), fresh.eq(0)]
            with m.If(pop):
                m.d.sync += [cur_ev.eq(ent.get(f.r_data, "ev")), cur_row.eq(ent.get(f.r_data, "start")),
                             words_left.eq(ent.get(f.r_data, "count")), fresh.eq(1), widx.eq(0)]
            # the lane of `bit`: conv, the group and the tap's offsets; linear, slot addr * W + bit
            l_addr = Signal(lane.widths["addr"], name=f"lane_addr{p}")
            l_dy, l_dx = (Signal(signed(lane.widths[k]), name=f"lane_{k}{p}") for k in ("dy", "dx"))
            waddr = widx if self.prog.implicit_addr else word.get(cur_w, "addr")
            with m.Switch(cur):
                for i in self.weighted:
                    l = g.layers[i]
                    with m.Case(i):
                        if l.kind == "conv":
                            m.d.comb += l_addr.eq(waddr)
                            with m.Switch(bit):
                                for tap in range(l.kernel * l.kernel):
                                    with m.Case(tap):
                                        m.d.comb += [l_dy.eq(l.padding - tap // l.kernel),
                                                     l_dx.eq(l.padding - tap % l.kernel)]
                        else:
                            # waddr * W as shifts and adds: a constant product yosys would
                            # otherwise give a DSP block per PE
                            m.d.comb += l_addr.eq(sum(waddr << k for k in range(W.bit_length()) if W >> k & 1) + bit)
            low = mask & ~rest                                              # the lane's bit, one-hot
            neg = (word.get(cur_w, "sign") & low).any()
            kw = {"zero": (word.get(cur_w, "zero") & low).any()} if self.dense else {}
            # an empty word (a hole, implicit addresses) takes its cycle and emits no lane
            m.d.sync += [a1_v[p].eq(issue & mask.any()), a1_ev[p].eq(cur_ev),
                         a1_lane[p].eq(lane.pack_signals(neg=neg, addr=l_addr, dy=l_dy, dx=l_dx, **kw))]
            a0_issue.append(issue)
            fetched.append(issue & fresh)                # a word's first lane: one read of the word
            pop_acc.append(pop)
            idle.append(~f.r_rdy & last)
        with m.If(Cat(fetched).any()):
            count(COUNTERS.index("weight_reads"), sum(fetched))

        # ---------------- PE array: accumulate pipeline (A1 decode, A2 lookup, A3 read-add-write)
        is_conv, regular = Signal(), Signal()
        m.d.comb += [is_conv.eq(Array(C(int(l.kind == "conv"), 1) for l in g.layers)[cur]),
                     regular.eq(Array(C(int(i in self.regular), 1) for i in range(L))[cur])]
        a2_v = [Signal(name=f"a2_v{p}") for p in range(P)]
        a3_v = [Signal(name=f"a3_v{p}") for p in range(P)]
        a2_slot = [Signal(self.lane.widths["addr"], name=f"a2_slot{p}") for p in range(P)]
        a3_slot = [Signal(max(self.lane.widths["addr"], self.lut.widths["slot"], self.local_bits), name=f"a3_slot{p}")
                   for p in range(P)]
        a2_delta = [Signal(signed(self.acc_bits), name=f"a2_delta{p}") for p in range(P)]
        a3_delta = [Signal(signed(self.acc_bits), name=f"a3_delta{p}") for p in range(P)]
        upd_mem_addr = [Signal(range(max(2, int(self.mem_depth[p]))), name=f"upd_addr{p}") for p in range(P)]
        upd_read = Signal()
        acc_hits = [Signal(name=f"acc_hit{p}") for p in range(P)]
        score_regs = [Signal(signed(self.score_bits), name=f"score{k}") for k in range(K)]
        out_layer = len(g.layers) - 1
        clear_scores = Signal()
        for p in range(P):
            word = a1_lane[p]
            lneg, laddr = lane.get(word, "neg"), lane.get(word, "addr")
            a1y, a1x, a1val = ev.get(a1_ev[p], "y"), ev.get(a1_ev[p], "x"), ev.get(a1_ev[p], "value")
            lzero = lane.get(word, "zero") if self.dense else C(0, 1)
            dy, dx = lane.get(word, "dy", True), lane.get(word, "dx", True)
            inr = Signal(name=f"inrange{p}")
            lut_addr = Signal(range(max(2, int(self.lut_depth[p]) + 1)), name=f"lut_addr{p}")
            local, a2_local = (Signal(self.local_bits, name=f"{n}{p}") for n in ("local", "a2_local"))
            with m.Switch(cur):
                for i in self.neuron_layers:
                    l, lp = g.layers[i], self.prog.layers[i]
                    if l.kind != "conv":
                        continue
                    with m.Case(i):
                        ls = l.stride.bit_length() - 1
                        yy, xx = a1y + dy, a1x + dx
                        oy, ox = yy >> ls, xx >> ls
                        _, ho, wo = l.out_shape
                        m.d.comb += inr.eq((yy >= 0) & (xx >= 0) & (oy < ho) & (ox < wo))
                        m.d.comb += local.eq(laddr * lp.gs + (oy >> (lp.ry.bit_length() - 1)) * lp.gw +
                                             (ox >> (lp.rx.bit_length() - 1)))
                        if i in self.lbase:
                            m.d.comb += lut_addr.eq(int(self.lbase[i][p]) + local)
            m.d.comb += lut_r[p].addr.eq(lut_addr)
            m.d.sync += a2_local.eq(local)
            mag = Signal(signed(self.acc_bits), name=f"mag{p}")
            with m.Switch(cur):                 # constant shifts per layer: wires, no shifter
                for i in self.weighted:
                    with m.Case(i):
                        m.d.comb += mag.eq(Mux(lzero, 0, a1val << g.layers[i].input_shift))
            m.d.sync += [a2_v[p].eq(a1_v[p] & (inr | ~is_conv)), a2_slot[p].eq(laddr),
                         a2_delta[p].eq(Mux(lneg, -mag, mag))]
            # A2: the slot (conv: from the lookup table, or the local index itself in a
            # regular layer), membrane read
            lut_ok = self.lut.get(lut_r[p].data, "valid") | regular
            slot2 = Mux(is_conv, Mux(regular, a2_local, self.lut.get(lut_r[p].data, "slot")), a2_slot[p])
            v2p = a2_v[p] & (lut_ok | ~is_conv)
            m.d.sync += [a3_v[p].eq(v2p), a3_slot[p].eq(slot2), a3_delta[p].eq(a2_delta[p])]
            acc_addr = Signal.like(upd_mem_addr[p], name=f"acc_addr{p}")
            with m.Switch(cur):
                for i in self.neuron_layers:
                    with m.Case(i):
                        m.d.comb += acc_addr.eq(int(self.mbase[i][p]) + slot2)
            m.d.comb += mem_r[p].addr.eq(Mux(upd_read, upd_mem_addr[p], acc_addr))
            # A3: read-add-write (membranes) or add (class scores)
            m.d.comb += acc_hits[p].eq(a3_v[p])
            a3_addr = Signal.like(acc_addr, name=f"a3_addr{p}")
            m.d.sync += a3_addr.eq(acc_addr)
            with m.If(a3_v[p] & (cur != out_layer)):
                m.d.comb += [mem_w[p].addr.eq(a3_addr), mem_w[p].data.eq(mem_r[p].data.as_signed() + a3_delta[p]),
                             mem_w[p].en.eq(1)]
            for k in range(p, K, P):
                with m.If(clear_scores):
                    m.d.sync += score_regs[k].eq(0)
                with m.Elif(a3_v[p] & (cur == out_layer) & (a3_slot[p] == k // P)):
                    m.d.sync += score_regs[k].eq(score_regs[k] + a3_delta[p])
        n_hits = sum(acc_hits)
        with m.If(Cat(acc_hits).any()):
            count(COUNTERS.index("accumulates"), n_hits)
            with m.If(cur != out_layer):
                count(COUNTERS.index("membrane_reads"), n_hits)
                count(COUNTERS.index("membrane_writes"), n_hits)

        # ---------------- PE array: neuron update pipeline (U0 slot read, U1 reads, U2 update)
        upd_run = Signal()
        upd_i = Signal(range(max(2, max([self.prog.layers[i].update_cycles for i in self.neuron_layers] + [1]))))
        u1_v = [Signal(name=f"u1_v{p}") for p in range(P)]
        u2_v = [Signal(name=f"u2_v{p}") for p in range(P)]
        u1_i = Signal.like(upd_i)
        u2_addr = [Signal.like(upd_mem_addr[p], name=f"u2_addr{p}") for p in range(P)]
        u2_slot = [Signal(self.slot.width, name=f"u2_slot{p}") for p in range(P)]
        spikes_now = [Signal(name=f"spike{p}") for p in range(P)]
        updates_now = [Signal(name=f"update{p}") for p in range(P)]
        m.d.sync += u1_i.eq(upd_i)
        # regular layers: (rank, y div ry, x div rx) of slot upd_i, the same on every PE
        # (counters instead of a stored slot table; reset with upd_i)
        max_g = max([int(self.group_depth.max())] + [1])
        max_q = max([self.prog.layers[i].gw for i in self.regular] + [self.prog.layers[i].gs // self.prog.layers[i].gw
                                                                       for i in self.regular] + [1])
        q_rank, q_y, q_x = Signal(range(max_g + 1), name="upd_rank"), Signal(range(max_q + 1), name="upd_qy"), \
            Signal(range(max_q + 1), name="upd_qx")
        u1_qy, u1_qx = Signal.like(q_y, name="u1_qy"), Signal.like(q_x, name="u1_qx")
        u1_rank = Signal.like(q_rank, name="u1_rank")
        upd_reset = Signal()
        m.d.sync += [u1_qy.eq(q_y), u1_qx.eq(q_x), u1_rank.eq(q_rank)]
        with m.If(upd_reset):
            m.d.sync += [q_rank.eq(0), q_y.eq(0), q_x.eq(0)]
        with m.Elif(upd_run):
            with m.Switch(cur):
                for i in self.regular:
                    lp = self.prog.layers[i]
                    with m.Case(i):
                        with m.If(q_x == lp.gw - 1):
                            m.d.sync += q_x.eq(0)
                            with m.If(q_y == lp.gs // lp.gw - 1):
                                m.d.sync += [q_y.eq(0), q_rank.eq(q_rank + 1)]
                            with m.Else():
                                m.d.sync += q_y.eq(q_y + 1)
                        with m.Else():
                            m.d.sync += q_x.eq(q_x + 1)
        for p in range(P):
            active = Signal(name=f"upd_active{p}")
            sbase = Signal.like(upd_mem_addr[p], name=f"sbase{p}")
            tbase = Signal(range(max(2, int(self.slot_depth[p]))), name=f"tbase{p}")
            gbase = Signal(range(max(2, int(self.group_depth[p]))), name=f"gbase{p}")
            pbase = Signal(range(max(2, int(self.param_depth[p]))), name=f"pbase{p}")
            pidx = Signal(range(max(2, int(self.param_depth[p]))), name=f"pidx{p}")
            # U1: the slot word, from the slot table or (regular layer) from the counters
            # and the PE's group table; ry, rx are powers of two: y = qy * ry + py is a concat
            slot1 = Signal(self.slot.width, name=f"slot1_{p}")
            grp1 = grp_r[p].data
            with m.Switch(cur):
                for i in self.neuron_layers:
                    lp = self.prog.layers[i]
                    with m.Case(i):
                        m.d.comb += [active.eq(upd_run & (upd_i < int(lp.n_slots[p]))),
                                     sbase.eq(int(self.mbase[i][p])), pbase.eq(int(self.pbase[i][p]))]
                        how = self._param_index(i)
                        m.d.comb += pidx.eq(u1_rank if how == "rank" else u1_i if how == "slot"
                                            else self.slot.get(slot1, "c"))
                        if i in self.tbase:
                            m.d.comb += [tbase.eq(int(self.tbase[i][p])), slot1.eq(slot_r[p].data)]
                        else:
                            ly, lx = lp.ry.bit_length() - 1, lp.rx.bit_length() - 1
                            m.d.comb += [gbase.eq(int(self.gbase[i][p])),
                                         slot1.eq(self.slot.pack_signals(
                                             keep=C(1, 1), c=self.grp.get(grp1, "c"),
                                             y=(u1_qy << ly) | self.grp.get(grp1, "py")[:ly],
                                             x=(u1_qx << lx) | self.grp.get(grp1, "px")[:lx]))]
            m.d.comb += [slot_r[p].addr.eq(tbase + upd_i), grp_r[p].addr.eq(gbase + q_rank)]
            m.d.sync += u1_v[p].eq(active)
            # U1: slot word -> parameter read; membrane read of the same slot
            m.d.comb += [par_r[p].addr.eq(pbase + pidx), upd_mem_addr[p].eq(sbase + u1_i)]
            m.d.sync += [u2_v[p].eq(u1_v[p]), u2_addr[p].eq(sbase + u1_i), u2_slot[p].eq(slot1)]
            # U2: the update (one unit per distinct neuron configuration)
            spike, u_next = Signal(name=f"fire{p}"), Signal(signed(self.acc_bits), name=f"u_next{p}")
            units = []
            for ci, n in enumerate(self.configs):
                u = NeuronUpdate(n, self.acc_bits)
                m.submodules[f"pe{p}_update{ci}"] = u
                units.append(u)
                b = n.membrane_bits
                m.d.comb += [u.u.eq(mem_r[p].data.as_signed()),
                             u.threshold.eq(self.param.get(par_r[p].data, "thr", True)),
                             u.bias.eq(self.param.get(par_r[p].data, "bias", True)),
                             u.keep.eq(self.slot.get(u2_slot[p], "keep")), u.last.eq(last_t)]
            with m.Switch(cur):
                for i in self.neuron_layers:
                    with m.Case(i):
                        u = units[self.config_of[i]]
                        m.d.comb += [spike.eq(u.spike), u_next.eq(u.u_next)]
            with m.If(u2_v[p]):
                m.d.comb += [mem_w[p].addr.eq(u2_addr[p]), mem_w[p].data.eq(u_next), mem_w[p].en.eq(1),
                             updates_now[p].eq(1), spikes_now[p].eq(spike)]
                push = spike | C(int(self.dense), 1)
                xyz = Cat(self.slot.get(u2_slot[p], "c"), self.slot.get(u2_slot[p], "y"),
                          self.slot.get(u2_slot[p], "x"))
                word = Cat(spike, xyz)
                with m.If(push):
                    m.d.comb += [spk_w[p].addr.eq(spk_count[p]), spk_w[p].data.eq(word), spk_w[p].en.eq(1)]
                    m.d.sync += spk_count[p].eq(spk_count[p] + 1)
            if self.trace:
                m.d.comb += [self.trace_valid[p].eq(spikes_now[p]),
                             self.trace_event[p * self.ev_xyz.width:(p + 1) * self.ev_xyz.width].eq(
                                 Cat(self.slot.get(u2_slot[p], "c"), self.slot.get(u2_slot[p], "y"),
                                     self.slot.get(u2_slot[p], "x")))]
        if self.trace:
            m.d.comb += [self.trace_layer.eq(cur), self.trace_t.eq(t)]
        n_upd, n_spk = sum(updates_now), sum(spikes_now)
        with m.If(n_upd != 0):
            count(COUNTERS.index("neuron_updates"), n_upd)
            count(COUNTERS.index("membrane_reads"), n_upd)
            count(COUNTERS.index("membrane_writes"), n_upd)
            count(COUNTERS.index("spikes"), n_spk)
        m.d.comb += upd_read.eq(upd_run | Cat(u1_v).any())

        # ---------------- OR-pool
        pool_run, sweep_run = Signal(), Signal()
        pop_pool = Signal()
        m.d.comb += pop_pool.eq(pool_run & ffs[0].r_rdy)
        p1_v, p1_new, p1_val = Signal(), Signal(), Signal()
        p1_addr = Signal(range(max(2, self.pool_depth)))
        p1_xyz = Signal(self.ev_xyz.width)
        # P0: the popped event is registered before its pooled address is computed (FIFO
        # read -> pooled index products -> bitmap address was the ECP5's critical path)
        p0_v, p0_ev = Signal(), Signal(ev.width)
        m.d.sync += [p0_v.eq(pop_pool), p0_ev.eq(head_ev)]
        hc, hy, hx = ev.get(p0_ev, "c"), ev.get(p0_ev, "y"), ev.get(p0_ev, "x")
        pinr = Signal()
        pool_addr = Signal.like(p1_addr)
        pooled = Signal(self.ev_xyz.width)
        # the sweep (dense): counters over the pooled positions
        sw_c, sw_y, sw_x = (Signal(ev.widths[k], name=f"sweep_{k}") for k in ("c", "y", "x"))
        sw_last, s1_v, s1_addr, s1_xyz = Signal(), Signal(), Signal.like(p1_addr), Signal(self.ev_xyz.width)
        sweep_addr = Signal.like(p1_addr)
        for i, l in enumerate(g.layers):
            if l.kind != "pool":
                continue
            lk = l.kernel.bit_length() - 1
            cp, hp, wp = l.out_shape
            with m.If(cur == i):
                py, px = hy >> lk, hx >> lk
                m.d.comb += [pinr.eq((py < hp) & (px < wp)), pool_addr.eq((hc * hp + py) * wp + px),
                             pooled.eq(Cat(hc, py[:ev.widths["y"]], px[:ev.widths["x"]])),
                             sweep_addr.eq((sw_c * hp + sw_y) * wp + sw_x),
                             sw_last.eq((sw_c == cp - 1) & (sw_y == hp - 1) & (sw_x == wp - 1))]
                with m.If(sweep_run):
                    _step_chw(m, sw_c, sw_y, sw_x, hp, wp)
        m.d.comb += bm_r.addr.eq(Mux(sweep_run, sweep_addr, pool_addr))
        m.d.sync += [p1_v.eq(p0_v & pinr), p1_addr.eq(pool_addr), p1_xyz.eq(pooled),
                     p1_val.eq(ev.get(p0_ev, "value") != 0),
                     s1_v.eq(sweep_run), s1_addr.eq(sweep_addr), s1_xyz.eq(Cat(sw_c, sw_y, sw_x))]
        # the consumer's reader clears a pooled event's bit when it reads the event (sparse)
        clr_v = Signal()
        clr_addr = Signal.like(p1_addr)
        if not self.dense:
            with m.If(v1r & (src_kind == 2)):
                m.d.comb += clr_v.eq(1)
                with m.Switch(cur):
                    for i in self.weighted:
                        kind, pl = self.source[i]
                        if kind != "pool":
                            continue
                        _, hp, wp = g.layers[pl].out_shape
                        with m.Case(i):
                            m.d.comb += clr_addr.eq((e1c * hp + e1y) * wp + e1x)
        n_pushed = Signal()
        if self.dense:
            with m.If(p1_v & p1_val):
                m.d.comb += [bm_w.addr.eq(p1_addr), bm_w.data.eq(1), bm_w.en.eq(1)]
            with m.If(s1_v):
                m.d.comb += [bm_w.addr.eq(s1_addr), bm_w.data.eq(0), bm_w.en.eq(1),
                             pool_w.addr.eq(pool_count), pool_w.data.eq(Cat(bm_r.data, s1_xyz)),
                             pool_w.en.eq(1), n_pushed.eq(bm_r.data)]
                m.d.sync += pool_count.eq(pool_count + 1)
        else:
            with m.If(p1_v & ~bm_r.data):
                m.d.comb += [bm_w.addr.eq(p1_addr), bm_w.data.eq(1), bm_w.en.eq(1),
                             pool_w.addr.eq(pool_count), pool_w.data.eq(Cat(C(1, 1), p1_xyz)),
                             pool_w.en.eq(1), n_pushed.eq(1)]
                m.d.sync += pool_count.eq(pool_count + 1)
            with m.Elif(clr_v):
                m.d.comb += [bm_w.addr.eq(clr_addr), bm_w.data.eq(0), bm_w.en.eq(1)]
        with m.If(n_pushed):
            count(COUNTERS.index("spikes"), 1)
        for f, pop in zip(ffs, pop_acc):
            m.d.comb += f.r_en.eq(pop | pop_pool)

        # ---------------- load, output, and the schedule
        ld_c, ld_y, ld_x = (Signal(ev.widths[k], name=f"load_{k}") for k in ("c", "y", "x"))
        cin, hin, win = g.input.shape
        out_k = Signal(range(max(2, K)))
        m.d.comb += self.scores.payload.eq(Array(score_regs)[out_k])

        @contextmanager
        def after_cycles(n: int, name: str):
            """The body runs in the n-th cycle of the current state (a pipeline drain)."""
            cnt = Signal(range(n + 1), name=name)
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == n - 1):
                m.d.sync += cnt.eq(0)
                yield

        def start_reader(i):
            """Set the reader on layer i's source queue (one cycle: the START state)."""
            kind, arg = self.source[i]
            code = {"input": 0, "spk": 1, "pool": 2}[kind]
            m.d.sync += [src_kind.eq(code), rd_idx.eq(0)]
            if kind == "spk":
                m.d.sync += [rd_q.eq(first_q), rd_active.eq(first_found)]
            elif kind == "input":
                m.d.sync += [rd_q.eq(0), rd_active.eq(in_count != 0)]
            else:
                m.d.sync += [rd_q.eq(0), rd_active.eq(pool_count != 0)]

        order = [i for i, l in enumerate(g.layers) if l.kind != "flatten"]

        def first_state(i):
            l = g.layers[i]
            return f"POOL{i}_START" if l.kind == "pool" else f"ACC{i}_START"

        def after(i):
            """The state after layer i's last phase."""
            j = order.index(i)
            return first_state(order[j + 1]) if j + 1 < len(order) else "NEXT_T"

        def leave(i):
            """Go from layer i's last phase to the next layer (entering it) or to NEXT_T."""
            nx = after(i)
            if nx != "NEXT_T":
                enter(order[order.index(i) + 1])
            m.next = nx

        def enter(i):
            """Actions on entering layer i (cur, the reset of a pool's output queue)."""
            m.d.sync += cur.eq(i)
            if g.layers[i].kind == "pool":
                m.d.sync += pool_count.eq(0)

        start_r = Signal()
        m.d.sync += start_r.eq(self.start)
        # the pixel stream: a pixel taken at one edge is written at the next (LOAD lasts one
        # cycle more than the image); ready drops once the image's last pixel is taken
        take_px, pix_v, pix_d = Signal(), Signal(), Signal.like(self.pixels.payload)
        n_taken, got_all = Signal(range(self.in_depth + 1)), Signal()
        m.d.comb += take_px.eq(self.pixels.valid & self.pixels.ready)
        m.d.sync += [pix_v.eq(take_px), pix_d.eq(self.pixels.payload)]
        with m.If(take_px):
            m.d.sync += n_taken.eq(n_taken + 1)
            with m.If(n_taken == self.in_depth - 1):
                m.d.sync += got_all.eq(1)
        # the score stream: the FSM leaves OUT the cycle after the last score is taken
        take_score, scores_sent = Signal(), Signal()
        m.d.comb += take_score.eq(self.scores.valid & self.scores.ready)
        with m.If(take_score):
            m.d.sync += out_k.eq(out_k + 1)
            with m.If(out_k == K - 1):
                m.d.sync += [last_cycles.eq(cycles + 1), scores_sent.eq(1)]
        with m.FSM(name="schedule"):
            with m.State("IDLE"):
                with m.If(start_r):
                    m.d.sync += [cycles.eq(0), in_count.eq(0), ld_c.eq(0), ld_y.eq(0), ld_x.eq(0), t.eq(0),
                                 n_taken.eq(0), got_all.eq(0)]
                    m.d.comb += clear_scores.eq(1)
                    for i in counters:
                        for s in counters[i]:
                            m.d.sync += s.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.pixels.ready.eq(~got_all)]
                with m.If(pix_v):
                    px = pix_d
                    keep = C(1, 1) if self.dense else (px != 0)
                    with m.If(keep):
                        m.d.comb += [in_w.addr.eq(in_count), in_w.data.eq(Cat(px, *(f[:self.in_ev.widths[k]] for f, k in ((ld_c, "c"), (ld_y, "y"), (ld_x, "x"))))), in_w.en.eq(1)]
                        m.d.sync += in_count.eq(in_count + 1)
                    _step_chw(m, ld_c, ld_y, ld_x, hin, win)
                    with m.If((ld_c == cin - 1) & (ld_y == hin - 1) & (ld_x == win - 1)):
                        enter(order[0])
                        m.next = first_state(order[0])
            for i in order:
                l, lp = g.layers[i], self.prog.layers[i]
                if l.kind == "pool":
                    with m.State(f"POOL{i}_START"):
                        m.d.comb += self.busy.eq(1)
                        start_reader(i)
                        m.next = f"POOL{i}_RUN"
                    with m.State(f"POOL{i}_RUN"):
                        m.d.comb += [self.busy.eq(1), pool_run.eq(1)]
                        with m.If(~rd_active & ~v1 & ~v1r & ~v2 & (ffs[0].level <= 1)):
                            m.next = f"POOL{i}_DRAIN"
                    with m.State(f"POOL{i}_DRAIN"):
                        m.d.comb += self.busy.eq(1)
                        with after_cycles(POOL_DRAIN, f"pool{i}_drain"):
                            if self.dense:
                                m.d.sync += [sw_c.eq(0), sw_y.eq(0), sw_x.eq(0), pool_count.eq(0)]
                                m.next = f"POOL{i}_SWEEP"
                            else:
                                leave(i)
                    if self.dense:
                        with m.State(f"POOL{i}_SWEEP"):
                            m.d.comb += [self.busy.eq(1), sweep_run.eq(1)]
                            with m.If(sw_last):
                                m.next = f"POOL{i}_SWEEP_DRAIN"
                        with m.State(f"POOL{i}_SWEEP_DRAIN"):
                            m.d.comb += self.busy.eq(1)
                            leave(i)
                    continue
                with m.State(f"ACC{i}_START"):
                    m.d.comb += self.busy.eq(1)
                    start_reader(i)
                    m.next = f"ACC{i}_RUN"
                with m.State(f"ACC{i}_RUN"):
                    m.d.comb += [self.busy.eq(1), acc_run.eq(1)]
                    with m.If(~rd_active & ~v1 & ~v1r & ~v2 & Cat(idle).all()):
                        m.next = f"ACC{i}_DRAIN"
                with m.State(f"ACC{i}_DRAIN"):
                    m.d.comb += self.busy.eq(1)
                    with after_cycles(ACC_DRAIN, f"acc{i}_drain"):
                        if l.kind != "output":
                            # the source's events are all read: the PE spike queues are free
                            # for this layer's own spikes
                            m.d.sync += [c.eq(0) for c in spk_count]
                        if l.kind != "output" and lp.update_cycles:
                            m.d.sync += upd_i.eq(0)
                            m.d.comb += upd_reset.eq(1)
                            m.next = f"UPD{i}_RUN"
                        else:
                            leave(i)
                if l.kind == "output" or not lp.update_cycles:
                    continue
                with m.State(f"UPD{i}_RUN"):
                    m.d.comb += [self.busy.eq(1), upd_run.eq(1)]
                    m.d.sync += upd_i.eq(upd_i + 1)
                    with m.If(upd_i == lp.update_cycles - 1):
                        m.next = f"UPD{i}_DRAIN"
                with m.State(f"UPD{i}_DRAIN"):
                    m.d.comb += self.busy.eq(1)
                    with after_cycles(UPD_DRAIN, f"upd{i}_drain"):
                        leave(i)
            with m.State("NEXT_T"):
                # zero-cycle decision folded into the previous state would need the next
                # layer's setup twice; one cycle per timestep keeps the schedule simple
                m.d.comb += self.busy.eq(1)
                with m.If(last_t):
                    m.d.sync += [out_k.eq(0), scores_sent.eq(0)]
                    m.next = "OUT"
                with m.Else():
                    m.d.sync += t.eq(t + 1)
                    enter(order[0])
                    m.next = first_state(order[0])
            with m.State("OUT"):
                m.d.comb += [self.busy.eq(1), self.scores.valid.eq(~scores_sent)]
                with m.If(scores_sent):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        layers_with_counters = sorted(counters)
        for j in range(len(COUNTERS)):
            if not parts[j]:
                continue
            total = Signal(range(4 * P * len(parts[j]) + 4), name=f"count_{COUNTERS[j]}")
            m.d.comb += total.eq(sum(parts[j]))
            now = Signal(COUNTER_BITS, name=f"counter_{COUNTERS[j]}_now")
            m.d.comb += now.eq(Array(counters[i][j] for i in layers_with_counters)[
                Array(C(layers_with_counters.index(i) if i in counters else 0, range(max(2, len(counters))))
                      for i in range(L))[cur]])
            # counting happens only while busy; testing busy (state) rather than the start
            # input keeps the counter adders out of Verilator's per-edge input region
            with m.If((total != 0) & self.busy):
                with m.Switch(cur):
                    for i in layers_with_counters:
                        with m.Case(i):
                            m.d.sync += counters[i][j].eq(now + total)
        return m
