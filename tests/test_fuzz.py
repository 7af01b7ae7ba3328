"""Fuzzing the flow's inputs with hypothesis: configs, --set overrides, IR files (graph.json
and tensors.npz) and command lines.  Every bad input must end in one of the project's error
classes (a message the CLI prints without a traceback) and write nothing; every input that
is accepted must work.  The examples are derandomized, so a run is repeatable; each test's
count is its max_examples (1,250 cases in all)."""
import copy
import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ticketforge.errors import ConfigError
from ticketforge.model.config import build_config, load_config, parse_overrides
from ticketforge.ir import load_graph, run, save_graph
from ticketforge.ir.io import graph_to_dict
from ticketforge.ir.random import random_graph, random_images
from ticketforge.ir.schema import IRError

FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON-like values, from harmless to hostile: huge and negative integers, floats, strings, nesting
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


# -- configs and --set ---------------------------------------------------------------------

SECTIONS = ("model", "data", "train", "energy", "prune", "hw")
KEYS = ("arch", "variant", "width", "T", "lam", "r_p", "reset", "v_threshold", "dataset", "batch_size", "epochs",
        "lr", "optimizer", "seed", "e_mac_pj", "board", "pes", "fifo_depth", "rounds", "rate", "eb_window",
        "datapath", "clock_mhz", "precision_bits", "weight_bits", "memory_style", "trace", "simulator", "images", "trace_images",
        "bitstream", "hls", "hls_backend", "netlist_images", "bogus")


@settings(FUZZ, max_examples=400)
@given(st.dictionaries(st.sampled_from(SECTIONS + ("nonsense",)),
                       st.dictionaries(st.sampled_from(KEYS), values, max_size=4), max_size=4))
def test_any_config_table_loads_or_is_refused_by_name(raw):
    try:
        cfg = build_config("fuzz", raw, {})
    except ConfigError as e:
        assert str(e)                                      # a message, naming the key
        event("refused")
        return
    event("accepted")
    assert cfg.to_dict()["name"] == "fuzz"                 # an accepted config is whole


override_keys = st.one_of(st.sampled_from([f"{s}.{k}" for s in SECTIONS for k in KEYS] + list(KEYS)),
                          st.text(string.ascii_letters + "._", max_size=14))
override_values = st.one_of(st.text(max_size=10), st.integers(-10**12, 10**12).map(str),
                            st.floats(allow_nan=True).map(str), st.sampled_from(["true", "nan", "inf", "-1", "", "1e400"]))


@settings(FUZZ, max_examples=300)
@given(st.lists(st.tuples(override_keys, override_values).map(lambda kv: f"{kv[0]}={kv[1]}")
                | st.text(max_size=10).map(lambda s: s.replace("=", "")), max_size=3))
def test_any_set_override_applies_or_is_refused_by_name(items):
    try:
        cfg = load_config("vgg9_binw", parse_overrides(items))
    except ConfigError as e:
        assert str(e)
        event("refused")
        return
    event("accepted")
    assert cfg.name == "vgg9_binw"


# -- IR files --------------------------------------------------------------------------------

def _paths(obj, prefix=()):
    """Every (path, value) in a nested JSON object."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    if path:
        obj[path[-1]] = value


@pytest.fixture(scope="module")
def base_irs():
    return [random_graph(s, binary=b) for s, b in ((4, False), (19, False), (5, True))]


@settings(FUZZ, max_examples=300)
@given(which=st.integers(0, 2), pick=st.integers(0, 10**6), value=values, drop=st.booleans())
def test_a_mutated_graph_json_loads_and_runs_or_is_refused_by_name(base_irs, tmp_path_factory, which, pick,
                                                                 value, drop):
    g = base_irs[which]
    folder = tmp_path_factory.mktemp("ir")
    save_graph(g, folder)
    raw = graph_to_dict(g)
    paths = [p for p, _ in _paths(raw) if p]
    path = paths[pick % len(paths)]
    mutated = copy.deepcopy(raw)
    if drop and isinstance(path[-1], str):
        parent = mutated
        for p in path[:-1]:
            parent = parent[p]
        parent.pop(path[-1], None)
    else:
        _set(mutated, path, value)
    (folder / "graph.json").write_text(json.dumps(mutated))
    _load_and_run(folder)


@settings(FUZZ, max_examples=150)
@given(which=st.integers(0, 2), pick=st.integers(0, 10**6),
       kind=st.sampled_from(["float", "shape", "huge", "bool", "drop", "object"]))
def test_a_corrupted_tensor_file_is_refused_by_name(base_irs, tmp_path_factory, which, pick, kind):
    g = base_irs[which]
    folder = tmp_path_factory.mktemp("ir")
    save_graph(g, folder)
    tensors = dict(np.load(folder / "tensors.npz"))
    key = sorted(tensors)[pick % len(tensors)]
    a = tensors[key]
    if kind == "float":
        tensors[key] = a.astype(np.float32) + 0.5
    elif kind == "shape":
        tensors[key] = a.reshape(-1)[:-1] if a.size > 1 else np.zeros((2, 2), a.dtype)
    elif kind == "huge":
        tensors[key] = np.full(a.shape, 2**40, np.int64)
    elif kind == "bool":
        tensors[key] = a.astype(bool)
    elif kind == "object":
        tensors[key] = np.array(["x"] * max(1, a.size))
    else:
        tensors.pop(key)
    np.savez(folder / "tensors.npz", **tensors)
    _load_and_run(folder)


def _load_and_run(folder):
    try:
        g = load_graph(folder)
    except IRError as e:
        assert str(e)
        event("refused")
        return
    event("accepted and run")
    image = random_images(g, 1, seed=0)
    run(g, image)                                          # what validation accepts, the interpreter runs


# -- command lines ---------------------------------------------------------------------------

COMMANDS = ["quantize", "rtl", "sim", "synth", "hls", "run", "eval"]
OPTIONS = ["--config", "--set", "--pes", "--fifo-depth", "--images", "--jobs", "--simulator", "--board", "--port",
           "--baud", "--timeout", "--precision-bits", "--ticket", "--trace-images", "--baseline", "--memory-style",
           "--dense", "--bitstream", "--quiet", "--backend", "--simulated", "--mode", "--no-load", "--weights"]
ARG_VALUES = st.one_of(st.sampled_from(["vgg9_binw", "mlp_binw_tiny", "nope", "0", "-1", "all", "ulx3s", "icarus",
                                        "x=1", "model.T=0", "hw.pes=3", "1e9", ""]),
                       st.text(string.printable, max_size=8))


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(COMMANDS), st.lists(st.one_of(st.sampled_from(OPTIONS), ARG_VALUES), max_size=6))
def test_a_random_command_line_fails_cleanly_and_writes_nothing(tmp_path_factory, capsys, command, argv):
    from ticketforge.cli import main

    build = tmp_path_factory.mktemp("build")
    args = [command, *argv, "--build-dir", str(build)]
    if "--config" not in argv:
        args += ["--config", "vgg9_binw"]
    try:
        rc = main(args)
    except SystemExit as e:                                # argparse: usage and a message, exit 2
        assert e.code == 2, args
        rc = 2
    err = capsys.readouterr().err
    assert rc == 2, (args, rc)                             # nothing exists to work on: every run is refused
    assert "Traceback" not in err and "error" in err, (args, err)
    assert not any(build.iterdir()), (args, list(build.iterdir()))
