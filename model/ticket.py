"""The ticket folder ``build/<name>/ticket/``: what the model stage hands to the next.

- ``model.pt``    the torch state dict (exact reload for ``ticketforge eval``);
- ``ticket.npz``  torch-free arrays per layer: ``<layer>.mask`` (uint8), ``<layer>.weight``
  (float32, the frozen random or trained weights), and for binary-weight tickets
  ``<layer>.sign`` (int8, +-1) and ``<layer>.alpha`` (float32); per neuron gate
  ``<gate>.neuron_mask`` (uint8, 0 = pruned neuron); per BatchNorm
  ``<bn>.running_mean/.running_var`` (and ``.weight/.bias`` when affine);
- ``ticket.json`` the run config, dataset facts, layer list, seed and library versions;
- ``metrics.json`` written by training (accuracy per epoch, firing rates, energy).
"""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketforge.errors import TicketError
from ticketforge.model.config import RunConfig, build_config, resolve_config_path
from ticketforge.model.layers import masked_layers
from ticketforge.model.zoo import TicketNet, build_model, neuron_gates

__all__ = ["save_ticket", "load_ticket", "ticket_dir_for", "TICKET_FILES", "BUILD_ROOT"]

BUILD_ROOT = Path("build")
TICKET_FILES = ("model.pt", "ticket.npz", "ticket.json")


def ticket_dir_for(name_or_path: str, build_root: Path = BUILD_ROOT) -> Path:
    """A ticket folder given as a path, or ``build/<config name>/ticket``."""
    p = Path(name_or_path)
    if (p / "ticket.json").is_file():
        return p
    if (p / "ticket" / "ticket.json").is_file():
        return p / "ticket"
    stem = resolve_config_path(name_or_path).stem if not p.is_dir() else p.name
    return build_root / stem / "ticket"


def _arrays(net: TicketNet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, m in masked_layers(net):
        mask = m.current_mask()
        out[f"{name}.mask"] = mask.numpy().astype(np.uint8)
        out[f"{name}.weight"] = m.weight.detach().numpy().astype(np.float32)
        if m.mode in ("binary", "score_bin"):
            out[f"{name}.sign"] = np.where(m.weight.detach().numpy() >= 0, 1, -1).astype(np.int8)
            out[f"{name}.alpha"] = np.float32(m.alpha().item())
    for name, gate in neuron_gates(net):
        out[f"{name}.neuron_mask"] = gate.mask.numpy().astype(np.uint8)
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[f"{name}.running_mean"] = m.running_mean.numpy().astype(np.float32)
            out[f"{name}.running_var"] = m.running_var.numpy().astype(np.float32)
            if m.affine:
                out[f"{name}.weight"] = m.weight.detach().numpy().astype(np.float32)
                out[f"{name}.bias"] = m.bias.detach().numpy().astype(np.float32)
    return out


def save_ticket(net: TicketNet, cfg: RunConfig, out_dir: Path, dataset_facts: dict,
                extra: dict | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out_dir / "model.pt")
    np.savez_compressed(out_dir / "ticket.npz", **_arrays(net))
    layers = []
    for name, m in masked_layers(net):
        mask = m.current_mask()
        layers.append({"name": name, "kind": "conv" if m.weight.dim() == 4 else "linear",
                       "shape": list(m.weight.shape), "mode": m.mode, "r_p": m.r_p,
                       "density": float(mask.mean())})
    meta = {
        "schema": "ticketforge.ticket", "version": 1,
        "config": cfg.to_dict(), "dataset": dataset_facts, "layers": layers,
        "finetuned": any(m.mode == "binary" for _, m in masked_layers(net)) and cfg.model.variant == "binw",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "model_sha256": hashlib.sha256((out_dir / "model.pt").read_bytes()).hexdigest(),
        **(extra or {}),
    }
    (out_dir / "ticket.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_ticket(ticket_dir: Path) -> tuple[TicketNet, RunConfig, dict]:
    """Rebuild the network of a ticket folder and load its exact state."""
    ticket_dir = Path(ticket_dir)
    missing = [f for f in TICKET_FILES if not (ticket_dir / f).is_file()]
    if missing:
        raise TicketError(f"{ticket_dir} is not a ticket folder (missing {', '.join(missing)}); "
                          f"make one with: ticketforge train --config <name>")
    meta = json.loads((ticket_dir / "ticket.json").read_text())
    raw = {k: v for k, v in meta["config"].items() if k != "name"}
    cfg = build_config(meta["config"]["name"], raw, {}, source=str(ticket_dir / "ticket.json"))
    ds = meta["dataset"]
    net = build_model(cfg.model, tuple(ds["input_shape"]), ds["num_classes"])
    if meta.get("finetuned"):
        for _, m in masked_layers(net):
            m.freeze_to_binary()
    state = torch.load(ticket_dir / "model.pt", map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise TicketError(f"{ticket_dir}/model.pt does not fit the network its ticket.json describes: {e}") from None
    return net, cfg, meta
