"""The hardware IR's data model: a :class:`Graph` of :class:`Layer` s plus named tensors.

The IR is the project's spine: everything after the model stage reads it, and
``docs/IR.md`` defines its integer semantics.  This module imports numpy only.

On disk an IR is a folder with ``graph.json`` (this structure, validated against
``graph.schema.json``) and ``tensors.npz`` (the arrays a layer's ``tensors`` map names).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["SCHEMA_ID", "SCHEMA_VERSION", "INPUT", "LAYER_KINDS", "NEURON_KINDS", "LEAK_KINDS", "RESETS",
           "INPUT_ENCODINGS", "InputSpec", "Neuron", "Layer", "Graph", "IRError"]

from ticketforge.errors import TicketforgeError

SCHEMA_ID = "ticketforge.ir"
SCHEMA_VERSION = 2
INPUT = "input"                          # the name by which a layer reads the graph's input
LAYER_KINDS = ("conv", "linear", "pool", "flatten", "output", "attention")
NEURON_KINDS = ("conv", "linear", "attention")        # layers that own LIF neurons
LEAK_KINDS = ("none", "shift", "fixed")
RESETS = ("hard", "soft")
INPUT_ENCODINGS = ("direct", "events")


class IRError(TicketforgeError, ValueError):
    """A malformed IR; the message names the layer and the field."""


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, int, int]          # C, H, W
    # "direct": the same integer image enters every timestep (inputs [N, C, H, W]);
    # "events": a binary frame per timestep, e.g. an event camera's ON/OFF events binned
    # into T windows as C = 2 channels (inputs [N, T, C, H, W], bits = pixel_max = 1)
    encoding: str = "direct"
    bits: int = 8                        # unsigned pixel codes 0 .. 2**bits - 1
    pixel_max: int = 255                 # the float model saw pixel / pixel_max

    @property
    def events(self) -> bool:
        return self.encoding == "events"


@dataclass(frozen=True)
class Neuron:
    """Integer LIF parameters shared by every neuron of a layer (per-channel values,
    bias and threshold, live in tensors)."""
    leak: str = "none"                   # none | shift | fixed
    leak_shift: int = 0                  # shift: V - (V >> leak_shift)
    leak_mult: int = 0                   # fixed: (V * leak_mult) >> leak_frac_bits
    leak_frac_bits: int = 0
    reset: str = "hard"                  # hard: V = 0 after a spike; soft: V -= threshold
    membrane_bits: int = 16              # signed width; H saturates to it

    @property
    def vmin(self) -> int:
        return -(1 << (self.membrane_bits - 1))

    @property
    def vmax(self) -> int:
        return (1 << (self.membrane_bits - 1)) - 1


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str                            # conv | linear | pool | flatten | output | attention
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int = 0                      # conv: square kernel; pool: window (= stride)
    stride: int = 1
    padding: int = 0
    weight_bits: int = 0                 # conv/linear/output: signed weight width (2 = {-1,0,+1})
    input_shift: int = 0                 # the accumulated input enters the membrane as acc << shift
    neuron: Neuron | None = None         # conv/linear only
    tensors: dict[str, str] = field(default_factory=dict)   # role -> key in tensors.npz
    # Float parameters of a not-yet-integerized layer (stage "float"/"folded" only; the
    # passes consume them): scale, v_threshold, lam, bn_eps.
    attrs: dict = field(default_factory=dict)
    # The layers whose outputs this one reads, by name (INPUT: the graph's input); empty
    # means the layer before it (a chain).  A conv/linear layer may name a second input, its
    # residual *skip* source: its own synapses (tensors skip_weight, skip_mask; a conv's
    # with skip_kernel/skip_stride/skip_padding) add into the same accumulator (docs/IR.md).
    inputs: tuple[str, ...] = ()
    skip_kernel: int = 0
    skip_stride: int = 1
    skip_padding: int = 0
    # attention: spiking self-attention over the token map of its three inputs (Q, K, V),
    # per head of C / heads channels (docs/IR.md)
    heads: int = 0

    @property
    def has_weights(self) -> bool:
        return self.kind in ("conv", "linear", "output")

    @property
    def has_skip(self) -> bool:
        return len(self.inputs) > 1 and self.kind != "attention"


@dataclass(frozen=True)
class Graph:
    T: int
    input: InputSpec
    layers: tuple[Layer, ...]
    tensors: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
    score: str = "membrane_sum"          # output scores = sum over t of the readout's accumulations
    provenance: dict = field(default_factory=dict, compare=False)
    schema: str = SCHEMA_ID
    version: int = SCHEMA_VERSION
    # "float" (lowered from torch), "folded" (BN folded), "integer" (what backends read);
    # only integer graphs are valid on disk.
    stage: str = "integer"

    def tensor(self, layer: Layer, role: str) -> np.ndarray:
        return self.tensors[layer.tensors[role]]

    def with_layers(self, layers, tensors=None) -> "Graph":
        return replace(self, layers=tuple(layers), tensors=dict(self.tensors if tensors is None else tensors))

    def sources(self) -> dict[str, tuple[str, ...]]:
        """Every layer's inputs by name, an empty ``inputs`` resolved to the layer before."""
        out, prev = {}, INPUT
        for l in self.layers:
            out[l.name] = tuple(l.inputs) or (prev,)
            prev = l.name
        return out

    @property
    def is_chain(self) -> bool:
        """Each layer reads only the one before it (what version 1 could say)."""
        prev = INPUT
        for l in self.layers:
            if tuple(l.inputs) not in ((), (prev,)):
                return False
            prev = l.name
        return True

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)
