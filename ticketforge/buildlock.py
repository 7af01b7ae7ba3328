"""One run at a time per build folder: a command that writes into ``build/<name>/`` holds an
exclusive lock on ``build/<name>/.lock`` for as long as it runs, and a second one is refused
with the process that holds it (``fcntl.flock``: the lock goes with the process, so a run
that was killed, even with SIGKILL, leaves no stale lock behind)."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ticketforge.errors import TicketforgeError

__all__ = ["BuildBusyError", "build_lock"]


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
            raise BuildBusyError(f"{folder} is in use by {holder}: wait for that run to end, or stop it "
                                 "(Ctrl-C in its terminal, or kill the process)") from None
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
