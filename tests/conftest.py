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


def uart_frame(byte: int) -> list[int]:
    """The line levels of one 8N1 byte: start bit, 8 data bits (LSB first), stop bit."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [1]


async def uart_byte(ctx, tx, div: int) -> int:
    """Decode one 8N1 byte from `tx` in an Amaranth testbench, called on the first cycle of
    its start bit (`div` clock cycles per bit): each bit is sampled mid-bit."""
    await ctx.tick().repeat(div // 2)
    byte = 0
    for k in range(8):
        await ctx.tick().repeat(div)
        byte |= ctx.get(tx) << k
    await ctx.tick().repeat(div)
    return byte
