"""The accelerator on a real board: a UART host link around the verified core.

A board has a few dozen pins (the icebreaker's UP5K 39), the core's ports need ~60, so the
design that is placed, routed and turned into a bitstream wraps the core in a serial link:

- the host sends one image as ``C*H*W`` bytes (8N1, ``baud``), buffered on chip; then the
  core runs on it at full speed;
- the board answers with each class score as 2 bytes (little endian, two's complement),
  then the image's cycle count from the status block (4 bytes, little endian).

The UART is written here because the Amaranth project's serial cores (amaranth-stdio)
are not released on PyPI (its name there holds an empty placeholder), and it is ~60 lines.

``core`` is either an :class:`~ticketforge.rtl.accel.Accelerator` (Amaranth simulation of
the whole board, in the tests) or :class:`CoreInstance`, the generated ``ticketforge_top``
as a black box (synthesis reads ``core.il`` + ``synth_top.v`` of the rtl stage: the
netlist that reaches the board is the one the regression verified).
"""
from __future__ import annotations

from amaranth import Array, ClockSignal, Elaboratable, Instance, Module, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

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
    """UART link + core.  ``pixels``: bytes per image; ``classes``: scores per image.

    The image is buffered on chip (one block RAM for 28x28) and streamed into the core at
    one pixel per cycle, and the scores are captured at full rate and sent afterwards, so
    the cycle count the board returns is the core's own, the one the cycle model predicts,
    not the UART's (10^3 times slower than the pixel port)."""

    def __init__(self, core, pixels: int, classes: int, clk_hz: float, baud: int = 115200,
                 uart=None, pll=None):
        """``pll``: a `deploy.pll.PllSetting`; the core then runs at its output frequency
        (which ``clk_hz`` must be) instead of the board's oscillator."""
        self.core, self.pixels, self.classes = core, pixels, classes
        if pll is not None and abs(pll.f_out_hz - clk_hz) > 1:
            raise ValueError(f"clk_hz {clk_hz} is not the PLL's output frequency {pll.f_out_hz}")
        self.pll = pll
        self.divisor = int(round(clk_hz / baud))
        self.uart = uart                        # None: rx/tx signals below (simulation)
        self.rx, self.tx = Signal(init=1), Signal(init=1)

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
        if len(p("scores.payload")) > 16:
            raise ValueError(f"the board link sends scores as 16 bits; this core's are "
                             f"{len(p('scores.payload'))} bits wide")
        K, N = self.classes, self.pixels
        if isinstance(core, CoreInstance):
            # a power-on reset from the configured initial value: board clock domains are
            # reset-less (iCE40), and the core wants a few reset cycles before it starts
            por = Signal(range(16), init=15)
            with m.If(por != 0):
                m.d.sync += por.eq(por - 1)
            m.d.comb += core.rst.eq(por != 0)

        m.submodules.image = image = Memory(shape=8, depth=N, init=[])
        wr, rd = image.write_port(), image.read_port()
        ptr = Signal(range(N + 1))
        scores = Array(Signal(signed(16), name=f"score{k}") for k in range(K))
        k = Signal(range(K + 1))
        word, nbytes = Signal(32), Signal(range(5))
        m.d.comb += [p("status_addr").eq(0), p("pixels.payload").eq(rd.data), rd.addr.eq(ptr),
                     wr.addr.eq(ptr), wr.data.eq(urx.data.payload), utx.data.payload.eq(word[:8])]
        with m.FSM():
            with m.State("RECV"):
                with m.If(urx.data.valid):
                    m.d.comb += wr.en.eq(1)
                    m.d.sync += ptr.eq(ptr + 1)
                    with m.If(ptr == N - 1):
                        m.next = "START"
            with m.State("START"):                        # rd.addr = 0 primes the read port
                m.d.comb += [p("start").eq(1), rd.addr.eq(0)]
                m.d.sync += ptr.eq(0)
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += p("pixels.valid").eq(1)
                with m.If(p("pixels.ready")):
                    m.d.comb += rd.addr.eq(ptr + 1)
                    m.d.sync += ptr.eq(ptr + 1)
                    with m.If(ptr == N - 1):
                        m.d.sync += [ptr.eq(0), k.eq(0)]
                        m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += p("scores.ready").eq(1)
                with m.If(p("scores.valid")):
                    m.d.sync += [scores[k].eq(p("scores.payload")), k.eq(k + 1)]
                    with m.If(k == K - 1):
                        m.next = "SETTLE"
            with m.State("SETTLE"):                       # status word 0 updates with the last score
                m.d.sync += k.eq(0)
                m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(k == K):
                    m.d.sync += [word.eq(p("status_data")), nbytes.eq(4), k.eq(k + 1)]
                    m.next = "SEND"
                with m.Elif(k > K):
                    m.next = "RECV"
                with m.Else():
                    m.d.sync += [word.eq(scores[k].as_unsigned()), nbytes.eq(2), k.eq(k + 1)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += utx.data.valid.eq(1)
                with m.If(utx.data.ready):
                    m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
                    with m.If(nbytes == 1):
                        m.next = "NEXT"
        return m
