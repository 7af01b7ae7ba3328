import pytest
import torch
from torch import nn

from ticketforge.model.config import ModelConfig
from ticketforge.model.energy import energy_report, measure_activity
from ticketforge.model.layers import MaskedConv2d, MaskedLinear
from ticketforge.model.zoo import build_model


def test_half_masked_layer_counts_half():
    torch.manual_seed(0)
    net = nn.Sequential(MaskedLinear(16, 8), MaskedLinear(8, 4))
    x = [(torch.rand(10, 16) > 0.5).float()]
    dense, _ = measure_activity(net, x)
    with torch.no_grad():
        net[1].mask.view(-1)[::2] = 0                       # mask 50% of layer 2
    half, _ = measure_activity(net, x)
    assert half[1].flops * 2 == dense[1].flops == 8 * 4
    rd = energy_report(dense, timesteps=4, spiking=True)
    rh = energy_report(half, timesteps=4, spiking=True)
    assert rh["layers"][1]["sops"] * 2 == rd["layers"][1]["sops"]


def test_conv_flops_use_output_positions_and_mask():
    conv = nn.Sequential(MaskedConv2d(2, 3, 3, 1, 1))
    with torch.no_grad():
        conv[0].mask.zero_()
        conv[0].mask[0, 0, 1, 1] = 1
    acts, _ = measure_activity(conv, [torch.ones(1, 2, 5, 5)])
    assert acts[0].out_positions == 25 and acts[0].flops == 25 and acts[0].dense_flops == 25 * 54


def test_energy_formula_first_layer_mac_others_ac():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mlp", variant="snn", T=4)
    net = build_model(cfg, (1, 28, 28), 10)
    acts, fire = measure_activity(net, [torch.rand(5, 1, 28, 28)])
    rep = energy_report(acts, 4, spiking=True, e_mac_pj=4.6, e_ac_pj=0.9)
    l0, l1 = rep["layers"]
    assert l0["op"] == "MAC" and l0["energy_pj"] == pytest.approx(4.6 * 784 * 340)
    assert l1["sops"] == pytest.approx(acts[1].input_rate * 4 * 340 * 10)
    assert abs(rep["energy_pj"] - (4.6 * 784 * 340 + 0.9 * l1["sops"])) < 1e-6
    # the hidden LIF's firing rate is the readout's input rate
    assert list(fire.values())[0] == acts[1].input_rate
    ann = energy_report(acts, 1, spiking=False)
    assert ann["energy_pj"] == pytest.approx(4.6 * (784 * 340 + 340 * 10))
