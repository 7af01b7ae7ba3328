"""Print the model-stage comparison table (markdown) from measured ticket metrics.

    python bench/model_table.py vgg9_ann vgg9_snn vgg9_bnn vgg9_slt vgg9_binw vgg9_binw_ft

Each name must have been trained first (`ticketforge train --config NAME`); the numbers
come from build/NAME/ticket/metrics.json, nothing is typed in by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def row(name: str, build: Path) -> str:
    path = build / name / "ticket" / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `ticketforge train --config {name}` first")
    m = json.loads(path.read_text())
    e = m["energy"]
    density = m["unmasked_weights"] / m["weights"]
    return (f"| `{name}` | {m['variant']} | {m['timesteps']} | {density:.2f} | "
            f"{100 * m['final_test_accuracy']:.2f} | {e['flops_total'] / 1e6:.2f} | "
            f"{e['sops_total'] / 1e6:.2f} | {e['energy_uj']:.3f} | {m['search_seconds']:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--build-dir", default="build")
    args = ap.parse_args()
    print("| config | variant | T | weight density | test acc (%) | FLOPs (M) | SOPs (M) "
          "| energy (uJ/img) | train/search (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.names:
        print(row(n, Path(args.build_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
