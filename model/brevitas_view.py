"""The brevitas view of a ticket: the same network with brevitas-quantized weights and input.

- Binary-weight layers (``alpha * M * sign(w)``) use a 2-bit narrow-range integer quantizer
  (levels -1, 0, +1).  brevitas' binary quantizers cannot represent a pruned zero, and with
  the effective weight written in, the abs-max scale is exactly ``alpha`` (TOOLCHAIN.md).
- Real-valued tickets (``snn``, ``slt``) use brevitas' narrow-range per-tensor quantizer at
  ``weight_bits`` (2-8, the config's ``hw.weight_bits``; 8 by default): post-training, the
  quantize stage reports what it costs (float against integer accuracy).
- The input is an 8-bit unsigned quantizer calibrated (max statistics) on training images.

The integer weights and input codes of the hardware IR are read from this view
(``quant_weight().int()``), and the view is what is exported to QONNX.  Its LIF neurons
are plain torch (unrolled over T) with spikingjelly's exact float expression, so the view
computes what the ticket computes and the ONNX exporter can trace it.
"""
from __future__ import annotations

import copy

import functools

import torch
from torch import nn
from brevitas.core.stats import StatsOp
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron

from ticketforge.ir.schema import IRError
from ticketforge.model.layers import MaskedConv2d, MaskedLayer
from ticketforge.model.zoo import BasicBlock, NeuronGate, TicketNet

__all__ = ["TernaryWeightQuant", "PixelQuant", "UnrolledLIF", "BrevitasView", "ResidualView", "weight_bits_for", "quant_copy",
           "calibrate"]


class TernaryWeightQuant(Int8WeightPerTensorFloat):
    """2-bit narrow range: {-1, 0, +1} x scale; scale = max|w| = alpha of a binary ticket."""
    bit_width = 2
    narrow_range = True


class Int8NarrowWeightQuant(Int8WeightPerTensorFloat):
    narrow_range = True


@functools.cache
def weight_quant_for(bits: int) -> type:
    """The brevitas weight quantizer of a layer with ``bits``-bit signed integer weights."""
    if bits == 2:
        return TernaryWeightQuant
    if bits == 8:
        return Int8NarrowWeightQuant
    return type(f"Int{bits}NarrowWeightQuant", (Int8NarrowWeightQuant,), {"bit_width": bits})


class PixelQuant(Uint8ActPerTensorFloat):
    """8-bit unsigned input, scale from the maximum seen in calibration."""
    scaling_stats_op = StatsOp.MAX


def weight_bits_for(m: MaskedLayer, real_bits: int = 8) -> int:
    """A binary layer's weights are {-1, 0, +1} (2 bits); a real-valued one's ``real_bits``."""
    return 2 if m.mode in ("binary", "score_bin") else real_bits


class UnrolledLIF(nn.Module):
    """spikingjelly's multi-step LIF forward (decay_input=False) in plain torch ops."""

    def __init__(self, node: sj_neuron.LIFNode):
        super().__init__()
        self.tau = float(node.tau)
        self.v_threshold = float(node.v_threshold)
        self.v_reset = node.v_reset

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.charge_and_fire(x_seq)[1]

    def charge_and_fire(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The charged membranes H (before the threshold compare) and the spikes, ``[T, ...]``."""
        v = torch.zeros_like(x_seq[0])
        hs, out = [], []
        for x in x_seq:
            if self.v_reset is None:
                h = v - v / self.tau + x
            else:
                h = v - (v - self.v_reset) / self.tau + x
            s = (h >= self.v_threshold).to(x.dtype)
            v = h - s * self.v_threshold if self.v_reset is None else h * (1 - s) + self.v_reset * s
            hs.append(h)
            out.append(s)
        return torch.stack(hs), torch.stack(out)


class _Seq(nn.Module):
    """Apply stateless modules on [T*B, ...]."""

    def __init__(self, *mods: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.body(x.flatten(0, 1))
        return y.reshape(t, b, *y.shape[1:])


def quant_copy(m: MaskedLayer, linear_zero_bias: bool = False, real_bits: int = 8) -> nn.Module:
    """The brevitas layer computing what masked layer `m` computes (its effective weight).
    ``linear_zero_bias``: give a linear layer an explicit zero bias (see bnn_qonnx);
    ``real_bits``: the weight bits of a real-valued layer."""
    wq = weight_quant_for(weight_bits_for(m, real_bits))
    if isinstance(m, MaskedConv2d):
        q = QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                        bias=False, weight_quant=wq)
    else:
        q = QuantLinear(m.in_features, m.out_features, bias=linear_zero_bias, weight_quant=wq)
    with torch.no_grad():
        q.weight.copy_(m.effective_weight())
        if q.bias is not None:
            q.bias.zero_()
    return q


@torch.no_grad()
def calibrate(input_quant: nn.Module, images: torch.Tensor, batch_size: int = 500) -> None:
    """Collect an activation quantizer's statistics (brevitas needs train mode for that)."""
    input_quant.train()
    for i in range(0, len(images), batch_size):
        input_quant(images[i:i + batch_size])
    input_quant.eval()


class ResidualView(nn.Module):
    """A basic block's view: ``act2(conv2(act1(conv1 x)) + shortcut x)`` on ``[T, B, ...]``,
    its parts converted like any layer (the shortcut: a 1x1 conv + BatchNorm, or identity)."""

    def __init__(self, conv1: nn.Module, act1: nn.Module, conv2: nn.Module, shortcut: nn.Module, act2: nn.Module):
        super().__init__()
        self.conv1, self.act1, self.conv2, self.shortcut, self.act2 = conv1, act1, conv2, shortcut, act2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class BrevitasView(nn.Module):
    """Built from a trained :class:`TicketNet`; ``forward`` takes images in [0, 1], or with
    ``events`` binary frames ``[B, T, C, H, W]``, which are already integers: no input
    quantizer, scale 1."""

    def __init__(self, net: TicketNet, events: bool = False, weight_bits: int = 8):
        super().__init__()
        self.T, self.events, self.weight_bits = net.T, events, weight_bits
        self.input_quant = nn.Identity() if events else QuantIdentity(act_quant=PixelQuant,
                                                                       return_quant_tensor=False)
        mods: list[nn.Module] = []
        for i, mod in enumerate(net.body):
            mods.append(self._convert(i, mod, weight_bits))
        self.body = nn.Sequential(*mods)
        self.eval()

    @staticmethod
    def _convert(i: int, mod: nn.Module, weight_bits: int) -> nn.Module:
        from ticketforge.model.spikformer import MLPBlock, SelfAttention, TokenMean

        if isinstance(mod, (SelfAttention, MLPBlock)):
            view = copy.deepcopy(mod)      # the same forward, on converted parts
            for name, child in mod.named_children():
                setattr(view, name, BrevitasView._convert(i, child, weight_bits))
            return view
        if isinstance(mod, TokenMean):
            return mod
        if isinstance(mod, BasicBlock):
            parts = [BrevitasView._convert(i, m, weight_bits) if not isinstance(m, nn.Identity) else m
                     for m in (mod.conv1, mod.act1, mod.conv2, mod.shortcut, mod.act2)]
            return ResidualView(*parts)
        if isinstance(mod, sj_neuron.LIFNode):
            return UnrolledLIF(mod)
        if isinstance(mod, NeuronGate):
            return mod
        if isinstance(mod, sj_layer.SeqToANNContainer):
            inner = []
            for sub in mod:
                if isinstance(sub, MaskedLayer):
                    inner.append(quant_copy(sub, real_bits=weight_bits))
                elif isinstance(sub, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten)):
                    inner.append(sub)
                elif isinstance(sub, nn.MaxPool2d):
                    inner.append(sub)
                elif isinstance(sub, nn.AdaptiveAvgPool2d) and sub.output_size in (1, (1, 1)):
                    inner.append(sub)           # a global average pool: lowered into the layer after it
                elif isinstance(sub, nn.AdaptiveAvgPool2d):
                    raise IRError(f"layer body.{i} (average pool to {sub.output_size}): only a global average "
                                  "pool (to 1x1) maps to the hardware IR, folded into the layer after it")
                else:
                    raise IRError(f"layer body.{i} ({type(sub).__name__}): not mappable to the hardware IR "
                                  "(it takes conv/linear + BatchNorm + LIF, 2x2 max-pool on spikes, flatten)")
            return _Seq(*inner)
        raise IRError(f"layer body.{i} ({type(mod).__name__}): not mappable to the hardware IR; only LIF "
                      "neurons are (the ann and bnn variants are model-stage baselines)")

    @torch.no_grad()
    def calibrate_input(self, images: torch.Tensor, batch_size: int = 500) -> None:
        if not self.events:
            calibrate(self.input_quant, images, batch_size)

    def input_scale(self) -> float:
        return 1.0 if self.events else float(self.input_quant.act_quant.scale())

    def input_codes(self, images: torch.Tensor) -> torch.Tensor:
        """The 8-bit unsigned codes brevitas gives the images (what the hardware receives);
        event frames are their own codes (0/1)."""
        if self.events:
            return images.round().to(torch.int64)
        self.input_quant.return_quant_tensor = True
        try:
            return self.input_quant(images).int().to(torch.int64)
        finally:
            self.input_quant.return_quant_tensor = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.events:
            return self.body(x.transpose(0, 1)).mean(0)
        x = self.input_quant(x)
        seq = x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))
        return self.body(seq).mean(0)
