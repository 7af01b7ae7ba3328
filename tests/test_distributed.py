"""Ray as the executor (`ticketforge.distributed`): a sweep and a regression on a real
two-node Ray cluster on this machine give what local processes give, and a worker killed
in the middle of a task is retried to the same result."""
import json
import os
import signal
import threading
import time

import pytest

from ticketforge.distributed import RayError, RayExecutor, ray_executor, ray_session
from ticketforge.ir import random_images, save_graph
from ticketforge.ir.random import random_graph
from ticketforge.rtl.emit import write_rtl
from ticketforge.sim.runner import run_sim

from conftest import run_cli, tiny_template

# what may differ between two runs of the same work: how long it took and where it ran
WALL_CLOCK = {"wall_seconds", "simulated_cycles_per_wall_second", "simulated_cycles_per_wall_second_per_process",
              "seconds", "search_seconds"}


def _without_wall_clock(d):
    if isinstance(d, dict):
        return {k: _without_wall_clock(v) for k, v in d.items() if k not in WALL_CLOCK}
    if isinstance(d, list):
        return [_without_wall_clock(v) for v in d]
    return d


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    d = tmp_path_factory.mktemp("design")
    g = random_graph(1004, binary=True)
    save_graph(g, d / "ir")
    write_rtl(d / "ir", d / "rtl", pes=2, run_lint=False, progress=_quiet)
    return d, g


def test_sim_on_two_ray_nodes_equals_local_processes(cluster, design, tmp_path):
    d, g = design
    x = random_images(g, 20, 7)
    local = run_sim(d / "rtl", g, x, tmp_path / "local", "icarus", traced=[0, 5], jobs=4, log=_quiet)
    ex = RayExecutor(address=cluster.address)
    on_ray = run_sim(d / "rtl", g, x, tmp_path / "ray", "icarus", traced=[0, 5], jobs=4, log=_quiet, executor=ex)
    assert local["agree"] == on_ray["agree"] == 20 and on_ray["rtl_matches_golden"]
    assert on_ray["processes"] == 4 and sum(ex.per_node.values()) == 4
    assert len(ex.per_node) == 2                    # both nodes ran shards
    files = [json.loads((p / "results.json").read_text()) for p in (tmp_path / "local", tmp_path / "ray")]
    assert _without_wall_clock(files[0]) == _without_wall_clock(files[1])


def _kill_first_shard_worker(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running a regression shard (its process title is
    ``ray::run_shard_on_node``)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if cmd.startswith(b"ray::run_shard_on_node"):
                time.sleep(0.5)                      # mid-task: its simulator is running
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.05)


def test_a_killed_worker_is_retried_to_the_same_result(cluster, design, tmp_path):
    d, g = design
    x = random_images(g, 10, 11)
    local = run_sim(d / "rtl", g, x, tmp_path / "local", "icarus", traced=[0], jobs=2, log=_quiet)
    killed: list = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_shard_worker, args=(killed, stop))
    killer.start()
    try:
        ex = RayExecutor(address=cluster.address)
        on_ray = run_sim(d / "rtl", g, x, tmp_path / "ray", "icarus", traced=[0], jobs=2, log=_quiet, executor=ex)
    finally:
        stop.set()
        killer.join()
    assert killed, "no shard worker was seen running"
    assert on_ray["agree"] == 10 and sum(ex.per_node.values()) == 2      # each shard counted once
    assert _without_wall_clock(on_ray) == _without_wall_clock(local)


def test_sweep_on_two_ray_nodes_equals_local_processes(cluster, tmp_path, root):
    cfg = tmp_path / "tiny_binw.toml"
    cfg.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw"))
    grid = ["--grid", "r_p=0.3,0.6", "--grid", "train.seed=0,1", "--set", "train.epochs=1"]
    r = run_cli("sweep", "--config", str(cfg), *grid, "--build-dir", str(tmp_path / "local"), "--jobs", "2", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("sweep", "--config", str(cfg), *grid, "--build-dir", str(tmp_path / "ray"), "--jobs", "2",
                "--ray", cluster.address, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ray] per node:" in r.stdout and r.stdout.count(" point(s)") >= 1
    name = "sweep-r_p-train_seed.json"
    a, b = (json.loads((tmp_path / w / "tiny_binw" / "sweep" / name).read_text()) for w in ("local", "ray"))
    assert len(b["points"]) == 4
    assert _without_wall_clock(a) == _without_wall_clock(b)
    for p in b["points"]:                   # the driver wrote each point's files into the cache
        folder = tmp_path / "ray" / "tiny_binw" / "sweep" / p["digest"]
        assert (folder / "metrics.json").is_file() and not folder.with_name(folder.name + ".part").exists()
    r = run_cli("sweep", "--config", str(cfg), *grid, "--build-dir", str(tmp_path / "ray"), "--ray",
                cluster.address, cwd=root)
    assert r.returncode == 0 and r.stdout.count("cached") == 4, r.stdout + r.stderr


@pytest.mark.slow
def test_explore_on_two_ray_nodes_equals_local_processes(cluster, design, tmp_path):
    import numpy as np

    from ticketforge.deploy.explore import parse_hw_grid, run_explore
    from ticketforge.model.config import load_config

    d, g = design
    cfg_file = tmp_path / "tiny_explore.toml"
    cfg_file.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw") + '[hw]\nboard = "icebreaker"\n')
    cfg = load_config(str(cfg_file))
    outs = []
    for where, ex in (("local", None), ("ray", RayExecutor(address=cluster.address))):
        ir = tmp_path / where / cfg.name / "ir"
        ir.mkdir(parents=True)
        for f in ("graph.json", "tensors.npz"):
            (ir / f).write_bytes((d / "ir" / f).read_bytes())
        np.savez(ir / "test_inputs.npz", codes=random_images(g, 3, 1), labels=np.zeros(3, np.int64))
        outs.append(run_explore(cfg, parse_hw_grid(["pes=1,2"]), tmp_path / where, "icebreaker", images=3,
                                jobs=2, executor=ex, log=_quiet))
    assert sum(ex.per_node.values()) == 2
    strip = lambda o: _without_wall_clock({k: v for k, v in o.items() if k not in ("folder", "plot")})  # noqa: E731
    assert strip(outs[0]) == strip(outs[1])


def test_an_unreachable_cluster_is_a_clear_error_within_the_timeout():
    t0 = time.monotonic()
    with pytest.raises(RayError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        with ray_session(RayExecutor(address="127.0.0.1:9"), log=_quiet):
            pass
    assert time.monotonic() - t0 < 15
    with pytest.raises(RayError, match="not host:port"):
        with ray_session(RayExecutor(address="nowhere"), log=_quiet):
            pass


def test_the_flag_picks_the_executor(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_executor(None) is None
    assert ray_executor("").address is None                  # a local instance
    assert ray_executor("10.0.0.5:6379").address == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert ray_executor("").address == "10.0.0.7:6379"
