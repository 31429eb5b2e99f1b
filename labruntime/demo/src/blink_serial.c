/* Blink and print: the LED on Arduino pin 13 (PB5) toggles every 500 ms and the program says so
 * on its UART at 115200 baud ("LED on, blink 1" / "LED off"), for the demo lab's serial
 * monitor. Built by labruntime/demo/src/Makefile (F_CPU 16 MHz, ATmega328P, as an Uno). */
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
	UBRR0 = 16; /* 16 MHz / (8 * 17) = 117647 baud, 2.1 % off 115200, as the Arduino core */
	UCSR0B = _BV(TXEN0);
	UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
	DDRB |= _BV(DDB5);
	unsigned blinks = 0;
	puts_("blink_serial: hello, the LED on pin 13 toggles every 500 ms\r\n");
	for (;;) {
		PORTB |= _BV(PORTB5);
		puts_("LED on, blink ");
		put_uint(++blinks);
		puts_("\r\n");
		_delay_ms(500);
		PORTB &= ~_BV(PORTB5);
		puts_("LED off\r\n");
		_delay_ms(500);
	}
}
