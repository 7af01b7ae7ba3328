"""`ticketforge explore` (deploy/explore.py): the grid, the Pareto front and the choice, and
a whole exploration of a small IR on the iCE40 board, cached on a rerun."""
import json

import numpy as np
import pytest

from ticketforge.deploy.explore import expand_points, fastest_fit, pareto, parse_hw_grid
from ticketforge.errors import ConfigError
from ticketforge.ir import random_images, save_graph
from ticketforge.ir.random import random_graph
from ticketforge.model.config import load_config

from conftest import run_cli, tiny_template


def _row(lat, luts, brams, fits=True):
    return {"latency_us": lat, "resources": {"luts": luts, "brams": brams}, "fits": fits}


def test_pareto_keeps_the_points_no_other_beats():
    rows = [_row(10, 100, 4), _row(5, 200, 4), _row(5, 250, 4), _row(20, 50, 8), _row(10, 100, 4)]
    # 2 is beaten by 1 (as fast, fewer LUTs); the equal points 0 and 4 do not beat each other
    assert pareto(rows) == [0, 1, 3, 4]


def test_the_fastest_point_that_fits_is_chosen():
    rows = [_row(10, 100, 4), _row(5, 9000, 4, fits=False), _row(7, 300, 4), _row(7, 200, 4)]
    assert fastest_fit(rows) == 3                 # 1 is faster but does not fit; 3 ties 2 with fewer LUTs
    assert fastest_fit([_row(1, 1, 1, fits=False)]) is None


def test_grid_keys_and_values_are_checked_before_anything_runs(tmp_path):
    cfg_file = tmp_path / "t.toml"
    cfg_file.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw"))
    cfg = load_config(str(cfg_file))
    with pytest.raises(ConfigError, match="one of datapath, pes"):
        parse_hw_grid(["lanes=4,8"])
    with pytest.raises(ConfigError, match="no values"):
        parse_hw_grid(["pes="])
    with pytest.raises(ConfigError, match="hw.weights"):
        expand_points(cfg, parse_hw_grid(["weights=flash"]))
    with pytest.raises(ConfigError, match="lane count of the bitpar datapath"):
        expand_points(cfg, parse_hw_grid(["datapath=bitpar", "pes=12"]))
    pts = expand_points(cfg, parse_hw_grid(["hw.pes=1,2", "datapath=lane,bitpar", "fifo_depth=8"]))
    assert len(pts) == 4
    assert [p["hw"]["fifo_depth"] for p in pts if p["hw"]["datapath"] == "bitpar"] == [None, None]


def _tiny_explore(tmp_path):
    """A config naming the icebreaker, a random IR with its test inputs, the explore command."""
    cfg_file = tmp_path / "tiny_explore.toml"
    cfg_file.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw")
                        + '[hw]\nboard = "icebreaker"\npes = 2\n')
    g = random_graph(1002, binary=True)
    ir = tmp_path / "build" / "tiny_explore" / "ir"
    save_graph(g, ir)
    codes = random_images(g, 4, 0)
    np.savez(ir / "test_inputs.npz", codes=codes, labels=np.zeros(len(codes), np.int64))
    args = ["explore", "--config", str(cfg_file), "--grid", "pes=1,2,4", "--images", "3",
            "--build-dir", str(tmp_path / "build"), "--jobs", "2"]
    return g, codes, args, tmp_path / "build" / "tiny_explore" / "explore" / "icebreaker"


def test_explore_measures_tabulates_plots_and_caches(tmp_path, root):
    g, codes, args, folder = _tiny_explore(tmp_path)
    r = run_cli(*args, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads((folder / "explore.json").read_text())
    assert len(out["points"]) == 3 and out["images"] == 3
    from ticketforge.rtl.datapath import cycle_model
    for p in out["points"]:
        exact = np.mean([m.total for m in cycle_model(g, codes[:3], p["hw"]["pes"], "lane")])
        assert p["cycles"] == exact                           # the cycle model's own figure
        assert p["resources"]["luts"] > 0 and p["latency_us"] == round(exact / out["clock_mhz"], 2)
    luts = [p["resources"]["luts"] for p in out["points"]]
    assert luts[0] < luts[2]                                  # more PEs, more logic
    assert out["fastest_fit"] is not None and out["points"][out["fastest_fit"]]["fits"]
    assert out["config_point"] == 1                           # the config's pes = 2
    assert "Fastest point that fits" in (folder / "explore.md").read_text()
    assert (folder / "explore.png").read_bytes()[:4] == b"\x89PNG"
    r = run_cli(*args, cwd=root)
    assert r.returncode == 0 and r.stdout.count("cached") == 3, r.stdout + r.stderr


@pytest.mark.slow
def test_place_best_places_only_the_fastest_point_that_fits(tmp_path, root):
    _, _, args, folder = _tiny_explore(tmp_path)
    assert run_cli(*args, cwd=root).returncode == 0
    # --place best: the yosys figures are cached; only the fastest point that fits is placed
    r = run_cli(*args, "--place", "best", cwd=root)
    assert r.returncode == 0 and r.stdout.count("cached") == 3, r.stdout + r.stderr
    out = json.loads((folder / "explore.json").read_text())
    placed = [i for i, p in enumerate(out["points"]) if p["placed"]]
    best = out["fastest_fit"]
    assert best is not None and best in placed and out["points"][best]["fmax_mhz"] > 0
    assert all(out["points"][i]["latency_us"] <= out["points"][best]["latency_us"] for i in placed)


def test_explore_without_an_ir_names_the_command(tmp_path, root):
    cfg_file = tmp_path / "noir.toml"
    cfg_file.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw"))
    r = run_cli("explore", "--config", str(cfg_file), "--grid", "pes=1,2", "--build-dir", str(tmp_path / "b"),
                cwd=root)
    assert r.returncode == 2 and "ticketforge quantize --config noir" in r.stderr
