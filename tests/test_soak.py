"""bench/soak.py end to end on a few seeds, and that it reports a mismatch it is shown."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench" / "soak.py"


def test_soak_runs_every_model_on_a_few_seeds():
    out = subprocess.run([sys.executable, str(BENCH), "--irs", "6", "--amaranth", "1"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 random IRs (3 binary)" in out.stdout and "1 in Amaranth simulation" in out.stdout
    assert "0 with a mismatch" in out.stdout


def test_soak_names_the_seed_of_a_mismatch(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak", BENCH)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    real = soak.torch_integer_run

    def off_by_one(g, images):
        scores, spikes = real(g, images)
        return scores + 1, spikes
    monkeypatch.setattr(soak, "torch_integer_run", off_by_one)
    assert soak.soak_one(2, False, [], Path(".")) == ["torch integer model scores differ from golden"]
