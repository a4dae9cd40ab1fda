"""IS §9's overflow rules, one function each (docs/integer-spec.md §9, cited as IS §n).

The exporter (``export/packed.py``) uses them to choose parameters and the Python reader
(``runtime/blob.py``) to check a blob; the C library (``runtime/c/direct.c``) has its own integer
versions, held equal to these by the bit-exact and robustness suites (tests/runtime).  Arguments are
Python ints (or an int16 array for the sine table); every function returns a bool and raises nothing.
"""

from __future__ import annotations

import numpy as np

I32_MAX = 2**31 - 1
PHI_MAX = 32767
WEIGHT_BOUND_MAX = 65536  # IS §9 §4: L = max_s Σ_i |w_si|
NOISE_MAX = 1 << 62  # IS §9 §5: noise_q, noise_exact_q
M2_MAX = 1 << 31  # IS §5
PRE_SHIFT_MAX = 31  # IS §4
GAIN_ONE = 1 << 15  # IS §3.4: G_i = gain·2^15, 1 ≤ G_i ≤ 2^15
ROTATION_SHIFT_MAX = 16  # IS §3.5: ψ_k = round_shift(Σ_j R_kj·φ_j, 15 + s_k), s_k ≤ 16


def round_shift(x, s: int):
    """IS §1: ⌊(x + 2^(s−1)) / 2^s⌋, round half up; s = 0 returns x.  Python ints or int64 arrays."""
    if s == 0:
        return x
    return (x + (1 << (s - 1))) >> s


def linear_feature_fits(m: int, b: int) -> bool:
    """IS §9 (§3.1): |M|·32768 + |B| + 2^14 ≤ 2³¹ − 1 and |φ| ≤ 32767 at q = −32768 and q = 32767."""
    if abs(m) * 32768 + abs(b) + (1 << 14) > I32_MAX:
        return False
    return abs(round_shift(m * -32768 + b, 15)) <= PHI_MAX and abs(round_shift(m * 32767 + b, 15)) <= PHI_MAX


def sine_table_fits(table: np.ndarray) -> bool:
    """IS §9 (§3.3): every entry of the int16 (257,) quarter-wave table has |T[i]| ≤ 32767."""
    return not bool(np.any(np.asarray(table) == -32768))


def gains_fit(gains: np.ndarray) -> bool:
    """IS §9 (§3.4): every feature gain G_i (u16 (b,)) has 1 ≤ G_i ≤ 2^15, so |φ'_i| ≤ |φ_i|."""
    gains = np.asarray(gains)
    return bool(np.all((gains >= 1) & (gains <= GAIN_ONE)))


def rotation_shifts_fit(shifts: np.ndarray) -> bool:
    """IS §9 (§3.5): every rotation shift s_k (u8 (b,)) is at most 16 (MF §5.3); any i16 R is valid,
    since |Σ_j R_kj·φ_j| ≤ b·32767·32768 < 2⁴⁶ fits i64 for every b < 2¹⁶."""
    return bool(np.all(np.asarray(shifts) <= ROTATION_SHIFT_MAX))


def weight_bound_fits(bound: int) -> bool:
    """IS §9 (§4): L = max_s Σ_i |w_si| ≤ 65536, so |acc_s| < 2³¹."""
    return bound <= WEIGHT_BOUND_MAX


def sample_output_bound(bound: int, pre_shift: int) -> int:
    """IS §9 (§4): A_max = round_shift(L·32767, r), the largest |a_s| for weight bound L."""
    return round_shift(bound * PHI_MAX, pre_shift)


def ensemble_sum_fits(n_samples: int, bound: int, pre_shift: int) -> bool:
    """IS §9 (§4): S·A_max ≤ 2³¹ − 1, so ΣA fits i32 and ΣA2 < 2⁶²."""
    return n_samples * sample_output_bound(bound, pre_shift) <= I32_MAX


def mean_fits(n_samples: int, bound: int, pre_shift: int, m1: int, s1: int) -> bool:
    """IS §9 (§5): round_shift(S·A_max·M1, s1) ≤ 2³¹ − 1, so mean_q fits i32."""
    return round_shift(n_samples * sample_output_bound(bound, pre_shift) * m1, s1) <= I32_MAX


def mean_multiplier_fits(m1: int) -> bool:
    """IS §9 (§5): 1 ≤ M1 ≤ 2³¹ − 1."""
    return 1 <= m1 <= I32_MAX


def mean_shift_fits(s1: int) -> bool:
    """IS §9 (§5): 1 ≤ s1 ≤ 62."""
    return 1 <= s1 <= 62


def variance_multiplier_fits(m2: int) -> bool:
    """IS §9 (§5): M2 ≤ 2³¹."""
    return 0 <= m2 <= M2_MAX


def variance_shift_fits(s2: int) -> bool:
    """IS §9 (§5): 33 ≤ s2 ≤ 63 (mulshift96's range)."""
    return 33 <= s2 <= 63


def pre_shift_fits(pre_shift: int) -> bool:
    """IS §4, §9: 0 ≤ r ≤ 31."""
    return 0 <= pre_shift <= PRE_SHIFT_MAX


def noise_fits(noise_q: int) -> bool:
    """IS §9 (§5): noise_q, noise_exact_q ≤ 2⁶², so var_y_q < 2⁶³."""
    return 0 <= noise_q <= NOISE_MAX


def exact_mean_fits(n_features: int, pre_shift: int) -> bool:
    """IS §9 (§6): b·2^(18−r) < 2³¹, so the exact-moment mean_q fits i32."""
    return (n_features << 18) < 1 << (31 + pre_shift)


# ---- IS §10.6: classifier blobs -----------------------------------------------------------------------

CLASSES_MAX = 255  # MF §2: the class count is a u8
CLASSIFIER_SAMPLES_MAX = 4096  # IS §10.6: P_k ≤ 2^28 and Σ_s H(p_s)·M1 < 2^63
LOGIT_SHIFT_MAX = 62  # IS §10.1


def logit_rows(classes: int) -> int:
    """IS §10: R, the weight rows per posterior sample: 1 for two classes (one logit), else C."""
    return 1 if classes == 2 else classes


def classifier_rows_fit(classes: int, n_rows: int) -> bool:
    """IS §10.6 / MF §11: the N weight rows are S·R with 1 ≤ S ≤ 4096."""
    R = logit_rows(classes)
    return n_rows % R == 0 and 1 <= n_rows // R <= CLASSIFIER_SAMPLES_MAX


def logit_shift_fits(shift: int) -> bool:
    """IS §10.6 (§10.1): 1 ≤ sz ≤ 62, so |ℓ| < 2^61."""
    return 1 <= shift <= LOGIT_SHIFT_MAX


def logit_multiplier_fits(mult: int) -> bool:
    """IS §10.6 (§10.1): 1 ≤ Mz ≤ 2^31 − 1, so |a·Mz| < 2^62."""
    return 1 <= mult <= I32_MAX
