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
    # event-camera input: the first layer's inputs are spikes, counted as SOPs like the rest
    ev = energy_report(acts, 4, spiking=True, e_mac_pj=4.6, e_ac_pj=0.9, event_input=True)
    assert ev["layers"][0]["op"] == "AC"
    assert ev["layers"][0]["sops"] == pytest.approx(acts[0].input_rate * 4 * 784 * 340)
    assert ev["energy_pj"] == pytest.approx(0.9 * ev["sops_total"])


def test_a_wide_memory_is_priced_as_64_bit_banks():
    from ticketforge.deploy.energy import sram_pj

    # a 1,024-bit word of a 900-deep memory: 16 banks of 900 x 64 bits (7.2 KB each, priced
    # as the smallest reference point), not one 115 KB array
    assert sram_pj(900, 1024) == pytest.approx(16 * sram_pj(900, 64))
    assert sram_pj(900, 64) == pytest.approx(10.0)
    assert sram_pj(1 << 20, 32) == pytest.approx(sram_pj(1 << 20, 64) / 2)


def test_bitpar_prices_come_from_its_memories():
    from ticketforge.deploy.energy import hardware_events_energy

    mems = [{"name": n, "depth": d, "width": w} for n, d, w in
            (("buf0", 784, 128), ("weights", 900, 1024), ("groups", 23, 600), ("steps", 900, 20))]
    man = {"params": {"datapath": "bitpar"}, "memories": mems, "membrane_bits": 18,
           "bitpar": {"lanes": 16, "T": 4, "acc_bits": 14, "word": 32}}
    e = hardware_events_energy({"conv": {"steps": 1000, "neuron_updates": 0, "spikes": 5, "words_written": 0}}, man)
    step = e["pj_per_event"]["steps"]
    assert step > 16 * 10.0                     # at least the 16 lanes' weight banks
    assert e["uj"] == pytest.approx(1000 * step * 1e-6)
    assert e["pj_per_event"]["spikes"] == 0.0   # a spike is a bit of the written word


def test_rowstream_prices_come_from_its_memories():
    """A row read: a list entry, a weight row and every lane's product and accumulate; a
    neuron update: its parameters and three adds; a spike: one list entry written."""
    from ticketforge.deploy.energy import add_pj, hardware_events_energy, sram_pj

    mems = [{"name": n, "depth": d, "width": w} for n, d, w in
            (("list0", 1280, 18), ("list1", 1280, 18), ("rows", 16000, 64), ("params", 320, 41))]
    man = {"params": {"datapath": "rowstream"}, "memories": mems, "membrane_bits": 22,
           "rowstream": {"lanes": 16, "T": 4, "acc_bits": 22, "weight_bits": 4, "value_bits": 8}}
    e = hardware_events_energy({"fc1": {"row_reads": 2000, "neuron_updates": 1280, "spikes": 300}}, man)
    p = e["pj_per_event"]
    assert p["row_reads"] == pytest.approx(sram_pj(1280, 18) + sram_pj(16000, 64)
                                           + 16 * (3 * add_pj(12) + add_pj(22)))
    assert p["spikes"] == pytest.approx(sram_pj(1280, 18))
    assert e["uj"] == pytest.approx((2000 * p["row_reads"] + 1280 * p["neuron_updates"] + 300 * p["spikes"]) * 1e-6)
