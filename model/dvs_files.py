"""Event-camera recordings from local files: the file formats of DVS128 Gesture and
CIFAR10-DVS, and their binning into the IR's per-timestep binary frames.

Formats (each read into `events.EVENT_DTYPE`: x, y, t in us, polarity True = ON):

- **AEDAT 2.0** (jAER), CIFAR10-DVS's original ``.aedat`` files: ``#`` header lines, then
  big-endian 32-bit (address, timestamp) pairs of a DVS128 (``x' = addr >> 1 & 0x7F``,
  ``y' = addr >> 8 & 0x7F``, ``OFF = addr & 1``). CIFAR10-DVS's recordings are mirrored and
  turned: as spikingjelly reads them, ``x = 127 - y'``, ``y = 127 - x'``.
- **AEDAT 3.1** (cAER), DVS128 Gesture's ``.aedat`` files: ``#`` header lines, then packets
  of a 28-byte header (event type, source, size, timestamp offset, timestamp overflow,
  capacity, number, valid) and their events; polarity events (type 1) are 8 bytes,
  ``data`` (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and a 31-bit timestamp
  that the packet's overflow count extends. Other packets are skipped.
- **AEDAT 4** (DV), CIFAR10-DVS as tonic distributes it: read by tonic with the ``aedat``
  decoder.
- **tonic's DVS128 Gesture** ``.npy`` per sample (columns x, y, p, t in ms).

These readers are written here (tonic has readers for the same files, but its AEDAT
2/3.1 ones do not run: ``read_dvs_ibm`` unpacks two values from a function returning
three), and each refuses a malformed file by name.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ticketforge.errors import DatasetError
from ticketforge.model.events import EVENT_DTYPE, events_to_frames

__all__ = ["DVS128", "read_aedat2", "write_aedat2", "read_aedat31", "write_aedat31", "read_aedat4",
           "read_gesture_npy", "read_gesture_labels", "bin_sample", "POLARITY_EVENT"]

DVS128 = (128, 128)              # H, W of both datasets' sensor
POLARITY_EVENT = 1               # AEDAT 3.1 event type of DVS polarity events
_PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                    ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])


def _events(x, y, t, p) -> np.ndarray:
    ev = np.zeros(len(t), EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def _body(path: Path, version: str) -> bytes:
    """The file's bytes after its ``#`` header lines (checking the first names ``version``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: expected an AEDAT {version} recording")
    raw = path.read_bytes()
    if not raw.startswith(b"#!AER-DAT" + version.encode()):
        first = raw[:20].split(b"\n")[0]
        raise DatasetError(f"{path} is not an AEDAT {version} file (it starts {first!r}, expected "
                           f"'#!AER-DAT{version}')")
    at = 0
    while at < len(raw) and raw[at:at + 1] == b"#":
        nl = raw.find(b"\n", at)
        if nl < 0:
            raise DatasetError(f"{path}: the header never ends")
        at = nl + 1
    return raw[at:]


def read_aedat2(path: Path) -> np.ndarray:
    """A CIFAR10-DVS ``.aedat`` (AEDAT 2.0, DVS128) recording, oriented as the dataset is."""
    body = _body(path, "2.0")
    if len(body) % 8:
        raise DatasetError(f"{path}: {len(body)} bytes of events, not a whole number of 8-byte (address, time) pairs")
    data = np.frombuffer(body, ">u4")
    addr, t = data[0::2], data[1::2].astype(np.int64)
    xr, yr = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F
    return _events(127 - yr, 127 - xr, t - (t[0] if len(t) else 0), (addr & 1) == 0)


def write_aedat2(path: Path, events: np.ndarray) -> None:
    """The inverse of `read_aedat2` (tests, and users who convert their own recordings)."""
    xr, yr = 127 - events["y"].astype(np.uint32), 127 - events["x"].astype(np.uint32)
    addr = (yr << 8) | (xr << 1) | (~events["p"]).astype(np.uint32)
    data = np.empty(2 * len(events), ">u4")
    data[0::2], data[1::2] = addr, events["t"]
    Path(path).write_bytes(b"#!AER-DAT2.0\r\n# ticketforge\r\n" + data.tobytes())


def read_aedat31(path: Path) -> np.ndarray:
    """The polarity events of an AEDAT 3.1 recording (DVS128 Gesture), timestamps as
    recorded (us)."""
    body = _body(path, "3.1")
    out, at = [], 0
    while at < len(body):
        if at + _PACKET.itemsize > len(body):
            raise DatasetError(f"{path}: a packet header is cut off at byte {at} of the events")
        h = np.frombuffer(body, _PACKET, 1, at)[0]
        size, n = int(h["size"]), int(h["capacity"])
        at += _PACKET.itemsize
        if size < 0 or n < 0 or at + size * n > len(body):
            raise DatasetError(f"{path}: a packet of {n} events of {size} bytes runs past the end of the file")
        if h["type"] == POLARITY_EVENT:
            if size != 8:
                raise DatasetError(f"{path}: polarity events of {size} bytes (AEDAT 3.1 has 8)")
            ev = np.frombuffer(body, np.dtype([("data", "<u4"), ("ts", "<i4")]), n, at)
            ev = ev[(ev["data"] & 1) == 1]                          # valid events only
            t = (np.int64(h["ts_overflow"]) << 31) | ev["ts"].astype(np.int64)
            out.append(_events((ev["data"] >> 17) & 0x7FFF, (ev["data"] >> 2) & 0x7FFF, t,
                               (ev["data"] >> 1) & 1 == 1))
        at += size * n
    return np.concatenate(out) if out else np.zeros(0, EVENT_DTYPE)


def write_aedat31(path: Path, events: np.ndarray, packet: int = 4096) -> None:
    """The inverse of `read_aedat31`: polarity packets of up to ``packet`` events."""
    parts = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"]
    for s in range(0, len(events), packet):
        ev = events[s:s + packet]
        h = np.zeros(1, _PACKET)
        h["type"], h["size"], h["ts_offset"] = POLARITY_EVENT, 8, 4
        h["capacity"] = h["number"] = h["valid"] = len(ev)
        h["ts_overflow"] = int(ev["t"][0]) >> 31 if len(ev) else 0
        if len(ev) and (int(ev["t"][-1]) >> 31) != int(h["ts_overflow"][0]):
            raise DatasetError("write_aedat31: a packet's timestamps must share their overflow count")
        data = np.zeros(len(ev), np.dtype([("data", "<u4"), ("ts", "<i4")]))
        data["data"] = (ev["x"].astype(np.uint32) << 17) | (ev["y"].astype(np.uint32) << 2) | \
            (ev["p"].astype(np.uint32) << 1) | 1
        data["ts"] = ev["t"] & 0x7FFFFFFF
        parts += [h.tobytes(), data.tobytes()]
    Path(path).write_bytes(b"".join(parts))


def read_aedat4(path: Path) -> np.ndarray:
    """An AEDAT 4 recording's first event stream (tonic's reader, the ``aedat`` decoder)."""
    import tonic.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: expected an AEDAT 4 recording")
    try:
        ev = tonic.io.read_aedat4(str(path))
    except Exception as e:  # noqa: BLE001 - the decoder's errors name no file
        raise DatasetError(f"{path} is not a readable AEDAT 4 recording ({e})") from None
    t = ev["t"].astype(np.int64)
    return _events(ev["x"], ev["y"], t - (t[0] if len(t) else 0), ev["on"] if "on" in ev.dtype.names else ev["p"])


def read_gesture_npy(path: Path) -> np.ndarray:
    """One DVS128 Gesture sample as tonic stores it: ``[N, 4]`` of x, y, p, t (ms)."""
    try:
        a = np.load(path)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path} is not a readable .npy sample ({e})") from None
    if a.ndim != 2 or a.shape[1] != 4:
        raise DatasetError(f"{path}: shape {list(a.shape)}, expected [events, 4] (x, y, p, t in ms)")
    return _events(a[:, 0], a[:, 1], (a[:, 3] * 1000).astype(np.int64), a[:, 2] > 0)


def read_gesture_labels(path: Path) -> list[tuple[int, int, int]]:
    """A DVS128 Gesture ``*_labels.csv``: (class 0..10, start us, end us) per gesture."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: each DVS128 Gesture recording has a <name>_labels.csv beside it")
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if i == 0 and row and not row[0].strip().isdigit():
                continue                                            # the header line
            try:
                c, s, e = (int(v) for v in row[:3])
            except ValueError:
                raise DatasetError(f"{path} line {i + 1}: {row!r} is not 'class,startTime_usec,endTime_usec'") from None
            if not 1 <= c <= 11 or e <= s:
                raise DatasetError(f"{path} line {i + 1}: class {c} (1..11) from {s} to {e} us")
            rows.append((c - 1, s, e))
    return rows


def bin_sample(events: np.ndarray, T: int, size: tuple[int, int], start: int | None = None,
               end: int | None = None, sensor: tuple[int, int] = DVS128) -> np.ndarray:
    """``[T, 2, *size]``: the events in ``[start, end)`` (default: all of them) in T equal time
    windows, the sensor's ``H x W`` scaled to ``size`` with tonic's ``Downsample``."""
    import tonic.transforms as tt

    if len(events) == 0:
        return np.zeros((T, 2, *size), np.uint8)
    start = int(events["t"][0]) if start is None else int(start)
    end = int(events["t"][-1]) + 1 if end is None else int(end)
    ev = events[(events["t"] >= start) & (events["t"] < end)].copy()
    ev["t"] -= start
    if tuple(size) != tuple(sensor):
        ev = tt.Downsample(sensor_size=(sensor[1], sensor[0], 2), target_size=(size[1], size[0]))(ev)
    return events_to_frames(ev, T, sensor=tuple(size), duration_us=end - start)
