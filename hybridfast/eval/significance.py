"""Paired significance tests over per-query scores: randomization test, bootstrap CI, Holm correction.

For two systems A and B scored on the same n queries, let d_i = b_i - a_i and the statistic
mean(d) = (1/n) sum_i d_i.

- Paired randomization (sign-flip permutation) test, two-sided (Fisher 1935; for IR: Smucker, Allan &
  Carterette 2007, "A Comparison of Statistical Significance Tests for Information Retrieval Evaluation"):
  under H0 the labels A/B of each query are exchangeable, so each d_i's sign is flipped at random;
  p = (1 + #{t : |mean(s_t * d)| >= |mean(d)|}) / (1 + T) over T random sign vectors s_t (the "+1" keeps
  the Monte-Carlo p-value valid, Phipson & Smyth 2010).
- Percentile bootstrap 95% CI of mean(d) (Efron & Tibshirani 1993): resample the n queries with
  replacement T times and take the 2.5% and 97.5% quantiles of the resampled means.
- Holm-Bonferroni step-down adjustment (Holm 1979) of the m p-values of one comparison (every setting and
  metric), controlling the family-wise error rate: sort p ascending, p'_(i) = max_{j<=i} min(1, (m-j+1) p_(j)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Resampled means computed per block: [block, n] float64 matrices stay below ~64 MB for n <= 8,000.
_BLOCK_ELEMENTS = 8_000_000


def paired_randomization_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, n_resamples: int = 10_000, seed: int = 0
) -> float:
    """Two-sided p-value of the sign-flip randomization test for mean(b - a) = 0."""
    diff = _paired_differences(a, b)
    observed = abs(diff.mean())
    # Guard against float noise: a resampled mean equal to the observed one must count as "as extreme".
    threshold = observed - 1e-12 * max(1.0, float(np.abs(diff).max()))
    rng = np.random.default_rng(seed)
    extreme = 0
    for size in _blocks(n_resamples, len(diff)):
        signs = rng.integers(0, 2, size=(size, len(diff)), dtype=np.int8).astype(np.float64) * 2.0 - 1.0
        extreme += int((np.abs(signs @ diff) / len(diff) >= threshold).sum())
    return (1 + extreme) / (1 + n_resamples)


def bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of mean(b - a) over queries."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    diff = _paired_differences(a, b)
    rng = np.random.default_rng(seed)
    means = []
    for size in _blocks(n_resamples, len(diff)):
        means.append(diff[rng.integers(0, len(diff), size=(size, len(diff)))].mean(axis=1))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)


def holm_bonferroni(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def _paired_differences(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-d arrays of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired test needs at least one query")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired scores must be finite")
    return b - a


def _blocks(total: int, width: int) -> list[int]:
    if total < 1:
        raise ValueError(f"n_resamples must be at least 1, not {total}")
    step = max(1, _BLOCK_ELEMENTS // max(1, width))
    return [min(step, total - start) for start in range(0, total, step)]
