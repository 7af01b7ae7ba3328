"""Crash test of `ticketforge hw`: kill it at random moments in every stage and rerun it.

A tiny config (an MLP BinW ticket on the synthetic dataset, the iCEBreaker board) is run
once undisturbed, for the reference report and each stage's duration.  Then, for each kill,
a fresh build folder: `ticketforge hw` starts, and a random moment inside one stage (the
stages in turn; the row names the stages that were running) it gets

- SIGKILL, to the process only (`kill -9 PID`: nothing can be cleaned up; its simulators
  and tools go on as orphans, which the next run ends, `ticketforge/buildlock.py`), or
- SIGINT, to its process group (a terminal's Ctrl-C: the run must end within seconds,
  with every process it started).

Then it is rerun undisturbed, and the bench checks:

- **whole or absent**: every stage folder on disk after the kill holds its record
  (`stage.json`, written into the stage's work folder before it is renamed into place,
  `ticketforge/flow.py`), and the rerun keeps that stage: a finished stage is never redone;
- **identical**: the rerun's report equals the undisturbed one (a digest over everything
  but wall times);
- **Ctrl-C**: exit code 130 within 10 s, and no process of the run's group left.

    .venv/bin/python bench/crash.py [--kills 12] [--stages model,rtl,...] [--seed 0] [--simulator icarus] [--images 40]

Prints one row per kill and a summary; exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ticketforge.flow import read_record

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("model", "quantize", "rtl", "sim", "synth", "netlist")
BOARD = "icebreaker"
CONFIG = """
[model]
arch = "mlp"
variant = "binw"
width = 0.125
T = 2
r_p = 0.4
[data]
dataset = "synthetic"
batch_size = 32
[train]
epochs = 2
optimizer = "adam"
lr = 0.01
weight_decay = 0.0
seed = 1
[hw]
board = "icebreaker"
"""
STAGE_LINE = re.compile(r"^\[hw\] (\w+) stage: (.*)$")
VOLATILE = re.compile(r"^(kept|finished)$|seconds|per_second|stages_kept")
ORPHANS_LINE = re.compile(r"note: ended (\d+) process\(es\) left working in")


def stage_folders(build: Path) -> dict[str, Path]:
    """Each stage's folder: whole, with its record (`ticketforge/flow.py`), or absent."""
    b = build / "crashtest"
    return {"model": b / "ticket", "quantize": b / "ir", "rtl": b / "rtl", "sim": b / "sim",
            "synth": b / "synth" / BOARD, "netlist": b / f"sim-netlist-{BOARD}"}


def report_digest(build: Path) -> str:
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not VOLATILE.search(k)}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    rep = json.loads((build / "crashtest" / "report.json").read_text())
    # each run has a build folder of its own, and the IR records the ticket folder's path
    # (its provenance), so the digests of the IR that the stage records hold differ by folder
    for rec in rep.get("stages", {}).values():
        rec.pop("inputs", None)
    return hashlib.sha256(json.dumps(strip(rep), sort_keys=True).encode()).hexdigest()[:16]


class Run:
    """`ticketforge hw` in its own process group; its stage lines, time-stamped, as they come."""

    def __init__(self, cfg: Path, build: Path, simulator: str, images: str):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ticketforge", "hw", "--config", str(cfg), "--build-dir", str(build),
             "--simulator", simulator, "--images", images, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.t0, line.rstrip()))

    def started(self, stage: str) -> float | None:
        for t, line in self.lines:
            m = STAGE_LINE.match(line)
            if m and m.group(1) == stage and not m.group(2).startswith("done") and "kept" not in m.group(2):
                return t
        return None

    def running(self) -> list[str]:
        """The stages started and not yet done (or kept)."""
        started, done = [], set()
        for _, line in self.lines:
            m = STAGE_LINE.match(line)
            if m and "kept" not in m.group(2):
                started.append(m.group(1))
            m = re.match(r"^\[hw\] (\w+) stage done", line)
            if m:
                done.add(m.group(1))
        return [s for s in started if s not in done]

    def kept(self) -> set[str]:
        return {m.group(1) for _, line in self.lines if (m := STAGE_LINE.match(line)) and m.group(2).endswith("kept")}

    def finish(self, timeout: float = 1800) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return rc


def stage_windows(run: Run) -> dict[str, tuple[float, float]]:
    """Each stage's (start, seconds) in the undisturbed run, from its start and done lines."""
    out, start = {}, {}
    for t, line in run.lines:
        m = STAGE_LINE.match(line)
        if not m:
            continue
        if m.group(1) in STAGES and m.group(1) not in start:
            start[m.group(1)] = t
    for t, line in run.lines:
        m = re.match(r"^\[hw\] (\w+) stage done", line)
        if m and m.group(1) in start:
            out[m.group(1)] = (start[m.group(1)], t - start[m.group(1)])
    return out


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="the stages the kills aim at, in turn (default: every stage)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus")
    ap.add_argument("--images", default="40", help="test images the sim stage runs (default 40; or all)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()
    targets = a.stages.split(",")
    if not targets or any(t not in STAGES for t in targets):
        ap.error(f"--stages: a comma-separated list of {', '.join(STAGES)}, got {a.stages!r}")
    rng = random.Random(a.seed)
    work = a.work or Path(tempfile.mkdtemp(prefix="crash-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "crashtest.toml"
    cfg.write_text(CONFIG)

    print(f"[crash] undisturbed reference run in {work / 'ref'}", flush=True)
    ref = Run(cfg, work / "ref", a.simulator, a.images)
    if ref.finish() != 0:
        print("\n".join(line for _, line in ref.lines))
        print("[crash] the undisturbed run failed")
        return 1
    want = report_digest(work / "ref")
    windows = stage_windows(ref)
    print(f"[crash] reference report digest {want}; stages (start s, seconds): "
          + ", ".join(f"{k} ({v[0]:.0f}, {v[1]:.0f})" for k, v in windows.items()), flush=True)

    rows, failures = [], 0
    for k in range(a.kills):
        stage = targets[k % len(targets)]
        sig = signal.SIGKILL if (k // len(targets)) % 2 == 0 else signal.SIGINT
        build = work / f"kill{k}"
        run = Run(cfg, build, a.simulator, a.images)
        delay = rng.uniform(0.1, 0.7) * windows[stage][1]
        t_start = None
        while run.proc.poll() is None and t_start is None:
            t_start = run.started(stage)
            time.sleep(0.05)
        if t_start is not None:
            while run.proc.poll() is None and time.monotonic() - run.t0 < t_start + delay:
                time.sleep(0.05)
        hit = run.proc.poll() is None
        at = time.monotonic() - run.t0
        running = run.running()                 # what the signal interrupts
        ended_s, ctrl_c_ok = None, True
        if hit:
            if sig == signal.SIGKILL:
                run.proc.kill()
                run.finish()
            else:
                os.killpg(run.proc.pid, signal.SIGINT)
                t = time.monotonic()
                try:
                    rc = run.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    rc = None
                ended_s = time.monotonic() - t
                time.sleep(0.5)
                ctrl_c_ok = rc == 130 and not group_alive(run.proc.pid)
                if rc is None:
                    os.killpg(run.proc.pid, signal.SIGKILL)
                run.finish()
        else:
            run.finish()
        on_disk, whole = set(), True
        for name, folder in stage_folders(build).items():
            if folder.exists():             # a stage's folder is whole: its record parses
                if read_record(folder) is None:
                    whole = False
                else:
                    on_disk.add(name)
        again = Run(cfg, build, a.simulator, a.images)
        rc = again.finish()
        kept = again.kept()
        redone = on_disk - kept
        # what the SIGKILLed run left running, ended by the rerun (ticketforge/buildlock.py)
        orphans = sum(int(m.group(1)) for _, line in again.lines if (m := ORPHANS_LINE.search(line)))
        same = rc == 0 and report_digest(build) == want
        ok = hit and bool(running) and whole and not redone and same and ctrl_c_ok
        failures += not ok
        rows.append((k, stage, sig.name, at, ended_s, sorted(on_disk, key=STAGES.index),
                     sorted(kept, key=STAGES.index), redone, same, ctrl_c_ok, hit, orphans, running))
        print(f"[crash] kill {k}: {sig.name} at {at:.1f} s, aimed at {stage}, running: {', '.join(running) or 'none'}"
              + (f" (ended in {ended_s:.1f} s, exit and group {'ok' if ctrl_c_ok else 'NOT ok'})" if ended_s else "")
              + ("" if hit else " (MISSED: the run had ended)")
              + f"; records after the kill: {', '.join(sorted(on_disk, key=STAGES.index)) or 'none'}"
              + f"; rerun kept {', '.join(sorted(kept, key=STAGES.index)) or 'none'}"
              + (f"; REDONE {sorted(redone)}" if redone else "")
              + (f"; the rerun ended {orphans} process(es) the killed run left" if orphans else "")
              + f"; report {'identical' if same else 'DIFFERENT (rc %s)' % rc}", flush=True)

    hits = {s for r in rows if r[10] for s in r[12]}
    print("\n| kill | signal | stages running | at s | stage records after the kill | kept by the rerun | "
          "left running, ended by the rerun | report |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[2]} | {', '.join(r[12]) or '-'} | {r[3]:.1f} | {', '.join(r[5]) or '-'} | "
              f"{', '.join(r[6]) or '-'} | {r[11]} | {'identical' if r[8] else 'DIFFERENT'} |")
    print(f"\n[crash] {len(rows)} kills ({sum(r[2] == 'SIGKILL' for r in rows)} SIGKILL, "
          f"{sum(r[2] == 'SIGINT' for r in rows)} SIGINT), stages hit: {', '.join(s for s in STAGES if s in hits)}; "
          f"reruns identical to the undisturbed report: {sum(r[8] for r in rows)}/{len(rows)}; finished stages "
          f"redone: {sum(len(r[7]) for r in rows)}; Ctrl-C clean: {sum(r[9] for r in rows if r[2] == 'SIGINT')}/"
          f"{sum(r[2] == 'SIGINT' for r in rows)}; failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
