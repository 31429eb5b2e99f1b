/* Prints "hello from the twin N" every 50 ms on the UART at 115200 baud (U2X, as the
 * Arduino core does at 16 MHz), and echoes back, upper-cased, each line it receives. The receiver
 * holds 3 bytes, so the program drains it into a buffer while it waits to send, as a
 * serial library's RX interrupt would.
 * Built by tests/firmware/Makefile for the sim:avr twin tests (F_CPU 16 MHz, ATmega328P). */
#include <avr/io.h>
#include <util/delay.h>

static char rx[64];
static unsigned char rx_head, rx_len;

static void poll_rx(void)
{
	while (UCSR0A & _BV(RXC0)) {
		char c = UDR0;
		if (rx_len < sizeof(rx))
			rx[(unsigned char)(rx_head + rx_len++) % sizeof(rx)] = c;
	}
}

static void put(char c)
{
	while (!(UCSR0A & _BV(UDRE0)))
		poll_rx();
	UDR0 = c;
}

static void puts_(const char *s)
{
	while (*s)
		put(*s++);
}

static void put_uint(unsigned n)
{
	char buf[6];
	int i = 0;
	do {
		buf[i++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	while (i)
		put(buf[--i]);
}

static void echo(void)
{
	/* whole lines only, so an echo never splits a hello line or is split by one */
	poll_rx();
	unsigned char n = 0;
	while (n < rx_len && rx[(unsigned char)(rx_head + n) % sizeof(rx)] != '\n')
		n++;
	if (n == rx_len && rx_len < sizeof(rx))
		return;
	for (unsigned char i = 0; i <= n && rx_len; i++) {
		char c = rx[rx_head];
		rx_head = (unsigned char)((rx_head + 1) % sizeof(rx));
		rx_len--;
		put(c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c);
	}
}

int main(void)
{
	UCSR0A = _BV(U2X0);
	UBRR0 = 16; /* 16 MHz / (8 * 17) = 117647 baud, 2.1 % off 115200 */
	UCSR0B = _BV(RXEN0) | _BV(TXEN0);
	UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
	unsigned count = 0;
	for (;;) {
		puts_("hello from the twin ");
		put_uint(count++);
		puts_("\r\n");
		for (int i = 0; i < 500; i++) {
			_delay_us(100); /* shorter than 3 bytes at 115200 (260 us) */
			echo();
		}
	}
}
