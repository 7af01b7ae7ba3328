"""NIR graphs (snnTorch, Norse, Sinabs, Rockpool, Spyx, spikingjelly...) into the integer IR.

``ticketforge import --nir FILE --name NAME --dt DT`` reads a NIR file (the ``nir`` package)
and writes ``build/<name>/ir/`` as `quantize` does for a ticket, so that `rtl`, `sim`,
`synth`, `hls` and the report run on it.

What is taken: a chain Input -> ... -> Output of Affine, Linear, Conv2d, LIF, IF, Flatten,
SumPool2d, AvgPool2d and Scale.  Anything else (CubaLIF, LI, recurrent subgraphs, a branch)
is refused naming the node and why.

Discretisation (forward Euler with the given ``dt``, as the exporters define their nodes;
snnTorch writes a Leaky neuron as ``tau = dt / (1 - beta)``, ``r = tau / dt``):

- LIF ``tau dv/dt = (v_leak - v) + r I``:  ``v <- (1 - dt/tau) v + (dt r / tau) I``;
- IF ``dv/dt = r I``:  ``v <- v + dt r I``;
- a neuron fires when ``v >= v_threshold`` and then resets (``--reset hard``: to 0;
  ``soft``: subtracts the threshold), in the same step, as the integer IR does (docs/IR.md).
  NIR does not say which reset its producer used, so the import asks.

How the nodes become IR layers:

- weights are quantized per layer to ``weight_bits`` signed bits (``w = round(W / d)``,
  ``d = max|W| / (2^(B-1) - 1)``); the bias, the neuron gain ``dt r / tau`` and a per-channel
  threshold (the membrane of channel c divided by its threshold, so the IR's threshold is
  1 before integerisation: exact for ``v_leak = 0``) go into the float IR's fold factors,
  which the IR's own passes (`ir.passes`) integerise as for a ticket;
- a Scale node folds into the weights beside it;
- a conv whose kernel covers its whole (unpadded) input, a 1 x 1 output, is a linear layer on
  the flattened input: conv networks exported without a Flatten node end that way;
- a sum pool folds into the next weighted layer: a K x K sum pool (stride K) then a conv
  of kernel k, stride s, padding p is one conv of kernel kK, stride sK, padding pK with
  each weight repeated over its K x K window; then a linear layer, each weight repeated over
  the window of its input.  An average pool is the sum pool times 1 / K^2, which the weights
  take before quantization.  So pooled values, integers rather than spikes, are carried
  exactly: the pooled layer never exists, its weights see the spikes under the window;
- a spiking readout (the last weighted layer followed by LIF or IF: snnTorch's and Norse's
  usual last layer, whose spike counts over T are the class scores) becomes that neuron
  layer plus an identity readout of binary weights: the IR's scores, the sum over T of the
  readout's input, are then exactly the spike counts.  A non-spiking last layer is the
  IR's readout (the sum over T of its accumulations), and must have no bias.

The float accuracy reported is the NIR graph itself run with these semantics on float
inputs (`run_float`); the integer accuracy is the golden interpreter on the IR.  Both are
measured on the same test split; the cost of the integer IR is their difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketforge.errors import TicketforgeError
from ticketforge.ir.schema import Graph, InputSpec, Layer, Neuron

__all__ = ["NIRImportError", "SUPPORTED", "Block", "read_nir", "nir_blocks", "float_graph", "run_float",
           "import_nir"]

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "LIF", "IF", "Flatten", "SumPool2d", "AvgPool2d",
             "Scale")
WHY_NOT = {
    "CubaLIF": "its synaptic current is a second state with its own decay, which the IR's neuron (one membrane) "
               "does not have",
    "CubaLI": "a leaky integrator without spikes has no integer IR form",
    "LI": "a leaky integrator without spikes has no integer IR form",
    "Integrator": "a non-spiking integrator has no integer IR form",
    "NIRGraph": "a subgraph (a recurrent layer) is not a feed-forward chain",
    "Threshold": "a bare threshold without a membrane is not a neuron of the IR",
    "Delay": "delays are not in the IR",
    "Conv1d": "the IR's convolutions are 2-d",
}


class NIRImportError(TicketforgeError):
    """A NIR file that cannot become an IR: unreadable, malformed, or with a node or a
    parameter the IR has no form for (the message names the node)."""


@dataclass
class Block:
    """One step of the imported chain as the IR sees it: ``syn`` (a weighted layer: float
    weights, with any pool and Scale before it folded in, and bias), ``neuron`` (LIF/IF,
    per-channel parameters) or ``flatten``."""
    kind: str
    node: str                                   # the NIR node's name
    weight: np.ndarray | None = None            # syn: [Co, Ci, k, k] (conv) or [Co, Ci] (linear)
    bias: np.ndarray | None = None              # syn: [Co]
    stride: int = 1
    padding: int = 0
    lam: float = 1.0                            # neuron: decay per step
    gain: np.ndarray | None = None              # neuron: input gain per channel
    threshold: np.ndarray | None = None         # neuron: per channel
    in_shape: tuple = ()
    out_shape: tuple = ()


def _fail(node: str, msg: str) -> NIRImportError:
    return NIRImportError(f"NIR node {node!r}: {msg}")


def read_nir(path: Path):
    """The NIR graph in ``path`` (errors name the file and what is wrong with it)."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path} does not exist: give the NIR file an exporter wrote (e.g. snnTorch's "
                             f"`nir.write(path, export_to_nir(net, sample))`)")
    try:
        graph = nir.read(str(path))
    except Exception as e:                          # h5py and nir raise many kinds on a bad file
        raise NIRImportError(f"{path} is not a readable NIR file ({type(e).__name__}: {e})") from None
    if not hasattr(graph, "nodes") or not hasattr(graph, "edges"):
        raise NIRImportError(f"{path} holds a single NIR node, not a graph: export the whole network")
    return graph


def _arr(node: str, name: str, v) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(node, f"{name} is not numeric") from None
    if not np.all(np.isfinite(a)):
        raise _fail(node, f"{name} has NaN or infinite values")
    return a


def _chain(graph) -> list[tuple[str, object]]:
    """The nodes from the Input to the Output, in order; a branch or a cycle is refused."""
    names = list(graph.nodes)
    kinds = {n: type(graph.nodes[n]).__name__ for n in names}
    inputs = [n for n in names if kinds[n] == "Input"]
    outputs = [n for n in names if kinds[n] == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"the graph needs exactly one Input and one Output node, has {len(inputs)} and "
                             f"{len(outputs)}")
    succ: dict[str, list[str]] = {n: [] for n in names}
    pred: dict[str, list[str]] = {n: [] for n in names}
    for edge in graph.edges:
        try:
            a, b = edge
        except (TypeError, ValueError):
            raise NIRImportError(f"edge {edge!r} is not a (source, target) pair") from None
        a, b = str(a).split(".")[0], str(b).split(".")[0]
        if a not in succ or b not in succ:
            raise NIRImportError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    order, at = [], inputs[0]
    while True:
        order.append(at)
        if len(order) > len(names):
            raise NIRImportError("the graph has a cycle: only feed-forward chains are imported")
        if at == outputs[0]:
            break
        if len(succ[at]) != 1:
            raise _fail(at, f"{len(succ[at])} outgoing edges: only chains are imported (no branches, "
                            "no residual connections)")
        nxt = succ[at][0]
        if len(pred[nxt]) != 1:
            raise _fail(nxt, f"{len(pred[nxt])} incoming edges: only chains are imported")
        at = nxt
    if len(order) != len(names):
        stray = sorted(set(names) - set(order))
        raise NIRImportError(f"nodes {stray} are not on the Input -> Output chain")
    return [(n, graph.nodes[n]) for n in order]


def _input_shape(node: str, inp) -> tuple:
    t = getattr(inp, "input_type", None) or {}
    shape = t.get("input") if isinstance(t, dict) else None
    if shape is None:
        raise _fail(node, "the Input node has no input shape")
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise _fail(node, f"input shape {shape}: the IR takes (C, H, W) images or (N,) vectors")
    return shape


def _pair(node: str, name: str, v, default: int) -> int:
    """A square kernel's int from a scalar or an (a, a) pair."""
    if v is None:
        return default
    a = np.asarray(v).reshape(-1)
    if isinstance(v, str):
        raise _fail(node, f"{name} {v!r}: give explicit integer padding")
    if a.size == 0 or a.size > 2 or (a.size == 2 and a[0] != a[1]):
        raise _fail(node, f"{name} {a.tolist()}: the IR takes square kernels, strides and padding")
    if not float(a[0]).is_integer() or a[0] < 0:
        raise _fail(node, f"{name} {a.tolist()} is not a non-negative integer")
    return int(a[0])


def _per_channel(node: str, name: str, v, channels: int, shape: tuple) -> np.ndarray:
    """A neuron parameter as one value per channel: a scalar, one per channel, or one per
    neuron that is the same across each channel's positions."""
    a = _arr(node, name, v)
    if a.size == 1:
        return np.full(channels, float(a.reshape(-1)[0]))
    if a.size == channels:
        return a.reshape(channels)
    if a.size == math.prod(shape):
        per = a.reshape(channels, -1)
        if not np.all(per == per[:, :1]):
            raise _fail(node, f"{name} differs between neurons of one channel: the IR's parameters are per "
                              "channel (per layer for tau)")
        return per[:, 0].copy()
    raise _fail(node, f"{name} has {a.size} values for {channels} channels of shape {shape}")


def nir_blocks(graph, dt: float) -> tuple[tuple, list[Block]]:
    """The input shape and the chain as the IR will see it: weighted layers, neurons and
    flattens, with Scale and pool nodes folded into the weighted layers (module docstring)."""
    if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise NIRImportError(f"--dt must be the positive time step the exporter used (snnTorch: 1e-4), got {dt!r}")
    chain = _chain(graph)
    in_shape = _input_shape(*chain[0])
    shape = ir_shape = in_shape     # the NIR graph's shape here, and the IR's (pools not applied)
    blocks: list[Block] = []
    pool_K, pool_factor = 1, 1.0    # pools waiting for the next weighted layer
    flat_pooled: tuple | None = None    # (C, Hp, Wp) when a Flatten came after waiting pools
    scale: np.ndarray | None = None     # per input channel, waiting for the next weights
    for name, node in chain[1:-1]:
        kind = type(node).__name__
        if kind not in SUPPORTED:
            why = WHY_NOT.get(kind, "the IR has no form for it")
            raise _fail(name, f"{kind} is not supported: {why}; supported: {', '.join(SUPPORTED)}")
        if kind in ("Affine", "Linear", "Conv2d"):
            w = _arr(name, "weight", node.weight)
            b = _arr(name, "bias", node.bias).reshape(-1) if kind != "Linear" else np.zeros(w.shape[0] if w.ndim else 0)
            stride, pad = 1, 0
            if kind == "Conv2d":
                if w.ndim != 4 or w.shape[2] != w.shape[3]:
                    raise _fail(name, f"conv weight of shape {w.shape}: the IR takes [Co, Ci, k, k]")
                if int(np.asarray(node.groups).reshape(-1)[0]) != 1:
                    raise _fail(name, f"grouped convolution (groups {node.groups}) is not supported")
                if _pair(name, "dilation", node.dilation, 1) != 1:
                    raise _fail(name, f"dilation {node.dilation} is not supported")
                stride, pad = _pair(name, "stride", node.stride, 1), _pair(name, "padding", node.padding, 0)
                if stride < 1:
                    raise _fail(name, "stride 0")
                if len(shape) != 3 or w.shape[1] != shape[0]:
                    raise _fail(name, f"a conv taking {w.shape[1]} channels on an input of shape {shape}")
            elif w.ndim != 2:
                raise _fail(name, f"weight of shape {w.shape}: a linear layer's is [out, in]")
            elif len(shape) != 1 or w.shape[1] != shape[0]:
                raise _fail(name, f"weight takes {w.shape[1]} inputs, the input is {shape} (a Flatten before a "
                                  "linear layer?)")
            if b.size != w.shape[0]:
                raise _fail(name, f"bias has {b.size} values for {w.shape[0]} outputs")
            if scale is not None:           # a Scale on the spikes: each input channel's weights
                w = w * (scale.reshape(1, -1, 1, 1) if w.ndim == 4 else
                         np.repeat(scale, w.shape[1] // scale.size).reshape(1, -1))
            if w.ndim == 4 and pool_K == 1 and pad == 0 and (w.shape[2], w.shape[3]) == tuple(shape[1:]):
                # a conv whose kernel covers its whole input is a linear layer on the flattened
                # map (C-H-W order, the IR's flatten): how conv networks exported without a
                # Flatten node (Norse 1.1's exporter writes none) end
                blocks.append(Block("flatten", name, in_shape=ir_shape, out_shape=(math.prod(ir_shape),)))
                shape = ir_shape = (math.prod(shape),)
                w = w.reshape(w.shape[0], -1)
                stride = 1
            if w.ndim == 4:
                C, H, W = shape
                ho, wo = (H + 2 * pad - w.shape[2]) // stride + 1, (W + 2 * pad - w.shape[2]) // stride + 1
                if ho < 1 or wo < 1:
                    raise _fail(name, f"kernel {w.shape[2]} does not fit its {H}x{W} input")
                out = (w.shape[0], ho, wo)
                if pool_K > 1:      # conv on the pooled map = conv with each weight over its window
                    w = np.repeat(np.repeat(w, pool_K, axis=2), pool_K, axis=3) * pool_factor
                    stride, pad = stride * pool_K, pad * pool_K
            else:
                out = (w.shape[0],)
                if flat_pooled is not None:     # each weight over its input's pool window
                    C, Hp, Wp = flat_pooled
                    w = np.repeat(np.repeat(w.reshape(-1, C, Hp, Wp), pool_K, axis=2), pool_K, axis=3)
                    w = w.reshape(w.shape[0], -1) * pool_factor
            blocks.append(Block("syn", name, weight=w, bias=b, stride=stride, padding=pad, in_shape=ir_shape,
                                out_shape=out))
            shape = ir_shape = out
            pool_K, pool_factor, flat_pooled, scale = 1, 1.0, None, None
        elif kind in ("LIF", "IF"):
            if not blocks or blocks[-1].kind != "syn" or blocks[-1].out_shape != shape:
                raise _fail(name, f"a {kind} neuron must follow a weighted layer (Affine, Linear, Conv2d)")
            C = shape[0]
            thr = _per_channel(name, "v_threshold", node.v_threshold, C, shape)
            if np.any(thr <= 0):
                raise _fail(name, "v_threshold must be > 0")
            r = _per_channel(name, "r", node.r, C, shape)
            if getattr(node, "v_reset", None) is not None and np.any(_arr(name, "v_reset", node.v_reset) != 0):
                raise _fail(name, "v_reset != 0: the IR resets to 0 (hard) or by the threshold (soft)")
            if kind == "LIF":
                tau = _per_channel(name, "tau", node.tau, C, shape)
                if np.any(tau != tau[0]):
                    raise _fail(name, "per-neuron tau: the IR's leak is one per layer")
                if np.any(_arr(name, "v_leak", node.v_leak) != 0):
                    raise _fail(name, "v_leak != 0 is not supported (the membrane must rest at 0)")
                if not tau[0] >= dt:
                    raise _fail(name, f"tau {tau[0]} < dt {dt}: the discretised decay 1 - dt/tau would be negative")
                lam, gain = 1.0 - dt / tau[0], dt * r / tau[0]
            else:
                lam, gain = 1.0, dt * r
            if np.any(gain <= 0):
                raise _fail(name, "a neuron's input gain (dt r / tau) must be > 0")
            blocks.append(Block("neuron", name, lam=float(lam), gain=gain, threshold=thr, in_shape=shape,
                                out_shape=shape))
        elif kind == "Flatten":
            start = int(np.asarray(getattr(node, "start_dim", 0)).reshape(-1)[0])
            if len(shape) == 3 and start not in (0, -3):
                raise _fail(name, f"Flatten from dimension {start} of a (C, H, W) map: the IR flattens all of it "
                                  "(NIR has no batch dimension: start_dim 0)")
            if pool_K > 1:
                flat_pooled = shape
            blocks.append(Block("flatten", name, in_shape=ir_shape, out_shape=(math.prod(ir_shape),)))
            shape, ir_shape = (math.prod(shape),), (math.prod(ir_shape),)
        elif kind in ("SumPool2d", "AvgPool2d"):
            K = _pair(name, "kernel_size", node.kernel_size, 1)
            if K < 1 or _pair(name, "stride", node.stride, K) != K or _pair(name, "padding", node.padding, 0) != 0:
                raise _fail(name, "only non-overlapping pools without padding (stride = kernel) are taken")
            if len(shape) != 3 or shape[1] % K or shape[2] % K:
                raise _fail(name, f"a {K}x{K} pool of a {shape} map: the map must be (C, H, W) with H and W "
                                  f"divisible by {K}")
            pool_K *= K
            pool_factor *= 1.0 / (K * K) if kind == "AvgPool2d" else 1.0
            shape = (shape[0], shape[1] // K, shape[2] // K)
        elif kind == "Scale":
            s = _per_channel(name, "scale", node.scale, shape[0], shape)
            if blocks and blocks[-1].kind == "syn" and blocks[-1].out_shape == shape:
                blocks[-1].weight = blocks[-1].weight * s.reshape(-1, *([1] * (blocks[-1].weight.ndim - 1)))
                blocks[-1].bias = blocks[-1].bias * s
            else:                       # on spikes (per channel: it passes pools and flattens)
                scale = s if scale is None else scale * s
    if pool_K > 1 or scale is not None:
        raise NIRImportError("the chain ends in a pool or a Scale after the last weighted layer: the readout must "
                             "be the last weighted layer (with or without a LIF/IF after it)")
    kinds = [b.kind for b in blocks if b.kind in ("syn", "neuron")]
    if "syn" not in kinds:
        raise NIRImportError("the graph has no weighted layer")
    if any(a == b == "syn" for a, b in zip(kinds, kinds[1:])):
        raise NIRImportError("two weighted layers without a neuron between them: fold them before exporting "
                             "(the IR's hidden layers are spiking)")
    if kinds[0] != "syn":
        raise NIRImportError("the first layer must be weighted (the IR's input is pixels)")
    return in_shape, blocks


def _quantize(name: str, w: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    top = float(np.abs(w).max(initial=0.0))
    if top == 0.0:
        raise _fail(name, "all weights are zero")
    levels = (1 << (bits - 1)) - 1
    step = top / levels
    return np.clip(np.round(w / step), -levels, levels).astype(np.int8), step


def float_graph(in_shape: tuple, blocks: list[Block], dataset_shape: tuple, T: int, weight_bits: int, reset: str,
                pixel_max: int, provenance: dict) -> Graph:
    """The float-stage IR of the imported chain (integer weights, fold factors), for the
    IR's lowering passes; ``dataset_shape`` is the images' (C, H, W)."""
    if not 2 <= weight_bits <= 8:
        raise NIRImportError(f"--weight-bits must be in 2..8 (the accelerator's widths), got {weight_bits}")
    if reset not in ("hard", "soft"):
        raise NIRImportError(f"--reset must be hard or soft (NIR does not record it), got {reset!r}")
    if not 1 <= T <= 64:
        raise NIRImportError(f"--timesteps must be in 1..64, got {T}")
    layers: list[Layer] = []
    tensors: dict[str, np.ndarray] = {}
    shape = tuple(dataset_shape)
    if tuple(in_shape) != shape:
        if math.prod(in_shape) != math.prod(shape) or len(in_shape) != 1:
            raise NIRImportError(f"the graph's input is {tuple(in_shape)}, the dataset's images are {shape}")
        layers.append(Layer("flatten0", "flatten", shape, tuple(in_shape)))
        shape = tuple(in_shape)
    counts = {"conv": 0, "fc": 0, "flatten": 0}
    in_scale = 1.0 / pixel_max
    syn_blocks = [b for b in blocks if b.kind == "syn"]
    i = 0
    while i < len(blocks):
        b = blocks[i]
        if b.kind == "flatten":
            counts["flatten"] += 1
            layers.append(Layer(f"flatten{counts['flatten']}" if counts["flatten"] > 1 else "flatten", "flatten",
                                shape, b.out_shape))
            shape = b.out_shape
            i += 1
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        conv = b.weight.ndim == 4
        w_int, step = _quantize(b.node, b.weight, weight_bits)
        geo = dict(kernel=b.weight.shape[2], stride=b.stride, padding=b.padding) if conv else {}
        if nxt is None or nxt.kind != "neuron":
            if b is not syn_blocks[-1]:
                raise _fail(b.node, "a hidden weighted layer must be followed by LIF or IF")
            if conv:
                raise _fail(b.node, "the readout must be a linear layer")
            if np.abs(b.bias).max(initial=0.0) > 1e-12 * float(np.abs(b.weight).max()):
                raise _fail(b.node, "a non-spiking readout with a bias: the IR's scores (the sum over T of the "
                                    "readout's accumulations) have no bias; export the last layer without one, "
                                    "or end the network in a LIF/IF layer")
            tensors["output.weight"], tensors["output.mask"] = w_int, (w_int != 0).astype(np.uint8)
            layers.append(Layer("output", "output", shape, b.out_shape, weight_bits=weight_bits,
                                tensors={"weight": "output.weight", "mask": "output.mask"}))
            shape = b.out_shape
            i += 1
            continue
        n = nxt
        prefix = "conv" if conv else "fc"
        counts[prefix] += 1
        name = f"{prefix}{counts[prefix]}"
        C = b.out_shape[0]
        refs = {r: f"{name}.{r}" for r in ("weight", "mask", "bn_mean", "bn_var", "bn_gamma", "bn_beta",
                                           "neuron_mask")}
        per = n.gain / n.threshold                  # the membrane in units of the channel's threshold
        tensors.update({refs["weight"]: w_int, refs["mask"]: (w_int != 0).astype(np.uint8),
                        refs["bn_mean"]: np.zeros(C), refs["bn_var"]: np.ones(C),
                        refs["bn_gamma"]: per.astype(np.float64), refs["bn_beta"]: (b.bias * per).astype(np.float64),
                        refs["neuron_mask"]: np.ones(b.out_shape, np.uint8)})
        layers.append(Layer(name, "conv" if conv else "linear", shape, b.out_shape, weight_bits=weight_bits,
                            neuron=Neuron(reset=reset), tensors=refs, **geo,
                            attrs={"scale": step * in_scale, "bn_eps": 0.0, "v_threshold": 1.0, "lam": n.lam}))
        shape = b.out_shape
        in_scale = 1.0
        i += 2
        if b is syn_blocks[-1]:                     # a spiking readout: its spike counts are the scores
            if conv:
                raise _fail(b.node, "a spiking readout must be a linear layer")
            K = b.out_shape[0]
            eye = np.eye(K, dtype=np.int8)
            tensors["output.weight"], tensors["output.mask"] = eye, eye.astype(np.uint8)
            layers.append(Layer("output", "output", shape, shape, weight_bits=2,
                                tensors={"weight": "output.weight", "mask": "output.mask"}))
    bits = max(1, int(pixel_max).bit_length())
    spec = InputSpec(tuple(int(s) for s in dataset_shape), bits=bits, pixel_max=int(pixel_max))
    return Graph(T=T, input=spec, layers=tuple(layers), tensors=tensors, provenance=provenance, stage="float")


def run_float(graph, dt: float, images: np.ndarray, pixel_max: int, T: int, reset: str,
              batch: int = 250) -> np.ndarray:
    """Class scores of the NIR graph itself, node by node (pools and scales as they are, not
    folded), in float, under the discretisation of the module docstring: the spike counts of
    a spiking readout, else the sum over T of the readout's outputs.  This is the reference
    the integer IR is measured against.  ``images`` are pixel codes [N, C, H, W]."""
    import torch
    import torch.nn.functional as F

    chain = _chain(graph)
    in_shape = _input_shape(*chain[0])
    nodes = [(n, node) for n, node in chain[1:-1]]
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[s:s + batch], np.float64) / pixel_max)
            x = x.reshape(len(x), *in_shape)
            state: dict[str, torch.Tensor] = {}
            total = None
            for _ in range(T):
                h = x
                for name, node in nodes:
                    kind = type(node).__name__
                    if kind == "Conv2d":
                        h = F.conv2d(h, torch.from_numpy(_arr(name, "weight", node.weight)),
                                     torch.from_numpy(_arr(name, "bias", node.bias).reshape(-1)),
                                     stride=_pair(name, "stride", node.stride, 1),
                                     padding=_pair(name, "padding", node.padding, 0))
                    elif kind in ("Linear", "Affine"):
                        bias = torch.from_numpy(_arr(name, "bias", node.bias).reshape(-1)) if kind == "Affine" else None
                        h = F.linear(h, torch.from_numpy(_arr(name, "weight", node.weight)), bias)
                    elif kind == "Flatten":
                        h = h.reshape(len(h), -1)
                    elif kind in ("SumPool2d", "AvgPool2d"):
                        K = _pair(name, "kernel_size", node.kernel_size, 1)
                        h = F.avg_pool2d(h, K) * (K * K if kind == "SumPool2d" else 1)
                    elif kind == "Scale":
                        sc = _arr(name, "scale", node.scale)
                        h = h * torch.from_numpy(sc.reshape(tuple(h.shape[1:]) if sc.size > 1 else (1,)))
                    else:                                   # LIF, IF (nir_blocks checked the rest)
                        C = h.shape[1]
                        shp = (1, -1) + (1,) * (h.dim() - 2)
                        per = lambda v, what: torch.from_numpy(  # noqa: E731
                            _per_channel(name, what, v, C, tuple(h.shape[1:]))).reshape(shp)
                        thr, r = per(node.v_threshold, "v_threshold"), per(node.r, "r")
                        if kind == "LIF":
                            tau = per(node.tau, "tau")
                            lam, gain = 1.0 - dt / tau, dt * r / tau
                        else:
                            lam, gain = 1.0, dt * r
                        v = lam * state.get(name, torch.zeros_like(h)) + gain * h
                        spk = (v >= thr).to(h.dtype)
                        state[name] = v * (1 - spk) if reset == "hard" else v - spk * thr
                        h = spk
                total = h if total is None else total + h
            out.append(total.reshape(len(total), -1).numpy())
    return np.concatenate(out)


CALIBRATION_IMAGES = 1000   # training images whose membrane ranges size the IR's membranes
VECTOR_IMAGES = 8           # test images in vectors.npz, with every layer's spikes


def import_nir(nir_path: Path, out_dir: Path, dt: float, dataset: str, reset: str, T: int, weight_bits: int = 8,
               precision_bits: int = 8, data_dir: str | None = None, progress=print) -> dict:
    """``nir_path`` -> the integer IR in ``out_dir`` (graph, tensors, test inputs, vectors,
    metrics, manifest: what `quantize` writes for a ticket); returns the metrics."""
    import hashlib
    import json
    import time

    from ticketforge.ir import LOWERING_PASSES, run, save_graph, size_membranes, validate
    from ticketforge.ir.io import TEST_INPUTS_FILE
    from ticketforge.model.data import load_dataset
    from ticketforge.records import clear_record, write_record

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    clear_record(out_dir / "manifest.json")        # the stage's record: removed first, written last
    graph = read_nir(nir_path)
    in_shape, blocks = nir_blocks(graph, dt)
    ds = load_dataset(dataset, data_dir, timesteps=T)
    if ds.events:
        raise NIRImportError(f"--dataset {dataset}: event data; the NIR import calibrates on image datasets "
                             "(a NIR graph's input there is a pixel image entering every timestep)")
    digest = hashlib.sha256(Path(nir_path).read_bytes()).hexdigest()
    provenance = {"nir": str(nir_path), "nir_sha256": digest, "dt": dt, "reset": reset, "weight_bits": weight_bits,
                  "dataset": ds.name, "dataset_pixel_max": ds.pixel_max, "nodes": [b.node for b in blocks]}
    g = float_graph(in_shape, blocks, ds.input_shape, T, weight_bits, reset, ds.pixel_max, provenance)
    for p in LOWERING_PASSES:
        g = p(g, precision_bits=precision_bits) if p.__name__ == "integerize" else p(g)
    g = validate(size_membranes(g, ds.train.images[:CALIBRATION_IMAGES]))
    progress(f"[import] IR: {len(g.layers)} layers, {weight_bits}-bit weights, membranes "
             f"{[l.neuron.membrane_bits for l in g.layers if l.neuron]} bits, input shifts "
             f"{[l.input_shift for l in g.layers if l.neuron]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_graph(g, out_dir)
    codes, labels = ds.test.images, ds.test.labels
    pred = run(g, codes).predictions
    float_pred = run_float(graph, dt, codes, ds.pixel_max, T, reset).argmax(1)
    vec = run(g, codes[:VECTOR_IMAGES], trace=True)
    arrays = {"inputs": codes[:VECTOR_IMAGES], "labels": labels[:VECTOR_IMAGES], "scores": vec.scores}
    for name, s in vec.spikes.items():
        arrays[f"spikes/{name}"] = s
        arrays[f"membranes/{name}"] = vec.membranes[name]
    np.savez_compressed(out_dir / "vectors.npz", **arrays)
    np.savez_compressed(out_dir / TEST_INPUTS_FILE, codes=codes.astype(np.uint16), labels=labels)
    metrics = {
        "source": "nir", "accuracy_float": float((float_pred == labels).mean()),
        "accuracy_integer": float((pred == labels).mean()), "images": int(len(labels)),
        "prediction_agreement_float_integer": float((float_pred == pred).mean()),
        "weight_bits": weight_bits, "precision_bits": precision_bits, "T": T, "dt": dt, "reset": reset,
        "membrane_bits": {l.name: l.neuron.membrane_bits for l in g.layers if l.neuron},
        "leak": {l.name: l.neuron.leak for l in g.layers if l.neuron},
        "nodes": {b.node: b.kind for b in blocks},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_record(out_dir / "manifest.json", {
        "stage": "import", "inputs": {"nir": digest}, "seconds": time.perf_counter() - t0,
        "params": {"dt": dt, "dataset": dataset, "reset": reset, "T": T, "weight_bits": weight_bits,
                   "precision_bits": precision_bits}}, indent=2)
    return metrics
