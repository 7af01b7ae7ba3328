"""bench/datapath_options.py's cycle count of the bit-parallel datapath, against a direct loop
over positions, lane groups, taps and timesteps on random IRs (pruned neurons, strides,
pools, linear layers)."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from ticketforge.ir import run
from ticketforge.ir.random import random_graph, random_images
from ticketforge.rtl.cycles import layer_inputs

_spec = importlib.util.spec_from_file_location(
    "datapath_options", Path(__file__).parents[1] / "bench" / "datapath_options.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _direct_cycles(g, image, spikes_of, P: int, lanes: int, word: int) -> int:
    """One image, written as the datapath's loops: per output position and lane group with a
    live neuron, one cycle per tap, timestep and `word`-bit word of input channels that has
    an event (the first layer: per tap and nonzero pixel, once for all T), then T LIF updates."""
    ins = layer_inputs(g, image[None], spikes_of)
    par, T, total, first = P * lanes, g.T, 0, True
    for l in g.layers:
        if not l.has_weights:
            continue
        x = ins[l.name][0]                                            # [T, *in]
        live = np.ones(l.out_shape, bool) if l.kind == "output" else g.tensor(l, "neuron_mask").astype(bool)
        if l.kind == "conv":
            C, H, W = l.in_shape
            Co, Ho, Wo = l.out_shape
            k, s, p = g.tensor(l, "mask").shape[-1], l.stride, l.padding
            for y in range(Ho):
                for xo in range(Wo):
                    for grp in range(math.ceil(Co / par)):
                        if not live[grp * par:(grp + 1) * par, y, xo].any():
                            continue
                        for ky in range(k):
                            for kx in range(k):
                                iy, ix = y * s + ky - p, xo * s + kx - p
                                if not (0 <= iy < H and 0 <= ix < W):
                                    continue
                                if first:
                                    total += int(np.count_nonzero(x[0, :, iy, ix]))
                                else:
                                    total += sum(bool(x[t, c:c + word, iy, ix].any())
                                                 for t in range(T) for c in range(0, C, word))
                        total += T
        else:
            flat = x.reshape(T, -1)
            wd = min(flat.shape[1], word)
            n_out = l.out_shape[0]
            for grp in range(math.ceil(n_out / par)):
                if not live[grp * par:(grp + 1) * par].any():
                    continue
                for t in range(T):
                    total += sum(bool(flat[t, i:i + wd].any()) for i in range(0, flat.shape[1], wd))
                total += 0 if l.kind == "output" else T
        first = False
    return total + int(np.prod(g.input.shape)) + g.layers[-1].out_shape[0]


@pytest.mark.parametrize("seed", [0, 4, 7, 19])
@pytest.mark.parametrize("P,lanes,word", [(1, 1, 64), (2, 1, 2), (3, 2, 3)])
def test_bitpar_cycles_equal_the_direct_loop(seed, P, lanes, word):
    g = random_graph(seed, binary=True)
    images = random_images(g, 3, seed=seed)
    gold = run(g, images, trace=True)
    got = bench.bitpar(g, images, gold, P, lanes, word=word)["cycles"]
    for i in range(len(images)):
        spikes = {k: v[i:i + 1] for k, v in gold.spikes.items()}
        assert got[i] == _direct_cycles(g, images[i], spikes, P, lanes, word), (seed, P, lanes, word, i)


def test_the_bench_prints_every_option_on_an_ir_folder(tmp_path):
    """The script end to end on a random IR with its own test inputs (with the lane design's
    exact cycle model and memory inventory): one row per option, today's cycles the model's."""
    import subprocess
    import sys

    from ticketforge.ir import save_graph
    from ticketforge.rtl.cycles import cycle_model

    g = random_graph(7, binary=True)
    codes = random_images(g, 3, seed=1)
    save_graph(g, tmp_path)
    np.savez(tmp_path / "test_inputs.npz", codes=codes, labels=np.zeros(3, np.int64))
    out = subprocess.run([sys.executable, str(Path(bench.__file__)), str(tmp_path), "--images", "3", "--pes", "2",
                          "--lanes", "1", "2", "--word", "4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [r for r in out.stdout.splitlines() if r.split() and r.split()[0] in ("lane", "word", "bitpar")]
    assert [r.split()[0] for r in rows] == ["lane", "word", "bitpar", "bitpar", "bitpar", "bitpar"]
    today = np.mean([c.total for c in cycle_model(g, codes, 2)])
    assert f"{today:,.0f}" in rows[0]
