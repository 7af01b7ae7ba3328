"""The board design (UART link + accelerator) in Amaranth simulation, bit by bit on its UART
pins: the link protocol (`deploy/protocol.py`) framed as specified, scores and cycle count
equal to the golden interpreter and the cycle model, the identity answer, and the error
answers."""
import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import uart_byte, uart_frame

from ticketforge.deploy import protocol
from ticketforge.deploy.board_top import BoardTop, CoreInstance, UartRx
from ticketforge.ir import random_images, run
from ticketforge.ir.random import random_graph
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl.aer import aer_width, aer_words
from ticketforge.rtl.cycles import cycle_model
from ticketforge.rtl.lane.plan import field_map

DIV = 4          # clock cycles per UART bit: the smallest the receiver allows, for speed
DESIGN_ID = 0x1234ABCD


def _board(g, P=2, **kw):
    acc = Accelerator(g, P, trace=False)
    return BoardTop(acc, pixels=int(np.prod(g.input.shape)), classes=g.layers[-1].out_shape[0],
                    clk_hz=DIV * 115200, design_id=DESIGN_ID, **kw)


def _talk(top, requests: list[bytes], answers: list[int], gap_cycles: int = 0) -> list[bytes]:
    """Send each request (bit by bit on rx) and wait for its answer of the given length
    (decoded from tx) before the next; ``gap_cycles`` of silence after each request."""
    received = []

    async def host(ctx):
        for n, req in enumerate(requests):
            for byte in req:
                for bit in uart_frame(byte):
                    ctx.set(top.rx, bit)
                    await ctx.tick().repeat(DIV)
            await ctx.tick().repeat(gap_cycles + 1)
            while len(received) < sum(answers[:n + 1]):      # one request at a time
                await ctx.tick().repeat(64)

    async def listener(ctx):
        while len(received) < sum(answers):                # decode the tx line mid-bit
            await ctx.tick().until(top.tx == 0)
            received.append(await uart_byte(ctx, top.tx, DIV))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listener)
    sim.run()
    out, at = [], 0
    for n in answers:
        out.append(bytes(received[at:at + n]))
        at += n
    return out


def _frame(marker: int, payload: bytes) -> bytes:
    head = bytes([marker]) + payload
    return head + bytes([protocol.checksum(head)])


@pytest.mark.parametrize("seed", [3, 11])
def test_board_link_returns_golden_scores_and_cycles(seed):
    g = random_graph(seed, binary=True)
    images = random_images(g, 2, seed)
    gold = run(g, images, trace=True)
    model = cycle_model(g, images, 2, gold=gold)
    K = g.layers[-1].out_shape[0]
    size = protocol.image_payload(K) + 2
    answers = _talk(_board(g), [bytes([protocol.IMAGE]) + img.astype(np.uint8).tobytes() for img in images],
                    [size] * len(images))
    for n, got in enumerate(answers):
        scores = gold.scores[n].astype("<i2").tobytes()
        assert got == _frame(protocol.ANSWER_IMAGE, scores + int(model[n].total).to_bytes(4, "little")), n


def _aer_command(frames) -> bytes:
    words = aer_words(frames)
    return bytes([protocol.AER_SAMPLE]) + len(words).to_bytes(protocol.AER_HEAD, "little") + \
        b"".join(w.to_bytes(protocol.AER_WORD_BYTES, "little") for w in words)


def test_board_link_runs_event_samples_as_aer_words():
    """An event design takes ``A`` and the sample's AER words (each timestep's events and a
    step word), buffers them and feeds the core; scores and cycles as the golden model and
    the cycle model say. ``I`` is no command for it, and a count over the buffer is refused."""
    g = random_graph(1104, binary=True, events=True)
    frames = random_images(g, 2, 5)
    gold = run(g, frames)
    model = cycle_model(g, frames, 2)
    K, N = g.layers[-1].out_shape[0], int(np.prod(g.input.shape))
    cap = protocol.aer_capacity(g.T, N)
    top = _board(g, aer={"capacity": cap, "width": aer_width(g.input.shape)})
    size = protocol.image_payload(K) + 2
    too_many = bytes([protocol.AER_SAMPLE]) + (cap + 1).to_bytes(protocol.AER_HEAD, "little")
    got = _talk(top, [_aer_command(f) for f in frames] + [bytes([protocol.IMAGE]), too_many], [size, size, 3, 3])
    for n in range(2):
        scores = gold.scores[n].astype("<i2").tobytes()
        assert got[n] == _frame(protocol.ANSWER_IMAGE, scores + int(model[n].total).to_bytes(4, "little")), n
    assert got[2] == _frame(protocol.ANSWER_ERROR, bytes([protocol.ERR_COMMAND]))
    assert got[3] == _frame(protocol.ANSWER_ERROR, bytes([protocol.ERR_CAPACITY]))


def test_board_identifies_itself_and_refuses_what_it_does_not_know():
    g = random_graph(3, binary=True)
    N, K = int(np.prod(g.input.shape)), g.layers[-1].out_shape[0]
    ident, unknown, load = _talk(_board(g), [bytes([protocol.IDENTIFY]), b"x", b"W"],
                                 [protocol.ID_PAYLOAD + 2, 3, 3])
    assert ident == _frame(protocol.ANSWER_ID, protocol.MAGIC + bytes([protocol.VERSION, K]) +
                           N.to_bytes(2, "little") + DESIGN_ID.to_bytes(4, "little") + bytes(4))
    assert unknown == load == _frame(protocol.ANSWER_ERROR, bytes([protocol.ERR_COMMAND]))   # baked: no W


def test_board_drops_an_incomplete_image_and_runs_the_next():
    g = random_graph(3, binary=True)
    images = random_images(g, 2, 3)
    gold = run(g, images)
    timeout = 40 * 10 * DIV
    top = _board(g, byte_timeout_cycles=timeout)
    K = g.layers[-1].out_shape[0]
    short = bytes([protocol.IMAGE]) + images[0].astype(np.uint8).tobytes()[:-1]
    full = bytes([protocol.IMAGE]) + images[1].astype(np.uint8).tobytes()
    dropped, answer = _talk(top, [short, full], [3, protocol.image_payload(K) + 2], gap_cycles=timeout)
    assert dropped == _frame(protocol.ANSWER_ERROR, bytes([protocol.ERR_INCOMPLETE]))
    assert answer[1:1 + 2 * K] == gold.scores[1].astype("<i2").tobytes()


def test_a_core_whose_scores_the_link_cannot_carry_is_refused_by_name():
    from types import SimpleNamespace

    from amaranth import Signal

    from ticketforge.errors import UnsupportedError

    core = SimpleNamespace(scores=SimpleNamespace(payload=Signal(17)))
    with pytest.raises(UnsupportedError, match="16 bits; this core's scores are 17 bits wide"):
        BoardTop(core, pixels=4, classes=2, clk_hz=DIV * 115200, design_id=DESIGN_ID)


def test_uart_divisor_checked():
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)


def test_core_instance_takes_ports_from_interface(tmp_path):
    from ticketforge.rtl.emit import write_rtl
    from ticketforge.ir import save_graph
    g = random_graph(3, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=2, run_lint=False, progress=lambda *a, **k: None)
    import json
    core = CoreInstance(json.loads((tmp_path / "rtl" / "interface.json").read_text()))
    assert core.pixels__payload.shape().width == 8 and core.scores__payload.shape().signed
    assert not hasattr(core, "trace_valid")


def test_board_loads_runtime_weights_then_runs_an_image():
    """A core with runtime weights: every memory through W commands (acknowledged with L),
    the weights id through D (answered with the identity that now carries it), then an
    image equal to the golden model."""
    g = random_graph(11, binary=True)
    acc = Accelerator(g, 2, trace=False, weights="runtime")
    plan = acc.plan
    load = {"memories": plan.loadable, "layout": dataclasses.asdict(field_map(plan.load_layout))}
    top = BoardTop(acc, pixels=int(np.prod(g.input.shape)), classes=g.layers[-1].out_shape[0],
                   clk_hz=DIV * 115200, design_id=DESIGN_ID, load=load)
    requests, answers = [], []
    for spec, words in plan.load_contents():
        nb = (spec["width"] + 7) // 8
        requests.append(bytes([protocol.LOAD, spec["index"]]) + (0).to_bytes(3, "little") +
                        len(words).to_bytes(2, "little") + b"".join(int(w).to_bytes(nb, "little") for w in words))
        answers.append(protocol.LOADED_PAYLOAD + 2)
    requests.append(bytes([protocol.WEIGHTS_ID]) + (0xC0FFEE).to_bytes(4, "little"))
    answers.append(protocol.ID_PAYLOAD + 2)
    image = random_images(g, 1, 11)[0]
    requests.append(bytes([protocol.IMAGE]) + image.astype(np.uint8).tobytes())
    K = g.layers[-1].out_shape[0]
    answers.append(protocol.image_payload(K) + 2)
    got = _talk(top, requests, answers)
    for (spec, words), ack in zip(plan.load_contents(), got):
        assert ack == _frame(protocol.ANSWER_LOADED, bytes([spec["index"]]) + len(words).to_bytes(2, "little"))
    assert got[-2][-5:-1] == (0xC0FFEE).to_bytes(4, "little")          # the identity's weights id
    assert got[-1][1:1 + 2 * K] == run(g, image[None]).scores[0].astype("<i2").tobytes()
