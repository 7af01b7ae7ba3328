"""The static plan of the bit-parallel, layer-major accelerator (``bitpar``): what each
weighted layer reads, in which steps, with which weight words, and where its spikes go.

Dataflow (docs/RTL.md, "bitpar"): output-stationary.  A layer runs over all T timesteps
before the next (exact for these feed-forward nets).  ``L`` lanes work on one output
position, lane ``l`` of group ``g`` on output channel ``g * L + l``; each lane keeps one
accumulator per timestep, so one *step* (one kept kernel tap and word of 32 input channels)
adds that word's synapses for every t at once::

    acc[l][t] += popcount(s_t & pos_l) - popcount(s_t & neg_l)

where ``s_t`` are the 32 input spikes of the step at timestep t and ``pos_l`` / ``neg_l``
the lane's +1 / -1 synapses of that word.  The first layer reads 8-bit pixels instead, one
per step (the same at every t: direct encoding), and adds ``+-pixel``.

What is skipped, statically: a step none of whose lanes keeps a synapse is not stored and
costs no cycle (masked synapses are zeros of the AND); a (position, group) with no live
neuron (DynSNN) runs no step and no update.  An ``events`` input (binary frames per
timestep) is a bitmap like any layer's spikes: the AER loader writes it into a buffer, and
the first layer reads it as the others read theirs.  A linear first layer (an MLP on pixels) reads
the pixels as bit planes instead: a step row is a word of 32 pixels, run once per pixel
bit b, adding ``(popcount(plane_b & pos) - popcount(plane_b & neg)) << b`` (the same rows
serve every plane).  Spikes of a layer are *bitmap words*: per
output position and chunk of 32 channels, ``T x 32`` bits (``bit_index``); a following OR
pool is folded into the write (read, OR, write).

Multi-bit weights (``weight_bits`` B from 2 to 8: magnitudes up to 2^(B-1) - 1) are bit-serial:
a (tap, word) becomes up to B - 1 step rows, one per magnitude bit b, whose masks hold the
synapses with that bit set (``pos``: positive weights, ``neg``: negative ones) and whose
``shift`` is b; the lanes add the row's popcount difference (or pixel) shifted left by b.
So ``sum_b (popcount(s & pos_b) - popcount(s & neg_b)) << b`` is exactly ``sum w * s``, with
no multiplier, and a bit that no lane's weight has is a row that is not stored.  Binary
weights (B = 2) are the one-row case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir.schema import Graph
from ticketforge.rtl.datapath import check_input

__all__ = ["WORD", "LANES", "WEIGHT_BITS", "StepRow", "LayerPlan", "BitparPlan", "plan_graph", "bit_index"]

WORD = 32                 # input channels per spike word: the synapses one lane adds per step
LANES = (1, 2, 4, 8, 16, 32)
WEIGHT_BITS = range(2, 9)   # signed weight widths the lanes take, bit-serially


def bit_index(T: int, L: int, t: int, cc: int) -> int:
    """Bit of (timestep t, channel cc of the chunk) in a bitmap word: group-sized granules
    of T x L bits, so that one group's write is one contiguous granule."""
    return (cc // L) * T * L + t * L + cc % L


@dataclass(frozen=True)
class StepRow:
    dy: int                   # tap offset from the position's top-left source row (conv), else 0
    dx: int
    off: int                  # source word address offset from the position's base address
    pos: tuple[int, ...]      # per lane: WORD-bit mask of +1 synapses (first layer: bit 0)
    neg: tuple[int, ...]
    shift: int = 0            # the weights' magnitude bit this row adds (multi-bit weights)


@dataclass
class LayerPlan:
    index: int                # in g.layers
    name: str
    kind: str                 # conv | linear | output
    first: bool               # reads the pixels (an events input: False, the loaded bitmap)
    src_shape: tuple[int, int, int]       # (C, H, W) of what it reads (linear: the bitmap's geometry)
    src_chunks: int           # words per source position (1 for the pixels: one pixel per address)
    out_hw: tuple[int, int]   # output positions (1, 1 for linear and output)
    stride: int
    out_channels: int
    groups: int
    steps: list[list[StepRow]]            # per group
    pool: int = 0             # OR-pool window folded into the write (0: none)
    dst_hw: tuple[int, int] = (1, 1)      # positions of the written bitmap (after the pool)
    dst_chunks: int = 1
    keep: np.ndarray | None = None        # [positions, groups] L-bit keep words; None: all live
    read_buf: int = 0         # bitmap buffer read (not first) and written (neuron layers)
    write_buf: int = 1
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    threshold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    input_shift: int = 0
    dense: bool = False       # the no-skipping reference: every (position, group) runs
    planes: int = 0           # a linear first layer: pixel bits; each step row runs once per bit plane

    @property
    def issues(self) -> list[int]:
        """Per group: the pipeline steps its rows take (a bit-plane row takes one per plane)."""
        return [len(r) * max(1, self.planes) for r in self.steps]

    @property
    def positions(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    def live(self, L: int) -> np.ndarray:
        """[positions, groups] bool: does the (position, group) hold a live neuron."""
        if self.keep is None or self.dense:
            return np.ones((self.positions, self.groups), bool)
        return self.keep != 0

    def keep_word(self, L: int, pos: int, grp: int) -> int:
        if self.keep is not None:
            return int(self.keep[pos, grp])
        n = min(L, self.out_channels - grp * L)
        return (1 << n) - 1


@dataclass
class BitparPlan:
    graph: Graph
    L: int
    layers: list[LayerPlan]
    dense: bool = False

    @property
    def T(self) -> int:
        return self.graph.T

    @property
    def input_words(self) -> int:
        """Bitmap words of an ``events`` input (its positions x chunks of 32 channels); 0 for pixels."""
        if not self.graph.input.events:
            return 0
        c, h, w = self.graph.input.shape
        return h * w * math.ceil(c / WORD)

    @property
    def buffer_depth(self) -> int:
        return max([lp.dst_hw[0] * lp.dst_hw[1] * lp.dst_chunks for lp in self.layers if lp.kind != "output"] +
                   [self.input_words, 1])


def _lane_words(word_of, grp: int, L: int, Co: int, bit: int = 0) -> tuple[list[int], list[int]]:
    """Per lane of group ``grp``: the masks of its positive and of its negative synapses in
    one step's word whose magnitude has bit ``bit`` set; ``word_of(o)`` is output channel
    o's weights of that word (a lane past the last channel has none)."""
    pos, neg = [], []
    for lane in range(L):
        o = grp * L + lane
        ws = np.atleast_1d(word_of(o)).astype(np.int64) if o < Co else np.zeros(0, np.int64)
        on = (np.abs(ws) >> bit) & 1
        pos.append(int(sum(1 << int(j) for j in np.flatnonzero((ws > 0) & (on == 1)))))
        neg.append(int(sum(1 << int(j) for j in np.flatnonzero((ws < 0) & (on == 1)))))
    return pos, neg


def _neuron_layers_ok(g: Graph) -> None:
    check_input(g, "bitpar")
    prev = None
    for l in g.layers:
        if l.has_weights and l.weight_bits not in WEIGHT_BITS:
            raise UnsupportedError(f"layer {l.name!r}: the bitpar accelerator takes weights of "
                                   f"{WEIGHT_BITS.start} to {WEIGHT_BITS.stop - 1} bits, got {l.weight_bits}")
        if l.kind == "pool" and (prev is None or prev.kind != "conv"):
            raise UnsupportedError(f"layer {l.name!r}: the bitpar accelerator folds a pool into the conv "
                                   "before it; this pool follows no conv")
        if l.kind == "pool" and l.stride != l.kernel:
            raise UnsupportedError(f"layer {l.name!r}: pool stride {l.stride} != window {l.kernel}")
        prev = l
    if not any(l.kind in ("conv", "linear") for l in g.layers):
        raise UnsupportedError("the bitpar accelerator needs at least one conv or linear layer")
    lead = next(l for l in g.layers if l.kind != "flatten")
    if lead.kind not in ("conv", "linear"):
        raise UnsupportedError(f"the bitpar accelerator's first layer reads the pixels: it must be conv or "
                               f"linear (after a flatten), got {lead.kind} {lead.name!r}")


def plan_graph(g: Graph, lanes: int, dense: bool = False, keep_all: bool = False) -> BitparPlan:
    """Map an integer IR with binary weights onto ``lanes`` lanes.  ``dense``: the reference
    without skipping: every tap and word is a step (zero weights included) and every
    (position, group) runs, pruned neurons kept silent by their keep bits.  ``keep_all``:
    every neuron layer reads keep words, pruned neurons or not (runtime weights: whether a
    layer has pruned neurons is the loaded ticket's, not the bitstream's)."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    if lanes not in LANES:
        raise UsageError(f"lanes must be one of {', '.join(map(str, LANES))} (they divide a {WORD}-bit word), "
                         f"got {lanes!r}")
    _neuron_layers_ok(g)
    L = lanes
    plans: list[LayerPlan] = []
    src_shape = tuple(g.input.shape)
    # pixels: the first layer reads them one per step (or as bit planes); events: a bitmap in
    # buffer 0, which the first layer reads as any layer reads the spikes before it
    first = not g.input.events
    src_chunks, buf = (1 if first else math.ceil(src_shape[0] / WORD)), 0
    layers = list(g.layers)
    for i, l in enumerate(layers):
        if not l.has_weights:
            continue
        w = g.tensor(l, "weight").astype(np.int64)
        Co = l.out_shape[0]
        G = math.ceil(Co / L)
        C, H, W = src_shape
        steps: list[list[StepRow]] = []
        if l.kind == "conv":
            k, pad = l.kernel, l.padding
            out_hw = tuple(l.out_shape[1:])
            for grp in range(G):
                rows = []
                for ky in range(k):
                    for kx in range(k):
                        units = range(C) if first else range(src_chunks)
                        for u, b in ((u, b) for u in units for b in range(l.weight_bits - 1)):
                            # the first layer: one pixel's weight a step (bit 0), else a word
                            cs = slice(u, u + 1) if first else slice(u * WORD, (u + 1) * WORD)
                            pos, neg = _lane_words(lambda o: w[o, cs, ky, kx], grp, L, Co, b)
                            if not dense and not any(pos) and not any(neg):
                                continue            # no lane keeps a synapse of this word: no step
                            dy, dx = ky - pad, kx - pad
                            off = (u * H * W + dy * W + dx) if first else ((dy * W + dx) * src_chunks + u)
                            rows.append(StepRow(dy, dx, off, tuple(pos), tuple(neg), b))
                steps.append(rows)
            stride = l.stride
        else:
            out_hw, stride = (1, 1), 1
            if first:
                # bit planes: a step is a word of 32 pixels (flatten order c, y, x) and runs
                # once per pixel bit b, adding (popcount(plane_b & pos) - ...) << b
                wf = w.reshape(Co, -1)
                units = [(u, 0) for u in range(math.ceil(wf.shape[1] / WORD))]
            else:
                wf = w.reshape(Co, C, H * W)              # flatten order: c, y, x
                units = [(u, p) for p in range(H * W) for u in range(src_chunks)]
            for grp in range(G):
                rows = []
                for (u, p), b in ((up, b) for up in units for b in range(l.weight_bits - 1)):
                    cs = slice(u * WORD, (u + 1) * WORD)
                    pos, neg = _lane_words(lambda o: wf[o, cs] if first else wf[o, cs, p], grp, L, Co, b)
                    if not dense and not any(pos) and not any(neg):
                        continue
                    off = u if first else (p * src_chunks + u)
                    rows.append(StepRow(0, 0, off, tuple(pos), tuple(neg), b))
                steps.append(rows)
        lp = LayerPlan(index=i, name=l.name, kind=l.kind, first=first, src_shape=src_shape,
                       src_chunks=src_chunks, out_hw=out_hw, stride=stride, out_channels=Co, groups=G,
                       steps=steps, read_buf=buf, write_buf=1 - buf, input_shift=l.input_shift, dense=dense,
                       planes=g.input.bits if first and l.kind == "linear" else 0)
        if l.kind != "output":
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            lp.pool = nxt.kernel if nxt is not None and nxt.kind == "pool" else 0
            lp.dst_hw = (out_hw[0] // lp.pool, out_hw[1] // lp.pool) if lp.pool else out_hw
            lp.dst_chunks = math.ceil(Co / WORD)
            lp.bias = g.tensor(l, "bias").astype(np.int64)
            lp.threshold = g.tensor(l, "threshold").astype(np.int64)
            keep = g.tensor(l, "neuron_mask").astype(bool).reshape(Co, -1)      # [Co, positions]
            if keep_all or not keep.all():
                pad_c = G * L - Co
                kp = np.concatenate([keep, np.zeros((pad_c, keep.shape[1]), bool)]).reshape(G, L, -1)
                lp.keep = (kp.astype(np.int64) << np.arange(L)[None, :, None]).sum(1).T.copy()   # [pos, G]
            src_shape = (Co,) + (lp.dst_hw if l.kind == "conv" else (1, 1))
            src_chunks = lp.dst_chunks
            buf = 1 - buf
        plans.append(lp)
        first = False
    return BitparPlan(g, L, plans, dense)
