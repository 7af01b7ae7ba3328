"""The event reader: a layer's source queue -> its row pointers -> every PE's event FIFO.

``start`` (the schedule's START state of a layer) sets the reader on the current ``layer``'s
source: the input queue (`loader.PixelLoader`), the previous neuron layer's per-PE spike
queues (PE 0's first, each in slot order; empty queues are skipped without a bubble) or
a pool's queue (`pool.OrPool`).  All queues share one read address, ``addr``.

Then one event per cycle, as long as every FIFO has room for it and for those in flight
(*credit*), through three registered stages::

    issue   addr -> the queue's read port
    v1      the event, widened to the event layout, registered (ev1r)
    v1r     its row-pointer index (constants per layer, no multiplier) -> row-pointer ROM
    v2      event + (first word row, PE p's word count) written into FIFO p

so each PE pops its own FIFO (``events[p]``) and walks its own words of the event
(`pe.LanePE`): a PE with few synapses for an event runs ahead of the busiest one.
``read_back`` is the event at stage v1r when it came from a pool's queue (the pool clears
its bitmap bit).  ``idle``: nothing left to read and nothing in flight; ``head_level`` is
FIFO 0's fill (the pool, which takes from FIFO 0, drains it).  With runtime weights the
row-pointer table is written through ``load``.
"""
from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.lane.plan import LanePlan, load_port

__all__ = ["EventReader", "SOURCE_CODES"]

SOURCE_CODES = {"input": 0, "spk": 1, "pool": 2}


class EventReader(wiring.Component):
    def __init__(self, plan: LanePlan):
        self.plan = plan
        P, QD = plan.P, plan.queue_depth
        super().__init__({
            "layer": In(range(max(2, len(plan.graph.layers)))),
            "start": In(1),
            "addr": Out(range(max(plan.in_depth, plan.pool_depth, QD) + 1)),
            "in_data": In(plan.in_ev),
            "in_count": In(range(plan.in_depth + 1)),
            "pool_data": In(plan.queue),
            "pool_count": In(range(plan.pool_depth + 1)),
            "spk_data": In(plan.queue).array(P),
            "spk_count": In(range(QD + 1)).array(P),
            "events": Out(stream.Signature(plan.entry)).array(P),
            "read_back": Out(stream.Signature(plan.ev_xyz, always_ready=True)),
            "idle": Out(1),
            "head_level": Out(range(plan.fifo_depth + 1)),
            **({"load": In(stream.Signature(plan.load_layout, always_ready=True))} if plan.runtime else {}),
        })

    def elaborate(self, platform):
        m = Module()
        plan, g, P, D = self.plan, self.plan.graph, self.plan.P, self.plan.fifo_depth
        ffs = []
        for p in range(P):
            f = fifo.SyncFIFO(width=plan.entry.size, depth=D)
            m.submodules[f"pe{p}_events"] = f
            ffs.append(f)
            out = self.events[p]
            m.d.comb += [out.valid.eq(f.r_rdy), out.payload.eq(f.r_data), f.r_en.eq(out.ready)]
        m.d.comb += self.head_level.eq(ffs[0].level)
        m.submodules.rowptr = rowptr = plan.memory("rowptr", plan.rowptr_words())
        rp_r = rowptr.read_port()
        rp = plan.rp(rp_r.data)
        if plan.runtime:
            load_port(m, plan, rowptr, "rowptr", self.load)

        rd_active = Signal()
        rd_q = Signal(range(max(2, P)))
        rd_idx = self.addr
        src_kind = Signal(2)                    # SOURCE_CODES
        v1, v1r, v2 = Signal(), Signal(), Signal()
        q1 = Signal.like(rd_q)
        ev2 = Signal(plan.ev)
        credit = Signal()
        # an event in flight (v1, v1r, v2) will land in every FIFO: all of them must have room
        m.d.comb += credit.eq(Cat(f.level + v1 + v1r + v2 < D for f in ffs).all())
        m.d.comb += self.idle.eq(~rd_active & ~v1 & ~v1r & ~v2)
        cnt_now = Signal.like(rd_idx)
        m.d.comb += cnt_now.eq(Mux(src_kind == SOURCE_CODES["input"], self.in_count,
                                   Mux(src_kind == SOURCE_CODES["pool"], self.pool_count,
                                       Array(self.spk_count)[rd_q])))
        # next non-empty PE queue above rd_q (a priority encoder; no bubbles between queues)
        nonempty = Signal(P)
        m.d.comb += nonempty.eq(Cat(c != 0 for c in self.spk_count))
        nxt_found, nxt_q, first_found, first_q = Signal(), Signal.like(rd_q), Signal(), Signal.like(rd_q)
        for p in reversed(range(P)):
            with m.If(nonempty[p] & (p > rd_q)):
                m.d.comb += [nxt_found.eq(1), nxt_q.eq(p)]
            with m.If(nonempty[p]):
                m.d.comb += [first_found.eq(1), first_q.eq(p)]
        issue = Signal()
        m.d.comb += issue.eq(rd_active & credit)
        m.d.sync += [v1.eq(issue), v1r.eq(v1), v2.eq(v1r)]
        with m.If(issue):
            m.d.sync += q1.eq(rd_q)
            with m.If(rd_idx + 1 < cnt_now):
                m.d.sync += rd_idx.eq(rd_idx + 1)
            with m.Elif((src_kind == SOURCE_CODES["spk"]) & nxt_found):
                m.d.sync += [rd_q.eq(nxt_q), rd_idx.eq(0)]
            with m.Else():
                m.d.sync += rd_active.eq(0)
        # v1: the queue word, widened to the event layout
        ev1, in_as_ev, q_as_ev = Signal(plan.ev), Signal(plan.ev), Signal(plan.ev)
        m.d.comb += [in_as_ev.value.eq(self.in_data.value), in_as_ev.c.eq(self.in_data.c),
                     in_as_ev.y.eq(self.in_data.y), in_as_ev.x.eq(self.in_data.x)]
        qword = plan.queue(Mux(src_kind == SOURCE_CODES["pool"], self.pool_data.as_value(),
                               Array(d.as_value() for d in self.spk_data)[q1]))
        m.d.comb += [q_as_ev.value.eq(qword.value), q_as_ev.c.eq(qword.c), q_as_ev.y.eq(qword.y),
                     q_as_ev.x.eq(qword.x)]
        m.d.comb += ev1.eq(Mux(src_kind == SOURCE_CODES["input"], in_as_ev, q_as_ev))
        # the event is registered before its row-pointer index (and a pooled event's bitmap
        # address) is computed from it: queue read -> PE mux -> index products -> row
        # pointer address was the critical path on the ECP5 (44 ns)
        ev1r = Signal(plan.ev)
        m.d.sync += ev1r.eq(ev1)
        m.d.comb += [self.read_back.valid.eq(v1r & (src_kind == SOURCE_CODES["pool"])),
                     self.read_back.payload.eq(Cat(ev1r.c, ev1r.y, ev1r.x))]
        # row-pointer index of the event for the consumer layer: constants per layer, then a mux
        with m.Switch(self.layer):
            for i in plan.weighted:
                l, lp = g.layers[i], plan.prog.layers[i]
                with m.Case(i):
                    if l.kind == "conv":
                        my, mx = lp.class_shape
                        idx = ((ev1r.c * my + (ev1r.y & (my - 1))) * mx) + (ev1r.x & (mx - 1))
                    else:
                        sh = plan.src_shape[i]
                        hh, ww = (sh[1], sh[2]) if len(sh) == 3 else (1, 1)
                        idx = (ev1r.c * hh + ev1r.y) * ww + ev1r.x
                    m.d.comb += rp_r.addr.eq(plan.rpbase[i] + idx)
        m.d.sync += ev2.eq(ev1r)
        for p, f in enumerate(ffs):
            m.d.comb += [f.w_data.eq(Cat(ev2, rp.start, getattr(rp, plan.count_field(p)))), f.w_en.eq(v2)]
        # START: the current layer's source queue, from its first event
        with m.If(self.start):
            m.d.sync += rd_idx.eq(0)
            with m.Switch(self.layer):
                for i in plan.order:
                    kind, _ = plan.source[i]
                    with m.Case(i):
                        m.d.sync += src_kind.eq(SOURCE_CODES[kind])
                        if kind == "spk":
                            m.d.sync += [rd_q.eq(first_q), rd_active.eq(first_found)]
                        elif kind == "input":
                            m.d.sync += [rd_q.eq(0), rd_active.eq(self.in_count != 0)]
                        else:
                            m.d.sync += [rd_q.eq(0), rd_active.eq(self.pool_count != 0)]
        return m
