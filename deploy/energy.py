"""Energy per image from the accelerator's measured event counters (``hardware_events``).

These are **estimates**: each event the status block counts (synaptic accumulate,
weight-memory read, membrane read/write, neuron update, spike written) is priced with a
45 nm reference energy for an integer add of the datapath's width or an SRAM access of the
memory's size and word width.  They say what the events would cost in that technology; an
FPGA spends more per event (routing, LUT-based logic) and has static power, which is not
included: we have no measured figure for these boards' static power at our utilisation.

Every constant's source is next to it.  The SRAM figures are for 64-bit words; an access
of a narrower word is scaled by width / 64 (an approximation: bit-line energy scales with
the bits read, the decoder's share does not), a wider word is that many 64-bit banks (each
priced at its own size), and sizes between the reference points are interpolated in
log(size).  A memory smaller than 8 KB is priced as an 8 KB one (the
smallest reference point): for the small per-PE memories of small designs this is an
upper bound, not an extrapolation we cannot source.
"""
from __future__ import annotations

import math

from ticketforge.errors import StageMissingError

__all__ = ["ADD_PJ", "SRAM_64B_PJ", "add_pj", "sram_pj", "hardware_events_energy"]

# M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
# 45 nm, 0.9 V (Table/figure "Rough energy costs for various operations"):
ADD_PJ = {8: 0.03, 16: 0.05, 32: 0.1}            # integer add, pJ per operation, by bits
SRAM_64B_PJ = {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0}   # 64-bit read, by bytes
# (the same source gives 1.3-2.6 nJ per 64-bit DRAM access: not used, nothing leaves chip)


def _interp(table: dict[int, float], x: float) -> float:
    """Piecewise linear in log(x) through the table; clamped at both ends."""
    keys = sorted(table)
    if x <= keys[0]:
        return table[keys[0]]
    if x >= keys[-1]:
        return table[keys[-1]]
    for lo, hi in zip(keys, keys[1:]):
        if lo <= x <= hi:
            f = (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return table[lo] + f * (table[hi] - table[lo])
    raise AssertionError("unreachable")


def add_pj(bits: int) -> float:
    """Energy of one integer add of ``bits`` bits (log-interpolated between 8, 16, 32)."""
    return _interp(ADD_PJ, bits)


def sram_pj(depth: int, width: int) -> float:
    """Energy of one access of a ``width``-bit word in a ``depth`` x ``width`` SRAM.  A memory
    wider than 64 bits is priced as 64-bit banks side by side, each an SRAM of ``depth`` x 64
    bits: that is how a wide memory is built (the reference figures are for 64-bit words,
    and an FPGA block RAM is at most 36 bits wide), not one array of the whole size."""
    size_bytes = max(1, depth * min(width, 64) // 8)
    return _interp(SRAM_64B_PJ, size_bytes) * width / 64


def _memory(memories: list[dict], name: str) -> dict:
    for m in memories:
        if m["name"] == name:
            return m
    raise StageMissingError(f"the rtl manifest has no memory named {name!r}: it was made by another generator; "
                            "re-run `ticketforge rtl` (or `make hw`)")


def _bitpar_prices(rtl_manifest: dict) -> dict[str, float]:
    """pJ per counted event of the bitpar datapath (rtl/bitpar/cycles.py COUNTERS).

    A *step* reads one source word (a spike bitmap, T x 32 bits) and one weight row (every
    lane's +1 and -1 words) and does, per lane and timestep, two 32-bit popcounts and one
    accumulate.  An n-bit popcount is priced as n full adders, i.e. n / 8 8-bit adds (an
    8-bit ripple-carry add is 8 full adders).  A neuron update is a leak add and a threshold
    compare in registers (no membrane memory).  A word written is a read, OR and write of
    the destination bitmap word plus the group table's row read for that (position, group)."""
    mems = rtl_manifest["memories"]
    bp = rtl_manifest["bitpar"]
    buf, weights, groups = _memory(mems, "buf0"), _memory(mems, "weights"), _memory(mems, "groups")
    steps = _memory(mems, "steps")
    popcount = 2 * bp["word"] / 8 * add_pj(8)
    lane_step = bp["T"] * (popcount + add_pj(bp["acc_bits"]))
    return {
        "steps": sram_pj(buf["depth"], buf["width"]) + sram_pj(weights["depth"], weights["width"])
        + sram_pj(steps["depth"], steps["width"]) + bp["lanes"] * lane_step,
        "neuron_updates": 2 * add_pj(rtl_manifest["membrane_bits"]),
        "spikes": 0.0,
        "words_written": 2 * sram_pj(buf["depth"], buf["width"]) + sram_pj(groups["depth"], groups["width"]),
    }


def _rowstream_prices(rtl_manifest: dict) -> dict[str, float]:
    """pJ per counted event of the rowstream datapath (rtl/rowstream/cycles.py COUNTERS).

    A *row read* reads one event list entry and one weight row (every lane's weight) and does,
    per lane, a shift-and-add product (weight bits - 1 adds of the value's width) and one
    accumulate.  A neuron update reads the neuron's parameters and does the leak add, the
    input add and the threshold compare in registers (no membrane memory).  A spike appends
    one entry to the next layer's event list."""
    mems = rtl_manifest["memories"]
    rs = rtl_manifest["rowstream"]
    rows, params, lst = _memory(mems, "rows"), _memory(mems, "params"), _memory(mems, "list0")
    product = (rs["weight_bits"] - 1) * add_pj(rs["value_bits"] + rs["weight_bits"])
    return {
        "row_reads": sram_pj(lst["depth"], lst["width"]) + sram_pj(rows["depth"], rows["width"])
        + rs["lanes"] * (product + add_pj(rs["acc_bits"])),
        "neuron_updates": sram_pj(params["depth"], params["width"]) + 3 * add_pj(rtl_manifest["membrane_bits"]),
        "spikes": sram_pj(lst["depth"], lst["width"]),
    }


def hardware_events_energy(counters_per_image: dict[str, dict[str, float]], rtl_manifest: dict) -> dict:
    """Energy per image (uJ) from the per-layer counters (mean per image) and the memory
    inventory of the rtl stage's manifest.  Returns the total and per layer, by event."""
    if rtl_manifest.get("params", {}).get("datapath") == "bitpar":
        return _priced(counters_per_image, _bitpar_prices(rtl_manifest))
    if rtl_manifest.get("params", {}).get("datapath") == "rowstream":
        return _priced(counters_per_image, _rowstream_prices(rtl_manifest))
    mems = rtl_manifest["memories"]
    acc_bits = rtl_manifest["membrane_bits"]
    rows = _memory(mems, "pe0_rows")      # a weight read is one synapse word of one PE's column
    membranes = _memory(mems, "pe0_membranes")
    params = _memory(mems, "pe0_params")
    spikes = next((m for m in mems if m["name"] == "pe0_spikes"), None)
    price = {
        "accumulates": add_pj(acc_bits),
        "weight_reads": sram_pj(rows["depth"], rows["width"]),
        "membrane_reads": sram_pj(membranes["depth"], membranes["width"]),
        "membrane_writes": sram_pj(membranes["depth"], membranes["width"]),
        # an update reads the neuron's parameters and does a leak add and a threshold compare
        "neuron_updates": sram_pj(params["depth"], params["width"]) + 2 * add_pj(acc_bits),
        "spikes": sram_pj(spikes["depth"], spikes["width"]) if spikes else 0.0,
    }
    return _priced(counters_per_image, price)


def _priced(counters_per_image: dict[str, dict[str, float]], price: dict[str, float]) -> dict:
    layers = {}
    for layer, cnt in counters_per_image.items():
        per = {k: cnt.get(k, 0) * price[k] * 1e-6 for k in price}
        layers[layer] = {"uj": sum(per.values()), "by_event_uj": per}
    return {"uj": sum(v["uj"] for v in layers.values()), "layers": layers,
            "pj_per_event": price,
            "method": "45 nm reference energies (Horowitz, ISSCC 2014) x the RTL's measured event counters; "
                      "memories under 8 KB priced as 8 KB (upper bound); estimate, dynamic energy only, "
                      "no static power"}
