"""`ticketforge prune`: run one pruning method and write a ticket folder like the model stage's.

Methods: ``imp``, ``eb``, ``et-imp``, ``et-eb``, ``random``, ``snip``, ``transfer`` (synapse
masks, from a fresh network of the config) and ``dynsnn`` (neuron masks on the config's
trained ticket, inference-time) / ``dynsnn-train`` (training-time, with reactivation).
Output: ``build/<name>/prune-<method>/`` with ``metrics.json`` holding accuracy, synapse
and neuron sparsity per layer, search seconds, SOPs and theoretical energy.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ticketforge.errors import ConfigError
from ticketforge.model.config import RunConfig
from ticketforge.model.pruning import dynsnn, lth
from ticketforge.model.pruning.masks import current_masks, layer_sparsity, sparsity
from ticketforge.model.ticket import load_ticket
import torch

from ticketforge.model.train import evaluate, fit, prepare, write_ticket

__all__ = ["METHODS", "prune"]

METHODS = ("imp", "eb", "et-imp", "et-eb", "random", "snip", "transfer", "dynsnn", "dynsnn-train")


def _with_sparsity(cfg: RunConfig, target: float | None) -> RunConfig:
    """A synapse sparsity target sets the number of IMP rounds of `prune.rate`."""
    if target is None:
        return cfg
    if not 0.0 < target < 1.0:
        raise ConfigError(f"--sparsity must be in (0, 1), got {target}")
    return replace(cfg, prune=replace(cfg.prune, rounds=lth.rounds_for(target, cfg.prune.rate), target=target))


def prune(cfg: RunConfig, method: str, out_dir: Path, sparsity_target: float | None = None,
          build_root: Path = Path("build"), progress: bool | None = None) -> dict:
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is unknown; allowed: {', '.join(METHODS)}")
    t0 = time.perf_counter()
    info: dict = {"method": method}
    if method == "dynsnn":
        net, tcfg, _ = load_ticket(build_root / cfg.name / "ticket")
        cfg = replace(tcfg, prune=cfg.prune)
        ds, _, _ = prepare(cfg)
        calib = dynsnn._calibration(ds, cfg.prune.calibration_images)
        fsr = dynsnn.fire_spike_rates(net, calib, cfg.data.eval_batch_size, ds.pixel_max)
        thr = (dynsnn.threshold_for_fraction(fsr, sparsity_target) if sparsity_target is not None
               else cfg.prune.fsr_threshold)
        dynsnn.prune_inference(net, fsr, thr)
        history = []
        if cfg.prune.recover_epochs:
            acc0 = evaluate(net, ds.test, ds.pixel_max, cfg.data.eval_batch_size)[0]
            rcfg = replace(cfg, train=replace(cfg.train, lr=cfg.prune.recover_lr))
            gen = torch.Generator().manual_seed(cfg.train.seed)
            history = fit(net, ds, rcfg, cfg.prune.recover_epochs, gen, progress, f"{cfg.name} dynsnn recover")
            info.update(accuracy_before_recovery=acc0, recover_epochs=cfg.prune.recover_epochs,
                        recover_lr=cfg.prune.recover_lr)
        info.update(fsr_threshold=thr, source_ticket=str(build_root / cfg.name / "ticket"),
                    **dynsnn.neuron_report(net))
    else:
        cfg = _with_sparsity(cfg, sparsity_target if method not in ("dynsnn-train",) else None)
        ds, net, gen = prepare(cfg)
        if method == "dynsnn-train":
            net, history, extra = dynsnn.train_with_reactivation(net, ds, cfg, gen, progress)
        elif method in ("et-imp", "et-eb"):
            t_early, prof, warm = lth.select_t_early(net, ds, cfg, gen, progress)
            ds, net, gen = prepare(cfg)                # the search starts from the same init
            search = lth.imp if method == "et-imp" else lth.early_bird
            net, history, extra = search(net, ds, cfg, gen, progress, t_search=t_early)
            history = warm + history
            extra.update(t_early=t_early, normalised_kl=prof)
        else:
            fn = {"imp": lth.imp, "eb": lth.early_bird, "random": lth.random_ticket,
                  "snip": lth.snip_ticket, "transfer": lth.transfer_ticket}[method]
            net, history, extra = fn(net, ds, cfg, gen, progress)
        info.update(extra)
    masks = current_masks(net)
    info.update(synapse_sparsity=sparsity(masks), synapse_sparsity_per_layer=layer_sparsity(masks))
    info.update({k: v for k, v in dynsnn.neuron_report(net).items() if k not in info})
    seconds = time.perf_counter() - t0
    return write_ticket(net, ds, cfg, out_dir, history, seconds, extra={"prune": info})
