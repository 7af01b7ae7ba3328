"""The hls4ml path: the IR as an hls4ml project with the spiking extension, C-simulated with
g++ and compared with the golden interpreter (scores and every layer's spike trains)."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from ticketforge.hls.csim import run_csim
from ticketforge.hls.from_ir import layer_list, traced_layers
from ticketforge.ir import golden
from ticketforge.ir.random import random_graph, random_images
from ticketforge.errors import UnsupportedError
from ticketforge.ir.schema import Layer


def _features(g) -> set[str]:
    f = set()
    for l in g.layers:
        f.add(l.kind)
        if l.neuron:
            f |= {l.neuron.leak, l.neuron.reset}
            nm = g.tensor(l, "neuron_mask")
            f |= {"pruned"} if nm.min() == 0 else set()
            f |= {"all_pruned"} if nm.max() == 0 else set()
            f |= {"wide_weights"} if l.weight_bits > 2 else set()
    return f


# seeds 4 and 19 between them hold every layer kind, leak, reset, pruned neurons, a fully
# pruned layer and multi-bit weights (checked below); 5 is the binary-weight case
SEEDS = [(4, False), (19, False), (5, True)]


def test_random_irs_cover_the_features():
    covered = set().union(*(_features(random_graph(s, binary=b)) for s, b in SEEDS))
    assert {"conv", "linear", "pool", "flatten", "output", "none", "shift", "fixed", "hard", "soft", "pruned",
            "all_pruned", "wide_weights"} <= covered


@pytest.mark.parametrize("seed,binary", SEEDS)
def test_csim_equals_golden_on_random_ir(tmp_path, seed, binary):
    g = random_graph(seed, binary=binary)
    images = random_images(g, 12, seed=seed)
    labels = np.zeros(len(images), dtype=np.int64)
    res = run_csim(g, images, labels, tmp_path, jobs=1, progress=False)
    assert res["images"] == 12
    assert res["matches_golden"], res["mismatched_images"]
    scores = np.load(tmp_path / "scores.npy")
    assert np.array_equal(scores, golden.run(g, images).scores)
    # saturation is exercised: some layer's H leaves its membrane range on these images
    rng = golden.run(g, images, measure_range=True).h_range
    if seed == 4:
        assert any(lo < l.neuron.vmin or hi > l.neuron.vmax
                   for l in g.layers if l.neuron and l.name in rng for lo, hi in [rng[l.name]])


def test_csim_of_a_residual_ir_equals_its_golden_model(tmp_path):
    """Seed 82 of the residual generator: a conv skip of stride 4 and a linear skip, built as
    two-source hls4ml layers (no copy neurons); C-sim scores == the residual IR's golden
    scores."""
    g = random_graph(82, residual=True)
    assert [(l.kind, l.skip_stride) for l in g.layers if l.has_skip] == [("conv", 4), ("linear", 1)]
    images = random_images(g, 12, seed=82)
    res = run_csim(g, images, np.zeros(len(images), dtype=np.int64), tmp_path, jobs=1, progress=False)
    assert res["matches_golden"], res["mismatched_images"]
    assert np.array_equal(np.load(tmp_path / "scores.npy"), golden.run(g, images).scores)
    assert [d["class_name"] for d in layer_list(g) if d.get("skip_c")] == ["SpikingSkipLIF"] * 2


@pytest.mark.parametrize("seed", [5, 33])      # seeds whose attention layer fires on these images
def test_csim_of_a_transformer_dag_equals_its_golden_model(tmp_path, seed):
    """Random DAGs with residuals and spiking self-attention (Q, K, V from one source, a
    three-input `SpikeAttention`): C-sim scores and every neuron layer's spike trains, the
    attention layer's included, == golden, and the attention neurons do fire."""
    g = random_graph(seed, residual=True, attention=True)
    att = [l.name for l in g.layers if l.kind == "attention"]
    assert att and set(att) <= set(traced_layers(g))
    images = random_images(g, 10, seed=seed)
    res = run_csim(g, images, np.zeros(len(images), dtype=np.int64), tmp_path, jobs=1, progress=False)
    assert res["matches_golden"], res["mismatched_images"]
    ref = golden.run(g, images, trace=True)
    assert all(ref.spikes[name].any() for name in att)
    assert np.array_equal(np.load(tmp_path / "scores.npy"), ref.scores)
    work = res["synapse_loop_iterations_per_image"]["per_layer"]
    assert all(work[name]["kept"] <= work[name]["dense"] for name in att)


def test_generated_code_iterates_live_neurons_and_kept_synapses_only(tmp_path):
    g = random_graph(4)
    run_csim(g, random_images(g, 2), np.zeros(2, np.int64), tmp_path, jobs=1, progress=False)
    fw = tmp_path / "project" / "firmware"
    params = (fw / "parameters.h").read_text()
    checked = 0
    for l in g.layers:
        if l.neuron is None:
            continue
        m = re.search(rf"// {l.name}\nstruct config(\d+) : nnet::lif_config \{{(.*?)\}};", params, re.S)
        assert m, f"layer {l.name} has no lif config in parameters.h"
        index, body = m.group(1), m.group(2)
        live = int(g.tensor(l, "neuron_mask").sum())
        kept = int(np.count_nonzero(g.tensor(l, "weight")))
        # the C++ loop bounds: n_live neurons, and per channel its CSR range of kept synapses
        assert f"n_live = {live}," in body
        assert f"n_taps = {max(kept, 1)};" in body
        assert f"taps{index}[{max(kept, 1)}]" in (fw / "weights" / f"taps{index}.h").read_text()
        assert f"live{index}[{max(live, 1)}]" in (fw / "weights" / f"live{index}.h").read_text()
        checked += 1
    assert checked >= 2
    # the reported loop work is what these tables make the C++ iterate
    from ticketforge.hls.from_ir import loop_work
    work = loop_work(g)
    for l in g.layers:
        if l.neuron is None:
            continue
        index = re.search(rf"// {l.name}\nstruct config(\d+)", params).group(1)
        live = np.loadtxt(fw / "weights" / f"live{index}.txt", delimiter=",", ndmin=1).astype(int)
        start = np.loadtxt(fw / "weights" / f"tap_start{index}.txt", delimiter=",", ndmin=1).astype(int)
        n_live = int(g.tensor(l, "neuron_mask").sum())
        plane = int(np.prod(l.out_shape[1:])) if l.kind == "conv" else 1
        o = live[:n_live] // plane
        assert work[l.name]["kept"] == g.T * int((start[o + 1] - start[o]).sum())
        assert work[l.name]["live_neurons"] == n_live
    top = (fw / "ticketforge.cpp").read_text()
    # one dataflow process per layer; spike tensors stay arrays (block RAM), not registers
    assert "#pragma HLS DATAFLOW" in top and "#pragma HLS PIPELINE" not in top
    assert len(re.findall(r"ARRAY_PARTITION variable=layer\d+_out complete", top)) == 1   # the scores only


def test_a_pool_before_any_neuron_layer_is_refused_with_its_name():
    g = random_graph(5, binary=True)
    conv = next(l for l in g.layers if l.kind == "conv")
    c, h, w = conv.in_shape
    pool = Layer("early_pool", "pool", (c, h, w), (c, h // 2, w // 2), kernel=2, stride=2)
    bad = dataclasses.replace(g, layers=(pool,) + g.layers)
    with pytest.raises(UnsupportedError, match="early_pool"):
        layer_list(bad)


def test_unknown_backend_is_refused():
    from ticketforge.hls.extension import register

    with pytest.raises(ValueError, match="Vitis, Vivado"):
        register("Quartus")


@pytest.mark.float_sensitive
def test_bnn_baseline_through_brevitas_qonnx_and_hls4ml_matches_brevitas(tmp_path):
    """A small BNN-BinAct MLP (untrained weights, non-trivial batch-norm statistics):
    brevitas -> QONNX -> hls4ml C simulation gives brevitas' scores.

    brevitas, torch and hls4ml's fixed point are three implementations that agree up to
    rounding: an activation input within rounding of 0 flips with the order of additions,
    and so may the argmax of two nearly equal scores.  Every comparison is therefore made on
    the images whose decisions are all clear of ``NEAR_TIE`` (1e-4, 36x the largest float32
    rounding measured by bench/float_margins.py), measured in float64, and the test asks
    for enough such images that it cannot pass vacuously.  The inputs lie on brevitas' 8-bit
    input grid (k/255, with a 255 so that the calibrated scale is 1/255): off the grid,
    brevitas quantizes the input and torch does not, a real difference, not rounding."""
    import torch

    from ticketforge.hls.bnn import run_bnn_csim
    from ticketforge.model.bnn_qonnx import export_bnn
    from ticketforge.model.config import load_config
    from ticketforge.model.margins import NEAR_TIE, decision_margins
    from ticketforge.model.zoo import build_model

    cfg = load_config("mlp_binw_digits", {"model.variant": "bnn"})
    torch.manual_seed(0)
    net = build_model(cfg.model, (1, 8, 8), 10)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-2, 2)
            m.running_var.uniform_(0.5, 2)
    net.eval()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (40, 1, 8, 8))
    codes[0, 0, 0, 0] = 255
    images = torch.from_numpy(codes).float() / 255
    labels = rng.integers(0, 10, 40)
    info = export_bnn(net, images, images, labels, tmp_path / "export")
    assert info["input_scale"] == np.float32(1 / 255)
    margins = decision_margins(net, images)
    settled, clear = margins.settled(), margins.clear()
    assert info["near_tie_margin"] == NEAR_TIE
    assert (info["images_settled"], info["images_clear"]) == (settled.sum(), clear.sum())
    assert settled.sum() >= 36 and clear.sum() >= 20, margins.summary()
    ref = np.load(tmp_path / "export" / "reference.npz")
    bre, tor = ref["brevitas_scores"], ref["torch_scores"]
    assert np.array_equal(bre[clear].argmax(1), tor[clear].argmax(1))
    assert info["prediction_agreement_brevitas_torch_clear"] == 1.0
    res = run_bnn_csim(tmp_path / "export", tmp_path / "hls", "tiny_bnn", jobs=1, progress=False)
    assert res["images"] == 40 and res["images_settled"] == settled.sum()
    scores = np.load(tmp_path / "hls" / "scores.npy")
    # equal up to float32 rounding of the outputs wherever no activation is near a tie
    rel = np.abs(scores - bre).max(1) / np.abs(bre).max(1)
    assert rel[settled].max() < 1e-6 and res["score_max_rel_diff_settled"] == rel[settled].max(), res
    assert np.array_equal(scores[clear].argmax(1), bre[clear].argmax(1))
    assert res["prediction_agreement_hls_brevitas_clear"] == 1.0


def test_cli_refuses_bad_hls_requests_before_any_work(tmp_path, capsys):
    from ticketforge.cli import main

    assert main(["hls", "--config", "vgg9_binw", "--build-dir", str(tmp_path), "--baseline", "vgg9_binw"]) == 2
    assert "needs a `bnn` variant config" in capsys.readouterr().err
    assert main(["hls", "--config", "vgg9_binw", "--build-dir", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["hls", "--config", "vgg9_binw", "--build-dir", str(tmp_path)]) == 2
    assert "run `ticketforge quantize --config vgg9_binw` first" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())                 # nothing written


def test_vivado_backend_equals_golden_too(tmp_path):
    g = random_graph(5, binary=True)
    images = random_images(g, 6, seed=1)
    res = run_csim(g, images, np.zeros(6, np.int64), tmp_path, jobs=1, backend="Vivado", progress=False)
    assert res["backend"] == "Vivado" and res["matches_golden"]


def test_csim_on_two_processes_gives_the_same_scores(tmp_path):
    g = random_graph(19)
    images = random_images(g, 45, seed=2)                 # 3 chunks over 2 forked workers
    res = run_csim(g, images, np.zeros(45, np.int64), tmp_path, jobs=2, progress=False)
    assert res["matches_golden"] and res["images"] == 45
    assert np.array_equal(np.load(tmp_path / "scores.npy"), golden.run(g, images).scores)
