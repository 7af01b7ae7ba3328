"""Synapse-level tickets of the SNN lottery-ticket paper (Kim et al., ECCV 2022).

- :func:`imp`: iterative magnitude pruning with late rewinding: train, prune ``rate`` of
  the surviving weights by magnitude (global or local), rewind the weights (and BatchNorm)
  to their values after ``rewind_epoch`` epochs, retrain; ``rounds`` times.
- :func:`early_bird`: train while drawing the magnitude mask at the target sparsity after
  every epoch; stop when the largest distance between the newest mask and the previous
  ``eb_window`` masks is below ``eb_tau``; prune, rewind, retrain.
- :func:`select_t_early` + ``early_time=True``: Early-Time ticket: after
  ``et_warmup_epochs`` at full T, KL(P_t || P_T) on a fixed training subset (eval mode) for
  t = 2..T-1, normalised by the t = 2 value; T_early is the smallest t below ``et_lambda``.
  The search (IMP or EB) runs at T_early and the final retraining at full T.
- Baselines: :func:`random_ticket`, :func:`snip_ticket` (|grad x weight| at init) and
  :func:`transfer_ticket` (IMP on the ``ann`` variant, mask and init moved to ``snn``).

Every function takes a freshly initialised network and returns ``(net, history, info)``;
the caller times the whole search.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from ticketforge.errors import ConfigError
from ticketforge.model.config import RunConfig
from ticketforge.model.data import Dataset
from ticketforge.model.pruning.masks import (current_masks, magnitude_scores, mask_distance, prune_by_score,
                                             random_scores, set_masks, sparsity)
from ticketforge.model.train import batches, fit
from ticketforge.model.zoo import TicketNet, build_model

__all__ = ["imp", "early_bird", "select_t_early", "random_ticket", "snip_ticket", "transfer_ticket",
           "target_sparsity", "kl_profile", "rounds_for", "pick_t_early"]


def target_sparsity(cfg: RunConfig) -> float:
    """``prune.target`` if set, else the sparsity after ``rounds`` rounds of ``rate``."""
    if cfg.prune.target > 0:
        return cfg.prune.target
    return 1.0 - (1.0 - cfg.prune.rate) ** cfg.prune.rounds


def _require_dense(cfg: RunConfig, method: str) -> None:
    if cfg.model.variant not in ("snn", "ann"):
        raise ConfigError(f"--method {method} prunes trained weights by magnitude: it takes model.variant "
                          f"'snn' or 'ann', not {cfg.model.variant!r} (binw/slt tickets get their masks "
                          "from the score search; use --method dynsnn on them)")


def _weights_state(net: TicketNet) -> dict:
    """Everything but the masks: what rewinding restores."""
    return {k: v.clone() for k, v in net.state_dict().items() if not k.endswith(".mask")}


def _rewind(net: TicketNet, state: dict) -> None:
    masks = current_masks(net)
    net.load_state_dict(state, strict=False)
    set_masks(net, masks)


def _train_with_rewind_point(net, ds, cfg, epochs, gen, progress, label):
    """Train and keep the weights after ``rewind_epoch`` epochs (or the init, for 0)."""
    point = {"state": _weights_state(net) if cfg.prune.rewind_epoch == 0 else None}

    def on_epoch(e, n):
        if e + 1 == cfg.prune.rewind_epoch:
            point["state"] = _weights_state(n)
    hist = fit(net, ds, cfg, epochs, gen, progress, label, on_epoch)
    return hist, point["state"] or _weights_state(net)


def imp(net: TicketNet, ds: Dataset, cfg: RunConfig, gen: torch.Generator, progress=None,
        t_search: int | None = None) -> tuple[TicketNet, list, dict]:
    """IMP with late rewinding.  With `t_search` (Early-Time) every round but the last
    trains at that T, and the last retraining at the model's full T."""
    _require_dense(cfg, "imp")
    full_t = net.T
    net.T = t_search or full_t
    epochs = cfg.train.epochs
    history = []
    hist, rewind_state = _train_with_rewind_point(net, ds, cfg, epochs, gen, progress, f"{cfg.name} imp r0")
    history += hist
    masks = current_masks(net)
    levels = []
    for r in range(1, cfg.prune.rounds + 1):
        level = 1.0 - (1.0 - cfg.prune.rate) ** r
        if r == cfg.prune.rounds:
            level = target_sparsity(cfg)          # the last round lands on the target exactly
        masks = prune_by_score(magnitude_scores(net), masks, level, cfg.prune.scope)
        set_masks(net, masks)
        _rewind(net, rewind_state)
        if r == cfg.prune.rounds:
            net.T = full_t
        history += fit(net, ds, cfg, epochs, gen, progress, f"{cfg.name} imp r{r} ({100 * level:.1f}%)")
        levels.append({"round": r, "sparsity": sparsity(masks), "test_accuracy": history[-1]["test_accuracy"],
                       "T": net.T})
    net.T = full_t
    return net, history, {"rounds": levels, "rewind_epoch": cfg.prune.rewind_epoch, "scope": cfg.prune.scope,
                          "t_search": t_search or full_t}


def early_bird(net: TicketNet, ds: Dataset, cfg: RunConfig, gen: torch.Generator, progress=None,
               t_search: int | None = None) -> tuple[TicketNet, list, dict]:
    """Early-Bird ticket at ``target_sparsity(cfg)`` (unstructured masks)."""
    _require_dense(cfg, "eb")
    target = target_sparsity(cfg)
    full_t = net.T
    net.T = t_search or full_t
    ones = {n: torch.ones_like(m) for n, m in current_masks(net).items()}
    recent: list[dict] = []
    found = {"epoch": None, "distances": []}
    point = {"state": _weights_state(net) if cfg.prune.rewind_epoch == 0 else None}

    def on_epoch(e, n):
        if e + 1 == cfg.prune.rewind_epoch:
            point["state"] = _weights_state(n)
        mask = prune_by_score(magnitude_scores(n), ones, target, cfg.prune.scope)
        if len(recent) >= cfg.prune.eb_window:
            d = max(mask_distance(mask, old) for old in recent[-cfg.prune.eb_window:])
            found["distances"].append(d)
            if d < cfg.prune.eb_tau:
                found["epoch"] = e + 1
                found["mask"] = mask
                return True
        recent.append(mask)
        found["mask"] = mask
        return False

    history = fit(net, ds, cfg, cfg.prune.eb_max_epochs, gen, progress, f"{cfg.name} eb search", on_epoch)
    set_masks(net, found["mask"])
    _rewind(net, point["state"] or _weights_state(net))
    net.T = full_t
    history += fit(net, ds, cfg, cfg.train.epochs, gen, progress, f"{cfg.name} eb retrain")
    return net, history, {"eb_epoch": found["epoch"], "distances": found["distances"], "target": target,
                          "t_search": t_search or full_t}


@torch.no_grad()
def kl_profile(net: TicketNet, images: torch.Tensor) -> dict[int, float]:
    """Normalised KL(P_t || P_T) for t = 2..T-1 (eval mode; P_t from the first t timesteps)."""
    was = net.training
    net.eval()
    steps = net.forward_steps(images)                       # [T, B, K]
    net.train(was)
    T = steps.shape[0]
    cum = steps.cumsum(0) / torch.arange(1, T + 1).view(-1, 1, 1)
    log_pt_full = F.log_softmax(cum[T - 1], dim=1)
    kls = {}
    for t in range(2, T):
        log_p = F.log_softmax(cum[t - 1], dim=1)
        kls[t] = float((log_p.exp() * (log_p - log_pt_full)).sum(1).mean())
    base = kls.get(2) or 1.0
    return {t: (v / base if base > 0 else 0.0) for t, v in kls.items()}


def select_t_early(net: TicketNet, ds: Dataset, cfg: RunConfig, gen: torch.Generator, progress=None):
    """Warm up at full T, then the smallest t whose normalised KL is below lambda."""
    hist = fit(net, ds, cfg, cfg.prune.et_warmup_epochs, gen, progress, f"{cfg.name} et warmup")
    x = next(batches(ds.train, cfg.prune.et_images, ds.pixel_max))[0]
    prof = kl_profile(net, x)
    return pick_t_early(prof, cfg.prune.et_lambda, net.T), prof, hist


def pick_t_early(profile: dict[int, float], lam: float, full_t: int) -> int:
    """The smallest t whose normalised KL is below `lam` (full T when none is)."""
    return next((t for t in sorted(profile) if profile[t] < lam), full_t)


def random_ticket(net, ds, cfg, gen, progress=None):
    _require_dense(cfg, "random")
    target = target_sparsity(cfg)
    masks = prune_by_score(random_scores(net, gen), current_masks(net), target, cfg.prune.scope)
    set_masks(net, masks)
    return net, fit(net, ds, cfg, cfg.train.epochs, gen, progress, f"{cfg.name} random"), {"target": target}


def snip_ticket(net, ds, cfg, gen, progress=None):
    """SNIP: connection sensitivity |dL/dw * w| summed over a few batches at initialisation."""
    _require_dense(cfg, "snip")
    target = target_sparsity(cfg)
    from ticketforge.model.layers import masked_layers
    layers = masked_layers(net)
    sal = {n: torch.zeros_like(m.weight) for n, m in layers}
    net.train()
    it = batches(ds.train, cfg.data.batch_size, ds.pixel_max, gen)
    for _ in range(cfg.prune.snip_batches):
        x, y = next(it)
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        for n, m in layers:
            sal[n] += (m.weight.grad * m.weight).abs().detach()
    net.zero_grad(set_to_none=True)
    set_masks(net, prune_by_score(sal, current_masks(net), target, cfg.prune.scope))
    return net, fit(net, ds, cfg, cfg.train.epochs, gen, progress, f"{cfg.name} snip"), {"target": target}


def transfer_ticket(net, ds, cfg, gen, progress=None):
    """IMP on the ANN twin (same seed, same init), then the SNN trained from that init with
    the ANN's mask."""
    _require_dense(cfg, "transfer")
    init = copy.deepcopy(net.state_dict())
    ann_cfg = replace(cfg, model=replace(cfg.model, variant="ann"))
    torch.manual_seed(cfg.train.seed)
    ann = build_model(ann_cfg.model, ds.input_shape, ds.num_classes)
    ann.load_state_dict({k: v for k, v in init.items() if k in ann.state_dict()}, strict=False)
    ann, hist_ann, info = imp(ann, ds, ann_cfg, gen, progress)
    net.load_state_dict(init)
    set_masks(net, current_masks(ann))
    hist = fit(net, ds, cfg, cfg.train.epochs, gen, progress, f"{cfg.name} transfer")
    return net, hist_ann + hist, {"ann_rounds": info["rounds"], "target": target_sparsity(cfg)}


def rounds_for(sparsity_target: float, rate: float) -> int:
    """IMP rounds of `rate` needed to reach `sparsity_target`."""
    return max(1, math.ceil(math.log(1.0 - sparsity_target) / math.log(1.0 - rate) - 1e-9))

