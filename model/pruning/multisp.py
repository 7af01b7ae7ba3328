"""MultiSp's patch-level pruning (the SLT paper's Algorithm 1, stage 2).

After stage 1 (the ConvPEP's parameter-level ticket, ``train.epochs``), the patches whose
patch embedding has the smallest magnitude are pruned: the magnitude of each patch is the
ConvPEP's output (spikes, or activations for the ``ann`` variant) summed over channels and
timesteps and averaged over training images; the lowest ``model.patch_prune`` (P_b)
fraction of the patches get 0 in the patch keep-mask (the NeuronGate after the ConvPEP),
so they never become events.  Stage 2 trains ``train.patch_epochs`` more epochs with the
mask in place, from ``train.patch_lr`` on a schedule of its own.
"""
from __future__ import annotations

import math

import torch

from ticketforge.errors import ConfigError
from ticketforge.model.train import batches
from ticketforge.model.zoo import NeuronGate, TicketNet

__all__ = ["patch_gate", "patch_importance", "prune_patches"]


def patch_gate(net: TicketNet) -> NeuronGate:
    """The patch keep-mask of a spikformer: the NeuronGate after its ConvPEP."""
    if not net.cfg.arch.startswith("spikformer"):
        raise ConfigError(f"model.patch_prune: patch pruning (MultiSp) is for spikformers, not {net.cfg.arch!r}")
    return next(m for m in net.body if isinstance(m, NeuronGate))


@torch.no_grad()
def patch_importance(net: TicketNet, split, batch_size: int, pixel_max: int) -> torch.Tensor:
    """``[H, W]``: each patch's mean embedding magnitude over ``split``'s images."""
    gate = patch_gate(net)
    total = torch.zeros(gate.mask.shape[1:])
    count = 0

    def hook(mod, inp, out):
        total.add_(inp[0].abs().sum(dim=(0, 1, 2)))

    was = net.training
    net.eval()
    handle = gate.register_forward_hook(hook)
    try:
        for x, _ in batches(split, batch_size, pixel_max):
            net(x)
            count += len(x)
    finally:
        handle.remove()
        net.train(was)
    return total / max(1, count)


def prune_patches(net: TicketNet, fraction: float, importance: torch.Tensor) -> dict:
    """Zero the keep-mask of the ``fraction`` of patches with the smallest importance (ties
    broken by position); returns what was kept."""
    gate = patch_gate(net)
    n = importance.numel()
    drop = int(math.floor(fraction * n))
    order = torch.argsort(importance.flatten(), stable=True)
    keep = torch.ones(n)
    keep[order[:drop]] = 0
    gate.mask.copy_(keep.reshape(importance.shape).expand_as(gate.mask))
    return {"patches": n, "patches_kept": n - drop, "patch_keep_mask": keep.int().reshape(importance.shape).tolist()}
