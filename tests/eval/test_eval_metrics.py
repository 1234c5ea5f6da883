"""Ranking metrics: hand-computed cases (ties, several relevant), sklearn and pytrec_eval on random runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridfast.eval.metrics import average_precision, hit_at_k, rank_distance, recall_at_k, relevant_ranks


def _metrics(scores, relevant):
    ranks = relevant_ranks(np.asarray(scores, dtype=np.float64), relevant)
    return average_precision(ranks), recall_at_k(ranks, 1), recall_at_k(ranks, 2), rank_distance(ranks), ranks


def test_hand_computed_without_ties():
    # Ranking: c0 (.9), c3 (.8, relevant), c1 (.5), c2 (.1, relevant).
    ap, r1, r2, rd, ranks = _metrics([[0.9, 0.5, 0.1, 0.8]], [[3, 2]])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r1[0] == 0.0 and r2[0] == 0.5
    assert rd[0] == 4 - 2
    assert sorted(ranks.rank[0].tolist()) == [2, 4]


def test_ties_follow_sklearn_and_break_against_relevant():
    # c1 (relevant) ties with c0 (not relevant) at .7: the threshold .7 admits both, so precision there is
    # 1/2; c3 (relevant) alone at .2 comes 4th: AP = (1/2 + 2/4) / 2. Ranks: c1 -> 2 (the tied non-relevant
    # candidate first), c3 -> 4.
    ap, r1, r2, rd, ranks = _metrics([[0.7, 0.7, 0.3, 0.2]], [[1, 3]])
    assert ap[0] == pytest.approx(0.5)
    assert ranks.rank[0].tolist() == [2, 4]
    assert r1[0] == 0.0 and r2[0] == 0.5
    assert rd[0] == 2


def test_tied_relevant_candidates_take_pool_order():
    # Three relevant candidates tied at the top: AP 1; ranks 1, 2, 3 (pool order), so R@1 = 1/3, RD = 2.
    ap, r1, r2, rd, ranks = _metrics([[0.0, 1.0, 1.0, 0.0, 1.0]], [[4, 1, 2]])
    assert ap[0] == pytest.approx(1.0)
    assert ranks.rank[0].tolist() == [1, 2, 3]
    assert r1[0] == pytest.approx(1 / 3) and r2[0] == pytest.approx(2 / 3)
    assert rd[0] == 2


def test_query_without_relevant_is_nan_and_duplicates_count_once():
    ap, r1, _, rd, _ = _metrics([[0.1, 0.2], [0.3, 0.4]], [[], [1, 1]])
    assert math.isnan(ap[0]) and math.isnan(r1[0]) and math.isnan(rd[0])
    assert ap[1] == 1.0 and r1[1] == 1.0 and rd[1] == 0.0


def test_bad_shapes_and_indices_raise():
    with pytest.raises(ValueError, match="out of range"):
        relevant_ranks(np.zeros((1, 3)), [[3]])
    with pytest.raises(ValueError, match="relevant sets"):
        relevant_ranks(np.zeros((2, 3)), [[0]])
    with pytest.raises(ValueError, match="matrix"):
        relevant_ranks(np.zeros(3), [[0]])
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(relevant_ranks(np.zeros((1, 3)), [[0]]), 0)


def test_average_precision_matches_sklearn_on_random_runs_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    # Rounded scores make many ties; the pool spans the chunk boundary of relevant_ranks only if large, so
    # use several shapes.
    for n_candidates, decimals in ((50, 1), (300, 2), (1000, 6)):
        scores = np.round(rng.standard_normal((40, n_candidates)), decimals)
        relevant = [rng.choice(n_candidates, size=rng.integers(1, 12), replace=False) for _ in range(40)]
        ours = average_precision(relevant_ranks(scores, relevant))
        for q in range(40):
            truth = np.zeros(n_candidates, dtype=int)
            truth[relevant[q]] = 1
            assert ours[q] == pytest.approx(sklearn_metrics.average_precision_score(truth, scores[q]), abs=1e-12)


def _random_run_and_trec(seed: int, candidates: int, max_relevant: int, measures: set[str]):
    """30 queries' random scores over `candidates`, 1 to `max_relevant` - 1 relevant each, and pytrec_eval's
    `measures` on them."""
    import pytrec_eval

    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((30, candidates))
    relevant = [rng.choice(candidates, size=rng.integers(1, max_relevant), replace=False) for _ in range(30)]
    qrels = {f"q{q}": {f"c{j}": 1 for j in relevant[q]} for q in range(30)}
    run = {f"q{q}": {f"c{j}": float(scores[q, j]) for j in range(candidates)} for q in range(30)}
    return scores, relevant, pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def test_recall_and_ap_match_pytrec_eval_on_random_runs():
    scores, relevant, trec = _random_run_and_trec(1, 200, 8, {"map", "recall.1", "recall.10"})
    ranks = relevant_ranks(scores, relevant)
    ap, r1, r10 = average_precision(ranks), recall_at_k(ranks, 1), recall_at_k(ranks, 10)
    for q in range(30):
        assert ap[q] == pytest.approx(trec[f"q{q}"]["map"], abs=1e-9)
        assert r1[q] == pytest.approx(trec[f"q{q}"]["recall_1"], abs=1e-9)
        assert r10[q] == pytest.approx(trec[f"q{q}"]["recall_10"], abs=1e-9)


def test_rank_distance_on_a_toy_multilingual_pool():
    # Pool: en0 en1 de0 de1 fr0 fr1. Question 0's answers: en0, de0, fr0; question 1's: en1, de1, fr1.
    # Query 0 ranks en0 1st, de0 2nd, fr0 5th -> RD 4. Query 1 ranks its answers 1st-3rd -> RD 2.
    scores = np.array([
        [0.9, 0.1, 0.8, 0.7, 0.2, 0.6],
        [0.1, 0.9, 0.2, 0.8, 0.3, 0.7],
    ])
    relevant = [[0, 2, 4], [1, 3, 5]]
    ranks = relevant_ranks(scores, relevant)
    assert ranks.rank.tolist() == [[1, 2, 5], [1, 2, 3]]
    assert rank_distance(ranks).tolist() == [4.0, 2.0]


def test_multilingual_hit_at_1_on_a_hand_computed_pool():
    # Pool: en0 en1 en2 | de0 de1 de2 | fr0 fr1 fr2; question k's answers are en_k, de_k and fr_k.
    relevant = [[0, 3, 6], [1, 4, 7], [2, 5, 8], [2, 5, 8]]
    scores = np.array([
        # Query 0: its German answer de0 is first -> Hit@1 = 1, though R@1 = 1/3 (capped by 3 answers).
        [0.5, 0.1, 0.1, 0.9, 0.2, 0.2, 0.4, 0.3, 0.3],
        # Query 1: en0 (not its answer) first, de1 second -> Hit@1 = 0, Hit@2 = 1.
        [0.9, 0.3, 0.1, 0.2, 0.8, 0.1, 0.1, 0.7, 0.2],
        # Query 2: fr2 (relevant) ties de1 (not relevant) at the top: the tie goes against the answer -> 0.
        [0.1, 0.2, 0.5, 0.3, 0.9, 0.6, 0.1, 0.2, 0.9],
        # Query 3: all three answers first -> Hit@1 = 1, R@1 = 1/3, Hit@3 = R@3 = 1.
        [0.1, 0.1, 0.8, 0.2, 0.2, 0.9, 0.1, 0.1, 0.7],
    ])
    ranks = relevant_ranks(scores, relevant)
    assert hit_at_k(ranks, 1).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert hit_at_k(ranks, 2).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert recall_at_k(ranks, 1).tolist() == pytest.approx([1 / 3, 0.0, 0.0, 1 / 3])
    assert hit_at_k(ranks, 3)[3] == recall_at_k(ranks, 3)[3] == 1.0
    none = hit_at_k(relevant_ranks(np.zeros((1, 2)), [[]]), 1)
    assert np.isnan(none[0])
    with pytest.raises(ValueError, match="k must be"):
        hit_at_k(ranks, 0)


def test_hit_at_k_matches_pytrec_eval_success_without_ties():
    scores, relevant, trec = _random_run_and_trec(3, 120, 12, {"success.1,5"})
    ranks = relevant_ranks(scores, relevant)
    for k in (1, 5):
        ours = hit_at_k(ranks, k)
        assert [ours[q] for q in range(30)] == [trec[f"q{q}"][f"success_{k}"] for q in range(30)]


def test_chunked_computation_equals_one_shot(monkeypatch):
    import hybridfast.eval.metrics as metrics

    rng = np.random.default_rng(2)
    scores = np.round(rng.standard_normal((57, 90)), 1)
    relevant = [rng.choice(90, size=rng.integers(1, 5), replace=False) for _ in range(57)]
    whole = metrics.relevant_ranks(scores, relevant)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 500)
    chunked = metrics.relevant_ranks(scores, relevant)
    for name in ("n_ge", "rel_ge", "rank", "valid"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name))
