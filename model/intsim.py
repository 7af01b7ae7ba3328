"""A torch implementation of the IR's integer semantics, independent of the numpy golden
interpreter: torch's own conv2d/linear (float64 on integer values, exact below 2**52),
max-pool and integer tensor ops.  Tests require it to equal the golden interpreter
exactly; two implementations agreeing is what makes docs/IR.md trustworthy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ticketforge.ir.schema import INPUT, Graph

__all__ = ["torch_integer_run"]


def _leak(v: torch.Tensor, n) -> torch.Tensor:
    if n.leak == "shift":
        return v - torch.bitwise_right_shift(v, n.leak_shift)
    if n.leak == "fixed":
        return torch.bitwise_right_shift(v * n.leak_mult, n.leak_frac_bits)
    return v


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Spiking self-attention's integer product with torch's einsum (docs/IR.md)."""
    n, c, h, w = q.shape
    q, k, v = (x.double().reshape(n, heads, c // heads, h * w) for x in (q, k, v))
    scores = torch.einsum("bhen,bhem->bhnm", q, k)
    return torch.einsum("bhdm,bhnm->bhdn", v, scores).reshape(n, c, h, w).round().to(torch.int64)


@torch.no_grad()
def torch_integer_run(g: Graph, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores [N, classes] and spikes {layer: [N, T, ...]} for integer images [N, C, H, W]
    (or an ``events`` input's binary frames [N, T, C, H, W], one per timestep)."""
    x0 = torch.from_numpy(np.asarray(images).astype(np.int64))
    n = x0.shape[0]
    t = lambda l, role: torch.from_numpy(g.tensor(l, role).astype(np.int64))  # noqa: E731
    scores = torch.zeros(n, g.layers[-1].out_shape[0], dtype=torch.int64)
    v: dict[str, torch.Tensor] = {}
    spikes: dict[str, list] = {}
    sources = g.sources()

    def synapses(l, prefix: str, x: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        w = t(l, prefix + "weight").double()
        return (F.conv2d(x.double(), w, stride=stride, padding=padding) if l.kind == "conv"
                else F.linear(x.double(), w)).round().to(torch.int64)

    for step in range(g.T):
        outs = {INPUT: x0[:, step] if g.input.encoding == "events" else x0}
        for l in g.layers:
            x = outs[sources[l.name][0]]
            if l.kind == "pool":
                x = F.max_pool2d(x.double(), l.kernel).to(torch.int64)
            elif l.kind == "flatten":
                x = x.reshape(n, -1)
            elif l.kind == "output":
                scores += F.linear(x.double(), t(l, "weight").double()).round().to(torch.int64)
            else:
                if l.kind == "attention":
                    acc = _attention(*(outs[s] for s in sources[l.name]), l.heads)
                else:
                    acc = synapses(l, "", x, l.stride, l.padding)
                if l.has_skip and l.kind != "attention":   # the residual: the skip synapses into the same sum
                    acc = acc + synapses(l, "skip_", outs[sources[l.name][1]], l.skip_stride, l.skip_padding)
                shape = (1, -1) + (1,) * (acc.dim() - 2)
                bias, thr = t(l, "bias").view(shape), t(l, "threshold").view(shape)
                keep = t(l, "neuron_mask").bool().unsqueeze(0)
                nrn = l.neuron
                h = _leak(v.get(l.name, torch.zeros_like(acc)), nrn) + acc * (1 << l.input_shift) + bias
                h = h.clamp(nrn.vmin, nrn.vmax)
                s = (h >= thr) & keep
                nv = torch.where(s, torch.zeros_like(h) if nrn.reset == "hard" else h - thr, h)
                v[l.name] = torch.where(keep, nv, torch.zeros_like(nv))
                x = s.to(torch.int64)
                spikes.setdefault(l.name, []).append(x)
            outs[l.name] = x
    return scores.numpy(), {k: torch.stack(s, 1).numpy().astype(np.uint8) for k, s in spikes.items()}
