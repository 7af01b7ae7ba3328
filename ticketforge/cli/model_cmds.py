"""The model-side subcommands: train, eval, prune, sweep, quantize, configs."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

__all__ = ["load_cfg", "cmd_train", "cmd_eval", "cmd_prune", "cmd_sweep", "cmd_quantize", "cmd_configs"]


def load_cfg(args):
    """The command's config: ``--config`` with its ``--set`` overrides and ``--data-dir``."""
    from ticketforge.model.config import load_config, parse_overrides, with_overrides

    cfg = load_config(args.config, parse_overrides(args.overrides))
    if args.data_dir:
        cfg = with_overrides(cfg, data={"data_dir": args.data_dir})
    return cfg


def cmd_train(args) -> int:
    from ticketforge.cli.stages import model_stage
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    stage = model_stage(args, cfg)
    print(f"[{cfg.name}] {cfg.model.arch}/{cfg.model.variant} on {cfg.data.dataset}: "
          f"width {cfg.model.width}, T={cfg.model.timesteps}, r_p={cfg.model.r_p}, "
          f"{cfg.train.epochs} epochs -> {stage.folder}", flush=True)
    run_stage(stage, force=True)
    m = json.loads((stage.folder / "metrics.json").read_text())
    e = m["energy"]
    print(f"[{cfg.name}] test accuracy {m['final_test_accuracy']:.4f} "
          f"({m['test_correct']}/{m['test_images']}), search {m['search_seconds']:.1f} s, "
          f"SOPs {e['sops_total'] / 1e6:.3f} M, energy {e['energy_uj']:.4f} uJ/image")
    return 0


def cmd_eval(args) -> int:
    from ticketforge.model.data import load_dataset
    from ticketforge.model.ticket import load_ticket
    from ticketforge.model.train import evaluate

    cfg = load_cfg(args)
    tdir = Path(args.ticket) if args.ticket else Path(args.build_dir) / cfg.name / "ticket"
    net, tcfg, meta = load_ticket(tdir)
    ds = load_dataset(tcfg.data.dataset, cfg.data.data_dir or tcfg.data.data_dir, timesteps=tcfg.model.timesteps)
    acc, correct = evaluate(net, ds.test, ds.pixel_max, tcfg.data.eval_batch_size)
    recorded = None
    mpath = tdir / "metrics.json"
    if mpath.is_file():
        recorded = json.loads(mpath.read_text()).get("final_test_accuracy")
    same = recorded is not None and acc == recorded
    print(f"[{tcfg.name}] test accuracy {acc:.4f} ({correct}/{len(ds.test)})"
          + (f"; recorded {recorded:.4f}: {'reproduced exactly' if same else 'DIFFERENT'}"
             if recorded is not None else ""))
    if recorded is not None and not same:
        print(f"  {abs(round((acc - recorded) * len(ds.test)))} image(s) differ from training's record.  Float "
              "results depend on the CPU's kernels and thread count (a score within rounding of a tie "
              "flips); on the machine and settings that trained the ticket they must be equal.  From "
              "`ticketforge quantize` on, the integer IR is exact everywhere.")
    return 0 if recorded is None or same else 1


def cmd_prune(args) -> int:
    from ticketforge.model.pruning.run import prune

    cfg = load_cfg(args)
    out = Path(args.build_dir) / cfg.name / f"prune-{args.method}"
    m = prune(cfg, args.method, out, args.sparsity, Path(args.build_dir), progress=False if args.quiet else None)
    p = m["prune"]
    print(f"[{cfg.name}] prune {args.method} -> {out}: test accuracy {m['final_test_accuracy']:.4f}, "
          f"synapse sparsity {100 * p['synapse_sparsity']:.2f}%, neurons removed "
          f"{100 * p['neurons_removed_fraction']:.2f}%, search {m['search_seconds']:.1f} s, "
          f"energy {m['energy']['energy_uj']:.4f} uJ/image")
    return 0


def cmd_sweep(args) -> int:
    from ticketforge.model.sweep import parse_grid, run_sweep

    cfg = load_cfg(args)
    from ticketforge.distributed import ray_executor

    out = run_sweep(cfg, parse_grid(args.grid), Path(args.build_dir), jobs=args.jobs,
                    executor=ray_executor(args.ray))
    print(f"[{cfg.name}] sweep of {len(out['points'])} points -> {Path(args.build_dir) / cfg.name / 'sweep'}")
    for p in out["points"]:
        print(f"  {p['overrides']}: accuracy {p['test_accuracy']:.4f}, synapse sparsity "
              f"{100 * p['synapse_sparsity']:.1f}%, neurons removed {100 * p['neurons_removed_fraction']:.1f}%, "
              f"{p['seconds']:.0f} s")
    for f in out["plots"]:
        print(f"  plot: {f}")
    return 0


def cmd_quantize(args) -> int:
    from ticketforge.cli.stages import quantize_stage, resolve_hw_args
    from ticketforge.flow import run_stage

    cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    stage = quantize_stage(args, cfg, Path(args.ticket) if args.ticket else None)
    run_stage(stage, force=True)
    m = json.loads((stage.folder / "metrics.json").read_text())
    print(f"[{cfg.name}] IR -> {stage.folder}: accuracy float {m['accuracy_float']:.4f}, integer "
          f"{m['accuracy_integer']:.4f} on {m['images']} test images "
          f"(golden interpreter {m['golden_seconds']:.1f} s)")
    return 0


def cmd_import(args) -> int:
    """A NIR file -> ``build/<name>/ir/``; with ``--nir`` (no config) it also writes the
    config ``build/<name>/<name>.toml`` that the later commands take (``--config`` that file)."""
    from ticketforge.cli.stages import import_stage, resolve_hw_args
    from ticketforge.errors import UsageError
    from ticketforge.flow import run_stage
    from ticketforge.model.config import build_config

    if args.config:
        if args.nir or args.name:
            raise UsageError("give either --config (its [nir] table names the file) or --nir with --name, not both")
        cfg = load_cfg(args)
        if not cfg.nir.file:
            raise UsageError(f"config {cfg.name} has no [nir] table with a file: it is not an imported network")
    else:
        missing = [o for o, v in (("--nir", args.nir), ("--name", args.name), ("--dt", args.dt),
                                  ("--reset", args.reset), ("--timesteps", args.timesteps)) if not v]
        if missing:
            raise UsageError(f"{', '.join(missing)} missing: `ticketforge import --nir FILE --name NAME --dt DT "
                             f"--reset hard|soft --timesteps T [--dataset D] [--weight-bits B]`, or --config")
        if not args.name.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"--name {args.name!r}: letters, digits, '_' and '-' only (it names build/<name>/)")
        text = (f"# written by `ticketforge import`: the NIR network {args.nir}\n"
                f"[model]\nT = {args.timesteps}\n[data]\ndataset = {json.dumps(args.dataset)}\n"
                f"[nir]\nfile = {json.dumps(str(Path(args.nir).resolve()))}\ndt = {float(args.dt)!r}\n"
                f"reset = {json.dumps(args.reset)}\nweight_bits = {args.weight_bits}\n"
                f"[hw]\ndatapath = \"bitpar\"\npes = 8\n")
        build_config(args.name, tomllib.loads(text), {}, source="ticketforge import")   # checked before written
        root = Path(args.build_dir) / args.name
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{args.name}.toml"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        args.config = str(path)
        cfg = load_cfg(args)
    resolve_hw_args(args, cfg)
    stage = import_stage(args, cfg)
    run_stage(stage, force=True)
    m = json.loads((stage.folder / "metrics.json").read_text())
    print(f"[{cfg.name}] NIR -> {stage.folder}: accuracy float (the NIR graph) {m['accuracy_float']:.4f}, integer "
          f"IR {m['accuracy_integer']:.4f} on {m['images']} test images ({m['weight_bits']}-bit weights); "
          f"config: {args.config}")
    return 0


def cmd_configs(_args) -> int:
    from ticketforge.model.config import available_configs, load_config

    for name in available_configs():
        c = load_config(name)
        if c.nir.file:
            print(f"{name:16s} imported from NIR ({c.nir.file}) on {c.data.dataset}, {c.nir.weight_bits}-bit "
                  f"weights, T {c.model.T}")
            continue
        print(f"{name:16s} {c.model.arch}/{c.model.variant} on {c.data.dataset}, width {c.model.width}, "
              f"r_p {c.model.r_p}, T {c.model.timesteps}, {c.train.epochs} epochs")
    return 0
