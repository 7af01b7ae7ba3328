"""Event-camera data: an N-MNIST-like event stream made from the shipped MNIST images, the
N-MNIST file format, and the binning of events into the IR's per-timestep binary frames
(the ``events`` input encoding, docs/IR.md).

**The event model** (in the spirit of N-MNIST, Orchard et al. 2015, where an ATIS camera
on a pan-tilt unit looked at MNIST digits on a screen through three saccades). An image
is placed on a ``SENSOR`` = 34 x 34 pixel array and moved along three straight saccades
that form a triangle (``SACCADE_PX`` pixels a side, ``SACCADE_US`` each), sampled
``STEPS`` times per saccade with bilinear interpolation. Each pixel is a DVS pixel:

- it sees the log intensity ``L = log(I / 255 + LOG_EPS)``;
- it remembers the level of its last event (at first: the first sample's);
- when ``L`` has moved ``THRESHOLD`` or more from that level, it emits ``n = floor(|dL| /
  THRESHOLD)`` events of that sign (ON = 1 brighter, OFF = 0 darker) at the sample's time
  and moves its level by ``n * THRESHOLD`` in that direction;
- after an event it is blind for ``REFRACTORY_US``: a crossing inside that time emits
  nothing and leaves its level where it was.

Everything is deterministic (no noise, no randomness): the same image gives the same
events on every machine. `events_to_frames` bins a stream into ``T`` equal time windows
over the recording with tonic's ``ToFrame`` and keeps whether a pixel had an event of
each polarity in each window: ``[T, 2, H, W]`` of 0/1, channel 0 = OFF, 1 = ON (tonic's
order).

**Datasets** (`model.data`): ``nmnist5k`` is mnist5k's images through this model, binned
into the config's T frames; ``nmnist`` reads the real N-MNIST's ``.bin`` files from a
local folder. Both are binned once per T and cached (`cached_frames`) under
``$TICKETFORGE_CACHE`` (default ``~/.cache/ticketforge``), keyed by a digest of what they
are made from: a change of the model's parameters or of the files makes a new entry.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ticketforge.errors import DatasetError

__all__ = ["EVENT_DTYPE", "SENSOR", "SACCADE_PX", "SACCADE_US", "STEPS", "THRESHOLD", "REFRACTORY_US", "LOG_EPS",
           "CACHE_ENV", "saccade_path", "image_events", "events_to_frames", "write_nmnist_bin", "read_nmnist_bin",
           "cache_dir", "cached_frames", "model_frames", "model_digest"]

CACHE_ENV = "TICKETFORGE_CACHE"

# tonic's event layout (tonic.io.events_struct): x, y, timestamp (us), polarity
EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
SENSOR = (34, 34)              # H, W: N-MNIST's ATIS crop
SACCADE_PX = 3.0               # each saccade's length in pixels
SACCADE_US = 100_000           # each saccade's duration
STEPS = 50                     # samples per saccade
THRESHOLD = 0.3                # log-intensity change per event
REFRACTORY_US = 5_000
LOG_EPS = 0.05                 # the darkest a pixel is seen: log(0 + eps)


def saccade_path() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time (us), x and y offset (pixels) of every sample of the three saccades: a triangle
    (0, 0) -> (a, a/2)... rightwards and down, leftwards, then up back to the start."""
    a = SACCADE_PX
    corners = np.array([(0.0, 0.0), (a, a / 2), (0.0, a), (0.0, 0.0)])
    f = (np.arange(STEPS) + 1) / STEPS                       # the start is sample 0 below
    pts = [corners[:1]] + [c0 + f[:, None] * (c1 - c0) for c0, c1 in zip(corners[:-1], corners[1:])]
    xy = np.concatenate(pts)
    t = np.round(np.arange(len(xy)) * SACCADE_US / STEPS).astype(np.int64)
    return t, xy[:, 0], xy[:, 1]


def _placed(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image on the sensor, shifted by (dx, dy) pixels from a centred start, bilinear."""
    H, W = SENSOR
    h, w = image.shape
    canvas = np.zeros((H + 2, W + 2))
    oy, ox = (H - h) // 2 - int(SACCADE_PX // 2), (W - w) // 2 - int(SACCADE_PX // 2)
    iy, ix = int(math.floor(dy)), int(math.floor(dx))
    fy, fx = dy - iy, dx - ix
    img = image.astype(np.float64)
    for wy, sy in ((1 - fy, 0), (fy, 1)):
        for wx, sx in ((1 - fx, 0), (fx, 1)):
            y0, x0 = 1 + oy + iy + sy, 1 + ox + ix + sx
            canvas[y0:y0 + h, x0:x0 + w] += wy * wx * img
    return canvas[1:H + 1, 1:W + 1]


def image_events(image: np.ndarray) -> np.ndarray:
    """The events (``EVENT_DTYPE``, in time order) a DVS sensor sees while ``image`` (uint8
    [H, W], 0..255) moves along `saccade_path` (module docstring)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[0] > SENSOR[0] - SACCADE_PX - 1 or image.shape[1] > SENSOR[1] - SACCADE_PX - 1:
        raise DatasetError(f"image_events takes one [H, W] image of at most {SENSOR[0] - 4} x {SENSOR[1] - 4} "
                           f"pixels, got shape {list(image.shape)}")
    times, xs, ys = saccade_path()
    level = None
    last = np.full(SENSOR, -(1 << 62), np.int64)
    out = []
    for t, dx, dy in zip(times, xs, ys):
        L = np.log(_placed(image, dx, dy) / 255.0 + LOG_EPS)
        if level is None:
            level = L
            continue
        d = L - level
        n = np.floor(np.abs(d) / THRESHOLD).astype(np.int64)
        fire = (n > 0) & (t - last >= REFRACTORY_US)
        level = np.where(fire, level + np.sign(d) * n * THRESHOLD, level)
        last = np.where(fire, t, last)
        y, x = np.nonzero(fire)
        k = n[y, x]
        ev = np.zeros(int(k.sum()), EVENT_DTYPE)
        ev["x"], ev["y"] = np.repeat(x, k), np.repeat(y, k)
        ev["t"], ev["p"] = t, np.repeat(d[y, x] > 0, k)
        out.append(ev)
    return np.concatenate(out) if out else np.zeros(0, EVENT_DTYPE)


def events_to_frames(events: np.ndarray, T: int, sensor: tuple[int, int] = SENSOR,
                     duration_us: int | None = None) -> np.ndarray:
    """``[T, 2, H, W]`` uint8: 1 where a pixel had an event of that polarity (channel 0 OFF,
    1 ON) in each of T equal windows over ``[0, duration_us)`` (default: the three
    saccades, their last sample included), through tonic's ``ToFrame``."""
    import tonic.transforms as tt

    if T < 1:
        raise DatasetError(f"T must be at least 1, got {T}")
    H, W = sensor
    end = 3 * SACCADE_US + 1 if duration_us is None else int(duration_us)
    ev = events[(events["t"] >= 0) & (events["t"] < end)]
    if len(ev) == 0:
        return np.zeros((T, 2, H, W), np.uint8)
    # fixed windows of the recording, not of the events it happens to hold: the same time
    # bins for every sample
    frames = tt.ToFrame(sensor_size=(W, H, 2), time_window=end / T, start_time=0, end_time=end,
                        include_incomplete=True)(ev)
    return (np.asarray(frames)[:T] > 0).astype(np.uint8)


def write_nmnist_bin(path: Path, events: np.ndarray) -> None:
    """N-MNIST's ``.bin`` format: 5 bytes per event, x (8 bits), y (8 bits), polarity (bit 7)
    and a 23-bit timestamp in microseconds (big endian over the last 3 bytes)."""
    if len(events) and (events["t"].max() >= 1 << 23 or events["x"].max() > 255 or events["y"].max() > 255):
        raise DatasetError("N-MNIST .bin holds x, y < 256 and timestamps < 2**23 us")
    t = events["t"].astype(np.uint32)
    raw = np.zeros((len(events), 5), np.uint8)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = (events["p"].astype(np.uint32) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).write_bytes(raw.tobytes())


def read_nmnist_bin(path: Path) -> np.ndarray:
    """Events of an N-MNIST ``.bin`` file (tonic's reader), as ``EVENT_DTYPE``."""
    import tonic.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: expected an N-MNIST .bin file (5 bytes per event)")
    if path.stat().st_size % 5:
        raise DatasetError(f"{path} is {path.stat().st_size} bytes, not a whole number of 5-byte N-MNIST events")
    ev = tonic.io.read_mnist_file(str(path), dtype=EVENT_DTYPE)
    return np.asarray(ev, EVENT_DTYPE)


# -- binned datasets, cached ----------------------------------------------------------------

def cache_dir() -> Path:
    """Where binned event datasets are kept: ``$TICKETFORGE_CACHE`` or ``~/.cache/ticketforge``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ticketforge")


def cached_frames(key: str, count: int, make: Callable[[int], np.ndarray], desc: str) -> np.ndarray:
    """``[count, T, 2, H, W]`` uint8 frames, ``make(i)`` being sample i's, read from the cache
    file named by ``key`` or made (with a progress bar) and written there whole or not at
    all (a temporary file renamed into place), bit-packed."""
    from tqdm.auto import tqdm

    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                shape = tuple(int(v) for v in z["shape"])
                return np.unpackbits(z["bits"], count=int(np.prod(shape))).reshape(shape)
        except Exception:  # noqa: BLE001 - an unreadable entry is made again
            path.unlink(missing_ok=True)
    # (a bar on a terminal only: disable=None)
    bar = tqdm(range(count), desc=desc, unit="sample", leave=False, disable=None)
    frames = np.stack([make(i) for i in bar]) if count else np.zeros((0,), np.uint8)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, bits=np.packbits(frames.reshape(-1)), shape=np.array(frames.shape))
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass        # a read-only cache costs time on the next load, nothing else
    finally:
        if tmp is not None:                 # interrupted or failed: no half-written entry stays
            Path(tmp).unlink(missing_ok=True)
    return frames


def model_digest() -> str:
    """The DVS model's parameters, as a digest: a cache entry made with others is not reused."""
    params = (SENSOR, SACCADE_PX, SACCADE_US, STEPS, THRESHOLD, REFRACTORY_US, LOG_EPS, "v1")
    return hashlib.sha256(repr(params).encode()).hexdigest()[:16]


def model_frames(images: np.ndarray, T: int, name: str) -> np.ndarray:
    """``[N, T, 2, 34, 34]``: each ``[N, 1, H, W]`` image's events (`image_events`) binned
    into T frames (`events_to_frames`), cached by the images, the model and T."""
    images = np.ascontiguousarray(images)
    key = f"{name}-T{T}-{model_digest()}-{hashlib.sha256(images.tobytes()).hexdigest()[:16]}"
    return cached_frames(key, len(images), lambda i: events_to_frames(image_events(images[i, 0]), T),
                         desc=f"{name}: events of T={T}")
