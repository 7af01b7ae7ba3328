"""The OR-pool: a pool layer's output events from its input (a conv layer's spikes).

An OR-pool is a bitmap of the pooled positions.  While ``run`` (the schedule's POOL phase)
it takes events from ``events`` (the event reader's stream of the conv's spikes), one per
cycle, in two registered stages (P0 the event, P1 its pooled address and the bitmap read):
the first spike in a window sets its bit and queues the pooled event.  The consumer's
reader clears a bit again when it reads the pooled event back (``read_back``).

Dense (the no-skipping reference): every input sets its bit when it is 1; then ``sweep``
walks every pooled position in C-H-W order (``sweep_start`` sets it on the first), queues
it with its bit as its value and clears the bitmap; ``sweep_last`` marks the last position.

``enter`` (the schedule enters a pool layer) and ``sweep_start`` empty the pooled queue.
Its read side (``addr`` -> ``data`` one cycle later, ``count``) belongs to the reader.
``pushed`` is high in a cycle an event is queued (a spike, for the status counters).
"""
from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.lane.loader import step_chw
from ticketforge.rtl.lane.plan import LanePlan

__all__ = ["OrPool"]


class OrPool(wiring.Component):
    def __init__(self, plan: LanePlan):
        self.plan = plan
        depth = plan.pool_depth
        super().__init__({
            "layer": In(range(max(2, len(plan.graph.layers)))),
            "run": In(1),
            "events": In(stream.Signature(plan.ev)),
            "sweep": In(1),
            "sweep_start": In(1),
            "sweep_last": Out(1),
            "enter": In(1),
            "read_back": In(stream.Signature(plan.ev_xyz, always_ready=True)),
            "addr": In(range(max(2, depth))),
            "data": Out(plan.queue),
            "count": Out(range(depth + 1)),
            "pushed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        plan, g = self.plan, self.plan.graph
        ev = plan.ev_xyz
        m.submodules.pool_queue = queue = plan.memory("pool_queue")
        m.submodules.pool_bitmap = bitmap = plan.memory("pool_bitmap")
        pool_w, pool_r = queue.write_port(), queue.read_port()
        bm_w = bitmap.write_port()
        bm_r = bitmap.read_port(transparent_for=(bm_w,))
        m.d.comb += [pool_r.addr.eq(self.addr), self.data.eq(pool_r.data)]
        count = self.count
        m.d.comb += self.events.ready.eq(self.run)
        take = self.events.valid & self.events.ready

        p1_v, p1_val = Signal(), Signal()
        p1_addr = Signal(range(max(2, plan.pool_depth)))
        p1_xyz = Signal(plan.ev_xyz.size)
        # P0: the taken event is registered before its pooled address is computed (FIFO
        # read -> pooled index products -> bitmap address was the ECP5's critical path)
        p0_v, p0_ev = Signal(), Signal(plan.ev)
        m.d.sync += [p0_v.eq(take), p0_ev.eq(self.events.payload)]
        hc, hy, hx = p0_ev.c, p0_ev.y, p0_ev.x
        pinr = Signal()
        pool_addr = Signal.like(p1_addr)
        pooled = Signal(plan.ev_xyz.size)
        # the sweep (dense): counters over the pooled positions
        sw_c, sw_y, sw_x = (Signal(ev[k].width, name=f"sweep_{k}") for k in ("c", "y", "x"))
        s1_v, s1_addr, s1_xyz = Signal(), Signal.like(p1_addr), Signal(plan.ev_xyz.size)
        sweep_addr = Signal.like(p1_addr)
        for i in plan.pool_layers:
            l = g.layers[i]
            lk = l.kernel.bit_length() - 1
            cp, hp, wp = l.out_shape
            with m.If(self.layer == i):
                py, px = hy >> lk, hx >> lk
                m.d.comb += [pinr.eq((py < hp) & (px < wp)), pool_addr.eq((hc * hp + py) * wp + px),
                             pooled.eq(Cat(hc, py[:ev["y"].width], px[:ev["x"].width])),
                             sweep_addr.eq((sw_c * hp + sw_y) * wp + sw_x),
                             self.sweep_last.eq((sw_c == cp - 1) & (sw_y == hp - 1) & (sw_x == wp - 1))]
                with m.If(self.sweep):
                    step_chw(m, sw_c, sw_y, sw_x, hp, wp)
        m.d.comb += bm_r.addr.eq(Mux(self.sweep, sweep_addr, pool_addr))
        m.d.sync += [p1_v.eq(p0_v & pinr), p1_addr.eq(pool_addr), p1_xyz.eq(pooled),
                     p1_val.eq(p0_ev.value != 0),
                     s1_v.eq(self.sweep), s1_addr.eq(sweep_addr), s1_xyz.eq(Cat(sw_c, sw_y, sw_x))]
        # the consumer's reader clears a pooled event's bit when it reads the event (sparse)
        clr_v = Signal()
        clr_addr = Signal.like(p1_addr)
        if not plan.dense:
            rb = self.read_back.payload
            with m.If(self.read_back.valid):
                m.d.comb += clr_v.eq(1)
                with m.Switch(self.layer):
                    for i in plan.weighted:
                        kind, pl = plan.source[i]
                        if kind != "pool":
                            continue
                        _, hp, wp = g.layers[pl].out_shape
                        with m.Case(i):
                            m.d.comb += clr_addr.eq((rb.c * hp + rb.y) * wp + rb.x)
        if plan.dense:
            with m.If(p1_v & p1_val):
                m.d.comb += [bm_w.addr.eq(p1_addr), bm_w.data.eq(1), bm_w.en.eq(1)]
            with m.If(s1_v):
                m.d.comb += [bm_w.addr.eq(s1_addr), bm_w.data.eq(0), bm_w.en.eq(1),
                             pool_w.addr.eq(count), pool_w.data.eq(Cat(bm_r.data, s1_xyz)),
                             pool_w.en.eq(1), self.pushed.eq(bm_r.data)]
                m.d.sync += count.eq(count + 1)
        else:
            with m.If(p1_v & ~bm_r.data):
                m.d.comb += [bm_w.addr.eq(p1_addr), bm_w.data.eq(1), bm_w.en.eq(1),
                             pool_w.addr.eq(count), pool_w.data.eq(Cat(C(1, 1), p1_xyz)),
                             pool_w.en.eq(1), self.pushed.eq(1)]
                m.d.sync += count.eq(count + 1)
            with m.Elif(clr_v):
                m.d.comb += [bm_w.addr.eq(clr_addr), bm_w.data.eq(0), bm_w.en.eq(1)]
        with m.If(self.sweep_start):
            m.d.sync += [sw_c.eq(0), sw_y.eq(0), sw_x.eq(0)]
        with m.If(self.sweep_start | self.enter):
            m.d.sync += count.eq(0)
        return m
