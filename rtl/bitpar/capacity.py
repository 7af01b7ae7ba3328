"""What a bitpar design with runtime weights can hold: its *capacity*.

With ``hw.weights = "runtime"`` the bitstream is generated from the ticket's architecture,
not from its weights, so that any ticket of that architecture runs on it with only the
weights reloaded (the load image, `rtl.load_image`).  The architecture is everything the
logic depends on:

- the input (shape, pixel bits, encoding), T, the lane count;
- every layer's kind, shapes, kernel, stride, padding, input shift and neuron
  configuration (leak, reset, membrane width: the update logic is built per
  configuration).

The memories are sized by the *dense* plan of that architecture (every kernel tap and
32-channel word a step, every neuron a keep bit), so a ticket's pruning never makes it
larger than the bitstream.  The widths come from bounds that hold for any ticket: the
accumulators from the dense fan-in, the membranes and the per-channel parameters from the
layers' membrane widths (a threshold or bias of the IR lies inside its membrane's range:
`ir.passes.size_membranes`).

`fit_problems` names what keeps a ticket off a bitstream and by how much; `ticketforge
quantize --fit-to` lowers a ticket with the bitstream's membrane widths, the one part of the
architecture that the quantizer measures per ticket.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ticketforge.errors import UnsupportedError
from ticketforge.ir.schema import Graph
from ticketforge.rtl.bitpar.plan import WORD, plan_graph
from ticketforge.rtl.lane.plan import sbits, ubits

__all__ = ["BitparCapacity", "architecture_of", "capacity_of", "fit_problems", "check_fit"]


def architecture_of(g: Graph, lanes: int) -> dict:
    """The part of an IR that the logic of a runtime-weights design depends on (JSON-able)."""
    layers = []
    for l in g.layers:
        layers.append({"name": l.name, "kind": l.kind, "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
                       "kernel": l.kernel, "stride": l.stride, "padding": l.padding, "weight_bits": l.weight_bits,
                       "input_shift": l.input_shift,
                       "neuron": dataclasses.asdict(l.neuron) if l.neuron is not None else None})
    return {"lanes": lanes, "T": g.T, "score": g.score,
            "input": {"shape": list(g.input.shape), "bits": g.input.bits, "encoding": g.input.encoding},
            "layers": layers}


def _dense_fan_in(l) -> int:
    """Synapses into one neuron of weighted layer ``l`` when none is pruned."""
    if l.kind == "conv":
        return l.in_shape[0] * l.kernel * l.kernel
    return math.prod(l.in_shape)


def _membrane_bound(l, max_in: int) -> tuple[int, int]:
    """`rtl.lane.plan.u_range` for any ticket of the layer's architecture: the bias and
    threshold anywhere in the membrane's range, every synapse kept."""
    n = l.neuron
    span = max_in * _dense_fan_in(l) << l.input_shift
    vhi = n.vmax - (n.vmin if n.reset == "soft" else 0)
    return min(n.vmin, 0) + n.vmin - span, max(vhi, 0) + n.vmax + span


@dataclass(frozen=True)
class BitparCapacity:
    """The sizes of a runtime-weights bitpar design (`capacity_of`); recorded in the rtl
    manifest (``capacity``) so that another ticket can be checked against the bitstream."""
    architecture: dict
    rows: tuple[int, ...]          # per weighted layer: the step rows its groups may hold
    group_rows: int                # the most rows of one group
    off_bits: int                  # step row fields
    d_bits: int
    acc_bits: int                  # accumulator, membrane and score widths
    u_bits: int
    score_bits: int

    @property
    def lanes(self) -> int:
        return int(self.architecture["lanes"])

    @property
    def row_bases(self) -> list[int]:
        """Each weighted layer's first step row in the step memories."""
        out, at = [], 0
        for r in self.rows:
            out.append(at)
            at += r
        return out

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"rows": list(self.rows)}

    @classmethod
    def from_json(cls, d: dict) -> "BitparCapacity":
        try:
            return cls(architecture=d["architecture"], rows=tuple(int(r) for r in d["rows"]),
                       **{k: int(d[k]) for k in ("group_rows", "off_bits", "d_bits", "acc_bits", "u_bits",
                                                 "score_bits")})
        except (KeyError, TypeError, ValueError) as e:
            raise UnsupportedError(f"not a bitpar capacity record ({type(e).__name__}: {e}); regenerate the "
                                   "bitstream's rtl stage with hw.weights = \"runtime\"") from None


def _needs(g: Graph, lanes: int, plan=None) -> dict:
    """What the ticket ``g`` needs of a design: its rows per layer and field widths (from
    ``plan``, its runtime plan, when the caller has it)."""
    plan = plan if plan is not None else plan_graph(g, lanes, keep_all=True)
    rows = [r for lp in plan.layers for s in lp.steps for r in s]
    offs = [r.off for r in rows] + [0]
    dd = [abs(r.dy) for r in rows] + [abs(r.dx) for r in rows] + [0]
    return {"rows": [sum(len(s) for s in lp.steps) for lp in plan.layers],
            "group_rows": max([len(s) for lp in plan.layers for s in lp.steps] + [1]),
            "off_bits": sbits(min(offs), max(offs)), "d_bits": ubits(max(dd)) + 1}


def capacity_of(g: Graph, lanes: int) -> BitparCapacity:
    """The capacity of the runtime-weights design for ``g``'s architecture: its dense plan's
    rows, and widths that hold for every ticket of the architecture."""
    tensors = dict(g.tensors)
    for l in g.layers:                  # every synapse kept, every magnitude bit set: the dense plan
        if l.has_weights:               # stores every word and every weight bit's row
            w = g.tensor(l, "weight")
            tensors[l.tensors["weight"]] = np.full_like(w, (1 << (l.weight_bits - 1)) - 1)
        if l.neuron is not None:
            nm = g.tensor(l, "neuron_mask")
            tensors[l.tensors["neuron_mask"]] = np.ones_like(nm)
    dense = g.with_layers(g.layers, tensors)
    need = _needs(dense, lanes)
    max_in = (1 << g.input.bits) - 1
    acc, u = [WORD.bit_length() + 2, g.input.bits + 2], []
    score_bits = 2
    weighted = [l for l in g.layers if l.has_weights]
    for i, l in enumerate(weighted):
        value = (max_in if i == 0 else 1) * ((1 << (l.weight_bits - 1)) - 1)     # the largest |input x w|
        top = _dense_fan_in(l) * value
        acc.append(sbits(-top, top))
        if l.kind == "output":
            score_bits = sbits(-top * g.T, top * g.T)
        else:
            u.append(max(l.neuron.membrane_bits + 1, sbits(*_membrane_bound(l, value))))
    return BitparCapacity(architecture_of(g, lanes), tuple(need["rows"]), need["group_rows"], need["off_bits"],
                          need["d_bits"], max(acc), max(u + [2]), score_bits)


def _arch_differences(want: dict, have: dict) -> list[str]:
    out = []
    for key in ("lanes", "T", "score", "input"):
        if want[key] != have[key]:
            out.append(f"{key}: the ticket has {want[key]!r}, the bitstream {have[key]!r}")
    wl, hl = want["layers"], have["layers"]
    if [l["name"] for l in wl] != [l["name"] for l in hl]:
        out.append(f"layers: the ticket has {[l['name'] for l in wl]}, the bitstream {[l['name'] for l in hl]}")
        return out
    for a, b in zip(wl, hl):
        for key in a:
            if key == "neuron" and a[key] and b[key]:
                for nk in a[key]:
                    if a[key][nk] != b[key][nk]:
                        over = (f" (over by {a[key][nk] - b[key][nk]} bits; `ticketforge quantize --fit-to` "
                                "lowers a ticket with the bitstream's widths where it can)"
                                if nk == "membrane_bits" and a[key][nk] > b[key][nk] else "")
                        out.append(f"layer {a['name']!r}: neuron {nk} {a[key][nk]!r}, the bitstream's "
                                   f"{b[key][nk]!r}{over}")
            elif a[key] != b[key]:
                out.append(f"layer {a['name']!r}: {key} {a[key]!r}, the bitstream's {b[key]!r}")
    return out


def fit_problems(cap: BitparCapacity, g: Graph, plan=None) -> list[str]:
    """Why the ticket ``g`` does not run on the design of capacity ``cap`` (empty: it fits);
    ``plan``: ``g``'s runtime plan (`plan_graph` with ``keep_all``), if already made."""
    problems = _arch_differences(architecture_of(g, cap.lanes), cap.architecture)
    if problems:
        return problems
    need = _needs(g, cap.lanes, plan)
    names = [l.name for l in g.layers if l.has_weights]
    for name, n, have in zip(names, need["rows"], cap.rows):
        if n > have:
            out = f"layer {name!r}: {n} step rows, the bitstream holds {have} (over by {n - have})"
            problems.append(out)
    for key in ("group_rows", "off_bits", "d_bits"):
        if need[key] > getattr(cap, key):
            problems.append(f"{key}: the ticket needs {need[key]}, the bitstream has {getattr(cap, key)} "
                            f"(over by {need[key] - getattr(cap, key)})")
    return problems


def check_fit(cap: BitparCapacity, g: Graph, where: str = "the bitstream", plan=None) -> None:
    """Raise UnsupportedError naming every reason ``g`` does not fit ``cap``."""
    problems = fit_problems(cap, g, plan)
    if problems:
        raise UnsupportedError(f"this ticket does not fit {where}: " + "; ".join(problems))
