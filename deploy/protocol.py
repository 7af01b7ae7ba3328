"""The board link's protocol: what the host and the board design (`board_top.py`) say to each
other over the UART (8N1).  Pure Python: the host driver imports it without Amaranth.

Host -> board, one command byte, then its data:

- ``?`` (0x3F): identify;
- ``I`` (0x49) and the image's ``C*H*W`` pixel codes (one byte each, C-H-W order): run it;
- ``A`` (0x41), a design whose input is events: the number of AER words (3 bytes), then
  the words (`rtl/aer.py`: each timestep's events and its step word), ``AER_WORD_BYTES``
  each: run the sample. A sample of more words than the board buffers (`aer_capacity`) is
  refused with ``ERR_CAPACITY`` before any word;
- ``W`` (0x57), runtime weights only: a memory index (1 byte), the first address (3 bytes),
  the number of words (2 bytes), then the words, ``ceil(width / 8)`` bytes each (the
  memory's width: `rtl/load_image.py`); the board writes them into the core's memory;
- ``D`` (0x44) and a weights id (4 bytes): the load is done; the board keeps the id and
  answers its identity with it.

Board -> host, every answer framed as a marker byte, its payload, and a checksum byte (the
sum of the marker and the payload bytes, modulo 256):

- ``V`` (0x56): ``T`` ``F``, the protocol version, the number of classes, the pixels per
  image (2 bytes), the design id (4 bytes): `rtl.emit.design_id_of` the core's RTLIL,
  which the rtl stage records in its manifest, so the host knows which design a board runs;
  the weights id (4 bytes): the last ``D``'s, 0 until then (and always, with baked weights);
- ``L`` (0x4C): the memory index (1 byte) and the words written (2 bytes), after a ``W``;
- ``R`` (0x52): each class score (2 bytes, two's complement) and the image's cycle count
  from the core's status block (4 bytes);
- ``E`` (0x45): an error code: `ERR_COMMAND` (an unknown command byte, or ``I`` to an event
  design and ``A`` to an image design), `ERR_INCOMPLETE` (the image's bytes stopped coming
  before the last one for the byte timeout: a byte was lost on the link; the board dropped
  the image and waits for the next command) or `ERR_CAPACITY`.

Multi-byte fields are little endian.
"""
from __future__ import annotations

__all__ = ["VERSION", "IDENTIFY", "IMAGE", "LOAD", "WEIGHTS_ID", "ANSWER_ID", "ANSWER_IMAGE", "ANSWER_ERROR",
           "ANSWER_LOADED", "LOADED_PAYLOAD", "LOAD_HEAD", "ERR_COMMAND", "AER_SAMPLE", "AER_HEAD", "AER_WORD_BYTES",
           "AER_BUFFER_WORDS", "ERR_CAPACITY", "ERR_INCOMPLETE", "ERROR_TEXT", "ID_PAYLOAD", "MAGIC", "checksum",
           "image_payload", "aer_capacity"]

VERSION = 3
IDENTIFY, IMAGE, LOAD, WEIGHTS_ID, AER_SAMPLE = ord("?"), ord("I"), ord("W"), ord("D"), ord("A")
ANSWER_ID, ANSWER_IMAGE, ANSWER_ERROR, ANSWER_LOADED = ord("V"), ord("R"), ord("E"), ord("L")
LOAD_HEAD, LOADED_PAYLOAD = 6, 3
ERR_COMMAND, ERR_INCOMPLETE, ERR_CAPACITY = 1, 2, 3
AER_HEAD, AER_WORD_BYTES = 3, 2
# the board's sample buffer holds at most this many AER words (16 ECP5 block RAMs of 16 Kbit)
AER_BUFFER_WORDS = 16384
ERROR_TEXT = {ERR_COMMAND: "it received a byte that is no command (the link is out of step, or the host speaks "
                           "another protocol version)",
              ERR_INCOMPLETE: "it received only part of the image before its byte timeout: a byte was lost on the "
                              "link, so the board dropped the image (or the load command)",
              ERR_CAPACITY: "the event sample has more AER words than the board's buffer holds"}
MAGIC = b"TF"
ID_PAYLOAD = 14                 # "TF", version, classes, pixels (2), design id (4), weights id (4)


def image_payload(classes: int) -> int:
    """Payload bytes of an image's answer."""
    return 2 * classes + 4


def aer_capacity(timesteps: int, positions: int) -> int:
    """AER words the board buffers per sample: every position an event at every timestep,
    plus the step words, at most ``AER_BUFFER_WORDS``."""
    return min(int(timesteps) * (int(positions) + 1), AER_BUFFER_WORDS)


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF
