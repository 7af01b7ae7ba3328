"""The flow's stages as data (ticketforge/flow.py): a stage is kept exactly when its inputs,
settings, code and tools are unchanged, says why when it is not, and is on disk whole or
not at all, whatever happens while it runs."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ticketforge.errors import StageMissingError, UsageError
from ticketforge.flow import RECORD, Stage, read_record, run_stage, run_stages, stale_reason


def _writer(text: str, calls: list):
    def run(out: Path) -> dict:
        calls.append(out)
        (out / "out.txt").write_text(text)
        return {"chars": len(text)}
    return run


@pytest.fixture
def made(tmp_path):
    src = tmp_path / "src.py"
    src.write_text("x = 1\n")
    inp = tmp_path / "input.txt"
    inp.write_text("a")
    calls = []
    version = {"tool": "1.0"}

    def stage(**over):
        kw = dict(inputs={"input.txt": inp}, params={"n": 1}, code=(src,), tools={"tool": lambda: version["tool"]},
                  outputs=("out.txt",))
        kw.update(over)
        return Stage("demo", tmp_path / "demo", _writer("hello", calls), **kw)
    return stage, calls, inp, src, version, tmp_path


def test_a_stage_is_kept_until_its_inputs_params_code_or_tools_change(made):
    stage, calls, inp, src, version, tmp = made
    first = run_stage(stage())
    assert not first.kept and len(calls) == 1 and calls[0] == tmp / ".demo.work"
    rec = read_record(tmp / "demo")
    assert rec["stage"] == "demo" and rec["summary"] == {"chars": 5} and rec["seconds"] >= 0 and rec["finished"]
    assert set(rec["key"]) == {"inputs", "params", "code", "tools"} and rec["key"]["tools"] == {"tool": "1.0"}
    assert not (tmp / ".demo.work").exists() and (tmp / "demo" / "out.txt").read_text() == "hello"
    again = run_stage(stage())
    assert again.kept and len(calls) == 1 and again.seconds == rec["seconds"]
    # each change is named, and redoes the stage
    assert stale_reason(stage(params={"n": 2})) == "n 1 -> 2"
    assert stale_reason(stage(params={"n": 1, "m": True})) == "m unset -> True"
    run_stage(stage(params={"n": 1, "t": {"seed": 3, "lr": 0.1}}))
    assert stale_reason(stage(params={"n": 1, "t": {"seed": 5, "lr": 0.1}})) == "t.seed 3 -> 5"
    run_stage(stage())
    inp.write_text("b")
    assert stale_reason(stage()) == "its input input.txt changed"
    inp.write_text("a")
    src.write_text("x = 2\n")
    assert stale_reason(stage()) == "its code changed"
    src.write_text("x = 1\n")
    version["tool"] = "2.0"
    assert stale_reason(stage()) == "tool 1.0 -> 2.0"
    version["tool"] = "1.0"
    assert stale_reason(stage()) is None
    (tmp / "demo" / "out.txt").unlink()
    assert stale_reason(stage()).endswith("out.txt is missing")
    assert not run_stage(stage()).kept and len(calls) == 4


def test_a_kept_stage_reports_the_seconds_it_ran_to_the_tenth(made, monkeypatch):
    """A run that took 84.7499 s is recorded as 84.75 s, and the report's tenth is the same
    whether the stage ran or was kept: the time is rounded once, when it is recorded
    (rounding the unrounded time gave 84.7, the record 84.8)."""
    import ticketforge.flow as flow

    stage, *_ = made
    ticks = iter([1000.0, 1084.7499])
    monkeypatch.setattr(flow.time, "perf_counter", lambda: next(ticks))
    ran = run_stage(stage())
    monkeypatch.undo()
    kept = run_stage(stage())
    assert kept.kept and not ran.kept
    assert ran.seconds == kept.seconds == 84.75 and round(ran.seconds, 1) == round(kept.seconds, 1)


def test_a_failing_stage_leaves_no_folder_and_its_work_seeds_the_next_run(made):
    stage, calls, inp, src, version, tmp = made
    run_stage(stage())
    (tmp / "demo" / "cache.bin").write_bytes(b"kept between runs")

    def fails(out: Path):
        assert (out / "cache.bin").is_file()         # the previous outputs seed the work folder
        (out / "out.txt").write_text("half")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        run_stage(Stage("demo", tmp / "demo", fails, inputs={"input.txt": inp}, outputs=("out.txt",)), force=True)
    assert not (tmp / "demo").exists()                 # absent, not half-written
    assert not (tmp / ".demo.work" / RECORD).exists()  # the work folder is never trusted
    assert stale_reason(stage()) == "not run yet"
    out = run_stage(stage())
    assert not out.kept and (tmp / "demo" / "cache.bin").is_file() and (tmp / "demo" / "out.txt").read_text() == "hello"


def test_a_missing_input_is_refused_before_anything_is_written(made):
    stage, calls, inp, src, version, tmp = made
    inp.unlink()
    with pytest.raises(StageMissingError, match=r"the demo stage reads .*input.txt, which is missing: run this"):
        run_stage(stage(inputs_from="run this first"))
    assert calls == [] and not (tmp / "demo").exists() and not (tmp / ".demo.work").exists()


def test_stage_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="a stage needs a name"):
        Stage("", tmp_path, lambda out: None)
    with pytest.raises(TypeError, match="folder must be a pathlib.Path"):
        Stage("x", str(tmp_path), lambda out: None)
    with pytest.raises(TypeError, match="run must be callable"):
        Stage("x", tmp_path, None)
    with pytest.raises(ValueError, match="inside the stage's folder"):
        Stage("x", tmp_path, lambda out: None, outputs=("../escape",))
    with pytest.raises(TypeError, match="params must be JSON values"):
        Stage("x", tmp_path, lambda out: None, params={"p": object()})


def test_run_stages_from_to_and_beside(tmp_path):
    order = []

    def step(name):
        def run(out: Path):
            order.append(name)
            (out / "done").write_text(name)
        return run

    a = Stage("a", tmp_path / "a", step("a"), outputs=("done",))
    b = Stage("b", tmp_path / "b", step("b"), inputs={"done": tmp_path / "a" / "done"}, outputs=("done",))
    c = Stage("c", tmp_path / "c", step("c"), inputs={"done": tmp_path / "a" / "done"}, outputs=("done",),
              beside="b")
    with pytest.raises(StageMissingError, match=r"--from b: the a stage before it is not up to date \(not run yet\)"):
        run_stages([a, b, c], first="b")
    assert order == []
    done = run_stages([a, b, c], last="b")
    assert list(done) == ["a", "b"] and order == ["a", "b"]
    done = run_stages([a, b, c])
    assert [o.kept for o in done.values()] == [True, True, False] and order == ["a", "b", "c"]
    done = run_stages([a, b, c], first="b")
    assert [o.kept for o in done.values()] == [True, False, False] and sorted(order[3:]) == ["b", "c"]
    for first, last, words in (("c", "a", "--from c comes after --to a"), ("d", None, "this run has no d stage")):
        with pytest.raises(UsageError, match=words):
            run_stages([a, b, c], first=first, last=last)


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ticketforge.flow import Stage, run_stage

    def run(out):
        (out / "part1").write_text("1")
        print("inside", flush=True)
        time.sleep(60)
        (out / "part2").write_text("2")

    run_stage(Stage("slow", Path(sys.argv[1]) / "slow", run, outputs=("part1", "part2")))
""")


def test_a_stage_killed_while_it_runs_is_absent_and_redone(tmp_path):
    """SIGKILL inside a stage: its folder is not there, so nothing half-written is trusted."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.stdout.readline().strip() == "inside"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert not (tmp_path / "slow").exists() and (tmp_path / ".slow.work" / "part1").is_file()
    calls = []
    out = run_stage(Stage("slow", tmp_path / "slow", lambda o: calls.append((o / "part2").write_text("2")),
                          outputs=("part1", "part2")))
    assert not out.kept and calls and json.loads((tmp_path / "slow" / RECORD).read_text())["stage"] == "slow"


def test_bad_input_found_inside_a_stage_leaves_nothing_but_a_failure_keeps_its_evidence(tmp_path):
    from ticketforge.errors import ConfigError

    def refuses(out: Path):
        raise ConfigError("bad value")              # found before anything is written

    with pytest.raises(ConfigError):
        run_stage(Stage("x", tmp_path / "x", refuses))
    assert list(tmp_path.iterdir()) == []

    def mismatches(out: Path):
        (out / "mismatches.json").write_text("{}")
        raise ConfigError("the RTL differs; see mismatches.json")

    with pytest.raises(ConfigError):
        run_stage(Stage("x", tmp_path / "x", mismatches))
    assert (tmp_path / ".x.work" / "mismatches.json").is_file() and not (tmp_path / "x").exists()


def test_the_run_clock_is_one_the_placed_design_meets(tmp_path):
    """`ticketforge run`'s on-chip latency clock: the synth stage's when its placed design
    meets it, none when it misses it, else the config's hw.clock_mhz."""
    import json

    from ticketforge.cli.hardware_cmds import run_clock_mhz
    from ticketforge.model.config import load_config

    cfg = load_config("vgg9_binw")
    assert run_clock_mhz(tmp_path, cfg, "ulx3s") == cfg.hw.clock_mhz == 40
    (tmp_path / "synth" / "ulx3s").mkdir(parents=True)
    res = tmp_path / "synth" / "ulx3s" / "synth.json"
    res.write_text(json.dumps({"meets_board_clock": True, "clock_mhz": 37.5, "fmax_mhz": 39.0}))
    assert run_clock_mhz(tmp_path, cfg, "ulx3s") == 37.5
    res.write_text(json.dumps({"meets_board_clock": False, "clock_mhz": 40.0, "fmax_mhz": 38.86}))
    assert run_clock_mhz(tmp_path, cfg, "ulx3s") is None
