"""Ctrl-C and SIGTERM end a run and every process it started."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli, tiny_template
from ticketforge.interrupt import alive, descendants, end_children

# a child that ignores SIGTERM (as some simulators ignore SIGINT) with a grandchild of its own
STUBBORN = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")


def test_end_children_ends_the_whole_tree_sigkill_after_the_grace():
    kids = [subprocess.Popen([sys.executable, "-c", STUBBORN]) for _ in range(2)]
    deadline = time.monotonic() + 20
    while len(descendants(os.getpid())) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = descendants(os.getpid())
    assert len(tree) >= 4 and {k.pid for k in kids} <= set(tree)
    t0 = time.monotonic()
    assert end_children(grace_s=0.5) >= 4
    assert time.monotonic() - t0 < 5
    for k in kids:
        k.wait(timeout=5)                     # reaped: they were killed, not left running
    assert not any(alive(p) for p in tree)


@pytest.fixture(scope="module")
def tiny_rtl(tmp_path_factory, root):
    tmp = tmp_path_factory.mktemp("intr")
    cfg = tmp / "tinyint.toml"
    cfg.write_text(tiny_template(T=2, seed=1).format(arch="mlp", variant="binw"))
    build = tmp / "build"
    for stage in ("train", "quantize", "rtl"):
        r = run_cli(stage, "--config", str(cfg), "--build-dir", str(build), *(["--quiet"] if stage == "train" else []),
                    cwd=root)
        assert r.returncode == 0, r.stdout + r.stderr
    return cfg, build


def test_ctrl_c_stops_a_regression_and_its_simulators(tiny_rtl, root):
    """SIGINT to the process group, as a terminal sends it, during the Icarus regression."""
    cfg, build = tiny_rtl
    proc = subprocess.Popen([sys.executable, "-m", "ticketforge", "sim", "--config", str(cfg), "--build-dir",
                             str(build), "--simulator", "icarus", "--images", "all", "--jobs", "2", "--quiet"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        sims = []
        while time.monotonic() < deadline and proc.poll() is None and not sims:
            sims = [p for p in descendants(proc.pid) if _comm(p) == "vvp"]
            time.sleep(0.1)
        assert proc.poll() is None and sims, "the regression ended before a simulator was seen"
        tree = descendants(proc.pid)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
        assert proc.returncode == 128 + signal.SIGINT, err
        assert stopped_in < 15, stopped_in
        assert "stopped by SIGINT; every process it started has ended" in err and "Traceback" not in err, err
        time.sleep(0.5)
        assert not [p for p in tree if alive(p)], [(p, _comm(p)) for p in tree if alive(p)]
        assert not (build / cfg.stem / "sim" / "results.json").exists()      # no record of a stage not finished
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)        # a failed check leaves nothing running either
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_a_second_run_on_a_busy_build_folder_is_refused_naming_the_holder(tmp_path, root):
    from ticketforge.buildlock import BuildBusyError, build_lock

    with build_lock(tmp_path / "b" / "vgg9_binw", "hw"):
        r = run_cli("quantize", "--config", "vgg9_binw", "--build-dir", str(tmp_path / "b"), cwd=root)
        assert r.returncode == 2 and f"is in use by process {os.getpid()} (`ticketforge hw`)" in r.stderr, r.stderr
        with pytest.raises(BuildBusyError, match="in use"):
            with build_lock(tmp_path / "b" / "vgg9_binw", "rtl"):
                pass
    # released with its holder; a refused command on a fresh folder leaves nothing behind
    r = run_cli("quantize", "--config", "vgg9_binw", "--build-dir", str(tmp_path / "c"), cwd=root)
    assert r.returncode == 2 and "ticketforge train" in r.stderr and not (tmp_path / "c").exists()


# A run that takes the build folder's lock, starts a simulator-like child working inside the
# folder and forks a worker (which inherits the lock), then waits to be killed.
KILLED_RUN = """
import os, subprocess, sys, time
from pathlib import Path
from ticketforge.buildlock import build_lock
folder = Path(sys.argv[1])
with build_lock(folder, "hw"):
    (folder / "sim").mkdir(exist_ok=True)
    sim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=folder / "sim")
    worker = os.fork()
    if worker == 0:
        time.sleep(120)
        os._exit(0)
    print(sim.pid, worker, flush=True)
    time.sleep(120)
"""


def test_what_a_sigkilled_run_left_in_its_folder_is_ended_by_the_next_run(tmp_path, root, capsys):
    """kill -9 of a run cannot end its children; the next run on the folder finds them (working
    inside it, or holding its lock) and ends them before it starts."""
    from ticketforge.buildlock import build_lock, orphans_in

    folder = tmp_path / "b" / "tiny"
    folder.mkdir(parents=True)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(folder)], cwd=root, stdout=subprocess.PIPE,
                           text=True, start_new_session=True)
    sim, worker = map(int, run.stdout.readline().split())
    run.kill()
    run.wait(timeout=10)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {sim, worker} <= set(orphans_in(folder, run.pid)):
            time.sleep(0.05)
        assert {sim, worker} <= set(orphans_in(folder, run.pid)), "the killed run's children were not seen"
        with build_lock(folder, "hw"):                 # the worker held the lock: taken all the same
            assert not alive(sim) and not alive(worker)
        assert "ended 2 process(es) left working in" in capsys.readouterr().err
    finally:
        for p in (sim, worker):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
