"""Deploy stage: synthesis of the generated accelerator for edge boards (open yosys flow).

- `boards`: the board table (device, package, capacities);
- `synth`: yosys synthesis, resource counts by cell class, the fit check.
"""
__all__ = ["boards", "synth"]
