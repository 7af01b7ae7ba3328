"""``weights.bin``: the load image of a design with runtime weights, written by the rtl stage
and sent to the board by the host driver.  Pure Python (no Amaranth): the host reads it.

Layout, little endian::

    "TFWB"  version (1 byte)  design id (4)  sections (2)
    per section: memory index (2)  width in bits (2)  depth (4)  words (4)
                 name length (1)  name (ASCII)
                 the words, ceil(width / 8) bytes each
    SHA-256 of everything before it (32 bytes)

A section is one loadable memory (`rtl.lane.plan.LanePlan.loadable`) from address 0.  The
*weights id*, the first 32 bits of the SHA-256, is what a board reports after the image is
loaded, so the host can tell which weights a board holds.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadImage", "Section", "write_load_image", "read_load_image", "LoadImageError", "MAGIC", "VERSION"]

MAGIC = b"TFWB"
VERSION = 1


class LoadImageError(ValueError):
    """A load image that is not one (magic, version, length or digest wrong)."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    width: int
    depth: int
    words: tuple[int, ...]

    @property
    def word_bytes(self) -> int:
        return (self.width + 7) // 8


@dataclass(frozen=True)
class LoadImage:
    design_id: int
    sections: tuple[Section, ...]
    weights_id: int

    @property
    def words(self) -> int:
        return sum(len(s.words) for s in self.sections)


def _encode(design_id: int, sections) -> bytes:
    out = bytearray(MAGIC + struct.pack("<BIH", VERSION, design_id, len(sections)))
    for s in sections:
        name = s.name.encode("ascii")
        out += struct.pack("<HHIIB", s.index, s.width, s.depth, len(s.words), len(name)) + name
        nb = s.word_bytes
        for w in s.words:
            if not 0 <= w < 1 << s.width:
                raise ValueError(f"word {w} of {s.name} does not fit its {s.width} bits")
            out += int(w).to_bytes(nb, "little")
    return bytes(out)


def write_load_image(path: Path, design_id: int, sections: list[Section]) -> LoadImage:
    """Write ``path`` whole (a temporary file renamed into place) and return what it holds."""
    body = _encode(design_id, sections)
    digest = hashlib.sha256(body).digest()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(body + digest)
    tmp.replace(path)
    return LoadImage(design_id, tuple(sections), int.from_bytes(digest[:4], "big"))


def read_load_image(path: Path) -> LoadImage:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LoadImageError(f"cannot read the load image {path}: {e}") from e
    if len(raw) < 43 or raw[:4] != MAGIC:
        raise LoadImageError(f"{path} is not a ticketforge load image (no {MAGIC!r} header)")
    body, digest = raw[:-32], raw[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise LoadImageError(f"{path} fails its SHA-256: the file is damaged or cut short; run `ticketforge rtl` "
                             f"again to rewrite it")
    try:
        return _decode(path, body, digest)
    except (struct.error, UnicodeDecodeError) as e:
        raise LoadImageError(f"{path} is malformed ({e})") from e


def _decode(path: Path, body: bytes, digest: bytes) -> LoadImage:
    version, design_id, n = struct.unpack_from("<BIH", body, 4)
    if version != VERSION:
        raise LoadImageError(f"{path} is a version {version} load image; this ticketforge reads version {VERSION}")
    at, sections = 11, []
    for _ in range(n):
        index, width, depth, count, name_len = struct.unpack_from("<HHIIB", body, at)
        at += 13
        name = body[at:at + name_len].decode("ascii")
        at += name_len
        nb = (width + 7) // 8
        if at + nb * count > len(body):
            raise LoadImageError(f"{path}: section {name!r} runs past the end of the file")
        words = tuple(int.from_bytes(body[at + k * nb:at + (k + 1) * nb], "little") for k in range(count))
        at += nb * count
        sections.append(Section(index, name, width, depth, words))
    if at != len(body):
        raise LoadImageError(f"{path}: {len(body) - at} bytes after its last section")
    return LoadImage(design_id, tuple(sections), int.from_bytes(digest[:4], "big"))
