"""A stage's record (the file `hw` reads to decide whether the stage is up to date) is removed
before the stage rewrites its outputs and written last, whole: a run killed in between
leaves no record, so the next run redoes the stage instead of trusting half of it."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["clear_record", "write_record"]


def clear_record(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def write_record(path: Path, data: dict, indent: int = 1) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)
