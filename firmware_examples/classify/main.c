/*
 * main.c - a DIRECT classifier on a microcontroller that abstains when it does not know (IS §10).
 *
 * Builds for a Cortex-M0 (QEMU microbit, TARGET=m0, output by semihosting) and an ATmega2560 (simavr,
 * TARGET=avr, output on USART0; the blob and the vectors stay in flash, PROGMEM). It opens the classifier
 * from model.h (direct-export classifier.direct model.h), classifies every row of classify_vectors.h
 * (make_classify_vectors.py: int16 test inputs, the numpy reference's outputs, the true classes and the
 * abstention threshold chosen on validation rows) with direct_classify, and prints per row
 *
 *     <row> <decision> <label> <proba_0> .. <proba_C-1> <entropy> <mutual_info>
 *
 * decision: the class index, or -1 where the mutual information (the samples' disagreement, the
 * epistemic part of the uncertainty) is above CV_MI_THRESHOLD: the device abstains. Probabilities are in
 * units of 2^-16, entropies in 2^-16 bits, all integers (no float anywhere). It ends with
 *
 *     PASS: <n> of <n> rows match the reference
 *     abstained <k> of <n>; correct <c> of <n - k> answered
 *
 * and returns 0 only when every output equals the reference bit for bit.
 */
#include <stdint.h>
#include <stdio.h>

#include "direct.h"

#ifdef __AVR__
#include <avr/interrupt.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#define DIRECT_BLOB_STORAGE PROGMEM
#define CV_STORAGE PROGMEM
#define CV_I16(p) ((int16_t)pgm_read_word(p))
#define CV_U8(p) ((uint8_t)pgm_read_byte(p))
#define CV_U32(p) ((uint32_t)pgm_read_dword(p))
#else
#define CV_STORAGE
#define CV_I16(p) (*(p))
#define CV_U8(p) (*(p))
#define CV_U32(p) (*(p))
#endif

#include "classify_vectors.h"
#include "model.h"

#if MODEL_N_INPUTS != CV_N_INPUTS || MODEL_N_CLASSES != CV_CLASSES
#error "classify_vectors.h was made for another model.h: run make_classify_vectors.py on this model.h"
#endif

#ifdef __AVR__
#include "avr_uart.h"

static void platform_init(void) {
    uart_init();
}

static int platform_exit(int code) {
    /* simavr stops on sleep with interrupts off */
    cli();
    set_sleep_mode(SLEEP_MODE_PWR_DOWN);
    sleep_enable();
    sleep_cpu();
    return code;
}
#else
static void platform_init(void) {}
static int platform_exit(int code) {
    return code;
}
#endif

/* direct_classify needs 8-byte aligned scratch: features, then 16 bytes per class (direct.h). */
static uint64_t scratch[(MODEL_CLASSIFY_SCRATCH_BYTES + 7u) / 8u];

int main(void) {
    direct_model m;
    direct_status st;
    uint32_t i, k, bad = 0u, abstained = 0u, correct = 0u;

    platform_init();
    st = direct_model_open(&m, model_blob.bytes, MODEL_SIZE);
    if (st != DIRECT_OK) {
        printf("open failed: %s\n", direct_status_name(st));
        return platform_exit(2);
    }
    printf("classes %lu inputs %lu threshold %lu\n", (unsigned long)direct_n_classes(&m),
           (unsigned long)direct_n_inputs(&m), (unsigned long)CV_MI_THRESHOLD);
    for (i = 0u; i < CV_ROWS; ++i) {
        int16_t q[CV_N_INPUTS]; /* the library reads inputs from RAM */
        direct_classification c;
        int32_t decision;
        for (k = 0u; k < CV_N_INPUTS; ++k) {
            q[k] = CV_I16(&cv_inputs[i * CV_N_INPUTS + k]);
        }
        st = direct_classify(&m, q, scratch, sizeof scratch, &c);
        if (st != DIRECT_OK) {
            printf("classify failed: %s\n", direct_status_name(st));
            return platform_exit(2);
        }
        /* abstain when the posterior samples disagree more than on the validation rows' threshold */
        decision = c.mutual_info > CV_MI_THRESHOLD ? -1 : (int32_t)c.label;
        printf("%lu %ld %lu", (unsigned long)i, (long)decision, (unsigned long)c.label);
        for (k = 0u; k < CV_CLASSES; ++k) {
            printf(" %lu", (unsigned long)c.proba[k]);
            bad += c.proba[k] != CV_U32(&cv_proba[i * CV_CLASSES + k]) ? 1u : 0u;
        }
        printf(" %lu %lu\n", (unsigned long)c.entropy, (unsigned long)c.mutual_info);
        bad += (c.label != CV_U8(&cv_label[i]) || c.entropy != CV_U32(&cv_entropy[i]) ||
                c.mutual_info != CV_U32(&cv_mutual_info[i]))
                   ? 1u
                   : 0u;
        if (decision < 0) {
            ++abstained;
        } else {
            correct += c.label == CV_U8(&cv_truth[i]) ? 1u : 0u;
        }
    }
    printf("%s: %lu of %lu rows match the reference\n", bad == 0u ? "PASS" : "FAIL",
           (unsigned long)(bad == 0u ? CV_ROWS : 0u), (unsigned long)CV_ROWS);
    printf("abstained %lu of %lu; correct %lu of %lu answered\n", (unsigned long)abstained,
           (unsigned long)CV_ROWS, (unsigned long)correct, (unsigned long)(CV_ROWS - abstained));
    return platform_exit(bad == 0u ? 0 : 1);
}
