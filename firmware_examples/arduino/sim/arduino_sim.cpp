/* arduino_sim.cpp - see arduino_sim.h. main() runs setup() once, then stops the simulation. */
#include "arduino_sim.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <stdlib.h>

SimSerial Serial;

static void put(char c) {
    while ((UCSR0A & (1 << UDRE0)) == 0) {
    }
    UDR0 = (uint8_t)c;
}

void SimSerial::begin(unsigned long baud) {
    uint16_t ubrr = (uint16_t)(F_CPU / 16ul / baud - 1ul);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0B = (1 << TXEN0);
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);
}

void SimSerial::print(const char *s) {
    while (*s != '\0') {
        put(*s++);
    }
}

void SimSerial::print(long v) {
    char buf[12];
    print(ltoa(v, buf, 10));
}

void SimSerial::print(unsigned long v) {
    char buf[11];
    print(ultoa(v, buf, 10));
}

void SimSerial::println(const char *s) {
    print(s);
    put('\n');
}

void SimSerial::println(unsigned long v) {
    print(v);
    put('\n');
}

void delay(unsigned long ms) {
    (void)ms;
}

int main(void) {
    setup();
    /* Sleeping with interrupts off ends a simavr run ("quitting gracefully"); on a board: stop here. */
    cli();
    set_sleep_mode(SLEEP_MODE_PWR_DOWN);
    sleep_enable();
    sleep_cpu();
    return 0;
}
