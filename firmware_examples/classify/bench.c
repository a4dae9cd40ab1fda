/*
 * bench.c - the cost of one classification (IS §10) on Cortex-M (qemu-system-arm -icount shift=0) and on an
 * ATmega2560 (simavr); benchmarks/firmware_benchmark.py --parts classification generates bench_classify.h
 * (the model, BENCH_ROWS input rows of BENCH_D values, BENCH_REPS) and builds and runs it.
 *
 * Cortex-M: SysTick on the core clock, calibrated on a loop of known length as in ../cortex-m/bench.c, so
 * the counts are instructions (QEMU has no cycle model). AVR: Timer1 at the CPU clock (no prescaler) and
 * its overflow interrupt, so the counts are CPU cycles (simavr times each AVR instruction), the interrupt's
 * few cycles per 65536 included. Printed, per call, one "name count" line each:
 *
 *   classify  direct_classify: features, the S·R dense4 logit rows, softmax, entropies, mutual information
 *   features  direct_features alone (IS §3)
 *   dots      the S·R dense4 logit rows alone (IS §4) as direct_classify computes them: the library's
 *             dense4 kernels (direct_dense4_prepare once, then direct_dense4_rows a sample's R rows, or two
 *             samples' rows when R = 1, per call): classify - features - dots is the rest (IS §10.1-§10.4)
 *
 * then per input row "out <row> <label> <proba_0> .. <proba_C-1> <entropy> <expected_entropy> <mutual_info>",
 * which the script compares with runtime/classify.py bit for bit.
 */
#include <stdint.h>
#include <stdio.h>

#ifdef __AVR__
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#define DIRECT_BLOB_STORAGE PROGMEM
#endif

#include "direct_classify.c" /* the library's translation unit (and direct_internal.h's dense4 entry points) */

#include "bench_classify.h"

static uint64_t scratch[(MODEL_CLASSIFY_SCRATCH_BYTES + 7u) / 8u]; /* 8-byte aligned (direct.h) */
static direct_classification out[BENCH_ROWS];
static volatile uint32_t sink;

#ifdef __AVR__
static volatile uint16_t overflows;

ISR(TIMER1_OVF_vect) {
    ++overflows;
}

#include "avr_uart.h"

static void platform_init(void) {
    uart_init();
    TCCR1A = 0u;
    TCCR1B = (1 << CS10); /* the CPU clock, no prescaler */
    TIMSK1 = (1 << TOIE1);
    sei();
}

static int platform_exit(int code) {
    cli(); /* simavr stops on sleep with interrupts off */
    set_sleep_mode(SLEEP_MODE_PWR_DOWN);
    sleep_enable();
    sleep_cpu();
    return code;
}

/* CPU cycles since Timer1 started: the overflow count and the counter, read together. */
static uint32_t ticks(void) {
    uint8_t sreg = SREG;
    uint16_t lo, hi;
    cli();
    lo = TCNT1;
    hi = overflows;
    if ((TIFR1 & (1 << TOV1)) != 0 && lo < 0x8000u) {
        ++hi; /* an overflow the interrupt has not counted yet */
    }
    SREG = sreg;
    return ((uint32_t)hi << 16) | lo;
}

static uint32_t elapsed(uint32_t start, uint32_t end) {
    return end - start;
}

static void report(const char *name, uint32_t t, uint32_t calls) {
    printf("%s %lu\n", name, (unsigned long)((t + calls / 2u) / calls));
}
#else
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static uint32_t per_tick_x1000; /* instructions per SysTick tick, times 1000 */

/* n iterations of a 2-instruction loop (subs, bne): 2n instructions. */
static void known_loop(uint32_t n) {
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
}

static uint32_t ticks(void) {
    return SYST_CVR;
}

static uint32_t elapsed(uint32_t start, uint32_t end) {
    return (start - end) & 0xFFFFFFu; /* a down-counter of 24 bits */
}

static void platform_init(void) {
    uint32_t t0, cal;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, core clock, no interrupt */
    t0 = ticks();
    known_loop(500000u);
    cal = elapsed(t0, ticks());
    per_tick_x1000 = (uint32_t)((1000000ull * 1000u + cal / 2u) / cal); /* 10^6 instructions / cal ticks */
    printf("per_tick_x1000 %lu\n", (unsigned long)per_tick_x1000);
}

static int platform_exit(int code) {
    return code;
}

static void report(const char *name, uint32_t t, uint32_t calls) {
    uint64_t instr = ((uint64_t)t * per_tick_x1000 + 500u) / 1000u;
    printf("%s %lu\n", name, (unsigned long)((instr + calls / 2u) / calls));
}
#endif

int main(void) {
    direct_model m;
    uint32_t t0, t1, r, i, k, rows, row_bytes, step, acc[DIRECT_MAX_CLASSES], last = 0u;
    int16_t *phi = (int16_t *)(void *)scratch;

    platform_init();
    if (direct_model_open(&m, model_blob.bytes, MODEL_SIZE) != DIRECT_OK) {
        printf("open failed\n");
        return platform_exit(2);
    }
    rows = m.n_samples; /* S·R weight rows (MF §11), b / 2 bytes each (dense4) */
    row_bytes = (m.n_features + 1u) >> 1;
    step = direct_n_classes(&m) == 2u ? 2u : direct_n_classes(&m); /* classify_one's rows per call */

    t0 = ticks();
    for (r = 0u; r < BENCH_REPS; ++r) {
        for (i = 0u; i < BENCH_ROWS; ++i) {
            direct_classify(&m, &bench_x[i * BENCH_D], scratch, sizeof scratch, &out[i]);
        }
    }
    t1 = ticks();
    report("classify", elapsed(t0, t1), BENCH_REPS * BENCH_ROWS);

    t0 = ticks();
    for (r = 0u; r < BENCH_REPS; ++r) {
        for (i = 0u; i < BENCH_ROWS; ++i) {
            direct_features(&m, &bench_x[i * BENCH_D], phi, m.n_features);
        }
    }
    t1 = ticks();
    report("features", elapsed(t0, t1), BENCH_REPS * BENCH_ROWS);

    t0 = ticks();
    for (r = 0u; r < BENCH_REPS; ++r) {
        for (i = 0u; i < BENCH_ROWS; ++i) {
            const uint8_t *w = m.samples;
            uint32_t taken, off = direct_dense4_prepare(phi, m.n_features, w, rows, &taken, &last);
            uint32_t left = rows - taken, sum = last, j;
            /* (prepare reorders phi in place, a permutation: the next pass's counts are the same) */
            for (k = 0u; k < left; k += j, w += j * row_bytes) {
                j = left - k < step ? left - k : step;
                direct_dense4_rows(w, row_bytes, j, phi, off, acc);
                sum += acc[0] + acc[j - 1u];
            }
            sink = sum;
        }
    }
    t1 = ticks();
    report("dots", elapsed(t0, t1), BENCH_REPS * BENCH_ROWS);

    for (i = 0u; i < BENCH_ROWS; ++i) {
        printf("out %lu %lu", (unsigned long)i, (unsigned long)out[i].label);
        for (k = 0u; k < out[i].n_classes; ++k) {
            printf(" %lu", (unsigned long)out[i].proba[k]);
        }
        printf(" %lu %lu %lu\n", (unsigned long)out[i].entropy, (unsigned long)out[i].expected_entropy,
               (unsigned long)out[i].mutual_info);
    }
    printf("model_struct %lu\n", (unsigned long)sizeof m);
    return platform_exit(0);
}
