/* Blink: the LED on Arduino pin 13 (PB5) toggles every BLINK_MS milliseconds.
 * Built by tests/firmware/Makefile for the sim:avr twin tests (F_CPU 16 MHz, ATmega328P). */
#include <avr/io.h>
#include <util/delay.h>

#ifndef BLINK_MS
#define BLINK_MS 100
#endif

int main(void)
{
	DDRB |= _BV(DDB5);
	for (;;) {
		PORTB ^= _BV(PORTB5);
		_delay_ms(BLINK_MS);
	}
}
