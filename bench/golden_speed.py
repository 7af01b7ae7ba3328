"""Golden interpreter throughput on an IR folder (the target: the full mnist5k test split,
1,000 images, in under a minute on 2 cores).

    .venv/bin/python bench/golden_speed.py build/vgg9_binw/ir

Prints images per second and the seconds for the whole test split of the IR's dataset.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from ticketforge.ir import load_graph, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    g = load_graph(args.ir)
    from ticketforge.model.data import load_dataset            # dataset readers (numpy side)

    ds = load_dataset(g.provenance.get("dataset", "mnist5k"))
    images = ds.test.images
    if ds.pixel_max != (1 << g.input.bits) - 1:
        raise SystemExit("this bench feeds raw 8-bit pixels; the IR's dataset needs brevitas' codes")
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        res = run(g, images)
        best = min(best, time.perf_counter() - t)
    acc = float((res.predictions == ds.test.labels).mean())
    print(json.dumps({"ir": str(args.ir), "images": len(images), "T": g.T, "seconds": round(best, 2),
                      "images_per_second": round(len(images) / best, 1), "accuracy_integer": acc}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
