"""The PE's neuron-update datapath: one integer LIF update of docs/IR.md per cycle.

The accelerator keeps, per neuron slot, the *pre-leaked* membrane ``U = leak(V) + bias``
(written at the end of each update) and adds every synaptic contribution ``+-value <<
input_shift`` to it during the accumulate phase.  Integer addition is associative, so at
update time ``U`` equals the IR's ``H`` before saturation exactly.  The update then does:

    H = clamp(U)                       to membrane_bits (signed)
    spike = keep and H >= threshold
    V = spike ? (hard: 0 | soft: H - threshold) : H;  V = 0 if not keep
    U_next = last ? bias : leak(V) + bias      (the next image starts from V = 0)

``leak`` is ``V - (V >>> k)`` (shift) or ``(V * m) >>> F`` (fixed: a constant multiplier,
the only one in the design, outside the accumulate path) or none.  Combinational; the PE
array registers around it.
"""
from __future__ import annotations

from amaranth import Mux, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ticketforge.ir.schema import LEAK_KINDS, RESETS, Neuron

__all__ = ["NeuronUpdate"]


class NeuronUpdate(wiring.Component):
    """Parameters: the layer's :class:`Neuron` and the width of the accumulated membrane
    ``acc_bits`` (> membrane_bits; wide enough for U during accumulation)."""

    def __init__(self, neuron: Neuron, acc_bits: int):
        if neuron.leak not in LEAK_KINDS:
            raise ValueError(f"leak must be one of {LEAK_KINDS}, got {neuron.leak!r}")
        if neuron.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {neuron.reset!r}")
        if not 2 <= neuron.membrane_bits <= 48:
            raise ValueError(f"membrane_bits must be in [2, 48], got {neuron.membrane_bits}")
        if acc_bits < neuron.membrane_bits + 1:
            # leak(V) + bias of a membrane-wide V and bias needs one bit more (the caller
            # sizes acc_bits for the whole accumulation: accel.u_range)
            raise ValueError(f"acc_bits ({acc_bits}) must be at least membrane_bits + 1 "
                             f"({neuron.membrane_bits + 1})")
        self.neuron = neuron
        self.acc_bits = acc_bits
        b = neuron.membrane_bits
        super().__init__({
            "u": In(signed(acc_bits)),          # accumulated pre-leaked membrane
            "threshold": In(signed(b)),
            "bias": In(signed(b)),
            "keep": In(1),
            "last": In(1),                      # last timestep of the image
            "spike": Out(1),
            "u_next": Out(signed(acc_bits)),
            "v": Out(signed(b + 1)),            # membrane after reset (soft reset may go below vmin)
        })

    def elaborate(self, platform):
        m = Module()
        n = self.neuron
        b = n.membrane_bits
        h = self.u.as_signed()
        clamped = Mux(h > n.vmax, n.vmax, Mux(h < n.vmin, n.vmin, h))
        hs = clamped[:b].as_signed()
        fire = self.keep & (hs >= self.threshold)
        if n.reset == "hard":
            after = Mux(fire, 0, hs)
        else:
            after = Mux(fire, hs - self.threshold, hs)
        vv = Mux(self.keep, after, 0)
        if n.leak == "shift":
            leaked = vv - (vv >> n.leak_shift)
        elif n.leak == "fixed":
            leaked = (vv * n.leak_mult) >> n.leak_frac_bits
        else:
            leaked = vv
        m.d.comb += [
            self.spike.eq(fire),
            self.v.eq(vv),
            self.u_next.eq(Mux(self.last, self.bias, leaked + self.bias)),
        ]
        return m


