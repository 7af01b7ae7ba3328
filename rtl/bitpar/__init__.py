"""The bit-parallel, layer-major accelerator (``bitpar``): many kept synapses per lane and
cycle, membranes in registers, one layer over all T before the next.

- `plan`: the static mapping of an IR onto L lanes (steps, weight words, bitmaps);
- `cycles`: the exact cycle and status-counter model;
- `lanes`: the popcount-accumulate lanes (`LaneArray`);
- `accel`: the accelerator (`BitparAccelerator`), the same outside as `rtl.accel.Accelerator`.
"""
__all__ = ["plan", "cycles", "lanes", "accel"]
