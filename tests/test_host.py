"""The host driver against the simulated board: the whole board design (UART link + the rtl
stage's core) runs in Verilator behind a pseudo-terminal (`sim/board.py`), and
`deploy/host.py` talks to it through pyserial exactly as it talks to a real board's serial
port.  One Verilator build serves the module."""
import json
import os
import pty
import time

import numpy as np
import pytest

from ticketforge.deploy import protocol
from ticketforge.deploy.boards import BoardError
from ticketforge.deploy.host import BoardLink, expected_identity, validate_on_board
from ticketforge.ir import random_images, run, save_graph
from ticketforge.ir.random import random_graph
from ticketforge.rtl.emit import write_rtl
from ticketforge.sim.board import SimulatedBoard

IMAGES = 24


def _build(root, seed: int, pes: int, weights: str = "baked", wrong_labels: int = 0, graph=None,
           datapath: str = "lane", fit_to=None, events: bool = False):
    """A random IR (or ``graph``; ``events``: with event input) with a test split of IMAGES
    images (the first ``wrong_labels`` labels wrong) and its rtl stage, in ``root``."""
    g = random_graph(seed, binary=True, events=events) if graph is None else graph
    codes = random_images(g, IMAGES, seed=seed)
    save_graph(g, root / "ir")
    labels = run(g, codes).predictions.copy()
    labels[:wrong_labels] = (labels[:wrong_labels] + 1) % g.layers[-1].out_shape[0]
    np.savez(root / "ir" / "test_inputs.npz", codes=codes, labels=labels)
    write_rtl(root / "ir", root / "rtl", pes=pes, run_lint=False, progress=lambda *a, **k: None, weights=weights,
              datapath=datapath, fit_to=fit_to)
    return g, root


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A random IR with its test split (one label wrong: accuracy 23/24) and its rtl stage."""
    return _build(tmp_path_factory.mktemp("board"), 3, pes=2, wrong_labels=1)


@pytest.fixture(scope="module")
def board(design):
    _, root = design
    # (where `ticketforge run --simulated` builds it: the command-line test reuses the build)
    with SimulatedBoard(root / "rtl", root / "run" / "simboard", log=lambda *a, **k: None) as b:
        yield b


@pytest.mark.parametrize("mode", ["validate", "throughput"])
def test_the_simulated_board_equals_golden_and_cycle_model(design, board, mode):
    g, root = design
    res = validate_on_board(root / "ir", board.port, pes=2, design_id=expected_identity(root / "rtl"),
                            timeout_s=30, out_dir=root / mode, mode=mode, clock_mhz=12.0, link="simulated")
    assert res["board_matches_golden"] and res["images_identical"] == IMAGES >= 20, res["mismatches"]
    assert res["accuracy_board"] == res["accuracy_golden"] == (IMAGES - 1) / IMAGES
    assert res["latency_us"] == round(res["cycles_mean"] / 12.0, 2) and res["images_per_second"] > 0
    assert json.loads((root / mode / "results.json").read_text())["mode"] == mode
    assert not list((root / mode).glob(".results.json.*"))          # written whole, nothing left over


def test_the_board_names_its_design(design, board):
    g, root = design
    with BoardLink(board.port, timeout_s=30) as link:
        ident = link.identify()
    assert ident.version == protocol.VERSION and ident.design_id == expected_identity(root / "rtl")
    assert (ident.pixels, ident.classes) == (int(np.prod(g.input.shape)), g.layers[-1].out_shape[0])


def test_a_wrong_bitstream_is_refused_by_its_design_id(design, board):
    """The board checked against another build (here: the same IR, other PEs, so another
    core and another design id) is refused before any image, naming both ids."""
    _, root = design
    write_rtl(root / "ir", root / "rtl-other", pes=1, run_lint=False, progress=lambda *a, **k: None)
    other = expected_identity(root / "rtl-other")
    assert other != expected_identity(root / "rtl")
    t0 = time.monotonic()
    with pytest.raises(BoardError, match=rf"runs design 0x{expected_identity(root / 'rtl'):08x} .*not this "
                                         rf"build's 0x{other:08x}.*--bitstream"):
        validate_on_board(root / "ir", board.port, pes=1, design_id=other, timeout_s=5)
    assert time.monotonic() - t0 < 10


def test_a_lost_byte_is_named_and_the_link_recovers(design, board):
    """An image with one byte missing: the board's byte timeout drops it and says so; the
    next image on the same link is right again."""
    g, root = design
    codes = random_images(g, 2, seed=9)
    gold = run(g, codes)
    with BoardLink(board.port, timeout_s=20) as link:
        link.identify()
        t0 = time.monotonic()
        link.send_image_bytes(codes[0].astype(np.uint8).tobytes()[:-1])
        with pytest.raises(BoardError, match="only part of the image.*a byte was lost"):
            link.read_image_answer()
        assert time.monotonic() - t0 < 20
        assert link.run_image(codes[1]).scores.tolist() == gold.scores[1].tolist()


def test_a_silent_port_times_out_with_a_named_error():
    master, slave = pty.openpty()                       # a port with nothing behind it
    try:
        t0 = time.monotonic()
        with BoardLink(os.ttyname(slave), timeout_s=0.5) as link:
            with pytest.raises(BoardError, match=r"answered 0 of 1 bytes within 0.5 s after the identity query.*"
                                                 r"bitstream"):
                link.identify()
        assert time.monotonic() - t0 < 5
    finally:
        os.close(master)
        os.close(slave)


def test_a_missing_port_and_bad_images_are_named(tmp_path, board):
    with pytest.raises(BoardError, match=r"cannot open the serial port .*nope.*--port"):
        BoardLink(str(tmp_path / "nope"))
    with BoardLink(board.port, timeout_s=30) as link:
        n = link.identify().pixels
        with pytest.raises(ValueError, match=f"has {n} pixels for this design, got {n + 1}"):
            link.run_image(np.zeros(n + 1, np.uint8))
        with pytest.raises(ValueError, match=r"0\.\.255, got 0\.\.300"):
            link.run_image(np.array([300] + [0] * (n - 1)))


def test_an_event_design_runs_its_samples_as_aer_words_over_the_link(tmp_path):
    """An IR with event input: the host sends each sample's AER words (``A``), the board
    buffers and feeds them; every sample equals the golden model and the cycle model, and a
    sample over the board's buffer is refused on the host before a byte is sent."""
    g, root = _build(tmp_path, 1104, pes=2, events=True)
    with SimulatedBoard(root / "rtl", root / "simboard", log=lambda *a, **k: None) as board:
        res = validate_on_board(root / "ir", board.port, pes=2, design_id=expected_identity(root / "rtl"),
                                timeout_s=30, clock_mhz=12.0, link="simulated")
        assert res["board_matches_golden"] and res["images_identical"] == IMAGES, res["mismatches"]
        with BoardLink(board.port, timeout_s=30) as bl:
            with pytest.raises(ValueError, match="positions for this design"):
                bl.run_events(np.zeros((g.T, 1, 2, 2), np.uint8))
            with pytest.raises(ValueError, match="the board buffers"):
                bl.run_events(np.ones((protocol.AER_BUFFER_WORDS, *g.input.shape), np.uint8))


def test_the_host_driver_needs_no_torch_and_no_amaranth():
    import subprocess
    import sys

    # the host module and what validate_on_board imports: the IR, both cycle models
    code = ("import sys, ticketforge.deploy.host, ticketforge.ir, ticketforge.rtl.datapath, ticketforge.rtl.cycles, "
            "ticketforge.rtl.bitpar.cycles, ticketforge.rtl.bitpar.plan, ticketforge.rtl.aer; "
            "bad = [m for m in ('torch', 'amaranth') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ticketforge_run_simulated_from_the_command_line(design, tmp_path, capsys):
    """`ticketforge run --simulated` on a build folder with an IR and an rtl stage: the test
    split through the simulated board, checked, with results.json; throughput mode too."""
    from conftest import tiny_template

    from ticketforge.cli import main

    _, root = design
    cfg = tmp_path / f"{root.name}.toml"
    cfg.write_text(tiny_template(T=2, seed=1).format(arch="mlp", variant="binw") + "[hw]\nclock_mhz = 12\n")
    for mode in ("validate", "throughput"):
        rc = main(["run", "--config", str(cfg), "--build-dir", str(root.parent), "--simulated", "--mode", mode,
                   "--quiet"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert f"{IMAGES}/{IMAGES} images identical" in out and "us per image on chip at 12" in out
        res = json.loads((root / "run" / "results.json").read_text())
        assert res["mode"] == mode and res["link"] == "simulated" and res["board_matches_golden"]
    assert main(["run", "--config", str(cfg), "--build-dir", str(root.parent), "--simulated", "--images", "0"]) == 2
    assert "--images must be 'all' or 1..24, got '0'" in capsys.readouterr().err


def test_ticketforge_run_on_a_port_loads_neither_torch_nor_amaranth(design, tmp_path):
    """The command a small host runs against a real board: a missing port is named, and
    the process never imported torch or Amaranth on the way."""
    import subprocess
    import sys

    from conftest import tiny_template

    _, root = design
    cfg = tmp_path / f"{root.name}.toml"
    cfg.write_text(tiny_template(T=2, seed=1).format(arch="mlp", variant="binw"))
    code = ("import sys; from ticketforge.cli import main; "
            f"rc = main(['run', '--config', {str(cfg)!r}, '--build-dir', {str(root.parent)!r}, '--port', "
            f"{str(tmp_path / 'ttyUSB9')!r}, '--quiet']); "
            "print([m for m in ('torch', 'amaranth') if m in sys.modules]); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot open the serial port" in r.stderr, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


@pytest.fixture(scope="module")
def runtime_design(tmp_path_factory):
    """A random IR built with runtime weights: its rtl stage writes weights.bin."""
    return _build(tmp_path_factory.mktemp("runtime"), 4, pes=3, weights="runtime")


def test_runtime_weights_loaded_over_the_link(runtime_design):
    """A fresh board holds no weights (--no-load is refused, naming both ids); loading
    weights.bin over the link makes every image right; then --no-load finds them there."""
    g, root = runtime_design
    design_id, weights = expected_identity(root / "rtl"), root / "rtl" / "weights.bin"
    with SimulatedBoard(root / "rtl", root / "simboard", log=lambda *a, **k: None) as board:
        with pytest.raises(BoardError, match=r"holds weights 0x00000000 \(0: none since power-up\), not this "
                                             r"build's 0x[0-9a-f]{8}: run without --no-load"):
            validate_on_board(root / "ir", board.port, pes=3, design_id=design_id, weights=weights, no_load=True,
                              timeout_s=20)
        res = validate_on_board(root / "ir", board.port, pes=3, design_id=design_id, weights=weights, timeout_s=20,
                                out_dir=root / "run")
        assert res["board_matches_golden"] and res["images_identical"] == IMAGES, res["mismatches"]
        assert res["weights"] == "runtime" and res["load_seconds"] is not None and res["words"] > 0
        again = validate_on_board(root / "ir", board.port, pes=3, design_id=design_id, weights=weights,
                                  no_load=True, timeout_s=20)
        assert again["images_identical"] == IMAGES and again["load_seconds"] is None

        # a byte lost inside a load command: named, and the link goes on
        with BoardLink(board.port, timeout_s=20) as link:
            link.identify()
            link.write_raw(bytes([protocol.LOAD, 0, 0, 0, 0, 2, 0]) + b"\x01")     # 2 words announced, 1 byte sent
            with pytest.raises(BoardError, match="a byte was lost"):
                link.read_load_answer()
            assert link.identify().design_id == design_id


def test_a_load_image_of_another_design_is_refused(design, runtime_design, board):
    """weights.bin of one design sent to a board of another: refused before a byte of it."""
    _, root = design
    _, rroot = runtime_design
    with pytest.raises(BoardError, match=r"is for design 0x[0-9a-f]{8}, this build is 0x[0-9a-f]{8}: run "
                                         r"`ticketforge rtl` again"):
        validate_on_board(root / "ir", board.port, pes=2, design_id=expected_identity(root / "rtl"),
                          weights=rroot / "rtl" / "weights.bin", timeout_s=20)


def test_one_bitpar_bitstream_runs_two_tickets_with_only_the_weights_reloaded(tmp_path):
    """A runtime-weights bitpar design and another ticket of the same architecture fitted onto
    it: the same design id, one simulated board, and each ticket's weights loaded in turn
    make every image of each equal its own golden and cycle model.  A ticket of another
    architecture is refused, naming what differs."""
    from ticketforge.errors import UnsupportedError
    from ticketforge.ir import random_ticket_like

    a = random_graph(8, binary=True)
    _, ra = _build(tmp_path / "a", 8, pes=8, weights="runtime", graph=a, datapath="bitpar")
    _, rb = _build(tmp_path / "b", 9, pes=8, weights="runtime", graph=random_ticket_like(a, 108), datapath="bitpar",
                   fit_to=ra / "rtl")
    design_id = expected_identity(ra / "rtl")
    assert expected_identity(rb / "rtl") == design_id
    assert (ra / "rtl" / "core.il").read_text() == (rb / "rtl" / "core.il").read_text()
    assert (ra / "rtl" / "weights.bin").read_bytes() != (rb / "rtl" / "weights.bin").read_bytes()
    with SimulatedBoard(ra / "rtl", ra / "simboard", log=lambda *a, **k: None) as board:
        for root in (rb, ra, rb):
            res = validate_on_board(root / "ir", board.port, pes=8, design_id=design_id, datapath="bitpar",
                                    weights=root / "rtl" / "weights.bin", timeout_s=20)
            assert res["board_matches_golden"] and res["images_identical"] == IMAGES, (root, res["mismatches"])
    _build(tmp_path / "c", 10, pes=8, weights="runtime", datapath="bitpar")
    with pytest.raises(UnsupportedError, match=r"does not fit the bitstream: .*the bitstream"):
        write_rtl(tmp_path / "c" / "ir", tmp_path / "c" / "rtl-fit", pes=8, run_lint=False, datapath="bitpar",
                  weights="runtime", fit_to=ra / "rtl", progress=lambda *a, **k: None)


def test_a_rowstream_design_loads_its_weight_rows_and_runs_over_the_link(tmp_path):
    """The rowstream datapath (mnist_up5k's) on the simulated board: its weight rows and
    neuron parameters loaded over the link, then every image identical to golden and the
    cycle model."""
    g = random_graph(18, max_conv=0, max_linear=3)             # 8-bit weights, pruned neurons
    _, root = _build(tmp_path, 18, pes=4, weights="runtime", graph=g, datapath="rowstream")
    design_id, weights = expected_identity(root / "rtl"), root / "rtl" / "weights.bin"
    with SimulatedBoard(root / "rtl", root / "simboard", log=lambda *a, **k: None) as board:
        res = validate_on_board(root / "ir", board.port, pes=4, design_id=design_id, weights=weights, timeout_s=20,
                                datapath="rowstream", out_dir=root / "run")
    assert res["board_matches_golden"] and res["images_identical"] == IMAGES, res["mismatches"]
    assert res["weights"] == "runtime" and res["words"] > 0
