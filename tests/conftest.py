import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# torch's "Triton not available" notice is noise on CPU machines
os.environ.setdefault("TORCH_LOGS", "-all")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ticketforge ...` as a user would; returns the finished process."""
    return subprocess.run([sys.executable, "-m", "ticketforge", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=900)


def tiny_template(T: int, seed: int) -> str:
    """TOML of a tiny run on the synthetic dataset; format it with arch= and variant=."""
    return f"""
[model]
arch = "{{arch}}"
variant = "{{variant}}"
width = 0.125
T = {T}
r_p = 0.4
[data]
dataset = "synthetic"
batch_size = 32
[train]
epochs = 2
optimizer = "adam"
lr = 0.01
weight_decay = 0.0
seed = {seed}
"""
