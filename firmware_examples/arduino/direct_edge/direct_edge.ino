/*
 * direct_edge.ino - direct-edge on an 8-bit AVR board (Arduino Uno class: ATmega328P, 32 KB flash,
 * 2 KB RAM).
 *
 * The model (model.h, from direct-export) and the test batch (test_vectors.h, from make_test_vectors.py)
 * live in flash (PROGMEM); the runtime reads them there (DIRECT_PROGMEM, runtime/c/direct.h). setup()
 * predicts every test row, prints "<row> <mean_q> <var_f_q> <var_y_q>" per row and a PASS/FAIL line at
 * 9600 baud; loop() then predicts row 0 once a second (where your sensor reading would go). Every
 * prediction is the trained model's exact moments (direct_predict_exact, IS §6) when the blob carries
 * them, as direct-export writes by default, else the S-sample ensemble (direct_predict); setup() says
 * which ("mode exact" or "mode ensemble").
 *
 * Before the rows it prints "open OK" (direct_status_name) and the stack the runtime's calls used,
 * measured by painting: "stack open <bytes> predict <bytes> exact <bytes>".
 *
 * With WITH_ROWS defined (the Makefile does when MODEL_DIR has a rows.h from
 * firmware_examples/make_rows.py; in the Arduino IDE, define it above the includes), setup() then
 * predicts your own rows, kept in flash too: turned into int16 inputs by model.h's fixed-point helper
 * (model_quantize_raw_fixed for a model with raw columns, else model_quantize_fixed: AVR has no FPU),
 * the outputs into target units by model_output_fixed, and printed in integers only:
 *
 *     row <i> <q_0> .. <q_d-1> <mean_q> <var_y_q> <mean> <sd>     (mean, sd in 10^-ROWS_DECIMALS units)
 *
 * RAM: the 2·b-byte scratch and the direct_model struct; nothing of the model is copied.
 */
#include <avr/pgmspace.h>
#include <stdint.h>

#include "direct.h"

/* Place the generated header's blob in flash (model.h declares it with DIRECT_BLOB_STORAGE). */
#define DIRECT_BLOB_STORAGE PROGMEM
#include "model.h"

#define TV_STORAGE PROGMEM
#include "test_vectors.h"

#if MODEL_SIZE != TV_BLOB_SIZE || MODEL_N_INPUTS != TV_N_INPUTS
#error "test_vectors.h was made for another model.h: run make_test_vectors.py on this model.h"
#endif
#ifndef TV_EXACT
#error "test_vectors.h is from an older make_test_vectors.py: run it again on this model.h"
#endif

#ifdef WITH_ROWS
/* rows.h's fixed-point arrays in flash as well: the macros put PROGMEM before each one's name (the float
 * arrays for FPU cores are not used here, so the compiler drops them). */
#define rows_v PROGMEM rows_v
#define rows_raw_v PROGMEM rows_raw_v
#include "rows.h"
#undef rows_v
#undef rows_raw_v
#ifdef ROWS_RAW
#define ROWS_WIDTH MODEL_N_COLUMNS /* raw columns: v, a level code or MODEL_MISSING_FIXED */
#define ROWS_VALUES rows_raw_v
#else
#define ROWS_WIDTH MODEL_N_INPUTS /* x * 2^MODEL_INPUT_FRAC_BITS[k] */
#define ROWS_VALUES rows_v
#endif
#endif

static direct_model model;
static int16_t scratch[MODEL_SCRATCH_BYTES / 2u];
static int16_t x[MODEL_N_INPUTS];

/* One prediction of x: the exact moments (IS §6) when the blob has them, else the S-sample ensemble. */
static direct_status predict(direct_prediction *p) {
    return direct_has_exact(&model) ? direct_predict_exact(&model, x, scratch, sizeof scratch, p)
                                    : direct_predict(&model, x, scratch, sizeof scratch, p);
}

/* Stack painting: fill the free RAM between the end of .bss (__heap_start; this sketch has no heap) and
 * the caller's stack pointer with a pattern, make one call, and find the lowest byte it changed: the call
 * used the bytes from there up to SP (AVR's SP points at the next free byte; the return address is
 * included). Twice, with two patterns, keeping the larger, in case a byte the call wrote happened to
 * equal the pattern. A macro, so that the caller's SP is the reference and only the call runs below. */
extern uint8_t __heap_start;
static const uint8_t stack_paint[2] = {0xA5u, 0x5Au};
#define STACK_USED(bytes, call)                                                              \
    do {                                                                                     \
        uint8_t *sp_ = (uint8_t *)SP, *b_;                                                   \
        (bytes) = 0u;                                                                        \
        for (uint8_t k_ = 0u; k_ < 2u; ++k_) {                                               \
            for (b_ = &__heap_start; b_ <= sp_; ++b_) {                                      \
                *(volatile uint8_t *)b_ = stack_paint[k_];                                   \
            }                                                                                \
            (void)(call);                                                                    \
            for (b_ = &__heap_start; b_ <= sp_ && *(volatile uint8_t *)b_ == stack_paint[k_]; ++b_) { \
            }                                                                                \
            if ((uint16_t)(sp_ + 1 - b_) > (bytes)) {                                        \
                (bytes) = (uint16_t)(sp_ + 1 - b_);                                          \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* u64 in decimal (Serial.print has no 64-bit overload); buf holds 21 chars. */
static const char *u64_text(uint64_t v, char *buf) {
    char *p = buf + 20;
    *p = '\0';
    do {
        *--p = (char)('0' + (uint8_t)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    return p;
}

static uint64_t tv_u64(const uint32_t *hi, const uint32_t *lo, uint16_t i) {
    return ((uint64_t)pgm_read_dword(hi + i) << 32) | pgm_read_dword(lo + i);
}

static void load_row(uint16_t row) {
    for (uint16_t k = 0; k < TV_N_INPUTS; ++k) {
        x[k] = (int16_t)pgm_read_word(&tv_inputs[row * TV_N_INPUTS + k]);
    }
}

static void print_stack_use() {
    static direct_model other;
    direct_prediction p;
    uint16_t open_b, predict_b, exact_b;
    load_row(0);
    STACK_USED(open_b, direct_model_open(&other, model_blob.bytes, MODEL_SIZE));
    STACK_USED(predict_b, direct_predict(&model, x, scratch, sizeof scratch, &p));
    STACK_USED(exact_b, direct_predict_exact(&model, x, scratch, sizeof scratch, &p));
    Serial.print("stack open ");
    Serial.print((unsigned long)open_b);
    Serial.print(" predict ");
    Serial.print((unsigned long)predict_b);
    Serial.print(" exact ");
    Serial.println((unsigned long)exact_b);
}

#ifdef WITH_ROWS
/* Your rows: quantise with model.h's fixed-point helper, predict, print integers. */
static void predict_rows() {
    char buf[21];
    for (uint16_t i = 0; i < ROWS_N; ++i) {
        int32_t v[ROWS_WIDTH];
        int32_t mean, sd;
        direct_prediction p;
        for (uint16_t k = 0; k < ROWS_WIDTH; ++k) {
            v[k] = (int32_t)pgm_read_dword(&ROWS_VALUES[i * ROWS_WIDTH + k]);
        }
#ifdef ROWS_RAW
        int refused = model_quantize_raw_fixed(v, x); /* 0, or 1 + the column it refuses */
#else
        int refused = (model_quantize_fixed(v, x), 0);
#endif
        Serial.print("row ");
        Serial.print((unsigned long)i);
        if (refused != 0) {
            Serial.print(" refused: column ");
            Serial.println((unsigned long)(refused - 1));
            return;
        }
        if (predict(&p) != DIRECT_OK || model_output_fixed(p.mean, p.var_y, ROWS_DECIMALS, &mean, &sd) != 0) {
            Serial.println(" failed");
            return;
        }
        for (uint16_t k = 0; k < MODEL_N_INPUTS; ++k) {
            Serial.print(" ");
            Serial.print((long)x[k]);
        }
        Serial.print(" ");
        Serial.print((long)p.mean);
        Serial.print(" ");
        Serial.print(u64_text(p.var_y, buf));
        Serial.print(" ");
        Serial.print((long)mean);
        Serial.print(" ");
        Serial.println((unsigned long)sd);
    }
}
#endif

void setup() {
    char buf[21];
    uint16_t bad = 0;
    Serial.begin(9600);
    direct_status st = direct_model_open(&model, model_blob.bytes, MODEL_SIZE);
    Serial.print("open ");
    Serial.println(direct_status_name(st));
    if (st != DIRECT_OK) {
        return;
    }
    Serial.print("model b=");
    Serial.print((unsigned long)direct_n_features(&model));
    Serial.print(" S=");
    Serial.println((unsigned long)direct_n_samples(&model));
    Serial.print("mode ");
    Serial.println(direct_has_exact(&model) ? "exact" : "ensemble");
    if (direct_has_exact(&model) != TV_EXACT) {
        Serial.println("test_vectors.h was made for another model.h");
        return;
    }
    print_stack_use();
    for (uint16_t i = 0; i < TV_ROWS; ++i) {
        direct_prediction p;
        load_row(i);
        predict(&p);
        Serial.print((unsigned long)i);
        Serial.print(" ");
        Serial.print((long)p.mean);
        Serial.print(" ");
        Serial.print(u64_text(p.var_f, buf));
        Serial.print(" ");
        Serial.println(u64_text(p.var_y, buf));
        if (p.mean != (int32_t)pgm_read_dword(&tv_mean[i]) || p.var_f != tv_u64(tv_var_f_hi, tv_var_f_lo, i) ||
            p.var_y != tv_u64(tv_var_y_hi, tv_var_y_lo, i)) {
            ++bad;
        }
    }
    Serial.print(bad == 0 ? "PASS: " : "FAIL: ");
    Serial.print((unsigned long)(TV_ROWS - bad));
    Serial.print(" of ");
    Serial.print((unsigned long)TV_ROWS);
    Serial.println(" rows match the reference");
#ifdef WITH_ROWS
    predict_rows();
#endif
}

void loop() {
    direct_prediction p;
    load_row(0);
    predict(&p);
    delay(1000);
}
