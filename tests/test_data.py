import gzip
import pickle
import struct

import numpy as np
import pytest

from ticketforge.errors import DatasetError
from ticketforge.model.data import load_dataset


def test_digits_offline_split():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8) and ds.pixel_max == 16
    assert len(ds.train) == 1437 and len(ds.test) == 360
    assert ds.train.images.max() <= 16


def test_mnist5k_stratified_fixed_split():
    a, b = load_dataset("mnist5k"), load_dataset("mnist5k")
    assert len(a.train) == 4000 and len(a.test) == 1000
    assert a.input_shape == (1, 28, 28) and a.pixel_max == 255
    assert np.array_equal(np.bincount(a.test.labels), np.full(10, 100))      # stratified
    assert np.array_equal(a.test.images, b.test.images)                      # fixed
    assert a.train.images.dtype == np.uint8


def test_unknown_dataset_lists_names():
    with pytest.raises(DatasetError, match="allowed: digits, mnist5k"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "fmnist"])
def test_disk_dataset_without_dir_names_expected_files(name, monkeypatch):
    monkeypatch.delenv("TICKETFORGE_DATA", raising=False)
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset(name)


@pytest.mark.parametrize("name, expected", [
    ("cifar10", "data_batch_1"), ("cifar100", "cifar-100-python"),
    ("svhn", "test_32x32.mat"), ("fmnist", "t10k-images-idx3-ubyte")])
def test_empty_dir_names_expected_files(name, expected, tmp_path):
    with pytest.raises(DatasetError, match=expected):
        load_dataset(name, tmp_path)


def _cifar_batch(path, n, rng, label_key):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: labels}, f)
    return data, labels


def test_cifar10_pickle_batches_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    parts = [_cifar_batch(root / f"data_batch_{i}", 3, rng, b"labels") for i in range(1, 6)]
    test = _cifar_batch(root / "test_batch", 4, rng, b"labels")
    ds = load_dataset("cifar10", tmp_path)            # the parent folder works
    assert len(ds.train) == 15 and len(ds.test) == 4 and ds.input_shape == (3, 32, 32)
    assert np.array_equal(ds.train.images[0].reshape(-1), parts[0][0][0])
    assert ds.test.labels.tolist() == test[1]
    # the folder itself works too, via the environment variable
    import os
    os.environ["TICKETFORGE_DATA"] = str(root)
    try:
        assert len(load_dataset("cifar10").test) == 4
    finally:
        del os.environ["TICKETFORGE_DATA"]


def test_cifar_malformed_batch(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a python-pickle batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar100_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _cifar_batch(root / "train", 5, rng, b"fine_labels")
    _cifar_batch(root / "test", 2, rng, b"fine_labels")
    ds = load_dataset("cifar100", tmp_path)
    assert (len(ds.train), len(ds.test), ds.num_classes) == (5, 2, 100)


def test_svhn_mat_roundtrip(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(3)
    for part, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10]] + [[i % 9 + 1] for i in range(n - 1)], dtype=np.uint8)
        savemat(tmp_path / f"{part}_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", tmp_path)
    assert ds.input_shape == (3, 32, 32) and len(ds.train) == 6
    assert ds.test.labels[0] == 0                       # label 10 means digit 0
    x = rng  # noqa: F841


def _write_idx(path, arr, gz=False):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def test_fmnist_idx_roundtrip_plain_and_gzip(tmp_path):
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(7) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:2], gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 4]), gz=True)
    ds = load_dataset("fmnist", tmp_path)
    assert ds.input_shape == (1, 28, 28)
    assert np.array_equal(ds.train.images[:, 0], imgs)
    assert ds.test.labels.tolist() == [3, 4]


def test_fmnist_bad_magic(tmp_path):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX"):
        load_dataset("fmnist", tmp_path)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
