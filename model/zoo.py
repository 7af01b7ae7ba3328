"""The model zoo: one registry of architectures, built by name for any variant.

Layer lists (channels; ``M`` = 2x2 max-pool, applied to spikes, i.e. an OR):

- ``conv4``  = 64,64,M,128,128,M | FC 256,256 -> classes.   CIFAR-10: 2,425,024 weights (paper 2.43M)
- ``vgg9``   = 64,64,M,128,128,M,256,256,M | FC 256,256.    2,261,184 (paper 2.26M)
- ``vgg11``  = 64,64,M,128,128,M,256,256,M,512,512,M | FC 256,256.  5,275,840 (paper 5.27M)
- ``vgg16``  = VGG-16 features (13 conv, 5 pools) | FC -> classes.  14,719,808 (Kim et al.)
- ``resnet19`` = conv128, 3x128, 3x256, 2x512 basic blocks, global average pool,
  FC 256 -> classes (Zheng et al.'s ResNet-19, the one the papers use): 12,687,232 (paper 12.63M)
- ``mlp``    = 784-340-10 (DynSNN paper), a hidden layer of 340.
- ``sconv``  = 16/2, 32/2 | FC 64: two 3x3 convolutions of stride 2 (``c/2``), LeNet-sized
  for small FPGAs (docs/SCALING.md, "What 97% on the UP5K needs"): a stride-2 layer has a
  quarter of the neurons to update per timestep of a stride-1 layer, and no pool.
- ``spikformer``, ``spikformer_tiny``, ``spikformer_small``: spiking transformers
  (``model/spikformer.py``), the SLT paper's MultiSp networks.
- ``sresnet`` = stem 16/2, basic blocks 16 and 32/2 | readout: the smallest residual
  network of ResNet-19's kind (identity and 1x1 stride-2 shortcuts), without its global
  average pool, for MNIST-sized inputs.

The BinW-SLT paper gives only the counts.  Conv-4 is edge-popup's/MPT's Conv4, and the
counts of "VGG-9" and "VGG-11" are those of the same family's Conv6 and Conv8 (6 or 8 convs
+ 3 FC = 9 or 11 weight layers), which is the family MPT (the method BinW-SLT adapts)
uses; we take those layer lists.  Counts are conv/linear weights (no biases exist: BN
follows every hidden layer); BatchNorm adds 2 per channel when affine.

Every hidden conv/linear is followed by BatchNorm and the variant's activation; the last
linear is the readout, whose outputs are averaged over T (the class scores).
Residual blocks lower to the IR's skip inputs (docs/IR.md); ``resnet19``'s global average
pool lowers into the layer after it, whose weights repeat at every position of the pooled
map (the mean's 1/positions in its scale: exact, docs/IR.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from spikingjelly.activation_based import functional, layer

from ticketforge.errors import ConfigError
from ticketforge.ir.validate import conv_out_hw
from ticketforge.model.config import ARCHITECTURES, VARIANTS, ModelConfig
from ticketforge.model.layers import MaskedConv2d, MaskedLinear, masked_layers
from ticketforge.model.neurons import make_activation

__all__ = ["ArchSpec", "ARCHS", "TicketNet", "NeuronGate", "build_model", "prunable_weight_count",
           "MODE_OF_VARIANT", "neuron_gates"]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    features: tuple = ()          # channels, (channels, stride) and "M" (VGG-style); empty for mlp/resnet
    hidden: tuple = ()            # hidden FC widths before the readout
    resnet_stages: tuple = ()     # ((channels, blocks, stride), ...) for resnet19
    stem: int = 0                 # resnet stem channels
    stem_stride: int = 1
    avgpool: bool = True          # resnet: global average pool before the FC layers
    paper_params: float | None = None   # CIFAR-10 weight count the paper reports
    note: str = ""


ARCHS: dict[str, ArchSpec] = {
    "conv4": ArchSpec("conv4", (64, 64, "M", 128, 128, "M"), (256, 256), paper_params=2.43e6),
    "vgg9": ArchSpec("vgg9", (64, 64, "M", 128, 128, "M", 256, 256, "M"), (256, 256), paper_params=2.26e6),
    "vgg11": ArchSpec("vgg11", (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M"), (256, 256),
                      paper_params=5.27e6),
    "vgg16": ArchSpec("vgg16", (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                512, 512, 512, "M", 512, 512, 512, "M"), ()),
    "resnet19": ArchSpec("resnet19", resnet_stages=((128, 3, 1), (256, 3, 2), (512, 2, 2)), stem=128,
                         hidden=(256,), paper_params=12.63e6,
                         note="global average pool folded into the FC after it"),
    "mlp": ArchSpec("mlp", (), (340,)),
    "sconv": ArchSpec("sconv", ((16, 2), (32, 2)), (64,), note="3x3 convolutions of stride 2"),
    "sresnet": ArchSpec("sresnet", resnet_stages=((16, 1, 1), (32, 1, 2)), stem=16, stem_stride=2, avgpool=False,
                        note="two basic blocks, no average pool"),
    **{name: ArchSpec(name, note="spiking transformer (model/spikformer.py)")
       for name in ("spikformer", "spikformer_tiny", "spikformer_small")},
}
assert set(ARCHS) == set(ARCHITECTURES)

# How each variant forms its weights (see ticketforge.model.layers).
MODE_OF_VARIANT = {"ann": "dense", "snn": "dense", "bnn": "binary", "binw": "score_bin", "slt": "score_real"}
assert set(MODE_OF_VARIANT) == set(VARIANTS)


def _seq(*modules: nn.Module) -> nn.Module:
    """Stateless layers run on ``[T*B, ...]`` (spikingjelly's multi-step container)."""
    return layer.SeqToANNContainer(*modules)


class _Builder:
    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.mode = MODE_OF_VARIANT[cfg.variant]

    def ch(self, c: int) -> int:
        return max(1, int(round(c * self.cfg.width)))

    def conv(self, cin, cout, k=3, stride=1, padding=1):
        return MaskedConv2d(cin, cout, k, stride, padding, mode=self.mode, r_p=self.cfg.r_p)

    def linear(self, fin, fout):
        return MaskedLinear(fin, fout, mode=self.mode, r_p=self.cfg.r_p)

    def bn(self, c: int, dims: int):
        cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        return cls(c, affine=self.cfg.affine_bn)

    def act(self):
        c = self.cfg
        return make_activation(c.variant, c.lam, c.v_threshold, c.reset, c.surrogate)


class NeuronGate(nn.Module):
    """Neuron-keep mask after a hidden activation (DynSNN pruning): a pruned neuron never
    fires.  One entry per neuron (channel, y, x) or unit; all ones until pruning sets it."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class BasicBlock(nn.Module):
    """ResNet basic block on ``[T, B, C, H, W]``: act(bn(conv(act(bn(conv x)))) + shortcut x)."""

    def __init__(self, b: _Builder, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _seq(b.conv(cin, cout, 3, stride, 1), b.bn(cout, 2))
        self.act1 = b.act()
        self.conv2 = _seq(b.conv(cout, cout, 3, 1, 1), b.bn(cout, 2))
        self.shortcut = (_seq(b.conv(cin, cout, 1, stride, 0), b.bn(cout, 2))
                         if stride != 1 or cin != cout else nn.Identity())
        self.act2 = b.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class TicketNet(nn.Module):
    """A zoo network.  ``forward`` takes images ``[B, C, H, W]`` scaled to [0, 1], repeats
    them over T (direct encoding), or event frames ``[B, T, C, H, W]``, and returns class
    scores averaged over T."""

    def __init__(self, body: nn.Sequential, cfg: ModelConfig, input_shape, num_classes: int):
        super().__init__()
        self.body = body
        self.cfg = cfg
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.T = cfg.timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).mean(0)

    def forward_steps(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        """Per-timestep class scores ``[T, B, classes]`` (T defaults to the model's).  An
        event input ``[B, T, C, H, W]`` (one binary frame per timestep) is taken as it is."""
        functional.reset_net(self)
        if x.dim() == len(self.input_shape) + 2:
            if x.shape[1] != (T or self.T):
                raise ValueError(f"event input has {x.shape[1]} frames per sample; the network runs T={T or self.T}")
            return self.body(x.transpose(0, 1))
        seq = x.unsqueeze(0).expand(T or self.T, *x.shape)
        return self.body(seq)


def build_model(cfg: ModelConfig, input_shape=(3, 32, 32), num_classes: int = 10) -> TicketNet:
    """Build `cfg.arch` as `cfg.variant` for inputs of `input_shape` (C, H, W)."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch: unknown architecture {cfg.arch!r}; allowed: {', '.join(ARCHS)}")
    spec = ARCHS[cfg.arch]
    b = _Builder(cfg)
    c, h, w = input_shape
    mods: list[nn.Module] = []
    if cfg.arch.startswith("spikformer"):
        from ticketforge.model.spikformer import build_spikformer

        net = TicketNet(nn.Sequential(*build_spikformer(cfg, input_shape, num_classes)), cfg, input_shape, num_classes)
        functional.set_step_mode(net, "m")
        return net
    if spec.resnet_stages:
        stem = b.ch(spec.stem)
        mods += [_seq(b.conv(c, stem, stride=spec.stem_stride), b.bn(stem, 2)), b.act()]
        c = stem
        h, w = conv_out_hw(h, w, 3, spec.stem_stride, 1)
        for ch, blocks, stride in spec.resnet_stages:
            ch = b.ch(ch)
            for i in range(blocks):
                mods.append(BasicBlock(b, c, ch, stride if i == 0 else 1))
                c = ch
                if i == 0 and stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
        if spec.avgpool:
            mods.append(_seq(nn.AdaptiveAvgPool2d(1)))
            h = w = 1
    for item in spec.features:
        if item == "M":
            if h < 2 or w < 2:
                raise ConfigError(f"model.arch={cfg.arch!r} pools 5 times and needs inputs of at least "
                                  f"32x32; this dataset's images are {input_shape[1]}x{input_shape[2]}")
            mods.append(_seq(nn.MaxPool2d(2)))
            h, w = h // 2, w // 2
        else:
            channels, stride = item if isinstance(item, tuple) else (item, 1)
            out = b.ch(channels)
            h, w = conv_out_hw(h, w, 3, stride, 1)
            mods += [_seq(b.conv(c, out, stride=stride), b.bn(out, 2)), b.act(), NeuronGate((out, h, w))]
            c = out
    mods.append(_seq(nn.Flatten()))
    fin = c * h * w
    for width in spec.hidden:
        out = b.ch(width)
        mods += [_seq(b.linear(fin, out), b.bn(out, 1)), b.act(), NeuronGate((out,))]
        fin = out
    mods.append(_seq(b.linear(fin, num_classes)))
    net = TicketNet(nn.Sequential(*mods), cfg, input_shape, num_classes)
    functional.set_step_mode(net, "m")
    return net


def prunable_weight_count(net: nn.Module) -> int:
    """Number of conv/linear weights (the papers' parameter counts)."""
    return sum(m.weight.numel() for _, m in masked_layers(net))


def neuron_gates(net: nn.Module) -> list[tuple[str, NeuronGate]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, NeuronGate)]
