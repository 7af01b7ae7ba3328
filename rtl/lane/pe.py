"""The processing elements: one `LanePE` per PE, and the `PEArray` that runs them in step.

A PE holds its neurons' membranes and their synapse words (`program.py`), and runs three
pipelines:

- **Row stream.**  The PE pops its event FIFO (``events``: the event, its first word row,
  the PE's word count) and walks its own words of the event, one lane (the lowest set bit
  of the word's mask: a kept synapse) per cycle; an event without words on the PE costs it
  one cycle.  The read port always addresses the word the PE needs next cycle, so a word's
  first lane comes straight from the port (``fresh``) and the rest from a register of what
  is left of its mask.
- **Accumulate** (A1 decode, A2 lookup, A3 read-add-write).  The lane's target slot (conv:
  through the PE's lookup table, or in a regular layer the neuron's local index itself;
  linear: the word's slot chunk) gets ``+-value << input_shift``: read, add, write, with the
  membrane read port transparent to the write port, so back-to-back updates of one neuron
  chain.  Readout lanes go out on ``acc`` to the array's class-score registers instead.
- **Update** (U0 slot read, U1 parameter and membrane reads, U2 the update).  While the
  array's update counter runs, the PE steps through its live slots, one per cycle: the
  integer LIF update of docs/IR.md (`neuron.NeuronUpdate`, one unit per distinct neuron
  configuration), membrane write-back, and a spike event into the PE's spike queue.  One
  queue serves every layer: a layer's accumulate phase has read all of its source's events
  before its update phase writes the first of its own (``spk_clear`` in between).

The membrane memory holds, per slot, the *pre-leaked* membrane ``U = leak(V) + bias``, so
its initial contents are the biases and the accumulate phase is a plain add.
"""
from __future__ import annotations

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.rtl.lane.plan import LanePlan, load_port
from ticketforge.rtl.neuron import NeuronUpdate

__all__ = ["LanePE", "PEArray", "control_layout", "accumulate_layout"]


def control_layout(plan: LanePlan) -> data.StructLayout:
    """What every PE receives from the array each cycle: the layer and its kind, the phases,
    and the update pipeline's shared counters."""
    lps = plan.prog.layers
    max_upd = max([plan.update_cycles[i] for i in plan.neuron_layers] + [1])
    max_g = max([int(plan.group_depth.max())] + [1])
    max_q = max([lps[i].gw for i in plan.regular] + [lps[i].gs // lps[i].gw for i in plan.regular] + [1])
    return data.StructLayout({
        "layer": range(max(2, len(plan.graph.layers))),
        "last_t": 1,           # the image's last timestep
        "is_conv": 1,
        "regular": 1,          # the layer is regular (program.LayerProgram.regular)
        "wide": 1,             # the layer keeps high membrane bits (LanePlan.membrane_split)
        "acc_run": 1,          # ACC phase: walk the event FIFO
        "upd_run": 1,          # UPD phase: slot upd_i enters the update pipeline
        "upd_read": 1,         # the membrane read port serves the update pipeline
        "upd_i": range(max(2, max_upd)),
        "u1_i": range(max(2, max_upd)),
        "rank": range(max_g + 1),          # regular layers: the group rank, y and x of slot upd_i
        "u1_rank": range(max_g + 1),
        "u1_qy": range(max_q + 1),
        "u1_qx": range(max_q + 1),
        "spk_clear": 1,        # the spike queue is free again (end of an ACC phase)
    })


def accumulate_layout(plan: LanePlan) -> data.StructLayout:
    """A PE's accumulate stage A3: valid, the target slot, the signed contribution."""
    return data.StructLayout({"valid": 1, "slot": unsigned(max(plan.lane["addr"].width, plan.lut["slot"].width,
                                                                 plan.local_bits)),
                              "delta": signed(plan.acc_bits)})


class LanePE(wiring.Component):
    """PE ``p`` of ``plan``."""

    def __init__(self, plan: LanePlan, p: int):
        if not isinstance(p, int) or not 0 <= p < plan.P:
            raise ValueError(f"p must be a PE index in [0, {plan.P}), got {p!r}")
        self.plan, self.p = plan, p
        QD = plan.queue_depth
        super().__init__({
            "ctrl": In(control_layout(plan)),
            "events": In(stream.Signature(plan.entry)),
            "idle": Out(1),               # no event left and the current one walked
            "weight_read": Out(1),        # a synapse word was read this cycle
            "acc": Out(accumulate_layout(plan)),
            "updating": Out(1),           # a slot is in the update pipeline's U1 stage
            "update": Out(1),             # a neuron update (U2) this cycle
            "spike": Out(1),              # ... and it spiked
            "neuron": Out(plan.ev_xyz),   # the updated neuron's (c, y, x)
            "spk_addr": In(range(max(2, QD))),
            "spk_data": Out(plan.queue),
            "spk_count": Out(range(QD + 1)),
            **({"load": In(stream.Signature(plan.load_layout, always_ready=True))} if plan.runtime else {}),
        })

    def elaborate(self, platform):
        m = Module()
        plan, p = self.plan, self.p
        ctrl = self.ctrl
        acc_bits = plan.acc_bits
        memw, slotw, lutw, grpw, parw = plan.pe_words(p)

        # ---------------- memories
        def mem(kind, init=()):
            m.submodules[kind] = mm = plan.memory(f"pe{p}_{kind}", init)
            if plan.runtime and f"pe{p}_{kind}" in plan.load_index and kind not in ("membranes", "rows"):
                load_port(m, plan, mm, f"pe{p}_{kind}", self.load)
            return mm

        rows = mem("rows", plan.row_words(p))
        row_r = rows.read_port()
        row_addr = Signal.like(row_r.addr, name="row_addr")        # where the row stream reads
        if plan.runtime:
            # the synapse words: one address for reading and loading, reads off while loading
            # (a single-port RAM: the iCE40's SPRAM takes it, deploy/synth.py)
            row_w = rows.write_port()
            load_rows = plan.load_hit(self.load, f"pe{p}_rows")
            m.d.comb += [row_r.addr.eq(Mux(load_rows, self.load.payload.addr, row_addr)), row_r.en.eq(~load_rows),
                         row_w.addr.eq(row_r.addr), row_w.data.eq(self.load.payload.data), row_w.en.eq(load_rows)]
        else:
            m.d.comb += row_r.addr.eq(row_addr)
        spikes = mem("spikes")
        spk_w, spk_r = spikes.write_port(), spikes.read_port()
        m.d.comb += [spk_r.addr.eq(self.spk_addr), self.spk_data.eq(spk_r.data)]
        spk_count = self.spk_count
        # the membranes: the low bits of every slot, the high bits of the wide layers' slots
        # (LanePlan.membrane_split); the pipelines see one acc_bits-wide port of each kind
        lo, depth = plan.mem_lo_bits, int(plan.mem_depth[p])
        mm = mem("membranes", [v & ((1 << lo) - 1) for v in memw])
        lo_w = mm.write_port()
        lo_r = mm.read_port(transparent_for=(lo_w,))
        mem_w_addr, mem_w_data, mem_w_en = Signal(range(max(2, depth))), Signal(acc_bits), Signal()
        mem_r_addr, mem_r_data = Signal(range(max(2, depth))), Signal(signed(acc_bits))
        m.d.comb += [lo_w.addr.eq(mem_w_addr), lo_w.data.eq(mem_w_data[:lo]), lo_w.en.eq(mem_w_en),
                     lo_r.addr.eq(mem_r_addr)]
        # with runtime weights a load of the membranes (both parts, acc_bits wide) takes the
        # write port: the pipelines are idle then
        load_mem = plan.load_hit(self.load, f"pe{p}_membranes") if plan.runtime else C(0, 1)
        if plan.wide:
            hi_depth = int(plan.mem_hi_depth[p])
            mh = mem("membranes_hi", [v >> lo for v in memw[:hi_depth]])
            hi_w = mh.write_port()
            hi_r = mh.read_port(transparent_for=(hi_w,))
            hi_load = (self.load.payload.addr < hi_depth) if plan.runtime else C(0, 1)
            # a wide layer's slots are the first ones: the same address, truncated
            m.d.comb += [hi_w.addr.eq(mem_w_addr), hi_w.data.eq(mem_w_data[lo:]),
                         hi_w.en.eq(mem_w_en & Mux(load_mem, hi_load, ctrl.wide)),
                         hi_r.addr.eq(mem_r_addr),
                         mem_r_data.eq(Mux(ctrl.wide, Cat(lo_r.data, hi_r.data), lo_r.data.as_signed()))]
        else:
            m.d.comb += mem_r_data.eq(lo_r.data.as_signed())
        slot_r = mem("slots", slotw).read_port()
        lut_r = mem("lookup", lutw).read_port()
        grp_r = mem("groups", grpw).read_port()
        par_r = mem("params", parw).read_port()
        lut_data, grp_data, par_data = plan.lut(lut_r.data), plan.grp(grp_r.data), plan.param(par_r.data)

        a1 = self._row_stream(m, row_r, row_addr)
        upd_mem_addr = Signal(range(max(2, depth)), name="upd_addr")
        self._accumulate(m, a1, lut_r, lut_data, mem_r_addr, mem_r_data, mem_w_addr, mem_w_data, mem_w_en,
                         upd_mem_addr)
        self._update(m, slot_r, grp_r, grp_data, par_r, par_data, mem_r_data, mem_w_addr, mem_w_data, mem_w_en,
                     upd_mem_addr, spk_w)
        with m.If(ctrl.spk_clear):
            m.d.sync += spk_count.eq(0)
        if plan.runtime:
            with m.If(load_mem):
                m.d.comb += [mem_w_addr.eq(self.load.payload.addr), mem_w_data.eq(self.load.payload.data),
                             mem_w_en.eq(1)]
        return m

    def _row_stream(self, m, row_r, row_addr):
        """The row stream; returns its A1 registers (valid, event, lane)."""
        plan, g, ctrl = self.plan, self.plan.graph, self.ctrl
        word, W = plan.word, plan.W
        ev_in = self.events.payload
        cur_ev = Signal(plan.ev)
        cur_row = Signal(max(1, plan.rp["start"].width))
        words_left = Signal(range(2 ** plan.word_count_bits))
        fresh = Signal()
        held = Signal(word.size, name="held_word")
        rest_reg = Signal(W, name="rest_mask")
        cur_w = word(Signal(word.size, name="word"))
        mask, rest = Signal(W), Signal(W)
        m.d.comb += [cur_w.eq(Mux(fresh, row_r.data, held)),
                     mask.eq(Mux(fresh, word(row_r.data).mask, rest_reg)),
                     rest.eq(mask & (mask - 1))]                      # the mask without its lowest bit
        bit = Signal(range(max(2, W)))
        mb = plan.mag_bits
        mag_sel = Signal(mb, name="lane_mag") if mb else None      # its |weight| - 1 (multi-bit)
        for j in reversed(range(W)):                                  # lowest set bit
            with m.If(mask[j]):
                m.d.comb += bit.eq(j)
                if mb:
                    m.d.comb += mag_sel.eq(cur_w.mag[j * mb:(j + 1) * mb])
        pop, issue, word_done, last = Signal(), Signal(), Signal(), Signal(name="last_lane")
        m.d.comb += [issue.eq(ctrl.acc_run & (words_left != 0)), word_done.eq(rest == 0),
                     last.eq((words_left == 0) | (issue & word_done & (words_left == 1))),
                     self.events.ready.eq(ctrl.acc_run & last),
                     pop.eq(self.events.valid & self.events.ready),
                     row_addr.eq(Mux(pop, ev_in.start, Mux(issue & word_done, cur_row + 1, cur_row)))]
        widx = Signal(range(2 ** plan.word_count_bits), name="word_index")   # implicit address
        with m.If(issue):
            with m.If(word_done):
                m.d.sync += [words_left.eq(words_left - 1), cur_row.eq(cur_row + 1), fresh.eq(1),
                             widx.eq(widx + 1)]
            with m.Else():
                m.d.sync += [rest_reg.eq(rest), held.eq(cur_w), fresh.eq(0)]
        with m.If(pop):
            m.d.sync += [cur_ev.eq(ev_in.ev), cur_row.eq(ev_in.start), words_left.eq(ev_in.count),
                         fresh.eq(1), widx.eq(0)]
        # the lane of `bit`: conv, the group and the tap's offsets; linear, slot addr * W + bit
        lane = plan.lane
        l_addr = Signal(lane["addr"].width, name="lane_addr")
        l_dy, l_dx = (Signal(lane[k].shape, name=f"lane_{k}") for k in ("dy", "dx"))
        waddr = widx if plan.prog.implicit_addr else cur_w.addr
        with m.Switch(ctrl.layer):
            for i in plan.weighted:
                l = g.layers[i]
                with m.Case(i):
                    if l.kind == "conv":
                        m.d.comb += l_addr.eq(waddr)
                        with m.Switch(bit):
                            for tap in range(l.kernel * l.kernel):
                                with m.Case(tap):
                                    m.d.comb += [l_dy.eq(l.padding - tap // l.kernel),
                                                 l_dx.eq(l.padding - tap % l.kernel)]
                    else:
                        # waddr * W as shifts and adds: a constant product yosys would
                        # otherwise give a DSP block per PE
                        m.d.comb += l_addr.eq(sum(waddr << k for k in range(W.bit_length()) if W >> k & 1) + bit)
        low = mask & ~rest                                              # the lane's bit, one-hot
        # A1 registers: the lane and its event (an empty word, a hole with implicit addresses,
        # takes its cycle and emits no lane)
        a1_v, a1_ev, a1_lane = Signal(name="a1_v"), Signal(plan.ev, name="a1_ev"), Signal(lane, name="a1_lane")
        m.d.sync += [a1_v.eq(issue & mask.any()), a1_ev.eq(cur_ev),
                     a1_lane.neg.eq((cur_w.sign & low).any()), a1_lane.addr.eq(l_addr),
                     a1_lane.dy.eq(l_dy), a1_lane.dx.eq(l_dx)]
        if mb:
            m.d.sync += a1_lane.mag.eq(mag_sel)
        if plan.dense:
            m.d.sync += a1_lane.zero.eq((cur_w.zero & low).any())
        m.d.comb += [self.weight_read.eq(issue & fresh),       # a word's first lane: one read of the word
                     self.idle.eq(~self.events.valid & last)]
        return a1_v, a1_ev, a1_lane

    def _accumulate(self, m, a1, lut_r, lut_data, mem_r_addr, mem_r_data, mem_w_addr, mem_w_data, mem_w_en,
                    upd_mem_addr) -> None:
        plan, p, g, ctrl = self.plan, self.p, self.plan.graph, self.ctrl
        a1_v, ev, lane = a1
        lzero = lane.zero if plan.dense else C(0, 1)
        inr = Signal(name="inrange")
        lut_addr = Signal(range(max(2, int(plan.lut_depth[p]) + 1)))
        local, a2_local = Signal(plan.local_bits), Signal(plan.local_bits)
        with m.Switch(ctrl.layer):
            for i in plan.neuron_layers:
                l, lp = g.layers[i], plan.prog.layers[i]
                if l.kind != "conv":
                    continue
                with m.Case(i):
                    ls = l.stride.bit_length() - 1
                    yy, xx = ev.y + lane.dy, ev.x + lane.dx
                    oy, ox = yy >> ls, xx >> ls
                    _, ho, wo = l.out_shape
                    m.d.comb += inr.eq((yy >= 0) & (xx >= 0) & (oy < ho) & (ox < wo))
                    m.d.comb += local.eq(lane.addr * lp.gs + (oy >> (lp.ry.bit_length() - 1)) * lp.gw +
                                         (ox >> (lp.rx.bit_length() - 1)))
                    if i in plan.lbase:
                        m.d.comb += lut_addr.eq(int(plan.lbase[i][p]) + local)
        m.d.comb += lut_r.addr.eq(lut_addr)
        m.d.sync += a2_local.eq(local)
        mag = Signal(signed(plan.acc_bits))
        # value * |weight|: with binary weights the value itself; with multi-bit weights a
        # multiply, which is an AND for spikes (value 0 or 1) and a small vbits x mag_bits
        # product for the first layer's pixels (synthesis maps it to LUTs or a DSP); one
        # signal, so that each layer's case below shifts the same product, not its own copy
        prod = ev.value
        if plan.mag_bits:
            prod = Signal(plan.vbits + plan.mag_bits + 1, name="value_x_magnitude")
            m.d.comb += prod.eq(ev.value * (lane.mag + 1))
        with m.Switch(ctrl.layer):                 # constant shifts per layer: wires, no shifter
            for i in plan.weighted:
                with m.Case(i):
                    m.d.comb += mag.eq(Mux(lzero, 0, prod << g.layers[i].input_shift))
        a2_v, a2_slot, a2_delta = Signal(), Signal(plan.lane["addr"].width), Signal(signed(plan.acc_bits))
        m.d.sync += [a2_v.eq(a1_v & (inr | ~ctrl.is_conv)), a2_slot.eq(lane.addr),
                     a2_delta.eq(Mux(lane.neg, -mag, mag))]
        # A2: the slot (conv: from the lookup table, or the local index itself in a regular
        # layer), membrane read
        a3 = self.acc
        lut_ok = lut_data.valid | ctrl.regular
        slot2 = Mux(ctrl.is_conv, Mux(ctrl.regular, a2_local, lut_data.slot), a2_slot)
        m.d.sync += [a3.valid.eq(a2_v & (lut_ok | ~ctrl.is_conv)), a3.slot.eq(slot2), a3.delta.eq(a2_delta)]
        acc_addr = Signal.like(upd_mem_addr, name="acc_addr")
        with m.Switch(ctrl.layer):
            for i in plan.neuron_layers:
                with m.Case(i):
                    m.d.comb += acc_addr.eq(int(plan.mbase[i][p]) + slot2)
        m.d.comb += mem_r_addr.eq(Mux(ctrl.upd_read, upd_mem_addr, acc_addr))
        # A3: read-add-write (membranes); the class scores are the array's
        a3_addr = Signal.like(acc_addr, name="a3_addr")
        m.d.sync += a3_addr.eq(acc_addr)
        with m.If(a3.valid & (ctrl.layer != plan.out_layer)):
            m.d.comb += [mem_w_addr.eq(a3_addr), mem_w_data.eq(mem_r_data + a3.delta), mem_w_en.eq(1)]

    def _update(self, m, slot_r, grp_r, grp_data, par_r, par_data, mem_r_data, mem_w_addr, mem_w_data, mem_w_en,
                upd_mem_addr, spk_w) -> None:
        plan, p, ctrl = self.plan, self.p, self.ctrl
        active = Signal(name="upd_active")
        sbase = Signal.like(upd_mem_addr, name="sbase")
        tbase = Signal(range(max(2, int(plan.slot_depth[p]))))
        gbase = Signal(range(max(2, int(plan.group_depth[p]))))
        pbase = Signal(range(max(2, int(plan.param_depth[p]))))
        pidx = Signal(range(max(2, int(plan.param_depth[p]))))
        # U1: the slot word, from the slot table or (regular layer) from the counters and
        # the PE's group table; ry, rx are powers of two: y = qy * ry + py is a concat
        slot1 = Signal(plan.slot)
        with m.Switch(ctrl.layer):
            for i in plan.neuron_layers:
                lp = plan.prog.layers[i]
                with m.Case(i):
                    m.d.comb += [active.eq(ctrl.upd_run & (ctrl.upd_i < int(lp.n_slots[p]))),
                                 sbase.eq(int(plan.mbase[i][p])), pbase.eq(int(plan.pbase[i][p]))]
                    how = plan.param_index(i)
                    m.d.comb += pidx.eq(ctrl.u1_rank if how == "rank" else ctrl.u1_i if how == "slot" else slot1.c)
                    if i in plan.tbase:
                        m.d.comb += [tbase.eq(int(plan.tbase[i][p])), slot1.eq(slot_r.data)]
                    else:
                        ly, lx = lp.ry.bit_length() - 1, lp.rx.bit_length() - 1
                        m.d.comb += [gbase.eq(int(plan.gbase[i][p])), slot1.keep.eq(1), slot1.c.eq(grp_data.c),
                                     slot1.y.eq((ctrl.u1_qy << ly) | grp_data.py[:ly]),
                                     slot1.x.eq((ctrl.u1_qx << lx) | grp_data.px[:lx])]
        m.d.comb += [slot_r.addr.eq(tbase + ctrl.upd_i), grp_r.addr.eq(gbase + ctrl.rank)]
        u1_v, u2_v = Signal(), Signal()
        u2_addr, u2_slot = Signal.like(upd_mem_addr), Signal(plan.slot)
        m.d.sync += u1_v.eq(active)
        m.d.comb += self.updating.eq(u1_v)
        # U1: slot word -> parameter read; membrane read of the same slot
        m.d.comb += [par_r.addr.eq(pbase + pidx), upd_mem_addr.eq(sbase + ctrl.u1_i)]
        m.d.sync += [u2_v.eq(u1_v), u2_addr.eq(sbase + ctrl.u1_i), u2_slot.eq(slot1)]
        # U2: the update (one unit per distinct neuron configuration)
        spike, u_next = Signal(name="fire"), Signal(signed(plan.acc_bits))
        units = []
        for ci, n in enumerate(plan.configs):
            u = NeuronUpdate(n, plan.acc_bits)
            m.submodules[f"update{ci}"] = u
            units.append(u)
            m.d.comb += [u.u.eq(mem_r_data), u.threshold.eq(par_data.thr), u.bias.eq(par_data.bias),
                         u.keep.eq(u2_slot.keep), u.last.eq(ctrl.last_t)]
        with m.Switch(ctrl.layer):
            for i in plan.neuron_layers:
                with m.Case(i):
                    u = units[plan.config_of[i]]
                    m.d.comb += [spike.eq(u.spike), u_next.eq(u.u_next)]
        m.d.comb += self.neuron.eq(Cat(u2_slot.c, u2_slot.y, u2_slot.x))
        with m.If(u2_v):
            m.d.comb += [mem_w_addr.eq(u2_addr), mem_w_data.eq(u_next), mem_w_en.eq(1),
                         self.update.eq(1), self.spike.eq(spike)]
            with m.If(spike | C(int(plan.dense), 1)):
                m.d.comb += [spk_w.addr.eq(self.spk_count), spk_w.data.eq(Cat(spike, u2_slot.c, u2_slot.y, u2_slot.x)),
                             spk_w.en.eq(1)]
                m.d.sync += self.spk_count.eq(self.spk_count + 1)


class PEArray(wiring.Component):
    """The ``plan.P`` PEs, the update pipeline's shared counters and the class scores (readout
    class k is PE ``k mod P``'s slot ``k div P``)."""

    def __init__(self, plan: LanePlan):
        self.plan = plan
        P, QD = plan.P, plan.queue_depth
        super().__init__({
            "layer": In(range(max(2, len(plan.graph.layers)))),
            "last_t": In(1),
            "acc_run": In(1),
            "upd_start": In(1),          # the update phase starts: counters to slot 0
            "upd_run": In(1),
            "upd_last": Out(1),          # the update counter is at the layer's last slot
            "spk_clear": In(1),
            "clear_scores": In(1),
            "events": In(stream.Signature(plan.entry)).array(P),
            "idle": Out(1),              # every PE idle
            "spk_addr": In(range(max(2, QD))),
            "spk_data": Out(plan.queue).array(P),
            "spk_count": Out(range(QD + 1)).array(P),
            "score_index": In(range(max(2, plan.classes))),
            "score": Out(signed(plan.score_bits)),
            "spikes": Out(P),            # PE p spiked this cycle (the trace port's valid bits)
            "neurons": Out(data.ArrayLayout(plan.ev_xyz, P)),
            # this cycle's increments of the counters the PEs drive
            "weight_reads": Out(range(P + 1)),
            "accumulates": Out(range(P + 1)),
            "membrane_accesses": Out(range(2 * P + 1)),      # reads; as many writes
            "neuron_updates": Out(range(P + 1)),
            "spike_count": Out(range(P + 1)),
            **({"load": In(stream.Signature(plan.load_layout, always_ready=True))} if plan.runtime else {}),
        })

    def elaborate(self, platform):
        m = Module()
        plan, g, P = self.plan, self.plan.graph, self.plan.P
        lps = plan.prog.layers
        K = plan.classes
        ctrl = Signal(control_layout(plan))
        L = len(g.layers)
        m.d.comb += [ctrl.layer.eq(self.layer), ctrl.last_t.eq(self.last_t), ctrl.acc_run.eq(self.acc_run),
                     ctrl.upd_run.eq(self.upd_run), ctrl.spk_clear.eq(self.spk_clear),
                     ctrl.is_conv.eq(Array(C(int(l.kind == "conv"), 1) for l in g.layers)[self.layer]),
                     ctrl.regular.eq(Array(C(int(i in plan.regular), 1) for i in range(L))[self.layer]),
                     ctrl.wide.eq(Array(C(int(i in plan.wide), 1) for i in range(L))[self.layer])]
        # the update counter (slot upd_i of every PE enters U1) and, for regular layers, the
        # (rank, y div ry, x div rx) of slot upd_i, the same on every PE (counters instead of
        # a stored slot table)
        # (ctrl is driven combinationally: its registered fields are registers of their own)
        upd_i, q_rank = Signal.like(ctrl.upd_i, name="upd_i"), Signal.like(ctrl.rank, name="upd_rank")
        q_y, q_x = Signal.like(ctrl.u1_qy, name="upd_qy"), Signal.like(ctrl.u1_qx, name="upd_qx")
        u1_i, u1_rank = Signal.like(ctrl.u1_i, name="u1_i"), Signal.like(ctrl.u1_rank, name="u1_rank")
        u1_qy, u1_qx = Signal.like(ctrl.u1_qy, name="u1_qy"), Signal.like(ctrl.u1_qx, name="u1_qx")
        m.d.comb += [ctrl.upd_i.eq(upd_i), ctrl.rank.eq(q_rank), ctrl.u1_i.eq(u1_i), ctrl.u1_rank.eq(u1_rank),
                     ctrl.u1_qy.eq(u1_qy), ctrl.u1_qx.eq(u1_qx)]
        m.d.sync += [u1_i.eq(upd_i), u1_qy.eq(q_y), u1_qx.eq(q_x), u1_rank.eq(q_rank)]
        with m.If(self.upd_start):
            m.d.sync += [upd_i.eq(0), q_rank.eq(0), q_y.eq(0), q_x.eq(0)]
        with m.Elif(self.upd_run):
            m.d.sync += upd_i.eq(upd_i + 1)
            with m.Switch(self.layer):
                for i in plan.regular:
                    lp = lps[i]
                    with m.Case(i):
                        with m.If(q_x == lp.gw - 1):
                            m.d.sync += q_x.eq(0)
                            with m.If(q_y == lp.gs // lp.gw - 1):
                                m.d.sync += [q_y.eq(0), q_rank.eq(q_rank + 1)]
                            with m.Else():
                                m.d.sync += q_y.eq(q_y + 1)
                        with m.Else():
                            m.d.sync += q_x.eq(q_x + 1)
        with m.Switch(self.layer):
            for i in plan.neuron_layers:
                if plan.update_cycles[i]:
                    with m.Case(i):
                        m.d.comb += self.upd_last.eq(upd_i == plan.update_cycles[i] - 1)

        pes = [LanePE(plan, p) for p in range(P)]
        for p, pe in enumerate(pes):
            m.submodules[f"pe{p}"] = pe
            wiring.connect(m, wiring.flipped(self.events[p]), pe.events)
            if plan.runtime:
                m.d.comb += [pe.load.valid.eq(self.load.valid), pe.load.payload.eq(self.load.payload)]
            m.d.comb += [pe.ctrl.eq(ctrl), pe.spk_addr.eq(self.spk_addr),
                         self.spk_data[p].eq(pe.spk_data), self.spk_count[p].eq(pe.spk_count),
                         self.spikes[p].eq(pe.spike), self.neurons[p].eq(pe.neuron)]
        m.d.comb += [ctrl.upd_read.eq(self.upd_run | Cat(pe.updating for pe in pes).any()),
                     self.idle.eq(Cat(pe.idle for pe in pes).all())]

        # the class scores: readout lanes of PE k mod P, slot k div P
        scores = [Signal(signed(plan.score_bits), name=f"score{k}") for k in range(K)]
        out = self.layer == plan.out_layer
        for k in range(K):
            a3 = pes[k % P].acc
            with m.If(self.clear_scores):
                m.d.sync += scores[k].eq(0)
            with m.Elif(a3.valid & out & (a3.slot == k // P)):
                m.d.sync += scores[k].eq(scores[k] + a3.delta)
        m.d.comb += self.score.eq(Array(scores)[self.score_index])

        hits = [pe.acc.valid for pe in pes]
        n_hits, n_upd = sum(hits), sum(pe.update for pe in pes)
        m.d.comb += [self.weight_reads.eq(sum(pe.weight_read for pe in pes)),
                     self.accumulates.eq(n_hits),
                     self.membrane_accesses.eq(Mux(out, 0, n_hits) + n_upd),
                     self.neuron_updates.eq(n_upd),
                     self.spike_count.eq(sum(pe.spike for pe in pes))]
        return m
