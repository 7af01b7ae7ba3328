"""The whole board design (UART link + core) in Verilator behind a pseudo-terminal: the same
path as a flashed board, without one.  ``ticketforge run --simulated`` and the tests talk
to it with the host driver (`deploy/host.py`) through pyserial, byte for byte what a board's
serial port carries.

The model is `deploy/board_top.py`'s ``BoardTop`` around the rtl stage's ``top.v`` (the
verified core), built once per design into ``build_dir`` and reused while its sources are
unchanged; `board_main.cpp` clocks it and bridges its UART pins to the terminal.
"""
from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import time
from pathlib import Path

from ticketforge.sim.errors import SimError

__all__ = ["SimulatedBoard", "DIVISOR", "BYTE_TIMEOUT_CYCLES", "board_verilog"]

DIVISOR = 4                     # clock cycles per UART bit: the receiver's minimum, for speed
# the board drops an image whose bytes stop for this long: ~0.1-1 s of a small model's
# simulation, far above the gaps a host process leaves while it writes an image
BYTE_TIMEOUT_CYCLES = 1 << 21
BOARD_TOP = "ticketforge_board"
START_TIMEOUT_S = 30.0
MAIN = Path(__file__).with_name("board_main.cpp")


def board_verilog(rtl_dir: Path, byte_timeout_cycles: int = BYTE_TIMEOUT_CYCLES) -> str:
    """The board design's Verilog: the UART link (`board_top.BoardTop`) around the rtl stage's
    core as a black box (``top.v`` supplies it)."""
    from amaranth.back import verilog

    from ticketforge.deploy.board_top import BoardTop, CoreInstance
    from ticketforge.deploy.host import expected_identity

    design_id = expected_identity(rtl_dir)            # (a manifest without it is refused, naming the fix)
    man = json.loads((rtl_dir / "manifest.json").read_text())
    core = CoreInstance(json.loads((rtl_dir / "interface.json").read_text()))
    top = BoardTop(core, pixels=man["pixels"], classes=man["classes"], clk_hz=DIVISOR * 115200,
                   design_id=design_id, byte_timeout_cycles=byte_timeout_cycles, load=man.get("load"),
                   aer=man.get("aer"))
    return verilog.convert(top, name=BOARD_TOP, ports=[top.rx, top.tx], emit_src=False)


class SimulatedBoard:
    """``with SimulatedBoard(rtl_dir, build_dir) as board: ... board.port``: the board design
    of the rtl stage in ``rtl_dir`` running in Verilator."""

    def __init__(self, rtl_dir: Path, build_dir: Path, log=print,
                 byte_timeout_cycles: int = BYTE_TIMEOUT_CYCLES):
        self.rtl_dir, self.build_dir, self.log = Path(rtl_dir), Path(build_dir), log
        self.byte_timeout_cycles = byte_timeout_cycles
        self.proc: subprocess.Popen | None = None
        self.port: str | None = None

    def build(self) -> Path:
        """The model's executable, built when its sources changed."""
        from ticketforge.sim.build import simulator_version, verilator_environment

        for f in ("top.v", "manifest.json", "interface.json"):
            if not (self.rtl_dir / f).is_file():
                raise SimError(f"{self.rtl_dir / f} is missing: run `ticketforge rtl` first")
        exe_path = self.build_dir / "obj" / "simboard"
        text = board_verilog(self.rtl_dir, self.byte_timeout_cycles)
        key = hashlib.sha256()
        for part in (text.encode(), (self.rtl_dir / "top.v").read_bytes(), MAIN.read_bytes(),
                     simulator_version("verilator").encode()):
            key.update(part)
        stamp = self.build_dir / "build.key"
        if exe_path.is_file() and stamp.is_file() and stamp.read_text() == key.hexdigest():
            return exe_path
        exe = verilator_environment()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        (self.build_dir / "board.v").write_text(text)
        self.log(f"[run] building the simulated board (UART link + {self.rtl_dir / 'top.v'}) with Verilator",
                 flush=True)
        t0 = time.perf_counter()
        argv = [exe, "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 2), "-Wno-fatal", "-Wno-lint",
                "-Wno-style", "--top-module", BOARD_TOP, "-Mdir", str(self.build_dir / "obj"), "-o", "simboard",
                str(self.build_dir / "board.v"), str(self.rtl_dir / "top.v"), str(MAIN)]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0 or not exe_path.is_file():
            tail = "\n".join((r.stderr or r.stdout).splitlines()[-15:])
            raise SimError(f"the Verilator build of the simulated board failed in {self.build_dir}:\n{tail}")
        stamp.write_text(key.hexdigest())
        self.log(f"[run] simulated board built in {time.perf_counter() - t0:.0f} s", flush=True)
        return exe_path

    def __enter__(self) -> "SimulatedBoard":
        exe = self.build()
        self.proc = subprocess.Popen([str(exe), str(DIVISOR)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.close()
            err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
            raise SimError(f"the simulated board did not start within {START_TIMEOUT_S:g} s: {err or 'no output'}")
        self.port = line
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __exit__(self, *exc) -> None:
        self.close()
