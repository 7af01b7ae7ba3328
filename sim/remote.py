"""A regression shard as a Ray task (``ticketforge sim --ray``).

The driver builds the simulation once and ships only what a testbench run reads: the
Verilator executable or Icarus' ``sim.vvp`` (about 1 MB, where the whole Verilator build
folder is hundreds), through Ray's object store.  Each node unpacks it once into its own
cache, keyed by the files' digest; each shard's job (images and references) travels with
its task, and its ``results.json`` comes back as the task's value.  The driver merges the
shards exactly as for local processes (`sim/runner.py`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from ticketforge.sim.build import SIM_TOP
from ticketforge.sim.errors import SimError

__all__ = ["simulation_files", "job_files", "run_shard_on_node", "NODE_CACHE_ENV"]

# where a node keeps the simulations it unpacked (default: <tmp>/ticketforge-ray)
NODE_CACHE_ENV = "TICKETFORGE_RAY_CACHE"


def simulation_files(simulator: str, build_dir: Path) -> dict[str, bytes]:
    """The files of a finished build that the testbench run needs, by name."""
    name = SIM_TOP if simulator == "verilator" else "sim.vvp"
    path = Path(build_dir) / name
    if not path.is_file():
        raise SimError(f"{path} is missing after the {simulator} build: nothing to ship to the Ray nodes")
    return {name: path.read_bytes()}


def job_files(job: Path) -> dict[str, bytes]:
    """A shard's job folder as bytes: ``job.json``, ``job.npz`` and, for runtime weights,
    the ``weights.bin`` that ``job.json`` names (renamed into the job)."""
    files = {"job.npz": (job / "job.npz").read_bytes()}
    meta = json.loads((job / "job.json").read_text())
    if "weights_file" in meta:
        files["weights.bin"] = Path(meta["weights_file"]).read_bytes()
        meta["weights_file"] = "weights.bin"          # resolved against the node's job folder
    files["job.json"] = json.dumps(meta).encode()
    return files


def _node_build(simulator: str, files: dict[str, bytes]) -> Path:
    """The build folder on this node: unpacked once per digest, under a file lock (the
    node's tasks start at the same time)."""
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()[:16]
    root = Path(os.environ.get(NODE_CACHE_ENV) or Path(tempfile.gettempdir()) / "ticketforge-ray")
    folder = root / f"{simulator}-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").is_file():
            folder.mkdir(exist_ok=True)
            for name, data in files.items():
                (folder / name).write_bytes(data)
                (folder / name).chmod(0o755)
            (folder / ".complete").touch()
    return folder


def run_shard_on_node(simulator: str, build: dict[str, bytes], job: dict[str, bytes], shard: int,
                      tally=None) -> dict:
    """One shard's testbench on this node; its ``results.json`` content.  ``tally``: a
    `ticketforge.distributed.progress_tally` actor that hears the shard's image count."""
    from ticketforge.sim.runner import run_testbench

    build_dir = _node_build(simulator, build)
    with tempfile.TemporaryDirectory(prefix=f"ticketforge-shard{shard}-") as tmp:
        folder = Path(tmp) / "job"
        folder.mkdir()
        for name, data in job.items():
            (folder / name).write_bytes(data)
        meta = json.loads((folder / "job.json").read_text())
        if "weights_file" in meta:
            meta["weights_file"] = str(folder / meta["weights_file"])
            (folder / "job.json").write_text(json.dumps(meta))
        stop = threading.Event()
        reporter = threading.Thread(target=_report_progress, args=(folder / "progress", shard, tally, stop),
                                    daemon=True) if tally is not None else None
        if reporter:
            reporter.start()
        try:
            return run_testbench(simulator, build_dir, folder, Path(tmp) / "run.log")
        finally:
            stop.set()
            if reporter:
                reporter.join()


def _report_progress(path: Path, shard: int, tally, stop: threading.Event, every_s: float = 1.0) -> None:
    last = -1
    while True:
        finished = stop.wait(every_s)
        try:
            n = int(path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            n = last
        if n != last and n >= 0:
            tally.set.remote(shard, n)
            last = n
        if finished:
            return
