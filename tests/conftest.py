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


def assert_golden_equals_intsim(g, x) -> None:
    """The golden interpreter and the torch integer model agree on ``x``: scores and every
    neuron layer's spike trains, exactly."""
    import numpy as np

    from ticketforge.ir import run
    from ticketforge.model.intsim import torch_integer_run

    gold = run(g, x, trace=True)
    scores, spikes = torch_integer_run(g, x)
    assert np.array_equal(gold.scores, scores)
    for name, s in spikes.items():
        assert np.array_equal(gold.spikes[name], s), name


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


def sampled(values, default: int) -> list:
    """Parameters of a random-IR sweep: the first ``default`` in the default suite, the rest
    marked ``slow`` (`make test-slow` runs them all).  The default ones are chosen to hold
    the hard cases (see the tests that check the seeds' coverage)."""
    values = list(values)
    return values[:default] + [pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=pytest.mark.slow)
                               for v in values[default:]]


# Test tiers, by module: `make test` runs every tier but `slow`; `make test-unit` (seconds to a
# minute) is the quick loop while editing.  A module's tier says what it needs to run.
TIERS = {
    # pure Python: the model stage on tiny settings, the IR, the cycle and energy models, the
    # report, the config and the fuzzing of every input
    "unit": ("test_config", "test_cycles", "test_data", "test_datapath_options", "test_dvs_files", "test_energy",
             "test_events",
             "test_flow",
             "test_nir_import",
             "test_load_image",
             "test_fuzz", "test_ir", "test_ir_dag", "test_margins", "test_pruning", "test_report", "test_stages", "test_zoo"),
    # the generated hardware in simulation: Amaranth's simulator, cocotb on Icarus
    "rtlsim": ("test_board_top", "test_host", "test_rtl_accel", "test_rtl_bitpar", "test_rtl_lane", "test_rtl_neuron",
               "test_rtl_rowstream",
               "test_rtl_popcount_lane", "test_sim", "test_soak"),
    # external tools: yosys, nextpnr, Verilator builds, g++ (hls4ml), whole `ticketforge hw` runs
    "tools": ("test_deploy", "test_distributed", "test_event_flow", "test_explore", "test_hls", "test_interrupt", "test_netlist", "test_quantize", "test_rtl_emit"),
}
_TIER_OF = {mod: tier for tier, mods in TIERS.items() for mod in mods}


def pytest_collection_modifyitems(config, items):
    for item in items:
        mod = item.module.__name__.rsplit(".", 1)[-1]
        if item.get_closest_marker("slow"):
            continue
        tier = _TIER_OF.get(mod)
        if tier is None:
            raise pytest.UsageError(f"{mod}.py has no test tier: add it to TIERS in tests/conftest.py")
        item.add_marker(getattr(pytest.mark, tier))
