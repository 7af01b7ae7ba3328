"""Train a small convolutional SNN with Norse on mnist5k, on the CPU, and export it to NIR:
the second framework whose networks `ticketforge import` and `make hw MODEL=norse_conv` take.

    .venv/bin/python examples/norse_mnist5k.py               # -> build/norse_conv/norse_conv.nir
    make hw MODEL=norse_conv                                 # import, RTL, regression, synthesis, report

Network: Conv2d(1 -> 12, 5x5, stride 2, padding 2) -> LIFBox -> Conv2d(12 -> 24, 3x3, stride 2,
padding 1) -> LIFBox -> Conv2d(24 -> 10, 7x7) -> LIFBox; the class scores are the output spike
counts over T = 8 (direct input: the same image each step).  Norse's box LIF (no synaptic
current) with ``tau_mem_inv = 200`` at its ``dt = 1e-3``: ``v <- 0.8 v + 0.2 i``, a spike
when ``v`` passes 1, then ``v = 0`` (the IR's hard reset).  Prints Norse's own test accuracy.

What Norse 1.1.0's NIR exporter (``norse.torch.to_nir``) needs and does, with nir 1.0:
- it writes no node for Flatten or a pool (they come out empty), so the network is
  convolutions only, and its last conv covers the whole 7x7 map: the import reads that as
  a linear readout;
- a scalar neuron parameter gives a LIF node without a shape, which nir's type inference
  refuses, so every parameter is a tensor of its layer's shape;
- it leaves the types of all but the first conv empty, which ``nir.write`` refuses: the
  graph's own ``infer_types()`` fills them in before writing;
- it writes ``tau = dt / tau_mem_inv``: ``dt`` times the time constant.  The import's
  forward Euler step ``dt_import / tau`` equals Norse's ``dt * tau_mem_inv`` when
  ``dt_import = dt^2``: ``--dt 1e-6`` for Norse's ``1e-3`` (the float accuracy of the NIR
  graph, which the import reports, equals Norse's own when this is right).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist5k_nir import mnist5k_tensors, write_nir  # noqa: E402  (the examples' shared helper)

T = 8
DT = 1e-3                # Norse's time step (its default)
TAU_MEM_INV = 200.0      # 1 / tau_mem: a decay of 1 - DT * TAU_MEM_INV = 0.8 per step
IMPORT_DT = DT * DT      # what `ticketforge import --dt` takes for Norse 1.1's tau (see above)
SURROGATE_ALPHA = 10.0
INIT_GAIN = 10.0


def make_net() -> nn.Module:
    import norse.torch as nt

    def lif(shape):
        full = lambda v: torch.full(shape, float(v))        # noqa: E731
        # a wider SuperSpike surrogate than the default (alpha 100): gradients reach neurons
        # far from the threshold, which the deeper layers are at the start
        p = nt.LIFBoxParameters(tau_mem_inv=full(TAU_MEM_INV), v_leak=full(0), v_th=full(1), v_reset=full(0),
                                alpha=torch.tensor(SURROGATE_ALPHA))
        return nt.LIFBoxCell(p, dt=DT)

    convs = [nn.Conv2d(1, 12, 5, stride=2, padding=2), nn.Conv2d(12, 24, 3, stride=2, padding=1), nn.Conv2d(24, 10, 7)]
    with torch.no_grad():
        for c in convs:             # torch's default init is too weak to make the layers fire at all
            c.weight.mul_(INIT_GAIN)
    return nt.SequentialState(convs[0], lif((12, 14, 14)), convs[1], lif((24, 7, 7)), convs[2], lif((10, 1, 1)))


def spike_counts(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    state, total = None, 0
    for _ in range(T):
        spk, state = net(x, state)
        total = total + spk.reshape(len(x), -1)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/norse_conv/norse_conv.nir", help="the NIR file to write")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import norse.torch as nt

    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = mnist5k_tensors()
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    t0 = time.time()
    acc = 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(spike_counts(net, xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((spike_counts(net, xte).argmax(1).numpy() == yte).mean())
        print(f"epoch {epoch + 1}/{args.epochs}: Norse test accuracy {acc:.4f} ({time.time() - t0:.0f} s)",
              flush=True)
    with torch.no_grad():
        graph = nt.to_nir(net.eval(), torch.zeros(1, 28, 28), dt=DT)    # one unbatched sample
    graph.infer_types()         # the exporter leaves the inner convs' types empty, which nir.write refuses
    out = write_nir(graph, args.out)
    print(f"Norse test accuracy {acc:.4f}; NIR graph ({', '.join(type(n).__name__ for n in graph.nodes.values())}) "
          f"-> {out}; import it with --dt {IMPORT_DT:g} --reset hard --timesteps {T}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
