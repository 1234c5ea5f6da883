"""ParallelTokenizer: the same ids as the transformers call, on any number of threads, for any truncation."""

from __future__ import annotations

import copy
import pickle
import threading
from pathlib import Path

import pytest

from hybridfast.tokenization import MIN_SLICE, ParallelTokenizer, default_threads

TEXTS = [
    "passage: " + text
    for text in (
        ["short", "", "The Rhine flows through Germany and the Netherlands into the North Sea. " * 9,
         "Der Rhein fließt durch Deutschland.", "莱茵河流经德国和荷兰。" * 7, "Где находится река Рейн? " * 15,
         "emoji 🚀 and tabs\tand\nnewlines"]
        * 23
    )
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _reference(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                     return_token_type_ids=False)["input_ids"]


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize("max_length", [4, 17, 512])
def test_same_ids_as_transformers(tokenizer, threads: int, max_length: int) -> None:
    ours = ParallelTokenizer(tokenizer, threads=threads)
    expected = _reference(tokenizer, TEXTS, max_length)
    assert ours.token_ids(TEXTS, max_length) == expected
    assert max(map(len, expected)) == min(max_length, max(map(len, _reference(tokenizer, TEXTS, 10_000))))
    # a second length gets its own truncating copy and leaves the first one alone
    assert ours.token_ids(TEXTS[:MIN_SLICE * 3], 8) == _reference(tokenizer, TEXTS[:MIN_SLICE * 3], 8)
    assert ours.token_ids(TEXTS, max_length) == expected
    assert ours.token_ids([], max_length) == []


def test_concurrent_callers_and_copies(tokenizer) -> None:
    ours = ParallelTokenizer(tokenizer, threads=3)
    expected = {length: _reference(tokenizer, TEXTS, length) for length in (6, 30)}
    results: dict[int, list] = {}

    def call(index: int) -> None:
        results[index] = ours.token_ids(TEXTS, 6 if index % 2 else 30)

    workers = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(results[i] == expected[6 if i % 2 else 30] for i in range(6))
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone.threads == 3 and clone.token_ids(TEXTS, 6) == expected[6]


def test_slow_tokenizer_is_called_as_is() -> None:
    class Slow:
        is_fast = False

        def __call__(self, texts, **kwargs):
            assert kwargs["truncation"] and kwargs["max_length"] == 3
            return {"input_ids": [[len(text)] for text in texts]}

    assert ParallelTokenizer(Slow()).token_ids(["ab", "abc"], 3) == [[2], [3]]
    assert 1 <= default_threads() <= 8
