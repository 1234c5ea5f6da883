"""The train/eval split of XQuAD-family data by article.

Splitting by question or paragraph would leak: the same paragraph, or a translation of it, would sit on
both sides. Here every article key (one key per article across languages, see `hybridfast.data.squad`)
goes to exactly one side, so training never sees an evaluation paragraph in any language.

Rule: order the distinct article keys by `sha256(f"{seed}:{key}")` (a seeded permutation that does not
depend on Python's hash salt, the platform, or the order the keys come in) and send the first
`round(eval_fraction * n_articles)` of them to eval (at least one, and at least one left for training
when there are two or more articles). XQuAD and XQuAD-R hold the same 48 articles under the same keys, so
`article_split` gives the same split for both: train on `split_records(load_xquad(...))[0]`, evaluate on
`restrict_lareqa(load_lareqa(...), split.eval_articles)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from hybridfast.data.records import LareqaCandidate, LareqaDataset, ParallelRecord
from hybridfast.errors import HybridfastError

DEFAULT_EVAL_FRACTION = 0.2
DEFAULT_SEED = 0


@dataclass(frozen=True)
class ArticleSplit:
    """Which article keys are for training and which are held out for evaluation."""

    train_articles: frozenset[str]
    eval_articles: frozenset[str]
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    seed: int = DEFAULT_SEED


def _rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def article_split(
    articles: Iterable[str], eval_fraction: float = DEFAULT_EVAL_FRACTION, seed: int = DEFAULT_SEED
) -> ArticleSplit:
    """Split article keys into train and eval by the seeded hash order described in the module docstring."""
    if not 0.0 < eval_fraction < 1.0:
        raise HybridfastError(f"eval fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    keys = sorted(set(articles), key=lambda key: (_rank(key, seed), key))
    if not keys:
        raise HybridfastError("cannot split: no articles")
    n_eval = max(1, round(eval_fraction * len(keys)))
    if len(keys) > 1:
        n_eval = min(n_eval, len(keys) - 1)
    return ArticleSplit(frozenset(keys[n_eval:]), frozenset(keys[:n_eval]), eval_fraction, seed)


def split_records(
    records: Iterable[ParallelRecord], split: ArticleSplit
) -> tuple[list[ParallelRecord], list[ParallelRecord]]:
    """`(train, eval)` records by article; a record without an article, or with one the split does not
    know, is an error (it could leak)."""
    train: list[ParallelRecord] = []
    held_out: list[ParallelRecord] = []
    for record in records:
        if record.article in split.train_articles:
            train.append(record)
        elif record.article in split.eval_articles:
            held_out.append(record)
        else:
            raise HybridfastError(
                f"record {record.qid!r} ({record.lang}) has article {record.article!r}, which is in neither side of the split"
            )
    return train, held_out


def restrict_lareqa(dataset: LareqaDataset, articles: Iterable[str]) -> LareqaDataset:
    """The LAReQA pool of `articles` only: their questions and their candidates, reindexed from 0."""
    keep = frozenset(articles)
    new_index: dict[int, int] = {}
    candidates: list[LareqaCandidate] = []
    for candidate in dataset.candidates:
        if candidate.article in keep:
            new_index[candidate.index] = len(candidates)
            candidates.append(replace(candidate, index=len(candidates)))
    questions = tuple(question for question in dataset.questions if question.article in keep)
    relevance = {
        qid: frozenset(new_index[index] for index in dataset.relevance[qid] if index in new_index)
        for qid in {question.qid for question in questions}
    }
    return LareqaDataset(tuple(candidates), questions, relevance)
