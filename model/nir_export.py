"""Export a float ticket to NIR through spikingjelly's ``nir_exchange``.

NIR has no BatchNorm and spikingjelly's exporter maps no max-pool: BatchNorm is folded
into the conv/linear before export (``W' = W * gamma/sqrt(var+eps)`` per output channel,
``b' = beta - mean * gamma/sqrt(var+eps)``), and a network with max-pooling (or residual
blocks) is refused with an error naming the layer.  Average pooling would map, but the
zoo pools spikes with max (an OR), which is what the hardware does.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from spikingjelly.activation_based import functional, layer, neuron

from ticketforge.errors import TicketforgeError
from ticketforge.model.layers import MaskedLayer
from ticketforge.model.zoo import NeuronGate, TicketNet

__all__ = ["NIRExportError", "folded_sequential", "export_nir", "import_nir", "run_imported"]


class NIRExportError(TicketforgeError):
    """The network holds a layer NIR (through spikingjelly) cannot represent."""


def _fold(lin: MaskedLayer, bn: nn.modules.batchnorm._BatchNorm | None) -> nn.Module:
    w = lin.effective_weight().detach()
    if bn is None:
        scale = torch.ones(w.shape[0])
        shift = torch.zeros(w.shape[0])
    else:
        scale = (bn.weight.detach() if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
    if w.dim() == 4:
        out = layer.Conv2d(lin.in_channels, lin.out_channels, lin.kernel_size, stride=lin.stride,
                           padding=lin.padding, bias=True, step_mode="m")
    else:
        out = layer.Linear(lin.in_features, lin.out_features, bias=True, step_mode="m")
    with torch.no_grad():
        out.weight.copy_(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
        out.bias.copy_(shift * torch.ones(w.shape[0]))
    return out


def folded_sequential(net: TicketNet) -> nn.Sequential:
    """The ticket as a flat spikingjelly Sequential with BatchNorm folded (multi-step)."""
    mods: list[nn.Module] = []
    for i, mod in enumerate(net.body):
        if isinstance(mod, NeuronGate):
            if not bool(mod.mask.all()):
                raise NIRExportError(f"layer body.{i} (NeuronGate): NIR has no neuron masks and this "
                                     "ticket has pruned neurons")
            continue
        if isinstance(mod, neuron.LIFNode):
            lif = neuron.LIFNode(tau=float(mod.tau), decay_input=mod.decay_input, v_threshold=mod.v_threshold,
                                 v_reset=mod.v_reset, step_mode="m")
            mods.append(lif)
            continue
        if not isinstance(mod, layer.SeqToANNContainer):
            raise NIRExportError(f"layer body.{i} ({type(mod).__name__}): NIR export takes conv/linear, "
                                 "BatchNorm (folded), flatten and LIF neurons only")
        subs = list(mod)
        first = subs[0]
        if isinstance(first, MaskedLayer):
            bn = subs[1] if len(subs) > 1 else None
            mods.append(_fold(first, bn))
        elif isinstance(first, nn.Flatten):
            mods.append(layer.Flatten(step_mode="m"))
        elif isinstance(first, nn.MaxPool2d):
            raise NIRExportError(f"layer body.{i} (MaxPool2d): NIR export through spikingjelly maps only "
                                 "average pooling, and this network pools spikes with max (an OR); "
                                 "the `mlp` architecture has no pooling and exports")
        else:
            raise NIRExportError(f"layer body.{i} ({type(first).__name__}): not representable in NIR")
    seq = nn.Sequential(*mods)
    functional.set_step_mode(seq, "m")
    return seq.eval()


def export_nir(net: TicketNet, path: Path) -> object:
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    seq = folded_sequential(net)
    example = torch.zeros(net.T, 1, *net.input_shape)
    return export_to_nir(seq, example, save_path=Path(path))


def import_nir(path: Path) -> nn.Module:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    return import_from_nir(Path(path), step_mode="m")


@torch.no_grad()
def run_imported(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Run a module from :func:`import_nir` on ``[T, B, ...]``; spikingjelly's NIR import
    returns ``(output, state)``, the output is what we want."""
    functional.reset_net(module)
    out = module(x_seq)
    return out[0] if isinstance(out, tuple) else out
