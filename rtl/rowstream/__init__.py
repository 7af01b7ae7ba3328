"""The row-streaming accelerator (``rowstream``) for fully connected spiking networks: per
input event, one weight row of L lanes a cycle; membranes in registers; one layer over all T
before the next.

- `plan`: the static mapping of an IR onto L lanes (weight rows, neuron parameters, widths);
- `cycles`: the exact cycle and status-counter model;
- `lanes`: the multiply-accumulate lanes (`MacLanes`);
- `accel`: the accelerator (`RowstreamAccelerator`), the same outside as `rtl.accel.Accelerator`.
"""
__all__ = ["plan", "cycles", "lanes", "accel"]
