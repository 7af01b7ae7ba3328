"""Where the flow's parallel work runs: local processes (the default), or a Ray cluster.

``ticketforge sweep``, ``sim`` and ``explore`` take ``--ray [ADDRESS]``: each sweep point,
regression shard or design point becomes a Ray task.  With no address (and no
``RAY_ADDRESS`` in the environment) Ray starts a local instance for the run; with one it
joins that cluster.  Tasks return their results to the driver, which writes every file:
no node needs to see the driver's disk, and a task that dies with its worker (node lost,
worker killed) is run again by Ray (``max_retries``) and counted once, because the driver
keeps one result per task index.

What every node needs: the same ticketforge installation (the same Python environment at
the same path, as in a Ray cluster built from one image), which is also what makes a
Verilator model built on the driver run on the other nodes.

Ray schedules and retries; this module only adds what the flow needs around it: a clear
error for an unreachable cluster (before ``ray.init`` would wait on it), one progress bar
for the whole job, and per-node counts for the log.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from ticketforge.errors import TicketforgeError

__all__ = ["RayError", "RayExecutor", "ray_executor", "ray_session", "task_map", "progress_tally", "per_node_line",
           "node_label", "RAY_VERSION_HINT"]

RAY_VERSION_HINT = "ray==2.60.0"
CONNECT_TIMEOUT_S = 10.0
# a task whose worker dies is run again this many times before the run fails
MAX_RETRIES = 3


class RayError(TicketforgeError):
    """Ray is missing, its cluster cannot be reached, or a task failed for good."""


@dataclass
class RayExecutor:
    """Run tasks on Ray: ``address`` None starts a local instance, else joins that cluster."""
    address: str | None = None
    per_node: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"Ray cluster at {self.address}" if self.address else "a local Ray instance"


def ray_executor(flag: str | None) -> RayExecutor | None:
    """The executor a command's ``--ray [ADDRESS]`` asks for: None without the flag (local
    processes); the flag alone takes ``RAY_ADDRESS`` if set, else a local instance."""
    if flag is None:
        return None
    address = flag or os.environ.get("RAY_ADDRESS") or None
    return RayExecutor(address=address)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayError(f"--ray needs Ray, which is not installed here: run `make setup` (or "
                       f"`pip install '{RAY_VERSION_HINT}'`), or leave out --ray to use local processes") from None
    return ray


def _check_reachable(address: str) -> None:
    """A TCP connect to the cluster's head within a timeout: ``ray.init`` on an address
    nobody answers keeps retrying for minutes."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RayError(f"Ray address {address!r} is not host:port (for example 10.0.0.5:6379 or "
                       f"ray://10.0.0.5:10001)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise RayError(f"cannot reach the Ray cluster at {address} ({e}); start it with `ray start --head` on "
                       f"that machine, check the address (or RAY_ADDRESS), or leave out the address to start a "
                       f"local Ray instance") from None


@contextmanager
def ray_session(ex: RayExecutor, log=print) -> Iterator[object]:
    """Ray, initialised for the run: joined to ``ex.address`` or a local instance, shut down
    afterwards when this run started it (a caller that initialised Ray itself keeps it)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if ex.address:
            _check_reachable(ex.address)
        try:
            ray.init(address=ex.address, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise RayError(f"could not join the Ray cluster at {ex.address}: {e}") from None
        started = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
    log(f"[ray] {ex.describe()}: {len(nodes)} node(s), {cpus:g} CPUs")
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def node_label() -> str:
    """This process's node, short: its host name and the first characters of its Ray node id."""
    try:
        import ray

        nid = ray.get_runtime_context().get_node_id()[:8]
    except Exception:       # outside a Ray worker: the host alone
        nid = "local"
    return f"{socket.gethostname()}/{nid}"


def _on_node(fn: Callable, *args):
    """The task body: ``fn(*args)`` and the node it ran on (the arguments arrive one by one, so
    Ray resolves an object reference among them into its value)."""
    return fn(*args), node_label()


def task_map(ex: RayExecutor, fn: Callable, arg_tuples: Sequence[tuple], *, num_cpus: float = 1,
             num_gpus: float = 0, what: str = "task", on_done: Callable[[int, object, str], None] | None = None,
             poll: Callable[[], None] | None = None, poll_s: float = 2.0) -> list:
    """``fn(*args)`` for every tuple as a Ray task (inside `ray_session`); the results in
    order.  ``on_done(index, result, node)`` runs on the driver as each task finishes;
    ``poll()`` every ``poll_s`` while they run (a progress bar).  A task whose worker died is
    retried by Ray up to ``MAX_RETRIES`` times; a task that raised fails the run, naming it."""
    import ray

    remote = ray.remote(_on_node).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=MAX_RETRIES,
                                          retry_exceptions=False, name=getattr(fn, "__name__", "task"))
    fn_ref = ray.put(fn)
    index = {remote.remote(fn_ref, *args): i for i, args in enumerate(arg_tuples)}
    results: list = [None] * len(arg_tuples)
    pending = list(index)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=poll_s)
            for ref in done:
                i = index[ref]
                try:
                    value, node = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise RayError(f"{what} {i} failed on the cluster: {e.cause!r}") from e.cause
                except ray.exceptions.RayError as e:     # the worker or node died more than MAX_RETRIES times
                    raise RayError(f"{what} {i} was lost {MAX_RETRIES + 1} times (worker or node died): {e}") from None
                results[i] = value
                ex.per_node[node] = ex.per_node.get(node, 0) + 1
                if on_done:
                    on_done(i, value, node)
            if poll:
                poll()
    except BaseException:
        for ref in pending:            # Ctrl-C or a failed task: stop the rest
            ray.cancel(ref, force=True)
        raise
    return results


def progress_tally():
    """A Ray actor that keeps one count per key (a task's images done so far): tasks set
    theirs, the driver sums them for its one progress bar.  Setting, not adding, is what
    keeps a retried task from being counted twice."""
    ray = _import_ray()

    @ray.remote(num_cpus=0)
    class Tally:
        def __init__(self):
            self.counts: dict = {}

        def set(self, key, n: int) -> None:
            self.counts[key] = n

        def total(self) -> int:
            return sum(self.counts.values())

    return Tally.remote()


def per_node_line(ex: RayExecutor, unit: str) -> str:
    """``[ray] host/abc123: 3 shards, host/def456: 2 shards``: where the work ran."""
    parts = [f"{node}: {n} {unit}" for node, n in sorted(ex.per_node.items())]
    return "[ray] per node: " + ", ".join(parts)

