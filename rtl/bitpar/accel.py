"""The bit-parallel, layer-major accelerator (``bitpar``), generated with Amaranth from an IR.

The same outside as `rtl.accel.Accelerator` (``start``, the ``pixels`` stream, the
``scores`` stream, ``done``, the status block, the optional spike-trace port), so the
testbench, the board top and the host driver take either.  Inside (`plan.py` for the
dataflow, `cycles.py` for the exact schedule):

- ``pixels``: the image, C-H-W order, one pixel per address (an ``events`` input has none:
  the ``aer`` stream's events are set, one read-modify-write each, into ``buf0``, cleared
  first, as the bitmap the first layer reads);
- ``buf0`` / ``buf1``: two spike bitmaps; a layer reads one and writes the other, so only
  one layer's spikes are alive beside its input.  No membrane memory: a position's
  membranes live in the lanes' registers over its T timesteps;
- ``groups``: per (layer, group) its first step and step count, and its lanes' bias and
  threshold; ``keep``: per (layer, position, group) the live-lane word, for layers with
  pruned neurons only; ``steps`` / ``weights``: one row per step: the tap offset and
  source word offset, and every lane's +1 / -1 synapse words.

Weights baked in (``weights="baked"``) make those tables ROMs, sized by the ticket.  Runtime
weights (``weights="runtime"``) make them RAMs that the ``load`` stream writes before the
first image, sized by the architecture's `capacity.BitparCapacity` so that every ticket of
the architecture runs on the same bitstream: each layer's step rows start at a fixed base,
every neuron layer reads keep words, and the groups' step counts are a small RAM
(``counts``) instead of logic.

The step pipeline: step row read -> source address and bounds -> source word and weights ->
popcounts -> accumulators (`lanes.LaneArray`).  The update runs the IR's integer LIF
(`rtl.neuron.NeuronUpdate`) once per timestep for every lane, and the spikes go to the
bitmap word of the position (ORed into the pooled word when a pool follows).

Status: address 0 is the cycle count of the last image, then `cycles.COUNTERS` for every
weighted layer, in layer order.
"""
from __future__ import annotations

import numpy as np
from amaranth import Array, C, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, wiring

from ticketforge.errors import UsageError
from ticketforge.ir.schema import Graph, Neuron
from ticketforge.rtl.bitpar.capacity import BitparCapacity, capacity_of, check_fit
from ticketforge.rtl.bitpar.cycles import COUNTERS
from ticketforge.rtl.bitpar.lanes import LaneArray, weight_layout
from ticketforge.rtl.bitpar.plan import WORD, BitparPlan, bit_index, plan_graph
from ticketforge.rtl.accel import MEMORY_STYLES, const_table, core_members, core_memory, fan_in, status_registers, u_range
from ticketforge.rtl.lane.plan import WEIGHTS, field_map, sbits, ubits
from ticketforge.rtl.neuron import NeuronUpdate

__all__ = ["BitparAccelerator", "status_map"]


def status_map(plan: BitparPlan) -> list[tuple[str, str]]:
    return [("", "cycles")] + [(lp.name, c) for lp in plan.layers for c in COUNTERS]


class BitparAccelerator(wiring.Component):
    """Parameters: the integer IR ``graph`` (binary weights), ``lanes`` (output channels per
    cycle, `plan.LANES`), ``trace`` for the spike-trace port (one entry per lane),
    ``memory_style`` (how synthesis should map the memories), ``weights`` (`WEIGHTS`) baked
    in or loaded at run time, and for runtime weights the design's ``capacity`` (default:
    `capacity.capacity_of` the graph's architecture; the graph must fit it)."""

    def __new__(cls, graph: Graph, lanes: int, trace: bool = False, memory_style: str = "auto",
                dense: bool = False, weights: str = "baked", capacity: BitparCapacity | None = None):
        if memory_style not in MEMORY_STYLES:
            raise UsageError(f"memory_style must be one of {', '.join(MEMORY_STYLES)}, got {memory_style!r}")
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a ticketforge IR Graph, got {type(graph).__name__}")
        if not isinstance(trace, bool) or not isinstance(dense, bool):
            raise TypeError(f"trace and dense must be bools, got {trace!r}, {dense!r}")
        if weights not in WEIGHTS:
            raise UsageError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        if weights == "runtime" and dense:
            raise UsageError("the dense reference bakes its weights in (dense and runtime weights exclude each other)")
        if capacity is not None and weights != "runtime":
            raise UsageError("a capacity sizes a design with runtime weights (weights=\"runtime\")")
        plan = plan_graph(graph, lanes, dense, keep_all=weights == "runtime")
        if weights == "runtime":
            capacity = capacity if capacity is not None else capacity_of(graph, lanes)
            check_fit(capacity, graph, plan=plan)
        self = super().__new__(cls, src_loc_at=1)
        self.plan, self.capacity = plan, capacity
        return self

    def __init__(self, graph: Graph, lanes: int, trace: bool = False, memory_style: str = "auto",
                 dense: bool = False, weights: str = "baked", capacity: BitparCapacity | None = None):
        self.plan: BitparPlan
        self.capacity: BitparCapacity | None
        g = self.graph = graph
        self.L, self.P, self.trace, self.memory_style = lanes, lanes, trace, memory_style
        self.dense, self.weights, self.runtime = dense, weights, weights == "runtime"
        self.fifo_depth = None          # no event FIFOs in this datapath
        self._sizes()
        self._loadable()
        super().__init__(core_members(g, self.score_bits, len(self.status), lanes, self.ev_xyz.width, trace,
                                      self.load_layout if self.runtime else None))

    # ------------------------------------------------------------ sizes and tables
    def _sizes(self) -> None:
        g, plan, L = self.graph, self.plan, self.L
        max_in = (1 << g.input.bits) - 1
        acc_need, u_need = [], []
        for lp in plan.layers:
            l = g.layers[lp.index]
            fi = max(1, fan_in(g, l))
            value = (max_in if lp.first else 1) * ((1 << (l.weight_bits - 1)) - 1)     # the largest |input x w|
            top = fi * value
            acc_need.append(sbits(-top, top))
            if lp.kind == "output":
                self.score_bits = sbits(-top * g.T, top * g.T)
            else:
                u_need.append(max(l.neuron.membrane_bits + 1, sbits(*u_range(g, l, value))))
        self.acc_bits = max(acc_need + [WORD.bit_length() + 2, g.input.bits + 2])
        self.u_bits = max(u_need)
        cap = self.capacity
        if cap is not None:             # runtime weights: widths for every ticket of the architecture
            self.acc_bits, self.u_bits, self.score_bits = cap.acc_bits, cap.u_bits, cap.score_bits
        self.status = status_map(plan)
        shapes = [g.input.shape] + [l.out_shape for l in g.layers if l.kind in ("conv", "linear")]
        cmax = max(s[0] for s in shapes)
        hmax = max(s[1] if len(s) == 3 else 1 for s in shapes)
        wmax = max(s[2] if len(s) == 3 else 1 for s in shapes)
        # the trace port's event fields (c, y, x), least significant first: what the testbench
        # decodes from the rtl manifest's ``trace_fields``
        self.ev_xyz = field_map(data.StructLayout({"c": unsigned(ubits(cmax - 1)), "y": unsigned(ubits(hmax - 1)),
                                                   "x": unsigned(ubits(wmax - 1))}))
        # step rows and group table, stacked over the layers (runtime weights: each layer's
        # rows from its fixed base, the rows up to the next base unused: ``None``)
        self.step_base, self.group_base, self.keep_base = [], [], []
        rows, groups, keeps = [], [], []
        for li, lp in enumerate(plan.layers):
            if cap is not None:
                rows += [None] * (cap.row_bases[li] - len(rows))
            self.group_base.append(len(groups))
            self.step_base.append(len(rows))
            self.keep_base.append(len(keeps))
            for grp, srows in enumerate(lp.steps):
                groups.append((len(rows), len(srows), grp))
                rows += srows
            if lp.keep is not None:
                keeps += [int(v) for v in lp.keep.reshape(-1)]
        if cap is not None:
            rows += [None] * (sum(cap.rows) - len(rows))
        self.rows, self.group_rows, self.keep_words = rows, groups, keeps
        used = [r for r in rows if r is not None]
        offs = [r.off for r in used] + [0]
        dd = [abs(r.dy) for r in used] + [abs(r.dx) for r in used] + [0]
        self.off_bits = cap.off_bits if cap is not None else sbits(min(offs), max(offs))
        self.d_bits = cap.d_bits if cap is not None else ubits(max(dd)) + 1
        self.count_bits = ubits(cap.group_rows if cap is not None else
                                max((len(s) for lp in plan.layers for s in lp.steps), default=1))
        # multi-bit weights: the magnitude bit a row adds (plan.StepRow.shift); none when binary
        self.wshift_max = max(l.weight_bits - 2 for l in g.layers if l.has_weights)
        self.step_layout = data.StructLayout({"off": signed(self.off_bits), "dy": signed(self.d_bits),
                                              "dx": signed(self.d_bits)}
                                             | ({"shift": unsigned(ubits(self.wshift_max))} if self.wshift_max else {}))
        self.param_bits = self.u_bits
        self.group_layout = data.StructLayout({
            "start": ubits(max(len(rows), 1)), "count": self.count_bits,
            "bias": data.ArrayLayout(signed(self.param_bits), L),
            "thr": data.ArrayLayout(signed(self.param_bits), L)})
        self.configs: list[Neuron] = []
        for lp in plan.layers:
            n = g.layers[lp.index].neuron
            if n is not None and n not in self.configs:
                self.configs.append(n)
        self.memories = []

    LOADABLE = ("steps", "weights", "groups", "keep", "counts")

    def _loadable(self) -> None:
        """Runtime weights: the memories the ``load`` port writes (`LOADABLE`, numbered in that
        order), with the ``load`` stream's word layout."""
        self.loadable, self.load_layout = [], None
        if not self.runtime:
            return
        widths = {"steps": self.step_layout.size, "weights": weight_layout(self.L).size,
                  "groups": self.group_layout.size, "keep": self.L, "counts": self.count_bits}
        depths = {"steps": len(self.rows), "weights": len(self.rows), "groups": len(self.group_rows),
                  "keep": len(self.keep_words), "counts": len(self.group_rows)}
        self.loadable = [{"index": i, "name": n, "depth": max(1, depths[n]), "width": widths[n]}
                         for i, n in enumerate(self.LOADABLE)]
        self.load_index = {d["name"]: d["index"] for d in self.loadable}
        self.load_layout = data.StructLayout({
            "memory": range(len(self.loadable)),
            "addr": unsigned(ubits(max(d["depth"] for d in self.loadable) - 1)),
            "data": unsigned(max(d["width"] for d in self.loadable))})

    def load_contents(self) -> list[tuple[dict, list[int]]]:
        """Each loadable memory with its words: the ticket's tables (runtime weights)."""
        def word(layout, value) -> int:
            return Const.cast(layout.const(value)).value

        wl = weight_layout(self.L)
        zero_w = [{"pos": 0, "neg": 0}] * self.L
        words = {
            "steps": [word(self.step_layout, self._step_word(r) if r else {}) for r in self.rows],
            "weights": [word(wl, [{"pos": p, "neg": q} for p, q in zip(r.pos, r.neg)] if r else zero_w)
                        for r in self.rows],
            "groups": [word(self.group_layout, v) for v in self._group_init()],
            "keep": list(self.keep_words),
            "counts": [count for _, count, _ in self.group_rows]}
        return [(d, (words[d["name"]] or [0])[:d["depth"]]) for d in self.loadable]

    def _step_word(self, r) -> dict:
        return {"off": r.off, "dy": r.dy, "dx": r.dx} | ({"shift": r.shift} if self.wshift_max else {})

    def _group_init(self):
        out = []
        for lp in self.plan.layers:
            for grp in range(lp.groups):
                start, count, _ = self.group_rows[self.group_base[self.plan.layers.index(lp)] + grp]
                bias, thr = [], []
                for lane in range(self.L):
                    o = grp * self.L + lane
                    ok = lp.kind != "output" and o < lp.out_channels
                    bias.append(int(lp.bias[o]) if ok else 0)
                    thr.append(int(lp.threshold[o]) if ok else 1)
                out.append({"start": start, "count": count, "bias": bias, "thr": thr})
        return out

    # ------------------------------------------------------------ hardware
    def _event_load(self, m: Module, rd, wr, plan: BitparPlan, load_i, cur) -> None:
        """The A machine's input states for an ``events`` input: ``CLEAR`` zeroes the input
        bitmap in ``buf0`` (one word a cycle), then ``AER`` takes a word a cycle: an event's
        bitmap word is read and, in ``SET``, written back with the event's bit (timestep,
        channel: `plan.bit_index`) set; a step word moves to the next timestep, and the last
        one starts the first layer.  Cycles: input words + 2 per event + T
        (`cycles.load_cycles`)."""
        g, T, L = self.graph, plan.T, plan.L
        n_ch, _, W = g.input.shape
        chunks = -(-n_ch // WORD)
        full = (1 << (WORD // L)) - 1                    # every granule of the word
        t_in = Signal(range(max(2, T)))
        ev_addr = Signal(range(max(2, plan.input_words)))
        ev_bit = Signal(range(T * WORD))
        pl = self.aer.payload
        cc = pl.c[:5] if len(pl.c) > 5 else pl.c          # channel in its chunk of 32
        with m.State("CLEAR"):
            m.d.comb += [self.busy.eq(1), wr.addr.eq(load_i), wr.data.eq(0), wr.en.eq(full)]
            m.d.sync += load_i.eq(load_i + 1)
            with m.If(load_i == plan.input_words - 1):
                m.d.sync += t_in.eq(0)
                m.next = "AER"
        with m.State("AER"):
            word = (pl.y * W + pl.x) * chunks + (pl.c >> 5 if len(pl.c) > 5 else 0)
            m.d.comb += [self.busy.eq(1), self.aer.ready.eq(1), rd.addr.eq(word)]
            with m.If(self.aer.valid):
                with m.If(pl.step):
                    m.d.sync += t_in.eq(t_in + 1)
                    with m.If(t_in == T - 1):
                        m.d.sync += cur.eq(0)
                        m.next = "LSETUP"
                with m.Else():
                    # bit_index(T, L, t, cc) = (cc // L) * T * L + t * L + cc % L
                    lb = L.bit_length() - 1
                    m.d.sync += [ev_addr.eq(word),
                                 ev_bit.eq((cc >> lb) * (T * L) + t_in * L + (cc & (L - 1)))]
                    m.next = "SET"
        with m.State("SET"):
            m.d.comb += [self.busy.eq(1), wr.addr.eq(ev_addr), wr.en.eq(full),
                         wr.data.eq(rd.data | (C(1, T * WORD) << ev_bit)[:T * WORD])]
            m.next = "AER"

    def elaborate(self, platform):
        m = Module()
        g, plan, L, T = self.graph, self.plan, self.L, self.graph.T
        layers = plan.layers
        NL = len(layers)
        K = g.layers[-1].out_shape[0]
        self.memories = []

        load = self.load if self.runtime else None

        def mk(name, shape, depth, init=(), rom=False, comb_read=False):
            return core_memory(m, self, name, shape, depth, init, rom, comb_read)

        # ---------------- memories
        n_pix = int(np.prod(g.input.shape))
        events = g.input.events
        planes = layers[0].planes       # a linear first layer reads 32-pixel words by bit plane
        if events:
            pix_w = pix_r = None        # the events go into buf0 (below)
        elif planes:
            pix = mk("pixels", unsigned(WORD * planes), -(-n_pix // WORD))
            pix_w, pix_r = pix.write_port(granularity=planes), pix.read_port()
        else:
            pix = mk("pixels", unsigned(g.input.bits), n_pix)
            pix_w, pix_r = pix.write_port(), pix.read_port()
        BW = T * WORD
        gran = T * L
        bufs = [mk(f"buf{b}", unsigned(BW), plan.buffer_depth) for b in range(2)]
        buf_w = [b.write_port(granularity=gran) for b in bufs]
        buf_r = [b.read_port() for b in bufs]
        if load is not None:
            m.d.comb += load.ready.eq(1)
        steps = mk("steps", self.step_layout, len(self.rows),
                   [self._step_word(r) for r in self.rows if r is not None], rom=True)
        step_r = steps.read_port()
        wl = weight_layout(L)
        weights = mk("weights", wl, len(self.rows),
                     [[{"pos": p, "neg": q} for p, q in zip(r.pos, r.neg)] for r in self.rows if r is not None],
                     rom=True)
        weight_r = weights.read_port()
        groups = mk("groups", self.group_layout, len(self.group_rows), self._group_init(), rom=True)
        group_r = groups.read_port()
        has_keep = bool(self.keep_words) or self.runtime
        if has_keep:
            keepm = mk("keep", unsigned(L), len(self.keep_words), self.keep_words, rom=True)
            keep_r = keepm.read_port()

        # the lanes' shift: the pixel bit plane (a linear first layer) plus the weight bit
        shifts = max(planes - 1, 0) + self.wshift_max + 1
        lanes = m.submodules.lanes = LaneArray(L, T, self.acc_bits, g.input.bits, shifts)

        # ---------------- per-layer constants, indexed by the current layer
        table = const_table

        cur = Signal(range(max(2, NL)))
        Ho = table([lp.out_hw[0] for lp in layers])[cur]
        Wo = table([lp.out_hw[1] for lp in layers])[cur]
        G = table([lp.groups for lp in layers])[cur]
        Hs = table([lp.src_shape[1] for lp in layers])[cur]
        Ws = table([lp.src_shape[2] for lp in layers])[cur]
        stride = [lp.stride for lp in layers]
        # source base address steps: along x, along y (per output row), per layer
        sx_step = table([lp.stride * lp.src_chunks for lp in layers])[cur]
        sy_step = table([lp.stride * lp.src_shape[2] * lp.src_chunks for lp in layers])[cur]
        pool = table([lp.pool for lp in layers])[cur]
        is_pool = table([int(lp.pool > 0) for lp in layers])[cur]
        Hp_rows = table([(lp.out_hw[0] // lp.pool * lp.pool) if lp.pool else lp.out_hw[0] for lp in layers])[cur]
        Wp_cols = table([(lp.out_hw[1] // lp.pool * lp.pool) if lp.pool else lp.out_hw[1] for lp in layers])[cur]
        dx_step = table([lp.dst_chunks for lp in layers])[cur]                     # per pooled column
        dy_step = table([lp.dst_hw[1] * lp.dst_chunks for lp in layers])[cur]      # per pooled row
        first = table([int(lp.first and not lp.planes) for lp in layers])[cur]     # one pixel a step
        is_out = table([int(lp.kind == "output") for lp in layers])[cur]
        rbuf = table([lp.read_buf for lp in layers])[cur]
        gbase = table(self.group_base)[cur]
        kbase = table(self.keep_base)[cur]
        lkeep = table([int(lp.keep is not None) for lp in layers])[cur]
        cfg = table([self.configs.index(g.layers[lp.index].neuron) if lp.kind != "output" else 0
                     for lp in layers])[cur]
        layer_index = table([lp.index for lp in layers])[cur]
        last_group_chunk = WORD // L          # groups per bitmap chunk

        step_base = table(self.step_base)[cur]
        valid_lanes = Array(Const((1 << (lp.out_channels - (lp.groups - 1) * L)) - 1, L) for lp in layers)[cur]
        full = Const((1 << L) - 1, L)
        D_live = T + 3            # handoff -> fetch, T updates, write-back read, write
        D_dead, D_out = 3, 2

        # ---------------- A: the step sequencer (position, group, step)
        y = Signal(range(max(2, max(lp.out_hw[0] for lp in layers) + 1)))
        x = Signal(range(max(2, max(lp.out_hw[1] for lp in layers) + 1)))
        ys = Signal(range(max(2, max(lp.out_hw[0] * lp.stride for lp in layers) + 1)))      # y * stride
        xs = Signal(range(max(2, max(lp.out_hw[1] * lp.stride for lp in layers) + 1)))
        addr_max = max(plan.buffer_depth, n_pix) * 4 + 4
        src_row = Signal(range(addr_max))
        src_base = Signal(range(addr_max))
        ry = Signal(range(33))
        rx = Signal(range(33))
        dst_row = Signal(range(addr_max))
        dst_col = Signal(range(addr_max))
        grp = Signal(range(max(2, max(lp.groups for lp in layers) + 1)))
        sub = Signal(range(max(2, last_group_chunk)))
        chunk = Signal(range(max(2, max(lp.dst_chunks for lp in layers) + 1)))
        kaddr = Signal(range(max(2, len(self.keep_words) + 1)))
        gstart = Signal(range(max(2, len(self.rows) + 1)))
        most_rows = (self.capacity.group_rows if self.runtime
                     else max((len(s) for lp in layers for s in lp.steps), default=1))
        k = Signal(range(max(2, most_rows + 1)))
        since = Signal(range(D_live + 2))            # cycles since the last group's last step
        d_prev = Signal(range(D_live + 1))           # what that group holds B for
        fresh = Signal()                             # the keep word is on keep_r.data this cycle
        keep_reg = Signal(L)
        load_i = Signal(range(max(2, n_pix)))
        out_i = Signal(range(max(2, K)))

        # per (layer, group): step count, in logic (the sequencer needs the next group's
        # count in the cycle it issues the current group's last step); the groups' steps
        # are stored one after another, so a group's first row is the previous one's end
        count = Signal(self.count_bits)
        if self.runtime:
            # a RAM read in the same cycle (LUT RAM on the ECP5, flip-flops on the iCE40: a
            # few dozen words), written through the load port
            counts_r = mk("counts", unsigned(self.count_bits), len(self.group_rows), comb_read=True).read_port(
                domain="comb")
            m.d.comb += [counts_r.addr.eq(gbase + grp), count.eq(counts_r.data)]
        else:
            counts = Array(Array(Const(len(s), unsigned(self.count_bits)) for s in lp.steps) for lp in layers)
            m.d.comb += count.eq(counts[cur][grp])

        keep_now = Signal(L)
        if has_keep:
            m.d.comb += keep_now.eq(Mux(lkeep, Mux(fresh, keep_r.data, keep_reg), Mux(grp == G - 1, valid_lanes, full)))
        else:
            m.d.comb += keep_now.eq(Mux(grp == G - 1, valid_lanes, full))
        with m.If(fresh):
            m.d.sync += keep_reg.eq(keep_now)
        dead = Signal()
        m.d.comb += dead.eq(~keep_now.any() & ~is_out & (not self.dense))
        null = Signal()
        m.d.comb += null.eq(dead | (count == 0))
        is_last = Signal()
        if planes:
            plane = Signal(range(max(2, planes)))
            plane_last = Signal()
            m.d.comb += [plane_last.eq((plane == planes - 1) | (cur != 0)),
                         is_last.eq(null | ((k == count - 1) & plane_last))]
        else:
            m.d.comb += is_last.eq(null | (k == count - 1))
        may_issue = Signal()
        m.d.comb += may_issue.eq(~is_last | (since >= d_prev))

        # tags of a group, queued when its last step is issued and taken when that step
        # reaches the accumulators (at most 3 are in flight in the 4-stage pipeline: last steps are >= 2 cycles apart)
        wb_addr_a = Signal(range(addr_max))
        m.d.comb += wb_addr_a.eq(dst_row + dst_col + chunk)
        tag_layout = data.StructLayout({
            "grp": len(grp), "keep": L, "dead": 1, "wb_addr": len(wb_addr_a), "sub": len(sub),
            "first_in_window": 1, "wb_keep": 1, "y": len(y), "x": len(x)})
        tags = m.submodules.tags = fifo.SyncFIFO(width=tag_layout.size, depth=4)
        tag_in = Signal(tag_layout)
        m.d.comb += [tag_in.grp.eq(grp), tag_in.keep.eq(keep_now), tag_in.dead.eq(dead), tag_in.wb_addr.eq(wb_addr_a),
                     tag_in.sub.eq(sub), tag_in.first_in_window.eq((ry == 0) & (rx == 0)),
                     tag_in.wb_keep.eq((y < Hp_rows) & (x < Wp_cols)), tag_in.y.eq(y), tag_in.x.eq(x),
                     tags.w_data.eq(tag_in)]

        # ---------------- the step pipeline: S0 issue -> S1 row -> S2 source word -> S3
        # registered word and weights -> S4 accumulate.  The register in S3 is there for timing:
        # the source word fans out to every lane's popcount tree, and straight from a block
        # RAM's output (clock-to-out, then the routing to all lanes) it was the ECP5's critical
        # path.  The weights go to one lane each: their ROM is read one stage later instead.
        issue = Signal()
        v1, last1, v2, last2, last3 = Signal(), Signal(), Signal(), Signal(), Signal()
        v3, last4 = Signal(), Signal()
        s1_row = Signal.like(gstart)
        s1_ys, s1_xs, s1_base = Signal.like(ys), Signal.like(xs), Signal.like(src_base)
        m.d.comb += step_r.addr.eq(gstart + k)
        m.d.sync += [v1.eq(issue & ~null), last1.eq(issue & is_last), s1_row.eq(gstart + k),
                     s1_ys.eq(ys), s1_xs.eq(xs), s1_base.eq(src_base)]
        row = step_r.data
        iy = Signal(signed(len(ys) + self.d_bits + 1))
        ix = Signal(signed(len(xs) + self.d_bits + 1))
        m.d.comb += [iy.eq(s1_ys + row.dy), ix.eq(s1_xs + row.dx)]
        inb = Signal()
        m.d.comb += inb.eq((iy >= 0) & (iy < Hs) & (ix >= 0) & (ix < Ws))
        src_addr = Signal(signed(len(src_base) + self.off_bits + 1))
        m.d.comb += src_addr.eq(s1_base + row.off)
        s2_row = Signal.like(s1_row)
        m.d.comb += weight_r.addr.eq(s2_row)
        if not events:
            m.d.comb += pix_r.addr.eq(src_addr)
        m.d.sync += [v2.eq(v1 & inb), last2.eq(last1), last3.eq(last2), v3.eq(v2), last4.eq(last3),
                     s2_row.eq(s1_row)]
        if planes:
            s1_plane, s2_plane, s3_plane = Signal.like(plane), Signal.like(plane), Signal.like(plane)
            m.d.sync += [s1_plane.eq(plane), s2_plane.eq(s1_plane), s3_plane.eq(s2_plane)]
        if self.wshift_max:         # the row's weight bit, from S1 (the row) to S3 (its weights)
            s2_wshift, s3_wshift = Signal(range(self.wshift_max + 1)), Signal(range(self.wshift_max + 1))
            m.d.sync += [s2_wshift.eq(row.shift), s3_wshift.eq(s2_wshift)]
        wb_addr = Signal(range(addr_max))
        for b in range(2):
            m.d.comb += buf_r[b].addr.eq(Mux(rbuf == b, src_addr, wb_addr))
        src_word = Mux(rbuf, buf_r[1].data, buf_r[0].data)
        handoff = Signal()
        if planes:
            # bit plane b of the 32 pixels of the word, as every timestep's spike word
            pw = pix_r.data
            bits_b = Signal(WORD)
            m.d.comb += bits_b.eq(Array(Cat(pw[j * planes + b] for j in range(WORD)) for b in range(planes))[s2_plane])
            where = {bit_index(T, L, tt, cc): cc for tt in range(T) for cc in range(WORD)}
            plane_word = Cat(bits_b[where[i]] for i in range(T * WORD))
            src_word = Mux(cur == 0, plane_word, src_word)

        if shifts > 1:
            m.d.comb += lanes.shift.eq((s3_plane if planes else 0) + (s3_wshift if self.wshift_max else 0))
        word_q, pixel_q = Signal(T * WORD), Signal(g.input.bits if events else len(pix_r.data))
        m.d.sync += word_q.eq(src_word)
        if not events:
            m.d.sync += pixel_q.eq(pix_r.data)
        m.d.comb += [handoff.eq(last4), lanes.spikes.eq(word_q), lanes.pixel.eq(pixel_q),
                     lanes.weights.eq(weight_r.data), lanes.first.eq(first), lanes.add.eq(v3),
                     lanes.clear.eq(handoff), tags.r_en.eq(handoff)]

        # ---------------- B: update and write-back of the group handed on
        # The update path is the slowest of B's: the snapshots are a shift register (timestep
        # t's sum is always in snap[.][0], no T-way multiplexer) and the layer's input shift
        # and neuron configuration are registered when the layer starts (no decode of the
        # layer index in the path).
        snap = [[Signal(signed(self.acc_bits), name=f"snap{lane}_{tt}") for tt in range(T)] for lane in range(L)]
        tb = Signal(tag_layout)
        upd = Signal()
        with m.If(upd):
            for lane in range(L):
                m.d.sync += [snap[lane][tt].eq(snap[lane][tt + 1]) for tt in range(T - 1)]
        with m.If(handoff):
            m.d.sync += tb.eq(tags.r_data)
            for lane in range(L):
                m.d.sync += [snap[lane][tt].eq(lanes.total[lane][tt]) for tt in range(T)]
        shifts = sorted({lp.input_shift for lp in layers})
        b_shift = Signal(range(max(2, len(shifts))))
        b_cfg = Signal(range(max(2, len(self.configs))))
        t = Signal(range(max(2, T)))
        U = [Signal(signed(self.u_bits), name=f"u{lane}") for lane in range(L)]
        spk = [Signal(T, name=f"spk{lane}") for lane in range(L)]
        scores = [Signal(signed(self.score_bits), name=f"score{kk}") for kk in range(K)]
        fetch = Signal()
        if self.runtime:
            # the group table is a RAM here, and its block RAM's clock-to-out ahead of the update
            # loop was the critical path (33.2 MHz on the ECP5 for vgg9_binw): it is read at the
            # handoff, from the tag being taken, and registered in FETCH, the same cycles
            tag_out = Signal(tag_layout)
            gr = Signal(self.group_layout)
            m.d.comb += [tag_out.eq(tags.r_data), group_r.addr.eq(gbase + Mux(handoff, tag_out.grp, tb.grp))]
            with m.If(fetch):
                m.d.sync += gr.eq(group_r.data)
        else:
            m.d.comb += group_r.addr.eq(gbase + tb.grp)
            gr = group_r.data
        fire = Signal(L)
        for lane in range(L):
            acc_t = snap[lane][0]
            shifted = Array(acc_t << s for s in shifts)[b_shift] if len(shifts) > 1 else acc_t << shifts[0]
            u = Signal(signed(self.u_bits), name=f"u_in{lane}")
            m.d.comb += u.eq(Mux(t == 0, gr.bias[lane], U[lane]) + shifted)
            spikes, nexts = [], []
            for ci, n in enumerate(self.configs):
                nu = NeuronUpdate(n, self.u_bits)
                m.submodules[f"nu{lane}_{ci}"] = nu
                m.d.comb += [nu.u.eq(u), nu.threshold.eq(gr.thr[lane]), nu.bias.eq(gr.bias[lane]),
                             nu.keep.eq(tb.keep[lane]), nu.last.eq(0)]
                spikes.append(nu.spike)
                nexts.append(nu.u_next)
            m.d.comb += fire[lane].eq(Array(spikes)[b_cfg] if spikes else 0)
            with m.If(upd & ~is_out):
                m.d.sync += [U[lane].eq(Array(nexts)[b_cfg] if nexts else 0),
                             spk[lane].eq(Mux(t == 0, 0, spk[lane]) | (fire[lane] << t))]
        for kk in range(K):
            gk, lk = divmod(kk, L)
            with m.If(upd & is_out & (tb.grp == gk)):
                m.d.sync += scores[kk].eq(sum(snap[lk][tt] for tt in range(T)))

        wb_write = Signal()
        granule = Signal(gran)
        m.d.comb += [wb_addr.eq(tb.wb_addr),
                     granule.eq(Mux(tb.dead, 0, Cat(*[Cat(spk[lane][tt] for lane in range(L)) for tt in range(T)])))]
        old = Mux(rbuf, buf_r[0].data, buf_r[1].data)      # the destination is the other buffer
        old_granule = Array(old[j * gran:(j + 1) * gran] for j in range(WORD // L))[tb.sub]
        new_granule = Mux(is_pool & ~tb.first_in_window, old_granule | granule, granule)
        for b in range(2):
            m.d.comb += [buf_w[b].addr.eq(wb_addr), buf_w[b].data.eq(Cat(*[new_granule] * (WORD // L)))]
            m.d.comb += buf_w[b].en.eq(Mux(wb_write & tb.wb_keep & (rbuf != b), 1 << tb.sub, 0))

        b_idle = Signal()
        with m.FSM(name="b"):
            with m.State("IDLE"):
                m.d.comb += b_idle.eq(1)
                with m.If(handoff):
                    m.next = "FETCH"
            with m.State("FETCH"):                  # the group's bias and thresholds are read
                m.d.comb += fetch.eq(1)
                m.d.sync += t.eq(0)
                with m.If(tb.dead & ~is_out):
                    m.next = "WBREAD"
                with m.Else():
                    m.next = "UPD"
            with m.State("UPD"):
                m.d.comb += upd.eq(1)
                m.d.sync += t.eq(t + 1)
                with m.If(is_out):
                    m.next = "IDLE"
                    with m.If(handoff):
                        m.next = "FETCH"
                with m.Elif(t == T - 1):
                    m.next = "WBREAD"
            with m.State("WBREAD"):
                m.next = "WBWRITE"
            with m.State("WBWRITE"):
                m.d.comb += wb_write.eq(1)
                m.next = "IDLE"
                with m.If(handoff):
                    m.next = "FETCH"

        # ---------------- A's control
        clear_counters = Signal()
        cnt_now = {c: Signal(range(L + 2), name=f"inc_{c}") for c in COUNTERS}
        pipe_empty = Signal()
        m.d.comb += pipe_empty.eq(~last1 & ~last2 & ~last3 & ~last4 & b_idle)
        m.d.comb += [self.busy.eq(0), self.done.eq(0), self.scores.valid.eq(0),
                     self.scores.payload.eq(Array(scores)[out_i]), issue.eq(0), tags.w_en.eq(0)]
        if events:
            m.d.comb += self.aer.ready.eq(0)
        else:
            m.d.comb += [self.pixels.ready.eq(0), pix_w.en.eq(0), pix_w.addr.eq(load_i),
                         pix_w.data.eq(self.pixels.payload)]
        if has_keep:
            m.d.comb += keep_r.addr.eq(kaddr)
        with m.If(since != D_live + 1):
            m.d.sync += since.eq(since + 1)
        m.d.sync += fresh.eq(0)

        def layer_start():
            m.d.sync += [y.eq(0), x.eq(0), ys.eq(0), xs.eq(0), src_row.eq(0), src_base.eq(0), ry.eq(0), rx.eq(0),
                         dst_row.eq(0), dst_col.eq(0), grp.eq(0), sub.eq(0), chunk.eq(0), k.eq(0),
                         since.eq(D_live + 1), d_prev.eq(0)]

        def next_group():
            """After a group's last step: the next group, position or layer."""
            last_grp = grp == G - 1
            m.d.sync += [kaddr.eq(kaddr + lkeep), k.eq(0), gstart.eq(gstart + count)]
            with m.If(~last_grp):
                m.d.sync += grp.eq(grp + 1)
                with m.If(sub == last_group_chunk - 1):
                    m.d.sync += [sub.eq(0), chunk.eq(chunk + 1)]
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
                m.next = "ISSUE"
                if has_keep:
                    with m.If(lkeep):
                        m.next = "KREAD"
            with m.Else():
                m.d.sync += [grp.eq(0), sub.eq(0), chunk.eq(0), gstart.eq(step_base)]
                last_x, last_y = x == Wo - 1, y == Ho - 1
                with m.If(~last_x):
                    m.d.sync += [x.eq(x + 1), xs.eq(Array(C(s) for s in stride)[cur] + xs),
                                 src_base.eq(src_base + sx_step)]
                    with m.If(rx == pool - 1):
                        m.d.sync += [rx.eq(0), dst_col.eq(dst_col + dx_step)]
                    with m.Elif(is_pool):
                        m.d.sync += rx.eq(rx + 1)
                    with m.Else():
                        m.d.sync += dst_col.eq(dst_col + dx_step)
                with m.Elif(~last_y):
                    m.d.sync += [x.eq(0), xs.eq(0), rx.eq(0), dst_col.eq(0), y.eq(y + 1),
                                 ys.eq(Array(C(s) for s in stride)[cur] + ys),
                                 src_row.eq(src_row + sy_step), src_base.eq(src_row + sy_step)]
                    with m.If(ry == pool - 1):
                        m.d.sync += [ry.eq(0), dst_row.eq(dst_row + dy_step)]
                    with m.Elif(is_pool):
                        m.d.sync += ry.eq(ry + 1)
                    with m.Else():
                        m.d.sync += dst_row.eq(dst_row + dy_step)
                with m.If(last_x & last_y):
                    m.next = "LWAIT"
                with m.Else():
                    m.next = "ISSUE"
                    if has_keep:
                        with m.If(lkeep):
                            m.next = "KREAD"

        with m.FSM(name="a"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += load_i.eq(0)
                    m.d.comb += clear_counters.eq(1)
                    m.next = "CLEAR" if events else "LOAD"
            if events:
                self._event_load(m, buf_r[0], buf_w[0], plan, load_i, cur)
            else:
                with m.State("LOAD"):
                    m.d.comb += [self.busy.eq(1), self.pixels.ready.eq(1)]
                    if planes:      # pixel i is byte lane i mod 32 of word i / 32
                        m.d.comb += [pix_w.en.eq(Mux(self.pixels.valid, 1 << load_i[:5], 0)),
                                     pix_w.addr.eq(load_i[5:]), pix_w.data.eq(Cat(*[self.pixels.payload] * WORD))]
                    else:
                        m.d.comb += pix_w.en.eq(self.pixels.valid)
                    with m.If(self.pixels.valid):
                        m.d.sync += load_i.eq(load_i + 1)
                        with m.If(load_i == n_pix - 1):
                            m.d.sync += cur.eq(0)
                            m.next = "LSETUP"
            with m.State("LSETUP"):
                m.d.comb += self.busy.eq(1)
                layer_start()
                m.d.sync += [kaddr.eq(kbase), gstart.eq(step_base),
                             b_shift.eq(table([shifts.index(lp.input_shift) for lp in layers])[cur]), b_cfg.eq(cfg)]
                m.next = "ISSUE"
                if has_keep:
                    with m.If(lkeep):
                        m.next = "KREAD"
            with m.State("KREAD"):                  # the group's keep word (layers with pruned neurons)
                m.d.comb += self.busy.eq(1)
                m.d.sync += fresh.eq(1)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.busy.eq(1)
                with m.If(may_issue):
                    m.d.comb += issue.eq(1)
                    if planes:
                        with m.If(plane_last):
                            m.d.sync += [k.eq(k + 1), plane.eq(0)]
                        with m.Else():
                            m.d.sync += plane.eq(plane + 1)
                    else:
                        m.d.sync += k.eq(k + 1)
                    with m.If(is_last):
                        if planes:              # a dead group's one empty step leaves the plane at 1
                            m.d.sync += plane.eq(0)
                        m.d.comb += tags.w_en.eq(1)
                        m.d.sync += [since.eq(1), d_prev.eq(Mux(is_out, D_out, Mux(dead, D_dead, D_live)))]
                        next_group()
            with m.State("LWAIT"):                  # the layer's last write-back is done
                m.d.comb += self.busy.eq(1)
                with m.If(pipe_empty):
                    with m.If(cur == NL - 1):
                        m.d.sync += out_i.eq(0)
                        m.next = "OUT"
                    with m.Else():
                        m.d.sync += cur.eq(cur + 1)
                        m.next = "LSETUP"
            with m.State("OUT"):
                m.d.comb += [self.busy.eq(1), self.scores.valid.eq(1)]
                with m.If(self.scores.ready):
                    m.d.sync += out_i.eq(out_i + 1)
                    with m.If(out_i == K - 1):
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"

        def popcount_signal(v):
            total = C(0, 1)
            for i in range(len(v)):
                total = total + v[i]
            return total

        m.d.comb += [cnt_now["steps"].eq(issue & ~null),
                     cnt_now["neuron_updates"].eq(Mux(upd & ~is_out, popcount_signal(tb.keep), 0)),
                     cnt_now["spikes"].eq(Mux(upd & ~is_out, popcount_signal(fire), 0)),
                     cnt_now["words_written"].eq(wb_write & tb.wb_keep)]

        # ---------------- counters and status
        status_registers(m, self, clear_counters, cur, {lp.name: cnt_now for lp in layers}, COUNTERS)

        # ---------------- trace: every lane's spike of this update cycle
        if self.trace:
            xyz = self.ev_xyz
            m.d.comb += [self.trace_valid.eq(Mux(upd & ~is_out, fire, 0)), self.trace_layer.eq(layer_index),
                         self.trace_t.eq(t)]
            for lane in range(L):
                c = tb.grp * L + lane
                word = Cat(_fit(c, xyz.widths["c"]), _fit(tb.y, xyz.widths["y"]), _fit(tb.x, xyz.widths["x"]))
                m.d.comb += self.trace_event[lane * xyz.width:(lane + 1) * xyz.width].eq(word)
        return m

def _fit(v, width):
    return v[:width] if len(v) >= width else Cat(v, C(0, width - len(v)))

