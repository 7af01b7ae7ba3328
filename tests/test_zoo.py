import pytest
import torch
from spikingjelly.activation_based import neuron

from ticketforge.errors import ConfigError
from ticketforge.model.config import VARIANTS, ModelConfig
from ticketforge.model.layers import MaskedLinear, masked_layers, topk_mask
from ticketforge.model.neurons import lam_from_tau, make_lif, tau_from_lam
from ticketforge.model.zoo import ARCHS, build_model, prunable_weight_count


@pytest.mark.parametrize("arch", [a for a, s in ARCHS.items() if s.paper_params])
def test_cifar10_parameter_counts_match_papers(arch):
    net = build_model(ModelConfig(arch=arch, variant="snn"), (3, 32, 32), 10)
    n = prunable_weight_count(net)
    assert abs(n - ARCHS[arch].paper_params) / ARCHS[arch].paper_params < 0.02, n


def test_documented_counts():
    counts = {a: prunable_weight_count(build_model(ModelConfig(arch=a, variant="ann"), (3, 32, 32), 10))
              for a in ("vgg16", "mlp")}
    assert counts["vgg16"] == 14_715_584
    mlp = build_model(ModelConfig(arch="mlp", variant="snn"), (1, 28, 28), 10)
    assert [m.weight.shape for _, m in masked_layers(mlp)] == [(340, 784), (10, 340)]


def test_strided_convs_quarter_the_feature_maps():
    net = build_model(ModelConfig(arch="sconv", variant="binw", width=0.5), (1, 28, 28), 10)
    assert [tuple(m.weight.shape) for _, m in masked_layers(net)] == [(8, 1, 3, 3), (16, 8, 3, 3), (32, 784), (10, 32)]
    assert [m.stride for _, m in masked_layers(net)[:2]] == [(2, 2), (2, 2)]
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with torch.no_grad():
        x = torch.rand(1, 1, 1, 28, 28)
        assert net.body[:3](x).shape == (1, 1, 8, 14, 14)       # conv, LIF, neuron gate


def test_the_small_residual_network_has_identity_and_strided_shortcuts():
    from ticketforge.model.zoo import BasicBlock

    net = build_model(ModelConfig(arch="sresnet", variant="binw"), (1, 28, 28), 10)
    blocks = [m for m in net.body if isinstance(m, BasicBlock)]
    assert len(blocks) == 2 and isinstance(blocks[0].shortcut, torch.nn.Identity)
    assert tuple(blocks[1].shortcut[0].weight.shape) == (32, 16, 1, 1) and blocks[1].shortcut[0].stride == (2, 2)
    assert [tuple(m.weight.shape) for _, m in masked_layers(net)][-1] == (10, 32 * 7 * 7)   # no average pool
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_spikformer_tiny_and_small_have_the_papers_parameter_counts():
    """The SLT paper's TINY and SMALL (DeiT-Tiny and -Small scale: 5M and 22M; DeiT-Tiny
    itself has 5.7M) on CIFAR-10 input, counted as the paper counts: conv/linear weights."""
    counts = {a: prunable_weight_count(build_model(ModelConfig(arch=a, variant="snn"), (3, 32, 32), 10))
              for a in ("spikformer_tiny", "spikformer_small")}
    assert counts == {"spikformer_tiny": 5_518_992, "spikformer_small": 22_069_536}
    assert 5.0e6 <= counts["spikformer_tiny"] <= 5.7e6 and abs(counts["spikformer_small"] / 22e6 - 1) < 0.02


def test_spikformer_has_binary_pep_tokens_as_a_map_and_refuses_other_variants():
    from ticketforge.model.spikformer import MLPBlock, SelfAttention

    net = build_model(ModelConfig(arch="spikformer", variant="snn", pep_weights="binw", r_p=0.4), (1, 28, 28), 10)
    modes = [(n, m.mode) for n, m in masked_layers(net)]
    assert [m for _, m in modes[:3]] == ["score_bin"] * 3 and {m for _, m in modes[3:]} == {"dense"}
    assert sum(isinstance(m, SelfAttention) for m in net.body) == 2 == sum(isinstance(m, MLPBlock) for m in net.body)
    with torch.no_grad():
        x = torch.rand(1, 1, 1, 28, 28)
        assert net.body[:9](x).shape == (1, 1, 64, 7, 7)            # ConvPEP: 49 patches of 64 channels
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert build_model(ModelConfig(arch="spikformer", variant="ann"), (1, 28, 28), 10)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="model.pep_weights = 'binw'"):
        build_model(ModelConfig(arch="spikformer", variant="binw"), (1, 28, 28), 10)


def test_spiking_attention_is_the_integer_product_of_binary_q_k_v():
    from ticketforge.model.spikformer import SelfAttention

    net = build_model(ModelConfig(arch="spikformer", variant="snn"), (1, 28, 28), 10)
    attn = next(m for m in net.body if isinstance(m, SelfAttention))
    g = torch.Generator().manual_seed(0)
    q, k, v = ((torch.rand(2, 64, 7, 7, generator=g) < 0.3).float() for _ in range(3))
    y = attn.attend(q, k, v) * 2 ** attn.attn_shift
    assert torch.equal(y, y.round())                                 # integers before the 2**-3 scale
    hq, hk, hv = (t.reshape(2, 4, 16, 49) for t in (q, k, v))
    n, i = 1, 5                                                      # head 1, token 5, channel 3 of the head
    expect = sum(hv[n, 1, 3, m] * (hq[n, 1, :, i] * hk[n, 1, :, m]).sum() for m in range(49))
    assert y.reshape(2, 4, 16, 49)[n, 1, 3, i] == expect


def test_width_multiplier_scales_channels():
    full = build_model(ModelConfig(arch="vgg9", variant="snn"), (1, 28, 28), 10)
    half = build_model(ModelConfig(arch="vgg9", variant="snn", width=0.5), (1, 28, 28), 10)
    f = [m.weight.shape[0] for _, m in masked_layers(full)]
    h = [m.weight.shape[0] for _, m in masked_layers(half)]
    assert h[:-1] == [c // 2 for c in f[:-1]] and h[-1] == f[-1] == 10


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["conv4", "vgg9", "resnet19", "mlp"])
def test_every_variant_runs_and_trains_what_it_should(arch, variant):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, variant=variant, width=0.125, r_p=0.4, T=2)
    net = build_model(cfg, (1, 16, 16), 10)
    out = net(torch.rand(3, 1, 16, 16))
    assert out.shape == (3, 10)
    out.sum().backward()
    for _, m in masked_layers(net):
        if variant in ("binw", "slt"):
            assert m.weight.grad is None and m.scores.grad is not None
        else:
            assert m.weight.grad is not None


def test_vgg16_refuses_small_images():
    with pytest.raises(ConfigError, match="32x32"):
        build_model(ModelConfig(arch="vgg16", variant="snn"), (1, 28, 28), 10)


def test_lam_to_tau_mapping_is_exact():
    assert tau_from_lam(0.99) == pytest.approx(100.0)
    assert lam_from_tau(tau_from_lam(0.75)) == pytest.approx(0.75)
    lif = make_lif(0.75, 1.0, "hard", "atan")
    x = torch.tensor([[0.6], [0.6], [0.0], [0.9]])            # [T, 1]
    s = lif(x)
    # V: 0.6 -> 0.75*0.6+0.6 = 1.05 spike, reset 0 -> 0 -> 0.9
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    soft = make_lif(0.5, 1.0, "soft", "atan")
    assert soft(torch.tensor([[1.5], [0.0], [0.0]])).flatten().tolist() == [1.0, 0.0, 0.0]
    assert isinstance(lif, neuron.LIFNode) and lif.decay_input is False


def test_binw_weight_is_alpha_mask_sign():
    torch.manual_seed(1)
    layer = MaskedLinear(20, 30, mode="score_bin", r_p=0.4)
    w_eff = layer.effective_weight().detach()
    m = topk_mask(layer.scores, 0.6)
    assert int(m.sum()) == round(0.6 * 600)
    alpha = (layer.weight.abs() * m).sum() / m.sum()
    assert torch.equal(w_eff, alpha * m * torch.where(layer.weight >= 0, 1.0, -1.0))
    assert set(torch.unique(w_eff / alpha).tolist()) <= {-1.0, 0.0, 1.0}
    # changing the scores changes the mask (the search variable), alpha follows
    with torch.no_grad():
        layer.scores.mul_(-1).add_(torch.randn_like(layer.scores))
    assert not torch.equal(layer.effective_weight().detach(), w_eff)


def test_binw_per_layer_density():
    net = build_model(ModelConfig(arch="vgg9", variant="binw", width=0.25, r_p=0.4), (1, 28, 28), 10)
    for _, m in masked_layers(net):
        n = m.weight.numel()
        assert int(m.current_mask().sum()) == round(0.6 * n)


def test_finetune_freeze_keeps_the_function():
    torch.manual_seed(2)
    layer = MaskedLinear(8, 5, mode="score_bin", r_p=0.5)
    before = layer.effective_weight().detach().clone()
    layer.freeze_to_binary()
    assert layer.mode == "binary" and layer.weight.requires_grad
    assert torch.allclose(layer.effective_weight().detach(), before)


def test_pruned_bnn_keeps_the_largest_latent_weights():
    torch.manual_seed(3)
    layer = MaskedLinear(10, 8, mode="binary", r_p=0.5)
    m = layer.current_mask()
    assert int(m.sum()) == 40
    kept = layer.weight.abs()[m.bool()]
    dropped = layer.weight.abs()[~m.bool()]
    assert kept.min() >= dropped.max()
    w = layer.effective_weight().detach()
    assert torch.equal(w == 0, m == 0)
