"""`hybridfast encode | index | search`: shards with resume, index types, TREC / JSONL runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.errors import HybridfastError
from hybridfast.serve.corpus import read_texts
from hybridfast.serve.shards import encode_corpus, load_embeddings, read_manifest, texts_to_encode

runner = CliRunner()

DOCS = [
    ("d1", "Rhine", "The Rhine flows through Germany and the Netherlands."),
    ("d2", "", "Der Rhein fließt durch Deutschland."),
    ("d3", "Rin", "El río Rin fluye por Alemania."),
    ("d4", "", "Река Рейн течёт через Германию."),
    ("d5", "", "莱茵河流经德国和荷兰。"),
    ("d6", "Ren", "Nehir Ren Almanya'dan akar."),
    ("d7", "", "Sông Rhine chảy qua Đức."),
    ("d8", "", "نهر الراين يتدفق عبر ألمانيا"),
    ("d9", "", "Ο Ρήνος ρέει μέσω της Γερμανίας."),
    ("d10", "", "राइन नदी जर्मनी से होकर बहती है।"),
]


@pytest.fixture()
def beir_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for doc_id, title, text in DOCS:
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    return path


@pytest.fixture()
def queries_file(tmp_path: Path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps({"_id": f"q{i}", "text": text}) for i, (_, _, text) in enumerate(DOCS[:4])))
    return path


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_read_texts_formats(tmp_path, beir_corpus):
    ids, texts = read_texts(beir_corpus)
    assert ids[:2] == ["d1", "d2"] and texts[0] == "Rhine The Rhine flows through Germany and the Netherlands."
    plain = tmp_path / "lines.txt"
    plain.write_text("first\n\nsecond\n")
    assert read_texts(plain) == (["1", "3"], ["first", "second"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(HybridfastError, match=r"bad.jsonl:2: duplicate id"):
        read_texts(bad)


def test_encode_writes_shards_and_resumes(tmp_path, tiny_model_dir, beir_corpus, monkeypatch):
    out = tmp_path / "emb"
    result = _invoke("encode", "--model", tiny_model_dir, "--corpus", beir_corpus, "--out", out,
                     "--shard-size", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 10 embeddings (dim 32) to {out}; it holds 10 in 3 shard(s). Encoded 10 "
                                    "texts (")
    # Not a terminal: plain progress lines per batch on stderr, with both rates; the last one at 10/10.
    lines = [line for line in result.stderr.splitlines() if line.startswith("encoding corpus.jsonl.gz: ")]
    assert lines and lines[-1].startswith("encoding corpus.jsonl.gz: 10/10 texts (100 %), ")
    assert "texts/s" in lines[-1] and "tokens/s" in lines[-1]
    manifest = read_manifest(out)
    assert [s["file"] for s in manifest["shards"]] == [f"shard-0000{i}.safetensors" for i in range(3)]
    ids, matrix = load_embeddings(out)
    assert ids == [d[0] for d in DOCS] and matrix.shape == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)

    # A rerun finds every shard done, encodes nothing and says so, without loading the model.
    with monkeypatch.context() as patch:
        patch.setattr("hybridfast.serve.cli.load_encoder", lambda *args: pytest.fail("loaded the model"))
        again = _invoke("encode", "--model", tiny_model_dir, "--corpus", beir_corpus, "--out", out,
                        "--shard-size", "4", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == (f"nothing to encode: {out} already holds all 10 embeddings of corpus.jsonl.gz "
                                    "from this model (delete it or choose another --out to encode again)")
    calls: list[int] = []
    ids_all, texts = read_texts(beir_corpus)

    def encode(chunk: list[str]) -> np.ndarray:
        calls.append(len(chunk))
        return np.zeros((len(chunk), 32), np.float32)

    done = encode_corpus(encode, ids_all, texts, out, model=str(tiny_model_dir), shard_size=4)
    assert calls == [] and (done.encoded, done.reused) == (0, 10)

    # A lost shard is encoded again, and the summary counts only what this run wrote.
    (out / "shard-00001.safetensors").unlink()
    assert texts_to_encode(out, ids_all, texts, model=str(tiny_model_dir), shard_size=4) == 4
    resumed = _invoke("encode", "--model", tiny_model_dir, "--corpus", beir_corpus, "--out", out,
                      "--shard-size", "4", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith(f"wrote 4 embeddings (dim 32) to {out}; kept 6 from an earlier run; it holds "
                                     "10 in 3 shard(s). Encoded 4 texts (")
    assert "10/10 texts (100 %), 6 done before this run, " in resumed.stderr
    np.testing.assert_array_equal(load_embeddings(out)[1], matrix)
    # A different corpus in the same directory is refused.
    with pytest.raises(HybridfastError, match="different run"):
        encode_corpus(encode, ids_all[:5], texts[:5], out, model=str(tiny_model_dir), shard_size=4)


def test_interrupted_encode_resumes_at_first_unfinished_shard(tmp_path):
    ids = [f"x{i}" for i in range(7)]
    texts = [f"text {i}" for i in range(7)]
    calls: list[int] = []

    def failing(chunk: list[str]) -> np.ndarray:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.full((len(chunk), 3), len(calls), np.float32)

    with pytest.raises(KeyboardInterrupt):
        encode_corpus(failing, ids, texts, tmp_path / "e", model="m", shard_size=3, fmt="npy")
    with pytest.raises(HybridfastError, match="incomplete"):
        load_embeddings(tmp_path / "e")
    calls.clear()
    encode_corpus(lambda c: np.full((len(c), 3), 9, np.float32), ids, texts, tmp_path / "e", model="m",
                  shard_size=3, fmt="npy")
    loaded_ids, matrix = load_embeddings(tmp_path / "e")
    assert loaded_ids == ids
    assert matrix[:3].tolist() == [[1, 1, 1]] * 3 and (matrix[3:] == 9).all()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_and_search_write_valid_runs(tmp_path, tiny_model_dir, beir_corpus, queries_file, kind):
    emb = tmp_path / "emb"
    assert _invoke("encode", "--model", tiny_model_dir, "--corpus", beir_corpus, "--out", emb,
                   "--device", "cpu", "--format", "npy").exit_code == 0
    index = tmp_path / "index"
    result = _invoke("index", "--embeddings", emb, "--out", index, "--type", kind, "--nlist", "2", "--nprobe", "2")
    assert result.exit_code == 0, result.output
    assert f"indexing ({kind}): 10/10 vectors (100 %), " in result.stderr
    run = tmp_path / "run.trec"
    result = _invoke("search", "--model", tiny_model_dir, "--index", index, "--queries", queries_file,
                     "--out", run, "--k", "5", "--device", "cpu", "--tag", "tiny")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 4 queries × top-5 to {run}; encoded 4 texts (")
    assert "encoding queries.jsonl: 4/4 texts (100 %), " in result.stderr
    assert "searching index: 4/4 queries (100 %), " in result.stderr
    lines = [line.split() for line in run.read_text().splitlines()]
    doc_ids = {d[0] for d in DOCS}
    by_query: dict[str, list[list[str]]] = {}
    for qid, q0, docid, rank, score, tag in lines:
        assert q0 == "Q0" and tag == "tiny" and docid in doc_ids
        float(score)
        by_query.setdefault(qid, []).append([docid, rank, score])
    assert sorted(by_query) == ["q0", "q1", "q2", "q3"]
    for hits in by_query.values():
        assert [int(h[1]) for h in hits] == list(range(1, len(hits) + 1))
        scores = [float(h[2]) for h in hits]
        assert scores == sorted(scores, reverse=True)
    if kind == "flat":
        assert len(by_query["q0"]) == 5
        # The query text equals document d1's text (without title): it should rank d1 near the top.
        assert "d1" in [h[0] for h in by_query["q0"][:3]]

    jsonl = tmp_path / "run.jsonl"
    assert _invoke("search", "--model", tiny_model_dir, "--index", index, "--queries", queries_file,
                   "--out", jsonl, "--k", "3", "--device", "cpu").exit_code == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["qid"] for r in records] == ["q0", "q1", "q2", "q3"]
    assert all(1 <= len(r["hits"]) <= 3 for r in records)


def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_model_dir):
    result = _invoke("index", "--embeddings", tmp_path, "--out", tmp_path / "i")
    assert result.exit_code == 2 and "no manifest.json" in result.output
    result = _invoke("encode", "--model", tiny_model_dir, "--corpus", tmp_path / "missing.jsonl", "--out", tmp_path)
    assert result.exit_code == 2 and "file not found" in result.output
    result = _invoke("search", "--model", tiny_model_dir, "--index", tmp_path, "--queries", tmp_path / "q.txt",
                     "--out", tmp_path / "r.trec")
    assert result.exit_code == 2 and "error:" in result.output
