"""`ticketforge` command line: one subcommand per stage.

    ticketforge train --config vgg9_binw [--set train.epochs=3 ...] [--data-dir DIR]
    ticketforge eval  --config vgg9_binw          # reload the ticket, re-measure accuracy
    ticketforge hw    --config vgg9_binw          # the main job: every stage, then the report
    ticketforge explore --config vgg9_binw --grid pes=8,16,32   # hardware design-space exploration
    ticketforge configs                           # list shipped configs

Heavy libraries are imported inside the subcommands, so ``--help`` is instant.

The package: `parser` (arguments), `model_cmds` and `hardware_cmds` (one function per
stage), `stages` (each stage as data: inputs, settings, code, tools), `hw` (the whole flow),
`freshness` (the files a stage reads); this module dispatches.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ticketforge.cli.hardware_cmds import cmd_explore, cmd_hls, cmd_rtl, cmd_run, cmd_sim, cmd_synth
from ticketforge.cli.hw import cmd_hw
from ticketforge.cli.model_cmds import (cmd_configs, cmd_eval, cmd_import, cmd_prune, cmd_quantize, cmd_sweep,
                                        cmd_train, load_cfg)
from ticketforge.cli.parser import build_parser
from ticketforge.errors import TicketforgeError

__all__ = ["main", "build_parser"]


_COMMANDS = {"train": cmd_train, "eval": cmd_eval, "prune": cmd_prune, "sweep": cmd_sweep, "quantize": cmd_quantize,
             "import": cmd_import,
             "rtl": cmd_rtl, "sim": cmd_sim, "synth": cmd_synth, "run": cmd_run, "hls": cmd_hls, "hw": cmd_hw,
             "explore": cmd_explore, "configs": cmd_configs}


# the commands that write into build/<name>/ (eval and configs only read)
_WRITERS = ("train", "prune", "sweep", "quantize", "rtl", "sim", "synth", "run", "hls", "hw", "explore")


def _lock_for(args):
    """The build folder's lock for a command that writes into it (ticketforge/buildlock.py)."""
    from contextlib import nullcontext

    from ticketforge.buildlock import build_lock

    if args.command not in _WRITERS:
        return nullcontext()
    return build_lock(Path(args.build_dir) / load_cfg(args).name, args.command)


def main(argv: list[str] | None = None) -> int:
    # torch prints a "Triton not available" notice at import on CPU-only machines
    os.environ.setdefault("TORCH_LOGS", "-all")
    args = build_parser().parse_args(argv)
    from ticketforge.interrupt import Interrupted, children_end_with_us

    try:
        with children_end_with_us(), _lock_for(args):
            return _COMMANDS[args.command](args)
    except TicketforgeError as e:
        print(f"ticketforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\nticketforge {args.command}: stopped by {e}; every process it started has ended. A stage "
              "runs in a work folder that is renamed into place when it is whole, so the stages that finished "
              "are kept and the interrupted one is redone by the next run.", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:
        # the reader of our output went away (`ticketforge configs | head`): stop quietly,
        # and keep Python's exit-time flush of stdout from raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
