"""The board link's protocol: what the host and the board design (`board_top.py`) say to each
other over the UART (8N1).  Pure Python: the host driver imports it without Amaranth.

Host -> board, one command byte, then its data:

- ``?`` (0x3F): identify;
- ``I`` (0x49) and the image's ``C*H*W`` pixel codes (one byte each, C-H-W order): run it.

Board -> host, every answer framed as a marker byte, its payload, and a checksum byte (the
sum of the marker and the payload bytes, modulo 256):

- ``V`` (0x56): ``T`` ``F``, the protocol version, the number of classes, the pixels per
  image (2 bytes), the design id (4 bytes): `rtl.emit.design_id_of` the core's RTLIL,
  which the rtl stage records in its manifest, so the host knows which design a board runs;
- ``R`` (0x52): each class score (2 bytes, two's complement) and the image's cycle count
  from the core's status block (4 bytes);
- ``E`` (0x45): an error code: `ERR_COMMAND` (an unknown command byte) or `ERR_INCOMPLETE`
  (the image's bytes stopped coming before the last one for the byte timeout: a byte was
  lost on the link; the board dropped the image and waits for the next command).

Multi-byte fields are little endian.
"""
from __future__ import annotations

__all__ = ["VERSION", "IDENTIFY", "IMAGE", "ANSWER_ID", "ANSWER_IMAGE", "ANSWER_ERROR", "ERR_COMMAND",
           "ERR_INCOMPLETE", "ERROR_TEXT", "ID_PAYLOAD", "MAGIC", "checksum", "image_payload"]

VERSION = 2
IDENTIFY, IMAGE = ord("?"), ord("I")
ANSWER_ID, ANSWER_IMAGE, ANSWER_ERROR = ord("V"), ord("R"), ord("E")
ERR_COMMAND, ERR_INCOMPLETE = 1, 2
ERROR_TEXT = {ERR_COMMAND: "it received a byte that is no command (the link is out of step, or the host speaks "
                           "another protocol version)",
              ERR_INCOMPLETE: "it received only part of the image before its byte timeout: a byte was lost on the "
                              "link, so the board dropped the image"}
MAGIC = b"TF"
ID_PAYLOAD = 10                 # "TF", version, classes, pixels (2), design id (4)


def image_payload(classes: int) -> int:
    """Payload bytes of an image's answer."""
    return 2 * classes + 4


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF
