"""Ranking metrics over full candidate pools, vectorized with numpy.

Every function takes a dense score matrix `scores[q, j]` (query q, candidate j; higher is better) and,
for each query, the column indices of its relevant candidates in that pool. Relevant sets are small (one to
a dozen candidates), pools are large (about 1k per language, 13k multilingual), so the metrics are computed
from two counts per relevant candidate r of query q, without sorting the pool:

    n_ge(q, r)   = |{ j : s_qj >= s_qr }|          (candidates scoring at least as high as r, r included)
    rel_ge(q, r) = |{ r' relevant : s_qr' >= s_qr }|

sklearn's precision-recall curve treats ties this way: a threshold admits every candidate with a score at
least as high. Ranks come from one total order of the pool: by score, a tie broken against the relevant
candidate (tied non-relevant candidates first), tied relevant candidates in pool order, so r's rank is

    rank(q, r) = (n_ge - rel_ge)(q, r) + |{ r' relevant : s_qr' > s_qr, or s_qr' = s_qr and r' <= r }|.

Without ties (float scores of real encoders), rank = n_ge = the usual 1-based position. With these:

- average precision (sklearn's `average_precision_score`, Roy et al. 2020 use it for LAReQA mAP):
  AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, which equals
  AP(q) = (1 / |rel(q)|) * sum_{r in rel(q)} rel_ge(q, r) / n_ge(q, r);
- recall at k: R@k(q) = |{ r in rel(q) : rank(q, r) <= k }| / |rel(q)| (trec_eval's `recall.k`; with a single
  relevant candidate it is the hit rate). With m relevant candidates R@k is capped at k/m: in XQuAD-R's
  multilingual pool (11 answers per question) R@1 can never exceed 1/11;
- hit at k: Hit@k(q) = 1 if some relevant candidate has rank <= k, else 0 (success@k); this is the
  multilingual top-1 accuracy of LAReQA-style pools, where any language's answer counts. A tie with a
  non-relevant candidate is broken against the relevant one (above), so a tied first place is not a hit;
- rank distance (language bias; Huang et al. 2023, "Soft Prompt Decoding for Multilingual Dense Retrieval",
  as used by Elmahdy et al. 2024, arXiv 2408.10536): RD(q) = max_r rank(q, r) - min_r rank(q, r) over the
  query's relevant candidates in the multilingual pool (0 when it has only one). A language-agnostic model
  ranks a question's answers in all languages next to each other, so lower is better.

Queries with no relevant candidate in the searched pool have no defined AP or recall: they come back as
NaN, and callers skip and count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Elements of the [queries, relevant, pool] comparison tensor held at once (bytes, as booleans).
_CHUNK_ELEMENTS = 32_000_000


@dataclass(frozen=True)
class RelevantRanks:
    """Per relevant candidate i of query q: `n_ge[q, i]`, `rel_ge[q, i]`, `rank[q, i]` (module docstring).

    Row q holds the relevant candidates of query q padded to the longest relevant set; padded entries have
    `valid = False`. `has_relevant[q]` is False for a query with no relevant candidate in the pool.
    """

    n_ge: np.ndarray
    rel_ge: np.ndarray
    rank: np.ndarray
    valid: np.ndarray

    @property
    def has_relevant(self) -> np.ndarray:
        return self.valid.any(axis=1)

    @property
    def n_relevant(self) -> np.ndarray:
        return self.valid.sum(axis=1)


def pad_relevant(relevant: Sequence[Sequence[int]], n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-query relevant column indices into `(index[q, i], valid[q, i])`; duplicates count once."""
    unique = [np.unique(np.asarray(list(r), dtype=np.int64)) for r in relevant]
    width = max((len(r) for r in unique), default=0)
    index = np.zeros((len(unique), max(width, 1)), dtype=np.int64)
    valid = np.zeros((len(unique), max(width, 1)), dtype=bool)
    for row, columns in enumerate(unique):
        if len(columns) and (columns.min() < 0 or columns.max() >= n_candidates):
            raise ValueError(f"query {row}: relevant index out of range for a pool of {n_candidates} candidates")
        index[row, : len(columns)] = columns
        valid[row, : len(columns)] = True
    return index, valid


def relevant_ranks(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> RelevantRanks:
    """Compute n_ge, rel_ge and rank (module docstring) for every relevant candidate of every query."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a [queries, candidates] matrix, got shape {scores.shape}")
    if len(relevant) != scores.shape[0]:
        raise ValueError(f"{len(relevant)} relevant sets for {scores.shape[0]} queries")
    n_queries, n_candidates = scores.shape
    index, valid = pad_relevant(relevant, n_candidates)
    n_ge = np.zeros(index.shape, dtype=np.int64)
    rel_ge = np.zeros(index.shape, dtype=np.int64)
    rank = np.zeros(index.shape, dtype=np.int64)
    # not_after[i, i'] = (i' <= i): a tied relevant candidate i' comes no later than i (rows are sorted).
    not_after = np.tril(np.ones((index.shape[1], index.shape[1]), dtype=bool))
    step = max(1, _CHUNK_ELEMENTS // max(1, index.shape[1] * n_candidates))
    for start in range(0, n_queries, step):
        rows = slice(start, start + step)
        block = scores[rows]
        rel_scores = np.take_along_axis(block, index[rows], axis=1)
        n_ge[rows] = (block[:, None, :] >= rel_scores[:, :, None]).sum(axis=2)
        other, this = rel_scores[:, None, :], rel_scores[:, :, None]
        other_valid = valid[rows][:, None, :]
        rel_ge[rows] = ((other >= this) & other_valid).sum(axis=2)
        ahead = (other > this) | ((other == this) & not_after[None, :, :])
        rank[rows] = n_ge[rows] - rel_ge[rows] + (ahead & other_valid).sum(axis=2)
    for array in (n_ge, rel_ge, rank):
        array[~valid] = 0
    return RelevantRanks(n_ge=n_ge, rel_ge=rel_ge, rank=rank, valid=valid)


def average_precision(ranks: RelevantRanks) -> np.ndarray:
    """Per-query average precision as sklearn's `average_precision_score`; NaN without relevant candidates."""
    precision = np.where(ranks.valid, ranks.rel_ge / np.maximum(ranks.n_ge, 1), 0.0)
    return _per_relevant_mean(precision.sum(axis=1), ranks)


def recall_at_k(ranks: RelevantRanks, k: int) -> np.ndarray:
    """Per-query fraction of relevant candidates ranked in the top k; NaN without relevant candidates."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    hits = (ranks.valid & (ranks.rank <= k)).sum(axis=1)
    return _per_relevant_mean(hits.astype(np.float64), ranks)


def hit_at_k(ranks: RelevantRanks, k: int) -> np.ndarray:
    """Per-query 1.0 if any relevant candidate is ranked in the top k, else 0.0; NaN without relevant candidates."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    hit = (ranks.valid & (ranks.rank <= k)).any(axis=1)
    return np.where(ranks.has_relevant, hit.astype(np.float64), np.nan)


def rank_distance(ranks: RelevantRanks) -> np.ndarray:
    """Per-query max - min rank over its relevant candidates (Huang et al. 2023); NaN without any."""
    big = np.iinfo(np.int64).max
    highest = np.where(ranks.valid, ranks.rank, 0).max(axis=1)
    lowest = np.where(ranks.valid, ranks.rank, big).min(axis=1)
    return np.where(ranks.has_relevant, (highest - lowest).astype(np.float64), np.nan)


def _per_relevant_mean(total: np.ndarray, ranks: RelevantRanks) -> np.ndarray:
    count = ranks.n_relevant
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
