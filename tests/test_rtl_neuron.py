"""The PE's neuron-update datapath (Amaranth simulation) against a Python model of one
neuron written from docs/IR.md, and the pre-leaked-membrane form against the golden
interpreter's neuron over whole spike trains."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from ticketforge.ir.golden import leak
from ticketforge.ir.schema import Neuron
from ticketforge.rtl.neuron import NeuronUpdate


def model(n: Neuron, u, thr, bias, keep, last):
    h = min(max(u, n.vmin), n.vmax)
    spike = bool(keep) and h >= thr
    v = (0 if n.reset == "hard" else h - thr) if spike else h
    v = v if keep else 0
    u_next = bias if last else int(leak(np.int64(v), n)) + bias
    return int(spike), v, u_next


NEURONS = [Neuron("shift", leak_shift=3, reset="hard", membrane_bits=8),
           Neuron("fixed", leak_mult=200, leak_frac_bits=8, reset="soft", membrane_bits=10),
           Neuron("none", reset="soft", membrane_bits=6)]


@pytest.mark.parametrize("n", NEURONS, ids=lambda n: f"{n.leak}-{n.reset}")
def test_neuron_update_matches_the_model(n):
    acc_bits = n.membrane_bits + 4
    dut = NeuronUpdate(n, acc_bits)
    rng = np.random.default_rng(n.membrane_bits)
    lim = 1 << (acc_bits - 2)
    cases = [(int(rng.integers(-lim, lim)), int(rng.integers(1, n.vmax + 1)), int(rng.integers(n.vmin, n.vmax + 1)),
              int(rng.random() < 0.9), int(rng.random() < 0.2)) for _ in range(300)]
    cases += [(n.vmax + 5, n.vmax, 0, 1, 0), (n.vmin - 5, 1, n.vmin, 1, 0), (0, 1, 0, 0, 0)]
    mismatches = []

    async def bench(ctx):
        for u, thr, bias, keep, last in cases:
            for sig, val in ((dut.u, u), (dut.threshold, thr), (dut.bias, bias), (dut.keep, keep), (dut.last, last)):
                ctx.set(sig, val)
            got = (ctx.get(dut.spike), ctx.get(dut.v), ctx.get(dut.u_next))
            want = model(n, u, thr, bias, keep, last)
            if got != want:
                mismatches.append(((u, thr, bias, keep, last), got, want))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]


def test_preleaked_membrane_equals_the_ir_neuron():
    """Accumulating into U = leak(V) + bias, then updating, gives the IR's spike train."""
    rng = np.random.default_rng(0)
    for n in NEURONS:
        for _ in range(50):
            T = 6
            acc = rng.integers(-40, 60, T)
            thr, bias = int(rng.integers(1, n.vmax)), int(rng.integers(-10, 10))
            v, spikes_ir = 0, []                       # the IR, literally (docs/IR.md)
            for t in range(T):
                h = min(max(int(leak(np.int64(v), n)) + int(acc[t]) + bias, n.vmin), n.vmax)
                s = h >= thr
                v = (0 if n.reset == "hard" else h - thr) if s else h
                spikes_ir.append(int(s))
            u, spikes_hw = bias, []                     # the accelerator's form
            for t in range(T):
                s, _, u = model(n, u + int(acc[t]), thr, bias, 1, t == T - 1)
                spikes_hw.append(s)
            assert spikes_hw == spikes_ir
            assert u == bias                            # ready for the next image


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_parameters_are_refused_with_the_value():
    with pytest.raises(ValueError, match="acc_bits .* membrane_bits \\+ 1"):
        NeuronUpdate(Neuron(membrane_bits=8), 8)
    with pytest.raises(ValueError, match="leak"):
        NeuronUpdate(Neuron(leak="cubic", membrane_bits=8), 12)
