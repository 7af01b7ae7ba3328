"""Verilog emission (`ticketforge rtl`) and the Verilator lint gate."""
import json

import pytest

from conftest import run_cli
from ticketforge.ir import save_graph
from ticketforge.ir.random import random_graph
from ticketforge.rtl.emit import TOP, write_rtl
from ticketforge.rtl.lint import lint


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtl")
    g = random_graph(7, binary=True)
    save_graph(g, d / "ir")
    m = write_rtl(d / "ir", d / "rtl", pes=4, progress=lambda *a, **k: None)
    return d, g, m


def test_files_and_manifest(emitted):
    d, g, m = emitted
    top = (d / "rtl" / "top.v").read_text()
    assert top.startswith("`timescale 1ns/1ps") and f"module {TOP}" in top
    iface = json.loads((d / "rtl" / "interface.json").read_text())
    assert {"pixels", "scores", "start", "done", "status_addr", "status_data"} <= set(iface["interface"]["members"])
    man = json.loads((d / "rtl" / "manifest.json").read_text())
    assert man["params"] == {"pes": 4, "dense": False, "trace": True, "memory_style": "auto", "fifo_depth": 8,
                             "datapath": "lane", "weights": "baked"}
    assert "load" not in man and not (d / "rtl" / "weights.bin").exists()
    assert man["status"][0] == {"address": 0, "layer": "", "counter": "cycles"}
    assert {s["layer"] for s in man["status"][1:]} == {l.name for l in g.layers if l.kind != "flatten"}
    assert man["memory_bits"] == sum(x["bits"] for x in man["memories"]) > 0


def test_lint_has_no_unexplained_warning(emitted):
    _, _, m = emitted
    assert m["lint"]["unexplained"] == [] and m["lint"]["returncode"] == 0
    assert set(m["lint"]["explained"]) <= {"WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "PROCASSINIT",
                                           "UNSIGNED", "UNUSEDSIGNAL", "DECLFILENAME", "ASCRANGE"}


def test_lint_catches_a_real_truncation(tmp_path):
    v = tmp_path / "bad.v"
    v.write_text("module bad(input [7:0] a, output [3:0] y);\n  assign y = a;\nendmodule\n")
    r = lint(v, "bad")
    assert any("WIDTHTRUNC" in u for u in r["unexplained"])


def test_cli_rtl_without_ir_names_the_fix(tmp_path, root):
    r = run_cli("rtl", "--config", "vgg9_binw", "--build-dir", str(tmp_path), cwd=root)
    assert r.returncode == 2 and "ticketforge quantize --config vgg9_binw" in r.stderr


def test_memory_style_reaches_the_verilog(tmp_path):
    g = random_graph(7, binary=True)
    save_graph(g, tmp_path / "ir")
    write_rtl(tmp_path / "ir", tmp_path / "rtl", pes=2, run_lint=False, memory_style="block",
              progress=lambda *a, **k: None)
    assert '(* ram_style = "block" *)' in (tmp_path / "rtl" / "top.v").read_text()
    with pytest.raises(ValueError, match="memory_style must be one of auto, block, logic, got 'bram'"):
        write_rtl(tmp_path / "ir", tmp_path / "rtl2", pes=2, run_lint=False, memory_style="bram",
                  progress=lambda *a, **k: None)
