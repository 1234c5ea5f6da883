"""Builders for the small data files the data-layer tests write themselves."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest

# An article: (title, [(context, [(qid, question, answer_start)])]).
Article = tuple[str, list[tuple[str, list[tuple[str, str, int]]]]]


def _sentence_spans(context: str) -> list[tuple[int, int]]:
    """Sentences end at '. '; a span covers the sentence without the space that follows it."""
    spans, start = [], 0
    while start < len(context):
        stop = context.find(". ", start)
        end = len(context) if stop < 0 else stop + 1
        spans.append((start, end))
        start = end + 1
    return spans


def write_text(path: Path, text: str) -> Path:
    """Write `text` as UTF-8, gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_squad(path: Path, articles: list[Article], with_sentences: bool = False) -> Path:
    """A SQuAD v1.1 file (LAReQA-style with `sentences`/`sentence_breaks` when asked), pretty-printed."""
    data = []
    for title, paragraphs in articles:
        out_paragraphs = []
        for context, questions in paragraphs:
            paragraph: dict[str, object] = {
                "context": context,
                "qas": [
                    {"id": qid, "question": question, "answers": [{"text": "x", "answer_start": start}]}
                    for qid, question, start in questions
                ],
            }
            if with_sentences:
                spans = _sentence_spans(context)
                paragraph["sentences"] = [context[a:b] for a, b in spans]
                paragraph["sentence_breaks"] = [[a, b] for a, b in spans]
            out_paragraphs.append(paragraph)
        data.append({"title": title, "paragraphs": out_paragraphs})
    return write_text(path, json.dumps({"data": data, "version": "1.1"}, indent=1, ensure_ascii=False))


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """One JSON value per line; strings are written verbatim (to plant malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    return write_text(path, "\n".join(lines) + "\n")


@pytest.fixture
def squad_writer() -> Callable[..., Path]:
    return write_squad


@pytest.fixture
def jsonl_writer() -> Callable[..., Path]:
    return write_jsonl


@pytest.fixture
def text_writer() -> Callable[..., Path]:
    return write_text
