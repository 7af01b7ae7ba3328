// The board design (UART link + core, deploy/board_top.py) as a free-running Verilator model
// whose UART is a pseudo-terminal: the host driver opens the device this program prints,
// exactly as it opens a board's serial port.  Written by hand because no library bridges a
// Verilator model's UART pins to a pseudo-terminal (cocotb drives pins from Python, which
// would not be the host program's own serial code).
//
//   usage: simboard DIVISOR         (clock cycles per UART bit, as the design was built)
//
// Line 1 of stdout is the terminal's path.  The model runs until it is killed, or until the
// process that started it is gone.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include "Vticketforge_board.h"
#include "verilated.h"

int main(int argc, char** argv) {
    if (argc < 2 || atoi(argv[1]) < 4) {
        fprintf(stderr, "usage: %s DIVISOR (>= 4 clock cycles per UART bit)\n", argv[0]);
        return 2;
    }
    const int div = atoi(argv[1]);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("simboard: cannot open a pseudo-terminal");
        return 2;
    }
    const char* name = ptsname(master);
    // the terminal side stays open here too, so the model outlives host sessions that open
    // and close the port; raw mode: no echo, no line editing, 8-bit clean
    int slave = open(name, O_RDWR | O_NOCTTY);
    struct termios tio;
    if (slave < 0 || tcgetattr(slave, &tio) != 0) {
        perror("simboard: cannot open the terminal side");
        return 2;
    }
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    printf("%s\n", name);
    fflush(stdout);
    const pid_t parent = getppid();

    VerilatedContext ctx;
    Vticketforge_board top(&ctx);
    top.rx = 1;
    top.rst = 1;
    for (int i = 0; i < 8; i++) {
        top.clk = !top.clk;
        top.eval();
    }
    top.rst = 0;

    std::deque<uint8_t> to_board, to_host;
    int rx_bit = -1, rx_timer = 0;       // the frame being sent to the board's rx pin
    uint16_t rx_frame = 0;
    int tx_bit = -1, tx_timer = 0;       // the frame being decoded from its tx pin
    uint8_t tx_byte = 0;
    uint8_t buf[4096];
    for (uint64_t cycle = 0;; cycle++) {
        if ((cycle & 255) == 0) {
            ssize_t n = read(master, buf, sizeof buf);
            for (ssize_t i = 0; i < n; i++) to_board.push_back(buf[i]);
            while (!to_host.empty()) {
                uint8_t b = to_host.front();
                if (write(master, &b, 1) != 1) break;      // the host is not reading: retry later
                to_host.pop_front();
            }
            if ((cycle & ((1u << 20) - 1)) == 0 && getppid() != parent) break;
        }
        // rx: start bit 0, 8 data bits LSB first, stop bit 1, each held `div` cycles
        if (rx_bit < 0 && !to_board.empty()) {
            rx_frame = (uint16_t)((1u << 9) | ((unsigned)to_board.front() << 1));
            to_board.pop_front();
            rx_bit = 0;
            rx_timer = div;
        }
        if (rx_bit >= 0) {
            top.rx = (rx_frame >> rx_bit) & 1;
            if (--rx_timer == 0) {
                rx_timer = div;
                if (++rx_bit == 10) {
                    rx_bit = -1;
                    top.rx = 1;
                }
            }
        }
        top.clk = 1;
        top.eval();
        top.clk = 0;
        top.eval();
        // tx: a falling edge starts a frame; each bit is sampled in its middle
        if (tx_bit < 0) {
            if (!top.tx) {
                tx_bit = 0;
                tx_byte = 0;
                tx_timer = div + div / 2;
            }
        } else if (--tx_timer == 0) {
            if (tx_bit < 8) {
                tx_byte |= (uint8_t)((top.tx & 1) << tx_bit);
                tx_bit++;
                tx_timer = div;
            } else {                         // the middle of the stop bit
                to_host.push_back(tx_byte);
                tx_bit = -1;
            }
        }
    }
    top.final();
    return 0;
}
