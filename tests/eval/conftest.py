"""Fixtures for the evaluation tests: a keyword encoder with known scores and small data folders written in
the real formats (LAReQA SQuAD JSON, BEIR JSONL/TSV, Tatoeba line files)."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from hybridfast.encoder import EncoderConfig

TAG = re.compile(r"\bQ(\d+)\b")


class KeywordEncoder:
    """Embeds a text as the one-hot vector of its first `Q<n>` tag (n < 32), else as a unit noise vector
    in dimensions 32..63 seeded by the text. Scores are therefore exactly 1 between texts sharing a tag
    and exactly 0 otherwise, so every metric has a hand-computable value."""

    dim = 64
    source = "keyword-encoder"
    config_was_defaulted = False
    device = "cpu"

    def __init__(self) -> None:
        self.config = EncoderConfig(query_prefix="query: ", passage_prefix="passage: ")
        self.calls: list[tuple[str | None, int]] = []

    def encode(self, texts: Sequence[str], prefix: str | None = None, *, batch_size: int = 64,
               on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Like `FusedEncoder.encode`: `on_batch(texts, tokens)` after each batch of at most `batch_size` texts
        (a token is a word here)."""
        self.calls.append((prefix, len(texts)))
        if on_batch is not None:
            for start in range(0, len(texts), batch_size):
                on_batch(len(texts[start : start + batch_size]),
                         sum(len(text.split()) for text in texts[start : start + batch_size]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            match = TAG.search(text)
            if match:
                out[row, int(match.group(1))] = 1.0
            else:
                noise = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(32)
                out[row, 32:] = noise / np.linalg.norm(noise)
        return out


@pytest.fixture
def keyword_encoder() -> KeywordEncoder:
    return KeywordEncoder()


def _paragraph(lang: str, article: int, paragraph: int, questions: list[int], skip: set[int]) -> dict:
    """Three sentences; question n's gold sentence carries tag Q<n>; the others are tagless filler."""
    sentences = [f"{lang} filler {article}-{paragraph}-{k} words here." for k in range(3)]
    for offset, n in enumerate(questions):
        sentences[(article + paragraph + offset) % 3] = f"{lang} answer Q{n} in sentence."
    breaks, position = [], 0
    for sentence in sentences:
        breaks.append([position, position + len(sentence)])
        position += len(sentence) + 1
    qas = []
    for offset, n in enumerate(questions):
        if n in skip:
            continue
        start = breaks[(article + paragraph + offset) % 3][0] + 3
        qas.append({"id": f"qid{n}", "question": f"{lang} question Q{n}?",
                    "answers": [{"text": "x", "answer_start": start}]})
    return {"context": " ".join(sentences), "qas": qas, "sentences": sentences, "sentence_breaks": breaks}


@pytest.fixture
def write_lareqa() -> Callable[..., Path]:
    """Write `{lang}.json` LAReQA files: 2 articles x 2 paragraphs x 3 sentences, one question per paragraph
    (ids qid1..qid4, tags Q1..Q4). `skip={lang: {n, ...}}` leaves question n out of a language (MLQA-R
    shape: its gold sentence stays in the pool)."""

    def write(root: Path, langs: Sequence[str] = ("de", "en", "es"), skip: dict[str, set[int]] | None = None) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for lang in langs:
            articles = []
            for a in range(2):
                paragraphs = [_paragraph(lang, a, p, [1 + 2 * a + p], (skip or {}).get(lang, set())) for p in range(2)]
                articles.append({"title": f"Article {a} {lang}", "paragraphs": paragraphs})
            (root / f"{lang}.json").write_text(json.dumps({"data": articles, "version": "1.1"}), encoding="utf-8")
        return root

    return write


@pytest.fixture
def write_beir() -> Callable[..., Path]:
    """Write a BEIR folder: docs d1..d6 (d1..d4 tagged Q1..Q4), queries q1..q3 and a query whose id is the
    document id `d4`; qrels/test.tsv judges q1->d1, q2->d2, q3->d3 and d4->d3; `extra_qrels` rows are
    appended verbatim."""

    def write(root: Path, extra_qrels: Sequence[str] = ()) -> Path:
        (root / "qrels").mkdir(parents=True, exist_ok=True)
        docs = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"text Q{i} body" if i <= 4 else f"plain body {i}"}
                for i in range(1, 7)]
        (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        queries = [{"_id": f"q{i}", "text": f"find Q{i}"} for i in range(1, 4)]
        queries.append({"_id": "d4", "text": "find Q4"})
        (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
        rows = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1", "q3\td3\t1", "d4\td3\t1", *extra_qrels]
        (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
        return root

    return write


@pytest.fixture
def write_tatoeba() -> Callable[..., Path]:
    """Write `tatoeba.{lang}-eng.{lang|eng}` files of 5 tagged lines; `swap` swaps two English lines."""

    def write(root: Path, langs: Sequence[str] = ("deu", "fra"), swap: dict[str, tuple[int, int]] | None = None) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for lang in langs:
            source = [f"{lang} satz Q{i}" for i in range(1, 6)]
            english = [f"english line Q{i}" for i in range(1, 6)]
            if swap and lang in swap:
                i, j = swap[lang]
                english[i], english[j] = english[j], english[i]
            (root / f"tatoeba.{lang}-eng.{lang}").write_text("\n".join(source) + "\n")
            (root / f"tatoeba.{lang}-eng.eng").write_text("\n".join(english) + "\n")
        return root

    return write
