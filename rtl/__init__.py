"""RTL stage: the event-driven, neuron-per-PE accelerator generated with Amaranth from an
integer IR.  Depends on the IR only, never on torch.

- `program`: the mapping of an IR onto P PEs (slots, compressed synapse rows, lookups);
- `cycles`: the exact cycle and status-counter model;
- `neuron`: the PE's integer LIF update datapath;
- `popcount_lane`: one lane of the bit-parallel datapath studied in docs/DATAPATH.md;
- `accel`: the lane accelerator (an Amaranth ``wiring.Component``);
- `bitpar`: the bit-parallel, layer-major accelerator (its plan, cycle model, lanes, top);
- `datapath`: one entry point to either (``hw.datapath``): accelerator, cycle model, counters;
- `simulate`: running it in Amaranth's simulator;
- `emit` / `lint`: ``build/<name>/rtl/top.v`` and the Verilator lint gate.
"""
__all__ = ["program", "cycles", "neuron", "popcount_lane", "accel", "bitpar", "datapath", "simulate", "emit", "lint"]
