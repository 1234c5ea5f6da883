"""LAReQA evaluation end to end: known scores from the keyword encoder, the tiny random model through the
CLI, the MLQA-R shape, the article split, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.data.squad import load_lareqa
from hybridfast.eval.cli import app
from hybridfast.eval.lareqa import EmptyPoolError, evaluate_lareqa, lareqa_markdown
from hybridfast.eval.results import load_result


def test_perfect_encoder_scores_by_hand(tmp_path, write_lareqa, keyword_encoder):
    dataset = load_lareqa(write_lareqa(tmp_path / "xq"))
    result = evaluate_lareqa(keyword_encoder, dataset, progress=False)
    metrics = result["metrics"]
    assert metrics["mono"] == {"map": 1.0, "r@1": 1.0, "r@10": 1.0}
    assert metrics["cross"] == {"map": 1.0, "r@1": 1.0, "r@10": 1.0}
    # Multi: the 3 gold sentences tie at score 1 (AP 1); ranked 1, 2, 3 -> one of them is first (Hit@1 = 1,
    # where R@1 would be 1/3), rank distance 2.
    assert metrics["multi"] == {"map": 1.0, "hit@1": 1.0, "hit@10": 1.0, "rank_distance": 2.0}
    assert set(result["per_language"]["cross"]["en"]) == {"de", "es"}
    assert result["counts"]["candidates"] == {"de": 12, "en": 12, "es": 12}
    assert result["counts"]["multilingual_pool"] == 36
    assert result["counts"]["skipped_queries"] == {"mono": 0, "cross": 0, "multi": 0}
    # Each language encoded once: 3 candidate pools (passage prefix) + 3 question sets (query prefix).
    assert sorted(keyword_encoder.calls) == [("passage", 12)] * 3 + [("query", 4)] * 3
    per_query = result["per_query"]
    assert len(per_query["multi"]["ids"]) == 12 and per_query["multi"]["ids"][0] == "de:qid1"
    # Cluster labels: the question shared by its translations, the article (the English title as key).
    for setting in ("mono", "cross", "multi"):
        clusters = per_query[setting]["clusters"]
        assert [f"{q}" for q in clusters["question"][:4]] == ["qid1", "qid2", "qid3", "qid4"]
        assert clusters["question"][4] == "qid1"  # English questions come next, the same four questions
        assert clusters["article"][:4] == ["Article 0 en", "Article 0 en", "Article 1 en", "Article 1 en"]
    assert "**macro**" in lareqa_markdown(result)


def test_mlqa_shape_skips_and_counts_queries(tmp_path, write_lareqa, keyword_encoder):
    # qid2 is not asked in Spanish: its Spanish sentence stays in the pool, tagged Q2 but not relevant
    # (no Spanish question points to it), so qid2 has 2 relevant candidates instead of 3.
    dataset = load_lareqa(write_lareqa(tmp_path / "ml", skip={"es": {2}}))
    assert len(dataset.relevance["qid2"]) == 2
    result = evaluate_lareqa(keyword_encoder, dataset, progress=False)
    assert result["counts"]["questions"] == {"de": 4, "en": 4, "es": 3}
    # Cross: en->es and de->es for qid2 have no gold candidate in the es pool -> 2 skipped queries.
    assert result["counts"]["skipped_queries"] == {"mono": 0, "cross": 2, "multi": 0}
    assert result["per_language"]["cross"]["en"]["es"]["queries"] == 3
    multi = result["per_query"]["multi"]
    # In the multilingual pool, qid2's query ties the non-relevant Spanish Q2 sentence with its two relevant
    # ones. AP (sklearn): one threshold admits all three, precision 2/3 -> AP 2/3. Ranks break the tie
    # against the relevant candidates: 2 and 3, distance 1.
    distances = dict(zip(multi["ids"], multi["rank_distance"], strict=True))
    average_precisions = dict(zip(multi["ids"], multi["map"], strict=True))
    assert distances["en:qid2"] == 1 and distances["en:qid1"] == 2
    assert average_precisions["en:qid2"] == pytest.approx(2 / 3, abs=1e-6)
    assert len(multi["ids"]) == 11


def test_langs_restricts_queries_and_pools(tmp_path, write_lareqa, keyword_encoder):
    dataset = load_lareqa(write_lareqa(tmp_path / "xq"))
    result = evaluate_lareqa(keyword_encoder, dataset, langs=["en", "es"], progress=False)
    assert result["counts"]["multilingual_pool"] == 24
    assert result["metrics"]["multi"]["rank_distance"] == 1.0
    with pytest.raises(Exception, match="not in the data"):
        evaluate_lareqa(keyword_encoder, dataset, langs=["fr"], progress=False)


def test_empty_pool_is_a_clear_error(tmp_path, write_lareqa, keyword_encoder):
    from hybridfast.data.records import LareqaCandidate, LareqaDataset, LareqaQuestion
    from hybridfast.eval.runner import evaluate

    root = write_lareqa(tmp_path / "xq")
    data = json.loads((root / "es.json").read_text())
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["sentences"], paragraph["sentence_breaks"], paragraph["qas"] = [], [], []
    (root / "es.json").write_text(json.dumps(data))
    with pytest.raises(EmptyPoolError, match=r"es\.json: language 'es' has an empty candidate pool"):
        evaluate(keyword_encoder, "lareqa", root, progress=False)
    # Questions in a language whose pool is empty (a dataset built by hand).
    candidate = LareqaCandidate(0, "en", "answer Q1.", "answer Q1.", "A", ("qid1",))
    questions = (LareqaQuestion("qid1", "en", "Q1?", "A"), LareqaQuestion("qid1", "de", "Q1?", "A"))
    dataset = LareqaDataset((candidate,), questions, {"qid1": frozenset({0})})
    with pytest.raises(EmptyPoolError, match="'de' has an empty candidate pool"):
        evaluate_lareqa(keyword_encoder, dataset, progress=False)


def test_tiny_model_through_the_cli(tmp_path, write_lareqa, tiny_model_dir):
    root = write_lareqa(tmp_path / "xq")
    out = tmp_path / "res.json"
    runner = CliRunner()
    result = runner.invoke(app, ["--model", str(tiny_model_dir), "--task", "lareqa", "--data", str(root),
                                 "--out", str(out), "--no-progress", "--with-context", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "| **macro** |" in result.stdout
    saved = load_result(out)
    assert saved["task"] == "lareqa" and saved["settings"]["with_context"] is True
    assert saved["encoder"]["config_was_defaulted"] is False
    assert saved["encoder"]["config"]["query_prefix"] == "query: "
    for setting in ("mono", "cross", "multi"):
        values = np.array(saved["per_query"][setting]["map"], dtype=float)
        assert len(values) == 12 and np.all((values > 0) & (values <= 1))
        assert saved["metrics"][setting]["map"] == pytest.approx(values.mean(), abs=1e-5)
    assert {"torch", "numpy", "hybridfast"} <= set(saved["versions"])
    assert saved["timing"]["encode_s"] > 0


def test_article_split_eval_keeps_held_out_articles(tmp_path, write_lareqa, keyword_encoder):
    from hybridfast.eval.runner import evaluate

    result = evaluate(keyword_encoder, "lareqa", write_lareqa(tmp_path / "xq"), article_split="eval", progress=False)
    # 2 articles, eval fraction 0.2 -> one held-out article: 2 paragraphs x 3 sentences, 2 questions per language.
    assert result["counts"]["candidates"] == {"de": 6, "en": 6, "es": 6}
    assert result["counts"]["questions"] == {"de": 2, "en": 2, "es": 2}
    assert result["settings"]["article_split"] == "eval" and result["settings"]["eval_articles"] == 1


def test_model_without_encoder_config_states_defaults(tmp_path, write_lareqa, tiny_model_dir):
    import shutil

    model = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, model)
    (model / "hybridfast_encoder.json").unlink()
    result = CliRunner().invoke(app, ["--model", str(model), "--task", "lareqa", "--data",
                                      str(write_lareqa(tmp_path / "xq")), "--no-progress", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "no hybridfast_encoder.json: used the defaults" in result.stderr
    saved = load_result(tmp_path / "r.json")
    assert saved["encoder"]["config_was_defaulted"] is True
    assert saved["encoder"]["config"]["query_prefix"] == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "lareqa", "--data", "{missing}"], "data folder not found"),
        (["--task", "lareqa", "--data", "{empty}"], "no {lang}.json files found"),
        (["--task", "nope", "--data", "{empty}"], "unknown task 'nope'"),
        (["--task", "beir", "--data", "{empty}", "--langs", "en"], "--langs applies to"),
        (["--task", "lareqa", "--data", "{empty}", "--article-split", "train"], "--article-split eval applies"),
        (["--task", "beir", "--data", "{empty}", "--top-k", "5"], "--top-k must be at least 10"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, tiny_model_dir, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), *args, "--no-progress"])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_missing_model_and_required_options(tmp_path, write_lareqa):
    root = write_lareqa(tmp_path / "xq")
    result = CliRunner().invoke(app, ["--model", str(tmp_path / "no-model"), "--task", "lareqa", "--data", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["--task", "lareqa"])
    assert result.exit_code == 2 and "--model and --task are required" in result.stderr


def test_tiny_model_matches_a_naive_sklearn_recomputation(tmp_path, write_lareqa, tiny_model_dir):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    import hybridfast

    encoder = hybridfast.load(str(tiny_model_dir), device="cpu")
    dataset = load_lareqa(write_lareqa(tmp_path / "ml", skip={"es": {3}}))
    result = evaluate_lareqa(encoder, dataset, progress=False)
    candidates = encoder.encode_passages([c.sentence for c in dataset.candidates])
    langs = [c.lang for c in dataset.candidates]
    expected: dict[str, dict[str, list[float]]] = {"mono": {}, "cross": {}, "multi": {}}
    for question in dataset.questions:
        scores = (encoder.encode_queries([question.question]) @ candidates.T)[0]
        truth = np.array([i in dataset.relevance[question.qid] for i in range(len(langs))])
        key = f"{question.lang}:{question.qid}"
        expected["multi"][key] = [sklearn_metrics.average_precision_score(truth, scores)]
        for pool in sorted(set(langs)):
            mask = np.array([lang == pool for lang in langs])
            if truth[mask].any():
                setting = "mono" if pool == question.lang else "cross"
                ap = sklearn_metrics.average_precision_score(truth[mask], scores[mask])
                expected[setting].setdefault(key, []).append(ap)
    for setting, by_query in expected.items():
        block = result["per_query"][setting]
        ours = dict(zip(block["ids"], block["map"], strict=True))
        for key, values in by_query.items():
            assert ours[key] == pytest.approx(np.mean(values), abs=2e-6), (setting, key)
