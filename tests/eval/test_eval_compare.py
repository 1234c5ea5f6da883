"""`compare`: paired tests over shared queries between two result files, Holm note, CLI and bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.errors import HybridfastError
from hybridfast.eval.cli import app
from hybridfast.eval.compare import compare_results, comparison_markdown
from hybridfast.eval.results import (
    RESULT_FORMAT,
    ResultFileError,
    load_result,
    new_result,
    per_query_block,
    save_result,
)


def _result(ids, per_setting, task="lareqa"):
    result = new_result(task, "model", "data", {}, {})
    result["per_query"] = {setting: per_query_block(ids, scores) for setting, scores in per_setting.items()}
    return result


def test_real_difference_is_significant_and_null_is_not():
    rng = np.random.default_rng(0)
    ids = [f"en:q{i}" for i in range(400)]
    base = rng.uniform(size=400)
    a = _result(ids, {"mono": {"map": base, "rank_distance": base * 100}})
    b = _result(ids, {"mono": {"map": np.clip(base + 0.08 + rng.normal(0, 0.1, 400), 0, 1),
                               "rank_distance": base * 100 + rng.normal(0, 5, 400)}})
    comparison = compare_results(a, b, n_resamples=2_000)
    rows = {(r["setting"], r["metric"]): r for r in comparison["rows"]}
    better = rows[("mono", "map")]
    assert better["significant"] and better["better"] == "B" and better["p_holm"] < 0.01
    assert better["ci_low"] > 0 and better["queries"] == 400
    assert not rows[("mono", "rank_distance")]["significant"]
    assert rows[("mono", "map")]["p_holm"] >= rows[("mono", "map")]["p"]
    text = comparison_markdown(comparison)
    assert "significant: mono map: B is better" in text and "Holm-Bonferroni" in text


def test_lower_rank_distance_counts_as_better():
    ids = [f"q{i}" for i in range(100)]
    values = np.arange(100, dtype=float)
    a = _result(ids, {"multi": {"rank_distance": values + 50}})
    b = _result(ids, {"multi": {"rank_distance": values}})
    (row,) = compare_results(a, b, n_resamples=500)["rows"]
    assert row["diff"] == -50 and row["better"] == "B"


def test_pairs_only_shared_and_scored_queries():
    a = _result(["x", "y", "z"], {"mono": {"map": [0.1, 0.2, float("nan")]}, "cross": {"map": [0.1, 0.2, 0.3]}})
    b = _result(["z", "y", "x", "w"], {"mono": {"map": [0.5, 0.4, 0.3, 0.9]}})
    (row,) = compare_results(a, b, n_resamples=200)["rows"]
    # Shared ids x, y (z is skipped in A, w is not in A); the cross setting is only in A.
    assert row["setting"] == "mono" and row["queries"] == 2
    assert row["mean_a"] == pytest.approx(0.15) and row["mean_b"] == pytest.approx(0.35)


def test_incomparable_results_raise():
    a = _result(["x"], {"mono": {"map": [0.1]}})
    with pytest.raises(HybridfastError, match="cannot compare"):
        compare_results(a, _result(["x"], {"test": {"ndcg@10": [0.1]}}, task="beir"))
    with pytest.raises(HybridfastError, match="share no per-query"):
        compare_results(a, _result(["y"], {"mono": {"map": [0.1]}}))


def test_cli_compare_and_bad_files(tmp_path):
    ids = [f"q{i}" for i in range(60)]
    rng = np.random.default_rng(1)
    save_result(_result(ids, {"mono": {"map": rng.uniform(size=60)}}), tmp_path / "a.json")
    save_result(_result(ids, {"mono": {"map": rng.uniform(size=60)}}), tmp_path / "b.json")
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--resamples", "500",
                                 "--out", str(tmp_path / "cmp.json")])
    assert result.exit_code == 0, result.output
    assert "| mono | map | 60 |" in result.stdout
    assert json.loads((tmp_path / "cmp.json").read_text())["rows"][0]["queries"] == 60

    (tmp_path / "bad.json").write_text(json.dumps({"format": RESULT_FORMAT, "per_query": {"mono": {"ids": ["a"], "map": []}}}))
    (tmp_path / "broken.json").write_text("{\n  nope")
    (tmp_path / "other.json").write_text("{}")
    for name, message in (("missing.json", "not found"), ("bad.json", "does not match its ids"),
                          ("broken.json", "broken.json:2: malformed JSON"), ("other.json", "not a hybridfast eval result")):
        with pytest.raises(ResultFileError, match=message):
            load_result(tmp_path / name)
        result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / name)])
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
