"""FAISS indexes (hybridfast.index): build, search, save, load against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from hybridfast.errors import HybridfastError
from hybridfast.index import build_index, load_index, save_index, search_index, set_search_params


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    return _unit(3000, 24, 0)


@pytest.fixture(scope="module")
def queries(corpus) -> np.ndarray:
    noisy = corpus[:50] + 0.3 * _unit(50, 24, 1)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def _brute(corpus, queries, k):
    scores = queries @ corpus.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


def test_flat_matches_brute_force(corpus, queries):
    index = build_index(corpus, "flat", use_gpu=False)
    scores, ids = search_index(index, queries, 10)
    ref_scores, ref_ids = _brute(corpus, queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (50, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert (ids[:, 0] == ref_ids[:, 0]).all()


@pytest.mark.parametrize(("kind", "params"), [("ivf", {"nlist": 16, "nprobe": 16}), ("hnsw", {"ef_search": 256})])
def test_approximate_indexes_recall(corpus, queries, kind, params):
    index = build_index(corpus, kind, use_gpu=False, **params)
    _, ids = search_index(index, queries, 10)
    _, ref_ids = _brute(corpus, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), ref_ids.tolist(), strict=True)])
    assert recall >= 0.95
    # Scanning every IVF cell is exact.
    if kind == "ivf":
        assert (ids == ref_ids).mean() > 0.99


def test_ivf_few_probes_may_miss_but_marks_missing(corpus, queries):
    index = build_index(corpus, "ivf", nlist=64, nprobe=1, use_gpu=False)
    scores, ids = search_index(index, queries, 2000)
    assert ids.shape == (50, 2000)
    assert (ids < 0).any()
    assert np.isneginf(scores[ids < 0]).all()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_roundtrip(tmp_path, corpus, queries, kind):
    index = build_index(corpus, kind, use_gpu=False, nprobe=8, ef_search=64)
    doc_ids = [f"doc-{i}" for i in range(len(corpus))]
    save_index(tmp_path / "idx", index, doc_ids)
    loaded, loaded_ids = load_index(tmp_path / "idx")
    assert loaded_ids == doc_ids
    before = search_index(index, queries, 5)
    after = search_index(loaded, queries, 5)
    np.testing.assert_array_equal(before[1], after[1])
    if kind == "ivf":
        assert loaded.nprobe == 8
        set_search_params(loaded, nprobe=2)
        assert loaded.nprobe == 2
    if kind == "hnsw":
        assert loaded.hnsw.efSearch == 64


def test_k_larger_than_corpus_is_clamped():
    index = build_index(_unit(5, 8, 2), "flat", use_gpu=False)
    scores, ids = search_index(index, _unit(2, 8, 3), 100)
    assert ids.shape == (2, 5)
    assert sorted(ids[0].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_index(np.zeros((0, 4), np.float32)), "zero embeddings"),
        (lambda: build_index(np.zeros(4, np.float32)), "2-D"),
        (lambda: build_index(_unit(10, 4, 0), "lsh"), "unknown index type"),
        (lambda: build_index(_unit(10, 4, 0), "ivf", nlist=20), "nlist"),
        (lambda: build_index(np.full((3, 4), np.nan, np.float32)), "NaN"),
        (lambda: search_index(build_index(_unit(10, 4, 0), use_gpu=False), _unit(2, 5, 1), 3), "dimension"),
        (lambda: search_index(build_index(_unit(10, 4, 0), use_gpu=False), _unit(2, 4, 1), 0), "k must"),
        (lambda: set_search_params(build_index(_unit(10, 4, 0), use_gpu=False), nprobe=3), "IVF"),
    ],
)
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises(HybridfastError, match=message):
        call()


def test_save_rejects_mismatched_ids_and_load_rejects_non_index(tmp_path):
    index = build_index(_unit(4, 4, 0), use_gpu=False)
    with pytest.raises(HybridfastError, match="4 vectors"):
        save_index(tmp_path / "a", index, ["x"])
    with pytest.raises(HybridfastError, match="not unique"):
        save_index(tmp_path / "a", index, ["x", "x", "y", "z"])
    with pytest.raises(HybridfastError, match="not an index directory"):
        load_index(tmp_path)
