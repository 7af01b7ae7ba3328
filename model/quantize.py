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

from ticketforge.model.brevitas_view import BrevitasView, UnrolledLIF, _Seq, weight_bits_for
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
from ticketforge.model.zoo import NeuronGate, TicketNet
from ticketforge.records import clear_record, write_record

__all__ = ["lower", "quantize_ticket", "lowering_digest", "LOWERING_SOURCES", "VECTOR_IMAGES", "CALIBRATION_IMAGES"]

VECTOR_IMAGES = 8            # images in vectors.npz, with every layer's spikes
CALIBRATION_IMAGES = 1000    # training images for input statistics and membrane widths


_MODEL = Path(__file__).parent
_IR = Path(ir_package.__file__).parent
# The code that decides what IR a ticket becomes: this module, the brevitas view, the zoo's
# layers and neurons, and the IR package (schema, passes, golden interpreter, io).
LOWERING_SOURCES = (_MODEL / "quantize.py", _MODEL / "brevitas_view.py", _MODEL / "layers.py",
                    _MODEL / "neurons.py", _MODEL / "zoo.py", *sorted(_IR.glob("*.py")))


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


def lower(net: TicketNet, view: BrevitasView, cfg, input_shape, provenance: dict, events: bool = False) -> Graph:
    """Float-stage IR of a ticket: integer weights and input scale from brevitas, BN and
    neuron parameters from the ticket (consumed by ``LOWERING_PASSES``); ``events``: the
    input is a binary frame per timestep (the IR's ``events`` encoding)."""
    layers: list[Layer] = []
    tensors: dict[str, np.ndarray] = {}
    shape: tuple = tuple(input_shape)
    in_scale = view.input_scale()           # float value of one input code
    pending = None                          # (conv/linear Layer fields, ...) awaiting its LIF
    body = list(zip(net.body, view.body))
    counts = {"conv": 0, "fc": 0, "pool": 0}

    def next_name(prefix: str) -> str:
        counts[prefix] += 1
        return f"{prefix}{counts[prefix]}"

    for i, (tmod, vmod) in enumerate(body):
        if isinstance(vmod, NeuronGate):
            prev = layers[-1] if layers else None
            if prev is None or prev.neuron is None:
                raise IRError(f"layer body.{i}: a neuron mask that does not follow a LIF layer")
            tensors[prev.tensors["neuron_mask"]] = vmod.mask.detach().numpy().astype(np.uint8).reshape(prev.out_shape)
            continue
        if isinstance(vmod, UnrolledLIF):
            if pending is None:
                raise IRError(f"layer body.{i}: a LIF neuron without a conv/linear before it")
            fields, refs, attrs = pending
            attrs.update(v_threshold=vmod.v_threshold, lam=1.0 - 1.0 / vmod.tau)
            reset = "soft" if vmod.v_reset is None else "hard"
            if vmod.v_reset not in (None, 0.0):
                raise UnsupportedError(f"layer {fields['name']!r}: reset to {vmod.v_reset} (only 0 or soft reset map)")
            layers.append(Layer(**fields, neuron=Neuron(reset=reset), tensors=refs, attrs=attrs))
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
        if isinstance(q, nn.Flatten):
            out = (int(np.prod(shape)),)
            layers.append(Layer("flatten", "flatten", shape, out))
            shape = out
            continue
        last = i == len(body) - 1
        name = "output" if last else next_name("conv" if isinstance(q, nn.Conv2d) else "fc")
        qw = q.quant_weight()
        w_int = qw.int().detach().numpy().astype(np.int8)
        mask = tq.current_mask().numpy().astype(np.uint8)
        if np.any((mask == 0) & (w_int != 0)):
            raise IRError(f"layer {name!r}: brevitas gave a non-zero weight where the ticket's mask is 0")
        scale = float(qw.scale.detach().reshape(-1)[0]) * in_scale
        if w_int.ndim == 4:
            kind = "conv"
            k, st, pd = q.kernel_size[0], q.stride[0], q.padding[0]
            ho, wo = conv_out_hw(shape[1], shape[2], k, st, pd)
            out = (w_int.shape[0], ho, wo)
            geo = dict(kernel=k, stride=st, padding=pd)
        else:
            kind = "linear"
            out = (w_int.shape[0],)
            geo = {}
        refs = {"weight": f"{name}.weight", "mask": f"{name}.mask"}
        tensors[refs["weight"]], tensors[refs["mask"]] = w_int, mask
        fields = dict(name=name, kind="output" if last else kind, in_shape=shape, out_shape=out,
                      weight_bits=weight_bits_for(tq, view.weight_bits), **geo)
        shape = out
        if last:
            if len(subs) != 1 or kind != "linear":
                raise UnsupportedError(f"layer {name!r}: the readout must be a plain linear layer")
            layers.append(Layer(**fields, tensors=refs))
            continue
        bn = subs[1] if len(subs) > 1 else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise UnsupportedError(f"layer {name!r}: a hidden conv/linear must be followed by BatchNorm")
        for role, t in (("bn_mean", bn.running_mean), ("bn_var", bn.running_var)) + \
                ((("bn_gamma", bn.weight), ("bn_beta", bn.bias)) if bn.affine else ()):
            refs[role] = f"{name}.{role}"
            tensors[refs[role]] = t.detach().numpy().astype(np.float64)
        refs["neuron_mask"] = f"{name}.neuron_mask"
        tensors[refs["neuron_mask"]] = np.ones(out, np.uint8)       # a NeuronGate may follow
        pending = (fields, refs, {"scale": scale, "bn_eps": float(bn.eps)})
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
    _export_qonnx(view, _to_float(ds.test.images[:1], ds.pixel_max), qonnx_path)
    nir_status = _try_nir(net, out_dir / "model.nir")
    progress(f"[quantize] NIR: {nir_status}")
    metrics = {
        "nir": nir_status,
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


def _export_qonnx(view: BrevitasView, example: torch.Tensor, path: Path) -> None:
    import contextlib
    import io

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


def _versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("torch", "brevitas", "spikingjelly", "numpy", "onnx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
