"""Ctrl-C and SIGTERM end the whole run: every process the command started (make, the C++
compiler, Icarus or Verilator simulators, yosys, nextpnr, worker processes) ends with it.

The simulators and tools run as children of library code (cocotb's runner, the yowasp
wrappers, process pools) that keeps no handle we could signal, and some of them ignore
SIGINT, so the handler walks the process table for this process's descendants instead:
SIGTERM to each, then SIGKILL to what is left after a grace period.  Linux (``/proc``);
elsewhere only the handler's exception is raised.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["alive", "descendants", "end_processes", "end_children", "children_end_with_us", "Interrupted"]

GRACE_S = 2.0


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children first), from /proc; [] where there is none."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:                     # gone meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:                                    # a zombie has ended: only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def end_processes(pids: list[int], grace_s: float = GRACE_S, more=None) -> None:
    """SIGTERM each of `pids`, SIGKILL those alive after `grace_s` (and the pids ``more()``
    returns then: processes started meanwhile)."""
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids + (more() if more else []) if alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 1.0                    # SIGKILL is delivered asynchronously
    while time.monotonic() < deadline and any(alive(p) for p in left):
        time.sleep(0.02)


def end_children(grace_s: float = GRACE_S) -> int:
    """SIGTERM every descendant, SIGKILL those alive after `grace_s`; returns how many there were."""
    pids = descendants(os.getpid())
    end_processes(pids, grace_s, more=lambda: descendants(os.getpid()))
    return len(pids)


@contextmanager
def children_end_with_us():
    """Within the block, SIGINT and SIGTERM end every descendant process and then raise
    :class:`Interrupted` in the main thread."""
    me = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != me:               # a forked worker: end quietly with its own children
            end_children(0.5)
            os._exit(128 + signum)
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # one clean-up, however often the key is pressed
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end_children()
        raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
