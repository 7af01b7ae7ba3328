"""The golden interpreter: the definition of what every backend computes (docs/IR.md).

Integer semantics throughout.  Accumulations use BLAS on integer-valued float arrays:
every product and partial sum is an integer whose magnitude is bounded by
``max input x max |weight| x fan-in``; float32 represents every integer below 2**24 and
float64 every integer below 2**53 exactly, so the layer uses float32 when its bound is
below 2**24, else float64 (``validate`` proves the bound is below 2**52), and the result
is cast back to int64 without loss.  numpy has no BLAS for int64 and would be ~50x
slower; this is the one place the interpreter touches floats, and it is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ticketforge.ir.schema import INPUT, Graph, IRError, Layer, Neuron

__all__ = ["GoldenResult", "run", "input_shape", "accumulate", "attention_accumulate", "conv_accumulate", "linear_accumulate", "leak", "or_pool"]


@dataclass
class GoldenResult:
    scores: np.ndarray                                    # int64 [N, classes]
    spikes: dict[str, np.ndarray] = field(default_factory=dict)      # layer -> uint8 [N, T, *out]
    membranes: dict[str, np.ndarray] = field(default_factory=dict)   # layer -> int64 [N, *out] at the end
    h_range: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (min, max) of H before saturation

    @property
    def predictions(self) -> np.ndarray:
        return self.scores.argmax(axis=1)


def exact_float_dtype(bound: int):
    """The cheapest float type in which every integer of magnitude <= bound is exact."""
    return np.float32 if bound < (1 << 24) else np.float64


def conv_accumulate(x: np.ndarray, w: np.ndarray, stride: int, padding: int, bound: int = 1 << 52) -> np.ndarray:
    """Integer 2-D cross-correlation, zero padding: x [N, C, H, W], w [O, C, k, k] -> [N, O, Ho, Wo].
    `bound` >= max |x| * max |w| * C*k*k picks the exact float type for the BLAS call (every
    partial sum is bounded by it too, so the per-tap sums below stay exact)."""
    dt = exact_float_dtype(bound)
    k, c = w.shape[-1], x.shape[1]
    if c < 4:
        # few channels: one GEMM over the k*k-times larger columns is cheaper than k*k thin ones
        xp = np.pad(x.astype(dt), ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x.astype(dt)
        win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # N C Ho Wo k k
        n, _, ho, wo = win.shape[:4]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
        acc = cols @ w.reshape(w.shape[0], -1).T.astype(dt)
        return acc.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2).astype(np.int64)
    # many channels: one GEMM per tap over channels-last input, no k*k-times larger copy
    # (5.7x faster on vgg9_binw's 16 -> 32-channel 28x28 layer)
    xh = np.ascontiguousarray(x.astype(dt).transpose(0, 2, 3, 1))                    # N H W C
    if padding:
        xh = np.pad(xh, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, hp, wp, _ = xh.shape
    ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
    taps = w.astype(dt).transpose(2, 3, 1, 0)                                            # k k C O
    acc = np.zeros((n * ho * wo, w.shape[0]), dt)
    for ky in range(k):
        for kx in range(k):
            xs = xh[:, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            acc += xs.reshape(-1, c) @ taps[ky, kx]
    return acc.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2).astype(np.int64)


def linear_accumulate(x: np.ndarray, w: np.ndarray, bound: int = 1 << 52) -> np.ndarray:
    dt = exact_float_dtype(bound)
    return (x.astype(dt) @ w.T.astype(dt)).astype(np.int64)


def _bound(w: np.ndarray, max_in: int) -> int:
    """max |accumulation| of synapses ``w`` [O, ...] over inputs up to ``max_in``."""
    fan_in = int(np.prod(w.shape[1:]))
    return max_in * max(1, int(np.abs(w).max()) if w.size else 1) * fan_in


def attention_accumulate(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Spiking self-attention's integer product: q, k, v [N, C, H, W] (0/1) -> [N, C, H, W],
    per head of C / heads channels and tokens n, m (positions in H-W order)
    ``acc[d, n] = sum_m v[d, m] * sum_e q[e, n] * k[e, m]``.  Every partial sum is at most
    (C / heads) * (H*W)**2, far below 2**52: float64 BLAS is exact."""
    n, c, h, w = q.shape
    f = lambda t: t.astype(np.float64).reshape(n, heads, c // heads, h * w)  # noqa: E731
    qh, kh, vh = f(q), f(k), f(v)
    a = qh.transpose(0, 1, 3, 2) @ kh                     # [N, heads, tokens, tokens]
    return (vh @ a.transpose(0, 1, 3, 2)).reshape(n, c, h, w).astype(np.int64)


def accumulation_bound(g: Graph, l: Layer, max_in: list[int]) -> int:
    """Bound on |accumulation| of a weighted layer whose inputs carry values up to ``max_in``."""
    return _bound(g.tensor(l, "weight"), max_in[0]) + (_bound(g.tensor(l, "skip_weight"), max_in[1])
                                                       if l.has_skip else 0)


def accumulate(g: Graph, l: Layer, inputs: list[np.ndarray], bound: int = 1 << 52) -> np.ndarray:
    """A conv/linear/output layer's integer accumulation over its input and, for a layer
    with a skip input, plus the skip synapses' over the skip source (docs/IR.md); ``bound``
    (`accumulation_bound`) picks the exact float type."""
    w = g.tensor(l, "weight")
    acc = (conv_accumulate(inputs[0], w, l.stride, l.padding, bound) if l.kind == "conv"
           else linear_accumulate(inputs[0], w, bound))
    if l.has_skip:
        ws = g.tensor(l, "skip_weight")
        acc = acc + (conv_accumulate(inputs[1], ws, l.skip_stride, l.skip_padding, bound) if l.kind == "conv"
                     else linear_accumulate(inputs[1], ws, bound))
    return acc


def leak(v: np.ndarray, n: Neuron) -> np.ndarray:
    """The leak of docs/IR.md; >> is an arithmetic (floor) shift on signed values."""
    if n.leak == "none":
        return v
    if n.leak == "shift":
        return v - (v >> n.leak_shift)
    return (v * n.leak_mult) >> n.leak_frac_bits


def or_pool(x: np.ndarray, k: int) -> np.ndarray:
    """k x k max over 0/1 spikes, i.e. an OR; trailing rows/cols that do not fill a window drop."""
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    return x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).max(axis=(3, 5))


def _per_channel(a: np.ndarray, ndim: int) -> np.ndarray:
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def run(g: Graph, images: np.ndarray, trace: bool = False, batch_size: int = 100,
        measure_range: bool = False) -> GoldenResult:
    """Run the IR on integer images ``[N, C, H, W]`` (pixel codes), or for an ``events``
    input on binary frames ``[N, T, C, H, W]`` (one per timestep).  With ``trace`` also
    return every neuron layer's spikes per timestep and final membranes; with
    ``measure_range`` the range of H (before saturation) over live neurons, per layer."""
    images = np.asarray(images)
    expect = input_shape(g)
    if images.ndim != len(expect) + 1 or tuple(images.shape[1:]) != expect:
        raise IRError(f"input images have shape {list(images.shape)}, the IR expects "
                      f"[N, {', '.join(map(str, expect))}]")
    if images.size and (images.min() < 0 or images.max() >= (1 << g.input.bits)):
        raise IRError(f"input pixel codes must be in [0, {(1 << g.input.bits) - 1}]")
    parts = [_run_batch(g, images[i:i + batch_size].astype(np.int64), trace, measure_range)
             for i in range(0, len(images), batch_size)] or \
        [_run_batch(g, images.astype(np.int64), trace, measure_range)]
    res = GoldenResult(scores=np.concatenate([p.scores for p in parts]))
    if trace:
        for name in parts[0].spikes:
            res.spikes[name] = np.concatenate([p.spikes[name] for p in parts])
            res.membranes[name] = np.concatenate([p.membranes[name] for p in parts])
    for p in parts:
        for name, (lo, hi) in p.h_range.items():
            plo, phi = res.h_range.get(name, (lo, hi))
            res.h_range[name] = (min(lo, plo), max(hi, phi))
    return res


def input_shape(g: Graph) -> tuple:
    """One input's shape: ``(C, H, W)``, or ``(T, C, H, W)`` for an ``events`` input."""
    return ((g.T,) if g.input.events else ()) + tuple(g.input.shape)


def _run_batch(g: Graph, x0: np.ndarray, trace: bool, measure_range: bool) -> GoldenResult:
    n = len(x0)
    out = g.layers[-1]
    scores = np.zeros((n, out.out_shape[0]), dtype=np.int64)
    state: dict[str, np.ndarray] = {}
    spikes: dict[str, list] = {}
    h_range: dict[str, tuple[int, int]] | None = {} if measure_range else None
    sources = g.sources()
    max_out, bounds = {INPUT: (1 << g.input.bits) - 1}, {}
    for l in g.layers:
        if l.has_weights:
            bounds[l.name] = accumulation_bound(g, l, [max_out[s] for s in sources[l.name]])
        max_out[l.name] = 1 if l.neuron is not None else max_out[sources[l.name][0]]
    # direct encoding: a layer that reads only the input accumulates the same every t
    # (events: the input differs per timestep)
    repeat: dict[str, np.ndarray] | None = None if g.input.events else {}
    for t in range(g.T):
        outs = {INPUT: x0[:, t] if g.input.events else x0}
        for l in g.layers:
            srcs = sources[l.name]
            x = outs[srcs[0]]
            if l.kind == "pool":
                x = or_pool(x, l.kernel)
            elif l.kind == "flatten":
                x = x.reshape(n, -1)
            elif l.kind == "output":
                scores += accumulate(g, l, [x], bounds[l.name])
            else:
                if l.kind == "attention":
                    acc = attention_accumulate(*(outs[s] for s in srcs), l.heads)
                elif repeat is not None and l.name in repeat:
                    acc = repeat[l.name]
                else:
                    acc = accumulate(g, l, [outs[s] for s in srcs], bounds[l.name])
                    if repeat is not None and set(srcs) == {INPUT}:
                        repeat[l.name] = acc
                x = _neuron_update(g, l, acc, state, h_range)
                if trace:
                    spikes.setdefault(l.name, []).append(x.astype(np.uint8))
            outs[l.name] = x
    res = GoldenResult(scores=scores, h_range=h_range or {})
    if trace:
        res.spikes = {k: np.stack(v, axis=1) for k, v in spikes.items()}
        res.membranes = dict(state)
    return res


def _neuron_update(g: Graph, l: Layer, acc: np.ndarray, state: dict, h_range: dict | None) -> np.ndarray:
    nrn = l.neuron
    v = state.get(l.name)
    if v is None:
        v = np.zeros_like(acc)
    bias = _per_channel(g.tensor(l, "bias").astype(np.int64), acc.ndim)
    thr = _per_channel(g.tensor(l, "threshold").astype(np.int64), acc.ndim)
    keep = g.tensor(l, "neuron_mask").astype(bool)[None]
    h = leak(v, nrn) + (acc << l.input_shift) + bias
    live = h[np.broadcast_to(keep, h.shape)] if h_range is not None else np.empty(0)
    if live.size:
        lo, hi = int(live.min()), int(live.max())
        plo, phi = h_range.get(l.name, (lo, hi))
        h_range[l.name] = (min(lo, plo), max(hi, phi))
    h = np.clip(h, nrn.vmin, nrn.vmax)
    s = (h >= thr) & keep
    v = np.where(s, 0 if nrn.reset == "hard" else h - thr, h)
    state[l.name] = np.where(keep, v, 0)
    return s.astype(np.int64)
