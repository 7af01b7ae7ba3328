"""The accelerator on a real board: a UART host link around the verified core.

A board has a few dozen pins (the icebreaker's UP5K 39), the core's ports need ~60, so the
design that is placed, routed and turned into a bitstream wraps the core in a serial link:

- the host identifies the board's design (``?``), then sends images (``I`` and ``C*H*W``
  bytes, 8N1, ``baud``), each buffered on chip; then the core runs on it at full speed;
- the board answers with each class score as 2 bytes (little endian, two's complement),
  then the image's cycle count from the status block (4 bytes, little endian), framed with
  a marker and a checksum: `protocol.py`.

The UART is written here because the Amaranth project's serial cores (amaranth-stdio)
are not released on PyPI (its name there holds an empty placeholder), and it is ~60 lines.

``core`` is either an :class:`~ticketforge.rtl.accel.Accelerator` (Amaranth simulation of
the whole board, in the tests) or :class:`CoreInstance`, the generated ``ticketforge_top``
as a black box (synthesis reads ``core.il`` + ``synth_top.v`` of the rtl stage: the
netlist that reaches the board is the one the regression verified).
"""
from __future__ import annotations

from amaranth import Array, Cat, ClockSignal, Elaboratable, Instance, Module, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ticketforge.deploy import protocol
from ticketforge.errors import UnsupportedError

__all__ = ["UartRx", "UartTx", "CoreInstance", "BoardTop"]


class UartRx(wiring.Component):
    """8N1 receiver; ``data`` has no back-pressure (a byte not taken is lost, by design
    of the link: the host sends one image and then waits for the answer)."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"UART divisor must be >= 4 clock cycles per bit, not {divisor}")
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8, always_ready=True))})

    def elaborate(self, platform):
        m = Module()
        sync0, sync1 = Signal(init=1), Signal(init=1)       # two flip-flops: rx is asynchronous
        m.d.sync += [sync0.eq(self.rx), sync1.eq(sync0)]
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits, shreg = Signal(range(9)), Signal(8)
        m.d.sync += self.data.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~sync1):                         # start bit: sample mid-bit from here on
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bits.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bits == 8):                    # stop bit
                    with m.If(sync1):
                        m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [shreg.eq((sync1 << 7) | (shreg >> 1)), bits.eq(bits + 1),
                                 timer.eq(self.divisor - 1)]
        return m


class UartTx(wiring.Component):
    """8N1 transmitter with a valid/ready byte stream."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"UART divisor must be >= 4 clock cycles per bit, not {divisor}")
        self.divisor = divisor
        super().__init__({"tx": Out(1, init=1), "data": In(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits, shreg = Signal(range(11)), Signal(10, init=0x3FF)
        m.d.comb += [self.tx.eq(shreg[0]), self.data.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.data.valid):                    # stop, data LSB first, start
                m.d.sync += [shreg.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1), timer.eq(self.divisor - 1)]
        return m


class CoreInstance(Elaboratable):
    """The generated ``ticketforge_top`` (without its debug port) as a black box, with the
    attributes BoardTop drives; ``ports`` is ``interface.json``'s port list."""

    def __init__(self, interface: dict, top: str = "ticketforge_top"):
        self.top = top
        self.rst = Signal()             # driven by the board's power-on reset
        self._ports = {}

        def walk(member):
            if member.get("type") == "port":
                if not member["name"].startswith("trace_"):
                    shape = signed(member["width"]) if member["signed"] else member["width"]
                    self._ports[member["name"]] = (member["dir"], Signal(shape, name=member["name"]))
            for sub in member.get("members", {}).values():
                walk(sub)
        walk(interface["interface"])
        for name, (_, sig) in self._ports.items():
            setattr(self, name, sig)

    def elaborate(self, platform):
        m = Module()
        kwargs = {("i_" if d == "in" else "o_") + n: s for n, (d, s) in self._ports.items()}
        m.submodules.core = Instance(self.top, i_clk=ClockSignal(), i_rst=self.rst, **kwargs)
        return m


def _port(core, name):
    """``pixels.payload`` of an Accelerator, ``pixels__payload`` of a CoreInstance."""
    if isinstance(core, CoreInstance):
        return getattr(core, name.replace(".", "__"))
    obj = core
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


class BoardTop(Elaboratable):
    """UART link + core, speaking `protocol.py`: ``pixels`` bytes per image, ``classes``
    scores per image, ``design_id`` (`rtl.emit.design_id_of` the core's RTLIL) in the
    identity answer.

    The image is buffered on chip (one block RAM for 28x28) and streamed into the core at
    one pixel per cycle, and the scores are captured at full rate and sent afterwards, so
    the cycle count the board returns is the core's own, the one the cycle model predicts,
    not the UART's (10^3 times slower than the pixel port).  An image whose bytes stop for
    ``byte_timeout_cycles`` (default: 50 ms at ``clk_hz``, at least 40 byte times) before
    the last one is dropped with an ``ERR_INCOMPLETE`` answer.

    ``aer``: a core whose input is events (the ``aer`` stream of `rtl/aer.py`) takes the
    protocol's ``A`` command instead of ``I``: the rtl manifest's ``aer`` entry gives the
    buffer's depth in words (``capacity``: `protocol.aer_capacity`) and the word's width.
    The sample's words are buffered in the same way and fed to the core, which takes each
    timestep's words at one per cycle and drops ``ready`` while its layers run."""

    def __init__(self, core, pixels: int, classes: int, clk_hz: float, design_id: int, baud: int = 115200,
                 uart=None, pll=None, byte_timeout_cycles: int | None = None, load: dict | None = None,
                 aer: dict | None = None):
        """``pll``: a `deploy.pll.PllSetting`; the core then runs at its output frequency
        (which ``clk_hz`` must be) instead of the board's oscillator.  ``load``: for a core
        with runtime weights, the rtl manifest's ``load`` entry (its loadable memories with
        their widths, and the ``load`` port's field widths); the board then takes the
        protocol's ``W`` and ``D`` commands."""
        if not 1 <= pixels <= 0xFFFF or not 1 <= classes <= 0xFF:
            raise ValueError(f"the board link carries 1..65535 pixels and 1..255 classes per image, got "
                             f"{pixels} and {classes}")
        if not isinstance(design_id, int) or not 0 <= design_id < 1 << 32:
            raise ValueError(f"design_id must be a 32-bit unsigned integer, got {design_id!r}")
        self.core, self.pixels, self.classes, self.design_id = core, pixels, classes, design_id
        if pll is not None and abs(pll.f_out_hz - clk_hz) > 1:
            raise ValueError(f"clk_hz {clk_hz} is not the PLL's output frequency {pll.f_out_hz}")
        self.pll = pll
        self.divisor = int(round(clk_hz / baud))
        byte_cycles = 10 * self.divisor
        self.byte_timeout_cycles = max(40 * byte_cycles, int(clk_hz * 0.05)) if byte_timeout_cycles is None \
            else int(byte_timeout_cycles)
        if self.byte_timeout_cycles < 2 * byte_cycles:
            raise ValueError(f"byte_timeout_cycles must be at least two byte times ({2 * byte_cycles} cycles), "
                             f"got {self.byte_timeout_cycles}")
        self.uart = uart                        # None: rx/tx signals below (simulation)
        self.rx, self.tx = Signal(init=1, name="rx"), Signal(init=1, name="tx")
        if load is not None and not {"memories", "layout"} <= set(load):
            raise ValueError("load must be the rtl manifest's load entry (memories, layout)")
        if load is not None and any(d["index"] > 0xFF or d["depth"] > 1 << 24 for d in load["memories"]):
            raise ValueError("the link's W command carries a 1-byte memory index and a 3-byte address: this "
                             "core has more memories or deeper ones (at most 42 PEs with runtime weights)")
        self.load = load
        if aer is not None:
            if not {"capacity", "width"} <= set(aer) or not 1 <= int(aer["capacity"]) <= 1 << 24:
                raise ValueError("aer must be the rtl manifest's aer entry (capacity: 1..2**24 words, width)")
            if int(aer["width"]) > 8 * protocol.AER_WORD_BYTES:
                raise UnsupportedError(f"the board link carries AER words of {8 * protocol.AER_WORD_BYTES} bits; this "
                                       f"core's are {aer['width']} bits (a sensor over 128 x 128 x 2)")
        self.aer = aer
        width = len(_port(core, "scores.payload"))
        if width > 16:
            raise UnsupportedError(f"the board link (protocol {protocol.VERSION}) sends each class score in 16 "
                                   f"bits; this core's scores are {width} bits wide, so no board design carries them")

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        if self.pll is not None and platform is not None:
            from ticketforge.deploy.pll import PllClock

            m.submodules.pll = PllClock(self.pll)
        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        if self.uart is None and platform is not None:
            self.uart = platform.request("uart", 0)
        if self.uart is not None:
            m.d.comb += [urx.rx.eq(self.uart.rx.i), self.uart.tx.o.eq(utx.tx)]
        else:
            m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        p = lambda n: _port(core, n)                          # noqa: E731
        K, N = self.classes, self.pixels
        if isinstance(core, CoreInstance):
            # a power-on reset from the configured initial value: board clock domains are
            # reset-less (iCE40), and the core wants a few reset cycles before it starts
            por = Signal(range(16), init=15)
            with m.If(por != 0):
                m.d.sync += por.eq(por - 1)
            m.d.comb += core.rst.eq(por != 0)

        # the sample's buffer: an image's pixel bytes, or an event sample's AER words
        depth = int(self.aer["capacity"]) if self.aer else N
        m.submodules.image = image = Memory(shape=8 * protocol.AER_WORD_BYTES if self.aer else 8, depth=depth,
                                            init=[])
        wr, rd = image.write_port(), image.read_port()
        ptr = Signal(range(depth + 1))
        # the sample's last word: N - 1, or the A command's count - 1
        last = Signal(range(depth + 1), init=0 if self.aer else N - 1)
        in_port = "aer" if self.aer else "pixels"
        scores = Array(Signal(signed(16), name=f"score{k}") for k in range(K))
        # the answer being sent: its kind, the item k of it, the item's bytes, the checksum
        kind, k = Signal(8), Signal(range(max(K, 4) + 4))
        word, nbytes, total = Signal(32), Signal(range(5)), Signal(8)
        error = Signal(8)
        idle = Signal(range(self.byte_timeout_cycles + 1))
        weights_id = Signal(32)                 # the last load image's id (runtime weights); 0: none
        # the bytes of a command's argument or of a loaded word, least significant first
        data_bits = max([48] + [int(d["width"]) for d in self.load["memories"]]) if self.load else 48
        got, nbyte = Signal(data_bits + 8), Signal(range(data_bits // 8 + 2))
        byte_in = urx.data.valid
        m.d.comb += [p("status_addr").eq(0), p(f"{in_port}.payload").eq(rd.data), rd.addr.eq(ptr),
                     wr.addr.eq(ptr), utx.data.payload.eq(word[:8])]
        if not self.aer:
            m.d.comb += wr.data.eq(urx.data.payload)

        def answer(marker):
            m.d.sync += [kind.eq(marker), k.eq(0)]
            m.next = "NEXT"

        def item(value, n):
            m.d.sync += [word.eq(value), nbytes.eq(n), k.eq(k + 1)]
            m.next = "SEND"

        with m.FSM():
            with m.State("CMD"):
                with m.If(urx.data.valid):
                    if self.aer:
                        with m.If(urx.data.payload == protocol.AER_SAMPLE):
                            m.d.sync += [nbyte.eq(0), got.eq(0), idle.eq(0)]
                            m.next = "AER_HEAD"
                    else:
                        with m.If(urx.data.payload == protocol.IMAGE):
                            m.d.sync += [ptr.eq(0), idle.eq(0)]
                            m.next = "RECV"
                    with m.Elif(urx.data.payload == protocol.IDENTIFY):
                        answer(protocol.ANSWER_ID)
                    if self.load:                         # runtime weights: W and D
                        with m.Elif(urx.data.payload == protocol.WEIGHTS_ID):
                            m.d.sync += [nbyte.eq(0), got.eq(0), idle.eq(0)]
                            m.next = "WEIGHTS_ID"
                        with m.Elif(urx.data.payload == protocol.LOAD):
                            m.d.sync += [nbyte.eq(0), got.eq(0), idle.eq(0)]
                            m.next = "LOAD_HEAD"
                    with m.Else():
                        m.d.sync += error.eq(protocol.ERR_COMMAND)
                        answer(protocol.ANSWER_ERROR)
            with m.State("RECV"):
                with m.If(urx.data.valid):
                    m.d.comb += wr.en.eq(1)
                    m.d.sync += [ptr.eq(ptr + 1), idle.eq(0)]
                    with m.If(ptr == N - 1):
                        m.next = "START"
                with m.Elif(idle == self.byte_timeout_cycles - 1):
                    m.d.sync += error.eq(protocol.ERR_INCOMPLETE)
                    answer(protocol.ANSWER_ERROR)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)
            def collect(n, done_state: str):
                """Take n argument bytes into ``got`` (byte timeout as for an image)."""
                with m.If(byte_in):
                    m.d.sync += [got.word_select(nbyte, 8).eq(urx.data.payload), nbyte.eq(nbyte + 1), idle.eq(0)]
                    with m.If(nbyte == n - 1):
                        m.next = done_state
                with m.Elif(idle == self.byte_timeout_cycles - 1):
                    m.d.sync += error.eq(protocol.ERR_INCOMPLETE)
                    answer(protocol.ANSWER_ERROR)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            if self.aer:
                with m.State("AER_HEAD"):                 # A: the number of words (3 bytes)
                    collect(protocol.AER_HEAD, "AER_SETUP")
                with m.State("AER_SETUP"):
                    count = got[:24]
                    m.d.sync += [ptr.eq(0), last.eq(count - 1), nbyte.eq(0), got.eq(0), idle.eq(0)]
                    with m.If((count == 0) | (count > depth)):
                        m.d.sync += error.eq(protocol.ERR_CAPACITY)
                        answer(protocol.ANSWER_ERROR)
                    with m.Else():
                        m.next = "AER_WORD"
                with m.State("AER_WORD"):                 # a word's bytes, least significant first
                    collect(protocol.AER_WORD_BYTES, "AER_WRITE")
                with m.State("AER_WRITE"):
                    m.d.comb += [wr.en.eq(1), wr.data.eq(got[:8 * protocol.AER_WORD_BYTES])]
                    m.d.sync += [ptr.eq(ptr + 1), nbyte.eq(0), got.eq(0), idle.eq(0)]
                    with m.If(ptr == last):
                        m.next = "START"
                    with m.Else():
                        m.next = "AER_WORD"

            if self.load:
                with m.State("WEIGHTS_ID"):               # D: the id of the weights just loaded
                    collect(4, "WEIGHTS_SET")
                with m.State("WEIGHTS_SET"):
                    m.d.sync += weights_id.eq(got[:32])
                    answer(protocol.ANSWER_ID)
                lay = self.load["layout"]["widths"]
                mem, addr, left, written = Signal(8), Signal(24), Signal(16), Signal(16)
                word_bytes = Signal(range(data_bits // 8 + 2))
                with m.State("LOAD_HEAD"):                # W: memory (1), first address (3), words (2)
                    collect(6, "LOAD_SETUP")
                with m.State("LOAD_SETUP"):
                    m.d.sync += [mem.eq(got[:8]), addr.eq(got[8:32]), left.eq(got[32:48]), written.eq(0),
                                 nbyte.eq(0), got.eq(0), idle.eq(0)]
                    with m.Switch(got[:8]):
                        for d in self.load["memories"]:
                            with m.Case(int(d["index"])):
                                m.d.sync += word_bytes.eq((int(d["width"]) + 7) // 8)
                    with m.If(got[32:48] == 0):
                        answer(protocol.ANSWER_LOADED)
                    with m.Else():
                        m.next = "LOAD_WORD"
                with m.State("LOAD_WORD"):                # the word's bytes, as the memory is wide
                    collect(word_bytes, "LOAD_WRITE")
                with m.State("LOAD_WRITE"):               # one word into the core's memory
                    m.d.comb += [p("load.valid").eq(1),
                                 p("load.payload").eq(Cat(mem[:lay["memory"]], addr[:lay["addr"]],
                                                          got[:lay["data"]]))]
                    m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), written.eq(written + 1), nbyte.eq(0),
                                 got.eq(0)]
                    with m.If(left == 1):
                        answer(protocol.ANSWER_LOADED)
                    with m.Else():
                        m.next = "LOAD_WORD"
            with m.State("START"):                        # rd.addr = 0 primes the read port
                m.d.comb += [p("start").eq(1), rd.addr.eq(0)]
                m.d.sync += ptr.eq(0)
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += p(f"{in_port}.valid").eq(1)
                with m.If(p(f"{in_port}.ready")):
                    m.d.comb += rd.addr.eq(ptr + 1)
                    m.d.sync += ptr.eq(ptr + 1)
                    with m.If(ptr == last):
                        m.d.sync += [ptr.eq(0), k.eq(0)]
                        m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += p("scores.ready").eq(1)
                with m.If(p("scores.valid")):
                    m.d.sync += [scores[k].eq(p("scores.payload")), k.eq(k + 1)]
                    with m.If(k == K - 1):
                        m.next = "SETTLE"
            with m.State("SETTLE"):                       # status word 0 updates with the last score
                answer(protocol.ANSWER_IMAGE)
            with m.State("NEXT"):                         # the answer's next item, or back to CMD
                with m.If(k == 0):
                    m.d.sync += total.eq(0)
                    item(kind, 1)
                with m.Elif(kind == protocol.ANSWER_IMAGE):
                    with m.If(k <= K):
                        item(scores[k - 1].as_unsigned(), 2)
                    with m.Elif(k == K + 1):
                        item(p("status_data"), 4)
                    with m.Elif(k == K + 2):
                        item(total, 1)
                    with m.Else():
                        m.next = "CMD"
                with m.Elif(kind == protocol.ANSWER_ID):
                    ident = [int.from_bytes(protocol.MAGIC + bytes([protocol.VERSION, K]), "little"), N,
                             self.design_id, weights_id]
                    with m.Switch(k):
                        for j, (value, n) in enumerate(zip(ident, (4, 2, 4, 4)), start=1):
                            with m.Case(j):
                                item(value, n)
                        with m.Case(len(ident) + 1):
                            item(total, 1)
                        with m.Default():
                            m.next = "CMD"
                if self.load:
                    with m.Elif(kind == protocol.ANSWER_LOADED):
                        with m.If(k == 1):
                            item(mem, 1)
                        with m.Elif(k == 2):
                            item(written, 2)
                        with m.Elif(k == 3):
                            item(total, 1)
                        with m.Else():
                            m.next = "CMD"
                with m.Else():                            # ANSWER_ERROR
                    with m.If(k == 1):
                        item(error, 1)
                    with m.Elif(k == 2):
                        item(total, 1)
                    with m.Else():
                        m.next = "CMD"
            with m.State("SEND"):
                m.d.comb += utx.data.valid.eq(1)
                with m.If(utx.data.ready):
                    m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1), total.eq(total + word[:8])]
                    with m.If(nbytes == 1):
                        m.next = "NEXT"
        return m
