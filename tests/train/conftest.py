"""Fixtures for the trainer tests: a dropout-free tiny encoder, synthetic parallel data, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LANGS = ("de", "en", "es")


@pytest.fixture(scope="session")
def nodrop_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random encoder without dropout, so that runs differing only in layout agree exactly."""
    from hybridfast.testing import build_tiny_encoder

    directory = build_tiny_encoder(tmp_path_factory.mktemp("tiny-nodrop"))
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="session")
def parallel_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 questions in de / en / es; each passage repeats its question's two key words."""
    from hybridfast.testing import DEFAULT_TEXTS

    words = sorted({w.strip("?.,!") for text in DEFAULT_TEXTS for w in text.split() if len(w) > 3})
    path = tmp_path_factory.mktemp("parallel") / "train.jsonl"
    with path.open("w") as handle:
        for i in range(24):
            a, b, c = words[(3 * i) % len(words)], words[(3 * i + 1) % len(words)], words[(3 * i + 2) % len(words)]
            for lang in LANGS:
                handle.write(json.dumps({
                    "qid": f"q{i}", "lang": lang, "query": f"{lang} {a} {b}?",
                    "passage": f"{lang} {c} {a} {b}.", "article": f"article{i % 6}",
                }) + "\n")
    return path
