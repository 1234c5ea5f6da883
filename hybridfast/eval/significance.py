"""Significance and equivalence tests for retrieval scores from several training seeds and clustered queries.

Data. System A was trained with S_A seeds and system B with S_B (a zero-shot model has one); each is scored on
the same n queries, y_A[s, q] and y_B[s, q]. Queries come in clusters c(q) that are not independent: the 11
translations of one XQuAD-R question, the questions of one article. The estimand is the difference of the
seed-averaged means,

    Δ = (1/n) Σ_q ( ȳ_B[q] − ȳ_A[q] ),   ȳ_X[q] = (1/S_X) Σ_s y_X[s, q],

and its uncertainty has two sources: which questions were sampled, and which training seeds.

**Two-factor (pigeonhole) bootstrap** (Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat. 1(2); the crossed
design seeds × clusters). Each replicate draws K clusters with replacement from the K clusters (one draw shared by
A and B: the comparison stays paired over questions) and, independently for each system, S_X seeds with
replacement from its S_X seeds; Δ* is Δ recomputed on that draw, with every query of a drawn cluster weighted by
the number of times its cluster was drawn:

    Δ* = Σ_c w_c (M*_B[c] − M*_A[c]) / Σ_c w_c n_c,   M*_X[c] = (1/S_X) Σ_s u_X,s T_X[s, c],

where T_X[s, c] is the sum of y_X[s, q] over the n_c queries of cluster c, w the cluster counts and u_X the seed
counts. Owen shows this variance estimate is mildly conservative for crossed random effects (the seed × question
interaction enters twice); with S seeds the seed component carries the usual bootstrap shrinkage (S − 1)/S.
Resampling query rows instead of clusters, or averaging over seeds before testing, understates the variance.

From the R replicates:
- percentile CI at level 1 − a: the a/2 and 1 − a/2 quantiles of Δ* (Efron & Tibshirani 1993);
- two-sided p-value by inverting the percentile interval, p = min(1, 2 (1 + min(#{Δ* ≤ 0}, #{Δ* ≥ 0})) / (1 + R)),
  so that p < a exactly when 0 lies outside the 1 − a interval (up to the +1 that keeps Monte-Carlo p-values
  valid, Phipson & Smyth 2010);
- equivalence (TOST, Schuirmann 1987) within ±m: p = max(P*(Δ* ≤ −m), P*(Δ* ≥ m)) with the same +1; equivalence
  at level a holds exactly when the 1 − 2a percentile interval lies inside (−m, m).

**Parametric TOST** for timings (independent repeats, means over many operations): two one-sided t-tests of
the mean paired difference (`tost_paired`) or of the difference of two means with Welch's degrees of freedom
(`tost_welch`) against ±m; on log times, m = log(1 + relative margin).

**Holm-Bonferroni** step-down adjustment (Holm 1979) of a family of m p-values, controlling the family-wise error
rate: sort p ascending, p'_(i) = max_{j<=i} min(1, (m − j + 1) p_(j)).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# Replicates per block, so that the [block, clusters] weight matrices stay below ~64 MB.
_BLOCK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class BootstrapTest:
    """Δ = mean(B) − mean(A), its percentile CI, the two-sided p-value, and what was resampled."""

    diff: float
    ci_low: float
    ci_high: float
    p: float
    clusters: int
    seeds_a: int
    seeds_b: int
    replicates: np.ndarray

    def equivalence_p(self, margin: float) -> float:
        """TOST p-value for |Δ| < margin from the same replicates (module docstring)."""
        if not margin > 0:
            raise ValueError(f"equivalence margin must be positive, not {margin}")
        r = self.replicates
        below = (1 + int((r <= -margin).sum())) / (1 + len(r))
        above = (1 + int((r >= margin).sum())) / (1 + len(r))
        return min(1.0, max(below, above))

    def interval(self, confidence: float) -> tuple[float, float]:
        """Percentile interval of Δ at another confidence level (e.g. 0.90 for a TOST at 0.05)."""
        return _percentiles(self.replicates, confidence)


@dataclass(frozen=True)
class EquivalenceTest:
    """Two one-sided tests of |Δ| < margin: Δ, its 1 − 2a confidence interval, the TOST p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p: float
    margin: float
    alpha: float

    @property
    def equivalent(self) -> bool:
        return self.p < self.alpha


def cluster_index(labels: Sequence[Hashable] | None, n: int) -> np.ndarray:
    """Cluster number (0..K−1, in order of first appearance) of each of n queries; None: each query its own."""
    if labels is None:
        return np.arange(n)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} queries")
    numbers: dict[Hashable, int] = {}
    return np.array([numbers.setdefault(label, len(numbers)) for label in labels], dtype=np.int64)


def hierarchical_bootstrap(
    a: Sequence[Sequence[float]] | np.ndarray,
    b: Sequence[Sequence[float]] | np.ndarray,
    clusters: Sequence[Hashable] | None = None,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapTest:
    """Two-factor bootstrap of Δ = mean(B) − mean(A) over seeds and clusters (module docstring).

    `a` is [S_A, n] (one row per seed of A), `b` is [S_B, n], paired column by column (query by query);
    `clusters` labels each query (None: every query is its own cluster).
    """
    a, b = _seed_matrix(a, "a"), _seed_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores must cover the same queries: {a.shape[1]} and {b.shape[1]}")
    cluster = cluster_index(clusters, a.shape[1])
    return _bootstrap(a, b, cluster, n_resamples, confidence, seed)


def bootstrap_mean(
    x: Sequence[Sequence[float]] | np.ndarray,
    clusters: Sequence[Hashable] | None = None,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapTest:
    """The same bootstrap for one system's mean score (its CI; the p-value tests mean = 0)."""
    x = _seed_matrix(x, "x")
    return _bootstrap(np.zeros((1, x.shape[1])), x, cluster_index(clusters, x.shape[1]), n_resamples, confidence, seed)


def _bootstrap(a: np.ndarray, b: np.ndarray, cluster: np.ndarray, n_resamples: int, confidence: float,
               seed: int) -> BootstrapTest:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    n_clusters = int(cluster.max()) + 1
    if n_clusters < 2:
        raise ValueError("resampling needs at least two clusters: one cluster carries no information on the variance")
    # T_X[s, c]: per-seed sums over each cluster's queries; n_c: queries per cluster.
    totals_a = np.zeros((a.shape[0], n_clusters))
    totals_b = np.zeros((b.shape[0], n_clusters))
    np.add.at(totals_a.T, cluster, a.T)
    np.add.at(totals_b.T, cluster, b.T)
    sizes = np.bincount(cluster, minlength=n_clusters).astype(np.float64)
    observed = float(b.mean(axis=0).mean() - a.mean(axis=0).mean())
    rng = np.random.default_rng(seed)
    replicates = []
    block = max(1, _BLOCK_ELEMENTS // max(n_clusters, a.shape[0], b.shape[0]))
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        weights = _counts(rng, size, n_clusters)
        means_b = _counts(rng, size, b.shape[0]) @ totals_b / b.shape[0]
        means_a = _counts(rng, size, a.shape[0]) @ totals_a / a.shape[0]
        replicates.append((weights * (means_b - means_a)).sum(axis=1) / (weights @ sizes))
    draws = np.concatenate(replicates)
    low, high = _percentiles(draws, confidence)
    tail = min(int((draws <= 0).sum()), int((draws >= 0).sum()))
    p = min(1.0, 2.0 * (1 + tail) / (1 + len(draws)))
    return BootstrapTest(observed, low, high, p, n_clusters, a.shape[0], b.shape[0], draws)


def _counts(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """`rows` multinomial draws of k items with replacement: how often each item was drawn, [rows, k]."""
    if k == 1:
        return np.ones((rows, 1))
    picks = rng.integers(0, k, size=(rows, k)) + (np.arange(rows) * k)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * k).reshape(rows, k).astype(np.float64)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def tost_paired(differences: Sequence[float] | np.ndarray, margin: float, alpha: float = 0.05) -> EquivalenceTest:
    """TOST on paired differences d_i: H0 mean(d) <= −m or >= m, one-sided t-tests with n − 1 df."""
    from scipy import stats

    d = _finite(differences, "differences")
    if len(d) < 2:
        raise ValueError("an equivalence test needs at least two paired differences")
    mean, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1
    return _tost(mean, se, df, margin, alpha, stats)


def tost_welch(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, margin: float,
               alpha: float = 0.05) -> EquivalenceTest:
    """TOST on mean(b) − mean(a) of two independent samples, Welch-Satterthwaite degrees of freedom."""
    from scipy import stats

    a, b = _finite(a, "a"), _finite(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("an equivalence test needs at least two values per group")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))) if va + vb > 0 else float(len(a) + len(b) - 2)
    return _tost(float(b.mean() - a.mean()), se, df, margin, alpha, stats)


def _tost(mean: float, se: float, df: float, margin: float, alpha: float, stats: object) -> EquivalenceTest:
    if not margin > 0:
        raise ValueError(f"equivalence margin must be positive, not {margin}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), not {alpha}")
    t = stats.t  # type: ignore[attr-defined]
    if se == 0.0:
        p = 0.0 if abs(mean) < margin else 1.0
        return EquivalenceTest(mean, mean, mean, p, margin, alpha)
    p_lower = float(t.sf((mean + margin) / se, df))  # H0: Δ <= −m
    p_upper = float(t.cdf((mean - margin) / se, df))  # H0: Δ >= m
    half = float(t.ppf(1.0 - alpha, df)) * se
    return EquivalenceTest(mean, mean - half, mean + half, max(p_lower, p_upper), margin, alpha)


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


def _seed_matrix(values: Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(f"{name}: scores must be a [seeds, queries] matrix with at least one of each, got {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name}: scores must be finite")
    return matrix


def _finite(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: values must be finite")
    return array
