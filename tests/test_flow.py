"""The model stage end to end through the command line, on tiny settings."""
import json
import subprocess
import sys

import pytest

from conftest import run_cli, tiny_template

TINY = tiny_template(T=2, seed=3)


# float training compared with ==: both runs are on this machine, in this environment, so
# rounding is the same in both; `make test-portable` checks that under each kernel set and
# thread count (a reduction whose order varied from run to run would show there)
@pytest.mark.float_sensitive
@pytest.mark.parametrize("variant", ["binw", "ann"])
def test_train_then_eval_reproduces_exactly(tmp_path, root, variant):
    cfg = tmp_path / f"tiny_{variant}.toml"
    cfg.write_text(TINY.format(arch="conv4", variant=variant))
    build = tmp_path / "build"
    r = run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    tdir = build / cfg.stem / "ticket"
    for f in ("model.pt", "ticket.npz", "ticket.json", "metrics.json"):
        assert (tdir / f).is_file(), f
    m = json.loads((tdir / "metrics.json").read_text())
    assert len(m["epochs"]) == 2 and m["test_images"] == 128
    assert m["final_test_accuracy"] > 0.5                    # 4 classes: chance is 0.25
    assert set(m["energy"]) >= {"layers", "sops_total", "energy_uj"}
    assert bool(m["firing_rate"]) == (variant != "ann")     # an ANN has no spikes
    r = run_cli("eval", "--config", str(cfg), "--build-dir", str(build), cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reproduced exactly" in r.stdout


def test_binw_ticket_arrays(tmp_path, root):
    import numpy as np
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(arch="conv4", variant="binw"))
    build = tmp_path / "build"
    assert run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet",
                   "--set", "train.epochs=1", cwd=root).returncode == 0
    z = dict(np.load(build / "tiny" / "ticket" / "ticket.npz"))
    meta = json.loads((build / "tiny" / "ticket" / "ticket.json").read_text())
    for layer in meta["layers"]:
        n = layer["name"]
        assert set(np.unique(z[f"{n}.sign"])) <= {-1, 1}
        assert abs(z[f"{n}.mask"].mean() - 0.6) < 0.01
        assert z[f"{n}.alpha"] > 0
    # fine-tuning the found ticket keeps its masks and yields a binary ticket again
    r = run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet",
                "--set", "train.epochs=1", "--set", f"train.finetune_from={build / 'tiny' / 'ticket'}",
                "--set", "train.lr=0.01", cwd=root)
    assert r.returncode == 0, r.stderr
    z2 = np.load(build / "tiny" / "ticket" / "ticket.npz")
    for layer in meta["layers"]:
        assert np.array_equal(z2[f"{layer['name']}.mask"], z[f"{layer['name']}.mask"])
    r = run_cli("eval", "--config", str(cfg), "--build-dir", str(build), cwd=root)
    assert "reproduced exactly" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("args, words", [
    (["train", "--config", "nope"], ["unknown config 'nope'", "vgg9_binw"]),
    (["train", "--config", "vgg9_binw", "--set", "model.arch=vgg99"], ["model.arch", "vgg99", "conv4"]),
    (["train", "--config", "vgg9_binw", "--set", "data.dataset=imagenet"], ["imagenet", "mnist5k"]),
    (["train", "--config", "vgg9_binw", "--set", "train.lr=fast"], ["train.lr", "fast", "float"]),
    (["eval", "--config", "vgg9_binw", "--build-dir", "/nonexistent"], ["not a ticket folder", "ticketforge train"]),
])
def test_bad_input_is_a_clear_error(root, args, words):
    r = run_cli(*args, cwd=root)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_cifar_dataset_without_files_is_clear(root, tmp_path):
    r = run_cli("train", "--config", "vgg9_binw", "--set", "data.dataset=cifar10",
                "--data-dir", str(tmp_path), cwd=root)
    assert r.returncode == 2 and "data_batch_1" in r.stderr


def test_importing_the_package_does_not_load_torch(root):
    code = ("import sys, ticketforge, ticketforge.model, ticketforge.model.config, ticketforge.cli; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_installed_as_one_distribution_without_bare_packages(tmp_path):
    code = ("import importlib.util as u, ticketforge.model, ticketforge.rtl, ticketforge.deploy; "
            "assert all(u.find_spec(bare) is None for bare in ('model', 'ir', 'rtl', 'sim', 'deploy')); "
            "print(ticketforge.model.__file__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from pathlib import Path
    script = Path(sys.executable).parent / "ticketforge"          # the console script
    for cmd in ([str(script), "--help"], [sys.executable, "-m", "ticketforge", "--help"]):
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0 and "train" in r.stdout, r.stderr


@pytest.mark.float_sensitive
def test_training_is_deterministic_for_a_seed(tmp_path, root):
    import numpy as np
    cfg = tmp_path / "det.toml"
    cfg.write_text(TINY.format(arch="mlp", variant="binw").replace("epochs = 2", "epochs = 1"))
    outs = []
    for run_id in ("a", "b"):
        build = tmp_path / run_id
        assert run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet",
                       cwd=root).returncode == 0
        outs.append((dict(np.load(build / "det" / "ticket" / "ticket.npz")),
                     json.loads((build / "det" / "ticket" / "metrics.json").read_text())))
    (za, ma), (zb, mb) = outs
    assert set(za) == set(zb) and all(np.array_equal(za[k], zb[k]) for k in za)
    assert [e["test_accuracy"] for e in ma["epochs"]] == [e["test_accuracy"] for e in mb["epochs"]]
