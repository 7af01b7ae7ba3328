"""The files of earlier stages that a stage reads: the sim, synth and hls stages record
their digests in their results, and the report checks them (``ticketforge.flow`` keys
every stage on these, its settings, code and tools)."""
from __future__ import annotations

from pathlib import Path

from ticketforge.flow import file_digests

__all__ = ["digests", "sim_inputs", "synth_inputs", "hls_inputs"]


def digests(inputs: dict[str, Path]) -> dict[str, str]:
    """sha256 of each input file that exists (what the results record)."""
    return {k: v for k, v in file_digests(inputs).items() if v != "missing"}


def sim_inputs(root: Path) -> dict[str, Path]:
    """What a sim result depends on (recorded by `sim`, compared by `hw`)."""
    return {"top.v": root / "rtl" / "top.v", "graph.json": root / "ir" / "graph.json",
            "test_inputs.npz": root / "ir" / "test_inputs.npz"}


def synth_inputs(root: Path) -> dict[str, Path]:
    return {"core.il": root / "rtl" / "core.il", "synth_top.v": root / "rtl" / "synth_top.v"}


def hls_inputs(root: Path) -> dict[str, Path]:
    """What an HLS result depends on (recorded by `hls`, checked by the report)."""
    return {"graph.json": root / "ir" / "graph.json", "tensors.npz": root / "ir" / "tensors.npz",
            "test_inputs.npz": root / "ir" / "test_inputs.npz"}
