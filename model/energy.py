"""Operation counts and theoretical energy per image, as in the papers, with masks honoured.

For each conv/linear layer l (per image, one timestep):

- ``FLOPs(l)`` (multiply-accumulates) = output positions x **unmasked** weights.  A masked
  synapse is absent: it is neither a FLOP nor a SOP.  (spikingjelly's ``op_counter``
  counts weights densely, which is why this module counts for itself.)
- ``SOPs(l) = fr_in(l) x T x FLOPs(l)`` (BinW-SLT Eq. 6), where ``fr_in`` is the measured
  fraction of the layer's input elements that carry an event (spike or 0/1 activation),
  averaged over timesteps and images.

Energy (Eq. 7): ``E = E_MAC x FLOPs(first layer) + E_AC x sum_{l>=2} SOPs(l)``, with the
first layer computed once on the directly-encoded image.  An ``ann`` has real-valued
activations everywhere: ``E = E_MAC x sum FLOPs``.  ``bnn`` (0/1 activations) is counted
like a spiking net with T = 1; the BinW-SLT paper instead charges BNN-BinAct at the ANN's
MAC cost (its Table 2), so our BNN energy is lower than the paper's convention would say.

Firing and input rates are measured with spikingjelly's monitors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from spikingjelly.activation_based import monitor

from ticketforge.model.layers import MaskedLayer, masked_layers
from ticketforge.model.neurons import SPIKING_TYPES
from ticketforge.model.zoo import NeuronGate

__all__ = ["LayerActivity", "measure_activity", "energy_report"]


@dataclass
class LayerActivity:
    name: str
    kind: str                  # "conv" or "linear"
    out_positions: int         # output pixels per channel (1 for linear)
    weights: int               # all weights
    unmasked_weights: int
    input_rate: float          # fraction of non-zero input elements (events)
    masked_flops: int          # MACs per timestep over unmasked synapses into live neurons
    live_neurons: float = 1.0  # fraction of this layer's output neurons not pruned

    @property
    def dense_flops(self) -> int:
        return self.out_positions * self.weights

    @property
    def flops(self) -> int:
        return self.masked_flops


@torch.no_grad()
def measure_activity(net: torch.nn.Module, batches) -> tuple[list[LayerActivity], dict[str, float]]:
    """Run `net` in eval mode over `batches` (iterable of input tensors) and return each
    weight layer's activity and each activation layer's firing rate (events per neuron
    per timestep)."""
    was_training = net.training
    net.eval()
    count = lambda x: (int(torch.count_nonzero(x)), x.numel())  # noqa: E731
    layers = masked_layers(net)
    out_pos: dict[str, int] = {}

    def shape_hook(name):
        def hook(mod, inp, out):
            out_pos[name] = int(out[0, 0].numel()) if out.dim() == 4 else 1
        return hook

    handles = [m.register_forward_hook(shape_hook(n)) for n, m in layers]
    # firing rates after the neuron gates (a pruned neuron never fires) where the net has them
    has_gates = any(isinstance(m, NeuronGate) for m in net.modules())
    with monitor.InputMonitor(net, MaskedLayer, count) as ins, \
            monitor.OutputMonitor(net, NeuronGate if has_gates else SPIKING_TYPES, count) as outs:
        for x in batches:
            net(x)
        in_rates = {n: _ratio(ins[n]) for n, _ in layers}
        fire = {n: _ratio(outs[n]) for n in outs.monitored_layers}
    for h in handles:
        h.remove()
    net.train(was_training)
    gates = [g for _, g in net.named_modules() if isinstance(g, NeuronGate)]
    paired = len(gates) == len(layers) - 1          # zoo VGG/MLP: one gate per hidden layer
    acts = []
    for i, (n, m) in enumerate(layers):
        kept = m.current_mask().reshape(m.weight.shape[0], -1).sum(1)          # per output channel
        if paired and i < len(gates):
            live = gates[i].mask.reshape(m.weight.shape[0], -1).sum(1)          # live neurons per channel
            flops = int((kept * live).sum())
            live_frac = float(gates[i].mask.mean())
        else:
            flops = int(kept.sum()) * out_pos[n]
            live_frac = 1.0
        acts.append(LayerActivity(
            name=n, kind="conv" if m.weight.dim() == 4 else "linear", out_positions=out_pos[n],
            weights=m.weight.numel(), unmasked_weights=int(kept.sum()), input_rate=in_rates[n],
            masked_flops=flops, live_neurons=live_frac))
    return acts, fire


def _ratio(records) -> float:
    nz = sum(r[0] for r in records)
    tot = sum(r[1] for r in records)
    return nz / tot if tot else 0.0


def energy_report(acts: list[LayerActivity], timesteps: int, spiking: bool,
                  e_mac_pj: float = 4.6, e_ac_pj: float = 0.9, event_input: bool = False) -> dict:
    """Per-layer and total FLOPs, SOPs and energy (picojoules per image).  With
    ``event_input`` (event-camera frames) the first layer's inputs are spikes too: it is
    counted in SOPs and ACs like the others, not in MACs."""
    rows = []
    for i, a in enumerate(acts):
        event_driven = spiking and (i > 0 or event_input)
        sops = a.input_rate * timesteps * a.flops if event_driven else 0.0
        energy = e_ac_pj * sops if event_driven else e_mac_pj * a.flops
        rows.append({**asdict(a), "dense_flops": a.dense_flops, "flops": a.flops,
                     "density": a.unmasked_weights / a.weights, "sops": sops,
                     "op": "AC" if event_driven else "MAC", "energy_pj": energy})
    return {
        "layers": rows,
        "flops_total": sum(r["flops"] for r in rows),
        "dense_flops_total": sum(r["dense_flops"] for r in rows),
        "sops_total": sum(r["sops"] for r in rows),
        "energy_pj": sum(r["energy_pj"] for r in rows),
        "energy_uj": sum(r["energy_pj"] for r in rows) * 1e-6,
        "e_mac_pj": e_mac_pj, "e_ac_pj": e_ac_pj, "timesteps": timesteps,
    }
