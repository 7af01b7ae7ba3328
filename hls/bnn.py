"""The BNN-BinAct baseline through hls4ml: QONNX (exported from brevitas by
`ticketforge.model.bnn_qonnx`) -> qonnx clean-up -> hls4ml -> g++ C simulation, compared with
brevitas' own forward pass (`reference.npz`).  Torch-free: it reads files.

hls4ml's documented QONNX route (clean, channels-last, Gemm -> MatMul, clean); one step is
ours: brevitas' QONNX export of a QuantLinear drops its (zero) bias, and qonnx's
GemmToMatMul needs Gemm's third input, so a zero bias is put back first.
Precision: every hls4ml type defaults to ``fixed<40,16>``.  With ``fixed<24,12>`` the
batch-norm thresholds rounded and some activations flipped (measured on 20 images: scores off
by up to 3 weight steps, predictions still equal); at 40 bits the C simulation reproduced
brevitas' scores exactly (60 images in the trial, then all 1,000 in the run).
The agreement over every image is measured and written, never assumed.
"""
from __future__ import annotations

import json
import time
import warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from ticketforge.hls.csim import parallel_chunks
from ticketforge.hls.from_ir import HLS_PART
from ticketforge.errors import StageMissingError

__all__ = ["BNN_PRECISION", "qonnx_to_hls", "run_bnn_csim"]

BNN_PRECISION = "fixed<40,16>"


def _prepared_qonnx(onnx_path: Path):
    import onnx
    import qonnx.util.cleanup
    from onnx import numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    model = qonnx.util.cleanup.cleanup_model(ModelWrapper(onnx.load(str(onnx_path))))
    for node in model.graph.node:
        if node.op_type == "Gemm" and len(node.input) == 2:
            out_features = model.get_tensor_shape(node.input[1])[0]
            name = f"{node.name}_zero_bias"
            model.graph.initializer.append(numpy_helper.from_array(np.zeros(out_features, np.float32), name))
            node.input.append(name)
    model = model.transform(ConvertToChannelsLastAndClean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "only explicit support for Gemm version 9"
        model = model.transform(GemmToMatMul())
    return qonnx.util.cleanup.cleanup_model(model)


def qonnx_to_hls(onnx_path: Path, out_dir: Path, backend: str = "Vitis"):
    """Convert and compile; returns the hls4ml ModelGraph (io_stream, Resource strategy:
    io_parallel's fully unrolled convolutions took >14 CPU-minutes and 6 GB in g++)."""
    import hls4ml

    if not Path(onnx_path).is_file():
        raise StageMissingError(f"{onnx_path} is missing: export the baseline first (`ticketforge hls --baseline ...`)")
    model = _prepared_qonnx(Path(onnx_path))
    with redirect_stdout(StringIO()), warnings.catch_warnings():   # hls4ml narrates every layer
        warnings.simplefilter("ignore")
        config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend=backend,
                                                            default_precision=BNN_PRECISION)
        config["Model"]["Strategy"] = "Resource"
        hm = hls4ml.converters.convert_from_onnx_model(model, output_dir=str(out_dir), backend=backend,
                                                       part=HLS_PART, io_type="io_stream", hls_config=config)
        hm.compile()
    return hm


def _predict(state: dict, lo: int, hi: int) -> dict:
    hm, images = state["model"], state["images"]
    x = np.ascontiguousarray(images[lo:hi].transpose(0, 2, 3, 1), dtype=np.float32)   # channels-last
    with redirect_stdout(StringIO()):
        y = hm.predict(x)
    return {"scores": np.asarray(y, dtype=np.float64).reshape(hi - lo, -1)}


def run_bnn_csim(export_dir: Path, out_dir: Path, name: str, jobs: int = 2, backend: str = "Vitis",
                 progress: bool = True) -> dict:
    """C-simulate the exported baseline on its reference images; compare with brevitas."""
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    ref_path = export_dir / "reference.npz"
    if not ref_path.is_file():
        raise StageMissingError(f"{ref_path} is missing: export the baseline first (`ticketforge hls --baseline {name}`)")
    ref = np.load(ref_path)
    t0 = time.perf_counter()
    hm = qonnx_to_hls(export_dir / "bnn.onnx", out_dir / "project", backend=backend)
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    parts = parallel_chunks(_predict, {"model": hm, "images": ref["images"]}, len(ref["images"]), jobs,
                            "bnn hls csim" if progress else None)
    run_s = time.perf_counter() - t1
    scores = np.concatenate([p["scores"] for p in parts])
    bre, labels = ref["brevitas_scores"].astype(np.float64), ref["labels"]
    brevitas = json.loads((export_dir / "brevitas.json").read_text())
    # float rounding can flip a decision within NEAR_TIE of its threshold (ticketforge.model.margins)
    settled = ref["activation_margin"] > brevitas["near_tie_margin"]
    clear = settled & (ref["score_gap"] > brevitas["near_tie_margin"])
    rel = np.abs(scores - bre).max(1) / np.maximum(np.abs(bre).max(1), 1e-30)
    res = {
        "name": name, "images": int(len(scores)), "precision": BNN_PRECISION, "io_type": "io_stream",
        "accuracy_torch": brevitas["accuracy_torch"], "accuracy_brevitas": brevitas["accuracy_brevitas"],
        "accuracy_hls": float(np.mean(scores.argmax(1) == labels)),
        "prediction_agreement_hls_brevitas": float(np.mean(scores.argmax(1) == bre.argmax(1))),
        "prediction_agreement_hls_brevitas_clear": float(np.mean((scores.argmax(1) == bre.argmax(1))[clear]))
                                                   if clear.any() else None,
        "prediction_agreement_brevitas_torch": brevitas["prediction_agreement_brevitas_torch"],
        "prediction_agreement_brevitas_torch_clear": brevitas["prediction_agreement_brevitas_torch_clear"],
        "near_tie_margin": brevitas["near_tie_margin"], "images_settled": int(settled.sum()),
        "images_clear": int(clear.sum()),
        "score_max_abs_diff": float(np.abs(scores - bre).max()),
        # relative to the image's largest |score|: float32 rounding of alpha * integer is ~1e-7
        "score_max_rel_diff": float(rel.max()),
        "score_max_rel_diff_settled": float(rel[settled].max(initial=0.0)),
        "images_scores_identical": int(np.all(scores == bre, axis=1).sum()),
        "seconds": {"convert_compile": round(compile_s, 2), "csim": round(run_s, 2)}, "jobs": jobs,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(res, indent=1))
    np.save(out_dir / "scores.npy", scores)
    return res
