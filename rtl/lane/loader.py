"""The input loaders: the image's pixel stream (`PixelLoader`), or a timestep's AER event
stream (`EventLoader`, `rtl.aer`), into the input event queue.

While ``active`` (the schedule's LOAD state) one pixel per cycle is taken from ``pixels``
into a register and written the next cycle, at its (c, y, x) in C-H-W order: the non-zero
ones (every one when dense) as events of the input queue, which every timestep's first
layer reads again (direct encoding).  ``ready`` drops once the image's last pixel is taken;
``loaded`` is high in the cycle its last pixel is written.  ``clear`` (an image starts)
empties the queue.  The queue's read side (``addr`` -> ``data`` one cycle later, and
``count``) belongs to the event reader.

The event loader takes one AER word per cycle in the same way; it writes each event word
as an event of value 1 and ``loaded`` is high in the cycle after it took the step word.
Its ``clear`` comes at every timestep: each timestep's events are the first layer's source
once.
"""
from __future__ import annotations

from amaranth import C, Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.aer import aer_layout
from ticketforge.rtl.lane.plan import LanePlan

__all__ = ["PixelLoader", "EventLoader", "step_chw"]


def step_chw(m: Module, c, y, x, h: int, w: int) -> None:
    """Advance a (c, y, x) position counter in C-H-W order (x fastest) by one."""
    with m.If(x == w - 1):
        m.d.sync += x.eq(0)
        with m.If(y == h - 1):
            m.d.sync += [y.eq(0), c.eq(c + 1)]
        with m.Else():
            m.d.sync += y.eq(y + 1)
    with m.Else():
        m.d.sync += x.eq(x + 1)


class _QueueLoader(wiring.Component):
    """What both loaders share: their input stream (``name``, ``payload`` shape), the
    schedule's controls and the input queue, whose read side the event reader owns."""

    def __init__(self, plan: LanePlan, name: str, payload):
        self.plan = plan
        super().__init__({
            name: In(stream.Signature(payload)),
            "active": In(1),
            "clear": In(1),
            "loaded": Out(1),
            "addr": In(range(max(2, plan.in_depth))),
            "data": Out(plan.in_ev),
            "count": Out(range(plan.in_depth + 1)),
        })

    def _queue(self, m: Module):
        """The input queue with its read side joined; returns its write port."""
        m.submodules.in_queue = queue = self.plan.memory("in_queue")
        w, r = queue.write_port(), queue.read_port()
        m.d.comb += [r.addr.eq(self.addr), self.data.eq(r.data)]
        return w


class PixelLoader(_QueueLoader):
    def __init__(self, plan: LanePlan):
        super().__init__(plan, "pixels", unsigned(plan.vbits))

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        w = self._queue(m)
        ev = plan.ev_xyz
        ld_c, ld_y, ld_x = (Signal(ev[k].width, name=f"load_{k}") for k in ("c", "y", "x"))
        cin, hin, win = plan.graph.input.shape
        take, pix_v, pix_d = Signal(), Signal(), Signal.like(self.pixels.payload)
        n_taken, got_all = Signal(range(plan.in_depth + 1)), Signal()
        m.d.comb += take.eq(self.pixels.valid & self.pixels.ready)
        m.d.sync += [pix_v.eq(take), pix_d.eq(self.pixels.payload)]
        with m.If(take):
            m.d.sync += n_taken.eq(n_taken + 1)
            with m.If(n_taken == plan.in_depth - 1):
                m.d.sync += got_all.eq(1)
        with m.If(self.active):
            m.d.comb += self.pixels.ready.eq(~got_all)
            with m.If(pix_v):
                keep = C(1, 1) if plan.dense else (pix_d != 0)
                with m.If(keep):
                    word = Cat(pix_d, *(f[:plan.in_ev[k].width] for f, k in ((ld_c, "c"), (ld_y, "y"), (ld_x, "x"))))
                    m.d.comb += [w.addr.eq(self.count), w.data.eq(word), w.en.eq(1)]
                    m.d.sync += self.count.eq(self.count + 1)
                step_chw(m, ld_c, ld_y, ld_x, hin, win)
                with m.If((ld_c == cin - 1) & (ld_y == hin - 1) & (ld_x == win - 1)):
                    m.d.comb += self.loaded.eq(1)
        with m.If(self.clear):
            m.d.sync += [self.count.eq(0), ld_c.eq(0), ld_y.eq(0), ld_x.eq(0), n_taken.eq(0), got_all.eq(0)]
        return m


class EventLoader(_QueueLoader):
    """A timestep's AER words (`rtl.aer`) into the input event queue: the same queue side
    as `PixelLoader`, the ``aer`` stream instead of ``pixels``."""

    def __init__(self, plan: LanePlan):
        super().__init__(plan, "aer", aer_layout(plan.graph.input.shape))

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        w = self._queue(m)
        take, word_v, word = Signal(), Signal(), Signal.like(self.aer.payload)
        got_step = Signal()
        m.d.comb += take.eq(self.aer.valid & self.aer.ready)
        m.d.sync += [word_v.eq(take), word.eq(self.aer.payload)]
        with m.If(take & self.aer.payload.step):
            m.d.sync += got_step.eq(1)
        with m.If(self.active):
            m.d.comb += self.aer.ready.eq(~got_step)
            with m.If(word_v):
                with m.If(word.step):
                    m.d.comb += self.loaded.eq(1)
                # a binary frame has at most in_depth events: more cannot be in one timestep
                with m.Elif(self.count < plan.in_depth):
                    fields = (word.c, word.y, word.x)
                    m.d.comb += [w.addr.eq(self.count), w.en.eq(1),
                                 w.data.eq(Cat(C(1, plan.vbits), *(f[:plan.in_ev[k].width]
                                                                  for f, k in zip(fields, ("c", "y", "x")))))]
                    m.d.sync += self.count.eq(self.count + 1)
        with m.If(self.clear):
            m.d.sync += [self.count.eq(0), got_step.eq(0)]
        return m
