"""The host side of the board link: send test images to a flashed board over its serial port,
read back the class scores and cycle counts, and check them against the golden interpreter
and the cycle model (FINN's generated ``driver.py`` + ``validate.py``, for this flow).

The protocol is `deploy/board_top.py`'s: per image the host writes the ``C*H*W`` pixel codes
(one byte each, C-H-W order, 8N1); the board answers with each class score (2 bytes, little
endian, two's complement) and then the image's cycle count (4 bytes, little endian).
numpy and pyserial only: no torch, no Amaranth, so it runs on any host with the build folder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketforge.deploy.boards import BoardError
from ticketforge.records import write_record

__all__ = ["BoardLink", "BoardAnswer", "validate_on_board", "BAUD", "DEFAULT_TIMEOUT_S"]

BAUD = 115200                 # board_top.BoardTop's default, what `ticketforge synth` builds
DEFAULT_TIMEOUT_S = 5.0       # per image: vgg9_binw computes in ~40 ms and answers in ~2 ms


@dataclass(frozen=True)
class BoardAnswer:
    scores: np.ndarray        # [classes] int64
    cycles: int               # the core's busy cycles for the image (status word 0)


class BoardLink:
    """An open serial link to a board running the UART design of `deploy/board_top.py`."""

    def __init__(self, port: str, pixels: int, classes: int, baud: int = BAUD,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        import serial

        if pixels < 1 or classes < 1:
            raise ValueError(f"pixels and classes must be >= 1, got {pixels}, {classes}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.port, self.pixels, self.classes, self.baud, self.timeout_s = port, pixels, classes, baud, timeout_s
        try:
            self._serial = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                         timeout=timeout_s, write_timeout=timeout_s)
        except (serial.SerialException, ValueError) as e:
            raise BoardError(f"cannot open the serial port {port!r} ({e}): plug in the board and pass its port "
                             "with --port (on Linux /dev/ttyUSB0 or /dev/ttyACM0: `ls /dev/ttyUSB* /dev/ttyACM*`)") from e
        self._serial.reset_input_buffer()

    def __enter__(self) -> "BoardLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._serial.close()

    @property
    def answer_bytes(self) -> int:
        return 2 * self.classes + 4

    def run_image(self, codes: np.ndarray) -> BoardAnswer:
        """Send one image's pixel codes; return the board's scores and cycle count."""
        import serial

        flat = np.asarray(codes).reshape(-1)
        if flat.size != self.pixels:
            raise ValueError(f"an image has {self.pixels} pixels for this design, got {flat.size}")
        if flat.min(initial=0) < 0 or flat.max(initial=0) > 255:
            raise ValueError(f"pixel codes must be in 0..255, got {int(flat.min())}..{int(flat.max())}")
        try:
            self._serial.write(flat.astype(np.uint8).tobytes())
            self._serial.flush()
            got = self._read(self.answer_bytes)
        except serial.SerialException as e:
            raise BoardError(f"the serial link on {self.port} failed: {e}") from e
        K = self.classes
        scores = np.frombuffer(got[:2 * K], dtype="<i2").astype(np.int64)
        return BoardAnswer(scores, int.from_bytes(got[2 * K:], "little"))

    def _read(self, n: int) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        buf = b""
        while len(buf) < n and time.monotonic() < deadline:
            buf += self._serial.read(n - len(buf))
        if len(buf) < n:
            raise BoardError(f"the board on {self.port} answered {len(buf)} of {n} bytes within {self.timeout_s:g} s "
                             f"after an image: is the bitstream of this design flashed (`ticketforge synth "
                             f"--bitstream`), the port right, and the baud {self.baud}?")
        return buf


def validate_on_board(ir_dir: Path, port: str, pes: int, fifo_depth: int | None = None, images: int | None = None,
                      baud: int = BAUD, timeout_s: float = DEFAULT_TIMEOUT_S, out_dir: Path | None = None,
                      progress=None, datapath: str = "lane") -> dict:
    """Run the IR's test split (or its first `images`) on the board behind `port`; compare every
    image's scores with the golden interpreter and its cycles with the cycle model of the
    design with `pes` PEs (lanes, for the bitpar datapath).  Writes ``results.json`` into
    `out_dir` (atomically) if given."""
    from ticketforge.ir import load_graph, load_test_inputs, run
    from ticketforge.rtl.datapath import cycle_model

    g = load_graph(ir_dir)
    codes, labels = load_test_inputs(ir_dir)
    if images is not None:
        codes, labels = codes[:images], labels[:images]
    gold = run(g, codes)
    expected_cycles = [c.total for c in cycle_model(g, codes, pes, datapath, fifo_depth=fifo_depth)]
    classes = g.layers[-1].out_shape[0]
    mismatches, board_scores, board_cycles = [], [], []
    t0 = time.perf_counter()
    with BoardLink(port, int(np.prod(g.input.shape)), classes, baud, timeout_s) as link:
        for i, img in enumerate(codes):
            ans = link.run_image(img)
            board_scores.append(ans.scores)
            board_cycles.append(ans.cycles)
            if not np.array_equal(ans.scores, gold.scores[i]) or ans.cycles != expected_cycles[i]:
                mismatches.append({"image": i, "scores": ans.scores.tolist(), "golden": gold.scores[i].tolist(),
                                   "cycles": ans.cycles, "cycle_model": expected_cycles[i]})
            if progress:
                progress(i + 1, len(codes))
    seconds = time.perf_counter() - t0
    scores = np.stack(board_scores)
    res = {"port": port, "baud": baud, "images": int(len(codes)),
           "board_matches_golden": not mismatches, "images_identical": int(len(codes) - len(mismatches)),
           "accuracy_board": float((scores.argmax(1) == labels).mean()),
           "accuracy_golden": float((gold.predictions == labels).mean()),
           "cycles_mean": float(np.mean(board_cycles)), "seconds": round(seconds, 2),
           "images_per_second": round(len(codes) / seconds, 2) if seconds > 0 else None,
           "mismatches": mismatches[:20]}
    if out_dir is not None:
        write_record(Path(out_dir) / "results.json", res)  # whole or absent
    return res
