"""`ticketforge quantize`: ticket -> brevitas view -> float IR -> passes -> integer IR.

Writes ``build/<name>/ir/``: ``graph.json`` + ``tensors.npz`` (the IR), ``model.qonnx``
(the brevitas view for FINN/qonnx users), ``vectors.npz`` (test inputs with every layer's
spikes and the scores from the golden interpreter), ``metrics.json`` (what integerization
costs: float vs integer accuracy on the full test split) and ``manifest.json``.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketforge.model.brevitas_view import BrevitasView, ResidualView, UnrolledLIF, _Seq, weight_bits_for
from ticketforge.model.data import Dataset, load_dataset
from ticketforge import ir as ir_package
from ticketforge.errors import UnsupportedError
from ticketforge.ir import (LOWERING_PASSES, Graph, InputSpec, IRError, Layer, Neuron, run,
                                  save_graph, size_membranes, validate)
from ticketforge.ir.io import TEST_INPUTS_FILE
from ticketforge.ir.validate import conv_out_hw
from ticketforge.model.layers import masked_layers
from ticketforge.model.ticket import load_ticket
from ticketforge.model.train import evaluate
from ticketforge.model.spikformer import MLPBlock, SelfAttention, TokenMean
from ticketforge.model.zoo import NeuronGate, TicketNet
from ticketforge.records import clear_record, write_record

__all__ = ["lower", "quantize_ticket", "lowering_digest", "LOWERING_SOURCES", "VECTOR_IMAGES", "CALIBRATION_IMAGES"]

VECTOR_IMAGES = 8            # images in vectors.npz, with every layer's spikes
CALIBRATION_IMAGES = 1000    # training images for input statistics and membrane widths


_MODEL = Path(__file__).parent
_IR = Path(ir_package.__file__).parent
# The code that decides what IR a ticket becomes: this module, the brevitas view, the zoo's
# layers, neurons and transformer blocks, and the IR package (schema, passes, golden
# interpreter, io).
LOWERING_SOURCES = (_MODEL / "quantize.py", _MODEL / "brevitas_view.py", _MODEL / "layers.py",
                    _MODEL / "neurons.py", _MODEL / "zoo.py", _MODEL / "spikformer.py", *sorted(_IR.glob("*.py")))


def lowering_digest(sources=None) -> str:
    """sha256 over the lowering's sources: an IR made by other code is stale."""
    h = hashlib.sha256()
    for f in sources or LOWERING_SOURCES:
        h.update(Path(f).name.encode() + Path(f).read_bytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _synapses(name: str, q: nn.Module, tq: nn.Module, shape: tuple, weight_bits: int, tensors: dict,
              prefix: str = "") -> tuple[dict, dict, tuple, float]:
    """One brevitas conv/linear's integer weights and the ticket's mask into ``tensors``
    (roles ``prefix`` + weight/mask): (layer fields, tensor refs, output shape, weight scale)."""
    qw = q.quant_weight()
    w_int = qw.int().detach().numpy().astype(np.int8)
    mask = tq.current_mask().numpy().astype(np.uint8)
    if np.any((mask == 0) & (w_int != 0)):
        raise IRError(f"layer {name!r}: brevitas gave a non-zero weight where the ticket's mask is 0")
    if w_int.ndim == 4:
        k, st, pd = q.kernel_size[0], q.stride[0], q.padding[0]
        out = (w_int.shape[0],) + conv_out_hw(shape[1], shape[2], k, st, pd)
        geo = {f"{prefix}kernel": k, f"{prefix}stride": st, f"{prefix}padding": pd}
    else:
        out, geo = (w_int.shape[0],), {}
    refs = {f"{prefix}weight": f"{name}.{prefix}weight", f"{prefix}mask": f"{name}.{prefix}mask"}
    tensors[refs[f"{prefix}weight"]], tensors[refs[f"{prefix}mask"]] = w_int, mask
    if not prefix:
        geo["weight_bits"] = weight_bits_for(tq, weight_bits)
    return geo, refs, out, float(qw.scale.detach().reshape(-1)[0])


def _batchnorm(name: str, bn, tensors: dict, prefix: str = "") -> dict:
    """A BatchNorm's statistics into ``tensors`` (roles ``prefix`` + bn_*): their refs."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise UnsupportedError(f"layer {name!r}: a hidden conv/linear must be followed by BatchNorm")
    refs = {}
    for role, t in (("bn_mean", bn.running_mean), ("bn_var", bn.running_var)) + \
            ((("bn_gamma", bn.weight), ("bn_beta", bn.bias)) if bn.affine else ()):
        refs[prefix + role] = f"{name}.{prefix}{role}"
        tensors[refs[prefix + role]] = t.detach().numpy().astype(np.float64)
    return refs


def _lif(name: str, vmod: UnrolledLIF) -> tuple[Neuron, dict]:
    if vmod.v_reset not in (None, 0.0):
        raise UnsupportedError(f"layer {name!r}: reset to {vmod.v_reset} (only 0 or soft reset map)")
    return Neuron(reset="soft" if vmod.v_reset is None else "hard"), \
        {"v_threshold": vmod.v_threshold, "lam": 1.0 - 1.0 / vmod.tau}


def lower(net: TicketNet, view: BrevitasView, cfg, input_shape, provenance: dict, events: bool = False) -> Graph:
    """Float-stage IR of a ticket: integer weights and input scale from brevitas, BN and
    neuron parameters from the ticket (consumed by ``LOWERING_PASSES``); ``events``: the
    input is a binary frame per timestep (the IR's ``events`` encoding).  A residual block
    becomes two conv layers, the second reading the block's input as its skip input (the
    shortcut's 1x1 conv and BatchNorm, or an identity of scale 1)."""
    layers: list[Layer] = []
    tensors: dict[str, np.ndarray] = {}
    shape: tuple = tuple(input_shape)
    in_scale = view.input_scale()           # float value of one input code
    pending = None                          # (conv/linear Layer fields, ...) awaiting its LIF
    tiled_from = 1                          # the next layer's inputs per weight (a token mean or global
                                            # average pool before it: its weights repeat at every position)
    body = list(zip(net.body, view.body))
    counts = {"conv": 0, "fc": 0, "pool": 0, "attn": 0}

    def next_name(prefix: str) -> str:
        counts[prefix] += 1
        return f"{prefix}{counts[prefix]}"

    def flatten_for_mean() -> None:
        """A mean over positions (a token mean, a global average pool): the flattened map
        (C-H-W order), and the next layer's weights repeated at every position (exact: a
        sum, the mean's 1/positions in that layer's scale)."""
        nonlocal shape, tiled_from
        flat = (int(np.prod(shape)),)
        layers.append(Layer("flatten", "flatten", shape, flat))
        tiled_from, shape = int(np.prod(shape[1:])), flat

    def tiled_synapses(name, q, tq) -> tuple[dict, dict, tuple, float]:
        """`_synapses` of the layer on ``shape``, its weights repeated at the ``tiled_from``
        positions of a mean before it; the weight scale divided by them."""
        nonlocal tiled_from
        geo, refs, out, wscale = _synapses(name, q, tq, (shape[0] // tiled_from,) + tuple(shape[1:]),
                                           view.weight_bits, tensors)
        if tiled_from > 1:
            for role in ("weight", "mask"):
                tensors[refs[role]] = np.repeat(tensors[refs[role]], tiled_from, axis=1)
        wscale, tiled_from = wscale / tiled_from, 1
        return geo, refs, out, wscale

    def neuron_layer(q, tq, bn, lif, **extra) -> Layer:
        """A conv/linear + BatchNorm + LIF layer on ``shape`` (``extra``: its skip input)."""
        name = next_name("conv" if isinstance(q, nn.Conv2d) else "fc")
        geo, refs, out, wscale = tiled_synapses(name, q, tq)
        refs.update(_batchnorm(name, bn, tensors))
        refs["neuron_mask"] = f"{name}.neuron_mask"
        tensors[refs["neuron_mask"]] = np.ones(out, np.uint8)       # a NeuronGate may follow
        neuron, attrs = _lif(name, lif)
        attrs.update(scale=wscale * in_scale, bn_eps=float(bn.eps))
        skip = extra.pop("skip", None)
        if skip is not None:
            sq, stq, sbn, src, src_shape = skip
            if sq is None:                  # identity shortcut: 1x1, stride 1, weight 1 per channel
                c = src_shape[0]
                eye = np.eye(c, dtype=np.int8).reshape((c, c) + ((1, 1) if len(src_shape) == 3 else ()))
                tensors[f"{name}.skip_weight"], tensors[f"{name}.skip_mask"] = eye, eye.astype(np.uint8)
                refs.update(skip_weight=f"{name}.skip_weight", skip_mask=f"{name}.skip_mask")
                sgeo, sscale = ({"skip_kernel": 1, "skip_stride": 1, "skip_padding": 0} if len(src_shape) == 3 else {}), 1.0
            else:
                sgeo, srefs, _, sscale = _synapses(name, sq, stq, src_shape, view.weight_bits, tensors, "skip_")
                refs.update(srefs)
                refs.update(_batchnorm(name, sbn, tensors, "skip_"))
                attrs["skip_bn_eps"] = float(sbn.eps)
            attrs["skip_scale"] = sscale * 1.0          # the skip source is spikes (scale 1)
            extra.update(sgeo, inputs=(layers[-1].name, src))
        kind = "conv" if isinstance(q, nn.Conv2d) else "linear"
        return Layer(name=name, kind=kind, in_shape=shape, out_shape=out, neuron=neuron, tensors=refs,
                     attrs=attrs, **geo, **extra)

    for i, (tmod, vmod) in enumerate(body):
        if isinstance(vmod, NeuronGate):
            prev = layers[-1] if layers else None
            if prev is None or prev.neuron is None:
                raise IRError(f"layer body.{i}: a neuron mask that does not follow a LIF layer")
            tensors[prev.tensors["neuron_mask"]] = vmod.mask.detach().numpy().astype(np.uint8).reshape(prev.out_shape)
            continue
        if isinstance(vmod, ResidualView):
            if pending is not None or not layers or layers[-1].neuron is None:
                raise UnsupportedError(f"layer body.{i}: a residual block must follow a spiking layer (its skip "
                                       "source); the accelerators carry spikes, not pixels")
            src, src_shape = layers[-1].name, shape
            layers.append(neuron_layer(vmod.conv1.body[0], tmod.conv1[0], vmod.conv1.body[1], vmod.act1))
            shape = layers[-1].out_shape
            short = (None, None, None) if isinstance(vmod.shortcut, nn.Identity) else \
                (vmod.shortcut.body[0], tmod.shortcut[0], vmod.shortcut.body[1])
            layers.append(neuron_layer(vmod.conv2.body[0], tmod.conv2[0], vmod.conv2.body[1], vmod.act2,
                                       skip=(*short, src, src_shape)))
            shape = layers[-1].out_shape
            continue
        if isinstance(vmod, (SelfAttention, MLPBlock)):
            if pending is not None or not layers or layers[-1].neuron is None:
                raise UnsupportedError(f"layer body.{i}: a transformer block must follow a spiking layer")
            src, src_shape = layers[-1].name, shape
            identity = (None, None, None, src, src_shape)
            if isinstance(vmod, SelfAttention):
                qkv = [neuron_layer(getattr(vmod, r).body[0], getattr(tmod, r)[0], getattr(vmod, r).body[1],
                                    getattr(vmod, f"{r}_act"), inputs=(src,)) for r in "qkv"]
                layers.extend(qkv)
                name = next_name("attn")
                neuron, attrs = _lif(name, vmod.attn_act)
                tensors[f"{name}.neuron_mask"] = np.ones(shape, np.uint8)
                layers.append(Layer(name, "attention", shape, shape, heads=vmod.heads, neuron=neuron,
                                    inputs=tuple(l.name for l in qkv), tensors={"neuron_mask": f"{name}.neuron_mask"},
                                    attrs={**attrs, "scale": 2.0 ** -vmod.attn_shift}))
                layers.append(neuron_layer(vmod.proj.body[0], tmod.proj[0], vmod.proj.body[1], vmod.act, skip=identity))
            else:
                layers.append(neuron_layer(vmod.fc1.body[0], tmod.fc1[0], vmod.fc1.body[1], vmod.act1))
                shape = layers[-1].out_shape
                layers.append(neuron_layer(vmod.fc2.body[0], tmod.fc2[0], vmod.fc2.body[1], vmod.act2, skip=identity))
            shape = layers[-1].out_shape
            continue
        if isinstance(vmod, TokenMean):
            # the mean over patches, then the readout: the readout's weights repeated at every
            # patch of the flattened map (C-H-W order), the 1/patches a positive factor that
            # leaves the argmax alone
            flatten_for_mean()
            continue
        if isinstance(vmod, UnrolledLIF):
            if pending is None:
                raise IRError(f"layer body.{i}: a LIF neuron without a conv/linear before it")
            q, tq, bn = pending
            layers.append(neuron_layer(q, tq, bn, vmod))
            shape = layers[-1].out_shape
            pending = None
            in_scale = 1.0                  # spikes from here on
            continue
        if not isinstance(vmod, _Seq):
            raise UnsupportedError(f"layer body.{i} ({type(vmod).__name__}) is not mappable")
        subs = list(vmod.body)
        tsubs = list(tmod)
        q, tq = subs[0], tsubs[0]
        if isinstance(q, nn.MaxPool2d):
            k = q.kernel_size if isinstance(q.kernel_size, int) else q.kernel_size[0]
            out = (shape[0], shape[1] // k, shape[2] // k)
            layers.append(Layer(next_name("pool"), "pool", shape, out, kernel=k, stride=k))
            shape = out
            continue
        if isinstance(q, nn.AdaptiveAvgPool2d):      # a global average pool (brevitas_view admits no other)
            flatten_for_mean()
            continue
        if isinstance(q, nn.Flatten) and tiled_from > 1:
            continue                        # the average pool flattened the map already
        if isinstance(q, nn.Flatten):
            out = (int(np.prod(shape)),)
            layers.append(Layer("flatten", "flatten", shape, out))
            shape = out
            continue
        if i == len(body) - 1:
            if len(subs) != 1 or not isinstance(q, nn.Linear):
                raise UnsupportedError("layer 'output': the readout must be a plain linear layer")
            geo, refs, out, _ = tiled_synapses("output", q, tq)
            layers.append(Layer("output", "output", shape, out, tensors=refs, **geo))
            continue
        pending = (q, tq, subs[1] if len(subs) > 1 else None)
    spec = (InputSpec(tuple(int(s) for s in input_shape), encoding="events", bits=1, pixel_max=1) if events
            else InputSpec(tuple(int(s) for s in input_shape), bits=8, pixel_max=255))
    provenance = {**provenance, "ticket_layers": [n for n, _ in masked_layers(net)]}
    return Graph(T=net.T, input=spec, layers=tuple(layers), tensors=tensors, provenance=provenance,
                 stage="float")


def _to_float(images: np.ndarray, pixel_max: int) -> torch.Tensor:
    return torch.from_numpy(images).float() / pixel_max


def quantize_ticket(ticket_dir: Path, out_dir: Path, data_dir: str | None = None,
                    precision_bits: int = 8, progress=print, membrane_floor: dict | None = None,
                    weight_bits: int = 8) -> dict:
    t0 = time.perf_counter()
    clear_record(Path(out_dir) / "manifest.json")      # the stage's record: removed first, written last
    warnings.filterwarnings("ignore", message="fast_hadamard_transform")
    net, cfg, meta = load_ticket(ticket_dir)
    net.eval()
    if cfg.model.variant not in ("binw", "slt", "snn"):
        raise UnsupportedError(f"variant {cfg.model.variant!r} cannot be lowered to the hardware IR: it takes "
                      "spiking tickets (binw, slt, snn); ann and bnn are model-stage baselines")
    ds: Dataset = load_dataset(cfg.data.dataset, data_dir or cfg.data.data_dir, timesteps=cfg.model.timesteps)
    view = BrevitasView(net, events=ds.events, weight_bits=weight_bits)
    view.calibrate_input(_to_float(ds.train.images[:CALIBRATION_IMAGES], ds.pixel_max))
    provenance = {
        "ticket": str(ticket_dir), "ticket_sha256": meta.get("model_sha256"),
        "config": cfg.to_dict(), "git_revision": _git_revision(),
        "input_scale": view.input_scale(), "dataset": ds.name, "dataset_pixel_max": ds.pixel_max,
    }
    g = lower(net, view, cfg, ds.input_shape, provenance, events=ds.events)
    for p in LOWERING_PASSES:
        g = p(g, precision_bits=precision_bits) if p.__name__ == "integerize" else p(g)
    codes = lambda imgs: view.input_codes(_to_float(imgs, ds.pixel_max)).numpy()  # noqa: E731
    calib = codes(ds.train.images[:CALIBRATION_IMAGES])
    # (``membrane_floor``: the widths of a runtime-weights design this ticket is to run on)
    g = validate(size_membranes(g, calib, floor=membrane_floor))
    progress(f"[quantize] IR: {len(g.layers)} layers, membranes "
             f"{[l.neuron.membrane_bits for l in g.layers if l.neuron]} bits, input shifts "
             f"{[l.input_shift for l in g.layers if l.neuron]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_graph(g, out_dir)
    # float vs integer on the full test split
    acc_float, _ = evaluate(net, ds.test, ds.pixel_max, cfg.data.eval_batch_size)
    with torch.no_grad():
        view_pred = torch.cat([view(_to_float(ds.test.images[i:i + 500], ds.pixel_max)).argmax(1)
                               for i in range(0, len(ds.test), 500)]).numpy()
    test_codes = codes(ds.test.images)
    tg = time.perf_counter()
    res = run(g, test_codes)
    golden_s = time.perf_counter() - tg
    pred = res.predictions
    acc_int = float((pred == ds.test.labels).mean())
    with torch.no_grad():
        float_pred = torch.cat([net(_to_float(ds.test.images[i:i + 500], ds.pixel_max)).argmax(1)
                                for i in range(0, len(ds.test), 500)]).numpy()
    # vectors: the first test images with every layer's spikes
    vec = run(g, test_codes[:VECTOR_IMAGES], trace=True)
    arrays = {"inputs": test_codes[:VECTOR_IMAGES].astype(np.uint8), "labels": ds.test.labels[:VECTOR_IMAGES],
              "scores": vec.scores}
    for name, s in vec.spikes.items():
        arrays[f"spikes/{name}"] = s
        arrays[f"membranes/{name}"] = vec.membranes[name]
    np.savez_compressed(out_dir / "vectors.npz", **arrays)
    np.savez_compressed(out_dir / TEST_INPUTS_FILE, codes=test_codes.astype(np.uint16), labels=ds.test.labels)
    qonnx_path = out_dir / "model.qonnx"
    qonnx_status = _export_qonnx(view, _to_float(ds.test.images[:1], ds.pixel_max), qonnx_path, g)
    progress(f"[quantize] QONNX: {qonnx_status}")
    nir_status = _try_nir(net, out_dir / "model.nir")
    progress(f"[quantize] NIR: {nir_status}")
    metrics = {
        "nir": nir_status, "qonnx": qonnx_status,
        "accuracy_float": acc_float, "accuracy_integer": acc_int, "images": int(len(ds.test)),
        "accuracy_brevitas": float((view_pred == ds.test.labels).mean()),
        "prediction_agreement_float_integer": float((float_pred == pred).mean()),
        "golden_seconds": golden_s, "precision_bits": precision_bits, "weight_bits": weight_bits,
        "membrane_bits": {l.name: l.neuron.membrane_bits for l in g.layers if l.neuron},
        "leak": {l.name: l.neuron.leak for l in g.layers if l.neuron},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    manifest = {
        "stage": "quantize", "inputs": {f: _sha256(Path(ticket_dir) / f) for f in ("model.pt", "ticket.json")},
        "outputs": {f: _sha256(out_dir / f) for f in ("graph.json", "tensors.npz", "vectors.npz", TEST_INPUTS_FILE)},
        "versions": _versions(), "seconds": time.perf_counter() - t0,
        "params": {"precision_bits": precision_bits, "weight_bits": weight_bits, "data_dir": data_dir},
        "code": lowering_digest(),
    }
    write_record(out_dir / "manifest.json", manifest, indent=2)
    return metrics


def _try_nir(net: TicketNet, path: Path) -> str:
    """Write the float ticket as NIR where it maps; otherwise say which layer stops it."""
    from ticketforge.model.nir_export import NIRExportError, export_nir

    try:
        export_nir(net, path)
    except NIRExportError as e:
        path.unlink(missing_ok=True)
        return f"not exported: {e}"
    return f"written to {path.name}"


def _export_qonnx(view: BrevitasView, example: torch.Tensor, path: Path, g: Graph) -> str:
    """The brevitas view as QONNX; an attention layer has no QONNX form here (its integer
    matrix products of spikes are the IR's), so a transformer's is not written."""
    import contextlib
    import io

    attn = [l.name for l in g.layers if l.kind == "attention"]
    if attn:
        path.unlink(missing_ok=True)
        return f"not exported: attention layer {attn[0]!r} (spiking self-attention is in the IR only)"

    from brevitas.export import export_qonnx

    # the exporter narrates every step on stdout; keep the flow's output readable
    import onnx

    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(view, input_t=example, export_path=str(path))
    # torch's exporter puts large initializers in a side file; one self-contained file is
    # what FINN/qonnx users expect
    side = path.with_name(path.name + ".data")
    if side.exists():
        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=False)
        side.unlink()
    return f"written to {path.name}"


def _versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("torch", "brevitas", "spikingjelly", "numpy", "onnx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
