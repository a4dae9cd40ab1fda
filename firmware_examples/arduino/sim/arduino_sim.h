/*
 * arduino_sim.h - the few Arduino core calls the sketch uses (Serial.begin/print/println, delay), for
 * building it with plain avr-gcc and running it in simavr; not needed in the Arduino IDE.
 * Serial writes to USART0 by polling; simavr prints what USART0 sends on its console.
 */
#ifndef ARDUINO_SIM_H
#define ARDUINO_SIM_H

#include <stdint.h>

class SimSerial {
  public:
    void begin(unsigned long baud);
    void print(const char *s);
    void print(long v);
    void print(unsigned long v);
    void println(const char *s);
    void println(unsigned long v);
};

extern SimSerial Serial;
void delay(unsigned long ms);
void setup();
void loop();

#endif
