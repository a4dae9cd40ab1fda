/*
 * direct_check.c - robustness harness: opens each blob file named on the command line (or one path per
 * line on stdin with "-"), prints "<status code> <output digest>" per file, and for an accepted blob runs
 * ensemble and exact predictions on extreme and pseudo-random inputs. Built with ASan/UBSan by
 * `make sanitize`; the blob is copied into a buffer of exactly its size so any over-read is caught.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "direct.h"

static uint64_t digest_add(uint64_t h, uint64_t v) {
    return (h ^ v) * UINT64_C(0x100000001B3);
}

/* A classifier (MF §11): direct_classify's outputs, or the status it must return (TASK for a layout it
 * does not decode, ARG above DIRECT_MAX_CLASSES); the regression calls are not exercised. */
static uint64_t classify_row(const direct_model *m, const int16_t *x, void *scratch, uint32_t n, uint64_t h) {
    direct_classification c;
    direct_status want = m->layout != DIRECT_LAYOUT_DENSE4                        ? DIRECT_ERR_TASK
                         : direct_n_classes(m) > (uint32_t)DIRECT_MAX_CLASSES ? DIRECT_ERR_ARG
                                                                                : DIRECT_OK;
    uint32_t k;
    if (direct_classify(m, x, scratch, n, &c) != want) {
        abort();
    }
    if (want != DIRECT_OK) {
        return h;
    }
    h = digest_add(h, c.label);
    for (k = 0u; k < c.n_classes; ++k) {
        h = digest_add(h, c.proba[k]);
    }
    return digest_add(digest_add(digest_add(h, c.entropy), c.expected_entropy), c.mutual_info);
}

/* Predict on all −32768, all 32767, alternating and a few pseudo-random rows; returns a digest. */
static uint64_t exercise(const direct_model *m) {
    uint32_t d = direct_n_inputs(m), row, k;
    uint32_t n = direct_n_classes(m) != 0u ? direct_classify_scratch_size(m) : direct_scratch_size(m);
    int16_t *x = (int16_t *)malloc(sizeof(int16_t) * d);
    int16_t *scratch = (int16_t *)malloc(n);
    uint64_t h = UINT64_C(0xCBF29CE484222325), state = UINT64_C(0x9E3779B97F4A7C15);
    direct_prediction p;
    if (x == NULL || scratch == NULL) {
        abort();
    }
    for (row = 0u; row < 8u; ++row) {
        for (k = 0u; k < d; ++k) {
            state = state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
            x[k] = row == 0u ? INT16_MIN
                   : row == 1u ? INT16_MAX
                   : row == 2u ? (k & 1u ? INT16_MAX : INT16_MIN)
                               : (int16_t)(uint16_t)(state >> 48);
        }
        if (direct_n_classes(m) != 0u) {
            h = classify_row(m, x, scratch, n, h);
            continue;
        }
        if (direct_predict(m, x, scratch, n, &p) != DIRECT_OK) {
            abort();
        }
        h = digest_add(digest_add(digest_add(h, (uint64_t)(uint32_t)p.mean), p.var_f), p.var_y);
        if (direct_has_exact(m)) {
            if (direct_predict_exact(m, x, scratch, n, &p) != DIRECT_OK) {
                abort();
            }
            h = digest_add(digest_add(digest_add(h, (uint64_t)(uint32_t)p.mean), p.var_f), p.var_y);
        } else if (direct_predict_exact(m, x, scratch, n, &p) != DIRECT_ERR_NO_EXACT) {
            abort();
        }
    }
    free(x);
    free(scratch);
    return h;
}

static int check_file(const char *path) {
    FILE *f = fopen(path, "rb");
    long len;
    uint8_t *buf;
    direct_model m;
    direct_status st;
    uint64_t h = 0u;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    buf = (uint8_t *)malloc(len > 0 ? (size_t)len : 1u); /* malloc is 16-aligned: MF §1 */
    if (buf == NULL || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    fclose(f);
    st = direct_model_open(&m, buf, (uint32_t)len);
    if (st == DIRECT_OK) {
        h = exercise(&m);
    }
    printf("%d %016llx\n", (int)st, (unsigned long long)h);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int i, rc = 0;
    char line[4096];
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-") == 0) {
            while (fgets(line, (int)sizeof line, stdin) != NULL) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0] != '\0') {
                    rc |= check_file(line);
                }
            }
        } else {
            rc |= check_file(argv[i]);
        }
    }
    return rc;
}
