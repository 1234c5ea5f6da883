"""prune-vocab: a smaller checkpoint that embeds the corpora exactly as the full one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from models_helpers import TIMINGS, embed

from hybridfast.errors import DataFormatError, HybridfastError
from hybridfast.models.corpus_text import iter_corpus_texts
from hybridfast.models.prune import PruneReport, prune_vocab


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory: pytest.TempPathFactory, xquad_texts: dict[str, list[str]]) -> dict[str, Path]:
    """English texts as gzipped lines, German ones as JSON lines; Thai held out."""
    root = tmp_path_factory.mktemp("corpora")
    english = root / "en.txt.gz"
    with gzip.open(english, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(xquad_texts["en"]) + "\n")
    german = root / "de.jsonl"
    german.write_text("\n".join(json.dumps({"query": q, "passage": [p]}) for q, p in
                                zip(xquad_texts["de"][:100], xquad_texts["de"][100:], strict=True)) + "\n")
    thai = root / "th.txt"
    thai.write_text("\n".join(xquad_texts["th"]) + "\n")
    return {"en": english, "de": german, "th": thai}


@pytest.fixture(scope="session")
def pruned(e5_dir: Path, corpus_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> PruneReport:
    import time

    start = time.perf_counter()
    report = prune_vocab(e5_dir, [corpus_files["en"], corpus_files["de"]], tmp_path_factory.mktemp("pruned") / "e5-en-de",
                         held_out=[corpus_files["th"]])
    TIMINGS["prune_vocab (en+de XQuAD sample)"] = time.perf_counter() - start
    return report


def test_report_sizes_and_verification(pruned: PruneReport) -> None:
    assert pruned.vocab_before == 250037 and 1000 < pruned.vocab_after < 20000
    assert pruned.params_after < pruned.params_before / 3 and pruned.bytes_after < pruned.bytes_before / 3
    assert pruned.corpus.texts == 400 and pruned.corpus.tokens > 5000
    assert (pruned.corpus.lost_tokens, pruned.corpus.changed_texts, pruned.corpus.new_unk_tokens) == (0, 0, 0)
    config = json.loads((Path(pruned.out) / "config.json").read_text())
    assert config["vocab_size"] == pruned.vocab_after
    assert any("parameters" in line for line in pruned.lines())


def test_in_vocabulary_text_embeds_exactly_as_before(pruned: PruneReport, e5_hf, xquad_texts) -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = e5_hf
    small_tokenizer = AutoTokenizer.from_pretrained(pruned.out)
    small = AutoModel.from_pretrained(pruned.out, add_pooling_layer=False).eval()
    texts = [f"query: {t}" for t in xquad_texts["en"][:3]] + [f"passage: {t}" for t in xquad_texts["de"][100:103]]
    kept = json.loads((Path(pruned.out) / "tokenizer.json").read_text())["model"]["vocab"]
    full_ids = tokenizer(texts)["input_ids"]
    assert [[kept[i][0] for i in ids] for ids in small_tokenizer(texts)["input_ids"]] == [
        tokenizer.convert_ids_to_tokens(ids) for ids in full_ids
    ]
    np.testing.assert_allclose(embed(small_tokenizer, small, texts), embed(tokenizer, model, texts), atol=1e-5)


def test_out_of_vocabulary_text_maps_to_unk_and_is_reported(pruned: PruneReport) -> None:
    from tokenizers import Tokenizer

    held_out = pruned.held_out
    assert held_out is not None and held_out.texts == 200
    assert held_out.lost_tokens > held_out.tokens / 2 and held_out.new_unk_tokens > 0
    small = Tokenizer.from_file(str(Path(pruned.out) / "tokenizer.json"))
    thai = small.encode("แม่น้ำไรน์", add_special_tokens=False)
    assert thai.ids[-1] == small.token_to_id("<unk>") == 3
    full = Tokenizer.from_file(str(Path(pruned.source) / "tokenizer.json"))
    assert full.encode("the river", add_special_tokens=False).tokens == ["▁the", "▁river"]
    resegmented = small.encode("the river", add_special_tokens=False)
    assert resegmented.tokens[0] == "▁the" and len(resegmented.tokens) > 2 and 3 not in resegmented.ids
    assert "".join(resegmented.tokens) == "▁the▁river"


def test_corpus_reader_formats(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("one\n\n two \n")
    assert list(iter_corpus_texts(plain)) == ["one", " two "]
    jsonl = tmp_path / "b.jsonl.gz"
    with gzip.open(jsonl, "wt") as fh:
        fh.write('{"text": "t", "query": "q", "passage": ["p1", "p2"]}\n')
    assert list(iter_corpus_texts(jsonl)) == ["t", "q", "p1", "p2"]
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(DataFormatError, match=r"c.jsonl:2: no text field"):
        list(iter_corpus_texts(bad))
    bad.write_text("{not json\n")
    with pytest.raises(DataFormatError, match=r"c.jsonl:1: invalid JSON"):
        list(iter_corpus_texts(bad))


def test_bad_inputs(tmp_path: Path, e5_dir: Path, corpus_files: dict[str, Path]) -> None:
    with pytest.raises(HybridfastError, match="no such corpus file"):
        prune_vocab(e5_dir, [tmp_path / "absent.txt"], tmp_path / "out")
    with pytest.raises(HybridfastError, match="at least one"):
        prune_vocab(e5_dir, [], tmp_path / "out")
    (tmp_path / "exists").mkdir()
    with pytest.raises(HybridfastError, match="already exists"):
        prune_vocab(e5_dir, [corpus_files["th"]], tmp_path / "exists")
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    for name, payload in {"config.json": {"vocab_size": 3}, "tokenizer.json": {"model": {"type": "BPE"}}}.items():
        (bpe / name).write_text(json.dumps(payload))
    (bpe / "model.safetensors").write_bytes(b"")
    with pytest.raises(HybridfastError, match="only SentencePiece-Unigram"):
        prune_vocab(bpe, [corpus_files["th"]], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bpe", "exists"]


def test_tokens_added_after_the_vocabulary_keep_their_rows(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The tiny test tokenizer appends <mask> after its trained Unigram vocabulary (id = len(vocab)): pruning keeps
    it behind the kept pieces, and the kept texts embed exactly as before."""
    import hybridfast

    vocab = json.loads((tiny_model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"] > len(vocab)
    corpus = tmp_path / "corpus.txt"
    texts = ["Wo ist der Rhein?", "Where is the river Rhine?"]
    corpus.write_text("\n".join(texts) + "\n")
    report = prune_vocab(tiny_model_dir, [corpus], tmp_path / "pruned")
    assert report.corpus.changed_texts == 0 and report.vocab_after < report.vocab_before
    before = hybridfast.load(str(tiny_model_dir), device="cpu")
    after = hybridfast.load(str(tmp_path / "pruned"), device="cpu")
    assert after.tokenizer.convert_ids_to_tokens(after.tokenizer.mask_token_id) == "<mask>"
    assert after.tokenizer.mask_token_id == report.vocab_after - 1
    np.testing.assert_array_equal(after.encode_passages(texts), before.encode_passages(texts))
