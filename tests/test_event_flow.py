"""Event-camera data through the whole flow: an N-MNIST folder in the real file layout
(`.bin` files of events) -> a BinW-SLT ticket on its binned frames -> the IR with the
``events`` input -> the accelerator with the AER input -> the cocotb regression, every
sample identical to the golden model."""
import json

import numpy as np

from conftest import run_cli
from test_events import _nmnist_tree

CONFIG = """
[model]
arch = "mlp"
variant = "binw"
width = 0.05
T = 3
r_p = 0.5
[data]
dataset = "nmnist"
batch_size = 4
[train]
epochs = 1
optimizer = "adam"
lr = 0.01
weight_decay = 0.0
seed = 0
[hw]
pes = 2
"""


def test_event_data_from_files_to_the_verified_accelerator(tmp_path, root):
    _nmnist_tree(tmp_path / "data" / "NMNIST", per_digit=3)
    cfg = tmp_path / "events.toml"
    cfg.write_text(CONFIG)
    build = tmp_path / "build"
    env = {"TICKETFORGE_CACHE": str(tmp_path / "cache")}
    r = run_cli("hw", "--config", str(cfg), "--build-dir", str(build), "--data-dir", str(tmp_path / "data"),
                "--quiet", "--to", "sim", "--simulator", "icarus", cwd=root, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    from ticketforge.ir import load_graph, load_test_inputs, run

    ir = build / "events" / "ir"
    g = load_graph(ir)
    assert g.input.encoding == "events" and g.input.shape == (2, 34, 34) and g.input.bits == 1
    codes, labels = load_test_inputs(ir)
    assert codes.shape == (9, 3, 2, 34, 34) and set(np.unique(codes)) <= {0, 1}
    metrics = json.loads((ir / "metrics.json").read_text())
    assert metrics["accuracy_integer"] == float((run(g, codes).predictions == labels).mean())
    man = json.loads((build / "events" / "rtl" / "manifest.json").read_text())
    assert man["aer"]["capacity"] == 3 * (2 * 34 * 34 + 1) and man["aer"]["width"] == 14
    res = json.loads((build / "events" / "sim" / "results.json").read_text())
    assert res["rtl_matches_golden"] and res["cycles_equal_model"] and res["agree"] == 9
    assert res["accuracy_rtl"] == res["accuracy_golden"] == metrics["accuracy_integer"]
