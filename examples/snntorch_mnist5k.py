"""Train a small convolutional SNN with snnTorch on mnist5k, on the CPU, and export it to NIR:
the network that `ticketforge import` and `make hw MODEL=snntorch_conv` take from another
framework.

    .venv/bin/python examples/snntorch_mnist5k.py            # -> build/snntorch_conv/snntorch_conv.nir
    make hw MODEL=snntorch_conv                              # import, RTL, regression, synthesis, report

Network: Conv2d(1 -> 12, 5x5, stride 2, padding 2) -> Leaky -> AvgPool2d(2) -> Flatten ->
Linear(588 -> 10) -> Leaky; the class scores are the output spike counts over T = 8
(direct input: the same image each step).  The neurons use snnTorch's subtract reset
without delay (``reset_delay=False``), which is the IR's soft reset in the same step, so
`ticketforge import --reset soft` describes them.  Prints snnTorch's own test accuracy.

Two things the exporter of snnTorch 1.0.0 with nir 1.0.8 needs (it traces one unbatched
sample): each Leaky's beta and threshold as tensors of the layer's shape (a scalar beta
exports a node without a shape, which nir's type inference refuses), and a Flatten of the
whole sample (``start_dim=0``; NIR has no batch dimension).  The network is trained with the
batch dimension and copied into that export form; its weights are the same.
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
BETA = 0.9
DT = 1e-4               # the time step snnTorch's exporter writes (tau = dt / (1 - beta))


def make_net(flatten_start: int) -> nn.Sequential:
    import snntorch as snn
    from snntorch import surrogate

    grad = surrogate.atan()

    def leaky(shape, output=False):
        return snn.Leaky(beta=torch.full(shape, BETA), threshold=torch.ones(shape), spike_grad=grad,
                         init_hidden=True, output=output, reset_mechanism="subtract", reset_delay=False)

    return nn.Sequential(nn.Conv2d(1, 12, 5, stride=2, padding=2), leaky((12, 14, 14)), nn.AvgPool2d(2),
                         nn.Flatten(start_dim=flatten_start), nn.Linear(12 * 7 * 7, 10), leaky((10,), output=True))


def spike_counts(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    from snntorch import utils

    utils.reset(net)
    total = 0
    for _ in range(T):
        spk, _mem = net(x)
        total = total + spk
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/snntorch_conv/snntorch_conv.nir", help="the NIR file to write")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from snntorch import functional as SF
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = mnist5k_tensors()
    net = make_net(flatten_start=1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_count_loss()
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            from snntorch import utils

            utils.reset(net)
            spk = torch.stack([net(xtr[idx])[0] for _ in range(T)])
            loss = loss_fn(spk, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((spike_counts(net, xte).argmax(1).numpy() == yte).mean())
        print(f"epoch {epoch + 1}/{args.epochs}: snnTorch test accuracy {acc:.4f} ({time.time() - t0:.0f} s)",
              flush=True)
    export = make_net(flatten_start=0)
    export.load_state_dict(net.state_dict())
    with torch.no_grad():
        graph = export_to_nir(export.eval(), torch.zeros(1, 28, 28))
    out = write_nir(graph, args.out)
    print(f"snnTorch test accuracy {acc:.4f}; NIR graph ({', '.join(type(n).__name__ for n in graph.nodes.values())}) "
          f"-> {out}; import it with --dt {DT} --reset soft --timesteps {T}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
