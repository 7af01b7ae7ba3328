"""Mapping an integer IR onto P processing elements: the accelerator's "program".

This fixes the micro-architecture's data layout, which the cycle model (`cycles.py`) and
the Amaranth generator share:

- **Neuron slots.** Only live neurons (``neuron_mask`` = 1) get a slot.  A conv neuron
  (o, y, x) lives on PE ``(o + O * ((y mod ry) * rx + x mod rx)) mod P``: channels are
  interleaved over PEs and, when there are fewer channels O than PEs, ``ry x rx`` position
  classes spread each channel over ``ceil(P / O)`` PEs.  The PE of every synapse of an
  event then depends only on the event's channel and position class, so its rows are
  precomputed per (channel, y mod s*ry, x mod s*rx), s the stride.  A linear unit with
  live index j lives on PE ``j mod P``; readout class k on PE ``k mod P``.
- **Compressed synapse store.** For each event source (a conv layer's input channel c; a
  linear/readout layer's input index i) the kept synapses are packed into *rows* of at
  most one entry per PE, so one row is one cycle with every PE doing at most one
  accumulate.  ``rows[src] = max over PEs of that PE's entries``.  A masked synapse has no
  entry (no cycle, no read); a synapse into a pruned neuron has none either for linear
  layers (for conv it stays in the shared kernel row and is dropped by the slot lookup).
- **Dense reference** (``dense=True``): the same PE count with no skipping: every synapse
  has an entry (masked ones with weight 0) and every neuron a slot.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ticketforge.model.ir.schema import Graph, IRError

__all__ = ["LayerMap", "Program", "map_graph", "MAX_PES"]

MAX_PES = 1024


@dataclass
class LayerMap:
    name: str
    kind: str
    rows: np.ndarray            # int64: rows (cycles) per event, by source
                                # (conv: [C, s*ry, s*rx] by channel and position class; else [I])
    slots: int = 0              # neurons with a slot (live, or all when dense)
    neurons: int = 0            # all neurons of the layer
    slots_per_pe: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def update_cycles(self) -> int:
        """One slot per PE per cycle: the most loaded PE sets the pace."""
        return int(self.slots_per_pe.max()) if self.slots_per_pe.size else 0


@dataclass
class Program:
    P: int
    dense: bool
    layers: dict[str, LayerMap]


def _check(g: Graph, P: int) -> None:
    if not isinstance(P, int) or not 1 <= P <= MAX_PES:
        raise IRError(f"number of PEs must be an integer in [1, {MAX_PES}], got {P!r}")
    for l in g.layers:
        if l.has_weights and l.weight_bits != 2:
            raise IRError(f"layer {l.name!r}: weight_bits {l.weight_bits}; the event-driven "
                          "accelerator adds +-event values and takes binary weights only (weight_bits 2)")


def map_graph(g: Graph, P: int, dense: bool = False) -> Program:
    _check(g, P)
    layers: dict[str, LayerMap] = {}
    for l in g.layers:
        if not l.has_weights:
            continue
        w = g.tensor(l, "weight")
        kept = np.ones_like(w, dtype=bool) if dense else g.tensor(l, "mask").astype(bool)
        cout = w.shape[0]
        if l.kind == "conv":
            live = np.ones(l.out_shape, bool) if dense else g.tensor(l, "neuron_mask").astype(bool)
            rows, slots_per_pe = _conv_rows(l, kept, live, P)
            layers[l.name] = LayerMap(l.name, l.kind, rows, slots=int(live.sum()), neurons=int(live.size),
                                      slots_per_pe=slots_per_pe)
            continue
        else:
            if l.kind == "linear":
                live = np.ones(cout, bool) if dense else g.tensor(l, "neuron_mask").astype(bool)
            else:
                live = np.ones(cout, bool)
            live_index = np.cumsum(live) - 1
            pe_of_out = np.where(live, live_index % P, -1)
            per_src = (kept & live[:, None]).astype(np.int64)     # [O, I]
            slots_per_pe = np.bincount(pe_of_out[live], minlength=P)
        # entries per (PE, source), rows = the busiest PE's count
        by_pe = np.zeros((P, per_src.shape[1]), np.int64)
        valid = pe_of_out >= 0
        np.add.at(by_pe, pe_of_out[valid], per_src[valid])
        rows = by_pe.max(axis=0)
        layers[l.name] = LayerMap(l.name, l.kind, rows.astype(np.int64),
                                  slots=int(live.sum()), neurons=int(live.size),
                                  slots_per_pe=slots_per_pe.astype(np.int64))
    return Program(P, dense, layers)


def position_classes(cout: int, P: int) -> tuple[int, int]:
    """(ry, rx): position classes per channel so that channels x classes cover P PEs."""
    r = -(-P // cout) if cout < P else 1
    ry = int(np.ceil(np.sqrt(r)))
    return ry, -(-r // ry)


def conv_pe(o, y, x, cout: int, P: int, ry: int, rx: int):
    return (o + cout * ((y % ry) * rx + (x % rx))) % P


def _conv_rows(l, kept: np.ndarray, live: np.ndarray, P: int):
    cout, cin, k, _ = kept.shape
    ry, rx = position_classes(cout, P)
    s, pad = l.stride, l.padding
    my, mx = s * ry, s * rx
    _, ho, wo = l.out_shape
    oo, yy, xx = np.meshgrid(np.arange(cout), np.arange(ho), np.arange(wo), indexing="ij")
    slots_per_pe = np.bincount(conv_pe(oo, yy, xx, cout, P, ry, rx)[live], minlength=P).astype(np.int64)
    rows = np.zeros((cin, my, mx), np.int64)
    o_idx = np.arange(cout)
    for cy in range(my):
        for cx in range(mx):
            by_pe = np.zeros((P, cin), np.int64)
            for ky in range(k):
                ty = cy + pad - ky                      # s * y' for an event in class cy
                if ty % s:
                    continue
                for kx in range(k):
                    tx = cx + pad - kx
                    if tx % s:
                        continue
                    pe = conv_pe(o_idx, ty // s, tx // s, cout, P, ry, rx)
                    np.add.at(by_pe, pe, kept[:, :, ky, kx].astype(np.int64))
            rows[:, cy, cx] = by_pe.max(axis=0)
    return rows, slots_per_pe
