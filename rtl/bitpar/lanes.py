"""The bitpar datapath's lanes: ``L`` output channels, each with one accumulator per timestep,
fed one step (a spike word of T x 32 bits, or one pixel) per cycle.

Two registered stages, so that the popcount tree and the accumulator's carry chain are not
one path (timing on the ECP5)::

    cycle n   (add)      pc[l][t] <- first ? (pos_l[0] - neg_l[0]) * pixel
                                            : popcount(s_t & pos_l) - popcount(s_t & neg_l)
    cycle n+1            total[l][t] = acc[l][t] + (add in cycle n ? pc[l][t] : 0)
                         acc[l][t] <- clear ? 0 : total[l][t]

With ``shifts`` > 1 the value is shifted left by the ``shift`` input first: a bit plane of
the pixels (a linear first layer) and a magnitude bit of multi-bit weights, one step each
(`plan.StepRow.shift`), so a B-bit weight costs B - 1 steps and no multiplier.

``total`` (combinational) is the sum including the step in the accumulate stage, so a
``clear`` in the cycle of a group's last step hands that group's sums on (the caller
registers ``total``) and starts the next group from 0 without a gap.  The spike word's bit
of (t, channel) is `plan.bit_index`.
"""
from __future__ import annotations

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.bitpar.plan import WORD, bit_index
from ticketforge.rtl.popcount_lane import popcount

__all__ = ["LaneArray", "weight_layout"]


def weight_layout(L: int) -> data.ArrayLayout:
    """One step's weights: per lane a word of +1 synapses and a word of -1 synapses."""
    return data.ArrayLayout(data.StructLayout({"pos": WORD, "neg": WORD}), L)


class LaneArray(wiring.Component):
    """``L`` lanes x ``T`` timesteps of ``acc_bits``-bit signed accumulators; ``pixel_bits``
    wide pixels for the first layer.  ``shifts`` > 1 adds a ``shift`` input in
    ``range(shifts)``: each step's value (popcount difference or signed pixel) is shifted
    left by it."""

    def __init__(self, L: int, T: int, acc_bits: int, pixel_bits: int = 8, shifts: int = 0):
        for name, v, lo in (("L", L, 1), ("T", T, 1), ("pixel_bits", pixel_bits, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(shifts, int) or not 0 <= shifts <= 32:
            raise ValueError(f"shifts must be an integer in [0, 32], got {shifts!r}")
        need = max(WORD.bit_length(), pixel_bits) + 2
        if not isinstance(acc_bits, int) or acc_bits < need:
            raise ValueError(f"acc_bits must be an integer >= {need}, got {acc_bits!r}")
        self.L, self.T, self.acc_bits, self.pixel_bits, self.shifts = L, T, acc_bits, pixel_bits, shifts
        extra = {"shift": In(range(shifts))} if shifts > 1 else {}
        super().__init__({
            **extra,
            "spikes": In(T * WORD),
            "pixel": In(unsigned(pixel_bits)),
            "weights": In(weight_layout(L)),
            "first": In(1),
            "add": In(1),
            "clear": In(1),
            "acc": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_bits), T), L)),
            "total": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_bits), T), L)),
        })

    def elaborate(self, platform):
        m = Module()
        L, T = self.L, self.T
        value_bits = max(WORD.bit_length(), self.pixel_bits) + 2
        pc_bits = value_bits + max(self.shifts - 1, 0)
        add_q = Signal()
        m.d.sync += add_q.eq(self.add)
        for t in range(T):
            s_t = Cat(self.spikes[bit_index(T, L, t, cc)] for cc in range(WORD))
            for lane in range(L):
                w = self.weights[lane]
                pc = Signal(signed(pc_bits), name=f"pc_{lane}_{t}")
                px = Cat(self.pixel, C(0, 1)).as_signed()      # zero-extended: pixels are unsigned
                word = popcount(s_t & w.pos) - popcount(s_t & w.neg)
                pix = Mux(w.pos[0], px, Mux(w.neg[0], -px, 0))
                value = Mux(self.first, pix, word)
                if self.shifts > 1:
                    v = Signal(signed(value_bits), name=f"value_{lane}_{t}")
                    m.d.comb += v.eq(value)
                    value = Array(v << b for b in range(self.shifts))[self.shift]
                m.d.sync += pc.eq(value)
                acc, total = self.acc[lane][t], self.total[lane][t]
                m.d.comb += total.eq(acc + Mux(add_q, pc, 0))
                m.d.sync += acc.eq(Mux(self.clear, 0, total))
        return m
