/*
 * direct_predict.c - the per-prediction path: feature map (IS §3), per-sample accumulation over the
 * four sample layouts (IS §4, MF §6), mean and variance (IS §5) and exact moments (IS §6).
 *
 * These functions trust a model that direct_model_open accepted: every index, count and bound was
 * checked there (IS §9), so the loops below carry no checks. No division, no floating point.
 */
#include <stddef.h>
#include <string.h>

#include "direct.h"
#include "direct_internal.h"

/*
 * Kernels, chosen at build time. DIRECT_KERNEL may be set on the command line to build any of them on any
 * host (the tests build each one, and check it bit for bit against the reference):
 *   DIRECT_KERNEL_TABLES  byte-wise table decoding: AVR (program memory) and the portable host build
 *   DIRECT_KERNEL_VECTOR  straight-line arithmetic that compilers vectorise (hosts, -DDIRECT_VECTORIZE)
 *   DIRECT_KERNEL_DSP     Arm cores with the DSP extension (Cortex-M4/M7/M33, Armv7-A): dual 16-bit
 *                         multiply-accumulates (SMLAD, SMLSD); elsewhere the same operations in plain C
 *   DIRECT_KERNEL_LEAN    Armv6-M (Cortex-M0/M0+/M23): word loads and shifts, few live registers
 *   DIRECT_KERNEL_SIMD    hosts with AVX2 (x86-64, -mavx2 or -march=native) or NEON (aarch64): the feature
 *                         map eight (AVX2) or four (NEON) features per pass and dense4 four samples per
 *                         pass, in intrinsics; chosen by -DDIRECT_VECTORIZE when the compiler predefines
 *                         __AVX2__ or __aarch64__ with __ARM_NEON, else DIRECT_KERNEL_VECTOR applies
 */
#define DIRECT_KERNEL_TABLES 1
#define DIRECT_KERNEL_VECTOR 2
#define DIRECT_KERNEL_DSP 3
#define DIRECT_KERNEL_LEAN 4
#define DIRECT_KERNEL_SIMD 5
#if defined(__AVX2__)
#define DIRECT_HAVE_AVX2 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define DIRECT_HAVE_NEON 1
#endif
#ifndef DIRECT_KERNEL
#if DIRECT_PROGMEM
#define DIRECT_KERNEL DIRECT_KERNEL_TABLES
#elif defined(DIRECT_VECTORIZE) && (defined(DIRECT_HAVE_AVX2) || defined(DIRECT_HAVE_NEON))
#define DIRECT_KERNEL DIRECT_KERNEL_SIMD
#elif defined(DIRECT_VECTORIZE)
#define DIRECT_KERNEL DIRECT_KERNEL_VECTOR
#elif defined(__ARM_FEATURE_DSP)
#define DIRECT_KERNEL DIRECT_KERNEL_DSP
#elif defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define DIRECT_KERNEL DIRECT_KERNEL_LEAN
#else
#define DIRECT_KERNEL DIRECT_KERNEL_TABLES
#endif
#endif
#if DIRECT_PROGMEM && DIRECT_KERNEL != DIRECT_KERNEL_TABLES
#error "program-memory builds read the blob byte-wise: only DIRECT_KERNEL_TABLES applies"
#endif
#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD && !defined(DIRECT_HAVE_AVX2) && !defined(DIRECT_HAVE_NEON)
#error "DIRECT_KERNEL_SIMD needs AVX2 (-mavx2) or aarch64 NEON"
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_TABLES
/* MF §6: signed level of a byte's low nibble, ((byte & 15) ^ 8) − 8. */
static const int8_t low_level[256] DIRECT_ROM = {
    0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3,
    -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5,
    -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7,
    -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7,
    -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4,
    5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1,
    2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2,
    -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4,
    -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1
};
#endif

#if DIRECT_KERNEL != DIRECT_KERNEL_DSP /* the DSP kernel extracts it (DIRECT_GAP4_LEVEL) */
/* MF §6: signed level of a byte's high nibble, ((byte >> 4) ^ 8) − 8. */
static const int8_t high_level[256] DIRECT_ROM = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, -8, -8, -8, -8, -8, -8, -8, -8, -8,
    -8, -8, -8, -8, -8, -8, -8, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -6, -6, -6,
    -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5,
    -5, -5, -5, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1
};
#endif

/* MF §6.4: positions a gap4 byte moves: 16·(g + 1) for a skip (byte < 16), else g + 1; on Armv6-M twice
 * that, the byte offset of the feature (LDRSH takes a register offset, unscaled). */
#if DIRECT_KERNEL == DIRECT_KERNEL_LEAN
static const uint16_t gap4_step2[256] = {
    32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 480, 512, 2, 4, 6, 8, 10, 12, 14, 16,
    18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8,
    10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
    32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
    24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14,
    16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6,
    8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
    30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
    22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 2, 4, 6, 8, 10, 12,
    14, 16, 18, 20, 22, 24, 26, 28, 30, 32
};
#else
static const uint16_t gap4_step[256] DIRECT_ROM = {
    16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8,
    9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6,
    7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4,
    5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2,
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    13, 14, 15, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
};
#endif

#if DIRECT_KERNEL != DIRECT_KERNEL_DSP
/* IS §3.3: linear interpolation between two table entries, f a 15-bit fraction. |(y1 − y0)·f| < 2^31 − 2^14
 * (IS §9), so the bounded, branch-free rounding applies. */
static int32_t interpolate(int32_t y0, int32_t y1, uint32_t f) {
    return y0 + direct_round_shift32_bounded((y1 - y0) * (int32_t)f, 15u);
}

/* IS §3.3: cos16(t) and sin16(t) together. cos16(t) = sin16(t + 2^30) moves to the next quadrant with the
 * same table index i and fraction f, so the two share the interpolations A (on T[i], T[i+1]) and B (on
 * T[256-i], T[255-i]): quadrant 0 gives (cos, sin) = (B, A), 1 gives (-A, B), 2 (-B, -A), 3 (A, -B). */
static void cos_sin16(const int16_t *table, uint32_t t, int16_t *c, int16_t *sn) {
    uint32_t u = t >> 22, f = (t >> 7) & UINT32_C(0x7FFF);
    uint32_t qd = u >> 8, i = u & UINT32_C(0xFF);
    int32_t a = interpolate(DIRECT_I16(table + i), DIRECT_I16(table + i + 1u), f);
    int32_t b = interpolate(DIRECT_I16(table + (256u - i)), DIRECT_I16(table + (255u - i)), f);
    int32_t cv = (qd & 1u) ? -a : b, sv = (qd & 1u) ? b : a;
    if (qd >= 2u) {
        cv = -cv;
        sv = -sv;
    }
    *c = (int16_t)cv;
    *sn = (int16_t)sv;
}

#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD && defined(DIRECT_HAVE_AVX2)
#include <immintrin.h>
/*
 * IS §3.2-§3.3 for features j … j+7 in the eight 32-bit lanes of a register (AVX2).
 * Phase: lane l holds t_{j+l} (phases_rows below for d ≤ 64, else W_{j+l,k} gathered with stride d),
 * products by VPMULLD (the low 32 bits: the u32 product of IS §3.2), sums with wrap-around. Table: one 32-bit gather
 * at byte offset 2i reads the pair (T[i], T[i+1]) as i16 halves, one at 2(255 − i) the pair
 * (T[255−i], T[256−i]) (T has 257 entries, so both stay inside it). VPMADDWD with fa = (f − 2^15, −f) and
 * fb = (−f, f − 2^15) gives −X_A = −(T[i]·(2^15 − f) + T[i+1]·f) and −X_B likewise, |X| < 2^30; then
 * −A = ⌊(−X_A + 2^14 − 1) / 2^15⌋ is IS §3.3's v negated (as in the DSP kernel), an arithmetic shift of a
 * value that cannot overflow. Quadrants: (cos, sin) = (B, A), (−A, B), (−B, −A), (A, −B) for qd = 0 … 3:
 * select on bit 30 of t, negate cos where bits 31 and 30 agree and sin where bit 31 is clear.
 */
static inline void cos_sin16_x8(const int16_t *table, __m256i t, int16_t *c, int16_t *sn) {
    const __m256i lo15 = _mm256_set1_epi32(0x7FFF), sign15 = _mm256_set1_epi32(0x8000);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF), round = _mm256_set1_epi32(0x3FFF);
    __m256i i = _mm256_and_si256(_mm256_srli_epi32(t, 22), _mm256_set1_epi32(0xFF));
    __m256i f = _mm256_and_si256(_mm256_srli_epi32(t, 7), lo15);
    __m256i nf = _mm256_sub_epi32(_mm256_setzero_si256(), f), f1 = _mm256_xor_si256(f, sign15);
    __m256i fa = _mm256_or_si256(f1, _mm256_slli_epi32(nf, 16));
    __m256i fb = _mm256_or_si256(_mm256_and_si256(nf, lo16), _mm256_slli_epi32(f1, 16));
    __m256i wa = _mm256_i32gather_epi32((const int *)(const void *)table, i, 2);
    __m256i wb = _mm256_i32gather_epi32((const int *)(const void *)table, _mm256_sub_epi32(_mm256_set1_epi32(255), i), 2);
    __m256i na = _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(wa, fa), round), 15);
    __m256i nb = _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(wb, fb), round), 15);
    __m256i odd = _mm256_srai_epi32(_mm256_slli_epi32(t, 1), 31);
    __m256i neg_c = _mm256_xor_si256(_mm256_srai_epi32(_mm256_xor_si256(t, _mm256_slli_epi32(t, 1)), 31),
                                     _mm256_set1_epi32(-1));
    __m256i neg_s = _mm256_xor_si256(_mm256_srai_epi32(t, 31), _mm256_set1_epi32(-1));
    __m256i cv = _mm256_blendv_epi8(nb, na, odd), sv = _mm256_blendv_epi8(na, nb, odd), both;
    cv = _mm256_sub_epi32(_mm256_xor_si256(cv, neg_c), neg_c);
    sv = _mm256_sub_epi32(_mm256_xor_si256(sv, neg_s), neg_s);
    /* |v| ≤ 32767: the saturating pack is exact. Lanes come out (c0-3, s0-3 | c4-7, s4-7). */
    both = _mm256_permute4x64_epi64(_mm256_packs_epi32(cv, sv), 0xD8);
    _mm_storeu_si128((__m128i *)(void *)c, _mm256_castsi256_si128(both));
    _mm_storeu_si128((__m128i *)(void *)sn, _mm256_extracti128_si256(both, 1));
}

#define DIRECT_AVX2_MAX_CHUNKS 8u /* inputs d ≤ 64 take the contiguous path below, larger d gathers */

/* IS §3.2 for 8 features (rows w, w + d, …, w + 7d of W) and d ≤ 64: each row is read contiguously, 8
 * inputs per load, multiplied lane-wise by the inputs, and the eight rows' lane sums are reduced together
 * (VPHADDD tree). Lanes past d multiply a zero input; a load that could pass the end of W (the last block's
 * partial chunk) is masked instead. Every operation is a 32-bit add or the low half of a product: arithmetic
 * mod 2^32, as IS §3.2 asks. The eight rows stay in registers (named, not an array the compiler spills). */
#define DIRECT_AVX2_ROW(l, c, ld)                                                                      \
    v##l = _mm256_add_epi32(v##l, _mm256_mullo_epi32(ld((const int *)(const void *)(w + l##u * d + 8u * (c))), qv[c]))
#define DIRECT_AVX2_ROWS(c, ld)                                                                        \
    do {                                                                                               \
        DIRECT_AVX2_ROW(0, c, ld); DIRECT_AVX2_ROW(1, c, ld); DIRECT_AVX2_ROW(2, c, ld);           \
        DIRECT_AVX2_ROW(3, c, ld); DIRECT_AVX2_ROW(4, c, ld); DIRECT_AVX2_ROW(5, c, ld);           \
        DIRECT_AVX2_ROW(6, c, ld); DIRECT_AVX2_ROW(7, c, ld);                                       \
    } while (0)
#define DIRECT_AVX2_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define DIRECT_AVX2_MASKED(p) _mm256_maskload_epi32((p), tail)
static __m256i phases_rows(const int32_t *w, uint32_t d, const __m256i *qv, __m256i tail, uint32_t chunks,
                           int masked, __m256i t) {
    __m256i v0 = _mm256_setzero_si256(), v1 = v0, v2 = v0, v3 = v0, v4 = v0, v5 = v0, v6 = v0, v7 = v0;
    __m256i s01, s23, s45, s67, lo, hi;
    uint32_t c, full = d / 8u;
    for (c = 0u; c < full; ++c) {
        DIRECT_AVX2_ROWS(c, DIRECT_AVX2_LOADU);
    }
    if (full < chunks) { /* the partial chunk: inputs 8·full … d−1 */
        if (masked) {
            DIRECT_AVX2_ROWS(full, DIRECT_AVX2_MASKED);
        } else {
            DIRECT_AVX2_ROWS(full, DIRECT_AVX2_LOADU);
        }
    }
    s01 = _mm256_hadd_epi32(v0, v1);
    s23 = _mm256_hadd_epi32(v2, v3);
    s45 = _mm256_hadd_epi32(v4, v5);
    s67 = _mm256_hadd_epi32(v6, v7);
    lo = _mm256_hadd_epi32(s01, s23); /* (rows 0-3: sums of the low 128-bit halves | of the high halves) */
    hi = _mm256_hadd_epi32(s45, s67); /* the same for rows 4-7 */
    return _mm256_add_epi32(t, _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                                                _mm256_permute2x128_si256(lo, hi, 0x31)));
}
#undef DIRECT_AVX2_MASKED
#undef DIRECT_AVX2_LOADU
#undef DIRECT_AVX2_ROWS
#undef DIRECT_AVX2_ROW

/* IS §3.2-§3.3 for the features 0 … 8⌊F/8⌋ − 1; returns how many it did (the caller does the rest). */
static uint32_t features_simd(const direct_model *m, const int16_t *x, int16_t *phi, uint32_t F) {
    uint32_t d = m->n_inputs, j, k, chunks = (d + 7u) / 8u;
    const int32_t *w = m->phase_w;
    if (chunks <= DIRECT_AVX2_MAX_CHUNKS) {
        __m256i qv[DIRECT_AVX2_MAX_CHUNKS], tail;
        int32_t qs[8u * DIRECT_AVX2_MAX_CHUNKS];
        for (k = 0u; k < 8u * chunks; ++k) {
            qs[k] = k < d ? (int32_t)x[k] : 0;
        }
        for (k = 0u; k < chunks; ++k) { /* chunk k: inputs 8k … 8k+7, zero past d */
            qv[k] = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 8u * k));
        }
        tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(d % 8u)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (j = 0u; j + 8u <= F; j += 8u, w += 8u * d) {
            __m256i t = _mm256_loadu_si256((const __m256i *)(const void *)(m->phase_c + j));
            /* The partial chunk of row j+7 reads words up to (j+7)·d + 8⌊d/8⌋ + 7 < (j+8)·d + 8: unmasked
             * only while those stay inside W (F·d words; < 2^31, so no overflow). */
            int masked = (j + 8u) * d + 8u > F * d;
            cos_sin16_x8(m->table, phases_rows(w, d, qv, tail, chunks, masked, t), phi + j, phi + F + j);
        }
    } else { /* d > 64: lane l gathers W_{j+l,k} (stride d) */
        const int32_t dd = (int32_t)d;
        const __m256i rows = _mm256_setr_epi32(0, dd, 2 * dd, 3 * dd, 4 * dd, 5 * dd, 6 * dd, 7 * dd);
        for (j = 0u; j + 8u <= F; j += 8u, w += 8u * d) {
            __m256i t = _mm256_loadu_si256((const __m256i *)(const void *)(m->phase_c + j));
            for (k = 0u; k < d; ++k) {
                __m256i wk = _mm256_i32gather_epi32((const int *)(const void *)(w + k), rows, 4);
                t = _mm256_add_epi32(t, _mm256_mullo_epi32(wk, _mm256_set1_epi32((int32_t)x[k])));
            }
            cos_sin16_x8(m->table, t, phi + j, phi + F + j);
        }
    }
    return j;
}
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD && defined(DIRECT_HAVE_NEON)
#include <arm_neon.h>
/*
 * IS §3.2-§3.3 for features j … j+3 in the four 32-bit lanes of a register (aarch64 NEON). Phase: each row
 * of W is read four inputs at a time and multiplied lane-wise (MUL/MLA keep the low 32 bits: the u32
 * arithmetic of IS §3.2), the four rows' lanes reduced with two ADDP; the last d mod 4 inputs are loaded
 * per lane (no read past W). Table: the pairs (T[i], T[i+1]) and (T[255−i], T[256−i]) are read as one
 * 32-bit word each (memcpy: any alignment), split into sign-extended halves, and IS §3.3's
 * v = y0 + round_shift((y1 − y0)·f, 15) is computed as written: |(y1 − y0)·f| < 2^31 − 2^14 (IS §9), so
 * adding 2^14 and shifting right arithmetically is exact. Quadrants as in cos_sin16.
 */
static int32x4_t interpolate_x4(uint32x4_t pairs, int32x4_t f, int lo_first) {
    int32x4_t lo = vshrq_n_s32(vshlq_n_s32(vreinterpretq_s32_u32(pairs), 16), 16);
    int32x4_t hi = vshrq_n_s32(vreinterpretq_s32_u32(pairs), 16);
    int32x4_t y0 = lo_first ? lo : hi, y1 = lo_first ? hi : lo;
    int32x4_t prod = vmulq_s32(vsubq_s32(y1, y0), f);
    return vaddq_s32(y0, vshrq_n_s32(vaddq_s32(prod, vdupq_n_s32(0x4000)), 15));
}

static void cos_sin16_x4(const int16_t *table, uint32x4_t t, int16_t *c, int16_t *sn) {
    uint32_t tl[4], pa[4], pb[4], l;
    int32x4_t f = vreinterpretq_s32_u32(vandq_u32(vshrq_n_u32(t, 7), vdupq_n_u32(0x7FFFu)));
    int32x4_t a, b, cv, sv;
    uint32x4_t odd, neg_c, neg_s;
    vst1q_u32(tl, t);
    for (l = 0u; l < 4u; ++l) {
        uint32_t i = (tl[l] >> 22) & UINT32_C(0xFF);
        memcpy(&pa[l], table + i, sizeof pa[l]);         /* (T[i], T[i+1]) */
        memcpy(&pb[l], table + (255u - i), sizeof pb[l]); /* (T[255−i], T[256−i]) */
    }
    a = interpolate_x4(vld1q_u32(pa), f, 1);
    b = interpolate_x4(vld1q_u32(pb), f, 0);
    odd = vtstq_u32(t, vdupq_n_u32(UINT32_C(0x40000000)));
    neg_s = vtstq_u32(t, vdupq_n_u32(UINT32_C(0x80000000)));
    neg_c = vtstq_u32(veorq_u32(t, vshlq_n_u32(t, 1)), vdupq_n_u32(UINT32_C(0x80000000)));
    cv = vbslq_s32(odd, a, b);
    sv = vbslq_s32(odd, b, a);
    cv = vbslq_s32(neg_c, vnegq_s32(cv), cv);
    sv = vbslq_s32(neg_s, vnegq_s32(sv), sv);
    vst1_s16(c, vmovn_s32(cv)); /* |v| ≤ 32767: the narrowing is exact */
    vst1_s16(sn, vmovn_s32(sv));
}

/* IS §3.2-§3.3 for the features 0 … 4⌊F/4⌋ − 1; returns how many it did (the caller does the rest). */
static uint32_t features_simd(const direct_model *m, const int16_t *x, int16_t *phi, uint32_t F) {
    uint32_t d = m->n_inputs, full = d & ~3u, j, k, l;
    const uint32_t *w = (const uint32_t *)(const void *)m->phase_w;
    for (j = 0u; j + 4u <= F; j += 4u, w += 4u * d) {
        uint32x4_t v[4], t = vld1q_u32(m->phase_c + j);
        for (l = 0u; l < 4u; ++l) {
            v[l] = vdupq_n_u32(0u);
        }
        for (k = 0u; k < full; k += 4u) {
            int32x4_t q32 = vmovl_s16(vld1_s16(x + k));
            uint32x4_t q = vreinterpretq_u32_s32(q32);
            for (l = 0u; l < 4u; ++l) {
                v[l] = vmlaq_u32(v[l], vld1q_u32(w + l * d + k), q);
            }
        }
        t = vaddq_u32(t, vpaddq_u32(vpaddq_u32(v[0], v[1]), vpaddq_u32(v[2], v[3])));
        for (; k < d; ++k) { /* lane l gets W_{j+l,k} */
            uint32x4_t col = vdupq_n_u32(0u);
            col = vld1q_lane_u32(w + k, col, 0);
            col = vld1q_lane_u32(w + d + k, col, 1);
            col = vld1q_lane_u32(w + 2u * d + k, col, 2);
            col = vld1q_lane_u32(w + 3u * d + k, col, 3);
            t = vmlaq_u32(t, col, vdupq_n_u32((uint32_t)(int32_t)x[k]));
        }
        cos_sin16_x4(m->table, t, phi + j, phi + F + j);
    }
    return j;
}
#endif

/* Portable sign extensions of a u32's low and high halves; compilers emit one SXTH/ASR (or a shift pair). */
#define direct_sext16(v) direct_floor_shift32(direct_i32_from_u32((uint32_t)(v) << 16), 16u)
#define direct_high16(v) direct_floor_shift32(direct_i32_from_u32((uint32_t)(v)), 16u)

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
/* ACLE intrinsics: one instruction each. Operands are pairs of i16 halves; the sums wrap mod 2^32. */
#define direct_smlad(a, b, acc) ((uint32_t)__smlad((int32_t)(a), (int32_t)(b), (int32_t)(acc)))
#define direct_smlsd(a, b, acc) ((uint32_t)__smlsd((int32_t)(a), (int32_t)(b), (int32_t)(acc)))
#define direct_smlsdx(a, b, acc) ((uint32_t)__smlsdx((int32_t)(a), (int32_t)(b), (int32_t)(acc)))
#else
/* The same operations in C (hosts build this kernel for the tests): each 16×16 product fits i32. */
static inline uint32_t direct_smlad(uint32_t a, uint32_t b, uint32_t acc) {
    return acc + (uint32_t)(direct_sext16(a) * direct_sext16(b)) + (uint32_t)(direct_high16(a) * direct_high16(b));
}

static inline uint32_t direct_smlsd(uint32_t a, uint32_t b, uint32_t acc) {
    return acc + (uint32_t)(direct_sext16(a) * direct_sext16(b)) - (uint32_t)(direct_high16(a) * direct_high16(b));
}

static inline uint32_t direct_smlsdx(uint32_t a, uint32_t b, uint32_t acc) {
    return acc + (uint32_t)(direct_sext16(a) * direct_high16(b)) - (uint32_t)(direct_high16(a) * direct_sext16(b));
}
#endif
#endif

/* Thumb-2 with DSP: the feature map, the feature pairing and the single-sample dense4 loop in assembly
 * (features_dsp, pair_features, dot_dense4_natural). Like the Armv6-M loops they use every register, r7
 * included: not with clang or at -O0, which keep r7 as the frame pointer (-DDIRECT_NO_ASM turns them off). */
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP && defined(__GNUC__) && !defined(__clang__) && defined(__thumb2__) && \
    defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__) && !defined(DIRECT_NO_ASM)
#define DIRECT_DSP_FEATURES_ASM 1
#define DIRECT_DSP_MAX_D 32u /* inputs copied to the stack as words (at most; 4·(d + 7) bytes) */
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP && !defined(DIRECT_DSP_FEATURES_ASM)
/* IS §3.2: the phases of features j and j + 1 together (rows w and w + d of W), sharing the input loads;
 * four inputs per pass. Products and sums in u32: the wrap-around is the reduction mod one turn. */
static void phase_pair(const int32_t *w, const int16_t *x, uint32_t d, uint32_t *t) {
    const int32_t *v = w + d;
    uint32_t t0 = t[0], t1 = t[1], k;
    for (k = 0u; k + 4u <= d; k += 4u) {
        uint32_t x0 = (uint32_t)(int32_t)x[k], x1 = (uint32_t)(int32_t)x[k + 1u];
        uint32_t x2 = (uint32_t)(int32_t)x[k + 2u], x3 = (uint32_t)(int32_t)x[k + 3u];
        t0 += (uint32_t)DIRECT_I32(w + k) * x0 + (uint32_t)DIRECT_I32(w + k + 1u) * x1 +
              (uint32_t)DIRECT_I32(w + k + 2u) * x2 + (uint32_t)DIRECT_I32(w + k + 3u) * x3;
        t1 += (uint32_t)DIRECT_I32(v + k) * x0 + (uint32_t)DIRECT_I32(v + k + 1u) * x1 +
              (uint32_t)DIRECT_I32(v + k + 2u) * x2 + (uint32_t)DIRECT_I32(v + k + 3u) * x3;
    }
    for (; k < d; ++k) {
        uint32_t xk = (uint32_t)(int32_t)x[k];
        t0 += (uint32_t)DIRECT_I32(w + k) * xk;
        t1 += (uint32_t)DIRECT_I32(v + k) * xk;
    }
    t[0] = t0;
    t[1] = t1;
}
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP && !defined(DIRECT_DSP_FEATURES_ASM)
/* IS §3.2 for one feature j (odd F's last one). */
static uint32_t phase_one(const int32_t *w, const int16_t *x, uint32_t d, uint32_t t) {
    uint32_t k;
    for (k = 0u; k < d; ++k) {
        t += (uint32_t)DIRECT_I32(w + k) * (uint32_t)(int32_t)x[k];
    }
    return t;
}
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP && !defined(DIRECT_DSP_FEATURES_ASM)
/* IS §3.3 with dual multiply-accumulates. v = y0 + round_shift((y1 − y0)·f, 15) equals
 * ⌊(y0·(2^15 − f) + y1·f + 2^14) / 2^15⌋, a two-term dot product whose value stays below 2^30 in magnitude.
 * With fw = (f − 2^15, f) as i16 halves and the table pairs read as one word each, A (on T[i], T[i+1]) comes
 * out negated from one SMLSD and B (on T[256−i], T[255−i], stored the other way round) from one SMLSDX:
 *   −A = ⌊(T[i]·(f − 2^15) − T[i+1]·f + 2^14 − 1) / 2^15⌋,   B = ⌊(T[255−i]·f − T[256−i]·(f − 2^15) + 2^14) / 2^15⌋
 * Quadrants: (cos, sin) = (B, A), (−A, B), (−B, −A), (A, −B) for qd = 0 … 3. */
static void cos_sin16_dsp(const int16_t *table, uint32_t t, int16_t *c, int16_t *sn) {
    uint32_t i = (t >> 22) & UINT32_C(0xFF), f = (t >> 7) & UINT32_C(0x7FFF), qd = t >> 30, wa, wb;
    uint32_t fw = (f | (f << 16)) ^ UINT32_C(0x8000);
    int32_t na, b, cv, sv;
    memcpy(&wa, table + i, sizeof wa);         /* (T[i], T[i+1]) */
    memcpy(&wb, table + (255u - i), sizeof wb); /* (T[255−i], T[256−i]) */
    na = direct_floor_shift32(direct_i32_from_u32(direct_smlsd(wa, fw, UINT32_C(0x3FFF))), 15u);
    b = direct_floor_shift32(direct_i32_from_u32(direct_smlsdx(wb, fw, UINT32_C(0x4000))), 15u);
    cv = (qd & 1u) ? na : b;
    sv = (qd & 1u) ? b : -na;
    if ((qd & 2u) != 0u) {
        cv = -cv;
        sv = -sv;
    }
    *c = (int16_t)cv;
    *sn = (int16_t)sv;
}
#define cos_sin16_fast cos_sin16_dsp
#endif

/* The loop needs all eight low registers: not at -O0 nor with clang, which keep r7 as the frame pointer
 * (so does gcc with -fno-omit-frame-pointer: build with -DDIRECT_NO_ASM then). */
#if DIRECT_KERNEL == DIRECT_KERNEL_LEAN && defined(__GNUC__) && !defined(__clang__) && defined(__thumb__) && \
    !defined(__thumb2__) && defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__) && !defined(DIRECT_NO_ASM)
#define DIRECT_LEAN_FEATURES_ASM 1
#define DIRECT_LEAN_MAX_D 32u /* inputs copied to the stack as words: 4·(d + 4) bytes */
/*
 * Cortex-M0/M0+ (Thumb-1): IS §3.2-§3.3 for all F features in one assembly loop, because gcc 12 spills
 * the C loop (76 instructions per feature at d = 8, against 37 here). The inputs are sign-extended once
 * into a stack copy so that LDM reads two inputs and two words of W per instruction; the phase is
 * Σ W·q in u32 (MULS keeps the low 32 bits: the wrap-around of IS §3.2), four inputs per pass and one per
 * pass for the last d mod 4. IS §3.3 as in cos_sin16: A = T[i] + round_shift((T[i+1] − T[i])·f, 15),
 * B likewise on T[256 − i], T[255 − i] (LDRSH reads them; the table's end is a second base so that the
 * negated offset −2i reaches T[256 − i]), |(y1 − y0)·f| < 2^31 − 2^14 (IS §9) so adding 2^14 and an
 * arithmetic shift is the rounding; then (cos, sin) = (B, A) or (−A, B) by bit 30 of t, both negated by
 * bit 31. The same arithmetic as the C loop, which the tests run on the host. Constants the loop needs
 * rarely sit after the inputs in the stack copy (LDR with an immediate offset); the rest in high
 * registers. Needs 4 ≤ d ≤ DIRECT_LEAN_MAX_D and F ≥ 1 (the caller checks); W, C aligned (MF §1).
 */
__attribute__((noinline)) static void features_lean(const direct_model *m, const int16_t *x, int16_t *phi,
                                                    uint32_t F) {
    uint32_t buf[DIRECT_LEAN_MAX_D + 4u], d = m->n_inputs, k;
    for (k = 0u; k < d; ++k) {
        buf[k] = (uint32_t)(int32_t)x[k];
    }
    buf[d] = (uint32_t)(uintptr_t)m->table;
    buf[d + 1u] = (uint32_t)(uintptr_t)(m->table + 256); /* T[256 − i] at this end − 2i */
    buf[d + 2u] = (uint32_t)(uintptr_t)m->phase_c;      /* the next C_j, advanced by the loop */
    buf[d + 3u] = 2u * F;                                /* bytes from cos_j to sin_j */
    {
        /* LDM fills its registers in ascending order: the four it loads are pinned to r0-r3. */
        register uint32_t x0 __asm__("r0"), x1 __asm__("r1"), w0 __asm__("r2"), w1 __asm__("r3");
        register uint32_t rnd __asm__("r8") = UINT32_C(0x4000);
        register uint32_t *xs0 __asm__("r9") = buf, *end4 __asm__("r10") = buf + (d & ~3u);
        register uint32_t *xend __asm__("r11") = buf + d;
        register int16_t *opend __asm__("r12") = phi + F;
        const int32_t *w = m->phase_w;
        int16_t *op = phi;
        uint32_t *xs, t;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "mov %[xs], %[xs0]\n\t"
                         "movs %[t], #0\n"
                         "2:\n\t" /* four inputs */
                         "ldm %[xs]!, {%[x0], %[x1]}\n\t"
                         "ldm %[w]!, {%[w0], %[w1]}\n\t"
                         "muls %[w0], %[x0], %[w0]\n\t"
                         "muls %[w1], %[x1], %[w1]\n\t"
                         "adds %[t], %[t], %[w0]\n\t"
                         "adds %[t], %[t], %[w1]\n\t"
                         "ldm %[xs]!, {%[x0], %[x1]}\n\t"
                         "ldm %[w]!, {%[w0], %[w1]}\n\t"
                         "muls %[w0], %[x0], %[w0]\n\t"
                         "muls %[w1], %[x1], %[w1]\n\t"
                         "adds %[t], %[t], %[w0]\n\t"
                         "adds %[t], %[t], %[w1]\n\t"
                         "cmp %[xs], %[end4]\n\t"
                         "bne 2b\n"
                         "3:\n\t" /* the last d mod 4 inputs */
                         "cmp %[xs], %[xend]\n\t"
                         "beq 4f\n\t"
                         "ldm %[xs]!, {%[x0]}\n\t"
                         "ldm %[w]!, {%[w0]}\n\t"
                         "muls %[w0], %[x0], %[w0]\n\t"
                         "adds %[t], %[t], %[w0]\n\t"
                         "b 3b\n"
                         "4:\n\t" /* t += C_j; xs = the constants */
                         "ldr %[x0], [%[xs], #8]\n\t"
                         "ldm %[x0]!, {%[x1]}\n\t"
                         "str %[x0], [%[xs], #8]\n\t"
                         "adds %[t], %[t], %[x1]\n\t"
                         /* IS §3.3: x1 = 2i, w0 = f, w1 = A */
                         "ldr %[x0], [%[xs]]\n\t"
                         "lsrs %[x1], %[t], #22\n\t"
                         "lsls %[x1], %[x1], #24\n\t"
                         "lsrs %[x1], %[x1], #23\n\t"
                         "lsls %[w0], %[t], #10\n\t"
                         "lsrs %[w0], %[w0], #17\n\t"
                         "ldrsh %[w1], [%[x0], %[x1]]\n\t"
                         "adds %[x1], %[x1], #2\n\t"
                         "ldrsh %[x0], [%[x0], %[x1]]\n\t"
                         "subs %[x0], %[x0], %[w1]\n\t"
                         "muls %[x0], %[w0], %[x0]\n\t"
                         "add %[x0], %[rnd]\n\t"
                         "asrs %[x0], %[x0], #15\n\t"
                         "adds %[w1], %[w1], %[x0]\n\t"
                         /* B into x1 (xs is free until the stores) */
                         "ldr %[x0], [%[xs], #4]\n\t"
                         "rsbs %[x1], %[x1], #0\n\t"
                         "ldrsh %[xs], [%[x0], %[x1]]\n\t"
                         "adds %[x1], %[x1], #2\n\t"
                         "ldrsh %[x1], [%[x0], %[x1]]\n\t"
                         "subs %[xs], %[xs], %[x1]\n\t"
                         "muls %[xs], %[w0], %[xs]\n\t"
                         "add %[xs], %[rnd]\n\t"
                         "asrs %[xs], %[xs], #15\n\t"
                         "adds %[x1], %[x1], %[xs]\n\t"
                         /* quadrant: odd → (cos, sin) = (−A, B), else (B, A); negated when bit 31 is set */
                         "lsls %[w0], %[t], #1\n\t"
                         "bpl 5f\n\t"
                         "rsbs %[w0], %[w1], #0\n\t"
                         "mov %[w1], %[x1]\n\t"
                         "mov %[x1], %[w0]\n"
                         "5:\n\t"
                         "asrs %[w0], %[t], #31\n\t"
                         "eors %[x1], %[x1], %[w0]\n\t"
                         "subs %[x1], %[x1], %[w0]\n\t"
                         "eors %[w1], %[w1], %[w0]\n\t"
                         "subs %[w1], %[w1], %[w0]\n\t"
                         "strh %[x1], [%[op]]\n\t"
                         "mov %[xs], %[xend]\n\t"
                         "ldr %[w0], [%[xs], #12]\n\t"
                         "strh %[w1], [%[op], %[w0]]\n\t"
                         "adds %[op], %[op], #2\n\t"
                         "cmp %[op], %[opend]\n\t"
                         "bne 1b\n"
                         : [w] "+l"(w), [op] "+l"(op), [xs] "=&l"(xs), [t] "=&l"(t), [x0] "=&l"(x0),
                           [x1] "=&l"(x1), [w0] "=&l"(w0), [w1] "=&l"(w1)
                         : [rnd] "h"(rnd), [xs0] "h"(xs0), [end4] "h"(end4), [xend] "h"(xend), [opend] "h"(opend)
                         : "cc", "memory");
    }
}
#endif

#if defined(DIRECT_DSP_FEATURES_ASM)
/*
 * Armv7E-M (Thumb-2 with DSP): IS §3.2-§3.3 for all F features in one assembly loop (36 instructions per
 * feature at d = 8 in C, 23 here; every register is live, which the C loop cannot express). The first
 * d4 = 4·⌊min(d, DIRECT_DSP_MAX_D) / 4⌋ inputs are sign-extended once into a stack copy, so that per four
 * inputs one LDM reads them and one LDM the four words of W, and four MLA accumulate (the low 32 bits of
 * each product: IS §3.2's u32 phase); the other d − d4 inputs one at a time (LDRSH from x). IS §3.3 as the
 * C DSP kernel's cos_sin16_dsp, with one rounding constant: the table pairs are read as words (LDR allows
 * any alignment here), fw = (f − 2^15, f), then
 *   P = SMLSD(wa, fw, 2^14 − 1)  = 2^15·(−A) + r,   Q = SMLSDX(fw, wb, 2^14 − 1) = 2^15·(−B) + r'
 * (0 ≤ r, r' < 2^15: −A = ⌊(−X_A + 2^14 − 1) / 2^15⌋ is IS §3.3's v negated, and likewise B with the
 * operands swapped), and per quadrant (cos, sin) = (B, A), (−A, B), (−B, −A), (A, −B) by two branches.
 * Constants the loop needs once per feature sit after the copy (LDR with an immediate offset). Any d ≥ 1
 * and F ≥ 1 (direct_model_open takes only even b ≥ 2 for rff); W aligned (MF §1) for LDM.
 */
__attribute__((noinline)) static void features_dsp(const direct_model *m, const int16_t *x, int16_t *phi,
                                                   uint32_t F) {
    uint32_t buf[DIRECT_DSP_MAX_D + 7u], d = m->n_inputs, k;
    uint32_t d4 = d < DIRECT_DSP_MAX_D ? d & ~3u : DIRECT_DSP_MAX_D;
    for (k = 0u; k < d4; ++k) {
        buf[k] = (uint32_t)(int32_t)x[k];
    }
    {
        uint32_t *xend = buf + d4, *xs, t; /* the constants at xend[0 … 6]: */
        xend[0] = (uint32_t)(uintptr_t)m->table;
        xend[1] = 0u;                             /* unused */
        xend[2] = 2u * F;                         /* bytes from cos_j to sin_j */
        xend[3] = (uint32_t)(uintptr_t)(phi + F); /* the end of the cosines */
        xend[4] = (uint32_t)(uintptr_t)buf;
        xend[5] = (uint32_t)(uintptr_t)(x + d4); /* the inputs after the copy … */
        xend[6] = d - d4;                        /* … and how many */
        /* LDM fills its registers in ascending order: the eight it loads are pinned to r0-r7. */
        register uint32_t x0 __asm__("r0"), x1 __asm__("r1"), x2 __asm__("r2"), x3 __asm__("r3");
        register uint32_t w0 __asm__("r4"), w1 __asm__("r5"), w2 __asm__("r6"), w3 __asm__("r7");
        const uint32_t *cp = m->phase_c;
        const int32_t *w = m->phase_w;
        int16_t *op = phi;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "ldr %[xs], [%[xend], #16]\n\t"
                         "ldr %[t], [%[cp]], #4\n\t" /* t = C_j */
                         "cmp %[xs], %[xend]\n\t"        /* d < 4: no block of four */
                         "beq 3f\n"
                         "2:\n\t" /* four inputs */
                         "ldm %[xs]!, {%[x0], %[x1], %[x2], %[x3]}\n\t"
                         "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"
                         "mla %[t], %[w0], %[x0], %[t]\n\t"
                         "mla %[t], %[w1], %[x1], %[t]\n\t"
                         "mla %[t], %[w2], %[x2], %[t]\n\t"
                         "mla %[t], %[w3], %[x3], %[t]\n\t"
                         "cmp %[xs], %[xend]\n\t"
                         "bne 2b\n"
                         "3:\n\t"
                         "ldr %[x2], [%[xend], #24]\n\t" /* the inputs after the copy, one at a time */
                         "cbz %[x2], 4f\n\t"
                         "ldr %[x1], [%[xend], #20]\n"
                         "5:\n\t"
                         "ldrsh %[x0], [%[x1]], #2\n\t"
                         "ldr %[w0], [%[w]], #4\n\t"
                         "mla %[t], %[w0], %[x0], %[t]\n\t"
                         "subs %[x2], %[x2], #1\n\t"
                         "bne 5b\n"
                         "4:\n\t" /* IS §3.3: x1 = P, x2 = Q */
                         "ldr %[x0], [%[xend]]\n\t"
                         "ubfx %[x1], %[t], #22, #8\n\t"
                         "rsb %[x2], %[x1], #255\n\t"
                         "ubfx %[x3], %[t], #7, #15\n\t"
                         "ldr %[x1], [%[x0], %[x1], lsl #1]\n\t" /* (T[i], T[i+1]) */
                         "ldr %[x2], [%[x0], %[x2], lsl #1]\n\t" /* (T[255−i], T[256−i]) */
                         "add %[x3], %[x3], %[x3], lsl #16\n\t"
                         "eor %[x3], %[x3], #0x8000\n\t"
                         "movw %[w0], #0x3FFF\n\t"
                         "smlsd %[x1], %[x1], %[x3], %[w0]\n\t"
                         "smlsdx %[x2], %[x3], %[x2], %[w0]\n\t"
                         /* quadrant: C = bit 31, N = bit 30 of t; w2 = cos, w3 = sin (low registers:
                          * the flag-setting forms are the 16-bit encodings, and no flag is read after) */
                         "lsls %[w1], %[t], #1\n\t"
                         "bcs 6f\n\t"
                         "bmi 5f\n\t"
                         "asrs %[w2], %[x2], #15\n\t" /* qd 0: (B, A) */
                         "rsbs %[w2], %[w2], #0\n\t"
                         "asrs %[w3], %[x1], #15\n\t"
                         "rsbs %[w3], %[w3], #0\n\t"
                         "b 8f\n"
                         "5:\n\t"
                         "asrs %[w2], %[x1], #15\n\t" /* qd 1: (−A, B) */
                         "asrs %[w3], %[x2], #15\n\t"
                         "rsbs %[w3], %[w3], #0\n\t"
                         "b 8f\n"
                         "6:\n\t"
                         "bmi 7f\n\t"
                         "asrs %[w2], %[x2], #15\n\t" /* qd 2: (−B, −A) */
                         "asrs %[w3], %[x1], #15\n\t"
                         "b 8f\n"
                         "7:\n\t"
                         "asrs %[w2], %[x1], #15\n\t" /* qd 3: (A, −B) */
                         "rsbs %[w2], %[w2], #0\n\t"
                         "asrs %[w3], %[x2], #15\n"
                         "8:\n\t"
                         "ldr %[w0], [%[xend], #8]\n\t"
                         "strh %[w3], [%[op], %[w0]]\n\t"
                         "strh %[w2], [%[op]], #2\n\t"
                         "ldr %[w0], [%[xend], #12]\n\t"
                         "cmp %[op], %[w0]\n\t"
                         "bne 1b\n"
                         : [w] "+r"(w), [op] "+r"(op), [cp] "+r"(cp), [xs] "=&r"(xs), [t] "=&r"(t),
                           [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3), [w0] "=&r"(w0),
                           [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3)
                         : [xend] "r"(xend)
                         : "cc", "memory");
    }
}
#endif

#if DIRECT_ROTATION
/* IS §3.5: ψ_k = clamp(round_shift(Σ_j R_kj·φ_j, 15 + s_k), ±32767) from the rff features phi into psi (the
 * two do not overlap). Each product |R·φ| ≤ 2^15·32767 fits i32; the sum is i64 (|acc| < 2^46, IS §9). */
static void rotate(const direct_model *m, const int16_t *phi, int16_t *psi) {
    uint32_t b = m->n_features, k, j;
    const int16_t *row = m->rotation;
    for (k = 0u; k < b; ++k, row += b) {
        int64_t acc = 0, v;
        for (j = 0u; j < b; ++j) {
            acc += (int64_t)((int32_t)DIRECT_I16(row + j) * (int32_t)phi[j]);
        }
        v = direct_round_shift64(acc, 15u + (uint32_t)DIRECT_U8(m->rotation_shift + k));
        psi[k] = (int16_t)(v > INT64_C(32767) ? INT64_C(32767) : (v < -INT64_C(32767) ? -INT64_C(32767) : v));
    }
}
#endif

/* IS §3: the b features into phi (feature k at phi[k]). */
static void features(const direct_model *m, const int16_t *x, int16_t *phi) {
    uint32_t d = m->n_inputs, k, j;
    if (m->kind == DIRECT_KIND_LINEAR) {
        const int32_t *mb = m->linear;
        for (k = 0u; k < d; ++k) { /* IS §3.1: round_shift(M_k·q_k + B_k, 15), bounded by IS §9 */
            phi[k] = (int16_t)direct_round_shift32_bounded(
                DIRECT_I32(mb + 2u * k) * (int32_t)x[k] + DIRECT_I32(mb + 2u * k + 1u), 15u);
        }
        phi[d] = (int16_t)(INT32_C(1) << m->feature_frac);
    } else {
        uint32_t F = (uint32_t)m->n_features / 2u;
        const int32_t *w = m->phase_w;
        int16_t *raw = phi; /* the rff features of IS §3.2; with a rotation beside phi, then rotated into it */
#if DIRECT_ROTATION
        if (m->rotation != NULL) {
            raw = phi + m->n_features;
        }
#endif
#if defined(DIRECT_DSP_FEATURES_ASM)
        (void)w;
        (void)j;
        features_dsp(m, x, raw, F); /* every d */
#elif DIRECT_KERNEL == DIRECT_KERNEL_DSP
        const int16_t *table = m->table;
        int16_t *sn = raw + F;
        for (j = 0u; j + 2u <= F; j += 2u, w += 2u * d) {
            uint32_t t[2];
            t[0] = DIRECT_U32(m->phase_c + j);
            t[1] = DIRECT_U32(m->phase_c + j + 1u);
            phase_pair(w, x, d, t);
            cos_sin16_fast(table, t[0], raw + j, sn + j);
            cos_sin16_fast(table, t[1], raw + j + 1u, sn + j + 1u);
        }
        if (j < F) {
            cos_sin16_fast(table, phase_one(w, x, d, DIRECT_U32(m->phase_c + j)), raw + j, sn + j);
        }
#else
        j = 0u;
#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD
        j = features_simd(m, x, raw, F); /* all but the last F mod 8 (AVX2) or F mod 4 (NEON) */
        w += j * d;
#elif defined(DIRECT_LEAN_FEATURES_ASM)
        if (d >= 4u && d <= DIRECT_LEAN_MAX_D && F > 0u) {
            features_lean(m, x, raw, F);
            j = F;
        }
#endif
        for (; j < F; ++j, w += d) { /* IS §3.2: phase in u32 turns, wrap-around intended */
            uint32_t t = DIRECT_U32(m->phase_c + j);
            for (k = 0u; k < d; ++k) {
                t += (uint32_t)DIRECT_I32(w + k) * (uint32_t)(int32_t)x[k];
            }
            cos_sin16(m->table, t, &raw[j], &raw[F + j]);
        }
#endif
#if DIRECT_ROTATION
        if (m->rotation != NULL) {
            rotate(m, raw, phi);
        }
#endif
    }
    if (m->gains != NULL) { /* IS §3.4: |φ·G| ≤ 32767·2^15, inside the bounded shift's range */
        const uint16_t *g = m->gains;
        uint32_t b = m->n_features;
        for (k = 0u; k < b; ++k) {
            phi[k] = (int16_t)direct_round_shift32_bounded((int32_t)phi[k] * (int32_t)DIRECT_U16(g + k), 15u);
        }
    }
}

/* Forced inline where predict_one and direct_classify's entry points (below) share a kernel that runs once
 * per pass of rows (DSP dot2_dense4), and for the two shared steps: no call per pass in predict_one. The
 * once-per-prediction kernels (pair_features, dot_dense4_natural) stay calls: a few instructions per
 * prediction, not their code twice. */
#if defined(__GNUC__)
#define DIRECT_INLINE __attribute__((always_inline)) inline
#else
#define DIRECT_INLINE inline
#endif

/*
 * MF §6.1 dense4 kernels. Each computes the dot products of samples with the features; the caller rounds
 * them (IS §4). Sums are kept in u32: every partial sum of the true products fits i32 (IS §9), and where a
 * kernel adds offset levels it wraps mod 2^32 and the final value is still exact.
 */
#if DIRECT_KERNEL == DIRECT_KERNEL_VECTOR
/* For hosts with SIMD (build with -O3 -DDIRECT_VECTORIZE): nibble n holds level (n ^ 8) − 8, so
 * (byte ^ 0x88) gives the offset levels w + 8 of both nibbles as plain unsigned fields; the caller
 * subtracts 8·Σφ once per sample. Straight-line arithmetic that compilers vectorise. */
static uint32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t nbytes) {
    uint32_t acc = 0u, i;
    for (i = 0u; i < nbytes; ++i) {
        uint32_t c = (uint32_t)DIRECT_U8(w + i) ^ UINT32_C(0x88);
        uint32_t f0 = (uint32_t)(int32_t)phi[2u * i], f1 = (uint32_t)(int32_t)phi[2u * i + 1u];
        acc += (c & UINT32_C(0xF)) * f0 + (c >> 4) * f1;
    }
    return acc;
}
#define DIRECT_DENSE4_OFFSET 1
#elif DIRECT_KERNEL == DIRECT_KERNEL_SIMD && defined(DIRECT_HAVE_AVX2)
/*
 * AVX2: 32 bytes of a row are sixteen 16-bit lanes, lane m holding the nibbles of weights 4m … 4m+3; the
 * signed level of nibble n is (lane << (12 − 4n)) >> 12 (VPSLLW, VPSRAW: no table, no offset), so four
 * shift pairs give four vectors L_n with L_n[m] = w_{4m+n}. The 64 features of each full group are stored
 * to match once per prediction (pair_features: P_n[m] = φ_{4m+n}, in place), and VPMADDWD of L_n with P_n
 * adds two products per 32-bit lane (|sum| ≤ 2·8·32768). Four samples per pass share the feature loads.
 * Lane sums wrap mod 2^32; the total is exact (IS §9). Bytes after the last full group use the natural
 * feature order.
 */
#define DIRECT_SIMD_GROUP 32u /* row bytes per group: 64 weights */

/* φ_{64g + 4m + n} moves to position 64g + 16n + m for every full group g (a 4-way de-interleave). */
static void pair_features(int16_t *phi, uint32_t groups) {
    /* In each 128-bit lane (features 8q … 8q+7), dword n becomes (φ_{8q+n}, φ_{8q+4+n}). */
    const __m256i spread = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9,
                                            2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
    /* Then qword n of each register holds dword n of its two lanes (q even, q odd). */
    const __m256i pairs = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint32_t g;
    for (g = 0u; g < groups; ++g, phi += 64) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)phi);
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(phi + 16));
        __m256i a2 = _mm256_loadu_si256((const __m256i *)(const void *)(phi + 32));
        __m256i a3 = _mm256_loadu_si256((const __m256i *)(const void *)(phi + 48));
        __m256i lo01, hi01, lo23, hi23;
        a0 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(a0, spread), pairs);
        a1 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(a1, spread), pairs);
        a2 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(a2, spread), pairs);
        a3 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(a3, spread), pairs);
        lo01 = _mm256_unpacklo_epi64(a0, a1); /* (n = 0 | n = 2) for q = 0 … 3 */
        hi01 = _mm256_unpackhi_epi64(a0, a1); /* (n = 1 | n = 3) */
        lo23 = _mm256_unpacklo_epi64(a2, a3); /* the same for q = 4 … 7 */
        hi23 = _mm256_unpackhi_epi64(a2, a3);
        _mm256_storeu_si256((__m256i *)(void *)phi, _mm256_permute2x128_si256(lo01, lo23, 0x20));
        _mm256_storeu_si256((__m256i *)(void *)(phi + 16), _mm256_permute2x128_si256(hi01, hi23, 0x20));
        _mm256_storeu_si256((__m256i *)(void *)(phi + 32), _mm256_permute2x128_si256(lo01, lo23, 0x31));
        _mm256_storeu_si256((__m256i *)(void *)(phi + 48), _mm256_permute2x128_si256(hi01, hi23, 0x31));
    }
}

#define DIRECT_AVX2_SAMPLE(acc, row)                                                                   \
    do {                                                                                               \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)(const void *)(row));                         \
        __m256i s_ = _mm256_madd_epi16(_mm256_srai_epi16(_mm256_slli_epi16(v_, 12), 12), p0);          \
        s_ = _mm256_add_epi32(s_, _mm256_madd_epi16(_mm256_srai_epi16(_mm256_slli_epi16(v_, 8), 12), p1)); \
        s_ = _mm256_add_epi32(s_, _mm256_madd_epi16(_mm256_srai_epi16(_mm256_slli_epi16(v_, 4), 12), p2)); \
        s_ = _mm256_add_epi32(s_, _mm256_madd_epi16(_mm256_srai_epi16(v_, 12), p3));                   \
        acc = _mm256_add_epi32(acc, s_);                                                               \
    } while (0)

static uint32_t hsum_epi32(__m256i v) { /* the eight lanes' sum mod 2^32 */
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

/* Natural-order bytes from..row-1 of one sample (after the full groups). */
static uint32_t dense4_tail(const uint8_t *w, const int16_t *phi, uint32_t from, uint32_t row) {
    uint32_t acc = 0u, i;
    for (i = from; i < row; ++i) {
        uint32_t c = w[i];
        acc += (uint32_t)direct_nibble(c & 15u) * (uint32_t)(int32_t)phi[2u * i] +
               (uint32_t)direct_nibble(c >> 4) * (uint32_t)(int32_t)phi[2u * i + 1u];
    }
    return acc;
}

/* Samples at w, w + row, w + 2·row, w + 3·row (n of them, 1 ≤ n ≤ 4) into acc[0 … n−1]. */
static void dotn_dense4(const uint8_t *w, uint32_t row, uint32_t n, const int16_t *phi, uint32_t *acc) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    uint32_t groups = row / DIRECT_SIMD_GROUP, g, s;
    const int16_t *ph = phi;
    for (g = 0u; g < groups; ++g, ph += 64) {
        const __m256i p0 = _mm256_loadu_si256((const __m256i *)(const void *)ph);
        const __m256i p1 = _mm256_loadu_si256((const __m256i *)(const void *)(ph + 16));
        const __m256i p2 = _mm256_loadu_si256((const __m256i *)(const void *)(ph + 32));
        const __m256i p3 = _mm256_loadu_si256((const __m256i *)(const void *)(ph + 48));
        const uint8_t *r = w + DIRECT_SIMD_GROUP * g;
        DIRECT_AVX2_SAMPLE(a0, r);
        if (n == 4u) { /* the common case: one branch per group, predicted */
            DIRECT_AVX2_SAMPLE(a1, r + row);
            DIRECT_AVX2_SAMPLE(a2, r + 2u * row);
            DIRECT_AVX2_SAMPLE(a3, r + 3u * row);
        }
    }
    acc[0] = hsum_epi32(a0);
    if (n == 4u) {
        acc[1] = hsum_epi32(a1);
        acc[2] = hsum_epi32(a2);
        acc[3] = hsum_epi32(a3);
    }
    for (s = 0u; s < n; ++s) {
        acc[s] += dense4_tail(w + s * row, phi, DIRECT_SIMD_GROUP * groups, row);
    }
}
#undef DIRECT_AVX2_SAMPLE
#elif DIRECT_KERNEL == DIRECT_KERNEL_SIMD && defined(DIRECT_HAVE_NEON)
/*
 * aarch64 NEON: 16 bytes of a row are eight 16-bit lanes, lane m holding the nibbles of weights 4m … 4m+3;
 * the signed level of nibble n is (lane << (12 − 4n)) >> 12 (SHL, SSHR), so L_n[m] = w_{4m+n}. LD4 reads the
 * 32 features of a group de-interleaved by four, P_n[m] = φ_{4m+n}, so the features stay in natural order.
 * SMLAL/SMLAL2 widen each product to 32 bits; lane sums wrap mod 2^32 and the total is exact (IS §9).
 * Four samples per pass share the feature loads.
 */
#define DIRECT_SIMD_GROUP 16u /* row bytes per group: 32 weights */

static void pair_features(int16_t *phi, uint32_t groups) { /* LD4 de-interleaves: nothing to do */
    (void)phi;
    (void)groups;
}

#define DIRECT_NEON_LEVEL(v, sh) vshrq_n_s16(vshlq_n_s16((v), (sh)), 12)
#define DIRECT_NEON_SAMPLE(acc, row)                                                                   \
    do {                                                                                               \
        int16x8_t v_ = vreinterpretq_s16_u8(vld1q_u8(row)), l_;                                        \
        l_ = DIRECT_NEON_LEVEL(v_, 12);                                                                \
        acc = vmlal_s16(acc, vget_low_s16(l_), vget_low_s16(p.val[0]));                                \
        acc = vmlal_high_s16(acc, l_, p.val[0]);                                                       \
        l_ = DIRECT_NEON_LEVEL(v_, 8);                                                                 \
        acc = vmlal_s16(acc, vget_low_s16(l_), vget_low_s16(p.val[1]));                                \
        acc = vmlal_high_s16(acc, l_, p.val[1]);                                                       \
        l_ = DIRECT_NEON_LEVEL(v_, 4);                                                                 \
        acc = vmlal_s16(acc, vget_low_s16(l_), vget_low_s16(p.val[2]));                                \
        acc = vmlal_high_s16(acc, l_, p.val[2]);                                                       \
        l_ = vshrq_n_s16(v_, 12);                                                                      \
        acc = vmlal_s16(acc, vget_low_s16(l_), vget_low_s16(p.val[3]));                                \
        acc = vmlal_high_s16(acc, l_, p.val[3]);                                                       \
    } while (0)

/* Natural-order bytes from..row-1 of one sample (after the full groups). */
static uint32_t dense4_tail(const uint8_t *w, const int16_t *phi, uint32_t from, uint32_t row) {
    uint32_t acc = 0u, i;
    for (i = from; i < row; ++i) {
        uint32_t c = w[i];
        acc += (uint32_t)direct_nibble(c & 15u) * (uint32_t)(int32_t)phi[2u * i] +
               (uint32_t)direct_nibble(c >> 4) * (uint32_t)(int32_t)phi[2u * i + 1u];
    }
    return acc;
}

/* Samples at w, w + row, w + 2·row, w + 3·row (n = 1 or 4 of them) into acc[0 … n−1]. */
static void dotn_dense4(const uint8_t *w, uint32_t row, uint32_t n, const int16_t *phi, uint32_t *acc) {
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
    uint32_t groups = row / DIRECT_SIMD_GROUP, g, s;
    for (g = 0u; g < groups; ++g) {
        const int16x8x4_t p = vld4q_s16(phi + 32u * g);
        const uint8_t *r = w + DIRECT_SIMD_GROUP * g;
        DIRECT_NEON_SAMPLE(a0, r);
        if (n == 4u) {
            DIRECT_NEON_SAMPLE(a1, r + row);
            DIRECT_NEON_SAMPLE(a2, r + 2u * row);
            DIRECT_NEON_SAMPLE(a3, r + 3u * row);
        }
    }
    acc[0] = vaddvq_u32(vreinterpretq_u32_s32(a0));
    if (n == 4u) {
        acc[1] = vaddvq_u32(vreinterpretq_u32_s32(a1));
        acc[2] = vaddvq_u32(vreinterpretq_u32_s32(a2));
        acc[3] = vaddvq_u32(vreinterpretq_u32_s32(a3));
    }
    for (s = 0u; s < n; ++s) {
        acc[s] += dense4_tail(w + s * row, phi, DIRECT_SIMD_GROUP * groups, row);
    }
}
#undef DIRECT_NEON_SAMPLE
#undef DIRECT_NEON_LEVEL
#elif DIRECT_KERNEL == DIRECT_KERNEL_DSP
/*
 * On the DSP extension, table-free: each 32-bit word of a row holds nibbles n0 … n7 (weights 8g … 8g+7);
 * c = word ^ 0x88888888 turns them into offset levels w + 8 in [0, 15], and (c >> 4m) & 0x000F000F is the
 * pair (w_{8g+m} + 8, w_{8g+m+4} + 8) as two 16-bit halves: one AND and one SMLAD per two weights. The
 * features of each full pair of groups of 8 are stored to match, pairs (φ_m, φ_{m+4}) (pair_features), and
 * the caller subtracts 8·Σφ once per sample. Two samples per pass share the feature loads, two words of
 * each per pass; bytes after the last such pair of words use the natural feature order. Words are read
 * with memcpy (any alignment: LDR on Armv7-M).
 */
#define DIRECT_NIB2 UINT32_C(0x000F000F)
#define DIRECT_NIB8 UINT32_C(0x88888888)
static inline uint32_t ld32(const void *p) { /* any alignment; one LDR on Armv7-M */
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st32(void *p, uint32_t v) {
    memcpy(p, &v, sizeof v);
}

/* Pairs the features of each full group of 8 as (φm, φm+4) in place; returns Σφ over those groups. */
static uint32_t pair_features(int16_t *phi, uint32_t groups) {
    uint32_t g, sum = 0u;
#if defined(DIRECT_DSP_FEATURES_ASM)
    /* A 4-byte aligned phi in assembly: LDM, four SMLAD for Σφ, PKHBT/PKHTB, STM; 14 instructions per
     * group of 8 against 22 from the C below (gcc forms the pairs with UXTH/AND and ORR). */
    if (((uintptr_t)phi & (uintptr_t)3u) == 0u && groups != 0u) {
        register uint32_t v0 __asm__("r0"), v1 __asm__("r1"), v2 __asm__("r2"), v3 __asm__("r3");
        register uint32_t p0 __asm__("r4"), p1 __asm__("r5"), p2 __asm__("r6"), p3 __asm__("r7");
        uint32_t ones = UINT32_C(0x00010001);
        const int16_t *end = phi + 8u * groups;
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t"
                         "ldm %[ph], {%[v0], %[v1], %[v2], %[v3]}\n\t"
                         "smlad %[sum], %[v0], %[ones], %[sum]\n\t"
                         "smlad %[sum], %[v1], %[ones], %[sum]\n\t"
                         "smlad %[sum], %[v2], %[ones], %[sum]\n\t"
                         "smlad %[sum], %[v3], %[ones], %[sum]\n\t"
                         "pkhbt %[p0], %[v0], %[v2], lsl #16\n\t"
                         "pkhtb %[p1], %[v2], %[v0], asr #16\n\t"
                         "pkhbt %[p2], %[v1], %[v3], lsl #16\n\t"
                         "pkhtb %[p3], %[v3], %[v1], asr #16\n\t"
                         "stm %[ph]!, {%[p0], %[p1], %[p2], %[p3]}\n\t"
                         "cmp %[ph], %[end]\n\t"
                         "bne 1b\n"
                         : [ph] "+r"(phi), [sum] "+r"(sum), [v0] "=&r"(v0), [v1] "=&r"(v1), [v2] "=&r"(v2),
                           [v3] "=&r"(v3), [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2), [p3] "=&r"(p3)
                         : [ones] "r"(ones), [end] "r"(end)
                         : "memory");
        return sum;
    }
#endif
    for (g = 0u; g < groups; ++g, phi += 8) {
        uint32_t v0 = ld32(phi), v1 = ld32(phi + 2), v2 = ld32(phi + 4), v3 = ld32(phi + 6);
        sum = direct_smlad(v0, UINT32_C(0x00010001), sum);
        sum = direct_smlad(v1, UINT32_C(0x00010001), sum);
        sum = direct_smlad(v2, UINT32_C(0x00010001), sum);
        sum = direct_smlad(v3, UINT32_C(0x00010001), sum);
        st32(phi, (v0 & UINT32_C(0xFFFF)) | (v2 << 16));         /* (φ0, φ4): PKHBT */
        st32(phi + 2, (v0 >> 16) | (v2 & UINT32_C(0xFFFF0000))); /* (φ1, φ5): PKHTB */
        st32(phi + 4, (v1 & UINT32_C(0xFFFF)) | (v3 << 16));
        st32(phi + 6, (v1 >> 16) | (v3 & UINT32_C(0xFFFF0000)));
    }
    return sum;
}

/* The nibble-pair mask, kept in a register: AND then takes the word's shift for free (AND Rd, Rm, Rn, LSR #k)
 * instead of a separate LSR before an AND with an immediate. */
#if defined(__GNUC__) && defined(__ARM_FEATURE_DSP)
#define DIRECT_MASK_IN_REGISTER(m) __asm__("" : "+r"(m))
#else
#define DIRECT_MASK_IN_REGISTER(m) ((void)0)
#endif

#define DIRECT_DSP_WORD(acc, c, f0, f1, f2, f3)                                                        \
    do {                                                                                               \
        acc = direct_smlad((c) & mask, f0, acc);                                                       \
        acc = direct_smlad(((c) >> 4) & mask, f1, acc);                                                \
        acc = direct_smlad(((c) >> 8) & mask, f2, acc);                                                \
        acc = direct_smlad(((c) >> 12) & mask, f3, acc);                                               \
    } while (0)

static inline uint32_t dsp_byte_pair(uint32_t byte) { /* (low + 8, high + 8) of one byte as halves */
    uint32_t c = byte ^ UINT32_C(0x88);
    return (c | (c << 12)) & DIRECT_NIB2;
}

/* Samples at w0 and w1 (row bytes each) into acc[0] and acc[1]: 16 weights of each per pass. */
static DIRECT_INLINE void dot2_dense4(const uint8_t *w0, const uint8_t *w1, const int16_t *phi, uint32_t row, uint32_t *acc) {
    uint32_t a0 = 0u, a1 = 0u, i, n = row / 4u, mask = DIRECT_NIB2;
    const uint8_t *end = w0 + 4u * (n & ~1u);
    DIRECT_MASK_IN_REGISTER(mask);
    while (w0 != end) {
        uint32_t f0 = ld32(phi), f1 = ld32(phi + 2), f2 = ld32(phi + 4), f3 = ld32(phi + 6);
        uint32_t c0 = ld32(w0) ^ DIRECT_NIB8, c1 = ld32(w1) ^ DIRECT_NIB8;
        DIRECT_DSP_WORD(a0, c0, f0, f1, f2, f3);
        DIRECT_DSP_WORD(a1, c1, f0, f1, f2, f3);
        f0 = ld32(phi + 8);
        f1 = ld32(phi + 10);
        f2 = ld32(phi + 12);
        f3 = ld32(phi + 14);
        c0 = ld32(w0 + 4) ^ DIRECT_NIB8;
        c1 = ld32(w1 + 4) ^ DIRECT_NIB8;
        DIRECT_DSP_WORD(a0, c0, f0, f1, f2, f3);
        DIRECT_DSP_WORD(a1, c1, f0, f1, f2, f3);
        w0 += 8;
        w1 += 8;
        phi += 16;
    }
    for (i = 0u; i < row - 4u * (n & ~1u); ++i) { /* the bytes after the last pair of words: natural order */
        uint32_t f = ld32(phi + 2u * i);
        a0 = direct_smlad(dsp_byte_pair(w0[i]), f, a0);
        a1 = direct_smlad(dsp_byte_pair(w1[i]), f, a1);
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* One sample on the paired features, as dot2_dense4 does each of its two: an odd count of rows after the
 * pairing (a classifier's odd count of logit rows per sample); 8 weights per pass. */
static uint32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t row) {
    uint32_t a = 0u, i, mask = DIRECT_NIB2;
    const uint8_t *end = w + 8u * (row / 8u);
    DIRECT_MASK_IN_REGISTER(mask);
    for (; w != end; w += 4, phi += 8) {
        uint32_t c = ld32(w) ^ DIRECT_NIB8;
        DIRECT_DSP_WORD(a, c, ld32(phi), ld32(phi + 2), ld32(phi + 4), ld32(phi + 6));
    }
    for (i = 0u; i < row - 8u * (row / 8u); ++i) { /* the bytes after the last pair of words: natural order */
        a = direct_smlad(dsp_byte_pair(w[i]), ld32(phi + 2u * i), a);
    }
    return a;
}

/* One word of the row (8 weights) in dot_dense4_natural's loop below. */
#define DIRECT_DSP_NATURAL_WORD                                                                        \
    "ldr %[c], [%[w]], #4\n\t"                                                                        \
    "ldm %[ph]!, {%[f0], %[f1], %[f2], %[f3]}\n\t"                                                    \
    "and %[e], %[mask], %[c], lsl #4\n\t"                                                             \
    "and %[c], %[c], %[mask]\n\t"                                                                     \
    "sxtb16 %[x], %[e]\n\t"                                                                           \
    "pkhbt %[pr], %[f0], %[f2], lsl #16\n\t"                                                          \
    "smlald %[lo], %[hi], %[x], %[pr]\n\t"                                                            \
    "sxtb16 %[e], %[e], ror #8\n\t"                                                                   \
    "pkhbt %[pr], %[f1], %[f3], lsl #16\n\t"                                                          \
    "smlald %[lo], %[hi], %[e], %[pr]\n\t"                                                            \
    "sxtb16 %[x], %[c]\n\t"                                                                           \
    "pkhtb %[pr], %[f2], %[f0], asr #16\n\t"                                                          \
    "smlald %[lo], %[hi], %[x], %[pr]\n\t"                                                            \
    "sxtb16 %[c], %[c], ror #8\n\t"                                                                   \
    "pkhtb %[pr], %[f3], %[f1], asr #16\n\t"                                                          \
    "smlald %[lo], %[hi], %[c], %[pr]\n\t"
/* One sample on the features in natural order (S = 1, and odd S's last sample before the pairing): pairing
 * the features costs about 2.5 instructions per feature, more than one sample saves with it. Signed
 * levels, no offset. On Thumb-2 with a 4-byte aligned phi, per word of the row (8 weights):
 * e = (c << 4) & 0xF0F0F0F0 and o = c & 0xF0F0F0F0 hold each nibble at the top of its byte, so SXTB16
 * (bytes 0 and 2, or 1 and 3 with ROR #8) gives the pairs (16·w0, 16·w4), (16·w2, 16·w6), (16·w1, 16·w5),
 * (16·w3, 16·w7) as signed halves; PKHBT/PKHTB pair the features to match, (φ0, φ4) …; SMLALD accumulates
 * in 64 bits, where 16·Σ w·φ cannot overflow (|16·w·φ| < 2^22, b < 2^16), and the sum is exact after a
 * shift by 4. 17 instructions per 8 weights. Elsewhere (and for the last row % 4 bytes) the plain
 * signed-nibble loop. */
static uint32_t dot_dense4_natural(const uint8_t *w, const int16_t *phi, uint32_t row) {
    uint32_t a = 0u, i = 0u;
#if defined(DIRECT_DSP_FEATURES_ASM)
    if (((uintptr_t)phi & (uintptr_t)3u) == 0u && row >= 4u) {
        register uint32_t f0 __asm__("r0"), f1 __asm__("r1"), f2 __asm__("r2"), f3 __asm__("r3");
        uint32_t lo = 0u, hi = 0u, mask = UINT32_C(0xF0F0F0F0), c = (row / 4u) & 1u, e, x, pr;
        const uint8_t *end = w + 4u * (row / 4u);
        const int16_t *ph = phi;
        /* Two words per pass (the loop's compare and branch once per 16 weights); an odd word count
         * (c = 1 on entry) enters at the second. */
        __asm__ volatile(".syntax unified\n\t"
                         "cbnz %[c], 2f\n"
                         "1:\n\t" DIRECT_DSP_NATURAL_WORD
                         "2:\n\t" DIRECT_DSP_NATURAL_WORD
                         "cmp %[w], %[end]\n\t"
                         "bne 1b\n"
                         : [w] "+r"(w), [ph] "+r"(ph), [lo] "+r"(lo), [hi] "+r"(hi), [c] "+l"(c), [e] "=&r"(e),
                           [x] "=&r"(x), [pr] "=&r"(pr), [f0] "=&r"(f0), [f1] "=&r"(f1), [f2] "=&r"(f2),
                           [f3] "=&r"(f3)
                         : [mask] "r"(mask), [end] "r"(end)
                         : "memory");
        a = (lo >> 4) | (hi << 28); /* the 64-bit sum / 16, mod 2^32 */
        phi = ph;
        row -= 4u * (row / 4u);
    }
#endif
    for (; i < row; ++i, phi += 2) {
        uint32_t c = w[i];
        a += (uint32_t)direct_nibble(c & 15u) * (uint32_t)(int32_t)phi[0] +
             (uint32_t)direct_nibble(c >> 4) * (uint32_t)(int32_t)phi[1];
    }
    return a;
}
#undef DIRECT_DSP_NATURAL_WORD
#undef DIRECT_DSP_WORD
#define DIRECT_DENSE4_OFFSET 1
#define DIRECT_DENSE4_PAIRS 1
#elif DIRECT_KERNEL == DIRECT_KERNEL_LEAN
/*
 * Armv6-M: the signed level of nibble m of a word is (word << (28 − 4m)) >> 28, an arithmetic shift (two
 * instructions, one for the top nibble), so no table base stays live. Two samples per pass share each
 * feature, read two at a time from a word; words need 4-byte aligned rows and features (an unaligned LDR
 * faults on these cores), otherwise the byte-wise loop below runs.
 */
#define DIRECT_LEVEL_AT(c, m) direct_floor_shift32(direct_i32_from_u32((c) << (28u - 4u * (m))), 28u)
#define DIRECT_LEAN_STEP(f, m)                                                                         \
    do {                                                                                               \
        uint32_t p_ = (uint32_t)direct_sext16(f);                                                      \
        a0 += (uint32_t)DIRECT_LEVEL_AT(c0, (m)) * p_;                                                 \
        a1 += (uint32_t)DIRECT_LEVEL_AT(c1, (m)) * p_;                                                 \
        p_ = (uint32_t)direct_high16(f);                                                               \
        a0 += (uint32_t)DIRECT_LEVEL_AT(c0, (m) + 1u) * p_;                                            \
        a1 += (uint32_t)DIRECT_LEVEL_AT(c1, (m) + 1u) * p_;                                            \
    } while (0)

#if defined(__GNUC__) && defined(__thumb__) && !defined(__thumb2__) && !defined(__OPTIMIZE_SIZE__) && \
    !defined(DIRECT_NO_ASM)
/* Cortex-M0/M0+ (Thumb-1): the loop below in assembly, because the compiler hoists the feature
 * extractions and spills them. Per word of each sample (8 weights × 2 samples): 77 instructions, about
 * 4.8 per weight. Same arithmetic as the C loop (which the tests run on the host), instruction for
 * instruction: SXTH/ASR split a feature word, LSLS+ASRS extract a signed nibble, MULS+ADD accumulate. */
#define DIRECT_M0_LEVEL(c, a, sh) "lsls %[t], %[" c "], #" sh "\n\tasrs %[t], %[t], #28\n\tmuls %[t], %[p], %[t]\n\tadd %[" a "], %[t]\n\t"
#define DIRECT_M0_TOP(c, a) "asrs %[t], %[" c "], #28\n\tmuls %[t], %[f], %[t]\n\tadd %[" a "], %[t]\n\t"
#define DIRECT_M0_HIGH(c, a, sh) "lsls %[t], %[" c "], #" sh "\n\tasrs %[t], %[t], #28\n\tmuls %[t], %[f], %[t]\n\tadd %[" a "], %[t]\n\t"
#define DIRECT_M0_PAIR(sl, sh)                                                                              \
    "ldm %[ph]!, {%[f]}\n\tsxth %[p], %[f]\n\t" DIRECT_M0_LEVEL("c0", "a0", sl) DIRECT_M0_LEVEL("c1", "a1", sl) \
    "asrs %[f], %[f], #16\n\t" DIRECT_M0_HIGH("c0", "a0", sh) DIRECT_M0_HIGH("c1", "a1", sh)
__attribute__((noinline)) static void dot2_dense4_words(const uint32_t *w0, const uint32_t *w1, const uint32_t *ph, uint32_t n,
                              uint32_t *acc) {
    /* The accumulators and the second row's pointer live in high registers (ADD, MOV and CMP reach them). */
    register uint32_t a0 __asm__("r8") = 0u, a1 __asm__("r9") = 0u;
    register const uint32_t *w1h __asm__("r10") = w1, *end __asm__("r11") = w0 + n;
    uint32_t c0, c1, f, p, t;
    if (n == 0u) {
        acc[0] = acc[1] = 0u;
        return;
    }
    __asm__ volatile(".syntax unified\n"
                     "1:\n\t"
                     "mov %[t], %[w1]\n\tldm %[t]!, {%[c1]}\n\tmov %[w1], %[t]\n\t"
                     "ldm %[w0]!, {%[c0]}\n\t"
                     DIRECT_M0_PAIR("28", "24") DIRECT_M0_PAIR("20", "16") DIRECT_M0_PAIR("12", "8")
                     "ldm %[ph]!, {%[f]}\n\tsxth %[p], %[f]\n\t"
                     DIRECT_M0_LEVEL("c0", "a0", "4") DIRECT_M0_LEVEL("c1", "a1", "4")
                     "asrs %[f], %[f], #16\n\t" DIRECT_M0_TOP("c0", "a0") DIRECT_M0_TOP("c1", "a1")
                     "cmp %[w0], %[end]\n\tbne 1b\n"
                     : [w0] "+l"(w0), [ph] "+l"(ph), [a0] "+h"(a0), [a1] "+h"(a1), [w1] "+h"(w1h),
                       [c0] "=&l"(c0), [c1] "=&l"(c1), [f] "=&l"(f), [p] "=&l"(p), [t] "=&l"(t)
                     : [end] "h"(end)
                     : "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
}

/* One sample (S = 1, or odd S's last one): the same steps for one row, 46 instructions per word (5.75 per
 * weight) against about 10 per weight in the byte-wise loop. */
#define DIRECT_M0_PAIR1(sl, sh)                                                                         \
    "ldm %[ph]!, {%[f]}\n\tsxth %[p], %[f]\n\t" DIRECT_M0_LEVEL("c0", "a0", sl) "asrs %[f], %[f], #16\n\t" \
        DIRECT_M0_HIGH("c0", "a0", sh)
__attribute__((noinline)) static uint32_t dot_dense4_words(const uint32_t *w0, const uint32_t *ph, uint32_t n) {
    register uint32_t a0 __asm__("r8") = 0u;
    register const uint32_t *end __asm__("r9") = w0 + n;
    uint32_t c0, f, p, t;
    if (n == 0u) {
        return 0u;
    }
    __asm__ volatile(".syntax unified\n"
                     "1:\n\t"
                     "ldm %[w0]!, {%[c0]}\n\t"
                     DIRECT_M0_PAIR1("28", "24") DIRECT_M0_PAIR1("20", "16") DIRECT_M0_PAIR1("12", "8")
                     "ldm %[ph]!, {%[f]}\n\tsxth %[p], %[f]\n\t" DIRECT_M0_LEVEL("c0", "a0", "4")
                     "asrs %[f], %[f], #16\n\t" DIRECT_M0_TOP("c0", "a0")
                     "cmp %[w0], %[end]\n\tbne 1b\n"
                     : [w0] "+l"(w0), [ph] "+l"(ph), [a0] "+h"(a0), [c0] "=&l"(c0), [f] "=&l"(f), [p] "=&l"(p),
                       [t] "=&l"(t)
                     : [end] "h"(end)
                     : "cc", "memory");
    return a0;
}
#undef DIRECT_M0_PAIR1
#undef DIRECT_M0_PAIR
#undef DIRECT_M0_HIGH
#undef DIRECT_M0_TOP
#undef DIRECT_M0_LEVEL
#else
static void dot2_dense4_words(const uint32_t *w0, const uint32_t *w1, const uint32_t *ph, uint32_t n,
                              uint32_t *acc) {
    uint32_t a0 = 0u, a1 = 0u;
    const uint32_t *end = w0 + n;
    while (w0 != end) {
        uint32_t c0 = *w0++, c1 = *w1++, f;
        f = *ph++;
        DIRECT_LEAN_STEP(f, 0u);
        f = *ph++;
        DIRECT_LEAN_STEP(f, 2u);
        f = *ph++;
        DIRECT_LEAN_STEP(f, 4u);
        f = *ph++;
        DIRECT_LEAN_STEP(f, 6u);
    }
    acc[0] = a0;
    acc[1] = a1;
}

static uint32_t dot_dense4_words(const uint32_t *w0, const uint32_t *ph, uint32_t n) {
    uint32_t a0 = 0u, k;
    const uint32_t *end = w0 + n;
    while (w0 != end) {
        uint32_t c0 = *w0++;
        for (k = 0u; k < 8u; k += 2u) {
            uint32_t f = *ph++;
            a0 += (uint32_t)DIRECT_LEVEL_AT(c0, k) * (uint32_t)direct_sext16(f);
            a0 += (uint32_t)DIRECT_LEVEL_AT(c0, k + 1u) * (uint32_t)direct_high16(f);
        }
    }
    return a0;
}
#endif
#undef DIRECT_LEAN_STEP

static uint32_t dot_dense4_bytes(const uint8_t *w, const int16_t *phi, uint32_t row) {
    uint32_t a = 0u, i;
    for (i = 0u; i < row; ++i, phi += 2) {
        uint32_t c = w[i];
        a += (uint32_t)DIRECT_LEVEL_AT(c, 0u) * (uint32_t)(int32_t)phi[0] +
             (uint32_t)DIRECT_LEVEL_AT(c, 1u) * (uint32_t)(int32_t)phi[1];
    }
    return a;
}

static void dot2_dense4(const uint8_t *w0, const uint8_t *w1, const int16_t *phi, uint32_t row, uint32_t *acc) {
    if ((((uintptr_t)w0 | (uintptr_t)w1 | (uintptr_t)phi | (uintptr_t)row) & (uintptr_t)3u) == 0u) {
        dot2_dense4_words((const uint32_t *)(const void *)w0, (const uint32_t *)(const void *)w1,
                          (const uint32_t *)(const void *)phi, row / 4u, acc);
    } else {
        acc[0] = dot_dense4_bytes(w0, phi, row);
        acc[1] = dot_dense4_bytes(w1, phi, row);
    }
}

static uint32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t row) {
    if ((((uintptr_t)w | (uintptr_t)phi | (uintptr_t)row) & (uintptr_t)3u) == 0u) {
        return dot_dense4_words((const uint32_t *)(const void *)w, (const uint32_t *)(const void *)phi, row / 4u);
    }
    return dot_dense4_bytes(w, phi, row);
}
#undef DIRECT_LEVEL_AT
#else
/* One sample, two nibbles per byte; phi has an even count (a zero pad for odd b). The signed levels of a
 * byte come from two 256-entry tables: the cheapest decode without SIMD (6 instructions per weight on x86
 * -O2, against 7 for a plain int8 loop), and byte-wise program-memory reads on AVR. */
static uint32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t nbytes) {
    int32_t acc = 0;
    uint32_t i;
    for (i = 0u; i < nbytes; ++i, phi += 2) {
        uint32_t byte = DIRECT_U8(w + i);
        acc += (int32_t)DIRECT_I8(&low_level[byte]) * phi[0] + (int32_t)DIRECT_I8(&high_level[byte]) * phi[1];
    }
    return (uint32_t)acc;
}
#endif

/*
 * MF §6.1 dense4 rows on the build's kernel: the one definition direct_predict (predict_one) and
 * direct_classify (through direct_dense4_prepare / direct_dense4_rows, direct_internal.h) share.
 * dense4_prepare writes the pad feature of odd b, puts phi in the kernel's order (in place), returns the
 * offset term and sets *taken to how many rows it took: on the kernels that pair or group rows
 * (DIRECT_DENSE4_GROUP > 1), an odd count n's last row (w + (n − 1)·row) into *last (1), else 0. dense4_rows then gives the
 * accumulators (Σ level·φ mod 2^32, before IS §4's round_shift) of n consecutive rows, the kernel's group
 * of rows per pass and a single-row kernel for what is left. The one-row-per-pass kernels (AVR tables, host
 * vector / portable) leave every row to dense4_rows: one call site of their dot_dense4 in predict_one, which
 * the compiler then inlines (AVR: a second one costs ~400 bytes of flash).
 */
#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD
#define DIRECT_DENSE4_GROUP 4u
#elif DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN
#define DIRECT_DENSE4_GROUP 2u
#else
#define DIRECT_DENSE4_GROUP 1u
#endif
#if defined(DIRECT_DENSE4_OFFSET)
#define DIRECT_DENSE4_OFF(off) (off) /* the kernel's offset levels w + 8 add 8·Σφ (mod 2^32) */
#else
#define DIRECT_DENSE4_OFF(off) 0u
#endif

static DIRECT_INLINE uint32_t dense4_prepare(int16_t *phi, uint32_t b, const uint8_t *w, uint32_t n,
                                             uint32_t *taken, uint32_t *last) {
    uint32_t row = (b + 1u) / 2u, off = 0u;
#if defined(DIRECT_DENSE4_OFFSET)
    uint32_t i = 0u;
#endif
    (void)row; /* the one-row-per-pass kernels without an offset: nothing to do here but the pad */
    (void)w;
    (void)last;
    if ((b & 1u) != 0u) {
        phi[b] = 0; /* the pad feature of odd b (MF §6.1; the scratch holds an even count) */
    }
#if defined(DIRECT_DENSE4_PAIRS)
    if ((n & 1u) != 0u) { /* one row (or an odd count's last) before the pairing: dot_dense4_natural */
        *last = dot_dense4_natural(w + (n - 1u) * row, phi, row);
        if (n == 1u) {
            *taken = 1u;
            return 0u; /* nothing left to pair the features for */
        }
    }
    off = pair_features(phi, (row / 8u) * 2u); /* an even count of groups: dot2_dense4's unrolled loop */
    i = 16u * (row / 8u);
#elif DIRECT_KERNEL == DIRECT_KERNEL_SIMD
    pair_features(phi, row / DIRECT_SIMD_GROUP);
#endif
#if defined(DIRECT_DENSE4_OFFSET)
    for (; i < 2u * row; ++i) { /* Σφ over the features not summed by pair_features */
        uint32_t v = (uint32_t)(int32_t)phi[i];
        off += v;
    }
    off <<= 3;
#endif
    *taken = DIRECT_DENSE4_GROUP > 1u ? n & 1u : 0u;
#if DIRECT_DENSE4_GROUP > 1u && !defined(DIRECT_DENSE4_PAIRS)
    if ((n & 1u) != 0u) { /* SIMD, M0: the odd row here, the rows' loops in pairs or fours */
#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD
        dotn_dense4(w + (n - 1u) * row, row, 1u, phi, last);
#else
        *last = dot_dense4(w + (n - 1u) * row, phi, row) - DIRECT_DENSE4_OFF(off);
#endif
    }
#endif
    return off;
}

static DIRECT_INLINE void dense4_rows(const uint8_t *w, uint32_t row, uint32_t n, const int16_t *phi, uint32_t off,
                                      uint32_t *acc) {
    uint32_t k = 0u;
    (void)off;
#if DIRECT_KERNEL == DIRECT_KERNEL_SIMD
    for (; k + 4u <= n; k += 4u, w += 4u * row) {
        dotn_dense4(w, row, 4u, phi, acc + k);
    }
    for (; k < n; ++k, w += row) {
        dotn_dense4(w, row, 1u, phi, acc + k);
    }
#elif DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN
    for (; k + 2u <= n; k += 2u, w += 2u * row) {
        dot2_dense4(w, w + row, phi, row, acc + k);
        acc[k] -= DIRECT_DENSE4_OFF(off);
        acc[k + 1u] -= DIRECT_DENSE4_OFF(off);
    }
    if (k < n) {
        acc[k] = dot_dense4(w, phi, row) - DIRECT_DENSE4_OFF(off);
    }
#else
    for (; k < n; ++k, w += row) {
        acc[k] = dot_dense4(w, phi, row) - DIRECT_DENSE4_OFF(off);
    }
#endif
}

/* direct_classify's entry points (direct_internal.h); a regression-only build's linker drops them
 * (-ffunction-sections, --gc-sections). */
uint32_t direct_dense4_prepare(int16_t *phi, uint32_t b, const uint8_t *w, uint32_t n, uint32_t *taken,
                               uint32_t *last) {
    return dense4_prepare(phi, b, w, n, taken, last);
}

void direct_dense4_rows(const uint8_t *w, uint32_t row, uint32_t n, const int16_t *phi, uint32_t off,
                        uint32_t *acc) {
    dense4_rows(w, row, n, phi, off, acc);
}

/* The Armv6-M sparse loops in assembly (dot_bitmap4, dot_gap4): eight low registers, r7 included (not with
 * clang or at -O0, which keep r7 as the frame pointer; -DDIRECT_NO_ASM turns them off). */
#if DIRECT_KERNEL == DIRECT_KERNEL_LEAN && defined(__GNUC__) && !defined(__clang__) && defined(__thumb__) && \
    !defined(__thumb2__) && defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__) && !defined(DIRECT_NO_ASM)
#define DIRECT_LEAN_SPARSE_ASM 1
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN
/*
 * MF §6.2 on the Arm kernels: the set bits of a bitmap word are taken in feature order, and the level bytes
 * are read once per two nonzeros (their nibbles signed by shifts: one SBFX on Armv7-M, LSLS + ASRS on
 * Armv6-M) instead of a byte load and a nibble shift per weight. *pend carries a byte whose high nibble is
 * still to be used (bit 8 set) from one word to the next.
 *   DSP (Armv7-M): 32 features per word, bit-reversed (RBIT) so that CLZ gives the next feature; the bit is
 *                  cleared with LSR + BIC. On a host (the tests) the same loop counts trailing zeros.
 *   LEAN (Armv6-M, no CLZ): 8 features per byte; a table gives twice the lowest set bit's index (the
 *                  byte offset of its feature), and bits & (bits − 1) clears it.
 */
#define DIRECT_BM_LO(c) direct_floor_shift32(direct_i32_from_u32((c) << 28), 28u)
#define DIRECT_BM_HI(c) direct_floor_shift32(direct_i32_from_u32((c) << 24), 28u)
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP
#define DIRECT_BM_WORD 32u
#if defined(__GNUC__) && defined(__thumb2__)
static inline uint32_t bm_order(uint32_t v) {
    uint32_t r;
    __asm__("rbit %0, %1" : "=r"(r) : "r"(v));
    return r;
}
#define DIRECT_BM_NEXT(v) ((uint32_t)__builtin_clz(v))
#define DIRECT_BM_DROP(v, j) ((v) & ~(UINT32_C(0x80000000) >> (j)))
#else
#define bm_order(v) (v)
static inline uint32_t bm_lowest(uint32_t v) { /* v ≠ 0 */
#if defined(__GNUC__)
    return (uint32_t)__builtin_ctz(v);
#else
    uint32_t j = 0u;
    while ((v & 1u) == 0u) {
        v >>= 1;
        ++j;
    }
    return j;
#endif
}
#define DIRECT_BM_NEXT(v) bm_lowest(v)
#define DIRECT_BM_DROP(v, j) ((v) & ((v) - 1u))
#endif
#define DIRECT_BM_PHI(ph, j) ((int32_t)(ph)[j])
#else
#define DIRECT_BM_WORD 8u
/* Twice the index of the lowest set bit of a nonzero byte: the byte offset of its feature. */
static const uint8_t lowest_bit2[256] = {
    0, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    10, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    12, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    10, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    14, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    10, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    12, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
    10, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0, 8, 0, 2, 0, 4, 0, 2, 0, 6, 0, 2, 0, 4, 0, 2, 0,
};
#define bm_order(v) (v)
#define DIRECT_BM_NEXT(v) ((uint32_t)lowest_bit2[v])
#define DIRECT_BM_DROP(v, j) ((v) & ((v) - 1u))
#define DIRECT_BM_PHI(ph, j) ((int32_t) * (const int16_t *)(const void *)((const uint8_t *)(ph) + (j)))
#endif

/* The set bits of one bitmap word (in bm_order) against the features ph[0 …]: acc plus their products. */
static DIRECT_INLINE uint32_t bitmap_bits(uint32_t bits, const int16_t *ph, const uint8_t **nib, uint32_t *pend,
                                          uint32_t acc) {
    const uint8_t *q = *nib;
    uint32_t j, c;
    if (bits != 0u && *pend != 0u) { /* the high nibble of the previous word's last byte */
        j = DIRECT_BM_NEXT(bits);
        bits = DIRECT_BM_DROP(bits, j);
        acc += (uint32_t)(DIRECT_BM_HI(*pend) * DIRECT_BM_PHI(ph, j));
        *pend = 0u;
    }
    while (bits != 0u) { /* two nonzeros per byte */
        c = *q++;
        j = DIRECT_BM_NEXT(bits);
        bits = DIRECT_BM_DROP(bits, j);
        acc += (uint32_t)(DIRECT_BM_LO(c) * DIRECT_BM_PHI(ph, j));
        if (bits == 0u) {
            *pend = c | 0x100u;
            break;
        }
        j = DIRECT_BM_NEXT(bits);
        bits = DIRECT_BM_DROP(bits, j);
        acc += (uint32_t)(DIRECT_BM_HI(c) * DIRECT_BM_PHI(ph, j));
    }
    *nib = q;
    return acc;
}

/* MF §6.2: one sample; *pp advances past the sample. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int32_t dot_bitmap4(const uint8_t **pp, const int16_t *phi, uint32_t nmap) {
    const uint8_t *map = *pp, *nib = map + nmap;
    uint32_t acc = 0u, pend = 0u, j = 0u, bits, i;
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP
    for (; j < nmap; j += 4u, phi += 32) { /* one copy of the loop for whole words and the tail: flash */
        if (nmap - j >= 4u) {
            bits = ld32(map + j);
        } else { /* the last 1-3 bytes as the low bytes of a word */
            for (bits = 0u, i = nmap; i > j; --i) {
                bits = (bits << 8) | map[i - 1u];
            }
        }
        acc = bitmap_bits(bm_order(bits), phi, &nib, &pend, acc);
    }
#elif defined(DIRECT_LEAN_SPARSE_ASM)
    /* Cortex-M0/M0+: the C below in assembly (gcc spills the accumulator and the table base), the pending
     * high nibble kept as the position in the code: after label 1 a new level byte is read (even count so
     * far), after label 2 the high nibble of c is used (odd). Per two nonzeros 20 instructions, per bitmap
     * byte 7 more. */
    register uint32_t a __asm__("r8") = 0u;
    register const uint8_t *mend __asm__("r9") = nib;
    const uint8_t *tab = lowest_bit2;
    uint32_t c, t, f;
    (void)i;
    (void)j;
    (void)pend;
    bits = 0u;
    __asm__ volatile(".syntax unified\n\t"
                     "subs %[ph], #16\n\t"
                     "b 3f\n"
                     "1:\n\t" /* even: the low nibble of a new byte */
                     "ldrb %[t], [%[tab], %[bits]]\n\tldrsh %[f], [%[ph], %[t]]\n\t"
                     "ldrb %[c], [%[nib]]\n\tadds %[nib], #1\n\t"
                     "lsls %[t], %[c], #28\n\tasrs %[t], %[t], #28\n\tmuls %[t], %[f], %[t]\n\tadd %[a], %[t]\n\t"
                     "subs %[t], %[bits], #1\n\tands %[bits], %[t]\n\tbeq 4f\n"
                     "2:\n\t" /* odd: the high nibble of c */
                     "ldrb %[t], [%[tab], %[bits]]\n\tldrsh %[f], [%[ph], %[t]]\n\t"
                     "lsls %[t], %[c], #24\n\tasrs %[t], %[t], #28\n\tmuls %[t], %[f], %[t]\n\tadd %[a], %[t]\n\t"
                     "subs %[t], %[bits], #1\n\tands %[bits], %[t]\n\tbne 1b\n"
                     "3:\n\t" /* the next bitmap byte, even */
                     "adds %[ph], #16\n\tcmp %[map], %[mend]\n\tbeq 5f\n\t"
                     "ldrb %[bits], [%[map]]\n\tadds %[map], #1\n\tcmp %[bits], #0\n\tbne 1b\n\tb 3b\n"
                     "4:\n\t" /* the next bitmap byte, odd */
                     "adds %[ph], #16\n\tcmp %[map], %[mend]\n\tbeq 5f\n\t"
                     "ldrb %[bits], [%[map]]\n\tadds %[map], #1\n\tcmp %[bits], #0\n\tbne 2b\n\tb 4b\n"
                     "5:\n"
                     : [map] "+l"(map), [nib] "+l"(nib), [ph] "+l"(phi), [a] "+h"(a), [bits] "+l"(bits),
                       [c] "=&l"(c), [t] "=&l"(t), [f] "=&l"(f)
                     : [tab] "l"(tab), [mend] "h"(mend)
                     : "cc", "memory");
    acc = a;
#else
    (void)i;
    for (; j < nmap; ++j, phi += 8) {
        bits = map[j];
        acc = bitmap_bits(bits, phi, &nib, &pend, acc);
    }
#endif
    *pp = nib;
    return direct_i32_from_u32(acc);
}
#undef DIRECT_BM_NEXT
#undef DIRECT_BM_DROP
#undef DIRECT_BM_PHI
#undef DIRECT_BM_LO
#undef DIRECT_BM_HI
#else
/* Index of the lowest set bit of a nonzero byte (bitmap4 decoding; ctz is a library call on Armv6-M). */
static const uint8_t lowest_bit[256] DIRECT_ROM = {
    0, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    6, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    7, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    6, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
    5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
};

/* MF §6.2: one sample; skips zero bitmap bytes; *pp advances past the sample. */
static int32_t dot_bitmap4(const uint8_t **pp, const int16_t *phi, uint32_t nmap) {
    const uint8_t *map = *pp, *nib = map + nmap;
    int32_t acc = 0;
    uint32_t j, k = 0u;
    for (j = 0u; j < nmap; ++j) {
        uint32_t bits = DIRECT_U8(map + j);
        const int16_t *ph = phi + 8u * j;
        while (bits != 0u) {
            uint32_t n = ((uint32_t)DIRECT_U8(nib + (k >> 1)) >> (4u * (k & 1u))) & UINT32_C(0xF);
            acc += direct_nibble(n) * (int32_t)ph[DIRECT_U8(&lowest_bit[bits])];
            bits &= bits - 1u;
            ++k;
        }
    }
    *pp = nib + (k + 1u) / 2u;
    return acc;
}
#endif

/* MF §6.3: the next feature index of a group after idx: zero bytes add 255 each (rare), then the gap. */
static inline uint32_t next_gap_index(const uint8_t **pp, uint32_t idx) {
    const uint8_t *p = *pp;
    uint32_t gap = DIRECT_U8(p++);
    while (gap == 0u) {
        idx += 255u;
        gap = DIRECT_U8(p++);
    }
    *pp = p;
    return idx + gap;
}

/* MF §6.3: one sample; per group a plain sum of features, then one multiply. *pp advances. On the M4 its
 * own function: inlined, it shares predict_one's registers with the gap4 assembly and spills per group. */
#if (DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN) && defined(__GNUC__)
__attribute__((noinline))
#endif
static int32_t dot_grouped(const uint8_t **pp, const int16_t *phi) {
    const uint8_t *p = *pp;
    uint32_t groups = DIRECT_U8(p++), g;
    int32_t acc = 0;
    for (g = 0u; g < groups; ++g) {
        int32_t v = direct_i8(DIRECT_U8(p++)), sum = 0;
        uint32_t count = DIRECT_U8(p++), idx = UINT32_MAX; /* idx = −1 (mod 2^32) before the first gap */
        if ((count & 0x80u) != 0u) {             /* LEB128: at most 3 bytes */
            count = (count & 0x7Fu) | (((uint32_t)DIRECT_U8(p) & 0x7Fu) << 7);
            if ((DIRECT_U8(p++) & 0x80u) != 0u) {
                count |= (uint32_t)DIRECT_U8(p++) << 14;
            }
        }
        for (; count >= 2u; count -= 2u) { /* two indices per iteration */
            idx = next_gap_index(&p, idx);
            sum += phi[idx];
            idx = next_gap_index(&p, idx);
            sum += phi[idx];
        }
        if (count != 0u) {
            idx = next_gap_index(&p, idx);
            sum += phi[idx];
        }
        acc += v * sum;
    }
    *pp = p;
    return acc;
}

/* The signed level of a gap4 byte's high nibble: one SBFX on Armv7-M (the DSP kernel), else the table. */
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP
#define DIRECT_GAP4_LEVEL(byte) direct_floor_shift32(direct_i32_from_u32((byte) << 24), 28u)
#else
#define DIRECT_GAP4_LEVEL(byte) ((int32_t)DIRECT_I8(&high_level[byte]))
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN
/* MF §6.4: the count n of a sample's gap4 bytes (LEB128, at most 3 bytes); *pp advances past it. */
static inline uint32_t gap4_count(const uint8_t **pp) {
    const uint8_t *p = *pp;
    uint32_t n = DIRECT_U8(p++);
    if ((n & 0x80u) != 0u) {
        n = (n & 0x7Fu) | (((uint32_t)DIRECT_U8(p) & 0x7Fu) << 7);
        if ((DIRECT_U8(p++) & 0x80u) != 0u) {
            n |= (uint32_t)DIRECT_U8(p++) << 14;
        }
    }
    *pp = p;
    return n;
}
#endif

#if DIRECT_KERNEL == DIRECT_KERNEL_LEAN && defined(DIRECT_LEAN_SPARSE_ASM)
/* MF §6.4 on Cortex-M0/M0+: the loop in assembly, four bytes per pass after the count's first n mod 4,
 * 8 instructions per byte plus the pass's 3: LDRB, the step table (LSLS, LDRH), ADDS to the byte offset
 * of the feature, LDRSH, the level table (LDRSB), MULS, ADD. gcc spills the accumulator of the C below. */
#define DIRECT_M0_GAP4(k)                                                                              \
    "ldrb %[c], [%[p], #" k "]\n\tlsls %[t], %[c], #1\n\tldrh %[t], [%[st], %[t]]\n\tadds %[ix], %[ix], %[t]\n\t" \
    "ldrsh %[f], [%[ph], %[ix]]\n\tldrsb %[t], [%[hl], %[c]]\n\tmuls %[t], %[f], %[t]\n\tadd %[acc], %[t]\n\t"
__attribute__((noinline)) static int32_t dot_gap4(const uint8_t **pp, const int16_t *phi) {
    const uint8_t *p = *pp;
    uint32_t n = gap4_count(&p);
    register uint32_t acc __asm__("r8") = 0u;
    register const uint8_t *mid __asm__("r9") = p + (n & 3u), *end __asm__("r10") = p + n;
    const uint16_t *st = gap4_step2;
    const int8_t *hl = high_level;
    uint32_t ix = UINT32_MAX - 1u, c, f, t; /* the byte offset of position −1 (mod 2^32) */
    __asm__ volatile(".syntax unified\n\t"
                     "cmp %[p], %[mid]\n\tbeq 2f\n"
                     "1:\n\t" DIRECT_M0_GAP4("0") "adds %[p], #1\n\tcmp %[p], %[mid]\n\tbne 1b\n"
                     "2:\n\t"
                     "cmp %[p], %[end]\n\tbeq 4f\n"
                     "3:\n\t" DIRECT_M0_GAP4("0") DIRECT_M0_GAP4("1") DIRECT_M0_GAP4("2") DIRECT_M0_GAP4("3")
                     "adds %[p], #4\n\tcmp %[p], %[end]\n\tbne 3b\n"
                     "4:\n"
                     : [p] "+l"(p), [ix] "+l"(ix), [acc] "+h"(acc), [c] "=&l"(c), [f] "=&l"(f), [t] "=&l"(t)
                     : [mid] "h"(mid), [end] "h"(end), [st] "l"(st), [hl] "l"(hl), [ph] "l"(phi)
                     : "cc", "memory");
    *pp = p;
    return direct_i32_from_u32(acc);
}
#undef DIRECT_M0_GAP4
#else
/* MF §6.4: one sample; a byte below 16 is a skip of 16·(g + 1) positions, any other byte a weight g + 1
 * positions on with the signed level of its high nibble. *pp advances. A skip has level 0: its product adds
 * nothing (and its position is below the next weight's, inside [0, b)). The DSP and Armv6-M kernels take
 * four bytes per pass (no loop test between them). */
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP || DIRECT_KERNEL == DIRECT_KERNEL_LEAN
#if DIRECT_KERNEL == DIRECT_KERNEL_LEAN /* ix: the byte offset of the feature */
#define DIRECT_GAP4_BYTE(byte)                                                                         \
    do {                                                                                               \
        uint32_t c_ = (byte);                                                                          \
        ix += gap4_step2[c_];                                                                          \
        acc += (uint32_t)(DIRECT_GAP4_LEVEL(c_) * (int32_t) * (const int16_t *)(const void *)((const uint8_t *)phi + ix)); \
    } while (0)
#define DIRECT_GAP4_START (UINT32_MAX - 1u)
#else /* ix: the position */
#define DIRECT_GAP4_BYTE(byte)                                                                         \
    do {                                                                                               \
        uint32_t c_ = (byte);                                                                          \
        ix += gap4_step[c_];                                                                           \
        acc += (uint32_t)(DIRECT_GAP4_LEVEL(c_) * (int32_t)phi[ix]);                                   \
    } while (0)
#define DIRECT_GAP4_START UINT32_MAX
#endif
#if DIRECT_KERNEL == DIRECT_KERNEL_DSP && defined(__GNUC__) && defined(__thumb2__) && defined(__OPTIMIZE__) && \
    !defined(DIRECT_NO_ASM)
#define DIRECT_DSP_GAP4_ASM 1
/* One gap4 byte: LDRB, the step (LDRH, ADD), the feature (LDRSH), the level (SBFX), MLA. */
#define DIRECT_M4_GAP4(k)                                                                              \
    "ldrb %[c], [%[p], #" k "]\n\tldrh %[t], [%[st], %[c], lsl #1]\n\tadd %[ix], %[ix], %[t]\n\t"          \
    "ldrsh %[t], [%[ph], %[ix], lsl #1]\n\tsbfx %[c], %[c], #4, #4\n\tmla %[acc], %[c], %[t], %[acc]\n\t"
#endif
static int32_t dot_gap4(const uint8_t **pp, const int16_t *phi) {
    const uint8_t *p = *pp, *end;
    uint32_t n = gap4_count(&p), acc = 0u, ix = DIRECT_GAP4_START; /* position −1 (mod 2^32) */
#if defined(DIRECT_DSP_GAP4_ASM)
    /* Thumb-2: the loops below in assembly, with two scratch registers (gcc's schedule of the C needs more
     * and spills around the loop, which costs small samples more than the unrolling saves). */
    {
        const uint8_t *mid = p + (n & 3u);
        uint32_t c, t;
        end = p + n;
        __asm__ volatile(".syntax unified\n\t"
                         "cmp %[p], %[mid]\n\tbeq 2f\n"
                         "1:\n\t" DIRECT_M4_GAP4("0") "adds %[p], #1\n\tcmp %[p], %[mid]\n\tbne 1b\n"
                         "2:\n\t"
                         "cmp %[p], %[end]\n\tbeq 4f\n"
                         "3:\n\t" DIRECT_M4_GAP4("0") DIRECT_M4_GAP4("1") DIRECT_M4_GAP4("2") DIRECT_M4_GAP4("3")
                         "adds %[p], #4\n\tcmp %[p], %[end]\n\tbne 3b\n"
                         "4:\n"
                         : [p] "+r"(p), [ix] "+r"(ix), [acc] "+r"(acc), [c] "=&r"(c), [t] "=&r"(t)
                         : [mid] "r"(mid), [end] "r"(end), [st] "r"(gap4_step), [ph] "r"(phi)
                         : "cc", "memory");
    }
#else
    for (end = p + (n & 3u); p != end; ++p) {
        DIRECT_GAP4_BYTE(*p);
    }
    for (end = p + (n & ~(uint32_t)3u); p != end; p += 4) { /* four bytes per pass: no loop test between */
        DIRECT_GAP4_BYTE(p[0]);
        DIRECT_GAP4_BYTE(p[1]);
        DIRECT_GAP4_BYTE(p[2]);
        DIRECT_GAP4_BYTE(p[3]);
    }
#endif
    *pp = p;
    return direct_i32_from_u32(acc);
}
#undef DIRECT_GAP4_BYTE
#undef DIRECT_GAP4_START
#undef DIRECT_M4_GAP4
#else
static int32_t dot_gap4(const uint8_t **pp, const int16_t *phi) {
    const uint8_t *p = *pp, *end;
    uint32_t n = DIRECT_U8(p++), idx = UINT32_MAX; /* idx = −1 (mod 2^32) before the first byte */
    int32_t acc = 0;
    if ((n & 0x80u) != 0u) { /* LEB128: at most 3 bytes */
        n = (n & 0x7Fu) | (((uint32_t)DIRECT_U8(p) & 0x7Fu) << 7);
        if ((DIRECT_U8(p++) & 0x80u) != 0u) {
            n |= (uint32_t)DIRECT_U8(p++) << 14;
        }
    }
    for (end = p + n; p != end; ++p) { /* a skip has level 0: its product adds nothing */
        uint32_t byte = DIRECT_U8(p);
        idx += DIRECT_U16(&gap4_step[byte]);
        acc += DIRECT_GAP4_LEVEL(byte) * phi[idx];
    }
    *pp = p;
    return acc;
}
#endif
#endif

/* IS §5: ⌊(num·M2 + 2^(s2−1)) / 2^s2⌋ for num < 2^62, M2 ≤ 2^31, 33 ≤ s2 ≤ 63; no 128-bit type. */
static uint64_t mulshift96(uint64_t num, uint32_t m2, uint32_t s2) {
    uint64_t lo = (num & UINT64_C(0xFFFFFFFF)) * (uint64_t)m2;
    uint64_t hi = (num >> 32) * (uint64_t)m2;
    return (hi + (lo >> 32) + (UINT64_C(1) << (s2 - 33u))) >> (s2 - 32u);
}

static direct_status check_call(const direct_model *m, const int16_t *x, const void *scratch,
                                uint32_t scratch_size, const direct_prediction *out) {
    if (m == NULL || m->blob == NULL || x == NULL || scratch == NULL || out == NULL) {
        return DIRECT_ERR_ARG;
    }
    if (scratch_size < direct_scratch_bytes(m) || ((uintptr_t)scratch & (uintptr_t)1u) != 0u) {
        return DIRECT_ERR_SCRATCH;
    }
#if DIRECT_CLASSIFY /* a regression-only build refuses classifier blobs at open */
    if (direct_h_classes(m->blob) != 0u) {
        return DIRECT_ERR_TASK; /* a classifier's rows are logits, not samples of f (MF §11): direct_classify */
    }
#endif
    return DIRECT_OK;
}

direct_status direct_features(const direct_model *m, const int16_t *x, int16_t *phi, uint32_t n_phi) {
    if (m == NULL || m->blob == NULL || x == NULL || phi == NULL || n_phi < m->n_features) {
        return DIRECT_ERR_ARG;
    }
#if DIRECT_ROTATION
    if (m->rotation != NULL && n_phi < 2u * (uint32_t)m->n_features) {
        return DIRECT_ERR_ARG; /* the rff features go beside the rotated ones (direct.h) */
    }
#endif
    features(m, x, phi);
    return DIRECT_OK;
}

/* IS §4: a_s = round_shift(acc_s, r) (acc_s as computed mod 2^32, exact in i32), into ΣA and ΣA2. */
static inline void add_sample(uint32_t acc, uint32_t r, int32_t *sum_a, int64_t *sum_a2) {
    int32_t a = direct_round_shift32(direct_i32_from_u32(acc), r);
    *sum_a += a;
    *sum_a2 += (int64_t)a * a;
}

/* IS §4-§5 for one row; arguments already checked. */
#if DIRECT_FLOOR
/* IS §6's variance sum for per-weight level variances vq (2^-10 level², b values) on the features phi:
 * Σ_i vq_i · ((φ_i·φ_i) >> 15), shifted to output units² (< b·2^36, MF §9). */
#if defined(__GNUC__) && defined(__AVR__) /* its own frame beside the kernels, not on predict_one's: 13 B less on AVR */
__attribute__((noinline))
#endif
static uint64_t level_variance(const direct_model *m, const int16_t *phi, const uint16_t *vq) {
    uint32_t b = m->n_features, r2 = 2u * m->pre_shift, i;
    uint64_t sum_v = 0u;

    for (i = 0u; i < b; ++i) {
        int32_t f = phi[i];
        uint32_t sq = (uint32_t)(f * f) >> 15;
        sum_v += (uint64_t)((uint32_t)DIRECT_U16(vq + i) * sq);
    }
    if (r2 >= 5u) {
        uint32_t sh = r2 - 5u;
        return sh == 0u ? sum_v : (sum_v >> sh) + ((sum_v >> (sh - 1u)) & UINT64_C(1));
    }
    return sum_v << (5u - r2);
}
#endif

static void predict_one(const direct_model *m, const int16_t *x, int16_t *phi, direct_prediction *out) {
    const uint8_t *p = m->samples;
    uint32_t S = m->n_samples, b = m->n_features, r = m->pre_shift, s;
    int32_t sum_a = 0;
    int64_t sum_a2 = 0, mean;
    uint64_t num, floor_q = 0u;

    features(m, x, phi);
#if DIRECT_FLOOR
    if (m->var_floor != NULL) { /* IS §5: before the kernels below reorder φ in place */
        floor_q = level_variance(m, phi, m->var_floor);
    }
#endif
    switch (m->layout) {
    case DIRECT_LAYOUT_DENSE4: {
        uint32_t row = (b + 1u) / 2u, n, taken, last = 0u, off, k;
        uint32_t acc[DIRECT_DENSE4_GROUP];
        off = dense4_prepare(phi, b, p, S, &taken, &last);
        n = S - taken; /* even, but on the one-row-per-pass kernels */
        if (n != S) { /* odd S: the last sample, taken by dense4_prepare */
            if (S == 1u) { /* ΣA² is not used for one sample (IS §5 below) */
                sum_a = direct_round_shift32(direct_i32_from_u32(last), r);
                break;
            }
            add_sample(last, r, &sum_a, &sum_a2);
        }
        for (s = 0u; s + DIRECT_DENSE4_GROUP <= n; s += DIRECT_DENSE4_GROUP, p += DIRECT_DENSE4_GROUP * row) {
            dense4_rows(p, row, DIRECT_DENSE4_GROUP, phi, off, acc);
            for (k = 0u; k < DIRECT_DENSE4_GROUP; ++k) {
                add_sample(acc[k], r, &sum_a, &sum_a2);
            }
        }
#if DIRECT_DENSE4_GROUP > 2u
        if (s < n) { /* two rows left of an even count (SIMD) */
            dense4_rows(p, row, 2u, phi, off, acc);
            add_sample(acc[0], r, &sum_a, &sum_a2);
            add_sample(acc[1], r, &sum_a, &sum_a2);
        }
#endif
        break;
    }
    case DIRECT_LAYOUT_BITMAP4: {
        uint32_t nmap = (b + 7u) / 8u;
        for (s = 0u; s < S; ++s) {
            add_sample((uint32_t)dot_bitmap4(&p, phi, nmap), r, &sum_a, &sum_a2);
        }
        break;
    }
    case DIRECT_LAYOUT_GROUPED:
        for (s = 0u; s < S; ++s) {
            add_sample((uint32_t)dot_grouped(&p, phi), r, &sum_a, &sum_a2);
        }
        break;
    default:
        for (s = 0u; s < S; ++s) {
            add_sample((uint32_t)dot_gap4(&p, phi), r, &sum_a, &sum_a2);
        }
        break;
    }
    /* IS §5. The i32 narrowing wraps (two's complement) should a header's M1/s1 push the mean outside
     * i32; the exporter's M1 = round(2^s1 / S) never does. */
    mean = direct_round_shift64((int64_t)sum_a * m->m1, m->s1);
    out->mean = direct_i32_from_u32((uint32_t)(uint64_t)mean);
    if (S == 1u) { /* S·ΣA² − (ΣA)² = 0, and mulshift96(0, M2, s2) = ⌊2^(s2−33) / 2^(s2−32)⌋ = 0: skip the
                    * 64-bit products (library calls on Armv6-M) that one sample would pay alone */
        out->var_f = floor_q;
    } else {
        num = (uint64_t)((int64_t)S * sum_a2 - (int64_t)sum_a * sum_a);
        out->var_f = mulshift96(num, m->m2, m->s2) + floor_q;
    }
    out->var_y = out->var_f + m->noise_q;
    out->out_of_range = direct_out_of_range(m, x);
}

/* IS §6 for one row; arguments already checked. */
static void predict_exact_one(const direct_model *m, const int16_t *x, int16_t *phi, direct_prediction *out) {
    const int16_t *mu = m->exact_mean;
    const uint16_t *vq = m->exact_var;
    uint32_t b = m->n_features, r2 = 2u * m->pre_shift, i;
    int64_t sum_m = 0;
    uint64_t sum_v = 0u, var;

    features(m, x, phi);
    for (i = 0u; i < b; ++i) {
        int32_t f = phi[i];
        uint32_t sq = (uint32_t)(f * f) >> 15;
        sum_m += (int64_t)((int32_t)DIRECT_I16(mu + i) * f);
        sum_v += (uint64_t)((uint32_t)DIRECT_U16(vq + i) * sq);
    }
    if (r2 >= 5u) {
        uint32_t sh = r2 - 5u;
        var = sh == 0u ? sum_v : (sum_v >> sh) + ((sum_v >> (sh - 1u)) & UINT64_C(1));
    } else {
        var = sum_v << (5u - r2);
    }
    out->mean = (int32_t)direct_round_shift64(sum_m, 12u + m->pre_shift); /* fits i32: MF §9 OVERFLOW check */
    out->var_f = var;
    out->var_y = var + m->noise_exact_q;
    out->out_of_range = direct_out_of_range(m, x);
}

direct_status direct_predict(const direct_model *m, const int16_t *x, void *scratch, uint32_t scratch_size,
                             direct_prediction *out) {
    direct_status st = check_call(m, x, scratch, scratch_size, out);
    if (st == DIRECT_OK) {
        predict_one(m, x, (int16_t *)scratch, out);
    }
    return st;
}

direct_status direct_predict_exact(const direct_model *m, const int16_t *x, void *scratch,
                                   uint32_t scratch_size, direct_prediction *out) {
    direct_status st = check_call(m, x, scratch, scratch_size, out);
    if (st == DIRECT_OK && m->exact_mean == NULL) {
        st = DIRECT_ERR_NO_EXACT;
    }
    if (st == DIRECT_OK) {
        predict_exact_one(m, x, (int16_t *)scratch, out);
    }
    return st;
}

direct_status direct_predict_batch(const direct_model *m, const int16_t *x, uint32_t n_rows, void *scratch,
                                   uint32_t scratch_size, direct_prediction *out) {
    direct_status st = check_call(m, x, scratch, scratch_size, out);
    uint32_t i;
    if (st == DIRECT_OK) {
        for (i = 0u; i < n_rows; ++i, x += m->n_inputs) {
            predict_one(m, x, (int16_t *)scratch, out + i);
        }
    }
    return st;
}

direct_status direct_predict_exact_batch(const direct_model *m, const int16_t *x, uint32_t n_rows,
                                         void *scratch, uint32_t scratch_size, direct_prediction *out) {
    direct_status st = check_call(m, x, scratch, scratch_size, out);
    uint32_t i;
    if (st == DIRECT_OK && m->exact_mean == NULL) {
        st = DIRECT_ERR_NO_EXACT;
    }
    if (st == DIRECT_OK) {
        for (i = 0u; i < n_rows; ++i, x += m->n_inputs) {
            predict_exact_one(m, x, (int16_t *)scratch, out + i);
        }
    }
    return st;
}
