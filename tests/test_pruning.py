"""Pruning methods on tiny models: masks, IMP rewinding, Early-Bird, Early-Time, DynSNN."""
import json

import pytest
import torch

from conftest import run_cli
from ticketforge.model.config import ModelConfig, load_config
from ticketforge.model.layers import masked_layers
from ticketforge.model.pruning import dynsnn, lth
from ticketforge.model.pruning.masks import current_masks, mask_distance, prune_by_score, set_masks, sparsity
from ticketforge.model.zoo import build_model, neuron_gates

TINY = """
[model]
arch = "{arch}"
variant = "{variant}"
width = 0.125
T = 4
[data]
dataset = "synthetic"
batch_size = 32
[train]
epochs = 1
optimizer = "adam"
lr = 0.01
weight_decay = 0.0
seed = 2
[prune]
rounds = 2
rate = 0.5
rewind_epoch = 1
eb_window = 1
eb_max_epochs = 3
reactivate_epoch = 1
calibration_images = 64
et_warmup_epochs = 1
et_images = 64
"""


def _net(arch="mlp", variant="snn"):
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, variant=variant, width=0.125, T=4), (1, 8, 8), 4)


def test_global_and_local_magnitude_pruning_reach_the_target():
    net = _net("conv4")
    scores = {n: m.weight.detach().abs() for n, m in masked_layers(net)}
    masks = current_masks(net)
    g = prune_by_score(scores, masks, 0.75, "global")
    assert abs(sparsity(g) - 0.75) < 1e-3
    loc = prune_by_score(scores, masks, 0.75, "local")
    for n, m in loc.items():
        assert abs((1 - float(m.mean())) - 0.75) < 1.0 / m.numel() + 1e-6
    # pruning again never resurrects a masked weight and reaches the next level
    g2 = prune_by_score(scores, g, 0.875, "global")
    assert all(bool(((g2[n] == 1) <= (g[n] == 1)).all()) for n in g)
    assert abs(sparsity(g2) - 0.875) < 1e-3
    assert mask_distance(g, g) == 0.0 and mask_distance(g, g2) > 0


def test_rewinding_restores_the_rewind_weights_and_keeps_masks():
    net = _net()
    state = lth._weights_state(net)
    masks = prune_by_score({n: m.weight.detach().abs() for n, m in masked_layers(net)},
                           current_masks(net), 0.5)
    with torch.no_grad():
        for _, m in masked_layers(net):
            m.weight.add_(1.0)
    set_masks(net, masks)
    lth._rewind(net, state)
    for n, m in masked_layers(net):
        assert torch.equal(m.weight, state[f"{n}.weight"])
        assert torch.equal(m.mask, masks[n])


def test_rounds_and_target():
    assert lth.rounds_for(0.89, 0.25) == 8 and lth.rounds_for(0.8999, 0.25) == 9 and lth.rounds_for(0.5, 0.5) == 1
    cfg = load_config("vgg9_snn")
    assert abs(lth.target_sparsity(cfg) - (1 - 0.75 ** 8)) < 1e-12


class _Steps(torch.nn.Module):
    """A stand-in network whose per-timestep outputs are given."""
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def forward_steps(self, x):
        return self.steps


def test_kl_selection_picks_the_documented_t():
    # outputs converge to the T=5 distribution: timesteps 1-2 point elsewhere, 3-5 agree
    far = torch.tensor([[0.0, 4.0, 0.0]])
    near = torch.tensor([[4.0, 0.0, 0.0]])
    steps = torch.stack([far, far, near * 3, near, near])           # [T=5, B=1, K=3]
    prof = lth.kl_profile(_Steps(steps), None)
    assert prof[2] == 1.0 and prof[2] > prof[3] > prof[4]
    t = lth.pick_t_early(prof, 0.6, 5)
    assert t == min(k for k, v in prof.items() if v < 0.6)
    assert lth.pick_t_early({2: 1.0, 3: 0.9}, 0.6, 4) == 4          # none below lambda: full T


def test_fading_neuron_is_reactivated_then_pruned():
    net = _net("mlp")
    first = masked_layers(net)[0][1]
    with torch.no_grad():
        first.weight[3].fill_(-1.0)                                   # unit 3 can never fire
    x = torch.rand(32, 1, 8, 8)
    from ticketforge.model.data import Split
    import numpy as np
    calib = Split((x.numpy() * 255).astype(np.uint8), np.zeros(32, dtype=np.int64))
    fsr = dynsnn.fire_spike_rates(net, calib, 16, 255)
    gate_name = neuron_gates(net)[0][0]
    assert fsr[gate_name][3] == 0.0
    fading = {n: r < 0.01 for n, r in fsr.items()}
    before = first.weight[3].clone()
    done = dynsnn.reactivate(net, fading, torch.Generator().manual_seed(0))
    assert done[gate_name] >= 1 and not torch.equal(first.weight[3], before)
    with torch.no_grad():
        first.weight[3].fill_(-1.0)                                   # still fading at the end
    fsr = dynsnn.fire_spike_rates(net, calib, 16, 255)
    dynsnn.prune_inference(net, fsr, 0.01)
    gate = neuron_gates(net)[0][1]
    assert gate.mask[3] == 0
    rep = dynsnn.neuron_report(net)
    assert rep["neurons_removed"] >= 1


def test_threshold_for_fraction():
    fsr = {"a": torch.tensor([0.0, 0.1, 0.2, 0.3]), "b": torch.tensor([0.05, 0.5])}
    thr = dynsnn.threshold_for_fraction(fsr, 0.5)
    assert sum(int((v < thr).sum()) for v in fsr.values()) == 3


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("p")
    snn = d / "tiny_snn.toml"
    snn.write_text(TINY.format(arch="conv4", variant="snn"))
    binw = d / "tiny_binw.toml"
    binw.write_text(TINY.format(arch="conv4", variant="binw"))
    return d, snn, binw


@pytest.mark.parametrize("method", ["imp", "eb", "et-imp", "random", "snip", "transfer", "dynsnn-train"])
def test_prune_cli_methods(tiny_cfg, root, method):
    d, snn, _ = tiny_cfg
    build = d / f"build-{method}"
    r = run_cli("prune", "--config", str(snn), "--method", method, "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((build / "tiny_snn" / f"prune-{method}" / "metrics.json").read_text())
    p = m["prune"]
    assert m["search_seconds"] > 0 and "energy" in m and "neuron_density_per_layer" in m
    if method in ("imp", "eb", "et-imp", "random", "snip", "transfer"):
        assert abs(p["synapse_sparsity"] - 0.75) < 0.01, p["synapse_sparsity"]      # 1 - 0.5**2
    if method == "imp":
        assert [r["sparsity"] for r in p["rounds"]] == pytest.approx([0.5, 0.75], abs=0.01)
    if method == "et-imp":
        assert 2 <= p["t_early"] <= 4 and set(map(int, p["normalised_kl"])) == {2, 3}
    if method == "eb":
        # one distance per searched epoch after the first eb_window (1) of at most eb_max_epochs (3);
        # the search stops at the first distance under eb_tau, and that epoch is the ticket's
        from ticketforge.model.config import PruneConfig
        tau, d = PruneConfig().eb_tau, p["distances"]
        assert len(d) == (p["eb_epoch"] or 3) - 1 and d, d
        assert all(x >= tau for x in d[:-1]) and (d[-1] < tau) == (p["eb_epoch"] is not None), (d, p["eb_epoch"])


def test_dynsnn_on_a_binw_ticket(tiny_cfg, root):
    d, _, binw = tiny_cfg
    build = d / "build-dyn"
    assert run_cli("train", "--config", str(binw), "--build-dir", str(build), "--quiet", cwd=root).returncode == 0
    r = run_cli("prune", "--config", str(binw), "--method", "dynsnn", "--sparsity", "0.3",
                "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    m = json.loads((build / "tiny_binw" / "prune-dynsnn" / "metrics.json").read_text())
    assert m["prune"]["neurons_removed_fraction"] >= 0.3
    assert m["live_neurons"] < m["neurons"]
    # DynSNN removes neurons, not synapses: the ticket's own masks stay as they were
    import numpy as np
    z = np.load(build / "tiny_binw" / "ticket" / "ticket.npz")
    masks = [z[k] for k in z.files if k.endswith(".mask")]
    kept = sum(int(mk.sum()) for mk in masks) / sum(mk.size for mk in masks)
    assert masks and m["prune"]["synapse_sparsity"] == pytest.approx(1 - kept, abs=1e-9)
    # the neuron masks survive a reload and reach the IR
    r = run_cli("quantize", "--config", str(binw), "--ticket", str(build / "tiny_binw" / "prune-dynsnn"),
                "--build-dir", str(build), cwd=root)
    assert r.returncode == 0, r.stderr
    from ticketforge.ir import load_graph
    g = load_graph(build / "tiny_binw" / "ir")
    kept = sum(int(g.tensor(l, "neuron_mask").sum()) for l in g.layers if l.neuron)
    assert kept == m["live_neurons"]


def test_magnitude_methods_refuse_binw(tiny_cfg, root):
    d, _, binw = tiny_cfg
    r = run_cli("prune", "--config", str(binw), "--method", "imp", "--build-dir", str(d / "x"), cwd=root)
    assert r.returncode == 2 and "dynsnn" in r.stderr


def test_unknown_method(tiny_cfg, root):
    d, snn, _ = tiny_cfg
    r = run_cli("prune", "--config", str(snn), "--method", "magic", "--build-dir", str(d / "x"), cwd=root)
    assert r.returncode == 2 and "imp, eb" in r.stderr


def test_sweep_runs_in_parallel_caches_and_plots(tiny_cfg, root):
    d, snn, _ = tiny_cfg
    build = d / "build-sweep"
    args = ["sweep", "--config", str(snn), "--grid", "method=random,snip", "--grid", "sparsity=0.5,0.75",
            "--build-dir", str(build), "--jobs", "2"]
    r = run_cli(*args, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    sweep = json.loads((build / "tiny_snn" / "sweep" / "sweep-method-sparsity.json").read_text())
    assert len(sweep["points"]) == 4
    reached = sorted(round(p["synapse_sparsity"], 2) for p in sweep["points"])
    assert reached == [0.5, 0.5, 0.75, 0.75]
    png = build / "tiny_snn" / "sweep" / "accuracy_vs_sparsity.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    r = run_cli(*args, cwd=root)
    assert r.stdout.count("cached") == 4, r.stdout


def test_sweep_rejects_bad_grid(tiny_cfg, root):
    d, snn, _ = tiny_cfg
    r = run_cli("sweep", "--config", str(snn), "--grid", "r_p=lots", "--build-dir", str(d / "y"), cwd=root)
    assert r.returncode == 2 and "model.r_p" in r.stderr


def test_multisp_prunes_the_weakest_patches_and_they_never_fire(tmp_path, root):
    """MultiSp on a tiny spikformer (8x8 synthetic images: 2x2 patches): stage 1 trains the
    ConvPEP's BinW-SLT ticket, stage 2 keeps the half of the patches with the strongest
    embedding; a pruned patch is 0 in every channel at every timestep."""
    from ticketforge.model.data import load_dataset
    from ticketforge.model.pruning.multisp import patch_gate, patch_importance, prune_patches
    from ticketforge.model.ticket import load_ticket

    cfg = tmp_path / "tinysf.toml"
    cfg.write_text('[model]\narch = "spikformer"\nvariant = "snn"\npep_weights = "binw"\nwidth = 0.125\nT = 2\n'
                   'r_p = 0.4\npatch_prune = 0.5\n[data]\ndataset = "synthetic"\nbatch_size = 32\n'
                   '[train]\nepochs = 1\npatch_epochs = 1\noptimizer = "adam"\nlr = 0.01\nweight_decay = 0.0\n')
    r = run_cli("train", "--config", str(cfg), "--build-dir", str(tmp_path / "b"), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    ticket = tmp_path / "b" / "tinysf" / "ticket"
    m = json.loads((ticket / "metrics.json").read_text())
    assert (m["patches"], m["patches_kept"], m["patch_prune"]) == (4, 2, 0.5) and len(m["epochs"]) == 2
    net, _, _ = load_ticket(ticket)
    keep = torch.tensor(m["patch_keep_mask"]).bool()
    assert torch.equal(patch_gate(net).mask.bool(), keep.expand_as(patch_gate(net).mask))
    out = []
    handle = patch_gate(net).register_forward_hook(lambda mod, i, o: out.append(o))
    net.eval()
    with torch.no_grad():
        net(torch.rand(16, 1, 8, 8))
    handle.remove()
    assert out[0][..., ~keep].abs().sum() == 0 and out[0][..., keep].sum() > 0
    # the ranking: the patches kept are those of the largest embedding magnitude
    ds = load_dataset("synthetic", None)
    imp = patch_importance(net, ds.train, 64, ds.pixel_max)
    kept = prune_patches(net, 0.25, imp)
    assert kept["patches_kept"] == 3 and imp.flatten().argmin() == torch.tensor(kept["patch_keep_mask"]).flatten().argmin()
    # the P_b sweep of bench/multisp_sweep.py from this ticket
    import importlib.util
    spec = importlib.util.spec_from_file_location("multisp_sweep", root / "bench" / "multisp_sweep.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.sweep(ticket, (0.25, 0.5), epochs=1)
    assert [(p["P_b"], p["patches_kept"], p["epochs"]) for p in res["points"]] == [(0.25, 3, 1), (0.5, 2, 1)]
    assert all(0 <= p["test_accuracy"] <= 1 for p in res["points"]) and res["P_a"] == 0.4
