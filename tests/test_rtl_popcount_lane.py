"""PopcountLane in Amaranth simulation against a Python reference model, cycle by cycle."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from ticketforge.rtl.popcount_lane import PopcountLane


class LaneModel:
    """The reference: the accumulator after each cycle's inputs."""

    def __init__(self, acc_bits: int):
        self.acc, self.bits = 0, acc_bits

    def step(self, spikes: int, mask: int, negative: int, add: bool, clear: bool) -> int:
        kept = spikes & mask
        word = bin(kept & ~negative).count("1") - bin(kept & negative).count("1")
        base = 0 if clear else self.acc
        if add or clear:
            self.acc = base + (word if add else 0)
        lo, span = -(1 << (self.bits - 1)), 1 << self.bits
        self.acc = (self.acc - lo) % span + lo           # a register of acc_bits wraps
        return self.acc


@pytest.mark.parametrize("width,acc_bits", [(1, 3), (9, 6), (32, 8), (64, 12)])
def test_lane_equals_the_model(width, acc_bits):
    rng = np.random.default_rng(width)
    dut = PopcountLane(width, acc_bits)
    model = LaneModel(acc_bits)
    steps = [(int.from_bytes(rng.bytes(8), "little") & ((1 << width) - 1) for _ in range(3))
             for _ in range(200)]
    flags = rng.random((200, 2)) < [0.8, 0.1]

    async def bench(ctx):
        for (s, mk, neg), (add, clear) in zip(steps, flags):
            ctx.set(dut.spikes, s)
            ctx.set(dut.mask, mk)
            ctx.set(dut.negative, neg)
            ctx.set(dut.add, int(add))
            ctx.set(dut.clear, int(clear))
            await ctx.tick()
            assert ctx.get(dut.acc) == model.step(s, mk, neg, add, clear), (s, mk, neg, add, clear)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_parameters_are_refused_with_the_value():
    with pytest.raises(ValueError, match="width must be an integer in \\[1, 1024\\], got 0"):
        PopcountLane(0, 8)
    with pytest.raises(ValueError, match="acc_bits must be an integer >= 8 .* got 4"):
        PopcountLane(64, 4)
