"""HybridPairs: the pair dataset renders the right texts and group ids, the batch sampler draws exact-α hybrid
steps, splits each global step over the ranks, and pickles without its data; bad inputs are named."""

from __future__ import annotations

import math
import pickle

import pytest
from datasets import Dataset
from st_helpers import LANGS, QUESTIONS, parallel_rows

from hybridfast.integrations.sentence_transformers import HybridPairBatchSampler, HybridPairs


def _rows_by_key(parallel: Dataset) -> dict[tuple[str, str], dict]:
    return {(row["qid"], row["lang"]): row for row in parallel}


def test_rows_render_texts_negatives_and_groups(parallel_dataset) -> None:
    pairs = HybridPairs(parallel_dataset, alpha=0.5, hard_negatives=3)
    assert pairs.languages == sorted(LANGS) and len(pairs.qids) == QUESTIONS
    assert len(pairs.dataset) == QUESTIONS * len(LANGS) ** 2
    source = _rows_by_key(parallel_dataset)
    ids = [0, 5, 17, 100, len(pairs.dataset) - 1]
    rendered = pairs.dataset[ids]
    assert list(rendered) == ["query", "passage", "negative_1", "negative_2", "negative_3", "label"]
    for position, pair_id in enumerate(ids):
        qid, query_lang, passage_lang = pairs.pair(pair_id)
        assert pairs.pair_id(qid, query_lang, passage_lang) == pair_id
        assert rendered["query"][position] == source[qid, query_lang]["query"]
        assert rendered["passage"][position] == source[qid, passage_lang]["passage"]
        pool = source[qid, passage_lang]["hard_negatives"]
        assert [rendered[f"negative_{k}"][position] for k in (1, 2, 3)] == [pool[0], pool[1], pool[0]]
    # Questions 2k and 2k + 1 share a paragraph, hence a group; other questions do not.
    label = {qid: pairs.dataset[pairs.pair_id(qid, "de", "en")]["label"] for qid in pairs.qids}
    assert label["q4"] == label["q5"] and label["q5"] != label["q6"]
    assert len(set(label.values())) == QUESTIONS // 2
    assert list(HybridPairs(parallel_dataset, alpha=1.0).dataset[0]) == ["query", "passage", "label"]


def _steps(sampler: HybridPairBatchSampler, pairs: HybridPairs) -> list[list[tuple[str, str, str]]]:
    return [[pairs.pair(i) for i in batch] for batch in sampler]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_exact_alpha_hybrid_steps(parallel_dataset, alpha: float) -> None:
    pairs = HybridPairs(parallel_dataset, alpha=alpha)
    sampler = pairs.batch_sampler(pairs.dataset, batch_size=4, seed=3)
    steps = _steps(sampler, pairs)
    assert len(steps) == len(sampler) == QUESTIONS // 4
    mono = 0
    for batch in steps:
        assert len(batch) == 4 and len({qid for qid, _, _ in batch}) == 4
        if all(q == p for _, q, p in batch):
            mono += 1
            assert len({q for _, q, _ in batch}) == 1
        else:
            assert all(q != p for _, q, p in batch)
    assert mono == math.floor(alpha * len(steps) + 0.5)
    # Another epoch: another permutation, the same exact mix.
    sampler.set_epoch(1)
    again = _steps(sampler, pairs)
    assert again != steps and sum(all(q == p for _, q, p in b) for b in again) == mono


def test_global_step_is_split_over_ranks(parallel_dataset) -> None:
    """Two ranks of 2 pairs see, step by step, the global batch one process of 4 pairs sees."""
    pairs = HybridPairs(parallel_dataset, alpha=0.5, seed=11)
    single = list(HybridPairBatchSampler(pairs, 4, world_size=1, seed=11))
    double = list(HybridPairBatchSampler(pairs, 2, world_size=2, seed=11))
    assert len(double) == 2 * len(single)
    assert [double[2 * s] + double[2 * s + 1] for s in range(len(single))] == single
    # The pairs' seed wins over the trainer's.
    assert list(pairs.batch_sampler(pairs.dataset, batch_size=4, seed=99)) == single


def test_sampler_factory_pickles_without_the_data(parallel_dataset) -> None:
    pairs = HybridPairs(parallel_dataset, alpha=0.5, hard_negatives=1)
    blob = pickle.dumps(pairs.batch_sampler)
    assert len(blob) < 2000
    restored = pickle.loads(blob)
    assert restored.__self__.options["alpha"] == 0.5
    with pytest.raises(RuntimeError, match="build it again"):
        restored(pairs.dataset, batch_size=4)


def test_bad_inputs_are_named(parallel_dataset) -> None:
    with pytest.raises(TypeError, match="datasets.Dataset"):
        HybridPairs(parallel_rows(), alpha=0.5)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['passage'\]"):
        HybridPairs(parallel_dataset.remove_columns("passage"), alpha=0.5)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['hard_negatives'\]"):
        HybridPairs(parallel_dataset.remove_columns("hard_negatives"), alpha=0.5, hard_negatives=1)
    rows = parallel_rows(questions=4)
    rows["lang"][1] = rows["lang"][0]
    with pytest.raises(ValueError, match="rows 0 and 1 both hold question 'q0' in 'de'"):
        HybridPairs(Dataset.from_dict(rows), alpha=0.5)
    rows = parallel_rows(questions=4)
    rows["query"][5] = ""
    with pytest.raises(ValueError, match="row 5: query must be a non-empty string"):
        HybridPairs(Dataset.from_dict(rows), alpha=0.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        HybridPairs(parallel_dataset, alpha=1.5)
    with pytest.raises(ValueError, match="larger than the 24 questions"):
        HybridPairs(parallel_dataset, alpha=0.5).batch_sampler(
            HybridPairs(parallel_dataset, alpha=0.5).dataset, batch_size=25)
    pairs = HybridPairs(parallel_dataset, alpha=0.5)
    with pytest.raises(ValueError, match="not HybridPairs.dataset"):
        pairs.batch_sampler(parallel_dataset, batch_size=4)
