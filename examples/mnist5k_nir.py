"""What the framework examples share: mnist5k as float tensors, and a NIR file written whole
(to a temporary name, then renamed), so a stopped run never leaves half a file for
`ticketforge import` to read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["mnist5k_tensors", "write_nir"]


def mnist5k_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Train images, train labels, test images (pixel / pixel_max, [N, 1, 28, 28]) and test labels."""
    from ticketforge.model.data import load_dataset

    ds = load_dataset("mnist5k")
    xtr = torch.from_numpy(ds.train.images.astype(np.float32) / ds.pixel_max)
    ytr = torch.from_numpy(ds.train.labels.astype(np.int64))
    xte = torch.from_numpy(ds.test.images.astype(np.float32) / ds.pixel_max)
    return xtr, ytr, xte, ds.test.labels


def write_nir(graph, out: str | Path) -> Path:
    import nir

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    nir.write(str(tmp), graph)
    tmp.replace(out)
    return out
