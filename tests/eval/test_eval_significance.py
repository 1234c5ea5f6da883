"""Paired randomization test, bootstrap CI and Holm adjustment: references, size and power."""

from __future__ import annotations

import numpy as np
import pytest

from hybridfast.eval.significance import bootstrap_ci, holm_bonferroni, paired_randomization_test


def test_randomization_p_value_matches_scipy_exact_test():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.uniform(size=10)
    b = a + rng.normal(0.15, 0.2, size=10)

    def mean_diff(x, y):
        return np.mean(y - x)

    # 2^10 sign patterns: scipy enumerates them all (exact p-value).
    exact = stats.permutation_test((a, b), mean_diff, permutation_type="samples", n_resamples=np.inf).pvalue
    ours = paired_randomization_test(a, b, n_resamples=20_000, seed=1)
    assert ours == pytest.approx(exact, abs=0.01)


def test_identical_systems_give_p_one():
    a = np.linspace(0, 1, 50)
    assert paired_randomization_test(a, a.copy(), n_resamples=500) == 1.0
    assert bootstrap_ci(a, a.copy(), n_resamples=500) == (0.0, 0.0)


def test_size_under_the_null_is_near_alpha():
    rng = np.random.default_rng(3)
    rejections = 0
    trials = 200
    for trial in range(trials):
        a = rng.uniform(size=40)
        b = a + rng.normal(0.0, 0.2, size=40)
        rejections += paired_randomization_test(a, b, n_resamples=199, seed=trial) < 0.05
    assert rejections / trials <= 0.10


def test_power_and_ci_with_a_real_difference():
    rng = np.random.default_rng(4)
    a = rng.uniform(size=300)
    b = a + 0.1 + rng.normal(0.0, 0.2, size=300)
    assert paired_randomization_test(a, b, n_resamples=2_000, seed=0) < 0.01
    low, high = bootstrap_ci(a, b, n_resamples=2_000, seed=0)
    assert 0.0 < low < 0.1 < high


def test_bootstrap_matches_scipy_percentile_interval():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    a = rng.uniform(size=200)
    b = a + rng.normal(0.05, 0.3, size=200)
    ours = bootstrap_ci(a, b, n_resamples=20_000, seed=0)
    reference = stats.bootstrap((b - a,), np.mean, n_resamples=20_000, method="percentile", random_state=0)
    assert ours[0] == pytest.approx(reference.confidence_interval.low, abs=0.006)
    assert ours[1] == pytest.approx(reference.confidence_interval.high, abs=0.006)


def test_seeded_results_are_reproducible():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(size=100), rng.uniform(size=100)
    assert paired_randomization_test(a, b, seed=7) == paired_randomization_test(a, b, seed=7)
    assert bootstrap_ci(a, b, seed=7) == bootstrap_ci(a, b, seed=7)


def test_holm_bonferroni_by_hand():
    # Sorted: .01 x4 = .04; .03 x3 = .09; .04 x2 = .08 -> .09 (monotone); .5 x1 = .5.
    assert holm_bonferroni([0.01, 0.04, 0.03, 0.5]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_bonferroni([0.6, 0.9]).tolist() == pytest.approx([1.0, 1.0])
    assert holm_bonferroni([]).size == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="equal length"):
        paired_randomization_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_randomization_test([np.nan], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0], [2.0], confidence=1.5)
