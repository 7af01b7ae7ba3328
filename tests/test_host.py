"""The host driver against the simulated board: the board design (UART link + accelerator) runs
in Amaranth simulation behind a pseudo-terminal, and `deploy/host.py` talks to it through
pyserial exactly as it talks to a real board's serial port."""
import os
import pty
import threading
import time
import tty

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import uart_byte, uart_frame

from ticketforge.deploy.board_top import BoardTop
from ticketforge.deploy.boards import BoardError
from ticketforge.deploy.host import BoardLink, validate_on_board
from ticketforge.ir import random_images, run, save_graph
from ticketforge.ir.random import random_graph
from ticketforge.rtl.accel import Accelerator

DIV = 4                  # clock cycles per UART bit in the simulated board (the receiver's minimum)


class SimulatedBoard:
    """The board design in Amaranth simulation, its UART bridged to a pseudo-terminal: bytes
    the host writes to the terminal arrive on ``rx`` bit by bit, ``tx`` is decoded back."""

    def __init__(self, g, pes: int):
        self.master, slave = pty.openpty()
        tty.setraw(self.master)
        self.port = os.ttyname(slave)
        self._slave = slave
        os.set_blocking(self.master, False)
        self.stop = threading.Event()
        acc = Accelerator(g, pes, trace=False)
        self.top = BoardTop(acc, pixels=int(np.prod(g.input.shape)), classes=g.layers[-1].out_shape[0],
                            clk_hz=DIV * 115200)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        top = self.top

        async def host_to_board(ctx):
            while not self.stop.is_set():
                try:
                    data = os.read(self.master, 4096)
                except BlockingIOError:
                    data = b""
                if not data:
                    await ctx.tick().repeat(256)
                    continue
                for byte in data:
                    for bit in uart_frame(byte):
                        ctx.set(top.rx, bit)
                        await ctx.tick().repeat(DIV)

        async def board_to_host(ctx):
            while not self.stop.is_set():
                await ctx.tick()                    # polled, so that the bench ends with the host
                if ctx.get(top.tx):
                    continue
                os.write(self.master, bytes([await uart_byte(ctx, top.tx, DIV)]))

        sim = Simulator(top)
        sim.add_clock(1e-6)
        sim.add_testbench(host_to_board)
        sim.add_testbench(board_to_host)
        sim.run()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def board_ir(tmp_path):
    g = random_graph(3, binary=True)
    codes = random_images(g, 4, seed=3)
    save_graph(g, tmp_path / "ir")
    labels = run(g, codes).predictions.copy()
    labels[0] = (labels[0] + 1) % g.layers[-1].out_shape[0]          # one wrong answer: accuracy 0.75
    np.savez(tmp_path / "ir" / "test_inputs.npz", codes=codes, labels=labels)
    return g, tmp_path


def test_validate_on_the_simulated_board_equals_golden_and_cycle_model(board_ir):
    g, root = board_ir
    with SimulatedBoard(g, pes=2) as board:
        res = validate_on_board(root / "ir", board.port, pes=2, timeout_s=30, out_dir=root / "board")
    assert res["board_matches_golden"] and res["images_identical"] == 4, res["mismatches"]
    assert res["accuracy_board"] == res["accuracy_golden"] == 0.75
    assert (root / "board" / "results.json").is_file()
    assert not list((root / "board").glob(".results.json.*"))          # written whole, nothing left over


def test_a_wrong_answer_is_reported_per_image(board_ir):
    """The same board checked against another design's expectations (other PEs: other
    cycle counts) names every image and both numbers."""
    g, root = board_ir
    with SimulatedBoard(g, pes=2) as board:
        res = validate_on_board(root / "ir", board.port, pes=1, images=2, timeout_s=30)
    assert not res["board_matches_golden"] and [m["image"] for m in res["mismatches"]] == [0, 1]
    m = res["mismatches"][0]
    assert m["scores"] == m["golden"] and m["cycles"] != m["cycle_model"]


def test_a_silent_board_times_out_with_a_named_error():
    master, slave = pty.openpty()                       # a port with nothing behind it
    try:
        t0 = time.monotonic()
        with BoardLink(os.ttyname(slave), pixels=4, classes=2, timeout_s=0.5) as link:
            with pytest.raises(BoardError, match=r"answered 0 of 8 bytes within 0.5 s.*bitstream"):
                link.run_image(np.zeros(4, np.uint8))
        assert time.monotonic() - t0 < 5
    finally:
        os.close(master)
        os.close(slave)


def test_a_missing_port_and_bad_images_are_named(tmp_path):
    with pytest.raises(BoardError, match=r"cannot open the serial port .*nope.*--port"):
        BoardLink(str(tmp_path / "nope"), pixels=4, classes=2)
    master, slave = pty.openpty()
    try:
        with BoardLink(os.ttyname(slave), pixels=4, classes=2) as link:
            with pytest.raises(ValueError, match="has 4 pixels for this design, got 5"):
                link.run_image(np.zeros(5, np.uint8))
            with pytest.raises(ValueError, match=r"0\.\.255, got 0\.\.300"):
                link.run_image(np.array([0, 1, 2, 300]))
    finally:
        os.close(master)
        os.close(slave)


def test_cli_board_runs_the_test_split_through_the_port(board_ir, capsys):
    from conftest import tiny_template
    from ticketforge.cli import main
    from ticketforge.rtl.emit import write_rtl

    g, root = board_ir
    cfg = root / "tinyb.toml"
    cfg.write_text(tiny_template(T=2, seed=0).format(arch="mlp", variant="binw"))
    build = root / "build"
    assert main(["board", "--config", str(cfg), "--build-dir", str(build), "--port", "/dev/null"]) == 2
    assert "run `make hw MODEL=tinyb`" in capsys.readouterr().err
    (build / "tinyb").mkdir(parents=True)
    (root / "ir").rename(build / "tinyb" / "ir")
    write_rtl(build / "tinyb" / "ir", build / "tinyb" / "rtl", pes=2, run_lint=False, progress=lambda *a, **k: None)
    with SimulatedBoard(g, pes=2) as board:
        rc = main(["board", "--config", str(cfg), "--build-dir", str(build), "--port", board.port,
                   "--images", "3", "--timeout", "30"])
    out = capsys.readouterr().out
    assert rc == 0 and "3/3 images identical" in out, out
    assert (build / "tinyb" / "board" / "results.json").is_file()
