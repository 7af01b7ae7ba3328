"""Each block of the lane accelerator (`rtl/lane/`) alone in Amaranth simulation, against a
small Python reference model of what it must do, cycle by cycle where the cycle matters
(the pattern of Amaranth's own ``tests/test_lib_fifo.py``).  The whole accelerator against
the golden interpreter and the cycle model is `test_rtl_accel.py`."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from ticketforge.ir import random_images, run
from ticketforge.ir.random import random_graph
from ticketforge.rtl.cycles import ACC_DRAIN, COUNTERS, POOL_DRAIN, UPD_DRAIN
from ticketforge.rtl.aer import aer_words
from ticketforge.rtl.lane.loader import EventLoader, PixelLoader
from ticketforge.rtl.lane.pe import PEArray
from ticketforge.rtl.lane.plan import lane_plan, pack
from ticketforge.rtl.lane.pool import OrPool
from ticketforge.rtl.lane.reader import EventReader
from ticketforge.rtl.lane.schedule import Schedule
from ticketforge.rtl.lane.status import StatusBlock


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _unpack(layout, word: int) -> dict:
    out = {}
    for name, f in layout:
        v = word >> f.offset & ((1 << f.width) - 1)
        if getattr(f.shape, "signed", False) and f.width and v >> (f.width - 1):
            v -= 1 << f.width
        out[name] = v
    return out


def _entries(plan, i: int, events: list[tuple]) -> list[list[tuple]]:
    """Reference: what the reader hands PE p for each event (value, c, y, x) of weighted layer
    i's source: the event, the source's first word row, and PE p's word count.  The source
    index is program.py's numbering: a conv's (channel, position class), a linear layer's
    input index."""
    l, lp = plan.graph.layers[i], plan.prog.layers[i]
    out = [[] for _ in range(plan.P)]
    for value, c, y, x in events:
        if l.kind == "conv":
            my, mx = lp.class_shape
            s = (c * my + y % my) * mx + x % mx
        else:
            sh = plan.src_shape[i]
            hh, ww = (sh[1], sh[2]) if len(sh) == 3 else (1, 1)
            s = (c * hh + y) * ww + x
        start = plan.rbase[i] + int(lp.word_ptr[s, 0])
        for p in range(plan.P):
            out[p].append((value, c, y, x, start, int(lp.word_counts[s, p])))
    return out


def _entry_word(plan, e: tuple) -> int:
    value, c, y, x, start, count = e
    ev = pack(plan.ev, value=value, c=c, y=y, x=x)
    return ev | start << plan.entry["start"].offset | count << plan.entry["count"].offset


# ---------------------------------------------------------------- status block
class StatusModel:
    def __init__(self, counted: list[int]):
        self.counted = counted
        self.cycles = self.last = self.data = self.addr = 0
        self.counters = {i: [0] * len(COUNTERS) for i in counted}

    def words(self):
        return [self.last] + [v for i in self.counted for v in self.counters[i]]

    def step(self, layer, busy, clear, latch, inc, addr):
        data = self.data if busy else self.words()[self.addr]
        last = self.cycles + 1 if latch else self.last
        cycles = self.cycles + 1 if busy else self.cycles
        if busy and layer in self.counters:
            self.counters[layer] = [(v + d) % 2 ** 32 for v, d in zip(self.counters[layer], inc)]
        if clear:
            cycles = 0
            self.counters = {i: [0] * len(COUNTERS) for i in self.counted}
        self.cycles, self.last, self.data, self.addr = cycles, last, data, addr


def test_status_block_equals_its_model():
    rng = np.random.default_rng(0)
    counted = [0, 1, 3, 4]
    dut = StatusBlock(5, counted, 5)
    model = StatusModel(counted)

    async def bench(ctx):
        for _ in range(600):
            layer, busy = int(rng.integers(0, 5)), bool(rng.random() < 0.7)
            clear, latch = bool(rng.random() < 0.03), bool(rng.random() < 0.05)
            inc = [int(v) for v in rng.integers(0, 32, len(COUNTERS)) * (rng.random(len(COUNTERS)) < 0.5)]
            addr = int(rng.integers(0, dut.words))
            for name, v in (("layer", layer), ("busy", busy), ("clear", clear), ("latch", latch),
                            ("status_addr", addr)):
                ctx.set(getattr(dut, name), int(v))
            for j, v in enumerate(inc):
                ctx.set(dut.increments[j], v)
            await ctx.tick()
            model.step(layer, busy, clear, latch, inc, addr)
            assert ctx.get(dut.status_data) == model.data

    _simulate(dut, bench)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_status_block_parameters_are_checked():
    with pytest.raises(ValueError, match=r"counted must be distinct layer indices in \[0, 3\).*\[0, 5\]"):
        StatusBlock(3, [0, 5], 4)
    with pytest.raises(ValueError, match="increment_bits must be an integer >= 1, got 0"):
        StatusBlock(3, [0], 0)


# ---------------------------------------------------------------- loaders
async def _load(ctx, dut, port, payload, words: list[int], rng, n_expected: int) -> list[int]:
    """Clear, then offer ``words`` on ``port`` at random valid cycles; check that ready
    drops after the last one is taken and ``loaded`` comes the cycle after; return the
    queue's ``n_expected`` words (its count checked)."""
    ctx.set(dut.clear, 1)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    ctx.set(dut.active, 1)
    k, taken_at, loaded_at = 0, [], []
    for cycle in range(4 * len(words) + 10):
        valid = k < len(words) and rng.random() < 0.7
        ctx.set(port.valid, int(valid))
        ctx.set(payload, words[k] if k < len(words) else 0)
        if ctx.get(dut.loaded):
            loaded_at.append(cycle)
        if valid and ctx.get(port.ready):
            taken_at.append(cycle)
            k += 1
        await ctx.tick()
    assert len(taken_at) == len(words)             # ready drops after the last word
    assert loaded_at == [taken_at[-1] + 1]         # written the cycle after it is taken
    ctx.set(dut.active, 0)
    assert ctx.get(dut.count) == n_expected
    got = []
    for a in range(n_expected):
        ctx.set(dut.addr, a)
        await ctx.tick()
        got.append(ctx.get(dut.data.as_value()))
    return got


@pytest.mark.parametrize("seed,dense", [(11, False), (3, False), (4, True)])
def test_loader_queues_the_pixel_events_of_an_image(seed, dense):
    g = random_graph(seed, binary=True)
    plan = lane_plan(g, 2, dense=dense)
    dut = PixelLoader(plan)
    img = random_images(g, 1, seed)[0]
    c, h, w = img.shape
    expected = [pack(plan.in_ev, value=int(img[ci, y, x]), c=ci, y=y, x=x)
                for ci in range(c) for y in range(h) for x in range(w) if dense or img[ci, y, x]]
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        words = [int(v) for v in img.reshape(-1)]
        assert await _load(ctx, dut, dut.pixels, dut.pixels.payload, words, rng, len(expected)) == expected

    _simulate(dut, bench)


@pytest.mark.parametrize("seed", [1100, 1103])
def test_event_loader_queues_each_timesteps_aer_events(seed):
    """Each timestep: its AER words at random valid cycles; the events (value 1) in the queue
    in arrival order, ``ready`` low from the step word on, ``loaded`` the cycle after it is
    taken; ``clear`` empties the queue for the next timestep."""
    g = random_graph(seed, binary=True, events=True)
    plan = lane_plan(g, 2)
    dut = EventLoader(plan)
    frames = random_images(g, 1, seed)[0]
    frames[1] = 0                                               # a timestep without events
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        for frame in frames:
            c, y, x = np.nonzero(frame)
            expected = [pack(plan.in_ev, value=1, c=int(a), y=int(b), x=int(d)) for a, b, d in zip(c, y, x)]
            got = await _load(ctx, dut, dut.aer, dut.aer.payload.as_value(), aer_words(frame[None]), rng,
                              len(expected))
            assert got == expected

    _simulate(dut, bench)


# ---------------------------------------------------------------- event reader
def _reader_case(seed: int, P: int, want: str):
    """A random graph, its first weighted layer whose source is ``want``, and source events."""
    g = random_graph(seed, binary=True)
    plan = lane_plan(g, P, fifo_depth=5)
    i = next(i for i in plan.weighted if plan.source[i][0] == want)
    return plan, i


@pytest.mark.parametrize("seed,P,source", [(11, 3, "input"), (1, 4, "spk"), (18, 2, "spk"), (7, 1, "spk"),
                                           (4, 3, "pool"), (19, 4, "pool")])
def test_reader_hands_every_pe_its_entries_in_queue_order(seed, P, source):
    """The source queues are Python memories (one cycle read latency); each PE takes its FIFO
    at random moments, so the FIFOs fill up and the credit must hold the reader back."""
    plan, i = _reader_case(seed, P, source)
    rng = np.random.default_rng(seed)
    shape = plan.src_shape[i] if len(plan.src_shape[i]) == 3 else (plan.src_shape[i][0], 1, 1)
    positions = [(c, y, x) for c in range(shape[0]) for y in range(shape[1]) for x in range(shape[2])]
    if source == "input":
        vals = rng.integers(1, 256, len(positions))
        events = [(int(v), *pos) for v, pos in zip(vals, positions) if rng.random() < 0.5]
        in_words = [pack(plan.in_ev, value=v, c=c, y=y, x=x) for v, c, y, x in events]
        queues = [[] for _ in range(P)]
        pool_words = []
    else:
        picks = [pos for pos in positions if rng.random() < 0.4]
        if source == "spk":                      # each PE's queue holds some of them; some queues empty
            owner = rng.integers(0, P, len(picks))
            if P > 1:
                owner[owner == P - 1] = 0
            queues = [[(1, *pos) for pos, o in zip(picks, owner) if o == p] for p in range(P)]
            events = [e for q in queues for e in q]
            pool_words = []
        else:
            queues = [[] for _ in range(P)]
            events = [(1, *pos) for pos in picks]
            pool_words = [pack(plan.queue, value=1, c=c, y=y, x=x) for _, c, y, x in events]
        in_words = []
    spk_words = [[pack(plan.queue, value=1, c=c, y=y, x=x) for _, c, y, x in q] for q in queues]
    expected = _entries(plan, i, events)
    dut = EventReader(plan)

    async def bench(ctx):
        ctx.set(dut.layer, i)
        ctx.set(dut.in_count, len(in_words))
        ctx.set(dut.pool_count, len(pool_words))
        for p in range(P):
            ctx.set(dut.spk_count[p], len(spk_words[p]))
        ctx.set(dut.start, 1)
        addr = ctx.get(dut.addr)
        await ctx.tick()
        ctx.set(dut.start, 0)
        got, read_back, quiet = [[] for _ in range(P)], [], 0
        for _ in range(20 * (len(events) + 4) * max(1, P)):
            for name, words in (("in_data", in_words), ("pool_data", pool_words)):
                ctx.set(getattr(dut, name).as_value(), words[addr] if addr < len(words) else 0)
            for p in range(P):
                ctx.set(dut.spk_data[p].as_value(), spk_words[p][addr] if addr < len(spk_words[p]) else 0)
                ctx.set(dut.events[p].ready, int(rng.random() < 0.3))
            addr = ctx.get(dut.addr)
            for p in range(P):
                if ctx.get(dut.events[p].valid) and ctx.get(dut.events[p].ready):
                    got[p].append(ctx.get(dut.events[p].payload.as_value()))
            if ctx.get(dut.read_back.valid):
                read_back.append(ctx.get(dut.read_back.payload.as_value()))
            idle = ctx.get(dut.idle) and not any(ctx.get(dut.events[p].valid) for p in range(P))
            quiet = quiet + 1 if idle else 0
            if quiet > 3:
                break
            await ctx.tick()
        assert got == [[_entry_word(plan, e) for e in expected[p]] for p in range(P)]
        if source == "pool":
            assert read_back == [pack(plan.ev_xyz, c=c, y=y, x=x) for _, c, y, x in events]
        else:
            assert read_back == []

    assert events, "the case has events"
    _simulate(dut, bench)


# ---------------------------------------------------------------- OR-pool
class PoolModel:
    """The pooled queue: the first spike of each window, in arrival order (dense: every window,
    in C-H-W order, valued by whether any spike arrived)."""

    def __init__(self, k: int, out_shape):
        self.k, self.shape = k, out_shape
        self.bits, self.queue = set(), []

    def take(self, value, c, y, x, dense):
        py, px = y // self.k, x // self.k
        if py >= self.shape[1] or px >= self.shape[2]:
            return
        if dense:
            if value:
                self.bits.add((c, py, px))
        elif (c, py, px) not in self.bits:
            self.bits.add((c, py, px))
            self.queue.append((1, c, py, px))

    def sweep(self):
        C, H, W = self.shape
        self.queue = [(int((c, y, x) in self.bits), c, y, x) for c in range(C) for y in range(H) for x in range(W)]
        self.bits = set()


@pytest.mark.parametrize("seed,dense", [(4, False), (19, False), (4, True), (12, True)])
def test_pool_or_merges_the_spikes_of_its_windows(seed, dense):
    g = random_graph(seed, binary=True)
    plan = lane_plan(g, 2, dense=dense)
    i = plan.pool_layers[0]
    l = g.layers[i]
    rng = np.random.default_rng(seed)
    cin, hin, win = l.in_shape
    events = [(int(rng.random() < 0.6) if dense else 1, int(rng.integers(0, cin)), int(rng.integers(0, hin)),
               int(rng.integers(0, win))) for _ in range(40)]
    model = PoolModel(l.kernel, l.out_shape)
    dut = OrPool(plan)
    consumer = next(j for j in plan.weighted if plan.source[j] == ("pool", i))

    async def read_queue(ctx, n):
        out = []
        for a in range(n):
            ctx.set(dut.addr, a)
            await ctx.tick()
            out.append(tuple(_unpack(plan.queue, ctx.get(dut.data.as_value())).values()))
        return out

    async def feed(ctx, evs):
        ctx.set(dut.layer, i)
        ctx.set(dut.enter, 1)
        await ctx.tick()
        ctx.set(dut.enter, 0)
        ctx.set(dut.run, 1)
        k, pushed = 0, 0
        while k < len(evs):
            valid = rng.random() < 0.7
            ctx.set(dut.events.valid, int(valid))
            v, c, y, x = evs[k]
            ctx.set(dut.events.payload.as_value(), pack(plan.ev, value=v, c=c, y=y, x=x))
            if valid:
                model.take(v, c, y, x, dense)
                k += 1
            pushed += ctx.get(dut.pushed)
            await ctx.tick()
        ctx.set(dut.events.valid, 0)
        ctx.set(dut.run, 0)
        for _ in range(POOL_DRAIN + 1):
            pushed += ctx.get(dut.pushed)
            await ctx.tick()
        return pushed

    async def bench(ctx):
        pushed = await feed(ctx, events)
        if dense:
            ctx.set(dut.sweep_start, 1)
            await ctx.tick()
            ctx.set(dut.sweep_start, 0)
            ctx.set(dut.sweep, 1)
            positions = int(np.prod(l.out_shape))
            for n in range(positions):
                assert ctx.get(dut.sweep_last) == (n == positions - 1)
                pushed += ctx.get(dut.pushed)
                await ctx.tick()
            ctx.set(dut.sweep, 0)
            pushed += ctx.get(dut.pushed)            # the last position is queued in the drain cycle
            await ctx.tick()
            model.sweep()
            assert pushed == sum(v for v, *_ in model.queue)
        else:
            assert pushed == len(model.queue)
        assert ctx.get(dut.count) == len(model.queue)
        assert await read_queue(ctx, len(model.queue)) == model.queue
        if not dense:
            # the consumer reads the first half back: their bits clear, so the same spikes
            # queue those windows again (and only those)
            back = model.queue[: len(model.queue) // 2]
            ctx.set(dut.layer, consumer)
            for _, c, y, x in back:
                ctx.set(dut.read_back.valid, 1)
                ctx.set(dut.read_back.payload.as_value(), pack(plan.ev_xyz, c=c, y=y, x=x))
                await ctx.tick()
            ctx.set(dut.read_back.valid, 0)
            for _, c, y, x in back:
                model.bits.discard((c, y, x))
            model.queue = []
            await feed(ctx, events)
            assert model.queue == [(1, c, y, x) for _, c, y, x in back]
            assert await read_queue(ctx, len(model.queue)) == model.queue

    _simulate(dut, bench)


# ---------------------------------------------------------------- PE array
@pytest.mark.parametrize("seed,P,dense", [(3, 4, False), (11, 3, False), (1, 4, False), (13, 2, False),
                                          (4, 16, False), (5, 3, True)])
def test_pe_array_computes_the_first_layer_of_an_image(seed, P, dense):
    """The reference is the golden interpreter: one timestep of the first weighted layer, its
    events handed to the PEs as the reader would (in a random rhythm), then the update
    phase; the spikes in the PEs' queues are the golden model's spikes at t = 0."""
    g = random_graph(seed, binary=True)
    plan = lane_plan(g, P, dense=dense)
    i = plan.weighted[0]
    l = g.layers[i]
    assert l.kind in ("conv", "linear")
    img = random_images(g, 1, seed)[0]
    c, h, w = img.shape
    events = [(int(img[ci, y, x]), ci, y, x) for ci in range(c) for y in range(h) for x in range(w)
              if dense or img[ci, y, x]]
    entries = _entries(plan, i, events)
    gold = run(g, img[None], trace=True).spikes[l.name][0, 0]        # [out...] at t = 0
    want = sorted(tuple(int(v) for v in np.unravel_index(k, gold.shape)) for k in np.flatnonzero(gold))
    want = [pos + (0,) * (3 - len(pos)) for pos in want]
    rng = np.random.default_rng(seed)
    dut = PEArray(plan)

    async def bench(ctx):
        ctx.set(dut.layer, i)
        ctx.set(dut.last_t, int(g.T == 1))
        ctx.set(dut.acc_run, 1)
        nxt = [0] * P
        counts = dict.fromkeys(("weight_reads", "accumulates", "membrane_accesses", "neuron_updates",
                                "spike_count"), 0)
        for _ in range(20 * sum(len(e) for e in entries) + 50):
            for p in range(P):
                have = nxt[p] < len(entries[p]) and rng.random() < 0.8
                ctx.set(dut.events[p].valid, int(have))
                ctx.set(dut.events[p].payload.as_value(), _entry_word(plan, entries[p][nxt[p]]) if have else 0)
            for name in counts:
                counts[name] += ctx.get(getattr(dut, name))
            for p in range(P):
                if ctx.get(dut.events[p].valid) and ctx.get(dut.events[p].ready):
                    nxt[p] += 1
            done = all(n == len(e) for n, e in zip(nxt, entries)) and ctx.get(dut.idle)
            await ctx.tick()
            if done:
                break
        assert all(n == len(e) for n, e in zip(nxt, entries))
        ctx.set(dut.acc_run, 0)
        for p in range(P):
            ctx.set(dut.events[p].valid, 0)
        for _ in range(ACC_DRAIN):
            for name in counts:
                counts[name] += ctx.get(getattr(dut, name))
            await ctx.tick()
        ctx.set(dut.spk_clear, 1)
        ctx.set(dut.upd_start, 1)
        await ctx.tick()
        ctx.set(dut.spk_clear, 0)
        ctx.set(dut.upd_start, 0)
        ctx.set(dut.upd_run, 1)
        cycles = 0
        while True:
            last = ctx.get(dut.upd_last)
            for name in counts:
                counts[name] += ctx.get(getattr(dut, name))
            await ctx.tick()
            cycles += 1
            if last:
                break
        assert cycles == plan.update_cycles[i]
        ctx.set(dut.upd_run, 0)
        for _ in range(UPD_DRAIN + 1):
            for name in counts:
                counts[name] += ctx.get(getattr(dut, name))
            await ctx.tick()
        got = []
        for p in range(P):
            n = ctx.get(dut.spk_count[p])
            for a in range(n):
                ctx.set(dut.spk_addr, a)
                await ctx.tick()
                q = _unpack(plan.queue, ctx.get(dut.spk_data[p].as_value()))
                if q["value"]:
                    got.append((q["c"], q["y"], q["x"]))
        assert sorted(got) == want
        live = int(sum(lp_n for lp_n in plan.prog.layers[i].n_slots))
        assert counts["neuron_updates"] == live and counts["spike_count"] == len(want)
        assert counts["membrane_accesses"] == counts["accumulates"] + live

    _simulate(dut, bench)


# ---------------------------------------------------------------- schedule
class ScheduleModel:
    """The expected outputs of every cycle of one image, given how long the environment takes
    for each phase (``durations``: drawn in the order the phases come)."""

    def __init__(self, plan, durations):
        self.plan, self.d = plan, iter(durations)

    def trace(self):
        plan, g = self.plan, self.plan.graph
        out = []

        def emit(n, layer, t, **flags):
            for _ in range(n):
                out.append((layer, t, tuple(sorted(k for k, v in flags.items() if v))))

        emit(1, 0, 0)                                          # the start, registered
        for t in range(g.T):
            # the input: once per image, or an event input's words at every timestep (its
            # later LOADs keep the last layer's index until the first layer is entered)
            if t == 0 or g.input.events:
                emit(next(self.d), 0 if t == 0 else plan.order[-1], t, busy=1, load=1)
            for i in plan.order:
                l, upd = g.layers[i], plan.update_cycles.get(i, 0)
                if l.kind == "pool":
                    emit(1, i, t, busy=1, reader_start=1)
                    emit(next(self.d), i, t, busy=1, pool_run=1)
                    emit(POOL_DRAIN, i, t, busy=1)
                    if plan.dense:
                        emit(int(np.prod(l.out_shape)), i, t, busy=1, sweep_run=1)
                        emit(1, i, t, busy=1)
                    continue
                emit(1, i, t, busy=1, reader_start=1)
                emit(next(self.d), i, t, busy=1, acc_run=1)
                emit(ACC_DRAIN, i, t, busy=1)
                if l.kind != "output" and upd:
                    emit(upd, i, t, busy=1, upd_run=1)
                    emit(UPD_DRAIN, i, t, busy=1)
            emit(1, plan.order[-1], t, busy=1)                 # NEXT_T
        emit(plan.classes, plan.order[-1], g.T - 1, busy=1, scores_valid=1)
        emit(1, plan.order[-1], g.T - 1, busy=1)               # the last score was taken
        emit(1, plan.order[-1], g.T - 1, done=1)
        return out


@pytest.mark.parametrize("seed,dense,events", [(4, False, False), (19, True, False), (0, False, False),
                                               (12, False, False), (1101, False, True), (1104, False, True)])
def test_schedule_steps_through_the_phases_of_an_image(seed, dense, events):
    g = random_graph(seed, binary=True, events=events)
    plan = lane_plan(g, 2, dense=dense)
    rng = np.random.default_rng(seed)
    durations = [int(v) for v in rng.integers(1, 6, 200)]
    expected = ScheduleModel(plan, durations).trace()
    flags = ("acc_run", "busy", "done", "load", "pool_run", "reader_start", "scores_valid", "sweep_run", "upd_run")
    dut = Schedule(plan)

    async def bench(ctx):
        ctx.set(dut.scores_ready, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        d = iter(durations)
        phase, left, upd_i, sweep_n = None, 0, 0, 0
        got = []
        for _ in range(len(expected)):
            # the environment: each run phase ends after its drawn duration
            now = {f: ctx.get(getattr(dut, f)) for f in flags}
            key = "load" if now["load"] else "acc_run" if now["acc_run"] else "pool_run" if now["pool_run"] else None
            if key and key != phase:
                phase, left = key, next(d)
            elif not key:
                phase = None
            left -= bool(key)
            ctx.set(dut.loaded, int(key == "load" and left == 0))
            ctx.set(dut.reader_idle, int(key in ("acc_run", "pool_run") and left == 0))
            ctx.set(dut.pe_idle, int(key == "acc_run" and left == 0))
            ctx.set(dut.head_level, 0)
            layer = ctx.get(dut.layer)
            ctx.set(dut.upd_last, int(now["upd_run"] and upd_i == plan.update_cycles.get(layer, 0) - 1))
            ctx.set(dut.sweep_last, int(now["sweep_run"] and sweep_n == int(np.prod(g.layers[layer].out_shape)) - 1))
            got.append((layer, ctx.get(dut.t), tuple(f for f in flags if now[f])))
            await ctx.tick()
            upd_i = upd_i + 1 if now["upd_run"] else 0
            sweep_n = sweep_n + 1 if now["sweep_run"] else 0
        # the layer and t outputs matter only while busy (IDLE and DONE keep the last ones)
        trim = [(lay, t, f) if "busy" in f else (None, None, f) for lay, t, f in got]
        want = [(lay, t, f) if "busy" in f else (None, None, f) for lay, t, f in expected]
        assert trim == want

    _simulate(dut, bench)
