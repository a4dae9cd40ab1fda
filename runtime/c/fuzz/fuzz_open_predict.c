/*
 * fuzz_open_predict.c - libFuzzer target for direct_model_open + predictions (and direct_classify).
 *
 * Each input is tried twice: as given (mostly stopped by the size field or the CRC), and with the
 * header's total size and the CRC rewritten to match, so that the fuzzer explores the header, section
 * and content checks (MF §9) and, for accepted blobs, the prediction path. Build: `make fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "direct.h"
#include "direct_internal.h" /* DIRECT_H_TOTAL_SIZE: header offsets generated from runtime/header.py */

static void exercise(const direct_model *m, const uint8_t *data, size_t size) {
    uint32_t d = direct_n_inputs(m), n = direct_scratch_size(m), k, row;
    uint32_t nc = direct_classify_scratch_size(m); /* >= n; classifiers (MF §11) are classified too */
    int16_t *x = (int16_t *)malloc(sizeof(int16_t) * d);
    int16_t *scratch = (int16_t *)malloc(nc);
    direct_prediction p;
    direct_classification c;
    if (x == NULL || scratch == NULL) {
        abort();
    }
    for (row = 0u; row < 4u; ++row) {
        for (k = 0u; k < d; ++k) { /* extremes, alternating, then bytes of the input itself */
            x[k] = row == 0u ? INT16_MIN
                   : row == 1u ? INT16_MAX
                   : row == 2u ? (k & 1u ? INT16_MAX : INT16_MIN)
                               : (int16_t)(uint16_t)((uint32_t)data[(2u * k) % size] |
                                                     ((uint32_t)data[(2u * k + 1u) % size] << 8));
        }
        /* a classifier's rows are logits: the regression calls refuse it (MF §11) */
        if (direct_predict(m, x, scratch, n, &p) != (direct_n_classes(m) != 0u ? DIRECT_ERR_TASK : DIRECT_OK)) {
            abort();
        }
        if (direct_predict_exact(m, x, scratch, n, &p) != (direct_n_classes(m) != 0u ? DIRECT_ERR_TASK
                                                            : direct_has_exact(m)   ? DIRECT_OK
                                                                                    : DIRECT_ERR_NO_EXACT)) {
            abort();
        }
        if (direct_classify(m, x, scratch, nc, &c) !=
            (direct_n_classes(m) == 0u || m->layout != DIRECT_LAYOUT_DENSE4 ? DIRECT_ERR_TASK
             : direct_n_classes(m) > (uint32_t)DIRECT_MAX_CLASSES           ? DIRECT_ERR_ARG
                                                                            : DIRECT_OK)) {
            abort();
        }
    }
    free(x);
    free(scratch);
}

static void try_blob(uint8_t *buf, size_t size) {
    direct_model m;
    if (direct_model_open(&m, buf, (uint32_t)size) == DIRECT_OK) {
        exercise(&m, buf, size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf;
    uint32_t crc, n = (uint32_t)size;
    if (size > (size_t)1 << 24) {
        return 0;
    }
    buf = (uint8_t *)malloc(size > 0u ? size : 1u); /* exactly sized: ASan sees any over-read */
    if (buf == NULL) {
        return 0;
    }
    if (size > 0u) {
        memcpy(buf, data, size);
    }
    try_blob(buf, size);
    if (size >= DIRECT_MIN_BLOB_SIZE) {
        buf[DIRECT_H_TOTAL_SIZE] = (uint8_t)n;
        buf[DIRECT_H_TOTAL_SIZE + 1u] = (uint8_t)(n >> 8);
        buf[DIRECT_H_TOTAL_SIZE + 2u] = (uint8_t)(n >> 16);
        buf[DIRECT_H_TOTAL_SIZE + 3u] = (uint8_t)(n >> 24);
        crc = direct_crc32(buf, n - 4u);
        buf[n - 4u] = (uint8_t)crc;
        buf[n - 3u] = (uint8_t)(crc >> 8);
        buf[n - 2u] = (uint8_t)(crc >> 16);
        buf[n - 1u] = (uint8_t)(crc >> 24);
        try_blob(buf, size);
    }
    free(buf);
    return 0;
}
