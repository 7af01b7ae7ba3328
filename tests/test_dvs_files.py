"""DVS128 Gesture and CIFAR10-DVS from local files (model/dvs_files.py, model/data.py):
each file format written and read back, malformed files named, both datasets' folder
layouts loaded into per-timestep frames, and the shipped configs of both run on synthetic
files in the real formats."""
import json

import numpy as np
import pytest

from conftest import run_cli
from ticketforge.errors import DatasetError
from ticketforge.model.data import CIFAR10_CLASSES, load_dataset
from ticketforge.model.dvs_files import (bin_sample, read_aedat2, read_aedat31, read_aedat4, read_gesture_labels,
                                         read_gesture_npy, write_aedat2, write_aedat31)
from ticketforge.model.events import EVENT_DTYPE


def _events(n: int, seed: int, t_end: int = 1_000_000, size: int = 128) -> np.ndarray:
    """n random events over [0, t_end) us, in time order, on a size x size sensor."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
    ev["t"] = np.sort(rng.integers(0, t_end, n))
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def _write_aedat4(path, ev) -> None:
    import dv_processing as dv

    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("test", (128, 128)))
    store = dv.EventStore()
    for e in ev:
        store.push_back(int(e["t"]) + 1_000_000, int(e["x"]), int(e["y"]), bool(e["p"]))
    writer.writeEvents(store)
    del writer                                                   # closes the file


def test_aedat2_and_aedat31_round_trip(tmp_path):
    ev = _events(500, 0)
    ev["t"] -= ev["t"][0]                                       # AEDAT 2 is read relative to its first event
    write_aedat2(tmp_path / "a.aedat", ev)
    assert np.array_equal(read_aedat2(tmp_path / "a.aedat"), ev)
    big = _events(300, 1)
    big["t"] += (1 << 31) - 500_000                            # packets past the 31-bit timestamp overflow
    first, second = big[big["t"] < 1 << 31], big[big["t"] >= 1 << 31]
    write_aedat31(tmp_path / "g1.aedat", first)
    write_aedat31(tmp_path / "g2.aedat", second)
    body = (tmp_path / "g2.aedat").read_bytes().split(b"#!END-HEADER\r\n", 1)[1]
    (tmp_path / "g.aedat").write_bytes((tmp_path / "g1.aedat").read_bytes() + body)
    assert np.array_equal(read_aedat31(tmp_path / "g.aedat"), big)


def test_aedat4_is_read_through_tonic_and_aedat(tmp_path):
    ev = _events(200, 2)
    _write_aedat4(tmp_path / "s.aedat4", ev)
    got = read_aedat4(tmp_path / "s.aedat4")
    assert np.array_equal(got[["x", "y", "p"]], ev[["x", "y", "p"]])
    assert np.array_equal(got["t"], ev["t"] - ev["t"][0])


def test_malformed_recordings_are_named(tmp_path):
    bad = tmp_path / "bad.aedat"
    bad.write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n" + b"\x01\x00" * 5)
    with pytest.raises(DatasetError, match="packet header is cut off"):
        read_aedat31(bad)
    write_aedat31(bad, _events(10, 3))
    raw = bad.read_bytes()
    bad.write_bytes(raw[:-3])
    with pytest.raises(DatasetError, match="runs past the end"):
        read_aedat31(bad)
    with pytest.raises(DatasetError, match="not an AEDAT 2.0 file"):
        read_aedat2(bad)
    bad.write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 12)
    with pytest.raises(DatasetError, match="8-byte"):
        read_aedat2(bad)
    bad.write_bytes(b"not aedat4")
    with pytest.raises(DatasetError, match="not a readable AEDAT 4"):
        read_aedat4(bad)
    with pytest.raises(DatasetError, match="missing"):
        read_aedat31(tmp_path / "none.aedat")
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    with pytest.raises(DatasetError, match=r"expected \[events, 4\]"):
        read_gesture_npy(tmp_path / "x.npy")
    (tmp_path / "l.csv").write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(DatasetError, match="class 12"):
        read_gesture_labels(tmp_path / "l.csv")


def test_bin_sample_scales_the_sensor_and_windows_the_gesture():
    ev = np.zeros(3, EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = [0, 127, 64], [0, 127, 5], [100, 200, 350], [True, False, True]
    f = bin_sample(ev, 2, (32, 32), start=100, end=300)          # the last event is after the gesture
    assert f.shape == (2, 2, 32, 32) and f.sum() == 2
    assert f[0, 1, 0, 0] == 1 and f[1, 0, 31, 31] == 1


def _gesture_release(root, users=(1, 2, 24)) -> dict:
    """The DVS128 Gesture release's layout: AEDAT 3.1 recordings, their labels, the split lists."""
    root.mkdir(parents=True)
    labels = {}
    for u in users:
        name = f"user{u:02d}_fluorescent"
        ev = _events(3000, u, t_end=3_000_000)
        write_aedat31(root / f"{name}.aedat", ev)
        rows = [(1 + (u + k) % 11, 200_000 + 1_000_000 * k, 900_000 + 1_000_000 * k) for k in range(3)]
        (root / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" +
                                                 "".join(f"{c},{s},{e}\n" for c, s, e in rows))
        labels[u] = [c - 1 for c, _, _ in rows]
    (root / "trials_to_train.txt").write_text("".join(f"user{u:02d}_fluorescent.aedat\n" for u in users if u < 24))
    (root / "trials_to_test.txt").write_text("".join(f"user{u:02d}_fluorescent.aedat\n" for u in users if u >= 24))
    return labels


def test_dvs128gesture_release_and_tonic_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETFORGE_CACHE", str(tmp_path / "cache"))
    labels = _gesture_release(tmp_path / "release" / "DvsGesture")
    ds = load_dataset("dvs128gesture", tmp_path / "release", timesteps=4)
    assert ds.events and ds.num_classes == 11 and ds.input_shape == (2, 32, 32)
    assert ds.train.images.shape == (6, 4, 2, 32, 32) and ds.test.labels.tolist() == labels[24]
    assert ds.train.labels.tolist() == labels[1] + labels[2]
    ev = read_aedat31(tmp_path / "release" / "DvsGesture" / "user24_fluorescent.aedat")
    assert np.array_equal(ds.test.images[1], bin_sample(ev, 4, (32, 32), 1_200_000, 1_900_000))
    # tonic's layout: a .npy per gesture (x, y, p, t in ms), named by its class
    for part, user in (("Train", 1), ("Test", 24)):
        folder = tmp_path / "tonic" / f"ibmGesture{part}" / f"user{user:02d}_led"
        folder.mkdir(parents=True)
        for c in (3, 7):
            ev = _events(400, c)
            np.save(folder / f"{c}.npy", np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], 1).astype(np.float64))
    ds = load_dataset("dvs128gesture", tmp_path / "tonic", timesteps=2)
    assert ds.train.images.shape == (2, 2, 2, 32, 32) and ds.test.labels.tolist() == [3, 7]
    (tmp_path / "release" / "DvsGesture" / "user02_fluorescent.aedat").unlink()
    with pytest.raises(DatasetError, match="user02_fluorescent.aedat .listed in trials_to_train.txt. is missing"):
        load_dataset("dvs128gesture", tmp_path / "release", timesteps=4)
    with pytest.raises(DatasetError, match="trials_to_train.txt"):
        load_dataset("dvs128gesture", tmp_path / "cache", timesteps=4)


def _cifar10dvs_files(root, indices=(0, 1, 100, 101, 102)) -> None:
    """CIFAR10-DVS's layout: a folder per class, AEDAT 2.0 files (and an AEDAT 4 one)."""
    for k, cls in enumerate(CIFAR10_CLASSES):
        (root / cls).mkdir(parents=True)
        for i in indices:
            ev = _events(500, 100 * k + i)
            ev["t"] -= ev["t"][0]
            if k == 0 and i == 1:
                _write_aedat4(root / cls / f"cifar10_{cls}_{i}.aedat4", ev)
            else:
                write_aedat2(root / cls / f"cifar10_{cls}_{i}.aedat", ev)


def test_cifar10dvs_takes_the_tebn_split(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETFORGE_CACHE", str(tmp_path / "cache"))
    _cifar10dvs_files(tmp_path / "CIFAR10DVS")
    ds = load_dataset("cifar10dvs", tmp_path, timesteps=3)
    assert ds.test.images.shape == (20, 3, 2, 32, 32) and ds.train.images.shape == (30, 3, 2, 32, 32)
    assert ds.test.labels.tolist() == [k for k in range(10) for _ in range(2)]
    ev = read_aedat4(tmp_path / "CIFAR10DVS" / "airplane" / "cifar10_airplane_1.aedat4")
    assert np.array_equal(ds.test.images[1], bin_sample(ev, 3, (32, 32)))
    (tmp_path / "CIFAR10DVS" / "bird" / "cifar10_bird_x.aedat").write_bytes(b"")
    with pytest.raises(DatasetError, match="cifar10_bird_x.aedat is not named cifar10_bird_<index>"):
        load_dataset("cifar10dvs", tmp_path, timesteps=3)


@pytest.mark.parametrize("config,make", [("dvs128_binw", "gesture"), ("cifar10dvs_binw", "cifar10dvs")])
def test_the_shipped_dvs_configs_run_on_files_in_the_real_formats(config, make, tmp_path, root):
    """The paper's VGG-9 settings (narrowed for the test's seconds): search and quantize on
    synthetic recordings; the IR takes the events input."""
    data = tmp_path / "data"
    if make == "gesture":
        _gesture_release(data / "DvsGesture")
    else:
        _cifar10dvs_files(data / "CIFAR10DVS", indices=(0, 100))
    build = tmp_path / "build"
    args = ["--config", config, "--build-dir", str(build), "--data-dir", str(data), "--set", "model.width=0.0625",
            "--set", "train.epochs=1"]
    env = {"TICKETFORGE_CACHE": str(tmp_path / "cache")}
    for stage in ("train", "quantize"):
        r = run_cli(stage, *args, *(["--quiet"] if stage == "train" else []), cwd=root, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    graph = json.loads((build / config / "ir" / "graph.json").read_text())
    assert graph["input"]["encoding"] == "events" and graph["input"]["shape"] == [2, 32, 32]


@pytest.mark.parametrize("name", ["dvs128gesture", "cifar10dvs", "nmnist"])
def test_an_event_dataset_without_a_folder_names_the_option_and_the_files(name, monkeypatch):
    monkeypatch.delenv("TICKETFORGE_DATA", raising=False)
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset(name, timesteps=4)
    with pytest.raises(DatasetError, match="timesteps >= 1"):
        load_dataset(name)
