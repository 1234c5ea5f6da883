"""Loaders on the shared datasets (skipped when the data root is absent); counts are SOURCE.md's."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from hybridfast.data import load_beir, load_lareqa, load_tatoeba, load_xquad

XQUAD_LANGUAGES = {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"}
XQUAD_R_CANDIDATES = {
    "ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244,
    "ru": 1219, "th": 852, "tr": 1167, "vi": 1209, "zh": 1196,
}  # fmt: skip


def test_real_xquad(data_root: Path) -> None:
    records = load_xquad(data_root / "xquad")
    assert Counter(r.lang for r in records) == {lang: 1190 for lang in XQUAD_LANGUAGES}
    assert len({(r.lang, r.passage) for r in records if r.lang == "en"}) == 240
    assert len({r.article for r in records}) == 48
    en = {r.qid for r in records if r.lang == "en"}
    assert all({r.qid for r in records if r.lang == lang} == en for lang in XQUAD_LANGUAGES)


def test_real_xquad_r(data_root: Path) -> None:
    pool = load_lareqa(data_root / "xquad-r")
    assert Counter(c.lang for c in pool.candidates) == XQUAD_R_CANDIDATES
    assert Counter(q.lang for q in pool.questions) == {lang: 1190 for lang in XQUAD_R_CANDIDATES}
    assert len(pool.relevance) == 1190
    assert all(len(ids) == 11 for ids in pool.relevance.values())
    question = next(q for q in pool.questions if q.qid == "56beb4343aeaaa14008c925b" and q.lang == "en")
    gold = pool.gold(question.qid, "en")
    assert "308 points" in gold.sentence and gold.sentence in gold.context
    assert question.qid in gold.qids


def test_real_beir_scifact(data_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SOURCE.md: every qrels id is in the corpus and the queries
        test = load_beir(data_root / "beir-scifact")
        train = load_beir(data_root / "beir-scifact", "train")
    assert len(test.corpus) == 5183
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (300, 339)
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)


def test_real_tatoeba(data_root: Path) -> None:
    pairs = load_tatoeba(data_root / "tatoeba-laser")
    assert len(pairs) == 112
    assert sum(map(len, pairs.values())) == 88877
    assert (len(pairs["tzl"]), len(pairs["deu"]), len(pairs["amh"])) == (104, 1000, 168)
    assert all(p.source.strip() and p.english.strip() for lang_pairs in pairs.values() for p in lang_pairs)
