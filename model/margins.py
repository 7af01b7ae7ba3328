"""How far each image is from a decision that float rounding could flip.

Two float implementations of one network (torch and brevitas, torch and the NIR import, a
float32 run on one CPU and on another) add the same terms in different orders, so their
sums differ by rounding.  A result that passes through a threshold is then equal in both
only when the sum is clear of the threshold by more than that rounding.  The decisions of
the zoo's networks are:
- a 0/1 activation (BNN-BinAct, ``x >= 0``): its distance is ``|x|``;
- a LIF spike at any timestep (``H >= theta``): ``|H - theta|``, with H recomputed by
  :class:`~ticketforge.model.brevitas_view.UnrolledLIF` (spikingjelly's expression) and
  checked against the neuron's own spikes;
- the predicted class (argmax of the scores): the gap between the two best scores relative
  to the image's largest ``|score|`` (scores of binary-weight nets are ``alpha`` times
  integers, so exact ties are common in an untrained net).

The margins are measured in float64 on a copy of the network, so they are the distance of
the *exact* value from the threshold up to 1e-16, not another float32 guess.

``NEAR_TIE = 1e-4``: an image whose smallest distance is at most this is near a tie.
Forward-error analysis bounds a float32 sum of n terms, in any order, by
``gamma_n * sum |terms|`` with ``gamma_n ~ n * 2**-24`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., sec. 3.1 and 4.2); the typical error grows as ``sqrt(n)``.
Measured on the float-sensitive tests' networks (fan-in up to 784, batch-normalised
pre-activations and membranes of order 1), float32 decision values differ from float64 by at
most 2.7e-6 under ``ATEN_CPU_CAPABILITY`` = default, avx2 and avx512 with 1 or 2 threads
(``bench/float_margins.py --all``, x86-64 with AVX-512): the margin is 36 times that.
Between two layers the values are exact (0 or 1), so a layer's rounding does not carry into
the next one once its own decisions are clear.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from ticketforge.model.brevitas_view import UnrolledLIF
from ticketforge.model.neurons import BinaryStep

__all__ = ["NEAR_TIE", "Margins", "decision_margins", "decision_values"]

NEAR_TIE = 1e-4


@dataclass(frozen=True)
class Margins:
    """Per-image distances to the nearest decision (see the module docstring)."""
    activation: np.ndarray    # smallest |x| of a 0/1 activation or |H - theta| of a spike (inf: none)
    score_gap: np.ndarray     # (best - second best score) / largest |score|
    margin: float = NEAR_TIE

    def settled(self) -> np.ndarray:
        """Every 0/1 activation and spike of the image is clear of its threshold."""
        return self.activation > self.margin

    def clear(self) -> np.ndarray:
        """Settled, and the predicted class is clear of the runner-up."""
        return self.settled() & (self.score_gap > self.margin)

    def summary(self) -> dict:
        return {"near_tie_margin": self.margin, "images": int(len(self.activation)),
                "images_settled": int(self.settled().sum()), "images_clear": int(self.clear().sum())}


def _score_gap(scores: np.ndarray) -> np.ndarray:
    if scores.shape[1] < 2:
        return np.full(len(scores), np.inf)
    top2 = np.sort(scores, axis=1)[:, -2:]
    scale = np.abs(scores).max(1)
    gap = top2[:, 1] - top2[:, 0]
    return np.where(scale > 0, gap / np.where(scale > 0, scale, 1.0), 0.0)


@torch.no_grad()
def _batches(net: nn.Module, images: torch.Tensor, dtype: torch.dtype, batch_size: int):
    """Yield, per batch of images, {activation module: signed distances [B, T, ...]} and the scores."""
    functional.reset_net(net)      # a neuron's memory from a forward with grad cannot be copied
    model = copy.deepcopy(net).to(dtype).eval()
    batch: dict[str, torch.Tensor] = {}

    def on_step(name):
        def hook(mod, inputs, out):
            batch[name] = inputs[0]
        return hook

    def on_lif(name):
        def hook(mod, inputs, out):
            if getattr(mod, "decay_input", False):
                raise ValueError(f"{name}: the LIF charge is recomputed with decay_input=False (the zoo's form)")
            h, s = UnrolledLIF(mod).charge_and_fire(inputs[0])
            dist = h - float(mod.v_threshold)
            off = s != out
            if bool((off & (dist.abs() > NEAR_TIE)).any()):
                raise RuntimeError(f"{name}: recomputed spikes differ from the neuron's away from its threshold; "
                                   "UnrolledLIF no longer matches spikingjelly's LIF")
            batch[name] = torch.where(off, torch.zeros_like(dist), dist)   # a float tie: distance 0
        return hook

    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, BinaryStep):
            hooks.append(mod.register_forward_hook(on_step(name)))
        elif isinstance(mod, sj_neuron.LIFNode):
            hooks.append(mod.register_forward_hook(on_lif(name)))
        elif isinstance(mod, sj_neuron.BaseNode):
            raise ValueError(f"{name}: no charge model for {type(mod).__name__}")
    try:
        for i in range(0, len(images), batch_size):
            batch.clear()
            scores = model(images[i:i + batch_size].to(dtype)).numpy()
            yield {k: v.transpose(0, 1).numpy() for k, v in batch.items()}, scores   # [T, B] -> [B, T]
    finally:
        for h in hooks:
            h.remove()


def decision_values(net: nn.Module, images: torch.Tensor, dtype: torch.dtype = torch.float64,
                    batch_size: int = 256) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run a copy of `net` (a zoo TicketNet) in `dtype` on `images`; return, per activation
    module, its signed distances to the threshold ``[B, T, ...]`` (``x`` of a 0/1 step,
    ``H - theta`` of a LIF neuron), and the scores ``[B, classes]``."""
    found: dict[str, list[np.ndarray]] = {}
    scores = []
    for values, s in _batches(net, images, dtype, batch_size):
        scores.append(s)
        for k, v in values.items():
            found.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in found.items()}, np.concatenate(scores)


def decision_margins(net: nn.Module, images: torch.Tensor, margin: float = NEAR_TIE,
                     batch_size: int = 256) -> Margins:
    """How far each image's decisions are from their thresholds, measured in float64."""
    act, gaps = [], []
    for values, scores in _batches(net, images, torch.float64, batch_size):
        a = np.full(len(scores), np.inf)
        for v in values.values():
            a = np.minimum(a, np.abs(v).reshape(len(v), -1).min(1))
        act.append(a)
        gaps.append(_score_gap(scores))
    return Margins(np.concatenate(act), np.concatenate(gaps), margin)
