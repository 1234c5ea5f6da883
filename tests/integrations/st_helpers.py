"""Helpers for the sentence-transformers integration tests (also imported by the multi-process worker)."""

from __future__ import annotations

from pathlib import Path

LANGS = ("de", "en", "es")
QUESTIONS = 24


def parallel_rows(questions: int = QUESTIONS, langs: tuple[str, ...] = LANGS) -> dict[str, list]:
    """`questions` questions in `langs` as parallel-dataset columns; questions 2k and 2k + 1 are about one
    paragraph (the same passage), so the hybrid sampler gives them one group; two hard negatives per record."""
    from hybridfast.testing import DEFAULT_TEXTS

    words = sorted({w.strip("?.,!") for text in DEFAULT_TEXTS for w in text.split() if len(w) > 3})
    rows: dict[str, list] = {"qid": [], "lang": [], "query": [], "passage": [], "hard_negatives": []}
    for i in range(questions):
        a, b, c = (words[(3 * i + k) % len(words)] for k in range(3))
        x, y = (words[(3 * (i // 2) + k) % len(words)] for k in (1, 2))
        for lang in langs:
            rows["qid"].append(f"q{i}")
            rows["lang"].append(lang)
            rows["query"].append(f"{lang} {a} {b}?")
            rows["passage"].append(f"{lang} paragraph {i // 2}: {x} {y}.")
            rows["hard_negatives"].append([f"{lang} {b} {c} {k}" for k in range(2)])
    return rows


def load_st_model(directory: Path):
    """`SentenceTransformer(directory)` on the CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(directory), device="cpu")
