"""Deploy stage: synthesis of the generated accelerator for edge boards (open yosys flow),
and the host side of the board link.

- `boards`: the board table (device, package, capacities);
- `synth`: yosys synthesis, resource counts by cell class, the fit check;
- `board_top` / `board_build`: the UART board design around the core, placed and routed;
- `host`: the host driver (images over the serial port, checked against the golden model);
- `energy` / `report`: the event-energy estimate and the report.
"""
__all__ = ["boards", "synth", "board_top", "board_build", "host", "energy", "report"]
