"""Mapping an integer IR onto P processing elements: the accelerator's "program".

Everything the Amaranth generator (`accel.py`) bakes into memory, and everything the
cycle model (`cycles.py`) counts, comes from here, so the two cannot disagree on layout.

- **Neuron slots.** Only live neurons (``neuron_mask`` = 1) get a slot (in the dense
  variant every neuron does).  A *linear* unit with live index j lives on PE ``j mod P``
  in slot ``j div P``; readout class k on PE ``k mod P``, slot ``k div P``.
- **Conv neurons** are split into *groups* ``g = o + O * (py * rx + px)``: channel o and
  position class ``(py, px) = (y mod ry, x mod rx)``.  ``ry x rx`` (powers of two) give
  every PE at least GROUPS_PER_PE groups; `place_groups` puts class k of channel o on PE
  ``(o + k * P / classes) mod P`` (so a PE's groups are different channels) and numbers a
  PE's groups by its *rank*.  Inside a PE a neuron has a dense *local index*
  ``rank * GS + (y div ry) * GW + (x div rx)`` and a per-PE lookup table maps the
  local index to its slot (or "pruned").  A conv lane's address is the group's rank; the
  PE multiplies it by the constant GS (shift-adds, no multiplier).  The table is the price of sharing one kernel
  row among all positions of a class: it costs a few bits per neuron where a membrane
  costs ``membrane_bits + 1`` or more (`accel.u_range`).
- **Compressed synapse store.** Synapses are grouped by *event source*: a conv layer's
  (input channel c, input position class ``(y mod s*ry, x mod s*rx)``), a linear or
  readout layer's input index.  Each source owns consecutive *rows*; a row holds at most
  one *lane* per PE (valid, sign, target address, conv offsets, weight magnitude), packed
  from the first row down, so a PE's lanes of a source are the first ``lane_counts[s, p]``
  rows of its column.  Each PE walks its own column, one lane per cycle (`accel.py`).  A
  masked synapse (or a kept one whose integer weight is 0: `kept_synapses`) has no lane: it
  costs no cycle and no read.  Linear lanes into pruned neurons are dropped here; conv
  lanes are shared by every position of a class and pruned targets are dropped by the lookup.
- **Synapse words** (what the hardware stores).  A PE's lanes of a source are packed into
  *words* of ``W`` candidate synapses (``W`` = the largest k*k of a conv layer): a conv
  word is one group (its rank) and a bit per kernel tap; a linear word is ``W``
  consecutive slots (word address j: slots ``j*W .. j*W+W-1``).  A word holds a *mask*
  (kept synapses), their signs, in the dense variant a *zero* bit (masked: adds 0), and
  with multi-bit weights each synapse's magnitude less one, ``mag_bits`` bits per
  synapse (`Program.mag_bits`; 0 for binary weights, whose magnitude is 1).
  Only words with a kept synapse are stored, each PE's from the source's first word row
  down, so a PE reads ``word_counts[s, p]`` words for an event and emits one lane per
  cycle from them (a lowest-set-bit walk of the mask): the cycles are still the lane
  counts, the storage is ~2-3 bits per candidate synapse instead of ~8 per lane.
  *Implicit addresses* (`Program.implicit_addr`, chosen when it stores fewer bits): a
  PE's j-th word of a source is word address j, so the word has no address field; an
  address missing below the PE's last one (a *hole*: a group with all nine taps pruned)
  is stored as an empty word, which costs the PE one cycle (`LayerProgram.walk_counts`).
- **Dense reference** (``dense=True``): same PE count and layout, no skipping: every
  synapse has a lane (masked ones with the ``zero`` flag: they add 0) and every neuron a
  slot.

Geometry that the hardware computes with shifts (stride, pool kernel, ry, rx) must be a
power of two; anything else is refused naming the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir.schema import Graph, Layer

__all__ = ["LayerProgram", "Program", "map_graph", "MAX_PES", "LANE_FIELDS", "WORD_FIELDS", "GROUPS_PER_PE",
           "position_classes", "place_groups", "word_bits", "magnitude_bits", "kept_synapses"]

MAX_PES = 1024
MAX_ROWS = 1 << 20            # rows of the synapse store, all layers together
MAX_SLOTS_PER_PE = 1 << 16
LANE_FIELDS = ("valid", "neg", "zero", "addr", "dy", "dx", "mag")      # mag: |weight| (1 when binary)
# mask/sign/zero: W-bit integers; mag: W fields of mag_bits, synapse b's |weight| - 1 at b * mag_bits
WORD_FIELDS = ("addr", "mask", "sign", "zero", "mag")


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass
class LayerProgram:
    name: str
    kind: str                         # conv | linear | pool | flatten | output
    layer: Layer
    # weighted layers: synapse store
    rowptr: np.ndarray | None = None  # int64 [sources, 2]: (first row, row count)
    lanes: np.ndarray | None = None   # int64 [rows, P, 7]: LANE_FIELDS
    # the stored form: word rows [R, P, 5] of WORD_FIELDS, and per source (first row, rows)
    words: np.ndarray | None = None
    word_ptr: np.ndarray | None = None
    word_counts: np.ndarray | None = None  # [sources, P]: words each PE reads for a source
    hole_counts: np.ndarray | None = None  # [sources, P]: of those, empty words (holes, padding)
    # neuron layers: slots per PE, rows of (keep, o, y, x)
    slots: list[np.ndarray] = field(default_factory=list)
    # conv: per PE the local-index -> slot table (-1 = pruned) and the geometry
    lookup: list[np.ndarray] = field(default_factory=list)
    group_pe: np.ndarray | None = None  # conv: PE of each group g = o + O * class (place_groups)
    ry: int = 1
    rx: int = 1
    gw: int = 1                       # local positions per group row: ceil(Wo / rx)
    gs: int = 1                       # local positions per group: ceil(Ho / ry) * GW

    @property
    def n_slots(self) -> np.ndarray:
        return np.array([len(s) for s in self.slots], np.int64)

    @property
    def update_cycles(self) -> int:
        """One slot per PE per cycle: the most loaded PE sets the pace."""
        return int(self.n_slots.max()) if self.slots else 0

    @property
    def rows_per_source(self) -> np.ndarray:
        return self.rowptr[:, 1]

    @property
    def regular(self) -> bool:
        """A conv layer whose slots are exactly its neurons' local indices on every PE (no
        pruned neuron, every position class full): the accelerator then computes slot ->
        (c, y, x) and local index -> slot instead of storing tables for them."""
        if self.kind != "conv":
            return False
        _, ho, wo = self.layer.out_shape
        return (sum(len(s) for s in self.slots) == int(np.prod(self.layer.out_shape))
                and all(s[:, 0].all() for s in self.slots) and ho % self.ry == 0 and wo % self.rx == 0)

    @cached_property
    def lane_counts(self) -> np.ndarray:
        """[sources, P]: each PE's lanes for each source.  `_pack` fills every PE's lanes from
        the source's first row, so PE p walks rows ``start .. start + lane_counts[s, p] - 1``
        of its own column (the per-PE row streams of `accel.py`)."""
        valid = self.lanes[:, :, 0]
        cum = np.concatenate([np.zeros((1, valid.shape[1]), np.int64), np.cumsum(valid, 0)])
        start, count = self.rowptr[:, 0], self.rowptr[:, 1]
        return cum[start + count] - cum[start]

    @property
    def walk_counts(self) -> np.ndarray:
        """[sources, P]: cycles of PE p's walk of an event of source s: one per lane and
        one per empty word (a hole or padding: `_words`, `_uniform_rows`); an event
        costs a PE at least one cycle (`cycles.py`)."""
        return self.lane_counts + self.hole_counts

    @property
    def class_shape(self) -> tuple[int, int]:
        """Conv: number of input position classes (my, mx) = (s * ry, s * rx)."""
        s = self.layer.stride
        return s * self.ry, s * self.rx


@dataclass
class Program:
    P: int
    dense: bool
    layers: list[LayerProgram]
    W: int = 1                        # candidate synapses per stored word (word_bits)
    implicit_addr: bool = False       # a PE's j-th word of a source is word address j (no address field)
    uniform_rows: bool = False        # every PE reads all word rows of a source (_uniform_rows)
    mag_bits: int = 0                 # bits of |weight| - 1 per synapse in a word (`magnitude_bits`)

    def layer(self, name: str) -> LayerProgram:
        return next(lp for lp in self.layers if lp.name == name)


# At least two conv groups per PE, so that place_groups can put two different channels on
# each PE (vgg9_binw at P = 64: 1.50x -> 1.41x of the ideal bound; four would give 1.37x
# but double the synapse rows, which pad each source to its busiest PE).
GROUPS_PER_PE = 2


def position_classes(cout: int, P: int) -> tuple[int, int]:
    """(ry, rx), powers of two: position classes per channel so that channels x classes
    give every PE at least GROUPS_PER_PE groups."""
    r = -(-GROUPS_PER_PE * P // cout)
    e = int(np.ceil(np.log2(r))) if r > 1 else 0
    return 1 << (e // 2), 1 << (e - e // 2)


def place_groups(cout: int, classes: int, P: int) -> tuple[np.ndarray, np.ndarray]:
    """PE and rank (local group index on that PE) of every conv group
    ``g = o + cout * class``.  Class k of channel o goes to PE ``(o + k * P / classes) mod P``:
    each class's channels start a different stretch of PEs, so a PE holding several groups
    holds different channels, whose uneven synapse counts then average out.  Ranks number
    a PE's groups in order of g."""
    o, k = np.meshgrid(np.arange(cout), np.arange(classes), indexing="xy")
    pe = ((o + k * max(1, P // classes)) % P).reshape(-1)          # g = o + cout * k order
    g = np.arange(cout * classes)
    rank = np.zeros_like(g)
    for p in range(P):
        on = g[pe == p]
        rank[on] = np.arange(len(on))
    return pe, rank


def _check(g: Graph, P: int) -> None:
    if isinstance(P, bool) or not isinstance(P, int) or not 1 <= P <= MAX_PES:
        raise UsageError(f"number of PEs must be an integer in [1, {MAX_PES}], got {P!r}")
    prev = None
    for i, l in enumerate(g.layers):
        if l.kind == "conv" and not _is_pow2(l.stride):
            raise UnsupportedError(f"layer {l.name!r}: stride {l.stride}; the accelerator takes power-of-two strides")
        if l.kind == "pool":
            if not _is_pow2(l.kernel):
                raise UnsupportedError(f"layer {l.name!r}: pool kernel {l.kernel}; the accelerator takes "
                              "power-of-two pool kernels")
            if prev is None or prev.kind != "conv":
                raise UnsupportedError(f"layer {l.name!r}: a pool must follow a conv layer (it OR-merges that "
                              f"layer's spikes), it follows {prev.name if prev else 'the input'!r}")
        prev = l if l.kind != "flatten" else prev


def word_bits(g: Graph) -> int:
    """W: candidate synapses per stored word, the largest kernel (k*k) of a conv layer; 8
    consecutive slots for a graph without conv layers."""
    return max([l.kernel * l.kernel for l in g.layers if l.kind == "conv"] + [8])


def magnitude_bits(g: Graph) -> int:
    """Bits of ``|weight| - 1`` that a synapse word stores per synapse: 0 when every weight is
    -1, 0 or +1 (binary designs store signs only), else enough for the largest magnitude of
    any layer (a PE adds ``value * |weight|``, `lane/pe.py`)."""
    top = max([int(np.abs(g.tensor(l, "weight")).max(initial=0)) for l in g.layers if l.has_weights] + [1])
    return (top - 1).bit_length()


def map_graph(g: Graph, P: int, dense: bool = False) -> Program:
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    _check(g, P)
    W, mb = word_bits(g), magnitude_bits(g)
    layers, dicts = [], {}
    for l in g.layers:
        if l.kind == "conv":
            lp = _map_conv(g, l, P, dense)
            k, pad = l.kernel, l.padding
            dicts[l.name] = _word_dicts(lp, P, lambda lane: (lane[3], (pad - lane[4]) * k + pad - lane[5]), mb)
        elif l.kind in ("linear", "output"):
            lp = _map_linear(g, l, P, dense)
            dicts[l.name] = _word_dicts(lp, P, lambda lane: divmod(lane[3], W), mb)
        else:
            lp = LayerProgram(l.name, l.kind, l)
        layers.append(lp)
    implicit = _implicit_addresses(list(dicts.values()), W, dense, mb)
    for lp in layers:
        if lp.name in dicts:
            _words(lp, P, dicts[lp.name], implicit)
    uniform = _uniform_rows([lp for lp in layers if lp.name in dicts])
    rows = sum(len(lp.lanes) for lp in layers if lp.lanes is not None)
    if rows > MAX_ROWS:
        raise UnsupportedError(f"the synapse store needs {rows} rows, over the limit of {MAX_ROWS}; use more PEs "
                      "or a sparser ticket")
    for lp in layers:
        if lp.slots and lp.update_cycles > MAX_SLOTS_PER_PE:
            raise UnsupportedError(f"layer {lp.name!r}: {lp.update_cycles} neurons on one PE, over the limit of "
                          f"{MAX_SLOTS_PER_PE}; use more PEs")
    return Program(P, dense, layers, W, implicit, uniform, mb)


# Padding every PE's words of a source to the source's word rows may cost at most this
# share of the PEs' walk cycles (counted per source, unweighted by event rates)
UNIFORM_ROWS_MAX_COST = 0.01


def _uniform_rows(lps: list[LayerProgram]) -> bool:
    """Pad every PE's words of each source to the source's word rows (empty words, one
    cycle each) when that costs at most UNIFORM_ROWS_MAX_COST of the walk cycles: the
    row pointer then stores one count per source instead of one per PE (vgg9_binw at
    P = 16: 76 -> 16 bits, 9 -> 2 block RAMs, and no cycle, as every PE's conv groups
    already fill every row).  Updates word_counts and hole_counts in place."""
    walk = extra = 0
    for lp in lps:
        rows = np.maximum(lp.word_ptr[:, 1:2], 1)
        now = np.maximum(lp.walk_counts, 1)
        walk += int(now.sum())
        extra += int(np.maximum(rows - np.maximum(lp.word_counts, 1), 0).sum())
    if not lps or extra > UNIFORM_ROWS_MAX_COST * walk:
        return False
    for lp in lps:
        rows = lp.word_ptr[:, 1:2]
        lp.hole_counts = lp.hole_counts + (rows - lp.word_counts)
        lp.word_counts = np.broadcast_to(rows, lp.word_counts.shape).copy()
    return True


def _word_dicts(lp: LayerProgram, P: int, place, mag_bits: int) -> list[list[dict[int, list[int]]]]:
    """Per source, per PE: word address -> word (WORD_FIELDS) of the PE's lanes;
    ``place(lane)`` gives a lane's (word address, bit)."""
    out = []
    for start, n in lp.rowptr:
        per_pe = []
        for p in range(P):
            wd: dict[int, list[int]] = {}
            for lane in lp.lanes[start:start + n, p]:
                if not lane[0]:
                    continue
                a, b = (int(v) for v in place(lane))
                w = wd.setdefault(a, [a, 0, 0, 0, 0])
                w[1] |= 1 << b
                w[2] |= int(lane[1]) << b
                w[3] |= int(lane[2]) << b
                w[4] |= max(int(lane[6]) - 1, 0) << (b * mag_bits)
            per_pe.append(wd)
        out.append(per_pe)
    return out


def _implicit_addresses(layer_dicts: list, W: int, dense: bool, mag_bits: int = 0) -> bool:
    """Implicit word addresses when storing the holes as empty words costs fewer bits than
    storing an address in every word (a hole costs its PE one cycle per event)."""
    stats = [_word_stats(d) for d in layer_dicts]
    rows, filled = sum(s[0] for s in stats), sum(s[1] for s in stats)
    abits = max(1, max((s[2] for s in stats), default=0).bit_length())
    wbits = (3 if dense else 2) * W + mag_bits * W
    return filled * wbits < rows * (wbits + abits)


def _word_stats(dicts) -> tuple[int, int, int]:
    """(word rows, word rows with the holes filled, largest address) of a layer's words."""
    rows = sum(max((len(wd) for wd in per_pe), default=0) for per_pe in dicts)
    filled = sum(max((max(wd) + 1 if wd else 0 for wd in per_pe), default=0) for per_pe in dicts)
    amax = max((a for per_pe in dicts for wd in per_pe for a in wd), default=0)
    return rows, filled, amax


def _words(lp: LayerProgram, P: int, dicts, implicit: bool) -> None:
    """Pack each source's per-PE words into rows (see the module docstring).  With
    ``implicit`` addresses a PE's j-th word of a source is its word address j: a missing
    address below the PE's last one (a *hole*) is stored as an empty word."""
    rows, ptr, counts, holes = [], [], [], []
    for per_pe_d in dicts:
        per_pe, hole = [], []
        for wd in per_pe_d:
            if implicit and wd:
                per_pe.append([wd.get(a, [a, 0, 0, 0, 0]) for a in range(max(wd) + 1)])
                hole.append(max(wd) + 1 - len(wd))
            else:
                per_pe.append([wd[a] for a in sorted(wd)])
                hole.append(0)
        holes.append(hole)
        r = max((len(x) for x in per_pe), default=0)
        block = np.zeros((r, P, len(WORD_FIELDS)), np.int64)
        for p, lst in enumerate(per_pe):
            for j, w in enumerate(lst):
                block[j, p] = w
        ptr.append((sum(len(x) for x in rows), r))
        counts.append([len(x) for x in per_pe])
        rows.append(block)
    lp.words = np.concatenate(rows) if rows else np.zeros((0, P, len(WORD_FIELDS)), np.int64)
    lp.word_ptr = np.array(ptr, np.int64).reshape(-1, 2)
    lp.word_counts = np.array(counts, np.int64).reshape(-1, P)
    lp.hole_counts = np.array(holes, np.int64).reshape(-1, P)


def _pack(per_pe: list[list[tuple]], P: int):
    """Per-PE lane lists of one source -> rows [R, P, 7]; R = the longest list."""
    r = max((len(x) for x in per_pe), default=0)
    rows = np.zeros((r, P, len(LANE_FIELDS)), np.int64)
    for p, lst in enumerate(per_pe):
        for j, lane in enumerate(lst):
            rows[j, p] = lane
    return rows


def _finish(lp: LayerProgram, sources: list[np.ndarray], P: int) -> LayerProgram:
    counts = np.array([len(s) for s in sources], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    lp.rowptr = np.stack([starts, counts], 1)
    lp.lanes = np.concatenate(sources) if counts.sum() else np.zeros((0, P, len(LANE_FIELDS)), np.int64)
    return lp


def kept_synapses(g: Graph, l: Layer) -> np.ndarray:
    """The synapses that add something: kept by the mask and with a non-zero integer weight
    (a multi-bit ticket's small weights can quantize to 0; the golden model adds w * x)."""
    return g.tensor(l, "mask").astype(bool) & (g.tensor(l, "weight") != 0)


def _map_linear(g: Graph, l: Layer, P: int, dense: bool) -> LayerProgram:
    w = g.tensor(l, "weight")
    kept = kept_synapses(g, l)
    cout, cin = w.shape
    if l.kind == "linear":
        live = np.ones(cout, bool) if dense else g.tensor(l, "neuron_mask").astype(bool)
        keep = g.tensor(l, "neuron_mask").astype(np.int64)
    else:
        live = np.ones(cout, bool)
        keep = np.ones(cout, np.int64)
    units = np.flatnonzero(live)                 # live index j -> unit
    lp = LayerProgram(l.name, l.kind, l)
    if l.kind == "linear":
        lp.slots = [np.array([[keep[o], o, 0, 0] for o in units[p::P]], np.int64).reshape(-1, 4)
                    for p in range(P)]
    sources = []
    for i in range(cin):
        per_pe: list[list[tuple]] = [[] for _ in range(P)]
        for j, o in enumerate(units):
            if kept[o, i] or dense:
                per_pe[j % P].append((1, int(w[o, i] < 0), int(not kept[o, i]), j // P, 0, 0, abs(int(w[o, i]))))
        sources.append(_pack(per_pe, P))
    return _finish(lp, sources, P)


def _map_conv(g: Graph, l: Layer, P: int, dense: bool) -> LayerProgram:
    w = g.tensor(l, "weight")
    kept = kept_synapses(g, l)
    keep = g.tensor(l, "neuron_mask").astype(np.int64)
    live = np.ones_like(keep, bool) if dense else keep.astype(bool)
    cout, cin, k, _ = w.shape
    _, ho, wo = l.out_shape
    s, pad = l.stride, l.padding
    ry, rx = position_classes(cout, P)
    gw, gh = -(-wo // rx), -(-ho // ry)
    gs = gw * gh
    g_pe, g_rank = place_groups(cout, ry * rx, P)
    lp = LayerProgram(l.name, l.kind, l, group_pe=g_pe, ry=ry, rx=rx, gw=gw, gs=gs)
    # local index of every neuron on its PE
    oo, yy, xx = np.meshgrid(np.arange(cout), np.arange(ho), np.arange(wo), indexing="ij")
    grp = oo + cout * ((yy % ry) * rx + xx % rx)
    pe = g_pe[grp]
    local = g_rank[grp] * gs + (yy // ry) * gw + xx // rx
    for p in range(P):
        depth = int((g_pe == p).sum()) * gs
        sel = (pe == p) & live
        order = np.argsort(local[sel], kind="stable")
        lut = np.full(depth, -1, np.int64)
        lut[local[sel][order]] = np.arange(int(sel.sum()))
        lp.lookup.append(lut)
        lp.slots.append(np.stack([keep[sel][order], oo[sel][order], yy[sel][order], xx[sel][order]], 1)
                        .astype(np.int64).reshape(-1, 4))
    sources = []
    my, mx = s * ry, s * rx
    for c in range(cin):
        for cy in range(my):
            for cx in range(mx):
                per_pe: list[list[tuple]] = [[] for _ in range(P)]
                for ky in range(k):
                    ty = cy + pad - ky                      # = s * (target y) mod s*ry
                    if ty % s:
                        continue
                    for kx in range(k):
                        tx = cx + pad - kx
                        if tx % s:
                            continue
                        py, px = (ty // s) % ry, (tx // s) % rx
                        for o in range(cout):
                            if not (kept[o, c, ky, kx] or dense):
                                continue
                            gg = o + cout * (py * rx + px)
                            per_pe[g_pe[gg]].append((1, int(w[o, c, ky, kx] < 0), int(not kept[o, c, ky, kx]),
                                                     g_rank[gg], pad - ky, pad - kx, abs(int(w[o, c, ky, kx]))))
                sources.append(_pack(per_pe, P))
    return _finish(lp, sources, P)
