"""Neuron-level pruning by fire-spike rate (DynSNN, Liu et al.).

A neuron is one output unit of a hidden layer: one (channel, y, x) of a conv layer, one
unit of a linear layer.  Its fire-spike rate FSR = spikes / timesteps, averaged over a
calibration set of training images, is measured with spikingjelly's OutputMonitor on the
LIF nodes.  Pruning a neuron sets its entry of the layer's :class:`NeuronGate` mask to 0:
it never fires, so its outgoing synapses never carry an event, and energy accounting drops
its incoming synapses too (``ticketforge.model.energy``).

- :func:`prune_inference`: prune the neurons whose FSR is below a threshold (or the
  lowest-FSR fraction) of a trained network, with no retraining.
- :func:`train_with_reactivation`: training-time DynSNN: at ``reactivate_epoch`` the fading
  neurons (FSR below the threshold) get a second chance: their incoming weights are
  re-initialised once; neurons still fading at the end are pruned.  For ``binw``/``slt``
  tickets "re-initialising" means re-drawing the frozen random weights and resetting the
  scores of that neuron's incoming synapses (the search then re-selects them).  A conv
  layer shares its incoming weights across positions, so a conv channel is re-initialised
  when all of its neurons are fading; positions are still pruned one by one at the end.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from spikingjelly.activation_based import monitor, neuron

from ticketforge.model.layers import masked_layers
from ticketforge.model.train import batches, fit
from ticketforge.model.zoo import TicketNet, neuron_gates

__all__ = ["fire_spike_rates", "prune_inference", "threshold_for_fraction", "reactivate",
           "train_with_reactivation", "neuron_report"]


@torch.no_grad()
def fire_spike_rates(net: TicketNet, images, batch_size: int, pixel_max: int) -> dict[str, torch.Tensor]:
    """FSR per neuron for each gated hidden layer (keyed by the gate's module name)."""
    was = net.training
    net.eval()
    lifs = [n for n, m in net.named_modules() if isinstance(m, neuron.BaseNode)]
    gates = neuron_gates(net)
    if len(lifs) != len(gates):
        raise ValueError("DynSNN needs one neuron gate per LIF layer (the VGG/MLP zoo networks)")
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with monitor.OutputMonitor(net, neuron.BaseNode, lambda s: s.detach().sum(dim=(0, 1))) as mon:
        for x, _ in batches(images, batch_size, pixel_max):
            net(x)
            count += len(x)
        for lif in lifs:
            sums[lif] = torch.stack(mon[lif]).sum(0)
    net.train(was)
    return {g: sums[l] / (count * net.T) for l, (g, _) in zip(lifs, gates)}


def threshold_for_fraction(fsr: dict[str, torch.Tensor], fraction: float) -> float:
    """The FSR threshold below which `fraction` of all neurons fall (ties pruned together)."""
    allv = torch.cat([v.flatten() for v in fsr.values()])
    k = int(math.floor(fraction * allv.numel()))
    if k <= 0:
        return 0.0
    v = torch.sort(allv).values[k - 1]
    return float(torch.nextafter(v, torch.tensor(float("inf"), dtype=v.dtype)))   # just above it


def prune_inference(net: TicketNet, fsr: dict[str, torch.Tensor], threshold: float) -> None:
    """Prune (gate off) every neuron whose FSR is below `threshold` (strictly)."""
    gates = dict(neuron_gates(net))
    for name, rate in fsr.items():
        with torch.no_grad():
            gates[name].mask.mul_((rate >= threshold).to(gates[name].mask.dtype))


def reactivate(net: TicketNet, fading: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, int]:
    """Re-initialise the incoming weights (and scores) of fading neurons; returns how many
    units/channels were re-initialised per layer."""
    layers = [m for _, m in masked_layers(net)][:len(fading)]
    done = {}
    for (name, fade), layer in zip(fading.items(), layers):
        rows = fade.reshape(fade.shape[0], -1).all(dim=1)       # unit, or channel with all positions fading
        n = int(rows.sum())
        done[name] = n
        if n == 0:
            continue
        with torch.no_grad():
            fan_in = layer.weight[0].numel()
            fresh = torch.randn((n,) + tuple(layer.weight.shape[1:]), generator=gen) * math.sqrt(2.0 / fan_in)
            layer.weight[rows] = fresh
            if hasattr(layer, "scores"):
                bound = 1.0 / math.sqrt(fan_in)
                layer.scores[rows] = (torch.rand(fresh.shape, generator=gen) * 2 - 1) * bound
    return done


def train_with_reactivation(net: TicketNet, ds, cfg, gen: torch.Generator, progress=None):
    """Training-time DynSNN (see module docstring); returns (net, history, info)."""
    pc = cfg.prune
    first = min(pc.reactivate_epoch, cfg.train.epochs)
    calib = _calibration(ds, pc.calibration_images)
    history = fit(net, ds, cfg, first, gen, progress, f"{cfg.name} dynsnn")
    fsr = fire_spike_rates(net, calib, cfg.data.eval_batch_size, ds.pixel_max)
    fading = {n: r < pc.fsr_threshold for n, r in fsr.items()}
    revived = reactivate(net, fading, gen)
    history += fit(net, ds, cfg, cfg.train.epochs - first, gen, progress, f"{cfg.name} dynsnn (reactivated)")
    fsr_end = fire_spike_rates(net, calib, cfg.data.eval_batch_size, ds.pixel_max)
    prune_inference(net, fsr_end, pc.fsr_threshold)
    return net, history, {"fading_at_reactivation": {n: int(f.sum()) for n, f in fading.items()},
                          "reactivated_rows": revived, "fsr_threshold": pc.fsr_threshold,
                          **neuron_report(net)}


def _calibration(ds, n: int):
    from ticketforge.model.data import Split
    return Split(ds.train.images[:n], ds.train.labels[:n])


def neuron_report(net: nn.Module) -> dict:
    gates = neuron_gates(net)
    per = {n: 1.0 - float(g.mask.mean()) for n, g in gates}
    total = sum(g.mask.numel() for _, g in gates)
    removed = sum(int((g.mask == 0).sum()) for _, g in gates)
    return {"neurons_removed_fraction": removed / max(1, total), "neurons_removed_per_layer": per,
            "neurons_total": total, "neurons_removed": removed}


