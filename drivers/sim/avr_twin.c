/*
 * avr_twin: labruntime's AVR twin, an ATmega simulated cycle by cycle by simavr, in real time.
 *
 * Built at first use by drivers/sim/avr.py (gcc, against libsimavr) and run as its subprocess:
 *
 *   avr_twin --mcu atmega328p --freq 16000000 --baud 115200 --boot optiboot.bin \
 *            --boot-addr 0x7e00 --link /tmp/.../ttyTWIN [--ctl-fd 3] [--startup-ms 65] \
 *            [--spm-ms 4.5] [--no-autoreset]
 *
 * The chip: flash erased except the bootloader (a raw binary loaded at --boot-addr, the reset
 * vector pointing at it, as BOOTRST does), powered on (PORF) at start.
 *
 * Its UART0 is the "USB serial port": a pseudo-terminal whose slave path is symlinked at --link.
 * Bytes the host writes there reach the RX pin at the line rate (10 bits per byte at --baud, in
 * simulated time); the receiver holds 3 bytes (2-byte FIFO + shift register) and drops the rest
 * (data overrun), as an ATmega does. If the baud rate the program set (UBRR, U2X) is more than
 * 5 % off --baud, both directions see garbage. Bytes the AVR sends go to the pty.
 *
 * Reset: opening the pty (no process had it open before) resets the chip, as an Uno's DTR line
 * does through its capacitor (unless --no-autoreset); so does the "reset" command. A reset holds
 * the chip for the start-up time (--startup-ms, 65 ms by default: the Uno's fuses) during which
 * it executes nothing and hears nothing, then starts it with EXTRF in MCUSR. A watchdog reset is
 * simavr's own (WDRF).
 *
 * Self-programming: a page erase or write keeps SPMEN set for --spm-ms (4.5 ms, the
 * ATmega328P's maximum) of simulated time, which boot_spm_busy_wait() waits out; simavr itself
 * writes the flash at once.
 *
 * Real time: simulated cycles are paced to the wall clock (run until the simulated time catches
 * up with the wall clock, then sleep in poll()); when the host cannot keep up for more than
 * 50 ms, the debt is dropped and counted ("lag" events).
 *
 * --ctl-fd (3 by default, a socket) carries text lines both ways. Events (cycles are simulated CPU cycles since
 * start, never reset):
 *   ready <pts> <freq>              once, when the pty is ready
 *   port <P> <ddr hex> <port hex> <cycle>   a PORTx/DDRx register changed (at most 20 per
 *                                   loop pass; a pin toggled faster is reported by its state)
 *   tx <cycle> <hex bytes>          bytes the AVR sent on its UART
 *   time <cycle>                    every 50 ms of wall time
 *   reset <cycle> <ext|wdt|power>   the chip (re)started executing after a reset
 *   halt <cycle> <done|crashed>     the core stopped (sleep with interrupts off, or a crash)
 *   open <cycle> / close <cycle>    a host opened / closed the pty
 *   lag <cycle> <ms>                the host fell behind; ms of simulated time skipped
 *   overrun <cycle> <count>         RX bytes lost so far (data overrun, reset, closed receiver)
 * Commands:
 *   reset                           pulse the reset line
 *   rx <hex bytes>                  put bytes on the RX line (after what the pty sent)
 *   pin <P> <n> <0|1>               drive input pin Pn externally
 *   quit
 * The process exits on "quit", and when the control socket reaches EOF (the driver's process
 * ended, however it ended).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sim_avr.h"
#include "sim_io.h"
#include "sim_irq.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "avr_flash.h"

#define RXQ_SIZE 4096
#define RX_HOLD 3 /* bytes the receiver holds: 2-byte FIFO + shift register */
#define MAX_PORTS 12
#define RX_FIFO (sizeof(((avr_uart_t *)0)->input.buffer) / sizeof(((avr_uart_t *)0)->input.buffer[0]))

typedef struct {
	avr_ioport_t *io;
	uint8_t ddr, port; /* last values reported */
} port_state_t;

static int CTL_FD = 3;
static avr_t *avr;
static avr_uart_t *uart;
static port_state_t ports[MAX_PORTS];
static int nports;

static uint64_t freq = 16000000;
static uint32_t line_baud = 115200;
static uint64_t byte_cycles;
static uint64_t base_cycles;       /* cycles before the last avr_reset (avr->cycle restarts) */
static int running;                /* executing instructions (not held in reset, not halted) */
static uint64_t hold_until;        /* when held in reset: the cycle it starts again */
static const char *start_cause = "power";
static uint64_t startup_cycles;
static int autoreset = 1;

static uint8_t rxq[RXQ_SIZE];
static size_t rxq_head, rxq_len;
static uint64_t next_rx_at;
static unsigned long rx_lost;
static unsigned long rx_lost_reported;

static uint8_t txbuf[4096];
static size_t txlen;
static uint64_t tx_first_cycle;

static int master_fd = -1;
static int slave_open;
static char outbuf[1 << 16];
static size_t outlen;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t last_cycle;

static uint64_t cycles(void)
{
	return base_cycles + avr->cycle;
}

/* keep simulated time monotonic: some resets restart avr->cycle at 0, some do not */
static void sync_cycles(void)
{
	if (avr->cycle < last_cycle)
		base_cycles += last_cycle - avr->cycle;
	last_cycle = avr->cycle;
}

static void flush_out(void)
{
	size_t off = 0;
	while (off < outlen) {
		ssize_t n = write(CTL_FD, outbuf + off, outlen - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = {.fd = CTL_FD, .events = POLLOUT};
				poll(&p, 1, 100);
				continue;
			}
			_exit(0); /* the driver is gone */
		}
		off += (size_t)n;
	}
	outlen = 0;
}

static void emit(const char *fmt, ...)
{
	if (outlen > sizeof(outbuf) - 512)
		flush_out();
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(outbuf + outlen, sizeof(outbuf) - outlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		outlen += (size_t)n;
}

static void logger(avr_t *a, const int level, const char *fmt, va_list ap)
{
	/* a program that makes simavr complain in a loop must not fill the disk */
	static long written;
	(void)a;
	if (level > LOG_WARNING || written > 65536)
		return;
	int n = vfprintf(stderr, fmt, ap);
	if (n > 0)
		written += n;
	if (written > 65536)
		fprintf(stderr, "avr_twin: log truncated\n");
}

/* -- the UART line ---------------------------------------------------------------------- */
static int baud_mismatch(void)
{
	uint32_t ubrr = avr_regbit_get(avr, uart->ubrrl) |
	                ((uint32_t)avr_regbit_get(avr, uart->ubrrh) << 8);
	double div = avr_regbit_get(avr, uart->u2x) ? 8.0 : 16.0;
	double baud = (double)avr->frequency / (div * (ubrr + 1));
	double off = (baud - line_baud) / line_baud;
	return off > 0.05 || off < -0.05;
}

static uint8_t garble(uint8_t b)
{
	return (uint8_t)((b << 3) | (b >> 5)) ^ 0x5a;
}

static void uart_out(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	uint8_t b = (uint8_t)value;
	if (baud_mismatch())
		b = garble(b);
	if (txlen == sizeof(txbuf))
		return;
	if (txlen == 0)
		tx_first_cycle = cycles();
	txbuf[txlen++] = b;
}

static void flush_tx(void)
{
	if (!txlen)
		return;
	if (slave_open && master_fd >= 0) {
		size_t off = 0;
		while (off < txlen) {
			ssize_t n = write(master_fd, txbuf + off, txlen - off);
			if (n <= 0)
				break; /* the host does not read: bytes are lost, as on a real line */
			off += (size_t)n;
		}
	}
	emit("tx %llu ", (unsigned long long)tx_first_cycle);
	for (size_t i = 0; i < txlen; i++)
		emit("%02x", txbuf[i]);
	emit("\n");
	txlen = 0;
}

static unsigned rx_held(void)
{
	/* bytes the receiver holds that the program has not read (simavr's FIFO) */
	return (unsigned)((uart->input.write + RX_FIFO) - uart->input.read) &
	       (RX_FIFO - 1);
}

static void rx_push(const uint8_t *data, size_t n)
{
	for (size_t i = 0; i < n && rxq_len < RXQ_SIZE; i++) {
		if (rxq_len == 0 && next_rx_at < cycles() + byte_cycles)
			next_rx_at = cycles() + byte_cycles;
		rxq[(rxq_head + rxq_len++) % RXQ_SIZE] = data[i];
	}
}

static void rx_deliver(void)
{
	while (rxq_len && cycles() >= next_rx_at) {
		uint8_t b = rxq[rxq_head];
		rxq_head = (rxq_head + 1) % RXQ_SIZE;
		rxq_len--;
		next_rx_at += byte_cycles;
		if (!running || !avr_regbit_get(avr, uart->rxen) ||
		    rx_held() >= RX_HOLD) {
			rx_lost++;
			continue;
		}
		if (baud_mismatch())
			b = garble(b);
		avr_raise_irq(uart->io.irq + UART_IRQ_INPUT, b);
	}
}

/* -- flash self-programming: page erase and write take the chip's time -------------------- */
static avr_flash_t *flash;
static int (*flash_ioctl)(struct avr_io_t *, uint32_t, void *);
static uint64_t spm_cycles;     /* --spm-ms in cycles */
static uint64_t spm_busy_until; /* SPMEN reads 1 until then (as boot_spm_busy_wait() polls) */

static int spm_ioctl(struct avr_io_t *io, uint32_t ctl, void *param)
{
	if (ctl == AVR_IOCTL_FLASH_SPM &&
	    (avr_regbit_get(avr, flash->pgers) || avr_regbit_get(avr, flash->pgwrt)))
		spm_busy_until = cycles() + spm_cycles;
	return flash_ioctl(io, ctl, param);
}

static uint8_t spm_read(struct avr_t *a, avr_io_addr_t addr, void *param)
{
	(void)param;
	/* simavr stores what this returns into the register: take the forced bit back after */
	static int forced;
	uint8_t v = a->data[addr], bit = (uint8_t)(flash->selfprgen.mask << flash->selfprgen.bit);
	if (cycles() < spm_busy_until) {
		v |= bit;
		forced = 1;
	} else if (forced) {
		v &= (uint8_t)~bit;
		forced = 0;
	}
	return v;
}

/* -- pins --------------------------------------------------------------------------------- */
#define MAX_PORT_EVENTS 20 /* per millisecond of simulated time; beyond, only the state each 1 ms */
static int port_events;

static void port_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
	port_state_t *p = param;
	uint8_t ddr = avr->data[p->io->r_ddr], port = avr->data[p->io->r_port];
	/* the register being written may not be stored yet: the IRQ carries its new value */
	if (irq == p->io->io.irq + IOPORT_IRQ_DIRECTION_ALL)
		ddr = (uint8_t)value;
	else
		port = (uint8_t)value;
	if (port_events >= MAX_PORT_EVENTS)
		return; /* a pin toggled faster than anyone watches: report_ports() sends the state */
	if (ddr != p->ddr || port != p->port) {
		port_events++;
		p->ddr = ddr;
		p->port = port;
		emit("port %c %02x %02x %llu\n", p->io->name, ddr, port, (unsigned long long)cycles());
	}
}

static void report_ports(void)
{
	for (int i = 0; i < nports; i++) {
		port_state_t *p = &ports[i];
		uint8_t ddr = avr->data[p->io->r_ddr], port = avr->data[p->io->r_port];
		if (ddr != p->ddr || port != p->port) {
			p->ddr = ddr;
			p->port = port;
			emit("port %c %02x %02x %llu\n", p->io->name, ddr, port,
			     (unsigned long long)cycles());
		}
	}
}

/* -- reset -------------------------------------------------------------------------------- */
static void (*core_reset)(avr_t *);
static int reset_seen;

static void on_reset(avr_t *a)
{
	reset_seen = 1;
	if (core_reset)
		core_reset(a);
}

static void setup_uart_flags(void)
{
	uint32_t flags = 0; /* no usleep() while polling UCSRA, no printing to stdout */
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
}

static void hold_in_reset(void)
{
	/* the pins float and nothing executes until the start-up time has passed */
	avr_reset(avr);
	sync_cycles();
	reset_seen = 0;
	report_ports();
	running = 0;
	hold_until = cycles() + startup_cycles;
	start_cause = "ext";
}

static void release_reset(void)
{
	avr_regbit_set(avr, avr->reset_flags.extrf);
	setup_uart_flags();
	running = 1;
	emit("reset %llu %s\n", (unsigned long long)cycles(), start_cause);
}

/* -- control commands --------------------------------------------------------------------- */
static char ctlbuf[1 << 16];
static size_t ctllen;

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int command(char *line)
{
	if (!strcmp(line, "quit"))
		return 1;
	if (!strcmp(line, "reset")) {
		hold_in_reset();
		return 0;
	}
	if (!strncmp(line, "rx ", 3)) {
		uint8_t data[RXQ_SIZE];
		size_t n = 0;
		for (char *s = line + 3; s[0] && s[1] && n < sizeof(data); s += 2) {
			int hi = hexval(s[0]), lo = hexval(s[1]);
			if (hi < 0 || lo < 0)
				break;
			data[n++] = (uint8_t)(hi << 4 | lo);
		}
		rx_push(data, n);
		return 0;
	}
	char name;
	int bit, level;
	if (sscanf(line, "pin %c %d %d", &name, &bit, &level) == 3 && bit >= 0 && bit < 8) {
		avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(name), bit);
		if (irq)
			avr_raise_irq(irq, level ? 1 : 0);
		else
			fprintf(stderr, "avr_twin: no port %c\n", name);
		return 0;
	}
	fprintf(stderr, "avr_twin: unknown command: %s\n", line);
	return 0;
}

static int read_ctl(void)
{
	ssize_t n = read(CTL_FD, ctlbuf + ctllen, sizeof(ctlbuf) - 1 - ctllen);
	if (n == 0)
		return 1; /* EOF: the driver closed its end */
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : 1;
	ctllen += (size_t)n;
	char *start = ctlbuf, *nl;
	while ((nl = memchr(start, '\n', ctllen - (size_t)(start - ctlbuf)))) {
		*nl = 0;
		if (command(start))
			return 1;
		start = nl + 1;
	}
	ctllen -= (size_t)(start - ctlbuf);
	memmove(ctlbuf, start, ctllen);
	if (ctllen == sizeof(ctlbuf) - 1)
		ctllen = 0; /* a line that long is garbage */
	return 0;
}

/* -- the pty ------------------------------------------------------------------------------ */
static void check_slave(void)
{
	struct pollfd p = {.fd = master_fd, .events = POLLIN};
	poll(&p, 1, 0);
	int open_now = !(p.revents & POLLHUP);
	if (open_now == slave_open)
		return;
	slave_open = open_now;
	if (open_now) {
		tcflush(master_fd, TCIOFLUSH);
		emit("open %llu\n", (unsigned long long)cycles());
		if (autoreset)
			hold_in_reset();
	} else {
		rx_lost += rxq_len;
		rxq_len = 0;
		emit("close %llu\n", (unsigned long long)cycles());
	}
}

static void read_master(void)
{
	if (rxq_len > RXQ_SIZE / 2)
		return; /* the line is busy: the host waits, as on a real UART */
	uint8_t data[256];
	size_t room = RXQ_SIZE - rxq_len;
	ssize_t n = read(master_fd, data, room < sizeof(data) ? room : sizeof(data));
	if (n > 0)
		rx_push(data, (size_t)n);
}

/* -- main --------------------------------------------------------------------------------- */
static void usage(void)
{
	fprintf(stderr, "usage: avr_twin --mcu NAME --freq HZ --baud BPS --boot BIN --boot-addr ADDR --link PATH "
	                "[--ctl-fd FD] [--startup-ms MS] [--spm-ms MS] [--no-autoreset]\n");
	exit(2);
}

static void find_ios(void)
{
	for (avr_io_t *io = avr->io_port; io; io = io->next) {
		if (!strcmp(io->kind, "flash") && io->ioctl) {
			flash = (avr_flash_t *)io;
			flash_ioctl = io->ioctl;
			io->ioctl = spm_ioctl;
			avr_register_io_read(avr, flash->r_spm, spm_read, NULL);
		}
		if (!strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0')
			uart = (avr_uart_t *)io;
		if (!strcmp(io->kind, "port") && nports < MAX_PORTS) {
			port_state_t *p = &ports[nports++];
			p->io = (avr_ioport_t *)io;
			p->ddr = p->port = 0;
			avr_irq_register_notify(io->irq + IOPORT_IRQ_REG_PORT, port_changed, p);
			avr_irq_register_notify(io->irq + IOPORT_IRQ_DIRECTION_ALL, port_changed, p);
		}
	}
}

int main(int argc, char **argv)
{
	const char *mcu = "atmega328p", *boot = NULL, *link = NULL;
	double startup_ms = 65.0, spm_ms = 4.5;
	uint32_t boot_addr = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--no-autoreset")) {
			autoreset = 0;
			continue;
		}
		if (!v)
			usage();
		if (!strcmp(a, "--mcu"))
			mcu = v;
		else if (!strcmp(a, "--freq"))
			freq = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--baud"))
			line_baud = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--boot"))
			boot = v;
		else if (!strcmp(a, "--boot-addr"))
			boot_addr = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--link"))
			link = v;
		else if (!strcmp(a, "--ctl-fd"))
			CTL_FD = atoi(v);
		else if (!strcmp(a, "--spm-ms"))
			spm_ms = strtod(v, NULL);
		else if (!strcmp(a, "--startup-ms"))
			startup_ms = strtod(v, NULL);
		else
			usage();
		i++;
	}
	if (!boot || !link || !freq || !line_baud)
		usage();

	/* no PR_SET_PDEATHSIG: it fires when the *thread* that started us ends, and a lab may open
	 * the device in a thread that does not live as long as the device. The control socket is
	 * close-on-exec in the driver, so its EOF (or EPIPE) means the driver's process is gone. */
	signal(SIGPIPE, SIG_IGN);
	fcntl(CTL_FD, F_SETFL, fcntl(CTL_FD, F_GETFL) | O_NONBLOCK);
	avr_global_logger_set(logger);

	avr = avr_make_mcu_by_name(mcu);
	if (!avr) {
		fprintf(stderr, "avr_twin: simavr does not know the MCU %s\n", mcu);
		return 3;
	}
	avr_init(avr);
	avr->frequency = (uint32_t)freq;
	avr->log = LOG_ERROR;
	core_reset = avr->reset;
	avr->reset = on_reset;

	FILE *bf = fopen(boot, "rb");
	if (!bf) {
		fprintf(stderr, "avr_twin: cannot read the bootloader %s: %s\n", boot, strerror(errno));
		return 4;
	}
	size_t room = avr->flashend + 1 > boot_addr ? avr->flashend + 1 - boot_addr : 0;
	size_t got = fread(avr->flash + boot_addr, 1, room, bf);
	int more = fgetc(bf) != EOF;
	fclose(bf);
	if (!got || more) {
		fprintf(stderr, "avr_twin: the bootloader (%zu bytes at 0x%x) does not fit in %s's flash\n",
		        got, boot_addr, mcu);
		return 4;
	}
	uint32_t lowest = boot_addr;
	avr->reset_pc = lowest; /* BOOTRST: the reset vector is the boot section */
	avr->pc = lowest;

	find_ios();
	if (!uart) {
		fprintf(stderr, "avr_twin: %s has no UART0 in simavr\n", mcu);
		return 3;
	}
	avr_irq_register_notify(uart->io.irq + UART_IRQ_OUTPUT, uart_out, NULL);
	setup_uart_flags();
	byte_cycles = freq * 10 / line_baud;
	spm_cycles = (uint64_t)(spm_ms / 1000.0 * (double)freq);
	startup_cycles = (uint64_t)(startup_ms / 1000.0 * (double)freq) + 16384; /* + 16K CK */

	int slave = -1;
	if (openpty(&master_fd, &slave, NULL, NULL, NULL) < 0) {
		perror("avr_twin: openpty");
		return 5;
	}
	struct termios tio;
	tcgetattr(slave, &tio);
	cfmakeraw(&tio);
	tcsetattr(slave, TCSANOW, &tio);
	char pts[128];
	snprintf(pts, sizeof(pts), "%s", ttyname(slave));
	close(slave); /* nobody holds the port: the first open resets the board */
	fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.new", link);
	unlink(tmp);
	if (symlink(pts, tmp) < 0 || rename(tmp, link) < 0) {
		perror("avr_twin: symlink");
		return 5;
	}

	running = 1; /* power-on: PORF, no start-up hold modelled */
	emit("ready %s %llu\n", pts, (unsigned long long)freq);
	emit("reset %llu power\n", (unsigned long long)cycles());
	flush_out();

	const uint64_t max_lag_ns = 50000000;    /* drop a debt larger than 50 ms */
	uint64_t t0 = now_ns(), c0 = cycles(), last_time_event = t0;
	int quit = 0;
	while (!quit) {
		uint64_t t = now_ns();
		uint64_t target = c0 + (uint64_t)((double)(t - t0) * (double)freq / 1e9);
		uint64_t cur = cycles();
		if (target > cur + max_lag_ns * freq / 1000000000ull) {
			uint64_t skipped = target - cur;
			emit("lag %llu %llu\n", (unsigned long long)cur,
			     (unsigned long long)(skipped * 1000 / freq));
			t0 = t;
			c0 = cur;
			target = cur;
		}
		uint64_t stop = target < cur + freq / 1000 ? target : cur + freq / 1000;
		while (cycles() < stop && !quit) {
			if (!running) {
				if (hold_until && cycles() < hold_until) {
					uint64_t to = hold_until < stop ? hold_until : stop;
					base_cycles += to - cycles();
					rx_deliver(); /* bytes arriving now are lost */
					if (cycles() >= hold_until) {
						hold_until = 0;
						release_reset();
					}
				} else {
					base_cycles += stop - cycles(); /* halted: time goes on */
					rx_deliver();
				}
				continue;
			}
			int state = avr_run(avr);
			sync_cycles();
			if (reset_seen) { /* a watchdog reset inside simavr */
				reset_seen = 0;
				setup_uart_flags();
				emit("reset %llu wdt\n", (unsigned long long)cycles());
				report_ports();
			}
			if (rxq_len)
				rx_deliver();
			if (state == cpu_Done || state == cpu_Crashed) {
				running = 0;
				hold_until = 0;
				emit("halt %llu %s\n", (unsigned long long)cycles(),
				     state == cpu_Done ? "done" : "crashed");
				fprintf(stderr, "avr_twin: the core stopped (%s) at pc 0x%x, sp 0x%x\n",
				        state == cpu_Done ? "done" : "crashed", avr->pc,
				        avr->data[0x5d] | avr->data[0x5e] << 8);
			}
		}
		flush_tx();
		if (port_events >= MAX_PORT_EVENTS)
			report_ports();
		port_events = 0;
		if (rx_lost != rx_lost_reported) {
			rx_lost_reported = rx_lost;
			emit("overrun %llu %lu\n", (unsigned long long)cycles(), rx_lost);
		}
		if (t - last_time_event >= 50000000ull) {
			last_time_event = t;
			emit("time %llu\n", (unsigned long long)cycles());
		}
		flush_out();

		check_slave();
		/* caught up with the wall clock: sleep 1 ms, or less if something arrives */
		int timeout_ms = cycles() >= target ? 1 : 0;
		struct pollfd fds[2] = {{.fd = CTL_FD, .events = POLLIN}, {.fd = master_fd, .events = POLLIN}};
		int nfds = slave_open ? 2 : 1;
		int r = poll(fds, (nfds_t)nfds, timeout_ms);
		if (r > 0) {
			if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
				quit = read_ctl();
			if (nfds == 2 && (fds[1].revents & POLLIN))
				read_master();
		}
	}
	flush_out();
	unlink(link);
	return 0;
}
