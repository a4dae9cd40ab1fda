/*
 * direct.c - opening and validating a packed blob (MF §9) and the model queries.
 *
 * Every check runs in the order of MF §9 and matches runtime/blob.py's parse() code for code, so the
 * two readers accept and reject the same byte strings. Nothing is read before the bytes it needs are
 * known to lie inside [blob, blob + size).
 */
#include "direct.h"

#include <stddef.h>

#include "direct_internal.h"

#define I32_MAX_64 INT64_C(2147483647)
#define PHI_MAX INT32_C(32767)
#define TABLE_SIZE 257u
#define MAX_GROUPS 16u
#define N_SECTIONS 7u
#define SEC_INPUT 0u
#define SEC_FEATURES 1u
#define SEC_TABLE 2u
#define SEC_SAMPLES 3u
#define SEC_EXACT 4u
#define SEC_META 5u
#define SEC_SCHEMA 6u /* MF §10: host only; placed and covered by the CRC, its content never read here */
#define SIZE_ANY UINT64_C(0xFFFFFFFFFFFFFFFF) /* sections 3, 5 and 6: any size */

/* Byte-at-a-time nibble table for the CRC (MF §8): 64 bytes of flash instead of 1 KB. */
static const uint32_t crc_nibble_table[16] DIRECT_ROM = {
    UINT32_C(0x00000000), UINT32_C(0x1DB71064), UINT32_C(0x3B6E20C8), UINT32_C(0x26D930AC),
    UINT32_C(0x76DC4190), UINT32_C(0x6B6B51F4), UINT32_C(0x4DB26158), UINT32_C(0x5005713C),
    UINT32_C(0xEDB88320), UINT32_C(0xF00F9344), UINT32_C(0xD6D6A3E8), UINT32_C(0xCB61B38C),
    UINT32_C(0x9B64C2B0), UINT32_C(0x86D3D2D4), UINT32_C(0xA00AE278), UINT32_C(0xBDBDF21C),
};

uint32_t direct_crc32(const void *data, uint32_t len) {
    const uint8_t *p = (const uint8_t *)data;
    uint32_t crc = UINT32_C(0xFFFFFFFF);
    uint32_t i;
    if (p == NULL) {
        return 0u;
    }
    for (i = 0u; i < len; ++i) {
        crc ^= (uint32_t)DIRECT_U8(p + i);
        crc = (crc >> 4) ^ DIRECT_U32(&crc_nibble_table[crc & UINT32_C(0xF)]);
        crc = (crc >> 4) ^ DIRECT_U32(&crc_nibble_table[crc & UINT32_C(0xF)]);
    }
    return crc ^ UINT32_C(0xFFFFFFFF);
}

/* The names as one constant table (flash on every target): an array of pointers to string literals
 * would be copied into RAM on AVR, 114 bytes of a 2 KB part. The last entry is for unknown codes. */
#define STATUS_NAME_SIZE 9u /* "OVERFLOW" and "NO_EXACT" with their terminator */
#if DIRECT_CLASSIFY
#define N_STATUS_NAMES 14u
#else
#define N_STATUS_NAMES 13u /* a regression-only build never returns TASK: "?" for it */
#endif
static const char status_names[N_STATUS_NAMES + 1u][STATUS_NAME_SIZE] DIRECT_ROM = {
    "OK",   "ARG",    "ALIGN",   "MAGIC",   "VERSION",  "SIZE",    "CRC",
    "HEADER", "SECTION", "CONTENT", "OVERFLOW", "SCRATCH", "NO_EXACT",
#if DIRECT_CLASSIFY
    "TASK",
#endif
    "?"};

const char *direct_status_name(direct_status status) {
    uint32_t code = (uint32_t)status < N_STATUS_NAMES ? (uint32_t)status : N_STATUS_NAMES;
#if DIRECT_PROGMEM
    /* A flash address is not a C string the caller can print: copy the name into RAM (9 bytes). */
    static char name[STATUS_NAME_SIZE];
    uint32_t i;
    for (i = 0u; i < STATUS_NAME_SIZE; ++i) {
        name[i] = (char)DIRECT_U8((const uint8_t *)&status_names[code][i]);
    }
    return name;
#else
    return status_names[code];
#endif
}

static uint32_t popcount8(uint32_t x) {
    x = x - ((x >> 1) & UINT32_C(0x55));
    x = (x & UINT32_C(0x33)) + ((x >> 2) & UINT32_C(0x33));
    return (x + (x >> 4)) & UINT32_C(0x0F);
}

static uint32_t abs_level(int32_t v) {
    return v < 0 ? (uint32_t)(-v) : (uint32_t)v;
}

static int64_t abs64(int64_t v) {
    return v < 0 ? -v : v;
}

/* IEEE 754 binary64 given as its bits (host-only fields, never computed with): finite, and finite > 0. */
static int f64_finite(uint64_t bits) {
    return ((bits >> 52) & UINT64_C(0x7FF)) != UINT64_C(0x7FF);
}

static int f64_positive(uint64_t bits) {
    return (bits >> 63) == 0u && bits != 0u && f64_finite(bits);
}

/* MF §2 and §11 (code HEADER): C = 0 (regression) with sz = Mz = 0, or a classifier: 2 <= C <= 255,
 * 1 <= sz <= 62, 1 <= Mz <= 2^31 - 1 (IS §10.6), N = S·R rows with S <= 4096. Byte and 16-bit arithmetic
 * (cheaper on 8-bit targets): Mz judged by its bytes (nonzero, top bit clear), and N = S·R with S <= 4096 by
 * subtracting R while it fits (no division anywhere in the library). */
#if DIRECT_CLASSIFY
static direct_status check_classifier(const uint8_t *h) {
    const uint8_t *mz = h + DIRECT_H_LOGIT_MULT;
    uint8_t classes = DIRECT_U8(h + DIRECT_H_CLASSES), sz = DIRECT_U8(h + DIRECT_H_LOGIT_SHIFT);
    uint8_t any_mz = (uint8_t)(DIRECT_U8(mz) | DIRECT_U8(mz + 1) | DIRECT_U8(mz + 2) | DIRECT_U8(mz + 3));
    uint16_t rest = (uint16_t)direct_h_n_samples(h), r = classes == 2u ? 1u : classes, s = 0u;
    if (classes == 0u) {
        return (sz | any_mz) == 0u ? DIRECT_OK : DIRECT_ERR_HEADER;
    }
    if (classes < 2u || sz < 1u || sz > 62u || any_mz == 0u || (DIRECT_U8(mz + 3) & 0x80u) != 0u) {
        return DIRECT_ERR_HEADER;
    }
    while (rest >= r) {
        rest = (uint16_t)(rest - r);
        ++s;
    }
    return rest == 0u && s <= 4096u ? DIRECT_OK : DIRECT_ERR_HEADER;
}
#else
/* A regression-only build (DIRECT_CLASSIFY 0): the bytes of C, sz and Mz must be 0, as format 1.2's
 * reserved fields were, so every classifier blob is HEADER. */
static direct_status check_classifier(const uint8_t *h) {
    /* C and sz are the two bytes at offset 30: one 16-bit read, as format 1.2's reserved u16 */
    return (direct_rd16(h + DIRECT_H_CLASSES) | direct_h_logit_mult(h)) == 0u ? DIRECT_OK : DIRECT_ERR_HEADER;
}
#endif

#if DIRECT_FLOOR
#define FLAGS_FLOOR DIRECT_FLAG_FLOOR
#else
#define FLAGS_FLOOR 0 /* a build without the ensemble floor refuses blobs that carry one (direct.h) */
#endif
#if DIRECT_ROTATION
#define FLAGS_ROTATION DIRECT_FLAG_ROTATION
#else
#define FLAGS_ROTATION 0 /* a build without the rotation refuses rotated blobs (direct.h) */
#endif

/* MF §2: the header's field rules (code HEADER); offsets and readers are generated from runtime/header.py. */
static direct_status check_header(const uint8_t *h) {
    uint32_t kind = direct_h_kind(h), layout = direct_h_layout(h), bits = direct_h_bits(h), flags = direct_h_flags(h);
    uint32_t d = direct_h_n_inputs(h), b = direct_h_n_features(h), S = direct_h_n_samples(h);
    uint32_t frac = direct_h_feature_frac(h), r = direct_h_pre_shift(h), s1 = direct_h_s1(h), s2 = direct_h_s2(h);
    int32_t m1 = direct_h_m1(h);
    uint64_t noise = direct_h_noise_q(h), noise_exact = direct_h_noise_exact_q(h);
    const uint64_t noise_max = UINT64_C(1) << 62;

    if (kind > 1u || layout > 3u || bits < 2u || bits > 4u || (flags & ~(uint32_t)(DIRECT_FLAG_EXACT | DIRECT_FLAG_GAINS | FLAGS_FLOOR | FLAGS_ROTATION)) != 0u) {
        return DIRECT_ERR_HEADER;
    }
#if DIRECT_ROTATION
    if ((flags & (uint32_t)DIRECT_FLAG_ROTATION) != 0u && kind == DIRECT_KIND_LINEAR) {
        return DIRECT_ERR_HEADER; /* MF §5.3: rff only */
    }
#endif
    if (d < 1u || S < 1u || r > 31u) {
        return DIRECT_ERR_HEADER;
    }
    if (kind == DIRECT_KIND_LINEAR ? (b != d + 1u || frac > 14u) : (b < 2u || (b & 1u) != 0u || frac != 15u)) {
        return DIRECT_ERR_HEADER;
    }
    if (m1 < 1 || s1 < 1u || s1 > 62u || s2 < 33u || s2 > 63u || direct_h_m2(h) > (UINT32_C(1) << 31)) {
        return DIRECT_ERR_HEADER;
    }
    if (check_classifier(h) != DIRECT_OK) {
        return DIRECT_ERR_HEADER;
    }
    if (noise > noise_max || noise_exact > noise_max) {
        return DIRECT_ERR_HEADER;
    }
    if ((flags & (uint32_t)DIRECT_FLAG_EXACT) == 0u && noise_exact != 0u) {
        return DIRECT_ERR_HEADER;
    }
    if (!f64_positive(direct_h_mean_scale_bits(h)) || !f64_finite(direct_h_y_offset_bits(h))) {
        return DIRECT_ERR_HEADER;
    }
    return DIRECT_OK;
}

/* MF §3: offset and size of section sid from the header's section table. */
static uint32_t section_offset(const uint8_t *h, uint32_t sid) {
    return direct_h_sections(h, 2u * sid);
}

static uint32_t section_size(const uint8_t *h, uint32_t sid) {
    return direct_h_sections(h, 2u * sid + 1u);
}

/* MF §3: placement and sizes of the seven sections (code SECTION). Sizes in 64 bits: 4·F·(1 + d) can
 * exceed 2^32 in a corrupted header. */
static direct_status check_sections(const uint8_t *h, uint32_t total) {
    uint64_t d = direct_h_n_inputs(h), b = direct_h_n_features(h);
    int linear = direct_h_kind(h) == DIRECT_KIND_LINEAR;
    uint64_t want[N_SECTIONS];
    uint32_t end = DIRECT_HEADER_SIZE, limit = total - 4u, sid;

    want[SEC_INPUT] = 16u * d;
    want[SEC_FEATURES] = (linear ? 8u * d : 4u * (b / 2u) * (1u + d)) +
                         ((direct_h_flags(h) & DIRECT_FLAG_GAINS) != 0u ? 2u * b : 0u) + /* MF §5.1 */
                         ((direct_h_flags(h) & DIRECT_FLAG_FLOOR) != 0u ? 2u * b : 0u);  /* MF §5.2 */
#if DIRECT_ROTATION
    if ((direct_h_flags(h) & DIRECT_FLAG_ROTATION) != 0u) {
        want[SEC_FEATURES] += 2u * b * b + b; /* MF §5.3 */
    }
#endif
    want[SEC_TABLE] = linear ? 0u : 2u * TABLE_SIZE;
    want[SEC_SAMPLES] = SIZE_ANY;
    want[SEC_EXACT] = (direct_h_flags(h) & DIRECT_FLAG_EXACT) != 0u ? 4u * b : 0u;
    want[SEC_META] = SIZE_ANY;
    want[SEC_SCHEMA] = SIZE_ANY;
    for (sid = 0u; sid < N_SECTIONS; ++sid) {
        uint32_t off = section_offset(h, sid), size = section_size(h, sid);
        if (want[sid] != SIZE_ANY && (uint64_t)size != want[sid]) {
            return DIRECT_ERR_SECTION;
        }
        if (size == 0u) {
            if (off != 0u) {
                return DIRECT_ERR_SECTION;
            }
            continue;
        }
        if ((off & 7u) != 0u || off < end || size > limit || off > limit - size) {
            return DIRECT_ERR_SECTION;
        }
        end = off + size;
    }
    return DIRECT_OK;
}

/* MF §5, IS §9: linear parameters keep M·q + B + 2^14 inside i32 and |φ| ≤ 32767 at both ends. */
static direct_status check_linear(const int32_t *mb, uint32_t d) {
    uint32_t k;
    for (k = 0u; k < d; ++k) {
        int64_t mk = DIRECT_I32(mb + 2u * k), bk = DIRECT_I32(mb + 2u * k + 1u);
        int64_t lo = direct_round_shift64(mk * INT64_C(-32768) + bk, 15u);
        int64_t hi = direct_round_shift64(mk * INT64_C(32767) + bk, 15u);
        if (abs64(mk) * INT64_C(32768) + abs64(bk) + INT64_C(16384) > I32_MAX_64 || abs64(lo) > PHI_MAX ||
            abs64(hi) > PHI_MAX) {
            return DIRECT_ERR_CONTENT;
        }
    }
    return DIRECT_OK;
}

/* Walk every sample of the samples section once (MF §6); on success *bound = L = max_s Σ|level|. */
static direct_status check_dense4(const uint8_t *p, uint32_t n, uint32_t S, uint32_t b, int32_t lo,
                                  int32_t hi, uint32_t *bound) {
    uint32_t row = (b + 1u) / 2u, s, i;
    if ((uint64_t)n != (uint64_t)S * row) {
        return DIRECT_ERR_CONTENT;
    }
    for (s = 0u; s < S; ++s, p += row) {
        uint32_t total = 0u;
        if ((b & 1u) != 0u && (DIRECT_U8(p + row - 1u) >> 4) != 0u) {
            return DIRECT_ERR_CONTENT;
        }
        for (i = 0u; i < row; ++i) {
            int32_t v0 = direct_nibble((uint32_t)DIRECT_U8(p + i) & 0xFu), v1 = direct_nibble((uint32_t)DIRECT_U8(p + i) >> 4);
            if (v0 < lo || v0 > hi || v1 < lo || v1 > hi) {
                return DIRECT_ERR_CONTENT;
            }
            total += abs_level(v0) + abs_level(v1);
        }
        *bound = total > *bound ? total : *bound;
    }
    return DIRECT_OK;
}

static direct_status check_bitmap4(const uint8_t *p, uint32_t n, uint32_t S, uint32_t b, int32_t lo,
                                   int32_t hi, uint32_t *bound) {
    uint32_t nmap = (b + 7u) / 8u, pos = 0u, s, j;
    for (s = 0u; s < S; ++s) {
        uint32_t nnz = 0u, nbytes, total = 0u;
        if (n - pos < nmap) {
            return DIRECT_ERR_CONTENT;
        }
        if ((b & 7u) != 0u && ((uint32_t)DIRECT_U8(p + pos + nmap - 1u) >> (b & 7u)) != 0u) {
            return DIRECT_ERR_CONTENT;
        }
        for (j = 0u; j < nmap; ++j) {
            nnz += popcount8(DIRECT_U8(p + pos + j));
        }
        pos += nmap;
        nbytes = (nnz + 1u) / 2u;
        if (n - pos < nbytes) {
            return DIRECT_ERR_CONTENT;
        }
        for (j = 0u; j < nnz; ++j) {
            uint32_t nib = ((uint32_t)DIRECT_U8(p + pos + j / 2u) >> (4u * (j & 1u))) & 0xFu;
            int32_t v = direct_nibble(nib);
            if (nib == 0u || v < lo || v > hi) {
                return DIRECT_ERR_CONTENT;
            }
            total += abs_level(v);
        }
        if ((nnz & 1u) != 0u && (DIRECT_U8(p + pos + nbytes - 1u) >> 4) != 0u) {
            return DIRECT_ERR_CONTENT;
        }
        pos += nbytes;
        *bound = total > *bound ? total : *bound;
    }
    return pos == n ? DIRECT_OK : DIRECT_ERR_CONTENT;
}

/* MF §6.3/§6.4: unsigned LEB128 of at most 3 bytes at DIRECT_U8(p + *pos), inside n bytes. */
static direct_status read_varint(const uint8_t *p, uint32_t n, uint32_t *pos, uint32_t *value) {
    uint32_t k;
    *value = 0u;
    for (k = 0u;; ++k) {
        uint32_t byte;
        if (*pos >= n) {
            return DIRECT_ERR_CONTENT;
        }
        byte = DIRECT_U8(p + ((*pos)++));
        *value |= (byte & 0x7Fu) << (7u * k);
        if ((byte & 0x80u) == 0u) {
            return DIRECT_OK;
        }
        if (k == 2u) {
            return DIRECT_ERR_CONTENT;
        }
    }
}

/* MF §6.4: per sample a byte count, then (gap, level) bytes; a level-0 byte is a skip of 16·(g + 1). */
static direct_status check_gap4(const uint8_t *p, uint32_t n, uint32_t S, uint32_t b, int32_t lo, int32_t hi,
                                uint32_t *bound) {
    uint32_t pos = 0u, s, j;
    for (s = 0u; s < S; ++s) {
        uint32_t nbytes, total = 0u, next = 0u; /* next = position + 1 (position −1 before the first) */
        if (read_varint(p, n, &pos, &nbytes) != DIRECT_OK || n - pos < nbytes) {
            return DIRECT_ERR_CONTENT;
        }
        if (nbytes > 0u && (DIRECT_U8(p + pos + nbytes - 1u) >> 4) == 0u) { /* a trailing skip */
            return DIRECT_ERR_CONTENT;
        }
        for (j = 0u; j < nbytes; ++j) { /* next ≤ 256·2^21: no wrap */
            uint32_t byte = DIRECT_U8(p + pos + j);
            if ((byte >> 4) == 0u) {
                next += ((byte & 0xFu) + 1u) << 4;
            } else {
                int32_t v = direct_nibble(byte >> 4);
                next += (byte & 0xFu) + 1u;
                if (next > b || v < lo || v > hi) {
                    return DIRECT_ERR_CONTENT;
                }
                total += abs_level(v);
            }
        }
        pos += nbytes;
        *bound = total > *bound ? total : *bound;
    }
    return pos == n ? DIRECT_OK : DIRECT_ERR_CONTENT;
}

static direct_status check_grouped(const uint8_t *p, uint32_t n, uint32_t S, uint32_t b, int32_t lo,
                                   int32_t hi, uint32_t *bound) {
    uint32_t pos = 0u, s, g, groups;
    for (s = 0u; s < S; ++s) {
        uint32_t total = 0u;
        int32_t previous = INT32_C(-1000);
        if (pos >= n) {
            return DIRECT_ERR_CONTENT;
        }
        groups = DIRECT_U8(p + pos++);
        if (groups > MAX_GROUPS) {
            return DIRECT_ERR_CONTENT;
        }
        for (g = 0u; g < groups; ++g) {
            uint32_t count = 0u, index = 0u, started = 0u, c;
            int32_t v;
            if (pos >= n) {
                return DIRECT_ERR_CONTENT;
            }
            v = direct_i8(DIRECT_U8(p + pos++));
            if (v == 0 || v < lo || v > hi || v <= previous) {
                return DIRECT_ERR_CONTENT;
            }
            previous = v;
            if (read_varint(p, n, &pos, &count) != DIRECT_OK) {
                return DIRECT_ERR_CONTENT;
            }
            if (count < 1u || count > b) {
                return DIRECT_ERR_CONTENT;
            }
            for (c = 0u; c < count; ++c) {
                /* index + 1 is the next position allowed (p = −1 before the first index). */
                uint32_t next = started ? index + 1u : 0u, gap = 0u;
                for (;;) {
                    uint32_t byte;
                    if (pos >= n) {
                        return DIRECT_ERR_CONTENT;
                    }
                    byte = DIRECT_U8(p + pos++);
                    gap += byte != 0u ? byte : 255u;
                    if (next + gap - 1u >= b) {
                        return DIRECT_ERR_CONTENT;
                    }
                    if (byte != 0u) {
                        break;
                    }
                }
                index = next + gap - 1u;
                started = 1u;
            }
            total += abs_level(v) * count;
        }
        *bound = total > *bound ? total : *bound;
    }
    return pos == n ? DIRECT_OK : DIRECT_ERR_CONTENT;
}

static int little_endian_host(void) {
    const uint16_t one = 1u;
    return *(const uint8_t *)&one == 1u;
}

static void clear_model(direct_model *m) {
    m->blob = NULL;
    m->size = 0u;
    m->kind = m->layout = m->bits = m->flags = 0u;
    m->n_inputs = m->n_features = m->n_samples = 0u;
    m->feature_frac = m->pre_shift = m->s1 = m->s2 = 0u;
    m->m1 = 0;
    m->m2 = 0u;
    m->minor = 0u;
    m->noise_q = m->noise_exact_q = 0u;
    m->linear = NULL;
    m->phase_c = NULL;
    m->phase_w = NULL;
    m->table = NULL;
    m->samples = NULL;
    m->samples_size = 0u;
    m->exact_mean = NULL;
    m->exact_var = NULL;
    m->var_floor = NULL;
    m->weight_bound = 0u;
    m->gains = NULL;
#if DIRECT_ROTATION
    m->rotation = NULL;
    m->rotation_shift = NULL;
#endif
}

/* MF §9 codes ARG … CRC: pointer, size and host, alignment (MF §1), magic, major version, total size and
 * checksum (MF §8), in that order. */
static direct_status check_frame(const uint8_t *h, uint32_t size) {
    if (h == NULL || size < DIRECT_MIN_BLOB_SIZE || !little_endian_host()) {
        return DIRECT_ERR_ARG;
    }
    if (((uintptr_t)h & (uintptr_t)(DIRECT_BLOB_ALIGN - 1u)) != 0u) {
        return DIRECT_ERR_ALIGN;
    }
    if (direct_h_magic(h) != DIRECT_MAGIC) {
        return DIRECT_ERR_MAGIC;
    }
    if (direct_h_major(h) != DIRECT_FORMAT_MAJOR) {
        return DIRECT_ERR_VERSION;
    }
    if (direct_h_total_size(h) != size) {
        return DIRECT_ERR_SIZE;
    }
    if (direct_crc32(h, size - 4u) != direct_rd32(h + size - 4u)) {
        return DIRECT_ERR_CRC;
    }
    return DIRECT_OK;
}

/* MF §4 (code CONTENT): per input, f64 scale finite and > 0, f64 zero point finite (host only). */
static direct_status check_inputs(const uint8_t *h) {
    const uint8_t *p = h + section_offset(h, SEC_INPUT);
    uint32_t k, d = direct_h_n_inputs(h);
    for (k = 0u; k < d; ++k, p += 16) {
        if (!f64_positive(direct_rd64(p)) || !f64_finite(direct_rd64(p + 8))) {
            return DIRECT_ERR_CONTENT;
        }
    }
    return DIRECT_OK;
}

/* MF §5.1–§5.2: the feature section ends with the gains (flag bit 1), then the floors (flag bit 2). */
#if DIRECT_FLOOR
static const uint16_t *section_floor(const uint8_t *h) {
    uint32_t b = direct_h_n_features(h);
    if ((direct_h_flags(h) & DIRECT_FLAG_FLOOR) == 0u) {
        return NULL;
    }
    return (const uint16_t *)(const void *)(h + section_offset(h, SEC_FEATURES) + section_size(h, SEC_FEATURES) -
                                            2u * b);
}
#endif

static const uint16_t *section_gains(const uint8_t *h) {
#if DIRECT_FLOOR
    uint32_t b = direct_h_n_features(h), floor_bytes = (direct_h_flags(h) & DIRECT_FLAG_FLOOR) != 0u ? 2u * b : 0u;
#else
    uint32_t b = direct_h_n_features(h), floor_bytes = 0u; /* open refused blobs with the floor */
#endif
    if ((direct_h_flags(h) & DIRECT_FLAG_GAINS) == 0u) {
        return NULL;
    }
    return (const uint16_t *)(const void *)(h + section_offset(h, SEC_FEATURES) + section_size(h, SEC_FEATURES) -
                                            floor_bytes - 2u * b);
}

#if DIRECT_ROTATION
/* MF §5.3: R (b × b i16) right after the rff parameters C (F u32) and W (F × d i32), then s (b u8); NULL
 * without flag bit 3. */
static const int16_t *section_rotation(const uint8_t *h) {
    uint32_t F = direct_h_n_features(h) / 2u;
    if ((direct_h_flags(h) & DIRECT_FLAG_ROTATION) == 0u) {
        return NULL;
    }
    return (const int16_t *)(const void *)(h + section_offset(h, SEC_FEATURES) + 4u * F * (1u + direct_h_n_inputs(h)));
}
#endif

/* MF §5 (code CONTENT): the linear parameters' IS §9 bounds, or the rff sine table's and every rotation
 * shift s_k <= 16 (MF §5.3; any i16 R is valid), then every gain in [1, 32768] (MF §5.1). Section offsets are multiples of 8, the parameters fill whole words and the blob is
 * 4-aligned, so the arrays are read in place. */
static direct_status check_features(const uint8_t *h) {
    const uint16_t *g = section_gains(h);
    uint32_t k, b = direct_h_n_features(h);
    if (direct_h_kind(h) == DIRECT_KIND_LINEAR) {
        direct_status st =
            check_linear((const int32_t *)(const void *)(h + section_offset(h, SEC_FEATURES)), direct_h_n_inputs(h));
        if (st != DIRECT_OK) {
            return st;
        }
    } else {
        const int16_t *t = (const int16_t *)(const void *)(h + section_offset(h, SEC_TABLE));
        for (k = 0u; k < TABLE_SIZE; ++k) {
            if (DIRECT_I16(t + k) == INT16_MIN) {
                return DIRECT_ERR_CONTENT;
            }
        }
#if DIRECT_ROTATION
        if (section_rotation(h) != NULL) {
            const uint8_t *shift = (const uint8_t *)(const void *)(section_rotation(h) + b * b);
            for (k = 0u; k < b; ++k) {
                if (DIRECT_U8(shift + k) > 16u) {
                    return DIRECT_ERR_CONTENT;
                }
            }
        }
#endif
    }
    for (k = 0u; g != NULL && k < b; ++k) {
        uint32_t gk = DIRECT_U16(g + k);
        if (gk < 1u || gk > UINT32_C(32768)) {
            return DIRECT_ERR_CONTENT;
        }
    }
    return DIRECT_OK;
}

/* MF §6 (code CONTENT): every sample, once, in the header's layout; on success *bound = L. */
static direct_status check_samples(const uint8_t *h, uint32_t *bound) {
    const uint8_t *p = h + section_offset(h, SEC_SAMPLES);
    uint32_t n = section_size(h, SEC_SAMPLES), S = direct_h_n_samples(h), b = direct_h_n_features(h);
    uint32_t bits = direct_h_bits(h);
    int32_t lo = -(INT32_C(1) << (bits - 1u)), hi = (INT32_C(1) << (bits - 1u)) - INT32_C(1);
    switch (direct_h_layout(h)) {
    case DIRECT_LAYOUT_DENSE4:
        return check_dense4(p, n, S, b, lo, hi, bound);
    case DIRECT_LAYOUT_BITMAP4:
        return check_bitmap4(p, n, S, b, lo, hi, bound);
    case DIRECT_LAYOUT_GROUPED:
        return check_grouped(p, n, S, b, lo, hi, bound);
    default:
        return check_gap4(p, n, S, b, lo, hi, bound);
    }
}

/* IS §9 (code OVERFLOW): from the stored weight bound L, |acc_s| < 2^31, ΣA fits i32, mean_q fits i32, and
 * the exact-moment mean fits i32. */
static direct_status check_overflow(const uint8_t *h, uint32_t bound) {
    uint32_t S = direct_h_n_samples(h), b = direct_h_n_features(h), r = direct_h_pre_shift(h);
    int64_t sum_bound;
    if (bound > UINT32_C(65536)) {
        return DIRECT_ERR_OVERFLOW;
    }
    sum_bound = (int64_t)S * (int64_t)direct_round_shift32((int32_t)(bound * UINT32_C(32767)), r);
    if (sum_bound > I32_MAX_64 || direct_round_shift64(sum_bound * (int64_t)direct_h_m1(h), direct_h_s1(h)) > I32_MAX_64) {
        return DIRECT_ERR_OVERFLOW;
    }
    if ((direct_h_flags(h) & DIRECT_FLAG_EXACT) != 0u && ((uint64_t)b << 18) >= (UINT64_C(1) << (31u + r))) {
        return DIRECT_ERR_OVERFLOW;
    }
    return DIRECT_OK;
}

/* Fill *m from a blob that passed every check: header fields and pointers into the blob. */
static void fill_model(direct_model *m, const uint8_t *h, uint32_t bound) {
    uint32_t b = direct_h_n_features(h);
    m->blob = h;
    m->size = direct_h_total_size(h);
    m->kind = (uint8_t)direct_h_kind(h);
    m->layout = (uint8_t)direct_h_layout(h);
    m->bits = (uint8_t)direct_h_bits(h);
    m->flags = (uint8_t)direct_h_flags(h);
    m->n_inputs = (uint16_t)direct_h_n_inputs(h);
    m->n_features = (uint16_t)b;
    m->n_samples = (uint16_t)direct_h_n_samples(h);
    m->feature_frac = (uint8_t)direct_h_feature_frac(h);
    m->pre_shift = (uint8_t)direct_h_pre_shift(h);
    m->m1 = direct_h_m1(h);
    m->m2 = direct_h_m2(h);
    m->s1 = (uint8_t)direct_h_s1(h);
    m->s2 = (uint8_t)direct_h_s2(h);
    m->minor = (uint16_t)direct_h_minor(h);
    m->noise_q = direct_h_noise_q(h);
    m->noise_exact_q = direct_h_noise_exact_q(h);
    if (m->kind == DIRECT_KIND_LINEAR) {
        m->linear = (const int32_t *)(const void *)(h + section_offset(h, SEC_FEATURES));
    } else {
        const uint8_t *f = h + section_offset(h, SEC_FEATURES);
        m->phase_c = (const uint32_t *)(const void *)f;
        m->phase_w = (const int32_t *)(const void *)(f + 4u * (b / 2u));
        m->table = (const int16_t *)(const void *)(h + section_offset(h, SEC_TABLE));
#if DIRECT_ROTATION
        m->rotation = section_rotation(h);
        if (m->rotation != NULL) {
            m->rotation_shift = (const uint8_t *)(const void *)(m->rotation + b * b);
        }
#endif
    }
    m->samples = h + section_offset(h, SEC_SAMPLES);
    m->samples_size = section_size(h, SEC_SAMPLES);
    if ((m->flags & DIRECT_FLAG_EXACT) != 0u) {
        const uint8_t *e = h + section_offset(h, SEC_EXACT);
        m->exact_mean = (const int16_t *)(const void *)e;
        m->exact_var = (const uint16_t *)(const void *)(e + 2u * b);
    }
    m->weight_bound = bound;
    m->gains = section_gains(h);
#if DIRECT_FLOOR
    m->var_floor = section_floor(h);
#endif
}

direct_status direct_model_open(direct_model *m, const void *blob, uint32_t size) {
    const uint8_t *h = (const uint8_t *)blob;
    uint32_t bound = 0u;
    direct_status st;

    if (m == NULL) {
        return DIRECT_ERR_ARG;
    }
    clear_model(m);
    st = check_frame(h, size);
    if (st == DIRECT_OK) {
        st = check_header(h);
    }
    if (st == DIRECT_OK) {
        st = check_sections(h, size);
    }
    if (st == DIRECT_OK) {
        st = check_inputs(h);
    }
    if (st == DIRECT_OK) {
        st = check_features(h);
    }
    if (st == DIRECT_OK) {
        st = check_samples(h, &bound);
    }
    if (st == DIRECT_OK) {
        st = check_overflow(h, bound);
    }
    if (st == DIRECT_OK) {
        fill_model(m, h, bound);
    }
    return st;
}

/* IS §2.1 (int16 inputs): inputs at the ends of the i16 range, as a u32 mask (bit 31: any input k >= 31). */
uint32_t direct_out_of_range(const direct_model *m, const int16_t *x) {
    uint32_t mask = 0u, k, d;
    if (m == NULL || x == NULL) {
        return 0u;
    }
    d = m->n_inputs;
    for (k = 0u; k < d; ++k) {
        if (x[k] == INT16_MIN || x[k] == INT16_MAX) {
            mask |= UINT32_C(1) << (k < 31u ? k : 31u);
        }
    }
    return mask;
}

uint32_t direct_n_inputs(const direct_model *m) {
    return m != NULL ? m->n_inputs : 0u;
}

uint32_t direct_n_features(const direct_model *m) {
    return m != NULL ? m->n_features : 0u;
}

uint32_t direct_n_samples(const direct_model *m) {
    return m != NULL ? m->n_samples : 0u;
}

int direct_has_exact(const direct_model *m) {
    return m != NULL && m->exact_mean != NULL;
}

uint32_t direct_scratch_size(const direct_model *m) {
    return m != NULL ? direct_scratch_bytes(m) : 0u;
}
