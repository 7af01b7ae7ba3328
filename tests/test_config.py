import pytest

from ticketforge.errors import ConfigError
from ticketforge.model.config import (ARCHITECTURES, DATASETS, VARIANTS, available_configs,
                                      build_config, load_config, parse_overrides)


def test_every_shipped_config_loads():
    names = available_configs()
    assert "vgg9_binw" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name


def test_vgg9_binw_is_the_papers_setting():
    cfg = load_config("vgg9_binw")
    assert (cfg.model.arch, cfg.model.variant, cfg.data.dataset) == ("vgg9", "binw", "mnist5k")
    assert cfg.model.r_p == 0.4 and cfg.model.T == 4 and cfg.model.lam == 0.99


def test_overrides_dotted_and_bare():
    cfg = load_config("vgg9_binw", parse_overrides(["train.epochs=3", "r_p=0.5", "bn_affine=true"]))
    assert cfg.train.epochs == 3 and cfg.model.r_p == 0.5 and cfg.model.bn_affine is True


@pytest.mark.parametrize("override, words", [
    ("model.arhc=vgg9", ["arhc", "model.arch", "model.width"]),
    ("nosuchkey=1", ["nosuchkey", "train.epochs"]),
    ("model.arch=vgg99", ["vgg99", *ARCHITECTURES]),
    ("model.variant=spiky", ["spiky", *VARIANTS]),
    ("data.dataset=imagenet", ["imagenet", *DATASETS]),
    ("train.epochs=three", ["train.epochs", "three", "int"]),
    ("model.r_p=1.5", ["model.r_p", "1.5"]),
    ("model.lam=1.0", ["model.lam"]),
    ("weights=1", ["weights"]),
    ("hw.datapath=systolic", ["hw.datapath", "lane", "bitpar", "rowstream"]),
    ("data.crop_pad=-1", ["data.crop_pad", "-1"]),
    ("hw.pes=12", ["hw.pes", "bitpar", "12"]),
])
def test_bad_overrides_name_the_key_and_allowed_values(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("vgg9_binw", parse_overrides([override]))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_bad_toml_values_name_key_and_type():
    with pytest.raises(ConfigError, match=r"model.T: expected int, got str"):
        build_config("x", {"model": {"T": "4"}}, {})
    with pytest.raises(ConfigError, match=r"unknown key model.depth; allowed keys in \[model\]"):
        build_config("x", {"model": {"depth": 4}}, {})
    with pytest.raises(ConfigError, match=r"unknown table"):
        build_config("x", {"optim": {}}, {})


def test_unknown_config_name_lists_known_ones():
    with pytest.raises(ConfigError, match="vgg9_binw"):
        load_config("no_such_model")


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_a_nir_config_needs_its_time_step_and_reset():
    with pytest.raises(ConfigError, match="nir.file needs nir.dt .* and nir.reset"):
        build_config("x", {"nir": {"file": "a.nir"}}, {})
    with pytest.raises(ConfigError, match="nir.weight_bits"):
        build_config("x", {"nir": {"file": "a.nir", "dt": 1e-4, "reset": "soft", "weight_bits": 12}}, {})
    c = build_config("x", {"nir": {"file": "a.nir", "dt": 1e-4, "reset": "soft"}}, {})
    assert (c.nir.weight_bits, c.nir.reset) == (8, "soft")
    assert load_config("snntorch_conv").nir.file.endswith("snntorch_conv.nir")


def test_the_crop_shifts_by_at_most_crop_pad_pixels():
    import torch

    from ticketforge.model.train import _augment

    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1                           # one lit pixel in the centre
    out = _augment(x, torch.Generator().manual_seed(0), flip=False, pad=2)
    where = out[:, 0].reshape(64, -1).argmax(1)
    dy, dx = where // 9 - 4, where % 9 - 4
    assert dy.abs().max() == 2 and dx.abs().max() == 2      # every shift up to 2 drawn, none further
    assert torch.equal(_augment(x, torch.Generator(), flip=False, pad=0), x)
