"""The accelerator's event input: an AER (address-event representation) stream.

An IR whose input is ``events`` (docs/IR.md: a binary frame per timestep, e.g. a DVS
camera's OFF/ON events binned into T windows) enters the accelerator as a stream of words
(`aer_layout`), one per cycle, timestep by timestep:

- an **event** word names one input position that is 1 at this timestep: ``c`` (the
  channel: the polarity of a DVS input), ``y`` and ``x``; ``step`` = 0;
- a **step** word (``step`` = 1, the other fields ignored) ends the timestep: the
  accelerator then runs every layer for it and asks for the next timestep's events.

A timestep with no event is one step word. The events of a timestep go straight into the
first layer's event queue: no frame is stored, and since each is a spike, no pixel value
travels or is multiplied. `aer_words` makes the stream of a sample's frames, events in
C-H-W order (the order the cycle model assumes; any order gives the same scores). A
position is 1 or 0 per timestep, so a timestep holds at most C*H*W events, the queue's
depth; the accelerator drops events beyond that.
"""
from __future__ import annotations

import numpy as np

__all__ = ["aer_fields", "aer_width", "aer_layout", "aer_words", "AER_FIELDS"]

AER_FIELDS = ("x", "y", "c", "step")          # first field lowest


def aer_fields(shape) -> dict[str, tuple[int, int]]:
    """(offset, width) of each field of the AER word of an input of ``shape`` (C, H, W).
    Pure Python: the host driver packs words without Amaranth."""
    c, h, w = (int(s) for s in shape)
    widths = {"x": max(1, (w - 1).bit_length()), "y": max(1, (h - 1).bit_length()),
              "c": max(1, (c - 1).bit_length()), "step": 1}
    out, off = {}, 0
    for k in AER_FIELDS:
        out[k] = (off, widths[k])
        off += widths[k]
    return out


def aer_width(shape) -> int:
    """Bits of the AER word."""
    return sum(w for _, w in aer_fields(shape).values())


def aer_layout(shape):
    """The AER word as an Amaranth ``data.StructLayout`` (the fields of `aer_fields`)."""
    from amaranth.lib import data

    return data.StructLayout({k: wd for k, (_, wd) in aer_fields(shape).items()})


def aer_words(frames: np.ndarray) -> list[int]:
    """The AER stream of one sample: ``frames`` [T, C, H, W] of 0/1 -> the words, per
    timestep its events in C-H-W order then a step word."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"an event sample is [T, C, H, W] binary frames, got shape {list(frames.shape)}")
    f = aer_fields(frames.shape[1:])
    xo, yo, co, so = (f[k][0] for k in AER_FIELDS)
    words: list[int] = []
    for frame in frames:
        c, y, x = np.nonzero(frame)
        words += ((c.astype(np.int64) << co) | (y.astype(np.int64) << yo) | (x.astype(np.int64) << xo)).tolist()
        words.append(1 << so)
    return words
