"""What a stage's result depends on, and whether the result on disk is still fresh: each stage
records its input digests and parameters; `ticketforge hw` compares them to keep a stage."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["digests", "stage_fresh", "quantize_fresh", "sim_inputs", "synth_inputs", "hls_inputs"]


def digests(inputs: dict[str, Path]) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in inputs.items() if p.is_file()}


def stage_fresh(folder: Path, inputs: dict[str, Path], record: str = "manifest.json", expect: dict | None = None,
                outputs: tuple[str, ...] = ()) -> bool:
    """A stage is kept when its record holds the same input digests as now, the ``expect``ed
    fields (parameters, generator digest) and its ``outputs`` files exist."""
    man = folder / record
    if not man.is_file() or not all((folder / f).is_file() for f in outputs):
        return False
    rec = json.loads(man.read_text())
    now = digests(inputs)
    return bool(now) and rec.get("inputs", {}) == now and all(rec.get(k) == v for k, v in (expect or {}).items())


def quantize_fresh(irdir: Path, tdir: Path, precision_bits: int, data_dir: str | None) -> bool:
    """The quantize stage's IR is kept when it was made from this ticket, with these
    parameters, by this lowering code (``model.quantize.lowering_digest``)."""
    from ticketforge.model.quantize import lowering_digest

    return stage_fresh(irdir, {"model.pt": tdir / "model.pt", "ticket.json": tdir / "ticket.json"},
                       expect={"params": {"precision_bits": precision_bits, "data_dir": data_dir},
                               "code": lowering_digest()},
                       outputs=("test_inputs.npz",))


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
