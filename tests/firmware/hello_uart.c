/* Prints "hello from the twin N" every 50 ms on the UART at 115200 baud (U2X, as the
 * Arduino core does at 16 MHz), and echoes back, upper-cased, any line it receives.
 * Built by tests/firmware/Makefile for the sim:avr twin tests (F_CPU 16 MHz, ATmega328P). */
#include <avr/io.h>
#include <util/delay.h>

static void put(char c)
{
	while (!(UCSR0A & _BV(UDRE0)))
		;
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
		for (int ms = 0; ms < 50; ms++) {
			_delay_ms(1);
			while (UCSR0A & _BV(RXC0)) {
				char c = UDR0;
				put(c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c);
			}
		}
	}
}
