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

/* Which MF §6.1 kernel this build uses: SIMD-friendly arithmetic (hosts), SMLAD (Arm DSP cores), or tables. */
#if defined(DIRECT_VECTORIZE)
#define DIRECT_DENSE4_VECTOR 1
#elif defined(__ARM_FEATURE_DSP) && !DIRECT_PROGMEM
#define DIRECT_DENSE4_SMLAD 1
#else
#define DIRECT_DENSE4_TABLES 1
#endif

#ifdef DIRECT_DENSE4_TABLES
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

/* MF §6.4: positions a gap4 byte moves: 16·(g + 1) for a skip (byte < 16), else g + 1. */
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
        for (j = 0u; j < F; ++j, w += d) { /* IS §3.2: phase in u32 turns, wrap-around intended */
            uint32_t t = DIRECT_U32(m->phase_c + j);
            for (k = 0u; k < d; ++k) {
                t += (uint32_t)DIRECT_I32(w + k) * (uint32_t)(int32_t)x[k];
            }
            cos_sin16(m->table, t, &phi[j], &phi[F + j]);
        }
    }
}

#if defined(DIRECT_DENSE4_VECTOR)
/* MF §6.1, for hosts with SIMD (build with -O3 -DDIRECT_VECTORIZE): nibble n holds level (n ^ 8) − 8, so
 * (byte ^ 0x88) gives the offset levels w + 8 of both nibbles as plain unsigned fields; the caller
 * subtracts 8·Σφ once per sample. Straight-line arithmetic that compilers vectorise. */
static int32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t nbytes, int32_t phi_sum) {
    int32_t acc = 0;
    uint32_t i;
    for (i = 0u; i < nbytes; ++i) {
        uint32_t c = (uint32_t)DIRECT_U8(w + i) ^ UINT32_C(0x88);
        acc += (int32_t)(c & UINT32_C(0xF)) * phi[2u * i] + (int32_t)(c >> 4) * phi[2u * i + 1u];
    }
    return acc - 8 * phi_sum;
}
#elif defined(DIRECT_DENSE4_SMLAD)
#include <arm_acle.h>

/* MF §6.1 on Arm cores with the DSP extension (Cortex-M4/M7/M33, Armv7E-M and later): the two levels of a
 * byte as the int16 halves of one word, multiplied with two adjacent features by one SMLAD (dual 16×16
 * multiply-accumulate). Exact: SMLAD's 32-bit accumulation cannot overflow here (IS §9). */
#define DIRECT_LEVEL(n) ((uint32_t)(uint16_t)(int16_t)((int32_t)((n) ^ 8u) - 8))
#define DIRECT_PAIR(b) (DIRECT_LEVEL((b) & 15u) | (DIRECT_LEVEL((b) >> 4) << 16))
#define DIRECT_PAIR4(b) DIRECT_PAIR(b), DIRECT_PAIR((b) + 1u), DIRECT_PAIR((b) + 2u), DIRECT_PAIR((b) + 3u)
#define DIRECT_PAIR16(b) DIRECT_PAIR4(b), DIRECT_PAIR4((b) + 4u), DIRECT_PAIR4((b) + 8u), DIRECT_PAIR4((b) + 12u)
#define DIRECT_PAIR64(b) DIRECT_PAIR16(b), DIRECT_PAIR16((b) + 16u), DIRECT_PAIR16((b) + 32u), DIRECT_PAIR16((b) + 48u)
static const uint32_t pair_levels[256] = {DIRECT_PAIR64(0u), DIRECT_PAIR64(64u), DIRECT_PAIR64(128u),
                                          DIRECT_PAIR64(192u)};
#undef DIRECT_PAIR64
#undef DIRECT_PAIR16
#undef DIRECT_PAIR4
#undef DIRECT_PAIR
#undef DIRECT_LEVEL

static int32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t nbytes, int32_t phi_sum) {
    int32_t acc = 0;
    uint32_t i, f0, f1;
    (void)phi_sum;
    for (i = 0u; i + 2u <= nbytes; i += 2u) { /* two bytes, four weights per iteration */
        memcpy(&f0, phi + 2u * i, sizeof f0);    /* features 2i, 2i+1 (low half first: little-endian) */
        memcpy(&f1, phi + 2u * i + 2u, sizeof f1);
        acc = __smlad((int32_t)pair_levels[w[i]], (int32_t)f0, acc);
        acc = __smlad((int32_t)pair_levels[w[i + 1u]], (int32_t)f1, acc);
    }
    if (i < nbytes) {
        memcpy(&f0, phi + 2u * i, sizeof f0);
        acc = __smlad((int32_t)pair_levels[w[i]], (int32_t)f0, acc);
    }
    return acc;
}
#else
/* MF §6.1: one sample, two nibbles per byte; phi has an even count (a zero pad for odd b). The signed
 * levels of a byte come from two 256-entry tables: the cheapest decode without SIMD (6 instructions per
 * weight on x86 -O2, against 7 for a plain int8 loop). */
static int32_t dot_dense4(const uint8_t *w, const int16_t *phi, uint32_t nbytes, int32_t phi_sum) {
    int32_t acc = 0;
    uint32_t i;
    (void)phi_sum;
    for (i = 0u; i < nbytes; ++i, phi += 2) {
        uint32_t byte = DIRECT_U8(w + i);
        acc += (int32_t)DIRECT_I8(&low_level[byte]) * phi[0] + (int32_t)DIRECT_I8(&high_level[byte]) * phi[1];
    }
    return acc;
}
#endif

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

/* MF §6.3: one sample; per group a plain sum of features, then one multiply. *pp advances. */
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

/* MF §6.4: one sample; a byte below 16 is a skip of 16·(g + 1) positions, any other byte a weight g + 1
 * positions on with the signed level of its high nibble. *pp advances. */
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
        acc += (int32_t)DIRECT_I8(&high_level[byte]) * phi[idx];
    }
    *pp = p;
    return acc;
}

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
    if (scratch_size < direct_scratch_size(m) || ((uintptr_t)scratch & (uintptr_t)1u) != 0u) {
        return DIRECT_ERR_SCRATCH;
    }
    return DIRECT_OK;
}

direct_status direct_features(const direct_model *m, const int16_t *x, int16_t *phi, uint32_t n_phi) {
    if (m == NULL || m->blob == NULL || x == NULL || phi == NULL || n_phi < m->n_features) {
        return DIRECT_ERR_ARG;
    }
    features(m, x, phi);
    return DIRECT_OK;
}

/* IS §4-§5 for one row; arguments already checked. */
static void predict_one(const direct_model *m, const int16_t *x, int16_t *phi, direct_prediction *out) {
    const uint8_t *p = m->samples;
    uint32_t S = m->n_samples, b = m->n_features, r = m->pre_shift, s;
    int32_t sum_a = 0;
    int64_t sum_a2 = 0, mean;
    uint64_t num;

    features(m, x, phi);
    if ((b & 1u) != 0u) {
        phi[b] = 0; /* the pad feature of odd b (MF §6.1; scratch holds an even count) */
    }
    switch (m->layout) {
    case DIRECT_LAYOUT_DENSE4: {
        uint32_t row = (b + 1u) / 2u, i;
        int32_t phi_sum = 0; /* |Σφ| ≤ 32767·b < 2^31 */
        for (i = 0u; i < 2u * row; ++i) {
            phi_sum += phi[i];
        }
        for (s = 0u; s < S; ++s, p += row) {
            int32_t a = direct_round_shift32(dot_dense4(p, phi, row, phi_sum), r);
            sum_a += a;
            sum_a2 += (int64_t)a * a;
        }
        break;
    }
    case DIRECT_LAYOUT_BITMAP4: {
        uint32_t nmap = (b + 7u) / 8u;
        for (s = 0u; s < S; ++s) {
            int32_t a = direct_round_shift32(dot_bitmap4(&p, phi, nmap), r);
            sum_a += a;
            sum_a2 += (int64_t)a * a;
        }
        break;
    }
    case DIRECT_LAYOUT_GROUPED:
        for (s = 0u; s < S; ++s) {
            int32_t a = direct_round_shift32(dot_grouped(&p, phi), r);
            sum_a += a;
            sum_a2 += (int64_t)a * a;
        }
        break;
    default:
        for (s = 0u; s < S; ++s) {
            int32_t a = direct_round_shift32(dot_gap4(&p, phi), r);
            sum_a += a;
            sum_a2 += (int64_t)a * a;
        }
        break;
    }
    /* IS §5. The i32 narrowing wraps (two's complement) should a header's M1/s1 push the mean outside
     * i32; the exporter's M1 = round(2^s1 / S) never does. */
    mean = direct_round_shift64((int64_t)sum_a * m->m1, m->s1);
    num = (uint64_t)((int64_t)S * sum_a2 - (int64_t)sum_a * sum_a);
    out->mean = direct_i32_from_u32((uint32_t)(uint64_t)mean);
    out->var_f = mulshift96(num, m->m2, m->s2);
    out->var_y = out->var_f + m->noise_q;
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
