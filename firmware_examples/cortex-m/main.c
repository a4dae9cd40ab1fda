/*
 * main.c - direct-edge on a bare-metal Cortex-M (QEMU microbit: Cortex-M0; QEMU mps2-an386: Cortex-M4).
 *
 * Opens the model compiled in from model.h (direct-export model.h), predicts every row of the test
 * batch in test_vectors.h (firmware_examples/make_test_vectors.py: inputs and the numpy reference's
 * outputs) with the trained model's exact moments (direct_predict_exact) when the blob carries them, as
 * direct-export writes by default, else with the S-sample ensemble (direct_predict), prints which
 * ("mode exact" or "mode ensemble") and one line per row
 *
 *     <row> <mean_q> <var_f_q> <var_y_q>
 *
 * and returns 0 only when every output equals the reference bit for bit. With WITH_ROWS defined (the Makefile
 * does when MODEL_DIR has a rows.h from firmware_examples/make_rows.py), it then predicts your own rows:
 * real inputs turned into int16 by model.h's generated helpers (model_quantize_fixed on a core without
 * an FPU, model_quantize_f32 with one), the outputs turned into target units by model_output_fixed, and
 * prints, in integers only (newlib-nano's printf has no %f),
 *
 *     row <i> <q_0> .. <q_d-1> <mean_q> <var_y_q> <mean> <sd>     (mean, sd in 10^-ROWS_DECIMALS units)
 *
 * Before the rows it prints the stack the runtime's calls used, measured by painting (STACK_USED below):
 *
 *     stack open <bytes> predict <bytes> exact <bytes>
 *
 * Output goes through newlib's semihosting (rdimon), so QEMU prints it on stdout and exits with main's
 * return value.
 */
#include <stdint.h>
#include <stdio.h>

#include "direct.h"
#include "model.h"
#include "test_vectors.h"
#ifdef WITH_ROWS
#include "rows.h"
#endif

#if MODEL_N_INPUTS != TV_N_INPUTS || MODEL_SIZE != TV_BLOB_SIZE
#error "test_vectors.h was made for another model.h: run make_test_vectors.py on this model.h"
#endif
#ifndef TV_EXACT
#error "test_vectors.h is from an older make_test_vectors.py: run it again on this model.h"
#endif

/* u64 in decimal without printf's %llu (newlib-nano has none). buf holds 21 chars. */
static const char *u64_text(uint64_t v, char *buf) {
    char *p = buf + 20;
    *p = '\0';
    do {
        *--p = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    return p;
}

static int16_t scratch[MODEL_SCRATCH_BYTES / 2u];

/* One prediction: the exact moments (IS §6) when the blob has them, else the S-sample ensemble. */
static direct_status predict(const direct_model *m, const int16_t *q, direct_prediction *p) {
    return direct_has_exact(m) ? direct_predict_exact(m, q, scratch, sizeof scratch, p)
                               : direct_predict(m, q, scratch, sizeof scratch, p);
}

/* Stack painting: fill the free stack between the reserved area's end (_stack_limit, sections.ld) and
 * main's stack pointer with a pattern, make one call, and find the lowest word it changed; the call
 * used the bytes from there up to main's sp. Run twice with two patterns and keep the larger, in case
 * a word the call wrote happened to equal the pattern. A macro, not a function, so that main's own sp
 * is the reference and nothing but the call runs below it. No interrupts are enabled here. */
extern uint32_t _stack_limit;
static const uint32_t stack_paint[2] = {UINT32_C(0xA5A5A5A5), UINT32_C(0x5A5A5A5A)};
#define STACK_USED(bytes, call)                                                                          \
    do {                                                                                                 \
        uint32_t *sp_, *w_, k_;                                                                          \
        __asm__ volatile("mov %0, sp" : "=r"(sp_));                                                      \
        (bytes) = 0u;                                                                                    \
        for (k_ = 0u; k_ < 2u; ++k_) {                                                                   \
            for (w_ = &_stack_limit; w_ < sp_; ++w_) {                                                   \
                *(volatile uint32_t *)w_ = stack_paint[k_];                                              \
            }                                                                                            \
            (void)(call);                                                                                \
            for (w_ = &_stack_limit; w_ < sp_ && *(volatile uint32_t *)w_ == stack_paint[k_]; ++w_) {    \
            }                                                                                            \
            if ((uint32_t)((uintptr_t)sp_ - (uintptr_t)w_) > (bytes)) {                                  \
                (bytes) = (uint32_t)((uintptr_t)sp_ - (uintptr_t)w_);                                    \
            }                                                                                            \
        }                                                                                                \
    } while (0)

#ifdef WITH_ROWS
/* Your rows: quantise with model.h's helper, predict, print integers. 0, or 2 when a call fails. */
static int predict_rows(const direct_model *m) {
    uint32_t i, k;
    char b[21];
    for (i = 0u; i < ROWS_N; ++i) {
        int16_t q[MODEL_N_INPUTS];
        int32_t mean, sd;
        direct_prediction p;
#if defined(ROWS_RAW) && defined(__ARM_FP)
        int refused = model_quantize_raw_f64(&rows_raw[i * MODEL_N_COLUMNS], q); /* raw columns, NaN: missing */
#elif defined(ROWS_RAW)
        int refused = model_quantize_raw_fixed(&rows_raw_v[i * MODEL_N_COLUMNS], q); /* no FPU */
#elif defined(__ARM_FP)
        int refused = (model_quantize_f32(&rows_x[i * MODEL_N_INPUTS], q), 0); /* FPU: the real values */
#else
        int refused = (model_quantize_fixed(&rows_v[i * MODEL_N_INPUTS], q), 0); /* x * 2^FRAC_BITS[k] */
#endif
        if (refused != 0) {
            printf("row %lu refused: column %d\n", (unsigned long)i, refused - 1);
            return 2;
        }
        if (predict(m, q, &p) != DIRECT_OK ||
            model_output_fixed(p.mean, p.var_y, ROWS_DECIMALS, &mean, &sd) != 0) {
            printf("row %lu failed\n", (unsigned long)i);
            return 2;
        }
        printf("row %lu", (unsigned long)i);
        for (k = 0u; k < MODEL_N_INPUTS; ++k) {
            printf(" %d", (int)q[k]);
        }
        printf(" %ld %s %ld %ld\n", (long)p.mean, u64_text(p.var_y, b), (long)mean, (long)sd);
    }
    return 0;
}
#endif

int main(void) {
    direct_model m;
    direct_status st = direct_model_open(&m, model_blob.bytes, MODEL_SIZE);
    uint32_t i, bad = 0u;
    char b1[21], b2[21];

    if (st != DIRECT_OK) {
        printf("open failed: %s\n", direct_status_name(st));
        return 2;
    }
    printf("model b=%lu S=%lu d=%lu\n", (unsigned long)direct_n_features(&m),
           (unsigned long)direct_n_samples(&m), (unsigned long)direct_n_inputs(&m));
    printf("mode %s\n", direct_has_exact(&m) == TV_EXACT ? (TV_EXACT ? "exact" : "ensemble")
                                                            : "differs from test_vectors.h");
    {
        direct_model m2;
        direct_prediction p;
        uint32_t open_b, predict_b, exact_b;
        STACK_USED(open_b, direct_model_open(&m2, model_blob.bytes, MODEL_SIZE));
        STACK_USED(predict_b, direct_predict(&m, tv_inputs, scratch, sizeof scratch, &p));
        STACK_USED(exact_b, direct_predict_exact(&m, tv_inputs, scratch, sizeof scratch, &p));
        printf("stack open %lu predict %lu exact %lu\n", (unsigned long)open_b, (unsigned long)predict_b,
               (unsigned long)exact_b);
    }
    for (i = 0u; i < TV_ROWS; ++i) {
        direct_prediction p;
        uint64_t want_f = ((uint64_t)tv_var_f_hi[i] << 32) | tv_var_f_lo[i];
        uint64_t want_y = ((uint64_t)tv_var_y_hi[i] << 32) | tv_var_y_lo[i];
        st = predict(&m, &tv_inputs[i * TV_N_INPUTS], &p);
        if (st != DIRECT_OK) {
            printf("predict failed: %s\n", direct_status_name(st));
            return 2;
        }
        printf("%lu %ld %s %s\n", (unsigned long)i, (long)p.mean, u64_text(p.var_f, b1), u64_text(p.var_y, b2));
        bad += (p.mean != tv_mean[i] || p.var_f != want_f || p.var_y != want_y) ? 1u : 0u;
    }
    printf("%s: %lu of %lu rows match the reference\n", bad == 0u ? "PASS" : "FAIL",
           (unsigned long)(TV_ROWS - bad), (unsigned long)TV_ROWS);
#ifdef WITH_ROWS
    if (predict_rows(&m) != 0) {
        return 2;
    }
#endif
    return bad == 0u ? 0 : 1;
}
