"""Event-camera data (model/events.py): the DVS model of the N-MNIST-like stream, the
N-MNIST file format, and the binning into the IR's per-timestep binary frames."""
import numpy as np
import pytest

from ticketforge.errors import DatasetError
from ticketforge.model.events import (EVENT_DTYPE, SACCADE_US, SENSOR, events_to_frames, image_events,
                                      read_nmnist_bin, saccade_path, write_nmnist_bin)


def _digit() -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255                 # a bright bar: a "1"
    return img


def test_saccades_form_a_closed_triangle_in_time_order():
    t, x, y = saccade_path()
    assert t[0] == 0 and t[-1] == 3 * SACCADE_US and np.all(np.diff(t) > 0)
    assert (x[0], y[0]) == (x[-1], y[-1]) == (0.0, 0.0)
    assert x.max() > 0 and y.max() > 0


def test_a_moving_edge_gives_both_polarities_where_it_moves_and_none_elsewhere():
    ev = image_events(_digit())
    assert ev.dtype == EVENT_DTYPE and len(ev) > 0 and np.all(np.diff(ev["t"]) >= 0)
    assert 0 < ev["p"].mean() < 1                      # ON at leading edges, OFF at trailing ones
    assert ev["x"].min() >= 0 and ev["x"].max() < SENSOR[1] and ev["y"].max() < SENSOR[0]
    xs = set(ev["x"].tolist())
    assert min(xs) >= 12 and max(xs) <= 12 + 4 + 4 + 2      # only around the bar's columns and its travel
    assert np.array_equal(image_events(_digit()), ev)      # deterministic
    assert len(image_events(np.zeros((28, 28), np.uint8))) == 0   # nothing moves, nothing fires


def test_refractory_period_limits_a_pixels_event_rate():
    from ticketforge.model.events import REFRACTORY_US

    ev = image_events(_digit())
    for (x, y) in {(int(a), int(b)) for a, b in zip(ev["x"][:50], ev["y"][:50])}:
        times = np.unique(ev["t"][(ev["x"] == x) & (ev["y"] == y)])
        assert np.all(np.diff(times) >= REFRACTORY_US)


def test_frames_are_binary_per_window_and_polarity():
    ev = image_events(_digit())
    for T in (1, 3, 8):
        f = events_to_frames(ev, T)
        assert f.shape == (T, 2, *SENSOR) and set(np.unique(f)) <= {0, 1}
    one = events_to_frames(ev, 1)[0]
    for p in (0, 1):                                        # T = 1: every event's pixel, per polarity
        sel = ev[ev["p"] == bool(p)]
        expect = np.zeros(SENSOR, np.uint8)
        expect[sel["y"], sel["x"]] = 1
        assert np.array_equal(one[p], expect)
    late = np.zeros(1, EVENT_DTYPE)
    late["t"], late["x"], late["y"], late["p"] = 3 * SACCADE_US - 1, 5, 7, True
    f = events_to_frames(late, 3)
    assert f[2, 1, 7, 5] == 1 and f.sum() == 1             # the last window, ON channel
    with pytest.raises(DatasetError, match="T must be"):
        events_to_frames(ev, 0)


def test_nmnist_bin_round_trip_and_malformed_files(tmp_path):
    ev = image_events(_digit())
    path = tmp_path / "00001.bin"
    write_nmnist_bin(path, ev)
    assert path.stat().st_size == 5 * len(ev)
    assert np.array_equal(read_nmnist_bin(path), ev)
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(DatasetError, match="not a whole number of 5-byte"):
        read_nmnist_bin(tmp_path / "bad.bin")
    with pytest.raises(DatasetError, match="missing"):
        read_nmnist_bin(tmp_path / "none.bin")
    with pytest.raises(DatasetError, match="at most"):
        image_events(np.zeros((40, 40), np.uint8))


def test_model_frames_are_cached_whole_and_remade_when_the_entry_is_broken(tmp_path, monkeypatch):
    import ticketforge.model.events as events

    monkeypatch.setenv(events.CACHE_ENV, str(tmp_path))
    images = np.stack([_digit(), np.rot90(_digit()).copy()])[:, None]
    frames = events.model_frames(images, 3, "digits2")
    assert frames.shape == (2, 3, 2, *SENSOR) and frames.dtype == np.uint8 and set(np.unique(frames)) <= {0, 1}
    assert np.array_equal(frames[0], events_to_frames(image_events(images[0, 0]), 3))
    entries = list(tmp_path.glob("digits2-T3-*.npz"))
    assert len(entries) == 1 and not list(tmp_path.glob("*.tmp"))
    # read back without making anything
    monkeypatch.setattr(events, "image_events", lambda *_: pytest.fail("the cache entry was not read"))
    assert np.array_equal(events.model_frames(images, 3, "digits2"), frames)
    monkeypatch.undo()
    monkeypatch.setenv(events.CACHE_ENV, str(tmp_path))
    entries[0].write_bytes(b"not an npz")                      # a broken entry is made again
    assert np.array_equal(events.model_frames(images, 3, "digits2"), frames)
    assert len(list(tmp_path.glob("digits2-T3-*.npz"))) == 1
    assert events.model_frames(images, 2, "digits2").shape[1] == 2   # another T: another entry


def _nmnist_tree(root, per_digit: int = 2) -> None:
    """A small N-MNIST folder in the real layout: Train/<digit>/*.bin and Test/<digit>/*.bin."""
    for part in ("Train", "Test"):
        for d in (0, 1, 7):
            folder = root / part / str(d)
            folder.mkdir(parents=True)
            for i in range(per_digit):
                img = np.roll(_digit(), 3 * d + i, axis=1)
                write_nmnist_bin(folder / f"{i:05d}.bin", image_events(img))


def test_nmnist_reads_the_real_layout_and_bins_per_timestep(tmp_path, monkeypatch):
    from ticketforge.model.data import load_dataset

    monkeypatch.setenv("TICKETFORGE_CACHE", str(tmp_path / "cache"))
    _nmnist_tree(tmp_path / "NMNIST")
    ds = load_dataset("nmnist", tmp_path, timesteps=4)
    assert ds.events and ds.pixel_max == 1 and ds.input_shape == (2, 34, 34)
    assert ds.train.images.shape == (6, 4, 2, 34, 34) and ds.test.labels.tolist() == [0, 0, 1, 1, 7, 7]
    ev = read_nmnist_bin(tmp_path / "NMNIST" / "Test" / "7" / "00001.bin")
    assert np.array_equal(ds.test.images[5], events_to_frames(ev, 4))
    with pytest.raises(DatasetError, match="timesteps >= 1"):
        load_dataset("nmnist", tmp_path)
    (tmp_path / "empty" / "Test").mkdir(parents=True)
    with pytest.raises(DatasetError, match="Train/<digit>/"):
        load_dataset("nmnist", tmp_path / "empty", timesteps=4)
    with pytest.raises(DatasetError, match="--data-dir"):
        monkeypatch.delenv("TICKETFORGE_DATA", raising=False)
        load_dataset("nmnist", None, timesteps=4)


def test_a_network_takes_event_frames_one_per_timestep():
    import torch

    from ticketforge.model.config import ModelConfig
    from ticketforge.model.zoo import build_model

    net = build_model(ModelConfig(arch="mlp", variant="binw", width=0.05, T=3), (2, 34, 34), 10)
    x = torch.zeros(5, 3, 2, 34, 34)
    assert net(x).shape == (5, 10)
    steps = net.forward_steps(x)
    assert steps.shape == (3, 5, 10)
    with pytest.raises(ValueError, match="4 frames per sample"):
        net(torch.zeros(5, 4, 2, 34, 34))
