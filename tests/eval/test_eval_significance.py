"""Two-factor bootstrap over seeds and clusters, TOST, Holm: references, constructed cases, size."""

from __future__ import annotations

import numpy as np
import pytest

from hybridfast.eval.significance import (
    bootstrap_mean,
    cluster_index,
    hierarchical_bootstrap,
    holm_bonferroni,
    tost_paired,
    tost_welch,
)


def _standardized(n: int) -> np.ndarray:
    """n fixed values with mean exactly 0 and sample standard deviation exactly 1."""
    z = np.linspace(-1.0, 1.0, n)
    return (z - z.mean()) / z.std(ddof=1)


def clustered_scores(n_clusters: int = 40, size: int = 11, effect: float = 0.02, spread: float = 0.1):
    """A − B per query = a question-level effect (mean `effect`, sd `spread`, shared by the question's `size`
    translations) plus a tiny translation-level wiggle with mean 0 inside every question."""
    per_cluster = effect + spread * _standardized(n_clusters)
    wiggle = 0.001 * _standardized(size)
    diff = (per_cluster[:, None] + wiggle[None, :]).ravel()
    base = np.random.default_rng(0).uniform(0.2, 0.8, size=diff.size)
    labels = [f"q{c}" for c in range(n_clusters) for _ in range(size)]
    return base, base + diff, labels


def test_replicates_match_the_definition_draw_by_draw():
    # Owen's pigeonhole bootstrap from its definition: draw K clusters and each system's seeds with replacement,
    # take every query of every drawn cluster (as often as it was drawn), and recompute mean(B) - mean(A) on that
    # data. Same generator and draw order as the implementation (clusters, B's seeds, A's seeds), so every
    # replicate must agree, which checks the weighted cluster-sum formula the implementation uses instead.
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 5, size=9)  # unequal clusters: the ratio form of the estimator matters
    labels = [f"c{c}" for c, size in enumerate(sizes) for _ in range(size)]
    a, b = rng.uniform(size=(3, len(labels))), rng.uniform(size=(2, len(labels)))
    test = hierarchical_bootstrap(a, b, labels, n_resamples=300, seed=5)
    draws = np.random.default_rng(5)
    clusters, seeds_b, seeds_a = (draws.integers(0, k, size=(300, k)) for k in (9, 2, 3))
    members = [np.flatnonzero(cluster_index(labels, len(labels)) == c) for c in range(9)]
    for r in range(300):
        queries = np.concatenate([members[c] for c in clusters[r]])
        expected = b[seeds_b[r]][:, queries].mean() - a[seeds_a[r]][:, queries].mean()
        assert test.replicates[r] == pytest.approx(expected, abs=1e-12)
    assert test.diff == pytest.approx(b.mean() - a.mean())


def test_clustering_changes_the_verdict():
    a, b, labels = clustered_scores()
    by_query = hierarchical_bootstrap(a, b, None, n_resamples=4_000, seed=1)
    by_question = hierarchical_bootstrap(a, b, labels, n_resamples=4_000, seed=1)
    assert by_query.diff == by_question.diff == pytest.approx(0.02)
    # 440 rows look independent: the mean 0.02 is ~4 standard errors from 0. They are 40 questions: ~1.3.
    assert by_query.p < 0.001 and by_query.ci_low > 0
    assert by_question.p > 0.1 and by_question.ci_low < 0 < by_question.ci_high
    assert by_query.clusters == 440 and by_question.clusters == 40
    # The question-level interval matches the textbook one for 40 independent cluster means (sd 0.1).
    assert by_question.ci_high - by_question.ci_low == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(40), rel=0.15)


def test_seed_variance_enters_the_test():
    # Three seeds per system whose overall levels differ by ±0.05 (training noise); queries agree closely.
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.7, size=300)
    a = np.stack([base + offset for offset in (-0.05, 0.05, 0.0)])
    b = np.stack([base + 0.02 + offset for offset in (0.03, -0.06, 0.05)])
    b += rng.normal(0, 0.002, size=b.shape)
    averaged = hierarchical_bootstrap(a.mean(axis=0), b.mean(axis=0), n_resamples=4_000, seed=0)
    with_seeds = hierarchical_bootstrap(a, b, n_resamples=4_000, seed=0)
    assert averaged.diff == pytest.approx(with_seeds.diff)
    assert averaged.p < 0.001  # seed-averaged scores hide the seed-to-seed spread
    assert with_seeds.p > 0.05 and with_seeds.seeds_a == with_seeds.seeds_b == 3
    assert with_seeds.ci_high - with_seeds.ci_low > 10 * (averaged.ci_high - averaged.ci_low)


def test_one_seed_and_independent_queries_match_scipy_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    a = rng.uniform(size=200)
    b = a + rng.normal(0.05, 0.3, size=200)
    ours = hierarchical_bootstrap(a, b, n_resamples=20_000, seed=0)
    reference = stats.bootstrap((b - a,), np.mean, n_resamples=20_000, method="percentile", random_state=0)
    assert ours.ci_low == pytest.approx(reference.confidence_interval.low, abs=0.006)
    assert ours.ci_high == pytest.approx(reference.confidence_interval.high, abs=0.006)
    assert ours.diff == pytest.approx(float(np.mean(b - a)))


def test_p_value_inverts_the_percentile_interval():
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.02, 0.04, 0.08):
        a = rng.uniform(size=150)
        b = a + shift + rng.normal(0, 0.2, size=150)
        test = hierarchical_bootstrap(a, b, n_resamples=5_000, seed=3)
        outside = not (test.ci_low <= 0.0 <= test.ci_high)
        assert (test.p < 0.05) == outside or abs(test.p - 0.05) < 0.002


def test_size_under_the_null_with_clustered_queries():
    # No true difference, strong question effects: resampling questions keeps the false-positive rate near 5%,
    # resampling query rows does not.
    rng = np.random.default_rng(11)
    false_query, false_question, trials = 0, 0, 80
    labels = [c for c in range(30) for _ in range(8)]
    for trial in range(trials):
        effect = np.repeat(rng.normal(0, 0.1, size=30), 8) + rng.normal(0, 0.01, size=240)
        a = rng.uniform(size=240)
        b = a + effect
        false_query += hierarchical_bootstrap(a, b, None, n_resamples=400, seed=trial).p < 0.05
        false_question += hierarchical_bootstrap(a, b, labels, n_resamples=400, seed=trial).p < 0.05
    assert false_question / trials <= 0.12
    assert false_query / trials >= 0.4


def test_identical_systems_and_reproducibility():
    a = np.linspace(0, 1, 50)
    same = hierarchical_bootstrap(a, a.copy(), n_resamples=500)
    assert same.diff == 0.0 and (same.ci_low, same.ci_high) == (0.0, 0.0) and same.p == 1.0
    rng = np.random.default_rng(6)
    x, y = rng.uniform(size=(2, 100)), rng.uniform(size=(3, 100))
    first, second = hierarchical_bootstrap(x, y, seed=7), hierarchical_bootstrap(x, y, seed=7)
    assert (first.ci_low, first.ci_high, first.p) == (second.ci_low, second.ci_high, second.p)


def test_bootstrap_mean_of_one_system():
    x = np.array([[0.2, 0.4, 0.6, 0.8], [0.3, 0.5, 0.7, 0.9]])
    test = bootstrap_mean(x, ["a", "a", "b", "b"], n_resamples=2_000)
    assert test.diff == pytest.approx(0.55) and test.clusters == 2 and test.seeds_b == 2
    assert 0.2 < test.ci_low < 0.55 < test.ci_high < 0.9


def test_bootstrap_equivalence_on_constructed_data():
    rng = np.random.default_rng(8)
    a = rng.uniform(size=400) + np.array([[-0.001], [0.0], [0.001]])  # three seeds, nearly the same model
    close = a + rng.normal(0.001, 0.01, size=a.shape)
    test = hierarchical_bootstrap(a, close, n_resamples=4_000)
    low, high = test.interval(0.90)
    assert test.equivalence_p(0.01) < 0.05 and -0.01 < low < high < 0.01
    # A real difference of 0.02 is not equivalent within ±0.01, and is significant.
    far = hierarchical_bootstrap(a, a + 0.02 + rng.normal(0, 0.01, size=a.shape), n_resamples=4_000)
    assert far.equivalence_p(0.01) > 0.5 and far.p < 0.01
    with pytest.raises(ValueError, match="margin must be positive"):
        test.equivalence_p(0.0)


def test_tost_paired_is_two_one_sided_t_tests():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    d = rng.normal(0.005, 0.02, size=12)
    margin = 0.03
    test = tost_paired(d, margin)
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    assert test.p == pytest.approx(max(lower, upper), rel=1e-9)
    assert test.equivalent and -margin < test.ci_low < test.diff < test.ci_high < margin
    shifted = tost_paired(d + 0.04, margin)
    assert not shifted.equivalent and shifted.p > 0.5
    noisy = tost_paired(rng.normal(0.0, 0.2, size=5), margin)  # no difference, but too noisy to show equivalence
    assert not noisy.equivalent


def test_tost_welch_matches_shifted_welch_tests():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(10)
    a = rng.normal(1.0, 0.02, size=16)
    b = rng.normal(1.005, 0.03, size=20)
    margin = 0.03
    test = tost_welch(a, b, margin)
    lower = stats.ttest_ind(b + margin, a, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(b - margin, a, equal_var=False, alternative="less").pvalue
    assert test.p == pytest.approx(max(lower, upper), rel=1e-9)
    assert test.equivalent
    assert not tost_welch(a, b + 0.05, margin).equivalent


def test_holm_bonferroni_over_a_family():
    # Sorted: .01 x4 = .04; .03 x3 = .09; .04 x2 = .08 -> .09 (monotone); .5 x1 = .5.
    assert holm_bonferroni([0.01, 0.04, 0.03, 0.5]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_bonferroni([0.6, 0.9]).tolist() == pytest.approx([1.0, 1.0])
    assert holm_bonferroni([]).size == 0
    # A family of 25 (five endpoints x five comparisons): p = 0.001 survives (x 25 = 0.025), 0.03 does not (x 24).
    family = np.full(25, 0.5)
    family[[0, 7]] = [0.001, 0.03]
    adjusted = holm_bonferroni(family)
    assert adjusted[0] == pytest.approx(0.025) and adjusted[7] == pytest.approx(0.72)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same queries"):
        hierarchical_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        hierarchical_bootstrap(np.zeros((0, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        hierarchical_bootstrap([np.nan], [1.0])
    with pytest.raises(ValueError, match="cluster labels"):
        hierarchical_bootstrap([1.0, 2.0], [1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="at least two clusters"):
        hierarchical_bootstrap([1.0, 2.0], [1.5, 2.5], ["same", "same"])
    with pytest.raises(ValueError, match="n_resamples"):
        hierarchical_bootstrap([1.0], [2.0], n_resamples=0)
    with pytest.raises(ValueError, match="margin must be positive"):
        tost_paired([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="at least two"):
        tost_welch([1.0], [1.0, 2.0], 0.1)
    assert cluster_index(["x", "y", "x"], 3).tolist() == [0, 1, 0]
