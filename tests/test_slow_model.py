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
    r = run_cli("hw", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    m = json.loads((build / "vgg9_binw" / "ir" / "metrics.json").read_text())
    assert m["images"] == 1000
    assert abs(m["accuracy_float"] - m["accuracy_integer"]) <= 0.005, m
    assert m["golden_seconds"] < 60, m["golden_seconds"]
    # a second run skips both stages
    r = run_cli("hw", "--config", "vgg9_binw", "--build-dir", str(build), "--quiet", cwd=root)
    assert "kept" in r.stdout and r.stdout.count("kept") == 2, r.stdout
