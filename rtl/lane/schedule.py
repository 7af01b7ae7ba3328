"""The schedule: one image, state by state (`cycles.py` counts exactly these cycles).

``IDLE`` waits for ``start`` (registered), then ``image_start`` clears the image's state.
``LOAD`` lasts until the loader has written the last pixel (an ``events`` input: until it
has taken the timestep's step word, and LOAD comes again at every timestep, after
``step_start`` has cleared the input queue).  Then, every timestep, each layer in order
(flatten takes no state):

- conv / linear / readout: ``ACC<i>_START`` (``reader_start``), ``ACC<i>_RUN`` (``acc_run``)
  until the reader is idle and every PE is idle, ``ACC<i>_DRAIN`` (`cycles.ACC_DRAIN`
  cycles: the pipelines empty; ``spk_clear`` and ``upd_start`` at its end), then for a
  neuron layer with slots ``UPD<i>_RUN`` (``upd_run``, until the PE array's ``upd_last``)
  and ``UPD<i>_DRAIN`` (`cycles.UPD_DRAIN`);
- pool: ``POOL<i>_START``, ``POOL<i>_RUN`` (``pool_run``) until the reader is idle and FIFO
  0 holds at most one event, ``POOL<i>_DRAIN`` (`cycles.POOL_DRAIN`); dense adds
  ``POOL<i>_SWEEP`` (``sweep_run`` until ``sweep_last``) and ``POOL<i>_SWEEP_DRAIN``;

then ``NEXT_T`` (one cycle), and after the last timestep ``OUT``: the class scores on the
score stream (``scores_valid``, ``score_index``) until the last one is taken
(``last_score``), and ``DONE`` for one cycle.  ``busy`` is high from LOAD to OUT.

Transitions never depend on an input directly (``start`` is registered): logic that does
lands in Verilator's input-combinational region, evaluated on every clock edge.
"""
from __future__ import annotations

from contextlib import contextmanager

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.cycles import ACC_DRAIN, POOL_DRAIN, UPD_DRAIN
from ticketforge.rtl.lane.plan import LanePlan

__all__ = ["Schedule"]


class Schedule(wiring.Component):
    def __init__(self, plan: LanePlan):
        self.plan = plan
        g = plan.graph
        super().__init__({
            "start": In(1),
            "loaded": In(1),
            "reader_idle": In(1),
            "head_level": In(range(plan.fifo_depth + 1)),
            "pe_idle": In(1),
            "upd_last": In(1),
            "sweep_last": In(1),
            "scores_ready": In(1),
            "layer": Out(range(max(2, len(g.layers)))),
            "t": Out(range(max(2, g.T))),
            "last_t": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "image_start": Out(1),
            "step_start": Out(1),
            "load": Out(1),
            "reader_start": Out(1),
            "acc_run": Out(1),
            "spk_clear": Out(1),
            "upd_start": Out(1),
            "upd_run": Out(1),
            "pool_enter": Out(1),
            "pool_run": Out(1),
            "sweep_start": Out(1),
            "sweep_run": Out(1),
            "scores_valid": Out(1),
            "score_index": Out(range(max(2, plan.classes))),
            "last_score": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        plan, g = self.plan, self.plan.graph
        order, K = plan.order, plan.classes
        cur, t = self.layer, self.t
        m.d.comb += self.last_t.eq(t == g.T - 1)

        @contextmanager
        def after_cycles(n: int, name: str):
            """The body runs in the n-th cycle of the current state (a pipeline drain)."""
            cnt = Signal(range(n + 1), name=name)
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == n - 1):
                m.d.sync += cnt.eq(0)
                yield

        def first_state(i):
            return f"POOL{i}_START" if g.layers[i].kind == "pool" else f"ACC{i}_START"

        def enter(i):
            """Actions on entering layer i (cur, the reset of a pool's output queue)."""
            m.d.sync += cur.eq(i)
            if g.layers[i].kind == "pool":
                m.d.comb += self.pool_enter.eq(1)

        def leave(i):
            """Go from layer i's last phase to the next layer (entering it) or to NEXT_T."""
            j = order.index(i)
            if j + 1 < len(order):
                enter(order[j + 1])
                m.next = first_state(order[j + 1])
            else:
                m.next = "NEXT_T"

        start_r = Signal()
        m.d.sync += start_r.eq(self.start)
        # the score stream: the FSM leaves OUT the cycle after the last score is taken
        take_score, scores_sent = Signal(), Signal()
        m.d.comb += take_score.eq(self.scores_valid & self.scores_ready)
        with m.If(take_score):
            m.d.sync += self.score_index.eq(self.score_index + 1)
            with m.If(self.score_index == K - 1):
                m.d.sync += scores_sent.eq(1)
                m.d.comb += self.last_score.eq(1)
        with m.FSM(name="schedule"):
            with m.State("IDLE"):
                with m.If(start_r):
                    m.d.sync += t.eq(0)
                    m.d.comb += self.image_start.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.load.eq(1)]
                with m.If(self.loaded):
                    enter(order[0])
                    m.next = first_state(order[0])
            for i in order:
                l, lp = g.layers[i], plan.prog.layers[i]
                if l.kind == "pool":
                    with m.State(f"POOL{i}_START"):
                        m.d.comb += [self.busy.eq(1), self.reader_start.eq(1)]
                        m.next = f"POOL{i}_RUN"
                    with m.State(f"POOL{i}_RUN"):
                        m.d.comb += [self.busy.eq(1), self.pool_run.eq(1)]
                        with m.If(self.reader_idle & (self.head_level <= 1)):
                            m.next = f"POOL{i}_DRAIN"
                    with m.State(f"POOL{i}_DRAIN"):
                        m.d.comb += self.busy.eq(1)
                        with after_cycles(POOL_DRAIN, f"pool{i}_drain"):
                            if plan.dense:
                                m.d.comb += self.sweep_start.eq(1)
                                m.next = f"POOL{i}_SWEEP"
                            else:
                                leave(i)
                    if plan.dense:
                        with m.State(f"POOL{i}_SWEEP"):
                            m.d.comb += [self.busy.eq(1), self.sweep_run.eq(1)]
                            with m.If(self.sweep_last):
                                m.next = f"POOL{i}_SWEEP_DRAIN"
                        with m.State(f"POOL{i}_SWEEP_DRAIN"):      # cycles.SWEEP_DRAIN
                            m.d.comb += self.busy.eq(1)
                            leave(i)
                    continue
                with m.State(f"ACC{i}_START"):
                    m.d.comb += [self.busy.eq(1), self.reader_start.eq(1)]
                    m.next = f"ACC{i}_RUN"
                with m.State(f"ACC{i}_RUN"):
                    m.d.comb += [self.busy.eq(1), self.acc_run.eq(1)]
                    with m.If(self.reader_idle & self.pe_idle):
                        m.next = f"ACC{i}_DRAIN"
                with m.State(f"ACC{i}_DRAIN"):
                    m.d.comb += self.busy.eq(1)
                    with after_cycles(ACC_DRAIN, f"acc{i}_drain"):
                        if l.kind != "output":
                            # the source's events are all read: the PE spike queues are free
                            # for this layer's own spikes
                            m.d.comb += self.spk_clear.eq(1)
                        if l.kind != "output" and lp.update_cycles:
                            m.d.comb += self.upd_start.eq(1)
                            m.next = f"UPD{i}_RUN"
                        else:
                            leave(i)
                if l.kind == "output" or not lp.update_cycles:
                    continue
                with m.State(f"UPD{i}_RUN"):
                    m.d.comb += [self.busy.eq(1), self.upd_run.eq(1)]
                    with m.If(self.upd_last):
                        m.next = f"UPD{i}_DRAIN"
                with m.State(f"UPD{i}_DRAIN"):
                    m.d.comb += self.busy.eq(1)
                    with after_cycles(UPD_DRAIN, f"upd{i}_drain"):
                        leave(i)
            with m.State("NEXT_T"):
                # one cycle per timestep: a decision folded into the previous state would
                # need the next layer's setup twice
                m.d.comb += self.busy.eq(1)
                with m.If(self.last_t):
                    m.d.sync += [self.score_index.eq(0), scores_sent.eq(0)]
                    m.next = "OUT"
                with m.Else():
                    m.d.sync += t.eq(t + 1)
                    if g.input.events:
                        # the next timestep's events: the input queue starts empty
                        m.d.comb += self.step_start.eq(1)
                        m.next = "LOAD"
                    else:
                        enter(order[0])
                        m.next = first_state(order[0])
            with m.State("OUT"):
                m.d.comb += [self.busy.eq(1), self.scores_valid.eq(~scores_sent)]
                with m.If(scores_sent):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
