"""The model stage's acceptance figures (slow: `make test-slow`)."""
import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_vgg9_binw_on_mnist5k_reaches_95_percent_within_10_minutes(tmp_path, root):
    build = tmp_path / "build"
    r = run_cli("train", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    m = json.loads((build / "vgg9_binw" / "ticket" / "metrics.json").read_text())
    assert m["final_test_accuracy"] >= 0.95, m["final_test_accuracy"]
    assert m["search_seconds"] <= 600, m["search_seconds"]
    r = run_cli("eval", "--config", "vgg9_binw", "--build-dir", str(build), cwd=root)
    assert r.returncode == 0 and "reproduced exactly" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_vgg9_binw_integer_ir_within_half_a_point(tmp_path, root):
    build = tmp_path / "build"
    r = run_cli("hw", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", "--images", "20", cwd=root)
    assert r.returncode == 0, r.stderr
    m = json.loads((build / "vgg9_binw" / "ir" / "metrics.json").read_text())
    assert m["images"] == 1000
    assert abs(m["accuracy_float"] - m["accuracy_integer"]) <= 0.005, m
    assert m["golden_seconds"] < 60, m["golden_seconds"]
    # a second run skips both stages
    r = run_cli("hw", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", "--images", "20", cwd=root)
    assert "kept" in r.stdout and r.stdout.count("kept") == 4, r.stdout


@pytest.mark.slow
def test_imp_ticket_at_90_percent_sparsity_and_early_time_speedup(tmp_path, root):
    build = tmp_path / "build"
    for args in (["train"], ["prune", "--method", "imp"], ["prune", "--method", "et-imp"]):
        r = run_cli(*args, "--config", "conv4_snn_lth", "--build-dir", str(build), "--quiet", cwd=root)
        assert r.returncode == 0, r.stderr
    dense = json.loads((build / "conv4_snn_lth" / "ticket" / "metrics.json").read_text())
    imp = json.loads((build / "conv4_snn_lth" / "prune-imp" / "metrics.json").read_text())
    et = json.loads((build / "conv4_snn_lth" / "prune-et-imp" / "metrics.json").read_text())
    assert imp["prune"]["synapse_sparsity"] >= 0.89
    assert dense["final_test_accuracy"] - imp["final_test_accuracy"] <= 0.015
    assert et["search_seconds"] < imp["search_seconds"]


@pytest.mark.slow
def test_dynsnn_removes_30_percent_of_neurons_for_at_most_one_point(tmp_path, root):
    build = tmp_path / "build"
    assert run_cli("train", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", cwd=root).returncode == 0
    r = run_cli("prune", "--config", "vgg9_binw", "--method", "dynsnn", "--sparsity", "0.3",
                "--set", "prune.recover_epochs=2", "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    base = json.loads((build / "vgg9_binw" / "ticket" / "metrics.json").read_text())
    m = json.loads((build / "vgg9_binw" / "prune-dynsnn" / "metrics.json").read_text())
    assert m["prune"]["neurons_removed_fraction"] >= 0.3
    assert base["final_test_accuracy"] - m["final_test_accuracy"] <= 0.01
