/*
 * direct_internal.h - helpers shared by the library's sources (not part of the public API).
 * Every constant and intermediate is explicitly typed: on AVR `int` is 16 bits.
 */
#ifndef DIRECT_INTERNAL_H
#define DIRECT_INTERNAL_H

#include <stdint.h>

#include "direct.h"

/*
 * Reads of the blob and of the library's constant tables (DIRECT_PROGMEM, see direct.h). With program
 * memory they go through avr-libc's pgm_read_* (byte-wise, any alignment); otherwise they are plain
 * loads and compile to exactly the code of a direct dereference.
 */
#if DIRECT_PROGMEM
#include <avr/pgmspace.h>
#define DIRECT_ROM PROGMEM
#define DIRECT_U8(p) ((uint8_t)pgm_read_byte(p))
#define DIRECT_I8(p) ((int8_t)pgm_read_byte(p))
#define DIRECT_U16(p) ((uint16_t)pgm_read_word(p))
#define DIRECT_I16(p) ((int16_t)pgm_read_word(p))
#define DIRECT_U32(p) ((uint32_t)pgm_read_dword(p))
#define DIRECT_I32(p) ((int32_t)pgm_read_dword(p))
#else
#define DIRECT_ROM
#define DIRECT_U8(p) (*(p))
#define DIRECT_I8(p) (*(p))
#define DIRECT_U16(p) (*(p))
#define DIRECT_I16(p) (*(p))
#define DIRECT_U32(p) (*(p))
#define DIRECT_I32(p) (*(p))
#endif

/* IS §1: floor_shift(x, s) = ⌊x / 2^s⌋, without relying on `>>` of a negative value. */
static inline int32_t direct_floor_shift32(int32_t x, uint32_t s) {
    return x >= 0 ? (int32_t)(x >> s) : (int32_t)~(~x >> s);
}

static inline int64_t direct_floor_shift64(int64_t x, uint32_t s) {
    return x >= 0 ? (int64_t)(x >> s) : (int64_t)~(~x >> s);
}

/*
 * IS §1: round_shift(x, s) = ⌊(x + 2^(s−1)) / 2^s⌋ (round half up), s = 0 gives x.
 * Computed as floor_shift(x, s) + bit (s−1) of x: the same value as floor_shift(x + 2^(s−1), s) for every
 * x, but the sum is never formed, so it cannot overflow even where |x| is close to the type's limit.
 */
static inline int32_t direct_round_shift32(int32_t x, uint32_t s) {
    if (s == 0u) {
        return x;
    }
    return direct_floor_shift32(x, s) + (int32_t)(((uint32_t)x >> (s - 1u)) & UINT32_C(1));
}

static inline int64_t direct_round_shift64(int64_t x, uint32_t s) {
    if (s == 0u) {
        return x;
    }
    return direct_floor_shift64(x, s) + (int64_t)(((uint64_t)x >> (s - 1u)) & UINT64_C(1));
}

/*
 * IS §1 round_shift for 1 ≤ s ≤ 30 and |x| + 2^(s−1) < 2^31 (the caller's bound): offset into u32 so that
 * the shift is of a non-negative value, then remove the offset. Branch-free; same value as above.
 */
static inline int32_t direct_round_shift32_bounded(int32_t x, uint32_t s) {
    uint32_t u = (uint32_t)x + (UINT32_C(1) << (s - 1u)) + UINT32_C(0x80000000);
    return (int32_t)(u >> s) - (int32_t)(UINT32_C(1) << (31u - s));
}

/* Two's complement narrowing u32 -> i32 without implementation-defined conversion. */
static inline int32_t direct_i32_from_u32(uint32_t v) {
    return v <= UINT32_C(0x7FFFFFFF) ? (int32_t)v : (int32_t)(-(int32_t)(~v)) - INT32_C(1);
}

/* direct_scratch_size() of an opened model: 2·b bytes, b rounded up to even (the pad feature of MF §6.1),
 * twice that with a rotation (IS §3.5: the rff features beside the rotated ones); inline so that every
 * prediction's argument check is not a call. */
static inline uint32_t direct_scratch_bytes(const direct_model *m) {
#if DIRECT_ROTATION
    return (m->rotation != NULL ? 4u : 2u) * (((uint32_t)m->n_features + 1u) & ~UINT32_C(1));
#else
    return 2u * (((uint32_t)m->n_features + 1u) & ~UINT32_C(1));
#endif
}

/*
 * MF §6.1 dense4 rows (IS §4) on the build's kernel, defined once in direct_predict.c (which direct_predict
 * runs too) for direct_classify's logit rows (IS §10.1); built with DIRECT_CLASSIFY. Rows are row = ⌈b/2⌉
 * bytes each, consecutive from w; a row's accumulator is Σ_i level_i·φ_i mod 2^32, before the round_shift.
 * direct_dense4_prepare: phi holds the b features in natural order, in 2·b rounded up to 4 bytes (the pad
 *   feature φ_b = 0 of odd b is written); n is how many rows from w the caller will take. It reorders phi in
 *   place for the kernel (phi is no longer in natural order), returns the offset term direct_dense4_rows
 *   takes and sets *taken to how many rows it took, t: 1 for odd n on the kernels that pair or group rows
 *   (M4 DSP, M0, SIMD), the last row's (w + (n − 1)·row) accumulator then in *last; else 0 (*last
 *   untouched). The caller then passes rows 0 … n − t − 1 to direct_dense4_rows, in any batches.
 * direct_dense4_rows: the accumulators of the n rows at w, w + row, … into acc[0 … n − 1], on phi and off
 *   as direct_dense4_prepare left them; the kernel's pairs or fours of rows per pass, any n.
 */
uint32_t direct_dense4_prepare(int16_t *phi, uint32_t b, const uint8_t *w, uint32_t n, uint32_t *taken,
                               uint32_t *last);
void direct_dense4_rows(const uint8_t *w, uint32_t row, uint32_t n, const int16_t *phi, uint32_t off,
                        uint32_t *acc);

/* Sign-extend a 4-bit two's complement nibble (MF §6: value = n − 16 for n ≥ 8). */
static inline int32_t direct_nibble(uint32_t n) {
    return (int32_t)(n ^ UINT32_C(8)) - INT32_C(8);
}

/* Sign-extend an i8 stored as a byte (MF §6.3 group level). */
static inline int32_t direct_i8(uint8_t byte) {
    return (int32_t)((uint32_t)byte ^ UINT32_C(0x80)) - INT32_C(0x80);
}

/* Little-endian field reads from the header (byte-wise: any alignment, any host). */
static inline uint32_t direct_rd16(const uint8_t *p) {
    return (uint32_t)DIRECT_U8(p) | ((uint32_t)DIRECT_U8(p + 1) << 8);
}

static inline uint32_t direct_rd32(const uint8_t *p) {
    return (uint32_t)DIRECT_U8(p) | ((uint32_t)DIRECT_U8(p + 1) << 8) | ((uint32_t)DIRECT_U8(p + 2) << 16) |
           ((uint32_t)DIRECT_U8(p + 3) << 24);
}

static inline uint64_t direct_rd64(const uint8_t *p) {
    return (uint64_t)direct_rd32(p) | ((uint64_t)direct_rd32(p + 4) << 32);
}

/* ---- BEGIN GENERATED from runtime/header.py (python -m direct_edge.runtime.header) ---- */
/* MF §2: byte offset of each header field, and a reader returning it (little-endian, any
 * alignment; f64 fields as their IEEE 754 bits, since the library has no floating point). */
#define DIRECT_MAGIC UINT32_C(0x51524944) /* "DIRQ" read as a little-endian u32 */
#define DIRECT_H_MAGIC 0u /* char[4]: 44 49 52 51 ("DIRQ") */
#define DIRECT_H_MAJOR 4u /* u16: major version */
#define DIRECT_H_MINOR 6u /* u16: minor version (any) */
#define DIRECT_H_TOTAL_SIZE 8u /* u32: total size in bytes, CRC included */
#define DIRECT_H_KIND 12u /* u8: feature kind, KIND_* */
#define DIRECT_H_LAYOUT 13u /* u8: sample layout, LAYOUT_* (§6) */
#define DIRECT_H_BITS 14u /* u8: level bits */
#define DIRECT_H_FLAGS 15u /* u8: bit 0: exact section (§7); bit 1: feature gains (§5.1); bit 2: ensemble variance floor (§5.2); bit 3: feature rotation (§5.3, rff only) */
#define DIRECT_H_N_INPUTS 16u /* u16: d */
#define DIRECT_H_N_FEATURES 18u /* u16: b */
#define DIRECT_H_N_SAMPLES 20u /* u16: S */
#define DIRECT_H_FEATURE_FRAC 22u /* u8: Fφ (IS §3) */
#define DIRECT_H_PRE_SHIFT 23u /* u8: r (IS §4) */
#define DIRECT_H_M1 24u /* i32: M1 (IS §5) */
#define DIRECT_H_S1 28u /* u8: s1 (IS §5) */
#define DIRECT_H_S2 29u /* u8: s2 (IS §5) */
#define DIRECT_H_CLASSES 30u /* u8: C, classes: 0 regression, else a classifier (§11, since 1.3) */
#define DIRECT_H_LOGIT_SHIFT 31u /* u8: sz (IS §10.1); 0 for regression */
#define DIRECT_H_M2 32u /* u32: M2 (IS §5) */
#define DIRECT_H_LOGIT_MULT 36u /* u32: Mz (IS §10.1); 0 for regression */
#define DIRECT_H_NOISE_Q 40u /* u64: IS §5 */
#define DIRECT_H_NOISE_EXACT_Q 48u /* u64: IS §6; 0 without the exact section */
#define DIRECT_H_MEAN_SCALE 56u /* f64: IS §7, host only; finite, > 0 */
#define DIRECT_H_Y_OFFSET 64u /* f64: IS §7, host only; finite */
#define DIRECT_H_SECTIONS 72u /* u32[14]: (offset, size) of sections 0 … 6 (§3) */
static inline uint32_t direct_h_magic(const uint8_t *h) {
    return direct_rd32(h + DIRECT_H_MAGIC);
}
static inline uint32_t direct_h_major(const uint8_t *h) {
    return direct_rd16(h + DIRECT_H_MAJOR);
}
static inline uint32_t direct_h_minor(const uint8_t *h) {
    return direct_rd16(h + DIRECT_H_MINOR);
}
static inline uint32_t direct_h_total_size(const uint8_t *h) {
    return direct_rd32(h + DIRECT_H_TOTAL_SIZE);
}
static inline uint32_t direct_h_kind(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_KIND);
}
static inline uint32_t direct_h_layout(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_LAYOUT);
}
static inline uint32_t direct_h_bits(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_BITS);
}
static inline uint32_t direct_h_flags(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_FLAGS);
}
static inline uint32_t direct_h_n_inputs(const uint8_t *h) {
    return direct_rd16(h + DIRECT_H_N_INPUTS);
}
static inline uint32_t direct_h_n_features(const uint8_t *h) {
    return direct_rd16(h + DIRECT_H_N_FEATURES);
}
static inline uint32_t direct_h_n_samples(const uint8_t *h) {
    return direct_rd16(h + DIRECT_H_N_SAMPLES);
}
static inline uint32_t direct_h_feature_frac(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_FEATURE_FRAC);
}
static inline uint32_t direct_h_pre_shift(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_PRE_SHIFT);
}
static inline int32_t direct_h_m1(const uint8_t *h) {
    return direct_i32_from_u32(direct_rd32(h + DIRECT_H_M1));
}
static inline uint32_t direct_h_s1(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_S1);
}
static inline uint32_t direct_h_s2(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_S2);
}
static inline uint32_t direct_h_classes(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_CLASSES);
}
static inline uint32_t direct_h_logit_shift(const uint8_t *h) {
    return (uint32_t)DIRECT_U8(h + DIRECT_H_LOGIT_SHIFT);
}
static inline uint32_t direct_h_m2(const uint8_t *h) {
    return direct_rd32(h + DIRECT_H_M2);
}
static inline uint32_t direct_h_logit_mult(const uint8_t *h) {
    return direct_rd32(h + DIRECT_H_LOGIT_MULT);
}
static inline uint64_t direct_h_noise_q(const uint8_t *h) {
    return direct_rd64(h + DIRECT_H_NOISE_Q);
}
static inline uint64_t direct_h_noise_exact_q(const uint8_t *h) {
    return direct_rd64(h + DIRECT_H_NOISE_EXACT_Q);
}
static inline uint64_t direct_h_mean_scale_bits(const uint8_t *h) {
    return direct_rd64(h + DIRECT_H_MEAN_SCALE);
}
static inline uint64_t direct_h_y_offset_bits(const uint8_t *h) {
    return direct_rd64(h + DIRECT_H_Y_OFFSET);
}
static inline uint32_t direct_h_sections(const uint8_t *h, uint32_t i) {
    return direct_rd32(h + DIRECT_H_SECTIONS + 4u * i);
}
/* ---- END GENERATED ---- */

#endif /* DIRECT_INTERNAL_H */
