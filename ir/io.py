"""Read and write an IR folder: ``graph.json`` + ``tensors.npz``.

Parsing is strict and total: any wrong key, type or value in ``graph.json`` becomes an
:class:`IRError` naming the layer and field, never an exception from deep inside.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ticketforge.ir.schema import (INPUT, SCHEMA_ID, SCHEMA_VERSION, Graph, InputSpec, IRError, Layer,
                                         Neuron)

__all__ = ["save_graph", "load_graph", "graph_to_dict", "graph_from_dict", "load_test_inputs", "SCHEMA_FILE",
           "TEST_INPUTS_FILE"]

# the test split as the hardware receives it (the input quantizer's codes, not the dataset's
# pixels: they differ when the dataset's pixel_max is not 255), with its labels
TEST_INPUTS_FILE = "test_inputs.npz"

SCHEMA_FILE = Path(__file__).with_name("graph.schema.json")
# Version 1 is a chain (no ``inputs``): it loads as the version-2 graph whose every layer
# reads the one before, which is what it meant.
READS_VERSIONS = (1, SCHEMA_VERSION)


def graph_to_dict(g: Graph) -> dict:
    d = {"schema": g.schema, "version": g.version, "stage": g.stage, "T": g.T, "score": g.score,
         "input": asdict(g.input), "provenance": g.provenance, "layers": []}
    d["input"]["shape"] = list(g.input.shape)
    sources = g.sources()
    for l in g.layers:
        ld = asdict(l)
        ld["in_shape"], ld["out_shape"] = list(l.in_shape), list(l.out_shape)
        ld["inputs"] = list(sources[l.name])          # on disk always explicit
        if l.kind != "attention":
            del ld["heads"]
        if not (l.has_skip and l.kind == "conv"):          # only a conv's skip synapses have a geometry
            for k in ("skip_kernel", "skip_stride", "skip_padding"):
                del ld[k]
        if l.neuron is None:
            del ld["neuron"]
        if not l.attrs:
            del ld["attrs"]
        d["layers"].append(ld)
    return d


def save_graph(g: Graph, folder: Path) -> None:
    if g.stage != "integer":
        raise IRError(f"only integer IRs are written to disk; this graph is at stage {g.stage!r} "
                      "(run the quantize pipeline's passes first)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.json").write_text(json.dumps(graph_to_dict(g), indent=2))
    np.savez_compressed(folder / "tensors.npz", **g.tensors)


def load_graph(folder: Path, validate: bool = True) -> Graph:
    """Load and (by default) validate an IR folder."""
    folder = Path(folder)
    gpath, tpath = folder / "graph.json", folder / "tensors.npz"
    for p in (gpath, tpath):
        if not p.is_file():
            raise IRError(f"{folder} is not an IR folder: {p.name} is missing "
                          f"(make one with: ticketforge quantize --config <name>)")
    try:
        raw = json.loads(gpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IRError(f"{gpath}: not valid JSON ({e})") from None
    try:
        with np.load(tpath, allow_pickle=False) as z:
            tensors = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise IRError(f"{tpath}: not a readable .npz file ({e})") from None
    g = graph_from_dict(raw, tensors)
    if validate:
        from ticketforge.ir.validate import validate as _validate
        _validate(g)
    return g


# -- strict parsing -----------------------------------------------------------------------

def load_test_inputs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels) of the test split, written by the quantize stage next to the IR:
    what the integer accuracy was measured on and what the hardware stages must feed."""
    path = Path(folder) / TEST_INPUTS_FILE
    if not path.is_file():
        raise IRError(f"{path} is missing (an IR from before it was written): re-run "
                      f"`ticketforge quantize` for this config")
    with np.load(path) as z:
        return z["codes"].astype(np.int64), z["labels"].astype(np.int64)


def _get(d: dict, key: str, typ, where: str, default=...):
    if not isinstance(d, dict):
        raise IRError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        if default is not ...:
            return default
        raise IRError(f"{where}: field {key!r} is missing")
    v = d[key]
    ok = isinstance(v, typ) and not (typ in (int, (int,)) and isinstance(v, bool))
    if not ok:
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise IRError(f"{where}: field {key!r} must be {tname}, got {type(v).__name__} {v!r:.60}")
    return v


def _shape(d: dict, key: str, where: str) -> tuple[int, ...]:
    v = _get(d, key, list, where)
    if not v or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
        raise IRError(f"{where}: field {key!r} must be a list of positive integers, got {v!r:.60}")
    return tuple(v)


def graph_from_dict(raw: dict, tensors: dict[str, np.ndarray]) -> Graph:
    where = "graph.json"
    schema = _get(raw, "schema", str, where)
    if schema != SCHEMA_ID:
        raise IRError(f"{where}: field 'schema' is {schema!r}, expected {SCHEMA_ID!r}")
    version = _get(raw, "version", int, where)
    if version not in READS_VERSIONS:
        raise IRError(f"{where}: field 'version' is {version}, this ticketforge reads versions "
                      f"{', '.join(map(str, READS_VERSIONS))}; re-run `ticketforge quantize` to regenerate the IR")
    stage = _get(raw, "stage", str, where)
    if stage != "integer":
        raise IRError(f"{where}: field 'stage' is {stage!r}; an IR on disk must be 'integer'")
    T = _get(raw, "T", int, where)
    inp = _get(raw, "input", dict, where)
    ishape = _shape(inp, "shape", "input")
    if len(ishape) != 3:
        raise IRError(f"input: field 'shape' must be [C, H, W], got {list(ishape)}")
    spec = InputSpec(ishape, _get(inp, "encoding", str, "input"), _get(inp, "bits", int, "input"),
                     _get(inp, "pixel_max", int, "input"))
    layers = []
    for i, ld in enumerate(_get(raw, "layers", list, where)):
        lw = f"layer #{i}"
        name = _get(ld, "name", str, lw)
        lw = f"layer {name!r}"
        nd = _get(ld, "neuron", (dict, type(None)), lw, None)
        neuron = None
        if nd is not None:
            nw = f"{lw} neuron"
            neuron = Neuron(_get(nd, "leak", str, nw), _get(nd, "leak_shift", int, nw, 0),
                            _get(nd, "leak_mult", int, nw, 0), _get(nd, "leak_frac_bits", int, nw, 0),
                            _get(nd, "reset", str, nw), _get(nd, "membrane_bits", int, nw))
        tens = _get(ld, "tensors", dict, lw, {})
        for role, key in tens.items():
            if not isinstance(key, str):
                raise IRError(f"{lw}: tensors[{role!r}] must be a string key into tensors.npz")
        inputs = ()
        if version >= 2:
            inputs = tuple(_get(ld, "inputs", list, lw))
            if not inputs or len(inputs) > 3 or not all(isinstance(x, str) for x in inputs):
                raise IRError(f"{lw}: field 'inputs' must be a list of 1 to 3 layer names "
                              f"({INPUT!r} for the graph's input), got {inputs!r:.80}")
            if inputs == ((layers[-1].name if layers else INPUT),):
                inputs = ()                 # the layer before: the in-memory chain form
        elif "inputs" in ld:
            raise IRError(f"{lw}: field 'inputs' is a version-2 field in a version-1 IR")
        layers.append(Layer(
            inputs=inputs, skip_kernel=_get(ld, "skip_kernel", int, lw, 0),
            skip_stride=_get(ld, "skip_stride", int, lw, 1), skip_padding=_get(ld, "skip_padding", int, lw, 0),
            name=name, kind=_get(ld, "kind", str, lw),
            in_shape=_shape(ld, "in_shape", lw), out_shape=_shape(ld, "out_shape", lw),
            kernel=_get(ld, "kernel", int, lw, 0), stride=_get(ld, "stride", int, lw, 1),
            padding=_get(ld, "padding", int, lw, 0), weight_bits=_get(ld, "weight_bits", int, lw, 0),
            heads=_get(ld, "heads", int, lw, 0),
            input_shift=_get(ld, "input_shift", int, lw, 0), neuron=neuron, tensors=dict(tens)))
    return Graph(T=T, input=spec, layers=tuple(layers), tensors=tensors,
                 score=_get(raw, "score", str, where), provenance=_get(raw, "provenance", dict, where, {}),
                 schema=schema, version=SCHEMA_VERSION)      # a version-1 chain reads as the same version-2 one
