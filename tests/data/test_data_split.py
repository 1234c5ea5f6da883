"""The article split: deterministic, disjoint in every language, shared by XQuAD and XQuAD-R."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridfast.data import (
    ArticleSplit,
    ParallelRecord,
    article_split,
    load_lareqa,
    load_xquad,
    restrict_lareqa,
    split_records,
)
from hybridfast.errors import HybridfastError

ARTICLES = [f"article-{i}" for i in range(50)]


def test_split_is_deterministic_and_order_free() -> None:
    first = article_split(ARTICLES)
    assert first == article_split(reversed(ARTICLES + ARTICLES))
    assert len(first.eval_articles) == 10 and len(first.train_articles) == 40
    assert first.train_articles.isdisjoint(first.eval_articles)
    assert first.train_articles | first.eval_articles == set(ARTICLES)
    assert article_split(ARTICLES, seed=1).eval_articles != first.eval_articles
    assert len(article_split(ARTICLES, eval_fraction=0.5).eval_articles) == 25


def test_split_keeps_both_sides_non_empty() -> None:
    assert len(article_split(["a", "b"], eval_fraction=0.01).eval_articles) == 1
    assert len(article_split(["a", "b"], eval_fraction=0.99).train_articles) == 1
    with pytest.raises(HybridfastError, match="no articles"):
        article_split([])
    with pytest.raises(HybridfastError, match="eval fraction"):
        article_split(ARTICLES, eval_fraction=1.0)


def test_split_records_rejects_unknown_article() -> None:
    split = ArticleSplit(frozenset({"a"}), frozenset({"b"}))
    records = [
        ParallelRecord("1", "en", "q", "p", article="a"),
        ParallelRecord("1", "de", "q", "p", article="b"),
    ]
    assert split_records(records, split) == ([records[0]], [records[1]])
    with pytest.raises(HybridfastError, match="neither side"):
        split_records([ParallelRecord("2", "en", "q", "p")], split)


def test_restrict_lareqa_reindexes(tmp_path: Path, squad_writer) -> None:
    articles = [("A", [("A one. A two.", [("a1", "?", 0)])]), ("B", [("B one. B two.", [("b1", "?", 7)])])]
    squad_writer(tmp_path / "en.json", articles, with_sentences=True)
    squad_writer(tmp_path / "de.json", articles, with_sentences=True)
    restricted = restrict_lareqa(load_lareqa(tmp_path), ["B"])
    assert [c.sentence for c in restricted.candidates] == ["B one.", "B two.", "B one.", "B two."]
    assert [c.index for c in restricted.candidates] == [0, 1, 2, 3]
    assert {q.qid for q in restricted.questions} == {"b1"}
    assert restricted.relevant("b1") == frozenset({1, 3})
    assert set(restricted.relevance) == {"b1"}


@pytest.fixture(scope="module")
def xquad_records(data_root: Path) -> list[ParallelRecord]:
    return load_xquad(data_root / "xquad")


def test_real_split_is_disjoint_in_every_language(
    data_root: Path, xquad_records: list[ParallelRecord]
) -> None:
    split = article_split({record.article for record in xquad_records})
    assert len(split.eval_articles) == round(0.2 * 48)
    train, held_out = split_records(xquad_records, split)
    assert len(train) + len(held_out) == len(xquad_records)
    train_passages = {record.passage for record in train}
    assert not train_passages & {record.passage for record in held_out}
    assert not {r.qid for r in train} & {r.qid for r in held_out}
    for lang in {record.lang for record in xquad_records}:
        assert sum(r.lang == lang for r in held_out) == sum(r.lang == "en" for r in held_out)

    pool = restrict_lareqa(load_lareqa(data_root / "xquad-r"), split.eval_articles)
    assert {q.qid for q in pool.questions} == {r.qid for r in held_out}
    assert not {c.context for c in pool.candidates} & train_passages
    assert all(len(pool.relevant(q.qid)) == 11 for q in pool.questions)
    assert all(
        pool.candidates[i].article in split.eval_articles
        for q in pool.questions
        for i in pool.relevant(q.qid)
    )


def test_real_article_keys_agree_between_xquad_and_xquad_r(
    data_root: Path, xquad_records: list[ParallelRecord]
) -> None:
    pool = load_lareqa(data_root / "xquad-r")
    xquad_article = {record.qid: record.article for record in xquad_records}
    assert len(set(xquad_article.values())) == 48
    assert all(xquad_article[question.qid] == question.article for question in pool.questions)
    by_qid_lang = {(r.qid, r.lang): r.article for r in xquad_records}
    assert all(by_qid_lang[(r.qid, "en")] == r.article for r in xquad_records)
    assert article_split(xquad_article.values()) == article_split(q.article for q in pool.questions)
