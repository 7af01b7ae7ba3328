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
from amaranth.lib import data

__all__ = ["aer_layout", "aer_words", "aer_field"]


def _bits(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def aer_layout(shape) -> data.StructLayout:
    """The AER word of an input of ``shape`` (C, H, W): x, y, c, step, first field lowest."""
    c, h, w = (int(s) for s in shape)
    return data.StructLayout({"x": _bits(w), "y": _bits(h), "c": _bits(c), "step": 1})


def aer_field(layout: data.StructLayout, name: str) -> tuple[int, int]:
    """(offset, width) of a field of the word."""
    f = layout[name]
    return f.offset, f.width


def aer_words(frames: np.ndarray, shape=None) -> list[int]:
    """The AER stream of one sample: ``frames`` [T, C, H, W] of 0/1 -> the words, per
    timestep its events in C-H-W order then a step word."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"an event sample is [T, C, H, W] binary frames, got shape {list(frames.shape)}")
    layout = aer_layout(frames.shape[1:] if shape is None else shape)
    (xo, _), (yo, _), (co, _), (so, _) = (aer_field(layout, k) for k in ("x", "y", "c", "step"))
    words: list[int] = []
    for frame in frames:
        c, y, x = np.nonzero(frame)
        words += ((c.astype(np.int64) << co) | (y.astype(np.int64) << yo) | (x.astype(np.int64) << xo)).tolist()
        words.append(1 << so)
    return words
