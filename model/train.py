"""Training and ticket search, one loop for every variant.

- ``ann`` / ``snn`` / ``bnn``: weights are trained (``bnn`` through sign with a
  straight-through gradient, 0/1 activations).
- ``binw`` / ``slt``: the weights stay at their seeded random values; only the per-weight
  scores are trained and the per-layer top-(1 - r_p) mask follows them (BinW-SLT
  Algorithm 1; edge-popup for ``slt``).  Steps 8-10 of Algorithm 1 are one optimizer step
  of the scores followed by the mask/alpha recomputation that every forward pass does.
- ``train.finetune_from``: fine-tune a found binary ticket (masks frozen, binary weights
  trained): the paper's FT.

Deterministic for a seed on a given machine: the init and the batch order come from
seeded generators, and evaluation runs in a fixed order.
"""
from __future__ import annotations

from dataclasses import replace

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ticketforge.errors import ConfigError, TicketError
from ticketforge.model.config import RunConfig
from ticketforge.model.data import Dataset, Split, load_dataset
from ticketforge.model.energy import energy_report, measure_activity
from ticketforge.model.layers import masked_layers
from ticketforge.model.ticket import load_ticket, save_ticket, ticket_dir_for
from ticketforge.model.zoo import TicketNet, build_model
from ticketforge.records import clear_record, write_record

__all__ = ["train", "fit", "prepare", "write_ticket", "evaluate", "batches", "activity_and_energy"]


def _to_input(images: torch.Tensor, pixel_max: int) -> torch.Tensor:
    return images.float() / pixel_max


def batches(split: Split, batch_size: int, pixel_max: int, generator: torch.Generator | None = None):
    """Yield (inputs in [0, 1], labels); shuffled when a generator is given."""
    x = torch.from_numpy(split.images)
    y = torch.from_numpy(split.labels)
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield _to_input(x[idx], pixel_max), y[idx]


def _augment(x: torch.Tensor, gen: torch.Generator, flip: bool, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel-padded crop (and horizontal flip): the usual CIFAR augmentation
    at ``pad`` = 4."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if flip:
        mirror = torch.rand(b, generator=gen) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


@torch.no_grad()
def evaluate(net: TicketNet, split: Split, pixel_max: int, batch_size: int = 500) -> tuple[float, int]:
    """Test accuracy (fraction) and number correct, in eval mode, fixed order."""
    was = net.training
    net.eval()
    correct = 0
    for x, y in batches(split, batch_size, pixel_max):
        correct += int((net(x).argmax(1) == y).sum())
    net.train(was)
    return correct / len(split), correct


def activity_and_energy(net: TicketNet, ds: Dataset, cfg: RunConfig) -> dict:
    """Firing rates per layer and theoretical energy, measured on the test split."""
    acts, fire = measure_activity(net, (x for x, _ in batches(ds.test, cfg.data.eval_batch_size, ds.pixel_max)))
    spiking = cfg.model.variant != "ann"
    rep = energy_report(acts, cfg.model.timesteps, spiking, cfg.energy.e_mac_pj, cfg.energy.e_ac_pj,
                        event_input=ds.events)
    # an ANN's activations are real values, not events: it has no firing rate
    return {"firing_rate": fire if spiking else {}, "energy": rep}


def _dataset_facts(ds: Dataset) -> dict:
    return {"name": ds.name, "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
            "pixel_max": ds.pixel_max, "train_images": len(ds.train), "test_images": len(ds.test)}


def _optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def _start_from_ticket(net: TicketNet, cfg: RunConfig, build_root: Path, load_from: Path | None = None) -> str:
    src = Path(load_from) if load_from is not None else ticket_dir_for(cfg.train.finetune_from, build_root)
    found, found_cfg, _ = load_ticket(src)
    if (found_cfg.model.arch, found_cfg.model.variant) != (cfg.model.arch, cfg.model.variant) \
            or found_cfg.model.width != cfg.model.width:
        raise TicketError(f"train.finetune_from={cfg.train.finetune_from!r}: that ticket is "
                          f"{found_cfg.model.arch}/{found_cfg.model.variant} width {found_cfg.model.width}, "
                          f"this config is {cfg.model.arch}/{cfg.model.variant} width {cfg.model.width}")
    if cfg.model.variant != "binw":
        raise TicketError("train.finetune_from: fine-tuning is defined for binw tickets (variant = 'binw')")
    for (_, dst), (_, srcm) in zip(masked_layers(net), masked_layers(found)):
        if srcm.mode == "score_bin":
            srcm.freeze_to_binary()
        dst.freeze_to_binary()
    net.load_state_dict(found.state_dict())
    return str(src) if load_from is None else cfg.train.finetune_from


def fit(net: TicketNet, ds: Dataset, cfg: RunConfig, epochs: int, gen: torch.Generator,
        progress: bool | None = None, label: str | None = None, on_epoch=None) -> list[dict]:
    """Train `net`'s trainable parameters for `epochs` epochs (fresh optimizer and schedule)
    and return the per-epoch history.  ``on_epoch(epoch, net)`` runs after each epoch; it
    may return True to stop early (Early-Bird)."""
    label = label or cfg.name
    params = [p for p in net.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
             if cfg.train.schedule == "cosine" else None)
    flip = ds.name in ("cifar10", "cifar100")
    history: list[dict] = []
    disable = None if progress is None else not progress
    net.train()
    for epoch in tqdm(range(epochs), desc=f"{label} epochs", unit="ep", disable=disable):
        te = time.perf_counter()
        seen = correct = 0
        loss_sum = 0.0
        steps = (len(ds.train) + cfg.data.batch_size - 1) // cfg.data.batch_size
        bar = tqdm(batches(ds.train, cfg.data.batch_size, ds.pixel_max, gen), total=steps,
                   desc=f"epoch {epoch + 1}/{epochs}", leave=False, unit="batch", disable=disable)
        for x, y in bar:
            if cfg.data.augment:
                x = _augment(x, gen, flip, cfg.data.crop_pad)
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if sched is not None:
            sched.step()
        test_acc, _ = evaluate(net, ds.test, ds.pixel_max, cfg.data.eval_batch_size)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                        "train_accuracy": correct / max(1, seen), "test_accuracy": test_acc,
                        "seconds": time.perf_counter() - te, "T": net.T})
        if disable is not True:
            tqdm.write(f"[{label}] epoch {epoch + 1}/{epochs}  loss {loss_sum / max(1, seen):.4f}  "
                       f"train {correct / max(1, seen):.4f}  test {test_acc:.4f}  "
                       f"({history[-1]['seconds']:.1f}s)")
            sys.stdout.flush()
        if on_epoch is not None and on_epoch(epoch, net):
            break
    return history


def prepare(cfg: RunConfig) -> tuple[Dataset, TicketNet, torch.Generator]:
    """Seeded dataset, freshly initialised network and batch-order generator for a config."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    ds = load_dataset(cfg.data.dataset, cfg.data.data_dir, timesteps=cfg.model.timesteps)
    if ds.events and cfg.data.augment:
        raise ConfigError(f"data.augment: the crop-and-flip augmentation is for images; {ds.name!r} is event "
                          "data (set data.augment = false)")
    net = build_model(cfg.model, ds.input_shape, ds.num_classes)
    return ds, net, torch.Generator().manual_seed(cfg.train.seed)


def write_ticket(net: TicketNet, ds: Dataset, cfg: RunConfig, out_dir: Path, history: list[dict],
                 search_seconds: float, extra: dict | None = None) -> dict:
    """Save the ticket folder and its metrics.json (accuracy, sparsity, firing, energy)."""
    clear_record(out_dir / "metrics.json")              # the stage's record: removed first, written last
    test_acc, test_correct = evaluate(net, ds.test, ds.pixel_max, cfg.data.eval_batch_size)
    ae = activity_and_energy(net, ds, cfg)
    meta = save_ticket(net, cfg, out_dir, _dataset_facts(ds), extra=extra)
    from ticketforge.model.zoo import neuron_gates

    gates = neuron_gates(net)
    metrics = {
        "config": cfg.name, "arch": cfg.model.arch, "variant": cfg.model.variant,
        "dataset": ds.name, "seed": cfg.train.seed, "timesteps": cfg.model.timesteps,
        "r_p": cfg.model.r_p, "width": cfg.model.width,
        "weights": int(sum(np.prod(l["shape"]) for l in meta["layers"])),
        "unmasked_weights": int(sum(round(np.prod(l["shape"]) * l["density"]) for l in meta["layers"])),
        "synapse_density_per_layer": {l["name"]: l["density"] for l in meta["layers"]},
        "neurons": int(sum(g.mask.numel() for _, g in gates)),
        "live_neurons": int(sum(g.mask.sum().item() for _, g in gates)),
        "neuron_density_per_layer": {n: float(g.mask.mean()) for n, g in gates},
        "epochs": history,
        "final_test_accuracy": test_acc, "test_correct": test_correct, "test_images": len(ds.test),
        "search_seconds": search_seconds, "threads": torch.get_num_threads(),
        "firing_rate": ae["firing_rate"], "energy": ae["energy"],
        **(extra or {}),
    }
    write_record(out_dir / "metrics.json", metrics, indent=2)
    return metrics


def train(cfg: RunConfig, out_dir: Path, progress: bool | None = None,
          build_root: Path = Path("build"), finetune_dir: Path | None = None) -> dict:
    """Run the config's training or ticket search and write the ticket folder `out_dir`.
    `build_root` is where ``train.finetune_from`` names are looked up; ``finetune_dir`` reads
    that ticket from another folder (a ticket fine-tuned in place is read from the model
    stage's work folder, which holds it until the new one is written)."""
    t0 = time.perf_counter()
    ds, net, gen = prepare(cfg)
    started_from = _start_from_ticket(net, cfg, build_root, finetune_dir) if cfg.train.finetune_from else None
    history = fit(net, ds, cfg, cfg.train.epochs, gen, progress)
    extra = {"finetuned_from": started_from}
    if cfg.model.patch_prune:
        from ticketforge.model.pruning import multisp

        importance = multisp.patch_importance(net, ds.train, cfg.data.eval_batch_size, ds.pixel_max)
        extra.update(patch_prune=cfg.model.patch_prune, stage1_test_accuracy=history[-1]["test_accuracy"] if history else None,
                     **multisp.prune_patches(net, cfg.model.patch_prune, importance))
        stage2 = replace(cfg, train=replace(cfg.train, lr=cfg.train.patch_lr))
        history += fit(net, ds, stage2, cfg.train.patch_epochs, gen, progress, f"{cfg.name} patches")
    return write_ticket(net, ds, cfg, out_dir, history, time.perf_counter() - t0, extra=extra)
