"""The static mapping of a fully connected spiking IR onto the ``rowstream`` datapath.

Why this datapath: on a small FPGA (the iCE40 UP5K: 30 block RAMs of 4 Kbit, 1 Mbit of
single-port SPRAM read 64 bits a cycle) a fully connected layer is weight-bandwidth bound,
and an image's input is mostly zero (an MNIST digit: about 150 of 784 pixels).  So the
input is kept as an *event list* (index, value) of its non-zero entries, and each event
costs one read of a *weight row*: the B-bit weights of L output neurons, L x B bits (64 at
L = 16, B = 4: one word of the four SPRAMs side by side).  The lanes multiply the event's
value into their L accumulators.  Output-stationary: the L neurons of a *group* keep their
membranes in registers over all T timesteps, so no membrane is ever read or written in
RAM, and a layer runs over all T before the next (exact for feed-forward networks).

- **Weight rows**, per layer and group, one per input index: row ``base + g * N_in + i``
  holds ``w[g*L + lane, i]`` for every lane (0 beyond the layer's outputs).  The group's
  first row is the previous group's plus ``N_in``: no multiplier in the address path.
- **Event lists**: the pixels' (index, value) (zeros left out: ``dense`` keeps them), and
  per timestep the indices of the neurons that fired (value 1).  Two buffers alternate
  between layers.
- **Neuron parameters**, one entry per (layer, group, lane): bias, threshold and the keep
  bit (DynSNN); the update walks a group's lanes one a cycle while the next group's pass
  accumulates, and a spike appends its index to the next layer's list for that timestep.
- **Direct encoding**: the first layer's input is the same at every timestep, so its
  accumulation runs once per group and its T updates reuse it.

Limits (refused, naming the layer): the input must be pixels (``direct``), the layers a
flatten then linear layers (hidden ones with neurons, then the readout), at least one
hidden layer, no skip connections.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir.schema import Graph

__all__ = ["LANES", "MAX_LANES", "LayerPlan", "RowstreamPlan", "plan_graph", "row_words"]

# lane counts: any, up to 64 (a row is lanes x weight bits wide: 16 lanes of 4 bits are the
# UP5K's four SPRAMs side by side)
MAX_LANES = 64
LANES = tuple(range(1, MAX_LANES + 1))


@dataclass(frozen=True)
class LayerPlan:
    index: int                  # position in g.layers
    name: str
    kind: str                   # "linear" (hidden, with neurons) or "output"
    n_in: int                   # input features (events' index range)
    n_out: int                  # output neurons (or classes)
    groups: int                 # ceil(n_out / L)
    row_base: int               # first weight row
    param_base: int             # first neuron-parameter entry (hidden layers)
    first: bool                 # reads the pixel list (direct encoding: accumulates once)
    read_buf: int               # event list buffer read (0: the pixels' buffer)
    input_shift: int


@dataclass(frozen=True)
class RowstreamPlan:
    graph: Graph
    L: int
    dense: bool
    layers: tuple[LayerPlan, ...]
    weight_bits: int            # B: the widest layer's weight bits (each lane's field)
    rows: int                   # weight rows in all
    params: int                 # neuron-parameter entries in all
    n_pix: int
    list_depth: tuple[int, int]  # event list buffers' depths (buffer 0 also holds the pixels)
    max_hidden: int             # the most neurons of a hidden layer (a timestep's list slot)

    @property
    def T(self) -> int:
        return self.graph.T


def _check(g: Graph) -> list:
    if g.input.events:
        raise UnsupportedError("the rowstream datapath takes pixel images (the IR's 'direct' input); this IR's "
                               "input is events: use the lane or bitpar datapath")
    weighted = []
    for i, l in enumerate(g.layers):
        if l.kind == "flatten" and i == 0:
            continue
        if l.kind not in ("linear", "output"):
            raise UnsupportedError(f"the rowstream datapath runs fully connected networks (a flatten, then linear "
                                   f"layers); layer {l.name!r} is {l.kind}: use the lane or bitpar datapath")
        if l.has_skip:
            raise UnsupportedError(f"layer {l.name!r} has a skip input, which the rowstream datapath does not run")
        weighted.append((i, l))
    if len(weighted) < 2 or weighted[-1][1].kind != "output":
        raise UnsupportedError("the rowstream datapath needs at least one hidden linear layer before the readout")
    return weighted


def plan_graph(g: Graph, lanes: int, dense: bool = False) -> RowstreamPlan:
    """Map a fully connected integer IR onto ``lanes`` lanes.  ``dense``: the reference
    without skipping: every pixel and every neuron of every timestep is an event (value 0
    or its pixel / spike)."""
    if lanes not in LANES:
        raise UsageError(f"the rowstream datapath's lane count must be in [1, {MAX_LANES}], got {lanes!r}")
    weighted = _check(g)
    L = lanes
    n_pix = int(np.prod(g.input.shape))
    layers, rows, params, n_in = [], 0, 0, n_pix
    for k, (i, l) in enumerate(weighted):
        n_out = int(l.out_shape[0])
        G = math.ceil(n_out / L)
        layers.append(LayerPlan(index=i, name=l.name, kind=l.kind, n_in=n_in, n_out=n_out, groups=G,
                                row_base=rows, param_base=params, first=k == 0, read_buf=k % 2,
                                input_shift=int(l.input_shift)))
        rows += G * n_in
        if l.kind != "output":
            params += G * L
        n_in = n_out
    hidden = [lp.n_out for lp in layers if lp.kind != "output"]
    T = g.T
    depth = [n_pix, 1]
    for lp in layers:
        if lp.kind != "output":
            b = 1 - lp.read_buf                 # the buffer it writes: a slot per timestep
            depth[b] = max(depth[b], T * max(hidden))
    return RowstreamPlan(graph=g, L=L, dense=dense, layers=tuple(layers),
                         weight_bits=max(int(g.layers[lp.index].weight_bits) for lp in layers),
                         rows=rows, params=params, n_pix=n_pix, list_depth=(depth[0], depth[1]),
                         max_hidden=max(hidden))


def row_words(plan: RowstreamPlan) -> list[list[int]]:
    """Every weight row: L signed weights (0 beyond a layer's outputs), in row order."""
    g, L = plan.graph, plan.L
    out: list[list[int]] = []
    for lp in plan.layers:
        w = g.tensor(g.layers[lp.index], "weight").astype(np.int64).reshape(lp.n_out, lp.n_in)
        pad = np.zeros((lp.groups * L, lp.n_in), np.int64)
        pad[:lp.n_out] = w
        for grp in range(lp.groups):
            out += pad[grp * L:(grp + 1) * L].T.tolist()           # [n_in][L]
    return out
