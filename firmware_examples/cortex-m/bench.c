/*
 * bench.c - instruction counts of one prediction on Cortex-M under qemu-system-arm -icount shift=0
 * (benchmarks/firmware_benchmark.py builds and runs it; bench_model.h is generated there).
 *
 * SysTick runs on the core clock; with -icount shift=0 every instruction advances QEMU's clock by 1 ns,
 * so SysTick ticks are a fixed number of instructions. That number is calibrated on a loop of known
 * length (2 instructions per iteration), and each measurement repeats its call BENCH_REPS times.
 * Printed: one "name instructions_per_call" line per measurement.
 *
 *   predict   direct_predict (IS §3-§5)
 *   features  direct_features alone (IS §3), to separate the per-weight part
 *   float     the same model in float: phases, cosf/sinf features, float weights, mean and variance
 *   float_dot the float model's S dot products alone (phi given)
 *   int8_dot  a dense int8 fully connected loop of the same size (S x b int8 weights, int16 phi)
 *   cmsis_s8  with -DBENCH_CMSIS (CMSIS-NN built alongside): arm_fully_connected_s8, S outputs over b int8
 *             inputs, the same levels as int8 weights
 *   cmsis_s4  arm_fully_connected_s4 on the same levels packed two per byte (low nibble first)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "bench_model.h"
#include "direct.h"
#ifdef BENCH_CMSIS
#include "arm_nnfunctions.h"
#endif

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static int16_t scratch[MODEL_SCRATCH_BYTES / 2u + 2u] __attribute__((aligned(4))); /* 4-byte aligned, as docs/runtime.md advises */
static float phi_f[BENCH_B];
static volatile int32_t sink_i;
static volatile float sink_f;

static uint32_t ticks(void) {
    return SYST_CVR;
}

static uint32_t elapsed(uint32_t start, uint32_t end) {
    return (start - end) & 0xFFFFFFu; /* a down-counter of 24 bits */
}

/* n iterations of a 2-instruction loop (subs, bne): 2n instructions. */
static void known_loop(uint32_t n) {
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
}

static void float_features(const int16_t *x, float *phi) {
    uint32_t j, k;
    for (j = 0; j < BENCH_B / 2u; ++j) {
        float t = bench_c_f[j];
        for (k = 0; k < BENCH_D; ++k) {
            t += bench_w_f[j * BENCH_D + k] * (float)x[k];
        }
        phi[j] = BENCH_AMP * cosf(t);
        phi[BENCH_B / 2u + j] = BENCH_AMP * sinf(t);
    }
}

static float float_dots(const float *phi, float *var) {
    float sum = 0.0f, sum2 = 0.0f;
    uint32_t s, i;
    for (s = 0; s < BENCH_S; ++s) {
        const float *w = &bench_weights_f[s * BENCH_B];
        float acc = 0.0f;
        for (i = 0; i < BENCH_B; ++i) {
            acc += w[i] * phi[i];
        }
        sum += acc;
        sum2 += acc * acc;
    }
    sum /= (float)BENCH_S;
    *var = sum2 / (float)BENCH_S - sum * sum;
    return sum;
}

static int32_t int8_dots(const int16_t *phi) {
    int32_t total = 0;
    uint32_t s, i;
    for (s = 0; s < BENCH_S; ++s) {
        const int8_t *w = &bench_weights_i8[s * BENCH_B];
        int32_t acc = 0;
        for (i = 0; i < BENCH_B; ++i) {
            acc += (int32_t)w[i] * phi[i];
        }
        total += acc;
    }
    return total;
}

#ifdef BENCH_CMSIS
static int8_t cmsis_out[BENCH_S];

/* One S x b fully connected layer (batch 1), per-tensor requantisation, as TFLite Micro calls it. */
static void cmsis_fc(int s4) {
    const cmsis_nn_context ctx = {NULL, 0};
    const cmsis_nn_fc_params fc = {-3, 0, 5, {-128, 127}}; /* input, filter, output offsets; activation */
    const cmsis_nn_per_tensor_quant_params quant = {1518500250, -9};
    const cmsis_nn_dims in_dims = {1, 1, 1, BENCH_B}, filter_dims = {BENCH_B, 1, 1, BENCH_S};
    const cmsis_nn_dims bias_dims = {1, 1, 1, BENCH_S}, out_dims = {1, 1, 1, BENCH_S};
    if (s4) {
        arm_fully_connected_s4(&ctx, &fc, &quant, &in_dims, bench_input_i8, &filter_dims, bench_weights_i4,
                               &bias_dims, bench_bias, &out_dims, cmsis_out);
    } else {
        arm_fully_connected_s8(&ctx, &fc, &quant, &in_dims, bench_input_i8, &filter_dims, bench_weights_i8,
                               &bias_dims, bench_bias, &out_dims, cmsis_out);
    }
}
#endif

static void report(const char *name, uint32_t t, uint32_t reps, uint32_t per_tick_x1000) {
    /* instructions = ticks * (instructions per tick); per call, rounded */
    uint64_t instr = ((uint64_t)t * per_tick_x1000 + 500u) / 1000u;
    printf("%s %lu\n", name, (unsigned long)((instr + reps / 2u) / reps));
}

int main(void) {
    direct_model m;
    direct_prediction p;
    uint32_t t0, t1, r, per_tick_x1000, cal;
    float var;

    if (direct_model_open(&m, model_blob.bytes, MODEL_SIZE) != DIRECT_OK) {
        printf("open failed\n");
        return 2;
    }
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, core clock, no interrupt */

    t0 = ticks();
    known_loop(500000u);
    t1 = ticks();
    cal = elapsed(t0, t1);
    per_tick_x1000 = (uint32_t)((1000000ull * 1000u + cal / 2u) / cal); /* 10^6 instructions / cal ticks */
    printf("per_tick_x1000 %lu\n", (unsigned long)per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_REPS; ++r) {
        direct_predict(&m, bench_x, scratch, sizeof scratch, &p);
    }
    t1 = ticks();
    sink_i = p.mean;
    report("predict", elapsed(t0, t1), BENCH_REPS, per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_REPS; ++r) {
        direct_features(&m, bench_x, scratch, BENCH_B);
    }
    t1 = ticks();
    report("features", elapsed(t0, t1), BENCH_REPS, per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_REPS; ++r) {
        sink_i = int8_dots(scratch);
    }
    t1 = ticks();
    report("int8_dot", elapsed(t0, t1), BENCH_REPS, per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_FLOAT_REPS; ++r) {
        float_features(bench_x, phi_f);
        sink_f = float_dots(phi_f, &var);
    }
    t1 = ticks();
    sink_f = var;
    report("float", elapsed(t0, t1), BENCH_FLOAT_REPS, per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_FLOAT_REPS; ++r) {
        sink_f = float_dots(phi_f, &var);
    }
    t1 = ticks();
    report("float_dot", elapsed(t0, t1), BENCH_FLOAT_REPS, per_tick_x1000);
#ifdef BENCH_CMSIS
    t0 = ticks();
    for (r = 0; r < BENCH_REPS; ++r) {
        cmsis_fc(0);
    }
    t1 = ticks();
    report("cmsis_s8", elapsed(t0, t1), BENCH_REPS, per_tick_x1000);

    t0 = ticks();
    for (r = 0; r < BENCH_REPS; ++r) {
        cmsis_fc(1);
    }
    t1 = ticks();
    report("cmsis_s4", elapsed(t0, t1), BENCH_REPS, per_tick_x1000);
    sink_i = cmsis_out[0];
#endif
    printf("mean_q %ld\nmodel_struct %lu\n", (long)p.mean, (unsigned long)sizeof m);
    return 0;
}
