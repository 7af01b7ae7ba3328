"""Decision margins: the distance of each image from a decision float rounding could flip."""
import numpy as np
import pytest
import torch

from ticketforge.model.config import ModelConfig, load_config
from ticketforge.model.margins import NEAR_TIE, decision_margins, decision_values
from ticketforge.model.zoo import build_model


def _bnn():
    torch.manual_seed(0)
    net = build_model(load_config("mlp_binw_digits", {"model.variant": "bnn"}).model, (1, 8, 8), 10)
    return net.eval()


def test_a_planted_activation_tie_unsettles_only_its_image():
    net = _bnn()
    images = torch.rand(6, 1, 8, 8)
    before = decision_margins(net, images)
    bn = net.body[1][1]
    values, _ = decision_values(net, images)
    x = values["body.2"][3, 0, 5]                        # image 3, t = 0, hidden unit 5
    with torch.no_grad():                                # move unit 5's BN output to NEAR_TIE / 2 on image 3
        bn.bias[5] -= float(x) - NEAR_TIE / 2
    after = decision_margins(net, images)
    assert after.activation[3] == pytest.approx(NEAR_TIE / 2, abs=1e-7)   # the bias is float32
    assert not after.settled()[3] and not after.clear()[3]
    others = np.arange(6) != 3
    assert after.settled()[others].sum() >= before.settled()[others].sum() - 1   # one unit moved, not all


def test_tied_class_scores_are_not_clear():
    net = _bnn()
    images = torch.rand(20, 1, 8, 8)
    readout = net.body[4][0]
    with torch.no_grad():
        readout.weight.copy_(readout.weight[:1].expand_as(readout.weight))   # every class the same row
    m = decision_margins(net, images)
    assert np.all(m.score_gap == 0) and not m.clear().any()
    assert m.summary() == {"near_tie_margin": NEAR_TIE, "images": 20, "images_settled": int(m.settled().sum()),
                           "images_clear": 0}
    with torch.no_grad():
        readout.weight[1:] = -readout.weight[1:].abs() - 1                 # class 0 ahead wherever any unit fires
        readout.weight[0] = readout.weight[0].abs() + 1
    m = decision_margins(net, images)
    assert np.array_equal(m.clear(), m.settled() & (m.score_gap > NEAR_TIE)) and m.clear().sum() >= 15


def test_lif_margins_are_the_distance_of_h_to_the_threshold():
    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="mlp", variant="binw", r_p=0.4, T=4, lam=0.9), (1, 28, 28), 10).eval()
    x = torch.rand(8, 1, 28, 28)
    values, scores = decision_values(net, x)
    assert np.allclose(scores, net(x).double().detach().numpy(), atol=1e-5)
    (name, h), = values.items()                          # the one hidden LIF layer: H - theta, [B, T, units]
    assert h.shape == (8, 4, 340)
    # the spikes it implies are the network's own (float64 run of the same module)
    from spikingjelly.activation_based import functional
    lif = dict(net.named_modules())[name]
    seen = []
    hook = lif.register_forward_hook(lambda m, i, o: seen.append(o.detach().transpose(0, 1).numpy()))
    functional.reset_net(net)
    net.double()(x.double())
    hook.remove()
    assert np.array_equal(seen[0] == 1, h >= 0)
    assert np.array_equal(decision_margins(net, x).activation, np.abs(h).reshape(8, -1).min(1))
