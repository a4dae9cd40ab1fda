/*
 * direct_classify.c - classification in integer arithmetic (IS §10, MF §11).
 *
 * Per input row: the feature map (direct_features, IS §3), then per posterior sample the R logit rows of the
 * dense4 samples section (IS §4, §10.1), the integer log-sum-exp softmax by an exp2 and a log2 table
 * (IS §10.2), and the ensemble averages, entropies and mutual information (IS §10.3, §10.4). No float, no
 * division, no allocation: the caller's scratch holds the features and 16 bytes per class. Agrees bit for
 * bit with runtime/classify.py (the one definition of the tables and the arithmetic).
 */
#include "direct.h"

#include <stddef.h>

#include "direct_internal.h"

#define ONE UINT32_C(65536)              /* probability 1; one bit of log (2^16) */
#define DELTA_MAX UINT32_C(4194304)      /* IS §10.2: D = 2^22, a logit difference of 64 bits */
#define ENTROPY_MAX UINT64_C(1048576)    /* IS §10.4: H is clamped to 2^20 (16 bits) */
#define LOG_ONE_PROBABILITY UINT32_C(1048576) /* LOG(2^16) = 16 · 2^16 */
/* The scratch holds int64 logits: 8-byte alignment, except on 8-bit AVR, which has no alignment rule (its
 * uint64_t is 1-aligned, so a uint64_t array could not promise 8). */
#if defined(__AVR__)
#define SCRATCH_ALIGN 1u
#else
#define SCRATCH_ALIGN 8u
#endif

/* IS §10.2 tables, generated from runtime/classify.py (EXP_TABLE, LOG_TABLE; tests/runtime/test_classify.py
 * holds them equal): exp_table[i] = round(2^16 · 2^(-i/256)), log_table[i] = round(2^16 · log2(1 + i/256)). */
static const uint32_t exp_table[257] DIRECT_ROM = {
    UINT32_C(65536), UINT32_C(65359), UINT32_C(65182), UINT32_C(65006), UINT32_C(64830), UINT32_C(64655), UINT32_C(64480), UINT32_C(64306),
    UINT32_C(64132), UINT32_C(63958), UINT32_C(63785), UINT32_C(63613), UINT32_C(63441), UINT32_C(63269), UINT32_C(63098), UINT32_C(62928),
    UINT32_C(62757), UINT32_C(62588), UINT32_C(62419), UINT32_C(62250), UINT32_C(62081), UINT32_C(61914), UINT32_C(61746), UINT32_C(61579),
    UINT32_C(61413), UINT32_C(61247), UINT32_C(61081), UINT32_C(60916), UINT32_C(60751), UINT32_C(60587), UINT32_C(60423), UINT32_C(60260),
    UINT32_C(60097), UINT32_C(59934), UINT32_C(59772), UINT32_C(59611), UINT32_C(59449), UINT32_C(59289), UINT32_C(59128), UINT32_C(58968),
    UINT32_C(58809), UINT32_C(58650), UINT32_C(58491), UINT32_C(58333), UINT32_C(58176), UINT32_C(58018), UINT32_C(57861), UINT32_C(57705),
    UINT32_C(57549), UINT32_C(57393), UINT32_C(57238), UINT32_C(57083), UINT32_C(56929), UINT32_C(56775), UINT32_C(56622), UINT32_C(56468),
    UINT32_C(56316), UINT32_C(56163), UINT32_C(56012), UINT32_C(55860), UINT32_C(55709), UINT32_C(55558), UINT32_C(55408), UINT32_C(55258),
    UINT32_C(55109), UINT32_C(54960), UINT32_C(54811), UINT32_C(54663), UINT32_C(54515), UINT32_C(54368), UINT32_C(54221), UINT32_C(54074),
    UINT32_C(53928), UINT32_C(53782), UINT32_C(53637), UINT32_C(53492), UINT32_C(53347), UINT32_C(53203), UINT32_C(53059), UINT32_C(52916),
    UINT32_C(52773), UINT32_C(52630), UINT32_C(52488), UINT32_C(52346), UINT32_C(52204), UINT32_C(52063), UINT32_C(51922), UINT32_C(51782),
    UINT32_C(51642), UINT32_C(51502), UINT32_C(51363), UINT32_C(51224), UINT32_C(51085), UINT32_C(50947), UINT32_C(50810), UINT32_C(50672),
    UINT32_C(50535), UINT32_C(50399), UINT32_C(50262), UINT32_C(50126), UINT32_C(49991), UINT32_C(49856), UINT32_C(49721), UINT32_C(49586),
    UINT32_C(49452), UINT32_C(49319), UINT32_C(49185), UINT32_C(49052), UINT32_C(48920), UINT32_C(48787), UINT32_C(48655), UINT32_C(48524),
    UINT32_C(48393), UINT32_C(48262), UINT32_C(48131), UINT32_C(48001), UINT32_C(47871), UINT32_C(47742), UINT32_C(47613), UINT32_C(47484),
    UINT32_C(47356), UINT32_C(47228), UINT32_C(47100), UINT32_C(46973), UINT32_C(46846), UINT32_C(46719), UINT32_C(46593), UINT32_C(46467),
    UINT32_C(46341), UINT32_C(46216), UINT32_C(46091), UINT32_C(45966), UINT32_C(45842), UINT32_C(45718), UINT32_C(45594), UINT32_C(45471),
    UINT32_C(45348), UINT32_C(45225), UINT32_C(45103), UINT32_C(44981), UINT32_C(44859), UINT32_C(44738), UINT32_C(44617), UINT32_C(44497),
    UINT32_C(44376), UINT32_C(44256), UINT32_C(44137), UINT32_C(44017), UINT32_C(43898), UINT32_C(43780), UINT32_C(43661), UINT32_C(43543),
    UINT32_C(43425), UINT32_C(43308), UINT32_C(43191), UINT32_C(43074), UINT32_C(42958), UINT32_C(42841), UINT32_C(42726), UINT32_C(42610),
    UINT32_C(42495), UINT32_C(42380), UINT32_C(42265), UINT32_C(42151), UINT32_C(42037), UINT32_C(41923), UINT32_C(41810), UINT32_C(41697),
    UINT32_C(41584), UINT32_C(41472), UINT32_C(41360), UINT32_C(41248), UINT32_C(41136), UINT32_C(41025), UINT32_C(40914), UINT32_C(40804),
    UINT32_C(40693), UINT32_C(40583), UINT32_C(40473), UINT32_C(40364), UINT32_C(40255), UINT32_C(40146), UINT32_C(40037), UINT32_C(39929),
    UINT32_C(39821), UINT32_C(39714), UINT32_C(39606), UINT32_C(39499), UINT32_C(39392), UINT32_C(39286), UINT32_C(39180), UINT32_C(39074),
    UINT32_C(38968), UINT32_C(38863), UINT32_C(38757), UINT32_C(38653), UINT32_C(38548), UINT32_C(38444), UINT32_C(38340), UINT32_C(38236),
    UINT32_C(38133), UINT32_C(38030), UINT32_C(37927), UINT32_C(37824), UINT32_C(37722), UINT32_C(37620), UINT32_C(37518), UINT32_C(37417),
    UINT32_C(37316), UINT32_C(37215), UINT32_C(37114), UINT32_C(37014), UINT32_C(36914), UINT32_C(36814), UINT32_C(36715), UINT32_C(36615),
    UINT32_C(36516), UINT32_C(36417), UINT32_C(36319), UINT32_C(36221), UINT32_C(36123), UINT32_C(36025), UINT32_C(35928), UINT32_C(35831),
    UINT32_C(35734), UINT32_C(35637), UINT32_C(35541), UINT32_C(35445), UINT32_C(35349), UINT32_C(35253), UINT32_C(35158), UINT32_C(35063),
    UINT32_C(34968), UINT32_C(34874), UINT32_C(34779), UINT32_C(34685), UINT32_C(34591), UINT32_C(34498), UINT32_C(34405), UINT32_C(34312),
    UINT32_C(34219), UINT32_C(34126), UINT32_C(34034), UINT32_C(33942), UINT32_C(33850), UINT32_C(33759), UINT32_C(33667), UINT32_C(33576),
    UINT32_C(33486), UINT32_C(33395), UINT32_C(33305), UINT32_C(33215), UINT32_C(33125), UINT32_C(33035), UINT32_C(32946), UINT32_C(32857),
    UINT32_C(32768),
};

static const uint32_t log_table[257] DIRECT_ROM = {
    UINT32_C(0), UINT32_C(369), UINT32_C(736), UINT32_C(1102), UINT32_C(1466), UINT32_C(1829), UINT32_C(2190), UINT32_C(2551),
    UINT32_C(2909), UINT32_C(3267), UINT32_C(3623), UINT32_C(3978), UINT32_C(4331), UINT32_C(4683), UINT32_C(5034), UINT32_C(5384),
    UINT32_C(5732), UINT32_C(6079), UINT32_C(6425), UINT32_C(6769), UINT32_C(7112), UINT32_C(7454), UINT32_C(7795), UINT32_C(8134),
    UINT32_C(8473), UINT32_C(8810), UINT32_C(9146), UINT32_C(9480), UINT32_C(9814), UINT32_C(10146), UINT32_C(10477), UINT32_C(10807),
    UINT32_C(11136), UINT32_C(11464), UINT32_C(11791), UINT32_C(12116), UINT32_C(12440), UINT32_C(12764), UINT32_C(13086), UINT32_C(13407),
    UINT32_C(13727), UINT32_C(14046), UINT32_C(14363), UINT32_C(14680), UINT32_C(14996), UINT32_C(15310), UINT32_C(15624), UINT32_C(15937),
    UINT32_C(16248), UINT32_C(16559), UINT32_C(16868), UINT32_C(17177), UINT32_C(17484), UINT32_C(17791), UINT32_C(18096), UINT32_C(18401),
    UINT32_C(18704), UINT32_C(19007), UINT32_C(19308), UINT32_C(19609), UINT32_C(19909), UINT32_C(20207), UINT32_C(20505), UINT32_C(20802),
    UINT32_C(21098), UINT32_C(21393), UINT32_C(21687), UINT32_C(21980), UINT32_C(22272), UINT32_C(22564), UINT32_C(22854), UINT32_C(23144),
    UINT32_C(23433), UINT32_C(23720), UINT32_C(24007), UINT32_C(24293), UINT32_C(24579), UINT32_C(24863), UINT32_C(25146), UINT32_C(25429),
    UINT32_C(25711), UINT32_C(25992), UINT32_C(26272), UINT32_C(26551), UINT32_C(26830), UINT32_C(27108), UINT32_C(27384), UINT32_C(27660),
    UINT32_C(27936), UINT32_C(28210), UINT32_C(28484), UINT32_C(28757), UINT32_C(29029), UINT32_C(29300), UINT32_C(29571), UINT32_C(29840),
    UINT32_C(30109), UINT32_C(30378), UINT32_C(30645), UINT32_C(30912), UINT32_C(31178), UINT32_C(31443), UINT32_C(31707), UINT32_C(31971),
    UINT32_C(32234), UINT32_C(32496), UINT32_C(32758), UINT32_C(33019), UINT32_C(33279), UINT32_C(33538), UINT32_C(33797), UINT32_C(34055),
    UINT32_C(34312), UINT32_C(34569), UINT32_C(34825), UINT32_C(35080), UINT32_C(35334), UINT32_C(35588), UINT32_C(35841), UINT32_C(36094),
    UINT32_C(36346), UINT32_C(36597), UINT32_C(36847), UINT32_C(37097), UINT32_C(37346), UINT32_C(37595), UINT32_C(37842), UINT32_C(38090),
    UINT32_C(38336), UINT32_C(38582), UINT32_C(38827), UINT32_C(39072), UINT32_C(39316), UINT32_C(39559), UINT32_C(39802), UINT32_C(40044),
    UINT32_C(40286), UINT32_C(40527), UINT32_C(40767), UINT32_C(41006), UINT32_C(41246), UINT32_C(41484), UINT32_C(41722), UINT32_C(41959),
    UINT32_C(42196), UINT32_C(42432), UINT32_C(42667), UINT32_C(42902), UINT32_C(43137), UINT32_C(43370), UINT32_C(43603), UINT32_C(43836),
    UINT32_C(44068), UINT32_C(44300), UINT32_C(44530), UINT32_C(44761), UINT32_C(44990), UINT32_C(45220), UINT32_C(45448), UINT32_C(45676),
    UINT32_C(45904), UINT32_C(46131), UINT32_C(46357), UINT32_C(46583), UINT32_C(46809), UINT32_C(47034), UINT32_C(47258), UINT32_C(47482),
    UINT32_C(47705), UINT32_C(47928), UINT32_C(48150), UINT32_C(48372), UINT32_C(48593), UINT32_C(48813), UINT32_C(49034), UINT32_C(49253),
    UINT32_C(49472), UINT32_C(49691), UINT32_C(49909), UINT32_C(50127), UINT32_C(50344), UINT32_C(50560), UINT32_C(50776), UINT32_C(50992),
    UINT32_C(51207), UINT32_C(51422), UINT32_C(51636), UINT32_C(51850), UINT32_C(52063), UINT32_C(52276), UINT32_C(52488), UINT32_C(52700),
    UINT32_C(52911), UINT32_C(53122), UINT32_C(53332), UINT32_C(53542), UINT32_C(53751), UINT32_C(53960), UINT32_C(54169), UINT32_C(54377),
    UINT32_C(54584), UINT32_C(54791), UINT32_C(54998), UINT32_C(55204), UINT32_C(55410), UINT32_C(55615), UINT32_C(55820), UINT32_C(56025),
    UINT32_C(56229), UINT32_C(56432), UINT32_C(56635), UINT32_C(56838), UINT32_C(57040), UINT32_C(57242), UINT32_C(57443), UINT32_C(57644),
    UINT32_C(57845), UINT32_C(58045), UINT32_C(58245), UINT32_C(58444), UINT32_C(58643), UINT32_C(58841), UINT32_C(59039), UINT32_C(59237),
    UINT32_C(59434), UINT32_C(59631), UINT32_C(59827), UINT32_C(60023), UINT32_C(60219), UINT32_C(60414), UINT32_C(60609), UINT32_C(60803),
    UINT32_C(60997), UINT32_C(61190), UINT32_C(61384), UINT32_C(61576), UINT32_C(61769), UINT32_C(61961), UINT32_C(62152), UINT32_C(62343),
    UINT32_C(62534), UINT32_C(62725), UINT32_C(62915), UINT32_C(63104), UINT32_C(63294), UINT32_C(63483), UINT32_C(63671), UINT32_C(63859),
    UINT32_C(64047), UINT32_C(64234), UINT32_C(64421), UINT32_C(64608), UINT32_C(64794), UINT32_C(64980), UINT32_C(65166), UINT32_C(65351),
    UINT32_C(65536),
};

/* IS §10.2 EXP: 2^16 · 2^(-delta/2^16), table and linear interpolation, then the integer part as a shift. */
static uint32_t exp2_neg(uint32_t delta) {
    uint32_t n = delta >> 16, f = delta & UINT32_C(0xFFFF), i = f >> 8, t = f & UINT32_C(0xFF);
    uint32_t x0 = DIRECT_U32(&exp_table[i]), x1 = DIRECT_U32(&exp_table[i + 1u]);
    uint32_t v = x0 - (((x0 - x1) * t + UINT32_C(128)) >> 8); /* x0 >= x1: a round_shift of a non-negative */
    if (n >= 32u) {
        return 0u;
    }
    return n == 0u ? v : (v + (UINT32_C(1) << (n - 1u))) >> n; /* v <= 2^16: the sum fits u32 */
}

/* IS §10.2 LOG: 2^16 · log2(x) for x >= 1: the highest set bit, then the mantissa's table entry. */
static uint32_t log2_fixed(uint32_t x) {
    uint32_t n = 31u, u, f, i, t, y0;
    while ((x >> n) == 0u) {
        --n;
    }
    u = n >= 16u ? x >> (n - 16u) : x << (16u - n);
    f = u - ONE;
    i = f >> 8;
    t = f & UINT32_C(0xFF);
    y0 = DIRECT_U32(&log_table[i]);
    return n * ONE + y0 + (((DIRECT_U32(&log_table[i + 1u]) - y0) * t + UINT32_C(128)) >> 8);
}

/* IS §10.4: H(p) in units of 2^-16 bits, clamped to 2^20; each term p·(2^20 - LOG(p)) <= 2^36. */
static uint32_t entropy(const uint32_t *p, uint32_t classes) {
    uint64_t sum = 0u, h;
    uint32_t k;
    for (k = 0u; k < classes; ++k) {
        if (p[k] != 0u) {
            sum += (uint64_t)p[k] * (uint64_t)(LOG_ONE_PROBABILITY - log2_fixed(p[k]));
        }
    }
    h = (sum + UINT64_C(32768)) >> 16;
    return (uint32_t)(h < ENTROPY_MAX ? h : ENTROPY_MAX);
}

/* round_shift of a non-negative u64 by 1 <= s <= 62 (IS §1); the callers' bounds keep the sum below 2^64. */
static uint64_t round_shift_u64(uint64_t x, uint32_t s) {
    return (x + (UINT64_C(1) << (s - 1u))) >> s;
}

uint32_t direct_n_classes(const direct_model *m) {
    return m != NULL && m->blob != NULL ? direct_h_classes(m->blob) : 0u;
}

static uint32_t features_bytes(const direct_model *m) {
    return (direct_scratch_size(m) + 7u) & ~UINT32_C(7); /* the per-class arrays start 8-byte aligned */
}

uint32_t direct_classify_scratch_size(const direct_model *m) {
    return m != NULL ? features_bytes(m) + 16u * direct_n_classes(m) : 0u;
}

static void classify_one(const direct_model *m, const int16_t *x, int16_t *phi, uint8_t *work,
                         direct_classification *out) {
    const uint8_t *h = m->blob;
    uint32_t classes = direct_h_classes(h), rows = classes == 2u ? 1u : classes;
    uint32_t sz = direct_h_logit_shift(h), r = m->pre_shift, b = m->n_features, row_bytes = (b + 1u) >> 1;
    uint32_t n = m->n_samples, step = rows == 1u ? 2u : rows; /* N = S·R rows, sample-major (MF §11) */
    int64_t mz = (int64_t)direct_h_logit_mult(h);
    uint64_t m1 = (uint64_t)m->m1, sum_h = 0u;
    int64_t *logit = (int64_t *)(void *)work;                  /* C logits of one sample (IS §10.1) */
    uint32_t *total = (uint32_t *)(void *)(work + 8u * classes); /* P_k = Σ_s p_{s,k} (IS §10.3) */
    uint32_t *p = total + classes;                               /* p_{s,k} of one sample (IS §10.2) */
    /* The rows' accumulators: R ≥ 3 rows of one sample in p (read into the logits before p is written);
     * R = 1 (binary): two samples' rows per pass, the kernels' pairing. */
    uint32_t pair[2], *acc = rows == 1u ? pair : p, last = 0u, taken = 0u, off;
    const uint8_t *w = m->samples;
    uint32_t i, j, k, best = 0u;

#if DIRECT_ROTATION
    (void)direct_features(m, x, phi, direct_scratch_size(m) / 2u); /* a rotated model's second buffer too */
#else
    (void)direct_features(m, x, phi, b);
#endif
    off = direct_dense4_prepare(phi, b, w, n, &taken, &last); /* phi is in the kernel's order from here on */
    for (k = 0u; k < classes; ++k) {
        total[k] = 0u;
    }
    for (i = 0u; i < n; i += step, w += step * row_bytes) {
        uint32_t todo;
        step = n - i < step ? n - i : step; /* binary, odd S: the last sample alone */
        todo = step;
        if (i + step == n && taken != 0u) { /* (taken: read on the last pass only, no register held) */
            acc[--todo] = last; /* odd N: its last row, taken by direct_dense4_prepare (pairing kernels) */
        }
        direct_dense4_rows(w, row_bytes, todo, phi, off, acc);
        for (j = 0u; j < step; j += rows) { /* each sample of the pass */
            int64_t top;
            uint32_t sum = 0u, lam;
            logit[0] = 0; /* R = 1: the logistic model's vector is (0, z) */
            for (k = 0u; k < rows; ++k) {
                int32_t a = direct_round_shift32(direct_i32_from_u32(acc[j + k]), r);
                logit[rows == 1u ? 1u : k] = direct_round_shift64((int64_t)a * mz, sz); /* |a·Mz| < 2^62 */
            }
            top = logit[0];
            for (k = 1u; k < classes; ++k) {
                top = logit[k] > top ? logit[k] : top;
            }
            for (k = 0u; k < classes; ++k) {
                int64_t delta = top - logit[k]; /* >= 0, < 2^62 (IS §10.6) */
                p[k] = delta < (int64_t)DELTA_MAX ? (uint32_t)delta : DELTA_MAX;
                sum += exp2_neg(p[k]); /* <= C · 2^16 < 2^24 */
            }
            lam = log2_fixed(sum) - LOG_ONE_PROBABILITY; /* >= 0: the largest logit contributes exactly 2^16 */
            for (k = 0u; k < classes; ++k) {
                uint32_t arg = p[k] + lam; /* < 2^22 + 2^20 */
                p[k] = exp2_neg(arg < DELTA_MAX ? arg : DELTA_MAX);
                total[k] += p[k]; /* <= 4096 · 2^16 */
            }
            sum_h += entropy(p, classes); /* <= 4096 · 2^20 */
        }
    }
    for (k = 0u; k < classes; ++k) {
        uint64_t mean = round_shift_u64((uint64_t)total[k] * m1, m->s1); /* < 2^59 before the shift */
        out->proba[k] = mean < (uint64_t)ONE ? (uint32_t)mean : ONE; /* IS §10.3: a probability whatever M1 */
        if (out->proba[k] > out->proba[best]) {
            best = k; /* strictly greater: ties keep the lowest index */
        }
    }
    for (k = classes; k < (uint32_t)DIRECT_MAX_CLASSES; ++k) {
        out->proba[k] = 0u;
    }
    out->label = best;
    out->n_classes = classes;
    out->out_of_range = direct_out_of_range(m, x);
    out->entropy = entropy(out->proba, classes);
    {
        uint64_t e = round_shift_u64(sum_h * m1, m->s1); /* < 2^63 before the shift (IS §10.6) */
        out->expected_entropy = (uint32_t)(e < ENTROPY_MAX ? e : ENTROPY_MAX); /* IS §10.4's clamp */
    }
    out->mutual_info = out->entropy > out->expected_entropy ? out->entropy - out->expected_entropy : 0u;
}

static direct_status check_classify(const direct_model *m, const int16_t *x, const void *scratch,
                                    uint32_t scratch_size, const direct_classification *out) {
    if (m == NULL || m->blob == NULL || x == NULL || scratch == NULL || out == NULL) {
        return DIRECT_ERR_ARG;
    }
    if (direct_n_classes(m) == 0u || m->layout != DIRECT_LAYOUT_DENSE4) {
        return DIRECT_ERR_TASK;
    }
    if (direct_n_classes(m) > (uint32_t)DIRECT_MAX_CLASSES) {
        return DIRECT_ERR_ARG;
    }
    if (scratch_size < direct_classify_scratch_size(m) || ((uintptr_t)scratch & (uintptr_t)(SCRATCH_ALIGN - 1u)) != 0u) {
        return DIRECT_ERR_SCRATCH;
    }
    return DIRECT_OK;
}

direct_status direct_classify(const direct_model *m, const int16_t *x, void *scratch, uint32_t scratch_size,
                              direct_classification *out) {
    direct_status st = check_classify(m, x, scratch, scratch_size, out);
    if (st == DIRECT_OK) {
        classify_one(m, x, (int16_t *)scratch, (uint8_t *)scratch + features_bytes(m), out);
    }
    return st;
}

direct_status direct_classify_batch(const direct_model *m, const int16_t *x, uint32_t n_rows, void *scratch,
                                    uint32_t scratch_size, direct_classification *out) {
    uint32_t i, d;
    direct_status st = check_classify(m, x, scratch, scratch_size, out);
    if (st != DIRECT_OK) {
        return st;
    }
    d = m->n_inputs;
    for (i = 0u; i < n_rows; ++i) {
        classify_one(m, x + (uintptr_t)i * d, (int16_t *)scratch, (uint8_t *)scratch + features_bytes(m), out + i);
    }
    return DIRECT_OK;
}
