"""The lane accelerator's blocks, each an Amaranth ``wiring.Component`` built from one
`plan.LanePlan` and joined by `rtl/accel.py`:

- `plan`: layouts, widths, memory bases, the memory inventory and contents;
- `loader`: the pixel stream into the input event queue;
- `reader`: a layer's source queue -> row pointers -> every PE's event FIFO;
- `pe`: the PEs (row stream, accumulate, neuron update) and the PE array;
- `pool`: the OR-pool and its queue;
- `schedule`: the state machine of one image;
- `status`: the cycle count and the per-layer event counters.
"""
__all__ = ["plan", "loader", "reader", "pe", "pool", "schedule", "status"]
