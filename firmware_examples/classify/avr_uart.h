/*
 * avr_uart.h - USART0 at 9600 8N1, polled, as stdout: what simavr prints for the ATmega2560 builds of
 * main.c and bench.c. Include only under __AVR__; F_CPU in Hz.
 */
#ifndef DIRECT_AVR_UART_H
#define DIRECT_AVR_UART_H

#include <avr/io.h>
#include <stdint.h>
#include <stdio.h>

static int uart_put(char c, FILE *stream) {
    (void)stream;
    if (c == '\n') {
        uart_put('\r', stream);
    }
    while ((UCSR0A & (1 << UDRE0)) == 0) {
    }
    UDR0 = (uint8_t)c;
    return 0;
}
static FILE uart_out = FDEV_SETUP_STREAM(uart_put, NULL, _FDEV_SETUP_WRITE);

/* The baud rate, the frame format and stdout on USART0. */
static void uart_init(void) {
    uint16_t ubrr = (uint16_t)(F_CPU / 16UL / 9600UL - 1UL);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0B = (1 << TXEN0);
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);
    stdout = &uart_out;
}

#endif
