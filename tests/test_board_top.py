"""The board design (UART link + accelerator) in Amaranth simulation: bytes in, scores and
cycle count out, equal to the golden interpreter and the cycle model."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import uart_byte, uart_frame

from ticketforge.deploy.board_top import BoardTop, CoreInstance, UartRx
from ticketforge.ir import random_images, run
from ticketforge.ir.random import random_graph
from ticketforge.rtl.accel import Accelerator
from ticketforge.rtl.cycles import cycle_model

DIV = 4          # clock cycles per UART bit: the smallest the receiver allows, for speed


def _board_run(g, images, P=2):
    acc = Accelerator(g, P, trace=False)
    top = BoardTop(acc, pixels=int(np.prod(images.shape[1:])), classes=g.layers[-1].out_shape[0],
                   clk_hz=DIV * 115200)
    received = []

    K = g.layers[-1].out_shape[0]
    per_image = 2 * K + 4

    async def host(ctx):
        for n, img in enumerate(images):
            for byte in img.reshape(-1).tolist():
                for bit in uart_frame(byte):
                    ctx.set(top.rx, bit)
                    await ctx.tick().repeat(DIV)
            while len(received) < per_image * (n + 1):      # one image at a time
                await ctx.tick().repeat(64)

    async def listener(ctx):
        while len(received) < per_image * len(images):   # decode the tx line mid-bit
            await ctx.tick().until(top.tx == 0)
            received.append(await uart_byte(ctx, top.tx, DIV))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listener)
    sim.run()
    out = []
    for n in range(len(images)):
        b = received[n * per_image:(n + 1) * per_image]
        scores = [int.from_bytes(bytes(b[2 * k:2 * k + 2]), "little", signed=True) for k in range(K)]
        out.append((scores, int.from_bytes(bytes(b[2 * K:]), "little")))
    return out


@pytest.mark.parametrize("seed", [3, 11])
def test_board_link_returns_golden_scores_and_cycles(seed):
    g = random_graph(seed, binary=True)
    images = random_images(g, 2, seed)
    gold = run(g, images, trace=True)
    model = cycle_model(g, images, 2, gold=gold)
    for n, (scores, cycles) in enumerate(_board_run(g, images)):
        assert scores == gold.scores[n].tolist(), f"image {n}"
        assert cycles == model[n].total, f"image {n}"


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
