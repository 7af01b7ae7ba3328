"""One run at a time per build folder: a command that writes into ``build/<name>/`` holds an
exclusive lock on ``build/<name>/.lock`` for as long as it runs, and a second one is refused
with the process that holds it (``fcntl.flock``: the lock goes with the process, so a run
that was killed, even with SIGKILL, leaves no stale lock behind).

A run killed with SIGKILL cannot end its children (`ticketforge/interrupt.py`): simulators,
make and the compiler, yosys, forked workers go on as orphans, working in the folder (and
a forked worker still holds the lock).  The next run that takes the folder ends them first
and says so: an orphan (its parent is gone: PID 1 adopted it) whose working directory is
inside the folder, or that holds the folder's lock, belongs to no live run.  Linux
(``/proc``); elsewhere nothing is looked for.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ticketforge.errors import TicketforgeError
from ticketforge.interrupt import alive, descendants, end_processes

__all__ = ["BuildBusyError", "build_lock", "orphans_in"]


def orphans_in(folder: Path, dead_run: int | None = None, lock_holders: bool = True) -> list[int]:
    """Processes left by a killed run in ``folder``: orphans (adopted by PID 1, or still in
    the process group of ``dead_run``, the killed run's pid) working inside it or (with
    ``lock_holders``) holding its ``.lock``, with their descendants."""
    folder = Path(folder).resolve()
    lock = str(folder / ".lock")
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    roots = []
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()      # state ppid pgrp ...
            if int(stat[1]) != 1 and (dead_run is None or int(stat[2]) != dead_run):
                continue
            cwd = Path(os.readlink(d / "cwd"))
            inside = cwd == folder or folder in cwd.parents
            if not inside and lock_holders:
                inside = any(os.readlink(fd) == lock for fd in (d / "fd").iterdir())
        except (OSError, ValueError):           # gone meanwhile, or not ours to look at
            continue
        if inside:
            roots.append(int(d.name))
    return [p for r in roots for p in [r, *descendants(r)] if alive(p)]


def _end_orphans(folder: Path, dead_run: int | None = None, lock_holders: bool = True) -> None:
    left = orphans_in(folder, dead_run, lock_holders)
    if left:
        end_processes(left)
        print(f"note: ended {len(left)} process(es) left working in {folder} by a killed run "
              f"(pids {', '.join(map(str, left[:8]))}{', ...' if len(left) > 8 else ''})", file=sys.stderr)


class BuildBusyError(TicketforgeError):
    """Another run holds the build folder."""


@contextmanager
def build_lock(folder: Path, command: str):
    folder = Path(folder)
    created = [d for d in (folder, *folder.parents) if not d.exists()]   # to remove if nothing is written
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            words = holder.split()
            run_pid = int(words[1]) if len(words) > 1 and words[0] == "process" and words[1].isdigit() else None
            if run_pid is None or alive(run_pid) or not orphans_in(folder, run_pid):
                raise BuildBusyError(f"{folder} is in use by {holder}: wait for that run to end, or stop it "
                                     "(Ctrl-C in its terminal, or kill the process)") from None
            _end_orphans(folder, run_pid)       # the run that locked it was killed; its workers are not
            deadline = time.monotonic() + 5
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BuildBusyError(f"{folder} is still locked after ending what a killed run left "
                                             f"({holder}): see `fuser {folder / '.lock'}`") from None
                    time.sleep(0.1)
        last = os.pread(fd, 512, 0).decode(errors="replace").split()      # the previous run, if any
        # its simulators and tools, which hold no lock (we hold it now: no fd scan)
        _end_orphans(folder, int(last[1]) if len(last) > 1 and last[1].isdigit() else None, lock_holders=False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} (`ticketforge {command}`)\n".encode(), 0)
        yield
    finally:
        os.close(fd)                            # closing the descriptor releases the lock
        if created and [p.name for p in folder.iterdir()] == [".lock"]:
            # a command refused before it wrote anything leaves nothing behind, the lock included
            path.unlink(missing_ok=True)
            for d in created:                   # deepest first
                try:
                    d.rmdir()
                except OSError:
                    break
