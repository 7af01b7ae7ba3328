"""One lane of a bit-parallel synapse datapath: a word of input spikes against a word of one
neuron's kept synapses, all in one cycle.

Per cycle with ``add`` high::

    acc <- (clear ? 0 : acc) + popcount(spikes & mask & ~negative) - popcount(spikes & mask & negative)

``mask`` bit i is 1 for a kept synapse from input i and ``negative`` its sign (1: weight -1),
so a masked synapse is a 0 in the AND and costs nothing.  ``clear`` without ``add`` sets the
accumulator to 0.  This is the output-stationary datapath studied in docs/DATAPATH.md
(``bitpar``): a PE holds lanes of these, one per output channel it is working on, fed one
broadcast spike word per cycle.
"""
from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PopcountLane", "popcount"]


def popcount(bits):
    """Number of set bits of an Amaranth value, as a balanced adder tree: Amaranth 0.5 has no
    popcount operator, and summing the bits left to right would build a carry chain as
    long as the word (depth n instead of log2 n)."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        raise ValueError("popcount of a zero-width value")
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class PopcountLane(wiring.Component):
    """``width``: synapses per word (the input channels of a conv tap, or a linear layer's
    word of inputs); ``acc_bits``: the signed accumulator's width, which the caller sizes
    for the whole sum (it wraps, as a register does, beyond it)."""

    def __init__(self, width: int, acc_bits: int):
        if not isinstance(width, int) or not 1 <= width <= 1024:
            raise ValueError(f"width must be an integer in [1, 1024], got {width!r}")
        need = width.bit_length() + 1
        if not isinstance(acc_bits, int) or acc_bits < need:
            raise ValueError(f"acc_bits must be an integer >= {need} (one word's sum of {width} "
                             f"synapses, signed), got {acc_bits!r}")
        self.width, self.acc_bits = width, acc_bits
        super().__init__({
            "spikes": In(width), "mask": In(width), "negative": In(width),
            "add": In(1), "clear": In(1),
            "acc": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        kept = self.spikes & self.mask
        word = popcount(kept & ~self.negative) - popcount(kept & self.negative)
        with m.If(self.add):
            with m.If(self.clear):
                m.d.sync += self.acc.eq(word)
            with m.Else():
                m.d.sync += self.acc.eq(self.acc + word)
        with m.Elif(self.clear):
            m.d.sync += self.acc.eq(0)
        return m
