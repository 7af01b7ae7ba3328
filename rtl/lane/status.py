"""The status block: the image's cycle count and, per layer, the energy-relevant event counters
(`cycles.COUNTERS`), read one word at a time by address.

- ``clear`` (the cycle an image starts) zeroes the cycle count and every counter;
- while ``busy`` the cycle count goes up by one per cycle, and the current ``layer``'s
  counter of each kind by that kind's ``increments`` entry;
- ``latch`` (the cycle the last class score is taken) keeps ``cycles + 1``: the image's
  busy cycles, what address 0 reads;
- ``status_addr`` is registered, and ``status_data`` takes the addressed word only while
  not ``busy``: a word is there `cycles.STATUS_LATENCY` (2) cycles after its address.

Inputs are registered before any logic reads them, and counting tests ``busy`` (a state)
rather than a start input: logic that depends on an input lands in Verilator's
input-combinational region, evaluated on every clock edge.
"""
from __future__ import annotations

from amaranth import Array, C, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.cycles import COUNTERS
from ticketforge.rtl.lane.plan import COUNTER_BITS

__all__ = ["StatusBlock"]


class StatusBlock(wiring.Component):
    """``layers``: the number of layers; ``counted``: the indices of the layers that have
    counters (in status-address order); ``increment_bits``: the width of one cycle's
    increment of a counter kind."""

    def __init__(self, layers: int, counted: list[int], increment_bits: int):
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        if sorted(set(counted)) != list(counted) or not all(0 <= i < layers for i in counted):
            raise ValueError(f"counted must be distinct layer indices in [0, {layers}) in order, got {counted!r}")
        if not isinstance(increment_bits, int) or increment_bits < 1:
            raise ValueError(f"increment_bits must be an integer >= 1, got {increment_bits!r}")
        self.layers, self.counted = layers, list(counted)
        self.words = 1 + len(COUNTERS) * len(self.counted)
        super().__init__({
            "layer": In(range(max(2, layers))),
            "busy": In(1),
            "clear": In(1),
            "latch": In(1),
            "increments": In(data.ArrayLayout(unsigned(increment_bits), len(COUNTERS))),
            "status_addr": In(range(max(2, self.words))),
            "status_data": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cycles = Signal(COUNTER_BITS)
        last_cycles = Signal(COUNTER_BITS)
        counters = {i: [Signal(COUNTER_BITS, name=f"layer{i}_{c}") for c in COUNTERS] for i in self.counted}
        flat = [last_cycles] + [s for i in self.counted for s in counters[i]]
        status_addr = Signal.like(self.status_addr)
        m.d.sync += status_addr.eq(self.status_addr)
        with m.If(~self.busy):
            m.d.sync += self.status_data.eq(Array(flat)[status_addr])
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.latch):
            m.d.sync += last_cycles.eq(cycles + 1)
        if self.counted:
            # one adder per counter kind (not one per layer): the current layer's counter is
            # selected, incremented, and written back
            slot = Array(C(self.counted.index(i) if i in counters else 0, range(max(2, len(self.counted))))
                         for i in range(self.layers))[self.layer]
            for j in range(len(COUNTERS)):
                total = self.increments[j]
                now = Signal(COUNTER_BITS, name=f"counter_{COUNTERS[j]}_now")
                m.d.comb += now.eq(Array(counters[i][j] for i in self.counted)[slot])
                with m.If((total != 0) & self.busy):
                    with m.Switch(self.layer):
                        for i in self.counted:
                            with m.Case(i):
                                m.d.sync += counters[i][j].eq(now + total)
        with m.If(self.clear):
            m.d.sync += [cycles.eq(0)] + [s.eq(0) for i in self.counted for s in counters[i]]
        return m
