"""The BNN-BinAct baseline in brevitas, exported to QONNX for hls4ml (the HLS path's baseline).

A trained ``bnn`` network (binary weights ``alpha * sign(w)``, 0/1 activations, T = 1) is
rebuilt with brevitas layers:
- weights: the 2-bit narrow-range quantizer of the ticket view (levels -1, 0, +1; a dense
  binary layer uses -1/+1 with scale alpha; see brevitas_view);
- input: the calibrated 8-bit unsigned pixel quantizer;
- the 0/1 activation ``x >= 0``: brevitas' binary activation quantizer (``sign``, +1 for
  ``x >= 0``, exported as QONNX ``BipolarQuant``) followed by ``(b + 1) / 2``.  A 1-bit
  *unsigned* quantizer would say 0/1 directly, but brevitas 0.13 exports every 1-bit
  quantizer as BipolarQuant (+-1), so the export would not compute what brevitas does.

hls4ml reads the QONNX graph (its documented route for brevitas models); what its C
simulation computes is compared with this module's forward pass in `ticketforge.hls.bnn`.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantIdentity
from brevitas.quant import SignedBinaryActPerTensorConst
from torch import nn

from ticketforge.model.brevitas_view import PixelQuant, calibrate, quant_copy
from ticketforge.model.config import ConfigError
from ticketforge.model.layers import MaskedLayer
from ticketforge.model.margins import decision_margins
from ticketforge.model.neurons import BinaryStep
from ticketforge.model.zoo import NeuronGate, TicketNet

__all__ = ["bin_act", "BrevitasBNN", "export_bnn"]


class ZeroOne(nn.Module):
    """+-1 -> 0/1 (exports as a Mul and an Add by constants)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + 0.5


def bin_act() -> nn.Module:
    """The BNN-BinAct activation: 1 where x >= 0, else 0, through brevitas' binary quantizer."""
    return nn.Sequential(QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False),
                         ZeroOne())


class BrevitasBNN(nn.Module):
    """Built from a trained ``bnn`` TicketNet; ``forward`` takes images in [0, 1], returns scores."""

    def __init__(self, net: TicketNet):
        super().__init__()
        if net.cfg.variant != "bnn":
            raise ConfigError(f"the BNN-BinAct baseline needs a `bnn` variant network, got {net.cfg.variant!r}")
        self.input_quant = QuantIdentity(act_quant=PixelQuant, return_quant_tensor=False)
        mods: list[nn.Module] = []
        flat: list[nn.Module] = []                 # spikingjelly's containers are nn.Sequential
        for mod in net.body:
            flat.extend(mod if isinstance(mod, nn.Sequential) else [mod])
        for mod in flat:
            if isinstance(mod, MaskedLayer):
                # a zero bias: qonnx's GemmToMatMul (hls4ml's ONNX route) takes Gemm with its C input only
                mods.append(quant_copy(mod, linear_zero_bias=True))
            elif isinstance(mod, BinaryStep):
                mods.append(bin_act())
            elif isinstance(mod, NeuronGate):
                if not bool((mod.mask == 1).all()):
                    raise ConfigError("the BNN baseline has pruned neurons; the baseline is the dense BNN")
            elif isinstance(mod, (nn.MaxPool2d, nn.Flatten, nn.modules.batchnorm._BatchNorm)):
                mods.append(mod)
            else:
                raise ConfigError(f"BNN baseline: layer {type(mod).__name__} has no brevitas mapping")
        self.body = nn.Sequential(*mods)
        self.eval()

    def calibrate_input(self, images: torch.Tensor) -> None:
        calibrate(self.input_quant, images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_quant(x))


def export_bnn(net: TicketNet, train_images: torch.Tensor, test_images: torch.Tensor, labels: np.ndarray,
               out_dir: Path) -> dict:
    """Write ``bnn.onnx`` (QONNX) and ``reference.npz`` (test images in [0, 1], brevitas'
    scores, the torch network's scores, labels, each image's decision margins); return the
    measured agreement.

    Two float implementations agree only up to rounding, so the agreement is also given over
    the images whose every 0/1 activation and top-two score gap is clear of the near-tie
    margin (``*_clear``, `ticketforge.model.margins`).  The margins are those of the torch
    network on the input as brevitas quantizes it, i.e. of the decisions brevitas (and the
    hls4ml C simulation) makes; where test images are off the input quantizer's grid, torch
    itself sees other inputs and its agreement also counts that quantization."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    view = BrevitasBNN(net)
    view.calibrate_input(train_images)
    net.eval()
    with torch.no_grad():
        bre = torch.cat([view(test_images[i:i + 500]) for i in range(0, len(test_images), 500)]).numpy()
        ref = torch.cat([net(test_images[i:i + 500]) for i in range(0, len(test_images), 500)]).numpy()
        quantized = view.input_quant(test_images)
    margins = decision_margins(net, quantized)
    onnx_path = out_dir / "bnn.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(view, input_t=test_images[:1], export_path=str(onnx_path))
    side = onnx_path.with_name(onnx_path.name + ".data")
    if side.exists():                              # one self-contained file, as qonnx users expect
        import onnx

        onnx.save_model(onnx.load(str(onnx_path)), str(onnx_path), save_as_external_data=False)
        side.unlink()
    np.savez_compressed(out_dir / "reference.npz", images=test_images.numpy(), brevitas_scores=bre,
                        torch_scores=ref, labels=labels, activation_margin=margins.activation,
                        score_gap=margins.score_gap)
    agree = bre.argmax(1) == ref.argmax(1)
    clear = margins.clear()
    res = {"accuracy_torch": float(np.mean(ref.argmax(1) == labels)),
           "accuracy_brevitas": float(np.mean(bre.argmax(1) == labels)),
           "prediction_agreement_brevitas_torch": float(np.mean(agree)),
           "prediction_agreement_brevitas_torch_clear": float(np.mean(agree[clear])) if clear.any() else None,
           **margins.summary(),
           "input_scale": float(view.input_quant.act_quant.scale())}
    (out_dir / "brevitas.json").write_text(json.dumps(res, indent=1))
    return res
