"""The rowstream datapath's multiply-accumulate lanes."""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacLanes", "lane_weight", "pack_row"]


def lane_weight(word: int, lane: int, bits: int) -> int:
    """Lane ``lane``'s signed weight in a packed row word (two's complement, ``bits`` each)."""
    v = (word >> (lane * bits)) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


def pack_row(weights, bits: int) -> int:
    """A row's signed weights packed lane 0 lowest, ``bits`` two's complement each."""
    out = 0
    for lane, w in enumerate(weights):
        out |= (int(w) & ((1 << bits) - 1)) << (lane * bits)
    return out


class MacLanes(wiring.Component):
    """L accumulators and their L shadows.  In a cycle with ``add`` each accumulator adds
    ``value x w`` (its weight of the row ``weights``, `pack_row`); ``clear`` starts them
    from 0 (an ``add`` in the same cycle adds to 0).  ``handoff`` copies into the shadows
    the accumulators' values *after* this cycle's add, so a pass hands on its sums in the
    cycle of its last add, and the next pass may clear and add in the cycle after.
    ``rotate`` moves every shadow one lane down and lane 0's to lane L - 1, so the update
    reads every lane at ``head`` (shadow 0) in L cycles and leaves them in place, while the
    accumulators take the next pass.  The product is shift-and-add over the weight's bits:
    no multiplier, so no DSP (the UP5K has eight) and the same logic on every device."""

    def __init__(self, lanes: int, weight_bits: int, value_bits: int, acc_bits: int):
        self.L, self.B, self.value_bits, self.acc_bits = lanes, weight_bits, value_bits, acc_bits
        super().__init__({
            "value": In(unsigned(value_bits)),
            "weights": In(lanes * weight_bits),
            "add": In(1), "clear": In(1), "handoff": In(1), "rotate": In(1),
            "head": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        L, B = self.L, self.B
        acc = [Signal(signed(self.acc_bits), name=f"acc{j}") for j in range(L)]
        shadow = [Signal(signed(self.acc_bits), name=f"shadow{j}") for j in range(L)]
        v = self.value
        for j in range(L):
            w = self.weights[j * B:(j + 1) * B]
            terms = [Mux(w[b], v << b, 0) for b in range(B - 1)]
            pos = terms[0] if terms else 0
            for t in terms[1:]:
                pos = pos + t
            prod = Signal(signed(self.value_bits + B + 1), name=f"prod{j}")
            m.d.comb += prod.eq(pos - Mux(w[B - 1], v << (B - 1), 0))
            nxt = Signal(signed(self.acc_bits), name=f"acc_next{j}")
            m.d.comb += nxt.eq(Mux(self.clear, 0, acc[j]) + Mux(self.add, prod, 0))
            m.d.sync += acc[j].eq(nxt)
            with m.If(self.handoff):
                m.d.sync += shadow[j].eq(nxt)
            with m.Elif(self.rotate):
                m.d.sync += shadow[j].eq(shadow[(j + 1) % L])
        m.d.comb += self.head.eq(shadow[0])
        return m
