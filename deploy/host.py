"""The host side of the board link: identify the board's design, send test images over its
serial port, read back the class scores and cycle counts, and check them against the golden
interpreter and the cycle model (FINN's generated ``driver.py`` + ``validate.py``, for this
flow).

The protocol is `protocol.py`'s (the board's side is `board_top.py`).  numpy and pyserial
only: no torch, no Amaranth, so it runs on any host with the build folder (a Raspberry Pi,
a PYNQ's ARM core).  Two modes, as FINN's driver has: *validate* checks each image as its
answer comes; *throughput* sends the images back to back, timed, and checks them after.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketforge.deploy import protocol
from ticketforge.deploy.boards import BoardError
from ticketforge.records import write_record

__all__ = ["BoardLink", "BoardAnswer", "BoardIdentity", "validate_on_board", "expected_identity", "MODES", "BAUD",
           "DEFAULT_TIMEOUT_S"]

BAUD = 115200                 # board_top.BoardTop's default, what `ticketforge synth` builds
DEFAULT_TIMEOUT_S = 5.0       # per answer: vgg9_binw computes in ~2 ms and answers in ~2 ms
MODES = ("validate", "throughput")


@dataclass(frozen=True)
class BoardAnswer:
    scores: np.ndarray        # [classes] int64
    cycles: int               # the core's busy cycles for the image (status word 0)


@dataclass(frozen=True)
class BoardIdentity:
    version: int
    classes: int
    pixels: int
    design_id: int
    weights_id: int           # the weights loaded last (runtime weights); 0: none, or baked weights


class BoardLink:
    """An open serial link to a board running the design of `board_top.py`.  ``identify()``
    first: it tells the link the design's image size and classes."""

    def __init__(self, port: str, baud: int = BAUD, timeout_s: float = DEFAULT_TIMEOUT_S):
        import serial

        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.port, self.baud, self.timeout_s = port, baud, timeout_s
        self.identity: BoardIdentity | None = None
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

    def identify(self) -> BoardIdentity:
        """Ask the board which design it runs."""
        self._write(bytes([protocol.IDENTIFY]))
        payload = self._answer(protocol.ANSWER_ID, protocol.ID_PAYLOAD, "the identity query")
        if payload[:2] != protocol.MAGIC:
            raise BoardError(f"the board on {self.port} answered the identity query with {payload!r}, not a "
                             f"ticketforge design: flash a bitstream from `ticketforge synth --bitstream`")
        ident = self._identity(payload)
        if ident.version != protocol.VERSION:
            raise BoardError(f"the board on {self.port} speaks link protocol {ident.version}, this host "
                             f"{protocol.VERSION}: rebuild its bitstream with this ticketforge (`ticketforge synth "
                             f"--bitstream`)")
        self.identity = ident
        return ident

    @staticmethod
    def _identity(payload: bytes) -> BoardIdentity:
        return BoardIdentity(payload[2], payload[3], int.from_bytes(payload[4:6], "little"),
                             int.from_bytes(payload[6:10], "little"), int.from_bytes(payload[10:14], "little"))

    def load_weights(self, image, chunk_bytes: int = 1024, progress=None) -> BoardIdentity:
        """Send a load image (`rtl.load_image.LoadImage`) to a board with runtime weights, in
        acknowledged chunks of at most ``chunk_bytes`` bytes of words (at least one word);
        then its weights id, which the board keeps and reports.  Returns the board's identity
        after the load.  Chunks are sized in bytes so that each answer comes within the
        timeout whatever the word width: 1 KiB is 89 ms at 115200 baud, where 1,024 words
        of a 1,024-bit memory would be 11 s."""
        ident = self.identity or self.identify()
        if image.design_id != ident.design_id:
            raise BoardError(f"the load image is for design 0x{image.design_id:08x}; the board on {self.port} runs "
                             f"0x{ident.design_id:08x}")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        done = 0
        for sec in image.sections:
            nb = sec.word_bytes
            chunk_words = max(1, min(0xFFFF, chunk_bytes // nb))
            for start in range(0, len(sec.words), chunk_words):
                words = sec.words[start:start + chunk_words]
                self._write(bytes([protocol.LOAD, sec.index]) + start.to_bytes(3, "little") +
                            len(words).to_bytes(2, "little") + b"".join(w.to_bytes(nb, "little") for w in words))
                what = f"the load of {sec.name} words {start}..{start + len(words) - 1}"
                mem, n = self.read_load_answer(what)
                if (mem, n) != (sec.index, len(words)):
                    raise BoardError(f"the board on {self.port} acknowledged {what} as memory {mem}, {n} words")
                done += len(words)
                if progress:
                    progress(done, image.words)
        self._write(bytes([protocol.WEIGHTS_ID]) + image.weights_id.to_bytes(4, "little"))
        ident = self._identity(self._answer(protocol.ANSWER_ID, protocol.ID_PAYLOAD, "the end of the load"))
        if ident.weights_id != image.weights_id:
            raise BoardError(f"the board on {self.port} reports weights 0x{ident.weights_id:08x} after loading "
                             f"0x{image.weights_id:08x}")
        self.identity = ident
        return ident

    def run_image(self, codes: np.ndarray) -> BoardAnswer:
        """Send one image's pixel codes; return the board's scores and cycle count."""
        ident = self.identity or self.identify()
        flat = np.asarray(codes).reshape(-1)
        if flat.size != ident.pixels:
            raise ValueError(f"an image has {ident.pixels} pixels for this design, got {flat.size}")
        if flat.min(initial=0) < 0 or flat.max(initial=0) > 255:
            raise ValueError(f"pixel codes must be in 0..255, got {int(flat.min())}..{int(flat.max())}")
        self.send_image_bytes(flat.astype(np.uint8).tobytes())
        return self.read_image_answer()

    def run_events(self, frames: np.ndarray) -> BoardAnswer:
        """Send one event sample (binary frames [T, C, H, W]) as its AER words (`rtl/aer.py`);
        return the board's scores and cycle count."""
        from ticketforge.rtl.aer import aer_words

        ident = self.identity or self.identify()
        frames = np.asarray(frames)
        if frames.ndim != 4 or int(np.prod(frames.shape[1:])) != ident.pixels:
            raise ValueError(f"an event sample is [T, C, H, W] frames of {ident.pixels} positions for this design, "
                             f"got shape {list(frames.shape)}")
        if frames.min(initial=0) < 0 or frames.max(initial=0) > 1:
            raise ValueError("event frames hold 0 or 1 per position and timestep")
        words = aer_words(frames)
        cap = protocol.aer_capacity(len(frames), ident.pixels)
        if len(words) > cap:
            raise ValueError(f"the sample is {len(words)} AER words; the board buffers {cap}")
        self._write(bytes([protocol.AER_SAMPLE]) + len(words).to_bytes(protocol.AER_HEAD, "little") +
                    b"".join(w.to_bytes(protocol.AER_WORD_BYTES, "little") for w in words))
        return self.read_image_answer()

    def send_image_bytes(self, pixels: bytes) -> None:
        """The image command and its bytes as given (a test of the link drops one)."""
        self._write(bytes([protocol.IMAGE]) + pixels)

    def write_raw(self, data: bytes) -> None:
        """Bytes as given: a command built by hand (a test of the link cuts one short)."""
        self._write(data)

    def read_load_answer(self, what: str = "a load") -> tuple[int, int]:
        """The answer to a ``W`` command: (memory index, words written)."""
        ack = self._answer(protocol.ANSWER_LOADED, protocol.LOADED_PAYLOAD, what)
        return ack[0], int.from_bytes(ack[1:3], "little")

    def read_image_answer(self) -> BoardAnswer:
        K = (self.identity or self.identify()).classes
        payload = self._answer(protocol.ANSWER_IMAGE, protocol.image_payload(K), "an image")
        scores = np.frombuffer(payload[:2 * K], dtype="<i2").astype(np.int64)
        return BoardAnswer(scores, int.from_bytes(payload[2 * K:], "little"))

    def _write(self, data: bytes) -> None:
        import serial

        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialException as e:
            raise BoardError(f"the serial link on {self.port} failed: {e}") from e

    def _read(self, n: int, what: str) -> bytes:
        import serial

        deadline = time.monotonic() + self.timeout_s
        buf = b""
        try:
            while len(buf) < n and time.monotonic() < deadline:
                buf += self._serial.read(n - len(buf))
        except serial.SerialException as e:
            raise BoardError(f"the serial link on {self.port} failed: {e}") from e
        if len(buf) < n:
            raise BoardError(f"the board on {self.port} answered {len(buf)} of {n} bytes within {self.timeout_s:g} s "
                             f"after {what}: is a bitstream of this design flashed (`ticketforge synth "
                             f"--bitstream`), the port right, and the baud {self.baud}?")
        return buf

    def _answer(self, marker: int, size: int, what: str) -> bytes:
        """One framed answer: the expected marker, ``size`` payload bytes, a right checksum."""
        head = self._read(1, what)
        if head[0] == protocol.ANSWER_ERROR:
            code, check = self._read(2, what)
            text = protocol.ERROR_TEXT.get(code, f"error code {code}")
            raise BoardError(f"the board on {self.port} refused {what}: {text}")
        if head[0] != marker:
            raise BoardError(f"the board on {self.port} answered {what} with byte 0x{head[0]:02x}, expected "
                             f"{chr(marker)!r}: the link is out of step (a lost or extra byte) or the bitstream "
                             f"is not a ticketforge design of link protocol {protocol.VERSION}")
        rest = self._read(size + 1, what)
        if protocol.checksum(head + rest[:-1]) != rest[-1]:
            raise BoardError(f"the board's answer to {what} on {self.port} fails its checksum: a byte was corrupted "
                             f"on the link")
        return rest[:-1]


def expected_identity(rtl_dir: Path) -> int:
    """The design id the rtl stage recorded for its core (`rtl.emit.design_id_of`)."""
    import json

    man = json.loads((Path(rtl_dir) / "manifest.json").read_text())
    if "design_id" not in man:
        raise BoardError(f"{Path(rtl_dir) / 'manifest.json'} has no design id (an older rtl stage): run "
                         f"`ticketforge rtl` again, and `ticketforge synth --bitstream` for the board")
    return int(man["design_id"])


def validate_on_board(ir_dir: Path, port: str, pes: int, design_id: int, fifo_depth: int | None = None,
                      images: int | None = None, baud: int = BAUD, timeout_s: float = DEFAULT_TIMEOUT_S,
                      out_dir: Path | None = None, progress=None, datapath: str = "lane", mode: str = "validate",
                      clock_mhz: float | None = None, link: str | None = None, weights: Path | None = None,
                      no_load: bool = False) -> dict:
    """Run the IR's test split (or its first ``images``) on the board behind ``port``: check
    that it runs the design ``design_id``, then compare every image's scores with the golden
    interpreter and its cycles with the cycle model of the design with ``pes`` PEs (lanes,
    for the bitpar datapath).  ``mode``: `MODES`.  ``clock_mhz``: the core's clock on the
    board, for the on-chip latency.  ``weights``: the load image (``rtl/weights.bin``) of a
    design with runtime weights, loaded first unless ``no_load`` (the board must then hold
    it already).  Writes ``results.json`` into ``out_dir`` (atomically) if given."""
    from ticketforge.rtl.load_image import LoadImageError, read_load_image

    from ticketforge.ir import load_graph, load_test_inputs, run
    from ticketforge.ir.prefix import accelerator_form
    from ticketforge.rtl.datapath import cycle_model

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    g = accelerator_form(load_graph(ir_dir))
    codes, labels = load_test_inputs(ir_dir)
    if images is not None:
        codes, labels = codes[:images], labels[:images]
    gold = run(g, codes)
    expected_cycles = [c.total for c in cycle_model(g, codes, pes, datapath, fifo_depth=fifo_depth,
                                                    weights="baked" if weights is None else "runtime")]
    classes, pixels = g.layers[-1].out_shape[0], int(np.prod(g.input.shape))
    answers = []
    with BoardLink(port, baud, timeout_s) as bl:
        ident = bl.identify()
        if (ident.design_id, ident.pixels, ident.classes) != (design_id, pixels, classes):
            raise BoardError(f"the board on {port} runs design 0x{ident.design_id:08x} ({ident.pixels} pixels, "
                             f"{ident.classes} classes), not this build's 0x{design_id:08x} ({pixels} pixels, "
                             f"{classes} classes): flash this design's bitstream (`ticketforge synth --config <name> "
                             f"--bitstream`)")
        loaded = {"weights": "baked"}
        if weights is not None:
            try:
                image = read_load_image(weights)
            except LoadImageError as e:
                raise BoardError(str(e)) from e
            if image.design_id != design_id:
                raise BoardError(f"{weights} is for design 0x{image.design_id:08x}, this build is 0x{design_id:08x}: "
                                 f"run `ticketforge rtl` again")
            loaded = {"weights": "runtime", "weights_id": f"0x{image.weights_id:08x}", "words": image.words}
            if no_load:
                if ident.weights_id != image.weights_id:
                    raise BoardError(f"the board on {port} holds weights 0x{ident.weights_id:08x} (0: none since "
                                     f"power-up), not this build's 0x{image.weights_id:08x}: run without --no-load")
                loaded["load_seconds"] = None
            else:
                t_load = time.perf_counter()
                bl.load_weights(image)
                loaded["load_seconds"] = round(time.perf_counter() - t_load, 3)

        def same(i, a):
            return np.array_equal(a.scores, gold.scores[i]) and a.cycles == expected_cycles[i]

        # validate: each answer checked as it comes (progress shows the mismatches so far);
        # throughput: nothing but the link in the timed loop, every answer checked after it
        t0, bad = time.perf_counter(), 0
        send = bl.run_events if g.input.events else bl.run_image
        for i, img in enumerate(codes):
            ans = send(img)
            answers.append(ans)
            if mode == "validate":
                bad += not same(i, ans)
                if progress:
                    progress(i + 1, len(codes), bad)
        seconds = time.perf_counter() - t0
    mismatches = [{"image": i, "scores": a.scores.tolist(), "golden": gold.scores[i].tolist(),
                   "cycles": a.cycles, "cycle_model": expected_cycles[i]}
                  for i, a in enumerate(answers) if not same(i, a)]
    scores = np.stack([a.scores for a in answers])
    cycles = float(np.mean([a.cycles for a in answers]))
    res = {"mode": mode, "link": link or port, "baud": baud, "design_id": f"0x{design_id:08x}",
           "images": int(len(codes)), "board_matches_golden": not mismatches,
           "images_identical": int(len(codes) - len(mismatches)),
           "accuracy_board": float((scores.argmax(1) == labels).mean()),
           "accuracy_golden": float((gold.predictions == labels).mean()),
           "cycles_mean": cycles, "clock_mhz": clock_mhz,
           "latency_us": round(cycles / clock_mhz, 2) if clock_mhz else None,
           "seconds": round(seconds, 3), **loaded,
           "images_per_second": round(len(codes) / seconds, 2) if seconds > 0 else None,
           "mismatches": mismatches[:20]}
    if out_dir is not None:
        write_record(Path(out_dir) / "results.json", res)  # whole or absent
    return res
