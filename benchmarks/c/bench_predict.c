/*
 * Benchmark harness for the C runtime (benchmarks/runtime_benchmark.py drives it).
 *
 *   bench_predict BLOB MODE N
 *
 * MODE predict   N calls of direct_predict on deterministic pseudo-random inputs
 *      features  N calls of direct_features only (to split feature and ensemble costs)
 *      dense8    N calls of dense8_ensemble: the same S x b levels as plain int8 rows, the same
 *                features and the same mean/variance arithmetic: the "plain dense int8 loop" baseline
 *      time      wall-clock ns per direct_predict call (batch 1), best of 5 runs of N calls
 *      time64    wall-clock ns per direct_predict_batch call of 64 rows, best of 5 runs of N calls
 *
 * Under valgrind --tool=callgrind --toggle-collect=<function> the instruction counts of one function
 * are exact and repeatable. Built with the same flags as the runtime.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "direct.h"

static uint32_t lcg(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return *state;
}

/* Levels of every sample as dense int8 rows, decoded once from the validated blob (dense4 only). */
static int decode_dense4(const direct_model *m, int8_t *w) {
    uint32_t s, i, row = (m->n_features + 1u) / 2u;
    if (m->layout != DIRECT_LAYOUT_DENSE4) return 0;
    for (s = 0; s < m->n_samples; ++s) {
        for (i = 0; i < m->n_features; ++i) {
            uint8_t byte = m->samples[s * row + i / 2u];
            int nib = (i & 1u) ? (byte >> 4) : (byte & 0xF);
            w[s * m->n_features + i] = (int8_t)((nib ^ 8) - 8);
        }
    }
    return 1;
}

/* IS §4-§5 with plain int8 rows: acc_s = sum_i w_si * phi_i, then the same moments. */
__attribute__((noinline)) void dense8_ensemble(const direct_model *m, const int8_t *w, const int16_t *phi,
                                                direct_prediction *out) {
    uint32_t s, i, b = m->n_features, S = m->n_samples;
    int32_t sa = 0;
    int64_t sa2 = 0;
    for (s = 0; s < S; ++s) {
        const int8_t *row = w + (size_t)s * b;
        int32_t acc = 0, a;
        for (i = 0; i < b; ++i) acc += (int32_t)row[i] * phi[i];
        a = m->pre_shift ? (int32_t)(((int64_t)acc + ((int64_t)1 << (m->pre_shift - 1))) >> m->pre_shift) : acc;
        sa += a;
        sa2 += (int64_t)a * a;
    }
    {
        uint64_t num = (uint64_t)((int64_t)S * sa2 - (int64_t)sa * sa);
        uint64_t lo = (num & 0xFFFFFFFFu) * m->m2, hi = (num >> 32) * m->m2;
        out->mean = (int32_t)(((int64_t)sa * m->m1 + ((int64_t)1 << (m->s1 - 1))) >> m->s1);
        out->var_f = (hi + (lo >> 32) + ((uint64_t)1 << (m->s2 - 33))) >> (m->s2 - 32);
        out->var_y = out->var_f + m->noise_q;
    }
}

int main(int argc, char **argv) {
    FILE *f;
    long size;
    uint32_t *buf, state = 12345u, n, k, j;
    direct_model m;
    direct_prediction p;
    int16_t *x, *scratch;
    int8_t *w = NULL;
    uint64_t check = 0;
    if (argc != 4) {
        fprintf(stderr, "usage: bench_predict BLOB predict|features|dense8|time|time64 N\n");
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET)) return 2;
    buf = malloc((size_t)size + 4u);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) return 2;
    fclose(f);
    if (direct_model_open(&m, buf, (uint32_t)size) != DIRECT_OK) {
        fprintf(stderr, "invalid blob\n");
        return 2;
    }
    n = (uint32_t)strtoul(argv[3], NULL, 10);
    x = malloc(sizeof(int16_t) * m.n_inputs * 64u);
    scratch = malloc(direct_scratch_size(&m) + 4u);
    for (k = 0; k < m.n_inputs * 64u; ++k) x[k] = (int16_t)(lcg(&state) >> 16);
    if (!strcmp(argv[2], "dense8")) {
        w = malloc((size_t)m.n_samples * m.n_features);
        if (!decode_dense4(&m, w)) {
            fprintf(stderr, "dense8 needs a dense4 blob\n");
            return 2;
        }
        direct_features(&m, x, scratch, direct_scratch_size(&m) / 2u); /* 2·b for a rotated blob */
        for (k = 0; k < n; ++k) {
            dense8_ensemble(&m, w, scratch, &p);
            check += (uint64_t)p.mean + p.var_f;
        }
    } else if (!strcmp(argv[2], "features")) {
        for (k = 0; k < n; ++k) {
            direct_features(&m, x + (k % 64u) * m.n_inputs, scratch, direct_scratch_size(&m) / 2u);
            check += (uint16_t)scratch[0];
        }
    } else if (!strcmp(argv[2], "time64")) {
        double best = 1e30;
        direct_prediction *outs = malloc(64u * sizeof *outs);
        for (j = 0; j < 5; ++j) {
            struct timespec t0, t1;
            double ns;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (k = 0; k < n; ++k) {
                direct_predict_batch(&m, x, 64u, scratch, direct_scratch_size(&m), outs);
                check += (uint64_t)outs[k % 64u].mean;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
            if (ns < best) best = ns;
        }
        free(outs);
        printf("%.1f\n", best);
    } else if (!strcmp(argv[2], "time")) {
        double best = 1e30;
        for (j = 0; j < 5; ++j) {
            struct timespec t0, t1;
            double ns;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (k = 0; k < n; ++k) {
                direct_predict(&m, x + (k % 64u) * m.n_inputs, scratch, direct_scratch_size(&m), &p);
                check += (uint64_t)p.mean;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
            if (ns < best) best = ns;
        }
        printf("%.1f\n", best);
    } else {
        for (k = 0; k < n; ++k) {
            direct_predict(&m, x + (k % 64u) * m.n_inputs, scratch, direct_scratch_size(&m), &p);
            check += (uint64_t)p.mean + p.var_f;
        }
    }
    fprintf(stderr, "check %llu\n", (unsigned long long)check);
    free(buf);
    free(x);
    free(scratch);
    free(w);
    return 0;
}
