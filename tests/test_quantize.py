"""`ticketforge quantize` end to end on a tiny ticket, and NIR interchange."""
import json

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_template
from ticketforge.model.config import ModelConfig
from ticketforge.model.intsim import torch_integer_run
from ticketforge.ir import IRError, load_graph, run
from ticketforge.model.nir_export import NIRExportError, export_nir, folded_sequential, import_nir, run_imported
from ticketforge.model.zoo import build_model

TINY = tiny_template(T=3, seed=1)


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory, root):
    tmp = tmp_path_factory.mktemp("q")
    cfg = tmp / "tinyq.toml"
    cfg.write_text(TINY.format(arch="conv4", variant="binw"))
    build = tmp / "build"
    r = run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(build), cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    return build / "tinyq" / "ir", r.stdout


def test_quantize_writes_the_ir_folder(tiny_ir):
    ir, out = tiny_ir
    for f in ("graph.json", "tensors.npz", "manifest.json", "vectors.npz", "metrics.json", "model.qonnx"):
        assert (ir / f).is_file(), f
    m = json.loads((ir / "metrics.json").read_text())
    assert {"accuracy_float", "accuracy_integer", "images"} <= set(m) and m["images"] == 128
    assert "MaxPool2d" in m["nir"]                      # conv4 pools with max: named, not exported
    man = json.loads((ir / "manifest.json").read_text())
    assert set(man["inputs"]) == {"model.pt", "ticket.json"} and man["seconds"] > 0
    g = load_graph(ir)
    assert g.provenance["ticket_sha256"] and g.provenance["config"]["model"]["variant"] == "binw"
    assert all(l.weight_bits == 2 for l in g.layers if l.has_weights)


def test_vectors_equal_golden_and_torch_integer_model(tiny_ir):
    ir, _ = tiny_ir
    g = load_graph(ir)
    v = np.load(ir / "vectors.npz")
    gold = run(g, v["inputs"], trace=True)
    assert np.array_equal(gold.scores, v["scores"])
    scores, spikes = torch_integer_run(g, v["inputs"])
    assert np.array_equal(scores, v["scores"])
    for name, s in spikes.items():
        assert np.array_equal(s, v[f"spikes/{name}"])
        assert np.array_equal(gold.membranes[name], v[f"membranes/{name}"])


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_the_view_quantizes_a_real_valued_ticket_to_its_weight_bits(bits):
    from ticketforge.model.brevitas_view import BrevitasView, weight_bits_for
    from ticketforge.model.layers import masked_layers

    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="sconv", variant="snn", width=0.5), (1, 8, 8), 4)
    view = BrevitasView(net, weight_bits=bits)
    quant = [m for m in view.modules() if hasattr(m, "quant_weight")]
    assert len(quant) == len(masked_layers(net)) == 4
    for q in quant:
        w = q.quant_weight()
        assert int(w.bit_width) == bits
        levels = w.int()
        assert levels.abs().max() == 2 ** (bits - 1) - 1            # narrow range, the largest weight at the top
    assert {weight_bits_for(m, bits) for _, m in masked_layers(net)} == {bits}
    binary = build_model(ModelConfig(arch="sconv", variant="binw", width=0.5), (1, 8, 8), 4)
    assert {weight_bits_for(m, bits) for _, m in masked_layers(binary)} == {2}


def test_weight_bits_through_quantize_give_an_exact_ir_of_that_width(tmp_path, root):
    """`quantize --weight-bits 4` on a tiny snn ticket: 4-bit weights in the IR, the golden
    model equal to the torch integer model, the cost reported, and an out-of-range value
    refused by name."""
    cfg = tmp_path / "tinysnn.toml"
    cfg.write_text(TINY.format(arch="sconv", variant="snn"))
    build = tmp_path / "build"
    assert run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root).returncode == 0
    r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(build), "--weight-bits", "4", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    ir = build / "tinysnn" / "ir"
    g = load_graph(ir)
    assert {l.weight_bits for l in g.layers if l.has_weights} == {4}
    assert max(int(np.abs(g.tensor(l, "weight")).max()) for l in g.layers if l.has_weights) <= 7
    m = json.loads((ir / "metrics.json").read_text())
    assert m["weight_bits"] == 4 and 0 <= m["accuracy_integer"] <= 1
    v = np.load(ir / "vectors.npz")
    assert np.array_equal(torch_integer_run(g, v["inputs"])[0], v["scores"])
    assert np.array_equal(run(g, v["inputs"]).scores, v["scores"])
    r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(build), "--weight-bits", "9", cwd=root)
    assert r.returncode == 2 and "--weight-bits 9" in r.stderr and "Traceback" not in r.stderr, r.stderr


TINY_SPIKFORMER = ('[model]\narch = "spikformer"\nvariant = "snn"\npep_weights = "binw"\nwidth = 0.125\nT = 2\n'
                   'r_p = 0.4\npatch_prune = 0.5\n[data]\ndataset = "synthetic"\nbatch_size = 32\n'
                   '[train]\nepochs = 1\npatch_epochs = 1\noptimizer = "adam"\nlr = 0.01\nweight_decay = 0.0\n')


def _train_and_quantize(tmp_path, root, name: str, toml: str):
    """`train` then `quantize` the config ``toml`` (named ``name``) as a user would: its IR folder."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(toml)
    build = tmp_path / "build"
    assert run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root).returncode == 0
    r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(build), cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    return build / name / "ir"


def test_a_residual_ticket_becomes_an_ir_with_skip_inputs_exact_in_both_forms(tmp_path, root):
    """A tiny `sresnet` BinW-SLT ticket through `quantize`: its two blocks are layers with
    skip inputs (an identity and a 1x1 stride-2 shortcut), the golden model equals the torch
    integer model and the vectors, and its chain form (what the accelerators run) gives
    the same scores."""
    from ticketforge.ir.chain import chain_form

    ir = _train_and_quantize(tmp_path, root, "tinyres", TINY.format(arch="sresnet", variant="binw"))
    g = load_graph(ir)
    skips = [l for l in g.layers if l.has_skip]
    assert [(l.skip_kernel, l.skip_stride) for l in skips] == [(1, 1), (1, 2)]
    assert [l.inputs[1] for l in skips] == ["conv1", skips[0].name]
    v = np.load(ir / "vectors.npz")
    assert np.array_equal(torch_integer_run(g, v["inputs"])[0], v["scores"])
    assert np.array_equal(run(g, v["inputs"]).scores, v["scores"])
    assert np.array_equal(run(chain_form(g), v["inputs"]).scores, v["scores"])
    m = json.loads((ir / "metrics.json").read_text())
    assert 0 <= m["accuracy_integer"] <= 1 and "BasicBlock" in m["nir"]


def test_resnet19s_global_average_pool_becomes_a_layer_of_repeated_weights(tmp_path, root):
    """`resnet19` (width 0.125) through `quantize`: its global average pool is the flattened
    map, and the hidden linear layer after it reads every position through the same weight
    (the mean's 1/positions folded into its scale): golden == the torch integer model == the
    vectors, and the chain form the accelerators run gives the same scores."""
    from ticketforge.ir.chain import chain_form

    ir = _train_and_quantize(tmp_path, root, "tinyres19", TINY.format(arch="resnet19", variant="binw")
                             .replace("epochs = 2", "epochs = 1"))
    g = load_graph(ir)
    fc = next(l for l in g.layers if l.kind == "linear")
    last_conv = [l for l in g.layers if l.kind == "conv"][-1]
    positions = int(np.prod(last_conv.out_shape[1:]))
    assert positions > 1 and fc.in_shape == (int(np.prod(last_conv.out_shape)),)
    w = g.tensor(fc, "weight").reshape(fc.out_shape[0], last_conv.out_shape[0], positions)
    assert (w == w[:, :, :1]).all()                 # one weight per (unit, channel), at every position
    v = np.load(ir / "vectors.npz")
    assert np.array_equal(torch_integer_run(g, v["inputs"])[0], v["scores"])
    assert np.array_equal(run(g, v["inputs"]).scores, v["scores"])
    assert np.array_equal(run(chain_form(g), v["inputs"]).scores, v["scores"])
    # the layer's spikes are the float ticket's (the pooled mean through its BatchNorm and
    # LIF), up to float -> integer rounding: the scale of the repeated weights is right
    import torch
    from spikingjelly.activation_based import neuron as sj_neuron

    from ticketforge.model.ticket import load_ticket

    net, _, _ = load_ticket(ir.parent / "ticket")
    net.eval()
    acts = [m for m in net.body if isinstance(m, sj_neuron.LIFNode)]
    seen = []
    acts[-1].register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    with torch.no_grad():
        net(torch.as_tensor(v["inputs"], dtype=torch.float32) / g.input.pixel_max)
    float_spikes = seen[-1].transpose(0, 1).numpy()             # [N, T, units]
    differ = int((float_spikes != v[f"spikes/{fc.name}"]).sum())
    assert float_spikes.sum() >= 20 and differ <= 0.25 * float_spikes.sum(), (differ, float_spikes.sum())


def test_a_multisp_spikformer_becomes_an_ir_with_attention_exact_and_its_patch_mask(tmp_path, root):
    """A tiny spikformer with MultiSp (binary ConvPEP ticket, half its patches pruned)
    through `quantize`: Q, K, V read the block's input, an attention layer reads them, the
    projection and the MLP's second layer take the block's input as a skip input, the
    patch keep-mask is the ConvPEP's neuron mask; golden == torch integer model == vectors;
    the chain form refuses the attention layer by name; Q, K and V share their input shift
    and membrane width, so the accelerator prefix fuses them."""
    from ticketforge.ir.chain import chain_form
    from ticketforge.ir.prefix import accelerator_form, prefix_info

    ir = _train_and_quantize(tmp_path, root, "tinysf", TINY_SPIKFORMER)
    build = tmp_path / "build"
    g = load_graph(ir)
    attn = [l for l in g.layers if l.kind == "attention"]
    assert len(attn) == 2 and all(l.heads == 4 for l in attn)
    src = g.sources()
    block_in = src[attn[0].inputs[0]][0]
    assert all(src[x] == (block_in,) for x in attn[0].inputs)
    assert sum(l.has_skip for l in g.layers) == 4                    # two projections, two MLP outputs
    pep = g.layer(block_in)
    keep = json.loads((build / "tinysf" / "ticket" / "metrics.json").read_text())["patch_keep_mask"]
    assert np.array_equal(g.tensor(pep, "neuron_mask"), np.broadcast_to(np.array(keep, np.uint8), pep.out_shape))
    v = np.load(ir / "vectors.npz")
    assert np.array_equal(torch_integer_run(g, v["inputs"])[0], v["scores"])
    assert np.array_equal(run(g, v["inputs"]).scores, v["scores"])
    assert "attention" in json.loads((ir / "metrics.json").read_text())["qonnx"]
    with pytest.raises(IRError, match="attention"):
        chain_form(g)
    for a in attn:
        qkv = [g.layer(x) for x in a.inputs]
        assert len({(l.input_shift, l.neuron) for l in qkv}) == 1
    assert prefix_info(accelerator_form(g))["fused"] == {"_".join(attn[0].inputs): list(attn[0].inputs)}


def test_qonnx_file_has_brevitas_quant_nodes(tiny_ir):
    onnx = pytest.importorskip("onnx")
    ir, _ = tiny_ir
    model = onnx.load(str(ir / "model.qonnx"))
    ops = {n.op_type for n in model.graph.node}
    assert "Quant" in ops and "Conv" in ops


def test_quantize_refuses_non_spiking(tmp_path, root):
    for arch, variant, words in (("conv4", "ann", "ann and bnn"),):
        cfg = tmp_path / f"{arch}_{variant}.toml"
        cfg.write_text(TINY.format(arch=arch, variant=variant).replace("epochs = 2", "epochs = 0"))
        build = tmp_path / "b"
        assert run_cli("train", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root).returncode == 0
        r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(build), cwd=root)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_quantize_without_ticket_is_clear(tmp_path, root):
    r = run_cli("quantize", "--config", "vgg9_binw", "--build-dir", str(tmp_path), cwd=root)
    assert r.returncode == 2 and "ticketforge train" in r.stderr


@pytest.mark.float_sensitive
def test_nir_roundtrip_of_a_small_network(tmp_path):
    """The NIR import is another float implementation of the network: its LIF spikes equal
    the ticket's wherever no membrane is within rounding of the threshold, so scores are
    compared on the images whose decisions are clear of NEAR_TIE (ticketforge.model.margins,
    measured in float64), and there must be enough of them."""
    from ticketforge.model.margins import decision_margins

    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="mlp", variant="binw", r_p=0.4, T=4, lam=0.9), (1, 28, 28), 10)
    for _ in range(3):
        net(torch.rand(16, 1, 28, 28))              # BatchNorm statistics
    net.eval()
    x = torch.rand(32, 1, 28, 28)
    seq_in = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
    with torch.no_grad():
        ref = net(x)
    margins = decision_margins(net, x)
    settled, clear = torch.from_numpy(margins.settled()), torch.from_numpy(margins.clear())
    assert settled.sum() >= 24 and clear.sum() >= 20, margins.summary()
    export_nir(net, tmp_path / "m.nir")
    back = import_nir(tmp_path / "m.nir")
    out = run_imported(back, seq_in).mean(0)
    assert torch.allclose(out[settled], ref[settled], atol=1e-5)       # float export: float tolerance
    assert torch.equal(out[clear].argmax(1), ref[clear].argmax(1))


def test_nir_names_the_unsupported_layer():
    net = build_model(ModelConfig(arch="conv4", variant="snn", width=0.125), (1, 8, 8), 4)
    with pytest.raises(NIRExportError, match=r"body\.\d+ \(MaxPool2d\)"):
        folded_sequential(net)


def test_hw_runs_every_stage_then_skips_them(tmp_path, root):
    cfg = tmp_path / "tinyhw.toml"
    # the iCEBreaker at two PEs: its place and route and netlist build take a minute where
    # the ULX3S's take four (the ECP5 path is test_deploy's board build and test_netlist's
    # DP16KD netlist)
    cfg.write_text(TINY.format(arch="mlp", variant="binw") + '[hw]\nboard = "icebreaker"\npes = 2\n')
    build = tmp_path / "build"
    # The profile-guided Verilator build, which only large regressions get by default: the
    # threshold lies between the sim stage's 128 images (about 70,000 cycles) and the netlist
    # stage's 2 (about 1,100), so the sim stage builds twice (with a profile) and the netlist
    # stage, the test's longest Verilator build, once.
    r = run_cli("hw", "--config", str(cfg), "--build-dir", str(build), "--quiet", cwd=root,
                env={"TICKETFORGE_PGO_MIN_CYCLES": "10000"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (build / "tinyhw" / "ir" / "graph.json").is_file()
    assert (build / "tinyhw" / "sim" / "build-verilator" / "pgo.json").is_file()
    assert list((build / "tinyhw" / "sim" / "pgo-profile").glob("*.gcda"))
    assert not (build / "tinyhw" / "sim-netlist-icebreaker" / "build-verilator" / "pgo.json").exists()
    assert "model.nir" in json.loads((build / "tinyhw" / "ir" / "metrics.json").read_text())["nir"]
    # the test split as the hardware receives it: the codes behind the integer accuracy
    from ticketforge.ir import load_graph, load_test_inputs, run
    codes, labels = load_test_inputs(build / "tinyhw" / "ir")
    acc = float((run(load_graph(build / "tinyhw" / "ir"), codes).predictions == labels).mean())
    assert acc == json.loads((build / "tinyhw" / "ir" / "metrics.json").read_text())["accuracy_integer"]
    # the RTL and its cocotb regression on Verilator over the whole (synthetic) test split:
    # the default suite's one Verilator build of the RTL of a trained ticket
    res = json.loads((build / "tinyhw" / "sim" / "results.json").read_text())
    assert res["rtl_matches_golden"] and res["cycles_equal_model"] and res["simulator"] == "verilator"
    assert res["accuracy_rtl"] == res["accuracy_golden"]
    # synth (the config's board: placed and routed) and the report
    from ticketforge.deploy.report import REQUIRED_KEYS, _get
    rep = json.loads((build / "tinyhw" / "report.json").read_text())
    assert all(_get(rep, k) is not None for k in REQUIRED_KEYS)
    assert rep["rtl_matches_golden"] and rep["accuracy"]["rtl"] == rep["accuracy"]["integer"]
    board = rep["boards"]["icebreaker"]
    assert board["fits"] and board["fmax_mhz"] > 0 and board["latency_us"] > 0
    assert (build / "tinyhw" / "report.html").is_file() and (build / "tinyhw" / "cycles_per_layer.png").is_file()
    assert "hls" not in rep
    # the netlist stage: the iCEBreaker's synthesized netlist (yosys synth_ice40 and the cell
    # models) on Verilator, 2 images against the golden and cycle models
    assert rep["netlist"]["board"] == "icebreaker" and rep["netlist"]["family"] == "ice40", rep["netlist"]
    assert rep["netlist"]["matches_golden"] and rep["netlist"]["agree"] == rep["netlist"]["images"] == 2
    assert rep["netlist"]["cycles_equal_model"] and "Verilator" in rep["netlist"]["simulator"]
    assert rep["settings"]["netlist_images"] == 2 and rep["stages"]["netlist"]["params"]["netlist"] == "icebreaker"
    # the report takes the cycle model's figures from the sim stage (and the dense design's
    # from one image): the same as running the model again on every simulated image
    from ticketforge.deploy.report import model_cycles
    direct = model_cycles(load_graph(build / "tinyhw" / "ir"), codes[:res["images_run"]], res["pes"],
                          fifo_depth=res["fifo_depth"])
    assert rep["cycles"]["per_layer"] == direct["per_layer"]
    assert (rep["cycles"]["ideal_bound_mean"], rep["cycles"]["dense_per_image_mean"], rep["cycles"]["model_images"]) \
        == (direct["ideal_bound_mean"], direct["dense_per_image_mean"], direct["images"])
    assert rep["run_seconds"] > 0
    # with --hls: the six stages are kept, the HLS stage (hls4ml C simulation of the whole split) runs
    # and the report gains its hls section; a rerun keeps all seven
    r = run_cli("hw", "--config", str(cfg), "--build-dir", str(build), "--quiet", "--hls", "--jobs", "1", cwd=root)
    assert r.returncode == 0 and r.stdout.count("kept") == 6 and "hls stage: hls4ml" in r.stdout, r.stdout + r.stderr
    with_hls = json.loads((build / "tinyhw" / "report.json").read_text())
    assert with_hls["hls"]["matches_golden"] and with_hls["hls"]["images"] == res["images_run"]
    assert "## HLS path" in (build / "tinyhw" / "report.md").read_text()
    r = run_cli("hw", "--config", str(cfg), "--build-dir", str(build), "--quiet", "--hls", cwd=root)
    assert r.stdout.count("kept") == 7, r.stdout
    again = json.loads((build / "tinyhw" / "report.json").read_text())
    assert again["hls"] == with_hls["hls"]
    assert again["stages_kept"] == ["model", "quantize", "rtl", "sim", "synth", "netlist", "hls"]
    assert again["stage_seconds"]["sim"] == rep["stage_seconds"]["sim"]      # what it took when it ran
    # a changed config re-runs the model stage, saying what changed (the stages after it
    # follow from their inputs, as the quantize test shows; --to keeps this test short)
    r = run_cli("hw", "--config", str(cfg), "--build-dir", str(build), "--quiet", "--set", "train.seed=5",
                "--to", "model", cwd=root)
    assert "model stage: ticket search (train.seed 1 -> 5)" in r.stdout and r.returncode == 0, r.stdout + r.stderr


def test_missing_test_inputs_is_a_clear_error(tmp_path):
    from ticketforge.ir import IRError, load_test_inputs
    with pytest.raises(IRError, match="re-run `ticketforge quantize`"):
        load_test_inputs(tmp_path)


def test_the_ir_is_stale_after_other_precision_bits_or_lowering_code(tiny_ir, tmp_path, monkeypatch):
    """`hw` keeps the quantize stage only for the same ticket, --precision-bits, data folder
    and lowering code (an edit to ir/passes.py among it), and says which one changed."""
    import argparse

    from ticketforge.cli.stages import quantize_stage
    from ticketforge.flow import stale_reason
    from ticketforge.model import quantize as q
    from ticketforge.model.config import load_config, with_overrides

    ir, _ = tiny_ir
    cfg = load_config(str(ir.parent.parent.parent / "tinyq.toml"))
    args = lambda bits, weight_bits=8: argparse.Namespace(  # noqa: E731
        build_dir=str(ir.parent.parent), precision_bits=bits, weight_bits=weight_bits, quiet=True)
    assert stale_reason(quantize_stage(args(8), cfg)) is None
    assert stale_reason(quantize_stage(args(6), cfg)) == "precision_bits 8 -> 6"
    assert stale_reason(quantize_stage(args(8, 4), cfg)) == "weight_bits unset -> 4"
    other_data = with_overrides(cfg, data={"data_dir": str(tmp_path)})
    assert stale_reason(quantize_stage(args(8), other_data)) == f"data_dir None -> {tmp_path}"
    passes = next(f for f in q.LOWERING_SOURCES if f.name == "passes.py" and f.parent.name == "ir")
    edited = tmp_path / "ir" / "passes.py"
    edited.parent.mkdir()
    edited.write_text(passes.read_text() + "\n# an edit\n")
    monkeypatch.setattr(q, "LOWERING_SOURCES", tuple(edited if f == passes else f for f in q.LOWERING_SOURCES))
    assert stale_reason(quantize_stage(args(8), cfg)) == "its code changed"


def test_hw_from_and_to_run_a_range_of_stages(tmp_path, root):
    """--to stops after a stage (no report); --from redoes a stage and the later ones even when
    their inputs are unchanged, and refuses when a stage before it is not up to date."""
    cfg = tmp_path / "tinyrange.toml"
    cfg.write_text(TINY.format(arch="mlp", variant="binw"))
    build = tmp_path / "build"
    hw = ("hw", "--config", str(cfg), "--build-dir", str(build), "--quiet")
    r = run_cli(*hw, "--to", "rtl", cwd=root)
    assert r.returncode == 0 and "stopped after the rtl stage (--to rtl); no report" in r.stdout, r.stdout + r.stderr
    out = build / "tinyrange"
    assert (out / "rtl" / "top.v").is_file() and not (out / "sim").exists() and not (out / "report.json").exists()
    rtl_made = (out / "rtl" / "manifest.json").stat().st_mtime_ns
    r = run_cli(*hw, "--from", "rtl", "--to", "rtl", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "model stage: " in r.stdout and r.stdout.count(", kept") == 2, r.stdout       # model, quantize
    assert (out / "rtl" / "manifest.json").stat().st_mtime_ns != rtl_made                  # redone
    # a stage before --from that is not up to date is refused by name, before anything runs
    r = run_cli(*hw, "--from", "rtl", "--precision-bits", "6", cwd=root)
    assert r.returncode == 2 and "the quantize stage before it is not up to date" in r.stderr, r.stderr
    for bad, words in ((("--from", "synth", "--to", "rtl"), "--from synth comes after --to rtl"),
                       (("--from", "hls"), "the hls stage runs with --hls only"),
                       (("--dense", "--to", "sim"), "--dense builds model, quantize and rtl only")):
        r = run_cli(*hw, *bad, cwd=root)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)


# ~90 s; the same fit is checked in the default suite by test_host.py and test_rtl_bitpar.py
@pytest.mark.slow
def test_a_pruned_ticket_is_fitted_onto_the_runtime_bitstream_of_its_parent(tiny_ir, tmp_path, root):
    """The user's path for one bitstream, two tickets: the ticket's runtime-weights bitpar
    design, then its DynSNN-pruned ticket lowered with --fit-to: the same netlist (core.il),
    its own weights.bin, membranes at least the design's, and `run --simulated` on the
    design's board with every image identical.  Other lanes are refused by name."""
    ir, _ = tiny_ir
    build = ir.parent.parent
    cfg = build.parent / "tinyq.toml"
    rtl_a = build / "tinyq" / "rtl-runtime"
    other = tmp_path / "b"
    common = ["--config", str(cfg), "--datapath", "bitpar", "--pes", "4", "--weights", "runtime", "--quiet"]
    r = run_cli("hw", *common, "--build-dir", str(build), "--to", "rtl", cwd=root)
    assert r.returncode == 0, r.stderr
    (build / "tinyq" / "rtl").rename(rtl_a)             # the design the other ticket must run on
    r = run_cli("prune", "--config", str(cfg), "--build-dir", str(build), "--method", "dynsnn", "--sparsity", "0.3",
                "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    r = run_cli("quantize", "--config", str(cfg), "--build-dir", str(other), "--ticket",
                str(build / "tinyq" / "prune-dynsnn"), "--fit-to", str(rtl_a), cwd=root)
    assert r.returncode == 0, r.stderr
    mine, theirs = load_graph(other / "tinyq" / "ir"), load_graph(ir)
    assert all(a.neuron.membrane_bits >= b.neuron.membrane_bits for a, b in zip(mine.layers, theirs.layers) if a.neuron)
    r = run_cli("rtl", *common, "--build-dir", str(other), "--fit-to", str(rtl_a), cwd=root)
    assert r.returncode == 0, r.stderr
    rtl_b = other / "tinyq" / "rtl"
    assert (rtl_b / "core.il").read_text() == (rtl_a / "core.il").read_text()
    assert (rtl_b / "weights.bin").read_bytes() != (rtl_a / "weights.bin").read_bytes()
    assert json.loads((rtl_b / "manifest.json").read_text())["fit_to"]["rtl_dir"] == str(rtl_a.resolve())
    r = run_cli("run", "--config", str(cfg), "--build-dir", str(other), "--simulated", "--images", "20", "--quiet",
                cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"weights on the design of {rtl_a}" in r.stdout and "20/20 images identical" in r.stdout
    assert (rtl_a.parent / "run" / "simboard").is_dir() and not (other / "tinyq" / "run" / "simboard").exists()
    r = run_cli("rtl", *common[:5], "8", *common[6:], "--build-dir", str(other), "--fit-to", str(rtl_a), cwd=root)
    assert r.returncode != 0 and "has 4 lanes, this build asks for 8: use --pes 4" in r.stderr, r.stderr


def test_ticketforge_import_writes_the_ir_and_a_config_the_later_commands_take(tmp_path, root):
    """`ticketforge import --nir`: the IR folder and build/<name>/<name>.toml, which `rtl`
    then takes; missing arguments and an unsupported node are named."""
    import nir

    from test_nir_import import conv_net

    path = tmp_path / "net.nir"
    g = conv_net(3, shape=(1, 28, 28))
    nodes = dict(g.nodes)
    nodes["fc"] = nir.Affine(weight=np.random.default_rng(0).normal(0, 0.2, (10, 4 * 14 * 14)),
                             bias=np.zeros(10))
    nodes["lif2"] = nir.LIF(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10), v_threshold=np.ones(10))
    nodes["output"] = nir.Output(output_type={"output": np.array([10])})
    order = list(nodes)
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False))
    build = tmp_path / "build"
    r = run_cli("import", "--nir", str(path), "--name", "imp", "--dt", "1e-4", "--reset", "hard", "--timesteps", "4",
                "--weight-bits", "4", "--build-dir", str(build), cwd=root)
    assert r.returncode == 0, r.stderr
    assert "accuracy float (the NIR graph)" in r.stdout and (build / "imp" / "ir" / "graph.json").is_file()
    cfg = build / "imp" / "imp.toml"
    m = json.loads((build / "imp" / "ir" / "metrics.json").read_text())
    assert m["source"] == "nir" and m["weight_bits"] == 4 and m["T"] == 4
    r = run_cli("rtl", "--config", str(cfg), "--build-dir", str(build), "--no-trace", cwd=root)
    assert r.returncode == 0, r.stderr
    man = json.loads((build / "imp" / "rtl" / "manifest.json").read_text())
    assert man["params"]["datapath"] == "bitpar"
    r = run_cli("import", "--nir", str(path), "--name", "imp2", "--build-dir", str(build), cwd=root)
    assert r.returncode == 2 and "--dt, --reset, --timesteps missing" in r.stderr, r.stderr
    nodes["lif1"] = nir.CubaLIF(tau_syn=np.full((4, 28, 28), 2e-3), tau_mem=np.full((4, 28, 28), 1e-3),
                                r=np.ones((4, 28, 28)), v_leak=np.zeros((4, 28, 28)), v_threshold=np.ones((4, 28, 28)))
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False))
    r = run_cli("import", "--nir", str(path), "--name", "imp3", "--dt", "1e-4", "--reset", "hard", "--timesteps", "4",
                "--build-dir", str(build), cwd=root)
    assert r.returncode != 0 and "NIR node 'lif1': CubaLIF is not supported" in r.stderr, r.stderr
    assert not (build / "imp3" / "ir").exists()
