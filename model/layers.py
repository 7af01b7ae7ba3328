"""Prunable conv/linear layers with the weight forms of every variant.

One class per op (:class:`MaskedConv2d`, :class:`MaskedLinear`) and a ``mode`` that says
how the effective weight is formed from the stored tensors:

=============  ===============================================  =======================
mode           effective weight                                 what is trained
=============  ===============================================  =======================
``dense``      ``w * M``  (M a fixed mask buffer, ones at start)  w
``binary``     ``alpha * M * sign(w)``, M fixed, or top-(1-r_p)    w via straight-through
               of |w| per layer when r_p > 0 (pruned BNN)
``score_bin``  ``alpha * M(s) * sign(w)``  (BinW-SLT)              scores s; w frozen
``score_real`` ``w * M(s)``  (SLT, edge-popup)                    scores s; w frozen
=============  ===============================================  =======================

``M(s)`` keeps the top ``(1 - r_p)`` fraction of ``|s|`` per layer, with a straight-through
gradient to ``s`` (edge-popup's GetSubnet; torch has no top-k mask with that gradient, so
it is written here).  ``alpha = ||M * w||_1 / ||M||_1`` is recomputed every forward pass
(BinW-SLT Algorithm 1, line 10).  In ``binary`` mode (BNN training and fine-tuning a found
ticket) alpha is the same formula over the trainable latent weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODES", "MaskedConv2d", "MaskedLinear", "MaskedLayer", "topk_mask", "masked_layers"]

MODES = ("dense", "binary", "score_bin", "score_real")


def topk_mask(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """0/1 mask keeping the ``round(keep * n)`` largest entries of ``|scores|`` (ties by index)."""
    n = scores.numel()
    k = int(round(keep * n))
    flat = scores.detach().abs().flatten()
    mask = torch.zeros(n, dtype=scores.dtype, device=scores.device)
    if k > 0:
        # stable sort: equal scores keep their index order, so the mask is deterministic
        idx = torch.sort(flat, descending=True, stable=True).indices[:k]
        mask[idx] = 1
    return mask.view_as(scores)


class _GetSubnet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, keep):
        return topk_mask(scores, keep)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def _sign(w: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, so a binary weight is never zero unless masked."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


class MaskedLayer(nn.Module):
    """Shared machinery of :class:`MaskedConv2d` and :class:`MaskedLinear`."""

    weight: nn.Parameter
    mask: torch.Tensor

    def _init_masked(self, mode: str, r_p: float) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= r_p < 1.0:
            raise ValueError(f"pruning rate r_p must be in [0, 1), got {r_p!r}")
        self.mode = mode
        self.r_p = r_p
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        self.register_buffer("mask", torch.ones_like(self.weight))
        if mode.startswith("score"):
            self.scores = nn.Parameter(torch.empty_like(self.weight))
            nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5))
            self.weight.requires_grad_(False)

    @property
    def keep(self) -> float:
        return 1.0 - self.r_p

    def current_mask(self) -> torch.Tensor:
        """The synapse mask in use now (0/1, same shape as the weight), without gradient."""
        if self.mode.startswith("score"):
            return topk_mask(self.scores, self.keep) * self.mask
        if self.mode == "binary" and self.r_p > 0:
            return topk_mask(self.weight, self.keep) * self.mask
        return self.mask.clone()

    def alpha(self) -> torch.Tensor:
        """Gain term ||M*w||_1 / ||M||_1 of the binary modes (detached)."""
        m = self.current_mask()
        return ((m * self.weight).abs().sum() / m.sum().clamp_min(1)).detach()

    def effective_weight(self) -> torch.Tensor:
        w = self.weight
        if self.mode == "dense":
            return w * self.mask
        if self.mode == "binary":
            # a pruned BNN (r_p > 0) keeps the largest latent weights of each layer, re-chosen
            # every step; a fine-tuned ticket has its mask frozen (r_p = 0 after freezing)
            m = self.mask * topk_mask(w, self.keep) if self.r_p > 0 else self.mask
            alpha = (m * w).abs().sum() / m.sum().clamp_min(1)
            return alpha * m * _SignSTE.apply(w)
        # rank |s| and differentiate through the abs (as edge-popup does): without it a
        # negative score would move the wrong way
        m = _GetSubnet.apply(self.scores.abs(), self.keep) * self.mask
        if self.mode == "score_real":
            return w * m
        alpha = (m * w).abs().sum() / m.sum().clamp_min(1)
        return alpha * m * _sign(w)

    def freeze_to_binary(self) -> None:
        """Turn a found ticket into ``binary`` mode: mask frozen, latent weights trainable
        (fine-tuning, the BinW-SLT paper's FT).  The starting effective weight is unchanged."""
        if self.mode not in ("score_bin", "binary"):
            raise ValueError(f"only binary-weight tickets can be fine-tuned as binary, not mode {self.mode!r}")
        with torch.no_grad():
            self.mask.copy_(self.current_mask())
        if hasattr(self, "scores"):
            del self.scores
        self.mode = "binary"
        self.r_p = 0.0                     # the mask is frozen from here on
        self.weight.requires_grad_(True)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode}, r_p={self.r_p}"


class MaskedConv2d(nn.Conv2d, MaskedLayer):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, mode: str = "dense", r_p: float = 0.0) -> None:
        # no bias: the following BatchNorm carries the per-channel offset (foldable)
        nn.Conv2d.__init__(self, cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self._init_masked(mode, r_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding)


class MaskedLinear(nn.Linear, MaskedLayer):
    def __init__(self, fin: int, fout: int, mode: str = "dense", r_p: float = 0.0) -> None:
        nn.Linear.__init__(self, fin, fout, bias=False)
        self._init_masked(mode, r_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight())


def masked_layers(net: nn.Module) -> list[tuple[str, MaskedLayer]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, MaskedLayer)]
