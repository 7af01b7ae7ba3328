"""The accelerator's datapaths, one name each, behind one set of calls: the flow (rtl, sim,
report, board) asks for "the accelerator of this IR with these parameters" and its cycle
model, and never imports a datapath's modules itself.

- ``lane``: event driven, one kept synapse per PE per cycle, membranes in block RAM, every
  layer once per timestep (`rtl.accel`, `rtl.cycles`); ``pes`` PEs;
- ``bitpar``: bit-parallel and layer-major, a 32-synapse word per lane and timestep per
  cycle, membranes in registers, a layer over all T before the next (`rtl.bitpar`);
  ``pes`` is its lane count (1-32);
- ``rowstream``: fully connected networks only; per input event one weight row of ``pes``
  lanes a cycle, membranes in registers, a layer over all T before the next
  (`rtl.rowstream`).
"""
from __future__ import annotations

import numpy as np

from ticketforge.ir.chain import chain_form
from ticketforge.errors import UnsupportedError, UsageError
from ticketforge.ir.schema import Graph

__all__ = ["DATAPATHS", "check_datapath", "check_input", "accelerator", "cycle_model", "load_cycles", "counter_names",
           "status_layers"]

DATAPATHS = ("lane", "bitpar", "rowstream")


def check_datapath(name: str) -> str:
    if name not in DATAPATHS:
        raise UsageError(f"datapath must be one of {', '.join(DATAPATHS)}, got {name!r}")
    return name


def check_input(g: Graph, datapath: str = "lane", dense: bool = False) -> None:
    """The lane and bitpar datapaths take pixel images (the IR's ``direct`` input encoding) and
    an ``events`` input as an AER stream (`rtl.aer`); the lane datapath has no dense design of
    the latter.  The rowstream datapath takes pixels only."""
    if not g.input.events:
        return
    if check_datapath(datapath) == "rowstream":
        raise UnsupportedError("the rowstream datapath takes pixel images (the IR's 'direct' input); this IR's "
                               "input is events: use the lane or bitpar datapath")
    if dense and datapath == "lane":
        raise UnsupportedError("the IR's input is 'events': the AER stream carries only the events, so there is "
                               "no dense (no-skipping) design of it; the report's dense figure is the cycle "
                               "model's (every input position an event)")


def accelerator(g: Graph, pes: int, datapath: str = "lane", dense: bool = False, trace: bool = False,
                memory_style: str = "auto", fifo_depth: int | None = None, weights: str = "baked",
                capacity: dict | None = None):
    """The Amaranth component of the IR ``g`` on the named datapath; ``weights`` "baked"
    (memory initial values) or "runtime" (loaded through the core's ``load`` port).
    ``capacity``: the rtl manifest's ``capacity`` record of a runtime-weights bitpar design
    that ``g`` must run on (the same netlist for every ticket that fits it)."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    if check_datapath(datapath) == "rowstream":
        if capacity is not None:
            raise UnsupportedError("a bitstream capacity (fitting a ticket onto another ticket's design) is a "
                                   "property of the bitpar datapath's runtime-weights designs")
        from ticketforge.rtl.rowstream.accel import RowstreamAccelerator

        return RowstreamAccelerator(g, pes, trace=trace, memory_style=memory_style, dense=dense, weights=weights)
    if datapath == "bitpar":
        from ticketforge.rtl.bitpar.accel import BitparAccelerator
        from ticketforge.rtl.bitpar.capacity import BitparCapacity

        cap = BitparCapacity.from_json(capacity) if capacity is not None else None
        return BitparAccelerator(g, pes, trace=trace, memory_style=memory_style, dense=dense, weights=weights,
                                 capacity=cap)
    if capacity is not None:
        raise UnsupportedError("a bitstream capacity (fitting a ticket onto another ticket's design) is a "
                               "property of the bitpar datapath's runtime-weights designs; the lane datapath's "
                               "runtime design is its own ticket's")
    from ticketforge.rtl.accel import Accelerator

    return Accelerator(g, pes, dense=dense, trace=trace, memory_style=memory_style, fifo_depth=fifo_depth,
                       weights=weights)


def cycle_model(g: Graph, images: np.ndarray, pes: int, datapath: str = "lane", dense: bool = False, gold=None,
                fifo_depth: int | None = None, prog=None, weights: str = "baked"):
    """The exact cycles and status counters of each image on the named datapath (``weights``:
    the design's, which the bitpar schedule depends on: runtime designs read every neuron
    layer's keep words)."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    check_input(g, datapath)
    if datapath == "rowstream":
        from ticketforge.rtl.rowstream.cycles import cycle_model as rowstream_model
        from ticketforge.rtl.rowstream.plan import plan_graph as rowstream_plan

        return rowstream_model(rowstream_plan(g, pes, dense), images, gold)
    if check_datapath(datapath) == "bitpar":
        from ticketforge.rtl.bitpar.cycles import cycle_model as bitpar_model
        from ticketforge.rtl.bitpar.plan import plan_graph

        return bitpar_model(plan_graph(g, pes, dense, keep_all=weights == "runtime"), images, gold)
    from ticketforge.rtl.cycles import cycle_model as lane_model

    return lane_model(g, images, pes, dense=dense, gold=gold, prog=prog, fifo_depth=fifo_depth)


def load_cycles(g: Graph, images: np.ndarray, pes: int, datapath: str = "lane", dense: bool = False) -> np.ndarray:
    """Per image, the cycles its input takes on the named datapath (part of `cycle_model`'s
    total): the one term an ``events`` input makes depend on the data."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    if check_datapath(datapath) == "rowstream":
        from ticketforge.rtl.rowstream.cycles import load_cycles as rowstream_load
        from ticketforge.rtl.rowstream.plan import plan_graph as rowstream_plan

        return rowstream_load(rowstream_plan(g, pes, dense), images)
    if datapath == "bitpar":
        from ticketforge.rtl.bitpar.cycles import load_cycles as bitpar_load
        from ticketforge.rtl.bitpar.plan import plan_graph

        return bitpar_load(plan_graph(g, pes, dense), images)
    from ticketforge.rtl.cycles import load_cycles as lane_load

    return lane_load(g, images, dense)


def counter_names(datapath: str = "lane") -> tuple[str, ...]:
    """The status block's counters per layer, in address order."""
    if check_datapath(datapath) == "rowstream":
        from ticketforge.rtl.rowstream.cycles import COUNTERS
    elif datapath == "bitpar":
        from ticketforge.rtl.bitpar.cycles import COUNTERS
    else:
        from ticketforge.rtl.cycles import COUNTERS
    return COUNTERS


def status_layers(g: Graph, datapath: str = "lane") -> list[str]:
    """The layers the status block (and the cycle model's per-layer figures) covers."""
    g = chain_form(g)      # a residual IR runs as its chain form (ir/chain.py)
    if check_datapath(datapath) in ("bitpar", "rowstream"):
        return [l.name for l in g.layers if l.has_weights]
    return [l.name for l in g.layers if l.kind != "flatten"]
