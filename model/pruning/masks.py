"""Synapse masks: magnitude, random and saliency pruning, mask distance, sparsity.

Masks live in each :class:`MaskedLayer`'s ``mask`` buffer (1 = kept).  Only conv/linear
weights are prunable; BatchNorm never is.  "Global" uses one threshold over all prunable
weights, "local" one per layer (the SNN-LTH paper compares both, Fig. 7b).
"""
from __future__ import annotations

import torch
from torch import nn

from ticketforge.model.layers import MaskedLayer, masked_layers

__all__ = ["prunable", "sparsity", "layer_sparsity", "prune_by_score", "magnitude_scores",
           "random_scores", "mask_distance", "current_masks", "set_masks"]


def prunable(net: nn.Module) -> list[tuple[str, MaskedLayer]]:
    return masked_layers(net)


def current_masks(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.current_mask().clone() for n, m in prunable(net)}


def set_masks(net: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for n, m in prunable(net):
        with torch.no_grad():
            m.mask.copy_(masks[n])


def sparsity(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(float(m.sum()) for m in masks.values()) / total


def layer_sparsity(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    return {n: 1.0 - float(m.mean()) for n, m in masks.items()}


def magnitude_scores(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().abs() for n, m in prunable(net)}


def random_scores(net: nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {n: torch.rand(m.weight.shape, generator=gen) for n, m in prunable(net)}


def prune_by_score(scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], target: float,
                   scope: str = "global") -> dict[str, torch.Tensor]:
    """New masks at overall sparsity `target` keeping the highest-scoring surviving weights
    (weights already masked stay masked).  Ties break by position, deterministically."""
    if scope not in ("global", "local"):
        raise ValueError(f"scope must be 'global' or 'local', got {scope!r}")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target!r}")
    out = {}
    if scope == "local":
        for n, s in scores.items():
            out[n] = _keep_top({n: s}, {n: masks[n]}, round((1 - target) * s.numel()))[n]
        return out
    total = sum(s.numel() for s in scores.values())
    return _keep_top(scores, masks, round((1 - target) * total))


def _keep_top(scores, masks, k: int) -> dict[str, torch.Tensor]:
    names = list(scores)
    flat = torch.cat([torch.where(masks[n].bool(), scores[n].float(), torch.tensor(-1.0)).flatten()
                      for n in names])
    keep = torch.zeros_like(flat)
    if k > 0:
        keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = 1
        keep = keep * (flat >= 0)                    # never resurrect a masked weight
    out, i = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[i:i + size].view_as(scores[n])
        i += size
    return out


def mask_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Normalised Hamming distance between two mask sets over the prunable weights."""
    diff = sum(float((a[n] != b[n]).sum()) for n in a)
    return diff / sum(a[n].numel() for n in a)
