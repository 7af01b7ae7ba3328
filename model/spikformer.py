"""Spiking transformers (Spikformer, Zhou et al. 2023) for the SLT paper's MultiSp.

``[T, B, C, H, W]`` all the way: tokens are the positions of the patch map, so every
token-wise linear layer (Q, K, V, the projection, the MLP) is a 1x1 convolution.

- **ConvPEP** (Spikformer's spiking patch splitting): three 3x3 conv-BN-LIF stages (D/4,
  D/2, D channels), the first two followed by a 2x2 max-pool (an OR on spikes); 28x28
  MNIST gives 7x7 = 49 patches, 32x32 CIFAR 8x8 = 64.
  A :class:`~ticketforge.model.zoo.NeuronGate` over its output is the *patch keep-mask*
  of MultiSp (one entry per channel and patch; a pruned patch is 0 in every channel, so it
  never becomes an event).  ``model.pep_weights = "binw"`` makes the ConvPEP's weights a
  BinW-SLT ticket (score search at ``r_p`` = P_a); the encoder keeps trained weights, as in
  the paper's PEPSp/MultiSp.
- **Encoder block**: spiking self-attention, Q, K, V = LIF(BN(1x1 conv x)), per head
  ``Y = V (Q^T K)^T`` (``y[d, n] = sum_m v[d, m] sum_e q[e, n] k[e, m]``: integers, no
  softmax) times ``2**-attn_shift`` into a LIF of threshold 0.5; then the projection, whose
  membrane also receives the block's input (the residual as a *membrane sum*, like the IR's
  skip inputs, instead of Spikformer's spike addition, which would make non-binary events);
  the MLP block likewise: LIF(BN(fc1 x)), then LIF(BN(fc2 h) + x).  The ``ann`` variant (the
  paper's ViT column) uses ReLU and softmax attention.
- **Head**: the mean over patches, then a linear readout.

Parameter counts (CIFAR-10 input, weights of conv/linear layers): ``spikformer_tiny``
(D 192, 12 blocks, 3 heads, MLP x4) 5,518,992, the paper's TINY (DeiT-Tiny scale, 5M);
``spikformer_small`` (D 384, 12 blocks, 6 heads) 22,069,536, its SMALL (22M).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from spikingjelly.activation_based import layer

from ticketforge.errors import ConfigError
from ticketforge.model.config import ModelConfig
from ticketforge.model.layers import MaskedConv2d, MaskedLinear
from ticketforge.model.neurons import make_activation

__all__ = ["TransformerSpec", "TRANSFORMERS", "SelfAttention", "MLPBlock", "TokenMean", "build_spikformer",
           "ATTN_THRESHOLD"]

ATTN_THRESHOLD = 0.5        # Spikformer's attention LIF threshold


@dataclass(frozen=True)
class TransformerSpec:
    dim: int                 # embedding channels D
    depth: int               # encoder blocks
    heads: int
    mlp_ratio: int
    attn_shift: int = 3      # attention scale 2**-3 = 0.125, Spikformer's


TRANSFORMERS = {
    "spikformer": TransformerSpec(64, 2, 4, 2),
    "spikformer_tiny": TransformerSpec(192, 12, 3, 4),
    "spikformer_small": TransformerSpec(384, 12, 6, 4),
}


def _seq(*m: nn.Module) -> nn.Module:
    return layer.SeqToANNContainer(*m)


class _Parts:
    """Layer factory: the ConvPEP's weight form from ``pep_weights``, the encoder's dense."""

    def __init__(self, cfg: ModelConfig):
        if cfg.variant not in ("ann", "snn"):
            raise ConfigError(f"model.variant={cfg.variant!r}: a spikformer is 'ann' (the ViT column) or 'snn'; "
                              "its BinW-SLT ticket is model.pep_weights = 'binw' (the ConvPEP's weights)")
        self.cfg = cfg
        self.pep_mode = "score_bin" if cfg.pep_weights == "binw" else "dense"

    def act(self, v_threshold: float | None = None) -> nn.Module:
        c = self.cfg
        return make_activation(c.variant, c.lam, v_threshold or c.v_threshold, c.reset, c.surrogate)

    def bn(self, ch: int) -> nn.Module:
        return nn.BatchNorm2d(ch, affine=self.cfg.affine_bn)

    def pep_conv(self, cin: int, cout: int) -> nn.Module:
        r_p = self.cfg.r_p if self.pep_mode != "dense" else 0.0
        return MaskedConv2d(cin, cout, 3, 1, 1, mode=self.pep_mode, r_p=r_p)

    def token(self, cin: int, cout: int) -> nn.Module:
        """A token-wise linear layer: a 1x1 convolution, dense trained weights."""
        return MaskedConv2d(cin, cout, 1, 1, 0, mode="dense", r_p=0.0)


class SelfAttention(nn.Module):
    """Spiking self-attention with the projection and the residual (module docstring)."""

    def __init__(self, p: _Parts, dim: int, heads: int, attn_shift: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"a spikformer's width {dim} is not divisible by its {heads} heads")
        self.heads, self.attn_shift, self.spiking = heads, attn_shift, p.cfg.variant != "ann"
        self.q, self.k, self.v = (_seq(p.token(dim, dim), p.bn(dim)) for _ in range(3))
        self.q_act, self.k_act, self.v_act = p.act(), p.act(), p.act()
        self.attn_act = p.act(ATTN_THRESHOLD)
        self.proj = _seq(p.token(dim, dim), p.bn(dim))
        self.act = p.act()

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``[N, D, H, W]`` each -> ``[N, D, H, W]``: per head ``y = v (q^T k)^T`` scaled by
        2**-attn_shift (the ``ann`` variant: softmax of the scaled scores)."""
        n, d, h, w = q.shape
        hd = d // self.heads
        q, k, v = (t.reshape(n, self.heads, hd, h * w) for t in (q, k, v))
        a = q.transpose(-1, -2) @ k                      # [n, heads, tokens, tokens]: a[i, j] = q_i . k_j
        if self.spiking:
            y = (v @ a.transpose(-1, -2)) * 2.0 ** -self.attn_shift
        else:
            y = v @ torch.softmax(a * hd ** -0.5, dim=-1).transpose(-1, -2)
        return y.reshape(n, d, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q_act(self.q(x)), self.k_act(self.k(x)), self.v_act(self.v(x))
        y = self.attend(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)).reshape(x.shape)
        return self.act(self.proj(self.attn_act(y)) + x)


class MLPBlock(nn.Module):
    """LIF(BN(fc1 x)), then LIF(BN(fc2 h) + x): the MLP and its residual."""

    def __init__(self, p: _Parts, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act1 = _seq(p.token(dim, hidden), p.bn(hidden)), p.act()
        self.fc2, self.act2 = _seq(p.token(hidden, dim), p.bn(dim)), p.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.fc2(self.act1(self.fc1(x))) + x)


class TokenMean(nn.Module):
    """``[T, B, D, H, W]`` -> ``[T, B, D]``: the mean over patches before the readout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


def build_spikformer(cfg: ModelConfig, input_shape, num_classes: int) -> list[nn.Module]:
    """The body of a spikformer (``cfg.arch`` in TRANSFORMERS) as a list of modules."""
    from ticketforge.model.zoo import NeuronGate

    spec = TRANSFORMERS[cfg.arch]
    p = _Parts(cfg)
    c, h, w = input_shape
    dim = max(spec.heads, int(round(spec.dim * cfg.width)) // spec.heads * spec.heads)
    if h < 4 or w < 4:
        raise ConfigError(f"model.arch={cfg.arch!r} pools twice and needs inputs of at least 4x4, got {h}x{w}")
    mods: list[nn.Module] = []
    for out in (dim // 4, dim // 2):
        mods += [_seq(p.pep_conv(c, out), p.bn(out)), p.act(), _seq(nn.MaxPool2d(2))]
        c, h, w = out, h // 2, w // 2
    # the last stage's spikes are the patch embedding; its neuron mask, the patch keep-mask
    mods += [_seq(p.pep_conv(c, dim), p.bn(dim)), p.act(), NeuronGate((dim, h, w))]
    for _ in range(spec.depth):
        mods += [SelfAttention(p, dim, spec.heads, spec.attn_shift), MLPBlock(p, dim, dim * spec.mlp_ratio)]
    mods += [TokenMean(), _seq(MaskedLinear(dim, num_classes, mode="dense", r_p=0.0))]
    return mods
