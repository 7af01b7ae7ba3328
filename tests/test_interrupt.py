"""Ctrl-C and SIGTERM end a run and every process it started."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli, tiny_template
from ticketforge.interrupt import _alive, descendants, end_children

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
    assert not any(_alive(p) for p in tree)


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
        assert not [p for p in tree if _alive(p)], [(p, _comm(p)) for p in tree if _alive(p)]
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
