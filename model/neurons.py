"""Activations of the zoo: spikingjelly LIF neurons for the spiking variants, ReLU for
`ann`, a 0/1 step with a straight-through gradient for `bnn` (BNN-BinAct).

Decay mapping (exact).  The papers write the leaky integration as ``V <- lam*V + I`` with a
decay rate ``lam`` (BinW-SLT default 0.99).  spikingjelly's ``LIFNode`` with
``decay_input=False`` and ``v_reset=0`` computes ``H = V - (V - 0)/tau + X``, i.e.
``H = (1 - 1/tau) * V + X``.  So ``lam = 1 - 1/tau`` and ``tau = 1 / (1 - lam)``: lam = 0.99
gives tau = 100.  We keep ``decay_input=False`` on purpose: with ``decay_input=True`` the
input would also be scaled by ``1/tau`` (0.01 at lam = 0.99) and a non-affine BatchNorm
output could never reach the threshold in 4 steps; the unscaled form is also the one the
integer hardware computes (``V = leak(V) + sum of +-events``).
Soft reset (``v_reset=None``) subtracts the threshold instead of zeroing.
"""
from __future__ import annotations

import torch
from torch import nn
from spikingjelly.activation_based import neuron, surrogate

__all__ = ["tau_from_lam", "lam_from_tau", "make_lif", "BinaryStep", "make_activation", "SPIKING_TYPES"]


def tau_from_lam(lam: float) -> float:
    """spikingjelly's tau for a decay rate lam (``V <- lam*V + I``); lam must be in [0, 1)."""
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"decay rate lam must be in [0, 1), got {lam!r}")
    return 1.0 / (1.0 - lam)


def lam_from_tau(tau: float) -> float:
    return 1.0 - 1.0 / tau


_SURROGATES = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}


def make_lif(lam: float, v_threshold: float, reset: str, surrogate_name: str) -> neuron.LIFNode:
    """A multi-step spikingjelly LIF neuron for `V <- lam*V + I` (see module docstring)."""
    if reset not in ("hard", "soft"):
        raise ValueError(f"reset must be 'hard' or 'soft', got {reset!r}")
    return neuron.LIFNode(
        tau=tau_from_lam(lam), decay_input=False, v_threshold=v_threshold,
        v_reset=0.0 if reset == "hard" else None,
        surrogate_function=_SURROGATES[surrogate_name](), detach_reset=True, step_mode="m",
    )


class _StepSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # hard-tanh straight-through estimator (BinaryNet): pass the gradient on [-1, 1]
        return grad * (x.abs() <= 1).to(grad.dtype)


class BinaryStep(nn.Module):
    """BNN-BinAct activation: 1 where the (batch-normalised) input is >= 0, else 0.
    0/1 rather than -1/+1 so that the binary activation is an event, as a spike is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StepSTE.apply(x)


# Modules whose outputs are binary events (spikes or 0/1 activations).
SPIKING_TYPES = (neuron.BaseNode, BinaryStep)


def make_activation(variant: str, lam: float, v_threshold: float, reset: str, surrogate_name: str) -> nn.Module:
    if variant == "ann":
        return nn.ReLU()
    if variant == "bnn":
        return BinaryStep()
    return make_lif(lam, v_threshold, reset, surrogate_name)
