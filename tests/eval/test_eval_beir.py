"""BEIR evaluation: the id-equality rule, pytrec_eval measures by hand, synthetic folders end to end."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.data.beir import load_beir
from hybridfast.data.records import BeirDataset
from hybridfast.eval.beir import beir_document_text, beir_measures, beir_run, evaluate_beir
from hybridfast.eval.cli import app
from hybridfast.eval.results import load_result


def test_identical_ids_are_dropped_and_k_kept():
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], dtype=np.float32)
    indices = np.array([[0, 1, 2], [2, 1, 0]])
    run = beir_run(["a", "q"], ["a", "b", "c"], scores, indices, k=2)
    assert run == {"a": {"b": pytest.approx(0.8), "c": pytest.approx(0.7)}, "q": {"c": pytest.approx(0.9), "b": pytest.approx(0.8)}}
    kept = beir_run(["a"], ["a", "b", "c"], scores[:1], indices[:1], k=2, ignore_identical_ids=False)
    assert list(kept["a"]) == ["a", "b"]
    # FAISS pads missing neighbours with id -1.
    assert beir_run(["q"], ["a", "b"], scores[:1], np.array([[1, -1, -1]]), k=2) == {"q": {"b": pytest.approx(0.9)}}


def test_measures_by_hand():
    # q1: relevant d2 at rank 2 of [d1, d2, ...]. nDCG@10 = (1/log2 3) / 1; MRR@10 = 1/2; AP = 1/2; recall = 1.
    # q2: relevant x1 and x2; x2 at rank 11 only -> MRR@10 0, recall@100 1/2, nDCG@10 0, MAP = (1/11)/2.
    run = {
        "q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0},
        "q2": {f"y{i}": 20.0 - i for i in range(10)} | {"x2": 5.0},
    }
    qrels = {"q1": {"d2": 1}, "q2": {"x1": 1, "x2": 1}, "q3": {"z": 1}}
    measures = beir_measures(qrels, run, k=100)
    assert measures["q1"] == pytest.approx({"ndcg@10": 1 / np.log2(3), "recall@100": 1.0, "mrr@10": 0.5, "map@100": 0.5})
    assert measures["q2"] == pytest.approx({"ndcg@10": 0.0, "recall@100": 0.5, "mrr@10": 0.0, "map@100": 1 / 22})
    # A judged query without any retrieved document scores 0.
    assert measures["q3"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "map@100": 0.0}
    with pytest.raises(Exception, match="at least 10"):
        beir_measures(qrels, run, k=5)


def test_document_text_joins_as_beir():
    assert beir_document_text("Title", "Body.") == "Title Body."
    assert beir_document_text("", "Body.") == "Body."


def test_keyword_encoder_end_to_end(tmp_path, write_beir, keyword_encoder):
    dataset = load_beir(write_beir(tmp_path / "beir"))
    result = evaluate_beir(keyword_encoder, dataset, top_k=10, progress=False)
    per_query = dict(zip(result["per_query"]["test"]["ids"], result["per_query"]["test"]["ndcg@10"], strict=True))
    assert per_query["q1"] == per_query["q2"] == per_query["q3"] == 1.0
    # Query "d4" matches document d4 best, which BEIR's rule drops; its relevant d3 is a zero-score tie.
    assert result["counts"]["identical_ids_dropped"] == 1
    assert result["counts"]["queries"] == 4 and result["counts"]["documents"] == 6
    assert set(result["metrics"]["test"]) == {"ndcg@10", "recall@10", "mrr@10", "map@10"}
    assert result["metrics"]["test"]["recall@10"] == 1.0


def test_unknown_documents_in_qrels_are_warned_and_counted(tmp_path, write_beir, tiny_model_dir):
    root = write_beir(tmp_path / "beir", extra_qrels=["q1\tghost\t1", "q2\tghost2\t1"])
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), "--task", "beir", "--data", str(root),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "skipped 2 qrels rows naming documents not in the corpus" in result.stderr
    saved = load_result(out)
    assert any("skipped 2 qrels rows" in w for w in saved["warnings"])
    assert saved["counts"]["qrels"] == 4
    assert "| test |" in result.stdout


def test_hand_built_dataset_with_unknown_documents(keyword_encoder):
    dataset = BeirDataset(
        corpus={"d1": ("", "text Q1"), "d2": ("", "plain")},
        queries={"q1": "Q1", "q2": "Q2"},
        qrels={"q1": {"d1": 1, "nowhere": 1}, "q2": {"gone": 1}},
    )
    with pytest.warns(UserWarning, match="2 documents that are not in the corpus"):
        result = evaluate_beir(keyword_encoder, dataset, top_k=10, progress=False)
    assert result["counts"]["qrels_unknown_documents"] == 2
    assert result["counts"]["queries"] == 1
    assert result["metrics"]["test"]["ndcg@10"] == 1.0


def test_missing_files_are_clear_errors(tmp_path, write_beir, tiny_model_dir):
    root = write_beir(tmp_path / "beir")
    (root / "queries.jsonl").unlink()
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), "--task", "beir", "--data", str(root)])
    assert result.exit_code == 2 and "queries.jsonl" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), "--task", "beir", "--data",
                                      str(write_beir(tmp_path / "b2")), "--split", "dev"])
    assert result.exit_code == 2 and "dev.tsv" in result.stderr
