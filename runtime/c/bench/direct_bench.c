/*
 * direct_bench.c - per-prediction cost of the C runtime, for callgrind or wall-clock timing.
 *
 *   direct_bench BLOB N [ensemble|exact|int8]
 *
 * Runs N predictions on pseudo-random inputs. "int8" runs the baseline the issue compares against
 * instead: the same features (direct_features), then a plain dense int8 dot-product loop per sample over
 * the same levels (decoded to int8 once, outside the timed function); the mean/variance step is left out.
 * Count instructions of one function with
 *   valgrind --tool=callgrind --toggle-collect=bench_predict ./direct_bench BLOB N
 * and divide by N. Prints the wall-clock time per prediction in nanoseconds.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "direct.h"

/* Baseline: S dense int8 dot products of length b over int16 features. */
__attribute__((noinline)) int32_t bench_int8(const int8_t *w, const int16_t *phi, uint32_t S, uint32_t b) {
    int32_t total = 0;
    uint32_t s, i;
    for (s = 0; s < S; ++s, w += b) {
        int32_t acc = 0;
        for (i = 0; i < b; ++i) {
            acc += (int32_t)w[i] * phi[i];
        }
        total += acc;
    }
    return total;
}

/* The timed function: one prediction (or one baseline evaluation when w is not NULL). */
__attribute__((noinline)) int64_t bench_predict(const direct_model *m, const int16_t *x, int16_t *scratch,
                                                const int8_t *w, int exact) {
    direct_prediction p;
    uint32_t n = direct_scratch_size(m);
    if (w != NULL) {
        direct_features(m, x, scratch, n / 2u);
        return bench_int8(w, scratch, m->n_samples, m->n_features);
    }
    if ((exact ? direct_predict_exact(m, x, scratch, n, &p) : direct_predict(m, x, scratch, n, &p)) != DIRECT_OK) {
        abort();
    }
    return (int64_t)p.var_y + p.mean;
}

int main(int argc, char **argv) {
    FILE *f;
    long len;
    uint8_t *buf;
    direct_model m;
    uint32_t n_iter, d, b, S, i, k, s;
    int16_t *x, *scratch;
    int8_t *w = NULL;
    uint64_t state = 1u, sink = 0u;
    struct timespec t0, t1;
    const char *mode = argc > 3 ? argv[3] : "ensemble";
    if (argc < 3 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: direct_bench BLOB N [ensemble|exact|int8]\n");
        return 2;
    }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (uint8_t *)malloc((size_t)len);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        return 2;
    }
    fclose(f);
    if (direct_model_open(&m, buf, (uint32_t)len) != DIRECT_OK) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    n_iter = (uint32_t)strtoul(argv[2], NULL, 10);
    d = direct_n_inputs(&m);
    b = direct_n_features(&m);
    S = direct_n_samples(&m);
    x = (int16_t *)malloc(sizeof(int16_t) * d * 64u);
    scratch = (int16_t *)malloc(direct_scratch_size(&m));
    for (i = 0; i < d * 64u; ++i) {
        state = state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        x[i] = (int16_t)(state >> 48);
    }
    if (strcmp(mode, "int8") == 0) { /* same levels as int8 (dense4 blobs only) */
        w = (int8_t *)calloc((size_t)S * b, 1);
        if (m.layout != DIRECT_LAYOUT_DENSE4) {
            fprintf(stderr, "int8 baseline needs a dense4 blob\n");
            return 2;
        }
        for (s = 0; s < S; ++s) {
            for (k = 0; k < b; ++k) {
                uint32_t byte = m.samples[s * ((b + 1u) / 2u) + k / 2u];
                uint32_t nib = (k & 1u) ? byte >> 4 : byte & 15u;
                w[s * b + k] = (int8_t)((int32_t)(nib ^ 8u) - 8);
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n_iter; ++i) {
        sink += (uint64_t)bench_predict(&m, x + d * (i & 63u), scratch, w, strcmp(mode, "exact") == 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.1f ns/prediction (sink %llu)\n",
           ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n_iter,
           (unsigned long long)sink);
    free(w);
    free(x);
    free(scratch);
    free(buf);
    return 0;
}
