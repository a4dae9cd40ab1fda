/*
 * direct.h - integer-only runtime for direct-edge packed model blobs ("DIRQ", format 1.x).
 *
 * A Bayesian GLM's posterior samples (4-bit weight levels) and its feature map, evaluated in pure
 * integer arithmetic: no floating point, no libm, no malloc, no mutable global state. C99.
 *
 *   direct_model m;
 *   if (direct_model_open(&m, blob, blob_size) != DIRECT_OK) { ... }    validates everything, once
 *   int16_t scratch[...];                                                 direct_scratch_size(&m) bytes
 *   direct_prediction p;
 *   direct_predict(&m, x, scratch, sizeof scratch, &p);                   x: n_inputs int16 values
 *
 * Specs (cited below): docs/integer-spec.md ("IS §n") for the arithmetic, docs/model-format.md ("MF §n")
 * for the blob. Results agree bit for bit with the numpy reference (runtime/reference.py).
 *
 * Memory: the blob is used in place (e.g. from flash) and must stay alive and unchanged while the model
 * is used; it must start at a 4-byte aligned address (MF §1) and is read as arrays of int16/int32, so
 * declare it as an aligned array (generated headers use 16). The library assumes a little-endian target
 * (every Cortex-M, AVR, RISC-V, x86 and ARM Linux build is); direct_model_open returns DIRECT_ERR_ARG on a
 * big-endian one. Thread safety: a validated model is read only; calls may share it, each with its own
 * scratch.
 */
#ifndef DIRECT_H
#define DIRECT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Program-memory blobs (8-bit AVR and other Harvard targets). On AVR a plain `static const` array is
 * copied into RAM at start-up, and flash is a separate address space read with pgm_read_*(). Compiled
 * with DIRECT_PROGMEM = 1 (the default when __AVR__ is defined; -DDIRECT_PROGMEM=0 turns it off), the
 * library reads the blob, and its own lookup tables, from program memory through avr-libc's
 * pgm_read_byte/word/dword: the pointer given to direct_model_open must then point into flash
 * (declare the blob PROGMEM), and every other pointer argument (inputs, scratch, outputs) into RAM.
 * Elsewhere DIRECT_PROGMEM is 0 and every read is a plain load (the same machine code as before).
 *
 * Blob alignment (MF §1, DIRECT_ERR_ALIGN): 4 bytes wherever arrays are read in place through typed
 * pointers; 1 byte with DIRECT_PROGMEM (all reads are byte-wise program-memory reads, and an 8-bit AVR
 * has no alignment requirement at all; its uint64_t is 1-aligned, so a generated header cannot promise 4).
 */
#ifndef DIRECT_PROGMEM
#if defined(__AVR__)
#define DIRECT_PROGMEM 1
#else
#define DIRECT_PROGMEM 0
#endif
#endif
#if DIRECT_PROGMEM
#define DIRECT_BLOB_ALIGN 1u
#else
#define DIRECT_BLOB_ALIGN 4u
#endif

/*
 * Classifier blobs (MF §11, IS §10): with DIRECT_CLASSIFY 1 (the default) direct_model_open validates them
 * and direct_classify (direct_classify.c) evaluates them. A regression-only build may define
 * DIRECT_CLASSIFY 0: direct_model_open then rejects every classifier blob (DIRECT_ERR_HEADER, as a format
 * 1.2 reader does) for about 100 bytes less flash on AVR.
 */
#ifndef DIRECT_CLASSIFY
#define DIRECT_CLASSIFY 1
#endif

/*
 * The ensemble's variance floor (MF §5.2, IS §5): with DIRECT_FLOOR 1 (the default) direct_predict adds it
 * to the samples' variance. A build that predicts with direct_predict_exact only (whose moments carry the
 * floor already) may define DIRECT_FLOOR 0: direct_model_open then rejects every blob with the floor
 * (DIRECT_ERR_HEADER, as a format 1.3 reader does; export with --no-ensemble-floor) for about 200 bytes
 * less flash on AVR.
 */
#ifndef DIRECT_FLOOR
#define DIRECT_FLOOR 1
#endif

/*
 * Feature rotation (MF §5.3, IS §3.5): with DIRECT_ROTATION 1 (the default, but on AVR) direct_model_open
 * accepts rotated rff blobs and every call rotates the features (b² multiply-adds; the scratch holds a
 * second b-feature buffer, see direct_scratch_size). A build with DIRECT_ROTATION 0 (the default on AVR,
 * whose parts cannot hold the 2·b² bytes of R anyway) rejects every rotated blob with DIRECT_ERR_HEADER,
 * as a format 1.4 reader does, and carries none of its code.
 */
#ifndef DIRECT_ROTATION
#if defined(__AVR__)
#define DIRECT_ROTATION 0
#else
#define DIRECT_ROTATION 1
#endif
#endif

#define DIRECT_FORMAT_MAJOR 1u
#define DIRECT_HEADER_SIZE 128u
#define DIRECT_MIN_BLOB_SIZE 132u /* header + CRC (MF §1) */

/* Status codes, fixed by MF §9 (the Python reader's BlobError.code uses the same numbers). */
typedef enum {
    DIRECT_OK = 0,
    DIRECT_ERR_ARG = 1,       /* null pointer, blob < 132 bytes, bad batch/feature arguments */
    DIRECT_ERR_ALIGN = 2,     /* blob not DIRECT_BLOB_ALIGN-byte aligned (4; 1 with DIRECT_PROGMEM) */
    DIRECT_ERR_MAGIC = 3,     /* not a "DIRQ" blob */
    DIRECT_ERR_VERSION = 4,   /* major version other than 1 */
    DIRECT_ERR_SIZE = 5,      /* header's total size differs from the size given (truncated?) */
    DIRECT_ERR_CRC = 6,       /* checksum mismatch (MF §8) */
    DIRECT_ERR_HEADER = 7,    /* an MF §2 field rule fails */
    DIRECT_ERR_SECTION = 8,   /* an MF §3 placement rule fails */
    DIRECT_ERR_CONTENT = 9,   /* an MF §4-§7 content rule fails */
    DIRECT_ERR_OVERFLOW = 10, /* the IS §9 accumulator bounds fail */
    DIRECT_ERR_SCRATCH = 11,  /* scratch smaller than direct_scratch_size(), or not 2-byte aligned */
    DIRECT_ERR_NO_EXACT = 12, /* exact-moment prediction on a blob without the exact section */
    DIRECT_ERR_TASK = 13      /* direct_classify on a regression blob or a classifier not in dense4, or a regression call on a classifier (MF §11) */
} direct_status;

/* MF §2 enumerations. */
enum { DIRECT_KIND_LINEAR = 0, DIRECT_KIND_RFF = 1 };
enum { DIRECT_LAYOUT_DENSE4 = 0, DIRECT_LAYOUT_BITMAP4 = 1, DIRECT_LAYOUT_GROUPED = 2, DIRECT_LAYOUT_GAP4 = 3 };
enum { DIRECT_FLAG_EXACT = 1, DIRECT_FLAG_GAINS = 2, DIRECT_FLAG_FLOOR = 4, DIRECT_FLAG_ROTATION = 8 };

/*
 * A validated blob: header fields and const pointers into the caller's blob (nothing is copied).
 * Filled by direct_model_open; treat as read only. All zero when open fails.
 */
typedef struct {
    const uint8_t *blob;      /* start of the blob (4-byte aligned) */
    uint32_t size;            /* total bytes, CRC included */
    uint8_t kind;             /* DIRECT_KIND_* (MF §2) */
    uint8_t layout;           /* DIRECT_LAYOUT_* (MF §6) */
    uint8_t bits;             /* 2, 3 or 4 */
    uint8_t flags;            /* DIRECT_FLAG_EXACT, DIRECT_FLAG_GAINS, DIRECT_FLAG_FLOOR, DIRECT_FLAG_ROTATION */
    uint16_t n_inputs;        /* d */
    uint16_t n_features;      /* b */
    uint16_t n_samples;       /* S */
    uint8_t feature_frac;     /* Fφ (IS §3) */
    uint8_t pre_shift;        /* r (IS §4) */
    int32_t m1;               /* IS §5 mean multiplier */
    uint32_t m2;              /* IS §5 variance multiplier */
    uint8_t s1;               /* IS §5 mean shift */
    uint8_t s2;               /* IS §5 variance shift */
    uint16_t minor;           /* format minor version */
    uint64_t noise_q;         /* IS §5 */
    uint64_t noise_exact_q;   /* IS §6 (0 without the exact section) */
    const int32_t *linear;    /* linear: d pairs (M_k, B_k) (IS §3.1); else NULL */
    const uint32_t *phase_c;  /* rff: C_j, F = b/2 values (IS §3.2); else NULL */
    const int32_t *phase_w;   /* rff: W, F x d row-major; else NULL */
    const int16_t *table;     /* rff: 257-entry quarter-wave sine table (IS §3.3); else NULL */
    const uint8_t *samples;   /* samples section (MF §6) */
    uint32_t samples_size;    /* its size in bytes */
    const int16_t *exact_mean; /* exact section: μq (b values) (IS §6); NULL without it */
    const uint16_t *exact_var; /* exact section: vq (b values); NULL without it */
    uint32_t weight_bound;    /* L = max_s Σ_i |w_si| over the stored levels (IS §9) */
    const uint16_t *gains;    /* feature gains G_i in [1, 32768] (b values; IS §3.4, MF §5.1); NULL: none */
    const uint16_t *var_floor; /* the ensemble's variance floor eq (b values; IS §5, MF §5.2); NULL: none */
#if DIRECT_ROTATION
    const int16_t *rotation;        /* R, b x b row-major (IS §3.5, MF §5.3); NULL: none */
    const uint8_t *rotation_shift;  /* s_k <= 16 (b values); NULL: none */
#endif
} direct_model;

/* One prediction in the model's output units (IS §5, §7: target = y_offset + mean_scale · mean). */
typedef struct {
    int32_t mean;          /* mean_q: ensemble mean of f */
    uint32_t out_of_range; /* IS §2.1 mask of inputs at -32768 or 32767 (at or beyond the training range's
                              edge): bit k for input k < 31, bit 31 for any input k >= 31; nonzero means the
                              prediction is the edge's (an extrapolation; the variance does not grow there) */
    uint64_t var_f;        /* var_q: ensemble variance of f (plus the rounding floor, IS §5), < 2^61 */
    uint64_t var_y;        /* var_y_q = var_q + noise_q: predictive variance of y, < 2^63 */
} direct_prediction;

/*
 * Validate a blob (MF §9, in that order, stopping at the first failure) and fill *m.
 * Reads nothing outside [blob, blob + size); the CRC and every sample are checked once here.
 */
direct_status direct_model_open(direct_model *m, const void *blob, uint32_t size);

/* Dimensions of an opened model: d inputs, b features, S samples; 0 for a NULL model. */
uint32_t direct_n_inputs(const direct_model *m);
uint32_t direct_n_features(const direct_model *m);
uint32_t direct_n_samples(const direct_model *m);

/* 1 when the blob carries the exact-moment section (IS §6), else 0. */
int direct_has_exact(const direct_model *m);

/*
 * Bytes of scratch that every prediction call needs: the b int16 features, rounded up to an even
 * count (2·b bytes, +2 for odd b); a rotated model (IS §3.5) needs twice that, 4·b bytes (the rff
 * features, then the rotated ones). The buffer must be 2-byte aligned (int16_t); 4 is a safe choice.
 */
uint32_t direct_scratch_size(const direct_model *m);

/*
 * IS §2.1 for int16 inputs: the mask of the n_inputs values of x that sit at -32768 or 32767, i.e. at or
 * beyond the edge of the training range (host quantisation saturates there): bit k for input k < 31, bit 31
 * for any input k >= 31; 0 when none is (or for a NULL argument). The prediction calls store the same mask
 * in direct_prediction.out_of_range. A host that quantises real inputs knows more: only the inputs its
 * clamp changed are beyond the range (IS §2.1, real inputs).
 */
uint32_t direct_out_of_range(const direct_model *m, const int16_t *x);

/*
 * Feature map (IS §3): x has n_inputs int16 values; writes the b int16 features to phi (n_phi >= b; for a
 * rotated model n_phi >= 2·b, the unrotated features being computed in phi[b … 2b) first). With a rotation
 * and gains these are the features every prediction uses (IS §3.5, then §3.4). Exposed for testing;
 * direct_predict calls it.
 */
direct_status direct_features(const direct_model *m, const int16_t *x, int16_t *phi, uint32_t n_phi);

/*
 * Ensemble prediction (IS §3-§5) for one input vector x (n_inputs int16 values).
 * Cost: b features, then per sample one pass over its stored levels (MF §6). No division.
 */
direct_status direct_predict(const direct_model *m, const int16_t *x, void *scratch, uint32_t scratch_size,
                             direct_prediction *out);

/* Exact-moment prediction (IS §6): two dot products over b; DIRECT_ERR_NO_EXACT without the section. */
direct_status direct_predict_exact(const direct_model *m, const int16_t *x, void *scratch,
                                   uint32_t scratch_size, direct_prediction *out);

/*
 * Batch versions: x is n_rows x n_inputs int16, row-major; out has n_rows entries. A loop over the
 * single-row calls, stopping at the first error.
 */
direct_status direct_predict_batch(const direct_model *m, const int16_t *x, uint32_t n_rows, void *scratch,
                                   uint32_t scratch_size, direct_prediction *out);
direct_status direct_predict_exact_batch(const direct_model *m, const int16_t *x, uint32_t n_rows,
                                         void *scratch, uint32_t scratch_size, direct_prediction *out);

/*
 * Classification (IS §10, MF §11). Largest class count the output struct holds; a classifier blob with
 * more classes returns DIRECT_ERR_ARG from direct_classify (raise it with -DDIRECT_MAX_CLASSES=n, n <= 255).
 */
#ifndef DIRECT_MAX_CLASSES
#define DIRECT_MAX_CLASSES 16
#endif

/* One classification, in fixed point: probabilities in units of 2^-16 (65536 is 1), entropies in units of
 * 2^-16 bits (times ln 2 / 65536 for nats). */
typedef struct {
    uint32_t label;            /* argmax of proba (IS §10.3; ties: the lowest class index) */
    uint32_t n_classes;        /* C: entries of proba that are set */
    uint32_t out_of_range;     /* IS §2.1 mask, as direct_prediction.out_of_range */
    uint32_t entropy;          /* H(p̄), predictive entropy (IS §10.4), <= 2^20 */
    uint32_t expected_entropy; /* mean over samples of H(p_s): the aleatoric part */
    uint32_t mutual_info;      /* max(0, entropy - expected_entropy): the epistemic part */
    uint32_t proba[DIRECT_MAX_CLASSES]; /* p̄_k, the ensemble average of the per-sample softmax (IS §10.3) */
} direct_classification;

/* Classes of an opened blob: C >= 2 for a classifier, 0 for a regression model (or a NULL model). */
uint32_t direct_n_classes(const direct_model *m);

/* Bytes of scratch direct_classify needs: the features (direct_scratch_size) rounded up to 8 bytes, then
 * 16 bytes per class; the buffer must be 8-byte aligned (any alignment on AVR). 0 for a NULL model. */
uint32_t direct_classify_scratch_size(const direct_model *m);

/*
 * Classification (IS §10) of one input vector x (n_inputs int16 values): features, then per posterior sample
 * the R logits, the integer log-sum-exp softmax, and the averages. No division, no float, no allocation.
 * DIRECT_ERR_TASK for a regression blob or a layout other than dense4; DIRECT_ERR_ARG for a NULL argument or
 * more than DIRECT_MAX_CLASSES classes; DIRECT_ERR_SCRATCH for scratch below direct_classify_scratch_size()
 * or not 8-byte aligned (AVR: any alignment).
 */
direct_status direct_classify(const direct_model *m, const int16_t *x, void *scratch, uint32_t scratch_size,
                              direct_classification *out);

/* Batch version: x is n_rows x n_inputs int16, row-major; out has n_rows entries; stops at the first error. */
direct_status direct_classify_batch(const direct_model *m, const int16_t *x, uint32_t n_rows, void *scratch,
                                    uint32_t scratch_size, direct_classification *out);

/* CRC-32 (IEEE 802.3, reflected; zlib's crc32 with initial value 0) of len bytes (MF §8). */
uint32_t direct_crc32(const void *data, uint32_t len);

/* Short constant name of a status code ("OK", "CRC", ...; MF §9); "?" for an unknown code. With
 * DIRECT_PROGMEM (AVR) the names stay in flash and the result points to a 9-byte static RAM copy that
 * the next call overwrites; elsewhere it points to the constant table. */
const char *direct_status_name(direct_status status);

#ifdef __cplusplus
}
#endif

#endif /* DIRECT_H */
