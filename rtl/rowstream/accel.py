"""The row-streaming accelerator (``rowstream``), generated with Amaranth from an IR.

The same outside as `rtl.accel.Accelerator` (``start``, the ``pixels`` stream, the
``scores`` stream, ``done``, the status block, the optional spike-trace port and, with
runtime weights, the ``load`` stream), so the testbench, the board top and the host driver
take it as they take the others.  Inside (`plan.py` for the dataflow, `cycles.py` for the
exact schedule):

- ``list0`` / ``list1``: event lists, (index, value) each; ``list0`` first holds the
  image's non-zero pixels, then the layers alternate: a layer reads one and appends its
  spikes, per timestep, to the other;
- ``rows``: the weight rows (L lanes x B bits), one read per event; with runtime weights a
  single-port RAM that the ``load`` stream writes (the iCE40's SPRAM, `deploy.synth`);
- ``params``: bias, threshold and keep bit per (layer, group, lane);
- ``scores``: the readout's class scores for the ``OUT`` stream.

Two machines (`cycles.py`): A runs the passes, list entry read -> weight row read (address:
the group's first row plus the event's index) -> multiply-accumulate (`lanes.MacLanes`), and
hands each pass's sums to the lanes' shadows; B sweeps the shadows and the membranes past one
`rtl.neuron.NeuronUpdate` a cycle while A's next pass accumulates.

Status: address 0 is the cycle count of the last image, then `cycles.COUNTERS` for every
weighted layer, in layer order.
"""
from __future__ import annotations

import numpy as np
from amaranth import Array, C, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring

from ticketforge.errors import UsageError
from ticketforge.ir.schema import Graph
from ticketforge.rtl.lane.plan import MEMORY_STYLES, WEIGHTS, fan_in, field_map, sbits, u_range, ubits
from ticketforge.rtl.accel import const_table, core_members, core_memory, status_registers
from ticketforge.rtl.neuron import NeuronUpdate
from ticketforge.rtl.rowstream.cycles import COUNTERS
from ticketforge.rtl.rowstream.lanes import MacLanes, pack_row
from ticketforge.rtl.rowstream.plan import RowstreamPlan, plan_graph, row_words

__all__ = ["RowstreamAccelerator", "status_map"]


def status_map(plan: RowstreamPlan) -> list[tuple[str, str]]:
    return [("", "cycles")] + [(lp.name, c) for lp in plan.layers for c in COUNTERS]


class RowstreamAccelerator(wiring.Component):
    """Parameters: the integer IR ``graph`` (fully connected), ``lanes`` (neurons per group,
    `plan.LANES`), ``trace`` for the spike-trace port (one lane), ``memory_style`` (how
    synthesis should map the memories), ``dense`` for the reference without skipping,
    ``weights`` (`WEIGHTS`) baked in or loaded at run time."""

    LOADABLE = ("rows", "params")

    def __new__(cls, graph: Graph, lanes: int, trace: bool = False, memory_style: str = "auto",
                dense: bool = False, weights: str = "baked"):
        if memory_style not in MEMORY_STYLES:
            raise UsageError(f"memory_style must be one of {', '.join(MEMORY_STYLES)}, got {memory_style!r}")
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a ticketforge IR Graph, got {type(graph).__name__}")
        if not isinstance(trace, bool) or not isinstance(dense, bool):
            raise TypeError(f"trace and dense must be bools, got {trace!r}, {dense!r}")
        if weights not in WEIGHTS:
            raise UsageError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        plan = plan_graph(graph, lanes, dense)
        self = super().__new__(cls, src_loc_at=1)
        self.plan = plan
        return self

    def __init__(self, graph: Graph, lanes: int, trace: bool = False, memory_style: str = "auto",
                 dense: bool = False, weights: str = "baked"):
        self.plan: RowstreamPlan
        g = self.graph = graph
        self.L = self.P = lanes
        self.trace, self.memory_style, self.dense = trace, memory_style, dense
        self.weights, self.runtime = weights, weights == "runtime"
        self.fifo_depth = None          # no event FIFOs in this datapath
        self.capacity = None            # a runtime design is its own ticket's
        self._sizes()
        self._loadable()
        super().__init__(core_members(g, self.score_bits, len(self.status), 1, self.ev_xyz.width, trace,
                                      self.load_layout if self.runtime else None))

    # ------------------------------------------------------------ sizes and tables
    def _sizes(self) -> None:
        g, plan = self.graph, self.plan
        max_in = (1 << g.input.bits) - 1
        acc_need, u_need = [], []
        for lp in plan.layers:
            l = g.layers[lp.index]
            value = (max_in if lp.first else 1) * max(1, int(np.abs(g.tensor(l, "weight")).max(initial=0)))
            top = max(1, fan_in(g, l)) * value
            acc_need.append(sbits(-top, top))
            if lp.kind == "output":
                self.score_bits = sbits(-top * g.T, top * g.T)
            else:
                u_need.append(max(l.neuron.membrane_bits + 1, sbits(*u_range(g, l, value))))
        # the readout's accumulators sum its T passes
        self.acc_bits = max(acc_need + [self.score_bits])
        self.u_bits = max(u_need)
        self.value_bits = g.input.bits
        self.idx_bits = ubits(max(plan.n_pix, max(lp.n_out for lp in plan.layers)) - 1)
        self.list_layout = data.StructLayout({"idx": unsigned(self.idx_bits), "value": unsigned(self.value_bits)})
        self.param_bits = max(g.layers[lp.index].neuron.membrane_bits for lp in plan.layers if lp.kind != "output")
        self.param_layout = data.StructLayout({"bias": signed(self.param_bits), "thr": signed(self.param_bits),
                                               "keep": 1})
        self.row_width = plan.L * plan.weight_bits
        self.status = status_map(plan)
        cmax = max([plan.n_pix] + [lp.n_out for lp in plan.layers])
        self.ev_xyz = field_map(data.StructLayout({"c": unsigned(ubits(cmax - 1)), "y": unsigned(1),
                                                   "x": unsigned(1)}))
        self.configs = []
        for lp in plan.layers:
            n = g.layers[lp.index].neuron
            if n is not None and n not in self.configs:
                self.configs.append(n)
        self.memories = []

    def _loadable(self) -> None:
        """Runtime weights: the memories the ``load`` port writes (`LOADABLE`, numbered in that
        order), with the ``load`` stream's word layout."""
        self.loadable, self.load_layout = [], None
        if not self.runtime:
            return
        widths = {"rows": self.row_width, "params": self.param_layout.size}
        depths = {"rows": self.plan.rows, "params": self.plan.params}
        self.loadable = [{"index": i, "name": n, "depth": max(1, depths[n]), "width": widths[n]}
                         for i, n in enumerate(self.LOADABLE)]
        self.load_index = {d["name"]: d["index"] for d in self.loadable}
        self.load_layout = data.StructLayout({
            "memory": range(len(self.loadable)),
            "addr": unsigned(ubits(max(d["depth"] for d in self.loadable) - 1)),
            "data": unsigned(max(d["width"] for d in self.loadable))})

    def _row_init(self) -> list[int]:
        return [pack_row(r, self.plan.weight_bits) for r in row_words(self.plan)]

    def _param_init(self) -> list[int]:
        g, L = self.graph, self.plan.L
        out = []
        for lp in self.plan.layers:
            if lp.kind == "output":
                continue
            l = g.layers[lp.index]
            bias, thr = g.tensor(l, "bias").astype(np.int64), g.tensor(l, "threshold").astype(np.int64)
            keep = g.tensor(l, "neuron_mask").astype(bool)
            for o in range(lp.groups * L):
                ok = o < lp.n_out
                v = {"bias": int(bias[o]) if ok else 0, "thr": int(thr[o]) if ok else 1,
                     "keep": int(ok and keep[o])}
                out.append(v)
        return out

    def load_contents(self) -> list[tuple[dict, list[int]]]:
        """Each loadable memory with its words: the ticket's tables (runtime weights)."""
        words = {"rows": self._row_init(),
                 "params": [Const.cast(self.param_layout.const(v)).value for v in self._param_init()]}
        return [(d, (words[d["name"]] or [0])[:d["depth"]]) for d in self.loadable]

    # ------------------------------------------------------------ hardware
    def elaborate(self, platform):
        m = Module()
        g, plan, L, T = self.graph, self.plan, self.plan.L, self.graph.T
        layers = plan.layers
        NL = len(layers)
        K = int(g.layers[-1].out_shape[0])
        S = plan.max_hidden                 # a timestep's slot in a spike list
        self.memories = []
        load = self.load if self.runtime else None

        def mk(name, shape, depth, init=(), rom=False, comb_read=False, load_port=True):
            return core_memory(m, self, name, shape, depth, init, rom, comb_read, load_port)

        def hit(name):
            return load.valid & (load.payload.memory == self.load_index[name])

        # ---------------- memories
        lists = [mk(f"list{b}", self.list_layout, plan.list_depth[b]) for b in range(2)]
        list_w = [lst.write_port() for lst in lists]
        list_r = [lst.read_port() for lst in lists]
        rows = mk("rows", unsigned(self.row_width), plan.rows, () if self.runtime else self._row_init(), rom=True,
                  load_port=False)
        rows_r = rows.read_port()
        row_addr = Signal(range(max(2, plan.rows)))
        if self.runtime:
            # one address for reading and loading, reads off while loading (a single-port
            # RAM: the iCE40's SPRAM takes it, deploy/synth.py)
            rows_w = rows.write_port()
            m.d.comb += [rows_r.addr.eq(Mux(hit("rows"), load.payload.addr, row_addr)), rows_r.en.eq(~hit("rows")),
                         rows_w.addr.eq(rows_r.addr), rows_w.data.eq(load.payload.data[:self.row_width]),
                         rows_w.en.eq(hit("rows"))]
            m.d.comb += load.ready.eq(1)
        else:
            m.d.comb += rows_r.addr.eq(row_addr)
        params = mk("params", self.param_layout, plan.params, () if self.runtime else self._param_init(), rom=True)
        params_r = params.read_port()
        scores_m = mk("scores", signed(self.score_bits), K, comb_read=True)     # the OUT stream's payload
        scores_w = scores_m.write_port()
        scores_r = scores_m.read_port(domain="comb")

        lanes = m.submodules.lanes = MacLanes(L, plan.weight_bits, self.value_bits, self.acc_bits)

        # ---------------- per-layer constants, indexed by the current layer
        table = const_table

        cur = Signal(range(max(2, NL)))
        G = table([lp.groups for lp in layers])[cur]
        n_in = table([lp.n_in for lp in layers])[cur]
        row_base = table([lp.row_base for lp in layers])[cur]
        param_base = table([lp.param_base for lp in layers])[cur]
        is_first = table([int(lp.first) for lp in layers])[cur]
        is_out = table([int(lp.kind == "output") for lp in layers])[cur]
        rbuf = table([lp.read_buf for lp in layers])[cur]
        shifts = sorted({lp.input_shift for lp in layers})
        shift_i = table([shifts.index(lp.input_shift) for lp in layers])[cur]
        cfg = table([self.configs.index(g.layers[lp.index].neuron) if lp.kind != "output" else 0
                     for lp in layers])[cur]
        layer_index = table([lp.index for lp in layers])[cur]

        # ---------------- state
        grp = Signal(range(max(2, max(lp.groups for lp in layers))))
        t = Signal(range(max(2, T)))
        k = Signal(range(max(2, max(plan.list_depth) + 1)))            # the pass's next event
        group_param = Signal(range(max(2, plan.params + L + 1)))        # the group's first parameters
        s = Signal(range(L + 1))                                        # the sweep's cycle (B)
        # B's context, set at the handoff: its group, timestep, sweeps still to run after
        # this one (the first layer sweeps T times over one pass) and parameters' address
        b_grp = Signal.like(grp)
        b_t = Signal.like(t)
        b_left = Signal(range(max(2, T)))
        b_param = Signal.like(group_param)
        b_idle, b_start = Signal(), Signal()
        group_row = Signal(range(max(2, plan.rows + 1)))                # the group's first row
        load_i = Signal(range(max(2, plan.n_pix)))
        out_i = Signal(range(max(2, K)))
        count_bits = ubits(max(plan.list_depth))
        counts = [[Signal(count_bits, name=f"count{b}_{tt}") for tt in range(T)] for b in range(2)]
        count_arr = [Array(cs) for cs in counts]
        n_events = Signal(count_bits)
        m.d.comb += n_events.eq(Mux(is_first, counts[0][0], Mux(rbuf, count_arr[1][t], count_arr[0][t])))

        # ---------------- the pass pipeline: P0 list read -> P1 row read -> P2 accumulate
        issue = Signal()
        v1, v2 = Signal(), Signal()
        list_addr = Signal(range(max(2, max(plan.list_depth))))
        m.d.comb += list_addr.eq(Mux(is_first, k, t * S + k))
        for b in range(2):
            m.d.comb += list_r[b].addr.eq(list_addr)
        entry = Signal(self.list_layout)
        m.d.comb += entry.eq(Mux(rbuf, list_r[1].data, list_r[0].data))
        value_q = Signal(self.value_bits)
        m.d.sync += [v1.eq(issue), v2.eq(v1), value_q.eq(entry.value)]
        m.d.comb += [row_addr.eq(group_row + entry.idx),
                     lanes.value.eq(value_q), lanes.weights.eq(rows_r.data), lanes.add.eq(v2)]

        # ---------------- the sweep (B): lane s's parameters read in cycle s, updated in s + 1
        m.d.comb += params_r.addr.eq(b_param + s)
        prm = params_r.data
        U = [Signal(signed(self.u_bits), name=f"u{j}") for j in range(L)]
        rotate = Signal()
        m.d.comb += lanes.rotate.eq(rotate)
        upd_units = []
        for ci, n in enumerate(self.configs):
            nu = NeuronUpdate(n, self.u_bits)
            m.submodules[f"update{ci}"] = nu
            upd_units.append(nu)
        shift_now = Signal(range(max(2, len(shifts))))
        m.d.comb += shift_now.eq(shift_i)
        acc_shifted = Array(lanes.head << sh for sh in shifts)[shift_now]
        u_in = Signal(signed(self.u_bits))
        m.d.comb += u_in.eq(Mux(b_t == 0, prm.bias, U[0]) + acc_shifted)
        fire, u_next = Signal(), Signal(signed(self.u_bits))
        for ci, nu in enumerate(upd_units):
            m.d.comb += [nu.u.eq(u_in), nu.threshold.eq(prm.thr), nu.bias.eq(prm.bias), nu.keep.eq(prm.keep),
                         nu.last.eq(b_t == T - 1)]
            with m.If(cfg == ci):
                m.d.comb += [fire.eq(nu.spike), u_next.eq(nu.u_next)]
        lane_idx = Signal(range(max(2, max(lp.groups for lp in layers) * L + 1)))
        m.d.comb += lane_idx.eq(b_grp * L + s - 1)
        updating = Signal()                                  # a lane passes the update this cycle
        with m.If(updating):
            m.d.sync += [U[j].eq(U[j + 1]) for j in range(L - 1)] + [U[L - 1].eq(u_next)]
        wbuf = Signal()
        m.d.comb += wbuf.eq(~rbuf)
        append = Signal()
        n_out = table([lp.n_out for lp in layers])[cur]
        m.d.comb += append.eq(updating & ~is_out & (fire | (self.dense & (lane_idx < n_out))))
        wr_count = Mux(wbuf, count_arr[1][b_t], count_arr[0][b_t])
        pixel_write = Signal()
        pix_value = self.pixels.payload
        for b in range(2):
            wp = list_w[b]
            if b == 0:
                m.d.comb += [wp.addr.eq(Mux(pixel_write, counts[0][0], b_t * S + wr_count)),
                             wp.data.idx.eq(Mux(pixel_write, load_i, lane_idx)),
                             wp.data.value.eq(Mux(pixel_write, pix_value, fire)),
                             wp.en.eq(pixel_write | (append & (wbuf == 0)))]
            else:
                m.d.comb += [wp.addr.eq(b_t * S + wr_count), wp.data.idx.eq(lane_idx), wp.data.value.eq(fire),
                             wp.en.eq(append & (wbuf == 1))]
        with m.If(append):
            for b in range(2):
                with m.If(wbuf == b):
                    m.d.sync += count_arr[b][b_t].eq(count_arr[b][b_t] + 1)
        m.d.comb += [scores_w.addr.eq(lane_idx), scores_w.data.eq(lanes.head),
                     scores_w.en.eq(updating & is_out & (lane_idx < K)), scores_r.addr.eq(out_i),
                     self.scores.payload.eq(scores_r.data)]

        # ---------------- counters
        clear_counters = Signal()
        cnt_now = {"row_reads": issue, "neuron_updates": updating & ~is_out & prm.keep,
                   "spikes": updating & ~is_out & fire}

        # ---------------- the machine
        last_group = grp == G - 1
        with m.FSM(name="a"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [load_i.eq(0), counts[0][0].eq(0)]
                    m.d.comb += clear_counters.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.pixels.ready.eq(1)]
                with m.If(self.pixels.valid):
                    keep_px = C(1, 1) if self.dense else (pix_value != 0)
                    m.d.comb += pixel_write.eq(keep_px)
                    m.d.sync += load_i.eq(load_i + 1)
                    with m.If(keep_px):
                        m.d.sync += counts[0][0].eq(counts[0][0] + 1)
                    with m.If(load_i == plan.n_pix - 1):
                        m.d.sync += cur.eq(0)
                        m.next = "LSETUP"
            with m.State("LSETUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [grp.eq(0), t.eq(0), k.eq(0), group_row.eq(row_base), group_param.eq(param_base)]
                with m.If(~is_out):             # the list this layer appends to starts empty
                    for b in range(2):
                        with m.If(wbuf == b):
                            m.d.sync += [c.eq(0) for c in counts[b]]
                m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += [self.busy.eq(1), lanes.clear.eq((k == 0) & (~is_out | (t == 0)))]
                with m.If(k < n_events):
                    m.d.comb += issue.eq(1)
                    m.d.sync += k.eq(k + 1)
                with m.Else():
                    m.d.sync += k.eq(0)
                    with m.If(is_out & (t != T - 1)):
                        m.d.sync += t.eq(t + 1)
                    with m.Else():
                        m.next = "HAND"
            with m.State("HAND"):
                # the pass's sums go to B's shadows in the cycle of its last add (or later,
                # when B is still sweeping the previous ones); the next pass starts after
                m.d.comb += self.busy.eq(1)
                with m.If(b_idle):
                    m.d.comb += [b_start.eq(1), lanes.handoff.eq(1)]
                    m.d.sync += [b_grp.eq(grp), b_t.eq(t), b_param.eq(group_param),
                                 b_left.eq(Mux(is_first & ~is_out, T - 1, 0))]
                    m.next = "PASS"
                    with m.If(~is_out & ~is_first & (t != T - 1)):
                        m.d.sync += t.eq(t + 1)
                    with m.Elif(~last_group):
                        m.d.sync += [grp.eq(grp + 1), t.eq(0), group_row.eq(group_row + n_in),
                                     group_param.eq(group_param + L)]
                    with m.Else():
                        m.next = "LWAIT"
            with m.State("LWAIT"):                  # the layer's last sweep is done
                m.d.comb += self.busy.eq(1)
                with m.If(b_idle):
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

        with m.FSM(name="b"):
            with m.State("IDLE"):
                m.d.comb += b_idle.eq(1)
                with m.If(b_start):
                    m.d.sync += s.eq(0)
                    m.next = "SWEEP"
            with m.State("SWEEP"):
                m.d.comb += [updating.eq(s != 0), rotate.eq(s != 0)]
                m.d.sync += s.eq(s + 1)
                with m.If(s == L):
                    m.d.sync += s.eq(0)
                    with m.If(b_left != 0):
                        m.d.sync += [b_left.eq(b_left - 1), b_t.eq(b_t + 1)]
                    with m.Else():
                        m.next = "IDLE"

        # ---------------- counters and status
        status_registers(m, self, clear_counters, cur, {lp.name: cnt_now for lp in layers}, COUNTERS)

        # ---------------- trace: the spike of this sweep cycle
        if self.trace:
            m.d.comb += [self.trace_valid.eq(updating & ~is_out & fire), self.trace_layer.eq(layer_index),
                         self.trace_t.eq(b_t), self.trace_event.eq(lane_idx)]
        return m
